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

/// Declares every counter of [`StackStats`] and [`AppStats`] once, and hands the declaration to
/// the macro named `$then`: here it makes the two structs, the forwarder makes their snapshots,
/// their sums and their Prometheus series from it. A counter added here is thus counted, reported
/// and published without another edit.
///
/// One counter is
/// `/// doc` `field: kind "metric" { label = "value", .. } if scope;` where
/// - `kind` is `counter`, `gauge` (a level, set rather than added to; left out of the report's
///   sums) or `by_hand` (no metric of its own; the publisher folds it into another series and
///   says so);
/// - the labels, if any, follow the `thread` label (and an app's `app` and `port`);
/// - `if scope`, if present, limits the series to apps of one kind: `tcp` (TCP apps), `udp`,
///   `http`, `tcp_proxy`.
///
/// The report key of a counter is its field name.
#[macro_export]
macro_rules! stack_counters {
    ($then:ident) => {
        $then! {
            stack {
                /// Frames given to the stack.
                frames_in: counter "flowsteer_stack_frames_total" { direction = "in" };
                /// Frames the stack emitted into the transmit burst.
                frames_out: counter "flowsteer_stack_frames_total" { direction = "out" };
                /// Frames the stack emitted while the pool had no buffer: dropped (TCP retransmits).
                tx_no_buffer: counter "flowsteer_stack_tx_no_buffer_frames_total";
                /// TCP/UDP packets for a flow this thread has no socket for while another thread owns
                /// it: the packet reached the wrong thread (the stack answers as a real stack would,
                /// with a reset for TCP). Published in `flowsteer_misdirected_packets_total` of the
                /// thread, with the verifying sink's: one series says whether steering failed.
                misdirected: by_hand;
                /// TCP/UDP packets for a flow no thread has a socket for.
                no_socket: counter "flowsteer_stack_no_socket_packets_total";
                /// Exact rules this thread added to the flow table.
                rules_added: counter "flowsteer_stack_rules_added_total";
                /// Exact rules this thread deleted.
                rules_deleted: counter "flowsteer_stack_rules_deleted_total";
                /// Exact rules the table refused (full); the connection still works where RSS
                /// delivers it.
                rule_add_failed: counter "flowsteer_stack_rules_add_failed_total";
                /// Segments without data (FINs, ACKs) that arrived before what precedes them (a flow
                /// spread over queues) and were held back until it arrived.
                early_segments_held: counter "flowsteer_stack_early_segments_held_total";
                /// Of those, segments given to the protocol stack after the hold limit without it.
                early_segments_expired: counter "flowsteer_stack_early_segments_expired_total";
                /// Connections the stack held when its thread failed: gone with it (their peers
                /// get resets from the thread that next receives their packets).
                connections_lost: counter "flowsteer_stack_connections_lost_total";
            }
            app {
                /// Connections set up (TCP apps: the SYN was accepted and the exact rule added).
                connections_opened: counter "flowsteer_app_connections_opened_total" if tcp;
                /// Connections that ended (closed, reset or timed out) and whose rule was deleted.
                connections_closed: counter "flowsteer_app_connections_closed_total" if tcp;
                /// Connections open now.
                connections_active: gauge "flowsteer_app_active_connections" if tcp;
                /// SYNs that found no listening socket because every socket of the app held an
                /// established connection (`stack.max_connections`; half-open ones give theirs up);
                /// the stack answers each with a reset. Each counted once.
                listen_exhausted: counter "flowsteer_app_listen_exhausted_total" if tcp;
                /// Half-open connections (SYN-RECEIVED: a SYN answered, its ACK never came) released
                /// without a word after `stack.syn_timeout_ms`, their rule deleted.
                syn_timeouts: counter "flowsteer_app_syn_timeouts_total" if tcp;
                /// Half-open connections whose socket a new SYN took, the oldest first, because
                /// every socket of the app was busy and none in TIME-WAIT (a full SYN queue dropping
                /// its oldest request); released without a word, their rule deleted.
                half_open_reused: counter "flowsteer_app_half_open_reused_total" if tcp;
                /// TCP connections closed by `stack.idle_timeout_s` (no progress for that long).
                idle_timeouts: counter "flowsteer_app_idle_timeouts_total" if tcp;
                /// `http` connections closed by `stack.keepalive_timeout_s` (no next request for
                /// that long).
                keepalive_timeouts: counter "flowsteer_app_keepalive_timeouts_total" if http;
                /// Sockets taken out of TIME-WAIT early for a new connection: no closed socket was
                /// free, or the new connection's SYN came from the same address and port as the old
                /// connection's.
                time_wait_reused: counter "flowsteer_app_time_wait_reused_total" if tcp;
                /// `udp-echo` replies dropped because their destination's link address stayed
                /// unknown for `stack.neighbor_wait_ms`.
                unresolved_drops: counter "flowsteer_app_unresolved_drops_total" if udp;
                /// Payload bytes received from clients.
                bytes_in: counter "flowsteer_app_bytes_total" { direction = "in" };
                /// Payload bytes sent to clients.
                bytes_out: counter "flowsteer_app_bytes_total" { direction = "out" };
                /// Requests answered (http) or datagrams echoed (udp-echo).
                requests: counter "flowsteer_app_requests_total";
                /// Malformed requests, datagrams that could not be echoed, connections aborted by
                /// the peer.
                errors: counter "flowsteer_app_errors_total";
                /// `tcp-proxy`: connections opened to the upstream (one per accepted connection).
                upstream_connects: counter "flowsteer_app_upstream_connects_total" if tcp_proxy;
                /// `tcp-proxy`: accepted connections reset because their upstream connection could
                /// not be made (refused, unreachable, no socket or local port left) or was reset.
                upstream_failed: counter "flowsteer_app_upstream_failed_total" if tcp_proxy;
            }
        }
    };
}

/// The structs of the declaration: one [`Counter`] field per counter, plain fields of a struct the
/// owner thread writes without indirection.
macro_rules! stats_structs {
    (
        stack { $(
            $(#[doc = $sdoc:literal])*
            $sfield:ident : $skind:ident $($smetric:literal)?
                $({ $($slabel:ident = $svalue:literal),* })? $(if $sscope:ident)?;
        )* }
        app { $(
            $(#[doc = $adoc:literal])*
            $afield:ident : $akind:ident $($ametric:literal)?
                $({ $($alabel:ident = $avalue:literal),* })? $(if $ascope:ident)?;
        )* }
    ) => {
        /// Counters of one app on one thread.
        #[derive(Debug, Default)]
        pub struct AppStats {
            $( $(#[doc = $adoc])* pub $afield: Counter, )*
        }

        /// Counters of one thread's stack.
        #[derive(Debug, Default)]
        pub struct StackStats {
            $( $(#[doc = $sdoc])* pub $sfield: Counter, )*
            /// Per app, in the order of the thread's app list.
            pub apps: Vec<AppStats>,
        }
    };
}

stack_counters!(stats_structs);

impl StackStats {
    /// Zeroed counters for a thread running `apps`.
    pub fn new(apps: &[AppSpec]) -> Self {
        StackStats {
            apps: apps.iter().map(|_| AppStats::default()).collect(),
            ..StackStats::default()
        }
    }
}

/// [`StackStats`] padded to its own cache lines, as shared with readers.
pub type SharedStackStats = std::sync::Arc<CachePadded<StackStats>>;
