//! The engine's generated traffic outside the engine, for the baselines that run their own
//! threads on it (the ltran-style dispatcher, the DPDK peers): the flow table, a uveth with the
//! configuration's RSS, the traffic plan (flows, installed rules, one generator per queue) and the
//! queues with their generators, built as the engine builds them for itself.

use std::sync::Arc;

use flowsteer_config::Config;
use flowsteer_nic::uveth::{Uveth, UvethConfig, UvethQueue};
use flowtable::FlowTable;
use forwarder::traffic::{QueueSource, TrafficPlan};

/// What [`build`] makes. Keep `plan` until the threads are done: the sources refer to its flows.
pub struct Generated {
    pub table: Arc<dyn FlowTable>,
    pub uveth: Uveth,
    pub plan: TrafficPlan,
    /// One generator-fed queue per `port.queues`, for the receiving threads to take.
    pub queues: Vec<UvethQueue<QueueSource>>,
}

/// The table, port, plan and queues of `config` (validated here).
pub fn build(config: &Config) -> Result<Generated, String> {
    config
        .validate()
        .map_err(|e| format!("invalid configuration:\n{e}"))?;
    let table: Arc<dyn FlowTable> = Arc::from(flowtable::new_table_sized(
        config.flowtable.capacity,
        config.flowtable.effective_ipv6_capacity(),
    ));
    let uveth = Uveth::new(UvethConfig {
        queues: config.port.queues,
        rss_key: config.port.rss_key.bytes(),
        reta_size: config.port.reta_size,
        ring_size: config.port.ring_size,
        mac: config.port.mac.0,
    })
    .map_err(|e| format!("port (uveth): {e}"))?;
    let mut plan = TrafficPlan::install(config, uveth.soft_rss(), &table)
        .map_err(|e| format!("traffic: {e}"))?;
    let queues = (0..config.port.queues)
        .map(|q| {
            uveth
                .take_queue(q, plan.take_source(q))
                .map_err(|e| format!("port queue {q}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Generated {
        table,
        uveth,
        plan,
        queues,
    })
}
