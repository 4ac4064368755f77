//! The owned handle to one packet buffer, and the metadata in front of every data room.

use std::fmt;
use std::ptr::NonNull;

use super::PoolError;
use crate::hint::prefetch;
use crate::wire::{Classified, Parsed};

/// Bytes of a cache line.
pub(crate) const LINE_BYTES: usize = 64;

/// Bytes of the buffer's metadata in front of its data room. The frame starts right after it, in
/// the same line, so that a frame of up to 96 bytes (a TCP ACK with timestamps, over IPv6 too)
/// lies in two lines with its metadata: every core that touches the buffer (the one that fills
/// it, the one that steers it, the owner it is handed to) moves two lines, not three. Slots are
/// whole lines apart (see the pool's layout), so no two buffers share a line.
pub(crate) const HEADER_BYTES: usize = 32;

/// Metadata of one buffer, at the start of its slot (like an mbuf header in front of its data).
///
/// `index` and `data_room` are written once when the pool is created and only read afterwards;
/// the rest belongs to whoever owns the buffer. `parsed` and `lookup_note` describe the frame as
/// it was when steering classified it: writing the frame resets `parsed`.
#[repr(C, align(16))]
pub(crate) struct SlotHeader {
    pub(crate) len: u32,
    pub(crate) rss_hash: u32,
    pub(crate) index: u32,
    pub(crate) data_room: u32,
    pub(crate) parsed: Parsed,
    pub(crate) lookup_note: u32,
}

const _: () = assert!(std::mem::size_of::<SlotHeader>() == HEADER_BYTES);

impl SlotHeader {
    /// The header of a free buffer: slot `index` of its pool, `data_room` bytes of room.
    pub(crate) fn new(index: u32, data_room: u16) -> SlotHeader {
        SlotHeader {
            len: 0,
            rss_hash: 0,
            index,
            data_room: u32::from(data_room),
            parsed: Parsed::NONE,
            lookup_note: 0,
        }
    }
}

/// Lines [`PktBuf::prefetch`] loads: the metadata and the first 96 bytes of the frame (in a slot
/// of one line the second is the next slot's, or past the allocation: harmless for a hint).
const PREFETCH_LINES: usize = 2;

/// Owned handle to one buffer of a [`PacketPool`](super::PacketPool): one pointer wide.
///
/// Not `Clone`, not `Copy`: moving it moves the ownership of the buffer. There is no `Drop`
/// either: a `PktBuf` that is dropped instead of freed to a [`PoolCache`](super::PoolCache) is a
/// leak, visible as a missing buffer in [`PacketPool::available`](super::PacketPool::available).
/// Freeing is a move into the cache, so a double free cannot be written.
///
/// Every accessor is O(1) and touches only the buffer's own metadata (and data, for the
/// slice accessors); none synchronizes. A handle passed to another thread must travel through
/// something that synchronizes (a ring, a channel), which every queue in this project does.
pub struct PktBuf {
    header: NonNull<SlotHeader>,
}

// SAFETY: a `PktBuf` is the only handle to its slot: pools create one handle per index taken from
// the free list, which hands every index to exactly one owner, and handles are neither `Clone`
// nor `Copy`. Whoever holds the handle may therefore touch the slot from any thread. The slot's
// memory outlives every handle: a pool dropped while buffers are out leaks its memory instead of
// freeing it (see `PacketPool`'s `Drop`).
unsafe impl Send for PktBuf {}
// SAFETY: through `&PktBuf` only reads are possible, and no one else writes the slot while the
// owner is borrowed (writes need `&mut PktBuf`, and the handle is unique, as argued for `Send`).
unsafe impl Sync for PktBuf {}

impl PktBuf {
    /// Wraps a slot the caller has just taken ownership of.
    ///
    /// # Safety
    ///
    /// `header` points to the header of a slot of a live pool allocation, and no other `PktBuf`
    /// for that slot exists.
    pub(crate) unsafe fn from_slot(header: NonNull<SlotHeader>) -> PktBuf {
        PktBuf { header }
    }

    /// Clears the frame metadata for the buffer's next owner.
    pub(crate) fn reset(&mut self) {
        let header = self.header_mut();
        header.len = 0;
        header.rss_hash = 0;
        header.parsed.forget();
        header.lookup_note = 0;
    }

    pub(crate) fn header_addr(&self) -> usize {
        self.header.as_ptr() as usize
    }

    #[cfg(feature = "dpdk")]
    pub(crate) fn header_ptr(&self) -> *mut u8 {
        self.header.as_ptr().cast::<u8>()
    }

    fn header(&self) -> &SlotHeader {
        // SAFETY: the slot is valid for the handle's whole life and owned by it (see `Send`).
        unsafe { self.header.as_ref() }
    }

    fn header_mut(&mut self) -> &mut SlotHeader {
        // SAFETY: as in `header`, and `&mut self` makes this the only access.
        unsafe { self.header.as_mut() }
    }

    fn data_ptr(&self) -> *mut u8 {
        // SAFETY: the data room follows the header inside the same slot of the allocation.
        unsafe { self.header.as_ptr().cast::<u8>().add(HEADER_BYTES) }
    }

    /// The frame: the first [`len`](Self::len) bytes of the data room.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let len = self.header().len as usize;
        // SAFETY: `len <= data_room` is kept by every writer of `len`; the data room is
        // initialized (the pool allocation is zeroed) and owned by this handle.
        unsafe { std::slice::from_raw_parts(self.data_ptr(), len) }
    }

    /// The frame, writable. Forgets the frame's classification ([`PktBuf::parsed`]).
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.header_mut().parsed.forget();
        let len = self.header().len as usize;
        // SAFETY: as in `data`, and `&mut self` makes this the only access to the bytes.
        unsafe { std::slice::from_raw_parts_mut(self.data_ptr(), len) }
    }

    /// The whole data room, for writing a frame before [`set_len`](Self::set_len). Forgets the
    /// frame's classification.
    #[inline]
    pub fn buffer_mut(&mut self) -> &mut [u8] {
        self.header_mut().parsed.forget();
        let room = self.header().data_room as usize;
        // SAFETY: the slot holds `data_room` bytes after its header; `&mut self` makes this the
        // only access.
        unsafe { std::slice::from_raw_parts_mut(self.data_ptr(), room) }
    }

    /// Length of the frame in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.header().len as usize
    }

    /// Whether the frame is empty (a freshly allocated buffer is).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.header().len == 0
    }

    /// Sets the frame length; bytes beyond the old length keep whatever the data room held.
    /// Forgets the frame's classification.
    #[inline]
    pub fn set_len(&mut self, len: usize) -> Result<(), PoolError> {
        let room = self.header().data_room;
        if len > room as usize {
            return Err(PoolError::LenTooLarge {
                len,
                // The data room came from a `u16` when the pool was created.
                data_room: room as u16,
            });
        }
        let header = self.header_mut();
        header.len = len as u32;
        header.parsed.forget();
        Ok(())
    }

    /// Copies `frame` to the start of the data room and sets the length to match.
    #[inline]
    pub fn write_frame(&mut self, frame: &[u8]) -> Result<(), PoolError> {
        self.set_len(frame.len())?;
        self.data_mut().copy_from_slice(frame);
        Ok(())
    }

    /// Bytes this buffer can hold.
    #[inline]
    pub fn data_room(&self) -> u16 {
        self.header().data_room as u16
    }

    /// The receive hash, as a NIC stores it in the mbuf (`hash.rss`); 0 on a fresh buffer.
    #[inline]
    pub fn rss_hash(&self) -> u32 {
        self.header().rss_hash
    }

    /// Sets the receive hash: whoever puts the frame on a receive queue writes it.
    #[inline]
    pub fn set_rss_hash(&mut self, hash: u32) {
        self.header_mut().rss_hash = hash;
    }

    /// Starts loading the buffer's first two lines, its metadata and the first 96 bytes of the
    /// frame (the protocol headers, and all of a small frame), into this core's cache.
    /// A hint: it reads nothing into the program and never faults.
    #[inline]
    pub fn prefetch(&self) {
        let header = self.header.as_ptr().cast::<u8>();
        for line in 0..PREFETCH_LINES {
            prefetch(header.wrapping_add(line * LINE_BYTES));
        }
    }

    /// What steering's classification of the frame found ([`crate::wire::classify_parsed`]),
    /// kept so that the packet's next processor does not parse it again; one that is not
    /// [`is_some`](Parsed::is_some) when nobody classified the frame since it was last written.
    #[inline]
    pub fn parsed(&self) -> Parsed {
        self.header().parsed
    }

    /// Keeps `parsed`, the classification of the frame as it is now.
    #[inline]
    pub fn set_parsed(&mut self, parsed: Parsed) {
        self.header_mut().parsed = parsed;
    }

    /// The classification kept with the frame ([`PktBuf::parsed`]), its tuple read back from
    /// the frame; `None` when none is kept.
    #[inline]
    pub fn classified(&self) -> Option<Classified> {
        self.header().parsed.classified(self.data())
    }

    /// A word steering leaves for the packet's processor: its flow-table lookup's answer, encoded
    /// by the flow table (`flowtable::Lookup::note`); 0 when no lookup was made. Unlike
    /// [`PktBuf::parsed`] it survives writes to the frame: whoever writes a frame it did not
    /// receive (a copy) sets it.
    #[inline]
    pub fn lookup_note(&self) -> u32 {
        self.header().lookup_note
    }

    /// Sets the [`lookup_note`](Self::lookup_note).
    #[inline]
    pub fn set_lookup_note(&mut self, note: u32) {
        self.header_mut().lookup_note = note;
    }

    /// Index of the buffer in its pool, `0..capacity`.
    #[inline]
    pub fn index(&self) -> u32 {
        self.header().index
    }
}

impl fmt::Debug for PktBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PktBuf")
            .field("index", &self.index())
            .field("len", &self.len())
            .field("rss_hash", &format_args!("{:#010x}", self.rss_hash()))
            .finish()
    }
}
