//! Turning a flow and a stamp into a frame of exactly `traffic.packet_size` bytes.
//!
//! Two ways, chosen once per queue source:
//! - **Templates** (when all flows × packet_size fit [`TEMPLATE_BUDGET`]): each flow slot keeps a
//!   pre-built frame whose stamp has `seq = 0, last = false`. A packet costs one copy of
//!   packet_size bytes plus [`FrameLayout::patch_payload`] of the 16 stamp bytes (two sums over
//!   16 bytes and an RFC 1624 checksum update), independent of the header mix.
//! - **Built per packet** (otherwise, and always for the SYN and FIN|ACK packets of churned
//!   connections, whose TCP flags differ from the template's): [`build_frame`] writes the headers
//!   and a zero payload behind the stamp and sums the L4 segment: O(packet_size).
//!
//! Either way the result is bit for bit the same frame. Owned by one queue source; no allocation
//! after construction.

use flowsteer_nic::wire::{
    build_frame, layout_of, BuildError, FiveTuple, FrameLayout, FrameSpec, MIN_FRAME_LEN,
};
use flowtable::Proto;

use super::addresses::{Family, TupleSpace, CLIENT_MAC};
use super::flow::Flow;
use super::stamp::Stamp;

/// Total template bytes (over all queues) up to which flows get a pre-built frame each.
pub(crate) const TEMPLATE_BUDGET: usize = 64 << 20;

/// TCP flags of the packets the generator sends.
pub(crate) const TCP_FIN: u8 = 0x01;
pub(crate) const TCP_SYN: u8 = 0x02;
pub(crate) const TCP_PSH: u8 = 0x08;
pub(crate) const TCP_ACK: u8 = 0x10;
/// Data on an established connection: what templates carry.
pub(crate) const TCP_DATA: u8 = TCP_ACK | TCP_PSH;
/// The last segment of a connection being closed.
pub(crate) const TCP_CLOSE: u8 = TCP_FIN | TCP_ACK;

/// Builds the frames of one queue's flows.
#[derive(Debug)]
pub(crate) struct FrameWriter {
    packet_size: usize,
    local_mac: [u8; 6],
    space: TupleSpace,
    /// Layout per (family, protocol), see [`kind`]; `None` for a mix the traffic never uses.
    layouts: [Option<FrameLayout>; 4],
    /// `slots × packet_size` bytes of templates, empty when frames are built per packet.
    templates: Vec<u8>,
    /// Zeroed payload behind the stamp, for frames built per packet.
    payload: Vec<u8>,
}

/// Index of a header mix: IPv6 × 2 + UDP.
fn kind(family: Family, proto: Proto) -> usize {
    usize::from(family == Family::V6) * 2 + usize::from(proto == Proto::Udp)
}

impl FrameWriter {
    /// A writer of `packet_size`-byte frames to `local_mac` for flows of the header mixes
    /// `families` × `protocols`; with templates for `slots` flows when `templates` is set. Errors
    /// when a frame of one of those mixes cannot be exactly `packet_size` bytes with a stamp.
    pub(crate) fn new(
        packet_size: usize,
        local_mac: [u8; 6],
        space: TupleSpace,
        mixes: &[(Family, Proto)],
        slots: usize,
        templates: bool,
    ) -> Result<Self, String> {
        if packet_size < MIN_FRAME_LEN {
            return Err(format!(
                "traffic.packet_size {packet_size} is below the {MIN_FRAME_LEN}-byte minimum Ethernet frame"
            ));
        }
        let mut layouts = [None; 4];
        let mut largest_payload = 0;
        for &(family, proto) in mixes {
            let tuple = space
                .tuple(family, proto.number(), 0, 1)
                .ok_or_else(|| "the client tuple space is empty".to_string())?;
            let headers = layout_of(&spec(local_mac, tuple, 0, &[]));
            let payload_len = headers
                .payload_len_for(packet_size)
                .filter(|&n| n >= Stamp::LEN)
                .ok_or_else(|| {
                    format!(
                        "traffic.packet_size {packet_size} cannot hold the {} bytes of {} headers \
                         plus the {}-byte stamp",
                        headers.payload_offset(),
                        mix_name(family, proto),
                        Stamp::LEN
                    )
                })?;
            let zeros = vec![0u8; payload_len];
            let layout = layout_of(&spec(local_mac, tuple, 0, &zeros));
            layouts[kind(family, proto)] = Some(layout);
            largest_payload = largest_payload.max(payload_len);
        }
        let template_bytes = if templates {
            slots
                .checked_mul(packet_size)
                .ok_or_else(|| "template memory overflows".to_string())?
        } else {
            0
        };
        Ok(FrameWriter {
            packet_size,
            local_mac,
            space,
            layouts,
            templates: vec![0u8; template_bytes],
            payload: vec![0u8; largest_payload],
        })
    }

    /// Bytes of every frame.
    pub(crate) fn packet_size(&self) -> usize {
        self.packet_size
    }

    /// Whether this writer keeps templates.
    pub(crate) fn has_templates(&self) -> bool {
        !self.templates.is_empty()
    }

    /// The tuple space flows are drawn from.
    pub(crate) fn space(&self) -> &TupleSpace {
        &self.space
    }

    /// Builds `flow`'s template into `slot` (stamp seq 0, not last, TCP ACK|PSH) and returns
    /// whether the slot now holds one; without templates, or for a slot out of range, `false`,
    /// and the flow's packets are built per packet.
    pub(crate) fn set_template(&mut self, slot: usize, flow: &Flow) -> bool {
        let size = self.packet_size;
        let Some(start) = slot.checked_mul(size) else {
            return false;
        };
        let stamp = Stamp {
            owner: flow.owner,
            last: false,
            flow: flow.id,
            seq: 0,
        };
        let Some(tuple) = flow.tuple(&self.space) else {
            return false;
        };
        let Some(layout) = self.layouts[kind(flow.family, flow.proto)] else {
            return false;
        };
        let payload_len = layout.payload_len();
        let Some(payload) = self.payload.get_mut(..payload_len) else {
            return false;
        };
        stamp.write(payload);
        let frame_spec = spec(self.local_mac, tuple, TCP_DATA, payload);
        let Some(end) = start.checked_add(size) else {
            return false;
        };
        match self.templates.get_mut(start..end) {
            Some(template) => matches!(build_frame(template, &frame_spec), Ok(n) if n == size),
            None => false,
        }
    }

    /// Writes the packet of `flow` in `slot` carrying `stamp` with `tcp_flags` to the start of
    /// `buf`; returns the frame length (always `packet_size`). Uses the slot's template when the
    /// flow has one and the flags are the template's.
    #[inline]
    pub(crate) fn write(
        &mut self,
        slot: usize,
        flow: &Flow,
        stamp: &Stamp,
        tcp_flags: u8,
        buf: &mut [u8],
    ) -> Result<usize, BuildError> {
        let size = self.packet_size;
        let too_small = BuildError::BufferTooSmall {
            needed: size,
            available: buf.len(),
        };
        // A flow of a mix the writer was not made for cannot occur; it would get no frame.
        let layout = self.layouts[kind(flow.family, flow.proto)].ok_or(too_small)?;
        let flags_match = flow.proto == Proto::Udp || tcp_flags == TCP_DATA;
        if flow.templated && flags_match {
            let template = slot
                .checked_mul(size)
                .and_then(|start| self.templates.get(start..start.checked_add(size)?));
            if let Some(template) = template {
                let frame = buf.get_mut(..size).ok_or(too_small)?;
                frame.copy_from_slice(template);
                layout.patch_payload(frame, 0, &stamp.to_bytes())?;
                return Ok(size);
            }
        }
        let payload_len = layout.payload_len();
        let tuple = flow.tuple(&self.space).ok_or(too_small)?;
        let payload = self.payload.get_mut(..payload_len).ok_or(too_small)?;
        stamp.write(payload);
        build_frame(buf, &spec(self.local_mac, tuple, tcp_flags, payload))
    }
}

fn mix_name(family: Family, proto: Proto) -> String {
    let ip = match family {
        Family::V4 => "IPv4",
        Family::V6 => "IPv6",
    };
    format!("Ethernet/{ip}/{proto}")
}

fn spec(local_mac: [u8; 6], tuple: FiveTuple, tcp_flags: u8, payload: &[u8]) -> FrameSpec<'_> {
    let mut src_mac = CLIENT_MAC;
    if src_mac == local_mac {
        // A port configured with the client's address still must not receive from itself.
        src_mac[5] ^= 1;
    }
    FrameSpec {
        src_mac,
        dst_mac: local_mac,
        vlan: None,
        tuple,
        tcp_flags,
        payload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowsteer_nic::wire::{classify, Classified};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
    const ALL_MIXES: [(Family, Proto); 4] = [
        (Family::V4, Proto::Tcp),
        (Family::V4, Proto::Udp),
        (Family::V6, Proto::Tcp),
        (Family::V6, Proto::Udp),
    ];

    fn space() -> TupleSpace {
        TupleSpace::new(
            Ipv4Addr::new(198, 18, 0, 1),
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
        )
    }

    fn flow(family: Family, proto: Proto, index: u64) -> Flow {
        Flow {
            index,
            id: 40 + index as u32,
            seq: 0,
            rss_hash: 0,
            owner: 3,
            dst_port: 8003,
            family,
            proto,
            opening: false,
            templated: false,
        }
    }

    #[test]
    fn template_patch_equals_a_full_build() {
        for size in [90usize, 91, 128, 1514] {
            let mut templated =
                FrameWriter::new(size, MAC, space(), &ALL_MIXES, 4, true).expect("fits");
            let mut built =
                FrameWriter::new(size, MAC, space(), &ALL_MIXES, 0, false).expect("fits");
            assert!(templated.has_templates() && !built.has_templates());
            let kinds = [
                (Family::V4, Proto::Tcp),
                (Family::V4, Proto::Udp),
                (Family::V6, Proto::Tcp),
                (Family::V6, Proto::Udp),
            ];
            for (slot, (family, proto)) in kinds.into_iter().enumerate() {
                let mut f = flow(family, proto, 70_000 + slot as u64);
                f.templated = templated.set_template(slot, &f);
                assert!(f.templated);
                for seq in [0u32, 1, 0xffff, 0x1_0000, u32::MAX] {
                    for last in [false, true] {
                        let stamp = Stamp {
                            owner: f.owner,
                            last,
                            flow: f.id,
                            seq,
                        };
                        let (mut a, mut b) = ([0u8; 1600], [0u8; 1600]);
                        let na = templated
                            .write(slot, &f, &stamp, TCP_DATA, &mut a)
                            .expect("write");
                        let nb = built
                            .write(slot, &f, &stamp, TCP_DATA, &mut b)
                            .expect("build");
                        assert_eq!((na, nb), (size, size));
                        assert_eq!(
                            a[..size],
                            b[..size],
                            "{family:?}/{proto:?} size {size} seq {seq}"
                        );
                        let Ok(Classified::Flow { payload_offset, .. }) = classify(&a[..size])
                        else {
                            panic!("generated frame must classify as a flow");
                        };
                        assert_eq!(Stamp::read(&a[payload_offset..size]), Some(stamp));
                    }
                }
            }
        }
    }

    #[test]
    fn too_small_frames_are_refused() {
        // IPv6 + TCP headers are 74 bytes: 89 leaves 15 bytes, one short of a stamp.
        let err = FrameWriter::new(89, MAC, space(), &ALL_MIXES, 1, true)
            .expect_err("no room for the stamp");
        assert!(err.contains("89"), "{err}");
        assert!(FrameWriter::new(59, MAC, space(), &[(Family::V4, Proto::Udp)], 1, true).is_err());
        let mut writer = FrameWriter::new(128, MAC, space(), &[(Family::V4, Proto::Tcp)], 1, true)
            .expect("fits");
        let f = flow(Family::V4, Proto::Tcp, 1);
        let stamp = Stamp {
            owner: 0,
            last: false,
            flow: 0,
            seq: 0,
        };
        assert!(matches!(
            writer.write(0, &f, &stamp, TCP_DATA, &mut [0u8; 100]),
            Err(BuildError::BufferTooSmall { .. })
        ));
        assert!(
            !writer.set_template(5, &f),
            "slot out of range has no template"
        );
    }
}
