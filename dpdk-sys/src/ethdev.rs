//! The few ethdev calls a benchmark or test needs to run a port (a `net_ring` or `net_null`
//! vdev, or a real NIC) with default configuration, and its rx/tx bursts.
//!
//! Concurrency: the control calls ([`port_by_name`], [`start`], [`stop`], [`close`]) are not
//! thread-safe against each other or against bursts on the same port (DPDK's rule); a queue is
//! polled by one thread at a time, which the `unsafe` burst functions leave to the caller.

use std::ffi::CString;

use crate::{ffi, Error, PktmbufPool};

fn check(op: &'static str, rc: i32) -> Result<(), Error> {
    if rc < 0 {
        Err(Error::from_code(op, rc))
    } else {
        Ok(())
    }
}

/// The port id of the device named `name` (a vdev's name as given to `--vdev`, e.g.
/// `"net_ring0"`).
pub fn port_by_name(name: &str) -> Result<u16, Error> {
    const OP: &str = "rte_eth_dev_get_port_by_name";
    crate::eal::ensure(OP)?;
    let cname = CString::new(name)
        .map_err(|_| Error::invalid(OP, format!("name {name:?} contains a NUL byte")))?;
    let mut port = 0u16;
    // SAFETY: cname is a valid C string and port a valid out-parameter for the call.
    let rc = unsafe { ffi::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut port) };
    check(OP, rc).map(|()| port)
}

/// Configures `port` with `rx_queues` receive and `tx_queues` transmit queues of `descriptors`
/// entries each, default settings (no RSS, no offloads), receive buffers from `pool`, and starts
/// it. `pool` must outlive the port's use (until [`stop`]).
pub fn start(
    port: u16,
    rx_queues: u16,
    tx_queues: u16,
    descriptors: u16,
    pool: &PktmbufPool,
) -> Result<(), Error> {
    crate::eal::ensure("rte_eth_dev_configure")?;
    let conf = ffi::rte_eth_conf::default();
    // SAFETY: conf is a zeroed (default) configuration, valid for every PMD; the call copies it.
    check("rte_eth_dev_configure", unsafe {
        ffi::rte_eth_dev_configure(port, rx_queues, tx_queues, &conf)
    })?;
    // SAFETY: plain query of a configured port.
    let socket = unsafe { ffi::rte_eth_dev_socket_id(port) };
    // SOCKET_ID_ANY (-1) is passed through as DPDK's own examples do: the unsigned parameter
    // takes its two's-complement value, which the PMD treats as "any".
    let socket = socket as u32;
    for q in 0..rx_queues {
        // SAFETY: the port is configured with rx_queues queues; a NULL rxconf selects the PMD
        // default; the pool is alive for the call and, by this function's contract, after.
        check("rte_eth_rx_queue_setup", unsafe {
            ffi::rte_eth_rx_queue_setup(
                port,
                q,
                descriptors,
                socket,
                std::ptr::null(),
                pool.as_ptr(),
            )
        })?;
    }
    for q in 0..tx_queues {
        // SAFETY: as above, NULL txconf selects the PMD default.
        check("rte_eth_tx_queue_setup", unsafe {
            ffi::rte_eth_tx_queue_setup(port, q, descriptors, socket, std::ptr::null())
        })?;
    }
    // SAFETY: every queue is set up.
    check("rte_eth_dev_start", unsafe { ffi::rte_eth_dev_start(port) })
}

/// Stops `port` (no burst may run on it meanwhile or after, until a new [`start`]).
pub fn stop(port: u16) -> Result<(), Error> {
    // SAFETY: DPDK validates the port id; the caller keeps bursts off the port.
    check("rte_eth_dev_stop", unsafe { ffi::rte_eth_dev_stop(port) })
}

/// Releases `port` after [`stop`].
pub fn close(port: u16) -> Result<(), Error> {
    // SAFETY: as for stop.
    check("rte_eth_dev_close", unsafe { ffi::rte_eth_dev_close(port) })
}

/// The port's basic counters (`rte_eth_stats_get`).
pub fn stats(port: u16) -> Result<ffi::rte_eth_stats, Error> {
    let mut stats = ffi::rte_eth_stats::default();
    // SAFETY: stats is a valid out-parameter.
    check("rte_eth_stats_get", unsafe {
        ffi::rte_eth_stats_get(port, &mut stats)
    })?;
    Ok(stats)
}

/// Receives up to `out.len()` (at most 65535) packets into the front of `out`; returns how
/// many. The caller owns the received mbufs. Cost: one shim call, then the PMD's rx function
/// through the port's function-pointer table.
///
/// # Safety
/// `port` must be started with a queue `queue`, and no other thread may poll that queue
/// concurrently.
#[inline]
pub unsafe fn rx_burst(port: u16, queue: u16, out: &mut [*mut ffi::rte_mbuf]) -> usize {
    let n = u16::try_from(out.len()).unwrap_or(u16::MAX);
    // SAFETY: the caller's contract; out has room for n pointers.
    usize::from(unsafe { ffi::dpdk_sys_eth_rx_burst(port, queue, out.as_mut_ptr(), n) })
}

/// Transmits the leading packets of `pkts` (at most 65535) and returns how many the PMD took;
/// those now belong to the port, the rest still belong to the caller.
///
/// # Safety
/// As for [`rx_burst`], for the transmit queue; every entry up to `pkts.len()` must be a valid
/// mbuf the caller owns.
#[inline]
pub unsafe fn tx_burst(port: u16, queue: u16, pkts: &mut [*mut ffi::rte_mbuf]) -> usize {
    let n = u16::try_from(pkts.len()).unwrap_or(u16::MAX);
    // SAFETY: the caller's contract; pkts holds n owned mbufs.
    usize::from(unsafe { ffi::dpdk_sys_eth_tx_burst(port, queue, pkts.as_mut_ptr(), n) })
}
