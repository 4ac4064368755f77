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
}

impl VerifyingSink {
    /// The sink of thread `me`, closing flows in `table`.
    pub fn new(me: ThreadId, table: Arc<dyn FlowTable>) -> Self {
        VerifyingSink { me, table }
    }

    /// Processes and frees every packet of `pkts` (drained).
    ///
    /// A packet steering classified carries that classification ([`PktBuf::parsed`]): the sink
    /// reuses it, and steering has counted its kind (ARP, unkeyed) already. A packet nobody
    /// classified (RSS balancing without a stack, a copy) is parsed here, and its kind and a
    /// malformed frame are counted here.
    pub fn consume(
        &self,
        pkts: &mut Vec<PktBuf>,
        origin: Origin,
        cache: &mut PoolCache,
        stats: &ThreadStats,
    ) {
        let (mut processed, mut misdirected, mut unverified, mut closed) = (0, 0, 0, 0);
        let mut reused = 0;
        for pkt in pkts.iter() {
            let classified = match pkt.classified() {
                Some(class) => {
                    reused += 1;
                    Ok(class)
                }
                None => wire::classify(pkt.data()),
            };
            let counted = pkt.parsed().is_some();
            match classified {
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
                                    if self.table.remove(&key).is_some() {
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
                    if !counted {
                        stats.arp.add(1);
                    }
                }
                Ok(Classified::Unkeyed(reason)) => {
                    processed += 1;
                    if !counted {
                        stats.count_unkeyed(reason);
                    }
                }
                Err(err) => {
                    // Only a frame nobody classified: steering drops malformed frames itself.
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
        stats.parse_reused.add(reused);
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
            self.consume(local, Origin::Local, cache, stats);
        }
        if !handed.is_empty() {
            self.consume(handed, Origin::Handoff, cache, stats);
        }
    }
}
