//! The user-space bridge: configuration, learning, flooding, filtering, ageing, eviction, drops
//! by reason, uveth ports (soft RSS on the way in, every queue on the way out, buffer
//! conservation), the pump thread, and a real TCP exchange between two smoltcp hosts.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant as StdInstant};

use flowsteer_nic::pool::{PacketPool, PktBuf, PoolCache};
use flowsteer_nic::port::{NoSource, QueuePair};
use flowsteer_nic::uveth::{Uveth, UvethConfig};
use flowsteer_nic::vbridge::{
    BridgeThreadConfig, MacAddr, PeerPort, PeerSendError, PortKind, PortStats, VBridge,
    VBridgeConfig, VBridgeError, BROADCAST, MAX_FRAME_LEN, MAX_PEER_RING_SIZE, MAX_TABLE_CAPACITY,
};
use flowsteer_nic::wire::{build_frame, FiveTuple, FrameSpec, IP_PROTO_TCP};

use flowsteer_testrig::vbridge::PeerDevice;
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::IpAddress;

const UVETH_MAC: MacAddr = [0x02, 0, 0, 0, 0, 0x01];

fn mac(n: u8) -> MacAddr {
    [0x02, 0, 0, 0, 0x10, n]
}

/// A minimal Ethernet frame: header, an experimental ethertype, `tag` as payload, padded to 60.
fn eth(dst: MacAddr, src: MacAddr, tag: u8) -> Vec<u8> {
    let mut frame = Vec::with_capacity(60);
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&0x88b5u16.to_be_bytes());
    frame.push(tag);
    frame.resize(60, 0);
    frame
}

/// A TCP frame between two MACs (flow `n`), as the engine would see from a client.
fn tcp_frame(dst: MacAddr, src: MacAddr, n: u16) -> Vec<u8> {
    let tuple = FiveTuple::v4(
        IP_PROTO_TCP,
        Ipv4Addr::new(198, 18, 0, 10),
        20_000 + n,
        Ipv4Addr::new(198, 18, 0, 1),
        80,
    );
    let spec = FrameSpec {
        src_mac: src,
        dst_mac: dst,
        vlan: None,
        tuple,
        tcp_flags: 0x10,
        payload: b"through the bridge",
    };
    let mut frame = vec![0u8; 256];
    let len = build_frame(&mut frame, &spec).unwrap();
    frame.truncate(len);
    frame
}

fn bridge() -> VBridge {
    VBridge::new(VBridgeConfig::default()).unwrap()
}

fn pool() -> Arc<PacketPool> {
    PacketPool::new(512, 2048).unwrap()
}

/// Every frame waiting for `peer`, oldest first.
fn drain(peer: &PeerPort) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| peer.recv()).collect()
}

fn port_stats(bridge: &VBridge, peer: &PeerPort) -> PortStats {
    *bridge.stats().port(peer.port()).unwrap()
}

#[test]
fn rejects_bad_configurations() {
    let with = |f: fn(&mut VBridgeConfig)| {
        let mut config = VBridgeConfig::default();
        f(&mut config);
        VBridge::new(config).unwrap_err()
    };
    assert_eq!(
        with(|c| c.mac_table_capacity = 0),
        VBridgeError::TableCapacity { capacity: 0 }
    );
    assert_eq!(
        with(|c| c.mac_table_capacity = MAX_TABLE_CAPACITY + 1),
        VBridgeError::TableCapacity {
            capacity: MAX_TABLE_CAPACITY + 1
        }
    );
    assert_eq!(
        with(|c| c.ageing = Duration::ZERO),
        VBridgeError::ZeroAgeing
    );
    assert_eq!(
        with(|c| c.peer_ring_size = 0),
        VBridgeError::PeerRingSize { ring_size: 0 }
    );
    assert_eq!(
        with(|c| c.peer_ring_size = MAX_PEER_RING_SIZE + 1),
        VBridgeError::PeerRingSize {
            ring_size: MAX_PEER_RING_SIZE + 1
        }
    );
    assert_eq!(
        with(|c| c.max_frame_len = 13),
        VBridgeError::MaxFrameLen { len: 13 }
    );
    assert_eq!(
        with(|c| c.max_frame_len = MAX_FRAME_LEN + 1),
        VBridgeError::MaxFrameLen {
            len: MAX_FRAME_LEN + 1
        }
    );
    let message = VBridgeError::PeerRingSize { ring_size: 0 }.to_string();
    assert!(message.contains("got 0"), "{message}");

    let mut bridge = bridge();
    let nic = Arc::new(Uveth::new(UvethConfig::default()).unwrap());
    let port = bridge.attach_uveth(Arc::clone(&nic)).unwrap();
    assert_eq!(
        bridge.attach_uveth(Arc::clone(&nic)).unwrap_err(),
        VBridgeError::AlreadyAttached { port }
    );
    // A second NIC with the same MAC would make the table ambiguous.
    let twin = Arc::new(Uveth::new(UvethConfig::default()).unwrap());
    let error = bridge.attach_uveth(twin).unwrap_err();
    assert_eq!(
        error,
        VBridgeError::StaticConflict {
            mac: UVETH_MAC,
            port
        }
    );
    assert!(error.to_string().contains("02:00:00:00:00:01"), "{error}");
    assert_eq!(bridge.ports(), 1);
}

#[test]
fn unknown_unicast_and_broadcast_flood_learned_unicast_goes_to_one_port() {
    let pool = pool();
    let mut cache = pool.cache(32);
    let mut bridge = bridge();
    let (_, a) = bridge.attach_peer().unwrap();
    let (_, b) = bridge.attach_peer().unwrap();
    let (_, c) = bridge.attach_peer().unwrap();

    // B's address is unknown: flooded to B and C, never back to A.
    a.send(&eth(mac(2), mac(1), 1)).unwrap();
    assert_eq!(bridge.pump(&mut cache, 32), 1);
    assert!(drain(&a).is_empty());
    assert_eq!(drain(&b), vec![eth(mac(2), mac(1), 1)]);
    assert_eq!(drain(&c), vec![eth(mac(2), mac(1), 1)]);
    assert_eq!(bridge.lookup(&mac(1)), Some(a.port()));

    // A was learned: B's reply goes to A only, and teaches the bridge where B is.
    b.send(&eth(mac(1), mac(2), 2)).unwrap();
    bridge.pump(&mut cache, 32);
    assert_eq!(drain(&a), vec![eth(mac(1), mac(2), 2)]);
    assert!(drain(&b).is_empty() && drain(&c).is_empty());

    a.send(&eth(mac(2), mac(1), 3)).unwrap();
    bridge.pump(&mut cache, 32);
    assert_eq!(drain(&b), vec![eth(mac(2), mac(1), 3)]);
    assert!(drain(&a).is_empty() && drain(&c).is_empty());

    // Broadcast and multicast always flood, even from a known station.
    c.send(&eth(BROADCAST, mac(3), 4)).unwrap();
    c.send(&eth([0x01, 0x00, 0x5e, 0, 0, 1], mac(3), 5))
        .unwrap();
    bridge.pump(&mut cache, 32);
    for peer in [&a, &b] {
        let got = drain(peer);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0][14], got[1][14]), (4, 5));
    }
    assert!(drain(&c).is_empty());

    let stats = bridge.stats();
    let (pa, pb, pc) = (stats.ports[0], stats.ports[1], stats.ports[2]);
    assert!(stats.ports.iter().all(|p| p.kind == PortKind::Peer));
    assert_eq!((pa.rx_frames, pa.flooded, pa.tx_frames), (2, 1, 3));
    assert_eq!((pb.rx_frames, pb.flooded, pb.tx_frames), (1, 0, 4));
    assert_eq!((pc.rx_frames, pc.flooded, pc.tx_frames), (2, 2, 1));
    assert_eq!(pa.rx_bytes, 120);
    assert_eq!(pa.peer_sent, 2);
    assert!(stats
        .ports
        .iter()
        .all(|p| p.tx_dropped() + p.rx_dropped() == 0));
    assert_eq!((stats.table.entries, stats.table.learned), (3, 3));
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn a_frame_for_the_ingress_ports_own_station_is_filtered() {
    let pool = pool();
    let mut cache = pool.cache(32);
    let mut bridge = bridge();
    let (_, a) = bridge.attach_peer().unwrap();
    let (_, b) = bridge.attach_peer().unwrap();
    // Two stations behind port A (a host with two addresses, or a hub).
    a.send(&eth(BROADCAST, mac(1), 1)).unwrap();
    a.send(&eth(BROADCAST, mac(9), 2)).unwrap();
    a.send(&eth(mac(9), mac(1), 3)).unwrap();
    a.send(&eth(mac(1), mac(1), 4)).unwrap();
    bridge.pump(&mut cache, 32);
    assert!(drain(&a).is_empty());
    assert_eq!(drain(&b).len(), 2, "only the two broadcasts");
    let pa = port_stats(&bridge, &a);
    assert_eq!((pa.rx_frames, pa.flooded, pa.filtered), (4, 2, 2));
}

#[test]
fn malformed_frames_and_bad_sources_are_counted_drops() {
    let pool = pool();
    let mut cache = pool.cache(32);
    let mut bridge = VBridge::new(VBridgeConfig {
        max_frame_len: 100,
        ..VBridgeConfig::default()
    })
    .unwrap();
    let (_, a) = bridge.attach_peer().unwrap();
    let (_, b) = bridge.attach_peer().unwrap();
    a.send(&[]).unwrap();
    a.send(&eth(mac(2), mac(1), 0)[..13]).unwrap();
    a.send(&eth(mac(2), [0x03, 0, 0, 0, 0, 1], 0)).unwrap();
    a.send(&eth(mac(2), [0; 6], 0)).unwrap();
    assert_eq!(
        a.send(&[0u8; 101]),
        Err(PeerSendError::TooLarge { len: 101, max: 100 })
    );
    // A bare header (no payload) is a frame the bridge forwards.
    a.send(&eth(mac(2), mac(1), 0)[..14]).unwrap();
    assert_eq!(bridge.pump(&mut cache, 32), 5);
    assert_eq!(drain(&b), vec![eth(mac(2), mac(1), 0)[..14].to_vec()]);
    let pa = port_stats(&bridge, &a);
    assert_eq!(
        (
            pa.rx_frames,
            pa.rx_dropped_malformed,
            pa.rx_dropped_bad_source
        ),
        (5, 2, 2)
    );
    assert_eq!((pa.peer_sent, pa.peer_send_oversize), (5, 1));
    assert_eq!(
        bridge.stats().table.learned,
        1,
        "bad sources are not learned"
    );
}

#[test]
fn full_rings_are_counted_drops_on_both_sides() {
    let pool = pool();
    let mut cache = pool.cache(32);
    let mut bridge = VBridge::new(VBridgeConfig {
        peer_ring_size: 4,
        ..VBridgeConfig::default()
    })
    .unwrap();
    let (_, a) = bridge.attach_peer().unwrap();
    let (_, b) = bridge.attach_peer().unwrap();
    for tag in 0..6 {
        let sent = a.send(&eth(BROADCAST, mac(1), tag));
        assert_eq!(sent.is_ok(), tag < 4, "tag {tag}: {sent:?}");
    }
    assert_eq!(
        a.send(&eth(BROADCAST, mac(1), 9)),
        Err(PeerSendError::RingFull)
    );
    // Small pumps: the burst bound holds per port.
    assert_eq!(bridge.pump(&mut cache, 3), 3);
    assert_eq!(bridge.pump(&mut cache, 3), 1);
    for tag in 4..6 {
        a.send(&eth(BROADCAST, mac(1), tag)).unwrap();
    }
    bridge.pump(&mut cache, 32);
    // B never read: its ring took 4 of 6.
    let got = drain(&b);
    assert_eq!(
        got.iter().map(|f| f[14]).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    let pa = port_stats(&bridge, &a);
    let pb = port_stats(&bridge, &b);
    assert_eq!((pa.peer_sent, pa.peer_send_full), (6, 3));
    assert_eq!((pb.tx_frames, pb.tx_dropped_full), (4, 2));
    assert_eq!(pb.peer_queued_out, 0);
}

#[test]
fn silent_stations_age_out() {
    let pool = pool();
    let mut cache = pool.cache(32);
    // Long enough that two back-to-back pumps never straddle it, short enough for a test.
    let mut bridge = VBridge::new(VBridgeConfig {
        ageing: Duration::from_millis(250),
        ..VBridgeConfig::default()
    })
    .unwrap();
    let (_, a) = bridge.attach_peer().unwrap();
    let (_, b) = bridge.attach_peer().unwrap();
    let (_, c) = bridge.attach_peer().unwrap();
    a.send(&eth(BROADCAST, mac(1), 0)).unwrap();
    bridge.pump(&mut cache, 32);
    b.send(&eth(mac(1), mac(2), 1)).unwrap();
    bridge.pump(&mut cache, 32);
    assert_eq!(drain(&a), vec![eth(mac(1), mac(2), 1)]);
    assert_eq!(drain(&b).len(), 1);
    assert_eq!(drain(&c).len(), 1, "the broadcast only: A was known");

    // A and B stay silent for longer than the ageing time.
    thread::sleep(Duration::from_millis(500));
    c.send(&eth(mac(1), mac(3), 2)).unwrap();
    bridge.pump(&mut cache, 32);
    assert_eq!(drain(&a).len(), 1);
    assert_eq!(drain(&b).len(), 1, "A was forgotten: flooded");
    let table = bridge.stats().table;
    assert_eq!((table.aged_out, table.entries), (2, 1));
    assert_eq!(bridge.mac_table().len(), 1);
}

#[test]
fn a_full_table_evicts_the_least_recently_seen_station() {
    let pool = pool();
    let mut cache = pool.cache(32);
    let mut bridge = VBridge::new(VBridgeConfig {
        mac_table_capacity: 2,
        ..VBridgeConfig::default()
    })
    .unwrap();
    let (_, a) = bridge.attach_peer().unwrap();
    let (_, b) = bridge.attach_peer().unwrap();
    let (_, c) = bridge.attach_peer().unwrap();
    for (peer, n) in [(&c, 3), (&a, 1), (&b, 2)] {
        peer.send(&eth(BROADCAST, mac(n), n)).unwrap();
        bridge.pump(&mut cache, 32);
    }
    let table = bridge.stats().table;
    assert_eq!((table.entries, table.capacity, table.evicted), (2, 2, 1));
    assert_eq!(table.learned, 3);
    assert_eq!(bridge.lookup(&mac(3)), None, "C was the oldest");
    assert_eq!(bridge.lookup(&mac(1)), Some(a.port()));
    assert_eq!(bridge.lookup(&mac(2)), Some(b.port()));
    // Forgotten means flooded again.
    drain(&a);
    drain(&b);
    a.send(&eth(mac(3), mac(1), 9)).unwrap();
    bridge.pump(&mut cache, 32);
    assert_eq!(drain(&b).len(), 1);
    assert_eq!(drain(&c).last().map(|f| f[14]), Some(9));
}

#[test]
fn a_station_that_moves_is_followed() {
    let pool = pool();
    let mut cache = pool.cache(32);
    let mut bridge = bridge();
    let (_, a) = bridge.attach_peer().unwrap();
    let (_, b) = bridge.attach_peer().unwrap();
    let (_, c) = bridge.attach_peer().unwrap();
    a.send(&eth(BROADCAST, mac(7), 0)).unwrap();
    bridge.pump(&mut cache, 32);
    b.send(&eth(BROADCAST, mac(7), 1)).unwrap();
    bridge.pump(&mut cache, 32);
    drain(&a);
    drain(&b);
    drain(&c);
    c.send(&eth(mac(7), mac(3), 2)).unwrap();
    bridge.pump(&mut cache, 32);
    assert!(drain(&a).is_empty());
    assert_eq!(drain(&b).len(), 1);
    assert_eq!(bridge.stats().table.moved, 1);
}

#[test]
fn an_unplugged_peer_is_forgotten_and_the_bridge_going_away_is_reported() {
    let pool = pool();
    let mut cache = pool.cache(32);
    let mut bridge = bridge();
    let (_, a) = bridge.attach_peer().unwrap();
    let (b_port, b) = bridge.attach_peer().unwrap();
    b.send(&eth(BROADCAST, mac(2), 0)).unwrap();
    a.send(&eth(mac(2), mac(1), 1)).unwrap();
    bridge.pump(&mut cache, 32);
    assert_eq!(b.pending(), 1);
    // B's last words are still forwarded after it leaves.
    b.send(&eth(mac(1), mac(2), 2)).unwrap();
    drop(b);
    bridge.pump(&mut cache, 32);
    assert_eq!(
        drain(&a).iter().map(|f| f[14]).collect::<Vec<_>>(),
        vec![0, 2]
    );
    assert_eq!(bridge.lookup(&mac(2)), None, "B's addresses flushed");
    a.send(&eth(mac(2), mac(1), 3)).unwrap();
    bridge.pump(&mut cache, 32);
    let pb = *bridge.stats().port(b_port).unwrap();
    assert_eq!((pb.tx_frames, pb.tx_dropped_detached), (1, 1));
    assert_eq!(pb.peer_queued_out, 0, "what waited for B was freed");

    drop(bridge);
    assert!(!a.bridge_attached());
    assert_eq!(
        a.send(&eth(BROADCAST, mac(1), 4)),
        Err(PeerSendError::BridgeGone)
    );
}

/// A bridge with one 2-queue uveth and two peers, and the pool both use.
struct UvethRig {
    pool: Arc<PacketPool>,
    cache: PoolCache,
    nic: Arc<Uveth>,
    bridge: VBridge,
    a: PeerPort,
    b: PeerPort,
}

fn uveth_rig(ring_size: usize, pool: Arc<PacketPool>) -> UvethRig {
    let cache = pool.cache(32);
    let nic = Arc::new(
        Uveth::new(UvethConfig {
            queues: 2,
            ring_size,
            ..UvethConfig::default()
        })
        .unwrap(),
    );
    let mut bridge = bridge();
    let port = bridge.attach_uveth(Arc::clone(&nic)).unwrap();
    assert_eq!(port.index(), 0);
    let (_, a) = bridge.attach_peer().unwrap();
    let (_, b) = bridge.attach_peer().unwrap();
    UvethRig {
        pool,
        cache,
        nic,
        bridge,
        a,
        b,
    }
}

impl UvethRig {
    /// Every frame on every receive queue, by queue, freed after its bytes were copied.
    fn receive_all(&mut self) -> Vec<Vec<Vec<u8>>> {
        (0..self.nic.queues())
            .map(|q| {
                let mut queue = self.nic.take_queue::<NoSource>(q, None).unwrap();
                let mut bufs = Vec::new();
                while queue.rx_burst(&mut self.cache, &mut bufs, 64) > 0 {}
                let frames = bufs.iter().map(|b| b.data().to_vec()).collect();
                self.cache.free_bulk(&mut bufs);
                frames
            })
            .collect()
    }

    fn pool_is_full(&mut self) -> bool {
        self.nic.drain_into(&mut self.cache);
        self.pool.available() == self.pool.capacity()
    }
}

#[test]
fn a_peer_frame_for_the_uveth_arrives_on_the_queue_soft_rss_picks() {
    let mut rig = uveth_rig(64, pool());
    let frames: Vec<Vec<u8>> = (0..16).map(|n| tcp_frame(UVETH_MAC, mac(1), n)).collect();
    for frame in &frames {
        rig.a.send(frame).unwrap();
    }
    assert_eq!(rig.bridge.pump(&mut rig.cache, 64), 16);
    assert!(
        rig.b.recv().is_none(),
        "the uveth's MAC is static: no flood"
    );
    let received = rig.receive_all();
    let mut expected = vec![Vec::new(); 2];
    for frame in &frames {
        let (_, queue) = rig.nic.soft_rss().queue_of(frame);
        expected[queue as usize].push(frame.clone());
    }
    assert!(expected.iter().all(|q| !q.is_empty()), "both queues used");
    assert_eq!(received, expected);

    let stats = rig.bridge.stats();
    let (uveth, pa) = (stats.ports[0], stats.ports[1]);
    assert_eq!(uveth.kind, PortKind::Uveth);
    assert_eq!((uveth.tx_frames, uveth.tx_dropped()), (16, 0));
    assert_eq!((pa.rx_frames, pa.flooded), (16, 0));
    assert_eq!(rig.nic.stats().total().rx_injected, 16);
    assert_eq!(stats.table.static_entries, 1);
    assert!(rig.pool_is_full());
}

#[test]
fn a_frame_the_uveth_transmits_reaches_the_peer_it_is_addressed_to() {
    let mut rig = uveth_rig(64, pool());
    // The peers make themselves known with a frame to the engine.
    rig.a.send(&tcp_frame(UVETH_MAC, mac(1), 1)).unwrap();
    rig.b.send(&tcp_frame(UVETH_MAC, mac(2), 2)).unwrap();
    rig.bridge.pump(&mut rig.cache, 64);
    assert_eq!(rig.receive_all().concat().len(), 2);

    // The engine answers B on queue 1, A on queue 0, and a stranger on queue 1.
    let mut q0 = rig.nic.take_queue::<NoSource>(0, None).unwrap();
    let mut q1 = rig.nic.take_queue::<NoSource>(1, None).unwrap();
    let burst = |queue: &mut dyn QueuePair, frames: &[Vec<u8>], cache: &mut PoolCache| {
        let mut bufs: Vec<PktBuf> = frames
            .iter()
            .map(|frame| {
                let mut buf = cache.alloc().unwrap();
                buf.write_frame(frame).unwrap();
                buf
            })
            .collect();
        assert_eq!(queue.tx_burst(cache, &mut bufs), frames.len());
    };
    let to_b = tcp_frame(mac(2), UVETH_MAC, 3);
    let to_a = tcp_frame(mac(1), UVETH_MAC, 4);
    let to_stranger = tcp_frame(mac(99), UVETH_MAC, 5);
    burst(
        &mut q1,
        &[to_b.clone(), to_stranger.clone()],
        &mut rig.cache,
    );
    burst(&mut q0, std::slice::from_ref(&to_a), &mut rig.cache);
    assert_eq!(rig.bridge.pump(&mut rig.cache, 64), 3);
    // Order holds within a queue; which queue is drained first rotates from pump to pump.
    let sorted = |mut frames: Vec<Vec<u8>>| {
        frames.sort();
        frames
    };
    assert_eq!(
        sorted(drain(&rig.a)),
        sorted(vec![to_a, to_stranger.clone()])
    );
    assert_eq!(drain(&rig.b), vec![to_b, to_stranger]);

    let stats = rig.bridge.stats();
    let uveth = stats.ports[0];
    assert_eq!((uveth.rx_frames, uveth.flooded, uveth.tx_frames), (3, 1, 2));
    assert_eq!((stats.ports[1].tx_frames, stats.ports[2].tx_frames), (2, 2));
    assert_eq!(
        rig.nic.stats().total().tx_queued,
        0,
        "taken off every queue"
    );
    drop((q0, q1));
    assert!(rig.pool_is_full(), "every transmitted buffer went back");
}

#[test]
fn uveth_inject_failures_are_counted_drops_that_lose_no_buffer() {
    // A full receive ring: 4 slots per queue, 16 frames of one flow (one queue).
    let mut rig = uveth_rig(4, pool());
    for _ in 0..16 {
        rig.a.send(&tcp_frame(UVETH_MAC, mac(1), 7)).unwrap();
    }
    rig.bridge.pump(&mut rig.cache, 64);
    let uveth = rig.bridge.stats().ports[0];
    assert_eq!((uveth.tx_frames, uveth.tx_dropped_full), (4, 12));
    assert_eq!(rig.receive_all().concat().len(), 4);
    assert!(rig.pool_is_full());

    // No buffer: a pool of 6, spread over two queues' rings of 64.
    let mut rig = uveth_rig(64, PacketPool::new(6, 2048).unwrap());
    for n in 0..10 {
        rig.a.send(&tcp_frame(UVETH_MAC, mac(1), n)).unwrap();
    }
    rig.bridge.pump(&mut rig.cache, 64);
    let uveth = rig.bridge.stats().ports[0];
    assert_eq!((uveth.tx_frames, uveth.tx_dropped_no_buffer), (6, 4));
    assert_eq!(rig.receive_all().concat().len(), 6);
    assert!(rig.pool_is_full());

    // Too large for the data room.
    let mut rig = uveth_rig(64, PacketPool::new(64, 64).unwrap());
    rig.a.send(&tcp_frame(UVETH_MAC, mac(1), 1)).unwrap();
    rig.a.send(&eth(UVETH_MAC, mac(1), 2)).unwrap();
    rig.bridge.pump(&mut rig.cache, 64);
    let uveth = rig.bridge.stats().ports[0];
    assert_eq!((uveth.tx_frames, uveth.tx_dropped_oversize), (1, 1));
    assert_eq!(rig.receive_all().concat(), vec![eth(UVETH_MAC, mac(1), 2)]);
    assert!(rig.pool_is_full());
}

#[test]
fn the_pump_thread_forwards_until_stopped_and_returns_the_bridge() {
    let pool = pool();
    let mut bridge = bridge();
    let (_, a) = bridge.attach_peer().unwrap();
    let (_, b) = bridge.attach_peer().unwrap();
    let running = bridge
        .spawn(pool.cache(32), BridgeThreadConfig::default())
        .unwrap();
    let deadline = StdInstant::now() + Duration::from_secs(10);
    let mut received = Vec::new();
    let mut next = 0u32;
    while received.len() < 1000 && StdInstant::now() < deadline {
        if next < 1000 && a.send(&eth(mac(2), mac(1), next as u8)).is_ok() {
            next += 1;
        }
        if let Some(frame) = b.recv() {
            received.push(frame);
        }
    }
    assert_eq!(received.len(), 1000, "bounded by the deadline");
    for (n, frame) in received.iter().enumerate() {
        assert_eq!(frame[14], n as u8, "in order");
    }
    assert_eq!(running.stats().ports[0].peer_sent, 1000);
    let bridge = running.stop().unwrap();
    let stats = bridge.stats();
    assert_eq!(
        (stats.ports[0].rx_frames, stats.ports[1].tx_frames),
        (1000, 1000)
    );
    assert_eq!(pool.available(), pool.capacity());
}

// ---- TCP between two smoltcp hosts, no kernel involved ----

/// One smoltcp host with one TCP socket, on a bridge port.
struct Host {
    iface: Interface,
    device: PeerDevice,
    sockets: SocketSet<'static>,
    tcp: SocketHandle,
}

const TRANSFER: usize = 64 * 1024;
const SERVER_PORT: u16 = 7000;

fn host(port: PeerPort, n: u8) -> Host {
    let mut device = PeerDevice::new(port);
    let iface = device.interface(mac(n), Ipv4Addr::new(198, 18, 0, n), 24, u64::from(n));
    let socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 32 * 1024]),
        tcp::SocketBuffer::new(vec![0; 32 * 1024]),
    );
    let mut sockets = SocketSet::new(Vec::new());
    let tcp = sockets.add(socket);
    Host {
        iface,
        device,
        sockets,
        tcp,
    }
}

impl Host {
    fn poll(&mut self) {
        self.iface
            .poll(Instant::now(), &mut self.device, &mut self.sockets);
    }

    fn socket(&mut self) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(self.tcp)
    }
}

/// The client side: sends `data`, reads the echo back, closes once all of it arrived.
struct Client {
    host: Host,
    data: Vec<u8>,
    sent: usize,
    echoed: Vec<u8>,
}

impl Client {
    fn new(port: PeerPort) -> Client {
        let mut host = host(port, 1);
        let Host {
            iface,
            sockets,
            tcp,
            ..
        } = &mut host;
        sockets
            .get_mut::<tcp::Socket>(*tcp)
            .connect(
                iface.context(),
                (IpAddress::v4(198, 18, 0, 2), SERVER_PORT),
                49_152,
            )
            .unwrap();
        let data = (0..TRANSFER).map(|i| (i * 7 % 251) as u8).collect();
        Client {
            host,
            data,
            sent: 0,
            echoed: Vec::with_capacity(TRANSFER),
        }
    }

    fn step(&mut self) {
        self.host.poll();
        let socket = self.host.sockets.get_mut::<tcp::Socket>(self.host.tcp);
        if socket.can_send() && self.sent < self.data.len() {
            self.sent += socket.send_slice(&self.data[self.sent..]).unwrap();
        }
        let mut chunk = [0u8; 4096];
        while socket.can_recv() {
            let n = socket.recv_slice(&mut chunk).unwrap();
            self.echoed.extend_from_slice(&chunk[..n]);
        }
        if self.echoed.len() >= self.data.len() {
            socket.close();
        }
        self.host.poll();
    }

    fn done(&self) -> bool {
        self.echoed.len() >= self.data.len()
    }
}

/// The server side: echoes what it reads, closes when the client did.
struct Server {
    host: Host,
    pending: Vec<u8>,
    echoed: usize,
}

impl Server {
    fn new(port: PeerPort) -> Server {
        let mut host = host(port, 2);
        host.socket().listen(SERVER_PORT).unwrap();
        Server {
            host,
            pending: Vec::new(),
            echoed: 0,
        }
    }

    /// The connection is over: the client's FIN came, the server's FIN was acknowledged.
    fn closed(&mut self) -> bool {
        let socket = self.host.sockets.get_mut::<tcp::Socket>(self.host.tcp);
        socket.state() == tcp::State::Closed
    }

    fn step(&mut self) {
        self.host.poll();
        let socket = self.host.sockets.get_mut::<tcp::Socket>(self.host.tcp);
        let mut chunk = [0u8; 4096];
        while socket.can_recv() {
            let n = socket.recv_slice(&mut chunk).unwrap();
            self.pending.extend_from_slice(&chunk[..n]);
        }
        if !self.pending.is_empty() && socket.can_send() {
            let n = socket.send_slice(&self.pending).unwrap();
            self.pending.drain(..n);
            self.echoed += n;
        }
        if !socket.may_recv() && self.pending.is_empty() && socket.state() == tcp::State::CloseWait
        {
            socket.close();
        }
        self.host.poll();
    }
}

fn assert_clean_tcp_run(stats: &flowsteer_nic::vbridge::VBridgeStats) {
    for port in &stats.ports {
        assert_eq!(port.tx_dropped() + port.rx_dropped(), 0, "{port:?}");
        assert_eq!(port.peer_send_full, 0, "{port:?}");
        // 64 KiB in MSS-sized segments, both ways, plus ARP and handshake.
        assert!(port.rx_frames > (TRANSFER / 1460) as u64, "{port:?}");
    }
    assert_eq!(stats.table.learned, 2);
}

#[test]
fn tcp_between_two_smoltcp_hosts_through_the_bridge_pumped_inline() {
    let pool = pool();
    let mut cache = pool.cache(32);
    let mut bridge = bridge();
    let (_, client_port) = bridge.attach_peer().unwrap();
    let (_, server_port) = bridge.attach_peer().unwrap();
    let mut client = Client::new(client_port);
    let mut server = Server::new(server_port);
    let deadline = StdInstant::now() + Duration::from_secs(30);
    while !client.done() && StdInstant::now() < deadline {
        client.step();
        bridge.pump(&mut cache, 64);
        server.step();
        bridge.pump(&mut cache, 64);
    }
    assert_eq!(client.echoed.len(), TRANSFER, "transfer bounded in time");
    assert!(client.echoed == client.data, "echoed bytes differ");
    assert_eq!(server.echoed, TRANSFER);
    assert_clean_tcp_run(&bridge.stats());
}

#[test]
fn tcp_between_two_smoltcp_hosts_on_their_own_threads_through_the_pump_thread() {
    let pool = pool();
    let mut bridge = bridge();
    let (_, client_port) = bridge.attach_peer().unwrap();
    let (_, server_port) = bridge.attach_peer().unwrap();
    let running = bridge
        .spawn(pool.cache(32), BridgeThreadConfig::default())
        .unwrap();
    let deadline = StdInstant::now() + Duration::from_secs(30);
    let stop = Arc::new(AtomicBool::new(false));
    let server_stop = Arc::clone(&stop);
    let server = thread::spawn(move || {
        let mut server = Server::new(server_port);
        // Until the client has everything back and the connection is closed on both sides: a
        // port that goes earlier would see the client's FIN or last ACK dropped as detached.
        while !(server_stop.load(Ordering::Acquire) && server.closed())
            && StdInstant::now() < deadline
        {
            server.step();
            thread::yield_now();
        }
        server.echoed
    });
    let mut client = Client::new(client_port);
    while !server.is_finished() && StdInstant::now() < deadline {
        client.step();
        if client.done() {
            stop.store(true, Ordering::Release);
        }
        thread::yield_now();
    }
    let server_echoed = server.join().unwrap();
    let bridge = running.stop().unwrap();
    assert_eq!(client.echoed.len(), TRANSFER, "transfer bounded in time");
    assert!(client.echoed == client.data, "echoed bytes differ");
    assert_eq!(server_echoed, TRANSFER);
    assert_clean_tcp_run(&bridge.stats());
    drop(bridge);
    assert_eq!(pool.available(), pool.capacity());
}
