//! How a stack thread's frames reach the wire when the port has fewer receive queues than there
//! are threads.
//!
//! A thread with a queue pair transmits on it. A thread beyond the receive queues receives only
//! what other threads hand it, and transmits on a transmit-only queue of its own where the port
//! gives one ([`flowsteer_nic::port::Port::take_transmit_queue`]: AF_PACKET, a DPDK device with
//! spare transmit queues). Where the port gives none (uveth, the generator's port), it hands its
//! frames to a software transmit queue: one bounded MPSC ring per relaying thread, thread
//! `t % port.queues` relaying for thread `t`, which each loop takes up to `2 × engine.burst` of
//! them and transmits them with its own, on its own queue.
//!
//! # Counting
//!
//! - The queue-less thread counts what it handed over (`tx_handed`) and what the ring had no
//!   room for (`tx_swq_full`, freed at once; a transmit drop, outside the receive conservation,
//!   like `tx_full`).
//! - The relaying thread counts what it took from the ring (`tx_relayed`); its `tx` and
//!   `tx_full` then include those frames, since its queue sends or refuses them.
//!
//! Cost: for the queue-less thread one burst enqueue per loop that has frames (plus a fence and
//! a load when the relaying thread may sleep); for the relaying thread one burst dequeue per loop.
//! No system call, no lock.
//!
//! # Shutdown
//!
//! A queue-less thread still transmits while it drains its software queue at shutdown (a stack
//! answers late segments with resets), after it announced that it hands off no more received
//! packets. So each relay keeps its own count of the threads that have finished transmitting
//! (incremented when their `Transmit` is finished or dropped, also on unwinding), and the
//! relaying thread drains its ring until every thread it relays for has finished and the ring is
//! empty: no handed frame is left in a ring when the pool is counted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use crossbeam_utils::CachePadded;
use flowsteer_mpsc::{Consumer, Producer};
use flowsteer_nic::pool::{PktBuf, PoolCache};
use flowsteer_nic::port::{Port, QueuePair};

use crate::doorbell::Doorbell;
use crate::error::{setup, EngineError};
use crate::stats::ThreadStats;

/// The path a thread's frames take, as the report names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxPath {
    /// Its queue pair `q`.
    Queue(u16),
    /// A transmit-only queue the port gave it.
    TransmitOnly,
    /// The software transmit queue of thread `t`, which sends on its queue pair.
    Via(u16),
}

impl std::fmt::Display for TxPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TxPath::Queue(q) => write!(f, "queue {q}"),
            TxPath::TransmitOnly => f.write_str("transmit-only queue"),
            TxPath::Via(t) => write!(f, "via thread {t}"),
        }
    }
}

/// Counts a finished transmitter once, also when its thread unwinds.
struct Finished(Arc<AtomicUsize>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

/// A queue-less thread's side of a software transmit queue.
struct Handoff {
    producer: Producer<PktBuf>,
    /// The relaying thread's doorbell, when threads sleep while idle.
    doorbell: Option<(Arc<[CachePadded<Doorbell>]>, usize)>,
    /// Held for its drop: the relay learns that this thread transmits no more.
    _finished: Finished,
}

/// A relaying thread's side of its software transmit queue.
struct Relay {
    consumer: Consumer<PktBuf>,
    /// Frames taken per loop.
    limit: usize,
    /// Threads that relay through this one, and how many of them have finished transmitting.
    clients: usize,
    finished: Arc<AtomicUsize>,
}

/// The transmit side of one stack thread besides its queue (see the module documentation).
#[derive(Default)]
pub(crate) struct Transmit {
    handoff: Option<Handoff>,
    relay: Option<Relay>,
}

impl Transmit {
    /// Transmits `tx` (after the frames other threads handed this one to relay) on `queue`, or
    /// hands it to the relaying thread; what is refused is freed and counted. Returns how many
    /// frames were taken from the software transmit queue (work done, for the idle decision).
    pub fn send<Q: QueuePair>(
        &mut self,
        queue: Option<&mut Q>,
        tx: &mut Vec<PktBuf>,
        cache: &mut PoolCache,
        stats: &ThreadStats,
    ) -> usize {
        let relayed = match &mut self.relay {
            Some(relay) => relay.consumer.dequeue_burst(tx, relay.limit),
            None => 0,
        };
        stats.tx_relayed.add(relayed as u64);
        if tx.is_empty() {
            return relayed;
        }
        match (queue, &self.handoff) {
            (Some(q), _) => {
                let sent = q.tx_burst(cache, tx);
                stats.tx.add(sent as u64);
            }
            (None, Some(handoff)) => {
                let handed = handoff.producer.enqueue_burst(tx);
                stats.tx_handed.add(handed as u64);
                if let (Some((doorbells, relay)), true) = (&handoff.doorbell, handed > 0) {
                    doorbells[*relay].ring_if_sleeping();
                }
                if !tx.is_empty() {
                    stats.tx_swq_full.add(tx.len() as u64);
                    cache.free_bulk(tx);
                }
                return relayed;
            }
            // The engine gives every thread a queue or a relay; nothing else can send.
            (None, None) => {}
        }
        if !tx.is_empty() {
            stats.tx_full.add(tx.len() as u64);
            cache.free_bulk(tx);
        }
        relayed
    }

    /// True when other threads' frames wait in this thread's software transmit queue.
    pub fn relay_pending(&self) -> bool {
        self.relay.as_ref().is_some_and(|r| !r.consumer.is_empty())
    }

    /// The thread's last transmit is done: a queue-less thread tells its relay; a relaying
    /// thread sends what its software transmit queue still brings until every thread it relays
    /// for has finished and the queue is empty.
    pub fn finish<Q: QueuePair>(
        &mut self,
        mut queue: Option<&mut Q>,
        tx: &mut Vec<PktBuf>,
        cache: &mut PoolCache,
        stats: &ThreadStats,
    ) {
        self.handoff = None;
        let Some(relay) = &self.relay else {
            return;
        };
        let (clients, finished) = (relay.clients, relay.finished.clone());
        loop {
            // Their last enqueues happen-before the Acquire load that sees them finished.
            let all_finished = finished.load(Ordering::Acquire) == clients;
            if self.send(queue.as_deref_mut(), tx, cache, stats) == 0 {
                if all_finished {
                    break;
                }
                thread::yield_now();
            }
        }
    }
}

/// Every thread's transmit side, decided before any thread starts (a relaying thread must know
/// who relays through it): per thread beyond the port's queue pairs, the port's transmit-only
/// queue or a software transmit queue; per thread with a queue pair, its relay side.
pub(crate) struct TransmitPlan<Q> {
    threads: Vec<Option<(Option<Q>, Transmit)>>,
    /// Each thread's path, for the report.
    pub paths: Vec<TxPath>,
}

impl<Q: QueuePair> TransmitPlan<Q> {
    /// Takes the transmit-only queues of `port` for threads `queues..threads` and makes a
    /// software transmit queue of `size` frames for each relaying thread that needs one, taking
    /// up to `limit` frames per loop; `doorbells` (when threads sleep) wake the relays.
    pub fn new<P: Port<Queue = Q>>(
        port: &P,
        threads: u16,
        queues: u16,
        size: usize,
        limit: usize,
        doorbells: Option<Arc<[CachePadded<Doorbell>]>>,
    ) -> Result<Self, EngineError> {
        let mut plan = TransmitPlan {
            threads: Vec::with_capacity(usize::from(threads)),
            paths: Vec::with_capacity(usize::from(threads)),
        };
        let mut rings: Vec<Option<RelayRing>> = (0..queues).map(|_| None).collect();
        for me in 0..threads {
            if me < queues {
                plan.threads.push(None);
                plan.paths.push(TxPath::Queue(me));
                continue;
            }
            let queue = port
                .take_transmit_queue(me)
                .map_err(setup("transmit-only queue"))?;
            if queue.is_some() {
                plan.threads.push(Some((queue, Transmit::default())));
                plan.paths.push(TxPath::TransmitOnly);
                continue;
            }
            let relay = me % queues;
            let ring = match &mut rings[usize::from(relay)] {
                Some(ring) => ring,
                empty => empty.insert(RelayRing::new(size)?),
            };
            ring.clients += 1;
            let handoff = Handoff {
                producer: ring.producer.clone(),
                doorbell: doorbells.clone().map(|d| (d, usize::from(relay))),
                _finished: Finished(ring.finished.clone()),
            };
            plan.threads.push(Some((
                None,
                Transmit {
                    handoff: Some(handoff),
                    relay: None,
                },
            )));
            plan.paths.push(TxPath::Via(relay));
        }
        for (me, ring) in rings.into_iter().enumerate() {
            let relay = ring.map(|ring| Relay {
                consumer: ring.consumer,
                limit,
                clients: ring.clients,
                finished: ring.finished,
            });
            plan.threads[me] = Some((
                None,
                Transmit {
                    handoff: None,
                    relay,
                },
            ));
        }
        Ok(plan)
    }

    /// Thread `me`'s transmit-only queue (threads beyond the queue pairs whose port gave one)
    /// and its transmit side; each thread's once.
    pub fn take(&mut self, me: u16) -> (Option<Q>, Transmit) {
        self.threads
            .get_mut(usize::from(me))
            .and_then(Option::take)
            .unwrap_or_default()
    }
}

/// The ring of one relaying thread while the plan is made.
struct RelayRing {
    producer: Producer<PktBuf>,
    consumer: Consumer<PktBuf>,
    finished: Arc<AtomicUsize>,
    clients: usize,
}

impl RelayRing {
    fn new(size: usize) -> Result<Self, EngineError> {
        let (producer, consumer) =
            flowsteer_mpsc::ring(size).map_err(setup("software transmit queue"))?;
        Ok(RelayRing {
            producer,
            consumer,
            finished: Arc::new(AtomicUsize::new(0)),
            clients: 0,
        })
    }
}
