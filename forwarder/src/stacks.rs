//! The protocol stacks' side of the configuration: per thread, the port's addresses, the
//! `[stack]` sizes, the apps it runs, how its outbound connections come back, and the ports it
//! serves.

use std::time::Duration;

use flowsteer_config::{AppKind as ConfigAppKind, Balance, Config, MAX_ETHERNET_FRAME};
use flowsteer_nic::port::PortControl;
use flowsteer_stack::{AppKind, AppSpec, Outbound, PortChoice, StackConfig};

use crate::steer::ServedPorts;

/// The stack's name for an app kind of the configuration.
fn stack_kind(kind: ConfigAppKind) -> AppKind {
    match kind {
        ConfigAppKind::TcpEcho => AppKind::TcpEcho,
        ConfigAppKind::UdpEcho => AppKind::UdpEcho,
        ConfigAppKind::Http => AppKind::Http,
        ConfigAppKind::Discard => AppKind::Discard,
        ConfigAppKind::TcpProxy => AppKind::TcpProxy,
    }
}

/// The stack of thread `thread`: the port's addresses, the `[stack]` sizes, the apps that run
/// on that thread, and how its outbound connections are steered back (see [`outbound`]).
pub fn stack_config(config: &Config, thread: u16, port: &dyn PortControl) -> StackConfig {
    let apps = config
        .stack
        .app
        .iter()
        .filter(|app| app.runs_on(thread))
        .map(|app| AppSpec {
            kind: stack_kind(app.kind),
            port: app.port,
            upstream: app.upstream,
        })
        .collect();
    let stack = &config.stack;
    StackConfig {
        mac: port.mac(),
        ipv4: (config.port.ipv4, config.port.ipv4_prefix),
        ipv6: (config.port.ipv6, config.port.ipv6_prefix),
        tcp_rx_buffer: stack.tcp_rx_buffer as usize,
        tcp_tx_buffer: stack.tcp_tx_buffer as usize,
        udp_buffer: stack.udp_buffer as usize,
        max_connections: stack.max_connections as usize,
        idle_timeout: seconds(stack.idle_timeout_s),
        keepalive_timeout: seconds(stack.keepalive_timeout_s),
        syn_timeout: (stack.syn_timeout_ms > 0)
            .then(|| Duration::from_millis(u64::from(stack.syn_timeout_ms))),
        neighbor_wait: Duration::from_millis(u64::from(stack.neighbor_wait_ms)),
        max_frame: usize::from(config.pool.data_room).min(usize::from(MAX_ETHERNET_FRAME)),
        seed: config.traffic.seed,
        apps,
        outbound: outbound(config, thread, port),
    }
}

/// A timeout in whole seconds from the configuration; 0 = never.
fn seconds(value: u32) -> Option<Duration> {
    (value > 0).then(|| Duration::from_secs(u64::from(value)))
}

/// How thread `thread`'s outbound connections find their way back. Software balancing adds
/// their rule; the local port is chosen by RSS where the engine knows the port's RSS (uveth:
/// under software balancing that spares the handoff, under RSS balancing it is the only way
/// back), else from the thread's share of the ephemeral range. Configuration refuses RSS
/// balancing with an outbound app on a port whose RSS is unknown (AF_PACKET). With fewer
/// queues than threads every thread takes its share (no RSS choice lands on a thread without
/// a queue, and shares keep the threads' ports disjoint); configuration then requires software
/// balancing, whose rule brings the answers back.
pub fn outbound(config: &Config, thread: u16, port: &dyn PortControl) -> Outbound {
    let every_thread_has_a_queue = config.port.queues >= config.engine.threads;
    let ports = match port.rss() {
        Some(rss) if every_thread_has_a_queue => PortChoice::Rss {
            rss: rss.clone(),
            queue: thread,
        },
        _ => PortChoice::Share {
            thread,
            threads: config.engine.threads,
        },
    };
    Outbound {
        rule: config.engine.balance == Balance::Software,
        ports,
    }
}

/// The ports the apps of thread `thread` serve.
pub fn served_ports(config: &Config, thread: u16) -> Box<ServedPorts> {
    let served = config
        .stack
        .app
        .iter()
        .filter(|app| app.runs_on(thread))
        .map(|app| (stack_kind(app.kind).proto(), app.port));
    ServedPorts::new(served)
}
