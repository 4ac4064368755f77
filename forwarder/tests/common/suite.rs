//! The kernel-client suite, whatever port the engine runs on (AF_PACKET, DPDK's
//! `net_af_packet`): the Linux kernel's clients and servers in the client namespace, two stack
//! threads on the engine end with software balancing, and the checks every port must pass.
//!
//! The apps are the gazelle case: thread 0 listens on 7000 and thread 1 on 7001 (each thread owns
//! its own port), both run udp-echo on 7 and http on 8080 ([`client_apps`]). However the port
//! spreads the frames over its two queues, a connection's packets that arrive on the thread that
//! does not listen on its port must be handed to the owner. The proxy configuration
//! ([`proxy_apps`]) runs `tcp-proxy` apps on both threads in front of servers of the client
//! namespace's kernel: every accepted connection opens an outbound one from the accepting
//! thread, whose answers reach it only through the exact rule it added before the SYN left.
//!
//! Each function takes the client network and the engine (or a way to start it, when servers
//! must listen first), runs the clients, stops the engine and checks what every run must hold:
//! every byte echoed, every rule gone, nothing misdirected, conservation exact, the pool full.

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use flowsteer_config::{App, AppKind};
use forwarder::engine::Engine;
use forwarder::report::RunReport;

use super::servers::{echo_until_eof, KernelServer, NsServer, TempDir};
use super::*;

/// Thread `t` runs tcp-echo on `ECHO_PORTS[t]` only.
pub const ECHO_PORTS: [u16; 2] = [7000, 7001];

/// The suite's apps for two stack threads: tcp-echo on 7000 on thread 0 only and on 7001 on
/// thread 1 only, udp-echo on 7 and http on 8080 on both.
pub fn client_apps() -> Vec<App> {
    vec![
        App::new(AppKind::TcpEcho, ECHO_PORTS[0]).on_threads([0]),
        App::new(AppKind::TcpEcho, ECHO_PORTS[1]).on_threads([1]),
        App::new(AppKind::UdpEcho, UDP_ECHO_PORT),
        App::new(AppKind::Http, HTTP_PORT),
    ]
}

// ---------------------------------------------------------------------------------------------
// The kernel's clients

/// Sequential and concurrent echo connections to both threads' ports, slow and idle clients,
/// HTTP from std::net and curl, nc, UDP echo, all to `ip`; then every rule gone, nothing
/// misdirected and conservation exact. Needs curl and nc. Returns the stopped engine's report.
pub fn serve_both_ports(net: &ClientNet, engine: Engine, ip: IpAddr) -> RunReport {
    let started = Instant::now();
    let timeout = Duration::from_secs(3);

    // 200 sequential connections, alternating ports, each with its own payload size.
    let sequential = sequential_echo(net, ip, 200, timeout, |i| ECHO_PORTS[i as usize % 2]);
    assert!(sequential.is_empty(), "failed: {sequential:#?}");
    eprintln!(
        "{ip}: 200 sequential echo connections in {:?}",
        started.elapsed()
    );

    // 50 concurrent connections: all connected before any sends.
    let failed = concurrent_echo(net, ip, 50, timeout, |i| {
        (ECHO_PORTS[i as usize % 2], 4096 + i as usize * 31, 1000 + i)
    });
    assert!(failed.is_empty(), "failed: {failed:#?}");

    // A slow client on each port and an idle one: both served like the others.
    let slow_and_idle: Vec<String> = ECHO_PORTS
        .iter()
        .enumerate()
        .map(|(i, &port)| {
            let addr = SocketAddr::new(ip, port);
            let seed = 3000 + i as u32;
            net.client(move || slow_then_idle_echo(addr, seed, timeout))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .filter_map(|h| h.join().expect("a slow client thread").err())
        .collect();
    assert!(slow_and_idle.is_empty(), "failed: {slow_and_idle:#?}");

    // HTTP: keep-alive from std::net, then curl fetching two URLs over one connection.
    let bodies = net
        .client(move || http_keep_alive(ip, timeout))
        .join()
        .expect("the http client thread")
        .expect("two GETs on one connection");
    assert!(bodies.iter().all(|b| is_http_body(b)), "{bodies:?}");
    assert_eq!(bodies[0], bodies[1], "one connection, one serving thread");
    for _ in 0..3 {
        let url = format!("http://{}:{HTTP_PORT}/", url_host(ip));
        let out = net.exec(
            "curl",
            &[
                "-gsS",
                "--connect-timeout",
                "3",
                "--max-time",
                "5",
                "-w",
                "%{http_code} %{num_connects}\n",
                &url,
                &url,
            ],
            b"",
            Duration::from_secs(8),
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "curl: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text:?}");
        assert!(is_http_body(&format!("{}\n", lines[0])), "{text:?}");
        assert_eq!(lines[1], "200 1", "first URL: one new connection");
        assert_eq!(lines[2], lines[0], "same connection, same thread");
        assert_eq!(lines[3], "200 0", "second URL reuses the connection");
    }

    // nc (netcat-openbsd): -N half-closes after stdin, so it ends when the app closes.
    for (i, port) in ECHO_PORTS.iter().enumerate() {
        let input = pattern(3000, 5000 + i as u32);
        let out = net.exec(
            "nc",
            &["-N", "-w", "3", &ip.to_string(), &port.to_string()],
            &input,
            Duration::from_secs(8),
        );
        assert!(
            out.status.success(),
            "nc to {port}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout == input, "nc to {port}: echo differs");
    }

    // UDP echo on both threads' sockets.
    let intact = net
        .client(move || udp_echo(ip, 20, timeout))
        .join()
        .expect("the udp client thread")
        .expect("udp echo");
    assert_eq!(intact, 20);

    let echo_connections = connections_opened(&engine, flowsteer_stack::AppKind::TcpEcho);
    assert!(
        echo_connections >= 254,
        "{echo_connections} echo connections"
    );
    assert!(connections_opened(&engine, flowsteer_stack::AppKind::Http) >= 4);

    // Every connection closed: the rules that followed them are gone.
    let left = wait_for_no_exact_rules(&engine, Duration::from_secs(10));
    assert_eq!(left, 0, "exact rules left after every client closed");
    let added = stack_sum(&engine, |s| s.rules_added.get());
    let deleted = stack_sum(&engine, |s| s.rules_deleted.get());
    // One exact rule per connection: 200 + 50 + 2 echo, 2 nc, 1 + 3 http.
    assert!(added >= 258, "{added} rules added");
    assert_eq!(stack_sum(&engine, |s| s.misdirected.get()), 0);
    assert_eq!(stack_sum(&engine, |s| s.rule_add_failed.get()), 0);
    // A port that deals a connection's FIN and its last data to different threads makes the FIN
    // wait for the data, never in vain on a lossless veth.
    let held = stack_sum(&engine, |s| s.early_segments_held.get());
    eprintln!("{ip}: {held} segments held for what precedes them");
    let expired = stack_sum(&engine, |s| s.early_segments_expired.get());
    assert_eq!(
        expired,
        0,
        "{expired} of {held} held segments waited in vain; port drops {:?}, engine {:?}",
        engine.shared().port.drops(),
        engine
            .shared()
            .stats
            .snapshot()
            .iter()
            .map(|t| (t.dropped.clone(), t.swq_full.clone()))
            .collect::<Vec<_>>()
    );

    let report = stop_and_check(engine);
    // Half of the echo connections reach the thread that does not listen on their port.
    assert!(report.total.handed_off > 0, "{}", report.render_table());
    assert!(deleted <= added);
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "took {:?}",
        started.elapsed()
    );
    report
}

/// A client that sends its message a few bytes at a time, then idles for longer than a
/// delayed ACK and a retransmission timeout before it sends again, reads both echoes and closes.
pub fn slow_then_idle_echo(addr: SocketAddr, seed: u32, timeout: Duration) -> Result<(), String> {
    let mut stream = connect_to_engine(addr, timeout)?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("socket options: {e}"))?;
    let data = pattern(600, seed);
    for chunk in data.chunks(30) {
        stream
            .write_all(chunk)
            .map_err(|e| format!("slow write to {addr}: {e}"))?;
        thread::sleep(Duration::from_millis(15));
    }
    let mut echoed = vec![0u8; data.len()];
    stream
        .read_exact(&mut echoed)
        .map_err(|e| format!("read the slow echo from {addr}: {e}"))?;
    if echoed != data {
        return Err(format!("{addr}: the slow echo differs"));
    }
    thread::sleep(Duration::from_millis(1500));
    stream
        .write_all(&data[..100])
        .map_err(|e| format!("write to {addr} after idling: {e}"))?;
    stream
        .read_exact(&mut echoed[..100])
        .map_err(|e| format!("read from {addr} after idling: {e}"))?;
    if echoed[..100] != data[..100] {
        return Err(format!("{addr}: the echo after idling differs"));
    }
    close_after_the_echo(&mut stream, addr)
}

/// What [`connect_under_rss_balancing`] saw.
pub struct RssOutcome {
    /// Connections that failed (reset, refused or timed out), of `attempts`.
    pub failed: usize,
    pub attempts: usize,
    /// How the failed ones failed.
    pub errors: Vec<String>,
    pub report: RunReport,
}

/// `attempts` concurrent echo connections to both threads' ports with the engine under
/// `balance = "rss"` (and `stack.idle_timeout_s = 1`): a connection's packets that arrive on
/// the thread that does not listen on its port are processed there, counted as misdirected,
/// and break it. Checks that some were misdirected and that the broken connections' rules
/// timed out; the caller checks how many failed, which depends on how its port spreads flows.
pub fn connect_under_rss_balancing(net: &ClientNet, engine: Engine, attempts: u32) -> RssOutcome {
    // Concurrent attempts, each bounded by one short timeout per step: the whole check takes a
    // few seconds even though many attempts hang or are reset.
    let timeout = Duration::from_secs(1);
    let results: Vec<Result<(), String>> = (0..attempts)
        .map(|i| {
            let addr = SocketAddr::from((ENGINE_IP, ECHO_PORTS[i as usize % 2]));
            net.client(move || echo_once(addr, 2048, i, timeout))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().expect("a client thread"))
        .collect();
    let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    let misdirected = stack_sum(&engine, |s| s.misdirected.get());
    // The misdirected connections' sockets never make progress: they time out, and their
    // rules go with them.
    let left = wait_for_no_exact_rules(&engine, Duration::from_secs(10));
    assert_eq!(
        left, 0,
        "rules of misdirected connections left after their timeout"
    );
    let report = stop_and_check(engine);
    assert!(
        misdirected > 0,
        "no misdirected packet\n{}",
        report.render_table()
    );
    let refused = errors
        .iter()
        .filter(|e| e.contains("refused") || e.contains("reset"))
        .count();
    eprintln!(
        "rss: {} of {attempts} connections failed ({refused} refused or reset), \
         {misdirected} misdirected packets\n{}",
        errors.len(),
        report.render_table()
    );
    RssOutcome {
        failed: errors.len(),
        attempts: attempts as usize,
        errors,
        report,
    }
}

// ---------------------------------------------------------------------------------------------
// tcp-proxy in front of the client namespace's own servers

/// The proxy in front of the test's echo server.
pub const ECHO_PROXY_PORT: u16 = 3128;
const UPSTREAM_ECHO_PORT: u16 = 9000;
/// The proxy in front of `python3 -m http.server`.
pub const HTTP_PROXY_PORT: u16 = 3129;
const UPSTREAM_HTTP_PORT: u16 = 9001;
/// The proxy in front of `iperf3 -s` (iperf3's own default port on the client side).
pub const IPERF_PROXY_PORT: u16 = 5201;
const UPSTREAM_IPERF_PORT: u16 = 5202;
/// The proxy in front of a server that closes after the client's greeting.
pub const CLOSING_PROXY_PORT: u16 = 3130;
const UPSTREAM_CLOSING_PORT: u16 = 9002;
const GREETING_LEN: usize = 100;
const PROXY_SEQUENTIAL: u32 = 100;
const PROXY_CONCURRENT: u32 = 20;
const CURL_SEQUENTIAL: u32 = 10;
const CURL_CONCURRENT: u32 = 4;
/// The file http.server serves: 1 MiB of [`pattern`], about 725 full-sized segments a fetch.
const BLOB_LEN: usize = 1 << 20;

/// Every proxy, on every thread: in front of the test's echo server, `python3 -m http.server`,
/// `iperf3 -s` and a server that closes after the client's greeting, all at the client's
/// address.
pub fn proxy_apps() -> Vec<App> {
    let upstream = |port| SocketAddr::from((CLIENT_IP, port));
    vec![
        App::proxy(ECHO_PROXY_PORT, upstream(UPSTREAM_ECHO_PORT)),
        App::proxy(HTTP_PROXY_PORT, upstream(UPSTREAM_HTTP_PORT)),
        App::proxy(IPERF_PROXY_PORT, upstream(UPSTREAM_IPERF_PORT)),
        App::proxy(CLOSING_PROXY_PORT, upstream(UPSTREAM_CLOSING_PORT)),
    ]
}

/// One `curl` through the http proxy into `out`; the body must be `blob`, byte for byte. curl
/// writes to a file: [`ClientNet::exec`] collects stdout only after the exit, and a 1 MiB body
/// would fill the pipe first.
fn curl_blob(net: &ClientNet, blob: &[u8], out: &Path) -> Result<(), String> {
    let url = format!("http://{ENGINE_IP}:{HTTP_PROXY_PORT}/blob.bin");
    let out_arg = out.to_string_lossy();
    let run = net.exec(
        "curl",
        &[
            "-sS",
            "--fail",
            "--connect-timeout",
            "3",
            "--max-time",
            "10",
            "-o",
            &out_arg,
            &url,
        ],
        b"",
        Duration::from_secs(12),
    );
    if !run.status.success() {
        return Err(format!(
            "curl {url}: {}: {}",
            run.status,
            String::from_utf8_lossy(&run.stderr)
        ));
    }
    let body = fs::read(out).map_err(|e| format!("read {}: {e}", out.display()))?;
    if body.len() != blob.len() {
        return Err(format!(
            "curl {url}: {} of {} bytes",
            body.len(),
            blob.len()
        ));
    }
    match body.iter().zip(blob).position(|(a, b)| a != b) {
        Some(at) => Err(format!("curl {url}: byte {at} differs")),
        None => Ok(()),
    }
}

/// Per proxy port: (client connections accepted, upstream connects, upstream failures).
pub fn proxy_counts(report: &RunReport, port: u16) -> (u64, u64, u64) {
    report
        .stack
        .iter()
        .flat_map(|s| &s.apps)
        .filter(|a| a.port == port)
        .fold((0, 0, 0), |(opened, connects, failed), a| {
            (
                opened + a.connections_opened,
                connects + a.upstream_connects,
                failed + a.upstream_failed,
            )
        })
}

/// Echo connections (sequential, then concurrent) through the proxy to the test's echo server,
/// and curl fetching 1 MiB through the proxy from `python3 -m http.server`, one at a time then
/// together; `start` starts the engine with [`proxy_apps`] once the servers listen. Then every
/// connection and its upstream counted, a rule per connection added and deleted, nothing
/// misdirected, and both threads connected out. Needs python3, ss and curl.
pub fn proxy_the_kernels_servers(net: &ClientNet, start: impl FnOnce() -> Engine) -> RunReport {
    let started = Instant::now();
    let echo = KernelServer::start(net, UPSTREAM_ECHO_PORT, echo_until_eof);
    let blob = pattern(BLOB_LEN, 4242);
    let served = TempDir::new("served");
    fs::write(served.0.join("blob.bin"), &blob).expect("write the served file");
    let served_path = served.0.to_string_lossy().into_owned();
    let fetched = TempDir::new("fetched");
    let _http = NsServer::start(
        net,
        "python3 -m http.server",
        "python3",
        &[
            "-m",
            "http.server",
            &UPSTREAM_HTTP_PORT.to_string(),
            "--bind",
            &CLIENT_IP.to_string(),
            "--directory",
            &served_path,
        ],
        UPSTREAM_HTTP_PORT,
    );
    let engine = start();
    let timeout = Duration::from_secs(3);

    // Sequential echo connections, each its own size (up to 30 KiB, below every buffer on the
    // way, so writing all before reading cannot deadlock); the first failure ends the test.
    let sequential = net
        .client(move || {
            (0..PROXY_SEQUENTIAL).try_for_each(|i| {
                let len = 512 + (i as usize * 997) % 30_000;
                echo_once(
                    SocketAddr::from((ENGINE_IP, ECHO_PROXY_PORT)),
                    len,
                    20_000 + i,
                    timeout,
                )
                .map_err(|e| format!("sequential {i}: {e}"))
            })
        })
        .join()
        .expect("the sequential client thread");
    sequential.unwrap_or_else(|e| panic!("through the proxy: {e}"));

    // Concurrent echo connections: all start together.
    let failed = concurrent_echo(net, IpAddr::V4(ENGINE_IP), PROXY_CONCURRENT, timeout, |i| {
        (ECHO_PROXY_PORT, 8192 + i as usize * 331, 30_000 + i)
    });
    assert!(failed.is_empty(), "through the proxy: {failed:#?}");
    assert_eq!(
        echo.accepted(),
        PROXY_SEQUENTIAL + PROXY_CONCURRENT,
        "one upstream connection per client connection"
    );

    // curl fetching 1 MiB through the proxy from http.server, one at a time then together.
    for i in 0..CURL_SEQUENTIAL {
        let out = fetched.0.join(format!("sequential-{i}"));
        curl_blob(net, &blob, &out).unwrap_or_else(|e| panic!("sequential curl {i}: {e}"));
    }
    let together: Vec<Result<(), String>> = thread::scope(|scope| {
        let fetches: Vec<_> = (0..CURL_CONCURRENT)
            .map(|i| {
                let out = fetched.0.join(format!("concurrent-{i}"));
                let blob = &blob;
                scope.spawn(move || curl_blob(net, blob, &out))
            })
            .collect();
        fetches
            .into_iter()
            .map(|f| f.join().expect("a curl thread"))
            .collect()
    });
    let failed: Vec<&String> = together.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "concurrent curl: {failed:#?}");

    // Every connection closed (TIME-WAIT ends a rule too): the rules that followed them are gone.
    let left = wait_for_no_exact_rules(&engine, Duration::from_secs(10));
    assert_eq!(left, 0, "exact rules left after every connection closed");
    let report = stop_and_check(engine);
    let table = report.render_table();
    let stack = report.total.stack.as_ref().expect("the threads ran stacks");

    let echo_connections = u64::from(PROXY_SEQUENTIAL + PROXY_CONCURRENT);
    let curl_connections = u64::from(CURL_SEQUENTIAL + CURL_CONCURRENT);
    assert_eq!(
        proxy_counts(&report, ECHO_PROXY_PORT),
        (echo_connections, echo_connections, 0),
        "echo proxy: (accepted, upstream connects, upstream failed)\n{table}"
    );
    assert_eq!(
        proxy_counts(&report, HTTP_PROXY_PORT),
        (curl_connections, curl_connections, 0),
        "http proxy: (accepted, upstream connects, upstream failed)\n{table}"
    );
    // Each accepted and each outbound connection had its exact rule, and every one went.
    assert_eq!(
        stack.rules_added,
        2 * stack.connections_opened,
        "a rule per accepted and per outbound connection\n{table}"
    );
    assert_eq!(stack.rules_deleted, stack.rules_added, "{table}");
    assert_eq!(stack.rule_add_failed, 0, "{table}");
    assert_eq!(stack.misdirected, 0, "{table}");
    assert_eq!(report.total.misdirected, 0, "{table}");
    // The upstream's answers the port delivers to the other thread reach the connecting thread
    // only by being handed off along the rule added before the SYN left.
    assert!(
        report.total.handed_off > report.total.link_copies,
        "no packet was handed off\n{table}"
    );
    for s in &report.stack {
        let connects: u64 = s.apps.iter().map(|a| a.upstream_connects).sum();
        assert!(connects > 0, "thread {} connected out: \n{table}", s.thread);
    }
    eprintln!("{table}");
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "took {:?}",
        started.elapsed()
    );
    report
}

/// Reads the client's greeting and closes: its kernel sends a FIN (nothing unread) and resets
/// whatever the client sends after.
fn read_greeting_and_close(mut stream: TcpStream) {
    let mut greeting = [0u8; GREETING_LEN];
    let _ = stream.read_exact(&mut greeting);
}

/// Greets the closing server through the proxy, sees its FIN passed on, and keeps sending: the
/// bytes have nowhere to go, so the proxy must reset the connection. Returns how it ended.
fn send_after_the_upstream_closed(timeout: Duration) -> Result<String, String> {
    let mut stream = connect_to_engine(SocketAddr::from((ENGINE_IP, CLOSING_PROXY_PORT)), timeout)?;
    stream
        .write_all(&pattern(GREETING_LEN, 7))
        .map_err(|e| format!("greet: {e}"))?;
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => return Err(format!("{n} bytes instead of the upstream's FIN")),
        Err(e) => return Err(format!("wait for the upstream's FIN: {e}")),
    }
    let is_reset = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::ConnectionAborted
        )
    };
    // 1 MiB, more than every buffer on the way: a connection nobody drains blocks the writer.
    let chunk = pattern(16 * 1024, 8);
    for _ in 0..64 {
        match stream.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if is_reset(&e) => return Ok(format!("write: {e}")),
            Err(e) => return Err(format!("send after the FIN: {e} (not a reset)")),
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
    match stream.read(&mut buf) {
        Err(e) if is_reset(&e) => Ok(format!("read: {e}")),
        Err(e) => Err(format!("wait for the end: {e} (not a reset)")),
        Ok(n) => Err(format!("the connection ended without a reset ({n} bytes)")),
    }
}

/// An upstream that closes (FIN) and then resets what the client still sends: the proxy has
/// passed the FIN on, so its client side is in FIN-WAIT, and must be reset too, else nothing
/// drains it, its window closes and the connection (and its rule) never ends. `start` starts
/// the engine with [`proxy_apps`] once the server listens.
pub fn reset_a_half_closed_client(net: &ClientNet, start: impl FnOnce() -> Engine) -> RunReport {
    let _closing = KernelServer::start(net, UPSTREAM_CLOSING_PORT, read_greeting_and_close);
    let engine = start();
    let ended = net
        .client(|| send_after_the_upstream_closed(Duration::from_secs(3)))
        .join()
        .expect("the client thread");
    let left = wait_for_no_exact_rules(&engine, Duration::from_secs(5));
    let report = stop_and_check(engine);
    let table = report.render_table();
    let how = ended.unwrap_or_else(|e| panic!("{e}\n{table}"));
    assert_eq!(
        left, 0,
        "exact rules left after the client was reset\n{table}"
    );
    assert_eq!(
        proxy_counts(&report, CLOSING_PROXY_PORT),
        (1, 1, 1),
        "(accepted, upstream connects, upstream failed)\n{table}"
    );
    eprintln!("the client's connection ended with {how}");
    report
}

/// iperf3 through the proxy on 5201 (its control and its data connection both are proxied) to
/// `iperf3 -s` in the client namespace; `start` starts the engine with [`proxy_apps`]. iperf3's
/// server closes its data socket while the client still sends, the case of
/// [`reset_a_half_closed_client`], so the data connection may end in a reset (counted as an
/// upstream failure) rather than a close. Needs iperf3 and ss. Returns the receiver's bits per
/// second and the report.
pub fn iperf3_through_the_proxy(
    net: &ClientNet,
    start: impl FnOnce() -> Engine,
) -> (f64, RunReport) {
    let engine = start();
    let bits = {
        let _server = NsServer::start(
            net,
            "iperf3 -s",
            "iperf3",
            &[
                "-s",
                "-B",
                &CLIENT_IP.to_string(),
                "-p",
                &UPSTREAM_IPERF_PORT.to_string(),
            ],
            UPSTREAM_IPERF_PORT,
        );
        let out = net.exec(
            "iperf3",
            &[
                "-c",
                &ENGINE_IP.to_string(),
                "-p",
                &IPERF_PROXY_PORT.to_string(),
                "-t",
                "3",
                "--connect-timeout",
                "3000",
                "-J",
            ],
            b"",
            Duration::from_secs(15),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "iperf3 -c: {}\n{text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let result: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("iperf3 -J output is not JSON ({e}): {text}"));
        result["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or_else(|| panic!("no end.sum_received.bits_per_second in {text}"))
    };
    let left = wait_for_no_exact_rules(&engine, Duration::from_secs(10));
    let report = stop_and_check(engine);
    let table = report.render_table();
    assert_eq!(left, 0, "exact rules left after iperf3 ended\n{table}");
    let (opened, connects, _) = proxy_counts(&report, IPERF_PROXY_PORT);
    assert!(
        opened >= 2,
        "iperf3: a control and a data connection\n{table}"
    );
    assert_eq!(
        connects, opened,
        "one upstream per client connection\n{table}"
    );
    assert!(bits > 0.0, "iperf3 measured {bits} bit/s");
    assert_eq!(report.total.misdirected, 0, "{table}");
    (bits, report)
}
