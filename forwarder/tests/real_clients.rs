//! The stacks in front of real Linux clients doing what users do: many short connections one
//! after another and at once (`ab`), pipelined requests, idle and half-sent connections, a
//! datagram from a neighbour that never answers, IPv4 and IPv6. The engine runs on one end of a
//! veth pair through AF_PACKET, the clients in a network namespace on the other end (see
//! `common`). Each test names the failure it guards against.
//!
//! The tests need root (namespaces, veth, AF_PACKET), iproute2's `ip`, `ethtool`, and some
//! `ab` (apache2-utils) or `curl`. Without root or a program they print what they need
//! ("skipped: needs root", "skipped: needs ab (apt-get install apache2-utils)") and pass,
//! unless `CI=true`, where they fail.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use flowsteer_config::{App, AppKind, Balance, Config, Driver, Fanout, Idle, Profile};
use flowsteer_testrig::{AB, CURL};
use forwarder::engine::Engine;

mod common;
use common::*;

const ECHO_PORT: u16 = 7000;

/// Two stack threads, software balancing, hash fanout (a NIC with RSS), idle threads waiting:
/// http, tcp-echo and udp-echo on both threads.
fn config(interface: &str) -> Config {
    let mut cfg = Config::default();
    cfg.engine.threads = 2;
    cfg.engine.balance = Balance::Software;
    // Threads that share the cores with the clients sleep until a frame or a handoff comes.
    cfg.engine.idle = Idle::Wait;
    cfg.port.driver = Driver::AfPacket;
    cfg.port.interface = interface.to_owned();
    cfg.port.queues = 2;
    cfg.port.fanout = Fanout::Hash;
    cfg.port.ipv4 = ENGINE_IP;
    cfg.port.ipv4_prefix = 24;
    cfg.traffic.profile = Profile::None;
    cfg.metrics.enabled = false;
    cfg.stack.app = vec![
        App::new(AppKind::Http, HTTP_PORT),
        App::new(AppKind::TcpEcho, ECHO_PORT),
        App::new(AppKind::UdpEcho, UDP_ECHO_PORT),
    ];
    cfg
}

fn start(cfg: &Config) -> Engine {
    Engine::start(cfg, false).expect("the engine starts on the veth")
}

/// `ab` against the http app; returns (complete, failed, non-2xx) and the output.
fn ab(net: &ClientNet, ip: IpAddr, args: &[&str], limit: Duration) -> (u64, u64, u64, String) {
    let url = format!("http://{}:{HTTP_PORT}/", url_host(ip));
    let mut all: Vec<&str> = args.to_vec();
    all.extend_from_slice(&["-r", "-s", "5", &url]);
    let out = net.exec("ab", &all, b"", limit);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    let complete = field("Complete requests:").unwrap_or(0);
    let failed = field("Failed requests:").unwrap_or(u64::MAX);
    let non_2xx = field("Non-2xx responses:").unwrap_or(0);
    (complete, failed, non_2xx, text)
}

/// Issue: sockets in TIME-WAIT held every slot of `stack.max_connections`: after 1024
/// connections the server closed, new ones were refused for seconds.
#[test]
fn server_closed_connections_never_use_up_the_connection_slots() {
    if skip_without_client_net(&[AB]) {
        return;
    }
    let net = ClientNet::new();
    let mut cfg = config(&net.engine_if);
    // Few slots, so that the connections the server closes would fill them many times over.
    cfg.stack.max_connections = 64;
    let engine = start(&cfg);
    // HTTP/1.0 without keep-alive: the server closes each connection first (TIME-WAIT here).
    let (complete, failed, non_2xx, text) = ab(
        &net,
        IpAddr::V4(ENGINE_IP),
        &["-n", "1500", "-c", "1"],
        Duration::from_secs(120),
    );
    assert_eq!((complete, failed, non_2xx), (1500, 0, 0), "{text}");
    let (complete, failed, non_2xx, text) = ab(
        &net,
        IpAddr::V6(ENGINE_IP6),
        &["-n", "2000", "-c", "50"],
        Duration::from_secs(120),
    );
    assert_eq!((complete, failed, non_2xx), (2000, 0, 0), "{text}");
    let exhausted = app_sum(&engine, flowsteer_stack::AppKind::Http, |a| {
        a.listen_exhausted.get()
    });
    assert_eq!(exhausted, 0, "a SYN found no free socket");
    assert_eq!(wait_for_no_exact_rules(&engine, Duration::from_secs(10)), 0);
    stop_and_check(engine);
}

/// Issue: a burst of new connections found too few listening sockets; the refused SYNs were
/// retried by the clients after a second.
#[test]
fn a_burst_of_new_connections_is_accepted_at_once() {
    if skip_without_client_net(&[CURL]) {
        return;
    }
    let net = ClientNet::new();
    let engine = start(&config(&net.engine_if));
    let url = format!("http://{ENGINE_IP}:{HTTP_PORT}/");
    let children: Vec<_> = (0..100)
        .map(|_| {
            net.command(
                "curl",
                &[
                    "-sS",
                    "-o",
                    "/dev/null",
                    "--max-time",
                    "10",
                    "-w",
                    "%{http_code} %{time_connect}\n",
                    &url,
                ],
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start curl")
        })
        .collect();
    let mut slow = Vec::new();
    for child in children {
        let out = child.wait_with_output().expect("curl ends");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "curl: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut fields = text.split_whitespace();
        assert_eq!(fields.next(), Some("200"), "{text}");
        let connect: f64 = fields.next().and_then(|t| t.parse().ok()).expect("time");
        // A SYN that found no listener is retried by the kernel after one second: a connect
        // time of a second or more is that, not a slow machine.
        if connect >= 1.0 {
            slow.push(connect);
        }
    }
    let exhausted = app_sum(&engine, flowsteer_stack::AppKind::Http, |a| {
        a.listen_exhausted.get()
    });
    assert_eq!(exhausted, 0);
    assert_eq!(wait_for_no_exact_rules(&engine, Duration::from_secs(10)), 0);
    let report = stop_and_check(engine);
    assert!(
        slow.is_empty(),
        "connects retried: {slow:?}\n{}",
        report.render_table()
    );
}

/// Issue: pipelined requests were answered once, then the connection was reset.
#[test]
fn pipelined_requests_are_answered_in_order() {
    if skip_without_client_net(&[]) {
        return;
    }
    let net = ClientNet::new();
    let engine = start(&config(&net.engine_if));
    for ip in [IpAddr::V4(ENGINE_IP), IpAddr::V6(ENGINE_IP6)] {
        let answers = net
            .client(move || -> Result<Vec<String>, String> {
                let addr = SocketAddr::new(ip, HTTP_PORT);
                let mut stream = connect_to_engine(addr, Duration::from_secs(3))?;
                let one = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
                let last = "GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
                let head = "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n";
                // More requests than one segment holds, with a body in the middle.
                let post = "POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
                let requests = format!("{}{post}{head}{last}", one.repeat(100));
                stream
                    .write_all(requests.as_bytes())
                    .map_err(|e| format!("write: {e}"))?;
                let mut all = Vec::new();
                stream
                    .read_to_end(&mut all)
                    .map_err(|e| format!("read: {e} after {} bytes", all.len()))?;
                let text = String::from_utf8_lossy(&all).into_owned();
                Ok(text
                    .split("HTTP/1.1 ")
                    .skip(1)
                    .map(|r| r.lines().next().unwrap_or("").to_owned())
                    .collect())
            })
            .join()
            .expect("client thread")
            .unwrap_or_else(|e| panic!("{ip}: {e}"));
        assert_eq!(answers, vec!["200 OK"; 103], "{ip}");
    }
    stop_and_check(engine);
}

/// Issue: idle and half-sent connections stayed forever; a few idle `nc` sessions locked every
/// other client out.
#[test]
fn idle_half_sent_and_kept_alive_connections_time_out() {
    if skip_without_client_net(&[]) {
        return;
    }
    let net = ClientNet::new();
    let mut cfg = config(&net.engine_if);
    cfg.stack.max_connections = 8;
    cfg.stack.idle_timeout_s = 1;
    cfg.stack.keepalive_timeout_s = 1;
    let engine = start(&cfg);
    let outcome = net
        .client(move || -> Result<(), String> {
            let timeout = Duration::from_secs(3);
            // Clients that send nothing (the listen rule spreads them over the threads).
            let idle: Vec<TcpStream> = (0..8)
                .map(|_| connect_to_engine(SocketAddr::from((ENGINE_IP, ECHO_PORT)), timeout))
                .collect::<Result<_, _>>()?;
            // A request head that never ends, and a kept-alive connection after one answer.
            let mut half = connect_to_engine(SocketAddr::from((ENGINE_IP, HTTP_PORT)), timeout)?;
            half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
                .map_err(|e| format!("write: {e}"))?;
            let mut kept = connect_to_engine(SocketAddr::from((ENGINE_IP, HTTP_PORT)), timeout)?;
            kept.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .map_err(|e| format!("write: {e}"))?;
            read_response(&mut kept)?;
            let started = Instant::now();
            // The idle ones and the kept-alive one get a FIN: nothing was pending.
            for (i, mut stream) in idle.into_iter().chain([kept]).enumerate() {
                let mut buf = [0u8; 16];
                match stream.read(&mut buf) {
                    Ok(0) => {}
                    other => return Err(format!("connection {i}: {other:?} instead of a FIN")),
                }
            }
            // The half-sent request gets a reset: a request was pending.
            let mut buf = [0u8; 16];
            match half.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                other => return Err(format!("half-sent request: {other:?} instead of a reset")),
            }
            let waited = started.elapsed();
            // The sockets are free again: a new client is served.
            echo_once(SocketAddr::from((ENGINE_IP, ECHO_PORT)), 1000, 7, timeout)?;
            eprintln!("idle connections closed after {waited:?}");
            Ok(())
        })
        .join()
        .expect("client thread");
    outcome.expect("every idle connection timed out");
    let idle = app_sum(&engine, flowsteer_stack::AppKind::TcpEcho, |a| {
        a.idle_timeouts.get()
    }) + app_sum(&engine, flowsteer_stack::AppKind::Http, |a| {
        a.idle_timeouts.get()
    });
    let kept = app_sum(&engine, flowsteer_stack::AppKind::Http, |a| {
        a.keepalive_timeouts.get()
    });
    assert_eq!((idle, kept), (9, 1));
    assert_eq!(wait_for_no_exact_rules(&engine, Duration::from_secs(10)), 0);
    stop_and_check(engine);
}

/// Sends `frame` as it is on `interface` of the calling thread's network namespace.
fn send_raw_frame(interface: &str, frame: &[u8]) -> Result<(), String> {
    let name = std::ffi::CString::new(interface).map_err(|e| e.to_string())?;
    // SAFETY: if_nametoindex reads the NUL-terminated name and nothing else.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(format!("no interface {interface}"));
    }
    // SAFETY: socket() takes no pointers; the descriptor is closed below on every path.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Err(format!(
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: sockaddr_ll is plain data for which all-zero is valid.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = index as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&frame[..6]);
    // SAFETY: `frame` is valid for its length and `addr` is a sockaddr_ll of the size given.
    let sent = unsafe {
        libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            std::ptr::addr_of!(addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    let error = std::io::Error::last_os_error();
    // SAFETY: `fd` is the socket opened above, closed once.
    unsafe { libc::close(fd) };
    if sent != frame.len() as isize {
        return Err(format!("send a raw frame: {error}"));
    }
    Ok(())
}

/// A UDP datagram to the engine's udp-echo app from `src`, an address on the client's link that
/// no host holds, so nobody answers the engine's ARP request or neighbour solicitation for it.
fn datagram_from_nobody(engine_mac: [u8; 6], src: IpAddr, dst: IpAddr) -> Vec<u8> {
    use flowsteer_nic::wire::{build_frame, FiveTuple, FrameSpec, IpPair, IP_PROTO_UDP};
    let ip = match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => IpPair::V4 {
            src: src.octets(),
            dst: dst.octets(),
        },
        (IpAddr::V6(src), IpAddr::V6(dst)) => IpPair::V6 {
            src: src.octets(),
            dst: dst.octets(),
        },
        _ => panic!("one family"),
    };
    let mut frame = vec![0u8; 256];
    let len = build_frame(
        &mut frame,
        &FrameSpec {
            src_mac: [0x02, 0, 0, 0, 0x77, 0x77],
            dst_mac: engine_mac,
            vlan: None,
            tuple: FiveTuple {
                ip,
                proto: IP_PROTO_UDP,
                src_port: 4000,
                dst_port: UDP_ECHO_PORT,
            },
            tcp_flags: 0,
            payload: b"a datagram from a host that answers no neighbour request",
        },
    )
    .expect("the frame fits");
    frame.truncate(len);
    frame
}

/// Issue: one datagram from an on-link address that never answers ARP (or neighbour discovery)
/// blocked udp-echo's replies to every client, IPv4 and IPv6, until restart.
#[test]
fn a_neighbor_that_never_answers_blocks_no_udp_client() {
    if skip_without_client_net(&[]) {
        return;
    }
    let net = ClientNet::new();
    let mut cfg = config(&net.engine_if);
    cfg.stack.neighbor_wait_ms = 500;
    let engine = start(&cfg);
    let mac = std::fs::read_to_string(format!("/sys/class/net/{}/address", net.engine_if))
        .expect("the engine end's MAC address");
    let mut engine_mac = [0u8; 6];
    for (byte, hex) in engine_mac.iter_mut().zip(mac.trim().split(':')) {
        *byte = u8::from_str_radix(hex, 16).expect("a hex byte");
    }
    let client_if = net.client_if.clone();
    let outcome = net
        .client(move || -> Result<(), String> {
            let timeout = Duration::from_secs(3);
            for ip in [IpAddr::V4(ENGINE_IP), IpAddr::V6(ENGINE_IP6)] {
                // The client is known to the engine first, as on a live link.
                udp_echo(ip, 3, timeout)?;
                let nobody: IpAddr = match ip {
                    IpAddr::V4(_) => "198.18.0.77".parse().expect("an address"),
                    IpAddr::V6(_) => "2001:db8::77".parse().expect("an address"),
                };
                for _ in 0..3 {
                    send_raw_frame(&client_if, &datagram_from_nobody(engine_mac, nobody, ip))?;
                }
                // Every datagram of the client comes back at once, on both families.
                let intact = udp_echo(ip, 20, timeout)?;
                if intact != 20 {
                    return Err(format!("{ip}: {intact} of 20 echoed"));
                }
            }
            Ok(())
        })
        .join()
        .expect("client thread");
    outcome.expect("udp echo while a neighbour never answers");
    // Past the wait, the replies to nobody are dropped and counted.
    let deadline = Instant::now() + Duration::from_secs(5);
    let dropped = loop {
        let dropped = app_sum(&engine, flowsteer_stack::AppKind::UdpEcho, |a| {
            a.unresolved_drops.get()
        });
        if dropped >= 6 || Instant::now() >= deadline {
            break dropped;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(dropped, 6);
    stop_and_check(engine);
}

/// Issue: under `fanout = "lb"` (a NIC without RSS) a FIN handed over by another thread
/// overtook the last data segment, the stack dropped it, and the client sent it again only
/// after its retransmission timeout: a short echo connection took 200 ms instead of a few.
#[test]
fn short_connections_close_at_once_when_their_packets_arrive_on_both_queues() {
    if skip_without_client_net(&[]) {
        return;
    }
    let net = ClientNet::new();
    let mut cfg = config(&net.engine_if);
    cfg.port.fanout = Fanout::Lb;
    let engine = start(&cfg);
    let durations = net
        .client(move || -> Result<Vec<Duration>, String> {
            let timeout = Duration::from_secs(3);
            let mut durations = Vec::new();
            for i in 0..60u32 {
                let started = Instant::now();
                let addr = SocketAddr::from((ENGINE_IP, ECHO_PORT));
                let mut stream = connect_to_engine(addr, timeout)?;
                stream.set_nodelay(true).map_err(|e| e.to_string())?;
                // Data and FIN back to back, as `echo hi | nc -N` sends them.
                let data = pattern(200, i);
                stream.write_all(&data).map_err(|e| format!("write: {e}"))?;
                stream
                    .shutdown(std::net::Shutdown::Write)
                    .map_err(|e| format!("shutdown: {e}"))?;
                let mut echoed = Vec::new();
                stream
                    .read_to_end(&mut echoed)
                    .map_err(|e| format!("connection {i}: {e}"))?;
                if echoed != data {
                    return Err(format!("connection {i}: echo differs"));
                }
                durations.push(started.elapsed());
            }
            Ok(durations)
        })
        .join()
        .expect("client thread")
        .expect("short echo connections");
    let held = stack_sum(&engine, |s| s.early_segments_held.get());
    let expired = stack_sum(&engine, |s| s.early_segments_expired.get());
    let mut sorted = durations.clone();
    sorted.sort();
    eprintln!(
        "lb: 60 short connections, median {:?}, slowest {:?}; {held} segments held",
        sorted[30], sorted[59]
    );
    assert_eq!(expired, 0, "a segment waited in vain for what precedes it");
    let slow: Vec<(usize, Duration)> = durations
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, d)| *d > Duration::from_millis(100))
        .collect();
    // Not a speed claim: a dropped FIN costs the client's retransmission timeout (200 ms at
    // least on Linux), so a median that long means most FINs were dropped.
    assert!(
        sorted[30] < Duration::from_millis(100),
        "median {:?}: FINs were retransmitted; connections over 100 ms: {slow:?}",
        sorted[30]
    );
    stop_and_check(engine);
}
