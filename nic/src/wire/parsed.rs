//! What one classification found, small enough to travel with the packet in its buffer's
//! metadata (as `rte_mbuf` carries `packet_type` and the header lengths), so that whoever
//! processes the packet after steering (the stack, the verifying sink) does not parse it again.
//!
//! A [`Parsed`] holds the verdict and the offsets, not the addresses: [`Parsed::classified`]
//! reads the tuple back from the frame at the recorded offsets (two address loads and one port
//! load, no validation: the frame was validated when it was classified, and a buffer forgets its
//! `Parsed` when its frame is written).

use super::bytes::{read_array, read_u16, read_u32};
use super::classify::{dissect_inline, Classified, Dissection, TcpSegment, UnkeyedReason};
use super::error::ParseError;
use super::tcp::SEQ_OFFSET;
use super::tuple::{FiveTuple, IpPair, IP_PROTO_TCP};

const NONE: u8 = 0;
const FLOW_V4: u8 = 1;
const FLOW_V6: u8 = 2;
const ARP: u8 = 3;
const UNKEYED: u8 = 4;

/// Offsets of the addresses within an IPv4 and an IPv6 header.
const V4_SRC: usize = 12;
const V4_DST: usize = 16;
const V6_SRC: usize = 8;
const V6_DST: usize = 24;

/// The result of one [`classify_parsed`] pass over a frame, in 12 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C)]
pub struct Parsed {
    kind: u8,
    /// Flow: the IP protocol; unkeyed: the reason's index in [`UnkeyedReason::ALL`].
    detail: u8,
    tcp_flags: u8,
    l3_offset: u8,
    l4_offset: u16,
    payload_offset: u16,
    ip_end: u16,
    arp_op: u16,
}

const _: () = assert!(std::mem::size_of::<Parsed>() == 12);

impl Parsed {
    /// Nothing classified (a fresh buffer, or one whose frame was written since).
    pub const NONE: Parsed = Parsed {
        kind: NONE,
        detail: 0,
        tcp_flags: 0,
        l3_offset: 0,
        l4_offset: 0,
        payload_offset: 0,
        ip_end: 0,
        arp_op: 0,
    };

    /// False for [`Parsed::NONE`] and for a forgotten one.
    #[inline]
    pub fn is_some(&self) -> bool {
        self.kind != NONE
    }

    /// Makes this record nothing: one byte written, the other fields left as they are (no
    /// reader looks at them once the kind says nothing), so that every write to a frame can
    /// afford it.
    #[inline]
    pub(crate) fn forget(&mut self) {
        self.kind = NONE;
    }

    /// The summary of `dissection`; `NONE` when an offset does not fit (a frame longer than
    /// 64 KiB, headers past byte 255), which its reader then parses again.
    #[inline(always)]
    fn of(dissection: &Dissection) -> Parsed {
        let Ok(l3_offset) = u8::try_from(dissection.l3_offset) else {
            return Parsed::NONE;
        };
        let mut parsed = Parsed {
            l3_offset,
            ..Parsed::NONE
        };
        match dissection.classified {
            Classified::Flow {
                tuple,
                tcp_flags,
                payload_offset,
            } => {
                let (Some(l4), Some(end)) = (dissection.l4_offset, dissection.ip_end) else {
                    return Parsed::NONE;
                };
                let (Ok(l4), Ok(end), Ok(payload)) = (
                    u16::try_from(l4),
                    u16::try_from(end),
                    u16::try_from(payload_offset),
                ) else {
                    return Parsed::NONE;
                };
                parsed.kind = if tuple.ip.is_ipv6() { FLOW_V6 } else { FLOW_V4 };
                parsed.detail = tuple.proto;
                parsed.tcp_flags = tcp_flags;
                parsed.l4_offset = l4;
                parsed.payload_offset = payload;
                parsed.ip_end = end;
            }
            Classified::Arp { op } => {
                parsed.kind = ARP;
                parsed.arp_op = op;
            }
            Classified::Unkeyed(reason) => {
                parsed.kind = UNKEYED;
                parsed.detail = reason.index() as u8;
            }
        }
        parsed
    }

    /// The classification this records, its tuple read back from `frame` (the frame it was
    /// made from, unchanged); `None` for [`Parsed::NONE`], or when `frame` is too short for the
    /// recorded offsets (another frame).
    #[inline]
    pub fn classified(&self, frame: &[u8]) -> Option<Classified> {
        match self.kind {
            FLOW_V4 | FLOW_V6 => Some(Classified::Flow {
                tuple: self.tuple(frame)?,
                tcp_flags: self.tcp_flags,
                payload_offset: usize::from(self.payload_offset),
            }),
            ARP => Some(Classified::Arp { op: self.arp_op }),
            UNKEYED => Some(Classified::Unkeyed(
                *UnkeyedReason::ALL.get(usize::from(self.detail))?,
            )),
            _ => None,
        }
    }

    /// The TCP segment this records ([`super::tcp_segment`] without the parse); `None` for
    /// anything but a TCP flow, or a `frame` too short for the recorded offsets.
    #[inline]
    pub fn tcp_segment(&self, frame: &[u8]) -> Option<TcpSegment> {
        if !matches!(self.kind, FLOW_V4 | FLOW_V6) || self.detail != IP_PROTO_TCP {
            return None;
        }
        let payload_len = self.ip_end.checked_sub(self.payload_offset)?;
        Some(TcpSegment {
            tuple: self.tuple(frame)?,
            flags: self.tcp_flags,
            seq: read_u32(frame, usize::from(self.l4_offset) + SEQ_OFFSET)?,
            payload_len: u32::from(payload_len),
        })
    }

    /// Offset of the first L4 payload byte (flows; 0 otherwise).
    #[inline]
    pub fn payload_offset(&self) -> usize {
        usize::from(self.payload_offset)
    }

    /// True for a TCP or UDP flow.
    #[inline]
    pub fn is_flow(&self) -> bool {
        matches!(self.kind, FLOW_V4 | FLOW_V6)
    }

    fn tuple(&self, frame: &[u8]) -> Option<FiveTuple> {
        let l3 = usize::from(self.l3_offset);
        let ip = if self.kind == FLOW_V6 {
            IpPair::V6 {
                src: read_array(frame, l3 + V6_SRC)?,
                dst: read_array(frame, l3 + V6_DST)?,
            }
        } else {
            IpPair::V4 {
                src: read_array(frame, l3 + V4_SRC)?,
                dst: read_array(frame, l3 + V4_DST)?,
            }
        };
        let l4 = usize::from(self.l4_offset);
        Some(FiveTuple {
            ip,
            proto: self.detail,
            src_port: read_u16(frame, l4)?,
            dst_port: read_u16(frame, l4 + 2)?,
        })
    }
}

impl Default for Parsed {
    fn default() -> Self {
        Parsed::NONE
    }
}

/// [`classify`](super::classify), and the same pass's [`Parsed`] to keep with the packet. Same
/// cost plus a 12-byte summary.
#[inline]
pub fn classify_parsed(frame: &[u8]) -> Result<(Classified, Parsed), ParseError> {
    dissect_inline(frame).map(|dissection| (dissection.classified, Parsed::of(&dissection)))
}
