//! The keys of the AF_PACKET port and of `[stack]` with its `[[stack.app]]` entries: every
//! rejected value's exact message, the rules between them and the rest, and printing and
//! parsing back.

use flowsteer_config::{
    App, AppKind, Config, Driver, Fanout, Problem, Profile, RxRing, MAX_ETHERNET_FRAME,
};

mod common;
use common::{problem, problems, valid};

/// An AF_PACKET port on `interface`, with the profile it needs, then `extra` port keys.
fn afpacket(interface: &str, extra: &str) -> String {
    format!(
        "[traffic]\nprofile = \"none\"\n[port]\ndriver = \"afpacket\"\ninterface = \"{interface}\"\n{extra}"
    )
}

/// `[[stack.app]]` entries (given as TOML) with the profile they need.
fn with_apps(entries: &str) -> String {
    format!("[traffic]\nprofile = \"none\"\n{entries}")
}

// ---------------------------------------------------------------- [port]: afpacket

#[test]
fn afpacket_port_with_every_key() {
    let config = valid(&afpacket(
        "veth-fs0",
        "queues = 2\nfanout = \"lb\"\nrx_ring = \"blocks\"\nframes = 16\nblock_size = 4096\n\
         blocks = 2\nblock_timeout_ms = 1000\nqdisc_bypass = false\nipv4_prefix = 32\n\
         ipv6_prefix = 128",
    ));
    let port = &config.port;
    assert_eq!(port.driver, Driver::AfPacket);
    assert_eq!(port.interface, "veth-fs0");
    assert_eq!(port.fanout, Fanout::Lb);
    assert_eq!((port.rx_ring, port.frames), (RxRing::Blocks, 16));
    assert_eq!(
        (port.block_size, port.blocks, port.block_timeout_ms),
        (4096, 2, 1000)
    );
    assert!(!port.qdisc_bypass);
    assert_eq!((port.ipv4_prefix, port.ipv6_prefix), (32, 128));
    assert_eq!(config.traffic.profile, Profile::None);
    // The largest values are accepted too; 15 bytes is the longest interface name.
    valid(&afpacket(
        "abcdefghijklmno",
        "frames = 1048576\nblock_size = 4194304\nblocks = 1024\nipv4_prefix = 1\n\
         ipv6_prefix = 1",
    ));
}

#[test]
fn afpacket_needs_an_interface() {
    assert_eq!(
        problem("[traffic]\nprofile = \"none\"\n[port]\ndriver = \"afpacket\""),
        "port.interface: must name a Linux interface for port.driver \"afpacket\", got \"\""
    );
}

#[test]
fn uveth_takes_no_interface() {
    assert_eq!(
        problem("[port]\ninterface = \"eth0\""),
        "port.interface: must be empty for port.driver \"uveth\" (a user-space port has no \
         kernel interface), got \"eth0\""
    );
}

#[test]
fn interface_names_the_kernel_rejects() {
    for (name, shown) in [
        ("abcdefghijklmnop", "\"abcdefghijklmnop\""), // 16 bytes
        ("ééééééééé", "\"ééééééééé\""),               // 18 bytes in 9 characters
        ("veth/0", "\"veth/0\""),
        ("eth0:1", "\"eth0:1\""),
        ("eth 0", "\"eth 0\""),
        ("eth\\t0", "\"eth\\t0\""),
        ("eth\\u00000", "\"eth\\u00000\""),
        (".", "\".\""),
        ("..", "\"..\""),
    ] {
        assert_eq!(
            problem(&afpacket(name, "")),
            format!(
                "port.interface: must be an interface name of 1..=15 bytes without '/', ':', \
                 whitespace or NUL, not \".\" or \"..\", got {shown}"
            ),
            "{name}"
        );
    }
    // A bad name is reported once, whichever driver: not again as "must be empty".
    assert_eq!(
        problems("[port]\ninterface = \"a/b\""),
        vec![
            "port.interface: must be an interface name of 1..=15 bytes without '/', ':', \
             whitespace or NUL, not \".\" or \"..\", got \"a/b\""
        ]
    );
    assert_eq!(
        problem("[port]\ninterface = 5"),
        "port.interface: must be an interface name of 1..=15 bytes without '/', ':', \
         whitespace or NUL, not \".\" or \"..\", got 5"
    );
}

#[test]
fn fanout_spellings() {
    assert_eq!(
        problem("[port]\nfanout = \"rr\""),
        "port.fanout: must be \"hash\", \"lb\" or \"cpu\", got \"rr\""
    );
    assert_eq!(
        "Hash".parse::<Fanout>().unwrap_err().to_string(),
        "a fanout mode must be \"hash\", \"lb\" or \"cpu\", got \"Hash\""
    );
    assert_eq!(valid("[port]\nfanout = \"cpu\"").port.fanout, Fanout::Cpu);
}

#[test]
fn rx_ring_spellings() {
    assert_eq!(
        problem("[port]\nrx_ring = \"v2\""),
        "port.rx_ring: must be \"frames\" or \"blocks\", got \"v2\""
    );
    assert_eq!(
        problem("[port]\nrx_ring = 3"),
        "port.rx_ring: must be \"frames\" or \"blocks\", got 3"
    );
    assert_eq!(
        "Frames".parse::<RxRing>().unwrap_err().to_string(),
        "a receive ring kind must be \"frames\" or \"blocks\", got \"Frames\""
    );
    assert_eq!(
        valid("[port]\nrx_ring = \"blocks\"").port.rx_ring,
        RxRing::Blocks
    );
    assert_eq!(
        valid("[port]\nrx_ring = \"frames\"").port.rx_ring,
        RxRing::Frames
    );
}

#[test]
fn frames_power_of_two() {
    for frames in [0, 8, 1000, 2097152] {
        assert_eq!(
            problem(&format!("[port]\nframes = {frames}")),
            format!("port.frames: must be a power of two 16..=1048576, got {frames}")
        );
    }
    assert_eq!(
        problem("[port]\nframes = -1"),
        "port.frames: must be a power of two 16..=1048576, got -1"
    );
    assert_eq!(valid("[port]\nframes = 16").port.frames, 16);
}

#[test]
fn block_size_power_of_two() {
    for size in [2048, 5000, 8388608] {
        assert_eq!(
            problem(&format!("[port]\nblock_size = {size}")),
            format!("port.block_size: must be a power of two 4096..=4194304, got {size}")
        );
    }
    assert_eq!(
        problem("[port]\nblock_size = -1"),
        "port.block_size: must be a power of two 4096..=4194304, got -1"
    );
}

#[test]
fn blocks_range() {
    assert_eq!(
        problem("[port]\nblocks = 1"),
        "port.blocks: must be 2..=1024, got 1"
    );
    assert_eq!(
        problem("[port]\nblocks = 1025"),
        "port.blocks: must be 2..=1024, got 1025"
    );
}

#[test]
fn block_timeout_range() {
    assert_eq!(
        problem("[port]\nblock_timeout_ms = 0"),
        "port.block_timeout_ms: must be 1..=1000, got 0"
    );
    assert_eq!(
        problem("[port]\nblock_timeout_ms = 1001"),
        "port.block_timeout_ms: must be 1..=1000, got 1001"
    );
}

#[test]
fn qdisc_bypass_is_a_bool() {
    assert_eq!(
        problem("[port]\nqdisc_bypass = 1"),
        "port.qdisc_bypass: must be true or false, got 1"
    );
    assert!(!valid("[port]\nqdisc_bypass = false").port.qdisc_bypass);
}

#[test]
fn prefix_lengths() {
    assert_eq!(
        problem("[port]\nipv4_prefix = 0"),
        "port.ipv4_prefix: must be 1..=32, got 0"
    );
    assert_eq!(
        problem("[port]\nipv4_prefix = 33"),
        "port.ipv4_prefix: must be 1..=32, got 33"
    );
    assert_eq!(
        problem("[port]\nipv6_prefix = 0"),
        "port.ipv6_prefix: must be 1..=128, got 0"
    );
    assert_eq!(
        problem("[port]\nipv6_prefix = 129"),
        "port.ipv6_prefix: must be 1..=128, got 129"
    );
    // Beyond a byte: a type error, in the schema's words.
    assert_eq!(
        problem("[port]\nipv6_prefix = 300"),
        "port.ipv6_prefix: must be an integer 1..=128, got 300"
    );
}

/// The capture port: its file is required with it and refused without it, the generator does
/// not run on it, and the host check opens the file.
#[test]
fn pcap_port_needs_its_file_and_no_profile() {
    let config = valid(
        "[traffic]\nprofile = \"none\"\n[port]\ndriver = \"pcap\"\npcap_file = \"t.pcap\"\n\
         pcap_pace = \"capture\"",
    );
    assert_eq!(config.port.driver, Driver::Pcap);
    assert_eq!(
        problem("[traffic]\nprofile = \"none\"\n[port]\ndriver = \"pcap\""),
        "port.pcap_file: must name the capture file (.pcap or .pcapng) for port.driver \"pcap\", \
         got \"\""
    );
    assert_eq!(
        problem("[port]\npcap_file = \"t.pcap\""),
        "port.pcap_file: must be empty for port.driver \"uveth\" (only the pcap driver replays a \
         capture), got \"t.pcap\""
    );
    assert_eq!(
        problem("[port]\ndriver = \"pcap\"\npcap_file = \"t.pcap\""),
        "traffic.profile: must be \"none\" for port.driver \"pcap\" (the generator feeds uveth \
         queues and DPDK ring devices, not a kernel's interface nor a capture), got \"listeners\""
    );
    let missing =
        std::env::temp_dir().join(format!("flowsteer-no-such-{}.pcap", std::process::id()));
    let mut config = config;
    config.port.pcap_file = missing.display().to_string();
    let error = config.check_host().unwrap_err().to_string();
    assert!(
        error.contains(&format!(
            "port.pcap_file: must be a readable capture file, got \"{}\": No such file",
            missing.display()
        )),
        "{error}"
    );
    config.port.pcap_file = std::env::temp_dir().display().to_string();
    let error = config.check_host().unwrap_err().to_string();
    assert!(error.contains("it is a directory"), "{error}");
}

#[test]
fn afpacket_needs_the_none_profile() {
    assert_eq!(
        problem("[port]\ndriver = \"afpacket\"\ninterface = \"eth0\""),
        "traffic.profile: must be \"none\" for port.driver \"afpacket\" (the generator feeds \
         uveth queues and DPDK ring devices, not a kernel's interface nor a capture), got \"listeners\""
    );
}

#[test]
fn afpacket_needs_full_frame_buffers() {
    assert_eq!(
        problem(&format!("{}[pool]\ndata_room = 1513", afpacket("eth0", ""))),
        "pool.data_room: must be >= 1514 (a full Ethernet frame without FCS) with port.driver \
         \"afpacket\", got 1513"
    );
    assert_eq!(
        valid(&format!(
            "{}[pool]\ndata_room = {MAX_ETHERNET_FRAME}",
            afpacket("eth0", "")
        ))
        .pool
        .data_room,
        1514
    );
}

// ---------------------------------------------------------------- [stack]

#[test]
fn stack_defaults() {
    let stack = Config::default().stack;
    assert_eq!(
        (
            stack.tcp_rx_buffer,
            stack.tcp_tx_buffer,
            stack.udp_buffer,
            stack.max_connections
        ),
        (65536, 65536, 65536, 1024)
    );
    assert!(stack.app.is_empty());
}

#[test]
fn tcp_buffers_range() {
    for key in ["tcp_rx_buffer", "tcp_tx_buffer"] {
        assert_eq!(
            problem(&format!("[stack]\n{key} = 1023")),
            format!("stack.{key}: must be 1024..=16777216, got 1023")
        );
        assert_eq!(
            problem(&format!("[stack]\n{key} = 16777217")),
            format!("stack.{key}: must be 1024..=16777216, got 16777217")
        );
        valid(&format!("[stack]\n{key} = 1024"));
        valid(&format!("[stack]\n{key} = 16777216"));
    }
}

#[test]
fn udp_buffer_range() {
    assert_eq!(
        problem("[stack]\nudp_buffer = 2047"),
        "stack.udp_buffer: must be 2048..=16777216, got 2047"
    );
    assert_eq!(
        problem("[stack]\nudp_buffer = 16777217"),
        "stack.udp_buffer: must be 2048..=16777216, got 16777217"
    );
}

#[test]
fn max_connections_range() {
    assert_eq!(
        problem("[stack]\nmax_connections = 0"),
        "stack.max_connections: must be 1..=65536, got 0"
    );
    assert_eq!(
        problem("[stack]\nmax_connections = 65537"),
        "stack.max_connections: must be 1..=65536, got 65537"
    );
    assert_eq!(
        valid("[stack]\nmax_connections = 65536")
            .stack
            .max_connections,
        65536
    );
}

#[test]
fn timeouts_and_neighbor_wait_ranges_and_defaults() {
    let stack = valid("").stack;
    assert_eq!(
        (
            stack.idle_timeout_s,
            stack.keepalive_timeout_s,
            stack.neighbor_wait_ms
        ),
        (60, 75, 3000)
    );
    assert_eq!(
        problem("[stack]\nidle_timeout_s = 86401"),
        "stack.idle_timeout_s: must be 0..=86400, got 86401"
    );
    assert_eq!(
        problem("[stack]\nkeepalive_timeout_s = 86401"),
        "stack.keepalive_timeout_s: must be 0..=86400, got 86401"
    );
    assert_eq!(stack.syn_timeout_ms, 7000);
    assert_eq!(
        problem("[stack]\nsyn_timeout_ms = 120001"),
        "stack.syn_timeout_ms: must be 0..=120000, got 120001"
    );
    assert_eq!(valid("[stack]\nsyn_timeout_ms = 0").stack.syn_timeout_ms, 0);
    assert_eq!(
        problem("[stack]\nneighbor_wait_ms = 0"),
        "stack.neighbor_wait_ms: must be 1..=60000, got 0"
    );
    let stack =
        valid("[stack]\nidle_timeout_s = 0\nkeepalive_timeout_s = 0\nneighbor_wait_ms = 60000")
            .stack;
    assert_eq!(
        (
            stack.idle_timeout_s,
            stack.keepalive_timeout_s,
            stack.neighbor_wait_ms
        ),
        (0, 0, 60000)
    );
}

// ---------------------------------------------------------------- [[stack.app]]

#[test]
fn apps_as_tables_and_inline() {
    let config = valid(&with_apps(
        "[[stack.app]]\nkind = \"http\"\nport = 80\n\n[[stack.app]]\nkind = \"udp-echo\"\n\
         port = 7\nthreads = [1]\n",
    ));
    assert_eq!(
        config.stack.app,
        vec![
            App::new(AppKind::Http, 80),
            App::new(AppKind::UdpEcho, 7).on_threads([1]),
        ]
    );
    let inline = valid(
        "[stack]\napp = [{ kind = \"http\", port = 80 }, { kind = \"udp-echo\", port = 7, \
         threads = [1] }]\n[traffic]\nprofile = \"none\"",
    );
    assert_eq!(inline, config);
}

#[test]
fn app_runs_on_and_transport() {
    let everywhere = App::new(AppKind::Discard, 9);
    assert!(everywhere.runs_on(0) && everywhere.runs_on(63));
    let some = App::new(AppKind::TcpEcho, 7).on_threads(vec![2, 0]);
    assert!(some.runs_on(0) && some.runs_on(2) && !some.runs_on(1));
    let tcp: Vec<bool> = AppKind::ALL.iter().map(|k| k.is_tcp()).collect();
    assert_eq!(
        AppKind::NAMES,
        &["tcp-echo", "udp-echo", "http", "discard", "tcp-proxy"]
    );
    assert_eq!(tcp, vec![true, false, true, true, true]);
    let upstream: Vec<bool> = AppKind::ALL.iter().map(|k| k.connects_upstream()).collect();
    assert_eq!(upstream, vec![false, false, false, false, true]);
}

#[test]
fn app_port_range() {
    assert_eq!(
        problem(&with_apps(
            "[[stack.app]]\nkind = \"http\"\nport = 80\n[[stack.app]]\nkind = \"tcp-echo\"\n\
             port = 0"
        )),
        "stack.app[1].port: must be 1..=65535, got 0"
    );
    assert_eq!(
        problem(&with_apps("[[stack.app]]\nkind = \"http\"\nport = 70000")),
        "stack.app[0].port: must be an integer 1..=65535, got 70000"
    );
}

#[test]
fn app_kind_spellings() {
    assert_eq!(
        problem(&with_apps("[[stack.app]]\nkind = \"ftp\"\nport = 21")),
        "stack.app[0].kind: must be \"tcp-echo\", \"udp-echo\", \"http\", \"discard\" or \
         \"tcp-proxy\", got \"ftp\""
    );
}

#[test]
fn app_required_keys() {
    assert_eq!(
        problem(&with_apps("[[stack.app]]\nkind = \"http\"")),
        "stack.app[0].port: required key missing (must be an integer 1..=65535)"
    );
    assert_eq!(
        problem(&with_apps(
            "[[stack.app]]\nkind = \"http\"\nport = 80\n[[stack.app]]\nport = 81"
        )),
        "stack.app[1].kind: required key missing (must be \"tcp-echo\", \"udp-echo\", \"http\", \
         \"discard\" or \"tcp-proxy\")"
    );
    let error = Config::from_toml_str(&with_apps("[[stack.app]]\nkind = \"http\"")).unwrap_err();
    assert_eq!(error.problems()[0].path(), Some("stack.app[0].port"));
}

#[test]
fn app_unknown_key_lists_the_allowed_ones() {
    // A misspelt key is unknown, and the key it meant is then missing.
    assert_eq!(
        problems(&with_apps("[[stack.app]]\nkind = \"http\"\nprot = 80")),
        vec![
            "stack.app[0].prot: unknown key (expected one of: kind, port, upstream, threads)",
            "stack.app[0].port: required key missing (must be an integer 1..=65535)",
        ]
    );
}

#[test]
fn app_threads_distinct_and_below_engine_threads() {
    assert_eq!(
        problem(&with_apps(
            "[[stack.app]]\nkind = \"http\"\nport = 80\nthreads = [1, 0, 1]"
        )),
        "stack.app[0].threads[2]: must differ from stack.app[0].threads[0] (1), got 1"
    );
    assert_eq!(
        problem(&with_apps(
            "[engine]\nthreads = 2\n[[stack.app]]\nkind = \"http\"\nport = 80\nthreads = [0, 2]"
        )),
        "stack.app[0].threads[1]: must be < engine.threads (2), got 2"
    );
    assert_eq!(
        problem(&with_apps(
            "[[stack.app]]\nkind = \"http\"\nport = 80\nthreads = \"all\""
        )),
        "stack.app[0].threads: must be an array of distinct thread indices 0..engine.threads, \
         got \"all\""
    );
    // engine.threads rejected: reported once, the apps' threads are not compared with it.
    assert_eq!(
        problems(&with_apps(
            "[engine]\nthreads = 0\n[[stack.app]]\nkind = \"http\"\nport = 80\nthreads = [5]"
        )),
        vec!["engine.threads: must be 1..=64, got 0"]
    );
}

#[test]
fn app_entries_of_the_wrong_shape() {
    assert_eq!(
        problem("[stack]\napp = 5"),
        "stack.app: must be [[stack.app]] tables with the keys kind, port, upstream, threads, got 5"
    );
    // The index stays the one in the file after an entry that is not a table.
    assert_eq!(
        problems(&with_apps(
            "[stack]\napp = [1, { kind = \"http\", port = 0 }]"
        )),
        vec![
            "stack.app[0]: must be a table of keys (kind, port, upstream, threads), got 1",
            "stack.app[1].port: must be 1..=65535, got 0",
        ]
    );
}

#[test]
fn two_tcp_apps_on_one_port_and_thread() {
    // Both on every thread.
    assert_eq!(
        problem(&with_apps(
            "[[stack.app]]\nkind = \"http\"\nport = 80\n[[stack.app]]\nkind = \"discard\"\n\
             port = 80"
        )),
        "stack.app[1].port: must differ from stack.app[0].port (80): two TCP apps (\"http\", \
         \"discard\") on every thread, got 80"
    );
    // One on every thread, one on thread 1.
    assert_eq!(
        problem(&with_apps(
            "[[stack.app]]\nkind = \"tcp-echo\"\nport = 7\n[[stack.app]]\nkind = \"http\"\n\
             port = 8080\n[[stack.app]]\nkind = \"tcp-echo\"\nport = 7\nthreads = [1]"
        )),
        "stack.app[2].port: must differ from stack.app[0].port (7): two TCP apps (\"tcp-echo\", \
         \"tcp-echo\") on thread 1, got 7"
    );
    // Partly overlapping thread lists.
    assert_eq!(
        problem(&with_apps(
            "[engine]\nthreads = 4\n[port]\nqueues = 4\n[[stack.app]]\nkind = \"http\"\nport = 80\nthreads = [0, 1, 2]\n\
             [[stack.app]]\nkind = \"tcp-echo\"\nport = 80\nthreads = [3, 2, 1]"
        )),
        "stack.app[1].port: must differ from stack.app[0].port (80): two TCP apps (\"http\", \
         \"tcp-echo\") on threads 1, 2, got 80"
    );
    // Disjoint threads may share a port: the gazelle case of one listener per thread.
    let config = valid(&with_apps(
        "[[stack.app]]\nkind = \"http\"\nport = 80\nthreads = [0]\n[[stack.app]]\n\
         kind = \"discard\"\nport = 80\nthreads = [1]",
    ));
    assert_eq!(config.stack.app.len(), 2);
}

#[test]
fn two_udp_apps_on_one_port_and_thread() {
    assert_eq!(
        problem(&with_apps(
            "[[stack.app]]\nkind = \"udp-echo\"\nport = 7\nthreads = [0]\n[[stack.app]]\n\
             kind = \"udp-echo\"\nport = 7"
        )),
        "stack.app[1].port: must differ from stack.app[0].port (7): two UDP apps (\"udp-echo\", \
         \"udp-echo\") on thread 0, got 7"
    );
}

#[test]
fn a_tcp_and_a_udp_app_may_share_a_port() {
    valid(&with_apps(
        "[[stack.app]]\nkind = \"tcp-echo\"\nport = 7\n[[stack.app]]\nkind = \"udp-echo\"\n\
         port = 7",
    ));
}

#[test]
fn apps_need_the_none_profile() {
    assert_eq!(
        problem("[[stack.app]]\nkind = \"http\"\nport = 80"),
        "traffic.profile: must be \"none\" with [[stack.app]] entries (generated frames are not \
         connections), got \"listeners\""
    );
    // With afpacket too, the profile is reported once.
    assert_eq!(
        problem(
            "[port]\ndriver = \"afpacket\"\ninterface = \"eth0\"\n[[stack.app]]\nkind = \"http\"\n\
             port = 80"
        ),
        "traffic.profile: must be \"none\" for port.driver \"afpacket\" (the generator feeds \
         uveth queues and DPDK ring devices, not a kernel's interface nor a capture), got \"listeners\""
    );
}

#[test]
fn apps_need_full_frame_buffers() {
    assert_eq!(
        problem(&with_apps(
            "[pool]\ndata_room = 1024\n[[stack.app]]\nkind = \"http\"\nport = 80"
        )),
        "pool.data_room: must be >= 1514 (a full Ethernet frame without FCS) with [[stack.app]] \
         entries, got 1024"
    );
    // Without apps or afpacket, small buffers stay valid (the generator's frames are small).
    assert_eq!(valid("[pool]\ndata_room = 128").pool.data_room, 128);
}

#[test]
fn every_problem_of_apps_at_once() {
    assert_eq!(
        problems(
            "[engine]\nthreads = 2\n[[stack.app]]\nkind = \"http\"\nprot = 80\n[[stack.app]]\n\
             port = 70000\nthreads = [1, 1, 2]"
        ),
        vec![
            "stack.app[0].prot: unknown key (expected one of: kind, port, upstream, threads)",
            "stack.app[0].port: required key missing (must be an integer 1..=65535)",
            "stack.app[1].port: must be an integer 1..=65535, got 70000",
            "stack.app[1].kind: required key missing (must be \"tcp-echo\", \"udp-echo\", \
             \"http\", \"discard\" or \"tcp-proxy\")",
            "stack.app[1].threads[1]: must differ from stack.app[1].threads[0] (1), got 1",
            "traffic.profile: must be \"none\" with [[stack.app]] entries (generated frames are \
             not connections), got \"listeners\"",
            "stack.app[1].threads[2]: must be < engine.threads (2), got 2",
        ]
    );
}

#[test]
fn apps_of_a_config_built_in_code() {
    let mut config = Config::default();
    config.traffic.profile = Profile::None;
    config.stack.app = vec![App::new(AppKind::Http, 0)];
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        "stack.app[0].port: must be 1..=65535, got 0"
    );
    config.stack.app[0].port = 80;
    assert_eq!(config.validate(), Ok(()));
}

// ---------------------------------------------------------------- printing and parsing back

#[test]
fn two_apps_round_trip() {
    let mut config = Config::default();
    config.engine.threads = 4;
    config.port.queues = 4;
    config.traffic.profile = Profile::None;
    config.stack.tcp_rx_buffer = 1 << 20;
    config.stack.tcp_tx_buffer = 4096;
    config.stack.udp_buffer = 2048;
    config.stack.max_connections = 65536;
    config.stack.app = vec![
        App::new(AppKind::Http, 8080).on_threads([3, 1]),
        App::new(AppKind::UdpEcho, 8080),
    ];
    assert_eq!(config.validate(), Ok(()));

    let text = config.to_toml_string();
    assert_eq!(valid(&text), config, "{text}");
    assert!(
        text.contains(
            "\n[[stack.app]]                # stack.app[1]\n\
             kind = \"udp-echo\"            # \"tcp-echo\", \"udp-echo\", \"http\", \"discard\" or \
             \"tcp-proxy\"\n\
             port = 8080                  # an integer 1..=65535\n\
             threads = []                 # an array of distinct thread indices 0..engine.threads\n"
        ),
        "{text}"
    );
    assert!(text.contains("threads = [3, 1] "), "{text}");
    // The apps' tables come after [stack]'s own keys, which would otherwise belong to the last
    // app, and the key `app` itself is not printed next to them.
    let stack_at = text.find("\n[stack]\n").expect("[stack] printed");
    let first_app = text.find("[[stack.app]]").expect("apps printed");
    assert!(text[stack_at..first_app].contains("max_connections = 65536"));
    assert!(!text.contains("\napp = "), "{text}");
}

#[test]
fn no_apps_prints_an_empty_array() {
    let text = Config::default().to_toml_string();
    assert!(
        text.contains(
            "\napp = []                     # [[stack.app]] tables with the keys kind, port, \
             upstream, threads\n"
        ),
        "{text}"
    );
    assert!(!text.contains("[[stack.app]]\n"), "{text}");
}

#[test]
fn afpacket_round_trips() {
    let config = valid(&afpacket(
        "veth-fs1",
        "queues = 2\nfanout = \"cpu\"\nrx_ring = \"blocks\"\nframes = 65536\nblock_size = 1048576\n\
         blocks = 64\nblock_timeout_ms = 10\n\
         qdisc_bypass = false\nipv4 = \"198.18.0.2\"\nipv4_prefix = 30\nipv6_prefix = 96\n\
         [[stack.app]]\nkind = \"tcp-echo\"\nport = 7\n[[stack.app]]\nkind = \"http\"\nport = 80\n\
         threads = [0]",
    ));
    let text = config.to_toml_string();
    assert_eq!(valid(&text), config, "{text}");
    assert!(text.contains("driver = \"afpacket\" "), "{text}");
    assert!(text.contains("interface = \"veth-fs1\" "), "{text}");
    assert!(text.contains("fanout = \"cpu\" "), "{text}");
    assert!(text.contains("rx_ring = \"blocks\" "), "{text}");
    assert!(text.contains("frames = 65536 "), "{text}");
}

#[test]
fn default_is_unchanged() {
    let config = Config::default();
    assert_eq!(config.validate(), Ok(()));
    assert_eq!(config.port.driver, Driver::Uveth);
    assert_eq!(config.port.interface, "");
    assert_eq!(config.port.fanout, Fanout::Hash);
    // A frame ring of 8192 slots (16 MiB at MTU 1500) and, for block rings, 64 blocks of
    // 256 KiB (16 MiB): tens of milliseconds of traffic while a stack thread is descheduled.
    assert_eq!(
        (config.port.rx_ring, config.port.frames),
        (RxRing::Frames, 8192)
    );
    assert_eq!(
        (
            config.port.block_size,
            config.port.blocks,
            config.port.block_timeout_ms
        ),
        (262144, 64, 1)
    );
    assert!(config.port.qdisc_bypass);
    assert_eq!((config.port.ipv4_prefix, config.port.ipv6_prefix), (24, 64));
    assert_eq!(config.traffic.profile, Profile::Listeners);
    assert_eq!(config.min_pool_buffers(), 7168);
    assert_eq!(valid(""), config);
}

#[test]
fn problems_are_key_problems_with_paths() {
    let error =
        Config::from_toml_str(&with_apps("[[stack.app]]\nkind = \"http\"\nport = 0")).unwrap_err();
    assert!(matches!(
        error.problems(),
        [Problem::Key { path, .. }] if path == "stack.app[0].port"
    ));
}

#[test]
fn apps_on_fewer_queues_than_threads_need_software_balancing() {
    let apps = "[[stack.app]]\nkind = \"http\"\nport = 80";
    assert_eq!(
        problem(&with_apps(&format!(
            "[engine]\nthreads = 3\nbalance = \"rss\"\n[port]\nqueues = 2\n{apps}"
        ))),
        "engine.balance: must be \"software\" with [[stack.app]] entries and fewer queues than \
         threads (port.queues 2 < engine.threads 3): RSS spreads connections over the queues \
         only, so thread 2 without a queue would never get one (or set port.queues = \
         engine.threads), got \"rss\""
    );
    assert!(problem(&with_apps(&format!(
        "[engine]\nthreads = 4\nbalance = \"rss\"\n[port]\nqueues = 1\n{apps}"
    )))
    .contains("so threads 1..3 without a queue"));
    let config = valid(&with_apps(&format!(
        "[engine]\nthreads = 3\n[port]\nqueues = 1\n{apps}"
    )));
    assert_eq!((config.engine.threads, config.port.queues), (3, 1));
    // Thread 0 may relay for threads 1 and 2: its software transmit queue counts in the pool.
    assert_eq!(config.transmit_relays(), 1);
    let mut without_apps = config.clone();
    without_apps.stack.app.clear();
    assert_eq!(without_apps.transmit_relays(), 0);
    assert_eq!(
        config.min_pool_buffers(),
        without_apps.min_pool_buffers() + config.swq.size as u64
    );
    let short = problem(&with_apps(&format!(
        "[engine]\nthreads = 3\n[port]\nqueues = 1\n[pool]\nbuffers = 1024\n{apps}"
    )));
    assert!(
        short.starts_with(&format!(
            "pool.buffers: must be >= {} for this configuration",
            config.min_pool_buffers()
        )) && short.contains(" + 1 software transmit queues * swq.size, got 1024"),
        "{short}"
    );
}
