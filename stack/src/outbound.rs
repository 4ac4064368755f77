//! Outbound connections: how a thread's connection to a remote server gets its return packets.
//!
//! An accepted connection is found again by its rule (software balancing) or lands where RSS put
//! its SYN (RSS balancing). A connection this thread opens has no such luck: the server's answer
//! arrives on whatever queue the NIC hashes it to. Two ways bring it home, and the engine picks
//! one per balancing mode:
//!
//! | mode | local port | rule | cost per connect |
//! |---|---|---|---|
//! | [`PortChoice::Rss`], rule off (RSS balancing) | one whose return packets RSS sends to this thread's queue (Seastar's and gazelle's trick) | none | about `queues` Toeplitz hashes |
//! | [`PortChoice::Rss`], rule on (software balancing, RSS known) | as above, so no handoff either | exact 5-tuple, before the SYN leaves | as above + one insert |
//! | [`PortChoice::Share`], rule on (software balancing, e.g. AF_PACKET) | this thread's share of the ephemeral range | exact 5-tuple, before the SYN leaves | one insert |
//!
//! `Share` without the rule cannot work (nothing would bring the answer back) and is refused
//! when a stack with an outbound app is built. Either choice gives different threads different
//! local ports towards the same server, so two threads never open the same 5-tuple: RSS maps a
//! tuple to exactly one queue, and the shares are disjoint.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use flowsteer_nic::rss::SoftRss;
use flowtable::Proto;

use crate::ports::{rss_local_port, EPHEMERAL_PORTS};

/// How the local port of an outbound connection is chosen.
#[derive(Clone, Debug)]
pub enum PortChoice {
    /// Ports whose return packets `rss` (the port's own software or NIC RSS) delivers to `queue`,
    /// this thread's receive queue.
    Rss {
        /// The port's RSS: its Toeplitz key and redirection table.
        rss: SoftRss,
        /// This thread's receive queue.
        queue: u16,
    },
    /// Ports `p` of the ephemeral range with `p % threads == thread`.
    Share {
        /// This thread's index.
        thread: u16,
        /// Threads sharing the range.
        threads: u16,
    },
}

/// How this thread's outbound connections are steered back to it.
#[derive(Clone, Debug)]
pub struct Outbound {
    /// The connection's exact rule goes into the flow table before its SYN leaves (software
    /// balancing); without it only the local port choice brings the answers back.
    pub rule: bool,
    /// How the local port is chosen.
    pub ports: PortChoice,
}

impl Outbound {
    /// True when return packets can find this thread: a rule, or a port chosen by RSS.
    pub fn steers_back(&self) -> bool {
        self.rule || matches!(self.ports, PortChoice::Rss { .. })
    }
}

/// What a thread's apps need to open outbound connections: its addresses, its local ports and
/// whether the connection needs a rule.
pub(crate) struct Connector {
    pub(crate) ports: LocalPorts,
    pub(crate) rule: bool,
    ipv4: Ipv4Addr,
    ipv6: Ipv6Addr,
}

impl Connector {
    pub(crate) fn new(outbound: Outbound, ipv4: Ipv4Addr, ipv6: Ipv6Addr, seed: u64) -> Self {
        Connector {
            ports: LocalPorts::new(outbound.ports, seed),
            rule: outbound.rule,
            ipv4,
            ipv6,
        }
    }

    /// This host's address of the same version as `remote`.
    pub(crate) fn local_ip(&self, remote: IpAddr) -> IpAddr {
        match remote {
            IpAddr::V4(_) => IpAddr::V4(self.ipv4),
            IpAddr::V6(_) => IpAddr::V6(self.ipv6),
        }
    }
}

/// The local ports of one thread's outbound connections: a cursor over the ephemeral range.
pub(crate) struct LocalPorts {
    ports: PortChoice,
    next: u16,
}

impl LocalPorts {
    /// Starts at a seed-derived point of the range, as stacks do to make ports less guessable.
    pub(crate) fn new(ports: PortChoice, seed: u64) -> Self {
        let span = u64::from(EPHEMERAL_PORTS.end() - EPHEMERAL_PORTS.start()) + 1;
        LocalPorts {
            ports,
            next: EPHEMERAL_PORTS.start() + (seed % span) as u16,
        }
    }

    /// A local port for a connection from `local` to `remote` that `in_use` does not refuse;
    /// `None` when every port of this thread's choice is in use (or RSS never picks its queue).
    pub(crate) fn pick(
        &mut self,
        proto: Proto,
        local: IpAddr,
        remote: (IpAddr, u16),
        mut in_use: impl FnMut(u16) -> bool,
    ) -> Option<u16> {
        let port = match &self.ports {
            PortChoice::Rss { rss, queue } => {
                rss_local_port(rss, *queue, proto, local, remote, self.next, in_use)?
            }
            PortChoice::Share { thread, threads } => {
                let (first, last) = (*EPHEMERAL_PORTS.start(), *EPHEMERAL_PORTS.end());
                let span = u32::from(last - first) + 1;
                let offset = u32::from(self.next - first);
                (0..span)
                    .map(|i| first + ((offset + i) % span) as u16)
                    .find(|&port| port % (*threads).max(1) == *thread && !in_use(port))?
            }
        };
        self.next = if port == *EPHEMERAL_PORTS.end() {
            *EPHEMERAL_PORTS.start()
        } else {
            port + 1
        };
        Some(port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowsteer_nic::rss::MICROSOFT_KEY;
    use flowsteer_nic::wire::{FiveTuple, IP_PROTO_TCP};
    use std::collections::HashSet;
    use std::net::Ipv4Addr;

    const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    fn pick_many(ports: &mut LocalPorts, n: usize) -> Vec<u16> {
        let mut taken = HashSet::new();
        (0..n)
            .map(|_| {
                let port = ports
                    .pick(
                        Proto::Tcp,
                        IpAddr::V4(LOCAL),
                        (IpAddr::V4(REMOTE), 9000),
                        |p| taken.contains(&p),
                    )
                    .unwrap();
                taken.insert(port);
                port
            })
            .collect()
    }

    #[test]
    fn threads_sharing_the_range_never_pick_the_same_port() {
        let mut seen = HashSet::new();
        for thread in 0..3 {
            let mut ports = LocalPorts::new(PortChoice::Share { thread, threads: 3 }, 12345);
            for port in pick_many(&mut ports, 2000) {
                assert_eq!(port % 3, thread);
                assert!(EPHEMERAL_PORTS.contains(&port));
                assert!(seen.insert(port), "port {port} chosen twice");
            }
        }
    }

    #[test]
    fn rss_chosen_ports_bring_the_answers_to_the_thread_and_differ_between_threads() {
        let rss = SoftRss::new(&MICROSOFT_KEY, 128, 2).unwrap();
        let mut seen = HashSet::new();
        for queue in 0..2 {
            let choice = PortChoice::Rss {
                rss: rss.clone(),
                queue,
            };
            let mut ports = LocalPorts::new(choice, 99);
            for port in pick_many(&mut ports, 500) {
                let answer = FiveTuple::v4(IP_PROTO_TCP, REMOTE, 9000, LOCAL, port);
                assert_eq!(rss.queue_of_tuple(&answer).1, queue);
                assert!(seen.insert(port), "port {port} chosen twice");
            }
        }
    }

    #[test]
    fn the_cursor_wraps_and_a_full_share_finds_nothing() {
        let mut ports = LocalPorts::new(
            PortChoice::Share {
                thread: 0,
                threads: 1,
            },
            u64::from(EPHEMERAL_PORTS.end() - EPHEMERAL_PORTS.start()),
        );
        let remote = (IpAddr::V4(REMOTE), 9000);
        let local = IpAddr::V4(LOCAL);
        assert_eq!(
            ports.pick(Proto::Tcp, local, remote, |_| false),
            Some(*EPHEMERAL_PORTS.end())
        );
        assert_eq!(
            ports.pick(Proto::Tcp, local, remote, |_| false),
            Some(*EPHEMERAL_PORTS.start())
        );
        assert_eq!(ports.pick(Proto::Tcp, local, remote, |_| true), None);
    }

    #[test]
    fn only_a_share_without_a_rule_cannot_steer_back() {
        let share = PortChoice::Share {
            thread: 0,
            threads: 2,
        };
        let rss = PortChoice::Rss {
            rss: SoftRss::new(&MICROSOFT_KEY, 128, 2).unwrap(),
            queue: 0,
        };
        assert!(!Outbound {
            rule: false,
            ports: share.clone()
        }
        .steers_back());
        assert!(Outbound {
            rule: true,
            ports: share
        }
        .steers_back());
        assert!(Outbound {
            rule: false,
            ports: rss
        }
        .steers_back());
    }
}
