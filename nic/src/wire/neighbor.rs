//! Neighbour messages: ARP (RFC 826) and IPv6 neighbour discovery (RFC 4861), as far as the
//! steering needs them.
//!
//! Every stack thread keeps its own neighbour cache, but a neighbour message arrives on one queue
//! only. The receiving thread answers a request itself; every other thread gets a *learning
//! copy*: the request turned into the answer form, from which a stack learns the sender's link
//! address without answering (an ARP request becomes a reply; a neighbour solicitation becomes an
//! advertisement of the sender with the override flag, its source link-layer option turned into
//! a target link-layer option). Answers (ARP replies, neighbour advertisements) are copied as
//! they are, so a thread whose request another queue received the answer to still learns it.
//!
//! IPv6 neighbour discovery is not a class of [`classify`](super::classify): a check for it on
//! the steering's hot path changed how the whole classification inlined and slowed every
//! profile of the engine (BENCHMARKS.md, "The engine's own rows after these changes"), so
//! [`neighbor_message`] looks at the frames the classifier calls `Unkeyed(UnsupportedL4)`,
//! which are rare.
//!
//! Cost: [`neighbor_message`] is one [`dissect`] pass; [`make_learning_copy`] dissects the copy
//! once and changes at most three 16-bit words (checksum updated incrementally, RFC 1624); a
//! solicitation's options are walked once.

use super::bytes::{read_u16, read_u8, write_u16};
use super::checksum;
use super::classify::{dissect, Classified, Dissection, UnkeyedReason};
use super::ARP_REQUEST;

/// IPv6 next header: ICMPv6.
pub const IP_PROTO_ICMPV6: u8 = 58;
/// ICMPv6 type of a neighbour solicitation.
pub const NEIGHBOR_SOLICIT: u8 = 135;
/// ICMPv6 type of a neighbour advertisement.
pub const NEIGHBOR_ADVERT: u8 = 136;

/// Type, code, checksum, 4 bytes of reserved or flags, the 16-byte target address.
const NDISC_FIXED_LEN: usize = 24;
/// Neighbour discovery option types: source and target link-layer address.
const OPTION_SOURCE_LL: u8 = 1;
const OPTION_TARGET_LL: u8 = 2;
/// An Ethernet link-layer address option is one 8-byte unit: type, length, 6 address bytes.
const ETHERNET_LL_OPTION_UNITS: u8 = 1;
/// The override flag of an advertisement: the receiver replaces what its cache holds.
const ADVERT_OVERRIDE: u8 = 0x20;
const ARP_OP_OFFSET: usize = 6;
const ICMPV6_CHECKSUM_OFFSET: usize = 2;

/// The ICMPv6 type of a neighbour solicitation or advertisement in `icmp` (the ICMPv6 message,
/// from its type byte on); `None` for any other message, or one too short to hold a target.
fn ndisc_type(icmp: &[u8]) -> Option<u8> {
    let kind = read_u8(icmp, 0)?;
    let code = read_u8(icmp, 1)?;
    let is_neighbor = kind == NEIGHBOR_SOLICIT || kind == NEIGHBOR_ADVERT;
    (is_neighbor && code == 0 && icmp.len() >= NDISC_FIXED_LEN).then_some(kind)
}

/// The ICMPv6 type of the neighbour solicitation or advertisement in `frame`
/// ([`NEIGHBOR_SOLICIT`] or [`NEIGHBOR_ADVERT`]); `None` for any other frame. Meant for frames
/// [`classify`](super::classify) found `Unkeyed(UnsupportedL4)`: one more [`dissect`] pass.
pub fn neighbor_message(frame: &[u8]) -> Option<u8> {
    let dissection = dissect(frame).ok()?;
    ndisc_of(frame, &dissection).map(|(kind, _)| kind)
}

/// The neighbour message of a dissected frame: its type and where its ICMPv6 message lies.
fn ndisc_of(frame: &[u8], dissection: &Dissection) -> Option<(u8, std::ops::Range<usize>)> {
    if dissection.classified != Classified::Unkeyed(UnkeyedReason::UnsupportedL4)
        || dissection.ip_proto != Some(IP_PROTO_ICMPV6)
    {
        return None;
    }
    let range = dissection.l4_offset?..dissection.ip_end?;
    let kind = ndisc_type(frame.get(range.clone())?)?;
    Some((kind, range))
}

/// Turns `frame`, a copy of a received neighbour message, into what another thread's stack
/// learns the sender's link address from without answering (see the module documentation).
/// Returns false, leaving the frame unchanged, when the frame teaches nothing: a solicitation
/// without a source link-layer option (duplicate address detection), or a frame that is not a
/// neighbour message.
pub fn make_learning_copy(frame: &mut [u8]) -> bool {
    let Ok(dissection) = dissect(frame) else {
        return false;
    };
    if let Classified::Arp { op } = dissection.classified {
        if op == ARP_REQUEST {
            write_u16(
                frame,
                dissection.l3_offset + ARP_OP_OFFSET,
                super::ARP_REPLY,
            );
        }
        return true;
    }
    match ndisc_of(frame, &dissection) {
        Some((NEIGHBOR_ADVERT, _)) => true,
        Some((NEIGHBOR_SOLICIT, range)) => solicitation_to_advert(&mut frame[range]),
        _ => false,
    }
}

/// Rewrites the solicitation `icmp` into an advertisement of its sender; false (unchanged) when
/// it has no Ethernet source link-layer option.
fn solicitation_to_advert(icmp: &mut [u8]) -> bool {
    let mut at = NDISC_FIXED_LEN;
    let option = loop {
        let (Some(kind), Some(units)) = (read_u8(icmp, at), read_u8(icmp, at + 1)) else {
            return false;
        };
        if units == 0 {
            return false; // RFC 4861 §4.6: a zero-length option is invalid
        }
        if kind == OPTION_SOURCE_LL
            && units == ETHERNET_LL_OPTION_UNITS
            && at + 8 * usize::from(units) <= icmp.len()
        {
            break at;
        }
        at += 8 * usize::from(units);
    };
    let (Some(type_code), Some(flags), Some(option_word), Some(stored)) = (
        read_u16(icmp, 0),
        read_u16(icmp, 4),
        read_u16(icmp, option),
        read_u16(icmp, ICMPV6_CHECKSUM_OFFSET),
    ) else {
        return false;
    };
    let new_type_code = u16::from(NEIGHBOR_ADVERT) << 8 | (type_code & 0xff);
    let new_flags = u16::from(ADVERT_OVERRIDE) << 8;
    let new_option_word = u16::from(OPTION_TARGET_LL) << 8 | (option_word & 0xff);
    let old_sum = checksum::add(checksum::add(type_code, flags), option_word);
    let new_sum = checksum::add(checksum::add(new_type_code, new_flags), new_option_word);
    write_u16(icmp, 0, new_type_code);
    // The reserved field's second half (bytes 6 and 7) is reserved in an advertisement too.
    write_u16(icmp, 4, new_flags);
    write_u16(icmp, option, new_option_word);
    write_u16(
        icmp,
        ICMPV6_CHECKSUM_OFFSET,
        checksum::update(stored, old_sum, new_sum),
    );
    true
}
