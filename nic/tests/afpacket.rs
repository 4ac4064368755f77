//! The AF_PACKET port on real veth pairs: open errors, fanout modes, receive and transmit
//! integrity, ring blocks, counted drops and buffer conservation.
//!
//! Tests that need root create their own veth pair (both ends in this namespace, link level
//! only: no IP address, IPv6 address generation off) and delete it on exit, also on failure.
//! Without root or `ip` (iproute2) they print "skipped: needs root" (or `ip`) and pass, unless
//! `CI=true`, where they fail.

use std::collections::{HashMap, HashSet};
use std::mem::size_of;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use flowsteer_nic::afpacket::{
    AfPacketConfig, AfPacketError, AfPacketPort, AfPacketQueue, Fanout, RxRingKind, MAX_QUEUES,
};
use flowsteer_nic::pool::{PacketPool, PktBuf, PoolCache};
use flowsteer_nic::port::QueuePair;
use flowsteer_nic::wire::{build_frame, FiveTuple, FrameSpec, IP_PROTO_UDP};
use flowsteer_testrig::net::{ip, mac_text, unique_name, Veth};
use flowsteer_testrig::{skip_without_root_and, IP};

const PEER_MAC: [u8; 6] = [0x02, 0x66, 0x73, 0, 0, 0x02];
const PORT_MAC: [u8; 6] = [0x02, 0x66, 0x73, 0, 0, 0x01];
const MAGIC: &[u8; 4] = b"FSAP";
/// Offset of the UDP payload in an untagged IPv4 frame.
const PAYLOAD_OFFSET: usize = 14 + 20 + 8;
const DEADLINE: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Environment

/// True when the test must not run: it makes a veth pair, which needs root and `ip`. Outside CI
/// it prints why; under `CI=true` it fails instead.
fn skip_without_a_veth() -> bool {
    skip_without_root_and(&[IP])
}

/// A veth pair named uniquely for this process and test, both ends in this namespace, link
/// level only (no IPv6 link-local address: the link carries only the test's frames), the port's
/// end `a` with [`PORT_MAC`], the peer's `b` with [`PEER_MAC`]; both up unless `up` is false.
/// Deleted on drop, also when the test panics.
fn veth(up: bool) -> Veth {
    let id = unique_name("fsap");
    let veth = Veth::new(format!("{id}a"), format!("{id}b"));
    for (end, mac) in [(&veth.a, PORT_MAC), (&veth.b, PEER_MAC)] {
        ip(&["link", "set", "dev", end, "addrgenmode", "none"]);
        ip(&["link", "set", "dev", end, "address", &mac_text(mac)]);
        if up {
            ip(&["link", "set", "dev", end, "up"]);
        }
    }
    veth
}

/// A plain AF_PACKET socket on the peer end: sends frames and receives what the port sent.
struct Peer {
    fd: OwnedFd,
}

impl Peer {
    fn open(interface: &str) -> Peer {
        let name = std::ffi::CString::new(interface).unwrap();
        // SAFETY: plain calls with a valid C string and owned descriptors.
        unsafe {
            let ifindex = libc::if_nametoindex(name.as_ptr());
            assert_ne!(ifindex, 0, "peer interface {interface} exists");
            let raw = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from((libc::ETH_P_ALL as u16).to_be()),
            );
            assert!(raw >= 0, "peer socket: {}", std::io::Error::last_os_error());
            let fd = OwnedFd::from_raw_fd(raw);
            // PACKET_IGNORE_OUTGOING: the peer does not see its own frames.
            let one: libc::c_int = 1;
            let rc = libc::setsockopt(
                raw,
                libc::SOL_PACKET,
                23,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            );
            assert_eq!(rc, 0, "PACKET_IGNORE_OUTGOING");
            // Room for every frame a test sends before it reads.
            let rcvbuf: libc::c_int = 16 << 20;
            let rc = libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&rcvbuf as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            );
            assert_eq!(rc, 0, "SO_RCVBUFFORCE");
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
            addr.sll_ifindex = ifindex as i32;
            let rc = libc::bind(
                raw,
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            );
            assert_eq!(rc, 0, "peer bind: {}", std::io::Error::last_os_error());
            Peer { fd }
        }
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: `frame` is valid for its length; the socket is bound.
        let rc = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(
            rc,
            frame.len() as isize,
            "peer send: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Frames received until `count` arrived or the deadline passed.
    fn receive(&self, count: usize) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let deadline = Instant::now() + DEADLINE;
        let mut buf = vec![0u8; 65536];
        while frames.len() < count && Instant::now() < deadline {
            // SAFETY: `buf` is writable for its length.
            let rc = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if rc > 0 {
                frames.push(buf[..rc as usize].to_vec());
            } else {
                thread::sleep(Duration::from_millis(1));
            }
        }
        frames
    }
}

// ---------------------------------------------------------------------------------------------
// Frames

/// An IPv4/UDP frame of flow `flow` carrying sequence number `seq`, `len` bytes long (at least
/// 60), optionally with an 802.1Q tag.
fn test_frame(flow: u16, seq: u32, len: usize, vlan: Option<u16>) -> Vec<u8> {
    let header = PAYLOAD_OFFSET + if vlan.is_some() { 4 } else { 0 };
    let mut payload = vec![0u8; len.saturating_sub(header).max(8)];
    payload[..4].copy_from_slice(MAGIC);
    payload[4..8].copy_from_slice(&seq.to_be_bytes());
    for (i, byte) in payload.iter_mut().enumerate().skip(8) {
        *byte = (i as u32 ^ seq) as u8;
    }
    let spec = FrameSpec {
        src_mac: PEER_MAC,
        dst_mac: PORT_MAC,
        vlan,
        tuple: FiveTuple::v4(
            IP_PROTO_UDP,
            Ipv4Addr::new(198, 18, 0, 2),
            20_000 + flow,
            Ipv4Addr::new(198, 18, 0, 1),
            7,
        ),
        tcp_flags: 0,
        payload: &payload,
    };
    let mut frame = vec![0u8; len.max(60) + 64];
    let built = build_frame(&mut frame, &spec).expect("build a test frame");
    frame.truncate(built);
    frame
}

/// The sequence number of a test frame, `None` for anything else on the link.
fn seq_of(frame: &[u8]) -> Option<u32> {
    let offset = if frame.get(12..14) == Some(&[0x81, 0x00]) {
        PAYLOAD_OFFSET + 4
    } else {
        PAYLOAD_OFFSET
    };
    if frame.get(offset..offset + 4)? != MAGIC {
        return None;
    }
    let bytes = frame.get(offset + 4..offset + 8)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// The UDP source port of an untagged test frame (its flow).
fn flow_of(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[34], frame[35]]) - 20_000
}

// ---------------------------------------------------------------------------------------------
// Port helpers

fn config(interface: &str, queues: u16, fanout: Fanout) -> AfPacketConfig {
    AfPacketConfig {
        interface: interface.to_owned(),
        queues,
        fanout,
        ..AfPacketConfig::default()
    }
}

/// Both receive ring kinds: every receive test runs on each.
const KINDS: [RxRingKind; 2] = [RxRingKind::Frames, RxRingKind::Blocks];

fn ring_config(kind: RxRingKind, interface: &str, queues: u16, fanout: Fanout) -> AfPacketConfig {
    AfPacketConfig {
        rx_ring: kind,
        ..config(interface, queues, fanout)
    }
}

/// Polls every queue until `count` test frames arrived or the deadline passed; returns each
/// queue's buffers (everything received, test frames or not).
fn receive_all(
    queues: &mut [AfPacketQueue],
    cache: &mut PoolCache,
    count: usize,
    max: usize,
) -> Vec<Vec<PktBuf>> {
    let mut got: Vec<Vec<PktBuf>> = queues.iter().map(|_| Vec::new()).collect();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut idle = true;
        for (queue, out) in queues.iter_mut().zip(got.iter_mut()) {
            if queue.rx_burst(cache, out, max) > 0 {
                idle = false;
            }
        }
        let test_frames: usize = got
            .iter()
            .flatten()
            .filter(|buf| seq_of(buf.data()).is_some())
            .count();
        if test_frames >= count || Instant::now() >= deadline {
            return got;
        }
        if idle {
            thread::sleep(Duration::from_millis(1));
        }
    }
}

fn free_all(cache: &mut PoolCache, bufs: Vec<Vec<PktBuf>>) {
    for mut queue in bufs {
        cache.free_bulk(&mut queue);
    }
}

// ---------------------------------------------------------------------------------------------
// Open errors

#[test]
fn invalid_names_are_refused_before_any_system_call() {
    for (name, reason) in [
        ("", "empty"),
        ("sixteen-bytes-xx", "longer than 15 bytes"),
        ("a/b", "'/'"),
        ("a b", "whitespace"),
        ("nul\0x", "NUL"),
        ("..", "path component"),
    ] {
        let error = AfPacketPort::open(config(name, 1, Fanout::Hash)).unwrap_err();
        assert!(
            matches!(&error, AfPacketError::InvalidName { interface, .. } if interface == name),
            "{name:?}: {error:?}"
        );
        let text = error.to_string();
        assert!(text.contains(reason), "{name:?}: {text}");
        assert!(text.starts_with("afpacket: "), "{text}");
    }
}

#[test]
fn a_missing_interface_is_named_in_the_error() {
    let name = format!("fsapnone{}", std::process::id() % 10000);
    let error = AfPacketPort::open(config(&name, 1, Fanout::Hash)).unwrap_err();
    assert_eq!(
        error,
        AfPacketError::InterfaceMissing {
            interface: name.clone()
        }
    );
    let text = error.to_string();
    assert!(
        text.contains(&name) && text.contains("does not exist"),
        "{text}"
    );
    assert!(text.contains("ip link"), "{text}");
}

#[test]
fn out_of_range_values_are_refused_on_an_existing_interface() {
    // `lo` exists and is up in every namespace this runs in; the values are checked before any
    // privileged call, so this needs no root.
    let base = config("lo", 1, Fanout::Hash);
    let cases: Vec<(AfPacketConfig, &str)> = vec![
        (
            AfPacketConfig {
                queues: 0,
                ..base.clone()
            },
            "queues must be 1..=256, got 0",
        ),
        (
            AfPacketConfig {
                queues: MAX_QUEUES + 1,
                ..base.clone()
            },
            "queues must be 1..=256, got 257",
        ),
        (
            AfPacketConfig {
                block_size: 10_000,
                ..base.clone()
            },
            "block_size must be a power of two",
        ),
        (
            AfPacketConfig {
                block_size: 1024,
                ..base.clone()
            },
            "got 1024",
        ),
        (
            AfPacketConfig {
                block_size: 1 << 25,
                ..base.clone()
            },
            "block_size",
        ),
        (
            AfPacketConfig {
                blocks: 1,
                ..base.clone()
            },
            "blocks must be 2..=4096, got 1",
        ),
        (
            AfPacketConfig {
                blocks: 5000,
                ..base.clone()
            },
            "blocks must be 2..=4096, got 5000",
        ),
        (
            AfPacketConfig {
                block_timeout_ms: 0,
                ..base.clone()
            },
            "block_timeout_ms must be 1..=10000, got 0",
        ),
        (
            AfPacketConfig {
                frames: 8,
                ..base.clone()
            },
            "frames must be a power of two in 16..=1048576, got 8",
        ),
        (
            AfPacketConfig {
                frames: 1000,
                ..base.clone()
            },
            "frames must be a power of two in 16..=1048576, got 1000",
        ),
        (
            AfPacketConfig {
                frames: 1 << 21,
                ..base.clone()
            },
            "frames must be a power of two in 16..=1048576, got 2097152",
        ),
        (
            AfPacketConfig {
                queues: 256,
                block_size: 1 << 24,
                blocks: 4096,
                ..base.clone()
            },
            "queues × block_size × blocks must be at most",
        ),
    ];
    for (cfg, expected) in cases {
        let error = AfPacketPort::open(cfg.clone()).unwrap_err();
        let text = error.to_string();
        assert!(text.contains(expected), "{cfg:?}: {text}");
    }
    // Valid values, but loopback carries no Ethernet frames.
    let error = AfPacketPort::open(base).unwrap_err();
    assert!(
        matches!(
            error,
            AfPacketError::NotEthernet {
                hardware_type: 772,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn a_down_interface_is_refused_with_the_command_that_fixes_it() {
    if skip_without_a_veth() {
        return;
    }
    let veth = veth(false);
    let error = AfPacketPort::open(config(&veth.a, 1, Fanout::Hash)).unwrap_err();
    assert_eq!(
        error,
        AfPacketError::InterfaceDown {
            interface: veth.a.clone()
        }
    );
    let text = error.to_string();
    assert!(text.contains("is down"), "{text}");
    assert!(
        text.contains(&format!("ip link set {} up", veth.a)),
        "{text}"
    );
}

#[test]
fn a_block_too_small_for_the_mtu_is_refused() {
    if skip_without_a_veth() {
        return;
    }
    let veth = veth(true);
    ip(&["link", "set", "dev", &veth.a, "mtu", "9000"]);
    let cfg = AfPacketConfig {
        block_size: 4096,
        ..ring_config(RxRingKind::Blocks, &veth.a, 1, Fanout::Hash)
    };
    let error = AfPacketPort::open(cfg).unwrap_err();
    assert!(
        matches!(
            error,
            AfPacketError::BlockTooSmall {
                block_size: 4096,
                mtu: 9000,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn a_frame_ring_sizes_its_slots_by_the_mtu_and_bounds_its_memory() {
    if skip_without_a_veth() {
        return;
    }
    let veth = veth(true);
    for end in [&veth.a, &veth.b] {
        ip(&["link", "set", "dev", end, "mtu", "9000"]);
    }
    // 8 queues × 2^20 slots × 16 KiB is far beyond the bound: refused before any socket.
    let cfg = AfPacketConfig {
        frames: 1 << 20,
        ..ring_config(RxRingKind::Frames, &veth.a, 8, Fanout::Hash)
    };
    let error = AfPacketPort::open(cfg).unwrap_err();
    assert_eq!(
        error,
        AfPacketError::FrameRingMemory {
            queues: 8,
            frames: 1 << 20,
            frame_size: 16384
        }
    );
    assert!(
        error.to_string().contains("got 8 × 1048576 × 16384"),
        "{error}"
    );

    // 16 slots of 16 KiB: a 9014-byte frame fits one slot and arrives whole.
    let cfg = AfPacketConfig {
        frames: 16,
        ..ring_config(RxRingKind::Frames, &veth.a, 1, Fanout::Hash)
    };
    let port = AfPacketPort::open(cfg).unwrap();
    assert_eq!(port.rx_ring(), RxRingKind::Frames);
    assert_eq!(port.ring_frames(), Some(16));
    assert_eq!(port.ring_bytes(), 16 * 16384);
    let pool = PacketPool::new(16, 9100).unwrap();
    let mut cache = pool.cache(4);
    let mut queue = port.take_queue(0).unwrap();
    let peer = Peer::open(&veth.b);
    let jumbo = test_frame(3, 1, 9014, None);
    assert_eq!(jumbo.len(), 9014);
    peer.send(&jumbo);
    let got = receive_all(std::slice::from_mut(&mut queue), &mut cache, 1, 8);
    let frames: Vec<&PktBuf> = got[0]
        .iter()
        .filter(|b| seq_of(b.data()).is_some())
        .collect();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].data(), &jumbo[..]);
    assert_eq!(port.stats().queues[0].rx_dropped_oversize, 0);
    free_all(&mut cache, got);
    drop(queue);
    drop(cache);
    assert_eq!(pool.available(), pool.capacity());
}

// ---------------------------------------------------------------------------------------------
// Port properties and queue ownership

#[test]
fn the_port_reports_the_interface_and_hands_each_queue_to_one_owner() {
    if skip_without_a_veth() {
        return;
    }
    let veth = veth(true);
    let port = AfPacketPort::open(config(&veth.a, 2, Fanout::Lb)).unwrap();
    assert_eq!(port.mac(), PORT_MAC);
    assert_eq!(port.mtu(), 1500);
    assert_eq!(port.queues(), 2);
    assert_eq!(port.interface(), veth.a);
    assert_ne!(port.ifindex(), 0);
    assert_eq!(port.fanout(), Fanout::Lb);

    let q0 = port.take_queue(0).unwrap();
    assert_eq!(q0.queue_id(), 0);
    assert_eq!(
        port.take_queue(0).unwrap_err(),
        AfPacketError::QueueTaken { queue: 0 }
    );
    assert_eq!(
        port.take_queue(2).unwrap_err(),
        AfPacketError::QueueOutOfRange {
            queue: 2,
            queues: 2
        }
    );
    drop(q0);
    let again = port.take_queue(0).unwrap();
    assert_eq!(again.queue_id(), 0);

    // Two ports on one interface get two groups: neither receives the other's share.
    let other = AfPacketPort::open(config(&veth.a, 1, Fanout::Lb)).unwrap();
    assert_ne!(other.fanout_group(), port.fanout_group());
}

// ---------------------------------------------------------------------------------------------
// Receive

#[test]
fn lb_fanout_delivers_every_frame_once_over_both_queues_intact() {
    if skip_without_a_veth() {
        return;
    }
    for kind in KINDS {
        lb_fanout_delivers_every_frame_once_over_both_queues_intact_on(kind);
    }
}

fn lb_fanout_delivers_every_frame_once_over_both_queues_intact_on(kind: RxRingKind) {
    let veth = veth(true);
    let port = AfPacketPort::open(ring_config(kind, &veth.a, 2, Fanout::Lb)).unwrap();
    let pool = PacketPool::new(1024, 2048).unwrap();
    let mut cache = pool.cache(64);
    let mut queues = vec![port.take_queue(0).unwrap(), port.take_queue(1).unwrap()];
    let peer = Peer::open(&veth.b);

    let count = 300u32;
    let sent: Vec<Vec<u8>> = (0..count)
        .map(|seq| {
            let vlan = (seq % 10 == 3).then_some(7);
            test_frame((seq % 5) as u16, seq, 60 + (seq as usize * 37) % 1400, vlan)
        })
        .collect();
    for frame in &sent {
        peer.send(frame);
    }
    let got = receive_all(&mut queues, &mut cache, count as usize, 32);

    let mut seen = HashSet::new();
    for (q, bufs) in got.iter().enumerate() {
        let test_frames = bufs.iter().filter(|b| seq_of(b.data()).is_some()).count();
        assert!(
            test_frames > 0,
            "queue {q} received no frame under lb fanout"
        );
        for buf in bufs {
            let Some(seq) = seq_of(buf.data()) else {
                continue;
            };
            assert!(seen.insert(seq), "frame {seq} received twice");
            assert_eq!(buf.data(), &sent[seq as usize][..], "frame {seq} bytes");
        }
    }
    assert_eq!(seen.len(), count as usize, "every frame arrives");

    let stats = port.stats();
    let received: usize = got.iter().map(Vec::len).sum();
    assert_eq!(stats.total().rx, received as u64);
    assert_eq!(stats.total().kernel_drops, 0);
    assert_eq!(stats.total().rx_dropped_no_buffer, 0);
    assert_eq!(stats.total().rx_dropped_oversize, 0);

    free_all(&mut cache, got);
    drop(queues);
    drop(cache);
    assert_eq!(
        pool.available(),
        pool.capacity(),
        "every buffer back in the pool"
    );
}

#[test]
fn hash_fanout_keeps_each_flow_on_one_queue_with_its_hash() {
    if skip_without_a_veth() {
        return;
    }
    for kind in KINDS {
        hash_fanout_keeps_each_flow_on_one_queue_with_its_hash_on(kind);
    }
}

fn hash_fanout_keeps_each_flow_on_one_queue_with_its_hash_on(kind: RxRingKind) {
    let veth = veth(true);
    let port = AfPacketPort::open(ring_config(kind, &veth.a, 2, Fanout::Hash)).unwrap();
    let pool = PacketPool::new(1024, 2048).unwrap();
    let mut cache = pool.cache(64);
    let mut queues = vec![port.take_queue(0).unwrap(), port.take_queue(1).unwrap()];
    let peer = Peer::open(&veth.b);

    let flows = 16u16;
    let per_flow = 20u32;
    let count = u32::from(flows) * per_flow;
    for seq in 0..count {
        peer.send(&test_frame((seq % u32::from(flows)) as u16, seq, 100, None));
    }
    let got = receive_all(&mut queues, &mut cache, count as usize, 64);

    let mut queue_of_flow: HashMap<u16, usize> = HashMap::new();
    let mut hash_of_flow: HashMap<u16, u32> = HashMap::new();
    let mut total = 0;
    for (q, bufs) in got.iter().enumerate() {
        for buf in bufs.iter().filter(|b| seq_of(b.data()).is_some()) {
            total += 1;
            let flow = flow_of(buf.data());
            let first_queue = *queue_of_flow.entry(flow).or_insert(q);
            assert_eq!(
                first_queue, q,
                "flow {flow} on queues {first_queue} and {q}"
            );
            assert_ne!(buf.rss_hash(), 0, "the kernel's flow hash is set");
            let first_hash = *hash_of_flow.entry(flow).or_insert(buf.rss_hash());
            assert_eq!(first_hash, buf.rss_hash(), "flow {flow} keeps one hash");
        }
    }
    assert_eq!(total, count as usize);
    assert_eq!(queue_of_flow.len(), flows as usize);
    let distinct: HashSet<u32> = hash_of_flow.values().copied().collect();
    assert!(distinct.len() > 1, "different flows hash differently");

    free_all(&mut cache, got);
    drop(queues);
    drop(cache);
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn bursts_larger_than_a_block_of_full_size_frames_arrive_in_order() {
    if skip_without_a_veth() {
        return;
    }
    for kind in KINDS {
        bursts_larger_than_a_block_of_full_size_frames_arrive_in_order_on(kind);
    }
}

fn bursts_larger_than_a_block_of_full_size_frames_arrive_in_order_on(kind: RxRingKind) {
    let veth = veth(true);
    // 16 KiB blocks hold 9 frames of 1514 bytes: 300 frames span more than 30 blocks. The
    // frame ring holds all 300 in its 512 slots.
    let cfg = AfPacketConfig {
        block_size: 16 * 1024,
        blocks: 64,
        frames: 512,
        ..ring_config(kind, &veth.a, 1, Fanout::Hash)
    };
    let port = AfPacketPort::open(cfg).unwrap();
    let pool = PacketPool::new(512, 1600).unwrap();
    let mut cache = pool.cache(64);
    let mut queues = vec![port.take_queue(0).unwrap()];
    let peer = Peer::open(&veth.b);

    let count = 300u32;
    let sent: Vec<Vec<u8>> = (0..count)
        .map(|seq| {
            let len = if seq % 2 == 0 {
                1514
            } else {
                1500 - (seq as usize % 50)
            };
            test_frame(1, seq, len, None)
        })
        .collect();
    assert_eq!(sent[0].len(), 1514);
    for frame in &sent {
        peer.send(frame);
    }
    // Bursts of 7 stop in the middle of blocks: the cursor must resume there.
    let got = receive_all(&mut queues, &mut cache, count as usize, 7);
    let frames: Vec<&PktBuf> = got[0]
        .iter()
        .filter(|b| seq_of(b.data()).is_some())
        .collect();
    assert_eq!(frames.len(), count as usize, "{kind:?}");
    for (expected, buf) in frames.iter().enumerate() {
        assert_eq!(
            seq_of(buf.data()),
            Some(expected as u32),
            "{kind:?}: ring order is wire order"
        );
        assert_eq!(
            buf.data(),
            &sent[expected][..],
            "{kind:?}: frame {expected}"
        );
        assert_ne!(buf.rss_hash(), 0, "{kind:?}: the flow hash is set");
        assert_eq!(
            buf.rss_hash(),
            frames[0].rss_hash(),
            "{kind:?}: one flow, one hash"
        );
    }
    let stats = port.stats();
    assert_eq!(stats.queues[0].rx, got[0].len() as u64);
    assert_eq!(stats.queues[0].kernel_drops, 0);

    free_all(&mut cache, got);
    drop(queues);
    drop(cache);
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn frames_without_a_buffer_or_too_large_for_one_are_counted_drops() {
    if skip_without_a_veth() {
        return;
    }
    for kind in KINDS {
        frames_without_a_buffer_or_too_large_for_one_are_counted_drops_on(kind);
    }
}

fn frames_without_a_buffer_or_too_large_for_one_are_counted_drops_on(kind: RxRingKind) {
    let veth = veth(true);
    let port = AfPacketPort::open(ring_config(kind, &veth.a, 1, Fanout::Hash)).unwrap();
    let pool = PacketPool::new(64, 512).unwrap();
    let mut cache = pool.cache(0);
    let mut queue = port.take_queue(0).unwrap();
    let peer = Peer::open(&veth.b);

    // The pool is empty: 20 frames are consumed from the ring and counted, none delivered.
    let mut held = Vec::new();
    assert_eq!(cache.alloc_bulk(&mut held, 64), 64);
    for seq in 0..20 {
        peer.send(&test_frame(0, seq, 200, None));
    }
    let mut out = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while port.stats().queues[0].rx_dropped_no_buffer < 20 && Instant::now() < deadline {
        queue.rx_burst(&mut cache, &mut out, 32);
        thread::sleep(Duration::from_millis(1));
    }
    assert!(out.is_empty());
    assert_eq!(port.stats().queues[0].rx_dropped_no_buffer, 20);
    cache.free_bulk(&mut held);

    // Frames longer than the 512-byte data room are dropped, shorter ones delivered.
    for seq in 0..10 {
        let len = if seq % 2 == 0 { 1000 } else { 300 };
        peer.send(&test_frame(0, seq, len, None));
    }
    let got = receive_all(std::slice::from_mut(&mut queue), &mut cache, 5, 32);
    let stats = port.stats().queues[0];
    assert_eq!(got[0].len(), 5);
    assert!(got[0].iter().all(|b| b.len() == 300));
    assert_eq!(stats.rx, 5);
    assert_eq!(stats.rx_dropped_oversize, 5);
    assert_eq!(stats.rx_dropped_no_buffer, 20);

    free_all(&mut cache, got);
    drop(queue);
    drop(cache);
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn a_full_ring_shows_in_the_kernel_drop_counters() {
    if skip_without_a_veth() {
        return;
    }
    for kind in KINDS {
        a_full_ring_shows_in_the_kernel_drop_counters_on(kind);
    }
}

fn a_full_ring_shows_in_the_kernel_drop_counters_on(kind: RxRingKind) {
    let veth = veth(true);
    let page = 4096;
    let cfg = AfPacketConfig {
        block_size: page,
        blocks: 2,
        frames: 16,
        ..ring_config(kind, &veth.a, 1, Fanout::Hash)
    };
    let port = AfPacketPort::open(cfg).unwrap();
    let peer = Peer::open(&veth.b);
    // Two 4 KiB blocks hold at most 4 full-size frames, the frame ring 16; nobody reads.
    let capacity = match kind {
        RxRingKind::Frames => {
            assert_eq!(port.ring_frames(), Some(16));
            16
        }
        RxRingKind::Blocks => {
            assert_eq!(port.ring_frames(), None);
            4
        }
    };
    for seq in 0..50 {
        peer.send(&test_frame(0, seq, 1514, None));
    }
    thread::sleep(Duration::from_millis(20));
    let stats = port.stats().queues[0];
    assert!(stats.kernel_drops >= 50 - capacity, "{kind:?}: {stats:?}");
    match kind {
        RxRingKind::Blocks => assert!(stats.kernel_freezes >= 1, "{stats:?}"),
        // TPACKET_V2 has no freeze counter.
        RxRingKind::Frames => assert_eq!(stats.kernel_freezes, 0, "{stats:?}"),
    }

    // Reading drains the ring; the kernel resumes and later frames arrive.
    let pool = PacketPool::new(64, 2048).unwrap();
    let mut cache = pool.cache(16);
    let mut queue = port.take_queue(0).unwrap();
    let first = receive_all(std::slice::from_mut(&mut queue), &mut cache, 1, 32);
    let early = first[0].len() as u64;
    assert!(
        (1..=capacity).contains(&early),
        "{kind:?}: {early} frames fit the ring"
    );
    peer.send(&test_frame(0, 1000, 200, None));
    let later = receive_all(std::slice::from_mut(&mut queue), &mut cache, 1, 32);
    assert_eq!(
        later[0]
            .iter()
            .filter_map(|b| seq_of(b.data()))
            .collect::<Vec<_>>(),
        [1000]
    );
    // The counters never lose what an earlier read cleared in the kernel.
    assert!(port.stats().queues[0].kernel_drops >= stats.kernel_drops);

    free_all(&mut cache, first);
    free_all(&mut cache, later);
    drop(queue);
    drop(cache);
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn the_ring_is_reused_after_it_wraps() {
    if skip_without_a_veth() {
        return;
    }
    for kind in KINDS {
        the_ring_is_reused_after_it_wraps_on(kind);
    }
}

fn the_ring_is_reused_after_it_wraps_on(kind: RxRingKind) {
    let veth = veth(true);
    // The smallest rings: 16 slots, or two 4 KiB blocks of about 14 frames of 200 bytes.
    let cfg = AfPacketConfig {
        frames: 16,
        block_size: 4096,
        blocks: 2,
        ..ring_config(kind, &veth.a, 1, Fanout::Hash)
    };
    let port = AfPacketPort::open(cfg).unwrap();
    let pool = PacketPool::new(64, 2048).unwrap();
    let mut cache = pool.cache(16);
    let mut queue = port.take_queue(0).unwrap();
    let peer = Peer::open(&veth.b);

    // 25 rounds of 10 frames, each read before the next is sent: the reader and the kernel
    // go round the ring many times; nothing may be lost, repeated or reordered.
    let rounds = 25u32;
    let per_round = 10u32;
    let mut received = 0u64;
    for round in 0..rounds {
        let sent: Vec<Vec<u8>> = (0..per_round)
            .map(|i| {
                let seq = round * per_round + i;
                test_frame((seq % 3) as u16, seq, 200 - (seq as usize % 17), None)
            })
            .collect();
        for frame in &sent {
            peer.send(frame);
        }
        let got = receive_all(
            std::slice::from_mut(&mut queue),
            &mut cache,
            per_round as usize,
            4,
        );
        received += got[0].len() as u64;
        let frames: Vec<&PktBuf> = got[0]
            .iter()
            .filter(|b| seq_of(b.data()).is_some())
            .collect();
        assert_eq!(frames.len(), per_round as usize, "{kind:?}: round {round}");
        for (i, buf) in frames.iter().enumerate() {
            assert_eq!(
                buf.data(),
                &sent[i][..],
                "{kind:?}: round {round} frame {i}"
            );
            assert_ne!(buf.rss_hash(), 0, "{kind:?}: the flow hash is set");
        }
        free_all(&mut cache, got);
    }
    let stats = port.stats().queues[0];
    assert_eq!(stats.rx, received, "{kind:?}: {stats:?}");
    assert_eq!(stats.kernel_drops, 0, "{kind:?}: {stats:?}");
    drop(queue);
    drop(cache);
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn a_new_owner_continues_where_the_last_one_stopped() {
    if skip_without_a_veth() {
        return;
    }
    for kind in KINDS {
        let veth = veth(true);
        let cfg = AfPacketConfig {
            frames: 16,
            block_size: 4096,
            blocks: 2,
            ..ring_config(kind, &veth.a, 1, Fanout::Hash)
        };
        let port = AfPacketPort::open(cfg).unwrap();
        let pool = PacketPool::new(64, 2048).unwrap();
        let mut cache = pool.cache(16);
        let peer = Peer::open(&veth.b);
        // Five owners in turn, each taking the queue, reading 8 frames (the ring wraps on the
        // way) and letting it go: every frame arrives once, in order.
        let mut seqs = Vec::new();
        for owner in 0..5u32 {
            let mut queue = port.take_queue(0).unwrap();
            assert_eq!(
                port.take_queue(0).unwrap_err(),
                AfPacketError::QueueTaken { queue: 0 },
                "{kind:?}: one owner at a time"
            );
            for i in 0..8 {
                peer.send(&test_frame(0, owner * 8 + i, 150, None));
            }
            let got = receive_all(std::slice::from_mut(&mut queue), &mut cache, 8, 3);
            seqs.extend(got[0].iter().filter_map(|b| seq_of(b.data())));
            free_all(&mut cache, got);
        }
        assert_eq!(seqs, (0..40).collect::<Vec<u32>>(), "{kind:?}");
        drop(cache);
        assert_eq!(pool.available(), pool.capacity());
    }
}

#[test]
fn a_lone_frame_is_visible_at_once_on_a_frame_ring_but_waits_for_the_block_timeout() {
    if skip_without_a_veth() {
        return;
    }
    // A block ring whose retire timer first fires 3 s after it opened hands over nothing
    // within 300 ms; a frame ring hands over the frame as soon as the kernel wrote it.
    for kind in KINDS {
        let veth = veth(true);
        let cfg = AfPacketConfig {
            block_timeout_ms: 3000,
            ..ring_config(kind, &veth.a, 1, Fanout::Hash)
        };
        let port = AfPacketPort::open(cfg).unwrap();
        let pool = PacketPool::new(16, 2048).unwrap();
        let mut cache = pool.cache(4);
        let mut queue = port.take_queue(0).unwrap();
        let peer = Peer::open(&veth.b);
        let sent_at = Instant::now();
        peer.send(&test_frame(0, 7, 100, None));
        let mut out = Vec::new();
        while out.is_empty() && sent_at.elapsed() < Duration::from_millis(300) {
            queue.rx_burst(&mut cache, &mut out, 8);
        }
        let seen = out.iter().any(|b| seq_of(b.data()) == Some(7));
        match kind {
            RxRingKind::Frames => assert!(seen, "the frame ring shows the frame at once"),
            RxRingKind::Blocks => assert!(out.is_empty(), "the block is not retired yet"),
        }
        cache.free_bulk(&mut out);
        drop(queue);
        drop(cache);
        assert_eq!(pool.available(), pool.capacity());
    }
}

/// Sleeps until `queue`'s receive socket is readable or `timeout` passed, as the engine's
/// `idle = "wait"` does; whether it became readable.
fn wait_rx(queue: &AfPacketQueue, timeout: Duration) -> bool {
    let fd = queue
        .rx_wait_fd()
        .expect("an AF_PACKET queue has a receive socket");
    flowsteer_nic::wait::wait_readable(&[fd], timeout).unwrap() != 0
}

#[test]
fn the_rx_wait_fd_wakes_a_waiter_when_a_frame_is_handed_over_and_times_out_otherwise() {
    if skip_without_a_veth() {
        return;
    }
    for kind in KINDS {
        let veth = veth(true);
        let port = AfPacketPort::open(ring_config(kind, &veth.a, 1, Fanout::Hash)).unwrap();
        let pool = PacketPool::new(16, 2048).unwrap();
        let mut cache = pool.cache(4);
        let mut queue = port.take_queue(0).unwrap();

        // Nothing sent: the wait lasts its timeout and reports nothing.
        let start = Instant::now();
        assert!(!wait_rx(&queue, Duration::from_millis(30)), "{kind:?}");
        assert!(start.elapsed() >= Duration::from_millis(25), "{kind:?}");

        // A frame ends the wait long before the timeout (a block ring after its 1 ms timer).
        let sender = {
            let b = veth.b.clone();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(20));
                Peer::open(&b).send(&test_frame(0, 9, 100, None));
            })
        };
        let start = Instant::now();
        let mut woken = false;
        while !woken && start.elapsed() < DEADLINE {
            woken = wait_rx(&queue, DEADLINE);
        }
        assert!(woken, "{kind:?}: the wait ends when the frame arrives");
        assert!(start.elapsed() < Duration::from_secs(2), "{kind:?}");
        sender.join().unwrap();
        let got = receive_all(std::slice::from_mut(&mut queue), &mut cache, 1, 8);
        assert!(
            got[0].iter().any(|b| seq_of(b.data()) == Some(9)),
            "{kind:?}"
        );
        free_all(&mut cache, got);
        drop(queue);
        drop(cache);
        assert_eq!(pool.available(), pool.capacity());
    }
}

// ---------------------------------------------------------------------------------------------
// Transmit

#[test]
fn transmitted_frames_reach_the_peer_intact_and_are_not_received_back() {
    if skip_without_a_veth() {
        return;
    }
    let veth = veth(true);
    let port = AfPacketPort::open(config(&veth.a, 2, Fanout::Lb)).unwrap();
    let pool = PacketPool::new(512, 2048).unwrap();
    let mut cache = pool.cache(64);
    let mut queues = vec![port.take_queue(0).unwrap(), port.take_queue(1).unwrap()];
    let peer = Peer::open(&veth.b);

    let count = 200u32;
    let sent: Vec<Vec<u8>> = (0..count)
        .map(|seq| {
            test_frame(
                2,
                seq,
                if seq % 3 == 0 {
                    1514
                } else {
                    64 + seq as usize
                },
                None,
            )
        })
        .collect();
    for (chunk_index, chunk) in sent.chunks(50).enumerate() {
        let mut burst: Vec<PktBuf> = chunk
            .iter()
            .map(|frame| {
                let mut buf = cache.alloc().unwrap();
                buf.write_frame(frame).unwrap();
                buf
            })
            .collect();
        let queue = &mut queues[chunk_index % 2];
        let n = queue.tx_burst(&mut cache, &mut burst);
        assert_eq!(n, chunk.len(), "the whole burst is sent");
        assert!(burst.is_empty());
    }
    let received = peer.receive(count as usize);
    let received: Vec<&Vec<u8>> = received.iter().filter(|f| seq_of(f).is_some()).collect();
    assert_eq!(received.len(), count as usize);
    let mut seen = HashSet::new();
    for frame in received {
        let seq = seq_of(frame).unwrap();
        assert!(seen.insert(seq));
        assert_eq!(&frame[..], &sent[seq as usize][..], "frame {seq} bytes");
    }

    // Our own transmissions never come back on the port's rings.
    let mut echo = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(50);
    while Instant::now() < deadline {
        for queue in &mut queues {
            queue.rx_burst(&mut cache, &mut echo, 64);
        }
        thread::sleep(Duration::from_millis(1));
    }
    assert!(echo.is_empty(), "received {} own frames", echo.len());

    let stats = port.stats();
    assert_eq!(stats.queues[0].tx, 100);
    assert_eq!(stats.queues[1].tx, 100);
    assert_eq!(stats.total().tx_refused + stats.total().tx_errors, 0);
    assert_eq!(stats.total().rx, 0);

    drop(queues);
    drop(cache);
    assert_eq!(pool.available(), pool.capacity(), "sent buffers are freed");
}

#[test]
fn a_frame_the_interface_refuses_stays_with_the_caller_and_is_counted() {
    if skip_without_a_veth() {
        return;
    }
    let veth = veth(true);
    let port = AfPacketPort::open(config(&veth.a, 1, Fanout::Hash)).unwrap();
    let pool = PacketPool::new(16, 4096).unwrap();
    let mut cache = pool.cache(0);
    let mut queue = port.take_queue(0).unwrap();

    // Longer than MTU + Ethernet header: EMSGSIZE for the second frame; the first is sent.
    let mut burst = Vec::new();
    for len in [200, 3000, 200] {
        let mut buf = cache.alloc().unwrap();
        buf.write_frame(&test_frame(0, len as u32, len, None))
            .unwrap();
        burst.push(buf);
    }
    assert_eq!(queue.tx_burst(&mut cache, &mut burst), 1);
    assert_eq!(
        burst.len(),
        2,
        "the refused frame and the rest stay with the caller"
    );
    assert_eq!(burst[0].len(), 3000);
    let stats = port.stats().queues[0];
    assert_eq!(stats.tx, 1);
    assert_eq!(stats.tx_errors, 2);
    cache.free_bulk(&mut burst);

    drop(queue);
    drop(cache);
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn many_ports_open_and_close_without_leaking_descriptors() {
    if skip_without_a_veth() {
        return;
    }
    let veth = veth(true);
    let fds_before = std::fs::read_dir("/proc/self/fd").unwrap().count();
    for _ in 0..20 {
        let port = Arc::new(AfPacketPort::open(config(&veth.a, 2, Fanout::Cpu)).unwrap());
        let queue = port.take_queue(1).unwrap();
        drop(port);
        // The queue keeps the sockets alive after the port value is gone.
        assert_eq!(queue.queue_id(), 1);
    }
    let fds_after = std::fs::read_dir("/proc/self/fd").unwrap().count();
    // Other tests run in parallel threads and open descriptors of their own.
    assert!(fds_after <= fds_before + 16, "{fds_before} -> {fds_after}");
}

// ---------------------------------------------------------------------------------------------
// Permission

/// `struct __user_cap_header_struct` of `include/uapi/linux/capability.h`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const CAP_NET_RAW: u32 = 13;

/// Raises or lowers CAP_NET_RAW in the calling thread's effective set (capabilities are per
/// thread on Linux: other tests keep theirs). The permitted set is untouched, so it can be
/// raised again.
fn set_net_raw_effective(on: bool) {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes two CapData (version 3) and reads the header; both are valid.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    assert_eq!(rc, 0, "capget: {}", std::io::Error::last_os_error());
    if on {
        data[0].effective |= 1 << CAP_NET_RAW;
    } else {
        data[0].effective &= !(1 << CAP_NET_RAW);
    }
    // SAFETY: capset reads the header and two CapData, all valid.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    assert_eq!(rc, 0, "capset: {}", std::io::Error::last_os_error());
}

/// Restores CAP_NET_RAW when the test ends, also on failure.
struct NetRawDropped;

impl Drop for NetRawDropped {
    fn drop(&mut self) {
        set_net_raw_effective(true);
    }
}

#[test]
fn without_cap_net_raw_the_error_says_what_is_needed() {
    if skip_without_a_veth() {
        return;
    }
    let veth = veth(true);
    set_net_raw_effective(false);
    let restore = NetRawDropped;
    let error = AfPacketPort::open(config(&veth.a, 2, Fanout::Hash)).unwrap_err();
    drop(restore);
    assert_eq!(
        error,
        AfPacketError::PermissionDenied {
            interface: veth.a.clone()
        }
    );
    let text = error.to_string();
    assert!(text.contains("needs root or CAP_NET_RAW"), "{text}");
    assert!(text.contains(&veth.a), "{text}");
}

// ---------------------------------------------------------------------------------------------
// Cost

/// What `rx_burst` costs per frame on each ring kind, user side only: 10000 frames are queued
/// in the ring while nobody reads, then drained in bursts of 32 and timed. Not a pass/fail
/// test (timings on a shared machine are noise); run it with
/// `cargo test --release -p flowsteer-nic --test afpacket -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: prints the drain cost per frame of both ring kinds"]
fn drain_cost_per_frame_of_both_ring_kinds() {
    if skip_without_a_veth() {
        return;
    }
    let count = 10_000u32;
    for len in [64usize, 1514] {
        for kind in KINDS {
            let veth = veth(true);
            let cfg = AfPacketConfig {
                frames: 16384,
                blocks: 128,
                ..ring_config(kind, &veth.a, 1, Fanout::Hash)
            };
            let port = AfPacketPort::open(cfg).unwrap();
            let pool = PacketPool::new(16384, 2048).unwrap();
            let mut cache = pool.cache(256);
            let mut queue = port.take_queue(0).unwrap();
            let peer = Peer::open(&veth.b);
            for seq in 0..count {
                peer.send(&test_frame((seq % 64) as u16, seq, len, None));
            }
            // Long enough for the block timer to hand over the last, partly filled block.
            thread::sleep(Duration::from_millis(50));
            let mut out = Vec::with_capacity(count as usize);
            let start = Instant::now();
            while out.len() < count as usize && start.elapsed() < DEADLINE {
                queue.rx_burst(&mut cache, &mut out, 32);
            }
            let elapsed = start.elapsed();
            let stats = port.stats().queues[0];
            eprintln!(
                "{kind:?} ring, {len}-byte frames: {} frames drained in {:.2} ms, {:.1} ns per \
                 frame (kernel drops {})",
                out.len(),
                elapsed.as_secs_f64() * 1e3,
                elapsed.as_nanos() as f64 / out.len().max(1) as f64,
                stats.kernel_drops
            );
            cache.free_bulk(&mut out);
        }
    }
}

/// How long a ring holds a flood while its owner is descheduled: a peer sends full-size frames
/// as fast as one thread can for 40 ms while nobody reads; printed are the frames sent, those
/// the ring kept and the kernel's drops, for the old default (8 blocks of 256 KiB) and both
/// current defaults. Run it with
/// `cargo test --release -p flowsteer-nic --test afpacket -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: prints what a 40 ms stall costs with each ring default"]
fn a_stalled_owner_with_each_ring_default() {
    if skip_without_a_veth() {
        return;
    }
    let defaults = AfPacketConfig::default();
    let cases = [
        ("blocks, 8 x 256 KiB (old default)", RxRingKind::Blocks, 8),
        ("blocks, 64 x 256 KiB", RxRingKind::Blocks, defaults.blocks),
        ("frames, 8192 slots", RxRingKind::Frames, defaults.blocks),
    ];
    for (name, kind, blocks) in cases {
        let veth = veth(true);
        let cfg = AfPacketConfig {
            blocks,
            ..ring_config(kind, &veth.a, 1, Fanout::Hash)
        };
        let port = AfPacketPort::open(cfg).unwrap();
        let pool = PacketPool::new(32768, 2048).unwrap();
        let mut cache = pool.cache(256);
        let mut queue = port.take_queue(0).unwrap();
        let peer = Peer::open(&veth.b);
        let frame = test_frame(0, 1, 1514, None);
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed() < Duration::from_millis(40) {
            for _ in 0..64 {
                peer.send(&frame);
            }
            sent += 64;
        }
        let elapsed = start.elapsed();
        thread::sleep(Duration::from_millis(20));
        // Everything the ring kept is handed over by now (the block timer ran too).
        let mut out = Vec::new();
        while queue.rx_burst(&mut cache, &mut out, 256) > 0 {}
        let stats = port.stats().queues[0];
        eprintln!(
            "{name}: {sent} frames sent in {:.1} ms ({:.2} Gbit/s), ring kept {}, kernel drops {}",
            elapsed.as_secs_f64() * 1e3,
            sent as f64 * 1538.0 * 8.0 / elapsed.as_secs_f64() / 1e9,
            out.len(),
            stats.kernel_drops
        );
        cache.free_bulk(&mut out);
    }
}

#[test]
fn a_transmit_only_queue_sends_outside_the_fanout_group_and_receives_nothing() {
    if skip_without_a_veth() {
        return;
    }
    let veth = veth(true);
    let port = AfPacketPort::open(config(&veth.a, 1, Fanout::Lb)).unwrap();
    let pool = PacketPool::new(256, 2048).unwrap();
    let mut cache = pool.cache(64);
    let mut pairs = vec![port.take_queue(0).unwrap()];
    assert!(matches!(
        port.take_transmit_queue(0),
        Err(AfPacketError::TransmitOwner {
            owner: 0,
            queues: 1
        })
    ));
    let mut sender = port.take_transmit_queue(1).unwrap();
    assert!(sender.is_transmit_only() && !pairs[0].is_transmit_only());
    assert_eq!(sender.queue_id(), 1);
    assert!(sender.rx_wait_fd().is_none());
    assert_eq!(
        port.take_transmit_queue(1).unwrap_err(),
        AfPacketError::TransmitQueueTaken { owner: 1 }
    );
    let peer = Peer::open(&veth.b);

    // What the transmit-only queue sends reaches the wire intact.
    let sent: Vec<Vec<u8>> = (0..40).map(|seq| test_frame(3, seq, 100, None)).collect();
    let mut burst: Vec<PktBuf> = sent
        .iter()
        .map(|frame| {
            let mut buf = cache.alloc().unwrap();
            buf.write_frame(frame).unwrap();
            buf
        })
        .collect();
    assert_eq!(sender.tx_burst(&mut cache, &mut burst), sent.len());
    let received = peer.receive(sent.len());
    let mut ours: Vec<&Vec<u8>> = received.iter().filter(|f| seq_of(f).is_some()).collect();
    ours.sort_by_key(|f| seq_of(f));
    assert_eq!(ours.len(), sent.len());
    for (got, want) in ours.iter().zip(&sent) {
        assert_eq!(&got[..], &want[..]);
    }

    // What the peer sends goes to the queue pair only: the sender is not in the fanout group.
    for seq in 0..30 {
        peer.send(&test_frame(4, seq, 80, None));
    }
    let got = receive_all(&mut pairs, &mut cache, 30, 64);
    let test_frames = got[0].iter().filter(|b| seq_of(b.data()).is_some()).count();
    assert_eq!(test_frames, 30);
    let mut nothing = Vec::new();
    assert_eq!(sender.rx_burst(&mut cache, &mut nothing, 64), 0);
    free_all(&mut cache, got);

    let stats = port.stats();
    assert_eq!(stats.transmit_only.len(), 1);
    assert_eq!(stats.transmit_only[0].map(|s| s.tx), Some(40));
    assert_eq!(stats.queues[0].tx, 0);
    assert_eq!(stats.total().tx, 40);

    // A released sender is taken again, on the same socket.
    drop(sender);
    assert!(port.take_transmit_queue(1).is_ok());
    drop(pairs);
    drop(cache);
    assert_eq!(pool.available(), pool.capacity());
}
