use std::cell::Cell;
use std::ffi::{c_void, CString};
use std::marker::PhantomData;
use std::ptr::NonNull;

use crate::{eal, ffi, Error};

/// A packet-buffer pool (`rte_pktmbuf_pool_create`), freed on drop.
///
/// Concurrency: the default mempool driver (`ring_mp_mc`) lets any number of threads allocate
/// and free at once. EAL threads go through a per-lcore cache of `cache_size` mbufs (no atomic
/// on a hit); threads the EAL did not create have no lcore id and hit the shared ring every time
/// (one CAS per bulk call), unless they register ([`eal::register_thread`]) and so get an lcore id
/// and its cache, or go through a [`MempoolCache`] of their own.
///
/// Ownership: mbufs are handed out as raw pointers, as the DPDK data path passes them. Freeing
/// one is `unsafe` because its contract includes that the mbuf came from a pool that is still
/// alive; dropping the pool while mbufs are out is allowed by this type but makes every later
/// free of those mbufs undefined behaviour, so return them first ([`in_use`](Self::in_use)
/// tells).
pub struct PktmbufPool {
    ptr: NonNull<ffi::rte_mempool>,
}

// SAFETY: the mempool is created with the thread-safe ring_mp_mc ops and every method goes
// through DPDK functions that are safe to call from any thread concurrently.
unsafe impl Send for PktmbufPool {}
// SAFETY: as above; no method mutates Rust-side state.
unsafe impl Sync for PktmbufPool {}

impl PktmbufPool {
    /// Creates a pool of `n` mbufs with `data_room` bytes of buffer each (headroom included;
    /// [`ffi::RTE_MBUF_DEFAULT_BUF_SIZE`] is the usual value) and a per-lcore cache of
    /// `cache_size` (0 for none; at most `RTE_MEMPOOL_CACHE_MAX_SIZE` and `n / 1.5`), on NUMA
    /// socket `socket_id` ([`ffi::SOCKET_ID_ANY`] for any). `name` must be unique among the
    /// process's mempools and short (DPDK prefixes it to a memzone name of at most 31 bytes).
    ///
    /// Cost: allocates and initialises every mbuf up front; milliseconds for thousands.
    pub fn new(
        name: &str,
        n: u32,
        cache_size: u32,
        data_room: u16,
        socket_id: i32,
    ) -> Result<Self, Error> {
        PktmbufPool::with_private_area(name, n, cache_size, 0, data_room, socket_id)
    }

    /// As [`new`](Self::new), with `priv_size` bytes of application area between each
    /// `rte_mbuf` and its buffer (a multiple of `RTE_MBUF_PRIV_ALIGN`, 8). It moves where the
    /// data starts: `sizeof(rte_mbuf) + priv_size + RTE_PKTMBUF_HEADROOM` bytes after the mbuf.
    pub fn with_private_area(
        name: &str,
        n: u32,
        cache_size: u32,
        priv_size: u16,
        data_room: u16,
        socket_id: i32,
    ) -> Result<Self, Error> {
        const OP: &str = "rte_pktmbuf_pool_create";
        eal::ensure(OP)?;
        let cname = CString::new(name)
            .map_err(|_| Error::invalid(OP, format!("name {name:?} contains a NUL byte")))?;
        // SAFETY: the EAL is initialised and cname is a valid C string for the call's duration
        // (DPDK copies the name); DPDK checks priv_size's alignment and fails with EINVAL.
        let raw = unsafe {
            ffi::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                n,
                cache_size,
                priv_size,
                data_room,
                socket_id,
            )
        };
        NonNull::new(raw)
            .map(|ptr| PktmbufPool { ptr })
            .ok_or_else(|| Error::last(OP))
    }

    /// Fills `out` with raw mbufs, all or nothing, past every cache (`rte_mempool_generic_get`
    /// with no cache): the mbufs come as they were put back, not reset. False (nothing taken)
    /// when the pool holds fewer.
    pub fn get_raw(&self, out: &mut [*mut ffi::rte_mbuf]) -> bool {
        let Ok(n) = u32::try_from(out.len()) else {
            return false;
        };
        if n == 0 {
            return true;
        }
        // SAFETY: the pool is alive and thread-safe; `out` has room for n pointers, which DPDK
        // writes only on success; a NULL cache means the pool's ring itself.
        let rc = unsafe {
            ffi::dpdk_sys_mempool_generic_get(
                self.ptr.as_ptr(),
                out.as_mut_ptr().cast::<*mut c_void>(),
                n,
                std::ptr::null_mut(),
            )
        };
        rc == 0
    }

    /// Puts `mbufs` back raw, past every cache (`rte_mempool_generic_put` with no cache): no
    /// reference count or segment is looked at.
    ///
    /// # Safety
    /// Every entry must be an mbuf of this pool that the caller owns, in the state the pool
    /// hands out (one segment, reference count 1), listed once, and not used afterwards.
    pub unsafe fn put_raw(&self, mbufs: &[*mut ffi::rte_mbuf]) {
        for chunk in mbufs.chunks(u32::MAX as usize) {
            // SAFETY: the caller's contract; the pool is alive; DPDK only reads the table.
            unsafe {
                ffi::dpdk_sys_mempool_generic_put(
                    self.ptr.as_ptr(),
                    chunk.as_ptr().cast::<*mut c_void>(),
                    chunk.len() as u32,
                    std::ptr::null_mut(),
                )
            }
        }
    }

    /// The underlying `rte_mempool`, for the raw API (port queue set-up).
    pub fn as_ptr(&self) -> *mut ffi::rte_mempool {
        self.ptr.as_ptr()
    }

    /// One mbuf, reset to an empty packet, or `None` when the pool is empty.
    /// Cost: one shim call; see the type doc for the cache.
    pub fn alloc(&self) -> Option<NonNull<ffi::rte_mbuf>> {
        // SAFETY: the pool is alive (borrowed) and thread-safe.
        NonNull::new(unsafe { ffi::dpdk_sys_pktmbuf_alloc(self.ptr.as_ptr()) })
    }

    /// Fills `out` with mbufs, all or nothing: on failure `out` is unchanged and nothing is
    /// taken. Cost: one shim call and one mempool dequeue for the whole slice.
    pub fn alloc_bulk(&self, out: &mut [*mut ffi::rte_mbuf]) -> Result<(), Error> {
        const OP: &str = "rte_pktmbuf_alloc_bulk";
        let count = u32::try_from(out.len())
            .map_err(|_| Error::invalid(OP, format!("{} mbufs at once", out.len())))?;
        // SAFETY: out has room for count pointers; the pool is alive and thread-safe.
        let rc =
            unsafe { ffi::dpdk_sys_pktmbuf_alloc_bulk(self.ptr.as_ptr(), out.as_mut_ptr(), count) };
        if rc == 0 {
            Ok(())
        } else {
            Err(Error::from_code(OP, rc))
        }
    }

    /// Mbufs the pool was created with (`rte_mempool::size`).
    pub fn size(&self) -> u32 {
        // SAFETY: the pool is alive; `size` is written once by rte_pktmbuf_pool_create and only
        // read afterwards.
        unsafe { (*self.ptr.as_ptr()).size }
    }

    /// Per-lcore cache size the pool was created with (`rte_mempool::cache_size`).
    pub fn cache_size(&self) -> u32 {
        // SAFETY: as for size(): written once at creation.
        unsafe { (*self.ptr.as_ptr()).cache_size }
    }

    /// Returns everything the calling thread's per-lcore cache of this pool holds to the pool's
    /// ring, in one bulk enqueue (`rte_mempool_cache_flush(NULL, mp)`). Does nothing on a thread
    /// without an lcore id, or when the pool has no per-lcore caches.
    ///
    /// A thread that used the per-lcore cache calls it before it ends (or unregisters, see
    /// [`eal::register_thread`]): a cache left behind keeps its mbufs with the lcore id, counted as
    /// available by [`available`](Self::available) but reachable only by the next thread with
    /// that id. Cost: one shim call and one ring enqueue of the cache's length.
    pub fn flush_lcore_cache(&self) {
        // SAFETY: the pool is alive; with a NULL cache DPDK flushes the cache of the calling
        // thread's own lcore id, which no other thread uses (the EAL hands each lcore id to one
        // thread at a time), so this does not race with another thread's cache operations.
        unsafe { ffi::dpdk_sys_mempool_cache_flush(std::ptr::null_mut(), self.ptr.as_ptr()) }
    }

    /// Mbufs currently in the pool (a snapshot; per-lcore caches count as available).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is alive; the function only reads counters.
        unsafe { ffi::rte_mempool_avail_count(self.ptr.as_ptr()) }
    }

    /// Mbufs on the pool's own ring (its ops' `get_count`), the per-lcore caches left out: what
    /// a get past every cache can take. Cheaper than [`available`](Self::available), which also
    /// reads every lcore's cache.
    pub fn ring_count(&self) -> u32 {
        // SAFETY: the pool is alive; its ops were set at creation and `get_count` only reads.
        unsafe { ffi::dpdk_sys_mempool_ring_count(self.ptr.as_ptr()) }
    }

    /// Mbufs currently allocated from the pool (a snapshot).
    pub fn in_use(&self) -> u32 {
        // SAFETY: as for available().
        unsafe { ffi::rte_mempool_in_use_count(self.ptr.as_ptr()) }
    }
}

impl std::fmt::Debug for PktmbufPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PktmbufPool")
            .field("ptr", &self.ptr)
            .field("available", &self.available())
            .field("in_use", &self.in_use())
            .finish()
    }
}

impl Drop for PktmbufPool {
    fn drop(&mut self) {
        // SAFETY: the pool was created by rte_pktmbuf_pool_create and is freed exactly once;
        // no borrow of self outlives this call.
        unsafe { ffi::rte_mempool_free(self.ptr.as_ptr()) }
    }
}

/// A mempool cache owned by the user rather than by an lcore (`rte_mempool_cache_create`), bound to
/// one pool: what a thread the EAL did not create uses to get per-thread caching
/// (`rte_mempool_generic_get` / `rte_mempool_generic_put` with this cache).
///
/// Concurrency: `Send`, not `Sync`, and every operation takes `&mut self`: one thread at a time
/// uses it, which is DPDK's contract for a cache. The pool behind it is MP/MC.
///
/// Objects: [`get_bulk`](Self::get_bulk) hands out mbufs *raw*, in the state they were put
/// back in: no `rte_pktmbuf_reset` (an mbuf freed by `rte_pktmbuf_free` or put back raw keeps one
/// segment and a reference count of 1, and its `data_off`). Dropping the cache flushes it to the
/// pool and frees it; the borrow of the pool makes it impossible to drop the pool first.
///
/// Cost, as DPDK 22.11 implements it: a get served by the cache copies `n` pointers; one that
/// finds fewer than `n` takes what is there and refills the cache with `size + rest` objects in
/// one ring dequeue. A put that would pass the flush threshold (1.5 × `size`) first enqueues the
/// whole cache in one ring enqueue, then keeps the `n` new ones. Plus one shim call per get or
/// put.
pub struct MempoolCache<'p> {
    cache: NonNull<ffi::rte_mempool_cache>,
    pool: &'p PktmbufPool,
    not_sync: PhantomData<Cell<()>>,
}

// SAFETY: the cache is plain memory from rte_zmalloc, not tied to the thread that created it;
// `&mut self` on every operation keeps it to one thread at a time, and the pool reference is
// Send because PktmbufPool is Sync.
unsafe impl Send for MempoolCache<'_> {}

impl<'p> MempoolCache<'p> {
    /// A cache of `size` objects (1..=`RTE_MEMPOOL_CACHE_MAX_SIZE`, 512) in front of `pool`.
    pub fn new(pool: &'p PktmbufPool, size: u32) -> Result<Self, Error> {
        const OP: &str = "rte_mempool_cache_create";
        eal::ensure(OP)?;
        // SAFETY: the EAL is initialised; DPDK checks `size` and fails with rte_errno set.
        let raw = unsafe { ffi::rte_mempool_cache_create(size, ffi::SOCKET_ID_ANY) };
        let cache = NonNull::new(raw).ok_or_else(|| Error::last(OP))?;
        Ok(MempoolCache {
            cache,
            pool,
            not_sync: PhantomData,
        })
    }

    /// The pool this cache is bound to.
    pub fn pool(&self) -> &'p PktmbufPool {
        self.pool
    }

    /// Objects the cache holds now.
    pub fn len(&self) -> u32 {
        // SAFETY: the cache is alive and only this thread uses it (`&self` of a non-Sync type).
        unsafe { (*self.cache.as_ptr()).len }
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cache's size (its refill target; it flushes above 1.5 × this).
    pub fn size(&self) -> u32 {
        // SAFETY: as for len(); written once by rte_mempool_cache_create.
        unsafe { (*self.cache.as_ptr()).size }
    }

    /// Fills `out` with raw mbufs of the pool, all or nothing (`rte_mempool_generic_get`): on
    /// failure nothing is taken (DPDK may have written entries of `out`, which then mean nothing).
    pub fn get_bulk(&mut self, out: &mut [*mut ffi::rte_mbuf]) -> Result<(), Error> {
        const OP: &str = "rte_mempool_generic_get";
        if out.is_empty() {
            return Ok(());
        }
        let n = u32::try_from(out.len())
            .map_err(|_| Error::invalid(OP, format!("{} objects at once", out.len())))?;
        // SAFETY: the pool is alive (borrowed for 'p); the cache is alive and used only here
        // (`&mut self`); `out` has room for n pointers, which DPDK writes only on success.
        let rc = unsafe {
            ffi::dpdk_sys_mempool_generic_get(
                self.pool.as_ptr(),
                out.as_mut_ptr().cast::<*mut c_void>(),
                n,
                self.cache.as_ptr(),
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(Error::from_code(OP, rc))
        }
    }

    /// Puts `mbufs` back into the pool through the cache (`rte_mempool_generic_put`), raw: no
    /// reference count or segment is looked at.
    ///
    /// # Safety
    /// Every entry must be an mbuf of this cache's pool that the caller owns (taken with
    /// [`get_bulk`](Self::get_bulk) or from the pool otherwise, in the state the pool hands
    /// out: one segment, reference count 1), appear once, and not be used afterwards. NULL is not
    /// allowed.
    pub unsafe fn put_bulk(&mut self, mbufs: &[*mut ffi::rte_mbuf]) {
        for chunk in mbufs.chunks(u32::MAX as usize) {
            // SAFETY: the caller's contract makes every entry an owned object of this pool; the
            // pool and the cache are alive and the cache is used only here; chunk.len() fits in
            // u32 and DPDK only reads the table.
            unsafe {
                ffi::dpdk_sys_mempool_generic_put(
                    self.pool.as_ptr(),
                    chunk.as_ptr().cast::<*mut c_void>(),
                    chunk.len() as u32,
                    self.cache.as_ptr(),
                )
            }
        }
    }

    /// Returns everything the cache holds to the pool in one ring enqueue.
    pub fn flush(&mut self) {
        // SAFETY: the cache holds only objects of its pool (get_bulk and put_bulk are the only
        // ways in, both with this pool); both are alive and the cache is used only here.
        unsafe { ffi::dpdk_sys_mempool_cache_flush(self.cache.as_ptr(), self.pool.as_ptr()) }
    }
}

impl Drop for MempoolCache<'_> {
    fn drop(&mut self) {
        self.flush();
        // SAFETY: created by rte_mempool_cache_create, freed once, empty (just flushed) so no
        // object is lost with it.
        unsafe { ffi::rte_mempool_cache_free(self.cache.as_ptr()) }
    }
}

impl std::fmt::Debug for MempoolCache<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MempoolCache")
            .field("size", &self.size())
            .field("len", &self.len())
            .finish()
    }
}

/// The first data byte of `m`, as `rte_pktmbuf_mtod` computes it (`buf_addr + data_off`), in
/// Rust: no shim call, one read of the mbuf's first line.
///
/// # Safety
/// `m` must point to a valid mbuf the caller owns.
#[inline]
pub unsafe fn pktmbuf_mtod(m: *mut ffi::rte_mbuf) -> *mut u8 {
    // SAFETY: the caller guarantees m is a valid mbuf; buf_addr and data_off are plain fields of
    // its first line, and data_off lies inside the buffer by the mbuf's invariants.
    unsafe {
        let mbuf = &*m;
        mbuf.buf_addr.cast::<u8>().add(usize::from(mbuf.data_off))
    }
}

/// Returns one mbuf (every segment) to its pool.
///
/// # Safety
/// `m` must be an mbuf the caller owns (allocated and not yet freed or handed to a port), from a
/// pool that is still alive; it must not be used afterwards. NULL is allowed and ignored.
pub unsafe fn pktmbuf_free(m: *mut ffi::rte_mbuf) {
    // SAFETY: the caller's contract above is rte_pktmbuf_free's.
    unsafe { ffi::dpdk_sys_pktmbuf_free(m) }
}

/// Returns the mbufs of `mbufs` to their pools in one call (`rte_pktmbuf_free_bulk`, which
/// groups them by pool). NULL entries are skipped.
///
/// # Safety
/// As for [`pktmbuf_free`], for every entry; no pointer may appear twice.
pub unsafe fn pktmbuf_free_bulk(mbufs: &mut [*mut ffi::rte_mbuf]) {
    for chunk in mbufs.chunks_mut(u32::MAX as usize) {
        // SAFETY: the caller's contract; chunk.len() fits in u32.
        unsafe { ffi::rte_pktmbuf_free_bulk(chunk.as_mut_ptr(), chunk.len() as u32) }
    }
}

/// The first data byte of the first segment of `m` and its length (`rte_pktmbuf_mtod`,
/// `data_len`).
///
/// # Safety
/// `m` must point to a valid mbuf the caller owns for the lifetime `'a`, with no other
/// reference to its data.
pub unsafe fn pktmbuf_data<'a>(m: *mut ffi::rte_mbuf) -> &'a mut [u8] {
    // SAFETY: the caller guarantees m is a valid, exclusively owned mbuf; mtod points at
    // data_len initialised bytes inside its buffer.
    unsafe {
        let data = ffi::dpdk_sys_pktmbuf_mtod(m).cast::<u8>();
        std::slice::from_raw_parts_mut(data, usize::from((*m).data_len))
    }
}

/// Appends `bytes` to the packet in `m` (`rte_pktmbuf_append` then a copy).
/// Fails when the last segment's tailroom is too small; the mbuf is then unchanged.
///
/// # Safety
/// `m` must point to a valid mbuf the caller owns, with no other reference to its data.
pub unsafe fn pktmbuf_append(m: *mut ffi::rte_mbuf, bytes: &[u8]) -> Result<(), Error> {
    const OP: &str = "rte_pktmbuf_append";
    let len = u16::try_from(bytes.len())
        .map_err(|_| Error::invalid(OP, format!("{} bytes exceed one segment", bytes.len())))?;
    // SAFETY: the caller's contract; on success append returns len writable bytes in m.
    unsafe {
        let dst = ffi::dpdk_sys_pktmbuf_append(m, len);
        if dst.is_null() {
            return Err(Error::invalid(
                OP,
                format!("{len} bytes do not fit in the mbuf's tailroom"),
            ));
        }
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst.cast::<u8>(), bytes.len());
    }
    Ok(())
}
