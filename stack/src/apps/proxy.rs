//! The upstream side of the `tcp-proxy` app: for every accepted connection one outbound
//! connection to the app's upstream, and the bytes relayed between the two.
//!
//! Pairing. An accepted connection (the client side, a slot of the app's `TcpService`) gets its
//! upstream connection once it is established; until the upstream answers, what the client sends
//! waits in the client socket's receive buffer, and its window closes when that fills. Each
//! direction is piped as far as the other socket's send buffer has room, so a slow reader slows
//! the writer through TCP's own flow control, and no byte is buffered outside the sockets.
//!
//! Ends. A FIN is passed on once everything before it was: a side whose peer closed and whose
//! receive buffer is empty closes the other side's sending half. A reset, or an upstream that
//! cannot be reached (refused, no answer within the idle timeout, no socket or local port left),
//! resets the other side, counted in `upstream_failed`. After the client side ended, an upstream
//! connection still closing finishes alone; its rule (if it has one) goes when it reaches CLOSED
//! or TIME-WAIT, as for accepted connections.
//!
//! Sockets. Upstream sockets are pooled like the app's accepted ones, at most `max_connections`
//! per app and thread, buffers allocated once. When every one is busy, a socket in TIME-WAIT is
//! taken over (its connection is over; Linux's `tcp_tw_reuse` does the same for outbound
//! connections), else the client is reset.
//!
//! Cost per service round: one pass over the upstream sockets, one copy per relayed byte through
//! the thread's scratch buffer.

use std::net::SocketAddr;

use flowtable::{FlowKey, Proto};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};

use super::Round;
use crate::keys::endpoint_key;
use crate::rules::Rules;
use crate::stats::StackStats;

/// One upstream socket of the pool.
struct Upstream {
    handle: SocketHandle,
    /// The connection's key from its SYN until it ended (with a rule or without, see
    /// [`Outbound`](crate::outbound::Outbound)).
    key: Option<FlowKey>,
    /// Serves an accepted connection that has not ended yet.
    paired: bool,
}

/// The upstream connections of one `tcp-proxy` app on one thread.
pub(crate) struct Upstreams {
    remote: SocketAddr,
    slots: Vec<Upstream>,
    max_sockets: usize,
    rx_buffer: usize,
    tx_buffer: usize,
    idle_timeout: smoltcp::time::Duration,
}

/// What the proxy does for one accepted connection in one round.
pub(crate) struct ClientSide<'a> {
    /// The accepted connection's socket.
    pub(crate) handle: SocketHandle,
    /// Its upstream connection: an index into the pool.
    pub(crate) upstream: &'a mut Option<usize>,
}

impl Upstreams {
    pub(crate) fn new(
        remote: SocketAddr,
        max_connections: usize,
        rx_buffer: usize,
        tx_buffer: usize,
        idle_timeout: smoltcp::time::Duration,
    ) -> Self {
        Upstreams {
            remote,
            slots: Vec::new(),
            max_sockets: max_connections.max(1),
            rx_buffer,
            tx_buffer,
            idle_timeout,
        }
    }

    /// One round for one accepted connection: open its upstream connection, relay, pass ends on.
    pub(crate) fn step(&mut self, client: ClientSide<'_>, env: &mut Round<'_>) {
        let client_state = env.sockets.get::<tcp::Socket>(client.handle).state();
        let Some(i) = *client.upstream else {
            if matches!(client_state, State::Established | State::CloseWait) {
                match self.connect(env) {
                    Some(i) => {
                        *client.upstream = Some(i);
                        self.slots[i].paired = true;
                        env.stats.upstream_connects.add(1);
                    }
                    None => {
                        env.sockets.get_mut::<tcp::Socket>(client.handle).abort();
                        env.stats.upstream_failed.add(1);
                    }
                }
            }
            return;
        };
        let upstream = self.slots[i].handle;
        let upstream_state = env.sockets.get::<tcp::Socket>(upstream).state();
        let open = |state| {
            matches!(
                state,
                State::SynSent | State::SynReceived | State::Established | State::CloseWait
            )
        };
        if upstream_state == State::Closed {
            // Refused, unreachable or reset: an upstream that ended normally only gets here
            // after both FINs, when the client side has its peer's FIN already. A client side
            // in FIN-WAIT got the upstream's FIN but may still send: nothing would read it
            // again, so it is reset too (else its window closes and it never ends).
            let client_may_still_send = matches!(client_state, State::FinWait1 | State::FinWait2);
            if open(client_state) || client_may_still_send {
                env.sockets.get_mut::<tcp::Socket>(client.handle).abort();
                env.stats.upstream_failed.add(1);
            }
            self.unpair(client.upstream);
            return;
        }
        env.stats
            .bytes_in
            .add(pipe(env.sockets, client.handle, upstream, env.scratch));
        env.stats
            .bytes_out
            .add(pipe(env.sockets, upstream, client.handle, env.scratch));
        pass_fin(env.sockets, client.handle, upstream);
        pass_fin(env.sockets, upstream, client.handle);
        match client_state {
            State::Listen | State::Closed => {
                // The client reset (or its connection timed out): so does the upstream.
                if open(upstream_state) {
                    env.sockets.get_mut::<tcp::Socket>(upstream).abort();
                }
                self.unpair(client.upstream);
            }
            State::TimeWait => self.unpair(client.upstream),
            _ => {}
        }
    }

    fn unpair(&mut self, upstream: &mut Option<usize>) {
        if let Some(i) = upstream.take() {
            self.slots[i].paired = false;
        }
    }

    /// Opens a connection to the upstream: a socket, a local port, the rule, the SYN queued.
    fn connect(&mut self, env: &mut Round<'_>) -> Option<usize> {
        let i = self.free_socket(env)?;
        let remote_ip = self.remote.ip();
        let local_ip = env.connector.local_ip(remote_ip);
        let slots = &self.slots;
        let sockets = &*env.sockets;
        let port = env.connector.ports.pick(
            Proto::Tcp,
            local_ip,
            (remote_ip, self.remote.port()),
            |port| {
                slots.iter().any(|slot| {
                    let socket = sockets.get::<tcp::Socket>(slot.handle);
                    socket.state() != State::Closed
                        && socket.local_endpoint().is_some_and(|end| end.port == port)
                })
            },
        )?;
        let local = IpEndpoint::new(local_ip.into(), port);
        let remote = IpEndpoint::new(remote_ip.into(), self.remote.port());
        let key = endpoint_key(Proto::Tcp, local, remote)?;
        let socket = env.sockets.get_mut::<tcp::Socket>(self.slots[i].handle);
        socket
            .connect(
                env.cx,
                remote,
                IpListenEndpoint {
                    addr: Some(local.addr),
                    port,
                },
            )
            .ok()?;
        // The SYN leaves after the apps ran: the rule is in before any answer can arrive.
        env.rules
            .outbound_opened(key, env.connector.rule, env.stack_stats);
        self.slots[i].key = Some(key);
        Some(i)
    }

    /// A closed socket of the pool, a new one, or one taken over from TIME-WAIT.
    fn free_socket(&mut self, env: &mut Round<'_>) -> Option<usize> {
        let state = |sockets: &SocketSet<'static>, slot: &Upstream| {
            sockets.get::<tcp::Socket>(slot.handle).state()
        };
        if let Some(i) = self.slots.iter().position(|slot| {
            !slot.paired && slot.key.is_none() && state(env.sockets, slot) == State::Closed
        }) {
            return Some(i);
        }
        if self.slots.len() < self.max_sockets {
            let mut socket = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; self.rx_buffer]),
                tcp::SocketBuffer::new(vec![0; self.tx_buffer]),
            );
            socket.set_nagle_enabled(false);
            socket.set_timeout(Some(self.idle_timeout));
            self.slots.push(Upstream {
                handle: env.sockets.add(socket),
                key: None,
                paired: false,
            });
            return Some(self.slots.len() - 1);
        }
        let i = self
            .slots
            .iter()
            .position(|slot| !slot.paired && state(env.sockets, slot) == State::TimeWait)?;
        env.sockets
            .get_mut::<tcp::Socket>(self.slots[i].handle)
            .abort();
        if let Some(key) = self.slots[i].key.take() {
            env.rules.connection_closed(&key, env.stack_stats);
        }
        Some(i)
    }

    /// Ends the rules of upstream connections that are over (CLOSED or TIME-WAIT).
    pub(crate) fn reap(
        &mut self,
        sockets: &SocketSet<'static>,
        rules: &mut Rules,
        stack_stats: &StackStats,
    ) {
        for slot in &mut self.slots {
            let state = sockets.get::<tcp::Socket>(slot.handle).state();
            if matches!(state, State::Closed | State::TimeWait) {
                if let Some(key) = slot.key.take() {
                    rules.connection_closed(&key, stack_stats);
                }
            }
        }
    }

    /// Resets every upstream connection and deletes their rules (the engine is stopping).
    pub(crate) fn abort_all(
        &mut self,
        sockets: &mut SocketSet<'static>,
        rules: &mut Rules,
        stack_stats: &StackStats,
    ) {
        for slot in &mut self.slots {
            sockets.get_mut::<tcp::Socket>(slot.handle).abort();
            slot.paired = false;
            if let Some(key) = slot.key.take() {
                rules.connection_closed(&key, stack_stats);
            }
        }
    }
}

/// Moves what `from` received into `to`'s send buffer, as much as it has room for; the bytes
/// moved.
fn pipe(
    sockets: &mut SocketSet<'static>,
    from: SocketHandle,
    to: SocketHandle,
    scratch: &mut [u8],
) -> u64 {
    let mut moved = 0;
    loop {
        let receiver = sockets.get::<tcp::Socket>(to);
        if !receiver.may_send() {
            break;
        }
        let room = (receiver.send_capacity() - receiver.send_queue()).min(scratch.len());
        if room == 0 {
            break;
        }
        let n = match sockets
            .get_mut::<tcp::Socket>(from)
            .recv_slice(&mut scratch[..room])
        {
            Ok(n) if n > 0 => n,
            _ => break,
        };
        // The room was measured above, so all n bytes fit.
        if let Ok(sent) = sockets.get_mut::<tcp::Socket>(to).send_slice(&scratch[..n]) {
            moved += sent as u64;
        }
    }
    moved
}

/// Closes `to`'s sending half once `from`'s peer closed and everything it sent was passed on.
fn pass_fin(sockets: &mut SocketSet<'static>, from: SocketHandle, to: SocketHandle) {
    let from = sockets.get::<tcp::Socket>(from);
    let fin_received = matches!(
        from.state(),
        State::CloseWait | State::LastAck | State::Closing | State::TimeWait
    );
    if fin_received && from.recv_queue() == 0 {
        let to = sockets.get_mut::<tcp::Socket>(to);
        if matches!(to.state(), State::Established | State::CloseWait) {
            to.close();
        }
    }
}
