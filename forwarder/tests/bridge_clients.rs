//! The connection test of the hardware-free rig: the engine on a 2-queue uveth with a protocol
//! stack on each of its 2 threads, a vbridge between the uveth and four smoltcp client hosts
//! (198.18.0.10 to .13, each its own MAC and bridge port), all driven by the test thread.
//!
//! The threads listen the way gazelle's do: thread 0 runs tcp-echo on 7000, thread 1 tcp-echo on
//! 7001, both run http on 8080 and udp-echo on 7. Soft RSS spreads the clients' flows over both
//! queues, so about half of the echo connections arrive on the queue of the thread that does not
//! listen on their port:
//!
//! - `balance = "software"` hands those packets to the owner: every connection works, every
//!   echoed byte matches, the rules go once the connections closed, nothing is misdirected;
//! - `balance = "rss"` leaves them where they arrived: exactly those connections are reset by
//!   the wrong thread's stack, which counts the SYN as misdirected.
//!
//! A second configuration runs `tcp-proxy` on both threads in front of an echo server on the
//! last client host: every accepted connection opens an outbound one, whose answers must find the
//! connecting thread. Under `balance = "rss"` they do with no rule at all (the local port is one
//! soft RSS hashes back to the thread's queue); under `"software"` through the rule added
//! before the SYN left.
//!
//! In every mode the run ends with the conservation check holding and the pool full.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use flowsteer_config::{App, AppKind, Balance, Config, Idle, OnFailure, Profile};
use flowsteer_nic::vbridge::PeerPort;
use flowsteer_nic::wire::{FiveTuple, IP_PROTO_TCP};
use flowsteer_stack::{endpoint_key, SharedStackStats};
use flowtable::{FlowTable, Lookup, Proto, ThreadId};
use forwarder::engine::Engine;
use forwarder::health::{Cause, Health, Reclaim, ThreadState};
use forwarder::report::RunReport;

use flowsteer_testrig::vbridge::PeerDevice;
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{IpAddress, IpEndpoint};

mod common;

use common::bridged::Bridged;

/// The engine port's address (the configuration's default).
const PORT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The tcp-echo port of each thread: thread `t` listens on `ECHO_PORTS[t]` only.
const ECHO_PORTS: [u16; 2] = [7000, 7001];
const HTTP_PORT: u16 = 8080;
const UDP_ECHO_PORT: u16 = 7;
const CLIENT_HOSTS: u8 = 4;
/// The proxy tests' upstream: an echo server on the last host.
const UPSTREAM_HOST: usize = CLIENT_HOSTS as usize - 1;
const UPSTREAM_PORT: u16 = 9000;
const PROXY_PORT: u16 = 3128;
/// Sockets the upstream keeps listening: more than the connections open at once.
const UPSTREAM_LISTENERS: usize = 64;
/// Client TCP socket buffers: larger than any exchange, so a client never waits for room.
const CLIENT_TCP_BUFFER: usize = 16 * 1024;

fn client_ip(host: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 10 + host as u8)
}

fn client_mac(host: usize) -> [u8; 6] {
    [0x02, 0, 0, 0, 0x20, host as u8]
}

fn engine_config(balance: Balance) -> Config {
    let mut cfg = Config::default();
    cfg.engine.threads = 2;
    cfg.port.queues = 2;
    cfg.engine.balance = balance;
    // The rig shares the cores with the bridge and the clients: spinning threads would starve
    // them.
    cfg.engine.idle = Idle::Sleep;
    cfg.engine.idle_sleep_us = 20;
    cfg.traffic.profile = Profile::None;
    cfg.metrics.enabled = false;
    cfg.stack.app = vec![
        App::new(AppKind::TcpEcho, ECHO_PORTS[0]).on_threads([0]),
        App::new(AppKind::TcpEcho, ECHO_PORTS[1]).on_threads([1]),
        App::new(AppKind::Http, HTTP_PORT),
        App::new(AppKind::UdpEcho, UDP_ECHO_PORT),
    ];
    cfg
}

// ---- the client hosts ----

/// One client machine on a bridge port.
struct Host {
    ip: Ipv4Addr,
    iface: Interface,
    device: PeerDevice,
    sockets: SocketSet<'static>,
    /// Sockets whose exchange ended; removed after the next poll, so a reset or last ACK they
    /// queued still goes out.
    ended: Vec<SocketHandle>,
    /// The echo server this host runs, if any.
    echo_server: Option<EchoServer>,
}

impl Host {
    fn new(n: usize, port: PeerPort) -> Host {
        let mut device = PeerDevice::new(port);
        let ip = client_ip(n);
        let iface = device.interface(client_mac(n), ip, 24, 0x5eed + n as u64);
        Host {
            ip,
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            ended: Vec::new(),
            echo_server: None,
        }
    }

    /// Makes this host an echo server on `port`.
    fn serve_echo(&mut self, port: u16) {
        let handles = (0..UPSTREAM_LISTENERS)
            .map(|_| {
                let mut socket = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; CLIENT_TCP_BUFFER]),
                    tcp::SocketBuffer::new(vec![0; CLIENT_TCP_BUFFER]),
                );
                socket.listen(port).expect("a fresh socket listens");
                self.sockets.add(socket)
            })
            .collect();
        self.echo_server = Some(EchoServer { port, handles });
    }

    /// Polls the interface; true when frames were waiting for it.
    fn poll(&mut self) -> bool {
        let busy = self.device.port.pending() > 0;
        let ended = std::mem::take(&mut self.ended);
        self.iface
            .poll(SmolInstant::now(), &mut self.device, &mut self.sockets);
        for handle in ended {
            self.sockets.remove(handle);
        }
        if let Some(server) = &self.echo_server {
            server.serve(&mut self.sockets);
        }
        busy
    }

    fn tcp_connect(&mut self, server_port: u16, local_port: u16) -> SocketHandle {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; CLIENT_TCP_BUFFER]),
            tcp::SocketBuffer::new(vec![0; CLIENT_TCP_BUFFER]),
        );
        socket
            .connect(
                self.iface.context(),
                IpEndpoint::new(IpAddress::Ipv4(PORT_IP), server_port),
                local_port,
            )
            .expect("a fresh socket connects");
        self.sockets.add(socket)
    }

    fn tcp(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(handle)
    }

    fn end(&mut self, handle: SocketHandle) {
        self.ended.push(handle);
    }
}

/// A TCP echo server: every socket echoes what it reads, closes once its peer closed and the
/// echo is out, and listens again when its connection is over.
struct EchoServer {
    port: u16,
    handles: Vec<SocketHandle>,
}

impl EchoServer {
    fn serve(&self, sockets: &mut SocketSet<'static>) {
        let mut chunk = [0u8; 2048];
        for &handle in &self.handles {
            let socket = sockets.get_mut::<tcp::Socket>(handle);
            if socket.state() == tcp::State::Closed {
                socket.listen(self.port).expect("a closed socket listens");
                continue;
            }
            while socket.can_recv() && socket.can_send() {
                let room = socket.send_capacity() - socket.send_queue();
                let limit = room.min(chunk.len());
                let Ok(n) = socket.recv_slice(&mut chunk[..limit]) else {
                    break;
                };
                if n == 0 {
                    break;
                }
                socket.send_slice(&chunk[..n]).expect("room was measured");
            }
            if socket.state() == tcp::State::CloseWait && socket.recv_queue() == 0 {
                socket.close();
            }
        }
    }
}

/// One exchange of a client host with the engine, advanced after every poll of the hosts.
trait Exchange {
    /// The host it runs on.
    fn host(&self) -> usize;
    /// Advances; true once its outcome is decided (its socket then ends).
    fn step(&mut self, host: &mut Host) -> bool;
    /// Time ran out before the outcome was decided: record it and abort.
    fn time_out(&mut self, host: &mut Host);
}

/// Polls every host and advances `exchanges` until all are decided or `limit` passed (the
/// undecided ones time out).
fn run_exchanges<E: Exchange>(hosts: &mut [Host], exchanges: &mut [E], limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut decided = vec![false; exchanges.len()];
    loop {
        let mut busy = false;
        for host in hosts.iter_mut() {
            busy |= host.poll();
        }
        for (exchange, decided) in exchanges.iter_mut().zip(decided.iter_mut()) {
            if !*decided {
                *decided = exchange.step(&mut hosts[exchange.host()]);
            }
        }
        if decided.iter().all(|&d| d) {
            break;
        }
        if Instant::now() >= deadline {
            for (exchange, _) in exchanges.iter_mut().zip(&decided).filter(|(_, d)| !**d) {
                exchange.time_out(&mut hosts[exchange.host()]);
            }
            break;
        }
        for host in hosts.iter_mut() {
            host.poll();
        }
        if !busy {
            thread::sleep(Duration::from_micros(50));
        }
    }
    // Sends what the decided exchanges left queued (last ACKs, resets) and frees their sockets.
    for host in hosts.iter_mut() {
        host.poll();
    }
}

// ---- TCP echo ----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EchoOutcome {
    /// Every byte came back unchanged and the connection closed.
    Echoed,
    /// The server reset the connection (before it was set up, or during it).
    Reset { established: bool },
    /// No outcome within the attempt's time.
    TimedOut { established: bool, echoed: usize },
    /// An echoed byte differs from the one sent, at this offset.
    Corrupted { at: usize },
}

/// A client connection that sends `data` and checks that every byte comes back.
struct EchoConnection {
    host: usize,
    handle: SocketHandle,
    server_port: u16,
    local_port: u16,
    data: Vec<u8>,
    sent: usize,
    echoed: usize,
    established: bool,
    outcome: Option<EchoOutcome>,
}

impl EchoConnection {
    fn open(hosts: &mut [Host], host: usize, server_port: u16, local_port: u16, n: usize) -> Self {
        let handle = hosts[host].tcp_connect(server_port, local_port);
        // 1 to 7 KiB, a pattern that differs per connection and per offset.
        let len = 1024 + (n * 1613) % (6 * 1024);
        let data = (0..len).map(|i| ((i * 7 + n * 13) % 251) as u8).collect();
        EchoConnection {
            host,
            handle,
            server_port,
            local_port,
            data,
            sent: 0,
            echoed: 0,
            established: false,
            outcome: None,
        }
    }

    fn finish(&mut self, host: &mut Host, outcome: EchoOutcome) -> bool {
        self.outcome = Some(outcome);
        host.end(self.handle);
        true
    }
}

impl Exchange for EchoConnection {
    fn host(&self) -> usize {
        self.host
    }

    fn step(&mut self, host: &mut Host) -> bool {
        let socket = host.tcp(self.handle);
        let state = socket.state();
        if !matches!(state, tcp::State::SynSent | tcp::State::Closed) {
            self.established = true;
        }
        if self.echoed == self.data.len() {
            // All echoed: close, and wait until the server's FIN was acknowledged too.
            return match state {
                tcp::State::TimeWait | tcp::State::Closed => self.finish(host, EchoOutcome::Echoed),
                _ => {
                    socket.close();
                    false
                }
            };
        }
        if state == tcp::State::Closed {
            let established = self.established;
            return self.finish(host, EchoOutcome::Reset { established });
        }
        if socket.can_send() && self.sent < self.data.len() {
            self.sent += socket.send_slice(&self.data[self.sent..]).unwrap_or(0);
        }
        let mut chunk = [0u8; 2048];
        while socket.can_recv() {
            let Ok(n) = socket.recv_slice(&mut chunk) else {
                break;
            };
            let expected = self.data.get(self.echoed..self.echoed + n);
            if let Some(at) = match expected {
                Some(expected) => expected.iter().zip(&chunk[..n]).position(|(a, b)| a != b),
                None => Some(self.data.len() - self.echoed),
            } {
                let at = self.echoed + at;
                socket.abort();
                return self.finish(host, EchoOutcome::Corrupted { at });
            }
            self.echoed += n;
        }
        false
    }

    fn time_out(&mut self, host: &mut Host) {
        host.tcp(self.handle).abort();
        let (established, echoed) = (self.established, self.echoed);
        self.finish(
            host,
            EchoOutcome::TimedOut {
                established,
                echoed,
            },
        );
    }
}

/// Runs one echo connection at a time; returns each one's outcome.
fn sequential_echo(
    hosts: &mut [Host],
    plan: &[(usize, u16, u16)],
    limit: Duration,
) -> Vec<EchoConnection> {
    plan.iter()
        .enumerate()
        .map(|(n, &(host, server_port, local_port))| {
            let mut one = [EchoConnection::open(
                hosts,
                host,
                server_port,
                local_port,
                n,
            )];
            run_exchanges(hosts, &mut one, limit);
            let [done] = one;
            done
        })
        .collect()
}

/// The echo connections of `plan` all open at once, exchanged within 20 s; pattern seeds from
/// 1000 on.
fn concurrent_echo(hosts: &mut [Host], plan: &[(usize, u16, u16)]) -> Vec<EchoConnection> {
    let mut concurrent: Vec<EchoConnection> = plan
        .iter()
        .enumerate()
        .map(|(n, &(host, server_port, local_port))| {
            EchoConnection::open(hosts, host, server_port, local_port, 1000 + n)
        })
        .collect();
    run_exchanges(hosts, &mut concurrent, Duration::from_secs(20));
    concurrent
}

/// The (host, server port, client port) of `count` echo connections: the ports alternate, the
/// hosts rotate every two connections (so each host talks to both ports), and every client port
/// is distinct (`first_port + n`), so soft RSS spreads the flows over both queues.
fn echo_plan(count: usize, first_port: u16) -> Vec<(usize, u16, u16)> {
    (0..count)
        .map(|n| {
            (
                (n / 2) % usize::from(CLIENT_HOSTS),
                ECHO_PORTS[n % 2],
                first_port + n as u16,
            )
        })
        .collect()
}

// ---- HTTP ----

/// A keep-alive HTTP client: two requests on one connection, then it closes.
struct HttpConnection {
    host: usize,
    handle: SocketHandle,
    local_port: u16,
    table: Arc<dyn FlowTable>,
    requests: usize,
    received: Vec<u8>,
    /// Status code and body of each response.
    responses: Vec<(u16, String)>,
    /// The table's owner of the connection while it was open.
    owner: Option<Lookup>,
    failure: Option<String>,
    done: bool,
}

const HTTP_REQUESTS: usize = 2;

impl HttpConnection {
    fn open(hosts: &mut [Host], host: usize, local_port: u16, table: Arc<dyn FlowTable>) -> Self {
        let handle = hosts[host].tcp_connect(HTTP_PORT, local_port);
        HttpConnection {
            host,
            handle,
            local_port,
            table,
            requests: 0,
            received: Vec::new(),
            responses: Vec::new(),
            owner: None,
            failure: None,
            done: false,
        }
    }

    fn fail(&mut self, host: &mut Host, why: String) -> bool {
        self.failure = Some(why);
        host.tcp(self.handle).abort();
        host.end(self.handle);
        true
    }

    /// Takes every complete response out of `received`.
    fn parse_responses(&mut self) -> Result<(), String> {
        loop {
            let Some(head_end) = self.received.windows(4).position(|w| w == b"\r\n\r\n") else {
                return Ok(());
            };
            let head = String::from_utf8(self.received[..head_end].to_vec())
                .map_err(|_| "a response head that is not UTF-8".to_string())?;
            let mut lines = head.split("\r\n");
            let status_line = lines.next().unwrap_or_default();
            let status = status_line
                .strip_prefix("HTTP/1.1 ")
                .and_then(|rest| rest.get(..3))
                .and_then(|code| code.parse::<u16>().ok())
                .ok_or_else(|| format!("bad status line {status_line:?}"))?;
            let length = lines
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                .ok_or_else(|| format!("no Content-Length in {head:?}"))?;
            let body_start = head_end + 4;
            if self.received.len() < body_start + length {
                return Ok(());
            }
            let body = String::from_utf8_lossy(&self.received[body_start..body_start + length])
                .into_owned();
            self.received.drain(..body_start + length);
            self.responses.push((status, body));
        }
    }
}

impl Exchange for HttpConnection {
    fn host(&self) -> usize {
        self.host
    }

    fn step(&mut self, host: &mut Host) -> bool {
        let host_ip = host.ip;
        let socket = host.tcp(self.handle);
        let state = socket.state();
        if self.responses.len() == HTTP_REQUESTS {
            return match state {
                tcp::State::TimeWait | tcp::State::Closed => {
                    self.done = true;
                    host.end(self.handle);
                    true
                }
                _ => {
                    socket.close();
                    false
                }
            };
        }
        if state == tcp::State::Closed {
            let why = format!("closed after {} responses", self.responses.len());
            return self.fail(host, why);
        }
        if self.requests == self.responses.len() && socket.can_send() {
            let request = format!(
                "GET /{} HTTP/1.1\r\nHost: {PORT_IP}\r\nUser-Agent: flowsteer-test\r\n\r\n",
                self.requests
            );
            match socket.send_slice(request.as_bytes()) {
                Ok(n) if n == request.len() => self.requests += 1,
                other => return self.fail(host, format!("request not queued whole: {other:?}")),
            }
        }
        let mut chunk = [0u8; 2048];
        while socket.can_recv() {
            match socket.recv_slice(&mut chunk) {
                Ok(n) => self.received.extend_from_slice(&chunk[..n]),
                Err(_) => break,
            }
        }
        if let Err(why) = self.parse_responses() {
            return self.fail(host, why);
        }
        if self.owner.is_none() && !self.responses.is_empty() {
            // The connection is open: its exact rule names the thread that serves it.
            let key = endpoint_key(
                Proto::Tcp,
                IpEndpoint::new(IpAddress::Ipv4(PORT_IP), HTTP_PORT),
                IpEndpoint::new(IpAddress::Ipv4(host_ip), self.local_port),
            )
            .expect("both ends are IPv4");
            self.owner = Some(self.table.lookup(&key));
        }
        false
    }

    fn time_out(&mut self, host: &mut Host) {
        let why = format!(
            "timed out after {} requests, {} responses",
            self.requests,
            self.responses.len()
        );
        self.fail(host, why);
    }
}

// ---- UDP echo ----

/// One datagram to the udp-echo app and its echo.
struct UdpProbe {
    host: usize,
    handle: SocketHandle,
    payload: Vec<u8>,
    sent: bool,
    echo: Option<Vec<u8>>,
}

impl UdpProbe {
    fn open(hosts: &mut [Host], host: usize, local_port: u16) -> Self {
        let mut socket = udp::Socket::new(
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 4096]),
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 4096]),
        );
        socket.bind(local_port).expect("a nonzero port binds");
        let handle = hosts[host].sockets.add(socket);
        let payload = format!("datagram from {}:{local_port}", client_ip(host)).into_bytes();
        UdpProbe {
            host,
            handle,
            payload,
            sent: false,
            echo: None,
        }
    }
}

impl Exchange for UdpProbe {
    fn host(&self) -> usize {
        self.host
    }

    fn step(&mut self, host: &mut Host) -> bool {
        let socket = host.sockets.get_mut::<udp::Socket>(self.handle);
        if !self.sent && socket.can_send() {
            let server = IpEndpoint::new(IpAddress::Ipv4(PORT_IP), UDP_ECHO_PORT);
            self.sent = socket.send_slice(&self.payload, server).is_ok();
        }
        if let Ok((data, meta)) = socket.recv() {
            if meta.endpoint.port == UDP_ECHO_PORT {
                self.echo = Some(data.to_vec());
                host.end(self.handle);
                return true;
            }
        }
        false
    }

    fn time_out(&mut self, host: &mut Host) {
        host.end(self.handle);
    }
}

// ---- the rig ----

/// The engine, the bridge pumping on its own thread, and the client hosts on its peer ports.
struct Rig {
    /// Dropped first: the clients leave before the bridge and the engine stop.
    hosts: Vec<Host>,
    bridged: Bridged,
    stacks: Vec<SharedStackStats>,
}

/// What the rig reports when it stops.
struct Finished {
    report: RunReport,
    stacks: Vec<SharedStackStats>,
}

impl Rig {
    fn start(balance: Balance) -> Rig {
        Rig::start_with(&engine_config(balance))
    }

    fn start_with(config: &Config) -> Rig {
        let (bridged, ports) = Bridged::start(config, usize::from(CLIENT_HOSTS));
        let hosts = ports
            .into_iter()
            .enumerate()
            .map(|(n, port)| Host::new(n, port))
            .collect();
        let stacks = bridged
            .engine()
            .shared()
            .stacks
            .iter()
            .map(|s| s.stats.clone())
            .collect();
        Rig {
            hosts,
            bridged,
            stacks,
        }
    }

    fn engine(&self) -> &Engine {
        self.bridged.engine()
    }

    /// The thread whose NIC queue soft RSS picks for a client's TCP flow (thread `t` owns queue
    /// `t`).
    fn rss_thread(&self, host: usize, local_port: u16, server_port: u16) -> ThreadId {
        let uveth = self.engine().uveth().expect("uveth");
        let tuple = FiveTuple::v4(
            IP_PROTO_TCP,
            client_ip(host),
            local_port,
            PORT_IP,
            server_port,
        );
        uveth.soft_rss().queue_of_tuple(&tuple).1
    }

    /// Per planned echo connection: true when soft RSS delivers it to the thread that does not
    /// listen on its port.
    fn crossing(&self, plan: &[(usize, u16, u16)]) -> Vec<bool> {
        plan.iter()
            .map(|&(host, server_port, local_port)| {
                let owner = ECHO_PORTS.iter().position(|&p| p == server_port);
                owner != Some(usize::from(self.rss_thread(host, local_port, server_port)))
            })
            .collect()
    }

    fn table(&self) -> Arc<dyn FlowTable> {
        self.engine().shared().table.clone()
    }

    /// Waits until the flow table holds no exact rule (every connection's end deleted its
    /// rule); returns what is left at the deadline.
    fn wait_for_no_exact_rules(&self, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let left = self.engine().shared().table.exact_len();
            if left == 0 || Instant::now() >= deadline {
                return left;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Unplugs the clients, stops the bridge, then the engine; checks conservation, the pool
    /// and that no rule is left (`common::stop_and_check`).
    fn finish(self) -> Finished {
        let Rig {
            hosts,
            bridged,
            stacks,
        } = self;
        drop(hosts);
        Finished {
            report: bridged.stop(),
            stacks,
        }
    }
}

impl Finished {
    fn misdirected(&self) -> u64 {
        self.stacks.iter().map(|s| s.misdirected.get()).sum()
    }
}

/// The counters of app `kind` on `port`, summed over the threads that run it: (opened, closed,
/// requests).
fn app_totals(
    engine: &Engine,
    stacks: &[SharedStackStats],
    kind: flowsteer_stack::AppKind,
    port: u16,
) -> (u64, u64, u64) {
    let mut totals = (0, 0, 0);
    for (thread, stats) in engine.shared().stacks.iter().zip(stacks) {
        for (spec, app) in thread.apps.iter().zip(&stats.apps) {
            if spec.kind == kind && spec.port == port {
                totals.0 += app.connections_opened.get();
                totals.1 += app.connections_closed.get();
                totals.2 += app.requests.get();
            }
        }
    }
    totals
}

fn describe_failures(connections: &[EchoConnection]) -> String {
    connections
        .iter()
        .filter(|c| c.outcome != Some(EchoOutcome::Echoed))
        .map(|c| {
            format!(
                "  {}:{} -> :{} sent {}/{} echoed {}: {:?}\n",
                client_ip(c.host),
                c.local_port,
                c.server_port,
                c.sent,
                c.data.len(),
                c.echoed,
                c.outcome
            )
        })
        .collect()
}

const SEQUENTIAL: usize = 200;
const CONCURRENT: usize = 50;
const HTTP_CONNECTIONS: usize = 6;
const UDP_PROBES_PER_HOST: u16 = 4;

#[test]
fn software_balancing_serves_every_connection_on_either_queue() {
    let mut rig = Rig::start(Balance::Software);

    // UDP first: it also resolves every host's ARP entry for the port.
    let mut probes: Vec<UdpProbe> = (0..usize::from(CLIENT_HOSTS))
        .flat_map(|host| (0..UDP_PROBES_PER_HOST).map(move |i| (host, 5000 + i)))
        .map(|(host, port)| UdpProbe::open(&mut rig.hosts, host, port))
        .collect();
    run_exchanges(&mut rig.hosts, &mut probes, Duration::from_secs(5));
    for probe in &probes {
        assert_eq!(
            probe.echo.as_deref(),
            Some(&probe.payload[..]),
            "udp echo to host {}",
            probe.host
        );
    }

    // Sequential echo connections, alternating the two ports: soft RSS puts about half of them
    // on the queue of the thread that does not listen on their port.
    let plan = echo_plan(SEQUENTIAL, 20_000);
    let crossing = rig.crossing(&plan);
    for (port, owner) in [(ECHO_PORTS[0], 0u16), (ECHO_PORTS[1], 1)] {
        let (across, at_home) = plan
            .iter()
            .zip(&crossing)
            .filter(|((_, p, _), _)| *p == port)
            .fold(
                (0, 0),
                |(a, h), (_, &c)| if c { (a + 1, h) } else { (a, h + 1) },
            );
        assert!(
            across > 0 && at_home > 0,
            "port {port} (thread {owner}): {across} connections on the other queue, {at_home} on its own"
        );
    }
    let sequential = sequential_echo(&mut rig.hosts, &plan, Duration::from_secs(10));
    let failures = describe_failures(&sequential);
    assert!(
        failures.is_empty(),
        "sequential echo connections failed:\n{failures}"
    );

    // Concurrent echo connections, all open at once.
    let concurrent = concurrent_echo(&mut rig.hosts, &echo_plan(CONCURRENT, 30_000));
    let failures = describe_failures(&concurrent);
    assert!(
        failures.is_empty(),
        "concurrent echo connections failed:\n{failures}"
    );

    // HTTP with keep-alive: two responses on one connection, from the thread its rule names.
    let table = rig.table();
    let mut http: Vec<HttpConnection> = (0..HTTP_CONNECTIONS)
        .map(|n| {
            HttpConnection::open(
                &mut rig.hosts,
                n % usize::from(CLIENT_HOSTS),
                40_000 + n as u16,
                table.clone(),
            )
        })
        .collect();
    drop(table);
    run_exchanges(&mut rig.hosts, &mut http, Duration::from_secs(10));
    for conn in &http {
        let who = format!("http from {}:{}", client_ip(conn.host), conn.local_port);
        assert!(conn.done, "{who}: {:?}", conn.failure);
        let Some(Lookup::Exact(owner)) = conn.owner else {
            panic!(
                "{who}: the open connection had no exact rule: {:?}",
                conn.owner
            );
        };
        let expected = format!("flowsteer thread {owner} port {HTTP_PORT}\n");
        for (status, body) in &conn.responses {
            assert_eq!(*status, 200, "{who}");
            assert_eq!(body, &expected, "{who}: served by its rule's owner");
        }
    }

    // Every connection closed: its rule went with it.
    let left = rig.wait_for_no_exact_rules(Duration::from_secs(5));
    assert_eq!(left, 0, "exact rules left after every connection closed");

    let (echo_opened, echo_closed) = ECHO_PORTS.iter().fold((0, 0), |(o, c), &port| {
        let (opened, closed, _) = app_totals(
            rig.engine(),
            &rig.stacks,
            flowsteer_stack::AppKind::TcpEcho,
            port,
        );
        (o + opened, c + closed)
    });
    assert_eq!(echo_opened, (SEQUENTIAL + CONCURRENT) as u64);
    assert_eq!(echo_closed, echo_opened);
    let (http_opened, http_closed, http_requests) = app_totals(
        rig.engine(),
        &rig.stacks,
        flowsteer_stack::AppKind::Http,
        HTTP_PORT,
    );
    assert_eq!(http_opened, HTTP_CONNECTIONS as u64);
    assert_eq!(http_closed, http_opened);
    assert_eq!(http_requests, (HTTP_CONNECTIONS * HTTP_REQUESTS) as u64);
    let (_, _, datagrams) = app_totals(
        rig.engine(),
        &rig.stacks,
        flowsteer_stack::AppKind::UdpEcho,
        UDP_ECHO_PORT,
    );
    assert_eq!(datagrams, probes.len() as u64);

    let finished = rig.finish();
    let report = &finished.report;
    assert_eq!(finished.misdirected(), 0, "{}", report.render_table());
    assert_eq!(report.total.misdirected, 0, "{}", report.render_table());
    assert!(
        report.total.handed_off > 0,
        "connections on the other queue were handed off\n{}",
        report.render_table()
    );
}

#[test]
fn rss_balancing_breaks_the_connections_that_land_on_the_other_thread() {
    const ATTEMPTS: usize = 40;
    let mut rig = Rig::start(Balance::Rss);

    let plan = echo_plan(ATTEMPTS, 20_000);
    let crossing = rig.crossing(&plan);
    let predicted_failures = crossing.iter().filter(|&&c| c).count();
    assert!(
        (ATTEMPTS / 4..=ATTEMPTS * 3 / 4).contains(&predicted_failures),
        "soft RSS puts {predicted_failures} of {ATTEMPTS} connections on the other queue"
    );

    let attempts = sequential_echo(&mut rig.hosts, &plan, Duration::from_secs(2));
    for (conn, &crosses) in attempts.iter().zip(&crossing) {
        let who = format!(
            "{}:{} -> :{}",
            client_ip(conn.host),
            conn.local_port,
            conn.server_port
        );
        if crosses {
            // Its SYN reached the thread without a listener on the port: reset, or at least
            // never set up.
            assert!(
                matches!(
                    conn.outcome,
                    Some(EchoOutcome::Reset { established: false })
                        | Some(EchoOutcome::TimedOut {
                            established: false,
                            ..
                        })
                ),
                "{who} arrives on the other thread's queue: {:?}",
                conn.outcome
            );
        } else {
            assert_eq!(
                conn.outcome,
                Some(EchoOutcome::Echoed),
                "{who} arrives on its owner's queue"
            );
        }
    }

    let left = rig.wait_for_no_exact_rules(Duration::from_secs(5));
    assert_eq!(
        left, 0,
        "exact rules left after every connection closed or failed"
    );

    let finished = rig.finish();
    let report = &finished.report;
    assert!(
        finished.misdirected() >= predicted_failures as u64,
        "every failed connection's SYN is counted as misdirected: {} < {predicted_failures}\n{}",
        finished.misdirected(),
        report.render_table()
    );
    assert_eq!(
        report.total.misdirected,
        finished.misdirected(),
        "the report folds the stacks' misdirected packets into its total\n{}",
        report.render_table()
    );
    assert_eq!(
        report.total.lookups.exact + report.total.lookups.miss,
        0,
        "rss balancing does no lookup\n{}",
        report.render_table()
    );
    assert_eq!(
        report.total.handed_off,
        report.total.link_copies,
        "only the copies of ARP frames cross threads\n{}",
        report.render_table()
    );
}

// ---- outbound connections: tcp-proxy ----

fn proxy_config(balance: Balance) -> Config {
    let mut cfg = engine_config(balance);
    let upstream = std::net::SocketAddr::from((client_ip(UPSTREAM_HOST), UPSTREAM_PORT));
    cfg.stack.app = vec![App::proxy(PROXY_PORT, upstream)];
    cfg
}

/// Sequential then concurrent echo connections from the first hosts through the proxy to the
/// upstream echo server; every one must come back byte for byte. Returns the connections made.
fn echo_through_proxy(rig: &mut Rig) -> u64 {
    rig.hosts[UPSTREAM_HOST].serve_echo(UPSTREAM_PORT);
    let clients = UPSTREAM_HOST;
    let plan: Vec<(usize, u16, u16)> = (0..PROXY_SEQUENTIAL)
        .map(|n| (n % clients, PROXY_PORT, 21_000 + n as u16))
        .collect();
    // One at a time, stopping at the first failure: a broken way back fails every connection.
    for one in plan.chunks(1) {
        let done = sequential_echo(&mut rig.hosts, one, Duration::from_secs(5));
        let failures = describe_failures(&done);
        assert!(
            failures.is_empty(),
            "a sequential proxied connection failed:\n{failures}"
        );
    }
    let mut concurrent: Vec<EchoConnection> = (0..PROXY_CONCURRENT)
        .map(|n| {
            let local_port = 31_000 + n as u16;
            EchoConnection::open(&mut rig.hosts, n % clients, PROXY_PORT, local_port, 500 + n)
        })
        .collect();
    run_exchanges(&mut rig.hosts, &mut concurrent, Duration::from_secs(20));
    let failures = describe_failures(&concurrent);
    assert!(
        failures.is_empty(),
        "concurrent proxied connections failed:\n{failures}"
    );
    (PROXY_SEQUENTIAL + PROXY_CONCURRENT) as u64
}

const PROXY_SEQUENTIAL: usize = 100;
const PROXY_CONCURRENT: usize = 30;

/// (upstream connects, upstream failures, rules added) summed over the threads.
fn proxy_totals(stacks: &[SharedStackStats]) -> (u64, u64, u64) {
    stacks
        .iter()
        .fold((0, 0, 0), |(connects, failed, rules), s| {
            let app = &s.apps[0];
            (
                connects + app.upstream_connects.get(),
                failed + app.upstream_failed.get(),
                rules + s.rules_added.get(),
            )
        })
}

#[test]
fn rss_balancing_proxies_through_outbound_ports_rss_brings_back_without_rules() {
    let mut rig = Rig::start_with(&proxy_config(Balance::Rss));
    let connections = echo_through_proxy(&mut rig);
    let left = rig.wait_for_no_exact_rules(Duration::from_secs(5));
    assert_eq!(left, 0, "exact rules left after every connection closed");
    let (connects, failed, rules) = proxy_totals(&rig.stacks);
    assert_eq!(connects, connections, "one upstream connection per client");
    assert_eq!(failed, 0);
    assert_eq!(
        rules, connections,
        "only the accepted connections add rules; the outbound ones need none"
    );
    let per_thread: Vec<u64> = rig
        .stacks
        .iter()
        .map(|s| s.apps[0].upstream_connects.get())
        .collect();
    assert!(
        per_thread.iter().all(|&n| n > 0),
        "both threads connected out: {per_thread:?}"
    );
    let finished = rig.finish();
    let report = &finished.report;
    assert_eq!(finished.misdirected(), 0, "{}", report.render_table());
    assert_eq!(
        report.total.handed_off,
        report.total.link_copies,
        "only the copies of ARP frames cross threads\n{}",
        report.render_table()
    );
}

#[test]
fn software_balancing_proxies_through_outbound_connections_with_rules() {
    let mut rig = Rig::start_with(&proxy_config(Balance::Software));
    let connections = echo_through_proxy(&mut rig);
    let left = rig.wait_for_no_exact_rules(Duration::from_secs(5));
    assert_eq!(left, 0, "exact rules left after every connection closed");
    let (connects, failed, rules) = proxy_totals(&rig.stacks);
    assert_eq!(connects, connections);
    assert_eq!(failed, 0);
    assert_eq!(
        rules,
        2 * connections,
        "a rule for each accepted and each outbound connection"
    );
    let finished = rig.finish();
    assert_eq!(
        finished.misdirected(),
        0,
        "{}",
        finished.report.render_table()
    );
}

// ---- fewer queues than threads ----

/// `threads` stack threads on a uveth of `queues` queues, tcp-echo on both echo ports, http and
/// udp-echo on every thread: the threads beyond the queues receive only what software balancing
/// hands them, and transmit through the software transmit queue of a thread with a queue (a
/// uveth has no transmit-only queues).
fn queueless_config(threads: u16, queues: u16) -> Config {
    let mut cfg = engine_config(Balance::Software);
    cfg.engine.threads = threads;
    cfg.port.queues = queues;
    cfg.stack.app = vec![
        App::new(AppKind::TcpEcho, ECHO_PORTS[0]),
        App::new(AppKind::TcpEcho, ECHO_PORTS[1]),
        App::new(AppKind::Http, HTTP_PORT),
        App::new(AppKind::UdpEcho, UDP_ECHO_PORT),
    ];
    cfg
}

/// UDP probes, sequential and concurrent echo connections and keep-alive HTTP through a port
/// with fewer queues than threads; every thread owns a fair share of the connections, the
/// queue-less ones' frames went out through their relays, and the run is conserved.
fn serve_on_fewer_queues(threads: u16, queues: u16) {
    let mut rig = Rig::start_with(&queueless_config(threads, queues));

    let mut probes: Vec<UdpProbe> = (0..usize::from(CLIENT_HOSTS))
        .flat_map(|host| (0..UDP_PROBES_PER_HOST).map(move |i| (host, 5000 + i)))
        .map(|(host, port)| UdpProbe::open(&mut rig.hosts, host, port))
        .collect();
    run_exchanges(&mut rig.hosts, &mut probes, Duration::from_secs(5));
    for probe in &probes {
        assert_eq!(probe.echo.as_deref(), Some(&probe.payload[..]), "udp echo");
    }

    let sequential = sequential_echo(
        &mut rig.hosts,
        &echo_plan(SEQUENTIAL, 20_000),
        Duration::from_secs(10),
    );
    let failures = describe_failures(&sequential);
    assert!(failures.is_empty(), "sequential echo failed:\n{failures}");
    let concurrent = concurrent_echo(&mut rig.hosts, &echo_plan(CONCURRENT, 30_000));
    let failures = describe_failures(&concurrent);
    assert!(failures.is_empty(), "concurrent echo failed:\n{failures}");

    let table = rig.table();
    let mut http: Vec<HttpConnection> = (0..HTTP_CONNECTIONS)
        .map(|n| {
            let host = n % usize::from(CLIENT_HOSTS);
            HttpConnection::open(&mut rig.hosts, host, 40_000 + n as u16, table.clone())
        })
        .collect();
    drop(table);
    run_exchanges(&mut rig.hosts, &mut http, Duration::from_secs(10));
    for conn in &http {
        assert!(conn.done, "http: {:?}", conn.failure);
        let Some(Lookup::Exact(owner)) = conn.owner else {
            panic!("http: no exact rule while open: {:?}", conn.owner);
        };
        for (status, body) in &conn.responses {
            assert_eq!(*status, 200);
            assert_eq!(
                body,
                &format!("flowsteer thread {owner} port {HTTP_PORT}\n")
            );
        }
    }
    let left = rig.wait_for_no_exact_rules(Duration::from_secs(5));
    assert_eq!(left, 0, "exact rules left after every connection closed");

    let finished = rig.finish();
    let report = &finished.report;
    let table = report.render_table();
    eprintln!("{threads} threads on {queues} queues:\n{table}");
    assert_eq!(finished.misdirected(), 0, "{table}");
    // The listen rules name every thread: each owns a fair share of the echo connections.
    let echo: Vec<u64> = finished
        .stacks
        .iter()
        .map(|s| s.apps[0].connections_opened.get() + s.apps[1].connections_opened.get())
        .collect();
    let all: u64 = echo.iter().sum();
    assert_eq!(all, (SEQUENTIAL + CONCURRENT) as u64, "{table}");
    let fair = all / u64::from(threads);
    for (t, &n) in echo.iter().enumerate() {
        assert!(
            n >= fair * 6 / 10,
            "thread {t} owns {n} of {all} echo connections\n{table}"
        );
    }
    for t in usize::from(queues)..usize::from(threads) {
        let relay = t % usize::from(queues);
        assert_eq!(report.tx_paths[t], format!("via thread {relay}"));
        let stats = &report.per_thread[t];
        assert_eq!((stats.rx, stats.tx), (0, 0), "{table}");
        assert!(stats.tx_handed > 0, "{table}");
        assert!(stats.processed_handoff > 0, "{table}");
    }
    let handed: u64 = report.per_thread.iter().map(|t| t.tx_handed).sum();
    let relayed: u64 = report.per_thread.iter().map(|t| t.tx_relayed).sum();
    assert_eq!(handed, relayed, "every handed frame was relayed\n{table}");
    assert!(table.contains(&format!(
        "threads without a queue ({} of {threads})",
        threads - queues
    )));
}

#[test]
fn two_threads_on_one_queue_serve_every_connection_through_software_balancing() {
    serve_on_fewer_queues(2, 1);
}

#[test]
fn three_threads_on_two_queues_serve_every_connection_through_software_balancing() {
    serve_on_fewer_queues(3, 2);
}

/// Outbound connections of a thread without a queue: the proxy's upstream connections get a
/// rule before the SYN leaves, from the thread's share of the ephemeral range, so the answers
/// find it although no queue could deliver them to it.
#[test]
fn a_thread_without_a_queue_proxies_through_outbound_connections_with_rules() {
    let mut cfg = proxy_config(Balance::Software);
    cfg.port.queues = 1;
    let mut rig = Rig::start_with(&cfg);
    let connections = echo_through_proxy(&mut rig);
    let left = rig.wait_for_no_exact_rules(Duration::from_secs(5));
    assert_eq!(left, 0, "exact rules left after every connection closed");
    let upstream: Vec<u64> = rig
        .stacks
        .iter()
        .map(|s| s.apps[0].upstream_connects.get())
        .collect();
    let (connects, failed, rules) = proxy_totals(&rig.stacks);
    assert_eq!((connects, failed), (connections, 0));
    assert_eq!(rules, 2 * connections);
    assert!(upstream[1] > 0, "thread 1 connected upstream: {upstream:?}");
    let finished = rig.finish();
    assert_eq!(
        finished.misdirected(),
        0,
        "{}",
        finished.report.render_table()
    );
}

// ---- when a stack thread fails ----

/// The port only thread 1 serves in the failure tests (thread 0 and 1 both serve `ECHO_PORTS[0]`).
const SOLO_PORT: u16 = 7100;
/// Long-lived connections open when thread 1 fails.
const HELD: usize = 24;
/// The targets: a reclaim within 100 ms, a restarted thread's port serving within 1 s.
const RECLAIM_LIMIT: Duration = Duration::from_millis(100);
const RESTART_LIMIT: Duration = Duration::from_secs(1);

fn failure_config(balance: Balance, on_failure: OnFailure) -> Config {
    let mut cfg = engine_config(balance);
    cfg.engine.on_failure = on_failure;
    cfg.stack.app = vec![
        App::new(AppKind::TcpEcho, ECHO_PORTS[0]),
        App::new(AppKind::TcpEcho, SOLO_PORT).on_threads([1]),
    ];
    cfg
}

/// An echo connection in two halves: the first exchanged, then it is held open until told to
/// go on with the second and close.
struct HeldEcho {
    echo: EchoConnection,
    half: usize,
    go_on: bool,
}

impl HeldEcho {
    fn open(hosts: &mut [Host], host: usize, local_port: u16, n: usize) -> HeldEcho {
        let echo = EchoConnection::open(hosts, host, ECHO_PORTS[0], local_port, 2000 + n);
        let half = echo.data.len() / 2;
        HeldEcho {
            echo,
            half,
            go_on: false,
        }
    }

    fn first_half_echoed(&self) -> bool {
        self.echo.outcome.is_none() && self.echo.echoed == self.half
    }
}

impl Exchange for HeldEcho {
    fn host(&self) -> usize {
        self.echo.host
    }

    fn step(&mut self, host: &mut Host) -> bool {
        if self.echo.outcome.is_some() {
            return true;
        }
        if self.go_on {
            return self.echo.step(host);
        }
        // Only the first half is offered: `EchoConnection` sends what `data` holds.
        let rest = self.echo.data.split_off(self.half);
        let decided = self.echo.step(host);
        self.echo.data.extend(rest);
        decided || self.echo.echoed == self.half
    }

    fn time_out(&mut self, host: &mut Host) {
        self.echo.time_out(host);
    }
}

/// Waits until `done` holds, polling the hosts meanwhile (they answer ARP and retransmit);
/// false at `limit`.
fn wait_while_polling(hosts: &mut [Host], limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        for host in hosts.iter_mut() {
            host.poll();
        }
        thread::sleep(Duration::from_micros(200));
    }
    true
}

/// Client ports from `first` on whose flows to `server_port` soft RSS brings to `queue`.
fn ports_on_queue(rig: &Rig, host: usize, server_port: u16, queue: u16, first: u16) -> Vec<u16> {
    (first..)
        .filter(|&p| rig.rss_thread(host, p, server_port) == queue)
        .take(4)
        .collect()
}

/// Opens `HELD` connections to the port both threads serve and exchanges their first halves;
/// returns them with the thread each belongs to (the queue soft RSS gives it: under software
/// balancing a flow to a port the receiving thread serves stays there too).
fn open_held(rig: &mut Rig) -> (Vec<HeldEcho>, Vec<ThreadId>) {
    // Half on each thread, every host on both.
    let mut next_port = [30_000u16; 2];
    let plan: Vec<(usize, u16)> = (0..HELD)
        .map(|n| {
            let (host, queue) = (n % usize::from(CLIENT_HOSTS), (n / 4) % 2);
            let port = (next_port[queue]..)
                .find(|&p| rig.rss_thread(host, p, ECHO_PORTS[0]) == queue as u16)
                .expect("a port for each queue");
            next_port[queue] = port + 1;
            (host, port)
        })
        .collect();
    let owners: Vec<ThreadId> = plan
        .iter()
        .map(|&(host, port)| rig.rss_thread(host, port, ECHO_PORTS[0]))
        .collect();
    let mut held: Vec<HeldEcho> = plan
        .iter()
        .enumerate()
        .map(|(n, &(host, port))| HeldEcho::open(&mut rig.hosts, host, port, n))
        .collect();
    run_exchanges(&mut rig.hosts, &mut held, Duration::from_secs(10));
    for h in &held {
        assert!(
            h.first_half_echoed(),
            "{}:{} first half: {:?}, echoed {}",
            client_ip(h.echo.host),
            h.echo.local_port,
            h.echo.outcome,
            h.echo.echoed
        );
    }
    (held, owners)
}

/// Sends the second halves and makes thread 1 fail as they go out (`fail` injects the fault;
/// an injected fault is taken with packets in hand); returns when the fault was injected, once
/// `failed` holds (the hosts and the exchanges go on meanwhile).
fn fail_during_second_halves(
    rig: &mut Rig,
    held: &mut [HeldEcho],
    fail: impl FnOnce(&Health),
    failed: impl Fn(&Health) -> bool,
) -> Instant {
    for h in held.iter_mut() {
        h.go_on = true;
    }
    let health = rig.engine().shared().health.clone();
    let injected = Instant::now();
    fail(&health);
    let deadline = injected + Duration::from_secs(10);
    while !failed(&health) && Instant::now() < deadline {
        for host in rig.hosts.iter_mut() {
            host.poll();
        }
        for h in held.iter_mut() {
            h.step(&mut rig.hosts[h.echo.host]);
        }
        thread::sleep(Duration::from_micros(200));
    }
    injected
}

/// The second halves' end: every connection of thread 0 completes byte-exact without a reset;
/// every connection of thread 1 went with its stack, and its client learns so by a reset.
fn finish_second_halves(rig: &mut Rig, held: &mut [HeldEcho], owners: &[ThreadId]) {
    run_exchanges(&mut rig.hosts, held, Duration::from_secs(10));
    for (h, &owner) in held.iter().zip(owners) {
        let who = format!(
            "{}:{} (thread {owner})",
            client_ip(h.echo.host),
            h.echo.local_port
        );
        if owner == 0 {
            assert_eq!(h.echo.outcome, Some(EchoOutcome::Echoed), "{who}");
        } else {
            assert_eq!(
                h.echo.outcome,
                Some(EchoOutcome::Reset { established: true }),
                "{who}"
            );
        }
    }
}

/// Waits for thread 1's reclaim to end in `state` (with `restarts` restarts) and checks its
/// record: within the limit, its connections counted, buffers given back.
fn reclaimed(rig: &mut Rig, state: ThreadState, restarts: u64, cause: Cause) -> Reclaim {
    let health = rig.engine().shared().health.clone();
    let ended = wait_while_polling(&mut rig.hosts, Duration::from_secs(10), || {
        let t = health.thread(1);
        t.failures(cause) == 1 && t.state() == state && t.restarts() == restarts
    });
    let t = health.thread(1);
    assert!(
        ended,
        "thread 1: {:?}, {} restarts, last {:?}",
        t.state(),
        t.restarts(),
        t.last_reclaim()
    );
    assert!(health.thread(0).running());
    assert_eq!(health.thread(0).failures_total(), 0);
    let reclaim = t.last_reclaim().expect("a reclaim record");
    println!("{cause:?} of thread 1 reclaimed: {reclaim:?}");
    assert!(
        reclaim.total() < RECLAIM_LIMIT,
        "reclaim took {:?}: {reclaim:?}",
        reclaim.total()
    );
    assert!(reclaim.connections > 0, "{reclaim:?}");
    assert_eq!(
        reclaim.listens_kept, 1,
        "the port only it serves: {reclaim:?}"
    );
    assert_eq!(reclaim.listens_withdrawn, 1, "the shared port: {reclaim:?}");
    reclaim
}

/// New connections after thread 1's restart: to the port only it serves (from ports soft RSS
/// brings to its queue, so that RSS balancing delivers them too), and to the shared port from
/// either queue. Returns when the first connection to its port completed, after `failed`.
fn serve_after_restart(rig: &mut Rig, failed: Instant) -> Duration {
    let mut first = None;
    for (n, port) in ports_on_queue(rig, 0, SOLO_PORT, 1, 40_000)
        .into_iter()
        .enumerate()
    {
        let mut one = [EchoConnection::open(
            &mut rig.hosts,
            0,
            SOLO_PORT,
            port,
            3000 + n,
        )];
        run_exchanges(&mut rig.hosts, &mut one, Duration::from_secs(5));
        assert_eq!(
            one[0].outcome,
            Some(EchoOutcome::Echoed),
            "to :{SOLO_PORT} from :{port}"
        );
        first.get_or_insert_with(|| failed.elapsed());
    }
    let plan = echo_plan(16, 41_000)
        .into_iter()
        .map(|(host, _, port)| (host, ECHO_PORTS[0], port))
        .collect::<Vec<_>>();
    let after = concurrent_echo(&mut rig.hosts, &plan);
    assert_eq!(
        describe_failures(&after),
        "",
        "new connections to :{}",
        ECHO_PORTS[0]
    );
    first.expect("at least one connection")
}

/// The run's end: conservation exact, the pool full, no rule left, thread 1's failure in the
/// report.
fn finish_after_failure(rig: Rig, state: &str, restarts: u64) -> RunReport {
    let finished = rig.finish();
    let report = finished.report;
    let table = report.render_table();
    assert_eq!(report.failures.len(), 1, "{table}");
    let failure = &report.failures[0];
    assert_eq!(
        (failure.thread, failure.state, failure.restarts),
        (1, state, restarts),
        "{table}"
    );
    assert!(failure.reclaimed_buffers > 0, "{table}");
    assert!(table.contains("thread 1 failed ("), "{table}");
    report
}

/// Thread 1 panics with connections open on both threads; a fresh stack takes its queue.
fn panic_then_restart(balance: Balance) {
    let mut rig = Rig::start_with(&failure_config(balance, OnFailure::Restart));
    let (mut held, owners) = open_held(&mut rig);
    let failed = fail_during_second_halves(
        &mut rig,
        &mut held,
        |h| h.inject_panic(1),
        |h| h.thread(1).restarts() == 1,
    );
    let reclaim = reclaimed(&mut rig, ThreadState::Running, 1, Cause::Panic);
    assert_eq!(
        reclaim.connections,
        owners.iter().filter(|&&o| o == 1).count() as u64,
        "{reclaim:?}"
    );
    let first = serve_after_restart(&mut rig, failed);
    println!(
        "{balance:?}: first connection to thread 1's own port served {first:?} after its panic"
    );
    assert!(first < RESTART_LIMIT, "{first:?}");
    finish_second_halves(&mut rig, &mut held, &owners);
    finish_after_failure(rig, "running", 1);
}

#[test]
fn a_panicking_thread_is_reclaimed_and_restarted_under_software_balancing() {
    panic_then_restart(Balance::Software);
}

#[test]
fn a_panicking_thread_is_reclaimed_and_restarted_under_rss_balancing() {
    panic_then_restart(Balance::Rss);
}

/// Thread 1 stops making progress while its clients send: the watchdog declares it after
/// `engine.stall_ms` and withdraws its rules at once (new connections to the shared port go to
/// thread 0 meanwhile); when the stall ends the thread reclaims the rest and restarts.
#[test]
fn a_stalled_thread_is_declared_withdrawn_at_once_and_restarted_when_it_comes_back() {
    const STALL: Duration = Duration::from_secs(2);
    let mut cfg = failure_config(Balance::Software, OnFailure::Restart);
    cfg.engine.stall_ms = 300;
    let mut rig = Rig::start_with(&cfg);
    let (mut held, owners) = open_held(&mut rig);
    let health = rig.engine().shared().health.clone();
    // Connections to the shared port that arrive on thread 0's queue, opened while thread 1
    // is declared and still stalled.
    let plan = echo_plan(8, 45_000)
        .into_iter()
        .map(|(host, _, port)| (host, ECHO_PORTS[0], port))
        .filter(|&(host, _, port)| rig.rss_thread(host, port, ECHO_PORTS[0]) == 0)
        .collect::<Vec<_>>();
    let failed = fail_during_second_halves(
        &mut rig,
        &mut held,
        |h| h.inject_stall(1, STALL),
        |h| h.thread(1).failures(Cause::Stall) == 1,
    );
    let declared_after = failed.elapsed();
    println!("stall declared {declared_after:?} after the injection");
    assert!(
        (Duration::from_millis(300)..STALL).contains(&declared_after),
        "{declared_after:?}"
    );
    assert!(!health.thread(1).running());
    let during = concurrent_echo(&mut rig.hosts, &plan);
    assert_eq!(
        describe_failures(&during),
        "",
        "served by thread 0 during the stall"
    );
    assert_eq!(health.thread(1).restarts(), 0, "still stalled");
    reclaimed(&mut rig, ThreadState::Running, 1, Cause::Stall);
    serve_after_restart(&mut rig, failed);
    finish_second_halves(&mut rig, &mut held, &owners);
    finish_after_failure(rig, "running", 1);
}

/// `redistribute`: thread 1 stays down, the uveth's redirection table sends its queue's flows
/// to queue 0, and thread 0 polls queue 1 for what was on it; every new connection to the
/// shared port is served by thread 0.
#[test]
fn a_failed_threads_queue_is_polled_by_the_survivor_under_redistribute() {
    let mut rig = Rig::start_with(&failure_config(Balance::Software, OnFailure::Redistribute));
    let (mut held, owners) = open_held(&mut rig);
    fail_during_second_halves(
        &mut rig,
        &mut held,
        |h| h.inject_panic(1),
        |h| h.thread(1).state() == ThreadState::Down,
    );
    let reclaim = reclaimed(&mut rig, ThreadState::Down, 0, Cause::Panic);
    assert_eq!(reclaim.adopted_by, Some(0));
    assert!(
        reclaim.redirected,
        "the uveth's table sends queue 1's flows to queue 0"
    );
    finish_second_halves(&mut rig, &mut held, &owners);
    let plan = echo_plan(16, 46_000)
        .into_iter()
        .map(|(host, _, port)| (host, ECHO_PORTS[0], port))
        .collect::<Vec<_>>();
    assert!(
        plan.iter()
            .any(|&(host, _, port)| rig.rss_thread(host, port, ECHO_PORTS[0]) == 1),
        "some new connections are flows of the failed thread's queue"
    );
    let after = concurrent_echo(&mut rig.hosts, &plan);
    assert_eq!(describe_failures(&after), "");
    // Its own port has no server any more: its SYNs are dropped as for a failed owner.
    let mut solo = [EchoConnection::open(
        &mut rig.hosts,
        0,
        SOLO_PORT,
        47_000,
        4000,
    )];
    run_exchanges(&mut rig.hosts, &mut solo, Duration::from_millis(500));
    assert!(matches!(
        solo[0].outcome,
        Some(EchoOutcome::TimedOut {
            established: false,
            ..
        })
    ));
    let report = finish_after_failure(rig, "down", 0);
    assert!(report
        .total
        .dropped
        .get("owner_failed")
        .is_some_and(|&n| n > 0));
}

/// `redistribute` with a thread beyond the queues: thread 2 has no NIC queue and sends through
/// thread 0's software transmit queue. Thread 0 panics and stays down; thread 1 takes over its
/// NIC queue and its software transmit queue, and the port only thread 2 serves still answers.
#[test]
fn a_failed_relays_software_transmit_queue_is_emptied_by_the_survivor_under_redistribute() {
    let mut cfg = queueless_config(3, 2);
    cfg.engine.on_failure = OnFailure::Redistribute;
    cfg.stack.app = vec![App::new(AppKind::TcpEcho, ECHO_PORTS[0]).on_threads([2])];
    let mut rig = Rig::start_with(&cfg);
    let plan = |first: u16| {
        echo_plan(16, first)
            .into_iter()
            .map(|(host, _, port)| (host, ECHO_PORTS[0], port))
            .collect::<Vec<_>>()
    };
    let before = concurrent_echo(&mut rig.hosts, &plan(20_000));
    assert_eq!(describe_failures(&before), "");

    // Taken in thread 0's first iteration with packets in hand: during the next connections,
    // which survive the packets it held by retransmitting.
    let health = rig.engine().shared().health.clone();
    health.inject_panic(0);
    let during = concurrent_echo(&mut rig.hosts, &plan(21_000));
    assert_eq!(describe_failures(&during), "");
    let down = wait_while_polling(&mut rig.hosts, Duration::from_secs(10), || {
        health.thread(0).state() == ThreadState::Down
    });
    assert!(down, "thread 0: {:?}", health.thread(0).last_reclaim());
    let reclaim = health.thread(0).last_reclaim().expect("a reclaim record");
    assert_eq!(reclaim.adopted_by, Some(1), "{reclaim:?}");

    let relayed_before = rig.engine().shared().stats.thread(1).tx_relayed.get();
    let after = concurrent_echo(&mut rig.hosts, &plan(22_000));
    assert_eq!(describe_failures(&after), "");
    assert!(
        rig.engine().shared().stats.thread(1).tx_relayed.get() > relayed_before,
        "thread 1 sends thread 2's frames now"
    );

    let finished = rig.finish();
    let report = &finished.report;
    let table = report.render_table();
    let handed: u64 = report.per_thread.iter().map(|t| t.tx_handed).sum();
    let relayed: u64 = report.per_thread.iter().map(|t| t.tx_relayed).sum();
    assert_eq!(handed, relayed, "every handed frame was relayed\n{table}");
    assert!(
        !report.per_thread[0]
            .dropped
            .iter()
            .any(|(reason, _)| reason == "tx_full"),
        "nothing thread 2 sent was lost with its relay\n{table}"
    );
    assert!(table.contains("thread 0 failed (panic 1)"), "{table}");
}
