//! IPv6 header (RFC 8200) and the walk over its extension headers, and emitting a fixed header.
//!
//! The walk follows hop-by-hop options, routing, fragment and destination options headers by
//! their length fields, never interpreting options, and stops at the first other next-header
//! value (the upper layer) or at a non-first fragment, whose data is not a header. It visits at
//! most [`MAX_IPV6_EXTENSION_HEADERS`] headers, so a chain crafted to be long costs O(bound) and
//! is reported as `TooManyIpv6ExtensionHeaders` instead of being followed.

use super::bytes::{read_array, read_u16, read_u8, write_bytes, write_u16};
use super::error::{Layer, ParseError};

/// Extension headers the parser walks before giving up. RFC 8200 §4.1 lets each type occur once
/// (destination options twice), so legitimate chains of the walked types stay well below this.
pub const MAX_IPV6_EXTENSION_HEADERS: usize = 8;

/// Fixed header length.
pub(crate) const HEADER_LEN: usize = 40;
/// Largest upper-layer length the 16-bit payload length field can state.
pub(crate) const MAX_PAYLOAD_LEN: usize = u16::MAX as usize;
/// Hop limit of emitted packets.
const DEFAULT_HOP_LIMIT: u8 = 64;

const NEXT_HEADER_HOP_BY_HOP: u8 = 0;
const NEXT_HEADER_ROUTING: u8 = 43;
const NEXT_HEADER_FRAGMENT: u8 = 44;
const NEXT_HEADER_DESTINATION_OPTIONS: u8 = 60;
/// The fragment header has no length field: it is always 8 bytes.
const FRAGMENT_HEADER_LEN: usize = 8;
const FRAGMENT_OFFSET_SHIFT: u16 = 3;

/// What the classifier needs from one IPv6 packet. Offsets are relative to the header start.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Ipv6View {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Next-header value after the extension headers: the upper-layer protocol.
    pub proto: u8,
    /// Where the upper-layer data starts (after every walked extension header).
    pub upper_offset: usize,
    /// End of the packet's bytes: 40 + payload length, or the end of the frame when that comes first.
    pub end: usize,
    /// The frame ends before the payload length says the packet does.
    pub short: bool,
    /// A fragment header was found.
    pub fragmented: bool,
    /// Fragment offset in 8-byte units; non-zero means the upper-layer header is elsewhere.
    pub fragment_offset: u16,
    /// Extension headers walked.
    pub extension_headers: usize,
}

fn is_walked_extension(next_header: u8) -> bool {
    matches!(
        next_header,
        NEXT_HEADER_HOP_BY_HOP
            | NEXT_HEADER_ROUTING
            | NEXT_HEADER_FRAGMENT
            | NEXT_HEADER_DESTINATION_OPTIONS
    )
}

/// Parses the fixed header at the start of `packet` and walks the extension headers.
///
/// Errors, in check order: fewer than 40 bytes → `Truncated(Ipv6)`; version ≠ 6 →
/// `BadIpVersion`; an extension header that does not end within the packet →
/// `Truncated(Ipv6Extension)`; more than [`MAX_IPV6_EXTENSION_HEADERS`] →
/// `TooManyIpv6ExtensionHeaders`. A payload length beyond the frame is not an error here
/// (`short` is set) so that the caller can first report a truncated upper-layer header.
pub(crate) fn parse(packet: &[u8]) -> Result<Ipv6View, ParseError> {
    let truncated = ParseError::Truncated(Layer::Ipv6);
    if packet.len() < HEADER_LEN {
        return Err(truncated);
    }
    if read_u8(packet, 0).ok_or(truncated)? >> 4 != 6 {
        return Err(ParseError::BadIpVersion);
    }
    let claimed_end = HEADER_LEN + usize::from(read_u16(packet, 4).ok_or(truncated)?);
    let end = claimed_end.min(packet.len());
    let mut view = Ipv6View {
        src: read_array(packet, 8).ok_or(truncated)?,
        dst: read_array(packet, 24).ok_or(truncated)?,
        proto: read_u8(packet, 6).ok_or(truncated)?,
        upper_offset: HEADER_LEN,
        end,
        short: claimed_end > packet.len(),
        fragmented: false,
        fragment_offset: 0,
        extension_headers: 0,
    };
    // Bounded by the claimed length too: bytes past it are link padding, not headers.
    let packet = packet.get(..end).ok_or(truncated)?;
    let truncated_extension = ParseError::Truncated(Layer::Ipv6Extension);
    while is_walked_extension(view.proto) {
        if view.extension_headers == MAX_IPV6_EXTENSION_HEADERS {
            return Err(ParseError::TooManyIpv6ExtensionHeaders);
        }
        let at = view.upper_offset;
        let next_header = read_u8(packet, at).ok_or(truncated_extension)?;
        let header_len = if view.proto == NEXT_HEADER_FRAGMENT {
            FRAGMENT_HEADER_LEN
        } else {
            // Hdr Ext Len counts 8-octet units beyond the first 8 octets.
            (usize::from(read_u8(packet, at + 1).ok_or(truncated_extension)?) + 1) * 8
        };
        if packet.len() - at < header_len {
            return Err(truncated_extension);
        }
        let is_fragment = view.proto == NEXT_HEADER_FRAGMENT;
        view.extension_headers += 1;
        view.upper_offset = at + header_len;
        view.proto = next_header;
        if is_fragment {
            let offset_flags = read_u16(packet, at + 2).ok_or(truncated_extension)?;
            view.fragmented = true;
            view.fragment_offset = offset_flags >> FRAGMENT_OFFSET_SHIFT;
            if view.fragment_offset != 0 {
                // What follows is the middle of the original payload, not another header.
                break;
            }
        }
    }
    Ok(view)
}

/// Writes a 40-byte header (traffic class 0, flow label 0, hop limit 64) at the start of `buf`
/// for `payload_len` bytes of upper-layer data. `None` when `buf` is shorter than 40 bytes or
/// the payload length does not fit 16 bits. O(1).
pub(crate) fn emit(
    buf: &mut [u8],
    src: &[u8; 16],
    dst: &[u8; 16],
    next_header: u8,
    payload_len: usize,
) -> Option<()> {
    let payload_len = u16::try_from(payload_len).ok()?;
    let header = buf.get_mut(..HEADER_LEN)?;
    header.fill(0);
    header[0] = 0x60;
    header[6] = next_header;
    header[7] = DEFAULT_HOP_LIMIT;
    let written = write_u16(header, 4, payload_len)
        && write_bytes(header, 8, src)
        && write_bytes(header, 24, dst);
    written.then_some(())
}
