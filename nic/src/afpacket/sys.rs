//! The AF_PACKET kernel ABI this backend uses beyond what every `libc` 0.2 release exports:
//! socket options, ring structures and status bits of `include/uapi/linux/if_packet.h`.
//!
//! Recent `libc` releases carry some of these, older ones do not; defining them here, against the
//! kernel header, keeps the ring layout in one place with size and offset checks the compiler
//! enforces. Socket calls, `sockaddr_ll`, `ifreq` and `SOL_PACKET` come from `libc`.

use std::mem::{offset_of, size_of};

use libc::c_int;

/// `setsockopt` level-`SOL_PACKET` option: configure the receive ring (`tpacket_req` for
/// TPACKET_V2, `tpacket_req3` for TPACKET_V3).
pub(super) const PACKET_RX_RING: c_int = 5;
/// `getsockopt`: `tpacket_stats_v3` (TPACKET_V3) or its first two fields, `tpacket_stats`
/// (TPACKET_V2), cleared by the read.
pub(super) const PACKET_STATISTICS: c_int = 6;
/// Ring format version; must precede `PACKET_RX_RING`.
pub(super) const PACKET_VERSION: c_int = 10;
/// Join (set) or query (get) a fanout group: `id | (type | flags) << 16`.
pub(super) const PACKET_FANOUT: c_int = 18;
/// Transmit straight to the driver queue, skipping the qdisc layer.
pub(super) const PACKET_QDISC_BYPASS: c_int = 20;
/// Do not deliver frames this host transmits on the interface.
pub(super) const PACKET_IGNORE_OUTGOING: c_int = 23;

/// Fanout by the flow hash of the frame (as NIC RSS spreads by hash).
pub(super) const PACKET_FANOUT_HASH: u32 = 0;
/// Fanout round robin over the members.
pub(super) const PACKET_FANOUT_LB: u32 = 1;
/// Fanout to the member indexed by the receiving CPU.
pub(super) const PACKET_FANOUT_CPU: u32 = 2;
/// The kernel picks an unused group id for the first member (read back with `getsockopt`).
pub(super) const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;
/// The group does not receive frames the host transmits (the group's hook replaces each
/// member's own, so the per-socket `PACKET_IGNORE_OUTGOING` no longer applies once joined).
pub(super) const PACKET_FANOUT_FLAG_IGNORE_OUTGOING: u32 = 0x4000;

/// `enum tpacket_versions`: `TPACKET_V2` (one frame per fixed-size slot).
pub(super) const TPACKET_V2: c_int = 1;
/// `enum tpacket_versions`: `TPACKET_V3` (variable-size frames in blocks).
pub(super) const TPACKET_V3: c_int = 2;

/// Block (V3) or frame slot (V2) owned by the kernel.
pub(super) const TP_STATUS_KERNEL: u32 = 0;
/// Block (V3) or frame slot (V2) handed to user space.
pub(super) const TP_STATUS_USER: u32 = 1 << 0;
/// The frame's L4 checksum is partial (`CHECKSUM_PARTIAL`): the sender offloaded it.
pub(super) const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
/// `hv1.tp_vlan_tci` holds a VLAN tag the kernel removed from the frame.
pub(super) const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
/// `hv1.tp_vlan_tpid` holds the tag's TPID.
pub(super) const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

/// `tp_feature_req_word` bit: fill `hv1.tp_rxhash` with the skb's flow hash.
pub(super) const TP_FT_REQ_FILL_RXHASH: u32 = 1;

/// Frame headers and frames start on 16-byte boundaries (`TPACKET_ALIGNMENT`).
pub(super) const TPACKET_ALIGNMENT: usize = 16;

/// `struct tpacket_req3`: the receive ring's geometry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct TpacketReq3 {
    pub(super) tp_block_size: u32,
    pub(super) tp_block_nr: u32,
    pub(super) tp_frame_size: u32,
    pub(super) tp_frame_nr: u32,
    pub(super) tp_retire_blk_tov: u32,
    pub(super) tp_sizeof_priv: u32,
    pub(super) tp_feature_req_word: u32,
}

/// `struct tpacket_req`: the TPACKET_V2 receive ring's geometry (frames never straddle a
/// block; `tp_frame_nr` must be exactly `tp_block_size / tp_frame_size * tp_block_nr`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct TpacketReq {
    pub(super) tp_block_size: u32,
    pub(super) tp_block_nr: u32,
    pub(super) tp_frame_size: u32,
    pub(super) tp_frame_nr: u32,
}

/// `struct tpacket2_hdr`: the header at the start of every TPACKET_V2 frame slot. It has no
/// flow hash field (only TPACKET_V3's `tpacket_hdr_variant1` has `tp_rxhash`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Tpacket2Hdr {
    pub(super) tp_status: u32,
    pub(super) tp_len: u32,
    pub(super) tp_snaplen: u32,
    pub(super) tp_mac: u16,
    pub(super) tp_net: u16,
    pub(super) tp_sec: u32,
    pub(super) tp_nsec: u32,
    pub(super) tp_vlan_tci: u16,
    pub(super) tp_vlan_tpid: u16,
    pub(super) tp_padding: [u8; 4],
}

/// `struct tpacket_stats_v3`: counters since the last read.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct TpacketStatsV3 {
    pub(super) tp_packets: u32,
    pub(super) tp_drops: u32,
    pub(super) tp_freeze_q_cnt: u32,
}

/// `struct tpacket3_hdr` with its only variant, `struct tpacket_hdr_variant1`, inlined.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Tpacket3Hdr {
    pub(super) tp_next_offset: u32,
    pub(super) tp_sec: u32,
    pub(super) tp_nsec: u32,
    pub(super) tp_snaplen: u32,
    pub(super) tp_len: u32,
    pub(super) tp_status: u32,
    pub(super) tp_mac: u16,
    pub(super) tp_net: u16,
    pub(super) tp_rxhash: u32,
    pub(super) tp_vlan_tci: u32,
    pub(super) tp_vlan_tpid: u16,
    pub(super) hv1_padding: u16,
    pub(super) tp_padding: [u8; 8],
}

/// `struct tpacket_bd_ts`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct TpacketBdTs {
    pub(super) ts_sec: u32,
    pub(super) ts_nsec: u32,
}

/// `struct tpacket_hdr_v1`: the block header proper.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct TpacketHdrV1 {
    pub(super) block_status: u32,
    pub(super) num_pkts: u32,
    pub(super) offset_to_first_pkt: u32,
    pub(super) blk_len: u32,
    pub(super) seq_num: u64,
    pub(super) ts_first_pkt: TpacketBdTs,
    pub(super) ts_last_pkt: TpacketBdTs,
}

/// `struct tpacket_block_desc` with `union tpacket_bd_header_u` (one member) inlined.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct TpacketBlockDesc {
    pub(super) version: u32,
    pub(super) offset_to_priv: u32,
    pub(super) hdr: TpacketHdrV1,
}

/// Byte offset of `block_status` from the start of a block.
pub(super) const BLOCK_STATUS_OFFSET: usize =
    offset_of!(TpacketBlockDesc, hdr) + offset_of!(TpacketHdrV1, block_status);

/// The frame header length the kernel reserves (`TPACKET3_HDRLEN` without the sockaddr_ll).
pub(super) const TPACKET3_HDR_LEN: usize = size_of::<Tpacket3Hdr>();
/// The same for TPACKET_V2 (`TPACKET2_HDRLEN` without the sockaddr_ll).
pub(super) const TPACKET2_HDR_LEN: usize = size_of::<Tpacket2Hdr>();
/// Byte offset of `tp_status` from the start of a TPACKET_V2 frame slot.
pub(super) const FRAME_STATUS_OFFSET: usize = offset_of!(Tpacket2Hdr, tp_status);

// The layouts the kernel writes; a mismatch would misread every frame.
const _: () = assert!(size_of::<TpacketReq3>() == 28);
const _: () = assert!(size_of::<TpacketStatsV3>() == 12);
const _: () = assert!(size_of::<TpacketReq>() == 16);
const _: () = assert!(size_of::<Tpacket2Hdr>() == 32);
const _: () = assert!(offset_of!(Tpacket2Hdr, tp_vlan_tci) == 24);
const _: () = assert!(FRAME_STATUS_OFFSET == 0);
const _: () = assert!(size_of::<Tpacket3Hdr>() == 48);
const _: () = assert!(offset_of!(Tpacket3Hdr, tp_rxhash) == 28);
const _: () = assert!(size_of::<TpacketHdrV1>() == 40);
const _: () = assert!(size_of::<TpacketBlockDesc>() == 48);
const _: () = assert!(BLOCK_STATUS_OFFSET == 8);
