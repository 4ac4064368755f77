//! The verifying sink: the consumer of steered packets until the protocol stack takes its place.
//!
//! It does what a stack's input path does with ownership and nothing else: it classifies each
//! packet (reusing steering's classification where the buffer carries one),
//! reads the generator's stamp (the owner the flow's rule was installed for: the ground truth of
//! which stack holds the socket), counts the packet as `misdirected` when this thread is not that
//! owner, and, like a stack closing a connection, deletes the flow's exact rule when the owner
//! processes the flow's last packet. Then it frees the buffer.
//!
//! The stamp, not a second table lookup, is the check: a lookup would agree with a wrong table.

use std::sync::Arc;

use flowsteer_nic::pool::{PktBuf, PoolCache};
use flowsteer_nic::wire::{self, Classified, FiveTuple};
use flowtable::{FlowTable, ThreadId};

use crate::keys::flow_key;
use crate::processor::Processor;
use crate::stats::ThreadStats;
use crate::traffic::Stamp;

/// Where the packets given to [`VerifyingSink::process`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Received by this thread from its NIC queue.
    Local,
    /// Taken from this thread's software queue.
    Handoff,
}

/// The sink of one stack thread.
pub struct VerifyingSink {
    me: ThreadId,
    table: Arc<dyn FlowTable>,
    /// Steering classifies the thread's received packets (software balancing).
    steered: bool,
}

impl VerifyingSink {
    /// The sink of thread `me`, closing flows in `table`; `steered` when steering classifies
    /// the thread's received packets (software balancing).
    pub fn new(me: ThreadId, table: Arc<dyn FlowTable>, steered: bool) -> Self {
        VerifyingSink { me, table, steered }
    }

    /// Processes and frees every packet of `pkts` (drained).
    ///
    /// `steered`: steering classified these packets (software balancing, or handed over). Each
    /// then carries its classification ([`PktBuf::parsed`]), which the sink reuses, and steering
    /// has counted its kind (ARP, unkeyed) already. Otherwise (RSS balancing without a stack)
    /// the sink parses each packet and counts its kind, and a malformed frame, itself; so does
    /// it for a steered packet that carries no classification.
    pub fn consume(
        &self,
        pkts: &mut Vec<PktBuf>,
        origin: Origin,
        steered: bool,
        cache: &mut PoolCache,
        stats: &ThreadStats,
    ) {
        let mut counts = Counts::default();
        // One loop per case: a check for a kept classification inside the parsing loop changed
        // how the parse inlined and cost it more than the check (BENCHMARKS.md, "One parse per
        // packet").
        if steered {
            for pkt in pkts.iter() {
                let parsed = pkt.parsed();
                if !parsed.is_some() {
                    self.parse_and_verify(pkt, &mut counts, stats);
                    continue;
                }
                counts.reused += 1;
                counts.processed += 1;
                if parsed.is_flow() {
                    self.verify(pkt, parsed.payload_offset(), &mut counts, || {
                        match parsed.classified(pkt.data()) {
                            Some(Classified::Flow { tuple, .. }) => Some(tuple),
                            _ => None,
                        }
                    });
                }
            }
        } else {
            for pkt in pkts.iter() {
                self.parse_and_verify(pkt, &mut counts, stats);
            }
        }
        match origin {
            Origin::Local => stats.processed_local.add(counts.processed),
            Origin::Handoff => stats.processed_handoff.add(counts.processed),
        }
        stats.misdirected.add(counts.misdirected);
        stats.unverified.add(counts.unverified);
        stats.flows_closed.add(counts.closed);
        stats.parse_reused.add(counts.reused);
        cache.free_bulk(pkts);
    }

    /// A packet nobody classified: parsed here, its kind counted here.
    #[inline(always)]
    fn parse_and_verify(&self, pkt: &PktBuf, counts: &mut Counts, stats: &ThreadStats) {
        match wire::classify(pkt.data()) {
            Ok(Classified::Flow {
                tuple,
                payload_offset,
                ..
            }) => {
                counts.processed += 1;
                self.verify(pkt, payload_offset, counts, || Some(tuple));
            }
            Ok(Classified::Arp { .. }) => {
                counts.processed += 1;
                stats.arp.add(1);
            }
            Ok(Classified::Unkeyed(reason)) => {
                counts.processed += 1;
                stats.count_unkeyed(reason);
            }
            // Only without steering: steering drops malformed frames itself.
            Err(err) => stats.count_malformed(&err),
        }
    }

    /// Checks one flow packet's stamp against this thread; closes the flow (deletes its exact
    /// rule) on its last packet, whose tuple `tuple` gives.
    #[inline(always)]
    fn verify(
        &self,
        pkt: &PktBuf,
        payload_offset: usize,
        counts: &mut Counts,
        tuple: impl FnOnce() -> Option<FiveTuple>,
    ) {
        let payload = pkt.data().get(payload_offset..).unwrap_or(&[]);
        match Stamp::read(payload) {
            Some(stamp) if stamp.owner != self.me => counts.misdirected += 1,
            Some(stamp) if stamp.last => {
                if let Some(key) = tuple().as_ref().and_then(flow_key) {
                    if self.table.remove(&key).is_some() {
                        counts.closed += 1;
                    }
                }
            }
            Some(_) => {}
            None => counts.unverified += 1,
        }
    }
}

/// What one [`VerifyingSink::consume`] counted, published once at its end.
#[derive(Default)]
struct Counts {
    processed: u64,
    misdirected: u64,
    unverified: u64,
    closed: u64,
    reused: u64,
}

impl Processor for VerifyingSink {
    const HOLDS_SOCKETS: bool = false;

    fn process(
        &mut self,
        handed: &mut Vec<PktBuf>,
        local: &mut Vec<PktBuf>,
        _tx: &mut Vec<PktBuf>,
        cache: &mut PoolCache,
        stats: &ThreadStats,
    ) {
        if !local.is_empty() {
            self.consume(local, Origin::Local, self.steered, cache, stats);
        }
        if !handed.is_empty() {
            self.consume(handed, Origin::Handoff, true, cache, stats);
        }
    }
}
