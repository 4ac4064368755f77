//! Version words (sequence locks) that let readers take no lock and write no shared memory.
//!
//! A [`Version`] guards some data made only of atomic words. It is even while no writer is inside
//! and odd while one is. Writers take it by compare-and-swap from even to odd (a per-bucket writer
//! lock) and release it by storing the next even value. Readers never write it: they load it,
//! read the data with `Relaxed` loads, and load it again; equal and even means the data they read
//! is one consistent state (no writer entered in between), anything else means retry.
//!
//! Memory ordering (the argument of H.-J. Boehm, "Can seqlocks get along with programming language
//! memory models?", MSPC 2012, in Rust's C++20 model):
//!
//! - writer: `CAS(v → v+1, Acquire)`, `fence(Release)`, data stores (`Relaxed`),
//!   `store(v+2, Release)`.
//! - reader: `v1 = load(Acquire)`, data loads (`Relaxed`), `fence(Acquire)`, `v2 = load(Relaxed)`.
//!
//! 1. If `v1` reads the `v+2` of a writer W, the release store / acquire load pair makes every data
//!    store of W (and of all earlier writers, which W's acquiring CAS saw) happen before the
//!    reader's data loads: the reader cannot see data older than W's.
//! 2. If a data load of the reader reads a store of a later writer W', W's release fence is
//!    sequenced before that store and the reader's acquire fence after that load, so the fences
//!    synchronize: W's odd CAS happens before the reader's `v2` load, which by coherence reads that
//!    odd value or a later one, so `v2 != v1` and the reader retries.
//!
//! Together: a validated read saw exactly the state left by the writer whose release it loaded.
//! Every shared word is an atomic, so a racing read is a stale value, never undefined behaviour;
//! everything computed from a racing read (a slot index from a signature) is bounded and only used
//! after validation. On x86-64 the acquire/release fences and loads are plain instructions (no
//! `mfence`), so a read costs two ordinary loads of the version on top of the data loads.
//!
//! Two versions (two buckets): a reader that loads both versions, then both buckets' data, then
//! validates both, saw both buckets in the states they had at one common instant, provided a writer
//! that changes both (a cuckoo move of an entry from one of its buckets to the other) holds both
//! locks at once (takes both before releasing either). If the reader saw bucket A before the move
//! and bucket B after it, W's release of B happens before the reader's second version load of A, and
//! W's lock of A is sequenced before that release, so the reader's re-load of A sees the odd value
//! or later and retries (the other case is symmetric). A key present throughout the read is
//! therefore never missed while it moves. Nothing in this argument depends on when each version
//! is loaded, only that each comes before its bucket's data loads and that both are validated after
//! all of them: the bulk lookup begins and reads the primary bucket, and begins the secondary's read
//! only for a key it did not find there, with the primary's read still open. The loom models in
//! this file check the single-cell protocol and both two-cell orders.
//!
//! One-bucket misses: a primary's head counts its rules that sit in their secondary, and that
//! count changes only with both buckets locked (an insert into the secondary, a removal from it,
//! a cuckoo move between the two). A validated read of the primary alone that finds neither the
//! key nor a displaced rule saw an instant at which the key was in neither bucket: had it been in
//! the secondary, the count read in the same consistent state would not be 0. A loom model checks
//! this read against a move in both directions (and fails if the move leaves the count alone).
//!
//! Progress: readers never block a writer. A reader retries while a writer is inside the bucket
//! it reads (tens of nanoseconds), so a writer descheduled inside a bucket makes that bucket's
//! readers wait until it runs again: reads are lock-free with respect to each other and to other
//! buckets, obstruction-free with respect to the writer of their own bucket, like VPP's bihash and
//! rte_hash's lock-free mode.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU64};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU64};

use std::sync::atomic::Ordering;

/// Busy-wait step. Under loom, a yield, so that the model checker schedules the thread that the
/// spinner waits for instead of exploring an endless spin.
#[inline]
pub(crate) fn spin(round: u32) {
    #[cfg(loom)]
    {
        let _ = round;
        loom::thread::yield_now();
    }
    #[cfg(not(loom))]
    {
        if round < 64 {
            std::hint::spin_loop();
        } else {
            // A writer holding the lock was probably descheduled: give it the core.
            std::thread::yield_now();
        }
    }
}

/// The acquire fence that ends the data loads of a read, before the version re-loads.
#[inline]
pub(crate) fn read_fence() {
    fence(Ordering::Acquire);
}

/// A sequence-lock version word. See the module documentation for the protocol.
#[repr(transparent)]
pub(crate) struct Version(AtomicU64);

impl Version {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Version(AtomicU64::new(0))
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Version(AtomicU64::new(0))
    }

    /// Starts a read: the current version if even, `None` while a writer is inside.
    #[inline]
    pub(crate) fn read_begin(&self) -> Option<u64> {
        let version = self.0.load(Ordering::Acquire);
        (version & 1 == 0).then_some(version)
    }

    /// Ends a read started by [`Version::read_begin`] returning `begun`; call [`read_fence`]
    /// first (once for any number of versions). True if no writer entered in between.
    #[inline]
    pub(crate) fn unchanged_since(&self, begun: u64) -> bool {
        self.0.load(Ordering::Relaxed) == begun
    }

    /// Takes the writer lock, spinning while another writer holds it. Readers are not blocked:
    /// they retry. The guard releases it.
    #[inline]
    pub(crate) fn lock(&self) -> VersionGuard<'_> {
        let mut round = 0u32;
        loop {
            let current = self.0.load(Ordering::Relaxed);
            if current & 1 == 0
                && self
                    .0
                    .compare_exchange_weak(
                        current,
                        current + 1,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                // Orders the odd value before every data store of this writer, for readers
                // (point 2 of the module documentation).
                fence(Ordering::Release);
                return VersionGuard {
                    version: self,
                    odd: current + 1,
                };
            }
            spin(round);
            round = round.saturating_add(1);
        }
    }
}

/// A held writer lock; dropping it publishes the writes (next even version, `Release`).
pub(crate) struct VersionGuard<'a> {
    version: &'a Version,
    odd: u64,
}

impl Drop for VersionGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.version.0.store(self.odd + 1, Ordering::Release);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! `RUSTFLAGS="--cfg loom" cargo test -p flowtable --release --lib loom`
    use super::*;
    use loom::sync::Arc;

    /// Data cell: a version and two words that a writer always sets to the same value.
    struct Cell {
        version: Version,
        words: [AtomicU64; 2],
    }

    impl Cell {
        fn new(value: u64) -> Self {
            Cell {
                version: Version::new(),
                words: [AtomicU64::new(value), AtomicU64::new(value)],
            }
        }
    }

    #[test]
    fn validated_reads_are_never_torn() {
        loom::model(|| {
            let cell = Arc::new(Cell::new(0));
            let writer = {
                let cell = cell.clone();
                loom::thread::spawn(move || {
                    for value in 1..=2 {
                        let _guard = cell.version.lock();
                        cell.words[0].store(value, Ordering::Relaxed);
                        cell.words[1].store(value, Ordering::Relaxed);
                    }
                })
            };
            let mut round = 0;
            loop {
                let Some(begun) = cell.version.read_begin() else {
                    spin(round);
                    round += 1;
                    continue;
                };
                let first = cell.words[0].load(Ordering::Relaxed);
                let second = cell.words[1].load(Ordering::Relaxed);
                read_fence();
                if cell.version.unchanged_since(begun) {
                    assert_eq!(first, second, "a validated read mixed two writes");
                    break;
                }
                spin(round);
                round += 1;
            }
            writer.join().unwrap();
        });
    }

    /// A value moves from cell B to cell A under both locks (taken in order, released after
    /// both writes), as a cuckoo move does; a reader that checks A then B and validates both
    /// versions must always find it.
    #[test]
    fn a_moving_entry_is_never_missed() {
        loom::model(|| {
            let a = Arc::new(Cell::new(0));
            let b = Arc::new(Cell::new(7));
            let mover = {
                let (a, b) = (a.clone(), b.clone());
                loom::thread::spawn(move || {
                    let _first = a.version.lock();
                    let _second = b.version.lock();
                    a.words[0].store(7, Ordering::Relaxed);
                    b.words[0].store(0, Ordering::Relaxed);
                })
            };
            let mut round = 0;
            loop {
                let (Some(va), Some(vb)) = (a.version.read_begin(), b.version.read_begin()) else {
                    spin(round);
                    round += 1;
                    continue;
                };
                let in_a = a.words[0].load(Ordering::Relaxed) == 7;
                let in_b = b.words[0].load(Ordering::Relaxed) == 7;
                read_fence();
                if a.version.unchanged_since(va) && b.version.unchanged_since(vb) {
                    assert!(in_a || in_b, "the moving entry was missed");
                    break;
                }
                spin(round);
                round += 1;
            }
            mover.join().unwrap();
        });
    }

    /// A mover for the staged-read models: the value 7 moves under both locks into A
    /// (`towards_a`) or into B. With `count`, A (the primary) also keeps in `words[1]` the number
    /// of its entries that sit in B, changed with the move, as the table's displaced count is.
    fn spawn_mover(
        a: &Arc<Cell>,
        b: &Arc<Cell>,
        towards_a: bool,
        count: bool,
    ) -> loom::thread::JoinHandle<()> {
        let (a, b) = (a.clone(), b.clone());
        loom::thread::spawn(move || {
            let _first = a.version.lock();
            let _second = b.version.lock();
            let (to, from) = if towards_a { (&a, &b) } else { (&b, &a) };
            to.words[0].store(7, Ordering::Relaxed);
            from.words[0].store(0, Ordering::Relaxed);
            if count {
                a.words[1].store(u64::from(!towards_a), Ordering::Relaxed);
            }
        })
    }

    /// The bulk lookup's staged read, retried until it validates: begin and read A (the
    /// primary); if the value is there, validate A alone. With `one_head`, also end at A when
    /// A's count of entries in B is 0. Otherwise begin and read B, and validate both. Returns
    /// whether the value was found.
    fn staged_read(a: &Cell, b: &Cell, one_head: bool) -> bool {
        let mut round = 0;
        loop {
            if let Some(va) = a.version.read_begin() {
                let in_a = a.words[0].load(Ordering::Relaxed) == 7;
                if in_a || (one_head && a.words[1].load(Ordering::Relaxed) == 0) {
                    read_fence();
                    if a.version.unchanged_since(va) {
                        return in_a;
                    }
                } else if let Some(vb) = b.version.read_begin() {
                    let in_b = b.words[0].load(Ordering::Relaxed) == 7;
                    read_fence();
                    if a.version.unchanged_since(va) && b.version.unchanged_since(vb) {
                        return in_b;
                    }
                }
            }
            spin(round);
            round += 1;
        }
    }

    /// Runs a staged read against a move in either direction; the value must always be found.
    fn check_staged_read(one_head: bool) {
        for towards_a in [true, false] {
            loom::model(move || {
                let (a, b) = if towards_a {
                    (Arc::new(Cell::new(0)), Arc::new(Cell::new(7)))
                } else {
                    (Arc::new(Cell::new(7)), Arc::new(Cell::new(0)))
                };
                a.words[1].store(u64::from(towards_a), Ordering::Relaxed);
                let mover = spawn_mover(&a, &b, towards_a, one_head);
                assert!(staged_read(&a, &b, one_head), "the moving entry was missed");
                mover.join().unwrap();
            });
        }
    }

    /// The bulk lookup's staged order: the primary's read stays open while the secondary's
    /// begins, for a key not found in the primary.
    #[test]
    fn a_moving_entry_is_never_missed_by_a_staged_read() {
        check_staged_read(false);
    }

    /// The one-head miss: a read that ends at the primary when neither the key nor a displaced
    /// entry is there (and fails if the move leaves the count alone).
    #[test]
    fn a_displaced_entry_is_never_missed_by_a_one_head_read() {
        check_staged_read(true);
    }
}
