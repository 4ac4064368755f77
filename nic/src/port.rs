//! The interface every NIC backend implements: a [`Port`] (its control side, [`PortControl`])
//! hands out [`QueuePair`]s, one per stack thread, and where it can, transmit-only queues for
//! the threads beyond its receive queues ([`Port::take_transmit_queue`]); and the frame source
//! a receive queue may draw from.
//!
//! The engine loop is generic over [`Port::Queue`] (monomorphized, no trait object on the
//! per-packet path); the exporters read the control side through `dyn PortControl`. One stack
//! thread owns each queue pair (`Send`, used through `&mut self`), as one lcore owns a DPDK
//! queue: no method synchronizes with another thread's queue pair.
//!
//! # Buffer ownership
//!
//! Buffers cross the interface as owned [`PktBuf`] handles, never copied by the interface:
//! - **Receive.** A queue takes the buffers it fills from the caller's [`PoolCache`] (or hands
//!   over buffers it already holds, as a DPDK driver hands over mbufs from its ring); each one
//!   [`QueuePair::rx_burst`] appends belongs to the caller from then on.
//! - **Transmit.** [`QueuePair::tx_burst`] takes the prefix of the caller's vector it accepts;
//!   the port owns those buffers until they are sent, and then frees them into the cache it was
//!   given (a port that copies frames into a kernel ring frees at once). What it refuses stays
//!   in the vector, still the caller's, who frees and counts it (the engine's `tx_full`).
//! - **Shutdown.** Once every queue's owner has stopped, [`PortControl::reclaim`] frees whatever
//!   the port still holds (frames on its rings) so that the pool can be counted whole.
//!
//! # Drops
//!
//! A port may drop a frame before any owner received it (its ring was full, no buffer was free,
//! the frame did not fit a buffer, the kernel's ring overflowed); it counts each such drop per
//! queue and by reason, and [`PortControl::drops`] reports them. A frame `rx_burst` returned is
//! never dropped by the port afterwards, and `tx_burst` never drops silently: a frame is either
//! accepted (and the port's to send or count) or left to the caller.

use std::os::fd::BorrowedFd;

use std::sync::Arc;

use crate::pool::{PacketPool, PktBuf, PoolCache};
use crate::rss::SoftRss;

/// The control side of a NIC port: what the engine reads while setting up and the exporters
/// read while it runs. Object safe; every method may be called from any thread.
pub trait PortControl: Send + Sync {
    /// Number of queue pairs.
    fn queues(&self) -> u16;

    /// The port's link address.
    fn mac(&self) -> [u8; 6];

    /// One line for logs: the backend, its queues and what else a user needs to recognize it.
    fn describe(&self) -> String;

    /// Frames the port dropped before any owner received them, per queue, as (reason, count);
    /// every queue lists the same reasons in the same order. Transmit refusals are not here:
    /// the caller of [`QueuePair::tx_burst`] counts them.
    fn drops(&self) -> Vec<Vec<(&'static str, u64)>>;

    /// The receive-side hash and redirection table the port spreads flows with, when the
    /// software can compute it exactly (to choose local ports whose replies land on a given
    /// queue); `None` when the spread is not known (a kernel's fanout).
    fn rss(&self) -> Option<&SoftRss> {
        None
    }

    /// The pool the port's receive queues fill, when the port brings its own (a DPDK port
    /// receives into the mbufs of the mempool its queues were set up with); the engine then
    /// takes every buffer from it. `None` (the default): the engine makes the pool and the
    /// port copies received frames into buffers of the caller's cache.
    fn buffers(&self) -> Option<Arc<PacketPool>> {
        None
    }

    /// Called by each stack thread on itself before it polls; what it returns stays with the
    /// thread and is dropped there when the thread ends, after its pool cache. A DPDK port
    /// registers the thread as an EAL lcore, so that the driver's own allocations at receive and
    /// frees after transmit on it go through the mempools' per-lcore caches. Default: nothing to
    /// hold. Errors: what the thread cannot run without, as a sentence.
    fn enter_thread(&self) -> Result<ThreadHold, String> {
        Ok(ThreadHold::default())
    }

    /// Whether the port's input has ended: every frame it will ever receive has been returned
    /// by [`QueuePair::rx_burst`] (a capture replayed to its end). The engine's run then stops
    /// by itself, its shutdown processing what is in flight. Default: `false`, the input of a
    /// NIC never ends.
    fn exhausted(&self) -> bool {
        false
    }

    /// Points the entries of the receive side's redirection table that name queue `failed` at
    /// `survivors`, round robin, so that the flows it received arrive on theirs from now on (the
    /// engine's `on_failure = "redistribute"`, after the thread of `failed` failed). What is on
    /// `failed` already stays there, for a survivor to drain. `Ok(true)`: rewritten; `Ok(false)`
    /// (the default): the port has no table software can rewrite, and `failed` keeps receiving
    /// its flows, which a survivor then polls. The model [`PortControl::rss`] returns is not
    /// changed, and need not be: only entries naming `failed` change, so a local port the
    /// model picks for a surviving queue still brings the replies there. Errors: the device
    /// refused, as a sentence.
    fn redirect_queue(&self, failed: u16, survivors: &[u16]) -> Result<bool, String> {
        let _ = (failed, survivors);
        Ok(false)
    }

    /// Whether frames wait on receive queue `queue`, where the port can tell without the
    /// queue's owner: the engine's stall watchdog declares a thread that makes no progress
    /// stalled only while work waits for it. `None` (the default): the port cannot tell, and
    /// the watchdog goes by the thread's software queue and its progress alone.
    fn rx_waiting(&self, queue: u16) -> Option<bool> {
        let _ = queue;
        None
    }

    /// Frees into `cache` every buffer the port still holds (frames on its rings); returns how
    /// many. Called once every queue's owner has stopped.
    fn reclaim(&self, cache: &mut PoolCache) -> usize {
        let _ = cache;
        0
    }
}

/// What a port keeps on one of its threads while the thread runs ([`PortControl::enter_thread`]):
/// dropped on that thread when it ends. Neither `Send` nor `Sync`, as a registration with a
/// thread is not.
#[derive(Default)]
pub struct ThreadHold(Option<Box<dyn std::any::Any>>);

impl ThreadHold {
    /// Holds `what` until the thread drops it.
    pub fn new(what: impl std::any::Any) -> ThreadHold {
        ThreadHold(Some(Box::new(what)))
    }

    /// Whether the port keeps something on the thread.
    pub fn holds(&self) -> bool {
        self.0.is_some()
    }
}

impl std::fmt::Debug for ThreadHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ThreadHold").field(&self.holds()).finish()
    }
}

/// `n` queues in words: "1 queue", "2 queues".
pub fn queues_text(n: u16) -> String {
    match n {
        1 => "1 queue".to_owned(),
        n => format!("{n} queues"),
    }
}

/// A link address as `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// A NIC port: its control side and its queue pairs, each taken by one owner.
pub trait Port: PortControl + 'static {
    /// One queue pair, owned by one stack thread.
    type Queue: QueuePair + 'static;
    /// Why a queue could not be taken.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Takes queue pair `queue` for one owner. Errors: out of range, or held by a live owner
    /// (dropping the queue pair makes it available again).
    fn take_queue(&self, queue: u16) -> Result<Self::Queue, Self::Error>;

    /// Takes a transmit-only queue for owner `owner` (`owner >= queues()`: a stack thread
    /// beyond the receive queues, which receives only what other threads hand it). Its
    /// `tx_burst` sends on the port like a queue pair's; its `rx_burst` never returns a frame
    /// and it has no `rx_wait_fd`.
    ///
    /// `Ok(None)` (the default): the port has no such queue to give, and the owner transmits
    /// through a software transmit queue that a thread with a queue pair drains onto its own.
    /// Which ports give one: AF_PACKET (a send socket of its own, outside the fanout group), a
    /// DPDK device configured with more transmit than receive queues; not uveth (its transmit
    /// rings are what the wire reads, one per queue pair) nor the generator's port.
    fn take_transmit_queue(&self, owner: u16) -> Result<Option<Self::Queue>, Self::Error> {
        let _ = owner;
        Ok(None)
    }
}

/// One queue pair of a port, owned by one stack thread.
pub trait QueuePair: Send {
    /// Appends up to `max` received frames to `out`; returns how many. Each frame's
    /// [`PktBuf::rss_hash`] is set by whoever put it on the queue, as a NIC writes it into the
    /// mbuf. Never blocks.
    fn rx_burst(&mut self, cache: &mut PoolCache, out: &mut Vec<PktBuf>, max: usize) -> usize;

    /// Transmits a prefix of `pkts` (removed from it); the rest stays for the caller to free and
    /// count. Never blocks.
    fn tx_burst(&mut self, cache: &mut PoolCache, pkts: &mut Vec<PktBuf>) -> usize;

    /// The queue index within its port.
    fn queue_id(&self) -> u16;

    /// A descriptor that becomes readable when `rx_burst` has a frame to return, for an owner
    /// that sleeps while idle ([`crate::wait::wait_readable`]); `None` (the default) when the
    /// queue has none, and its owner must poll.
    fn rx_wait_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

/// Something that produces frames for one receive queue (the traffic generator, a peer).
pub trait FrameSource: Send {
    /// Writes up to `max` frames into buffers allocated from `cache`, appending them to `out`;
    /// returns how many. The source sets each frame's receive hash.
    fn fill(
        &mut self,
        queue: u16,
        cache: &mut PoolCache,
        out: &mut Vec<PktBuf>,
        max: usize,
    ) -> usize;
}

impl<S: FrameSource + ?Sized> FrameSource for Box<S> {
    fn fill(
        &mut self,
        queue: u16,
        cache: &mut PoolCache,
        out: &mut Vec<PktBuf>,
        max: usize,
    ) -> usize {
        (**self).fill(queue, cache, out, max)
    }
}

/// A source that never produces a frame: the `S` of a queue fed only by injection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoSource;

impl FrameSource for NoSource {
    fn fill(&mut self, _: u16, _: &mut PoolCache, _: &mut Vec<PktBuf>, _: usize) -> usize {
        0
    }
}
