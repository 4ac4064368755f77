//! A thread that pumps a bridge until told to stop, as a switch forwards on its own.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::error::BridgeThreadError;
use super::stats::{StatsView, VBridgeStats};
use super::VBridge;
use crate::pool::PoolCache;

/// Idle rounds that only yield the core before the thread starts sleeping: a TCP exchange
/// answers within microseconds, and sleeping at once would add a timer slack to every hop.
const SPIN_ROUNDS: u32 = 64;

/// How a [`BridgeThread`] pumps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BridgeThreadConfig {
    /// Frames taken from each port per pump (0 is taken as 1).
    pub burst: usize,
    /// Sleep between pumps once the bridge has been idle for a while.
    pub idle_sleep: Duration,
}

impl Default for BridgeThreadConfig {
    /// Bursts of 64, 50 µs idle sleep.
    fn default() -> Self {
        BridgeThreadConfig {
            burst: 64,
            idle_sleep: Duration::from_micros(50),
        }
    }
}

/// A bridge pumping on its own thread. [`stop`](Self::stop) ends the thread and hands the
/// bridge back; dropping the handle stops and joins too (the bridge is then dropped).
///
/// [`stats`](Self::stats) reads the bridge's counters while it runs.
pub struct BridgeThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<VBridge>>,
    stats: StatsView,
}

impl VBridge {
    /// Moves the bridge to a new thread that pumps it with `cache` until stopped: it pumps
    /// while there is traffic, yields a few rounds when there is none, then sleeps
    /// `config.idle_sleep` between pumps. The cache is dropped (its buffers returned to the
    /// pool) when the thread ends.
    ///
    /// Errors: the operating system refused the thread (the bridge is dropped).
    pub fn spawn(self, cache: PoolCache, config: BridgeThreadConfig) -> io::Result<BridgeThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = self.stats_view();
        let thread_stop = Arc::clone(&stop);
        let handle = thread::Builder::new()
            .name("vbridge".into())
            .spawn(move || pump_until_stopped(self, cache, config, &thread_stop))?;
        Ok(BridgeThread {
            stop,
            handle: Some(handle),
            stats,
        })
    }
}

fn pump_until_stopped(
    mut bridge: VBridge,
    mut cache: PoolCache,
    config: BridgeThreadConfig,
    stop: &AtomicBool,
) -> VBridge {
    let burst = config.burst.max(1);
    let mut idle_rounds = 0u32;
    while !stop.load(Ordering::Acquire) {
        if bridge.pump(&mut cache, burst) > 0 {
            idle_rounds = 0;
        } else if idle_rounds < SPIN_ROUNDS {
            idle_rounds += 1;
            thread::yield_now();
        } else {
            thread::sleep(config.idle_sleep);
        }
    }
    bridge
}

impl BridgeThread {
    /// The bridge's statistics now (relaxed reads while it pumps; see [`VBridgeStats`]).
    pub fn stats(&self) -> VBridgeStats {
        self.stats.snapshot()
    }

    /// Stops pumping after the current pump and returns the bridge. The bridge holds no
    /// buffer between pumps, so the pool only misses what still waits on the uveth's rings.
    ///
    /// Errors: the thread panicked (the bridge is lost).
    pub fn stop(mut self) -> Result<VBridge, BridgeThreadError> {
        self.stop_and_join()
            .ok_or(BridgeThreadError::Panicked)?
            .map_err(|_| BridgeThreadError::Panicked)
    }

    fn stop_and_join(&mut self) -> Option<thread::Result<VBridge>> {
        self.stop.store(true, Ordering::Release);
        self.handle.take().map(JoinHandle::join)
    }
}

impl Drop for BridgeThread {
    fn drop(&mut self) {
        // A panic in the pump thread was already reported by the panic hook.
        let _ = self.stop_and_join();
    }
}

impl fmt::Debug for BridgeThread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BridgeThread")
            .field("ports", &self.stats.ports.len())
            .field("running", &self.handle.is_some())
            .finish()
    }
}
