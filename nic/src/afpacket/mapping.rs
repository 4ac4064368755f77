//! The memory of one receive ring, mapped from its socket and unmapped when dropped: what the
//! block ring and the frame ring share beneath their layouts.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::{self, NonNull};

/// `len` bytes of a socket's `PACKET_RX_RING`, mapped shared (and populated) at an address the
/// kernel picks.
pub(super) struct RingMapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory valid until `Drop`, not tied to a thread. Who reads
// and writes which part of it is the rings' protocol with the kernel, and only the single owner
// of the queue (the port's `taken` flag) walks it; the port only unmaps it, in `Drop`, when no
// owner exists.
unsafe impl Send for RingMapping {}
// SAFETY: as for `Send`.
unsafe impl Sync for RingMapping {}

impl RingMapping {
    /// Maps the ring `fd` was configured with.
    pub(super) fn map(fd: &OwnedFd, len: usize) -> io::Result<RingMapping> {
        // SAFETY: a fresh shared mapping of the socket's ring, at an address the kernel picks;
        // no existing memory is affected. The result is checked against MAP_FAILED.
        let raw = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(raw.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(RingMapping { base, len })
    }

    /// The first byte of the mapping; the length given to `map` from it is valid until the
    /// drop.
    pub(super) fn base(&self) -> *mut u8 {
        self.base.as_ptr()
    }
}

impl Drop for RingMapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was created in `map` with this length and is unmapped once; no
        // frame borrow outlives the ring that owns this mapping (frames borrow the ring).
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}
