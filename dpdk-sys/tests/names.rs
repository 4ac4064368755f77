//! The names DPDK gives RSS flow types, offloads, link speeds and error codes: lookups in
//! tables of the library and the shim that need no EAL (and no root).
#![cfg(feature = "dpdk")]

use dpdk_sys::ethdev::{self, Link};
use dpdk_sys::{rss, strerror};

#[test]
fn rss_flow_types_have_testpmd_names_and_header_bits() {
    let types = rss::flow_types();
    let bit = |name: &str| {
        types
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} in {types:?}"))
            .1
    };
    // RTE_ETH_RSS_IPV4 is bit 2, NONFRAG_IPV4_TCP 4, NONFRAG_IPV4_UDP 5, IPV6 8, NONFRAG_IPV6_TCP
    // 10, NONFRAG_IPV6_UDP 11, L3_SRC_ONLY 63 (rte_ethdev.h of 22.11).
    assert_eq!(bit("ipv4"), 1 << 2);
    assert_eq!(bit("ipv4-tcp"), 1 << 4);
    assert_eq!(bit("ipv4-udp"), 1 << 5);
    assert_eq!(bit("ipv6"), 1 << 8);
    assert_eq!(bit("ipv6-tcp"), 1 << 10);
    assert_eq!(bit("ipv6-udp"), 1 << 11);
    assert_eq!(bit("l3-src-only"), 1 << 63);
    let mut seen = 0u64;
    for &(name, b) in types {
        assert_eq!(b.count_ones(), 1, "{name} is one bit");
        assert_eq!(seen & b, 0, "{name} named twice");
        seen |= b;
    }
}

#[test]
fn a_mask_is_named_in_table_order_with_the_unnamed_bits_last() {
    assert!(rss::flow_type_names(0).is_empty());
    // ipv6-udp | ipv4-tcp | ipv4, and bit 50 (RTE_ETH_RSS_LEVEL_OUTERMOST) which no type names.
    let mask = (1 << 11) | (1 << 4) | (1 << 2) | (1 << 50);
    assert_eq!(
        rss::flow_type_names(mask),
        ["ipv4", "ipv4-tcp", "ipv6-udp", "bit 50"]
    );
}

#[test]
fn offloads_are_named_by_dpdk() {
    // RTE_ETH_RX_OFFLOAD_VLAN_STRIP is bit 0, RTE_ETH_RX_OFFLOAD_RSS_HASH bit 19;
    // RTE_ETH_TX_OFFLOAD_MULTI_SEGS bit 15.
    assert_eq!(
        ethdev::rx_offload_names((1 << 19) | 1),
        ["VLAN_STRIP", "RSS_HASH"]
    );
    assert_eq!(ethdev::tx_offload_names(1 << 15), ["MULTI_SEGS"]);
    assert!(ethdev::rx_offload_names(0).is_empty());
    assert_eq!(ethdev::rx_offload_names(1 << 62), ["bit 62"]);
}

#[test]
fn link_speeds_read_as_testpmd_prints_them() {
    let speed = |speed_mbps| {
        Link {
            speed_mbps,
            ..Link::default()
        }
        .speed_text()
    };
    assert_eq!(speed(0), "None");
    assert_eq!(speed(u32::MAX), "Unknown");
    assert_eq!(speed(100), "100 Mbps");
    assert_eq!(speed(2_500), "2.5 Gbps");
    assert_eq!(speed(10_000), "10 Gbps");
    assert_eq!(speed(200_000), "200 Gbps");
}

#[test]
fn error_codes_read_as_dpdk_prints_them() {
    assert_eq!(strerror(19), "No such device");
    assert_eq!(strerror(-22), "Invalid argument", "the sign is ignored");
    // E_RTE_NO_CONFIG, one of the EAL's own codes past the system's.
    assert_eq!(
        strerror(dpdk_sys::ffi::E_RTE_NO_CONFIG as i32),
        "Missing rte_config structure"
    );
}
