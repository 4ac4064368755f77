//! The AF_PACKET port: a NIC backend on a Linux interface (a NIC, a veth, a bridge port), with
//! one AF_PACKET socket per queue joined into one `PACKET_FANOUT` group.
//!
//! # Data path
//!
//! - Wire → host: each queue owns a socket bound to the interface for every protocol, with a
//!   receive ring mapped into the process: a frame ring (TPACKET_V2, one frame per slot) or a
//!   block ring (TPACKET_V3, frames packed into blocks), see "Receive rings". The fanout group
//!   spreads the interface's frames over the queues' sockets, each frame to exactly one; the
//!   kernel copies it into the socket's ring. `rx_burst` walks what user space owns from a
//!   cursor kept across calls, copies each frame into a pool buffer with a flow hash as its
//!   receive hash (as a NIC writes `hash.rss`), and returns each slot, or each block once all
//!   its frames are consumed, to the kernel. Frames are copied because ring memory must go
//!   back to the kernel in ring order, long before the engine frees the buffers. No system
//!   call per packet or per burst.
//! - Host → wire: each queue owns a second, send-only socket (protocol 0, so it receives
//!   nothing), bound to the interface, with `PACKET_QDISC_BYPASS` when configured. `tx_burst`
//!   hands the whole burst to one non-blocking `sendmmsg` and frees what the kernel took.
//! - Transmit-only queues ([`AfPacketPort::take_transmit_queue`]): a stack thread beyond the
//!   queue pairs (more threads than queues) gets a send socket of its own, made like a queue
//!   pair's and bound to the interface, but with no receive ring and outside the fanout group,
//!   so it transmits without going through another thread and receives nothing. Its sends and
//!   refusals are counted like a queue pair's (`AfPacketStats::transmit_only`).
//! - The receive sockets set `PACKET_IGNORE_OUTGOING` and the group
//!   `PACKET_FANOUT_FLAG_IGNORE_OUTGOING`: frames this host transmits on the interface (this
//!   port's own included) are not received back.
//!
//! # Fanout modes
//!
//! | [`Fanout`] | kernel mode | behaves like | use |
//! |---|---|---|---|
//! | `Hash` | `PACKET_FANOUT_HASH` | NIC RSS: a flow always lands on one queue | `balance = "rss"`, or software balancing with fewer misdirected packets |
//! | `Lb` | `PACKET_FANOUT_LB` | a NIC without RSS: round robin, a flow's frames on every queue | exercising software balancing |
//! | `Cpu` | `PACKET_FANOUT_CPU` | a NIC without RSS: the queue of the CPU that received the frame | software balancing on a single-queue NIC |
//!
//! The fanout group id is chosen by the kernel (`PACKET_FANOUT_FLAG_UNIQUEID`) for the first
//! socket and read back for the others, so two ports on one interface, in one process or
//! several, never join each other's group.
//!
//! # Receive rings
//!
//! | [`RxRingKind`] | kernel | a frame is visible | memory per frame | flow hash | use |
//! |---|---|---|---|---|---|
//! | `Frames` (default) | TPACKET_V2 | as soon as the kernel wrote it | one slot (2 KiB at MTU 1500) whatever its size | software: symmetric Toeplitz of addresses and ports | a server in front of clients: request/response latency |
//! | `Blocks` | TPACKET_V3 | when its block is full or `block_timeout_ms` (≥ 1 ms) retired it | its size plus about 90 bytes of header, 16-byte aligned | the kernel's skb hash (`TP_FT_REQ_FILL_RXHASH`) | bulk and small-frame floods where batching matters more than latency |
//!
//! - Frame ring: each slot carries its own status word; `rx_burst` reads a slot with one
//!   acquire load and returns it with one release store. A frame is visible as soon as the
//!   kernel wrote it: on a lightly loaded port the receive latency is the poll interval. Each
//!   frame takes a whole slot, so a ring of small frames wastes most of its memory, and a
//!   backlog of frames is read from slots 2 KiB apart, each its own cache lines and every
//!   second one a new page (the walk prefetches the next slot's first lines). TPACKET_V2 carries no flow hash, so the ring computes one (one
//!   header parse and up to 36 table lookups per frame, a small part of the frame's cost);
//!   like the kernel's it is the same for both directions and every frame of a flow, but it
//!   is not the kernel's value (which decides the `hash` fanout). The kernel reports no
//!   freezes for V2 (`kernel_freezes` stays 0); drops are counted in `kernel_drops` as for
//!   blocks.
//! - Block ring: TPACKET_V3 hands a block to user space only when it is full or when
//!   `block_timeout_ms` retires it. On a lightly loaded port the timeout is therefore the
//!   latency floor: a lone frame waits up to `block_timeout_ms` (at least 1 ms, the kernel's
//!   unit) before `rx_burst` can see it, whatever `engine.idle` is. Under load blocks fill long
//!   before that, small frames are packed 160 bytes apart, and one status load and store serve
//!   every frame of a block.
//!
//! Which to use: the frame ring costs a status word per frame, the block ring one per block
//! (cheaper when frames queue up) but adds up to `block_timeout_ms` to every frame of a port
//! that does not fill blocks. Measured latency, bulk throughput and per-frame cost of both are
//! in BENCHMARKS.md ("AF_PACKET: the frame ring against the block ring").
//!
//! The frame ring is the default: a server in front of real clients answers requests, and a
//! request's latency is what its client sees; a block ring adds up to `block_timeout_ms` to
//! every packet of a flow that does not fill blocks, which also caps a window-limited TCP
//! connection. The block ring is cheaper per frame when frames queue up: choose it for floods of small frames or many busy flows, where the engine thread
//! is saturated and blocks fill long before their timeout.
//!
//! # Ring sizing
//!
//! The ring is what absorbs the frames that arrive while the queue's owner is not polling: a
//! stack thread descheduled on a shared core, a long burst of application work. When it is
//! full the kernel drops (counted in `kernel_drops`). The defaults hold tens of milliseconds,
//! the time a thread can lose its core on a busy 2-core machine:
//!
//! - `frames = 8192` slots: 16 MiB per queue at MTU 1500 (slots are the MTU plus 84 bytes,
//!   rounded up to a power of two: 2 KiB at MTU 1500, 16 KiB at MTU 9000, so 128 MiB per
//!   queue there). 8192 frames of any size: about 33 ms of full-size frames at 3 Gbit/s, 21 ms
//!   at 4.8 Gbit/s (one stack thread takes a bulk TCP transfer at 2.3–4.8 Gbit/s), 8 ms of a
//!   1 Mpps small-frame flood.
//! - `blocks = 64` × `block_size = 256 KiB`: 16 MiB per queue, 10 400 full-size frames when
//!   blocks fill (fewer when the 1 ms timer retires part-filled ones: 7 700 kept under a
//!   3 Gbit/s flood), about 100 000 small ones.
//!
//! TCP senders cannot have more in flight than the windows the stack advertises
//! (`stack.tcp_rx_buffer` per connection, 64 KiB: 8192 slots hold the full windows of about 170
//! connections), so ring drops under TCP mean many busy connections or a stall longer than the
//! ring. What each default keeps through a 40 ms stall is in BENCHMARKS.md.
//!
//! The memory is locked kernel memory, mapped (and populated) into the process, per queue:
//! `queues × 16 MiB` with the defaults. Raise `frames` or `blocks` when `kernel_drops` grows
//! while the engine keeps up on average (bursts, descheduling); lower them on a machine short
//! of memory, at the cost of drops during stalls. `block_timeout_ms` matters only to the
//! block ring; `frames` only to the frame ring.
//!
//! Frames larger than a block or a slot are truncated by the kernel and dropped here (counted
//! `rx_dropped_oversize`), as are frames larger than the pool's data room. Turn GRO/LRO off on
//! the interface (`ethtool -K <if> gro off lro off`) so that the port sees wire-sized frames,
//! and on a veth turn tx checksum offload off on the peer (`ethtool -K <peer> tx off`): frames
//! a local peer sends with offloaded checksums arrive with partial L4 checksums (counted
//! `rx_checksum_partial`).
//!
//! # Ownership and concurrency
//!
//! - [`AfPacketPort`] is `Send + Sync`; `stats` may run from any thread.
//! - A queue pair is taken by one owner at a time ([`AfPacketPort::take_queue`]; taking it
//!   again fails until the [`AfPacketQueue`] is dropped). Only the owner walks the ring,
//!   returns slots or blocks and sends, and only it writes its owner counters (plain stores).
//! - The kernel's ring counters (`PACKET_STATISTICS`) are cleared by every read, so each reader
//!   (the owner every 16384 polls and when it drops, `stats` on every call) adds what it read
//!   with an atomic add.
//! - Sockets and rings live as long as the port or any queue (an `Arc`); the last one closes
//!   every socket and unmaps every ring.
//!
//! # Costs
//!
//! | operation | cost |
//! |---|---|
//! | `rx_burst` of n frames, frame ring | n acquire loads, n header reads + hashes + copies + buffer allocs, n release stores, a few counter stores |
//! | `rx_burst` of n frames, block ring | one acquire load per block, n header reads + copies + buffer allocs, one release store per finished block, a few counter stores |
//! | `rx_burst` on an idle queue | one acquire load |
//! | waiting on `rx_wait_fd` ([`crate::wait::wait_readable`]) | one `ppoll` system call (sleeps until a frame is handed over or the timeout) |
//! | `tx_burst` of n frames | one `sendmmsg` system call (more only if the kernel takes part), n buffer frees |
//! | `stats` | one `getsockopt` per queue, a few relaxed loads per queue |
//! | `open` | per queue: 2 sockets, 5–6 `setsockopt`, 2 `bind`, one `mmap` of the ring (populated) |

mod blocks;
mod error;
mod frames;
mod mapping;
mod queue;
mod ring;
mod socket;
mod stats;
mod sys;
mod tx;

pub use error::AfPacketError;
pub use queue::AfPacketQueue;
pub use stats::{AfPacketStats, QueueStats};

use std::ffi::CString;
use std::fmt;
use std::io;
use std::mem::size_of;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use blocks::BlockRing;
use frames::FrameRing;
use ring::{RxCursor, RxRing};
use stats::QueueCounters;

use crate::port::{mac_text, Port, PortControl};
use sys::{
    TpacketBlockDesc, TpacketReq, TpacketReq3, TpacketStatsV3, PACKET_FANOUT, PACKET_FANOUT_CPU,
    PACKET_FANOUT_FLAG_IGNORE_OUTGOING, PACKET_FANOUT_FLAG_UNIQUEID, PACKET_FANOUT_HASH,
    PACKET_FANOUT_LB, PACKET_IGNORE_OUTGOING, PACKET_QDISC_BYPASS, PACKET_RX_RING,
    PACKET_STATISTICS, PACKET_VERSION, TPACKET2_HDR_LEN, TPACKET3_HDR_LEN, TPACKET_ALIGNMENT,
    TPACKET_V2, TPACKET_V3, TP_FT_REQ_FILL_RXHASH,
};

/// Most queues one port has (the kernel's default fanout group size).
pub const MAX_QUEUES: u16 = 256;
/// Largest ring block.
pub const MAX_BLOCK_SIZE: u32 = 1 << 24;
/// Fewest blocks per ring: with one, the kernel has nowhere to write while user space reads.
pub const MIN_BLOCKS: u32 = 2;
/// Most blocks per ring.
pub const MAX_BLOCKS: u32 = 4096;
/// Longest block retire timeout.
pub const MAX_BLOCK_TIMEOUT_MS: u32 = 10_000;
/// Fewest frame slots per frame ring.
pub const MIN_FRAMES: u32 = 16;
/// Most frame slots per frame ring.
pub const MAX_FRAMES: u32 = 1 << 20;
/// Bound on the rings' total size (`queues × block_size × blocks`, or `queues × frames ×` the
/// slot size): the rings are locked kernel memory.
pub const MAX_RING_BYTES: u64 = 1 << 32;

/// The `tp_frame_size` the ring is declared with. TPACKET_V3 packs frames by their real size;
/// the kernel only checks that blocks divide into frames of this size.
const RING_FRAME_SIZE: u32 = 2048;
/// Ethernet header plus one VLAN tag left in the frame.
const LINK_HEADER_MAX: u32 = 18;
/// `ARPHRD_ETHER` from `include/uapi/linux/if_arp.h`.
const ARPHRD_ETHER: u16 = 1;
/// The Ethernet header the kernel places before the network header in a ring frame.
const ETH_HEADER_LEN: u32 = 14;
/// The kernel allocation unit of a frame ring: slots are grouped into blocks of this size (or
/// one slot, if larger), which must be whole pages. Large enough to keep the block count small,
/// small enough for the kernel to find contiguous pages.
const FRAME_RING_BLOCK_SIZE: u64 = 128 * 1024;

/// Which kind of receive ring each queue uses (see the module documentation, "Receive rings").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RxRingKind {
    /// TPACKET_V2: one frame per fixed-size slot, visible to user space as soon as the kernel
    /// has written it. The lowest latency; one slot per frame whatever its size.
    #[default]
    Frames,
    /// TPACKET_V3: frames packed by size into blocks, handed over when a block is full or its
    /// retire timeout (`block_timeout_ms`) expires. Densest and fewest cache lines per frame
    /// under load; a lone frame waits for the timeout.
    Blocks,
}

/// How the kernel spreads the interface's frames over the queues (see the module table).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Fanout {
    /// By flow hash, as NIC RSS: one flow, one queue.
    #[default]
    Hash,
    /// Round robin: a NIC without RSS.
    Lb,
    /// By the receiving CPU: a NIC without RSS.
    Cpu,
}

impl Fanout {
    fn kernel_mode(self) -> u32 {
        match self {
            Fanout::Hash => PACKET_FANOUT_HASH,
            Fanout::Lb => PACKET_FANOUT_LB,
            Fanout::Cpu => PACKET_FANOUT_CPU,
        }
    }
}

/// Configuration of an [`AfPacketPort`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfPacketConfig {
    /// The Linux interface (`ip link` name), 1..=15 bytes.
    pub interface: String,
    /// Queue pairs (one receive ring and one send socket each), `1..=MAX_QUEUES`.
    pub queues: u16,
    /// How frames are spread over the queues.
    pub fanout: Fanout,
    /// The receive ring kind.
    pub rx_ring: RxRingKind,
    /// Frame slots per frame ring (`RxRingKind::Frames`): a power of two,
    /// `MIN_FRAMES..=MAX_FRAMES`. Each slot holds one frame of the interface MTU (2 KiB at MTU
    /// 1500); the kernel may round the ring up to whole pages.
    pub frames: u32,
    /// Block rings (`RxRingKind::Blocks`): bytes per ring block: a power of two from the page size to `MAX_BLOCK_SIZE`, large
    /// enough for one frame of the interface MTU.
    pub block_size: u32,
    /// Block rings: blocks per ring, `MIN_BLOCKS..=MAX_BLOCKS`.
    pub blocks: u32,
    /// Block rings: milliseconds after which the kernel hands over a partly filled block, `1..=10000`: the
    /// receive latency of a lightly loaded port (see the module documentation).
    pub block_timeout_ms: u32,
    /// Transmit straight to the driver, skipping the qdisc (`PACKET_QDISC_BYPASS`): no traffic
    /// shaping, and frames are dropped rather than queued when the device queue is full.
    pub qdisc_bypass: bool,
}

impl Default for AfPacketConfig {
    /// No interface (it must be set), one queue, hash fanout, a frame ring of 8192 slots (16
    /// MiB at MTU 1500); for block rings 64 blocks of 256 KiB (16 MiB) and a 1 ms block
    /// timeout; qdisc bypass on. See the module documentation, "Ring sizing", for why.
    fn default() -> Self {
        AfPacketConfig {
            interface: String::new(),
            queues: 1,
            fanout: Fanout::Hash,
            rx_ring: RxRingKind::Frames,
            frames: 8192,
            block_size: 256 * 1024,
            blocks: 64,
            block_timeout_ms: 1,
            qdisc_bypass: true,
        }
    }
}

/// The sockets, ring and counters of one queue pair, shared by the port and the queue's owner.
struct QueueShared {
    // Unmapped before the receive socket closes (field order is drop order).
    ring: RxRing,
    rx_fd: OwnedFd,
    tx_fd: OwnedFd,
    taken: AtomicBool,
    /// Where the last owner stopped; read when the queue is taken, written when it is released.
    cursor: Mutex<RxCursor>,
    counters: QueueCounters,
}

impl QueueShared {
    fn sync_kernel_stats(&self) {
        // Only fails for a bad descriptor or buffer, neither of which can happen here; a failed
        // read clears nothing, so the counts are read next time.
        if let Ok(read) =
            socket::get_option::<TpacketStatsV3>(&self.rx_fd, libc::SOL_PACKET, PACKET_STATISTICS)
        {
            self.counters.kernel.add(&read);
        }
    }
}

/// The send socket and counters of one transmit-only queue, shared by the port and its owner.
struct SenderShared {
    fd: OwnedFd,
    taken: AtomicBool,
    /// Only the transmit counters move.
    counters: QueueCounters,
}

/// An AF_PACKET NIC on one Linux interface. See the module documentation.
pub struct AfPacketPort {
    queues: Arc<[QueueShared]>,
    /// Transmit-only queues, indexed by owner minus the queue pairs; opened when first taken.
    senders: Mutex<Vec<Option<Arc<SenderShared>>>>,
    qdisc_bypass: bool,
    interface: String,
    ifindex: u32,
    mac: [u8; 6],
    mtu: u32,
    fanout: Fanout,
    fanout_group: u16,
    rx_ring: RxRingKind,
    ring_bytes: u64,
    ring_frames: Option<u32>,
}

impl AfPacketPort {
    /// Opens `cfg.queues` queue pairs on `cfg.interface`.
    ///
    /// Checks, in order, each with its own error: the name is valid, the interface exists, it
    /// is up, the configuration values are in range, it is an Ethernet interface whose MTU
    /// fits a block, and AF_PACKET sockets are allowed (root or `CAP_NET_RAW`). Then creates
    /// per queue a receive socket with its TPACKET_V3 ring and a send socket, and joins the
    /// receive sockets into one fanout group. Everything created is closed again on error.
    pub fn open(cfg: AfPacketConfig) -> Result<AfPacketPort, AfPacketError> {
        let name = checked_name(&cfg.interface)?;
        let interface = cfg.interface.as_str();
        let missing = || AfPacketError::InterfaceMissing {
            interface: interface.to_owned(),
        };
        let ifindex = socket::interface_index(&name).ok_or_else(missing)?;
        let info = socket::interface_info(&name).map_err(|error| {
            if error.raw_os_error() == Some(libc::ENODEV) {
                missing()
            } else {
                AfPacketError::os(interface, "reading the interface flags", &error)
            }
        })?;
        if !info.up {
            return Err(AfPacketError::InterfaceDown {
                interface: interface.to_owned(),
            });
        }
        check_values(&cfg)?;
        if info.hardware_type != ARPHRD_ETHER {
            return Err(AfPacketError::NotEthernet {
                interface: interface.to_owned(),
                hardware_type: info.hardware_type,
            });
        }
        let geometry = match cfg.rx_ring {
            RxRingKind::Frames => {
                let geometry = FrameGeometry::new(cfg.frames, info.mtu, socket::page_size());
                if u64::from(cfg.queues) * geometry.bytes() > MAX_RING_BYTES {
                    return Err(AfPacketError::FrameRingMemory {
                        queues: cfg.queues,
                        frames: cfg.frames,
                        frame_size: geometry.frame_size,
                    });
                }
                Some(geometry)
            }
            RxRingKind::Blocks => None,
        };
        if cfg.rx_ring == RxRingKind::Blocks
            && u64::from(cfg.block_size) < block_bytes_for_mtu(info.mtu)
        {
            return Err(AfPacketError::BlockTooSmall {
                interface: interface.to_owned(),
                block_size: cfg.block_size,
                mtu: info.mtu,
            });
        }
        let queues = (0..cfg.queues)
            .map(|_| open_queue(&cfg, geometry, ifindex))
            .collect::<Result<Vec<_>, _>>()?;
        let fanout_group = join_fanout(&queues, cfg.fanout, interface)?;
        Ok(AfPacketPort {
            queues: queues.into(),
            senders: Mutex::new(Vec::new()),
            qdisc_bypass: cfg.qdisc_bypass,
            interface: cfg.interface,
            ifindex,
            mac: info.mac,
            mtu: info.mtu,
            fanout: cfg.fanout,
            fanout_group,
            rx_ring: cfg.rx_ring,
            ring_bytes: geometry.map_or(u64::from(cfg.block_size) * u64::from(cfg.blocks), |g| {
                g.bytes()
            }),
            ring_frames: geometry.map(|g| g.frames()),
        })
    }

    /// The interface name.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The interface's MAC address, read when the port was opened.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The interface MTU (L3 bytes), read when the port was opened.
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// Number of queue pairs.
    pub fn queues(&self) -> u16 {
        self.queues.len() as u16
    }

    /// The fanout mode.
    pub fn fanout(&self) -> Fanout {
        self.fanout
    }

    /// The kernel's id of this port's fanout group.
    pub fn fanout_group(&self) -> u16 {
        self.fanout_group
    }

    /// The receive ring kind.
    pub fn rx_ring(&self) -> RxRingKind {
        self.rx_ring
    }

    /// Bytes of one queue's receive ring (locked kernel memory, mapped into the process).
    pub fn ring_bytes(&self) -> u64 {
        self.ring_bytes
    }

    /// Frame slots of one queue's frame ring (at least the configured `frames`: the kernel
    /// allocates whole pages); `None` for a block ring.
    pub fn ring_frames(&self) -> Option<u32> {
        self.ring_frames
    }

    /// Takes queue pair `q` for one owner.
    ///
    /// Errors: `q` out of range, or the queue is held by a live [`AfPacketQueue`]. Dropping the
    /// `AfPacketQueue` makes the queue available again, at the ring position it reached.
    pub fn take_queue(&self, q: u16) -> Result<AfPacketQueue, AfPacketError> {
        let shared = self
            .queues
            .get(q as usize)
            .ok_or(AfPacketError::QueueOutOfRange {
                queue: q,
                queues: self.queues(),
            })?;
        // Acquire pairs with the release in `AfPacketQueue::drop`.
        if shared.taken.swap(true, Ordering::AcqRel) {
            return Err(AfPacketError::QueueTaken { queue: q });
        }
        let cursor = *shared
            .cursor
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(AfPacketQueue::new(Arc::clone(&self.queues), q, cursor))
    }

    /// Takes the transmit-only queue of owner `owner` (`owner >= queues()`): a send socket of
    /// its own, bound to the interface with `PACKET_QDISC_BYPASS` as configured, outside the
    /// fanout group and without a receive ring (see the module documentation). The socket is
    /// opened when the owner first takes it and kept for the next one.
    ///
    /// Errors: `owner` has a queue pair, the owner's queue is held by a live
    /// [`AfPacketQueue`], or the kernel refused the socket.
    pub fn take_transmit_queue(&self, owner: u16) -> Result<AfPacketQueue, AfPacketError> {
        let queues = self.queues();
        let slot = owner
            .checked_sub(queues)
            .map(usize::from)
            .ok_or(AfPacketError::TransmitOwner { owner, queues })?;
        let mut senders = self
            .senders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if senders.len() <= slot {
            senders.resize(slot + 1, None);
        }
        let sender = match &senders[slot] {
            Some(sender) => sender.clone(),
            None => {
                let fd = open_send_socket(&self.interface, self.ifindex, self.qdisc_bypass)?;
                let sender = Arc::new(SenderShared {
                    fd,
                    taken: AtomicBool::new(false),
                    counters: QueueCounters::default(),
                });
                senders[slot] = Some(sender.clone());
                sender
            }
        };
        // Acquire pairs with the release in `AfPacketQueue::drop`.
        if sender.taken.swap(true, Ordering::AcqRel) {
            return Err(AfPacketError::TransmitQueueTaken { owner });
        }
        Ok(AfPacketQueue::transmit_only(sender, owner))
    }

    /// Counters of every queue; first reads the kernel's ring counters (one `getsockopt` per
    /// queue), so `kernel_drops` is current.
    pub fn stats(&self) -> AfPacketStats {
        let senders = self
            .senders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        AfPacketStats {
            queues: self
                .queues
                .iter()
                .map(|shared| {
                    shared.sync_kernel_stats();
                    shared.counters.snapshot()
                })
                .collect(),
            transmit_only: senders
                .iter()
                .map(|sender| sender.as_ref().map(|s| s.counters.snapshot()))
                .collect(),
        }
    }
}

impl PortControl for AfPacketPort {
    fn queues(&self) -> u16 {
        AfPacketPort::queues(self)
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn describe(&self) -> String {
        format!(
            "afpacket on {}, {}, fanout {:?}, mtu {}, mac {}",
            self.interface,
            crate::port::queues_text(self.queues()),
            self.fanout,
            self.mtu,
            mac_text(self.mac)
        )
    }

    fn drops(&self) -> Vec<Vec<(&'static str, u64)>> {
        self.stats()
            .queues
            .iter()
            .map(|q| {
                vec![
                    ("kernel_ring_full", q.kernel_drops),
                    ("rx_no_buffer", q.rx_dropped_no_buffer),
                    ("rx_oversize", q.rx_dropped_oversize),
                    ("rx_invalid", q.rx_dropped_invalid),
                ]
            })
            .collect()
    }

    // No `rss`: the kernel's fanout spreads the flows, by a hash the software cannot compute.
    // No `reclaim`: a queue copies each frame out of the kernel's ring as it receives it and
    // frees what it sends, so the port holds no buffer once the owners are gone.
}

impl Port for AfPacketPort {
    type Queue = AfPacketQueue;
    type Error = AfPacketError;

    fn take_queue(&self, queue: u16) -> Result<AfPacketQueue, AfPacketError> {
        AfPacketPort::take_queue(self, queue)
    }

    fn take_transmit_queue(&self, owner: u16) -> Result<Option<AfPacketQueue>, AfPacketError> {
        AfPacketPort::take_transmit_queue(self, owner).map(Some)
    }
}

impl fmt::Debug for AfPacketPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AfPacketPort")
            .field("interface", &self.interface)
            .field("ifindex", &self.ifindex)
            .field("queues", &self.queues.len())
            .field("fanout", &self.fanout)
            .field("fanout_group", &self.fanout_group)
            .field("rx_ring", &self.rx_ring)
            .field("ring_bytes", &self.ring_bytes)
            .field("ring_frames", &self.ring_frames)
            .field("mtu", &self.mtu)
            .finish()
    }
}

/// The name as a C string, or why Linux would refuse it (`dev_valid_name`).
fn checked_name(interface: &str) -> Result<CString, AfPacketError> {
    let invalid = |reason| AfPacketError::InvalidName {
        interface: interface.to_owned(),
        reason,
    };
    if interface.is_empty() {
        return Err(invalid("it is empty"));
    }
    if interface.len() >= libc::IFNAMSIZ {
        return Err(invalid("it is longer than 15 bytes"));
    }
    if interface == "." || interface == ".." {
        return Err(invalid("it is a path component"));
    }
    if interface
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        return Err(invalid("it contains '/', ':', whitespace or NUL"));
    }
    CString::new(interface).map_err(|_| invalid("it contains NUL"))
}

fn check_values(cfg: &AfPacketConfig) -> Result<(), AfPacketError> {
    if cfg.queues == 0 || cfg.queues > MAX_QUEUES {
        return Err(AfPacketError::Queues { queues: cfg.queues });
    }
    let page_size = socket::page_size();
    if !cfg.block_size.is_power_of_two()
        || (cfg.block_size as usize) < page_size
        || cfg.block_size > MAX_BLOCK_SIZE
    {
        return Err(AfPacketError::BlockSize {
            block_size: cfg.block_size,
            page_size,
        });
    }
    if !(MIN_BLOCKS..=MAX_BLOCKS).contains(&cfg.blocks) {
        return Err(AfPacketError::Blocks { blocks: cfg.blocks });
    }
    if !cfg.frames.is_power_of_two() || !(MIN_FRAMES..=MAX_FRAMES).contains(&cfg.frames) {
        return Err(AfPacketError::Frames { frames: cfg.frames });
    }
    if !(1..=MAX_BLOCK_TIMEOUT_MS).contains(&cfg.block_timeout_ms) {
        return Err(AfPacketError::BlockTimeout {
            block_timeout_ms: cfg.block_timeout_ms,
        });
    }
    let bytes = u64::from(cfg.queues) * u64::from(cfg.block_size) * u64::from(cfg.blocks);
    if bytes > MAX_RING_BYTES {
        return Err(AfPacketError::RingMemory {
            queues: cfg.queues,
            block_size: cfg.block_size,
            blocks: cfg.blocks,
        });
    }
    Ok(())
}

/// Block bytes one frame of `mtu` needs: the block descriptor, the frame header with the
/// kernel's alignment padding (`tpacket_rcv` places the network header at
/// `TPACKET_ALIGN(hdrlen + 16)`), and the frame.
fn block_bytes_for_mtu(mtu: u32) -> u64 {
    let align = |n: usize| n.next_multiple_of(TPACKET_ALIGNMENT);
    let descriptor = align(size_of::<TpacketBlockDesc>());
    let frame_header = align(TPACKET3_HDR_LEN + size_of::<libc::sockaddr_ll>() + 16);
    (descriptor + frame_header) as u64 + u64::from(mtu) + u64::from(LINK_HEADER_MAX)
}

/// The layout of a frame ring: slots of `frame_size` bytes grouped into `block_nr` kernel
/// blocks of `block_size` bytes, mapped back to back (so slot i is at `i × frame_size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FrameGeometry {
    frame_size: u32,
    block_size: u32,
    block_nr: u32,
}

impl FrameGeometry {
    /// At least `frames` slots (a power of two) that each hold one frame of `mtu`, in blocks
    /// of whole pages (`page_size`, a power of two).
    fn new(frames: u32, mtu: u32, page_size: usize) -> FrameGeometry {
        let frame_size = frame_bytes_for_mtu(mtu);
        let total = u64::from(frames) * frame_size;
        let block_size = total
            .min(FRAME_RING_BLOCK_SIZE)
            .max(frame_size)
            .max(page_size as u64);
        FrameGeometry {
            frame_size: frame_size as u32,
            block_size: block_size as u32,
            block_nr: total.div_ceil(block_size) as u32,
        }
    }

    fn frames(&self) -> u32 {
        self.block_size / self.frame_size * self.block_nr
    }

    fn bytes(&self) -> u64 {
        u64::from(self.block_size) * u64::from(self.block_nr)
    }
}

/// Slot bytes one frame of `mtu` needs in a frame ring, a power of two: the kernel places the
/// network header at `TPACKET_ALIGN(TPACKET2_HDRLEN + 16)` from the slot start
/// (`tpacket_rcv`), the Ethernet header (and a VLAN tag the kernel did not strip) before it.
fn frame_bytes_for_mtu(mtu: u32) -> u64 {
    let align = |n: usize| n.next_multiple_of(TPACKET_ALIGNMENT);
    let network_offset = align(TPACKET2_HDR_LEN + size_of::<libc::sockaddr_ll>() + 16) as u64;
    let needed =
        network_offset - u64::from(ETH_HEADER_LEN) + u64::from(mtu) + u64::from(LINK_HEADER_MAX);
    needed.next_power_of_two()
}

/// Both sockets and the ring of one queue.
fn open_queue(
    cfg: &AfPacketConfig,
    geometry: Option<FrameGeometry>,
    ifindex: u32,
) -> Result<QueueShared, AfPacketError> {
    let interface = cfg.interface.as_str();
    let os = |operation| move |error: io::Error| AfPacketError::os(interface, operation, &error);
    // Protocol 0 until bound: the socket receives nothing from other interfaces meanwhile.
    let rx_fd =
        socket::packet_socket(0).map_err(socket_error(interface, "opening a receive socket"))?;
    let sol = libc::SOL_PACKET;
    let ring = match geometry {
        Some(geometry) => RxRing::Frames(frame_ring(&rx_fd, geometry, interface)?),
        None => RxRing::Blocks(block_ring(&rx_fd, cfg, interface)?),
    };
    socket::set_option(&rx_fd, sol, PACKET_IGNORE_OUTGOING, &1i32)
        .map_err(os("setting PACKET_IGNORE_OUTGOING"))?;
    socket::bind_to(&rx_fd, ifindex, libc::ETH_P_ALL as u16)
        .map_err(os("binding the receive socket"))?;

    let tx_fd = open_send_socket(interface, ifindex, cfg.qdisc_bypass)?;
    Ok(QueueShared {
        cursor: Mutex::new(ring.start()),
        ring,
        rx_fd,
        tx_fd,
        taken: AtomicBool::new(false),
        counters: QueueCounters::default(),
    })
}

/// The error of a refused `socket` call: missing privileges, or what the kernel said.
fn socket_error<'a>(
    interface: &'a str,
    operation: &'static str,
) -> impl Fn(io::Error) -> AfPacketError + 'a {
    move |error: io::Error| match error.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => AfPacketError::PermissionDenied {
            interface: interface.to_owned(),
        },
        _ => AfPacketError::os(interface, operation, &error),
    }
}

/// A send-only socket (protocol 0, so it receives nothing) bound to the interface, with
/// `PACKET_QDISC_BYPASS` when asked: a queue pair's transmit side, or a transmit-only queue.
fn open_send_socket(
    interface: &str,
    ifindex: u32,
    qdisc_bypass: bool,
) -> Result<OwnedFd, AfPacketError> {
    let os = |operation| move |error: io::Error| AfPacketError::os(interface, operation, &error);
    let tx_fd =
        socket::packet_socket(0).map_err(socket_error(interface, "opening a send socket"))?;
    if qdisc_bypass {
        socket::set_option(&tx_fd, libc::SOL_PACKET, PACKET_QDISC_BYPASS, &1i32)
            .map_err(os("setting PACKET_QDISC_BYPASS"))?;
    }
    socket::bind_to(&tx_fd, ifindex, 0).map_err(os("binding the send socket"))?;
    Ok(tx_fd)
}

/// Selects TPACKET_V2 on `rx_fd`, creates its frame ring and maps it.
fn frame_ring(
    rx_fd: &OwnedFd,
    geometry: FrameGeometry,
    interface: &str,
) -> Result<FrameRing, AfPacketError> {
    let os = |operation| move |error: io::Error| AfPacketError::os(interface, operation, &error);
    let sol = libc::SOL_PACKET;
    socket::set_option(rx_fd, sol, PACKET_VERSION, &TPACKET_V2)
        .map_err(os("selecting TPACKET_V2"))?;
    let req = TpacketReq {
        tp_block_size: geometry.block_size,
        tp_block_nr: geometry.block_nr,
        tp_frame_size: geometry.frame_size,
        tp_frame_nr: geometry.frames(),
    };
    socket::set_option(rx_fd, sol, PACKET_RX_RING, &req)
        .map_err(os("creating the receive frame ring (PACKET_RX_RING)"))?;
    FrameRing::map(rx_fd, geometry.frame_size as usize, geometry.frames())
        .map_err(os("mapping the receive frame ring"))
}

/// Selects TPACKET_V3 on `rx_fd`, creates its block ring and maps it.
fn block_ring(
    rx_fd: &OwnedFd,
    cfg: &AfPacketConfig,
    interface: &str,
) -> Result<BlockRing, AfPacketError> {
    let os = |operation| move |error: io::Error| AfPacketError::os(interface, operation, &error);
    let sol = libc::SOL_PACKET;
    socket::set_option(rx_fd, sol, PACKET_VERSION, &TPACKET_V3)
        .map_err(os("selecting TPACKET_V3"))?;
    let frame_size = RING_FRAME_SIZE.min(cfg.block_size);
    let req = TpacketReq3 {
        tp_block_size: cfg.block_size,
        tp_block_nr: cfg.blocks,
        tp_frame_size: frame_size,
        tp_frame_nr: cfg.block_size / frame_size * cfg.blocks,
        tp_retire_blk_tov: cfg.block_timeout_ms,
        tp_sizeof_priv: 0,
        tp_feature_req_word: TP_FT_REQ_FILL_RXHASH,
    };
    socket::set_option(rx_fd, sol, PACKET_RX_RING, &req)
        .map_err(os("creating the receive ring (PACKET_RX_RING)"))?;
    BlockRing::map(rx_fd, cfg.block_size as usize, cfg.blocks)
        .map_err(os("mapping the receive ring"))
}

/// Joins every receive socket into one new fanout group; returns the group id.
fn join_fanout(
    queues: &[QueueShared],
    fanout: Fanout,
    interface: &str,
) -> Result<u16, AfPacketError> {
    let os = |error: io::Error| AfPacketError::os(interface, "joining the fanout group", &error);
    let sol = libc::SOL_PACKET;
    let type_flags = fanout.kernel_mode() | PACKET_FANOUT_FLAG_IGNORE_OUTGOING;
    let Some((first, rest)) = queues.split_first() else {
        return Ok(0);
    };
    // The kernel picks an id no group in this network namespace uses, so the group is ours
    // alone; a chosen id could silently join another port's group on the same interface.
    let create = (type_flags | PACKET_FANOUT_FLAG_UNIQUEID) << 16;
    socket::set_option(&first.rx_fd, sol, PACKET_FANOUT, &create).map_err(os)?;
    let joined: u32 = socket::get_option(&first.rx_fd, sol, PACKET_FANOUT).map_err(os)?;
    let group = (joined & 0xffff) as u16;
    let join = u32::from(group) | (type_flags << 16);
    for queue in rest {
        socket::set_option(&queue.rx_fd, sol, PACKET_FANOUT, &join).map_err(os)?;
    }
    Ok(group)
}
