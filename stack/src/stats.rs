//! Per-thread counters of the stack and of each app.
//!
//! Every counter has one writer, the stack thread that owns the block; it publishes with a relaxed
//! load + store (no read-modify-write), once per burst or per event. Readers (metrics, status
//! line, report) take relaxed snapshots from any thread; they are exact once the thread stopped.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use crate::config::AppSpec;

/// A counter with a single writer thread.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Must only be called by the counter's owning thread.
    #[inline]
    pub fn add(&self, n: u64) {
        if n != 0 {
            self.0
                .store(self.0.load(Ordering::Relaxed) + n, Ordering::Relaxed);
        }
    }

    /// Sets the value (gauges). Must only be called by the owning thread.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// A relaxed read, from any thread.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters of one app on one thread.
#[derive(Debug, Default)]
pub struct AppStats {
    /// Connections set up (TCP apps: the SYN was accepted and the exact rule added).
    pub connections_opened: Counter,
    /// Connections that ended (closed, reset or timed out) and whose rule was deleted.
    pub connections_closed: Counter,
    /// Connections open now (gauge).
    pub connections_active: Counter,
    /// SYNs that found no listening socket because every socket of the app was busy
    /// (`stack.max_connections`); the stack answers each with a reset. Each counted once.
    pub listen_exhausted: Counter,
    /// TCP connections closed by `stack.idle_timeout_s` (no progress for that long).
    pub idle_timeouts: Counter,
    /// `http` connections closed by `stack.keepalive_timeout_s` (no next request for that long).
    pub keepalive_timeouts: Counter,
    /// Sockets taken out of TIME-WAIT early for a new connection: no closed socket was free, or
    /// the new connection's SYN came from the same address and port as the old connection's.
    pub time_wait_reused: Counter,
    /// `udp-echo` replies dropped because their destination's link address stayed unknown for
    /// `stack.neighbor_wait_ms`.
    pub unresolved_drops: Counter,
    /// Payload bytes received from clients.
    pub bytes_in: Counter,
    /// Payload bytes sent to clients.
    pub bytes_out: Counter,
    /// Requests answered (http) or datagrams echoed (udp-echo).
    pub requests: Counter,
    /// Malformed requests, datagrams that could not be echoed, connections aborted by the peer.
    pub errors: Counter,
    /// `tcp-proxy`: connections opened to the upstream (one per accepted connection).
    pub upstream_connects: Counter,
    /// `tcp-proxy`: accepted connections reset because their upstream connection could not be
    /// made (refused, unreachable, no socket or local port left) or was reset.
    pub upstream_failed: Counter,
}

/// Counters of one thread's stack.
#[derive(Debug)]
pub struct StackStats {
    /// Frames given to the stack.
    pub frames_in: Counter,
    /// Frames the stack emitted into the transmit burst.
    pub frames_out: Counter,
    /// Frames the stack emitted while the pool had no buffer: dropped (TCP retransmits).
    pub tx_no_buffer: Counter,
    /// TCP/UDP packets for a flow this thread has no socket for while another thread owns it:
    /// the packet reached the wrong thread (the stack answers as a real stack would, with a reset
    /// for TCP).
    pub misdirected: Counter,
    /// TCP/UDP packets for a flow no thread has a socket for.
    pub no_socket: Counter,
    /// Exact rules this thread added to the flow table.
    pub rules_added: Counter,
    /// Exact rules this thread deleted.
    pub rules_deleted: Counter,
    /// Exact rules the table refused (full); the connection still works where RSS delivers it.
    pub rule_add_failed: Counter,
    /// Segments without data (FINs, ACKs) that arrived before what precedes them (a flow spread
    /// over queues) and were held back until it arrived.
    pub early_segments_held: Counter,
    /// Of those, segments given to the protocol stack after the hold limit without it.
    pub early_segments_expired: Counter,
    /// Per app, in the order of the thread's app list.
    pub apps: Vec<AppStats>,
}

impl StackStats {
    /// Zeroed counters for a thread running `apps`.
    pub fn new(apps: &[AppSpec]) -> Self {
        StackStats {
            frames_in: Counter::default(),
            frames_out: Counter::default(),
            tx_no_buffer: Counter::default(),
            misdirected: Counter::default(),
            no_socket: Counter::default(),
            rules_added: Counter::default(),
            rules_deleted: Counter::default(),
            rule_add_failed: Counter::default(),
            early_segments_held: Counter::default(),
            early_segments_expired: Counter::default(),
            apps: apps.iter().map(|_| AppStats::default()).collect(),
        }
    }
}

/// [`StackStats`] padded to its own cache lines, as shared with readers.
pub type SharedStackStats = std::sync::Arc<CachePadded<StackStats>>;
