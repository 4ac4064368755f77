//! One status line per second while the engine runs: rates since the previous line.

use std::time::Duration;

use crate::engine::Shared;
use crate::stats::ThreadSnapshot;

/// Remembers the previous snapshot to print rates.
pub struct StatusPrinter {
    previous: Vec<ThreadSnapshot>,
    previous_at: Duration,
}

fn mpps(packets: u64, secs: f64) -> f64 {
    packets as f64 / secs / 1e6
}

impl StatusPrinter {
    /// Starts from the engine's current counters.
    pub fn new(shared: &Shared) -> Self {
        StatusPrinter {
            previous: shared.stats.snapshot(),
            previous_at: Duration::ZERO,
        }
    }

    /// The line for the interval ending at `now` (time since start).
    pub fn line(&mut self, shared: &Shared, now: Duration) -> String {
        let current = shared.stats.snapshot();
        let secs = (now - self.previous_at).as_secs_f64().max(1e-9);
        let mut rx = 0;
        let mut processed = 0;
        let mut handed = 0;
        let mut dropped = 0;
        let mut misdirected = 0;
        let mut per_thread = Vec::with_capacity(current.len());
        for (c, p) in current.iter().zip(&self.previous) {
            let t_processed = c.processed() - p.processed();
            rx += c.rx - p.rx;
            processed += t_processed;
            handed += c.handed_off_total() - p.handed_off_total();
            dropped += c.dropped_total() - p.dropped_total();
            misdirected += c.misdirected - p.misdirected;
            per_thread.push(format!("t{} {:.2}", c.thread, mpps(t_processed, secs)));
        }
        let handoff_pct = if rx == 0 {
            0.0
        } else {
            100.0 * handed as f64 / rx as f64
        };
        self.previous = current;
        self.previous_at = now;
        format!(
            "[{:>4}s] rx {:.2} Mpps | processed {:.2} Mpps ({}) | handoff {:.1}% | dropped {}/s | misdirected {}/s",
            now.as_secs(),
            mpps(rx, secs),
            mpps(processed, secs),
            per_thread.join(", "),
            handoff_pct,
            (dropped as f64 / secs).round(),
            (misdirected as f64 / secs).round(),
        )
    }

    /// Prints the line to stderr.
    pub fn print_line(&mut self, shared: &Shared, now: Duration) {
        eprintln!("{}", self.line(shared, now));
    }
}
