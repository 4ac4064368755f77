//! What one thread's stack is built from: addresses, socket buffer sizes and the apps it runs.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use flowtable::Proto;

use crate::outbound::Outbound;

/// An app a stack thread serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AppKind {
    /// TCP: sends back every byte it receives, closes when the client closes.
    TcpEcho,
    /// UDP: sends every datagram back to its sender.
    UdpEcho,
    /// TCP: a small HTTP/1.1 responder with keep-alive; the body names the thread and port.
    Http,
    /// TCP: reads and drops everything (RFC 863).
    Discard,
    /// TCP: connects to the app's upstream for every connection it accepts and relays the bytes
    /// both ways (a reverse proxy); the outbound connection is steered like [`Outbound`] says.
    TcpProxy,
}

impl AppKind {
    /// The name used in configuration and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            AppKind::TcpEcho => "tcp-echo",
            AppKind::UdpEcho => "udp-echo",
            AppKind::Http => "http",
            AppKind::Discard => "discard",
            AppKind::TcpProxy => "tcp-proxy",
        }
    }

    /// True for the apps served over TCP.
    pub fn is_tcp(self) -> bool {
        !matches!(self, AppKind::UdpEcho)
    }

    /// The transport its listen rule names.
    pub fn proto(self) -> Proto {
        if self.is_tcp() {
            Proto::Tcp
        } else {
            Proto::Udp
        }
    }
}

impl fmt::Display for AppKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One app on one port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AppSpec {
    /// What it does.
    pub kind: AppKind,
    /// The port it listens on.
    pub port: u16,
    /// Where `tcp-proxy` connects to (required by it, ignored by the other apps).
    pub upstream: Option<SocketAddr>,
}

impl AppSpec {
    /// An app that listens on `port` and makes no outbound connection.
    pub fn new(kind: AppKind, port: u16) -> Self {
        AppSpec {
            kind,
            port,
            upstream: None,
        }
    }

    /// A `tcp-proxy` on `port` in front of `upstream`.
    pub fn proxy(port: u16, upstream: SocketAddr) -> Self {
        AppSpec {
            kind: AppKind::TcpProxy,
            port,
            upstream: Some(upstream),
        }
    }
}

/// The stack of one thread. All threads of a port share its MAC and addresses.
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// The port's MAC address.
    pub mac: [u8; 6],
    /// The port's IPv4 address and prefix length.
    pub ipv4: (Ipv4Addr, u8),
    /// The port's IPv6 address and prefix length.
    pub ipv6: (Ipv6Addr, u8),
    /// Bytes of each TCP socket's receive buffer.
    pub tcp_rx_buffer: usize,
    /// Bytes of each TCP socket's transmit buffer.
    pub tcp_tx_buffer: usize,
    /// Payload bytes of each UDP socket's receive and transmit buffers.
    pub udp_buffer: usize,
    /// Connections one TCP app holds at once on this thread.
    pub max_connections: usize,
    /// When a TCP connection that makes no progress is closed; `None`: never.
    pub idle_timeout: Option<std::time::Duration>,
    /// When a half-open connection (SYN-RECEIVED) is released without a word, its rule
    /// deleted; `None`: only `idle_timeout` (with a reset) and smoltcp's 120 s apply.
    pub syn_timeout: Option<std::time::Duration>,
    /// When an `http` connection waiting for its next request is closed; `None`: only
    /// `idle_timeout` applies.
    pub keepalive_timeout: Option<std::time::Duration>,
    /// How long a `udp-echo` reply may wait for its destination's link address.
    pub neighbor_wait: std::time::Duration,
    /// Largest frame the stack emits (bytes without FCS): the buffers' data room, at most 1514.
    pub max_frame: usize,
    /// Seed of the TCP initial sequence numbers and ephemeral ports.
    pub seed: u64,
    /// The apps this thread runs.
    pub apps: Vec<AppSpec>,
    /// How the return packets of this thread's outbound connections find it.
    pub outbound: Outbound,
}
