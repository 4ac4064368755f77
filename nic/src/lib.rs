//! Packet buffers, header parsing, software RSS and NIC backends.
//!
//! `wire` parses and builds headers and holds no state (as smoltcp's `wire/`); `rss` is the
//! Toeplitz hash and redirection table a NIC applies; `pool` owns the packet buffers; `port` is the
//! queue-pair interface the engine loop is generic over; `uveth` is the user-space NIC.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod afpacket;
mod hint;
pub mod pool;
pub mod port;
pub mod rss;
pub mod uveth;
pub mod vbridge;
pub mod wait;
pub mod wire;
