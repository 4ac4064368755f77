//! The TCP apps of one thread (`tcp-echo`, `http`, `discard`, `tcp-proxy`): a pool of sockets on
//! one port that keeps a few of them listening, follows each connection from set-up to close with
//! its flow rule, and runs the app on the connection's data (`tcp-proxy`: relays it to and from
//! an upstream connection, see `proxy`).
//!
//! smoltcp has no accept queue: a listening socket becomes the connection. So the service keeps
//! [`BACKLOG`] sockets listening (several SYNs may arrive in one burst) and makes a closed socket
//! listen again, up to `max_connections` sockets in all: buffers are allocated when a socket is
//! first created and reused after, never per connection.
//!
//! # TIME-WAIT
//!
//! A connection the server closes first (HTTP/1.0, `Connection: close`) leaves its socket in
//! TIME-WAIT for smoltcp's 10 seconds. Such a socket holds no connection: its rule is deleted
//! and it does not count as active. It keeps TIME-WAIT only while nobody needs it, as lwIP's
//! TIME-WAIT PCBs do: when a new connection finds no closed socket free and the app already has
//! `max_connections` sockets, the oldest TIME-WAIT socket is taken (silently: `listen` resets
//! it without a segment), and a SYN from the very address and port of a TIME-WAIT connection
//! takes that socket over at once (as a kernel accepts a new SYN in TIME-WAIT, RFC 6191). So at
//! any rate of new connections no SYN is refused for want of a slot, and memory stays bounded.
//!
//! Why this is safe: TIME-WAIT guards against two things. (1) Our last ACK is lost and the peer
//! sends its FIN again: with the socket gone the peer gets a reset instead of an ACK, in
//! LAST-ACK, after its application has closed: it loses nothing. (2) A delayed duplicate of the
//! old connection lands in a new one on the same address pair: smoltcp picks each connection's
//! initial sequence number at random, so such a segment falls inside the new window with a
//! probability of about window / 2^32 (1 in 65 536 for 64 KiB), and only if a segment is delayed
//! for longer than the old connection's close and the new one's set-up, which a LAN does not do.
//!
//! # Half-open connections (SYN floods)
//!
//! A SYN takes a socket into SYN-RECEIVED and adds the connection's exact rule at once (its
//! client's ACK must find this thread). A flood of SYNs from spoofed addresses never completes
//! those handshakes, so, as a kernel's SYN queue, half-open connections are bounded and
//! released:
//!
//! - after `syn_timeout` in SYN-RECEIVED the socket listens again, silently (no reset to a
//!   spoofed address: a kernel drops an expired request without a word too), and the rule goes;
//!   counted in `syn_timeouts`;
//! - when a SYN finds every socket of the app busy and none in TIME-WAIT, the socket of the
//!   oldest half-open connection is taken for it (silently, its rule deleted), as a full SYN
//!   queue drops its oldest request; counted in `half_open_reused`. Only established
//!   connections refuse a SYN (`listen_exhausted`).
//!
//! So at any flood rate `r` per thread a legitimate client gets in if its ACK arrives within
//! `max_connections / r` of its SYN (64 sockets at 100 000 SYNs/s: 640 µs, a LAN's round trip
//! many times over), the rules of one app on one thread stay at most `max_connections`, and
//! they are gone `syn_timeout` after the flood. The default `syn_timeout` of 7 s lets the SYN-ACK
//! and its two retransmissions (smoltcp's RTO starts at 1 s and doubles) each be answered: Linux
//! with `tcp_synack_retries = 2`, the value hardening guides recommend.
//!
//! The bookkeeping is a queue of (slot, entry time) in the order connections entered
//! SYN-RECEIVED; an entry whose slot left SYN-RECEIVED since is skipped when met: O(1) per SYN
//! and per release.
//!
//! # Timeouts
//!
//! A connection that makes no progress (nothing received, nothing it sent acknowledged, no
//! state change) for `idle_timeout` is closed: with a FIN when nothing is pending either way,
//! else with a reset; an `http` connection waiting for its next request with nothing pending is
//! closed after `keepalive_timeout` instead (as nginx's `keepalive_timeout`). A closed
//! connection that still makes no progress is reset after one more period. Each is counted.
//!
//! Cost per service round: one pass over the app's sockets (state read, data moved through one
//! scratch buffer). Rounds run only after a poll that changed socket state.

use flowtable::{FlowKey, Proto};
use std::collections::{HashMap, VecDeque};

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::{Duration, Instant};

use super::http::{self, Head, Refusal};
use super::proxy::{ClientSide, Upstreams};
use super::Round;
use crate::config::{AppKind, AppSpec, StackConfig};
use crate::keys::endpoint_key;
use crate::rules::Rules;
use crate::stats::{AppStats, StackStats};

/// Sockets kept listening per app and thread between rounds (at most `max_connections`). Before
/// each round the stack also arms one listening socket per SYN the round carries, so a burst of
/// SYNs is never refused for want of a listener.
pub const BACKLOG: usize = 4;
/// smoltcp's own timeout: a connection whose peer does not acknowledge what it has sent for this
/// long (data, a SYN-ACK or a FIN) is aborted; the proxy's upstream connects use it too.
const IDLE_TIMEOUT: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(120);

/// One socket of the pool and what the app keeps for its connection.
struct Slot {
    handle: SocketHandle,
    /// The connection's rule while it is set up.
    key: Option<FlowKey>,
    /// The `http` app's bytes of a request not yet answered.
    request: Vec<u8>,
    /// The `http` app's body bytes still to skip.
    body_left: u64,
    /// The `tcp-proxy` app's upstream connection for this one.
    upstream: Option<usize>,
    /// The connection this socket holds in TIME-WAIT (its rule is gone already).
    time_wait: Option<FlowKey>,
    /// When the connection last made progress.
    last_progress: Instant,
    /// What the socket looked like after the last round: bytes waiting to be read, bytes not
    /// yet acknowledged, state. More to read, fewer unacknowledged or another state: progress.
    seen: (usize, usize, State),
    /// When the connection entered SYN-RECEIVED, while it is there.
    half_open_since: Option<Instant>,
}

impl Slot {
    fn new(handle: SocketHandle, now: Instant) -> Self {
        Slot {
            handle,
            key: None,
            request: Vec::new(),
            body_left: 0,
            upstream: None,
            time_wait: None,
            last_progress: now,
            seen: (0, 0, State::Listen),
            half_open_since: None,
        }
    }
}

/// When connections that make no progress are closed (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Timeouts {
    pub(crate) idle: Option<Duration>,
    pub(crate) keepalive: Option<Duration>,
    /// How long a connection may stay half-open (SYN-RECEIVED).
    pub(crate) syn: Option<Duration>,
}

/// A TCP app on one port of one thread.
pub(crate) struct TcpService {
    kind: AppKind,
    port: u16,
    slots: Vec<Slot>,
    max_sockets: usize,
    rx_buffer: usize,
    tx_buffer: usize,
    /// The `http` app's response body.
    body: Vec<u8>,
    /// Scratch for building a response.
    response: Vec<u8>,
    /// The `tcp-proxy` app's upstream connections.
    upstreams: Option<Upstreams>,
    timeouts: Timeouts,
    /// Slots whose socket is in TIME-WAIT, by the connection it held, and in the order they
    /// entered it (entries of slots that left TIME-WAIT since are skipped when met).
    time_wait: HashMap<FlowKey, usize, ahash::RandomState>,
    time_wait_order: VecDeque<usize>,
    /// Slots in SYN-RECEIVED with the time they entered it, oldest first (entries of slots that
    /// left it since are skipped when met).
    half_open_order: VecDeque<(usize, Instant)>,
    /// When the oldest half-open connection reaches the SYN timeout.
    next_syn_deadline: Option<Instant>,
}

impl TcpService {
    /// The TCP app `app` of thread `thread`, with the socket sizes and limits of `config`.
    pub(crate) fn new(app: AppSpec, thread: u16, config: &StackConfig, timeouts: Timeouts) -> Self {
        let AppSpec {
            kind,
            port,
            upstream,
        } = app;
        let (max_connections, rx_buffer, tx_buffer) = (
            config.max_connections,
            config.tcp_rx_buffer,
            config.tcp_tx_buffer,
        );
        let upstreams = upstream
            .filter(|_| kind == AppKind::TcpProxy)
            .map(|remote| {
                Upstreams::new(remote, max_connections, rx_buffer, tx_buffer, IDLE_TIMEOUT)
            });
        TcpService {
            kind,
            port,
            slots: Vec::new(),
            max_sockets: max_connections.max(1),
            rx_buffer,
            tx_buffer,
            body: format!("flowsteer thread {thread} port {port}\n").into_bytes(),
            response: Vec::new(),
            upstreams,
            timeouts,
            time_wait: HashMap::default(),
            time_wait_order: VecDeque::new(),
            half_open_order: VecDeque::new(),
            next_syn_deadline: None,
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// When the oldest half-open connection reaches the SYN timeout, as of the last round: the
    /// stack needs a round then even if nothing arrives.
    pub(crate) fn next_syn_deadline(&self) -> Option<Instant> {
        self.next_syn_deadline
    }

    /// Brings the listening sockets up to one per SYN of the coming round, at least the
    /// backlog, at most `max_connections` sockets in all, taking sockets out of TIME-WAIT
    /// where no other is free, and for the SYNs themselves those of the oldest half-open
    /// connections. Counts each of the `syns` left without a listener (smoltcp answers it with
    /// a reset).
    pub(crate) fn refill_listeners(
        &mut self,
        sockets: &mut SocketSet<'static>,
        rules: &mut Rules,
        syns: usize,
        now: Instant,
        stack_stats: &StackStats,
        stats: &AppStats,
    ) {
        let want = syns.max(BACKLOG).min(self.max_sockets);
        let mut listening = 0;
        for slot in &mut self.slots {
            let socket = sockets.get_mut::<tcp::Socket>(slot.handle);
            let reusable =
                socket.state() == State::Closed && slot.key.is_none() && slot.upstream.is_none();
            if socket.state() == State::Listen
                || (reusable && listening < want && socket.listen(self.port).is_ok())
            {
                listening += 1;
                // A socket whose TIME-WAIT ran out by itself.
                if let Some(key) = slot.time_wait.take() {
                    self.time_wait.remove(&key);
                }
            }
        }
        while listening < want {
            if self.slots.len() >= self.max_sockets {
                if self.reuse_oldest_time_wait(sockets) {
                    stats.time_wait_reused.add(1);
                    listening += 1;
                    continue;
                }
                // Only for a SYN that is there: the backlog alone takes no connection's socket.
                if listening < syns
                    && self.release_oldest_half_open(sockets, rules, stack_stats, stats)
                {
                    stats.half_open_reused.add(1);
                    listening += 1;
                    continue;
                }
                break;
            }
            let mut socket = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; self.rx_buffer]),
                tcp::SocketBuffer::new(vec![0; self.tx_buffer]),
            );
            socket.set_nagle_enabled(false);
            socket.set_timeout(Some(IDLE_TIMEOUT));
            if socket.listen(self.port).is_err() {
                // Only port 0 is refused, which configuration rules out.
                stats.errors.add(1);
                break;
            }
            let handle = sockets.add(socket);
            self.slots.push(Slot::new(handle, now));
            listening += 1;
        }
        stats
            .listen_exhausted
            .add(syns.saturating_sub(listening) as u64);
    }

    /// Makes the socket of the oldest half-open connection listen again; false when none is
    /// half-open.
    fn release_oldest_half_open(
        &mut self,
        sockets: &mut SocketSet<'static>,
        rules: &mut Rules,
        stack_stats: &StackStats,
        stats: &AppStats,
    ) -> bool {
        while let Some((index, since)) = self.half_open_order.pop_front() {
            let slot = &mut self.slots[index];
            if slot.half_open_since == Some(since)
                && release_half_open(self.port, slot, sockets, rules, stack_stats, stats)
            {
                return true;
            }
        }
        false
    }

    /// Releases the half-open connections older than the SYN timeout, oldest first, and
    /// returns when the next one will be (`None`: none is half-open or there is no timeout).
    fn expire_half_open(&mut self, round: &mut Round<'_>) -> Option<Instant> {
        let limit = self.timeouts.syn?;
        while let Some(&(index, since)) = self.half_open_order.front() {
            let slot = &mut self.slots[index];
            if slot.half_open_since != Some(since) {
                self.half_open_order.pop_front();
                continue;
            }
            if round.now < since + limit {
                return Some(since + limit);
            }
            self.half_open_order.pop_front();
            let Round {
                sockets,
                rules,
                stack_stats,
                stats,
                ..
            } = round;
            if release_half_open(self.port, slot, sockets, rules, stack_stats, stats) {
                stats.syn_timeouts.add(1);
            }
        }
        None
    }

    /// Makes the oldest socket in TIME-WAIT listen again; false when none is in TIME-WAIT.
    fn reuse_oldest_time_wait(&mut self, sockets: &mut SocketSet<'static>) -> bool {
        while let Some(index) = self.time_wait_order.pop_front() {
            if self.reuse_time_wait(index, sockets) {
                return true;
            }
        }
        false
    }

    /// A SYN from the address and port of a connection in TIME-WAIT on this app: that socket
    /// listens again at once, so the SYN opens the new connection instead of being answered
    /// from TIME-WAIT (RFC 6191). True when there was one.
    pub(crate) fn reuse_time_wait_of(
        &mut self,
        key: &FlowKey,
        sockets: &mut SocketSet<'static>,
        stats: &AppStats,
    ) -> bool {
        let reused = self
            .time_wait
            .get(key)
            .copied()
            .is_some_and(|index| self.reuse_time_wait(index, sockets));
        if reused {
            stats.time_wait_reused.add(1);
        }
        reused
    }

    /// Makes slot `index` listen again if its socket is still in the TIME-WAIT it entered.
    fn reuse_time_wait(&mut self, index: usize, sockets: &mut SocketSet<'static>) -> bool {
        let Some(slot) = self.slots.get_mut(index) else {
            return false;
        };
        let Some(key) = slot.time_wait.take() else {
            return false;
        };
        self.time_wait.remove(&key);
        let socket = sockets.get_mut::<tcp::Socket>(slot.handle);
        // `listen` on a socket in TIME-WAIT resets it without sending anything.
        socket.state() == State::TimeWait && socket.listen(self.port).is_ok()
    }

    /// Follows every socket: rules for connections set up and ended, data for the app.
    pub(crate) fn service(&mut self, round: &mut Round<'_>) {
        // Sockets that ended in an earlier round listen again. Not those of this round: a reset
        // this round queued (an abort) leaves only in the egress after it, and `listen` would
        // forget it.
        self.refill_listeners(
            round.sockets,
            round.rules,
            0,
            round.now,
            round.stack_stats,
            round.stats,
        );
        for (index, slot) in self.slots.iter_mut().enumerate() {
            note_progress(slot, round);
            let open_before = slot.key;
            // The proxy first: a client it resets for a failed upstream ends in this same round.
            if let Some(upstreams) = self.upstreams.as_mut() {
                let client = ClientSide {
                    handle: slot.handle,
                    upstream: &mut slot.upstream,
                };
                upstreams.step(client, round);
            }
            let http = (self.body.as_slice(), &mut self.response);
            Self::serve(self.kind, http, slot, round);
            let state = round.sockets.get::<tcp::Socket>(slot.handle).state();
            if let (State::TimeWait, Some(key), None) = (state, open_before, slot.key) {
                slot.time_wait = Some(key);
                self.time_wait.insert(key, index);
                self.time_wait_order.push_back(index);
            }
            match (state, slot.half_open_since) {
                (State::SynReceived, None) if slot.key.is_some() => {
                    slot.half_open_since = Some(round.now);
                    self.half_open_order.push_back((index, round.now));
                }
                (State::SynReceived, _) => {}
                (_, _) => slot.half_open_since = None,
            }
            enforce_timeouts(self.kind, self.timeouts, slot, round);
        }
        self.next_syn_deadline = self.expire_half_open(round);
        // Entries of slots that left TIME-WAIT by themselves stay in the order until met; drop
        // them once they outnumber the slots, so the order stays bounded.
        if self.time_wait_order.len() > 2 * self.slots.len() {
            let slots = &self.slots;
            self.time_wait_order
                .retain(|&index| slots[index].time_wait.is_some());
        }
        if self.half_open_order.len() > 2 * self.slots.len() {
            let slots = &self.slots;
            self.half_open_order
                .retain(|&(index, since)| slots[index].half_open_since == Some(since));
        }
        if let Some(upstreams) = self.upstreams.as_mut() {
            upstreams.reap(round.sockets, round.rules, round.stack_stats);
        }
        let active = self.slots.iter().filter(|s| s.key.is_some()).count();
        round.stats.connections_active.set(active as u64);
    }

    /// One accepted connection: its rule when it was set up or ended, its data for the app.
    fn serve(kind: AppKind, http: (&[u8], &mut Vec<u8>), slot: &mut Slot, round: &mut Round<'_>) {
        let Round {
            sockets,
            rules,
            stack_stats,
            stats,
            scratch,
            ..
        } = round;
        let socket = sockets.get_mut::<tcp::Socket>(slot.handle);
        match socket.state() {
            // Back to listening (a reset during set-up), closed, or closed by us first and
            // waiting out TIME-WAIT: the connection ended. A FIN the peer sends again during
            // TIME-WAIT may then reach another thread, which resets it: the peer is done
            // already (it sent the last ACK's trigger), so nothing is lost.
            State::Listen | State::Closed | State::TimeWait => {
                if let Some(key) = slot.key.take() {
                    rules.connection_closed(&key, stack_stats);
                    stats.connections_closed.add(1);
                    slot.request.clear();
                    slot.body_left = 0;
                }
            }
            _ => {
                if slot.key.is_none() {
                    let key = match (socket.local_endpoint(), socket.remote_endpoint()) {
                        (Some(local), Some(remote)) => endpoint_key(Proto::Tcp, local, remote),
                        _ => None,
                    };
                    match key {
                        Some(key) => {
                            rules.connection_opened(key, stack_stats);
                            stats.connections_opened.add(1);
                            slot.key = Some(key);
                        }
                        None => {
                            // A connection smoltcp cannot name both ends of is refused.
                            socket.abort();
                            stats.errors.add(1);
                            return;
                        }
                    }
                }
                match kind {
                    AppKind::TcpEcho => echo(socket, stats, scratch),
                    AppKind::Discard => discard(socket, stats, scratch),
                    AppKind::Http => serve_http(socket, slot, http.0, http.1, stats, scratch),
                    // The proxy's data moves between two sockets: `Upstreams::step`.
                    AppKind::TcpProxy | AppKind::UdpEcho => {}
                }
            }
        }
    }

    /// Aborts every connection (the engine is stopping): the peers see a reset, the rules go.
    pub(crate) fn abort_all(
        &mut self,
        sockets: &mut SocketSet<'static>,
        rules: &mut Rules,
        stack_stats: &StackStats,
        stats: &AppStats,
    ) {
        for slot in self.slots.iter_mut() {
            let socket = sockets.get_mut::<tcp::Socket>(slot.handle);
            socket.abort();
            slot.upstream = None;
            if let Some(key) = slot.key.take() {
                rules.connection_closed(&key, stack_stats);
                stats.connections_closed.add(1);
            }
        }
        if let Some(upstreams) = self.upstreams.as_mut() {
            upstreams.abort_all(sockets, rules, stack_stats);
        }
        stats.connections_active.set(0);
    }
}

/// Ends `slot`'s half-open connection without a word: the socket listens again (`abort`
/// followed at once by `listen` forgets the reset before it is sent) and the rule goes. False
/// when the socket is no longer in SYN-RECEIVED.
///
/// The socket is also taken out of the set and put back: smoltcp keeps, beside each socket,
/// whether it waits for a neighbour's link address, and silences it for a second when it does.
/// A spoofed client is such a neighbour forever, and the next connection of the socket (a real
/// client's, during a flood) would inherit the silence: its SYN-ACK would wait a second, by
/// which time the flood took the socket again. A fresh entry starts without it.
fn release_half_open(
    port: u16,
    slot: &mut Slot,
    sockets: &mut SocketSet<'static>,
    rules: &mut Rules,
    stack_stats: &StackStats,
    stats: &AppStats,
) -> bool {
    slot.half_open_since = None;
    if sockets.get::<tcp::Socket>(slot.handle).state() != State::SynReceived {
        return false;
    }
    let smoltcp::socket::Socket::Tcp(mut socket) = sockets.remove(slot.handle) else {
        unreachable!("an app's sockets are TCP sockets");
    };
    socket.abort();
    if socket.listen(port).is_err() {
        // Only port 0 is refused, which configuration rules out; the reset then goes out.
        stats.errors.add(1);
    }
    slot.handle = sockets.add(socket);
    // The next connection's SYN is a change of state, hence progress: its idle time starts then.
    slot.seen = (0, 0, State::Listen);
    if let Some(key) = slot.key.take() {
        rules.connection_closed(&key, stack_stats);
        stats.connections_closed.add(1);
    }
    true
}

/// Notes whether `slot`'s connection made progress since the last round: more bytes to read,
/// fewer unacknowledged, or another state. Runs before the app takes anything.
fn note_progress(slot: &mut Slot, round: &mut Round<'_>) {
    let socket = round.sockets.get::<tcp::Socket>(slot.handle);
    let now = (socket.recv_queue(), socket.send_queue(), socket.state());
    let (read, unacknowledged, state) = slot.seen;
    if now.0 > read || now.1 < unacknowledged || now.2 != state {
        slot.last_progress = round.now;
    }
}

/// Closes `slot`'s connection when it made no progress for its timeout (see the module
/// documentation), and records how the socket looks after this round.
fn enforce_timeouts(kind: AppKind, timeouts: Timeouts, slot: &mut Slot, round: &mut Round<'_>) {
    let socket = round.sockets.get_mut::<tcp::Socket>(slot.handle);
    if slot.key.is_some() {
        let nothing_pending = socket.recv_queue() == 0
            && socket.send_queue() == 0
            && slot.request.is_empty()
            && slot.body_left == 0
            && slot.upstream.is_none()
            && socket.state() == State::Established;
        let keepalive = match timeouts.keepalive {
            Some(limit) if kind == AppKind::Http && nothing_pending => Some(limit),
            _ => None,
        };
        if let Some(limit) = keepalive.or(timeouts.idle) {
            if round.now >= slot.last_progress + limit {
                if keepalive.is_some() {
                    round.stats.keepalive_timeouts.add(1);
                } else {
                    round.stats.idle_timeouts.add(1);
                }
                if nothing_pending {
                    socket.close();
                } else {
                    socket.abort();
                }
                // A FIN the peer never acknowledges is progress-free too: one more period, then
                // the reset.
                slot.last_progress = round.now;
            }
        }
    }
    slot.seen = (socket.recv_queue(), socket.send_queue(), socket.state());
}

/// Closes our side once the peer closed and everything it sent was handled.
fn close_after_peer(socket: &mut tcp::Socket<'_>) {
    if socket.state() == State::CloseWait && socket.recv_queue() == 0 {
        socket.close();
    }
}

/// `tcp-echo`: moves received bytes to the send buffer, as many as it has room for.
fn echo(socket: &mut tcp::Socket<'_>, stats: &AppStats, scratch: &mut [u8]) {
    let (mut bytes_in, mut bytes_out) = (0, 0);
    while socket.can_recv() && socket.may_send() {
        let room = socket.send_capacity() - socket.send_queue();
        if room == 0 {
            break;
        }
        let limit = room.min(scratch.len());
        let Ok(n) = socket.recv_slice(&mut scratch[..limit]) else {
            break;
        };
        if n == 0 {
            break;
        }
        bytes_in += n as u64;
        // The room was measured above, so all n bytes fit.
        if let Ok(sent) = socket.send_slice(&scratch[..n]) {
            bytes_out += sent as u64;
        }
    }
    if !socket.may_send() {
        // We already closed: nothing can be echoed, drop what arrives.
        while let Ok(n) = socket.recv_slice(scratch) {
            if n == 0 {
                break;
            }
            bytes_in += n as u64;
        }
    }
    stats.bytes_in.add(bytes_in);
    stats.bytes_out.add(bytes_out);
    close_after_peer(socket);
}

/// `discard`: reads and drops everything.
fn discard(socket: &mut tcp::Socket<'_>, stats: &AppStats, scratch: &mut [u8]) {
    let mut bytes_in = 0;
    while let Ok(n) = socket.recv_slice(scratch) {
        if n == 0 {
            break;
        }
        bytes_in += n as u64;
    }
    stats.bytes_in.add(bytes_in);
    close_after_peer(socket);
}

/// `http`: answers every complete request whose response fits the send buffer, in order.
fn serve_http(
    socket: &mut tcp::Socket<'_>,
    slot: &mut Slot,
    body: &[u8],
    response: &mut Vec<u8>,
    stats: &AppStats,
    scratch: &mut [u8],
) {
    loop {
        // Skip a request body first: it is read and dropped.
        while slot.body_left > 0 && !slot.request.is_empty() {
            let skip = (slot.body_left as usize).min(slot.request.len());
            slot.request.drain(..skip);
            slot.body_left -= skip as u64;
        }
        if slot.request.len() < http::MAX_HEAD && socket.can_recv() {
            let limit = (http::MAX_HEAD - slot.request.len()).min(scratch.len());
            if let Ok(n) = socket.recv_slice(&mut scratch[..limit]) {
                stats.bytes_in.add(n as u64);
                slot.request.extend_from_slice(&scratch[..n]);
            }
            if slot.body_left > 0 {
                continue;
            }
        }
        if !socket.may_send() {
            slot.request.clear();
            break;
        }
        match http::parse_head(&slot.request) {
            Ok(None) => break,
            Ok(Some(head)) => {
                if !respond(socket, head, body, response, stats) {
                    break; // no room for the response yet
                }
                slot.request.drain(..head.len);
                slot.body_left = head.body;
                stats.requests.add(1);
                if !head.keep_alive {
                    slot.request.clear();
                    slot.body_left = 0;
                    socket.close();
                    break;
                }
            }
            Err(refusal) => {
                refuse(socket, refusal, response, stats);
                slot.request.clear();
                slot.body_left = 0;
                socket.close();
                break;
            }
        }
    }
    if slot.request.is_empty() && slot.body_left == 0 {
        close_after_peer(socket);
    }
}

/// Queues the response to `head`; false (nothing queued) when the send buffer has no room yet.
fn respond(
    socket: &mut tcp::Socket<'_>,
    head: Head,
    body: &[u8],
    response: &mut Vec<u8>,
    stats: &AppStats,
) -> bool {
    response.clear();
    http::write_response(response, (200, "OK"), body, head.keep_alive, head.head_only);
    send_whole(socket, response, stats)
}

/// Queues a refusal (the connection closes after it); counted as an error.
fn refuse(
    socket: &mut tcp::Socket<'_>,
    refusal: Refusal,
    response: &mut Vec<u8>,
    stats: &AppStats,
) {
    stats.errors.add(1);
    let (code, reason) = refusal.status();
    let text = format!("{code} {reason}\n");
    response.clear();
    http::write_response(response, (code, reason), text.as_bytes(), false, false);
    // A refusal that does not fit is dropped: the close tells the client anyway.
    send_whole(socket, response, stats);
}

fn send_whole(socket: &mut tcp::Socket<'_>, bytes: &[u8], stats: &AppStats) -> bool {
    if socket.send_capacity() - socket.send_queue() < bytes.len() {
        return false;
    }
    match socket.send_slice(bytes) {
        Ok(sent) => {
            stats.bytes_out.add(sent as u64);
            sent == bytes.len()
        }
        Err(_) => false,
    }
}
