//! Errors of the AF_PACKET port: each names the interface or the value and says what to do.

use std::fmt;
use std::io;

/// Why an [`AfPacketPort`](super::AfPacketPort) could not be opened or a queue not be taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfPacketError {
    /// The interface name is empty, longer than 15 bytes, or holds a byte Linux refuses.
    InvalidName {
        /// The name as given.
        interface: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No interface of that name exists (in this network namespace).
    InterfaceMissing {
        /// The name as given.
        interface: String,
    },
    /// The interface exists but is administratively down.
    InterfaceDown {
        /// The interface.
        interface: String,
    },
    /// The interface does not carry Ethernet frames (loopback, tun, ...).
    NotEthernet {
        /// The interface.
        interface: String,
        /// Its `ARPHRD_*` hardware type.
        hardware_type: u16,
    },
    /// Opening an AF_PACKET socket was refused (EPERM / EACCES).
    PermissionDenied {
        /// The interface.
        interface: String,
    },
    /// `queues` is not in `1..=MAX_QUEUES`.
    Queues {
        /// Requested queue count.
        queues: u16,
    },
    /// `block_size` is not a power of two in `page size..=MAX_BLOCK_SIZE`.
    BlockSize {
        /// Requested block size.
        block_size: u32,
        /// The system page size (the smallest block).
        page_size: usize,
    },
    /// `blocks` is not in `MIN_BLOCKS..=MAX_BLOCKS`.
    Blocks {
        /// Requested block count.
        blocks: u32,
    },
    /// `frames` is not a power of two in `MIN_FRAMES..=MAX_FRAMES`.
    Frames {
        /// Requested frame slot count.
        frames: u32,
    },
    /// `queues × frames ×` the slot size exceeds `MAX_RING_BYTES`.
    FrameRingMemory {
        /// Requested queue count.
        queues: u16,
        /// Requested frame slot count.
        frames: u32,
        /// Bytes per slot, from the interface MTU.
        frame_size: u32,
    },
    /// `block_timeout_ms` is not in `1..=MAX_BLOCK_TIMEOUT_MS`.
    BlockTimeout {
        /// Requested timeout.
        block_timeout_ms: u32,
    },
    /// `queues × block_size × blocks` exceeds `MAX_RING_BYTES`.
    RingMemory {
        /// Requested queue count.
        queues: u16,
        /// Requested block size.
        block_size: u32,
        /// Requested block count.
        blocks: u32,
    },
    /// A block cannot hold one frame of the interface's MTU.
    BlockTooSmall {
        /// The interface.
        interface: String,
        /// Requested block size.
        block_size: u32,
        /// The interface MTU.
        mtu: u32,
    },
    /// A system call failed.
    Os {
        /// The interface.
        interface: String,
        /// What was being done.
        operation: &'static str,
        /// `errno`.
        errno: i32,
    },
    /// A queue index at or beyond the queue count.
    QueueOutOfRange {
        /// Requested queue.
        queue: u16,
        /// Queue count.
        queues: u16,
    },
    /// The queue pair is held by another owner.
    QueueTaken {
        /// Requested queue.
        queue: u16,
    },
    /// A transmit-only queue was asked for an owner that has a queue pair (`owner < queues`).
    TransmitOwner {
        /// The owner asked for.
        owner: u16,
        /// Queue pairs of the port.
        queues: u16,
    },
    /// The transmit-only queue of this owner is held by a live queue.
    TransmitQueueTaken {
        /// The owner.
        owner: u16,
    },
}

impl AfPacketError {
    pub(super) fn os(interface: &str, operation: &'static str, error: &io::Error) -> Self {
        AfPacketError::Os {
            interface: interface.to_owned(),
            operation,
            errno: error.raw_os_error().unwrap_or(0),
        }
    }
}

impl fmt::Display for AfPacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AfPacketError::InvalidName { interface, reason } => write!(
                f,
                "afpacket: interface name {interface:?} is invalid: {reason} \
                 (a Linux name is 1..=15 bytes without '/', ':', whitespace or NUL)"
            ),
            AfPacketError::InterfaceMissing { interface } => write!(
                f,
                "afpacket: interface {interface:?} does not exist in this network namespace \
                 (list interfaces with `ip link`)"
            ),
            AfPacketError::InterfaceDown { interface } => write!(
                f,
                "afpacket: interface {interface:?} is down \
                 (bring it up with `ip link set {interface} up`)"
            ),
            AfPacketError::NotEthernet {
                interface,
                hardware_type,
            } => write!(
                f,
                "afpacket: interface {interface:?} is not an Ethernet interface \
                 (hardware type {hardware_type}); use a NIC, veth or bridge port"
            ),
            AfPacketError::PermissionDenied { interface } => write!(
                f,
                "afpacket: opening an AF_PACKET socket on {interface:?} needs root or \
                 CAP_NET_RAW (run as root, or `setcap cap_net_raw+ep` on the binary)"
            ),
            AfPacketError::Queues { queues } => write!(
                f,
                "afpacket: queues must be 1..={}, got {queues}",
                super::MAX_QUEUES
            ),
            AfPacketError::BlockSize {
                block_size,
                page_size,
            } => write!(
                f,
                "afpacket: block_size must be a power of two in {page_size}..={} bytes, \
                 got {block_size}",
                super::MAX_BLOCK_SIZE
            ),
            AfPacketError::Blocks { blocks } => write!(
                f,
                "afpacket: blocks must be {}..={}, got {blocks}",
                super::MIN_BLOCKS,
                super::MAX_BLOCKS
            ),
            AfPacketError::Frames { frames } => write!(
                f,
                "afpacket: frames must be a power of two in {}..={}, got {frames}",
                super::MIN_FRAMES,
                super::MAX_FRAMES
            ),
            AfPacketError::FrameRingMemory {
                queues,
                frames,
                frame_size,
            } => write!(
                f,
                "afpacket: queues × frames × frame slot size must be at most {} bytes, \
                 got {queues} × {frames} × {frame_size} (the slot size follows the MTU)",
                super::MAX_RING_BYTES
            ),
            AfPacketError::BlockTimeout { block_timeout_ms } => write!(
                f,
                "afpacket: block_timeout_ms must be 1..={}, got {block_timeout_ms}",
                super::MAX_BLOCK_TIMEOUT_MS
            ),
            AfPacketError::RingMemory {
                queues,
                block_size,
                blocks,
            } => write!(
                f,
                "afpacket: queues × block_size × blocks must be at most {} bytes, \
                 got {queues} × {block_size} × {blocks}",
                super::MAX_RING_BYTES
            ),
            AfPacketError::BlockTooSmall {
                interface,
                block_size,
                mtu,
            } => write!(
                f,
                "afpacket: block_size {block_size} cannot hold one frame of {interface:?} \
                 (MTU {mtu}); raise block_size"
            ),
            AfPacketError::Os {
                interface,
                operation,
                errno,
            } => write!(
                f,
                "afpacket: {operation} on {interface:?} failed: {}",
                io::Error::from_raw_os_error(*errno)
            ),
            AfPacketError::QueueOutOfRange { queue, queues } => {
                write!(f, "afpacket: queue must be 0..{queues}, got {queue}")
            }
            AfPacketError::QueueTaken { queue } => {
                write!(f, "afpacket: queue {queue} is already taken")
            }
            AfPacketError::TransmitOwner { owner, queues } => write!(
                f,
                "afpacket: transmit-only queues are for owners without a queue pair \
                 ({queues}.., the port has {queues} queue pairs), got {owner}"
            ),
            AfPacketError::TransmitQueueTaken { owner } => {
                write!(
                    f,
                    "afpacket: the transmit-only queue of owner {owner} is already taken"
                )
            }
        }
    }
}

impl std::error::Error for AfPacketError {}
