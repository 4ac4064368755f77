//! One taken queue pair of the user-space NIC: the engine's view of a uveth queue.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::stats::add_single_writer;
use super::{pop_into, QueueState};
use crate::pool::{PktBuf, PoolCache};
use crate::port::{FrameSource, QueuePair};

/// Queue pair `queue_id` of a [`Uveth`](super::Uveth), owned by one stack thread.
///
/// Holds the NIC's rings alive (an `Arc`), so it may outlive the `Uveth` value. Dropping it
/// releases the queue for [`Uveth::take_queue`](super::Uveth::take_queue).
pub struct UvethQueue<S> {
    queues: Arc<[QueueState]>,
    queue: u16,
    source: Option<S>,
}

impl<S> UvethQueue<S> {
    pub(super) fn new(queues: Arc<[QueueState]>, queue: u16, source: Option<S>) -> Self {
        UvethQueue {
            queues,
            queue,
            source,
        }
    }

    fn state(&self) -> &QueueState {
        // `take_queue` checked the index against this same slice.
        &self.queues[self.queue as usize]
    }

    /// The source that fills receive bursts, if any.
    pub fn source(&self) -> Option<&S> {
        self.source.as_ref()
    }
}

impl<S: FrameSource> QueuePair for UvethQueue<S> {
    /// Injected frames first (up to `max`), then the source fills the rest of the burst.
    ///
    /// The count is taken from `out`, not from the source's return value; frames a source
    /// appends beyond what it was asked for are freed to `cache`, so a burst never exceeds `max`.
    fn rx_burst(&mut self, cache: &mut PoolCache, out: &mut Vec<PktBuf>, max: usize) -> usize {
        let start = out.len();
        let injected = pop_into(&self.state().rx, out, max);
        if injected < max {
            if let Some(source) = self.source.as_mut() {
                let before = out.len();
                source.fill(self.queue, cache, out, max - injected);
                let limit = start + max;
                while out.len() > limit {
                    if let Some(excess) = out.pop() {
                        cache.free(excess);
                    }
                }
                let generated = out.len().saturating_sub(before);
                add_single_writer(&self.state().counters.owner.rx_generated, generated as u64);
            }
        }
        out.len().saturating_sub(start)
    }

    /// Moves the longest prefix of `pkts` that fits onto the transmit ring.
    fn tx_burst(&mut self, cache: &mut PoolCache, pkts: &mut Vec<PktBuf>) -> usize {
        let state = self.state();
        // Only this owner pushes to the ring and others only pop, so the room read here can only
        // grow before the pushes below.
        let room = state.tx.capacity().saturating_sub(state.tx.len());
        let accepted = room.min(pkts.len());
        let mut refused = 0;
        for buf in pkts.drain(..accepted) {
            if let Err(buf) = state.tx.push(buf) {
                // Unreachable with a single pusher; freed and counted rather than lost.
                cache.free(buf);
                refused += 1;
            }
        }
        let owner = &state.counters.owner;
        add_single_writer(&owner.tx, (accepted - refused) as u64);
        add_single_writer(&owner.tx_dropped_full, (pkts.len() + refused) as u64);
        accepted - refused
    }

    fn queue_id(&self) -> u16 {
        self.queue
    }
}

impl<S> Drop for UvethQueue<S> {
    fn drop(&mut self) {
        // Release pairs with the acquire in `take_queue`.
        self.state().taken.store(false, Ordering::Release);
    }
}

impl<S> fmt::Debug for UvethQueue<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UvethQueue")
            .field("queue", &self.queue)
            .field("has_source", &self.source.is_some())
            .finish()
    }
}
