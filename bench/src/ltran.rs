//! The ltran-style baseline: one dispatcher thread receives from every NIC queue, looks each
//! packet up, copies it into a fresh buffer (as openEuler gazelle's ltran copies every packet
//! across processes), frees the original and passes the copy to its owning stack thread over a
//! single-producer ring, one ring per stack thread. The stack threads consume with the engine's
//! [`VerifyingSink`], exactly as the engine's threads do with what is handed to them.
//!
//! It is built from the same parts as the engine run it is compared with: the same
//! configuration, [`PacketPool`], [`Uveth`] with its software RSS, [`TrafficPlan`] (generator and
//! installed rules), flow table, ring and burst sizes. The generator runs inline in
//! `rx_burst` as in the engine, so here the dispatcher pays it for every queue.
//!
//! Threads: one dispatcher plus `engine.threads` stack threads. With at least 2 CPUs allowed, the
//! dispatcher gets the first CPU to itself, as ltran gets its own cores, and the stack threads
//! are pinned round-robin to the others; on a 2-core machine both stack threads share the second
//! core. Stack threads that share a core yield it when they find nothing to drain (spinning there
//! would hold the core for a whole time slice while the other thread's ring overflows); a stack
//! thread alone on its core follows `engine.idle` as the engine's threads do. With one CPU
//! nothing is pinned. [`LtranReport::placement`] says which case ran.
//!
//! Accounting is the engine's: every received packet is processed by a stack thread or dropped
//! with a reason (`malformed`, `no_buffer` for a failed copy, `swq_full`, `owner_invalid`);
//! `rx == processed + dropped` is checked per stack thread and in total, and the pool must be back
//! to its full count after shutdown.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use flowsteer_config::{Config, Idle};
use flowsteer_mpsc::{ring, Consumer, Producer};
use flowsteer_nic::pool::{PacketPool, PktBuf};
use flowsteer_nic::port::QueuePair;
use flowsteer_nic::rss::Reta;
use flowsteer_nic::wire::{self, Classified};
use flowtable::{FlowKey, FlowTable, Lookup, ThreadId};
use forwarder::keys::flow_key;
use forwarder::sink::{Origin, VerifyingSink};
use forwarder::stats::EngineStats;

use crate::window::Window;

/// What a baseline run counted.
#[derive(Clone, Debug)]
pub struct LtranReport {
    /// What the stack threads counted in the measured window (after the warm-up).
    pub window: Window,
    /// Frames the dispatcher received.
    pub rx: u64,
    /// Frames copied and handed to a stack thread.
    pub handed_off: u64,
    /// Frames the stack threads processed.
    pub processed: u64,
    /// Processed frames of flows another thread owns (0 when the lookup is right).
    pub misdirected: u64,
    /// Drops by reason.
    pub dropped: BTreeMap<&'static str, u64>,
    /// Conservation failures, empty when every packet is accounted for and the pool is whole.
    pub failures: Vec<String>,
    /// Free buffers after shutdown, and the pool's size.
    pub pool: (u32, u32),
    /// Where the threads ran.
    pub placement: String,
}

impl LtranReport {
    /// All drops.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// Processed packets per second in the measured window, all stack threads together, in
    /// millions.
    pub fn mpps(&self) -> f64 {
        self.window.mpps()
    }
}

/// Announces that the dispatcher enqueues no more, when dropped.
struct DoneGuard<'a>(&'a AtomicBool);

impl Drop for DoneGuard<'_> {
    fn drop(&mut self) {
        // Release pairs with the stack threads' Acquire: every enqueue happened before.
        self.0.store(true, Ordering::Release);
    }
}

/// Dispatcher counters (single thread, returned at the end).
#[derive(Default)]
struct DispatchCounts {
    rx: u64,
    handed: Vec<u64>,
    malformed: u64,
    no_buffer: u64,
    swq_full: u64,
    owner_invalid: u64,
}

/// Runs the baseline with the engine configuration `config`: a warm-up, then a window of
/// `duration` measured on the stack threads' counters (see [`crate::window`]).
pub fn run(config: &Config, duration: Duration) -> Result<LtranReport, String> {
    let crate::generated::Generated {
        table,
        uveth,
        plan,
        queues,
    } = crate::generated::build(config)?;
    let threads = usize::from(config.engine.threads);
    let burst = usize::from(config.engine.burst);
    let drain_limit = config.engine.drain_limit as usize;
    let pool = PacketPool::new(config.pool.buffers, config.pool.data_room)
        .map_err(|e| format!("pool: {e}"))?;
    let mut producers = Vec::with_capacity(threads);
    let mut consumers = Vec::with_capacity(threads);
    for _ in 0..threads {
        let (p, c) = ring::<PktBuf>(config.swq.size).map_err(|e| e.to_string())?;
        producers.push(p);
        consumers.push(c);
    }
    // Packets with no rule and unkeyed ones go where software RSS over the threads sends them.
    let thread_reta = Reta::new(threads.next_power_of_two().max(64), config.engine.threads)
        .map_err(|e| format!("thread RETA: {e}"))?;
    let stats = EngineStats::new(threads);
    let stop = AtomicBool::new(false);
    let dispatcher_done = AtomicBool::new(false);
    let cpus = cpu::allowed().unwrap_or_default();
    let stack_cpus = cpus.len().saturating_sub(1);
    let placement = if stack_cpus == 0 {
        "unpinned (fewer than 2 CPUs allowed)".to_string()
    } else {
        format!(
            "dispatcher alone on CPU {}, {threads} stack thread(s) on CPU(s) {:?}{}",
            cpus[0],
            &cpus[1..],
            if threads > stack_cpus {
                " (sharing, yield when idle)"
            } else {
                ""
            }
        )
    };
    let stack_idle = if stack_cpus > 0 && threads > stack_cpus {
        Idle::Yield
    } else {
        config.engine.idle
    };

    let (counts, window) = thread::scope(|s| {
        let stacks: Vec<_> = consumers
            .into_iter()
            .enumerate()
            .map(|(t, consumer)| {
                let (table, pool, stats, done) = (table.clone(), &pool, &stats, &dispatcher_done);
                let cache_size = config.pool.cache;
                let core = (stack_cpus > 0).then(|| cpus[1 + t % stack_cpus]);
                thread::Builder::new()
                    .name(format!("ltran-stack-{t}"))
                    .spawn_scoped(s, move || {
                        if let Some(core) = core {
                            cpu::pin(core);
                        }
                        stack_thread(
                            t as ThreadId,
                            consumer,
                            table,
                            pool,
                            cache_size,
                            stats,
                            done,
                            drain_limit,
                            (stack_idle, config.engine.idle_sleep_us),
                        )
                    })
            })
            .collect();
        let dispatcher = {
            let (table, pool, stop, done) = (&*table, &pool, &stop, &dispatcher_done);
            let cache_size = config.pool.cache;
            let core = (stack_cpus > 0).then(|| cpus[0]);
            thread::Builder::new()
                .name("ltran-dispatch".to_string())
                .spawn_scoped(s, move || {
                    if let Some(core) = core {
                        cpu::pin(core);
                    }
                    // Set however the dispatcher ends (a panic too), so no stack thread waits.
                    let _done = DoneGuard(done);
                    let counts = dispatcher(
                        queues,
                        &producers,
                        table,
                        pool,
                        cache_size,
                        &thread_reta,
                        burst,
                        stop,
                    );
                    drop(producers);
                    counts
                })
        };
        let stop_all = || {
            stop.store(true, Ordering::Relaxed);
        };
        let (dispatcher, stacks) = match (
            dispatcher,
            stacks.into_iter().collect::<Result<Vec<_>, _>>(),
        ) {
            (Ok(d), Ok(st)) => (d, st),
            (d, st) => {
                stop_all();
                dispatcher_done.store(true, Ordering::Release);
                // Threads that did start see the flags and end; their results are discarded.
                drop((d, st));
                return Err("cannot spawn the baseline's threads".to_string());
            }
        };
        let window = Window::measure(&stats, duration);
        stop_all();
        let counts = dispatcher.join();
        let mut failed = counts.is_err();
        for h in stacks {
            failed |= h.join().is_err();
        }
        match counts {
            Ok(c) if !failed => Ok((c, window)),
            _ => Err("a baseline thread panicked".to_string()),
        }
    })?;

    drop(plan);
    let mut cache = pool.cache(0);
    uveth.drain_into(&mut cache);
    drop(cache);
    drop(uveth);
    let mut report = account(&counts, &stats, &pool);
    report.placement = placement;
    report.window = window;
    Ok(report)
}

/// CPU affinity of the baseline's threads.
pub(crate) mod cpu {
    /// The CPUs the calling thread may run on, ascending.
    pub fn allowed() -> Result<Vec<usize>, std::io::Error> {
        // SAFETY: cpu_set_t is plain data (all-zero is the empty set); sched_getaffinity writes
        // at most size_of::<cpu_set_t>() bytes into it, and CPU_ISSET reads inside it for
        // indices below CPU_SETSIZE.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok((0..libc::CPU_SETSIZE as usize)
                .filter(|&c| libc::CPU_ISSET(c, &set))
                .collect())
        }
    }

    /// Pins the calling thread to `core` (one of [`allowed`]); a failure leaves it unpinned,
    /// which only changes how the threads share the cores, not what is counted.
    pub fn pin(core: usize) {
        // SAFETY: as in `allowed`; CPU_SET writes inside the set because `core` came from
        // `allowed`, below CPU_SETSIZE; sched_setaffinity only reads the set.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(core, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}

fn account(counts: &DispatchCounts, stats: &EngineStats, pool: &PacketPool) -> LtranReport {
    let snapshots = stats.snapshot();
    let mut failures = Vec::new();
    let mut processed = 0;
    let mut misdirected = 0;
    for t in &snapshots {
        let handed = counts.handed.get(t.thread).copied().unwrap_or(0);
        if handed != t.processed_handoff {
            failures.push(format!(
                "stack thread {}: {handed} packets were handed to it but it processed {}",
                t.thread, t.processed_handoff
            ));
        }
        processed += t.processed();
        misdirected += t.misdirected;
    }
    let mut dropped = BTreeMap::new();
    for (reason, n) in [
        ("malformed", counts.malformed),
        ("no_buffer", counts.no_buffer),
        ("swq_full", counts.swq_full),
        ("owner_invalid", counts.owner_invalid),
    ] {
        if n > 0 {
            dropped.insert(reason, n);
        }
    }
    let dropped_total: u64 = dropped.values().sum();
    if counts.rx != processed + dropped_total {
        failures.push(format!(
            "total: rx {} != processed {processed} + dropped {dropped_total}",
            counts.rx
        ));
    }
    if pool.available() != pool.capacity() {
        failures.push(format!(
            "pool: {} of {} buffers free after shutdown",
            pool.available(),
            pool.capacity()
        ));
    }
    LtranReport {
        window: Window::default(),
        rx: counts.rx,
        handed_off: counts.handed.iter().sum(),
        processed,
        misdirected,
        dropped,
        failures,
        pool: (pool.available(), pool.capacity()),
        placement: String::new(),
    }
}

#[allow(clippy::too_many_arguments)]
fn dispatcher<Q: QueuePair>(
    mut queues: Vec<Q>,
    rings: &[Producer<PktBuf>],
    table: &dyn FlowTable,
    pool: &Arc<PacketPool>,
    cache_size: u32,
    thread_reta: &Reta,
    burst: usize,
    stop: &AtomicBool,
) -> DispatchCounts {
    let threads = rings.len();
    let mut cache = pool.cache(cache_size);
    let mut counts = DispatchCounts {
        handed: vec![0; threads],
        ..DispatchCounts::default()
    };
    let mut rx: Vec<PktBuf> = Vec::with_capacity(burst);
    let mut keyed: Vec<PktBuf> = Vec::with_capacity(burst);
    let mut keys: Vec<FlowKey> = Vec::with_capacity(burst);
    let mut hashes: Vec<u64> = Vec::with_capacity(burst);
    let mut results = vec![Lookup::Miss; burst];
    let mut outbound: Vec<Vec<PktBuf>> = (0..threads).map(|_| Vec::with_capacity(burst)).collect();
    while !stop.load(Ordering::Relaxed) {
        let mut received = 0;
        for q in queues.iter_mut() {
            let n = q.rx_burst(&mut cache, &mut rx, burst);
            if n == 0 {
                continue;
            }
            received += n;
            counts.rx += n as u64;
            keys.clear();
            hashes.clear();
            for pkt in rx.drain(..) {
                let owner = match wire::classify(pkt.data()) {
                    Ok(Classified::Flow { tuple, .. }) => match flow_key(&tuple) {
                        Some(key) => {
                            hashes.push(key.hash());
                            keys.push(key);
                            keyed.push(pkt);
                            continue;
                        }
                        None => thread_reta.queue(pkt.rss_hash()),
                    },
                    Ok(_) => thread_reta.queue(pkt.rss_hash()),
                    Err(_) => {
                        counts.malformed += 1;
                        cache.free(pkt);
                        continue;
                    }
                };
                route(pkt, owner, &mut outbound, &mut cache, &mut counts);
            }
            let k = keyed.len();
            table.lookup_bulk(&keys, &hashes, &mut results[..k]);
            for (pkt, result) in keyed.drain(..).zip(&results[..k]) {
                let owner = result
                    .owner()
                    .unwrap_or_else(|| thread_reta.queue(pkt.rss_hash()));
                route(pkt, owner, &mut outbound, &mut cache, &mut counts);
            }
            for (dest, batch) in outbound.iter_mut().enumerate() {
                if batch.is_empty() {
                    continue;
                }
                let accepted = rings[dest].enqueue_burst(batch);
                counts.handed[dest] += accepted as u64;
                counts.swq_full += batch.len() as u64;
                cache.free_bulk(batch);
            }
        }
        if received == 0 {
            std::hint::spin_loop();
        }
    }
    counts
}

/// Copies `pkt` into a fresh buffer for thread `owner` (as ltran copies across processes) and
/// frees the original; a copy that cannot be made is a `no_buffer` drop.
#[inline]
fn route(
    pkt: PktBuf,
    owner: ThreadId,
    outbound: &mut [Vec<PktBuf>],
    cache: &mut flowsteer_nic::pool::PoolCache,
    counts: &mut DispatchCounts,
) {
    let Some(batch) = outbound.get_mut(usize::from(owner)) else {
        counts.owner_invalid += 1;
        cache.free(pkt);
        return;
    };
    let Some(mut copy) = cache.alloc() else {
        counts.no_buffer += 1;
        cache.free(pkt);
        return;
    };
    match copy.write_frame(pkt.data()) {
        Ok(()) => {
            copy.set_rss_hash(pkt.rss_hash());
            batch.push(copy);
        }
        Err(_) => {
            // Same pool, same data room: unreachable; counted rather than lost.
            counts.no_buffer += 1;
            cache.free(copy);
        }
    }
    cache.free(pkt);
}

#[allow(clippy::too_many_arguments)]
fn stack_thread(
    me: ThreadId,
    mut consumer: Consumer<PktBuf>,
    table: Arc<dyn FlowTable>,
    pool: &Arc<PacketPool>,
    cache_size: u32,
    stats: &EngineStats,
    dispatcher_done: &AtomicBool,
    drain_limit: usize,
    (idle, idle_sleep_us): (Idle, u32),
) {
    let stats = stats.thread(usize::from(me));
    let sink = VerifyingSink::new(me, table.clone(), false);
    let mut cache = pool.cache(cache_size);
    let mut handed: Vec<PktBuf> = Vec::with_capacity(drain_limit);
    loop {
        let done = dispatcher_done.load(Ordering::Acquire);
        let n = consumer.dequeue_burst(&mut handed, drain_limit);
        stats.polls.add(1);
        if n > 0 {
            sink.consume(&mut handed, Origin::Handoff, false, &mut cache, stats);
        } else if done {
            break;
        } else {
            stats.idle_polls.add(1);
            match idle {
                Idle::Spin => std::hint::spin_loop(),
                // `wait` needs an afpacket port, which configuration refuses for this baseline's
                // uveth: never configured here, yielding is its nearest.
                Idle::Yield | Idle::Wait => thread::yield_now(),
                Idle::Sleep => thread::sleep(Duration::from_micros(u64::from(idle_sleep_us))),
            }
        }
    }
    table.remove_owner(me);
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowsteer_config::Profile;

    #[test]
    fn a_short_run_accounts_for_every_packet_and_copies_to_the_owner() {
        let mut cfg = Config::default();
        cfg.traffic.profile = Profile::Listeners;
        cfg.traffic.flows = 256;
        cfg.metrics.enabled = false;
        let report = run(&cfg, Duration::from_millis(200)).unwrap();
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert!(report.rx > 0);
        assert_eq!(report.misdirected, 0);
        assert_eq!(report.pool.0, report.pool.1);
        assert_eq!(report.rx, report.processed + report.dropped_total());
        let window = report.window.counts.processed;
        assert!(
            window > 0 && window < report.processed,
            "{window} of {}",
            report.processed
        );
        assert!(report.mpps() > 0.0);
    }

    #[test]
    fn a_configuration_the_bench_cannot_map_is_an_error() {
        let mut cfg = Config::default();
        cfg.engine.threads = 0;
        assert!(run(&cfg, Duration::from_millis(1)).is_err());
    }
}
