//! The per-thread buffer cache in front of a pool's global free list.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{CachedCount, PacketPool, PktBuf};

/// One thread's stack of free buffers of one [`PacketPool`] (their handles).
///
/// `Send`, not `Sync`: it moves to its thread and is used only there. Allocation pops the most
/// recently freed buffer (still warm in this core's cache). An empty cache refills `size / 2`
/// buffers from the pool in one go; a full one flushes its oldest buffers down to `size / 2`.
/// Dropping the cache returns everything it holds to the pool.
pub struct PoolCache {
    pool: Arc<PacketPool>,
    local: Vec<PktBuf>,
    size: usize,
    cached: CachedCount,
    not_sync: PhantomData<Cell<()>>,
}

impl PoolCache {
    pub(super) fn new(pool: Arc<PacketPool>, size: u32, cached: CachedCount) -> PoolCache {
        PoolCache {
            pool,
            local: Vec::with_capacity(size as usize),
            size: size as usize,
            cached,
            not_sync: PhantomData,
        }
    }

    /// One buffer, empty (length 0, receive hash 0); `None` when the cache and the global free
    /// list are both empty.
    #[inline]
    pub fn alloc(&mut self) -> Option<PktBuf> {
        let mut buf = match self.local.pop() {
            Some(buf) => buf,
            None => {
                self.refill(self.refill_count());
                self.local.pop()?
            }
        };
        self.publish();
        buf.reset();
        Some(buf)
    }

    /// Appends up to `n` empty buffers to `out`; returns how many (fewer only when the pool runs
    /// out).
    pub fn alloc_bulk(&mut self, out: &mut Vec<PktBuf>, n: usize) -> usize {
        // Never more than the pool holds, so an absurd `n` cannot overflow the reservation.
        out.reserve(n.min(self.pool.capacity() as usize));
        let start = out.len();
        // What a refill could not hold goes past the cache.
        let direct = n.saturating_sub(self.refill_count().max(self.local.len()));
        if direct > 0 {
            self.pool.take(out, direct);
            for buf in &mut out[start..] {
                buf.reset();
            }
        }
        let mut got = out.len() - start;
        while got < n {
            let mut buf = match self.local.pop() {
                Some(buf) => buf,
                None => {
                    self.refill(self.refill_count());
                    match self.local.pop() {
                        Some(buf) => buf,
                        None => break,
                    }
                }
            };
            buf.reset();
            out.push(buf);
            got += 1;
        }
        self.publish();
        got
    }

    /// Returns `buf` to the pool through this cache.
    ///
    /// A buffer of another pool is not taken: it is counted in this cache's pool's
    /// [`PacketPool::foreign_frees`] and stays in use in its own pool (see the module
    /// documentation of [`pool`](super)).
    #[inline]
    pub fn free(&mut self, buf: PktBuf) {
        self.free_one(buf);
        self.publish();
    }

    /// Frees every buffer in `bufs`, leaving it empty (its capacity is kept).
    pub fn free_bulk(&mut self, bufs: &mut Vec<PktBuf>) {
        for buf in bufs.drain(..) {
            self.free_one(buf);
        }
        self.publish();
    }

    /// The pool this cache draws from.
    pub fn pool(&self) -> &Arc<PacketPool> {
        &self.pool
    }

    /// Buffers held by this cache right now.
    pub fn len(&self) -> usize {
        self.local.len()
    }

    /// Whether this cache holds no buffer.
    pub fn is_empty(&self) -> bool {
        self.local.is_empty()
    }

    /// The most buffers this cache holds.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Takes `buf` without reading it: a buffer another core wrote last stays out of this
    /// core's cache until it is allocated again.
    #[inline]
    fn free_one(&mut self, buf: PktBuf) {
        if !self.pool.owns(&buf) {
            self.pool.foreign_frees.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.size == 0 {
            self.pool.give(std::iter::once(buf));
            return;
        }
        if self.local.len() >= self.size {
            self.flush_to(self.size / 2);
        }
        self.local.push(buf);
    }

    /// Half the cache; 1 for a pool without caches, which takes and gives one buffer a time.
    fn refill_count(&self) -> usize {
        (self.size / 2).max(1)
    }

    fn refill(&mut self, count: usize) {
        self.pool.take(&mut self.local, count);
    }

    /// Returns the oldest buffers to the pool until `keep` remain (the newest are the warmest).
    fn flush_to(&mut self, keep: usize) {
        if self.local.len() <= keep {
            return;
        }
        let excess = self.local.len() - keep;
        self.pool.give(self.local.drain(..excess));
    }

    /// Makes this cache's count visible to `available`. Single writer: a plain store, no
    /// read-modify-write, on a line no other cache writes.
    #[inline]
    fn publish(&self) {
        self.cached
            .store(self.local.len() as u32, Ordering::Relaxed);
    }
}

impl Drop for PoolCache {
    fn drop(&mut self) {
        self.flush_to(0);
        self.publish();
        self.pool.unregister(&self.cached);
    }
}

impl fmt::Debug for PoolCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolCache")
            .field("size", &self.size)
            .field("cached", &self.local.len())
            .finish()
    }
}
