//! The generator's DPDK port (feature `dpdk`): a ring-backed ethdev (`net_ring`, made with
//! `rte_eth_from_rings`, one receive and one transmit ring per queue) run as nic's [`DpdkPort`],
//! with the traffic generator standing in for the wire. The engine's threads then receive through
//! `rte_eth_rx_burst` and send through `rte_eth_tx_burst` on mbufs of a DPDK mempool, as on a NIC,
//! with no NIC and no root.
//!
//! Before each receive burst the queue's owner lets its [`QueueSource`] fill buffers of the pool
//! (mbufs), writes each as a NIC's driver delivers it (length, `hash.rss` = the hash software RSS
//! computed for the flow, `RTE_MBUF_F_RX_RSS_HASH`: the engine takes the hash from the mbuf) and
//! puts them on the queue's receive ring; the device's `rx_burst` then returns them. The source
//! is asked for no more than the burst and the ring's free room, so the ring takes every frame
//! and is empty after the burst. What the queue transmits lands on its transmit ring, which the
//! owner drains after each `tx_burst` back into its pool cache. The spread over the queues is the
//! software RSS of `port.rss_key` and `port.reta_size` ([`PortControl::rss`]), exactly as with
//! the uveth port: the ring device has no RSS of its own.
//!
//! Cost over the uveth port, per burst: one `rte_ring` enqueue and one `rte_eth_rx_burst`
//! (a dequeue of the same ring), and per frame the mbuf fields a driver writes and `from_mbuf`
//! reads back. Ownership: a frame on a ring belongs to the ring until received or drained; after
//! the owners stop, [`PortControl::reclaim`] stops the device and drains every ring into the
//! pool, counting what it finds (`left_on_rings`), so the pool is whole at the end.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crossbeam_utils::CachePadded;
use dpdk_sys::{ffi, RingDevice, RingDeviceQueue};
use flowsteer_nic::dpdk::{DpdkPort, DpdkPortError, DpdkQueue};
use flowsteer_nic::pool::{PktBuf, PoolCache};
use flowsteer_nic::port::{FrameSource, Port, PortControl, QueuePair};
use flowsteer_nic::rss::SoftRss;

use super::{QueueSource, TrafficPlan};

/// Mbufs moved onto or off a ring per call.
const CHUNK: usize = 64;

/// The drops of one queue the port counts (beside the device's own).
#[derive(Debug, Default)]
struct RingDrops {
    /// Generated frames the receive ring refused (never: the source is asked for no more than
    /// the ring's room), freed.
    rx_ring_full: AtomicU64,
    /// Frames found on the queue's rings at shutdown, freed.
    left_on_rings: AtomicU64,
}

/// A ring-backed DPDK port whose receive rings the generator's sources feed.
pub struct GeneratedDpdkPort {
    port: DpdkPort,
    /// The ring device under `port`; queues hold it too, so it outlives every burst.
    device: Arc<RingDevice>,
    rss: SoftRss,
    /// Each queue's ring ends while no owner holds them (all of them before start and after
    /// stop).
    ends: Arc<[Mutex<Option<RingDeviceQueue>>]>,
    drops: Arc<[CachePadded<RingDrops>]>,
    /// The sources not yet taken with their queue.
    plan: Mutex<TrafficPlan>,
}

impl GeneratedDpdkPort {
    /// `port` (a [`DpdkPort`] over `device`, started) with `ends`, the device's queue ends in
    /// queue order, fed by `plan`'s sources; `rss` is the software RSS the plan partitioned the
    /// flows with.
    pub fn new(
        port: DpdkPort,
        device: RingDevice,
        ends: Vec<RingDeviceQueue>,
        rss: SoftRss,
        plan: TrafficPlan,
    ) -> Self {
        GeneratedDpdkPort {
            drops: ends.iter().map(|_| CachePadded::default()).collect(),
            ends: ends.into_iter().map(|e| Mutex::new(Some(e))).collect(),
            port,
            device: Arc::new(device),
            rss,
            plan: Mutex::new(plan),
        }
    }

    /// The device's ethdev port id.
    pub fn port_id(&self) -> u16 {
        self.port.port_id()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PortControl for GeneratedDpdkPort {
    fn queues(&self) -> u16 {
        self.port.queues()
    }

    fn mac(&self) -> [u8; 6] {
        self.port.mac()
    }

    fn describe(&self) -> String {
        format!(
            "{} ({} ring device), traffic generator",
            self.port.describe(),
            self.device.name()
        )
    }

    fn drops(&self) -> Vec<Vec<(&'static str, u64)>> {
        self.port
            .drops()
            .into_iter()
            .zip(self.drops.iter())
            .map(|(mut reasons, ours)| {
                reasons.push(("rx_ring_full", ours.rx_ring_full.load(Ordering::Relaxed)));
                reasons.push(("left_on_rings", ours.left_on_rings.load(Ordering::Relaxed)));
                reasons
            })
            .collect()
    }

    fn rss(&self) -> Option<&SoftRss> {
        Some(&self.rss)
    }

    fn buffers(&self) -> Option<Arc<flowsteer_nic::pool::PacketPool>> {
        self.port.buffers()
    }

    /// Stops the device, then drains every queue's rings into `cache`.
    fn reclaim(&self, cache: &mut PoolCache) -> usize {
        let mut freed = self.port.reclaim(cache);
        for (slot, drops) in self.ends.iter().zip(self.drops.iter()) {
            let mut slot = lock(slot);
            let Some(ends) = slot.as_mut() else {
                continue; // an owner still holds it: not stopped, nothing to take
            };
            let mut mbufs = [std::ptr::null_mut(); CHUNK];
            let mut left = 0;
            loop {
                // SAFETY: the device is stopped and the queue's ends are back in their slot, so
                // no owner runs rx_burst on the queue.
                let n = unsafe { ends.drain_rx(&mut mbufs) };
                left += free_mbufs(&mbufs[..n], cache);
                if n < CHUNK {
                    break;
                }
            }
            loop {
                let n = ends.drain_tx(&mut mbufs);
                left += free_mbufs(&mbufs[..n], cache);
                if n < CHUNK {
                    break;
                }
            }
            drops
                .left_on_rings
                .fetch_add(left as u64, Ordering::Relaxed);
            freed += left;
        }
        freed
    }
}

/// Frees `mbufs` (of the port's pool, owned by the caller) into `cache`; returns how many.
fn free_mbufs(mbufs: &[*mut ffi::rte_mbuf], cache: &mut PoolCache) -> usize {
    for &m in mbufs {
        let Some(m) = NonNull::new(m) else { continue };
        // SAFETY: the caller owns m, an mbuf of the port's `with_mbufs` pool taken off a ring,
        // and makes no other handle for it.
        match unsafe { PktBuf::from_mbuf(m) } {
            Some(buf) => cache.free(buf),
            // Not in the pool's form (nothing on this port makes one): DPDK frees it into its
            // mempool all the same.
            // SAFETY: m is still the caller's and freed once.
            None => unsafe { dpdk_sys::pktmbuf_free(m.as_ptr()) },
        }
    }
    mbufs.len()
}

impl Port for GeneratedDpdkPort {
    type Queue = GeneratedDpdkQueue;
    type Error = DpdkPortError;

    /// The queue with its ring ends and its source; a queue taken a second time (after its
    /// first owner dropped it) has no source left.
    fn take_queue(&self, queue: u16) -> Result<GeneratedDpdkQueue, DpdkPortError> {
        let inner = self.port.take_queue(queue)?;
        // DpdkPort::take_queue checked the index and that no owner holds the queue, whose
        // owner returns the ends before giving up the queue: they are in their slot.
        let slot = usize::from(queue);
        let ends = lock(&self.ends[slot]).take().ok_or(DpdkPortError::Queue {
            queue,
            queues: self.queues(),
        })?;
        let source = lock(&self.plan).take_source(queue);
        Ok(GeneratedDpdkQueue {
            ends: Some(ends),
            inner,
            source,
            slots: self.ends.clone(),
            drops: self.drops.clone(),
            _device: self.device.clone(),
            generated: Vec::with_capacity(CHUNK),
            mbufs: [std::ptr::null_mut(); CHUNK],
        })
    }
}

/// One queue pair of a [`GeneratedDpdkPort`], owned by one stack thread: the device's queue, its
/// ring ends and its source. Dropping it returns the ends to the port.
pub struct GeneratedDpdkQueue {
    /// `Some` until dropped (then back in `slots`).
    ends: Option<RingDeviceQueue>,
    inner: DpdkQueue,
    source: Option<QueueSource>,
    slots: Arc<[Mutex<Option<RingDeviceQueue>>]>,
    drops: Arc<[CachePadded<RingDrops>]>,
    _device: Arc<RingDevice>,
    /// Scratch: one fill's frames.
    generated: Vec<PktBuf>,
    /// Scratch for one ring call.
    mbufs: [*mut ffi::rte_mbuf; CHUNK],
}

// SAFETY: the raw pointers in `mbufs` are scratch, meaningful only within one call of the owning
// thread; between calls they are stale values never dereferenced. Every other field is Send.
unsafe impl Send for GeneratedDpdkQueue {}

impl GeneratedDpdkQueue {
    /// Generates up to `max` frames into buffers of `cache` and puts them on the receive ring as
    /// a NIC's driver would deliver them.
    fn feed(&mut self, cache: &mut PoolCache, max: usize) {
        let (Some(source), Some(ends)) = (self.source.as_mut(), self.ends.as_mut()) else {
            return;
        };
        let want = max.min(ends.rx_room());
        let queue = ends.queue();
        let mut refused = 0;
        let mut generated = 0;
        while generated < want {
            let chunk = (want - generated).min(CHUNK);
            self.generated.clear();
            source.fill(queue, cache, &mut self.generated, chunk);
            // A source may append more than asked: the excess goes back, as on the uveth port.
            while self.generated.len() > chunk {
                if let Some(excess) = self.generated.pop() {
                    cache.free(excess);
                }
            }
            let n = self.generated.len();
            for (slot, buf) in self.mbufs.iter_mut().zip(self.generated.drain(..)) {
                *slot = buf.into_received_mbuf().as_ptr();
            }
            let fed = ends.feed(&self.mbufs[..n]);
            refused += free_mbufs(&self.mbufs[fed..n], cache);
            generated += n;
            if n < chunk {
                break; // rate limit or no buffer: the source has no more now
            }
        }
        if refused > 0 {
            self.drops[usize::from(queue)]
                .rx_ring_full
                .fetch_add(refused as u64, Ordering::Relaxed);
        }
    }

    /// Frees what the device sent on this queue back into `cache`.
    fn drain_sent(&mut self, cache: &mut PoolCache) {
        let Some(ends) = self.ends.as_mut() else {
            return;
        };
        loop {
            let n = ends.drain_tx(&mut self.mbufs);
            free_mbufs(&self.mbufs[..n], cache);
            if n < CHUNK {
                break;
            }
        }
    }
}

impl QueuePair for GeneratedDpdkQueue {
    /// The source's frames through the receive ring, then the device's `rx_burst`.
    fn rx_burst(&mut self, cache: &mut PoolCache, out: &mut Vec<PktBuf>, max: usize) -> usize {
        self.feed(cache, max);
        self.inner.rx_burst(cache, out, max)
    }

    /// The device's `tx_burst`; what it put on the transmit ring is then taken off and freed,
    /// as a NIC frees sent mbufs.
    fn tx_burst(&mut self, cache: &mut PoolCache, pkts: &mut Vec<PktBuf>) -> usize {
        let sent = self.inner.tx_burst(cache, pkts);
        self.drain_sent(cache);
        sent
    }

    fn queue_id(&self) -> u16 {
        self.inner.queue_id()
    }
}

impl Drop for GeneratedDpdkQueue {
    fn drop(&mut self) {
        if let Some(ends) = self.ends.take() {
            let slot = usize::from(ends.queue());
            *lock(&self.slots[slot]) = Some(ends);
        }
    }
}
