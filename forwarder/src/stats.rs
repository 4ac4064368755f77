//! Per-thread counters of the engine.
//!
//! Every counter has exactly one writer: the stack thread that owns the block. The writer publishes
//! with a relaxed load + store (no read-modify-write, so no `lock` prefix and no cache-line
//! ping-pong), once per burst rather than once per packet. Readers (the status line, the metrics
//! exporter, the final report) take relaxed snapshots and sum across threads; a snapshot taken while
//! threads run may be a few bursts behind, and is exact once the threads have stopped.
//!
//! Blocks are cache-line padded so two threads never write the same line.

use crossbeam_utils::CachePadded;
use flowsteer_nic::wire::{ParseError, UnkeyedReason};
use serde::Serialize;

/// The single-writer counter every per-thread block uses (the stack's, shared).
pub use flowsteer_stack::Counter;

/// How the series of one declared counter is published: what the visitors the declarations
/// generate (`ThreadSnapshot::for_each_series`, and the stack's in [`crate::report`]) hand to the
/// metrics endpoint, which then needs no list of counters of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Series {
    /// The Prometheus metric.
    pub metric: &'static str,
    /// Labels after the thread's (and an app's `app` and `port`), as declared.
    pub labels: &'static [(&'static str, &'static str)],
    /// A level, set rather than accumulated.
    pub gauge: bool,
    /// When the series exists.
    pub scope: Scope,
}

/// When a declared series exists: a series that could only ever be zero is left out, so its
/// absence tells what the run has (no stack, no TCP app) rather than a zero that looks measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Always.
    Always,
    /// Only when the threads run a stack (`[[stack.app]]` entries).
    Stack,
    /// Only for TCP apps.
    Tcp,
    /// Only for UDP apps.
    Udp,
    /// Only for `http` apps.
    Http,
    /// Only for `tcp-proxy` apps.
    TcpProxy,
}

/// One declared counter's visit: `f(&series, value)`, or nothing for a counter the publisher
/// folds into another series by hand (`by_hand`). Shared by the declarations of this module and
/// of [`crate::report`], so that both read the one grammar `flowsteer_stack::stack_counters`
/// describes.
macro_rules! visit_series {
    ($f:ident, $value:expr, by_hand; [$($label:ident = $lvalue:literal),*]; $($scope:ident)?) => {};
    (
        $f:ident, $value:expr, $kind:ident $metric:literal;
        [$($label:ident = $lvalue:literal),*]; $($scope:ident)?
    ) => {
        $f(
            &$crate::stats::Series {
                metric: $metric,
                labels: &[$((stringify!($label), $lvalue)),*],
                gauge: $crate::stats::visit_series!(@gauge $kind),
                scope: $crate::stats::visit_series!(@scope $($scope)?),
            },
            $value,
        )
    };
    (@gauge counter) => { false };
    (@gauge gauge) => { true };
    (@scope) => { $crate::stats::Scope::Always };
    (@scope stack) => { $crate::stats::Scope::Stack };
    (@scope tcp) => { $crate::stats::Scope::Tcp };
    (@scope udp) => { $crate::stats::Scope::Udp };
    (@scope http) => { $crate::stats::Scope::Http };
    (@scope tcp_proxy) => { $crate::stats::Scope::TcpProxy };
}
pub(crate) use visit_series;

/// Declares the per-thread counters once and makes from the declaration [`ThreadStats`] (one
/// plain [`Counter`] field each, which the owner thread writes as before), [`ThreadSnapshot`]
/// (one `u64` field each, the report key being the field name), the reading of one into the
/// other and the visitor of the metrics endpoint. A counter added to a `counters` block is thus
/// counted, reported and published without another edit; only the README documents it.
///
/// A counter is `/// doc` `field: kind "metric" { label = "value", .. } if scope;`, the grammar
/// of `flowsteer_stack::stack_counters` (`kind` is `counter` or `by_hand`; `if stack`: the
/// series exists only when the threads run a stack). The `then` blocks are snapshot fields
/// written by hand, in their place: the report's JSON keeps its order. `drops` are counters of
/// `flowsteer_dropped_packets_total`, their field name the `reason` label and the key in the
/// snapshot's `dropped`.
macro_rules! thread_counters {
    (
        $(#[$stats_meta:meta])*
        pub struct $stats:ident { $($stats_fields:tt)* }
        $(#[$snap_meta:meta])*
        pub struct $snap:ident { $($snap_fields:tt)* }
        $(
            counters { $(
                $(#[doc = $doc:literal])*
                $field:ident : $kind:ident $($metric:literal)?
                    $({ $($label:ident = $value:literal),* })? $(if $scope:ident)?;
            )* }
            $( then { $($then:tt)* } )?
        )*
        drops { $(
            $(#[doc = $drop_doc:literal])*
            $drop:ident $(if $drop_scope:ident)?;
        )* }
    ) => {
        $(#[$stats_meta])*
        pub struct $stats {
            $( $( $(#[doc = $doc])* pub $field: Counter, )* )*
            $( $(#[doc = $drop_doc])* pub $drop: Counter, )*
            $($stats_fields)*
        }

        $(#[$snap_meta])*
        pub struct $snap {
            $($snap_fields)*
            $( $( $(#[doc = $doc])* pub $field: u64, )* $( $($then)* )? )*
        }

        impl $stats {
            /// The declared counters; the snapshot's other fields are left at their default.
            fn read_counters(&self) -> $snap {
                $snap {
                    $( $( $field: self.$field.get(), )* )*
                    ..Default::default()
                }
            }

            /// Visits each drop counter: its reason, when its series exists, the counter.
            pub fn for_each_drop(&self, mut f: impl FnMut(&'static str, Scope, &Counter)) {
                $( f(stringify!($drop), visit_series!(@scope $($drop_scope)?), &self.$drop); )*
            }
        }

        impl $snap {
            /// Visits each declared counter with its series and value, except those published
            /// by hand.
            pub fn for_each_series(&self, mut f: impl FnMut(&Series, u64)) {
                $( $(
                    visit_series!(
                        f, self.$field, $kind $($metric)?; [$($($label = $value),*)?]; $($scope)?
                    );
                )* )*
            }
        }
    };
}

thread_counters! {
    /// Counters of one stack thread.
    #[derive(Debug, Default)]
    pub struct ThreadStats {
        // Outside the declaration: vectors by destination thread and by reason, published and
        // reported one element each, and the lookups, a partition by result reported together
        // (`LookupCounts`); `snapshot` and `metrics` spell them out.
        /// Frames this thread put on another thread's software queue, indexed by destination
        /// thread.
        pub handed_off: Vec<Counter>,
        /// Frames it could not hand off because the destination's queue was full, by destination.
        pub swq_full: Vec<Counter>,
        /// Malformed frames by parser reason (index into `MALFORMED_REASONS`).
        pub malformed: Vec<Counter>,
        /// Frames that cannot be keyed and were processed on the receiving thread, by reason.
        pub unkeyed: [Counter; UnkeyedReason::ALL.len()],
        /// Flow-table lookups that hit an exact rule.
        pub lookup_exact: Counter,
        /// Lookups that hit a listen rule with a local address.
        pub lookup_listen: Counter,
        /// Lookups that hit a wildcard listen rule.
        pub lookup_listen_any: Counter,
        /// Lookups that found nothing.
        pub lookup_miss: Counter,
    }

    /// A copy of one thread's counters.
    #[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
    pub struct ThreadSnapshot {
        /// Thread index.
        pub thread: usize,
    }

    counters {
        /// Frames received from the thread's NIC queue.
        rx: counter "flowsteer_rx_packets_total";
        /// Frames transmitted on the thread's NIC queue (a queue pair or a transmit-only queue),
        /// those it relayed for other threads included.
        tx: counter "flowsteer_tx_packets_total";
        /// Frames a thread without a transmit queue of its own handed to its relaying thread's
        /// software transmit queue.
        tx_handed: counter "flowsteer_tx_handed_packets_total";
        /// Frames this thread took from its software transmit queue, handed by threads without
        /// a transmit queue, to send on its own queue (counted again in `tx` or `tx_full`).
        tx_relayed: counter "flowsteer_tx_relayed_packets_total";
        /// Received frames this thread processed itself.
        processed_local: counter "flowsteer_processed_packets_total" { path = "local" };
        /// Frames taken from this thread's software queue and processed (`metrics` publishes them
        /// a second time, as what the queue delivered).
        processed_handoff: counter "flowsteer_processed_packets_total" { path = "handoff" };
    }
    then {
        /// Frames handed to each destination thread.
        pub handed_off: Vec<u64>,
        /// Frames not handed off because the destination queue was full, per destination.
        pub swq_full: Vec<u64>,
    }
    counters {
        /// Processed frames whose flow belongs to another thread. Published with the stack's
        /// misdirected packets added: one series says whether a packet reached a thread that
        /// does not own its flow, whichever consumer ran.
        misdirected: by_hand;
        /// Processed frames that carried no generator stamp (injected frames); ownership not
        /// verifiable.
        unverified: counter "flowsteer_unverified_packets_total";
        /// Flows the owner closed (their exact rule deleted) when it processed the last packet.
        flows_closed: counter "flowsteer_flows_closed_total";
    }
    then {
        /// Drops by reason (only non-zero reasons).
        pub dropped: Vec<(String, u64)>,
        /// Unkeyed frames by reason (processed locally; a subset of `processed_local`).
        pub unkeyed: Vec<(String, u64)>,
    }
    counters {
        /// ARP frames received (processed on the receiving thread).
        arp: counter "flowsteer_arp_packets_total";
        /// IPv6 neighbour solicitations and advertisements received (processed on the receiving
        /// thread).
        ndp: counter "flowsteer_ndp_packets_total";
        /// Copies of received neighbour messages (ARP, IPv6 neighbour discovery) made for the
        /// other threads' neighbour caches; each copy is then handed off or dropped like a
        /// received frame. Only stacks have neighbour caches.
        link_copies: counter "flowsteer_link_copies_total" if stack;
    }
    then {
        /// Flow-table lookups by result.
        pub lookups: LookupCounts,
    }
    counters {
        /// Loop iterations that received nothing and drained nothing.
        idle_polls: counter "flowsteer_idle_polls_total";
        /// Loop iterations.
        polls: counter "flowsteer_polls_total";
        /// Idle waits (`engine.idle = "wait"`) the kernel refused; the thread polled instead.
        wait_errors: counter "flowsteer_idle_wait_errors_total";
        /// Packets whose steering classification, kept in the packet buffer, the stack or the
        /// verifying sink reused instead of parsing again.
        parse_reused: counter "flowsteer_parse_reused_total";
    }
    drops {
        /// Lookups missed with `miss = "drop"`.
        no_owner;
        /// Lookups that named a thread that does not exist.
        owner_invalid;
        /// Frames the port's transmit queue had no room for.
        tx_full;
        /// Frames the relaying thread's software transmit queue had no room for.
        tx_swq_full;
        /// Copies (`link_copies`) that found no free buffer; only stacks make copies.
        no_buffer if stack;
        /// Packets for a thread that had failed (not serving until restarted), freed by the
        /// thread that would have handed them over, or kept for a port only the failed thread
        /// serves (`health.rs`).
        owner_failed;
        /// Received packets a thread held when it failed (in its receive burst or in
        /// steering, before processing), freed by its reclaim.
        failed_in_flight;
        /// Packets handed to a thread that failed before it processed them (in its software
        /// queue, or taken from it), freed by its reclaim: counted against what was handed to
        /// it, not against its own receive.
        failed_queue;
    }
}

/// The drop reasons of transmitted frames: outside the receive side's conservation (a frame
/// the stack made was never received).
pub const TRANSMIT_DROPS: [&str; 2] = ["tx_full", "tx_swq_full"];

/// The drop reason of packets handed to a thread and dropped by it: in the conservation of
/// what was handed to it, not of what it received.
pub const HANDED_DROPS: [&str; 1] = ["failed_queue"];

/// Parser reasons, in the order of `ThreadStats::malformed`.
pub fn malformed_reasons() -> &'static [&'static str] {
    &ParseError::REASONS
}

/// Position of `reason` in `UnkeyedReason::ALL`, the order of `ThreadStats::unkeyed`.
fn unkeyed_index(reason: UnkeyedReason) -> usize {
    match reason {
        UnkeyedReason::NonFirstFragment => 0,
        UnkeyedReason::UnknownEthertype => 1,
        UnkeyedReason::UnsupportedL4 => 2,
    }
}

impl ThreadStats {
    /// Counters for one thread of an engine with `threads` threads.
    pub fn new(threads: usize) -> Self {
        let counters = |n: usize| (0..n).map(|_| Counter::default()).collect::<Vec<_>>();
        ThreadStats {
            handed_off: counters(threads),
            swq_full: counters(threads),
            malformed: counters(malformed_reasons().len()),
            ..ThreadStats::default()
        }
    }

    /// Counts one malformed frame.
    pub fn count_malformed(&self, err: &ParseError) {
        self.malformed[err.reason_index()].add(1);
    }

    /// Counts one unkeyed frame.
    pub fn count_unkeyed(&self, reason: UnkeyedReason) {
        self.unkeyed[unkeyed_index(reason)].add(1);
    }

    /// A consistent-enough copy for reports (exact once the thread has stopped).
    pub fn snapshot(&self, thread: usize) -> ThreadSnapshot {
        let mut dropped = Vec::new();
        let mut push = |reason: &str, v: u64| {
            if v != 0 {
                dropped.push((reason.to_string(), v));
            }
        };
        for (reason, c) in malformed_reasons().iter().zip(&self.malformed) {
            push(reason, c.get());
        }
        push("swq_full", self.swq_full.iter().map(Counter::get).sum());
        self.for_each_drop(|reason, _, c| push(reason, c.get()));
        ThreadSnapshot {
            thread,
            handed_off: self.handed_off.iter().map(Counter::get).collect(),
            swq_full: self.swq_full.iter().map(Counter::get).collect(),
            dropped,
            unkeyed: UnkeyedReason::ALL
                .iter()
                .zip(&self.unkeyed)
                .filter(|(_, c)| c.get() != 0)
                .map(|(r, c)| (r.as_str().to_string(), c.get()))
                .collect(),
            lookups: LookupCounts {
                exact: self.lookup_exact.get(),
                listen: self.lookup_listen.get(),
                listen_any: self.lookup_listen_any.get(),
                miss: self.lookup_miss.get(),
            },
            ..self.read_counters()
        }
    }
}

/// The counters of every thread, one padded block each.
#[derive(Debug)]
pub struct EngineStats {
    threads: Box<[CachePadded<ThreadStats>]>,
}

impl EngineStats {
    /// Blocks for `threads` threads.
    pub fn new(threads: usize) -> Self {
        EngineStats {
            threads: (0..threads)
                .map(|_| CachePadded::new(ThreadStats::new(threads)))
                .collect(),
        }
    }

    /// The block of thread `t`.
    pub fn thread(&self, t: usize) -> &ThreadStats {
        &self.threads[t]
    }

    /// Number of threads.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// True when there are no threads.
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// Snapshots of every thread.
    pub fn snapshot(&self) -> Vec<ThreadSnapshot> {
        self.threads
            .iter()
            .enumerate()
            .map(|(t, s)| s.snapshot(t))
            .collect()
    }
}

/// Lookups by result.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct LookupCounts {
    /// Exact 5-tuple rule hits.
    pub exact: u64,
    /// Listen rule (local ip, port) hits.
    pub listen: u64,
    /// Listen rule (any ip, port) hits.
    pub listen_any: u64,
    /// Misses.
    pub miss: u64,
}

impl ThreadSnapshot {
    /// Frames handed to other threads.
    pub fn handed_off_total(&self) -> u64 {
        self.handed_off.iter().sum()
    }

    /// Frames dropped, all reasons.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(|(_, v)| v).sum()
    }

    /// Frames processed, local and handed over.
    pub fn processed(&self) -> u64 {
        self.processed_local + self.processed_handoff
    }
}
