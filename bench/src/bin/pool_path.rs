//! `pool-path`: the pool's per-buffer path on one thread, for counting instructions per buffer
//! with callgrind (repeatable where a timed run on shared cores is not):
//!
//! ```text
//! cargo build --release -p flowsteer-bench --bin pool-path
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured_rounds*' \
//!     target/release/pool-path <one|handoff> <shared|split> [rounds]
//! ```
//!
//! Each round allocates a burst of 32 (`PoolCache::alloc_bulk`), writes the first data byte of
//! each buffer and frees the burst (`free_bulk`): `one` frees into the cache that allocated,
//! `handoff` into a second cache, as the owner of a handed-off packet frees what another
//! thread's queue received (both caches on this thread: the instructions, not the transfer of
//! lines, are counted). `shared`: one pool every cache draws from; `split`: the engine's default
//! split (an L1 pool per queue for two queues and a shared pool), the allocating cache homed on
//! queue 0's pool and the freeing one on queue 1's. The engine's default `[pool]`. Instructions
//! per buffer = callgrind's total `Ir` / (rounds × 32). At the end every buffer must be back. The
//! wall time per buffer is printed too (with callgrind, meaningless).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use flowsteer_config::Config;
use flowsteer_nic::pool::{PacketPool, PktBuf, PoolCache, Tier};

const BURST: usize = 32;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(pattern), Some(pools)) = (args.first(), args.get(1)) else {
        eprintln!("usage: pool-path <one|handoff> <shared|split> [rounds]");
        return ExitCode::from(2);
    };
    let rounds: usize = match args.get(2).map(|r| r.parse()) {
        None => 100_000,
        Some(Ok(r)) => r,
        Some(Err(_)) => {
            eprintln!("pool-path: rounds must be a number, got {:?}", args[2]);
            return ExitCode::from(2);
        }
    };
    let config = Config::default();
    let (pool, homes) = match pools.as_str() {
        "shared" => (
            PacketPool::new(config.pool.buffers, config.pool.data_room),
            [Tier::Shared, Tier::Shared],
        ),
        "split" => (
            forwarder::pools::heap_pool(&config),
            [Tier::Queue(0), Tier::Queue(1)],
        ),
        other => {
            eprintln!("pool-path: pools must be shared or split, got {other:?}");
            return ExitCode::from(2);
        }
    };
    let pool: Arc<PacketPool> = match pool {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("pool-path: {e}");
            return ExitCode::from(1);
        }
    };
    let mut a = pool.cache_for(homes[0], config.pool.cache);
    let mut b = pool.cache_for(homes[1], config.pool.cache);
    let mut burst = Vec::with_capacity(BURST);
    let started = Instant::now();
    match pattern.as_str() {
        "one" => measured_rounds(&mut a, None, &mut burst, rounds),
        "handoff" => measured_rounds(&mut a, Some(&mut b), &mut burst, rounds),
        other => {
            eprintln!("pool-path: pattern must be one or handoff, got {other:?}");
            return ExitCode::from(2);
        }
    }
    let ns_per_buf = started.elapsed().as_nanos() as f64 / (rounds * BURST) as f64;
    drop((a, b));
    if pool.available() != pool.capacity() || pool.foreign_frees() != 0 {
        eprintln!(
            "pool-path: {} of {} buffers back, {} foreign frees",
            pool.available(),
            pool.capacity(),
            pool.foreign_frees()
        );
        return ExitCode::from(1);
    }
    println!(
        "{pattern} {pools}: {rounds} rounds of {BURST} buffers, {ns_per_buf:.2} ns per buffer"
    );
    ExitCode::SUCCESS
}

/// The measured part: `rounds` bursts allocated from `a`, touched and freed to `b` (or `a`).
#[inline(never)]
fn measured_rounds(
    a: &mut PoolCache,
    mut b: Option<&mut PoolCache>,
    burst: &mut Vec<PktBuf>,
    rounds: usize,
) {
    for round in 0..rounds {
        a.alloc_bulk(burst, BURST);
        for buf in burst.iter_mut() {
            buf.buffer_mut()[0] = round as u8;
        }
        match b.as_deref_mut() {
            Some(b) => b.free_bulk(burst),
            None => a.free_bulk(burst),
        }
    }
}
