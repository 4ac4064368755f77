//! The engine: builds the flow table, the pool, the software queues, the stacks and the port's
//! queues from the configuration, runs one stack thread per configured thread (`thread.rs`),
//! stops them cleanly and accounts for every packet.
//!
//! [`Engine::start`] opens the port `port.driver` names; [`Engine::start_on`] runs on any
//! [`Port`], so a new backend plugs in without a change here or in the thread loop.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use flowsteer_config::{Balance, Config, Driver, Idle, OnFailure, Profile};
use flowsteer_nic::port::{Port, PortControl};
use flowsteer_nic::rss::Reta;
use flowsteer_nic::uveth::Uveth;
use flowsteer_stack::{SharedStackStats, Stack, StackStats};
use flowtable::{FlowTable, ThreadId};

use crate::doorbell::{Doorbell, Doorbells};
use crate::error::setup;
pub use crate::error::EngineError;
use crate::health::Health;
use crate::metrics::MetricsServer;
use crate::ports::{open_afpacket, open_capture, open_uveth};
use crate::processor::{Processor, StackProcessor};
use crate::reclaim::Orphans;
use crate::report::RunReport;
use crate::shared::{Shared, ThreadStack};
use crate::sink::VerifyingSink;
use crate::stacks::{served_ports, stack_config};
use crate::stats::EngineStats;
use crate::status::StatusPrinter;
use crate::steer::Steering;
use crate::thread::StackThread;
use crate::traffic::{GeneratedPort, SourceStats, TrafficPlan};
use crate::transmit::TransmitPlan;
use crate::watchdog::Watchdog;

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

/// A running engine: its threads poll until [`Engine::stop`].
pub struct Engine {
    shared: Arc<Shared>,
    handles: Vec<thread::JoinHandle<Result<(), String>>>,
    stop_rx: Arc<AtomicBool>,
    metrics: Option<MetricsServer>,
    /// Stall detection and fault injection, when configured.
    watchdog: Option<Watchdog>,
    /// The user-space NIC, when the engine runs on one (to attach a bridge or inject frames).
    uveth: Option<Arc<Uveth>>,
    started: Instant,
}

/// The flow table `[flowtable]` describes.
pub fn flow_table(config: &Config) -> Arc<dyn FlowTable> {
    Arc::from(flowtable::new_table_sized(
        config.flowtable.capacity,
        config.flowtable.effective_ipv6_capacity(),
    ))
}

impl Engine {
    /// Builds everything `config` describes, on the port `port.driver` names, and starts the
    /// stack threads.
    pub fn start(config: &Config, serve_metrics: bool) -> Result<Engine, EngineError> {
        validate(config)?;
        let table = flow_table(config);
        match config.port.driver {
            Driver::Uveth => {
                let uveth = open_uveth(config)?;
                let mut engine = if config.traffic.profile == Profile::None {
                    Engine::start_with(config, uveth.clone(), table, Arc::from([]), serve_metrics)?
                } else {
                    let plan = TrafficPlan::install(config, uveth.soft_rss(), &table)
                        .map_err(setup("traffic"))?;
                    let traffic = plan.stats();
                    let port = Arc::new(GeneratedPort::new(uveth.clone(), plan));
                    Engine::start_with(config, port, table, traffic, serve_metrics)?
                };
                engine.uveth = Some(uveth);
                Ok(engine)
            }
            // Validation refuses the generator on a capture.
            Driver::Pcap => {
                let port = open_capture(config)?;
                Engine::start_with(config, port, table, Arc::from([]), serve_metrics)
            }
            // Validation refuses the generator on AF_PACKET.
            Driver::AfPacket => {
                let port = open_afpacket(config)?;
                Engine::start_with(config, port, table, Arc::from([]), serve_metrics)
            }
            // The generator on the DPDK data path: a ring-backed ethdev it feeds, spread over
            // the queues by the software RSS of port.rss_key and port.reta_size.
            #[cfg(feature = "dpdk")]
            Driver::Dpdk if config.traffic.profile != Profile::None => {
                let port = &config.port;
                let rss = flowsteer_nic::rss::SoftRss::new(
                    &port.rss_key.bytes(),
                    port.reta_size,
                    port.queues,
                )
                .map_err(setup("port (software RSS)"))?;
                let plan = TrafficPlan::install(config, &rss, &table).map_err(setup("traffic"))?;
                let traffic = plan.stats();
                let port = crate::ports::open_generated_dpdk(config, rss, plan)?;
                Engine::start_with(config, port, table, traffic, serve_metrics)
            }
            #[cfg(feature = "dpdk")]
            Driver::Dpdk => {
                let port = crate::ports::open_dpdk(config)?;
                Engine::start_with(config, port, table, Arc::from([]), serve_metrics)
            }
            #[cfg(not(feature = "dpdk"))]
            Driver::Dpdk => Err(EngineError::Setup(
                crate::ports::NEEDS_DPDK_DRIVER.to_owned(),
            )),
        }
    }

    /// Builds everything `config` describes except the port, and starts the stack threads on
    /// `port`'s queues (thread t takes queue t; threads beyond the port's queues have none).
    /// `table` is the flow table the threads steer by ([`flow_table`] makes the configured
    /// one). `port.driver` and its keys are not read, and the traffic generator does not run
    /// (`traffic.profile` must be `none`).
    pub fn start_on<P: Port>(
        config: &Config,
        port: Arc<P>,
        table: Arc<dyn FlowTable>,
        serve_metrics: bool,
    ) -> Result<Engine, EngineError> {
        validate(config)?;
        if config.traffic.profile != Profile::None {
            return Err(EngineError::Setup(format!(
                "traffic.profile = \"{}\": the generator feeds only the ports \
                 Engine::start builds for it (port.driver = \"uveth\" or \"dpdk\"), not {}",
                config.traffic.profile,
                port.describe()
            )));
        }
        Engine::start_with(config, port, table, Arc::from([]), serve_metrics)
    }

    /// [`Engine::start_on`] for a validated `config`, with the generator's counters.
    fn start_with<P: Port>(
        config: &Config,
        port: Arc<P>,
        table: Arc<dyn FlowTable>,
        traffic: Arc<[SourceStats]>,
        serve_metrics: bool,
    ) -> Result<Engine, EngineError> {
        let threads = usize::from(config.engine.threads);
        if port.queues() < config.port.queues {
            return Err(EngineError::Setup(format!(
                "port: {} has {}, port.queues is {}",
                port.describe(),
                flowsteer_nic::port::queues_text(port.queues()),
                config.port.queues
            )));
        }
        let pool = match port.buffers() {
            Some(pool) if pool.data_room() < config.pool.data_room => {
                return Err(EngineError::Setup(format!(
                    "pool: {} brings buffers of {} bytes, pool.data_room is {}",
                    port.describe(),
                    pool.data_room(),
                    config.pool.data_room
                )))
            }
            Some(pool) => pool,
            None => crate::pools::heap_pool(config).map_err(setup("pool"))?,
        };
        let mut consumers = Vec::with_capacity(threads);
        let mut producers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (p, c) = flowsteer_mpsc::ring(config.swq.size).map_err(setup("software queue"))?;
            producers.push(p);
            consumers.push(c);
        }
        let control: Arc<dyn PortControl> = port.clone();

        // The stacks are built before any thread starts, so their listen rules are in the table
        // before the first packet and a stack that cannot be built is a setup error.
        let mut stacks = Vec::new();
        let mut thread_stacks = Vec::new();
        if !config.stack.app.is_empty() {
            for t in 0..config.engine.threads {
                let stack_config = stack_config(config, t, &*control);
                let stats: SharedStackStats =
                    Arc::new(CachePadded::new(StackStats::new(&stack_config.apps)));
                thread_stacks.push(ThreadStack {
                    apps: stack_config.apps.clone(),
                    stats: stats.clone(),
                });
                let stack = Stack::new(stack_config.clone(), t, table.clone(), stats.clone())
                    .map_err(|e| EngineError::Setup(format!("stack of thread {t}: {e}")))?;
                // A restart builds the same stack again, on the same counters.
                let table = table.clone();
                let rebuild = move || {
                    Stack::new(stack_config.clone(), t, table.clone(), stats.clone())
                        .map(Box::new)
                        .map_err(|e| e.to_string())
                };
                stacks.push((Box::new(stack), rebuild));
            }
        }

        let doorbells: Doorbells = if config.engine.idle == Idle::Wait {
            (0..threads)
                .map(|_| Doorbell::new().map(CachePadded::new))
                .collect::<Result<_, _>>()
                .map_err(setup("doorbells (eventfd)"))?
        } else {
            Arc::from(Vec::new())
        };
        // Decided before any thread starts: a relaying thread must know whom it relays for.
        let transmit = TransmitPlan::new(
            &*port,
            config.engine.threads,
            config.port.queues,
            config.swq.size,
            2 * usize::from(config.engine.burst),
            (config.engine.idle == Idle::Wait).then(|| doorbells.clone()),
        )?;
        let shared = Arc::new(Shared {
            config: config.clone(),
            table,
            pool,
            port: control,
            stats: EngineStats::new(threads),
            queues: producers,
            traffic,
            stacks: thread_stacks,
            doorbells,
            tx_paths: transmit.paths.clone(),
            health: Arc::new(Health::new(threads)),
            neighbors: Arc::default(),
        });

        let metrics = if serve_metrics && config.metrics.enabled {
            Some(
                MetricsServer::start(config.metrics.listen, shared.clone())
                    .map_err(setup("metrics"))?,
            )
        } else {
            None
        };

        let stop_rx = Arc::new(AtomicBool::new(false));
        let mut start = ThreadStarter {
            shared: &shared,
            port: &*port,
            stop: stop_rx.clone(),
            done_producing: Arc::new(AtomicUsize::new(0)),
            thread_reta: thread_reta(config)?,
            transmit,
            handles: Vec::with_capacity(threads),
            orphans: Arc::new(Orphans::new()),
        };
        let mut stacks = stacks.into_iter();
        let tx_limit = 2 * usize::from(config.engine.burst).max(32);
        for (t, consumer) in consumers.into_iter().enumerate() {
            let me = t as ThreadId;
            match stacks.next() {
                Some((stack, rebuild)) => {
                    let processor = StackProcessor::new(stack, tx_limit);
                    let rebuild = move || Ok(StackProcessor::new(rebuild()?, tx_limit));
                    start.thread(me, consumer, processor, Box::new(rebuild))?
                }
                None => {
                    let steered = config.engine.balance == Balance::Software;
                    let table = shared.table.clone();
                    let sink = VerifyingSink::new(me, table.clone(), steered);
                    let rebuild = move || Ok(VerifyingSink::new(me, table.clone(), steered));
                    start.thread(me, consumer, sink, Box::new(rebuild))?
                }
            }
        }
        let started = Instant::now();
        let watchdog = Watchdog::start(&shared, stop_rx.clone(), started)?;
        Ok(Engine {
            handles: start.handles,
            shared,
            stop_rx,
            metrics,
            watchdog,
            uveth: None,
            started,
        })
    }

    /// What the threads and the exporter share.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The user-space NIC, when the engine runs on one (to attach a bridge or inject frames).
    pub fn uveth(&self) -> Option<Arc<Uveth>> {
        self.uveth.clone()
    }

    /// The metrics endpoint's address, when it is served.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().map(MetricsServer::local_addr)
    }

    /// True when a stack thread has ended (it failed: threads end only when stopped), or a
    /// failure asked the engine to stop (`engine.on_failure = "stop"`).
    pub fn thread_ended(&self) -> bool {
        self.shared.health.stop_requested() || self.handles.iter().any(|h| h.is_finished())
    }

    /// True when the port's input has ended (a capture replayed to its end,
    /// [`PortControl::exhausted`]): stopping now loses nothing, as the shutdown processes what
    /// is in flight.
    pub fn input_ended(&self) -> bool {
        self.shared.port.exhausted()
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
        if let Some(watchdog) = self.watchdog {
            watchdog.join();
        }
        let mut failures = Vec::new();
        // A thread stuck for good (declared stalled, never back) cannot be joined: it is left
        // behind, holding its buffers, and named.
        let deadline = Instant::now() + STOP_LIMIT;
        let mut stuck = false;
        for (t, h) in self.handles.into_iter().enumerate() {
            while !h.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if !h.is_finished() {
                stuck = true;
                failures.push(format!(
                    "thread {t}: did not stop within {} ms (stuck in one loop iteration); its \
                     queue and buffers are not reclaimed",
                    STOP_LIMIT.as_millis()
                ));
                continue;
            }
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(format!("thread {t}: {e}")),
                Err(_) => failures.push(format!("thread {t}: panicked")),
            }
        }
        let elapsed = self.started.elapsed();
        drop(self.metrics);
        if !failures.is_empty() {
            if !stuck {
                let mut cache = self.shared.pool.cache(0);
                self.shared.port.reclaim(&mut cache);
            }
            return Err(EngineError::Thread(failures.join("; ")));
        }
        // Frames still on the port's rings (injected after the threads stopped, or transmitted
        // and never taken) go back to the pool before it is counted.
        let mut cache = self.shared.pool.cache(0);
        self.shared.port.reclaim(&mut cache);
        drop(cache);
        Ok(RunReport::build(self.shared, elapsed))
    }
}

/// How long the stop waits for a thread to end: a live one ends within an iteration and its
/// shutdown drain (an injected stall ends at the stop too), so one that has not after this is
/// stuck for good.
const STOP_LIMIT: Duration = Duration::from_secs(10);

fn validate(config: &Config) -> Result<(), EngineError> {
    config
        .validate()
        .map_err(|e| EngineError::Setup(format!("invalid configuration:\n{e}")))
}

/// The miss policy "rss" spreads unowned flows over all threads as a NIC with one queue per
/// thread would: a RETA of at least 64 entries keeps the spread even for thread counts that do
/// not divide it.
fn thread_reta(config: &Config) -> Result<Reta, EngineError> {
    let threads = usize::from(config.engine.threads);
    Reta::new(threads.next_power_of_two().max(64), config.engine.threads)
        .map_err(setup("thread RETA"))
}

/// Starts the stack threads one by one, each on its queue of the port.
struct ThreadStarter<'a, P: Port> {
    shared: &'a Arc<Shared>,
    port: &'a P,
    stop: Arc<AtomicBool>,
    done_producing: Arc<AtomicUsize>,
    thread_reta: Reta,
    transmit: TransmitPlan<P::Queue>,
    handles: Vec<thread::JoinHandle<Result<(), String>>>,
    orphans: Arc<Orphans<P::Queue>>,
}

impl<P: Port> ThreadStarter<'_, P> {
    fn thread<R: Processor + 'static>(
        &mut self,
        me: ThreadId,
        consumer: flowsteer_mpsc::Consumer<flowsteer_nic::pool::PktBuf>,
        processor: R,
        rebuild: Box<dyn FnMut() -> Result<R, String> + Send>,
    ) -> Result<(), EngineError> {
        let stack = R::HOLDS_SOCKETS;
        let config = &self.shared.config;
        let engine = &config.engine;
        let threads = usize::from(engine.threads);
        let mut steering = Steering::new(
            me,
            threads,
            usize::from(engine.burst),
            engine.miss,
            self.thread_reta.clone(),
        )
        .share_neighbors(stack)
        .watch_owners(self.shared.health.clone());
        if stack && engine.on_failure == OnFailure::Restart {
            steering = steering.record_neighbors(self.shared.neighbors.clone());
        }
        if engine.idle == Idle::Wait {
            steering = steering.wake_owners(self.shared.doorbells.clone());
        }
        // New flows stay on the queue the NIC chose when this thread serves their port; only
        // when every thread has a queue, or the queue-less threads would never get a connection.
        if stack && config.port.queues == engine.threads {
            steering = steering.keep_listened_flows(served_ports(config, me));
        }
        let (transmit_only, transmit) = self.transmit.take(me);
        let queue = if me < config.port.queues {
            Some(self.port.take_queue(me).map_err(setup("port queue"))?)
        } else {
            transmit_only
        };
        let thread = StackThread {
            me,
            shared: self.shared.clone(),
            queue,
            adopted: Vec::new(),
            orphans: self.orphans.clone(),
            transmit,
            consumer,
            processor,
            rebuild,
            steering,
            screen: stack,
            stop: self.stop.clone(),
            done_producing: self.done_producing.clone(),
        };
        let core = engine.cores.get(usize::from(me)).copied();
        self.handles.push(thread.spawn(core)?);
        Ok(())
    }
}

/// Runs the engine described by `config` until `opts` says stop; returns the final report.
pub fn run(config: &Config, opts: RunOptions) -> Result<RunReport, EngineError> {
    drive(Engine::start(config, opts.serve_metrics)?, opts)
}

/// Runs a started engine until `opts` says stop, a thread fails or the port's input ends (a
/// capture replayed to its end; see [`Engine::input_ended`]) (its `serve_metrics` was the
/// start's business);
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
        if engine.input_ended() {
            break; // a capture replayed to its end: the shutdown processes the rest
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
