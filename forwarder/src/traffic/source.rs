//! The frame source of one receive queue: the flows RSS delivers to that queue, their packets, the
//! rate limit and the churn of connections.
//!
//! One `QueueSource` per queue, owned by the stack thread that owns the queue and called inline
//! before every receive burst ([`FrameSource::fill`]). It shares only the flow table (churn adds
//! exact rules, as a stack's accept does) and its own cache-padded stats block, which it alone
//! writes, once per fill.
//!
//! Cost of one `fill(max)`: at most one clock read (only with a rate limit or the churn profile),
//! then per packet one buffer from the thread's pool cache, one flow draw (uniform: one random
//! number; Zipf: one random number and one alias-table probe, O(1)), one frame write (see
//! `frame`: a template copy plus a 16-byte checksum patch, or a full build when the flows are too
//! many to keep templates) and a push onto `out`. Per churned connection additionally: about
//! `queues` Toeplitz hashes to find a fresh tuple that RSS maps to this queue, one flow-table
//! insert (TCP), and two full frame builds (the old flow's FIN, the new flow's SYN). No
//! allocation and no lock on this path except the flow-table insert of a churned connection.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use flowsteer_nic::pool::{PktBuf, PoolCache};
use flowsteer_nic::port::FrameSource;
use flowsteer_nic::rss::SoftRss;
use flowtable::{FlowTable, Proto, ThreadId};

use super::addresses::Family;
use super::flow::{Flow, FlowShape, IndexLane};
use super::frame::{FrameWriter, TCP_CLOSE, TCP_DATA, TCP_SYN};
use super::pick::FlowPicker;
use super::rate::TokenBucket;
use super::rng::SplitMix64;
use super::stamp::Stamp;
use super::stats::{FillTally, SourceStats};
use crate::keys::flow_key;

/// How a queue's connections come and go (churn profile only).
#[derive(Debug)]
pub(crate) enum Lifetime {
    /// `churn_rate / queues` flows per second are replaced, oldest slot first.
    Scheduled(TokenBucket),
    /// A flow is closed with its `n`-th packet and replaced at once.
    Packets(u32),
}

/// Everything a source needs to set up connections of its own.
pub(crate) struct Churn {
    pub lifetime: Lifetime,
    pub shape: FlowShape,
    pub rss: SoftRss,
    /// Fresh tuple indices of this queue, per family (IPv4, IPv6).
    pub lanes: [IndexLane; 2],
    /// Flow numbers of new flows: `next_id`, then `+ id_stride`, ... (wrapping).
    pub next_id: u32,
    pub id_stride: u32,
    /// Candidate tuples to try before giving up on finding one RSS maps to this queue.
    pub max_tries: u32,
    /// Next slot to be replaced by the schedule.
    pub cursor: usize,
}

/// The frame source of one receive queue: the flows soft RSS delivers to it.
///
/// Concurrency: `Send`, not shared. The thread that owns the queue calls
/// [`fill`](FrameSource::fill) inline before its receive burst; the source then writes only its
/// own state, its queue's [`SourceStats`] block (once per fill) and, under churn, exact rules of the
/// flow table (whose methods are safe from any thread).
///
/// Cost of one fill of `max` frames: at most one clock read (rate limit or churn schedule); per
/// frame one buffer from the pool cache, one flow draw (O(1), uniform or Zipf alias table), one
/// copy of the flow's template plus an incremental checksum patch of the 16 stamp bytes (or, when
/// the flows are too many for templates, a full frame build, O(packet_size)), and a push onto
/// `out`. Per churned connection additionally about `queues` Toeplitz hashes to find a fresh tuple
/// for this queue, one flow-table insert (TCP) and two full frame builds (FIN, SYN). No allocation;
/// no lock except inside that insert.
pub struct QueueSource {
    queue: u16,
    flows: Vec<Flow>,
    frames: FrameWriter,
    picker: FlowPicker,
    rng: SplitMix64,
    rate: Option<TokenBucket>,
    churn: Option<Churn>,
    table: Arc<dyn FlowTable>,
    stats: Arc<[SourceStats]>,
}

/// A fill call ends early: the pool cache had no buffer (or none large enough for the frame).
struct NoBuffer;

impl QueueSource {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        queue: u16,
        flows: Vec<Flow>,
        frames: FrameWriter,
        picker: FlowPicker,
        rng: SplitMix64,
        rate: Option<TokenBucket>,
        churn: Option<Churn>,
        table: Arc<dyn FlowTable>,
        stats: Arc<[SourceStats]>,
    ) -> Self {
        let mut source = QueueSource {
            queue,
            flows,
            frames,
            picker,
            rng,
            rate,
            churn,
            table,
            stats,
        };
        for slot in 0..source.flows.len() {
            let templated = source.frames.set_template(slot, &source.flows[slot]);
            source.flows[slot].templated = templated;
        }
        source
    }

    /// The receive queue this source feeds.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Flows this queue carries at any time.
    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    /// Bytes of every frame.
    pub fn packet_size(&self) -> usize {
        self.frames.packet_size()
    }

    /// Whether packets are copied from per-flow templates (else built one by one).
    pub fn uses_templates(&self) -> bool {
        self.frames.has_templates()
    }

    /// The current flows of the queue and the tuple space they come from (tests).
    #[cfg(test)]
    pub(crate) fn flow_states(&self) -> (&[Flow], &super::addresses::TupleSpace) {
        (&self.flows, self.frames.space())
    }

    /// Writes `flow`'s next packet into `buf` and advances its sequence number.
    fn write_packet(&mut self, slot: usize, last: bool, buf: &mut PktBuf) -> Result<(), NoBuffer> {
        let Some(flow) = self.flows.get(slot).copied() else {
            return Err(NoBuffer);
        };
        let tcp_flags = if last {
            TCP_CLOSE
        } else if flow.opening {
            TCP_SYN
        } else {
            TCP_DATA
        };
        let stamp = Stamp {
            owner: flow.owner,
            last,
            flow: flow.id,
            seq: flow.seq,
        };
        // The only failure is a buffer smaller than packet_size (a pool whose data room the
        // configuration did not check): no buffer fits, so the fill stops as without buffers.
        let len = self
            .frames
            .write(slot, &flow, &stamp, tcp_flags, buf.buffer_mut())
            .map_err(|_| NoBuffer)?;
        buf.set_len(len).map_err(|_| NoBuffer)?;
        buf.set_rss_hash(flow.rss_hash);
        if let Some(flow) = self.flows.get_mut(slot) {
            flow.seq = flow.seq.wrapping_add(1);
            flow.opening = false;
        }
        Ok(())
    }

    /// Sends one packet of `slot` into a fresh buffer; with `closing`, first sets up the flow
    /// that replaces it, and when that succeeds the packet is the old flow's last and the slot
    /// moves to the new flow.
    fn send(
        &mut self,
        slot: usize,
        closing: bool,
        cache: &mut PoolCache,
        out: &mut Vec<PktBuf>,
        tally: &mut FillTally,
    ) -> Result<(), NoBuffer> {
        let Some(mut buf) = cache.alloc() else {
            return Err(NoBuffer);
        };
        let successor = if closing { self.open_flow(tally) } else { None };
        if let Err(no_buffer) = self.write_packet(slot, successor.is_some(), &mut buf) {
            cache.free(buf);
            if let Some(new) = successor {
                self.abandon(&new);
            }
            return Err(no_buffer);
        }
        out.push(buf);
        tally.frames += 1;
        if let Some(new) = successor {
            tally.flows_ended += 1;
            tally.flows_started += 1;
            if let Some(flow) = self.flows.get_mut(slot) {
                *flow = new;
            }
            let templated = self.frames.set_template(slot, &new);
            if let Some(flow) = self.flows.get_mut(slot) {
                flow.templated = templated;
            }
        }
        Ok(())
    }

    /// Sets up a new connection for this queue: a tuple never used before that soft RSS maps
    /// here, a uniformly drawn owner, and (TCP) its exact rule, inserted before any packet of it
    /// exists. `None` (counted as `rule_add_failed`) when the table is full or no fresh tuple is
    /// found.
    fn open_flow(&mut self, tally: &mut FillTally) -> Option<Flow> {
        let queue = self.queue;
        let churn = self.churn.as_mut()?;
        let draft = churn.shape.draft(&mut self.rng);
        let lane = &mut churn.lanes[usize::from(draft.family == Family::V6)];
        let space = self.frames.space();
        let mut found = None;
        for _ in 0..churn.max_tries {
            let Some(index) = lane.take() else { break };
            let Some(tuple) =
                space.tuple(draft.family, draft.proto.number(), index, draft.dst_port)
            else {
                break;
            };
            let (hash, q) = churn.rss.queue_of_tuple(&tuple);
            if q == queue {
                found = Some((index, tuple, hash));
                break;
            }
        }
        let Some((index, tuple, rss_hash)) = found else {
            tally.rule_add_failed += 1;
            return None;
        };
        let owner: ThreadId = draft.owner.unwrap_or(queue);
        if churn.shape.exact_rule(draft.proto) {
            let inserted = flow_key(&tuple).map(|key| self.table.insert(key, owner));
            if !matches!(inserted, Some(Ok(_))) {
                tally.rule_add_failed += 1;
                return None;
            }
        }
        let id = churn.next_id;
        churn.next_id = churn.next_id.wrapping_add(churn.id_stride);
        let opening = draft.proto == Proto::Tcp;
        Some(Flow::new(&draft, index, id, rss_hash, owner, opening))
    }

    /// Takes back the rule of a connection set up for a packet that could not be sent.
    fn abandon(&self, flow: &Flow) {
        if self
            .churn
            .as_ref()
            .is_some_and(|c| c.shape.exact_rule(flow.proto))
        {
            if let Some(key) = flow.tuple(self.frames.space()).and_then(|t| flow_key(&t)) {
                self.table.remove(&key);
            }
        }
    }

    fn fill_inner(
        &mut self,
        cache: &mut PoolCache,
        out: &mut Vec<PktBuf>,
        max: usize,
        tally: &mut FillTally,
    ) -> usize {
        if max == 0 || self.flows.is_empty() {
            return 0;
        }
        let clock_needed = self.rate.is_some()
            || matches!(
                self.churn,
                Some(Churn {
                    lifetime: Lifetime::Scheduled(_),
                    ..
                })
            );
        let now = clock_needed.then(Instant::now);
        let wanted = max as u64;
        let mut budget = wanted;
        if let (Some(rate), Some(now)) = (self.rate.as_mut(), now) {
            rate.refill(now, wanted);
            budget = rate.available().min(wanted);
            if budget < wanted {
                tally.rate_limited += 1;
            }
        }
        let mut sent = 0u64;
        // Scheduled churn first: each due replacement sends the closing flow's last packet.
        let slots = self.flows.len();
        let mut due = 0u64;
        if let (Some(churn), Some(now)) = (self.churn.as_mut(), now) {
            if let Lifetime::Scheduled(schedule) = &mut churn.lifetime {
                schedule.refill(now, slots as u64);
                due = schedule.available();
            }
        }
        let mut stopped = false;
        while due > 0 && sent < budget {
            let Some(churn) = self.churn.as_mut() else {
                break;
            };
            let victim = churn.cursor % slots;
            churn.cursor = (victim + 1) % slots;
            let result = self.send(victim, true, cache, out, tally);
            if result.is_err() {
                tally.no_buffer += 1;
                stopped = true;
                break;
            }
            sent += 1;
            due -= 1;
            // A replacement that could not be set up still used its turn of the schedule: the
            // old flow sent an ordinary packet and keeps running.
            if let Some(Churn {
                lifetime: Lifetime::Scheduled(schedule),
                ..
            }) = self.churn.as_mut()
            {
                schedule.take(1);
            }
        }
        let packet_lifetime = match self.churn {
            Some(Churn {
                lifetime: Lifetime::Packets(n),
                ..
            }) => Some(n),
            _ => None,
        };
        while !stopped && sent < budget {
            let Some(slot) = self.picker.pick(&mut self.rng) else {
                break;
            };
            let closing = packet_lifetime.is_some_and(|n| {
                self.flows
                    .get(slot)
                    .is_some_and(|f| f.seq.saturating_add(1) >= n)
            });
            if self.send(slot, closing, cache, out, tally).is_err() {
                tally.no_buffer += 1;
                break;
            }
            sent += 1;
        }
        if let Some(rate) = self.rate.as_mut() {
            rate.take(sent);
        }
        sent as usize
    }
}

impl FrameSource for QueueSource {
    /// Appends up to `max` frames of this source's queue (the `queue` argument is informational:
    /// a source only ever produces its own queue's flows) and counts what it did.
    fn fill(
        &mut self,
        _queue: u16,
        cache: &mut PoolCache,
        out: &mut Vec<PktBuf>,
        max: usize,
    ) -> usize {
        let mut tally = FillTally::default();
        let sent = self.fill_inner(cache, out, max, &mut tally);
        if let Some(stats) = self.stats.get(usize::from(self.queue)) {
            stats.add(&tally);
        }
        sent
    }
}

impl fmt::Debug for QueueSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueSource")
            .field("queue", &self.queue)
            .field("flows", &self.flows.len())
            .field("packet_size", &self.frames.packet_size())
            .field("templates", &self.frames.has_templates())
            .field("rate_limited", &self.rate.is_some())
            .field("churn", &self.churn.as_ref().map(|c| &c.lifetime))
            .finish()
    }
}
