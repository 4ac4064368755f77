//! `engine`: packets per second per stack thread for RSS and software balancing on every traffic
//! profile, each run in the same process one after the other, and the ltran-style baseline
//! ([`crate::ltran`]) on `listeners`, the profile where half the packets change threads.
//!
//! With the `dpdk` feature the same rows run a second time on the DPDK data path: the engine with
//! `port.driver = "dpdk"`, the generator feeding a ring-backed ethdev (`rte_eth_from_rings`) whose
//! queues the threads poll with `rte_eth_rx_burst` on mbufs. Its rows alternate with uveth's in
//! every round, and the notes give the DPDK port's software/rss-friendly ratio and its cost
//! against uveth (`balance = "rss"` on both: the port's own work, no steering).
//!
//! Each row names the flow table and ring implementation it ran with: the engine's, which has one
//! of each (the baselines are measured by `flowtable` and `swq`). Conservation (`rx == processed + dropped`, per thread and in total, pool back to
//! full) is checked on every run; a failure is printed and makes the command fail.

use std::thread;
use std::time::Duration;

use flowsteer_config::{Balance, Config, Driver, Profile};
use forwarder::engine::Engine;

use crate::measure::{Summary, REPS};
use crate::table::{num, Align, Table};
use crate::window::{Counts, Window, WARMUP};
use crate::Options;
use crate::{competitors, flow_table, ltran, swq};

/// Traffic flows of every run.
const FLOWS: u32 = 4096;

/// Whether `threads` stack threads get a core each (pinned to cores 0..threads), as in production.
fn pinned(threads: u16) -> bool {
    usize::from(threads) <= thread::available_parallelism().map_or(1, |n| n.get())
}

/// The port the engine runs on: both fed by the traffic generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PortKind {
    /// The user-space veth.
    Uveth,
    /// The ring-backed DPDK ethdev (`port.driver = "dpdk"` with a traffic profile).
    DpdkRing,
}

impl PortKind {
    fn name(self) -> &'static str {
        match self {
            PortKind::Uveth => "uveth",
            PortKind::DpdkRing => "dpdk-ring",
        }
    }

    fn driver(self) -> Driver {
        match self {
            PortKind::Uveth => Driver::Uveth,
            PortKind::DpdkRing => Driver::Dpdk,
        }
    }
}

fn config(port: PortKind, threads: u16, queues: u16, profile: Profile, balance: Balance) -> Config {
    let mut cfg = Config::default();
    cfg.port.driver = port.driver();
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

/// One row of the engine table.
struct Point {
    port: PortKind,
    profile: Profile,
    balance: Balance,
    queues: u16,
    config: Config,
    /// The measured window of every repetition that completed.
    windows: Vec<Window>,
}

impl Point {
    /// Processed packets per second of all stack threads: median and spread over the
    /// repetitions.
    fn summary(&self, threads: u16) -> Option<Summary> {
        let rates: Vec<f64> = self.windows.iter().map(|w| w.mpps() * 1e6).collect();
        Summary::from_rates(&rates, usize::from(threads))
    }

    /// The counts of all windows together.
    fn counts(&self) -> Counts {
        self.windows
            .iter()
            .fold(Counts::default(), |sum, w| Counts {
                rx: sum.rx + w.counts.rx,
                processed: sum.processed + w.counts.processed,
                handed_off: sum.handed_off + w.counts.handed_off,
                misdirected: sum.misdirected + w.counts.misdirected,
                dropped: sum.dropped + w.counts.dropped,
            })
    }
}

/// Starts the engine on `config`, measures a window after the warm-up, stops it and checks
/// conservation over the whole run.
fn measure_run(config: &Config, seconds: f64) -> Result<Window, String> {
    let engine = Engine::start(config, false).map_err(|e| e.to_string())?;
    let window = Window::measure(&engine.shared().stats, Duration::from_secs_f64(seconds));
    let report = engine.stop().map_err(|e| e.to_string())?;
    if report.conservation.ok {
        Ok(window)
    } else {
        Err(format!(
            "conservation failed: {:?}",
            report.conservation.failures
        ))
    }
}

/// The ports to measure: uveth, and the DPDK ring port when this build has DPDK and its EAL
/// starts (else why not, for a note).
fn ports() -> (Vec<PortKind>, Option<String>) {
    if !cfg!(feature = "dpdk") {
        return (vec![PortKind::Uveth], None);
    }
    match competitors::dpdk_ready() {
        Ok(()) => (vec![PortKind::Uveth, PortKind::DpdkRing], None),
        Err(why) => (
            vec![PortKind::Uveth],
            Some(format!("the DPDK ring port: skipped, {why}")),
        ),
    }
}

/// Runs the experiment and prints its tables.
pub fn run(opts: &Options) -> Result<(), String> {
    let threads = opts.threads;
    let seconds = opts.seconds;
    let defaults = Config::default();
    let frame_bytes = defaults.traffic.packet_size;
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let (ports, dpdk_skipped) = ports();
    let with_dpdk = ports.contains(&PortKind::DpdkRing);
    let mut columns = vec![
        ("port", Align::Left),
        ("profile", Align::Left),
        ("balance", Align::Left),
        ("table", Align::Left),
        ("ring", Align::Left),
        ("queues", Align::Right),
        ("Mpps/thread", Align::Right),
        ("spread%", Align::Right),
        ("handoff%", Align::Right),
        ("misdirect%", Align::Right),
        ("dropped", Align::Right),
        ("sw/rss", Align::Right),
    ];
    if with_dpdk {
        columns.push(("/uveth", Align::Right));
    }
    let port_names: Vec<&str> = ports.iter().map(|p| p.name()).collect();
    let mut table = Table::new(
        format!(
            "engine: {threads} stack threads, {} + traffic generator, {frame_bytes}-byte frames, \
             median of {REPS} runs per row",
            port_names.join(" and ")
        ),
        &columns,
    );
    let placement = if pinned(threads) {
        format!("stack thread i pinned to core i of {cores}")
    } else {
        format!("threads unpinned on {cores} cores")
    };
    table.describe(format!(
        "{FLOWS} flows; {placement}, idle = spin; Mpps/thread = processed / s / stack threads"
    ));
    table.describe(format!(
        "each run: start, {} ms warm-up, a {seconds} s window on the threads' counters, stop; \
         the rows' runs alternate ({REPS} rounds of every row) so that a slow spell of the \
         machine does not land on one row",
        WARMUP.as_millis()
    ));
    table.describe(
        "handoff%, misdirect% and dropped: all windows of the row together; spread% = (max - min) / median",
    );
    if with_dpdk {
        table.describe(format!(
            "dpdk-ring: port.driver = \"dpdk\", the generator feeding a ring-backed ethdev \
             (rte_eth_from_rings), rte_eth_rx_burst on mbufs ({}); /uveth = this row's Mpps / \
             the uveth row of the same profile and balance",
            competitors::dpdk_memory().unwrap_or("EAL memory unknown")
        ));
    }
    if usize::from(threads) > cores {
        table.describe(format!(
            "more busy threads than this machine's {cores} cores: these rates measure the scheduler too"
        ));
    }
    if let Some(skipped) = dpdk_skipped {
        table.note(skipped);
    }
    let mut points = Vec::new();
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
        for &port in &ports {
            for balance in [Balance::Rss, Balance::Software] {
                points.push(Point {
                    port,
                    profile,
                    balance,
                    queues,
                    config: config(port, threads, queues, profile, balance),
                    windows: Vec::with_capacity(REPS),
                });
            }
        }
    }
    let mut failures = Vec::new();
    for _ in 0..REPS {
        for point in &mut points {
            match measure_run(&point.config, seconds) {
                Ok(window) => point.windows.push(window),
                Err(e) => failures.push(format!(
                    "{} {} {}: {e}",
                    point.port.name(),
                    point.profile,
                    point.balance
                )),
            }
        }
    }
    let find = |port: PortKind, profile: Profile, balance: Balance| {
        points
            .iter()
            .find(|p| p.port == port && p.profile == profile && p.balance == balance)
    };
    let ratio_cell = |a: Option<Summary>, b: Option<Summary>| match (a, b) {
        (Some(a), Some(b)) => num(a.ops_per_sec / b.ops_per_sec, 2),
        _ => "n/a".to_string(),
    };
    for point in &points {
        let summary = point.summary(threads);
        let ratio = match point.balance {
            Balance::Rss => "-".to_string(),
            Balance::Software => ratio_cell(
                summary,
                find(point.port, point.profile, Balance::Rss).and_then(|p| p.summary(threads)),
            ),
        };
        let counts = point.counts();
        let mut cells = vec![
            point.port.name().to_string(),
            point.profile.to_string(),
            point.balance.to_string(),
            flow_table::ours_name().to_string(),
            swq::ours_name().to_string(),
            point.queues.to_string(),
            summary.map_or("n/a".to_string(), |s| num(s.mops() / f64::from(threads), 3)),
            summary.map_or("n/a".to_string(), |s| num(s.spread_pct(), 0)),
            num(Window::percent(counts.handed_off, counts.rx), 1),
            num(Window::percent(counts.misdirected, counts.processed), 1),
            counts.dropped.to_string(),
            ratio,
        ];
        if with_dpdk {
            cells.push(match point.port {
                PortKind::Uveth => "-".to_string(),
                PortKind::DpdkRing => ratio_cell(
                    summary,
                    find(PortKind::Uveth, point.profile, point.balance)
                        .and_then(|p| p.summary(threads)),
                ),
            });
        }
        table.row(cells);
    }
    for &port in &ports {
        let software = |profile| find(port, profile, Balance::Software);
        if let (Some(listeners), Some(friendly)) =
            (software(Profile::Listeners), software(Profile::RssFriendly))
        {
            if let Some(line) = paired_ratio(listeners, friendly, threads) {
                table.note(format!(
                    "{}: software balancing, listeners (half handed off) / rss-friendly (none \
                     handed off): {line}",
                    port.name()
                ));
            }
        }
    }
    if with_dpdk {
        for profile in [Profile::Listeners, Profile::RssFriendly] {
            let pair = (
                find(PortKind::DpdkRing, profile, Balance::Rss),
                find(PortKind::Uveth, profile, Balance::Rss),
            );
            if let (Some(dpdk), Some(uveth)) = pair {
                if let Some(line) = paired_ratio(dpdk, uveth, threads) {
                    table.note(format!(
                        "the DPDK ring port's own cost, balance = rss on {profile}: dpdk-ring / \
                         uveth {line}"
                    ));
                }
            }
        }
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

    let software_mpps = find(PortKind::Uveth, Profile::Listeners, Balance::Software)
        .and_then(|p| p.summary(threads));
    let ltran_ok = baseline(opts, software_mpps)?;
    if failures.is_empty() && ltran_ok {
        Ok(())
    } else {
        Err("conservation failed (see the notes under the tables)".to_string())
    }
}

/// `a`'s median rate over `b`'s, and the range of the rounds' own ratios (the same round's two
/// runs, one after the other: how far a single pair can mislead); `None` when either has no
/// completed run.
fn paired_ratio(a: &Point, b: &Point, threads: u16) -> Option<String> {
    let (sa, sb) = (a.summary(threads)?, b.summary(threads)?);
    let paired: Vec<f64> = a
        .windows
        .iter()
        .zip(&b.windows)
        .map(|(a, b)| a.mpps() / b.mpps().max(1e-12))
        .collect();
    let low = paired.iter().copied().fold(f64::INFINITY, f64::min);
    let high = paired.iter().copied().fold(0.0, f64::max);
    Some(format!(
        "{} (medians); the {} rounds' own ratios {}..{}",
        num(sa.ops_per_sec / sb.ops_per_sec, 2),
        paired.len(),
        num(low, 2),
        num(high, 2)
    ))
}

/// The ltran-style baseline on `listeners`, against the software runs of the table above
/// (`software`: their median, all stack threads together). Returns whether its conservation
/// check held on every run.
fn baseline(opts: &Options, software: Option<Summary>) -> Result<bool, String> {
    let threads = opts.threads;
    let cfg = config(
        PortKind::Uveth,
        threads,
        threads,
        Profile::Listeners,
        Balance::Software,
    );
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let mut table = Table::new(
        format!(
            "engine vs ltran-style baseline: listeners, {threads} stack threads, median of {REPS} runs"
        ),
        &[
            ("design", Align::Left),
            ("table", Align::Left),
            ("ring", Align::Left),
            ("threads", Align::Left),
            ("Mpps", Align::Right),
            ("Mpps/stack", Align::Right),
            ("spread%", Align::Right),
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
    table.describe(format!(
        "each run measured as the engine's: {} ms warm-up, then a {} s window on the stack threads' counters",
        WARMUP.as_millis(),
        opts.seconds
    ));
    table.describe("ratio = software Mpps / this row's Mpps, >1 = the software engine faster");
    let table_name = flow_table::ours_name().to_string();
    let ring_name = swq::ours_name().to_string();
    if let Some(s) = software {
        table.row(vec![
            "software".to_string(),
            table_name.clone(),
            ring_name.clone(),
            format!("{threads} stack"),
            num(s.mops(), 3),
            num(s.mops() / f64::from(threads), 3),
            num(s.spread_pct(), 0),
            "(above)".to_string(),
            "(above)".to_string(),
            "-".to_string(),
        ]);
    } else {
        table.note("software runs on listeners: did not complete (see the engine table)");
    }
    let reports = (0..REPS)
        .map(|_| ltran::run(&cfg, Duration::from_secs_f64(opts.seconds)))
        .collect::<Result<Vec<_>, _>>()?;
    let rates: Vec<f64> = reports.iter().map(|r| r.mpps() * 1e6).collect();
    let summary = Summary::from_rates(&rates, usize::from(threads));
    let sum = |field: fn(&ltran::LtranReport) -> u64| reports.iter().map(field).sum::<u64>();
    let (processed, misdirected) = (sum(|r| r.processed), sum(|r| r.misdirected));
    table.row(vec![
        "ltran-style".to_string(),
        table_name,
        ring_name,
        format!("1 dispatcher + {threads} stack"),
        summary.map_or("n/a".to_string(), |s| num(s.mops(), 3)),
        summary.map_or("n/a".to_string(), |s| num(s.mops() / f64::from(threads), 3)),
        summary.map_or("n/a".to_string(), |s| num(s.spread_pct(), 0)),
        num(Window::percent(misdirected, processed), 1),
        sum(|r| r.dropped_total()).to_string(),
        match (software, summary) {
            (Some(s), Some(l)) => num(s.ops_per_sec / l.ops_per_sec, 2),
            _ => "n/a".to_string(),
        },
    ]);
    if let Some(first) = reports.first() {
        table.note(format!("ltran placement: {}", first.placement));
    }
    let mut all_ok = true;
    for (round, report) in reports.iter().enumerate() {
        let drops: Vec<String> = report
            .dropped
            .iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect();
        all_ok &= report.failures.is_empty();
        table.note(format!(
            "ltran run {}: rx {} = processed {} + dropped {}{}; {} copied and handed off; pool {} of {} free: {}",
            round + 1,
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
    }
    table.print();
    Ok(all_ok)
}
