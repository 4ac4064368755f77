//! Flow keys from what the stack sees: a received packet's 5-tuple, or a socket's endpoints.
//! A key's local side is this host (a received packet's destination).

use flowsteer_nic::wire::{FiveTuple, IpPair};
use flowtable::{FlowKey, Proto};
use smoltcp::wire::{IpAddress, IpEndpoint};

/// The key of a received packet's flow, or `None` when its protocol is neither TCP nor UDP.
#[inline]
pub fn flow_key(t: &FiveTuple) -> Option<FlowKey> {
    let proto = Proto::from_ip_proto(t.proto)?;
    Some(match t.ip {
        IpPair::V4 { src, dst } => FlowKey::from_v4_bytes(proto, dst, t.dst_port, src, t.src_port),
        IpPair::V6 { src, dst } => FlowKey::from_v6_bytes(proto, dst, t.dst_port, src, t.src_port),
    })
}

/// The key of a connection between `local` and `remote`, or `None` when their IP versions differ.
pub fn endpoint_key(proto: Proto, local: IpEndpoint, remote: IpEndpoint) -> Option<FlowKey> {
    match (local.addr, remote.addr) {
        (IpAddress::Ipv4(l), IpAddress::Ipv4(r)) => {
            Some(FlowKey::v4(proto, l, local.port, r, remote.port))
        }
        (IpAddress::Ipv6(l), IpAddress::Ipv6(r)) => {
            Some(FlowKey::v6(proto, l, local.port, r, remote.port))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn a_received_packet_and_its_socket_have_the_same_key() {
        let client = Ipv4Addr::new(198, 18, 0, 2);
        let server = Ipv4Addr::new(198, 18, 0, 1);
        let tuple = FiveTuple::v4(6, client, 40000, server, 80);
        let from_packet = flow_key(&tuple).unwrap();
        let from_socket = endpoint_key(
            Proto::Tcp,
            IpEndpoint::new(IpAddress::Ipv4(server), 80),
            IpEndpoint::new(IpAddress::Ipv4(client), 40000),
        )
        .unwrap();
        assert_eq!(from_packet, from_socket);
        assert_eq!(from_packet.local_port(), 80);
        assert_eq!(from_packet.remote_port(), 40000);
    }

    #[test]
    fn mixed_versions_and_other_protocols_have_no_key() {
        let v4 = IpEndpoint::new(IpAddress::Ipv4(Ipv4Addr::LOCALHOST), 1);
        let v6 = IpEndpoint::new(IpAddress::Ipv6(std::net::Ipv6Addr::LOCALHOST), 1);
        assert!(endpoint_key(Proto::Tcp, v4, v6).is_none());
        let icmp = FiveTuple::v4(1, Ipv4Addr::LOCALHOST, 0, Ipv4Addr::LOCALHOST, 0);
        assert!(flow_key(&icmp).is_none());
    }
}
