//! A capture replayed through the engine on DPDK's `net_pcap` driver: every frame accounted for.
//!
//! The test writes two captures, one per queue (`rx_pcap=` once per queue), with what a link
//! brings a server: ARP and IPv6 neighbour solicitations, TCP SYNs to ports each thread serves
//! (7000 on thread 0 only, 7001 on thread 1 only, 8080 on both) and to a port nobody serves, a
//! TCP segment for no connection, UDP to the echo app and to a closed port, ICMP echo, a frame
//! for another host, and what must be dropped or set aside: a runt, truncated captures of IPv4
//! and IPv6 frames, a bad IPv4 header length, a non-IP ethertype, a non-first fragment, a frame
//! too long for one mbuf. The engine (`port.driver = "dpdk"`, two queues, two stack threads,
//! software balancing) runs until it has received and processed every frame, then stops; the
//! driver writes what each queue sent to its `tx_pcap=` file.
//!
//! The checks, all exact:
//! - every frame is counted once: received by its queue (the capture's count less the frame
//!   too long for one mbuf, which the driver chains and the port frees as `rx_unusable`), then
//!   processed or dropped by its parser reason; frames without a flow key counted by kind;
//!   conservation exact; every mbuf back in the mempool;
//! - steering: a SYN to the other thread's port is handed to it, with the learning copies of
//!   the neighbour messages ahead of it in the same burst, so each thread knows the client's
//!   link address before it answers; nothing misdirected;
//! - what each queue sent, parsed with smoltcp's wire types (checksums verified): the ARP reply
//!   and neighbour advertisement of the thread that received the request, a SYN-ACK from the
//!   thread that owns each served port, RSTs for the closed port and the stray segment, the UDP
//!   echo, ICMP port unreachable, the ICMP echo reply, and at shutdown a RST for every
//!   connection still half open; nothing else (no answer to what was dropped, to the frame for
//!   another host, to the fragment).
//!
//! Replays are deterministic: `net_pcap` reads a file as fast as the queue is polled, in order,
//! and each capture fits one receive burst. Needs root (the EAL); without it the test says so and
//! passes (CI=true: fails).
#![cfg(feature = "dpdk")]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::servers::TempDir;
use common::suite::client_apps;
use common::*;
use flowsteer_config::{Config, Driver};
use flowsteer_nic::wire::{build_frame, FiveTuple, FrameSpec, IP_PROTO_TCP, IP_PROTO_UDP};
use flowsteer_testrig::frames::{self, describe};
use flowsteer_testrig::pcap::{self, Record};
use forwarder::engine::Engine;
use smoltcp::wire::{EthernetAddress, Ipv4Packet};

const DEVICE: &str = "net_pcap0";
/// `net_pcap`'s address in DPDK 22.11: 02:70:63:61:70 ("pcap") and the number of the device
/// among the process's `net_pcap` devices, 0 for the only one.
const ENGINE_MAC: [u8; 6] = [0x02, 0x70, 0x63, 0x61, 0x70, 0x00];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// A host on the link that is not the engine.
const OTHER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
const TCP_SYN: u8 = 0x02;
const TCP_PSH_ACK: u8 = 0x18;
const ECHO_PORTS: [u16; 2] = common::suite::ECHO_PORTS;
const CLOSED_PORT: u16 = 9999;
const CLOSED_UDP_PORT: u16 = 9;

// ---------------------------------------------------------------------------------------------
// Frames

/// A TCP or UDP frame from the client to `dst_mac`, checksums valid, TCP sequence number 0.
fn l4(dst_mac: [u8; 6], tuple: FiveTuple, tcp_flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 128 + payload.len()];
    let len = build_frame(
        &mut buf,
        &FrameSpec {
            src_mac: CLIENT_MAC,
            dst_mac,
            vlan: None,
            tuple,
            tcp_flags,
            payload,
        },
    )
    .expect("the frame fits");
    buf.truncate(len);
    buf
}

fn tcp4(src_port: u16, dst_port: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let tuple = FiveTuple::v4(IP_PROTO_TCP, CLIENT_IP, src_port, ENGINE_IP, dst_port);
    l4(ENGINE_MAC, tuple, flags, payload)
}

fn tcp6(src_port: u16, dst_port: u16, flags: u8) -> Vec<u8> {
    let tuple = FiveTuple::v6(IP_PROTO_TCP, CLIENT_IP6, src_port, ENGINE_IP6, dst_port);
    l4(ENGINE_MAC, tuple, flags, b"")
}

fn udp4(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let tuple = FiveTuple::v4(IP_PROTO_UDP, CLIENT_IP, src_port, ENGINE_IP, dst_port);
    l4(ENGINE_MAC, tuple, 0, payload)
}

fn udp6(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let tuple = FiveTuple::v6(IP_PROTO_UDP, CLIENT_IP6, src_port, ENGINE_IP6, dst_port);
    l4(ENGINE_MAC, tuple, 0, payload)
}

/// A UDP datagram's second fragment: the classifier finds no ports in it.
fn non_first_fragment() -> Vec<u8> {
    let mut frame = udp4(5555, UDP_ECHO_PORT, &[0x5a; 64]);
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..]);
    ip.set_frag_offset(1480);
    ip.fill_checksum();
    frame
}

/// An LLDP frame: neither IP nor ARP.
fn lldp() -> Vec<u8> {
    frames::ethernet(
        CLIENT_MAC,
        [0x01, 0x80, 0xc2, 0, 0, 0x0e],
        0x88cc,
        46,
        |p| p.fill(0),
    )
}

fn arp_request() -> Vec<u8> {
    frames::arp_request(CLIENT_MAC, CLIENT_IP, ENGINE_IP)
}

fn neighbor_solicitation() -> Vec<u8> {
    frames::neighbor_solicitation(CLIENT_MAC, CLIENT_IP6, ENGINE_IP6)
}

fn ping(client: IpAddr, engine: IpAddr, data: &[u8]) -> Vec<u8> {
    frames::echo_request(CLIENT_MAC, ENGINE_MAC, client, engine, data)
}

/// What the capture of each queue holds, and what the engine must make of it.
struct Replay {
    /// The capture of queue 0 and of queue 1.
    captures: [Vec<Record>; 2],
    /// Frames the port drops before any thread sees them (too long for one mbuf).
    port_dropped: [u64; 2],
    /// Frames each thread drops, by parser reason.
    dropped: [Vec<(&'static str, u64)>; 2],
}

fn replay() -> Replay {
    // Both queues begin with the client's ARP request and neighbour solicitation: whichever
    // thread a SYN reaches, it has learned the client's link address first (from its own
    // queue, or from the learning copy the other thread hands over ahead of the SYN).
    let queue0 = vec![
        Record::whole(arp_request()),
        Record::whole(neighbor_solicitation()),
        Record::whole(tcp4(40000, ECHO_PORTS[0], TCP_SYN, b"")),
        Record::whole(tcp4(40001, ECHO_PORTS[1], TCP_SYN, b"")),
        Record::whole(tcp6(40002, HTTP_PORT, TCP_SYN)),
        Record::whole(tcp4(40003, ECHO_PORTS[0], TCP_PSH_ACK, b"no connection")),
        Record::whole(tcp4(40004, CLOSED_PORT, TCP_SYN, b"")),
        Record::whole(udp4(50000, UDP_ECHO_PORT, b"echo over IPv4")),
        Record::whole(udp4(50001, CLOSED_UDP_PORT, b"nobody listens")),
        Record::whole(ping(IpAddr::V4(CLIENT_IP), IpAddr::V4(ENGINE_IP), b"ping")),
        Record::whole(l4(
            OTHER_MAC,
            FiveTuple::v4(IP_PROTO_TCP, CLIENT_IP, 40005, ENGINE_IP, ECHO_PORTS[0]),
            TCP_SYN,
            b"",
        )),
        Record::whole(lldp()),
        Record::whole(non_first_fragment()),
        Record::whole(vec![0xff; 10]),
        Record::truncated(&tcp4(40006, ECHO_PORTS[0], TCP_SYN, b""), 24),
        Record::whole({
            let mut frame = udp4(50002, UDP_ECHO_PORT, b"bad header length");
            frame[14] = 0x44;
            frame
        }),
        Record::whole(udp4(50003, UDP_ECHO_PORT, &[0x11; 2900])),
    ];
    let queue1 = vec![
        Record::whole(arp_request()),
        Record::whole(neighbor_solicitation()),
        Record::whole(tcp4(41000, ECHO_PORTS[0], TCP_SYN, b"")),
        Record::whole(tcp4(41001, ECHO_PORTS[1], TCP_SYN, b"")),
        Record::whole(tcp6(41002, ECHO_PORTS[1], TCP_SYN)),
        Record::whole(udp6(51000, UDP_ECHO_PORT, b"echo over IPv6")),
        Record::whole(udp6(51001, CLOSED_UDP_PORT, b"nobody listens")),
        Record::whole(ping(
            IpAddr::V6(CLIENT_IP6),
            IpAddr::V6(ENGINE_IP6),
            b"ping6",
        )),
        Record::truncated(&tcp6(41003, ECHO_PORTS[1], TCP_SYN), 14 + 30),
    ];
    Replay {
        captures: [queue0, queue1],
        port_dropped: [1, 0],
        dropped: [
            vec![
                ("bad_ipv4_header_length", 1),
                ("truncated_ethernet", 1),
                ("truncated_ipv4", 1),
            ],
            vec![("truncated_ipv6", 1)],
        ],
    }
}

// ---------------------------------------------------------------------------------------------
// What the engine sent

/// What each queue must send, sorted: the answers of the thread that owns it.
fn expected_tx() -> [Vec<String>; 2] {
    let v4 = IpAddr::V4(ENGINE_IP);
    let c4 = IpAddr::V4(CLIENT_IP);
    let v6 = IpAddr::V6(ENGINE_IP6);
    let c6 = IpAddr::V6(CLIENT_IP6);
    let tcp = |src: IpAddr, sport: u16, dst: IpAddr, dport: u16, flags: &str| {
        format!(
            "tcp {} > {} {flags}",
            SocketAddr::new(src, sport),
            SocketAddr::new(dst, dport)
        )
    };
    let engine_mac = EthernetAddress(ENGINE_MAC);
    let arp_reply = format!("arp Reply {ENGINE_IP} is-at {engine_mac} > {CLIENT_IP}");
    let advert = format!("ndp advert {ENGINE_IP6} is-at {engine_mac} {v6} > {c6}");
    let mut queue0 = vec![
        arp_reply.clone(),
        advert.clone(),
        // The SYNs to the ports thread 0 serves, from both queues; at shutdown, their resets.
        tcp(v4, ECHO_PORTS[0], c4, 40000, "SA"),
        tcp(v4, ECHO_PORTS[0], c4, 40000, "RA"),
        tcp(v6, HTTP_PORT, c6, 40002, "SA"),
        tcp(v6, HTTP_PORT, c6, 40002, "RA"),
        tcp(v4, ECHO_PORTS[0], c4, 41000, "SA"),
        tcp(v4, ECHO_PORTS[0], c4, 41000, "RA"),
        // A segment for no connection, and a SYN to a port nobody serves.
        tcp(v4, ECHO_PORTS[0], c4, 40003, "R"),
        tcp(v4, CLOSED_PORT, c4, 40004, "RA"),
        format!(
            "udp {} > {} \"echo over IPv4\"",
            SocketAddr::new(v4, UDP_ECHO_PORT),
            SocketAddr::new(c4, 50000)
        ),
        format!("icmp destination port unreachable {v4} > {c4} for udp port {CLOSED_UDP_PORT}"),
        format!("icmp echo reply {v4} > {c4} \"ping\""),
    ];
    let mut queue1 = vec![
        arp_reply,
        advert,
        tcp(v4, ECHO_PORTS[1], c4, 40001, "SA"),
        tcp(v4, ECHO_PORTS[1], c4, 40001, "RA"),
        tcp(v4, ECHO_PORTS[1], c4, 41001, "SA"),
        tcp(v4, ECHO_PORTS[1], c4, 41001, "RA"),
        tcp(v6, ECHO_PORTS[1], c6, 41002, "SA"),
        tcp(v6, ECHO_PORTS[1], c6, 41002, "RA"),
        format!(
            "udp {} > {} \"echo over IPv6\"",
            SocketAddr::new(v6, UDP_ECHO_PORT),
            SocketAddr::new(c6, 51000)
        ),
        format!("icmpv6 port unreachable {v6} > {c6} for udp port {CLOSED_UDP_PORT}"),
        format!("icmpv6 echo reply {v6} > {c6} \"ping6\""),
    ];
    queue0.sort();
    queue1.sort();
    [queue0, queue1]
}

// ---------------------------------------------------------------------------------------------
// The replay

/// Two stack threads on the device's two queues running the kernel-client suite's apps.
fn config(eal_args: Vec<String>) -> Config {
    let mut cfg = two_threads_serving(client_apps());
    cfg.port.driver = Driver::Dpdk;
    cfg.port.device = DEVICE.to_owned();
    cfg.port.eal_args = eal_args;
    cfg.validate().expect("a valid DPDK configuration");
    cfg
}

/// Waits until the threads received `frames` and processed or dropped each of them and of the
/// learning copies they made.
fn wait_until_accounted(engine: &Engine, frames: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let threads = engine.shared().stats.snapshot();
        let rx: u64 = threads.iter().map(|t| t.rx).sum();
        let copies: u64 = threads.iter().map(|t| t.link_copies).sum();
        let done: u64 = threads
            .iter()
            .map(|t| t.processed() + t.dropped_total())
            .sum();
        if rx == frames && done == rx + copies {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after 10 s: {rx} of {frames} frames received, {done} of {} accounted",
            rx + copies
        );
        thread::sleep(Duration::from_millis(5));
    }
}

fn pcap_arg(key: &str, path: &Path) -> String {
    format!("{key}={}", path.display())
}

#[test]
fn a_replayed_capture_is_accounted_for_frame_by_frame() {
    if flowsteer_testrig::skip_without_root() {
        return;
    }
    let replay = replay();
    let dir = TempDir::new("pcap");
    let rx = [dir.0.join("queue0.pcap"), dir.0.join("queue1.pcap")];
    let tx = [dir.0.join("sent0.pcap"), dir.0.join("sent1.pcap")];
    for (path, capture) in rx.iter().zip(&replay.captures) {
        pcap::write(path, capture).expect("write the capture");
    }
    // The driver opens the captures when the EAL creates the device, so they exist first.
    let vdev = format!(
        "--vdev={DEVICE},{},{},{},{}",
        pcap_arg("rx_pcap", &rx[0]),
        pcap_arg("rx_pcap", &rx[1]),
        pcap_arg("tx_pcap", &tx[0]),
        pcap_arg("tx_pcap", &tx[1])
    );
    let cfg = config(vec![vdev]);
    let engine = Engine::start(&cfg, false).expect("the engine starts on net_pcap");
    let started = Instant::now();
    assert_eq!(
        engine.shared().port.mac(),
        ENGINE_MAC,
        "the captures are addressed to net_pcap's MAC address"
    );
    let captured: u64 = replay.captures.iter().map(|c| c.len() as u64).sum();
    let port_dropped: u64 = replay.port_dropped.iter().sum();
    wait_until_accounted(&engine, captured - port_dropped);
    let report = stop_and_check(engine);
    let ran = started.elapsed();
    let table = report.render_table();

    for (queue, thread) in report.per_thread.iter().enumerate() {
        let received = replay.captures[queue].len() as u64 - replay.port_dropped[queue];
        assert_eq!(thread.rx, received, "queue {queue}\n{table}");
        let port_dropped = report.port_dropped[queue].get("rx_unusable").copied();
        assert_eq!(
            port_dropped,
            Some(replay.port_dropped[queue]),
            "queue {queue}: frames too long for one mbuf\n{table}"
        );
        let mut dropped = thread.dropped.clone();
        dropped.sort();
        let expected: Vec<(String, u64)> = replay.dropped[queue]
            .iter()
            .map(|&(reason, n)| (reason.to_owned(), n))
            .collect();
        assert_eq!(dropped, expected, "queue {queue}: drops by reason\n{table}");
        // Frames without a flow key stay where they arrived, counted by kind.
        assert_eq!((thread.arp, thread.ndp), (1, 1), "queue {queue}\n{table}");
        // One learning copy of each neighbour message for the other thread, and one SYN to
        // the other thread's port, handed over together.
        assert_eq!(thread.link_copies, 2, "queue {queue}\n{table}");
        assert_eq!(thread.handed_off[1 - queue], 3, "queue {queue}\n{table}");
    }
    let unkeyed = |queue: usize, reason: &str| {
        report.per_thread[queue]
            .unkeyed
            .iter()
            .find(|(r, _)| r == reason)
            .map_or(0, |&(_, n)| n)
    };
    assert_eq!(unkeyed(0, "unknown_ethertype"), 1, "{table}");
    assert_eq!(unkeyed(0, "non_first_fragment"), 1, "{table}");
    assert_eq!(unkeyed(0, "unsupported_l4"), 1, "the ping\n{table}");
    assert_eq!(
        unkeyed(1, "unsupported_l4"),
        1,
        "the ping over IPv6\n{table}"
    );
    assert_eq!(report.total.misdirected, 0, "{table}");
    assert_eq!(
        report.total.processed + report.total.dropped_total,
        captured - port_dropped + report.total.link_copies,
        "every frame of the captures and every copy counted once\n{table}"
    );

    for (queue, (path, expected)) in tx.iter().zip(expected_tx()).enumerate() {
        let sent = pcap::read(path).expect("the driver's tx_pcap file");
        for record in &sent {
            assert_eq!(
                (&record.data[..6], record.wire_len as usize),
                (&CLIENT_MAC[..], record.data.len()),
                "queue {queue} sent {} to someone else or cut short",
                describe(&record.data)
            );
        }
        assert_eq!(report.per_thread[queue].tx, sent.len() as u64, "{table}");
        let mut sent: Vec<String> = sent.iter().map(|r| describe(&r.data)).collect();
        sent.sort();
        // smoltcp sends a SYN-ACK again after its first retransmission timeout (1 s): a run
        // that took that long (a loaded machine) may hold copies.
        if ran >= Duration::from_millis(900) {
            sent.dedup();
        }
        assert_eq!(sent, expected, "what queue {queue} sent\n{table}");
    }
}
