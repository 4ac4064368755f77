//! The pool in DPDK's memory: buffers that are mbufs, through the pool's caches, through a DPDK
//! port (`net_ring`, whose transmit ring is its receive ring) and through `DpdkPort`, the port
//! interface over it, without a copy; a pool split into a mempool per queue and a shared one
//! behind a two-queue `net_null` port, its threads registered as EAL lcores. The EAL needs
//! root: without it these print "skipped: needs root" and pass, except under `CI=true`.
#![cfg(feature = "dpdk")]

use std::ptr::NonNull;
use std::sync::{mpsc, Arc, Barrier};
use std::thread;

use dpdk_sys::{eal, ethdev, ffi, pktmbuf_mtod};
use flowsteer_nic::dpdk::DpdkPort;
use flowsteer_nic::pool::{PacketPool, PktBuf, Tier, Tiers};
use flowsteer_nic::port::{Port, PortControl, QueuePair};

const VDEV: &str = "net_ring0";
/// The port `DpdkPort` runs on (net_ring: what it sends on a queue it receives on the same one).
const PORT_VDEV: &str = "net_ring1";
/// A port that is left to fill up.
const VDEV_FULL: &str = "net_ring2";
/// A port whose receive queues make packets out of their own mempools and whose transmit frees
/// them (to the mempool each mbuf came from).
const NULL_VDEV: &str = "net_null0";
const BUFFERS: u32 = 1023;

fn eal_ready() -> bool {
    flowsteer_testrig::eal::eal_ready(
        "nic-mbuf-test",
        &[VDEV, PORT_VDEV, VDEV_FULL, NULL_VDEV],
        |args| {
            eal::init(args).map_err(|e| e.to_string())?;
            Ok(eal::runtime_dir())
        },
    )
}

fn frame(i: usize) -> Vec<u8> {
    (0..60 + i).map(|b| (b as u8) ^ (i as u8)).collect()
}

#[test]
fn every_buffer_is_an_mbuf_whose_data_is_the_frame() {
    if !eal_ready() {
        return;
    }
    let pool = PacketPool::with_mbufs("t_nic_layout", BUFFERS, 2048).expect("pool");
    assert_eq!((pool.capacity(), pool.available()), (BUFFERS, BUFFERS));
    assert!(pool.mempool().is_some());
    let mut cache = pool.cache(64);
    let mut bufs = Vec::new();
    assert_eq!(
        cache.alloc_bulk(&mut bufs, BUFFERS as usize + 5),
        BUFFERS as usize
    );
    assert!(cache.alloc().is_none(), "every buffer is out");
    let mut mbufs = Vec::new();
    for (i, mut buf) in bufs.drain(..).enumerate() {
        assert_eq!(buf.data_room(), 2048);
        buf.write_frame(&frame(i)).expect("fits");
        let data = buf.data().as_ptr();
        let m = buf.into_mbuf();
        // SAFETY: m is this buffer's mbuf, owned here.
        let (mtod, len) = unsafe { (pktmbuf_mtod(m.as_ptr()), (*m.as_ptr()).data_len) };
        assert_eq!(
            mtod.cast_const(),
            data,
            "buffer {i}: the mbuf's data is the frame"
        );
        assert_eq!(usize::from(len), 60 + i);
        mbufs.push(m);
    }
    for (i, m) in mbufs.into_iter().enumerate() {
        // SAFETY: an mbuf of this pool, owned here, one handle made.
        let buf = unsafe { PktBuf::from_mbuf(m) }.expect("the pool's form");
        assert_eq!(buf.data(), &frame(i)[..]);
        bufs.push(buf);
    }
    cache.free_bulk(&mut bufs);
    drop(cache);
    assert_eq!(pool.available(), BUFFERS);
    assert_eq!(pool.foreign_frees(), 0);
}

#[test]
fn a_buffer_of_another_pool_is_counted_not_taken() {
    if !eal_ready() {
        return;
    }
    let mbufs = PacketPool::with_mbufs("t_nic_foreign", 63, 256).expect("pool");
    let heap = PacketPool::new(63, 256).expect("heap pool");
    let (mut to_mbufs, mut to_heap) = (mbufs.cache(8), heap.cache(8));
    let from_heap = to_heap.alloc().expect("heap buffer");
    let from_mbufs = to_mbufs.alloc().expect("mbuf buffer");
    to_mbufs.free(from_heap);
    to_heap.free(from_mbufs);
    assert_eq!((mbufs.foreign_frees(), heap.foreign_frees()), (1, 1));
    assert_eq!((mbufs.in_use(), heap.in_use()), (1, 1));
}

#[test]
fn an_mbuf_in_another_form_is_refused_and_stays_the_callers() {
    if !eal_ready() {
        return;
    }
    let pool = PacketPool::with_mbufs("t_nic_form", 63, 256).expect("pool");
    let mut cache = pool.cache(8);
    let mut buf = cache.alloc().expect("buffer");
    buf.write_frame(&frame(0)).expect("fits");
    let m = buf.into_mbuf();
    // SAFETY: m is owned here; its offset is moved and put back before the pool sees it again.
    unsafe {
        (*m.as_ptr()).data_off -= 16;
        assert!(
            PktBuf::from_mbuf(m).is_none(),
            "data not at the headroom's end"
        );
        (*m.as_ptr()).data_off += 16;
        (*m.as_ptr()).nb_segs = 2;
        assert!(PktBuf::from_mbuf(m).is_none(), "two segments");
        (*m.as_ptr()).nb_segs = 1;
    }
    // SAFETY: as above, back in the pool's form.
    let buf = unsafe { PktBuf::from_mbuf(m) }.expect("the pool's form");
    cache.free(buf);
    drop(cache);
    assert_eq!(pool.available(), 63);
}

#[test]
fn frames_go_through_a_dpdk_port_and_back_without_a_copy() {
    if !eal_ready() {
        return;
    }
    const BURST: usize = 32;
    let pool = PacketPool::with_mbufs("t_nic_port", BUFFERS, 2048).expect("pool");
    let port = ethdev::port_by_name(VDEV).expect("the --vdev port");
    ethdev::start(port, 1, 1, 256, pool.mempool().expect("mbuf pool")).expect("port start");
    let mut cache = pool.cache(64);

    let mut sent_data = Vec::new();
    let mut tx: Vec<*mut ffi::rte_mbuf> = Vec::new();
    for i in 0..BURST {
        let mut buf = cache.alloc().expect("buffer");
        buf.write_frame(&frame(i)).expect("fits");
        sent_data.push(buf.data().as_ptr());
        tx.push(buf.into_mbuf().as_ptr());
    }
    // SAFETY: the port is started with tx queue 0, used by this thread only; tx holds owned
    // mbufs.
    let sent = unsafe { ethdev::tx_burst(port, 0, &mut tx) };
    assert_eq!(sent, BURST);

    let mut rx = [std::ptr::null_mut(); BURST * 2];
    let mut got = 0;
    for _ in 0..100 {
        // SAFETY: rx queue 0 of the started port, polled by this thread only.
        got += unsafe { ethdev::rx_burst(port, 0, &mut rx[got..]) };
        if got >= BURST {
            break;
        }
    }
    assert_eq!(got, BURST);
    let mut received = Vec::new();
    for (i, &m) in rx[..got].iter().enumerate() {
        // SAFETY: received from the port, so owned here; an mbuf of this pool.
        let buf = unsafe { PktBuf::from_mbuf(NonNull::new(m).expect("an mbuf")) }
            .expect("the pool's form");
        assert_eq!(buf.data(), &frame(i)[..], "frame {i}");
        assert_eq!(
            buf.data().as_ptr(),
            sent_data[i],
            "frame {i} was not copied"
        );
        received.push(buf);
    }
    cache.free_bulk(&mut received);
    drop(cache);
    ethdev::stop(port).expect("stop");
    assert_eq!(pool.available(), BUFFERS, "a buffer leaked");
}

#[test]
fn a_dpdk_port_sends_and_receives_the_pools_buffers_as_they_are() {
    if !eal_ready() {
        return;
    }
    const BURST: usize = 100;
    let pool = PacketPool::with_mbufs("t_nic_dpdkport", BUFFERS, 2048).expect("pool");
    let heap = PacketPool::new(8, 2048).expect("heap pool");
    assert!(
        DpdkPort::open(0, 1, 256, heap).is_err(),
        "a pool whose buffers are not mbufs is refused"
    );
    let id = ethdev::port_by_name(PORT_VDEV).expect("the --vdev port");
    let port = DpdkPort::open(id, 1, 256, pool.clone()).expect("open");
    assert_eq!(port.queues(), 1);
    assert!(port.describe().contains(PORT_VDEV), "{}", port.describe());
    let mut queue = port.take_queue(0).expect("queue 0");
    assert!(port.take_queue(0).is_err(), "one owner per queue");
    assert!(port.take_queue(1).is_err(), "no queue 1");

    let mut cache = pool.cache(64);
    let mut tx = Vec::new();
    let mut sent_data = Vec::new();
    for i in 0..BURST {
        let mut buf = cache.alloc().expect("buffer");
        buf.write_frame(&frame(i)).expect("fits");
        sent_data.push(buf.data().as_ptr());
        tx.push(buf);
    }
    // More than one driver call's worth: the port splits it.
    assert_eq!(queue.tx_burst(&mut cache, &mut tx), BURST);
    assert!(tx.is_empty(), "every buffer sent");

    let mut rx = Vec::new();
    for _ in 0..100 {
        let want = BURST - rx.len();
        queue.rx_burst(&mut cache, &mut rx, want);
        if rx.len() == BURST {
            break;
        }
    }
    assert_eq!(rx.len(), BURST);
    for (i, buf) in rx.iter().enumerate() {
        assert_eq!(buf.data(), &frame(i)[..], "frame {i}");
        assert_eq!(buf.data().as_ptr(), sent_data[i], "frame {i} was copied");
    }
    cache.free_bulk(&mut rx);
    assert_eq!(port.drops(), vec![vec![("rx_unusable", 0)]]);
    drop(queue);
    port.take_queue(0)
        .expect("a dropped queue can be taken again");
    port.reclaim(&mut cache);
    drop(cache);
    assert_eq!(
        pool.available(),
        BUFFERS,
        "the device's rings gave their mbufs back"
    );
}

#[test]
fn what_a_full_device_refuses_stays_the_callers_in_order() {
    if !eal_ready() {
        return;
    }
    const MANY: u32 = 8191;
    let pool = PacketPool::with_mbufs("t_nic_refused", MANY, 256).expect("pool");
    let id = ethdev::port_by_name(VDEV_FULL).expect("the --vdev port");
    let port = DpdkPort::open(id, 1, 256, pool.clone()).expect("open");
    let mut queue = port.take_queue(0).expect("queue 0");
    let mut cache = pool.cache(64);
    let mut tx = Vec::new();
    for i in 0..MANY as usize - 64 {
        let mut buf = cache.alloc().expect("buffer");
        buf.write_frame(&frame(i % 64)).expect("fits");
        tx.push(buf);
    }
    let offered = tx.len();
    // Nobody receives: the device's ring fills and it refuses the rest.
    let sent = queue.tx_burst(&mut cache, &mut tx);
    assert!(sent > 0 && sent < offered, "sent {sent} of {offered}");
    assert_eq!(tx.len(), offered - sent, "the refused stay");
    for (k, buf) in tx.iter().enumerate() {
        assert_eq!(
            buf.data(),
            &frame((sent + k) % 64)[..],
            "refused buffer {k} in order, intact"
        );
    }
    cache.free_bulk(&mut tx);
    let mut rx = Vec::new();
    while queue.rx_burst(&mut cache, &mut rx, 64) > 0 {
        cache.free_bulk(&mut rx);
    }
    drop(queue);
    port.reclaim(&mut cache);
    drop(cache);
    assert_eq!(pool.available(), MANY);
}

/// Two stack threads on a two-queue port over a pool of an L1 mempool per queue and a shared
/// one: each queue receives mbufs of its own L1 only; each thread hands half its burst to the
/// other, which sends those (the driver frees them to their mempool, through the thread's
/// per-lcore cache) and frees the rest through its pool cache (back to the sender's L1). When
/// the threads have left the EAL every mbuf is on its own mempool's ring: the per-lcore caches
/// were flushed, and every segment is full.
#[test]
fn each_receive_queue_fills_from_its_l1_mempool_and_every_mbuf_goes_home() {
    if !eal_ready() {
        return;
    }
    const BURST: usize = 32;
    const ROUNDS: usize = 50;
    let tiers = Tiers {
        queues: 2,
        per_queue: 1023,
        shared: 511,
        low_watermark: 64,
    };
    let pool = PacketPool::with_mbufs_tiered("t_nic_tiers", &tiers, 2048, 32).expect("pool");
    let l1: Vec<_> = (0..2)
        .map(|q| pool.mempool_for(Tier::Queue(q)).expect("an L1 mempool"))
        .collect();
    assert_ne!(l1[0].as_ptr(), l1[1].as_ptr(), "a mempool per queue");
    assert_eq!((l1[0].size(), l1[0].cache_size()), (1023, 32));
    assert_eq!(pool.mempool().expect("the shared mempool").size(), 511);
    assert_eq!(pool.mempools().count(), 3);

    let id = ethdev::port_by_name(NULL_VDEV).expect("the --vdev port");
    let port = Arc::new(DpdkPort::open(id, 2, 256, pool.clone()).expect("open"));
    let (to_1, from_0) = mpsc::channel::<Vec<PktBuf>>();
    let (to_0, from_1) = mpsc::channel::<Vec<PktBuf>>();
    let both_done = Arc::new(Barrier::new(2));
    let threads: Vec<_> = [(0u16, to_1, from_1), (1, to_0, from_0)]
        .into_iter()
        .map(|(q, send, recv)| {
            let (port, pool, both_done) = (port.clone(), pool.clone(), both_done.clone());
            thread::spawn(move || {
                let hold = port.enter_thread().expect("registered");
                assert!(hold.holds(), "a thread of its own gets an lcore");
                assert!(eal::lcore_id().is_some());
                let mut cache = pool.cache_for(Tier::Queue(q), 64);
                let mut queue = port.take_queue(q).expect("queue");
                let mut foreign_tiers = 0;
                for _ in 0..ROUNDS {
                    let mut rx = Vec::new();
                    while rx.len() < BURST {
                        let want = BURST - rx.len();
                        queue.rx_burst(&mut cache, &mut rx, want);
                    }
                    foreign_tiers += rx
                        .iter()
                        .filter(|b| pool.tier_of(b) != Some(Tier::Queue(q)))
                        .count();
                    let handed = rx.split_off(BURST / 2);
                    send.send(handed).expect("peer alive");
                    cache.free_bulk(&mut rx);
                    let mut theirs = recv.recv().expect("peer alive");
                    let mut tx = theirs.split_off(BURST / 4);
                    while !tx.is_empty() {
                        queue.tx_burst(&mut cache, &mut tx);
                    }
                    cache.free_bulk(&mut theirs);
                }
                // Nothing of the peer's arrives any more once both have received everything.
                both_done.wait();
                drop(queue);
                drop(cache);
                drop(hold);
                foreign_tiers
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("thread"), 0, "an mbuf of another mempool");
    }
    let mut cache = pool.cache(0);
    port.reclaim(&mut cache);
    drop(cache);
    for s in pool.segments() {
        assert_eq!(s.available, s.capacity, "{}", s.tier);
        assert_eq!(s.failures, 0, "{}", s.tier);
    }
    for mempool in pool.mempools() {
        assert_eq!(mempool.available(), mempool.size());
        assert_eq!(
            mempool.ring_count(),
            mempool.size(),
            "an lcore cache was left holding mbufs"
        );
    }
    assert_eq!(pool.foreign_frees(), 0);
}
