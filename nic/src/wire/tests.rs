//! Unit tests of the pieces behind the public API: checksum arithmetic, the metric label tables,
//! the link-layer walk and the header emitters. Round trips through the public API live in
//! `nic/tests/wire_parse.rs`, property tests in `nic/tests/wire_proptest.rs`.

use super::checksum;
use super::*;
use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};

#[test]
fn checksum_sum_matches_rfc1071_example() {
    // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (with end-around carries).
    let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
    assert_eq!(checksum::sum(&bytes), 0xddf2);
    assert_eq!(checksum::finish(0xddf2), 0x220d);
}

#[test]
fn checksum_sum_pads_odd_tail_with_zero() {
    assert_eq!(checksum::sum(&[0xab]), 0xab00);
    assert_eq!(checksum::sum(&[0x12, 0x34, 0xab]), 0x1234 + 0xab00);
    assert_eq!(checksum::sum(&[]), 0);
}

#[test]
fn checksum_sum_never_folds_nonzero_data_to_zero() {
    // 0xffff + 0x0001 = 0x10000, folds to 0x0001; 0xffff alone stays 0xffff ("negative zero").
    assert_eq!(checksum::sum(&[0xff, 0xff, 0x00, 0x01]), 0x0001);
    assert_eq!(checksum::sum(&[0xff, 0xff]), 0xffff);
    assert_eq!(checksum::sum(&[0xff; 4096]), 0xffff);
}

#[test]
fn checksum_sum_is_independent_of_chunking() {
    let bytes: Vec<u8> = (0..=255u8).cycle().take(1001).collect();
    let whole = checksum::sum(&bytes);
    for split in (0..bytes.len()).step_by(2) {
        let (head, tail) = bytes.split_at(split);
        assert_eq!(
            checksum::add(checksum::sum(head), checksum::sum(tail)),
            whole,
            "split at {split}"
        );
    }
}

#[test]
fn checksum_of_valid_ipv4_header_verifies() {
    // A textbook header (Wikipedia "IPv4 header checksum"): checksum b861.
    let header = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];
    assert_eq!(checksum::sum(&header), 0xffff);
    let mut zeroed = header;
    zeroed[10] = 0;
    zeroed[11] = 0;
    assert_eq!(checksum::finish(checksum::sum(&zeroed)), 0xb861);
}

#[test]
fn checksum_update_agrees_with_recomputation() {
    let mut data: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37)).collect();
    let stored = checksum::finish(checksum::sum(&data));
    let old = checksum::sum(&data[10..14]);
    data[10..14].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    let new = checksum::sum(&data[10..14]);
    assert_eq!(
        checksum::update(stored, old, new),
        checksum::finish(checksum::sum(&data))
    );
}

#[test]
fn pseudo_headers_sum_their_fields() {
    let v4 = checksum::pseudo_header_v4(&[10, 0, 0, 1], &[10, 0, 0, 2], 6, 20);
    assert_eq!(v4, checksum::sum(&[10, 0, 0, 1, 10, 0, 0, 2, 0, 6, 0, 20]));
    let src = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let dst = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let mut flat = Vec::new();
    flat.extend_from_slice(&src);
    flat.extend_from_slice(&dst);
    flat.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 17]);
    assert_eq!(
        checksum::pseudo_header_v6(&src, &dst, 17, 8),
        checksum::sum(&flat)
    );
}

#[test]
fn reasons_all_and_reason_agree() {
    assert_eq!(ParseError::REASONS.len(), ParseError::ALL.len());
    for (index, error) in ParseError::ALL.iter().enumerate() {
        assert_eq!(error.reason_index(), index, "{error:?}");
        assert_eq!(ParseError::REASONS[index], error.reason(), "{error:?}");
    }
    let unique: HashSet<&str> = ParseError::REASONS.iter().copied().collect();
    assert_eq!(
        unique.len(),
        ParseError::REASONS.len(),
        "labels must be distinct"
    );
    for label in ParseError::REASONS {
        assert!(
            label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{label} is not snake_case"
        );
    }
}

#[test]
fn every_truncation_layer_is_in_all() {
    for layer in Layer::ALL {
        assert!(ParseError::ALL.contains(&ParseError::Truncated(layer)));
    }
}

#[test]
fn unkeyed_reason_labels_are_stable() {
    let labels: Vec<&str> = UnkeyedReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        labels,
        ["non_first_fragment", "unknown_ethertype", "unsupported_l4"]
    );
}

#[test]
fn parse_error_display_is_human_readable() {
    for error in ParseError::ALL {
        let text = error.to_string();
        assert!(!text.is_empty() && !text.contains('_'), "{text}");
    }
    assert_eq!(
        ParseError::Truncated(Layer::Tcp).to_string(),
        "frame ends inside the TCP header"
    );
}

#[test]
fn ethernet_parse_reports_tags_outermost_first() {
    let mut frame = [0u8; 26];
    frame[12..14].copy_from_slice(&ETHERTYPE_QINQ.to_be_bytes());
    frame[14..16].copy_from_slice(&0x2064u16.to_be_bytes()); // PCP 1, VLAN 100
    frame[16..18].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
    frame[18..20].copy_from_slice(&0x00c8u16.to_be_bytes()); // VLAN 200
    frame[20..22].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    let view = ethernet::parse(&frame).expect("two tags parse");
    assert_eq!(view.ethertype, ETHERTYPE_ARP);
    assert_eq!(view.l3_offset, 22);
    assert_eq!(view.vlan_count, 2);
    assert_eq!(view.vlan_tci, [0x2064, 0x00c8]);
}

#[test]
fn ethernet_parse_stops_after_two_tags() {
    let mut frame = [0u8; 30];
    for tag in 0..3 {
        let at = 12 + tag * VLAN_TAG_LEN;
        frame[at..at + 2].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
    }
    let view = ethernet::parse(&frame).expect("parses");
    assert_eq!(
        view.ethertype, ETHERTYPE_VLAN,
        "third tag is left as the ethertype"
    );
    assert_eq!(
        view.l3_offset,
        ETHERNET_HEADER_LEN + MAX_VLAN_TAGS * VLAN_TAG_LEN
    );
}

#[test]
fn ipv4_emit_writes_a_verifiable_header() {
    let mut buf = [0u8; 20];
    ipv4::emit(
        &mut buf,
        &[198, 18, 0, 1],
        &[198, 18, 0, 2],
        IP_PROTO_UDP,
        100,
    )
    .expect("fits");
    assert_eq!(buf[0], 0x45);
    assert_eq!(u16::from_be_bytes([buf[2], buf[3]]), 120);
    assert_eq!(buf[8], 64, "TTL");
    assert_eq!(buf[9], IP_PROTO_UDP);
    assert_eq!(checksum::sum(&buf), 0xffff);
    let view = ipv4::parse(&{
        let mut packet = [0u8; 120];
        packet[..20].copy_from_slice(&buf);
        packet
    })
    .expect("parses back");
    assert_eq!(view.header_len, 20);
    assert_eq!(view.end, 120);
    assert!(!view.short && !view.fragmented);
}

#[test]
fn ipv4_emit_refuses_oversized_packets_and_short_buffers() {
    let mut buf = [0u8; 20];
    assert!(ipv4::emit(&mut buf, &[0; 4], &[0; 4], 6, 65_516).is_none());
    assert!(ipv4::emit(&mut buf, &[0; 4], &[0; 4], 6, 65_515).is_some());
    assert!(ipv4::emit(&mut buf[..19], &[0; 4], &[0; 4], 6, 0).is_none());
}

#[test]
fn ipv6_emit_writes_version_length_and_hop_limit() {
    let mut buf = [0u8; 40];
    let src = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).octets();
    let dst = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2).octets();
    ipv6::emit(&mut buf, &src, &dst, IP_PROTO_TCP, 20).expect("fits");
    assert_eq!(buf[0] >> 4, 6);
    assert_eq!(u16::from_be_bytes([buf[4], buf[5]]), 20);
    assert_eq!(buf[6], IP_PROTO_TCP);
    assert_eq!(buf[7], 64);
    assert_eq!(&buf[8..24], &src);
    assert_eq!(&buf[24..40], &dst);
    assert!(ipv6::emit(&mut buf, &src, &dst, IP_PROTO_TCP, 65_536).is_none());
}

#[test]
fn tcp_emit_sets_offset_window_and_flags() {
    let mut buf = [0xffu8; 20];
    tcp::emit(&mut buf, 1234, 80, 0x12).expect("fits");
    let view = tcp::parse(&buf, None).expect("parses back");
    assert_eq!((view.src_port, view.dst_port, view.flags), (1234, 80, 0x12));
    assert_eq!(view.header_len, 20);
    assert_eq!(&buf[4..12], &[0; 8], "seq and ack are 0");
    assert_eq!(u16::from_be_bytes([buf[14], buf[15]]), 65_535);
    assert_eq!(
        &buf[16..20],
        &[0; 4],
        "checksum left for the caller, urgent 0"
    );
}

#[test]
fn udp_parse_allows_long_length_only_in_fragments() {
    let mut datagram = [0u8; 16];
    udp::emit(&mut datagram, 53, 5353, 100).expect("fits");
    assert_eq!(
        udp::parse(&datagram, None, false),
        Err(ParseError::BadUdpLength)
    );
    assert!(udp::parse(&datagram, None, true).is_ok());
}

#[test]
fn build_then_dissect_reports_every_offset() {
    let payload = [7u8; 30];
    let spec = FrameSpec {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        vlan: Some(42),
        tuple: FiveTuple::v4(
            IP_PROTO_TCP,
            Ipv4Addr::new(198, 18, 0, 1),
            40000,
            Ipv4Addr::new(198, 18, 0, 2),
            8000,
        ),
        tcp_flags: 0x02,
        payload: &payload,
    };
    let mut buf = [0u8; 128];
    let len = build_frame(&mut buf, &spec).expect("builds");
    let layout = layout_of(&spec);
    assert_eq!(len, layout.frame_len());
    let dissection = dissect(&buf[..len]).expect("parses");
    assert_eq!(dissection.ethertype, ETHERTYPE_IPV4);
    assert_eq!(dissection.vlan_ids().collect::<Vec<_>>(), [42]);
    assert_eq!(dissection.l3_offset, layout.l3_offset());
    assert_eq!(dissection.l4_offset, Some(layout.l4_offset()));
    assert_eq!(dissection.ip_end, Some(layout.ip_end()));
    assert_eq!(dissection.ip_proto, Some(IP_PROTO_TCP));
    assert_eq!(
        dissection.classified,
        Classified::Flow {
            tuple: spec.tuple,
            tcp_flags: 0x02,
            payload_offset: layout.payload_offset(),
        }
    );
}
