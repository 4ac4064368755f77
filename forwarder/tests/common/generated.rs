//! The configuration of the engine suites' generator runs: `profile` under `balance` with
//! `threads` stack threads on `queues` queues, 256 flows, no metrics endpoint.

use flowsteer_config::{Balance, Config, FaultKind, OnFailure, Profile};

pub fn generated_config(profile: Profile, balance: Balance, threads: u16, queues: u16) -> Config {
    let mut cfg = Config::default();
    cfg.engine.threads = threads;
    cfg.port.queues = queues;
    cfg.engine.balance = balance;
    cfg.traffic.profile = profile;
    cfg.traffic.flows = 256;
    cfg.metrics.enabled = false;
    cfg
}

/// The `[fault]` test aid on the generator's traffic, each `engine.on_failure`: the report
/// holds the failure and still accounts for every packet.
pub fn faulted_config(kind: FaultKind, on_failure: OnFailure) -> Config {
    let mut cfg = generated_config(Profile::Listeners, Balance::Software, 2, 2);
    cfg.flowtable.capacity = 65_536;
    cfg.engine.on_failure = on_failure;
    cfg.engine.stall_ms = 200;
    cfg.fault.kind = kind;
    cfg.fault.thread = 1;
    cfg.fault.after_ms = 100;
    cfg.fault.stall_for_ms = 600;
    cfg
}
