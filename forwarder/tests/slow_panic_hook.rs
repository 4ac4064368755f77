//! A panic whose hook takes longer than `engine.stall_ms` (a backtrace printed from a debug
//! build, or a hook that reports somewhere slow) is reclaimed as a panic, not declared a stall
//! while it unwinds. A test binary of its own: the process's panic hook is set here, before the
//! engine puts its own in front of it.

use std::panic;
use std::thread;
use std::time::Duration;

use flowsteer_config::{FaultKind, OnFailure};
use forwarder::engine::{run, RunOptions};

mod common;

use common::generated::faulted_config;

#[test]
fn a_panic_with_a_slow_hook_is_reclaimed_as_a_panic() {
    let default = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if thread::current()
            .name()
            .is_some_and(|n| n.starts_with("fs-stack-"))
        {
            // Five times the stall limit below.
            thread::sleep(Duration::from_millis(1000));
        }
        default(info);
    }));

    let cfg = faulted_config(FaultKind::Panic, OnFailure::Restart);
    assert_eq!(cfg.engine.stall_ms, 200);
    let report = run(&cfg, RunOptions::quiet(Duration::from_millis(1600))).expect("engine runs");
    let table = report.render_table();
    assert!(report.conservation.ok, "{table}");
    assert_eq!(report.failures.len(), 1, "{table}");
    let failure = &report.failures[0];
    assert_eq!(failure.failures.get("panic"), Some(&1), "{table}");
    assert_eq!(failure.failures.get("stall"), None, "{table}");
    assert_eq!((failure.state, failure.restarts), ("running", 1), "{table}");
    assert!(
        failure.last_reason.contains("fault injected into thread 1"),
        "{table}"
    );
    assert_eq!(report.pool.available, report.pool.capacity, "{table}");
}
