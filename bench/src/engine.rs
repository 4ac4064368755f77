//! `engine`: packets per second per stack thread for RSS and software balancing on every traffic
//! profile, each run in the same process one after the other, and the ltran-style baseline
//! ([`crate::ltran`]) on `listeners`, the profile where half the packets change threads.
//!
//! Each row names the flow table and ring implementation it ran with (the configuration's
//! defaults). Conservation (`rx == processed + dropped`, per thread and in total, pool back to
//! full) is checked on every run; a failure is printed and makes the command fail.

use std::thread;
use std::time::Duration;

use flowsteer_config::{Balance, Config, Profile};
use forwarder::engine::{run as run_engine, RunOptions};

use crate::ltran;
use crate::table::{num, Align, Table};
use crate::Options;

/// Traffic flows of every run.
const FLOWS: u32 = 4096;

/// Whether `threads` stack threads get a core each (pinned to cores 0..threads), as in production.
fn pinned(threads: u16) -> bool {
    usize::from(threads) <= thread::available_parallelism().map_or(1, |n| n.get())
}

fn config(threads: u16, queues: u16, profile: Profile, balance: Balance) -> Config {
    let mut cfg = Config::default();
    if pinned(threads) {
        cfg.engine.cores = (0..threads).collect();
    }
    cfg.engine.threads = threads;
    cfg.port.queues = queues;
    cfg.engine.balance = balance;
    cfg.traffic.profile = profile;
    cfg.traffic.flows = FLOWS;
    cfg.metrics.enabled = false;
    cfg
}

/// Runs the experiment and prints its tables.
pub fn run(opts: &Options) -> Result<(), String> {
    let threads = opts.threads;
    let seconds = opts.seconds;
    let defaults = Config::default();
    let frame_bytes = defaults.traffic.packet_size;
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let mut table = Table::new(
        format!(
            "engine: {threads} stack threads, {seconds} s per run, uveth + traffic generator, {frame_bytes}-byte frames"
        ),
        &[
            ("profile", Align::Left),
            ("balance", Align::Left),
            ("table", Align::Left),
            ("ring", Align::Left),
            ("queues", Align::Right),
            ("Mpps/thread", Align::Right),
            ("handoff%", Align::Right),
            ("misdirect%", Align::Right),
            ("dropped", Align::Right),
            ("sw/rss", Align::Right),
        ],
    );
    let placement = if pinned(threads) {
        format!("stack thread i pinned to core i of {cores}")
    } else {
        format!("threads unpinned on {cores} cores")
    };
    table.describe(format!(
        "{FLOWS} flows; {placement}, idle = spin; Mpps/thread = processed / s / stack threads"
    ));
    if usize::from(threads) > cores {
        table.describe(format!(
            "more busy threads than this machine's {cores} cores: these rates measure the scheduler too"
        ));
    }
    let mut failures = Vec::new();
    let mut software_listeners = None;
    let mut software_rss_friendly = None;
    for profile in [
        Profile::RssFriendly,
        Profile::Listeners,
        Profile::FewerQueues,
        Profile::Churn,
    ] {
        if profile == Profile::FewerQueues && threads < 2 {
            table.note("fewer-queues: skipped, needs at least 2 stack threads");
            continue;
        }
        let queues = if profile == Profile::FewerQueues {
            threads - 1
        } else {
            threads
        };
        let mut rss_rate = None;
        for balance in [Balance::Rss, Balance::Software] {
            let cfg = config(threads, queues, profile, balance);
            let report = match run_engine(&cfg, RunOptions::quiet(Duration::from_secs_f64(seconds)))
            {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{profile} {balance}: {e}"));
                    continue;
                }
            };
            if !report.conservation.ok {
                failures.push(format!(
                    "{profile} {balance}: conservation failed: {:?}",
                    report.conservation.failures
                ));
            }
            let t = &report.total;
            let mpps = t.processed as f64 / report.duration_secs / 1e6;
            let per_thread = mpps / f64::from(threads);
            let pct = |x: u64, of: u64| 100.0 * x as f64 / of.max(1) as f64;
            let ratio = match (balance, rss_rate) {
                (Balance::Rss, _) => {
                    rss_rate = Some(per_thread);
                    "-".to_string()
                }
                (Balance::Software, Some(r)) => num(per_thread / r, 2),
                (Balance::Software, None) => "n/a".to_string(),
            };
            if profile == Profile::Listeners && balance == Balance::Software {
                software_listeners = Some((mpps, report.conservation.ok));
            }
            if profile == Profile::RssFriendly && balance == Balance::Software {
                software_rss_friendly = Some(mpps);
            }
            table.row(vec![
                profile.to_string(),
                balance.to_string(),
                report.flowtable.implementation.clone(),
                cfg.swq.ring.to_string(),
                queues.to_string(),
                num(per_thread, 3),
                num(pct(t.handed_off, t.rx), 1),
                num(pct(t.misdirected, t.processed), 1),
                t.dropped_total.to_string(),
                ratio,
            ]);
        }
    }
    if let (Some((listeners, _)), Some(friendly)) = (software_listeners, software_rss_friendly) {
        table.note(format!(
            "software balancing, listeners (half handed off) / rss-friendly (none handed off): {}",
            num(listeners / friendly, 2)
        ));
    }
    table.note(format!(
        "conservation (rx = processed + dropped per thread and in total, pool full): {}",
        if failures.is_empty() {
            "ok on every run".to_string()
        } else {
            format!("FAILED: {}", failures.join("; "))
        }
    ));
    table.print();

    let ltran_ok = baseline(opts, software_listeners)?;
    if failures.is_empty() && ltran_ok {
        Ok(())
    } else {
        Err("conservation failed (see the notes under the tables)".to_string())
    }
}

/// The ltran-style baseline on `listeners`, against the software run of the table above.
/// Returns whether its conservation check held.
fn baseline(opts: &Options, software: Option<(f64, bool)>) -> Result<bool, String> {
    let threads = opts.threads;
    let cfg = config(threads, threads, Profile::Listeners, Balance::Software);
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let mut table = Table::new(
        format!(
            "engine vs ltran-style baseline: listeners, {threads} stack threads, {} s per run",
            opts.seconds
        ),
        &[
            ("design", Align::Left),
            ("table", Align::Left),
            ("ring", Align::Left),
            ("threads", Align::Left),
            ("Mpps", Align::Right),
            ("Mpps/stack", Align::Right),
            ("misdirect%", Align::Right),
            ("dropped", Align::Right),
            ("software/this", Align::Right),
        ],
    );
    table.describe(format!(
        "ltran: 1 dispatcher receives all {threads} queues, looks up, copies each packet, frees the original \
         and passes the copy over a single-producer ring to its owner"
    ));
    table.describe(format!(
        "{cores} cores: software = {threads} stack threads, placed as above, spinning when idle; \
         ltran = 1 dispatcher + {threads} stack threads, placed as the note below says"
    ));
    table.describe("ratio = software Mpps / this row's Mpps, >1 = the software engine faster");
    let software_mpps = software.map(|(mpps, _)| mpps);
    if let Some(mpps) = software_mpps {
        table.row(vec![
            "software".to_string(),
            ltran::table_impl(&cfg)?.name().to_string(),
            ltran::ring_kind(&cfg)?.name().to_string(),
            format!("{threads} stack"),
            num(mpps, 3),
            num(mpps / f64::from(threads), 3),
            "(above)".to_string(),
            "(above)".to_string(),
            "-".to_string(),
        ]);
    } else {
        table.note("software run on listeners: did not complete (see the engine table)");
    }
    let report = ltran::run(&cfg, Duration::from_secs_f64(opts.seconds))?;
    let mpps = report.mpps();
    table.row(vec![
        "ltran-style".to_string(),
        ltran::table_impl(&cfg)?.name().to_string(),
        ltran::ring_kind(&cfg)?.name().to_string(),
        format!("1 dispatcher + {threads} stack"),
        num(mpps, 3),
        num(mpps / f64::from(threads), 3),
        num(
            100.0 * report.misdirected as f64 / report.processed.max(1) as f64,
            1,
        ),
        report.dropped_total().to_string(),
        software_mpps.map_or("n/a".to_string(), |s| num(s / mpps.max(1e-12), 2)),
    ]);
    let drops: Vec<String> = report
        .dropped
        .iter()
        .map(|(r, n)| format!("{r}={n}"))
        .collect();
    table.note(format!("ltran placement: {}", report.placement));
    table.note(format!(
        "ltran conservation: rx {} = processed {} + dropped {}{}; {} copied and handed off; pool {} of {} free: {}",
        report.rx,
        report.processed,
        report.dropped_total(),
        if drops.is_empty() {
            String::new()
        } else {
            format!(" ({})", drops.join(" "))
        },
        report.handed_off,
        report.pool.0,
        report.pool.1,
        if report.failures.is_empty() {
            "ok".to_string()
        } else {
            format!("FAILED: {}", report.failures.join("; "))
        }
    ));
    table.print();
    Ok(report.failures.is_empty())
}
