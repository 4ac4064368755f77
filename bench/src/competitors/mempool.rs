//! DPDK's `rte_mempool` as a contender of the pool experiment, through `dpdk-sys`: an mbuf pool
//! (`rte_pktmbuf_pool_create`, the default `ring_mp_mc` ops) reached through a user-owned cache
//! ([`MempoolCache`]: `rte_mempool_generic_get` / `generic_put`) or through the mbuf API on an
//! lcore (`rte_pktmbuf_alloc_bulk` / `rte_pktmbuf_free_bulk`, the per-lcore cache).
//!
//! Every repetition creates a fresh pool of the engine's `pool.buffers` mbufs with a data room of
//! `pool.data_room` bytes behind DPDK's default headroom ([`ffi::RTE_PKTMBUF_HEADROOM`], 128)
//! and a per-lcore cache of `pool.cache`; a user-owned cache has the same size. The byte each
//! buffer gets is its first data byte, where `rte_pktmbuf_mtod` points, as for flowsteer's
//! buffers.

use std::ptr;
use std::time::Duration;

use dpdk_sys::{eal, ffi, pktmbuf_free_bulk, pktmbuf_mtod, MempoolCache, PktmbufPool};

use super::dpdk::{eal_memory, unique_name};
use crate::pool::{self, Contender, Failure, Params, Pattern, Pool, PoolThread};

/// An owned mbuf, as the ring carries it.
#[repr(transparent)]
pub struct Mbuf(*mut ffi::rte_mbuf);

// SAFETY: an `Mbuf` is the only handle to its mbuf while it exists (taken from the pool by one
// thread, moved through the ring, put back by another); the mbuf's memory is shared EAL memory
// valid from any thread.
unsafe impl Send for Mbuf {}

/// The raw pointers of `bufs`, as DPDK takes them.
fn as_raw(bufs: &mut [Mbuf]) -> &mut [*mut ffi::rte_mbuf] {
    // SAFETY: `Mbuf` is `repr(transparent)` over `*mut rte_mbuf`: the same size, alignment and
    // validity, so the slice may be viewed as one of pointers; the borrow stays exclusive.
    unsafe { std::slice::from_raw_parts_mut(bufs.as_mut_ptr().cast(), bufs.len()) }
}

/// Appends `n` mbufs to `out` through `get` (all or nothing); returns how many.
#[inline]
fn alloc_into(
    out: &mut Vec<Mbuf>,
    n: usize,
    get: impl FnOnce(&mut [*mut ffi::rte_mbuf]) -> bool,
) -> usize {
    let old = out.len();
    out.resize_with(old + n, || Mbuf(ptr::null_mut()));
    if get(as_raw(&mut out[old..])) {
        n
    } else {
        // Nothing was taken: the entries are not mbufs of anyone's.
        out.truncate(old);
        0
    }
}

#[inline]
fn touch(bufs: &mut [Mbuf], byte: u8) {
    for m in bufs {
        // SAFETY: `m` is an mbuf this thread owns, from a pool whose buffers have 128 bytes of
        // headroom and a data room behind it: the first data byte is inside its buffer.
        unsafe { pktmbuf_mtod(m.0).write(byte) };
    }
}

/// The pool reached through user-owned caches, one per thread.
struct UserCachePool {
    pool: PktmbufPool,
    cache: u32,
}

impl Pool for UserCachePool {
    type Buf = Mbuf;
    type Thread<'a> = MempoolCache<'a>;

    fn thread(&self) -> Result<MempoolCache<'_>, String> {
        MempoolCache::new(&self.pool, self.cache).map_err(|e| e.to_string())
    }

    fn check(&self) -> Result<(), String> {
        check(&self.pool)
    }
}

impl PoolThread for MempoolCache<'_> {
    type Buf = Mbuf;

    #[inline]
    fn alloc_burst(&mut self, out: &mut Vec<Mbuf>, n: usize) -> usize {
        alloc_into(out, n, |raw| self.get_bulk(raw).is_ok())
    }

    #[inline]
    fn touch_burst(&mut self, bufs: &mut [Mbuf], byte: u8) {
        touch(bufs, byte);
    }

    #[inline]
    fn free_burst(&mut self, bufs: &mut Vec<Mbuf>) {
        // SAFETY: every entry was taken from this cache's pool (get_bulk of a cache of the same
        // pool, on this or another thread), is owned here, appears once, and is forgotten right
        // after (clear).
        unsafe { self.put_bulk(as_raw(bufs)) };
        bufs.clear();
    }
}

/// The pool reached through the mbuf API and the per-lcore cache of the calling thread's lcore.
struct LcorePool {
    pool: PktmbufPool,
}

/// One thread's way into an [`LcorePool`]: its lcore (registered here if it had none).
struct LcoreWay<'p> {
    pool: &'p PktmbufPool,
    _registration: Option<eal::ThreadRegistration>,
}

impl Drop for LcoreWay<'_> {
    fn drop(&mut self) {
        // Before the registration goes (fields drop after this body): the lcore's cache must not
        // keep mbufs for whoever gets the lcore id next.
        self.pool.flush_lcore_cache();
    }
}

impl Pool for LcorePool {
    type Buf = Mbuf;
    type Thread<'a> = LcoreWay<'a>;

    fn thread(&self) -> Result<LcoreWay<'_>, String> {
        let registration = match eal::lcore_id() {
            Some(_) => None,
            None => Some(eal::register_thread().map_err(|e| e.to_string())?),
        };
        Ok(LcoreWay {
            pool: &self.pool,
            _registration: registration,
        })
    }

    fn check(&self) -> Result<(), String> {
        check(&self.pool)
    }
}

impl PoolThread for LcoreWay<'_> {
    type Buf = Mbuf;

    #[inline]
    fn alloc_burst(&mut self, out: &mut Vec<Mbuf>, n: usize) -> usize {
        alloc_into(out, n, |raw| self.pool.alloc_bulk(raw).is_ok())
    }

    #[inline]
    fn touch_burst(&mut self, bufs: &mut [Mbuf], byte: u8) {
        touch(bufs, byte);
    }

    #[inline]
    fn free_burst(&mut self, bufs: &mut Vec<Mbuf>) {
        // SAFETY: every entry is an mbuf of this pool, allocated by rte_pktmbuf_alloc_bulk and
        // owned here, appearing once; it is forgotten right after (clear).
        unsafe { pktmbuf_free_bulk(as_raw(bufs)) };
        bufs.clear();
    }
}

/// Every mbuf back: `rte_mempool_avail_count` (the ring and every per-lcore cache) equals the
/// pool's size.
fn check(pool: &PktmbufPool) -> Result<(), String> {
    let (available, size) = (pool.available(), pool.size());
    if available == size {
        Ok(())
    } else {
        Err(format!("rte_mempool_avail_count = {available} of {size}"))
    }
}

/// A fresh mbuf pool of `params`.
fn mbuf_pool(params: Params) -> Result<PktmbufPool, Failure> {
    let data_room = u16::try_from(u32::from(params.data_room) + ffi::RTE_PKTMBUF_HEADROOM)
        .map_err(|_| Failure::Setup("data room and headroom above 64 KiB".to_string()))?;
    PktmbufPool::new(
        &unique_name("fsb_pool_"),
        params.buffers,
        params.cache,
        data_room,
        ffi::SOCKET_ID_ANY,
    )
    .map_err(|e| Failure::Setup(e.to_string()))
}

/// One repetition of `pattern` on a fresh pool, reached the way `contender` names.
pub fn rep(
    contender: Contender,
    pattern: Pattern,
    burst: usize,
    params: Params,
    duration: Duration,
) -> Result<f64, Failure> {
    match contender {
        Contender::MempoolUserCache => {
            let pool = UserCachePool {
                pool: mbuf_pool(params)?,
                cache: params.cache,
            };
            pool::run_pattern(&pool, pattern, burst, duration)
        }
        Contender::PktmbufLcoreCache => {
            let pool = LcorePool {
                pool: mbuf_pool(params)?,
            };
            pool::run_pattern(&pool, pattern, burst, duration)
        }
        Contender::Ours | Contender::OursTiered => Err(Failure::Setup(
            "flowsteer's pool is not a DPDK contender".to_string(),
        )),
    }
}

/// One element of the pool, for the table's notes.
pub fn layout(params: Params) -> String {
    let mbuf = std::mem::size_of::<ffi::rte_mbuf>();
    let headroom = ffi::RTE_PKTMBUF_HEADROOM as usize;
    let room = usize::from(params.data_room);
    format!(
        "rte_mempool: rte_mbuf {mbuf} B + headroom {headroom} B + data room {room} B = {} B per \
         element, behind the mempool's object header; EAL memory on {}",
        mbuf + headroom + room,
        eal_memory().unwrap_or("unknown pages")
    )
}
