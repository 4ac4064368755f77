//! `memory`: what a random cache line costs on this machine, by working-set size: read one at a
//! time (each address depends on the line before, the latency) and in bursts of 32 lines whose
//! addresses are known first, all prefetched, then all read (as a bulk lookup of 32 keys reads
//! its buckets; the time per line is then bounded by how many line fills the core keeps in
//! flight). No competitor: this table is the yardstick for the others. A flow table hit at
//! 1 Mi rules reads one random line of a 64 MiB array, rte_hash's one of its key store and two of
//! its bucket array; the rows of those sizes say what that alone costs here.
//!
//! The array is on transparent huge pages where the kernel grants them (as the flow table's and,
//! on hugetlbfs, rte_hash's are), so the rows measure the caches and memory, not page walks.

use std::hint::black_box;
use std::time::Instant;

use crate::measure::SplitMix64;
use crate::table::{num, Align, Table};
use crate::Options;

/// Working sets measured, in MiB.
const SIZES_MIB: [usize; 6] = [1, 4, 16, 32, 64, 256];
/// Bytes per cache line, and `u64`s per line.
const LINE: usize = 64;
const WORDS_PER_LINE: usize = LINE / 8;
/// Lines per burst.
const BURST: usize = 32;
/// 2 MiB, the transparent huge page size.
const HUGE_PAGE: usize = 2 << 20;

/// Runs the experiment and prints its table.
pub fn run(opts: &Options) -> Result<(), String> {
    let mut table = Table::new(
        "memory: a random 64-byte line, by working set (one thread, the yardstick of the flow table rows)",
        &[
            ("working set", Align::Right),
            ("dependent ns/line", Align::Right),
            ("burst-32 ns/line", Align::Right),
            ("lines in flight", Align::Right),
        ],
    );
    table.describe(
        "dependent: a chase through a random cycle of all lines (latency); burst-32: 32 random \
         lines prefetched, then read, burst after burst (throughput); lines in flight = their ratio",
    );
    let loads = (opts.seconds * 4e6).clamp(1e5, 4e7) as usize;
    let mut huge = true;
    for mib in SIZES_MIB {
        let lines = mib * (1 << 20) / LINE;
        let (array, on_huge) = chase_array(lines);
        // An array of less than two huge pages may hold no whole one to advise.
        huge &= on_huge || mib * (1 << 20) < 2 * HUGE_PAGE;
        let dependent = chase(&array, loads);
        let burst = bursts(&array, lines, loads);
        table.row(vec![
            format!("{mib} MiB"),
            num(dependent, 1),
            num(burst, 1),
            num(dependent / burst, 1),
        ]);
    }
    table.note(if huge {
        "arrays advised onto transparent huge pages (the kernel may still have used 4 KiB pages)"
    } else {
        "the huge-page advice was refused for some arrays: their rows include page walks"
    });
    print!("{}", table.render());
    Ok(())
}

/// `lines` lines, line `i`'s first word the word index of the next line of one random cycle
/// through all of them (Sattolo's shuffle), and whether the huge-page advice was taken.
fn chase_array(lines: usize) -> (Vec<u64>, bool) {
    let words = lines * WORDS_PER_LINE;
    // The advice covers the whole huge pages inside the allocation: all of it but its ends.
    let mut array = vec![0u64; words];
    let advised = advise_huge_pages(&array);
    let mut order: Vec<usize> = (0..lines).collect();
    let mut rng = SplitMix64::new(0x3e3e + lines as u64);
    for i in (1..lines).rev() {
        let j = (rng.next_u64() % i as u64) as usize;
        order.swap(i, j);
    }
    for (position, &line) in order.iter().enumerate() {
        let next = order[(position + 1) % lines];
        array[line * WORDS_PER_LINE] = (next * WORDS_PER_LINE) as u64;
    }
    (array, advised)
}

/// Asks for transparent huge pages under the whole 2 MiB pages of `array`, before its pages are
/// first written; false when the kernel refused or the array holds no whole huge page.
fn advise_huge_pages(array: &[u64]) -> bool {
    let start = array.as_ptr() as usize;
    let end = start + std::mem::size_of_val(array);
    let first = start.next_multiple_of(HUGE_PAGE);
    if first + HUGE_PAGE > end {
        return false;
    }
    let bytes = (end - first) / HUGE_PAGE * HUGE_PAGE;
    // SAFETY: `first..first + bytes` lies inside `array`'s allocation, which outlives the call;
    // MADV_HUGEPAGE is advice about how to back the pages and changes neither their contents
    // nor their validity, so no Rust reference to the array is affected.
    unsafe { libc::madvise(first as *mut libc::c_void, bytes, libc::MADV_HUGEPAGE) == 0 }
}

/// Nanoseconds per line of `loads` dependent reads along the cycle.
fn chase(array: &[u64], loads: usize) -> f64 {
    let mut at = 0usize;
    // One lap first, at most, so that the timed loads find the array as the run leaves it.
    for _ in 0..loads.min(array.len() / WORDS_PER_LINE) {
        at = array[at] as usize;
    }
    let started = Instant::now();
    for _ in 0..loads {
        at = array[at] as usize;
    }
    let elapsed = started.elapsed();
    black_box(at);
    elapsed.as_secs_f64() * 1e9 / loads as f64
}

/// Nanoseconds per line of `loads` random line reads in prefetched bursts of [`BURST`].
fn bursts(array: &[u64], lines: usize, loads: usize) -> f64 {
    let mut rng = SplitMix64::new(0xb0b0 + lines as u64);
    let loads = loads.div_ceil(BURST) * BURST;
    let addresses: Vec<usize> = (0..loads)
        .map(|_| (rng.next_u64() % lines as u64) as usize * WORDS_PER_LINE)
        .collect();
    let mut sum = 0u64;
    let started = Instant::now();
    for burst in addresses.chunks_exact(BURST) {
        for &word in burst {
            prefetch(&array[word]);
        }
        for &word in burst {
            sum = sum.wrapping_add(array[word]);
        }
    }
    let elapsed = started.elapsed();
    black_box(sum);
    elapsed.as_secs_f64() * 1e9 / loads as f64
}

#[inline(always)]
fn prefetch(word: &u64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint with no architectural effect and is defined for any address
    // (here a valid reference); SSE, which the intrinsic requires, is in the x86-64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            (word as *const u64).cast(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = word;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chase_visits_every_line_once_per_lap() {
        for lines in [1, 2, 3, 64, 1000] {
            let (array, _) = chase_array(lines);
            let mut seen = vec![false; lines];
            let mut at = 0usize;
            for _ in 0..lines {
                let line = at / WORDS_PER_LINE;
                assert!(!seen[line], "line {line} visited twice in a lap of {lines}");
                seen[line] = true;
                at = array[at] as usize;
            }
            assert_eq!(at, 0, "a lap of {lines} ends where it began");
            assert!(seen.iter().all(|&s| s));
        }
    }
}
