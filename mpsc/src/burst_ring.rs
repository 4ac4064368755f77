//! A bounded MPSC ring that claims a whole burst with one CAS and publishes it with one store.
//!
//! # Layout
//!
//! - `tail`: the next position to reserve, shared by all producers (one CAS per burst).
//! - `head`: the next position to consume, written only by the consumer (one store per burst).
//! - `values`: `slots` element cells (`slots` = `capacity` rounded up to a power of two, so a
//!   position maps to its cell with a mask). Pointer-sized elements are packed eight per cache
//!   line, as in `rte_ring`; no per-element metadata shares their lines.
//! - `headers`: one run header per cell, `{seq, len}`. Only the header of the first cell of a
//!   published run is meaningful; the others are stale and never read.
//!
//! Positions are `usize` counters that only grow (wrapping after 2^64, which the arithmetic
//! tolerates because `slots` divides 2^64). `head <= tail` and `tail - head <= capacity` hold at
//! every instant.
//!
//! # Protocol
//!
//! Producer, `enqueue_burst` of n elements:
//! 1. Reserve: read `tail` and a lower bound of `head` (the handle's cached copy, refreshed from
//!    the shared `head` only when the cached one shows too little room), take
//!    `k = min(n, capacity - (tail - head))`, and CAS `tail` from `t` to `t + k`. One successful
//!    CAS per burst; it is retried only when another producer moved `tail` in between.
//! 2. Write: move the k elements into cells `t .. t + k` (one or two `memcpy`s).
//! 3. Publish: store `len = k` into the header of cell `t`, then store `seq = t + 1` with
//!    `Release`. The release orders every element write (and the `len` store) before it.
//!
//! Consumer, `dequeue_burst` of at most `max`:
//! 1. From `pos = head`, load the header of `pos` with `Acquire`. If its `seq` is `pos + 1`, the
//!    run starting at `pos` is published and its `len` elements are readable; move up to
//!    `max - taken` of them out and continue at the next run. Otherwise stop: the run at `pos` is
//!    reserved but not yet published (or nothing was reserved).
//! 2. When only part of a run was taken, write a header `{pos + 1, rest}` at the split point, so
//!    the next call finds a run start there. No producer can touch that header until `head` has
//!    passed it.
//! 3. Release every cell taken with one `Release` store of `head`. Producers that reserve those
//!    cells again read `head` (or a cached copy of it) with `Acquire`, which orders the
//!    consumer's moves out of the cells before their writes into them.
//!
//! Nothing resets a header for the next lap: a header for position `p` can only hold `q + 1`
//! for some earlier `q` with `q ≡ p (mod slots)`, never `p + 1`, until the run at `p` is
//! published. A reservation of `p + slots` needs `head > p`, so a later lap cannot overwrite
//! the header before the consumer is done with it. Headers start as "published for position
//! `i - slots`", which also never matches.
//!
//! # Why not DPDK's multi-producer tail update
//!
//! `rte_ring` in classic MP mode reserves with a CAS on `prod.head`, copies, then waits until
//! `prod.tail` equals its own old head before storing its new tail: publication is serialized in
//! reservation order. A producer preempted between its CAS and its tail store therefore makes
//! every later producer spin in that wait for the rest of the time slice, which is what hurts
//! on over-committed cores (vCPUs, threads sharing a core). DPDK added two modes for it:
//! - RTS (relaxed tail sync): head and tail carry a counter of operations in flight; producers
//!   finish in any order and only the last one to finish moves the tail. A preempted producer
//!   no longer makes others spin, but the tail (what the consumer sees) still does not move
//!   past its reservation until it finishes, and a `htd_max` bound throttles new reservations.
//! - HTS (head/tail sync): one producer at a time; head and tail move together. Simple and
//!   fair, but a preempted producer holds every other producer out.
//!
//! The run headers here give the RTS property without a shared counter: each producer publishes
//! its own run with a store into a header no other producer writes, and never waits for anyone.
//! VPP's worker-handoff frame queues take the same approach (reserve with an atomic add on the
//! tail, fill the element, set its `valid` flag; the consumer stops at the first invalid one).
//!
//! # Progress
//!
//! - Producers are lock-free and never wait for another producer or for the consumer: a full
//!   ring answers at once with a partial (or empty) acceptance.
//! - The consumer is wait-free: it reads published runs in position order and returns at the
//!   first unpublished one; it never spins or yields.
//! - The one thing a preempted producer blocks is the consumer's view past its own run: runs
//!   reserved after it are published but not dequeued until it publishes (per-position FIFO
//!   demands it). If it stays preempted long enough, the ring fills and other producers see
//!   "full" and drop; they are never stalled.
//!
//! # Costs
//!
//! | operation | shared-memory traffic |
//! |---|---|
//! | `enqueue_burst` of n | 1 acquire load of `tail`, 1 load of the handle's cached head, 1 CAS of `tail` (retried under contention), n element writes, 2 stores to one header line; plus 1 `Acquire` load of `head` when the cached head shows too little room |
//! | `dequeue_burst` of n | 1 `Acquire` header load per published run, n element reads, 1 `Release` store of `head`; plus 2 header stores when a run is split |
//! | `len` | 3 `SeqCst` loads (tail, head, tail), retried while both move |
//!
//! Costs that do not appear: no per-element atomic read-modify-write, no per-element flag.

// The only module with `unsafe`: cells of `MaybeUninit<T>` behind the publish protocol above.
#![allow(unsafe_code)]

use std::mem::MaybeUninit;
use std::ptr;

#[cfg(loom)]
use loom::sync::atomic::AtomicUsize;
#[cfg(not(loom))]
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

#[cfg(loom)]
type Cell<T> = loom::cell::UnsafeCell<MaybeUninit<T>>;
#[cfg(not(loom))]
type Cell<T> = std::cell::UnsafeCell<MaybeUninit<T>>;

/// `len` retries before it returns a snapshot clamped to the capacity (see [`BurstRing::len`]).
const LEN_RETRIES: usize = 8;

/// Keeps the producers' `tail` and the consumer's `head` on separate cache lines (128 bytes:
/// adjacent-line prefetch pairs lines on x86).
#[repr(align(128))]
struct CachePadded<T>(T);

/// Describes the run of cells that starts at this header's cell, once `seq == start + 1`.
struct RunHeader {
    /// Position of the run's first element plus one; `Release` by its publisher.
    seq: AtomicUsize,
    /// Elements in the run, 1..=capacity; written before `seq`, read after it.
    len: AtomicUsize,
}

/// A lower bound of the consumer's `head`, private to one [`Producer`](crate::Producer) handle.
///
/// Saves the producer a read of the line the consumer writes on every dequeue: `head` is
/// re-read only when the cached value shows less room than the burst needs. Any value once read
/// from `head` stays a valid lower bound because `head` only grows, so racing refreshes (when
/// one handle is shared by reference between threads) at worst lower the bound and cost one
/// more refresh. `Release`/`Acquire` on the cache carries the consumer's `Release` of `head`
/// to every thread that uses the cached value, so that reading a stale-but-valid bound also
/// orders the consumer's moves out of the cells before our writes into them.
pub(crate) struct HeadCache(AtomicUsize);

impl HeadCache {
    pub(crate) fn new() -> Self {
        HeadCache(AtomicUsize::new(0))
    }
}

impl Clone for HeadCache {
    fn clone(&self) -> Self {
        HeadCache(AtomicUsize::new(self.0.load(Ordering::Acquire)))
    }
}

/// Cells `start .. start + len` (positions) reserved by one producer and not yet published.
///
/// Not `Clone` or `Copy`: exactly one [`BurstRing::publish`] consumes it. Dropping one
/// unpublished would hold the consumer at `start` for good, so only `enqueue_burst` (and the
/// tests that pause a producer between the two steps) create them.
#[must_use = "an unpublished reservation stops the consumer at its first cell"]
pub(crate) struct Reservation {
    start: usize,
    len: usize,
}

impl Reservation {
    // Only the unit tests, which pause a producer between reserving and publishing, look at a
    // reservation's length; the loom tests drive the ring through its handles only.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// The ring; see the module documentation for the protocol and its invariants.
pub(crate) struct BurstRing<T> {
    tail: CachePadded<AtomicUsize>,
    head: CachePadded<AtomicUsize>,
    headers: Box<[RunHeader]>,
    values: Box<[Cell<T>]>,
    /// `slots - 1`; `slots` is a power of two >= `capacity`.
    mask: usize,
    capacity: usize,
}

// SAFETY: the ring owns its `T`s and hands each to exactly one thread at a time: a cell is
// written only by the producer holding its reservation and read only by the consumer after the
// `Acquire` that pairs with that producer's publish, and written again only after the
// consumer's `Release` of `head` has passed it. So moving the ring or sharing `&BurstRing`
// across threads moves `T`s between threads (needs `T: Send`) but never gives two threads
// access to the same `T` (no `T: Sync` needed), the same bounds as `std::sync::mpsc`.
unsafe impl<T: Send> Send for BurstRing<T> {}
// SAFETY: see `Send` above; every shared field other than the cells is an atomic.
unsafe impl<T: Send> Sync for BurstRing<T> {}

impl<T> BurstRing<T> {
    /// A ring of `capacity` elements; the caller has checked `1..=max_capacity::<T>()`.
    pub(crate) fn new(capacity: usize) -> Self {
        debug_assert!(capacity >= 1);
        let slots = capacity.next_power_of_two();
        let headers = (0..slots)
            .map(|cell| RunHeader {
                // "Published for position cell - slots": never what position `cell` expects.
                seq: AtomicUsize::new(cell.wrapping_sub(slots).wrapping_add(1)),
                len: AtomicUsize::new(0),
            })
            .collect();
        let values = (0..slots)
            .map(|_| Cell::new(MaybeUninit::uninit()))
            .collect();
        BurstRing {
            tail: CachePadded(AtomicUsize::new(0)),
            head: CachePadded(AtomicUsize::new(0)),
            headers,
            values,
            mask: slots - 1,
            capacity,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Moves the longest prefix of `items` that fits into the ring; returns its length.
    pub(crate) fn enqueue_burst(&self, items: &mut Vec<T>, cache: &HeadCache) -> usize {
        if items.is_empty() {
            return 0;
        }
        match self.reserve(items.len(), cache) {
            Some(reservation) => self.publish(reservation, items),
            None => 0,
        }
    }

    /// Step 1 of an enqueue: claims up to `wanted` cells with one CAS on `tail`.
    ///
    /// Returns `None` when the ring was full at some instant during the call. A partial
    /// reservation means exactly that many cells were free at some instant: a shortfall is only
    /// ever decided on a `head` loaded after the `tail` it is compared with.
    pub(crate) fn reserve(&self, wanted: usize, cache: &HeadCache) -> Option<Reservation> {
        debug_assert!(wanted > 0);
        // Orderings: `head` (and the cache, which only ever holds values of `head`) is loaded
        // with `Acquire` so that the consumer's moves out of the cells happen before our writes
        // into them. `tail` is loaded with `Acquire` and moved with `Release`, so that a tail
        // value carries the head its reserver saw: a head loaded after a tail `t` is at least
        // `t - capacity`. And a tail loaded after a head `h` is at least `h`, because the
        // consumer passed `h` only after acquiring the publishes of runs up to `h`, which follow
        // their reservations (this is why the proof needs the publish `Release` and the
        // consumer's `Acquire` too, not only the orderings here). Each retry below
        // therefore sees a strictly larger head or tail, so the loop ends unless others keep
        // making progress (lock-free). On x86 every one of these is a plain load or the
        // `lock cmpxchg` a relaxed CAS costs anyway.
        let mut head = cache.0.load(Ordering::Acquire);
        let mut tail = self.tail.0.load(Ordering::Acquire);
        // Whether `head` was loaded from the shared index after `tail` was: only then does a
        // shortfall mean the ring was really that full.
        let mut head_is_fresh = false;
        loop {
            let used = tail.wrapping_sub(head);
            if (used as isize) < 0 {
                // A fresh head overtook the tail loaded before it.
                tail = self.tail.0.load(Ordering::Acquire);
                head_is_fresh = false;
                continue;
            }
            // `used > capacity`: the head is older than the one `tail`'s reserver saw.
            let free = self.capacity.saturating_sub(used);
            if free < wanted && !head_is_fresh {
                head = self.head.0.load(Ordering::Acquire);
                cache.0.store(head, Ordering::Release);
                head_is_fresh = true;
                continue;
            }
            if free == 0 {
                if used > self.capacity {
                    head_is_fresh = false;
                    continue;
                }
                return None;
            }
            let take = wanted.min(free);
            match self.tail.0.compare_exchange_weak(
                tail,
                tail.wrapping_add(take),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Some(Reservation {
                        start: tail,
                        len: take,
                    })
                }
                Err(current) => {
                    tail = current;
                    head_is_fresh = false;
                }
            }
        }
    }

    /// Steps 2 and 3 of an enqueue: moves the first `reservation.len()` elements of `items`
    /// into the reserved cells and publishes them; returns how many.
    ///
    /// # Panics
    ///
    /// If `items` holds fewer elements than the reservation (a bug in this crate: the
    /// reservation is sized from `items`).
    pub(crate) fn publish(&self, reservation: Reservation, items: &mut Vec<T>) -> usize {
        let Reservation { start, len } = reservation;
        let total = items.len();
        assert!(len <= total, "reservation of {len} for {total} elements");
        let cell = start & self.mask;
        // SAFETY: the CAS that created `reservation` gave this producer exclusive ownership of
        // cells `start .. start + len`: no other producer reserved them, the consumer does not
        // read them before the `Release` store below, and `head` was loaded with `Acquire` (or
        // from a cache that carries that `Acquire`) showing the consumer has moved their
        // previous contents out. `items[..len]` are initialized; after the bitwise copy they
        // are owned by the ring, so they are removed from `items` without being dropped: the
        // rest is shifted to the front (overlapping, hence `ptr::copy`) and the length cut.
        // Nothing between the copies and `set_len` can panic.
        unsafe {
            self.write_run(cell, items.as_ptr(), len);
            let base = items.as_mut_ptr();
            ptr::copy(base.add(len), base, total - len);
            items.set_len(total - len);
        }
        let header = &self.headers[cell];
        header.len.store(len, Ordering::Relaxed);
        header.seq.store(start.wrapping_add(1), Ordering::Release);
        len
    }

    /// Appends up to `max` published elements to `out`; returns how many.
    ///
    /// Must only be called by the single consumer (`&mut Consumer` guarantees it). Stops early,
    /// without waiting, at the first reserved-but-unpublished run, and when `out` cannot grow.
    pub(crate) fn dequeue_burst(&self, out: &mut Vec<T>, max: usize) -> usize {
        // Relaxed: only this thread writes `head`.
        let head = self.head.0.load(Ordering::Relaxed);
        let mut pos = head;
        let mut taken = 0;
        while taken < max {
            let cell = pos & self.mask;
            let header = &self.headers[cell];
            if header.seq.load(Ordering::Acquire) != pos.wrapping_add(1) {
                break;
            }
            let run = header.len.load(Ordering::Relaxed);
            debug_assert!((1..=self.capacity).contains(&run), "run of {run}");
            let take = run.min(max - taken);
            // An allocation failure must not leave moved-out elements behind `head` (they
            // would be dropped twice), so it ends the burst instead of panicking.
            if out.try_reserve(take).is_err() {
                break;
            }
            // SAFETY: the `Acquire` load of `seq == pos + 1` pairs with the publisher's
            // `Release`, so cells `pos .. pos + run` are initialized and no producer writes
            // them until `head` passes them, which only this thread does, after this read.
            // `out` has room for `take` more elements (reserved above); they are initialized
            // by the copy before `set_len` exposes them. The cells read are logically moved
            // out: `head` moves past them below, so neither the consumer nor `Drop` reads
            // them again.
            unsafe {
                let len = out.len();
                self.read_run(cell, out.as_mut_ptr().add(len), take);
                out.set_len(len + take);
            }
            if take < run {
                // The next call starts inside this run: give it a header of its own. Nothing
                // else writes it before `head` passes it, and only this thread reads it, so
                // relaxed stores suffice.
                let split = pos.wrapping_add(take);
                let rest = &self.headers[split & self.mask];
                rest.len.store(run - take, Ordering::Relaxed);
                rest.seq.store(split.wrapping_add(1), Ordering::Relaxed);
            }
            pos = pos.wrapping_add(take);
            taken += take;
        }
        if taken > 0 {
            self.head.0.store(pos, Ordering::Release);
        }
        taken
    }

    /// Elements reserved and not yet dequeued, including reserved-but-unpublished ones.
    ///
    /// Reads tail, head, tail; when the two tails agree the result is the exact length at the
    /// instant `head` was read. After [`LEN_RETRIES`] disagreeing rounds (both ends moving
    /// all along) it returns the last round's difference clamped to the capacity, so the call
    /// is bounded and `len() <= capacity()` always holds.
    pub(crate) fn len(&self) -> usize {
        let mut tail = self.tail.0.load(Ordering::SeqCst);
        let mut used = 0;
        for _ in 0..LEN_RETRIES {
            let head = self.head.0.load(Ordering::SeqCst);
            let again = self.tail.0.load(Ordering::SeqCst);
            used = tail.wrapping_sub(head);
            if again == tail {
                return used.min(self.capacity);
            }
            tail = again;
        }
        // `head <= tail` at every instant, but `used` pairs an older tail with a newer head and
        // may have wrapped.
        if used > self.capacity {
            self.capacity
        } else {
            used
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(not(loom))]
impl<T> BurstRing<T> {
    /// Copies `n` elements from `src` into the cells from `cell` on, wrapping at the end.
    ///
    /// # Safety
    ///
    /// The caller owns cells `cell .. cell + n` (mod slots) exclusively, `n <= slots`, and
    /// `src` points to `n` initialized elements it gives up ownership of.
    unsafe fn write_run(&self, cell: usize, src: *const T, n: usize) {
        let first = n.min(self.values.len() - cell);
        let cells = std::cell::UnsafeCell::raw_get(self.values.as_ptr()).cast::<T>();
        // SAFETY: `cells` covers the whole slice (it comes from the slice's pointer, and
        // `UnsafeCell<MaybeUninit<T>>` has the layout of `T`); both ranges are in bounds by
        // the caller's `n <= slots`, and the caller's ownership excludes overlap with `src`
        // and concurrent access.
        unsafe {
            ptr::copy_nonoverlapping(src, cells.add(cell), first);
            ptr::copy_nonoverlapping(src.add(first), cells, n - first);
        }
    }

    /// Copies `n` elements out of the cells from `cell` on, wrapping at the end, into `dst`.
    ///
    /// # Safety
    ///
    /// The cells hold published elements the caller now owns (they must not be read again),
    /// `n <= slots`, and `dst` has room for `n` elements.
    unsafe fn read_run(&self, cell: usize, dst: *mut T, n: usize) {
        let first = n.min(self.values.len() - cell);
        let cells = std::cell::UnsafeCell::raw_get(self.values.as_ptr()).cast::<T>();
        // SAFETY: as in `write_run`, with the roles of ring and buffer swapped.
        unsafe {
            ptr::copy_nonoverlapping(cells.add(cell), dst, first);
            ptr::copy_nonoverlapping(cells, dst.add(first), n - first);
        }
    }

    /// # Safety
    ///
    /// The cell holds an initialized element that nothing reads afterwards.
    unsafe fn drop_cell(&mut self, cell: usize) {
        // SAFETY: guaranteed by the caller.
        unsafe { self.values[cell].get_mut().assume_init_drop() }
    }
}

// Under loom every cell is accessed through `with`/`with_mut`, one element at a time, so that
// the model checker sees (and would report) any access the publish protocol fails to order.
#[cfg(loom)]
impl<T> BurstRing<T> {
    unsafe fn write_run(&self, cell: usize, src: *const T, n: usize) {
        for i in 0..n {
            let slot = &self.values[(cell + i) & self.mask];
            // SAFETY: as in the non-loom `write_run`.
            slot.with_mut(|p| unsafe { (*p).write(src.add(i).read()) });
        }
    }

    unsafe fn read_run(&self, cell: usize, dst: *mut T, n: usize) {
        for i in 0..n {
            let slot = &self.values[(cell + i) & self.mask];
            // SAFETY: as in the non-loom `read_run`.
            slot.with(|p| unsafe { dst.add(i).write((*p).assume_init_read()) });
        }
    }

    unsafe fn drop_cell(&mut self, cell: usize) {
        // SAFETY: as in the non-loom `drop_cell`.
        self.values[cell].with_mut(|p| unsafe { (*p).assume_init_drop() });
    }
}

impl<T> Drop for BurstRing<T> {
    /// Drops the elements still in the ring, walking the published runs from `head` exactly as
    /// the consumer would.
    ///
    /// With `&mut self` no handle is left, so every reservation was published: reserve and
    /// publish happen within one `enqueue_burst` call and nothing between them can panic. Were
    /// a run ever left unpublished, its elements and those after it would leak rather than be
    /// dropped uninitialized.
    fn drop(&mut self) {
        let tail = self.tail.0.load(Ordering::Relaxed);
        let mut pos = self.head.0.load(Ordering::Relaxed);
        while pos != tail {
            let header = &self.headers[pos & self.mask];
            if header.seq.load(Ordering::Relaxed) != pos.wrapping_add(1) {
                debug_assert!(false, "unpublished run at {pos} when the ring is dropped");
                break;
            }
            let run = header.len.load(Ordering::Relaxed);
            for i in 0..run {
                // SAFETY: the run is published (checked above), so its cells are initialized;
                // `pos` only moves forward, so no cell is dropped twice.
                unsafe { self.drop_cell(pos.wrapping_add(i) & self.mask) };
            }
            pos = pos.wrapping_add(run);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;
    use std::time::{Duration, Instant};

    fn drain(ring: &BurstRing<u64>, max: usize) -> Vec<u64> {
        let mut out = Vec::new();
        ring.dequeue_burst(&mut out, max);
        out
    }

    #[test]
    fn headers_start_unpublished_for_every_cell() {
        let ring = BurstRing::<u64>::new(5);
        assert_eq!(ring.headers.len(), 8);
        for (cell, header) in ring.headers.iter().enumerate() {
            assert_ne!(header.seq.load(Ordering::Relaxed), cell + 1);
        }
        assert!(drain(&ring, 8).is_empty());
    }

    #[test]
    fn a_paused_producer_blocks_only_the_consumer_view_past_its_run() {
        let ring = BurstRing::<u64>::new(8);
        let cache = HeadCache::new();
        let mut first = vec![0, 1];
        assert_eq!(
            ring.publish(ring.reserve(2, &cache).unwrap(), &mut first),
            2
        );

        // The paused producer: reserved positions 2..5, not yet written.
        let paused = ring.reserve(3, &cache).unwrap();
        assert_eq!(paused.len(), 3);

        // Another producer completes a burst behind it without waiting.
        let other = HeadCache::new();
        let mut later = vec![5, 6];
        assert_eq!(ring.enqueue_burst(&mut later, &other), 2);

        // The consumer gets what precedes the hole and returns at once.
        assert_eq!(drain(&ring, 32), vec![0, 1]);
        assert!(drain(&ring, 32).is_empty());
        assert_eq!(ring.len(), 5, "reserved cells count as used");

        // Room is still handed out around the hole; a full ring answers with a partial burst.
        let mut more = vec![7, 8, 9, 10, 11];
        assert_eq!(ring.enqueue_burst(&mut more, &other), 3);
        assert_eq!(more, vec![10, 11]);
        assert_eq!(ring.enqueue_burst(&mut more, &other), 0);

        let mut resumed = vec![2, 3, 4, 99];
        assert_eq!(ring.publish(paused, &mut resumed), 3);
        assert_eq!(resumed, vec![99]);
        assert_eq!(drain(&ring, 32), (2..10).collect::<Vec<_>>());
    }

    /// The same across threads: a reservation held by one thread while three others run
    /// thousands of bursts. They must all finish (no producer waits for another); the consumer
    /// must never block, see nothing past the hole, and get everything once it is published.
    #[test]
    fn producers_on_other_threads_finish_while_one_is_paused() {
        const PRODUCERS: u64 = 3;
        const BURSTS: u64 = if cfg!(miri) { 20 } else { 5_000 };
        let ring = Arc::new(BurstRing::<u64>::new(64));
        let paused_cache = HeadCache::new();
        let paused = ring.reserve(4, &paused_cache).unwrap();

        let producers: Vec<_> = (0..PRODUCERS)
            .map(|id| {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    let cache = HeadCache::new();
                    let mut accepted = Vec::new();
                    for burst in 0..BURSTS {
                        let mut items: Vec<u64> =
                            (0..4).map(|i| (id << 32) | (burst * 4 + i)).collect();
                        let before = items.clone();
                        let n = ring.enqueue_burst(&mut items, &cache);
                        accepted.extend_from_slice(&before[..n]);
                    }
                    accepted
                })
            })
            .collect();
        let start = Instant::now();
        while producers.iter().any(|p| !p.is_finished()) {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "a producer is stuck behind the paused one"
            );
            // The consumer returns at once, empty: everything is behind the hole.
            assert!(drain(&ring, 64).is_empty());
            thread::yield_now();
        }
        let accepted: Vec<Vec<u64>> = producers.into_iter().map(|p| p.join().unwrap()).collect();
        let total: usize = accepted.iter().map(Vec::len).sum();
        assert_eq!(
            total, 60,
            "the others filled exactly the room around the hole"
        );

        let mut hole = vec![u64::MAX - 3, u64::MAX - 2, u64::MAX - 1, u64::MAX];
        ring.publish(paused, &mut hole);
        let out = drain(&ring, usize::MAX);
        assert_eq!(
            out[..4],
            [u64::MAX - 3, u64::MAX - 2, u64::MAX - 1, u64::MAX]
        );
        for (id, mine) in accepted.iter().enumerate() {
            let got: Vec<u64> = out[4..]
                .iter()
                .copied()
                .filter(|v| v >> 32 == id as u64)
                .collect();
            assert_eq!(&got, mine, "producer {id}: all accepted, once, in order");
        }
    }

    #[test]
    fn a_split_run_resumes_where_the_consumer_stopped() {
        let ring = BurstRing::<u64>::new(16);
        let cache = HeadCache::new();
        let mut burst: Vec<u64> = (0..10).collect();
        ring.enqueue_burst(&mut burst, &cache);
        let mut second: Vec<u64> = (10..13).collect();
        ring.enqueue_burst(&mut second, &cache);
        assert_eq!(drain(&ring, 3), vec![0, 1, 2]);
        assert_eq!(drain(&ring, 4), vec![3, 4, 5, 6]);
        assert_eq!(drain(&ring, 5), vec![7, 8, 9, 10, 11]);
        assert_eq!(drain(&ring, 5), vec![12]);
    }

    #[test]
    fn a_stale_head_cache_is_refreshed_not_trusted() {
        let ring = BurstRing::<u64>::new(4);
        let cache = HeadCache::new();
        for lap in 0..10u64 {
            let mut burst: Vec<u64> = (lap * 4..lap * 4 + 4).collect();
            assert_eq!(ring.enqueue_burst(&mut burst, &cache), 4, "lap {lap}");
            assert_eq!(drain(&ring, 8), (lap * 4..lap * 4 + 4).collect::<Vec<_>>());
        }
        // A cache many laps behind (a long-idle handle) still sees the room.
        let old = HeadCache::new();
        let mut burst = vec![1, 2, 3, 4, 5];
        assert_eq!(ring.enqueue_burst(&mut burst, &old), 4);
        assert_eq!(old.0.load(Ordering::Relaxed), 40);
    }
}
