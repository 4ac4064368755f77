//! IPv4 header (RFC 791): parsing with options and fragments, and emitting an option-less header.
//!
//! Parsing reads the 20-byte fixed part only (options are skipped by length, never interpreted)
//! and does not verify the header checksum: steering needs the key, and the stack that receives
//! the packet verifies it (or the NIC has already). O(1).

use super::bytes::{read_array, read_u16, read_u8, write_bytes, write_u16};
use super::checksum;
use super::error::{Layer, ParseError};

/// Fixed header length (IHL 5).
pub(crate) const HEADER_LEN: usize = 20;
/// Largest total length the 16-bit field can state.
pub(crate) const MAX_TOTAL_LEN: usize = u16::MAX as usize;
/// Time to live of emitted packets.
const DEFAULT_TTL: u8 = 64;
/// Don't Fragment: emitted packets are never fragmented on the way.
const FLAG_DONT_FRAGMENT: u16 = 0x4000;
const FLAG_MORE_FRAGMENTS: u16 = 0x2000;
const FRAGMENT_OFFSET_MASK: u16 = 0x1fff;

/// What the classifier needs from one IPv4 header. Offsets are relative to the header start.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Ipv4View {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub proto: u8,
    /// Header length including options: where the upper-layer data starts.
    pub header_len: usize,
    /// End of the packet's bytes: the total length, or the end of the frame when that comes first.
    pub end: usize,
    /// The frame ends before the total length says the packet does.
    pub short: bool,
    /// More Fragments set or a non-zero fragment offset: the packet is one piece of several.
    pub fragmented: bool,
    /// Fragment offset in 8-byte units; non-zero means the upper-layer header is elsewhere.
    pub fragment_offset: u16,
}

/// Parses the IPv4 header at the start of `packet` (the rest of the frame after the link layer).
///
/// Errors, in check order: fewer than 20 bytes or fewer than IHL × 4 bytes →
/// `Truncated(Ipv4)`; version ≠ 4 → `BadIpVersion`; IHL < 5 or total length < IHL × 4 →
/// `BadIpHeaderLength`. A total length beyond the frame is not an error here (`short` is set) so
/// that the caller can first report a truncated upper-layer header.
pub(crate) fn parse(packet: &[u8]) -> Result<Ipv4View, ParseError> {
    let truncated = ParseError::Truncated(Layer::Ipv4);
    if packet.len() < HEADER_LEN {
        return Err(truncated);
    }
    let version_ihl = read_u8(packet, 0).ok_or(truncated)?;
    if version_ihl >> 4 != 4 {
        return Err(ParseError::BadIpVersion);
    }
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if header_len < HEADER_LEN {
        return Err(ParseError::BadIpHeaderLength);
    }
    if packet.len() < header_len {
        return Err(truncated);
    }
    let total_len = usize::from(read_u16(packet, 2).ok_or(truncated)?);
    if total_len < header_len {
        return Err(ParseError::BadIpHeaderLength);
    }
    let flags_offset = read_u16(packet, 6).ok_or(truncated)?;
    let fragment_offset = flags_offset & FRAGMENT_OFFSET_MASK;
    Ok(Ipv4View {
        src: read_array(packet, 12).ok_or(truncated)?,
        dst: read_array(packet, 16).ok_or(truncated)?,
        proto: read_u8(packet, 9).ok_or(truncated)?,
        header_len,
        end: total_len.min(packet.len()),
        short: total_len > packet.len(),
        fragmented: flags_offset & FLAG_MORE_FRAGMENTS != 0 || fragment_offset != 0,
        fragment_offset,
    })
}

/// Writes a 20-byte header (DF set, TTL 64, identification 0, valid header checksum) at the
/// start of `buf` for `payload_len` bytes of upper-layer data. `None` when `buf` is shorter than
/// 20 bytes or the total length does not fit 16 bits. O(1).
pub(crate) fn emit(
    buf: &mut [u8],
    src: &[u8; 4],
    dst: &[u8; 4],
    proto: u8,
    payload_len: usize,
) -> Option<()> {
    let total_len = u16::try_from(HEADER_LEN.checked_add(payload_len)?).ok()?;
    let header = buf.get_mut(..HEADER_LEN)?;
    header.fill(0);
    header[0] = 0x45;
    header[8] = DEFAULT_TTL;
    header[9] = proto;
    let written = write_u16(header, 2, total_len)
        && write_u16(header, 6, FLAG_DONT_FRAGMENT)
        && write_bytes(header, 12, src)
        && write_bytes(header, 16, dst);
    let header_checksum = checksum::finish(checksum::sum(header));
    (written && write_u16(header, 10, header_checksum)).then_some(())
}
