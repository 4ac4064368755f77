//! The engine's stacks under attack, without root: the engine on a 2-queue uveth (two stack
//! threads, both running tcp-echo on one port, software balancing), a vbridge in front of it, and
//! on the bridge's peer ports hand-made peers that write every TCP header field themselves
//! (`flowsteer_testrig::raw_peer`) and, for the SYN flood, a smoltcp client host beside the
//! flooder.
//!
//! - A SYN flood from spoofed addresses, many times `stack.max_connections`: the rules stay at
//!   most `max_connections` per thread, no SYN is refused, clients' connections still complete
//!   byte-exact, and `stack.syn_timeout_ms` after the flood only the listen rules are left. A
//!   second variant (root) floods from a network namespace through a packet socket at the
//!   engine on AF_PACKET, with the kernel's TCP as the clients (`common::ClientNet`).
//! - Resets and FINs with wrong sequence numbers at an open connection, overlapping and
//!   out-of-window data, a peer advertising a window of 1 byte or none, a peer that never reads:
//!   the connection survives what it should, the echoed stream stays byte-exact, a stuck
//!   connection is closed by `stack.idle_timeout_s`, and the counters say so.
//!
//! Every run ends with the report's conservation check holding and the pool full.

use std::ffi::CString;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use flowsteer_config::{App, AppKind, Balance, Config, Driver, Idle, Profile};
use flowsteer_nic::vbridge::PeerPort;
use flowsteer_stack::{AppStats, StackStats};
use flowsteer_testrig::frames::{self, TcpSegment, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN};
use flowsteer_testrig::raw_peer::{RawConn, RawPeer};
use flowsteer_testrig::vbridge::PeerDevice;
use forwarder::engine::Engine;
use forwarder::report::{RunReport, StackTotals};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{IpAddress, IpEndpoint};

mod common;

use common::bridged::Bridged;

const ENGINE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const ECHO_PORT: u16 = 7000;
const SERVER: SocketAddrV4 = SocketAddrV4::new(ENGINE_IP, ECHO_PORT);
const THREADS: usize = 2;
const MAX_CONNECTIONS: usize = 64;
const SYN_TIMEOUT: Duration = Duration::from_millis(1000);
const IDLE_TIMEOUT_S: u32 = 2;
/// The engine's socket buffers: small, so that a peer that never reads fills them at once.
const SOCKET_BUFFER: usize = 4096;

fn engine_config(max_connections: usize) -> Config {
    let mut cfg = Config::default();
    cfg.engine.threads = THREADS as u16;
    cfg.port.queues = THREADS as u16;
    cfg.engine.balance = Balance::Software;
    // The rig shares the cores with the bridge and the peers.
    cfg.engine.idle = Idle::Sleep;
    cfg.engine.idle_sleep_us = 20;
    cfg.traffic.profile = Profile::None;
    cfg.metrics.enabled = false;
    cfg.stack.max_connections = max_connections as u32;
    cfg.stack.syn_timeout_ms = SYN_TIMEOUT.as_millis() as u32;
    cfg.stack.idle_timeout_s = IDLE_TIMEOUT_S;
    cfg.stack.tcp_rx_buffer = SOCKET_BUFFER as u32;
    cfg.stack.tcp_tx_buffer = SOCKET_BUFFER as u32;
    cfg.stack.app = vec![App::new(AppKind::TcpEcho, ECHO_PORT)];
    cfg
}

// ---- the rig ----

/// The engine, the bridge pumping on its own thread, and `peers` bridge ports for the test.
struct Rig {
    bridged: Bridged,
}

impl Rig {
    fn start(peers: usize) -> (Rig, Vec<PeerPort>) {
        Rig::start_with(MAX_CONNECTIONS, peers)
    }

    fn start_with(max_connections: usize, peers: usize) -> (Rig, Vec<PeerPort>) {
        let (bridged, ports) = Bridged::start(&engine_config(max_connections), peers);
        (Rig { bridged }, ports)
    }

    fn engine(&self) -> &Engine {
        self.bridged.engine()
    }

    fn exact_rules(&self) -> usize {
        self.engine().shared().table.exact_len()
    }

    /// `counter` of the echo app summed over the threads.
    fn app_sum(&self, counter: impl Fn(&AppStats) -> u64) -> u64 {
        self.stack_sum(|s| s.apps.iter().map(&counter).sum())
    }

    fn stack_sum(&self, counter: impl Fn(&StackStats) -> u64) -> u64 {
        let stacks = &self.engine().shared().stacks;
        stacks.iter().map(|s| counter(&s.stats)).sum()
    }

    /// Waits until the flow table holds at most `rules` exact rules; returns how many it holds.
    fn wait_for_exact_rules(&self, rules: usize, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let left = self.exact_rules();
            if left <= rules || Instant::now() >= deadline {
                return left;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the bridge, then the engine; checks conservation, the pool and that no rule is
    /// left, and returns the report.
    fn finish(self) -> RunReport {
        self.bridged.stop()
    }
}

fn stack_totals(report: &RunReport) -> &StackTotals {
    report.total.stack.as_ref().expect("the stacks ran")
}

fn frames_dropped_before_the_threads(report: &RunReport) -> u64 {
    report.port_dropped.iter().flat_map(|q| q.values()).sum()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i * 31 + usize::from(seed)) as u8)
        .collect()
}

// ---- the SYN flood ----

/// The `n`th SYN of a flood: to the echo port from one of 150 addresses of the engine's subnet
/// (198.18.0.100 on, hosts that answer nothing, not even ARP), every one from its own address
/// and port.
fn spoofed_syn(n: usize) -> TcpSegment {
    let host = 100 + (n % 150) as u8;
    let src_port = 1024 + (n / 150) as u16;
    TcpSegment {
        src: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, host), src_port),
        dst: SocketAddrV4::new(ENGINE_IP, ECHO_PORT),
        seq: (n as u32).wrapping_mul(2_654_435_761),
        ack: 0,
        flags: TCP_SYN,
        window: 65535,
        payload: Vec::new(),
    }
}

/// Spoofed SYNs at `rate` a second, each given to `send` (which waits out a full ring), in
/// bursts of 16 with `between` called after each, until `stop` is set and at least `least`
/// went out: returns how many were sent, and for how long.
fn flood(
    mut send: impl FnMut(&TcpSegment),
    mut between: impl FnMut(),
    (least, rate): (usize, usize),
    stop: &AtomicBool,
) -> (usize, Duration) {
    const BURST: usize = 16;
    let start = Instant::now();
    let mut sent = 0;
    while sent < least || !stop.load(Ordering::Relaxed) {
        for _ in 0..BURST {
            send(&spoofed_syn(sent));
            sent += 1;
        }
        between();
        let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
        thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    (sent, start.elapsed())
}

/// A client connection of the smoltcp host under the flood: connect, 512 bytes echoed, close.
struct Attempt {
    handle: SocketHandle,
    data: Vec<u8>,
    sent: usize,
    echoed: Vec<u8>,
    started: Instant,
    handshake: Option<Duration>,
    outcome: Option<Result<(), String>>,
}

impl Attempt {
    /// Advances; true once decided.
    fn step(&mut self, sockets: &mut SocketSet<'static>) -> bool {
        let socket = sockets.get_mut::<tcp::Socket>(self.handle);
        if self.handshake.is_none() && socket.may_send() {
            self.handshake = Some(self.started.elapsed());
        }
        if socket.state() == tcp::State::Closed || socket.state() == tcp::State::TimeWait {
            self.outcome = Some(if self.echoed == self.data {
                Ok(())
            } else {
                Err(format!(
                    "closed after {} of {} bytes (handshake {:?})",
                    self.echoed.len(),
                    self.data.len(),
                    self.handshake
                ))
            });
            return true;
        }
        if socket.can_send() && self.sent < self.data.len() {
            self.sent += socket.send_slice(&self.data[self.sent..]).unwrap_or(0);
        }
        while socket.can_recv() {
            let _ = socket.recv(|d| {
                self.echoed.extend_from_slice(d);
                (d.len(), ())
            });
        }
        if self.echoed.len() >= self.data.len() {
            socket.close();
        }
        false
    }
}

/// What the clients under the flood saw.
struct ClientResults {
    attempts: usize,
    succeeded: usize,
    failures: Vec<String>,
    /// Handshake times of the connections that completed, sorted.
    handshakes: Vec<Duration>,
    /// From the first connect to the last outcome.
    elapsed: Duration,
}

/// `attempts` echo connections of a smoltcp host, `at_once` of them open at a time, each given
/// `limit`.
fn clients(port: PeerPort, attempts: usize, at_once: usize, limit: Duration) -> ClientResults {
    let mut device = PeerDevice::new(port);
    let mut iface = device.interface(
        [0x02, 0, 0, 0, 0x20, 1],
        Ipv4Addr::new(198, 18, 0, 10),
        24,
        7,
    );
    let mut sockets = SocketSet::new(Vec::new());
    let mut open: Vec<Attempt> = Vec::new();
    let mut done: Vec<Attempt> = Vec::new();
    let mut next = 0;
    let start = Instant::now();
    while done.len() < attempts {
        while open.len() < at_once && next < attempts {
            let mut socket = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; 4096]),
                tcp::SocketBuffer::new(vec![0; 4096]),
            );
            let server = IpEndpoint::new(IpAddress::Ipv4(ENGINE_IP), ECHO_PORT);
            socket
                .connect(iface.context(), server, 20000 + next as u16)
                .expect("a fresh socket connects");
            open.push(Attempt {
                handle: sockets.add(socket),
                data: pattern(512, next as u8),
                sent: 0,
                echoed: Vec::new(),
                started: Instant::now(),
                handshake: None,
                outcome: None,
            });
            next += 1;
        }
        iface.poll(SmolInstant::now(), &mut device, &mut sockets);
        let mut i = 0;
        while i < open.len() {
            let attempt = &mut open[i];
            let decided = attempt.step(&mut sockets)
                || (attempt.started.elapsed() > limit && {
                    attempt.outcome = Some(Err(format!(
                        "no outcome within {limit:?} (handshake {:?}, {} echoed)",
                        attempt.handshake,
                        attempt.echoed.len()
                    )));
                    sockets.get_mut::<tcp::Socket>(attempt.handle).abort();
                    true
                });
            if decided {
                done.push(open.swap_remove(i));
            } else {
                i += 1;
            }
        }
        if device.port.pending() == 0 {
            thread::sleep(Duration::from_micros(50));
        }
    }
    // The last ACKs and resets go out.
    iface.poll(SmolInstant::now(), &mut device, &mut sockets);
    let mut handshakes: Vec<Duration> = done
        .iter()
        .filter(|a| a.outcome == Some(Ok(())))
        .filter_map(|a| a.handshake)
        .collect();
    handshakes.sort();
    ClientResults {
        attempts,
        succeeded: done.iter().filter(|a| a.outcome == Some(Ok(()))).count(),
        failures: done
            .iter()
            .filter_map(|a| a.outcome.clone().and_then(|o| o.err()))
            .collect(),
        handshakes,
        elapsed: start.elapsed(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A setting of the flood tests from the environment, else `default`; true when it was set.
/// `FLOWSTEER_FLOOD_RATE` (spoofed SYNs a second), `FLOWSTEER_FLOOD_MAX_CONNECTIONS` and
/// `FLOWSTEER_FLOOD_CLIENTS` (client connections) measure other points: the tests then report
/// what the clients saw instead of requiring 90 % of them to get in, and allow for frames the
/// port could not take.
fn flood_setting(name: &str, default: usize) -> (usize, bool) {
    match std::env::var(name).ok().and_then(|v| v.parse().ok()) {
        Some(value) => (value, true),
        None => (default, false),
    }
}

/// What one SYN flood test sets.
struct FloodPlan {
    rate: usize,
    max_connections: usize,
    attempts: usize,
    /// Set from the environment: report what the clients saw rather than require it.
    measuring: bool,
}

impl FloodPlan {
    fn from_env() -> FloodPlan {
        let (rate, rate_set) = flood_setting("FLOWSTEER_FLOOD_RATE", 4000);
        let (max_connections, max_set) =
            flood_setting("FLOWSTEER_FLOOD_MAX_CONNECTIONS", MAX_CONNECTIONS);
        let (attempts, attempts_set) = flood_setting("FLOWSTEER_FLOOD_CLIENTS", 40);
        FloodPlan {
            rate,
            max_connections,
            attempts,
            measuring: rate_set || max_set || attempts_set,
        }
    }

    fn sockets(&self) -> usize {
        THREADS * self.max_connections
    }

    /// At least 20 times every socket of the app (and for as long as the clients connect).
    fn least(&self) -> usize {
        20 * self.sockets()
    }
}

/// Held by each flood test for its run: two floods at once would measure each other.
static ONE_FLOOD_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// What a flood left, read from the engine before it stopped.
struct FloodRun {
    sent: u64,
    achieved: f64,
    most_rules: usize,
    opened: u64,
    released: u64,
    refused: u64,
    results: ClientResults,
}

/// Starts the flood (`flooder`, given the stop flag), waits until it holds every socket, runs
/// `clients` while it goes on and the most exact rules are watched, stops it and waits out the
/// SYN timeout: every rule must be gone then.
fn under_flood(
    engine: &Engine,
    plan: &FloodPlan,
    flooder: impl FnOnce(Arc<AtomicBool>) -> thread::JoinHandle<(usize, Duration)>,
    clients: impl FnOnce() -> ClientResults,
) -> FloodRun {
    let table = engine.shared().table.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = flooder(stop.clone());
    let saturated = Instant::now() + Duration::from_secs(5);
    while table.exact_len() < plan.sockets() && Instant::now() < saturated {
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        table.exact_len(),
        plan.sockets(),
        "the flood holds every socket"
    );
    let watching = Arc::new(AtomicBool::new(true));
    let most_rules = {
        let (watching, table) = (watching.clone(), table.clone());
        thread::spawn(move || {
            let mut most = 0;
            while watching.load(Ordering::Relaxed) {
                most = most.max(table.exact_len());
                thread::sleep(Duration::from_micros(200));
            }
            most
        })
    };
    let results = clients();
    stop.store(true, Ordering::Relaxed);
    let (sent, flooded) = flooder.join().expect("the flooder ends");
    watching.store(false, Ordering::Relaxed);
    let most_rules = most_rules.join().expect("the watcher ends");
    assert!(
        most_rules <= plan.sockets(),
        "{most_rules} exact rules for {} sockets",
        plan.sockets()
    );
    let deadline = Instant::now() + SYN_TIMEOUT + Duration::from_secs(2);
    while table.exact_len() > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(table.exact_len(), 0, "rules left after the SYN timeout");
    let app_sum = |counter: fn(&AppStats) -> u64| -> u64 {
        let stacks = &engine.shared().stacks;
        stacks
            .iter()
            .flat_map(|s| s.stats.apps.iter())
            .map(counter)
            .sum()
    };
    FloodRun {
        sent: sent as u64,
        achieved: sent as f64 / flooded.as_secs_f64(),
        most_rules,
        opened: app_sum(|a| a.connections_opened.get()),
        released: app_sum(|a| a.syn_timeouts.get() + a.half_open_reused.get()),
        refused: app_sum(|a| a.listen_exhausted.get()),
        results,
    }
}

/// Prints what the flood did and checks it against the engine's report.
fn check_flood(what: &str, plan: &FloodPlan, run: &FloodRun, report: &RunReport) {
    let totals = stack_totals(report);
    let table = report.render_table();
    let dropped = frames_dropped_before_the_threads(report);
    let results = &run.results;
    let rate_ok = results.succeeded as f64 / results.attempts as f64;
    let reset_after_handshake = results
        .failures
        .iter()
        .filter(|f| f.starts_with("closed"))
        .count();
    eprintln!(
        "SYN flood, {what}: {} spoofed SYNs at {}/s (sent at {:.0}/s; {dropped} frames the port \
         could not take) on {} sockets ({THREADS} threads x max_connections {}); {}/{} client \
         connections echoed ({:.0} %), handshake p50 {:?} p90 {:?} max {:?}; {} reset after \
         their handshake (their ACK came after the flood took the socket), {} failed otherwise; \
         most exact rules {}; {} half-open released by the SYN timeout, {} taken by a new SYN; \
         clients ran {:?}; failures: {:?}",
        run.sent,
        plan.rate,
        run.achieved,
        plan.sockets(),
        plan.max_connections,
        results.succeeded,
        results.attempts,
        rate_ok * 100.0,
        percentile(&results.handshakes, 0.5),
        percentile(&results.handshakes, 0.9),
        results.handshakes.last().copied().unwrap_or_default(),
        reset_after_handshake,
        results.failures.len() - reset_after_handshake,
        run.most_rules,
        totals.syn_timeouts,
        totals.half_open_reused,
        results.elapsed,
        results.failures,
    );
    assert_eq!(
        run.refused, 0,
        "no SYN found every socket established\n{table}"
    );
    assert_eq!(
        totals.connections_opened, totals.connections_closed,
        "{table}"
    );
    // Every spoofed SYN that reached a thread opened a half-open connection that only a
    // release ended; a client's connection ends by its close, or by a release when its ACK
    // came too late (it is then reset).
    assert!(
        run.released + dropped >= run.sent && run.released <= run.opened,
        "{} spoofed SYNs, {dropped} frames dropped, {} opened, {} released\n{table}",
        run.sent,
        run.opened,
        run.released
    );
    if !plan.measuring {
        assert_eq!(dropped, 0, "{table}");
        assert!(
            rate_ok >= 0.9,
            "{} of {} client connections failed under the flood: {:?}",
            results.failures.len(),
            results.attempts,
            results.failures
        );
    }
}

#[test]
fn a_syn_flood_far_beyond_max_connections_leaves_clients_their_way_in() {
    let _alone = ONE_FLOOD_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let plan = FloodPlan::from_env();
    let (rig, mut ports) = Rig::start_with(plan.max_connections, 2);
    let client_port = ports.pop().expect("two ports");
    let peer = RawPeer::join(ports.pop().expect("two ports"), 99, ENGINE_IP);
    let run = under_flood(
        rig.engine(),
        &plan,
        |stop| {
            let (least, rate) = (plan.least(), plan.rate);
            thread::spawn(move || {
                // Through the link of `peer`, as from behind a router; the engine's ARP
                // requests for the spoofed hosts come back to it and are dropped.
                let send = |syn: &TcpSegment| peer.send(syn);
                let drain = || while peer.port.recv().is_some() {};
                flood(send, drain, (least, rate), &stop)
            })
        },
        || clients(client_port, plan.attempts, 4, Duration::from_secs(4)),
    );
    let report = rig.finish();
    check_flood("vbridge", &plan, &run, &report);
}
// ---- forged and odd segments at an open connection ----

/// The engine's answers to a flood: what `peer` receives for `local_port` within `period`.
fn answers(peer: &RawPeer, local_port: u16, period: Duration) -> Vec<TcpSegment> {
    peer.collect(local_port, period)
}

#[test]
fn resets_and_fins_with_wrong_sequence_numbers_leave_the_connection_open() {
    const PORT: u16 = 41000;
    let (rig, mut ports) = Rig::start(1);
    let peer = RawPeer::join(ports.pop().expect("a port"), 20, ENGINE_IP);
    let mut conn = RawConn::open(&peer, PORT, SERVER, 65535);
    conn.echo(&pattern(1000, 1));
    assert_eq!(rig.exact_rules(), 1);

    // Resets out of the engine's receive window, behind and far ahead: dropped without a word
    // (RFC 9293 3.10.7.4, RFC 5961 3.2).
    for k in 0..1000u32 {
        let behind = conn.snd_nxt.wrapping_sub(100_000 + k * 1000);
        let ahead = conn.snd_nxt.wrapping_add(100_000 + k * 1000);
        conn.send(behind, TCP_RST, &[]);
        conn.send(ahead, TCP_RST, &[]);
    }
    let replies = answers(&peer, PORT, Duration::from_millis(300));
    assert_eq!(replies, Vec::new(), "out-of-window resets are not answered");
    conn.echo(&pattern(1000, 2));

    // FINs within the window but beyond the data (a hole before them), then FINs out of the
    // window: the first are held for what precedes them (bounded), then ignored; the others
    // are answered by a challenge ACK at most once a second (RFC 5961 7).
    for k in 0..1000u32 {
        conn.send(conn.snd_nxt.wrapping_add(2000 + k % 1000), TCP_FIN, &[]);
    }
    for k in 0..1000u32 {
        conn.send(conn.snd_nxt.wrapping_add(100_000 + k), TCP_FIN, &[]);
    }
    let replies = answers(&peer, PORT, Duration::from_millis(400));
    assert!(
        replies.len() <= 2,
        "challenge ACKs are rate-limited: {replies:?}"
    );
    for reply in &replies {
        assert_eq!(reply.flags, TCP_ACK, "{reply:?}");
        assert_eq!(
            reply.ack, conn.snd_nxt,
            "a challenge ACK names the next byte expected"
        );
    }
    conn.echo(&pattern(1000, 3));
    assert_eq!(rig.exact_rules(), 1, "the connection is still open");
    let held = rig.stack_sum(|s| s.early_segments_held.get());
    assert!(
        (1..=1000).contains(&held),
        "{held} FINs held for the data before them"
    );

    // A reset inside the window that is not exactly at the next expected byte: smoltcp takes it
    // (no RFC 5961 3.2 challenge ACK), the connection ends and its rule goes.
    conn.send(conn.snd_nxt.wrapping_add(100), TCP_RST, &[]);
    assert_eq!(rig.wait_for_exact_rules(0, Duration::from_secs(2)), 0);
    conn.send(conn.snd_nxt, TCP_PSH, b"after the reset");
    let after = peer.recv(PORT, Duration::from_secs(2)).expect("an answer");
    assert_eq!(after.flags & TCP_RST, TCP_RST, "{after:?}");
    let closed = rig.app_sum(|a| a.connections_closed.get());
    let report = rig.finish();
    assert_eq!(closed, 1);
    assert_eq!(stack_totals(&report).connections_opened, 1);
    assert_eq!(stack_totals(&report).bytes_in, 3000);
    assert_eq!(stack_totals(&report).bytes_out, 3000);
}

#[test]
fn overlapping_and_out_of_window_data_is_echoed_byte_exact() {
    const PORT: u16 = 41001;
    let (rig, mut ports) = Rig::start(1);
    let peer = RawPeer::join(ports.pop().expect("a port"), 21, ENGINE_IP);
    let mut conn = RawConn::open(&peer, PORT, SERVER, 65535);
    let data = pattern(3000, 7);
    let base = conn.snd_nxt;
    let at = |offset: usize| base.wrapping_add(offset as u32);
    let garbage = vec![0xee; 200];
    // Ahead of the window and behind what was received: dropped (and ACKed).
    conn.send(at(200_000), TCP_PSH, &garbage);
    conn.send(base.wrapping_sub(50_000), TCP_PSH, &garbage);
    // Out of order, overlapping each other, repeated.
    for (from, to) in [
        (2000, 3000),
        (0, 1000),
        (500, 1500),
        (0, 1000),
        (1400, 2500),
        (2900, 3000),
    ] {
        conn.send(at(from), TCP_PSH, &data[from..to]);
    }
    conn.snd_nxt = at(data.len());
    let (echoed, reset) = conn.read(data.len(), Duration::from_secs(5));
    assert!(!reset);
    assert!(
        echoed == data,
        "{} of {} bytes echoed, or differing",
        echoed.len(),
        data.len()
    );
    // The hole-free stream goes on from there.
    conn.echo(&pattern(500, 8));
    assert!(conn.close(), "the engine closes after the client");
    assert_eq!(rig.wait_for_exact_rules(0, Duration::from_secs(2)), 0);
    let report = rig.finish();
    let totals = stack_totals(&report);
    assert_eq!(totals.bytes_in, 3500, "each byte taken once");
    assert_eq!(totals.bytes_out, 3500);
    assert_eq!(
        (totals.connections_opened, totals.connections_closed),
        (1, 1)
    );
}

#[test]
fn a_window_of_one_byte_or_none_gets_the_echo_and_a_peer_that_never_reads_is_closed() {
    let (rig, mut ports) = Rig::start(1);
    let peer = RawPeer::join(ports.pop().expect("a port"), 22, ENGINE_IP);

    // A window of 1 byte: the echo comes a byte at a time, never more than the window.
    let mut conn = RawConn::open(&peer, 41002, SERVER, 1);
    let data = pattern(200, 9);
    conn.write(&data, 512);
    let mut echoed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while echoed.len() < data.len() && Instant::now() < deadline {
        let Some(s) = peer.recv(41002, Duration::from_millis(500)) else {
            continue;
        };
        assert!(
            s.payload.len() <= 1,
            "{} bytes into a 1-byte window",
            s.payload.len()
        );
        if s.seq == conn.rcv_nxt && !s.payload.is_empty() {
            echoed.extend_from_slice(&s.payload);
            conn.rcv_nxt = conn.rcv_nxt.wrapping_add(1);
        }
        conn.ack();
    }
    assert!(echoed == data, "{} of {} bytes", echoed.len(), data.len());
    assert!(conn.close());

    // A closed window: nothing but probes until it opens, then the whole echo.
    let mut conn = RawConn::open(&peer, 41003, SERVER, 0);
    let data = pattern(300, 10);
    conn.write(&data, 512);
    let waiting = answers(&peer, 41003, Duration::from_millis(700));
    for s in &waiting {
        assert!(
            s.payload.len() <= 1,
            "{} bytes into a closed window",
            s.payload.len()
        );
        conn.ack();
    }
    conn.window = 4096;
    conn.ack();
    let (echoed, reset) = conn.read(data.len(), Duration::from_secs(5));
    assert!(
        !reset && echoed == data,
        "{} of {} bytes",
        echoed.len(),
        data.len()
    );
    assert!(conn.close());

    // Never reads: the peer sends whenever the engine's window lets it; the engine takes what
    // its two buffers hold (the echo fills the send buffer, then the receive buffer fills),
    // then closes its window; the peer answers every probe with its closed window; the idle
    // timeout resets the connection.
    let mut conn = RawConn::open(&peer, 41004, SERVER, 0);
    let isn = conn.snd_nxt;
    let data = pattern(4 * SOCKET_BUFFER, 11);
    conn.write(&data[..512], 512);
    let started = Instant::now();
    let mut taken = 0usize;
    let mut reset = false;
    while !reset && started.elapsed() < Duration::from_secs(u64::from(IDLE_TIMEOUT_S) + 3) {
        let Some(s) = peer.recv(41004, Duration::from_millis(200)) else {
            continue;
        };
        reset = s.flags & TCP_RST != 0;
        if reset {
            break;
        }
        taken = taken.max(s.ack.wrapping_sub(isn) as usize);
        let room = usize::from(s.window).min(512).min(data.len() - taken);
        if room > 0 {
            conn.snd_nxt = s.ack;
            conn.write(&data[taken..taken + room], 512);
        } else {
            conn.ack();
        }
    }
    assert!(reset, "the idle timeout resets the connection");
    assert!(
        started.elapsed() >= Duration::from_secs(u64::from(IDLE_TIMEOUT_S)),
        "not before the idle timeout"
    );
    assert_eq!(
        taken,
        2 * SOCKET_BUFFER,
        "the engine holds its two buffers' worth"
    );
    assert_eq!(rig.app_sum(|a| a.idle_timeouts.get()), 1);
    assert_eq!(rig.wait_for_exact_rules(0, Duration::from_secs(1)), 0);
    let report = rig.finish();
    let totals = stack_totals(&report);
    assert_eq!(
        (totals.connections_opened, totals.connections_closed),
        (3, 3)
    );
    // The echo read what moved into the send buffer; the rest stayed in the receive buffer.
    assert_eq!(totals.bytes_in, 200 + 300 + SOCKET_BUFFER as u64);
}

// ---- the SYN flood from the kernel's side (root) ----

/// A sender of raw Ethernet frames on an interface of the calling thread's namespace: an
/// AF_PACKET socket of protocol 0 (it receives nothing), closed when dropped.
struct RawSender {
    fd: OwnedFd,
    to: libc::sockaddr_ll,
}

impl RawSender {
    fn on(interface: &str) -> RawSender {
        let name = CString::new(interface).expect("an interface name without NUL");
        // SAFETY: `name` is a NUL-terminated string that outlives the call.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert_ne!(index, 0, "no interface {interface}");
        // SAFETY: a plain socket(2) call; the descriptor is owned by `OwnedFd` at once.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `fd` is a descriptor just opened and owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain old data; all zeros is a valid value to fill in.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = index as i32;
        RawSender { fd, to }
    }

    /// Sends `frame`, waiting while the interface's queue is full.
    fn send(&self, frame: &[u8]) {
        loop {
            // SAFETY: `frame` and `self.to` outlive the call, and the lengths passed are theirs.
            let sent = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&self.to as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if sent >= 0 {
                return;
            }
            let error = std::io::Error::last_os_error();
            assert_eq!(error.raw_os_error(), Some(libc::ENOBUFS), "sendto: {error}");
            thread::sleep(Duration::from_micros(20));
        }
    }
}

/// `attempts` echo connections of the kernel's TCP in the namespace, 4 threads each making its
/// share one after the other.
fn kernel_clients(net: &common::ClientNet, attempts: usize, limit: Duration) -> ClientResults {
    const AT_ONCE: usize = 4;
    let start = Instant::now();
    let workers: Vec<_> = (0..AT_ONCE)
        .map(|w| {
            net.client(move || {
                (w..attempts)
                    .step_by(AT_ONCE)
                    .map(|n| kernel_echo(&pattern(512, n as u8), limit))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let outcomes: Vec<Result<Duration, String>> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("a client thread ends"))
        .collect();
    let mut handshakes: Vec<Duration> = outcomes.iter().filter_map(|o| o.clone().ok()).collect();
    handshakes.sort();
    ClientResults {
        attempts,
        succeeded: handshakes.len(),
        failures: outcomes.into_iter().filter_map(Result::err).collect(),
        handshakes,
        elapsed: start.elapsed(),
    }
}

/// One connection: its handshake time once `data` came back whole, else what went wrong
/// ("closed ..." once the handshake was done).
fn kernel_echo(data: &[u8], limit: Duration) -> Result<Duration, String> {
    let server = std::net::SocketAddr::from((ENGINE_IP, ECHO_PORT));
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&server, limit).map_err(|e| {
        // A reset of the connection the handshake had just set up can reach the socket
        // before `connect` returns: the kernel then reports it there.
        if e.kind() == std::io::ErrorKind::ConnectionReset {
            format!("closed as the handshake ended: {e}")
        } else {
            format!("{e}")
        }
    })?;
    let handshake = started.elapsed();
    let echo = |stream: &mut TcpStream| -> std::io::Result<Vec<u8>> {
        stream.set_read_timeout(Some(limit))?;
        stream.write_all(data)?;
        let mut echoed = vec![0; data.len()];
        stream.read_exact(&mut echoed)?;
        stream.shutdown(Shutdown::Write)?;
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest)?;
        echoed.extend_from_slice(&rest);
        Ok(echoed)
    };
    match echo(&mut stream) {
        Ok(echoed) if echoed == data => Ok(handshake),
        Ok(echoed) => Err(format!("closed with {} bytes that differ", echoed.len())),
        Err(e) => Err(format!("closed after the handshake ({handshake:?}): {e}")),
    }
}

#[test]
fn a_syn_flood_from_the_kernels_side_leaves_the_kernels_clients_their_way_in() {
    if common::skip_without_client_net(&[]) {
        return;
    }
    let _alone = ONE_FLOOD_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let plan = FloodPlan::from_env();
    let net = common::ClientNet::new();
    let mut cfg = common::two_threads_serving(vec![App::new(AppKind::TcpEcho, ECHO_PORT)]);
    cfg.port.driver = Driver::AfPacket;
    cfg.port.interface = net.engine_if.clone();
    cfg.stack.max_connections = plan.max_connections as u32;
    cfg.stack.syn_timeout_ms = SYN_TIMEOUT.as_millis() as u32;
    let engine = Engine::start(&cfg, false).expect("the engine starts on the veth");
    let address = format!("/sys/class/net/{}/address", net.engine_if);
    let text = std::fs::read_to_string(&address).expect("the engine end's MAC address");
    let mut engine_mac = [0u8; 6];
    for (byte, hex) in engine_mac.iter_mut().zip(text.trim().split(':')) {
        *byte = u8::from_str_radix(hex, 16).expect("a MAC address in hex");
    }
    let client_if = net.client_if.clone();
    let run = under_flood(
        &engine,
        &plan,
        |stop| {
            let (least, rate) = (plan.least(), plan.rate);
            net.client(move || {
                // From the namespace's link, as from behind a router.
                let sender = RawSender::on(&client_if);
                let mac = [0x02, 0, 0, 0, 0x66, 0x66];
                let send = |syn: &TcpSegment| sender.send(&frames::tcp_v4(mac, engine_mac, syn));
                flood(send, || {}, (least, rate), &stop)
            })
        },
        || kernel_clients(&net, plan.attempts, Duration::from_secs(4)),
    );
    let report = common::stop_and_check(engine);
    check_flood("kernel clients", &plan, &run, &report);
}
