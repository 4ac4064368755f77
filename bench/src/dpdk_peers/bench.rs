//! The `dpdk-peers` run: the engine's software balancing, rte_distributor and eventdev on the
//! same `listeners` configuration, [`REPS`] rounds in which every contender runs once (the first
//! one rotating), then one table with each contender's median rate and the engine's ratio to it,
//! against the targets (software ≥ 2× rte_distributor, ≥ 1.5× eventdev).
//!
//! Contenders, with `--threads N` stack threads (2 by default, on a 2-core machine):
//! - the engine: N stack threads pinned to CPUs 0..N, software balancing, uveth and its
//!   generator (the uveth rows of `engine`);
//! - the engine on the DPDK ring port (`port.driver = "dpdk"` with the generator: its frames
//!   are mbufs through `rte_eth_rx_burst`, as the peers'), the row the targets are held to;
//! - rte_distributor, burst algorithm, 1 distributor + N-1 workers: as many busy threads as the
//!   engine, the distributor's core taken from the stack threads;
//! - rte_distributor, burst, 1 + N workers: every stack thread a worker plus the distributor's
//!   own core; with more threads than cores it measures the scheduler too (the row says so);
//! - rte_distributor, single algorithm, 1 + N-1: the original one-packet hand-over, to show why
//!   the burst algorithm is the one compared;
//! - eventdev `event_dsw`, atomic queues, N stack threads (no service core);
//! - eventdev `event_dsw`, parallel queues (the same with the scheduling type changed);
//! - eventdev `event_sw`, atomic queues, N stack threads + 1 scheduler thread.

use std::thread;
use std::time::Duration;

use dpdk_sys::distributor::Algorithm;
use dpdk_sys::eal;
use flowsteer_config::{Balance, Config, Driver, Profile};
use forwarder::engine::Engine;

use super::distributor;
use super::eventdev::{self, Device, Sched};
use super::frames::{PeerReport, Phases};
use crate::competitors;
use crate::measure::{Summary, REPS};
use crate::table::{num, Align, Table};
use crate::window::{Window, WARMUP};
use crate::Options;

/// Traffic flows of every run (as `engine`).
const FLOWS: u32 = 4096;

/// The targets: the engine's software balancing over rte_distributor and over eventdev.
const TARGET_DISTRIBUTOR: f64 = 2.0;
const TARGET_EVENTDEV: f64 = 1.5;

/// One design under test.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Contender {
    Engine,
    EngineOnDpdk,
    Distributor { workers: u16, algorithm: Algorithm },
    EventDev { device: Device, sched: Sched },
}

impl Contender {
    fn name(self) -> String {
        match self {
            Contender::Engine => "engine, software balancing (uveth)".to_string(),
            Contender::EngineOnDpdk => "engine, software balancing (DPDK ring port)".to_string(),
            Contender::Distributor { algorithm, .. } => format!(
                "rte_distributor, {}",
                match algorithm {
                    Algorithm::Burst => "burst",
                    Algorithm::Single => "single",
                }
            ),
            Contender::EventDev { device, sched } => format!(
                "eventdev {}, {}",
                device.name(),
                match sched {
                    Sched::Atomic => "atomic",
                    Sched::Parallel => "parallel",
                }
            ),
        }
    }

    fn threads(self, stack: u16) -> String {
        match self {
            Contender::Engine | Contender::EngineOnDpdk => format!("{stack} stack"),
            Contender::Distributor { workers, .. } => format!("1 dist + {workers} worker"),
            Contender::EventDev {
                device: Device::Sw, ..
            } => format!("{stack} stack + 1 sched"),
            Contender::EventDev { .. } => format!("{stack} stack"),
        }
    }

    /// The target this row is held to, if any.
    fn target(self, stack: u16) -> Option<f64> {
        match self {
            Contender::Distributor {
                workers,
                algorithm: Algorithm::Burst,
            } if workers + 1 == stack.max(2) => Some(TARGET_DISTRIBUTOR),
            Contender::EventDev {
                device: Device::Dsw,
                sched: Sched::Atomic,
            } => Some(TARGET_EVENTDEV),
            _ => None,
        }
    }
}

/// One run of a contender: its window and, for a peer, its report.
struct Run {
    window: Window,
    peer: Option<PeerReport>,
    failures: Vec<String>,
}

/// The engine's configuration on `listeners`; the stack threads pinned to CPUs 0..threads when
/// there are that many.
fn config(threads: u16) -> Config {
    let mut cfg = Config::default();
    if usize::from(threads) <= thread::available_parallelism().map_or(1, |n| n.get()) {
        cfg.engine.cores = (0..threads).collect();
    }
    cfg.engine.threads = threads;
    cfg.port.queues = threads;
    cfg.engine.balance = Balance::Software;
    cfg.traffic.profile = Profile::Listeners;
    cfg.traffic.flows = FLOWS;
    cfg.metrics.enabled = false;
    cfg
}

fn run_once(contender: Contender, threads: u16, duration: Duration) -> Result<Run, String> {
    let mut cfg = config(threads);
    match contender {
        Contender::Engine | Contender::EngineOnDpdk => {
            if contender == Contender::EngineOnDpdk {
                // The generator's ring device, in the EAL the bench started.
                cfg.port.driver = Driver::Dpdk;
            }
            let engine = Engine::start(&cfg, false).map_err(|e| e.to_string())?;
            let window = Window::measure(&engine.shared().stats, duration);
            let report = engine.stop().map_err(|e| e.to_string())?;
            Ok(Run {
                window,
                peer: None,
                failures: report.conservation.failures,
            })
        }
        Contender::Distributor { workers, algorithm } => {
            let report = distributor::run(&cfg, workers, algorithm, duration)?;
            Ok(Run {
                window: report.window,
                failures: report.failures.clone(),
                peer: Some(report),
            })
        }
        Contender::EventDev { device, sched } => {
            let report = eventdev::run(&cfg, device, sched, duration)?;
            Ok(Run {
                window: report.window,
                failures: report.failures.clone(),
                peer: Some(report),
            })
        }
    }
}

/// Runs the comparison and prints its table.
pub(super) fn run(opts: &Options) -> Result<(), String> {
    competitors::dpdk_ready()?;
    let threads = opts.threads;
    let duration = Duration::from_secs_f64(opts.seconds);
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let fair_workers = threads.saturating_sub(1).max(1);
    let contenders = [
        Contender::Engine,
        Contender::EngineOnDpdk,
        Contender::Distributor {
            workers: fair_workers,
            algorithm: Algorithm::Burst,
        },
        Contender::Distributor {
            workers: threads,
            algorithm: Algorithm::Burst,
        },
        Contender::Distributor {
            workers: fair_workers,
            algorithm: Algorithm::Single,
        },
        Contender::EventDev {
            device: Device::Dsw,
            sched: Sched::Atomic,
        },
        Contender::EventDev {
            device: Device::Dsw,
            sched: Sched::Parallel,
        },
        Contender::EventDev {
            device: Device::Sw,
            sched: Sched::Atomic,
        },
    ];
    let mut runs: Vec<Vec<Run>> = contenders.iter().map(|_| Vec::new()).collect();
    let mut errors: Vec<String> = Vec::new();
    for round in 0..REPS {
        for offset in 0..contenders.len() {
            let i = (round + offset) % contenders.len();
            match run_once(contenders[i], threads, duration) {
                Ok(run) => runs[i].push(run),
                Err(e) => errors.push(format!("{}: {e}", contenders[i].name())),
            }
        }
    }

    let mut table = Table::new(
        format!(
            "DPDK peers: listeners, {threads} stack threads, {cores} cores, median of {REPS} runs \
             per row"
        ),
        &[
            ("design", Align::Left),
            ("threads", Align::Left),
            ("Mpps", Align::Right),
            ("spread%", Align::Right),
            ("crossed%", Align::Right),
            ("misdirect%", Align::Right),
            ("dropped", Align::Right),
            ("dpdk-engine/this", Align::Right),
            ("target", Align::Left),
        ],
    );
    table.describe(format!(
        "same configuration, flows ({FLOWS}), rules and generated frames; every processed packet \
         goes through the engine's verifying sink; each run: {} ms warm-up, a {} s window on \
         the stack threads' counters; the rows' runs alternate, {REPS} rounds",
        WARMUP.as_millis(),
        opts.seconds
    ));
    table.describe(
        "engine: stack thread i pinned to CPU i, spinning; on uveth its frames are the heap \
         pool's buffers, on the DPDK ring port mbufs received with rte_eth_rx_burst; the peers' \
         are mbufs of a DPDK mempool",
    );
    table.describe(
        "rte_distributor: the distributor thread receives every queue, tags each mbuf with its \
         RSS hash (hash.usr) and distributes; the workers process and free; on its own CPU, \
         workers on the others (sharing: yield when idle)",
    );
    table.describe(
        "eventdev: each stack thread receives its queue, looks up the owner, enqueues every \
         packet as an event to the owner's queue (flow id: the flow key's hash), dequeues its \
         own; stack threads pinned as the engine's",
    );
    table.describe(
        "crossed% = packets handed to a thread other than the receiving one; dropped: the \
         engine's in its windows, the peers' over whole runs; Mpps = processed / s, all stack \
         threads; dpdk-engine/this = the engine on the DPDK ring port over this row, > 1 = the \
         engine faster (the targets are held to it)",
    );
    if usize::from(threads) + 1 > cores {
        table.describe(format!(
            "rows with more busy threads than the {cores} cores measure the scheduler too: \
             rte_distributor 1 + {threads}, event_sw's scheduler"
        ));
    }
    let summary = |i: usize| {
        let rates: Vec<f64> = runs[i].iter().map(|r| r.window.mpps() * 1e6).collect();
        Summary::from_rates(&rates, usize::from(threads))
    };
    // The targets are the engine's on the DPDK port: the peers' frames are mbufs too.
    let engine = summary(1);
    let mut verdicts = Vec::new();
    for (i, contender) in contenders.iter().enumerate() {
        let s = summary(i);
        // Windows: processed and misdirected; the engine's drops and crossings in its windows,
        // the peers' over whole runs (a distributor's drops are its own, not its workers').
        let counts = runs[i].iter().fold((0, 0, 0, 0, 0), |t, r| {
            let c = r.window.counts;
            let (crossed, of, dropped) = match &r.peer {
                Some(p) => (p.crossed, p.handed, p.dropped_total()),
                None => (c.handed_off, c.processed, c.dropped),
            };
            (
                t.0 + c.processed,
                t.1 + crossed,
                t.2 + of,
                t.3 + c.misdirected,
                t.4 + dropped,
            )
        });
        let ratio = match (engine, s) {
            (Some(e), Some(x)) => Some(e.ops_per_sec / x.ops_per_sec),
            _ => None,
        };
        let target = contender.target(threads);
        let verdict = match (target, ratio, i) {
            (_, _, 0 | 1) => "-".to_string(),
            (Some(t), Some(r), _) => {
                let met = r >= t;
                verdicts.push(format!(
                    "engine/{}: {} against a target of {t}: {}",
                    contender.name(),
                    num(r, 2),
                    if met { "met" } else { "NOT met" }
                ));
                format!(">= {t}: {}", if met { "met" } else { "not met" })
            }
            (Some(t), None, _) => format!(">= {t}: n/a"),
            (None, _, _) => String::new(),
        };
        table.row(vec![
            contender.name(),
            contender.threads(threads),
            s.map_or("n/a".to_string(), |s| num(s.mops(), 3)),
            s.map_or("n/a".to_string(), |s| num(s.spread_pct(), 0)),
            num(Window::percent(counts.1, counts.2), 1),
            num(Window::percent(counts.3, counts.0), 1),
            counts.4.to_string(),
            if i == 1 {
                "-".to_string()
            } else {
                ratio.map_or("n/a".to_string(), |r| num(r, 2))
            },
            verdict,
        ]);
    }
    for v in verdicts {
        table.note(v);
    }
    table.note(format!(
        "one cache line's round trip between CPU {} and CPU {} (two pinned threads bouncing it, \
         the floor of every hand-over that waits for an answer): {} ns",
        0,
        1,
        round_trip_ns().map_or("n/a (fewer than 2 CPUs)".to_string(), |ns| num(ns, 0))
    ));
    let hz = eal::tsc_hz() as f64;
    for (i, contender) in contenders.iter().enumerate() {
        let peers: Vec<&PeerReport> = runs[i].iter().filter_map(|r| r.peer.as_ref()).collect();
        if let Some(first) = peers.first() {
            table.note(format!(
                "{} placement: {}",
                contender.name(),
                first.placement
            ));
        }
        if !peers.is_empty() && hz > 0.0 {
            table.note(format!(
                "{}: {}",
                contender.name(),
                cycles_note(*contender, &peers, hz)
            ));
        }
    }
    let mut failures = errors;
    for (i, contender) in contenders.iter().enumerate() {
        for (round, run) in runs[i].iter().enumerate() {
            if !run.failures.is_empty() {
                failures.push(format!(
                    "{} run {}: {}",
                    contender.name(),
                    round + 1,
                    run.failures.join("; ")
                ));
            }
        }
    }
    let peer_runs: Vec<&PeerReport> = runs
        .iter()
        .flatten()
        .filter_map(|r| r.peer.as_ref())
        .collect();
    let (rx, processed, dropped, handed) = peer_runs.iter().fold((0, 0, 0, 0), |t, p| {
        (
            t.0 + p.rx,
            t.1 + p.processed,
            t.2 + p.dropped_total(),
            t.3 + p.handed,
        )
    });
    table.note(format!(
        "conservation (rx = processed + dropped, every mbuf back; engine: its own check): {}; \
         the peers' {} runs: rx {rx} = processed {processed} + dropped {dropped}, {handed} \
         through the distributor or the event device",
        if failures.is_empty() {
            "ok on every run".to_string()
        } else {
            format!("FAILED: {}", failures.join("; "))
        },
        peer_runs.len()
    ));
    table.print();
    if failures.is_empty() {
        Ok(())
    } else {
        Err("a run failed (see the notes under the table)".to_string())
    }
}

/// Where a peer's time went, in ns per processed packet over all its runs (whole runs, warm-up
/// included; the work on dropped packets is in it too).
fn cycles_note(contender: Contender, peers: &[&PeerReport], hz: f64) -> String {
    let processed: u64 = peers.iter().map(|p| p.processed).sum();
    let receiving = Phases::sum(&peers.iter().map(|p| p.receiving).collect::<Vec<_>>());
    let processing = Phases::sum(&peers.iter().map(|p| p.processing).collect::<Vec<_>>());
    let ns = |cycles: u64| num(cycles as f64 / hz * 1e9 / processed.max(1) as f64, 1);
    match contender {
        Contender::Distributor { .. } => format!(
            "ns per processed packet: distributor thread {} receive + tag, {} rte_distributor_process \
             (waiting for workers included); workers together {} in polls that got work, {} \
             processing, {} in polls that found none",
            ns(receiving.receive),
            ns(receiving.hand_over),
            ns(processing.hand_over),
            ns(processing.process),
            ns(processing.idle)
        ),
        _ => format!(
            "ns per processed packet, stack threads together: {} receive + classify + lookup + event \
             build, {} enqueue + dequeue, {} processing, {} idle",
            ns(receiving.receive),
            ns(receiving.hand_over),
            ns(receiving.process),
            ns(receiving.idle)
        ),
    }
}

/// Nanoseconds for one cache line to go from the first allowed CPU to the second and back: two
/// pinned threads flip a shared counter in turn, 20 000 times. `None` with fewer than 2 CPUs.
fn round_trip_ns() -> Option<f64> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;
    const TRIPS: u64 = 20_000;
    let cpus = crate::ltran::cpu::allowed().ok()?;
    let (&first, &second) = (cpus.first()?, cpus.get(1)?);
    let line = crossbeam_utils::CachePadded::new(AtomicU64::new(0));
    let wait_for = |value: u64| {
        while line.load(Ordering::Acquire) != value {
            std::hint::spin_loop();
        }
    };
    // Both ends on threads of their own, so the caller's CPU set is left alone.
    let elapsed = thread::scope(|s| {
        s.spawn(|| {
            crate::ltran::cpu::pin(second);
            for i in 0..TRIPS {
                wait_for(2 * i + 1);
                line.store(2 * i + 2, Ordering::Release);
            }
        });
        s.spawn(|| {
            crate::ltran::cpu::pin(first);
            let start = Instant::now();
            for i in 0..TRIPS {
                line.store(2 * i + 1, Ordering::Release);
                wait_for(2 * i + 2);
            }
            start.elapsed()
        })
        .join()
    })
    .ok()?;
    Some(elapsed.as_nanos() as f64 / TRIPS as f64)
}
