//! The end-of-run report: every counter per thread and in total, the conservation check, the
//! final table printed to the terminal and the JSON written by `--report`.
//!
//! Conservation (DESIGN.md): every received packet ends in exactly one counter. The copies of
//! ARP frames a thread makes for the others' neighbour caches enter the count like received
//! frames (`link_copies`).
//! - per thread: `rx + link_copies == processed_local + handed_off + dropped at receive`
//! - per destination: what all threads handed to thread t `== processed_handoff` of t
//! - in total: `rx + link_copies == processed + dropped`
//! - the pool is back to its full count once the port and the threads are gone.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::engine::Shared;
use crate::stats::{LookupCounts, ThreadSnapshot};

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
    /// Wall time of the run.
    pub duration_secs: f64,
    /// Per-thread counters.
    pub per_thread: Vec<ThreadSnapshot>,
    /// Sums over threads.
    pub total: Totals,
    /// Traffic generator counters per queue.
    pub traffic: Vec<BTreeMap<String, u64>>,
    /// The flow table after every thread exited (each exit deletes the thread's rules).
    pub flowtable: TableReport,
    /// The buffer pool after shutdown.
    pub pool: PoolReport,
    /// The conservation check.
    pub conservation: Conservation,
}

/// Sums over all threads.
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
    /// Processed frames of flows owned by another thread.
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
        .filter(|(reason, _)| reason != "tx_full")
        .map(|(_, v)| v)
        .sum()
}

impl RunReport {
    /// Builds the report from a stopped engine whose threads have exited and whose port rings were
    /// drained back into the pool; the pool count is taken here.
    pub fn build(shared: Arc<Shared>, elapsed: Duration) -> RunReport {
        let per_thread = shared.stats.snapshot();
        let traffic = shared.traffic.iter().map(|s| s.snapshot()).collect();
        let flowtable = TableReport {
            implementation: shared.table.name().to_string(),
            exact_rules: shared.table.exact_len(),
            listen_rules: shared.table.listen_len(),
            capacity: shared.table.capacity(),
        };
        let config = shared.config.clone();
        let pool = shared.pool.clone();
        drop(shared);
        let pool = PoolReport {
            capacity: pool.capacity(),
            available: pool.available(),
        };

        let mut total = Totals::default();
        for t in &per_thread {
            total.rx += t.rx;
            total.tx += t.tx;
            total.processed_local += t.processed_local;
            total.processed_handoff += t.processed_handoff;
            total.handed_off += t.handed_off_total();
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

        let conservation = check_conservation(&per_thread, &total, &pool);
        RunReport {
            balance: config.engine.balance.to_string(),
            profile: config.traffic.profile.to_string(),
            threads: per_thread.len(),
            queues: usize::from(config.port.queues),
            duration_secs: elapsed.as_secs_f64(),
            per_thread,
            total,
            traffic,
            flowtable,
            pool,
            conservation,
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
                t.misdirected,
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
        let l = &tot.lookups;
        let _ = writeln!(
            out,
            "lookups: exact {} listen {} listen-any {} miss {}; flows closed {}; unverified {}",
            l.exact, l.listen, l.listen_any, l.miss, tot.flows_closed, tot.unverified
        );
        let _ = writeln!(
            out,
            "flow table ({}): {} exact and {} listen rules left after thread exit",
            self.flowtable.implementation, self.flowtable.exact_rules, self.flowtable.listen_rules
        );
        let _ = writeln!(
            out,
            "conservation: rx {} = processed {} + dropped {}: {}",
            tot.rx,
            tot.processed,
            tot.dropped_total - tot.dropped.get("tx_full").copied().unwrap_or(0),
            if self.conservation.ok { "ok" } else { "FAILED" }
        );
        let _ = writeln!(
            out,
            "pool: {} of {} buffers free after shutdown",
            self.pool.available, self.pool.capacity
        );
        for f in &self.conservation.failures {
            let _ = writeln!(out, "  conservation failure: {f}");
        }
        out
    }
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
        if handed_to_me != t.processed_handoff {
            failures.push(format!(
                "thread {}: {} packets were handed to it but it processed {} from its queue",
                t.thread, handed_to_me, t.processed_handoff
            ));
        }
    }
    let dropped_at_receive: u64 = threads.iter().map(drops_at_receive).sum();
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
    Conservation {
        ok: failures.is_empty(),
        failures,
    }
}
