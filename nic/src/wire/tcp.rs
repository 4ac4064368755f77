//! TCP header (RFC 9293): the ports, flags and data offset the classifier needs, and emitting a
//! header without options.
//!
//! Parsing reads the 20-byte fixed part (options are skipped by the data offset); O(1). The
//! checksum is not verified: that is the receiving stack's job.

use super::bytes::{read_u16, read_u8, write_u16, write_u32};
use super::error::{Layer, ParseError};

/// Header length without options (data offset 5).
pub(crate) const HEADER_LEN: usize = 20;
/// Offset of the sequence number in the header.
pub(crate) const SEQ_OFFSET: usize = 4;
/// Offset of the checksum field in the header.
pub(crate) const CHECKSUM_OFFSET: usize = 16;
/// Window advertised by emitted segments: the largest without window scaling.
const DEFAULT_WINDOW: u16 = u16::MAX;
/// Data offset 5 in the high nibble of byte 12.
const DATA_OFFSET_NO_OPTIONS: u8 = 5 << 4;

/// What the classifier needs from one TCP header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct TcpView {
    pub src_port: u16,
    pub dst_port: u16,
    /// CWR, ECE, URG, ACK, PSH, RST, SYN, FIN (byte 13).
    pub flags: u8,
    /// Data offset × 4: where the payload starts.
    pub header_len: usize,
}

/// Parses the TCP header at the start of `segment` (the IP payload, bounded by the IP length).
///
/// `short` is the error to report when the frame ended before the IP packet did, `None` when
/// the packet is whole. Check order: fewer than 20 bytes, or options cut off by the end of the
/// frame → `Truncated(Tcp)`; then `short`; then data offset < 5 or beyond the segment →
/// `BadTcpDataOffset`.
pub(crate) fn parse(segment: &[u8], short: Option<ParseError>) -> Result<TcpView, ParseError> {
    let truncated = ParseError::Truncated(Layer::Tcp);
    if segment.len() < HEADER_LEN {
        return Err(truncated);
    }
    let header_len = usize::from(read_u8(segment, 12).ok_or(truncated)? >> 4) * 4;
    let options_cut_by_frame_end = header_len > segment.len() && short.is_some();
    if header_len >= HEADER_LEN && options_cut_by_frame_end {
        return Err(truncated);
    }
    if let Some(error) = short {
        return Err(error);
    }
    if header_len < HEADER_LEN || header_len > segment.len() {
        return Err(ParseError::BadTcpDataOffset);
    }
    Ok(TcpView {
        src_port: read_u16(segment, 0).ok_or(truncated)?,
        dst_port: read_u16(segment, 2).ok_or(truncated)?,
        flags: read_u8(segment, 13).ok_or(truncated)?,
        header_len,
    })
}

/// Writes a 20-byte header (sequence and acknowledgement 0, data offset 5, window 65535,
/// urgent pointer 0) with a zero checksum, which the caller fills over the whole segment.
/// `None` when `buf` is shorter than 20 bytes. O(1).
pub(crate) fn emit(buf: &mut [u8], src_port: u16, dst_port: u16, flags: u8) -> Option<()> {
    let header = buf.get_mut(..HEADER_LEN)?;
    header.fill(0);
    header[12] = DATA_OFFSET_NO_OPTIONS;
    header[13] = flags;
    let written = write_u16(header, 0, src_port)
        && write_u16(header, 2, dst_port)
        && write_u32(header, 4, 0)
        && write_u32(header, 8, 0)
        && write_u16(header, 14, DEFAULT_WINDOW);
    written.then_some(())
}
