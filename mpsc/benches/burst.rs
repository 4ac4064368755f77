//! Burst enqueue / dequeue throughput of the ring, in the shape of the engine's handoff:
//! 1 or 2 producer threads push bursts of 8 or 32 packet handles into one ring of 1024 slots
//! (the default `swq.size`) drained by one consumer thread in bursts of the same size.
//!
//! `cargo bench -p flowsteer-mpsc --bench burst` runs the criterion groups, then prints one
//! table of nanoseconds per packet (pass `-- --summary-only` to skip criterion). The comparison
//! with the baselines (crossbeam's `ArrayQueue`, rte_ring) is `flowsteer-bench swq`, where they
//! run side by side. Criterion's "time" is per iteration,
//! and one iteration is one burst per producer, so divide by `burst * producers` for time per
//! packet (the `thrpt` line is packets per second).
//!
//! The producers retry what did not fit (yielding when the ring is full) and the consumer yields
//! when it finds nothing, because on a 2-core machine 2 producers and the consumer share the
//! cores: spinning would measure the scheduler. The measured time runs from a start barrier
//! until the consumer has received every packet.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use flowsteer_mpsc::ring;

const CAPACITY: usize = 1024;
/// The ring's name in the criterion groups (as `flowsteer-bench swq` names it).
const NAME: &str = "burst";
const BURSTS: [usize; 2] = [8, 32];
const PRODUCERS: [usize; 2] = [1, 2];

/// A packet handle: pointer-sized, like an mbuf pointer in `rte_ring` or an index into the pool.
type Handle = usize;

/// Every producer sends `bursts` bursts of `burst` handles; returns the time until the consumer
/// (this thread) received all of them.
fn run(producers: usize, burst: usize, bursts: u64) -> Duration {
    let (producer, mut consumer) = ring::<Handle>(CAPACITY).expect("valid capacity");
    let start = Arc::new(Barrier::new(producers + 1));
    let senders: Vec<_> = (0..producers)
        .map(|_| {
            let producer = producer.clone();
            let start = Arc::clone(&start);
            thread::spawn(move || {
                let mut items: Vec<Handle> = Vec::with_capacity(burst);
                start.wait();
                for b in 0..bursts {
                    items.extend((0..burst as Handle).map(|i| i.wrapping_add(b as Handle)));
                    while !items.is_empty() {
                        if producer.enqueue_burst(&mut items) == 0 {
                            thread::yield_now();
                        }
                    }
                }
            })
        })
        .collect();
    drop(producer);
    let total = producers as u64 * burst as u64 * bursts;
    let mut out: Vec<Handle> = Vec::with_capacity(burst);
    let mut received = 0u64;
    start.wait();
    let began = Instant::now();
    while received < total {
        out.clear();
        let taken = consumer.dequeue_burst(&mut out, burst);
        black_box(&out);
        received += taken as u64;
        if taken == 0 {
            thread::yield_now();
        }
    }
    let elapsed = began.elapsed();
    for sender in senders {
        sender.join().expect("producer thread");
    }
    elapsed
}

/// One thread, no contention: enqueue one burst, dequeue it. The floor of the ring's cost.
fn round_trip(burst: usize, iters: u64) -> Duration {
    let (producer, mut consumer) = ring::<Handle>(CAPACITY).expect("valid capacity");
    let mut items: Vec<Handle> = Vec::with_capacity(burst);
    let mut out: Vec<Handle> = Vec::with_capacity(burst);
    let began = Instant::now();
    for i in 0..iters {
        items.extend((0..burst as Handle).map(|h| h.wrapping_add(i as Handle)));
        let accepted = producer.enqueue_burst(&mut items);
        out.clear();
        let taken = consumer.dequeue_burst(&mut out, burst);
        black_box((&out, accepted, taken));
    }
    began.elapsed()
}

fn criterion_groups(c: &mut Criterion) {
    for producers in PRODUCERS {
        let mut group = c.benchmark_group(format!("mpsc/{producers}p1c"));
        group.measurement_time(Duration::from_secs(3));
        group.warm_up_time(Duration::from_secs(1));
        for burst in BURSTS {
            group.throughput(Throughput::Elements((burst * producers) as u64));
            group.bench_with_input(BenchmarkId::new(NAME, burst), &burst, |b, &burst| {
                b.iter_custom(|iters| run(producers, burst, iters))
            });
        }
        group.finish();
    }
    let mut group = c.benchmark_group("mpsc/round_trip");
    group.measurement_time(Duration::from_secs(2));
    for burst in BURSTS {
        group.throughput(Throughput::Elements(burst as u64));
        group.bench_with_input(BenchmarkId::new(NAME, burst), &burst, |b, &burst| {
            b.iter_custom(|iters| round_trip(burst, iters))
        });
    }
    group.finish();
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Nanoseconds per packet at every shape: the median of rounds of a fixed number of packets, so
/// that a burst of load from elsewhere on a shared machine moves one round, not the figure.
fn summary() {
    const PACKETS: u64 = 2_000_000;
    const ROUNDS: usize = 9;
    println!();
    println!(
        "mpsc summary: ring of {CAPACITY}, {ROUNDS} rounds of {PACKETS} packets, median ns/packet"
    );
    println!("{:<10} {:>6} {:>10}", "producers", "burst", "ns/pkt");
    for producers in PRODUCERS {
        for burst in BURSTS {
            let bursts = PACKETS / (producers * burst) as u64;
            let times: Vec<f64> = (0..ROUNDS)
                .map(|_| {
                    let elapsed = run(producers, burst, bursts);
                    elapsed.as_nanos() as f64 / (bursts * (producers * burst) as u64) as f64
                })
                .collect();
            println!("{:<10} {:>6} {:>10.2}", producers, burst, median(times));
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let summary_only = args.iter().any(|a| a == "--summary-only");
    // `cargo test --benches` runs each benchmark once in test mode; the summary is for timing.
    let test_mode = args.iter().any(|a| a == "--test" || a == "--list");
    if !summary_only {
        let mut criterion = Criterion::default().configure_from_args();
        criterion_groups(&mut criterion);
        criterion.final_summary();
    }
    if !test_mode {
        summary();
    }
}
