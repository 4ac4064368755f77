//! The few ethdev calls a benchmark, a test or the engine needs to run a port (a `net_ring` or
//! `net_null` vdev, or a real NIC) with default configuration or with RSS ([`start_rss`], then
//! [`rss_hash_update`], [`reta_update`] and what the driver holds: [`rss_hash_conf`],
//! [`reta_query`]), and its rx/tx bursts; and the queries that
//! describe a port as testpmd's `show port info` does ([`ports`], [`name`], [`info`],
//! [`link_nowait`], [`mtu`], [`mac_addr`], [`socket_id`], [`rx_offload_names`],
//! [`tx_offload_names`]).
//!
//! Concurrency: the control calls ([`port_by_name`], [`start`], [`stop`], [`close`] and the
//! queries) are not thread-safe against each other or against bursts on the same port (DPDK's
//! rule); a queue is polled by one thread at a time, which the `unsafe` burst functions leave to
//! the caller.

use std::ffi::{CStr, CString};
use std::os::raw::c_char;

use crate::{ffi, Error, PktmbufPool};

/// ENODEV without a libc dependency: 19 on every Linux architecture DPDK supports.
const ENODEV: i32 = 19;

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
    start_with(
        port,
        (rx_queues, descriptors),
        (tx_queues, descriptors),
        pool,
    )
}

/// [`start`] with its own descriptor count per direction: `rx` and `tx` are (queues,
/// descriptors per queue).
pub fn start_with(
    port: u16,
    (rx_queues, rx_descriptors): (u16, u16),
    tx: (u16, u16),
    pool: &PktmbufPool,
) -> Result<(), Error> {
    let pools = vec![pool; usize::from(rx_queues)];
    start_with_pools(port, (&pools, rx_descriptors), tx)
}

/// [`start_with`] with a pool per receive queue: receive queue `q` takes its buffers from
/// `rx_pools[q]` (as many queues as pools). Every pool must outlive the port's use.
pub fn start_with_pools(
    port: u16,
    rx: (&[&PktmbufPool], u16),
    tx: (u16, u16),
) -> Result<(), Error> {
    start_conf(port, rx, tx, &ffi::rte_eth_conf::default())
}

/// [`start_with_pools`] with receive-side scaling: the port is configured in RSS mode
/// (`RTE_ETH_MQ_RX_RSS`) over the flow types of `hash_types` the port offers (the intersection
/// with its `flow_type_rss_offloads`, which is returned), with the mbufs carrying the hash
/// (`RTE_ETH_RX_OFFLOAD_RSS_HASH`) where the port offers that, and the driver's own key and
/// redirection table: set them with [`rss_hash_update`] and [`reta_update`] once it is started,
/// which is when every driver applies them (some rewrite both in `rte_eth_dev_start`; the key
/// is not passed here because the ethdev layer keeps only the pointer, which a driver may read
/// again at a later start). Fails, configuring nothing, when the port hashes none of
/// `hash_types`.
pub fn start_rss(
    port: u16,
    rx: (&[&PktmbufPool], u16),
    tx: (u16, u16),
    hash_types: u64,
) -> Result<u64, Error> {
    const OP: &str = "rte_eth_dev_configure";
    let info = info(port)?;
    let offered = hash_types & info.flow_type_rss_offloads;
    if offered == 0 {
        return Err(Error::invalid(
            OP,
            format!(
                "port {port} ({}) hashes none of the RSS flow types asked ({:#x}; it offers \
                 {:#x})",
                info.driver_name, hash_types, info.flow_type_rss_offloads
            ),
        ));
    }
    let mut conf = ffi::rte_eth_conf::default();
    conf.rxmode.mq_mode = ffi::RTE_ETH_MQ_RX_RSS;
    if let Some(rss_hash) = rx_offload_bit("RSS_HASH") {
        conf.rxmode.offloads |= rss_hash & info.rx_offload_capa;
    }
    conf.rx_adv_conf.rss_conf.rss_hf = offered;
    start_conf(port, rx, tx, &conf)?;
    Ok(offered)
}

/// Configures `port` with `conf`, sets its receive queues up with a pool each and starts it.
fn start_conf(
    port: u16,
    (rx_pools, rx_descriptors): (&[&PktmbufPool], u16),
    (tx_queues, tx_descriptors): (u16, u16),
    conf: &ffi::rte_eth_conf,
) -> Result<(), Error> {
    crate::eal::ensure("rte_eth_dev_configure")?;
    let rx_queues = u16::try_from(rx_pools.len()).map_err(|_| {
        Error::invalid(
            "rte_eth_dev_configure",
            format!("{} receive queues", rx_pools.len()),
        )
    })?;
    // SAFETY: conf is a valid configuration whose pointers (the RSS key) are NULL; the call
    // copies it.
    check("rte_eth_dev_configure", unsafe {
        ffi::rte_eth_dev_configure(port, rx_queues, tx_queues, conf)
    })?;
    // SAFETY: plain query of a configured port.
    let socket = unsafe { ffi::rte_eth_dev_socket_id(port) };
    // SOCKET_ID_ANY (-1) is passed through as DPDK's own examples do: the unsigned parameter
    // takes its two's-complement value, which the PMD treats as "any".
    let socket = socket as u32;
    for (q, pool) in (0..rx_queues).zip(rx_pools) {
        // SAFETY: the port is configured with rx_queues queues; a NULL rxconf selects the PMD
        // default; the pool is alive for the call and, by this function's contract, after.
        check("rte_eth_rx_queue_setup", unsafe {
            ffi::rte_eth_rx_queue_setup(
                port,
                q,
                rx_descriptors,
                socket,
                std::ptr::null(),
                pool.as_ptr(),
            )
        })?;
    }
    for q in 0..tx_queues {
        // SAFETY: as above, NULL txconf selects the PMD default.
        check("rte_eth_tx_queue_setup", unsafe {
            ffi::rte_eth_tx_queue_setup(port, q, tx_descriptors, socket, std::ptr::null())
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

/// The ports that exist and that no DPDK component owns (`RTE_ETH_FOREACH_DEV`: the ports
/// testpmd lists; a bonding or fail-safe device's members are owned by it and left out), in
/// port-id order. Cost: one call per port.
pub fn ports() -> Result<Vec<u16>, Error> {
    const OP: &str = "rte_eth_find_next_owned_by";
    crate::eal::ensure(OP)?;
    let end = u64::from(ffi::RTE_MAX_ETHPORTS);
    let mut ports = Vec::new();
    let mut from = 0u16;
    loop {
        // SAFETY: the EAL is initialised; the call only reads the port table and returns the
        // first port id from `from` on with no owner, or RTE_MAX_ETHPORTS.
        let next =
            unsafe { ffi::rte_eth_find_next_owned_by(from, u64::from(ffi::RTE_ETH_DEV_NO_OWNER)) };
        // Below RTE_MAX_ETHPORTS (32 in Debian's build), so it and its successor fit a u16.
        match u16::try_from(next) {
            Ok(port) if next < end => {
                ports.push(port);
                from = port + 1;
            }
            _ => return Ok(ports),
        }
    }
}

/// The port's name: the device's as given to `--vdev` (`"net_null0"`) or its PCI address.
pub fn name(port: u16) -> Result<String, Error> {
    const OP: &str = "rte_eth_dev_get_name_by_port";
    crate::eal::ensure(OP)?;
    let mut buf = [0 as c_char; ffi::RTE_ETH_NAME_MAX_LEN as usize];
    // SAFETY: buf has RTE_ETH_NAME_MAX_LEN bytes, the size the function writes at most
    // (NUL included); DPDK validates the port id.
    check(OP, unsafe {
        ffi::rte_eth_dev_get_name_by_port(port, buf.as_mut_ptr())
    })?;
    // SAFETY: on success buf holds a NUL-terminated string within its length.
    Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned())
}

/// A port's descriptor limits per queue (`struct rte_eth_desc_lim`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DescLimits {
    /// Most descriptors a queue takes.
    pub max: u16,
    /// Fewest descriptors a queue takes.
    pub min: u16,
    /// The number of descriptors must be a multiple of this.
    pub align: u16,
    /// Most segments of one packet (scattered or TSO).
    pub seg_max: u16,
    /// Most segments of one packet of MTU size.
    pub mtu_seg_max: u16,
}

impl From<ffi::rte_eth_desc_lim> for DescLimits {
    fn from(lim: ffi::rte_eth_desc_lim) -> Self {
        DescLimits {
            max: lim.nb_max,
            min: lim.nb_min,
            align: lim.nb_align,
            seg_max: lim.nb_seg_max,
            mtu_seg_max: lim.nb_mtu_seg_max,
        }
    }
}

/// What a port's driver says it can do (`rte_eth_dev_info_get`), the fields testpmd's
/// `show port info` prints, owned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DevInfo {
    /// The driver (`"net_null"`, `"net_af_packet"`, `"net_ice"`).
    pub driver_name: String,
    /// The kernel interface the port is attached to, when the driver names one (0: none).
    pub if_index: u32,
    /// Smallest and largest MTU the port accepts.
    pub min_mtu: u16,
    /// See `min_mtu`.
    pub max_mtu: u16,
    /// Longest frame the port can receive, bytes.
    pub max_rx_pktlen: u32,
    /// Smallest receive buffer the port accepts, bytes.
    pub min_rx_bufsize: u32,
    /// Most receive and transmit queues a configuration may ask for.
    pub max_rx_queues: u16,
    /// See `max_rx_queues`.
    pub max_tx_queues: u16,
    /// Queues configured now (0 before `rte_eth_dev_configure`).
    pub nb_rx_queues: u16,
    /// See `nb_rx_queues`.
    pub nb_tx_queues: u16,
    /// How many unicast MAC addresses the port can filter on.
    pub max_mac_addrs: u32,
    /// Receive and transmit offloads of the port (`RTE_ETH_RX_OFFLOAD_*`, `RTE_ETH_TX_OFFLOAD_*`).
    pub rx_offload_capa: u64,
    /// See `rx_offload_capa`.
    pub tx_offload_capa: u64,
    /// The offloads that can be set per queue (a subset of the port's).
    pub rx_queue_offload_capa: u64,
    /// See `rx_queue_offload_capa`.
    pub tx_queue_offload_capa: u64,
    /// Entries of the RSS redirection table (0: no RSS).
    pub reta_size: u16,
    /// Length of the RSS hash key, bytes (0: no RSS, or the driver does not say).
    pub hash_key_size: u8,
    /// The flow types the port can hash for RSS (`RTE_ETH_RSS_*`; 0: no RSS);
    /// [`crate::rss::flow_type_names`] names them.
    pub flow_type_rss_offloads: u64,
    /// Descriptor limits of a receive and of a transmit queue.
    pub rx_desc_lim: DescLimits,
    /// See `rx_desc_lim`.
    pub tx_desc_lim: DescLimits,
    /// Link speeds the port supports (`RTE_ETH_LINK_SPEED_*`).
    pub speed_capa: u32,
    /// Device capabilities (`RTE_ETH_DEV_CAPA_*`).
    pub dev_capa: u64,
}

/// What the driver of `port` says it can do (`rte_eth_dev_info_get`). Cost: one driver
/// callback, no I/O for the vdevs; safe before the port is configured.
pub fn info(port: u16) -> Result<DevInfo, Error> {
    const OP: &str = "rte_eth_dev_info_get";
    crate::eal::ensure(OP)?;
    let mut raw = ffi::rte_eth_dev_info::default();
    // SAFETY: raw is a valid out-parameter the call fills; DPDK validates the port id.
    check(OP, unsafe { ffi::rte_eth_dev_info_get(port, &mut raw) })?;
    let driver_name = if raw.driver_name.is_null() {
        String::new()
    } else {
        // SAFETY: on success driver_name points to the driver's static NUL-terminated name,
        // copied here at once.
        unsafe { CStr::from_ptr(raw.driver_name) }
            .to_string_lossy()
            .into_owned()
    };
    Ok(DevInfo {
        driver_name,
        if_index: raw.if_index,
        min_mtu: raw.min_mtu,
        max_mtu: raw.max_mtu,
        max_rx_pktlen: raw.max_rx_pktlen,
        min_rx_bufsize: raw.min_rx_bufsize,
        max_rx_queues: raw.max_rx_queues,
        max_tx_queues: raw.max_tx_queues,
        nb_rx_queues: raw.nb_rx_queues,
        nb_tx_queues: raw.nb_tx_queues,
        max_mac_addrs: raw.max_mac_addrs,
        rx_offload_capa: raw.rx_offload_capa,
        tx_offload_capa: raw.tx_offload_capa,
        rx_queue_offload_capa: raw.rx_queue_offload_capa,
        tx_queue_offload_capa: raw.tx_queue_offload_capa,
        reta_size: raw.reta_size,
        hash_key_size: raw.hash_key_size,
        flow_type_rss_offloads: raw.flow_type_rss_offloads,
        rx_desc_lim: raw.rx_desc_lim.into(),
        tx_desc_lim: raw.tx_desc_lim.into(),
        speed_capa: raw.speed_capa,
        dev_capa: raw.dev_capa,
    })
}

/// A port's link as the driver last saw it (`struct rte_eth_link`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Link {
    /// Mbit/s; 0 (`RTE_ETH_SPEED_NUM_NONE`) when none, `u32::MAX`
    /// (`RTE_ETH_SPEED_NUM_UNKNOWN`) when the driver cannot tell.
    pub speed_mbps: u32,
    /// Full duplex (else half).
    pub full_duplex: bool,
    /// Speed and duplex negotiated (else fixed).
    pub autoneg: bool,
    /// The link is up.
    pub up: bool,
}

impl Link {
    /// The speed as testpmd prints it: `"10 Gbps"`, `"2.5 Gbps"`, `"100 Mbps"`, `"None"`,
    /// `"Unknown"`.
    pub fn speed_text(&self) -> String {
        match self.speed_mbps {
            0 => "None".to_owned(),
            u32::MAX => "Unknown".to_owned(),
            mbps if mbps < 1000 => format!("{mbps} Mbps"),
            mbps if mbps % 1000 == 0 => format!("{} Gbps", mbps / 1000),
            mbps => format!("{} Gbps", f64::from(mbps) / 1000.0),
        }
    }
}

/// The port's link without waiting for it (`rte_eth_link_get_nowait`: what the driver knows
/// now; a NIC still negotiating reads down). Cost: one driver callback, at most a register
/// read or an ioctl.
pub fn link_nowait(port: u16) -> Result<Link, Error> {
    const OP: &str = "rte_eth_link_get_nowait";
    crate::eal::ensure(OP)?;
    let mut raw = ffi::rte_eth_link::default();
    // SAFETY: raw is a valid out-parameter the call fills; DPDK validates the port id.
    check(OP, unsafe { ffi::rte_eth_link_get_nowait(port, &mut raw) })?;
    Ok(Link {
        speed_mbps: raw.link_speed,
        full_duplex: u32::from(raw.link_duplex()) == ffi::RTE_ETH_LINK_FULL_DUPLEX,
        autoneg: u32::from(raw.link_autoneg()) == ffi::RTE_ETH_LINK_AUTONEG,
        up: u32::from(raw.link_status()) == ffi::RTE_ETH_LINK_UP,
    })
}

/// The port's current MTU (`rte_eth_dev_get_mtu`; 1500 until configured otherwise).
pub fn mtu(port: u16) -> Result<u16, Error> {
    const OP: &str = "rte_eth_dev_get_mtu";
    crate::eal::ensure(OP)?;
    let mut mtu = 0u16;
    // SAFETY: mtu is a valid out-parameter; DPDK validates the port id.
    check(OP, unsafe { ffi::rte_eth_dev_get_mtu(port, &mut mtu) })?;
    Ok(mtu)
}

/// The port's default MAC address (`rte_eth_macaddr_get`).
pub fn mac_addr(port: u16) -> Result<[u8; 6], Error> {
    const OP: &str = "rte_eth_macaddr_get";
    crate::eal::ensure(OP)?;
    let mut addr = ffi::rte_ether_addr::default();
    // SAFETY: addr is a valid out-parameter; DPDK validates the port id.
    check(OP, unsafe { ffi::rte_eth_macaddr_get(port, &mut addr) })?;
    Ok(addr.addr_bytes)
}

/// The NUMA socket the port is attached to, `None` when unknown (`SOCKET_ID_ANY`: every vdev,
/// and a NIC on a machine without NUMA information).
pub fn socket_id(port: u16) -> Result<Option<u32>, Error> {
    const OP: &str = "rte_eth_dev_socket_id";
    crate::eal::ensure(OP)?;
    // rte_eth_dev_socket_id of 22.11 reads the port's data pointer, NULL for a port id never
    // allocated, before checking anything: the port is validated first.
    // SAFETY: rte_eth_dev_is_valid_port only compares the id with RTE_MAX_ETHPORTS and reads
    // the state of an entry of the static port table.
    if unsafe { ffi::rte_eth_dev_is_valid_port(port) } == 0 {
        return Err(Error::from_code(OP, ENODEV));
    }
    // SAFETY: the port is allocated (checked just above; ports are allocated and released on
    // the control path, which this module's callers do not run concurrently), so its data
    // pointer is valid; a query.
    let socket = unsafe { ffi::rte_eth_dev_socket_id(port) };
    if socket >= 0 {
        return Ok(u32::try_from(socket).ok());
    }
    // SAFETY: reads the calling thread's rte_errno, set by the call above when it failed.
    match unsafe { ffi::dpdk_sys_errno() } {
        0 => Ok(None),
        code => Err(Error::from_code(OP, code)),
    }
}

/// The names DPDK gives the offload bits set in `mask`, lowest bit first, `bit N` for one it
/// does not name. `name_of` is `rte_eth_dev_rx_offload_name` or `_tx_`.
fn offload_names(mask: u64, name_of: unsafe extern "C" fn(u64) -> *const c_char) -> Vec<String> {
    (0..64)
        .filter(|bit| mask & (1u64 << bit) != 0)
        .map(|bit| {
            // SAFETY: the function needs no EAL and returns a pointer into its static table of
            // names or to the literal "UNKNOWN", never NULL; copied at once.
            let name = unsafe { CStr::from_ptr(name_of(1u64 << bit)) }.to_string_lossy();
            if name == "UNKNOWN" {
                format!("bit {bit}")
            } else {
                name.into_owned()
            }
        })
        .collect()
}

/// The names of the receive offloads in `mask` (`rte_eth_dev_rx_offload_name`: `"VLAN_STRIP"`,
/// `"IPV4_CKSUM"`, `"RSS_HASH"`, ...), lowest bit first; `bit N` for one DPDK does not name.
/// Needs no EAL.
pub fn rx_offload_names(mask: u64) -> Vec<String> {
    offload_names(mask, ffi::rte_eth_dev_rx_offload_name)
}

/// The names of the transmit offloads in `mask` (`rte_eth_dev_tx_offload_name`:
/// `"MULTI_SEGS"`, `"TCP_TSO"`, ...), as [`rx_offload_names`].
pub fn tx_offload_names(mask: u64) -> Vec<String> {
    offload_names(mask, ffi::rte_eth_dev_tx_offload_name)
}

/// The bit of the receive offload DPDK names `name` (`"RSS_HASH"`, `"IPV4_CKSUM"`, ...), by
/// [`rte_eth_dev_rx_offload_name`](ffi::rte_eth_dev_rx_offload_name): the `RTE_ETH_RX_OFFLOAD_*`
/// constants are `RTE_BIT64` macros bindgen cannot evaluate. Needs no EAL.
pub fn rx_offload_bit(name: &str) -> Option<u64> {
    (0..64)
        .map(|bit| 1u64 << bit)
        .find(|&bit| rx_offload_names(bit).first().is_some_and(|n| n == name))
}

/// A port's RSS hash configuration as the driver reports it (`rte_eth_dev_rss_hash_conf_get`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RssHashConf {
    /// The hash key, as long as asked for.
    pub key: Vec<u8>,
    /// The flow types hashed (`RTE_ETH_RSS_*`; [`crate::rss::flow_type_names`] names them).
    pub hash_types: u64,
}

/// Sets the RSS hash of a port started by [`start_rss`] (`rte_eth_dev_rss_hash_update`): the
/// flow types `hash_types` (each one the port offers, or DPDK refuses) and, when given, the
/// key. The length of `key` is the caller's to match with the port's `hash_key_size` (DPDK
/// 22.11 does not check it; a driver reads as many bytes as its key has, so a shorter key is
/// refused here when the driver states its size).
pub fn rss_hash_update(port: u16, key: Option<&[u8]>, hash_types: u64) -> Result<(), Error> {
    const OP: &str = "rte_eth_dev_rss_hash_update";
    crate::eal::ensure(OP)?;
    let mut key = key.map(<[u8]>::to_vec);
    if let Some(key) = &key {
        let size = usize::from(info(port)?.hash_key_size);
        if key.is_empty() || key.len() > usize::from(u8::MAX) || (size != 0 && key.len() < size) {
            return Err(Error::invalid(
                OP,
                format!(
                    "a key of {} bytes for a port whose key has {size} (0: unstated)",
                    key.len()
                ),
            ));
        }
    }
    let mut conf = ffi::rte_eth_rss_conf {
        rss_key: key
            .as_mut()
            .map_or(std::ptr::null_mut(), |key| key.as_mut_ptr()),
        rss_key_len: key.as_ref().map_or(0, |key| key.len() as u8),
        rss_hf: hash_types,
    };
    // SAFETY: conf's key points to rss_key_len readable bytes (or is NULL) that live through
    // the call; the driver copies them; DPDK validates the port id and the flow types.
    check(OP, unsafe {
        ffi::rte_eth_dev_rss_hash_update(port, &mut conf)
    })
}

/// The RSS hash configuration `port`'s driver holds (`rte_eth_dev_rss_hash_conf_get`), with
/// the first `key_len` bytes of its key (the port's `hash_key_size`; a driver that does not
/// state it, such as net_null, writes its own length, which a buffer of 255 bytes holds).
pub fn rss_hash_conf(port: u16, key_len: u8) -> Result<RssHashConf, Error> {
    const OP: &str = "rte_eth_dev_rss_hash_conf_get";
    crate::eal::ensure(OP)?;
    // The most a driver can write: rss_key_len and hash_key_size are u8.
    let mut key = [0u8; u8::MAX as usize];
    let mut conf = ffi::rte_eth_rss_conf {
        rss_key: key.as_mut_ptr(),
        rss_key_len: key_len,
        rss_hf: 0,
    };
    // SAFETY: conf's key points to 255 writable bytes, more than any driver's key, alive
    // through the call; DPDK validates the port id.
    check(OP, unsafe {
        ffi::rte_eth_dev_rss_hash_conf_get(port, &mut conf)
    })?;
    Ok(RssHashConf {
        key: key[..usize::from(key_len)].to_vec(),
        hash_types: conf.rss_hf,
    })
}

/// The redirection table `entries` (entry i → receive queue) in DPDK's groups of 64 entries
/// with their masks, every entry selected.
fn reta_groups(entries: impl ExactSizeIterator<Item = u16>) -> Vec<ffi::rte_eth_rss_reta_entry64> {
    let group = ffi::RTE_ETH_RETA_GROUP_SIZE as usize;
    let mut groups = vec![
        ffi::rte_eth_rss_reta_entry64 {
            mask: 0,
            reta: [0; ffi::RTE_ETH_RETA_GROUP_SIZE as usize],
        };
        entries.len().div_ceil(group)
    ];
    for (i, queue) in entries.enumerate() {
        let g = &mut groups[i / group];
        g.mask |= 1u64 << (i % group);
        g.reta[i % group] = queue;
    }
    groups
}

/// Writes `port`'s whole redirection table (`rte_eth_dev_rss_reta_update`): entry i sends the
/// hashes whose low bits are i to receive queue `entries[i]`. The port must be in RSS mode
/// ([`start_rss`]); `entries.len()` must be the size the driver takes (most take only their
/// `reta_size`, and refuse any other with EINVAL), each entry below the port's queue count.
pub fn reta_update(port: u16, entries: &[u16]) -> Result<(), Error> {
    const OP: &str = "rte_eth_dev_rss_reta_update";
    crate::eal::ensure(OP)?;
    let size = u16::try_from(entries.len())
        .map_err(|_| Error::invalid(OP, format!("{} entries", entries.len())))?;
    let mut groups = reta_groups(entries.iter().copied());
    // SAFETY: groups holds ceil(size / 64) groups, every entry below size selected; the driver
    // reads them during the call only.
    check(OP, unsafe {
        ffi::rte_eth_dev_rss_reta_update(port, groups.as_mut_ptr(), size)
    })
}

/// `port`'s redirection table of `size` entries as the driver holds it
/// (`rte_eth_dev_rss_reta_query`): entry i is the receive queue of the hashes whose low bits
/// are i.
pub fn reta_query(port: u16, size: u16) -> Result<Vec<u16>, Error> {
    const OP: &str = "rte_eth_dev_rss_reta_query";
    crate::eal::ensure(OP)?;
    let mut groups = reta_groups((0..size).map(|_| 0));
    // SAFETY: groups holds ceil(size / 64) groups with every entry below size selected, which
    // the driver fills during the call.
    check(OP, unsafe {
        ffi::rte_eth_dev_rss_reta_query(port, groups.as_mut_ptr(), size)
    })?;
    let group = ffi::RTE_ETH_RETA_GROUP_SIZE as usize;
    Ok((0..usize::from(size))
        .map(|i| groups[i / group].reta[i % group])
        .collect())
}
