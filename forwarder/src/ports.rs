//! The configured NIC: `port.driver` and its keys mapped to a backend of `flowsteer_nic`.

use std::sync::Arc;

use flowsteer_config::{Config, Fanout as ConfigFanout, PcapPace, RxRing as ConfigRxRing};
use flowsteer_nic::afpacket::{AfPacketConfig, AfPacketPort, Fanout, RxRingKind};
use flowsteer_nic::capture::{CaptureConfig, CaptureError, CapturePort, Pace};
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

/// The capture `port.pcap_file` names, replayed through the software RSS of `port.rss_key` and
/// `port.reta_size` (`driver = "pcap"`); frames beyond `pool.data_room` are counted drops.
///
/// Errors: a file that cannot be opened, is not a capture or holds more than the replay keeps
/// in memory is [`EngineError::Device`] naming `port.pcap_file` (exit 2, like a configuration
/// the host cannot run).
pub fn open_capture(config: &Config) -> Result<Arc<CapturePort>, EngineError> {
    let port = &config.port;
    let capture = CapturePort::open(&CaptureConfig {
        path: port.pcap_file.clone().into(),
        queues: port.queues,
        rss_key: port.rss_key.bytes(),
        reta_size: port.reta_size,
        mac: port.mac.0,
        pace: match port.pcap_pace {
            PcapPace::Full => Pace::Full,
            PcapPace::Capture => Pace::Capture,
        },
        data_room: config.pool.data_room,
    });
    capture.map(Arc::new).map_err(|e| match e {
        CaptureError::Rss(e) => EngineError::Setup(format!("port (pcap): {e}")),
        e => EngineError::Device(format!("port.pcap_file: {}: {e}", port.pcap_file)),
    })
}

/// The DPDK port `port` describes (`driver = "dpdk"`): the EAL started with `port.eal_args`
/// after flowsteer's defaults (once per process: a later engine finds it started), the device
/// `port.device` looked up and checked against `port.queues` and the descriptor keys, a pool of
/// `pool.buffers` mbufs in DPDK's memory, and the device started receiving into it, its RSS set
/// from `port.rss_key` and `port.reta_size` where it has RSS (`DpdkPort::open_rss`), and with a
/// transmit-only queue for each thread beyond `port.queues` as far as the device offers spare
/// transmit queues (`DpdkPort::open_rss_sending`).
///
/// Errors: the EAL or the device failing is [`EngineError::Setup`] with DPDK's text; a
/// configuration the device cannot run (no such device, more queues, descriptors, a table size
/// or a key length it does not take) is [`EngineError::Device`], naming the key.
#[cfg(feature = "dpdk")]
pub fn open_dpdk(config: &Config) -> Result<Arc<flowsteer_nic::dpdk::DpdkPort>, EngineError> {
    use dpdk_sys::ethdev;
    use flowsteer_nic::dpdk::{DpdkPort, DpdkPortError, RssRequest};

    let port = &config.port;
    start_eal(config)?;
    let id = ethdev::port_by_name(&port.device).map_err(|e| {
        EngineError::Device(format!(
            "port.device: no DPDK device {:?} ({e}); `flowsteer ports -- <port.eal_args>` lists \
             the devices the EAL arguments create",
            port.device
        ))
    })?;
    let info = ethdev::info(id).map_err(setup("port (dpdk)"))?;
    let queues = info.max_rx_queues.min(info.max_tx_queues);
    if port.queues > queues {
        return Err(EngineError::Device(format!(
            "port.queues: {} has {queues} queue pairs at most, got {}",
            port.device, port.queues
        )));
    }
    // net_af_packet's queues are AF_PACKET sockets the EAL opened in one fanout group: the
    // kernel hashes each flow to one of them, polled or not, and a socket nobody polls holds
    // its flows' frames until its ring is full.
    if info.driver_name == "net_af_packet" && port.queues < queues {
        return Err(EngineError::Device(format!(
            "port.queues: {} spreads its flows over all its {queues} queue pairs (the kernel's \
             fanout hash), and a queue nobody polls holds its flows' frames: set {queues}, or \
             make the device with qpairs={}; got {}",
            port.device, port.queues, port.queues
        )));
    }
    for (key, value, limits) in [
        (
            "port.rx_descriptors",
            port.rx_descriptors,
            &info.rx_desc_lim,
        ),
        (
            "port.tx_descriptors",
            port.tx_descriptors,
            &info.tx_desc_lim,
        ),
    ] {
        let align = limits.align.max(1);
        if value < limits.min || value > limits.max || value % align != 0 {
            return Err(EngineError::Device(format!(
                "{key}: {} takes {}..={} descriptors in multiples of {align}, got {value}",
                port.device, limits.min, limits.max
            )));
        }
    }
    let pool = mbuf_pool(config)?;
    let rss = RssRequest {
        key: port.rss_key.bytes(),
        reta_size: port.reta_size,
    };
    let descriptors = (port.rx_descriptors, port.tx_descriptors);
    // A transmit queue of its own for each thread beyond the queue pairs, as far as the device
    // has spare ones; the others relay through a thread with a queue pair. A driver that wants as
    // many transmit as receive queues whatever its maximum (net_tap) refuses the spare ones:
    // then the port opens without them and every queue-less thread relays.
    let transmit_only =
        (config.engine.threads - port.queues).min(info.max_tx_queues.saturating_sub(port.queues));
    let opened = match transmit_only {
        0 => DpdkPort::open_rss(id, port.queues, descriptors, pool, &rss),
        spare => {
            DpdkPort::open_rss_sending(id, port.queues, spare, descriptors, pool.clone(), &rss)
                .or_else(|_| DpdkPort::open_rss(id, port.queues, descriptors, pool, &rss))
        }
    };
    opened.map(Arc::new).map_err(|e| match e {
        DpdkPortError::RetaSize { .. } => {
            EngineError::Device(format!("port.reta_size: {}: {e}", port.device))
        }
        DpdkPortError::RssKeyLength { .. } => {
            EngineError::Device(format!("port.rss_key: {}: {e}", port.device))
        }
        e => EngineError::Setup(format!("port (dpdk) {}: {e}", port.device)),
    })
}

/// The pools `[pool]` describes (an L1 per queue, the shared one) as mbufs in DPDK's memory for
/// `config`'s DPDK port, under mempool names the process has not used (one set per engine).
#[cfg(feature = "dpdk")]
fn mbuf_pool(config: &Config) -> Result<Arc<flowsteer_nic::pool::PacketPool>, EngineError> {
    use std::sync::atomic::{AtomicU32, Ordering};

    static POOLS: AtomicU32 = AtomicU32::new(0);
    let name = format!("flowsteer{}", POOLS.fetch_add(1, Ordering::Relaxed));
    crate::pools::mbuf_pool(config, &name).map_err(setup("pool"))
}

/// The DPDK port the traffic generator feeds (`driver = "dpdk"` with a `traffic.profile`): the
/// EAL started as for [`open_dpdk`], a ring-backed ethdev that flowsteer creates
/// (`net_ring_fs<n>`, `port.device` empty) with `port.queues` queue pairs, each a receive
/// ring of `port.rx_descriptors` and a transmit ring of `port.tx_descriptors` mbufs, run as a
/// [`DpdkPort`](flowsteer_nic::dpdk::DpdkPort) over a pool of `pool.buffers` mbufs; `plan`'s
/// sources feed its queues, spread by `rss` (the software RSS of `port.rss_key` and
/// `port.reta_size`, which the plan was installed with).
#[cfg(feature = "dpdk")]
pub fn open_generated_dpdk(
    config: &Config,
    rss: flowsteer_nic::rss::SoftRss,
    plan: crate::traffic::TrafficPlan,
) -> Result<Arc<crate::traffic::GeneratedDpdkPort>, EngineError> {
    use std::sync::atomic::{AtomicU32, Ordering};

    use dpdk_sys::RingDevice;
    use flowsteer_nic::dpdk::DpdkPort;

    let port = &config.port;
    if port.queues > RingDevice::MAX_QUEUES {
        return Err(EngineError::Setup(format!(
            "port.queues: the traffic generator's DPDK ring device takes at most {} queues, got {}",
            RingDevice::MAX_QUEUES,
            port.queues
        )));
    }
    start_eal(config)?;
    let pool = mbuf_pool(config)?;
    // One device per engine: a name the process has not used.
    static DEVICES: AtomicU32 = AtomicU32::new(0);
    let name = format!("fs{}", DEVICES.fetch_add(1, Ordering::Relaxed));
    let (device, ends) = RingDevice::create(
        &name,
        port.queues,
        (
            u32::from(port.rx_descriptors),
            u32::from(port.tx_descriptors),
        ),
    )
    .map_err(setup("port (dpdk ring device)"))?;
    let dpdk = DpdkPort::open_with(
        device.port_id(),
        port.queues,
        (port.rx_descriptors, port.tx_descriptors),
        pool,
    )
    .map_err(setup("port (dpdk ring device)"))?;
    Ok(Arc::new(crate::traffic::GeneratedDpdkPort::new(
        dpdk, device, ends, rss, plan,
    )))
}

/// Starts the EAL for `config`'s DPDK port, once per process: flowsteer's defaults, then
/// `port.eal_args`, and, unless those set the memory, `-m` with room for `[pool]`.
#[cfg(feature = "dpdk")]
pub fn start_eal(config: &Config) -> Result<(), EngineError> {
    let mut eal_args = config.port.eal_args.clone();
    // Without huge pages the EAL reserves 64 MiB unless told: room for the pool twice over (the
    // mempool's headers, the device's rings), and 128 MiB besides.
    let gives = |opt| crate::dpdk_ports::gives(&config.port.eal_args, opt);
    if !gives("-m") && !gives("--socket-mem") {
        let buffer = u64::from(config.pool.data_room) + 512;
        let megabytes = 2 * u64::from(config.pool.buffers) * buffer / (1 << 20) + 128;
        eal_args.extend(["-m".to_owned(), megabytes.to_string()]);
    }
    // The EAL pins this thread to its lcore's CPU; the stack threads spawned from it must not
    // inherit that.
    crate::pin::keeping_cpu_set(|| crate::dpdk_ports::start_eal(&eal_args))
        .map_err(setup("port (dpdk)"))?
        .map_err(setup("port (dpdk)"))
}

/// What `flowsteer check` adds for a DPDK port, as TOML comments: what it cannot know without
/// the device (it does not start the EAL: probing takes the device, which a running engine may
/// hold, and a virtual device's probe acts on the host, as net_af_packet binds to its
/// interface and net_tap makes one), where to read it and what `run` does with it.
pub fn dpdk_check_notes(config: &Config) -> String {
    let eal: Vec<String> = config.port.eal_args.iter().map(|a| shell_word(a)).collect();
    format!(
        "# port.driver = \"dpdk\": check does not start the EAL, so the RSS of port.device \
         ({device:?}) is not\n\
         # known here. `flowsteer ports -- {eal}` lists it (RSS flow types, RETA size, key size).\n\
         # At start, `flowsteer run` sets port.rss_key and port.reta_size on a device with RSS and \
         states\n\
         # what the device holds; it refuses a table size or key length the device does not take \
         (exit 2);\n\
         # a device without RSS runs on the driver's own spread, and says so. Checksum offload: \
         off (the\n\
         # stack computes every checksum in software).\n",
        device = config.port.device,
        eal = eal.join(" ")
    )
}

/// `word` as one shell word: as it is when it has nothing the shell reads, else single-quoted.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=,.:/@+%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// What a build without the `dpdk` feature says to `port.driver = "dpdk"`.
pub const NEEDS_DPDK_DRIVER: &str = "port.driver = \"dpdk\" needs a flowsteer built with DPDK: \
     cargo build --release -p forwarder --features dpdk (Debian/Ubuntu: apt-get install \
     libdpdk-dev libclang-dev clang pkg-config)";
