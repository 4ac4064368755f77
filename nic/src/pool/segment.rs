//! One segment of a pool: a queue's L1 pool or the shared L2 pool. Its buffers' headers lie in one
//! address range (so that a handle's segment is found from its address, without reading it), its
//! free buffers wait in one store, and its counters say how its threads fared.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use crossbeam_utils::CachePadded;

use super::PktBuf;

/// Which segment a cache draws from first, and what the metrics call it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tier {
    /// The L1 pool of receive queue `n`: its receive buffers and its thread's first choice.
    Queue(u16),
    /// The shared L2 pool every thread borrows from below the low watermark, and the home of
    /// threads without a queue.
    Shared,
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tier::Queue(q) => write!(f, "q{q}"),
            Tier::Shared => f.write_str("shared"),
        }
    }
}

/// The free buffers of a heap segment: a stack under a lock taken once per bulk (a refill or
/// a flush of many buffers), so a bulk costs one lock round trip however many buffers it moves;
/// the newest buffers (the warmest) go out first. The length is mirrored in an atomic so the
/// watermark check and the gauges read it without the lock.
///
/// A lock, not a lock-free list: the critical section is a copy of at most a cache's worth of
/// pointers, and like `rte_ring`'s multi-producer enqueue (which waits for a preempted
/// predecessor) a preempted holder delays the others; the caches in front keep that off the
/// per-packet path.
pub(super) struct FreeStack {
    bufs: Mutex<Vec<PktBuf>>,
    len: AtomicUsize,
}

impl FreeStack {
    pub(super) fn new(bufs: Vec<PktBuf>) -> FreeStack {
        FreeStack {
            len: AtomicUsize::new(bufs.len()),
            bufs: Mutex::new(bufs),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<PktBuf>> {
        // A `Vec` of handles is consistent between any two of its method calls: a panic while
        // the lock was held cannot have left it half-changed.
        self.bufs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Moves up to `n` buffers onto `out` (the newest first); returns how many.
    pub(super) fn take(&self, out: &mut Vec<PktBuf>, n: usize) -> usize {
        if n == 0 || self.len() == 0 {
            return 0;
        }
        let mut bufs = self.lock();
        let k = n.min(bufs.len());
        let keep = bufs.len() - k;
        out.extend(bufs.drain(keep..).rev());
        self.len.store(bufs.len(), Ordering::Relaxed);
        k
    }

    pub(super) fn give(&self, it: impl Iterator<Item = PktBuf>) {
        let mut bufs = self.lock();
        bufs.extend(it);
        self.len.store(bufs.len(), Ordering::Relaxed);
    }

    /// Moves every buffer of `from` here unless another thread holds the lock; whether it did.
    fn try_give_all(&self, from: &mut Vec<PktBuf>) -> bool {
        let mut bufs = match self.bufs.try_lock() {
            Ok(bufs) => bufs,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return false,
        };
        bufs.append(from);
        self.len.store(bufs.len(), Ordering::Relaxed);
        true
    }
}

/// Where a segment's free buffers wait.
pub(super) enum Store {
    /// Heap slots (see [`FreeStack`]).
    Heap(FreeStack),
    /// The mbufs of one DPDK mempool (see `mbufs`).
    #[cfg(feature = "dpdk")]
    Mbufs(super::mbufs::MbufSlots),
}

/// Counters of one segment, written only on slow paths (a borrow is counted per refill, a
/// failure per failed allocation).
#[derive(Default)]
pub(super) struct SegmentCounters {
    /// Buffers the caches homed here took from the shared pool.
    pub(super) borrowed: AtomicU64,
    /// Allocations of the caches homed here that found no buffer anywhere.
    pub(super) failures: AtomicU64,
}

/// One segment: its tier, its buffers' address range, its store and counters.
pub(super) struct Segment {
    pub(super) tier: Tier,
    pub(super) buffers: u32,
    /// Lowest header address and the span past it that holds every header of the segment.
    lo: usize,
    span: usize,
    pub(super) store: Store,
    pub(super) counters: CachePadded<SegmentCounters>,
}

impl Segment {
    /// A segment whose headers lie in `lo..hi`.
    pub(super) fn new(tier: Tier, buffers: u32, (lo, hi): (usize, usize), store: Store) -> Self {
        Segment {
            tier,
            buffers,
            lo,
            span: hi.saturating_sub(lo),
            store,
            counters: CachePadded::new(SegmentCounters::default()),
        }
    }

    /// Whether header address `addr` is one of this segment's: a subtraction and a compare.
    #[inline]
    pub(super) fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.lo) < self.span
    }

    pub(super) fn range(&self) -> (usize, usize) {
        (self.lo, self.lo + self.span)
    }

    /// Free buffers outside every cache of ours (for a mempool with per-lcore caches, those
    /// caches included).
    pub(super) fn free_count(&self) -> usize {
        match &self.store {
            Store::Heap(free) => free.len(),
            #[cfg(feature = "dpdk")]
            Store::Mbufs(slots) => slots.free_count(),
        }
    }

    /// Free buffers a refill can take right now: the store itself, no per-lcore cache. What the
    /// low watermark is compared with.
    pub(super) fn takeable(&self) -> usize {
        match &self.store {
            Store::Heap(free) => free.len(),
            #[cfg(feature = "dpdk")]
            Store::Mbufs(slots) => slots.takeable(),
        }
    }

    /// Moves up to `n` free buffers (not reset) onto `out`; returns how many.
    pub(super) fn take(&self, out: &mut Vec<PktBuf>, n: usize) -> usize {
        match &self.store {
            Store::Heap(free) => free.take(out, n),
            #[cfg(feature = "dpdk")]
            Store::Mbufs(slots) => slots.take(out, n),
        }
    }

    /// Returns every buffer of `from` (all of this segment) to the store unless that means
    /// waiting for another thread; whether it did.
    pub(super) fn try_give_all(&self, from: &mut Vec<PktBuf>) -> bool {
        match &self.store {
            Store::Heap(free) => free.try_give_all(from),
            #[cfg(feature = "dpdk")]
            Store::Mbufs(slots) => {
                slots.give(from.drain(..));
                true
            }
        }
    }

    /// Returns buffers of this segment to its store.
    pub(super) fn give(&self, bufs: impl Iterator<Item = PktBuf>) {
        match &self.store {
            Store::Heap(free) => free.give(bufs),
            #[cfg(feature = "dpdk")]
            Store::Mbufs(slots) => slots.give(bufs),
        }
    }
}
