//! The engine: builds the port, the flow table, the software queues and the traffic, runs one stack
//! thread per configured thread, stops them cleanly and accounts for every packet.
//!
//! A stack thread's loop (DESIGN.md, "The data path of one stack thread"):
//! rx burst from its NIC queue → (software balancing) key, bulk lookup, one burst enqueue per owner
//! → drain its own software queue → process → tx. Threads without a NIC queue (more threads than
//! queues) only drain their software queue.
//!
//! Shutdown: the stop flag ends receiving; each thread then announces that it will enqueue no more
//! and keeps draining its own queue until every thread has announced and its queue is empty, so no
//! handed-off packet is left behind.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use flowsteer_config::{Balance, Config, Idle, RingImpl, TableImpl as TableChoice};
use flowsteer_mpsc::{Consumer, Producer, RingKind};
use flowsteer_nic::pool::{PacketPool, PktBuf};
use flowsteer_nic::port::QueuePair;
use flowsteer_nic::rss::Reta;
use flowsteer_nic::uveth::{Uveth, UvethConfig};
use flowtable::{FlowTable, TableImpl, ThreadId};

use crate::metrics::MetricsServer;
use crate::report::RunReport;
use crate::sink::{Origin, VerifyingSink};
use crate::stats::EngineStats;
use crate::status::StatusPrinter;
use crate::steer::Steering;
use crate::traffic::{SourceStats, TrafficPlan};

/// How a run is driven from outside.
pub struct RunOptions {
    /// Stop after this long (None: until `stop` is set).
    pub duration: Option<Duration>,
    /// Set from outside (signal handler, test) to stop the run.
    pub stop: Arc<AtomicBool>,
    /// Print one status line per second to stderr.
    pub status_lines: bool,
    /// Serve the metrics endpoint when the config enables it.
    pub serve_metrics: bool,
}

impl RunOptions {
    /// A run of fixed length with no status lines and no metrics server (tests).
    pub fn quiet(duration: Duration) -> Self {
        RunOptions {
            duration: Some(duration),
            stop: Arc::new(AtomicBool::new(false)),
            status_lines: false,
            serve_metrics: false,
        }
    }
}

/// Why a run could not start or finish.
#[derive(Debug)]
pub enum EngineError {
    /// A component could not be built; the message says which and why.
    Setup(String),
    /// A stack thread failed.
    Thread(String),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Setup(msg) => write!(f, "setup failed: {msg}"),
            EngineError::Thread(msg) => write!(f, "stack thread failed: {msg}"),
        }
    }
}

impl std::error::Error for EngineError {}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> EngineError + '_ {
    move |e| EngineError::Setup(format!("{what}: {e}"))
}

/// What every thread and the exporter share.
pub struct Shared {
    /// The effective configuration.
    pub config: Config,
    /// The flow table.
    pub table: Arc<dyn FlowTable>,
    /// The packet buffer pool.
    pub pool: Arc<PacketPool>,
    /// The user-space NIC.
    pub uveth: Uveth,
    /// Per-thread counters.
    pub stats: EngineStats,
    /// A producer handle of every thread's software queue (for depth gauges and for the threads).
    pub queues: Vec<Producer<PktBuf>>,
    /// Per-queue traffic generator counters.
    pub traffic: Arc<[SourceStats]>,
}

/// Runs the engine described by `config` until `opts` says stop; returns the final report.
pub fn run(config: &Config, opts: RunOptions) -> Result<RunReport, EngineError> {
    config
        .validate()
        .map_err(|e| EngineError::Setup(format!("invalid configuration:\n{e}")))?;
    let threads = usize::from(config.engine.threads);
    let queues = usize::from(config.port.queues);

    let table: Arc<dyn FlowTable> = Arc::from(flowtable::new_table(
        match config.flowtable.implementation {
            TableChoice::Bucketized => TableImpl::Bucketized,
            TableChoice::DashMap => TableImpl::DashMap,
        },
        config.flowtable.capacity,
    ));
    let pool =
        PacketPool::new(config.pool.buffers, config.pool.data_room).map_err(setup("pool"))?;
    let uveth = Uveth::new(UvethConfig {
        queues: config.port.queues,
        rss_key: config.port.rss_key.bytes(),
        reta_size: config.port.reta_size,
        ring_size: config.port.ring_size,
        mac: config.port.mac.0,
    })
    .map_err(setup("port (uveth)"))?;
    let mut plan =
        TrafficPlan::install(config, uveth.soft_rss(), &table).map_err(setup("traffic"))?;
    let ring_kind = match config.swq.ring {
        RingImpl::Burst => RingKind::Burst,
        RingImpl::Crossbeam => RingKind::Crossbeam,
    };
    let mut consumers = Vec::with_capacity(threads);
    let mut producers = Vec::with_capacity(threads);
    for _ in 0..threads {
        let (p, c) =
            flowsteer_mpsc::ring(config.swq.size, ring_kind).map_err(setup("software queue"))?;
        producers.push(p);
        consumers.push(c);
    }

    let shared = Arc::new(Shared {
        config: config.clone(),
        table,
        pool: pool.clone(),
        uveth,
        stats: EngineStats::new(threads),
        queues: producers,
        traffic: plan.stats(),
    });

    let metrics = if opts.serve_metrics && config.metrics.enabled {
        Some(
            MetricsServer::start(config.metrics.listen, shared.clone())
                .map_err(setup("metrics"))?,
        )
    } else {
        None
    };

    // The miss policy "rss" spreads unowned flows over all threads as a NIC with one queue per
    // thread would: a RETA of at least 64 entries keeps the spread even for thread counts that do
    // not divide it.
    let thread_reta = Reta::new(threads.next_power_of_two().max(64), config.engine.threads)
        .map_err(setup("thread RETA"))?;
    let stop_rx = Arc::new(AtomicBool::new(false));
    let done_producing = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut handles = Vec::with_capacity(threads);
    for (t, consumer) in consumers.into_iter().enumerate() {
        let queue = if t < queues {
            let q = t as u16;
            Some(
                shared
                    .uveth
                    .take_queue(q, plan.take_source(q))
                    .map_err(setup("port queue"))?,
            )
        } else {
            None
        };
        let ctx = ThreadContext {
            me: t as ThreadId,
            shared: shared.clone(),
            consumer,
            thread_reta: thread_reta.clone(),
            stop: stop_rx.clone(),
            done_producing: done_producing.clone(),
        };
        let core = config.engine.cores.get(t).copied();
        let handle = thread::Builder::new()
            .name(format!("fs-stack-{t}"))
            .spawn(move || -> Result<(), String> {
                if let Some(core) = core {
                    if let Err(e) = pin_to_core(usize::from(core)) {
                        ctx.done_producing.fetch_add(1, Ordering::Release);
                        return Err(e);
                    }
                }
                stack_thread(ctx, queue);
                Ok(())
            })
            .map_err(setup("spawning a stack thread"))?;
        handles.push(handle);
    }

    let mut status = opts.status_lines.then(|| StatusPrinter::new(&shared));
    let tick = Duration::from_millis(50);
    let mut next_status = started + Duration::from_secs(1);
    loop {
        if opts.stop.load(Ordering::Relaxed) {
            break;
        }
        if opts.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        if handles.iter().any(|h| h.is_finished()) {
            break; // a thread died early: stop the others and report the error below
        }
        thread::sleep(tick);
        if let Some(printer) = status.as_mut() {
            if Instant::now() >= next_status {
                printer.print_line(&shared, started.elapsed());
                next_status += Duration::from_secs(1);
            }
        }
    }
    stop_rx.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for (t, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("thread {t}: {e}")),
            Err(_) => failures.push(format!("thread {t}: panicked")),
        }
    }
    let elapsed = started.elapsed();
    drop(metrics);
    if !failures.is_empty() {
        return Err(EngineError::Thread(failures.join("; ")));
    }
    drop(plan);
    // Frames still on the port's rings (injected after the threads stopped, or transmitted and
    // never taken) go back to the pool before it is counted.
    let mut cache = shared.pool.cache(0);
    shared.uveth.drain_into(&mut cache);
    drop(cache);
    Ok(RunReport::build(shared, elapsed))
}

/// What one stack thread owns.
struct ThreadContext {
    me: ThreadId,
    shared: Arc<Shared>,
    consumer: Consumer<PktBuf>,
    /// Software RSS over the threads, for `engine.miss = "rss"`.
    thread_reta: Reta,
    stop: Arc<AtomicBool>,
    done_producing: Arc<AtomicUsize>,
}

/// Announces, once, that a thread will enqueue no more packets: on the normal path and when the
/// thread unwinds, so the other threads' shutdown drain never waits for a dead producer.
struct ProducingGuard<'a>(&'a AtomicUsize);

impl Drop for ProducingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

fn stack_thread<Q: QueuePair>(mut ctx: ThreadContext, mut queue: Option<Q>) {
    let done_producing = ctx.done_producing.clone();
    let producing = ProducingGuard(&done_producing);
    let shared = &*ctx.shared;
    let cfg = &shared.config.engine;
    let threads = usize::from(cfg.threads);
    let burst = usize::from(cfg.burst);
    let drain_limit = cfg.drain_limit as usize;
    let software = cfg.balance == Balance::Software;
    let stats = shared.stats.thread(usize::from(ctx.me));
    let table = &*shared.table;
    let mut cache = shared.pool.cache(shared.config.pool.cache);
    let mut steering = Steering::new(ctx.me, threads, burst, cfg.miss, ctx.thread_reta);
    let sink = VerifyingSink::new(ctx.me);
    let mut rx: Vec<PktBuf> = Vec::with_capacity(burst);
    let mut local: Vec<PktBuf> = Vec::with_capacity(burst);
    let mut handed: Vec<PktBuf> = Vec::with_capacity(drain_limit);
    let mut tx: Vec<PktBuf> = Vec::with_capacity(burst);

    while !ctx.stop.load(Ordering::Relaxed) {
        let received = match queue.as_mut() {
            Some(q) => q.rx_burst(&mut cache, &mut rx, burst),
            None => 0,
        };
        stats.rx.add(received as u64);
        if received > 0 {
            if software {
                steering.steer(
                    &mut rx,
                    &mut local,
                    table,
                    &shared.queues,
                    &mut cache,
                    stats,
                );
            } else {
                local.append(&mut rx);
            }
            sink.process(
                &mut local,
                Origin::Local,
                software,
                table,
                &mut cache,
                stats,
            );
        }
        let drained = ctx.consumer.dequeue_burst(&mut handed, drain_limit);
        if drained > 0 {
            sink.process(&mut handed, Origin::Handoff, true, table, &mut cache, stats);
        }
        if let Some(q) = queue.as_mut() {
            transmit(q, &mut tx, &mut cache, stats);
        }
        stats.polls.add(1);
        if received == 0 && drained == 0 {
            stats.idle_polls.add(1);
            match cfg.idle {
                Idle::Spin => std::hint::spin_loop(),
                Idle::Yield => thread::yield_now(),
                Idle::Sleep => thread::sleep(Duration::from_micros(u64::from(cfg.idle_sleep_us))),
            }
        }
    }

    // No more receiving: announce that this thread enqueues no more, then drain until every
    // producer has announced (their enqueues happen-before the Acquire below) and the queue is empty.
    drop(producing);
    loop {
        let all_done = done_producing.load(Ordering::Acquire) == threads;
        let drained = ctx.consumer.dequeue_burst(&mut handed, drain_limit);
        if drained > 0 {
            sink.process(&mut handed, Origin::Handoff, true, table, &mut cache, stats);
        } else if all_done {
            break;
        } else {
            thread::yield_now();
        }
    }
    // A thread's exit deletes its rules, as a stack thread's exit would.
    table.remove_owner(ctx.me);
}

fn transmit<Q: QueuePair>(
    q: &mut Q,
    tx: &mut Vec<PktBuf>,
    cache: &mut flowsteer_nic::pool::PoolCache,
    stats: &crate::stats::ThreadStats,
) {
    if tx.is_empty() {
        return;
    }
    let sent = q.tx_burst(cache, tx);
    stats.tx.add(sent as u64);
    if !tx.is_empty() {
        stats.tx_full.add(tx.len() as u64);
        cache.free_bulk(tx);
    }
}

/// Pins the calling thread to `core` and checks that the kernel applied exactly that set.
fn pin_to_core(core: usize) -> Result<(), String> {
    let error = |what: &str| {
        format!(
            "cannot pin to core {core} (engine.cores): {what}: {}",
            std::io::Error::last_os_error()
        )
    };
    // SAFETY: cpu_set_t is plain data for which all-zero is the empty set; CPU_SET writes inside it
    // for core < CPU_SETSIZE (config validation bounds cores below 1024 = CPU_SETSIZE), and
    // sched_setaffinity only reads the set we pass with its exact size.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(error("sched_setaffinity"));
    }
    // SAFETY: as above; sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into `set`,
    // and CPU_ISSET/CPU_COUNT only read it.
    let (rc, only_core) = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let rc = libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        (
            rc,
            libc::CPU_COUNT(&set) == 1 && libc::CPU_ISSET(core, &set),
        )
    };
    match (rc, only_core) {
        (0, true) => Ok(()),
        (0, false) => Err(format!(
            "cannot pin to core {core} (engine.cores): the kernel applied another CPU set"
        )),
        _ => Err(error("sched_getaffinity")),
    }
}
