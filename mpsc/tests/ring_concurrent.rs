//! Many producers against one consumer: no loss, no duplication, per-producer order, bounded len.
//!
//! Every assertion holds for every interleaving, so the tests are deterministic in outcome
//! without a model checker; the thread schedule only changes how hard each path is exercised.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::SeededRng;
use flowsteer_mpsc::{ring, Consumer, Producer};

/// Not Copy and not Clone, like a packet handle: the ring can only move it.
#[derive(Debug, PartialEq, Eq)]
struct Numbered {
    producer: usize,
    seq: u32,
}

/// A hung test is a failed test; generous because the machine is shared.
/// Miri interprets every step some thousand times slower.
const DEADLINE: Duration = Duration::from_secs(if cfg!(miri) { 1800 } else { 120 });

const MAX_BURST: usize = 32;

/// Sends `0..count` in bursts of random size 1..=MAX_BURST, retrying whatever did not fit.
/// Returns how many bursts were only partly accepted.
fn produce_all(producer: Producer<Numbered>, id: usize, count: u32) -> usize {
    let mut rng = SeededRng::new(0x5eed + id as u64);
    let mut pending: Vec<Numbered> = Vec::with_capacity(MAX_BURST);
    let mut next_seq = 0;
    let mut partial_bursts = 0;
    let start = Instant::now();
    while next_seq < count || !pending.is_empty() {
        // Leftovers stay at the front, so topping up at the back keeps the sequence in order.
        let burst = rng.in_range(1, MAX_BURST);
        while pending.len() < burst && next_seq < count {
            pending.push(Numbered {
                producer: id,
                seq: next_seq,
            });
            next_seq += 1;
        }
        let offered = pending.len();
        let accepted = producer.enqueue_burst(&mut pending);
        assert_eq!(accepted + pending.len(), offered);
        assert!(producer.len() <= producer.capacity());
        if accepted < offered {
            partial_bursts += 1;
            // On 2 cores a spinning producer would starve the consumer it waits for.
            thread::yield_now();
        }
        assert!(
            start.elapsed() < DEADLINE,
            "producer {id} stuck at {next_seq}"
        );
    }
    partial_bursts
}

/// Dequeues until `producers * per_producer` elements arrived, checking each producer's
/// sequence is exactly 0, 1, 2, ... (which rules out loss, duplication and reordering).
fn consume_all(mut consumer: Consumer<Numbered>, producers: usize, per_producer: u32) {
    let total = producers * per_producer as usize;
    let mut next_expected = vec![0u32; producers];
    let mut received = 0;
    let mut out = Vec::with_capacity(64);
    let mut rng = SeededRng::new(0xc0ffee);
    let start = Instant::now();
    while received < total {
        out.clear();
        let max = rng.in_range(1, 64);
        let taken = consumer.dequeue_burst(&mut out, max);
        assert!(taken <= max);
        assert_eq!(taken, out.len());
        for item in out.drain(..) {
            let expected = &mut next_expected[item.producer];
            assert_eq!(
                item.seq, *expected,
                "producer {} out of order",
                item.producer
            );
            *expected += 1;
        }
        received += taken;
        if taken == 0 {
            thread::yield_now();
        }
        assert!(
            start.elapsed() < DEADLINE,
            "consumer stuck at {received} of {total}: {next_expected:?}"
        );
    }
    assert!(next_expected.iter().all(|&n| n == per_producer));
    assert_eq!(
        consumer.dequeue_burst(&mut out, 64),
        0,
        "nothing extra arrived"
    );
    assert!(consumer.is_empty());
}

fn stress(producers: usize) {
    const PER_PRODUCER: u32 = if cfg!(miri) { 100 } else { 200_000 };
    // Small against producers * MAX_BURST so full-ring partial bursts are frequent.
    let (producer, consumer) = ring::<Numbered>(256).unwrap();
    let senders: Vec<_> = (0..producers)
        .map(|id| {
            let producer = producer.clone();
            thread::spawn(move || produce_all(producer, id, PER_PRODUCER))
        })
        .collect();
    drop(producer);
    consume_all(consumer, producers, PER_PRODUCER);
    let partial_bursts: usize = senders.into_iter().map(|s| s.join().unwrap()).sum();
    eprintln!("{producers} producers: {partial_bursts} partly accepted bursts");
}

#[test]
fn two_producers_lose_duplicate_and_reorder_nothing() {
    stress(2);
}

#[test]
fn four_producers_lose_duplicate_and_reorder_nothing() {
    stress(4);
}

/// Samples `len()` from its own thread until `stop`; returns the samples taken and the largest.
fn observe_len(producer: Producer<Numbered>, stop: Arc<AtomicBool>) -> (usize, usize) {
    let mut samples = 0;
    let mut largest = 0;
    // At least one sample even if the producers finish before this thread starts.
    loop {
        let len = producer.len();
        assert!(len <= producer.capacity(), "len {len} above capacity");
        largest = largest.max(len);
        samples += 1;
        if stop.load(Ordering::Acquire) {
            return (samples, largest);
        }
        if samples % 64 == 0 {
            thread::yield_now();
        }
    }
}

#[test]
fn racing_producers_fill_exactly_to_capacity_and_never_beyond() {
    const CAPACITY: usize = 100;
    const PRODUCERS: usize = 4;
    const OFFERED: u32 = 1000;
    let (producer, mut consumer) = ring::<Numbered>(CAPACITY).unwrap();
    let start = Arc::new(Barrier::new(PRODUCERS));
    let stop = Arc::new(AtomicBool::new(false));
    let observer = {
        let producer = producer.clone();
        let stop = Arc::clone(&stop);
        thread::spawn(move || observe_len(producer, stop))
    };
    let senders: Vec<_> = (0..PRODUCERS)
        .map(|id| {
            let producer = producer.clone();
            let start = Arc::clone(&start);
            thread::spawn(move || {
                let mut rng = SeededRng::new(id as u64);
                let mut accepted_total = 0u32;
                start.wait();
                // No consumer runs, so the first rejection means the ring is full for good.
                while accepted_total < OFFERED {
                    let burst = rng.in_range(1, MAX_BURST) as u32;
                    let end = (accepted_total + burst).min(OFFERED);
                    let mut pending: Vec<Numbered> = (accepted_total..end)
                        .map(|seq| Numbered { producer: id, seq })
                        .collect();
                    let offered = pending.len();
                    let accepted = producer.enqueue_burst(&mut pending);
                    accepted_total += accepted as u32;
                    assert!(producer.len() <= CAPACITY);
                    if accepted < offered {
                        assert_eq!(pending[0].seq, accepted_total, "rest kept in order");
                        break;
                    }
                }
                accepted_total
            })
        })
        .collect();
    let accepted: Vec<u32> = senders.into_iter().map(|s| s.join().unwrap()).collect();
    stop.store(true, Ordering::Release);
    let (samples, largest) = observer.join().unwrap();
    assert!(samples > 0 && largest <= CAPACITY);

    assert_eq!(accepted.iter().sum::<u32>() as usize, CAPACITY);
    assert_eq!(consumer.len(), CAPACITY);

    // What each producer got in is exactly its first `accepted` elements, in order.
    let mut out = Vec::new();
    assert_eq!(consumer.dequeue_burst(&mut out, usize::MAX), CAPACITY);
    let mut next_expected = [0u32; PRODUCERS];
    for item in out {
        assert_eq!(item.seq, next_expected[item.producer]);
        next_expected[item.producer] += 1;
    }
    assert_eq!(next_expected.to_vec(), accepted);
}

#[test]
fn len_stays_within_capacity_while_producers_and_consumer_race() {
    const CAPACITY: usize = 64;
    const PRODUCERS: usize = 3;
    const ROUNDS: usize = if cfg!(miri) { 30 } else { 20_000 };
    let (producer, mut consumer) = ring::<Numbered>(CAPACITY).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let accepted_total = Arc::new(AtomicUsize::new(0));
    let observer = {
        let producer = producer.clone();
        let stop = Arc::clone(&stop);
        thread::spawn(move || observe_len(producer, stop))
    };
    let senders: Vec<_> = (0..PRODUCERS)
        .map(|id| {
            let producer = producer.clone();
            let accepted_total = Arc::clone(&accepted_total);
            thread::spawn(move || {
                let mut rng = SeededRng::new(100 + id as u64);
                let mut pending = Vec::with_capacity(MAX_BURST);
                for round in 0..ROUNDS {
                    pending.clear();
                    let burst = rng.in_range(1, MAX_BURST);
                    pending.extend((0..burst).map(|_| Numbered {
                        producer: id,
                        seq: round as u32,
                    }));
                    let accepted = producer.enqueue_burst(&mut pending);
                    accepted_total.fetch_add(accepted, Ordering::Relaxed);
                    assert!(producer.len() <= CAPACITY);
                }
            })
        })
        .collect();
    // Drain slowly enough that the ring is full much of the time.
    let mut dequeued = 0;
    let mut out = Vec::new();
    while senders.iter().any(|s| !s.is_finished()) {
        out.clear();
        dequeued += consumer.dequeue_burst(&mut out, 8);
        assert!(consumer.len() <= CAPACITY);
        thread::yield_now();
    }
    for sender in senders {
        sender.join().unwrap();
    }
    stop.store(true, Ordering::Release);
    let (_, largest) = observer.join().unwrap();
    assert!(largest <= CAPACITY);

    out.clear();
    let remaining = consumer.dequeue_burst(&mut out, usize::MAX);
    assert!(remaining <= CAPACITY);
    assert_eq!(
        dequeued + remaining,
        accepted_total.load(Ordering::Relaxed),
        "every accepted element came out exactly once"
    );
}

/// The accepted part of a burst is one reservation, so it comes out as one
/// contiguous run, never interleaved with another producer's elements.
#[test]
fn each_accepted_burst_stays_contiguous() {
    const PRODUCERS: usize = 3;
    const BURSTS: u32 = if cfg!(miri) { 20 } else { 20_000 };
    const BURST: u32 = 8;
    let (producer, mut consumer) = ring::<Numbered>(64).unwrap();
    let senders: Vec<_> = (0..PRODUCERS)
        .map(|id| {
            let producer = producer.clone();
            thread::spawn(move || {
                // Bursts start at multiples of BURST; a partly accepted burst is retried from
                // its rest, so only the accepted chunks are contiguous. Record their lengths.
                let mut chunks = Vec::new();
                for burst in 0..BURSTS {
                    let mut pending: Vec<Numbered> = (burst * BURST..(burst + 1) * BURST)
                        .map(|seq| Numbered { producer: id, seq })
                        .collect();
                    while !pending.is_empty() {
                        let accepted = producer.enqueue_burst(&mut pending);
                        if accepted > 0 {
                            chunks.push(accepted);
                        } else {
                            thread::yield_now();
                        }
                    }
                }
                chunks
            })
        })
        .collect();
    drop(producer);
    let total = PRODUCERS * (BURSTS * BURST) as usize;
    let mut all = Vec::with_capacity(total);
    let start = Instant::now();
    while all.len() < total {
        if consumer.dequeue_burst(&mut all, 48) == 0 {
            thread::yield_now();
        }
        assert!(
            start.elapsed() < DEADLINE,
            "consumer stuck at {}",
            all.len()
        );
    }
    let chunks: Vec<Vec<usize>> = senders.into_iter().map(|s| s.join().unwrap()).collect();
    // Walk the output: each run of one producer's elements must be exactly its next chunks.
    let mut next_chunk = [0usize; PRODUCERS];
    let mut next_seq = [0u32; PRODUCERS];
    let mut i = 0;
    while i < all.len() {
        let id = all[i].producer;
        let len = chunks[id][next_chunk[id]];
        next_chunk[id] += 1;
        for item in &all[i..i + len] {
            assert_eq!(
                item.producer, id,
                "a chunk of producer {id} was interleaved"
            );
            assert_eq!(item.seq, next_seq[id]);
            next_seq[id] += 1;
        }
        i += len;
    }
    assert!(next_seq.iter().all(|&n| n == BURSTS * BURST));
}
