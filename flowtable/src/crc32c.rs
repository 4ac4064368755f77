//! CRC32C (Castagnoli) over 64-bit words: the SSE4.2 `crc32` instruction where the CPU has it, a
//! table-driven loop elsewhere, the same value on both paths.
//!
//! One step (`crc32c_u64`) folds eight bytes (the word in little-endian order, as the instruction
//! reads it) into a 32-bit state, with no initial or final inversion: exactly `_mm_crc32_u64`. The
//! callers choose their seeds and combine lanes themselves (see `FlowKey::hash`).
//!
//! Paths and costs:
//!
//! | path      | chosen when                                        | cost per word                                 |
//! |-----------|----------------------------------------------------|-----------------------------------------------|
//! | hardware  | x86-64 and `is_x86_feature_detected!("sse4.2")`     | 1 instruction: 3 cycles latency, 1 per cycle |
//! | portable  | any other CPU, and under miri                      | 8 loads from a 1 KiB table                    |
//!
//! The detection is a load of a flag that std caches after the first call (or a constant, when the
//! build enables SSE4.2), and a branch that always goes the same way; a loop over many keys
//! detects once and runs generic over the path it found ([`Lanes`]). The hardware path is the
//! instruction in inline assembly, so it inlines into the caller's loop whatever the build's target
//! features (see `hardware::step` for why not the intrinsic).

/// CRC32C's polynomial, bit-reversed (the form the right-shifting algorithms use).
pub(crate) const POLY_REFLECTED: u32 = 0x82F6_3B78;

/// `TABLE[b]`: the CRC of byte `b` shifted through eight steps of the bitwise algorithm.
static TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = byte as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ POLY_REFLECTED
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
};

/// One CRC32C step over `word` (little-endian bytes), portable.
#[inline]
pub(crate) fn crc32c_u64_portable(crc: u32, word: u64) -> u32 {
    word.to_le_bytes().iter().fold(crc, |crc, &byte| {
        TABLE[((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8)
    })
}

/// One CRC32C step over `word` (little-endian bytes), by the fastest path this CPU has. The flow
/// hash goes through [`two_lanes`]; single steps serve the tests.
#[cfg(test)]
pub(crate) fn crc32c_u64(crc: u32, word: u64) -> u32 {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU supports SSE4.2 (checked just above), the only requirement of the
        // hardware path.
        return unsafe { hardware::crc32c_u64(crc, word) };
    }
    crc32c_u64_portable(crc, word)
}

/// The two CRC lanes of the flow hash over the five key words: lane A from `seeds.0` over words
/// 0, 2 and 4 (in that order), lane B from `seeds.1` over words 1 and 3; returned as `A << 32 | B`.
/// Two independent chains, so the CPU overlaps them.
#[inline(always)]
pub(crate) fn two_lanes(words: &[u64; 5], seeds: (u32, u32)) -> u64 {
    match Instruction::detect() {
        Some(instruction) => instruction.two_lanes(words, seeds),
        None => Portable.two_lanes(words, seeds),
    }
}

/// A path of [`two_lanes`], chosen once for a loop over many keys: a loop generic over it has no
/// detection per key (the detection is a load and two branches; what that saves a bulk lookup is
/// in BENCHMARKS.md, "flowtable: instructions per lookup").
pub(crate) trait Lanes: Copy {
    /// [`two_lanes`] by this path.
    fn two_lanes(self, words: &[u64; 5], seeds: (u32, u32)) -> u64;
}

/// The table-driven path, on every CPU.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Portable;

impl Lanes for Portable {
    #[inline(always)]
    fn two_lanes(self, words: &[u64; 5], seeds: (u32, u32)) -> u64 {
        two_lanes_portable(words, seeds)
    }
}

/// The `crc32` instruction's path. Only [`Instruction::detect`] makes one, so holding one proves
/// the CPU has SSE4.2.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Instruction(());

impl Instruction {
    /// `Some` where the CPU has SSE4.2 (never under miri, never off x86-64).
    #[inline(always)]
    pub(crate) fn detect() -> Option<Instruction> {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        if std::arch::is_x86_feature_detected!("sse4.2") {
            return Some(Instruction(()));
        }
        None
    }
}

impl Lanes for Instruction {
    #[inline(always)]
    fn two_lanes(self, words: &[u64; 5], seeds: (u32, u32)) -> u64 {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        {
            // SAFETY: `self` exists, so `detect` found SSE4.2, the only requirement of the
            // hardware path.
            unsafe { hardware::two_lanes(words, seeds) }
        }
        // `detect` never makes one here.
        #[cfg(not(all(target_arch = "x86_64", not(miri))))]
        two_lanes_portable(words, seeds)
    }
}

/// [`two_lanes`] by the portable path.
#[inline]
pub(crate) fn two_lanes_portable(words: &[u64; 5], seeds: (u32, u32)) -> u64 {
    let a = crc32c_u64_portable(seeds.0, words[0]);
    let a = crc32c_u64_portable(a, words[2]);
    let a = crc32c_u64_portable(a, words[4]);
    let b = crc32c_u64_portable(seeds.1, words[1]);
    let b = crc32c_u64_portable(b, words[3]);
    (u64::from(a) << 32) | u64::from(b)
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
pub(crate) mod hardware {
    /// One step by the `crc32` instruction.
    ///
    /// # Safety
    ///
    /// As [`step`]: the CPU must support SSE4.2.
    #[cfg(test)]
    #[inline(always)]
    pub(crate) unsafe fn crc32c_u64(crc: u32, word: u64) -> u32 {
        // SAFETY: the caller guarantees SSE4.2.
        unsafe { step(u64::from(crc), word) as u32 }
    }

    /// One CRC32C step by the `crc32` instruction, on a state held in 64 bits as the instruction
    /// keeps it (its result is zero-extended), so that chained steps need no conversions.
    ///
    /// Inline assembly rather than `_mm_crc32_u64`: the intrinsic needs a `#[target_feature]`
    /// function, which is never inlined into the (baseline x86-64) lookup loop, and a call per
    /// key takes back most of what the hash gains over the ahash it replaced (measured in
    /// BENCHMARKS.md, "flowtable: the key hash").
    ///
    /// # Safety
    ///
    /// The CPU must support SSE4.2 (`is_x86_feature_detected!("sse4.2")`), or the instruction
    /// faults. `state` must be below 2^32.
    #[inline(always)]
    unsafe fn step(mut state: u64, word: u64) -> u64 {
        // SAFETY: the caller guarantees SSE4.2. `crc32 r64, r64` reads and writes only the two
        // registers named (the 32-bit result is zero-extended into `state`), touches no memory,
        // no stack and no flags, and depends on nothing but its inputs: the options hold.
        unsafe {
            std::arch::asm!(
                "crc32 {state}, {word}",
                state = inout(reg) state,
                word = in(reg) word,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        state
    }

    /// [`super::two_lanes`] by the `crc32` instruction.
    ///
    /// # Safety
    ///
    /// As [`step`]: the CPU must support SSE4.2.
    #[inline(always)]
    pub(crate) unsafe fn two_lanes(words: &[u64; 5], seeds: (u32, u32)) -> u64 {
        // SAFETY: the caller guarantees SSE4.2, all `step` requires; every state is a seed or
        // a step's result, both below 2^32.
        unsafe {
            let a = step(u64::from(seeds.0), words[0]);
            let b = step(u64::from(seeds.1), words[1]);
            let a = step(a, words[2]);
            let b = step(b, words[3]);
            let a = step(a, words[4]);
            (a << 32) | b
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC32C one bit at a time, straight from the definition: the reference both paths must match.
    fn bitwise(mut crc: u32, word: u64) -> u32 {
        for byte in word.to_le_bytes() {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ POLY_REFLECTED
                } else {
                    crc >> 1
                };
            }
        }
        crc
    }

    fn words(count: usize) -> impl Iterator<Item = (u32, u64)> {
        let mut state = 0x0123_4567_89ab_cdefu64;
        let edges = [0, 1, u64::MAX, 1 << 63, 0xFF, 0x8000_0000];
        let edge_cases = edges
            .into_iter()
            .flat_map(move |w| [0u32, !0, 0x8000_0001].into_iter().map(move |crc| (crc, w)));
        edge_cases.chain((0..count).map(move |_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 17) as u32, state.rotate_left(29) ^ state)
        }))
    }

    #[test]
    fn reference_gives_the_standard_check_value() {
        // The CRC-32C catalogue check: "123456789" with initial and final inversion is e3069283.
        // Nine bytes: one full word, then the ninth byte run through the reference bit by bit.
        let message = b"123456789";
        let first = u64::from_le_bytes(message[..8].try_into().unwrap());
        let mut crc = bitwise(!0, first);
        crc ^= u32::from(message[8]);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ POLY_REFLECTED
            } else {
                crc >> 1
            };
        }
        assert_eq!(!crc, 0xE306_9283);
    }

    #[test]
    fn every_path_matches_the_bitwise_reference() {
        let count = if cfg!(miri) { 50 } else { 100_000 };
        for (crc, word) in words(count) {
            let expected = bitwise(crc, word);
            assert_eq!(
                crc32c_u64_portable(crc, word),
                expected,
                "{crc:#x} {word:#x}"
            );
            assert_eq!(crc32c_u64(crc, word), expected, "{crc:#x} {word:#x}");
            #[cfg(all(target_arch = "x86_64", not(miri)))]
            if std::arch::is_x86_feature_detected!("sse4.2") {
                // SAFETY: SSE4.2 checked just above.
                let hardware = unsafe { hardware::crc32c_u64(crc, word) };
                assert_eq!(hardware, expected, "{crc:#x} {word:#x}");
            }
        }
    }

    #[test]
    fn the_instruction_is_detected_where_the_cpu_has_it() {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        assert_eq!(
            Instruction::detect().is_some(),
            std::arch::is_x86_feature_detected!("sse4.2")
        );
        #[cfg(not(all(target_arch = "x86_64", not(miri))))]
        assert!(Instruction::detect().is_none());
    }

    #[test]
    fn two_lanes_match_the_reference_on_every_path() {
        let samples: Vec<(u32, u64)> = words(if cfg!(miri) { 30 } else { 30_000 }).collect();
        for chunk in samples.chunks_exact(6) {
            let key = [chunk[0].1, chunk[1].1, chunk[2].1, chunk[3].1, chunk[4].1];
            let seeds = (chunk[5].0, chunk[0].0);
            let a = bitwise(bitwise(bitwise(seeds.0, key[0]), key[2]), key[4]);
            let b = bitwise(bitwise(seeds.1, key[1]), key[3]);
            let expected = (u64::from(a) << 32) | u64::from(b);
            assert_eq!(two_lanes_portable(&key, seeds), expected);
            assert_eq!(two_lanes(&key, seeds), expected);
            assert_eq!(Portable.two_lanes(&key, seeds), expected);
            if let Some(instruction) = Instruction::detect() {
                assert_eq!(instruction.two_lanes(&key, seeds), expected);
            }
        }
    }
}
