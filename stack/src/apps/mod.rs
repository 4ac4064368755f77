//! The apps a stack thread serves, one service per configured app and port.

use smoltcp::iface::{Context, SocketSet};

use crate::outbound::Connector;
use crate::rules::Rules;
use crate::stats::{AppStats, StackStats};

pub mod http;
mod proxy;
mod tcp;
mod udp;

pub use tcp::BACKLOG;
pub(crate) use tcp::{TcpService, Timeouts};
pub(crate) use udp::UdpService;

/// What one service round of an app works with: the thread's sockets, interface context, outbound
/// connector, rules and scratch buffer, and the counters.
pub(crate) struct Round<'a> {
    /// The stack's clock at the start of the round.
    pub(crate) now: smoltcp::time::Instant,
    pub(crate) sockets: &'a mut SocketSet<'static>,
    pub(crate) cx: &'a mut Context,
    pub(crate) connector: &'a mut Connector,
    pub(crate) rules: &'a mut Rules,
    pub(crate) stack_stats: &'a StackStats,
    pub(crate) stats: &'a AppStats,
    pub(crate) scratch: &'a mut [u8],
}

/// One app of one thread.
pub(crate) enum Service {
    Tcp(Box<TcpService>),
    Udp(UdpService),
}
