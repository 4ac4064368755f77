//! The classifier: one pass over a frame's headers that yields the flow key the steering needs.
//!
//! [`classify`] is on the per-packet hot path: it reads only L2–L4 header bytes, allocates
//! nothing, and its cost is O(headers) with the IPv6 extension walk bounded by
//! [`super::MAX_IPV6_EXTENSION_HEADERS`]. [`dissect`] is the same pass returning every offset it
//! found, for tests, tools and frame builders; it costs the same.
//!
//! Errors are reported in a fixed order so that one cause maps to one metric label: first a
//! header the frame ends inside (`Truncated(layer)`), then an IP length that claims more bytes
//! than the frame has, then fields that contradict each other.

use super::arp;
use super::bytes::read_u32;
use super::error::ParseError;
use super::ethernet::{self, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, MAX_VLAN_TAGS};
use super::ipv4;
use super::ipv6;
use super::tcp;
use super::tcp::SEQ_OFFSET;
use super::tuple::{FiveTuple, IpPair, IP_PROTO_TCP, IP_PROTO_UDP};
use super::udp;

/// What a well-formed frame is, for steering.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Classified {
    /// A TCP or UDP packet with its key.
    Flow {
        /// Addresses, protocol and ports as sent (source = sender).
        tuple: FiveTuple,
        /// TCP flags byte (CWR … FIN); 0 for UDP.
        tcp_flags: u8,
        /// Offset in the frame of the first L4 payload byte (after TCP options).
        payload_offset: usize,
    },
    /// An ARP packet (IPv4 over Ethernet).
    Arp {
        /// Operation: [`super::ARP_REQUEST`], [`super::ARP_REPLY`] or another non-zero value.
        op: u16,
    },
    /// A valid frame that carries no flow key.
    Unkeyed(UnkeyedReason),
}

/// Why a valid frame carries no flow key; each has a stable metric label.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum UnkeyedReason {
    /// An IPv4 or IPv6 fragment other than the first: the ports are in the first one.
    NonFirstFragment,
    /// Neither IPv4, IPv6 nor ARP (after at most two VLAN tags).
    UnknownEthertype,
    /// IP carrying something other than TCP or UDP (ICMP, ESP, ...).
    UnsupportedL4,
}

impl UnkeyedReason {
    /// Every reason, in label order, for pre-registering metric series.
    pub const ALL: [UnkeyedReason; 3] = [
        UnkeyedReason::NonFirstFragment,
        UnkeyedReason::UnknownEthertype,
        UnkeyedReason::UnsupportedL4,
    ];

    /// The reason's position in [`UnkeyedReason::ALL`].
    pub fn index(self) -> usize {
        match self {
            UnkeyedReason::NonFirstFragment => 0,
            UnkeyedReason::UnknownEthertype => 1,
            UnkeyedReason::UnsupportedL4 => 2,
        }
    }

    /// Stable snake_case label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            UnkeyedReason::NonFirstFragment => "non_first_fragment",
            UnkeyedReason::UnknownEthertype => "unknown_ethertype",
            UnkeyedReason::UnsupportedL4 => "unsupported_l4",
        }
    }
}

/// Everything one pass over a frame's headers found. Offsets are from the start of the frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Dissection {
    /// The steering verdict, identical to what [`classify`] returns.
    pub classified: Classified,
    /// The ethertype after the VLAN tags.
    pub ethertype: u16,
    /// Tag control information (PCP, DEI, VLAN id) of each tag, outermost first; only the first
    /// `vlan_count` entries are meaningful, the rest are 0.
    pub vlan_tci: [u16; MAX_VLAN_TAGS],
    /// VLAN tags looked through.
    pub vlan_count: usize,
    /// Where the ethertype's payload (IP header, ARP packet) starts.
    pub l3_offset: usize,
    /// IP only: the upper-layer protocol after any IPv6 extension headers.
    pub ip_proto: Option<u8>,
    /// IPv6 extension headers walked (0 for IPv4 and non-IP frames).
    pub ipv6_extension_headers: usize,
    /// Where the upper-layer header starts; `None` for non-IP frames and non-first fragments,
    /// whose data is not a header.
    pub l4_offset: Option<usize>,
    /// IP only: where the IP packet ends by its own length field; bytes after it are link padding.
    pub ip_end: Option<usize>,
}

impl Dissection {
    /// The 12-bit VLAN ids of the tags looked through, outermost first.
    pub fn vlan_ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.vlan_tci
            .iter()
            .take(self.vlan_count)
            .map(|tci| tci & ethernet::MAX_VLAN_ID)
    }
}

/// The IP layer of a frame, whichever version.
struct IpLayer {
    pair: IpPair,
    proto: u8,
    /// Upper-layer data start, relative to the IP header.
    upper_offset: usize,
    /// End of the available packet bytes, relative to the IP header.
    end: usize,
    /// The error for a frame that ends before the IP length says: `None` when the packet is whole.
    short: Option<ParseError>,
    fragmented: bool,
    non_first_fragment: bool,
    extension_headers: usize,
}

impl From<ipv4::Ipv4View> for IpLayer {
    fn from(ip: ipv4::Ipv4View) -> Self {
        IpLayer {
            pair: IpPair::V4 {
                src: ip.src,
                dst: ip.dst,
            },
            proto: ip.proto,
            upper_offset: ip.header_len,
            end: ip.end,
            short: ip.short.then_some(ParseError::BadIpTotalLength),
            fragmented: ip.fragmented,
            non_first_fragment: ip.fragment_offset != 0,
            extension_headers: 0,
        }
    }
}

impl From<ipv6::Ipv6View> for IpLayer {
    fn from(ip: ipv6::Ipv6View) -> Self {
        IpLayer {
            pair: IpPair::V6 {
                src: ip.src,
                dst: ip.dst,
            },
            proto: ip.proto,
            upper_offset: ip.upper_offset,
            end: ip.end,
            short: ip.short.then_some(ParseError::BadIpv6PayloadLength),
            fragmented: ip.fragmented,
            non_first_fragment: ip.fragment_offset != 0,
            extension_headers: ip.extension_headers,
        }
    }
}

/// Classifies one frame (without FCS) for steering.
///
/// Ethernet II with up to two 802.1Q / 802.1ad tags; ARP; IPv4 with options (the first fragment
/// is keyed by its ports, later fragments are [`UnkeyedReason::NonFirstFragment`]); IPv6 through
/// hop-by-hop, routing, fragment and destination options headers; TCP and UDP. Link padding after
/// the IP packet is ignored.
///
/// Cost: O(header bytes), no allocation, never reads the payload; safe from any thread.
/// Never panics: every malformed input is a [`ParseError`].
#[inline]
pub fn classify(frame: &[u8]) -> Result<Classified, ParseError> {
    dissect_inline(frame).map(|dissection| dissection.classified)
}

/// Like [`classify`], with the offset of every header and the VLAN tags. Same cost.
pub fn dissect(frame: &[u8]) -> Result<Dissection, ParseError> {
    dissect_inline(frame)
}

/// The body of [`dissect`], inlined into [`classify`] so that the fields it does not return are
/// never assembled: a `Dissection` built in one function and copied out field by field in
/// another stalled on store forwarding (found in a profile of the engine; the profile and the
/// gain are in BENCHMARKS.md, "Side by side", the reading of the engine rows).
#[inline(always)]
pub(super) fn dissect_inline(frame: &[u8]) -> Result<Dissection, ParseError> {
    let link = ethernet::parse(frame)?;
    let mut dissection = Dissection {
        classified: Classified::Unkeyed(UnkeyedReason::UnknownEthertype),
        ethertype: link.ethertype,
        vlan_tci: link.vlan_tci,
        vlan_count: link.vlan_count,
        l3_offset: link.l3_offset,
        ip_proto: None,
        ipv6_extension_headers: 0,
        l4_offset: None,
        ip_end: None,
    };
    // ethernet::parse read the two bytes just before l3_offset, so the slice always exists.
    let l3 = frame.get(link.l3_offset..).unwrap_or_default();
    let ip = match link.ethertype {
        ETHERTYPE_ARP => {
            dissection.classified = Classified::Arp {
                op: arp::parse(l3)?,
            };
            return Ok(dissection);
        }
        ETHERTYPE_IPV4 => IpLayer::from(ipv4::parse(l3)?),
        ETHERTYPE_IPV6 => IpLayer::from(ipv6::parse(l3)?),
        _ => return Ok(dissection),
    };
    dissection.ip_proto = Some(ip.proto);
    dissection.ipv6_extension_headers = ip.extension_headers;
    dissection.ip_end = Some(link.l3_offset + ip.end);
    dissection.classified = classify_upper(l3, &ip)?;
    if !ip.non_first_fragment {
        dissection.l4_offset = Some(link.l3_offset + ip.upper_offset);
    }
    if let Classified::Flow { payload_offset, .. } = &mut dissection.classified {
        *payload_offset += link.l3_offset;
    }
    Ok(dissection)
}

/// The verdict for the IP packet `packet`; a `Flow`'s payload offset is relative to `packet`.
fn classify_upper(packet: &[u8], ip: &IpLayer) -> Result<Classified, ParseError> {
    // The IP parsers guarantee upper_offset <= end <= packet.len(); the error only keeps a
    // future parser bug from becoming a panic.
    let upper = packet
        .get(ip.upper_offset..ip.end)
        .ok_or(ParseError::BadIpHeaderLength)?;
    let keyed = !ip.non_first_fragment && matches!(ip.proto, IP_PROTO_TCP | IP_PROTO_UDP);
    if !keyed {
        if let Some(error) = ip.short {
            return Err(error);
        }
        let reason = if ip.non_first_fragment {
            UnkeyedReason::NonFirstFragment
        } else {
            UnkeyedReason::UnsupportedL4
        };
        return Ok(Classified::Unkeyed(reason));
    }
    let (src_port, dst_port, tcp_flags, header_len) = if ip.proto == IP_PROTO_TCP {
        let tcp = tcp::parse(upper, ip.short)?;
        (tcp.src_port, tcp.dst_port, tcp.flags, tcp.header_len)
    } else {
        let udp = udp::parse(upper, ip.short, ip.fragmented)?;
        (udp.src_port, udp.dst_port, 0, udp::HEADER_LEN)
    };
    Ok(Classified::Flow {
        tuple: FiveTuple {
            ip: ip.pair,
            proto: ip.proto,
            src_port,
            dst_port,
        },
        tcp_flags,
        payload_offset: ip.upper_offset + header_len,
    })
}

/// What a receiver that puts a flow's TCP segments in order needs of one segment.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TcpSegment {
    /// Addresses and ports as sent.
    pub tuple: FiveTuple,
    /// CWR … FIN.
    pub flags: u8,
    /// Sequence number of the first byte (of the SYN or FIN when it carries no data).
    pub seq: u32,
    /// Payload bytes (link padding excluded).
    pub payload_len: u32,
}

/// The TCP segment in `frame`, or `None` for anything else (malformed included). One
/// [`dissect`] pass plus one 4-byte read.
pub fn tcp_segment(frame: &[u8]) -> Option<TcpSegment> {
    let dissection = dissect(frame).ok()?;
    let Classified::Flow {
        tuple,
        tcp_flags,
        payload_offset,
    } = dissection.classified
    else {
        return None;
    };
    if tuple.proto != IP_PROTO_TCP {
        return None;
    }
    let seq = read_u32(frame, dissection.l4_offset? + SEQ_OFFSET)?;
    let payload_len = dissection.ip_end?.checked_sub(payload_offset)?;
    Some(TcpSegment {
        tuple,
        flags: tcp_flags,
        seq,
        payload_len: u32::try_from(payload_len).ok()?,
    })
}
