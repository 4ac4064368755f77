//! ARP for IPv4 over Ethernet (RFC 826): only the checks the classifier needs.
//!
//! Reads the 8-byte fixed part and requires the full 28-byte packet; never reads addresses.

use super::bytes::{read_u16, read_u8};
use super::error::{Layer, ParseError};
use super::ethernet::ETHERTYPE_IPV4;

/// ARP operation: request.
pub const ARP_REQUEST: u16 = 1;
/// ARP operation: reply.
pub const ARP_REPLY: u16 = 2;

/// Fixed part: hardware type, protocol type, hardware length, protocol length, operation.
const FIXED_LEN: usize = 8;
const ETHERNET_ADDR_LEN: u8 = 6;
const IPV4_ADDR_LEN: u8 = 4;
/// Fixed part plus sender and target hardware and protocol addresses.
const PACKET_LEN: usize = FIXED_LEN + 2 * (ETHERNET_ADDR_LEN as usize + IPV4_ADDR_LEN as usize);

/// Validates an ARP packet and returns its operation.
///
/// The hardware type is not checked: 1 (Ethernet) and 6 (IEEE 802) both occur on Ethernet links;
/// what matters for parsing is that the address lengths are 6 and 4.
pub(crate) fn parse(packet: &[u8]) -> Result<u16, ParseError> {
    if packet.len() < FIXED_LEN {
        return Err(ParseError::Truncated(Layer::Arp));
    }
    let protocol = read_u16(packet, 2).ok_or(ParseError::Truncated(Layer::Arp))?;
    let hardware_len = read_u8(packet, 4).ok_or(ParseError::Truncated(Layer::Arp))?;
    let protocol_len = read_u8(packet, 5).ok_or(ParseError::Truncated(Layer::Arp))?;
    if protocol != ETHERTYPE_IPV4
        || hardware_len != ETHERNET_ADDR_LEN
        || protocol_len != IPV4_ADDR_LEN
    {
        return Err(ParseError::BadArpHeader);
    }
    if packet.len() < PACKET_LEN {
        return Err(ParseError::Truncated(Layer::Arp));
    }
    match read_u16(packet, 6).ok_or(ParseError::Truncated(Layer::Arp))? {
        0 => Err(ParseError::BadArpOperation),
        op => Ok(op),
    }
}
