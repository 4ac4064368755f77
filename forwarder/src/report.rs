//! The end-of-run report: every counter per thread and in total, the conservation check, the
//! final table printed to the terminal and the JSON written by `--report`.
//!
//! Conservation (ARCHITECTURE.md): every received packet ends in exactly one counter. The copies of
//! ARP frames a thread makes for the others' neighbour caches enter the count like received
//! frames (`link_copies`).
//! - per thread: `rx + link_copies == processed_local + handed_off + dropped at receive`
//! - per destination: what all threads handed to thread t `== processed_handoff` of t
//! - in total: `rx + link_copies == processed + dropped`
//! - the pool is back to its full count once the port and the threads are gone, and so is each
//!   of its pools (each queue's L1, the shared one; for a DPDK port each mempool's
//!   `rte_mempool_avail_count` equals its size).
//!
//! When the threads run a protocol stack, the report adds its counters per thread
//! ([`StackSnapshot`], also what the metrics endpoint and the status line read) and their sums
//! ([`StackTotals`]). The stack's misdirected packets (TCP/UDP packets another thread owns, which
//! the stack answers as a stranger would, with a reset) are folded into `total.misdirected` next
//! to the verifying sink's, so one number says whether steering delivered every packet to its
//! owner, whichever consumer ran.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use flowsteer_nic::pool::{PacketPool, Tier};
use flowsteer_stack::{AppSpec, AppStats, StackStats};
use serde::Serialize;

use crate::health::{Cause, Health, Step};
use crate::shared::{Shared, ThreadStack};
use crate::stats::{LookupCounts, ThreadSnapshot, HANDED_DROPS, TRANSMIT_DROPS};

/// Everything a run counted.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// "rss" or "software".
    pub balance: String,
    /// The traffic profile.
    pub profile: String,
    /// Stack threads.
    pub threads: usize,
    /// NIC queues.
    pub queues: usize,
    /// Per thread, where it transmitted: "queue q", "transmit-only queue" or "via thread t"
    /// (threads beyond the queues; see `transmit.rs`).
    pub tx_paths: Vec<String>,
    /// Wall time of the run.
    pub duration_secs: f64,
    /// Per-thread counters.
    pub per_thread: Vec<ThreadSnapshot>,
    /// Per thread, the protocol stack's counters and apps; empty when no stack ran (the verifying
    /// sink consumed the generator's packets).
    pub stack: Vec<StackSnapshot>,
    /// Sums over threads.
    pub total: Totals,
    /// Traffic generator counters per queue.
    pub traffic: Vec<BTreeMap<String, u64>>,
    /// Per queue, the frames the port dropped before any thread received them, by reason
    /// (uveth: ring full, no buffer, oversize; AF_PACKET: the kernel's ring drops and the
    /// queue's own refusals). Outside the conservation check: no thread ever counted them.
    pub port_dropped: Vec<BTreeMap<String, u64>>,
    /// The flow table after every thread exited (each exit deletes the thread's rules).
    pub flowtable: TableReport,
    /// The buffer pool after shutdown.
    pub pool: PoolReport,
    /// The conservation check.
    pub conservation: Conservation,
    /// The threads that failed during the run, in thread order; empty when none did.
    pub failures: Vec<FailureReport>,
}

/// A thread that failed during the run (`engine.on_failure`).
#[derive(Clone, Debug, Serialize)]
pub struct FailureReport {
    /// The thread.
    pub thread: usize,
    /// Its state at the end: "running" (restarted) or "down".
    pub state: &'static str,
    /// Failures by cause ("panic", "stall"), only those that happened.
    pub failures: BTreeMap<&'static str, u64>,
    /// Times a fresh stack took over its queue.
    pub restarts: u64,
    /// Buffers its reclaims freed.
    pub reclaimed_buffers: u64,
    /// Its last failure's cause in words (a panic's message).
    pub last_reason: String,
    /// Its last reclaim, in words.
    pub last_reclaim: String,
    /// Its last reclaim's steps, in milliseconds, in order: rules, software queue, buffers,
    /// queue.
    pub last_reclaim_ms: BTreeMap<&'static str, f64>,
}

impl FailureReport {
    /// The threads of `health` that failed.
    pub fn of(health: &Health) -> Vec<FailureReport> {
        health
            .threads()
            .enumerate()
            .filter(|(_, h)| h.failures_total() > 0)
            .map(|(thread, h)| {
                let last = h.last_reclaim().unwrap_or_default();
                FailureReport {
                    thread,
                    state: h.state().as_str(),
                    failures: Cause::ALL
                        .iter()
                        .filter(|&&c| h.failures(c) > 0)
                        .map(|&c| (c.as_str(), h.failures(c)))
                        .collect(),
                    restarts: h.restarts(),
                    reclaimed_buffers: h.reclaimed_buffers(),
                    last_reason: last.reason.clone(),
                    last_reclaim: crate::reclaim::describe(&last, h.state()),
                    last_reclaim_ms: Step::ALL
                        .iter()
                        .zip(&last.steps)
                        .map(|(s, d)| (s.as_str(), d.as_secs_f64() * 1e3))
                        .collect(),
                }
            })
            .collect()
    }
}

impl std::fmt::Display for FailureReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let causes: Vec<String> = self
            .failures
            .iter()
            .map(|(cause, n)| format!("{cause} {n}"))
            .collect();
        write!(
            f,
            "thread {} failed ({}), last: {}; {} restarts, now {}; last {}",
            self.thread,
            causes.join(", "),
            self.last_reason,
            self.restarts,
            self.state,
            self.last_reclaim
        )
    }
}

/// Sums over all threads: a summary, not every counter. It holds what the table's total row and
/// the conservation check read, in the order the JSON has always had; a counter of the
/// declaration in [`crate::stats`] is reported per thread and joins these only when the summary
/// needs it (the stack's totals, [`StackTotals`], are all of its counters).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    /// Frames received.
    pub rx: u64,
    /// Frames transmitted.
    pub tx: u64,
    /// Processed by the receiving thread.
    pub processed_local: u64,
    /// Processed by the owner after a handoff.
    pub processed_handoff: u64,
    /// All processed frames.
    pub processed: u64,
    /// Frames handed to another thread.
    pub handed_off: u64,
    /// Copies of received ARP frames made for the other threads' neighbour caches.
    pub link_copies: u64,
    /// Processed frames of flows owned by another thread: the verifying sink's plus the stack's.
    pub misdirected: u64,
    /// Processed frames without a stamp.
    pub unverified: u64,
    /// Flows closed by their owner.
    pub flows_closed: u64,
    /// Drops by reason.
    pub dropped: BTreeMap<String, u64>,
    /// All drops.
    pub dropped_total: u64,
    /// Lookups by result.
    pub lookups: LookupCounts,
    /// Sums of the stack counters; `None` when no stack ran.
    pub stack: Option<StackTotals>,
}

/// `StackTotals` with a field per counter of the stack's declaration but its gauges: the totals
/// add up events, and a gauge is a level. Entries are taken one at a time because a repetition
/// cannot leave out some of its fields.
macro_rules! stack_totals {
    ([$($fields:tt)*]) => {
        /// Sums of the stack counters over all threads and apps.
        #[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
        pub struct StackTotals {
            $($fields)*
        }
    };
    ([$($fields:tt)*] $(#[doc = $doc:literal])* $field:ident gauge, $($rest:tt)*) => {
        stack_totals! { [$($fields)*] $($rest)* }
    };
    ([$($fields:tt)*] $(#[doc = $doc:literal])* $field:ident $kind:ident, $($rest:tt)*) => {
        stack_totals! { [$($fields)* $(#[doc = $doc])* pub $field: u64,] $($rest)* }
    };
}

/// Adds `$value` to `$total` unless the counter is a gauge (see `stack_totals`).
macro_rules! add_unless_gauge {
    (gauge, $total:expr, $value:expr) => {};
    ($kind:ident, $total:expr, $value:expr) => {
        $total += $value
    };
}

/// Makes, from the stack's declaration of its counters (`flowsteer_stack::stack_counters`), the
/// snapshots of a thread's stack and of its apps (one `u64` field per counter, the report key
/// being the field name), their sums, the reading of the counters and the visitors the metrics
/// endpoint publishes them with.
macro_rules! stack_snapshots {
    (
        stack { $(
            $(#[doc = $sdoc:literal])*
            $sfield:ident : $skind:ident $($smetric:literal)?
                $({ $($slabel:ident = $svalue:literal),* })? $(if $sscope:ident)?;
        )* }
        app { $(
            $(#[doc = $adoc:literal])*
            $afield:ident : $akind:ident $($ametric:literal)?
                $({ $($alabel:ident = $avalue:literal),* })? $(if $ascope:ident)?;
        )* }
    ) => {
        /// One app on one thread: what it is and what it counted.
        #[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
        pub struct AppSnapshot {
            /// The app (`tcp-echo`, `udp-echo`, `http`, `discard`), as in the configuration.
            pub kind: &'static str,
            /// `tcp` or `udp`: the connection counters of a UDP app stay zero.
            pub transport: &'static str,
            /// The port it listens on.
            pub port: u16,
            $( $(#[doc = $adoc])* pub $afield: u64, )*
        }

        /// A copy of one thread's stack counters (relaxed reads; exact once the thread has
        /// stopped).
        #[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
        pub struct StackSnapshot {
            /// Thread index.
            pub thread: usize,
            $( $(#[doc = $sdoc])* pub $sfield: u64, )*
            /// The thread's apps, in configuration order.
            pub apps: Vec<AppSnapshot>,
        }

        stack_totals! {
            []
            $( $(#[doc = $sdoc])* $sfield $skind, )*
            $( $(#[doc = $adoc])* $afield $akind, )*
        }

        impl AppSnapshot {
            /// The declared counters; what the app is is left at its default.
            fn read_counters(stats: &AppStats) -> Self {
                AppSnapshot {
                    $( $afield: stats.$afield.get(), )*
                    ..AppSnapshot::default()
                }
            }

            /// Visits each declared counter with its series and value, except those published
            /// by hand.
            pub fn for_each_series(&self, mut f: impl FnMut(&crate::stats::Series, u64)) {
                $(
                    crate::stats::visit_series!(
                        f, self.$afield, $akind $($ametric)?;
                        [$($($alabel = $avalue),*)?]; $($ascope)?
                    );
                )*
            }
        }

        impl StackSnapshot {
            /// The declared counters; the thread and its apps are left at their default.
            fn read_counters(stats: &StackStats) -> Self {
                StackSnapshot {
                    $( $sfield: stats.$sfield.get(), )*
                    ..StackSnapshot::default()
                }
            }

            /// Visits each declared counter with its series and value, except those published
            /// by hand; the apps' are their own.
            pub fn for_each_series(&self, mut f: impl FnMut(&crate::stats::Series, u64)) {
                $(
                    crate::stats::visit_series!(
                        f, self.$sfield, $skind $($smetric)?;
                        [$($($slabel = $svalue),*)?]; $($sscope)?
                    );
                )*
            }
        }

        impl StackTotals {
            /// Adds the counters of one thread's stack and of its apps.
            fn add(&mut self, s: &StackSnapshot) {
                $( add_unless_gauge!($skind, self.$sfield, s.$sfield); )*
                for a in &s.apps {
                    $( add_unless_gauge!($akind, self.$afield, a.$afield); )*
                }
            }
        }
    };
}

flowsteer_stack::stack_counters!(stack_snapshots);

impl AppSnapshot {
    fn take(spec: &AppSpec, stats: &AppStats) -> Self {
        AppSnapshot {
            kind: spec.kind.name(),
            transport: if spec.kind.is_tcp() { "tcp" } else { "udp" },
            port: spec.port,
            ..AppSnapshot::read_counters(stats)
        }
    }
}

impl StackSnapshot {
    /// Reads the counters of `stack`, the stack of thread `thread`.
    pub fn take(thread: usize, stack: &ThreadStack) -> Self {
        let stats: &StackStats = &stack.stats;
        StackSnapshot {
            thread,
            apps: stack
                .apps
                .iter()
                .zip(&stats.apps)
                .map(|(spec, app)| AppSnapshot::take(spec, app))
                .collect(),
            ..StackSnapshot::read_counters(stats)
        }
    }

    /// Snapshots of every thread's stack; empty when no stack runs.
    pub fn all(shared: &Shared) -> Vec<StackSnapshot> {
        shared
            .stacks
            .iter()
            .enumerate()
            .map(|(t, stack)| StackSnapshot::take(t, stack))
            .collect()
    }

    fn sum_apps(&self, field: impl Fn(&AppSnapshot) -> u64) -> u64 {
        self.apps.iter().map(field).sum()
    }

    /// Connections set up, all apps.
    pub fn connections_opened(&self) -> u64 {
        self.sum_apps(|a| a.connections_opened)
    }

    /// Connections ended, all apps.
    pub fn connections_closed(&self) -> u64 {
        self.sum_apps(|a| a.connections_closed)
    }

    /// Connections open now, all apps.
    pub fn connections_active(&self) -> u64 {
        self.sum_apps(|a| a.connections_active)
    }

    /// Payload bytes received, all apps.
    pub fn bytes_in(&self) -> u64 {
        self.sum_apps(|a| a.bytes_in)
    }

    /// Payload bytes sent, all apps.
    pub fn bytes_out(&self) -> u64 {
        self.sum_apps(|a| a.bytes_out)
    }
}

impl StackTotals {
    /// The sums over `stacks`; `None` when there is no stack.
    pub fn of(stacks: &[StackSnapshot]) -> Option<StackTotals> {
        if stacks.is_empty() {
            return None;
        }
        let mut t = StackTotals::default();
        for s in stacks {
            t.add(s);
        }
        Some(t)
    }
}

/// The flow table at the end.
#[derive(Clone, Debug, Serialize)]
pub struct TableReport {
    /// Implementation name.
    pub implementation: String,
    /// Exact rules left.
    pub exact_rules: usize,
    /// Listen rules left.
    pub listen_rules: usize,
    /// Exact-rule capacity.
    pub capacity: usize,
}

/// The pool at the end.
#[derive(Clone, Debug, Serialize)]
pub struct PoolReport {
    /// Buffers in the pool.
    pub capacity: u32,
    /// Free buffers after shutdown.
    pub available: u32,
    /// Each queue's L1 pool, then the shared pool.
    pub pools: Vec<PoolSegmentReport>,
}

/// One pool of the split (a queue's L1 or the shared pool) at the end.
#[derive(Clone, Debug, Serialize)]
pub struct PoolSegmentReport {
    /// `q0`, `q1`, ... or `shared`.
    pub pool: String,
    /// Its buffers.
    pub capacity: u32,
    /// Its free buffers after shutdown (for a DPDK mempool: `rte_mempool_avail_count`).
    pub available: u32,
    /// Buffers its threads took from the shared pool below the low watermark.
    pub l2_borrows: u64,
    /// Allocations of its threads that found no buffer.
    pub alloc_failures: u64,
}

impl PoolReport {
    /// The pool as it is now.
    pub fn of(pool: &PacketPool) -> PoolReport {
        PoolReport {
            capacity: pool.capacity(),
            available: pool.available(),
            pools: pool
                .segments()
                .into_iter()
                .map(|s| PoolSegmentReport {
                    pool: s.tier.to_string(),
                    capacity: s.capacity,
                    available: s.available,
                    l2_borrows: s.borrowed,
                    alloc_failures: s.failures,
                })
                .collect(),
        }
    }
}

/// What the threads beyond the port's receive queues did: they receive only by handoff, so
/// their share of the processed packets and of the connections is what software balancing
/// bought on a port that cannot spread over every thread.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QueuelessShare {
    /// Threads without a receive queue.
    pub threads: usize,
    /// Of all threads.
    pub of: usize,
    /// Their share of the processed packets, in percent.
    pub processed_pct: f64,
    /// Their share of the connections set up, in percent; `None` without a stack.
    pub connections_pct: Option<f64>,
}

impl QueuelessShare {
    /// The share of threads `queues..` in the given counters (totals or one interval's
    /// differences); `None` when every thread has a queue.
    pub fn of(
        queues: usize,
        threads: &[ThreadSnapshot],
        stacks: &[StackSnapshot],
    ) -> Option<QueuelessShare> {
        if queues >= threads.len() {
            return None;
        }
        let pct = |part: u64, whole: u64| {
            if whole == 0 {
                0.0
            } else {
                100.0 * part as f64 / whole as f64
            }
        };
        let processed: u64 = threads.iter().map(ThreadSnapshot::processed).sum();
        let queueless: u64 = threads[queues..]
            .iter()
            .map(ThreadSnapshot::processed)
            .sum();
        let connections_pct = (!stacks.is_empty()).then(|| {
            let all: u64 = stacks.iter().map(StackSnapshot::connections_opened).sum();
            let queueless: u64 = stacks
                .iter()
                .filter(|s| s.thread >= queues)
                .map(StackSnapshot::connections_opened)
                .sum();
            pct(queueless, all)
        });
        Some(QueuelessShare {
            threads: threads.len() - queues,
            of: threads.len(),
            processed_pct: pct(queueless, processed),
            connections_pct,
        })
    }
}

impl std::fmt::Display for QueuelessShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "threads without a queue ({} of {}): {:.1}% of the packets processed",
            self.threads, self.of, self.processed_pct
        )?;
        if let Some(connections) = self.connections_pct {
            write!(f, ", {connections:.1}% of the connections")?;
        }
        Ok(())
    }
}

/// The outcome of the conservation check.
#[derive(Clone, Debug, Serialize)]
pub struct Conservation {
    /// Every check below holds.
    pub ok: bool,
    /// What failed, one line each (empty when ok).
    pub failures: Vec<String>,
}

fn drops_at_receive(t: &ThreadSnapshot) -> u64 {
    t.dropped
        .iter()
        .filter(|(reason, _)| {
            !TRANSMIT_DROPS.contains(&reason.as_str()) && !HANDED_DROPS.contains(&reason.as_str())
        })
        .map(|(_, v)| v)
        .sum()
}

/// Drops of packets handed to thread `t` (by its failure).
fn drops_of_handed(t: &ThreadSnapshot) -> u64 {
    t.dropped
        .iter()
        .filter(|(reason, _)| HANDED_DROPS.contains(&reason.as_str()))
        .map(|(_, v)| v)
        .sum()
}

impl RunReport {
    /// Builds the report from a stopped engine whose threads have exited and whose port rings were
    /// drained back into the pool; the pool count is taken here.
    pub fn build(shared: Arc<Shared>, elapsed: Duration) -> RunReport {
        let per_thread = shared.stats.snapshot();
        let stack = StackSnapshot::all(&shared);
        let traffic = shared.traffic.iter().map(|s| s.snapshot()).collect();
        let flowtable = TableReport {
            implementation: shared.table.name().to_string(),
            exact_rules: shared.table.exact_len(),
            listen_rules: shared.table.listen_len(),
            capacity: shared.table.capacity(),
        };
        let port_dropped = shared
            .port
            .drops()
            .into_iter()
            .map(|reasons| {
                reasons
                    .into_iter()
                    .map(|(reason, n)| (reason.to_string(), n))
                    .collect()
            })
            .collect();
        let config = shared.config.clone();
        let pool = shared.pool.clone();
        let tx_paths = shared.tx_paths.iter().map(ToString::to_string).collect();
        let failures = FailureReport::of(&shared.health);
        drop(shared);
        let pool = PoolReport::of(&pool);

        let mut total = Totals::default();
        for t in &per_thread {
            total.rx += t.rx;
            total.tx += t.tx;
            total.processed_local += t.processed_local;
            total.processed_handoff += t.processed_handoff;
            total.handed_off += t.handed_off_total();
            total.link_copies += t.link_copies;
            total.misdirected += t.misdirected;
            total.unverified += t.unverified;
            total.flows_closed += t.flows_closed;
            for (reason, v) in &t.dropped {
                *total.dropped.entry(reason.clone()).or_default() += v;
            }
            total.lookups.exact += t.lookups.exact;
            total.lookups.listen += t.lookups.listen;
            total.lookups.listen_any += t.lookups.listen_any;
            total.lookups.miss += t.lookups.miss;
        }
        total.processed = total.processed_local + total.processed_handoff;
        total.dropped_total = total.dropped.values().sum();
        total.stack = StackTotals::of(&stack);
        if let Some(stack) = &total.stack {
            total.misdirected += stack.misdirected;
        }

        let conservation = check_conservation(&per_thread, &total, &pool);
        RunReport {
            balance: config.engine.balance.to_string(),
            profile: config.traffic.profile.to_string(),
            threads: per_thread.len(),
            queues: usize::from(config.port.queues),
            tx_paths,
            duration_secs: elapsed.as_secs_f64(),
            per_thread,
            stack,
            total,
            traffic,
            port_dropped,
            flowtable,
            pool,
            conservation,
            failures,
        }
    }

    /// The per-thread table and the conservation lines printed at the end of a run.
    pub fn render_table(&self) -> String {
        let mut out = String::new();
        let secs = self.duration_secs.max(1e-9);
        let _ = writeln!(
            out,
            "{:>6} {:>12} {:>12} {:>12} {:>12} {:>12} {:>11} {:>10} {:>9} {:>6}",
            "thread",
            "rx",
            "local",
            "handed-off",
            "from-swq",
            "processed",
            "misdirected",
            "dropped",
            "Mpps",
            "idle%"
        );
        for t in &self.per_thread {
            let idle = if t.polls == 0 {
                0.0
            } else {
                100.0 * t.idle_polls as f64 / t.polls as f64
            };
            let _ = writeln!(
                out,
                "{:>6} {:>12} {:>12} {:>12} {:>12} {:>12} {:>11} {:>10} {:>9.3} {:>6.1}",
                t.thread,
                t.rx,
                t.processed_local,
                t.handed_off_total(),
                t.processed_handoff,
                t.processed(),
                self.misdirected_of(t),
                t.dropped_total(),
                t.processed() as f64 / secs / 1e6,
                idle
            );
        }
        let tot = &self.total;
        let _ = writeln!(
            out,
            "{:>6} {:>12} {:>12} {:>12} {:>12} {:>12} {:>11} {:>10} {:>9.3}",
            "total",
            tot.rx,
            tot.processed_local,
            tot.handed_off,
            tot.processed_handoff,
            tot.processed,
            tot.misdirected,
            tot.dropped_total,
            tot.processed as f64 / secs / 1e6
        );
        if !tot.dropped.is_empty() {
            let reasons: Vec<String> = tot
                .dropped
                .iter()
                .map(|(r, v)| format!("{r}={v}"))
                .collect();
            let _ = writeln!(out, "dropped by reason: {}", reasons.join(" "));
        }
        let port_drops: Vec<String> = self
            .port_dropped
            .iter()
            .enumerate()
            .flat_map(|(q, reasons)| {
                reasons
                    .iter()
                    .filter(|(_, &n)| n > 0)
                    .map(move |(reason, n)| format!("q{q}:{reason}={n}"))
            })
            .collect();
        if !port_drops.is_empty() {
            let _ = writeln!(
                out,
                "dropped by the port before any thread: {}",
                port_drops.join(" ")
            );
        }
        if let Some(share) = QueuelessShare::of(self.queues, &self.per_thread, &self.stack) {
            let paths: Vec<String> = (self.queues..self.threads)
                .filter_map(|t| Some(format!("t{t} {}", self.tx_paths.get(t)?)))
                .collect();
            let _ = writeln!(out, "{share}; they transmit: {}", paths.join(", "));
        }
        let l = &tot.lookups;
        let _ = writeln!(
            out,
            "lookups: exact {} listen {} listen-any {} miss {}; flows closed {}; unverified {}",
            l.exact, l.listen, l.listen_any, l.miss, tot.flows_closed, tot.unverified
        );
        self.render_stack(&mut out);
        let _ = writeln!(
            out,
            "flow table ({}): {} exact and {} listen rules left after thread exit",
            self.flowtable.implementation, self.flowtable.exact_rules, self.flowtable.listen_rules
        );
        let _ = writeln!(
            out,
            "conservation: rx {} + link copies {} = processed {} + dropped {}: {}",
            tot.rx,
            tot.link_copies,
            tot.processed,
            tot.dropped_total
                - TRANSMIT_DROPS
                    .iter()
                    .filter_map(|r| tot.dropped.get(*r))
                    .sum::<u64>(),
            if self.conservation.ok { "ok" } else { "FAILED" }
        );
        let pools: Vec<String> = self
            .pool
            .pools
            .iter()
            .filter(|p| p.capacity > 0)
            .map(|p| {
                let borrows = if p.pool == Tier::Shared.to_string() {
                    String::new()
                } else {
                    format!("L2 borrows {}, ", p.l2_borrows)
                };
                format!(
                    "{} {}/{} ({borrows}failures {})",
                    p.pool, p.available, p.capacity, p.alloc_failures
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "pool: {} of {} buffers free after shutdown: {}",
            self.pool.available,
            self.pool.capacity,
            pools.join(", ")
        );
        for f in &self.conservation.failures {
            let _ = writeln!(out, "  conservation failure: {f}");
        }
        for failure in &self.failures {
            let _ = writeln!(out, "{failure}");
        }
        out
    }

    /// Misdirected packets of thread `t`: the verifying sink's plus its stack's.
    fn misdirected_of(&self, t: &ThreadSnapshot) -> u64 {
        t.misdirected + self.stack.get(t.thread).map_or(0, |s| s.misdirected)
    }

    /// The stack rows of the final table: one per thread, then the sums; nothing without a stack.
    fn render_stack(&self, out: &mut String) {
        let Some(tot) = &self.total.stack else {
            return;
        };
        let _ = writeln!(
            out,
            "{:>6} {:>9} {:>9} {:>7} {:>13} {:>13} {:>11} {:>9} {:>9} {:>9}  apps",
            "stack",
            "opened",
            "closed",
            "active",
            "bytes-in",
            "bytes-out",
            "misdirected",
            "no-socket",
            "rules+",
            "rules-"
        );
        for s in &self.stack {
            let apps: Vec<String> = s
                .apps
                .iter()
                .map(|a| format!("{}:{}", a.kind, a.port))
                .collect();
            let _ = writeln!(
                out,
                "{:>6} {:>9} {:>9} {:>7} {:>13} {:>13} {:>11} {:>9} {:>9} {:>9}  {}",
                s.thread,
                s.connections_opened(),
                s.connections_closed(),
                s.connections_active(),
                s.bytes_in(),
                s.bytes_out(),
                s.misdirected,
                s.no_socket,
                s.rules_added,
                s.rules_deleted,
                if apps.is_empty() {
                    "-".to_string()
                } else {
                    apps.join(" ")
                }
            );
        }
        let _ = writeln!(
            out,
            "stack: {} connections opened, {} closed; {} requests, {} app errors, {} listen exhausted; \
             {} upstream connects, {} failed; {} rule adds failed; frames in {} out {}, {} not sent \
             for lack of buffers",
            tot.connections_opened,
            tot.connections_closed,
            tot.requests,
            tot.errors,
            tot.listen_exhausted,
            tot.upstream_connects,
            tot.upstream_failed,
            tot.rule_add_failed,
            tot.frames_in,
            tot.frames_out,
            tot.tx_no_buffer
        );
        let _ = writeln!(
            out,
            "stack timeouts: {} idle, {} keep-alive; {} TIME-WAIT sockets reused; {} segments held for \
             what precedes them ({} in vain); {} udp replies dropped for an unknown link address",
            tot.idle_timeouts,
            tot.keepalive_timeouts,
            tot.time_wait_reused,
            tot.early_segments_held,
            tot.early_segments_expired,
            tot.unresolved_drops
        );
    }
}

/// The conservation check [`RunReport::build`] makes, on the counters of threads that have
/// stopped and on their pool once every buffer should be back: for a harness that drives the
/// threads' steps itself (the `stack_thread` fuzz target checks it after every input). Not part
/// of the API.
#[doc(hidden)]
pub fn check_counters(threads: &[ThreadSnapshot], pool: &PacketPool) -> Conservation {
    let total = Totals {
        rx: threads.iter().map(|t| t.rx).sum(),
        processed: threads
            .iter()
            .map(|t| t.processed_local + t.processed_handoff)
            .sum(),
        ..Totals::default()
    };
    check_conservation(threads, &total, &PoolReport::of(pool))
}

fn check_conservation(
    threads: &[ThreadSnapshot],
    total: &Totals,
    pool: &PoolReport,
) -> Conservation {
    let mut failures = Vec::new();
    for t in threads {
        let accounted = t.processed_local + t.handed_off_total() + drops_at_receive(t);
        if t.rx + t.link_copies != accounted {
            failures.push(format!(
                "thread {}: rx {} + link copies {} != processed locally {} + handed off {} + dropped {}",
                t.thread,
                t.rx,
                t.link_copies,
                t.processed_local,
                t.handed_off_total(),
                drops_at_receive(t)
            ));
        }
        let handed_to_me: u64 = threads.iter().map(|from| from.handed_off[t.thread]).sum();
        if handed_to_me != t.processed_handoff + drops_of_handed(t) {
            failures.push(format!(
                "thread {}: {} packets were handed to it but it processed {} from its queue \
                 and dropped {} when it failed",
                t.thread,
                handed_to_me,
                t.processed_handoff,
                drops_of_handed(t)
            ));
        }
    }
    let dropped_at_receive: u64 = threads
        .iter()
        .map(|t| drops_at_receive(t) + drops_of_handed(t))
        .sum();
    let link_copies: u64 = threads.iter().map(|t| t.link_copies).sum();
    if total.rx + link_copies != total.processed + dropped_at_receive {
        failures.push(format!(
            "total: rx {} + link copies {} != processed {} + dropped {}",
            total.rx, link_copies, total.processed, dropped_at_receive
        ));
    }
    if pool.available != pool.capacity {
        failures.push(format!(
            "pool: {} of {} buffers free after shutdown ({} leaked)",
            pool.available,
            pool.capacity,
            pool.capacity - pool.available
        ));
    }
    // Each buffer back in its own pool: a buffer returned to another would leave one short and
    // one over (an over-full pool shows as full, so the short one is what fails).
    for p in &pool.pools {
        if p.available != p.capacity {
            failures.push(format!(
                "pool {}: {} of {} buffers free after shutdown",
                p.pool, p.available, p.capacity
            ));
        }
    }
    Conservation {
        ok: failures.is_empty(),
        failures,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use flowsteer_config::{App, AppKind, Config, Profile};

    use crate::engine::{run, RunOptions};

    fn run_quiet(cfg: &Config) -> super::RunReport {
        let report = run(cfg, RunOptions::quiet(Duration::from_millis(300))).expect("engine runs");
        assert!(report.conservation.ok, "{}", report.render_table());
        report
    }

    #[test]
    fn a_run_with_apps_reports_every_thread_stack_in_the_table_and_the_json() {
        let mut cfg = Config::default();
        cfg.traffic.profile = Profile::None;
        cfg.metrics.enabled = false;
        cfg.stack.app = vec![
            App::new(AppKind::TcpEcho, 7),
            App::new(AppKind::Http, 8080).on_threads([1]),
        ];
        let report = run_quiet(&cfg);

        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["conservation"]["ok"], true);
        let stack = json["stack"].as_array().expect("a stack section");
        assert_eq!(stack.len(), 2);
        assert_eq!(stack[0]["apps"].as_array().unwrap().len(), 1);
        assert_eq!(stack[1]["apps"][1]["kind"], "http");
        assert_eq!(stack[1]["apps"][1]["port"], 8080);
        for field in [
            "frames_in",
            "frames_out",
            "tx_no_buffer",
            "misdirected",
            "no_socket",
            "rules_added",
            "rules_deleted",
            "rule_add_failed",
        ] {
            assert_eq!(stack[0][field], 0, "{field} in {}", stack[0]);
        }
        for field in [
            "connections_opened",
            "connections_closed",
            "connections_active",
            "listen_exhausted",
            "bytes_in",
            "bytes_out",
            "requests",
            "errors",
            "upstream_connects",
            "upstream_failed",
        ] {
            assert_eq!(stack[1]["apps"][0][field], 0, "{field} in {}", stack[1]);
        }
        let total = &json["total"]["stack"];
        for field in [
            "connections_opened",
            "connections_closed",
            "misdirected",
            "no_socket",
            "rules_added",
            "rules_deleted",
            "rule_add_failed",
        ] {
            assert_eq!(total[field], 0, "{field} in {total}");
        }
        assert_eq!(json["total"]["link_copies"], 0);

        let table = report.render_table();
        assert!(table.contains("tcp-echo:7 http:8080"), "{table}");
        assert!(
            table.contains("stack: 0 connections opened, 0 closed"),
            "{table}"
        );
        assert!(
            table.contains("conservation: rx 0 + link copies 0 = processed 0 + dropped 0: ok"),
            "{table}"
        );
    }

    #[test]
    fn a_generator_run_has_no_stack_rows() {
        let mut cfg = Config::default();
        cfg.traffic.flows = 64;
        cfg.metrics.enabled = false;
        let report = run_quiet(&cfg);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["stack"].as_array().map(Vec::len), Some(0));
        assert!(json["total"]["stack"].is_null());
        let table = report.render_table();
        assert!(!table.contains("stack"), "{table}");
        assert!(table.contains("+ link copies 0 ="), "{table}");
    }

    #[test]
    fn the_share_of_the_threads_without_a_queue_is_in_the_table() {
        use super::QueuelessShare;
        use crate::stats::ThreadSnapshot;

        let thread = |t: usize, processed: u64| ThreadSnapshot {
            thread: t,
            processed_handoff: processed,
            ..ThreadSnapshot::default()
        };
        let threads = [thread(0, 30), thread(1, 30), thread(2, 40)];
        let share = QueuelessShare::of(2, &threads, &[]).expect("thread 2 has no queue");
        assert_eq!((share.threads, share.of), (1, 3));
        assert!((share.processed_pct - 40.0).abs() < 1e-9);
        assert_eq!(share.connections_pct, None);
        assert_eq!(
            share.to_string(),
            "threads without a queue (1 of 3): 40.0% of the packets processed"
        );
        assert_eq!(QueuelessShare::of(3, &threads, &[]), None);
        let idle = QueuelessShare::of(1, &[thread(0, 0), thread(1, 0)], &[]).expect("share");
        assert_eq!(
            idle.processed_pct, 0.0,
            "no packets: no share, no division by zero"
        );
    }
}
