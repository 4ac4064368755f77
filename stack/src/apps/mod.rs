//! The apps a stack thread serves, one service per configured app and port.

pub mod http;
mod tcp;
mod udp;

pub(crate) use tcp::TcpService;
pub use tcp::BACKLOG;
pub(crate) use udp::UdpService;

/// One app of one thread.
pub(crate) enum Service {
    Tcp(TcpService),
    Udp(UdpService),
}
