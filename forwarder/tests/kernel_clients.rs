//! flowsteer in front of the Linux kernel's own TCP/IP stack: the engine runs on one end of a
//! veth pair through AF_PACKET, the kernel is the client on the other end, inside a network
//! namespace.
//!
//! ```text
//!   namespace fskc…                          root namespace
//!   198.18.0.2/24 ── veth (client end) ═══ veth (engine end, no address) ── AF_PACKET, fanout lb
//!   kernel TCP/UDP, curl, nc                                                 2 stack threads
//! ```
//!
//! Thread 0 listens on 7000 and thread 1 on 7001 (the gazelle case: each thread owns its own
//! port), both run udp-echo on 7 and http on 8080. `fanout = "lb"` deals the frames round robin
//! to the two sockets, as a NIC without RSS would, so every connection's packets arrive on both
//! threads. With `balance = "software"` the engine hands each one to its owner and every
//! connection works; with `balance = "rss"` each thread processes what it received, the stack
//! counts misdirected packets and the connections fail: the problem the engine exists to solve.
//!
//! Most clients are threads of this test that enter the namespace with `setns(CLONE_NEWNET)`
//! (only the calling thread changes namespace) and use `std::net`, byte-exact and fast; a few are
//! real `curl` and `nc` processes started with `ip netns exec`.
//!
//! A second configuration runs `tcp-proxy` apps on both threads in front of servers of the
//! client namespace's kernel (an echo server of this test, `python3 -m http.server`, `iperf3 -s`):
//! every accepted connection opens an outbound one from the accepting thread, and since `lb`
//! deals the upstream's answers to both sockets too, they reach that thread only through the
//! exact rule it added before the SYN left.
//!
//! The tests need root (namespaces, veth, AF_PACKET) and iproute2's `ip` and `ss`, `ethtool`,
//! and each its clients (`curl`, `nc` of netcat-openbsd, `python3`, `iperf3`). They create
//! uniquely named interfaces and namespaces and delete them on exit, also on failure. Without
//! root or a program they print what they need ("skipped: needs root", "skipped: needs nc
//! (apt-get install netcat-openbsd)") and pass, unless `CI=true`, where they fail.

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use flowsteer_config::{App, AppKind, Balance, Config, Driver, Fanout, Idle, Profile};
use flowsteer_testrig::{CURL, IPERF3, NC, PYTHON3, SS};
use forwarder::engine::Engine;
use forwarder::report::RunReport;

const ECHO_PORTS: [u16; 2] = [7000, 7001];

mod common;
use common::*;

// ---------------------------------------------------------------------------------------------
// The engine

/// Two stack threads on the engine end: tcp-echo on 7000 on thread 0 only and on 7001 on
/// thread 1 only, udp-echo on 7 and http on 8080 on both.
fn engine_config(interface: &str, balance: Balance) -> Config {
    let mut cfg = Config::default();
    cfg.engine.threads = 2;
    cfg.engine.balance = balance;
    // Sleeping when idle leaves the cores to the kernel clients (the port's default frame ring
    // hands each frame over at once; the sleep is the latency floor).
    cfg.engine.idle = Idle::Sleep;
    cfg.port.driver = Driver::AfPacket;
    cfg.port.interface = interface.to_owned();
    cfg.port.queues = 2;
    cfg.port.fanout = Fanout::Lb;
    cfg.port.ipv4 = ENGINE_IP;
    cfg.port.ipv4_prefix = 24;
    cfg.traffic.profile = Profile::None;
    cfg.metrics.enabled = false;
    cfg.stack.app = vec![
        App::new(AppKind::TcpEcho, ECHO_PORTS[0]).on_threads([0]),
        App::new(AppKind::TcpEcho, ECHO_PORTS[1]).on_threads([1]),
        App::new(AppKind::UdpEcho, UDP_ECHO_PORT),
        App::new(AppKind::Http, HTTP_PORT),
    ];
    cfg
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn software_balancing_serves_the_kernels_connections_on_both_ports() {
    if skip_without_client_net(&[CURL, NC]) {
        return;
    }
    serve_both_ports(IpAddr::V4(ENGINE_IP));
}

/// The same over IPv6: neighbour discovery must reach both threads (a thread that owns a
/// connection solicits the client's link address, and the answer may arrive on the other
/// queue), and each thread must learn the client from a solicitation the other one received.
#[test]
fn software_balancing_serves_the_kernels_ipv6_connections_on_both_ports() {
    if skip_without_client_net(&[CURL, NC]) {
        return;
    }
    serve_both_ports(IpAddr::V6(ENGINE_IP6));
}

/// Sequential and concurrent echo connections to both threads' ports, HTTP from std::net and
/// curl, nc, UDP echo, all to `ip`; then every rule gone and conservation exact.
fn serve_both_ports(ip: IpAddr) {
    let started = Instant::now();
    let net = ClientNet::new();
    let engine = Engine::start(&engine_config(&net.engine_if, Balance::Software), false)
        .expect("the engine starts on the veth");
    let timeout = Duration::from_secs(3);

    // 200 sequential connections, alternating ports, each with its own payload size.
    let sequential = net
        .client(move || {
            (0..200u32)
                .filter_map(|i| {
                    let port = ECHO_PORTS[i as usize % 2];
                    let len = 512 + (i as usize * 97) % 6000;
                    echo_once(SocketAddr::new(ip, port), len, i, timeout)
                        .err()
                        .map(|e| format!("connection {i}: {e}"))
                })
                .collect::<Vec<_>>()
        })
        .join()
        .expect("the sequential client thread");
    assert!(sequential.is_empty(), "failed: {sequential:#?}");
    eprintln!(
        "{ip}: 200 sequential echo connections in {:?}",
        started.elapsed()
    );

    // 50 concurrent connections: all connected before any sends.
    let failed = concurrent_echo(&net, ip, 50, timeout, |i| {
        (ECHO_PORTS[i as usize % 2], 4096 + i as usize * 31, 1000 + i)
    });
    assert!(failed.is_empty(), "failed: {failed:#?}");

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

    // UDP echo on both threads' sockets (lb fanout deals the datagrams to both).
    let intact = net
        .client(move || udp_echo(ip, 20, timeout))
        .join()
        .expect("the udp client thread")
        .expect("udp echo");
    assert_eq!(intact, 20);

    let echo_connections = connections_opened(&engine, flowsteer_stack::AppKind::TcpEcho);
    assert!(
        echo_connections >= 252,
        "{echo_connections} echo connections"
    );
    assert!(connections_opened(&engine, flowsteer_stack::AppKind::Http) >= 4);

    // Every connection closed: the rules that followed them are gone.
    let left = wait_for_no_exact_rules(&engine, Duration::from_secs(10));
    assert_eq!(left, 0, "exact rules left after every client closed");
    let added = stack_sum(&engine, |s| s.rules_added.get());
    let deleted = stack_sum(&engine, |s| s.rules_deleted.get());
    // One exact rule per connection: 200 + 50 echo, 2 nc, 1 + 3 http.
    assert!(added >= 256, "{added} rules added");
    assert_eq!(stack_sum(&engine, |s| s.misdirected.get()), 0);
    assert_eq!(stack_sum(&engine, |s| s.rule_add_failed.get()), 0);
    // lb fanout deals a connection's FIN and its last data to different threads: the FIN waits
    // for the data, never in vain on a lossless veth.
    eprintln!(
        "{ip}: {} segments held for what precedes them",
        stack_sum(&engine, |s| s.early_segments_held.get())
    );
    assert_eq!(stack_sum(&engine, |s| s.early_segments_expired.get()), 0);

    let report = stop_and_check(engine);
    assert!(report.total.handed_off > 0, "{}", report.render_table());
    assert!(deleted <= added);
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn rss_balancing_misdirects_and_breaks_the_kernels_connections() {
    if skip_without_client_net(&[]) {
        return;
    }
    let net = ClientNet::new();
    let mut cfg = engine_config(&net.engine_if, Balance::Rss);
    // The misdirected connections' sockets never make progress: they time out, and their
    // rules go with them.
    cfg.stack.idle_timeout_s = 1;
    let engine = Engine::start(&cfg, false).expect("the engine starts on the veth");
    // Concurrent attempts, each bounded by one short timeout per step: the whole check takes a
    // few seconds even though most attempts hang or are reset.
    let timeout = Duration::from_secs(1);
    let attempts = 16u32;
    let results: Vec<Result<(), String>> = (0..attempts)
        .map(|i| {
            let addr = SocketAddr::from((ENGINE_IP, ECHO_PORTS[i as usize % 2]));
            net.client(move || echo_once(addr, 2048, i, timeout))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().expect("a client thread"))
        .collect();
    let failed = results.iter().filter(|r| r.is_err()).count();
    let misdirected = stack_sum(&engine, |s| s.misdirected.get());
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
    assert!(
        failed * 2 >= attempts as usize,
        "only {failed} of {attempts} connections failed: {results:?}"
    );
    let refused = results
        .iter()
        .filter(|r| {
            r.as_ref()
                .is_err_and(|e| e.contains("refused") || e.contains("reset"))
        })
        .count();
    eprintln!(
        "rss: {failed} of {attempts} connections failed ({refused} refused or reset), \
         {misdirected} misdirected packets\n{}",
        report.render_table()
    );
}

#[test]
fn the_veth_example_parses_and_validates() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/veth-echo.toml");
    let cfg = Config::load(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    cfg.validate().expect("valid");
    assert_eq!(cfg.port.driver, Driver::AfPacket);
    assert_eq!(cfg.port.interface, "fsveth0");
    assert_eq!(cfg.engine.balance, Balance::Software);
    assert_eq!(cfg.engine.threads, 2);
    assert_eq!(cfg.port.queues, cfg.engine.threads);
    assert_eq!(cfg.traffic.profile, Profile::None);
    let kinds: Vec<AppKind> = cfg.stack.app.iter().map(|a| a.kind).collect();
    for kind in [
        AppKind::TcpEcho,
        AppKind::Http,
        AppKind::Discard,
        AppKind::TcpProxy,
    ] {
        assert!(kinds.contains(&kind), "{kind:?} in {kinds:?}");
    }
    // veth-demo.sh starts the proxies' servers at the namespace's address.
    let upstreams: Vec<SocketAddr> = cfg.stack.app.iter().filter_map(|a| a.upstream).collect();
    assert!(
        upstreams.iter().all(|u| u.ip() == CLIENT_IP),
        "{upstreams:?}"
    );
    assert!(
        cfg.stack.app.iter().all(|a| a.threads.is_empty()),
        "every app on every thread"
    );
    assert_eq!(cfg.port.ipv4, ENGINE_IP);
}

// ---------------------------------------------------------------------------------------------
// tcp-proxy in front of the client namespace's own servers

/// The proxy in front of the test's echo server.
const ECHO_PROXY_PORT: u16 = 3128;
const UPSTREAM_ECHO_PORT: u16 = 9000;
/// The proxy in front of `python3 -m http.server`.
const HTTP_PROXY_PORT: u16 = 3129;
const UPSTREAM_HTTP_PORT: u16 = 9001;
/// The proxy in front of `iperf3 -s` (iperf3's own default port on the client side).
const IPERF_PROXY_PORT: u16 = 5201;
const UPSTREAM_IPERF_PORT: u16 = 5202;
/// The proxy in front of a server that closes after the client's greeting.
const CLOSING_PROXY_PORT: u16 = 3130;
const UPSTREAM_CLOSING_PORT: u16 = 9002;
const GREETING_LEN: usize = 100;
const PROXY_SEQUENTIAL: u32 = 100;
const PROXY_CONCURRENT: u32 = 20;
const CURL_SEQUENTIAL: u32 = 10;
const CURL_CONCURRENT: u32 = 4;
/// The file http.server serves: 1 MiB of [`pattern`], about 725 full-sized segments a fetch.
const BLOB_LEN: usize = 1 << 20;

/// Two stack threads on the engine end, each running every proxy, software balancing.
fn proxy_config(interface: &str) -> Config {
    let mut cfg = engine_config(interface, Balance::Software);
    let upstream = |port| SocketAddr::from((CLIENT_IP, port));
    cfg.stack.app = vec![
        App::proxy(ECHO_PROXY_PORT, upstream(UPSTREAM_ECHO_PORT)),
        App::proxy(HTTP_PROXY_PORT, upstream(UPSTREAM_HTTP_PORT)),
        App::proxy(IPERF_PROXY_PORT, upstream(UPSTREAM_IPERF_PORT)),
        App::proxy(CLOSING_PROXY_PORT, upstream(UPSTREAM_CLOSING_PORT)),
    ];
    cfg
}

/// A TCP server of the client namespace's kernel, in this test: runs `serve` on every connection
/// it accepts, each on its own thread, until dropped. The socket's reads and writes time out
/// after [`KernelServer::STALL`], so every connection's thread ends.
struct KernelServer {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU32>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl KernelServer {
    const STALL: Duration = Duration::from_secs(5);

    fn start(net: &ClientNet, port: u16, serve: fn(TcpStream)) -> KernelServer {
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU32::new(0));
        let (bound, is_bound) = mpsc::channel();
        let acceptor = {
            let stop = stop.clone();
            let accepted = accepted.clone();
            net.client(move || {
                let listener = match TcpListener::bind((CLIENT_IP, port))
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                {
                    Ok(listener) => {
                        let _ = bound.send(Ok(()));
                        listener
                    }
                    Err(e) => {
                        let _ = bound.send(Err(format!("bind {CLIENT_IP}:{port}: {e}")));
                        return;
                    }
                };
                // Polling the flag keeps the acceptor's end in the test's hands without a
                // wake-up connection, which would pass through nobody's counters.
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                            thread::spawn(move || {
                                let bounded = stream.set_nonblocking(false).is_ok()
                                    && stream.set_read_timeout(Some(Self::STALL)).is_ok()
                                    && stream.set_write_timeout(Some(Self::STALL)).is_ok();
                                if bounded {
                                    serve(stream);
                                }
                            });
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(1));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(1)),
                    }
                }
            })
        };
        is_bound
            .recv_timeout(Duration::from_secs(5))
            .expect("the server's thread reports its bind")
            .expect("the server binds");
        KernelServer {
            stop,
            accepted,
            acceptor: Some(acceptor),
        }
    }

    fn accepted(&self) -> u32 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for KernelServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Echoes every byte, half-closes after the client did.
fn echo_until_eof(mut stream: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
}

/// A server process in the client namespace (`ip netns exec`), killed when dropped.
struct NsServer {
    child: Child,
}

impl NsServer {
    /// Starts `program args` in the namespace and waits until it listens on TCP `port`.
    fn start(net: &ClientNet, name: &'static str, program: &str, args: &[&str], port: u16) -> Self {
        let child = net
            .command(program, args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program} in {}: {e}", net.ns));
        let mut server = NsServer { child };
        // `ss` rather than a probe connection: iperf3 would take a probe for a client.
        let filter = format!("sport = :{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("{name} exited before listening on {port}: {status}");
            }
            let listening = Command::new("ip")
                .args(["netns", "exec", &net.ns, "ss", "-Htln", &filter])
                .output()
                .is_ok_and(|out| out.status.success() && !out.stdout.is_empty());
            if listening {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "{name} does not listen on {port} after 10 s"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NsServer {
    fn drop(&mut self) {
        // `ip netns exec` execs the program, so the child is the server itself.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory of this test (the file http.server serves, what curl wrote), removed when
/// dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(purpose: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("fskc-{purpose}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
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

/// iperf3 through the proxy on 5201 (its control and its data connection both are proxied);
/// returns the receiver's bits per second.
fn iperf_through_proxy(net: &ClientNet) -> f64 {
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
}

/// Per proxy port: (client connections accepted, upstream connects, upstream failures).
fn proxy_counts(report: &RunReport, port: u16) -> (u64, u64, u64) {
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

#[test]
fn software_balancing_proxies_the_kernels_connections_to_the_kernels_servers() {
    if skip_without_client_net(&[PYTHON3, SS, CURL]) {
        return;
    }
    let started = Instant::now();
    let net = ClientNet::new();
    let echo = KernelServer::start(&net, UPSTREAM_ECHO_PORT, echo_until_eof);
    let blob = pattern(BLOB_LEN, 4242);
    let served = TempDir::new("served");
    fs::write(served.0.join("blob.bin"), &blob).expect("write the served file");
    let served_path = served.0.to_string_lossy().into_owned();
    let fetched = TempDir::new("fetched");
    let _http = NsServer::start(
        &net,
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
    let engine =
        Engine::start(&proxy_config(&net.engine_if), false).expect("the engine starts on the veth");
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
    let failed = concurrent_echo(
        &net,
        IpAddr::V4(ENGINE_IP),
        PROXY_CONCURRENT,
        timeout,
        |i| (ECHO_PROXY_PORT, 8192 + i as usize * 331, 30_000 + i),
    );
    assert!(failed.is_empty(), "through the proxy: {failed:#?}");
    assert_eq!(
        echo.accepted(),
        PROXY_SEQUENTIAL + PROXY_CONCURRENT,
        "one upstream connection per client connection"
    );

    // curl fetching 1 MiB through the proxy from http.server, one at a time then together.
    for i in 0..CURL_SEQUENTIAL {
        let out = fetched.0.join(format!("sequential-{i}"));
        curl_blob(&net, &blob, &out).unwrap_or_else(|e| panic!("sequential curl {i}: {e}"));
    }
    let together: Vec<Result<(), String>> = thread::scope(|scope| {
        let fetches: Vec<_> = (0..CURL_CONCURRENT)
            .map(|i| {
                let out = fetched.0.join(format!("concurrent-{i}"));
                let (net, blob) = (&net, &blob);
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
    // lb deals the upstream's answers to both sockets: half of them reach the connecting thread
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
/// drains it, its window closes and the connection (and its rule) never ends.
#[test]
fn the_proxy_resets_a_half_closed_client_whose_upstream_reset() {
    if skip_without_client_net(&[]) {
        return;
    }
    let net = ClientNet::new();
    let _closing = KernelServer::start(&net, UPSTREAM_CLOSING_PORT, read_greeting_and_close);
    let engine =
        Engine::start(&proxy_config(&net.engine_if), false).expect("the engine starts on the veth");
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
}

/// iperf3 through the proxy: its control and its data connection both are proxied. iperf3's
/// server closes its data socket while the client still sends, the case of
/// `the_proxy_resets_a_half_closed_client_whose_upstream_reset`, so the data connection may end
/// in a reset (counted as an upstream failure) rather than a close.
#[test]
fn iperf3_runs_through_the_proxy() {
    if skip_without_client_net(&[IPERF3, SS]) {
        return;
    }
    let net = ClientNet::new();
    let engine =
        Engine::start(&proxy_config(&net.engine_if), false).expect("the engine starts on the veth");
    let bits = iperf_through_proxy(&net);
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
    eprintln!(
        "iperf3 through the proxy (lb fanout): {:.0} Mbit/s",
        bits / 1e6
    );
}
