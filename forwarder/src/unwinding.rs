//! Marks a stack thread as unwinding from the moment it panics, so that the watchdog does not
//! take a panic on its way to the thread's boundary for a stall.
//!
//! A panic runs the process's panic hook before it unwinds, and a hook that prints a backtrace
//! (`RUST_BACKTRACE=1`) can take longer than `engine.stall_ms`: resolving the symbols of a
//! debug build takes hundreds of milliseconds. The thread makes no loop progress meanwhile,
//! with packets waiting, which is what the watchdog declares a stall on. The engine therefore
//! puts a hook of its own in front of the process's (once, chained: the previous hook still
//! runs, and prints as before) that marks the panicking stack thread's health as unwinding.
//! The watchdog leaves an unwinding thread alone; the thread reaches its boundary, where the
//! panic is reclaimed as a panic. (Were a panic caught below the boundary, the thread's loop
//! clears the mark at its next iteration, and the watchdog watches it again.)
//!
//! A hook set after the engine's replaces it; a slow panic may then be declared a stall first,
//! and its message is added to the stall's reason when it arrives (`reclaim.rs`).

use std::cell::RefCell;
use std::panic;
use std::sync::{Arc, Once};

use crate::health::Health;

thread_local! {
    /// The health block of the stack thread this OS thread runs, for the panic hook.
    static SERVING: RefCell<Option<(Arc<Health>, usize)>> = const { RefCell::new(None) };
}

/// Marks this OS thread as stack thread `t`: a panic on it marks `t` unwinding. Installs the
/// engine's panic hook the first time.
pub(crate) fn serving_as(health: Arc<Health>, t: usize) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            mark_unwinding();
            previous(info);
        }));
    });
    SERVING.with(|serving| *serving.borrow_mut() = Some((health, t)));
}

/// In the panic hook: marks the stack thread this OS thread runs, if it runs one.
fn mark_unwinding() {
    // `try_with` and `try_borrow`: a hook must not panic, also when the thread-local is being
    // destroyed or a panic struck while it was borrowed.
    let _ = SERVING.try_with(|serving| {
        if let Ok(serving) = serving.try_borrow() {
            if let Some((health, t)) = serving.as_ref() {
                health.thread(*t).set_unwinding(true);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_on_a_stack_thread_marks_it_unwinding_and_no_other() {
        let health = Arc::new(Health::new(2));
        let on_stack = health.clone();
        let joined = std::thread::spawn(move || {
            serving_as(on_stack, 1);
            panic!("a stack thread's panic");
        })
        .join();
        assert!(joined.is_err());
        assert!(health.thread(1).unwinding());
        assert!(!health.thread(0).unwinding());

        // A panic on a thread that serves no stack marks nothing.
        let joined = std::thread::spawn(|| panic!("another thread's panic")).join();
        assert!(joined.is_err());
        assert!(!health.thread(0).unwinding());
    }
}
