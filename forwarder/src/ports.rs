//! The configured NIC: `port.driver` and its keys mapped to a backend of `flowsteer_nic`.

use std::sync::Arc;

use flowsteer_config::{Config, Fanout as ConfigFanout, RxRing as ConfigRxRing};
use flowsteer_nic::afpacket::{AfPacketConfig, AfPacketPort, Fanout, RxRingKind};
use flowsteer_nic::uveth::{Uveth, UvethConfig};

use crate::error::{setup, EngineError};

/// The user-space veth `port` describes (`driver = "uveth"`).
pub fn open_uveth(config: &Config) -> Result<Arc<Uveth>, EngineError> {
    let port = &config.port;
    let uveth = Uveth::new(UvethConfig {
        queues: port.queues,
        rss_key: port.rss_key.bytes(),
        reta_size: port.reta_size,
        ring_size: port.ring_size,
        mac: port.mac.0,
    })
    .map_err(setup("port (uveth)"))?;
    Ok(Arc::new(uveth))
}

/// The AF_PACKET port `port` describes (`driver = "afpacket"`).
pub fn open_afpacket(config: &Config) -> Result<Arc<AfPacketPort>, EngineError> {
    let port = &config.port;
    let afpacket = AfPacketPort::open(AfPacketConfig {
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
    .map_err(setup("port (afpacket)"))?;
    Ok(Arc::new(afpacket))
}
