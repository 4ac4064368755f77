//! The receive ring of one queue, of either kind: a TPACKET_V3 ring of blocks
//! ([`BlockRing`](super::blocks::BlockRing)) or a TPACKET_V2 ring of frame slots
//! ([`FrameRing`](super::frames::FrameRing)). Both hand the reader the same [`RxFrame`]; the
//! queue matches on the kind once per burst and walks the ring through [`Ring`], so the
//! per-frame loop is compiled once per kind with no dispatch inside it.

use std::marker::PhantomData;
use std::ptr::NonNull;

use super::blocks::{BlockCursor, BlockRing};
use super::frames::{FrameCursor, FrameRing};

/// What a ring walk found.
pub(super) enum Next<'a> {
    /// Nothing is ready: everything handed over so far has been consumed.
    Empty,
    /// A frame; copy it, then pass it to [`Ring::consume`].
    Frame(RxFrame<'a>),
    /// A frame header pointing outside its block or slot (never written by a correct kernel):
    /// `lost` frames were returned to the kernel unread.
    Invalid {
        /// Frames discarded.
        lost: u32,
    },
}

/// One received frame, borrowed from user-owned ring memory until it is consumed.
pub(super) struct RxFrame<'a> {
    pub(super) data: NonNull<u8>,
    pub(super) snaplen: u32,
    /// Length of the frame on the wire (`tp_len`); more than `snaplen` when the ring truncated.
    pub(super) wire_len: u32,
    /// `tp_status` of the frame.
    pub(super) status: u32,
    /// The flow hash: the kernel's (`TP_FT_REQ_FILL_RXHASH`) on a block ring, the software
    /// symmetric Toeplitz hash of the frame's addresses and ports on a frame ring.
    pub(super) rxhash: u32,
    /// The VLAN TCI the kernel stripped, valid with `TP_STATUS_VLAN_VALID`.
    pub(super) vlan_tci: u16,
    /// The TPID of that tag, valid with `TP_STATUS_VLAN_TPID_VALID`.
    pub(super) vlan_tpid: u16,
    /// Block rings: offset of the next frame header from this one (`tp_next_offset`).
    pub(super) next_offset: u32,
    pub(super) ring: PhantomData<&'a ()>,
}

impl RxFrame<'_> {
    /// The captured bytes (`tp_snaplen` of them), from the Ethernet header.
    pub(super) fn data(&self) -> &[u8] {
        // SAFETY: the ring that built this frame checked that `snaplen` bytes at `data` lie
        // inside a block or slot user space owns until `Ring::consume`, which takes the frame
        // by value, ending this borrow; the frame's lifetime is the ring's borrow.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr(), self.snaplen as usize) }
    }
}

/// The walk both ring kinds offer the queue owner.
pub(super) trait Ring {
    /// Where the reader stands; plain data kept by the owner across bursts.
    type Cursor;
    /// The frame at `cursor`, or `Empty` when the kernel has handed over nothing more.
    fn next_frame(&self, cursor: &mut Self::Cursor) -> Next<'_>;
    /// Marks `frame` consumed; its memory goes back to the kernel (at once for a slot, after
    /// the block's last frame for a block).
    fn consume(&self, cursor: &mut Self::Cursor, frame: RxFrame<'_>);
}

/// The receive ring of one queue.
pub(super) enum RxRing {
    /// TPACKET_V3: batched, handed over per block (full or timed out).
    Blocks(BlockRing),
    /// TPACKET_V2: one frame per slot, handed over as soon as it is written.
    Frames(FrameRing),
}

/// The reader position in an [`RxRing`]; always of the ring's own kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RxCursor {
    /// Position in a block ring.
    Blocks(BlockCursor),
    /// Position in a frame ring.
    Frames(FrameCursor),
}

impl RxRing {
    /// The position of a fresh ring: its first block or slot.
    pub(super) fn start(&self) -> RxCursor {
        match self {
            RxRing::Blocks(_) => RxCursor::Blocks(BlockCursor::default()),
            RxRing::Frames(_) => RxCursor::Frames(FrameCursor::default()),
        }
    }
}
