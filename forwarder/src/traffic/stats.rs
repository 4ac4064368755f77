//! Counters of one queue source of the traffic generator.
//!
//! Single writer: the stack thread that owns the queue (and calls its source's fill). It adds once
//! per fill call, never per packet, with the relaxed load + store of [`Counter`]. Readers (the
//! metrics exporter, the report) take relaxed snapshots at any time: a snapshot taken while the
//! thread runs may be one fill behind, and is exact once the thread has stopped. Each block is
//! cache-line padded so two queues' threads never write the same line.

use std::collections::BTreeMap;

use crossbeam_utils::CachePadded;

use crate::stats::Counter;

/// The generator counters of one receive queue.
#[derive(Debug, Default)]
pub struct SourceStats {
    counters: CachePadded<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    frames: Counter,
    flows_started: Counter,
    flows_ended: Counter,
    rule_add_failed: Counter,
    rate_limited: Counter,
    no_buffer: Counter,
}

/// What one fill call did, added to the shared block at its end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FillTally {
    pub frames: u64,
    pub flows_started: u64,
    pub flows_ended: u64,
    pub rule_add_failed: u64,
    pub rate_limited: u64,
    pub no_buffer: u64,
}

impl SourceStats {
    /// The counters by name: `frames` (frames generated), `flows_started` and `flows_ended` (flows
    /// set up and torn down by churn), `rule_add_failed` (new flows not set up: rule table full, or
    /// no fresh tuple left for the queue), `rate_limited` (fill calls cut short by the rate limit),
    /// `no_buffer` (fill calls cut short because the pool had no buffer).
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let c = &*self.counters;
        [
            ("frames", &c.frames),
            ("flows_started", &c.flows_started),
            ("flows_ended", &c.flows_ended),
            ("rule_add_failed", &c.rule_add_failed),
            ("rate_limited", &c.rate_limited),
            ("no_buffer", &c.no_buffer),
        ]
        .into_iter()
        .map(|(name, counter)| (name.to_string(), counter.get()))
        .collect()
    }

    /// Frames generated so far.
    pub fn frames(&self) -> u64 {
        self.counters.frames.get()
    }

    /// Adds one fill call's tally. Only the queue's own thread may call this.
    pub(crate) fn add(&self, tally: &FillTally) {
        let c = &*self.counters;
        c.frames.add(tally.frames);
        c.flows_started.add(tally.flows_started);
        c.flows_ended.add(tally.flows_ended);
        c.rule_add_failed.add(tally.rule_add_failed);
        c.rate_limited.add(tally.rate_limited);
        c.no_buffer.add(tally.no_buffer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_has_exactly_the_documented_keys_and_sums_tallies() {
        let stats = SourceStats::default();
        let tally = FillTally {
            frames: 5,
            flows_started: 1,
            flows_ended: 2,
            rule_add_failed: 3,
            rate_limited: 4,
            no_buffer: 6,
        };
        stats.add(&tally);
        stats.add(&tally);
        let snap = stats.snapshot();
        let keys: Vec<&str> = snap.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "flows_ended",
                "flows_started",
                "frames",
                "no_buffer",
                "rate_limited",
                "rule_add_failed"
            ]
        );
        assert_eq!(snap["frames"], 10);
        assert_eq!(snap["flows_started"], 2);
        assert_eq!(snap["flows_ended"], 4);
        assert_eq!(snap["rule_add_failed"], 6);
        assert_eq!(snap["rate_limited"], 8);
        assert_eq!(snap["no_buffer"], 12);
        assert_eq!(stats.frames(), 10);
    }
}
