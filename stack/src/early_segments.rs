//! Keeps a segment without data (a FIN, an ACK) that arrives before what precedes it until that
//! is there.
//!
//! When a flow's packets arrive on several queues (a NIC without RSS, `fanout = "lb"`), a segment
//! one thread hands over may reach the owner before an earlier one its own queue holds. smoltcp
//! keeps out-of-order data, but not an out-of-order FIN: it drops a FIN that comes before the
//! last data, and a FIN that comes after the ACK the peer sent after it (that ACK's sequence
//! number is one past the FIN) is ignored as well. The peer then sends the FIN again only after
//! its retransmission timeout (200 ms and more on Linux): a short connection takes a hundred
//! times longer. So the stack follows, per flow, where the sequence space it has seen ends (data,
//! SYN and FIN), and a segment without data that starts beyond that point waits, as a frame,
//! until a segment reaches it (then it goes to smoltcp right after that segment) or
//! [`HOLD_LIMIT`] passes (then it goes anyway: what precedes it is lost, not late, and smoltcp's
//! retransmission logic takes over). Data segments are never held: smoltcp orders them itself.
//!
//! State: one sequence number per flow this thread saw a SYN or a segment of, bounded (the map
//! starts afresh beyond [`MAX_FLOWS`]: a segment of a forgotten flow is simply not held), and the
//! held frames, at most [`MAX_HELD`]. Cost per TCP segment: one hash map update, and one [`wire::tcp_segment`] pass unless the buffer carries steering's classification.

use std::collections::HashMap;

use flowsteer_nic::pool::{PktBuf, PoolCache};
use flowsteer_nic::wire;
use flowtable::FlowKey;
use smoltcp::time::{Duration, Instant};

use crate::keys::flow_key;
use crate::stats::StackStats;

/// A segment waits at most this long for what precedes it: Linux's minimum retransmission
/// timeout. Holding longer gains nothing (a peer whose data was lost resends it and the FIN
/// after that timeout anyway), and shorter expires on a machine where the thread carrying the
/// data waits for a CPU: with 20 ms, two stack threads on two busy cores let one in a few hundred
/// connections' FINs go early, and the connection then waited for the peer's retransmission.
pub const HOLD_LIMIT: Duration = Duration::from_millis(200);
/// Flows followed at most.
const MAX_FLOWS: usize = 1 << 16;
/// Segments held at once at most: beyond it an early segment goes to smoltcp as it is, so a peer
/// sending segments ahead of its data cannot tie up the pool's buffers.
pub const MAX_HELD: usize = 256;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;

/// A segment waiting for what precedes it.
struct Held {
    frame: PktBuf,
    key: FlowKey,
    seq: u32,
    /// A FIN: its release moves the flow's end one past it.
    fin: bool,
    since: Instant,
}

/// The segments one stack holds back, and where each flow's sequence space seen so far ends.
#[derive(Default)]
pub(crate) struct EarlySegments {
    /// Per flow, the sequence number just past the SYN, data and FIN seen so far.
    next: HashMap<FlowKey, u32, ahash::RandomState>,
    held: Vec<Held>,
}

impl EarlySegments {
    /// Screens the round's `frames`: early segments without data of the thread's flows (`ours`)
    /// are taken out and held; held ones whose predecessors arrived since (in this round or
    /// before) and ones held too long are appended after everything else, in arrival order.
    pub(crate) fn screen(
        &mut self,
        frames: &mut Vec<PktBuf>,
        now: Instant,
        ours: impl Fn(&FlowKey) -> bool,
        stats: &StackStats,
    ) {
        let mut i = 0;
        while i < frames.len() {
            let early = self.observe(&frames[i], &ours);
            if let (Some((key, seq, fin)), true) = (early, self.held.len() < MAX_HELD) {
                stats.early_segments_held.add(1);
                self.held.push(Held {
                    frame: frames.remove(i),
                    key,
                    seq,
                    fin,
                    since: now,
                });
            } else {
                i += 1;
            }
        }
        if self.held.is_empty() {
            return;
        }
        // In arrival order: a FIN released here lets the ACK held behind it go in the same pass.
        let mut k = 0;
        while k < self.held.len() {
            let held = &self.held[k];
            let reached = self
                .next
                .get(&held.key)
                .is_some_and(|&next| !after(held.seq, next));
            let expired = now >= held.since + HOLD_LIMIT;
            if reached || expired {
                let held = self.held.remove(k);
                if expired && !reached {
                    stats.early_segments_expired.add(1);
                }
                if held.fin {
                    self.advance(held.key, held.seq.wrapping_add(1));
                }
                frames.push(held.frame);
                // A release may reach a segment held before this one.
                k = 0;
            } else {
                k += 1;
            }
        }
    }

    /// When the stack must look again although no frame arrives: the oldest hold's limit.
    pub(crate) fn next_check(&self) -> Option<Instant> {
        self.held.iter().map(|h| h.since + HOLD_LIMIT).min()
    }

    /// Frames held back.
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    /// Gives every held frame back (the stack is stopping).
    pub(crate) fn release_all(&mut self, cache: &mut PoolCache) {
        for held in self.held.drain(..) {
            cache.free(held.frame);
        }
        self.next.clear();
    }

    /// Notes `frame`'s segment; the flow, sequence number and FIN flag of one to hold.
    fn observe(
        &mut self,
        frame: &PktBuf,
        ours: &impl Fn(&FlowKey) -> bool,
    ) -> Option<(FlowKey, u32, bool)> {
        // The classification steering kept with the frame, else a parse of our own.
        let parsed = frame.parsed();
        let segment = if parsed.is_some() {
            parsed.tcp_segment(frame.data())?
        } else {
            wire::tcp_segment(frame.data())?
        };
        let key = flow_key(&segment.tuple)?;
        if segment.flags & TCP_RST != 0 {
            self.next.remove(&key);
            return None;
        }
        if segment.flags & TCP_SYN != 0 {
            // A new connection (or its retransmitted SYN): its data starts just past the SYN.
            self.remember(key, segment.seq.wrapping_add(1));
            return None;
        }
        if !ours(&key) {
            return None;
        }
        let fin = segment.flags & TCP_FIN != 0;
        let next = self.next.get(&key).copied();
        if segment.payload_len == 0 && next.is_some_and(|next| after(segment.seq, next)) {
            return Some((key, segment.seq, fin));
        }
        let end = segment
            .seq
            .wrapping_add(segment.payload_len)
            .wrapping_add(u32::from(fin));
        self.advance(key, end);
        None
    }

    /// The flow's sequence space seen reaches `end` (if that is further than before).
    fn advance(&mut self, key: FlowKey, end: u32) {
        match self.next.get(&key) {
            Some(&next) if !after(end, next) => {}
            _ => self.remember(key, end),
        }
    }

    fn remember(&mut self, key: FlowKey, next: u32) {
        if self.next.len() >= MAX_FLOWS && !self.next.contains_key(&key) {
            // Flows that ended with a reset or never finished pile up here; start afresh.
            self.next.clear();
        }
        self.next.insert(key, next);
    }
}

/// True when sequence number `a` comes after `b` (RFC 9293 comparison, modulo 2^32).
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}
