//! One burst through the steering step and the verifying sink, packet by packet: every crafted
//! frame must land in exactly the place and counter the rules say, and every buffer must come back.

use std::net::Ipv4Addr;
use std::sync::Arc;

use flowsteer_config::MissPolicy;
use flowsteer_mpsc::{ring, Consumer, Producer};
use flowsteer_nic::pool::{PacketPool, PktBuf, PoolCache};
use flowsteer_nic::rss::Reta;
use flowsteer_nic::wire::{
    build_frame, layout_of, FiveTuple, FrameSpec, IpPair, Layer, ParseError, IP_PROTO_TCP,
    IP_PROTO_UDP,
};
use flowtable::{new_table, FlowKey, FlowTable, ListenKey, Proto};
use forwarder::sink::{Origin, VerifyingSink};
use forwarder::stats::ThreadStats;
use forwarder::steer::Steering;
use forwarder::traffic::Stamp;

const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const THREADS: usize = 2;

fn client(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, n)
}

struct Rig {
    pool: Arc<PacketPool>,
    cache: PoolCache,
    table: Arc<dyn FlowTable>,
    producers: Vec<Producer<PktBuf>>,
    consumers: Vec<Consumer<PktBuf>>,
    stats: ThreadStats,
}

impl Rig {
    fn new(swq_size: usize) -> Rig {
        let pool = PacketPool::new(1024, 2048).unwrap();
        let cache = pool.cache(32);
        let (producers, consumers) = (0..THREADS).map(|_| ring(swq_size).unwrap()).unzip();
        Rig {
            pool,
            cache,
            table: Arc::from(new_table(1024)),
            producers,
            consumers,
            stats: ThreadStats::new(THREADS),
        }
    }

    fn packet(&mut self, frame: &[u8]) -> PktBuf {
        let mut pkt = self.cache.alloc().unwrap();
        pkt.write_frame(frame).unwrap();
        pkt
    }

    fn steering(&self, miss: MissPolicy) -> Steering {
        Steering::new(0, THREADS, 32, miss, Reta::new(64, THREADS as u16).unwrap())
    }

    fn drain(&mut self, thread: usize) -> Vec<PktBuf> {
        let mut out = Vec::new();
        self.consumers[thread].dequeue_burst(&mut out, usize::MAX);
        out
    }

    /// Frees everything and checks that the pool is whole again.
    fn finish(mut self, leftovers: &mut Vec<PktBuf>) {
        self.cache.free_bulk(leftovers);
        for t in 0..THREADS {
            let mut rest = self.drain(t);
            self.cache.free_bulk(&mut rest);
        }
        drop(self.cache);
        assert_eq!(
            self.pool.available(),
            self.pool.capacity(),
            "a buffer leaked"
        );
    }
}

fn tuple(proto: u8, client_n: u8, client_port: u16, local_port: u16) -> FiveTuple {
    FiveTuple::v4(proto, client(client_n), client_port, LOCAL, local_port)
}

/// The key a received packet of `t` is looked up with, built independently of the engine's own
/// conversion: local = destination.
fn key_of(t: &FiveTuple) -> FlowKey {
    let IpPair::V4 { src, dst } = t.ip else {
        panic!("IPv4 only in this test");
    };
    let proto = Proto::from_ip_proto(t.proto).unwrap();
    FlowKey::v4(proto, dst.into(), t.dst_port, src.into(), t.src_port)
}

/// A frame of `t` whose payload starts with `stamp` (or zeros).
fn frame(t: FiveTuple, stamp: Option<Stamp>) -> Vec<u8> {
    let mut payload = [0u8; Stamp::LEN];
    if let Some(s) = stamp {
        assert!(s.write(&mut payload));
    }
    let spec = FrameSpec {
        src_mac: [2, 0, 0, 0, 0, 2],
        dst_mac: [2, 0, 0, 0, 0, 1],
        vlan: None,
        tuple: t,
        tcp_flags: 0x18,
        payload: &payload,
    };
    let mut buf = vec![0u8; layout_of(&spec).frame_len()];
    let len = build_frame(&mut buf, &spec).unwrap();
    buf.truncate(len);
    buf
}

fn arp_request() -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    // htype 1 (Ethernet), ptype IPv4, hlen 6, plen 4, op 1 (request)
    f[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f
}

fn lldp() -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
    f
}

#[test]
fn each_kind_of_frame_goes_where_the_rules_say() {
    let mut rig = Rig::new(64);
    let mine_tcp = tuple(IP_PROTO_TCP, 1, 40000, 8000);
    let theirs_tcp = tuple(IP_PROTO_TCP, 2, 40001, 8001);
    let theirs_udp_any = tuple(IP_PROTO_UDP, 3, 40002, 9001);
    let mine_udp_ip = tuple(IP_PROTO_UDP, 4, 40003, 9002);
    let unknown_tcp = tuple(IP_PROTO_TCP, 5, 40004, 7000);
    let bogus_owner_tcp = tuple(IP_PROTO_TCP, 6, 40005, 8000);
    rig.table.insert(key_of(&mine_tcp), 0).unwrap();
    rig.table.insert(key_of(&theirs_tcp), 1).unwrap();
    rig.table.insert(key_of(&bogus_owner_tcp), 7).unwrap();
    let any_9001 = ListenKey {
        proto: Proto::Udp,
        ip: None,
        port: 9001,
    };
    rig.table.listen_add(any_9001, 1).unwrap();
    let local_9002 = ListenKey {
        proto: Proto::Udp,
        ip: Some(LOCAL.into()),
        port: 9002,
    };
    rig.table.listen_add(local_9002, 0).unwrap();

    let truncated = frame(mine_tcp, None)[..20].to_vec();
    let frames = [
        frame(mine_tcp, None),
        frame(theirs_tcp, None),
        frame(theirs_udp_any, None),
        frame(mine_udp_ip, None),
        frame(unknown_tcp, None),
        frame(bogus_owner_tcp, None),
        truncated,
        arp_request(),
        lldp(),
    ];
    let mut rx: Vec<PktBuf> = frames.iter().map(|f| rig.packet(f)).collect();
    let mut local = Vec::new();
    let mut steering = rig.steering(MissPolicy::Local);
    steering.steer(
        &mut rx,
        &mut local,
        &*rig.table,
        &rig.producers,
        &mut rig.cache,
        &rig.stats,
    );

    assert!(rx.is_empty(), "steering consumes the burst");
    // mine_tcp, mine_udp_ip, unknown_tcp (miss → local), ARP, LLDP
    assert_eq!(local.len(), 5);
    let handed = rig.drain(1);
    let s = &rig.stats;
    assert_eq!(handed.len(), 2, "theirs_tcp and theirs_udp_any");
    assert_eq!(s.handed_off[1].get(), 2);
    assert_eq!(s.handed_off[0].get(), 0);
    assert_eq!(s.lookup_exact.get(), 3);
    assert_eq!(s.lookup_listen.get(), 1);
    assert_eq!(s.lookup_listen_any.get(), 1);
    assert_eq!(s.lookup_miss.get(), 1);
    assert_eq!(s.owner_invalid.get(), 1);
    assert_eq!(s.arp.get(), 1);
    let unknown_ethertype = s.unkeyed.iter().map(|c| c.get()).sum::<u64>();
    assert_eq!(unknown_ethertype, 1);
    let truncated_ipv4 = ParseError::Truncated(Layer::Ipv4);
    assert_eq!(s.malformed[truncated_ipv4.reason_index()].get(), 1);
    // Conservation for this burst: 9 in = 5 local + 2 handed off + 2 dropped.
    let dropped = s.owner_invalid.get() + s.malformed.iter().map(|c| c.get()).sum::<u64>();
    assert_eq!(
        local.len() as u64 + s.handed_off[1].get() + dropped,
        frames.len() as u64
    );

    let mut leftovers = local;
    leftovers.extend(handed);
    rig.finish(&mut leftovers);
}

#[test]
fn miss_policies_drop_or_spread_over_threads() {
    let mut rig = Rig::new(64);
    let unknown = frame(tuple(IP_PROTO_UDP, 9, 50000, 5000), None);

    let mut rx = vec![rig.packet(&unknown)];
    let mut local = Vec::new();
    let mut steering = rig.steering(MissPolicy::Drop);
    steering.steer(
        &mut rx,
        &mut local,
        &*rig.table,
        &rig.producers,
        &mut rig.cache,
        &rig.stats,
    );
    assert!(local.is_empty());
    assert_eq!(rig.stats.no_owner.get(), 1);

    // "rss": the packet's RSS hash picks the thread through a RETA over the threads.
    let reta = Reta::new(64, THREADS as u16).unwrap();
    let to_thread_1 = (0..64u32).find(|h| reta.queue(*h) == 1).unwrap();
    let mut pkt = rig.packet(&unknown);
    pkt.set_rss_hash(to_thread_1);
    let mut rx = vec![pkt];
    let mut steering = rig.steering(MissPolicy::Rss);
    steering.steer(
        &mut rx,
        &mut local,
        &*rig.table,
        &rig.producers,
        &mut rig.cache,
        &rig.stats,
    );
    assert!(local.is_empty());
    let mut handed = rig.drain(1);
    assert_eq!(handed.len(), 1);
    assert_eq!(rig.stats.lookup_miss.get(), 2);
    rig.finish(&mut handed);
}

#[test]
fn a_full_software_queue_drops_and_counts_the_rest_of_the_burst() {
    let mut rig = Rig::new(2);
    let theirs = tuple(IP_PROTO_TCP, 2, 40001, 8001);
    rig.table.insert(key_of(&theirs), 1).unwrap();
    let f = frame(theirs, None);
    let mut rx: Vec<PktBuf> = (0..5).map(|_| rig.packet(&f)).collect();
    let mut local = Vec::new();
    let mut steering = rig.steering(MissPolicy::Local);
    steering.steer(
        &mut rx,
        &mut local,
        &*rig.table,
        &rig.producers,
        &mut rig.cache,
        &rig.stats,
    );
    assert_eq!(rig.stats.handed_off[1].get(), 2);
    assert_eq!(rig.stats.swq_full[1].get(), 3);
    let mut handed = rig.drain(1);
    assert_eq!(handed.len(), 2);
    rig.finish(&mut handed);
}

#[test]
fn the_sink_checks_ownership_and_closes_flows_on_their_last_packet() {
    let mut rig = Rig::new(64);
    let closing = tuple(IP_PROTO_TCP, 1, 40000, 8000);
    rig.table.insert(key_of(&closing), 0).unwrap();
    let other = tuple(IP_PROTO_TCP, 2, 40001, 8001);
    let stamp = |owner, last| Stamp {
        owner,
        last,
        flow: 1,
        seq: 7,
    };
    let frames = [
        frame(other, Some(stamp(0, false))),  // owned by me: fine
        frame(other, Some(stamp(1, false))),  // owned by thread 1: misdirected
        frame(other, None),                   // no stamp: unverified
        frame(closing, Some(stamp(0, true))), // last packet: its rule goes
        frame(other, None)[..30].to_vec(),    // malformed, seen first by the sink in RSS mode
    ];
    let mut pkts: Vec<PktBuf> = frames.iter().map(|f| rig.packet(f)).collect();
    let sink = VerifyingSink::new(0, rig.table.clone(), false);
    sink.consume(&mut pkts, Origin::Local, false, &mut rig.cache, &rig.stats);

    assert!(pkts.is_empty(), "the sink frees what it processed");
    let s = &rig.stats;
    assert_eq!(s.processed_local.get(), 4);
    assert_eq!(s.misdirected.get(), 1);
    assert_eq!(s.unverified.get(), 1);
    assert_eq!(s.flows_closed.get(), 1);
    assert_eq!(rig.table.lookup(&key_of(&closing)).owner(), None);
    assert_eq!(s.malformed.iter().map(|c| c.get()).sum::<u64>(), 1);
    rig.finish(&mut Vec::new());
}

/// New flows to a port both threads serve: the listen rule's hash sends about half of them to
/// thread 1; with `keep_listened_flows` thread 0 keeps every one, since it serves the port too.
/// A port only thread 1 serves still goes to thread 1, and an established flow to its owner.
#[test]
fn new_flows_to_a_port_this_thread_serves_stay_here() {
    use forwarder::steer::ServedPorts;
    for keep in [false, true] {
        let mut rig = Rig::new(256);
        rig.table
            .listen_add(ListenKey::any_ip(Proto::Tcp, 80), 0)
            .unwrap();
        rig.table
            .listen_add(ListenKey::any_ip(Proto::Tcp, 80), 1)
            .unwrap();
        rig.table
            .listen_add(ListenKey::any_ip(Proto::Tcp, 81), 1)
            .unwrap();
        let established = tuple(IP_PROTO_TCP, 200, 5000, 80);
        rig.table.insert(key_of(&established), 1).unwrap();
        let mut steering = rig.steering(MissPolicy::Local);
        if keep {
            steering = steering
                .keep_listened_flows(ServedPorts::new([(Proto::Tcp, 80), (Proto::Udp, 80)]));
        }
        let mut rx: Vec<PktBuf> = (0..32u8)
            .map(|n| frame(tuple(IP_PROTO_TCP, n, 40_000, 80), None))
            .chain([
                frame(tuple(IP_PROTO_TCP, 100, 40_000, 81), None),
                frame(established, None),
            ])
            .map(|f| rig.packet(&f))
            .collect();
        let mut local = Vec::new();
        steering.steer(
            &mut rx,
            &mut local,
            &*rig.table,
            &rig.producers,
            &mut rig.cache,
            &rig.stats,
        );
        let handed = rig.drain(1);
        if keep {
            assert_eq!((local.len(), handed.len()), (32, 2));
        } else {
            assert!(
                handed.len() > 2 && local.len() < 32,
                "the hash spreads them"
            );
            assert_eq!(local.len() + handed.len(), 34);
        }
        let mut all = local;
        all.extend(handed);
        rig.finish(&mut all);
    }
}
