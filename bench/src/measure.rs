//! Time measurement shared by the micro-benchmarks: many operations per repetition, several
//! repetitions, the median reported.
//!
//! A repetition runs its workers for a fixed wall time and counts the operations they completed;
//! each worker times itself from its own start to the moment it sees the stop flag, so thread
//! start-up is never counted. One warm-up repetition (page faults, cache fill, frequency ramp)
//! is run and discarded. The median over repetitions resists the outliers a shared machine
//! produces (another tenant's burst, a migration); min and max are kept to show the spread.
//!
//! Cost of the measurement itself: one relaxed load of an unshared, read-mostly flag per loop
//! iteration of a worker (an iteration is a burst of 8 to 32 operations) and two clock reads per
//! worker per repetition.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

/// Repetitions measured per point (after one warm-up repetition).
pub const REPS: usize = 5;

/// The median and spread of a point's repetitions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// Median over repetitions of the operations per second of all workers together.
    pub ops_per_sec: f64,
    /// Lowest repetition.
    pub min_ops_per_sec: f64,
    /// Highest repetition.
    pub max_ops_per_sec: f64,
    /// Workers that shared the operations.
    pub workers: usize,
}

impl Summary {
    /// Summarizes per-repetition rates (operations per second over all workers); `None` when
    /// there is no finite positive rate to summarize.
    pub fn from_rates(rates: &[f64], workers: usize) -> Option<Summary> {
        let mut valid: Vec<f64> = rates
            .iter()
            .copied()
            .filter(|r| r.is_finite() && *r > 0.0)
            .collect();
        if valid.is_empty() {
            return None;
        }
        valid.sort_by(f64::total_cmp);
        let mid = valid.len() / 2;
        let median = if valid.len() % 2 == 1 {
            valid[mid]
        } else {
            (valid[mid - 1] + valid[mid]) / 2.0
        };
        Some(Summary {
            ops_per_sec: median,
            min_ops_per_sec: valid[0],
            max_ops_per_sec: valid[valid.len() - 1],
            workers: workers.max(1),
        })
    }

    /// Millions of operations per second, all workers together.
    pub fn mops(&self) -> f64 {
        self.ops_per_sec / 1e6
    }

    /// Nanoseconds one worker spends per operation (wall time × workers / operations).
    pub fn ns_per_op(&self) -> f64 {
        self.workers as f64 * 1e9 / self.ops_per_sec
    }

    /// The spread of the repetitions around the median, in percent of it: `(max - min) / median`.
    pub fn spread_pct(&self) -> f64 {
        100.0 * (self.max_ops_per_sec - self.min_ops_per_sec) / self.ops_per_sec
    }
}

/// Runs `rep` once as warm-up, then [`REPS`] times, and summarizes the rates it returns.
pub fn repeat(workers: usize, mut rep: impl FnMut() -> f64) -> Option<Summary> {
    let _warm_up = rep();
    let rates: Vec<f64> = (0..REPS).map(|_| rep()).collect();
    Summary::from_rates(&rates, workers)
}

/// Like [`repeat`] for several contenders measured side by side: one warm-up repetition of
/// each, then [`REPS`] rounds in which every contender runs one repetition, the first one
/// rotating from round to round. A slow spell of a shared machine then lands on all contenders
/// of a round rather than on the repetitions of one, and their ratio keeps its meaning.
/// `rep(i)` runs one repetition of contender `i` and returns its rate.
pub fn repeat_interleaved(
    contenders: usize,
    workers: usize,
    mut rep: impl FnMut(usize) -> f64,
) -> Vec<Option<Summary>> {
    for i in 0..contenders {
        let _warm_up = rep(i);
    }
    let mut rates = vec![Vec::with_capacity(REPS); contenders];
    for round in 0..REPS {
        for offset in 0..contenders {
            let i = (round + offset) % contenders;
            rates[i].push(rep(i));
        }
    }
    rates
        .iter()
        .map(|r| Summary::from_rates(r, workers))
        .collect()
}

/// Runs `body` until `stop` is set; returns the operations it reported and its own elapsed time.
#[inline]
pub fn timed_loop(stop: &AtomicBool, mut body: impl FnMut() -> u64) -> (u64, Duration) {
    let start = Instant::now();
    let mut ops = 0u64;
    while !stop.load(Ordering::Relaxed) {
        ops += body();
    }
    (ops, start.elapsed())
}

/// Runs `body` on the calling thread for `duration` (a sleeping helper thread sets the stop
/// flag); returns the operations it reported and its own elapsed time. For contenders bound to
/// the calling thread, such as DPDK's per-lcore cache of the EAL main lcore.
pub fn calling_thread_rep(duration: Duration, body: impl FnMut() -> u64) -> (u64, Duration) {
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let stop = &stop;
        s.spawn(move || {
            thread::sleep(duration);
            stop.store(true, Ordering::Relaxed);
        });
        timed_loop(stop, body)
    })
}

/// One repetition of `workers` threads running for `duration`: `make(i)` builds worker i's loop
/// body on its own thread (outside the timed part); the bodies start together. Returns the sum
/// of the workers' rates (operations per second).
pub fn parallel_rep<B>(workers: usize, duration: Duration, make: impl Fn(usize) -> B + Sync) -> f64
where
    B: FnMut() -> u64,
{
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(workers + 1);
    thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|i| {
                let (stop, barrier, make) = (&stop, &barrier, &make);
                s.spawn(move || {
                    let body = make(i);
                    barrier.wait();
                    timed_loop(stop, body)
                })
            })
            .collect();
        barrier.wait();
        thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok((ops, elapsed)) if elapsed > Duration::ZERO => {
                    ops as f64 / elapsed.as_secs_f64()
                }
                Ok(_) => 0.0,
                // A worker that panicked reports nothing; propagate so the run shows why.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .sum()
    })
}

/// SplitMix64: a small, seedable generator for benchmark inputs (same seed, same keys).
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform index below `n` (`n > 0`; 0 when `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts_and_spread() {
        let s = Summary::from_rates(&[3.0, 1.0, 2.0], 1).unwrap();
        assert_eq!(s.ops_per_sec, 2.0);
        assert_eq!((s.min_ops_per_sec, s.max_ops_per_sec), (1.0, 3.0));
        assert_eq!(s.spread_pct(), 100.0);
        let s = Summary::from_rates(&[4.0, 1.0, 2.0, 3.0], 2).unwrap();
        assert_eq!(s.ops_per_sec, 2.5);
        assert_eq!(s.ns_per_op(), 2.0 * 1e9 / 2.5);
    }

    #[test]
    fn invalid_rates_are_ignored_and_none_left_is_none() {
        assert_eq!(Summary::from_rates(&[], 1), None);
        assert_eq!(Summary::from_rates(&[0.0, f64::NAN, -1.0], 1), None);
        let s = Summary::from_rates(&[f64::INFINITY, 5e6], 1).unwrap();
        assert_eq!(s.mops(), 5.0);
    }

    #[test]
    fn parallel_rep_counts_every_worker() {
        let rate = parallel_rep(2, Duration::from_millis(20), |_| {
            || {
                std::hint::spin_loop();
                1
            }
        });
        assert!(rate > 0.0);
        let summary = repeat(1, || 10.0).unwrap();
        assert_eq!(summary.ops_per_sec, 10.0);
    }

    #[test]
    fn calling_thread_rep_runs_here_until_the_time_is_up() {
        let here = thread::current().id();
        let mut elsewhere = false;
        let (ops, elapsed) = calling_thread_rep(Duration::from_millis(20), || {
            elsewhere |= thread::current().id() != here;
            1
        });
        assert!(!elsewhere);
        assert!(ops > 0);
        assert!(elapsed >= Duration::from_millis(20));
    }

    #[test]
    fn interleaved_repetitions_alternate_and_rotate() {
        let mut order = Vec::new();
        let summaries = repeat_interleaved(3, 1, |i| {
            order.push(i);
            (i + 1) as f64
        });
        // Warm-ups in order, then rounds starting at 0, 1, 2, 0, 1.
        assert_eq!(&order[..3], &[0, 1, 2]);
        assert_eq!(&order[3..9], &[0, 1, 2, 1, 2, 0]);
        assert_eq!(order.len(), 3 + 3 * REPS);
        for (i, s) in summaries.iter().enumerate() {
            assert_eq!(order.iter().filter(|&&o| o == i).count(), 1 + REPS);
            assert_eq!(s.unwrap().ops_per_sec, (i + 1) as f64);
        }
    }

    #[test]
    fn shuffle_is_a_permutation_and_below_is_in_range() {
        let mut rng = SplitMix64::new(7);
        let mut v: Vec<u32> = (0..1000).collect();
        rng.shuffle(&mut v);
        assert_ne!(v, (0..1000).collect::<Vec<_>>());
        v.sort_unstable();
        assert_eq!(v, (0..1000).collect::<Vec<_>>());
        assert!((0..1000).all(|_| rng.below(10) < 10));
        assert_eq!(rng.below(0), 0);
    }
}
