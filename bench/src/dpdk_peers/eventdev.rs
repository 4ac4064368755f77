//! The eventdev peer: each stack thread receives its queue's frames (the engine's generator
//! inline, as in the engine), classifies each and looks its owner up in the flow table as the
//! engine's steering does, and enqueues every packet as an event (`ev.mbuf`) to the owner's event
//! queue of a software event device; it then dequeues the events of its own queue (the only one
//! linked to its port) and gives them to the engine's [`VerifyingSink`], which parses, checks the
//! stamp and frees. Every packet goes through the device, the thread's own ones too: that is how
//! an eventdev pipeline receives (an Rx adapter makes every packet an event).
//!
//! The flow id is the flow key's hash (the table computes it for the lookup) modulo the queue's
//! flows. The queues are atomic: one port per queue, so atomic and parallel deliver to the same
//! port; atomic is what a stack needs once a queue has several ports (a flow's packets on one
//! core at a time, in order), and [`Sched`] lets the bench measure both.
//!
//! Devices: `event_dsw` schedules inside the ports' enqueue and dequeue calls (no service core),
//! so it runs on the engine's threads and cores alone; `event_sw` schedules in a service that a
//! thread must run: here one more thread loops `rte_service_run_iter_on_app_lcore`, so on 2 cores
//! 3 busy threads share them (the table says so).
//!
//! The device's credits bound the events inside it; a refused enqueue is freed and counted as
//! `swq_full` (the event queue is the software queue here), never retried, as the engine's
//! steering does with a full ring; the thread then skips its next receive, as an eventdev
//! pipeline backs off its Rx adapter (a NIC drops what is not received, at no cost to the
//! core), so that the generator's work is not spent on packets the device cannot take. Shutdown: the threads stop receiving, then keep dequeuing
//! (and maintaining their port, which flushes `event_dsw`'s buffered events) until every event
//! enqueued has been dequeued; a device that holds events longer than [`DRAIN_LIMIT`] is a
//! failure of the run.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use dpdk_sys::eventdev::{
    event_mbuf, event_sub_type, mbuf_event, DeviceConfig, EventDev, EventPort, SchedType, Service,
};
use dpdk_sys::{eal, ffi};
use flowsteer_config::Config;
use flowsteer_nic::pool::{PacketPool, PktBuf, PoolCache};
use flowsteer_nic::port::QueuePair;
use flowsteer_nic::rss::Reta;
use flowsteer_nic::wire::{self, Classified};
use flowtable::{FlowKey, FlowTable, Lookup, ThreadId};
use forwarder::keys::flow_key;
use forwarder::sink::{Origin, VerifyingSink};
use forwarder::stats::{EngineStats, ThreadStats};

use super::frames::{from_mbuf, into_tagged_mbuf, Frames, PeerReport, Phases};
use crate::ltran::cpu;
use crate::window::Window;

/// Longest a device may keep events after the threads stopped receiving.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Numbers the devices of the process.
static DEVICE_SEQ: AtomicU32 = AtomicU32::new(0);

/// Events in the device at once, or the device's maximum if lower (`event_dsw`: 16384,
/// `event_sw`: 4096). Its ports share them: when one thread stalls (on a 2-vCPU guest, whenever
/// its vCPU does not run), the other fills the stalled thread's queue until they run out and its
/// own packets are refused too; with 4096 `event_dsw` refused about 60% of what the threads
/// received on the shared 2-vCPU machine, with 16384 0.3–16% (BENCHMARKS.md).
const EVENTS: i32 = 16384;

/// Most events per enqueue or dequeue (the devices' maximum port depth is 128 or more).
const PORT_DEPTH: u16 = 64;

/// Which software event device runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Device {
    /// `event_dsw`: scheduling in the ports' calls.
    Dsw,
    /// `event_sw`: scheduling in a service, run by one more thread.
    Sw,
}

impl Device {
    /// The device's name.
    pub fn name(self) -> &'static str {
        match self {
            Device::Dsw => "event_dsw",
            Device::Sw => "event_sw",
        }
    }
}

/// The queues' scheduling type.
pub(super) type Sched = SchedType;

/// Per-thread progress of the drain: events enqueued and dequeued (single writer each).
#[derive(Default)]
struct Progress {
    enqueued: AtomicU64,
    dequeued: AtomicU64,
}

/// What one stack thread counted besides its [`EngineStats`].
#[derive(Default)]
struct ThreadCounts {
    rx: u64,
    enqueued: u64,
    crossed: u64,
    unusable: u64,
    phases: Phases,
}

/// Runs the peer: `config.engine.threads` stack threads on the frames of `config`, through
/// `device` with `sched` queues; a warm-up, then a window of `duration`.
pub(super) fn run(
    config: &Config,
    device: Device,
    sched: Sched,
    duration: Duration,
) -> Result<PeerReport, String> {
    let mut frames = Frames::new(config)?;
    let threads = usize::from(config.engine.threads);
    if usize::from(config.port.queues) != threads {
        return Err("eventdev peer: one queue per stack thread".to_string());
    }
    let queues = std::mem::take(&mut frames.queues);
    let n = u8::try_from(threads).map_err(|_| "eventdev peer: at most 255 threads")?;
    // A name of its own: runs in parallel (the tests) each make their device.
    let name = format!(
        "{}{}",
        device.name(),
        DEVICE_SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let mut dev =
        EventDev::create_vdev(&name, "").map_err(|e| format!("{}: {e}", device.name()))?;
    let info = dev.info().map_err(|e| e.to_string())?;
    let flows = info.max_queue_flows.clamp(1, 1 << 15);
    let depth = u32::from(PORT_DEPTH)
        .min(u32::from(info.max_dequeue_depth))
        .min(info.max_enqueue_depth);
    let events = if info.max_events > 0 {
        EVENTS.min(info.max_events)
    } else {
        EVENTS
    };
    let setup = |dev: &mut EventDev| -> Result<(), dpdk_sys::Error> {
        dev.configure(DeviceConfig {
            queues: n,
            ports: n,
            events_limit: events,
            queue_flows: flows,
            dequeue_depth: depth,
            enqueue_depth: depth,
        })?;
        for q in 0..n {
            dev.setup_queue(q, sched, flows)?;
        }
        for p in 0..n {
            dev.setup_port(p, events, depth as u16, depth as u16)?;
            dev.link(p, &[p])?;
        }
        Ok(())
    };
    setup(&mut dev).map_err(|e| format!("{}: {e}", device.name()))?;
    dev.start().map_err(|e| format!("{}: {e}", device.name()))?;
    let service = dev.service();

    let stats = EngineStats::new(threads);
    let progress: Vec<CachePadded<Progress>> =
        (0..threads).map(|_| CachePadded::default()).collect();
    let stop = AtomicBool::new(false);
    let stopped_receiving = AtomicUsize::new(0);
    let cpus = cpu::allowed().unwrap_or_default();
    let pinned = !cpus.is_empty() && threads <= cpus.len();
    let mut placement = if pinned {
        format!("stack thread i pinned to CPU i of {:?}", cpus)
    } else {
        "stack threads unpinned".to_string()
    };
    if service.is_some() {
        placement.push_str(&format!(
            ", 1 scheduler thread unpinned ({} busy threads on {} CPUs{})",
            threads + 1,
            cpus.len(),
            if threads + 1 > cpus.len() {
                ": measures the scheduler too"
            } else {
                ""
            }
        ));
    }
    let thread_reta = Reta::new(threads.next_power_of_two().max(64), config.engine.threads)
        .map_err(|e| format!("thread RETA: {e}"))?;
    let burst = usize::from(config.engine.burst);
    let cache_size = config.pool.cache;
    let (table, pool) = (frames.table.clone(), frames.pool.clone());
    let ports: Vec<EventPort<'_>> = (0..n)
        .map(|p| dev.port(p).ok_or(format!("event port {p} not available")))
        .collect::<Result<_, _>>()?;

    let (counts, window) = thread::scope(|s| {
        let scheduler = service.map(|service| {
            let (stop, receiving) = (&stop, &stopped_receiving);
            let progress = &progress;
            thread::Builder::new()
                .name("event-sched".to_string())
                .spawn_scoped(s, move || {
                    schedule(service, stop, receiving, threads, progress)
                })
        });
        let stacks: Vec<_> = queues
            .into_iter()
            .zip(ports)
            .enumerate()
            .map(|(t, (queue, port))| {
                let ctx = Stack {
                    me: t as ThreadId,
                    table: table.clone(),
                    pool: &pool,
                    stats: &stats,
                    progress: &progress,
                    thread_reta: thread_reta.clone(),
                    flows,
                    sched,
                    burst,
                    cache_size,
                    drain_limit: config.engine.drain_limit as usize,
                };
                let (stop, receiving) = (&stop, &stopped_receiving);
                let pin = pinned.then(|| cpus[t]);
                thread::Builder::new()
                    .name(format!("event-stack-{t}"))
                    .spawn_scoped(s, move || {
                        if let Some(core) = pin {
                            cpu::pin(core);
                        }
                        ctx.run(queue, port, stop, receiving)
                    })
            })
            .collect();
        let stacks = match stacks.into_iter().collect::<Result<Vec<_>, _>>() {
            Ok(st) => st,
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                // Threads that started stop receiving and drain; the missing ones count as
                // stopped so that nobody waits for them.
                stopped_receiving.store(threads, Ordering::Release);
                return Err("cannot spawn the eventdev threads".to_string());
            }
        };
        let window = Window::measure(&stats, duration);
        stop.store(true, Ordering::Relaxed);
        let counts: Result<Vec<_>, _> = stacks.into_iter().map(|h| h.join()).collect();
        let scheduled = scheduler.map(|h| h.map(|h| h.join()));
        match (counts, scheduled) {
            (Ok(c), None | Some(Ok(Ok(Ok(()))))) => Ok((c, window)),
            (_, Some(Ok(Ok(Err(e))))) => Err(e),
            _ => Err("an eventdev thread panicked or did not start".to_string()),
        }
    })?;

    let sum = |f: fn(&ThreadCounts) -> u64| counts.iter().map(f).sum::<u64>();
    let mut report = PeerReport {
        window,
        rx: sum(|c| c.rx),
        handed: sum(|c| c.enqueued),
        crossed: sum(|c| c.crossed),
        placement,
        receiving: Phases::sum(&counts.iter().map(|c| c.phases).collect::<Vec<_>>()),
        ..PeerReport::default()
    };
    report.drop_count("unusable_mbuf", sum(|c| c.unusable));
    let (enqueued, dequeued) = progress.iter().fold((0, 0), |(e, d), p| {
        (
            e + p.enqueued.load(Ordering::Relaxed),
            d + p.dequeued.load(Ordering::Relaxed),
        )
    });
    if enqueued != dequeued {
        report.failures.push(format!(
            "{} kept {} of {enqueued} events after {DRAIN_LIMIT:?} of draining",
            device.name(),
            enqueued - dequeued
        ));
        report.drop_count("stuck_in_device", enqueued - dequeued);
    }
    // Stops, closes and removes the device: nothing is inside it any more (checked above).
    drop(dev);
    report.account(&stats, frames.finish());
    Ok(report)
}

/// The scheduler thread of a device that needs one: runs its service until every stack thread
/// stopped receiving and the device is drained (or the drain limit passed). It registers as an
/// EAL lcore, which running a service needs; if it cannot, nothing is scheduled, and the stack
/// threads' drain ends at its limit with a failure that says so.
fn schedule(
    mut service: Service<'_>,
    stop: &AtomicBool,
    stopped_receiving: &AtomicUsize,
    threads: usize,
    progress: &[CachePadded<Progress>],
) -> Result<(), String> {
    let _lcore = eal::register_thread().map_err(|e| format!("scheduler thread: {e}"))?;
    let mut draining_since = None;
    loop {
        service.run_once();
        if !stop.load(Ordering::Relaxed) || stopped_receiving.load(Ordering::Acquire) < threads {
            continue;
        }
        let since = *draining_since.get_or_insert_with(Instant::now);
        if drained(progress) || since.elapsed() > DRAIN_LIMIT {
            return Ok(());
        }
    }
}

/// Whether every event enqueued so far has been dequeued (meaningful once nobody enqueues).
fn drained(progress: &[CachePadded<Progress>]) -> bool {
    let (e, d) = progress.iter().fold((0, 0), |(e, d), p| {
        (
            e + p.enqueued.load(Ordering::Acquire),
            d + p.dequeued.load(Ordering::Acquire),
        )
    });
    e == d
}

/// One stack thread's fixed context.
struct Stack<'a> {
    me: ThreadId,
    table: Arc<dyn FlowTable>,
    pool: &'a Arc<PacketPool>,
    stats: &'a EngineStats,
    progress: &'a [CachePadded<Progress>],
    thread_reta: Reta,
    flows: u32,
    sched: Sched,
    burst: usize,
    cache_size: u32,
    drain_limit: usize,
}

impl Stack<'_> {
    /// Receive, steer into events, dequeue and process, until `stop`; then drain.
    fn run<Q: QueuePair>(
        self,
        mut queue: Q,
        mut port: EventPort<'_>,
        stop: &AtomicBool,
        stopped_receiving: &AtomicUsize,
    ) -> ThreadCounts {
        let stats = self.stats.thread(usize::from(self.me));
        let sink = VerifyingSink::new(self.me, self.table.clone(), false);
        let mut cache = self.pool.cache(self.cache_size);
        let mut counts = ThreadCounts::default();
        let mut rx: Vec<PktBuf> = Vec::with_capacity(self.burst);
        let mut keyed: Vec<PktBuf> = Vec::with_capacity(self.burst);
        let mut keys: Vec<FlowKey> = Vec::with_capacity(self.burst);
        let mut hashes = vec![0u64; self.burst];
        let mut results = vec![Lookup::Miss; self.burst];
        let mut events: Vec<ffi::rte_event> = Vec::with_capacity(self.burst);
        let mut owners: Vec<ThreadId> = Vec::with_capacity(self.burst);
        let mut out =
            vec![ffi::rte_event::default(); self.drain_limit.min(usize::from(PORT_DEPTH))];
        let (mut local, mut handed) =
            (Vec::with_capacity(out.len()), Vec::with_capacity(out.len()));
        let progress = &self.progress[usize::from(self.me)];
        let mut mark = eal::tsc();
        let mut receiving = true;
        // The device refused part of the last burst: skip one receive (back-pressure).
        let mut backed_off = false;
        let mut draining_since = None;
        loop {
            if receiving && stop.load(Ordering::Relaxed) {
                receiving = false;
                stopped_receiving.fetch_add(1, Ordering::AcqRel);
            }
            stats.polls.add(1);
            let mut received = 0;
            if receiving && !std::mem::take(&mut backed_off) {
                received = queue.rx_burst(&mut cache, &mut rx, self.burst);
                if received > 0 {
                    counts.rx += received as u64;
                    stats.rx.add(received as u64);
                    self.owners(
                        &mut rx,
                        &mut keyed,
                        &mut keys,
                        &mut hashes,
                        &mut results,
                        &mut owners,
                        &mut events,
                        &mut cache,
                        stats,
                    );
                    Phases::lap(&mut counts.phases.receive, &mut mark);
                    backed_off = self.enqueue(
                        &mut port,
                        &mut events,
                        &owners,
                        &mut counts,
                        &mut cache,
                        stats,
                    );
                    progress.enqueued.store(counts.enqueued, Ordering::Release);
                }
            }
            let got = port.dequeue(&mut out);
            if got == 0 {
                port.maintain();
            }
            Phases::lap(&mut counts.phases.hand_over, &mut mark);
            for event in &out[..got] {
                // SAFETY: the event carries an mbuf a stack thread enqueued and gave up; the
                // device delivered it to this port alone, so this thread owns it now.
                match unsafe { from_mbuf(event_mbuf(event)) } {
                    Some(buf) if event_sub_type(event) == self.me as u8 => local.push(buf),
                    Some(buf) => handed.push(buf),
                    None => counts.unusable += 1,
                }
            }
            if !local.is_empty() {
                sink.consume(&mut local, Origin::Local, false, &mut cache, stats);
            }
            if !handed.is_empty() {
                sink.consume(&mut handed, Origin::Handoff, false, &mut cache, stats);
            }
            if got > 0 {
                progress.dequeued.fetch_add(got as u64, Ordering::Release);
                Phases::lap(&mut counts.phases.process, &mut mark);
            } else if received == 0 {
                stats.idle_polls.add(1);
                Phases::lap(&mut counts.phases.idle, &mut mark);
            }
            if !receiving
                && got == 0
                && stopped_receiving.load(Ordering::Acquire) >= self.progress.len()
            {
                let since = *draining_since.get_or_insert_with(Instant::now);
                if drained(self.progress) || since.elapsed() > DRAIN_LIMIT {
                    break;
                }
            }
        }
        self.table.remove_owner(self.me);
        counts
    }

    /// Classifies `rx` (drained), looks the keyed packets up in one bulk, and turns each packet
    /// into an event for its owner's queue (`events`, with the owners in `owners`); malformed
    /// frames and owners without a queue are freed and counted.
    #[allow(clippy::too_many_arguments)]
    fn owners(
        &self,
        rx: &mut Vec<PktBuf>,
        keyed: &mut Vec<PktBuf>,
        keys: &mut Vec<FlowKey>,
        hashes: &mut [u64],
        results: &mut [Lookup],
        owners: &mut Vec<ThreadId>,
        events: &mut Vec<ffi::rte_event>,
        cache: &mut PoolCache,
        stats: &ThreadStats,
    ) {
        keys.clear();
        owners.clear();
        events.clear();
        for pkt in rx.drain(..) {
            match wire::classify(pkt.data()) {
                Ok(Classified::Flow { tuple, .. }) if flow_key(&tuple).is_some() => {
                    keys.extend(flow_key(&tuple));
                    keyed.push(pkt);
                }
                // Unkeyed frames stay on the receiving thread, as under the engine's steering.
                Ok(_) => {
                    let flow = pkt.rss_hash();
                    self.push_event(pkt, self.me, flow, owners, events, cache, stats);
                }
                Err(err) => {
                    stats.count_malformed(&err);
                    cache.free(pkt);
                }
            }
        }
        let k = keyed.len();
        if k == 0 {
            return;
        }
        self.table
            .hash_lookup_bulk(keys, &mut hashes[..k], &mut results[..k]);
        for ((pkt, result), hash) in keyed.drain(..).zip(&results[..k]).zip(&hashes[..k]) {
            let owner = result
                .owner()
                .unwrap_or_else(|| self.thread_reta.queue(pkt.rss_hash()));
            let flow = (*hash % u64::from(self.flows)) as u32;
            self.push_event(pkt, owner, flow, owners, events, cache, stats);
        }
    }

    /// Appends `pkt` as an event of flow `flow` for `owner`'s queue; an owner the device has no
    /// queue for is counted (`owner_invalid`) and the packet freed.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn push_event(
        &self,
        pkt: PktBuf,
        owner: ThreadId,
        flow: u32,
        owners: &mut Vec<ThreadId>,
        events: &mut Vec<ffi::rte_event>,
        cache: &mut PoolCache,
        stats: &ThreadStats,
    ) {
        if usize::from(owner) >= self.progress.len() {
            stats.owner_invalid.add(1);
            cache.free(pkt);
            return;
        }
        let tag = pkt.rss_hash();
        let m = into_tagged_mbuf(pkt, tag);
        events.push(mbuf_event(
            owner as u8,
            flow % self.flows,
            self.sched,
            self.me as u8,
            m,
        ));
        owners.push(owner);
    }

    /// Enqueues `events` (cleared); what the device refuses is freed and counted as `swq_full`
    /// of its owner. Returns whether the device refused any.
    fn enqueue(
        &self,
        port: &mut EventPort<'_>,
        events: &mut Vec<ffi::rte_event>,
        owners: &[ThreadId],
        counts: &mut ThreadCounts,
        cache: &mut PoolCache,
        stats: &ThreadStats,
    ) -> bool {
        // Every event names a queue of the device (push_event checked), so None cannot come
        // back; were it to, nothing was taken and the loop below frees every packet.
        let taken = port.enqueue_new(events).unwrap_or(0);
        counts.enqueued += taken as u64;
        for &owner in &owners[..taken] {
            if owner != self.me {
                stats.handed_off[usize::from(owner)].add(1);
                counts.crossed += 1;
            }
        }
        for (event, &owner) in events[taken..].iter().zip(&owners[taken..]) {
            stats.swq_full[usize::from(owner)].add(1);
            // SAFETY: the device did not take this event, so its mbuf is still this thread's.
            // (An mbuf not in the pool's form is freed by DPDK instead; counted as swq_full all
            // the same.)
            if let Some(buf) = unsafe { from_mbuf(event_mbuf(event)) } {
                cache.free(buf);
            }
        }
        let refused = taken < events.len();
        events.clear();
        refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dpdk_peers::frames::listeners_for_test as listeners;

    fn delivers_to_the_owner_and_accounts_for_every_packet(device: Device, sched: Sched) {
        let Some(cfg) = listeners() else { return };
        let report = run(&cfg, device, sched, Duration::from_millis(200)).unwrap();
        report.assert_accounted();
        assert_eq!(
            report.misdirected, 0,
            "the owner's queue is the owner's port"
        );
        // listeners: about half of the packets arrive on the other thread's queue.
        assert!(
            report.crossed > report.handed / 4 && report.crossed < report.handed,
            "{} of {} crossed",
            report.crossed,
            report.handed
        );
    }

    #[test]
    fn event_dsw_atomic_delivers_to_the_owner_and_accounts_for_every_packet() {
        delivers_to_the_owner_and_accounts_for_every_packet(Device::Dsw, Sched::Atomic);
    }

    #[test]
    fn event_dsw_parallel_delivers_to_the_owner_and_accounts_for_every_packet() {
        delivers_to_the_owner_and_accounts_for_every_packet(Device::Dsw, Sched::Parallel);
    }

    #[test]
    fn event_sw_delivers_to_the_owner_and_accounts_for_every_packet() {
        delivers_to_the_owner_and_accounts_for_every_packet(Device::Sw, Sched::Atomic);
    }
}
