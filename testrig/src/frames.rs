//! Frames a client host sends that the engine's frame builder (`flowsteer_nic::wire`, TCP and
//! UDP) does not make: ARP requests, IPv6 neighbour solicitations, ICMP echo requests, TCP
//! segments with every header field chosen ([`tcp_v4`], for hand-made peers: floods, forged
//! resets, odd windows) and their parser ([`parse_tcp_v4`]); and [`describe`], which puts a frame a server sent into words after smoltcp's parsers accepted
//! it, checksums included, so a test compares what was sent with what should have been.
//! Built and parsed with smoltcp's wire types: an implementation other than the engine's own.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpAddress, IpProtocol,
    Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, NdiscRepr, RawHardwareAddress, TcpPacket,
    TcpSeqNumber, UdpPacket,
};

/// A frame from `src` to `dst` with `payload_len` bytes after the Ethernet header, which `fill`
/// writes; padded with zeros to the 60-byte minimum.
pub fn ethernet(
    src: [u8; 6],
    dst: [u8; 6],
    ethertype: u16,
    payload_len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let repr = EthernetRepr {
        src_addr: EthernetAddress(src),
        dst_addr: EthernetAddress(dst),
        ethertype: EthernetProtocol::from(ethertype),
    };
    let mut buf = vec![0u8; (repr.buffer_len() + payload_len).max(60)];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    repr.emit(&mut frame);
    fill(&mut frame.payload_mut()[..payload_len]);
    buf
}

/// The broadcast ARP request of the host `mac`, `ip` for `target`.
pub fn arp_request(mac: [u8; 6], ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(mac),
        source_protocol_addr: ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    ethernet(mac, [0xff; 6], 0x0806, arp.buffer_len(), |p| {
        arp.emit(&mut ArpPacket::new_unchecked(p))
    })
}

/// The neighbour solicitation of the host `mac`, `ip` for `target`, to the target's
/// solicited-node group, with the host's link address.
pub fn neighbor_solicitation(mac: [u8; 6], ip: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    let g = group.octets();
    let icmp = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
        target_addr: target,
        lladdr: Some(RawHardwareAddress::from_bytes(&mac)),
    });
    icmpv6(
        mac,
        [0x33, 0x33, g[12], g[13], g[14], g[15]],
        ip,
        group,
        255,
        icmp,
    )
}

/// An ICMP echo request from the host `mac`, `src` to `dst_mac`, `dst`.
pub fn echo_request(
    mac: [u8; 6],
    dst_mac: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
    data: &[u8],
) -> Vec<u8> {
    let (ident, seq_no) = (0x1234, 1);
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let icmp = Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            };
            let ip = Ipv4Repr {
                src_addr: src,
                dst_addr: dst,
                next_header: IpProtocol::Icmp,
                payload_len: icmp.buffer_len(),
                hop_limit: 64,
            };
            ethernet(
                mac,
                dst_mac,
                0x0800,
                ip.buffer_len() + icmp.buffer_len(),
                |p| {
                    let caps = ChecksumCapabilities::default();
                    let mut packet = Ipv4Packet::new_unchecked(p);
                    ip.emit(&mut packet, &caps);
                    icmp.emit(
                        &mut Icmpv4Packet::new_unchecked(packet.payload_mut()),
                        &caps,
                    );
                },
            )
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let icmp = Icmpv6Repr::EchoRequest {
                ident,
                seq_no,
                data,
            };
            icmpv6(mac, dst_mac, src, dst, 64, icmp)
        }
        _ => panic!("an echo request from {src} to {dst}: one address family"),
    }
}

fn icmpv6(
    mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    icmp: Icmpv6Repr<'_>,
) -> Vec<u8> {
    let ip = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp.buffer_len(),
        hop_limit,
    };
    ethernet(
        mac,
        dst_mac,
        0x86dd,
        ip.buffer_len() + icmp.buffer_len(),
        |p| {
            let mut packet = Ipv6Packet::new_unchecked(p);
            ip.emit(&mut packet);
            icmp.emit(
                &src,
                &dst,
                &mut Icmpv6Packet::new_unchecked(packet.payload_mut()),
                &ChecksumCapabilities::default(),
            );
        },
    )
}

/// TCP flag bits of [`TcpSegment::flags`].
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

/// A TCP segment over IPv4, every field as the sender chose it (no options).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpSegment {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub seq: u32,
    /// The acknowledgement number; sent with [`TCP_ACK`] set in `flags`.
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub payload: Vec<u8>,
}

/// `segment` from the host `mac` to `dst_mac`, with valid checksums.
pub fn tcp_v4(mac: [u8; 6], dst_mac: [u8; 6], segment: &TcpSegment) -> Vec<u8> {
    const HEADER: usize = 20;
    let ip = Ipv4Repr {
        src_addr: *segment.src.ip(),
        dst_addr: *segment.dst.ip(),
        next_header: IpProtocol::Tcp,
        payload_len: HEADER + segment.payload.len(),
        hop_limit: 64,
    };
    ethernet(
        mac,
        dst_mac,
        0x0800,
        ip.buffer_len() + ip.payload_len,
        |p| {
            let mut packet = Ipv4Packet::new_unchecked(p);
            ip.emit(&mut packet, &ChecksumCapabilities::default());
            let mut tcp = TcpPacket::new_unchecked(packet.payload_mut());
            tcp.set_src_port(segment.src.port());
            tcp.set_dst_port(segment.dst.port());
            tcp.set_seq_number(TcpSeqNumber(segment.seq as i32));
            tcp.set_ack_number(TcpSeqNumber(segment.ack as i32));
            tcp.set_header_len(HEADER as u8);
            tcp.clear_flags();
            tcp.set_fin(segment.flags & TCP_FIN != 0);
            tcp.set_syn(segment.flags & TCP_SYN != 0);
            tcp.set_rst(segment.flags & TCP_RST != 0);
            tcp.set_psh(segment.flags & TCP_PSH != 0);
            tcp.set_ack(segment.flags & TCP_ACK != 0);
            tcp.set_window_len(segment.window);
            tcp.set_urgent_at(0);
            tcp.payload_mut().copy_from_slice(&segment.payload);
            tcp.fill_checksum(
                &IpAddress::Ipv4(*segment.src.ip()),
                &IpAddress::Ipv4(*segment.dst.ip()),
            );
        },
    )
}

/// The TCP segment over IPv4 `frame` carries, if it is one with valid checksums.
pub fn parse_tcp_v4(frame: &[u8]) -> Option<TcpSegment> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let packet = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let ip = Ipv4Repr::parse(&packet, &ChecksumCapabilities::default()).ok()?;
    if ip.next_header != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(&packet.payload()[..ip.payload_len]).ok()?;
    let (s, d) = (IpAddress::Ipv4(ip.src_addr), IpAddress::Ipv4(ip.dst_addr));
    if !tcp.verify_checksum(&s, &d) {
        return None;
    }
    let flags = [
        (tcp.fin(), TCP_FIN),
        (tcp.syn(), TCP_SYN),
        (tcp.rst(), TCP_RST),
        (tcp.psh(), TCP_PSH),
        (tcp.ack(), TCP_ACK),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .fold(0, |all, (_, bit)| all | bit);
    Some(TcpSegment {
        src: SocketAddrV4::new(ip.src_addr, tcp.src_port()),
        dst: SocketAddrV4::new(ip.dst_addr, tcp.dst_port()),
        seq: tcp.seq_number().0 as u32,
        ack: tcp.ack_number().0 as u32,
        flags,
        window: tcp.window_len(),
        payload: tcp.payload().to_vec(),
    })
}

/// `frame` in words, e.g. `tcp 198.18.0.1:7000 > 198.18.0.2:40000 SA`, `arp Reply 198.18.0.1
/// is-at 02-70-63-61-70-00 > 198.18.0.2`, `icmp echo reply 198.18.0.1 > 198.18.0.2 "ping"`:
/// what a test compares. A frame a parser refuses (a bad checksum among others) is `bad ...`.
/// The Ethernet addresses are left out but ARP's and neighbour discovery's link address.
pub fn describe(frame: &[u8]) -> String {
    let caps = ChecksumCapabilities::default();
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return format!("{} bytes: not Ethernet", frame.len());
    };
    match eth.ethertype() {
        EthernetProtocol::Arp => {
            match ArpPacket::new_checked(eth.payload()).and_then(|p| ArpRepr::parse(&p)) {
                Ok(ArpRepr::EthernetIpv4 {
                    operation,
                    source_hardware_addr,
                    source_protocol_addr,
                    target_protocol_addr,
                    ..
                }) => format!(
                    "arp {operation:?} {source_protocol_addr} is-at {source_hardware_addr} \
                     > {target_protocol_addr}"
                ),
                Ok(other) => format!("arp {other:?}"),
                Err(_) => "bad arp".to_owned(),
            }
        }
        EthernetProtocol::Ipv4 => match Ipv4Packet::new_checked(eth.payload())
            .and_then(|p| Ipv4Repr::parse(&p, &caps).map(|r| (p, r)))
        {
            Ok((packet, ip)) => transport(
                IpAddr::V4(ip.src_addr),
                IpAddr::V4(ip.dst_addr),
                ip.next_header,
                packet.payload(),
            ),
            Err(_) => "bad ipv4".to_owned(),
        },
        EthernetProtocol::Ipv6 => match Ipv6Packet::new_checked(eth.payload())
            .and_then(|p| Ipv6Repr::parse(&p).map(|r| (p, r)))
        {
            Ok((packet, ip)) => transport(
                IpAddr::V6(ip.src_addr),
                IpAddr::V6(ip.dst_addr),
                ip.next_header,
                packet.payload(),
            ),
            Err(_) => "bad ipv6".to_owned(),
        },
        other => format!("ethertype {other}"),
    }
}

fn transport(src: IpAddr, dst: IpAddr, proto: IpProtocol, payload: &[u8]) -> String {
    let caps = ChecksumCapabilities::default();
    let (s, d) = (IpAddress::from(src), IpAddress::from(dst));
    match proto {
        IpProtocol::Tcp => match TcpPacket::new_checked(payload) {
            Ok(tcp) if tcp.verify_checksum(&s, &d) => {
                let flags: String = [
                    (tcp.syn(), 'S'),
                    (tcp.rst(), 'R'),
                    (tcp.fin(), 'F'),
                    (tcp.psh(), 'P'),
                    (tcp.ack(), 'A'),
                ]
                .iter()
                .filter_map(|&(on, c)| on.then_some(c))
                .collect();
                format!(
                    "tcp {} > {} {flags}",
                    SocketAddr::new(src, tcp.src_port()),
                    SocketAddr::new(dst, tcp.dst_port())
                )
            }
            _ => "bad tcp".to_owned(),
        },
        IpProtocol::Udp => match UdpPacket::new_checked(payload) {
            Ok(udp) if udp.verify_checksum(&s, &d) => format!(
                "udp {} > {} {:?}",
                SocketAddr::new(src, udp.src_port()),
                SocketAddr::new(dst, udp.dst_port()),
                String::from_utf8_lossy(udp.payload())
            ),
            _ => "bad udp".to_owned(),
        },
        IpProtocol::Icmp => {
            match Icmpv4Packet::new_checked(payload).and_then(|p| Icmpv4Repr::parse(&p, &caps)) {
                Ok(Icmpv4Repr::EchoReply { data, .. }) => format!(
                    "icmp echo reply {src} > {dst} {:?}",
                    String::from_utf8_lossy(data)
                ),
                Ok(Icmpv4Repr::DstUnreachable { reason, data, .. }) => {
                    format!("icmp {reason} {src} > {dst} for {}", quoted_udp(data))
                }
                Ok(other) => format!("icmp {other:?}"),
                Err(_) => "bad icmp".to_owned(),
            }
        }
        IpProtocol::Icmpv6 => {
            let (IpAddr::V6(src6), IpAddr::V6(dst6)) = (src, dst) else {
                return "icmpv6 over ipv4".to_owned();
            };
            match Icmpv6Packet::new_checked(payload)
                .and_then(|p| Icmpv6Repr::parse(&src6, &dst6, &p, &caps))
            {
                Ok(Icmpv6Repr::EchoReply { data, .. }) => format!(
                    "icmpv6 echo reply {src} > {dst} {:?}",
                    String::from_utf8_lossy(data)
                ),
                Ok(Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
                    target_addr,
                    lladdr,
                    ..
                })) => {
                    let link = lladdr.map_or("nothing".to_owned(), |l| {
                        EthernetAddress::from_bytes(l.as_bytes()).to_string()
                    });
                    format!("ndp advert {target_addr} is-at {link} {src} > {dst}")
                }
                Ok(Icmpv6Repr::DstUnreachable { reason, data, .. }) => {
                    format!("icmpv6 {reason} {src} > {dst} for {}", quoted_udp(data))
                }
                Ok(other) => format!("icmpv6 {other:?}"),
                Err(_) => "bad icmpv6".to_owned(),
            }
        }
        other => format!("ip protocol {other}"),
    }
}

/// The UDP header an ICMP error quotes, as "udp port N".
fn quoted_udp(data: &[u8]) -> String {
    match UdpPacket::new_checked(data) {
        Ok(udp) => format!("udp port {}", udp.dst_port()),
        Err(_) => format!("{} quoted bytes", data.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

    #[test]
    fn built_frames_parse_back_as_what_they_are() {
        let target = Ipv4Addr::new(198, 18, 0, 1);
        let arp = arp_request(MAC, IP, target);
        assert_eq!(arp.len(), 60);
        assert_eq!(
            describe(&arp),
            "arp Request 198.18.0.2 is-at 02-00-00-00-00-02 > 198.18.0.1"
        );
        let ns = neighbor_solicitation(MAC, IP6, "2001:db8::1".parse().unwrap());
        assert_eq!(&ns[..6], &[0x33, 0x33, 0xff, 0, 0, 1]);
        assert!(
            describe(&ns).starts_with("icmpv6 Ndisc(NeighborSolicit"),
            "{}",
            describe(&ns)
        );
        let ping = echo_request(MAC, [2; 6], IpAddr::V4(IP), IpAddr::V4(target), b"hi");
        assert!(describe(&ping).starts_with("icmp EchoRequest"));
    }

    #[test]
    fn a_tcp_segment_parses_back_field_for_field() {
        let segment = TcpSegment {
            src: SocketAddrV4::new(IP, 40000),
            dst: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 7),
            seq: 0xfffe_0001,
            ack: 77,
            flags: TCP_ACK | TCP_PSH,
            window: 1,
            payload: b"odd".to_vec(),
        };
        let frame = tcp_v4(MAC, [2; 6], &segment);
        assert_eq!(parse_tcp_v4(&frame), Some(segment));
        assert_eq!(describe(&frame), "tcp 198.18.0.2:40000 > 198.18.0.1:7 PA");
    }

    #[test]
    fn a_frame_with_a_bad_checksum_is_named_bad() {
        let mut ping = echo_request(
            MAC,
            [2; 6],
            IpAddr::V6(IP6),
            IpAddr::V6("2001:db8::1".parse().unwrap()),
            b"hi",
        );
        assert!(describe(&ping).starts_with("icmpv6 EchoRequest"));
        let last = ping.len() - 1;
        ping[last] ^= 0xff;
        assert_eq!(describe(&ping), "bad icmpv6");
    }
}
