//! The engine on a DPDK port, served to the Linux kernel's clients: DPDK's `net_af_packet`
//! driver on the engine end of a veth pair, the clients in a network namespace on the other,
//! the engine with nic's `DpdkPort`, whose queues hand the stack the driver's mbufs as they are:
//! once through `Engine::start_on`, once from the configuration (`port.driver = "dpdk"`). One
//! EAL per process: the tests share it and its device, one at a time.
//! Needs root, iproute2, ethtool and curl; without them it says so and passes (CI=true: fails).
#![cfg(feature = "dpdk")]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use common::*;
use dpdk_sys::ethdev;
use flowsteer_config::{App, AppKind, Balance, Config, Driver, Idle, Profile};
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

/// The EAL argument that creates the device on the veth's engine end.
fn vdev(net: &ClientNet) -> String {
    format!("--vdev={DEVICE},iface={},qpairs=1", net.engine_if)
}

/// One test at a time on the device.
fn device_lock() -> MutexGuard<'static, ()> {
    static DEVICE_IN_USE: Mutex<()> = Mutex::new(());
    DEVICE_IN_USE.lock().unwrap_or_else(PoisonError::into_inner)
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

/// `connections` echo connections one after another, a curl of the http app and 20 UDP echoes,
/// all answered; then every connection's rule gone.
fn serve_clients(net: &ClientNet, engine: &Engine, connections: u32) {
    let ip = IpAddr::V4(ENGINE_IP);
    let timeout = Duration::from_secs(3);
    let failed: Vec<String> = net
        .client(move || {
            (0..connections)
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
        connections_opened(engine, flowsteer_stack::AppKind::TcpEcho),
        u64::from(connections)
    );
    let left = wait_for_no_exact_rules(engine, Duration::from_secs(10));
    assert_eq!(left, 0, "exact rules left after every client closed");
}

#[test]
fn the_engine_on_a_dpdk_port_serves_the_kernels_clients() {
    if skip_without_client_net(&[CURL]) {
        return;
    }
    let _device = device_lock();
    let net = client_net();
    let mut cfg = config();
    // The engine's own EAL start, as a configured DPDK port makes it (once per process).
    cfg.port.eal_args = vec![vdev(net)];
    forwarder::ports::start_eal(&cfg).expect("the EAL starts");
    let pool = PacketPool::with_mbufs("fs_clients_pool", cfg.pool.buffers, cfg.pool.data_room)
        .expect("the pool in DPDK memory");
    let id = ethdev::port_by_name(DEVICE).expect("the --vdev port");
    let port = DpdkPort::open(id, 1, 512, pool.clone()).expect("the port starts");
    let engine =
        Engine::start_on(&cfg, Arc::new(port), flow_table(&cfg), false).expect("the engine starts");
    serve_clients(net, &engine, 50);
    // Conservation exact and every mbuf back in the mempool once the device is stopped.
    let report = stop_and_check(engine);
    assert!(report.total.rx > 0);
    assert_eq!(report.port_dropped[0].get("rx_unusable"), Some(&0));
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn a_configured_dpdk_port_serves_the_kernels_clients() {
    if skip_without_client_net(&[CURL]) {
        return;
    }
    let _device = device_lock();
    let net = client_net();
    let mut cfg = config();
    cfg.port.driver = Driver::Dpdk;
    cfg.port.device = DEVICE.to_owned();
    cfg.port.eal_args = vec![vdev(net)];
    cfg.port.rx_descriptors = 512;
    cfg.port.tx_descriptors = 512;
    cfg.validate().expect("a valid DPDK configuration");
    let engine = Engine::start(&cfg, false).expect("the engine starts on the DPDK port");
    serve_clients(net, &engine, 20);
    // The engine's pool is the port's: conservation exact, every mbuf back in its own mempool
    // (queue 0's L1, the shared one), no allocation failed.
    let report = stop_and_check(engine);
    assert!(report.total.rx > 0);
    let pools: Vec<(&str, bool, u64)> = report
        .pool
        .pools
        .iter()
        .map(|p| (p.pool.as_str(), p.available == p.capacity, p.alloc_failures))
        .collect();
    assert_eq!(pools, [("q0", true, 0), ("shared", true, 0)]);

    // What the device cannot do is refused, naming the key.
    let mut too_many = cfg.clone();
    too_many.engine.threads = 2;
    too_many.port.queues = 2;
    let error = Engine::start(&too_many, false)
        .err()
        .expect("net_af_packet0 was made with one queue pair")
        .to_string();
    assert!(
        error.contains("port.queues: net_af_packet0 has 1 queue pairs at most"),
        "{error}"
    );
    let mut unknown = cfg.clone();
    unknown.port.device = "net_nosuch0".to_owned();
    let error = Engine::start(&unknown, false)
        .err()
        .expect("no such device")
        .to_string();
    assert!(
        error.contains("port.device: no DPDK device \"net_nosuch0\""),
        "{error}"
    );
}
