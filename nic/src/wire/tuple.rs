//! The addresses and ports that key a flow, as raw network-order bytes.
//!
//! Plain `Copy` values with no invariants beyond their fields: the parser fills them straight from
//! the header bytes and the flow table packs them into its own key without re-encoding.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol number of TCP.
pub const IP_PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IP_PROTO_UDP: u8 = 17;

/// Source and destination addresses of one IP packet, in network byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum IpPair {
    /// IPv4 source and destination.
    V4 {
        /// Source address.
        src: [u8; 4],
        /// Destination address.
        dst: [u8; 4],
    },
    /// IPv6 source and destination.
    V6 {
        /// Source address.
        src: [u8; 16],
        /// Destination address.
        dst: [u8; 16],
    },
}

impl IpPair {
    /// Whether this is an IPv6 pair.
    pub fn is_ipv6(&self) -> bool {
        matches!(self, IpPair::V6 { .. })
    }

    /// The source address.
    pub fn src_ip(&self) -> IpAddr {
        match self {
            IpPair::V4 { src, .. } => IpAddr::V4(Ipv4Addr::from(*src)),
            IpPair::V6 { src, .. } => IpAddr::V6(Ipv6Addr::from(*src)),
        }
    }

    /// The pair seen from the other end: source and destination swapped.
    pub fn reversed(&self) -> IpPair {
        match *self {
            IpPair::V4 { src, dst } => IpPair::V4 { src: dst, dst: src },
            IpPair::V6 { src, dst } => IpPair::V6 { src: dst, dst: src },
        }
    }
}

/// The 5-tuple of one TCP or UDP packet as it travels on the wire (source = sender).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FiveTuple {
    /// Source and destination addresses.
    pub ip: IpPair,
    /// IP protocol number: [`IP_PROTO_TCP`] or [`IP_PROTO_UDP`].
    pub proto: u8,
    /// Source port (host order).
    pub src_port: u16,
    /// Destination port (host order).
    pub dst_port: u16,
}

impl FiveTuple {
    /// An IPv4 tuple.
    pub fn v4(proto: u8, src: Ipv4Addr, src_port: u16, dst: Ipv4Addr, dst_port: u16) -> Self {
        FiveTuple {
            ip: IpPair::V4 {
                src: src.octets(),
                dst: dst.octets(),
            },
            proto,
            src_port,
            dst_port,
        }
    }

    /// An IPv6 tuple.
    pub fn v6(proto: u8, src: Ipv6Addr, src_port: u16, dst: Ipv6Addr, dst_port: u16) -> Self {
        FiveTuple {
            ip: IpPair::V6 {
                src: src.octets(),
                dst: dst.octets(),
            },
            proto,
            src_port,
            dst_port,
        }
    }

    /// The tuple of the reply direction: addresses and ports swapped.
    pub fn reversed(&self) -> FiveTuple {
        FiveTuple {
            ip: self.ip.reversed(),
            proto: self.proto,
            src_port: self.dst_port,
            dst_port: self.src_port,
        }
    }
}
