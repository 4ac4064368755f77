//! The user-space L2 bridge ("vbridge"): a learning Ethernet switch in the process, the other
//! half of the hardware-free test rig. It connects the engine's [`Uveth`] to in-process peer
//! hosts (protocol stacks in tests) as a switch connects a NIC to client machines, so traffic
//! through the engine can be tested without root, kernel or hardware.
//!
//! # Data path
//!
//! [`VBridge::pump`] visits every port in attachment order and forwards up to `max_frames`
//! frames from its ingress:
//!
//! - A **uveth port** ([`VBridge::attach_uveth`]) takes what the engine transmitted on any of
//!   the NIC's queues ([`Uveth::take_transmitted`], starting one queue further each pump so
//!   that no queue starves). Frames the bridge sends to the port are [`Uveth::inject`]ed: soft
//!   RSS picks the receive queue, exactly as a NIC's RSS would. The uveth's own MAC is a static
//!   table entry from the start (as a Linux bridge's "local" entries), so the first frame for
//!   the engine is not flooded.
//! - A **peer port** ([`VBridge::attach_peer`]) is a pair of bounded rings of byte frames
//!   shared with a [`PeerPort`], the host end the peer's thread sends and receives on.
//!
//! Each frame is switched as by an IEEE 802.1D learning bridge: a frame shorter than an
//! Ethernet header, or with a multicast or zero source address, is a counted drop; the source
//! address is learned on the ingress port; broadcast, multicast and unknown unicast are flooded
//! (one copy per other port); known unicast goes to its port, or is filtered (counted) when that
//! port is the ingress port. The [`MacTable`] is bounded, with ageing; see its module.
//!
//! Every copy that cannot be delivered is a counted drop of the egress port, by reason: ring
//! full, no buffer (uveth), too large, peer gone. Nothing blocks. See [`PortStats`] for the
//! conservation rule the counters obey.
//!
//! # Ownership and concurrency
//!
//! - [`VBridge`] is owned by one thread, the one that pumps (`&mut self`; `Send`, so it may
//!   move to a [`BridgeThread`] via [`VBridge::spawn`]). The table and the port counters have
//!   that one writer (single-writer relaxed stores, readable from anywhere through
//!   [`BridgeThread::stats`]).
//! - A [`PeerPort`] is `Send + Sync`; the peer's rings are lock-free MPMC queues
//!   (`crossbeam_queue::ArrayQueue`) of `Vec<u8>` frames, each frame owned by whoever popped
//!   it. Byte vectors instead of pool buffers: the peers are test clients, not the hot path,
//!   and owning their bytes keeps them out of the pool's accounting. A ring of spare vectors
//!   recycles them, so a steady exchange does not allocate.
//! - Pool buffers: every [`PktBuf`] taken from a uveth's transmit rings is freed to the
//!   caller's `cache` in the same pump, after its bytes were forwarded; every buffer `inject`
//!   allocates is on a uveth receive ring or already freed again. The bridge holds no buffer
//!   between pumps, so after the engine and the bridge stop, [`Uveth::drain_into`] makes the
//!   pool whole. `cache` must be a cache of the uveth's pool (a buffer freed to another pool is
//!   counted there as a foreign free, see [`pool`](crate::pool)).
//! - Dropping a [`PeerPort`] unplugs it: the next pump forwards what it had sent, then forgets
//!   the addresses learned on the port and frees what waited for it; later copies for it are
//!   counted as detached. Dropping the bridge makes every peer's `send` fail with
//!   [`PeerSendError::BridgeGone`].
//!
//! # Costs
//!
//! | operation | cost |
//! |---|---|
//! | `pump`, fixed | one clock read, expiry of aged entries (O(log n) each), one ring length check per uveth queue and peer |
//! | per frame in | one ring pop; learning: one hash lookup + one ordered-index update (O(log n)); one hash lookup of the destination |
//! | per copy to a peer | one `Vec` from the spare ring (or an allocation) + one copy + one ring push |
//! | per copy to a uveth | one `inject`: classify, Toeplitz hash, buffer alloc + copy, ring push |
//! | flood | one copy per other port |
//! | `stats` | a few relaxed loads per port and one allocation per call |

mod error;
mod mac_table;
mod peer;
mod stats;
mod thread;

pub use error::{BridgeThreadError, PeerSendError, VBridgeError};
pub use mac_table::{Learned, MacTable, MAX_TABLE_CAPACITY};
pub use peer::PeerPort;
pub use stats::{MacTableStats, PortKind, PortStats, VBridgeStats};
pub use thread::{BridgeThread, BridgeThreadConfig};

use std::fmt;
use std::mem;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::pool::{PktBuf, PoolCache};
use crate::uveth::{InjectError, Uveth};
use crate::wire::ETHERNET_HEADER_LEN;
use peer::PeerShared;
use stats::{PortCounters, PortView, StatsView};

/// An Ethernet (EUI-48) address.
pub type MacAddr = [u8; 6];

/// The broadcast address.
pub const BROADCAST: MacAddr = [0xff; 6];
/// Most ports one bridge has.
pub const MAX_PORTS: usize = 1024;
/// Largest ring between the bridge and one peer (per direction).
pub const MAX_PEER_RING_SIZE: usize = 1 << 16;
/// Largest frame a peer may be configured to send (the largest pool data room).
pub const MAX_FRAME_LEN: usize = u16::MAX as usize;

/// A port of one bridge, numbered from 0 in attachment order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(u16);

impl PortId {
    pub(crate) fn from_index(index: u16) -> PortId {
        PortId(index)
    }

    /// The port's number, `0..ports`: its index in [`VBridgeStats::ports`].
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Formats a MAC address as `02:00:00:00:00:01`.
pub(crate) struct MacDisplay<'a>(pub(crate) &'a MacAddr);

impl fmt::Display for MacDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = *self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Whether `mac` is a group (multicast or broadcast) address: the I/G bit of the first octet.
pub fn is_multicast(mac: &MacAddr) -> bool {
    mac[0] & 1 != 0
}

/// Configuration of a [`VBridge`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VBridgeConfig {
    /// Most MAC table entries, `1..=MAX_TABLE_CAPACITY`.
    pub mac_table_capacity: usize,
    /// Time after which an address not seen again is forgotten; above zero.
    pub ageing: Duration,
    /// Frames each peer ring holds (per direction), `1..=MAX_PEER_RING_SIZE`.
    pub peer_ring_size: usize,
    /// Largest frame a peer may send or be sent, `14..=MAX_FRAME_LEN`.
    pub max_frame_len: usize,
}

impl Default for VBridgeConfig {
    /// 4096 table entries, 300 s ageing (the Linux bridge's default), 1024-frame peer rings,
    /// 9216-byte frames (jumbo).
    fn default() -> Self {
        VBridgeConfig {
            mac_table_capacity: 4096,
            ageing: Duration::from_secs(300),
            peer_ring_size: 1024,
            max_frame_len: 9216,
        }
    }
}

enum Backend {
    Uveth {
        nic: Arc<Uveth>,
        /// The queue the next pump takes from first.
        next_queue: u16,
    },
    Peer {
        shared: Arc<PeerShared>,
        /// Set once the peer's departure was handled (table flushed, rings freed).
        detached: bool,
    },
}

struct Port {
    backend: Backend,
    counters: Arc<CachePadded<PortCounters>>,
}

/// The user-space learning bridge. See the module documentation.
pub struct VBridge {
    ports: Vec<Port>,
    table: MacTable,
    peer_ring_size: usize,
    max_frame_len: usize,
    epoch: Instant,
    /// Scratch for frames taken from a uveth; always empty between pumps.
    bufs: Vec<PktBuf>,
}

impl VBridge {
    /// A bridge without ports.
    ///
    /// Errors: a configuration value out of range (see [`VBridgeConfig`]).
    pub fn new(config: VBridgeConfig) -> Result<VBridge, VBridgeError> {
        if config.peer_ring_size == 0 || config.peer_ring_size > MAX_PEER_RING_SIZE {
            return Err(VBridgeError::PeerRingSize {
                ring_size: config.peer_ring_size,
            });
        }
        if config.max_frame_len < ETHERNET_HEADER_LEN || config.max_frame_len > MAX_FRAME_LEN {
            return Err(VBridgeError::MaxFrameLen {
                len: config.max_frame_len,
            });
        }
        let table = MacTable::new(config.mac_table_capacity, config.ageing)?;
        Ok(VBridge {
            ports: Vec::new(),
            table,
            peer_ring_size: config.peer_ring_size,
            max_frame_len: config.max_frame_len,
            epoch: Instant::now(),
            bufs: Vec::new(),
        })
    }

    /// Plugs a user-space NIC into a new port and installs its MAC as a static entry.
    ///
    /// Errors: the bridge has `MAX_PORTS` ports, this NIC is already attached, its MAC is
    /// another port's static address, or the table is full of static entries.
    pub fn attach_uveth(&mut self, nic: Arc<Uveth>) -> Result<PortId, VBridgeError> {
        let port = self.next_port()?;
        if let Some(existing) = self.ports.iter().position(|p| match &p.backend {
            Backend::Uveth { nic: other, .. } => Arc::ptr_eq(other, &nic),
            Backend::Peer { .. } => false,
        }) {
            return Err(VBridgeError::AlreadyAttached {
                port: PortId(existing as u16),
            });
        }
        self.table.add_static(nic.mac(), port)?;
        self.ports.push(Port {
            backend: Backend::Uveth { nic, next_queue: 0 },
            counters: Arc::default(),
        });
        Ok(port)
    }

    /// A new port for an in-process host, and the host's end of it.
    ///
    /// Errors: the bridge has `MAX_PORTS` ports.
    pub fn attach_peer(&mut self) -> Result<(PortId, PeerPort), VBridgeError> {
        let port = self.next_port()?;
        let shared = Arc::new(PeerShared::new(self.peer_ring_size, self.max_frame_len));
        self.ports.push(Port {
            backend: Backend::Peer {
                shared: Arc::clone(&shared),
                detached: false,
            },
            counters: Arc::default(),
        });
        Ok((port, PeerPort::new(shared, port)))
    }

    fn next_port(&self) -> Result<PortId, VBridgeError> {
        if self.ports.len() >= MAX_PORTS {
            return Err(VBridgeError::TooManyPorts { max: MAX_PORTS });
        }
        // MAX_PORTS fits in a u16.
        Ok(PortId(self.ports.len() as u16))
    }

    /// Number of ports.
    pub fn ports(&self) -> usize {
        self.ports.len()
    }

    /// The MAC table (read-only: sizes, capacity, ageing).
    pub fn mac_table(&self) -> &MacTable {
        &self.table
    }

    /// The port `mac` is known on now, if any (an expired entry is removed and not returned).
    pub fn lookup(&mut self, mac: &MacAddr) -> Option<PortId> {
        let now = self.epoch.elapsed();
        self.table.lookup(mac, now)
    }

    /// Forwards up to `max_frames` frames from each port's ingress; returns how many frames
    /// entered the bridge in total (dropped and filtered ones included).
    ///
    /// `cache` must belong to the pool of the attached uveths: frames taken from a uveth are
    /// freed to it, frames injected into a uveth are allocated from it.
    pub fn pump(&mut self, cache: &mut PoolCache, max_frames: usize) -> usize {
        let now = self.epoch.elapsed();
        self.table.expire(now);
        let mut entered = 0;
        for ingress in 0..self.ports.len() {
            entered += match &self.ports[ingress].backend {
                Backend::Uveth { .. } => self.pump_uveth(ingress, cache, max_frames, now),
                Backend::Peer { shared, .. } => {
                    let shared = Arc::clone(shared);
                    self.pump_peer(ingress, &shared, cache, max_frames, now)
                }
            };
        }
        entered
    }

    fn pump_uveth(
        &mut self,
        ingress: usize,
        cache: &mut PoolCache,
        max_frames: usize,
        now: Duration,
    ) -> usize {
        let Backend::Uveth { nic, next_queue } = &mut self.ports[ingress].backend else {
            return 0;
        };
        let nic = Arc::clone(nic);
        let queues = nic.queues();
        let first = *next_queue;
        *next_queue = (first + 1) % queues;
        let mut bufs = mem::take(&mut self.bufs);
        let mut taken = 0;
        for offset in 0..queues {
            if taken >= max_frames {
                break;
            }
            let queue = (first + offset) % queues;
            taken += nic.take_transmitted(queue, &mut bufs, max_frames - taken);
        }
        for buf in bufs.drain(..) {
            self.forward(ingress, buf.data(), cache, now);
            cache.free(buf);
        }
        self.bufs = bufs;
        taken
    }

    fn pump_peer(
        &mut self,
        ingress: usize,
        shared: &PeerShared,
        cache: &mut PoolCache,
        max_frames: usize,
        now: Duration,
    ) -> usize {
        // Read before draining: a peer that is gone published every frame it sent before
        // leaving (release on drop, acquire here), so this pump forwards them all.
        let gone = !shared.peer_attached();
        let mut taken = 0;
        while taken < max_frames {
            let Some(frame) = shared.to_bridge.pop() else {
                break;
            };
            taken += 1;
            self.forward(ingress, &frame, cache, now);
            shared.recycle(frame);
        }
        if gone && shared.to_bridge.is_empty() {
            if let Backend::Peer { detached, .. } = &mut self.ports[ingress].backend {
                if !*detached {
                    *detached = true;
                    self.table.flush_port(PortId(ingress as u16));
                    shared.discard_to_peer();
                }
            }
        }
        taken
    }

    /// Switches one frame that entered at `ingress`.
    fn forward(&mut self, ingress: usize, frame: &[u8], cache: &mut PoolCache, now: Duration) {
        let counters = &self.ports[ingress].counters;
        counters.rx_frames.add();
        counters.rx_bytes.add_n(frame.len() as u64);
        let (Some(dst), Some(src)) = (mac_at(frame, 0), mac_at(frame, 6)) else {
            counters.rx_dropped_malformed.add();
            return;
        };
        if is_multicast(&src) || src == [0; 6] {
            counters.rx_dropped_bad_source.add();
            return;
        }
        let ingress_id = PortId(ingress as u16);
        self.table.learn(src, ingress_id, now);
        let egress = if is_multicast(&dst) {
            None
        } else {
            self.table.lookup(&dst, now)
        };
        match egress {
            Some(port) if port == ingress_id => counters.filtered.add(),
            Some(port) => match self.ports.get(port.index()) {
                Some(egress) => deliver(egress, self.max_frame_len, frame, cache),
                // Table entries only name attached ports; were one stale, flooding is right.
                None => self.flood(ingress, frame, cache),
            },
            None => self.flood(ingress, frame, cache),
        }
    }

    fn flood(&self, ingress: usize, frame: &[u8], cache: &mut PoolCache) {
        self.ports[ingress].counters.flooded.add();
        for (index, port) in self.ports.iter().enumerate() {
            if index != ingress {
                deliver(port, self.max_frame_len, frame, cache);
            }
        }
    }

    /// The bridge's statistics now.
    pub fn stats(&self) -> VBridgeStats {
        self.stats_view().snapshot()
    }

    fn stats_view(&self) -> StatsView {
        StatsView {
            ports: self
                .ports
                .iter()
                .map(|port| PortView {
                    counters: Arc::clone(&port.counters),
                    peer: match &port.backend {
                        Backend::Peer { shared, .. } => Some(Arc::clone(shared)),
                        Backend::Uveth { .. } => None,
                    },
                })
                .collect(),
            table: Arc::clone(self.table.counters()),
            table_capacity: self.table.capacity(),
        }
    }
}

/// Hands one copy of `frame` to `port`'s host, or counts why not.
fn deliver(port: &Port, max_frame_len: usize, frame: &[u8], cache: &mut PoolCache) {
    let counters = &port.counters;
    match &port.backend {
        Backend::Uveth { nic, .. } => match nic.inject(frame, cache) {
            Ok(_) => {
                counters.tx_frames.add();
                counters.tx_bytes.add_n(frame.len() as u64);
            }
            Err(InjectError::RingFull { .. }) => counters.tx_dropped_full.add(),
            Err(InjectError::NoBuffer { .. }) => counters.tx_dropped_no_buffer.add(),
            Err(InjectError::FrameTooLarge { .. }) => counters.tx_dropped_oversize.add(),
        },
        Backend::Peer { shared, .. } => {
            if !shared.peer_attached() {
                counters.tx_dropped_detached.add();
            } else if frame.len() > max_frame_len {
                counters.tx_dropped_oversize.add();
            } else {
                match shared.to_peer.push(shared.copy_of(frame)) {
                    Ok(()) => {
                        counters.tx_frames.add();
                        counters.tx_bytes.add_n(frame.len() as u64);
                    }
                    Err(copy) => {
                        shared.recycle(copy);
                        counters.tx_dropped_full.add();
                    }
                }
            }
        }
    }
}

/// The six bytes at `offset` of a frame that holds a whole Ethernet header, else `None`.
fn mac_at(frame: &[u8], offset: usize) -> Option<MacAddr> {
    if frame.len() < ETHERNET_HEADER_LEN {
        return None;
    }
    frame.get(offset..offset + 6)?.try_into().ok()
}

impl Drop for VBridge {
    fn drop(&mut self) {
        for port in &self.ports {
            if let Backend::Peer { shared, .. } = &port.backend {
                shared.detach_bridge();
            }
        }
    }
}

impl fmt::Debug for VBridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VBridge")
            .field("ports", &self.ports.len())
            .field("table", &self.table)
            .field("max_frame_len", &self.max_frame_len)
            .finish()
    }
}
