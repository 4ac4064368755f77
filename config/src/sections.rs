//! The configuration sections, one struct per TOML table, with their defaults.
//!
//! Every struct is `#[serde(deny_unknown_fields, default)]`: a missing key takes its default, an
//! unknown key is an error. Field order here is the order of the keys in the reference, in
//! [`Config::to_toml_string`](crate::Config::to_toml_string) and in error messages.
//!
//! The limits quoted in the field docs are enforced by [`Config::validate`](crate::Config::validate),
//! not by the types: a struct built in code may hold anything until it is validated.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::types::{
    AppKind, Balance, Distribution, Driver, Fanout, FaultKind, Idle, Mac, MissPolicy, OnFailure,
    PcapPace, Profile, Rate, RssKey, RxRing,
};

/// `[engine]`: the stack threads and their loop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Engine {
    /// Stack threads, 1..=64. Thread i owns NIC queue i when i < `port.queues`.
    pub threads: u16,
    /// Core to pin thread i to; empty = no pinning, else one distinct core (0..=1023) per thread.
    pub cores: Vec<u16>,
    /// How packets reach their owner.
    pub balance: Balance,
    /// What software balancing does with a packet no rule matches.
    pub miss: MissPolicy,
    /// Packets per rx burst, 1..=256.
    pub burst: u16,
    /// Packets dequeued from the thread's own software queue per loop, 1..=`swq.size`.
    pub drain_limit: u32,
    /// What a thread does after an iteration with no work.
    pub idle: Idle,
    /// Sleep per idle iteration when `idle = "sleep"`, microseconds, 1..=100000.
    pub idle_sleep_us: u32,
    /// What happens when a stack thread fails.
    pub on_failure: OnFailure,
    /// Milliseconds without loop progress, while work waits, after which a thread is declared
    /// stalled; 0 = no stall detection.
    pub stall_ms: u32,
    /// Restarts of one thread within a minute after which its next failure stops the engine;
    /// 0 = no limit.
    pub restart_limit: u32,
}

impl Default for Engine {
    fn default() -> Self {
        Engine {
            threads: 2,
            cores: Vec::new(),
            balance: Balance::Software,
            miss: MissPolicy::Local,
            burst: 32,
            drain_limit: 64,
            idle: Idle::Spin,
            idle_sleep_us: 50,
            on_failure: OnFailure::Restart,
            stall_ms: 2000,
            restart_limit: 10,
        }
    }
}

/// `[pool]`: the packet buffers, an L1 pool per port queue and a shared L2 pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pool {
    /// Packet buffers in total, 1024..=4194304, and at least
    /// [`Config::min_pool_buffers`](crate::Config::min_pool_buffers).
    pub buffers: u32,
    /// Bytes per buffer, 128..=9216, at least `traffic.packet_size`.
    pub data_room: u16,
    /// Buffers each thread caches privately, 0..=1024.
    pub cache: u32,
    /// Percent of `buffers` in the shared (L2) pool, 0..=100; the rest is split evenly over the
    /// port's queues, one L1 pool each ([`Config::pool_split`](crate::Config::pool_split)); 100:
    /// one level, every thread on the shared pool.
    pub shared_percent: u8,
    /// Free buffers of a queue's L1 pool below which its thread allocates from the shared pool.
    pub low_watermark: u32,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            buffers: 16384,
            data_room: 2048,
            cache: 256,
            shared_percent: 25,
            low_watermark: 512,
        }
    }
}

/// `[flowtable]`: the concurrent flow table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowTableCfg {
    /// Exact (5-tuple) rules the table holds, 1..=67108864.
    pub capacity: usize,
    /// Of those, IPv6 rules the table holds at most, 0..=67108864; beyond `capacity`,
    /// `capacity` is the bound (the default).
    pub ipv6_capacity: usize,
}

impl FlowTableCfg {
    /// The IPv6 rules the table holds at most: `ipv6_capacity` within `capacity`.
    pub fn effective_ipv6_capacity(&self) -> usize {
        self.ipv6_capacity.min(self.capacity)
    }
}

impl Default for FlowTableCfg {
    fn default() -> Self {
        FlowTableCfg {
            capacity: 1 << 20,
            ipv6_capacity: crate::validate::MAX_TABLE_CAPACITY,
        }
    }
}

/// `[swq]`: the per-thread MPSC software queues.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Swq {
    /// Packets one queue holds, a power of two 2..=1048576.
    pub size: usize,
}

impl Default for Swq {
    fn default() -> Self {
        Swq { size: 1024 }
    }
}

/// `[port]`: the NIC.
///
/// `ring_size` and `mac` apply to the `uveth` driver; `interface`, `fanout`, `rx_ring`,
/// `frames`, `block_size`, `blocks`, `block_timeout_ms` and `qdisc_bypass` to `afpacket` (which
/// uses the interface's own MAC address); `frames` to its frame rings, the `block*` keys to its
/// block rings; `device`, `eal_args`, `rx_descriptors` and `tx_descriptors` to `dpdk` (which uses
/// the device's MAC address); `pcap_file` and `pcap_pace` to `pcap`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Port {
    /// The backend.
    pub driver: Driver,
    /// The Linux interface of `afpacket`: 1..=15 bytes without `/`, `:`, whitespace or NUL;
    /// empty with `uveth`.
    pub interface: String,
    /// Receive/transmit queue pairs, 1..=`engine.threads`.
    pub queues: u16,
    /// How the kernel spreads received frames over the AF_PACKET queues.
    pub fanout: Fanout,
    /// The Toeplitz key of (software) RSS.
    pub rss_key: RssKey,
    /// RSS redirection table entries, a power of two 1..=4096, at least `queues`.
    pub reta_size: usize,
    /// Frames one uveth queue ring holds, a power of two 2..=1048576.
    pub ring_size: usize,
    /// The kind of each AF_PACKET queue's receive ring.
    pub rx_ring: RxRing,
    /// Slots of one AF_PACKET frame ring, a power of two 16..=1048576.
    pub frames: u32,
    /// Bytes of one TPACKET_V3 receive ring block, a power of two 4096..=4194304.
    pub block_size: u32,
    /// Blocks per AF_PACKET queue ring, 2..=1024.
    pub blocks: u32,
    /// Milliseconds after which the kernel hands over a partly filled block, 1..=1000.
    pub block_timeout_ms: u32,
    /// AF_PACKET transmit bypasses the interface's qdisc (`PACKET_QDISC_BYPASS`).
    pub qdisc_bypass: bool,
    /// The DPDK device of `dpdk`, by name (a vdev's name, a PCI address); empty otherwise.
    pub device: String,
    /// `dpdk`: arguments for `rte_eal_init` beyond the engine's defaults.
    pub eal_args: Vec<String>,
    /// `dpdk`: descriptors of each receive queue, 32..=32768.
    pub rx_descriptors: u16,
    /// `dpdk`: descriptors of each transmit queue, 32..=32768.
    pub tx_descriptors: u16,
    /// `pcap`: the capture file replayed (.pcap or .pcapng); empty otherwise.
    pub pcap_file: String,
    /// `pcap`: how fast the capture is replayed.
    pub pcap_pace: PcapPace,
    /// The uveth port's unicast MAC address.
    pub mac: Mac,
    /// The port's IPv4 address (unicast).
    pub ipv4: Ipv4Addr,
    /// Prefix length of `ipv4`'s subnet, 1..=32.
    pub ipv4_prefix: u8,
    /// The port's IPv6 address (unicast).
    pub ipv6: Ipv6Addr,
    /// Prefix length of `ipv6`'s subnet, 1..=128.
    pub ipv6_prefix: u8,
}

impl Default for Port {
    fn default() -> Self {
        Port {
            driver: Driver::Uveth,
            interface: String::new(),
            queues: 2,
            fanout: Fanout::Hash,
            rss_key: RssKey::Microsoft,
            reta_size: 128,
            ring_size: 1024,
            rx_ring: RxRing::Frames,
            frames: 8192,
            block_size: 1 << 18,
            blocks: 64,
            block_timeout_ms: 1,
            qdisc_bypass: true,
            device: String::new(),
            eal_args: Vec::new(),
            rx_descriptors: 1024,
            tx_descriptors: 1024,
            pcap_file: String::new(),
            pcap_pace: PcapPace::Full,
            mac: Mac::default(),
            ipv4: Ipv4Addr::new(198, 18, 0, 1),
            ipv4_prefix: 24,
            ipv6: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
            ipv6_prefix: 64,
        }
    }
}

/// `[stack]`: the TCP/IP stack of every stack thread and the apps it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Stack {
    /// Bytes of each TCP socket's receive buffer, 1024..=16777216.
    pub tcp_rx_buffer: u32,
    /// Bytes of each TCP socket's transmit buffer, 1024..=16777216.
    pub tcp_tx_buffer: u32,
    /// Bytes of each UDP socket's receive and transmit payload buffers, 2048..=16777216.
    pub udp_buffer: u32,
    /// Concurrent TCP connections one app holds on one thread, 1..=65536; a SYN beyond it is
    /// refused and counted.
    pub max_connections: u32,
    /// Seconds a TCP connection may make no progress (nothing received, nothing of what it sent
    /// acknowledged) before it is closed, 0..=86400; 0 = never.
    pub idle_timeout_s: u32,
    /// Seconds an `http` connection may wait for its next request before it is closed,
    /// 0..=86400; 0 = only `idle_timeout_s` applies.
    pub keepalive_timeout_s: u32,
    /// Milliseconds a half-open TCP connection may wait for its client's ACK before it is
    /// released without a reset, 0..=120000; 0 = only `idle_timeout_s` applies.
    pub syn_timeout_ms: u32,
    /// Milliseconds a `udp-echo` reply may wait for its destination's link address before it is
    /// dropped and counted, 1..=60000.
    pub neighbor_wait_ms: u32,
    /// The apps, `[[stack.app]]` in TOML; empty = no app.
    pub app: Vec<App>,
}

impl Default for Stack {
    fn default() -> Self {
        Stack {
            tcp_rx_buffer: 65536,
            tcp_tx_buffer: 65536,
            udp_buffer: 65536,
            max_connections: 1024,
            idle_timeout_s: 60,
            keepalive_timeout_s: 75,
            syn_timeout_ms: 7000,
            neighbor_wait_ms: 3000,
            app: Vec::new(),
        }
    }
}

/// One `[[stack.app]]` entry: an app listening on `port` on some stack threads.
///
/// Build one with [`App::new`] (or [`App::proxy`] for a `tcp-proxy`) and narrow it to some
/// threads with [`App::on_threads`], so that code building apps does not spell out every field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// What the app does; it decides the transport (see [`AppKind::is_tcp`]).
    pub kind: AppKind,
    /// The TCP or UDP port it listens on, 1..=65535.
    pub port: u16,
    /// `tcp-proxy` only, and required there: the server every accepted connection is relayed
    /// to. A unicast address on the port's own subnet (the stacks have no gateway), not the
    /// port's own address, with a port 1..=65535.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<SocketAddr>,
    /// The stack threads it runs on, distinct and below `engine.threads`; empty = every thread.
    #[serde(default)]
    pub threads: Vec<u16>,
}

impl App {
    /// An app on every thread, without an upstream.
    pub fn new(kind: AppKind, port: u16) -> Self {
        App {
            kind,
            port,
            upstream: None,
            threads: Vec::new(),
        }
    }

    /// A `tcp-proxy` on every thread: accepts connections on `port` and relays each to
    /// `upstream`.
    pub fn proxy(port: u16, upstream: SocketAddr) -> Self {
        App {
            upstream: Some(upstream),
            ..App::new(AppKind::TcpProxy, port)
        }
    }

    /// The same app on the stack threads `threads` only (empty = every thread).
    #[must_use]
    pub fn on_threads(self, threads: impl Into<Vec<u16>>) -> Self {
        App {
            threads: threads.into(),
            ..self
        }
    }

    /// True when the app runs on stack thread `thread` (an empty `threads` means every thread).
    pub fn runs_on(&self, thread: u16) -> bool {
        self.threads.is_empty() || self.threads.contains(&thread)
    }
}

/// `[traffic]`: the built-in traffic generator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Traffic {
    /// The shape of the traffic.
    pub profile: Profile,
    /// Concurrent flows, 1..=16777216.
    pub flows: u32,
    /// Ethernet frame bytes without FCS, 60..=1514, at least
    /// [`Traffic::min_packet_size`](crate::Traffic::min_packet_size).
    pub packet_size: u16,
    /// Share of IPv6 flows, 0.0..=1.0.
    pub ipv6_share: f64,
    /// Share of UDP flows, 0.0..=1.0.
    pub udp_share: f64,
    /// How packets are spread over the flows.
    pub distribution: Distribution,
    /// Zipf exponent when `distribution = "zipf"`, > 0.0 and <= 10.0.
    pub zipf_s: f64,
    /// Packets per second over all queues, or as fast as possible.
    pub rate: Rate,
    /// Flows set up and torn down per second (churn profile), 1..=10000000.
    pub churn_rate: u32,
    /// Packets per flow before it is torn down (churn profile); 0 = derived from `churn_rate`.
    pub flow_packets: u32,
    /// First listen port: thread i listens on `port_base + i`, which must stay <= 65535.
    pub port_base: u16,
    /// Seed of the generator's pseudo-random choices, 0..=9223372036854775807 (a TOML integer).
    pub seed: u64,
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            profile: Profile::Listeners,
            flows: 1024,
            packet_size: 70,
            ipv6_share: 0.0,
            udp_share: 0.0,
            distribution: Distribution::Uniform,
            zipf_s: 1.1,
            rate: Rate::Max,
            churn_rate: 1000,
            flow_packets: 0,
            port_base: 8000,
            seed: 1,
        }
    }
}

/// Bytes of the stamp the traffic generator writes at the start of every frame's payload (the
/// owning thread and flow bookkeeping the receiving side verifies).
pub const GENERATOR_STAMP_BYTES: u16 = 16;

/// The smallest Ethernet frame without FCS.
pub const MIN_ETHERNET_FRAME: u16 = 60;

/// The largest Ethernet frame without FCS (a 1500-byte MTU): what `pool.data_room` must hold
/// when frames come from the wire or from a TCP/IP stack rather than from the generator.
pub const MAX_ETHERNET_FRAME: u16 = 1514;

const ETHERNET_HEADER: u16 = 14;

/// The header sizes of the largest frame a traffic mix produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LargestHeaders {
    pub ip: (&'static str, u16),
    pub l4: (&'static str, u16),
}

impl Traffic {
    /// The smallest `packet_size` that holds the largest headers of this mix plus the generator's
    /// stamp: 14 Ethernet + (40 IPv6 if `ipv6_share > 0`, else 20 IPv4) + (20 TCP if
    /// `udp_share < 1`, else 8 UDP) + [`GENERATOR_STAMP_BYTES`], and never below 60.
    pub fn min_packet_size(&self) -> u16 {
        let headers = self.largest_headers();
        (ETHERNET_HEADER + headers.ip.1 + headers.l4.1 + GENERATOR_STAMP_BYTES)
            .max(MIN_ETHERNET_FRAME)
    }

    pub(crate) fn largest_headers(&self) -> LargestHeaders {
        LargestHeaders {
            ip: if self.ipv6_share > 0.0 {
                ("IPv6", 40)
            } else {
                ("IPv4", 20)
            },
            l4: if self.udp_share < 1.0 {
                ("TCP", 20)
            } else {
                ("UDP", 8)
            },
        }
    }
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Serve `http://<listen>/metrics`.
    pub enabled: bool,
    /// The address to listen on.
    pub listen: SocketAddr,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// `[fault]`: a fault injected into one stack thread, a test aid (off by default).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fault {
    /// What is injected.
    pub kind: FaultKind,
    /// The thread it is injected into, below `engine.threads`.
    pub thread: u16,
    /// Milliseconds after the threads started.
    pub after_ms: u32,
    /// How long an injected stall lasts, milliseconds.
    pub stall_for_ms: u32,
}

impl Default for Fault {
    fn default() -> Self {
        Fault {
            kind: FaultKind::None,
            thread: 0,
            after_ms: 1000,
            stall_for_ms: 5000,
        }
    }
}
