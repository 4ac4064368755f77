//! flowsteer in front of the Linux kernel's own TCP/IP stack: the engine runs on one end of a
//! veth pair through AF_PACKET, the kernel is the client on the other end, inside a network
//! namespace.
//!
//! ```text
//!   namespace fskc…                          root namespace
//!   198.18.0.2/24 ── veth (client end) ═══ veth (engine end, no address) ── AF_PACKET, fanout lb
//!   kernel TCP/UDP, curl, nc                                                 2 stack threads
//! ```
//!
//! Thread 0 listens on 7000 and thread 1 on 7001 (the gazelle case: each thread owns its own
//! port), both run udp-echo on 7 and http on 8080. `fanout = "lb"` deals the frames round robin
//! to the two sockets, as a NIC without RSS would, so every connection's packets arrive on both
//! threads. With `balance = "software"` the engine hands each one to its owner and every
//! connection works; with `balance = "rss"` each thread processes what it received, the stack
//! counts misdirected packets and the connections fail: the problem the engine exists to solve.
//!
//! Most clients are threads of this test that enter the namespace with `setns(CLONE_NEWNET)`
//! (only the calling thread changes namespace) and use `std::net`, byte-exact and fast; a few are
//! real `curl` and `nc` processes started with `ip netns exec`.
//!
//! A second configuration runs `tcp-proxy` apps on both threads in front of servers of the
//! client namespace's kernel (an echo server of this test, `python3 -m http.server`, `iperf3 -s`):
//! every accepted connection opens an outbound one from the accepting thread, and since `lb`
//! deals the upstream's answers to both sockets too, they reach that thread only through the
//! exact rule it added before the SYN left.
//!
//! The tests need root (namespaces, veth, AF_PACKET) and iproute2's `ip` and `ss`, `ethtool`,
//! and each its clients (`curl`, `nc` of netcat-openbsd, `python3`, `iperf3`). They create
//! uniquely named interfaces and namespaces and delete them on exit, also on failure. Without
//! root or a program they print what they need ("skipped: needs root", "skipped: needs nc
//! (apt-get install netcat-openbsd)") and pass, unless `CI=true`, where they fail.

use std::net::{IpAddr, SocketAddr};

use flowsteer_config::{AppKind, Balance, Config, Driver, Fanout, Profile};
use flowsteer_testrig::{CURL, IPERF3, NC, PYTHON3, SS};
use forwarder::engine::Engine;

mod common;
use common::suite::*;
use common::*;

// ---------------------------------------------------------------------------------------------
// The engine

/// Two stack threads on the engine end running the suite's apps (`common::suite`).
fn engine_config(interface: &str, balance: Balance) -> Config {
    let mut cfg = two_threads_serving(client_apps());
    cfg.engine.balance = balance;
    cfg.port.driver = Driver::AfPacket;
    cfg.port.interface = interface.to_owned();
    cfg.port.fanout = Fanout::Lb;
    cfg
}

/// Two stack threads on the engine end, each running every proxy, software balancing.
fn proxy_config(interface: &str) -> Config {
    let mut cfg = engine_config(interface, Balance::Software);
    cfg.stack.app = proxy_apps();
    cfg
}

fn start(cfg: &Config) -> Engine {
    Engine::start(cfg, false).expect("the engine starts on the veth")
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn software_balancing_serves_the_kernels_connections_on_both_ports() {
    if skip_without_client_net(&[CURL, NC]) {
        return;
    }
    let net = ClientNet::new();
    let engine = start(&engine_config(&net.engine_if, Balance::Software));
    serve_both_ports(&net, engine, IpAddr::V4(ENGINE_IP));
}

/// The same over IPv6: neighbour discovery must reach both threads (a thread that owns a
/// connection solicits the client's link address, and the answer may arrive on the other
/// queue), and each thread must learn the client from a solicitation the other one received.
#[test]
fn software_balancing_serves_the_kernels_ipv6_connections_on_both_ports() {
    if skip_without_client_net(&[CURL, NC]) {
        return;
    }
    let net = ClientNet::new();
    let engine = start(&engine_config(&net.engine_if, Balance::Software));
    serve_both_ports(&net, engine, IpAddr::V6(ENGINE_IP6));
}

#[test]
fn rss_balancing_misdirects_and_breaks_the_kernels_connections() {
    if skip_without_client_net(&[]) {
        return;
    }
    let net = ClientNet::new();
    let mut cfg = engine_config(&net.engine_if, Balance::Rss);
    cfg.stack.idle_timeout_s = 1;
    let engine = start(&cfg);
    let outcome = connect_under_rss_balancing(&net, engine, 16);
    // lb deals every connection's packets to both threads: most connections break.
    assert!(
        outcome.failed * 2 >= outcome.attempts,
        "only {} of {} connections failed: {:?}",
        outcome.failed,
        outcome.attempts,
        outcome.errors
    );
}

#[test]
fn the_veth_example_parses_and_validates() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/veth-echo.toml");
    let cfg = Config::load(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    cfg.validate().expect("valid");
    assert_eq!(cfg.port.driver, Driver::AfPacket);
    assert_eq!(cfg.port.interface, "fsveth0");
    assert_eq!(cfg.engine.balance, Balance::Software);
    assert_eq!(cfg.engine.threads, 2);
    assert_eq!(cfg.port.queues, cfg.engine.threads);
    assert_eq!(cfg.traffic.profile, Profile::None);
    let kinds: Vec<AppKind> = cfg.stack.app.iter().map(|a| a.kind).collect();
    for kind in [
        AppKind::TcpEcho,
        AppKind::Http,
        AppKind::Discard,
        AppKind::TcpProxy,
    ] {
        assert!(kinds.contains(&kind), "{kind:?} in {kinds:?}");
    }
    // veth-demo.sh starts the proxies' servers at the namespace's address.
    let upstreams: Vec<SocketAddr> = cfg.stack.app.iter().filter_map(|a| a.upstream).collect();
    assert!(
        upstreams.iter().all(|u| u.ip() == CLIENT_IP),
        "{upstreams:?}"
    );
    assert!(
        cfg.stack.app.iter().all(|a| a.threads.is_empty()),
        "every app on every thread"
    );
    assert_eq!(cfg.port.ipv4, ENGINE_IP);
}

#[test]
fn software_balancing_proxies_the_kernels_connections_to_the_kernels_servers() {
    if skip_without_client_net(&[PYTHON3, SS, CURL]) {
        return;
    }
    let net = ClientNet::new();
    proxy_the_kernels_servers(&net, || start(&proxy_config(&net.engine_if)));
}

#[test]
fn the_proxy_resets_a_half_closed_client_whose_upstream_reset() {
    if skip_without_client_net(&[]) {
        return;
    }
    let net = ClientNet::new();
    reset_a_half_closed_client(&net, || start(&proxy_config(&net.engine_if)));
}

#[test]
fn iperf3_runs_through_the_proxy() {
    if skip_without_client_net(&[IPERF3, SS]) {
        return;
    }
    let net = ClientNet::new();
    let (bits, _) = iperf3_through_the_proxy(&net, || start(&proxy_config(&net.engine_if)));
    eprintln!(
        "iperf3 through the proxy (lb fanout): {:.0} Mbit/s",
        bits / 1e6
    );
}
