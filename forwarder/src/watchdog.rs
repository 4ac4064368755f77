//! The watchdog: one thread beside the stack threads that declares a thread stalled when it
//! makes no loop progress for `engine.stall_ms` while work waits for it, and injects the
//! configured fault (`[fault]`, a test aid) at its time.
//!
//! # Why a stall is declared, and when it is not
//!
//! A live stack thread returns to the top of its loop at least once per idle sleep (`spin`
//! and `yield` at once, `sleep` after `engine.idle_sleep_us`, `wait` after 10 ms at most), and
//! counts every iteration (`polls`). A thread whose count has not moved for `stall_ms` is stuck
//! inside one iteration: a loop in an app, a lock that is never released, a call that blocks.
//! It is declared only while work waits for it: packets on its software queue, or frames on its
//! receive queue where the port can tell (`PortControl::rx_waiting`; a port that cannot is
//! taken to have some). An idle thread stuck in a timer costs nobody anything until a packet
//! comes for it, and is declared then.
//!
//! False positives: a thread the kernel does not run for a while on an oversubscribed machine
//! is not dead. The limit is long against any scheduler's latency (default 2 s; at least 100
//! ms and ten idle sleeps), and the watchdog checks its own lateness: when it woke more than
//! half the limit after it meant to (the whole machine, or the virtual machine, was stopped),
//! it starts every thread's clock again instead of declaring anyone. A thread that panicked is
//! not declared while it unwinds, however long the process's panic hook takes to print
//! (`unwinding.rs`).
//!
//! What a declaration does: the thread is marked failed (the other threads hand it nothing more:
//! what they would have is counted `owner_failed`) and fenced, and it is withdrawn at once from
//! the listen rules it shares (the other threads take those ports' new connections). The rest
//! of the reclaim (its exact rules, deleted by key from its stack's account; its software queue,
//! its buffers, its NIC queue) is the thread's own work when it comes back to its loop and finds
//! the fence (`reclaim.rs`); a thread that never comes back keeps them, its connections' packets
//! are counted `owner_failed` meanwhile, and the engine's stop says so.
//!
//! Cost: one wake-up every quarter of the limit (at most every 50 ms), reading each thread's
//! loop counter and software queue depth; nothing on the threads' side.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use flowsteer_config::{FaultKind, OnFailure};

use crate::error::{setup, EngineError};
use crate::health::{Cause, Step};
use crate::shared::Shared;

/// The watchdog's thread; stops with the engine.
pub(crate) struct Watchdog {
    handle: thread::JoinHandle<()>,
}

impl Watchdog {
    /// Starts the watchdog when the configuration asks for stall detection or a fault; `stop`
    /// ends it. `started`: when the stack threads started (the fault's time counts from it).
    pub fn start(
        shared: &Arc<Shared>,
        stop: Arc<AtomicBool>,
        started: Instant,
    ) -> Result<Option<Watchdog>, EngineError> {
        let engine = &shared.config.engine;
        if engine.stall_ms == 0 && shared.config.fault.kind == FaultKind::None {
            return Ok(None);
        }
        let stall = (engine.stall_ms > 0).then(|| Duration::from_millis(engine.stall_ms.into()));
        let tick = stall.map_or(Duration::from_millis(10), |s| {
            (s / 4).clamp(Duration::from_millis(10), Duration::from_millis(50))
        });
        let mut watch = Watch {
            shared: shared.clone(),
            stall,
            tick,
            seen: vec![(u64::MAX, started); shared.stats.len()],
            fault_due: (shared.config.fault.kind != FaultKind::None)
                .then(|| started + Duration::from_millis(shared.config.fault.after_ms.into())),
        };
        let handle = thread::Builder::new()
            .name("fs-watchdog".into())
            .spawn(move || {
                let mut last = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    thread::sleep(watch.tick);
                    let now = Instant::now();
                    watch.check(now, now.duration_since(last));
                    last = now;
                }
            })
            .map_err(setup("spawning the watchdog"))?;
        Ok(Some(Watchdog { handle }))
    }

    /// Waits for the watchdog to end (after the stop flag was set).
    pub fn join(self) {
        // The watchdog's own code does not panic; a panic would have been printed.
        let _ = self.handle.join();
    }
}

/// The watchdog's state.
struct Watch {
    shared: Arc<Shared>,
    stall: Option<Duration>,
    tick: Duration,
    /// Per thread: its loop count when last seen moving, and since when it has not moved.
    seen: Vec<(u64, Instant)>,
    /// When the configured fault is due; `None` once injected (or without one).
    fault_due: Option<Instant>,
}

impl Watch {
    /// One look, `slept` after the last.
    fn check(&mut self, now: Instant, slept: Duration) {
        if self.fault_due.is_some_and(|due| now >= due) {
            self.fault_due = None;
            self.inject();
        }
        let Some(limit) = self.stall else {
            return;
        };
        // Woken late by half the limit: the machine did not run this thread either, so the
        // stack threads' silence says nothing. Every clock starts again.
        let late = slept.saturating_sub(self.tick) > limit / 2;
        for t in 0..self.seen.len() {
            let polls = self.shared.stats.thread(t).polls.get();
            let (seen, since) = &mut self.seen[t];
            let health = self.shared.health.thread(t);
            // An unwinding thread panicked: on its way to its boundary, not stuck.
            if polls != *seen || late || !health.running() || health.unwinding() {
                *seen = polls;
                *since = now;
                continue;
            }
            if now.duration_since(*since) >= limit && self.work_waits(t) {
                self.declare_stalled(t, limit);
                self.seen[t].1 = now;
            }
        }
    }

    /// Whether packets wait for thread `t`: on its software queue, or on its receive queue
    /// (where the port can tell; where it cannot, they are taken to).
    fn work_waits(&self, t: usize) -> bool {
        let shared = &self.shared;
        if !shared.queues[t].is_empty() {
            return true;
        }
        let queues = shared.config.port.queues;
        match u16::try_from(t) {
            Ok(q) if q < queues => shared.port.rx_waiting(q).unwrap_or(true),
            _ => false,
        }
    }

    /// Declares thread `t` stalled: failed and fenced, withdrawn from the listen rules it shares
    /// now.
    fn declare_stalled(&self, t: usize, limit: Duration) {
        let shared = &self.shared;
        let health = shared.health.thread(t);
        let reason = format!(
            "no loop progress for {} ms while work waited for it",
            limit.as_millis()
        );
        if !health.declare_failed(Cause::Stall, reason.clone()) {
            return;
        }
        health.fence();
        let step = Instant::now();
        let withdrawn = shared.table.withdraw_listens(t as u16);
        health.record(|r| {
            r.steps[Step::Rules as usize] = step.elapsed();
            r.listens_withdrawn = withdrawn.listen_withdrawn;
            r.listens_kept = withdrawn.listen_kept;
        });
        eprintln!(
            "flowsteer: thread {t} declared stalled: {reason}; it is withdrawn from the listen \
             rules it shares, the rest is reclaimed when it comes back to its loop"
        );
        if shared.config.engine.on_failure == OnFailure::Stop {
            shared.health.request_stop();
        }
        if let Some(doorbell) = shared.doorbells.get(t) {
            doorbell.ring();
        }
    }

    /// Injects the configured fault.
    fn inject(&self) {
        let fault = &self.shared.config.fault;
        let t = usize::from(fault.thread);
        let health = &self.shared.health;
        match fault.kind {
            FaultKind::None => return,
            FaultKind::Panic => health.inject_panic(t),
            FaultKind::Stall => {
                health.inject_stall(t, Duration::from_millis(fault.stall_for_ms.into()))
            }
        }
        eprintln!(
            "flowsteer: fault injected into thread {t}: {} (fault.kind, a test aid)",
            fault.kind
        );
        if let Some(doorbell) = self.shared.doorbells.get(t) {
            doorbell.ring();
        }
    }
}
