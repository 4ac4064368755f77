//! The bucketized flow table: lookups take no lock and write no shared memory.
//!
//! Two fixed arrays of buckets, allocated at creation and never resized, one per address family,
//! both run by the same two-choice cuckoo protocol (`cuckoo`: placement, per-bucket sequence
//! locks, primary-first inserts, displaced counts, cuckoo moves, `remove_owner`):
//!
//! | family | layout (file)  | bucket                                                              | a hit reads |
//! |--------|----------------|---------------------------------------------------------------------|-------------|
//! | IPv4   | `line_buckets` | 1 line: version, 3 owners and the displaced count, 3 keys of 16 bytes | 1 line (97.6% of hits at 33% load) |
//! | IPv6   | `wide_buckets` | a 64-byte head (version, 8 signatures, 8 owners, displaced count) and 320 bytes of keys (8 × 40) | 1 head, 1–2 key lines |
//!
//! Why two layouts: an IPv4 5-tuple fits 16 bytes (VPP keeps IPv4 flows in a 16-byte bihash and
//! IPv6 ones in a 40-byte one, DPDK's l3fwd in two tables), so three keys fit a line together
//! with their version and owners, and a lookup reads one line where the 8-slot layout reads a
//! head and then a key line (the two layouts timed on the same IPv4 keys: BENCHMARKS.md,
//! "flowtable: the bucket layouts"). A 40-byte key leaves no room for a useful bucket in one
//! line, so IPv6 keeps the 8-slot layout.
//!
//! Every stored rule is in exactly one layout, chosen by its family, and a lookup reads only
//! that layout. [`BucketTable::lookup_bulk`] hands a burst of one family to its layout whole; a
//! burst that mixes them is split, per 32 keys, into two bursts (the keys and hashes copied into
//! stack arrays, the results copied back). [`BucketTable::hash_lookup_bulk`] hashes a burst of
//! IPv4 keys inside the IPv4 layout's stage 1 (`line_buckets` tells why); IPv6 and mixed bursts
//! are hashed first and then take the same paths.
//!
//! Capacity: `capacity` exact rules in all, counted by one atomic reserved before a new key is
//! placed, and of them at most `ipv6_capacity` IPv6 ones ([`BucketTable::with_capacities`];
//! the whole capacity by default), counted by a second atomic that an IPv6 key reserves first.
//! The IPv4 layout is sized for the whole capacity, the IPv6 one for its own, whatever the mix
//! of families: the IPv4 lines for at most [`LINE_MAX_LOAD_PERCENT`] load, the IPv6 buckets for
//! at most [`WIDE_MAX_LOAD_PERCENT`], rounded up to a power of two buckets (so a layout holding
//! all its rules is between half its maximum load and its maximum). Two-choice buckets with cuckoo
//! displacement fill past 90% (3 slots) and 95% (8 slots) before the first failure in tables
//! of 1024 buckets, whatever the hash key (test
//! `cuckoo_fills_past_ninety_percent_in_both_layouts`; tables of a few buckets fill less but
//! still hold their capacity, test `fills_to_capacity_with_any_seed`), so inserting up to
//! `capacity` rules is expected to always succeed; this is a probabilistic guarantee, not an
//! absolute one: if no path is found after [`crate::cuckoo::INSERT_ATTEMPTS`] searches the
//! insert fails with [`TableFull`] like a full table.
//!
//! Memory: 1 Mi rules take 1 Mi IPv4 lines (64 MiB) and 256 Ki IPv6 buckets (16 MiB of heads,
//! 80 MiB of keys; one bucket with an IPv6 capacity of 0), 100–210 bytes per rule of capacity,
//! allocated zeroed and committed at creation; arrays of 2 MiB or more on transparent huge pages
//! (`bucket_array`; [`BucketTable::on_huge_pages`], [`crate::huge_page_fallbacks`]).
//!
//! Per IPv4 key, `hash_lookup_bulk` costs the key's [`FlowKey::hash`] (about 20 instructions),
//! no allocation, no lock, no store to shared memory, and
//!
//! | outcome                                    | cache lines read                                        |
//! |--------------------------------------------|---------------------------------------------------------|
//! | hit                                        | 1 line (2 for a rule in its secondary)                  |
//! | miss, no listen rule on the local port     | 1 line (2 if the primary has a displaced rule), 1 filter word |
//! | miss to a listened port (a new connection) | as above + the listen version and 1–2 slot lines        |
//!
//! It looks for the CPU's `crc32` instruction once per burst, where a caller's loop of
//! `FlowKey::hash` before `lookup_bulk` looks once per key. The instructions of each outcome in
//! both layouts, counted by the crate's `lookup_count` example under callgrind, are in
//! BENCHMARKS.md, "flowtable: instructions per lookup".

use std::fmt;

use crate::cuckoo::{Budget, Cuckoo, Reservations, Store};
use crate::key::{FlowKey, ListenKey, ThreadId};
use crate::line_buckets::LineBuckets;
use crate::listen_table::ListenTable;
use crate::lookup::Lookup;
use crate::table::{FlowTable, TableFull, Withdrawn};
use crate::wide_buckets::WideBuckets;

/// The IPv4 layout is sized so that `capacity` rules fill at most this share of its slots: with
/// 3 slots a bucket, a fuller layout puts more rules in their secondary (13% at 67% load against
/// 2.4% at 33%), and each of those hits, and each miss in their primary, reads a second line.
pub(crate) const LINE_MAX_LOAD_PERCENT: usize = 50;
/// The IPv6 layout is sized so that `capacity` rules fill at most this share of its slots.
pub(crate) const WIDE_MAX_LOAD_PERCENT: usize = 80;
/// Keys a mixed burst is split by (the stack arrays of the split).
const SPLIT_CHUNK: usize = 32;

/// Concurrent flow table with lock-free lookups over fixed, preallocated buckets. See the module
/// documentation for the layouts, the protocols and the costs.
pub struct BucketTable {
    v4: Cuckoo<LineBuckets>,
    v6: Cuckoo<WideBuckets>,
    listen: ListenTable,
    rules: Reservations,
    ipv6_rules: Reservations,
}

impl BucketTable {
    /// The implementation's name, as reports and benchmark tables print it.
    pub const NAME: &'static str = "bucketized";

    /// A table for at most `capacity` exact rules (and `min(capacity, 4096)` listen rules), with
    /// all buckets allocated now. A capacity of 0 yields a table that refuses every rule.
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_capacities(capacity, capacity)
    }

    /// As [`BucketTable::with_capacity`], with at most `ipv6_capacity` of the exact rules IPv6
    /// ones (`capacity` bounds them too): the IPv6 buckets are sized for the smaller of the two,
    /// one bucket at least.
    pub fn with_capacities(capacity: usize, ipv6_capacity: usize) -> Self {
        let ipv6_capacity = ipv6_capacity.min(capacity);
        let mut table = Self::with_buckets(
            capacity,
            Cuckoo::<LineBuckets>::buckets_for(capacity, LINE_MAX_LOAD_PERCENT),
            Cuckoo::<WideBuckets>::buckets_for(ipv6_capacity, WIDE_MAX_LOAD_PERCENT),
        );
        table.ipv6_rules = Reservations::new_ipv6(ipv6_capacity);
        table
    }

    /// Bucket counts must be powers of two.
    fn with_buckets(capacity: usize, v4_buckets: usize, v6_buckets: usize) -> Self {
        BucketTable {
            v4: Cuckoo::with_buckets(v4_buckets),
            v6: Cuckoo::with_buckets(v6_buckets),
            listen: ListenTable::new(capacity),
            rules: Reservations::new(capacity),
            ipv6_rules: Reservations::new_ipv6(capacity),
        }
    }

    /// The counts an IPv4 rule is reserved in.
    fn v4_budget(&self) -> Budget<'_> {
        Budget::all(&self.rules)
    }

    /// The counts an IPv6 rule is reserved in: its own only when it is below the capacity of
    /// all (else it could never be the one that is full).
    fn v6_budget(&self) -> Budget<'_> {
        Budget {
            all: &self.rules,
            family: (self.ipv6_rules.capacity() < self.rules.capacity())
                .then_some(&self.ipv6_rules),
        }
    }

    /// Whether the IPv4 lines and the IPv6 buckets (heads and keys) lie on memory advised for
    /// transparent huge pages (arrays of 2 MiB or more, on Linux, with the kernel's consent).
    /// Only the tests call it; it stays as the per-table answer to what
    /// [`crate::huge_page_fallbacks`] counts for the whole process.
    pub fn on_huge_pages(&self) -> (bool, bool) {
        (self.v4.store.on_huge_pages(), self.v6.store.on_huge_pages())
    }

    /// Buckets of the IPv4 layout (3 slots each) and of the IPv6 layout (8 slots each), powers
    /// of two. Only the tests call it, to check the sizing the module documentation states.
    pub fn buckets(&self) -> (usize, usize) {
        (self.v4.buckets(), self.v6.buckets())
    }

    /// Exact rules stored in their primary bucket, by an unlocked scan of every bucket (a
    /// measurement, racy under concurrent writers). A lookup of such a rule reads one bucket; the
    /// others read two.
    pub fn rules_in_primary(&self) -> usize {
        self.v4.rules_in_primary() + self.v6.rules_in_primary()
    }

    /// Looks up a burst that mixes the families: per [`SPLIT_CHUNK`] keys, each family's keys
    /// and hashes are copied into a burst of their own and the results copied back.
    #[cold]
    fn lookup_mixed(&self, keys: &[FlowKey], hashes: &[u64], out: &mut [Lookup]) {
        for ((keys, hashes), out) in keys
            .chunks(SPLIT_CHUNK)
            .zip(hashes.chunks(SPLIT_CHUNK))
            .zip(out.chunks_mut(SPLIT_CHUNK))
        {
            for ipv6 in [false, true] {
                let mut picked = [0u8; SPLIT_CHUNK];
                let mut family_keys = [keys[0]; SPLIT_CHUNK];
                let mut family_hashes = [0u64; SPLIT_CHUNK];
                let mut family_out = [Lookup::Miss; SPLIT_CHUNK];
                let mut len = 0;
                for (index, key) in keys.iter().enumerate() {
                    if key.is_ipv6() == ipv6 {
                        picked[len] = index as u8;
                        family_keys[len] = *key;
                        family_hashes[len] = hashes[index];
                        len += 1;
                    }
                }
                let (family_keys, family_hashes, family_out) = (
                    &family_keys[..len],
                    &family_hashes[..len],
                    &mut family_out[..len],
                );
                if ipv6 {
                    self.v6
                        .lookup_bulk(family_keys, family_hashes, family_out, &self.listen);
                } else {
                    self.v4
                        .lookup_bulk(family_keys, family_hashes, family_out, &self.listen);
                }
                for (&index, result) in picked.iter().zip(family_out.iter()) {
                    out[usize::from(index)] = *result;
                }
            }
        }
    }
}

impl FlowTable for BucketTable {
    fn insert(&self, key: FlowKey, owner: ThreadId) -> Result<Option<ThreadId>, TableFull> {
        let (hash, words) = (key.hash(), key.words());
        if key.is_ipv6() {
            self.v6
                .insert(words, self.v6.place(hash, true), owner, self.v6_budget())
        } else {
            self.v4
                .insert(words, self.v4.place(hash, false), owner, self.v4_budget())
        }
    }

    fn remove(&self, key: &FlowKey) -> Option<ThreadId> {
        let (hash, words) = (key.hash(), key.words());
        if key.is_ipv6() {
            self.v6
                .remove(words, self.v6.place(hash, true), self.v6_budget())
        } else {
            self.v4
                .remove(words, self.v4.place(hash, false), self.v4_budget())
        }
    }

    fn remove_owned(&self, key: &FlowKey, owner: ThreadId) -> bool {
        let (hash, words) = (key.hash(), key.words());
        if key.is_ipv6() {
            self.v6
                .remove_owned(words, self.v6.place(hash, true), owner, self.v6_budget())
        } else {
            self.v4
                .remove_owned(words, self.v4.place(hash, false), owner, self.v4_budget())
        }
    }

    fn listen_add(&self, rule: ListenKey, owner: ThreadId) -> Result<(), TableFull> {
        self.listen.add(rule, owner)
    }

    fn listen_remove(&self, rule: &ListenKey, owner: ThreadId) -> bool {
        self.listen.remove(rule, owner)
    }

    fn remove_owner(&self, owner: ThreadId) -> usize {
        self.v4.remove_owner(owner, self.v4_budget())
            + self.v6.remove_owner(owner, self.v6_budget())
            + self.listen.remove_owner(owner)
    }

    fn withdraw_owner(&self, owner: ThreadId) -> Withdrawn {
        let exact = self.v4.remove_owner(owner, self.v4_budget())
            + self.v6.remove_owner(owner, self.v6_budget());
        Withdrawn {
            exact,
            ..self.withdraw_listens(owner)
        }
    }

    fn withdraw_listens(&self, owner: ThreadId) -> Withdrawn {
        let (listen_withdrawn, listen_kept) = self.listen.withdraw_owner(owner);
        Withdrawn {
            exact: 0,
            listen_withdrawn,
            listen_kept,
        }
    }

    fn lookup_bulk(&self, keys: &[FlowKey], hashes: &[u64], out: &mut [Lookup]) {
        let count = keys.len().min(hashes.len()).min(out.len());
        let (keys, hashes, out) = (&keys[..count], &hashes[..count], &mut out[..count]);
        let ipv6 = keys.iter().filter(|key| key.is_ipv6()).count();
        if ipv6 == 0 {
            self.v4.lookup_bulk(keys, hashes, out, &self.listen);
        } else if ipv6 == count {
            self.v6.lookup_bulk(keys, hashes, out, &self.listen);
        } else {
            self.lookup_mixed(keys, hashes, out);
        }
    }

    fn hash_lookup_bulk(&self, keys: &[FlowKey], hashes: &mut [u64], out: &mut [Lookup]) {
        let count = keys.len().min(hashes.len()).min(out.len());
        let (keys, hashes, out) = (&keys[..count], &mut hashes[..count], &mut out[..count]);
        if keys.iter().all(|key| !key.is_ipv6()) {
            self.v4.hash_lookup_bulk(keys, hashes, out, &self.listen);
        } else {
            // IPv6 and mixed bursts: hashed first, then looked up as the caller's would be.
            for (hash, key) in hashes.iter_mut().zip(keys) {
                *hash = key.hash();
            }
            self.lookup_bulk(keys, hashes, out);
        }
    }

    fn exact_len(&self) -> usize {
        self.rules.len()
    }

    fn listen_len(&self) -> usize {
        self.listen.len()
    }

    fn capacity(&self) -> usize {
        self.rules.capacity()
    }

    fn ipv6_capacity(&self) -> usize {
        self.ipv6_rules.capacity()
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
            .field("capacity", &self.capacity())
            .field("ipv4_buckets", &self.v4.buckets())
            .field("ipv6_buckets", &self.v6.buckets())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::test_keys::{key, owner_of, v6_key};
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// The address families, each with its layout.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Family {
        V4,
        V6,
    }

    const FAMILIES: [Family; 2] = [Family::V4, Family::V6];

    impl Family {
        fn key(self, i: u32) -> FlowKey {
            match self {
                Family::V4 => key(i),
                Family::V6 => v6_key(i),
            }
        }

        fn slots_per_bucket(self) -> usize {
            match self {
                Family::V4 => LineBuckets::SLOTS,
                Family::V6 => WideBuckets::SLOTS,
            }
        }

        /// The load a table of 1024 buckets reaches before its first refused insert, at least:
        /// in 400 tables with random hash keys the lowest was 94.4% (3 slots) and 99.5% (8).
        fn fill_percent(self) -> usize {
            match self {
                Family::V4 => 90,
                Family::V6 => 95,
            }
        }

        /// A load the tests fill layouts to, for many rules in their secondary and many cuckoo
        /// moves; below the fill of most tables of 256 buckets or more (lowest of 400: 93.0%
        /// and 99.2%), and the tests tolerate refusals on the way there (small tables fill less).
        fn high_load_percent(self) -> usize {
            match self {
                Family::V4 => 85,
                Family::V6 => 90,
            }
        }
    }

    impl BucketTable {
        fn slots(&self, family: Family) -> usize {
            let (v4, v6) = self.buckets();
            family.slots_per_bucket() * if family == Family::V4 { v4 } else { v6 }
        }

        fn load(&self, family: Family) -> usize {
            match family {
                Family::V4 => self.v4.load(),
                Family::V6 => self.v6.load(),
            }
        }

        fn rules_in_primary_of(&self, family: Family) -> usize {
            match family {
                Family::V4 => self.v4.rules_in_primary(),
                Family::V6 => self.v6.rules_in_primary(),
            }
        }

        fn assert_displaced_counts(&self) {
            self.v4.assert_displaced_counts();
            self.v6.assert_displaced_counts();
        }
    }

    /// A table with `buckets` buckets in both layouts and no capacity limit.
    fn table_of(buckets: usize) -> BucketTable {
        BucketTable::with_buckets(usize::MAX, buckets, buckets)
    }

    /// Inserts prefer the primary bucket, so at the load of a table filled to its capacity most
    /// rules are found by reading one bucket: at 33% load in 3-slot lines about 97.6%, at 50% in
    /// 8-slot buckets 99%.
    #[test]
    fn rules_sit_in_their_primary_bucket_at_the_sized_load() {
        let capacity = if cfg!(miri) { 500 } else { 1 << 16 };
        for (family, percent) in [(Family::V4, 95), (Family::V6, 95)] {
            let table = BucketTable::with_capacity(capacity);
            for i in 0..capacity as u32 {
                table.insert(family.key(i), owner_of(i)).unwrap();
            }
            let in_primary = table.rules_in_primary_of(family);
            assert_eq!(table.rules_in_primary(), in_primary);
            assert!(
                in_primary * 100 >= capacity * percent,
                "{family:?}: {in_primary} of {capacity} rules in their primary bucket"
            );
        }
    }

    /// Nearly full layouts hold many rules in their secondary bucket; bulk lookups of bursts of
    /// one family and of bursts that mix both, with primary rules, secondary rules and misses,
    /// return every owner and every miss in the burst's order.
    #[test]
    fn bulk_lookup_finds_rules_in_either_bucket() {
        const BUCKETS: usize = if cfg!(miri) { 8 } else { 1024 };
        let table = table_of(BUCKETS);
        let mut bursts: HashMap<&str, Vec<(FlowKey, Lookup)>> = HashMap::new();
        for family in FAMILIES {
            let tried = (table.slots(family) * family.high_load_percent() / 100) as u32;
            let rules: Vec<u32> = (0..tried)
                .filter(|&i| table.insert(family.key(i), owner_of(i)).is_ok())
                .collect();
            let in_primary = table.rules_in_primary_of(family);
            assert!(
                in_primary < rules.len() && in_primary > rules.len() / 2,
                "{family:?}: {in_primary} of {} rules in their primary bucket",
                rules.len()
            );
            // After every second rule, a key never inserted.
            let expected: Vec<(FlowKey, Lookup)> = rules
                .iter()
                .flat_map(|&i| {
                    let rule = (family.key(i), Lookup::Exact(owner_of(i)));
                    let miss = (family.key(10_000_000 + i), Lookup::Miss);
                    std::iter::once(rule).chain((i % 2 == 1).then_some(miss))
                })
                .collect();
            bursts.insert(if family == Family::V4 { "IPv4" } else { "IPv6" }, expected);
        }
        // Every third key from the other family, in bursts that are never of one family alone.
        let mixed: Vec<(FlowKey, Lookup)> = bursts["IPv4"]
            .chunks(2)
            .zip(bursts["IPv6"].iter())
            .flat_map(|(v4, v6)| v4.iter().copied().chain(std::iter::once(*v6)))
            .collect();
        bursts.insert("mixed", mixed);
        for (name, expected) in &bursts {
            let keys: Vec<FlowKey> = expected.iter().map(|(k, _)| *k).collect();
            let hashes: Vec<u64> = keys.iter().map(FlowKey::hash).collect();
            let mut out = vec![Lookup::Miss; keys.len()];
            table.lookup_bulk(&keys, &hashes, &mut out);
            for ((key, expected), result) in expected.iter().zip(&out) {
                assert_eq!(result, expected, "{name}: {key}");
            }
        }
        table.assert_displaced_counts();
    }

    /// Inserts at high load (cuckoo moves both ways), removals, owner changes and the removal of
    /// an owner's rules keep every primary's count of its displaced rules exact, and the lookups
    /// that trust a count of 0 keep finding every rule.
    #[test]
    fn displaced_counts_follow_every_write() {
        const BUCKETS: usize = if cfg!(miri) { 4 } else { 256 };
        for family in FAMILIES {
            let table = table_of(BUCKETS);
            let mut present: HashMap<u32, ThreadId> = HashMap::new();
            let full = table.slots(family) * family.high_load_percent() / 100;
            let mut next = 0u32;
            for round in 0..if cfg!(miri) { 2 } else { 6 } {
                // Up to the high load, or until 64 inserts in a row are refused (a small
                // table may fill less).
                let mut refused = 0;
                while present.len() < full && refused < 64 {
                    let owner = (next % 5) as ThreadId;
                    if table.insert(family.key(next), owner).is_ok() {
                        present.insert(next, owner);
                        refused = 0;
                    } else {
                        refused += 1;
                    }
                    next += 1;
                }
                table.assert_displaced_counts();
                let mut ids: Vec<u32> = present.keys().copied().collect();
                ids.sort_unstable();
                for &i in ids.iter().step_by(3) {
                    assert_eq!(table.remove(&family.key(i)), present.remove(&i), "key {i}");
                }
                for &i in ids.iter().skip(1).step_by(7) {
                    if let Some(owner) = present.get_mut(&i) {
                        *owner = 40 + round as ThreadId;
                        assert!(table.insert(family.key(i), *owner).unwrap().is_some());
                    }
                }
                table.assert_displaced_counts();
                let gone = (round % 5) as ThreadId;
                let owned = present.values().filter(|&&o| o == gone).count();
                assert_eq!(table.remove_owner(gone), owned);
                present.retain(|_, owner| *owner != gone);
                table.assert_displaced_counts();
                assert_eq!(table.exact_len(), present.len());
                assert_eq!(table.load(family), present.len());
                let keys: Vec<FlowKey> = (0..next).map(|i| family.key(i)).collect();
                let hashes: Vec<u64> = keys.iter().map(FlowKey::hash).collect();
                let mut out = vec![Lookup::Miss; keys.len()];
                table.lookup_bulk(&keys, &hashes, &mut out);
                for (i, result) in out.iter().enumerate() {
                    let expected = present
                        .get(&(i as u32))
                        .map_or(Lookup::Miss, |&owner| Lookup::Exact(owner));
                    assert_eq!(*result, expected, "{family:?} key {i}");
                    assert_eq!(table.lookup(&keys[i]), expected, "{family:?} key {i} alone");
                }
            }
        }
    }

    /// Arrays of 2 MiB or more ask for huge pages (granted wherever the kernel has transparent
    /// huge pages), smaller ones come from the allocator; all tables work the same.
    #[test]
    fn large_arrays_go_on_huge_pages() {
        let kernel_has_them = cfg!(all(target_os = "linux", not(miri)))
            && std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists();
        // Miri has no mmap (all sizes take the heap path) and zeroing 12 MiB takes it minutes.
        // Lines: 2 MiB from 32 Ki on; IPv6 heads from 32 Ki, IPv6 key blocks from 8 Ki.
        type Size = (usize, (bool, (bool, bool)));
        let (rules, sizes): (u32, &[Size]) = if cfg!(miri) {
            (50, &[(1024, (false, (false, false)))])
        } else {
            (
                1000,
                &[
                    (1024, (false, (false, false))),
                    (8 * 1024, (false, (false, kernel_has_them))),
                    (
                        32 * 1024,
                        (kernel_has_them, (kernel_has_them, kernel_has_them)),
                    ),
                ],
            )
        };
        for &(buckets, (lines, (heads, keys))) in sizes {
            let table = table_of(buckets);
            assert_eq!(table.v4.store.on_huge_pages(), lines, "{buckets} lines");
            assert_eq!(
                table.v6.store.arrays_on_huge_pages(),
                (heads, keys),
                "{buckets} IPv6 buckets"
            );
            assert_eq!(table.on_huge_pages(), (lines, heads && keys));
            for family in FAMILIES {
                for i in 0..rules {
                    table.insert(family.key(i), owner_of(i)).unwrap();
                }
                for i in 0..rules {
                    assert_eq!(table.lookup(&family.key(i)), Lookup::Exact(owner_of(i)));
                }
                assert_eq!(table.lookup(&family.key(5000)), Lookup::Miss);
            }
        }
    }

    #[test]
    fn a_removed_key_left_in_place_is_not_found() {
        for family in FAMILIES {
            let table = BucketTable::with_capacity(8);
            table.insert(family.key(1), 3).unwrap();
            assert_eq!(table.remove(&family.key(1)), Some(3));
            assert_eq!(table.lookup(&family.key(1)), Lookup::Miss);
            table.insert(family.key(2), 4).unwrap();
            assert_eq!(table.lookup(&family.key(1)), Lookup::Miss);
            assert_eq!(table.lookup(&family.key(2)), Lookup::Exact(4));
        }
    }

    /// A layout holding `capacity` rules is at most its maximum load full and, but for the
    /// smallest tables, at least half of that (the power-of-two rounding).
    #[test]
    fn sizing_keeps_the_load_at_capacity_within_half_of_the_maximum() {
        let capacities: &[usize] = if cfg!(miri) {
            &[0, 1, 6, 7, 100, 1_000]
        } else {
            &[0, 1, 6, 7, 100, 1_000, 1 << 16, 1 << 20]
        };
        for &capacity in capacities {
            let table = BucketTable::with_capacity(capacity);
            for (family, max) in [
                (Family::V4, LINE_MAX_LOAD_PERCENT),
                (Family::V6, WIDE_MAX_LOAD_PERCENT),
            ] {
                let slots = table.slots(family);
                assert!(capacity * 100 <= slots * max, "{family:?} {capacity}");
                assert!(
                    slots <= 16 || capacity * 100 * 2 >= slots * max,
                    "{family:?} {capacity}"
                );
            }
        }
        assert_eq!(BucketTable::with_capacity(6).buckets(), (4, 1));
        if !cfg!(miri) {
            assert_eq!(
                BucketTable::with_capacity(1 << 20).buckets(),
                (1 << 20, 1 << 18)
            );
        }
    }

    #[test]
    fn cuckoo_fills_past_ninety_percent_in_both_layouts() {
        // Miri runs the small sizes only (it interprets every instruction). Small tables fill
        // less, and their fill varies more with the hash key: two buckets always fill, and
        // in 2000 tables of 8 buckets the lowest fill was 66.7% (3 slots) and 90.6% (8).
        let sizes: &[usize] = if cfg!(miri) { &[2, 8] } else { &[2, 8, 1024] };
        for family in FAMILIES {
            for &buckets in sizes {
                let percent = match buckets {
                    2 => 100,
                    8 => 50,
                    _ => family.fill_percent(),
                };
                let table = table_of(buckets);
                let mut inserted = 0u32;
                while table
                    .insert(family.key(inserted), owner_of(inserted))
                    .is_ok()
                {
                    inserted += 1;
                }
                let slots = table.slots(family);
                assert!(
                    inserted as usize * 100 >= slots * percent,
                    "{family:?}, {buckets} buckets: first failure at {inserted} of {slots} slots"
                );
                assert_eq!(table.exact_len(), inserted as usize);
                assert_eq!(table.load(family), inserted as usize);
                table.assert_displaced_counts();
                for i in 0..inserted {
                    let found = table.lookup(&family.key(i));
                    assert_eq!(found, Lookup::Exact(owner_of(i)), "{family:?} key {i}");
                }
                assert_eq!(table.lookup(&family.key(inserted)), Lookup::Miss);
            }
        }
    }

    #[test]
    fn fills_to_capacity_with_any_seed() {
        let capacities: &[usize] = if cfg!(miri) {
            &[1, 9, 40]
        } else {
            &[1, 7, 8, 9, 13, 100, 1_000, 50_000]
        };
        for family in FAMILIES {
            for &capacity in capacities {
                for _ in 0..if cfg!(miri) { 1 } else { 4 } {
                    let table = BucketTable::with_capacity(capacity);
                    for i in 0..capacity as u32 {
                        let inserted = table.insert(family.key(i), owner_of(i));
                        assert_eq!(inserted, Ok(None), "{family:?} key {i}");
                    }
                    assert!(table.insert(family.key(capacity as u32), 0).is_err());
                    for i in 0..capacity as u32 {
                        assert_eq!(table.lookup(&family.key(i)), Lookup::Exact(owner_of(i)));
                    }
                }
            }
        }
    }

    /// Readers look up keys that stay in the table while a writer fills the layout past its
    /// expected fill level, which forces many cuckoo moves, some of them of the keys being read.
    #[test]
    fn keys_being_moved_are_never_missed() {
        const BUCKETS: usize = if cfg!(miri) { 4 } else { 64 };
        const PINNED: u32 = if cfg!(miri) { 8 } else { 100 };
        const ROUNDS: u32 = if cfg!(miri) { 2 } else { 20 };
        for family in FAMILIES {
            let table = table_of(BUCKETS);
            let pinned = PINNED.min(table.slots(family) as u32 / 2);
            for i in 0..pinned {
                table.insert(family.key(i), owner_of(i)).unwrap();
            }
            let done = AtomicBool::new(false);
            std::thread::scope(|scope| {
                let reader = scope.spawn(|| {
                    let keys: Vec<FlowKey> = (0..pinned).map(|i| family.key(i)).collect();
                    let mut hashes: Vec<u64> = keys.iter().map(FlowKey::hash).collect();
                    let mut out = vec![Lookup::Miss; keys.len()];
                    let mut passes = 0u64;
                    while !done.load(Ordering::Acquire) || passes < 4 {
                        // Both bulk paths, in turn.
                        if passes.is_multiple_of(2) {
                            table.lookup_bulk(&keys, &hashes, &mut out);
                        } else {
                            table.hash_lookup_bulk(&keys, &mut hashes, &mut out);
                        }
                        for (i, result) in out.iter().enumerate() {
                            let expected = Lookup::Exact(owner_of(i as u32));
                            assert_eq!(*result, expected, "{family:?} key {i}");
                        }
                        passes += 1;
                    }
                });
                for round in 0..ROUNDS {
                    let base = 1_000_000 * (round + 1);
                    let target =
                        (table.slots(family) * family.fill_percent() / 100) as u32 - pinned;
                    let mut added = Vec::new();
                    for i in base..base + target {
                        if table.insert(family.key(i), owner_of(i)).is_ok() {
                            added.push(i);
                        }
                    }
                    for i in added {
                        assert_eq!(table.remove(&family.key(i)), Some(owner_of(i)));
                    }
                }
                done.store(true, Ordering::Release);
                reader.join().unwrap();
            });
            assert_eq!(table.exact_len(), pinned as usize);
            table.assert_displaced_counts();
        }
    }
}
