//! A ring-backed ethdev (`rte_eth_from_rings`): an ethdev whose receive queue q dequeues mbufs
//! from one `rte_ring` and whose transmit queue q enqueues onto another, so that a program can be
//! the wire on both sides of a DPDK port with no NIC, no driver beyond `net_ring` and no root.
//!
//! Ownership: [`RingDevice::create`] makes the rings (single producer, single consumer each) and
//! the ethdev over them, and hands out one [`RingDeviceQueue`] per queue pair: the producer end of
//! the receive ring (what a NIC would put on the wire towards the port) and the consumer end of
//! the transmit ring (what the port sent). The ethdev holds the other two ends: its `rx_burst`
//! consumes the receive ring, its `tx_burst` produces onto the transmit ring. A queue's ends and
//! its ethdev queue are used by one thread at a time (the queue's owner), so single-producer and
//! single-consumer rings suffice and no burst pays a compare-and-swap. The rings hold mbuf
//! pointers only; whoever feeds or drains them owns the mbufs.
//!
//! Lifetime: the rings live while the device or any of its queues does; dropping the
//! [`RingDevice`] removes the ethdev (`rte_vdev_uninit`, which stops and releases the port) before
//! its rings go. Mbufs still on a ring then are the caller's loss: drain first.

use std::ffi::{c_void, CString};
use std::sync::Arc;

use crate::{eal, ffi, Error, Ring, RingConsumer, SpProducer};

/// The ethdev over the rings; its queues' ends are the [`RingDeviceQueue`]s `create` returned.
#[derive(Debug)]
pub struct RingDevice {
    port: u16,
    name: String,
    /// The rings, alive until the ethdev is gone (`Drop` removes it first).
    _rings: Vec<Arc<RingPair>>,
}

/// The rings of one queue pair: the ends the device's queue owner uses, and the ends the ethdev
/// uses, which stay here so that the rings outlive every user.
#[derive(Debug)]
struct RingPair {
    /// Consumer end of the receive ring: the ethdev's (through its pointer) except while the
    /// queue is drained at shutdown.
    rx_consumer: RingConsumer,
    /// Producer end of the transmit ring: the ethdev's, through its pointer.
    _tx_producer: SpProducer,
}

/// One queue pair's ends of a [`RingDevice`], for its owner: feed the receive ring, drain the
/// transmit ring.
#[derive(Debug)]
pub struct RingDeviceQueue {
    queue: u16,
    rx_producer: SpProducer,
    tx_consumer: RingConsumer,
    rings: Arc<RingPair>,
}

impl RingDevice {
    /// The ring driver's queue limit (`RTE_PMD_RING_MAX_RX_RINGS`, the same for transmit).
    pub const MAX_QUEUES: u16 = ffi::RTE_PMD_RING_MAX_RX_RINGS as u16;

    /// Creates ethdev `net_ring_<name>` (the driver prefixes the name) with `queues` receive and
    /// transmit queues over rings of (`rx_capacity`, `tx_capacity`) mbufs, on the caller's NUMA
    /// socket. `name` must be unique among the process's ring devices and short enough for its
    /// rings' names (`<name>_rx<q>`: at most 26 bytes; the device's at most 31). The device is
    /// created, not configured: start it with [`crate::ethdev::start`] (its receive queues
    /// ignore the mempool given there) and its queue pairs run.
    ///
    /// Errors: the EAL not running, 0 or more than [`Self::MAX_QUEUES`] queues, a name the driver
    /// or the ring allocator refuses (in use, too long), no memory.
    pub fn create(
        name: &str,
        queues: u16,
        (rx_capacity, tx_capacity): (u32, u32),
    ) -> Result<(RingDevice, Vec<RingDeviceQueue>), Error> {
        const OP: &str = "rte_eth_from_rings";
        eal::ensure(OP)?;
        if queues == 0 || queues > Self::MAX_QUEUES {
            return Err(Error::invalid(
                OP,
                format!(
                    "the ring driver takes 1..={} queues, got {queues}",
                    Self::MAX_QUEUES
                ),
            ));
        }
        let cname = CString::new(name)
            .map_err(|_| Error::invalid(OP, format!("name {name:?} contains a NUL byte")))?;
        let mut pairs = Vec::with_capacity(usize::from(queues));
        let mut ends = Vec::with_capacity(usize::from(queues));
        for queue in 0..queues {
            let (rx_producer, rx_consumer) = Ring::spsc(&format!("{name}_rx{queue}"), rx_capacity)?;
            let (tx_producer, tx_consumer) = Ring::spsc(&format!("{name}_tx{queue}"), tx_capacity)?;
            let pair = Arc::new(RingPair {
                rx_consumer,
                _tx_producer: tx_producer,
            });
            pairs.push(pair.clone());
            ends.push((queue, rx_producer, tx_consumer, pair));
        }
        let rx: Vec<*mut ffi::rte_ring> = pairs.iter().map(|p| p.rx_consumer.as_ptr()).collect();
        let tx: Vec<*mut ffi::rte_ring> = ends.iter().map(|(_, _, c, _)| c.as_ptr()).collect();
        // SAFETY: the EAL runs; cname is a C string; rx and tx hold `queues` live rings each,
        // which stay alive in `pairs` (and the queues' ends) until the device is removed in
        // Drop. The driver copies the arrays.
        let rc = unsafe {
            ffi::rte_eth_from_rings(
                cname.as_ptr(),
                rx.as_ptr(),
                u32::from(queues),
                tx.as_ptr(),
                u32::from(queues),
                ffi::rte_socket_id(),
            )
        };
        if rc < 0 {
            return Err(Error::last(OP));
        }
        let device = RingDevice {
            port: rc as u16,
            name: format!("net_ring_{name}"),
            _rings: pairs,
        };
        let queues = ends
            .into_iter()
            .map(|(queue, rx_producer, tx_consumer, rings)| RingDeviceQueue {
                queue,
                rx_producer,
                tx_consumer,
                rings,
            })
            .collect();
        Ok((device, queues))
    }

    /// The ethdev's port id.
    pub fn port_id(&self) -> u16 {
        self.port
    }

    /// The device's name: `net_ring_<name>` of `create`'s `name`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for RingDevice {
    fn drop(&mut self) {
        let Ok(cname) = CString::new(self.name.as_str()) else {
            return;
        };
        // SAFETY: the device was created under this name (rte_eth_from_rings adds the driver's
        // prefix, as `name` does); removing it stops and releases the
        // ethdev (the ring driver's remove), after which nothing uses its rings' pointers. A
        // failure leaves the port allocated; the rings then stay alive with it (leaked below).
        let rc = unsafe { ffi::rte_vdev_uninit(cname.as_ptr()) };
        if rc < 0 {
            std::mem::forget(std::mem::take(&mut self._rings));
        }
    }
}

impl RingDeviceQueue {
    /// The queue pair's index.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Puts as many leading mbufs of `mbufs` on the receive ring as fit and returns how many;
    /// the device's `rx_burst` on this queue returns them in order. The ring owns the accepted
    /// mbufs until they are received (or drained); the rest stay the caller's.
    pub fn feed(&mut self, mbufs: &[*mut ffi::rte_mbuf]) -> usize {
        // SAFETY: *mut rte_mbuf and *mut c_void have the same size and alignment; the ring
        // copies the pointers without dereferencing them.
        let objs = unsafe {
            std::slice::from_raw_parts(mbufs.as_ptr().cast::<*mut c_void>(), mbufs.len())
        };
        self.rx_producer.enqueue_burst(objs)
    }

    /// Free slots on the receive ring: a `feed` of that many is taken whole (this is the ring's
    /// only producer, and its consumer only frees slots).
    pub fn rx_room(&self) -> usize {
        let used = self.rings.rx_consumer.len();
        self.rx_producer.capacity().saturating_sub(used) as usize
    }

    /// Takes up to `out.len()` mbufs the device sent on this queue into the front of `out` and
    /// returns how many; they are the caller's.
    pub fn drain_tx(&mut self, out: &mut [*mut ffi::rte_mbuf]) -> usize {
        // SAFETY: as in `feed`; the dequeue writes pointers the ring holds into `out`.
        let objs = unsafe {
            std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<*mut c_void>(), out.len())
        };
        self.tx_consumer.dequeue_burst(objs)
    }

    /// Takes up to `out.len()` mbufs fed and not yet received into the front of `out` and returns
    /// how many; they are the caller's.
    ///
    /// # Safety
    ///
    /// No `rx_burst` on this queue runs during the call (the ring has one consumer: the device's
    /// receive queue, or this), e.g. the caller is the queue's owner or the device is stopped.
    pub unsafe fn drain_rx(&mut self, out: &mut [*mut ffi::rte_mbuf]) -> usize {
        let n = u32::try_from(out.len()).unwrap_or(u32::MAX);
        // SAFETY: the caller keeps the device's receive queue idle, so this is the ring's only
        // consumer for the call; the ring is alive (`rings`); out has room for n pointers.
        let done = unsafe {
            ffi::dpdk_sys_ring_sc_dequeue_burst(
                self.rings.rx_consumer.as_ptr(),
                out.as_mut_ptr().cast::<*mut c_void>(),
                n,
                std::ptr::null_mut(),
            )
        };
        done as usize
    }
}
