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
//! # A relaying thread that fails
//!
//! Under `engine.on_failure = "redistribute"` a relaying thread that goes down hands its rings
//! ([`Transmit::take_relays`]) with its NIC queue to the thread that takes the queue over
//! ([`Transmit::adopt_relays`]), which from then on empties them too, each up to the same limit
//! per loop, onto its own queue. The queue-less threads go on handing frames to the same ring
//! and ring the doorbell of whichever thread empties it now (`Relay::relayer`); a hand-over in
//! the instant of the takeover may ring the old one, and then waits for the new relayer's next
//! wake-up under `engine.idle = "wait"` (10 ms at most).
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

use flowsteer_mpsc::{Consumer, Producer};
use flowsteer_nic::pool::{PktBuf, PoolCache};
use flowsteer_nic::port::{Port, QueuePair};

use crate::doorbell::Doorbells;
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
    /// The threads' doorbells, when threads sleep while idle, and the ring's relaying thread
    /// (it changes when a thread takes over the ring of one that failed).
    doorbell: Option<(Doorbells, Arc<AtomicUsize>)>,
    /// Held for its drop: the relay learns that this thread transmits no more.
    _finished: Finished,
}

impl Handoff {
    /// Moves what the ring takes of `tx` to it and wakes the thread that empties it; returns
    /// how many it took.
    fn hand(&self, tx: &mut Vec<PktBuf>) -> usize {
        let handed = self.producer.enqueue_burst(tx);
        if let (Some((doorbells, relayer)), true) = (&self.doorbell, handed > 0) {
            doorbells[relayer.load(Ordering::Acquire)].ring_if_sleeping();
        }
        handed
    }
}

/// A relaying thread's side of a software transmit queue: its own, or one it took over from a
/// thread that failed.
pub(crate) struct Relay {
    consumer: Consumer<PktBuf>,
    /// Frames taken per loop.
    limit: usize,
    /// Threads that relay through this ring, and how many of them have finished transmitting.
    clients: usize,
    finished: Arc<AtomicUsize>,
    /// The thread that empties the ring, whose doorbell the queue-less threads ring.
    relayer: Arc<AtomicUsize>,
}

/// The transmit side of one stack thread besides its queue (see the module documentation).
#[derive(Default)]
pub(crate) struct Transmit {
    handoff: Option<Handoff>,
    /// Its own ring, first, and those it took over.
    relays: Vec<Relay>,
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
        let mut relayed = 0;
        for relay in &mut self.relays {
            relayed += relay.consumer.dequeue_burst(tx, relay.limit);
        }
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
                stats.tx_handed.add(handoff.hand(tx) as u64);
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

    /// True when other threads' frames wait in a software transmit queue this thread empties.
    pub fn relay_pending(&self) -> bool {
        self.relays.iter().any(|r| !r.consumer.is_empty())
    }

    /// The software transmit queues this thread empties, for the thread that takes its NIC
    /// queue over when it goes down.
    pub fn take_relays(&mut self) -> Vec<Relay> {
        std::mem::take(&mut self.relays)
    }

    /// Takes over the software transmit queues of a thread that went down: thread `me` empties
    /// them from now on, and its doorbell is the one their queue-less threads ring.
    pub fn adopt_relays(&mut self, relays: Vec<Relay>, me: u16) {
        for relay in &relays {
            relay.relayer.store(usize::from(me), Ordering::Release);
        }
        self.relays.extend(relays);
    }

    /// Frames this thread may take from its software transmit queues per loop.
    pub fn relay_limit(&self) -> usize {
        self.relays.iter().map(|r| r.limit).sum()
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
        if self.relays.is_empty() {
            return;
        }
        loop {
            // Their last enqueues happen-before the Acquire load that sees them finished.
            let all_finished = self
                .relays
                .iter()
                .all(|r| r.finished.load(Ordering::Acquire) == r.clients);
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
        doorbells: Option<Doorbells>,
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
                empty => empty.insert(RelayRing::new(size, relay)?),
            };
            let handoff = ring.handoff(doorbells.clone());
            plan.threads.push(Some((
                None,
                Transmit {
                    handoff: Some(handoff),
                    relays: Vec::new(),
                },
            )));
            plan.paths.push(TxPath::Via(relay));
        }
        for (me, ring) in rings.into_iter().enumerate() {
            let relays = ring
                .map(|ring| ring.into_relay(limit))
                .into_iter()
                .collect();
            plan.threads[me] = Some((
                None,
                Transmit {
                    handoff: None,
                    relays,
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
    relayer: Arc<AtomicUsize>,
}

impl RelayRing {
    fn new(size: usize, relayer: u16) -> Result<Self, EngineError> {
        let (producer, consumer) =
            flowsteer_mpsc::ring(size).map_err(setup("software transmit queue"))?;
        Ok(RelayRing {
            producer,
            consumer,
            finished: Arc::new(AtomicUsize::new(0)),
            clients: 0,
            relayer: Arc::new(AtomicUsize::new(usize::from(relayer))),
        })
    }

    /// The side of one more queue-less thread; `doorbells` when threads sleep while idle.
    fn handoff(&mut self, doorbells: Option<Doorbells>) -> Handoff {
        self.clients += 1;
        Handoff {
            producer: self.producer.clone(),
            doorbell: doorbells.map(|d| (d, self.relayer.clone())),
            _finished: Finished(self.finished.clone()),
        }
    }

    /// The relaying thread's side, taking up to `limit` frames per loop.
    fn into_relay(self, limit: usize) -> Relay {
        Relay {
            consumer: self.consumer,
            limit,
            clients: self.clients,
            finished: self.finished,
            relayer: self.relayer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doorbell::Doorbell;
    use crossbeam_utils::CachePadded;
    use flowsteer_nic::pool::PacketPool;
    use flowsteer_nic::wait::wait_readable;
    use std::time::Duration;

    fn rung(doorbell: &Doorbell) -> bool {
        wait_readable(&[doorbell.fd()], Duration::ZERO).unwrap() == 1
    }

    /// Thread 0 relays for thread 2 and goes down; thread 1 takes its ring over: thread 2's
    /// frames wait for thread 1, and the doorbell they ring is thread 1's.
    #[test]
    fn a_ring_taken_over_wakes_its_new_relayer() {
        let pool = PacketPool::new(64, 2048).unwrap();
        let mut cache = pool.cache(0);
        let doorbells: Doorbells = (0..3)
            .map(|_| CachePadded::new(Doorbell::new().unwrap()))
            .collect();
        let mut ring = RelayRing::new(16, 0).unwrap();
        let handoff = ring.handoff(Some(doorbells.clone()));
        let mut thread0 = Transmit {
            handoff: None,
            relays: vec![ring.into_relay(8)],
        };
        let mut thread1 = Transmit::default();
        for bell in doorbells.iter() {
            bell.going_to_sleep();
        }

        let mut tx: Vec<PktBuf> = (0..3).map(|_| cache.alloc().unwrap()).collect();
        assert_eq!(handoff.hand(&mut tx), 3);
        assert!(rung(&doorbells[0]) && !rung(&doorbells[1]));
        doorbells[0].woke();
        doorbells[0].going_to_sleep();

        thread1.adopt_relays(thread0.take_relays(), 1);
        assert!(!thread0.relay_pending() && thread1.relay_pending());
        assert_eq!(thread1.relay_limit(), 8);
        tx.extend((0..2).map(|_| cache.alloc().unwrap()));
        assert_eq!(handoff.hand(&mut tx), 2);
        assert!(rung(&doorbells[1]) && !rung(&doorbells[0]));

        let relay = &mut thread1.relays[0];
        assert_eq!(relay.consumer.dequeue_burst(&mut tx, relay.limit), 5);
        cache.free_bulk(&mut tx);
        drop(handoff);
        assert_eq!(relay.finished.load(Ordering::Acquire), relay.clients);
    }
}
