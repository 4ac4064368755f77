//! A bridge port for an in-process host: two bounded rings of byte frames and a ring of spare
//! frame vectors.
//!
//! The peer's thread calls [`PeerPort::send`] and [`PeerPort::recv`]; the bridge's pumping
//! thread pops what the peer sent and pushes what it delivers. Frames are `Vec<u8>`, not pool
//! buffers: a peer is a test client, off the engine's hot path, and owning its bytes keeps it
//! free of the pool's rules. The spare ring recycles the vectors (the bridge returns what it
//! forwarded, [`PeerPort::recv_into`] returns what it replaced), so a steady exchange does not
//! allocate.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use super::error::PeerSendError;
use super::stats::PortStats;
use super::PortId;

/// The rings and flags one peer shares with the bridge.
pub(super) struct PeerShared {
    /// Frames the peer sent, waiting for the bridge.
    pub(super) to_bridge: ArrayQueue<Vec<u8>>,
    /// Frames the bridge delivered, waiting for the peer.
    pub(super) to_peer: ArrayQueue<Vec<u8>>,
    /// Emptied vectors ready for reuse by either side.
    spare: ArrayQueue<Vec<u8>>,
    max_frame_len: usize,
    /// Cleared when the `PeerPort` is dropped: the bridge stops delivering to it.
    peer_attached: AtomicBool,
    /// Cleared when the bridge is dropped: `send` refuses from then on.
    bridge_attached: AtomicBool,
    /// Written by the peer's `send`, which more than one thread may call: atomic adds.
    sent: AtomicU64,
    send_full: AtomicU64,
    send_oversize: AtomicU64,
    send_detached: AtomicU64,
}

impl PeerShared {
    pub(super) fn new(ring_size: usize, max_frame_len: usize) -> PeerShared {
        PeerShared {
            to_bridge: ArrayQueue::new(ring_size),
            to_peer: ArrayQueue::new(ring_size),
            spare: ArrayQueue::new(ring_size),
            max_frame_len,
            peer_attached: AtomicBool::new(true),
            bridge_attached: AtomicBool::new(true),
            sent: AtomicU64::new(0),
            send_full: AtomicU64::new(0),
            send_oversize: AtomicU64::new(0),
            send_detached: AtomicU64::new(0),
        }
    }

    /// Whether the peer still holds its `PeerPort`.
    pub(super) fn peer_attached(&self) -> bool {
        self.peer_attached.load(Ordering::Acquire)
    }

    pub(super) fn detach_bridge(&self) {
        self.bridge_attached.store(false, Ordering::Release);
    }

    /// A copy of `frame` in a recycled vector when one is spare.
    pub(super) fn copy_of(&self, frame: &[u8]) -> Vec<u8> {
        let mut vec = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(frame.len()));
        vec.clear();
        vec.extend_from_slice(frame);
        vec
    }

    /// Keeps `vec` for reuse, or frees it when the spare ring is full.
    pub(super) fn recycle(&self, mut vec: Vec<u8>) {
        vec.clear();
        // A full spare ring means enough vectors are around already.
        let _ = self.spare.push(vec);
    }

    /// Frees every frame waiting for the peer (it is gone) and the spare vectors; returns how
    /// many frames.
    pub(super) fn discard_to_peer(&self) -> usize {
        let mut discarded = 0;
        while self.to_peer.pop().is_some() {
            discarded += 1;
        }
        while self.spare.pop().is_some() {}
        discarded
    }

    pub(super) fn fill_stats(&self, stats: &mut PortStats) {
        stats.peer_sent = self.sent.load(Ordering::Relaxed);
        stats.peer_send_full = self.send_full.load(Ordering::Relaxed);
        stats.peer_send_oversize = self.send_oversize.load(Ordering::Relaxed);
        stats.peer_send_detached = self.send_detached.load(Ordering::Relaxed);
        stats.peer_queued_in = self.to_bridge.len() as u64;
        stats.peer_queued_out = self.to_peer.len() as u64;
    }
}

/// The host end of a peer port of a [`VBridge`](super::VBridge): what a client machine's
/// network card would be on a switch.
///
/// `Send + Sync`: it is meant to move to the peer's thread; `send` and `recv` never block and
/// may run while the bridge pumps on another thread. Dropping it unplugs the cable: the bridge
/// forgets the addresses learned on the port, frees what waits for the peer and counts later
/// copies for it as `tx_dropped_detached`.
pub struct PeerPort {
    shared: Arc<PeerShared>,
    port: PortId,
}

impl PeerPort {
    pub(super) fn new(shared: Arc<PeerShared>, port: PortId) -> PeerPort {
        PeerPort { shared, port }
    }

    /// The bridge port this peer is plugged into.
    pub fn port(&self) -> PortId {
        self.port
    }

    /// Largest frame `send` accepts.
    pub fn max_frame_len(&self) -> usize {
        self.shared.max_frame_len
    }

    /// Queues one Ethernet frame for the bridge; the next pump forwards it.
    ///
    /// Errors (each counted in the port's statistics, the frame not queued): the ring to the
    /// bridge is full, the frame exceeds `max_frame_len`, or the bridge was dropped. A frame
    /// shorter than an Ethernet header is accepted here and counted as malformed by the bridge,
    /// as a switch counts a runt.
    pub fn send(&self, frame: &[u8]) -> Result<(), PeerSendError> {
        let shared = &self.shared;
        if !shared.bridge_attached.load(Ordering::Acquire) {
            shared.send_detached.fetch_add(1, Ordering::Relaxed);
            return Err(PeerSendError::BridgeGone);
        }
        if frame.len() > shared.max_frame_len {
            shared.send_oversize.fetch_add(1, Ordering::Relaxed);
            return Err(PeerSendError::TooLarge {
                len: frame.len(),
                max: shared.max_frame_len,
            });
        }
        match shared.to_bridge.push(shared.copy_of(frame)) {
            Ok(()) => {
                shared.sent.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(vec) => {
                shared.recycle(vec);
                shared.send_full.fetch_add(1, Ordering::Relaxed);
                Err(PeerSendError::RingFull)
            }
        }
    }

    /// The oldest frame the bridge delivered to this peer, if any.
    pub fn recv(&self) -> Option<Vec<u8>> {
        self.shared.to_peer.pop()
    }

    /// Replaces the contents of `frame` with the oldest delivered frame and returns true, or
    /// returns false (and leaves `frame` alone) when none waits. The vector `frame` held goes
    /// back to the bridge for reuse, so a loop over `recv_into` allocates nothing.
    // No client of the test rig calls it yet (they take frames with `recv`); it stays as the
    // receive that makes a steady exchange allocation-free, as the module documentation says.
    pub fn recv_into(&self, frame: &mut Vec<u8>) -> bool {
        match self.shared.to_peer.pop() {
            Some(received) => {
                let old = std::mem::replace(frame, received);
                self.shared.recycle(old);
                true
            }
            None => false,
        }
    }

    /// Frames waiting for `recv`.
    pub fn pending(&self) -> usize {
        self.shared.to_peer.len()
    }

    /// Whether the bridge still exists (a `send` can be forwarded).
    pub fn bridge_attached(&self) -> bool {
        self.shared.bridge_attached.load(Ordering::Acquire)
    }
}

impl Drop for PeerPort {
    fn drop(&mut self) {
        // Release pairs with the bridge's acquire load: it sees every frame sent before.
        self.shared.peer_attached.store(false, Ordering::Release);
    }
}

impl fmt::Debug for PeerPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerPort")
            .field("port", &self.port)
            .field("pending", &self.pending())
            .field("bridge_attached", &self.bridge_attached())
            .finish()
    }
}
