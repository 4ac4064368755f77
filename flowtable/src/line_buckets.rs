//! The one-line bucket layout of [`crate::BucketTable`], which keeps its IPv4 rules: a key's
//! placement, locks and writes are `cuckoo`'s; this file is how a bucket keeps its slots and how
//! a bulk lookup reads them.
//!
//! A bucket is one 64-byte line, with nothing behind a pointer or in a second array:
//!
//! | words | content                                                                        |
//! |-------|--------------------------------------------------------------------------------|
//! | 0     | version (sequence lock) of the line                                            |
//! | 1     | owners of slots 0, 1, 2 (16 bits each, bits `16 * i`), displaced count (bits 48..64) |
//! | 2–7   | 3 slots of 16 bytes: an IPv4 key in `key`'s short form (two words)             |
//!
//! An empty slot has its second word 0, which no stored key has: the short form's second word is
//! the key's port-and-protocol word, whose protocol byte is 6 or 17. So the layout needs no
//! signatures: a probe compares its key with the three slots directly (six word compares, no
//! branch: the compares are ORed into a 3-bit mask and the owner is taken from the lane of its
//! lowest bit; which slot matched is random, so a branch on it mispredicts often, and a first
//! build with one was slower: BENCHMARKS.md, "flowtable: the bucket layouts").
//!
//! Why one line: a hit in the 8-slot layout of `wide_buckets` reads a head line, then (after its
//! signature match) a key line elsewhere; here it reads one line, the same line a miss reads.
//! A bulk lookup is two stages instead of three: (1) for every key of a chunk of 32, its hash
//! (computed here by `hash_lookup_bulk`, given by the caller to `lookup_bulk`), the primary
//! bucket and a prefetch of its line; (2) for every key, the read of the primary: version, the
//! three compares, the owner and displaced word, validation. A hit ends there, and so does a
//! miss whose primary has no displaced rule (then the listen rules answer); the others start
//! loading their secondary line and are listed for (3) the secondary's read, with the primary's
//! read still open, and the validation of both. A read that met a held lock or failed
//! validation is redone alone by the single-key search.
//!
//! Why hash in stage 1: at 1 Mi rules the lines come from the last-level cache or memory, and a
//! key's line starts loading as soon as that key is hashed, while the next keys hash; hashed
//! first by the caller, no line starts loading before the whole burst is hashed. The instructions
//! are the same either way; the time it saves is in BENCHMARKS.md, "flowtable: the bucket
//! layouts".
//!
//! The price is three slots per bucket where the wide layout has eight, so more rules sit in
//! their secondary at the same load: 13% at 67% (as many hits then read two lines), 2.4%
//! at 33%. `BucketTable` sizes this layout for 50% load at capacity at most
//! (`LINE_MAX_LOAD_PERCENT`; 25–50% after the rounding to a power of two buckets): 1 Mi rules
//! in 1 Mi lines, 64 MiB. Two-choice buckets of three slots with cuckoo moves still fill past
//! 90% before the first failure (test `cuckoo_fills_past_ninety_percent_in_both_layouts`).
//!
//! The displaced count is 16 bits wide: an insert or a cuckoo move that would put a 65 536th
//! rule of one primary into its secondary is refused as if both buckets were full (with 3-slot
//! buckets and a keyed hash, a count beyond a handful is not expected).
//!
//! Cost of a bulk lookup per key: the table of `BucketTable` (cache lines). Stage 1 keeps the
//! hash and a reference to the primary line of each key, so that stage 2 neither recomputes the
//! primary nor bounds-checks its index again, and works out the secondary only for the keys that
//! read it (the instructions each of these saves: BENCHMARKS.md, "flowtable: instructions per
//! lookup").
//!
//! Memory: 64 bytes per bucket, 21 per slot; on transparent huge pages from 32 Ki buckets (2 MiB)
//! on (`bucket_array`).

use std::sync::atomic::Ordering;

use crate::bucket_array::{prefetch, BucketArray, ZeroIsEmpty};
use crate::crc32c;
use crate::cuckoo::{Cuckoo, Placement, Store, Words};
use crate::key::{v4_from_short, v4_short, words_are_ipv6, FlowKey, ThreadId, SHORT_WORDS};
use crate::listen_table::ListenTable;
use crate::lookup::Lookup;
use crate::seqlock::{read_fence, AtomicU64, Version};

/// Slots per line.
const SLOTS: usize = 3;
/// Keys of one bulk-lookup chunk (prefetch distance).
const CHUNK: usize = 32;
// Stage 2 lists the keys left for the secondary by their index in the chunk, in a byte.
const _: () = assert!(CHUNK <= 256);
/// Bit position of the displaced count in the owner word.
const DISPLACED_SHIFT: u32 = 48;
const _: () = assert!(SLOTS * 16 <= DISPLACED_SHIFT as usize);

/// One bucket. Every word is read under `version` (see `seqlock`).
#[repr(C, align(64))]
struct Line {
    version: Version,
    /// Owner of slot `i` in bits `16 * i`; the displaced count in bits 48..64: rules whose
    /// primary is this bucket that sit in their secondary, changed only with both buckets'
    /// locks held, so a validated read that finds 0 and no equal key proves the key is in
    /// neither bucket.
    owners: AtomicU64,
    /// Slot `i`: a short-form key; word 1 is 0 when the slot is empty.
    keys: [[AtomicU64; SHORT_WORDS]; SLOTS],
}

const _: () = assert!(std::mem::size_of::<Line>() == 64);

#[cfg(loom)]
impl Line {
    fn new() -> Self {
        Line {
            version: Version::new(),
            owners: AtomicU64::new(0),
            keys: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }
}

// SAFETY: a Line is a Version (a transparent AtomicU64) and AtomicU64s; zero is a valid AtomicU64.
unsafe impl ZeroIsEmpty for Line {
    #[cfg(loom)]
    fn empty() -> Self {
        Line::new()
    }
}

impl Line {
    /// Bit `i` set where slot `i` holds `short`. Branch-free. Racy unless the lock is held or
    /// the read is validated afterwards.
    #[inline(always)]
    fn equal_slots(&self, short: &[u64; SHORT_WORDS]) -> u32 {
        let equal = |slot: usize| {
            let [first, second] = &self.keys[slot];
            u32::from(
                (first.load(Ordering::Relaxed) ^ short[0])
                    | (second.load(Ordering::Relaxed) ^ short[1])
                    == 0,
            )
        };
        equal(0) | (equal(1) << 1) | (equal(2) << 2)
    }

    #[inline(always)]
    fn prefetch(&self) {
        prefetch((self as *const Line).cast());
    }
}

/// The owner in `owners` (a [`Line::owners`] word) of the lowest slot of `slots` (not 0).
#[inline(always)]
fn owner_of(owners: u64, slots: u32) -> ThreadId {
    (owners >> (16 * (slots.trailing_zeros() & 3))) as ThreadId
}

/// The one-line layout: an array of [`Line`]s.
pub(crate) struct LineBuckets {
    lines: BucketArray<Line>,
}

impl Store for LineBuckets {
    const SLOTS: usize = SLOTS;

    fn zeroed(buckets: usize) -> Self {
        LineBuckets {
            lines: BucketArray::zeroed(buckets),
        }
    }

    fn buckets(&self) -> usize {
        self.lines.len()
    }

    fn version(&self, bucket: usize) -> &Version {
        &self.lines[bucket].version
    }

    fn occupied(&self, bucket: usize, slot: usize) -> bool {
        self.lines[bucket].keys[slot][1].load(Ordering::Relaxed) != 0
    }

    fn key(&self, bucket: usize, slot: usize) -> Words {
        let [first, second] = &self.lines[bucket].keys[slot];
        v4_from_short([
            first.load(Ordering::Relaxed),
            second.load(Ordering::Relaxed),
        ])
    }

    fn owner(&self, bucket: usize, slot: usize) -> ThreadId {
        (self.lines[bucket].owners.load(Ordering::Relaxed) >> (16 * slot)) as ThreadId
    }

    fn set_owner(&self, bucket: usize, slot: usize, owner: ThreadId) {
        let word = &self.lines[bucket].owners;
        let shift = 16 * slot;
        let old = word.load(Ordering::Relaxed);
        word.store(
            (old & !(0xFFFF << shift)) | (u64::from(owner) << shift),
            Ordering::Relaxed,
        );
    }

    fn write(&self, bucket: usize, slot: usize, words: &Words, _sig: u16, owner: ThreadId) {
        debug_assert!(!words_are_ipv6(words), "an IPv6 key in the IPv4 layout");
        let short = v4_short(words);
        debug_assert!(short[1] != 0, "a key whose second short word is 0");
        let [first, second] = &self.lines[bucket].keys[slot];
        first.store(short[0], Ordering::Relaxed);
        second.store(short[1], Ordering::Relaxed);
        self.set_owner(bucket, slot, owner);
    }

    fn clear(&self, bucket: usize, slot: usize) {
        let [first, second] = &self.lines[bucket].keys[slot];
        second.store(0, Ordering::Relaxed);
        first.store(0, Ordering::Relaxed);
    }

    #[inline]
    fn find(&self, bucket: usize, words: &Words, _sig: u16) -> Option<usize> {
        let slots = self.lines[bucket].equal_slots(&v4_short(words));
        (slots != 0).then(|| slots.trailing_zeros() as usize)
    }

    fn displaced(&self, bucket: usize) -> u64 {
        self.lines[bucket].owners.load(Ordering::Relaxed) >> DISPLACED_SHIFT
    }

    fn displaced_has_room(&self, bucket: usize) -> bool {
        self.displaced(bucket) < u64::MAX >> DISPLACED_SHIFT
    }

    fn add_displaced(&self, bucket: usize, delta: i64) {
        let word = &self.lines[bucket].owners;
        let old = word.load(Ordering::Relaxed);
        // The callers keep the count in 0..=0xFFFF (`displaced_has_room`), so the addition never
        // carries out of the field nor borrows from the owners below it.
        word.store(
            old.wrapping_add_signed(delta << DISPLACED_SHIFT),
            Ordering::Relaxed,
        );
    }

    fn on_huge_pages(&self) -> bool {
        self.lines.on_huge_pages()
    }
}

/// The open read of a key's primary line in a bulk lookup that goes on to the secondary: the
/// primary's version when the read began, or [`DISTURBED`].
type Probe = u64;

/// A [`Probe`] that no version equals (versions of open reads are even): a writer held the
/// primary or changed it, and `search` reads the key from scratch.
const DISTURBED: Probe = 1;

impl Cuckoo<LineBuckets> {
    /// Looks up `keys` (IPv4 only) into `out`, the misses in `listen`, with the caller's
    /// `hashes`; see the module documentation for the stages. As
    /// [`crate::FlowTable::lookup_bulk`], only the first `min` of the three lengths are looked up.
    pub(crate) fn lookup_bulk(
        &self,
        keys: &[FlowKey],
        hashes: &[u64],
        out: &mut [Lookup],
        listen: &ListenTable,
    ) {
        let count = keys.len().min(hashes.len()).min(out.len());
        let hashes = &hashes[..count];
        self.lookup_chunks(&keys[..count], &mut out[..count], listen, |index, _| {
            hashes[index]
        });
    }

    /// [`Cuckoo::lookup_bulk`] hashing each key into `hashes` in stage 1, just before the
    /// prefetch of its line, so that the lines load while the next keys hash.
    pub(crate) fn hash_lookup_bulk(
        &self,
        keys: &[FlowKey],
        hashes: &mut [u64],
        out: &mut [Lookup],
        listen: &ListenTable,
    ) {
        match crc32c::Instruction::detect() {
            Some(instruction) => self.hash_lookup_by(keys, hashes, out, listen, instruction),
            None => self.hash_lookup_by(keys, hashes, out, listen, crc32c::Portable),
        }
    }

    /// [`Cuckoo::hash_lookup_bulk`] by one CRC path for the whole burst.
    #[inline(always)]
    fn hash_lookup_by(
        &self,
        keys: &[FlowKey],
        hashes: &mut [u64],
        out: &mut [Lookup],
        listen: &ListenTable,
        lanes: impl crc32c::Lanes,
    ) {
        let count = keys.len().min(hashes.len()).min(out.len());
        let hashes = &mut hashes[..count];
        self.lookup_chunks(&keys[..count], &mut out[..count], listen, |index, key| {
            let hash = key.hash_by(lanes);
            hashes[index] = hash;
            hash
        });
    }

    /// The stages over `keys` (as long as `out`) in chunks of [`CHUNK`]; `hash_of(i, key)` is
    /// the hash of `keys[i]`, asked once per key, in order, in stage 1.
    #[inline(always)]
    fn lookup_chunks(
        &self,
        keys: &[FlowKey],
        out: &mut [Lookup],
        listen: &ListenTable,
        mut hash_of: impl FnMut(usize, &FlowKey) -> u64,
    ) {
        debug_assert_eq!(keys.len(), out.len());
        // A slice in registers: the array's pointer and length are not reloaded after every
        // fence.
        let lines: &[Line] = &self.store.lines;
        // Never taken: a bucket array is never empty (`BucketArray::zeroed`).
        let Some(first) = lines.first() else {
            return;
        };
        let mut hashes = [0u64; CHUNK];
        // The primary lines themselves, not their indices: stage 2 reads them with no second
        // bounds check.
        let mut primaries = [first; CHUNK];
        let mut probes = [DISTURBED; CHUNK];
        let mut rest = [0u8; CHUNK];
        let count = keys.len().min(out.len());
        for start in (0..count).step_by(CHUNK) {
            let len = CHUNK.min(count - start);
            let keys = &keys[start..start + len];
            let out = &mut out[start..start + len];
            // 1: the hash and the primary of every key; start loading the primary lines. The
            // rest of the placement waits for the few keys that read their secondary.
            for index in 0..len {
                hashes[index] = hash_of(start + index, &keys[index]);
                primaries[index] = &lines[self.primary(self.mix(hashes[index]))];
                primaries[index].prefetch();
            }
            // 2: every key's read of its primary. Hits end here, and so do the misses whose
            // primary has no displaced rule.
            let mut rest_len = 0;
            for index in 0..len {
                let key = &keys[index];
                debug_assert!(!key.is_ipv6(), "an IPv6 key in the IPv4 layout");
                let line = primaries[index];
                let probe = match line.version.read_begin() {
                    Some(version) => {
                        let slots = line.equal_slots(&v4_short(key.words()));
                        let owners = line.owners.load(Ordering::Relaxed);
                        read_fence();
                        let unchanged = line.version.unchanged_since(version);
                        if unchanged && slots != 0 {
                            out[index] = Lookup::Exact(owner_of(owners, slots));
                            continue;
                        }
                        if unchanged && owners >> DISPLACED_SHIFT == 0 {
                            out[index] = listen.lookup(key, hashes[index]);
                            continue;
                        }
                        if unchanged {
                            version
                        } else {
                            DISTURBED
                        }
                    }
                    None => DISTURBED,
                };
                if probe != DISTURBED {
                    lines[self.place(hashes[index], false).secondary].prefetch();
                }
                probes[rest_len] = probe;
                rest[rest_len] = index as u8;
                rest_len += 1;
            }
            // 3: the secondary's read for the keys absent from a primary with displaced rules,
            // with the primary's read still open, and the validation of both; a read a writer
            // disturbed is redone alone.
            for (&index, probe) in rest[..rest_len].iter().zip(&probes[..rest_len]) {
                let index = usize::from(index);
                let key = &keys[index];
                let place = self.place(hashes[index], false);
                let exact = self
                    .read_secondary(lines, primaries[index], key, place, *probe)
                    .unwrap_or_else(|| self.search(key.words(), place));
                out[index] = match exact {
                    Some(owner) => Lookup::Exact(owner),
                    None => listen.lookup(key, hashes[index]),
                };
            }
        }
    }

    /// Stage 3 for one key: `None` when a writer intervened in either read.
    #[inline]
    fn read_secondary(
        &self,
        lines: &[Line],
        primary: &Line,
        key: &FlowKey,
        place: Placement,
        probe: Probe,
    ) -> Option<Option<ThreadId>> {
        let secondary = &lines[place.secondary];
        let version = secondary
            .version
            .read_begin()
            .filter(|_| probe != DISTURBED)?;
        let slots = secondary.equal_slots(&v4_short(key.words()));
        let owners = secondary.owners.load(Ordering::Relaxed);
        read_fence();
        (primary.version.unchanged_since(probe) && secondary.version.unchanged_since(version))
            .then(|| (slots != 0).then(|| owner_of(owners, slots)))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn no_stored_key_looks_empty() {
        use crate::key::Proto;
        for proto in [Proto::Tcp, Proto::Udp] {
            for (local, remote) in [(0, 0), (0, 65_535), (65_535, 0)] {
                let key = FlowKey::from_v4_bytes(proto, [0, 0, 0, 0], local, [0, 0, 0, 0], remote);
                assert_ne!(v4_short(key.words())[1], 0, "{key}");
            }
        }
    }

    #[test]
    fn the_owner_of_the_lowest_equal_slot_is_taken() {
        let owners = 7 | (8 << 16) | (9 << 32) | (5 << DISPLACED_SHIFT);
        assert_eq!(owner_of(owners, 0b001), 7);
        assert_eq!(owner_of(owners, 0b010), 8);
        assert_eq!(owner_of(owners, 0b100), 9);
        assert_eq!(owner_of(owners, 0b110), 8);
    }

    #[test]
    fn the_displaced_count_stops_short_of_its_field() {
        let store = LineBuckets::zeroed(2);
        store.set_owner(0, 2, ThreadId::MAX);
        store.add_displaced(0, i64::from(u16::MAX) - 1);
        assert!(store.displaced_has_room(0));
        store.add_displaced(0, 1);
        assert_eq!(store.displaced(0), u64::from(u16::MAX));
        assert!(!store.displaced_has_room(0));
        assert_eq!(
            store.owner(0, 2),
            ThreadId::MAX,
            "the owners below are intact"
        );
        store.add_displaced(0, -1);
        assert!(store.displaced_has_room(0));
        assert_eq!(store.displaced(0), u64::from(u16::MAX) - 1);
        assert_eq!(store.owner(0, 2), ThreadId::MAX);
    }
}
