//! Flow keys: the packed 5-tuple, listen rules, and the one flow hash.
//!
//! A [`FlowKey`] is a 5-tuple as the *local* stack sees it (local = destination of a received packet),
//! packed into five 64-bit words so that equality is five word compares and hashing touches exactly
//! 40 bytes, whatever the address family. Word layout (addresses as big-endian integers, so the
//! numeric value does not depend on the host byte order):
//!
//! | word | bits    | content                                                          |
//! |------|---------|------------------------------------------------------------------|
//! | 0    | 63..0   | local address, high 64 bits of the 128-bit IPv6 address          |
//! | 1    | 63..0   | local address, low 64 bits                                       |
//! | 2    | 63..0   | remote address, high 64 bits                                     |
//! | 3    | 63..0   | remote address, low 64 bits                                      |
//! | 4    | 63..48  | local port                                                       |
//! |      | 47..32  | remote port                                                      |
//! |      | 31..16  | zero                                                             |
//! |      | 15..8   | IP protocol number (6 or 17)                                     |
//! |      | 7..1    | zero                                                             |
//! |      | 0       | family: 1 = IPv6, 0 = IPv4                                       |
//!
//! IPv4 addresses are stored as IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`). The family bit keeps
//! an IPv4 flow and the IPv6 flow between the same mapped addresses distinct: they never compare
//! equal and hash differently.
//!
//! The short form of an IPv4 key, for tables that store keys (as VPP keeps IPv4 5-tuples in a
//! 16-byte bihash and IPv6 ones in a 40-byte one): two words, word 0 = local address in bits
//! 63..32 and remote address in bits 31..0, word 1 = word 4 above. Of an IPv4 key's 40 bytes only
//! these 13 carry information (words 0 and 2 are zero, words 1 and 3 the mapped prefix), so
//! [`v4_short`] and [`v4_from_short`] convert both ways without loss.
//!
//! Cost: constructing a key is a handful of shifts and ORs (no allocation, no branch on the family
//! beyond the constructor chosen).
//!
//! The flow hash, [`FlowKey::hash`]: two CRC32C lanes over the words, lane A (seeded
//! `FLOW_HASH_SEEDS.0`) over words 0, 2 and 4, lane B (seeded `.1`) over words 1 and 3,
//! joined into 64 bits and finished with a folded multiply (the 128-bit product of the joined
//! lanes and an odd constant, its two halves xored), so that every output bit depends on both
//! lanes. Cost: five `crc32` instructions in two independent chains (SSE4.2, the instruction
//! rte_hash hashes with), one multiply and the cached CPU-feature check, about 20 instructions
//! and 12 cycles of latency per key. That is as many instructions as the ahash this replaced, but
//! ahash chained five 64×64→128-bit multiplies per key in one dependency chain, where this hash
//! runs two short chains side by side and multiplies once (the two timed side by side:
//! BENCHMARKS.md, "flowtable: the key hash"). On CPUs without SSE4.2 a table-driven CRC32C gives
//! the same value, with eight table loads per word where the instruction is one (see `crc32c`).
//! Why two lanes: CRC is linear, and one 32-bit CRC cannot fill 64 bits; each lane is
//! injective on any 32-bit field of its words (a CRC detects every error burst of up to 32 bits),
//! so keys that differ only in their ports (lane A) or only in one IPv4 address (lane B) never
//! collide before the multiply, and the multiply spreads both lanes over the bits the tables take
//! their bucket indices and signatures from (checked by the occupancy tests of `bucket_table`).
//! Not keyed: a table that must resist peers aiming flows at its buckets mixes in its own random
//! key (the bucketized table does).
//!
//! Determinism: the seeds and the multiplier are constants and both CRC paths give the same value,
//! so a key hashes to the same value in every thread of a process, in every run of the same binary
//! and on every CPU. Keys are plain `Copy` data and are `Send + Sync`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::crc32c;

/// Index of a stack thread, `0..threads`.
pub type ThreadId = u16;

/// Transport protocols a flow can be keyed by.
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Proto {
    /// TCP, IP protocol number 6.
    Tcp = 6,
    /// UDP, IP protocol number 17.
    Udp = 17,
}

impl Proto {
    /// The protocol for an IP protocol number; `None` for anything that is neither TCP nor UDP.
    pub fn from_ip_proto(p: u8) -> Option<Proto> {
        match p {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// Seeds of the flow hash's two CRC lanes. Arbitrary but fixed forever within a build: every
/// thread must agree on the hash of a key, because the owner of a multi-owner listen rule is picked
/// from it. Different, so that the lanes differ even over equal words.
const FLOW_HASH_SEEDS: (u32, u32) = (0x243f_6a88, 0x85a3_08d3);
/// Odd multiplier of the final fold (the 64-bit golden ratio).
const FLOW_HASH_FOLD: u64 = 0x9E37_79B9_7F4A_7C15;

/// The flow hash's finish: both halves of the 128-bit product, xored.
#[inline]
fn fold_multiply(joined: u64) -> u64 {
    let product = u128::from(joined) * u128::from(FLOW_HASH_FOLD);
    (product as u64) ^ ((product >> 64) as u64)
}

const WORD_FAMILY_V6: u64 = 1;
const PROTO_SHIFT: u32 = 8;
const REMOTE_PORT_SHIFT: u32 = 32;
const LOCAL_PORT_SHIFT: u32 = 48;
/// High 64 bits of an IPv4-mapped IPv6 address are zero; the low 64 are `0000:ffff:a.b.c.d`.
const V4_MAPPED_LOW_PREFIX: u64 = 0x0000_ffff_0000_0000;

/// Words of the short form of an IPv4 key.
pub(crate) const SHORT_WORDS: usize = 2;

/// True when `words` (a [`FlowKey::words`]) is an IPv6 key.
#[inline(always)]
pub(crate) fn words_are_ipv6(words: &[u64; 5]) -> bool {
    words[4] & WORD_FAMILY_V6 != 0
}

/// The short form of the IPv4 key `words` (see the module documentation); meaningless for IPv6.
#[inline(always)]
pub(crate) fn v4_short(words: &[u64; 5]) -> [u64; SHORT_WORDS] {
    [(words[1] << 32) | (words[3] & 0xFFFF_FFFF), words[4]]
}

/// The words of the IPv4 key whose short form is `short`.
#[inline]
pub(crate) fn v4_from_short(short: [u64; SHORT_WORDS]) -> [u64; 5] {
    [
        0,
        V4_MAPPED_LOW_PREFIX | (short[0] >> 32),
        0,
        V4_MAPPED_LOW_PREFIX | (short[0] & 0xFFFF_FFFF),
        short[1],
    ]
}

/// A flow as the local stack sees it: local = destination of a received packet.
///
/// Packed into five 64-bit words (see the module documentation for the layout), IPv4 and IPv6 in
/// the same 40-byte layout with a family bit, so equality is five word compares and hashing is over
/// the words.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    words: [u64; 5],
}

impl FlowKey {
    /// A TCP or UDP flow over IPv4.
    pub fn v4(
        proto: Proto,
        local: Ipv4Addr,
        local_port: u16,
        remote: Ipv4Addr,
        remote_port: u16,
    ) -> Self {
        Self::from_v4_bytes(
            proto,
            local.octets(),
            local_port,
            remote.octets(),
            remote_port,
        )
    }

    /// A TCP or UDP flow over IPv6.
    pub fn v6(
        proto: Proto,
        local: Ipv6Addr,
        local_port: u16,
        remote: Ipv6Addr,
        remote_port: u16,
    ) -> Self {
        Self::from_v6_bytes(
            proto,
            local.octets(),
            local_port,
            remote.octets(),
            remote_port,
        )
    }

    /// Fast path constructor from raw network-order IPv4 addresses as the parser yields them.
    #[inline]
    pub fn from_v4_bytes(
        proto: Proto,
        local: [u8; 4],
        local_port: u16,
        remote: [u8; 4],
        remote_port: u16,
    ) -> Self {
        let local_low = V4_MAPPED_LOW_PREFIX | u64::from(u32::from_be_bytes(local));
        let remote_low = V4_MAPPED_LOW_PREFIX | u64::from(u32::from_be_bytes(remote));
        FlowKey {
            words: [
                0,
                local_low,
                0,
                remote_low,
                Self::ports_word(proto, local_port, remote_port, false),
            ],
        }
    }

    /// Fast path constructor from raw network-order IPv6 addresses as the parser yields them.
    #[inline]
    pub fn from_v6_bytes(
        proto: Proto,
        local: [u8; 16],
        local_port: u16,
        remote: [u8; 16],
        remote_port: u16,
    ) -> Self {
        let local = u128::from_be_bytes(local);
        let remote = u128::from_be_bytes(remote);
        FlowKey {
            words: [
                (local >> 64) as u64,
                local as u64,
                (remote >> 64) as u64,
                remote as u64,
                Self::ports_word(proto, local_port, remote_port, true),
            ],
        }
    }

    #[inline]
    fn ports_word(proto: Proto, local_port: u16, remote_port: u16, ipv6: bool) -> u64 {
        (u64::from(local_port) << LOCAL_PORT_SHIFT)
            | (u64::from(remote_port) << REMOTE_PORT_SHIFT)
            | (u64::from(proto.number()) << PROTO_SHIFT)
            | if ipv6 { WORD_FAMILY_V6 } else { 0 }
    }

    /// The transport protocol.
    #[inline]
    pub fn proto(&self) -> Proto {
        // Only the constructors write this byte, and they write 6 or 17.
        match (self.words[4] >> PROTO_SHIFT) as u8 {
            17 => Proto::Udp,
            _ => Proto::Tcp,
        }
    }

    /// True for an IPv6 flow, false for IPv4.
    #[inline]
    pub fn is_ipv6(&self) -> bool {
        self.words[4] & WORD_FAMILY_V6 != 0
    }

    /// The local address (the destination of a received packet).
    #[inline]
    pub fn local_ip(&self) -> IpAddr {
        self.address(self.words[0], self.words[1])
    }

    /// The local port (the destination port of a received packet).
    #[inline]
    pub fn local_port(&self) -> u16 {
        (self.words[4] >> LOCAL_PORT_SHIFT) as u16
    }

    /// The remote address (the source of a received packet).
    #[inline]
    pub fn remote_ip(&self) -> IpAddr {
        self.address(self.words[2], self.words[3])
    }

    /// The remote port (the source port of a received packet).
    #[inline]
    pub fn remote_port(&self) -> u16 {
        (self.words[4] >> REMOTE_PORT_SHIFT) as u16
    }

    #[inline]
    fn address(&self, high: u64, low: u64) -> IpAddr {
        if self.is_ipv6() {
            IpAddr::V6(Ipv6Addr::from((u128::from(high) << 64) | u128::from(low)))
        } else {
            IpAddr::V4(Ipv4Addr::from(low as u32))
        }
    }

    /// The packed words, for table implementations that store or compare keys themselves.
    #[inline]
    pub fn words(&self) -> &[u64; 5] {
        &self.words
    }

    /// A key from its packed words, as a table that stores [`FlowKey::words`] reads them back.
    #[inline]
    pub(crate) fn from_words(words: [u64; 5]) -> Self {
        FlowKey { words }
    }

    /// The one hash of this key: two CRC32C lanes over the five words and a folded multiply (see
    /// the module documentation), identical in every thread, every run and on every CPU.
    /// Compute it once per packet and pass it along.
    #[inline(always)]
    pub fn hash(&self) -> u64 {
        fold_multiply(crc32c::two_lanes(&self.words, FLOW_HASH_SEEDS))
    }

    /// [`FlowKey::hash`] by a CRC path the caller chose once for many keys.
    #[inline(always)]
    pub(crate) fn hash_by(&self, lanes: impl crc32c::Lanes) -> u64 {
        fold_multiply(lanes.two_lanes(&self.words, FLOW_HASH_SEEDS))
    }
}

/// Written by hand rather than derived so logs show the tuple, not the packed words.
impl fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowKey")
            .field("proto", &self.proto())
            .field("local", &SocketText(self.local_ip(), self.local_port()))
            .field("remote", &SocketText(self.remote_ip(), self.remote_port()))
            .finish()
    }
}

/// `tcp 198.18.0.1:80 <- 10.0.0.7:40000`: local side first, as the stack sees the flow.
impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} <- {}",
            self.proto(),
            SocketText(self.local_ip(), self.local_port()),
            SocketText(self.remote_ip(), self.remote_port())
        )
    }
}

/// `ip:port`, with IPv6 addresses in brackets.
struct SocketText(IpAddr, u16);

impl fmt::Debug for SocketText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for SocketText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.1),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.1),
        }
    }
}

/// A listen rule: (proto, local ip or any, local port).
///
/// `ip: None` matches every local address of both families. `ip: Some(addr)` matches flows whose
/// local address is exactly `addr` in the same family: an IPv4 flow never matches an IPv4-mapped
/// IPv6 rule, and `Some(0.0.0.0)` is a literal address, not a wildcard (use `None` for any).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ListenKey {
    /// Transport protocol.
    pub proto: Proto,
    /// Local address, or `None` for any local address.
    pub ip: Option<IpAddr>,
    /// Local port.
    pub port: u16,
}

impl ListenKey {
    /// A rule for one local address and port.
    pub fn on_ip(proto: Proto, ip: IpAddr, port: u16) -> Self {
        ListenKey {
            proto,
            ip: Some(ip),
            port,
        }
    }

    /// A rule for a port on every local address.
    pub fn any_ip(proto: Proto, port: u16) -> Self {
        ListenKey {
            proto,
            ip: None,
            port,
        }
    }

    /// The (ip, port) rule a flow would match.
    #[inline]
    pub fn for_flow_ip(key: &FlowKey) -> Self {
        Self::on_ip(key.proto(), key.local_ip(), key.local_port())
    }

    /// The (any, port) rule a flow would match.
    #[inline]
    pub fn for_flow_any(key: &FlowKey) -> Self {
        Self::any_ip(key.proto(), key.local_port())
    }
}

impl fmt::Display for ListenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            Some(ip) => write!(f, "{} {}", self.proto, SocketText(ip, self.port)),
            None => write!(f, "{} *:{}", self.proto, self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn sample_v4() -> FlowKey {
        FlowKey::v4(
            Proto::Tcp,
            Ipv4Addr::new(198, 18, 0, 1),
            8000,
            Ipv4Addr::new(10, 1, 2, 3),
            40_123,
        )
    }

    fn sample_v6() -> FlowKey {
        FlowKey::v6(
            Proto::Udp,
            "2001:db8::1".parse().unwrap(),
            443,
            "2001:db8:ffff::abcd:1234".parse().unwrap(),
            65_535,
        )
    }

    #[test]
    fn proto_numbers_round_trip() {
        for proto in [Proto::Tcp, Proto::Udp] {
            assert_eq!(Proto::from_ip_proto(proto.number()), Some(proto));
        }
        assert_eq!(Proto::Tcp.number(), 6);
        assert_eq!(Proto::Udp.number(), 17);
        for other in (0..=255u8).filter(|p| *p != 6 && *p != 17) {
            assert_eq!(Proto::from_ip_proto(other), None, "protocol {other}");
        }
    }

    #[test]
    fn v4_accessors_round_trip() {
        let key = sample_v4();
        assert_eq!(key.proto(), Proto::Tcp);
        assert!(!key.is_ipv6());
        assert_eq!(key.local_ip(), IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!(key.local_port(), 8000);
        assert_eq!(key.remote_ip(), IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(key.remote_port(), 40_123);
        let from_bytes =
            FlowKey::from_v4_bytes(Proto::Tcp, [198, 18, 0, 1], 8000, [10, 1, 2, 3], 40_123);
        assert_eq!(from_bytes, key);
        assert_eq!(from_bytes.hash(), key.hash());
    }

    #[test]
    fn v6_accessors_round_trip() {
        let key = sample_v6();
        let local: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let remote: Ipv6Addr = "2001:db8:ffff::abcd:1234".parse().unwrap();
        assert_eq!(key.proto(), Proto::Udp);
        assert!(key.is_ipv6());
        assert_eq!(key.local_ip(), IpAddr::V6(local));
        assert_eq!(key.local_port(), 443);
        assert_eq!(key.remote_ip(), IpAddr::V6(remote));
        assert_eq!(key.remote_port(), 65_535);
        let from_bytes =
            FlowKey::from_v6_bytes(Proto::Udp, local.octets(), 443, remote.octets(), 65_535);
        assert_eq!(from_bytes, key);
        assert_eq!(from_bytes.hash(), key.hash());
    }

    #[test]
    fn extreme_field_values_round_trip() {
        for (local_port, remote_port) in
            [(0, 0), (u16::MAX, 0), (0, u16::MAX), (u16::MAX, u16::MAX)]
        {
            for proto in [Proto::Tcp, Proto::Udp] {
                let v4 = FlowKey::from_v4_bytes(proto, [255; 4], local_port, [0; 4], remote_port);
                assert_eq!(
                    (v4.proto(), v4.local_port(), v4.remote_port()),
                    (proto, local_port, remote_port)
                );
                assert_eq!(v4.local_ip(), IpAddr::V4(Ipv4Addr::BROADCAST));
                assert_eq!(v4.remote_ip(), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                let v6 = FlowKey::from_v6_bytes(proto, [0; 16], local_port, [255; 16], remote_port);
                assert_eq!(
                    (v6.proto(), v6.local_port(), v6.remote_port()),
                    (proto, local_port, remote_port)
                );
                assert_eq!(v6.local_ip(), IpAddr::V6(Ipv6Addr::UNSPECIFIED));
                assert_eq!(v6.remote_ip(), IpAddr::V6(Ipv6Addr::from(u128::MAX)));
            }
        }
    }

    #[test]
    fn v4_never_equals_v6_with_the_same_mapped_bytes() {
        let local = Ipv4Addr::new(192, 0, 2, 10);
        let remote = Ipv4Addr::new(203, 0, 113, 5);
        let v4 = FlowKey::v4(Proto::Tcp, local, 80, remote, 5555);
        let v6 = FlowKey::v6(
            Proto::Tcp,
            local.to_ipv6_mapped(),
            80,
            remote.to_ipv6_mapped(),
            5555,
        );
        // Same address words, same ports and protocol: only the family bit differs.
        assert_eq!(v4.words()[..4], v6.words()[..4]);
        assert_ne!(v4, v6);
        assert_ne!(v4.hash(), v6.hash());
        assert_eq!(v6.local_ip(), IpAddr::V6(local.to_ipv6_mapped()));
        assert_eq!(v4.local_ip(), IpAddr::V4(local));
    }

    #[test]
    fn the_short_form_of_an_ipv4_key_round_trips() {
        let corners = [[0u8; 4], [255; 4], [10, 1, 2, 3], [128, 0, 0, 1]];
        for local in corners {
            for remote in corners {
                for (port_l, port_r) in [(0, 0), (65_535, 1), (80, 65_535)] {
                    for proto in [Proto::Tcp, Proto::Udp] {
                        let key = FlowKey::from_v4_bytes(proto, local, port_l, remote, port_r);
                        assert!(!words_are_ipv6(key.words()));
                        let short = v4_short(key.words());
                        assert_eq!(v4_from_short(short), *key.words(), "{key}");
                        assert_eq!(short[0] >> 32, u64::from(u32::from_be_bytes(local)));
                        assert_eq!(short[0] as u32, u32::from_be_bytes(remote));
                    }
                }
            }
        }
        assert!(words_are_ipv6(sample_v6().words()));
    }

    #[test]
    fn v4_never_equals_v6_with_the_same_raw_bytes() {
        // The IPv4 bytes placed verbatim in the low bytes of an IPv6 address (IPv4-compatible form).
        let mut local6 = [0u8; 16];
        local6[12..].copy_from_slice(&[192, 0, 2, 10]);
        let mut remote6 = [0u8; 16];
        remote6[12..].copy_from_slice(&[203, 0, 113, 5]);
        let v4 = FlowKey::from_v4_bytes(Proto::Udp, [192, 0, 2, 10], 53, [203, 0, 113, 5], 53);
        let v6 = FlowKey::from_v6_bytes(Proto::Udp, local6, 53, remote6, 53);
        assert_ne!(v4, v6);
        assert_ne!(v4.hash(), v6.hash());
    }

    #[test]
    fn hash_is_deterministic_across_threads() {
        let keys: Vec<FlowKey> = (0..1000u32)
            .map(|i| {
                FlowKey::from_v4_bytes(Proto::Tcp, [198, 18, 0, 1], 8000, i.to_be_bytes(), i as u16)
            })
            .chain(std::iter::once(sample_v6()))
            .collect();
        let here: Vec<u64> = keys.iter().map(FlowKey::hash).collect();
        let elsewhere: Vec<Vec<u64>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..2)
                .map(|_| scope.spawn(|| keys.iter().map(FlowKey::hash).collect::<Vec<u64>>()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for other in elsewhere {
            assert_eq!(other, here);
        }
        // Copies hash alike, and 1001 distinct keys get 1001 distinct hashes.
        assert_eq!(keys[0].hash(), { keys[0] }.hash());
        let distinct: HashSet<u64> = here.iter().copied().collect();
        assert_eq!(distinct.len(), keys.len());
    }

    #[test]
    fn hash_is_the_portable_two_lane_crc_on_every_path() {
        // The value may not depend on the CPU: the portable path, which every CPU can run, must
        // give what `hash` gives here (the hardware path on this machine, if it has SSE4.2).
        for key in [sample_v4(), sample_v6()]
            .into_iter()
            .chain((0..1000u32).map(|i| {
                FlowKey::from_v4_bytes(Proto::Udp, [10, 0, 0, 1], i as u16, i.to_be_bytes(), 53)
            }))
        {
            let portable = crc32c::two_lanes_portable(key.words(), FLOW_HASH_SEEDS);
            assert_eq!(key.hash(), fold_multiply(portable), "{key}");
            assert_eq!(key.hash_by(crc32c::Portable), key.hash(), "{key}");
            if let Some(instruction) = crc32c::Instruction::detect() {
                assert_eq!(key.hash_by(instruction), key.hash(), "{key}");
            }
        }
    }

    #[test]
    fn keys_differing_in_one_field_never_share_a_hash() {
        // Each lane is injective on a 32-bit field and the fold is close to a bijection: sweeps
        // of one field (all 64 Ki ports, 1 Mi consecutive addresses) give distinct hashes.
        let mut seen = HashSet::new();
        for port in 0..=u16::MAX {
            let key = FlowKey::from_v4_bytes(Proto::Tcp, [198, 18, 0, 1], 80, [10, 0, 0, 1], port);
            assert!(seen.insert(key.hash()), "remote port {port}");
        }
        seen.clear();
        for address in 0..1u32 << 20 {
            let key =
                FlowKey::from_v4_bytes(Proto::Tcp, [198, 18, 0, 1], 80, address.to_be_bytes(), 9);
            assert!(seen.insert(key.hash()), "remote address {address}");
        }
    }

    #[test]
    fn display_shows_the_tuple() {
        assert_eq!(
            sample_v4().to_string(),
            "tcp 198.18.0.1:8000 <- 10.1.2.3:40123"
        );
        assert_eq!(
            sample_v6().to_string(),
            "udp [2001:db8::1]:443 <- [2001:db8:ffff::abcd:1234]:65535"
        );
        assert_eq!(ListenKey::any_ip(Proto::Tcp, 80).to_string(), "tcp *:80");
        assert!(format!("{:?}", sample_v4()).contains("198.18.0.1:8000"));
    }

    #[test]
    fn listen_keys_for_a_flow() {
        let key = sample_v4();
        assert_eq!(
            ListenKey::for_flow_ip(&key),
            ListenKey {
                proto: Proto::Tcp,
                ip: Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1))),
                port: 8000
            }
        );
        assert_eq!(
            ListenKey::for_flow_any(&key),
            ListenKey {
                proto: Proto::Tcp,
                ip: None,
                port: 8000
            }
        );
    }
}
