//! Every rule's exact message, the parser's errors (unknown keys and sections, wrong types, TOML
//! syntax), several problems at once, printing and parsing back, and the typed values' spellings.

use std::net::SocketAddr;
use std::str::FromStr;

use flowsteer_config::{
    AppKind, Balance, Config, Distribution, Driver, Fanout, Idle, Mac, MissPolicy, PcapPace,
    Problem, Profile, Rate, RssKey,
};

mod common;
use common::{problem, problems, valid};

// ---------------------------------------------------------------- ranges, one key at a time

#[test]
fn engine_threads_range() {
    assert_eq!(
        problem("[engine]\nthreads = 0"),
        "engine.threads: must be 1..=64, got 0"
    );
    assert_eq!(
        problem("[engine]\nthreads = 65"),
        "engine.threads: must be 1..=64, got 65"
    );
    assert_eq!(
        valid("[engine]\nthreads = 1\n[port]\nqueues = 1")
            .engine
            .threads,
        1
    );
}

#[test]
fn engine_cores_each_below_1024() {
    assert_eq!(
        problem("[engine]\ncores = [0, 1024]"),
        "engine.cores[1]: must be 0..=1023, got 1024"
    );
    assert_eq!(
        valid("[engine]\ncores = [1023, 0]").engine.cores,
        vec![1023, 0]
    );
}

#[test]
fn engine_cores_distinct() {
    assert_eq!(
        problem("[engine]\ncores = [3, 3]"),
        "engine.cores[1]: must differ from engine.cores[0] (3), got 3"
    );
}

#[test]
fn engine_burst_range() {
    assert_eq!(
        problem("[engine]\nburst = 0"),
        "engine.burst: must be 1..=256, got 0"
    );
    assert_eq!(
        problem("[engine]\nburst = 257"),
        "engine.burst: must be 1..=256, got 257"
    );
}

#[test]
fn engine_drain_limit_range() {
    assert_eq!(
        problem("[engine]\ndrain_limit = 0"),
        "engine.drain_limit: must be 1..=1048576, got 0"
    );
}

#[test]
fn engine_idle_sleep_us_range() {
    assert_eq!(
        problem("[engine]\nidle_sleep_us = 0"),
        "engine.idle_sleep_us: must be 1..=100000, got 0"
    );
    assert_eq!(
        problem("[engine]\nidle = \"sleep\"\nidle_sleep_us = 100001"),
        "engine.idle_sleep_us: must be 1..=100000, got 100001"
    );
}

#[test]
fn engine_idle_wait_needs_a_port_that_can_wake_a_thread() {
    assert_eq!(
        problem("[engine]\nidle = \"wait\""),
        "engine.idle: \"wait\" needs a port whose queues can wake a sleeping thread \
         (port.driver \"afpacket\"), got port.driver \"uveth\""
    );
}

#[test]
fn pool_buffers_range() {
    assert_eq!(
        problem("[pool]\nbuffers = 1000"),
        "pool.buffers: must be 1024..=4194304, got 1000"
    );
    assert_eq!(
        problem("[pool]\nbuffers = 4194305"),
        "pool.buffers: must be 1024..=4194304, got 4194305"
    );
}

#[test]
fn pool_data_room_range() {
    assert_eq!(
        problem("[pool]\ndata_room = 100"),
        "pool.data_room: must be 128..=9216, got 100"
    );
    assert_eq!(
        problem("[pool]\ndata_room = 9217"),
        "pool.data_room: must be 128..=9216, got 9217"
    );
}

#[test]
fn pool_cache_range() {
    assert_eq!(
        problem("[pool]\ncache = 1025"),
        "pool.cache: must be 0..=1024, got 1025"
    );
    assert_eq!(valid("[pool]\ncache = 0").pool.cache, 0);
}

#[test]
fn flowtable_capacity_range() {
    assert_eq!(
        problem("[flowtable]\ncapacity = 0"),
        "flowtable.capacity: must be 1..=67108864, got 0"
    );
    assert_eq!(
        problem("[flowtable]\ncapacity = 67108865"),
        "flowtable.capacity: must be 1..=67108864, got 67108865"
    );
}

#[test]
fn flowtable_ipv6_capacity_range_and_bound() {
    assert_eq!(
        problem("[flowtable]\nipv6_capacity = 67108865"),
        "flowtable.ipv6_capacity: must be 0..=67108864, got 67108865"
    );
    assert!(
        problem("[flowtable]\nipv6_capacity = -1").starts_with("flowtable.ipv6_capacity: must be")
    );
    let ipv4_only = valid("[flowtable]\ncapacity = 1000\nipv6_capacity = 0");
    assert_eq!(ipv4_only.flowtable.effective_ipv6_capacity(), 0);
    // Unset, or beyond the capacity: the capacity bounds the IPv6 rules alone.
    assert_eq!(
        valid("[flowtable]\ncapacity = 1000")
            .flowtable
            .effective_ipv6_capacity(),
        1000
    );
    let beyond = valid("[flowtable]\ncapacity = 1000\nipv6_capacity = 5000");
    assert_eq!(beyond.flowtable.effective_ipv6_capacity(), 1000);
}

#[test]
fn swq_size_power_of_two() {
    assert_eq!(
        problem("[swq]\nsize = 1000"),
        "swq.size: must be a power of two 2..=1048576, got 1000"
    );
    assert_eq!(
        problem("[swq]\nsize = 1\n[engine]\ndrain_limit = 1"),
        "swq.size: must be a power of two 2..=1048576, got 1"
    );
    assert_eq!(
        problem("[swq]\nsize = 2097152"),
        "swq.size: must be a power of two 2..=1048576, got 2097152"
    );
}

#[test]
fn port_queues_range() {
    assert_eq!(
        problem("[port]\nqueues = 0"),
        "port.queues: must be 1..=64, got 0"
    );
}

#[test]
fn port_reta_size_power_of_two() {
    assert_eq!(
        problem("[port]\nreta_size = 96"),
        "port.reta_size: must be a power of two 1..=4096, got 96"
    );
    assert_eq!(
        problem("[port]\nreta_size = 8192"),
        "port.reta_size: must be a power of two 1..=4096, got 8192"
    );
}

#[test]
fn port_ring_size_power_of_two() {
    assert_eq!(
        problem("[port]\nring_size = 1000"),
        "port.ring_size: must be a power of two 2..=1048576, got 1000"
    );
}

#[test]
fn port_mac_unicast() {
    assert_eq!(
        problem("[port]\nmac = \"01:00:5e:00:00:01\""),
        "port.mac: must be a unicast MAC address (not all zero, low bit of the first byte \
         clear), got \"01:00:5e:00:00:01\""
    );
    assert_eq!(
        problem("[port]\nmac = \"00:00:00:00:00:00\""),
        "port.mac: must be a unicast MAC address (not all zero, low bit of the first byte \
         clear), got \"00:00:00:00:00:00\""
    );
}

#[test]
fn port_ipv4_unicast() {
    for ip in ["0.0.0.0", "255.255.255.255", "224.0.0.1"] {
        assert_eq!(
            problem(&format!("[port]\nipv4 = \"{ip}\"")),
            format!(
                "port.ipv4: must be a unicast IPv4 address (not unspecified, broadcast or \
                 multicast), got \"{ip}\""
            )
        );
    }
}

#[test]
fn port_ipv6_unicast() {
    for ip in ["::", "ff02::1"] {
        assert_eq!(
            problem(&format!("[port]\nipv6 = \"{ip}\"")),
            format!(
                "port.ipv6: must be a unicast IPv6 address (not unspecified or multicast), got \
                 \"{ip}\""
            )
        );
    }
}

#[test]
fn traffic_flows_range() {
    assert_eq!(
        problem("[traffic]\nflows = 0"),
        "traffic.flows: must be 1..=16777216, got 0"
    );
    assert_eq!(
        problem("[traffic]\nflows = 16777217"),
        "traffic.flows: must be 1..=16777216, got 16777217"
    );
}

#[test]
fn traffic_packet_size_range() {
    assert_eq!(
        problem("[traffic]\npacket_size = 59"),
        "traffic.packet_size: must be 60..=1514, got 59"
    );
    assert_eq!(
        problem("[traffic]\npacket_size = 1515"),
        "traffic.packet_size: must be 60..=1514, got 1515"
    );
}

#[test]
fn traffic_shares_range() {
    assert_eq!(
        problem("[traffic]\nipv6_share = 1.5"),
        "traffic.ipv6_share: must be 0.0..=1.0, got 1.5"
    );
    assert_eq!(
        problem("[traffic]\nipv6_share = -0.25"),
        "traffic.ipv6_share: must be 0.0..=1.0, got -0.25"
    );
    assert_eq!(
        problem("[traffic]\nudp_share = nan"),
        "traffic.udp_share: must be 0.0..=1.0, got nan"
    );
}

#[test]
fn traffic_zipf_s_range() {
    assert_eq!(
        problem("[traffic]\nzipf_s = 0.0"),
        "traffic.zipf_s: must be > 0.0 and <= 10.0, got 0.0"
    );
    assert_eq!(
        problem("[traffic]\ndistribution = \"zipf\"\nzipf_s = 10.5"),
        "traffic.zipf_s: must be > 0.0 and <= 10.0, got 10.5"
    );
    assert_eq!(valid("[traffic]\nzipf_s = 10.0").traffic.zipf_s, 10.0);
}

#[test]
fn traffic_churn_rate_range() {
    assert_eq!(
        problem("[traffic]\nchurn_rate = 0"),
        "traffic.churn_rate: must be 1..=10000000, got 0"
    );
}

#[test]
fn traffic_port_base_range() {
    assert_eq!(
        problem("[traffic]\nport_base = 0"),
        "traffic.port_base: must be 1..=65535, got 0"
    );
}

#[test]
fn traffic_seed_range_of_a_config_built_in_code() {
    let mut config = Config::default();
    config.traffic.seed = u64::MAX;
    let error = config.validate().unwrap_err();
    assert_eq!(
        error.to_string(),
        "traffic.seed: must be 0..=9223372036854775807, got 18446744073709551615"
    );
    // Such a seed has no TOML spelling: the printer says so instead of writing a bad file.
    let text = config.to_toml_string();
    assert!(
        text.contains("# [traffic] cannot be written as TOML:"),
        "{text}"
    );
    assert_eq!(
        valid(&format!("[traffic]\nseed = {}", i64::MAX))
            .traffic
            .seed,
        i64::MAX as u64
    );
}

// ---------------------------------------------------------------- rules between keys

#[test]
fn port_queues_at_most_threads() {
    assert_eq!(
        problem("[engine]\nthreads = 2\n[port]\nqueues = 3"),
        "port.queues: must be <= engine.threads (2), got 3"
    );
}

#[test]
fn fewer_queues_profile_needs_fewer_queues_than_threads() {
    assert_eq!(
        problem("[engine]\nthreads = 2\n[port]\nqueues = 2\n[traffic]\nprofile = \"fewer-queues\""),
        "port.queues: must be < engine.threads (2) for traffic.profile \"fewer-queues\", got 2"
    );
    valid("[engine]\nthreads = 3\n[port]\nqueues = 2\n[traffic]\nprofile = \"fewer-queues\"");
}

#[test]
fn engine_cores_one_per_thread() {
    assert_eq!(
        problem("[engine]\nthreads = 2\ncores = [0, 1, 2]"),
        "engine.cores: must be empty or hold engine.threads (2) cores, got [0, 1, 2]"
    );
    assert_eq!(
        valid("[engine]\nthreads = 2\ncores = [1, 0]").engine.cores,
        vec![1, 0]
    );
}

#[test]
fn drain_limit_at_most_swq_size() {
    assert_eq!(
        problem("[engine]\ndrain_limit = 2048\n[swq]\nsize = 1024"),
        "engine.drain_limit: must be <= swq.size (1024), got 2048"
    );
    valid("[engine]\ndrain_limit = 1024\n[swq]\nsize = 1024");
}

#[test]
fn packet_size_holds_the_headers_of_the_mix() {
    assert_eq!(
        problem("[traffic]\npacket_size = 64"),
        "traffic.packet_size: must be >= 70 (Ethernet 14 + IPv4 20 (traffic.ipv6_share 0.0) + \
         TCP 20 (traffic.udp_share 0.0) + generator stamp 16), got 64"
    );
    assert_eq!(
        problem("[traffic]\nipv6_share = 0.5\nudp_share = 0.25\npacket_size = 89"),
        "traffic.packet_size: must be >= 90 (Ethernet 14 + IPv6 40 (traffic.ipv6_share 0.5) + \
         TCP 20 (traffic.udp_share 0.25) + generator stamp 16), got 89"
    );
    assert_eq!(
        problem("[traffic]\nipv6_share = 1.0\nudp_share = 1.0\npacket_size = 77"),
        "traffic.packet_size: must be >= 78 (Ethernet 14 + IPv6 40 (traffic.ipv6_share 1.0) + \
         UDP 8 (traffic.udp_share 1.0) + generator stamp 16), got 77"
    );
    // UDP over IPv4 needs 58 bytes, less than the smallest Ethernet frame.
    let udp4 = valid("[traffic]\nudp_share = 1.0\npacket_size = 60");
    assert_eq!(udp4.traffic.min_packet_size(), 60);
}

#[test]
fn data_room_holds_a_packet() {
    assert_eq!(
        problem("[pool]\ndata_room = 1024\n[traffic]\npacket_size = 1500"),
        "pool.data_room: must be >= traffic.packet_size (1500), got 1024"
    );
    valid("[pool]\ndata_room = 1514\n[traffic]\npacket_size = 1514");
}

#[test]
fn listen_ports_stay_below_65536() {
    assert_eq!(
        problem("[engine]\nthreads = 4\n[traffic]\nport_base = 65533"),
        "traffic.port_base: must be <= 65532 (thread i listens on port_base + i, engine.threads \
         (4)), got 65533"
    );
    valid("[engine]\nthreads = 4\n[traffic]\nport_base = 65532");
}

#[test]
fn reta_holds_every_queue() {
    assert_eq!(
        problem("[engine]\nthreads = 4\n[port]\nqueues = 4\nreta_size = 2"),
        "port.reta_size: must be >= port.queues (4), got 2"
    );
    valid("[engine]\nthreads = 4\n[port]\nqueues = 4\nreta_size = 4");
}

#[test]
fn pool_buffers_enough_for_the_run() {
    assert_eq!(
        problem("[pool]\nbuffers = 4096"),
        "pool.buffers: must be >= 7168 for this configuration: engine.threads (2) * \
         (pool.cache (256) + swq.size (1024) + 2 * engine.burst (32) + engine.drain_limit (64) \
         + port.queues (2) * min(pool.cache / 2, 64)) + 2 * port.queues * port.ring_size (1024), \
         got 4096"
    );
    let exact = valid("[pool]\nbuffers = 7168");
    assert_eq!(exact.min_pool_buffers(), 7168);
}

#[test]
fn the_pool_split_leaves_each_queue_buffers_above_the_watermark() {
    // 16384: 4096 shared, 6144 per queue.
    assert_eq!(
        problem("[pool]\nlow_watermark = 6144"),
        "pool.low_watermark: must be < 6144: the buffers of each queue's L1 pool (6144: \
         pool.buffers (16384) less pool.shared_percent (25)%, over port.queues (2)), got 6144"
    );
    valid("[pool]\nlow_watermark = 6143");
    assert_eq!(
        problem(
            "[pool]\nlow_watermark = 5200\n[port]\ndriver = \"dpdk\"\ndevice = \"net_null0\"\n\
             [traffic]\nprofile = \"none\""
        ),
        "pool.low_watermark: must be < 5120: the buffers of each queue's L1 pool (6144: \
         pool.buffers (16384) less pool.shared_percent (25)%, over port.queues (2)) less \
         port.rx_descriptors (1024), got 5200"
    );
    assert_eq!(
        problem("[pool]\nshared_percent = 101"),
        "pool.shared_percent: must be 0..=100, got 101"
    );
    // One level: no L1 pool, so the watermark is not checked against one.
    valid("[pool]\nshared_percent = 100\nlow_watermark = 6144");
}

#[test]
fn threads_without_a_queue_need_a_shared_pool() {
    assert_eq!(
        problem("[engine]\nthreads = 3\n[pool]\nshared_percent = 0"),
        "pool.shared_percent: must be > 0 when engine.threads (3) > port.queues (2): the threads \
         without a queue draw from the shared pool, got 0"
    );
    let all_queued = valid("[pool]\nshared_percent = 0");
    assert_eq!(all_queued.pool_split().per_queue, 8192);
}

#[test]
fn pool_buffers_minimum_beyond_the_largest_pool_says_what_to_lower() {
    assert_eq!(
        problem("[engine]\nthreads = 8\n[swq]\nsize = 1048576"),
        "pool.buffers: must be >= 8396800 for this configuration: engine.threads (8) * \
         (pool.cache (256) + swq.size (1048576) + 2 * engine.burst (32) + engine.drain_limit \
         (64) + port.queues (2) * min(pool.cache / 2, 64)) + 2 * port.queues * port.ring_size \
         (1024); that is more than the largest pool (4194304): lower swq.size, port.ring_size, \
         pool.cache or engine.threads, got 16384"
    );
}

#[test]
fn rules_between_keys_skip_keys_already_rejected() {
    // threads = 0 is reported once; queues (2) > threads (0) is not piled onto it.
    assert_eq!(
        problems("[engine]\nthreads = 0\n[port]\nqueues = 2"),
        vec!["engine.threads: must be 1..=64, got 0"]
    );
    // A key of the wrong type keeps its default, which no rule compares against.
    assert_eq!(
        problems("[swq]\nsize = \"big\"\n[engine]\ndrain_limit = 2048"),
        vec!["swq.size: must be a power of two 2..=1048576, got \"big\""]
    );
}

// ---------------------------------------------------------------- the parser

#[test]
fn unknown_key_in_every_section() {
    let sections = [
        (
            "engine",
            "threads, cores, balance, miss, burst, drain_limit, idle, idle_sleep_us, on_failure, stall_ms, restart_limit",
        ),
        (
            "pool",
            "buffers, data_room, cache, shared_percent, low_watermark",
        ),
        ("flowtable", "capacity, ipv6_capacity"),
        ("swq", "size"),
        (
            "port",
            "driver, interface, queues, fanout, rss_key, reta_size, ring_size, rx_ring, frames, \
             block_size, blocks, block_timeout_ms, qdisc_bypass, device, eal_args, rx_descriptors, \
             tx_descriptors, pcap_file, pcap_pace, mac, ipv4, ipv4_prefix, ipv6, \
             ipv6_prefix",
        ),
        (
            "stack",
            "tcp_rx_buffer, tcp_tx_buffer, udp_buffer, max_connections, idle_timeout_s, \
             keepalive_timeout_s, syn_timeout_ms, neighbor_wait_ms, app",
        ),
        (
            "traffic",
            "profile, flows, packet_size, ipv6_share, udp_share, distribution, zipf_s, rate, \
             churn_rate, flow_packets, port_base, seed",
        ),
        ("metrics", "enabled, listen"),
        ("fault", "kind, thread, after_ms, stall_for_ms"),
    ];
    for (section, keys) in sections {
        assert_eq!(
            problem(&format!("[{section}]\nbogus = 1")),
            format!("{section}.bogus: unknown key (expected one of: {keys})")
        );
    }
    assert_eq!(
        problem("[engine]\nthread = 2"),
        "engine.thread: unknown key (expected one of: threads, cores, balance, miss, burst, \
         drain_limit, idle, idle_sleep_us, on_failure, stall_ms, restart_limit)"
    );
    // A key that is not a bare TOML key is quoted in the path.
    assert!(problem("[engine]\n\"idle sleep\" = 1")
        .starts_with("engine.\"idle sleep\": unknown key (expected one of: threads,"));
}

/// The keys that selected a baseline table or ring are unknown keys now, and say why.
#[test]
fn removed_implementation_keys_are_unknown_and_say_why() {
    assert_eq!(
        problems("[flowtable]\nimplementation = \"bucketized\"\n[swq]\nring = \"crossbeam\""),
        vec![
            "flowtable.implementation: unknown key (expected one of: capacity, ipv6_capacity); \
             removed: the flow table is always the bucketized one; delete the line (the dashmap \
             baseline is measured by flowsteer-bench)",
            "swq.ring: unknown key (expected one of: size); removed: the software queues are \
             always the burst ring; delete the line (the crossbeam baseline is measured by \
             flowsteer-bench)",
        ]
    );
    // Only those paths: a key of that name in another section is a plain unknown key.
    assert_eq!(
        problem("[pool]\nring = \"burst\""),
        "pool.ring: unknown key (expected one of: buffers, data_room, cache, shared_percent, \
         low_watermark)"
    );
}

#[test]
fn unknown_section() {
    assert_eq!(
        problem("[engin]\nthreads = 2"),
        "engin: unknown section (expected one of: engine, pool, flowtable, swq, port, stack, \
         traffic, metrics, fault)"
    );
}

#[test]
fn section_that_is_not_a_table() {
    assert_eq!(
        problem("engine = 5"),
        "engine: must be a table of keys (threads, cores, balance, miss, burst, drain_limit, \
         idle, idle_sleep_us, on_failure, stall_ms, restart_limit), got 5"
    );
}

#[test]
fn wrong_type() {
    assert_eq!(
        problem("[engine]\nthreads = \"two\""),
        "engine.threads: must be an integer 1..=64, got \"two\""
    );
    assert_eq!(
        problem("[engine]\nthreads = 70000"),
        "engine.threads: must be an integer 1..=64, got 70000"
    );
    assert_eq!(
        problem("[engine]\ncores = [1, \"a\"]"),
        "engine.cores: must be an array of distinct core numbers 0..=1023, got [1, \"a\"]"
    );
    assert_eq!(
        problem("[engine]\nbalance = \"fast\""),
        "engine.balance: must be \"rss\" or \"software\", got \"fast\""
    );
    assert_eq!(
        problem("[metrics]\nenabled = \"yes\""),
        "metrics.enabled: must be true or false, got \"yes\""
    );
    assert_eq!(
        problem("[metrics]\nlisten = \"localhost\""),
        "metrics.listen: must be a socket address such as \"127.0.0.1:9464\", got \"localhost\""
    );
    assert_eq!(
        problem("[port]\nipv4 = \"198.18.0\""),
        "port.ipv4: must be a unicast IPv4 address such as \"198.18.0.1\", got \"198.18.0\""
    );
}

#[test]
fn toml_syntax_error_has_line_and_column() {
    let error = Config::from_toml_str("[engine]\nthreads = 2\nburst = = 3\n").unwrap_err();
    match error.problems() {
        [Problem::Syntax { line, column, .. }] => {
            assert_eq!((*line, *column), (3, 9));
        }
        other => panic!("expected one syntax problem, got {other:#?}"),
    }
    assert!(
        error
            .to_string()
            .starts_with("TOML syntax error at line 3, column 9: "),
        "{error}"
    );
    assert_eq!(error.to_string().lines().count(), 1);
}

#[test]
fn duplicate_key_is_a_syntax_error() {
    let error = Config::from_toml_str("[engine]\nthreads = 2\nthreads = 3\n").unwrap_err();
    assert!(
        matches!(error.problems(), [Problem::Syntax { line: 3, .. }]),
        "{error:?}"
    );
}

#[test]
fn duplicate_key_names_the_key() {
    let cases = [
        ("[engine]\nthreads = 2\nthreads = 3\n", "engine.threads", 3),
        ("[engine]\nthreads = 2\n[engine]\nburst = 3\n", "engine", 3),
        (
            "engine.threads = 2\nengine . threads = 3\n",
            "engine.threads",
            2,
        ),
        (
            "engine = { threads = 2, threads = 3 }\n",
            "engine.threads",
            1,
        ),
        (
            "[[stack.app]]\nkind = \"tcp-echo\"\nport = 7\n\n[[stack.app]]\nport = 7\nport = 8\n",
            "stack.app[1].port",
            7,
        ),
        (
            "[port]\nqueues = 1\n\n[metrics]\nlisten = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:2\"\n",
            "metrics.listen",
            6,
        ),
    ];
    for (text, path, at_line) in cases {
        let error = Config::from_toml_str(text).unwrap_err();
        match error.problems() {
            [problem @ Problem::Syntax { line, .. }] => {
                assert_eq!(*line, at_line, "{text}");
                assert_eq!(problem.path(), Some(path), "{text}");
            }
            other => panic!("expected one syntax problem for {text:?}, got {other:#?}"),
        }
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("TOML syntax error at line {at_line}, column "))
                && message.ends_with(&format!(": duplicate key {path}")),
            "{message}"
        );
    }
}

#[test]
fn a_value_the_parser_cannot_read_names_its_key() {
    for (text, path) in [
        ("[engine]\nthreads = tru\n", "engine.threads"),
        ("[engine]\nthreads = 0x_ff\n", "engine.threads"),
        ("[engine]\ncores = [1, 2x]\n", "engine.cores[1]"),
        ("[metrics]\nlisten = \"127.0.0.1:1\n", "metrics.listen"),
        (
            "[[stack.app]]\nkind = \"tcp-echo\"\nport = 7 8\n",
            "stack.app[0].port",
        ),
    ] {
        let error = Config::from_toml_str(text).unwrap_err();
        match error.problems() {
            [problem @ Problem::Syntax { .. }] => assert_eq!(problem.path(), Some(path), "{text}"),
            other => panic!("expected one syntax problem for {text:?}, got {other:#?}"),
        }
        let message = error.to_string();
        assert!(
            message.starts_with("TOML syntax error at line ")
                && message.ends_with(&format!(" (the value of {path})")),
            "{message}"
        );
    }
    // An error outside any value names no key.
    let error = Config::from_toml_str("[engine\nthreads = 2\n").unwrap_err();
    assert_eq!(error.problems()[0].path(), None, "{error}");
}

#[test]
fn integer_beyond_64_bits_names_the_key() {
    let big = "99999999999999999999";
    assert_eq!(
        problem(&format!("[engine]\nthreads = {big}")),
        format!("engine.threads: must be an integer 1..=64, got {big}")
    );
    assert_eq!(
        problem(&format!("[engine]\nthreads = -{big}")),
        format!("engine.threads: must be an integer 1..=64, got -{big}")
    );
    assert_eq!(
        problem(&format!("[engine]\ncores = [1, {big}]")),
        format!("engine.cores: must be an array of distinct core numbers 0..=1023, got [1, {big}]")
    );
    // A key of any type refuses it, with the value as written (hex too).
    assert_eq!(
        problem("[port]\ndriver = \"afpacket\"\ninterface = 0xffffffffffffffffff\n[traffic]\nprofile = \"none\""),
        "port.interface: must be an interface name of 1..=15 bytes without '/', ':', \
         whitespace or NUL, not \".\" or \"..\", got 0xffffffffffffffffff"
    );
    let all = problems(&format!(
        "[traffic]\nprofile = \"none\"\n\n[[stack.app]]\nkind = \"tcp-echo\"\nport = {big}\n\n\
         [metrics]\nlisten = {big}\nbogus = {big}\n"
    ));
    assert_eq!(
        all,
        vec![
            format!("stack.app[0].port: must be an integer 1..=65535, got {big}"),
            format!(
                "metrics.listen: must be a socket address such as \"127.0.0.1:9464\", got {big}"
            ),
            "metrics.bogus: unknown key (expected one of: enabled, listen)".to_string(),
        ]
    );
    // A float beyond f64 the same; `inf` is a float like any other.
    assert_eq!(
        problem("[traffic]\nzipf_s = 1e999"),
        "traffic.zipf_s: must be a number > 0.0 and <= 10.0, got 1e999"
    );
    assert_eq!(
        problem("[traffic]\nzipf_s = inf"),
        "traffic.zipf_s: must be > 0.0 and <= 10.0, got inf"
    );
    // Nothing else is mistaken for one: the largest 64-bit integers are ordinary values.
    assert_eq!(
        problem("[traffic]\nseed = 9223372036854775807\nflows = -9223372036854775808"),
        "traffic.flows: must be an integer 1..=16777216, got -9223372036854775808"
    );
}

#[test]
fn a_long_value_is_cut_in_messages() {
    let long = "x".repeat(10 * 1024 * 1024);
    let message = problem(&format!("[metrics]\nlisten = \"{long}\""));
    assert_eq!(
        message,
        format!(
            "metrics.listen: must be a socket address such as \"127.0.0.1:9464\", got \"{}… \
             ({} bytes)",
            "x".repeat(63),
            long.len() + 2
        )
    );
    // In the rules checked after parsing too, and in a key's name.
    let message = problem(&format!(
        "[port]\ndriver = \"afpacket\"\ninterface = \"{long}\"\n[traffic]\nprofile = \"none\""
    ));
    assert!(
        message.starts_with("port.interface: must be an interface name"),
        "{}",
        &message[..200.min(message.len())]
    );
    assert!(message.len() < 400, "{} bytes", message.len());
    let message = problem(&format!("[engine]\n{long} = 1"));
    assert!(message.starts_with("engine.xxxx"), "{}", &message[..100]);
    assert!(message.len() < 400, "{} bytes", message.len());
    // Short values are whole.
    assert!(problem("[metrics]\nlisten = \"localhost\"").ends_with("got \"localhost\""));
}

#[test]
fn many_problems_are_listed_up_to_a_cap() {
    let keys: String = (0..900_000).map(|i| format!("k{i} = 1\n")).collect();
    let error = Config::from_toml_str(&format!("[engine]\n{keys}")).unwrap_err();
    assert_eq!(error.problems().len(), flowsteer_config::MAX_PROBLEMS);
    assert_eq!(error.omitted(), 900_000 - flowsteer_config::MAX_PROBLEMS);
    let message = error.to_string();
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines.len(), flowsteer_config::MAX_PROBLEMS + 1);
    assert!(
        lines[0].starts_with("engine.k0: unknown key"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[20], "... and 899980 more problems");
    // Under the cap, every problem is listed and nothing is said of more.
    let error = Config::from_toml_str("[engine]\na = 1\nb = 2\n").unwrap_err();
    assert_eq!((error.problems().len(), error.omitted()), (2, 0));
    assert_eq!(error.to_string().lines().count(), 2);
}

#[test]
fn many_apps_are_checked_without_comparing_every_pair() {
    // Every app after the first clashes with it: each is reported (the first 20 listed), and
    // the check stays linear (it used to compare, and format, every pair).
    let n = 20_000;
    let apps: String = (0..n)
        .map(|_| "[[stack.app]]\nkind = \"tcp-echo\"\nport = 7\n".to_string())
        .collect();
    let error =
        Config::from_toml_str(&format!("[traffic]\nprofile = \"none\"\n\n{apps}")).unwrap_err();
    assert_eq!(error.problems().len() + error.omitted(), n - 1);
    assert!(
        error.problems()[0]
            .to_string()
            .starts_with("stack.app[1].port: must differ from stack.app[0].port (7)"),
        "{error}"
    );
    // Apps on distinct ports pass.
    let apps: String = (0..n)
        .map(|i| format!("[[stack.app]]\nkind = \"tcp-echo\"\nport = {}\n", i + 1))
        .collect();
    assert_eq!(
        valid(&format!("[traffic]\nprofile = \"none\"\n\n{apps}"))
            .stack
            .app
            .len(),
        n
    );
}

#[test]
fn several_problems_reported_together() {
    let text = "\
[engine]
threads = 0
burst = 0
speed = 9

[pool]
cache = \"many\"

[traffic]
rate = 0
ipv6_share = 2.0

[extra]
";
    let error = Config::from_toml_str(text).unwrap_err();
    assert_eq!(
        error
            .problems()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec![
            "engine.speed: unknown key (expected one of: threads, cores, balance, miss, burst, \
             drain_limit, idle, idle_sleep_us, on_failure, stall_ms, restart_limit)",
            "pool.cache: must be an integer 0..=1024, got \"many\"",
            "extra: unknown section (expected one of: engine, pool, flowtable, swq, port, \
             stack, traffic, metrics, fault)",
            "engine.threads: must be 1..=64, got 0",
            "engine.burst: must be 1..=256, got 0",
            "traffic.ipv6_share: must be 0.0..=1.0, got 2.0",
            "traffic.rate: must be \"max\" or 1..=1000000000, got 0",
        ]
    );
    // One problem per line.
    assert_eq!(error.to_string().lines().count(), 7);
    assert_eq!(error.problems()[0].path(), Some("engine.speed"));
}

#[test]
fn validate_collects_every_problem_of_a_config_built_in_code() {
    let mut config = Config::default();
    config.engine.threads = 0;
    config.swq.size = 3;
    config.port.reta_size = 0;
    let error = config.validate().unwrap_err();
    assert_eq!(
        error.to_string(),
        "engine.threads: must be 1..=64, got 0\n\
         swq.size: must be a power of two 2..=1048576, got 3\n\
         port.reta_size: must be a power of two 1..=4096, got 0"
    );
}

#[test]
fn load_reports_an_unreadable_file() {
    let path = std::env::temp_dir().join(format!(
        "flowsteer-config-missing-{}.toml",
        std::process::id()
    ));
    let error = Config::load(&path).unwrap_err();
    match error.problems() {
        [Problem::Read { file, reason }] => {
            assert_eq!(file, &path);
            assert!(!reason.is_empty());
        }
        other => panic!("expected one read problem, got {other:#?}"),
    }
    assert!(error
        .to_string()
        .starts_with(&format!("{}: cannot read: ", path.display())));
}

#[test]
fn load_parses_and_validates_a_file() {
    let dir = std::env::temp_dir();
    let good = dir.join(format!("flowsteer-config-good-{}.toml", std::process::id()));
    let bad = dir.join(format!("flowsteer-config-bad-{}.toml", std::process::id()));
    std::fs::write(&good, "[engine]\nburst = 64\n").expect("temp dir is writable");
    std::fs::write(&bad, "[engine]\nburst = 0\n").expect("temp dir is writable");
    let loaded = Config::load(&good);
    let rejected = Config::load(&bad);
    let _ = std::fs::remove_file(&good);
    let _ = std::fs::remove_file(&bad);
    assert_eq!(loaded.expect("valid file").engine.burst, 64);
    assert_eq!(
        rejected.unwrap_err().to_string(),
        "engine.burst: must be 1..=256, got 0"
    );
}

// ---------------------------------------------------------------- printing

#[test]
fn default_round_trips() {
    let config = Config::default();
    let text = config.to_toml_string();
    assert_eq!(valid(&text), config);
    assert_eq!(valid(""), config);
}

#[test]
fn non_default_round_trips() {
    let mut config = Config::default();
    config.engine.threads = 4;
    config.engine.cores = vec![3, 2, 1, 0];
    config.engine.balance = Balance::Rss;
    config.engine.miss = MissPolicy::Drop;
    config.engine.burst = 64;
    config.engine.drain_limit = 512;
    config.engine.idle = Idle::Sleep;
    config.engine.idle_sleep_us = 7;
    config.pool.buffers = 65536;
    config.pool.data_room = 9216;
    config.pool.cache = 0;
    config.flowtable.capacity = 12345;
    config.flowtable.ipv6_capacity = 0;
    config.swq.size = 4096;
    config.port.queues = 3;
    config.port.rss_key = RssKey::Custom(core::array::from_fn(|i| i as u8 * 3));
    config.port.reta_size = 512;
    config.port.ring_size = 2048;
    config.port.mac = Mac([0x0a, 0xbc, 0xde, 0xf0, 0x12, 0x34]);
    config.port.ipv4 = "10.1.2.3".parse().expect("literal");
    config.port.ipv6 = "fd00::42".parse().expect("literal");
    config.traffic.profile = Profile::FewerQueues;
    config.traffic.flows = 100_000;
    config.traffic.packet_size = 1514;
    config.traffic.ipv6_share = 0.1;
    config.traffic.udp_share = 1.0 / 3.0;
    config.traffic.distribution = Distribution::Zipf;
    config.traffic.zipf_s = 0.99;
    config.traffic.rate = Rate::Pps(2_500_000);
    config.traffic.churn_rate = 77;
    config.traffic.flow_packets = 9;
    config.traffic.port_base = 65532;
    config.traffic.seed = i64::MAX as u64;
    config.metrics.enabled = false;
    config.metrics.listen = SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 0));
    assert_eq!(config.validate(), Ok(()));

    let text = config.to_toml_string();
    assert_eq!(valid(&text), config, "{text}");
    assert!(text.contains("rate = 2500000 "), "{text}");
    assert!(text.contains("listen = \"[::1]:0\" "), "{text}");
}

#[test]
fn every_key_is_printed_with_a_comment() {
    let text = Config::default().to_toml_string();
    let assignments: Vec<&str> = text.lines().filter(|l| l.contains(" = ")).collect();
    assert_eq!(assignments.len(), 11 + 5 + 2 + 1 + 24 + 9 + 12 + 2 + 4);
    for line in assignments {
        let (_, comment) = line
            .split_once(" # ")
            .unwrap_or_else(|| panic!("no comment on {line:?}"));
        assert!(!comment.trim().is_empty(), "{line:?}");
    }
    assert!(text.contains("threads = 2                  # an integer 1..=64\n"));
    assert!(text.contains("balance = \"software\"         # \"rss\" or \"software\"\n"));
}

// ---------------------------------------------------------------- typed values

/// Checks that every spelling parses (alone and in a file) and prints back unchanged. `context`
/// follows the key in its section: more keys of that section, then other sections.
fn check_spellings<T>(all: &[T], names: &[&str], key: &str, context: &str)
where
    T: FromStr + std::fmt::Display + std::fmt::Debug + PartialEq + Copy,
    T::Err: std::fmt::Debug,
{
    assert_eq!(all.len(), names.len());
    let (section, name) = key.rsplit_once('.').expect("section.key");
    // `stack.app.kind`: a key of an array-of-tables entry.
    let header = if section.contains('.') {
        format!("[[{section}]]")
    } else {
        format!("[{section}]")
    };
    for (value, spelling) in all.iter().zip(names) {
        assert_eq!(spelling.parse::<T>().expect("spelling parses"), *value);
        assert_eq!(value.to_string(), *spelling);
        let text = format!("{header}\n{name} = \"{spelling}\"\n{context}\n");
        let printed = valid(&text).to_toml_string();
        let expected = format!("\n{name} = \"{spelling}\"");
        assert!(
            printed.contains(&expected),
            "{expected:?} not in\n{printed}"
        );
    }
}

#[test]
fn every_enum_spelling_parses_and_prints_back() {
    check_spellings(Balance::ALL, &["rss", "software"], "engine.balance", "");
    check_spellings(
        MissPolicy::ALL,
        &["local", "rss", "drop"],
        "engine.miss",
        "",
    );
    // `wait` needs an afpacket port.
    check_spellings(
        Idle::ALL,
        &["spin", "yield", "sleep", "wait"],
        "engine.idle",
        "[port]\ndriver = \"afpacket\"\ninterface = \"eth0\"\n[traffic]\nprofile = \"none\"",
    );
    // Each driver needs its own interface setting, so the two are checked one at a time.
    assert_eq!(
        Driver::ALL,
        &[Driver::Uveth, Driver::AfPacket, Driver::Dpdk, Driver::Pcap]
    );
    check_spellings(&[Driver::Uveth], &["uveth"], "port.driver", "");
    check_spellings(
        &[Driver::AfPacket],
        &["afpacket"],
        "port.driver",
        "interface = \"eth0\"\n[traffic]\nprofile = \"none\"",
    );
    check_spellings(
        &[Driver::Dpdk],
        &["dpdk"],
        "port.driver",
        "device = \"net_null0\"\n[traffic]\nprofile = \"none\"",
    );
    check_spellings(
        &[Driver::Pcap],
        &["pcap"],
        "port.driver",
        "pcap_file = \"trace.pcap\"\n[traffic]\nprofile = \"none\"",
    );
    check_spellings(PcapPace::ALL, &["full", "capture"], "port.pcap_pace", "");
    check_spellings(
        Profile::ALL,
        &["rss-friendly", "listeners", "fewer-queues", "churn", "none"],
        "traffic.profile",
        "[engine]\nthreads = 3",
    );
    check_spellings(Fanout::ALL, &["hash", "lb", "cpu"], "port.fanout", "");
    // Only a tcp-proxy takes an upstream, and it needs one: checked on its own.
    assert_eq!(AppKind::ALL.last(), Some(&AppKind::TcpProxy));
    check_spellings(
        &AppKind::ALL[..AppKind::ALL.len() - 1],
        &["tcp-echo", "udp-echo", "http", "discard"],
        "stack.app.kind",
        "port = 7\n[traffic]\nprofile = \"none\"",
    );
    check_spellings(
        &[AppKind::TcpProxy],
        &["tcp-proxy"],
        "stack.app.kind",
        "port = 7\nupstream = \"198.18.0.2:9000\"\n[traffic]\nprofile = \"none\"",
    );
    check_spellings(
        Distribution::ALL,
        &["uniform", "zipf"],
        "traffic.distribution",
        "",
    );
    check_spellings(
        &[RssKey::Microsoft, RssKey::Symmetric],
        &["microsoft", "symmetric"],
        "port.rss_key",
        "",
    );
    check_spellings(&[Rate::Max], &["max"], "traffic.rate", "");
}

#[test]
fn enum_misspelling_lists_the_alternatives() {
    assert_eq!(
        "Listeners".parse::<Profile>().unwrap_err().to_string(),
        "a traffic profile must be \"rss-friendly\", \"listeners\", \"fewer-queues\", \"churn\" or \
         \"none\", got \"Listeners\""
    );
    assert_eq!(
        problem("[traffic]\nprofile = \"rss_friendly\""),
        "traffic.profile: must be \"rss-friendly\", \"listeners\", \"fewer-queues\", \"churn\" or \
         \"none\", got \"rss_friendly\""
    );
}

const MICROSOFT_COLON: &str = "6d:5a:56:da:25:5b:0e:c2:41:67:25:3d:43:a3:8f:b0:d0:ca:2b:cb:\
                               ae:7b:30:b4:77:cb:2d:a3:80:30:f2:0c:6a:42:b7:3b:be:ac:01:fa";

#[test]
fn rss_key_named() {
    assert_eq!(RssKey::Microsoft.bytes(), RssKey::MICROSOFT_BYTES);
    assert_eq!(RssKey::MICROSOFT_BYTES[..4], [0x6d, 0x5a, 0x56, 0xda]);
    let symmetric = RssKey::Symmetric.bytes();
    assert!(symmetric.chunks(2).all(|pair| pair == [0x6d, 0x5a]));
}

#[test]
fn rss_key_hex_colon_and_plain() {
    let colon: RssKey = MICROSOFT_COLON.parse().expect("colon form");
    assert_eq!(colon, RssKey::Custom(RssKey::MICROSOFT_BYTES));
    assert_eq!(colon.bytes(), RssKey::MICROSOFT_BYTES);
    // A custom key prints as lowercase colon hex, whichever way it was written.
    assert_eq!(colon.to_string(), MICROSOFT_COLON);

    let plain: RssKey = MICROSOFT_COLON
        .replace(':', "")
        .to_uppercase()
        .parse()
        .expect("plain upper-case form");
    assert_eq!(plain, colon);

    let config = valid(&format!(
        "[port]\nrss_key = \"{}\"",
        MICROSOFT_COLON.replace(':', "")
    ));
    assert_eq!(config.port.rss_key.bytes(), RssKey::MICROSOFT_BYTES);
    assert_eq!(valid(&config.to_toml_string()), config);
}

#[test]
fn rss_key_wrong_length() {
    let short = &MICROSOFT_COLON[..MICROSOFT_COLON.len() - 3]; // 39 bytes
    let long = format!("{MICROSOFT_COLON}:00"); // 41 bytes
    let plain_short = MICROSOFT_COLON.replace(':', "")[..78].to_owned();
    let odd_digits = format!("{}0", MICROSOFT_COLON.replace(':', ""));
    for key in [
        short,
        long.as_str(),
        plain_short.as_str(),
        odd_digits.as_str(),
        "",
    ] {
        let error = key.parse::<RssKey>().unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "an RSS key must be \"microsoft\", \"symmetric\" or 40 bytes of hex \
                 (\"6d:5a:56:...\" or \"6d5a56...\"), got \"{key}\""
            )
        );
    }
    assert_eq!(
        problem("[port]\nrss_key = \"6d:5a\""),
        "port.rss_key: must be \"microsoft\", \"symmetric\" or 40 bytes of hex \
         (\"6d:5a:56:...\" or \"6d5a56...\"), got \"6d:5a\""
    );
}

#[test]
fn rss_key_bad_hex_digit() {
    let bad_colon = MICROSOFT_COLON.replacen("6d", "6g", 1);
    let bad_plain = MICROSOFT_COLON.replace(':', "").replacen("5a", "z5", 1);
    let one_digit_byte = MICROSOFT_COLON.replacen("0e", "e", 1);
    let non_ascii = format!("é{}", &MICROSOFT_COLON.replace(':', "")[2..]);
    for key in [bad_colon, bad_plain, one_digit_byte, non_ascii] {
        assert!(key.parse::<RssKey>().is_err(), "{key} parsed");
    }
    assert!("Microsoft".parse::<RssKey>().is_err());
}

#[test]
fn rate_forms() {
    assert_eq!(valid("[traffic]\nrate = \"max\"").traffic.rate, Rate::Max);
    assert_eq!(valid("[traffic]\nrate = 1").traffic.rate, Rate::Pps(1));
    assert_eq!(
        valid("[traffic]\nrate = 1_000_000_000").traffic.rate.pps(),
        Some(1_000_000_000)
    );
    assert_eq!(Rate::Max.pps(), None);
    assert_eq!(
        problem("[traffic]\nrate = 0"),
        "traffic.rate: must be \"max\" or 1..=1000000000, got 0"
    );
    assert_eq!(
        problem("[traffic]\nrate = 1000000001"),
        "traffic.rate: must be \"max\" or 1..=1000000000, got 1000000001"
    );
    assert_eq!(
        problem("[traffic]\nrate = -5"),
        "traffic.rate: must be \"max\" or an integer 1..=1000000000, got -5"
    );
    assert_eq!(
        problem("[traffic]\nrate = 1.5"),
        "traffic.rate: must be \"max\" or an integer 1..=1000000000, got 1.5"
    );
    assert_eq!(
        problem("[traffic]\nrate = \"fast\""),
        "traffic.rate: must be \"max\" or an integer 1..=1000000000, got \"fast\""
    );
    // The string form, for command lines.
    assert_eq!("max".parse::<Rate>(), Ok(Rate::Max));
    assert_eq!("250".parse::<Rate>(), Ok(Rate::Pps(250)));
    assert_eq!(
        "-1".parse::<Rate>().unwrap_err().to_string(),
        "a rate must be \"max\" or packets per second, got \"-1\""
    );
    assert_eq!(Rate::Pps(250).to_string(), "250");
    assert_eq!(Rate::Max.to_string(), "max");
}

#[test]
fn mac_forms_and_errors() {
    let colon: Mac = "0A:bc:DE:f0:12:34".parse().expect("colon form");
    assert_eq!(colon, Mac([0x0a, 0xbc, 0xde, 0xf0, 0x12, 0x34]));
    assert_eq!(colon.to_string(), "0a:bc:de:f0:12:34");
    assert_eq!("0a-bc-de-f0-12-34".parse::<Mac>(), Ok(colon));
    assert!(!colon.is_multicast());
    assert!(Mac([0xff; 6]).is_multicast());

    for bad in [
        "",
        "02:00:00:00:00",
        "02:00:00:00:00:01:02",
        "02:00:00:00:00:0g",
        "2:00:00:00:00:01",
        "002:00:00:00:00:01",
        "02:00:00-00:00:01",
        "020000000001",
    ] {
        assert_eq!(
            bad.parse::<Mac>().unwrap_err().to_string(),
            format!(
                "a MAC address must be six hex bytes such as \"02:00:00:00:00:01\", got \"{bad}\""
            )
        );
    }
    assert_eq!(
        problem("[port]\nmac = \"nope\""),
        "port.mac: must be a unicast MAC address such as \"02:00:00:00:00:01\", got \"nope\""
    );
}

#[test]
fn a_dpdk_port_names_its_device_and_only_it_does() {
    let errors = problems("[port]\ndriver = \"dpdk\"\n[traffic]\nprofile = \"none\"");
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("port.device: must name the DPDK device")),
        "{errors:?}"
    );
    let errors = problems("[port]\ndevice = \"net_null0\"");
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("port.device: must be empty for port.driver \"uveth\"")),
        "{errors:?}"
    );
    let errors = problems(
        "[port]\ndriver = \"dpdk\"\ndevice = \"net_null0\"\ninterface = \"eth0\"\n\
         [traffic]\nprofile = \"none\"",
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("port.interface: must be empty for port.driver \"dpdk\"")),
        "{errors:?}"
    );
    // The generator runs on a ring device the engine creates: no device of the user's, and
    // none needed.
    assert_eq!(
        problems("[port]\ndriver = \"dpdk\"\ndevice = \"net_null0\""),
        [
            "port.device: must be empty for port.driver \"dpdk\" with traffic.profile \
          \"listeners\" (the generator feeds a ring device the engine creates, net_ring_fs<n>), \
          got \"net_null0\""
        ]
    );
    let generated = valid("[port]\ndriver = \"dpdk\"\n[traffic]\nprofile = \"churn\"");
    assert!(generated.port.device.is_empty());
    let errors = problems(
        "[port]\ndriver = \"dpdk\"\ndevice = \"net_null0\"\nrx_descriptors = 16\n\
         tx_descriptors = 65535\neal_args = [\"--vdev=net_null0\", \"\"]\n\
         [traffic]\nprofile = \"none\"",
    );
    for expected in [
        "port.rx_descriptors: must be 32..=32768, got 16",
        "port.tx_descriptors: must be 32..=32768, got 65535",
        "port.eal_args[1]: must be a non-empty argument without NUL, got \"\"",
    ] {
        assert!(
            errors.iter().any(|e| e == expected),
            "{expected} in {errors:?}"
        );
    }
    let ok = valid(
        "[port]\ndriver = \"dpdk\"\ndevice = \"net_af_packet0\"\n\
         eal_args = [\"--vdev=net_af_packet0,iface=eth1\"]\n[traffic]\nprofile = \"none\"",
    );
    assert_eq!(ok.port.eal_args, ["--vdev=net_af_packet0,iface=eth1"]);
}

#[test]
fn failure_keys_are_checked_alone_and_together() {
    assert_eq!(
        problem("[engine]\nstall_ms = 50"),
        "engine.stall_ms: must be 100..=600000, got 50"
    );
    assert!(valid("[engine]\nstall_ms = 0\n").engine.stall_ms == 0);
    assert_eq!(
        problem("[engine]\nidle = \"sleep\"\nidle_sleep_us = 100000\nstall_ms = 500"),
        "engine.stall_ms: must span at least 10 idle sleeps (engine.idle_sleep_us = 100000 us: \
         1000 ms), got 500"
    );
    assert_eq!(
        problem("[engine]\nthreads = 1\non_failure = \"redistribute\"\n[port]\nqueues = 1"),
        "engine.on_failure: \"redistribute\" needs a surviving thread (engine.threads >= 2), \
         got engine.threads = 1"
    );
    assert_eq!(
        problem("[engine]\nrestart_limit = 1001"),
        "engine.restart_limit: must be 0..=1000, got 1001"
    );
    assert_eq!(
        problem("[engine]\non_failure = \"reboot\""),
        "engine.on_failure: must be \"restart\", \"redistribute\" or \"stop\", got \"reboot\""
    );
    assert_eq!(
        problem("[fault]\nkind = \"panic\"\nthread = 2"),
        "fault.thread: must be < engine.threads (2), got 2"
    );
    // Off, the thread is not checked: the section's defaults are valid with any thread count.
    assert!(valid("[fault]\nthread = 9\n").fault.thread == 9);
    assert_eq!(
        problem("[fault]\nkind = \"stall\"\nstall_for_ms = 0"),
        "fault.stall_for_ms: must be 1..=86400000, got 0"
    );
}
