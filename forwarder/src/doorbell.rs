//! Waking a stack thread that sleeps while idle (`engine.idle = "wait"`): one doorbell per
//! thread, rung by whoever hands it packets.
//!
//! A sleeping thread waits in one `ppoll` on its receive queue's descriptor and its doorbell (an
//! eventfd). Handing it packets through its software queue does not touch the descriptor, so the
//! producer rings the doorbell, but only when the owner announced that it sleeps: the owner
//! stores `sleeping = true`, then looks at its software queue once more; the producer publishes
//! its enqueue, then loads `sleeping`. A sequentially consistent fence on each side (the store
//! then load on both sides is Dekker's pattern) guarantees that at least one of them sees the
//! other: either the owner finds the packets before it sleeps, or the producer finds it asleep
//! and rings. So no handed-off packet waits for the sleeper's timeout.
//!
//! Cost: for the owner, per idle wait, a store, a fence, a queue check and the `ppoll`; for a
//! producer, per burst handed to a thread, a fence and a load, plus one `write` system call when
//! the owner sleeps. Threads that poll (`spin`, `yield`, `sleep`) have no doorbells and pay
//! nothing.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

/// Every thread's doorbell, by thread, each on a cache line of its own.
pub type Doorbells = Arc<[CachePadded<Doorbell>]>;

/// One thread's doorbell.
pub struct Doorbell {
    sleeping: AtomicBool,
    event: OwnedFd,
}

impl Doorbell {
    /// A doorbell nobody has rung, its thread awake.
    pub fn new() -> io::Result<Doorbell> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor nothing
        // else owns.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is the open descriptor just created, owned from here on only.
        let event = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Doorbell {
            sleeping: AtomicBool::new(false),
            event,
        })
    }

    /// Producer side, after an enqueue to this doorbell's thread: wakes it if it sleeps.
    pub fn ring_if_sleeping(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) {
            self.ring();
        }
    }

    /// Wakes the thread whether it sleeps or not (the engine is stopping).
    pub fn ring(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: 8 bytes from a live buffer to an open eventfd. A full counter (EAGAIN) means
        // a wake-up is pending already, which is all a ring asks for.
        unsafe { libc::write(self.event.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    /// Owner side: announces that the thread is about to sleep. The caller then checks its
    /// software queue once more and sleeps only if it is still empty.
    pub fn going_to_sleep(&self) {
        self.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// Owner side, after the wait: the thread is awake; a pending ring is consumed.
    pub fn woke(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live buffer from an open, non-blocking eventfd;
        // nothing to read (EAGAIN) is fine.
        unsafe {
            libc::read(
                self.event.as_raw_fd(),
                count.as_mut_ptr().cast(),
                count.len(),
            )
        };
    }

    /// The descriptor that becomes readable when the doorbell is rung.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.event.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    use flowsteer_nic::wait::wait_readable;

    #[test]
    fn a_ring_wakes_a_sleeper_and_is_consumed_once() {
        let bell = Doorbell::new().unwrap();
        bell.ring_if_sleeping();
        assert_eq!(
            wait_readable(&[bell.fd()], Duration::ZERO).unwrap(),
            0,
            "awake: no ring"
        );
        bell.going_to_sleep();
        bell.ring_if_sleeping();
        assert_eq!(wait_readable(&[bell.fd()], Duration::ZERO).unwrap(), 1);
        bell.woke();
        assert_eq!(wait_readable(&[bell.fd()], Duration::ZERO).unwrap(), 0);
    }

    #[test]
    fn another_threads_ring_ends_the_wait_long_before_its_timeout() {
        let bell = Arc::new(Doorbell::new().unwrap());
        let ringer = Arc::clone(&bell);
        bell.going_to_sleep();
        let started = Instant::now();
        let handle = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            ringer.ring_if_sleeping();
        });
        let woken = wait_readable(&[bell.fd()], Duration::from_secs(30)).unwrap();
        bell.woke();
        handle.join().unwrap();
        assert_eq!(woken, 1);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
