//! The kernel-client suite (`common::suite`) on a DPDK port: DPDK's `net_af_packet` driver with
//! two queue pairs (`qpairs=2`) on the engine end of a veth pair, two stack threads with
//! software balancing, the clients and servers of the Linux kernel in a network namespace on
//! the other end: curl, nc, std::net echo clients (sequential, concurrent, slow and idle), UDP,
//! IPv4 and IPv6, tcp-proxy in front of the kernel's servers (an echo server, `python3 -m
//! http.server`, `iperf3 -s`), with the AF_PACKET port's assertions. Once through
//! `Engine::start_on` with nic's `DpdkPort`, otherwise from the configuration (`port.driver =
//! "dpdk"`, `port.device`, `port.eal_args`).
//!
//! ```text
//!   namespace fskc…                          root namespace
//!   198.18.0.2/24 ── veth (client end) ═══ veth (engine end) ── net_af_packet0, qpairs=2
//!   2001:db8::2/64                                               (2 sockets, one fanout group)
//!   kernel TCP/UDP, curl, nc, iperf3                             DpdkPort, 2 stack threads
//! ```
//!
//! How the frames reach the queues (DPDK 22.11, `drivers/net/af_packet`): the driver opens one
//! AF_PACKET socket per queue pair when the EAL creates the device and joins them in one fanout
//! group in mode `PACKET_FANOUT_HASH` with the `DEFRAG` and `ROLLOVER` flags; no device
//! argument changes the mode (it takes `iface`, `qpairs`, `blocksz`, `framesz`, `framecnt`,
//! `qdisc_bypass`). So:
//! - the kernel's flow hash, seeded at boot and symmetric, picks each flow's queue: all of a
//!   connection's packets, both ways, arrive on one queue, unless that queue's ring is full,
//!   when rollover moves frames to the other socket;
//! - the device offers no RSS (no hash functions, no RETA, no hash in the mbuf): nothing the
//!   engine configures decides a flow's queue, and no local port can aim an outbound
//!   connection's answers at the connecting thread. Software balancing fixes ownership: the
//!   connections the kernel's hash gives the thread that does not listen on their port (about
//!   half of the echo connections) and the upstream answers that arrive on the other queue are
//!   handed to their owner, both ways between the threads; with `balance = "rss"` exactly the
//!   connections hashed to the wrong thread break, the others work (unlike the AF_PACKET port's
//!   `lb` fanout, which breaks nearly all);
//! - the sockets exist from the EAL's start to the process's end, so frames that arrive while
//!   no engine runs wait in their rings for the next one, and a queue nobody polls keeps the
//!   frames the hash gives it until its ring is full (only then does rollover move frames to a
//!   polled queue): the engine refuses fewer queues than `qpairs`.
//!
//! One EAL per process, which creates the device on a veth made before it: the tests share the
//! device, its veth and namespace ([`ClientNet::for_the_process`], deleted at exit), and run
//! one at a time. Needs root, iproute2 (`ip`, `ss`), ethtool, curl, nc, python3 and iperf3;
//! without them it says so and passes (CI=true: fails).
#![cfg(feature = "dpdk")]

mod common;

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use common::suite::*;
use common::*;
use dpdk_sys::ethdev;
use flowsteer_config::{App, AppKind, Balance, Config, Driver};
use flowsteer_nic::dpdk::DpdkPort;
use flowsteer_nic::pool::PacketPool;
use flowsteer_testrig::{Tool, CURL, IPERF3, NC, PYTHON3, SS};
use forwarder::engine::{flow_table, Engine};
use forwarder::report::RunReport;

const DEVICE: &str = "net_af_packet0";
const QUEUES: u16 = 2;

/// The EAL argument that creates the device on the veth's engine end.
fn vdev(net: &ClientNet) -> String {
    format!("--vdev={DEVICE},iface={},qpairs={QUEUES}", net.engine_if)
}

/// The device for one test at a time, and the client network its veth is in; `None`: skip
/// (not root, or a program of `clients` missing, outside CI).
fn the_device(clients: &[Tool]) -> Option<(MutexGuard<'static, ()>, &'static ClientNet)> {
    static DEVICE_IN_USE: Mutex<()> = Mutex::new(());
    if skip_without_client_net(clients) {
        return None;
    }
    let lock = DEVICE_IN_USE.lock().unwrap_or_else(PoisonError::into_inner);
    Some((lock, ClientNet::for_the_process()))
}

/// The suite's two stack threads on the device's two queues, running `apps`.
fn config(net: &ClientNet, apps: Vec<App>) -> Config {
    let mut cfg = two_threads_serving(apps);
    cfg.port.driver = Driver::Dpdk;
    cfg.port.device = DEVICE.to_owned();
    cfg.port.eal_args = vec![vdev(net)];
    cfg.port.rx_descriptors = 512;
    cfg.port.tx_descriptors = 512;
    cfg.validate().expect("a valid DPDK configuration");
    cfg
}

fn start(cfg: &Config) -> Engine {
    Engine::start(cfg, false).expect("the engine starts on the DPDK port")
}

/// Both threads handed packets to the other: the kernel's hash put connections to each
/// thread's port on the other thread's queue. With 200 and more connections alternating
/// between the ports, one direction without a handoff would mean the hash kept every flow on
/// its owner's queue, which it cannot know.
fn assert_handoffs_both_ways(report: &RunReport) {
    let handed = |from: usize, to: usize| report.per_thread[from].handed_off[to];
    assert!(
        handed(0, 1) > 0 && handed(1, 0) > 0,
        "handoffs 0->1 {}, 1->0 {}\n{}",
        handed(0, 1),
        handed(1, 0),
        report.render_table()
    );
    assert_eq!(report.total.misdirected, 0, "{}", report.render_table());
}

/// The port's own drops: none on a veth the engine keeps up with.
fn assert_no_port_drops(report: &RunReport) {
    for (queue, drops) in report.port_dropped.iter().enumerate() {
        assert!(
            drops.values().all(|&n| n == 0),
            "queue {queue} dropped {drops:?}"
        );
    }
}

#[test]
fn the_engine_on_a_dpdk_port_serves_the_kernels_clients() {
    let Some((_device, net)) = the_device(&[CURL, NC]) else {
        return;
    };
    let cfg = config(net, client_apps());
    // The engine's own EAL start, as a configured DPDK port makes it (once per process).
    forwarder::ports::start_eal(&cfg).expect("the EAL starts");
    let pool = PacketPool::with_mbufs("fs_clients_pool", cfg.pool.buffers, cfg.pool.data_room)
        .expect("the pool in DPDK memory");
    let id = ethdev::port_by_name(DEVICE).expect("the --vdev port");
    let port = DpdkPort::open(id, QUEUES, 512, pool.clone()).expect("the port starts");
    let engine =
        Engine::start_on(&cfg, Arc::new(port), flow_table(&cfg), false).expect("the engine starts");
    let report = serve_both_ports(net, engine, IpAddr::V4(ENGINE_IP));
    assert_handoffs_both_ways(&report);
    assert_no_port_drops(&report);
    // Every mbuf back in the mempool once the device is stopped.
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn a_configured_dpdk_port_serves_the_kernels_ipv6_clients() {
    let Some((_device, net)) = the_device(&[CURL, NC]) else {
        return;
    };
    let cfg = config(net, client_apps());
    let report = serve_both_ports(net, start(&cfg), IpAddr::V6(ENGINE_IP6));
    assert_handoffs_both_ways(&report);
    assert_no_port_drops(&report);
    // Neighbour discovery went through the port: each thread learned the client.
    let stack = report.total.stack.as_ref().expect("the threads ran stacks");
    assert!(report.total.link_copies > 0, "{}", report.render_table());
    assert_eq!(stack.misdirected, 0);

    // What the device cannot do is refused, naming the key.
    let mut too_many = cfg.clone();
    too_many.engine.threads = 3;
    too_many.port.queues = 3;
    let error = Engine::start(&too_many, false)
        .err()
        .expect("net_af_packet0 was made with two queue pairs")
        .to_string();
    assert!(
        error.contains("port.queues: net_af_packet0 has 2 queue pairs at most"),
        "{error}"
    );
    // Fewer queues than the device has: the kernel's fanout would still hash flows to the
    // queue nobody polls, and their clients would hang.
    let mut fewer = cfg.clone();
    fewer.engine.threads = 1;
    fewer.port.queues = 1;
    fewer.stack.app = vec![App::new(AppKind::Http, HTTP_PORT)];
    let error = Engine::start(&fewer, false)
        .err()
        .expect("one of two queues left unpolled")
        .to_string();
    assert!(
        error.contains("port.queues: net_af_packet0 spreads its flows over all its 2 queue pairs")
            && error.contains("qpairs=1; got 1"),
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

#[test]
fn the_proxy_on_a_dpdk_port_connects_the_kernels_clients_to_the_kernels_servers() {
    let Some((_device, net)) = the_device(&[PYTHON3, SS, CURL]) else {
        return;
    };
    let report = proxy_the_kernels_servers(net, || start(&config(net, proxy_apps())));
    assert_no_port_drops(&report);
}

#[test]
fn the_proxy_on_a_dpdk_port_resets_a_half_closed_client_whose_upstream_reset() {
    let Some((_device, net)) = the_device(&[]) else {
        return;
    };
    reset_a_half_closed_client(net, || start(&config(net, proxy_apps())));
}

#[test]
fn iperf3_runs_through_the_proxy_on_a_dpdk_port() {
    let Some((_device, net)) = the_device(&[IPERF3, SS]) else {
        return;
    };
    let (bits, report) = iperf3_through_the_proxy(net, || start(&config(net, proxy_apps())));
    eprintln!(
        "iperf3 through the proxy (net_af_packet, fanout hash): {:.0} Mbit/s",
        bits / 1e6
    );
    assert_no_port_drops(&report);
}

/// Under `balance = "rss"` the kernel's hash alone decides: the connections it puts on the
/// thread that listens on their port work from start to end (a flow stays on one queue), the
/// others are reset by the wrong thread's stack.
#[test]
fn rss_balancing_on_a_dpdk_port_breaks_the_connections_hashed_to_the_wrong_thread() {
    let Some((_device, net)) = the_device(&[]) else {
        return;
    };
    let mut cfg = config(net, client_apps());
    cfg.engine.balance = Balance::Rss;
    cfg.stack.idle_timeout_s = 1;
    let outcome = connect_under_rss_balancing(net, start(&cfg), 24);
    // Both happen unless the hash put all 24 connections on one side (odds 1 in 8 million).
    assert!(
        outcome.failed > 0 && outcome.failed < outcome.attempts,
        "{} of {} connections failed: {:?}",
        outcome.failed,
        outcome.attempts,
        outcome.errors
    );
    assert_eq!(
        outcome.report.total.handed_off,
        outcome.report.total.link_copies
    );
}
