//! The generator's tuple space: which remote client and source port flow index i uses.
//!
//! Remote clients (packet sources) are 198.18.0.0/15 minus the port's own IPv4 address, and
//! 2001:db8:1::/48 minus the port's own IPv6 address; their ephemeral source ports are
//! 1024..=65535. Index i of a family maps to (client i / 64512, port 1024 + i % 64512): distinct
//! indices give distinct (client, port) pairs, so a tuple is never reused as long as every index is
//! handed out once. Mapping an index is a division and an add: O(1), no allocation.

use std::net::{Ipv4Addr, Ipv6Addr};

use flowsteer_nic::wire::FiveTuple;

/// First ephemeral source port.
const EPHEMERAL_FIRST: u16 = 1024;
/// Source ports per client address.
const PORTS_PER_CLIENT: u64 = (u16::MAX - EPHEMERAL_FIRST) as u64 + 1;
/// 198.18.0.0/15, the benchmarking range of RFC 2544.
const CLIENT_V4_BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);
const CLIENT_V4_PREFIX_LEN: u32 = 15;
/// 2001:db8:1::/48, inside the documentation prefix.
const CLIENT_V6_BASE: u128 = 0x2001_0db8_0001_u128 << 80;
const CLIENT_V6_PREFIX_LEN: u32 = 48;

/// The MAC address of the simulated remote side: locally administered, unicast.
pub(crate) const CLIENT_MAC: [u8; 6] = [0x02, 0x46, 0x53, 0x47, 0x45, 0x4e];

/// IPv4 or IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
}

/// The client addresses and ports of both families, with the port's own addresses left out.
#[derive(Clone, Debug)]
pub(crate) struct TupleSpace {
    local_v4: Ipv4Addr,
    local_v6: Ipv6Addr,
    /// Offset of the local IPv4 address inside the client range, if it lies there.
    v4_hole: Option<u128>,
    v6_hole: Option<u128>,
    v4_clients: u128,
    v6_clients: u128,
}

impl TupleSpace {
    /// The space of clients talking to `local_v4` / `local_v6`.
    pub(crate) fn new(local_v4: Ipv4Addr, local_v6: Ipv6Addr) -> Self {
        let v4_hole = offset_in(
            u128::from(u32::from(local_v4)),
            u128::from(CLIENT_V4_BASE),
            32 - CLIENT_V4_PREFIX_LEN,
        );
        let v6_hole = offset_in(
            u128::from(local_v6),
            CLIENT_V6_BASE,
            128 - CLIENT_V6_PREFIX_LEN,
        );
        TupleSpace {
            local_v4,
            local_v6,
            v4_hole,
            v6_hole,
            v4_clients: (1u128 << (32 - CLIENT_V4_PREFIX_LEN)) - u128::from(v4_hole.is_some()),
            v6_clients: (1u128 << (128 - CLIENT_V6_PREFIX_LEN)) - u128::from(v6_hole.is_some()),
        }
    }

    /// How many distinct (client, source port) pairs `family` has, saturated to `u64::MAX`.
    pub(crate) fn capacity(&self, family: Family) -> u64 {
        let clients = match family {
            Family::V4 => self.v4_clients,
            Family::V6 => self.v6_clients,
        };
        u64::try_from(clients.saturating_mul(u128::from(PORTS_PER_CLIENT))).unwrap_or(u64::MAX)
    }

    /// The wire tuple (client → local) of index `index` of `family`; `None` past the capacity.
    pub(crate) fn tuple(
        &self,
        family: Family,
        proto: u8,
        index: u64,
        dst_port: u16,
    ) -> Option<FiveTuple> {
        if index >= self.capacity(family) {
            return None;
        }
        let client = u128::from(index / PORTS_PER_CLIENT);
        let src_port = EPHEMERAL_FIRST + (index % PORTS_PER_CLIENT) as u16;
        Some(match family {
            Family::V4 => {
                let offset = skip_hole(client, self.v4_hole);
                let src = Ipv4Addr::from(CLIENT_V4_BASE + u32::try_from(offset).ok()?);
                FiveTuple::v4(proto, src, src_port, self.local_v4, dst_port)
            }
            Family::V6 => {
                let src = Ipv6Addr::from(CLIENT_V6_BASE + skip_hole(client, self.v6_hole));
                FiveTuple::v6(proto, src, src_port, self.local_v6, dst_port)
            }
        })
    }
}

/// Offset of `addr` in the prefix starting at `base` with `host_bits` host bits, if inside.
fn offset_in(addr: u128, base: u128, host_bits: u32) -> Option<u128> {
    let offset = addr.checked_sub(base)?;
    (offset >> host_bits == 0).then_some(offset)
}

fn skip_hole(client: u128, hole: Option<u128>) -> u128 {
    match hole {
        Some(hole) if client >= hole => client + 1,
        _ => client,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowsteer_nic::wire::{IpPair, IP_PROTO_TCP, IP_PROTO_UDP};
    use std::collections::HashSet;

    fn space() -> TupleSpace {
        TupleSpace::new(
            Ipv4Addr::new(198, 18, 0, 1),
            Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 5),
        )
    }

    #[test]
    fn sequential_indices_walk_ports_then_clients() {
        let s = space();
        let first = s.tuple(Family::V4, IP_PROTO_TCP, 0, 80).expect("in range");
        assert_eq!(
            first.ip,
            IpPair::V4 {
                src: [198, 18, 0, 0],
                dst: [198, 18, 0, 1]
            }
        );
        assert_eq!(
            (first.src_port, first.dst_port, first.proto),
            (1024, 80, IP_PROTO_TCP)
        );
        let last_port = s
            .tuple(Family::V4, IP_PROTO_UDP, PORTS_PER_CLIENT - 1, 80)
            .expect("in range");
        assert_eq!(last_port.src_port, 65535);
        // Client 1 would be the local address 198.18.0.1: skipped.
        let second_client = s
            .tuple(Family::V4, IP_PROTO_TCP, PORTS_PER_CLIENT, 80)
            .expect("in range");
        assert_eq!(
            second_client.ip,
            IpPair::V4 {
                src: [198, 18, 0, 2],
                dst: [198, 18, 0, 1]
            }
        );
        assert_eq!(second_client.src_port, 1024);
    }

    #[test]
    fn v4_capacity_ends_at_the_top_of_the_range() {
        let s = space();
        let capacity = s.capacity(Family::V4);
        assert_eq!(capacity, (131_072 - 1) * 64_512);
        let top = s
            .tuple(Family::V4, IP_PROTO_TCP, capacity - 1, 1)
            .expect("last index");
        assert_eq!(
            top.ip,
            IpPair::V4 {
                src: [198, 19, 255, 255],
                dst: [198, 18, 0, 1]
            }
        );
        assert_eq!(s.tuple(Family::V4, IP_PROTO_TCP, capacity, 1), None);

        let outside = TupleSpace::new(Ipv4Addr::new(10, 0, 0, 1), Ipv6Addr::LOCALHOST);
        assert_eq!(outside.capacity(Family::V4), 131_072 * 64_512);
    }

    #[test]
    fn v6_skips_the_local_address_and_never_repeats() {
        let s = space();
        let mut seen = HashSet::new();
        for index in (0..64_512 * 8).step_by(997) {
            let t = s
                .tuple(Family::V6, IP_PROTO_TCP, index, 9)
                .expect("v6 space is vast");
            let IpPair::V6 { src, dst } = t.ip else {
                panic!("family")
            };
            assert_ne!(src, dst, "the local address is never a client");
            assert_eq!(&src[..6], &[0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01]);
            assert!(seen.insert((src, t.src_port)));
        }
        let t = s
            .tuple(Family::V6, IP_PROTO_TCP, 5 * PORTS_PER_CLIENT, 9)
            .expect("in range");
        assert_eq!(
            t.ip.src_ip(),
            "2001:db8:1::6"
                .parse::<std::net::IpAddr>()
                .expect("literal")
        );
        assert_eq!(s.capacity(Family::V6), u64::MAX);
    }
}
