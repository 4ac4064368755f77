//! The configuration of the engine suites' generator runs: `profile` under `balance` with
//! `threads` stack threads on `queues` queues, 256 flows, no metrics endpoint.

use flowsteer_config::{Balance, Config, Profile};

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
