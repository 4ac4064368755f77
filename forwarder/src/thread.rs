//! One stack thread (ARCHITECTURE.md, "The data path of one stack thread"):
//! rx burst from its NIC queue → (software balancing) key, bulk lookup, one burst enqueue per owner
//! → drain its own software queue (prefetching the drained buffers' first lines, which another
//! core wrote) → the processor takes the drained packets and the local ones → tx. Threads without
//! a NIC queue (more threads than queues) only drain their software queue, and transmit on a
//! transmit-only queue of the port or through a thread that has a queue (`transmit.rs`).
//!
//! Shutdown: the stop flag ends receiving; each thread then announces that it will enqueue no more
//! and keeps draining its own queue until every thread has announced and its queue is empty, so no
//! handed-off packet is left behind.
//!
//! Failure: the serving loop runs under `catch_unwind`, with every buffer of the iteration in
//! [`Bursts`], outside it. A panic, or the watchdog's fence (a stall), ends the loop; the thread
//! is then reclaimed (`reclaim.rs`) and, as `engine.on_failure` says, serves again with a fresh
//! processor on the same queue, or stays down (its queue taken over by a survivor, or the
//! engine stopping), freeing and counting what still reaches it. The hot path pays one relaxed
//! load per iteration for it (the thread's orders, `health.rs`).
//!
//! Generic over the port's queue pair and the processor: one monomorphized loop per backend, no
//! dynamic dispatch per packet or per burst.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use flowsteer_config::{Balance, Idle};
use flowsteer_mpsc::Consumer;
use flowsteer_nic::pool::{PktBuf, PoolCache};
use flowsteer_nic::port::QueuePair;
use flowtable::ThreadId;

use crate::doorbell::Doorbell;
use crate::error::{setup, EngineError};
use crate::health::{Cause, Order};
use crate::pin::pin_to_core;
use crate::processor::Processor;
use crate::reclaim::{panic_message, Orphans, Recovery};
use crate::shared::Shared;
use crate::stats::ThreadStats;
use crate::steer::Steering;
use crate::transmit::Transmit;

/// The longest a waiting thread sleeps when nothing wakes it: it checks the stop flag this often.
pub(crate) const WAIT_LIMIT: Duration = Duration::from_millis(10);

/// What one stack thread owns.
pub(crate) struct StackThread<Q, P> {
    pub me: ThreadId,
    pub shared: Arc<Shared>,
    /// Its NIC queue: a queue pair, or for a thread beyond the port's queue pairs the port's
    /// transmit-only queue (which receives nothing) or `None`.
    pub queue: Option<Q>,
    /// NIC queues of failed threads it took over (`engine.on_failure = "redistribute"`),
    /// polled after its own.
    pub adopted: Vec<Q>,
    /// Where failed threads leave their NIC queues for a survivor.
    pub orphans: Arc<Orphans<Q>>,
    /// Its transmit side besides the queue: handing frames to a relaying thread, or relaying.
    pub transmit: Transmit,
    /// Its own software queue.
    pub consumer: Consumer<PktBuf>,
    pub processor: P,
    /// Builds a fresh processor for a restart (`engine.on_failure = "restart"`).
    pub rebuild: Box<dyn FnMut() -> Result<P, String> + Send>,
    /// Set up for this thread's balancing, miss policy and processor.
    pub steering: Steering,
    /// Under RSS balancing, check the received frames (drop the malformed, share neighbour
    /// messages) before the processor takes them: a stack needs it, the sink counts for itself.
    pub screen: bool,
    pub stop: Arc<AtomicBool>,
    pub done_producing: Arc<AtomicUsize>,
}

/// The buffers of one loop iteration, kept outside the part of the loop that may fail so that
/// the reclaim finds them (`reclaim.rs`).
pub(crate) struct Bursts {
    pub rx: Vec<PktBuf>,
    pub local: Vec<PktBuf>,
    pub handed: Vec<PktBuf>,
    pub tx: Vec<PktBuf>,
    /// Whether `local` and `handed` were given to the processor (which counts them first):
    /// what a failure leaves in them then counts as processed, else as dropped.
    pub processing: bool,
}

/// Why the serving loop returned.
pub(crate) enum Served {
    /// The engine stops.
    Stopped,
    /// The watchdog declared the thread stalled.
    Fenced,
}

/// Announces, once, that a thread will enqueue no more packets: on the normal path and when the
/// thread unwinds, so the other threads' shutdown drain never waits for a dead producer.
struct ProducingGuard<'a>(&'a AtomicUsize);

impl Drop for ProducingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

impl<Q: QueuePair + 'static, P: Processor + 'static> StackThread<Q, P> {
    /// Starts the thread, pinned to `core` when one is given.
    pub fn spawn(
        self,
        core: Option<u16>,
    ) -> Result<thread::JoinHandle<Result<(), String>>, EngineError> {
        thread::Builder::new()
            .name(format!("fs-stack-{}", self.me))
            .spawn(move || -> Result<(), String> {
                if let Some(core) = core {
                    if let Err(e) = pin_to_core(usize::from(core)) {
                        self.done_producing.fetch_add(1, Ordering::Release);
                        return Err(e);
                    }
                }
                // Kept until the thread ends, after its pool cache (dropped inside `run`).
                let _port_hold = match self.shared.port.enter_thread() {
                    Ok(hold) => hold,
                    Err(e) => {
                        self.done_producing.fetch_add(1, Ordering::Release);
                        return Err(e);
                    }
                };
                crate::unwinding::serving_as(self.shared.health.clone(), usize::from(self.me));
                self.run()
            })
            .map_err(setup("spawning a stack thread"))
    }

    /// Serves until the engine stops; a failure (a panic caught here, or a fence from the
    /// watchdog) is reclaimed and, as `engine.on_failure` says, followed by a fresh processor
    /// on the same queue, by handing the queue to a survivor, or by the engine's stop.
    fn run(mut self) -> Result<(), String> {
        let done_producing = self.done_producing.clone();
        let producing = ProducingGuard(&done_producing);
        let shared = self.shared.clone();
        let cfg = &shared.config.engine;
        let burst = usize::from(cfg.burst);
        let drain_limit = cfg.drain_limit as usize;
        let stats = shared.stats.thread(usize::from(self.me));
        let home = crate::pools::home(&shared.config, self.me);
        let mut cache = shared.pool.cache_for(home, shared.config.pool.cache);
        let mut bursts = Bursts {
            rx: Vec::with_capacity(burst),
            local: Vec::with_capacity(burst + drain_limit),
            handed: Vec::with_capacity(drain_limit),
            // What the processor sends (at most `2 × max(burst, 32)`) plus what a relaying
            // thread takes from its software transmit queue per loop (`2 × burst`): no growth on
            // the way.
            tx: Vec::with_capacity(2 * burst.max(32) + 2 * burst),
            processing: false,
        };

        let mut down = None;
        loop {
            // Unwind safety: after a panic nothing that `serve` left half-done is used as it
            // was. The buffers are taken out of `bursts` and steering's scratch, the processor
            // is released and replaced (or never called again), and the queue, whose owner is
            // this thread alone, is polled again as the port left it.
            let served = panic::catch_unwind(AssertUnwindSafe(|| {
                self.serve(&mut bursts, &mut cache, stats)
            }));
            let (cause, reason) = match served {
                Ok(Served::Stopped) => break,
                Ok(Served::Fenced) => (Cause::Stall, None),
                Err(payload) => (Cause::Panic, Some(panic_message(&*payload))),
            };
            match self.reclaim(cause, reason, &mut bursts, &mut cache, stats) {
                Recovery::Restarted => continue,
                Recovery::Down(result) => {
                    down = Some(result);
                    break;
                }
            }
        }

        if let Some(result) = down {
            // Nothing more to process: what still reaches its software queue is freed and
            // counted until the engine stops (or at once, when the failure stops the engine).
            if result.is_ok() {
                self.discard_until_stopped(&mut bursts, &mut cache, stats);
            }
            drop(producing);
            self.discard_until_all_done(&mut bursts, &mut cache, stats);
            (self.transmit).finish(self.queue.as_mut(), &mut bursts.tx, &mut cache, stats);
            // The listen rules it alone served stayed for it: they go with it now.
            shared.table.remove_owner(self.me);
            return result;
        }

        self.processor.shutdown(&mut bursts.tx, &mut cache);
        (self.transmit).send(self.queue.as_mut(), &mut bursts.tx, &mut cache, stats);
        // No more receiving: announce that this thread enqueues no more, then drain until every
        // producer has announced (their enqueues happen-before the Acquire below) and the queue
        // is empty. What arrives now is processed (a stack answers it, e.g. with a reset).
        drop(producing);
        let threads = usize::from(cfg.threads);
        let Bursts {
            local, handed, tx, ..
        } = &mut bursts;
        loop {
            let all_done = done_producing.load(Ordering::Acquire) == threads;
            if self.consumer.dequeue_burst(handed, drain_limit) > 0 {
                (self.processor).process(handed, local, tx, &mut cache, stats);
                (self.transmit).send(self.queue.as_mut(), tx, &mut cache, stats);
            } else if all_done {
                break;
            } else {
                thread::yield_now();
            }
        }
        // Nothing more to send of its own; a relaying thread sends the rest of its clients'.
        (self.transmit).finish(self.queue.as_mut(), tx, &mut cache, stats);
        // A thread's exit deletes its rules, as a stack thread's exit would.
        shared.table.remove_owner(self.me);
        Ok(())
    }

    /// The loop of a serving thread, until the engine stops or the watchdog fences it. A panic
    /// anywhere in it leaves every buffer in `bursts`, in steering's scratch, in the processor
    /// or in the port's queue, where the reclaim finds it.
    fn serve(&mut self, bursts: &mut Bursts, cache: &mut PoolCache, stats: &ThreadStats) -> Served {
        let shared = self.shared.clone();
        let cfg = &shared.config.engine;
        let burst = usize::from(cfg.burst);
        let drain_limit = cfg.drain_limit as usize;
        let software = cfg.balance == Balance::Software;
        let me = usize::from(self.me);
        let Bursts {
            rx,
            local,
            handed,
            tx,
            processing,
        } = bursts;

        while !self.stop.load(Ordering::Relaxed) {
            let mut received = match self.queue.as_mut() {
                Some(q) => q.rx_burst(cache, rx, burst),
                None => 0,
            };
            for q in &mut self.adopted {
                received += q.rx_burst(cache, rx, burst);
            }
            stats.rx.add(received as u64);
            if received > 0 {
                let queues = &shared.queues;
                if software {
                    let table = &*shared.table;
                    (self.steering).steer(rx, local, table, queues, cache, stats);
                } else if self.screen {
                    (self.steering).screen(rx, local, queues, cache, stats);
                } else {
                    local.append(rx);
                }
            }
            let drained = self.consumer.dequeue_burst(handed, drain_limit);
            // Another core wrote these buffers: start pulling their lines over now, so that the
            // local packets' processing covers part of the transfers.
            for pkt in handed.iter() {
                pkt.prefetch();
            }
            match shared.health.order(me, received + drained > 0) {
                Order::Serve => {}
                Order::Fenced => return Served::Fenced,
                Order::Panic => panic!("fault injected into thread {me}: panic"),
                Order::Stall(stall_for) => {
                    self.stall(stall_for);
                    // Declared meanwhile: the burst in hand is not the failed stack's to
                    // process any more.
                    if shared.health.thread(me).fenced() {
                        return Served::Fenced;
                    }
                }
                Order::Adopt => {
                    let orphaned = self.orphans.take_for(self.me);
                    self.adopted.extend(orphaned.queues);
                    self.transmit.adopt_relays(orphaned.relays, self.me);
                    // Room for what the processor sends and what it now relays per loop.
                    tx.reserve(2 * burst.max(32) + self.transmit.relay_limit());
                }
            }
            *processing = true;
            (self.processor).process(handed, local, tx, cache, stats);
            *processing = false;
            let relayed = (self.transmit).send(self.queue.as_mut(), tx, cache, stats);
            stats.polls.add(1);
            if received == 0 && drained == 0 && relayed == 0 {
                stats.idle_polls.add(1);
                self.idle(&shared, stats);
            }
        }
        Served::Stopped
    }

    /// An injected stall: no progress for `stall_for`, buffers held, unless the engine stops.
    #[cold]
    fn stall(&self, stall_for: Duration) {
        let until = Instant::now() + stall_for;
        while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
            thread::sleep(WAIT_LIMIT.min(until.saturating_duration_since(Instant::now())));
        }
    }

    /// One idle iteration, as `engine.idle` says.
    fn idle(&self, shared: &Shared, stats: &ThreadStats) {
        let cfg = &shared.config.engine;
        match cfg.idle {
            Idle::Spin => std::hint::spin_loop(),
            Idle::Yield => thread::yield_now(),
            Idle::Sleep => thread::sleep(Duration::from_micros(u64::from(cfg.idle_sleep_us))),
            Idle::Wait => {
                let limit = self
                    .processor
                    .next_timer()
                    .map_or(WAIT_LIMIT, |t| t.min(WAIT_LIMIT));
                let doorbell = &shared.doorbells[usize::from(self.me)];
                // A refused wait is counted; the thread polls on rather than stops.
                if self.sleep_until_work(doorbell, limit).is_err() {
                    stats.wait_errors.add(1);
                }
            }
        }
    }

    /// Sleeps until the thread's receive queue has a frame, another thread rings its doorbell,
    /// or `limit` passes; returns at once if packets were handed over meanwhile (see
    /// `doorbell`).
    fn sleep_until_work(&self, doorbell: &Doorbell, limit: Duration) -> std::io::Result<()> {
        doorbell.going_to_sleep();
        if !self.consumer.is_empty()
            || self.transmit.relay_pending()
            || self.stop.load(Ordering::Relaxed)
        {
            doorbell.woke();
            return Ok(());
        }
        let own = self.queue.as_ref().and_then(|q| q.rx_wait_fd());
        let result = match own {
            _ if !self.adopted.is_empty() => {
                // Rare (a failed thread's queue taken over): the list is built per wait.
                let mut fds: Vec<_> = own.into_iter().chain([doorbell.fd()]).collect();
                fds.extend(self.adopted.iter().filter_map(|q| q.rx_wait_fd()));
                flowsteer_nic::wait::wait_readable(&fds, limit)
            }
            Some(rx) => flowsteer_nic::wait::wait_readable(&[rx, doorbell.fd()], limit),
            None => flowsteer_nic::wait::wait_readable(&[doorbell.fd()], limit),
        };
        doorbell.woke();
        result.map(|_| ())
    }
}
