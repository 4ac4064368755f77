//! The TPACKET_V2 receive ring of one socket: `frames` fixed-size slots of `frame_size` bytes
//! mapped from the kernel, one frame per slot.
//!
//! # Protocol
//!
//! Each slot starts with a `tpacket2_hdr` whose `tp_status` word says who owns the slot. The
//! kernel writes a frame into the slot at its own head when that slot's status is
//! `TP_STATUS_KERNEL`, then stores a status with `TP_STATUS_USER` set (after a write barrier):
//! the frame is visible to user space as soon as it is written, with no block to fill and no
//! retire timeout. When the head slot is still user-owned the kernel drops the frame (counted in
//! `PACKET_STATISTICS`). The reader consumes slots in ring order and returns each one by storing
//! `TP_STATUS_KERNEL`, so one slot index is the whole reader state.
//!
//! Orderings: the status load is `Acquire` (the header and frame bytes written before the
//! kernel's barrier are visible after it); the store that returns a slot is `Release` (every
//! read of the slot happens before the kernel may overwrite it).
//!
//! The V2 header has no flow hash (`TP_FT_REQ_FILL_RXHASH` is a TPACKET_V3 feature), so this
//! ring computes one per frame: the symmetric Toeplitz hash of the addresses and ports (one
//! header parse and up to 36 table lookups; the addresses alone for IP frames without ports, 0
//! for ARP and other non-IP frames, as [`SoftRss`] does). Like the kernel's skb hash it is the
//! same for both directions of a flow and for every frame of it; it is not the kernel's value.

use std::io;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, Ordering};

use super::mapping::RingMapping;
use super::ring::{Next, Ring, RxFrame};
use super::sys::{
    Tpacket2Hdr, FRAME_STATUS_OFFSET, TPACKET2_HDR_LEN, TP_STATUS_KERNEL, TP_STATUS_USER,
};
use crate::hint::prefetch;
use crate::rss::{SoftRss, SYMMETRIC_KEY};

/// Where the reader stands in a frame ring: the next slot to read. Plain data, kept by the
/// queue owner across bursts and handed back to the port when it releases the queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct FrameCursor {
    slot: u32,
}

/// The memory-mapped slot ring. Shared (`Arc`) by the port and the queue owner; only the owner,
/// through its cursor, reads and returns slots.
pub(super) struct FrameRing {
    memory: RingMapping,
    frame_size: usize,
    frames: u32,
    /// The flow hash the V2 header lacks (see the module documentation).
    hash: SoftRss,
}

impl FrameRing {
    /// Maps the ring `fd` was configured with (`PACKET_RX_RING`, TPACKET_V2): `frames` slots of
    /// `frame_size` bytes, contiguous (the blocks are multiples of `frame_size` and are mapped
    /// back to back).
    pub(super) fn map(fd: &OwnedFd, frame_size: usize, frames: u32) -> io::Result<FrameRing> {
        let memory = RingMapping::map(fd, frame_size * frames as usize)?;
        let hash = SoftRss::new(&SYMMETRIC_KEY, 1, 1).map_err(io::Error::other)?;
        Ok(FrameRing {
            memory,
            frame_size,
            frames,
            hash,
        })
    }

    fn slot_ptr(&self, slot: u32) -> *mut u8 {
        // SAFETY: slot < frames (every cursor index wraps at `frames`), so the offset stays
        // inside the mapping.
        unsafe { self.memory.base().add(slot as usize * self.frame_size) }
    }

    fn status(&self, slot: u32) -> &AtomicU32 {
        // SAFETY: `tp_status` is the first u32 of the slot; slots start at multiples of
        // `frame_size` (a multiple of 16) from a page-aligned base, so it is 4-byte aligned, and
        // it is valid for the life of the mapping. The kernel and this reader hand the slot
        // back and forth through this word only; the kernel's side uses barriers around plain
        // stores (`__packet_set_status`), this side atomic accesses.
        unsafe { AtomicU32::from_ptr(self.slot_ptr(slot).add(FRAME_STATUS_OFFSET).cast()) }
    }

    /// Returns the slot at `cursor` to the kernel and moves to the next one.
    fn release(&self, cursor: &mut FrameCursor) {
        // Release: every read of the slot happens before the kernel may overwrite it.
        self.status(cursor.slot)
            .store(TP_STATUS_KERNEL, Ordering::Release);
        cursor.slot += 1;
        if cursor.slot == self.frames {
            cursor.slot = 0;
        }
    }
}

impl Ring for FrameRing {
    type Cursor = FrameCursor;

    #[inline]
    fn next_frame(&self, cursor: &mut FrameCursor) -> Next<'_> {
        // Acquire pairs with the kernel's write barrier before it set TP_STATUS_USER: the
        // header and the frame bytes are visible below.
        let status = self.status(cursor.slot).load(Ordering::Acquire);
        if status & TP_STATUS_USER == 0 {
            return Next::Empty;
        }
        let slot = self.slot_ptr(cursor.slot);
        // SAFETY: the slot is user-owned (acquire above), so the kernel does not write it until
        // it is released; the header lies at the slot's 16-byte aligned start and the slot is
        // larger than the header (the kernel refuses smaller frame sizes).
        let hdr = unsafe { ptr::read_volatile(slot.cast::<Tpacket2Hdr>()) };
        let start = usize::from(hdr.tp_mac);
        let fits = start >= TPACKET2_HDR_LEN
            && start
                .checked_add(hdr.tp_snaplen as usize)
                .is_some_and(|end| end <= self.frame_size);
        if !fits {
            self.release(cursor);
            return Next::Invalid { lost: 1 };
        }
        // SAFETY: `start < frame_size` (checked), so the pointer is inside the slot.
        let data = unsafe { NonNull::new_unchecked(slot.add(start)) };
        // SAFETY: `snaplen` bytes from `data` lie inside the user-owned slot (checked above);
        // the slice ends before the slot is released (`consume` or the end of this call).
        let bytes = unsafe { std::slice::from_raw_parts(data.as_ptr(), hdr.tp_snaplen as usize) };
        let (rxhash, _) = self.hash.queue_of(bytes);
        // The next slot is most likely the next frame when frames queue up: start its header
        // and first bytes on their way (a hint: it never faults, whoever owns the slot).
        let next = if cursor.slot + 1 == self.frames {
            0
        } else {
            cursor.slot + 1
        };
        let next_ptr = self.slot_ptr(next);
        for line in 0..3 {
            prefetch(next_ptr.wrapping_add(line * 64));
        }
        Next::Frame(RxFrame {
            data,
            snaplen: hdr.tp_snaplen,
            wire_len: hdr.tp_len,
            status,
            rxhash,
            vlan_tci: hdr.tp_vlan_tci,
            vlan_tpid: hdr.tp_vlan_tpid,
            next_offset: 0,
            ring: PhantomData,
        })
    }

    /// The slot goes back to the kernel at once.
    #[inline]
    fn consume(&self, cursor: &mut FrameCursor, _frame: RxFrame<'_>) {
        self.release(cursor);
    }
}
