//! Errors of the user-space bridge.

use std::fmt;

use super::{MacAddr, PortId};

/// Why a bridge could not be built, a port attached, or a static address installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VBridgeError {
    /// The MAC table capacity is not in `1..=MAX_TABLE_CAPACITY`.
    TableCapacity {
        /// Requested capacity.
        capacity: usize,
    },
    /// The ageing time is zero (every entry would expire at once).
    ZeroAgeing,
    /// The peer ring size is not in `1..=MAX_PEER_RING_SIZE`.
    PeerRingSize {
        /// Requested ring size.
        ring_size: usize,
    },
    /// The largest peer frame is not in `ETHERNET_HEADER_LEN..=MAX_FRAME_LEN`.
    MaxFrameLen {
        /// Requested length.
        len: usize,
    },
    /// The bridge already has `MAX_PORTS` ports.
    TooManyPorts {
        /// The limit.
        max: usize,
    },
    /// This uveth is already plugged into the bridge.
    AlreadyAttached {
        /// The port it is plugged into.
        port: PortId,
    },
    /// The address is already a static entry of another port (two NICs with one MAC).
    StaticConflict {
        /// The address.
        mac: MacAddr,
        /// The port that owns it.
        port: PortId,
    },
    /// The MAC table is full of static entries.
    TableFull {
        /// Its capacity.
        capacity: usize,
    },
}

impl fmt::Display for VBridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VBridgeError::TableCapacity { capacity } => write!(
                f,
                "vbridge: MAC table capacity must be 1..={}, got {capacity}",
                super::MAX_TABLE_CAPACITY
            ),
            VBridgeError::ZeroAgeing => {
                f.write_str("vbridge: MAC ageing time must be above zero, got 0")
            }
            VBridgeError::PeerRingSize { ring_size } => write!(
                f,
                "vbridge: peer ring size must be 1..={}, got {ring_size}",
                super::MAX_PEER_RING_SIZE
            ),
            VBridgeError::MaxFrameLen { len } => write!(
                f,
                "vbridge: largest peer frame must be {}..={} bytes, got {len}",
                crate::wire::ETHERNET_HEADER_LEN,
                super::MAX_FRAME_LEN
            ),
            VBridgeError::TooManyPorts { max } => {
                write!(f, "vbridge: a bridge has at most {max} ports")
            }
            VBridgeError::AlreadyAttached { port } => {
                write!(f, "vbridge: this uveth is already attached as port {port}")
            }
            VBridgeError::StaticConflict { mac, port } => write!(
                f,
                "vbridge: MAC {} already belongs to port {port}",
                super::MacDisplay(mac)
            ),
            VBridgeError::TableFull { capacity } => write!(
                f,
                "vbridge: MAC table is full of static entries (capacity {capacity})"
            ),
        }
    }
}

impl std::error::Error for VBridgeError {}

/// Why [`PeerPort::send`](super::PeerPort::send) refused a frame; every case is counted in the
/// port's statistics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerSendError {
    /// The ring to the bridge is full: the bridge does not pump fast enough (or at all).
    RingFull,
    /// The frame is longer than the bridge's `max_frame_len`.
    TooLarge {
        /// Frame length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bridge was dropped.
    BridgeGone,
}

impl fmt::Display for PeerSendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerSendError::RingFull => f.write_str("vbridge peer: ring to the bridge is full"),
            PeerSendError::TooLarge { len, max } => write!(
                f,
                "vbridge peer: frame must be at most {max} bytes, got {len}"
            ),
            PeerSendError::BridgeGone => f.write_str("vbridge peer: the bridge is gone"),
        }
    }
}

impl std::error::Error for PeerSendError {}

/// Why a [`BridgeThread`](super::BridgeThread) did not hand its bridge back.
#[derive(Debug)]
pub enum BridgeThreadError {
    /// The pump thread panicked; the bridge is lost (its peers see `BridgeGone`).
    Panicked,
}

impl fmt::Display for BridgeThreadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BridgeThreadError::Panicked => f.write_str("vbridge: the pump thread panicked"),
        }
    }
}

impl std::error::Error for BridgeThreadError {}
