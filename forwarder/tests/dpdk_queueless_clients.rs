//! Fewer queues than stack threads on a DPDK port, in front of the Linux kernel's clients:
//! DPDK's `net_af_packet` on the engine end of a veth pair, the clients in a network namespace
//! on the other (the rig of `kernel_clients.rs`). net_af_packet offers as many transmit queues
//! as queue pairs (`qpairs`), none spare, so the threads beyond the queues relay their frames
//! through a thread with a queue pair: 2 threads on a device of one queue pair, 3 threads on one
//! of two. One EAL per process, made with both devices by whichever test runs first; the tests
//! run one at a time.
//! Needs root, iproute2, ethtool, curl and nc; without them it says so and passes (CI=true:
//! fails).
#![cfg(feature = "dpdk")]

mod common;

use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use common::queueless::{queueless_config, serve_with_fewer_queues};
use common::*;
use flowsteer_config::{Config, Driver};
use flowsteer_testrig::{CURL, NC};
use forwarder::engine::Engine;

/// The veth pairs of the one-pair and the two-pair device, made before the EAL, which opens
/// the devices on their engine ends.
fn client_nets() -> &'static [ClientNet; 2] {
    static NETS: OnceLock<[ClientNet; 2]> = OnceLock::new();
    NETS.get_or_init(|| [ClientNet::new(), ClientNet::new()])
}

/// The device `net_af_packet<pairs>` with `pairs` queue pairs on net `pairs - 1`.
fn device(pairs: u16) -> String {
    format!("net_af_packet{pairs}")
}

/// A net_tap device (its interface named after this process): DPDK's tap driver wants as many
/// transmit as receive queues, so it refuses spare ones.
const TAP: &str = "net_tap0";

fn tap_name() -> String {
    format!("fsqt{}", std::process::id())
}

/// `threads` threads on the device of `queues` queue pairs.
fn config(threads: u16, queues: u16) -> Config {
    let nets = client_nets();
    let mut cfg = queueless_config(threads, queues);
    cfg.port.driver = Driver::Dpdk;
    cfg.port.device = device(queues);
    cfg.port.eal_args = (1..=2)
        .map(|pairs| {
            let net = &nets[usize::from(pairs) - 1];
            format!(
                "--vdev={},iface={},qpairs={pairs}",
                device(pairs),
                net.engine_if
            )
        })
        .collect();
    cfg.port
        .eal_args
        .push(format!("--vdev={TAP},iface={}", tap_name()));
    cfg.port.rx_descriptors = 512;
    cfg.port.tx_descriptors = 512;
    cfg
}

/// One test at a time: the first starts the EAL, which a second start must not race.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

fn serve(threads: u16, queues: u16) {
    if skip_without_client_net(&[CURL, NC]) {
        return;
    }
    let _turn = one_at_a_time();
    let cfg = config(threads, queues);
    cfg.validate().expect("a valid DPDK configuration");
    let engine = Engine::start(&cfg, false).expect("the engine starts on the DPDK port");
    let net = &client_nets()[usize::from(queues) - 1];
    let report = serve_with_fewer_queues(net, engine, "via thread");
    let relayed: u64 = report.per_thread.iter().map(|t| t.tx_relayed).sum();
    let handed: u64 = report.per_thread.iter().map(|t| t.tx_handed).sum();
    assert!(
        relayed > 0 && relayed == handed,
        "{}",
        report.render_table()
    );
}

#[test]
fn two_threads_on_one_dpdk_queue_pair_serve_the_kernels_clients() {
    serve(2, 1);
}

#[test]
fn three_threads_on_two_dpdk_queue_pairs_serve_the_kernels_clients() {
    serve(3, 2);
}

/// A device that refuses transmit queues beyond its receive queues still runs fewer queues than
/// threads: the port opens without spare queues and the queue-less thread relays.
#[test]
fn a_device_without_spare_transmit_queues_runs_with_a_relay() {
    if skip_without_client_net(&[CURL, NC]) {
        return;
    }
    let _turn = one_at_a_time();
    let mut cfg = config(2, 1);
    cfg.port.device = TAP.to_owned();
    let engine = Engine::start(&cfg, false).expect("the engine starts on net_tap");
    let report = engine.stop().expect("the engine stops");
    assert_eq!(report.tx_paths[1], "via thread 0", "{:?}", report.tx_paths);
    // Every packet accounted for and every mbuf back in its pool: net_tap frees its receive
    // ring's mbufs only when its queues are released, so the port closes it when it stops.
    assert!(report.conservation.ok, "{}", report.render_table());
    assert_eq!(report.flowtable.exact_rules, 0);
}
