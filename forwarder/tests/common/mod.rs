//! What the tests that put the Linux kernel's clients in front of the engine share: a network
//! namespace with the client end of a veth pair (IPv4 and IPv6 addresses), the engine's checks
//! after a run, and byte-exact clients.

#![allow(dead_code)] // each test binary uses a part

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use forwarder::engine::Engine;
use forwarder::report::RunReport;

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

pub fn is_root() -> bool {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// True when the test must not run: not root and not under CI (where it must fail instead).
pub fn skip_without_root() -> bool {
    if is_root() {
        return false;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true: this test needs root (network namespaces, veth pairs, AF_PACKET)");
    }
    eprintln!("skipped: needs root");
    true
}

/// Runs `program args`, panicking with its stderr when it fails.
pub fn must(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Serializes `ip netns add` and `del` between the tests of this file.
pub static NETNS_ADMIN: Mutex<()> = Mutex::new(());

/// A namespace holding the client end of a veth pair (198.18.0.2/24 and 2001:db8::2/64, checksum
/// offload off) and
/// the engine end in this namespace (no address, up, GRO/LRO off). Dropping it deletes both
/// (deleting the namespace deletes the client end, and with it the pair), also on panic.
pub struct ClientNet {
    pub ns: String,
    pub engine_if: String,
    pub client_if: String,
}

impl ClientNet {
    pub fn new() -> ClientNet {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("fskc{}{n}", std::process::id() % 100_000);
        let net = ClientNet {
            ns: id.clone(),
            engine_if: format!("{id}e"),
            client_if: format!("{id}c"),
        };
        // Leftovers of a crashed earlier run with the same pid.
        let _ = Command::new("ip").args(["netns", "del", &net.ns]).output();
        let _ = Command::new("ip")
            .args(["link", "del", &net.engine_if])
            .output();

        {
            // The first `ip netns add` on a machine mounts /run/netns; two at once can stack two
            // mounts and hide one namespace's file from its `ip netns del`.
            let _serial = NETNS_ADMIN.lock().unwrap_or_else(|e| e.into_inner());
            must("ip", &["netns", "add", &net.ns]);
        }
        must(
            "ip",
            &[
                "link",
                "add",
                &net.engine_if,
                "type",
                "veth",
                "peer",
                "name",
                &net.client_if,
                "netns",
                &net.ns,
            ],
        );
        // The engine end: link level only. No IPv6 link-local address, so the kernel of this
        // namespace sends nothing on it; GRO off so AF_PACKET sees wire-sized frames.
        must(
            "ip",
            &["link", "set", "dev", &net.engine_if, "addrgenmode", "none"],
        );
        must("ip", &["link", "set", "dev", &net.engine_if, "up"]);
        must("ethtool", &["-K", &net.engine_if, "gro", "off"]);
        // veth has no LRO on most kernels; refusing to change it is fine.
        let _ = Command::new("ethtool")
            .args(["-K", &net.engine_if, "lro", "off"])
            .output();

        // The client end: the kernel as a host on 198.18.0.0/24. Without tx checksum offload the
        // kernel writes full checksums (smoltcp drops frames with partial ones), and without it
        // scatter-gather and TSO go too, so segments are wire-sized.
        let in_ns = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &net.ns];
            all.extend_from_slice(args);
            must("ip", &all);
        };
        in_ns(&["ip", "link", "set", "dev", "lo", "up"]);
        in_ns(&[
            "ip",
            "link",
            "set",
            "dev",
            &net.client_if,
            "addrgenmode",
            "none",
        ]);
        in_ns(&["ip", "addr", "add", CLIENT_CIDR, "dev", &net.client_if]);
        // No duplicate address detection: the address is usable at once (nothing else on the
        // link could hold it).
        in_ns(&[
            "ip",
            "-6",
            "addr",
            "add",
            CLIENT_CIDR6,
            "dev",
            &net.client_if,
            "nodad",
        ]);
        in_ns(&["ip", "link", "set", "dev", &net.client_if, "up"]);
        in_ns(&["ethtool", "-K", &net.client_if, "tx", "off"]);
        net
    }

    /// `ip netns exec NS program args`, to be spawned.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.ns, program])
            .args(args);
        command
    }

    /// `ip netns exec NS program args` with `input` on stdin, killed after `limit`.
    pub fn exec(&self, program: &str, args: &[&str], input: &[u8], limit: Duration) -> Output {
        let mut child = self
            .command(program, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program} in {}: {e}", self.ns));
        let mut stdin = child.stdin.take().expect("piped stdin");
        let input = input.to_vec();
        let writer = thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let deadline = Instant::now() + limit;
        while child.try_wait().expect("wait for the child").is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let output = child
            .wait_with_output()
            .expect("collect the child's output");
        let _ = writer.join();
        output
    }

    /// Runs `work` on a new thread inside the namespace.
    pub fn client<T, F>(&self, work: F) -> thread::JoinHandle<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let path = format!("/var/run/netns/{}", self.ns);
        thread::spawn(move || {
            let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: `ns` is an open namespace file; setns(CLONE_NEWNET) moves only the calling
            // thread, which from here on creates its sockets in the client namespace.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            work()
        })
    }
}

impl Drop for ClientNet {
    fn drop(&mut self) {
        let serial = NETNS_ADMIN.lock().unwrap_or_else(|e| e.into_inner());
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        drop(serial);
        let _ = Command::new("ip")
            .args(["link", "del", &self.engine_if])
            .output();
    }
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
