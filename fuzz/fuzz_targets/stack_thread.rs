//! Two stack threads fed arbitrary frames: after every input, no panic, every rule gone once the
//! threads have stopped, every buffer back in the pool and the engine's conservation check
//! (`forwarder::report::check_counters`, the check of the end-of-run report) passing.
//!
//! The harness is one stack thread's loop (`forwarder/src/thread.rs`) run for two threads in
//! turn on this fuzzing thread, with the engine's own parts: the stacks (`http` on 80,
//! `tcp-echo` on 7, `tcp-proxy` on 8080 to an on-link upstream, `udp-echo` on 53, on both
//! threads), their rules in a flow table, the steering (`Steering::steer` under software
//! balancing with the input's miss policy, `Steering::screen` under RSS balancing, neighbour
//! messages copied to the other thread, new flows kept on the receiving thread), the software
//! queues, the packet pool and the per-thread counters. It leaves out what needs the engine's
//! threads and a port: the NIC queue itself (a frame is put straight into its thread's receive
//! burst), the transmit path (a sent frame is counted and freed) and the idle policy. Starting
//! an engine on uveth per input (threads, stop, report) costs milliseconds; this costs
//! microseconds, so the fuzzer explores.
//!
//! Input: byte 0 is the mode (bit 0: RSS balancing, else software; bits 1-2: miss policy
//! local, rss, drop, local), then records `[control][length: 2 bytes, little-endian][frame]`.
//! Control bits: 0-1 the receiving queue (0 or 1; 2 or 3: the queue software RSS picks);
//! 2: acknowledge what the stack last sent on this flow (its next sequence number as the ack,
//! the ack it sent as the sequence number), so that generated connections get established;
//! 3: fix the IPv4 header and the TCP, UDP or ICMPv6 checksum (random bytes rarely carry one the
//! stack accepts); 4: run one loop iteration of both threads after this frame (a full receive
//! burst does too).
#![no_main]

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use flowsteer_config::MissPolicy;
use flowsteer_mpsc::{ring, Consumer, Producer};
use flowsteer_nic::pool::{PacketPool, PktBuf, PoolCache};
use flowsteer_nic::rss::{Reta, SoftRss, MICROSOFT_KEY};
use flowsteer_nic::wire::{dissect, tcp_segment, FiveTuple, IP_PROTO_TCP};
use flowsteer_stack::{AppKind, AppSpec, Outbound, PortChoice, Stack, StackConfig, StackStats};
use flowtable::{new_table, FlowTable, Proto};
use forwarder::processor::{Processor, StackProcessor};
use forwarder::report::check_counters;
use forwarder::stats::EngineStats;
use forwarder::steer::{ServedPorts, Steering};
use libfuzzer_sys::fuzz_target;
use smoltcp::wire::{
    Icmpv6Packet, IpAddress, Ipv4Address, Ipv4Packet, Ipv6Address, TcpPacket, UdpPacket,
};

const THREADS: u16 = 2;
const BURST: usize = 32;
const DRAIN_LIMIT: usize = 64;
/// Small, so that a burst handed to one thread can fill its queue (`swq_full`).
const SWQ_SIZE: usize = 64;
const TX_LIMIT: usize = 64;
const POOL_BUFFERS: u32 = 2048;
const DATA_ROOM: u16 = 2048;
const CACHE: u32 = 64;
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const UPSTREAM: &str = "198.18.0.3:9000";

/// The pool outlives the inputs: each input must give every buffer back.
fn pool() -> &'static Arc<PacketPool> {
    static POOL: OnceLock<Arc<PacketPool>> = OnceLock::new();
    POOL.get_or_init(|| PacketPool::new(POOL_BUFFERS, DATA_ROOM).expect("a heap pool"))
}

fn apps() -> Vec<AppSpec> {
    vec![
        AppSpec::new(AppKind::Http, 80),
        AppSpec::new(AppKind::TcpEcho, 7),
        AppSpec::proxy(8080, UPSTREAM.parse::<SocketAddr>().expect("an address")),
        AppSpec::new(AppKind::UdpEcho, 53),
    ]
}

fn stack_config(me: u16, rss: &SoftRss, software: bool) -> StackConfig {
    // As `forwarder::stacks::outbound` decides: a rule under software balancing, a port RSS
    // brings back under RSS balancing.
    let outbound = if software {
        Outbound {
            rule: true,
            ports: PortChoice::Share {
                thread: me,
                threads: THREADS,
            },
        }
    } else {
        Outbound {
            rule: false,
            ports: PortChoice::Rss {
                rss: rss.clone(),
                queue: me,
            },
        }
    };
    StackConfig {
        mac: SERVER_MAC,
        ipv4: (SERVER_IP, 24),
        ipv6: (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 64),
        tcp_rx_buffer: 4096,
        tcp_tx_buffer: 4096,
        udp_buffer: 4096,
        max_connections: 4,
        idle_timeout: Some(Duration::from_secs(60)),
        keepalive_timeout: Some(Duration::from_secs(75)),
        neighbor_wait: Duration::from_millis(100),
        syn_timeout: Some(Duration::from_millis(500)),
        max_frame: 1514,
        seed: 7,
        apps: apps(),
        outbound,
    }
}

/// What one stack thread owns.
struct Thread {
    processor: StackProcessor,
    stack_stats: Arc<CachePadded<StackStats>>,
    steering: Steering,
    consumer: Consumer<PktBuf>,
    cache: PoolCache,
    rx: Vec<PktBuf>,
    local: Vec<PktBuf>,
    handed: Vec<PktBuf>,
    tx: Vec<PktBuf>,
}

/// Where each flow stands as the stack sent it, keyed by the flow as the client sends it: the
/// stack's next sequence number and the last ack it sent.
type Progress = HashMap<FiveTuple, (u32, Option<u32>)>;

struct Harness {
    software: bool,
    table: Arc<dyn FlowTable>,
    stats: EngineStats,
    producers: Vec<Producer<PktBuf>>,
    threads: Vec<Thread>,
    progress: Progress,
}

impl Harness {
    fn new(software: bool, miss: MissPolicy, rss: &SoftRss) -> Harness {
        let table: Arc<dyn FlowTable> = Arc::from(new_table(1024));
        let mut producers = Vec::new();
        let mut threads = Vec::new();
        let served: Vec<(Proto, u16)> = apps()
            .iter()
            .map(|app| (app.kind.proto(), app.port))
            .collect();
        for me in 0..THREADS {
            let (producer, consumer) = ring(SWQ_SIZE).expect("a ring");
            producers.push(producer);
            let stats = Arc::new(CachePadded::new(StackStats::new(&apps())));
            let stack = Stack::new(
                stack_config(me, rss, software),
                me,
                table.clone(),
                stats.clone(),
            )
            .expect("the stack builds");
            let reta = Reta::new(64, THREADS).expect("a RETA");
            let steering = Steering::new(me, usize::from(THREADS), BURST, miss, reta)
                .share_neighbors(true)
                .keep_listened_flows(ServedPorts::new(served.iter().copied()));
            threads.push(Thread {
                processor: StackProcessor::new(Box::new(stack), TX_LIMIT),
                stack_stats: stats,
                steering,
                consumer,
                cache: pool().cache(CACHE),
                rx: Vec::new(),
                local: Vec::new(),
                handed: Vec::new(),
                tx: Vec::new(),
            });
        }
        Harness {
            software,
            table,
            stats: EngineStats::new(usize::from(THREADS)),
            producers,
            threads,
            progress: HashMap::new(),
        }
    }

    /// One loop iteration of each thread, as `StackThread::run` does it.
    fn round(&mut self) {
        for (t, th) in self.threads.iter_mut().enumerate() {
            let stats = self.stats.thread(t);
            let received = th.rx.len();
            stats.rx.add(received as u64);
            if received > 0 {
                if self.software {
                    th.steering.steer(
                        &mut th.rx,
                        &mut th.local,
                        &*self.table,
                        &self.producers,
                        &mut th.cache,
                        stats,
                    );
                } else {
                    th.steering.screen(
                        &mut th.rx,
                        &mut th.local,
                        &self.producers,
                        &mut th.cache,
                        stats,
                    );
                }
            }
            drain_and_process(th, stats, &mut self.progress);
        }
    }

    /// The threads' shutdown: each stack ends its connections, then every queue is drained and
    /// what is left is processed, then each thread's rules go.
    fn stop(&mut self) {
        for (t, th) in self.threads.iter_mut().enumerate() {
            th.processor.shutdown(&mut th.tx, &mut th.cache);
            transmit(th, self.stats.thread(t), &mut self.progress);
        }
        loop {
            let mut drained = 0;
            for (t, th) in self.threads.iter_mut().enumerate() {
                drained += drain_and_process(th, self.stats.thread(t), &mut self.progress);
            }
            if drained == 0 {
                break;
            }
        }
        for me in 0..THREADS {
            self.table.remove_owner(me);
        }
    }
}

/// The rest of a loop iteration after the receive burst: drain the thread's software queue,
/// process what it keeps and what it drained, send. Returns how many packets it drained.
fn drain_and_process(
    th: &mut Thread,
    stats: &forwarder::stats::ThreadStats,
    progress: &mut Progress,
) -> usize {
    let drained = th.consumer.dequeue_burst(&mut th.handed, DRAIN_LIMIT);
    th.processor.process(
        &mut th.handed,
        &mut th.local,
        &mut th.tx,
        &mut th.cache,
        stats,
    );
    transmit(th, stats, progress);
    drained
}

/// Sends what a thread's processor emitted: counted, its TCP progress noted, freed.
fn transmit(th: &mut Thread, stats: &forwarder::stats::ThreadStats, progress: &mut Progress) {
    for buf in &th.tx {
        note_progress(buf.data(), progress);
    }
    stats.tx.add(th.tx.len() as u64);
    th.cache.free_bulk(&mut th.tx);
}

fn note_progress(frame: &[u8], progress: &mut Progress) {
    let Some(segment) = tcp_segment(frame) else {
        return;
    };
    let flags = segment.flags;
    let next = segment
        .seq
        .wrapping_add(segment.payload_len)
        .wrapping_add(u32::from(flags & 0x02 != 0)) // SYN
        .wrapping_add(u32::from(flags & 0x01 != 0)); // FIN
    let ack = (flags & 0x10 != 0)
        .then(|| l4_offset(frame).and_then(|l4| read_u32(frame, l4 + 8)))
        .flatten();
    progress.insert(segment.tuple.reversed(), (next, ack));
}

fn l4_offset(frame: &[u8]) -> Option<usize> {
    dissect(frame).ok()?.l4_offset
}

fn read_u32(frame: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(frame.get(at..at + 4)?.try_into().ok()?))
}

/// Makes a client's TCP segment acknowledge what the stack sent on its flow and continue the
/// sequence the stack acknowledged.
fn acknowledge(frame: &mut [u8], progress: &Progress) {
    let Some(segment) = tcp_segment(frame) else {
        return;
    };
    let (Some(&(next, acked)), Some(l4)) = (progress.get(&segment.tuple), l4_offset(frame)) else {
        return;
    };
    if let Some(seq) = acked {
        frame[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
    }
    frame[l4 + 8..l4 + 12].copy_from_slice(&next.to_be_bytes());
    frame[l4 + 13] |= 0x10;
}

/// Writes valid checksums into an IP frame: the IPv4 header's, and its TCP, UDP or ICMPv6
/// message's.
fn fix_checksums(frame: &mut [u8]) {
    let Ok(dissection) = dissect(frame) else {
        return;
    };
    let (Some(end), Some(proto)) = (dissection.ip_end, dissection.ip_proto) else {
        return;
    };
    let l3 = dissection.l3_offset;
    let ip = &mut frame[l3..end];
    let (src, dst) = if ip.first().is_some_and(|b| b >> 4 == 4) {
        let Ok(mut header) = Ipv4Packet::new_checked(&mut *ip) else {
            return;
        };
        header.fill_checksum();
        let src = Ipv4Address::from(<[u8; 4]>::try_from(&ip[12..16]).expect("4 bytes"));
        let dst = Ipv4Address::from(<[u8; 4]>::try_from(&ip[16..20]).expect("4 bytes"));
        (IpAddress::Ipv4(src), IpAddress::Ipv4(dst))
    } else if ip.len() >= 40 {
        let src = Ipv6Address::from(<[u8; 16]>::try_from(&ip[8..24]).expect("16 bytes"));
        let dst = Ipv6Address::from(<[u8; 16]>::try_from(&ip[24..40]).expect("16 bytes"));
        (IpAddress::Ipv6(src), IpAddress::Ipv6(dst))
    } else {
        return;
    };
    let Some(l4) = dissection.l4_offset else {
        return;
    };
    let message = &mut frame[l4..end];
    match (proto, src, dst) {
        (IP_PROTO_TCP, ..) => {
            if let Ok(mut tcp) = TcpPacket::new_checked(message) {
                tcp.fill_checksum(&src, &dst);
            }
        }
        (17, ..) => {
            if let Ok(mut udp) = UdpPacket::new_checked(message) {
                udp.fill_checksum(&src, &dst);
            }
        }
        (58, IpAddress::Ipv6(src), IpAddress::Ipv6(dst)) => {
            if let Ok(mut icmp) = Icmpv6Packet::new_checked(message) {
                icmp.fill_checksum(&src, &dst);
            }
        }
        _ => {}
    }
}

/// True when each input's counters are to be printed.
fn show() -> bool {
    static SHOW: OnceLock<bool> = OnceLock::new();
    *SHOW.get_or_init(|| std::env::var_os("FLOWSTEER_FUZZ_SHOW").is_some())
}

/// The next record of the input: its control byte and frame.
fn next_record<'a>(rest: &mut &'a [u8]) -> Option<(u8, &'a [u8])> {
    let (&control, tail) = rest.split_first()?;
    let (length, tail) = match tail {
        [lo, hi, tail @ ..] => (usize::from(u16::from_le_bytes([*lo, *hi])), tail),
        _ => (tail.len(), &[][..]),
    };
    let (frame, tail) = tail.split_at(length.min(tail.len()));
    *rest = tail;
    Some((control, frame))
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, mut rest)) = input.split_first() else {
        return;
    };
    let software = mode & 1 == 0;
    let miss = match (mode >> 1) & 3 {
        1 => MissPolicy::Rss,
        2 => MissPolicy::Drop,
        _ => MissPolicy::Local,
    };
    let rss = SoftRss::new(&MICROSOFT_KEY, 128, THREADS).expect("software RSS");
    let mut harness = Harness::new(software, miss, &rss);
    let mut frame = Vec::with_capacity(usize::from(DATA_ROOM));
    while let Some((control, bytes)) = next_record(&mut rest) {
        frame.clear();
        frame.extend_from_slice(&bytes[..bytes.len().min(usize::from(DATA_ROOM))]);
        if control & 0x04 != 0 {
            acknowledge(&mut frame, &harness.progress);
        }
        if control & 0x08 != 0 {
            fix_checksums(&mut frame);
        }
        let (hash, rss_queue) = rss.queue_of(&frame);
        let queue = if control & 0x02 == 0 {
            usize::from(control & 1)
        } else {
            usize::from(rss_queue)
        };
        let th = &mut harness.threads[queue];
        // A port with no free buffer drops the frame before any thread counts it.
        if let Some(mut buf) = th.cache.alloc() {
            buf.write_frame(&frame)
                .expect("a frame within the data room");
            buf.set_rss_hash(hash);
            th.rx.push(buf);
        }
        if control & 0x10 != 0 || th.rx.len() == BURST {
            harness.round();
        }
    }
    harness.round();
    harness.round();
    harness.stop();
    assert_eq!(harness.table.exact_len(), 0, "exact rules left after stop");
    assert_eq!(
        harness.table.listen_len(),
        0,
        "listen rules left after stop"
    );
    let counters = harness.stats.snapshot();
    if show() {
        for (t, th) in harness.threads.iter().enumerate() {
            eprintln!("thread {t}: {:?}", th.stack_stats);
        }
    }
    drop(harness);
    let conservation = check_counters(&counters, pool());
    assert!(
        conservation.ok,
        "conservation: {:?}\n{counters:#?}",
        conservation.failures
    );
});
