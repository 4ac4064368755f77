//! Software RSS: Microsoft's verification vectors, a bit-by-bit reference, the symmetric key,
//! the redirection table and the frame path.

use std::net::{Ipv4Addr, Ipv6Addr};

use flowsteer_nic::rss::{
    Reta, RssError, SoftRss, Toeplitz, MAX_INPUT_LEN, MICROSOFT_KEY, SYMMETRIC_KEY,
};
use flowsteer_nic::wire::{build_frame, FiveTuple, FrameSpec, IpPair, IP_PROTO_TCP, IP_PROTO_UDP};
use proptest::prelude::*;

/// The Toeplitz hash one bit at a time, straight from its definition.
fn reference_hash(key: &[u8; 40], input: &[u8]) -> u32 {
    let key_bit = |i: usize| (key[i / 8] >> (7 - i % 8)) & 1;
    let mut hash = 0u32;
    for (byte_index, byte) in input.iter().take(MAX_INPUT_LEN).enumerate() {
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                let start = byte_index * 8 + bit;
                let window = (0..32).fold(0u32, |w, j| (w << 1) | u32::from(key_bit(start + j)));
                hash ^= window;
            }
        }
    }
    hash
}

/// (source, source port, destination, destination port, IP-only hash, hash with ports), from
/// "Verifying the RSS Hash Calculation" (Microsoft, NDIS documentation).
const IPV4_VECTORS: [(&str, u16, &str, u16, u32, u32); 5] = [
    (
        "66.9.149.187",
        2794,
        "161.142.100.80",
        1766,
        0x323e8fc2,
        0x51ccc178,
    ),
    (
        "199.92.111.2",
        14230,
        "65.69.140.83",
        4739,
        0xd718262a,
        0xc626b0ea,
    ),
    (
        "24.19.198.95",
        12898,
        "12.22.207.184",
        38024,
        0xd2d0a5de,
        0x5c2b394a,
    ),
    (
        "38.27.205.30",
        48228,
        "209.142.163.6",
        2217,
        0x82989176,
        0xafc7327f,
    ),
    (
        "153.39.163.191",
        44251,
        "202.188.127.2",
        1303,
        0x5d1809c5,
        0x10e828a2,
    ),
];

const IPV6_VECTORS: [(&str, u16, &str, u16, u32, u32); 3] = [
    (
        "3ffe:2501:200:1fff::7",
        2794,
        "3ffe:2501:200:3::1",
        1766,
        0x2cc18cd5,
        0x40207d3d,
    ),
    (
        "3ffe:501:8::260:97ff:fe40:efab",
        14230,
        "ff02::1",
        4739,
        0x0f0c461c,
        0xdde51bbf,
    ),
    (
        "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
        44251,
        "fe80::200:f8ff:fe21:67cf",
        38024,
        0x4b61e985,
        0x02d1feef,
    ),
];

#[test]
fn microsoft_ipv4_vectors() {
    let toeplitz = Toeplitz::new(&MICROSOFT_KEY);
    for (src, src_port, dst, dst_port, ip_only, with_ports) in IPV4_VECTORS {
        let (src, dst): (Ipv4Addr, Ipv4Addr) = (src.parse().unwrap(), dst.parse().unwrap());
        let tuple = FiveTuple::v4(IP_PROTO_TCP, src, src_port, dst, dst_port);
        assert_eq!(
            toeplitz.hash_tuple(&tuple),
            with_ports,
            "{src}:{src_port} -> {dst}:{dst_port}"
        );
        assert_eq!(toeplitz.hash_ips(&tuple.ip), ip_only, "{src} -> {dst}");
        let mut input = [src.octets(), dst.octets()].concat();
        assert_eq!(toeplitz.hash(&input), ip_only);
        input.extend(src_port.to_be_bytes());
        input.extend(dst_port.to_be_bytes());
        assert_eq!(toeplitz.hash(&input), with_ports);
    }
}

#[test]
fn microsoft_ipv6_vectors() {
    let toeplitz = Toeplitz::new(&MICROSOFT_KEY);
    for (src, src_port, dst, dst_port, ip_only, with_ports) in IPV6_VECTORS {
        let (src, dst): (Ipv6Addr, Ipv6Addr) = (src.parse().unwrap(), dst.parse().unwrap());
        let tuple = FiveTuple::v6(IP_PROTO_TCP, src, src_port, dst, dst_port);
        assert_eq!(
            toeplitz.hash_tuple(&tuple),
            with_ports,
            "[{src}]:{src_port} -> [{dst}]:{dst_port}"
        );
        assert_eq!(toeplitz.hash_ips(&tuple.ip), ip_only, "{src} -> {dst}");
        assert_eq!(
            reference_hash(&MICROSOFT_KEY, &[src.octets(), dst.octets()].concat()),
            ip_only
        );
    }
}

#[test]
fn only_the_first_36_bytes_count() {
    let toeplitz = Toeplitz::new(&MICROSOFT_KEY);
    let input: Vec<u8> = (1..=60).collect();
    assert_eq!(
        toeplitz.hash(&input),
        toeplitz.hash(&input[..MAX_INPUT_LEN])
    );
    assert_eq!(toeplitz.hash(&[]), 0);
}

#[test]
fn symmetric_key_hashes_both_directions_alike() {
    let toeplitz = Toeplitz::new(&SYMMETRIC_KEY);
    for (src, src_port, dst, dst_port, ..) in IPV4_VECTORS {
        let tuple = FiveTuple::v4(
            IP_PROTO_UDP,
            src.parse().unwrap(),
            src_port,
            dst.parse().unwrap(),
            dst_port,
        );
        assert_eq!(
            toeplitz.hash_tuple(&tuple),
            toeplitz.hash_tuple(&tuple.reversed())
        );
    }
    for (src, src_port, dst, dst_port, ..) in IPV6_VECTORS {
        let tuple = FiveTuple::v6(
            IP_PROTO_TCP,
            src.parse().unwrap(),
            src_port,
            dst.parse().unwrap(),
            dst_port,
        );
        assert_eq!(
            toeplitz.hash_tuple(&tuple),
            toeplitz.hash_tuple(&tuple.reversed())
        );
        assert_eq!(
            toeplitz.hash_ips(&tuple.ip),
            toeplitz.hash_ips(&tuple.ip.reversed())
        );
    }
    assert_eq!(&SYMMETRIC_KEY[..4], &[0x6d, 0x5a, 0x6d, 0x5a]);
}

proptest! {
    #[test]
    fn tables_match_the_bitwise_definition(
        key in proptest::collection::vec(any::<u8>(), 40)
            .prop_map(|key| <[u8; 40]>::try_from(key).unwrap()),
        input in proptest::collection::vec(any::<u8>(), 0..=40),
    ) {
        let toeplitz = Toeplitz::new(&key);
        prop_assert_eq!(toeplitz.hash(&input), reference_hash(&key, &input));
    }

    #[test]
    fn tuple_hash_is_the_hash_of_its_bytes_in_nic_order(
        src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(),
        src_port in any::<u16>(), dst_port in any::<u16>(), v6 in any::<bool>(),
    ) {
        let toeplitz = Toeplitz::new(&MICROSOFT_KEY);
        let (ip, mut bytes) = if v6 {
            (IpPair::V6 { src, dst }, [src, dst].concat())
        } else {
            let (s, d): ([u8; 4], [u8; 4]) = (src[..4].try_into().unwrap(), dst[..4].try_into().unwrap());
            (IpPair::V4 { src: s, dst: d }, [s, d].concat())
        };
        prop_assert_eq!(toeplitz.hash_ips(&ip), reference_hash(&MICROSOFT_KEY, &bytes));
        bytes.extend(src_port.to_be_bytes());
        bytes.extend(dst_port.to_be_bytes());
        let tuple = FiveTuple { ip, proto: IP_PROTO_TCP, src_port, dst_port };
        prop_assert_eq!(toeplitz.hash_tuple(&tuple), reference_hash(&MICROSOFT_KEY, &bytes));
    }

    #[test]
    fn symmetric_key_is_symmetric_for_any_flow(
        src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(),
        src_port in any::<u16>(), dst_port in any::<u16>(),
    ) {
        let toeplitz = Toeplitz::new(&SYMMETRIC_KEY);
        let tuple = FiveTuple { ip: IpPair::V6 { src, dst }, proto: IP_PROTO_UDP, src_port, dst_port };
        prop_assert_eq!(toeplitz.hash_tuple(&tuple), toeplitz.hash_tuple(&tuple.reversed()));
    }
}

#[test]
fn reta_rejects_bad_sizes_and_queue_counts() {
    for size in [0, 3, 100, 8192] {
        assert_eq!(Reta::new(size, 1).unwrap_err(), RssError::RetaSize { size });
    }
    assert_eq!(
        Reta::new(8, 0).unwrap_err(),
        RssError::Queues { queues: 0, size: 8 }
    );
    assert_eq!(
        Reta::new(8, 9).unwrap_err(),
        RssError::Queues { queues: 9, size: 8 }
    );
    assert!(Reta::new(1, 1).is_ok());
    assert!(Reta::new(4096, 4096).is_ok());
    assert!(RssError::RetaSize { size: 3 }.to_string().contains("got 3"));
}

#[test]
fn reta_fills_round_robin_and_masks_the_hash() {
    let reta = Reta::new(8, 3).unwrap();
    assert_eq!(reta.entries(), &[0, 1, 2, 0, 1, 2, 0, 1]);
    assert_eq!((reta.size(), reta.queues()), (8, 3));
    assert_eq!(reta.queue(0), 0);
    assert_eq!(reta.queue(5), 2);
    assert_eq!(reta.queue(8 + 5), 2);
    assert_eq!(reta.queue(u32::MAX), 1);
}

#[test]
fn reta_from_entries_takes_a_device_table_as_it_is() {
    let reta = Reta::from_entries(vec![3, 3, 0, 1], 4).unwrap();
    assert_eq!((reta.size(), reta.queues()), (4, 4));
    assert_eq!(reta.queue(0), 3);
    assert_eq!(reta.queue(4 + 2), 0);
    assert_eq!(
        Reta::from_entries(vec![0, 1, 2], 3),
        Err(RssError::RetaSize { size: 3 })
    );
    assert_eq!(
        Reta::from_entries(vec![0, 2], 2),
        Err(RssError::Queue {
            queue: 2,
            queues: 2
        })
    );
    assert_eq!(
        Reta::from_entries(Vec::new(), 1),
        Err(RssError::RetaSize { size: 0 })
    );
}

#[test]
fn reta_set_moves_one_bucket_and_checks_bounds() {
    let mut reta = Reta::new(16, 4).unwrap();
    reta.set(5, 3).unwrap();
    assert_eq!(reta.queue(5), 3);
    assert_eq!(reta.queue(16 + 5), 3);
    assert_eq!(reta.queue(4), 0, "other entries keep their queue");
    assert_eq!(
        reta.set(16, 0),
        Err(RssError::Index {
            index: 16,
            size: 16
        })
    );
    assert_eq!(
        reta.set(0, 4),
        Err(RssError::Queue {
            queue: 4,
            queues: 4
        })
    );
    assert_eq!(reta.queue(0), 0);
}

#[test]
fn reta_spreads_random_hashes_evenly() {
    const HASHES: u32 = 200_000;
    let reta = Reta::new(128, 8).unwrap();
    let mut counts = [0u32; 8];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..HASHES {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        counts[reta.queue((state >> 32) as u32) as usize] += 1;
    }
    let share = HASHES / 8;
    for (queue, &count) in counts.iter().enumerate() {
        assert!(
            count.abs_diff(share) < share / 20,
            "queue {queue} got {count} of {HASHES}"
        );
    }
}

#[test]
fn soft_rss_of_a_frame_is_the_soft_rss_of_its_tuple() {
    let rss = SoftRss::new(&MICROSOFT_KEY, 128, 4).unwrap();
    let (src, src_port, dst, dst_port, _, with_ports) = IPV4_VECTORS[0];
    let tuple = FiveTuple::v4(
        IP_PROTO_TCP,
        src.parse().unwrap(),
        src_port,
        dst.parse().unwrap(),
        dst_port,
    );
    let frame = frame_of(tuple, Some(7));
    assert_eq!(
        rss.queue_of(&frame),
        (with_ports, rss.reta.queue(with_ports))
    );
    assert_eq!(rss.queue_of_tuple(&tuple), rss.queue_of(&frame));

    let (src, src_port, dst, dst_port, _, with_ports) = IPV6_VECTORS[1];
    let tuple = FiveTuple::v6(
        IP_PROTO_UDP,
        src.parse().unwrap(),
        src_port,
        dst.parse().unwrap(),
        dst_port,
    );
    assert_eq!(rss.queue_of(&frame_of(tuple, None)).0, with_ports);
}

#[test]
fn soft_rss_hashes_fragments_by_addresses_and_the_rest_to_zero() {
    let rss = SoftRss::new(&MICROSOFT_KEY, 128, 4).unwrap();
    let (src, src_port, dst, dst_port, ip_only, _) = IPV4_VECTORS[2];
    let tuple = FiveTuple::v4(
        IP_PROTO_UDP,
        src.parse().unwrap(),
        src_port,
        dst.parse().unwrap(),
        dst_port,
    );
    let mut fragment = frame_of(tuple, None);
    // Fragment offset 185 (× 8 bytes), more fragments: a later piece, with no ports.
    fragment[14 + 6..14 + 8].copy_from_slice(&(0x2000u16 | 185).to_be_bytes());
    assert_eq!(rss.queue_of(&fragment), (ip_only, rss.reta.queue(ip_only)));

    let mut arp = vec![0u8; 60];
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    arp[14..22].copy_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    assert_eq!(rss.queue_of(&arp), (0, rss.reta.queue(0)));
    assert_eq!(
        rss.queue_of(&[0xff; 9]),
        (0, rss.reta.queue(0)),
        "truncated frame"
    );
    assert_eq!(rss.queue_of(&[]), (0, rss.reta.queue(0)));
}

#[test]
fn soft_rss_rejects_a_bad_table() {
    assert_eq!(
        SoftRss::new(&MICROSOFT_KEY, 100, 2).unwrap_err(),
        RssError::RetaSize { size: 100 }
    );
}

fn frame_of(tuple: FiveTuple, vlan: Option<u16>) -> Vec<u8> {
    let mut frame = vec![0u8; 256];
    let spec = FrameSpec {
        src_mac: [2, 0, 0, 0, 0, 2],
        dst_mac: [2, 0, 0, 0, 0, 1],
        vlan,
        tuple,
        tcp_flags: 0x02,
        payload: b"flowsteer",
    };
    let len = build_frame(&mut frame, &spec).unwrap();
    frame.truncate(len);
    frame
}
