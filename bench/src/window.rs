//! Steady-state rates of a running engine or ltran-style baseline: their stack threads' live
//! counters are read once after a warm-up and once at the end of the measured window, and the
//! rates are the differences over the window's wall time.
//!
//! A rate over a whole run counts thread start-up, the first page faults of the pool and the
//! table, and the caches filling: on the 2-core machines the first second of a run moves 10–15%
//! fewer packets than the next, which a short run's rate would fold in.

use std::thread;
use std::time::{Duration, Instant};

use forwarder::stats::EngineStats;

/// Time a run gets before its window opens.
pub const WARMUP: Duration = Duration::from_millis(300);

/// Totals over all stack threads at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Frames received from the port's queues (by the stack threads; the baseline's dispatcher
    /// counts its own).
    pub rx: u64,
    /// Frames processed, local and handed over.
    pub processed: u64,
    /// Frames handed to another thread.
    pub handed_off: u64,
    /// Processed frames of flows another thread owns.
    pub misdirected: u64,
    /// Frames dropped, all reasons.
    pub dropped: u64,
}

impl Counts {
    /// The stack threads' counters now.
    pub fn read(stats: &EngineStats) -> Counts {
        stats
            .snapshot()
            .iter()
            .fold(Counts::default(), |total, t| Counts {
                rx: total.rx + t.rx,
                processed: total.processed + t.processed(),
                handed_off: total.handed_off + t.handed_off_total(),
                misdirected: total.misdirected + t.misdirected,
                dropped: total.dropped + t.dropped_total(),
            })
    }

    /// What was counted between `earlier` and `self` (counters only grow).
    fn since(self, earlier: Counts) -> Counts {
        Counts {
            rx: self.rx.saturating_sub(earlier.rx),
            processed: self.processed.saturating_sub(earlier.processed),
            handed_off: self.handed_off.saturating_sub(earlier.handed_off),
            misdirected: self.misdirected.saturating_sub(earlier.misdirected),
            dropped: self.dropped.saturating_sub(earlier.dropped),
        }
    }
}

/// What a run counted in its window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Window {
    /// The counts of the window.
    pub counts: Counts,
    /// The window's wall time.
    pub secs: f64,
}

impl Window {
    /// Waits out [`WARMUP`], then measures `stats` over `length`. The caller's threads run
    /// meanwhile; the caller stops them afterwards.
    pub fn measure(stats: &EngineStats, length: Duration) -> Window {
        thread::sleep(WARMUP);
        let (opened, start) = (Counts::read(stats), Instant::now());
        thread::sleep(length);
        let (closed, secs) = (Counts::read(stats), start.elapsed().as_secs_f64());
        Window {
            counts: closed.since(opened),
            secs,
        }
    }

    /// Processed packets per second, all stack threads together, in millions.
    pub fn mpps(&self) -> f64 {
        self.counts.processed as f64 / self.secs.max(1e-9) / 1e6
    }

    /// `part` in percent of `of`.
    pub fn percent(part: u64, of: u64) -> f64 {
        100.0 * part as f64 / of.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_counts_only_what_happened_inside_it() {
        let stats = EngineStats::new(2);
        stats.thread(0).rx.add(1000);
        stats.thread(0).processed_local.add(1000);
        let window = thread::scope(|s| {
            let measuring = s.spawn(|| Window::measure(&stats, Duration::from_millis(200)));
            // Before the window opens, then inside it.
            thread::sleep(WARMUP / 3);
            stats.thread(1).rx.add(7);
            thread::sleep(WARMUP + Duration::from_millis(100) - WARMUP / 3);
            stats.thread(1).rx.add(40);
            stats.thread(1).processed_local.add(30);
            stats.thread(0).misdirected.add(2);
            measuring.join().unwrap()
        });
        assert_eq!(
            window.counts,
            Counts {
                rx: 40,
                processed: 30,
                handed_off: 0,
                misdirected: 2,
                dropped: 0,
            }
        );
        assert!(window.secs >= 0.2, "{}", window.secs);
        assert!((window.mpps() - 30.0 / window.secs / 1e6).abs() < 1e-12);
    }
}
