//! The writer side of a bucketized two-choice cuckoo table, shared by the two bucket layouts of
//! [`crate::BucketTable`]: placement of a key in its two buckets, the bucket locks, insert
//! (primary first, then secondary, then a cuckoo path), remove, `remove_owner`, and the validated
//! single-key read that a disturbed bulk lookup falls back to.
//!
//! A layout ([`Store`]) says how a bucket keeps its slots; this module keeps the protocol that
//! makes lock-free reads of either layout correct (see `seqlock` for the argument):
//! - the version word of a bucket is its writer lock (odd = held); a writer holds the locks of
//!   both buckets of a key (lower index first: no deadlock) for every write of that key;
//! - a key lives in its primary whenever the primary had a free slot when the key was placed,
//!   and each primary counts its rules that sit in their secondary ("displaced"), a count
//!   changed only with both buckets' locks held: a validated read of the primary that finds
//!   neither the key nor a displaced rule proves the key is in neither bucket;
//! - a cuckoo move writes the copy and clears the source under both locks (never duplicated)
//!   and is abandoned before writing if its source changed (never lost); searches for a path
//!   are serialized by the relocation mutex, which `remove_owner` takes too.
//!
//! Placement: the caller's [`crate::FlowKey::hash`] is mixed with a per-table random key (xor,
//! multiply by an odd constant: a bijection, two instructions) so that peers who know the
//! build's fixed hash seeds cannot aim many flows at the same buckets. The top bits give the
//! primary bucket, bits 16.. the secondary (forced different when the table has two buckets or
//! more), bits 1..16 a 16-bit signature whose bit 0 is the key's family (1 = IPv6), for the
//! layouts that keep one.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crossbeam_utils::CachePadded;

use crate::key::{words_are_ipv6, FlowKey, ThreadId};
use crate::seqlock::{read_fence, spin, Version, VersionGuard};
use crate::table::TableFull;

/// Words of a [`FlowKey`] as a store reads and writes them.
pub(crate) type Words = [u64; 5];

/// Buckets a cuckoo path search visits at most (breadth-first, so paths stay short).
pub(crate) const CUCKOO_SEARCH_BUCKETS: usize = 512;
/// Cuckoo searches an insert tries before it reports [`TableFull`].
pub(crate) const INSERT_ATTEMPTS: usize = 8;

/// How a bucket layout keeps its slots. Every method takes a bucket index below
/// [`Store::buckets`] and a slot below [`Store::SLOTS`]; reads are racy unless the bucket's lock
/// is held or the read is validated by its version afterwards; the writes are for a holder of
/// the bucket's lock (and, for a key in its secondary, of its primary's).
pub(crate) trait Store: Sync + Sized {
    /// Slots per bucket.
    const SLOTS: usize;
    /// `buckets` empty buckets (a power of two).
    fn zeroed(buckets: usize) -> Self;
    fn buckets(&self) -> usize;
    fn version(&self, bucket: usize) -> &Version;
    fn occupied(&self, bucket: usize, slot: usize) -> bool;
    /// The key in an occupied slot.
    fn key(&self, bucket: usize, slot: usize) -> Words;
    fn owner(&self, bucket: usize, slot: usize) -> ThreadId;
    fn set_owner(&self, bucket: usize, slot: usize, owner: ThreadId);
    /// Fills the free `slot` with `words` (signature `sig`) owned by `owner`.
    fn write(&self, bucket: usize, slot: usize, words: &Words, sig: u16, owner: ThreadId);
    /// Empties an occupied slot.
    fn clear(&self, bucket: usize, slot: usize);
    /// The slot holding `words`, whose signature is `sig`.
    fn find(&self, bucket: usize, words: &Words, sig: u16) -> Option<usize>;
    /// The bucket's count of displaced rules.
    fn displaced(&self, bucket: usize) -> u64;
    /// Whether the count can take one more (its field may be narrower than 64 bits).
    fn displaced_has_room(&self, bucket: usize) -> bool;
    fn add_displaced(&self, bucket: usize, delta: i64);
    /// Whether the buckets lie on memory advised for transparent huge pages.
    fn on_huge_pages(&self) -> bool;

    fn free_slot(&self, bucket: usize) -> Option<usize> {
        (0..Self::SLOTS).find(|&slot| !self.occupied(bucket, slot))
    }
}

/// Where a key may live.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct Placement {
    pub(crate) primary: usize,
    pub(crate) secondary: usize,
    pub(crate) sig: u16,
}

/// A count of exact rules against a capacity: of all of them (shared by the layouts of both
/// families) or of the IPv6 ones.
pub(crate) struct Reservations {
    // Written by writers only; padded away from the read-mostly fields of the table.
    count: CachePadded<AtomicUsize>,
    capacity: usize,
    ipv6: bool,
}

impl Reservations {
    /// The count of all exact rules.
    pub(crate) fn new(capacity: usize) -> Self {
        Reservations {
            count: CachePadded::new(AtomicUsize::new(0)),
            capacity,
            ipv6: false,
        }
    }

    /// The count of the IPv6 exact rules.
    pub(crate) fn new_ipv6(capacity: usize) -> Self {
        Reservations {
            ipv6: true,
            ..Reservations::new(capacity)
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    fn reserve(&self) -> Result<(), TableFull> {
        // A count, not a publication: Relaxed.
        self.count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used < self.capacity).then_some(used + 1)
            })
            .map(drop)
            .map_err(|_| self.full())
    }

    fn release(&self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }

    fn full(&self) -> TableFull {
        if self.ipv6 {
            TableFull::ipv6_rules(self.capacity)
        } else {
            TableFull::rules(self.capacity)
        }
    }
}

/// The counts a layout's rules are reserved in: all exact rules, and those of the layout's
/// family when that has a capacity of its own (IPv6).
#[derive(Clone, Copy)]
pub(crate) struct Budget<'a> {
    pub(crate) all: &'a Reservations,
    pub(crate) family: Option<&'a Reservations>,
}

impl<'a> Budget<'a> {
    /// Only the count of all exact rules.
    pub(crate) fn all(all: &'a Reservations) -> Self {
        Budget { all, family: None }
    }

    /// One rule more in every count, or none and the error of the first count that is full
    /// (all rules first: a table full of rules says so, whatever the family).
    fn reserve(self) -> Result<(), TableFull> {
        self.all.reserve()?;
        if let Some(family) = self.family {
            family.reserve().inspect_err(|_| self.all.release())?;
        }
        Ok(())
    }

    fn release(self) {
        self.all.release();
        if let Some(family) = self.family {
            family.release();
        }
    }

    /// The error of an insert that found no room: the capacities allowed the rule, the buckets
    /// had no path for it.
    fn full(self) -> TableFull {
        self.all.full()
    }
}

/// Holds the locks of a key's two buckets (one if they are the same), taken in index order.
struct PairGuard<'a> {
    _first: VersionGuard<'a>,
    _second: Option<VersionGuard<'a>>,
}

/// A bucket reached by the breadth-first cuckoo search, and how: the entry `key` in slot `slot`
/// of node `parent`'s bucket would move into it (`parent == usize::MAX` for the inserted key's
/// own buckets).
struct PathNode {
    bucket: usize,
    parent: usize,
    slot: usize,
    key: Words,
}

/// A store of one layout with its placement and its writers' protocol.
pub(crate) struct Cuckoo<S> {
    pub(crate) store: S,
    mask: usize,
    /// Bucket index bits, for the shift that takes the primary index from the top of the hash.
    shift: u32,
    mix_xor: u64,
    mix_mul: u64,
    /// Serializes cuckoo relocations against each other and against `remove_owner`.
    relocation: Mutex<()>,
}

impl<S: Store> Cuckoo<S> {
    /// `buckets` must be a power of two.
    pub(crate) fn with_buckets(buckets: usize) -> Self {
        let random = RandomState::new();
        Cuckoo {
            store: S::zeroed(buckets),
            mask: buckets - 1,
            shift: buckets.trailing_zeros(),
            mix_xor: random.hash_one(1u64),
            mix_mul: random.hash_one(2u64) | 1,
            relocation: Mutex::new(()),
        }
    }

    /// The fewest buckets (a power of two, at least one) whose slots hold `capacity` keys at no
    /// more than `max_load_percent` of them.
    pub(crate) fn buckets_for(capacity: usize, max_load_percent: usize) -> usize {
        let slots = capacity.saturating_mul(100).div_ceil(max_load_percent);
        slots.div_ceil(S::SLOTS).max(1).next_power_of_two()
    }

    pub(crate) fn buckets(&self) -> usize {
        self.store.buckets()
    }

    /// Where a key with this hash and family may live, and its signature.
    #[inline(always)]
    pub(crate) fn place(&self, hash: u64, ipv6: bool) -> Placement {
        self.place_mixed(self.mix(hash), ipv6)
    }

    /// The hash mixed with the table's key: what [`Cuckoo::place_mixed`] takes apart.
    #[inline(always)]
    pub(crate) fn mix(&self, hash: u64) -> u64 {
        (hash ^ self.mix_xor).wrapping_mul(self.mix_mul)
    }

    /// The primary bucket alone, for lookups that may not need the rest of the placement.
    #[inline(always)]
    pub(crate) fn primary(&self, mixed: u64) -> usize {
        // A one-bucket table has shift 0: the wrapped shift by 64 is a shift by 0, and the
        // mask (0) makes the index 0.
        mixed.wrapping_shr(64 - self.shift) as usize & self.mask
    }

    /// [`Cuckoo::place`] of a hash already mixed ([`Cuckoo::mix`]).
    #[inline(always)]
    pub(crate) fn place_mixed(&self, mixed: u64, ipv6: bool) -> Placement {
        let primary = self.primary(mixed);
        let mut secondary = (mixed >> 16) as usize & self.mask;
        if secondary == primary {
            secondary ^= 1 & self.mask;
        }
        // The signature's low bit is the key's family: an IPv4 key never matches the slot of
        // an IPv6 rule, and a slot's signature says in which form its key is stored. 0 marks
        // an empty slot, so an IPv4 signature of 0 becomes 2.
        let sig = (mixed as u16 & !1) | u16::from(ipv6);
        Placement {
            primary,
            secondary,
            sig: sig | (u16::from(sig == 0) << 1),
        }
    }

    /// [`Cuckoo::place`] of a stored key's words.
    pub(crate) fn place_words(&self, words: &Words) -> Placement {
        self.place(hash_words(words), words_are_ipv6(words))
    }

    #[cfg(all(test, not(loom)))]
    pub(crate) fn mix_keys(&self) -> (u64, u64) {
        (self.mix_xor, self.mix_mul)
    }

    fn lock_pair(&self, place: Placement) -> PairGuard<'_> {
        let low = place.primary.min(place.secondary);
        let high = place.primary.max(place.secondary);
        let first = self.store.version(low).lock();
        let second = (high != low).then(|| self.store.version(high).lock());
        PairGuard {
            _first: first,
            _second: second,
        }
    }

    /// Finds `words` in its buckets; the caller holds both locks.
    fn find_locked(&self, words: &Words, place: Placement) -> Option<(usize, usize)> {
        [place.primary, place.secondary]
            .into_iter()
            .find_map(|bucket| Some((bucket, self.store.find(bucket, words, place.sig)?)))
    }

    /// Validated exact lookup (see the module documentation), retrying until no writer
    /// intervenes. The bulk lookups' path for the rare read that a writer disturbed.
    #[cold]
    pub(crate) fn search(&self, words: &Words, place: Placement) -> Option<ThreadId> {
        let store = &self.store;
        let (primary, secondary, sig) = (place.primary, place.secondary, place.sig);
        let mut round = 0u32;
        loop {
            if let Some(v_primary) = store.version(primary).read_begin() {
                if let Some(slot) = store.find(primary, words, sig) {
                    let owner = store.owner(primary, slot);
                    read_fence();
                    if store.version(primary).unchanged_since(v_primary) {
                        return Some(owner);
                    }
                } else if store.displaced(primary) == 0 {
                    read_fence();
                    if store.version(primary).unchanged_since(v_primary) {
                        return None;
                    }
                } else if let Some(v_secondary) = store.version(secondary).read_begin() {
                    let found = store
                        .find(secondary, words, sig)
                        .map(|slot| store.owner(secondary, slot));
                    read_fence();
                    if store.version(primary).unchanged_since(v_primary)
                        && store.version(secondary).unchanged_since(v_secondary)
                    {
                        return found;
                    }
                }
            }
            spin(round);
            round = round.saturating_add(1);
        }
    }

    /// Adds or replaces the rule `words` (placed at `place`); see [`crate::FlowTable::insert`].
    pub(crate) fn insert(
        &self,
        words: &Words,
        place: Placement,
        owner: ThreadId,
        rules: Budget<'_>,
    ) -> Result<Option<ThreadId>, TableFull> {
        let store = &self.store;
        let mut reserved = false;
        for _ in 0..INSERT_ATTEMPTS {
            {
                let _guard = self.lock_pair(place);
                if let Some((bucket, slot)) = self.find_locked(words, place) {
                    let previous = store.owner(bucket, slot);
                    store.set_owner(bucket, slot, owner);
                    if reserved {
                        // Another writer placed the key while this one searched a path.
                        rules.release();
                    }
                    return Ok(Some(previous));
                }
                if !reserved {
                    rules.reserve()?;
                    reserved = true;
                }
                // Primary first: a lookup that finds its key in the primary bucket never reads the
                // secondary, so the secondary takes only what the primary has no room for.
                let target = if store.free_slot(place.primary).is_some() {
                    Some(place.primary)
                } else {
                    (place.secondary != place.primary && store.displaced_has_room(place.primary))
                        .then_some(place.secondary)
                };
                if let Some((target, slot)) =
                    target.and_then(|target| Some((target, store.free_slot(target)?)))
                {
                    store.write(target, slot, words, place.sig, owner);
                    if target != place.primary {
                        store.add_displaced(place.primary, 1);
                    }
                    return Ok(None);
                }
            }
            let _relocating = self.relocation.lock().unwrap_or_else(|e| e.into_inner());
            self.make_room(place);
        }
        if reserved {
            rules.release();
        }
        Err(rules.full())
    }

    /// Removes the rule `words`; its owner, if it was there.
    pub(crate) fn remove(
        &self,
        words: &Words,
        place: Placement,
        rules: Budget<'_>,
    ) -> Option<ThreadId> {
        let _guard = self.lock_pair(place);
        let (bucket, slot) = self.find_locked(words, place)?;
        Some(self.clear_locked(place, bucket, slot, rules))
    }

    /// Removes the rule `words` if `owner` owns it; true when it went. The owner is checked
    /// under the same locks as the removal, so a rule another thread took over in between stays.
    pub(crate) fn remove_owned(
        &self,
        words: &Words,
        place: Placement,
        owner: ThreadId,
        rules: Budget<'_>,
    ) -> bool {
        let _guard = self.lock_pair(place);
        match self.find_locked(words, place) {
            Some((bucket, slot)) if self.store.owner(bucket, slot) == owner => {
                self.clear_locked(place, bucket, slot, rules);
                true
            }
            _ => false,
        }
    }

    /// Removes every rule of `owner`; how many went. O(buckets), for the rare exit of a thread.
    pub(crate) fn remove_owner(&self, owner: ThreadId, rules: Budget<'_>) -> usize {
        let store = &self.store;
        let _relocating = self.relocation.lock().unwrap_or_else(|e| e.into_inner());
        let mut removed = 0;
        for bucket in 0..self.buckets() {
            // Unlocked pre-check: most buckets hold no rule of `owner` and stay untouched, so
            // their readers never retry. A rule of `owner` inserted concurrently may be missed,
            // as with any insert that races the removal.
            let owned =
                |slot: usize| store.occupied(bucket, slot) && store.owner(bucket, slot) == owner;
            if !(0..S::SLOTS).any(owned) {
                continue;
            }
            // The keys are copied under this bucket's lock (a consistent state), then each is
            // removed under both its buckets' locks, which a displaced key's primary count needs.
            let keys: Vec<Words> = {
                let _guard = store.version(bucket).lock();
                (0..S::SLOTS)
                    .filter(|&slot| owned(slot))
                    .map(|slot| store.key(bucket, slot))
                    .collect()
            };
            for words in &keys {
                let place = self.place_words(words);
                let _guard = self.lock_pair(place);
                if let Some((bucket, slot)) = self.find_locked(words, place) {
                    if store.owner(bucket, slot) == owner {
                        self.clear_locked(place, bucket, slot, rules);
                        removed += 1;
                    }
                }
            }
        }
        removed
    }

    /// Exact rules stored in their primary bucket, by an unlocked scan of every bucket (a
    /// measurement, racy under concurrent writers).
    pub(crate) fn rules_in_primary(&self) -> usize {
        (0..self.buckets())
            .map(|bucket| {
                (0..S::SLOTS)
                    .filter(|&slot| {
                        self.store.occupied(bucket, slot)
                            && self.place_words(&self.store.key(bucket, slot)).primary == bucket
                    })
                    .count()
            })
            .sum()
    }

    /// Frees a slot in `place.primary` or `place.secondary` by moving entries along a cuckoo path.
    /// Called with the relocation mutex held and no bucket lock. False if no path was found or
    /// a concurrent writer changed it (the caller retries).
    fn make_room(&self, place: Placement) -> bool {
        let store = &self.store;
        let mut nodes: Vec<PathNode> = Vec::with_capacity(CUCKOO_SEARCH_BUCKETS);
        for bucket in [place.primary, place.secondary] {
            if nodes.iter().all(|n| n.bucket != bucket) {
                nodes.push(PathNode {
                    bucket,
                    parent: usize::MAX,
                    slot: 0,
                    key: [0; 5],
                });
            }
        }
        let mut head = 0;
        while head < nodes.len() {
            let bucket = nodes[head].bucket;
            for slot in 0..S::SLOTS {
                if !store.occupied(bucket, slot) {
                    // Freed meanwhile: the caller's retry will use it.
                    return true;
                }
                // Racy read: checked again under the locks before anything moves.
                let key = store.key(bucket, slot);
                let alternate = self.alternate(&key, bucket);
                if alternate == bucket {
                    continue;
                }
                if store.free_slot(alternate).is_some() {
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
    fn alternate(&self, key: &Words, bucket: usize) -> usize {
        let place = self.place_words(key);
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
        mut key: Words,
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
    /// holds `key`, `to` still has room and, for a move out of the key's primary, the primary's
    /// displaced count can take one more.
    fn move_entry(&self, from: usize, slot: usize, key: &Words, to: usize) -> bool {
        let store = &self.store;
        let _guard = self.lock_pair(Placement {
            primary: from,
            secondary: to,
            sig: 0,
        });
        if !store.occupied(from, slot) || store.key(from, slot) != *key {
            return false;
        }
        let Some(free) = store.free_slot(to) else {
            return false;
        };
        // `from` and `to` are the key's two buckets, both locked: its primary's count follows it.
        let place = self.place_words(key);
        let into_primary = to == place.primary;
        if !into_primary && !store.displaced_has_room(from) {
            return false;
        }
        store.write(to, free, key, place.sig, store.owner(from, slot));
        store.clear(from, slot);
        if into_primary {
            store.add_displaced(to, -1);
        } else {
            store.add_displaced(from, 1);
        }
        true
    }

    /// Empties slot `slot` of `bucket`, which holds a key placed at `place`, and returns its
    /// owner; the caller holds both locks of `place`.
    fn clear_locked(
        &self,
        place: Placement,
        bucket: usize,
        slot: usize,
        rules: Budget<'_>,
    ) -> ThreadId {
        let owner = self.store.owner(bucket, slot);
        self.store.clear(bucket, slot);
        if bucket != place.primary {
            self.store.add_displaced(place.primary, -1);
        }
        rules.release();
        owner
    }

    /// Exact rules in all buckets, for occupancy measurements.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn load(&self) -> usize {
        (0..self.buckets())
            .map(|bucket| {
                (0..S::SLOTS)
                    .filter(|&slot| self.store.occupied(bucket, slot))
                    .count()
            })
            .sum()
    }

    /// Checks every bucket's displaced count against a recount of the rules sitting in their
    /// secondary bucket (no concurrent writer).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn assert_displaced_counts(&self) {
        let mut expected = vec![0u64; self.buckets()];
        for bucket in 0..self.buckets() {
            for slot in (0..S::SLOTS).filter(|&slot| self.store.occupied(bucket, slot)) {
                let primary = self.place_words(&self.store.key(bucket, slot)).primary;
                if primary != bucket {
                    expected[primary] += 1;
                }
            }
        }
        for (bucket, expected) in expected.into_iter().enumerate() {
            let counted = self.store.displaced(bucket);
            assert_eq!(counted, expected, "displaced count of bucket {bucket}");
        }
    }
}

fn hash_words(words: &Words) -> u64 {
    FlowKey::from_words(*words).hash()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::key::Proto;
    use crate::line_buckets::LineBuckets;
    use crate::test_keys::mixed_key;
    use std::collections::HashMap;
    use std::net::Ipv6Addr;

    #[test]
    fn placement_gives_two_buckets_and_a_signature_of_the_family() {
        for buckets in [1usize, 2, 4, 1024] {
            let table = Cuckoo::<LineBuckets>::with_buckets(buckets);
            for i in 0..2_000 {
                let key = mixed_key(i);
                let place = table.place(key.hash(), key.is_ipv6());
                assert!(place.primary < buckets && place.secondary < buckets);
                assert_eq!(place.primary == place.secondary, buckets == 1);
                assert_ne!(place.sig, 0);
                assert_eq!(place.sig & 1 == 1, key.is_ipv6(), "{key}");
            }
        }
        // The hashes whose low signature bits are 0: an IPv4 signature of 0 would mark an
        // empty slot.
        let table = Cuckoo::<LineBuckets>::with_buckets(1);
        let (mix_xor, mix_mul) = table.mix_keys();
        let zero_low_bits = (0..1u64 << 20)
            .map(|h| h.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .find(|&h| (h ^ mix_xor).wrapping_mul(mix_mul) as u16 <= 1)
            .expect("a hash whose mixed low bits are 0 or 1");
        assert_eq!(table.place(zero_low_bits, false).sig, 2);
        assert_eq!(table.place(zero_low_bits, true).sig, 1);
    }

    /// Dispersion index of a histogram: variance over mean, 1 for keys thrown at random
    /// (Poisson counts), above 1 when keys clump.
    fn dispersion(counts: &[u32], keys: usize) -> f64 {
        let mean = keys as f64 / counts.len() as f64;
        let squares: f64 = counts.iter().map(|&c| (f64::from(c) - mean).powi(2)).sum();
        squares / counts.len() as f64 / mean
    }

    /// 1 Mi keys of the shapes real traffic has (consecutive client addresses, consecutive client
    /// ports, IPv6 clients numbered from one prefix) spread over the primary buckets, the secondary
    /// buckets and the signatures as random keys would, and their two bucket choices and their
    /// signatures are independent of each other.
    #[test]
    fn realistic_keys_spread_like_random_ones() {
        if cfg!(miri) {
            return; // 3 Mi hashes and placements: far too slow to interpret.
        }
        const KEYS: usize = 1 << 20;
        const BUCKETS: usize = 1 << 17;
        fn consecutive_addresses(i: u32) -> FlowKey {
            let client = 0x0a00_0000 + i;
            FlowKey::from_v4_bytes(
                Proto::Tcp,
                [198, 18, 0, 1],
                80,
                client.to_be_bytes(),
                40_000,
            )
        }
        fn consecutive_ports(i: u32) -> FlowKey {
            let client = [10, 0, 0, (i >> 16) as u8];
            FlowKey::from_v4_bytes(Proto::Udp, [198, 18, 0, 1], 53, client, i as u16)
        }
        fn ipv6_clients(i: u32) -> FlowKey {
            let server = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
            let client = Ipv6Addr::from(0x2001_0db8_00aa_0000_0000_0000_0000_0000 | u128::from(i));
            FlowKey::v6(Proto::Tcp, server, 443, client, 50_000)
        }
        type Shape = (&'static str, fn(u32) -> FlowKey);
        let shapes: [Shape; 3] = [
            ("consecutive client addresses", consecutive_addresses),
            ("16 clients, consecutive ports", consecutive_ports),
            ("IPv6 clients", ipv6_clients),
        ];
        let table = Cuckoo::<LineBuckets>::with_buckets(BUCKETS);
        for (shape, make) in &shapes {
            let mut primary = vec![0u32; BUCKETS];
            let mut secondary = vec![0u32; BUCKETS];
            // The signature's low bit is the family: the other 15 bits are the hash's.
            let mut signature = vec![0u32; 1 << 15];
            let mut pairs = HashMap::new();
            let mut tagged = HashMap::new();
            for i in 0..KEYS as u32 {
                let key = make(i);
                let place = table.place(key.hash(), key.is_ipv6());
                primary[place.primary] += 1;
                secondary[place.secondary] += 1;
                signature[usize::from(place.sig >> 1)] += 1;
                *pairs
                    .entry((place.primary, place.secondary))
                    .or_insert(0u32) += 1;
                *tagged.entry((place.primary, place.sig)).or_insert(0u32) += 1;
            }
            let spreads = [
                ("primary", dispersion(&primary, KEYS)),
                ("secondary", dispersion(&secondary, KEYS)),
                ("signature", dispersion(&signature, KEYS)),
            ];
            // Keys sharing both buckets, or a bucket and a signature, with another key: random
            // keys give N^2 / 2 cells of such pairs, 32 and 128 here (15 signature bits).
            let shared = |cells: &HashMap<(usize, usize), u32>| -> u32 {
                cells.values().map(|&c| c * (c - 1) / 2).sum()
            };
            let (both, same_tag) = (
                shared(&pairs),
                shared(
                    &tagged
                        .into_iter()
                        .map(|((b, s), c)| ((b, usize::from(s)), c))
                        .collect(),
                ),
            );
            println!("{shape}: dispersion {spreads:?}, pairs sharing both buckets {both}, a bucket and a signature {same_tag}");
            for (what, spread) in spreads {
                assert!(
                    (0.95..=1.05).contains(&spread),
                    "{shape}: {what} dispersion {spread:.3}"
                );
            }
            assert!(
                both <= 100,
                "{shape}: {both} pairs share both buckets (random: 32)"
            );
            assert!(
                same_tag <= 320,
                "{shape}: {same_tag} pairs share a bucket and a signature (random: 128)"
            );
        }
    }
}
