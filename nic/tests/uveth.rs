//! The user-space NIC: configuration, soft-RSS spreading, receive order, full rings, transmit,
//! queue ownership and buffer conservation.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::thread;

use flowsteer_nic::pool::{PacketPool, PktBuf, PoolCache};
use flowsteer_nic::port::{FrameSource, NoSource, PortControl, QueuePair};
use flowsteer_nic::rss::{RssError, SoftRss, SYMMETRIC_KEY};
use flowsteer_nic::uveth::{
    InjectError, QueueStats, Uveth, UvethConfig, UvethError, MAX_RING_SIZE,
};
use flowsteer_nic::wire::{
    build_frame, dissect, Classified, FiveTuple, FrameSpec, IP_PROTO_TCP, IP_PROTO_UDP,
};

fn config(queues: u16, ring_size: usize) -> UvethConfig {
    UvethConfig {
        queues,
        ring_size,
        ..UvethConfig::default()
    }
}

fn tuple(n: u32) -> FiveTuple {
    FiveTuple::v4(
        if n.is_multiple_of(3) {
            IP_PROTO_UDP
        } else {
            IP_PROTO_TCP
        },
        Ipv4Addr::from(0xc612_0000 | (n & 0xffff)),
        10_000 + (n % 50_000) as u16,
        Ipv4Addr::new(198, 18, 0, 1),
        8000 + (n % 4) as u16,
    )
}

fn frame(tuple: FiveTuple, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8; 256];
    let len = build_frame(&mut frame, &spec(tuple, payload)).unwrap();
    frame.truncate(len);
    frame
}

/// The L4 payload of a frame built by `frame`, without the link padding of short frames.
fn payload(frame: &[u8]) -> &[u8] {
    let dissection = dissect(frame).unwrap();
    let Classified::Flow { payload_offset, .. } = dissection.classified else {
        panic!("not a flow: {dissection:?}");
    };
    &frame[payload_offset..dissection.ip_end.unwrap()]
}

fn spec(tuple: FiveTuple, payload: &[u8]) -> FrameSpec<'_> {
    FrameSpec {
        src_mac: [2, 0, 0, 0, 0, 2],
        dst_mac: [2, 0, 0, 0, 0, 1],
        vlan: None,
        tuple,
        tcp_flags: 0x10,
        payload,
    }
}

/// The first `count` test flows that soft RSS puts on `queue`.
fn flows_of_queue(rss: &SoftRss, queue: u16, count: usize) -> Vec<FiveTuple> {
    (0..)
        .map(tuple)
        .filter(|t| rss.queue_of_tuple(t).1 == queue)
        .take(count)
        .collect()
}

/// A generator of frames for its queue's flows, stamping the receive hash as a NIC would.
struct FlowSource {
    rss: SoftRss,
    flows: Vec<FiveTuple>,
    next: usize,
    extra: usize,
}

impl FrameSource for FlowSource {
    fn fill(
        &mut self,
        queue: u16,
        cache: &mut PoolCache,
        out: &mut Vec<PktBuf>,
        max: usize,
    ) -> usize {
        // A misbehaving source may append more than asked (`extra`); the queue must cap it.
        for made in 0..max + self.extra {
            let Some(mut buf) = cache.alloc() else {
                return made;
            };
            let flow = self.flows[self.next % self.flows.len()];
            self.next += 1;
            let len = build_frame(buf.buffer_mut(), &spec(flow, b"generated")).unwrap();
            buf.set_len(len).unwrap();
            let (hash, flow_queue) = self.rss.queue_of_tuple(&flow);
            assert_eq!(flow_queue, queue);
            buf.set_rss_hash(hash);
            out.push(buf);
        }
        max
    }
}

#[test]
fn rejects_bad_configurations() {
    assert_eq!(
        Uveth::new(config(0, 64)).unwrap_err(),
        UvethError::Queues { queues: 0 }
    );
    assert_eq!(
        Uveth::new(config(1025, 64)).unwrap_err(),
        UvethError::Queues { queues: 1025 }
    );
    for ring_size in [0, 3, 1000, MAX_RING_SIZE * 2] {
        assert_eq!(
            Uveth::new(config(2, ring_size)).unwrap_err(),
            UvethError::RingSize { ring_size }
        );
    }
    assert_eq!(
        Uveth::new(config(1024, MAX_RING_SIZE)).unwrap_err(),
        UvethError::RingMemory {
            queues: 1024,
            ring_size: MAX_RING_SIZE
        }
    );
    let mut cfg = config(8, 64);
    cfg.reta_size = 4;
    assert_eq!(
        Uveth::new(cfg.clone()).unwrap_err(),
        UvethError::Rss(RssError::Queues { queues: 8, size: 4 })
    );
    cfg.reta_size = 6;
    assert_eq!(
        Uveth::new(cfg).unwrap_err(),
        UvethError::Rss(RssError::RetaSize { size: 6 })
    );
    let message = UvethError::Queues { queues: 0 }.to_string();
    assert!(message.contains("got 0"), "{message}");
}

#[test]
fn a_redirected_queues_flows_go_to_the_survivors_round_robin_and_the_others_stay() {
    let nic = Uveth::new(config(4, 1024)).unwrap();
    let pool = PacketPool::new(4096, 256).unwrap();
    let mut cache = pool.cache(64);
    assert_eq!(
        nic.redirect_queue(1, &[4]),
        Err("queue 4 is not a queue of this port (4 queues)".to_owned())
    );
    assert_eq!(nic.redirect_queue(1, &[0, 3]), Ok(true));
    let mut landed = [[0u64; 4]; 4];
    for n in 0..2000 {
        let frame = frame(tuple(n), &n.to_be_bytes());
        let (_, modelled) = nic.soft_rss().queue_of(&frame);
        let queue = nic.inject(&frame, &mut cache).unwrap();
        landed[modelled as usize][queue as usize] += 1;
    }
    // Flows of queue 1 now land on 0 and 3, about half each; the others where they were.
    assert_eq!(landed[1][1] + landed[1][2], 0, "{landed:?}");
    assert!(landed[1][0] > 100 && landed[1][3] > 100, "{landed:?}");
    for q in [0, 2, 3] {
        let elsewhere: u64 = (0..4).filter(|&to| to != q).map(|to| landed[q][to]).sum();
        assert_eq!(elsewhere, 0, "{landed:?}");
    }
    // Each ring holds what it received (1024 slots, about 750 frames at most); all go back.
    let mut rx = Vec::new();
    for q in 0..4 {
        let mut queue = nic.take_queue::<NoSource>(q, None).unwrap();
        while queue.rx_burst(&mut cache, &mut rx, 64) > 0 {
            cache.free_bulk(&mut rx);
        }
    }
}

#[test]
fn inject_spreads_frames_exactly_as_soft_rss_says() {
    let nic = Uveth::new(config(4, 1024)).unwrap();
    let pool = PacketPool::new(2048, 256).unwrap();
    let mut cache = pool.cache(64);
    let mut expected = [0u64; 4];
    for n in 0..1000 {
        let frame = frame(tuple(n), &n.to_be_bytes());
        let (_, queue) = nic.soft_rss().queue_of(&frame);
        assert_eq!(nic.inject(&frame, &mut cache), Ok(queue));
        expected[queue as usize] += 1;
    }
    assert!(expected.iter().all(|&count| count > 150), "{expected:?}");
    let stats = nic.stats();
    for queue in 0..4u16 {
        assert_eq!(
            stats.queues[queue as usize].rx_injected,
            expected[queue as usize]
        );
        assert_eq!(
            stats.queues[queue as usize].rx_queued,
            expected[queue as usize]
        );
        let mut port = nic.take_queue::<NoSource>(queue, None).unwrap();
        let mut rx = Vec::new();
        let mut received = 0;
        loop {
            let n = port.rx_burst(&mut cache, &mut rx, 32);
            assert!(n <= 32);
            if n == 0 {
                break;
            }
            received += n as u64;
            for buf in rx.drain(..) {
                let (hash, frame_queue) = nic.soft_rss().queue_of(buf.data());
                assert_eq!((frame_queue, buf.rss_hash()), (queue, hash));
                cache.free(buf);
            }
        }
        assert_eq!(received, expected[queue as usize]);
    }
    assert_eq!(nic.stats().total().rx_queued, 0);
    drop(cache);
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn rx_burst_returns_injected_frames_first_then_generated_ones() {
    let nic = Uveth::new(config(2, 64)).unwrap();
    let pool = PacketPool::new(256, 256).unwrap();
    let mut cache = pool.cache(16);
    let flows = flows_of_queue(nic.soft_rss(), 1, 8);
    let injected: Vec<Vec<u8>> = flows[..3].iter().map(|&t| frame(t, b"injected")).collect();
    for frame in &injected {
        assert_eq!(nic.inject(frame, &mut cache), Ok(1));
    }
    let source = FlowSource {
        rss: nic.soft_rss().clone(),
        flows,
        next: 0,
        extra: 0,
    };
    let mut port = nic.take_queue(1, Some(source)).unwrap();
    assert_eq!(port.queue_id(), 1);
    let mut rx = Vec::new();
    assert_eq!(port.rx_burst(&mut cache, &mut rx, 8), 8);
    for (buf, frame) in rx.iter().zip(&injected) {
        assert_eq!(buf.data(), frame.as_slice());
    }
    for buf in &rx[3..] {
        assert_eq!(payload(buf.data()), b"generated");
        assert_eq!(nic.soft_rss().queue_of(buf.data()), (buf.rss_hash(), 1));
    }
    // The ring is empty now: the whole next burst is generated.
    assert_eq!(port.rx_burst(&mut cache, &mut rx, 4), 4);
    let stats = nic.stats().queues[1];
    assert_eq!((stats.rx_injected, stats.rx_generated), (3, 9));
    assert_eq!(port.source().map(|s| s.next), Some(9));
    cache.free_bulk(&mut rx);
    drop(port);
    drop(cache);
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn a_source_cannot_overfill_a_burst() {
    let nic = Uveth::new(config(1, 64)).unwrap();
    let pool = PacketPool::new(64, 256).unwrap();
    let mut cache = pool.cache(8);
    let flows = flows_of_queue(nic.soft_rss(), 0, 4);
    let source = FlowSource {
        rss: nic.soft_rss().clone(),
        flows,
        next: 0,
        extra: 3,
    };
    let mut port = nic.take_queue(0, Some(source)).unwrap();
    let mut rx = Vec::new();
    assert_eq!(port.rx_burst(&mut cache, &mut rx, 5), 5);
    assert_eq!(rx.len(), 5);
    assert_eq!(nic.stats().queues[0].rx_generated, 5);
    cache.free_bulk(&mut rx);
    assert_eq!(pool.in_use(), 0, "the excess went back to the pool");
}

#[test]
fn a_full_receive_ring_drops_and_counts() {
    let nic = Uveth::new(config(2, 4)).unwrap();
    let pool = PacketPool::new(64, 256).unwrap();
    let mut cache = pool.cache(8);
    let frames: Vec<Vec<u8>> = flows_of_queue(nic.soft_rss(), 0, 6)
        .into_iter()
        .map(|t| frame(t, b"x"))
        .collect();
    let results: Vec<_> = frames.iter().map(|f| nic.inject(f, &mut cache)).collect();
    assert_eq!(results[..4], [Ok(0), Ok(0), Ok(0), Ok(0)]);
    assert_eq!(
        results[4..],
        [
            Err(InjectError::RingFull { queue: 0 }),
            Err(InjectError::RingFull { queue: 0 })
        ]
    );
    let stats = nic.stats();
    assert_eq!(
        (stats.queues[0].rx_injected, stats.queues[0].rx_dropped_full),
        (4, 2)
    );
    assert_eq!(stats.queues[1], QueueStats::default());
    assert_eq!(pool.in_use(), 4, "dropped frames' buffers went back");
    assert_eq!(nic.drain_into(&mut cache), 4);
    assert_eq!(pool.in_use(), 0);
}

#[test]
fn no_buffer_and_oversized_frames_are_counted_drops() {
    let nic = Uveth::new(config(1, 16)).unwrap();
    let pool = PacketPool::new(2, 128).unwrap();
    let mut cache = pool.cache(0);
    let small = frame(tuple(1), b"");
    assert_eq!(nic.inject(&small, &mut cache), Ok(0));
    assert_eq!(nic.inject(&small, &mut cache), Ok(0));
    assert_eq!(
        nic.inject(&small, &mut cache),
        Err(InjectError::NoBuffer { queue: 0 })
    );
    let large = frame(tuple(1), &[0xab; 150]);
    assert_eq!(
        nic.inject(&large, &mut cache),
        Err(InjectError::FrameTooLarge {
            queue: 0,
            len: large.len(),
            data_room: 128
        })
    );
    let stats = nic.stats().queues[0];
    assert_eq!(
        (
            stats.rx_injected,
            stats.rx_dropped_no_buffer,
            stats.rx_dropped_oversize
        ),
        (2, 1, 1)
    );
    assert!(InjectError::NoBuffer { queue: 0 }
        .to_string()
        .contains("queue 0"));
    nic.drain_into(&mut cache);
    assert_eq!(pool.available(), 2);
}

#[test]
fn transmit_ring_takes_a_prefix_and_the_wire_side_reads_it_in_order() {
    let nic = Uveth::new(config(2, 8)).unwrap();
    let pool = PacketPool::new(64, 128).unwrap();
    let mut cache = pool.cache(8);
    let mut port = nic.take_queue::<NoSource>(1, None).unwrap();
    let mut pkts: Vec<PktBuf> = (0..12u8)
        .map(|n| {
            let mut buf = cache.alloc().unwrap();
            buf.write_frame(&[n; 60]).unwrap();
            buf
        })
        .collect();
    assert_eq!(port.tx_burst(&mut cache, &mut pkts), 8);
    assert_eq!(pkts.len(), 4, "what did not fit stays with the caller");
    assert_eq!(pkts[0].data()[0], 8);
    assert_eq!(port.tx_burst(&mut cache, &mut pkts), 0);

    let mut wire = Vec::new();
    assert_eq!(nic.take_transmitted(1, &mut wire, 5), 5);
    assert_eq!(
        nic.take_transmitted(0, &mut wire, 5),
        0,
        "nothing was sent on queue 0"
    );
    assert_eq!(nic.take_transmitted(9, &mut wire, 5), 0, "no such queue");
    assert_eq!(port.tx_burst(&mut cache, &mut pkts), 4);
    assert!(pkts.is_empty());
    assert_eq!(nic.take_transmitted(1, &mut wire, 100), 7);
    let order: Vec<u8> = wire.iter().map(|buf| buf.data()[0]).collect();
    assert_eq!(order, (0..12).collect::<Vec<u8>>());
    let stats = nic.stats().queues[1];
    assert_eq!(
        (stats.tx, stats.tx_dropped_full, stats.tx_queued),
        (12, 4 + 4, 0)
    );
    cache.free_bulk(&mut wire);
    assert_eq!(pool.in_use(), 0);
}

#[test]
fn a_queue_is_taken_once_until_released() {
    let nic = Uveth::new(config(2, 8)).unwrap();
    let first = nic.take_queue::<NoSource>(0, None).unwrap();
    assert_eq!(
        nic.take_queue::<NoSource>(0, None).unwrap_err(),
        UvethError::QueueTaken { queue: 0 }
    );
    assert!(
        nic.take_queue::<NoSource>(1, None).is_ok(),
        "other queues are free"
    );
    assert_eq!(
        nic.take_queue::<NoSource>(2, None).unwrap_err(),
        UvethError::QueueOutOfRange {
            queue: 2,
            queues: 2
        }
    );
    drop(first);
    assert!(
        nic.take_queue(0, Some(NoSource)).is_ok(),
        "released on drop"
    );
}

#[test]
fn nothing_leaks_after_draining() {
    let nic = Uveth::new(UvethConfig {
        queues: 4,
        rss_key: SYMMETRIC_KEY,
        ..UvethConfig::default()
    })
    .unwrap();
    let pool = PacketPool::new(1024, 256).unwrap();
    let mut cache = pool.cache(32);
    for n in 0..300 {
        nic.inject(&frame(tuple(n), b"left behind"), &mut cache)
            .unwrap();
    }
    let mut port = nic.take_queue::<NoSource>(2, None).unwrap();
    let mut rx = Vec::new();
    assert_eq!(port.rx_burst(&mut cache, &mut rx, 10), 10);
    // Echo what was received: it sits on the transmit ring, never taken by the wire side.
    assert_eq!(port.tx_burst(&mut cache, &mut rx), 10);
    assert!(pool.in_use() >= 300 - 10);
    let total = nic.stats().total();
    assert_eq!(
        nic.drain_into(&mut cache) as u64,
        total.rx_queued + total.tx_queued
    );
    drop(port);
    drop(cache);
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn injector_and_queue_owner_run_concurrently_without_loss() {
    const FRAMES: u32 = 20_000;
    let nic = Arc::new(Uveth::new(config(1, 256)).unwrap());
    let pool = PacketPool::new(1024, 256).unwrap();
    let injector = {
        let (nic, pool) = (Arc::clone(&nic), Arc::clone(&pool));
        thread::spawn(move || {
            let mut cache = pool.cache(32);
            let mut sent = 0;
            while sent < FRAMES {
                match nic.inject(&frame(tuple(sent), &sent.to_be_bytes()), &mut cache) {
                    Ok(_) => sent += 1,
                    Err(InjectError::RingFull { .. }) | Err(InjectError::NoBuffer { .. }) => {
                        thread::yield_now()
                    }
                    Err(other) => panic!("{other}"),
                }
            }
        })
    };
    let mut cache = pool.cache(32);
    let mut port = nic.take_queue::<NoSource>(0, None).unwrap();
    let mut rx = Vec::new();
    let mut next = 0u32;
    while next < FRAMES {
        if port.rx_burst(&mut cache, &mut rx, 32) == 0 {
            thread::yield_now();
        }
        for buf in rx.drain(..) {
            assert_eq!(
                payload(buf.data()),
                next.to_be_bytes(),
                "frames arrive in order, none lost"
            );
            next += 1;
            cache.free(buf);
        }
    }
    injector.join().unwrap();
    let stats = nic.stats().queues[0];
    assert_eq!(stats.rx_injected, u64::from(FRAMES));
    drop(cache);
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn nic_and_queues_cross_threads_as_the_engine_needs() {
    fn send_sync<T: Send + Sync>() {}
    fn queue_pair<T: QueuePair>() {}
    send_sync::<Uveth>();
    queue_pair::<flowsteer_nic::uveth::UvethQueue<NoSource>>();
    queue_pair::<flowsteer_nic::uveth::UvethQueue<Box<dyn FrameSource>>>();
    let nic = Uveth::new(UvethConfig::default()).unwrap();
    assert_eq!(
        (nic.queues(), nic.ring_size(), nic.mac()),
        (1, 1024, [2, 0, 0, 0, 0, 1])
    );
}
