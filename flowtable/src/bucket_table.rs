//! The bucketized flow table: lookups take no lock and write no shared memory.
//!
//! Layout (the rte_hash / VPP bihash family). A fixed array of buckets, allocated at creation and
//! never resized. Each bucket is six cache lines:
//!
//! | line | content                                                                         |
//! |------|---------------------------------------------------------------------------------|
//! | 0    | version (sequence lock), 8 × 16-bit signatures (0 = empty slot), 8 × 16-bit owners |
//! | 1..6 | 8 keys of 40 bytes inline (the five [`FlowKey`] words)                          |
//!
//! Keys are stored inline, not behind pointers: a removed or moved entry is overwritten in place
//! and nothing is ever freed while a reader may look at it, so no memory reclamation (epochs,
//! hazard pointers, quiescent states) is needed. That is the reason for this layout: every shared
//! word is an atomic that stays valid for the table's lifetime.
//!
//! Placement: the caller's [`FlowKey::hash`] is mixed with a per-table random key (xor, multiply
//! by an odd constant: a bijection, two instructions) so that peers who know the build's fixed
//! hash seeds cannot aim many flows at the same buckets. The top bits give the primary bucket,
//! bits 16.. the secondary (forced different when the table has two buckets or more), bits 0..16
//! the signature. A key lives in one of its two buckets.
//!
//! Reads: see `seqlock` for the protocol. A lookup loads both buckets' versions, searches the
//! primary then the secondary (signature filter, then a five-word compare), and validates: a hit in
//! the primary needs only the primary's version unchanged, anything else needs both. Because a
//! cuckoo move holds the locks of both buckets of the moving key at once, a key present during the
//! whole lookup is always found.
//!
//! Bulk lookup works in chunks of 32: (1) bucket indices for every key from the given hashes and a
//! prefetch of both buckets' first lines; (2) signature matches from those lines and a prefetch of
//! the key lines that may hold the key; (3) the validated compare. Steps 1 and 2 read racing data
//! only as hints; step 3 alone decides. Exact misses then go to the listen rules
//! (`listen_table`).
//!
//! Writes from any thread: the version word of a bucket is also its writer lock (odd = held).
//! `insert` and `remove` lock the key's two buckets (lower index first: no deadlock). An insert
//! that finds both buckets full searches a cuckoo path (breadth-first, at most
//! [`CUCKOO_SEARCH_BUCKETS`] buckets) under the table's relocation mutex and executes it from its
//! free end backwards, each move locking its source and destination bucket and re-checking that the
//! entry is still there; then it retries. Entries are never duplicated (a move writes the copy and
//! clears the source under both locks) and never lost (a move that finds its source changed is
//! abandoned before writing). `remove_owner` takes the relocation mutex (no entry can move past
//! its scan) and locks one bucket at a time: O(buckets), for the rare exit of a thread.
//!
//! Capacity: `capacity` exact rules, counted by an atomic reserved before a new key is placed.
//! The array has at least `capacity / 0.8` slots ([`MAX_LOAD_PERCENT`]) rounded up to a power of
//! two buckets, so the load at capacity is between 40% and 80%. Two-choice 8-slot buckets with
//! cuckoo displacement fill past 95% before the first failure (measured by the test
//! `cuckoo_fills_past_ninety_five_percent`), so inserting up to `capacity` rules is expected to
//! always succeed; this is a probabilistic guarantee, not an absolute one: if no path is found
//! after [`INSERT_ATTEMPTS`] searches the insert fails with [`TableFull`] like a full table.
//!
//! Memory: 384 bytes per bucket, 48 bytes per slot; 1 Mi rules take 256 Ki buckets, 96 MiB. The
//! array is allocated zeroed, so the operating system commits pages as buckets are first written.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crossbeam_utils::CachePadded;

use crate::key::{FlowKey, ListenKey, ThreadId};
use crate::listen_table::ListenTable;
use crate::lookup::Lookup;
use crate::seqlock::{read_fence, spin, AtomicU64, Version, VersionGuard};
use crate::table::{FlowTable, TableFull};

/// Slots per bucket.
pub(crate) const SLOTS: usize = 8;
const KEY_WORDS: usize = 5;
/// The array is sized so that `capacity` rules fill at most this share of the slots.
pub(crate) const MAX_LOAD_PERCENT: usize = 80;
/// Buckets a cuckoo path search visits at most (breadth-first, so paths stay short).
pub(crate) const CUCKOO_SEARCH_BUCKETS: usize = 512;
/// Cuckoo searches an insert tries before it reports [`TableFull`].
pub(crate) const INSERT_ATTEMPTS: usize = 8;
/// Keys of one bulk-lookup chunk (prefetch distance).
const CHUNK: usize = 32;
const LANE_ONES: u64 = 0x0001_0001_0001_0001;
const LANE_HIGHS: u64 = 0x8000_8000_8000_8000;

#[repr(C, align(64))]
struct Bucket {
    version: Version,
    /// Signature of slot `i` in bits `16 * (i % 4)` of word `i / 4`; 0 marks an empty slot.
    sigs: [AtomicU64; 2],
    /// Owner of slot `i`, packed like the signatures.
    owners: [AtomicU64; 2],
    /// Keeps the keys off the first line, which is all a miss touches.
    _pad: [u64; 3],
    keys: [[AtomicU64; KEY_WORDS]; SLOTS],
}

const _: () = assert!(std::mem::size_of::<Bucket>() == 384);

#[inline]
fn lane(words: &[AtomicU64; 2], slot: usize) -> u16 {
    (words[slot / 4].load(Ordering::Relaxed) >> (16 * (slot % 4))) as u16
}

/// Writer only (bucket lock held): read-modify-write of one lane.
#[inline]
fn set_lane(words: &[AtomicU64; 2], slot: usize, value: u16) {
    let shift = 16 * (slot % 4);
    let word = &words[slot / 4];
    let old = word.load(Ordering::Relaxed);
    word.store(
        (old & !(0xFFFF << shift)) | (u64::from(value) << shift),
        Ordering::Relaxed,
    );
}

/// Bit `i` set where slot `i`'s signature may equal `sig` (a superset: a lane above a true match
/// can be flagged by the borrow; callers compare the lane exactly).
#[inline]
fn sig_candidates(sigs: [u64; 2], sig: u16) -> u32 {
    let pattern = u64::from(sig) * LANE_ONES;
    let mut candidates = 0u32;
    for (word_index, word) in sigs.iter().enumerate() {
        let x = word ^ pattern;
        let mut zero_lanes = x.wrapping_sub(LANE_ONES) & !x & LANE_HIGHS;
        while zero_lanes != 0 {
            let lane = zero_lanes.trailing_zeros() / 16;
            candidates |= 1 << (word_index as u32 * 4 + lane);
            zero_lanes &= zero_lanes - 1;
        }
    }
    candidates
}

impl Bucket {
    #[cfg(loom)]
    fn new() -> Self {
        Bucket {
            version: Version::new(),
            sigs: std::array::from_fn(|_| AtomicU64::new(0)),
            owners: std::array::from_fn(|_| AtomicU64::new(0)),
            _pad: [0; 3],
            keys: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }

    #[inline]
    fn sig_words(&self) -> [u64; 2] {
        [
            self.sigs[0].load(Ordering::Relaxed),
            self.sigs[1].load(Ordering::Relaxed),
        ]
    }

    #[inline]
    fn key_equals(&self, slot: usize, words: &[u64; KEY_WORDS]) -> bool {
        let stored = &self.keys[slot];
        // Non-short-circuit: five independent loads the core can issue together.
        (stored[0].load(Ordering::Relaxed) ^ words[0])
            | (stored[1].load(Ordering::Relaxed) ^ words[1])
            | (stored[2].load(Ordering::Relaxed) ^ words[2])
            | (stored[3].load(Ordering::Relaxed) ^ words[3])
            | (stored[4].load(Ordering::Relaxed) ^ words[4])
            == 0
    }

    fn key(&self, slot: usize) -> [u64; KEY_WORDS] {
        std::array::from_fn(|w| self.keys[slot][w].load(Ordering::Relaxed))
    }

    /// The slot holding `words` with signature `sig`. Racy unless the lock is held or the read is
    /// validated afterwards.
    #[inline]
    fn find(&self, words: &[u64; KEY_WORDS], sig: u16) -> Option<usize> {
        let sigs = self.sig_words();
        let mut candidates = sig_candidates(sigs, sig);
        while candidates != 0 {
            let slot = candidates.trailing_zeros() as usize;
            candidates &= candidates - 1;
            if (sigs[slot / 4] >> (16 * (slot % 4))) as u16 == sig && self.key_equals(slot, words) {
                return Some(slot);
            }
        }
        None
    }

    fn free_slot(&self) -> Option<usize> {
        (0..SLOTS).find(|&slot| lane(&self.sigs, slot) == 0)
    }

    fn used(&self) -> usize {
        (0..SLOTS)
            .filter(|&slot| lane(&self.sigs, slot) != 0)
            .count()
    }

    /// Writer only. The signature goes last, though the held version already hides the partial
    /// state from readers.
    fn write(&self, slot: usize, words: &[u64; KEY_WORDS], sig: u16, owner: ThreadId) {
        for (stored, word) in self.keys[slot].iter().zip(words) {
            stored.store(*word, Ordering::Relaxed);
        }
        set_lane(&self.owners, slot, owner);
        set_lane(&self.sigs, slot, sig);
    }

    fn prefetch_head(&self) {
        prefetch(self as *const Bucket as *const u8);
    }

    /// Prefetches the one or two lines key `slot` spans.
    fn prefetch_key(&self, slot: usize) {
        let first = self.keys[slot].as_ptr() as *const u8;
        prefetch(first);
        prefetch(first.wrapping_add(KEY_WORDS * 8 - 1));
    }
}

#[inline(always)]
fn prefetch(address: *const u8) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: a prefetch is a hint with no architectural effect: it never faults, reads nothing
    // into the program and is defined for any address. SSE is part of the x86-64 baseline, so the
    // target feature the intrinsic requires is always present.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            address as *const i8,
        );
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = address;
}

/// Where a key may live.
#[derive(Clone, Copy, Default)]
struct Placement {
    primary: usize,
    secondary: usize,
    sig: u16,
}

/// Holds the locks of a key's two buckets (one if they are the same), taken in index order.
struct PairGuard<'a> {
    _first: VersionGuard<'a>,
    _second: Option<VersionGuard<'a>>,
}

/// Concurrent flow table with lock-free lookups over fixed, preallocated buckets. See the module
/// documentation for the layout, the protocols and the costs.
pub struct BucketTable {
    buckets: Box<[Bucket]>,
    mask: usize,
    /// Bucket index bits, for the shift that takes the primary index from the top of the hash.
    shift: u32,
    mix_xor: u64,
    mix_mul: u64,
    capacity: usize,
    listen: ListenTable,
    // Written by writers only; padded away from the read-mostly fields above.
    exact_count: CachePadded<AtomicUsize>,
    /// Serializes cuckoo relocations against each other and against `remove_owner`.
    relocation: Mutex<()>,
}

impl BucketTable {
    /// The implementation's name in configuration and metrics.
    pub const NAME: &'static str = "bucketized";

    /// A table for at most `capacity` exact rules (and `min(capacity, 4096)` listen rules), with
    /// all buckets allocated now. A capacity of 0 yields a table that refuses every rule.
    pub fn with_capacity(capacity: usize) -> Self {
        let slots = capacity.saturating_mul(100).div_ceil(MAX_LOAD_PERCENT);
        let buckets = slots.div_ceil(SLOTS).max(1).next_power_of_two();
        Self::with_buckets(capacity, buckets)
    }

    /// `buckets` must be a power of two.
    fn with_buckets(capacity: usize, buckets: usize) -> Self {
        let random = RandomState::new();
        BucketTable {
            buckets: allocate_buckets(buckets),
            mask: buckets - 1,
            shift: buckets.trailing_zeros(),
            mix_xor: random.hash_one(1u64),
            mix_mul: random.hash_one(2u64) | 1,
            capacity,
            listen: ListenTable::new(capacity),
            exact_count: CachePadded::new(AtomicUsize::new(0)),
            relocation: Mutex::new(()),
        }
    }

    /// Number of buckets (a power of two); `buckets() * 8` slots.
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    #[inline]
    fn place(&self, hash: u64) -> Placement {
        let mixed = (hash ^ self.mix_xor).wrapping_mul(self.mix_mul);
        // checked_shr: a one-bucket table has shift 0 and a 64-bit shift would overflow.
        let primary = mixed.checked_shr(64 - self.shift).unwrap_or(0) as usize & self.mask;
        let mut secondary = (mixed >> 16) as usize & self.mask;
        if secondary == primary {
            secondary ^= 1 & self.mask;
        }
        Placement {
            primary,
            secondary,
            sig: (mixed as u16).max(1),
        }
    }

    fn lock_pair(&self, place: Placement) -> PairGuard<'_> {
        let low = place.primary.min(place.secondary);
        let high = place.primary.max(place.secondary);
        let first = self.buckets[low].version.lock();
        let second = (high != low).then(|| self.buckets[high].version.lock());
        PairGuard {
            _first: first,
            _second: second,
        }
    }

    /// Finds `words` in its buckets; the caller holds both locks.
    fn find_locked(&self, words: &[u64; KEY_WORDS], place: Placement) -> Option<(usize, usize)> {
        [place.primary, place.secondary]
            .into_iter()
            .find_map(|bucket| Some((bucket, self.buckets[bucket].find(words, place.sig)?)))
    }

    /// Validated exact lookup (see the module documentation).
    #[inline]
    fn search(&self, words: &[u64; KEY_WORDS], place: Placement) -> Option<ThreadId> {
        let primary = &self.buckets[place.primary];
        let secondary = &self.buckets[place.secondary];
        let mut round = 0u32;
        loop {
            if let (Some(v_primary), Some(v_secondary)) =
                (primary.version.read_begin(), secondary.version.read_begin())
            {
                if let Some(slot) = primary.find(words, place.sig) {
                    let owner = lane(&primary.owners, slot);
                    read_fence();
                    if primary.version.unchanged_since(v_primary) {
                        return Some(owner);
                    }
                } else {
                    let found = secondary
                        .find(words, place.sig)
                        .map(|slot| lane(&secondary.owners, slot));
                    read_fence();
                    if primary.version.unchanged_since(v_primary)
                        && secondary.version.unchanged_since(v_secondary)
                    {
                        return found;
                    }
                }
            }
            spin(round);
            round = round.saturating_add(1);
        }
    }

    fn reserve(&self) -> Result<(), TableFull> {
        // A count, not a publication: Relaxed.
        self.exact_count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used < self.capacity).then_some(used + 1)
            })
            .map(drop)
            .map_err(|_| TableFull {
                capacity: self.capacity,
            })
    }

    /// Frees a slot in `place.primary` or `place.secondary` by moving entries along a cuckoo path.
    /// Called with the relocation mutex held and no bucket lock. False if no path was found or
    /// a concurrent writer changed it (the caller retries).
    fn make_room(&self, place: Placement) -> bool {
        let mut nodes: Vec<PathNode> = Vec::with_capacity(CUCKOO_SEARCH_BUCKETS);
        for bucket in [place.primary, place.secondary] {
            if nodes.iter().all(|n| n.bucket != bucket) {
                nodes.push(PathNode {
                    bucket,
                    parent: usize::MAX,
                    slot: 0,
                    key: [0; KEY_WORDS],
                });
            }
        }
        let mut head = 0;
        while head < nodes.len() {
            let bucket = &self.buckets[nodes[head].bucket];
            for slot in 0..SLOTS {
                if lane(&bucket.sigs, slot) == 0 {
                    // Freed meanwhile: the caller's retry will use it.
                    return true;
                }
                // Racy read: checked again under the locks before anything moves.
                let key = bucket.key(slot);
                let alternate = self.alternate(&key, nodes[head].bucket);
                if alternate == nodes[head].bucket {
                    continue;
                }
                if self.buckets[alternate].free_slot().is_some() {
                    return self.execute_path(&nodes, head, slot, key, alternate);
                }
                if nodes.len() < CUCKOO_SEARCH_BUCKETS
                    && nodes.iter().all(|n| n.bucket != alternate)
                {
                    nodes.push(PathNode {
                        bucket: alternate,
                        parent: head,
                        slot,
                        key,
                    });
                }
            }
            head += 1;
        }
        false
    }

    /// The other bucket of the entry `key` stored in `bucket`.
    fn alternate(&self, key: &[u64; KEY_WORDS], bucket: usize) -> usize {
        let place = self.place(hash_words(key));
        if place.primary == bucket {
            place.secondary
        } else {
            place.primary
        }
    }

    /// Moves the entry `key` at (`nodes[at].bucket`, `slot`) into `free_bucket`, then each entry
    /// on the path from `nodes[at]` back to a root into the slot just vacated.
    fn execute_path(
        &self,
        nodes: &[PathNode],
        mut at: usize,
        mut slot: usize,
        mut key: [u64; KEY_WORDS],
        mut to: usize,
    ) -> bool {
        loop {
            let node = &nodes[at];
            if !self.move_entry(node.bucket, slot, &key, to) {
                return false;
            }
            if node.parent == usize::MAX {
                return true;
            }
            to = node.bucket;
            slot = node.slot;
            key = node.key;
            at = node.parent;
        }
    }

    /// Moves the entry at (`from`, `slot`) into a free slot of `to` under both locks, if it still
    /// holds `key` and `to` still has room.
    fn move_entry(&self, from: usize, slot: usize, key: &[u64; KEY_WORDS], to: usize) -> bool {
        let _guard = self.lock_pair(Placement {
            primary: from,
            secondary: to,
            sig: 0,
        });
        let source = &self.buckets[from];
        let target = &self.buckets[to];
        let sig = lane(&source.sigs, slot);
        if sig == 0 || source.key(slot) != *key {
            return false;
        }
        let Some(free) = target.free_slot() else {
            return false;
        };
        target.write(free, key, sig, lane(&source.owners, slot));
        set_lane(&source.sigs, slot, 0);
        true
    }

    /// Exact rules in all buckets, for occupancy measurements.
    #[cfg(all(test, not(loom)))]
    fn load(&self) -> usize {
        self.buckets.iter().map(Bucket::used).sum()
    }
}

/// A bucket reached by the breadth-first cuckoo search, and how: the entry `key` in slot `slot` of
/// node `parent`'s bucket would move into it (`parent == usize::MAX` for the inserted key's own
/// buckets).
struct PathNode {
    bucket: usize,
    parent: usize,
    slot: usize,
    key: [u64; KEY_WORDS],
}

fn hash_words(words: &[u64; KEY_WORDS]) -> u64 {
    FlowKey::from_words(*words).hash()
}

#[cfg(not(loom))]
fn allocate_buckets(count: usize) -> Box<[Bucket]> {
    use std::alloc::{alloc_zeroed, handle_alloc_error, Layout};
    let Ok(layout) = Layout::array::<Bucket>(count) else {
        panic!("flow table of {count} buckets exceeds the address space");
    };
    // SAFETY: `layout` has a non-zero size (count >= 1, Bucket is 384 bytes). All-zero bytes are
    // a valid Bucket: it consists of AtomicU64 and u64 only (Version is a transparent AtomicU64),
    // for which zero is a valid value, meaning "version 0, every slot empty". The pointer comes
    // from the global allocator with the layout of `[Bucket; count]`, which is what Box<[Bucket]>
    // frees with, so ownership passes to the box exactly once.
    unsafe {
        let pointer = alloc_zeroed(layout) as *mut Bucket;
        if pointer.is_null() {
            handle_alloc_error(layout);
        }
        Box::from_raw(std::ptr::slice_from_raw_parts_mut(pointer, count))
    }
}

#[cfg(loom)]
fn allocate_buckets(count: usize) -> Box<[Bucket]> {
    (0..count).map(|_| Bucket::new()).collect()
}

impl FlowTable for BucketTable {
    fn insert(&self, key: FlowKey, owner: ThreadId) -> Result<Option<ThreadId>, TableFull> {
        let words = key.words();
        let place = self.place(key.hash());
        let mut reserved = false;
        for _ in 0..INSERT_ATTEMPTS {
            {
                let _guard = self.lock_pair(place);
                if let Some((bucket, slot)) = self.find_locked(words, place) {
                    let bucket = &self.buckets[bucket];
                    let previous = lane(&bucket.owners, slot);
                    set_lane(&bucket.owners, slot, owner);
                    if reserved {
                        // Another writer placed the key while this one searched a path.
                        self.exact_count.fetch_sub(1, Ordering::Relaxed);
                    }
                    return Ok(Some(previous));
                }
                if !reserved {
                    self.reserve()?;
                    reserved = true;
                }
                // Two-choice: the emptier bucket keeps the load even and cuckoo searches rare.
                let primary = &self.buckets[place.primary];
                let secondary = &self.buckets[place.secondary];
                let target = if secondary.used() < primary.used() {
                    secondary
                } else {
                    primary
                };
                if let Some(slot) = target.free_slot() {
                    target.write(slot, words, place.sig, owner);
                    return Ok(None);
                }
            }
            let _relocating = self.relocation.lock().unwrap_or_else(|e| e.into_inner());
            self.make_room(place);
        }
        if reserved {
            self.exact_count.fetch_sub(1, Ordering::Relaxed);
        }
        Err(TableFull {
            capacity: self.capacity,
        })
    }

    fn remove(&self, key: &FlowKey) -> Option<ThreadId> {
        let words = key.words();
        let place = self.place(key.hash());
        let _guard = self.lock_pair(place);
        let (bucket, slot) = self.find_locked(words, place)?;
        let bucket = &self.buckets[bucket];
        let owner = lane(&bucket.owners, slot);
        set_lane(&bucket.sigs, slot, 0);
        self.exact_count.fetch_sub(1, Ordering::Relaxed);
        Some(owner)
    }

    fn listen_add(&self, rule: ListenKey, owner: ThreadId) -> Result<(), TableFull> {
        self.listen.add(rule, owner)
    }

    fn listen_remove(&self, rule: &ListenKey, owner: ThreadId) -> bool {
        self.listen.remove(rule, owner)
    }

    fn remove_owner(&self, owner: ThreadId) -> usize {
        let _relocating = self.relocation.lock().unwrap_or_else(|e| e.into_inner());
        let mut removed = 0;
        for bucket in self.buckets.iter() {
            // Unlocked pre-check: most buckets hold no rule of `owner` and stay untouched, so
            // their readers never retry. A rule of `owner` inserted concurrently may be missed,
            // as with any insert that races the removal.
            let owned =
                |slot: usize| lane(&bucket.sigs, slot) != 0 && lane(&bucket.owners, slot) == owner;
            if !(0..SLOTS).any(owned) {
                continue;
            }
            let _guard = bucket.version.lock();
            for slot in (0..SLOTS).filter(|&slot| owned(slot)) {
                set_lane(&bucket.sigs, slot, 0);
                removed += 1;
            }
        }
        self.exact_count.fetch_sub(removed, Ordering::Relaxed);
        removed + self.listen.remove_owner(owner)
    }

    fn lookup_bulk(&self, keys: &[FlowKey], hashes: &[u64], out: &mut [Lookup]) {
        let count = keys.len().min(hashes.len()).min(out.len());
        let mut places = [Placement::default(); CHUNK];
        for start in (0..count).step_by(CHUNK) {
            let end = (start + CHUNK).min(count);
            let keys = &keys[start..end];
            let hashes = &hashes[start..end];
            let places = &mut places[..end - start];
            // 1: where every key may be; start loading those lines.
            for (place, &hash) in places.iter_mut().zip(hashes) {
                *place = self.place(hash);
                self.buckets[place.primary].prefetch_head();
                self.buckets[place.secondary].prefetch_head();
            }
            // 2: which key lines may hold a match; start loading those too.
            for place in places.iter() {
                for bucket in [place.primary, place.secondary] {
                    let bucket = &self.buckets[bucket];
                    let mut candidates = sig_candidates(bucket.sig_words(), place.sig);
                    while candidates != 0 {
                        bucket.prefetch_key(candidates.trailing_zeros() as usize);
                        candidates &= candidates - 1;
                    }
                }
            }
            // 3: the validated compare, then the listen rules for exact misses.
            for (((key, &hash), place), slot) in keys
                .iter()
                .zip(hashes)
                .zip(places.iter())
                .zip(out[start..end].iter_mut())
            {
                *slot = match self.search(key.words(), *place) {
                    Some(owner) => Lookup::Exact(owner),
                    None => self.listen.lookup(key, hash),
                };
            }
        }
    }

    fn exact_len(&self) -> usize {
        self.exact_count.load(Ordering::Relaxed)
    }

    fn listen_len(&self) -> usize {
        self.listen.len()
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn name(&self) -> &'static str {
        Self::NAME
    }
}

impl fmt::Debug for BucketTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BucketTable")
            .field("exact_len", &self.exact_len())
            .field("listen_len", &self.listen_len())
            .field("capacity", &self.capacity)
            .field("buckets", &self.buckets.len())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::key::Proto;
    use std::sync::atomic::AtomicBool;

    fn key(i: u32) -> FlowKey {
        FlowKey::from_v4_bytes(
            Proto::Tcp,
            [198, 18, (i >> 24) as u8, 1],
            8000,
            i.to_be_bytes(),
            (i % 60_000) as u16,
        )
    }

    fn owner_of(i: u32) -> ThreadId {
        (i.wrapping_mul(0x9E37_79B9) >> 16) as ThreadId
    }

    #[test]
    fn placement_gives_two_buckets_and_a_signature() {
        for buckets in [1usize, 2, 4, 1024] {
            let table = BucketTable::with_buckets(16, buckets);
            for i in 0..2_000 {
                let place = table.place(key(i).hash());
                assert!(place.primary < buckets && place.secondary < buckets);
                assert_eq!(place.primary == place.secondary, buckets == 1);
                assert_ne!(place.sig, 0);
            }
        }
    }

    #[test]
    fn signature_candidates_include_every_match_and_are_checked() {
        let mut state = 0x1234_5678_9abc_def0u64;
        for _ in 0..20_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let sig = (state >> 48) as u16;
            // Words whose lanes are often equal to `sig`, `sig ± 1`, 0 or 1.
            let lanes: Vec<u16> = (0..8)
                .map(|l| match (state >> (l * 3)) & 7 {
                    0 | 1 => sig,
                    2 => sig.wrapping_add(1),
                    3 => sig.wrapping_sub(1),
                    4 => 0,
                    5 => 1,
                    _ => (state >> (l * 5)) as u16,
                })
                .collect();
            let words = [0, 1].map(|w| {
                (0..4).fold(0u64, |acc, l| {
                    acc | (u64::from(lanes[w * 4 + l]) << (16 * l))
                })
            });
            let candidates = sig_candidates(words, sig);
            for (slot, lane_value) in lanes.iter().enumerate() {
                if *lane_value == sig {
                    assert_ne!(candidates & (1 << slot), 0, "slot {slot} missed");
                }
            }
        }
    }

    #[test]
    fn a_removed_key_left_in_place_is_not_found() {
        // Removal only clears the signature; the stale key words must never match again.
        let table = BucketTable::with_capacity(8);
        table.insert(key(1), 3).unwrap();
        assert_eq!(table.remove(&key(1)), Some(3));
        assert_eq!(table.lookup(&key(1)), Lookup::Miss);
        table.insert(key(2), 4).unwrap();
        assert_eq!(table.lookup(&key(1)), Lookup::Miss);
        assert_eq!(table.lookup(&key(2)), Lookup::Exact(4));
    }

    #[test]
    fn sizing_keeps_the_load_at_capacity_between_forty_and_eighty_percent() {
        let capacities: &[usize] = if cfg!(miri) {
            &[0, 1, 6, 7, 100, 1_000]
        } else {
            &[0, 1, 6, 7, 100, 1_000, 1 << 16, 1 << 20]
        };
        for &capacity in capacities {
            let slots = BucketTable::with_capacity(capacity).buckets() * SLOTS;
            assert!(capacity * 100 <= slots * MAX_LOAD_PERCENT, "{capacity}");
            assert!(slots <= 16 || capacity * 100 >= slots * 40, "{capacity}");
        }
        assert_eq!(BucketTable::with_capacity(6).buckets(), 1);
        if !cfg!(miri) {
            assert_eq!(BucketTable::with_capacity(1 << 20).buckets(), 1 << 18);
        }
    }

    #[test]
    fn cuckoo_fills_past_ninety_five_percent() {
        // Miri runs the small sizes only (it interprets every instruction).
        let sizes: &[usize] = if cfg!(miri) { &[2, 8] } else { &[2, 16, 1024] };
        for &buckets in sizes {
            let table = BucketTable::with_buckets(usize::MAX, buckets);
            let mut inserted = 0u32;
            while table.insert(key(inserted), owner_of(inserted)).is_ok() {
                inserted += 1;
            }
            let slots = buckets * SLOTS;
            assert!(
                inserted as usize * 100 >= slots * 95,
                "{buckets} buckets: first failure at {inserted} of {slots} slots"
            );
            assert_eq!(table.exact_len(), inserted as usize);
            assert_eq!(table.load(), inserted as usize);
            for i in 0..inserted {
                assert_eq!(table.lookup(&key(i)), Lookup::Exact(owner_of(i)), "key {i}");
            }
            assert_eq!(table.lookup(&key(inserted)), Lookup::Miss);
        }
    }

    #[test]
    fn fills_to_capacity_with_any_seed() {
        let capacities: &[usize] = if cfg!(miri) {
            &[1, 9, 40]
        } else {
            &[1, 7, 8, 9, 13, 100, 1_000, 50_000]
        };
        for &capacity in capacities {
            for _ in 0..if cfg!(miri) { 1 } else { 4 } {
                let table = BucketTable::with_capacity(capacity);
                for i in 0..capacity as u32 {
                    assert_eq!(table.insert(key(i), owner_of(i)), Ok(None), "key {i}");
                }
                assert!(table.insert(key(capacity as u32), 0).is_err());
                for i in 0..capacity as u32 {
                    assert_eq!(table.lookup(&key(i)), Lookup::Exact(owner_of(i)));
                }
            }
        }
    }

    /// Readers look up keys that stay in the table while a writer fills it to 97%, which forces
    /// many cuckoo moves, some of them of the keys being read.
    #[test]
    fn keys_being_moved_are_never_missed() {
        const BUCKETS: usize = if cfg!(miri) { 4 } else { 64 };
        const PINNED: u32 = if cfg!(miri) { 8 } else { 100 };
        const ROUNDS: u32 = if cfg!(miri) { 2 } else { 20 };
        let table = BucketTable::with_buckets(usize::MAX, BUCKETS);
        for i in 0..PINNED {
            table.insert(key(i), owner_of(i)).unwrap();
        }
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let keys: Vec<FlowKey> = (0..PINNED).map(key).collect();
                let hashes: Vec<u64> = keys.iter().map(FlowKey::hash).collect();
                let mut out = vec![Lookup::Miss; keys.len()];
                let mut passes = 0u64;
                while !done.load(Ordering::Acquire) || passes < 3 {
                    table.lookup_bulk(&keys, &hashes, &mut out);
                    for (i, result) in out.iter().enumerate() {
                        assert_eq!(*result, Lookup::Exact(owner_of(i as u32)), "key {i}");
                    }
                    passes += 1;
                }
            });
            for round in 0..ROUNDS {
                let base = 1_000_000 * (round + 1);
                let target = (BUCKETS * SLOTS * 97 / 100) as u32 - PINNED;
                let mut added = Vec::new();
                for i in base..base + target {
                    if table.insert(key(i), owner_of(i)).is_ok() {
                        added.push(i);
                    }
                }
                for i in added {
                    assert_eq!(table.remove(&key(i)), Some(owner_of(i)));
                }
            }
            done.store(true, Ordering::Release);
            reader.join().unwrap();
        });
        assert_eq!(table.exact_len(), PINNED as usize);
    }
}
