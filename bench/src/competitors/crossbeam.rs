//! The baseline software queue: burst enqueue and dequeue over `crossbeam_queue::ArrayQueue`,
//! driven by the `swq` experiment exactly as flowsteer's ring is. It was selectable in the engine
//! until the product kept its one ring.
//!
//! ArrayQueue is a bounded MPMC queue that claims one slot per operation: a producer CASes the
//! shared tail, writes the value, then publishes it with a release store of the slot's stamp; a
//! consumer does the same on the head. Bursts here are loops over those single-element
//! operations, so:
//!
//! - Cost: one CAS (plus retries under producer contention) and one release store per element on
//!   each side. The consumer's CAS never fails because it is the only consumer, but it is paid.
//! - A burst is not atomic. Elements of concurrent bursts may interleave, and a burst may be
//!   accepted in part when the ring fills during it. The accepted elements are always a prefix of
//!   the burst, because the loop stops at the first rejection.
//! - Progress is lock-free, not wait-free. A producer never waits for room (a full ring returns at
//!   once), but a producer preempted between its tail CAS and its stamp store holds back the
//!   consumer at that slot, which spins and then yields until the slot is published.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

use crate::swq::{self, Dequeue, Enqueue, Shape};

/// The ring's name in the experiment's table.
pub const NAME: &str = "crossbeam";

/// One repetition of the software-queue experiment on a fresh queue of the experiment's ring
/// size, shared by `shape.producers` producers and one consumer.
pub fn rep(shape: Shape, duration: Duration) -> Result<f64, String> {
    let queue = Arc::new(ArrayQueue::new(swq::ring_size()));
    let producers = (0..shape.producers)
        .map(|_| Producer(Arc::clone(&queue)))
        .collect();
    swq::rep(producers, Consumer(queue), shape, duration)
}

/// A producer end: the shared queue.
struct Producer(Arc<ArrayQueue<usize>>);

/// The consumer end: the same queue, used by one thread only.
struct Consumer(Arc<ArrayQueue<usize>>);

impl Enqueue for Producer {
    #[inline]
    fn enqueue(&mut self, batch: &mut Vec<usize>) {
        enqueue_burst(&self.0, batch);
    }
}

impl Dequeue for Consumer {
    #[inline]
    fn dequeue(&mut self, out: &mut Vec<usize>, max: usize) -> usize {
        dequeue_burst(&self.0, out, max)
    }
}

/// Pushes the longest prefix of `items` that fits, removing it from `items`; returns its length.
///
/// No allocation: `items` only shrinks, and the one element handed back by a rejected push goes
/// into the slot its own pop just freed.
fn enqueue_burst<T>(queue: &ArrayQueue<T>, items: &mut Vec<T>) -> usize {
    if items.is_empty() {
        return 0;
    }
    // ArrayQueue hands a rejected element back by value, and a `Vec` can only take an element
    // back cheaply at its end. Reversing once makes the burst's front reachable with `pop`;
    // reversing the remainder afterwards restores the caller's order. Two passes of pointer-sized
    // swaps are small next to one CAS per element, and they keep this free of `unsafe`.
    items.reverse();
    let mut accepted = 0;
    while let Some(item) = items.pop() {
        if let Err(rejected) = queue.push(item) {
            items.push(rejected);
            break;
        }
        accepted += 1;
    }
    items.reverse();
    accepted
}

/// Pops up to `max` elements onto the end of `out`; returns how many.
///
/// Must only be called by the single consumer; [`Consumer`] is the one end that calls it.
fn dequeue_burst<T>(queue: &ArrayQueue<T>, out: &mut Vec<T>, max: usize) -> usize {
    let mut taken = 0;
    while taken < max {
        match queue.pop() {
            Some(item) => {
                out.push(item);
                taken += 1;
            }
            None => break,
        }
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_burst_keeps_the_rest_in_order_and_bursts_come_out_in_order() {
        let queue = ArrayQueue::new(4);
        let mut burst: Vec<usize> = (0..6).collect();
        assert_eq!(enqueue_burst(&queue, &mut burst), 4);
        assert_eq!(burst, [4, 5]);
        assert_eq!(enqueue_burst(&queue, &mut burst), 0);
        assert_eq!(enqueue_burst(&queue, &mut Vec::new()), 0);
        let mut out = vec![99];
        assert_eq!(dequeue_burst(&queue, &mut out, 3), 3);
        assert_eq!(out, [99, 0, 1, 2]);
        assert_eq!(enqueue_burst(&queue, &mut burst), 2);
        assert!(burst.is_empty());
        assert_eq!(dequeue_burst(&queue, &mut out, 100), 3);
        assert_eq!(out, [99, 0, 1, 2, 3, 4, 5]);
        assert_eq!(dequeue_burst(&queue, &mut out, 100), 0);
    }
}
