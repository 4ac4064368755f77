//! The health of each stack thread: its state, its failures and what reclaiming it cost, shared
//! by the thread, the watchdog (`watchdog.rs`), the other threads' steering, the exporters and
//! the report.
//!
//! # States
//!
//! ```text
//! Running ──panic, or fenced by the watchdog──▶ Failed ──restart──▶ Running
//!                                                  │
//!                                                  └──redistribute, stop──▶ Down
//! ```
//!
//! `Failed` lasts while the thread is reclaimed; `Down` until the engine stops. While a thread
//! is not `Running`, the others hand it nothing: steering frees what it would have handed
//! and counts it as `owner_failed`.
//!
//! # Concurrency
//!
//! Each thread's block is written by the thread itself, except the two words the watchdog
//! writes to fence it or inject a fault (`control`, and `state` when it fences). The hot
//! path reads two words: the thread its own `control` once per loop iteration, and steering
//! the `state` of each thread it hands a burst to. Both stay in every core's cache while
//! nothing fails: one relaxed load each, no store. A state change is published with a
//! release store; a thread handing packets over may still see the old state for a moment,
//! which is why the failed thread waits for every other thread to finish a loop iteration
//! before its last drain (`thread.rs`, "Reclaim").

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

/// What a thread is doing, as the metrics and the report name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ThreadState {
    /// Serving.
    Running = 0,
    /// Failed and being reclaimed.
    Failed = 1,
    /// Failed and not coming back (`engine.on_failure` = `redistribute` or `stop`).
    Down = 2,
}

impl ThreadState {
    /// Every state, in metric order.
    pub const ALL: [ThreadState; 3] =
        [ThreadState::Running, ThreadState::Failed, ThreadState::Down];

    /// The name in metrics and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ThreadState::Running => "running",
            ThreadState::Failed => "failed",
            ThreadState::Down => "down",
        }
    }

    fn from_u8(v: u8) -> ThreadState {
        match v {
            0 => ThreadState::Running,
            1 => ThreadState::Failed,
            _ => ThreadState::Down,
        }
    }
}

/// Why a thread was declared failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// It panicked; the panic was caught at the thread's boundary.
    Panic,
    /// It made no loop progress for `engine.stall_ms` while work waited for it.
    Stall,
}

impl Cause {
    /// Every cause, in metric order.
    pub const ALL: [Cause; 2] = [Cause::Panic, Cause::Stall];

    /// The name in metrics and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Panic => "panic",
            Cause::Stall => "stall",
        }
    }
}

/// The steps of a reclaim, in their order, each timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Exact rules deleted, withdrawn from shared listen rules.
    Rules,
    /// Its software queue drained and freed, after every thread saw it fail.
    SoftwareQueue,
    /// Every buffer it held back in the pool.
    Buffers,
    /// Its NIC queue: a fresh stack on it, or handed to a survivor, or none (stop).
    Queue,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 4] = [Step::Rules, Step::SoftwareQueue, Step::Buffers, Step::Queue];

    /// The name in metrics and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Rules => "rules",
            Step::SoftwareQueue => "software_queue",
            Step::Buffers => "buffers",
            Step::Queue => "queue",
        }
    }
}

/// The last reclaim of a thread: what failed, how long each step took, what came back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reclaim {
    /// What the thread said when it failed (the panic's message), or why it was declared.
    pub reason: String,
    /// Duration of each step, in the order of [`Step::ALL`].
    pub steps: [Duration; 4],
    /// Exact rules deleted.
    pub rules_deleted: usize,
    /// Listen rules it was withdrawn from (other threads serve the port).
    pub listens_withdrawn: usize,
    /// Listen rules only it serves, kept: their packets count as `owner_failed` meanwhile.
    pub listens_kept: usize,
    /// Buffers it held, freed.
    pub buffers: u64,
    /// Connections its stack held, gone with it.
    pub connections: u64,
    /// The thread now polling its NIC queue (`redistribute`).
    pub adopted_by: Option<u16>,
    /// Whether the port's redirection table now sends the queue's flows to the surviving
    /// queues (`redistribute`, on a port that can: `PortControl::redirect_queue`).
    pub redirected: bool,
}

impl Reclaim {
    /// From the failure to the last step's end.
    pub fn total(&self) -> Duration {
        self.steps.iter().sum()
    }
}

/// The window of `engine.restart_limit`.
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// Control word bits: the watchdog declared the thread stalled.
const FENCED: u8 = 1;
/// Control word bits: inject a panic.
const INJECT_PANIC: u8 = 2;
/// Control word bits: inject a stall.
const INJECT_STALL: u8 = 4;
/// Control word bits: take over a failed thread's NIC queue (`redistribute`).
const ADOPT: u8 = 8;
/// Control word bits: the thread panicked and has not reached its boundary yet (set by the
/// panic hook, `unwinding.rs`); cleared when its reclaim begins, or when its loop finds it
/// again (a panic caught below the boundary).
const UNWINDING: u8 = 16;

/// What the thread's loop is asked to do, read once per iteration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Go on.
    Serve,
    /// The watchdog declared it stalled: leave the loop and be reclaimed.
    Fenced,
    /// Panic now (fault injection).
    Panic,
    /// Stop making progress for this long (fault injection).
    Stall(Duration),
    /// Take over the NIC queue a failed thread left (`engine.on_failure = "redistribute"`).
    Adopt,
}

/// One thread's health.
#[derive(Debug, Default)]
pub struct ThreadHealth {
    state: AtomicU8,
    control: AtomicU8,
    failures: [AtomicU64; 2],
    restarts: AtomicU64,
    /// Buffers freed by every reclaim of the thread.
    reclaimed_buffers: AtomicU64,
    last: Mutex<Option<Reclaim>>,
    /// When its restarts of the last minute happened (`engine.restart_limit`).
    recent_restarts: Mutex<VecDeque<Instant>>,
}

impl ThreadHealth {
    /// The thread's state.
    #[inline]
    pub fn state(&self) -> ThreadState {
        ThreadState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Whether it serves (steering hands it packets only then).
    #[inline]
    pub fn running(&self) -> bool {
        self.state.load(Ordering::Relaxed) == ThreadState::Running as u8
    }

    pub(crate) fn set_state(&self, state: ThreadState) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// Failures by cause.
    pub fn failures(&self, cause: Cause) -> u64 {
        self.failures[cause as usize].load(Ordering::Relaxed)
    }

    /// Failures, all causes.
    pub fn failures_total(&self) -> u64 {
        Cause::ALL.iter().map(|&c| self.failures(c)).sum()
    }

    /// Times a fresh stack took over its queue.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Buffers freed by its reclaims.
    pub fn reclaimed_buffers(&self) -> u64 {
        self.reclaimed_buffers.load(Ordering::Relaxed)
    }

    /// Its last reclaim, complete or in progress.
    pub fn last_reclaim(&self) -> Option<Reclaim> {
        self.lock_last().clone()
    }

    fn lock_last(&self) -> std::sync::MutexGuard<'_, Option<Reclaim>> {
        // A poisoned lock still holds a whole `Reclaim`: the writers only assign fields.
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Declares the thread failed: counted, its state `Failed`, a reclaim record started.
    /// False when it was not running (already failed or fenced): nothing changes then.
    pub(crate) fn declare_failed(&self, cause: Cause, reason: String) -> bool {
        if self
            .state
            .compare_exchange(
                ThreadState::Running as u8,
                ThreadState::Failed as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            return false;
        }
        self.failures[cause as usize].fetch_add(1, Ordering::Relaxed);
        *self.lock_last() = Some(Reclaim {
            reason,
            ..Reclaim::default()
        });
        true
    }

    /// Updates the reclaim record in progress.
    pub(crate) fn record(&self, update: impl FnOnce(&mut Reclaim)) {
        if let Some(reclaim) = self.lock_last().as_mut() {
            update(reclaim);
        }
    }

    pub(crate) fn count_reclaimed(&self, buffers: u64) {
        self.reclaimed_buffers.fetch_add(buffers, Ordering::Relaxed);
    }

    pub(crate) fn count_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
        self.lock_recent().push_back(Instant::now());
    }

    /// Restarts within the last [`RESTART_WINDOW`].
    pub(crate) fn recent_restarts(&self) -> usize {
        let mut recent = self.lock_recent();
        while recent
            .front()
            .is_some_and(|at| at.elapsed() >= RESTART_WINDOW)
        {
            recent.pop_front();
        }
        recent.len()
    }

    fn lock_recent(&self) -> std::sync::MutexGuard<'_, VecDeque<Instant>> {
        // Whole whatever panicked while it was held: pushes and pops only.
        self.recent_restarts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Fences the thread (the watchdog declared it stalled): it leaves its loop at its next
    /// iteration.
    pub(crate) fn fence(&self) {
        self.control.fetch_or(FENCED, Ordering::Release);
    }

    /// Asks the thread to panic (fault injection).
    pub fn inject_panic(&self) {
        self.control.fetch_or(INJECT_PANIC, Ordering::Release);
    }

    /// Asks the thread to stall (fault injection); it stalls for `stall_for`.
    pub fn inject_stall(&self, stall_for: Duration, store: &AtomicU64) {
        store.store(stall_for.as_millis() as u64, Ordering::Relaxed);
        self.control.fetch_or(INJECT_STALL, Ordering::Release);
    }

    /// What the loop is asked to do: one relaxed load while nothing is asked. An injected
    /// fault is taken once, in an iteration with packets in hand (`busy`), so that it fails
    /// with work in flight.
    #[inline]
    pub(crate) fn order(&self, stall_for: &AtomicU64, busy: bool) -> Order {
        let word = self.control.load(Ordering::Relaxed);
        if word == 0 {
            return Order::Serve;
        }
        self.take_order(word, stall_for, busy)
    }

    #[cold]
    fn take_order(&self, word: u8, stall_for: &AtomicU64, busy: bool) -> Order {
        if word & FENCED != 0 {
            return Order::Fenced;
        }
        if word & UNWINDING != 0 {
            // Back in its loop: whatever panicked was caught on the way, and the thread runs.
            self.set_unwinding(false);
        }
        // One order per iteration, each bit cleared as its order is taken.
        for bit in [INJECT_PANIC, INJECT_STALL, ADOPT] {
            if bit != ADOPT && !busy {
                continue;
            }
            if word & bit != 0 && self.control.fetch_and(!bit, Ordering::Acquire) & bit != 0 {
                return match bit {
                    INJECT_PANIC => Order::Panic,
                    INJECT_STALL => {
                        Order::Stall(Duration::from_millis(stall_for.load(Ordering::Relaxed)))
                    }
                    _ => Order::Adopt,
                };
            }
        }
        Order::Serve
    }

    /// Asks the thread to take over a failed thread's NIC queue at its next iteration.
    pub(crate) fn ask_to_adopt(&self) {
        self.control.fetch_or(ADOPT, Ordering::Release);
    }

    /// Whether the watchdog fenced the thread.
    pub(crate) fn fenced(&self) -> bool {
        self.control.load(Ordering::Acquire) & FENCED != 0
    }

    /// Whether the thread panicked and has not reached its boundary yet: not a stall.
    pub(crate) fn unwinding(&self) -> bool {
        self.control.load(Ordering::Acquire) & UNWINDING != 0
    }

    pub(crate) fn set_unwinding(&self, unwinding: bool) {
        if unwinding {
            self.control.fetch_or(UNWINDING, Ordering::Release);
        } else {
            self.control.fetch_and(!UNWINDING, Ordering::Release);
        }
    }

    /// Clears the fence: the thread serves again (a restart).
    pub(crate) fn unfence(&self) {
        self.control.fetch_and(!FENCED, Ordering::Release);
    }
}

/// The health of every thread.
#[derive(Debug)]
pub struct Health {
    threads: Box<[CachePadded<ThreadHealth>]>,
    /// How long an injected stall lasts, in milliseconds.
    stall_for: AtomicU64,
    /// A thread failed under `engine.on_failure = "stop"`: the engine must stop.
    stop: AtomicBool,
}

impl Health {
    /// Every thread of `threads` running.
    pub fn new(threads: usize) -> Health {
        Health {
            threads: (0..threads).map(|_| CachePadded::default()).collect(),
            stall_for: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }
    }

    /// Whether a failure asked the engine to stop (`engine.on_failure = "stop"`).
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Thread `t`'s health.
    #[inline]
    pub fn thread(&self, t: usize) -> &ThreadHealth {
        &self.threads[t]
    }

    /// Every thread's health, in thread order.
    pub fn threads(&self) -> impl Iterator<Item = &ThreadHealth> {
        self.threads.iter().map(|t| &**t)
    }

    /// Whether any thread ever failed.
    pub fn any_failure(&self) -> bool {
        self.threads().any(|t| t.failures_total() > 0)
    }

    /// Makes thread `t` panic in the middle of its next loop iteration with packets in hand (a
    /// test aid).
    pub fn inject_panic(&self, t: usize) {
        self.thread(t).inject_panic();
    }

    /// Makes thread `t` stop making progress for `stall_for` at its next loop iteration with
    /// packets in hand (a test aid).
    pub fn inject_stall(&self, t: usize, stall_for: Duration) {
        self.thread(t).inject_stall(stall_for, &self.stall_for);
    }

    /// Thread `t`'s order for this loop iteration; `busy`: it has packets in hand.
    #[inline]
    pub(crate) fn order(&self, t: usize, busy: bool) -> Order {
        self.thread(t).order(&self.stall_for, busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_fails_once_until_it_runs_again() {
        let health = Health::new(2);
        let t = health.thread(1);
        assert!(t.declare_failed(Cause::Panic, "boom".into()));
        assert!(
            !t.declare_failed(Cause::Stall, "again".into()),
            "already failed"
        );
        assert_eq!((t.failures(Cause::Panic), t.failures(Cause::Stall)), (1, 0));
        assert_eq!(t.state(), ThreadState::Failed);
        assert!(!t.running());
        assert!(health.thread(0).running());
        t.set_state(ThreadState::Running);
        assert!(t.declare_failed(Cause::Stall, "stuck".into()));
        assert_eq!(t.failures_total(), 2);
        assert_eq!(t.last_reclaim().unwrap().reason, "stuck");
    }

    #[test]
    fn an_injected_fault_is_taken_once_and_a_fence_stays_until_cleared() {
        let health = Health::new(1);
        assert_eq!(health.order(0, true), Order::Serve);
        health.inject_panic(0);
        assert_eq!(
            health.order(0, false),
            Order::Serve,
            "waits for packets in hand"
        );
        assert_eq!(health.order(0, true), Order::Panic);
        assert_eq!(health.order(0, true), Order::Serve);
        health.inject_stall(0, Duration::from_millis(250));
        assert_eq!(
            health.order(0, true),
            Order::Stall(Duration::from_millis(250))
        );
        assert_eq!(health.order(0, true), Order::Serve);
        health.thread(0).fence();
        health.inject_panic(0);
        assert_eq!(health.order(0, true), Order::Fenced, "the fence goes first");
        assert_eq!(health.order(0, true), Order::Fenced);
        health.thread(0).unfence();
        assert_eq!(health.order(0, true), Order::Panic, "still pending");
        health.thread(0).ask_to_adopt();
        health.inject_panic(0);
        assert_eq!(health.order(0, true), Order::Panic);
        assert_eq!(health.order(0, true), Order::Adopt, "not lost to the panic");
        assert_eq!(health.order(0, true), Order::Serve);
    }

    #[test]
    fn unwinding_ends_at_the_reclaim_or_when_the_loop_runs_again() {
        let health = Health::new(1);
        let t = health.thread(0);
        t.set_unwinding(true);
        assert!(t.unwinding());
        t.set_unwinding(false);
        assert!(!t.unwinding());

        // A panic caught below the thread's boundary: the loop goes on, and is a loop the
        // watchdog watches again.
        t.set_unwinding(true);
        health.inject_panic(0);
        assert_eq!(
            health.order(0, true),
            Order::Panic,
            "other orders still taken"
        );
        assert!(!t.unwinding());
        t.set_unwinding(true);
        assert_eq!(health.order(0, false), Order::Serve);
        assert!(!t.unwinding());
        assert_eq!(t.control.load(Ordering::Relaxed), 0);
    }
}
