//! Sleeping until one of a few descriptors is readable: how a stack thread with nothing to do
//! waits for its receive queue and for what other threads hand it, instead of polling.
//!
//! Cost: one `ppoll` system call per wait; the caller decides when waiting is worth it.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// Descriptors one wait watches at most.
pub const MAX_WAIT_FDS: usize = 4;

/// Sleeps until one of `fds` is readable or `timeout` passed; returns a bit per descriptor that
/// is readable (bit i for `fds[i]`), 0 after the timeout or an interruption (EINTR). At most
/// [`MAX_WAIT_FDS`] descriptors: more is an `InvalidInput` error.
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> io::Result<u32> {
    if fds.len() > MAX_WAIT_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("at most {MAX_WAIT_FDS} descriptors, got {}", fds.len()),
        ));
    }
    let mut polled = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; MAX_WAIT_FDS];
    for (slot, fd) in polled.iter_mut().zip(fds) {
        slot.fd = fd.as_raw_fd();
        slot.events = libc::POLLIN;
    }
    let spec = libc::timespec {
        tv_sec: timeout.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: `polled` holds `fds.len()` valid pollfd entries (descriptors borrowed for the
    // call, so open) and lives across the call, as does `spec`; no signal mask is passed.
    let rc = unsafe {
        libc::ppoll(
            polled.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &spec,
            std::ptr::null(),
        )
    };
    if rc < 0 {
        let error = io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::EINTR) => Ok(0),
            _ => Err(error),
        };
    }
    Ok(polled
        .iter()
        .take(fds.len())
        .enumerate()
        .filter(|(_, p)| p.revents & libc::POLLIN != 0)
        .fold(0, |bits, (i, _)| bits | 1 << i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};
    use std::time::Instant;

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: pipe returned two open descriptors that nothing else owns.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    #[test]
    fn reports_which_descriptor_is_readable_and_times_out_otherwise() {
        let (a_read, _a_write) = pipe();
        let (b_read, b_write) = pipe();
        let started = Instant::now();
        let fds = [a_read.as_fd(), b_read.as_fd()];
        assert_eq!(wait_readable(&fds, Duration::from_millis(20)).unwrap(), 0);
        assert!(started.elapsed() >= Duration::from_millis(15));
        // SAFETY: one byte from a live buffer to an open pipe.
        assert_eq!(
            unsafe { libc::write(b_write.as_raw_fd(), [1u8].as_ptr().cast(), 1) },
            1
        );
        assert_eq!(wait_readable(&fds, Duration::from_secs(5)).unwrap(), 0b10);
    }

    #[test]
    fn too_many_descriptors_is_an_error() {
        let (r, _w) = pipe();
        let fds = [r.as_fd(); MAX_WAIT_FDS + 1];
        let error = wait_readable(&fds, Duration::ZERO).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
