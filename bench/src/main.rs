//! `flowsteer-bench`: runs experiments and prints one table each.
//!
//! `engine`: packets per second per thread for RSS and software balancing on every traffic profile,
//! each run on the same machine in the same process, one after the other. The ratio column compares
//! software balancing with RSS on the same profile. The comparisons against DPDK's rte_hash and
//! rte_ring, dashmap, crossbeam and the ltran-style dispatcher are planned work.

use std::process::ExitCode;
use std::time::Duration;

use flowsteer_config::{Balance, Config, Profile};
use forwarder::engine::{run, RunOptions};

fn usage() -> ExitCode {
    eprintln!("usage: flowsteer-bench engine [--seconds S] [--threads N]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(experiment) = args.first() else {
        return usage();
    };
    let mut seconds = 3.0f64;
    let mut threads: u16 = 2;
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let value = rest.next();
        match (flag.as_str(), value.map(|v| v.parse::<f64>())) {
            ("--seconds", Some(Ok(s))) if s > 0.0 && s <= 3600.0 => seconds = s,
            ("--threads", Some(Ok(n))) if (1.0..=64.0).contains(&n) && n.fract() == 0.0 => {
                threads = n as u16
            }
            _ => return usage(),
        }
    }
    match experiment.as_str() {
        "engine" => engine(seconds, threads),
        _ => usage(),
    }
}

fn engine(seconds: f64, threads: u16) -> ExitCode {
    let frame_bytes = Config::default().traffic.packet_size;
    println!(
        "engine: {threads} stack threads, {seconds} s per run, uveth + traffic generator, {frame_bytes}-byte frames"
    );
    if threads > 2 {
        println!("note: more busy threads than this machine's 2 cores: these rates measure the scheduler too");
    }
    println!(
        "{:<13} {:<9} {:>7} {:>14} {:>10} {:>11} {:>9} {:>8}",
        "profile",
        "balance",
        "queues",
        "Mpps/thread",
        "handoff%",
        "misdirect%",
        "dropped",
        "sw/rss"
    );
    let mut ok = true;
    for profile in [
        Profile::RssFriendly,
        Profile::Listeners,
        Profile::FewerQueues,
        Profile::Churn,
    ] {
        let queues = if profile == Profile::FewerQueues {
            (threads - 1).max(1)
        } else {
            threads
        };
        if profile == Profile::FewerQueues && threads < 2 {
            continue;
        }
        let mut rss_rate = None;
        for balance in [Balance::Rss, Balance::Software] {
            let mut cfg = Config::default();
            cfg.engine.threads = threads;
            cfg.port.queues = queues;
            cfg.engine.balance = balance;
            cfg.traffic.profile = profile;
            cfg.traffic.flows = 4096;
            cfg.metrics.enabled = false;
            let report = match run(&cfg, RunOptions::quiet(Duration::from_secs_f64(seconds))) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{profile} {balance}: {e}");
                    ok = false;
                    continue;
                }
            };
            if !report.conservation.ok {
                eprintln!(
                    "{profile} {balance}: conservation failed: {:?}",
                    report.conservation.failures
                );
                ok = false;
            }
            let t = &report.total;
            let per_thread = t.processed as f64 / report.duration_secs / f64::from(threads) / 1e6;
            let pct = |x: u64, of: u64| 100.0 * x as f64 / of.max(1) as f64;
            let ratio = match (balance, rss_rate) {
                (Balance::Rss, _) => {
                    rss_rate = Some(per_thread);
                    "-".to_string()
                }
                (Balance::Software, Some(r)) => format!("{:.2}", per_thread / r),
                (Balance::Software, None) => "n/a".to_string(),
            };
            println!(
                "{:<13} {:<9} {:>7} {:>14.3} {:>10.1} {:>11.1} {:>9} {:>8}",
                profile.to_string(),
                balance.to_string(),
                queues,
                per_thread,
                pct(t.handed_off, t.rx),
                pct(t.misdirected, t.processed),
                t.dropped_total,
                ratio
            );
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
