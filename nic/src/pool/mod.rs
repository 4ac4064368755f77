//! Packet buffer pools in two levels: one L1 pool per receive queue, one shared L2 pool, and
//! per-thread caches in front (the seed's design, and the DPDK `rte_mempool` with its per-lcore
//! cache, one mempool per queue plus one shared).
//!
//! # Tiers
//!
//! A [`PacketPool`] holds segments: the L1 pool of each receive queue ([`Tier::Queue`]) and the
//! shared L2 pool ([`Tier::Shared`]), sized by [`Tiers`]. A queue's L1 is what its receive side
//! fills (a DPDK rx queue is set up with its mempool) and its thread's first choice for every
//! buffer it allocates (replies, copies); when the L1's free buffers fall below
//! [`Tiers::low_watermark`] the thread takes from the shared pool instead, so that its own
//! allocations never starve its receive queue, and only when the shared pool is dry too does it
//! take the L1's last buffers. Threads without a queue live on the shared pool.
//! [`PacketPool::new`] is a pool of one shared segment: every cache draws from it.
//!
//! **A buffer always returns to the segment it came from**, whoever frees it (as
//! `rte_pktmbuf_free` returns an mbuf to `m->pool`): a buffer received on queue 0, handed to
//! thread 1 and freed there goes back to queue 0's L1. The segment is found from the buffer's
//! address (each segment's headers lie in one address range), so a free reads nothing of the
//! buffer.
//!
//! # Layout
//!
//! One zeroed, cache-line aligned allocation holds every buffer of a heap pool, segment after
//! segment. Slot `i` starts at `i × stride`; its first 32 bytes are the metadata (length,
//! receive hash, index, data room, and what steering's classification found:
//! [`PktBuf::parsed`], [`PktBuf::lookup_note`]), the data room follows in the same line, and
//! the slot is rounded up to whole cache lines, so no two buffers share a line and writing one
//! never slows a core reading its neighbour. A frame of up to 96 bytes lies in the slot's first
//! two lines. A [`PktBuf`] is a pointer to its slot.
//!
//! # Ownership and concurrency
//!
//! - Every buffer is in exactly one place: its segment's free store, one [`PoolCache`], or one
//!   [`PktBuf`] owner. Handles are never cloned, and freeing moves the handle: no buffer has two
//!   owners and none can be freed twice.
//! - A [`PoolCache`] belongs to one thread (`Send`, not `Sync`, `&mut self` methods) and has a
//!   home segment. It keeps a stack of its home's buffers, and one return stack per other
//!   segment. Its fast path touches only its own stacks and counters written only by itself: no
//!   shared atomic read-modify-write per buffer. A free compares the buffer's address with the
//!   home's range (two instructions); a buffer of another segment goes to that segment's return
//!   stack, and a full return stack (half a cache, at most 64) goes back to its segment in one
//!   bulk. An empty home stack refills half its size from the home segment in one bulk; a full
//!   one flushes down to half. `alloc` may fail while other caches hold free buffers, as with
//!   `rte_mempool`: size pools for that slack (the configuration's minimum does).
//! - A heap segment's free buffers are a stack under a lock taken once per bulk (one lock round
//!   trip per refill or flush of up to half a cache, where a lock-free queue of handles paid one
//!   compare-and-swap per buffer); an mbuf segment's are its mempool's ring.
//! - A buffer freed to a cache of another pool is detected by the same address check and
//!   counted in [`PacketPool::foreign_frees`]; it is not taken in, so its own pool shows it as in
//!   use. No undefined behaviour and no panic, in debug and release alike: a non-zero count is a
//!   bug the engine's conservation check reports.
//! - Dropping the last `Arc` of a pool with buffers still out leaks the buffer memory instead of
//!   freeing it, so a stray handle never points to freed memory.
//!
//! # Backing
//!
//! [`PacketPool::new`] and [`PacketPool::tiered`] put the buffers in one heap allocation. With
//! the `dpdk` feature, `PacketPool::with_mbufs` and `PacketPool::with_mbufs_tiered` put each
//! segment in the mbufs of its own DPDK mempool instead, each buffer's header in its mbuf's
//! headroom, so a DPDK port receives into the same buffers and sends from them without a copy
//! (`PktBuf::from_mbuf`, `PktBuf::into_mbuf`; see `mbufs.rs`), and the driver's own frees after
//! transmit return each mbuf to its segment's mempool. Handles, caches and every method are the
//! same for both: only refills, flushes and returns reach the backing.
//!
//! # Costs
//!
//! | operation | cost |
//! |---|---|
//! | [`PoolCache::alloc`] from the cache | a `Vec` pop, one metadata write (the slot's first line), one relaxed store |
//! | [`PoolCache::free`] of a home buffer | an address compare and a `Vec` push of the handle (the buffer itself is not read), one relaxed store |
//! | [`PoolCache::alloc_bulk`] / [`PoolCache::free_bulk`] of a burst the cache can serve / hold (home buffers) | one copy of the handles, one metadata write per buffer (alloc) or one address compare per buffer (free), one relaxed store |
//! | [`PoolCache::free`] of another segment's buffer | a second address compare (the segment of the last such free; else a binary search over the segments' ranges), a `Vec` push, one relaxed store; a bulk return per `min(size / 2, 64)` |
//! | refill / flush of `size / 2` buffers | one lock round trip and a copy of the handles (heap); one `rte_mempool_generic_get`/`put` (mbufs); the watermark check is one load (heap) or one ring count (mbufs) |
//! | [`PacketPool::available`], [`PacketPool::segments`] | a mutex over the cache registry + one load per cache and segment; not for the data path |
//! | [`PacketPool::new`] | one allocation, one write per buffer header, one push per buffer |

mod buf;
mod cache;
mod error;
#[cfg(feature = "dpdk")]
mod mbufs;
mod segment;

pub use buf::PktBuf;
pub use cache::PoolCache;
pub use error::PoolError;
pub use segment::Tier;

use std::alloc::{self, Layout};
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_utils::CachePadded;

use buf::{SlotHeader, HEADER_BYTES, LINE_BYTES};
use segment::{FreeStack, Segment, Store};

/// A cache's count of buffers it holds, per segment; each written only by the owning cache, read
/// by [`PacketPool::available`] and [`PacketPool::segments`].
type CachedCounts = Arc<[CachePadded<AtomicU32>]>;

/// How a pool's buffers are split: `queues` L1 pools of `per_queue` buffers, one shared L2 pool
/// of `shared`, and the watermark below which a thread takes from the shared pool rather than
/// its queue's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tiers {
    /// Receive queues, each with an L1 pool.
    pub queues: u16,
    /// Buffers of each queue's L1 pool.
    pub per_queue: u32,
    /// Buffers of the shared L2 pool.
    pub shared: u32,
    /// Free buffers (outside the caches) below which a queue's thread borrows from the shared
    /// pool.
    pub low_watermark: u32,
}

impl Tiers {
    /// One shared pool of `buffers` and no L1: every cache draws from it.
    pub fn shared_only(buffers: u32) -> Tiers {
        Tiers {
            queues: 0,
            per_queue: 0,
            shared: buffers,
            low_watermark: 0,
        }
    }

    /// Buffers in all segments.
    pub fn total(&self) -> u64 {
        u64::from(self.queues) * u64::from(self.per_queue) + u64::from(self.shared)
    }

    /// Segment sizes in segment order: the L1 of each queue, then the shared pool.
    fn sizes(&self) -> impl Iterator<Item = (Tier, u32)> + '_ {
        (0..self.queues)
            .map(|q| (Tier::Queue(q), self.per_queue))
            .chain(std::iter::once((Tier::Shared, self.shared)))
    }

    /// The pool's size as a `u32`, or why not.
    fn checked_total(&self, data_room: u16) -> Result<u32, PoolError> {
        match u32::try_from(self.total()) {
            Ok(0) => Err(PoolError::ZeroBuffers),
            Ok(n) if data_room > 0 => Ok(n),
            Ok(_) => Err(PoolError::ZeroDataRoom),
            Err(_) => Err(PoolError::TooLarge {
                buffers: u32::MAX,
                data_room,
            }),
        }
    }
}

/// One segment as the metrics and the conservation check see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentStats {
    /// Which segment.
    pub tier: Tier,
    /// Its buffers.
    pub capacity: u32,
    /// Its free buffers: in its store and in every cache (exact when no cache is working).
    pub available: u32,
    /// Buffers the caches homed here took from the shared pool (0 for the shared pool).
    pub borrowed: u64,
    /// Allocations of the caches homed here that found no buffer.
    pub failures: u64,
}

/// A pool of fixed-size packet buffers in segments (see the module documentation), shared as
/// `Arc<PacketPool>` by every thread.
///
/// Threads allocate and free through their own [`PoolCache`] ([`PacketPool::cache`],
/// [`PacketPool::cache_for`]). See the module documentation for the tiers, the layout, the
/// ownership rules and the costs.
pub struct PacketPool {
    /// The L1 of each queue in queue order, then the shared pool (always present, maybe empty).
    segments: Box<[Segment]>,
    /// The non-empty segments' lowest header address and index, by address: finds the segment
    /// of a buffer that is not its cache's home.
    by_addr: Box<[(usize, usize)]>,
    /// The heap allocation of a heap pool.
    heap: Option<(NonNull<u8>, Layout)>,
    buffers: u32,
    data_room: u16,
    low_watermark: u32,
    caches: Mutex<Vec<CachedCounts>>,
    foreign_frees: AtomicU64,
}

// SAFETY: the pool itself touches slot memory only while it is made, before it is shared;
// afterwards slots are reached only through `PktBuf` handles, each of which exists once (in a
// store, in one cache, or with one owner). The heap pointer is only compared and, in `Drop`,
// freed. All other fields are `Sync`.
unsafe impl Send for PacketPool {}
// SAFETY: see `Send`: shared access never touches slot memory.
unsafe impl Sync for PacketPool {}

impl PacketPool {
    /// A pool of `buffers` buffers of `data_room` bytes each, all free, in one shared segment.
    ///
    /// Errors: no buffers, no data room, or a size the address space or allocator refuses. The
    /// memory is allocated and every header written here: O(buffers), once.
    pub fn new(buffers: u32, data_room: u16) -> Result<Arc<PacketPool>, PoolError> {
        PacketPool::tiered(&Tiers::shared_only(buffers), data_room)
    }

    /// A heap pool split as `tiers` says, buffers of `data_room` bytes each, all free.
    ///
    /// Errors: as [`new`](Self::new), for the sum of the segments.
    pub fn tiered(tiers: &Tiers, data_room: u16) -> Result<Arc<PacketPool>, PoolError> {
        let buffers = tiers.checked_total(data_room)?;
        let too_large = PoolError::TooLarge { buffers, data_room };
        let stride = (HEADER_BYTES + data_room as usize).next_multiple_of(LINE_BYTES);
        let bytes = stride
            .checked_mul(buffers as usize)
            .ok_or_else(|| too_large.clone())?;
        let layout = Layout::from_size_align(bytes, LINE_BYTES).map_err(|_| too_large)?;
        // SAFETY: `layout` has a non-zero size (buffers >= 1, stride >= 64).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let base = NonNull::new(raw).ok_or(PoolError::OutOfMemory { bytes })?;
        let mut segments = Vec::new();
        let mut first = 0u32;
        for (tier, n) in tiers.sizes() {
            // Newest last: the stack hands out the lowest index first.
            let mut bufs = Vec::with_capacity(n as usize);
            for index in (first..first + n).rev() {
                // SAFETY: slot `index` lies inside the allocation (index < buffers), is aligned
                // to 64 bytes (base and stride are), and nothing else refers to it yet.
                let header = unsafe {
                    let header = base
                        .as_ptr()
                        .add(index as usize * stride)
                        .cast::<SlotHeader>();
                    header.write(SlotHeader::new(index, data_room));
                    NonNull::new_unchecked(header)
                };
                // SAFETY: the slot was just written and this is the one handle ever made for
                // it: from here on it moves between stores, caches and owners, never copied.
                bufs.push(unsafe { PktBuf::from_slot(header) });
            }
            let lo = base.as_ptr() as usize + first as usize * stride;
            let hi = lo + n as usize * stride;
            let store = Store::Heap(FreeStack::new(bufs));
            segments.push(Segment::new(tier, n, (lo, hi), store));
            first += n;
        }
        Ok(PacketPool::with_segments(
            segments,
            Some((base, layout)),
            tiers,
            data_room,
        ))
    }

    /// Total number of buffers.
    pub fn capacity(&self) -> u32 {
        self.buffers
    }

    /// Free buffers: those in the segments' stores plus those in every cache.
    ///
    /// Exact when no thread is inside a cache operation during the call (in particular once all
    /// caches are dropped, and in tests between phases). While caches work concurrently, each
    /// refill, flush or return in flight can make it off by at most that many buffers, either
    /// way.
    pub fn available(&self) -> u32 {
        let total: u64 = self.segments().iter().map(|s| u64::from(s.available)).sum();
        total.min(u64::from(self.buffers)) as u32
    }

    /// Every segment's size, free buffers and counters, L1 pools in queue order, then the shared
    /// pool. Exact under the same condition as [`available`](Self::available).
    pub fn segments(&self) -> Vec<SegmentStats> {
        let caches = self.registry();
        self.segments
            .iter()
            .enumerate()
            .map(|(i, segment)| {
                let cached: u64 = caches
                    .iter()
                    .map(|counts| u64::from(counts[i].load(Ordering::Relaxed)))
                    .sum();
                let free = segment.free_count() as u64 + cached;
                SegmentStats {
                    tier: segment.tier,
                    capacity: segment.buffers,
                    available: free.min(u64::from(segment.buffers)) as u32,
                    borrowed: segment.counters.borrowed.load(Ordering::Relaxed),
                    failures: segment.counters.failures.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Buffers held by handles (and by foreign-free leaks): `capacity - available`.
    pub fn in_use(&self) -> u32 {
        self.buffers - self.available()
    }

    /// Bytes of data room per buffer.
    pub fn data_room(&self) -> u16 {
        self.data_room
    }

    /// Receive queues with an L1 pool.
    pub fn queues(&self) -> u16 {
        (self.segments.len() - 1) as u16
    }

    /// The free count below which a queue's thread takes from the shared pool.
    pub fn low_watermark(&self) -> u32 {
        self.low_watermark
    }

    /// Buffers of this pool that were freed to a cache of another pool (see the module
    /// documentation). Always 0 in a correct program.
    pub fn foreign_frees(&self) -> u64 {
        self.foreign_frees.load(Ordering::Relaxed)
    }

    /// The segment `buf` belongs to; `None` for a buffer of another pool. Compares addresses
    /// only.
    pub fn tier_of(&self, buf: &PktBuf) -> Option<Tier> {
        self.segment_of(buf.header_addr())
            .map(|i| self.segments[i].tier)
    }

    /// A cache on the shared pool ([`cache_for`](Self::cache_for) with [`Tier::Shared`]).
    pub fn cache(self: &Arc<Self>, size: u32) -> PoolCache {
        self.cache_for(Tier::Shared, size)
    }

    /// A cache for one thread whose home is `home` (a queue without an L1 pool falls back to
    /// the shared pool), holding up to `size` of its home's buffers (clamped to the capacity; 0
    /// means every alloc and free goes to the segment's store).
    ///
    /// Registers the cache for [`available`](Self::available) under a mutex: call it at thread
    /// start, not per packet.
    pub fn cache_for(self: &Arc<Self>, home: Tier, size: u32) -> PoolCache {
        let counts: CachedCounts = self
            .segments
            .iter()
            .map(|_| CachePadded::new(AtomicU32::new(0)))
            .collect();
        self.registry().push(Arc::clone(&counts));
        let home = self.index_of(home);
        PoolCache::new(Arc::clone(self), home, size.min(self.buffers), counts)
    }

    fn registry(&self) -> MutexGuard<'_, Vec<CachedCounts>> {
        // The registry is a list of counters; a panic elsewhere cannot leave it inconsistent.
        self.caches
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn unregister(&self, counts: &CachedCounts) {
        self.registry().retain(|c| !Arc::ptr_eq(c, counts));
    }

    /// The segment index of `tier`.
    fn index_of(&self, tier: Tier) -> usize {
        match tier {
            Tier::Queue(q) if q < self.queues() => usize::from(q),
            _ => self.shared_index(),
        }
    }

    fn shared_index(&self) -> usize {
        self.segments.len() - 1
    }

    /// The index of the segment whose headers include `addr`: a binary search over the address
    /// ranges; nothing is read at `addr`.
    fn segment_of(&self, addr: usize) -> Option<usize> {
        let after = self.by_addr.partition_point(|&(lo, _)| lo <= addr);
        let (_, index) = *self.by_addr.get(after.checked_sub(1)?)?;
        self.segments[index].contains(addr).then_some(index)
    }

    fn with_segments(
        segments: Vec<Segment>,
        heap: Option<(NonNull<u8>, Layout)>,
        tiers: &Tiers,
        data_room: u16,
    ) -> Arc<PacketPool> {
        let mut by_addr: Vec<(usize, usize)> = segments
            .iter()
            .enumerate()
            .filter(|(_, s)| s.buffers > 0)
            .map(|(i, s)| (s.range().0, i))
            .collect();
        by_addr.sort_unstable();
        Arc::new(PacketPool {
            buffers: segments.iter().map(|s| s.buffers).sum(),
            segments: segments.into_boxed_slice(),
            by_addr: by_addr.into_boxed_slice(),
            heap,
            data_room,
            low_watermark: tiers.low_watermark,
            caches: Mutex::new(Vec::new()),
            foreign_frees: AtomicU64::new(0),
        })
    }
}

impl Drop for PacketPool {
    fn drop(&mut self) {
        // No cache exists (each holds an Arc), so the free buffers are the whole count. Buffers
        // still out keep pointing into the memory: leak it rather than leave them dangling.
        let all_back = self
            .segments
            .iter()
            .all(|s| s.free_count() == s.buffers as usize);
        if all_back {
            if let Some((base, layout)) = self.heap {
                // SAFETY: allocated in `tiered` with this layout, freed once, no handle refers
                // to it.
                unsafe { alloc::dealloc(base.as_ptr(), layout) };
            }
        } else {
            #[cfg(feature = "dpdk")]
            for segment in self.segments.iter_mut() {
                if let Store::Mbufs(slots) = &mut segment.store {
                    slots.leak();
                }
            }
        }
    }
}

impl fmt::Debug for PacketPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacketPool")
            .field("capacity", &self.buffers)
            .field("data_room", &self.data_room)
            .field("queues", &self.queues())
            .field("available", &self.available())
            .field("foreign_frees", &self.foreign_frees())
            .finish()
    }
}
