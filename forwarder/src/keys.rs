//! From a parsed 5-tuple to the flow key the table uses: the packet's destination is the local side.

use flowsteer_nic::wire::{FiveTuple, IpPair};
use flowtable::{FlowKey, Proto};

/// The key of a received packet's flow, or `None` when its protocol is neither TCP nor UDP.
#[inline]
pub fn flow_key(t: &FiveTuple) -> Option<FlowKey> {
    let proto = Proto::from_ip_proto(t.proto)?;
    Some(match t.ip {
        IpPair::V4 { src, dst } => FlowKey::from_v4_bytes(proto, dst, t.dst_port, src, t.src_port),
        IpPair::V6 { src, dst } => FlowKey::from_v6_bytes(proto, dst, t.dst_port, src, t.src_port),
    })
}
