//! Why a frame could not be parsed, with one stable metric label per reason.
//!
//! The labels returned by [`ParseError::reason`] are Prometheus label values (`reason="..."`):
//! renaming one breaks dashboards, so they are part of the public contract. [`ParseError::ALL`]
//! lists every error so an exporter can pre-register every series at start-up.

use std::fmt;

/// The header a truncation was found in.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Layer {
    /// The 14-byte Ethernet II header.
    Ethernet,
    /// An 802.1Q / 802.1ad tag.
    Vlan,
    /// The ARP packet (28 bytes for IPv4 over Ethernet).
    Arp,
    /// The IPv4 header (20 bytes without options).
    Ipv4,
    /// The fixed 40-byte IPv6 header.
    Ipv6,
    /// An IPv6 extension header (hop-by-hop, routing, fragment, destination options).
    Ipv6Extension,
    /// The TCP header (20 bytes without options).
    Tcp,
    /// The 8-byte UDP header.
    Udp,
}

impl Layer {
    /// Every layer, in header order.
    pub const ALL: [Layer; 8] = [
        Layer::Ethernet,
        Layer::Vlan,
        Layer::Arp,
        Layer::Ipv4,
        Layer::Ipv6,
        Layer::Ipv6Extension,
        Layer::Tcp,
        Layer::Udp,
    ];

    /// Stable snake_case name of the layer.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Ethernet => "ethernet",
            Layer::Vlan => "vlan",
            Layer::Arp => "arp",
            Layer::Ipv4 => "ipv4",
            Layer::Ipv6 => "ipv6",
            Layer::Ipv6Extension => "ipv6_extension",
            Layer::Tcp => "tcp",
            Layer::Udp => "udp",
        }
    }
}

/// A malformed frame: the bytes contradict themselves or end before a header does.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ParseError {
    /// The frame ends inside this header.
    Truncated(Layer),
    /// The IP version nibble does not match the ethertype (4 for 0x0800, 6 for 0x86dd).
    BadIpVersion,
    /// IPv4 IHL below 5, or a header longer than the total length.
    BadIpHeaderLength,
    /// IPv4 total length larger than the bytes present.
    BadIpTotalLength,
    /// IPv6 payload length larger than the bytes present.
    BadIpv6PayloadLength,
    /// More IPv6 extension headers than [`super::MAX_IPV6_EXTENSION_HEADERS`].
    TooManyIpv6ExtensionHeaders,
    /// TCP data offset below 5, or a TCP header longer than the segment.
    BadTcpDataOffset,
    /// UDP length below 8, or (unfragmented) larger than the IP payload.
    BadUdpLength,
    /// ARP that is not IPv4 over Ethernet (protocol type 0x0800, lengths 6 and 4).
    BadArpHeader,
    /// ARP operation 0 (reserved).
    BadArpOperation,
}

impl ParseError {
    /// Every error value, for pre-registering metric series.
    pub const ALL: [ParseError; 17] = [
        ParseError::Truncated(Layer::Ethernet),
        ParseError::Truncated(Layer::Vlan),
        ParseError::Truncated(Layer::Arp),
        ParseError::Truncated(Layer::Ipv4),
        ParseError::Truncated(Layer::Ipv6),
        ParseError::Truncated(Layer::Ipv6Extension),
        ParseError::Truncated(Layer::Tcp),
        ParseError::Truncated(Layer::Udp),
        ParseError::BadIpVersion,
        ParseError::BadIpHeaderLength,
        ParseError::BadIpTotalLength,
        ParseError::BadIpv6PayloadLength,
        ParseError::TooManyIpv6ExtensionHeaders,
        ParseError::BadTcpDataOffset,
        ParseError::BadUdpLength,
        ParseError::BadArpHeader,
        ParseError::BadArpOperation,
    ];

    /// The label of each error in [`ParseError::ALL`], same order: `REASONS[e.reason_index()]
    /// == e.reason()`, so an exporter can keep one counter per reason in a fixed array.
    pub const REASONS: [&'static str; 17] = [
        "truncated_ethernet",
        "truncated_vlan",
        "truncated_arp",
        "truncated_ipv4",
        "truncated_ipv6",
        "truncated_ipv6_extension_header",
        "truncated_tcp",
        "truncated_udp",
        "bad_ip_version",
        "bad_ipv4_header_length",
        "bad_ipv4_total_length",
        "bad_ipv6_payload_length",
        "too_many_ipv6_extension_headers",
        "bad_tcp_data_offset",
        "bad_udp_length",
        "bad_arp_header",
        "bad_arp_operation",
    ];

    /// Position of this error in [`ParseError::ALL`] and [`ParseError::REASONS`]: a per-thread
    /// counter array index. O(1) (one match, no search).
    pub fn reason_index(&self) -> usize {
        match self {
            ParseError::Truncated(Layer::Ethernet) => 0,
            ParseError::Truncated(Layer::Vlan) => 1,
            ParseError::Truncated(Layer::Arp) => 2,
            ParseError::Truncated(Layer::Ipv4) => 3,
            ParseError::Truncated(Layer::Ipv6) => 4,
            ParseError::Truncated(Layer::Ipv6Extension) => 5,
            ParseError::Truncated(Layer::Tcp) => 6,
            ParseError::Truncated(Layer::Udp) => 7,
            ParseError::BadIpVersion => 8,
            ParseError::BadIpHeaderLength => 9,
            ParseError::BadIpTotalLength => 10,
            ParseError::BadIpv6PayloadLength => 11,
            ParseError::TooManyIpv6ExtensionHeaders => 12,
            ParseError::BadTcpDataOffset => 13,
            ParseError::BadUdpLength => 14,
            ParseError::BadArpHeader => 15,
            ParseError::BadArpOperation => 16,
        }
    }

    /// Stable snake_case label for metrics, e.g. `"truncated_ipv4"`.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::Truncated(Layer::Ethernet) => "truncated_ethernet",
            ParseError::Truncated(Layer::Vlan) => "truncated_vlan",
            ParseError::Truncated(Layer::Arp) => "truncated_arp",
            ParseError::Truncated(Layer::Ipv4) => "truncated_ipv4",
            ParseError::Truncated(Layer::Ipv6) => "truncated_ipv6",
            ParseError::Truncated(Layer::Ipv6Extension) => "truncated_ipv6_extension_header",
            ParseError::Truncated(Layer::Tcp) => "truncated_tcp",
            ParseError::Truncated(Layer::Udp) => "truncated_udp",
            ParseError::BadIpVersion => "bad_ip_version",
            ParseError::BadIpHeaderLength => "bad_ipv4_header_length",
            ParseError::BadIpTotalLength => "bad_ipv4_total_length",
            ParseError::BadIpv6PayloadLength => "bad_ipv6_payload_length",
            ParseError::TooManyIpv6ExtensionHeaders => "too_many_ipv6_extension_headers",
            ParseError::BadTcpDataOffset => "bad_tcp_data_offset",
            ParseError::BadUdpLength => "bad_udp_length",
            ParseError::BadArpHeader => "bad_arp_header",
            ParseError::BadArpOperation => "bad_arp_operation",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            ParseError::Truncated(layer) => {
                let header = match layer {
                    Layer::Ethernet => "Ethernet header",
                    Layer::Vlan => "VLAN tag",
                    Layer::Arp => "ARP packet",
                    Layer::Ipv4 => "IPv4 header",
                    Layer::Ipv6 => "IPv6 header",
                    Layer::Ipv6Extension => "IPv6 extension header",
                    Layer::Tcp => "TCP header",
                    Layer::Udp => "UDP header",
                };
                return write!(f, "frame ends inside the {header}");
            }
            ParseError::BadIpVersion => "IP version does not match the ethertype",
            ParseError::BadIpHeaderLength => {
                "IPv4 header length below 20 bytes or above the total length"
            }
            ParseError::BadIpTotalLength => "IPv4 total length exceeds the frame",
            ParseError::BadIpv6PayloadLength => "IPv6 payload length exceeds the frame",
            ParseError::TooManyIpv6ExtensionHeaders => "too many IPv6 extension headers",
            ParseError::BadTcpDataOffset => {
                "TCP data offset below 5 words or beyond the end of the segment"
            }
            ParseError::BadUdpLength => "UDP length below 8 bytes or beyond the IP payload",
            ParseError::BadArpHeader => "ARP is not IPv4 over Ethernet",
            ParseError::BadArpOperation => "ARP operation 0 is reserved",
        };
        f.write_str(what)
    }
}

impl std::error::Error for ParseError {}
