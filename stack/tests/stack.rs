//! A stack thread served by real TCP/UDP clients: smoltcp client interfaces exchanging frames
//! with a [`Stack`] in memory (ARP included), no kernel, no threads.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use flowsteer_nic::pool::{PacketPool, PktBuf, PoolCache};
use flowsteer_nic::rss::{SoftRss, MICROSOFT_KEY};
use flowsteer_nic::wire::{build_frame, FiveTuple, FrameSpec, IpPair, IP_PROTO_TCP, IP_PROTO_UDP};
use flowsteer_stack::{
    AppKind, AppSpec, Outbound, PortChoice, Stack, StackConfig, StackError, StackStats,
};
use flowsteer_testrig::frames;
use flowsteer_testrig::memory::{ClientDevice, Wire};
use flowtable::{new_table, FlowTable, ListenKey, Lookup, Proto};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint};

const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const POOL_BUFFERS: u32 = 4096;
/// How long a udp-echo reply waits for its destination's link address in these tests.
const NEIGHBOR_WAIT: std::time::Duration = std::time::Duration::from_millis(300);
/// How long a half-open connection waits for its ACK in these tests.
const SYN_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(300);

/// One server thread and one client host on a wire, with a simulated clock.
struct Rig {
    pool: Arc<PacketPool>,
    cache: PoolCache,
    table: Arc<dyn FlowTable>,
    server: Stack,
    client: Interface,
    sockets: SocketSet<'static>,
    wire: Wire,
    now: Instant,
}

/// Software balancing's outbound steering for a single thread: a rule, any ephemeral port.
fn with_rules() -> Outbound {
    Outbound {
        rule: true,
        ports: PortChoice::Share {
            thread: 0,
            threads: 1,
        },
    }
}

fn stack_config(apps: Vec<AppSpec>, max_connections: usize, outbound: Outbound) -> StackConfig {
    StackConfig {
        mac: SERVER_MAC,
        ipv4: (SERVER_IP, 24),
        ipv6: (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 64),
        tcp_rx_buffer: 16384,
        tcp_tx_buffer: 16384,
        udp_buffer: 16384,
        max_connections,
        idle_timeout: Some(std::time::Duration::from_secs(60)),
        keepalive_timeout: Some(std::time::Duration::from_secs(75)),
        neighbor_wait: NEIGHBOR_WAIT,
        syn_timeout: Some(SYN_TIMEOUT),
        max_frame: 1514,
        seed: 7,
        apps,
        outbound,
    }
}

impl Rig {
    fn new(apps: Vec<AppSpec>, max_connections: usize) -> Rig {
        let table: Arc<dyn FlowTable> = Arc::from(new_table(1024));
        Rig::with_table(apps, max_connections, table, 0, with_rules())
    }

    fn with_table(
        apps: Vec<AppSpec>,
        max_connections: usize,
        table: Arc<dyn FlowTable>,
        me: u16,
        outbound: Outbound,
    ) -> Rig {
        let pool = PacketPool::new(POOL_BUFFERS, 2048).unwrap();
        let cache = pool.cache(64);
        let stats = Arc::new(CachePadded::new(StackStats::new(&apps)));
        let server = Stack::new(
            stack_config(apps, max_connections, outbound),
            me,
            table.clone(),
            stats,
        )
        .unwrap();
        let mut wire = Wire::default();
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(CLIENT_MAC)));
        config.random_seed = 99;
        let mut client = Interface::new(config, &mut ClientDevice(&mut wire), Instant::ZERO);
        client.update_ip_addrs(|addrs| {
            addrs
                .push(IpCidr::new(IpAddress::Ipv4(CLIENT_IP), 24))
                .unwrap();
        });
        Rig {
            pool,
            cache,
            table,
            server,
            client,
            sockets: SocketSet::new(Vec::new()),
            wire,
            now: Instant::ZERO,
        }
    }

    /// Moves frames both ways until the wire is quiet, advancing the client's clock by 1 ms per
    /// round; at most `rounds` rounds.
    fn run(&mut self, rounds: usize) {
        for _ in 0..rounds {
            self.client.poll(
                self.now,
                &mut ClientDevice(&mut self.wire),
                &mut self.sockets,
            );
            let mut frames: Vec<PktBuf> = Vec::new();
            while let Some(bytes) = self.wire.to_server.pop_front() {
                let mut buf = self.cache.alloc().expect("pool has buffers");
                buf.write_frame(&bytes).unwrap();
                frames.push(buf);
            }
            let mut tx = Vec::new();
            self.server
                .process(&mut frames, &mut tx, 256, &mut self.cache);
            assert!(frames.is_empty(), "process drains its frames");
            for buf in tx.drain(..) {
                self.wire.to_client.push_back(buf.data().to_vec());
                self.cache.free(buf);
            }
            self.now += smoltcp::time::Duration::from_millis(1);
        }
    }

    /// Gives the server exactly `frames` in one round, then lets the client read the answer.
    fn deliver(&mut self, frames: Vec<Vec<u8>>) {
        let mut bufs: Vec<PktBuf> = frames
            .iter()
            .map(|bytes| {
                let mut buf = self.cache.alloc().expect("pool has buffers");
                buf.write_frame(bytes).unwrap();
                buf
            })
            .collect();
        let mut tx = Vec::new();
        self.server
            .process(&mut bufs, &mut tx, 256, &mut self.cache);
        for buf in tx.drain(..) {
            self.wire.to_client.push_back(buf.data().to_vec());
            self.cache.free(buf);
        }
    }

    /// Lets the client emit what it has queued, without delivering it: the frames it sent.
    fn client_emits(&mut self) -> Vec<Vec<u8>> {
        self.client.poll(
            self.now,
            &mut ClientDevice(&mut self.wire),
            &mut self.sockets,
        );
        self.now += smoltcp::time::Duration::from_millis(1);
        self.wire.to_server.drain(..).collect()
    }

    fn tcp_client(&mut self, port: u16, local_port: u16) -> SocketHandle {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 65536]),
            tcp::SocketBuffer::new(vec![0; 65536]),
        );
        socket
            .connect(
                self.client.context(),
                IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), port),
                local_port,
            )
            .unwrap();
        self.sockets.add(socket)
    }

    /// A listening socket of the client host: the upstream server a `tcp-proxy` connects to.
    fn tcp_listener(&mut self, port: u16) -> SocketHandle {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 65536]),
            tcp::SocketBuffer::new(vec![0; 65536]),
        );
        socket.listen(port).unwrap();
        self.sockets.add(socket)
    }

    /// Everything `handle` received so far.
    fn drain(&mut self, handle: SocketHandle) -> Vec<u8> {
        let mut bytes = Vec::new();
        let socket = self.tcp(handle);
        while socket.can_recv() {
            socket
                .recv(|data| {
                    bytes.extend_from_slice(data);
                    (data.len(), ())
                })
                .unwrap();
        }
        bytes
    }

    fn tcp(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(handle)
    }

    fn stats(&self) -> &StackStats {
        self.server.stats()
    }

    /// The pool is whole again once every buffer went back.
    fn assert_pool_full(&mut self) {
        drop(std::mem::replace(&mut self.cache, self.pool.cache(0)));
        assert_eq!(self.pool.available(), POOL_BUFFERS, "a buffer leaked");
    }
}

fn app(kind: AppKind, port: u16) -> AppSpec {
    AppSpec::new(kind, port)
}

#[test]
fn tcp_echo_returns_every_byte_and_the_rule_follows_the_connection() {
    let mut rig = Rig::new(vec![app(AppKind::TcpEcho, 7)], 64);
    assert_eq!(
        rig.table.lookup(&flowtable::FlowKey::v4(
            Proto::Tcp,
            SERVER_IP,
            7,
            CLIENT_IP,
            40000
        )),
        Lookup::ListenAny(0),
        "the listen rule is in before any connection"
    );
    let handle = rig.tcp_client(7, 40000);
    let sent: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut written = 0;
    let mut echoed = Vec::new();
    for _ in 0..5000 {
        rig.run(1);
        let socket = rig.tcp(handle);
        if socket.can_send() && written < sent.len() {
            written += socket.send_slice(&sent[written..]).unwrap();
        }
        while socket.can_recv() {
            socket
                .recv(|data| {
                    echoed.extend_from_slice(data);
                    (data.len(), ())
                })
                .unwrap();
        }
        if echoed.len() == sent.len() {
            break;
        }
    }
    assert_eq!(echoed.len(), sent.len());
    assert!(echoed == sent, "echoed bytes differ");
    let key = flowtable::FlowKey::v4(Proto::Tcp, SERVER_IP, 7, CLIENT_IP, 40000);
    assert_eq!(
        rig.table.lookup(&key),
        Lookup::Exact(0),
        "the connection has its rule"
    );
    assert_eq!(rig.server.connections(), 1);

    rig.tcp(handle).close();
    rig.run(50);
    assert_eq!(rig.tcp(handle).state(), tcp::State::TimeWait);
    assert_eq!(
        rig.table.exact_len(),
        0,
        "the rule went with the connection"
    );
    assert_eq!(rig.server.connections(), 0);
    let app = &rig.stats().apps[0];
    assert_eq!(app.connections_opened.get(), 1);
    assert_eq!(app.connections_closed.get(), 1);
    assert_eq!(app.connections_active.get(), 0);
    assert_eq!(app.bytes_in.get(), sent.len() as u64);
    assert_eq!(app.bytes_out.get(), sent.len() as u64);
    assert_eq!(rig.stats().rules_added.get(), 1);
    assert_eq!(rig.stats().rules_deleted.get(), 1);
    assert_eq!(rig.stats().misdirected.get(), 0);
    assert_eq!(rig.stats().tx_no_buffer.get(), 0);
    rig.assert_pool_full();
}

#[test]
fn many_connections_one_after_another_and_at_once() {
    let mut rig = Rig::new(vec![app(AppKind::TcpEcho, 7)], 64);
    // 40 at once: more SYNs in one round than sockets listening.
    let handles: Vec<_> = (0..40).map(|i| rig.tcp_client(7, 41000 + i)).collect();
    rig.run(30);
    for &h in &handles {
        assert_eq!(rig.tcp(h).state(), tcp::State::Established);
        rig.tcp(h).send_slice(b"ping").unwrap();
    }
    rig.run(30);
    for &h in &handles {
        let mut buf = [0u8; 8];
        let n = rig.tcp(h).recv_slice(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
        rig.tcp(h).close();
    }
    rig.run(60);
    assert_eq!(rig.table.exact_len(), 0);
    let app = &rig.stats().apps[0];
    assert_eq!(app.connections_opened.get(), 40);
    assert_eq!(app.connections_closed.get(), 40);
    assert_eq!(app.listen_exhausted.get(), 0);
    rig.assert_pool_full();
}

#[test]
fn http_answers_pipelined_requests_and_closes_on_request() {
    let mut rig = Rig::new(vec![app(AppKind::Http, 80)], 8);
    let handle = rig.tcp_client(80, 42000);
    rig.run(10);
    let requests = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nHEAD / HTTP/1.1\r\nHost: a\r\n\r\n\
                     POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /last HTTP/1.1\r\nConnection: close\r\n\r\n";
    rig.tcp(handle).send_slice(requests).unwrap();
    rig.run(40);
    let mut text = Vec::new();
    let socket = rig.tcp(handle);
    while socket.can_recv() {
        socket
            .recv(|d| {
                text.extend_from_slice(d);
                (d.len(), ())
            })
            .unwrap();
    }
    let text = String::from_utf8(text).unwrap();
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 4, "{text}");
    assert_eq!(
        text.matches("flowsteer thread 0 port 80\n").count(),
        3,
        "HEAD has no body"
    );
    assert!(text.ends_with("Connection: close\r\n\r\nflowsteer thread 0 port 80\n"));
    assert!(
        !rig.tcp(handle).may_recv(),
        "the server closed after Connection: close"
    );
    rig.tcp(handle).close();
    rig.run(40);
    assert_eq!(rig.table.exact_len(), 0);
    assert_eq!(rig.stats().apps[0].requests.get(), 4);
    assert_eq!(rig.stats().apps[0].errors.get(), 0);
    rig.assert_pool_full();
}

/// One HTTP/1.0 request on a new connection from `local_port`; the server answers and closes
/// first, so its socket goes to TIME-WAIT. Returns the response.
fn http10_once(rig: &mut Rig, local_port: u16) -> String {
    let handle = rig.tcp_client(80, local_port);
    rig.run(10);
    rig.tcp(handle)
        .send_slice(b"GET / HTTP/1.0\r\n\r\n")
        .unwrap();
    rig.run(20);
    let text = String::from_utf8(rig.drain(handle)).unwrap();
    rig.tcp(handle).close();
    rig.run(20);
    rig.sockets.remove(handle);
    text
}

#[test]
fn connections_in_time_wait_give_their_sockets_to_new_ones() {
    // Two sockets only: every connection after the second needs one still in TIME-WAIT.
    let mut rig = Rig::new(vec![app(AppKind::Http, 80)], 2);
    for i in 0..10 {
        let text = http10_once(&mut rig, 46000 + i);
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\n"),
            "connection {i}: {text:?}"
        );
    }
    let stats = &rig.stats().apps[0];
    assert_eq!(stats.requests.get(), 10);
    assert_eq!(stats.listen_exhausted.get(), 0);
    assert!(
        stats.time_wait_reused.get() >= 8,
        "{}",
        stats.time_wait_reused.get()
    );
    assert_eq!(rig.table.exact_len(), 0);
    rig.assert_pool_full();
}

#[test]
fn a_syn_from_a_connection_in_time_wait_opens_the_new_connection_at_once() {
    let mut rig = Rig::new(vec![app(AppKind::Http, 80)], 8);
    let first = http10_once(&mut rig, 47000);
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first:?}");
    assert_eq!(rig.stats().apps[0].time_wait_reused.get(), 0);
    // The same address and port again, well within the server's 10 s of TIME-WAIT.
    let again = http10_once(&mut rig, 47000);
    assert!(again.starts_with("HTTP/1.1 200 OK\r\n"), "{again:?}");
    let stats = &rig.stats().apps[0];
    assert_eq!(stats.requests.get(), 2);
    assert_eq!(stats.time_wait_reused.get(), 1);
    assert_eq!(stats.connections_opened.get(), 2);
    rig.assert_pool_full();
}

#[test]
fn a_fin_that_overtakes_the_last_data_waits_for_it() {
    let mut rig = Rig::new(vec![app(AppKind::TcpEcho, 7)], 8);
    let handle = rig.tcp_client(7, 48000);
    rig.run(10);
    assert_eq!(rig.tcp(handle).state(), tcp::State::Established);
    rig.tcp(handle).send_slice(b"the last data").unwrap();
    let data = rig.client_emits();
    rig.tcp(handle).close();
    let fin = rig.client_emits();
    assert_eq!(
        (data.len(), fin.len()),
        (1, 1),
        "one data segment, then one FIN"
    );
    // The FIN reaches the server first (handed over by another thread), the data a round later.
    rig.deliver(fin);
    assert_eq!(rig.stats().early_segments_held.get(), 1);
    rig.deliver(data);
    rig.run(10);
    assert_eq!(rig.drain(handle), b"the last data");
    // The server saw the FIN in order: it closed too, without the client sending it again.
    assert!(!rig.tcp(handle).may_recv(), "the server's FIN arrived");
    assert_eq!(rig.stats().early_segments_expired.get(), 0);
    rig.run(20);
    assert_eq!(rig.table.exact_len(), 0);
    rig.assert_pool_full();
}

#[test]
fn a_fin_whose_data_never_comes_is_let_go_after_the_hold_limit() {
    let mut rig = Rig::new(vec![app(AppKind::TcpEcho, 7)], 8);
    let handle = rig.tcp_client(7, 48001);
    rig.run(10);
    rig.tcp(handle).send_slice(b"lost").unwrap();
    let _lost = rig.client_emits();
    rig.tcp(handle).close();
    let fin = rig.client_emits();
    rig.deliver(fin);
    assert_eq!(rig.stats().early_segments_held.get(), 1);
    std::thread::sleep(past_the_hold_limit());
    rig.deliver(Vec::new());
    assert_eq!(rig.stats().early_segments_expired.get(), 1);
    // The client's retransmission brings the data and the FIN again; the stack serves them.
    rig.run(3000);
    assert_eq!(rig.drain(handle), b"lost");
    rig.run(20);
    assert_eq!(rig.table.exact_len(), 0);
    rig.assert_pool_full();
}

#[test]
fn http_refuses_garbage_with_400_and_counts_it() {
    let mut rig = Rig::new(vec![app(AppKind::Http, 80)], 8);
    let handle = rig.tcp_client(80, 42001);
    rig.run(10);
    rig.tcp(handle)
        .send_slice(b"\x16\x03\x01 hello\r\n\r\n")
        .unwrap();
    rig.run(20);
    let mut buf = [0u8; 512];
    let n = rig.tcp(handle).recv_slice(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
    assert_eq!(rig.stats().apps[0].errors.get(), 1);
    rig.tcp(handle).close();
    rig.run(40);
    assert_eq!(rig.table.exact_len(), 0);
}

#[test]
fn discard_reads_everything_and_sends_nothing() {
    let mut rig = Rig::new(vec![app(AppKind::Discard, 9)], 8);
    let handle = rig.tcp_client(9, 42002);
    rig.run(10);
    rig.tcp(handle).send_slice(&[0xab; 30000]).unwrap();
    rig.run(60);
    rig.tcp(handle).close();
    rig.run(40);
    let app = &rig.stats().apps[0];
    assert_eq!(app.bytes_in.get(), 30000);
    assert_eq!(app.bytes_out.get(), 0);
    assert_eq!(app.connections_closed.get(), 1);
    assert_eq!(rig.table.exact_len(), 0);
}

/// A UDP datagram to the server's port 7 from `ip`, a host of the client's subnet whose link
/// address is `mac` and which answers no ARP request.
fn datagram_from_a_silent_host(ip: [u8; 4], mac: [u8; 6]) -> Vec<u8> {
    let mut frame = vec![0u8; 128];
    let len = build_frame(
        &mut frame,
        &FrameSpec {
            src_mac: mac,
            dst_mac: SERVER_MAC,
            vlan: None,
            tuple: FiveTuple {
                ip: IpPair::V4 {
                    src: ip,
                    dst: SERVER_IP.octets(),
                },
                proto: IP_PROTO_UDP,
                src_port: 4000,
                dst_port: 7,
            },
            tcp_flags: 0,
            payload: b"from a host that never answers",
        },
    )
    .unwrap();
    frame.truncate(len);
    frame
}

#[test]
fn a_neighbor_that_never_answers_blocks_no_other_udp_client() {
    let mut rig = Rig::new(vec![app(AppKind::UdpEcho, 7)], 8);
    let mut socket = udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 16384]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 16384]),
    );
    socket.bind(5353).unwrap();
    let handle = rig.sockets.add(socket);
    let server = IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), 7);
    let exchange = |rig: &mut Rig, silent: Option<u8>| -> usize {
        if let Some(host) = silent {
            let frame = datagram_from_a_silent_host([198, 18, 0, host], [2, 0, 0, 0, 9, host]);
            rig.wire.to_server.push_back(frame);
        }
        for i in 0..5u8 {
            rig.sockets
                .get_mut::<udp::Socket>(handle)
                .send_slice(&[i; 64], server)
                .unwrap();
        }
        rig.run(20);
        let socket = rig.sockets.get_mut::<udp::Socket>(handle);
        let mut buf = [0u8; 128];
        let mut echoed = 0;
        while socket.recv_slice(&mut buf).is_ok() {
            echoed += 1;
        }
        echoed
    };
    // The client's address becomes known first, as on a live link.
    let mut echoed = exchange(&mut rig, None);
    // A datagram from a silent host comes before the client's every time.
    for host in 50..50 + 12 {
        echoed += exchange(&mut rig, Some(host));
    }
    assert_eq!(echoed, 5 * 13, "the client's replies wait for no one");
    // Past the wait, the silent hosts' replies are dropped and counted: 8 took a probe each,
    // the other 4 found every probe busy.
    std::thread::sleep(NEIGHBOR_WAIT + std::time::Duration::from_millis(100));
    echoed += exchange(&mut rig, None);
    let stats = &rig.stats().apps[0];
    assert_eq!(stats.unresolved_drops.get(), 12);
    assert_eq!(stats.requests.get(), 5 * 14 + 8);
    assert_eq!(echoed, 5 * 14);
    rig.assert_pool_full();
}

#[test]
fn udp_echo_returns_each_datagram_to_its_sender() {
    let mut rig = Rig::new(vec![app(AppKind::UdpEcho, 7)], 8);
    let mut socket = udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 16], vec![0; 16384]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 16], vec![0; 16384]),
    );
    socket.bind(5353).unwrap();
    let handle = rig.sockets.add(socket);
    let server = IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), 7);
    for i in 0..10u8 {
        rig.sockets
            .get_mut::<udp::Socket>(handle)
            .send_slice(&[i; 100], server)
            .unwrap();
    }
    rig.run(20);
    let mut got = Vec::new();
    let socket = rig.sockets.get_mut::<udp::Socket>(handle);
    let mut buf = [0u8; 200];
    while let Ok((n, meta)) = socket.recv_slice(&mut buf) {
        assert_eq!(
            meta.endpoint, server,
            "the reply comes from the address asked"
        );
        assert_eq!(n, 100);
        got.push(buf[0]);
    }
    // The first datagrams wait for ARP in the client; smoltcp keeps them queued, none is lost.
    assert_eq!(got, (0..10).collect::<Vec<u8>>());
    assert_eq!(rig.stats().apps[0].requests.get(), 10);
    assert_eq!(rig.stats().apps[0].bytes_in.get(), 1000);
    rig.assert_pool_full();
}

#[test]
fn a_syn_for_another_threads_port_is_misdirected_and_reset() {
    let table: Arc<dyn FlowTable> = Arc::from(new_table(1024));
    // Thread 1 listens on 8001; this rig is thread 0, listening on 8000.
    table
        .listen_add(ListenKey::any_ip(Proto::Tcp, 8001), 1)
        .unwrap();
    let mut rig = Rig::with_table(vec![app(AppKind::TcpEcho, 8000)], 8, table, 0, with_rules());
    let wrong = rig.tcp_client(8001, 43000);
    let right = rig.tcp_client(8000, 43001);
    rig.run(20);
    assert_eq!(rig.tcp(right).state(), tcp::State::Established);
    assert_eq!(
        rig.tcp(wrong).state(),
        tcp::State::Closed,
        "reset by the wrong thread"
    );
    assert!(rig.stats().misdirected.get() >= 1);
    assert_eq!(rig.stats().no_socket.get(), 0);
    // A port nobody serves: no socket anywhere.
    let nobody = rig.tcp_client(9999, 43002);
    rig.run(20);
    assert_eq!(rig.tcp(nobody).state(), tcp::State::Closed);
    assert!(rig.stats().no_socket.get() >= 1);
}

#[test]
fn when_every_socket_is_busy_new_connections_are_refused_and_counted() {
    let mut rig = Rig::new(vec![app(AppKind::TcpEcho, 7)], 2);
    let a = rig.tcp_client(7, 44000);
    let b = rig.tcp_client(7, 44001);
    rig.run(20);
    let c = rig.tcp_client(7, 44002);
    rig.run(20);
    assert_eq!(rig.tcp(a).state(), tcp::State::Established);
    assert_eq!(rig.tcp(b).state(), tcp::State::Established);
    assert_eq!(rig.tcp(c).state(), tcp::State::Closed);
    assert!(rig.stats().apps[0].listen_exhausted.get() >= 1);
    // A closed connection frees its socket, which listens again.
    rig.tcp(a).close();
    rig.run(40);
    let d = rig.tcp_client(7, 44003);
    rig.run(20);
    assert_eq!(rig.tcp(d).state(), tcp::State::Established);
}

/// A host of the client's subnet that floods SYNs from its own address: it announced itself
/// (so the server's SYN-ACKs and any reset go out to it at once) but answers nothing.
const FLOODER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 66);
const FLOODER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x66];

fn flood_syn(src_port: u16, dst_port: u16) -> Vec<u8> {
    frames::tcp_v4(
        FLOODER_MAC,
        SERVER_MAC,
        &frames::TcpSegment {
            src: SocketAddrV4::new(FLOODER_IP, src_port),
            dst: SocketAddrV4::new(SERVER_IP, dst_port),
            seq: u32::from(src_port) << 16,
            ack: 0,
            flags: frames::TCP_SYN,
            window: 65535,
            payload: Vec::new(),
        },
    )
}

fn flood_key(src_port: u16, dst_port: u16) -> flowtable::FlowKey {
    flowtable::FlowKey::v4(Proto::Tcp, SERVER_IP, dst_port, FLOODER_IP, src_port)
}

/// The segments of `frames` addressed to the flooder, each as its flags.
fn to_flooder(frames: &[Vec<u8>]) -> Vec<u8> {
    frames
        .iter()
        .filter_map(|f| frames::parse_tcp_v4(f))
        .filter(|s| *s.dst.ip() == FLOODER_IP)
        .map(|s| s.flags)
        .collect()
}

#[test]
fn a_syn_flood_takes_the_oldest_half_open_sockets_and_lets_a_client_in() {
    const SOCKETS: usize = 8;
    let mut rig = Rig::new(vec![app(AppKind::TcpEcho, 7)], SOCKETS);
    rig.deliver(vec![frames::arp_request(
        FLOODER_MAC,
        FLOODER_IP,
        SERVER_IP,
    )]);
    // Five times the sockets, four SYNs a round.
    let ports: Vec<u16> = (30000..30000 + 5 * SOCKETS as u16).collect();
    for burst in ports.chunks(4) {
        rig.deliver(burst.iter().map(|&p| flood_syn(p, 7)).collect());
        assert!(
            rig.table.exact_len() <= SOCKETS,
            "{}",
            rig.table.exact_len()
        );
    }
    let answers: Vec<Vec<u8>> = rig.wire.to_client.drain(..).collect();
    let synacks = to_flooder(&answers);
    assert_eq!(synacks.len(), ports.len(), "every SYN was answered");
    assert!(synacks
        .iter()
        .all(|&f| f == frames::TCP_SYN | frames::TCP_ACK));
    let stats = &rig.stats().apps[0];
    assert_eq!(stats.connections_opened.get(), ports.len() as u64);
    assert_eq!(stats.half_open_reused.get(), (ports.len() - SOCKETS) as u64);
    assert_eq!(stats.listen_exhausted.get(), 0);
    assert_eq!(rig.table.exact_len(), SOCKETS);
    // The oldest went first: the newest are the ones left.
    for (n, &port) in ports.iter().enumerate() {
        let held = rig.table.lookup(&flood_key(port, 7)) == Lookup::Exact(0);
        assert_eq!(held, n >= ports.len() - SOCKETS, "port {port}");
    }

    // A client's SYN takes the oldest half-open socket too and its handshake completes.
    let client = rig.tcp_client(7, 41000);
    rig.run(20);
    assert_eq!(rig.tcp(client).state(), tcp::State::Established);
    rig.tcp(client).send_slice(b"still served").unwrap();
    rig.run(20);
    assert_eq!(rig.drain(client), b"still served");
    let stats = &rig.stats().apps[0];
    assert_eq!(
        stats.half_open_reused.get(),
        (ports.len() - SOCKETS + 1) as u64
    );
    assert_eq!(rig.table.exact_len(), SOCKETS);

    // After the SYN timeout the half-open ones are gone, without a word; the client stays.
    std::thread::sleep(SYN_TIMEOUT + std::time::Duration::from_millis(50));
    rig.wire.to_client.clear();
    rig.deliver(Vec::new());
    let after: Vec<Vec<u8>> = rig.wire.to_client.drain(..).collect();
    assert_eq!(
        to_flooder(&after),
        Vec::<u8>::new(),
        "no reset to the flooder"
    );
    let stats = &rig.stats().apps[0];
    assert_eq!(stats.syn_timeouts.get(), (SOCKETS - 1) as u64);
    assert_eq!(
        stats.connections_closed.get(),
        stats.half_open_reused.get() + stats.syn_timeouts.get()
    );
    assert_eq!(stats.connections_active.get(), 1);
    assert_eq!(rig.table.exact_len(), 1);
    assert_eq!(rig.server.connections(), 1);
    rig.tcp(client).send_slice(b"and after").unwrap();
    rig.run(20);
    assert_eq!(rig.drain(client), b"and after");
    rig.tcp(client).close();
    rig.run(50);
    assert_eq!(rig.table.exact_len(), 0);
    rig.assert_pool_full();
}

#[test]
fn a_half_open_connection_is_not_released_before_the_syn_timeout_nor_an_established_one_after() {
    let mut rig = Rig::new(vec![app(AppKind::TcpEcho, 7)], 8);
    rig.deliver(vec![frames::arp_request(
        FLOODER_MAC,
        FLOODER_IP,
        SERVER_IP,
    )]);
    let client = rig.tcp_client(7, 41001);
    rig.run(20);
    rig.deliver(vec![flood_syn(30000, 7)]);
    assert_eq!(rig.table.exact_len(), 2);
    rig.deliver(Vec::new());
    assert_eq!(rig.stats().apps[0].syn_timeouts.get(), 0);
    assert_eq!(rig.table.exact_len(), 2);
    std::thread::sleep(SYN_TIMEOUT + std::time::Duration::from_millis(50));
    // Nothing arrives: the stack's own deadline asks for the round.
    assert!(rig.server.poll_delay().is_some_and(|d| d.is_zero()));
    rig.deliver(Vec::new());
    assert_eq!(rig.stats().apps[0].syn_timeouts.get(), 1);
    assert_eq!(rig.table.lookup(&flood_key(30000, 7)), Lookup::ListenAny(0));
    assert_eq!(rig.table.exact_len(), 1);
    assert_eq!(rig.tcp(client).state(), tcp::State::Established);
    // The flooder's late ACK finds no connection: the server resets it.
    rig.wire.to_client.clear();
    let late_ack = frames::tcp_v4(
        FLOODER_MAC,
        SERVER_MAC,
        &frames::TcpSegment {
            src: SocketAddrV4::new(FLOODER_IP, 30000),
            dst: SocketAddrV4::new(SERVER_IP, 7),
            seq: (30000u32 << 16) + 1,
            ack: 12345,
            flags: frames::TCP_ACK,
            window: 65535,
            payload: Vec::new(),
        },
    );
    rig.deliver(vec![late_ack]);
    let answers: Vec<Vec<u8>> = rig.wire.to_client.drain(..).collect();
    assert_eq!(to_flooder(&answers), vec![frames::TCP_RST]);
    rig.assert_pool_full();
}

#[test]
fn shutdown_resets_open_connections_and_deletes_their_rules() {
    let mut rig = Rig::new(vec![app(AppKind::TcpEcho, 7)], 8);
    let handle = rig.tcp_client(7, 45000);
    rig.run(10);
    assert_eq!(rig.table.exact_len(), 1);
    let mut tx = Vec::new();
    rig.server.shutdown(&mut tx, 64, &mut rig.cache);
    assert_eq!(rig.table.exact_len(), 0);
    assert_eq!(tx.len(), 1, "one reset");
    for buf in tx.drain(..) {
        rig.wire.to_client.push_back(buf.data().to_vec());
        rig.cache.free(buf);
    }
    rig.client
        .poll(rig.now, &mut ClientDevice(&mut rig.wire), &mut rig.sockets);
    assert_eq!(rig.tcp(handle).state(), tcp::State::Closed);
    rig.assert_pool_full();
}

const UPSTREAM_PORT: u16 = 9000;
const PROXY_PORT: u16 = 8080;

fn proxy_app() -> AppSpec {
    AppSpec::proxy(
        PROXY_PORT,
        std::net::SocketAddr::from((CLIENT_IP, UPSTREAM_PORT)),
    )
}

/// Runs `client` → proxy → `upstream` (an echo server on the client host) until `sent` came back
/// to the client; returns what came back.
fn echo_through_proxy(
    rig: &mut Rig,
    client: SocketHandle,
    upstream: SocketHandle,
    sent: &[u8],
) -> Vec<u8> {
    let (mut written, mut echoed) = (0, Vec::new());
    for _ in 0..5000 {
        rig.run(1);
        let socket = rig.tcp(client);
        if socket.can_send() && written < sent.len() {
            written += socket.send_slice(&sent[written..]).unwrap();
        }
        let at_upstream = rig.drain(upstream);
        if !at_upstream.is_empty() {
            let n = rig.tcp(upstream).send_slice(&at_upstream).unwrap();
            assert_eq!(n, at_upstream.len(), "the upstream's buffer holds the echo");
        }
        echoed.extend(rig.drain(client));
        if echoed.len() == sent.len() {
            break;
        }
    }
    echoed
}

/// The upstream connection's key: from the proxy's local port to the upstream server.
fn upstream_key(rig: &mut Rig, upstream: SocketHandle) -> flowtable::FlowKey {
    let proxy_end = rig.tcp(upstream).remote_endpoint().unwrap();
    flowtable::FlowKey::v4(
        Proto::Tcp,
        SERVER_IP,
        proxy_end.port,
        CLIENT_IP,
        UPSTREAM_PORT,
    )
}

#[test]
fn tcp_proxy_relays_both_ways_and_both_rules_follow_their_connections() {
    let mut rig = Rig::new(vec![proxy_app()], 16);
    let upstream = rig.tcp_listener(UPSTREAM_PORT);
    let client = rig.tcp_client(PROXY_PORT, 46000);
    let sent: Vec<u8> = (0..150_000u32).map(|i| (i * 13 + i / 97) as u8).collect();
    let echoed = echo_through_proxy(&mut rig, client, upstream, &sent);
    assert_eq!(echoed.len(), sent.len());
    assert!(echoed == sent, "relayed bytes differ");

    // Both connections have their exact rule while they are open.
    let inbound = flowtable::FlowKey::v4(Proto::Tcp, SERVER_IP, PROXY_PORT, CLIENT_IP, 46000);
    let outbound = upstream_key(&mut rig, upstream);
    assert_eq!(rig.table.lookup(&inbound), Lookup::Exact(0));
    assert_eq!(rig.table.lookup(&outbound), Lookup::Exact(0));
    assert!(flowsteer_stack::ports::EPHEMERAL_PORTS.contains(&outbound.local_port()));
    assert_eq!(rig.server.connections(), 2);

    // The client's FIN reaches the upstream, the upstream's FIN the client.
    rig.tcp(client).close();
    rig.run(20);
    assert_eq!(rig.tcp(upstream).state(), tcp::State::CloseWait);
    rig.tcp(upstream).close();
    rig.run(50);
    assert_eq!(rig.tcp(client).state(), tcp::State::TimeWait);
    assert_eq!(rig.table.exact_len(), 0, "both rules went");
    assert_eq!(rig.server.connections(), 0);
    let stats = rig.stats();
    let app = &stats.apps[0];
    assert_eq!(app.connections_opened.get(), 1);
    assert_eq!(app.connections_closed.get(), 1);
    assert_eq!(app.upstream_connects.get(), 1);
    assert_eq!(app.upstream_failed.get(), 0);
    assert_eq!(app.bytes_in.get(), sent.len() as u64);
    assert_eq!(app.bytes_out.get(), sent.len() as u64);
    assert_eq!(stats.rules_added.get(), 2);
    assert_eq!(stats.rules_deleted.get(), 2);
    assert_eq!(stats.misdirected.get(), 0);
    rig.assert_pool_full();
}

#[test]
fn tcp_proxy_under_rss_picks_a_port_rss_brings_back_and_adds_no_rule() {
    let table: Arc<dyn FlowTable> = Arc::from(new_table(1024));
    let rss = SoftRss::new(&MICROSOFT_KEY, 128, 2).unwrap();
    let outbound = Outbound {
        rule: false,
        ports: PortChoice::Rss {
            rss: rss.clone(),
            queue: 1,
        },
    };
    let mut rig = Rig::with_table(vec![proxy_app()], 16, table, 1, outbound);
    let upstream = rig.tcp_listener(UPSTREAM_PORT);
    for (i, client_port) in (46100..46110).enumerate() {
        let client = rig.tcp_client(PROXY_PORT, client_port);
        let sent = vec![i as u8; 3000];
        // One upstream socket serves one connection at a time: re-arm it after each.
        let echoed = echo_through_proxy(&mut rig, client, upstream, &sent);
        assert!(echoed == sent, "connection {i}: relayed bytes differ");
        let outbound = upstream_key(&mut rig, upstream);
        let answer = FiveTuple::v4(
            IP_PROTO_TCP,
            CLIENT_IP,
            UPSTREAM_PORT,
            SERVER_IP,
            outbound.local_port(),
        );
        assert_eq!(
            rss.queue_of_tuple(&answer).1,
            1,
            "the upstream's answers hash to the connecting thread's queue"
        );
        assert_eq!(
            rig.table.lookup(&outbound),
            Lookup::Miss,
            "no rule for the outbound connection"
        );
        rig.tcp(client).close();
        rig.run(20);
        rig.tcp(upstream).close();
        rig.run(50);
        rig.tcp(upstream).abort();
        rig.run(1);
        rig.tcp(upstream).listen(UPSTREAM_PORT).unwrap();
    }
    let stats = rig.stats();
    assert_eq!(stats.apps[0].upstream_connects.get(), 10);
    assert_eq!(
        stats.rules_added.get(),
        10,
        "the accepted connections' rules only"
    );
    assert_eq!(stats.misdirected.get(), 0);
    assert_eq!(rig.table.exact_len(), 0);
    rig.assert_pool_full();
}

#[test]
fn a_refused_upstream_resets_the_client_and_is_counted() {
    let mut rig = Rig::new(vec![proxy_app()], 16);
    // Nothing listens on the upstream port: the client host answers the SYN with a reset.
    let client = rig.tcp_client(PROXY_PORT, 46200);
    rig.run(30);
    assert_eq!(rig.tcp(client).state(), tcp::State::Closed);
    let app = &rig.stats().apps[0];
    assert_eq!(app.upstream_connects.get(), 1);
    assert_eq!(app.upstream_failed.get(), 1);
    assert_eq!(rig.table.exact_len(), 0);
    assert_eq!(rig.server.connections(), 0);
    rig.assert_pool_full();
}

#[test]
fn an_upstream_reset_after_its_fin_resets_the_half_closed_client() {
    let mut rig = Rig::new(vec![proxy_app()], 16);
    let upstream = rig.tcp_listener(UPSTREAM_PORT);
    let client = rig.tcp_client(PROXY_PORT, 46400);
    let echoed = echo_through_proxy(&mut rig, client, upstream, b"hello");
    assert_eq!(echoed, b"hello");
    // The upstream closes first: its FIN reaches the client, whose sending half stays open.
    rig.tcp(upstream).close();
    rig.run(20);
    assert_eq!(rig.tcp(client).state(), tcp::State::CloseWait);
    // The client keeps sending and the upstream resets instead of reading.
    rig.tcp(client).send_slice(b"more").unwrap();
    rig.tcp(upstream).abort();
    rig.run(30);
    assert_eq!(rig.tcp(client).state(), tcp::State::Closed, "reset");
    assert_eq!(rig.table.exact_len(), 0);
    assert_eq!(rig.server.connections(), 0);
    assert_eq!(rig.stats().apps[0].upstream_failed.get(), 1);
    rig.assert_pool_full();
}

#[test]
fn a_client_reset_resets_the_upstream() {
    let mut rig = Rig::new(vec![proxy_app()], 16);
    let upstream = rig.tcp_listener(UPSTREAM_PORT);
    let client = rig.tcp_client(PROXY_PORT, 46300);
    let echoed = echo_through_proxy(&mut rig, client, upstream, b"ping");
    assert_eq!(echoed, b"ping");
    rig.tcp(client).abort();
    rig.run(20);
    assert_eq!(rig.tcp(upstream).state(), tcp::State::Closed);
    assert_eq!(rig.table.exact_len(), 0);
    assert_eq!(rig.server.connections(), 0);
    assert_eq!(rig.stats().apps[0].upstream_failed.get(), 0);
    rig.assert_pool_full();
}

#[test]
fn a_proxy_needs_an_upstream_and_a_way_back() {
    let table: Arc<dyn FlowTable> = Arc::from(new_table(1024));
    let stats = |apps: &[AppSpec]| Arc::new(CachePadded::new(StackStats::new(apps)));
    let no_upstream = vec![app(AppKind::TcpProxy, PROXY_PORT)];
    let error = Stack::new(
        stack_config(no_upstream.clone(), 8, with_rules()),
        0,
        table.clone(),
        stats(&no_upstream),
    )
    .unwrap_err();
    assert_eq!(error, StackError::Upstream { port: PROXY_PORT });
    // RSS balancing (no rule) over a port whose RSS is unknown: nothing brings answers back.
    let no_way_back = Outbound {
        rule: false,
        ports: PortChoice::Share {
            thread: 0,
            threads: 2,
        },
    };
    let apps = vec![proxy_app()];
    let error = Stack::new(
        stack_config(apps.clone(), 8, no_way_back),
        0,
        table,
        stats(&apps),
    )
    .unwrap_err();
    assert_eq!(error, StackError::Outbound);
    assert!(error.to_string().contains("RSS"), "{error}");
}

#[test]
fn an_ack_that_overtakes_the_fin_before_it_waits_for_it() {
    let mut rig = Rig::new(vec![app(AppKind::TcpEcho, 7)], 8);
    let handle = rig.tcp_client(7, 48100);
    rig.run(10);
    rig.tcp(handle).send_slice(b"early").unwrap();
    let data = rig.client_emits();
    rig.tcp(handle).close();
    let fin = rig.client_emits();
    rig.deliver(data);
    // The echo reaches the client, which acknowledges it: that ACK carries the sequence number
    // one past the client's FIN, and reaches the server before the FIN does.
    rig.client_emits();
    rig.now += smoltcp::time::Duration::from_millis(50);
    let ack = rig.client_emits();
    assert_eq!((fin.len(), ack.len()), (1, 1));
    rig.deliver(ack);
    rig.deliver(fin);
    assert_eq!(rig.stats().early_segments_held.get(), 1);
    rig.run(5);
    assert_eq!(rig.drain(handle), b"early");
    assert!(
        !rig.tcp(handle).may_recv(),
        "the server saw the FIN and closed too"
    );
    assert_eq!(rig.stats().early_segments_expired.get(), 0);
    rig.run(20);
    assert_eq!(rig.table.exact_len(), 0);
    rig.assert_pool_full();
}

#[test]
fn early_segments_held_at_once_are_bounded() {
    let mut rig = Rig::new(vec![app(AppKind::TcpEcho, 7)], 8);
    let handle = rig.tcp_client(7, 48200);
    rig.run(10);
    rig.tcp(handle).send_slice(b"never delivered").unwrap();
    let _lost = rig.client_emits();
    rig.tcp(handle).close();
    let fin = rig.client_emits();
    // A peer repeating a segment ahead of its data: only so many wait, the rest go at once.
    let copies = 300;
    rig.deliver(vec![fin[0].clone(); copies]);
    assert_eq!(rig.stats().early_segments_held.get(), 256);
    std::thread::sleep(past_the_hold_limit());
    rig.deliver(Vec::new());
    // The first goes for want of its data; the others are copies of it, and follow it.
    assert_eq!(rig.stats().early_segments_expired.get(), 1);
    rig.tcp(handle).abort();
    rig.run(20);
    rig.assert_pool_full();
}

/// Issue: the stack processed ICMP echo requests and answered none: `ping` got no reply from a
/// server whose TCP and UDP worked.
#[test]
fn ping_is_answered_over_ipv4_and_ipv6() {
    use flowsteer_testrig::frames::{arp_request, describe, echo_request, neighbor_solicitation};
    use std::net::IpAddr;

    let mut rig = Rig::new(vec![app(AppKind::UdpEcho, 7)], 8);
    let server6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    let client6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
    // The client's neighbour messages first: the server learns its link address from them.
    rig.deliver(vec![
        arp_request(CLIENT_MAC, CLIENT_IP, SERVER_IP),
        neighbor_solicitation(CLIENT_MAC, client6, server6),
        echo_request(
            CLIENT_MAC,
            SERVER_MAC,
            IpAddr::V4(CLIENT_IP),
            IpAddr::V4(SERVER_IP),
            b"ping over IPv4",
        ),
        echo_request(
            CLIENT_MAC,
            SERVER_MAC,
            IpAddr::V6(client6),
            IpAddr::V6(server6),
            b"ping over IPv6",
        ),
    ]);
    let replies: Vec<String> = rig
        .wire
        .to_client
        .drain(..)
        .map(|frame| describe(&frame))
        .filter(|what| what.contains("echo"))
        .collect();
    assert_eq!(
        replies,
        [
            format!("icmp echo reply {SERVER_IP} > {CLIENT_IP} \"ping over IPv4\""),
            format!("icmpv6 echo reply {server6} > {client6} \"ping over IPv6\""),
        ]
    );
    rig.assert_pool_full();
}

/// A sleep that outlasts the early-segment hold limit.
fn past_the_hold_limit() -> std::time::Duration {
    std::time::Duration::from_micros(flowsteer_stack::HOLD_LIMIT.total_micros())
        + std::time::Duration::from_millis(20)
}
