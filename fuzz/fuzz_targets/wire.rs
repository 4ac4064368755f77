//! The wire parser and classifier on arbitrary bytes: no panic, and the properties
//! `nic/tests/wire_proptest.rs` states hold for every input, not only the ones proptest draws:
//! `classify` agrees with `dissect`; the `Parsed` summary of `classify_parsed` gives back the
//! same verdict and the same TCP segment as parsing again; a flow's offsets are ordered and inside
//! the frame; the learning copy of a neighbour message keeps the frame's length.
#![no_main]

use flowsteer_nic::wire::{
    classify, classify_parsed, dissect, make_learning_copy, neighbor_message, tcp_segment,
    Classified, ParseError, ARP_REPLY, ARP_REQUEST, IP_PROTO_ICMPV6, IP_PROTO_TCP, IP_PROTO_UDP,
    NEIGHBOR_ADVERT, NEIGHBOR_SOLICIT,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    let classified = classify(frame);
    let dissected = dissect(frame);
    assert_eq!(classified, dissected.map(|d| d.classified));
    match classify_parsed(frame) {
        Ok((verdict, parsed)) => {
            assert_eq!(Ok(verdict), classified);
            // Every offset fits the summary when the frame is under 64 KiB (headers end within
            // the first 255 bytes: at most two VLAN tags before L3).
            if frame.len() <= usize::from(u16::MAX) {
                assert!(parsed.is_some());
                assert_eq!(parsed.classified(frame), Some(verdict));
                assert_eq!(parsed.tcp_segment(frame), tcp_segment(frame));
                assert_eq!(parsed.is_flow(), matches!(verdict, Classified::Flow { .. }));
            }
        }
        Err(error) => assert_eq!(Err(error), classified),
    }
    match classified {
        Ok(Classified::Flow {
            tuple,
            payload_offset,
            tcp_flags,
        }) => {
            assert!(payload_offset <= frame.len());
            assert!(tuple.proto == IP_PROTO_TCP || tuple.proto == IP_PROTO_UDP);
            if tuple.proto == IP_PROTO_UDP {
                assert_eq!(tcp_flags, 0);
                assert_eq!(tcp_segment(frame), None);
            } else {
                let segment = tcp_segment(frame).expect("a TCP flow is a TCP segment");
                assert_eq!(segment.tuple, tuple);
                assert_eq!(segment.flags, tcp_flags);
            }
            let dissection = dissected.expect("same verdict");
            let l4 = dissection.l4_offset.expect("a flow has an L4 header");
            assert!(dissection.l3_offset < l4 && l4 < payload_offset);
            assert!(payload_offset <= dissection.ip_end.expect("a flow is IP"));
            assert!(dissection.ip_end.expect("a flow is IP") <= frame.len());
        }
        Ok(Classified::Arp { op }) => {
            assert_ne!(op, 0);
            // Every ARP frame teaches its sender; a request's copy is the reply form.
            let mut copy = frame.to_vec();
            assert!(make_learning_copy(&mut copy));
            let learned = if op == ARP_REQUEST { ARP_REPLY } else { op };
            assert_eq!(classify(&copy), Ok(Classified::Arp { op: learned }));
        }
        Ok(Classified::Unkeyed(_)) => {
            assert_eq!(tcp_segment(frame), None);
            if let Some(message) = neighbor_message(frame) {
                assert!(message == NEIGHBOR_SOLICIT || message == NEIGHBOR_ADVERT);
                assert_eq!(
                    dissected.expect("same verdict").ip_proto,
                    Some(IP_PROTO_ICMPV6)
                );
            }
            let mut copy = frame.to_vec();
            if make_learning_copy(&mut copy) {
                assert_eq!(neighbor_message(&copy), Some(NEIGHBOR_ADVERT));
            } else {
                assert_eq!(copy, frame, "a refused rewrite changes nothing");
            }
        }
        Err(error) => {
            assert_eq!(tcp_segment(frame), None);
            assert_eq!(ParseError::REASONS[error.reason_index()], error.reason());
        }
    }
});
