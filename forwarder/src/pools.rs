//! The packet pool `[pool]` describes: an L1 pool per port queue and a shared L2 pool
//! (`flowsteer_nic::pool`'s tiers), on the heap or, for a DPDK port, a mempool each; and which
//! pool a stack thread draws from first.

use flowsteer_config::Config;
use flowsteer_nic::pool::{PacketPool, PoolError, Tier, Tiers};
use std::sync::Arc;

/// The per-lcore cache of each DPDK mempool: enough for the driver's receive refill and its
/// frees after a transmit burst to stay off the mempool's ring (a burst of 32 each way), small
/// enough that the caches of every registered thread hold little of an L1 pool.
pub const LCORE_CACHE_MAX: u32 = 64;

/// The split `[pool]` and `port.queues` describe.
pub fn tiers(config: &Config) -> Tiers {
    if one_level(config) {
        return Tiers::shared_only(config.pool.buffers);
    }
    let split = config.pool_split();
    Tiers {
        queues: config.port.queues,
        per_queue: split.per_queue,
        shared: split.shared,
        low_watermark: config.pool.low_watermark,
    }
}

/// The heap pool for a port that does not bring its own.
pub fn heap_pool(config: &Config) -> Result<Arc<PacketPool>, PoolError> {
    PacketPool::tiered(&tiers(config), config.pool.data_room)
}

/// The mbuf pool of a DPDK port: a mempool per segment named after `name` (see
/// `PacketPool::with_mbufs_tiered`), each with a per-lcore cache of `min(pool.cache, 64)`.
#[cfg(feature = "dpdk")]
pub fn mbuf_pool(config: &Config, name: &str) -> Result<Arc<PacketPool>, PoolError> {
    PacketPool::with_mbufs_tiered(
        name,
        &tiers(config),
        config.pool.data_room,
        config.pool.cache.min(LCORE_CACHE_MAX),
    )
}

/// Every buffer in the shared pool (`pool.shared_percent = 100`): no L1 pools, every thread
/// homed on the shared one.
fn one_level(config: &Config) -> bool {
    config.pool.shared_percent >= 100
}

/// The pool stack thread `thread` draws from first: its queue's L1, or the shared pool for a
/// thread without a queue or with one level.
pub fn home(config: &Config, thread: u16) -> Tier {
    if thread < config.port.queues && !one_level(config) {
        Tier::Queue(thread)
    } else {
        Tier::Shared
    }
}
