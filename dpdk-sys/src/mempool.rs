use std::ffi::CString;
use std::ptr::NonNull;

use crate::{eal, ffi, Error};

/// A packet-buffer pool (`rte_pktmbuf_pool_create`), freed on drop.
///
/// Concurrency: the default mempool driver (`ring_mp_mc`) lets any number of threads allocate
/// and free at once. EAL threads go through a per-lcore cache of `cache_size` mbufs (no atomic
/// on a hit); threads the EAL did not create have no lcore id and hit the shared ring every time
/// (one CAS per bulk call).
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
        const OP: &str = "rte_pktmbuf_pool_create";
        eal::ensure(OP)?;
        let cname = CString::new(name)
            .map_err(|_| Error::invalid(OP, format!("name {name:?} contains a NUL byte")))?;
        // SAFETY: the EAL is initialised and cname is a valid C string for the call's duration
        // (DPDK copies the name).
        let raw = unsafe {
            ffi::rte_pktmbuf_pool_create(cname.as_ptr(), n, cache_size, 0, data_room, socket_id)
        };
        NonNull::new(raw)
            .map(|ptr| PktmbufPool { ptr })
            .ok_or_else(|| Error::last(OP))
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

    /// Mbufs currently in the pool (a snapshot; per-lcore caches count as available).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is alive; the function only reads counters.
        unsafe { ffi::rte_mempool_avail_count(self.ptr.as_ptr()) }
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
