//! The engine on a DPDK port, served to the Linux kernel's clients: DPDK's `net_af_packet`
//! driver on the engine end of a veth pair, the clients in a network namespace on the other,
//! the engine through `Engine::start_on` with nic's `DpdkPort`, whose queues hand the stack the
//! driver's mbufs as they are. One EAL per process: every test here shares it and its device.
//! Needs root, iproute2, ethtool and curl; without them it says so and passes (CI=true: fails).
#![cfg(feature = "dpdk")]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::*;
use dpdk_sys::{eal, ethdev};
use flowsteer_config::{App, AppKind, Balance, Config, Idle, Profile};
use flowsteer_nic::dpdk::DpdkPort;
use flowsteer_nic::pool::PacketPool;
use flowsteer_testrig::CURL;
use forwarder::engine::{flow_table, Engine};

const DEVICE: &str = "net_af_packet0";

/// The veth pair and namespace, made before the EAL, which opens the device on its engine end.
fn client_net() -> &'static ClientNet {
    static NET: OnceLock<ClientNet> = OnceLock::new();
    NET.get_or_init(ClientNet::new)
}

fn config() -> Config {
    let mut cfg = Config::default();
    cfg.engine.threads = 1;
    cfg.engine.balance = Balance::Software;
    cfg.engine.idle = Idle::Sleep;
    cfg.port.queues = 1;
    cfg.port.ipv4 = ENGINE_IP;
    cfg.port.ipv4_prefix = 24;
    cfg.traffic.profile = Profile::None;
    cfg.metrics.enabled = false;
    cfg.stack.app = vec![
        App::new(AppKind::TcpEcho, 7000),
        App::new(AppKind::UdpEcho, UDP_ECHO_PORT),
        App::new(AppKind::Http, HTTP_PORT),
    ];
    cfg
}

#[test]
fn the_engine_on_a_dpdk_port_serves_the_kernels_clients() {
    if skip_without_client_net(&[CURL]) {
        return;
    }
    let net = client_net();
    let vdev = format!("{DEVICE},iface={},qpairs=1", net.engine_if);
    let ready = flowsteer_testrig::eal::eal_ready("fs-dpdk-clients", &[&vdev], |args| {
        eal::init(args).map_err(|e| e.to_string())?;
        Ok(eal::runtime_dir())
    });
    assert!(ready, "root was checked above");
    let cfg = config();
    let pool = PacketPool::with_mbufs("fs_clients_pool", cfg.pool.buffers, cfg.pool.data_room)
        .expect("the pool in DPDK memory");
    let id = ethdev::port_by_name(DEVICE).expect("the --vdev port");
    let port = DpdkPort::open(id, 1, 512, pool.clone()).expect("the port starts");
    let engine =
        Engine::start_on(&cfg, Arc::new(port), flow_table(&cfg), false).expect("the engine starts");
    let ip = IpAddr::V4(ENGINE_IP);
    let timeout = Duration::from_secs(3);

    let failed: Vec<String> = net
        .client(move || {
            (0..50u32)
                .filter_map(|i| {
                    echo_once(SocketAddr::new(ip, 7000), 256 + i as usize * 97, i, timeout)
                        .err()
                        .map(|e| format!("connection {i}: {e}"))
                })
                .collect()
        })
        .join()
        .expect("the echo client thread");
    assert!(failed.is_empty(), "failed: {failed:#?}");

    let url = format!("http://{}:{HTTP_PORT}/", url_host(ip));
    let out = net.exec(
        "curl",
        &["-gsS", "--connect-timeout", "3", "--max-time", "5", &url],
        b"",
        Duration::from_secs(10),
    );
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(is_http_body(&String::from_utf8_lossy(&out.stdout)));

    let intact = net
        .client(move || udp_echo(ip, 20, timeout))
        .join()
        .expect("the udp client thread")
        .expect("udp echo");
    assert_eq!(intact, 20);
    assert_eq!(
        connections_opened(&engine, flowsteer_stack::AppKind::TcpEcho),
        50
    );
    let left = wait_for_no_exact_rules(&engine, Duration::from_secs(10));
    assert_eq!(left, 0, "exact rules left after every client closed");
    // Conservation exact and every mbuf back in the mempool once the device is stopped.
    let report = stop_and_check(engine);
    assert!(report.total.rx > 0);
    assert_eq!(report.port_dropped[0].get("rx_unusable"), Some(&0));
    assert_eq!(pool.available(), pool.capacity());
}
