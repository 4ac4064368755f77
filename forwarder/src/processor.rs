//! What a stack thread does with the packets it keeps: the one [`Processor`] its loop drives, a
//! protocol stack ([`StackProcessor`]) or the verifying sink ([`crate::sink::VerifyingSink`]).

use std::time::Duration;

use flowsteer_nic::pool::{PktBuf, PoolCache};
use flowsteer_stack::Stack;
use flowtable::FlowKey;

use crate::stats::ThreadStats;

/// The consumer of a stack thread's packets.
///
/// Called only by the thread that owns it. Every buffer it is given is its own: it frees it, or
/// sends it (appends it to `tx`); none is left in the vectors it is given.
pub trait Processor: Send {
    /// A processor that holds sockets (a protocol stack) needs what a stack needs: the
    /// received frames screened under RSS balancing (malformed ones dropped before they reach
    /// it), neighbour messages shared with every thread, and new flows to the ports it serves
    /// kept on the queue the NIC chose.
    const HOLDS_SOCKETS: bool;

    /// Processes one loop iteration's packets, both drained: `handed`, taken from the thread's
    /// software queue, and `local`, kept from its own receive burst. Counts them as processed
    /// (`processed_handoff`, `processed_local`) and appends what it sends to `tx`.
    ///
    /// A processor that can fail (panic) counts what it is given before anything that may
    /// fail: the thread's reclaim frees what is left in the vectors as processed.
    fn process(
        &mut self,
        handed: &mut Vec<PktBuf>,
        local: &mut Vec<PktBuf>,
        tx: &mut Vec<PktBuf>,
        cache: &mut PoolCache,
        stats: &ThreadStats,
    );

    /// How long the processor may go without a call (its next timer); `None`: it needs no call
    /// without packets.
    fn next_timer(&self) -> Option<Duration> {
        None
    }

    /// The exact rules the processor added to the flow table and has not deleted, when it
    /// keeps account of them (a stack does): a failed thread's reclaim deletes these by key
    /// instead of scanning the whole table for its rules. `None`: a scan it is.
    fn known_rules(&self) -> Option<Vec<FlowKey>> {
        None
    }

    /// The thread failed (it panicked, maybe in here, or stalled): free every buffer the
    /// processor holds into `cache`, send nothing; the processor is dropped afterwards.
    /// Returns the buffers freed and the connections lost with it.
    fn release_after_failure(&mut self, cache: &mut PoolCache) -> (u64, u64) {
        let _ = cache;
        (0, 0)
    }

    /// The thread stops receiving: end what needs ending (a stack resets its connections into
    /// `tx`). Packets still handed over afterwards go through [`Processor::process`].
    fn shutdown(&mut self, tx: &mut Vec<PktBuf>, cache: &mut PoolCache) {
        let _ = (tx, cache);
    }
}

/// A protocol stack as a thread's processor.
pub struct StackProcessor {
    stack: Box<Stack>,
    /// Most frames one round appends to `tx` (the rest waits in the sockets).
    tx_limit: usize,
}

impl StackProcessor {
    /// `stack`, sending at most `tx_limit` frames per round.
    pub fn new(stack: Box<Stack>, tx_limit: usize) -> Self {
        StackProcessor { stack, tx_limit }
    }
}

impl Processor for StackProcessor {
    const HOLDS_SOCKETS: bool = true;

    fn process(
        &mut self,
        handed: &mut Vec<PktBuf>,
        local: &mut Vec<PktBuf>,
        tx: &mut Vec<PktBuf>,
        cache: &mut PoolCache,
        stats: &ThreadStats,
    ) {
        stats.processed_local.add(local.len() as u64);
        stats.processed_handoff.add(handed.len() as u64);
        // What another thread handed over was received before this thread's own burst more
        // often than not: it goes first, so a flow whose frames arrive on both queues (a NIC
        // without RSS) reaches the stack in order more often.
        handed.append(local);
        let reused = self.stack.process(handed, tx, self.tx_limit, cache);
        stats.parse_reused.add(reused as u64);
    }

    fn next_timer(&self) -> Option<Duration> {
        self.stack.poll_delay()
    }

    fn shutdown(&mut self, tx: &mut Vec<PktBuf>, cache: &mut PoolCache) {
        self.stack.shutdown(tx, self.tx_limit, cache);
    }

    fn release_after_failure(&mut self, cache: &mut PoolCache) -> (u64, u64) {
        self.stack.release_after_failure(cache)
    }

    fn known_rules(&self) -> Option<Vec<FlowKey>> {
        Some(self.stack.rules_held())
    }
}
