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

/// Why a packet was dropped. Each reason is one label value of `flowsteer_dropped_packets_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The frame failed to parse; the label is the parser's reason.
    Malformed(&'static str),
    /// The owner's software queue was full (counted at the sending thread).
    SwqFull,
    /// Lookup missed and `engine.miss = "drop"`.
    NoOwner,
    /// The flow table named an owner that is not a running stack thread.
    OwnerInvalid,
    /// The port's transmit queue was full.
    TxFull,
    /// A copy of a link broadcast (ARP) for another thread found no free buffer.
    NoBuffer,
}

impl DropReason {
    /// The metric label value.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Malformed(reason) => reason,
            DropReason::SwqFull => "swq_full",
            DropReason::NoOwner => "no_owner",
            DropReason::OwnerInvalid => "owner_invalid",
            DropReason::TxFull => "tx_full",
            DropReason::NoBuffer => "no_buffer",
        }
    }
}

/// Counters of one stack thread.
#[derive(Debug)]
pub struct ThreadStats {
    /// Frames received from the thread's NIC queue.
    pub rx: Counter,
    /// Frames transmitted on the thread's NIC queue.
    pub tx: Counter,
    /// Received frames this thread processed itself.
    pub processed_local: Counter,
    /// Frames taken from this thread's software queue and processed.
    pub processed_handoff: Counter,
    /// Frames this thread put on another thread's software queue, indexed by destination thread.
    pub handed_off: Vec<Counter>,
    /// Frames it could not hand off because the destination's queue was full, by destination.
    pub swq_full: Vec<Counter>,
    /// Processed frames whose flow belongs to another thread.
    pub misdirected: Counter,
    /// Processed frames that carried no generator stamp (injected frames); ownership not verifiable.
    pub unverified: Counter,
    /// Flows the owner closed (their exact rule deleted) when it processed the last packet.
    pub flows_closed: Counter,
    /// Malformed frames by parser reason (index into `MALFORMED_REASONS`).
    pub malformed: Vec<Counter>,
    /// Lookups missed with `miss = "drop"`.
    pub no_owner: Counter,
    /// Lookups that named a thread that does not exist.
    pub owner_invalid: Counter,
    /// Transmit drops.
    pub tx_full: Counter,
    /// Frames that cannot be keyed and were processed on the receiving thread, by reason.
    pub unkeyed: [Counter; UnkeyedReason::ALL.len()],
    /// ARP frames received (processed on the receiving thread).
    pub arp: Counter,
    /// IPv6 neighbour solicitations and advertisements received (processed on the receiving
    /// thread).
    pub ndp: Counter,
    /// Copies of received neighbour messages (ARP, IPv6 neighbour discovery) made for the other
    /// threads' neighbour caches; each copy is then handed off or dropped like a received frame.
    pub link_copies: Counter,
    /// Copies that found no free buffer.
    pub no_buffer: Counter,
    /// Idle waits (`engine.idle = "wait"`) the kernel refused; the thread polled instead.
    pub wait_errors: Counter,
    /// Flow-table lookups that hit an exact rule.
    pub lookup_exact: Counter,
    /// Lookups that hit a listen rule with a local address.
    pub lookup_listen: Counter,
    /// Lookups that hit a wildcard listen rule.
    pub lookup_listen_any: Counter,
    /// Lookups that found nothing.
    pub lookup_miss: Counter,
    /// Loop iterations that received nothing and drained nothing.
    pub idle_polls: Counter,
    /// Loop iterations.
    pub polls: Counter,
}

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
            rx: Counter::default(),
            tx: Counter::default(),
            processed_local: Counter::default(),
            processed_handoff: Counter::default(),
            handed_off: counters(threads),
            swq_full: counters(threads),
            misdirected: Counter::default(),
            unverified: Counter::default(),
            flows_closed: Counter::default(),
            malformed: counters(malformed_reasons().len()),
            no_owner: Counter::default(),
            owner_invalid: Counter::default(),
            tx_full: Counter::default(),
            unkeyed: Default::default(),
            arp: Counter::default(),
            ndp: Counter::default(),
            link_copies: Counter::default(),
            no_buffer: Counter::default(),
            wait_errors: Counter::default(),
            lookup_exact: Counter::default(),
            lookup_listen: Counter::default(),
            lookup_listen_any: Counter::default(),
            lookup_miss: Counter::default(),
            idle_polls: Counter::default(),
            polls: Counter::default(),
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
        for (reason, c) in malformed_reasons().iter().zip(&self.malformed) {
            if c.get() != 0 {
                dropped.push((DropReason::Malformed(reason).label(), c.get()));
            }
        }
        let swq_full: u64 = self.swq_full.iter().map(Counter::get).sum();
        for (reason, v) in [
            (DropReason::SwqFull, swq_full),
            (DropReason::NoOwner, self.no_owner.get()),
            (DropReason::OwnerInvalid, self.owner_invalid.get()),
            (DropReason::TxFull, self.tx_full.get()),
            (DropReason::NoBuffer, self.no_buffer.get()),
        ] {
            if v != 0 {
                dropped.push((reason.label(), v));
            }
        }
        ThreadSnapshot {
            thread,
            rx: self.rx.get(),
            tx: self.tx.get(),
            processed_local: self.processed_local.get(),
            processed_handoff: self.processed_handoff.get(),
            handed_off: self.handed_off.iter().map(Counter::get).collect(),
            swq_full: self.swq_full.iter().map(Counter::get).collect(),
            misdirected: self.misdirected.get(),
            unverified: self.unverified.get(),
            flows_closed: self.flows_closed.get(),
            dropped: dropped
                .into_iter()
                .map(|(r, v)| (r.to_string(), v))
                .collect(),
            unkeyed: UnkeyedReason::ALL
                .iter()
                .zip(&self.unkeyed)
                .filter(|(_, c)| c.get() != 0)
                .map(|(r, c)| (r.as_str().to_string(), c.get()))
                .collect(),
            arp: self.arp.get(),
            ndp: self.ndp.get(),
            link_copies: self.link_copies.get(),
            lookups: LookupCounts {
                exact: self.lookup_exact.get(),
                listen: self.lookup_listen.get(),
                listen_any: self.lookup_listen_any.get(),
                miss: self.lookup_miss.get(),
            },
            idle_polls: self.idle_polls.get(),
            polls: self.polls.get(),
            wait_errors: self.wait_errors.get(),
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

/// A copy of one thread's counters.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ThreadSnapshot {
    /// Thread index.
    pub thread: usize,
    /// Frames received from the NIC queue.
    pub rx: u64,
    /// Frames transmitted.
    pub tx: u64,
    /// Received frames processed by this thread.
    pub processed_local: u64,
    /// Frames taken from the software queue and processed.
    pub processed_handoff: u64,
    /// Frames handed to each destination thread.
    pub handed_off: Vec<u64>,
    /// Frames not handed off because the destination queue was full, per destination.
    pub swq_full: Vec<u64>,
    /// Processed frames of flows owned by another thread.
    pub misdirected: u64,
    /// Processed frames whose owner could not be verified (no stamp).
    pub unverified: u64,
    /// Flows closed by this thread.
    pub flows_closed: u64,
    /// Drops by reason (only non-zero reasons).
    pub dropped: Vec<(String, u64)>,
    /// Unkeyed frames by reason (processed locally; a subset of `processed_local`).
    pub unkeyed: Vec<(String, u64)>,
    /// ARP frames (a subset of `processed_local`).
    pub arp: u64,
    /// IPv6 neighbour solicitations and advertisements (a subset of `processed_local`).
    pub ndp: u64,
    /// Copies of neighbour messages made for the other threads.
    pub link_copies: u64,
    /// Flow-table lookups by result.
    pub lookups: LookupCounts,
    /// Idle loop iterations.
    pub idle_polls: u64,
    /// Loop iterations.
    pub polls: u64,
    /// Idle waits the kernel refused (`engine.idle = "wait"`).
    pub wait_errors: u64,
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
