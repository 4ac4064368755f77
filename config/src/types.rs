//! The typed values of the configuration that are not plain numbers: the enums, the RSS key, the
//! packet rate and the MAC address.
//!
//! Every TOML spelling lives here exactly once and feeds `Display`, `FromStr` and serde alike, so
//! parsing, printing and error messages cannot disagree. All types are plain `Copy` data (the RSS
//! key is 41 bytes); parsing costs a few string compares and runs only at start-up.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A string that does not spell a value of the type it was parsed as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue {
    message: String,
}

impl InvalidValue {
    fn new(message: String) -> Self {
        InvalidValue { message }
    }
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InvalidValue {}

/// `"a"`, `"a" or "b"`, `"a", "b" or "c"`: the alternatives as an error message lists them.
pub(crate) fn quoted_alternatives(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Declares a config enum whose values are TOML strings, with `ALL`, `NAMES`, `as_str`,
/// `Display`, `FromStr` and serde all generated from one list of spellings.
macro_rules! toml_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $spelling:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The TOML spelling of every value, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($spelling),+];

            /// The TOML spelling of this value (what `Display` prints, without quotes).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $spelling, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;

            fn from_str(s: &str) -> Result<Self, InvalidValue> {
                match s {
                    $( $spelling => Ok($name::$variant), )+
                    _ => Err(InvalidValue::new(format!(
                        "{} must be {}, got \"{}\"",
                        $what,
                        quoted_alternatives(Self::NAMES),
                        s.escape_default()
                    ))),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let spelled = String::deserialize(deserializer)?;
                spelled.parse().map_err(de::Error::custom)
            }
        }
    };
}

toml_enum! {
    /// How received packets reach their owning thread (`engine.balance`).
    pub enum Balance ("a balance mode") {
        /// NIC RSS alone decides: every received packet is processed by the thread that received
        /// it; no lookup, no handoff.
        Rss = "rss",
        /// After every rx burst the thread looks the packets up in the flow table and hands each
        /// packet another thread owns to that thread's software queue.
        #[default]
        Software = "software",
    }
}

toml_enum! {
    /// What software balancing does with a packet that matches no rule (`engine.miss`).
    pub enum MissPolicy ("a miss policy") {
        /// Keep it on the thread that received it.
        #[default]
        Local = "local",
        /// Spread it over all threads by software RSS on its hash.
        Rss = "rss",
        /// Drop it and count it as "no owner".
        Drop = "drop",
    }
}

toml_enum! {
    /// What a stack thread does after a loop iteration that found no work (`engine.idle`).
    pub enum Idle ("an idle mode") {
        /// Poll again at once: lowest latency, the core stays at 100%.
        #[default]
        Spin = "spin",
        /// `std::thread::yield_now()`: lets other runnable threads on the core run.
        Yield = "yield",
        /// Sleep `engine.idle_sleep_us` microseconds.
        Sleep = "sleep",
        /// Sleep until the receive queue has a frame, another thread hands one over, or the
        /// stack has a timer due (afpacket only): the kernel's own way of waiting.
        Wait = "wait",
    }
}

toml_enum! {
    /// What the engine does when a stack thread fails (`engine.on_failure`).
    pub enum OnFailure ("a failure policy") {
        /// A fresh stack on the same queue and core, in the same thread.
        #[default]
        Restart = "restart",
        /// The failed thread's queue goes to a surviving thread, which polls it beside its own.
        Redistribute = "redistribute",
        /// The engine stops with an error.
        Stop = "stop",
    }
}

toml_enum! {
    /// A fault the engine injects into one stack thread (`fault.kind`), a test aid.
    pub enum FaultKind ("a fault kind") {
        /// No fault.
        #[default]
        None = "none",
        /// The thread panics in the middle of a loop iteration, buffers in flight.
        Panic = "panic",
        /// The thread stops making progress for `fault.stall_for_ms`, holding its buffers.
        Stall = "stall",
    }
}

toml_enum! {
    /// The NIC backend (`port.driver`).
    pub enum Driver ("a port driver") {
        /// The user-space veth: software queues with software RSS; needs no NIC and no root.
        #[default]
        Uveth = "uveth",
        /// A Linux interface (`port.interface`) through AF_PACKET sockets, one per queue, joined
        /// in one fanout group; needs root or `CAP_NET_RAW`.
        AfPacket = "afpacket",
        /// A DPDK device (`port.device`) through its ethdev queues, buffers in DPDK's memory; needs
        /// a build with the `dpdk` feature.
        Dpdk = "dpdk",
        /// A capture file (`port.pcap_file`, .pcap or .pcapng) replayed into the queues through
        /// software RSS; needs no NIC and no root.
        Pcap = "pcap",
    }
}

toml_enum! {
    /// How the kernel spreads the frames an AF_PACKET port receives over its queues
    /// (`port.fanout`).
    pub enum Fanout ("a fanout mode") {
        /// By the flow hash, as NIC RSS does: a flow always reaches the same queue.
        #[default]
        Hash = "hash",
        /// Round robin: consecutive frames of one flow reach different queues, as on a NIC
        /// without RSS.
        Lb = "lb",
        /// By the CPU that received the frame: the queue follows interrupt placement, not the
        /// flow, as on a NIC without RSS.
        Cpu = "cpu",
    }
}

toml_enum! {
    /// The kind of receive ring of each AF_PACKET queue (`port.rx_ring`).
    pub enum RxRing ("a receive ring kind") {
        /// TPACKET_V2: one frame per fixed-size slot, visible to the engine as soon as the
        /// kernel has written it: the lowest latency.
        #[default]
        Frames = "frames",
        /// TPACKET_V3: frames packed into blocks, handed over when a block is full or
        /// `port.block_timeout_ms` expires: the densest, for bulk traffic.
        Blocks = "blocks",
    }
}

toml_enum! {
    /// How fast a capture is replayed (`port.pcap_pace`).
    pub enum PcapPace ("a replay pace") {
        /// As fast as the threads take frames.
        #[default]
        Full = "full",
        /// At the capture's own timing (each frame's offset from the first record).
        Capture = "capture",
    }
}

toml_enum! {
    /// What an app of `[[stack.app]]` does with its connections or datagrams (`kind`).
    pub enum AppKind ("an app kind") {
        /// TCP: writes every byte it reads back to the sender.
        #[default]
        TcpEcho = "tcp-echo",
        /// UDP: sends every datagram back to its source.
        UdpEcho = "udp-echo",
        /// TCP: a small HTTP/1.1 responder with keep-alive.
        Http = "http",
        /// TCP: reads and drops everything (RFC 863).
        Discard = "discard",
        /// TCP: a reverse proxy; for every connection it accepts, it connects to the app's
        /// `upstream` server and relays bytes both ways.
        TcpProxy = "tcp-proxy",
    }
}

impl AppKind {
    /// True for the apps that listen on a TCP port (every kind but `udp-echo`); two apps of the
    /// same transport may not share a port on one thread.
    pub const fn is_tcp(self) -> bool {
        !matches!(self, AppKind::UdpEcho)
    }

    /// True for the apps that open outbound connections, and so take an `upstream`
    /// (`tcp-proxy` only).
    pub const fn connects_upstream(self) -> bool {
        matches!(self, AppKind::TcpProxy)
    }
}

toml_enum! {
    /// The shape of the generated traffic (`traffic.profile`).
    pub enum Profile ("a traffic profile") {
        /// Every flow is owned by the thread whose queue RSS delivers it to: RSS alone is right.
        RssFriendly = "rss-friendly",
        /// Thread i listens on `port_base + i`; RSS hashes flows to queues regardless of port, so
        /// about (threads - 1) / threads of the packets arrive at a thread that does not own them.
        #[default]
        Listeners = "listeners",
        /// More stack threads than NIC queues: the threads without a queue receive only by handoff.
        FewerQueues = "fewer-queues",
        /// Connections set up and torn down under load: exact rules come and go while packets flow.
        Churn = "churn",
        /// No generator: the port carries only what arrives on the wire (or from uveth peers).
        None = "none",
    }
}

toml_enum! {
    /// How packets are spread over the flows (`traffic.distribution`).
    pub enum Distribution ("a flow distribution") {
        /// Every flow equally often.
        #[default]
        Uniform = "uniform",
        /// Flow k (1-based) with weight 1 / k^`zipf_s`: a few heavy flows, a long tail.
        Zipf = "zipf",
    }
}

/// A 40-byte Toeplitz RSS key (`port.rss_key`).
///
/// The named keys keep their name through parsing and printing; [`RssKey::bytes`] gives the key
/// itself whichever way it was spelled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RssKey {
    /// The key of Microsoft's RSS verification suite, the default of most NIC drivers.
    #[default]
    Microsoft,
    /// `6d:5a` repeated: the hash of a→b equals the hash of b→a, so both directions of a
    /// connection land on the same queue.
    Symmetric,
    /// Any other key, as written.
    Custom([u8; 40]),
}

impl RssKey {
    /// The bytes of [`RssKey::Microsoft`].
    pub const MICROSOFT_BYTES: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];

    /// The bytes of [`RssKey::Symmetric`].
    pub const SYMMETRIC_BYTES: [u8; 40] = {
        let mut key = [0u8; 40];
        let mut i = 0;
        while i < 40 {
            key[i] = if i % 2 == 0 { 0x6d } else { 0x5a };
            i += 1;
        }
        key
    };

    /// The 40 key bytes.
    pub fn bytes(&self) -> [u8; 40] {
        match self {
            RssKey::Microsoft => Self::MICROSOFT_BYTES,
            RssKey::Symmetric => Self::SYMMETRIC_BYTES,
            RssKey::Custom(key) => *key,
        }
    }
}

impl fmt::Display for RssKey {
    /// `microsoft`, `symmetric`, or the custom key as colon-separated lowercase hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RssKey::Microsoft => f.write_str("microsoft"),
            RssKey::Symmetric => f.write_str("symmetric"),
            RssKey::Custom(key) => write_hex_bytes(f, key),
        }
    }
}

impl FromStr for RssKey {
    type Err = InvalidValue;

    /// `"microsoft"`, `"symmetric"`, or 40 bytes of hex, either `"6d:5a:56:..."` (every byte two
    /// digits) or `"6d5a56..."` (80 digits). Hex digits may be upper or lower case.
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        match s {
            "microsoft" => Ok(RssKey::Microsoft),
            "symmetric" => Ok(RssKey::Symmetric),
            hex => parse_hex_bytes::<40>(hex)
                .map(RssKey::Custom)
                .ok_or_else(|| {
                    InvalidValue::new(format!(
                        "an RSS key must be \"microsoft\", \"symmetric\" or 40 bytes of hex \
                     (\"6d:5a:56:...\" or \"6d5a56...\"), got \"{}\"",
                        s.escape_default()
                    ))
                }),
        }
    }
}

impl Serialize for RssKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RssKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spelled = String::deserialize(deserializer)?;
        spelled.parse().map_err(de::Error::custom)
    }
}

/// The generator's packet rate over all queues together (`traffic.rate`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Rate {
    /// As fast as the receive rings accept frames.
    #[default]
    Max,
    /// This many packets per second.
    Pps(u64),
}

impl Rate {
    /// The packets per second of a fixed rate; `None` for [`Rate::Max`].
    pub fn pps(self) -> Option<u64> {
        match self {
            Rate::Max => None,
            Rate::Pps(pps) => Some(pps),
        }
    }
}

impl fmt::Display for Rate {
    /// `max` or the number, as in TOML (where `max` is a string and the number an integer).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Max => f.write_str("max"),
            Rate::Pps(pps) => write!(f, "{pps}"),
        }
    }
}

impl FromStr for Rate {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        if s == "max" {
            return Ok(Rate::Max);
        }
        s.parse().map(Rate::Pps).map_err(|_| {
            InvalidValue::new(format!(
                "a rate must be \"max\" or packets per second, got \"{}\"",
                s.escape_default()
            ))
        })
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Rate::Max => serializer.serialize_str("max"),
            Rate::Pps(pps) => serializer.serialize_u64(*pps),
        }
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RateVisitor;

        impl Visitor<'_> for RateVisitor {
            type Value = Rate;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"max\" or a non-negative integer")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Rate, E> {
                match s {
                    "max" => Ok(Rate::Max),
                    _ => Err(E::invalid_value(de::Unexpected::Str(s), &self)),
                }
            }

            fn visit_u64<E: de::Error>(self, pps: u64) -> Result<Rate, E> {
                Ok(Rate::Pps(pps))
            }

            fn visit_i64<E: de::Error>(self, pps: i64) -> Result<Rate, E> {
                u64::try_from(pps)
                    .map(Rate::Pps)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(pps), &self))
            }
        }

        deserializer.deserialize_any(RateVisitor)
    }
}

/// An Ethernet MAC address (`port.mac`), written `"02:00:00:00:00:01"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// True for group (multicast and broadcast) addresses: the low bit of the first byte.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl Default for Mac {
    /// `02:00:00:00:00:01`: locally administered, unicast.
    fn default() -> Self {
        Mac([0x02, 0, 0, 0, 0, 0x01])
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex_bytes(f, &self.0)
    }
}

impl FromStr for Mac {
    type Err = InvalidValue;

    /// Six two-digit hex bytes separated by `:` or `-`.
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        let parts: Vec<&str> = if s.contains('-') {
            s.split('-').collect()
        } else {
            s.split(':').collect()
        };
        let mut mac = [0u8; 6];
        let well_formed = parts.len() == 6
            && parts
                .iter()
                .zip(mac.iter_mut())
                .all(|(part, byte)| match hex_byte(part) {
                    Some(b) => {
                        *byte = b;
                        true
                    }
                    None => false,
                });
        if well_formed {
            Ok(Mac(mac))
        } else {
            Err(InvalidValue::new(format!(
                "a MAC address must be six hex bytes such as \"02:00:00:00:00:01\", got \"{}\"",
                s.escape_default()
            )))
        }
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spelled = String::deserialize(deserializer)?;
        spelled.parse().map_err(de::Error::custom)
    }
}

fn write_hex_bytes(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for (i, byte) in bytes.iter().enumerate() {
        if i > 0 {
            f.write_str(":")?;
        }
        write!(f, "{byte:02x}")?;
    }
    Ok(())
}

/// Exactly two hex digits.
fn hex_byte(digits: &str) -> Option<u8> {
    if digits.len() == 2 && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        u8::from_str_radix(digits, 16).ok()
    } else {
        None
    }
}

/// `N` bytes written either as `aa:bb:...` or as `2 * N` digits with no separator.
fn parse_hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    if s.contains(':') {
        let mut parts = s.split(':');
        for byte in out.iter_mut() {
            *byte = hex_byte(parts.next()?)?;
        }
        if parts.next().is_some() {
            return None;
        }
    } else {
        if !s.is_ascii() || s.len() != 2 * N {
            return None;
        }
        for (byte, i) in out.iter_mut().zip((0..s.len()).step_by(2)) {
            *byte = hex_byte(&s[i..i + 2])?;
        }
    }
    Some(out)
}
