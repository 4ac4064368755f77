//! Tests of the whole generator against the real pool, soft RSS, parser and flow table.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowsteer_config::{Config, Distribution, Profile, Rate};
use flowsteer_nic::pool::{PacketPool, PktBuf, PoolCache};
use flowsteer_nic::port::FrameSource;
use flowsteer_nic::rss::SoftRss;
use flowsteer_nic::wire::{classify, Classified, FiveTuple, IpPair, IP_PROTO_TCP, IP_PROTO_UDP};
use flowtable::{FlowKey, FlowTable, Lookup, Proto};

use super::frame::{TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN};
use super::*;
use crate::keys::flow_key;

fn config(profile: Profile, threads: u16, queues: u16, flows: u32) -> Config {
    let mut c = Config::default();
    c.engine.threads = threads;
    c.port.queues = queues;
    c.traffic.profile = profile;
    c.traffic.flows = flows;
    c.traffic.packet_size = 128;
    c
}

fn soft_rss(c: &Config) -> SoftRss {
    SoftRss::new(&c.port.rss_key.bytes(), c.port.reta_size, c.port.queues).expect("valid RSS")
}

fn table(capacity: usize) -> Arc<dyn FlowTable> {
    Arc::from(flowtable::new_table(capacity))
}

struct Rig {
    config: Config,
    rss: SoftRss,
    table: Arc<dyn FlowTable>,
    plan: TrafficPlan,
    pool: Arc<PacketPool>,
}

fn rig(config: Config) -> Rig {
    let rss = soft_rss(&config);
    let table = table(1 << 20);
    let plan = TrafficPlan::install(&config, &rss, &table).expect("plan installs");
    let pool = PacketPool::new(4096, 2048).expect("pool");
    Rig {
        config,
        rss,
        table,
        plan,
        pool,
    }
}

/// One frame's parsed view.
struct Seen {
    tuple: FiveTuple,
    tcp_flags: u8,
    stamp: Stamp,
    rss_hash: u32,
}

/// Fills `rounds` bursts of `burst` from `source`, checks every frame's size and checksums,
/// parses it, frees it.
fn drain(
    source: &mut QueueSource,
    cache: &mut PoolCache,
    rounds: usize,
    burst: usize,
) -> Vec<Seen> {
    let mut seen = Vec::new();
    let mut out: Vec<PktBuf> = Vec::with_capacity(burst);
    let packet_size = source.packet_size();
    for _ in 0..rounds {
        let n = source.fill(source.queue(), cache, &mut out, burst);
        assert_eq!(n, out.len());
        assert!(n <= burst);
        for pkt in &out {
            let frame = pkt.data();
            assert_eq!(
                frame.len(),
                packet_size,
                "frames are exactly packet_size bytes"
            );
            assert!(checksums_valid(frame), "checksums of {frame:02x?}");
            let Ok(Classified::Flow {
                tuple,
                tcp_flags,
                payload_offset,
            }) = classify(frame)
            else {
                panic!("generated frame does not classify as a flow");
            };
            let stamp = Stamp::read(&frame[payload_offset..]).expect("every frame is stamped");
            seen.push(Seen {
                tuple,
                tcp_flags,
                stamp,
                rss_hash: pkt.rss_hash(),
            });
        }
        cache.free_bulk(&mut out);
    }
    seen
}

/// Verifies the IPv4 header checksum and the TCP/UDP checksum over the pseudo-header.
fn checksums_valid(frame: &[u8]) -> bool {
    fn sum(bytes: &[u8]) -> u32 {
        bytes
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
            .sum()
    }
    fn folds_to_ones(mut s: u32) -> bool {
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s == 0xffff
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let (pseudo, proto, segment) = match ethertype {
        0x0800 => {
            let ihl = usize::from(frame[14] & 0x0f) * 4;
            let header = &frame[14..14 + ihl];
            if !folds_to_ones(sum(header)) {
                return false;
            }
            let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
            let segment = &frame[14 + ihl..14 + total];
            let proto = frame[23];
            let pseudo = sum(&frame[26..34]) + u32::from(proto) + segment.len() as u32;
            (pseudo, proto, segment)
        }
        0x86dd => {
            let len = usize::from(u16::from_be_bytes([frame[18], frame[19]]));
            let segment = &frame[54..54 + len];
            let proto = frame[20];
            let pseudo = sum(&frame[22..54]) + u32::from(proto) + segment.len() as u32;
            (pseudo, proto, segment)
        }
        _ => return false,
    };
    if proto == IP_PROTO_UDP && segment[6..8] == [0, 0] {
        return false; // the generator always sends a checksum
    }
    folds_to_ones(pseudo + sum(segment))
}

fn lookup_owner(table: &dyn FlowTable, tuple: &FiveTuple) -> Lookup {
    table.lookup(&flow_key(tuple).expect("TCP or UDP"))
}

#[test]
fn partition_equals_soft_rss_on_every_flow() {
    let mut c = config(Profile::Listeners, 4, 4, 2000);
    c.traffic.ipv6_share = 0.3;
    c.traffic.udp_share = 0.4;
    let mut r = rig(c);
    let mut total = 0;
    for q in 0..4u16 {
        let source = r.plan.take_source(q).expect("one source per queue");
        let (flows, space) = source.flow_states();
        total += flows.len();
        assert!(!flows.is_empty(), "RSS spreads 2000 flows over every queue");
        for flow in flows {
            let tuple = flow.tuple(space).expect("in space");
            assert_eq!(r.rss.queue_of_tuple(&tuple), (flow.rss_hash, q));
        }
        // And the frames themselves land where a NIC would put them, with the NIC's hash.
        let mut cache = r.pool.cache(64);
        let mut source = source;
        for s in drain(&mut source, &mut cache, 8, 32) {
            assert_eq!(r.rss.queue_of_tuple(&s.tuple), (s.rss_hash, q));
        }
    }
    assert_eq!(total, 2000);
    assert_eq!(r.plan.flows(), 2000);
    assert!(
        r.plan.take_source(0).is_none(),
        "a source is handed out once"
    );
    assert!(r.plan.take_source(4).is_none(), "no queue 4");
    assert_eq!(r.plan.stats().len(), 4);
}

#[test]
fn every_tuple_is_unique() {
    let mut c = config(Profile::Listeners, 2, 2, 70_000);
    c.traffic.ipv6_share = 0.5;
    c.traffic.udp_share = 0.5;
    let mut r = rig(c);
    let mut seen = std::collections::HashSet::new();
    for q in 0..2 {
        let source = r.plan.take_source(q).expect("source");
        let (flows, space) = source.flow_states();
        for flow in flows {
            let t = flow.tuple(space).expect("in space");
            assert!(
                seen.insert((t.ip, t.src_port, t.dst_port, t.proto)),
                "tuple reused: {t:?}"
            );
        }
    }
    assert_eq!(seen.len(), 70_000);
}

#[test]
fn listeners_rules_owners_and_stamps_agree() {
    let threads = 4u16;
    let mut c = config(Profile::Listeners, threads, threads, 4000);
    c.traffic.udp_share = 0.5;
    c.traffic.ipv6_share = 0.5;
    let mut r = rig(c);
    // TCP and UDP, one wildcard-address port per thread.
    assert_eq!(r.table.listen_len(), usize::from(threads) * 2);
    let client4: std::net::Ipv4Addr = "198.19.0.9".parse().expect("literal");
    let client6: std::net::Ipv6Addr = "2001:db8:1::99".parse().expect("literal");
    for t in 0..threads {
        let port = r.config.traffic.port_base + t;
        for proto in [Proto::Tcp, Proto::Udp] {
            // A flow no exact rule covers finds the listen rule of thread t on its port.
            let v4 = FlowKey::v4(proto, r.config.port.ipv4, port, client4, 4000);
            let v6 = FlowKey::v6(proto, r.config.port.ipv6, port, client6, 4000);
            assert_eq!(r.table.lookup(&v4), Lookup::ListenAny(t));
            assert_eq!(r.table.lookup(&v6), Lookup::ListenAny(t));
        }
    }
    let mut owners = [0usize; 4];
    let mut frames_by_owner = [0usize; 4];
    let mut misdirected_under_rss = 0usize;
    let mut total = 0usize;
    for q in 0..threads {
        let mut source = r.plan.take_source(q).expect("source");
        for flow in source.flow_states().0 {
            owners[usize::from(flow.owner)] += 1;
            assert_eq!(flow.dst_port, r.config.traffic.port_base + flow.owner);
        }
        let mut cache = r.pool.cache(64);
        for s in drain(&mut source, &mut cache, 16, 32) {
            let found = lookup_owner(r.table.as_ref(), &s.tuple);
            assert_eq!(found.owner(), Some(s.stamp.owner), "table and stamp agree");
            match s.tuple.proto {
                IP_PROTO_TCP => {
                    assert!(matches!(found, Lookup::Exact(_)));
                    assert_eq!(s.tcp_flags, TCP_ACK | TCP_PSH);
                }
                IP_PROTO_UDP => assert!(matches!(found, Lookup::ListenAny(_))),
                other => panic!("unexpected protocol {other}"),
            }
            assert!(!s.stamp.last);
            frames_by_owner[usize::from(s.stamp.owner)] += 1;
            misdirected_under_rss += usize::from(s.stamp.owner != q);
            total += 1;
        }
    }
    assert!(
        owners.iter().all(|&n| (850..1150).contains(&n)),
        "owners ~uniform: {owners:?}"
    );
    assert!(frames_by_owner.iter().all(|&n| n > 0));
    // With RSS alone about 3/4 of the packets would reach a thread that does not own them.
    let share = misdirected_under_rss as f64 / total as f64;
    assert!((0.6..0.9).contains(&share), "misdirected share {share}");
    // Exact rules: one per TCP flow.
    let tcp_flows = r.table.exact_len();
    assert!((1700..2300).contains(&tcp_flows), "{tcp_flows}");
}

#[test]
fn rss_friendly_owner_is_the_queue_thread() {
    let mut c = config(Profile::RssFriendly, 4, 4, 1000);
    c.traffic.udp_share = 0.5;
    c.traffic.ipv6_share = 0.2;
    let mut r = rig(c);
    assert_eq!(
        r.table.exact_len(),
        1000,
        "every flow, TCP and UDP, is pinned"
    );
    for q in 0..4u16 {
        let mut source = r.plan.take_source(q).expect("source");
        let mut cache = r.pool.cache(64);
        for s in drain(&mut source, &mut cache, 8, 32) {
            assert_eq!(s.stamp.owner, q);
            assert_eq!(s.tuple.dst_port, r.config.traffic.port_base);
            assert_eq!(lookup_owner(r.table.as_ref(), &s.tuple), Lookup::Exact(q));
        }
    }
    // One listen rule per protocol and family with every thread as owner.
    assert_eq!(r.table.listen_len(), 4);
}

#[test]
fn fewer_queues_feeds_only_the_queues_and_owns_across_all_threads() {
    let c = config(Profile::FewerQueues, 4, 2, 1000);
    let mut r = rig(c);
    assert!(r.plan.take_source(2).is_none());
    let mut owners = [0usize; 4];
    for q in 0..2 {
        let source = r.plan.take_source(q).expect("source");
        for flow in source.flow_states().0 {
            owners[usize::from(flow.owner)] += 1;
        }
    }
    assert!(
        owners.iter().all(|&n| n > 150),
        "threads without a queue own flows too: {owners:?}"
    );
    assert_eq!(r.plan.stats().len(), 2);
}

/// Plays the owner's sink: deletes the exact rule of each last packet.
fn close_like_the_owner(table: &dyn FlowTable, seen: &[Seen]) {
    for s in seen.iter().filter(|s| s.stamp.last) {
        if let Some(key) = flow_key(&s.tuple) {
            table.remove(&key);
        }
    }
}

#[test]
fn churn_replaces_flows_on_schedule() {
    let mut c = config(Profile::Churn, 2, 2, 64);
    c.traffic.churn_rate = 20_000;
    let built = Instant::now();
    let mut r = rig(c);
    let initial_rules = r.table.exact_len();
    assert_eq!(initial_rules, 64);
    let mut source = r.plan.take_source(0).expect("source");
    let slots = source.flows();
    let mut cache = r.pool.cache(64);
    let mut seen = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(60) {
        let burst = drain(&mut source, &mut cache, 1, 32);
        close_like_the_owner(r.table.as_ref(), &burst);
        seen.extend(burst);
    }
    let stats = r.plan.stats()[0].snapshot();
    assert!(stats["flows_started"] > 0, "{stats:?}");
    assert_eq!(stats["flows_started"], stats["flows_ended"]);
    assert_eq!(stats["rule_add_failed"], 0);
    // 10000/s on this queue: never more than the schedule allowed since the plan was built.
    let allowed = (10_000.0 * built.elapsed().as_secs_f64()) as u64 + 1;
    assert!(stats["flows_started"] <= allowed, "{stats:?} > {allowed}");

    let lasts: Vec<&Seen> = seen.iter().filter(|s| s.stamp.last).collect();
    assert_eq!(lasts.len() as u64, stats["flows_ended"]);
    for s in &lasts {
        assert_eq!(s.tcp_flags, TCP_FIN | TCP_ACK, "last packets carry FIN|ACK");
    }
    let syns: Vec<&Seen> = seen.iter().filter(|s| s.tcp_flags & TCP_SYN != 0).collect();
    assert!(!syns.is_empty());
    for s in &syns {
        assert_eq!(s.stamp.seq, 0, "SYN is the first packet");
        assert!(s.stamp.flow >= 64, "new flows get fresh numbers");
        assert_eq!(
            r.rss.queue_of_tuple(&s.tuple).1,
            0,
            "new tuples map to this queue"
        );
        let owner = lookup_owner(r.table.as_ref(), &s.tuple);
        // The new flow's exact rule went in before its first packet (unless it has closed since).
        if !lasts.iter().any(|l| l.tuple == s.tuple) {
            assert_eq!(owner, Lookup::Exact(s.stamp.owner));
        }
    }
    // Live flows of this queue plus the other queue's untouched ones: closed rules went away.
    let (flows, space) = source.flow_states();
    assert_eq!(flows.len(), slots);
    for flow in flows {
        let tuple = flow.tuple(space).expect("tuple");
        assert_eq!(
            lookup_owner(r.table.as_ref(), &tuple),
            Lookup::Exact(flow.owner)
        );
    }
    let mut tuples = std::collections::HashSet::new();
    for s in seen.iter().filter(|s| s.stamp.seq == 0 || s.stamp.last) {
        tuples.insert((s.tuple, s.stamp.flow));
    }
    let distinct_tuples: std::collections::HashSet<_> = tuples.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        distinct_tuples.len(),
        tuples.len(),
        "a tuple is never reused for another flow"
    );
    assert_eq!(
        r.table.exact_len(),
        initial_rules,
        "every replaced flow's rule was closed"
    );
}

#[test]
fn churn_by_packet_count_closes_each_flow_at_its_nth_packet() {
    let mut c = config(Profile::Churn, 2, 1, 16);
    c.traffic.flow_packets = 3;
    let mut r = rig(c);
    let mut source = r.plan.take_source(0).expect("source");
    let mut cache = r.pool.cache(64);
    let seen = drain(&mut source, &mut cache, 20, 32);
    let mut per_flow: HashMap<u32, Vec<(u32, bool, u8)>> = HashMap::new();
    for s in &seen {
        per_flow
            .entry(s.stamp.flow)
            .or_default()
            .push((s.stamp.seq, s.stamp.last, s.tcp_flags));
    }
    let mut closed = 0;
    for packets in per_flow.values() {
        for (i, &(seq, last, flags)) in packets.iter().enumerate() {
            assert_eq!(seq as usize, i, "sequence numbers count the flow's packets");
            assert_eq!(last, seq == 2, "the third packet is the last");
            if last {
                assert_eq!(flags, TCP_FIN | TCP_ACK);
            }
        }
        closed += usize::from(packets.last().is_some_and(|p| p.1));
    }
    let stats = r.plan.stats()[0].snapshot();
    assert_eq!(stats["flows_ended"], closed as u64);
    assert!(
        closed > 100,
        "640 packets at 3 per flow close many flows: {closed}"
    );
}

#[test]
fn churn_with_a_full_table_keeps_the_old_flows() {
    let c = config(Profile::Churn, 2, 1, 32);
    let rss = soft_rss(&c);
    // Room for exactly the initial connections.
    let table = table(32);
    let mut plan = TrafficPlan::install(&c, &rss, &table).expect("fits exactly");
    let mut source = plan.take_source(0).expect("source");
    let pool = PacketPool::new(1024, 2048).expect("pool");
    let mut cache = pool.cache(64);
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < Duration::from_millis(30) {
        seen.extend(drain(&mut source, &mut cache, 1, 32));
    }
    let stats = plan.stats()[0].snapshot();
    assert!(stats["rule_add_failed"] > 0, "{stats:?}");
    assert_eq!(stats["flows_started"], 0);
    assert_eq!(stats["flows_ended"], 0);
    assert!(seen.iter().all(|s| !s.stamp.last && s.stamp.flow < 32));
    assert_eq!(table.exact_len(), 32);
}

#[test]
fn zipf_skews_towards_the_top_flow() {
    let mut c = config(Profile::Listeners, 1, 1, 100);
    c.traffic.distribution = Distribution::Zipf;
    c.traffic.zipf_s = 1.1;
    let mut r = rig(c);
    let mut source = r.plan.take_source(0).expect("source");
    let mut cache = r.pool.cache(64);
    let seen = drain(&mut source, &mut cache, 500, 32);
    let mut per_flow = [0usize; 100];
    for s in &seen {
        per_flow[s.stamp.flow as usize] += 1;
    }
    let uniform_share = seen.len() / 100;
    assert!(
        per_flow[0] > 10 * uniform_share,
        "top flow {} vs uniform {uniform_share}",
        per_flow[0]
    );
    assert!(per_flow[0] > per_flow[1] && per_flow[1] > per_flow[50]);
}

#[test]
fn rate_limit_caps_frames() {
    let mut c = config(Profile::Listeners, 2, 2, 64);
    c.traffic.rate = Rate::Pps(2000); // 1000 per second per queue
    let mut r = rig(c);
    let mut source = r.plan.take_source(1).expect("source");
    let mut cache = r.pool.cache(64);
    let start = Instant::now();
    let mut frames = 0usize;
    while start.elapsed() < Duration::from_millis(100) {
        frames += drain(&mut source, &mut cache, 1, 32).len();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let allowed = (1000.0 * elapsed) as usize + 32;
    assert!(
        frames <= allowed,
        "{frames} frames in {elapsed}s exceed the rate"
    );
    assert!(frames > 0);
    let stats = r.plan.stats()[1].snapshot();
    assert!(stats["rate_limited"] > 0);
    assert_eq!(stats["frames"], frames as u64);
}

#[test]
fn frames_are_valid_for_every_mix_and_size_with_and_without_templates() {
    for (flows, packet_size) in [(200u32, 90u16), (200, 1514), (45_000, 1514)] {
        let mut c = config(Profile::Listeners, 2, 2, flows);
        c.traffic.packet_size = packet_size;
        c.traffic.ipv6_share = 0.5;
        c.traffic.udp_share = 0.5;
        let mut r = rig(c);
        let mut source = r.plan.take_source(0).expect("source");
        // 45000 flows × 1514 bytes exceed the template budget: built per packet.
        assert_eq!(source.uses_templates(), flows < 45_000);
        let mut cache = r.pool.cache(64);
        let seen = drain(&mut source, &mut cache, 8, 32);
        assert_eq!(seen.len(), 256);
        let mut kinds = std::collections::HashSet::new();
        for s in &seen {
            kinds.insert((matches!(s.tuple.ip, IpPair::V6 { .. }), s.tuple.proto));
        }
        assert_eq!(kinds.len(), 4, "all four header mixes generated");
    }
}

#[test]
fn no_buffer_stops_the_fill_and_counts() {
    let mut r = rig(config(Profile::Listeners, 1, 1, 8));
    let small = PacketPool::new(4, 2048).expect("pool");
    let mut cache = small.cache(0);
    let mut source = r.plan.take_source(0).expect("source");
    let mut out = Vec::with_capacity(32);
    assert_eq!(source.fill(0, &mut cache, &mut out, 32), 4);
    assert_eq!(source.fill(0, &mut cache, &mut out, 32), 0);
    let stats = r.plan.stats()[0].snapshot();
    assert_eq!(stats["frames"], 4);
    assert_eq!(stats["no_buffer"], 2);
    cache.free_bulk(&mut out);
    drop(cache);
    assert_eq!(small.available(), 4, "nothing leaked");
    drop(r.pool);
}

#[test]
fn a_data_room_smaller_than_the_frame_is_no_buffer_not_a_panic() {
    let mut r = rig(config(Profile::Listeners, 1, 1, 8));
    let tiny = PacketPool::new(8, 100).expect("pool");
    let mut cache = tiny.cache(0);
    let mut source = r.plan.take_source(0).expect("source");
    let mut out = Vec::new();
    assert_eq!(source.fill(0, &mut cache, &mut out, 4), 0);
    assert_eq!(r.plan.stats()[0].snapshot()["no_buffer"], 1);
    drop(cache);
    assert_eq!(tiny.available(), 8, "the buffer that did not fit went back");
}

#[test]
fn same_seed_same_traffic() {
    let frames = |seed: u64| {
        let mut c = config(Profile::Listeners, 2, 2, 300);
        c.traffic.seed = seed;
        c.traffic.distribution = Distribution::Zipf;
        let mut r = rig(c);
        let mut source = r.plan.take_source(0).expect("source");
        let mut cache = r.pool.cache(64);
        drain(&mut source, &mut cache, 4, 32)
            .into_iter()
            .map(|s| (s.tuple, s.stamp))
            .collect::<Vec<_>>()
    };
    assert_eq!(frames(7), frames(7));
    assert_ne!(frames(7), frames(8));
}

#[test]
fn install_errors_roll_back_every_rule() {
    let c = config(Profile::Listeners, 4, 4, 100);
    let rss = soft_rss(&c);
    let small = table(10);
    let err = TrafficPlan::install(&c, &rss, &small).expect_err("100 TCP flows need 100 rules");
    assert!(matches!(err, TrafficError::RuleTableFull { .. }), "{err}");
    assert!(err.to_string().contains("flowtable.capacity"), "{err}");
    assert_eq!(small.exact_len(), 0);
    assert_eq!(small.listen_len(), 0);

    // IPv6 flows into a table that holds no IPv6 rule: the error names the key to raise.
    let mut ipv6 = c.clone();
    ipv6.traffic.ipv6_share = 0.5;
    ipv6.traffic.packet_size = 128;
    let ipv4_only: Arc<dyn FlowTable> = Arc::from(flowtable::new_table_sized(1000, 0));
    let err = TrafficPlan::install(&ipv6, &rss, &ipv4_only).expect_err("no IPv6 rules");
    assert!(matches!(err, TrafficError::RuleTableFull { .. }), "{err}");
    assert!(
        err.to_string().contains("raise flowtable.ipv6_capacity"),
        "{err}"
    );
    assert_eq!(ipv4_only.exact_len(), 0);

    let mut bad = c.clone();
    bad.port.queues = 3;
    let err = TrafficPlan::install(&bad, &rss, &table(1000)).expect_err("RSS over 4 queues");
    assert!(matches!(err, TrafficError::Config(_)), "{err}");

    let mut tiny = c.clone();
    tiny.traffic.packet_size = 70;
    tiny.traffic.ipv6_share = 1.0;
    let t = table(1000);
    let err = TrafficPlan::install(&tiny, &rss, &t).expect_err("IPv6 + TCP + stamp is 90 bytes");
    assert!(matches!(err, TrafficError::Frame(_)), "{err}");
    assert_eq!(
        t.listen_len(),
        0,
        "nothing installed before the frame check"
    );
}
