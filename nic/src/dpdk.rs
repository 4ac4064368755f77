//! A DPDK ethdev as a [`Port`] (feature `dpdk`): its queue pairs receive into and send from the
//! mbufs of a [`PacketPool::with_mbufs`] pool, with no copy; with a tiered pool
//! ([`PacketPool::with_mbufs_tiered`]) each receive queue fills from its own L1 mempool, and the
//! stack threads register as EAL lcores ([`PortControl::enter_thread`]) so that the driver's
//! allocations and frees go through the per-lcore caches. A received mbuf becomes the
//! buffer's handle ([`PktBuf::from_mbuf`]); a buffer to send becomes its mbuf again
//! ([`PktBuf::into_mbuf`]).
//!
//! Ownership: `rx_burst` hands the caller the buffers of the mbufs the driver returned (the
//! driver refills its ring from the pool's mempool); `tx_burst` gives the driver the mbufs it
//! accepts, which it frees back into the mempool once sent, and converts the refused ones back
//! into buffers left in the caller's vector. An mbuf not in the pool's form (chained, or data
//! not at the headroom's end) is freed with `rte_pktmbuf_free` and counted (`rx_unusable`).
//! Stopping the device (on [`PortControl::reclaim`]) returns the mbufs of its receive rings.
//!
//! Not yet: RSS configuration (the device runs with its defaults, and `rss` reports `None`),
//! configuration keys and the engine's choice of this port; see the issue of the DPDK port.

use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use dpdk_sys::{ethdev, ffi};

use crate::pool::{PacketPool, PktBuf, PoolCache, Tier};
use crate::port::{mac_text, Port, PortControl, QueuePair, ThreadHold};

/// Most mbufs one `rx_burst` or `tx_burst` call moves through the driver; larger requests are
/// split.
const BURST: usize = 64;

/// Why a DPDK port could not be opened or a queue taken.
#[derive(Debug)]
pub enum DpdkPortError {
    /// The pool's buffers are not mbufs (`PacketPool::with_mbufs` makes ones that are).
    NotMbufs,
    /// DPDK refused; its operation and message.
    Dpdk(dpdk_sys::Error),
    /// The queue does not exist or is held by a live owner.
    Queue {
        /// The queue asked for.
        queue: u16,
        /// The port's queue count.
        queues: u16,
    },
}

impl fmt::Display for DpdkPortError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DpdkPortError::NotMbufs => f.write_str(
                "DPDK port: the packet pool's buffers are not mbufs (PacketPool::with_mbufs)",
            ),
            DpdkPortError::Dpdk(e) => write!(f, "DPDK port: {e}"),
            DpdkPortError::Queue { queue, queues } => write!(
                f,
                "DPDK port: queue {queue} is taken or out of range (the port has {queues})"
            ),
        }
    }
}

impl std::error::Error for DpdkPortError {}

struct QueueState {
    taken: AtomicBool,
    /// Received mbufs not in the pool's form, freed.
    rx_unusable: AtomicU64,
}

/// A started ethdev with `queues` queue pairs over one mbuf pool.
pub struct DpdkPort {
    port: u16,
    name: String,
    mac: [u8; 6],
    pool: Arc<PacketPool>,
    queues: Arc<[QueueState]>,
    /// Stopped already (by `reclaim`): the queues must not be polled again.
    stopped: Mutex<bool>,
}

impl DpdkPort {
    /// Configures ethdev `port` with `queues` receive and transmit queues of `descriptors`
    /// entries, receiving into `pool` (a `with_mbufs` pool), and starts it.
    pub fn open(
        port: u16,
        queues: u16,
        descriptors: u16,
        pool: Arc<PacketPool>,
    ) -> Result<DpdkPort, DpdkPortError> {
        DpdkPort::open_with(port, queues, (descriptors, descriptors), pool)
    }

    /// [`open`](Self::open) with (receive, transmit) descriptors per queue.
    pub fn open_with(
        port: u16,
        queues: u16,
        (rx_descriptors, tx_descriptors): (u16, u16),
        pool: Arc<PacketPool>,
    ) -> Result<DpdkPort, DpdkPortError> {
        // Each receive queue fills from its L1's mempool (the shared one's without an L1).
        let mempools = (0..queues)
            .map(|q| pool.mempool_for(Tier::Queue(q)))
            .collect::<Option<Vec<_>>>()
            .ok_or(DpdkPortError::NotMbufs)?;
        let name = ethdev::name(port).map_err(DpdkPortError::Dpdk)?;
        ethdev::start_with_pools(port, (&mempools, rx_descriptors), (queues, tx_descriptors))
            .map_err(DpdkPortError::Dpdk)?;
        let mac = ethdev::mac_addr(port).map_err(DpdkPortError::Dpdk)?;
        Ok(DpdkPort {
            port,
            name,
            mac,
            pool,
            queues: (0..queues)
                .map(|_| QueueState {
                    taken: AtomicBool::new(false),
                    rx_unusable: AtomicU64::new(0),
                })
                .collect(),
            stopped: Mutex::new(false),
        })
    }

    /// The ethdev's port id.
    pub fn port_id(&self) -> u16 {
        self.port
    }
}

impl PortControl for DpdkPort {
    fn queues(&self) -> u16 {
        self.queues.len() as u16
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn describe(&self) -> String {
        format!(
            "dpdk port {} ({}), {} queues, mac {}",
            self.port,
            self.name,
            self.queues(),
            mac_text(self.mac)
        )
    }

    fn drops(&self) -> Vec<Vec<(&'static str, u64)>> {
        self.queues
            .iter()
            .map(|q| vec![("rx_unusable", q.rx_unusable.load(Ordering::Relaxed))])
            .collect()
    }

    fn buffers(&self) -> Option<Arc<PacketPool>> {
        Some(self.pool.clone())
    }

    /// Registers the thread as an EAL lcore (a thread that already is one keeps its id), so
    /// that the driver's allocations and frees on it use the mempools' per-lcore caches; the
    /// hold flushes the thread's caches of every mempool of the pool and unregisters.
    fn enter_thread(&self) -> Result<ThreadHold, String> {
        if dpdk_sys::eal::lcore_id().is_some() {
            return Ok(ThreadHold::default());
        }
        let registration = dpdk_sys::eal::register_thread()
            .map_err(|e| format!("registering the thread as an EAL lcore: {e}"))?;
        Ok(ThreadHold::new(Lcore {
            pool: self.pool.clone(),
            _registration: registration,
        }))
    }

    /// Stops the device, which returns the mbufs of its receive rings to the pool. Called once
    /// every queue's owner has stopped.
    fn reclaim(&self, _cache: &mut PoolCache) -> usize {
        let mut stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        if !*stopped {
            // A failed stop leaves the mbufs in the device: the pool's count shows them.
            let _ = ethdev::stop(self.port);
            *stopped = true;
        }
        0
    }
}

impl Port for DpdkPort {
    type Queue = DpdkQueue;
    type Error = DpdkPortError;

    fn take_queue(&self, queue: u16) -> Result<DpdkQueue, DpdkPortError> {
        let free = self
            .queues
            .get(usize::from(queue))
            .is_some_and(|state| !state.taken.swap(true, Ordering::AcqRel));
        if !free {
            return Err(DpdkPortError::Queue {
                queue,
                queues: self.queues(),
            });
        }
        Ok(DpdkQueue {
            port: self.port,
            queue,
            queues: self.queues.clone(),
            _pool: self.pool.clone(),
            mbufs: [std::ptr::null_mut(); BURST],
        })
    }
}

/// A stack thread's EAL lcore: on drop (on the thread) its per-lcore caches of the pool's
/// mempools are flushed, then the lcore id is released, so every mbuf is back on its mempool's
/// ring and no cache is left with an id the next registered thread would inherit.
struct Lcore {
    pool: Arc<PacketPool>,
    _registration: dpdk_sys::eal::ThreadRegistration,
}

impl Drop for Lcore {
    fn drop(&mut self) {
        for mempool in self.pool.mempools() {
            mempool.flush_lcore_cache();
        }
    }
}

/// Queue pair `queue` of a [`DpdkPort`], owned by one thread; dropping it frees the queue.
pub struct DpdkQueue {
    port: u16,
    queue: u16,
    queues: Arc<[QueueState]>,
    /// The pool the device receives into stays alive while the queue can be polled.
    _pool: Arc<PacketPool>,
    /// Scratch for one driver call.
    mbufs: [*mut ffi::rte_mbuf; BURST],
}

// SAFETY: the raw pointers in `mbufs` are scratch, meaningful only within one call of the owning
// thread; between calls they are stale values never dereferenced.
unsafe impl Send for DpdkQueue {}

impl QueuePair for DpdkQueue {
    fn rx_burst(&mut self, _cache: &mut PoolCache, out: &mut Vec<PktBuf>, max: usize) -> usize {
        let start = out.len();
        let mut unusable = 0;
        while out.len() - start < max {
            let want = (max - (out.len() - start)).min(BURST);
            // SAFETY: this queue pair is the queue's only owner (take_queue), the port is
            // started; the scratch holds `want` pointers.
            let got = unsafe { ethdev::rx_burst(self.port, self.queue, &mut self.mbufs[..want]) };
            for &m in &self.mbufs[..got] {
                let Some(m) = NonNull::new(m) else { continue };
                // SAFETY: the driver returned m, so it is ours; it is an mbuf of the pool the
                // queue was set up with, a `with_mbufs` pool; one handle is made.
                match unsafe { PktBuf::from_mbuf(m) } {
                    Some(buf) => out.push(buf),
                    None => {
                        // SAFETY: m is still ours (from_mbuf refused it) and freed once.
                        unsafe { dpdk_sys::pktmbuf_free(m.as_ptr()) };
                        unusable += 1;
                    }
                }
            }
            if got < want {
                break;
            }
        }
        if unusable > 0 {
            self.state()
                .rx_unusable
                .fetch_add(unusable, Ordering::Relaxed);
        }
        out.len() - start
    }

    fn tx_burst(&mut self, _cache: &mut PoolCache, pkts: &mut Vec<PktBuf>) -> usize {
        let mut sent = 0;
        while !pkts.is_empty() {
            let n = pkts.len().min(BURST);
            for (slot, buf) in self.mbufs.iter_mut().zip(&mut pkts[..n]) {
                *slot = buf.mbuf_to_send().as_ptr();
            }
            // SAFETY: this queue pair is the queue's only owner and the port is started; the
            // scratch's first n entries are the mbufs of owned buffers, written for sending.
            let taken = unsafe { ethdev::tx_burst(self.port, self.queue, &mut self.mbufs[..n]) };
            // The driver owns what it took: those handles go, without a free. What it refused
            // stays at the front of `pkts`, still the caller's.
            pkts.drain(..taken);
            sent += taken;
            if taken < n {
                break;
            }
        }
        sent
    }

    fn queue_id(&self) -> u16 {
        self.queue
    }
}

impl DpdkQueue {
    fn state(&self) -> &QueueState {
        &self.queues[usize::from(self.queue)]
    }
}

impl Drop for DpdkQueue {
    fn drop(&mut self) {
        self.state().taken.store(false, Ordering::Release);
    }
}
