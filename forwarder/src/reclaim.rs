//! The reclaim of a failed stack thread, run by the thread itself once its serving loop ended
//! (a panic caught at its boundary, or the watchdog's fence), and what a thread that stays down
//! does until the engine stops.
//!
//! # Steps, in order, each timed (`health::Reclaim`)
//!
//! 1. **Rules**: its exact rules are deleted and it is withdrawn from the listen rules of ports
//!    other threads serve too ([`FlowTable::withdraw_owner`](flowtable::FlowTable)): their new
//!    connections go to the others at once. A stack's rules are deleted by key, from its own
//!    account of its connections (O(connections)); the verifying sink's by a scan of the table
//!    (O(buckets): 5-15 ms at the default million rules in a release build). A port only it serves keeps its rule, and steering
//!    drops its packets as `owner_failed` while the thread is not running (the state that step
//!    0 set: from then on no thread hands it anything).
//! 2. **Software queue**: it waits until every other running thread finished a loop iteration
//!    (so no hand-off that read the old state is still under way), then frees what its software
//!    queue holds, and what it had taken from it but not processed, as `failed_queue`.
//! 3. **Buffers**: what it had received and not processed (its burst, steering's scratch) is
//!    freed as `failed_in_flight`; what the processor had been given (counted as processed),
//!    what it was about to send and what the processor holds (a stack's held-back segments) is
//!    freed uncounted. Its pool cache stays with the thread: the buffers in it are the pool's.
//! 4. **Queue**, as `engine.on_failure` says: `restart` builds a fresh processor (a stack adds
//!    its listen rules again) and the thread serves its queue again; `redistribute` leaves the
//!    queue for the next running thread with a queue, which polls it beside its own from its
//!    next iteration and empties its software transmit queue (the frames of queue-less threads
//!    it relayed, `transmit.rs`) onto its own queue, and the thread stays down; `stop` asks the
//!    engine to stop.
//!
//! A thread that stays down keeps draining its software queue (what raced with its failure),
//! freeing and counting every packet, until the engine stops; then it takes part in the
//! shutdown like any thread. So every packet is counted once and the pool is full at the end.
//!
//! What it cannot reclaim: a buffer that was in a local variable of the code that panicked
//! (between leaving one vector and entering another) is lost; the loop keeps none there, and
//! the pool check at shutdown would show it. A thread stuck for good (a stall that never ends)
//! keeps its queue, its buffers and its exact rules (their packets are counted `owner_failed`):
//! the watchdog withdraws it from the listen rules it shares, and the engine's stop names it.

use std::any::Any;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use flowsteer_config::OnFailure;
use flowsteer_nic::pool::PoolCache;
use flowsteer_nic::port::QueuePair;
use flowtable::{ThreadId, Withdrawn};

use crate::health::{Cause, Reclaim, Step, ThreadHealth, ThreadState};
use crate::processor::Processor;
use crate::stats::ThreadStats;
use crate::thread::{Bursts, StackThread, WAIT_LIMIT};
use crate::transmit::Relay;

/// How long the reclaim waits for the other threads to finish a loop iteration: a thread that
/// takes longer (descheduled, stalled itself) is not waited for, and what it hands over late is
/// still freed and counted by the drain that follows the reclaim.
const GRACE_LIMIT: Duration = Duration::from_millis(50);

/// What the thread does after its reclaim.
pub(crate) enum Recovery {
    /// A fresh processor serves its queue.
    Restarted,
    /// It stays down until the engine stops; `Err` (on_failure = stop): the engine stops and
    /// reports it.
    Down(Result<(), String>),
}

/// NIC queues, and the software transmit queues their threads relayed for queue-less threads,
/// that failed threads left for a survivor (`engine.on_failure = "redistribute"`).
pub(crate) struct Orphans<Q> {
    left: Mutex<Vec<(ThreadId, Orphaned<Q>)>>,
}

/// What a failed thread leaves for the thread that takes over its NIC queue.
pub(crate) struct Orphaned<Q> {
    pub queues: Vec<Q>,
    pub relays: Vec<Relay>,
}

impl<Q> Orphans<Q> {
    pub fn new() -> Self {
        Orphans {
            left: Mutex::new(Vec::new()),
        }
    }

    /// Leaves `orphaned` for thread `adopter`.
    fn leave(&self, adopter: ThreadId, orphaned: Orphaned<Q>) {
        self.lock().push((adopter, orphaned));
    }

    /// What was left for `adopter`.
    pub fn take_for(&self, adopter: ThreadId) -> Orphaned<Q> {
        let mut left = self.lock();
        let (mine, others): (Vec<_>, Vec<_>) = left.drain(..).partition(|(a, _)| *a == adopter);
        *left = others;
        let mut taken = Orphaned {
            queues: Vec::new(),
            relays: Vec::new(),
        };
        for (_, orphaned) in mine {
            taken.queues.extend(orphaned.queues);
            taken.relays.extend(orphaned.relays);
        }
        taken
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(ThreadId, Orphaned<Q>)>> {
        // The vector is whole whatever panicked while it was held.
        self.left.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A panic's message, as `std` prints it.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

impl<Q: QueuePair + 'static, P: Processor + 'static> StackThread<Q, P> {
    /// Reclaims this thread after its serving loop ended with `cause` (see the module
    /// documentation); `reason` is a panic's message.
    pub(crate) fn reclaim(
        &mut self,
        cause: Cause,
        reason: Option<String>,
        bursts: &mut Bursts,
        cache: &mut PoolCache,
        stats: &ThreadStats,
    ) -> Recovery {
        let shared = self.shared.clone();
        let me = usize::from(self.me);
        let health = shared.health.thread(me);
        let policy = shared.config.engine.on_failure;
        let reason = reason.unwrap_or_else(|| {
            format!(
                "no loop progress for {} ms while work waited for it",
                shared.config.engine.stall_ms
            )
        });
        health.set_unwinding(false);
        // A stall was declared by the watchdog, which withdrew the thread from the listen rules
        // it shares already; that is done again below (idempotent), with its exact rules. A
        // panic that arrives after the declaration (the thread was stuck, then panicked, or a
        // panic hook other than the engine's took longer than `stall_ms`) stays one failure,
        // counted as the stall it was declared; its message joins the reason.
        if !health.declare_failed(cause, reason.clone()) && cause == Cause::Panic {
            health.record(|r| r.reason = format!("{}; then it panicked: {reason}", r.reason));
        }
        eprintln!(
            "flowsteer: thread {me} failed ({}): {reason}; reclaiming it (engine.on_failure = \
             \"{policy}\")",
            cause.as_str()
        );

        let step = Instant::now();
        let table = &shared.table;
        let withdrawn = match self.processor.known_rules() {
            // O(its connections); the scan of every bucket is for processors that keep no
            // account (the verifying sink, whose rules the generator installed).
            Some(keys) => Withdrawn {
                exact: keys
                    .iter()
                    .filter(|k| table.remove_owned(k, self.me))
                    .count(),
                ..table.withdraw_listens(self.me)
            },
            None => table.withdraw_owner(self.me),
        };
        health.record(|r| {
            r.steps[Step::Rules as usize] += step.elapsed();
            r.rules_deleted += withdrawn.exact;
            r.listens_withdrawn += withdrawn.listen_withdrawn;
            r.listens_kept = withdrawn.listen_kept;
        });

        let step = Instant::now();
        self.wait_for_the_others();
        let mut queued = 0;
        if !bursts.processing {
            queued += bursts.handed.len() as u64;
            cache.free_bulk(&mut bursts.handed);
        }
        queued += self.discard_queued(bursts, cache);
        stats.failed_queue.add(queued);
        health.record(|r| r.steps[Step::SoftwareQueue as usize] = step.elapsed());

        let step = Instant::now();
        let mut in_flight = bursts.rx.len() as u64 + self.steering.release_after_failure(cache);
        let mut processed = bursts.tx.len() as u64;
        if bursts.processing {
            processed += (bursts.local.len() + bursts.handed.len()) as u64;
        } else {
            in_flight += bursts.local.len() as u64;
        }
        for burst in [
            &mut bursts.rx,
            &mut bursts.local,
            &mut bursts.handed,
            &mut bursts.tx,
        ] {
            cache.free_bulk(burst);
        }
        bursts.processing = false;
        stats.failed_in_flight.add(in_flight);
        let (held, connections) = self.processor.release_after_failure(cache);
        let buffers = queued + in_flight + processed + held;
        health.count_reclaimed(buffers);
        health.record(|r| {
            r.steps[Step::Buffers as usize] = step.elapsed();
            r.buffers += buffers;
            r.connections += connections;
        });

        let step = Instant::now();
        let limit = shared.config.engine.restart_limit as usize;
        let recovery = match policy {
            OnFailure::Restart if limit > 0 && health.recent_restarts() >= limit => {
                health.set_state(ThreadState::Down);
                shared.health.request_stop();
                Recovery::Down(Err(format!(
                    "{}: {reason}; restarted {limit} times within a minute already \
                     (engine.restart_limit)",
                    cause.as_str()
                )))
            }
            OnFailure::Restart => self.restart(health, bursts, cache, stats),
            OnFailure::Redistribute => {
                let redirected = self.redirect_flows();
                let adopter = self.hand_over_queues();
                health.set_state(ThreadState::Down);
                health.record(|r| {
                    r.adopted_by = adopter;
                    r.redirected = redirected;
                });
                Recovery::Down(Ok(()))
            }
            OnFailure::Stop => {
                health.set_state(ThreadState::Down);
                shared.health.request_stop();
                Recovery::Down(Err(format!("{}: {reason}", cause.as_str())))
            }
        };
        health.record(|r| r.steps[Step::Queue as usize] = step.elapsed());
        if let Some(r) = health.last_reclaim() {
            eprintln!("flowsteer: thread {me}: {}", describe(&r, health.state()));
        }
        recovery
    }

    /// A fresh processor on the same queue, first taught the neighbours the engine heard of
    /// (`neighbors.rs`); a processor that cannot be built stops the engine.
    fn restart(
        &mut self,
        health: &ThreadHealth,
        bursts: &mut Bursts,
        cache: &mut PoolCache,
        stats: &ThreadStats,
    ) -> Recovery {
        match (self.rebuild)() {
            Ok(processor) => {
                // The failed one goes here: its sockets' memory, its rules' bookkeeping.
                self.processor = processor;
                // Processed with the first iteration's packets, counted as the copies of
                // neighbour messages they are.
                for frame in self.shared.neighbors.frames() {
                    stats.link_copies.add(1);
                    let Some(mut buf) = cache.alloc() else {
                        stats.no_buffer.add(1);
                        continue;
                    };
                    if buf.write_frame(&frame).is_err() {
                        cache.free(buf);
                        stats.no_buffer.add(1);
                        continue;
                    }
                    bursts.local.push(buf);
                }
                health.count_restart();
                health.unfence();
                health.set_state(ThreadState::Running);
                Recovery::Restarted
            }
            Err(e) => {
                health.set_state(ThreadState::Down);
                self.shared.health.request_stop();
                Recovery::Down(Err(format!("could not restart: {e}")))
            }
        }
    }

    /// Points the port's redirection table entries of this thread's queue (and of the queues it
    /// had taken over) at the queues of the running threads, where the port can; true when it
    /// did. A refusal is printed: the survivor that polls the queue still serves its flows.
    fn redirect_flows(&self) -> bool {
        let shared = &self.shared;
        let queues = shared.config.port.queues;
        let survivors: Vec<u16> = (0..queues)
            .filter(|&q| q != self.me && shared.health.thread(usize::from(q)).running())
            .collect();
        let mut failed: Vec<u16> = self.adopted.iter().map(QueuePair::queue_id).collect();
        if self.me < queues {
            failed.push(self.me);
        }
        let mut redirected = !failed.is_empty();
        for queue in failed {
            match shared.port.redirect_queue(queue, &survivors) {
                Ok(done) => redirected &= done,
                Err(e) => {
                    eprintln!(
                        "flowsteer: thread {}: the port did not redirect queue {queue}'s flows \
                         ({e}); the thread that takes the queue over serves them",
                        self.me
                    );
                    redirected = false;
                }
            }
        }
        redirected
    }

    /// Leaves this thread's NIC queue and any it had taken over, with the software transmit
    /// queues it emptied for queue-less threads, for the next running thread that has a queue
    /// of its own, and wakes it; returns that thread. With no such thread the queues stay here,
    /// unpolled, and what queue-less threads hand this one is counted `tx_full`.
    fn hand_over_queues(&mut self) -> Option<u16> {
        let shared = &self.shared;
        let threads = shared.config.engine.threads;
        let queues = shared.config.port.queues;
        let adopter = (1..threads)
            .map(|k| (self.me + k) % threads)
            .find(|&t| t < queues && shared.health.thread(usize::from(t)).running())?;
        let mut handed = std::mem::take(&mut self.adopted);
        handed.extend(self.queue.take().filter(|_| self.me < queues));
        // Only a thread with a NIC queue relays: no queue handed, no ring either.
        if handed.is_empty() {
            return None;
        }
        let relays = self.transmit.take_relays();
        self.orphans.leave(
            adopter,
            Orphaned {
                queues: handed,
                relays,
            },
        );
        shared.health.thread(usize::from(adopter)).ask_to_adopt();
        if let Some(doorbell) = shared.doorbells.get(usize::from(adopter)) {
            doorbell.ring();
        }
        Some(adopter)
    }

    /// Waits until every other running thread finished a loop iteration since this one
    /// failed, at most [`GRACE_LIMIT`].
    fn wait_for_the_others(&self) {
        let shared = &self.shared;
        let others: Vec<(usize, u64)> = (0..shared.stats.len())
            .filter(|&t| t != usize::from(self.me) && shared.health.thread(t).running())
            .map(|t| (t, shared.stats.thread(t).polls.get()))
            .collect();
        let deadline = Instant::now() + GRACE_LIMIT;
        // Two more iterations: the first may have begun before the failure was published.
        while others.iter().any(|&(t, polls)| {
            shared.health.thread(t).running() && shared.stats.thread(t).polls.get() < polls + 2
        }) {
            if Instant::now() >= deadline {
                break;
            }
            // A thread that went back to sleep after its first iteration is woken again.
            for doorbell in shared.doorbells.iter() {
                doorbell.ring_if_sleeping();
            }
            thread::yield_now();
        }
    }

    /// Frees what the software queue holds; returns how many.
    fn discard_queued(&mut self, bursts: &mut Bursts, cache: &mut PoolCache) -> u64 {
        let limit = self.shared.config.engine.drain_limit as usize;
        let mut freed = 0;
        while self.consumer.dequeue_burst(&mut bursts.handed, limit) > 0 {
            freed += bursts.handed.len() as u64;
            cache.free_bulk(&mut bursts.handed);
        }
        freed
    }

    /// A thread that stays down, until the engine stops: frees and counts what still reaches
    /// its software queue (hand-overs that raced with its failure); what queue-less threads
    /// still hand it, when no thread took its rings over, is counted `tx_full`.
    pub(crate) fn discard_until_stopped(
        &mut self,
        bursts: &mut Bursts,
        cache: &mut PoolCache,
        stats: &ThreadStats,
    ) {
        while !self.stop.load(std::sync::atomic::Ordering::Relaxed) {
            let freed = self.discard_queued(bursts, cache);
            stats.failed_queue.add(freed);
            (self.transmit).send(self.queue.as_mut(), &mut bursts.tx, cache, stats);
            thread::sleep(WAIT_LIMIT);
        }
    }

    /// The shutdown of a thread that is down: frees and counts what reaches its software queue
    /// until every thread announced it hands over no more.
    pub(crate) fn discard_until_all_done(
        &mut self,
        bursts: &mut Bursts,
        cache: &mut PoolCache,
        stats: &ThreadStats,
    ) {
        let threads = usize::from(self.shared.config.engine.threads);
        loop {
            let all_done = self
                .done_producing
                .load(std::sync::atomic::Ordering::Acquire)
                == threads;
            let freed = self.discard_queued(bursts, cache);
            stats.failed_queue.add(freed);
            if freed == 0 {
                if all_done {
                    break;
                }
                thread::yield_now();
            }
        }
    }
}

/// One line on a reclaim: how long each step took, what came back, where the queue went.
pub fn describe(r: &Reclaim, state: ThreadState) -> String {
    let steps: Vec<String> = Step::ALL
        .iter()
        .zip(&r.steps)
        .map(|(step, d)| format!("{} {:.3} ms", step.as_str(), d.as_secs_f64() * 1e3))
        .collect();
    let redirected = if r.redirected {
        ", its flows redirected to the surviving queues"
    } else {
        ""
    };
    let after = match (state, r.adopted_by) {
        (ThreadState::Running, _) => "restarted".to_owned(),
        (_, Some(t)) => format!("down, its queue polled by thread {t}{redirected}"),
        (_, None) => format!("down{redirected}"),
    };
    format!(
        "reclaimed in {:.3} ms ({}): {} exact rules deleted, withdrawn from {} listen rules \
         (kept {} it alone serves), {} buffers freed, {} connections lost; {after}",
        r.total().as_secs_f64() * 1e3,
        steps.join(", "),
        r.rules_deleted,
        r.listens_withdrawn,
        r.listens_kept,
        r.buffers,
        r.connections,
    )
}
