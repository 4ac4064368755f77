//! Building test and generator frames: Ethernet (+ one 802.1Q tag) + IPv4/IPv6 + TCP/UDP +
//! payload, with valid checksums, and patching payload bytes of a built frame in place.
//!
//! Costs: [`layout_of`] is O(1). [`build_frame`] writes every output byte once and reads the L4
//! segment once more for its checksum: O(frame length). [`FrameLayout::patch_payload`] is
//! O(bytes patched): it fixes the L4 checksum incrementally (RFC 1624) instead of summing the
//! segment again, which lets a generator stamp every packet of a cached per-flow template.
//! Everything writes only into the caller's buffer; no allocation, no shared state.

use std::fmt;

use super::bytes::{read_u16, write_bytes, write_u16};
use super::checksum;
use super::ethernet::{self, ETHERTYPE_IPV4, ETHERTYPE_IPV6, MAX_VLAN_ID};
use super::ipv4;
use super::ipv6;
use super::tcp;
use super::tuple::{FiveTuple, IpPair, IP_PROTO_TCP, IP_PROTO_UDP};
use super::udp;

/// Shortest Ethernet frame without FCS: shorter frames are padded with zeros to this length.
pub const MIN_FRAME_LEN: usize = 60;

/// What [`build_frame`] writes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FrameSpec<'a> {
    /// Source MAC address.
    pub src_mac: [u8; 6],
    /// Destination MAC address.
    pub dst_mac: [u8; 6],
    /// One 802.1Q tag with this VLAN id (0..=4095, PCP 0) when set.
    pub vlan: Option<u16>,
    /// Addresses, protocol ([`IP_PROTO_TCP`] or [`IP_PROTO_UDP`]) and ports, source = sender.
    pub tuple: FiveTuple,
    /// TCP flags byte; ignored for UDP.
    pub tcp_flags: u8,
    /// The L4 payload.
    pub payload: &'a [u8],
}

/// Why a frame could not be built or patched.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BuildError {
    /// The buffer (or, for a patch, the frame) is shorter than the frame needs.
    BufferTooSmall {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes there are.
        available: usize,
    },
    /// The tuple's protocol is neither TCP (6) nor UDP (17).
    UnsupportedProtocol(u8),
    /// The VLAN id does not fit 12 bits.
    VlanIdOutOfRange(u16),
    /// The payload does not fit the IP length field.
    PayloadTooLarge {
        /// Payload bytes given.
        len: usize,
        /// Largest payload this IP version and protocol can carry.
        max: usize,
    },
    /// A patch reaches past the end of the payload.
    PatchOutOfRange {
        /// Offset in the payload where the patch starts.
        offset: usize,
        /// Bytes to patch.
        len: usize,
        /// Payload length of the frame.
        payload_len: usize,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::BufferTooSmall { needed, available } => write!(
                f,
                "buffer too small for the frame: need {needed} bytes, have {available}"
            ),
            BuildError::UnsupportedProtocol(proto) => write!(
                f,
                "IP protocol {proto} cannot be built: expected {IP_PROTO_TCP} (TCP) or {IP_PROTO_UDP} (UDP)"
            ),
            BuildError::VlanIdOutOfRange(vid) => {
                write!(f, "VLAN id {vid} out of range: must be 0..={MAX_VLAN_ID}")
            }
            BuildError::PayloadTooLarge { len, max } => write!(
                f,
                "payload of {len} bytes does not fit the IP length field: at most {max}"
            ),
            BuildError::PatchOutOfRange {
                offset,
                len,
                payload_len,
            } => write!(
                f,
                "patch of {len} bytes at payload offset {offset} exceeds the {payload_len}-byte payload"
            ),
        }
    }
}

impl std::error::Error for BuildError {}

/// Where each header of a frame built from a [`FrameSpec`] sits. Offsets are from the frame start.
///
/// A generator builds one template per flow, keeps its layout, and derives sizes from it (e.g.
/// [`FrameLayout::payload_len_for`] a target frame size).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FrameLayout {
    l3_offset: usize,
    l4_offset: usize,
    payload_offset: usize,
    payload_len: usize,
    frame_len: usize,
    proto: u8,
}

impl FrameLayout {
    /// Start of the IP header (after Ethernet and the optional tag).
    pub fn l3_offset(&self) -> usize {
        self.l3_offset
    }

    /// Start of the TCP or UDP header.
    pub fn l4_offset(&self) -> usize {
        self.l4_offset
    }

    /// Start of the payload: the length of all headers.
    pub fn payload_offset(&self) -> usize {
        self.payload_offset
    }

    /// Payload bytes.
    pub fn payload_len(&self) -> usize {
        self.payload_len
    }

    /// End of the IP packet; bytes from here to [`FrameLayout::frame_len`] are zero padding.
    pub fn ip_end(&self) -> usize {
        self.payload_offset + self.payload_len
    }

    /// Bytes [`build_frame`] writes, padding to [`MIN_FRAME_LEN`] included.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// Payload length that makes a frame of `frame_len` bytes with these headers, or `None` when
    /// the headers alone are longer. Frames below [`MIN_FRAME_LEN`] get padding, so any
    /// `frame_len` below it yields a frame of exactly [`MIN_FRAME_LEN`].
    pub fn payload_len_for(&self, frame_len: usize) -> Option<usize> {
        frame_len.checked_sub(self.payload_offset)
    }

    /// Overwrites `bytes.len()` payload bytes at `offset_in_payload` in `frame` (a frame built
    /// with this layout) and updates the L4 checksum incrementally (RFC 1624), so the frame stays
    /// valid without summing the whole segment again.
    ///
    /// Cost: O(`bytes.len()`), two sums over the patched span plus one 16-bit update. Errors
    /// when the patch runs past the payload or the frame is shorter than the layout; the frame is
    /// then left unchanged. The result equals a full recomputation bit for bit.
    pub fn patch_payload(
        &self,
        frame: &mut [u8],
        offset_in_payload: usize,
        bytes: &[u8],
    ) -> Result<(), BuildError> {
        let out_of_range = BuildError::PatchOutOfRange {
            offset: offset_in_payload,
            len: bytes.len(),
            payload_len: self.payload_len,
        };
        let patch_end = offset_in_payload
            .checked_add(bytes.len())
            .ok_or(out_of_range)?;
        if patch_end > self.payload_len {
            return Err(out_of_range);
        }
        let available = frame.len();
        let too_short = BuildError::BufferTooSmall {
            needed: self.ip_end(),
            available,
        };
        let segment = frame
            .get_mut(self.l4_offset..self.ip_end())
            .ok_or(too_short)?;
        if bytes.is_empty() {
            return Ok(());
        }
        let checksum_at = self.checksum_offset();
        let stored = read_u16(segment, checksum_at).ok_or(too_short)?;
        let start = self.payload_offset - self.l4_offset + offset_in_payload;
        let end = start + bytes.len();
        // Checksum words are aligned to the segment start: widen the span to whole words so old
        // and new sums cover the same words. A span ending on the segment's odd last byte stays
        // odd, and `checksum::sum` pads it with zero exactly as the full sum does.
        let word_start = start & !1;
        let word_end = (end + (end & 1)).min(segment.len());
        let span = segment.get(word_start..word_end).ok_or(too_short)?;
        let old_sum = checksum::sum(span);
        if !write_bytes(segment, start, bytes) {
            return Err(too_short);
        }
        let span = segment.get(word_start..word_end).ok_or(too_short)?;
        let new_sum = checksum::sum(span);
        let updated = checksum::update(stored, old_sum, new_sum);
        let on_wire = self.checksum_on_wire(updated);
        if write_u16(segment, checksum_at, on_wire) {
            Ok(())
        } else {
            Err(too_short)
        }
    }

    /// Offset of the L4 checksum field within the L4 header.
    fn checksum_offset(&self) -> usize {
        if self.proto == IP_PROTO_TCP {
            tcp::CHECKSUM_OFFSET
        } else {
            udp::CHECKSUM_OFFSET
        }
    }

    /// UDP sends a computed zero as all ones (zero means "no checksum"); TCP sends it as is.
    fn checksum_on_wire(&self, computed: u16) -> u16 {
        if self.proto == IP_PROTO_UDP && computed == 0 {
            udp::ZERO_CHECKSUM_ON_WIRE
        } else {
            computed
        }
    }
}

/// The layout [`build_frame`] uses for `spec`. O(1).
///
/// The L4 header is 20 bytes for TCP and 8 bytes for any other protocol (UDP); `build_frame`
/// rejects protocols other than TCP and UDP, so a layout of such a spec describes no frame.
pub fn layout_of(spec: &FrameSpec<'_>) -> FrameLayout {
    let l3_offset = ethernet::header_len(spec.vlan);
    let ip_header_len = match spec.tuple.ip {
        IpPair::V4 { .. } => ipv4::HEADER_LEN,
        IpPair::V6 { .. } => ipv6::HEADER_LEN,
    };
    let l4_offset = l3_offset + ip_header_len;
    let l4_header_len = if spec.tuple.proto == IP_PROTO_TCP {
        tcp::HEADER_LEN
    } else {
        udp::HEADER_LEN
    };
    let payload_offset = l4_offset + l4_header_len;
    let payload_len = spec.payload.len();
    FrameLayout {
        l3_offset,
        l4_offset,
        payload_offset,
        payload_len,
        frame_len: (payload_offset + payload_len).max(MIN_FRAME_LEN),
        proto: spec.tuple.proto,
    }
}

/// Largest payload the IP length fields allow for this IP version and L4 header.
fn max_payload_len(spec: &FrameSpec<'_>, layout: &FrameLayout) -> usize {
    let l4_header_len = layout.payload_offset - layout.l4_offset;
    let max_l4_len = match spec.tuple.ip {
        IpPair::V4 { .. } => ipv4::MAX_TOTAL_LEN - ipv4::HEADER_LEN,
        IpPair::V6 { .. } => ipv6::MAX_PAYLOAD_LEN,
    };
    max_l4_len - l4_header_len
}

/// Writes the frame `spec` describes at the start of `buf` and returns its length.
///
/// IPv4: IHL 5, DF, TTL 64, identification 0, valid header checksum. IPv6: traffic class and
/// flow label 0, hop limit 64. TCP: sequence and acknowledgement 0, data offset 5, window 65535.
/// TCP and UDP checksums are computed over the pseudo-header. Frames shorter than
/// [`MIN_FRAME_LEN`] are padded with zeros after the payload; the IP length excludes the padding.
///
/// Cost: O(frame length): each byte written once plus one checksum pass over the L4 segment.
/// Bytes of `buf` past the returned length are left untouched. On error nothing is written.
pub fn build_frame(buf: &mut [u8], spec: &FrameSpec<'_>) -> Result<usize, BuildError> {
    let proto = spec.tuple.proto;
    if proto != IP_PROTO_TCP && proto != IP_PROTO_UDP {
        return Err(BuildError::UnsupportedProtocol(proto));
    }
    if let Some(vid) = spec.vlan {
        if vid > MAX_VLAN_ID {
            return Err(BuildError::VlanIdOutOfRange(vid));
        }
    }
    let layout = layout_of(spec);
    let max = max_payload_len(spec, &layout);
    if spec.payload.len() > max {
        return Err(BuildError::PayloadTooLarge {
            len: spec.payload.len(),
            max,
        });
    }
    let too_small = BuildError::BufferTooSmall {
        needed: layout.frame_len,
        available: buf.len(),
    };
    let frame = buf.get_mut(..layout.frame_len).ok_or(too_small)?;
    let ethertype = match spec.tuple.ip {
        IpPair::V4 { .. } => ETHERTYPE_IPV4,
        IpPair::V6 { .. } => ETHERTYPE_IPV6,
    };
    ethernet::emit(frame, &spec.dst_mac, &spec.src_mac, spec.vlan, ethertype).ok_or(too_small)?;

    let l4_len = layout.ip_end() - layout.l4_offset;
    let (ip_header, segment) = frame
        .get_mut(layout.l3_offset..layout.ip_end())
        .ok_or(too_small)?
        .split_at_mut(layout.l4_offset - layout.l3_offset);
    let pseudo_header_sum = match &spec.tuple.ip {
        IpPair::V4 { src, dst } => {
            ipv4::emit(ip_header, src, dst, proto, l4_len).ok_or(too_small)?;
            // l4_len <= 65535 - 20 was checked against max_payload_len above.
            checksum::pseudo_header_v4(src, dst, proto, l4_len as u16)
        }
        IpPair::V6 { src, dst } => {
            ipv6::emit(ip_header, src, dst, proto, l4_len).ok_or(too_small)?;
            checksum::pseudo_header_v6(src, dst, proto, l4_len as u32)
        }
    };
    let t = &spec.tuple;
    if proto == IP_PROTO_TCP {
        tcp::emit(segment, t.src_port, t.dst_port, spec.tcp_flags).ok_or(too_small)?;
    } else {
        udp::emit(segment, t.src_port, t.dst_port, spec.payload.len()).ok_or(too_small)?;
    }
    let payload_at = layout.payload_offset - layout.l4_offset;
    if !write_bytes(segment, payload_at, spec.payload) {
        return Err(too_small);
    }
    let segment_sum = checksum::add(pseudo_header_sum, checksum::sum(segment));
    let l4_checksum = layout.checksum_on_wire(checksum::finish(segment_sum));
    if !write_u16(segment, layout.checksum_offset(), l4_checksum) {
        return Err(too_small);
    }
    frame.get_mut(layout.ip_end()..).ok_or(too_small)?.fill(0);
    Ok(layout.frame_len)
}
