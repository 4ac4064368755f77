//! The `udp-echo` app of one thread: one UDP socket on its port sends every datagram back to its
//! sender, from the address it was sent to.
//!
//! Cost per datagram: one copy out of the socket's receive buffer into scratch and one into its
//! transmit buffer. A datagram that does not fit the transmit buffer is dropped and counted.

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp;

use crate::stats::AppStats;

/// Datagrams each UDP socket buffer holds (their payload bytes are bounded by `udp_buffer`).
const DATAGRAMS: usize = 256;

/// A `udp-echo` app on one port of one thread.
pub(crate) struct UdpService {
    port: u16,
    handle: SocketHandle,
}

impl UdpService {
    /// Binds the app's socket; `None` for port 0, which configuration rules out.
    pub(crate) fn bind(sockets: &mut SocketSet<'static>, port: u16, buffer: usize) -> Option<Self> {
        let new_buffer =
            || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; DATAGRAMS], vec![0; buffer]);
        let mut socket = udp::Socket::new(new_buffer(), new_buffer());
        socket.bind(port).ok()?;
        Some(UdpService {
            port,
            handle: sockets.add(socket),
        })
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Echoes every datagram received since the last round.
    pub(crate) fn service(
        &mut self,
        sockets: &mut SocketSet<'static>,
        stats: &AppStats,
        scratch: &mut [u8],
    ) {
        let socket = sockets.get_mut::<udp::Socket>(self.handle);
        let (mut bytes_in, mut bytes_out, mut echoed, mut errors) = (0, 0, 0, 0);
        loop {
            match socket.recv_slice(scratch) {
                Ok((n, meta)) => {
                    bytes_in += n as u64;
                    // `meta` names the sender and the local address it wrote to: the reply
                    // goes back to that sender from that address.
                    match socket.send_slice(&scratch[..n], meta) {
                        Ok(()) => {
                            bytes_out += n as u64;
                            echoed += 1;
                        }
                        Err(_) => errors += 1,
                    }
                }
                Err(udp::RecvError::Truncated) => errors += 1,
                Err(udp::RecvError::Exhausted) => break,
            }
        }
        stats.bytes_in.add(bytes_in);
        stats.bytes_out.add(bytes_out);
        stats.requests.add(echoed);
        stats.errors.add(errors);
    }
}
