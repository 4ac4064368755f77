//! Property tests of `nic::wire`: the classifier never panics, whatever the bytes, and agrees
//! with `dissect`; the summary a packet carries (`Parsed`) gives back the same classification
//! and TCP segment as parsing again; built frames round-trip; patching a payload incrementally gives the same bytes
//! as building the patched frame from scratch.

use std::net::{Ipv4Addr, Ipv6Addr};

use flowsteer_nic::wire::{
    build_frame, classify, layout_of, make_learning_copy, neighbor_message, Classified, FiveTuple,
    FrameSpec, IP_PROTO_ICMPV6, IP_PROTO_TCP, IP_PROTO_UDP, NEIGHBOR_ADVERT, NEIGHBOR_SOLICIT,
};
use flowsteer_testrig::wire_check;
use proptest::prelude::*;

fn arb_tuple() -> impl Strategy<Value = FiveTuple> {
    let proto = prop_oneof![Just(IP_PROTO_TCP), Just(IP_PROTO_UDP)];
    let v4 = (
        proto.clone(),
        any::<[u8; 4]>(),
        any::<u16>(),
        any::<[u8; 4]>(),
        any::<u16>(),
    )
        .prop_map(|(proto, src, sport, dst, dport)| {
            FiveTuple::v4(
                proto,
                Ipv4Addr::from(src),
                sport,
                Ipv4Addr::from(dst),
                dport,
            )
        });
    let v6 = (
        proto,
        any::<[u8; 16]>(),
        any::<u16>(),
        any::<[u8; 16]>(),
        any::<u16>(),
    )
        .prop_map(|(proto, src, sport, dst, dport)| {
            FiveTuple::v6(
                proto,
                Ipv6Addr::from(src),
                sport,
                Ipv6Addr::from(dst),
                dport,
            )
        });
    prop_oneof![v4, v6]
}

/// Everything needed to build one frame (the spec borrows its payload).
#[derive(Clone, Debug)]
struct FrameInput {
    tuple: FiveTuple,
    vlan: Option<u16>,
    tcp_flags: u8,
    payload: Vec<u8>,
}

impl FrameInput {
    fn spec(&self) -> FrameSpec<'_> {
        FrameSpec {
            src_mac: [0x02, 0, 0, 0, 0, 0x0a],
            dst_mac: [0x02, 0, 0, 0, 0, 0x0b],
            vlan: self.vlan,
            tuple: self.tuple,
            tcp_flags: self.tcp_flags,
            payload: &self.payload,
        }
    }

    fn build(&self) -> Vec<u8> {
        let mut buf = vec![0u8; 2048];
        let len = build_frame(&mut buf, &self.spec()).expect("inputs are buildable");
        buf.truncate(len);
        buf
    }
}

fn arb_frame_input(max_payload: usize) -> impl Strategy<Value = FrameInput> {
    (
        arb_tuple(),
        proptest::option::of(0u16..=0x0fff),
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..max_payload),
    )
        .prop_map(|(tuple, vlan, tcp_flags, payload)| FrameInput {
            tuple,
            vlan,
            tcp_flags,
            payload,
        })
}

/// The properties any classification keeps, valid input or not (`wire_check` states them).
fn check_classification(frame: &[u8]) -> Result<(), TestCaseError> {
    wire_check::check_classification(frame).map_err(TestCaseError::fail)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn classify_never_panics_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..200)
    ) {
        check_classification(&bytes)?;
    }

    #[test]
    fn classify_never_panics_on_ethernet_ip_prefixed_noise(
        ethertype in prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x0806), Just(0x8100), Just(0x88a8)],
        version_nibble in 0u8..16,
        tail in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        // Random bytes almost never get past the ethertype; this starts them inside the IP layer.
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.push(version_nibble << 4 | 5);
        frame.extend_from_slice(&tail);
        check_classification(&frame)?;
    }

    #[test]
    fn classify_never_panics_on_mutated_valid_frames(
        input in arb_frame_input(64),
        mutations in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut frame = input.build();
        for (index, value) in mutations {
            let at = index.index(frame.len());
            frame[at] = value;
        }
        if let Some(cut) = cut {
            frame.truncate(cut.index(frame.len() + 1));
        }
        check_classification(&frame)?;
    }

    #[test]
    fn built_frames_round_trip(input in arb_frame_input(300)) {
        let frame = input.build();
        let layout = layout_of(&input.spec());
        let expected_flags = if input.tuple.proto == IP_PROTO_TCP { input.tcp_flags } else { 0 };
        prop_assert_eq!(
            classify(&frame),
            Ok(Classified::Flow {
                tuple: input.tuple,
                tcp_flags: expected_flags,
                payload_offset: layout.payload_offset(),
            })
        );
        let payload_at = layout.payload_offset();
        prop_assert_eq!(&frame[payload_at..payload_at + input.payload.len()], &input.payload[..]);
    }

    #[test]
    fn patch_payload_equals_building_the_patched_frame(
        input in arb_frame_input(300),
        offset in any::<prop::sample::Index>(),
        patch in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut frame = input.build();
        let layout = layout_of(&input.spec());
        let offset = offset.index(input.payload.len() + 1);
        let result = layout.patch_payload(&mut frame, offset, &patch);
        if offset + patch.len() > input.payload.len() {
            prop_assert!(result.is_err());
            prop_assert_eq!(frame, input.build(), "a refused patch changes nothing");
        } else {
            prop_assert!(result.is_ok());
            let mut patched = input.clone();
            patched.payload[offset..offset + patch.len()].copy_from_slice(&patch);
            prop_assert_eq!(frame, patched.build());
        }
    }
}

/// An Ethernet + IPv6 frame carrying a neighbour solicitation whose options are `options`
/// (arbitrary bytes: lengths that lie, zero-length options, cut options). The checksum is not
/// valid; the classifier and the rewrite must not care.
fn solicitation_with_options(options: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x33, 0x33, 0xff, 0, 0, 1, 2, 0, 0, 0, 0, 0x22, 0x86, 0xdd];
    let payload_len = 24 + options.len();
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    frame.extend_from_slice(&(payload_len as u16).to_be_bytes());
    frame.extend_from_slice(&[IP_PROTO_ICMPV6, 255]);
    frame.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    frame.extend_from_slice(&[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 1]);
    frame.extend_from_slice(&[NEIGHBOR_SOLICIT, 0, 0, 0, 0, 0, 0, 0]);
    frame.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    frame.extend_from_slice(options);
    frame
}

proptest! {
    #[test]
    fn learning_copies_of_any_solicitation_never_panic(
        options in prop::collection::vec(any::<u8>(), 0..64),
        cut in 0usize..100,
    ) {
        let whole = solicitation_with_options(&options);
        prop_assert_eq!(neighbor_message(&whole), Some(NEIGHBOR_SOLICIT));
        let mut copy = whole.clone();
        let rewritten = make_learning_copy(&mut copy);
        prop_assert_eq!(copy.len(), whole.len());
        if rewritten {
            prop_assert_eq!(neighbor_message(&copy), Some(NEIGHBOR_ADVERT));
        } else {
            prop_assert_eq!(&copy, &whole);
        }
        let mut short = whole[..whole.len().saturating_sub(cut)].to_vec();
        make_learning_copy(&mut short);
    }

    #[test]
    fn learning_copies_of_arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut copy = bytes.clone();
        if !make_learning_copy(&mut copy) {
            prop_assert_eq!(copy, bytes);
        }
    }
}
