//! Every test that needs the EAL, in one binary because `rte_eal_init` runs once per process.
//! They need root (the EAL maps memory and opens /dev/ files even with `--no-huge`): without it
//! they print "skipped: needs root" and pass, except under `CI=true`, where they fail.
#![cfg(feature = "dpdk")]

use std::collections::HashMap;
use std::ffi::c_void;
use std::thread;

use dpdk_sys::{
    eal, ethdev, ffi, pktmbuf_append, pktmbuf_data, pktmbuf_free_bulk, pktmbuf_mtod, rss, Hash,
    HashConfig, MempoolCache, PktmbufPool, QsbrHash, Ring,
};

const VDEV: &str = "net_ring0";
/// A second vdev whose driver this crate does not link: it can only come from the EAL's plugin
/// directory, which shows that the dynamic EAL loads drivers without `-d`.
const PLUGIN_VDEV: &str = "net_null0";
/// A port of its own for the RSS calls (net_null keeps a key, flow types and a 128-entry table).
const RSS_VDEV: &str = "net_null1";

/// Starts the EAL once for the whole binary, with both vdevs. `false` means "skip": not root and
/// not CI.
fn eal_ready() -> bool {
    flowsteer_testrig::eal::eal_ready("dpdk-sys-test", &[VDEV, PLUGIN_VDEV, RSS_VDEV], |args| {
        eal::init(args).map_err(|e| e.to_string())?;
        Ok(eal::runtime_dir())
    })
}

#[test]
fn eal_init_runs_once_and_reports_pmd_dir() {
    if !eal_ready() {
        return;
    }
    assert!(eal::is_initialized());
    let again = eal::init(["--no-huge"]).expect_err("a second init must be refused");
    assert!(
        again.message().contains("already initialised"),
        "unexpected error: {again}"
    );
    let dir = eal::pmd_dir();
    assert!(
        std::path::Path::new(dir)
            .join("librte_net_ring.so")
            .exists(),
        "pmd_dir {dir:?} does not hold the ring PMD"
    );
    assert!(eal::tsc_hz() > 0, "the EAL measured no TSC frequency");
    ethdev::port_by_name(PLUGIN_VDEV).expect("the plugin-only vdev was probed");
    assert!(dpdk_sys::DPDK_VERSION.starts_with("22."));
}

#[test]
fn net_ring_port_loops_a_burst_back() {
    if !eal_ready() {
        return;
    }
    const BURST: usize = 32;
    let pool = PktmbufPool::new(
        "t_port_pool",
        1023,
        0,
        ffi::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
        -1,
    )
    .expect("mbuf pool");
    let port = ethdev::port_by_name(VDEV).expect("the vdev from --vdev is a port");
    ethdev::start(port, 1, 1, 256, &pool).expect("port start");

    let mut tx = [std::ptr::null_mut(); BURST];
    pool.alloc_bulk(&mut tx).expect("alloc burst");
    for (i, &m) in tx.iter().enumerate() {
        // A frame whose bytes encode its index, so a reordered or corrupted packet shows.
        let frame: Vec<u8> = (0..64 + i).map(|b| (b as u8) ^ (i as u8)).collect();
        // SAFETY: m was just allocated and is owned here.
        unsafe { pktmbuf_append(m, &frame) }.expect("append");
    }
    // SAFETY: the port is started with tx queue 0, used by this thread only; tx holds owned
    // mbufs.
    let sent = unsafe { ethdev::tx_burst(port, 0, &mut tx) };
    assert_eq!(sent, BURST, "net_ring took only {sent} of {BURST}");

    let mut rx = [std::ptr::null_mut(); BURST * 2];
    let mut got = 0;
    for _ in 0..100 {
        // SAFETY: rx queue 0 of the started port, polled by this thread only.
        got += unsafe { ethdev::rx_burst(port, 0, &mut rx[got..]) };
        if got >= BURST {
            break;
        }
    }
    assert_eq!(got, BURST, "received {got} of {BURST} sent packets");
    for (i, &m) in rx[..got].iter().enumerate() {
        // SAFETY: m was received, so it is owned here; no other reference to its data.
        let data = unsafe { pktmbuf_data(m) };
        let expected: Vec<u8> = (0..64 + i).map(|b| (b as u8) ^ (i as u8)).collect();
        assert_eq!(data, &expected[..], "packet {i} came back different");
    }
    let stats = ethdev::stats(port).expect("stats");
    assert_eq!(stats.opackets, BURST as u64);
    assert_eq!(stats.ipackets, BURST as u64);

    // SAFETY: every received mbuf is owned here and freed once.
    unsafe { pktmbuf_free_bulk(&mut rx[..got]) };
    ethdev::stop(port).expect("stop");
    assert_eq!(pool.in_use(), 0, "an mbuf leaked");
}

#[test]
fn ring_mpsc_bursts_keep_every_object_in_producer_order() {
    if !eal_ready() {
        return;
    }
    const PRODUCERS: usize = 2;
    const PER_PRODUCER: usize = 100_000;
    const BURST: usize = 32;
    let (producer, mut consumer) = Ring::mpsc("t_ring_mpsc", 1024).expect("ring");
    assert_eq!(producer.capacity(), 1024);

    thread::scope(|s| {
        for p in 0..PRODUCERS {
            let producer = producer.clone();
            s.spawn(move || {
                // Objects encode (producer, sequence) so the consumer can check order and loss.
                let mut next = 0usize;
                let mut burst = [std::ptr::null_mut::<c_void>(); BURST];
                while next < PER_PRODUCER {
                    let n = BURST.min(PER_PRODUCER - next);
                    for (k, slot) in burst[..n].iter_mut().enumerate() {
                        *slot = ((p << 32) | (next + k)) as *mut c_void;
                    }
                    let done = producer.enqueue_burst(&burst[..n]);
                    next += done;
                    if done == 0 {
                        thread::yield_now();
                    }
                }
            });
        }
        drop(producer);
        let mut expected = [0usize; PRODUCERS];
        let mut out = [std::ptr::null_mut::<c_void>(); BURST];
        let mut total = 0;
        while total < PRODUCERS * PER_PRODUCER {
            let n = consumer.dequeue_burst(&mut out);
            if n == 0 {
                thread::yield_now();
            }
            for &obj in &out[..n] {
                let v = obj as usize;
                let (p, seq) = (v >> 32, v & 0xffff_ffff);
                assert_eq!(seq, expected[p], "producer {p}: out of order or lost");
                expected[p] += 1;
            }
            total += n;
        }
        assert!(consumer.is_empty());
    });

    let (mut sp, mut sc) = Ring::spsc("t_ring_spsc", 8).expect("spsc ring");
    let objs: Vec<*mut c_void> = (1..=10usize).map(|v| v as *mut c_void).collect();
    assert_eq!(
        sp.enqueue_burst(&objs),
        8,
        "a full ring takes only its capacity"
    );
    let mut out = [std::ptr::null_mut(); 16];
    assert_eq!(sc.dequeue_burst(&mut out), 8);
    assert_eq!(&out[..8], &objs[..8]);
    assert!(
        Ring::mpsc("t_ring_mpsc2", 0).is_err(),
        "capacity 0 must be refused"
    );
}

fn key(i: u32) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..4].copy_from_slice(&i.to_le_bytes());
    k[36..].copy_from_slice(&(!i).to_le_bytes());
    k
}

#[test]
fn hash_lookup_bulk_finds_what_was_added() {
    if !eal_ready() {
        return;
    }
    let config = HashConfig {
        name: "t_hash",
        entries: 1024,
        key_len: 40,
        socket_id: -1,
        ext_table: false,
    };
    let hash = Hash::new(&config).expect("hash");
    for i in 0..100 {
        hash.add(&key(i), 1000 + i as usize).expect("add");
    }
    assert_eq!(hash.len(), 100);

    // 32 keys: even ones present (0..64 step 2), odd ones absent (1000+).
    let keys: Vec<[u8; 40]> = (0..32u32)
        .map(|i| {
            if i % 2 == 0 {
                key(i * 2)
            } else {
                key(1000 + i)
            }
        })
        .collect();
    let refs: Vec<&[u8; 40]> = keys.iter().collect();
    let mut data = [usize::MAX; 32];
    let hits = hash
        .lookup_bulk_data(&refs, &mut data)
        .expect("lookup_bulk_data");
    for (i, &value) in data.iter().enumerate() {
        let hit = hits & (1 << i) != 0;
        assert_eq!(hit, i % 2 == 0, "key {i}");
        if hit {
            assert_eq!(value, 1000 + i * 2);
        }
    }
    let mut positions = [0i32; 32];
    hash.lookup_bulk(&refs, &mut positions)
        .expect("lookup_bulk");
    assert!(positions.iter().step_by(2).all(|&p| p >= 0));
    assert!(positions.iter().skip(1).step_by(2).all(|&p| p == -2));

    let pos = hash
        .delete(&key(0))
        .expect("delete")
        .expect("key 0 was present");
    assert_eq!(hash.lookup(&key(0)).expect("lookup"), None);
    assert_eq!(hash.delete(&key(0)).expect("delete"), None);
    // SAFETY: no lookup runs concurrently on this table.
    unsafe { hash.free_position(pos) }.expect("free position");

    let wrong: [&[u8; 16]; 1] = [&[0; 16]];
    let err = hash
        .lookup_bulk_data(&wrong, &mut data)
        .expect_err("a 16-byte key must be refused");
    assert!(err.message().contains("40 bytes"), "{err}");
    assert!(hash.add(&[0; 8], 1).is_err());
    let too_many = vec![&keys[0]; 65];
    assert!(hash.lookup_bulk_data(&too_many, &mut [0; 65]).is_err());
    assert!(
        Hash::new(&config).is_err(),
        "a duplicate name must be refused"
    );
}

#[test]
fn qsbr_hash_reclaims_under_churn_with_concurrent_readers() {
    if !eal_ready() {
        return;
    }
    const ENTRIES: u32 = 256;
    let config = HashConfig {
        name: "t_qsbr",
        entries: ENTRIES,
        key_len: 40,
        socket_id: -1,
        ext_table: true,
    };
    let hash = QsbrHash::new(&config, 2).expect("qsbr hash");
    // Stable keys the readers must always find, whatever the churn does.
    for i in 0..64 {
        hash.add(&key(i), i as usize).expect("add stable");
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    thread::scope(|s| {
        for id in 0..2 {
            let (hash, stop) = (&hash, &stop);
            s.spawn(move || {
                let reader = hash.reader(id).expect("reader");
                let keys: Vec<[u8; 40]> = (0..32).map(key).collect();
                let refs: Vec<&[u8; 40]> = keys.iter().collect();
                let mut data = [0usize; 32];
                let mut rounds = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || rounds < 100 {
                    let hits = reader.lookup_bulk_data(&refs, &mut data).expect("lookup");
                    assert_eq!(hits, u32::MAX as u64, "a stable key went missing");
                    for (i, &d) in data.iter().enumerate() {
                        assert_eq!(d, i, "a stable key has a torn or foreign value");
                    }
                    reader.quiescent();
                    rounds += 1;
                }
            });
        }
        // Twenty times the capacity in inserts and deletes: without reclamation the table
        // would be full after ENTRIES - 64 of them.
        let mut live = HashMap::new();
        for i in 0..(ENTRIES * 20) {
            let k = key(10_000 + i);
            let mut tries = 0;
            // An insert may find every free slot still waiting for a grace period; the readers
            // report once per burst, so retrying soon succeeds.
            while let Err(e) = hash.add(&k, i as usize) {
                tries += 1;
                assert!(tries < 100_000, "insert never succeeded: {e}");
                thread::yield_now();
            }
            live.insert(i, k);
            if live.len() > 100 {
                let old = i - 100;
                let k = live.remove(&old).expect("tracked");
                assert!(hash.delete(&k).expect("delete"), "churn key {old} vanished");
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert!(
        hash.reader(5).is_err(),
        "an id above max_readers must be refused"
    );
    let r0 = hash.reader(0).expect("id 0 is free again");
    assert!(
        hash.reader(0).is_err(),
        "an id held by a live reader must be refused"
    );
    assert_eq!(r0.lookup(&key(7)).expect("lookup"), Some(7));
}

/// Bit-by-bit Toeplitz hash as the Microsoft RSS specification defines it, written
/// independently of DPDK's loop.
fn toeplitz(key: &[u8; 40], input: &[u8]) -> u32 {
    let mut result = 0u32;
    let mut window = u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
    let mut next_key_bit = 32;
    for &byte in input {
        for bit in (0..8).rev() {
            if byte & (1 << bit) != 0 {
                result ^= window;
            }
            let k = key[next_key_bit / 8] >> (7 - next_key_bit % 8) & 1;
            window = (window << 1) | u32::from(k);
            next_key_bit += 1;
        }
    }
    result
}

#[test]
fn softrss_matches_toeplitz_on_the_microsoft_vector() {
    if !eal_ready() {
        return;
    }
    // MICROSOFT_KEY, the RSS key of Microsoft's verification suite.
    const KEY: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];
    let src = u32::from_be_bytes([66, 9, 149, 187]);
    let dst = u32::from_be_bytes([161, 142, 100, 80]);
    let tuple = rss::ipv4_tuple(src, dst, 2794, 1766);
    assert_eq!(rss::softrss(&tuple, &KEY).expect("softrss"), 0x51cc_c178);

    let mut input = Vec::new();
    input.extend_from_slice(&src.to_be_bytes());
    input.extend_from_slice(&dst.to_be_bytes());
    input.extend_from_slice(&2794u16.to_be_bytes());
    input.extend_from_slice(&1766u16.to_be_bytes());
    assert_eq!(toeplitz(&KEY, &input), 0x51cc_c178);

    // The bulk entry point agrees with the single one and with the reference on varied tuples.
    let tuples: Vec<[u32; 3]> = (0..64u32)
        .map(|i| {
            let x = i.wrapping_mul(0x9e37_79b9);
            rss::ipv4_tuple(x, !x, (x >> 7) as u16, (x >> 13) as u16)
        })
        .collect();
    let flat: Vec<u32> = tuples.iter().flatten().copied().collect();
    let mut hashes = vec![0u32; tuples.len()];
    rss::softrss_bulk(&flat, 3, &KEY, &mut hashes).expect("softrss_bulk");
    for (t, &h) in tuples.iter().zip(&hashes) {
        let bytes: Vec<u8> = t.iter().flat_map(|w| w.to_be_bytes()).collect();
        assert_eq!(h, toeplitz(&KEY, &bytes));
        assert_eq!(h, rss::softrss(t, &KEY).expect("softrss"));
    }
    assert!(
        rss::softrss(&[0; 10], &KEY).is_err(),
        "10 words exceed a 40-byte key"
    );
    assert!(rss::softrss_bulk(&flat[..5], 3, &KEY, &mut hashes).is_err());
}

#[test]
fn mempool_errors_carry_dpdk_messages() {
    if !eal_ready() {
        return;
    }
    let pool = PktmbufPool::new("t_dup_pool", 63, 0, 2048, -1).expect("pool");
    let err = PktmbufPool::new("t_dup_pool", 63, 0, 2048, -1).expect_err("duplicate name");
    assert_eq!(err.op(), "rte_pktmbuf_pool_create");
    assert!(err.code() > 0);
    assert!(!err.message().is_empty());
    let mut all = vec![std::ptr::null_mut(); 63];
    pool.alloc_bulk(&mut all).expect("the whole pool");
    assert!(pool.alloc().is_none(), "an empty pool must give nothing");
    let mut more = [std::ptr::null_mut(); 1];
    assert!(pool.alloc_bulk(&mut more).is_err());
    // SAFETY: every mbuf was allocated above and is freed once.
    unsafe { pktmbuf_free_bulk(&mut all) };
    assert_eq!(pool.available(), 63);
}

/// Objects in the per-lcore cache of `lcore` of `pool` (a pool created with a cache).
fn lcore_cache_len(pool: &PktmbufPool, lcore: u32) -> u32 {
    assert!(pool.cache_size() > 0 && lcore < ffi::RTE_MAX_LCORE);
    // SAFETY: the pool is alive and has per-lcore caches, an array of RTE_MAX_LCORE; `len` of
    // the calling thread's own cache is read by that thread.
    unsafe { (*(*pool.as_ptr()).local_cache.add(lcore as usize)).len }
}

#[test]
fn user_cache_refills_flushes_and_gives_everything_back() {
    if !eal_ready() {
        return;
    }
    const N: u32 = 1023;
    const CACHE: u32 = 64;
    const BURST: usize = 32;
    let pool = PktmbufPool::new(
        "t_ucache_pool",
        N,
        0,
        ffi::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
        -1,
    )
    .expect("pool");
    assert_eq!((pool.size(), pool.cache_size()), (N, 0));
    assert!(MempoolCache::new(&pool, 0).is_err(), "a cache of 0 objects");
    assert!(
        MempoolCache::new(&pool, ffi::RTE_MEMPOOL_CACHE_MAX_SIZE + 1).is_err(),
        "a cache above RTE_MEMPOOL_CACHE_MAX_SIZE"
    );
    // Without per-lcore caches, what is available is what the ring holds.
    // A thread the EAL did not create: the user cache is its only cache.
    thread::scope(|s| {
        s.spawn(|| {
            assert_eq!(eal::lcore_id(), None);
            let mut cache = MempoolCache::new(&pool, CACHE).expect("cache");
            assert_eq!((cache.size(), cache.len()), (CACHE, 0));
            let mut held = Vec::new();
            let mut burst = [std::ptr::null_mut(); BURST];
            // The first get refills the cache with size + burst in one dequeue.
            cache.get_bulk(&mut burst).expect("get");
            assert_eq!(cache.len(), CACHE);
            assert_eq!(pool.available(), N - CACHE - BURST as u32);
            for &m in &burst {
                // SAFETY: m was just taken from the pool and is owned here.
                let (ours, theirs) = unsafe { (pktmbuf_mtod(m), ffi::dpdk_sys_pktmbuf_mtod(m)) };
                assert_eq!(ours, theirs.cast::<u8>());
                // SAFETY: the first data byte of an owned mbuf with its default headroom.
                unsafe { ours.write(0xa5) };
            }
            held.extend_from_slice(&burst);
            // The next ones come from the cache alone.
            cache.get_bulk(&mut burst).expect("get");
            assert_eq!(cache.len(), CACHE - BURST as u32);
            held.extend_from_slice(&burst);
            let distinct: std::collections::HashSet<_> = held.iter().collect();
            assert_eq!(distinct.len(), held.len(), "an object handed out twice");
            // All or nothing: more than the pool holds takes nothing.
            let mut too_many = vec![std::ptr::null_mut(); N as usize];
            assert!(cache.get_bulk(&mut too_many).is_err());
            assert_eq!(cache.len(), CACHE - BURST as u32);
            // Puts fill the cache up to 1.5 x its size, then flush it whole.
            // SAFETY: every entry was taken above, is owned here and is put back once.
            unsafe { cache.put_bulk(&held) };
            assert_eq!(cache.len(), CACHE - BURST as u32 + 2 * BURST as u32);
            assert_eq!(
                pool.available() + cache.len(),
                N,
                "objects are in the ring or the cache"
            );
            cache.flush();
            assert_eq!(cache.len(), 0);
            assert_eq!(pool.available(), N);
            cache.get_bulk(&mut burst).expect("get after flush");
            // Dropping the cache (with objects in it) flushes it.
            // SAFETY: the burst was just taken and is put back once.
            unsafe { cache.put_bulk(&burst) };
            assert!(!cache.is_empty());
        });
    });
    assert_eq!(
        pool.available(),
        N,
        "dropping the cache gave everything back"
    );
}

#[test]
fn a_registered_thread_gets_an_lcore_cache_and_flushes_it() {
    if !eal_ready() {
        return;
    }
    const N: u32 = 1023;
    const CACHE: u32 = 64;
    let pool = PktmbufPool::new(
        "t_lcore_pool",
        N,
        CACHE,
        ffi::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
        -1,
    )
    .expect("pool");
    thread::scope(|s| {
        s.spawn(|| {
            assert_eq!(eal::lcore_id(), None);
            let registration = eal::register_thread().expect("register");
            let lcore = registration.lcore();
            assert_eq!(eal::lcore_id(), Some(lcore));
            assert!(eal::register_thread().is_err(), "registered twice");
            let mut burst = [std::ptr::null_mut(); 32];
            pool.alloc_bulk(&mut burst).expect("alloc");
            // SAFETY: the burst was just allocated, is owned here and freed once.
            unsafe { pktmbuf_free_bulk(&mut burst) };
            // The lcore cache holds what was refilled and freed; it counts as available.
            assert_eq!(lcore_cache_len(&pool, lcore), CACHE + 32);
            assert_eq!(pool.available(), N);
            pool.flush_lcore_cache();
            assert_eq!(lcore_cache_len(&pool, lcore), 0);
            assert_eq!(pool.available(), N);
            drop(registration);
            assert_eq!(eal::lcore_id(), None);
            // Without an lcore id there is no cache to flush: a no-op.
            pool.flush_lcore_cache();
        });
    });
    assert_eq!(pool.available(), N);
}

#[test]
fn ports_are_listed_and_described() {
    if !eal_ready() {
        return;
    }
    let ring = ethdev::port_by_name(VDEV).expect("net_ring0");
    let null = ethdev::port_by_name(PLUGIN_VDEV).expect("net_null0");
    let ports = ethdev::ports().expect("ports");
    assert!(ports.contains(&ring) && ports.contains(&null), "{ports:?}");
    assert!(ports.windows(2).all(|w| w[0] < w[1]), "{ports:?} in order");
    assert_eq!(ethdev::name(ring).expect("name"), VDEV);
    assert_eq!(ethdev::name(null).expect("name"), PLUGIN_VDEV);

    // The details of net_null0 only: the net_ring port is configured and started by another
    // test meanwhile, and ethdev control calls on one port do not mix across threads.
    let info = ethdev::info(null).expect("dev info");
    assert_eq!(info.driver_name, "net_null");
    assert_eq!(info.max_rx_queues, 1024, "RTE_MAX_QUEUES_PER_PORT");
    assert_eq!(info.max_tx_queues, 1024);
    assert!(info.rx_desc_lim.max >= info.rx_desc_lim.min);
    assert_eq!(info.rx_desc_lim.align, 1);
    // net_null emulates RSS: a redirection table of 128 and the IP flow types.
    assert_eq!(info.reta_size, 128);
    let names = rss::flow_type_names(info.flow_type_rss_offloads);
    for expected in [
        "ipv4", "ipv4-tcp", "ipv4-udp", "ipv6", "ipv6-tcp", "ipv6-udp",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    assert!(info.min_mtu <= 1500 && 1500 <= info.max_mtu, "{info:?}");
    assert_eq!(ethdev::mtu(null).expect("mtu"), 1500);
    ethdev::mac_addr(null).expect("mac");
    ethdev::socket_id(null).expect("socket id");
    let link = ethdev::link_nowait(null).expect("link");
    assert_eq!(link.speed_mbps, 10_000, "net_null says 10G");
    assert!(link.full_duplex);

    // A port id with no device: DPDK's error, for each query.
    let none = ffi::RTE_MAX_ETHPORTS as u16 - 1;
    assert!(!ports.contains(&none));
    let err = ethdev::info(none).expect_err("no such port");
    assert_eq!(
        (err.op(), err.message()),
        ("rte_eth_dev_info_get", "No such device")
    );
    assert!(ethdev::name(none).is_err());
    assert!(ethdev::link_nowait(none).is_err());
    assert!(ethdev::mtu(none).is_err());
    assert!(ethdev::mac_addr(none).is_err());
    assert!(ethdev::socket_id(none).is_err());
}

#[test]
fn the_log_stream_is_set_before_init_only() {
    if !eal_ready() {
        return;
    }
    let err = eal::log_to_stderr().expect_err("after init");
    assert!(err.message().contains("before"), "{err}");
}

/// The layout the engine's DPDK buffers rely on (issue: mbufs end to end): with a 32-byte private
/// area the data of every mbuf starts 32 bytes into a cache line, 288 bytes after the mbuf, so a
/// 32-byte header in the headroom's last bytes shares the frame's first line; a private area of
/// 0 puts the data on a line boundary, the header in the line before.
#[test]
fn a_private_area_of_32_bytes_puts_the_data_32_bytes_into_a_line() {
    if !eal_ready() {
        return;
    }
    let data_room = ffi::RTE_MBUF_DEFAULT_BUF_SIZE as u16;
    for (name, private, offset, in_line) in [
        ("t_priv32", 32u16, 288usize, 32usize),
        ("t_priv0", 0, 256, 0),
    ] {
        let pool =
            PktmbufPool::with_private_area(name, 63, 0, private, data_room, -1).expect("pool");
        let mut held = Vec::new();
        while let Some(m) = pool.alloc() {
            let m = m.as_ptr();
            // SAFETY: an mbuf just taken from the pool, owned here.
            let (data, data_off) = unsafe { (pktmbuf_mtod(m), (*m).data_off) };
            assert_eq!(u32::from(data_off), ffi::RTE_PKTMBUF_HEADROOM, "{name}");
            assert_eq!(data as usize - m as usize, offset, "{name}");
            assert_eq!(data as usize % 64, in_line, "{name}");
            held.push(m);
        }
        assert_eq!(held.len(), 63, "{name}: every mbuf checked");
        // SAFETY: every mbuf was taken above, is owned here and listed once.
        unsafe { pktmbuf_free_bulk(&mut held) };
        assert_eq!(pool.available(), 63, "{name}");
    }
    assert!(
        PktmbufPool::with_private_area("t_priv_odd", 63, 0, 20, data_room, -1).is_err(),
        "a private area that is not a multiple of 8"
    );
}

#[test]
fn distributor_hands_every_mbuf_to_a_worker_and_refuses_bad_sizes() {
    use dpdk_sys::distributor::{self, Algorithm, BURST};
    if !eal_ready() {
        return;
    }
    assert!(distributor::create("t_dist_none", 0, Algorithm::Burst).is_err());
    assert!(distributor::create("t_dist_many", 64, Algorithm::Burst).is_err());
    assert!(distributor::create(&"x".repeat(27), 1, Algorithm::Burst).is_err());
    let pool = PktmbufPool::new("t_dist", 255, 0, 2048, -1).expect("pool");
    for (name, algorithm) in [
        ("t_dist_b", Algorithm::Burst),
        ("t_dist_s", Algorithm::Single),
    ] {
        let (mut core, mut workers) = distributor::create(name, 2, algorithm).expect(name);
        let mut mbufs: Vec<*mut ffi::rte_mbuf> = (0..200u32)
            .map(|i| {
                let m = pool.alloc().expect("mbuf").as_ptr();
                // SAFETY: an mbuf just allocated, owned here: its tag is a plain field.
                unsafe { (*m).__bindgen_anon_2.hash.usr = i % 7 };
                m
            })
            .collect();
        let done = std::sync::atomic::AtomicBool::new(false);
        let got: Vec<Vec<usize>> = thread::scope(|s| {
            let handles: Vec<_> = workers
                .drain(..)
                .map(|mut w| {
                    let done = &done;
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        let mut out = [std::ptr::null_mut(); BURST];
                        // SAFETY: nothing is returned.
                        unsafe { w.request(&[]) };
                        while !done.load(std::sync::atomic::Ordering::Acquire) {
                            if let Some(n) = w.poll(&mut out) {
                                mine.extend(out[..n].iter().map(|&m| m as usize));
                                // SAFETY: nothing is returned.
                                unsafe { w.request(&[]) };
                            }
                        }
                        mine
                    })
                })
                .collect();
            let mut pending = &mut mbufs[..];
            while !pending.is_empty() {
                // SAFETY: every pointer is an mbuf owned here, listed once.
                let taken = unsafe { core.process(pending) };
                pending = &mut pending[taken..];
            }
            core.flush();
            done.store(true, std::sync::atomic::Ordering::Release);
            // Answer the workers' last requests until they have seen `done`.
            while handles.iter().any(|h| !h.is_finished()) {
                // SAFETY: no mbuf is passed.
                unsafe { core.process(&mut []) };
            }
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<usize> = got.iter().flatten().copied().collect();
        all.sort_unstable();
        let mut sent: Vec<usize> = mbufs.iter().map(|&m| m as usize).collect();
        sent.sort_unstable();
        assert_eq!(all, sent, "{name}: every mbuf reached exactly one worker");
        assert_eq!(core.returned(&mut [std::ptr::null_mut(); 8]), 0, "{name}");
        // SAFETY: the workers gave the mbufs back by value (their addresses); all owned here.
        unsafe { pktmbuf_free_bulk(&mut mbufs) };
        assert_eq!(pool.available(), 255, "{name}");
    }
}

#[test]
fn event_dsw_delivers_to_the_linked_port_and_refuses_a_missing_queue() {
    use dpdk_sys::eventdev::{
        event_mbuf, event_sub_type, mbuf_event, DeviceConfig, EventDev, SchedType,
    };
    if !eal_ready() {
        return;
    }
    let mut dev = EventDev::create_vdev("event_dsw_t0", "").expect("event_dsw vdev");
    let info = dev.info().expect("info");
    assert_eq!(info.driver, "event_dsw");
    assert!(
        info.distributed(),
        "event_dsw schedules in the ports' calls"
    );
    dev.configure(DeviceConfig {
        queues: 2,
        ports: 2,
        events_limit: 1024,
        queue_flows: 1024,
        dequeue_depth: 32,
        enqueue_depth: 32,
    })
    .expect("configure");
    for q in 0..2 {
        dev.setup_queue(q, SchedType::Atomic, 1024).expect("queue");
        dev.setup_port(q, 1024, 32, 32).expect("port");
        dev.link(q, &[q]).expect("link");
    }
    assert!(dev.port(0).is_none(), "no port before start");
    dev.start().expect("start");
    assert!(dev.service().is_none(), "event_dsw needs no service");
    let mut p0 = dev.port(0).expect("port 0");
    let mut p1 = dev.port(1).expect("port 1");
    assert!(dev.port(1).is_none(), "a port is handed out once");
    // The device never reads through the pointers: plain numbers do.
    let events: Vec<_> = (1..=20usize)
        .map(|i| mbuf_event(1, i as u32, SchedType::Atomic, 7, i as *mut ffi::rte_mbuf))
        .collect();
    assert_eq!(p0.enqueue_new(&events), Some(20));
    let bad = [mbuf_event(2, 0, SchedType::Atomic, 0, std::ptr::null_mut())];
    assert_eq!(p0.enqueue_new(&bad), None, "queue 2 does not exist");
    let mut got = Vec::new();
    let mut out = vec![ffi::rte_event::default(); 32];
    for _ in 0..10_000 {
        p0.maintain();
        let n = p1.dequeue(&mut out);
        for e in &out[..n] {
            assert_eq!(event_sub_type(e), 7);
            got.push(event_mbuf(e) as usize);
        }
        assert_eq!(
            p0.dequeue(&mut out),
            0,
            "nothing is linked to port 0's queue"
        );
        if got.len() == 20 {
            break;
        }
    }
    got.sort_unstable();
    assert_eq!(got, (1..=20).collect::<Vec<_>>());
}

#[test]
fn rss_key_types_and_table_are_set_and_read_back() {
    if !eal_ready() {
        return;
    }
    let port = ethdev::port_by_name(RSS_VDEV).expect("net_null1");
    let pool = PktmbufPool::new(
        "t_rss_pool",
        1023,
        0,
        ffi::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
        -1,
    )
    .expect("mbuf pool");
    let tcp4 = rss::flow_type("ipv4-tcp").expect("ipv4-tcp");
    let udp6 = rss::flow_type("ipv6-udp").expect("ipv6-udp");
    assert_eq!(rss::flow_type("no-such-type"), None);
    assert_eq!(
        rss::flow_type_mask(&["ipv4-tcp", "ipv6-udp", "no-such-type"]),
        tcp4 | udp6
    );
    // Before the port is in RSS mode DPDK refuses to set its hash.
    let err = ethdev::rss_hash_update(port, None, tcp4).expect_err("not in RSS mode");
    assert_eq!(err.message(), "Operation not supported", "{err}");
    // A type net_null does not offer is dropped from what is configured.
    let gtpu = rss::flow_type("gtpu").expect("gtpu");
    let configured =
        ethdev::start_rss(port, (&[&pool; 4], 256), (4, 256), tcp4 | udp6 | gtpu).expect("start");
    assert_eq!(configured, tcp4 | udp6);

    // What is set is what is read.
    let key: Vec<u8> = (0..40).map(|i| i * 3 + 1).collect();
    ethdev::rss_hash_update(port, Some(&key), tcp4).expect("hash update");
    let conf = ethdev::rss_hash_conf(port, 40).expect("hash conf");
    assert_eq!((conf.key, conf.hash_types), (key.clone(), tcp4));
    let err = ethdev::rss_hash_update(port, None, gtpu).expect_err("gtpu is not offered");
    assert_eq!((err.op(), err.code()), ("rte_eth_dev_rss_hash_update", 22));
    let err = ethdev::rss_hash_update(port, Some(&[]), tcp4).expect_err("an empty key");
    assert!(err.message().contains("a key of 0 bytes"), "{err}");

    // 128 entries: two groups of 64 with their masks.
    let table: Vec<u16> = (0..128).map(|i| (i * 7 % 4) as u16).collect();
    ethdev::reta_update(port, &table).expect("reta update");
    assert_eq!(ethdev::reta_query(port, 128).expect("reta query"), table);
    let err = ethdev::reta_update(port, &table[..64]).expect_err("net_null takes 128 only");
    assert_eq!(
        (err.op(), err.message()),
        ("rte_eth_dev_rss_reta_update", "Invalid argument")
    );
    let mut beyond = table.clone();
    beyond[100] = 4;
    ethdev::reta_update(port, &beyond).expect_err("queue 4 of 4 queues");
    assert_eq!(ethdev::reta_query(port, 128).expect("reta query"), table);

    assert_eq!(ethdev::rx_offload_bit("RSS_HASH"), Some(1 << 19));
    assert_eq!(ethdev::rx_offload_bit("NO_SUCH_OFFLOAD"), None);
    ethdev::stop(port).expect("stop");
}
