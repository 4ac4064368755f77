//! Packet buffer pool: fixed-size buffers in one allocation, a lock-free global free list and
//! per-thread caches (the DPDK `rte_mempool` with its per-lcore cache).
//!
//! # Layout
//!
//! One zeroed, cache-line aligned allocation holds every buffer. Slot `i` starts at
//! `i × stride`; its first 32 bytes are the metadata (length, receive hash, index, data room,
//! and what steering's classification found: [`PktBuf::parsed`], [`PktBuf::lookup_note`]), the
//! data room follows in the same line, and the slot is rounded up to whole cache lines, so no two
//! buffers share a line and writing one never slows a core reading its neighbour. A frame of up
//! to 96 bytes lies in the slot's first two lines. A [`PktBuf`] is a pointer to its slot.
//!
//! # Ownership and concurrency
//!
//! - Every buffer is in exactly one place: the global free list (a bounded lock-free MPMC queue
//!   of handles), the local stack of one [`PoolCache`], or one [`PktBuf`] owner. The free list
//!   hands each handle to one owner, handles are never cloned, and freeing moves the handle: no
//!   buffer has two owners and none can be freed twice.
//! - A [`PoolCache`] belongs to one thread (`Send`, not `Sync`, `&mut self` methods). Its fast
//!   path touches only its own stack and one counter written only by itself: no shared atomic
//!   read-modify-write per buffer. When empty it takes half its size from the free list in one
//!   go; when full it returns half. `alloc` may fail while other caches hold free buffers, as
//!   with `rte_mempool`: size pools for `threads × cache size` of slack.
//! - A buffer freed to a cache of another pool is detected by an address range check and counted
//!   in [`PacketPool::foreign_frees`]; it is not taken in, so its own pool shows it as in use.
//!   No undefined behaviour and no panic, in debug and release alike: a non-zero count is a bug
//!   the engine's conservation check reports.
//! - Dropping the last `Arc` of a pool with buffers still out leaks the buffer memory instead of
//!   freeing it, so a stray handle never points to freed memory.
//!
//! # Backing
//!
//! [`PacketPool::new`] puts the buffers in one heap allocation. With the `dpdk` feature,
//! `PacketPool::with_mbufs` puts them in the mbufs of a DPDK mempool instead, each buffer's
//! header in its mbuf's headroom, so a DPDK port receives into the same buffers and sends from
//! them without a copy (`PktBuf::from_mbuf`, `PktBuf::into_mbuf`; see `mbufs.rs`). Handles,
//! caches and every method are the same for both: only refills and flushes reach the backing.
//!
//! # Costs
//!
//! | operation | cost |
//! |---|---|
//! | [`PoolCache::alloc`] from the cache | a `Vec` pop, one metadata write (the slot's first line), one relaxed store |
//! | [`PoolCache::free`] to the cache | an address compare and a `Vec` push of the handle (the buffer itself is not read), one relaxed store |
//! | refill / flush of `size / 2` buffers | `size / 2` pops/pushes of handles on the lock-free free list |
//! | [`PacketPool::available`] | a mutex over the cache registry + one load per cache; not for the data path |
//! | [`PacketPool::new`] | one allocation, one write per buffer header, one free-list push per buffer |

mod buf;
mod cache;
mod error;
#[cfg(feature = "dpdk")]
mod mbufs;

pub use buf::PktBuf;
pub use cache::PoolCache;
pub use error::PoolError;

use std::alloc::{self, Layout};
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;

use crate::wire::Parsed;
use buf::{SlotHeader, HEADER_BYTES, LINE_BYTES};

/// A cache's count of buffers it holds; written only by the owning cache, read by
/// [`PacketPool::available`].
type CachedCount = Arc<CachePadded<AtomicU32>>;

/// A pool of `capacity` fixed-size packet buffers, shared as `Arc<PacketPool>` by every thread.
///
/// Threads allocate and free through their own [`PoolCache`] (see [`PacketPool::cache`]). See the
/// module documentation for the layout, the ownership rules and the costs.
pub struct PacketPool {
    backing: Backing,
    buffers: u32,
    data_room: u16,
    caches: Mutex<Vec<CachedCount>>,
    foreign_frees: AtomicU64,
}

/// Where the buffers live and where the free ones wait between caches. The caches' fast path
/// never looks at it: only refills and flushes (half a cache at a time) and frees to a pool
/// without caches do.
// One per pool: the size of the heap variant's cache-padded queue costs nothing, and boxing it
// would add a pointer chase to every refill and flush.
#[allow(clippy::large_enum_variant)]
enum Backing {
    /// One heap allocation; the free buffers' handles on a lock-free queue (handles, not
    /// indices: a cache that frees a buffer another core wrote moves it without reading it).
    Heap {
        base: NonNull<u8>,
        layout: Layout,
        free: ArrayQueue<PktBuf>,
    },
    /// The mbufs of a DPDK mempool, each with its header in the mbuf's headroom (see `mbufs`).
    #[cfg(feature = "dpdk")]
    Mbufs(mbufs::MbufSlots),
}

// SAFETY: the pool itself touches slot memory only in `new`, before it is shared; afterwards slots
// are reached only through `PktBuf` handles, each of which exists once (on the free list, in one
// cache, or with one owner). All other fields are `Sync`.
unsafe impl Send for PacketPool {}
// SAFETY: see `Send`: shared access never touches slot memory.
unsafe impl Sync for PacketPool {}

impl PacketPool {
    /// A pool of `buffers` buffers of `data_room` bytes each, all free.
    ///
    /// Errors: no buffers, no data room, or a size the address space or allocator refuses. The
    /// memory is allocated and every header written here: O(buffers), once.
    pub fn new(buffers: u32, data_room: u16) -> Result<Arc<PacketPool>, PoolError> {
        if buffers == 0 {
            return Err(PoolError::ZeroBuffers);
        }
        if data_room == 0 {
            return Err(PoolError::ZeroDataRoom);
        }
        let too_large = PoolError::TooLarge { buffers, data_room };
        let stride = (HEADER_BYTES + data_room as usize).next_multiple_of(LINE_BYTES);
        let bytes = stride
            .checked_mul(buffers as usize)
            .ok_or_else(|| too_large.clone())?;
        let layout = Layout::from_size_align(bytes, LINE_BYTES).map_err(|_| too_large)?;
        // SAFETY: `layout` has a non-zero size (buffers >= 1, stride >= 64).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let base = NonNull::new(raw).ok_or(PoolError::OutOfMemory { bytes })?;
        let free = ArrayQueue::new(buffers as usize);
        for index in 0..buffers {
            // SAFETY: slot `index` lies inside the allocation (index < buffers), is aligned to
            // 64 bytes (base and stride are), and nothing else refers to it yet.
            let header = unsafe {
                let header = base
                    .as_ptr()
                    .add(index as usize * stride)
                    .cast::<SlotHeader>();
                header.write(SlotHeader {
                    len: 0,
                    rss_hash: 0,
                    index,
                    data_room: data_room as u32,
                    parsed: Parsed::NONE,
                    lookup_note: 0,
                });
                NonNull::new_unchecked(header)
            };
            // SAFETY: the slot was just written and this is the one handle ever made for it:
            // from here on it moves between the free list, caches and owners, never copied.
            let buf = unsafe { PktBuf::from_slot(header) };
            // The queue holds exactly `buffers` handles, each pushed once.
            let pushed = free.push(buf);
            debug_assert!(pushed.is_ok(), "free list sized for every buffer");
        }
        Ok(PacketPool::with_backing(
            Backing::Heap { base, layout, free },
            buffers,
            data_room,
        ))
    }

    /// Total number of buffers.
    pub fn capacity(&self) -> u32 {
        self.buffers
    }

    /// Free buffers: those on the global free list plus those in every cache.
    ///
    /// Exact when no thread is inside a cache operation during the call (in particular once all
    /// caches are dropped, and in tests between phases). While caches work concurrently, each
    /// refill or flush in flight can make it off by at most that many buffers, either way.
    pub fn available(&self) -> u32 {
        let caches = self.registry();
        let cached: u64 = caches
            .iter()
            .map(|count| u64::from(count.load(Ordering::Relaxed)))
            .sum();
        let total = self.free_count() as u64 + cached;
        total.min(u64::from(self.buffers)) as u32
    }

    /// Buffers held by handles (and by foreign-free leaks): `capacity - available`.
    pub fn in_use(&self) -> u32 {
        self.buffers - self.available()
    }

    /// Bytes of data room per buffer.
    pub fn data_room(&self) -> u16 {
        self.data_room
    }

    /// Buffers of this pool that were freed to a cache of another pool (see the module
    /// documentation). Always 0 in a correct program.
    pub fn foreign_frees(&self) -> u64 {
        self.foreign_frees.load(Ordering::Relaxed)
    }

    /// A cache for one thread holding up to `size` buffers (clamped to the capacity; 0 means
    /// every alloc and free goes to the global free list).
    ///
    /// Registers the cache for [`available`](Self::available) under a mutex: call it at thread
    /// start, not per packet.
    pub fn cache(self: &Arc<Self>, size: u32) -> PoolCache {
        let count: CachedCount = Arc::new(CachePadded::new(AtomicU32::new(0)));
        self.registry().push(Arc::clone(&count));
        PoolCache::new(Arc::clone(self), size.min(self.buffers), count)
    }

    fn registry(&self) -> MutexGuard<'_, Vec<CachedCount>> {
        // The registry is a list of counters; a panic elsewhere cannot leave it inconsistent.
        self.caches
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn unregister(&self, count: &CachedCount) {
        self.registry().retain(|c| !Arc::ptr_eq(c, count));
    }

    fn with_backing(backing: Backing, buffers: u32, data_room: u16) -> Arc<PacketPool> {
        Arc::new(PacketPool {
            backing,
            buffers,
            data_room,
            caches: Mutex::new(Vec::new()),
            foreign_frees: AtomicU64::new(0),
        })
    }

    /// Whether `buf` is a slot of this pool. Only compares addresses: a foreign handle is never
    /// dereferenced here.
    fn owns(&self, buf: &PktBuf) -> bool {
        match &self.backing {
            Backing::Heap { base, layout, .. } => buf
                .header_addr()
                .checked_sub(base.as_ptr() as usize)
                .is_some_and(|offset| offset < layout.size()),
            #[cfg(feature = "dpdk")]
            Backing::Mbufs(slots) => slots.owns(buf),
        }
    }

    /// Free buffers outside every cache.
    fn free_count(&self) -> usize {
        match &self.backing {
            Backing::Heap { free, .. } => free.len(),
            #[cfg(feature = "dpdk")]
            Backing::Mbufs(slots) => slots.free_count(),
        }
    }

    /// Moves up to `n` free buffers (not reset) onto `out`; returns how many.
    fn take(&self, out: &mut Vec<PktBuf>, n: usize) -> usize {
        match &self.backing {
            Backing::Heap { free, .. } => {
                let mut taken = 0;
                while taken < n {
                    let Some(buf) = free.pop() else { break };
                    out.push(buf);
                    taken += 1;
                }
                taken
            }
            #[cfg(feature = "dpdk")]
            Backing::Mbufs(slots) => slots.take(out, n),
        }
    }

    /// Returns every buffer of `bufs` to the free buffers.
    fn give(&self, bufs: impl Iterator<Item = PktBuf>) {
        match &self.backing {
            Backing::Heap { free, .. } => {
                for buf in bufs {
                    // Each handle exists once and the queue has room for all: cannot be full.
                    let pushed = free.push(buf);
                    debug_assert!(pushed.is_ok(), "free list sized for every buffer");
                }
            }
            #[cfg(feature = "dpdk")]
            Backing::Mbufs(slots) => slots.give(bufs),
        }
    }
}

impl Drop for PacketPool {
    fn drop(&mut self) {
        // No cache exists (each holds an Arc), so the free buffers are the whole count. Buffers
        // still out keep pointing into the memory: leak it rather than leave them dangling.
        let all_back = self.free_count() == self.buffers as usize;
        match &mut self.backing {
            Backing::Heap { base, layout, .. } => {
                if all_back {
                    // SAFETY: allocated in `new` with this layout, freed once, no handle refers
                    // to it.
                    unsafe { alloc::dealloc(base.as_ptr(), *layout) };
                }
            }
            #[cfg(feature = "dpdk")]
            Backing::Mbufs(slots) => {
                if !all_back {
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
            .field("available", &self.available())
            .field("foreign_frees", &self.foreign_frees())
            .finish()
    }
}
