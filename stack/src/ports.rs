//! Source ports for outbound connections under RSS balancing: the port-selection trick of Seastar
//! and gazelle. A NIC spreads a connection's return packets by the Toeplitz hash of their
//! 5-tuple, and the connecting thread chooses one element of that tuple, its own port: it picks
//! a port whose return packets hash to its own queue, so no rule and no handoff is needed.
//!
//! Cost: one Toeplitz hash per candidate; with `q` queues about `q` candidates on average.

use std::net::IpAddr;

use flowsteer_nic::rss::SoftRss;
use flowsteer_nic::wire::{FiveTuple, IP_PROTO_TCP, IP_PROTO_UDP};
use flowtable::Proto;

/// The ephemeral port range (RFC 6335) local ports are chosen from.
pub const EPHEMERAL_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// The first port of [`EPHEMERAL_PORTS`] at or after `start` (wrapping around) whose return
/// packets `rss` delivers to `queue` and that `in_use` does not refuse; `None` when there is
/// none (the queue is absent from the RETA, mixed IP versions, or every such port is in use).
pub fn rss_local_port(
    rss: &SoftRss,
    queue: u16,
    proto: Proto,
    local: IpAddr,
    remote: (IpAddr, u16),
    start: u16,
    mut in_use: impl FnMut(u16) -> bool,
) -> Option<u16> {
    let (first, last) = (*EPHEMERAL_PORTS.start(), *EPHEMERAL_PORTS.end());
    let span = u32::from(last - first) + 1;
    let offset = u32::from(start.clamp(first, last) - first);
    let proto = match proto {
        Proto::Tcp => IP_PROTO_TCP,
        Proto::Udp => IP_PROTO_UDP,
    };
    (0..span)
        .map(|i| first + ((offset + i) % span) as u16)
        .find(|&port| {
            // The return packet: from the remote end to this port.
            let tuple = match (remote.0, local) {
                (IpAddr::V4(r), IpAddr::V4(l)) => FiveTuple::v4(proto, r, remote.1, l, port),
                (IpAddr::V6(r), IpAddr::V6(l)) => FiveTuple::v6(proto, r, remote.1, l, port),
                _ => return false,
            };
            rss.queue_of_tuple(&tuple).1 == queue && !in_use(port)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowsteer_nic::rss::MICROSOFT_KEY;
    use flowsteer_nic::wire::{build_frame, FrameSpec};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn rss(queues: u16) -> SoftRss {
        SoftRss::new(&MICROSOFT_KEY, 128, queues).unwrap()
    }

    #[test]
    fn the_chosen_port_brings_the_return_packets_to_the_connecting_queue() {
        let rss = rss(4);
        let local = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
        let remote = (IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)), 80);
        for queue in 0..4 {
            let mut start = 49152;
            for _ in 0..50 {
                let port = rss_local_port(&rss, queue, Proto::Tcp, local, remote, start, |_| false)
                    .unwrap();
                let back = FiveTuple::v4(
                    IP_PROTO_TCP,
                    Ipv4Addr::new(198, 18, 0, 2),
                    80,
                    Ipv4Addr::new(198, 18, 0, 1),
                    port,
                );
                assert_eq!(rss.queue_of_tuple(&back).1, queue);
                start = port.wrapping_add(1).max(49152);
            }
        }
    }

    #[test]
    fn a_port_in_use_is_skipped_and_the_range_wraps() {
        let rss = rss(2);
        let local = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        let remote = (
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
            443,
        );
        let first = rss_local_port(&rss, 1, Proto::Udp, local, remote, 65535, |_| false).unwrap();
        let second =
            rss_local_port(&rss, 1, Proto::Udp, local, remote, 65535, |p| p == first).unwrap();
        assert_ne!(first, second);
        assert!(EPHEMERAL_PORTS.contains(&second));
    }

    #[test]
    fn impossible_requests_find_nothing() {
        let rss = rss(2);
        let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        // A queue the RETA does not hold, mixed IP versions, every port in use.
        assert_eq!(
            rss_local_port(&rss, 7, Proto::Tcp, v4, (v4, 1), 0, |_| false),
            None
        );
        assert_eq!(
            rss_local_port(&rss, 0, Proto::Tcp, v4, (v6, 1), 0, |_| false),
            None
        );
        assert_eq!(
            rss_local_port(&rss, 0, Proto::Tcp, v4, (v4, 1), 0, |_| true),
            None
        );
    }

    #[test]
    fn the_tuple_hash_is_the_one_the_nic_computes_on_the_frame() {
        // The choice is only right if hashing the tuple equals hashing the frame the NIC sees.
        let rss = rss(4);
        let local = Ipv4Addr::new(198, 18, 0, 1);
        let remote = Ipv4Addr::new(198, 18, 0, 2);
        let port = rss_local_port(
            &rss,
            3,
            Proto::Tcp,
            IpAddr::V4(local),
            (IpAddr::V4(remote), 8080),
            50000,
            |_| false,
        )
        .unwrap();
        let spec = FrameSpec {
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: [2, 0, 0, 0, 0, 1],
            vlan: None,
            tuple: FiveTuple::v4(IP_PROTO_TCP, remote, 8080, local, port),
            tcp_flags: 0x12,
            payload: b"",
        };
        let mut frame = [0u8; 128];
        let len = build_frame(&mut frame, &spec).unwrap();
        assert_eq!(rss.queue_of(&frame[..len]).1, 3);
    }
}
