//! The traffic generator: flows as a NIC would deliver them, with the rules a stack would hold.
//!
//! [`TrafficPlan::install`] builds every flow (remote clients in 198.18.0.0/15 and 2001:db8:1::/48
//! talking to the port's own addresses), partitions the flows over the receive queues through the
//! port's soft RSS exactly as a NIC with that key and RETA would, and installs into the flow table
//! what the stacks would have installed by then: their listen rules and one exact rule per
//! accepted connection. Ownership always comes from these rules, never from a formula steering
//! could see. Every generated frame carries a [`Stamp`] naming the owner, so the receiving side
//! counts a packet processed by another thread as misdirected.
//!
//! Each receive queue gets a [`QueueSource`] (a [`FrameSource`](flowsteer_nic::port::FrameSource))
//! that its stack thread calls inline before every receive burst: no allocation, no lock (except
//! the flow-table insert of a connection set up by the churn profile), a fixed cost per packet
//! (see `source`). Its counters are one cache-padded [`SourceStats`] block per queue, written by
//! that thread alone.
//!
//! Profiles (`traffic.profile`):
//! - `rss-friendly`: every thread listens on `port_base` at the port's address (one listen rule
//!   per protocol and family, all threads as owners); each flow is owned by the thread of the
//!   queue RSS delivers it to and pinned by an exact rule (TCP: accepted connection; UDP:
//!   connected socket). Nothing is misdirected.
//! - `listeners`: thread t listens on `port_base + t` on any local address; each flow picks its
//!   owner uniformly and talks to the owner's port; TCP flows get an exact rule, UDP flows rely
//!   on the listen rule. With RSS alone about (threads - 1) / threads of the packets reach the
//!   wrong thread.
//! - `fewer-queues`: as `listeners`, with fewer queues than threads: only queues have sources.
//! - `churn`: as `listeners`, and connections are closed (last packet TCP FIN|ACK, stamp
//!   `last`, after which the owner deletes the exact rule) and replaced by new ones (fresh tuple
//!   mapped to the same queue, exact rule inserted before the first packet, which carries SYN).
//!   `traffic.flow_packets > 0`: a connection lives that many packets (and `churn_rate` is not
//!   used; a one-packet connection sends only its FIN|ACK); otherwise each queue replaces
//!   `churn_rate / queues` connections per second, oldest first, checked once per fill. A new
//!   connection whose rule the table refuses is not set up (`rule_add_failed`) and the old one
//!   keeps running. The generator never deletes a rule of a running flow: the owner does.
//!
//! Files: `plan` (install, partition, rules), `source` (the per-queue fill), `frame` (templates
//! and frame building), `flow` (flow state and shaping), `addresses` (the client tuple space),
//! `pick` (uniform / Zipf flow choice), `rate` (token bucket), `rng` (seeded PRNG), `stamp`,
//! `stats`, `error`, and the ports whose queues the sources feed: `port`, a uveth, and (feature
//! `dpdk`) `dpdk_port`, a ring-backed DPDK ethdev.

mod addresses;
#[cfg(feature = "dpdk")]
mod dpdk_port;
mod error;
mod flow;
mod frame;
mod pick;
mod plan;
mod port;
mod rate;
mod rng;
mod source;
mod stamp;
mod stats;

#[cfg(feature = "dpdk")]
pub use dpdk_port::{GeneratedDpdkPort, GeneratedDpdkQueue};
pub use error::TrafficError;
pub use plan::TrafficPlan;
pub use port::GeneratedPort;
pub use source::QueueSource;
pub use stamp::Stamp;
pub use stats::SourceStats;

#[cfg(test)]
mod tests;
