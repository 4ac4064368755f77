//! `softrss`: the Toeplitz hash of an IPv4 TCP 4-tuple, per packet, as a NIC computes it for RSS:
//! ours ([`Toeplitz::hash_tuple`], per-byte lookup tables) against DPDK's `rte_softrss` (bit
//! loop over the input words) and `rte_softrss_be` (the same with a pre-converted key) with
//! `--features dpdk`, on the same 4096 tuples and the same (Microsoft) key.
//!
//! Each contender hashes bursts of 32 tuples in one call and folds the hashes together so that
//! none can be optimized away; one call per burst keeps the indirect call out of the per-packet
//! cost. Before timing, each competitor's hash is compared with ours on every tuple.

use std::time::Duration;

use flowsteer_nic::rss::{Toeplitz, MICROSOFT_KEY};
use flowsteer_nic::wire::{FiveTuple, IP_PROTO_TCP};

use crate::competitors::{self, TupleHasher};
use crate::measure::{parallel_rep, repeat, SplitMix64, REPS};
use crate::table::{num, speed_ratio, Align, Table};
use crate::Options;

/// Tuples hashed, cycled through.
const TUPLES: usize = 4096;
/// Tuples per call.
const BURST: usize = 32;

/// The tuples, in our form and in DPDK's (`rte_ipv4_tuple`: host-order words, source port in
/// the high half of the third word).
pub struct Tuples {
    /// As the parser yields them.
    pub ours: Vec<FiveTuple>,
    /// As `rte_softrss` takes them.
    pub words: Vec<[u32; 3]>,
}

impl Tuples {
    /// `count` random client-to-server IPv4 TCP tuples, deterministically.
    pub fn new(count: usize) -> Tuples {
        let mut rng = SplitMix64::new(0x7055);
        let mut ours = Vec::with_capacity(count);
        let mut words = Vec::with_capacity(count);
        for _ in 0..count {
            let r = rng.next_u64();
            let src = (r as u32).to_be_bytes();
            let dst = [198, 18, 0, 1];
            let src_port = (r >> 32) as u16;
            let dst_port = 8000 + ((r >> 48) % 4) as u16;
            ours.push(FiveTuple::v4(
                IP_PROTO_TCP,
                src.into(),
                src_port,
                dst.into(),
                dst_port,
            ));
            words.push([
                u32::from_be_bytes(src),
                u32::from_be_bytes(dst),
                u32::from(src_port) << 16 | u32::from(dst_port),
            ]);
        }
        Tuples { ours, words }
    }
}

/// Runs the experiment and prints its table.
pub fn run(opts: &Options) -> Result<(), String> {
    let rep_time = Duration::from_secs_f64(opts.seconds / (REPS + 1) as f64);
    let tuples = Tuples::new(TUPLES);
    let toeplitz = Toeplitz::new(&MICROSOFT_KEY);
    let ours_name = "toeplitz (ours)";
    let mut table = Table::new(
        "softrss: Toeplitz hash of an IPv4 TCP 4-tuple (12 input bytes), one thread, median of 5 repetitions",
        &[
            ("hash", Align::Left),
            ("ns/pkt", Align::Right),
            ("Mpkt/s", Align::Right),
            ("spread%", Align::Right),
            ("ours/this", Align::Right),
        ],
    );
    table.describe(format!(
        "{:.2} s per contender; {TUPLES} tuples cycled in calls of {BURST}; Microsoft RSS key; \
         ratio = this row's ns/pkt / ours, >1 = ours faster",
        opts.seconds
    ));

    let mut contenders: Vec<(String, TupleHasher<'_>)> = vec![(
        ours_name.to_string(),
        Box::new(|range: std::ops::Range<usize>| {
            tuples.ours[range]
                .iter()
                .fold(0u32, |acc, t| acc ^ toeplitz.hash_tuple(t))
        }),
    )];
    match competitors::softrss_hashers(&tuples.words, &MICROSOFT_KEY) {
        Ok(list) => {
            for (name, hasher) in list {
                let differ = (0..TUPLES)
                    .filter(|&i| hasher(i..i + 1) != toeplitz.hash_tuple(&tuples.ours[i]))
                    .count();
                if differ > 0 {
                    return Err(format!(
                        "{name} and ours differ on {differ} of {TUPLES} tuples"
                    ));
                }
                table.note(format!(
                    "{name}: same hash as ours on all {TUPLES} tuples (checked before timing); \
                     called through dpdk-sys's bulk shim, one call per {BURST} tuples"
                ));
                contenders.push((name, hasher));
            }
        }
        Err(why) => table.note(format!("rte_softrss: did not run: {why}")),
    }

    let mut results = Vec::new();
    for (name, hasher) in &contenders {
        let summary = repeat(1, || {
            parallel_rep(1, rep_time, |_| {
                let mut start = 0usize;
                move || {
                    std::hint::black_box(hasher(start..start + BURST));
                    start = (start + BURST) % TUPLES;
                    BURST as u64
                }
            })
        })
        .ok_or_else(|| format!("{name}: no valid repetition"))?;
        results.push((name.clone(), summary));
    }
    let ours_ns = results[0].1.ns_per_op();
    for (name, s) in results {
        table.row(vec![
            name.clone(),
            num(s.ns_per_op(), 2),
            num(s.mops(), 1),
            num(s.spread_pct(), 0),
            if name == ours_name {
                "-".to_string()
            } else {
                speed_ratio(ours_ns, s.ns_per_op())
            },
        ]);
    }
    table.print();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bit-serial definition of the Toeplitz hash over the words DPDK takes, written here
    /// independently of both implementations: checks the word layout of [`Tuples`].
    fn reference(words: &[u32; 3], key: &[u8; 40]) -> u32 {
        let mut input = [0u8; 12];
        for (chunk, w) in input.chunks_mut(4).zip(words) {
            chunk.copy_from_slice(&w.to_be_bytes());
        }
        let mut hash = 0u32;
        for bit in 0..96 {
            if input[bit / 8] & (0x80 >> (bit % 8)) != 0 {
                let mut window = 0u32;
                for k in 0..32 {
                    let b = bit + k;
                    let set = key[b / 8] & (0x80 >> (b % 8)) != 0;
                    window = window << 1 | u32::from(set);
                }
                hash ^= window;
            }
        }
        hash
    }

    #[test]
    fn word_layout_matches_our_tuple_hash() {
        let tuples = Tuples::new(64);
        let toeplitz = Toeplitz::new(&MICROSOFT_KEY);
        for (t, w) in tuples.ours.iter().zip(&tuples.words) {
            assert_eq!(toeplitz.hash_tuple(t), reference(w, &MICROSOFT_KEY));
        }
    }
}
