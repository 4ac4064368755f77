//! Packet buffers, header parsing, software RSS and NIC backends.
//!
//! `wire` parses and builds headers and holds no state (as smoltcp's `wire/`); `rss` is the
//! Toeplitz hash and redirection table a NIC applies; `pool` owns the packet buffers (an L1 pool
//! per queue and a shared one, on the heap, or with the `dpdk` feature a DPDK mempool's mbufs
//! each); `port` is the interface every backend implements and the engine loop is generic over; the backends are `uveth` (the user-space
//! NIC), `afpacket` (a Linux interface) and `capture` (a .pcap or .pcapng file replayed); `vbridge` is the user-space bridge of the tests.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod afpacket;
pub mod capture;
#[cfg(feature = "dpdk")]
pub mod dpdk;
mod hint;
pub mod pool;
pub mod port;
pub mod rss;
pub mod uveth;
pub mod vbridge;
pub mod wait;
pub mod wire;
