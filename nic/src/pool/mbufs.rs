//! A pool whose buffers are the mbufs of a DPDK mempool, so that a DPDK port receives into them
//! and sends from them without a copy (feature `dpdk`).
//!
//! # Layout
//!
//! The mempool is an `rte_pktmbuf` pool with a private area of [`PRIVATE_BYTES`] (32) per mbuf.
//! An mbuf's data then starts `sizeof(rte_mbuf) + 32 + RTE_PKTMBUF_HEADROOM` = 288 bytes after
//! the mbuf, 32 bytes into a cache line, and the buffer's [`SlotHeader`] fills the last 32 bytes
//! of the headroom: the same line as the frame's first bytes, as in the heap pool. A [`PktBuf`]
//! is a pointer to that header, [`MBUF_TO_HEADER`] (256) bytes after its mbuf, so the two convert
//! by a constant offset while `data_off` is `RTE_PKTMBUF_HEADROOM`, which every buffer of this
//! pool keeps: the pool writes it on the way out ([`PktBuf::into_mbuf`]) and refuses mbufs with
//! another on the way in ([`PktBuf::from_mbuf`]). Drivers never write the headroom.
//!
//! # Cost
//!
//! Refill and flush are one `rte_mempool_generic_get`/`put` of up to half a cache (past DPDK's
//! per-lcore caches: the pool's own caches are in front), one compare-and-swap on the mempool's
//! ring per bulk.
//!
//! # One mempool per segment
//!
//! [`PacketPool::with_mbufs_tiered`] makes a mempool per non-empty segment (each queue's L1 and
//! the shared pool), so that a DPDK port sets up each receive queue with its L1's mempool and a
//! driver that frees an mbuf after sending it (`rte_pktmbuf_free`, to `m->pool`) returns it to
//! its own segment, as the pool's caches do. The mempools get a per-lcore cache: the stack
//! threads register as EAL lcores (the DPDK port's thread hook), so the driver's own allocations
//! at receive and frees after transmit go through that cache instead of the mempool's ring. Converting between a handle and an mbuf is an addition; [`PktBuf::from_mbuf`]
//! reads the mbuf's first line (length, offset, flags, hash), as a driver has just written it.

use std::mem::size_of;
use std::ptr::NonNull;
use std::sync::Arc;

use dpdk_sys::{ffi, PktmbufPool};

use super::buf::{SlotHeader, HEADER_BYTES};
use super::segment::{FreeStack, Segment, Store};
use super::{PacketPool, PktBuf, PoolError, Tier, Tiers};

/// Bytes of application area between an mbuf and its buffer: what puts the data 32 bytes into
/// a line.
pub const PRIVATE_BYTES: u16 = 32;

/// The headroom every buffer of the pool keeps in front of its data.
const HEADROOM: usize = ffi::RTE_PKTMBUF_HEADROOM as usize;

/// From an mbuf to the buffer's header, the last [`HEADER_BYTES`] of its headroom.
pub const MBUF_TO_HEADER: usize =
    size_of::<ffi::rte_mbuf>() + PRIVATE_BYTES as usize + HEADROOM - HEADER_BYTES;

/// `RTE_MBUF_F_RX_RSS_HASH`: the driver stored the NIC's RSS hash in `hash.rss`.
const RX_RSS_HASH: u64 = ffi::RTE_MBUF_F_RX_RSS_HASH as u64;

/// The mempool and the address range of its mbufs.
pub(super) struct MbufSlots {
    /// `None` once leaked (buffers were still out when the pool was dropped).
    mempool: Option<PktmbufPool>,
    /// Lowest and one past the highest header address of the pool's buffers.
    pub(super) headers: (usize, usize),
}

impl MbufSlots {
    pub(super) fn free_count(&self) -> usize {
        self.mempool.as_ref().map_or(0, |m| m.available() as usize)
    }

    /// The mbufs on the mempool's ring: what `take` can get, the per-lcore caches left out.
    pub(super) fn takeable(&self) -> usize {
        self.mempool.as_ref().map_or(0, |m| m.ring_count() as usize)
    }

    /// Takes up to `n` mbufs as handles; the mempool gives all of a request or nothing, so a
    /// short pool is drained in halves.
    pub(super) fn take(&self, out: &mut Vec<PktBuf>, n: usize) -> usize {
        let Some(mempool) = &self.mempool else {
            return 0;
        };
        let mut mbufs = [std::ptr::null_mut::<ffi::rte_mbuf>(); 64];
        let mut taken = 0;
        let mut want = n.min(mbufs.len());
        while taken < n && want > 0 {
            let chunk = want.min(n - taken);
            if !mempool.get_raw(&mut mbufs[..chunk]) {
                want /= 2;
                continue;
            }
            for &m in &mbufs[..chunk] {
                // SAFETY: an mbuf of this pool just taken from the mempool: its header was
                // written when the pool was made, and this is now its only handle.
                out.push(unsafe { header_of(m) });
            }
            taken += chunk;
        }
        taken
    }

    pub(super) fn give(&self, bufs: impl Iterator<Item = PktBuf>) {
        let Some(mempool) = &self.mempool else {
            // Leaked: its buffers are never reused.
            bufs.for_each(drop);
            return;
        };
        let mut mbufs = [std::ptr::null_mut::<ffi::rte_mbuf>(); 64];
        let mut n = 0;
        for buf in bufs {
            mbufs[n] = buf.mbuf_of();
            n += 1;
            if n == mbufs.len() {
                // SAFETY: each entry came from a handle of this pool, now consumed: owned,
                // listed once, one segment with reference count 1 (the pool's state).
                unsafe { mempool.put_raw(&mbufs[..n]) };
                n = 0;
            }
        }
        // SAFETY: as above.
        unsafe { mempool.put_raw(&mbufs[..n]) };
    }

    /// Gives up the mempool without freeing it: handles still out keep pointing into it.
    pub(super) fn leak(&mut self) {
        std::mem::forget(self.mempool.take());
    }
}

/// The handle of mbuf `m`'s buffer.
///
/// # Safety
///
/// `m` is an mbuf of a pool made by [`PacketPool::with_mbufs`], owned by the caller, who makes
/// no other handle for it.
unsafe fn header_of(m: *mut ffi::rte_mbuf) -> PktBuf {
    // SAFETY: the pool's layout puts the header MBUF_TO_HEADER bytes after the mbuf, inside the
    // same element; the caller owns the mbuf and makes one handle.
    unsafe {
        let header =
            NonNull::new_unchecked(m.cast::<u8>().add(MBUF_TO_HEADER).cast::<SlotHeader>());
        PktBuf::from_slot(header)
    }
}

/// The largest per-lcore cache DPDK accepts (`RTE_MEMPOOL_CACHE_MAX_SIZE`).
const LCORE_CACHE_MAX: u32 = ffi::RTE_MEMPOOL_CACHE_MAX_SIZE;

impl MbufSlots {
    /// A mempool `name` of `buffers` mbufs whose buffers are numbered from `first`, with a
    /// per-lcore cache of up to `lcore_cache` (clamped to what DPDK accepts for the size: at most
    /// 512 and two thirds of the mbufs); every header written.
    fn create(
        name: &str,
        buffers: u32,
        first: u32,
        data_room: u16,
        lcore_cache: u32,
    ) -> Result<MbufSlots, PoolError> {
        let too_large = PoolError::TooLarge { buffers, data_room };
        let room = u16::try_from(HEADROOM + usize::from(data_room)).map_err(|_| too_large)?;
        let lcore_cache = lcore_cache.min(LCORE_CACHE_MAX).min(buffers / 3 * 2);
        let mempool = PktmbufPool::with_private_area(
            name,
            buffers,
            lcore_cache,
            PRIVATE_BYTES,
            room,
            ffi::SOCKET_ID_ANY,
        )
        .map_err(|e| PoolError::Dpdk(e.to_string()))?;
        // Every mbuf once: write its header and learn the range of their addresses.
        let mut all = vec![std::ptr::null_mut::<ffi::rte_mbuf>(); buffers as usize];
        if !mempool.get_raw(&mut all) {
            return Err(PoolError::Dpdk(format!(
                "{name}: the new mempool does not hand out its {buffers} mbufs"
            )));
        }
        let mut headers = (usize::MAX, 0);
        let mut layout_error = None;
        for (index, &m) in (first..).zip(all.iter()) {
            // SAFETY: m is an mbuf of the new pool, taken above and owned here; its element holds
            // the mbuf, the 32-byte private area and the buffer, whose headroom the header
            // fills, so the write stays inside the element.
            let data = unsafe {
                let header = m.cast::<u8>().add(MBUF_TO_HEADER).cast::<SlotHeader>();
                header.write(SlotHeader::new(index, data_room));
                headers.0 = headers.0.min(header as usize);
                headers.1 = headers.1.max(header as usize + 1);
                (*m).buf_addr as usize + usize::from((*m).data_off)
            };
            if data != m as usize + MBUF_TO_HEADER + HEADER_BYTES {
                layout_error = Some(data - m as usize);
            }
        }
        // SAFETY: every mbuf was taken above, is owned here and listed once, untouched but for
        // its headroom.
        unsafe { mempool.put_raw(&all) };
        if let Some(offset) = layout_error {
            return Err(PoolError::Dpdk(format!(
                "{name}: an mbuf's data starts {offset} bytes after it, not {}",
                MBUF_TO_HEADER + HEADER_BYTES
            )));
        }
        Ok(MbufSlots {
            mempool: Some(mempool),
            headers,
        })
    }
}

impl PacketPool {
    /// A pool of `buffers` mbufs of `data_room` bytes each (the headroom comes on top), made in
    /// DPDK's memory: one shared segment, a mempool named `name_s` (see
    /// [`with_mbufs_tiered`](Self::with_mbufs_tiered)) without per-lcore cache.
    pub fn with_mbufs(
        name: &str,
        buffers: u32,
        data_room: u16,
    ) -> Result<Arc<PacketPool>, PoolError> {
        PacketPool::with_mbufs_tiered(name, &Tiers::shared_only(buffers), data_room, 0)
    }

    /// A pool split as `tiers` says, each non-empty segment the mbufs of its own mempool: `name_N`
    /// for queue N's L1, `name_s` for the shared pool (`name` unique among the process's mempools,
    /// at most 19 bytes), each with a per-lcore cache of up to `lcore_cache` mbufs (see
    /// `MbufSlots::create` for the clamp). The EAL must be initialised. A DPDK port sets up each
    /// receive queue with its L1's mempool ([`mempool_for`](Self::mempool_for)).
    ///
    /// Errors: no buffers or data room, or DPDK's own error (no memory, a name in use), an mbuf
    /// layout other than this pool relies on, or mempools whose address ranges interleave (a
    /// buffer's segment could not be told from its address).
    pub fn with_mbufs_tiered(
        name: &str,
        tiers: &Tiers,
        data_room: u16,
        lcore_cache: u32,
    ) -> Result<Arc<PacketPool>, PoolError> {
        tiers.checked_total(data_room)?;
        let mut segments = Vec::new();
        let mut first = 0u32;
        for (tier, n) in tiers.sizes() {
            let segment = if n == 0 {
                Segment::new(tier, 0, (0, 0), Store::Heap(FreeStack::new(Vec::new())))
            } else {
                let suffix = match tier {
                    Tier::Queue(q) => q.to_string(),
                    Tier::Shared => "s".to_owned(),
                };
                let slots = MbufSlots::create(
                    &format!("{name}_{suffix}"),
                    n,
                    first,
                    data_room,
                    lcore_cache,
                )?;
                Segment::new(tier, n, slots.headers, Store::Mbufs(slots))
            };
            segments.push(segment);
            first += n;
        }
        let mut ranges: Vec<_> = segments
            .iter()
            .filter(|s| s.buffers > 0)
            .map(|s| (s.range(), s.tier))
            .collect();
        ranges.sort_unstable_by_key(|&(range, _)| range);
        for pair in ranges.windows(2) {
            let ((_, end), tier) = pair[0];
            if pair[1].0 .0 < end {
                return Err(PoolError::Dpdk(format!(
                    "{name}: the mempools of {tier} and {} interleave in memory",
                    pair[1].1
                )));
            }
        }
        Ok(PacketPool::with_segments(segments, None, tiers, data_room))
    }

    /// The DPDK mempool of the shared segment of a pool made by [`PacketPool::with_mbufs`];
    /// `None` for a heap pool (or an empty shared segment).
    pub fn mempool(&self) -> Option<&PktmbufPool> {
        self.mempool_for(Tier::Shared)
    }

    /// The mempool of `tier`'s segment (a queue without an L1 has the shared pool's): what a DPDK
    /// port sets that receive queue up with. `None` for a heap pool or an empty segment.
    pub fn mempool_for(&self, tier: Tier) -> Option<&PktmbufPool> {
        match &self.segments[self.index_of(tier)].store {
            Store::Mbufs(slots) => slots.mempool.as_ref(),
            Store::Heap(_) => None,
        }
    }

    /// Every segment's mempool (none for a heap pool): to flush a thread's per-lcore caches of
    /// them before it leaves the EAL.
    pub fn mempools(&self) -> impl Iterator<Item = &PktmbufPool> {
        self.segments.iter().filter_map(|s| match &s.store {
            Store::Mbufs(slots) => slots.mempool.as_ref(),
            Store::Heap(_) => None,
        })
    }
}

impl PktBuf {
    /// The buffer of mbuf `m`, which a DPDK port received: its length and receive hash are
    /// taken from the mbuf. `None` (the mbuf is still the caller's) when it is not in the form
    /// this pool keeps: more than one segment, or data that does not start at the headroom's end.
    ///
    /// # Safety
    ///
    /// `m` is an mbuf of a pool made by [`PacketPool::with_mbufs`], owned by the caller (a
    /// driver just returned it), and no other handle for it exists.
    pub unsafe fn from_mbuf(m: NonNull<ffi::rte_mbuf>) -> Option<PktBuf> {
        let m = m.as_ptr();
        // SAFETY: the caller owns m; these are plain fields of its first line.
        let (segments, data_off, len, flags) =
            unsafe { ((*m).nb_segs, (*m).data_off, (*m).data_len, (*m).ol_flags) };
        if segments != 1 || usize::from(data_off) != HEADROOM {
            return None;
        }
        // SAFETY: the caller's contract is header_of's.
        let mut buf = unsafe { header_of(m) };
        let hash = if flags & RX_RSS_HASH != 0 {
            // SAFETY: the flag says the driver wrote the `rss` member of the hash union.
            unsafe { (*m).__bindgen_anon_2.hash.rss }
        } else {
            0
        };
        buf.reset();
        // The pool's data room is the mbuf's buffer beyond the headroom, so a driver's length fits.
        if buf.set_len(usize::from(len)).is_err() {
            return None;
        }
        buf.set_rss_hash(hash);
        Some(buf)
    }

    /// The buffer as the mbuf a DPDK port sends: length, offset and segment fields written from
    /// the handle. For buffers of a pool made by [`PacketPool::with_mbufs`] only; the mbuf is the
    /// caller's to send or free (with DPDK's calls: it goes back to this pool's mempool).
    pub fn into_mbuf(mut self) -> NonNull<ffi::rte_mbuf> {
        self.mbuf_to_send()
    }

    /// [`into_mbuf`](Self::into_mbuf) without giving up the handle: for a burst the driver may
    /// take only part of. The handle of an mbuf the driver took must then be dropped, not freed
    /// (the driver frees the mbuf); the handle of one it refused stays valid as it was.
    pub fn mbuf_to_send(&mut self) -> NonNull<ffi::rte_mbuf> {
        let m = self.mbuf_of();
        let len = self.len() as u16;
        // SAFETY: the handle is the buffer's only owner and its mbuf lies MBUF_TO_HEADER bytes
        // before its header (a buffer of a `with_mbufs` pool); these are plain mbuf fields.
        unsafe {
            (*m).data_off = HEADROOM as u16;
            (*m).data_len = len;
            (*m).pkt_len = u32::from(len);
            (*m).nb_segs = 1;
            (*m).next = std::ptr::null_mut();
            (*m).ol_flags = 0;
            NonNull::new_unchecked(m)
        }
    }

    /// The mbuf this buffer's header is in (a buffer of a `with_mbufs` pool).
    fn mbuf_of(&self) -> *mut ffi::rte_mbuf {
        self.header_ptr()
            .wrapping_sub(MBUF_TO_HEADER)
            .cast::<ffi::rte_mbuf>()
    }
}

impl PktBuf {
    /// The buffer as the mbuf a NIC's driver returns from `rx_burst`: as
    /// [`into_mbuf`](Self::into_mbuf), with the buffer's receive hash in `hash.rss` and
    /// `RTE_MBUF_F_RX_RSS_HASH` set, so that [`from_mbuf`](Self::from_mbuf) takes the hash from
    /// the mbuf as from a NIC's. For a program that stands in for the wire of a DPDK port (a
    /// ring-backed device fed by the traffic generator).
    pub fn into_received_mbuf(mut self) -> NonNull<ffi::rte_mbuf> {
        let hash = self.rss_hash();
        let m = self.mbuf_to_send();
        // SAFETY: the handle was the mbuf's only owner and is consumed; `hash` and `ol_flags`
        // are plain fields of the mbuf's first line, as a driver writes them on receive.
        unsafe {
            (*m.as_ptr()).__bindgen_anon_2.hash.rss = hash;
            (*m.as_ptr()).ol_flags = RX_RSS_HASH;
        }
        m
    }
}
