//! A DPDK port's RSS as `DpdkPort::open_rss` sets it, checked against what the device reports
//! through DPDK's own calls: the key and the redirection table read back, and DPDK's software
//! Toeplitz (`rte_softrss`) over the same tuples. net_null emulates RSS (a 128-entry table and a
//! 40-byte key it stores and reports); net_ring has none. The EAL needs root: without it these
//! print "skipped: needs root" and pass, except under `CI=true`.
#![cfg(feature = "dpdk")]

use dpdk_sys::{eal, ethdev, ffi, rss};
use flowsteer_nic::dpdk::{reta_sizes, DpdkPort, DpdkPortError, RssRequest};
use flowsteer_nic::pool::PacketPool;
use flowsteer_nic::port::{Port, PortControl, QueuePair};
use flowsteer_nic::rss::{SoftRss, SYMMETRIC_KEY};
use flowsteer_nic::wire::{build_frame, FiveTuple, FrameSpec, IpPair};

/// The port whose RSS is set and checked.
const RSS_VDEV: &str = "net_null0";
/// A port whose table sizes are tried.
const REFUSING_VDEV: &str = "net_null1";
/// A port without RSS.
const PLAIN_VDEV: &str = "net_ring0";
/// A port without RSS whose frames come back (net_ring: what a queue sends, it receives).
const LOOP_VDEV: &str = "net_ring1";

fn eal_ready() -> bool {
    flowsteer_testrig::eal::eal_ready(
        "nic-dpdk-rss-test",
        &[RSS_VDEV, REFUSING_VDEV, PLAIN_VDEV, LOOP_VDEV],
        |args| {
            eal::init(args).map_err(|e| e.to_string())?;
            Ok(eal::runtime_dir())
        },
    )
}

/// A key no driver has by default: every byte different.
fn test_key() -> [u8; 40] {
    std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11))
}

fn v4(src: [u8; 4], dst: [u8; 4], src_port: u16, dst_port: u16, tcp: bool) -> FiveTuple {
    FiveTuple {
        ip: IpPair::V4 { src, dst },
        src_port,
        dst_port,
        proto: if tcp { 6 } else { 17 },
    }
}

#[test]
fn the_model_is_what_the_device_holds_and_hashes_as_dpdk_does() {
    if !eal_ready() {
        return;
    }
    let id = ethdev::port_by_name(RSS_VDEV).expect("net_null0");
    let pool = PacketPool::with_mbufs("t_rss_pool", 2047, 2048).expect("pool");
    // 32 entries over 3 queues on a device of 128: the device holds the table four times over.
    let request = RssRequest {
        key: test_key(),
        reta_size: 32,
    };
    let port = DpdkPort::open_rss(id, 3, (256, 256), pool.clone(), &request).expect("open");
    let model = port
        .rss()
        .expect("net_null hashes every type the model needs");

    // What the device reports, through DPDK's calls and not the port's.
    let held = ethdev::rss_hash_conf(id, 40).expect("hash conf");
    let table = ethdev::reta_query(id, 128).expect("reta");
    assert_eq!(held.key, request.key, "the device holds the key set");
    assert_eq!(model.toeplitz.key(), &request.key);
    assert_eq!(
        model.reta.entries(),
        &table[..],
        "the model's table is the device's"
    );
    assert_eq!(model.reta.queues(), 3);
    for (i, &queue) in table.iter().enumerate() {
        assert_eq!(usize::from(queue), (i % 32) % 3, "entry {i}");
    }
    let types = rss::flow_type_names(held.hash_types);
    for name in rss::L4_FLOW_TYPES.iter().chain(&["ipv4", "ipv6"]) {
        assert!(types.iter().any(|t| t == name), "{name} in {types:?}");
    }
    assert!(
        !types.iter().any(|t| t == "l2-payload" || t == "vxlan"),
        "only the modelled types are asked for: {types:?}"
    );

    // The model's hash is DPDK's Toeplitz over the same tuple and key, and its queue is the
    // device table's entry for that hash.
    for i in 0..500u32 {
        let b = i.to_be_bytes();
        let tuple = v4(
            [10, b[1], b[2], b[3]],
            [192, 0, 2, b[3] ^ 0x5a],
            1024 + i as u16,
            80,
            i % 2 == 0,
        );
        let IpPair::V4 { src, dst } = tuple.ip else {
            unreachable!()
        };
        let words = rss::ipv4_tuple(
            u32::from_be_bytes(src),
            u32::from_be_bytes(dst),
            tuple.src_port,
            tuple.dst_port,
        );
        let dpdk = rss::softrss(&words, &request.key).expect("softrss");
        let (hash, queue) = model.queue_of_tuple(&tuple);
        assert_eq!(hash, dpdk, "tuple {i}");
        assert_eq!(queue, table[hash as usize % table.len()], "tuple {i}");
    }

    let text = port.describe();
    for expected in [
        "RSS ipv4 ipv4-frag ipv4-tcp ipv4-udp ipv4-other ipv6 ipv6-frag ipv6-tcp ipv6-udp ipv6-other",
        "(RETA 128 entries: 32 entries 4 times, key 0b3055",
        "checksum offload: off",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text:?}");
    }

    // A failed queue's entries pointed at the survivors, round robin; the others kept.
    assert_eq!(port.redirect_queue(1, &[0, 2]), Ok(true));
    let redirected = ethdev::reta_query(id, 128).expect("reta");
    let mut to = [0, 2].iter().cycle();
    for (i, (&before, &after)) in table.iter().zip(&redirected).enumerate() {
        let expected = if before == 1 {
            *to.next().unwrap()
        } else {
            before
        };
        assert_eq!(after, expected, "entry {i}");
    }
    let mut cache = pool.cache(0);
    port.reclaim(&mut cache);
    assert_eq!(
        pool.available(),
        pool.capacity(),
        "the stopped device holds no mbuf"
    );
}

#[test]
fn a_table_size_the_device_cannot_hold_is_refused_with_the_sizes_it_can() {
    if !eal_ready() {
        return;
    }
    assert_eq!(reta_sizes(128, 2), [2, 4, 8, 16, 32, 64, 128]);
    assert_eq!(reta_sizes(128, 3), [4, 8, 16, 32, 64, 128]);
    assert!(reta_sizes(96, 1).is_empty(), "not a power of two");
    let id = ethdev::port_by_name(REFUSING_VDEV).expect("net_null1");
    let pool = PacketPool::with_mbufs("t_rss_refused", 1023, 2048).expect("pool");
    for asked in [256, 1, 48] {
        let request = RssRequest {
            key: SYMMETRIC_KEY,
            reta_size: asked,
        };
        let Err(e) = DpdkPort::open_rss(id, 2, (256, 256), pool.clone(), &request) else {
            panic!("a table of {asked} entries was taken");
        };
        assert!(
            matches!(e, DpdkPortError::RetaSize { asked: a, device: 128, queues: 2 } if a == asked),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!(
                "the device's redirection table has 128 entries; a table of 2..=128 entries (a \
                 power of two, at least the 2 queues) is repeated to fill it, got {asked}"
            )
        );
    }
    // The refusals configured nothing: the size the device takes still opens.
    let request = RssRequest {
        key: SYMMETRIC_KEY,
        reta_size: 128,
    };
    let port = DpdkPort::open_rss(id, 2, (256, 256), pool.clone(), &request).expect("open");
    assert_eq!(port.rss().expect("model").reta.size(), 128);
    port.reclaim(&mut pool.cache(0));
}

#[test]
fn a_device_without_rss_has_no_model_and_says_so() {
    if !eal_ready() {
        return;
    }
    let id = ethdev::port_by_name(PLAIN_VDEV).expect("net_ring0");
    let info = ethdev::info(id).expect("info");
    assert_eq!(
        (info.flow_type_rss_offloads, info.reta_size),
        (0, 0),
        "net_ring has no RSS"
    );
    let pool = PacketPool::with_mbufs("t_rss_none", 1023, 2048).expect("pool");
    let request = RssRequest {
        key: test_key(),
        reta_size: 4096,
    };
    let port = DpdkPort::open_rss(id, 1, (256, 256), pool.clone(), &request)
        .expect("no RSS is no error, whatever the table size");
    assert!(port.rss().is_none());
    let text = port.describe();
    assert!(
        text.contains(
            "no RSS (net_ring: flow_type_rss_offloads 0x0, RETA size 0): the driver fills the \
             queues, checksum offload: off"
        ),
        "{text}"
    );
    // The port works: a queue can be taken and polled.
    let mut queue = port.take_queue(0).expect("queue 0");
    let mut cache = pool.cache(8);
    let mut got = Vec::new();
    assert_eq!(queue.rx_burst(&mut cache, &mut got, 8), 0);
    drop(queue);
    port.reclaim(&mut cache);
}

#[test]
fn frames_without_the_devices_hash_get_the_software_one_and_a_delivered_hash_is_kept() {
    if !eal_ready() {
        return;
    }
    let id = ethdev::port_by_name(LOOP_VDEV).expect("net_ring1");
    let pool = PacketPool::with_mbufs("t_rss_loop", 1023, 2048).expect("pool");
    let request = RssRequest {
        key: test_key(),
        reta_size: 128,
    };
    let port = DpdkPort::open_rss(id, 1, (256, 256), pool.clone(), &request).expect("open");
    assert!(port.rss().is_none());
    let mut queue = port.take_queue(0).expect("queue 0");
    let mut cache = pool.cache(16);
    let symmetric = SoftRss::new(&SYMMETRIC_KEY, 1, 1).expect("model");

    let mut sent = Vec::new();
    let mut frames = Vec::new();
    for i in 0..16u16 {
        let tuple = v4(
            [10, 0, 0, i as u8],
            [10, 0, 1, 1],
            40000 + i,
            443,
            i % 2 == 0,
        );
        let mut bytes = [0u8; 128];
        let len = build_frame(
            &mut bytes,
            &FrameSpec {
                src_mac: [2, 0, 0, 0, 0, 1],
                dst_mac: [2, 0, 0, 0, 0, 2],
                vlan: None,
                tuple,
                tcp_flags: 0x10,
                payload: b"rss",
            },
        )
        .expect("frame");
        let mut buf = cache.alloc().expect("buffer");
        buf.write_frame(&bytes[..len]).expect("fits");
        frames.push(bytes[..len].to_vec());
        sent.push(buf);
    }
    assert_eq!(queue.tx_burst(&mut cache, &mut sent), 16);
    let mut got = Vec::new();
    assert_eq!(queue.rx_burst(&mut cache, &mut got, 64), 16);
    for (buf, frame) in got.iter().zip(&frames) {
        assert_eq!(buf.data(), &frame[..]);
        let (hash, _) = symmetric.queue_of(frame);
        assert_ne!(hash, 0);
        assert_eq!(
            buf.rss_hash(),
            hash,
            "the software hash of a frame without one"
        );
    }
    cache.free_bulk(&mut got);

    // An mbuf the driver hands over with a hash keeps it (net_ring passes the flags through).
    let mut buf = cache.alloc().expect("buffer");
    buf.write_frame(&frames[0]).expect("fits");
    let m = buf.into_mbuf();
    // SAFETY: m is owned here; the flag says the hash member is written, which it is.
    unsafe {
        (*m.as_ptr()).ol_flags |= ffi::RTE_MBUF_F_RX_RSS_HASH as u64;
        (*m.as_ptr()).__bindgen_anon_2.hash.rss = 0x1234_5678;
    }
    // SAFETY: the port is started and its queue 0 is polled by this thread only; m is owned.
    assert_eq!(unsafe { ethdev::tx_burst(id, 0, &mut [m.as_ptr()]) }, 1);
    assert_eq!(queue.rx_burst(&mut cache, &mut got, 64), 1);
    assert_eq!(got[0].rss_hash(), 0x1234_5678);
    cache.free_bulk(&mut got);
    drop(queue);
    port.reclaim(&mut cache);
    drop(cache);
    assert_eq!(pool.available(), pool.capacity());
}
