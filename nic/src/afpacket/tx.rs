//! The transmit path: one non-blocking `sendmmsg` per burst on the queue's send-only socket.

use std::io;
use std::mem::zeroed;
use std::os::fd::{AsRawFd, OwnedFd};

use libc::{c_uint, c_void};

use crate::pool::PktBuf;

/// How a burst ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TxEnd {
    /// Every frame was handed to the kernel.
    Complete,
    /// The socket buffer or the device queue was full (EAGAIN / ENOBUFS): the rest waits.
    Full,
    /// The kernel refused a frame for another reason (EMSGSIZE, ENETDOWN, ...).
    Error,
}

/// The message and I/O vector arrays of one burst, kept between bursts so that a steady
/// burst size allocates nothing.
#[derive(Default)]
pub(super) struct TxScratch {
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside point into the frames of one `send` call and are cleared
// before it returns; between calls the vectors are empty, so moving them to another thread
// moves no live pointer.
unsafe impl Send for TxScratch {}

/// Attempts `EINTR` gets before the burst is treated as full.
const INTERRUPT_RETRIES: u32 = 4;

impl TxScratch {
    /// Sends `frames` in order on `fd`; returns how many the kernel took (a prefix) and why it
    /// stopped. Never blocks (`MSG_DONTWAIT`).
    pub(super) fn send(&mut self, fd: &OwnedFd, frames: &[PktBuf]) -> (usize, TxEnd) {
        self.iovs.clear();
        self.msgs.clear();
        self.iovs.extend(frames.iter().map(|buf| libc::iovec {
            // The kernel only reads through this pointer (a send).
            iov_base: buf.data().as_ptr() as *mut c_void,
            iov_len: buf.len(),
        }));
        // `iovs` is complete and is not touched again until `clear`, so these pointers stay
        // valid for the calls below.
        for iov in self.iovs.iter_mut() {
            // SAFETY: mmsghdr is plain data (pointers and integers); all-zero is valid.
            let mut msg: libc::mmsghdr = unsafe { zeroed() };
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
            self.msgs.push(msg);
        }
        let total = self.msgs.len();
        let mut sent = 0;
        let mut interrupts = 0;
        let end = loop {
            if sent == total {
                break TxEnd::Complete;
            }
            let left = (total - sent).min(c_uint::MAX as usize) as c_uint;
            // SAFETY: `msgs[sent..]` holds `left` initialized headers, each pointing at one iovec
            // of `iovs` that points at a frame borrowed from `frames` for this whole call; the
            // socket is bound, so no address is needed. The kernel writes only `msg_len`.
            let rc = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
                    self.msgs.as_mut_ptr().add(sent),
                    left,
                    libc::MSG_DONTWAIT,
                )
            };
            if rc > 0 {
                sent += rc as usize;
                continue;
            }
            if rc == 0 {
                break TxEnd::Full;
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) if interrupts < INTERRUPT_RETRIES => interrupts += 1,
                Some(libc::EAGAIN | libc::ENOBUFS) => break TxEnd::Full,
                _ => break TxEnd::Error,
            }
        };
        self.msgs.clear();
        self.iovs.clear();
        (sent, end)
    }
}
