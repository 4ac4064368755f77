//! The 8-slot bucket layout of [`crate::BucketTable`], which keeps its IPv6 rules: a key's
//! placement, locks and writes are `cuckoo`'s; this file is how a bucket keeps its slots and how
//! a bulk lookup reads them.
//!
//! A fixed number of buckets, each split over two parallel arrays indexed by the bucket number:
//!
//! | array   | per bucket                                                                           |
//! |---------|--------------------------------------------------------------------------------------|
//! | `heads` | 1 line: version (sequence lock), 8 × 16-bit signatures (0 = empty slot), 8 × 16-bit owners, displaced count |
//! | `keys`  | 5 lines: 8 slots of 40 bytes, an IPv6 key in all five [`FlowKey`] words, an IPv4 key in its 16-byte short form in one line; guarded by the head's version |
//!
//! The heads are dense (64 bytes apart) because a probe reads a head first and a key only after a
//! signature match: a miss reads heads only, and the heads of 1 Mi rules span 16 MiB, where heads
//! interleaved with their keys in 384-byte buckets spread over 96 MiB. The split pays off only
//! together with primary-first placement (`cuckoo`), which lets most hits read one head and one
//! key block: a key block is a page of its own, where an interleaved bucket's keys share its
//! head's page, so with lookups that read both heads the split alone made 1 Mi-rule hits slower
//! (BENCHMARKS.md, "flowtable: the bucket layouts"). The layout can store IPv4 keys too, in two
//! words (`key`'s short form) at the first 16-byte-aligned pair of their slot, so that an IPv4
//! key reads one key line; [`crate::BucketTable`] gives them the one-line layout of
//! `line_buckets` instead, and this one holds them only in its own tests.
//! The signature's low bit is the key's family, so a lookup compares only slots of its own form
//! and a writer moving a key knows which form to read. Keys are stored inline in their block, not behind pointers: a removed or moved entry is
//! overwritten in place and nothing is ever freed while a reader may look at it, so no memory
//! reclamation (epochs, hazard pointers, quiescent states) is needed. Every shared word is an
//! atomic that stays valid for the table's lifetime.
//!
//! Bulk lookup works in chunks of 32, in stages that each start the memory loads the next needs:
//! (1) bucket indices for every key from the given hashes, and a prefetch of the primary heads;
//! (2) for every key, the start of the primary's read: version, the slots whose signature matches
//! (one branch-free SSE2 compare of the eight 16-bit lanes, as rte_hash does; a SWAR compare off
//! x86-64), and a prefetch of the key lines the matches point at, or, with no match, the
//! displaced count and, when it is not 0, a prefetch of the secondary head; (3) for every key,
//! the primary's key compares: hits end here, and so do misses whose primary has no displaced
//! rule (then the listen rules answer, `listen_table`, whose port filter ends them at once when
//! no rule exists for the flow's local port); the other keys are listed for (4) the secondary's
//! read and compares, the validation of both reads, and the listen rules for exact misses. A key
//! whose primary had a signature collision starts loading its secondary head in stage 3, and the
//! key lines of a rule in its secondary are not prefetched (1% of the rules at 50% load). Reads
//! stay open across the stages, which only widens the window in which a writer makes one retry;
//! a read that fails validation or met a held lock is redone alone by the single-key search.
//! Stage 1 prefetches the primary heads only, not both heads as rte_hash's bulk lookup does:
//! prefetching both adds a line per hit, and at 1 Mi rules the extra 32 loads in flight stalled
//! stage 1 rather than hiding the secondary's, which made misses slower too (tried and dropped:
//! BENCHMARKS.md, "Earlier: dense heads, primary-first lookup, huge-page heads").
//!
//! Cost of a bulk lookup per key: no allocation, no lock, no store to shared memory, and
//!
//! | outcome                                   | cache lines read                                   |
//! |-------------------------------------------|----------------------------------------------------|
//! | hit, in the primary (99% at 50% load)     | 1 head, 1 key line (IPv4) or 1–2 (IPv6)            |
//! | hit, in the secondary                     | 2 heads, the same key lines per signature match    |
//! | miss, no listen rule on the local port    | 1 head (2 if the primary has a displaced rule), 1 filter word (+ a key line on a 15-bit signature collision) |
//! | miss to a listened port (a new connection) | as above + the listen version and 1–2 slot lines  |
//!
//! The instructions of each outcome, counted with IPv4 keys when this layout held them, and how
//! each step of the design above changed them, are in BENCHMARKS.md, "flowtable: instructions
//! per lookup".
//!
//! Memory: 384 bytes per bucket (a 64-byte head and a 320-byte key block), 48 bytes per slot. A
//! head array of 2 MiB or more (32 Ki buckets) lives on transparent huge pages (`bucket_array`),
//! and so does a key array of 2 MiB or more (8 Ki buckets): every lookup reads a head and a key
//! line at random places, and on 4 KiB pages nearly every one costs a page walk (what the key
//! blocks' huge pages saved: BENCHMARKS.md, "flowtable: the bucket layouts").

use std::sync::atomic::Ordering;

use crate::bucket_array::{prefetch, BucketArray, ZeroIsEmpty};
use crate::cuckoo::{Cuckoo, Placement, Store, Words};
use crate::key::{v4_from_short, v4_short, words_are_ipv6, FlowKey, ThreadId, SHORT_WORDS};
use crate::listen_table::ListenTable;
use crate::lookup::Lookup;
use crate::seqlock::{read_fence, AtomicU64, Version};

/// Slots per bucket.
pub(crate) const SLOTS: usize = 8;
const KEY_WORDS: usize = 5;
// Slot `i` starts at word `5 * i`, which alternates between even and odd: see `short_index`.
const _: () = assert!(KEY_WORDS % 2 == 1 && KEY_WORDS > SHORT_WORDS);
/// Keys of one bulk-lookup chunk (prefetch distance).
const CHUNK: usize = 32;
// Stage 3 lists the keys left for the secondary by their index in the chunk, in a byte.
const _: () = assert!(CHUNK <= 256);
const LANE_ONES: u64 = 0x0001_0001_0001_0001;
const LANE_LOWS: u64 = 0x7FFF_7FFF_7FFF_7FFF;
/// Gathers bits 0, 16, 32 and 48 into bits 45..49 (lane `i` to bit `45 + i`); no other partial
/// product lands there or carries into it.
const LANE_GATHER: u64 = 1 | (1 << 15) | (1 << 30) | (1 << 45);

/// The line every probe reads: the version that guards the bucket (this line and the bucket's
/// [`KeyBlock`]), and the slots' signatures and owners.
#[repr(C, align(64))]
struct Head {
    version: Version,
    /// Signature of slot `i` in bits `16 * (i % 4)` of word `i / 4`; 0 marks an empty slot.
    sigs: [AtomicU64; 2],
    /// Owner of slot `i`, packed like the signatures.
    owners: [AtomicU64; 2],
    /// Rules whose primary bucket is this one that sit in their secondary. Changed only with
    /// both buckets' locks held, so a validated read of this head that finds 0 and no matching
    /// signature proves the key is in neither bucket: most misses read one head.
    displaced: AtomicU64,
}

/// The keys of one bucket in 40-byte slots, slot `i` in words `5 * i..5 * i + 5`. An IPv6 key
/// fills its slot; an IPv4 key is stored in its two-word short form ([`v4_short`]) at the slot's
/// first 16-byte-aligned word pair ([`short_index`]), which lies in one cache line in every slot,
/// where a 40-byte key spans two lines in half the slots. A slot's form is its signature's low
/// bit, the key's family ([`Cuckoo::place`]). Read only after a signature match, under the
/// version of the bucket's [`Head`].
#[repr(C, align(64))]
struct KeyBlock {
    words: [AtomicU64; SLOTS * KEY_WORDS],
}

/// The first word of the short form of an IPv4 key in `slot`: the slot's first even word, so
/// that the pair is 16-byte aligned in the 64-byte-aligned block and never crosses a line.
#[inline(always)]
fn short_index(slot: usize) -> usize {
    KEY_WORDS * slot + (slot & 1)
}

/// True when a slot with signature `sig` holds an IPv6 key (see [`Cuckoo::place`]).
#[inline(always)]
fn sig_is_ipv6(sig: u16) -> bool {
    sig & 1 != 0
}

const _: () = assert!(std::mem::size_of::<Head>() == 64);
const _: () = assert!(std::mem::size_of::<KeyBlock>() == 320);

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

/// Bit `i` set exactly where slot `i`'s signature equals `sig`. Branch-free. On x86-64, SSE2 (part
/// of the baseline): one 8-lane 16-bit compare, a saturating pack of the lane masks to bytes and a
/// byte-sign gather, as rte_hash compares its signatures.
#[cfg(target_arch = "x86_64")]
#[inline]
fn sig_matches(sigs: [u64; 2], sig: u16) -> u32 {
    use core::arch::x86_64::{
        _mm_cmpeq_epi16, _mm_movemask_epi8, _mm_packs_epi16, _mm_set1_epi16, _mm_set_epi64x,
    };
    // SAFETY: register-only SSE2 operations (no memory access); SSE2 is part of the x86-64
    // baseline, so the target feature they require is always present.
    unsafe {
        let lanes = _mm_set_epi64x(sigs[1] as i64, sigs[0] as i64);
        let equal = _mm_cmpeq_epi16(lanes, _mm_set1_epi16(sig as i16));
        // Equal lanes are -1, the others 0: the signed saturating pack keeps them -1 and 0 as
        // bytes, and the byte signs are the slot bits (the upper 8 repeat the lower).
        (_mm_movemask_epi8(_mm_packs_epi16(equal, equal)) & 0xFF) as u32
    }
}

/// Bit `i` set exactly where slot `i`'s signature equals `sig`. Branch-free: per word, an exact
/// SWAR zero-lane test (no borrow between lanes, so no false candidates) and a multiply that
/// gathers the four lane flags into four adjacent bits.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn sig_matches(sigs: [u64; 2], sig: u16) -> u32 {
    sig_matches_swar(sigs, sig)
}

/// The portable form of [`sig_matches`], also the reference its tests check the SSE2 form with.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline]
fn sig_matches_swar(sigs: [u64; 2], sig: u16) -> u32 {
    let pattern = u64::from(sig) * LANE_ONES;
    let lanes = |word: u64| -> u32 {
        let x = word ^ pattern;
        // Bit 15 of a lane is set iff the lane is zero: adding 0x7FFF to the low 15 bits carries
        // into bit 15 iff they are non-zero, and never past it.
        let zero = !(((x & LANE_LOWS) + LANE_LOWS) | x | LANE_LOWS);
        (((zero >> 15).wrapping_mul(LANE_GATHER) >> 45) & 0xF) as u32
    };
    lanes(sigs[0]) | (lanes(sigs[1]) << 4)
}

/// The open read of a key's primary bucket in a bulk lookup, from stage 2 to the end, so that
/// its version and signatures are loaded once.
#[derive(Clone, Copy, Default)]
struct Probe {
    /// The primary's version when the read began; meaningless unless `begun`.
    version: u64,
    /// Slots of the primary whose signature matched.
    candidates: u8,
    /// Read only when no signature matched (hits skip it): the primary's displaced count was
    /// not 0, so the key, not in the primary, may be in the secondary.
    displaced: bool,
    /// False when a writer held the primary or changed it: `search` reads the key from scratch.
    begun: bool,
}

/// What stage 3 of a bulk lookup learned from a key's primary bucket.
enum PrimaryRead {
    /// The key, with this owner, in a validated read.
    Found(ThreadId),
    /// In neither bucket, in a validated read of the primary alone: not there, and no rule of
    /// the primary displaced to a secondary.
    Missing,
    /// Not in the primary (validated later, with the secondary).
    Absent,
    /// A writer was or is in the primary: the key takes the single-key path.
    Disturbed,
}

#[cfg(loom)]
impl Head {
    fn new() -> Self {
        Head {
            version: Version::new(),
            sigs: std::array::from_fn(|_| AtomicU64::new(0)),
            owners: std::array::from_fn(|_| AtomicU64::new(0)),
            displaced: AtomicU64::new(0),
        }
    }
}

#[cfg(loom)]
impl KeyBlock {
    fn new() -> Self {
        KeyBlock {
            words: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Head {
    #[inline]
    fn sig_words(&self) -> [u64; 2] {
        [
            self.sigs[0].load(Ordering::Relaxed),
            self.sigs[1].load(Ordering::Relaxed),
        ]
    }

    #[inline]
    fn prefetch(&self) {
        prefetch(self as *const Head as *const u8);
    }

    /// Racy unless the lock is held or the read is validated afterwards.
    #[inline]
    fn has_displaced(&self) -> bool {
        self.displaced.load(Ordering::Relaxed) != 0
    }

    /// Writer only, with the locks of this bucket and of the secondary concerned held.
    fn add_displaced(&self, delta: i64) {
        let count = self.displaced.load(Ordering::Relaxed);
        self.displaced
            .store(count.wrapping_add_signed(delta), Ordering::Relaxed);
    }
}

impl KeyBlock {
    #[inline(always)]
    fn word(&self, index: usize) -> u64 {
        self.words[index].load(Ordering::Relaxed)
    }

    #[inline(always)]
    fn address(&self, index: usize) -> *const u8 {
        (&self.words[index] as *const AtomicU64).cast()
    }

    #[inline]
    fn full_equals(&self, slot: usize, words: &[u64; KEY_WORDS]) -> bool {
        let at = KEY_WORDS * slot;
        // Non-short-circuit: five independent loads the core can issue together.
        (self.word(at) ^ words[0])
            | (self.word(at + 1) ^ words[1])
            | (self.word(at + 2) ^ words[2])
            | (self.word(at + 3) ^ words[3])
            | (self.word(at + 4) ^ words[4])
            == 0
    }

    #[inline]
    fn short_equals(&self, slot: usize, short: &[u64; SHORT_WORDS]) -> bool {
        let at = short_index(slot);
        (self.word(at) ^ short[0]) | (self.word(at + 1) ^ short[1]) == 0
    }

    /// The key in `slot`, stored in the form `ipv6` says.
    fn key(&self, slot: usize, ipv6: bool) -> [u64; KEY_WORDS] {
        if ipv6 {
            std::array::from_fn(|w| self.word(KEY_WORDS * slot + w))
        } else {
            let at = short_index(slot);
            v4_from_short([self.word(at), self.word(at + 1)])
        }
    }

    /// Writer only (bucket lock held): stores `words` in `slot` in its family's form.
    fn write(&self, slot: usize, words: &[u64; KEY_WORDS]) {
        let (at, stored) = if words_are_ipv6(words) {
            (KEY_WORDS * slot, &words[..])
        } else {
            (short_index(slot), &v4_short(words)[..])
        };
        for (index, word) in (at..).zip(stored) {
            self.words[index].store(*word, Ordering::Relaxed);
        }
    }

    /// The first slot of `candidates` (bit `i` = slot `i`, signatures of `words`' family) that
    /// holds `words`. Racy unless the bucket's lock is held or the read is validated afterwards.
    #[inline]
    fn first_equal(&self, mut candidates: u32, words: &[u64; KEY_WORDS]) -> Option<usize> {
        let ipv6 = words_are_ipv6(words);
        let short = v4_short(words);
        while candidates != 0 {
            let slot = candidates.trailing_zeros() as usize;
            candidates &= candidates - 1;
            let equal = if ipv6 {
                self.full_equals(slot, words)
            } else {
                self.short_equals(slot, &short)
            };
            if equal {
                return Some(slot);
            }
        }
        None
    }

    /// Prefetches the line of each IPv4 slot of `candidates`, or the one or two lines each IPv6
    /// slot spans.
    #[inline]
    fn prefetch_keys(&self, mut candidates: u32, ipv6: bool) {
        while candidates != 0 {
            let slot = candidates.trailing_zeros() as usize;
            candidates &= candidates - 1;
            if ipv6 {
                let first = self.address(KEY_WORDS * slot);
                prefetch(first);
                prefetch(first.wrapping_add(KEY_WORDS * 8 - 1));
            } else {
                prefetch(self.address(short_index(slot)));
            }
        }
    }
}

/// The 8-slot layout: a head array and a key-block array, indexed by the bucket number.
pub(crate) struct WideBuckets {
    heads: BucketArray<Head>,
    /// `keys[i]` holds the keys of bucket `i`; same length as `heads`.
    keys: BucketArray<KeyBlock>,
}

impl WideBuckets {
    /// Whether the heads and the key blocks lie on memory advised for transparent huge pages
    /// (heads: at least 32 Ki buckets; keys: 8 Ki; on Linux, with the kernel's consent).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn arrays_on_huge_pages(&self) -> (bool, bool) {
        (self.heads.on_huge_pages(), self.keys.on_huge_pages())
    }
}

impl Store for WideBuckets {
    const SLOTS: usize = SLOTS;

    fn zeroed(buckets: usize) -> Self {
        WideBuckets {
            heads: BucketArray::zeroed(buckets),
            keys: BucketArray::zeroed(buckets),
        }
    }

    fn buckets(&self) -> usize {
        self.heads.len()
    }

    fn version(&self, bucket: usize) -> &Version {
        &self.heads[bucket].version
    }

    fn occupied(&self, bucket: usize, slot: usize) -> bool {
        lane(&self.heads[bucket].sigs, slot) != 0
    }

    fn key(&self, bucket: usize, slot: usize) -> Words {
        let ipv6 = sig_is_ipv6(lane(&self.heads[bucket].sigs, slot));
        self.keys[bucket].key(slot, ipv6)
    }

    fn owner(&self, bucket: usize, slot: usize) -> ThreadId {
        lane(&self.heads[bucket].owners, slot)
    }

    fn set_owner(&self, bucket: usize, slot: usize, owner: ThreadId) {
        set_lane(&self.heads[bucket].owners, slot, owner);
    }

    /// The signature goes last, though the held version already hides the partial state from
    /// readers.
    fn write(&self, bucket: usize, slot: usize, words: &Words, sig: u16, owner: ThreadId) {
        let head = &self.heads[bucket];
        self.keys[bucket].write(slot, words);
        set_lane(&head.owners, slot, owner);
        set_lane(&head.sigs, slot, sig);
    }

    /// Clears the signature only: the stale key words are never compared again.
    fn clear(&self, bucket: usize, slot: usize) {
        set_lane(&self.heads[bucket].sigs, slot, 0);
    }

    #[inline]
    fn find(&self, bucket: usize, words: &Words, sig: u16) -> Option<usize> {
        self.keys[bucket].first_equal(sig_matches(self.heads[bucket].sig_words(), sig), words)
    }

    fn displaced(&self, bucket: usize) -> u64 {
        self.heads[bucket].displaced.load(Ordering::Relaxed)
    }

    fn displaced_has_room(&self, _bucket: usize) -> bool {
        // A 64-bit count cannot reach its limit: it is at most the number of rules.
        true
    }

    fn add_displaced(&self, bucket: usize, delta: i64) {
        self.heads[bucket].add_displaced(delta);
    }

    fn on_huge_pages(&self) -> bool {
        self.heads.on_huge_pages() && self.keys.on_huge_pages()
    }
}

/// A key's two buckets as a lookup reads them: the primary head resolved once per bulk lookup
/// (one bounds check and address computation, however many stages read it); the secondary head
/// and the key blocks only when a stage needs them (1% of the hits read the secondary).
#[derive(Clone, Copy)]
struct Pair<'a> {
    primary: &'a Head,
    place: Placement,
}

impl Cuckoo<WideBuckets> {
    #[inline(always)]
    fn pair(&self, place: Placement) -> Pair<'_> {
        Pair {
            primary: &self.store.heads[place.primary],
            place,
        }
    }

    /// Stage 2 of a bulk lookup for one key: begins the read of its primary bucket, records the
    /// signature matches and prefetches the key lines they point at, or, with no match (the key
    /// is not in the primary), the secondary's head, which stage 4 will read if some rule of
    /// this primary is displaced there.
    #[inline]
    fn probe_primary(&self, pair: Pair<'_>) -> Probe {
        let primary = pair.primary;
        let Some(version) = primary.version.read_begin() else {
            return Probe::default();
        };
        let candidates = sig_matches(primary.sig_words(), pair.place.sig);
        // Hits, which nearly always have candidates, skip the displaced count.
        let displaced = candidates == 0 && primary.has_displaced();
        if candidates != 0 {
            self.store.keys[pair.place.primary]
                .prefetch_keys(candidates, sig_is_ipv6(pair.place.sig));
        } else if displaced {
            self.store.heads[pair.place.secondary].prefetch();
        }
        Probe {
            version,
            candidates: candidates as u8,
            displaced,
            begun: true,
        }
    }

    /// Stage 3 of a bulk lookup for one key: the key compares of the primary's read. A key found
    /// there is done once the primary's version validates (a one-bucket read); the others go on
    /// to the secondary with the primary's read still open.
    #[inline]
    fn finish_primary(
        &self,
        words: &[u64; KEY_WORDS],
        pair: Pair<'_>,
        probe: Probe,
    ) -> PrimaryRead {
        if !probe.begun {
            return PrimaryRead::Disturbed;
        }
        let (found, displaced) = if probe.candidates == 0 {
            (None, probe.displaced)
        } else {
            let found = self.store.keys[pair.place.primary]
                .first_equal(u32::from(probe.candidates), words)
                .map(|slot| lane(&pair.primary.owners, slot));
            // A signature collision: the count is read now, inside the primary's open read
            // (validated below or in stage 4), and stage 2 did not start loading the secondary.
            let displaced = found.is_none() && pair.primary.has_displaced();
            if displaced {
                self.store.heads[pair.place.secondary].prefetch();
            }
            (found, displaced)
        };
        if found.is_none() && displaced {
            return PrimaryRead::Absent;
        }
        read_fence();
        match found {
            _ if !pair.primary.version.unchanged_since(probe.version) => PrimaryRead::Disturbed,
            Some(owner) => PrimaryRead::Found(owner),
            None => PrimaryRead::Missing,
        }
    }

    /// Stage 4 of a bulk lookup for a key absent from its primary, some of whose rules are
    /// displaced: the secondary's read (the primary's is still open), its key compares, and the
    /// validation of both reads. `None` when a writer intervened and the read must be redone (by
    /// `search`).
    #[inline]
    fn read_secondary(
        &self,
        words: &[u64; KEY_WORDS],
        pair: Pair<'_>,
        probe: Probe,
    ) -> Option<Option<ThreadId>> {
        let secondary = &self.store.heads[pair.place.secondary];
        let version = secondary.version.read_begin().filter(|_| probe.begun)?;
        let candidates = sig_matches(secondary.sig_words(), pair.place.sig);
        let found = if candidates == 0 {
            None
        } else {
            self.store.keys[pair.place.secondary]
                .first_equal(candidates, words)
                .map(|slot| lane(&secondary.owners, slot))
        };
        read_fence();
        (pair.primary.version.unchanged_since(probe.version)
            && secondary.version.unchanged_since(version))
        .then_some(found)
    }

    /// Looks up `keys` (of either family) into `out`, the misses in `listen`, in chunks of
    /// [`CHUNK`]; see the module documentation for the stages. As
    /// [`crate::FlowTable::lookup_bulk`], only the first `min` of the three lengths are looked up.
    pub(crate) fn lookup_bulk(
        &self,
        keys: &[FlowKey],
        hashes: &[u64],
        out: &mut [Lookup],
        listen: &ListenTable,
    ) {
        let count = keys.len().min(hashes.len()).min(out.len());
        let mut pairs = [self.pair(Placement::default()); CHUNK];
        let mut probes = [Probe::default(); CHUNK];
        for start in (0..count).step_by(CHUNK) {
            let end = (start + CHUNK).min(count);
            let keys = &keys[start..end];
            let hashes = &hashes[start..end];
            let out = &mut out[start..end];
            let pairs = &mut pairs[..end - start];
            let probes = &mut probes[..end - start];
            // 1: where every key may be; start loading the primary heads.
            for ((pair, &hash), key) in pairs.iter_mut().zip(hashes).zip(keys) {
                *pair = self.pair(self.place(hash, key.is_ipv6()));
                pair.primary.prefetch();
            }
            // 2: begin every key's read of its primary: version and signature matches; start
            // loading the key lines that may hold a match, or else the secondary head.
            for (probe, pair) in probes.iter_mut().zip(pairs.iter()) {
                *probe = self.probe_primary(*pair);
            }
            // 3: the primary's compares. Most rules sit in their primary bucket, so most hits
            // end here, having read one bucket, and so do the misses whose primary has no
            // displaced rule (then the listen rules answer).
            let mut rest = [0u8; CHUNK];
            let mut rest_len = 0;
            for (index, (((key, pair), probe), slot)) in keys
                .iter()
                .zip(pairs.iter())
                .zip(probes.iter_mut())
                .zip(out.iter_mut())
                .enumerate()
            {
                match self.finish_primary(key.words(), *pair, *probe) {
                    PrimaryRead::Found(owner) => {
                        *slot = Lookup::Exact(owner);
                        continue;
                    }
                    PrimaryRead::Missing => {
                        *slot = listen.lookup(key, hashes[index]);
                        continue;
                    }
                    PrimaryRead::Absent => {}
                    PrimaryRead::Disturbed => probe.begun = false,
                }
                rest[rest_len] = index as u8;
                rest_len += 1;
            }
            // 4: the secondary's read for the other keys absent from their primary, the
            // validation of both reads (a read a writer disturbed is redone alone), then the
            // listen rules for exact misses.
            for &index in &rest[..rest_len] {
                let index = usize::from(index);
                let key = &keys[index];
                let words = key.words();
                let pair = pairs[index];
                let exact = self
                    .read_secondary(words, pair, probes[index])
                    .unwrap_or_else(|| self.search(words, pair.place));
                out[index] = match exact {
                    Some(owner) => Lookup::Exact(owner),
                    None => listen.lookup(key, hashes[index]),
                };
            }
        }
    }
}

// SAFETY: a Head is a Version (a transparent AtomicU64) and AtomicU64s; zero is a valid AtomicU64.
unsafe impl ZeroIsEmpty for Head {
    #[cfg(loom)]
    fn empty() -> Self {
        Head::new()
    }
}

// SAFETY: a KeyBlock is AtomicU64s only; zero is a valid AtomicU64.
unsafe impl ZeroIsEmpty for KeyBlock {
    #[cfg(loom)]
    fn empty() -> Self {
        KeyBlock::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::cuckoo::{Budget, Reservations};
    use crate::test_keys::{key, mixed_key};

    #[test]
    fn every_short_form_lies_in_one_line_inside_its_slot() {
        for slot in 0..SLOTS {
            let (first, last) = (short_index(slot), short_index(slot) + SHORT_WORDS - 1);
            assert!(
                first >= KEY_WORDS * slot && last < KEY_WORDS * (slot + 1),
                "slot {slot}"
            );
            assert_eq!(first * 8 / 64, last * 8 / 64, "slot {slot} crosses a line");
        }
    }

    /// One bucket holds IPv4 keys in their short form and IPv6 keys in full, in slots of both
    /// parities; an IPv4 key whose short form equals the first words of a stored IPv6 key is
    /// not found, and every key reads back as stored.
    #[test]
    fn short_and_full_keys_share_a_bucket() {
        let table = Cuckoo::<WideBuckets>::with_buckets(1);
        let rules = Reservations::new(usize::MAX);
        let place = |key: &FlowKey| table.place(key.hash(), key.is_ipv6());
        let lookup = |key: &FlowKey| {
            let mut out = [Lookup::Miss];
            table.lookup_bulk(
                std::slice::from_ref(key),
                &[key.hash()],
                &mut out,
                &ListenTable::new(0),
            );
            out[0]
        };
        let v4 = key(7);
        let short = v4_short(v4.words());
        let mut lookalike = [short[0], short[1], 0, 0, 1];
        lookalike[4] |= 17 << 8;
        let lookalike = FlowKey::from_words(lookalike);
        assert!(lookalike.is_ipv6());
        for round in 0..2u32 {
            // Round 1 inserts in the other order, so each key lands in a slot of the other parity.
            let mut keys: Vec<FlowKey> = (0..SLOTS as u32 - 1).map(mixed_key).collect();
            keys.push(lookalike);
            if round == 1 {
                keys.reverse();
            }
            for (i, k) in keys.iter().enumerate() {
                let inserted =
                    table.insert(k.words(), place(k), i as ThreadId, Budget::all(&rules));
                assert_eq!(inserted, Ok(None), "{k}");
            }
            assert_eq!(
                lookup(&v4),
                Lookup::Miss,
                "the IPv4 look-alike of an IPv6 key"
            );
            for slot in 0..SLOTS {
                let stored = FlowKey::from_words(table.store.key(0, slot));
                let index = keys
                    .iter()
                    .position(|k| *k == stored)
                    .expect("a stored key");
                assert_eq!(table.store.owner(0, slot), index as ThreadId);
            }
            for (i, k) in keys.iter().enumerate() {
                assert_eq!(lookup(k), Lookup::Exact(i as ThreadId), "{k}");
                assert_eq!(
                    table.remove(k.words(), place(k), Budget::all(&rules)),
                    Some(i as ThreadId)
                );
            }
            assert_eq!(rules.len(), 0);
        }
    }

    #[test]
    fn signature_matches_are_exactly_the_equal_lanes() {
        let mut state = 0x1234_5678_9abc_def0u64;
        for _ in 0..20_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let sig = (state >> 48) as u16;
            // Words whose lanes are often equal to `sig`, `sig ± 1`, 0, 1 or 0x8000 (where a borrow or a
            // carry between lanes would show).
            let lanes: Vec<u16> = (0..8)
                .map(|l| match (state >> (l * 3)) & 7 {
                    0 | 1 => sig,
                    2 => sig.wrapping_add(1),
                    3 => sig.wrapping_sub(1),
                    4 => 0,
                    5 => 1,
                    6 => sig ^ 0x8000,
                    _ => (state >> (l * 5)) as u16,
                })
                .collect();
            let words = [0, 1].map(|w| {
                (0..4).fold(0u64, |acc, l| {
                    acc | (u64::from(lanes[w * 4 + l]) << (16 * l))
                })
            });
            let expected = lanes
                .iter()
                .enumerate()
                .filter(|(_, lane_value)| **lane_value == sig)
                .fold(0u32, |acc, (slot, _)| acc | (1 << slot));
            assert_eq!(sig_matches(words, sig), expected, "{lanes:?} vs {sig}");
            assert_eq!(sig_matches_swar(words, sig), expected, "{lanes:?} vs {sig}");
        }
    }
}
