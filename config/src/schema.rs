//! The key schema: every section and key in reference order, each with a description of the
//! values it accepts and of what it means.
//!
//! The parser uses it to name unknown keys (listing the allowed ones) and to word type errors
//! (`must be <allowed>, got <value>`); the printer uses it for the comment after each key and the
//! reference for its tables. The keys must match the serde fields of `sections.rs`; a test holds
//! them together. Everything here is `const` data: no cost until an error or a printout needs it.

use crate::types::{
    quoted_alternatives, AppKind, Balance, Distribution, Driver, Fanout, FaultKind, Idle,
    MissPolicy, OnFailure, PcapPace, Profile, RxRing,
};

/// What a key accepts, in words.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Allowed {
    /// A description such as `an integer 1..=64`.
    Text(&'static str),
    /// One of these TOML strings.
    OneOf(&'static [&'static str]),
}

impl Allowed {
    pub(crate) fn describe(self) -> String {
        match self {
            Allowed::Text(text) => text.to_owned(),
            Allowed::OneOf(names) => quoted_alternatives(names),
        }
    }
}

/// One key of a section.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeySpec {
    pub name: &'static str,
    pub allowed: Allowed,
    /// One sentence for the reference: what the key does, and the rules it shares with other keys.
    pub meaning: &'static str,
    /// A key with no default: a table without it is an error (only keys of array-of-tables
    /// entries are required).
    pub required: bool,
    /// For an array of tables (`[[stack.app]]`): the keys of each entry. Such a key is parsed,
    /// printed and documented entry by entry rather than as one value.
    pub entries: Option<&'static SectionSpec>,
}

/// One TOML table of the configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SectionSpec {
    pub name: &'static str,
    pub keys: &'static [KeySpec],
}

impl SectionSpec {
    pub(crate) fn key(&self, name: &str) -> Option<&'static KeySpec> {
        self.keys.iter().find(|k| k.name == name)
    }

    pub(crate) fn key_names(&self) -> Vec<&'static str> {
        self.keys.iter().map(|k| k.name).collect()
    }
}

const fn text(name: &'static str, allowed: &'static str, meaning: &'static str) -> KeySpec {
    KeySpec {
        name,
        allowed: Allowed::Text(allowed),
        meaning,
        required: false,
        entries: None,
    }
}

const fn one_of(
    name: &'static str,
    names: &'static [&'static str],
    meaning: &'static str,
) -> KeySpec {
    KeySpec {
        name,
        allowed: Allowed::OneOf(names),
        meaning,
        required: false,
        entries: None,
    }
}

/// `spec`, required.
const fn required(spec: KeySpec) -> KeySpec {
    KeySpec {
        required: true,
        ..spec
    }
}

/// An array of tables whose entries have the keys of `entries`.
const fn tables(
    name: &'static str,
    allowed: &'static str,
    entries: &'static SectionSpec,
    meaning: &'static str,
) -> KeySpec {
    KeySpec {
        entries: Some(entries),
        ..text(name, allowed, meaning)
    }
}

pub(crate) const ENGINE: SectionSpec = SectionSpec {
    name: "engine",
    keys: &[
        text(
            "threads",
            "an integer 1..=64",
            "Stack threads. Thread i owns NIC queue i when i < `port.queues`.",
        ),
        text(
            "cores",
            "an array of distinct core numbers 0..=1023",
            "Thread i is pinned to core `cores[i]`. Empty: no pinning; otherwise one entry per \
             thread.",
        ),
        one_of(
            "balance",
            Balance::NAMES,
            "`rss`: every packet is processed by the thread whose queue received it (no lookup). \
             `software`: after each rx burst the flow table is looked up and packets another thread \
             owns are handed to its software queue.",
        ),
        one_of(
            "miss",
            MissPolicy::NAMES,
            "Software balancing, a packet no rule matches: keep it on the receiving thread, \
             spread it over all threads by its hash, or drop it (counted as no owner).",
        ),
        text(
            "burst",
            "an integer 1..=256",
            "Packets per rx burst; also the batch of lookups and of software queue enqueues.",
        ),
        text(
            "drain_limit",
            "an integer 1..=swq.size",
            "Packets a thread takes from its own software queue per loop iteration.",
        ),
        one_of(
            "idle",
            Idle::NAMES,
            "After an iteration that found no work: poll again (`spin`: lowest latency while the \
             thread has a core of its own, the core at 100%), yield the core, sleep \
             `idle_sleep_us`, or `wait` until the receive queue has a frame, another thread \
             hands one over or a protocol timer is due (afpacket only; a wake-up costs a few \
             microseconds, an idle thread costs nothing: the choice when the stack threads \
             share cores with other work).",
        ),
        text(
            "idle_sleep_us",
            "an integer 1..=100000",
            "Microseconds slept per idle iteration when `idle = \"sleep\"`.",
        ),
        one_of(
            "on_failure",
            OnFailure::NAMES,
            "When a stack thread fails (it panicked, or stalled: see `stall_ms`), the engine \
             first reclaims it: its exact rules are deleted and it is withdrawn from the listen \
             rules of ports other threads serve too (a port only it serves keeps its rule, and \
             its packets are dropped as `owner_failed` until it serves again); what is queued \
             for it and what is handed to it meanwhile is freed and counted (`failed_queue`, \
             `owner_failed`); every buffer it held goes back to the pool. Then its NIC queue: \
             `restart` = a fresh stack on the same queue and core (its connections are gone: \
             their peers get resets, as after a reboot); `redistribute` = a surviving thread \
             polls the failed thread's queue beside its own, and the failed thread stays down; \
             `stop` = the engine stops with an error naming the thread and the cause.",
        ),
        text(
            "stall_ms",
            "0, or an integer 100..=600000 and at least 10 idle sleeps",
            "Milliseconds a thread may make no loop progress while packets wait for it (on its \
             software queue, or on its receive queue where the port can tell) before it is \
             declared stalled and failed. A live thread returns to its loop at least every \
             idle sleep (`wait` mode: every 10 ms), so only a thread stuck in one iteration \
             trips it; a thread the kernel does not run for a while on an oversubscribed \
             machine is not declared while the watchdog itself ran late by half the limit. \
             0 = no stall detection.",
        ),
        text(
            "restart_limit",
            "an integer 0..=1000",
            "With `on_failure = \"restart\"`: restarts of one thread within the last minute \
             after which its next failure stops the engine (as `stop`, the error saying so), so \
             that a fault every packet of some flow brings does not restart a thread forever. \
             0 = no limit.",
        ),
    ],
};

pub(crate) const POOL: SectionSpec = SectionSpec {
    name: "pool",
    keys: &[
        text(
            "buffers",
            "an integer 1024..=4194304",
            "Packet buffers in total, split into an L1 pool per port queue and a shared pool \
             (`pool.shared_percent`); at least the minimum of the rules between keys, so that no \
             thread can starve.",
        ),
        text(
            "data_room",
            "an integer 128..=9216",
            "Bytes per buffer; at least `traffic.packet_size`, and at least 1514 (a full Ethernet \
             frame) with afpacket or apps.",
        ),
        text(
            "cache",
            "an integer 0..=1024",
            "Buffers each thread keeps in a private cache, refilled and flushed in bulk (each \
             thread also holds up to min(pool.cache / 2, 64) buffers of every other pool before \
             returning them in bulk; with dpdk each mempool's per-lcore cache is \
             min(pool.cache, 64)).",
        ),
        text(
            "shared_percent",
            "an integer 0..=100",
            "Percent of `pool.buffers` in the shared (L2) pool; the rest is split evenly over the \
             port's queues, one L1 pool each (its receive buffers and its thread's first \
             choice; the remainder of the division goes to the shared pool). Threads without a \
             queue draw from the shared pool. A buffer goes back to its own pool, so a packet \
             handed to another thread returns to the receiving queue's pool, whose thread then \
             writes into lines the other core last held. 100: one level, every buffer in one \
             shared pool and every thread's cache drawing from it and keeping what it frees \
             (`pool.low_watermark` unused): a handed-off buffer is reused by the core that \
             freed it, which measured 10-20% more packets per second on `listeners` (half \
             handed off) on 2 cores (BENCHMARKS.md, \"Two-level pools\").",
        ),
        text(
            "low_watermark",
            "an integer 0..=4194304",
            "A thread allocates from the shared pool while its queue's L1 pool has fewer free \
             buffers than this (outside the threads' caches), so its own allocations leave \
             room for receiving; when the shared pool is empty too it takes the L1's last ones.",
        ),
    ],
};

pub(crate) const FLOWTABLE: SectionSpec = SectionSpec {
    name: "flowtable",
    keys: &[
        text(
            "capacity",
            "an integer 1..=67108864",
            "Exact (5-tuple) rules the flow table holds; an insert beyond it fails. \
             The table allocates and commits 100-210 bytes per rule of capacity at start \
             (160 MiB for the default: its IPv4 and its IPv6 buckets are each sized for the \
             whole capacity, the IPv6 ones for `ipv6_capacity` when that is smaller), on \
             transparent huge pages where the kernel grants them.",
        ),
        text(
            "ipv6_capacity",
            "an integer 0..=67108864",
            "Of the exact rules, IPv6 ones the flow table holds at most; an IPv6 insert beyond \
             it fails, counted in `flowsteer_stack_rules_add_failed_total`. Beyond `capacity` \
             (the default), `capacity` alone bounds them. An IPv4-only deployment sets 0: \
             the table then commits one IPv6 bucket instead of 96 MiB at the default capacity.",
        ),
    ],
};

pub(crate) const SWQ: SectionSpec = SectionSpec {
    name: "swq",
    keys: &[text(
        "size",
        "a power of two 2..=1048576",
        "Packets one thread's MPSC software queue holds; what does not fit is dropped and \
             counted.",
    )],
};

pub(crate) const PORT: SectionSpec = SectionSpec {
    name: "port",
    keys: &[
        one_of(
            "driver",
            Driver::NAMES,
            "The NIC backend: `uveth` = user-space veth with software RSS (no NIC, no root); \
             `afpacket` = the Linux interface `interface` through AF_PACKET sockets, one per queue \
             (needs root or CAP_NET_RAW); `dpdk` = the DPDK device `device`, its queues receiving \
             into and sending from buffers in DPDK's memory without a copy (needs a build with \
             the `dpdk` feature, and usually root; with a `traffic.profile` the generator feeds \
             a ring-backed device the engine creates instead: no NIC, no root); `pcap` = the \
             capture file `pcap_file` replayed into the queues through software RSS (no NIC, \
             no root; the run ends when the capture has been replayed).",
        ),
        text(
            "interface",
            "an interface name of 1..=15 bytes without '/', ':', whitespace or NUL, not \".\" or \
             \"..\"",
            "afpacket only: the Linux interface the port sends and receives on (it must exist and \
             be up). Required with `afpacket`; must be empty with `uveth`.",
        ),
        text(
            "queues",
            "an integer 1..=engine.threads",
            "Receive/transmit queue pairs (with afpacket: sockets in the fanout group); queue i \
             belongs to thread i. Threads beyond them receive only what other threads hand them \
             (`engine.balance = \"software\"` with apps) and transmit on a transmit-only queue \
             (afpacket, dpdk with spare transmit queues) or through thread `t % queues`. The \
             `fewer-queues` profile needs fewer queues than threads.",
        ),
        one_of(
            "fanout",
            Fanout::NAMES,
            "afpacket only: how the kernel spreads received frames over the queues: `hash` = by \
             flow hash (like NIC RSS); `lb` = round robin and `cpu` = by the CPU that received the \
             frame (both like a NIC without RSS).",
        ),
        text(
            "rss_key",
            "\"microsoft\", \"symmetric\" or 40 bytes of hex (\"6d:5a:56:...\" or \"6d5a56...\")",
            "Toeplitz key of RSS. `symmetric` hashes both directions of a connection to the same \
             queue. uveth: the key of its software RSS. dpdk: set on a device with RSS, read back \
             and used by the engine's model of the device (outbound connections' local ports); a \
             device whose key is not 40 bytes stops the run (exit 2); a device without RSS \
             ignores it. afpacket: unused (the kernel's fanout hashes with its own seed).",
        ),
        text(
            "reta_size",
            "a power of two 1..=4096",
            "Entries of the RSS redirection table, filled round-robin over the queues; at least \
             `port.queues`. uveth: its software table. dpdk: on a device with RSS, a power of two \
             that divides the device's table size (`flowsteer ports` shows it: 128 on net_null, \
             often 512 on a NIC), repeated to fill the device's table; another size stops the \
             run (exit 2) with the sizes the device takes; a device without RSS ignores it. \
             afpacket: unused.",
        ),
        text(
            "ring_size",
            "a power of two 2..=1048576",
            "uveth only: frames one receive ring and one transmit ring hold.",
        ),
        one_of(
            "rx_ring",
            RxRing::NAMES,
            "afpacket only: each queue's receive ring. `frames` = TPACKET_V2, one frame per slot, \
             seen by the engine as soon as the kernel wrote it: a request waits only for the next \
             poll (64-byte TCP echo on a veth: 17-23 us p50, about the kernel's own stack); each \
             frame takes a whole slot and the flow hash is computed in software. `blocks` = \
             TPACKET_V3, frames packed by size into blocks handed over when full or after \
             `block_timeout_ms` (at least 1 ms: the same echo takes 1 ms, and one TCP connection \
             is held to about 0.4 Gbit/s against 2.3-4.8 with `frames`); 1.5-2x cheaper per \
             small frame when frames queue up: for floods of small frames or many busy flows.",
        ),
        text(
            "frames",
            "a power of two 16..=1048576",
            "afpacket with `rx_ring = \"frames\"`: slots per queue's receive ring, what the \
             queue absorbs while its thread is not polling (descheduled, busy). A slot holds one \
             frame of the interface MTU (MTU + 84 bytes rounded up to a power of two: 2 KiB at \
             MTU 1500, 16 KiB at 9000), so the ring takes `frames *` that of locked memory per \
             queue: 16 MiB by default, about 33 ms of full-size frames at 3 Gbit/s. Raise it \
             when kernel drops grow while the engine keeps up on average.",
        ),
        text(
            "block_size",
            "a power of two 4096..=4194304",
            "afpacket with `rx_ring = \"blocks\"`: bytes of one TPACKET_V3 receive ring block \
             (the kernel fills a block with frames, then hands it over whole).",
        ),
        text(
            "blocks",
            "an integer 2..=1024",
            "afpacket with `rx_ring = \"blocks\"`: blocks per queue's receive ring, what the \
             queue absorbs while its thread is not polling; the ring takes `blocks * \
             block_size` bytes of locked memory per queue: 16 MiB by default, 7700-10400 \
             full-size frames (25-35 ms at 3 Gbit/s) or about 100000 small ones. Raise it when \
             kernel drops grow while the engine keeps up on average.",
        ),
        text(
            "block_timeout_ms",
            "an integer 1..=1000",
            "afpacket with `rx_ring = \"blocks\"`: milliseconds after which the kernel hands \
             over a partly filled block: the latency floor of a lightly loaded port.",
        ),
        text(
            "qdisc_bypass",
            "true or false",
            "afpacket only: transmit straight to the driver, bypassing the interface's queueing \
             discipline (PACKET_QDISC_BYPASS).",
        ),
        text(
            "device",
            "a DPDK device name, such as \"net_af_packet0\" or a PCI address \"0000:3b:00.0\"",
            "dpdk only: the device the port runs on, as the EAL arguments create or allow it \
             (`flowsteer ports` lists them). Required with `dpdk` and `traffic.profile = \
             \"none\"`. Must be empty with a traffic profile: the generator then runs on a \
             ring-backed device the engine creates (`net_ring_fs<n>`, rte_eth_from_rings, at most \
             16 queues), fed with mbufs carrying the software RSS hash. Empty with other drivers.",
        ),
        text(
            "eal_args",
            "an array of strings, none empty",
            "dpdk only: arguments for rte_eal_init after the engine's defaults (`--no-huge \
             --no-shconf --no-pci --no-telemetry`, one lcore, a file prefix of the process), \
             which an argument of the same kind replaces (see `flowsteer ports --help`), and \
             `-m` with room for `[pool]` unless `-m` or `--socket-mem` is given; \
             `--vdev=...` creates a virtual device, `-a PCI` allows a NIC. The defaults run \
             without root and without huge pages (the generator's ring device needs nothing \
             more); a NIC needs root or its device files' permissions.",
        ),
        text(
            "rx_descriptors",
            "an integer 32..=32768",
            "dpdk only: descriptors of each receive queue (the device may round them); with a \
             traffic profile, the mbufs each queue's receive ring holds.",
        ),
        text(
            "tx_descriptors",
            "an integer 32..=32768",
            "dpdk only: descriptors of each transmit queue (the device may round them); with a \
             traffic profile, the mbufs each queue's transmit ring holds.",
        ),
        text(
            "pcap_file",
            "a path to a readable .pcap or .pcapng file",
            "pcap only: the capture replayed (relative to the working directory). Read whole at \
             start into one list per queue, spread by the software RSS of `rss_key` and \
             `reta_size` (at most 1 GiB of frames; about 40 bytes more per frame). Records that \
             are not delivered are counted in the port's drops by reason: \
             `capture_not_ethernet` (link type), `capture_truncated` (captured fewer bytes than \
             on the wire), `capture_oversize` (beyond `pool.data_room`), `capture_unreadable` \
             (a damaged record, which ends the reading). Required with `pcap`; empty otherwise.",
        ),
        one_of(
            "pcap_pace",
            PcapPace::NAMES,
            "pcap only: `full` = as fast as the threads take frames; `capture` = each frame \
             handed over when its offset from the capture's first record has passed since the \
             replay began (the spacing inside one receive burst is not kept). A frame waits for \
             a free buffer rather than being dropped.",
        ),
        text(
            "mac",
            "a unicast MAC address such as \"02:00:00:00:00:01\"",
            "uveth and pcap: the port's MAC address (afpacket and dpdk use the device's own).",
        ),
        text(
            "ipv4",
            "a unicast IPv4 address such as \"198.18.0.1\"",
            "The port's IPv4 address.",
        ),
        text(
            "ipv4_prefix",
            "an integer 1..=32",
            "Prefix length of the subnet of `ipv4` (its on-link neighbours).",
        ),
        text(
            "ipv6",
            "a unicast IPv6 address such as \"2001:db8::1\"",
            "The port's IPv6 address.",
        ),
        text(
            "ipv6_prefix",
            "an integer 1..=128",
            "Prefix length of the subnet of `ipv6` (its on-link neighbours).",
        ),
    ],
};

pub(crate) const STACK: SectionSpec = SectionSpec {
    name: "stack",
    keys: &[
        text(
            "tcp_rx_buffer",
            "an integer 1024..=16777216",
            "Bytes of each TCP socket's receive buffer (the window it advertises).",
        ),
        text(
            "tcp_tx_buffer",
            "an integer 1024..=16777216",
            "Bytes of each TCP socket's transmit buffer (data sent but not yet acknowledged).",
        ),
        text(
            "udp_buffer",
            "an integer 2048..=16777216",
            "Bytes of each UDP socket's receive and transmit payload buffers.",
        ),
        text(
            "max_connections",
            "an integer 1..=65536",
            "Concurrent TCP connections one app holds on one thread; sockets are created as \
             connections arrive, never more than this, and a SYN beyond it is refused and counted.",
        ),
        text(
            "idle_timeout_s",
            "an integer 0..=86400",
            "Seconds a TCP connection may make no progress (nothing received, nothing it sent \
             acknowledged) before it is closed: with a FIN when nothing is pending, else with a \
             reset; counted in `flowsteer_app_idle_timeouts_total`. It frees the sockets of idle \
             and half-sent connections and of connections whose packets RSS sends elsewhere. \
             0 = never.",
        ),
        text(
            "keepalive_timeout_s",
            "an integer 0..=86400",
            "Seconds an `http` connection may wait for its next request (nothing pending in either \
             direction) before it is closed with a FIN, as nginx's `keepalive_timeout`; counted in \
             `flowsteer_app_keepalive_timeouts_total`. 0 = only `idle_timeout_s` applies.",
        ),
        text(
            "syn_timeout_ms",
            "an integer 0..=120000",
            "Milliseconds a half-open TCP connection (SYN answered, no ACK yet) may wait for its \
             client's ACK before its socket listens again and its rule is deleted, without a \
             reset; counted in `flowsteer_app_syn_timeouts_total`. With every socket of an app \
             busy, a new SYN also takes the oldest half-open connection's socket \
             (`flowsteer_app_half_open_reused_total`), so a SYN flood holds at most \
             `max_connections` sockets and rules per app and thread and never locks clients out. \
             The default lets the SYN-ACK and its two retransmissions (after 1 s and 3 s) be \
             answered, as Linux with `tcp_synack_retries = 2`. 0 = only `idle_timeout_s` (with a \
             reset) and the stack's own 120 s limit apply.",
        ),
        text(
            "neighbor_wait_ms",
            "an integer 1..=60000",
            "Milliseconds a `udp-echo` reply may wait for its destination's link address (ARP or \
             neighbour discovery) before it is dropped, counted in \
             `flowsteer_app_unresolved_drops_total`: a peer that never answers blocks no other.",
        ),
        tables(
            "app",
            "[[stack.app]] tables with the keys kind, port, upstream, threads",
            &APP,
            "The apps the stack threads run, one `[[stack.app]]` table each with the keys `kind`, \
             `port`, `upstream` (`tcp-proxy` only) and `threads` (below); by default none.",
        ),
    ],
};

/// The keys of one `[[stack.app]]` entry; errors name them `stack.app[i].key`.
pub(crate) const APP: SectionSpec = SectionSpec {
    name: "stack.app",
    keys: &[
        required(one_of(
            "kind",
            AppKind::NAMES,
            "`tcp-echo` = TCP, writes back what it reads; `udp-echo` = UDP, sends every datagram \
             back; `http` = a small HTTP/1.1 responder with keep-alive; `discard` = TCP, reads and \
             drops (RFC 863); `tcp-proxy` = TCP, connects to `upstream` for every connection it \
             accepts and relays bytes both ways (a reverse proxy).",
        )),
        required(text(
            "port",
            "an integer 1..=65535",
            "The TCP or UDP port the app listens on. Two TCP apps (tcp-echo, http, discard, \
             tcp-proxy), or two udp-echo apps, may share a port only on different threads.",
        )),
        text(
            "upstream",
            "a socket address such as \"198.18.0.2:9000\" or \"[2001:db8::2]:9000\"",
            "`tcp-proxy` only, and required there: the server each accepted connection is relayed \
             to. A unicast address (not unspecified, loopback or the port's own address) inside \
             `port.ipv4`/`port.ipv4_prefix` or `port.ipv6`/`port.ipv6_prefix`, since the stacks \
             have no gateway; its port 1..=65535.",
        ),
        text(
            "threads",
            "an array of distinct thread indices 0..engine.threads",
            "The stack threads the app runs on; empty = every thread.",
        ),
    ],
};

pub(crate) const TRAFFIC: SectionSpec = SectionSpec {
    name: "traffic",
    keys: &[
        one_of(
            "profile",
            Profile::NAMES,
            "`rss-friendly`: RSS alone delivers every flow to its owner. `listeners`: thread i \
             listens on `port_base + i`, so RSS misdirects about (threads - 1) / threads of the \
             packets. `fewer-queues`: more threads than queues. `churn`: connections set up and torn \
             down under load. `none`: no generator, the port carries only what arrives on the \
             wire (required by afpacket and by apps). The other keys of `[traffic]` shape the \
             generator only.",
        ),
        text(
            "flows",
            "an integer 1..=16777216",
            "Concurrent flows of the generator.",
        ),
        text(
            "packet_size",
            "an integer 60..=1514",
            "Ethernet frame bytes without FCS; at least the largest headers of the mix plus the \
             generator's 16-byte stamp, and at most `pool.data_room`.",
        ),
        text(
            "ipv6_share",
            "a number 0.0..=1.0",
            "Share of the flows that are IPv6.",
        ),
        text(
            "udp_share",
            "a number 0.0..=1.0",
            "Share of the flows that are UDP (the others are TCP).",
        ),
        one_of(
            "distribution",
            Distribution::NAMES,
            "How packets are spread over the flows: all equally, or flow k with weight \
             `1 / k^zipf_s`.",
        ),
        text(
            "zipf_s",
            "a number > 0.0 and <= 10.0",
            "Zipf exponent, used when `distribution = \"zipf\"`.",
        ),
        text(
            "rate",
            "\"max\" or an integer 1..=1000000000",
            "Generated packets per second over all queues together, or as fast as the rings \
             take them.",
        ),
        text(
            "churn_rate",
            "an integer 1..=10000000",
            "Flows set up and torn down per second (churn profile).",
        ),
        text(
            "flow_packets",
            "an integer 0..=4294967295",
            "Packets per flow before it is torn down (churn profile); 0 = derived from \
             `churn_rate`.",
        ),
        text(
            "port_base",
            "an integer 1..=65536 - engine.threads",
            "First listen port: thread i listens on `port_base + i`.",
        ),
        text(
            "seed",
            "an integer 0..=9223372036854775807",
            "Seed of the generator's pseudo-random choices: the same seed, the same traffic.",
        ),
    ],
};

pub(crate) const METRICS: SectionSpec = SectionSpec {
    name: "metrics",
    keys: &[
        text(
            "enabled",
            "true or false",
            "Serve Prometheus metrics at `http://<listen>/metrics`.",
        ),
        text(
            "listen",
            "a socket address such as \"127.0.0.1:9464\"",
            "Address of the metrics endpoint; port 0 lets the system pick a free port, which \
             the start line prints. An address other than loopback is allowed and printed as a \
             warning at start (the endpoint has no authentication).",
        ),
    ],
};

pub(crate) const FAULT: SectionSpec = SectionSpec {
    name: "fault",
    keys: &[
        one_of(
            "kind",
            FaultKind::NAMES,
            "A test aid, off by default: make thread `thread` fail `after_ms` after the start, to \
             see the engine's `engine.on_failure` at work. `panic` = the thread panics in the \
             middle of a loop iteration, with received packets in flight; `stall` = it stops \
             making progress for `stall_for_ms`, holding its buffers (declared stalled after \
             `engine.stall_ms` when packets wait for it).",
        ),
        text(
            "thread",
            "an integer 0..engine.threads",
            "The stack thread the fault is injected into.",
        ),
        text(
            "after_ms",
            "an integer 0..=86400000",
            "Milliseconds after the threads started when the fault is injected; the thread \
             takes it at its first loop iteration with packets in hand after that.",
        ),
        text(
            "stall_for_ms",
            "an integer 1..=86400000",
            "How long an injected stall lasts; then the thread finds itself declared failed (if \
             it was) and is reclaimed.",
        ),
    ],
};

/// Every section, in reference order.
pub(crate) const SECTIONS: [SectionSpec; 9] = [
    ENGINE, POOL, FLOWTABLE, SWQ, PORT, STACK, TRAFFIC, METRICS, FAULT,
];

/// Keys that once selected a baseline implementation, with what an old file that still sets one
/// is told after the unknown-key error: the engine has one table and one ring, and the baselines
/// are measured by `flowsteer-bench`.
pub(crate) const REMOVED_KEYS: [(&str, &str); 2] = [
    (
        "flowtable.implementation",
        "the flow table is always the bucketized one; delete the line (the dashmap baseline is \
         measured by flowsteer-bench)",
    ),
    (
        "swq.ring",
        "the software queues are always the burst ring; delete the line (the crossbeam baseline \
         is measured by flowsteer-bench)",
    ),
];

/// Why the key at `path` is no longer accepted, when it is a removed key.
pub(crate) fn removed_key(path: &str) -> Option<&'static str> {
    REMOVED_KEYS
        .iter()
        .find(|(removed, _)| *removed == path)
        .map(|(_, why)| *why)
}

/// The names of [`SECTIONS`].
pub(crate) fn section_names() -> Vec<&'static str> {
    SECTIONS.iter().map(|s| s.name).collect()
}

/// `key` as it appears in a path: bare when TOML allows it bare, else quoted; a key longer than
/// 128 bytes is cut (`error::cut`).
pub(crate) fn path_segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let segment = if bare {
        key.to_owned()
    } else {
        toml::Value::String(key.to_owned()).to_string()
    };
    crate::error::cut(&segment, crate::error::MAX_VALUE).into_owned()
}
