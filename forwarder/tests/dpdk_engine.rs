//! The engine suite's runs per profile and balancing mode on the DPDK data path: `port.driver =
//! "dpdk"` with the traffic generator, which runs the engine on a ring-backed ethdev (net_ring)
//! through `rte_eth_rx_burst` / `rte_eth_tx_burst` on mbufs of a DPDK mempool. No NIC and no root:
//! the EAL starts from the engine's default arguments (no huge pages, no PCI, no shared
//! configuration), once per test binary, and one engine runs at a time. Every run: conservation
//! exact, every generated frame received, no port drop, every mbuf back in the mempool.
#![cfg(feature = "dpdk")]

mod common;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use flowsteer_config::{Balance, Config, Driver, FaultKind, OnFailure, Profile};
use flowsteer_nic::port::{Port, PortControl, QueuePair};
use flowsteer_nic::rss::SoftRss;
use forwarder::engine::{flow_table, Engine};
use forwarder::ports::open_generated_dpdk;
use forwarder::report::RunReport;
use forwarder::traffic::TrafficPlan;

/// One engine (and one mempool) at a time: the EAL's memory is sized for one pool, and the
/// runs' rates mean something only without a neighbour on the two cores.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ENGINE: Mutex<()> = Mutex::new(());
    ENGINE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The engine suite's configuration on the ring-backed DPDK port.
fn config(profile: Profile, balance: Balance, threads: u16, queues: u16) -> Config {
    let mut cfg = common::generated::generated_config(profile, balance, threads, queues);
    cfg.port.driver = Driver::Dpdk;
    cfg
}

/// The CPUs the calling thread may run on: starting the EAL (in whichever test comes first)
/// leaves them as they were, or the stack threads spawned later would share one CPU.
fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn share(part: u64, whole: u64) -> f64 {
    part as f64 / whole.max(1) as f64
}

/// Runs `cfg` for `millis` on the ring-backed port and checks what every run must hold.
fn run_on_ring_port(cfg: &Config, millis: u64) -> RunReport {
    let _one = one_at_a_time();
    cfg.validate().expect("a valid configuration");
    let before = cpus();
    let engine = Engine::start(cfg, false).expect("the engine starts on the DPDK ring port");
    assert_eq!(cpus(), before, "the EAL left this thread's CPU set alone");
    let describe = engine.shared().port.describe();
    assert!(describe.contains("net_ring_fs"), "{describe}");
    let pool = engine.shared().pool.clone();
    std::thread::sleep(Duration::from_millis(millis));
    let report = engine.stop().expect("the engine stops");
    let table = report.render_table();
    assert!(
        report.conservation.ok,
        "{:?}\n{table}",
        report.conservation.failures
    );
    assert!(report.total.rx > 1000, "too little traffic:\n{table}");
    // Every generated frame went through the device's receive ring to a thread.
    let generated: u64 = report
        .traffic
        .iter()
        .map(|q| q.get("frames").copied().unwrap_or(0))
        .sum();
    assert_eq!(generated, report.total.rx, "{table}");
    for (queue, drops) in report.port_dropped.iter().enumerate() {
        assert!(
            drops.values().all(|&n| n == 0),
            "queue {queue}: {drops:?}\n{table}"
        );
    }
    assert_eq!(report.pool.available, report.pool.capacity, "{table}");
    // Every mempool (each queue's L1, the shared one) full again.
    assert!(
        pool.mempool().is_some(),
        "the port's pool is made of mempools"
    );
    for mempool in pool.mempools() {
        assert_eq!(mempool.available(), mempool.size(), "mbufs not back");
    }
    assert_eq!(report.flowtable.exact_rules, 0, "{table}");
    assert_eq!(report.flowtable.listen_rules, 0, "{table}");
    drop(pool);
    let ports = dpdk_sys::ethdev::ports().expect("the EAL runs");
    assert!(
        ports.is_empty(),
        "the ring device goes with the engine: {ports:?}"
    );
    report
}

/// Listeners under software balancing runs a mix of IPv6 and UDP frames too.
#[test]
fn every_profile_and_balancing_mode_runs_on_the_dpdk_ring_port() {
    for profile in [
        Profile::RssFriendly,
        Profile::Listeners,
        Profile::FewerQueues,
        Profile::Churn,
    ] {
        for balance in [Balance::Rss, Balance::Software] {
            let (threads, queues) = match profile {
                Profile::FewerQueues => (3, 2),
                _ => (2, 2),
            };
            let mut cfg = config(profile, balance, threads, queues);
            cfg.traffic.churn_rate = 20_000;
            let mixed = (profile, balance) == (Profile::Listeners, Balance::Software);
            if mixed {
                // Half IPv6, half UDP (found by listen rules), smaller frames.
                cfg.traffic.ipv6_share = 0.5;
                cfg.traffic.udp_share = 0.5;
                cfg.traffic.packet_size = 128;
            }
            let r = run_on_ring_port(&cfg, 400);
            let t = r.render_table();
            let what = format!("{profile} {balance}:\n{t}");
            let misdirected = share(r.total.misdirected, r.total.processed);
            let refused = r.total.dropped.get("swq_full").copied().unwrap_or(0);
            let handed = share(r.total.handed_off + refused, r.total.rx);
            match (profile, balance) {
                (Profile::RssFriendly, _) => {
                    assert_eq!(r.total.misdirected, 0, "{what}");
                    assert_eq!(r.total.handed_off, 0, "{what}");
                }
                (_, Balance::Software) => assert_eq!(r.total.misdirected, 0, "{what}"),
                (Profile::Listeners, Balance::Rss) => {
                    assert!((0.35..=0.65).contains(&misdirected), "{what}");
                    assert_eq!(r.total.handed_off, 0, "{what}");
                }
                (_, Balance::Rss) => assert!(r.total.misdirected > 0, "{what}"),
            }
            match (profile, balance) {
                (Profile::Listeners, Balance::Software) => {
                    assert!((0.35..=0.65).contains(&handed), "{what}");
                    assert!(mixed && r.total.lookups.listen_any > 0, "{what}");
                    assert_eq!(r.total.unverified, 0, "{what}");
                }
                (Profile::FewerQueues, Balance::Software) => {
                    assert_eq!(r.per_thread[2].rx, 0, "thread 2 has no queue: {what}");
                    assert!(r.per_thread[2].processed_handoff > 0, "{what}");
                }
                (Profile::FewerQueues, Balance::Rss) => {
                    assert_eq!(r.per_thread[2].processed(), 0, "{what}");
                }
                (Profile::Churn, Balance::Software) => {
                    assert!(r.total.flows_closed > 0, "{what}");
                }
                _ => {}
            }
        }
    }
}

/// The port itself: frames come out of `rx_burst` as a NIC delivers them, with the software
/// RSS hash of their flow (taken from the mbuf) and on the queue that RSS chooses; what a queue
/// sends is freed back into the mempool; nothing is left on the rings.
/// A stack thread that fails on the DPDK data path: its mbufs (in flight, queued for it) go
/// back to their mempools, under `restart` and under `redistribute` (the ring device has no
/// redirection table: the survivor polls the failed thread's queue).
#[test]
fn a_failed_threads_mbufs_go_back_to_their_mempools_under_restart_and_redistribute() {
    for on_failure in [OnFailure::Restart, OnFailure::Redistribute] {
        let mut cfg = config(Profile::Listeners, Balance::Software, 2, 2);
        cfg.flowtable.capacity = 65_536;
        cfg.engine.on_failure = on_failure;
        cfg.fault.kind = FaultKind::Panic;
        cfg.fault.thread = 1;
        cfg.fault.after_ms = 100;
        let report = run_on_ring_port(&cfg, 600);
        let table = report.render_table();
        assert_eq!(report.failures.len(), 1, "{on_failure}: {table}");
        let failure = &report.failures[0];
        assert!(failure.reclaimed_buffers > 0, "{on_failure}: {table}");
        match on_failure {
            OnFailure::Restart => assert_eq!(failure.restarts, 1, "{table}"),
            _ => assert!(
                failure
                    .last_reclaim
                    .contains("its queue polled by thread 0")
                    && !failure.last_reclaim.contains("redirected"),
                "{table}"
            ),
        }
    }
}

#[test]
fn the_ring_port_delivers_the_rss_hash_and_frees_what_it_sends() {
    let _one = one_at_a_time();
    let cfg = config(Profile::Listeners, Balance::Software, 2, 2);
    let port = &cfg.port;
    let rss = SoftRss::new(&port.rss_key.bytes(), port.reta_size, port.queues).expect("rss");
    let table = flow_table(&cfg);
    let plan = TrafficPlan::install(&cfg, &rss, &table).expect("the plan");
    let before = cpus();
    let port = open_generated_dpdk(&cfg, rss.clone(), plan).expect("the ring port");
    assert_eq!(cpus(), before, "the EAL left this thread's CPU set alone");
    assert!(port.rss().is_some(), "the generator's spread is known");
    let pool = port.buffers().expect("the port brings its pool");
    let mut cache = pool.cache(64);
    for queue in 0..2 {
        let mut q = port.take_queue(queue).expect("queue");
        let mut frames = Vec::new();
        let got = q.rx_burst(&mut cache, &mut frames, 48);
        assert_eq!(got, 48, "a source fills a whole burst");
        for frame in &frames {
            let (hash, on) = rss.queue_of(frame.data());
            assert_ne!(hash, 0);
            assert_eq!(frame.rss_hash(), hash, "the hash comes with the mbuf");
            assert_eq!(on, queue, "RSS delivers the flow to this queue");
        }
        let sent = q.tx_burst(&mut cache, &mut frames);
        assert_eq!((sent, frames.len()), (48, 0));
    }
    assert!(port
        .take_queue(2)
        .err()
        .expect("no third queue")
        .to_string()
        .contains("queue 2"));
    drop(cache);
    assert_eq!(
        port.reclaim(&mut pool.cache(0)),
        0,
        "nothing left on the rings"
    );
    assert!(pool.mempool().is_some(), "a pool of mempools");
    for mempool in pool.mempools() {
        assert_eq!(mempool.available(), mempool.size(), "every mbuf back");
    }
}

#[test]
fn more_queues_than_the_ring_driver_takes_is_an_error_naming_the_key() {
    let _one = one_at_a_time();
    let mut cfg = config(Profile::Listeners, Balance::Software, 17, 17);
    cfg.port.reta_size = 128;
    cfg.pool.buffers = 131072;
    let error = Engine::start(&cfg, false)
        .err()
        .expect("17 queues refused")
        .to_string();
    assert!(
        error.contains("port.queues: the traffic generator's DPDK ring device takes at most 16"),
        "{error}"
    );
}

/// The binary as the README runs it: the example configuration, the EAL started from the
/// defaults and cleaned up at exit, conservation exact, every mbuf back, no runtime directory
/// left behind.
#[test]
fn the_binary_runs_the_generator_on_the_dpdk_port_and_leaves_nothing_behind() {
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/dpdk-listeners.toml"
    );
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_flowsteer"))
        .args(["run", "--duration", "1", "--config", config])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("flowsteer starts");
    let prefix = format!("flowsteer-ports-{}", child.id());
    let out = child.wait_with_output().expect("flowsteer ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("2 dpdk queues"), "{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("conservation:") && l.ends_with(": ok")),
        "{stdout}"
    );
    assert!(
        stdout.contains("pool: 16384 of 16384 buffers free after shutdown"),
        "{stdout}"
    );
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").map_or("/tmp".into(), PathBuf::from);
    for base in [PathBuf::from("/var/run/dpdk"), runtime.join("dpdk")] {
        assert!(
            !base.join(&prefix).exists(),
            "{}",
            base.join(&prefix).display()
        );
    }
}
