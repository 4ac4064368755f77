//! Per-queue counters of the AF_PACKET port and their snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use super::sys::TpacketStatsV3;

/// Counters of one queue, split by writer so that no line is written from two sides.
#[derive(Default)]
pub(super) struct QueueCounters {
    /// Written only by the queue pair's current owner: plain load + store.
    pub(super) owner: CachePadded<OwnerCounters>,
    /// The kernel's ring counters, accumulated by whoever reads them from the socket (the owner
    /// every few polls, [`AfPacketPort::stats`](super::AfPacketPort::stats)): atomic adds,
    /// since each read clears the kernel's count and both readers must add what they got.
    pub(super) kernel: CachePadded<KernelCounters>,
}

#[derive(Default)]
pub(super) struct OwnerCounters {
    pub(super) rx: AtomicU64,
    pub(super) rx_dropped_no_buffer: AtomicU64,
    pub(super) rx_dropped_oversize: AtomicU64,
    pub(super) rx_dropped_invalid: AtomicU64,
    pub(super) rx_checksum_partial: AtomicU64,
    pub(super) tx: AtomicU64,
    pub(super) tx_refused: AtomicU64,
    pub(super) tx_errors: AtomicU64,
}

#[derive(Default)]
pub(super) struct KernelCounters {
    pub(super) drops: AtomicU64,
    pub(super) freezes: AtomicU64,
}

/// Adds `n` to a counter that only the calling thread writes.
#[inline]
pub(super) fn add_single_writer(counter: &AtomicU64, n: u64) {
    if n != 0 {
        counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
}

impl KernelCounters {
    /// Adds one `PACKET_STATISTICS` read (the counts since the previous read).
    pub(super) fn add(&self, read: &TpacketStatsV3) {
        if read.tp_drops != 0 {
            self.drops
                .fetch_add(u64::from(read.tp_drops), Ordering::Relaxed);
        }
        if read.tp_freeze_q_cnt != 0 {
            self.freezes
                .fetch_add(u64::from(read.tp_freeze_q_cnt), Ordering::Relaxed);
        }
    }
}

impl QueueCounters {
    pub(super) fn snapshot(&self) -> QueueStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let owner = &self.owner;
        QueueStats {
            rx: load(&owner.rx),
            rx_dropped_no_buffer: load(&owner.rx_dropped_no_buffer),
            rx_dropped_oversize: load(&owner.rx_dropped_oversize),
            rx_dropped_invalid: load(&owner.rx_dropped_invalid),
            rx_checksum_partial: load(&owner.rx_checksum_partial),
            kernel_drops: load(&self.kernel.drops),
            kernel_freezes: load(&self.kernel.freezes),
            tx: load(&owner.tx),
            tx_refused: load(&owner.tx_refused),
            tx_errors: load(&owner.tx_errors),
        }
    }
}

/// Counters of one queue pair at one moment. Each field is read on its own (relaxed), so a
/// snapshot taken while traffic flows is not a consistent cut across fields.
///
/// Every frame the kernel put on the ring ends in exactly one of `rx`,
/// `rx_dropped_no_buffer`, `rx_dropped_oversize` and `rx_dropped_invalid` once it is consumed;
/// frames the kernel could not put on the ring are in `kernel_drops`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Frames delivered by `rx_burst`.
    pub rx: u64,
    /// Frames dropped because the pool had no free buffer.
    pub rx_dropped_no_buffer: u64,
    /// Frames dropped because they exceed the buffer's data room, or the ring truncated them
    /// (`tp_snaplen < tp_len`: a frame larger than a block, e.g. a GRO aggregate).
    pub rx_dropped_oversize: u64,
    /// Frames dropped because their ring header pointed outside the block (not expected from
    /// a correct kernel; counted rather than trusted).
    pub rx_dropped_invalid: u64,
    /// Delivered frames whose L4 checksum the sender left to offload (`TP_STATUS_CSUMNOTREADY`,
    /// e.g. from a local veth peer with tx checksumming on): their checksum field is not final.
    pub rx_checksum_partial: u64,
    /// Frames the kernel dropped because the ring was full (`tp_drops`).
    pub kernel_drops: u64,
    /// Times the kernel found the ring full and froze it (`tp_freeze_q_cnt`).
    pub kernel_freezes: u64,
    /// Frames handed to the kernel by `tx_burst`.
    pub tx: u64,
    /// Frames `tx_burst` left to the caller because the socket or device queue was full
    /// (EAGAIN / ENOBUFS).
    pub tx_refused: u64,
    /// Frames `tx_burst` left to the caller after another send error (the failing frame and the
    /// rest of its burst).
    pub tx_errors: u64,
}

impl QueueStats {
    fn add(&mut self, other: &QueueStats) {
        self.rx += other.rx;
        self.rx_dropped_no_buffer += other.rx_dropped_no_buffer;
        self.rx_dropped_oversize += other.rx_dropped_oversize;
        self.rx_dropped_invalid += other.rx_dropped_invalid;
        self.rx_checksum_partial += other.rx_checksum_partial;
        self.kernel_drops += other.kernel_drops;
        self.kernel_freezes += other.kernel_freezes;
        self.tx += other.tx;
        self.tx_refused += other.tx_refused;
        self.tx_errors += other.tx_errors;
    }
}

/// Counters of every queue of an [`AfPacketPort`](super::AfPacketPort).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AfPacketStats {
    /// One entry per queue pair, in queue order.
    pub queues: Vec<QueueStats>,
    /// The transmit-only queues, indexed by owner minus the queue pairs; `None` for an owner
    /// that never took one. Only their transmit counters move.
    pub transmit_only: Vec<Option<QueueStats>>,
}

impl AfPacketStats {
    /// The sum over all queues, transmit-only ones included.
    pub fn total(&self) -> QueueStats {
        self.queues
            .iter()
            .chain(self.transmit_only.iter().flatten())
            .fold(QueueStats::default(), |mut total, queue| {
                total.add(queue);
                total
            })
    }
}
