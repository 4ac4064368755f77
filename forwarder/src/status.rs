//! One status line per second while the engine runs: rates since the previous line.
//!
//! With a protocol stack on the threads the line also tells the connections: set up per second
//! and open now (real clients send far fewer packets than the generator, so the packet rates
//! alone say little), and its misdirected count includes the stack's. With fewer queues than
//! threads it tells the share of the threads without a queue (which receive only by handoff)
//! in the interval's processed packets and new connections. A thread that ever failed is named
//! with its state, failures and restarts.

use std::time::Duration;

use crate::report::StackSnapshot;
use crate::shared::Shared;
use crate::stats::ThreadSnapshot;

/// Remembers the previous snapshot to print rates.
pub struct StatusPrinter {
    previous: Vec<ThreadSnapshot>,
    previous_stacks: Vec<StackSnapshot>,
    previous_at: Duration,
}

fn mpps(packets: u64, secs: f64) -> f64 {
    packets as f64 / secs / 1e6
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

fn per_sec(events: u64, secs: f64) -> f64 {
    (events as f64 / secs).round()
}

impl StatusPrinter {
    /// Starts from the engine's current counters.
    pub fn new(shared: &Shared) -> Self {
        StatusPrinter {
            previous: shared.stats.snapshot(),
            previous_stacks: StackSnapshot::all(shared),
            previous_at: Duration::ZERO,
        }
    }

    /// The line for the interval ending at `now` (time since start).
    pub fn line(&mut self, shared: &Shared, now: Duration) -> String {
        let current = shared.stats.snapshot();
        let stacks = StackSnapshot::all(shared);
        let secs = (now - self.previous_at).as_secs_f64().max(1e-9);
        let mut rx = 0;
        let mut processed = 0;
        let mut handed = 0;
        let mut dropped = 0;
        let mut misdirected = 0;
        let queues = usize::from(shared.config.port.queues);
        let (mut queueless_processed, mut queueless_opened, mut all_opened) = (0, 0, 0);
        let mut per_thread = Vec::with_capacity(current.len());
        for (c, p) in current.iter().zip(&self.previous) {
            let t_processed = c.processed() - p.processed();
            rx += c.rx - p.rx;
            processed += t_processed;
            if c.thread >= queues {
                queueless_processed += t_processed;
            }
            handed += c.handed_off_total() - p.handed_off_total();
            dropped += c.dropped_total() - p.dropped_total();
            misdirected += c.misdirected - p.misdirected;
            per_thread.push(format!("t{} {:.2}", c.thread, mpps(t_processed, secs)));
        }
        let (mut opened, mut active) = (0, 0);
        for (c, p) in stacks.iter().zip(&self.previous_stacks) {
            misdirected += c.misdirected - p.misdirected;
            let t_opened = c.connections_opened() - p.connections_opened();
            opened += t_opened;
            if c.thread >= queues {
                queueless_opened += t_opened;
            }
            all_opened += t_opened;
            active += c.connections_active();
        }
        let handoff_pct = if rx == 0 {
            0.0
        } else {
            100.0 * handed as f64 / rx as f64
        };
        let mut line = format!(
            "[{:>4}s] rx {:.2} Mpps | processed {:.2} Mpps ({}) | handoff {:.1}% | dropped {}/s | misdirected {}/s",
            now.as_secs(),
            mpps(rx, secs),
            mpps(processed, secs),
            per_thread.join(", "),
            handoff_pct,
            per_sec(dropped, secs),
            per_sec(misdirected, secs),
        );
        if !stacks.is_empty() {
            line.push_str(&format!(
                " | connections {}/s, {active} active",
                per_sec(opened, secs)
            ));
        }
        if queues < current.len() {
            line.push_str(&format!(
                " | without a queue: {:.0}% of packets",
                percent(queueless_processed, processed)
            ));
            if !stacks.is_empty() {
                line.push_str(&format!(
                    ", {:.0}% of connections",
                    percent(queueless_opened, all_opened)
                ));
            }
        }
        let failed: Vec<String> = shared
            .health
            .threads()
            .enumerate()
            .filter(|(_, h)| h.failures_total() > 0)
            .map(|(t, h)| {
                format!(
                    "t{t} {} ({} failures, {} restarts)",
                    h.state().as_str(),
                    h.failures_total(),
                    h.restarts()
                )
            })
            .collect();
        if !failed.is_empty() {
            line.push_str(&format!(" | failed threads: {}", failed.join(", ")));
        }
        self.previous = current;
        self.previous_stacks = stacks;
        self.previous_at = now;
        line
    }

    /// Prints the line to stderr.
    pub fn print_line(&mut self, shared: &Shared, now: Duration) {
        eprintln!("{}", self.line(shared, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use flowsteer_config::{App, AppKind, Config, Profile};

    use crate::engine::Engine;

    fn first_line(cfg: &Config) -> String {
        let engine = Engine::start(cfg, false).expect("engine starts");
        let mut printer = StatusPrinter::new(engine.shared());
        std::thread::sleep(Duration::from_millis(50));
        let line = printer.line(engine.shared(), Duration::from_secs(1));
        let report = engine.stop().expect("engine stops");
        assert!(report.conservation.ok, "{}", report.render_table());
        line
    }

    #[test]
    fn the_line_tells_connections_only_when_a_stack_runs() {
        let mut cfg = Config::default();
        cfg.metrics.enabled = false;
        cfg.traffic.profile = Profile::None;
        cfg.stack.app = vec![App::new(AppKind::Http, 80)];
        let line = first_line(&cfg);
        assert!(line.starts_with("[   1s] rx 0.00 Mpps"), "{line}");
        assert!(line.ends_with(" | connections 0/s, 0 active"), "{line}");

        let mut cfg = Config::default();
        cfg.metrics.enabled = false;
        cfg.traffic.flows = 64;
        let line = first_line(&cfg);
        assert!(line.contains("| misdirected 0/s"), "{line}");
        assert!(!line.contains("connections"), "{line}");
    }

    #[test]
    fn the_line_tells_the_share_of_the_threads_without_a_queue() {
        // The generator on 2 queues for 3 threads: thread 2 gets its flows by handoff.
        let mut cfg = Config::default();
        cfg.metrics.enabled = false;
        cfg.engine.threads = 3;
        cfg.port.queues = 2;
        cfg.traffic.profile = Profile::FewerQueues;
        cfg.traffic.flows = 64;
        let line = first_line(&cfg);
        let share = line
            .split(" | without a queue: ")
            .nth(1)
            .and_then(|rest| rest.strip_suffix("% of packets"))
            .and_then(|pct| pct.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no share in {line}"));
        assert!(share > 0.0 && share < 100.0, "{line}");

        // With a stack, the connections' share too; none when every thread has a queue.
        let mut cfg = Config::default();
        cfg.metrics.enabled = false;
        cfg.engine.threads = 2;
        cfg.port.queues = 1;
        cfg.traffic.profile = Profile::None;
        cfg.stack.app = vec![App::new(AppKind::Http, 80)];
        let line = first_line(&cfg);
        assert!(
            line.ends_with(" | without a queue: 0% of packets, 0% of connections"),
            "{line}"
        );
        cfg.port.queues = 2;
        assert!(!first_line(&cfg).contains("without a queue"));
    }
}
