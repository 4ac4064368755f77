//! UDP header (RFC 768): ports and length checks for the classifier, and emitting a header.
//!
//! Parsing reads the 8-byte header; O(1). The checksum is not verified: that is the receiving
//! stack's job.

use super::bytes::{read_u16, write_u16};
use super::error::{Layer, ParseError};

/// Header length.
pub(crate) const HEADER_LEN: usize = 8;
/// Offset of the checksum field in the header.
pub(crate) const CHECKSUM_OFFSET: usize = 6;
/// A computed checksum of zero is sent as all ones: zero on the wire means "no checksum".
pub(crate) const ZERO_CHECKSUM_ON_WIRE: u16 = 0xffff;

/// What the classifier needs from one UDP header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct UdpView {
    pub src_port: u16,
    pub dst_port: u16,
}

/// Parses the UDP header at the start of `datagram` (the IP payload, bounded by the IP length).
///
/// `short` is the error to report when the frame ended before the IP packet did, `None` when
/// the packet is whole. `fragmented`: the IP packet holds only the first piece of the datagram,
/// so the UDP length may exceed it. Check order: fewer than 8 bytes → `Truncated(Udp)`; then
/// `short`; then a length below 8 or (unfragmented) above the IP payload → `BadUdpLength`.
pub(crate) fn parse(
    datagram: &[u8],
    short: Option<ParseError>,
    fragmented: bool,
) -> Result<UdpView, ParseError> {
    let truncated = ParseError::Truncated(Layer::Udp);
    if datagram.len() < HEADER_LEN {
        return Err(truncated);
    }
    if let Some(error) = short {
        return Err(error);
    }
    let length = usize::from(read_u16(datagram, 4).ok_or(truncated)?);
    if length < HEADER_LEN || (!fragmented && length > datagram.len()) {
        return Err(ParseError::BadUdpLength);
    }
    Ok(UdpView {
        src_port: read_u16(datagram, 0).ok_or(truncated)?,
        dst_port: read_u16(datagram, 2).ok_or(truncated)?,
    })
}

/// Writes the 8-byte header for `payload_len` bytes of data with a zero checksum, which the
/// caller fills over the whole datagram. `None` when `buf` is shorter than 8 bytes or the length
/// does not fit 16 bits. O(1).
pub(crate) fn emit(buf: &mut [u8], src_port: u16, dst_port: u16, payload_len: usize) -> Option<()> {
    let length = u16::try_from(HEADER_LEN.checked_add(payload_len)?).ok()?;
    let header = buf.get_mut(..HEADER_LEN)?;
    let written = write_u16(header, 0, src_port)
        && write_u16(header, 2, dst_port)
        && write_u16(header, 4, length)
        && write_u16(header, CHECKSUM_OFFSET, 0);
    written.then_some(())
}
