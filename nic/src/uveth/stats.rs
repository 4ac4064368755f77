//! Per-queue counters of the user-space NIC and their snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

/// Counters of one queue, split by writer so that no line is written from two sides.
#[derive(Default)]
pub(super) struct QueueCounters {
    /// Written by `inject`, which any thread may call: atomic adds.
    pub(super) wire: CachePadded<WireCounters>,
    /// Written only by the queue pair's current owner: plain load + store, no read-modify-write.
    pub(super) owner: CachePadded<OwnerCounters>,
}

#[derive(Default)]
pub(super) struct WireCounters {
    pub(super) rx_injected: AtomicU64,
    pub(super) rx_dropped_full: AtomicU64,
    pub(super) rx_dropped_no_buffer: AtomicU64,
    pub(super) rx_dropped_oversize: AtomicU64,
}

#[derive(Default)]
pub(super) struct OwnerCounters {
    pub(super) rx_generated: AtomicU64,
    pub(super) tx: AtomicU64,
    pub(super) tx_dropped_full: AtomicU64,
}

/// Adds `n` to a counter that only the calling thread writes.
#[inline]
pub(super) fn add_single_writer(counter: &AtomicU64, n: u64) {
    if n != 0 {
        counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
}

/// Adds 1 to a counter that several threads may write.
#[inline]
pub(super) fn add_shared(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl QueueCounters {
    pub(super) fn snapshot(&self, rx_queued: usize, tx_queued: usize) -> QueueStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        QueueStats {
            rx_injected: load(&self.wire.rx_injected),
            rx_generated: load(&self.owner.rx_generated),
            rx_dropped_full: load(&self.wire.rx_dropped_full),
            rx_dropped_no_buffer: load(&self.wire.rx_dropped_no_buffer),
            rx_dropped_oversize: load(&self.wire.rx_dropped_oversize),
            tx: load(&self.owner.tx),
            tx_dropped_full: load(&self.owner.tx_dropped_full),
            rx_queued: rx_queued as u64,
            tx_queued: tx_queued as u64,
        }
    }
}

/// Counters of one queue pair at one moment. Each field is read on its own (relaxed), so a
/// snapshot taken while traffic flows is not a consistent cut across fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Frames `inject` placed on the receive ring.
    pub rx_injected: u64,
    /// Frames the queue's source produced during `rx_burst`.
    pub rx_generated: u64,
    /// Frames `inject` dropped because the receive ring was full.
    pub rx_dropped_full: u64,
    /// Frames `inject` dropped because no buffer was free.
    pub rx_dropped_no_buffer: u64,
    /// Frames `inject` dropped because they exceed the data room.
    pub rx_dropped_oversize: u64,
    /// Frames `tx_burst` placed on the transmit ring.
    pub tx: u64,
    /// Frames `tx_burst` refused because the transmit ring was full (left to the caller).
    pub tx_dropped_full: u64,
    /// Frames waiting on the receive ring (a gauge).
    pub rx_queued: u64,
    /// Frames waiting on the transmit ring for `take_transmitted` (a gauge).
    pub tx_queued: u64,
}

impl QueueStats {
    fn add(&mut self, other: &QueueStats) {
        self.rx_injected += other.rx_injected;
        self.rx_generated += other.rx_generated;
        self.rx_dropped_full += other.rx_dropped_full;
        self.rx_dropped_no_buffer += other.rx_dropped_no_buffer;
        self.rx_dropped_oversize += other.rx_dropped_oversize;
        self.tx += other.tx;
        self.tx_dropped_full += other.tx_dropped_full;
        self.rx_queued += other.rx_queued;
        self.tx_queued += other.tx_queued;
    }
}

/// Counters of every queue pair of a [`Uveth`](super::Uveth), indexed by queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UvethStats {
    /// One entry per queue, in queue order.
    pub queues: Vec<QueueStats>,
}

impl UvethStats {
    /// The sum over all queues.
    pub fn total(&self) -> QueueStats {
        self.queues
            .iter()
            .fold(QueueStats::default(), |mut total, queue| {
                total.add(queue);
                total
            })
    }
}
