//! The TPACKET_V3 receive ring of one socket: `blocks` blocks of `block_size` bytes mapped from
//! the kernel, each holding a variable number of frames.
//!
//! # Protocol
//!
//! The kernel fills the current block and hands it to user space by setting its `block_status`
//! to `TP_STATUS_USER` (after a write barrier) when it is full or when the retire timeout
//! expires; it never writes a user-owned block. The reader walks the block's frames through
//! each frame header's `tp_next_offset`, then gives the block back by storing
//! `TP_STATUS_KERNEL`. Blocks are handed out and returned in ring order, so one cursor (block
//! index, frames left, offset of the next frame) is the whole reader state.
//!
//! Orderings: the status load is `Acquire` (frame headers and bytes written before the kernel's
//! barrier are visible after it); the store that returns a block is `Release` (every read of
//! the block happens before the kernel may overwrite it).

use std::io;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, Ordering};

use super::mapping::RingMapping;
use super::ring::{Next, Ring, RxFrame};
use super::sys::{
    Tpacket3Hdr, TpacketBlockDesc, BLOCK_STATUS_OFFSET, TPACKET3_HDR_LEN, TP_STATUS_KERNEL,
    TP_STATUS_USER,
};

/// Where the reader stands in the ring. Plain data: the queue owner keeps it across bursts and
/// hands it back to the port when it releases the queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct BlockCursor {
    /// Block being read, or the next one to wait for.
    block: u32,
    /// Frames of `block` not yet consumed; 0 when no block is open.
    remaining: u32,
    /// Offset of the next frame header from the start of `block`.
    offset: u32,
}

/// The memory-mapped block ring. Shared (`Arc`) by the port and the queue owner; only the
/// owner, through its cursor, walks and returns blocks.
pub(super) struct BlockRing {
    memory: RingMapping,
    block_size: usize,
    blocks: u32,
}

impl BlockRing {
    /// Maps the ring `fd` was configured with (`PACKET_RX_RING`): `blocks × block_size` bytes.
    pub(super) fn map(fd: &OwnedFd, block_size: usize, blocks: u32) -> io::Result<BlockRing> {
        let memory = RingMapping::map(fd, block_size * blocks as usize)?;
        Ok(BlockRing {
            memory,
            block_size,
            blocks,
        })
    }

    fn block_ptr(&self, block: u32) -> *mut u8 {
        // SAFETY: block < blocks (every cursor index is reduced modulo `blocks`), so the offset
        // stays inside the mapping.
        unsafe { self.memory.base().add(block as usize * self.block_size) }
    }

    fn status(&self, block: u32) -> &AtomicU32 {
        // SAFETY: `block_status` is a 4-byte aligned u32 inside the block (blocks are page
        // aligned, the offset is 8), valid for the life of the mapping. The kernel and this
        // reader hand the block back and forth through this word only; the kernel's side uses
        // barriers around plain stores, this side atomic accesses.
        unsafe { AtomicU32::from_ptr(self.block_ptr(block).add(BLOCK_STATUS_OFFSET).cast()) }
    }

    /// The frame at `cursor`, opening the next ready block when the current one is done.
    fn next_block_frame(&self, cursor: &mut BlockCursor) -> Next<'_> {
        // Blocks the kernel hands over empty are returned at once; bounded by the ring size.
        for _ in 0..=self.blocks {
            if cursor.remaining == 0 {
                if self.status(cursor.block).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
                    return Next::Empty;
                }
                // SAFETY: the block is user-owned (acquire above), so the kernel does not write
                // its descriptor; the descriptor lies at the block's page-aligned start.
                let desc = unsafe {
                    ptr::read_volatile(self.block_ptr(cursor.block).cast::<TpacketBlockDesc>())
                };
                if desc.hdr.num_pkts == 0 {
                    self.release(cursor);
                    continue;
                }
                cursor.remaining = desc.hdr.num_pkts;
                cursor.offset = desc.hdr.offset_to_first_pkt;
            }
            return self.frame_at(cursor);
        }
        Next::Empty
    }

    fn frame_at(&self, cursor: &mut BlockCursor) -> Next<'_> {
        let offset = cursor.offset as usize;
        let header_fits = offset
            .checked_add(TPACKET3_HDR_LEN)
            .is_some_and(|end| end <= self.block_size);
        if !header_fits || offset & 3 != 0 {
            return self.discard_block(cursor);
        }
        // SAFETY: the header lies inside the user-owned block (checked above) and is 4-byte
        // aligned; the kernel does not write the block until it is released.
        let hdr = unsafe {
            ptr::read_volatile(
                self.block_ptr(cursor.block)
                    .add(offset)
                    .cast::<Tpacket3Hdr>(),
            )
        };
        let start = offset + hdr.tp_mac as usize;
        let fits = start
            .checked_add(hdr.tp_snaplen as usize)
            .is_some_and(|end| end <= self.block_size);
        if !fits {
            return self.discard_block(cursor);
        }
        // SAFETY: `start < block_size` (checked), so the pointer is inside the block.
        let data = unsafe { NonNull::new_unchecked(self.block_ptr(cursor.block).add(start)) };
        Next::Frame(RxFrame {
            data,
            snaplen: hdr.tp_snaplen,
            wire_len: hdr.tp_len,
            status: hdr.tp_status,
            rxhash: hdr.tp_rxhash,
            vlan_tci: hdr.tp_vlan_tci as u16,
            vlan_tpid: hdr.tp_vlan_tpid,
            next_offset: hdr.tp_next_offset,
            ring: PhantomData,
        })
    }

    fn discard_block(&self, cursor: &mut BlockCursor) -> Next<'_> {
        let lost = cursor.remaining;
        self.release(cursor);
        Next::Invalid { lost }
    }

    fn release(&self, cursor: &mut BlockCursor) {
        self.status(cursor.block)
            .store(TP_STATUS_KERNEL, Ordering::Release);
        cursor.block = (cursor.block + 1) % self.blocks;
        cursor.remaining = 0;
        cursor.offset = 0;
    }
}

impl Ring for BlockRing {
    type Cursor = BlockCursor;

    #[inline]
    fn next_frame(&self, cursor: &mut BlockCursor) -> Next<'_> {
        self.next_block_frame(cursor)
    }

    /// The block goes back to the kernel after its last frame.
    #[inline]
    fn consume(&self, cursor: &mut BlockCursor, frame: RxFrame<'_>) {
        cursor.remaining -= 1;
        if cursor.remaining == 0 {
            self.release(cursor);
        } else {
            cursor.offset = cursor.offset.wrapping_add(frame.next_offset);
        }
    }
}
