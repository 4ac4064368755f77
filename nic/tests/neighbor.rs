//! Neighbour messages: ARP and IPv6 neighbour discovery as the steering sees them, and the
//! learning copies the other threads get, checked against smoltcp's own parser (an independent
//! implementation of RFC 826 and RFC 4861).

use flowsteer_nic::wire::{
    classify, make_learning_copy, neighbor_message, Classified, UnkeyedReason, ARP_REPLY,
    ARP_REQUEST, NEIGHBOR_ADVERT, NEIGHBOR_SOLICIT,
};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv4Address, Ipv6Address, Ipv6Packet,
    Ipv6Repr, NdiscNeighborFlags, NdiscRepr, RawHardwareAddress,
};

const CLIENT_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x22]);
const CLIENT_IP: Ipv6Address = Ipv6Address::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
const ENGINE_IP: Ipv6Address = Ipv6Address::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

/// An Ethernet frame carrying `icmp` from `src` to `dst` with hop limit 255.
fn icmpv6_frame(src: Ipv6Address, dst: Ipv6Address, icmp: &Icmpv6Repr<'_>) -> Vec<u8> {
    let ip = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp.buffer_len(),
        hop_limit: 255,
    };
    let eth = EthernetRepr {
        src_addr: CLIENT_MAC,
        dst_addr: EthernetAddress([0x33, 0x33, 0xff, 0, 0, 1]),
        ethertype: EthernetProtocol::Ipv6,
    };
    let mut frame = vec![0; eth.buffer_len() + ip.buffer_len() + icmp.buffer_len()];
    let mut eth_frame = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.emit(&mut eth_frame);
    let mut ip_packet = Ipv6Packet::new_unchecked(eth_frame.payload_mut());
    ip.emit(&mut ip_packet);
    let mut icmp_packet = Icmpv6Packet::new_unchecked(ip_packet.payload_mut());
    icmp.emit(
        &src,
        &dst,
        &mut icmp_packet,
        &ChecksumCapabilities::default(),
    );
    frame
}

/// The solicited-node multicast address of `ip` (RFC 4291 §2.7.1): ff02::1:ffXX:XXXX.
fn solicited_node(ip: Ipv6Address) -> Ipv6Address {
    let o = ip.octets();
    Ipv6Address::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

fn solicitation(lladdr: Option<EthernetAddress>) -> Vec<u8> {
    let repr = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
        target_addr: ENGINE_IP,
        lladdr: lladdr.map(RawHardwareAddress::from),
    });
    icmpv6_frame(CLIENT_IP, solicited_node(ENGINE_IP), &repr)
}

fn advertisement() -> Vec<u8> {
    let repr = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
        flags: NdiscNeighborFlags::SOLICITED,
        target_addr: CLIENT_IP,
        lladdr: Some(RawHardwareAddress::from(CLIENT_MAC)),
    });
    icmpv6_frame(CLIENT_IP, ENGINE_IP, &repr)
}

/// smoltcp's reading of the ICMPv6 message in `frame`, with its checksum verified.
fn parse_ndisc(frame: &[u8]) -> (Ipv6Repr, NdiscRepr<'_>) {
    let eth = EthernetFrame::new_checked(frame).expect("ethernet");
    let ip_packet = Ipv6Packet::new_checked(eth.payload()).expect("ipv6");
    let ip = Ipv6Repr::parse(&ip_packet).expect("ipv6 repr");
    let icmp_packet = Icmpv6Packet::new_checked(ip_packet.payload()).expect("icmpv6");
    assert!(
        icmp_packet.verify_checksum(&ip.src_addr, &ip.dst_addr),
        "the ICMPv6 checksum must hold"
    );
    let repr = Icmpv6Repr::parse(
        &ip.src_addr,
        &ip.dst_addr,
        &icmp_packet,
        &ChecksumCapabilities::default(),
    )
    .expect("icmpv6 repr");
    match repr {
        Icmpv6Repr::Ndisc(ndisc) => (ip, ndisc),
        other => panic!("not neighbour discovery: {other:?}"),
    }
}

#[test]
fn neighbor_solicitations_and_advertisements_are_recognised() {
    let unsupported = Ok(Classified::Unkeyed(UnkeyedReason::UnsupportedL4));
    // The classifier leaves ICMPv6 unkeyed; `neighbor_message` tells neighbour discovery apart.
    let asked = solicitation(Some(CLIENT_MAC));
    assert_eq!(classify(&asked), unsupported);
    assert_eq!(neighbor_message(&asked), Some(NEIGHBOR_SOLICIT));
    let told = advertisement();
    assert_eq!(classify(&told), unsupported);
    assert_eq!(neighbor_message(&told), Some(NEIGHBOR_ADVERT));
    // Other ICMPv6 (an echo request) is none.
    let echo = Icmpv6Repr::EchoRequest {
        ident: 1,
        seq_no: 1,
        data: b"ping",
    };
    let echo = icmpv6_frame(CLIENT_IP, ENGINE_IP, &echo);
    assert_eq!(classify(&echo), unsupported);
    assert_eq!(neighbor_message(&echo), None);
    // A solicitation cut before its target address is none either.
    let whole = solicitation(None);
    assert_eq!(neighbor_message(&whole[..whole.len() - 4]), None);
}

#[test]
fn a_solicitation_becomes_an_advertisement_of_its_sender() {
    let mut copy = solicitation(Some(CLIENT_MAC));
    assert!(make_learning_copy(&mut copy));
    assert_eq!(neighbor_message(&copy), Some(NEIGHBOR_ADVERT));
    let (ip, ndisc) = parse_ndisc(&copy);
    assert_eq!(ip.src_addr, CLIENT_IP, "the sender stays the source");
    assert_eq!(ip.hop_limit, 255);
    match ndisc {
        NdiscRepr::NeighborAdvert {
            flags,
            target_addr,
            lladdr,
        } => {
            assert_eq!(flags, NdiscNeighborFlags::OVERRIDE);
            assert_eq!(target_addr, ENGINE_IP);
            assert_eq!(lladdr, Some(RawHardwareAddress::from(CLIENT_MAC)));
        }
        other => panic!("expected an advertisement, got {other:?}"),
    }
}

#[test]
fn advertisements_are_copied_unchanged_and_nothing_else_is_rewritten() {
    let original = advertisement();
    let mut copy = original.clone();
    assert!(make_learning_copy(&mut copy));
    assert_eq!(copy, original);

    // Duplicate address detection: no source link-layer address, nothing to learn.
    let original = solicitation(None);
    let mut copy = original.clone();
    assert!(!make_learning_copy(&mut copy));
    assert_eq!(copy, original);

    // A TCP or malformed frame is left alone.
    let mut junk = vec![0u8; 20];
    assert!(!make_learning_copy(&mut junk));
    assert_eq!(junk, vec![0u8; 20]);
}

#[test]
fn an_arp_request_becomes_a_reply_and_a_reply_stays_one() {
    let request = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: CLIENT_MAC,
        source_protocol_addr: Ipv4Address::new(198, 18, 0, 2),
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: Ipv4Address::new(198, 18, 0, 1),
    };
    let eth = EthernetRepr {
        src_addr: CLIENT_MAC,
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    let mut frame = vec![0; eth.buffer_len() + request.buffer_len()];
    let mut eth_frame = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.emit(&mut eth_frame);
    request.emit(&mut ArpPacket::new_unchecked(eth_frame.payload_mut()));
    assert_eq!(classify(&frame), Ok(Classified::Arp { op: ARP_REQUEST }));

    assert!(make_learning_copy(&mut frame));
    assert_eq!(classify(&frame), Ok(Classified::Arp { op: ARP_REPLY }));
    let eth_frame = EthernetFrame::new_checked(&frame[..]).unwrap();
    let reply = ArpRepr::parse(&ArpPacket::new_checked(eth_frame.payload()).unwrap()).unwrap();
    let ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr,
        ..
    } = reply
    else {
        panic!("not Ethernet/IPv4 ARP: {reply:?}");
    };
    assert_eq!(operation, ArpOperation::Reply);
    assert_eq!(source_hardware_addr, CLIENT_MAC);

    let before = frame.clone();
    assert!(make_learning_copy(&mut frame));
    assert_eq!(frame, before, "a reply is copied as it is");
}
