//! `lcore-cache`: what the per-lcore caches of the DPDK port's mempools buy. One thread receives
//! bursts of 32 from a `net_null` device (whose receive allocates the mbufs in bulk from the
//! queue's mempool) and sends them straight back (its transmit frees each mbuf with
//! `rte_pktmbuf_free`, to its mempool), through `DpdkPort` over a pool split as the engine
//! splits it. Three ways, alternating, five rounds:
//! - `lcore cache 64`: the thread registered as an EAL lcore (`PortControl::enter_thread`), the
//!   mempools with per-lcore caches of 64 (what the engine does);
//! - `lcore, no cache`: registered, mempools without per-lcore caches;
//! - `not registered`: a thread without an lcore id (as before the stack threads registered):
//!   every driver allocation and free goes to the mempool's ring.
//!
//! ```text
//! cargo run --release -p flowsteer-bench --features dpdk --bin lcore-cache -- [seconds]
//! ```
//!
//! Needs root (the EAL); runs without huge pages. After every run every mbuf must be back.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dpdk_sys::{eal, ethdev};
use flowsteer_nic::dpdk::DpdkPort;
use flowsteer_nic::pool::{PacketPool, Tier, Tiers};
use flowsteer_nic::port::{Port, PortControl, QueuePair};

const DEVICE: &str = "net_null0";
const BURST: usize = 32;
const ROUNDS: usize = 5;
const WAYS: [(&str, bool, u32); 3] = [
    ("lcore cache 64", true, 64),
    ("lcore, no cache", true, 0),
    ("not registered", false, 64),
];

fn main() -> ExitCode {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let args = [
        "--no-huge",
        "--no-pci",
        "--no-shconf",
        "--no-telemetry",
        "-m",
        "512",
        "-l",
        "0",
        "--log-level=error",
    ]
    .map(str::to_owned)
    .into_iter()
    .chain([
        format!("--vdev={DEVICE}"),
        format!("--file-prefix=lcore-cache-{}", std::process::id()),
    ]);
    if let Err(e) = eal::init(args) {
        eprintln!("lcore-cache: the EAL did not start: {e}");
        return ExitCode::from(1);
    }
    // With --no-shconf the EAL leaves its runtime directory empty and never uses it again.
    if let Some(dir) = eal::runtime_dir() {
        let _ = std::fs::remove_dir(dir);
    }
    let port = match ethdev::port_by_name(DEVICE) {
        Ok(port) => port,
        Err(e) => {
            eprintln!("lcore-cache: {e}");
            return ExitCode::from(1);
        }
    };
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); WAYS.len()];
    for round in 0..ROUNDS {
        for (way, &(_, register, lcore_cache)) in WAYS.iter().enumerate() {
            match run(
                port,
                round * WAYS.len() + way,
                register,
                lcore_cache,
                seconds,
            ) {
                Ok(rate) => rates[way].push(rate),
                Err(e) => {
                    eprintln!("lcore-cache: {}: {e}", WAYS[way].0);
                    return ExitCode::from(1);
                }
            }
        }
    }
    println!(
        "lcore-cache: {DEVICE} rx burst {BURST} -> tx, one thread, {seconds} s per run, \
         median of {ROUNDS} alternating runs"
    );
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let base = median(&mut rates[0].clone());
    for ((name, _, _), rates) in WAYS.iter().zip(&mut rates) {
        let m = median(rates);
        println!(
            "  {name:<16} {m:>7.2} Mpps  (runs {:.2?})  registered-with-cache / this = {:.2}",
            rates,
            base / m
        );
    }
    ExitCode::SUCCESS
}

/// One run: a fresh pool (named after `n`), the port started on it, the loop for `seconds`.
fn run(port: u16, n: usize, register: bool, lcore_cache: u32, seconds: f64) -> Result<f64, String> {
    let tiers = Tiers {
        queues: 1,
        per_queue: 8192,
        shared: 2048,
        low_watermark: 512,
    };
    let pool = PacketPool::with_mbufs_tiered(&format!("lc{n}"), &tiers, 2048, lcore_cache)
        .map_err(|e| e.to_string())?;
    let port = Arc::new(DpdkPort::open(port, 1, 1024, pool.clone()).map_err(|e| e.to_string())?);
    let worker = {
        let (port, pool) = (port.clone(), pool.clone());
        std::thread::spawn(move || -> Result<f64, String> {
            let _hold = if register {
                Some(port.enter_thread()?)
            } else {
                None
            };
            let mut cache = pool.cache_for(Tier::Queue(0), 256);
            let mut queue = port.take_queue(0).map_err(|e| e.to_string())?;
            let (mut rx, mut sent) = (Vec::with_capacity(BURST), 0u64);
            let started = Instant::now();
            let until = started + Duration::from_secs_f64(seconds);
            while Instant::now() < until {
                for _ in 0..64 {
                    queue.rx_burst(&mut cache, &mut rx, BURST);
                    sent += queue.tx_burst(&mut cache, &mut rx) as u64;
                    cache.free_bulk(&mut rx);
                }
            }
            Ok(sent as f64 / started.elapsed().as_secs_f64() / 1e6)
        })
    };
    let rate = worker
        .join()
        .map_err(|_| "the thread panicked".to_owned())??;
    let mut cache = pool.cache(0);
    port.reclaim(&mut cache);
    drop(cache);
    drop(port);
    let full = pool.segments().iter().all(|s| s.available == s.capacity);
    if !full {
        return Err(format!(
            "mbufs missing after the run: {:?}",
            pool.segments()
        ));
    }
    Ok(rate)
}
