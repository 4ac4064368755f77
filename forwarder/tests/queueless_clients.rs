//! Fewer NIC queues than stack threads, in front of the Linux kernel's clients: the engine on
//! the engine end of a veth through AF_PACKET, the clients in a network namespace (see
//! `kernel_clients.rs` for the rig). The threads beyond `port.queues` have no socket in the
//! fanout group: they receive what software balancing hands them and transmit on a send
//! socket of their own. Needs root, iproute2, ethtool, curl and nc; without them it says so
//! and passes (CI=true: fails).

mod common;

use common::queueless::{queueless_config, serve_with_fewer_queues};
use common::*;
use flowsteer_config::{Driver, Fanout, Idle};
use flowsteer_testrig::{CURL, NC};
use forwarder::engine::Engine;

fn serve(threads: u16, queues: u16, idle: Idle) {
    if skip_without_client_net(&[CURL, NC]) {
        return;
    }
    let net = ClientNet::new();
    let mut cfg = queueless_config(threads, queues);
    cfg.port.driver = Driver::AfPacket;
    cfg.port.interface = net.engine_if.clone();
    // Round robin over the queues' sockets, as a NIC without RSS: a connection's frames arrive
    // on every queue, and on none of the queue-less threads.
    cfg.port.fanout = Fanout::Lb;
    cfg.engine.idle = idle;
    let engine = Engine::start(&cfg, false).expect("the engine starts on the veth");
    let report = serve_with_fewer_queues(&net, engine, "transmit-only queue");
    assert!(report.total.handed_off > 0);
}

#[test]
fn two_threads_on_one_afpacket_queue_serve_the_kernels_clients() {
    serve(2, 1, Idle::Sleep);
}

/// Threads that sleep while idle: the queue-less one waits on its doorbell alone (its
/// transmit-only queue has nothing to wake it for), which the receiving thread rings.
#[test]
fn two_threads_on_one_afpacket_queue_serve_the_kernels_clients_waking_when_handed_packets() {
    serve(2, 1, Idle::Wait);
}

#[test]
fn three_threads_on_two_afpacket_queues_serve_the_kernels_clients() {
    serve(3, 2, Idle::Sleep);
}
