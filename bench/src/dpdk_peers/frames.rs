//! What both DPDK peers share: the generated frames in mbufs, the report of a run and its
//! conservation check, and the TSC phase counters.
//!
//! [`Frames::new`] builds, from an engine configuration, what the engine builds for itself
//! ([`crate::generated`]: the flow table, a uveth with the configuration's RSS, the traffic plan
//! and the queues with their generators); the pool is a DPDK mempool of mbufs ([`PacketPool::with_mbufs`]), so each generated frame is an mbuf that DPDK's calls
//! accept, converted without a copy ([`PktBuf::into_mbuf`], [`PktBuf::from_mbuf`]).

use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use dpdk_sys::{eal, ffi};
use flowsteer_config::Config;
use flowsteer_nic::pool::{PacketPool, PktBuf, PoolCache};
use flowsteer_nic::uveth::{Uveth, UvethQueue};
use flowtable::FlowTable;
use forwarder::stats::EngineStats;
use forwarder::traffic::{QueueSource, TrafficPlan};

use crate::window::Window;

/// The generated traffic of one run and where its buffers come from.
pub(super) struct Frames {
    pub table: Arc<dyn FlowTable>,
    pub pool: Arc<PacketPool>,
    uveth: Uveth,
    /// Kept until the end: the sources refer to its flows.
    plan: TrafficPlan,
    /// One generator-fed queue per `port.queues`, taken by the receiving threads.
    pub queues: Vec<UvethQueue<QueueSource>>,
}

/// Makes mempool names unique in the process (DPDK keys mempools by name).
static POOL_SEQ: AtomicU32 = AtomicU32::new(0);

impl Frames {
    /// The table, mbuf pool, port and generators of `config` (validated here). The EAL must be
    /// up.
    pub fn new(config: &Config) -> Result<Frames, String> {
        let generated = crate::generated::build(config)?;
        let name = format!("peers{}", POOL_SEQ.fetch_add(1, Ordering::Relaxed));
        let pool = PacketPool::with_mbufs(&name, config.pool.buffers, config.pool.data_room)
            .map_err(|e| format!("mbuf pool: {e}"))?;
        Ok(Frames {
            table: generated.table,
            pool,
            uveth: generated.uveth,
            plan: generated.plan,
            queues: generated.queues,
        })
    }

    /// Ends the run once every thread has stopped (the queues dropped): frames left in the port
    /// go back to the pool, and the returned counts are the pool's free buffers and size.
    pub fn finish(self) -> (u32, u32) {
        let Frames {
            pool, uveth, plan, ..
        } = self;
        drop(plan);
        let mut cache = pool.cache(0);
        uveth.drain_into(&mut cache);
        drop(cache);
        drop(uveth);
        (pool.available(), pool.capacity())
    }
}

/// The mbuf of `pkt`, tagged for DPDK with `tag` in `hash.usr` (which is also where a NIC puts
/// its RSS hash): the handle is given up for the mbuf.
#[inline]
pub(super) fn into_tagged_mbuf(pkt: PktBuf, tag: u32) -> *mut ffi::rte_mbuf {
    let m = pkt.into_mbuf().as_ptr();
    // SAFETY: m is the mbuf of a buffer this thread owned until now (into_mbuf), so no other
    // thread touches it; `usr` is a plain u32 member of the hash union.
    unsafe { (*m).__bindgen_anon_2.hash.usr = tag };
    m
}

/// The buffer of mbuf `m`, which came back from DPDK; `None` (counted by the caller) for a null
/// pointer or an mbuf not in the pool's form, which is then freed with DPDK's call.
///
/// # Safety
///
/// `m` is null or an mbuf of a [`Frames`] pool that the calling thread now owns (DPDK handed it
/// over), with no other handle.
#[inline]
pub(super) unsafe fn from_mbuf(m: *mut ffi::rte_mbuf) -> Option<PktBuf> {
    let m = NonNull::new(m)?;
    // SAFETY: the caller's contract is from_mbuf's.
    let buf = unsafe { PktBuf::from_mbuf(m) };
    if buf.is_none() {
        // SAFETY: from_mbuf refused it, so it is still the caller's; freed once.
        unsafe { dpdk_sys::pktmbuf_free(m.as_ptr()) };
    }
    buf
}

/// Frees the buffers of `mbufs` (mbufs the calling thread owns) into `cache`; returns how many
/// were not in the pool's form (freed by DPDK instead).
///
/// # Safety
///
/// As [`from_mbuf`], for each pointer.
pub(super) unsafe fn free_mbufs(mbufs: &[*mut ffi::rte_mbuf], cache: &mut PoolCache) -> u64 {
    let mut unusable = 0;
    for &m in mbufs {
        // SAFETY: the caller's contract.
        match unsafe { from_mbuf(m) } {
            Some(buf) => cache.free(buf),
            None => unusable += 1,
        }
    }
    unusable
}

/// TSC cycles one thread spent in each phase of its loop, and packets it moved.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Phases {
    /// Receiving (the generator's fill), classifying, looking up, tagging.
    pub receive: u64,
    /// The hand-over calls (`rte_distributor_process`; event enqueue and dequeue).
    pub hand_over: u64,
    /// Processing in the sink and freeing.
    pub process: u64,
    /// Polls that found nothing.
    pub idle: u64,
}

impl Phases {
    /// Adds the cycles since `*mark` to `field` and moves the mark to now.
    #[inline]
    pub fn lap(field: &mut u64, mark: &mut u64) {
        let now = eal::tsc();
        *field += now.wrapping_sub(*mark);
        *mark = now;
    }

    /// The sum of several threads' phases.
    pub fn sum(all: &[Phases]) -> Phases {
        all.iter().fold(Phases::default(), |t, p| Phases {
            receive: t.receive + p.receive,
            hand_over: t.hand_over + p.hand_over,
            process: t.process + p.process,
            idle: t.idle + p.idle,
        })
    }
}

/// What a peer's run counted.
#[derive(Clone, Debug, Default)]
pub(super) struct PeerReport {
    /// What the stack threads processed in the measured window.
    pub window: Window,
    /// Frames received from the queues.
    pub rx: u64,
    /// Frames passed through the hand-over (distributed, enqueued as events).
    pub handed: u64,
    /// Of those, frames that went to a thread other than the one that received them (eventdev;
    /// the distributor receives on its own thread, so all of its are).
    pub crossed: u64,
    /// Frames the stack threads processed.
    pub processed: u64,
    /// Processed frames of flows another thread owns.
    pub misdirected: u64,
    /// Drops by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Conservation failures; empty when every packet is accounted for and every mbuf is back.
    pub failures: Vec<String>,
    /// Free mbufs after shutdown, and the pool's size.
    pub pool: (u32, u32),
    /// Where the threads ran.
    pub placement: String,
    /// Cycles per phase of the receiving side: the distributor thread, or all of eventdev's
    /// stack threads (which also process: their whole loop is here).
    pub receiving: Phases,
    /// Cycles per phase of the distributor's workers (nothing for eventdev).
    pub processing: Phases,
}

impl PeerReport {
    /// All drops.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// Adds drop `reason` when non-zero.
    pub fn drop_count(&mut self, reason: &str, n: u64) {
        if n > 0 {
            *self.dropped.entry(reason.to_string()).or_default() += n;
        }
    }

    /// The checks every peer's short test run must pass: no conservation failure, something
    /// received, `rx == processed + dropped`, every mbuf back, and a window inside the run.
    #[cfg(test)]
    pub fn assert_accounted(&self) {
        assert!(self.failures.is_empty(), "{:?}", self.failures);
        assert!(self.rx > 0);
        assert_eq!(self.rx, self.processed + self.dropped_total());
        assert_eq!(self.pool.0, self.pool.1);
        let window = self.window.counts.processed;
        assert!(
            window > 0 && window < self.processed,
            "{window} of {}",
            self.processed
        );
        assert!(self.window.mpps() > 0.0);
    }

    /// Fills `processed` and `misdirected` from the stack threads' counters and checks
    /// `rx == processed + dropped` and the pool (`pool`: free mbufs and size after shutdown).
    pub fn account(&mut self, stats: &EngineStats, pool: (u32, u32)) {
        for t in stats.snapshot() {
            self.processed += t.processed();
            self.misdirected += t.misdirected;
            for (reason, n) in &t.dropped {
                self.drop_count(reason, *n);
            }
        }
        let dropped = self.dropped_total();
        if self.rx != self.processed + dropped {
            self.failures.push(format!(
                "rx {} != processed {} + dropped {dropped}",
                self.rx, self.processed
            ));
        }
        self.pool = pool;
        if pool.0 != pool.1 {
            self.failures.push(format!(
                "pool: {} of {} mbufs free after shutdown",
                pool.0, pool.1
            ));
        }
    }
}

/// The tests' configuration: `listeners`, 256 flows, the default 2 threads; `None` (the test
/// skips, with one line) when the EAL cannot start here.
#[cfg(test)]
pub(super) fn listeners_for_test() -> Option<Config> {
    if let Err(e) = crate::competitors::dpdk_ready() {
        flowsteer_testrig::skip(&e);
        return None;
    }
    let mut cfg = Config::default();
    cfg.traffic.profile = flowsteer_config::Profile::Listeners;
    cfg.traffic.flows = 256;
    cfg.metrics.enabled = false;
    Some(cfg)
}
