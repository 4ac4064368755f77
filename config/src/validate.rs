//! The rules a configuration must follow: the range of every key, then the rules between keys.
//!
//! Every rule is checked and every broken rule reported, in reference order, so a user sees all
//! problems at once. A rule between keys is skipped when one of its keys was already rejected
//! (its value is then a default the user did not write, or a value already reported), and a
//! broken rule between keys rejects the key it blames, so later rules do not pile onto it.
//!
//! Messages read `key.path: must be <allowed>, got <value>`; a rule between keys names the other
//! key with its value in parentheses: `port.queues: must be <= engine.threads (2), got 3`.
//! Cost: a few comparisons per key, once at start-up; no allocation unless a rule is broken.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::error::Collector;
use crate::parse::render;
use crate::schema;
use crate::sections::{
    App, Engine, Fault, FlowTableCfg, Pool, Port, Stack, Swq, Traffic, MAX_ETHERNET_FRAME,
};
use crate::types::{AppKind, Balance, Driver, FaultKind, Idle, OnFailure, Profile, Rate};
use crate::Config;

const MAX_THREADS: u16 = 64;
/// Descriptors of a DPDK queue: what drivers accept in practice (each may round or refuse within).
const MIN_DESCRIPTORS: u16 = 32;
const MAX_DESCRIPTORS: u16 = 32768;
const MAX_CORE: u16 = 1023;
const MAX_BURST: u16 = 256;
const MAX_IDLE_SLEEP_US: u32 = 100_000;
const MIN_POOL_BUFFERS: u32 = 1024;
const MAX_POOL_BUFFERS: u32 = 4_194_304;
const MIN_DATA_ROOM: u16 = 128;
pub(crate) const MAX_DATA_ROOM: u16 = 9216;
const MAX_POOL_CACHE: u32 = 1024;
/// At least a tenth of the buffers go to the queues' L1 pools.
const MAX_SHARED_PERCENT: u8 = 100;
pub(crate) const MAX_TABLE_CAPACITY: usize = 1 << 26;
const MAX_RING: usize = 1 << 20;
const MAX_RETA: usize = 4096;
const MAX_FLOWS: u32 = 1 << 24;
const MAX_PACKET_SIZE: u16 = 1514;
const MAX_ZIPF_S: f64 = 10.0;
const MAX_RATE: u64 = 1_000_000_000;
const MAX_CHURN_RATE: u32 = 10_000_000;
/// TOML integers are signed 64-bit: a larger seed could not be written back.
const MAX_SEED: u64 = i64::MAX as u64;
const MAX_PORT: u32 = 65535;
/// `IFNAMSIZ` less the terminating NUL.
const MAX_INTERFACE_NAME: usize = 15;
const MIN_BLOCK_SIZE: u32 = 4096;
const MAX_BLOCK_SIZE: u32 = 1 << 22;
const MIN_BLOCKS: u32 = 2;
const MIN_FRAMES: usize = 16;
const MAX_FRAMES: usize = 1 << 20;
const MAX_BLOCKS: u32 = 1024;
const MAX_BLOCK_TIMEOUT_MS: u32 = 1000;
const MIN_TCP_BUFFER: u32 = 1024;
/// UDP buffers hold a whole datagram of a full frame plus its metadata.
const MIN_UDP_BUFFER: u32 = 2048;
const MAX_SOCKET_BUFFER: u32 = 1 << 24;
const MAX_CONNECTIONS: u32 = 65536;
/// Longest idle or keep-alive timeout: a day.
const MAX_TIMEOUT_S: u32 = 86_400;
/// Longest SYN timeout: beyond it the stack's own 120 s limit ends a half-open connection
/// first (with a reset).
const MAX_SYN_TIMEOUT_MS: u32 = 120_000;
/// Longest wait of a reply for its link address.
const MAX_NEIGHBOR_WAIT_MS: u32 = 60_000;

/// Shortest stall limit: several scheduler periods of an oversubscribed machine.
const MIN_STALL_MS: u32 = 100;
/// Longest stall limit: ten minutes.
const MAX_STALL_MS: u32 = 600_000;
/// Idle sleeps a stall limit spans at least: a sleeping thread is not stalled.
const STALL_IDLE_SLEEPS: u64 = 10;
/// Most restarts per thread and minute a limit may allow.
const MAX_RESTART_LIMIT: u32 = 1000;
/// Latest fault injection and longest injected stall: a day.
const MAX_FAULT_MS: u32 = 86_400_000;

/// Checks every rule of `config`, adding each broken one to `out`.
pub(crate) fn check(config: &Config, out: &mut Collector) {
    check_engine(&config.engine, out);
    check_pool(&config.pool, out);
    check_flowtable(&config.flowtable, out);
    check_swq(&config.swq, out);
    check_port(&config.port, out);
    check_stack(&config.stack, out);
    check_traffic(&config.traffic, out);
    check_fault(&config.fault, out);
    // [metrics]: any socket address is valid, port 0 included (the system picks a free port,
    // which tests use to run in parallel).
    check_between_keys(config, out);
}

fn check_engine(engine: &Engine, out: &mut Collector) {
    in_range(out, "engine.threads", engine.threads, 1, MAX_THREADS);
    let mut first_use: HashMap<u16, usize> = HashMap::new();
    for (i, &core) in engine.cores.iter().enumerate() {
        let path = format!("engine.cores[{i}]");
        if core > MAX_CORE {
            out.reject(path, format!("must be 0..={MAX_CORE}, got {core}"));
        } else if let Some(first) = first_use.get(&core) {
            out.reject(
                path,
                format!("must differ from engine.cores[{first}] ({core}), got {core}"),
            );
        } else {
            first_use.insert(core, i);
        }
    }
    in_range(out, "engine.burst", engine.burst, 1, MAX_BURST);
    // The upper bound, swq.size, is a rule between keys.
    in_range(
        out,
        "engine.drain_limit",
        engine.drain_limit,
        1,
        MAX_RING as u32,
    );
    in_range(
        out,
        "engine.idle_sleep_us",
        engine.idle_sleep_us,
        1,
        MAX_IDLE_SLEEP_US,
    );
    in_range(
        out,
        "engine.restart_limit",
        engine.restart_limit,
        0,
        MAX_RESTART_LIMIT,
    );
    if engine.stall_ms != 0 {
        in_range(
            out,
            "engine.stall_ms",
            engine.stall_ms,
            MIN_STALL_MS,
            MAX_STALL_MS,
        );
    }
}

/// `[fault]`: only its own ranges; the thread's bound is a rule between keys.
fn check_fault(fault: &Fault, out: &mut Collector) {
    in_range(out, "fault.after_ms", fault.after_ms, 0, MAX_FAULT_MS);
    in_range(
        out,
        "fault.stall_for_ms",
        fault.stall_for_ms,
        1,
        MAX_FAULT_MS,
    );
}

fn check_pool(pool: &Pool, out: &mut Collector) {
    in_range(
        out,
        "pool.buffers",
        pool.buffers,
        MIN_POOL_BUFFERS,
        MAX_POOL_BUFFERS,
    );
    in_range(
        out,
        "pool.data_room",
        pool.data_room,
        MIN_DATA_ROOM,
        MAX_DATA_ROOM,
    );
    in_range(out, "pool.cache", pool.cache, 0, MAX_POOL_CACHE);
    in_range(
        out,
        "pool.shared_percent",
        pool.shared_percent,
        0,
        MAX_SHARED_PERCENT,
    );
    in_range(
        out,
        "pool.low_watermark",
        pool.low_watermark,
        0,
        MAX_POOL_BUFFERS,
    );
}

fn check_flowtable(flowtable: &FlowTableCfg, out: &mut Collector) {
    in_range(
        out,
        "flowtable.capacity",
        flowtable.capacity,
        1,
        MAX_TABLE_CAPACITY,
    );
    in_range(
        out,
        "flowtable.ipv6_capacity",
        flowtable.ipv6_capacity,
        0,
        MAX_TABLE_CAPACITY,
    );
}

fn check_swq(swq: &Swq, out: &mut Collector) {
    power_of_two(out, "swq.size", swq.size, 2, MAX_RING);
}

fn check_port(port: &Port, out: &mut Collector) {
    // Whether a name is required, or forbidden, depends on the driver: a rule between keys.
    if !port.interface.is_empty() && !is_interface_name(&port.interface) {
        out.reject(
            "port.interface",
            format!(
                "must be an interface name of 1..={MAX_INTERFACE_NAME} bytes without '/', ':', \
                 whitespace or NUL, not \".\" or \"..\", got {}",
                quoted(&port.interface)
            ),
        );
    }
    // The upper bound, engine.threads, is a rule between keys.
    in_range(out, "port.queues", port.queues, 1, MAX_THREADS);
    power_of_two(out, "port.reta_size", port.reta_size, 1, MAX_RETA);
    power_of_two(out, "port.ring_size", port.ring_size, 2, MAX_RING);
    power_of_two(
        out,
        "port.frames",
        port.frames as usize,
        MIN_FRAMES,
        MAX_FRAMES,
    );
    power_of_two(
        out,
        "port.block_size",
        port.block_size as usize,
        MIN_BLOCK_SIZE as usize,
        MAX_BLOCK_SIZE as usize,
    );
    in_range(out, "port.blocks", port.blocks, MIN_BLOCKS, MAX_BLOCKS);
    in_range(
        out,
        "port.block_timeout_ms",
        port.block_timeout_ms,
        1,
        MAX_BLOCK_TIMEOUT_MS,
    );
    in_range(
        out,
        "port.rx_descriptors",
        port.rx_descriptors,
        MIN_DESCRIPTORS,
        MAX_DESCRIPTORS,
    );
    in_range(
        out,
        "port.tx_descriptors",
        port.tx_descriptors,
        MIN_DESCRIPTORS,
        MAX_DESCRIPTORS,
    );
    if port.device.contains('\0') || port.device.chars().any(char::is_whitespace) {
        out.reject(
            "port.device",
            format!(
                "must be a device name without whitespace or NUL, got {}",
                quoted(&port.device)
            ),
        );
    }
    for (i, arg) in port.eal_args.iter().enumerate() {
        if arg.is_empty() || arg.contains('\0') {
            out.reject(
                format!("port.eal_args[{i}]"),
                format!(
                    "must be a non-empty argument without NUL, got {}",
                    quoted(arg)
                ),
            );
        }
    }
    let mac = port.mac;
    if mac.is_multicast() || mac.0 == [0; 6] {
        out.reject(
            "port.mac",
            format!(
                "must be a unicast MAC address (not all zero, low bit of the first byte clear), \
                 got \"{mac}\""
            ),
        );
    }
    if !is_unicast_v4(port.ipv4) {
        out.reject(
            "port.ipv4",
            format!(
                "must be a unicast IPv4 address (not unspecified, broadcast or multicast), \
                 got \"{}\"",
                port.ipv4
            ),
        );
    }
    in_range(out, "port.ipv4_prefix", port.ipv4_prefix, 1, 32);
    if !is_unicast_v6(port.ipv6) {
        out.reject(
            "port.ipv6",
            format!(
                "must be a unicast IPv6 address (not unspecified or multicast), got \"{}\"",
                port.ipv6
            ),
        );
    }
    in_range(out, "port.ipv6_prefix", port.ipv6_prefix, 1, 128);
}

fn check_stack(stack: &Stack, out: &mut Collector) {
    in_range(
        out,
        "stack.tcp_rx_buffer",
        stack.tcp_rx_buffer,
        MIN_TCP_BUFFER,
        MAX_SOCKET_BUFFER,
    );
    in_range(
        out,
        "stack.tcp_tx_buffer",
        stack.tcp_tx_buffer,
        MIN_TCP_BUFFER,
        MAX_SOCKET_BUFFER,
    );
    in_range(
        out,
        "stack.udp_buffer",
        stack.udp_buffer,
        MIN_UDP_BUFFER,
        MAX_SOCKET_BUFFER,
    );
    in_range(
        out,
        "stack.max_connections",
        stack.max_connections,
        1,
        MAX_CONNECTIONS,
    );
    in_range(
        out,
        "stack.idle_timeout_s",
        stack.idle_timeout_s,
        0,
        MAX_TIMEOUT_S,
    );
    in_range(
        out,
        "stack.keepalive_timeout_s",
        stack.keepalive_timeout_s,
        0,
        MAX_TIMEOUT_S,
    );
    in_range(
        out,
        "stack.syn_timeout_ms",
        stack.syn_timeout_ms,
        0,
        MAX_SYN_TIMEOUT_MS,
    );
    in_range(
        out,
        "stack.neighbor_wait_ms",
        stack.neighbor_wait_ms,
        1,
        MAX_NEIGHBOR_WAIT_MS,
    );
    for (i, app) in stack.app.iter().enumerate() {
        let port_path = format!("stack.app[{i}].port");
        // A missing or mistyped port was reported where it was read; it holds a placeholder.
        if app.port == 0 && !out.is_rejected(&port_path) {
            out.reject(port_path, format!("must be 1..={MAX_PORT}, got 0"));
        }
        check_upstream(i, app, out);
        // The upper bound, engine.threads, is a rule between keys.
        let mut first_use: HashMap<u16, usize> = HashMap::new();
        for (j, &thread) in app.threads.iter().enumerate() {
            if let Some(first) = first_use.get(&thread) {
                out.reject(
                    format!("stack.app[{i}].threads[{j}]"),
                    format!(
                        "must differ from stack.app[{i}].threads[{first}] ({thread}), got {thread}"
                    ),
                );
            } else {
                first_use.insert(thread, j);
            }
        }
    }
}

fn check_traffic(traffic: &Traffic, out: &mut Collector) {
    in_range(out, "traffic.flows", traffic.flows, 1, MAX_FLOWS);
    // The lower bound grows with the traffic mix: a rule between keys.
    in_range(
        out,
        "traffic.packet_size",
        traffic.packet_size,
        crate::sections::MIN_ETHERNET_FRAME,
        MAX_PACKET_SIZE,
    );
    share(out, "traffic.ipv6_share", traffic.ipv6_share);
    share(out, "traffic.udp_share", traffic.udp_share);
    // Written so that NaN fails too.
    if !(traffic.zipf_s > 0.0 && traffic.zipf_s <= MAX_ZIPF_S) {
        out.reject(
            "traffic.zipf_s",
            format!("must be > 0.0 and <= 10.0, got {}", float(traffic.zipf_s)),
        );
    }
    if let Rate::Pps(pps) = traffic.rate {
        if !(1..=MAX_RATE).contains(&pps) {
            out.reject(
                "traffic.rate",
                format!("must be \"max\" or 1..={MAX_RATE}, got {pps}"),
            );
        }
    }
    in_range(
        out,
        "traffic.churn_rate",
        traffic.churn_rate,
        1,
        MAX_CHURN_RATE,
    );
    // The upper bound, 65536 - engine.threads, is a rule between keys.
    in_range(out, "traffic.port_base", traffic.port_base, 1, u16::MAX);
    in_range(out, "traffic.seed", traffic.seed, 0, MAX_SEED);
}

fn check_between_keys(config: &Config, out: &mut Collector) {
    let Config {
        engine,
        pool,
        swq,
        port,
        traffic,
        ..
    } = config;

    if engine.stall_ms != 0
        && engine.idle == Idle::Sleep
        && !out.any_rejected(&["engine.stall_ms", "engine.idle_sleep_us"])
        && u64::from(engine.stall_ms) * 1000 < STALL_IDLE_SLEEPS * u64::from(engine.idle_sleep_us)
    {
        out.reject(
            "engine.stall_ms",
            format!(
                "must span at least {STALL_IDLE_SLEEPS} idle sleeps (engine.idle_sleep_us = {} \
                 us: {} ms), got {}",
                engine.idle_sleep_us,
                (STALL_IDLE_SLEEPS * u64::from(engine.idle_sleep_us)).div_ceil(1000),
                engine.stall_ms
            ),
        );
    }
    if engine.on_failure == OnFailure::Redistribute
        && engine.threads < 2
        && !out.any_rejected(&["engine.on_failure", "engine.threads"])
    {
        out.reject(
            "engine.on_failure",
            format!(
                "\"{}\" needs a surviving thread (engine.threads >= 2), got engine.threads = {}",
                OnFailure::Redistribute,
                engine.threads
            ),
        );
    }
    if config.fault.kind != FaultKind::None
        && config.fault.thread >= engine.threads
        && !out.any_rejected(&["fault.thread", "engine.threads"])
    {
        out.reject(
            "fault.thread",
            format!(
                "must be < engine.threads ({}), got {}",
                engine.threads, config.fault.thread
            ),
        );
    }

    if !out.any_rejected(&["port.queues", "engine.threads"]) && port.queues > engine.threads {
        out.reject(
            "port.queues",
            format!(
                "must be <= engine.threads ({}), got {}",
                engine.threads, port.queues
            ),
        );
    }

    if traffic.profile == Profile::FewerQueues
        && !out.any_rejected(&["port.queues", "engine.threads", "traffic.profile"])
        && port.queues >= engine.threads
    {
        out.reject(
            "port.queues",
            format!(
                "must be < engine.threads ({}) for traffic.profile \"{}\", got {}",
                engine.threads, traffic.profile, port.queues
            ),
        );
    }

    if !engine.cores.is_empty()
        && !out.any_rejected(&["engine.threads", "engine.cores"])
        && engine.cores.len() != usize::from(engine.threads)
    {
        let cores: Vec<String> = engine.cores.iter().map(u16::to_string).collect();
        out.reject(
            "engine.cores",
            format!(
                "must be empty or hold engine.threads ({}) cores, got [{}]",
                engine.threads,
                cores.join(", ")
            ),
        );
    }

    if !out.any_rejected(&["engine.drain_limit", "swq.size"])
        && usize::try_from(engine.drain_limit).map_or(true, |limit| limit > swq.size)
    {
        out.reject(
            "engine.drain_limit",
            format!(
                "must be <= swq.size ({}), got {}",
                swq.size, engine.drain_limit
            ),
        );
    }

    if !out.any_rejected(&[
        "traffic.packet_size",
        "traffic.ipv6_share",
        "traffic.udp_share",
    ]) {
        let minimum = traffic.min_packet_size();
        if traffic.packet_size < minimum {
            let headers = traffic.largest_headers();
            out.reject(
                "traffic.packet_size",
                format!(
                    "must be >= {minimum} (Ethernet 14 + {} {} (traffic.ipv6_share {}) + {} {} \
                     (traffic.udp_share {}) + generator stamp {}), got {}",
                    headers.ip.0,
                    headers.ip.1,
                    float(traffic.ipv6_share),
                    headers.l4.0,
                    headers.l4.1,
                    float(traffic.udp_share),
                    crate::sections::GENERATOR_STAMP_BYTES,
                    traffic.packet_size
                ),
            );
        }
    }

    if !out.any_rejected(&["pool.data_room", "traffic.packet_size"])
        && pool.data_room < traffic.packet_size
    {
        out.reject(
            "pool.data_room",
            format!(
                "must be >= traffic.packet_size ({}), got {}",
                traffic.packet_size, pool.data_room
            ),
        );
    }

    if !out.any_rejected(&["traffic.port_base", "engine.threads"]) {
        let last_port =
            (u32::from(traffic.port_base) + u32::from(engine.threads)).saturating_sub(1);
        if last_port > MAX_PORT {
            out.reject(
                "traffic.port_base",
                format!(
                    "must be <= {} (thread i listens on port_base + i, engine.threads ({})), got {}",
                    (MAX_PORT + 1).saturating_sub(u32::from(engine.threads)),
                    engine.threads,
                    traffic.port_base
                ),
            );
        }
    }

    if !out.any_rejected(&["port.reta_size", "port.queues"])
        && port.reta_size < usize::from(port.queues)
    {
        out.reject(
            "port.reta_size",
            format!(
                "must be >= port.queues ({}), got {}",
                port.queues, port.reta_size
            ),
        );
    }

    let sizing_keys = [
        "pool.buffers",
        "pool.cache",
        "engine.threads",
        "engine.burst",
        "engine.drain_limit",
        "swq.size",
        "port.queues",
        "port.ring_size",
    ];
    if !out.any_rejected(&sizing_keys) {
        let minimum = config.min_pool_buffers();
        if u64::from(pool.buffers) < minimum {
            let relays = match config.transmit_relays() {
                0 => String::new(),
                n => format!(" + {n} software transmit queues * swq.size"),
            };
            let hint = if minimum > u64::from(MAX_POOL_BUFFERS) {
                format!(
                    "; that is more than the largest pool ({MAX_POOL_BUFFERS}): lower swq.size, \
                     port.ring_size, pool.cache or engine.threads"
                )
            } else {
                String::new()
            };
            out.reject(
                "pool.buffers",
                format!(
                    "must be >= {minimum} for this configuration: engine.threads ({}) * \
                     (pool.cache ({}) + swq.size ({}) + 2 * engine.burst ({}) + \
                     engine.drain_limit ({}) + port.queues ({}) * min(pool.cache / 2, 64)) + \
                     2 * port.queues * port.ring_size ({}){relays}{hint}, got {}",
                    engine.threads,
                    pool.cache,
                    swq.size,
                    engine.burst,
                    engine.drain_limit,
                    port.queues,
                    port.ring_size,
                    pool.buffers
                ),
            );
        }
    }
    check_pool_split(config, out);

    check_port_and_apps(config, out);
    check_proxies(config, out);
}

/// The rules of the split into L1 pools and a shared pool: threads without a queue need a shared
/// pool, and the watermark must leave each L1 pool buffers to use (with dpdk, beyond those its
/// receive ring holds).
fn check_pool_split(config: &Config, out: &mut Collector) {
    let (pool, engine, port) = (&config.pool, &config.engine, &config.port);
    if !out.any_rejected(&["pool.shared_percent", "engine.threads", "port.queues"])
        && pool.shared_percent == 0
        && engine.threads > port.queues
    {
        out.reject(
            "pool.shared_percent",
            format!(
                "must be > 0 when engine.threads ({}) > port.queues ({}): the threads without a \
                 queue draw from the shared pool, got 0",
                engine.threads, port.queues
            ),
        );
    }
    let split_keys = [
        "pool.low_watermark",
        "pool.buffers",
        "pool.shared_percent",
        "port.queues",
        "port.rx_descriptors",
    ];
    if out.any_rejected(&split_keys) {
        return;
    }
    let split = config.pool_split();
    let (ring, ring_text) = if port.driver == Driver::Dpdk {
        (
            u32::from(port.rx_descriptors),
            format!(" less port.rx_descriptors ({})", port.rx_descriptors),
        )
    } else {
        (0, String::new())
    };
    let usable = split.per_queue.saturating_sub(ring);
    // With every buffer shared there is no L1 pool to watch.
    if pool.shared_percent < 100 && pool.low_watermark > 0 && pool.low_watermark >= usable {
        out.reject(
            "pool.low_watermark",
            format!(
                "must be < {usable}: the buffers of each queue's L1 pool ({}: pool.buffers ({}) \
                 less pool.shared_percent ({})%, over port.queues ({})){ring_text}, got {}",
                split.per_queue, pool.buffers, pool.shared_percent, port.queues, pool.low_watermark
            ),
        );
    }
}

/// The rules that tie the driver and the apps to the rest: the interface name, the traffic
/// profile, frame-sized buffers, and the threads and ports of the apps.
fn check_port_and_apps(config: &Config, out: &mut Collector) {
    let Config {
        engine,
        pool,
        port,
        stack,
        traffic,
        ..
    } = config;

    if !out.any_rejected(&["port.driver", "port.interface"]) {
        match port.driver {
            Driver::AfPacket if port.interface.is_empty() => out.reject(
                "port.interface",
                format!(
                    "must name a Linux interface for port.driver \"{}\", got \"\"",
                    port.driver
                ),
            ),
            Driver::Uveth | Driver::Pcap if !port.interface.is_empty() => out.reject(
                "port.interface",
                format!(
                    "must be empty for port.driver \"{}\" (a user-space port has no kernel \
                     interface), got {}",
                    port.driver,
                    quoted(&port.interface)
                ),
            ),
            Driver::Dpdk if !port.interface.is_empty() => out.reject(
                "port.interface",
                format!(
                    "must be empty for port.driver \"{}\" (port.device names the DPDK device), \
                     got {}",
                    port.driver,
                    quoted(&port.interface)
                ),
            ),
            Driver::AfPacket | Driver::Uveth | Driver::Dpdk | Driver::Pcap => {}
        }
    }
    if !out.any_rejected(&["port.driver", "port.pcap_file"]) {
        match port.driver {
            Driver::Pcap if port.pcap_file.is_empty() => out.reject(
                "port.pcap_file",
                format!(
                    "must name the capture file (.pcap or .pcapng) for port.driver \"{}\", \
                     got \"\"",
                    port.driver
                ),
            ),
            Driver::AfPacket | Driver::Uveth | Driver::Dpdk if !port.pcap_file.is_empty() => out
                .reject(
                    "port.pcap_file",
                    format!(
                        "must be empty for port.driver \"{}\" (only the pcap driver replays a \
                         capture), got {}",
                        port.driver,
                        quoted(&port.pcap_file)
                    ),
                ),
            _ => {}
        }
    }
    let generated = traffic.profile != Profile::None;
    if !out.any_rejected(&["port.driver", "port.device", "traffic.profile"]) {
        match port.driver {
            // The generator runs on a ring device the engine creates, not on a device of the
            // EAL arguments.
            Driver::Dpdk if generated && !port.device.is_empty() => out.reject(
                "port.device",
                format!(
                    "must be empty for port.driver \"{}\" with traffic.profile \"{}\" (the \
                     generator feeds a ring device the engine creates, net_ring_fs<n>), got {}",
                    port.driver,
                    traffic.profile,
                    quoted(&port.device)
                ),
            ),
            Driver::Dpdk if !generated && port.device.is_empty() => out.reject(
                "port.device",
                format!(
                    "must name the DPDK device for port.driver \"{}\" (a vdev's name as in \
                     --vdev=net_af_packet0,iface=eth1 in port.eal_args, or a PCI address; \
                     `flowsteer ports` lists them), got \"\"",
                    port.driver
                ),
            ),
            Driver::AfPacket | Driver::Uveth | Driver::Pcap if !port.device.is_empty() => out
                .reject(
                    "port.device",
                    format!(
                        "must be empty for port.driver \"{}\" (only a DPDK port has a DPDK \
                     device), got {}",
                        port.driver,
                        quoted(&port.device)
                    ),
                ),
            _ => {}
        }
    }

    if engine.idle == Idle::Wait
        && port.driver != Driver::AfPacket
        && !out.any_rejected(&["engine.idle", "port.driver"])
    {
        out.reject(
            "engine.idle",
            format!(
                "\"{}\" needs a port whose queues can wake a sleeping thread (port.driver \
                 \"{}\"), got port.driver \"{}\"",
                Idle::Wait,
                Driver::AfPacket,
                port.driver
            ),
        );
    }
    if matches!(port.driver, Driver::AfPacket | Driver::Pcap)
        && traffic.profile != Profile::None
        && !out.any_rejected(&["port.driver", "traffic.profile"])
    {
        out.reject(
            "traffic.profile",
            format!(
                "must be \"{}\" for port.driver \"{}\" (the generator feeds uveth queues and \
                 DPDK ring devices, not a kernel's interface nor a capture), got \"{}\"",
                Profile::None,
                port.driver,
                traffic.profile
            ),
        );
    }
    // Any entry counts, even one with a rejected key: the user wrote an app.
    if !stack.app.is_empty()
        && traffic.profile != Profile::None
        && !out.is_rejected("traffic.profile")
    {
        out.reject(
            "traffic.profile",
            format!(
                "must be \"{}\" with [[stack.app]] entries (generated frames are not \
                 connections), got \"{}\"",
                Profile::None,
                traffic.profile
            ),
        );
    }

    // A thread without a receive queue gets connections only from the threads that have one:
    // software balancing hands them over, RSS cannot reach it.
    if !stack.app.is_empty()
        && engine.balance == Balance::Rss
        && !out.any_rejected(&["port.queues", "engine.threads", "engine.balance"])
        && port.queues < engine.threads
    {
        let queueless = if engine.threads - port.queues == 1 {
            format!("thread {}", port.queues)
        } else {
            format!("threads {}..{}", port.queues, engine.threads - 1)
        };
        out.reject(
            "engine.balance",
            format!(
                "must be \"{}\" with [[stack.app]] entries and fewer queues than threads \
                 (port.queues {} < engine.threads {}): RSS spreads connections over the queues \
                 only, so {queueless} without a queue would never get one (or set port.queues \
                 = engine.threads), got \"{}\"",
                Balance::Software,
                port.queues,
                engine.threads,
                engine.balance
            ),
        );
    }

    if !out.any_rejected(&["pool.data_room", "port.driver"]) && pool.data_room < MAX_ETHERNET_FRAME
    {
        let cause = if port.driver != Driver::Uveth {
            Some(format!("port.driver \"{}\"", port.driver))
        } else if !stack.app.is_empty() {
            Some(String::from("[[stack.app]] entries"))
        } else {
            None
        };
        if let Some(cause) = cause {
            out.reject(
                "pool.data_room",
                format!(
                    "must be >= {MAX_ETHERNET_FRAME} (a full Ethernet frame without FCS) with \
                     {cause}, got {}",
                    pool.data_room
                ),
            );
        }
    }

    if out.is_rejected("engine.threads") {
        return;
    }
    for (i, app) in stack.app.iter().enumerate() {
        for (j, &thread) in app.threads.iter().enumerate() {
            let path = format!("stack.app[{i}].threads[{j}]");
            if thread >= engine.threads && !out.is_rejected(&path) {
                out.reject(
                    path,
                    format!(
                        "must be < engine.threads ({}), got {thread}",
                        engine.threads
                    ),
                );
            }
        }
    }
    // Only apps of the same port and transport can clash: each app is compared with the
    // earlier ones of its group, in file order, not with every earlier app.
    let mut groups: HashMap<(u16, bool), Vec<usize>> = HashMap::new();
    for (i, app) in stack.app.iter().enumerate() {
        let earlier = groups.entry((app.port, app.kind.is_tcp())).or_default();
        for &first in earlier.iter() {
            let other = &stack.app[first];
            let paths = [format!("stack.app[{i}]"), format!("stack.app[{first}]")];
            if paths.iter().any(|p| out.is_rejected(p)) {
                continue;
            }
            let shared = shared_threads(other, app, engine.threads);
            if let Some(&lowest) = shared.first() {
                let transport = if app.kind.is_tcp() { "TCP" } else { "UDP" };
                let threads = if shared.len() == usize::from(engine.threads) {
                    String::from("every thread")
                } else if shared.len() == 1 {
                    format!("thread {lowest}")
                } else {
                    let list: Vec<String> = shared.iter().map(u16::to_string).collect();
                    format!("threads {}", list.join(", "))
                };
                out.reject(
                    format!("stack.app[{i}].port"),
                    format!(
                        "must differ from stack.app[{first}].port ({}): two {transport} apps \
                         (\"{}\", \"{}\") on {threads}, got {}",
                        other.port, other.kind, app.kind, app.port
                    ),
                );
                break;
            }
        }
        earlier.push(i);
    }
}

/// The upstream of app `i` within its own entry: present exactly with a kind that connects
/// upstream, a unicast address that is not loopback, and a port other than 0. Where it must
/// sit (the port's subnet) is a rule between keys, [`check_upstream_on_link`].
fn check_upstream(i: usize, app: &App, out: &mut Collector) {
    let path = format!("stack.app[{i}].upstream");
    // A mistyped upstream was reported where it was read; a rejected kind is a placeholder.
    if out.any_rejected(&[&path, &format!("stack.app[{i}].kind")]) {
        return;
    }
    let Some(upstream) = app.upstream else {
        if app.kind.connects_upstream() {
            let allowed = schema::APP
                .key("upstream")
                .map_or_else(String::new, |key| key.allowed.describe());
            out.reject(
                path,
                format!("required with kind = \"{}\" (must be {allowed})", app.kind),
            );
        }
        return;
    };
    if !app.kind.connects_upstream() {
        out.reject(
            path,
            format!(
                "must be absent with kind = \"{}\": only kind = \"{}\" takes an upstream, got \
                 \"{upstream}\"",
                app.kind,
                AppKind::TcpProxy
            ),
        );
    } else if let Some(reason) = not_a_unicast_host(upstream.ip()) {
        out.reject(
            path,
            format!("must be a unicast address ({reason}), got \"{upstream}\""),
        );
    } else if upstream.port() == 0 {
        out.reject(
            path,
            format!("must have a port 1..={MAX_PORT}, got \"{upstream}\""),
        );
    }
}

/// Why `ip` cannot be a server to connect to, if it cannot.
fn not_a_unicast_host(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => Some("not unspecified"),
        IpAddr::V4(v4) if v4.is_loopback() => {
            Some("not loopback: a stack cannot reach the host's loopback")
        }
        IpAddr::V4(v4) if !is_unicast_v4(v4) => Some("not broadcast or multicast"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("not unspecified"),
        IpAddr::V6(v6) if v6.is_loopback() => {
            Some("not loopback: a stack cannot reach the host's loopback")
        }
        IpAddr::V6(v6) if !is_unicast_v6(v6) => Some("not multicast"),
        // The stacks would send IPv6 packets to it, which no IPv4 host answers.
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
            Some("not IPv4-mapped: write the IPv4 address itself")
        }
        IpAddr::V4(_) | IpAddr::V6(_) => None,
    }
}

/// The rules of the `tcp-proxy` apps: every upstream on the port's own subnet, and with RSS
/// balancing a port whose queue choice a source port can aim.
fn check_proxies(config: &Config, out: &mut Collector) {
    let Config {
        engine,
        port,
        stack,
        ..
    } = config;

    for (i, app) in stack.app.iter().enumerate() {
        let path = format!("stack.app[{i}].upstream");
        if let Some(upstream) = app.upstream {
            if !out.is_rejected(&path) {
                check_upstream_on_link(out, &path, upstream, port);
            }
        }
    }

    // Under RSS balancing an outbound connection gets no flow rule: its source port is picked
    // so that the port's RSS sends the replies to the connecting thread's own queue. That needs
    // a hash the engine can compute, which AF_PACKET's fanout (a seeded kernel hash) is not, a
    // DPDK device's is only once opened (and many have none), and a capture has no use for.
    if engine.balance == Balance::Rss
        && port.driver != Driver::Uveth
        && !out.any_rejected(&["engine.balance", "port.driver"])
    {
        let proxy = stack.app.iter().enumerate().position(|(i, app)| {
            app.kind == AppKind::TcpProxy && !out.is_rejected(&format!("stack.app[{i}].kind"))
        });
        if let Some(i) = proxy {
            out.reject(
                "port.driver",
                format!(
                    "must be \"{}\" with engine.balance \"{}\" and a \"{}\" app \
                     (stack.app[{i}]): under RSS balancing an outbound connection gets no flow \
                     rule, its source port is chosen so that the port's software RSS \
                     (port.rss_key, port.reta_size, port.queues) sends the return packets to \
                     the connecting thread's queue; no other driver gives a hash the \
                     configuration can count on (AF_PACKET's fanout is the kernel's own seeded \
                     flow hash, which no source port can aim; a DPDK device's RSS is known only \
                     once the device is opened, and many have none; a capture answers nothing) \
                     (or set engine.balance \"{}\"), got \"{}\"",
                    Driver::Uveth,
                    engine.balance,
                    AppKind::TcpProxy,
                    Balance::Software,
                    port.driver
                ),
            );
        }
    }
}

/// `upstream` is a neighbour of the port: inside its subnet of the same IP version, and neither
/// the port's own address nor (IPv4) the subnet's broadcast address. The stacks have no routes
/// beyond their subnets.
fn check_upstream_on_link(out: &mut Collector, path: &str, upstream: SocketAddr, port: &Port) {
    // (the port's address, its prefix length, the address width, the key family)
    let (ip, own, prefix, width, family) = match upstream.ip() {
        IpAddr::V4(ip) => (
            u128::from(u32::from(ip)),
            IpAddr::V4(port.ipv4),
            port.ipv4_prefix,
            32u32,
            "ipv4",
        ),
        IpAddr::V6(ip) => (
            u128::from(ip),
            IpAddr::V6(port.ipv6),
            port.ipv6_prefix,
            128,
            "ipv6",
        ),
    };
    let (own_key, prefix_key) = (format!("port.{family}"), format!("port.{family}_prefix"));
    if out.any_rejected(&[&own_key, &prefix_key]) {
        return;
    }
    let own_bits = match own {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    let host_bits = width.saturating_sub(u32::from(prefix));
    let host_mask = u128::MAX.checked_shr(128 - host_bits).unwrap_or(0);
    let subnet = format!("{own}/{prefix}");
    let problem = if ip == own_bits {
        format!("must differ from {own_key} ({own}): a proxy cannot connect to its own port")
    } else if (ip ^ own_bits) & !host_mask != 0 {
        format!(
            "must be on-link, inside {own_key}/{prefix_key} ({subnet}): the stacks have no \
             gateway, so an off-link upstream could never be reached"
        )
    } else if width == 32 && host_bits >= 2 && ip & host_mask == host_mask {
        // /31 and /32 subnets have no broadcast address (RFC 3021); IPv6 has none at all.
        format!("must be a host of {own_key}/{prefix_key} ({subnet}), not its broadcast address")
    } else {
        return;
    };
    out.reject(path, format!("{problem}, got \"{upstream}\""));
}

/// The threads below `threads` that both apps run on, in increasing order.
fn shared_threads(a: &App, b: &App, threads: u16) -> Vec<u16> {
    (0..threads)
        .filter(|&t| a.runs_on(t) && b.runs_on(t))
        .collect()
}

/// `lo..=hi`, reported as `must be lo..=hi, got value`.
fn in_range<T: PartialOrd + Display>(out: &mut Collector, path: &str, value: T, lo: T, hi: T) {
    if value < lo || value > hi {
        out.reject(path, format!("must be {lo}..={hi}, got {value}"));
    }
}

/// A power of two in `lo..=hi` (both powers of two themselves).
fn power_of_two(out: &mut Collector, path: &str, value: usize, lo: usize, hi: usize) {
    if !value.is_power_of_two() || value < lo || value > hi {
        out.reject(
            path,
            format!("must be a power of two {lo}..={hi}, got {value}"),
        );
    }
}

/// A fraction `0.0..=1.0`; NaN is not one.
fn share(out: &mut Collector, path: &str, value: f64) {
    if !(0.0..=1.0).contains(&value) {
        out.reject(path, format!("must be 0.0..=1.0, got {}", float(value)));
    }
}

/// A float as TOML spells it (`1.0`, `nan`, `inf`), so the message shows what the file says.
fn float(value: f64) -> String {
    render(&toml::Value::Float(value))
}

/// A string as TOML writes it, quoted and escaped, so the message shows what the file says.
pub(crate) fn quoted(text: &str) -> String {
    crate::error::cut(
        &render(&toml::Value::String(text.to_owned())),
        crate::error::MAX_VALUE,
    )
    .into_owned()
}

/// A name the kernel accepts for a network interface (`dev_valid_name`): 1..=15 bytes, not `.`
/// or `..`, without `/`, `:` (alias syntax), whitespace or NUL.
fn is_interface_name(name: &str) -> bool {
    (1..=MAX_INTERFACE_NAME).contains(&name.len())
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
}

fn is_unicast_v4(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast())
}

fn is_unicast_v6(ip: Ipv6Addr) -> bool {
    !(ip.is_unspecified() || ip.is_multicast())
}
