//! What the tests that put the Linux kernel's clients in front of the engine share: a network
//! namespace with the client end of a veth pair (IPv4 and IPv6 addresses), the engine's checks
//! after a run, and byte-exact clients; the kernel's servers ([`servers`]) and the suite every
//! port that serves the kernel's clients passes ([`suite`]); and the engine behind a virtual
//! bridge for the tests whose clients are user-space hosts ([`bridged`]).

#![allow(dead_code)] // each test binary uses a part

pub mod bridged;
pub mod generated;
pub mod servers;
pub mod suite;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Output};
use std::sync::{Arc, Barrier, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use flowsteer_testrig::net::{ip, run, unique_name, Netns, Veth};
use flowsteer_testrig::{skip_without_root_and, Tool, ETHTOOL, IP};

use flowsteer_config::{App, Balance, Config, Idle, Profile};
use forwarder::engine::Engine;
use forwarder::report::RunReport;

pub mod queueless;

pub const ENGINE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const CLIENT_CIDR: &str = "198.18.0.2/24";
/// The engine's IPv6 address (the configuration's default `port.ipv6`, /64).
pub const ENGINE_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
pub const CLIENT_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
pub const CLIENT_CIDR6: &str = "2001:db8::2/64";
pub const UDP_ECHO_PORT: u16 = 7;
pub const HTTP_PORT: u16 = 8080;

// ---------------------------------------------------------------------------------------------
// Environment

/// The client's address of the family of the engine address `engine`.
pub fn client_ip_for(engine: IpAddr) -> IpAddr {
    match engine {
        IpAddr::V4(_) => IpAddr::V4(CLIENT_IP),
        IpAddr::V6(_) => IpAddr::V6(CLIENT_IP6),
    }
}

/// A URL host for `ip`: IPv6 literals in brackets.
pub fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// True when the test must not run: a [`ClientNet`] needs root, `ip` and `ethtool`, and the
/// test's own clients `clients` (curl, nc, ...) must be in `PATH`. Outside CI it prints what is
/// missing and the packages that bring it; under `CI=true` it fails instead.
pub fn skip_without_client_net(clients: &[Tool]) -> bool {
    let mut tools = vec![IP, ETHTOOL];
    tools.extend_from_slice(clients);
    skip_without_root_and(&tools)
}

/// A namespace holding the client end of a veth pair (198.18.0.2/24 and 2001:db8::2/64, checksum
/// offload off) and the engine end in this namespace (no address, up, GRO/LRO off). Dropping it
/// deletes both (deleting the namespace deletes the client end, and with it the pair), also on
/// panic.
pub struct ClientNet {
    pub ns: String,
    pub engine_if: String,
    pub client_if: String,
    // Dropped in this order: the namespace (and with it the pair), then the engine end if the
    // kernel has not deleted it yet.
    netns: Netns,
    _veth: Veth,
}

impl ClientNet {
    pub fn new() -> ClientNet {
        let id = unique_name("fskc");
        let netns = Netns::new(&id);
        let veth = Veth::with_peer_in(format!("{id}e"), format!("{id}c"), &netns);
        let (engine_if, client_if) = (veth.a.clone(), veth.b.clone());
        // The engine end: link level only. No IPv6 link-local address, so the kernel of this
        // namespace sends nothing on it; GRO off so AF_PACKET sees wire-sized frames.
        ip(&["link", "set", "dev", &engine_if, "addrgenmode", "none"]);
        ip(&["link", "set", "dev", &engine_if, "up"]);
        run("ethtool", &["-K", &engine_if, "gro", "off"]);
        // veth has no LRO on most kernels; refusing to change it is fine.
        let _ = Command::new("ethtool")
            .args(["-K", &engine_if, "lro", "off"])
            .output();

        // The client end: the kernel as a host on 198.18.0.0/24. Without tx checksum offload the
        // kernel writes full checksums (smoltcp drops frames with partial ones), and without it
        // scatter-gather and TSO go too, so segments are wire-sized.
        netns.run("ip", &["link", "set", "dev", "lo", "up"]);
        netns.run(
            "ip",
            &["link", "set", "dev", &client_if, "addrgenmode", "none"],
        );
        netns.run("ip", &["addr", "add", CLIENT_CIDR, "dev", &client_if]);
        // No duplicate address detection: the address is usable at once (nothing else on the
        // link could hold it).
        netns.run(
            "ip",
            &[
                "-6",
                "addr",
                "add",
                CLIENT_CIDR6,
                "dev",
                &client_if,
                "nodad",
            ],
        );
        netns.run("ip", &["link", "set", "dev", &client_if, "up"]);
        netns.run("ethtool", &["-K", &client_if, "tx", "off"]);
        ClientNet {
            ns: id,
            engine_if,
            client_if,
            netns,
            _veth: veth,
        }
    }

    /// The client network of the whole test process, made on first use and deleted when the
    /// process exits: for a port that holds the engine end for the process's lifetime (a DPDK
    /// device the EAL creates at its start, once per process). A `static` is never dropped,
    /// so the deletion is registered with `atexit`, which runs after the test harness returns
    /// (also when tests failed; not when the process is killed).
    pub fn for_the_process() -> &'static ClientNet {
        static NET: OnceLock<ClientNet> = OnceLock::new();
        extern "C" fn delete_at_exit() {
            if let Some(net) = NET.get() {
                net.delete();
            }
        }
        NET.get_or_init(|| {
            // SAFETY: atexit only stores the function pointer; `delete_at_exit` is an
            // `extern "C" fn()` that does not unwind (it runs `ip`, ignoring its failures).
            let registered = unsafe { libc::atexit(delete_at_exit) };
            assert_eq!(
                registered, 0,
                "atexit refused the client network's deletion"
            );
            ClientNet::new()
        })
    }

    /// Deletes the namespace (and with it the pair) and the engine end, if the kernel has not
    /// already: what dropping does, for a network that is never dropped.
    fn delete(&self) {
        for args in [
            ["netns", "del", self.ns.as_str()],
            ["link", "del", self.engine_if.as_str()],
        ] {
            let _ = Command::new("ip").args(args).output();
        }
    }

    /// `ip netns exec NS program args`, to be spawned.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        self.netns.command(program, args)
    }

    /// `ip netns exec NS program args` with `input` on stdin, killed after `limit`.
    pub fn exec(&self, program: &str, args: &[&str], input: &[u8], limit: Duration) -> Output {
        self.netns.exec(program, args, input, limit)
    }

    /// Runs `work` on a new thread inside the namespace.
    pub fn client<T, F>(&self, work: F) -> thread::JoinHandle<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.netns.thread(work)
    }
}

/// Two stack threads on two queues at the engine's addresses running `apps`, software
/// balancing, no traffic generator, no metrics endpoint: what each port's keys complete. Idle
/// threads sleep: that leaves the cores to the kernel's clients (a port that hands each frame
/// over at once then has the sleep as its latency floor).
pub fn two_threads_serving(apps: Vec<App>) -> Config {
    let mut cfg = Config::default();
    cfg.engine.threads = 2;
    cfg.engine.balance = Balance::Software;
    cfg.engine.idle = Idle::Sleep;
    cfg.port.queues = 2;
    cfg.port.ipv4 = ENGINE_IP;
    cfg.port.ipv4_prefix = 24;
    cfg.traffic.profile = Profile::None;
    cfg.metrics.enabled = false;
    cfg.stack.app = apps;
    cfg
}

/// Sum of a stack counter over the threads.
pub fn stack_sum(engine: &Engine, counter: impl Fn(&flowsteer_stack::StackStats) -> u64) -> u64 {
    engine
        .shared()
        .stacks
        .iter()
        .map(|s| counter(&s.stats))
        .sum()
}

/// Sum of an app counter over the threads' apps of `kind`.
pub fn app_sum(
    engine: &Engine,
    kind: flowsteer_stack::AppKind,
    counter: impl Fn(&flowsteer_stack::AppStats) -> u64,
) -> u64 {
    engine
        .shared()
        .stacks
        .iter()
        .flat_map(|s| s.apps.iter().zip(&s.stats.apps))
        .filter(|(spec, _)| spec.kind == kind)
        .map(|(_, stats)| counter(stats))
        .sum()
}

/// Connections the apps of `kind` opened, over every thread.
pub fn connections_opened(engine: &Engine, kind: flowsteer_stack::AppKind) -> u64 {
    app_sum(engine, kind, |a| a.connections_opened.get())
}

/// Stops the engine and checks what holds after every run: conservation and a full pool.
pub fn stop_and_check(engine: Engine) -> RunReport {
    let report = engine.stop().expect("the engine stops cleanly");
    assert!(
        report.conservation.ok,
        "conservation failed: {:?}\n{}",
        report.conservation.failures,
        report.render_table()
    );
    assert_eq!(
        report.pool.available,
        report.pool.capacity,
        "every buffer back in the pool\n{}",
        report.render_table()
    );
    assert_eq!(report.flowtable.exact_rules, 0, "thread exit deletes rules");
    assert_eq!(
        report.flowtable.listen_rules, 0,
        "thread exit deletes rules"
    );
    report
}

// ---------------------------------------------------------------------------------------------
// Clients

/// `len` bytes that differ per connection, so a byte echoed on the wrong connection shows.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// `count` echo connections from the client namespace one after another, connection `i` to
/// `port(i)` with `512 + i * 97 % 6000` bytes of its own pattern. Returns the failures.
pub fn sequential_echo(
    net: &ClientNet,
    ip: IpAddr,
    count: u32,
    timeout: Duration,
    port: impl Fn(u32) -> u16 + Send + 'static,
) -> Vec<String> {
    net.client(move || {
        (0..count)
            .filter_map(|i| {
                let len = 512 + (i as usize * 97) % 6000;
                echo_once(SocketAddr::new(ip, port(i)), len, i, timeout)
                    .err()
                    .map(|e| format!("connection {i}: {e}"))
            })
            .collect::<Vec<_>>()
    })
    .join()
    .expect("the sequential client thread")
}

/// `count` echo connections from the client namespace at once (all start after a barrier);
/// `plan(i)` gives connection `i`'s (server port, bytes, pattern seed). Returns the failures.
pub fn concurrent_echo(
    net: &ClientNet,
    ip: IpAddr,
    count: u32,
    timeout: Duration,
    plan: impl Fn(u32) -> (u16, usize, u32),
) -> Vec<String> {
    let barrier = Arc::new(Barrier::new(count as usize));
    let clients: Vec<_> = (0..count)
        .map(|i| {
            let barrier = barrier.clone();
            let (port, len, seed) = plan(i);
            net.client(move || {
                barrier.wait();
                echo_once(SocketAddr::new(ip, port), len, seed, timeout)
                    .map_err(|e| format!("concurrent {i}: {e}"))
            })
        })
        .collect();
    clients
        .into_iter()
        .filter_map(|h| h.join().expect("a concurrent client thread").err())
        .collect()
}

/// One tcp-echo connection: sends `len` bytes, reads them back, half-closes and expects the
/// server to close after it. Every step is bounded by `timeout`.
pub fn echo_once(addr: SocketAddr, len: usize, seed: u32, timeout: Duration) -> Result<(), String> {
    let mut stream = connect_to_engine(addr, timeout)?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("socket options: {e}"))?;
    let data = pattern(len, seed);
    // The echo app's 64 KiB buffers hold a whole message: writing it all before reading cannot
    // deadlock.
    stream
        .write_all(&data)
        .map_err(|e| format!("write to {addr}: {e}"))?;
    let mut echoed = vec![0u8; len];
    stream
        .read_exact(&mut echoed)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    if let Some(at) = data.iter().zip(&echoed).position(|(a, b)| a != b) {
        return Err(format!("{addr}: echoed byte {at} of {len} differs"));
    }
    close_after_the_echo(&mut stream, addr)
}

/// Half-closes an echo connection and expects the server to close after it, with nothing more.
pub fn close_after_the_echo(stream: &mut TcpStream, addr: SocketAddr) -> Result<(), String> {
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown {addr}: {e}"))?;
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .map_err(|e| format!("wait for {addr} to close: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{addr}: {} bytes after the echo", rest.len()));
    }
    Ok(())
}

/// Reads one HTTP/1.1 response (head and `Content-Length` body) from `stream`.
pub fn read_response(stream: &mut TcpStream) -> Result<(String, Vec<u8>), String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > 8192 {
            return Err("response head longer than 8 KiB".into());
        }
        match stream.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            Ok(_) => return Err("connection closed inside a response head".into()),
            Err(e) => return Err(format!("read a response head: {e}")),
        }
    }
    let head = String::from_utf8(buf).map_err(|_| "response head is not UTF-8".to_string())?;
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .ok_or_else(|| format!("no Content-Length in {head:?}"))?;
    let mut body = vec![0u8; length];
    stream
        .read_exact(&mut body)
        .map_err(|e| format!("read a response body: {e}"))?;
    Ok((head, body))
}

/// A kernel TCP connection to the engine's `port`, with `timeout` on connect, reads and writes.
pub fn connect_to_engine(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    let stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("socket options: {e}"))?;
    Ok(stream)
}

/// Two GETs on one keep-alive connection; returns both bodies.
pub fn http_keep_alive(ip: IpAddr, timeout: Duration) -> Result<[String; 2], String> {
    let mut stream = connect_to_engine(SocketAddr::new(ip, HTTP_PORT), timeout)?;
    let mut bodies = [String::new(), String::new()];
    for body_out in &mut bodies {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: 198.18.0.1\r\n\r\n")
            .map_err(|e| format!("write a request: {e}"))?;
        let (head, body) = read_response(&mut stream)?;
        if !head.starts_with("HTTP/1.1 200 ") {
            return Err(format!("status line of {head:?}"));
        }
        if !head.to_ascii_lowercase().contains("connection: keep-alive") {
            return Err(format!("no keep-alive in {head:?}"));
        }
        *body_out = String::from_utf8(body).map_err(|_| "body is not UTF-8".to_string())?;
    }
    Ok(bodies)
}

/// True when `body` is the http app's answer: "flowsteer thread N port 8080\n", N in 0..2.
pub fn is_http_body(body: &str) -> bool {
    ["0", "1"]
        .iter()
        .any(|t| body == format!("flowsteer thread {t} port {HTTP_PORT}\n"))
}

/// `count` datagrams to the udp-echo app; returns how many came back intact.
pub fn udp_echo(ip: IpAddr, count: u32, timeout: Duration) -> Result<u32, String> {
    let socket = UdpSocket::bind((client_ip_for(ip), 0)).map_err(|e| format!("bind: {e}"))?;
    socket
        .set_read_timeout(Some(timeout))
        .map_err(|e| format!("socket options: {e}"))?;
    socket
        .connect((ip, UDP_ECHO_PORT))
        .map_err(|e| format!("connect: {e}"))?;
    let mut intact = 0;
    let mut buf = [0u8; 2048];
    for seq in 0..count {
        let data = pattern(64 + seq as usize * 13, 10_000 + seq);
        socket.send(&data).map_err(|e| format!("send: {e}"))?;
        match socket.recv(&mut buf) {
            Ok(n) if buf[..n] == data[..] => intact += 1,
            Ok(n) => return Err(format!("datagram {seq}: {n} bytes that differ")),
            Err(e) => return Err(format!("datagram {seq}: {e}")),
        }
    }
    Ok(intact)
}

/// Polls until the flow table holds no exact rule, or the deadline passes.
pub fn wait_for_no_exact_rules(engine: &Engine, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let left = engine.shared().table.exact_len();
        if left == 0 || Instant::now() >= deadline {
            return left;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
