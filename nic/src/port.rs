//! The queue-pair interface every NIC backend implements, and the frame source a receive queue
//! may draw from.
//!
//! The engine loop is generic over [`QueuePair`] (monomorphized, no trait object on the
//! per-packet path). One stack thread owns each queue pair (`Send`, used through `&mut self`), as
//! one lcore owns a DPDK queue: no method synchronizes with another thread's queue pair.
//! Buffers cross the interface as owned [`PktBuf`] handles, never copied.

use std::os::fd::BorrowedFd;

use crate::pool::{PktBuf, PoolCache};

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
