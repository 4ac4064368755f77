//! The kernel's clients against an engine with fewer NIC queues than stack threads: the threads
//! beyond the queues receive only what software balancing hands them and transmit on their own
//! transmit path (a transmit-only queue of the port, or a relaying thread's software transmit
//! queue). Shared by the AF_PACKET and the DPDK tests.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use flowsteer_config::{App, AppKind, Balance, Config, Idle, Profile};
use forwarder::engine::Engine;
use forwarder::report::RunReport;

use super::*;

/// The tcp-echo port every thread serves.
pub const QUEUELESS_ECHO_PORT: u16 = 7000;

/// `threads` stack threads on `queues` queues under software balancing, tcp-echo, http and
/// udp-echo on every thread; the port's driver keys are the caller's.
pub fn queueless_config(threads: u16, queues: u16) -> Config {
    let mut cfg = Config::default();
    cfg.engine.threads = threads;
    cfg.engine.balance = Balance::Software;
    // Sleeping when idle leaves the cores to the kernel's clients.
    cfg.engine.idle = Idle::Sleep;
    cfg.port.queues = queues;
    cfg.port.ipv4 = ENGINE_IP;
    cfg.port.ipv4_prefix = 24;
    cfg.traffic.profile = Profile::None;
    cfg.metrics.enabled = false;
    cfg.stack.app = vec![
        App::new(AppKind::TcpEcho, QUEUELESS_ECHO_PORT),
        App::new(AppKind::Http, HTTP_PORT),
        App::new(AppKind::UdpEcho, UDP_ECHO_PORT),
    ];
    cfg
}

/// 200 sequential and 50 concurrent echo connections, curl and nc, UDP echo; then every rule
/// gone, every thread owning a fair share of the echo connections, conservation exact, and the
/// threads beyond the queues transmitting on `path` ("transmit-only queue", or "via thread" for
/// a relay). Returns the report.
pub fn serve_with_fewer_queues(net: &ClientNet, engine: Engine, path: &str) -> RunReport {
    let started = Instant::now();
    let ip = IpAddr::V4(ENGINE_IP);
    let timeout = Duration::from_secs(3);
    let threads = engine.shared().config.engine.threads;
    let queues = engine.shared().config.port.queues;

    let sequential = sequential_echo(net, ip, 200, timeout, |_| QUEUELESS_ECHO_PORT);
    assert!(sequential.is_empty(), "failed: {sequential:#?}");
    let failed = concurrent_echo(net, ip, 50, timeout, |i| {
        (QUEUELESS_ECHO_PORT, 4096 + i as usize * 31, 1000 + i)
    });
    assert!(failed.is_empty(), "failed: {failed:#?}");

    let url = format!("http://{}:{HTTP_PORT}/", url_host(ip));
    for _ in 0..4 {
        let out = net.exec(
            "curl",
            &["-gsS", "--connect-timeout", "3", "--max-time", "5", &url],
            b"",
            Duration::from_secs(8),
        );
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && served_by_a_thread(&body, threads),
            "curl: {body}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for seed in 0..2 {
        let input = pattern(3000, 5000 + seed);
        let out = net.exec(
            "nc",
            &[
                "-N",
                "-w",
                "3",
                &ip.to_string(),
                &QUEUELESS_ECHO_PORT.to_string(),
            ],
            &input,
            Duration::from_secs(8),
        );
        assert!(
            out.status.success() && out.stdout == input,
            "nc: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let intact = net
        .client(move || udp_echo(ip, 20, timeout))
        .join()
        .expect("the udp client thread")
        .expect("udp echo");
    assert_eq!(intact, 20);

    let left = wait_for_no_exact_rules(&engine, Duration::from_secs(10));
    assert_eq!(left, 0, "exact rules left after every client closed");
    assert_eq!(stack_sum(&engine, |s| s.misdirected.get()), 0);
    assert_eq!(stack_sum(&engine, |s| s.rule_add_failed.get()), 0);
    let echo: Vec<u64> = engine
        .shared()
        .stacks
        .iter()
        .map(|s| s.stats.apps[0].connections_opened.get())
        .collect();
    let report = stop_and_check(engine);
    let table = report.render_table();
    eprintln!("{threads} threads on {queues} queues:\n{table}");

    // 200 + 50 + 2 nc; each thread's share within 40% of an even split (the listen rule picks
    // an owner by the flow hash).
    let all: u64 = echo.iter().sum();
    assert_eq!(all, 252, "{table}");
    let fair = all / u64::from(threads);
    for (t, &n) in echo.iter().enumerate() {
        assert!(
            n >= fair * 6 / 10,
            "thread {t} owns {n} of {all} echo connections\n{table}"
        );
        assert_eq!(
            report.stack[t].connections_opened(),
            report.stack[t].connections_closed()
        );
    }
    for t in usize::from(queues)..usize::from(threads) {
        assert!(
            report.tx_paths[t].starts_with(path),
            "{:?}",
            report.tx_paths
        );
        let stats = &report.per_thread[t];
        assert_eq!(stats.rx, 0, "{table}");
        assert!(stats.processed_handoff > 0, "{table}");
        assert!(stats.tx + stats.tx_handed > 0, "{table}");
    }
    let dropped_tx: u64 = report.per_thread.iter().map(|t| t.dropped_total()).sum();
    assert_eq!(dropped_tx, 0, "{table}");
    assert!(table.contains("threads without a queue"), "{table}");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "took {:?}",
        started.elapsed()
    );
    report
}

/// True when `body` is the http app's answer from one of `threads` threads.
fn served_by_a_thread(body: &str, threads: u16) -> bool {
    (0..threads).any(|t| body == format!("flowsteer thread {t} port {HTTP_PORT}\n"))
}
