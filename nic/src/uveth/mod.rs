//! The user-space NIC ("uveth"): N queue pairs with software RSS and no hardware, the test rig
//! of the design. It stands in for a multi-queue NIC so the engine can run anywhere.
//!
//! # Data path
//!
//! - Wire → host: [`Uveth::inject`] hashes a frame with [`SoftRss`], copies it into a buffer,
//!   writes the receive hash into the buffer (as a NIC writes `hash.rss` into the mbuf) and
//!   pushes it onto the chosen queue's receive ring. On `rx_burst` the queue owner first drains
//!   that ring, then asks its [`FrameSource`] (if any) for the rest of the burst; the source sets
//!   the receive hash of what it produces, since it partitions its flows by the same soft RSS.
//! - Host → wire: `tx_burst` moves frames onto the queue's transmit ring, which
//!   [`Uveth::take_transmitted`] drains (the wire's receive side: peers and tests).
//!
//! Both rings are bounded lock-free MPMC queues (`crossbeam_queue::ArrayQueue`) of `ring_size`
//! slots per queue. Full rings never block: a full receive ring drops the frame (counted, the
//! buffer freed); a full transmit ring refuses the rest of the burst (counted, left to the
//! caller).
//!
//! # Ownership and concurrency
//!
//! - [`Uveth`] is `Send + Sync`; `inject`, `take_transmitted`, `stats` and `drain_into` may run
//!   from any thread at once.
//! - A queue pair is taken by one owner at a time ([`Uveth::take_queue`]; taking it again fails
//!   until the [`UvethQueue`] is dropped). Only the owner pushes to the transmit ring and pops
//!   the receive ring, and only it writes its owner counters (plain stores, no atomic
//!   read-modify-write per burst).
//! - Buffers are [`PktBuf`] handles, which free nothing on drop. Frames still
//!   on the rings when the NIC goes away would leak (and show in the pool's `available()`): the
//!   owner calls [`Uveth::drain_into`] at shutdown, after the queue owners stopped.
//!
//! # Costs
//!
//! | operation | cost |
//! |---|---|
//! | `inject` | one classify pass, one Toeplitz hash, one buffer alloc + copy, one ring push, one atomic add |
//! | `rx_burst` of n | n ring pops (+ the source's work), one counter store |
//! | `tx_burst` of n | one ring length read, n ring pushes, two counter stores |
//! | `stats` | a few relaxed loads per queue |

mod error;
mod queue;
mod stats;

pub use error::{InjectError, UvethError};
pub use queue::UvethQueue;
pub use stats::{QueueStats, UvethStats};

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::pool::{PktBuf, PoolCache};
use crate::port::{mac_text, FrameSource, NoSource, Port, PortControl};
use crate::rss::{SoftRss, MICROSOFT_KEY};
use stats::{add_shared, QueueCounters};

/// Most queue pairs one uveth has.
pub const MAX_QUEUES: u16 = 1024;
/// Largest ring (per queue and direction).
pub const MAX_RING_SIZE: usize = 1 << 20;
/// Bound on `queues × ring_size`: with two rings of 16-byte slots per queue, 512 MiB of rings.
pub const MAX_RING_SLOTS: usize = 1 << 24;

/// Configuration of a [`Uveth`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UvethConfig {
    /// Queue pairs, `1..=MAX_QUEUES`.
    pub queues: u16,
    /// Toeplitz key of the soft RSS.
    pub rss_key: [u8; 40],
    /// Redirection table entries: a power of two in `1..=4096`, at least `queues`.
    pub reta_size: usize,
    /// Slots of each receive and each transmit ring: a power of two in `1..=MAX_RING_SIZE`.
    pub ring_size: usize,
    /// The port's MAC address.
    pub mac: [u8; 6],
}

impl Default for UvethConfig {
    /// One queue, the Microsoft key, 128 RETA entries, 1024-slot rings, MAC 02:00:00:00:00:01.
    fn default() -> Self {
        UvethConfig {
            queues: 1,
            rss_key: MICROSOFT_KEY,
            reta_size: 128,
            ring_size: 1024,
            mac: [0x02, 0, 0, 0, 0, 0x01],
        }
    }
}

/// The rings and counters of one queue pair, shared by the NIC and the queue's owner.
struct QueueState {
    rx: ArrayQueue<PktBuf>,
    tx: ArrayQueue<PktBuf>,
    taken: AtomicBool,
    counters: QueueCounters,
}

/// The user-space NIC: N queue pairs and soft RSS. See the module documentation.
pub struct Uveth {
    queues: Arc<[QueueState]>,
    rss: SoftRss,
    /// The redirection table the wire side uses: `rss.reta`'s entries, rewritten by
    /// [`PortControl::redirect_queue`] (one relaxed load per frame either way).
    reta: Box<[AtomicU16]>,
    ring_size: usize,
    mac: [u8; 6],
}

impl Uveth {
    /// A NIC with `cfg.queues` queue pairs, all rings empty and every queue free to take.
    ///
    /// Errors: queue count, ring size, ring memory or RETA out of range. Allocates both rings of
    /// every queue and the 36 KiB Toeplitz table.
    pub fn new(cfg: UvethConfig) -> Result<Uveth, UvethError> {
        if cfg.queues == 0 || cfg.queues > MAX_QUEUES {
            return Err(UvethError::Queues { queues: cfg.queues });
        }
        if !cfg.ring_size.is_power_of_two() || cfg.ring_size > MAX_RING_SIZE {
            return Err(UvethError::RingSize {
                ring_size: cfg.ring_size,
            });
        }
        if cfg.queues as usize * cfg.ring_size > MAX_RING_SLOTS {
            return Err(UvethError::RingMemory {
                queues: cfg.queues,
                ring_size: cfg.ring_size,
            });
        }
        let rss = SoftRss::new(&cfg.rss_key, cfg.reta_size, cfg.queues)?;
        let queues = (0..cfg.queues)
            .map(|_| QueueState {
                rx: ArrayQueue::new(cfg.ring_size),
                tx: ArrayQueue::new(cfg.ring_size),
                taken: AtomicBool::new(false),
                counters: QueueCounters::default(),
            })
            .collect();
        Ok(Uveth {
            queues,
            reta: rss
                .reta
                .entries()
                .iter()
                .map(|&q| AtomicU16::new(q))
                .collect(),
            rss,
            ring_size: cfg.ring_size,
            mac: cfg.mac,
        })
    }

    /// The soft RSS that spreads injected frames; a generator partitions its flows through it.
    pub fn soft_rss(&self) -> &SoftRss {
        &self.rss
    }

    /// Number of queue pairs.
    pub fn queues(&self) -> u16 {
        self.queues.len() as u16
    }

    /// Slots of each ring.
    pub fn ring_size(&self) -> usize {
        self.ring_size
    }

    /// The port's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The wire side: a frame arriving on the cable is spread by soft RSS to a queue's receive
    /// ring, copied into a buffer from `cache` with its receive hash set. Returns the queue.
    ///
    /// Every `Err` is a counted drop of the chosen queue: ring full (the buffer goes back to
    /// `cache`), no buffer, or a frame longer than the data room. Any thread may inject.
    pub fn inject(&self, frame: &[u8], cache: &mut PoolCache) -> Result<u16, InjectError> {
        let (hash, _) = self.rss.queue_of(frame);
        // The size is a power of two, as the model's; every entry is below its queue count,
        // which is `self.queues.len()`, also once rewritten (to queues of the port).
        let queue = self.reta[hash as usize & (self.reta.len() - 1)].load(Ordering::Relaxed);
        let state = &self.queues[queue as usize];
        let wire = &state.counters.wire;
        let data_room = cache.pool().data_room();
        if frame.len() > data_room as usize {
            add_shared(&wire.rx_dropped_oversize);
            return Err(InjectError::FrameTooLarge {
                queue,
                len: frame.len(),
                data_room,
            });
        }
        let Some(mut buf) = cache.alloc() else {
            add_shared(&wire.rx_dropped_no_buffer);
            return Err(InjectError::NoBuffer { queue });
        };
        if buf.write_frame(frame).is_err() {
            // Unreachable after the length check; still a counted drop, never a lost buffer.
            cache.free(buf);
            add_shared(&wire.rx_dropped_oversize);
            return Err(InjectError::FrameTooLarge {
                queue,
                len: frame.len(),
                data_room,
            });
        }
        buf.set_rss_hash(hash);
        match state.rx.push(buf) {
            Ok(()) => {
                add_shared(&wire.rx_injected);
                Ok(queue)
            }
            Err(buf) => {
                cache.free(buf);
                add_shared(&wire.rx_dropped_full);
                Err(InjectError::RingFull { queue })
            }
        }
    }

    /// Takes queue pair `q` for one owner, with an optional source that fills each `rx_burst`
    /// after the injected frames (`S = NoSource` when none).
    ///
    /// Errors: `q` out of range, or the queue is held by a live [`UvethQueue`]. Dropping the
    /// `UvethQueue` makes the queue available again (a manager can hand a dead thread's queue to
    /// another).
    pub fn take_queue<S: FrameSource>(
        &self,
        q: u16,
        source: Option<S>,
    ) -> Result<UvethQueue<S>, UvethError> {
        let state = self
            .queues
            .get(q as usize)
            .ok_or(UvethError::QueueOutOfRange {
                queue: q,
                queues: self.queues(),
            })?;
        // Acquire pairs with the release in `UvethQueue::drop`: the new owner sees the counters
        // and ring state the previous owner left.
        if state.taken.swap(true, Ordering::AcqRel) {
            return Err(UvethError::QueueTaken { queue: q });
        }
        Ok(UvethQueue::new(Arc::clone(&self.queues), q, source))
    }

    /// Appends up to `max` frames transmitted on queue `q` to `out`, oldest first; returns how
    /// many (0 for a queue out of range). Any thread may call it.
    pub fn take_transmitted(&self, q: u16, out: &mut Vec<PktBuf>, max: usize) -> usize {
        let Some(state) = self.queues.get(q as usize) else {
            return 0;
        };
        pop_into(&state.tx, out, max)
    }

    /// Frees every frame left on every receive and transmit ring into `cache`; returns how many.
    ///
    /// Called at shutdown once the queue owners stopped, so that the pool is whole again. Safe
    /// to call while traffic flows (it then frees what it finds, racing owners for frames).
    pub fn drain_into(&self, cache: &mut PoolCache) -> usize {
        let mut freed = 0;
        for state in self.queues.iter() {
            for ring in [&state.rx, &state.tx] {
                while let Some(buf) = ring.pop() {
                    cache.free(buf);
                    freed += 1;
                }
            }
        }
        freed
    }

    /// Counters of every queue (relaxed reads; see [`QueueStats`]).
    pub fn stats(&self) -> UvethStats {
        UvethStats {
            queues: self
                .queues
                .iter()
                .map(|state| state.counters.snapshot(state.rx.len(), state.tx.len()))
                .collect(),
        }
    }
}

impl PortControl for Uveth {
    fn queues(&self) -> u16 {
        Uveth::queues(self)
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn describe(&self) -> String {
        format!(
            "uveth, {}, mac {}",
            crate::port::queues_text(self.queues()),
            mac_text(self.mac)
        )
    }

    fn drops(&self) -> Vec<Vec<(&'static str, u64)>> {
        self.stats()
            .queues
            .iter()
            .map(|q| {
                vec![
                    ("rx_ring_full", q.rx_dropped_full),
                    ("rx_no_buffer", q.rx_dropped_no_buffer),
                    ("rx_oversize", q.rx_dropped_oversize),
                ]
            })
            .collect()
    }

    fn redirect_queue(&self, failed: u16, survivors: &[u16]) -> Result<bool, String> {
        if let Some(&bad) = survivors
            .iter()
            .find(|&&q| usize::from(q) >= self.queues.len())
        {
            return Err(format!(
                "queue {bad} is not a queue of this port ({} queues)",
                self.queues.len()
            ));
        }
        let mut next = survivors.iter().cycle();
        for entry in self.reta.iter() {
            if entry.load(Ordering::Relaxed) == failed {
                let Some(&to) = next.next() else {
                    return Ok(false);
                };
                entry.store(to, Ordering::Relaxed);
            }
        }
        Ok(true)
    }

    fn rx_waiting(&self, queue: u16) -> Option<bool> {
        self.queues
            .get(usize::from(queue))
            .map(|q| !q.rx.is_empty())
    }

    fn rss(&self) -> Option<&SoftRss> {
        Some(&self.rss)
    }

    fn reclaim(&self, cache: &mut PoolCache) -> usize {
        self.drain_into(cache)
    }
}

/// Queues fed by injection only; a generator's queues are taken with
/// [`Uveth::take_queue`]'s source.
impl Port for Uveth {
    type Queue = UvethQueue<NoSource>;
    type Error = UvethError;

    fn take_queue(&self, queue: u16) -> Result<Self::Queue, UvethError> {
        Uveth::take_queue(self, queue, None)
    }
}

impl fmt::Debug for Uveth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Uveth")
            .field("queues", &self.queues.len())
            .field("ring_size", &self.ring_size)
            .field("mac", &self.mac)
            .field("reta_size", &self.rss.reta.size())
            .finish()
    }
}

/// Pops up to `max` buffers from `ring` onto `out`; returns how many.
fn pop_into(ring: &ArrayQueue<PktBuf>, out: &mut Vec<PktBuf>, max: usize) -> usize {
    let mut taken = 0;
    while taken < max {
        match ring.pop() {
            Some(buf) => {
                out.push(buf);
                taken += 1;
            }
            None => break,
        }
    }
    taken
}
