//! What the stack threads, the metrics exporter, the status line and the report share: the one
//! place the readers of a running engine look, so that none of them depends on the engine loop.

use std::sync::Arc;

use flowsteer_config::Config;
use flowsteer_mpsc::Producer;
use flowsteer_nic::pool::{PacketPool, PktBuf};
use flowsteer_nic::port::PortControl;
use flowsteer_stack::{AppSpec, SharedStackStats};
use flowtable::FlowTable;

use crate::doorbell::Doorbells;
use crate::health::Health;
use crate::neighbors::NeighborRecord;
use crate::stats::EngineStats;
use crate::traffic::SourceStats;
use crate::transmit::TxPath;

/// What every thread and the exporter share.
pub struct Shared {
    /// The effective configuration.
    pub config: Config,
    /// The flow table.
    pub table: Arc<dyn FlowTable>,
    /// The packet buffer pool.
    pub pool: Arc<PacketPool>,
    /// The NIC's control side (its queues are owned by the threads).
    pub port: Arc<dyn PortControl>,
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
    pub doorbells: Doorbells,
    /// Per thread, where its frames are transmitted: its queue pair, the port's transmit-only
    /// queue, or a relaying thread's software transmit queue.
    pub tx_paths: Vec<TxPath>,
    /// Per thread, its state, failures and last reclaim.
    pub health: Arc<Health>,
    /// The neighbours heard of, for a stack restarted after a failure.
    pub neighbors: Arc<NeighborRecord>,
}

/// The protocol stack of one thread, as the exporter sees it.
pub struct ThreadStack {
    /// The apps, in the order of `stats.apps`.
    pub apps: Vec<AppSpec>,
    /// The stack's counters.
    pub stats: SharedStackStats,
}
