//! A DPDK ethdev as a [`Port`] (feature `dpdk`): its queue pairs receive into and send from the
//! mbufs of a [`PacketPool::with_mbufs`] pool, with no copy; with a tiered pool
//! ([`PacketPool::with_mbufs_tiered`]) each receive queue fills from its own L1 mempool, and the
//! stack threads register as EAL lcores ([`PortControl::enter_thread`]) so that the driver's
//! allocations and frees go through the per-lcore caches. A received mbuf becomes the
//! buffer's handle ([`PktBuf::from_mbuf`]); a buffer to send becomes its mbuf again
//! ([`PktBuf::into_mbuf`]).
//!
//! Ownership: `rx_burst` hands the caller the buffers of the mbufs the driver returned (the
//! driver refills its ring from the pool's mempool); `tx_burst` gives the driver the mbufs it
//! accepts, which it frees back into the mempool once sent, and converts the refused ones back
//! into buffers left in the caller's vector. An mbuf not in the pool's form (chained, or data
//! not at the headroom's end) is freed with `rte_pktmbuf_free` and counted (`rx_unusable`).
//! Stopping the device (on [`PortControl::reclaim`]) returns the mbufs of its receive rings.
//!
//! # Receive-side scaling
//!
//! [`DpdkPort::open_rss`] puts the device in RSS mode over the flow types flowsteer's software
//! model ([`SoftRss`]) computes: TCP and UDP over IPv4 and IPv6 by addresses and ports, other IP
//! packets by addresses, intersected with what the device offers (`flow_type_rss_offloads`).
//! Once the device is started, and before any queue is polled, it sets the key and the
//! redirection table (a table smaller than the device's is repeated to fill it: the device's
//! queue for a hash is then the smaller table's, exactly), then reads back what the device
//! holds (`rss_hash_conf_get`, `reta_query`) and builds the [`SoftRss`] that
//! [`PortControl::rss`] returns from exactly that, so that outbound connections' local ports
//! aim at the queue the device will deliver their replies to. The model is only given when it
//! is exact: every TCP/UDP flow type hashed with ports, other IP packets by addresses, no
//! field-selection bits (`l3-src-only`, ...), a 40-byte key and a power-of-two table. DPDK
//! 22.11 cannot report the hash function, so the model assumes Toeplitz (the RSS function of
//! NICs unless set otherwise).
//!
//! A device without RSS (`flow_type_rss_offloads` 0 or a redirection table of 0 entries:
//! net_ring, net_af_packet, whose queues the kernel's fanout fills, net_tap) runs with the
//! driver's defaults; so does a device whose hashing the model does not match. Then `rss`
//! is `None` and [`PortControl::describe`] says which and why. The mbufs carry the device's
//! hash where the driver delivers one (`RTE_MBUF_F_RX_RSS_HASH`, asked for with the
//! `RSS_HASH` receive offload when the device offers it). Where it delivers none (net_null,
//! net_af_packet, net_ring fed without hashes), the queue computes one in software, so that
//! `miss = "rss"` still spreads flows: the model's hash (what the device computed) when there
//! is a model, else the symmetric Toeplitz hash of addresses and ports, as the AF_PACKET port's
//! frame ring does. Cost: one parse and up to 36 table lookups per such frame.
//!
//! # Transmit-only queues
//!
//! Most devices offer as many transmit queues as receive queues, or more. A port opened with
//! `transmit_only` spare transmit queues ([`DpdkPort::open_rss_sending`]) configures the
//! device with `queues + transmit_only` transmit queues and `queues` receive queues; transmit
//! queue `t >= queues` is the transmit-only queue of owner `t`
//! ([`Port::take_transmit_queue`]), a stack thread beyond the receive queues, whose
//! `rx_burst` returns nothing. An owner beyond the spare queues gets none (the engine then
//! relays its frames through a thread with a queue pair). Refused transmits are the caller's
//! to count, as on a queue pair.
//!
//! Checksum offloads are not used: the stack computes and checks every checksum in software,
//! and `describe` says so.

use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use dpdk_sys::{ethdev, ffi};

use crate::pool::{PacketPool, PktBuf, PoolCache, Tier};
use crate::port::{mac_text, Port, PortControl, QueuePair, ThreadHold};
use crate::rss::{Reta, SoftRss, Toeplitz, SYMMETRIC_KEY};

/// Most mbufs one `rx_burst` or `tx_burst` call moves through the driver; larger requests are
/// split.
const BURST: usize = 64;

/// Why a DPDK port could not be opened or a queue taken.
#[derive(Debug)]
pub enum DpdkPortError {
    /// The pool's buffers are not mbufs (`PacketPool::with_mbufs` makes ones that are).
    NotMbufs,
    /// DPDK refused; its operation and message.
    Dpdk(dpdk_sys::Error),
    /// The queue does not exist or is held by a live owner.
    Queue {
        /// The queue asked for.
        queue: u16,
        /// The port's queue count.
        queues: u16,
    },
    /// The device's RSS key is not the 40 bytes the software model hashes with.
    RssKeyLength {
        /// The device's key length (`hash_key_size`).
        device: u8,
    },
    /// The redirection table size asked for is not one the device can hold.
    RetaSize {
        /// The size asked for.
        asked: usize,
        /// The device's table size (`reta_size`).
        device: u16,
        /// The port's queue count.
        queues: u16,
    },
    /// The device holds another key, hash or table than was set.
    RssReadBack(String),
}

/// The redirection table sizes a device whose table has `device` entries can hold for `queues`
/// queues: powers of two from `queues` up that divide `device` (a smaller table is repeated to
/// fill the device's). Empty when `device` is not a power of two: the model's table masks the
/// hash, which only a power-of-two size does.
pub fn reta_sizes(device: u16, queues: u16) -> Vec<usize> {
    let device = usize::from(device);
    if !device.is_power_of_two() {
        return Vec::new();
    }
    (0..=device.trailing_zeros())
        .map(|shift| 1usize << shift)
        .filter(|&size| size >= usize::from(queues.max(1)))
        .collect()
}

impl fmt::Display for DpdkPortError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DpdkPortError::NotMbufs => f.write_str(
                "DPDK port: the packet pool's buffers are not mbufs (PacketPool::with_mbufs)",
            ),
            DpdkPortError::Dpdk(e) => write!(f, "DPDK port: {e}"),
            DpdkPortError::Queue { queue, queues } => write!(
                f,
                "DPDK port: queue {queue} is taken or out of range (the port has {queues})"
            ),
            DpdkPortError::RssKeyLength { device } => write!(
                f,
                "the device's RSS key is {device} bytes; flowsteer sets and models a 40-byte \
                 Toeplitz key"
            ),
            DpdkPortError::RetaSize {
                asked,
                device,
                queues,
            } => {
                let sizes = reta_sizes(*device, *queues);
                match (sizes.first(), sizes.last()) {
                    (Some(low), Some(high)) => write!(
                        f,
                        "the device's redirection table has {device} entries; a table of \
                         {low}..={high} entries (a power of two, at least the {queues} queues) \
                         is repeated to fill it, got {asked}"
                    ),
                    _ => write!(
                        f,
                        "the device's redirection table has {device} entries, which no \
                         power-of-two table of at least the {queues} queues fills (the \
                         software model needs a power of two), got {asked}"
                    ),
                }
            }
            DpdkPortError::RssReadBack(what) => write!(f, "DPDK port: {what}"),
        }
    }
}

impl std::error::Error for DpdkPortError {}

struct QueueState {
    taken: AtomicBool,
    /// Received mbufs not in the pool's form, freed.
    rx_unusable: AtomicU64,
}

/// A started ethdev with `queues` queue pairs over one mbuf pool.
pub struct DpdkPort {
    port: u16,
    name: String,
    mac: [u8; 6],
    pool: Arc<PacketPool>,
    queues: Arc<[QueueState]>,
    /// Whether each spare transmit queue (owner `queues + i`) is taken.
    senders: Arc<[AtomicBool]>,
    /// Stopped already (by `reclaim`): the queues must not be polled again.
    stopped: Mutex<bool>,
    /// The driver keeps its receive rings' mbufs when stopped and frees them only when its
    /// queues are released: `reclaim` closes the device too.
    closes_to_release: bool,
    /// The device's RSS as software computes it, when exactly.
    rss: Option<SoftRss>,
    /// What the device does with RSS, for `describe`.
    rss_text: String,
    /// The hash of frames the driver delivers without one: the device's, from its model, else
    /// the AF_PACKET frame ring's symmetric one (a table of one entry: only the hash is used).
    soft_hash: SoftRss,
}

/// Drivers whose stop leaves the mbufs of their receive rings in the rings (DPDK 22.11's
/// net_tap frees them in its queue release, at close or reconfiguration): a port on one of them
/// is closed at `reclaim`, so that the pool is full after the engine stops; the device cannot be
/// started again in that process.
const RELEASE_MBUFS_AT_CLOSE: &[&str] = &["net_tap"];

/// `RTE_MBUF_F_RX_RSS_HASH`: the driver wrote the device's hash into the mbuf.
const RX_RSS_HASH: u64 = ffi::RTE_MBUF_F_RX_RSS_HASH as u64;

/// The RSS a port is opened with ([`DpdkPort::open_rss`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RssRequest {
    /// The Toeplitz key.
    pub key: [u8; 40],
    /// Entries of the redirection table, filled round robin over the queues (entry i → queue
    /// i mod queues); see [`reta_sizes`] for the sizes a device takes.
    pub reta_size: usize,
}

/// The flow types a port is asked to hash: those [`SoftRss`] models.
fn modelled_hash_types() -> u64 {
    use dpdk_sys::rss::{flow_type_mask, L3_FLOW_TYPES, L4_FLOW_TYPES};
    flow_type_mask(&L4_FLOW_TYPES) | flow_type_mask(&L3_FLOW_TYPES)
}

/// Why a device hashing `hash_types` does not hash as [`SoftRss`] does, or `None` when it does:
/// TCP and UDP over IPv4 and IPv6 by addresses and ports, every other IP packet by addresses
/// (`ipv4`, or both `ipv4-frag` and `ipv4-other`; the same for IPv6), no field selection.
fn unmodelled(hash_types: u64) -> Option<String> {
    use dpdk_sys::rss::{flow_type, flow_type_mask, L4_FLOW_TYPES};
    let has = |name: &str| flow_type(name).is_some_and(|bit| hash_types & bit == bit);
    let missing: Vec<&str> = L4_FLOW_TYPES
        .into_iter()
        .filter(|name| !has(name))
        .collect();
    if !missing.is_empty() {
        return Some(format!("it does not hash {} by ports", missing.join(", ")));
    }
    for v in ["ipv4", "ipv6"] {
        let by_addresses = has(v) || (has(&format!("{v}-frag")) && has(&format!("{v}-other")));
        if !by_addresses {
            return Some(format!(
                "it does not hash every other {v} packet by addresses ({v}, or {v}-frag and \
                 {v}-other)"
            ));
        }
    }
    let selection = ["l3-src-only", "l3-dst-only", "l4-src-only", "l4-dst-only"];
    if hash_types & flow_type_mask(&selection) != 0 {
        return Some("it hashes a selection of the fields (l3/l4 src/dst-only)".to_owned());
    }
    None
}

/// The flow types of `mask` by name, space-separated.
fn hash_type_text(mask: u64) -> String {
    dpdk_sys::rss::flow_type_names(mask).join(" ")
}

/// The mempool each receive queue fills from: its L1's (the shared one's without an L1).
fn rx_mempools(
    pool: &PacketPool,
    queues: u16,
) -> Result<Vec<&dpdk_sys::PktmbufPool>, DpdkPortError> {
    (0..queues)
        .map(|q| pool.mempool_for(Tier::Queue(q)))
        .collect::<Option<Vec<_>>>()
        .ok_or(DpdkPortError::NotMbufs)
}

/// A key as hex, its first 8 bytes and an ellipsis.
fn key_text(key: &[u8]) -> String {
    let hex: String = key.iter().take(8).map(|b| format!("{b:02x}")).collect();
    if key.len() > 8 {
        format!("{hex}..")
    } else {
        hex
    }
}

impl DpdkPort {
    /// Configures ethdev `port` with `queues` receive and transmit queues of `descriptors`
    /// entries, receiving into `pool` (a `with_mbufs` pool), and starts it.
    pub fn open(
        port: u16,
        queues: u16,
        descriptors: u16,
        pool: Arc<PacketPool>,
    ) -> Result<DpdkPort, DpdkPortError> {
        DpdkPort::open_with(port, queues, (descriptors, descriptors), pool)
    }

    /// [`open`](Self::open) with (receive, transmit) descriptors per queue.
    pub fn open_with(
        port: u16,
        queues: u16,
        (rx_descriptors, tx_descriptors): (u16, u16),
        pool: Arc<PacketPool>,
    ) -> Result<DpdkPort, DpdkPortError> {
        let mempools = rx_mempools(&pool, queues)?;
        ethdev::start_with_pools(port, (&mempools, rx_descriptors), (queues, tx_descriptors))
            .map_err(DpdkPortError::Dpdk)?;
        let text = "RSS not configured (the driver's defaults)".to_owned();
        DpdkPort::started(port, (queues, 0), pool, None, text)
    }

    /// [`open_with`](Self::open_with) with the device's RSS set as `rss` asks and read back
    /// (see the module documentation): on a device with RSS, [`PortControl::rss`] is the model
    /// of what it holds, when that model is exact. Errors: the device's key is not 40 bytes
    /// ([`DpdkPortError::RssKeyLength`]), `rss.reta_size` is not one of [`reta_sizes`]
    /// ([`DpdkPortError::RetaSize`]), the device holds another key or table than was set
    /// ([`DpdkPortError::RssReadBack`]), DPDK refused. A device without RSS is no error.
    pub fn open_rss(
        port: u16,
        queues: u16,
        descriptors: (u16, u16),
        pool: Arc<PacketPool>,
        rss: &RssRequest,
    ) -> Result<DpdkPort, DpdkPortError> {
        DpdkPort::open_rss_sending(port, queues, 0, descriptors, pool, rss)
    }

    /// [`open_rss`](Self::open_rss) with `transmit_only` spare transmit queues beyond the
    /// `queues` queue pairs, for owners without a receive queue (see "Transmit-only queues");
    /// the device must offer `queues + transmit_only` transmit queues.
    pub fn open_rss_sending(
        port: u16,
        queues: u16,
        transmit_only: u16,
        (rx_descriptors, tx_descriptors): (u16, u16),
        pool: Arc<PacketPool>,
        rss: &RssRequest,
    ) -> Result<DpdkPort, DpdkPortError> {
        let mempools = rx_mempools(&pool, queues)?;
        let info = ethdev::info(port).map_err(DpdkPortError::Dpdk)?;
        let rx = (&mempools[..], rx_descriptors);
        let tx = (queues + transmit_only, tx_descriptors);
        let counts = (queues, transmit_only);
        if info.flow_type_rss_offloads == 0 || info.reta_size == 0 {
            ethdev::start_with_pools(port, rx, tx).map_err(DpdkPortError::Dpdk)?;
            let text = format!(
                "no RSS ({}: flow_type_rss_offloads {:#x}, RETA size {}): {}",
                info.driver_name,
                info.flow_type_rss_offloads,
                info.reta_size,
                match info.driver_name.as_str() {
                    "net_af_packet" => "the kernel's fanout fills the queues",
                    _ => "the driver fills the queues",
                }
            );
            return DpdkPort::started(port, counts, pool, None, text);
        }
        if info.hash_key_size != 0 && usize::from(info.hash_key_size) != rss.key.len() {
            return Err(DpdkPortError::RssKeyLength {
                device: info.hash_key_size,
            });
        }
        if !reta_sizes(info.reta_size, queues).contains(&rss.reta_size) {
            return Err(DpdkPortError::RetaSize {
                asked: rss.reta_size,
                device: info.reta_size,
                queues,
            });
        }
        let hash_types =
            ethdev::start_rss(port, rx, tx, modelled_hash_types()).map_err(DpdkPortError::Dpdk)?;
        // From here on the device is started: a failure stops it again.
        let set = (|| {
            ethdev::rss_hash_update(port, Some(&rss.key), hash_types)
                .map_err(DpdkPortError::Dpdk)?;
            let table: Vec<u16> = (0..usize::from(info.reta_size))
                .map(|i| ((i % rss.reta_size) % usize::from(queues)) as u16)
                .collect();
            ethdev::reta_update(port, &table).map_err(DpdkPortError::Dpdk)?;
            let held =
                ethdev::rss_hash_conf(port, rss.key.len() as u8).map_err(DpdkPortError::Dpdk)?;
            let held_table =
                ethdev::reta_query(port, info.reta_size).map_err(DpdkPortError::Dpdk)?;
            if held.key != rss.key {
                return Err(DpdkPortError::RssReadBack(format!(
                    "the device holds the RSS key {} after {} was set",
                    key_text(&held.key),
                    key_text(&rss.key)
                )));
            }
            if held_table != table {
                return Err(DpdkPortError::RssReadBack(format!(
                    "the device's redirection table differs from the one set (first entries \
                     {:?}, set {:?})",
                    &held_table[..held_table.len().min(8)],
                    &table[..table.len().min(8)]
                )));
            }
            let repeats = usize::from(info.reta_size) / rss.reta_size;
            let summary = format!(
                "RSS {} (RETA {} entries{}, key {})",
                hash_type_text(held.hash_types),
                info.reta_size,
                if repeats > 1 {
                    format!(": {} entries {repeats} times", rss.reta_size)
                } else {
                    String::new()
                },
                key_text(&held.key)
            );
            Ok(match unmodelled(held.hash_types) {
                Some(why) => (None, format!("{summary}, not modelled in software: {why}")),
                None => {
                    let key: [u8; 40] =
                        held.key[..]
                            .try_into()
                            .map_err(|_| DpdkPortError::RssKeyLength {
                                device: held.key.len() as u8,
                            })?;
                    let reta = Reta::from_entries(held_table, queues).map_err(|e| {
                        DpdkPortError::RssReadBack(format!("the device's table: {e}"))
                    })?;
                    let soft = SoftRss {
                        toeplitz: Toeplitz::new(&key),
                        reta,
                    };
                    (Some(soft), summary)
                }
            })
        })();
        match set {
            Ok((soft, text)) => DpdkPort::started(port, counts, pool, soft, text),
            Err(e) => {
                // Nothing polls the queues yet; the stop returns their mbufs to the pool.
                let _ = ethdev::stop(port);
                Err(e)
            }
        }
    }

    /// The port over started device `port`.
    fn started(
        port: u16,
        (queues, transmit_only): (u16, u16),
        pool: Arc<PacketPool>,
        rss: Option<SoftRss>,
        rss_text: String,
    ) -> Result<DpdkPort, DpdkPortError> {
        let fail = |e| {
            let _ = ethdev::stop(port);
            DpdkPortError::Dpdk(e)
        };
        let name = ethdev::name(port).map_err(fail)?;
        let mac = ethdev::mac_addr(port).map_err(fail)?;
        let driver = ethdev::info(port).map_err(fail)?.driver_name;
        let soft_hash = match &rss {
            Some(model) => model.clone(),
            None => SoftRss::new(&SYMMETRIC_KEY, 1, 1).map_err(|e| {
                let _ = ethdev::stop(port);
                DpdkPortError::RssReadBack(format!("the software hash: {e}"))
            })?,
        };
        Ok(DpdkPort {
            port,
            name,
            mac,
            pool,
            queues: (0..queues)
                .map(|_| QueueState {
                    taken: AtomicBool::new(false),
                    rx_unusable: AtomicU64::new(0),
                })
                .collect(),
            senders: (0..transmit_only).map(|_| AtomicBool::new(false)).collect(),
            stopped: Mutex::new(false),
            closes_to_release: RELEASE_MBUFS_AT_CLOSE.contains(&driver.as_str()),
            rss,
            rss_text,
            soft_hash,
        })
    }

    /// The ethdev's port id.
    pub fn port_id(&self) -> u16 {
        self.port
    }
}

impl PortControl for DpdkPort {
    fn queues(&self) -> u16 {
        self.queues.len() as u16
    }

    /// Rewrites the device's own table (`rte_eth_dev_rss_reta_update`), as read back from it.
    fn redirect_queue(&self, failed: u16, survivors: &[u16]) -> Result<bool, String> {
        let info = ethdev::info(self.port).map_err(|e| e.to_string())?;
        if info.reta_size == 0 || info.flow_type_rss_offloads == 0 || survivors.is_empty() {
            return Ok(false);
        }
        let mut table = ethdev::reta_query(self.port, info.reta_size).map_err(|e| e.to_string())?;
        for (entry, &to) in table
            .iter_mut()
            .filter(|e| **e == failed)
            .zip(survivors.iter().cycle())
        {
            *entry = to;
        }
        ethdev::reta_update(self.port, &table).map_err(|e| e.to_string())?;
        Ok(true)
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn describe(&self) -> String {
        let spare = match self.senders.len() {
            0 => String::new(),
            n => format!(" (+{n} transmit-only)"),
        };
        format!(
            "dpdk port {} ({}), {}{spare}, mac {}, {}, checksum offload: off",
            self.port,
            self.name,
            crate::port::queues_text(self.queues()),
            mac_text(self.mac),
            self.rss_text
        )
    }

    fn rss(&self) -> Option<&SoftRss> {
        self.rss.as_ref()
    }

    fn drops(&self) -> Vec<Vec<(&'static str, u64)>> {
        self.queues
            .iter()
            .map(|q| vec![("rx_unusable", q.rx_unusable.load(Ordering::Relaxed))])
            .collect()
    }

    fn buffers(&self) -> Option<Arc<PacketPool>> {
        Some(self.pool.clone())
    }

    /// Registers the thread as an EAL lcore (a thread that already is one keeps its id), so
    /// that the driver's allocations and frees on it use the mempools' per-lcore caches; the
    /// hold flushes the thread's caches of every mempool of the pool and unregisters.
    fn enter_thread(&self) -> Result<ThreadHold, String> {
        if dpdk_sys::eal::lcore_id().is_some() {
            return Ok(ThreadHold::default());
        }
        let registration = dpdk_sys::eal::register_thread()
            .map_err(|e| format!("registering the thread as an EAL lcore: {e}"))?;
        Ok(ThreadHold::new(Lcore {
            pool: self.pool.clone(),
            _registration: registration,
        }))
    }

    /// Stops the device, which returns the mbufs of its receive rings to the pool (closes it
    /// too where the driver returns them only then: `RELEASE_MBUFS_AT_CLOSE`). Called once
    /// every queue's owner has stopped.
    fn reclaim(&self, _cache: &mut PoolCache) -> usize {
        let mut stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        if !*stopped {
            // A failed stop or close leaves the mbufs in the device: the pool's count shows them.
            let _ = ethdev::stop(self.port);
            if self.closes_to_release {
                let _ = ethdev::close(self.port);
            }
            *stopped = true;
        }
        0
    }
}

impl Port for DpdkPort {
    type Queue = DpdkQueue;
    type Error = DpdkPortError;

    fn take_queue(&self, queue: u16) -> Result<DpdkQueue, DpdkPortError> {
        let free = self
            .queues
            .get(usize::from(queue))
            .is_some_and(|state| !state.taken.swap(true, Ordering::AcqRel));
        if !free {
            return Err(DpdkPortError::Queue {
                queue,
                queues: self.queues(),
            });
        }
        Ok(self.queue(queue, false))
    }

    /// Transmit queue `owner` when it is one of the spare ones the port was opened with;
    /// `Ok(None)` for an owner beyond them.
    fn take_transmit_queue(&self, owner: u16) -> Result<Option<DpdkQueue>, DpdkPortError> {
        let Some(spare) = owner.checked_sub(self.queues()) else {
            return Err(DpdkPortError::Queue {
                queue: owner,
                queues: self.queues(),
            });
        };
        let Some(taken) = self.senders.get(usize::from(spare)) else {
            return Ok(None);
        };
        if taken.swap(true, Ordering::AcqRel) {
            return Err(DpdkPortError::Queue {
                queue: owner,
                queues: self.queues(),
            });
        }
        Ok(Some(self.queue(owner, true)))
    }
}

/// A stack thread's EAL lcore: on drop (on the thread) its per-lcore caches of the pool's
/// mempools are flushed, then the lcore id is released, so every mbuf is back on its mempool's
/// ring and no cache is left with an id the next registered thread would inherit.
struct Lcore {
    pool: Arc<PacketPool>,
    _registration: dpdk_sys::eal::ThreadRegistration,
}

impl Drop for Lcore {
    fn drop(&mut self) {
        for mempool in self.pool.mempools() {
            mempool.flush_lcore_cache();
        }
    }
}

impl DpdkPort {
    fn queue(&self, queue: u16, transmit_only: bool) -> DpdkQueue {
        DpdkQueue {
            port: self.port,
            queue,
            transmit_only,
            queues: self.queues.clone(),
            senders: self.senders.clone(),
            _pool: self.pool.clone(),
            mbufs: [std::ptr::null_mut(); BURST],
            soft_hash: self.soft_hash.clone(),
        }
    }
}

/// Queue pair `queue` of a [`DpdkPort`], or its transmit-only queue `queue`, owned by one
/// thread; dropping it frees the queue.
pub struct DpdkQueue {
    port: u16,
    queue: u16,
    /// A spare transmit queue: nothing to receive.
    transmit_only: bool,
    queues: Arc<[QueueState]>,
    senders: Arc<[AtomicBool]>,
    /// The pool the device receives into stays alive while the queue can be polled.
    _pool: Arc<PacketPool>,
    /// Scratch for one driver call.
    mbufs: [*mut ffi::rte_mbuf; BURST],
    /// Hashes the frames the driver delivers without the device's hash.
    soft_hash: SoftRss,
}

// SAFETY: the raw pointers in `mbufs` are scratch, meaningful only within one call of the owning
// thread; between calls they are stale values never dereferenced.
unsafe impl Send for DpdkQueue {}

impl QueuePair for DpdkQueue {
    fn rx_burst(&mut self, _cache: &mut PoolCache, out: &mut Vec<PktBuf>, max: usize) -> usize {
        if self.transmit_only {
            return 0;
        }
        let start = out.len();
        let mut unusable = 0;
        while out.len() - start < max {
            let want = (max - (out.len() - start)).min(BURST);
            // SAFETY: this queue pair is the queue's only owner (take_queue), the port is
            // started; the scratch holds `want` pointers.
            let got = unsafe { ethdev::rx_burst(self.port, self.queue, &mut self.mbufs[..want]) };
            for &m in &self.mbufs[..got] {
                let Some(m) = NonNull::new(m) else { continue };
                // SAFETY: the driver returned m, so it is ours; a plain field.
                let hashed = unsafe { (*m.as_ptr()).ol_flags } & RX_RSS_HASH != 0;
                // SAFETY: the driver returned m, so it is ours; it is an mbuf of the pool the
                // queue was set up with, a `with_mbufs` pool; one handle is made.
                match unsafe { PktBuf::from_mbuf(m) } {
                    Some(mut buf) => {
                        if !hashed {
                            let (hash, _) = self.soft_hash.queue_of(buf.data());
                            buf.set_rss_hash(hash);
                        }
                        out.push(buf);
                    }
                    None => {
                        // SAFETY: m is still ours (from_mbuf refused it) and freed once.
                        unsafe { dpdk_sys::pktmbuf_free(m.as_ptr()) };
                        unusable += 1;
                    }
                }
            }
            if got < want {
                break;
            }
        }
        if unusable > 0 {
            self.state()
                .rx_unusable
                .fetch_add(unusable, Ordering::Relaxed);
        }
        out.len() - start
    }

    fn tx_burst(&mut self, _cache: &mut PoolCache, pkts: &mut Vec<PktBuf>) -> usize {
        let mut sent = 0;
        while !pkts.is_empty() {
            let n = pkts.len().min(BURST);
            for (slot, buf) in self.mbufs.iter_mut().zip(&mut pkts[..n]) {
                *slot = buf.mbuf_to_send().as_ptr();
            }
            // SAFETY: this queue pair is the queue's only owner and the port is started; the
            // scratch's first n entries are the mbufs of owned buffers, written for sending.
            let taken = unsafe { ethdev::tx_burst(self.port, self.queue, &mut self.mbufs[..n]) };
            // The driver owns what it took: those handles go, without a free. What it refused
            // stays at the front of `pkts`, still the caller's.
            pkts.drain(..taken);
            sent += taken;
            if taken < n {
                break;
            }
        }
        sent
    }

    fn queue_id(&self) -> u16 {
        self.queue
    }
}

impl DpdkQueue {
    fn state(&self) -> &QueueState {
        &self.queues[usize::from(self.queue)]
    }
}

impl Drop for DpdkQueue {
    fn drop(&mut self) {
        if self.transmit_only {
            let spare = usize::from(self.queue) - self.queues.len();
            self.senders[spare].store(false, Ordering::Release);
        } else {
            self.state().taken.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use dpdk_sys::rss::flow_type_mask;

    use super::*;

    #[test]
    fn the_model_needs_every_tcp_udp_type_with_ports_and_other_ip_by_addresses() {
        assert_eq!(unmodelled(modelled_hash_types()), None);
        let all_l4 = flow_type_mask(&dpdk_sys::rss::L4_FLOW_TYPES);
        // i40e's way: no plain ipv4/ipv6, but fragments and other protocols.
        let split =
            all_l4 | flow_type_mask(&["ipv4-frag", "ipv4-other", "ipv6-frag", "ipv6-other"]);
        assert_eq!(unmodelled(split), None);
        let without_udp6 = modelled_hash_types() & !flow_type_mask(&["ipv6-udp"]);
        assert_eq!(
            unmodelled(without_udp6).as_deref(),
            Some("it does not hash ipv6-udp by ports")
        );
        assert_eq!(
            unmodelled(flow_type_mask(&["ipv4", "ipv6"])).as_deref(),
            Some("it does not hash ipv4-tcp, ipv4-udp, ipv6-tcp, ipv6-udp by ports")
        );
        let no_v6_others = all_l4 | flow_type_mask(&["ipv4", "ipv6-frag"]);
        assert!(unmodelled(no_v6_others)
            .is_some_and(|why| why.starts_with("it does not hash every other ipv6 packet")));
        let src_only = modelled_hash_types() | flow_type_mask(&["l3-src-only"]);
        assert!(unmodelled(src_only).is_some_and(|why| why.contains("selection")));
    }

    #[test]
    fn errors_say_what_the_device_takes() {
        assert_eq!(
            DpdkPortError::RssKeyLength { device: 52 }.to_string(),
            "the device's RSS key is 52 bytes; flowsteer sets and models a 40-byte Toeplitz key"
        );
        let odd = DpdkPortError::RetaSize {
            asked: 64,
            device: 96,
            queues: 2,
        };
        assert!(odd
            .to_string()
            .contains("96 entries, which no power-of-two table"));
        assert_eq!(reta_sizes(512, 1).len(), 10);
        assert_eq!(
            reta_sizes(4, 8),
            Vec::<usize>::new(),
            "more queues than entries"
        );
        assert_eq!(key_text(&[1, 2, 3]), "010203");
        assert_eq!(key_text(&[0xab; 40]), "abababababababab..");
    }
}
