//! The per-thread user-space protocol stack (smoltcp) and its apps.
//!
//! Every stack thread owns one [`Stack`]: one smoltcp `Interface` with the port's MAC and
//! addresses (all threads share them, as the threads of one NIC do), the sockets of the apps the
//! thread runs, and the thread's flow rules. The engine drives it once per loop iteration:
//!
//! ```text
//! frames = local packets of the rx burst + what the thread drained from its software queue
//! stack.process(frames, tx, tx_limit, cache)   // smoltcp ingress, apps, egress into tx
//! port.tx_burst(tx)
//! ```
//!
//! # Rules follow sockets
//!
//! An app that listens adds a listen rule (any address, its port) with this thread as an owner;
//! a connection set up adds its exact 5-tuple rule before its SYN-ACK is sent; its end deletes
//! the rule; the thread's exit deletes the rest (the engine calls `remove_owner`). The stack
//! knows nothing of steering: it only tells the table which flows it holds.
//!
//! # Outbound connections
//!
//! An app that connects out (`tcp-proxy`, towards its upstream) has no listen rule to bring the
//! answers back. [`Outbound`] says how they find the thread: under RSS balancing the local port
//! is one the port's RSS delivers to the connecting thread's own queue
//! ([`ports::rss_local_port`], Seastar's and gazelle's trick) and no rule is added; under
//! software balancing the connection's exact rule goes in before its SYN leaves.
//!
//! # Costs
//!
//! | step | cost |
//! |---|---|
//! | `process` with no frames and no timer due | one clock read |
//! | per received frame | one header classification (ownership counters), one TCP segment parse and one hash map update (segments held for what precedes them, `early_segments`), smoltcp's processing; no copy |
//! | per round with connections open | a look at each socket's queues for the idle timeouts |
//! | per emitted frame | one buffer from the thread's pool cache, written once by smoltcp |
//! | per round with frames | one pass over the apps' sockets |
//! | connection set-up / end | one flow table insert / remove |
//! | a SYN that finds every socket busy (a flood) | the oldest half-open connection's socket: one queue pop, one flow table remove, the socket taken out of the socket set and put back |
//! | outbound connect | a local port (about `queues` Toeplitz hashes when RSS chooses it); one insert under software balancing |
//!
//! # Threads
//!
//! A `Stack` is `Send` and used by one thread; counters ([`StackStats`]) are written by that
//! thread only and read by anyone.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod apps;
mod config;
mod device;
mod early_segments;
mod keys;
mod outbound;
pub mod ports;
mod rules;
mod stack;
pub mod stats;

pub use config::{AppKind, AppSpec, StackConfig};
pub use early_segments::HOLD_LIMIT;
pub use keys::{endpoint_key, flow_key};
pub use outbound::{Outbound, PortChoice};
pub use stack::{Stack, StackError};
pub use stats::{AppStats, Counter, SharedStackStats, StackStats};
