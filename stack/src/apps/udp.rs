//! The `udp-echo` app of one thread: one UDP socket on its port receives every datagram, and each
//! goes back to its sender from the address it was sent to.
//!
//! # No peer blocks another
//!
//! smoltcp sends a socket's datagrams in order, and one whose destination's link address is not
//! known yet (ARP, neighbour discovery) stays at the head of the socket's queue, with every later
//! datagram behind it, until the neighbour answers: a sender that never answers would block the
//! replies to everyone. So a reply goes through the main socket only to a destination whose
//! replies left recently (its link address is known); a reply to any other destination goes
//! through a *probe*: one of [`PROBES`] more sockets bound to the same port (smoltcp delivers
//! every received datagram to the first socket bound, the main one), which holds that one
//! destination's replies. A probe whose queue empties proves the destination reachable; one that
//! still holds its replies after `neighbor_wait` is emptied and its replies are dropped and
//! counted (`unresolved_drops`). When every probe is busy, a reply to yet another unknown
//! destination is dropped and counted the same way. The main socket is watched too (a known
//! neighbour may vanish): if its queue does not move for `neighbor_wait`, it is emptied, its
//! replies counted as dropped, and every destination is probed again.
//!
//! Cost per datagram: one copy out of the receive buffer into scratch, one into a transmit
//! buffer, one hash map look-up of the destination. Per round: one look at each busy probe.

use std::collections::{HashMap, VecDeque};

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpAddress;

use crate::stats::AppStats;

/// Datagrams each UDP socket buffer holds (their payload bytes are bounded by `udp_buffer`).
const DATAGRAMS: usize = 256;
/// Sockets that hold the replies to destinations not known to be reachable, one destination
/// each.
pub const PROBES: usize = 8;
/// Datagrams one probe holds: replies to one destination while its link address is resolved.
const PROBE_DATAGRAMS: usize = 16;
/// A destination counts as reachable for this long after its replies last left through a probe;
/// then it is probed again (smoltcp forgets a link address after 60 s).
const REACHABLE_FOR: Duration = Duration::from_secs(30);
/// Destinations remembered as reachable at most; beyond it the oldest are forgotten first.
const MAX_REACHABLE: usize = 4096;

/// The replies queued in one socket, oldest first, by payload size: the socket sends them in
/// order, so the bytes it still holds tell exactly which have left.
#[derive(Default)]
struct Queued {
    sizes: VecDeque<usize>,
    bytes: usize,
}

impl Queued {
    fn push(&mut self, size: usize) {
        self.sizes.push_back(size);
        self.bytes += size;
    }

    /// The socket holds `still` bytes now: the replies that left are forgotten. True when
    /// something left.
    fn left_down_to(&mut self, still: usize) -> bool {
        let before = self.bytes;
        while self.bytes > still {
            match self.sizes.pop_front() {
                Some(size) => self.bytes -= size,
                None => break,
            }
        }
        // A datagram of 0 bytes leaves no trace in the byte count: once the socket is empty,
        // so is the tracker.
        if still == 0 {
            self.sizes.clear();
            self.bytes = 0;
        }
        self.bytes < before
    }

    /// Forgets everything; how many replies that was.
    fn drop_all(&mut self) -> u64 {
        let n = self.sizes.len() as u64;
        self.sizes.clear();
        self.bytes = 0;
        n
    }
}

/// A socket holding the replies to one destination until its link address is known.
struct Probe {
    handle: SocketHandle,
    /// The destination it holds replies to, and since when; `None`: free.
    holds: Option<(IpAddress, Instant)>,
    queued: Queued,
}

/// A `udp-echo` app on one port of one thread.
pub(crate) struct UdpService {
    port: u16,
    handle: SocketHandle,
    probes: Vec<Probe>,
    /// Destinations whose replies left through a probe, and when.
    reachable: HashMap<IpAddress, Instant>,
    neighbor_wait: Duration,
    /// The replies in the main socket.
    queued: Queued,
    /// Since when nothing left the main socket while it held replies.
    stuck_since: Option<Instant>,
    /// The main socket is to be emptied at the end of this round: no reply goes into it.
    quarantined: bool,
}

impl UdpService {
    /// Binds the app's sockets; `None` for port 0, which configuration rules out.
    pub(crate) fn bind(
        sockets: &mut SocketSet<'static>,
        port: u16,
        buffer: usize,
        neighbor_wait: Duration,
    ) -> Option<Self> {
        let main = bound_socket(port, DATAGRAMS, buffer)?;
        // The main socket is added first: smoltcp hands a received datagram to the first socket
        // bound to its port, so the probes never receive.
        let handle = sockets.add(main);
        let mut probes = Vec::with_capacity(PROBES);
        for _ in 0..PROBES {
            let probe = bound_socket(port, PROBE_DATAGRAMS, buffer.min(PROBE_DATAGRAMS * 2048))?;
            probes.push(Probe {
                handle: sockets.add(probe),
                holds: None,
                queued: Queued::default(),
            });
        }
        Some(UdpService {
            port,
            handle,
            probes,
            reachable: HashMap::new(),
            neighbor_wait,
            queued: Queued::default(),
            stuck_since: None,
            quarantined: false,
        })
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Settles the probes and the main socket after the last egress, then echoes every
    /// datagram received since the last round.
    pub(crate) fn service(
        &mut self,
        sockets: &mut SocketSet<'static>,
        now: Instant,
        stats: &AppStats,
        scratch: &mut [u8],
    ) {
        self.settle(sockets, now, stats);
        let (mut bytes_in, mut bytes_out, mut echoed, mut errors, mut unresolved) = (0, 0, 0, 0, 0);
        loop {
            let socket = sockets.get_mut::<udp::Socket>(self.handle);
            let (n, meta) = match socket.recv_slice(scratch) {
                Ok(received) => received,
                Err(udp::RecvError::Truncated) => {
                    errors += 1;
                    continue;
                }
                Err(udp::RecvError::Exhausted) => break,
            };
            bytes_in += n as u64;
            let destination = meta.endpoint.addr;
            let known = !self.quarantined
                && self
                    .reachable
                    .get(&destination)
                    .is_some_and(|&at| now < at + REACHABLE_FOR);
            let probe = if known {
                None
            } else {
                match self.probe_for(destination, now) {
                    Some(index) => Some(index),
                    None => {
                        unresolved += 1;
                        continue;
                    }
                }
            };
            let handle = probe.map_or(self.handle, |i| self.probes[i].handle);
            // `meta` names the sender and the local address it wrote to: the reply goes back to
            // that sender from that address.
            match sockets
                .get_mut::<udp::Socket>(handle)
                .send_slice(&scratch[..n], meta)
            {
                Ok(()) => {
                    bytes_out += n as u64;
                    echoed += 1;
                    match probe {
                        Some(i) => self.probes[i].queued.push(n),
                        None => self.queued.push(n),
                    }
                }
                Err(_) => errors += 1,
            }
        }
        if self.quarantined {
            // Its receive buffer was just emptied: closing it loses only the stuck replies.
            unresolved += self.queued.drop_all();
            empty(sockets.get_mut::<udp::Socket>(self.handle), self.port);
            self.quarantined = false;
            self.stuck_since = None;
            self.reachable.clear();
        }
        stats.bytes_in.add(bytes_in);
        stats.bytes_out.add(bytes_out);
        stats.requests.add(echoed);
        stats.errors.add(errors);
        stats.unresolved_drops.add(unresolved);
    }

    /// The probe holding `destination`'s replies, or a free one taken for it; `None` when every
    /// probe is busy with another destination.
    fn probe_for(&mut self, destination: IpAddress, now: Instant) -> Option<usize> {
        let held = self
            .probes
            .iter()
            .position(|p| p.holds.is_some_and(|(d, _)| d == destination));
        held.or_else(|| {
            let free = self.probes.iter().position(|p| p.holds.is_none())?;
            self.probes[free].holds = Some((destination, now));
            Some(free)
        })
    }

    /// What the last egress did: a probe whose queue emptied proves its destination reachable
    /// and is free again; a probe that still holds its replies after `neighbor_wait` is
    /// emptied, its replies counted as dropped; a main socket from which nothing left for
    /// `neighbor_wait` is quarantined (emptied at the end of the round).
    fn settle(&mut self, sockets: &mut SocketSet<'static>, now: Instant, stats: &AppStats) {
        for probe in &mut self.probes {
            let Some((destination, since)) = probe.holds else {
                continue;
            };
            let socket = sockets.get_mut::<udp::Socket>(probe.handle);
            probe.queued.left_down_to(socket.send_queue());
            if socket.send_queue() == 0 {
                if self.reachable.len() >= MAX_REACHABLE {
                    forget_oldest(&mut self.reachable);
                }
                self.reachable.insert(destination, now);
            } else if now >= since + self.neighbor_wait {
                stats.unresolved_drops.add(probe.queued.drop_all());
                empty(socket, self.port);
            } else {
                continue;
            }
            probe.holds = None;
        }

        let still = sockets.get::<udp::Socket>(self.handle).send_queue();
        let moved = self.queued.left_down_to(still);
        if still == 0 || moved {
            self.stuck_since = None;
            return;
        }
        let since = *self.stuck_since.get_or_insert(now);
        self.quarantined = now >= since + self.neighbor_wait;
    }
}

/// A UDP socket bound to `port` holding `datagrams` datagrams of `bytes` payload bytes in all
/// each way; `None` for port 0.
fn bound_socket(port: u16, datagrams: usize, bytes: usize) -> Option<udp::Socket<'static>> {
    let new_buffer =
        || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; datagrams], vec![0; bytes]);
    let mut socket = udp::Socket::new(new_buffer(), new_buffer());
    socket.bind(port).ok()?;
    Some(socket)
}

/// Drops everything `socket` holds and binds it to `port` again.
fn empty(socket: &mut udp::Socket<'static>, port: u16) {
    socket.close();
    // Binding the port it had cannot fail.
    let _ = socket.bind(port);
}

/// Removes the destination proven reachable longest ago.
fn forget_oldest(reachable: &mut HashMap<IpAddress, Instant>) {
    if let Some(oldest) = reachable.iter().min_by_key(|(_, &at)| at).map(|(&d, _)| d) {
        reachable.remove(&oldest);
    }
}
