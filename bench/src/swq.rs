//! `swq`: the software queue. P producer threads (1 or 2) push bursts of 8 or 32 pointer-sized
//! handles into one ring; one consumer thread drains it with bursts of up to the engine's
//! `drain_limit`. flowsteer's burst ring runs, the crossbeam `ArrayQueue` baseline
//! ([`competitors::crossbeam`]), and DPDK's rte_ring (`RING_F_SC_DEQ`,
//! `rte_ring_mp_enqueue_burst` / `rte_ring_sc_dequeue_burst`) with `--features dpdk`.
//!
//! What is measured: handles the consumer took per second, in a fixed wall time; ns/packet is its
//! inverse, the cost per packet of the whole pipeline (producers and consumer run in parallel).
//! A producer whose burst did not fit keeps the rest and tops it up to a full burst again (the
//! engine would drop and count it; retrying keeps the ring the bottleneck, not the producer).
//!
//! Correctness is checked on every handle of every run: each carries its producer and a sequence
//! number, the consumer checks that each producer's sequence arrives complete and in order, and
//! that everything accepted came out. A failure is an error, not a figure.
//!
//! A producer that finds the ring full, or the consumer that finds it empty, yields its core
//! before trying again: with more threads than cores (2 producers and a consumer on 2 cores, or
//! any other load on the machine) a spinning thread would otherwise burn the time slice the
//! thread it waits for needs. The yield is taken only on a call that moved nothing, the same for
//! every ring.
//!
//! Ring size: the engine's default `swq.size` (1024).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use flowsteer_config::Config;
use flowsteer_mpsc::{ring, Consumer, Producer};

use crate::competitors;
use crate::measure::{repeat, Summary, REPS};
use crate::table::{num, speed_ratio, Align, Table};
use crate::Options;

/// The enqueue side of a ring under test. Handles are `usize`: pointer-sized, as a packet handle.
pub trait Enqueue: Send {
    /// Moves the longest prefix of `batch` that fits into the ring out of `batch`.
    fn enqueue(&mut self, batch: &mut Vec<usize>);
}

/// The dequeue side of a ring under test (one per ring).
pub trait Dequeue: Send {
    /// Appends up to `max` handles to `out`; returns how many.
    fn dequeue(&mut self, out: &mut Vec<usize>, max: usize) -> usize;
}

impl Enqueue for Producer<usize> {
    #[inline]
    fn enqueue(&mut self, batch: &mut Vec<usize>) {
        self.enqueue_burst(batch);
    }
}

impl Dequeue for Consumer<usize> {
    #[inline]
    fn dequeue(&mut self, out: &mut Vec<usize>, max: usize) -> usize {
        self.dequeue_burst(out, max)
    }
}

/// The shape of one point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Producer threads (handles carry the producer in their 2 low bits: at most 4).
    pub producers: usize,
    /// Handles per enqueue.
    pub burst: usize,
    /// Most handles per dequeue.
    pub drain: usize,
}

/// Ring capacity used for every ring: the engine's default software queue size.
pub fn ring_size() -> usize {
    Config::default().swq.size
}

/// One repetition on fresh endpoints: returns the consumer's handles per second, or what the
/// correctness check found wrong.
pub fn rep<P: Enqueue, C: Dequeue>(
    producers: Vec<P>,
    mut consumer: C,
    shape: Shape,
    duration: Duration,
) -> Result<f64, String> {
    let count = producers.len();
    if count == 0 || count > 4 {
        return Err(format!("producers must be 1..=4, got {count}"));
    }
    let stop = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    let barrier = Barrier::new(count + 2);
    thread::scope(|s| {
        let handles: Vec<_> = producers
            .into_iter()
            .enumerate()
            .map(|(pid, mut p)| {
                let (stop, done, barrier) = (&stop, &done, &barrier);
                s.spawn(move || {
                    let mut batch = Vec::with_capacity(shape.burst);
                    let mut seq = 0usize;
                    barrier.wait();
                    while !stop.load(Ordering::Relaxed) {
                        while batch.len() < shape.burst {
                            batch.push(seq << 2 | pid);
                            seq += 1;
                        }
                        let before = batch.len();
                        p.enqueue(&mut batch);
                        if batch.len() == before {
                            // Full: give the core to the consumer if they share it.
                            thread::yield_now();
                        }
                    }
                    // Release pairs with the consumer's Acquire: every enqueue happened before.
                    done.fetch_add(1, Ordering::Release);
                    seq - batch.len()
                })
            })
            .collect();
        let drain = {
            let (stop, done, barrier) = (&stop, &done, &barrier);
            s.spawn(move || {
                let mut out = Vec::with_capacity(shape.drain);
                let mut expected = [0usize; 4];
                let mut disorder = 0u64;
                let mut taken = 0u64;
                let mut window: Option<(u64, Duration)> = None;
                barrier.wait();
                let start = Instant::now();
                loop {
                    let all_done = done.load(Ordering::Acquire) == count;
                    let n = consumer.dequeue(&mut out, shape.drain);
                    for &v in &out {
                        let (pid, seq) = (v & 3, v >> 2);
                        if seq != expected[pid] {
                            disorder += 1;
                        }
                        expected[pid] = seq + 1;
                    }
                    out.clear();
                    taken += n as u64;
                    if window.is_none() && stop.load(Ordering::Relaxed) {
                        window = Some((taken, start.elapsed()));
                    }
                    if n == 0 {
                        if all_done {
                            break;
                        }
                        // Empty: give the core to a producer if they share it.
                        thread::yield_now();
                    }
                }
                (
                    window.unwrap_or((taken, start.elapsed())),
                    expected,
                    disorder,
                )
            })
        };
        barrier.wait();
        thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        let accepted: Vec<usize> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect();
        let ((taken, elapsed), expected, disorder) = drain
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        if disorder > 0 {
            return Err(format!(
                "{disorder} handles out of order or duplicated (per-producer order violated)"
            ));
        }
        for (pid, &sent) in accepted.iter().enumerate() {
            if expected[pid] != sent {
                return Err(format!(
                    "producer {pid}: {sent} handles accepted but {} came out",
                    expected[pid]
                ));
            }
        }
        Ok(taken as f64 / elapsed.as_secs_f64().max(1e-9))
    })
}

/// flowsteer's ring, as the table names it.
const OURS: &str = "burst";

/// One repetition of the experiment on a fresh ring: the consumer's handles per second.
type Rep = fn(Shape, Duration) -> Result<f64, String>;

/// The rings of the experiment, in the order of their rows: flowsteer's, then the crossbeam
/// baseline.
const RINGS: [(&str, Rep); 2] = [
    (OURS, our_rep),
    (competitors::crossbeam::NAME, competitors::crossbeam::rep),
];

fn our_rep(shape: Shape, duration: Duration) -> Result<f64, String> {
    let (producer, consumer) = ring::<usize>(ring_size()).map_err(|e| e.to_string())?;
    let producers = (0..shape.producers).map(|_| producer.clone()).collect();
    drop(producer);
    rep(producers, consumer, shape, duration)
}

/// Runs `one_rep` as warm-up and [`REPS`] times; the first failure is the error.
fn summarize(mut one_rep: impl FnMut() -> Result<f64, String>) -> Result<Summary, String> {
    let mut failure = None;
    let summary = repeat(1, || match one_rep() {
        Ok(rate) => rate,
        Err(e) => {
            failure.get_or_insert(e);
            0.0
        }
    });
    match (failure, summary) {
        (Some(e), _) => Err(e),
        (None, Some(s)) => Ok(s),
        (None, None) => Err("no repetition consumed anything".to_string()),
    }
}

/// The ring whose ratio against the others is printed: flowsteer's, the engine's only one.
pub fn ours_name() -> &'static str {
    OURS
}

/// Runs the experiment and prints its table.
pub fn run(opts: &Options) -> Result<(), String> {
    let rep_time = Duration::from_secs_f64(opts.seconds / (REPS + 1) as f64);
    let drain = usize::try_from(Config::default().engine.drain_limit).unwrap_or(64);
    let ours = ours_name();
    let mut table = Table::new(
        "swq: P producers -> 1 consumer, burst enqueue / burst dequeue of pointer-sized handles, median of 5 repetitions",
        &[
            ("burst", Align::Right),
            ("producers", Align::Right),
            ("ring", Align::Left),
            ("ns/pkt", Align::Right),
            ("Mpkt/s", Align::Right),
            ("spread%", Align::Right),
            (&format!("{ours}/this"), Align::Right),
        ],
    );
    table.describe(format!(
        "{:.2} s per point; ring of {} slots; the consumer dequeues up to {drain} per call; \
         ns/pkt = wall time / packets the consumer took",
        opts.seconds,
        ring_size()
    ));
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    table.describe(format!(
        "threads unpinned on {cores} cores (2 producers + 1 consumer = 3 threads share them); \
         ratio = this row's ns/pkt / {ours}'s, >1 = {ours} faster"
    ));
    let dpdk = competitors::dpdk_ready();
    let mut notes = Vec::new();
    for burst in [8usize, 32] {
        for producers in [1usize, 2] {
            let shape = Shape {
                producers,
                burst,
                drain,
            };
            let mut results: Vec<(String, Summary)> = Vec::new();
            for (name, one_rep) in RINGS {
                let s = summarize(|| one_rep(shape, rep_time))
                    .map_err(|e| format!("{name} ring, {shape:?}: {e}"))?;
                results.push((name.to_string(), s));
            }
            if dpdk.is_ok() {
                match summarize(|| competitors::rte_ring_rep(shape, rep_time)) {
                    Ok(s) => results.push(("rte_ring".to_string(), s)),
                    Err(e) => notes.push(format!("rte_ring, {shape:?}: did not run: {e}")),
                }
            }
            let ours_ns = results
                .iter()
                .find(|(n, _)| n == ours)
                .map(|(_, s)| s.ns_per_op());
            for (name, s) in results {
                table.row(vec![
                    burst.to_string(),
                    producers.to_string(),
                    name.clone(),
                    num(s.ns_per_op(), 2),
                    num(s.mops(), 1),
                    num(s.spread_pct(), 0),
                    match ours_ns {
                        Some(_) if name == ours => "-".to_string(),
                        Some(o) => speed_ratio(o, s.ns_per_op()),
                        None => "n/a".to_string(),
                    },
                ]);
            }
        }
    }
    match &dpdk {
        Err(why) => table.note(format!("rte_ring: did not run: {why}")),
        Ok(()) => table.note(
            "rte_ring: MP enqueue / SC dequeue bursts through dpdk-sys (one shim call per burst; \
             handles copied to and from void* arrays, as the flowsteer rings move them into and out of Vecs)",
        ),
    }
    table.note(
        "checked on every run: per-producer order kept, no handle lost or duplicated".to_string(),
    );
    for n in notes {
        table.note(n);
    }
    table.print();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ring_passes_the_order_check_with_two_producers() {
        assert_eq!(RINGS.map(|(name, _)| name), ["burst", "crossbeam"]);
        for (name, one_rep) in RINGS {
            let shape = Shape {
                producers: 2,
                burst: 8,
                drain: 64,
            };
            let rate = one_rep(shape, Duration::from_millis(30)).unwrap();
            assert!(rate > 0.0, "{name}");
        }
    }

    /// A ring that loses a handle, to show the check catches it.
    struct Lossy(Vec<usize>);
    impl Enqueue for std::sync::Arc<std::sync::Mutex<Lossy>> {
        fn enqueue(&mut self, batch: &mut Vec<usize>) {
            let mut ring = self.lock().unwrap();
            for (i, v) in batch.drain(..).enumerate() {
                if i != 3 {
                    ring.0.push(v);
                }
            }
        }
    }
    impl Dequeue for std::sync::Arc<std::sync::Mutex<Lossy>> {
        fn dequeue(&mut self, out: &mut Vec<usize>, max: usize) -> usize {
            let mut ring = self.lock().unwrap();
            let n = ring.0.len().min(max);
            out.extend(ring.0.drain(..n));
            n
        }
    }

    #[test]
    fn a_lost_handle_is_an_error() {
        let shared = std::sync::Arc::new(std::sync::Mutex::new(Lossy(Vec::new())));
        let shape = Shape {
            producers: 1,
            burst: 8,
            drain: 64,
        };
        let err = rep(
            vec![shared.clone()],
            shared,
            shape,
            Duration::from_millis(10),
        )
        .unwrap_err();
        assert!(err.contains("out of order"), "{err}");
    }

    #[test]
    fn producer_count_is_checked() {
        let (_, consumer) = ring::<usize>(8).unwrap();
        let shape = Shape {
            producers: 0,
            burst: 8,
            drain: 8,
        };
        let none: Vec<Producer<usize>> = Vec::new();
        assert!(rep(none, consumer, shape, Duration::from_millis(1)).is_err());
    }
}
