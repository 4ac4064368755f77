//! The verifying sink: the consumer of steered packets until the protocol stack takes its place.
//!
//! It does what a stack's input path does with ownership and nothing else: it parses each packet,
//! reads the generator's stamp (the owner the flow's rule was installed for: the ground truth of
//! which stack holds the socket), counts the packet as `misdirected` when this thread is not that
//! owner, and, like a stack closing a connection, deletes the flow's exact rule when the owner
//! processes the flow's last packet. Then it frees the buffer.
//!
//! The stamp, not a second table lookup, is the check: a lookup would agree with a wrong table.

use std::sync::Arc;

use flowsteer_nic::pool::{PktBuf, PoolCache};
use flowsteer_nic::wire::{self, Classified};
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
    /// Steering classified the local packets (software balancing).
    steered: bool,
}

impl VerifyingSink {
    /// The sink of thread `me`, closing flows in `table`; `steered` when steering classifies the
    /// thread's received packets (software balancing).
    pub fn new(me: ThreadId, table: Arc<dyn FlowTable>, steered: bool) -> Self {
        VerifyingSink { me, table, steered }
    }

    /// Processes and frees every packet of `pkts` (drained).
    ///
    /// `parsed_already` is true when steering has classified these packets (software balancing):
    /// malformed frames never reach the sink then. In RSS balancing nothing parsed them before, so
    /// the sink counts the malformed and unkeyed ones itself.
    pub fn consume(
        &self,
        pkts: &mut Vec<PktBuf>,
        origin: Origin,
        parsed_already: bool,
        cache: &mut PoolCache,
        stats: &ThreadStats,
    ) {
        let table = &*self.table;
        let (mut processed, mut misdirected, mut unverified, mut closed) = (0, 0, 0, 0);
        for pkt in pkts.iter() {
            match wire::classify(pkt.data()) {
                Ok(Classified::Flow {
                    tuple,
                    payload_offset,
                    ..
                }) => {
                    processed += 1;
                    let payload = pkt.data().get(payload_offset..).unwrap_or(&[]);
                    match Stamp::read(payload) {
                        Some(stamp) if stamp.owner != self.me => misdirected += 1,
                        Some(stamp) => {
                            if stamp.last {
                                if let Some(key) = flow_key(&tuple) {
                                    if table.remove(&key).is_some() {
                                        closed += 1;
                                    }
                                }
                            }
                        }
                        None => unverified += 1,
                    }
                }
                Ok(Classified::Arp { .. }) => {
                    processed += 1;
                    if !parsed_already {
                        stats.arp.add(1);
                    }
                }
                Ok(Classified::Unkeyed(reason)) => {
                    processed += 1;
                    if !parsed_already {
                        stats.count_unkeyed(reason);
                    }
                }
                Err(err) => {
                    // Only reachable without steering: steering drops malformed frames itself.
                    stats.count_malformed(&err);
                }
            }
        }
        match origin {
            Origin::Local => stats.processed_local.add(processed),
            Origin::Handoff => stats.processed_handoff.add(processed),
        }
        stats.misdirected.add(misdirected);
        stats.unverified.add(unverified);
        stats.flows_closed.add(closed);
        cache.free_bulk(pkts);
    }
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
