//! Burst enqueue and dequeue over `crossbeam_queue::ArrayQueue`.
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

use crossbeam_queue::ArrayQueue;

/// Pushes the longest prefix of `items` that fits, removing it from `items`; returns its length.
///
/// No allocation: `items` only shrinks, and the one element handed back by a rejected push goes
/// into the slot its own pop just freed.
pub(crate) fn enqueue_burst<T>(queue: &ArrayQueue<T>, items: &mut Vec<T>) -> usize {
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
/// Must only be called by the single consumer; the caller enforces that through `&mut Consumer`.
pub(crate) fn dequeue_burst<T>(queue: &ArrayQueue<T>, out: &mut Vec<T>, max: usize) -> usize {
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
