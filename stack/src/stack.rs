//! One thread's protocol stack: a smoltcp interface, its sockets and apps, and the flow rules
//! that follow them.

use std::fmt;
use std::sync::Arc;

use flowsteer_nic::pool::{PktBuf, PoolCache};
use flowsteer_nic::wire::{self, Classified, IpPair};
use flowtable::{FlowKey, FlowTable, Lookup, Proto, TableFull, ThreadId};
use smoltcp::iface::{Config as IfaceConfig, Interface, PollResult, SocketSet};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

use crate::apps::{Round, Service, TcpService, Timeouts, UdpService};
use crate::config::{AppKind, StackConfig};
use crate::device::{BurstDevice, CapabilitiesOnly};
use crate::early_segments::EarlySegments;
use crate::keys::flow_key;
use crate::outbound::Connector;
use crate::rules::Rules;
use crate::stats::SharedStackStats;

/// TCP flag bits of a segment that opens a connection: SYN without ACK.
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;
/// Bytes of the apps' scratch buffer: the largest UDP datagram fits.
const SCRATCH_BYTES: usize = 65536;
/// How often the apps look for connections past their timeouts when nothing else wakes the
/// stack: the timeouts' resolution.
const TIMEOUT_CHECK: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(1);

/// Why a stack could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackError {
    /// The MAC address is not a unicast address.
    Mac([u8; 6]),
    /// An address or prefix length smoltcp refuses.
    Address(String),
    /// An app's port is 0.
    Port {
        /// The app.
        app: AppKind,
    },
    /// A `tcp-proxy` without an upstream, or with one of an IP version the stack has no
    /// address of.
    Upstream {
        /// The app's port.
        port: u16,
    },
    /// An app connects out, but nothing would bring the answers back to this thread: no rule
    /// (RSS balancing) and no RSS to choose the local port with.
    Outbound,
    /// The flow table has no room for an app's listen rule.
    ListenRule {
        /// The app.
        app: AppKind,
        /// Its port.
        port: u16,
        /// The table's answer.
        full: TableFull,
    },
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StackError::Mac(mac) => write!(
                f,
                "the port's MAC address {} is not unicast",
                EthernetAddress(*mac)
            ),
            StackError::Address(what) => write!(f, "invalid address: {what}"),
            StackError::Port { app } => write!(f, "app {app} needs a port other than 0"),
            StackError::Upstream { port } => write!(
                f,
                "the tcp-proxy app on port {port} needs an upstream address"
            ),
            StackError::Outbound => f.write_str(
                "an app connects out under RSS balancing, but the port's RSS is unknown, so no \
                 local port can be chosen that brings the answers back to the connecting thread",
            ),
            StackError::ListenRule { app, port, full } => write!(
                f,
                "no room for the listen rule of app {app} on port {port}: {full}"
            ),
        }
    }
}

impl std::error::Error for StackError {}

/// The stack of one thread. See the crate documentation for how it is driven.
pub struct Stack {
    config: StackConfig,
    iface: Interface,
    sockets: SocketSet<'static>,
    services: Vec<Service>,
    rules: Rules,
    connector: Connector,
    stats: SharedStackStats,
    epoch: std::time::Instant,
    /// When smoltcp next needs a poll without new frames (a timer, queued data); `None`: never.
    next_poll: Option<Instant>,
    scratch: Vec<u8>,
    tx_scratch: Vec<u8>,
    /// Per service, the SYNs of the current round (listening sockets to arm before it).
    syns: Vec<usize>,
    /// The SYNs of the current round, by service: a connection in TIME-WAIT on the same
    /// addresses gives its socket to the new one.
    syn_keys: Vec<(usize, flowtable::FlowKey)>,
    /// The apps' timeouts need a round at least this often; `None`: they need none.
    timeout_check: Option<smoltcp::time::Duration>,
    /// Segments without data that arrived before what precedes them.
    early: EarlySegments,
    /// Set by `shutdown`: nothing is held back any more.
    stopping: bool,
}

impl Stack {
    /// The stack of thread `me`: its interface, its apps' sockets and their listen rules.
    ///
    /// `stats` must have been made for `config.apps` ([`StackStats::new`](crate::StackStats::new)).
    pub fn new(
        config: StackConfig,
        me: ThreadId,
        table: Arc<dyn FlowTable>,
        stats: SharedStackStats,
    ) -> Result<Stack, StackError> {
        let mac = EthernetAddress(config.mac);
        if !mac.is_unicast() {
            return Err(StackError::Mac(config.mac));
        }
        let (v4, v4_prefix) = config.ipv4;
        let (v6, v6_prefix) = config.ipv6;
        if v4_prefix > 32 || v6_prefix > 128 {
            return Err(StackError::Address(format!(
                "prefix lengths /{v4_prefix} (IPv4) and /{v6_prefix} (IPv6)"
            )));
        }
        let mut iface_config = IfaceConfig::new(HardwareAddress::Ethernet(mac));
        let seed = config.seed ^ (u64::from(me) << 48) ^ 0x9e37_79b9_7f4a_7c15;
        iface_config.random_seed = seed;
        let mut caps = CapabilitiesOnly::new(config.max_frame);
        let epoch = std::time::Instant::now();
        let mut iface = Interface::new(iface_config, &mut caps, Instant::from_micros(0));
        iface.update_ip_addrs(|addrs| {
            // Two addresses always fit (smoltcp holds at least two per interface).
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(v4), v4_prefix));
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv6(v6), v6_prefix));
        });

        let connects_out = config.apps.iter().any(|app| app.kind == AppKind::TcpProxy);
        if connects_out && !config.outbound.steers_back() {
            return Err(StackError::Outbound);
        }
        let connector = Connector::new(config.outbound.clone(), v4, v6, seed);

        let mut sockets = SocketSet::new(Vec::new());
        let mut rules = Rules::new(table, me);
        let timeouts = Timeouts {
            idle: config.idle_timeout.map(duration),
            keepalive: config.keepalive_timeout.map(duration),
            syn: config.syn_timeout.map(duration),
        };
        let timeout_check =
            (timeouts.idle.is_some() || timeouts.keepalive.is_some()).then_some(TIMEOUT_CHECK);
        let mut services = Vec::with_capacity(config.apps.len());
        for (i, app) in config.apps.iter().enumerate() {
            if app.port == 0 {
                return Err(StackError::Port { app: app.kind });
            }
            if app.kind == AppKind::TcpProxy && app.upstream.is_none() {
                return Err(StackError::Upstream { port: app.port });
            }
            rules
                .listen(app.kind.proto(), app.port)
                .map_err(|full| StackError::ListenRule {
                    app: app.kind,
                    port: app.port,
                    full,
                })?;
            let service = if app.kind.is_tcp() {
                let mut tcp = Box::new(TcpService::new(*app, me, &config, timeouts));
                tcp.refill_listeners(
                    &mut sockets,
                    &mut rules,
                    0,
                    Instant::from_micros(0),
                    &stats,
                    &stats.apps[i],
                );
                Service::Tcp(tcp)
            } else {
                let neighbor_wait = duration(config.neighbor_wait);
                let udp =
                    UdpService::bind(&mut sockets, app.port, config.udp_buffer, neighbor_wait)
                        .ok_or(StackError::Port { app: app.kind })?;
                Service::Udp(udp)
            };
            services.push(service);
        }
        Ok(Stack {
            iface,
            sockets,
            services,
            rules,
            connector,
            stats,
            epoch,
            next_poll: None,
            scratch: vec![0; SCRATCH_BYTES],
            tx_scratch: Vec::new(),
            syns: vec![0; config.apps.len()],
            syn_keys: Vec::new(),
            timeout_check,
            early: EarlySegments::default(),
            stopping: false,
            config,
        })
    }

    /// The thread's counters.
    pub fn stats(&self) -> &SharedStackStats {
        &self.stats
    }

    /// Connections open on this thread.
    pub fn connections(&self) -> usize {
        self.rules.connections()
    }

    /// How long the stack can go without a round when no frame arrives: until its next timer
    /// (a retransmission, a delayed ACK, a timeout); `None` when it has none.
    pub fn poll_delay(&self) -> Option<std::time::Duration> {
        let at = self.next_poll?;
        let now = self.now();
        // smoltcp's `Instant - Instant` is an absolute difference: a timer already due waits 0.
        let wait = if at > now {
            (at - now).total_micros()
        } else {
            0
        };
        Some(std::time::Duration::from_micros(wait))
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    /// One round: the stack takes `frames` (drained; their buffers go back to `cache`), runs its
    /// timers and apps, and appends what it sends to `tx`, at most up to `tx_limit` frames in
    /// `tx` (the rest stays queued in the sockets for the next round).
    ///
    /// Cheap when there is nothing to do: with no frames and no timer due it returns at once.
    ///
    /// Returns how many of `frames` carried steering's classification ([`PktBuf::parsed`]),
    /// which the stack used instead of parsing them again.
    pub fn process(
        &mut self,
        frames: &mut Vec<PktBuf>,
        tx: &mut Vec<PktBuf>,
        tx_limit: usize,
        cache: &mut PoolCache,
    ) -> usize {
        let now = self.now();
        if frames.is_empty() && self.next_poll.is_none_or(|at| now < at) {
            return 0;
        }
        let reused = self.count_ownership(frames);
        let stats = &*self.stats;
        if !self.stopping {
            let rules = &self.rules;
            self.early
                .screen(frames, now, |key| rules.has_connection(key), stats);
        }
        for &(i, key) in &self.syn_keys {
            if let Service::Tcp(tcp) = &mut self.services[i] {
                tcp.reuse_time_wait_of(&key, &mut self.sockets, &stats.apps[i]);
            }
        }
        for ((service, syns), app_stats) in
            self.services.iter_mut().zip(&self.syns).zip(&stats.apps)
        {
            if let (Service::Tcp(tcp), true) = (service, *syns > 0) {
                tcp.refill_listeners(
                    &mut self.sockets,
                    &mut self.rules,
                    *syns,
                    now,
                    stats,
                    app_stats,
                );
            }
        }
        let mut device = BurstDevice::new(
            frames,
            tx,
            tx_limit,
            cache,
            &mut self.tx_scratch,
            self.config.max_frame,
        );
        self.iface.poll(now, &mut device, &mut self.sockets);
        // Apps run after ingress: rules of connections set up in this round go in before their
        // SYN-ACK leaves (it is still in `tx`), then what the apps wrote goes out.
        for (service, app_stats) in self.services.iter_mut().zip(&stats.apps) {
            match service {
                Service::Tcp(tcp) => tcp.service(&mut Round {
                    now,
                    sockets: &mut self.sockets,
                    cx: self.iface.context(),
                    connector: &mut self.connector,
                    rules: &mut self.rules,
                    stack_stats: stats,
                    stats: app_stats,
                    scratch: &mut self.scratch,
                }),
                Service::Udp(udp) => {
                    udp.service(&mut self.sockets, now, app_stats, &mut self.scratch)
                }
            }
        }
        while self.iface.poll_egress(now, &mut device, &mut self.sockets)
            == PollResult::SocketStateChanged
        {}
        let counts = device.counts();
        stats.frames_in.add(counts.frames_in);
        stats.frames_out.add(counts.frames_out);
        stats.tx_no_buffer.add(counts.tx_no_buffer);
        cache.free_bulk(frames);
        let smoltcp_poll = self.iface.poll_at(now, &self.sockets);
        let timeout_poll = self
            .timeout_check
            .filter(|_| self.rules.connections() > 0)
            .map(|every| now + every);
        let syn_deadline = self
            .services
            .iter()
            .filter_map(|service| match service {
                Service::Tcp(tcp) => tcp.next_syn_deadline(),
                Service::Udp(_) => None,
            })
            .min();
        self.next_poll = [
            smoltcp_poll,
            timeout_poll,
            self.early.next_check(),
            syn_deadline,
        ]
        .into_iter()
        .flatten()
        .min();
        reused
    }

    /// Ends every connection (resets sent into `tx`), deletes their rules. The listen rules and
    /// anything left go with the engine's `remove_owner` for this thread.
    pub fn shutdown(&mut self, tx: &mut Vec<PktBuf>, tx_limit: usize, cache: &mut PoolCache) {
        self.stopping = true;
        self.early.release_all(cache);
        let stats = &*self.stats;
        for (service, app_stats) in self.services.iter_mut().zip(&stats.apps) {
            if let Service::Tcp(tcp) = service {
                tcp.abort_all(&mut self.sockets, &mut self.rules, stats, app_stats);
            }
        }
        let now = self.now();
        let mut device = BurstDevice::new(
            &[],
            tx,
            tx_limit,
            cache,
            &mut self.tx_scratch,
            self.config.max_frame,
        );
        while self.iface.poll_egress(now, &mut device, &mut self.sockets)
            == PollResult::SocketStateChanged
        {}
        let counts = device.counts();
        stats.frames_out.add(counts.frames_out);
        stats.tx_no_buffer.add(counts.tx_no_buffer);
    }

    /// The exact rules this stack added and has not deleted: one per connection it holds, each
    /// noted before its rule goes into the table (so a failure between the two leaves a key
    /// without a rule, never a rule without a key).
    pub fn rules_held(&self) -> Vec<FlowKey> {
        self.rules.held().collect()
    }

    /// After its thread failed (a panic anywhere in the thread's loop, this stack's own code
    /// included, or a stall): gives back every packet buffer the stack holds (the early
    /// segments it held back) and counts the connections it had as lost, their apps' active
    /// gauges zeroed. Sends nothing: the stack may be in the middle of a round, and the
    /// engine drops it afterwards (its rules go with the engine's withdrawal of the thread).
    /// Returns the buffers freed and the connections lost.
    pub fn release_after_failure(&mut self, cache: &mut PoolCache) -> (u64, u64) {
        let buffers = self.early.held() as u64;
        self.early.release_all(cache);
        let connections = self.rules.connections() as u64;
        let stats = &*self.stats;
        stats.connections_lost.add(connections);
        for app in &stats.apps {
            app.connections_active.set(0);
        }
        (buffers, connections)
    }

    /// Counts the TCP/UDP packets of this round this thread has no socket for (misdirected when
    /// the flow table names another owner, else no socket anywhere), and the SYNs per app.
    /// Returns how many frames carried their classification.
    fn count_ownership(&mut self, frames: &[PktBuf]) -> usize {
        let (mut misdirected, mut no_socket, mut reused) = (0, 0, 0);
        self.syns.iter_mut().for_each(|n| *n = 0);
        self.syn_keys.clear();
        for frame in frames {
            let classified = match frame.classified() {
                Some(class) => {
                    reused += 1;
                    class
                }
                None => match wire::classify(frame.data()) {
                    Ok(class) => class,
                    Err(_) => continue,
                },
            };
            let Classified::Flow {
                tuple, tcp_flags, ..
            } = classified
            else {
                continue;
            };
            let ours = match tuple.ip {
                IpPair::V4 { dst, .. } => dst == self.config.ipv4.0.octets(),
                IpPair::V6 { dst, .. } => dst == self.config.ipv6.0.octets(),
            };
            let Some(key) = flow_key(&tuple) else {
                continue;
            };
            let has_socket = ours
                && match key.proto() {
                    Proto::Tcp if self.rules.has_connection(&key) => true,
                    Proto::Tcp if tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN => {
                        match self.service_index(Proto::Tcp, key.local_port()) {
                            Some(i) => {
                                self.syns[i] += 1;
                                self.syn_keys.push((i, key));
                                true
                            }
                            None => false,
                        }
                    }
                    Proto::Tcp => false,
                    Proto::Udp => self.service_index(Proto::Udp, key.local_port()).is_some(),
                };
            if has_socket {
                continue;
            }
            // A connection another thread holds, or a new flow to a port another thread serves
            // and this one does not: the packet reached the wrong thread. A new flow to a port
            // this thread serves too is its to take (several threads serve the port).
            let me = self.rules.me();
            // Steering's answer when it looked the flow up (an instant ago), else our own lookup.
            let lookup = Lookup::from_note(frame.lookup_note())
                .unwrap_or_else(|| self.rules.table().lookup(&key));
            match lookup {
                Lookup::Exact(owner) if owner != me => misdirected += 1,
                Lookup::Listen(owner) | Lookup::ListenAny(owner)
                    if owner != me
                        && self.service_index(key.proto(), key.local_port()).is_none() =>
                {
                    misdirected += 1
                }
                _ => no_socket += 1,
            }
        }
        self.stats.misdirected.add(misdirected);
        self.stats.no_socket.add(no_socket);
        reused
    }

    fn service_index(&self, proto: Proto, port: u16) -> Option<usize> {
        self.services.iter().position(|service| match service {
            Service::Tcp(tcp) => proto == Proto::Tcp && tcp.port() == port,
            Service::Udp(udp) => proto == Proto::Udp && udp.port() == port,
        })
    }
}

/// A configured timeout in smoltcp's clock.
fn duration(d: std::time::Duration) -> smoltcp::time::Duration {
    smoltcp::time::Duration::from_micros(d.as_micros().try_into().unwrap_or(u64::MAX))
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack")
            .field("thread", &self.rules.me())
            .field("apps", &self.config.apps)
            .field("connections", &self.rules.connections())
            .finish()
    }
}
