//! flowsteer: distributed software forwarding for user-space network stacks.
//!
//! The library behind the `flowsteer` binary: the engine (stack threads, steering, shutdown), the
//! verifying sink, the traffic generator, per-thread statistics, the metrics endpoint and the report.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod doorbell;
pub mod dpdk_ports;
pub mod engine;
mod error;
pub mod health;
pub mod keys;
pub mod metrics;
pub mod neighbors;
mod pin;
pub mod pools;
pub mod ports;
pub mod processor;
pub mod reclaim;
pub mod report;
pub mod shared;
pub mod sink;
pub mod stacks;
pub mod stats;
pub mod status;
pub mod steer;
mod thread;
pub mod traffic;
pub mod transmit;
mod unwinding;
mod watchdog;
