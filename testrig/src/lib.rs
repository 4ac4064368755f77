//! What flowsteer's tests share, in one place, for the tests of every crate (a dev-dependency
//! of the product crates: none builds it outside its tests; the benchmarks use it too).
//!
//! - [`need`]: tests that need root or a program (`ip`, `nc`, `curl`, ...) tell "not available
//!   here" from "failed". Outside CI they print one line, `skipped: needs nc (apt-get install
//!   netcat-openbsd)`, and pass; under `CI=true` the same message fails them.
//! - [`net`]: veth pairs and network namespaces made with iproute2's `ip`, named uniquely per
//!   process, removed when dropped (also when the test panics).
//! - `vbridge` (feature `vbridge`): a smoltcp device on a vbridge peer port.
//! - [`eal`]: the DPDK EAL started once per test binary, for root only.
//! - `frames` (feature `frames`): ARP requests, neighbour solicitations and ICMP echo requests
//!   built with smoltcp, and frames a server sent put into words after smoltcp parsed them.
//! - `raw_peer` (features `vbridge` and `frames`): a peer on a vbridge port that writes every TCP
//!   header itself, for tests that attack a server.
//! - [`pcap`]: classic pcap files, written for a port to replay and read for what it sent.
//! - `memory` (feature `memory`): a wire in memory between smoltcp clients and a server driven
//!   by hand (the stack's tests, the benchmarks' `stack-path`).

pub mod eal;
#[cfg(feature = "frames")]
pub mod frames;
#[cfg(feature = "memory")]
pub mod memory;
pub mod need;
pub mod net;
pub mod pcap;
#[cfg(all(feature = "vbridge", feature = "frames"))]
pub mod raw_peer;
#[cfg(feature = "vbridge")]
pub mod vbridge;
#[cfg(feature = "wire")]
pub mod wire_check;

pub use need::{
    is_root, skip, skip_without, skip_without_root, skip_without_root_and, under_ci, Tool, AB,
    CURL, ETHTOOL, IP, IPERF3, NC, PYTHON3, SS,
};
