//! `RingDevice`: an ethdev over rings that the test feeds and drains. A binary of its own (one EAL
//! per process). Needs root as `tests/eal.rs` (its EAL arguments are the shared test ones); the
//! engine's tests run the same device without root.
#![cfg(feature = "dpdk")]

use dpdk_sys::{eal, ethdev, ffi, pktmbuf_free_bulk, PktmbufPool, RingDevice};

fn eal_ready() -> bool {
    flowsteer_testrig::eal::eal_ready("dpdk-sys-ring-device", &[], |args| {
        eal::init(args).map_err(|e| e.to_string())?;
        Ok(eal::runtime_dir())
    })
}

#[test]
fn a_ring_device_receives_what_is_fed_and_sends_onto_its_transmit_ring() {
    if !eal_ready() {
        return;
    }
    let pool = PktmbufPool::new("t_ringdev_pool", 255, 0, 2048, ffi::SOCKET_ID_ANY).expect("pool");
    let (device, mut ends) = RingDevice::create("t0", 2, (64, 32)).expect("device");
    assert_eq!(ends.len(), 2);
    assert_eq!(device.name(), "net_ring_t0");
    assert_eq!(ethdev::name(device.port_id()).expect("name"), "net_ring_t0");
    ethdev::start(device.port_id(), 2, 2, 64, &pool).expect("the device starts");
    let port = device.port_id();

    // Fed on queue 1: received there, in order, and nowhere else.
    let mut fed = [std::ptr::null_mut(); 10];
    for m in &mut fed {
        *m = pool.alloc().expect("an mbuf").as_ptr();
    }
    assert_eq!(ends[1].rx_room(), 64);
    assert_eq!(ends[1].feed(&fed), 10);
    assert_eq!(ends[1].rx_room(), 54);
    let mut got = [std::ptr::null_mut(); 16];
    // SAFETY: this thread is each queue's only user.
    assert_eq!(unsafe { ethdev::rx_burst(port, 0, &mut got) }, 0);
    // SAFETY: as above.
    assert_eq!(unsafe { ethdev::rx_burst(port, 1, &mut got) }, 10);
    assert_eq!(got[..10], fed);

    // Sent on queue 0: on its transmit ring, which holds 32 at most.
    let mut sent = got[..10].to_vec();
    // SAFETY: as above; the mbufs are ours and the driver takes them.
    assert_eq!(unsafe { ethdev::tx_burst(port, 0, &mut sent) }, 10);
    let mut drained = [std::ptr::null_mut(); 16];
    assert_eq!(ends[1].drain_tx(&mut drained), 0);
    assert_eq!(ends[0].drain_tx(&mut drained), 10);
    assert_eq!(drained[..10], fed);

    // A full receive ring refuses the rest; what was fed and never received can be drained.
    let mut many = vec![std::ptr::null_mut(); 70];
    pool.alloc_bulk(&mut many[10..]).expect("60 more mbufs");
    many[..10].copy_from_slice(&fed);
    assert_eq!(ends[0].feed(&many), 64);
    assert_eq!(ends[0].rx_room(), 0);
    ethdev::stop(port).expect("stop");
    let mut back = vec![std::ptr::null_mut(); 80];
    // SAFETY: the device is stopped: no rx_burst runs on queue 0.
    assert_eq!(unsafe { ends[0].drain_rx(&mut back) }, 64);
    assert_eq!(back[..64], many[..64]);
    // SAFETY: every mbuf is ours again (drained, or refused by the ring), each freed once.
    unsafe {
        pktmbuf_free_bulk(&mut back[..64]);
        pktmbuf_free_bulk(&mut many[64..]);
    }
    assert_eq!(pool.available(), pool.size(), "every mbuf back");

    // Dropping the device removes the ethdev, then its rings.
    drop(device);
    drop(ends);
    assert!(ethdev::port_by_name("net_ring_t0").is_err());
    let (again, _ends) = RingDevice::create("t0", 1, (32, 32)).expect("the name is free");
    assert!(ethdev::name(again.port_id()).is_ok());
}

#[test]
fn a_ring_device_refuses_what_the_ring_driver_cannot_do() {
    if !eal_ready() {
        return;
    }
    let error = |name: &str, queues| {
        RingDevice::create(name, queues, (32, 32))
            .expect_err("refused")
            .to_string()
    };
    assert!(error("t1", 0).contains("takes 1..=16 queues, got 0"));
    assert!(error("t1", 17).contains("takes 1..=16 queues, got 17"));
    assert!(error("a_name_too_long_for_its_rings", 1).contains("rte_ring_create"));
    let (_device, _ends) = RingDevice::create("t2", 1, (32, 32)).expect("device");
    // The name is taken: the rings' names clash first.
    assert!(RingDevice::create("t2", 1, (32, 32)).is_err());
}
