//! Counters of the bridge, its ports and its MAC table, and their snapshots.
//!
//! The bridge's own counters have one writer (the thread that pumps) and are published with
//! relaxed load + store pairs, so a [`BridgeThread`](super::BridgeThread) can be asked for
//! statistics from another thread while it pumps. The counters of a peer's own `send` calls live
//! with the peer (see [`PeerPort`](super::PeerPort)), because the peer's thread writes them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use super::peer::PeerShared;
use super::PortId;

/// A counter with exactly one writer: plain load + store, no read-modify-write.
#[derive(Default)]
pub(super) struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub(super) fn add(&self) {
        self.add_n(1);
    }

    #[inline]
    pub(super) fn add_n(&self, n: u64) {
        self.0
            .store(self.0.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Sets a single-writer gauge.
#[inline]
pub(super) fn set_single_writer(gauge: &AtomicU64, value: u64) {
    gauge.store(value, Ordering::Relaxed);
}

/// Counters of one bridge port, written only by the pumping thread.
#[derive(Default)]
pub(super) struct PortCounters {
    pub(super) rx_frames: Counter,
    pub(super) rx_bytes: Counter,
    pub(super) tx_frames: Counter,
    pub(super) tx_bytes: Counter,
    pub(super) flooded: Counter,
    pub(super) filtered: Counter,
    pub(super) rx_dropped_malformed: Counter,
    pub(super) rx_dropped_bad_source: Counter,
    pub(super) tx_dropped_full: Counter,
    pub(super) tx_dropped_no_buffer: Counter,
    pub(super) tx_dropped_oversize: Counter,
    pub(super) tx_dropped_detached: Counter,
}

/// Counters and size gauges of the MAC table, written only by the table's owner.
#[derive(Default)]
pub(super) struct TableCounters {
    pub(super) entries: AtomicU64,
    pub(super) static_entries: AtomicU64,
    pub(super) learned: Counter,
    pub(super) moved: Counter,
    pub(super) aged_out: Counter,
    pub(super) evicted: Counter,
    pub(super) not_learned: Counter,
}

impl TableCounters {
    pub(super) fn snapshot(&self, capacity: usize) -> MacTableStats {
        MacTableStats {
            entries: self.entries.load(Ordering::Relaxed),
            static_entries: self.static_entries.load(Ordering::Relaxed),
            capacity: capacity as u64,
            learned: self.learned.get(),
            moved: self.moved.get(),
            aged_out: self.aged_out.get(),
            evicted: self.evicted.get(),
            not_learned: self.not_learned.get(),
        }
    }
}

/// What kind of port a [`PortStats`] describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortKind {
    /// A user-space NIC ([`VBridge::attach_uveth`](super::VBridge::attach_uveth)).
    Uveth,
    /// An in-process peer ([`VBridge::attach_peer`](super::VBridge::attach_peer)).
    Peer,
}

/// Counters of one port at one moment. Each field is read on its own (relaxed), so a snapshot
/// taken while the bridge pumps is not a consistent cut across fields.
///
/// "rx" is the direction into the bridge (frames the port's host sent), "tx" the direction out
/// of it (frames the bridge delivered to the port's host). Every frame that enters is counted
/// once in `rx_frames` and ends as exactly one of: delivered to one port, `flooded`,
/// `filtered`, `rx_dropped_malformed` or `rx_dropped_bad_source`. Every copy the bridge tries to
/// deliver ends as `tx_frames` or one of the `tx_dropped_*` counters of the egress port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortStats {
    /// The port.
    pub port: PortId,
    /// Its kind.
    pub kind: PortKind,
    /// Frames that entered the bridge here.
    pub rx_frames: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames the bridge delivered out of this port.
    pub tx_frames: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Frames that entered here and went to every other port (broadcast, multicast, unknown
    /// unicast).
    pub flooded: u64,
    /// Frames that entered here for an address learned on this same port (not forwarded).
    pub filtered: u64,
    /// Frames that entered here shorter than an Ethernet header (14 bytes), dropped.
    pub rx_dropped_malformed: u64,
    /// Frames that entered here with a multicast or all-zero source address, dropped.
    pub rx_dropped_bad_source: u64,
    /// Copies for this port dropped because its receive ring was full (the uveth queue's, or
    /// the peer's).
    pub tx_dropped_full: u64,
    /// Copies for this uveth dropped because the pool had no free buffer.
    pub tx_dropped_no_buffer: u64,
    /// Copies for this port dropped because they exceed what it takes (the uveth's data room,
    /// the bridge's `max_frame_len` for a peer).
    pub tx_dropped_oversize: u64,
    /// Copies for this peer dropped because its [`PeerPort`](super::PeerPort) was dropped.
    pub tx_dropped_detached: u64,
    /// Peer only: `send` calls whose frame was queued for the bridge.
    pub peer_sent: u64,
    /// Peer only: `send` calls refused because the ring to the bridge was full.
    pub peer_send_full: u64,
    /// Peer only: `send` calls refused because the frame exceeds `max_frame_len`.
    pub peer_send_oversize: u64,
    /// Peer only: `send` calls refused because the bridge was gone.
    pub peer_send_detached: u64,
    /// Peer only: frames the peer sent that wait for the bridge (a gauge).
    pub peer_queued_in: u64,
    /// Peer only: frames the bridge delivered that wait for the peer's `recv` (a gauge).
    pub peer_queued_out: u64,
}

impl PortStats {
    /// Every copy dropped on the way out of this port, all reasons.
    pub fn tx_dropped(&self) -> u64 {
        self.tx_dropped_full
            + self.tx_dropped_no_buffer
            + self.tx_dropped_oversize
            + self.tx_dropped_detached
    }

    /// Every frame dropped on the way into the bridge at this port, all reasons.
    pub fn rx_dropped(&self) -> u64 {
        self.rx_dropped_malformed + self.rx_dropped_bad_source
    }
}

/// The MAC table's size and counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MacTableStats {
    /// Entries now, static ones included.
    pub entries: u64,
    /// Static entries now (the uveth ports' own addresses).
    pub static_entries: u64,
    /// Most entries the table holds.
    pub capacity: u64,
    /// Dynamic entries created.
    pub learned: u64,
    /// Addresses seen on another port than the one they were learned on.
    pub moved: u64,
    /// Dynamic entries removed because they were not seen for the ageing time.
    pub aged_out: u64,
    /// Dynamic entries removed, before they aged out, to make room in a full table.
    pub evicted: u64,
    /// Addresses not learned because the table was full of static entries.
    pub not_learned: u64,
}

/// Statistics of a bridge: one entry per port, in port order, and the MAC table's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VBridgeStats {
    /// One entry per port, indexed by [`PortId::index`].
    pub ports: Vec<PortStats>,
    /// The MAC table.
    pub table: MacTableStats,
}

impl VBridgeStats {
    /// The port's statistics (`None` for a port of another bridge).
    pub fn port(&self, port: PortId) -> Option<&PortStats> {
        self.ports.get(port.index())
    }
}

/// Everything needed to read a bridge's statistics without the bridge: handles to its
/// counters. Held by a [`BridgeThread`](super::BridgeThread) while the bridge pumps elsewhere.
#[derive(Clone)]
pub(super) struct StatsView {
    pub(super) ports: Vec<PortView>,
    pub(super) table: Arc<TableCounters>,
    pub(super) table_capacity: usize,
}

#[derive(Clone)]
pub(super) struct PortView {
    pub(super) counters: Arc<CachePadded<PortCounters>>,
    pub(super) peer: Option<Arc<PeerShared>>,
}

impl StatsView {
    pub(super) fn snapshot(&self) -> VBridgeStats {
        let ports = self
            .ports
            .iter()
            .enumerate()
            .map(|(index, view)| {
                let c = &view.counters;
                let mut stats = PortStats {
                    port: PortId::from_index(index as u16),
                    kind: PortKind::Uveth,
                    rx_frames: c.rx_frames.get(),
                    rx_bytes: c.rx_bytes.get(),
                    tx_frames: c.tx_frames.get(),
                    tx_bytes: c.tx_bytes.get(),
                    flooded: c.flooded.get(),
                    filtered: c.filtered.get(),
                    rx_dropped_malformed: c.rx_dropped_malformed.get(),
                    rx_dropped_bad_source: c.rx_dropped_bad_source.get(),
                    tx_dropped_full: c.tx_dropped_full.get(),
                    tx_dropped_no_buffer: c.tx_dropped_no_buffer.get(),
                    tx_dropped_oversize: c.tx_dropped_oversize.get(),
                    tx_dropped_detached: c.tx_dropped_detached.get(),
                    peer_sent: 0,
                    peer_send_full: 0,
                    peer_send_oversize: 0,
                    peer_send_detached: 0,
                    peer_queued_in: 0,
                    peer_queued_out: 0,
                };
                if let Some(peer) = &view.peer {
                    stats.kind = PortKind::Peer;
                    peer.fill_stats(&mut stats);
                }
                stats
            })
            .collect();
        VBridgeStats {
            ports,
            table: self.table.snapshot(self.table_capacity),
        }
    }
}
