//! The rte_distributor peer: one distributor thread receives every queue's frames (the engine's
//! generator runs inline in its receive bursts, as in the ltran baseline), tags each mbuf with
//! its flow and hands the burst to `rte_distributor_process`; each worker (a stack thread) asks
//! for work with `rte_distributor_request_pkt` / `poll_pkt`, gives what it gets to the engine's
//! [`VerifyingSink`] (which parses, checks the stamp and frees) and asks again.
//!
//! Tag: the frame's RSS hash, which a NIC delivers in `mbuf->hash.rss`, the same bytes as
//! `hash.usr`: one flow, one tag, and the distributor thread parses nothing (DPDK's
//! distributor sample does the same). The distributor keeps a tag on the worker that has its
//! packets in flight or in backlog and gives an idle tag to the next worker round-robin: it
//! balances load and keeps a flow's packets in order, but has no notion of an owner, so a flow
//! whose socket is on another stack thread is processed where it lands (`misdirected`).
//!
//! The workers free their packets themselves (as the engine's threads do) and return none to
//! the distributor, whose `returned_pkts` must then stay empty (checked). The distributor never
//! drops: it waits for a worker whose backlog is full. Shutdown: the distributor stops receiving,
//! hands out its backlog and flushes (`rte_distributor_flush`, which waits until the workers
//! took everything), then tells the workers it is done and keeps answering their requests with
//! empty bursts until every worker has left: a worker's request spins until the distributor has
//! taken the previous one, so a distributor that stopped answering would hold a worker for
//! ever.
//!
//! Threads: the distributor alone on the first allowed CPU, the workers round-robin on the
//! others; workers that share a core yield it when they find nothing, as the ltran baseline's
//! stack threads do.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use dpdk_sys::distributor::{self, Algorithm, DistributorCore, DistributorWorker, BURST};
use dpdk_sys::{eal, ffi};
use flowsteer_config::Config;
use flowsteer_nic::pool::{PacketPool, PktBuf};
use flowsteer_nic::port::QueuePair;
use flowtable::{FlowTable, ThreadId};
use forwarder::sink::{Origin, VerifyingSink};
use forwarder::stats::EngineStats;

use super::frames::{free_mbufs, from_mbuf, into_tagged_mbuf, Frames, PeerReport, Phases};
use crate::ltran::cpu;
use crate::window::Window;

/// Makes distributor names unique in the process (DPDK cannot free a distributor).
static NAME_SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// What the distributor thread counted.
#[derive(Default)]
struct CoreCounts {
    rx: u64,
    distributed: u64,
    /// Taken by no worker (none active) when the run ended.
    no_worker: u64,
    /// Mbufs the workers handed back (none expected).
    returned: u64,
    /// Of those, after the flush (their count only: they cannot be freed any more in order).
    returned_late: u64,
    unusable: u64,
    phases: Phases,
}

/// What one worker counted besides its [`EngineStats`].
#[derive(Default)]
struct WorkerCounts {
    unusable: u64,
    phases: Phases,
}

/// Runs the peer with `workers` workers on the frames of `config` (`listeners` in the bench), a
/// warm-up, then a window of `duration`.
pub(super) fn run(
    config: &Config,
    workers: u16,
    algorithm: Algorithm,
    duration: Duration,
) -> Result<PeerReport, String> {
    let mut frames = Frames::new(config)?;
    let queues = std::mem::take(&mut frames.queues);
    let name = format!(
        "fsdist{}",
        NAME_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let (core, handles) = distributor::create(&name, u32::from(workers), algorithm)
        .map_err(|e| format!("distributor: {e}"))?;
    let threads = usize::from(workers);
    let stats = EngineStats::new(threads);
    let stop = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let left = AtomicUsize::new(0);
    let cpus = cpu::allowed().unwrap_or_default();
    let worker_cpus = cpus.len().saturating_sub(1);
    let shared = worker_cpus > 0 && threads > worker_cpus;
    let placement = if worker_cpus == 0 {
        format!("1 distributor + {threads} worker(s), unpinned (fewer than 2 CPUs allowed)")
    } else {
        format!(
            "distributor alone on CPU {}, {threads} worker(s) on CPU(s) {:?}{}",
            cpus[0],
            &cpus[1..],
            if shared {
                " (sharing, yield when idle: more busy threads than cores, measures the scheduler too)"
            } else {
                ""
            }
        )
    };
    let burst = usize::from(config.engine.burst);
    let cache_size = config.pool.cache;
    let (table, pool) = (frames.table.clone(), frames.pool.clone());

    let (core_counts, worker_counts, window) = thread::scope(|s| {
        let workers: Vec<_> = handles
            .into_iter()
            .enumerate()
            .map(|(t, handle)| {
                let (table, pool, stats, done, left) = (table.clone(), &pool, &stats, &done, &left);
                let pin = (worker_cpus > 0).then(|| cpus[1 + t % worker_cpus]);
                thread::Builder::new()
                    .name(format!("dist-worker-{t}"))
                    .spawn_scoped(s, move || {
                        if let Some(core) = pin {
                            cpu::pin(core);
                        }
                        // Counted however the worker ends, so that the distributor stops waiting.
                        let _left = Countdown(left);
                        worker(
                            t as ThreadId,
                            handle,
                            table,
                            pool,
                            cache_size,
                            stats,
                            done,
                            shared,
                        )
                    })
            })
            .collect();
        let distributor = {
            let (pool, stop, done, left) = (&pool, &stop, &done, &left);
            let pin = (worker_cpus > 0).then(|| cpus[0]);
            thread::Builder::new()
                .name("distributor".to_string())
                .spawn_scoped(s, move || {
                    if let Some(core) = pin {
                        cpu::pin(core);
                    }
                    // Set however the distributor ends, so that no worker waits for ever.
                    let _done = DoneGuard(done);
                    let mut core = core;
                    let mut counts = distribute(&mut core, queues, pool, cache_size, burst, stop);
                    done.store(true, Ordering::Release);
                    // Answer the workers' last requests until all have left.
                    while left.load(Ordering::Acquire) < threads {
                        // SAFETY: no mbuf is passed.
                        unsafe { core.process(&mut []) };
                        counts.returned_late +=
                            core.returned(&mut [std::ptr::null_mut(); 8]) as u64;
                    }
                    counts
                })
        };
        let (distributor, workers) = match (
            distributor,
            workers.into_iter().collect::<Result<Vec<_>, _>>(),
        ) {
            (Ok(d), Ok(w)) => (d, w),
            (d, w) => {
                stop.store(true, Ordering::Relaxed);
                done.store(true, Ordering::Release);
                left.store(threads, Ordering::Release);
                drop((d, w));
                return Err("cannot spawn the distributor's threads".to_string());
            }
        };
        let window = Window::measure(&stats, duration);
        stop.store(true, Ordering::Relaxed);
        let core_counts = distributor.join();
        let worker_counts: Vec<_> = workers.into_iter().map(|h| h.join()).collect();
        match (
            core_counts,
            worker_counts.into_iter().collect::<Result<Vec<_>, _>>(),
        ) {
            (Ok(c), Ok(w)) => Ok((c, w, window)),
            _ => Err("a distributor thread panicked".to_string()),
        }
    })?;

    let mut report = PeerReport {
        window,
        rx: core_counts.rx,
        handed: core_counts.distributed,
        crossed: core_counts.distributed,
        placement,
        receiving: core_counts.phases,
        processing: Phases::sum(&worker_counts.iter().map(|w| w.phases).collect::<Vec<_>>()),
        ..PeerReport::default()
    };
    report.drop_count("no_worker", core_counts.no_worker);
    report.drop_count(
        "unusable_mbuf",
        core_counts.unusable + worker_counts.iter().map(|w| w.unusable).sum::<u64>(),
    );
    if core_counts.returned + core_counts.returned_late > 0 {
        report.failures.push(format!(
            "{} mbufs came back to the distributor although no worker returns any",
            core_counts.returned + core_counts.returned_late
        ));
        report.drop_count("returned", core_counts.returned);
    }
    report.account(&stats, frames.finish());
    Ok(report)
}

/// Counts a worker as gone, when dropped.
struct Countdown<'a>(&'a AtomicUsize);

impl Drop for Countdown<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// Announces that the distributor is done (flushed, nothing more for the workers), when dropped.
struct DoneGuard<'a>(&'a AtomicBool);

impl Drop for DoneGuard<'_> {
    fn drop(&mut self) {
        // Release pairs with the workers' Acquire: the flush happened before.
        self.0.store(true, Ordering::Release);
    }
}

/// The distributor thread: receive every queue, tag, distribute; flush at the end.
fn distribute<Q: QueuePair>(
    core: &mut DistributorCore,
    mut queues: Vec<Q>,
    pool: &Arc<PacketPool>,
    cache_size: u32,
    burst: usize,
    stop: &AtomicBool,
) -> CoreCounts {
    let mut cache = pool.cache(cache_size);
    let mut counts = CoreCounts::default();
    let mut rx: Vec<PktBuf> = Vec::with_capacity(burst);
    // Mbufs not taken yet (no worker active: only before the workers' first request).
    let mut pending: Vec<*mut ffi::rte_mbuf> = Vec::with_capacity(burst);
    let mut mark = eal::tsc();
    while !stop.load(Ordering::Relaxed) {
        for q in queues.iter_mut() {
            if pending.is_empty() {
                let n = q.rx_burst(&mut cache, &mut rx, burst);
                counts.rx += n as u64;
                pending.extend(rx.drain(..).map(|pkt| {
                    let tag = pkt.rss_hash();
                    into_tagged_mbuf(pkt, tag)
                }));
                Phases::lap(&mut counts.phases.receive, &mut mark);
            }
            if pending.is_empty() {
                continue;
            }
            // SAFETY: every pointer is an mbuf of the pool this thread owns (just converted
            // from its handle), listed once; the distributor takes ownership of those it takes.
            let taken = unsafe { core.process(&mut pending) };
            counts.distributed += taken as u64;
            pending.drain(..taken);
            Phases::lap(&mut counts.phases.hand_over, &mut mark);
        }
    }
    // Hand out the backlog, wait until the workers took it; what no worker took is dropped.
    core.flush();
    // SAFETY: the pending mbufs are still this thread's (process did not take them).
    counts.unusable += unsafe { free_mbufs(&pending, &mut cache) };
    counts.no_worker += pending.len() as u64;
    let mut back = [std::ptr::null_mut(); 64];
    loop {
        let n = core.returned(&mut back);
        if n == 0 {
            break;
        }
        counts.returned += n as u64;
        // SAFETY: returned mbufs are the distributor's caller's again, each listed once.
        counts.unusable += unsafe { free_mbufs(&back[..n], &mut cache) };
    }
    counts
}

/// A worker: ask, process what comes, free, ask again; leave once the distributor is done (it
/// flushed, so every packet it took has been polled by a worker, and processed, since the
/// check comes after the processing).
#[allow(clippy::too_many_arguments)]
fn worker(
    me: ThreadId,
    mut handle: DistributorWorker,
    table: Arc<dyn FlowTable>,
    pool: &Arc<PacketPool>,
    cache_size: u32,
    stats: &EngineStats,
    done: &AtomicBool,
    shared_core: bool,
) -> WorkerCounts {
    let stats = stats.thread(usize::from(me));
    let sink = VerifyingSink::new(me, table, false);
    let mut cache = pool.cache(cache_size);
    let mut counts = WorkerCounts::default();
    let mut got = [std::ptr::null_mut(); BURST];
    let mut handed: Vec<PktBuf> = Vec::with_capacity(BURST);
    let mut mark = eal::tsc();
    // SAFETY: nothing is returned.
    unsafe { handle.request(&[]) };
    while !done.load(Ordering::Acquire) {
        stats.polls.add(1);
        let Some(n) = handle.poll(&mut got) else {
            stats.idle_polls.add(1);
            if shared_core {
                thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
            Phases::lap(&mut counts.phases.idle, &mut mark);
            continue;
        };
        Phases::lap(&mut counts.phases.hand_over, &mut mark);
        for &m in &got[..n] {
            // SAFETY: the distributor handed m to this worker, which owns it now.
            match unsafe { from_mbuf(m) } {
                Some(buf) => handed.push(buf),
                None => counts.unusable += 1,
            }
        }
        if !handed.is_empty() {
            sink.consume(&mut handed, Origin::Handoff, false, &mut cache, stats);
        }
        Phases::lap(&mut counts.phases.process, &mut mark);
        // SAFETY: nothing is returned (the sink freed the packets).
        unsafe { handle.request(&[]) };
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dpdk_peers::frames::listeners_for_test as listeners;

    fn accounts_for_every_packet(workers: u16, algorithm: Algorithm) {
        let Some(cfg) = listeners() else { return };
        let report = run(&cfg, workers, algorithm, Duration::from_millis(200)).unwrap();
        report.assert_accounted();
        assert_eq!(report.handed, report.processed, "{:?}", report.dropped);
    }

    #[test]
    fn a_short_burst_run_with_one_worker_accounts_for_every_packet() {
        accounts_for_every_packet(1, Algorithm::Burst);
    }

    #[test]
    fn a_short_burst_run_with_two_workers_accounts_for_every_packet() {
        accounts_for_every_packet(2, Algorithm::Burst);
    }

    #[test]
    fn a_short_single_run_accounts_for_every_packet() {
        accounts_for_every_packet(2, Algorithm::Single);
    }
}
