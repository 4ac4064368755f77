//! The engine: builds the port, the flow table, the software queues and the traffic, runs one stack
//! thread per configured thread, stops them cleanly and accounts for every packet.
//!
//! A stack thread's loop (DESIGN.md, "The data path of one stack thread"):
//! rx burst from its NIC queue → (software balancing) key, bulk lookup, one burst enqueue per owner
//! → drain its own software queue (prefetching the drained buffers' first lines, which another
//! core wrote) → process the local packets, then the drained ones → tx. Threads without a NIC
//! queue (more threads than queues) only drain their software queue.
//!
//! Shutdown: the stop flag ends receiving; each thread then announces that it will enqueue no more
//! and keeps draining its own queue until every thread has announced and its queue is empty, so no
//! handed-off packet is left behind.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use flowsteer_config::{
    AppKind as ConfigAppKind, Balance, Config, Driver, Fanout as ConfigFanout, Idle, Profile,
    RxRing as ConfigRxRing, MAX_ETHERNET_FRAME,
};
use flowsteer_mpsc::{Consumer, Producer};
use flowsteer_nic::afpacket::{AfPacketConfig, AfPacketPort, Fanout, RxRingKind};
use flowsteer_nic::pool::{PacketPool, PktBuf};
use flowsteer_nic::port::QueuePair;
use flowsteer_nic::rss::Reta;
use flowsteer_nic::uveth::{Uveth, UvethConfig};
use flowsteer_stack::{
    AppKind, AppSpec, Outbound, PortChoice, SharedStackStats, Stack, StackConfig, StackStats,
};
use flowtable::{FlowTable, Proto, ThreadId};

use crate::doorbell::Doorbell;
use crate::metrics::MetricsServer;
use crate::report::RunReport;
use crate::sink::{Origin, VerifyingSink};
use crate::stats::EngineStats;
use crate::status::StatusPrinter;
use crate::steer::{ServedPorts, Steering};
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

/// The NIC the engine runs on.
pub enum PortHandle {
    /// The user-space veth (generator, vbridge peers, tests).
    Uveth(Arc<Uveth>),
    /// A Linux interface through AF_PACKET sockets.
    AfPacket(AfPacketPort),
}

impl PortHandle {
    /// Opens the port `config` describes.
    pub fn open(config: &Config) -> Result<PortHandle, EngineError> {
        let port = &config.port;
        Ok(match port.driver {
            Driver::Uveth => PortHandle::Uveth(Arc::new(
                Uveth::new(UvethConfig {
                    queues: port.queues,
                    rss_key: port.rss_key.bytes(),
                    reta_size: port.reta_size,
                    ring_size: port.ring_size,
                    mac: port.mac.0,
                })
                .map_err(setup("port (uveth)"))?,
            )),
            Driver::AfPacket => PortHandle::AfPacket(
                AfPacketPort::open(AfPacketConfig {
                    interface: port.interface.clone(),
                    queues: port.queues,
                    fanout: match port.fanout {
                        ConfigFanout::Hash => Fanout::Hash,
                        ConfigFanout::Lb => Fanout::Lb,
                        ConfigFanout::Cpu => Fanout::Cpu,
                    },
                    rx_ring: match port.rx_ring {
                        ConfigRxRing::Frames => RxRingKind::Frames,
                        ConfigRxRing::Blocks => RxRingKind::Blocks,
                    },
                    frames: port.frames,
                    block_size: port.block_size,
                    blocks: port.blocks,
                    block_timeout_ms: port.block_timeout_ms,
                    qdisc_bypass: port.qdisc_bypass,
                })
                .map_err(setup("port (afpacket)"))?,
            ),
        })
    }

    /// Frames the port itself dropped before any stack thread received them, per queue, as
    /// (reason, count) in a fixed order per driver. Transmit refusals are not here: the engine
    /// counts them as `tx_full`.
    pub fn drops(&self) -> Vec<Vec<(&'static str, u64)>> {
        match self {
            PortHandle::Uveth(uveth) => uveth
                .stats()
                .queues
                .iter()
                .map(|q| {
                    vec![
                        ("rx_ring_full", q.rx_dropped_full),
                        ("rx_no_buffer", q.rx_dropped_no_buffer),
                        ("rx_oversize", q.rx_dropped_oversize),
                    ]
                })
                .collect(),
            PortHandle::AfPacket(port) => port
                .stats()
                .queues
                .iter()
                .map(|q| {
                    vec![
                        ("kernel_ring_full", q.kernel_drops),
                        ("rx_no_buffer", q.rx_dropped_no_buffer),
                        ("rx_oversize", q.rx_dropped_oversize),
                        ("rx_invalid", q.rx_dropped_invalid),
                    ]
                })
                .collect(),
        }
    }

    /// The port's MAC address (the stacks' link address): the configured one for uveth, the
    /// interface's own for afpacket.
    pub fn mac(&self) -> [u8; 6] {
        match self {
            PortHandle::Uveth(uveth) => uveth.mac(),
            PortHandle::AfPacket(port) => port.mac(),
        }
    }

    /// A one-line description for logs.
    pub fn describe(&self) -> String {
        let mac = self.mac().map(|b| format!("{b:02x}")).join(":");
        match self {
            PortHandle::Uveth(uveth) => format!("uveth, {} queues, mac {mac}", uveth.queues()),
            PortHandle::AfPacket(port) => format!(
                "afpacket on {}, {} queues, fanout {:?}, mtu {}, mac {mac}",
                port.interface(),
                port.queues(),
                port.fanout(),
                port.mtu()
            ),
        }
    }
}

/// What every thread and the exporter share.
pub struct Shared {
    /// The effective configuration.
    pub config: Config,
    /// The flow table.
    pub table: Arc<dyn FlowTable>,
    /// The packet buffer pool.
    pub pool: Arc<PacketPool>,
    /// The NIC.
    pub port: PortHandle,
    /// Per-thread counters.
    pub stats: EngineStats,
    /// A producer handle of every thread's software queue (for depth gauges and for the threads).
    pub queues: Vec<Producer<PktBuf>>,
    /// Per-queue traffic generator counters (empty without a generator).
    pub traffic: Arc<[SourceStats]>,
    /// Per thread, the apps its stack runs and the stack's counters; empty when no stack runs
    /// (the verifying sink consumes the generator's packets instead).
    pub stacks: Vec<ThreadStack>,
    /// Per thread, the doorbell that wakes it while it sleeps; empty unless `engine.idle` is
    /// `wait`.
    pub doorbells: Arc<[CachePadded<Doorbell>]>,
}

/// The protocol stack of one thread, as the exporter sees it.
pub struct ThreadStack {
    /// The apps, in the order of `stats.apps`.
    pub apps: Vec<AppSpec>,
    /// The stack's counters.
    pub stats: SharedStackStats,
}

/// A running engine: its threads poll until [`Engine::stop`].
pub struct Engine {
    shared: Arc<Shared>,
    handles: Vec<thread::JoinHandle<Result<(), String>>>,
    stop_rx: Arc<AtomicBool>,
    plan: Option<TrafficPlan>,
    metrics: Option<MetricsServer>,
    started: Instant,
}

impl Engine {
    /// Builds everything `config` describes and starts the stack threads.
    pub fn start(config: &Config, serve_metrics: bool) -> Result<Engine, EngineError> {
        config
            .validate()
            .map_err(|e| EngineError::Setup(format!("invalid configuration:\n{e}")))?;
        let threads = usize::from(config.engine.threads);
        let queues = usize::from(config.port.queues);

        let table: Arc<dyn FlowTable> = Arc::from(flowtable::new_table_sized(
            config.flowtable.capacity,
            config.flowtable.effective_ipv6_capacity(),
        ));
        let pool =
            PacketPool::new(config.pool.buffers, config.pool.data_room).map_err(setup("pool"))?;
        let port = PortHandle::open(config)?;
        // The generator feeds uveth queues only; validation refuses it with any other driver.
        let mut plan = match (&config.traffic.profile, &port) {
            (Profile::None, _) | (_, PortHandle::AfPacket(_)) => None,
            (_, PortHandle::Uveth(uveth)) => Some(
                TrafficPlan::install(config, uveth.soft_rss(), &table).map_err(setup("traffic"))?,
            ),
        };
        let mut consumers = Vec::with_capacity(threads);
        let mut producers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (p, c) = flowsteer_mpsc::ring(config.swq.size).map_err(setup("software queue"))?;
            producers.push(p);
            consumers.push(c);
        }

        // The stacks are built before any thread starts, so their listen rules are in the table
        // before the first packet and a stack that cannot be built is a setup error.
        let mut stacks = Vec::new();
        let mut thread_stacks = Vec::new();
        if !config.stack.app.is_empty() {
            for t in 0..config.engine.threads {
                let stack_config = stack_config(config, t, &port);
                let stats: SharedStackStats =
                    Arc::new(CachePadded::new(StackStats::new(&stack_config.apps)));
                thread_stacks.push(ThreadStack {
                    apps: stack_config.apps.clone(),
                    stats: stats.clone(),
                });
                let stack = Stack::new(stack_config, t, table.clone(), stats)
                    .map_err(|e| EngineError::Setup(format!("stack of thread {t}: {e}")))?;
                stacks.push(Some(Box::new(stack)));
            }
        }

        let doorbells: Arc<[CachePadded<Doorbell>]> = if config.engine.idle == Idle::Wait {
            (0..threads)
                .map(|_| Doorbell::new().map(CachePadded::new))
                .collect::<Result<_, _>>()
                .map_err(setup("doorbells (eventfd)"))?
        } else {
            Arc::from(Vec::new())
        };
        let shared = Arc::new(Shared {
            config: config.clone(),
            table,
            pool: pool.clone(),
            port,
            stats: EngineStats::new(threads),
            queues: producers,
            traffic: plan
                .as_ref()
                .map_or_else(|| Arc::from(Vec::new()), TrafficPlan::stats),
            stacks: thread_stacks,
            doorbells,
        });

        let metrics = if serve_metrics && config.metrics.enabled {
            Some(
                MetricsServer::start(config.metrics.listen, shared.clone())
                    .map_err(setup("metrics"))?,
            )
        } else {
            None
        };

        // The miss policy "rss" spreads unowned flows over all threads as a NIC with one queue
        // per thread would: a RETA of at least 64 entries keeps the spread even for thread counts
        // that do not divide it.
        let thread_reta = Reta::new(threads.next_power_of_two().max(64), config.engine.threads)
            .map_err(setup("thread RETA"))?;
        let stop_rx = Arc::new(AtomicBool::new(false));
        let done_producing = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::with_capacity(threads);
        for (t, consumer) in consumers.into_iter().enumerate() {
            let ctx = ThreadContext {
                me: t as ThreadId,
                shared: shared.clone(),
                consumer,
                thread_reta: thread_reta.clone(),
                stop: stop_rx.clone(),
                done_producing: done_producing.clone(),
                stack: stacks.get_mut(t).and_then(Option::take),
            };
            let core = config.engine.cores.get(t).copied();
            let handle = match &shared.port {
                PortHandle::Uveth(uveth) => {
                    let queue = if t < queues {
                        let q = t as u16;
                        let source = plan.as_mut().and_then(|p| p.take_source(q));
                        Some(uveth.take_queue(q, source).map_err(setup("port queue"))?)
                    } else {
                        None
                    };
                    spawn_stack_thread(t, core, ctx, queue)?
                }
                PortHandle::AfPacket(port) => {
                    let queue = if t < queues {
                        Some(port.take_queue(t as u16).map_err(setup("port queue"))?)
                    } else {
                        None
                    };
                    spawn_stack_thread(t, core, ctx, queue)?
                }
            };
            handles.push(handle);
        }
        Ok(Engine {
            shared,
            handles,
            stop_rx,
            plan,
            metrics,
            started: Instant::now(),
        })
    }

    /// What the threads and the exporter share.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The user-space NIC, when the engine runs on one (to attach a bridge or inject frames).
    pub fn uveth(&self) -> Option<Arc<Uveth>> {
        match &self.shared.port {
            PortHandle::Uveth(uveth) => Some(uveth.clone()),
            PortHandle::AfPacket(_) => None,
        }
    }

    /// The metrics endpoint's address, when it is served.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().map(MetricsServer::local_addr)
    }

    /// True when a stack thread has ended (it failed: threads end only when stopped).
    pub fn thread_ended(&self) -> bool {
        self.handles.iter().any(|h| h.is_finished())
    }

    /// Time since the threads started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops the threads, drains every queue and ring back into the pool and reports.
    pub fn stop(self) -> Result<RunReport, EngineError> {
        self.stop_rx.store(true, Ordering::Relaxed);
        // Sleeping threads see the stop flag only once woken.
        for doorbell in self.shared.doorbells.iter() {
            doorbell.ring();
        }
        let mut failures = Vec::new();
        for (t, h) in self.handles.into_iter().enumerate() {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(format!("thread {t}: {e}")),
                Err(_) => failures.push(format!("thread {t}: panicked")),
            }
        }
        let elapsed = self.started.elapsed();
        drop(self.metrics);
        if !failures.is_empty() {
            return Err(EngineError::Thread(failures.join("; ")));
        }
        drop(self.plan);
        // Frames still on the port's rings (injected after the threads stopped, or transmitted
        // and never taken) go back to the pool before it is counted.
        let mut cache = self.shared.pool.cache(0);
        // An AF_PACKET queue copies each frame out of its ring as it receives it and frees what
        // it sends: it holds no buffer once its owner is gone.
        if let PortHandle::Uveth(uveth) = &self.shared.port {
            uveth.drain_into(&mut cache);
        }
        drop(cache);
        Ok(RunReport::build(self.shared, elapsed))
    }
}

/// Runs the engine described by `config` until `opts` says stop; returns the final report.
pub fn run(config: &Config, opts: RunOptions) -> Result<RunReport, EngineError> {
    drive(Engine::start(config, opts.serve_metrics)?, opts)
}

/// Runs a started engine until `opts` says stop (its `serve_metrics` was the start's business);
/// returns the final report. The caller can tell what was started (the metrics address bound
/// with port 0) between [`Engine::start`] and this.
pub fn drive(engine: Engine, opts: RunOptions) -> Result<RunReport, EngineError> {
    let mut status = opts
        .status_lines
        .then(|| StatusPrinter::new(engine.shared()));
    let tick = Duration::from_millis(50);
    let mut next_status = Duration::from_secs(1);
    loop {
        if opts.stop.load(Ordering::Relaxed) {
            break;
        }
        if opts.duration.is_some_and(|d| engine.elapsed() >= d) {
            break;
        }
        if engine.thread_ended() {
            break; // a thread died early: stop the others and report the error
        }
        thread::sleep(tick);
        if let Some(printer) = status.as_mut() {
            if engine.elapsed() >= next_status {
                printer.print_line(engine.shared(), engine.elapsed());
                next_status += Duration::from_secs(1);
            }
        }
    }
    engine.stop()
}

/// The stack of thread `thread`: the port's addresses, the `[stack]` sizes, the apps that run
/// on that thread, and how its outbound connections are steered back (see [`outbound`]).
pub fn stack_config(config: &Config, thread: u16, port: &PortHandle) -> StackConfig {
    let apps = config
        .stack
        .app
        .iter()
        .filter(|app| app.runs_on(thread))
        .map(|app| AppSpec {
            kind: match app.kind {
                ConfigAppKind::TcpEcho => AppKind::TcpEcho,
                ConfigAppKind::UdpEcho => AppKind::UdpEcho,
                ConfigAppKind::Http => AppKind::Http,
                ConfigAppKind::Discard => AppKind::Discard,
                ConfigAppKind::TcpProxy => AppKind::TcpProxy,
            },
            port: app.port,
            upstream: app.upstream,
        })
        .collect();
    let stack = &config.stack;
    StackConfig {
        mac: port.mac(),
        ipv4: (config.port.ipv4, config.port.ipv4_prefix),
        ipv6: (config.port.ipv6, config.port.ipv6_prefix),
        tcp_rx_buffer: stack.tcp_rx_buffer as usize,
        tcp_tx_buffer: stack.tcp_tx_buffer as usize,
        udp_buffer: stack.udp_buffer as usize,
        max_connections: stack.max_connections as usize,
        idle_timeout: seconds(stack.idle_timeout_s),
        keepalive_timeout: seconds(stack.keepalive_timeout_s),
        neighbor_wait: Duration::from_millis(u64::from(stack.neighbor_wait_ms)),
        max_frame: usize::from(config.pool.data_room).min(usize::from(MAX_ETHERNET_FRAME)),
        seed: config.traffic.seed,
        apps,
        outbound: outbound(config, thread, port),
    }
}

/// A timeout in whole seconds from the configuration; 0 = never.
fn seconds(value: u32) -> Option<Duration> {
    (value > 0).then(|| Duration::from_secs(u64::from(value)))
}

/// How thread `thread`'s outbound connections find their way back. Software balancing adds
/// their rule; the local port is chosen by RSS where the engine knows the port's RSS (uveth:
/// under software balancing that spares the handoff, under RSS balancing it is the only way
/// back), else from the thread's share of the ephemeral range. Configuration refuses RSS
/// balancing with an outbound app on a port whose RSS is unknown (AF_PACKET).
pub fn outbound(config: &Config, thread: u16, port: &PortHandle) -> Outbound {
    let ports = match port {
        PortHandle::Uveth(uveth) => PortChoice::Rss {
            rss: uveth.soft_rss().clone(),
            queue: thread,
        },
        PortHandle::AfPacket(_) => PortChoice::Share {
            thread,
            threads: config.engine.threads,
        },
    };
    Outbound {
        rule: config.engine.balance == Balance::Software,
        ports,
    }
}

fn spawn_stack_thread<Q: QueuePair + 'static>(
    t: usize,
    core: Option<u16>,
    ctx: ThreadContext,
    queue: Option<Q>,
) -> Result<thread::JoinHandle<Result<(), String>>, EngineError> {
    thread::Builder::new()
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
        .map_err(setup("spawning a stack thread"))
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
    /// The protocol stack; `None`: the verifying sink consumes the packets.
    stack: Option<Box<Stack>>,
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
    let mut steering = Steering::new(ctx.me, threads, burst, cfg.miss, ctx.thread_reta.clone())
        .share_neighbors(ctx.stack.is_some());
    if cfg.idle == Idle::Wait {
        steering = steering.wake_owners(shared.doorbells.clone());
    }
    // New flows stay on the queue the NIC chose when this thread serves their port; only when
    // every thread has a queue, or the queue-less threads would never get a connection.
    if ctx.stack.is_some() && shared.config.port.queues == cfg.threads {
        let me = ctx.me;
        let served = shared
            .config
            .stack
            .app
            .iter()
            .filter(|app| app.runs_on(me))
            .map(|app| {
                let proto = if app.kind.is_tcp() {
                    Proto::Tcp
                } else {
                    Proto::Udp
                };
                (proto, app.port)
            });
        steering = steering.keep_listened_flows(ServedPorts::new(served));
    }
    let sink = VerifyingSink::new(ctx.me);
    let mut stack = ctx.stack.take();
    let tx_limit = 2 * burst.max(32);
    let mut rx: Vec<PktBuf> = Vec::with_capacity(burst);
    let mut local: Vec<PktBuf> = Vec::with_capacity(burst + drain_limit);
    let mut handed: Vec<PktBuf> = Vec::with_capacity(drain_limit);
    let mut tx: Vec<PktBuf> = Vec::with_capacity(tx_limit);

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
            } else if stack.is_some() {
                steering.screen(&mut rx, &mut local, &shared.queues, &mut cache, stats);
            } else {
                local.append(&mut rx);
            }
        }
        let drained = ctx.consumer.dequeue_burst(&mut handed, drain_limit);
        // Another core wrote these buffers: start pulling their lines over now, so that the
        // local packets' processing covers part of the transfers.
        for pkt in &handed {
            pkt.prefetch();
        }
        match stack.as_mut() {
            Some(stack) => {
                stats.processed_local.add(local.len() as u64);
                stats.processed_handoff.add(handed.len() as u64);
                // What another thread handed over was received before this thread's own
                // burst more often than not: it goes first, so a flow whose frames arrive on
                // both queues (a NIC without RSS) reaches the stack in order more often.
                handed.append(&mut local);
                stack.process(&mut handed, &mut tx, tx_limit, &mut cache);
            }
            None => {
                if !local.is_empty() {
                    sink.process(
                        &mut local,
                        Origin::Local,
                        software,
                        table,
                        &mut cache,
                        stats,
                    );
                }
                if drained > 0 {
                    sink.process(&mut handed, Origin::Handoff, true, table, &mut cache, stats);
                }
            }
        }
        transmit(queue.as_mut(), &mut tx, &mut cache, stats);
        stats.polls.add(1);
        if received == 0 && drained == 0 {
            stats.idle_polls.add(1);
            match cfg.idle {
                Idle::Spin => std::hint::spin_loop(),
                Idle::Yield => thread::yield_now(),
                Idle::Sleep => thread::sleep(Duration::from_micros(u64::from(cfg.idle_sleep_us))),
                Idle::Wait => {
                    let timer = stack.as_ref().and_then(|s| s.poll_delay());
                    let limit = timer.map_or(WAIT_LIMIT, |t| t.min(WAIT_LIMIT));
                    let doorbell = &shared.doorbells[usize::from(ctx.me)];
                    // A refused wait is counted; the thread polls on rather than stops.
                    if sleep_until_work(doorbell, queue.as_ref(), &ctx, limit).is_err() {
                        stats.wait_errors.add(1);
                    }
                }
            }
        }
    }

    // A stopping stack resets its connections (the resets go out) and deletes their rules.
    if let Some(stack) = stack.as_mut() {
        stack.shutdown(&mut tx, tx_limit, &mut cache);
        transmit(queue.as_mut(), &mut tx, &mut cache, stats);
    }
    // No more receiving: announce that this thread enqueues no more, then drain until every
    // producer has announced (their enqueues happen-before the Acquire below) and the queue is
    // empty. What arrives now is processed (a stack answers it, e.g. with a reset).
    drop(producing);
    loop {
        let all_done = done_producing.load(Ordering::Acquire) == threads;
        let drained = ctx.consumer.dequeue_burst(&mut handed, drain_limit);
        if drained > 0 {
            match stack.as_mut() {
                Some(stack) => {
                    stats.processed_handoff.add(drained as u64);
                    stack.process(&mut handed, &mut tx, tx_limit, &mut cache);
                    transmit(queue.as_mut(), &mut tx, &mut cache, stats);
                }
                None => sink.process(&mut handed, Origin::Handoff, true, table, &mut cache, stats),
            }
        } else if all_done {
            break;
        } else {
            thread::yield_now();
        }
    }
    // A thread's exit deletes its rules, as a stack thread's exit would.
    table.remove_owner(ctx.me);
}

/// The longest a waiting thread sleeps when nothing wakes it: it checks the stop flag this often.
const WAIT_LIMIT: Duration = Duration::from_millis(10);

/// Sleeps until the thread's receive queue has a frame, another thread rings its doorbell, or
/// `limit` passes; returns at once if packets were handed over meanwhile (see `doorbell`).
fn sleep_until_work<Q: QueuePair>(
    doorbell: &Doorbell,
    queue: Option<&Q>,
    ctx: &ThreadContext,
    limit: Duration,
) -> std::io::Result<()> {
    doorbell.going_to_sleep();
    if !ctx.consumer.is_empty() || ctx.stop.load(Ordering::Relaxed) {
        doorbell.woke();
        return Ok(());
    }
    let result = match queue.and_then(|q| q.rx_wait_fd()) {
        Some(rx) => flowsteer_nic::wait::wait_readable(&[rx, doorbell.fd()], limit),
        None => flowsteer_nic::wait::wait_readable(&[doorbell.fd()], limit),
    };
    doorbell.woke();
    result.map(|_| ())
}

/// Transmits `tx` on the thread's queue; what the queue refuses (or all of it, for a thread
/// without a queue) is freed and counted.
fn transmit<Q: QueuePair>(
    q: Option<&mut Q>,
    tx: &mut Vec<PktBuf>,
    cache: &mut flowsteer_nic::pool::PoolCache,
    stats: &crate::stats::ThreadStats,
) {
    if tx.is_empty() {
        return;
    }
    if let Some(q) = q {
        let sent = q.tx_burst(cache, tx);
        stats.tx.add(sent as u64);
    }
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
