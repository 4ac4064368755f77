//! Keys the unit tests of the table's files share.

use std::net::Ipv6Addr;

use crate::key::{FlowKey, Proto, ThreadId};

/// IPv4 key `i`: clients spread over the addresses and ports of one server port.
pub(crate) fn key(i: u32) -> FlowKey {
    FlowKey::from_v4_bytes(
        Proto::Tcp,
        [198, 18, (i >> 24) as u8, 1],
        8000,
        i.to_be_bytes(),
        (i % 60_000) as u16,
    )
}

/// IPv6 key `i`: clients numbered from one prefix.
pub(crate) fn v6_key(i: u32) -> FlowKey {
    FlowKey::v6(
        Proto::Udp,
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
        443,
        Ipv6Addr::from(0x2001_0db8_00aa_0000_0000_0000_0000_0000 | u128::from(i)),
        (i % 60_000) as u16,
    )
}

/// Every third key IPv6, the others IPv4.
pub(crate) fn mixed_key(i: u32) -> FlowKey {
    if i.is_multiple_of(3) {
        v6_key(i)
    } else {
        key(i)
    }
}

/// A spread of owners, so that a torn or misplaced owner shows.
pub(crate) fn owner_of(i: u32) -> ThreadId {
    (i.wrapping_mul(0x9E37_79B9) >> 16) as ThreadId
}
