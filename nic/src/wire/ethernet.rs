//! Ethernet II header with up to [`MAX_VLAN_TAGS`] 802.1Q / 802.1ad tags.
//!
//! Parsing reads at most 14 + 4 × [`MAX_VLAN_TAGS`] bytes. A frame with more tags than that is
//! not malformed, it is simply not parsed further: its "ethertype" is the third tag's TPID, which
//! the classifier reports as an unknown ethertype.

use super::bytes::{read_u16, write_bytes, write_u16};
use super::error::{Layer, ParseError};

/// Ethertype of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Ethertype of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// Ethertype of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// TPID of an 802.1Q (customer) VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// TPID of an 802.1ad (service, "QinQ" outer) VLAN tag.
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Destination MAC, source MAC, ethertype.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// TPID and TCI of one VLAN tag.
pub const VLAN_TAG_LEN: usize = 4;
/// VLAN tags the parser looks through (QinQ).
pub const MAX_VLAN_TAGS: usize = 2;

/// Largest VLAN identifier (12 bits).
pub(crate) const MAX_VLAN_ID: u16 = 0x0fff;

/// The link layer of one frame: the ethertype after the VLAN tags and where its payload starts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct EthernetView {
    pub ethertype: u16,
    pub l3_offset: usize,
    /// Tag control information of the tags looked through, outermost first; 0 past `vlan_count`.
    pub vlan_tci: [u16; MAX_VLAN_TAGS],
    pub vlan_count: usize,
}

fn is_vlan_tpid(ethertype: u16) -> bool {
    ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ
}

/// Parses the Ethernet header and looks through up to [`MAX_VLAN_TAGS`] tags.
pub(crate) fn parse(frame: &[u8]) -> Result<EthernetView, ParseError> {
    let mut ethertype = read_u16(frame, 12).ok_or(ParseError::Truncated(Layer::Ethernet))?;
    let mut l3_offset = ETHERNET_HEADER_LEN;
    let mut vlan_tci = [0u16; MAX_VLAN_TAGS];
    let mut vlan_count = 0;
    for tci in &mut vlan_tci {
        if !is_vlan_tpid(ethertype) {
            break;
        }
        // The tag's TCI sits at l3_offset, the next ethertype two bytes after it.
        ethertype = read_u16(frame, l3_offset + 2).ok_or(ParseError::Truncated(Layer::Vlan))?;
        *tci = read_u16(frame, l3_offset).ok_or(ParseError::Truncated(Layer::Vlan))?;
        vlan_count += 1;
        l3_offset += VLAN_TAG_LEN;
    }
    Ok(EthernetView {
        ethertype,
        l3_offset,
        vlan_tci,
        vlan_count,
    })
}

/// Header length for an optional single 802.1Q tag.
pub(crate) fn header_len(vlan: Option<u16>) -> usize {
    match vlan {
        Some(_) => ETHERNET_HEADER_LEN + VLAN_TAG_LEN,
        None => ETHERNET_HEADER_LEN,
    }
}

/// Writes the Ethernet header (and an 802.1Q tag with PCP 0, DEI 0 when `vlan` is set).
/// Returns the header length, or `None` when `buf` is too short. `vlan` must be <= 0x0fff.
pub(crate) fn emit(
    buf: &mut [u8],
    dst_mac: &[u8; 6],
    src_mac: &[u8; 6],
    vlan: Option<u16>,
    ethertype: u16,
) -> Option<usize> {
    let len = header_len(vlan);
    let written = write_bytes(buf, 0, dst_mac)
        && write_bytes(buf, 6, src_mac)
        && match vlan {
            Some(vid) => {
                write_u16(buf, 12, ETHERTYPE_VLAN)
                    && write_u16(buf, 14, vid & MAX_VLAN_ID)
                    && write_u16(buf, 16, ethertype)
            }
            None => write_u16(buf, 12, ethertype),
        };
    written.then_some(len)
}
