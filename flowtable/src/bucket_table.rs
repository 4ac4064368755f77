//! The bucketized flow table: lookups take no lock and write no shared memory.
//!
//! Layout (the rte_hash / VPP bihash family). A fixed number of buckets, allocated at creation and
//! never resized, each split over two parallel arrays indexed by the bucket number:
//!
//! | array   | per bucket                                                                           |
//! |---------|--------------------------------------------------------------------------------------|
//! | `heads` | 1 line: version (sequence lock), 8 × 16-bit signatures (0 = empty slot), 8 × 16-bit owners, displaced count |
//! | `keys`  | 5 lines: 8 slots of 40 bytes, an IPv6 key in all five [`FlowKey`] words, an IPv4 key in its 16-byte short form in one line; guarded by the head's version |
//!
//! The heads are dense (64 bytes apart) because a probe reads a head first and a key only after a
//! signature match: a miss reads heads only, and the heads of 1 Mi rules span 16 MiB, where heads
//! interleaved with their keys in 384-byte buckets spread over 96 MiB. The split pays off together
//! with primary-first placement (below), which lets most hits read one head and one key block:
//! with lookups that read both heads, the split alone made 1 Mi-rule hits slower (a key block is a
//! page of its own, where an interleaved bucket's keys share its head's page). An IPv4 key is
//! stored in two words (local and remote address in one, ports, protocol and family in the
//! other: `key`'s short form, as VPP keeps IPv4 5-tuples in a 16-byte bihash and IPv6 ones in a
//! 40-byte one) at the first 16-byte-aligned pair of its slot, so an IPv4 hit reads one key line
//! where a 40-byte key crosses a line boundary in four slots of eight. The signature's low bit
//! is the key's family, so a lookup compares only slots of its own form and a writer moving a
//! key knows which form to read. Keys are stored inline in their block, not behind pointers: a
//! removed or moved entry is overwritten in place and nothing is ever freed while a reader may
//! look at it, so no memory reclamation (epochs, hazard pointers, quiescent states) is needed.
//! Every shared word is an atomic that stays valid for the table's lifetime.
//!
//! Placement: the caller's [`FlowKey::hash`] is mixed with a per-table random key (xor, multiply
//! by an odd constant: a bijection, two instructions) so that peers who know the build's fixed
//! hash seeds cannot aim many flows at the same buckets. The top bits give the primary bucket,
//! bits 16.. the secondary (forced different when the table has two buckets or more), bits 1..16
//! the signature, whose bit 0 is the key's family (1 = IPv6). A key lives in one of its two
//! buckets: in its primary whenever that had a free slot when the key was inserted, so that most
//! hits read one bucket. At 50% load (1 Mi rules in a table sized for them) 99.1% of the rules
//! sit in their primary
//! ([`BucketTable::rules_in_primary`]). Each head counts the rules whose primary it is that sit
//! in their secondary ("displaced"); with most primaries at 0, most misses read one head too.
//!
//! Reads: see `seqlock` for the protocol. A lookup begins the read of its primary bucket (version,
//! then signatures and matching keys); a key found there is done once the primary's version
//! validates (a one-bucket read), and so is a key not there when the primary's displaced count
//! is 0. Otherwise, with the primary's read still open, it begins the secondary's read,
//! searches it, and validates both versions. Because a cuckoo move holds the locks of both
//! buckets of the moving key at once, and the displaced count changes only under both locks, a
//! key present during the whole lookup is always found (the argument and its loom models are in
//! `seqlock`).
//!
//! Bulk lookup works in chunks of 32, in stages that each start the memory loads the next needs:
//! (1) bucket indices for every key from the given hashes, and a prefetch of the primary heads;
//! (2) for every key, the start of the primary's read: version, the slots whose signature matches
//! (one branch-free SSE2 compare of the eight 16-bit lanes, as rte_hash does; a SWAR compare off
//! x86-64), and a prefetch of the key lines the matches point at, or, with no match, the
//! displaced count and, when it is not 0, a prefetch of the secondary head; (3) for every key,
//! the primary's key
//! compares: hits end here, and so do misses whose primary has no displaced rule (then the
//! listen rules answer, `listen_table`, whose port filter ends them at once when no rule exists
//! for the flow's local port); the other keys are listed for (4) the secondary's read and
//! compares, the validation of both reads, and the listen rules for exact misses. A key whose
//! primary had a signature collision starts loading its secondary head in stage 3, and the key
//! lines of a rule in its secondary are not prefetched (1% of the rules at 50% load). Reads stay
//! open across the stages, which only widens the window in which a writer makes one retry; a
//! read that fails validation or met a held lock is redone alone by the single-key search. Prefetching both heads of every key in stage 1, as rte_hash's
//! bulk lookup does, was measured and dropped: it adds a line per hit, and at 1 Mi rules it made
//! misses slower too (0.45× rte_hash against 0.7×), the extra 32 loads in flight stalling stage 1
//! rather than hiding the secondary's.
//!
//! Cost of `lookup_bulk` per key: no allocation, no lock, no store to shared memory, and
//!
//! | outcome                                   | cache lines read                                   | instructions (64 Ki rules) |
//! |-------------------------------------------|----------------------------------------------------|----------------------------|
//! | hit, in the primary (99% at 50% load)     | 1 head, 1 key line (IPv4) or 1–2 (IPv6)            | 204                        |
//! | hit, in the secondary                     | 2 heads, the same key lines per signature match    | —                          |
//! | miss, no listen rule on the local port    | 1 head (2 if the primary has a displaced rule), 1 filter word (+ a key line on a 15-bit signature collision) | 167 |
//! | miss to a listened port (a new connection) | as above + the listen version and 1–2 slot lines  | 303                        |
//!
//! Instructions include the caller's [`FlowKey::hash`] (about 20 of them) and are counted by the
//! crate's `lookup_count` example under callgrind (bursts of 32, keys of the `flowtable`
//! benchmark). With interleaved 384-byte buckets, both heads read by every lookup and a two-choice
//! insert they were 246, 230 and 336, and with primary-first reads and a SWAR signature compare
//! 224, 250 and 356: reading the primary first saves instructions on hits and costs some on
//! misses (two stages and a separately bounds-checked key block), which the SSE2 compare (one per
//! bucket read) more than paid back. The displaced count took misses from 210 to 168 (one head,
//! no fourth stage, the listen port filter inlined and the rest of the listen lookup out of
//! line) and costs hits 3 (hits read it only on a signature collision), 209 to 212. The IPv4
//! short form takes hits to 208 (two word compares instead of five) and misses to 171 (the
//! family bit in the signature); resolving the secondary head only where a stage reads it,
//! to 204 and 167. At 1 Mi rules the same instructions wait on memory: the heads
//! span 16 MiB and the key blocks 80 MiB, so the time per key is set by cache and TLB misses,
//! which the prefetches overlap across the 32 keys of a chunk, and by how many loads a core
//! keeps in flight (a chunk's 32 head prefetches already fill them). A profile of 1 Mi-rule hits (`perf record` of
//! `lookup_count`) puts most of the time on the prefetch instructions of stages 1 and 2, which
//! cannot retire while the core has no free miss buffer or page walker for them.
//!
//! Writes from any thread: the version word of a bucket is also its writer lock (odd = held).
//! `insert` and `remove` lock the key's two buckets (lower index first: no deadlock). An insert
//! that finds both buckets full searches a cuckoo path (breadth-first, at most
//! [`CUCKOO_SEARCH_BUCKETS`] buckets) under the table's relocation mutex and executes it from its
//! free end backwards, each move locking its source and destination bucket and re-checking that the
//! entry is still there; then it retries. Entries are never duplicated (a move writes the copy and
//! clears the source under both locks) and never lost (a move that finds its source changed is
//! abandoned before writing). Every write that puts a key into its secondary or takes it out
//! (insert, remove, move) holds both its buckets' locks and adjusts the primary's displaced count
//! with it. `remove_owner` takes the relocation mutex (no entry can move past its scan), copies
//! the owner's keys of one bucket at a time under that bucket's lock and removes each under its
//! two buckets' locks: O(buckets), for the rare exit of a thread.
//!
//! Capacity: `capacity` exact rules, counted by an atomic reserved before a new key is placed.
//! The array has at least `capacity / 0.8` slots ([`MAX_LOAD_PERCENT`]) rounded up to a power of
//! two buckets, so the load at capacity is between 40% and 80%. Two-choice 8-slot buckets with
//! cuckoo displacement fill past 95% before the first failure (measured by the test
//! `cuckoo_fills_past_ninety_five_percent`), so inserting up to `capacity` rules is expected to
//! always succeed; this is a probabilistic guarantee, not an absolute one: if no path is found
//! after [`INSERT_ATTEMPTS`] searches the insert fails with [`TableFull`] like a full table.
//!
//! Memory: 384 bytes per bucket (a 64-byte head and a 320-byte key block), 48 bytes per slot;
//! 1 Mi rules take 256 Ki buckets, 16 MiB of heads and 80 MiB of keys, allocated zeroed and
//! committed at creation. A head array of 2 MiB or more (32 Ki buckets, a table for about 100 000
//! rules) lives on transparent huge pages (`bucket_array`: a 2 MiB-aligned mapping advised
//! `MADV_HUGEPAGE`): every lookup reads a head at a random place, and on 4 KiB pages the 16 MiB of
//! a 1 Mi-rule table span 4096 pages, more than the second-level TLB holds, on 2 MiB pages 8.
//! A key array of 2 MiB or more (8 Ki buckets) lives on them too: a hit's key line is at a
//! random place in 80 MiB, and on 4 KiB pages nearly every one costs a page walk. Over 12
//! alternated single-thread runs of `lookup_count` at 1 Mi rules, hits took (medians) 63.7 ns
//! with 40-byte keys on 4 KiB pages, 62.5 with the IPv4 short form, 58.0 with the key blocks on
//! huge pages and 52.0 with both: the short form pays only once the page walks are gone.
//! Where the kernel does not provide huge pages, both arrays live on 4 KiB pages, with no error
//! ([`BucketTable::on_huge_pages`], [`crate::huge_page_fallbacks`]).

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crossbeam_utils::CachePadded;

use crate::bucket_array::{BucketArray, ZeroIsEmpty};
use crate::key::{
    v4_from_short, v4_short, words_are_ipv6, FlowKey, ListenKey, ThreadId, SHORT_WORDS,
};
use crate::listen_table::ListenTable;
use crate::lookup::Lookup;
use crate::seqlock::{read_fence, spin, AtomicU64, Version, VersionGuard};
use crate::table::{FlowTable, TableFull};

/// Slots per bucket.
pub(crate) const SLOTS: usize = 8;
const KEY_WORDS: usize = 5;
// Slot `i` starts at word `5 * i`, which alternates between even and odd: see `short_index`.
const _: () = assert!(KEY_WORDS % 2 == 1 && KEY_WORDS > SHORT_WORDS);
/// The array is sized so that `capacity` rules fill at most this share of the slots.
pub(crate) const MAX_LOAD_PERCENT: usize = 80;
/// Buckets a cuckoo path search visits at most (breadth-first, so paths stay short).
pub(crate) const CUCKOO_SEARCH_BUCKETS: usize = 512;
/// Cuckoo searches an insert tries before it reports [`TableFull`].
pub(crate) const INSERT_ATTEMPTS: usize = 8;
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
/// bit, the key's family ([`BucketTable::place`]). Read only after a signature match, under the
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

/// True when a slot with signature `sig` holds an IPv6 key (see [`BucketTable::place`]).
#[inline(always)]
fn sig_is_ipv6(sig: u16) -> bool {
    sig & 1 != 0
}

const _: () = assert!(std::mem::size_of::<Head>() == 64);
const _: () = assert!(std::mem::size_of::<KeyBlock>() == 320);

/// One bucket: its head and its key block, which live in two parallel arrays at the same index.
#[derive(Clone, Copy)]
struct Bucket<'a> {
    head: &'a Head,
    keys: &'a KeyBlock,
}

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

impl Bucket<'_> {
    /// The slot holding `words` with signature `sig`. Racy, as [`KeyBlock::first_equal`].
    #[inline]
    fn find(&self, words: &[u64; KEY_WORDS], sig: u16) -> Option<usize> {
        self.keys
            .first_equal(sig_matches(self.head.sig_words(), sig), words)
    }

    /// The key in `slot` (occupied), in the form its signature says.
    fn key(&self, slot: usize) -> [u64; KEY_WORDS] {
        self.keys
            .key(slot, sig_is_ipv6(lane(&self.head.sigs, slot)))
    }

    fn free_slot(&self) -> Option<usize> {
        (0..SLOTS).find(|&slot| lane(&self.head.sigs, slot) == 0)
    }

    #[cfg(all(test, not(loom)))]
    fn used(&self) -> usize {
        (0..SLOTS)
            .filter(|&slot| lane(&self.head.sigs, slot) != 0)
            .count()
    }

    /// Writer only. The signature goes last, though the held version already hides the partial
    /// state from readers.
    fn write(&self, slot: usize, words: &[u64; KEY_WORDS], sig: u16, owner: ThreadId) {
        self.keys.write(slot, words);
        set_lane(&self.head.owners, slot, owner);
        set_lane(&self.head.sigs, slot, sig);
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

/// A key's two buckets as a lookup reads them: the primary head resolved once per bulk lookup
/// (one bounds check and address computation, however many stages read it); the secondary head
/// and the key blocks only when a stage needs them (1% of the hits read the secondary).
#[derive(Clone, Copy)]
struct Pair<'a> {
    primary: &'a Head,
    place: Placement,
}

/// Holds the locks of a key's two buckets (one if they are the same), taken in index order.
struct PairGuard<'a> {
    _first: VersionGuard<'a>,
    _second: Option<VersionGuard<'a>>,
}

/// Concurrent flow table with lock-free lookups over fixed, preallocated buckets. See the module
/// documentation for the layout, the protocols and the costs.
pub struct BucketTable {
    heads: BucketArray<Head>,
    /// `keys[i]` holds the keys of bucket `i`; same length as `heads`.
    keys: BucketArray<KeyBlock>,
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
            heads: BucketArray::zeroed(buckets),
            keys: BucketArray::zeroed(buckets),
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

    /// Whether the bucket heads and the key blocks lie on memory advised for transparent huge
    /// pages (heads: a table of at least 32 Ki buckets; keys: 8 Ki; on Linux, with the kernel's
    /// consent); see the module documentation.
    pub fn on_huge_pages(&self) -> (bool, bool) {
        (self.heads.on_huge_pages(), self.keys.on_huge_pages())
    }

    /// Number of buckets (a power of two); `buckets() * 8` slots.
    pub fn buckets(&self) -> usize {
        self.heads.len()
    }

    /// Exact rules stored in their primary bucket, by an unlocked scan of every bucket (a
    /// measurement, racy under concurrent writers). A lookup of such a rule reads one bucket; the
    /// others, and every miss, read two.
    pub fn rules_in_primary(&self) -> usize {
        (0..self.buckets())
            .map(|index| {
                let bucket = self.bucket(index);
                (0..SLOTS)
                    .filter(|&slot| {
                        let sig = lane(&bucket.head.sigs, slot);
                        sig != 0 && {
                            let key = bucket.key(slot);
                            self.place_words(&key).primary == index
                        }
                    })
                    .count()
            })
            .sum()
    }

    /// Where a key with this hash and family may live, and its signature.
    #[inline]
    fn place(&self, hash: u64, ipv6: bool) -> Placement {
        let mixed = (hash ^ self.mix_xor).wrapping_mul(self.mix_mul);
        // checked_shr: a one-bucket table has shift 0 and a 64-bit shift would overflow.
        let primary = mixed.checked_shr(64 - self.shift).unwrap_or(0) as usize & self.mask;
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

    /// [`BucketTable::place`] of a stored key's words.
    fn place_words(&self, words: &[u64; KEY_WORDS]) -> Placement {
        self.place(hash_words(words), words_are_ipv6(words))
    }

    fn lock_pair(&self, place: Placement) -> PairGuard<'_> {
        let low = place.primary.min(place.secondary);
        let high = place.primary.max(place.secondary);
        let first = self.heads[low].version.lock();
        let second = (high != low).then(|| self.heads[high].version.lock());
        PairGuard {
            _first: first,
            _second: second,
        }
    }

    /// Finds `words` in its buckets; the caller holds both locks.
    fn find_locked(&self, words: &[u64; KEY_WORDS], place: Placement) -> Option<(usize, usize)> {
        [place.primary, place.secondary]
            .into_iter()
            .find_map(|bucket| Some((bucket, self.bucket(bucket).find(words, place.sig)?)))
    }

    /// Bucket `index`'s head and key block.
    #[inline]
    fn bucket(&self, index: usize) -> Bucket<'_> {
        Bucket {
            head: &self.heads[index],
            keys: &self.keys[index],
        }
    }

    #[inline]
    fn pair(&self, place: Placement) -> Pair<'_> {
        Pair {
            primary: &self.heads[place.primary],
            place,
        }
    }

    /// Validated exact lookup (see the module documentation), retrying until no writer
    /// intervenes. The bulk lookup's path for the rare read that a writer disturbed.
    #[cold]
    fn search(&self, words: &[u64; KEY_WORDS], place: Placement) -> Option<ThreadId> {
        let primary = self.bucket(place.primary);
        let secondary = self.bucket(place.secondary);
        let sig = place.sig;
        let mut round = 0u32;
        loop {
            if let Some(v_primary) = primary.head.version.read_begin() {
                if let Some(slot) = primary.find(words, sig) {
                    let owner = lane(&primary.head.owners, slot);
                    read_fence();
                    if primary.head.version.unchanged_since(v_primary) {
                        return Some(owner);
                    }
                } else if !primary.head.has_displaced() {
                    read_fence();
                    if primary.head.version.unchanged_since(v_primary) {
                        return None;
                    }
                } else if let Some(v_secondary) = secondary.head.version.read_begin() {
                    let found = secondary
                        .find(words, sig)
                        .map(|slot| lane(&secondary.head.owners, slot));
                    read_fence();
                    if primary.head.version.unchanged_since(v_primary)
                        && secondary.head.version.unchanged_since(v_secondary)
                    {
                        return found;
                    }
                }
            }
            spin(round);
            round = round.saturating_add(1);
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
            self.keys[pair.place.primary].prefetch_keys(candidates, sig_is_ipv6(pair.place.sig));
        } else if displaced {
            self.heads[pair.place.secondary].prefetch();
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
            let found = self.keys[pair.place.primary]
                .first_equal(u32::from(probe.candidates), words)
                .map(|slot| lane(&pair.primary.owners, slot));
            // A signature collision: the count is read now, inside the primary's open read
            // (validated below or in stage 4), and stage 2 did not start loading the secondary.
            let displaced = found.is_none() && pair.primary.has_displaced();
            if displaced {
                self.heads[pair.place.secondary].prefetch();
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
        let secondary = &self.heads[pair.place.secondary];
        let version = secondary.version.read_begin().filter(|_| probe.begun)?;
        let candidates = sig_matches(secondary.sig_words(), pair.place.sig);
        let found = if candidates == 0 {
            None
        } else {
            self.keys[pair.place.secondary]
                .first_equal(candidates, words)
                .map(|slot| lane(&secondary.owners, slot))
        };
        read_fence();
        (pair.primary.version.unchanged_since(probe.version)
            && secondary.version.unchanged_since(version))
        .then_some(found)
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
            let bucket = self.bucket(nodes[head].bucket);
            for slot in 0..SLOTS {
                if lane(&bucket.head.sigs, slot) == 0 {
                    // Freed meanwhile: the caller's retry will use it.
                    return true;
                }
                // Racy read: checked again under the locks before anything moves.
                let key = bucket.key(slot);
                let alternate = self.alternate(&key, nodes[head].bucket);
                if alternate == nodes[head].bucket {
                    continue;
                }
                if self.bucket(alternate).free_slot().is_some() {
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
        let source = self.bucket(from);
        let target = self.bucket(to);
        let sig = lane(&source.head.sigs, slot);
        if sig == 0 || source.key(slot) != *key {
            return false;
        }
        let Some(free) = target.free_slot() else {
            return false;
        };
        target.write(free, key, sig, lane(&source.head.owners, slot));
        set_lane(&source.head.sigs, slot, 0);
        // `from` and `to` are the key's two buckets, both locked: its primary's count follows it.
        if to == self.place_words(key).primary {
            target.head.add_displaced(-1);
        } else {
            source.head.add_displaced(1);
        }
        true
    }

    /// Empties slot `slot` of bucket `index`, which holds a key placed at `place`, and returns
    /// its owner; the caller holds both locks of `place`.
    fn clear_locked(&self, place: Placement, index: usize, slot: usize) -> ThreadId {
        let head = &self.heads[index];
        let owner = lane(&head.owners, slot);
        set_lane(&head.sigs, slot, 0);
        if index != place.primary {
            self.heads[place.primary].add_displaced(-1);
        }
        self.exact_count.fetch_sub(1, Ordering::Relaxed);
        owner
    }

    /// Exact rules in all buckets, for occupancy measurements.
    #[cfg(all(test, not(loom)))]
    fn load(&self) -> usize {
        (0..self.buckets()).map(|b| self.bucket(b).used()).sum()
    }

    /// Checks every bucket's displaced count against a recount of the rules sitting in their
    /// secondary bucket (no concurrent writer).
    #[cfg(all(test, not(loom)))]
    fn assert_displaced_counts(&self) {
        let mut expected = vec![0u64; self.buckets()];
        for index in 0..self.buckets() {
            let bucket = self.bucket(index);
            for slot in (0..SLOTS).filter(|&slot| lane(&bucket.head.sigs, slot) != 0) {
                let primary = self.place_words(&bucket.key(slot)).primary;
                if primary != index {
                    expected[primary] += 1;
                }
            }
        }
        for (index, expected) in expected.into_iter().enumerate() {
            let counted = self.heads[index].displaced.load(Ordering::Relaxed);
            assert_eq!(counted, expected, "displaced count of bucket {index}");
        }
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

impl FlowTable for BucketTable {
    fn insert(&self, key: FlowKey, owner: ThreadId) -> Result<Option<ThreadId>, TableFull> {
        let words = key.words();
        let place = self.place(key.hash(), key.is_ipv6());
        let mut reserved = false;
        for _ in 0..INSERT_ATTEMPTS {
            {
                let _guard = self.lock_pair(place);
                if let Some((bucket, slot)) = self.find_locked(words, place) {
                    let bucket = self.bucket(bucket);
                    let previous = lane(&bucket.head.owners, slot);
                    set_lane(&bucket.head.owners, slot, owner);
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
                // Primary first: a lookup that finds its key in the primary bucket never reads the
                // secondary, so the secondary takes only what the primary has no room for.
                let primary = self.bucket(place.primary);
                let secondary = self.bucket(place.secondary);
                let (target, displaced) = if primary.free_slot().is_some() {
                    (primary, false)
                } else {
                    (secondary, place.secondary != place.primary)
                };
                if let Some(slot) = target.free_slot() {
                    target.write(slot, words, place.sig, owner);
                    if displaced {
                        primary.head.add_displaced(1);
                    }
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
        let place = self.place(key.hash(), key.is_ipv6());
        let _guard = self.lock_pair(place);
        let (index, slot) = self.find_locked(words, place)?;
        Some(self.clear_locked(place, index, slot))
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
        for index in 0..self.buckets() {
            let bucket = self.bucket(index);
            // Unlocked pre-check: most buckets hold no rule of `owner` and stay untouched, so
            // their readers never retry. A rule of `owner` inserted concurrently may be missed,
            // as with any insert that races the removal.
            let owned = |slot: usize| {
                lane(&bucket.head.sigs, slot) != 0 && lane(&bucket.head.owners, slot) == owner
            };
            if !(0..SLOTS).any(owned) {
                continue;
            }
            // The keys are copied under this bucket's lock (a consistent state), then each is
            // removed under both its buckets' locks, which a displaced key's primary count needs.
            let keys: Vec<[u64; KEY_WORDS]> = {
                let _guard = bucket.head.version.lock();
                (0..SLOTS)
                    .filter(|&slot| owned(slot))
                    .map(|slot| bucket.key(slot))
                    .collect()
            };
            for words in &keys {
                let place = self.place_words(words);
                let _guard = self.lock_pair(place);
                if let Some((index, slot)) = self.find_locked(words, place) {
                    if lane(&self.heads[index].owners, slot) == owner {
                        self.clear_locked(place, index, slot);
                        removed += 1;
                    }
                }
            }
        }
        removed + self.listen.remove_owner(owner)
    }

    fn lookup_bulk(&self, keys: &[FlowKey], hashes: &[u64], out: &mut [Lookup]) {
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
                        *slot = self.listen.lookup(key, hashes[index]);
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
                    None => self.listen.lookup(key, hashes[index]),
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
            .field("buckets", &self.heads.len())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::key::Proto;
    use std::collections::HashMap;
    use std::net::Ipv6Addr;
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

    fn v6_key(i: u32) -> FlowKey {
        FlowKey::v6(
            Proto::Udp,
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
            443,
            Ipv6Addr::from(0x2001_0db8_00aa_0000_0000_0000_0000_0000 | u128::from(i)),
            (i % 60_000) as u16,
        )
    }

    /// Every third key IPv6, the others IPv4: both storage forms in the same buckets.
    fn mixed_key(i: u32) -> FlowKey {
        if i.is_multiple_of(3) {
            v6_key(i)
        } else {
            key(i)
        }
    }

    fn owner_of(i: u32) -> ThreadId {
        (i.wrapping_mul(0x9E37_79B9) >> 16) as ThreadId
    }

    #[test]
    fn placement_gives_two_buckets_and_a_signature_of_the_family() {
        for buckets in [1usize, 2, 4, 1024] {
            let table = BucketTable::with_buckets(16, buckets);
            for i in 0..2_000 {
                let key = mixed_key(i);
                let place = table.place(key.hash(), key.is_ipv6());
                assert!(place.primary < buckets && place.secondary < buckets);
                assert_eq!(place.primary == place.secondary, buckets == 1);
                assert_ne!(place.sig, 0);
                assert_eq!(sig_is_ipv6(place.sig), key.is_ipv6(), "{key}");
            }
        }
        // The hashes whose low signature bits are 0: an IPv4 signature of 0 would mark an
        // empty slot.
        let table = BucketTable::with_buckets(16, 1);
        let zero_low_bits = (0..1u64 << 20)
            .map(|h| h.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .find(|&h| (h ^ table.mix_xor).wrapping_mul(table.mix_mul) as u16 <= 1)
            .expect("a hash whose mixed low bits are 0 or 1");
        assert_eq!(table.place(zero_low_bits, false).sig, 2);
        assert_eq!(table.place(zero_low_bits, true).sig, 1);
    }

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
        let table = BucketTable::with_buckets(usize::MAX, 1);
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
                assert_eq!(table.insert(*k, i as ThreadId), Ok(None), "{k}");
            }
            assert_eq!(
                table.lookup(&v4),
                Lookup::Miss,
                "the IPv4 look-alike of an IPv6 key"
            );
            let bucket = table.bucket(0);
            for slot in 0..SLOTS {
                let stored = FlowKey::from_words(bucket.key(slot));
                let index = keys
                    .iter()
                    .position(|k| *k == stored)
                    .expect("a stored key");
                assert_eq!(lane(&bucket.head.owners, slot), index as ThreadId);
            }
            for (i, k) in keys.iter().enumerate() {
                assert_eq!(table.lookup(k), Lookup::Exact(i as ThreadId), "{k}");
                assert_eq!(table.remove(k), Some(i as ThreadId), "{k}");
            }
            assert_eq!(table.exact_len(), 0);
        }
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
        let table = BucketTable::with_buckets(usize::MAX, BUCKETS);
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

    /// Inserts prefer the primary bucket, so at the load of a table filled to its capacity
    /// nearly every rule is found by reading one bucket.
    #[test]
    fn rules_sit_in_their_primary_bucket_at_the_sized_load() {
        let capacity = if cfg!(miri) { 500 } else { 1 << 16 };
        let table = BucketTable::with_capacity(capacity);
        for i in 0..capacity as u32 {
            table.insert(key(i), owner_of(i)).unwrap();
        }
        let in_primary = table.rules_in_primary();
        assert!(
            in_primary * 100 >= capacity * 95,
            "{in_primary} of {capacity} rules in their primary bucket"
        );
    }

    /// A nearly full table holds many rules (IPv4 and IPv6, in their two storage forms) in their
    /// secondary bucket; bulk lookups of bursts that mix them with primary rules and misses
    /// return every owner and every miss.
    #[test]
    fn bulk_lookup_finds_rules_in_either_bucket() {
        const BUCKETS: usize = if cfg!(miri) { 8 } else { 1024 };
        let table = BucketTable::with_buckets(usize::MAX, BUCKETS);
        let rules = (BUCKETS * SLOTS * 95 / 100) as u32;
        for i in 0..rules {
            table.insert(mixed_key(i), owner_of(i)).unwrap();
        }
        let in_primary = table.rules_in_primary();
        assert!(
            in_primary < rules as usize && in_primary > rules as usize / 2,
            "{in_primary} of {rules} rules in their primary bucket"
        );
        // After every second rule, a key never inserted.
        let expected: Vec<(FlowKey, Lookup)> = (0..rules)
            .flat_map(|i| {
                let rule = (mixed_key(i), Lookup::Exact(owner_of(i)));
                let miss = (mixed_key(10_000_000 + i), Lookup::Miss);
                std::iter::once(rule).chain((i % 2 == 1).then_some(miss))
            })
            .collect();
        let keys: Vec<FlowKey> = expected.iter().map(|(k, _)| *k).collect();
        let hashes: Vec<u64> = keys.iter().map(FlowKey::hash).collect();
        let mut out = vec![Lookup::Miss; keys.len()];
        table.lookup_bulk(&keys, &hashes, &mut out);
        for ((key, expected), result) in expected.iter().zip(&out) {
            assert_eq!(result, expected, "{key}");
        }
        table.assert_displaced_counts();
    }

    /// Inserts at high load (cuckoo moves both ways), removals, owner changes and the removal of
    /// an owner's rules keep every primary's count of its displaced rules exact, and the lookups
    /// that trust a count of 0 keep finding every rule.
    #[test]
    fn displaced_counts_follow_every_write() {
        const BUCKETS: usize = if cfg!(miri) { 4 } else { 256 };
        let table = BucketTable::with_buckets(usize::MAX, BUCKETS);
        let mut present: HashMap<u32, ThreadId> = HashMap::new();
        let full = (BUCKETS * SLOTS * 95 / 100) as u32;
        let mut next = 0u32;
        for round in 0..if cfg!(miri) { 2 } else { 6 } {
            while present.len() < full as usize {
                let owner = (next % 5) as ThreadId;
                if table.insert(mixed_key(next), owner).is_ok() {
                    present.insert(next, owner);
                }
                next += 1;
            }
            table.assert_displaced_counts();
            let mut ids: Vec<u32> = present.keys().copied().collect();
            ids.sort_unstable();
            for &i in ids.iter().step_by(3) {
                assert_eq!(table.remove(&mixed_key(i)), present.remove(&i), "key {i}");
            }
            for &i in ids.iter().skip(1).step_by(7) {
                if let Some(owner) = present.get_mut(&i) {
                    *owner = 40 + round as ThreadId;
                    assert!(table.insert(mixed_key(i), *owner).unwrap().is_some());
                }
            }
            table.assert_displaced_counts();
            let gone = (round % 5) as ThreadId;
            let owned = present.values().filter(|&&o| o == gone).count();
            assert_eq!(table.remove_owner(gone), owned);
            present.retain(|_, owner| *owner != gone);
            table.assert_displaced_counts();
            assert_eq!(table.exact_len(), present.len());
            let keys: Vec<FlowKey> = (0..next).map(mixed_key).collect();
            let hashes: Vec<u64> = keys.iter().map(FlowKey::hash).collect();
            let mut out = vec![Lookup::Miss; keys.len()];
            table.lookup_bulk(&keys, &hashes, &mut out);
            for (i, result) in out.iter().enumerate() {
                let expected = present
                    .get(&(i as u32))
                    .map_or(Lookup::Miss, |&owner| Lookup::Exact(owner));
                assert_eq!(*result, expected, "key {i}");
                assert_eq!(table.lookup(&keys[i]), expected, "key {i} alone");
            }
        }
    }

    /// Head and key arrays of 2 MiB or more ask for huge pages (granted wherever the kernel has
    /// transparent huge pages), smaller ones come from the allocator; all tables work the same.
    #[test]
    fn large_arrays_go_on_huge_pages() {
        let kernel_has_them = cfg!(all(target_os = "linux", not(miri)))
            && std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists();
        // Miri has no mmap (all sizes take the heap path) and zeroing 12 MiB takes it minutes.
        let (rules, sizes) = if cfg!(miri) {
            (50, &[(1024, (false, false))][..])
        } else {
            (
                1000,
                &[
                    (1024, (false, false)),
                    (8 * 1024, (false, kernel_has_them)),
                    (32 * 1024, (kernel_has_them, kernel_has_them)),
                ][..],
            )
        };
        for &(buckets, huge) in sizes {
            let table = BucketTable::with_buckets(usize::MAX, buckets);
            assert_eq!(table.on_huge_pages(), huge, "{buckets} buckets");
            for i in 0..rules {
                table.insert(mixed_key(i), owner_of(i)).unwrap();
            }
            for i in 0..rules {
                assert_eq!(table.lookup(&mixed_key(i)), Lookup::Exact(owner_of(i)));
            }
            assert_eq!(table.lookup(&mixed_key(5000)), Lookup::Miss);
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
            table.assert_displaced_counts();
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
        table.assert_displaced_counts();
    }
}
