//! Software receive-side scaling: the Toeplitz hash and the redirection table (RETA) a NIC
//! applies to every received frame, so that software queues spread flows exactly as hardware
//! queues would.
//!
//! # Hash
//!
//! [`Toeplitz`] is the Microsoft RSS hash over a 40-byte key: for every set bit `k` of the input
//! (most significant bit of the first byte first), XOR in the 32 key bits starting at bit `k`.
//! Because the hash is linear in the input, the contribution of each input byte depends only on
//! its position and value; [`Toeplitz::new`] precomputes those contributions for the 36 input
//! positions an IPv6 4-tuple needs (36 × 256 × 4 bytes = 36 KiB, built once per key, O(key bits ×
//! 256)). A hash is then one table load and one XOR per input byte: 12 for an IPv4 4-tuple, 36 for
//! IPv6, with no per-bit loop.
//!
//! Input order is the NIC's (and DPDK `rte_softrss`'s): source address, destination address,
//! source port, destination port, all in network byte order.
//!
//! # Redirection
//!
//! [`Reta`] maps the low bits of the hash to a queue, like a NIC's indirection table; filled
//! round-robin it spreads hashes evenly, and entries can be rewritten to move load (RSS++).
//!
//! # Concurrency
//!
//! Every type here is immutable after construction except through `&mut` ([`Reta::set`]), so
//! any number of threads may hash and look up through shared references at once.

use std::fmt;

use crate::wire::{self, Classified, FiveTuple, IpPair, ETHERTYPE_IPV4, ETHERTYPE_IPV6};

/// The key of Microsoft's "Verifying the RSS Hash Calculation" suite; also the default key of
/// many NICs and of DPDK's examples.
pub const MICROSOFT_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// `0x6d, 0x5a` repeated: a key with a 16-bit period, so swapping source and destination
/// (addresses and ports, each a multiple of 16 bits) leaves the hash unchanged and both
/// directions of a flow land on the same queue.
pub const SYMMETRIC_KEY: [u8; 40] = {
    let mut key = [0u8; 40];
    let mut i = 0;
    while i < 40 {
        key[i] = if i % 2 == 0 { 0x6d } else { 0x5a };
        i += 1;
    }
    key
};

/// Longest input the hash covers: an IPv6 4-tuple (16 + 16 + 2 + 2 bytes).
pub const MAX_INPUT_LEN: usize = 36;

/// Largest redirection table, as on common NICs (and DPDK's `RTE_ETH_RSS_RETA_SIZE_512` × 8).
pub const MAX_RETA_SIZE: usize = 4096;

/// Why a redirection table could not be built or changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RssError {
    /// The table size is not a power of two in `1..=4096`.
    RetaSize {
        /// Requested size.
        size: usize,
    },
    /// The queue count is not in `1..=size`.
    Queues {
        /// Requested queue count.
        queues: u16,
        /// Table size.
        size: usize,
    },
    /// A table index at or beyond the size.
    Index {
        /// Requested index.
        index: usize,
        /// Table size.
        size: usize,
    },
    /// A queue at or beyond the queue count.
    Queue {
        /// Requested queue.
        queue: u16,
        /// Queue count.
        queues: u16,
    },
}

impl fmt::Display for RssError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RssError::RetaSize { size } => write!(
                f,
                "rss: redirection table size must be a power of two in 1..={MAX_RETA_SIZE}, got {size}"
            ),
            RssError::Queues { queues, size } => write!(
                f,
                "rss: queues must be 1..={size} (the redirection table size), got {queues}"
            ),
            RssError::Index { index, size } => write!(
                f,
                "rss: redirection table index must be 0..{size}, got {index}"
            ),
            RssError::Queue { queue, queues } => {
                write!(f, "rss: queue must be 0..{queues}, got {queue}")
            }
        }
    }
}

impl std::error::Error for RssError {}

/// The Toeplitz hash for one key, with per-byte lookup tables (see the module documentation).
#[derive(Clone)]
pub struct Toeplitz {
    key: [u8; 40],
    // table[i][b]: what input byte `b` at position `i` XORs into the hash.
    table: Box<[[u32; 256]; MAX_INPUT_LEN]>,
}

impl Toeplitz {
    /// Builds the tables for `key`: 36 KiB, O(36 × 256 × 8) work, once.
    pub fn new(key: &[u8; 40]) -> Self {
        let mut table = Box::new([[0u32; 256]; MAX_INPUT_LEN]);
        for (position, row) in table.iter_mut().enumerate() {
            // The 32-bit key window for each of the byte's 8 bits, most significant bit first.
            let windows: [u32; 8] = std::array::from_fn(|bit| key_window(key, position * 8 + bit));
            for (value, slot) in row.iter_mut().enumerate() {
                *slot = windows
                    .iter()
                    .enumerate()
                    .filter(|(bit, _)| value & (0x80 >> bit) != 0)
                    .fold(0, |hash, (_, window)| hash ^ window);
            }
        }
        Toeplitz { key: *key, table }
    }

    /// The key the tables were built from.
    pub fn key(&self) -> &[u8; 40] {
        &self.key
    }

    /// The hash of `input`. Only the first [`MAX_INPUT_LEN`] (36) bytes count: a 40-byte key
    /// covers no more, and NICs never hash more than an IPv6 4-tuple.
    #[inline]
    pub fn hash(&self, input: &[u8]) -> u32 {
        self.fold(0, 0, input)
    }

    /// The hash of a flow as a NIC computes it for TCP/UDP: source address, destination
    /// address, source port, destination port (12 bytes for IPv4, 36 for IPv6).
    #[inline]
    pub fn hash_tuple(&self, tuple: &FiveTuple) -> u32 {
        let (hash, ports_at) = match &tuple.ip {
            IpPair::V4 { src, dst } => (self.fold(self.fold(0, 0, src), 4, dst), 8),
            IpPair::V6 { src, dst } => (self.fold(self.fold(0, 0, src), 16, dst), 32),
        };
        let hash = self.fold(hash, ports_at, &tuple.src_port.to_be_bytes());
        self.fold(hash, ports_at + 2, &tuple.dst_port.to_be_bytes())
    }

    /// The hash of the address pair alone, as a NIC computes it for IP packets without usable
    /// ports (fragments, ICMP): source address, destination address.
    #[inline]
    pub fn hash_ips(&self, ips: &IpPair) -> u32 {
        match ips {
            IpPair::V4 { src, dst } => self.fold(self.fold(0, 0, src), 4, dst),
            IpPair::V6 { src, dst } => self.fold(self.fold(0, 0, src), 16, dst),
        }
    }

    /// XORs into `hash` the contributions of `bytes` placed at input position `start`; bytes
    /// beyond position 35 are ignored.
    #[inline]
    fn fold(&self, hash: u32, start: usize, bytes: &[u8]) -> u32 {
        let rows = self.table.get(start..).unwrap_or_default();
        rows.iter()
            .zip(bytes)
            .fold(hash, |hash, (row, &byte)| hash ^ row[byte as usize])
    }
}

impl fmt::Debug for Toeplitz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Toeplitz").field("key", &self.key).finish()
    }
}

/// Key bits `bit..bit + 32` as a number, most significant first. `bit < 288`, so the window
/// ends inside the 320-bit key.
fn key_window(key: &[u8; 40], bit: usize) -> u32 {
    let byte = bit / 8;
    let mut wide = [0u8; 8];
    let available = (key.len() - byte).min(8);
    wide[..available].copy_from_slice(&key[byte..byte + available]);
    ((u64::from_be_bytes(wide) << (bit % 8)) >> 32) as u32
}

/// A redirection table: `queue(hash) = table[hash mod size]`, as a NIC's RETA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reta {
    table: Vec<u16>,
    queues: u16,
}

impl Reta {
    /// A table of `size` entries (a power of two in `1..=4096`) over `queues` queues (`1..=size`),
    /// filled round-robin (entry `i` → queue `i mod queues`), as NIC drivers do by default.
    pub fn new(size: usize, queues: u16) -> Result<Reta, RssError> {
        if !size.is_power_of_two() || size > MAX_RETA_SIZE {
            return Err(RssError::RetaSize { size });
        }
        if queues == 0 || queues as usize > size {
            return Err(RssError::Queues { queues, size });
        }
        let table = (0..size).map(|i| (i % queues as usize) as u16).collect();
        Ok(Reta { table, queues })
    }

    /// A table with the given `entries` (their count a power of two in `1..=4096`, each below
    /// `queues`), such as the one a NIC reports holding.
    pub fn from_entries(entries: Vec<u16>, queues: u16) -> Result<Reta, RssError> {
        let size = entries.len();
        if !size.is_power_of_two() || size > MAX_RETA_SIZE {
            return Err(RssError::RetaSize { size });
        }
        if let Some(&queue) = entries.iter().find(|&&q| q >= queues) {
            return Err(RssError::Queue { queue, queues });
        }
        Ok(Reta {
            table: entries,
            queues,
        })
    }

    /// The queue for `hash`: one mask and one load.
    #[inline]
    pub fn queue(&self, hash: u32) -> u16 {
        // The size is a power of two, so the mask keeps the index inside the table.
        self.table[hash as usize & (self.table.len() - 1)]
    }

    /// Points entry `index` to `queue`.
    pub fn set(&mut self, index: usize, queue: u16) -> Result<(), RssError> {
        let size = self.table.len();
        if queue >= self.queues {
            return Err(RssError::Queue {
                queue,
                queues: self.queues,
            });
        }
        let entry = self
            .table
            .get_mut(index)
            .ok_or(RssError::Index { index, size })?;
        *entry = queue;
        Ok(())
    }

    /// Number of entries.
    pub fn size(&self) -> usize {
        self.table.len()
    }

    /// Number of queues the entries may point to.
    pub fn queues(&self) -> u16 {
        self.queues
    }

    /// The entries, in index order.
    pub fn entries(&self) -> &[u16] {
        &self.table
    }
}

/// Software RSS: what a NIC does to pick a receive queue, done on a frame in memory.
///
/// Frames are hashed by kind:
/// - TCP/UDP ([`Classified::Flow`]): [`Toeplitz::hash_tuple`] of the 4-tuple.
/// - Other IP packets (non-first fragments, ICMP and other protocols): [`Toeplitz::hash_ips`] of
///   the address pair, read at the fixed offsets of the IP header the classifier validated. As on
///   a NIC, the fragments of one datagram land together, though not necessarily on the queue of
///   its first fragment.
/// - ARP, other ethertypes and malformed frames: hash 0, hence queue `reta.queue(0)`.
///
/// Cost: one [`wire::dissect`] pass plus up to 36 table lookups. Immutable: share it freely.
#[derive(Clone, Debug)]
pub struct SoftRss {
    /// The hash.
    pub toeplitz: Toeplitz,
    /// The hash-to-queue table.
    pub reta: Reta,
}

impl SoftRss {
    /// Soft RSS with `key` over a round-robin table of `reta_size` entries and `queues` queues.
    pub fn new(key: &[u8; 40], reta_size: usize, queues: u16) -> Result<SoftRss, RssError> {
        Ok(SoftRss {
            toeplitz: Toeplitz::new(key),
            reta: Reta::new(reta_size, queues)?,
        })
    }

    /// The receive hash and queue of `frame` (see the type documentation for each kind).
    #[inline]
    pub fn queue_of(&self, frame: &[u8]) -> (u32, u16) {
        let hash = self.frame_hash(frame);
        (hash, self.reta.queue(hash))
    }

    /// The receive hash and queue of a flow's packets, for a generator that partitions flows by
    /// queue without building frames.
    #[inline]
    pub fn queue_of_tuple(&self, tuple: &FiveTuple) -> (u32, u16) {
        let hash = self.toeplitz.hash_tuple(tuple);
        (hash, self.reta.queue(hash))
    }

    fn frame_hash(&self, frame: &[u8]) -> u32 {
        let Ok(dissection) = wire::dissect(frame) else {
            return 0;
        };
        match dissection.classified {
            Classified::Flow { tuple, .. } => self.toeplitz.hash_tuple(&tuple),
            Classified::Unkeyed(_) => ip_pair_at(frame, dissection.ethertype, dissection.l3_offset)
                .map_or(0, |ips| self.toeplitz.hash_ips(&ips)),
            Classified::Arp { .. } => 0,
        }
    }
}

/// The addresses of the IP header at `l3`, or `None` for a non-IP frame.
fn ip_pair_at(frame: &[u8], ethertype: u16, l3: usize) -> Option<IpPair> {
    let (src_at, len) = match ethertype {
        ETHERTYPE_IPV4 => (12, 4),
        ETHERTYPE_IPV6 => (8, 16),
        _ => return None,
    };
    let start = l3.checked_add(src_at)?;
    let addresses = frame.get(start..start.checked_add(2 * len)?)?;
    let (src, dst) = addresses.split_at(len);
    Some(match len {
        4 => IpPair::V4 {
            src: src.try_into().ok()?,
            dst: dst.try_into().ok()?,
        },
        _ => IpPair::V6 {
            src: src.try_into().ok()?,
            dst: dst.try_into().ok()?,
        },
    })
}
