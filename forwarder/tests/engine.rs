//! Engine runs per profile and balancing mode, on the user-space veth with the traffic generator.
//! Every run must pass the conservation check; the assertions below are about where packets went.

use std::time::Duration;

use flowsteer_config::{Balance, Config, FaultKind, OnFailure, Profile};
use forwarder::engine::{run, RunOptions};
use forwarder::report::RunReport;

mod common;

use common::generated::{faulted_config as faulted, generated_config as config};

fn run_for(cfg: &Config, millis: u64) -> RunReport {
    let report = run(cfg, RunOptions::quiet(Duration::from_millis(millis))).expect("engine runs");
    assert!(
        report.conservation.ok,
        "conservation failed: {:?}\n{}",
        report.conservation.failures,
        report.render_table()
    );
    assert!(
        report.total.rx > 1000,
        "too little traffic:\n{}",
        report.render_table()
    );
    assert_eq!(report.pool.available, report.pool.capacity);
    assert_eq!(
        report.flowtable.exact_rules, 0,
        "thread exit deletes every rule"
    );
    assert_eq!(
        report.flowtable.listen_rules, 0,
        "thread exit deletes every rule"
    );
    // One parse per packet: under software balancing the sink reuses steering's classification
    // of every packet; under RSS balancing nothing classified them before the sink.
    for thread in &report.per_thread {
        let expected = match cfg.engine.balance {
            Balance::Software => thread.processed(),
            Balance::Rss => 0,
        };
        assert_eq!(thread.parse_reused, expected, "{}", report.render_table());
    }
    report
}

fn ratio(part: u64, whole: u64) -> f64 {
    part as f64 / whole.max(1) as f64
}

#[test]
fn listeners_rss_misdirects_about_half() {
    let r = run_for(&config(Profile::Listeners, Balance::Rss, 2, 2), 400);
    let share = ratio(r.total.misdirected, r.total.processed);
    assert!(
        (0.35..=0.65).contains(&share),
        "misdirected share {share}\n{}",
        r.render_table()
    );
    assert_eq!(r.total.handed_off, 0);
    assert_eq!(
        r.total.lookups.exact + r.total.lookups.miss,
        0,
        "rss balancing does no lookup"
    );
}

#[test]
fn listeners_software_hands_off_about_half_and_misdirects_nothing() {
    let r = run_for(&config(Profile::Listeners, Balance::Software, 2, 2), 400);
    assert_eq!(r.total.misdirected, 0, "{}", r.render_table());
    // What steering sent to the other thread: accepted by its queue, or refused by a full one
    // (tests run side by side on two cores, so an owner can fall behind its producer).
    let refused = r.total.dropped.get("swq_full").copied().unwrap_or(0);
    let share = ratio(r.total.handed_off + refused, r.total.rx);
    assert!(
        (0.35..=0.65).contains(&share),
        "handoff share {share}\n{}",
        r.render_table()
    );
    assert!(
        r.total.lookups.exact > 0,
        "TCP flows are found by their exact rules"
    );
}

/// Handed-off packets are freed by the thread they were handed to, each back into the L1 pool of
/// the queue that received it; with the watermark near the top of each L1 pool the threads
/// borrow from the shared pool. Every pool is full at the end (the conservation check says so
/// per pool) and no allocation failed.
#[test]
fn every_buffer_returns_to_its_queues_pool_and_the_threads_borrow_below_the_watermark() {
    let mut cfg = config(Profile::Listeners, Balance::Software, 2, 2);
    cfg.pool.low_watermark = cfg.pool_split().per_queue - 64;
    let r = run_for(&cfg, 400);
    assert!(r.total.handed_off > 0, "{}", r.render_table());
    let pools: Vec<&str> = r.pool.pools.iter().map(|p| p.pool.as_str()).collect();
    assert_eq!(pools, ["q0", "q1", "shared"]);
    for p in &r.pool.pools {
        assert_eq!(p.available, p.capacity, "{}", r.render_table());
        assert_eq!(p.alloc_failures, 0, "{}", r.render_table());
    }
    let borrowed: u64 = r.pool.pools.iter().map(|p| p.l2_borrows).sum();
    assert!(borrowed > 0, "{}", r.render_table());
    assert!(
        r.render_table().contains("q0 ") && r.render_table().contains("L2 borrows"),
        "{}",
        r.render_table()
    );
}

/// `pool.shared_percent = 100`: one level, every thread on the shared pool, no L1 pool and no
/// borrowing; the pool is full at the end.
#[test]
fn one_level_puts_every_thread_on_the_shared_pool() {
    let mut cfg = config(Profile::Listeners, Balance::Software, 2, 2);
    cfg.pool.shared_percent = 100;
    let r = run_for(&cfg, 300);
    assert!(r.total.handed_off > 0, "{}", r.render_table());
    let pools: Vec<(&str, bool, u64, u64)> = r
        .pool
        .pools
        .iter()
        .map(|p| {
            let full = p.available == p.capacity && p.capacity == cfg.pool.buffers;
            (p.pool.as_str(), full, p.l2_borrows, p.alloc_failures)
        })
        .collect();
    assert_eq!(pools, [("shared", true, 0, 0)], "{}", r.render_table());
}

#[test]
fn rss_friendly_needs_no_handoff_in_either_mode() {
    for balance in [Balance::Rss, Balance::Software] {
        let r = run_for(&config(Profile::RssFriendly, balance, 2, 2), 300);
        assert_eq!(r.total.misdirected, 0, "{balance}:\n{}", r.render_table());
        assert_eq!(r.total.handed_off, 0, "{balance}:\n{}", r.render_table());
    }
}

#[test]
fn fewer_queues_feeds_queueless_threads_only_in_software_mode() {
    let r = run_for(&config(Profile::FewerQueues, Balance::Software, 3, 2), 400);
    assert_eq!(r.total.misdirected, 0, "{}", r.render_table());
    assert_eq!(r.per_thread[2].rx, 0, "thread 2 has no NIC queue");
    assert!(
        r.per_thread[2].processed_handoff > 0,
        "{}",
        r.render_table()
    );

    let r = run_for(&config(Profile::FewerQueues, Balance::Rss, 3, 2), 300);
    assert_eq!(r.per_thread[2].processed(), 0, "{}", r.render_table());
    assert!(r.total.misdirected > 0, "{}", r.render_table());
}

#[test]
fn churn_adds_and_deletes_rules_under_traffic_without_misdirection() {
    let mut cfg = config(Profile::Churn, Balance::Software, 2, 2);
    cfg.traffic.churn_rate = 20_000;
    let r = run_for(&cfg, 600);
    assert_eq!(r.total.misdirected, 0, "{}", r.render_table());
    assert!(r.total.flows_closed > 0, "{}", r.render_table());
    let started: u64 = r
        .traffic
        .iter()
        .map(|q| q.get("flows_started").copied().unwrap_or(0))
        .sum();
    assert!(started > 0, "churn started no flow: {:?}", r.traffic);
}

#[test]
fn churn_in_rss_mode_misdirects() {
    let mut cfg = config(Profile::Churn, Balance::Rss, 2, 2);
    cfg.traffic.churn_rate = 20_000;
    let r = run_for(&cfg, 300);
    assert!(r.total.misdirected > 0, "{}", r.render_table());
}

#[test]
fn small_software_queues_drop_and_count_instead_of_blocking() {
    let mut cfg = config(Profile::Listeners, Balance::Software, 2, 2);
    cfg.swq.size = 2;
    cfg.engine.drain_limit = 1;
    cfg.engine.burst = 64;
    let r = run_for(&cfg, 300);
    assert!(
        r.total.dropped.get("swq_full").copied().unwrap_or(0) > 0,
        "{}",
        r.render_table()
    );
    assert_eq!(r.total.misdirected, 0);
}

#[test]
fn one_thread_keeps_everything_local() {
    let r = run_for(&config(Profile::Listeners, Balance::Software, 1, 1), 200);
    assert_eq!(r.total.handed_off, 0);
    assert_eq!(r.total.misdirected, 0);
    assert_eq!(r.total.processed, r.total.rx);
}

#[test]
fn ipv6_and_udp_mix_is_steered() {
    let mut cfg = config(Profile::Listeners, Balance::Software, 2, 2);
    cfg.traffic.ipv6_share = 0.5;
    cfg.traffic.udp_share = 0.5;
    cfg.traffic.packet_size = 128;
    let r = run_for(&cfg, 400);
    assert_eq!(r.total.misdirected, 0, "{}", r.render_table());
    assert!(
        r.total.lookups.listen_any > 0,
        "UDP flows are found by listen rules"
    );
    assert_eq!(r.total.unverified, 0);
}

#[test]
fn threads_run_pinned_to_the_configured_cores() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u16;
    let mut cfg = config(Profile::Listeners, Balance::Software, 2, 2);
    // Reversed order, wrapping on a one-core machine is not allowed (no duplicates): use 1 thread.
    if cores >= 2 {
        cfg.engine.cores = vec![1, 0];
    } else {
        cfg = config(Profile::Listeners, Balance::Software, 1, 1);
        cfg.engine.cores = vec![0];
    }
    let r = run_for(&cfg, 200);
    assert_eq!(r.total.misdirected, 0);
}

#[test]
fn a_core_that_does_not_exist_is_a_clear_error() {
    let mut cfg = config(Profile::Listeners, Balance::Software, 1, 1);
    cfg.engine.cores = vec![1023];
    let Err(err) = run(&cfg, RunOptions::quiet(Duration::from_millis(100))) else {
        panic!("pinning to core 1023 must fail on this machine");
    };
    let msg = err.to_string();
    assert!(msg.contains("cannot pin to core 1023"), "{msg}");
}

#[test]
fn a_configured_panic_restarts_the_thread_and_every_packet_is_accounted_for() {
    let report = run_for(&faulted(FaultKind::Panic, OnFailure::Restart), 600);
    let table = report.render_table();
    assert_eq!(report.failures.len(), 1, "{table}");
    let failure = &report.failures[0];
    assert_eq!(
        (failure.thread, failure.state, failure.restarts),
        (1, "running", 1)
    );
    assert_eq!(failure.failures.get("panic"), Some(&1), "{table}");
    assert!(report.per_thread[1].polls > 0);
    assert!(table.contains("thread 1 failed (panic 1)"), "{table}");
}

#[test]
fn a_configured_stall_is_declared_and_the_thread_restarts_when_it_comes_back() {
    let report = run_for(&faulted(FaultKind::Stall, OnFailure::Restart), 1500);
    let table = report.render_table();
    assert_eq!(report.failures.len(), 1, "{table}");
    let failure = &report.failures[0];
    assert_eq!(failure.failures.get("stall"), Some(&1), "{table}");
    assert_eq!((failure.state, failure.restarts), ("running", 1), "{table}");
    assert!(
        failure.last_reason.contains("no loop progress for 200 ms"),
        "{table}"
    );
}

#[test]
fn under_redistribute_the_failed_threads_queue_is_drained_by_the_survivor() {
    let report = run_for(&faulted(FaultKind::Panic, OnFailure::Redistribute), 600);
    let table = report.render_table();
    let failure = &report.failures[0];
    assert_eq!((failure.state, failure.restarts), ("down", 0), "{table}");
    assert!(
        failure
            .last_reclaim
            .contains("its queue polled by thread 0"),
        "{table}"
    );
    assert!(
        report
            .total
            .dropped
            .get("owner_failed")
            .is_some_and(|&n| n > 0),
        "{table}"
    );
}

#[test]
fn under_stop_a_failure_ends_the_run_with_an_error_naming_the_thread() {
    let started = std::time::Instant::now();
    let err = run(
        &faulted(FaultKind::Panic, OnFailure::Stop),
        RunOptions::quiet(Duration::from_secs(20)),
    )
    .expect_err("the failure stops the run");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.to_string()
            .contains("thread 1: panic: fault injected into thread 1: panic"),
        "{err}"
    );
}

#[test]
fn a_thread_that_keeps_failing_stops_the_engine_at_the_restart_limit() {
    let mut cfg = faulted(FaultKind::None, OnFailure::Restart);
    cfg.engine.restart_limit = 2;
    let engine = forwarder::engine::Engine::start(&cfg, false).expect("the engine starts");
    let health = engine.shared().health.clone();
    for restarts in 1..=2 {
        health.inject_panic(1);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while health.thread(1).restarts() < restarts {
            assert!(std::time::Instant::now() < deadline, "restart {restarts}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    health.inject_panic(1);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !engine.thread_ended() {
        assert!(
            std::time::Instant::now() < deadline,
            "the third failure stops the engine"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let err = engine.stop().expect_err("the failure stops the run");
    assert!(
        err.to_string()
            .contains("restarted 2 times within a minute already (engine.restart_limit)"),
        "{err}"
    );
}
