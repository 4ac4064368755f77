//! Header parsing and frame building: Ethernet II (up to two VLAN tags), ARP, IPv4, IPv6 with
//! extension headers, IPv6 neighbour discovery, TCP and UDP.
//!
//! Like smoltcp's `wire/`, this module holds no state: every function works on the bytes it is
//! given and returns plain values.
//!
//! Invariants and costs:
//! - **Never panics, on any input.** Every read is bounds-checked against the slice and against the
//!   lengths the headers themselves claim; a frame that lies about a length gets a [`ParseError`]
//!   whose [`ParseError::reason`] is a stable metric label.
//! - **No allocation.** [`classify`] reads at most the L2–L4 headers (O(header bytes); the IPv6
//!   extension-header walk is bounded by [`MAX_IPV6_EXTENSION_HEADERS`]) and never the payload.
//!   [`build_frame`] writes into the caller's buffer and touches each output byte once (plus one
//!   checksum pass over the L4 segment); the [`FrameLayout`] patch helpers cost O(bytes changed)
//!   by updating checksums incrementally (RFC 1624).
//! - Pure functions over `&[u8]` / `&mut [u8]`: safe to call from any number of threads at once.

mod arp;
mod build;
mod bytes;
mod checksum;
mod classify;
mod error;
mod ethernet;
mod ipv4;
mod ipv6;
mod neighbor;
mod parsed;
mod tcp;
mod tuple;
mod udp;

pub use arp::{ARP_REPLY, ARP_REQUEST};
pub use build::{build_frame, layout_of, BuildError, FrameLayout, FrameSpec, MIN_FRAME_LEN};
pub use classify::{
    classify, dissect, tcp_segment, Classified, Dissection, TcpSegment, UnkeyedReason,
};
pub use error::{Layer, ParseError};
pub use ethernet::{
    ETHERNET_HEADER_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_QINQ,
    ETHERTYPE_VLAN, MAX_VLAN_TAGS, VLAN_TAG_LEN,
};
pub use ipv6::MAX_IPV6_EXTENSION_HEADERS;
pub use neighbor::{
    make_learning_copy, neighbor_message, IP_PROTO_ICMPV6, NEIGHBOR_ADVERT, NEIGHBOR_SOLICIT,
};
pub use parsed::{classify_parsed, Parsed};
pub use tuple::{FiveTuple, IpPair, IP_PROTO_TCP, IP_PROTO_UDP};

#[cfg(test)]
mod tests;
