//! `nic::wire` through its public API: build → classify round trips with independently verified
//! checksums, every truncation point, every `ParseError` provoked by a crafted frame, fragments,
//! IPv6 extension chains, ARP, and the frame builder's errors and payload patching.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use flowsteer_nic::wire::{
    build_frame, classify, dissect, layout_of, BuildError, Classified, FiveTuple, FrameLayout,
    FrameSpec, IpPair, Layer, ParseError, UnkeyedReason, ARP_REPLY, ARP_REQUEST,
    ETHERNET_HEADER_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_QINQ, ETHERTYPE_VLAN,
    IP_PROTO_TCP, IP_PROTO_UDP, MAX_IPV6_EXTENSION_HEADERS, MIN_FRAME_LEN,
};
use flowsteer_nic::wire::{tcp_segment, TcpSegment};

const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const TCP_SYN_ACK: u8 = 0x12;

const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const DESTINATION_OPTIONS: u8 = 60;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

fn tuple(ipv6: bool, proto: u8) -> FiveTuple {
    if ipv6 {
        FiveTuple::v6(
            proto,
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10),
            40_001,
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
            8_000,
        )
    } else {
        FiveTuple::v4(
            proto,
            Ipv4Addr::new(198, 18, 0, 10),
            40_001,
            Ipv4Addr::new(198, 18, 0, 1),
            8_000,
        )
    }
}

fn spec(ipv6: bool, proto: u8, vlan: Option<u16>, payload: &[u8]) -> FrameSpec<'_> {
    FrameSpec {
        src_mac: SRC_MAC,
        dst_mac: DST_MAC,
        vlan,
        tuple: tuple(ipv6, proto),
        tcp_flags: if proto == IP_PROTO_TCP {
            TCP_SYN_ACK
        } else {
            0
        },
        payload,
    }
}

fn build(spec: &FrameSpec<'_>) -> (Vec<u8>, FrameLayout) {
    let mut buf = vec![0xa5; 2048];
    let len = build_frame(&mut buf, spec).expect("spec builds");
    buf.truncate(len);
    (buf, layout_of(spec))
}

fn every_combination() -> Vec<(bool, u8, Option<u16>)> {
    let mut all = Vec::new();
    for ipv6 in [false, true] {
        for proto in [IP_PROTO_TCP, IP_PROTO_UDP] {
            for vlan in [None, Some(100)] {
                all.push((ipv6, proto, vlan));
            }
        }
    }
    all
}

/// RFC 1071 sum written out word by word, independent of the crate's implementation.
fn ones_complement_sum(pieces: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = pieces.concat();
    let mut total: u32 = 0;
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        total += u32::from(word);
        total = (total & 0xffff) + (total >> 16);
    }
    total as u16
}

fn pseudo_header(ip: &IpPair, proto: u8, l4_len: usize) -> Vec<u8> {
    let mut header = Vec::new();
    match ip {
        IpPair::V4 { src, dst } => {
            header.extend_from_slice(src);
            header.extend_from_slice(dst);
            header.extend_from_slice(&[0, proto]);
            header.extend_from_slice(&(l4_len as u16).to_be_bytes());
        }
        IpPair::V6 { src, dst } => {
            header.extend_from_slice(src);
            header.extend_from_slice(dst);
            header.extend_from_slice(&(l4_len as u32).to_be_bytes());
            header.extend_from_slice(&[0, 0, 0, proto]);
        }
    }
    header
}

/// Checks the IPv4 header checksum and the L4 checksum of a built frame by summing everything,
/// checksum field included: a valid packet sums to 0xffff.
fn assert_checksums_valid(frame: &[u8], layout: &FrameLayout, tuple: &FiveTuple) {
    let l3 = layout.l3_offset();
    let l4 = layout.l4_offset();
    if let IpPair::V4 { .. } = tuple.ip {
        assert_eq!(
            ones_complement_sum(&[&frame[l3..l4]]),
            0xffff,
            "IPv4 header"
        );
    }
    let segment = &frame[l4..layout.ip_end()];
    let pseudo = pseudo_header(&tuple.ip, tuple.proto, segment.len());
    assert_eq!(
        ones_complement_sum(&[&pseudo, segment]),
        0xffff,
        "L4 checksum"
    );
    if tuple.proto == IP_PROTO_UDP {
        assert_ne!(&segment[6..8], &[0, 0], "UDP checksum 0 means none");
    }
}

fn payload_of(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(7))
        .collect()
}

#[test]
fn round_trip_every_ip_version_protocol_and_tagging() {
    for (ipv6, proto, vlan) in every_combination() {
        for payload_len in [0, 1, 6, 7, 64, 1000] {
            let payload = payload_of(payload_len);
            let spec = spec(ipv6, proto, vlan, &payload);
            let (frame, layout) = build(&spec);
            let context = format!("ipv6={ipv6} proto={proto} vlan={vlan:?} payload={payload_len}");

            let classified = classify(&frame).unwrap_or_else(|e| panic!("{context}: {e}"));
            let Classified::Flow {
                tuple,
                tcp_flags,
                payload_offset,
            } = classified
            else {
                panic!("{context}: not a flow: {classified:?}");
            };
            assert_eq!(tuple, spec.tuple, "{context}");
            assert_eq!(tcp_flags, spec.tcp_flags, "{context}");
            assert_eq!(payload_offset, layout.payload_offset(), "{context}");
            assert_eq!(
                &frame[payload_offset..payload_offset + payload_len],
                &payload[..],
                "{context}"
            );
            assert_checksums_valid(&frame, &layout, &spec.tuple);

            assert_eq!(frame.len(), layout.frame_len(), "{context}");
            assert_eq!(frame.len(), layout.ip_end().max(MIN_FRAME_LEN), "{context}");
            assert!(
                frame[layout.ip_end()..].iter().all(|&b| b == 0),
                "{context}: padding is zeros"
            );
        }
    }
}

#[test]
fn built_headers_carry_the_documented_constants() {
    for (ipv6, proto, vlan) in every_combination() {
        let spec = spec(ipv6, proto, vlan, b"hello");
        let (frame, layout) = build(&spec);
        let l3 = layout.l3_offset();
        let l4 = layout.l4_offset();
        assert_eq!(&frame[0..6], &DST_MAC);
        assert_eq!(&frame[6..12], &SRC_MAC);
        if let Some(vid) = vlan {
            assert_eq!(&frame[12..14], &ETHERTYPE_VLAN.to_be_bytes());
            assert_eq!(u16::from_be_bytes([frame[14], frame[15]]), vid);
        }
        let l4_len = layout.ip_end() - l4;
        if ipv6 {
            assert_eq!(frame[l3] >> 4, 6);
            assert_eq!(frame[l3 + 7], 64, "hop limit");
            assert_eq!(
                u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]) as usize,
                l4_len
            );
        } else {
            assert_eq!(frame[l3], 0x45);
            assert_eq!(frame[l3 + 8], 64, "TTL");
            let total = u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]) as usize;
            assert_eq!(total, layout.ip_end() - l3, "total length excludes padding");
        }
        if proto == IP_PROTO_TCP {
            assert_eq!(&frame[l4 + 4..l4 + 12], &[0; 8], "seq and ack");
            assert_eq!(frame[l4 + 12] >> 4, 5, "data offset");
            assert_eq!(frame[l4 + 13], TCP_SYN_ACK);
            assert_eq!(u16::from_be_bytes([frame[l4 + 14], frame[l4 + 15]]), 65_535);
        } else {
            assert_eq!(
                u16::from_be_bytes([frame[l4 + 4], frame[l4 + 5]]) as usize,
                l4_len
            );
        }
    }
}

/// What a frame cut to `len` bytes must classify as.
fn expected_for_cut(
    len: usize,
    layout: &FrameLayout,
    ipv6: bool,
    proto: u8,
    vlan: bool,
) -> Option<ParseError> {
    let ip_layer = if ipv6 { Layer::Ipv6 } else { Layer::Ipv4 };
    let l4_layer = if proto == IP_PROTO_TCP {
        Layer::Tcp
    } else {
        Layer::Udp
    };
    let short_ip = if ipv6 {
        ParseError::BadIpv6PayloadLength
    } else {
        ParseError::BadIpTotalLength
    };
    if len < ETHERNET_HEADER_LEN {
        Some(ParseError::Truncated(Layer::Ethernet))
    } else if vlan && len < layout.l3_offset() {
        Some(ParseError::Truncated(Layer::Vlan))
    } else if len < layout.l4_offset() {
        Some(ParseError::Truncated(ip_layer))
    } else if len < layout.payload_offset() {
        Some(ParseError::Truncated(l4_layer))
    } else if len < layout.ip_end() {
        Some(short_ip)
    } else {
        None
    }
}

#[test]
fn every_truncation_point_reports_the_header_it_cuts() {
    for (ipv6, proto, vlan) in every_combination() {
        // A payload with padding after it (v4 UDP) and one without.
        for payload_len in [2, 40] {
            let payload = payload_of(payload_len);
            let spec = spec(ipv6, proto, vlan, &payload);
            let (frame, layout) = build(&spec);
            let whole = classify(&frame).expect("whole frame parses");
            for len in 0..=frame.len() {
                let got = classify(&frame[..len]);
                match expected_for_cut(len, &layout, ipv6, proto, vlan.is_some()) {
                    Some(error) => assert_eq!(
                        got,
                        Err(error),
                        "ipv6={ipv6} proto={proto} vlan={vlan:?} payload={payload_len} cut at {len}"
                    ),
                    None => assert_eq!(got, Ok(whole), "cut at {len} is inside the padding"),
                }
            }
        }
    }
}

fn arp_frame(op: u16) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&SRC_MAC);
    frame.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    frame.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
    frame.extend_from_slice(&op.to_be_bytes());
    frame.extend_from_slice(&SRC_MAC);
    frame.extend_from_slice(&[198, 18, 0, 10]);
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&[198, 18, 0, 1]);
    frame.resize(MIN_FRAME_LEN, 0);
    frame
}

/// Inserts a VLAN tag with TPID `tpid` right after the MAC addresses.
fn with_tag(frame: &[u8], tpid: u16, vid: u16) -> Vec<u8> {
    let mut tagged = frame[..12].to_vec();
    tagged.extend_from_slice(&tpid.to_be_bytes());
    tagged.extend_from_slice(&vid.to_be_bytes());
    tagged.extend_from_slice(&frame[12..]);
    tagged
}

#[test]
fn arp_requests_replies_and_other_operations() {
    assert_eq!(
        classify(&arp_frame(ARP_REQUEST)),
        Ok(Classified::Arp { op: ARP_REQUEST })
    );
    assert_eq!(
        classify(&arp_frame(ARP_REPLY)),
        Ok(Classified::Arp { op: ARP_REPLY })
    );
    // RARP-style operation numbers are still ARP packets; the steering decides what to do.
    assert_eq!(classify(&arp_frame(3)), Ok(Classified::Arp { op: 3 }));
    let tagged = with_tag(&arp_frame(ARP_REQUEST), ETHERTYPE_VLAN, 7);
    assert_eq!(classify(&tagged), Ok(Classified::Arp { op: ARP_REQUEST }));
    // ARP needs 28 bytes: without link padding a cut inside the addresses is a truncation.
    let unpadded = &arp_frame(ARP_REPLY)[..ETHERNET_HEADER_LEN + 28];
    assert!(classify(unpadded).is_ok());
    for len in ETHERNET_HEADER_LEN..ETHERNET_HEADER_LEN + 28 {
        assert_eq!(
            classify(&unpadded[..len]),
            Err(ParseError::Truncated(Layer::Arp)),
            "cut at {len}"
        );
    }
}

#[test]
fn unknown_ethertypes_are_unkeyed() {
    let mut lldp = arp_frame(ARP_REQUEST);
    lldp[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
    assert_eq!(
        classify(&lldp),
        Ok(Classified::Unkeyed(UnkeyedReason::UnknownEthertype))
    );
    // An 802.3 length field instead of an ethertype.
    lldp[12..14].copy_from_slice(&46u16.to_be_bytes());
    assert_eq!(
        classify(&lldp),
        Ok(Classified::Unkeyed(UnkeyedReason::UnknownEthertype))
    );
    // Three tags: the parser looks through two, the third TPID is not a known ethertype.
    let (frame, _) = build(&spec(false, IP_PROTO_UDP, Some(1), b"x"));
    let triple = with_tag(&with_tag(&frame, ETHERTYPE_QINQ, 2), ETHERTYPE_QINQ, 3);
    assert_eq!(
        classify(&triple),
        Ok(Classified::Unkeyed(UnkeyedReason::UnknownEthertype))
    );
}

#[test]
fn qinq_double_tagged_frames_are_keyed() {
    let payload = payload_of(20);
    for ipv6 in [false, true] {
        let spec = spec(ipv6, IP_PROTO_TCP, Some(200), &payload);
        let (frame, layout) = build(&spec);
        let double = with_tag(&frame, ETHERTYPE_QINQ, 0x3064);
        let dissection = dissect(&double).expect("parses");
        assert_eq!(dissection.vlan_ids().collect::<Vec<_>>(), [0x064, 200]);
        assert_eq!(dissection.vlan_tci[0], 0x3064, "PCP and DEI kept");
        assert_eq!(dissection.l3_offset, layout.l3_offset() + 4);
        assert_eq!(
            dissection.classified,
            Classified::Flow {
                tuple: spec.tuple,
                tcp_flags: TCP_SYN_ACK,
                payload_offset: layout.payload_offset() + 4,
            }
        );
    }
}

/// Sets the IPv4 fragment field (offset in 8-byte units, More Fragments flag).
fn set_ipv4_fragment(frame: &mut [u8], l3: usize, offset_units: u16, more: bool) {
    let field = offset_units | if more { 0x2000 } else { 0 };
    frame[l3 + 6..l3 + 8].copy_from_slice(&field.to_be_bytes());
}

#[test]
fn ipv4_first_fragment_is_keyed_and_later_ones_are_not() {
    for proto in [IP_PROTO_TCP, IP_PROTO_UDP] {
        let payload = payload_of(64);
        let spec = spec(false, proto, None, &payload);
        let (mut frame, layout) = build(&spec);
        let l3 = layout.l3_offset();
        set_ipv4_fragment(&mut frame, l3, 0, true);
        if proto == IP_PROTO_UDP {
            // The UDP length counts the whole datagram, longer than this first piece.
            frame[layout.l4_offset() + 4..layout.l4_offset() + 6]
                .copy_from_slice(&3000u16.to_be_bytes());
        }
        match classify(&frame) {
            Ok(Classified::Flow { tuple, .. }) => assert_eq!(tuple, spec.tuple),
            other => panic!("first fragment of proto {proto}: {other:?}"),
        }
        set_ipv4_fragment(&mut frame, l3, 185, true);
        assert_eq!(
            classify(&frame),
            Ok(Classified::Unkeyed(UnkeyedReason::NonFirstFragment))
        );
        set_ipv4_fragment(&mut frame, l3, 370, false);
        assert_eq!(
            classify(&frame),
            Ok(Classified::Unkeyed(UnkeyedReason::NonFirstFragment))
        );
        let dissection = dissect(&frame).expect("parses");
        assert_eq!(dissection.l4_offset, None, "fragment data is not a header");
    }
}

#[test]
fn ipv4_options_move_the_l4_header() {
    let payload = payload_of(12);
    let spec = spec(false, IP_PROTO_UDP, None, &payload);
    let (frame, layout) = build(&spec);
    let l3 = layout.l3_offset();
    let l4 = layout.l4_offset();
    // IHL 6: one 4-byte option word (NOP NOP NOP EOL) before the UDP header.
    let mut with_options = frame[..l4].to_vec();
    with_options.extend_from_slice(&[1, 1, 1, 0]);
    with_options.extend_from_slice(&frame[l4..layout.ip_end()]);
    with_options[l3] = 0x46;
    let total = (layout.ip_end() - l3 + 4) as u16;
    with_options[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
    assert_eq!(
        classify(&with_options),
        Ok(Classified::Flow {
            tuple: spec.tuple,
            tcp_flags: 0,
            payload_offset: layout.payload_offset() + 4,
        })
    );
    assert_eq!(
        classify(&with_options[..l3 + 22]),
        Err(ParseError::Truncated(Layer::Ipv4)),
        "cut inside the options"
    );
}

#[test]
fn tcp_options_move_the_payload() {
    let payload = payload_of(10);
    let spec = spec(true, IP_PROTO_TCP, None, &payload);
    let (frame, layout) = build(&spec);
    let l3 = layout.l3_offset();
    let l4 = layout.l4_offset();
    let mut with_options = frame[..layout.payload_offset()].to_vec();
    with_options.extend_from_slice(&[2, 4, 0x05, 0xb4, 1, 1, 1, 0]); // MSS 1460, NOPs, EOL
    with_options.extend_from_slice(&payload);
    with_options[l4 + 12] = 7 << 4;
    let payload_len = (layout.ip_end() - l4 + 8) as u16;
    with_options[l3 + 4..l3 + 6].copy_from_slice(&payload_len.to_be_bytes());
    assert_eq!(
        classify(&with_options),
        Ok(Classified::Flow {
            tuple: spec.tuple,
            tcp_flags: TCP_SYN_ACK,
            payload_offset: layout.payload_offset() + 8,
        })
    );
    assert_eq!(
        classify(&with_options[..l4 + 24]),
        Err(ParseError::Truncated(Layer::Tcp)),
        "cut inside the options"
    );
}

/// One IPv6 extension header of `kind`; `units` extra 8-byte units (ignored for fragments).
struct Extension {
    kind: u8,
    units: u8,
    fragment_offset: u16,
}

fn ext(kind: u8) -> Extension {
    Extension {
        kind,
        units: 0,
        fragment_offset: 0,
    }
}

/// Inserts `chain` between the IPv6 header and the upper layer of a built frame.
fn with_ipv6_extensions(frame: &[u8], layout: &FrameLayout, chain: &[Extension]) -> Vec<u8> {
    let l3 = layout.l3_offset();
    let l4 = layout.l4_offset();
    let upper = frame[l3 + 6];
    let mut out = frame[..l4].to_vec();
    for (index, header) in chain.iter().enumerate() {
        let next = chain.get(index + 1).map_or(upper, |h| h.kind);
        if header.kind == FRAGMENT {
            out.extend_from_slice(&[next, 0]);
            out.extend_from_slice(&((header.fragment_offset << 3) | 1).to_be_bytes());
            out.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        } else {
            let len = (usize::from(header.units) + 1) * 8;
            out.extend_from_slice(&[next, header.units]);
            // PadN option filling the rest of the header.
            out.extend_from_slice(&[1, (len - 4) as u8]);
            out.resize(out.len() + len - 4, 0);
        }
    }
    let inserted = out.len() - l4;
    out.extend_from_slice(&frame[l4..layout.ip_end()]);
    out[l3 + 6] = chain.first().map_or(upper, |h| h.kind);
    let payload_len = (layout.ip_end() - l4 + inserted) as u16;
    out[l3 + 4..l3 + 6].copy_from_slice(&payload_len.to_be_bytes());
    out
}

#[test]
fn ipv6_extension_chain_is_walked_to_the_upper_layer() {
    let payload = payload_of(16);
    for proto in [IP_PROTO_TCP, IP_PROTO_UDP] {
        let spec = spec(true, proto, Some(9), &payload);
        let (frame, layout) = build(&spec);
        let chain = [
            ext(HOP_BY_HOP),
            Extension {
                kind: ROUTING,
                units: 2,
                fragment_offset: 0,
            },
            ext(FRAGMENT),
            ext(DESTINATION_OPTIONS),
        ];
        let walked = with_ipv6_extensions(&frame, &layout, &chain);
        let extension_bytes = 8 + 24 + 8 + 8;
        let dissection = dissect(&walked).expect("parses");
        assert_eq!(dissection.ipv6_extension_headers, chain.len());
        assert_eq!(dissection.ip_proto, Some(proto));
        assert_eq!(
            dissection.l4_offset,
            Some(layout.l4_offset() + extension_bytes)
        );
        assert_eq!(
            dissection.classified,
            Classified::Flow {
                tuple: spec.tuple,
                tcp_flags: spec.tcp_flags,
                payload_offset: layout.payload_offset() + extension_bytes,
            }
        );
        for len in layout.l4_offset()..layout.l4_offset() + extension_bytes {
            assert_eq!(
                classify(&walked[..len]),
                Err(ParseError::Truncated(Layer::Ipv6Extension)),
                "cut at {len}"
            );
        }
    }
}

#[test]
fn ipv6_extension_chain_bound_is_enforced() {
    let (frame, layout) = build(&spec(true, IP_PROTO_UDP, None, b"bound"));
    let at_bound: Vec<Extension> = (0..MAX_IPV6_EXTENSION_HEADERS)
        .map(|_| ext(DESTINATION_OPTIONS))
        .collect();
    let walked = with_ipv6_extensions(&frame, &layout, &at_bound);
    assert!(matches!(classify(&walked), Ok(Classified::Flow { .. })));
    let beyond: Vec<Extension> = (0..=MAX_IPV6_EXTENSION_HEADERS)
        .map(|_| ext(DESTINATION_OPTIONS))
        .collect();
    let too_long = with_ipv6_extensions(&frame, &layout, &beyond);
    assert_eq!(
        classify(&too_long),
        Err(ParseError::TooManyIpv6ExtensionHeaders)
    );
}

#[test]
fn ipv6_fragments_first_is_keyed_later_ones_are_not() {
    let payload = payload_of(24);
    let spec = spec(true, IP_PROTO_UDP, None, &payload);
    let (frame, layout) = build(&spec);
    let first = with_ipv6_extensions(&frame, &layout, &[ext(FRAGMENT)]);
    assert_eq!(
        classify(&first),
        Ok(Classified::Flow {
            tuple: spec.tuple,
            tcp_flags: 0,
            payload_offset: layout.payload_offset() + 8,
        })
    );
    let later = with_ipv6_extensions(
        &frame,
        &layout,
        &[
            ext(HOP_BY_HOP),
            Extension {
                kind: FRAGMENT,
                units: 0,
                fragment_offset: 100,
            },
        ],
    );
    assert_eq!(
        classify(&later),
        Ok(Classified::Unkeyed(UnkeyedReason::NonFirstFragment))
    );
    assert_eq!(dissect(&later).expect("parses").l4_offset, None);
}

#[test]
fn other_l4_protocols_are_unsupported() {
    let (mut v4, layout) = build(&spec(false, IP_PROTO_UDP, None, b"ping"));
    v4[layout.l3_offset() + 9] = ICMP;
    assert_eq!(
        classify(&v4),
        Ok(Classified::Unkeyed(UnkeyedReason::UnsupportedL4))
    );
    let (mut v6, layout) = build(&spec(true, IP_PROTO_UDP, None, b"ping"));
    v6[layout.l3_offset() + 6] = ICMPV6;
    assert_eq!(
        classify(&v6),
        Ok(Classified::Unkeyed(UnkeyedReason::UnsupportedL4))
    );
    let chained = with_ipv6_extensions(&v6, &layout, &[ext(HOP_BY_HOP)]);
    let dissection = dissect(&chained).expect("parses");
    assert_eq!(
        dissection.classified,
        Classified::Unkeyed(UnkeyedReason::UnsupportedL4)
    );
    assert_eq!(dissection.ip_proto, Some(ICMPV6));
    assert_eq!(dissection.l4_offset, Some(layout.l4_offset() + 8));
}

/// One crafted frame per error variant.
fn crafted_errors() -> Vec<(ParseError, Vec<u8>)> {
    let mut cases = Vec::new();
    let (v4_tcp, v4_tcp_layout) = build(&spec(false, IP_PROTO_TCP, None, b"abcdefgh"));
    let (v4_udp, v4_udp_layout) = build(&spec(false, IP_PROTO_UDP, None, b"abcdefgh"));
    let (v6_udp, v6_layout) = build(&spec(true, IP_PROTO_UDP, Some(5), b"abcdefgh"));
    let l3 = v4_tcp_layout.l3_offset();
    let tcp = v4_tcp_layout.l4_offset();
    let udp = v4_udp_layout.l4_offset();

    cases.push((
        ParseError::Truncated(Layer::Ethernet),
        v4_tcp[..13].to_vec(),
    ));
    cases.push((ParseError::Truncated(Layer::Vlan), v6_udp[..16].to_vec()));
    cases.push((
        ParseError::Truncated(Layer::Arp),
        arp_frame(1)[..30].to_vec(),
    ));
    cases.push((
        ParseError::Truncated(Layer::Ipv4),
        v4_tcp[..l3 + 19].to_vec(),
    ));
    cases.push((
        ParseError::Truncated(Layer::Ipv6),
        v6_udp[..v6_layout.l3_offset() + 39].to_vec(),
    ));
    let chained = with_ipv6_extensions(&v6_udp, &v6_layout, &[ext(HOP_BY_HOP)]);
    cases.push((
        ParseError::Truncated(Layer::Ipv6Extension),
        chained[..v6_layout.l4_offset() + 5].to_vec(),
    ));
    cases.push((
        ParseError::Truncated(Layer::Tcp),
        v4_tcp[..tcp + 19].to_vec(),
    ));
    cases.push((
        ParseError::Truncated(Layer::Udp),
        v4_udp[..udp + 7].to_vec(),
    ));

    let mut wrong_version = v4_tcp.clone();
    wrong_version[l3] = 0x65;
    cases.push((ParseError::BadIpVersion, wrong_version));
    let mut ihl_four = v4_tcp.clone();
    ihl_four[l3] = 0x44;
    cases.push((ParseError::BadIpHeaderLength, ihl_four));
    let mut total_below_header = v4_tcp.clone();
    total_below_header[l3 + 2..l3 + 4].copy_from_slice(&19u16.to_be_bytes());
    cases.push((ParseError::BadIpHeaderLength, total_below_header));
    let mut total_too_long = v4_tcp.clone();
    total_too_long[l3 + 2..l3 + 4].copy_from_slice(&1500u16.to_be_bytes());
    cases.push((ParseError::BadIpTotalLength, total_too_long));
    let mut v6_too_long = v6_udp.clone();
    let v6_l3 = v6_layout.l3_offset();
    v6_too_long[v6_l3 + 4..v6_l3 + 6].copy_from_slice(&1500u16.to_be_bytes());
    cases.push((ParseError::BadIpv6PayloadLength, v6_too_long));
    let chain: Vec<Extension> = (0..=MAX_IPV6_EXTENSION_HEADERS)
        .map(|_| ext(HOP_BY_HOP))
        .collect();
    cases.push((
        ParseError::TooManyIpv6ExtensionHeaders,
        with_ipv6_extensions(&v6_udp, &v6_layout, &chain),
    ));
    let mut offset_four = v4_tcp.clone();
    offset_four[tcp + 12] = 4 << 4;
    cases.push((ParseError::BadTcpDataOffset, offset_four));
    let mut offset_past_segment = v4_tcp.clone();
    offset_past_segment[tcp + 12] = 15 << 4;
    cases.push((ParseError::BadTcpDataOffset, offset_past_segment));
    let mut udp_len_seven = v4_udp.clone();
    udp_len_seven[udp + 4..udp + 6].copy_from_slice(&7u16.to_be_bytes());
    cases.push((ParseError::BadUdpLength, udp_len_seven));
    let mut udp_len_past_ip = v4_udp.clone();
    udp_len_past_ip[udp + 4..udp + 6].copy_from_slice(&200u16.to_be_bytes());
    cases.push((ParseError::BadUdpLength, udp_len_past_ip));
    let mut arp_ipv6 = arp_frame(1);
    arp_ipv6[16..18].copy_from_slice(&0x86ddu16.to_be_bytes());
    cases.push((ParseError::BadArpHeader, arp_ipv6));
    let mut arp_long_hw = arp_frame(1);
    arp_long_hw[18] = 8;
    cases.push((ParseError::BadArpHeader, arp_long_hw));
    cases.push((ParseError::BadArpOperation, arp_frame(0)));
    cases
}

#[test]
fn every_parse_error_is_provoked_by_a_crafted_frame() {
    let mut seen = HashSet::new();
    for (expected, frame) in crafted_errors() {
        assert_eq!(classify(&frame), Err(expected), "{}", expected.reason());
        assert_eq!(dissect(&frame), Err(expected));
        seen.insert(expected);
    }
    let all: HashSet<ParseError> = ParseError::ALL.into_iter().collect();
    assert_eq!(seen, all, "every variant has a crafted frame");
}

#[test]
fn ip_version_must_match_the_ethertype() {
    let (mut frame, layout) = build(&spec(true, IP_PROTO_TCP, None, b""));
    frame[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    assert_eq!(classify(&frame), Err(ParseError::BadIpVersion));
    frame[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    frame[layout.l3_offset()] = 0x45;
    assert_eq!(classify(&frame), Err(ParseError::BadIpVersion));
}

#[test]
fn build_errors_are_reported_and_write_nothing() {
    let payload = payload_of(100);
    let good = spec(false, IP_PROTO_TCP, None, &payload);
    let needed = layout_of(&good).frame_len();
    let mut small = vec![0xeeu8; needed - 1];
    assert_eq!(
        build_frame(&mut small, &good),
        Err(BuildError::BufferTooSmall {
            needed,
            available: needed - 1
        })
    );
    assert!(small.iter().all(|&b| b == 0xee), "nothing written");

    let mut buf = vec![0u8; 2048];
    let mut bad_vlan = good;
    bad_vlan.vlan = Some(4096);
    assert_eq!(
        build_frame(&mut buf, &bad_vlan),
        Err(BuildError::VlanIdOutOfRange(4096))
    );
    let mut icmp = good;
    icmp.tuple.proto = ICMP;
    assert_eq!(
        build_frame(&mut buf, &icmp),
        Err(BuildError::UnsupportedProtocol(ICMP))
    );

    let huge = vec![0u8; 65_536];
    let mut big = vec![0u8; 70_000];
    for (ipv6, proto, max) in [
        (false, IP_PROTO_TCP, 65_535 - 40),
        (false, IP_PROTO_UDP, 65_535 - 28),
        (true, IP_PROTO_TCP, 65_535 - 20),
        (true, IP_PROTO_UDP, 65_535 - 8),
    ] {
        let too_large = spec(ipv6, proto, None, &huge[..max + 1]);
        assert_eq!(
            build_frame(&mut big, &too_large),
            Err(BuildError::PayloadTooLarge { len: max + 1, max })
        );
        let largest = spec(ipv6, proto, None, &huge[..max]);
        let len = build_frame(&mut big, &largest).expect("largest payload fits");
        assert!(matches!(classify(&big[..len]), Ok(Classified::Flow { .. })));
    }

    for error in [
        BuildError::BufferTooSmall {
            needed: 60,
            available: 10,
        },
        BuildError::VlanIdOutOfRange(5000),
        BuildError::UnsupportedProtocol(1),
        BuildError::PayloadTooLarge {
            len: 70_000,
            max: 65_495,
        },
        BuildError::PatchOutOfRange {
            offset: 10,
            len: 16,
            payload_len: 20,
        },
    ] {
        let text = error.to_string();
        assert!(
            text.chars().any(|c| c.is_ascii_digit()),
            "{text} names the values"
        );
        let _: &dyn std::error::Error = &error;
    }
}

#[test]
fn layout_sizes_payloads_for_a_target_frame_length() {
    for (ipv6, proto, vlan) in every_combination() {
        let probe = spec(ipv6, proto, vlan, b"");
        let layout = layout_of(&probe);
        let headers = layout.payload_offset();
        for frame_len in [headers, headers + 1, 128, 1514] {
            let payload_len = layout.payload_len_for(frame_len).expect("headers fit");
            let payload = vec![0u8; payload_len];
            let (frame, _) = build(&spec(ipv6, proto, vlan, &payload));
            assert_eq!(frame.len(), frame_len.max(MIN_FRAME_LEN));
            assert_eq!(
                layout_of(&spec(ipv6, proto, vlan, &payload)).ip_end(),
                frame_len
            );
        }
        assert_eq!(layout.payload_len_for(headers - 1), None);
    }
}

#[test]
fn patch_payload_keeps_the_frame_valid() {
    for (ipv6, proto, vlan) in every_combination() {
        let payload = payload_of(33);
        let spec = spec(ipv6, proto, vlan, &payload);
        let (mut frame, layout) = build(&spec);
        let stamp: Vec<u8> = (0..16u8).map(|b| b.wrapping_mul(73) ^ 0x5a).collect();
        for offset in [0, 1, 16, 17] {
            layout
                .patch_payload(&mut frame, offset, &stamp)
                .expect("in range");
            let at = layout.payload_offset() + offset;
            assert_eq!(&frame[at..at + stamp.len()], &stamp[..]);
            assert_checksums_valid(&frame, &layout, &spec.tuple);
            assert!(matches!(classify(&frame), Ok(Classified::Flow { .. })));
        }
        let before = frame.clone();
        assert_eq!(
            layout.patch_payload(&mut frame, 18, &stamp),
            Err(BuildError::PatchOutOfRange {
                offset: 18,
                len: 16,
                payload_len: 33
            })
        );
        assert_eq!(
            layout.patch_payload(&mut frame, usize::MAX, &stamp),
            Err(BuildError::PatchOutOfRange {
                offset: usize::MAX,
                len: 16,
                payload_len: 33
            })
        );
        let cut = layout.ip_end() - 1;
        assert_eq!(
            layout.patch_payload(&mut frame[..cut], 0, &stamp),
            Err(BuildError::BufferTooSmall {
                needed: layout.ip_end(),
                available: cut
            })
        );
        assert_eq!(frame, before, "failed patches change nothing");
    }
}

#[test]
fn tcp_segments_give_their_sequence_number_and_payload_length() {
    for (ipv6, proto, vlan) in every_combination() {
        let payload = payload_of(333);
        let (mut frame, _) = build(&spec(ipv6, proto, vlan, &payload));
        // Link padding after the IP packet is no payload.
        frame.extend_from_slice(&[0; 10]);
        let dissection = dissect(&frame).expect("valid");
        if proto != IP_PROTO_TCP {
            assert_eq!(tcp_segment(&frame), None);
            continue;
        }
        let at = dissection.l4_offset.expect("a TCP header") + 4;
        frame[at..at + 4].copy_from_slice(&0xfedc_ba98u32.to_be_bytes());
        assert_eq!(
            tcp_segment(&frame),
            Some(TcpSegment {
                tuple: tuple(ipv6, proto),
                flags: TCP_SYN_ACK,
                seq: 0xfedc_ba98,
                payload_len: 333,
            }),
            "ipv6 {ipv6} vlan {vlan:?}"
        );
        // A frame cut inside the header is no segment.
        assert_eq!(tcp_segment(&frame[..at + 2]), None);
    }
}
