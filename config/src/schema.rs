//! The key schema: every section and key in reference order, each with a description of the
//! values it accepts and of what it means.
//!
//! The parser uses it to name unknown keys (listing the allowed ones) and to word type errors
//! (`must be <allowed>, got <value>`); the printer uses it for the comment after each key and the
//! reference for its tables. The keys must match the serde fields of `sections.rs`; a test holds
//! them together. Everything here is `const` data: no cost until an error or a printout needs it.

use crate::types::{
    quoted_alternatives, Balance, Distribution, Driver, Idle, MissPolicy, Profile, RingImpl,
    TableImpl,
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
            "After an iteration that found no work: poll again, yield the core, or sleep \
             `idle_sleep_us`.",
        ),
        text(
            "idle_sleep_us",
            "an integer 1..=100000",
            "Microseconds slept per idle iteration when `idle = \"sleep\"`.",
        ),
    ],
};

pub(crate) const POOL: SectionSpec = SectionSpec {
    name: "pool",
    keys: &[
        text(
            "buffers",
            "an integer 1024..=4194304",
            "Packet buffers in total, shared by all threads; at least the minimum of the rules \
             between keys, so that no thread can starve.",
        ),
        text(
            "data_room",
            "an integer 128..=9216",
            "Bytes per buffer; at least `traffic.packet_size`.",
        ),
        text(
            "cache",
            "an integer 0..=1024",
            "Buffers each thread keeps in a private cache, refilled and flushed in bulk.",
        ),
    ],
};

pub(crate) const FLOWTABLE: SectionSpec = SectionSpec {
    name: "flowtable",
    keys: &[
        text(
            "capacity",
            "an integer 1..=67108864",
            "Exact (5-tuple) rules the flow table holds; an insert beyond it fails.",
        ),
        one_of(
            "implementation",
            TableImpl::NAMES,
            "The concurrent flow table: `bucketized` = fixed buckets with per-bucket sequence \
             locks, lookups take no lock; `dashmap` = sharded read/write-locked hash maps (the \
             baseline).",
        ),
    ],
};

pub(crate) const SWQ: SectionSpec = SectionSpec {
    name: "swq",
    keys: &[
        text(
            "size",
            "a power of two 2..=1048576",
            "Packets one thread's MPSC software queue holds; what does not fit is dropped and \
             counted.",
        ),
        one_of(
            "ring",
            RingImpl::NAMES,
            "The MPSC ring of the software queues: `burst` = one atomic reservation per burst; \
             `crossbeam` = one CAS per packet (the baseline).",
        ),
    ],
};

pub(crate) const PORT: SectionSpec = SectionSpec {
    name: "port",
    keys: &[
        one_of(
            "driver",
            Driver::NAMES,
            "The NIC backend: `uveth` = user-space veth with software RSS (no NIC, no root).",
        ),
        text(
            "queues",
            "an integer 1..=engine.threads",
            "Receive/transmit queue pairs; queue i belongs to thread i. The `fewer-queues` profile \
             needs fewer queues than threads.",
        ),
        text(
            "rss_key",
            "\"microsoft\", \"symmetric\" or 40 bytes of hex (\"6d:5a:56:...\" or \"6d5a56...\")",
            "Toeplitz key of (software) RSS. `symmetric` hashes both directions of a connection to \
             the same queue.",
        ),
        text(
            "reta_size",
            "a power of two 1..=4096",
            "Entries of the RSS redirection table, filled round-robin over the queues; at least \
             `port.queues`.",
        ),
        text(
            "ring_size",
            "a power of two 2..=1048576",
            "Frames one uveth receive ring and one transmit ring hold.",
        ),
        text(
            "mac",
            "a unicast MAC address such as \"02:00:00:00:00:01\"",
            "The port's MAC address.",
        ),
        text(
            "ipv4",
            "a unicast IPv4 address such as \"198.18.0.1\"",
            "The port's IPv4 address.",
        ),
        text(
            "ipv6",
            "a unicast IPv6 address such as \"2001:db8::1\"",
            "The port's IPv6 address.",
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
             down under load.",
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
            "Address of the metrics endpoint; port 0 lets the system pick a free port (tests).",
        ),
    ],
};

/// Every section, in reference order.
pub(crate) const SECTIONS: [SectionSpec; 7] =
    [ENGINE, POOL, FLOWTABLE, SWQ, PORT, TRAFFIC, METRICS];

/// The names of [`SECTIONS`].
pub(crate) fn section_names() -> Vec<&'static str> {
    SECTIONS.iter().map(|s| s.name).collect()
}

/// `key` as it appears in a path: bare when TOML allows it bare, else quoted.
pub(crate) fn path_segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_owned()
    } else {
        toml::Value::String(key.to_owned()).to_string()
    }
}
