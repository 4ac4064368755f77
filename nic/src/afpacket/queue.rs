//! One taken queue of the AF_PACKET port: a queue pair (the ring walk on receive, `sendmmsg`
//! on transmit) or a transmit-only queue (`sendmmsg` on a send socket of its own, nothing to
//! receive).

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::ring::{Next, Ring, RxCursor, RxFrame, RxRing};
use super::stats::{add_single_writer, QueueCounters};
use super::sys::{TP_STATUS_CSUMNOTREADY, TP_STATUS_VLAN_TPID_VALID, TP_STATUS_VLAN_VALID};
use super::tx::{TxEnd, TxScratch};
use super::{QueueShared, SenderShared};
use crate::pool::{PktBuf, PoolCache};
use crate::port::QueuePair;

/// Receive polls between two reads of the kernel's ring counters (one `getsockopt` each):
/// rare enough to cost nothing per packet, frequent enough that a busy port's counters move.
const KERNEL_STATS_EVERY: u32 = 1 << 14;

/// Bytes of the 802.1Q tag the kernel strips from received frames and this queue restores.
const VLAN_TAG_LEN: usize = 4;
/// TPID of a tag reported without one (`TP_STATUS_VLAN_TPID_VALID` unset): 802.1Q.
const TPID_8021Q: u16 = 0x8100;

/// A queue of an [`AfPacketPort`](super::AfPacketPort), owned by one stack thread: queue pair
/// `queue_id`, or the transmit-only queue of owner `queue_id` (beyond the queue pairs).
///
/// Holds the port's sockets and rings alive (an `Arc`), so it may outlive the port value.
/// Dropping it releases it for the next owner: a queue pair reads the kernel counters one last
/// time and keeps its ring position, so the next owner continues where this one stopped.
pub struct AfPacketQueue {
    side: Side,
    tx: TxScratch,
}

/// What the queue owns of the port.
enum Side {
    /// A receive ring in the fanout group and a send socket.
    Pair {
        queues: Arc<[QueueShared]>,
        queue: u16,
        cursor: RxCursor,
        polls: u32,
    },
    /// A send socket only, outside the fanout group: it receives nothing.
    TransmitOnly {
        sender: Arc<SenderShared>,
        owner: u16,
    },
}

impl AfPacketQueue {
    pub(super) fn new(queues: Arc<[QueueShared]>, queue: u16, cursor: RxCursor) -> Self {
        AfPacketQueue {
            side: Side::Pair {
                queues,
                queue,
                cursor,
                polls: 0,
            },
            tx: TxScratch::default(),
        }
    }

    pub(super) fn transmit_only(sender: Arc<SenderShared>, owner: u16) -> Self {
        AfPacketQueue {
            side: Side::TransmitOnly { sender, owner },
            tx: TxScratch::default(),
        }
    }

    /// Reads the kernel's drop and freeze counts for this queue's ring into the statistics
    /// (one `getsockopt`). `rx_burst` does this every few thousand polls on its own; a
    /// transmit-only queue has no ring and reads nothing.
    pub fn sync_kernel_stats(&self) {
        if let Side::Pair { queues, queue, .. } = &self.side {
            queues[usize::from(*queue)].sync_kernel_stats();
        }
    }

    /// True for a transmit-only queue.
    pub fn is_transmit_only(&self) -> bool {
        matches!(self.side, Side::TransmitOnly { .. })
    }
}

/// Walks `ring` from `cursor`, copying up to `max` frames into buffers from `cache`; returns
/// the frames delivered and the frames lost to invalid headers. At most `max` ring frames are
/// consumed, delivered or dropped (counted). Generic over the ring kind: one loop per kind.
#[inline]
fn walk<R: Ring>(
    ring: &R,
    cursor: &mut R::Cursor,
    shared: &QueueShared,
    cache: &mut PoolCache,
    out: &mut Vec<PktBuf>,
    max: usize,
) -> (usize, u64) {
    let mut walked = 0;
    let mut delivered = 0;
    let mut invalid = 0u64;
    while walked < max {
        match ring.next_frame(cursor) {
            Next::Empty => break,
            Next::Invalid { lost } => {
                invalid += u64::from(lost);
                walked += lost as usize;
            }
            Next::Frame(frame) => {
                if let Some(buf) = take_frame(shared, cache, &frame) {
                    out.push(buf);
                    delivered += 1;
                }
                ring.consume(cursor, frame);
                walked += 1;
            }
        }
    }
    (delivered, invalid)
}

/// Copies one ring frame into a buffer, restoring a VLAN tag the kernel moved out of it, with
/// the frame's flow hash as the buffer's receive hash. `None` (counted) when the frame is
/// dropped.
#[inline]
fn take_frame(shared: &QueueShared, cache: &mut PoolCache, frame: &RxFrame<'_>) -> Option<PktBuf> {
    let counters = &shared.counters.owner;
    let data = frame.data();
    // A tag goes back after the two addresses; a frame too short to have them keeps none.
    let tagged = frame.status & TP_STATUS_VLAN_VALID != 0 && data.len() >= 12;
    let len = data.len() + if tagged { VLAN_TAG_LEN } else { 0 };
    let truncated = (data.len() as u64) < u64::from(frame.wire_len);
    if truncated || len > cache.pool().data_room() as usize {
        add_single_writer(&counters.rx_dropped_oversize, 1);
        return None;
    }
    let Some(mut buf) = cache.alloc() else {
        add_single_writer(&counters.rx_dropped_no_buffer, 1);
        return None;
    };
    let room = buf.buffer_mut();
    if tagged {
        let tpid = if frame.status & TP_STATUS_VLAN_TPID_VALID != 0 {
            frame.vlan_tpid
        } else {
            TPID_8021Q
        };
        room[..12].copy_from_slice(&data[..12]);
        room[12..14].copy_from_slice(&tpid.to_be_bytes());
        room[14..16].copy_from_slice(&frame.vlan_tci.to_be_bytes());
        room[16..len].copy_from_slice(&data[12..]);
    } else {
        room[..data.len()].copy_from_slice(data);
    }
    if buf.set_len(len).is_err() {
        cache.free(buf);
        add_single_writer(&counters.rx_dropped_oversize, 1);
        return None;
    }
    buf.set_rss_hash(frame.rxhash);
    if frame.status & TP_STATUS_CSUMNOTREADY != 0 {
        add_single_writer(&counters.rx_checksum_partial, 1);
    }
    Some(buf)
}

impl QueuePair for AfPacketQueue {
    /// Walks the ring from where the last call stopped, copying up to `max` frames into
    /// buffers from `cache`; at most `max` ring frames are consumed per call, delivered or
    /// dropped (counted). No system call, except one `getsockopt` every
    /// `KERNEL_STATS_EVERY` polls. A transmit-only queue returns nothing.
    fn rx_burst(&mut self, cache: &mut PoolCache, out: &mut Vec<PktBuf>, max: usize) -> usize {
        let Side::Pair {
            queues,
            queue,
            cursor,
            polls,
        } = &mut self.side
        else {
            return 0;
        };
        let shared = &queues[usize::from(*queue)];
        *polls = polls.wrapping_add(1);
        if *polls & (KERNEL_STATS_EVERY - 1) == 0 {
            shared.sync_kernel_stats();
        }
        let (delivered, invalid) = match (&shared.ring, cursor) {
            (RxRing::Blocks(ring), RxCursor::Blocks(cursor)) => {
                walk(ring, cursor, shared, cache, out, max)
            }
            (RxRing::Frames(ring), RxCursor::Frames(cursor)) => {
                walk(ring, cursor, shared, cache, out, max)
            }
            // The cursor is made by the ring (`RxRing::start`) and never changes kind.
            _ => (0, 0),
        };
        let counters = &shared.counters.owner;
        add_single_writer(&counters.rx, delivered as u64);
        add_single_writer(&counters.rx_dropped_invalid, invalid);
        delivered
    }

    /// The receive socket: readable when the ring has a frame for `rx_burst`; none for a
    /// transmit-only queue.
    fn rx_wait_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.side {
            Side::Pair { queues, queue, .. } => Some(queues[usize::from(*queue)].rx_fd.as_fd()),
            Side::TransmitOnly { .. } => None,
        }
    }

    /// Sends the burst with one `sendmmsg` (more only if the kernel takes part of it); sent
    /// frames are freed to `cache` (the kernel copied them). On EAGAIN / ENOBUFS the rest stays
    /// in `pkts` (counted `tx_refused`); on another error the failing frame and the rest stay
    /// (counted `tx_errors`). Never blocks.
    fn tx_burst(&mut self, cache: &mut PoolCache, pkts: &mut Vec<PktBuf>) -> usize {
        if pkts.is_empty() {
            return 0;
        }
        let (fd, counters): (_, &QueueCounters) = match &self.side {
            Side::Pair { queues, queue, .. } => {
                let shared = &queues[usize::from(*queue)];
                (&shared.tx_fd, &shared.counters)
            }
            Side::TransmitOnly { sender, .. } => (&sender.fd, &sender.counters),
        };
        let (sent, end) = self.tx.send(fd, pkts);
        for buf in pkts.drain(..sent) {
            cache.free(buf);
        }
        let counters = &counters.owner;
        add_single_writer(&counters.tx, sent as u64);
        let left = pkts.len() as u64;
        match end {
            TxEnd::Complete => {}
            TxEnd::Full => add_single_writer(&counters.tx_refused, left),
            TxEnd::Error => add_single_writer(&counters.tx_errors, left),
        }
        sent
    }

    fn queue_id(&self) -> u16 {
        match &self.side {
            Side::Pair { queue, .. } => *queue,
            Side::TransmitOnly { owner, .. } => *owner,
        }
    }
}

impl Drop for AfPacketQueue {
    fn drop(&mut self) {
        self.sync_kernel_stats();
        // Release pairs with the acquire in `take_queue` / `take_transmit_queue`: the next owner
        // sees the cursor, the counters and the ring state this owner left.
        match &self.side {
            Side::Pair {
                queues,
                queue,
                cursor,
                ..
            } => {
                let shared = &queues[usize::from(*queue)];
                *shared
                    .cursor
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = *cursor;
                shared.taken.store(false, Ordering::Release);
            }
            Side::TransmitOnly { sender, .. } => sender.taken.store(false, Ordering::Release),
        }
    }
}

impl fmt::Debug for AfPacketQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.side {
            Side::Pair { queue, cursor, .. } => f
                .debug_struct("AfPacketQueue")
                .field("queue", queue)
                .field("cursor", cursor)
                .finish(),
            Side::TransmitOnly { owner, .. } => f
                .debug_struct("AfPacketQueue")
                .field("transmit_only_owner", owner)
                .finish(),
        }
    }
}
