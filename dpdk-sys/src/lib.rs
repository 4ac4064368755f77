//! Bindings to the system DPDK (Debian `libdpdk-dev` 22.11).
//!
//! Empty for now: the bindgen build behind the `dpdk` cargo feature is planned work. Nothing in the
//! workspace links DPDK yet, and nothing pretends to.
