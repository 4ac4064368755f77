//! The software-balancing step of a stack thread: key a receive burst, look it up in bulk, keep the
//! local packets and push the rest to their owners' software queues, one burst per destination.
//!
//! Cost per burst: one parse and one hash per packet, one `hash_lookup_bulk` (the table hashes the
//! keys as it starts loading their buckets), and one `enqueue_burst` per destination that has
//! packets. The parse's result ([`PktBuf::parsed`]) and the lookup's answer
//! ([`PktBuf::lookup_note`]) stay in the buffer's metadata, so the packet's processor, on this
//! thread or its owner, parses and looks up nothing again. What does not fit a full queue is
//! freed and counted as `swq_full`: the thread never blocks and never spins on another thread's
//! queue.

use std::sync::Arc;

use flowsteer_config::MissPolicy;
use flowsteer_mpsc::Producer;
use flowsteer_nic::pool::{PktBuf, PoolCache};
use flowsteer_nic::rss::Reta;
use flowsteer_nic::wire::{self, Classified, UnkeyedReason};
use flowtable::{FlowKey, FlowTable, Lookup, Proto, ThreadId};

use crate::doorbell::Doorbells;
use crate::health::Health;
use crate::keys::flow_key;
use crate::neighbors::NeighborRecord;
use crate::stats::ThreadStats;

/// Per-thread scratch space for steering, allocated once at thread start.
pub struct Steering {
    me: ThreadId,
    miss: MissPolicy,
    /// Software RSS over all threads for `miss = "rss"`.
    thread_reta: Reta,
    keys: Vec<FlowKey>,
    hashes: Vec<u64>,
    results: Vec<Lookup>,
    keyed: Vec<PktBuf>,
    /// Packets waiting for one burst enqueue, per destination thread.
    outbound: Vec<Vec<PktBuf>>,
    /// Scratch for what a full queue refused.
    refused: Vec<PktBuf>,
    /// Copy neighbour messages to the other threads (a protocol stack runs on every thread).
    share_neighbors: bool,
    /// Scratch for the learning copy of a neighbour message.
    learning: Vec<u8>,
    /// Every thread's doorbell when threads sleep while idle (`engine.idle = "wait"`).
    doorbells: Option<Doorbells>,
    /// Where learning copies are kept for a restarted stack (see
    /// [`Steering::record_neighbors`]).
    neighbors: Option<Arc<NeighborRecord>>,
    /// Every thread's health, when packets for a failed thread are to be dropped rather than
    /// handed to it (see [`Steering::watch_owners`]).
    health: Option<Arc<Health>>,
    /// The ports this thread's stack serves, when a flow that only a listen rule matches stays
    /// on the thread that received it if that thread serves the port (see
    /// [`Steering::keep_listened_flows`]).
    served: Option<Box<ServedPorts>>,
}

/// A set of TCP and UDP ports: one bit per port and protocol (16 KiB).
pub struct ServedPorts {
    tcp: [u64; 1024],
    udp: [u64; 1024],
}

impl ServedPorts {
    /// The set of `ports`, each a (protocol, port) pair.
    pub fn new(ports: impl IntoIterator<Item = (Proto, u16)>) -> Box<ServedPorts> {
        let mut set = Box::new(ServedPorts {
            tcp: [0; 1024],
            udp: [0; 1024],
        });
        for (proto, port) in ports {
            let words = match proto {
                Proto::Tcp => &mut set.tcp,
                Proto::Udp => &mut set.udp,
            };
            words[usize::from(port >> 6)] |= 1 << (port & 63);
        }
        set
    }

    /// True when `port` of `proto` is in the set.
    #[inline]
    pub fn contains(&self, proto: Proto, port: u16) -> bool {
        let words = match proto {
            Proto::Tcp => &self.tcp,
            Proto::Udp => &self.udp,
        };
        words[usize::from(port >> 6)] & (1 << (port & 63)) != 0
    }
}

impl Steering {
    /// Scratch for thread `me` of `threads`, bursts up to `burst` packets.
    pub fn new(
        me: ThreadId,
        threads: usize,
        burst: usize,
        miss: MissPolicy,
        thread_reta: Reta,
    ) -> Self {
        Steering {
            me,
            miss,
            thread_reta,
            keys: Vec::with_capacity(burst),
            hashes: vec![0; burst],
            results: vec![Lookup::Miss; burst],
            keyed: Vec::with_capacity(burst),
            outbound: (0..threads).map(|_| Vec::with_capacity(burst)).collect(),
            refused: Vec::with_capacity(burst),
            share_neighbors: false,
            learning: Vec::new(),
            doorbells: None,
            health: None,
            neighbors: None,
            served: None,
        }
    }

    /// A flow that only a listen rule matches (a new connection's SYN, a UDP datagram) stays on
    /// this thread when its stack serves the port, instead of going to the owner the listen
    /// rule's hash picks: with a NIC that keeps a flow on one queue (RSS, `fanout = "hash"`) its
    /// every packet is then local, as under RSS balancing, and connections are still spread over
    /// the threads by the NIC's hash. Only for ports in `served`, and only when every thread has
    /// a queue (a thread without one would never be picked).
    pub fn keep_listened_flows(mut self, served: Box<ServedPorts>) -> Self {
        self.served = Some(served);
        self
    }

    /// Wakes the owner of every burst handed over when it sleeps (`engine.idle = "wait"`).
    pub fn wake_owners(mut self, doorbells: Doorbells) -> Self {
        self.doorbells = Some(doorbells);
        self
    }

    /// Hands nothing to a thread that is not running (failed, being reclaimed, or down): its
    /// packets are freed and counted as `owner_failed` instead. One relaxed load per
    /// destination and burst.
    pub fn watch_owners(mut self, health: Arc<Health>) -> Self {
        self.health = Some(health);
        self
    }

    /// Keeps the learning copy of every neighbour message received in `record`, for a stack
    /// restarted after a failure (`neighbors.rs`).
    pub fn record_neighbors(mut self, record: Arc<NeighborRecord>) -> Self {
        self.neighbors = Some(record);
        self
    }

    /// Copies received neighbour messages (ARP, IPv6 neighbour discovery) to the other threads
    /// from now on (see [`Steering::screen`]).
    pub fn share_neighbors(mut self, share: bool) -> Self {
        self.share_neighbors = share && self.outbound.len() > 1;
        self
    }

    /// Steers `rx` (drained): local packets are appended to `local`, the others are handed off
    /// through `queues[owner]`, malformed and unowned ones are freed into `cache` and counted.
    pub fn steer(
        &mut self,
        rx: &mut Vec<PktBuf>,
        local: &mut Vec<PktBuf>,
        table: &dyn FlowTable,
        queues: &[Producer<PktBuf>],
        cache: &mut PoolCache,
        stats: &ThreadStats,
    ) {
        self.keys.clear();
        for mut pkt in rx.drain(..) {
            match wire::classify_parsed(pkt.data()) {
                Ok((Classified::Flow { tuple, .. }, parsed)) => {
                    pkt.set_parsed(parsed);
                    match flow_key(&tuple) {
                        Some(key) => {
                            self.keys.push(key);
                            self.keyed.push(pkt);
                        }
                        None => {
                            stats.count_unkeyed(wire::UnkeyedReason::UnsupportedL4);
                            local.push(pkt);
                        }
                    }
                }
                Ok((other, parsed)) => {
                    pkt.set_parsed(parsed);
                    self.keep_unkeyed(pkt, other, local, cache, stats);
                }
                Err(err) => {
                    stats.count_malformed(&err);
                    cache.free(pkt);
                }
            }
        }

        let n = self.keyed.len();
        if n == 0 {
            self.flush(queues, cache, stats);
            return;
        }
        if self.results.len() < n {
            self.results.resize(n, Lookup::Miss);
        }
        if self.hashes.len() < n {
            self.hashes.resize(n, 0);
        }
        table.hash_lookup_bulk(&self.keys, &mut self.hashes[..n], &mut self.results[..n]);

        let (mut exact, mut listen, mut listen_any, mut miss) = (0, 0, 0, 0);
        let (mut no_owner, mut owner_invalid) = (0, 0);
        let threads = self.outbound.len();
        let served = self.served.as_deref();
        let me = self.me;
        // A listen rule's flow stays here when this thread serves the port (see
        // `keep_listened_flows`).
        let listened = |o: ThreadId, key: &FlowKey| match served {
            Some(ports) if o != me && ports.contains(key.proto(), key.local_port()) => me,
            _ => o,
        };
        for ((mut pkt, result), key) in self.keyed.drain(..).zip(&self.results[..n]).zip(&self.keys)
        {
            // The owner's processor reuses the answer instead of looking the flow up again.
            pkt.set_lookup_note(result.note());
            let owner = match *result {
                Lookup::Exact(o) => {
                    exact += 1;
                    o
                }
                Lookup::Listen(o) => {
                    listen += 1;
                    listened(o, key)
                }
                Lookup::ListenAny(o) => {
                    listen_any += 1;
                    listened(o, key)
                }
                Lookup::Miss => {
                    miss += 1;
                    match self.miss {
                        MissPolicy::Local => self.me,
                        MissPolicy::Rss => self.thread_reta.queue(pkt.rss_hash()),
                        MissPolicy::Drop => {
                            no_owner += 1;
                            cache.free(pkt);
                            continue;
                        }
                    }
                }
            };
            // This thread's packets gather in its own batch like any other owner's: no branch
            // on the owner, which is random per packet when half the flows are handed off.
            if usize::from(owner) < threads {
                self.outbound[usize::from(owner)].push(pkt);
            } else {
                owner_invalid += 1;
                cache.free(pkt);
            }
        }
        stats.lookup_exact.add(exact);
        stats.lookup_listen.add(listen);
        stats.lookup_listen_any.add(listen_any);
        stats.lookup_miss.add(miss);
        stats.no_owner.add(no_owner);
        stats.owner_invalid.add(owner_invalid);
        local.append(&mut self.outbound[usize::from(self.me)]);
        self.flush(queues, cache, stats);
    }

    /// RSS balancing in front of a protocol stack: no lookup, every frame stays on the receiving
    /// thread, but malformed frames are dropped and counted as under software balancing, and ARP
    /// and neighbour discovery frames are shared with the other threads (`rx` drained into
    /// `local`).
    pub fn screen(
        &mut self,
        rx: &mut Vec<PktBuf>,
        local: &mut Vec<PktBuf>,
        queues: &[Producer<PktBuf>],
        cache: &mut PoolCache,
        stats: &ThreadStats,
    ) {
        for mut pkt in rx.drain(..) {
            match wire::classify_parsed(pkt.data()) {
                Ok((Classified::Flow { .. }, parsed)) => {
                    pkt.set_parsed(parsed);
                    local.push(pkt);
                }
                Ok((other, parsed)) => {
                    pkt.set_parsed(parsed);
                    self.keep_unkeyed(pkt, other, local, cache, stats);
                }
                Err(err) => {
                    stats.count_malformed(&err);
                    cache.free(pkt);
                }
            }
        }
        self.flush(queues, cache, stats);
    }

    /// A frame without a flow key (ARP, neighbour discovery, other ethertypes, non-first
    /// fragments) stays on the receiving thread, counted by kind; neighbour messages are also
    /// shared with the other threads.
    fn keep_unkeyed(
        &mut self,
        pkt: PktBuf,
        class: Classified,
        local: &mut Vec<PktBuf>,
        cache: &mut PoolCache,
        stats: &ThreadStats,
    ) {
        match class {
            Classified::Arp { .. } => {
                stats.arp.add(1);
                if self.share_neighbors || self.neighbors.is_some() {
                    self.copy_to_others(&pkt, cache, stats);
                }
            }
            // Neighbour discovery is ICMPv6, which the classifier leaves unkeyed (see
            // `wire::neighbor_message`).
            Classified::Unkeyed(UnkeyedReason::UnsupportedL4)
                if wire::neighbor_message(pkt.data()).is_some() =>
            {
                stats.ndp.add(1);
                if self.share_neighbors || self.neighbors.is_some() {
                    self.copy_to_others(&pkt, cache, stats);
                }
            }
            Classified::Unkeyed(reason) => stats.count_unkeyed(reason),
            Classified::Flow { .. } => {}
        }
        local.push(pkt);
    }

    /// Queues a learning copy of the neighbour message `pkt` for every other thread
    /// ([`wire::make_learning_copy`]): a request is answered once, by the thread that received
    /// it, and the others learn the sender's link address from its copy without answering; an
    /// answer reaches every thread, so a thread whose request was answered on another queue
    /// still learns the answer. A message that teaches nothing (duplicate address detection)
    /// is not copied.
    fn copy_to_others(&mut self, pkt: &PktBuf, cache: &mut PoolCache, stats: &ThreadStats) {
        // The rewrite is the same for every copy: made once, in scratch (neighbour messages are
        // rare; the scratch grows once to a frame's size).
        self.learning.clear();
        self.learning.extend_from_slice(pkt.data());
        if !wire::make_learning_copy(&mut self.learning) {
            return;
        }
        if let Some(neighbors) = &self.neighbors {
            neighbors.record(&self.learning);
        }
        if !self.share_neighbors {
            return;
        }
        for (dest, batch) in self.outbound.iter_mut().enumerate() {
            if dest == usize::from(self.me) {
                continue;
            }
            stats.link_copies.add(1);
            let Some(mut copy) = cache.alloc() else {
                stats.no_buffer.add(1);
                continue;
            };
            if copy.write_frame(&self.learning).is_err() {
                // Same pool, same data room: unreachable; counted rather than lost.
                cache.free(copy);
                stats.no_buffer.add(1);
                continue;
            }
            copy.set_rss_hash(pkt.rss_hash());
            batch.push(copy);
        }
    }

    /// After the thread failed in the middle of a burst: frees the packets steering still holds
    /// (keyed, batched for an owner, refused) into `cache`; returns how many.
    pub fn release_after_failure(&mut self, cache: &mut PoolCache) -> u64 {
        let mut freed = self.keyed.len() + self.refused.len();
        cache.free_bulk(&mut self.keyed);
        cache.free_bulk(&mut self.refused);
        for batch in &mut self.outbound {
            freed += batch.len();
            cache.free_bulk(batch);
        }
        self.keys.clear();
        freed as u64
    }

    /// One burst enqueue per destination with packets; what a full queue refuses is freed and
    /// counted.
    fn flush(&mut self, queues: &[Producer<PktBuf>], cache: &mut PoolCache, stats: &ThreadStats) {
        for (dest, batch) in self.outbound.iter_mut().enumerate() {
            if batch.is_empty() {
                continue;
            }
            if let Some(health) = &self.health {
                if !health.thread(dest).running() {
                    stats.owner_failed.add(batch.len() as u64);
                    cache.free_bulk(batch);
                    continue;
                }
            }
            let accepted = queues[dest].enqueue_burst(batch);
            stats.handed_off[dest].add(accepted as u64);
            if let (Some(doorbells), true) = (&self.doorbells, accepted > 0) {
                doorbells[dest].ring_if_sleeping();
            }
            if !batch.is_empty() {
                stats.swq_full[dest].add(batch.len() as u64);
                self.refused.append(batch);
                cache.free_bulk(&mut self.refused);
            }
        }
    }
}
