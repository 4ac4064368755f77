//! The per-thread buffer cache in front of a pool's segments.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{CachedCounts, PacketPool, PktBuf};

/// Most buffers of another segment a cache holds for it before returning them in one bulk.
const RETURN_BATCH_MAX: usize = 64;

/// One thread's free buffers of one [`PacketPool`] (their handles): a stack of its home
/// segment's, and a return stack per other segment.
///
/// `Send`, not `Sync`: it moves to its thread and is used only there. Allocation pops the most
/// recently freed home buffer (still warm in this core's cache). An empty home stack refills
/// `size / 2` buffers in one go: from the home segment while it holds at least the pool's low
/// watermark, else from the shared pool (counted as borrowed), else whatever the home segment
/// has left. A full home stack flushes its oldest buffers down to `size / 2`. A buffer of another
/// segment goes on that segment's return stack, which goes back in one bulk once it holds half of
/// `min(size / 2, 64)` and the segment's store is not locked by another thread, and in any case
/// when it holds all of it (borrowed shared buffers wait there for this cache's next borrow).
/// Dropping the cache returns everything it holds to its segments.
pub struct PoolCache {
    pool: Arc<PacketPool>,
    /// The home segment's buffers.
    local: Vec<PktBuf>,
    /// The home segment's index and its header range (copied here: the free path's check reads
    /// nothing behind the pool's pointer).
    home: usize,
    home_lo: usize,
    home_span: usize,
    size: usize,
    /// Per segment, its buffers freed here (the home's entry stays empty).
    returns: Box<[Vec<PktBuf>]>,
    /// A return stack of this many tries to go back without waiting for the store's lock; one
    /// of `return_batch` goes back in any case.
    return_try: usize,
    /// The segment of the last buffer of another segment freed here, and its header range: a
    /// handed-off burst comes from one queue, so its buffers after the first skip the search.
    last_other: usize,
    last_lo: usize,
    last_span: usize,
    return_batch: usize,
    counts: CachedCounts,
    not_sync: PhantomData<Cell<()>>,
}

impl PoolCache {
    pub(super) fn new(
        pool: Arc<PacketPool>,
        home: usize,
        size: u32,
        counts: CachedCounts,
    ) -> PoolCache {
        let size = size as usize;
        let return_batch = (size / 2).clamp(1, RETURN_BATCH_MAX);
        let (home_lo, home_hi) = pool.segments[home].range();
        let returns = pool
            .segments
            .iter()
            .map(|_| Vec::with_capacity(return_batch))
            .collect();
        PoolCache {
            local: Vec::with_capacity(size),
            home,
            home_lo,
            home_span: home_hi - home_lo,
            size,
            returns,
            return_try: return_batch.div_ceil(2),
            // No segment yet: an empty range matches nothing.
            last_other: home,
            last_lo: 0,
            last_span: 0,
            return_batch,
            counts,
            pool,
            not_sync: PhantomData,
        }
    }

    /// One buffer, empty (length 0, receive hash 0); `None` (counted in the home segment's
    /// failures) when neither the cache, the home segment nor the shared pool has one.
    #[inline]
    pub fn alloc(&mut self) -> Option<PktBuf> {
        let mut buf = match self.local.pop() {
            Some(buf) => buf,
            None => match self.alloc_slow() {
                Some(buf) => buf,
                None => {
                    self.count_failure();
                    return None;
                }
            },
        };
        self.publish();
        buf.reset();
        Some(buf)
    }

    /// Appends up to `n` empty buffers to `out`; returns how many (fewer only when the pool runs
    /// out, counted as one failure).
    pub fn alloc_bulk(&mut self, out: &mut Vec<PktBuf>, n: usize) -> usize {
        // The common case: the home stack holds the burst; its newest `n` move in one copy.
        if let Some(first) = self.local.len().checked_sub(n) {
            let start = out.len();
            out.extend(self.local.drain(first..));
            for buf in &mut out[start..] {
                buf.reset();
            }
            self.publish();
            return n;
        }
        // Never more than the pool holds, so an absurd `n` cannot overflow the reservation.
        out.reserve(n.min(self.pool.capacity() as usize));
        let mut got = 0;
        while got < n {
            let mut buf = match self.local.pop() {
                Some(buf) => buf,
                None => match self.alloc_slow() {
                    Some(buf) => buf,
                    None => {
                        self.count_failure();
                        break;
                    }
                },
            };
            buf.reset();
            out.push(buf);
            got += 1;
        }
        self.publish();
        got
    }

    /// Returns `buf` to its segment through this cache.
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
        // The common case: all of them home buffers, and room for them: one copy.
        let (lo, span) = (self.home_lo, self.home_span);
        if self.local.len() + bufs.len() <= self.size
            && bufs.iter().all(|b| b.header_addr().wrapping_sub(lo) < span)
        {
            self.local.append(bufs);
        } else {
            for buf in bufs.drain(..) {
                self.free_one(buf);
            }
        }
        self.publish();
    }

    /// The pool this cache draws from.
    pub fn pool(&self) -> &Arc<PacketPool> {
        &self.pool
    }

    /// The segment this cache draws from first.
    pub fn home(&self) -> super::Tier {
        self.pool.segments[self.home].tier
    }

    /// Buffers held by this cache right now, its return stacks included.
    pub fn len(&self) -> usize {
        self.local.len() + self.returns.iter().map(Vec::len).sum::<usize>()
    }

    /// Whether this cache holds no buffer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most home buffers this cache holds.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Takes `buf` without reading it: a buffer another core wrote last stays out of this
    /// core's cache until it is allocated again.
    #[inline]
    fn free_one(&mut self, buf: PktBuf) {
        let addr = buf.header_addr();
        if addr.wrapping_sub(self.home_lo) >= self.home_span {
            if addr.wrapping_sub(self.last_lo) < self.last_span {
                self.give_back(self.last_other, buf);
            } else {
                self.free_elsewhere(buf);
            }
            return;
        }
        if self.size == 0 {
            self.pool.segments[self.home].give(std::iter::once(buf));
            return;
        }
        if self.local.len() >= self.size {
            self.flush_to(self.size / 2);
        }
        self.local.push(buf);
    }

    /// A buffer of a segment other than the home and the last one: found by its address (and
    /// remembered as the last), or counted as foreign.
    fn free_elsewhere(&mut self, buf: PktBuf) {
        let pool = &*self.pool;
        let Some(segment) = pool.segment_of(buf.header_addr()) else {
            pool.foreign_frees.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let (lo, hi) = pool.segments[segment].range();
        (self.last_other, self.last_lo, self.last_span) = (segment, lo, hi - lo);
        self.give_back(segment, buf);
    }

    /// `buf`, of `segment` (not the home), onto that segment's return stack; a full one goes
    /// back in one bulk.
    #[inline]
    fn give_back(&mut self, segment: usize, buf: PktBuf) {
        let stack = &mut self.returns[segment];
        stack.push(buf);
        let held = stack.len();
        if held >= self.return_try {
            self.return_all(segment);
        } else {
            self.counts[segment].store(held as u32, Ordering::Relaxed);
        }
    }

    /// Returns everything the return stack of `segment` holds, in one bulk: from half a batch on
    /// only if the segment's store is free at once (a thread preempted while holding it does
    /// not stop this one), at a full batch in any case.
    #[cold]
    #[inline(never)]
    fn return_all(&mut self, segment: usize) {
        let stack = &mut self.returns[segment];
        let segment_store = &self.pool.segments[segment];
        if stack.len() >= self.return_batch {
            segment_store.give(stack.drain(..));
        } else {
            segment_store.try_give_all(stack);
        }
        self.counts[segment].store(stack.len() as u32, Ordering::Relaxed);
    }

    /// The next buffer once the home stack is empty (see the type's documentation for the
    /// order); `None` when every source is dry.
    #[cold]
    fn alloc_slow(&mut self) -> Option<PktBuf> {
        let pool = &*self.pool;
        let home = &pool.segments[self.home];
        let shared = pool.shared_index();
        let n = self.refill_count();
        let above_watermark = home.takeable() >= pool.low_watermark as usize;
        if (self.home == shared || above_watermark) && home.take(&mut self.local, n) > 0 {
            return self.local.pop();
        }
        if self.home == shared {
            return None;
        }
        // Below the watermark (or dry): a buffer this cache holds for the shared pool, else a
        // refill from it, counted as borrowed by the home segment.
        let stack = &mut self.returns[shared];
        if stack.is_empty() {
            let got = pool.segments[shared].take(stack, n);
            if got > 0 {
                let borrowed = &home.counters.borrowed;
                borrowed.fetch_add(got as u64, Ordering::Relaxed);
            }
        }
        if let Some(buf) = stack.pop() {
            self.counts[shared].store(stack.len() as u32, Ordering::Relaxed);
            return Some(buf);
        }
        // The shared pool is dry too: what the home segment has left.
        if home.take(&mut self.local, n) > 0 {
            return self.local.pop();
        }
        None
    }

    fn count_failure(&self) {
        let failures = &self.pool.segments[self.home].counters.failures;
        failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Half the cache; 1 for a cache of size 0, which takes one buffer a time.
    fn refill_count(&self) -> usize {
        (self.size / 2).max(1)
    }

    /// Returns the oldest home buffers until `keep` remain (the newest are the warmest).
    fn flush_to(&mut self, keep: usize) {
        if self.local.len() <= keep {
            return;
        }
        let excess = self.local.len() - keep;
        self.pool.segments[self.home].give(self.local.drain(..excess));
    }

    /// Makes this cache's home count visible to `available`. Single writer: a plain store, no
    /// read-modify-write, on a line no other cache writes.
    #[inline]
    fn publish(&self) {
        self.counts[self.home].store(self.local.len() as u32, Ordering::Relaxed);
    }
}

impl Drop for PoolCache {
    fn drop(&mut self) {
        self.flush_to(0);
        self.publish();
        for (segment, stack) in self.returns.iter_mut().enumerate() {
            if !stack.is_empty() {
                self.pool.segments[segment].give(stack.drain(..));
            }
            self.counts[segment].store(0, Ordering::Relaxed);
        }
        self.pool.unregister(&self.counts);
    }
}

impl fmt::Debug for PoolCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolCache")
            .field("home", &self.home())
            .field("size", &self.size)
            .field("cached", &self.len())
            .finish()
    }
}
