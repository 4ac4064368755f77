//! The properties every classification of a frame keeps, valid input or not, checked in one
//! place for the wire fuzz target (`fuzz/fuzz_targets/wire.rs`) and the property tests
//! (`nic/tests/wire_proptest.rs`):
//!
//! - `classify` agrees with `dissect`;
//! - the `Parsed` summary of `classify_parsed` gives back the same verdict and the same TCP
//!   segment as parsing again (for every frame under 64 KiB: headers end within the first 255
//!   bytes, at most two VLAN tags before L3);
//! - a flow's offsets are ordered and inside the frame, and a TCP flow is the TCP segment
//!   `tcp_segment` finds;
//! - the learning copy of an ARP frame or a neighbour message is what it should be, and a
//!   refused rewrite changes nothing;
//! - every parse error names a reason of `ParseError::REASONS`.

use flowsteer_nic::wire::{
    classify, classify_parsed, dissect, make_learning_copy, neighbor_message, tcp_segment,
    Classified, ParseError, ARP_REPLY, ARP_REQUEST, IP_PROTO_ICMPV6, IP_PROTO_TCP, IP_PROTO_UDP,
    NEIGHBOR_ADVERT, NEIGHBOR_SOLICIT,
};

/// Fails with the first property `frame` breaks, naming it.
macro_rules! ensure {
    ($holds:expr, $($what:tt)+) => {
        if !$holds {
            return Err(format!($($what)+));
        }
    };
}

/// Checks every property above on `frame`; the first broken one is the error.
pub fn check_classification(frame: &[u8]) -> Result<(), String> {
    let classified = classify(frame);
    let dissected = dissect(frame);
    ensure!(
        classified == dissected.map(|d| d.classified),
        "classify {classified:?} and dissect {dissected:?} disagree"
    );
    match classify_parsed(frame) {
        Ok((verdict, parsed)) => {
            ensure!(
                Ok(verdict) == classified,
                "classify_parsed gave {verdict:?}"
            );
            if frame.len() <= usize::from(u16::MAX) {
                ensure!(parsed.is_some(), "no summary for {verdict:?}");
                ensure!(
                    parsed.classified(frame) == Some(verdict),
                    "the summary gives back {:?}, not {verdict:?}",
                    parsed.classified(frame)
                );
                ensure!(
                    parsed.tcp_segment(frame) == tcp_segment(frame),
                    "the summary's TCP segment differs from parsing again"
                );
                ensure!(
                    parsed.is_flow() == matches!(verdict, Classified::Flow { .. }),
                    "the summary's is_flow differs from {verdict:?}"
                );
            }
        }
        Err(error) => ensure!(
            Err(error) == classified,
            "classify_parsed failed with {error:?}, classify gave {classified:?}"
        ),
    }
    match classified {
        Ok(Classified::Flow {
            tuple,
            payload_offset,
            tcp_flags,
        }) => {
            ensure!(payload_offset <= frame.len(), "payload past the frame");
            ensure!(
                tuple.proto == IP_PROTO_TCP || tuple.proto == IP_PROTO_UDP,
                "a flow of protocol {}",
                tuple.proto
            );
            if tuple.proto == IP_PROTO_UDP {
                ensure!(tcp_flags == 0, "TCP flags on a UDP flow");
                ensure!(tcp_segment(frame).is_none(), "a UDP flow is a TCP segment");
            } else {
                let Some(segment) = tcp_segment(frame) else {
                    return Err("a TCP flow is no TCP segment".into());
                };
                ensure!(segment.tuple == tuple, "the segment's tuple differs");
                ensure!(segment.flags == tcp_flags, "the segment's flags differ");
            }
            let Ok(dissection) = dissected else {
                return Err("a flow that dissect refused".into());
            };
            let (Some(l4), Some(ip_end)) = (dissection.l4_offset, dissection.ip_end) else {
                return Err(format!("a flow without L4 or IP: {dissection:?}"));
            };
            ensure!(
                dissection.l3_offset < l4 && l4 < payload_offset,
                "offsets out of order: {dissection:?}, payload at {payload_offset}"
            );
            ensure!(
                payload_offset <= ip_end && ip_end <= frame.len(),
                "payload or IP end past the packet: {dissection:?}"
            );
        }
        Ok(Classified::Arp { op }) => {
            ensure!(op != 0, "ARP operation 0");
            // Every ARP frame teaches its sender; a request's copy is the reply form.
            let mut copy = frame.to_vec();
            ensure!(
                make_learning_copy(&mut copy),
                "no learning copy of ARP {op}"
            );
            let learned = if op == ARP_REQUEST { ARP_REPLY } else { op };
            ensure!(
                classify(&copy) == Ok(Classified::Arp { op: learned }),
                "the learning copy of ARP {op} classifies as {:?}",
                classify(&copy)
            );
        }
        Ok(Classified::Unkeyed(_)) => {
            ensure!(tcp_segment(frame).is_none(), "an unkeyed TCP segment");
            if let Some(message) = neighbor_message(frame) {
                ensure!(
                    message == NEIGHBOR_SOLICIT || message == NEIGHBOR_ADVERT,
                    "neighbour message {message}"
                );
                ensure!(
                    dissected.map(|d| d.ip_proto) == Ok(Some(IP_PROTO_ICMPV6)),
                    "a neighbour message not over ICMPv6"
                );
            }
            let mut copy = frame.to_vec();
            if make_learning_copy(&mut copy) {
                ensure!(
                    neighbor_message(&copy) == Some(NEIGHBOR_ADVERT),
                    "the learning copy is no neighbour advertisement"
                );
                ensure!(copy.len() == frame.len(), "the learning copy's length");
            } else {
                ensure!(copy == frame, "a refused rewrite changed the frame");
            }
        }
        Err(error) => {
            ensure!(
                tcp_segment(frame).is_none(),
                "a refused frame is a TCP segment"
            );
            ensure!(
                ParseError::REASONS[error.reason_index()] == error.reason(),
                "{error:?} names no reason of its own"
            );
        }
    }
    Ok(())
}
