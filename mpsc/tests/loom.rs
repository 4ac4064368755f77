//! Loom models of the burst ring: every interleaving (up to the preemption bound) of two
//! producers and one consumer on a ring of 2 or 3 slots.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p flowsteer-mpsc --test loom --release`.
//! Under `--cfg loom` the ring's atomics and element cells are loom's, so an element read that
//! the publish protocol fails to order after its write (or a write into a cell the consumer has
//! not yet released) is reported as a causality violation, and a lost or duplicated element
//! fails the assertions below.

#![cfg(loom)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use flowsteer_mpsc::ring;
use loom::thread;

/// Tracks live elements so that the models also check "dropped exactly once".
struct Tracked {
    producer: usize,
    seq: usize,
    live: Arc<AtomicUsize>,
}

impl Tracked {
    fn new(producer: usize, seq: usize, live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::Relaxed);
        Tracked {
            producer,
            seq,
            live: Arc::clone(live),
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    // Bounded so the models finish in seconds; 3 preemptions reach every interleaving of
    // "paused between reserve and publish" with the other two threads' steps.
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// Checks that `received` holds each producer's accepted prefix, in order, exactly once.
fn check_order(received: &[Tracked], accepted: &[usize]) {
    let mut next = vec![0; accepted.len()];
    for item in received {
        assert_eq!(
            item.seq, next[item.producer],
            "producer {} order",
            item.producer
        );
        next[item.producer] += 1;
    }
    assert_eq!(
        next, accepted,
        "every accepted element arrived exactly once"
    );
}

/// Two producers race one burst of 2 each into 3 slots while the consumer dequeues twice.
/// One burst is accepted whole, the other in part (or whole, if the consumer made room).
#[test]
fn two_producers_one_consumer_small_ring() {
    model(|| {
        let live = Arc::new(AtomicUsize::new(0));
        let (producer, mut consumer) = ring::<Tracked>(3).unwrap();
        let producers: Vec<_> = (0..2)
            .map(|id| {
                let producer = producer.clone();
                let live = Arc::clone(&live);
                thread::spawn(move || {
                    let mut burst: Vec<Tracked> =
                        (0..2).map(|seq| Tracked::new(id, seq, &live)).collect();
                    producer.enqueue_burst(&mut burst)
                })
            })
            .collect();
        drop(producer);

        let mut received = Vec::new();
        consumer.dequeue_burst(&mut received, 1);
        consumer.dequeue_burst(&mut received, 4);

        let accepted: Vec<usize> = producers.into_iter().map(|p| p.join().unwrap()).collect();
        assert!(accepted.iter().sum::<usize>() >= 3, "3 slots, 4 offered");
        consumer.dequeue_burst(&mut received, 8);
        check_order(&received, &accepted);
        drop(received);
        drop(consumer);
        assert_eq!(
            live.load(Ordering::Relaxed),
            0,
            "rejected and dequeued all dropped"
        );
    });
}

/// Slots are reused across laps while producers race: 2 slots, producer 0 sends two bursts,
/// producer 1 one, the consumer takes one element at a time (splitting runs). Checks that a
/// producer writes a slot only after the consumer has moved the previous element out.
#[test]
fn slot_reuse_across_laps() {
    model(|| {
        let live = Arc::new(AtomicUsize::new(0));
        let (producer, mut consumer) = ring::<Tracked>(2).unwrap();
        let first = {
            let producer = producer.clone();
            let live = Arc::clone(&live);
            thread::spawn(move || {
                let mut sent = 0;
                for _ in 0..2 {
                    let mut burst: Vec<Tracked> =
                        (0..2).map(|i| Tracked::new(0, sent + i, &live)).collect();
                    let accepted = producer.enqueue_burst(&mut burst);
                    sent += accepted;
                    // Per-producer order: a rejected rest is never followed by a later burst.
                    if accepted < 2 {
                        break;
                    }
                }
                sent
            })
        };
        let second = {
            let live = Arc::clone(&live);
            thread::spawn(move || {
                let mut burst = vec![Tracked::new(1, 0, &live)];
                producer.enqueue_burst(&mut burst)
            })
        };

        let mut received = Vec::new();
        for _ in 0..3 {
            consumer.dequeue_burst(&mut received, 1);
        }
        let accepted = vec![first.join().unwrap(), second.join().unwrap()];
        consumer.dequeue_burst(&mut received, 8);
        check_order(&received, &accepted);
        drop(received);
        drop(consumer);
        assert_eq!(live.load(Ordering::Relaxed), 0);
    });
}

/// The ring is dropped with elements left in it while the last producer handle goes on
/// another thread: every element still in the ring is dropped exactly once.
#[test]
fn drop_with_elements_left() {
    model(|| {
        let live = Arc::new(AtomicUsize::new(0));
        let (producer, mut consumer) = ring::<Tracked>(3).unwrap();
        let sender = {
            let live = Arc::clone(&live);
            thread::spawn(move || {
                let mut burst: Vec<Tracked> =
                    (0..3).map(|seq| Tracked::new(0, seq, &live)).collect();
                producer.enqueue_burst(&mut burst);
            })
        };
        let mut received = Vec::new();
        consumer.dequeue_burst(&mut received, 2);
        drop(consumer);
        sender.join().unwrap();
        drop(received);
        assert_eq!(live.load(Ordering::Relaxed), 0);
    });
}
