//! What the C shim costs per call: `rte_softrss` through one shim call per tuple against one
//! shim call per batch of 32, in the same run. Needs no EAL and no root.
//!
//! `cargo run --release -p dpdk-sys --features dpdk --example shim_cost`

use std::hint::black_box;
use std::time::Instant;

use dpdk_sys::rss;

const KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];
const BATCH: usize = 32;
const ROUNDS: usize = 200_000;

fn main() -> Result<(), dpdk_sys::Error> {
    let flat: Vec<u32> = (0..BATCH as u32)
        .flat_map(|i| {
            let x = i.wrapping_mul(0x9e37_79b9);
            rss::ipv4_tuple(x, !x, (x >> 7) as u16, (x >> 13) as u16)
        })
        .collect();
    let mut hashes = [0u32; BATCH];

    let start = Instant::now();
    for _ in 0..ROUNDS {
        for (t, h) in flat.chunks_exact(3).zip(hashes.iter_mut()) {
            *h = rss::softrss(black_box(t), &KEY)?;
        }
        black_box(&hashes);
    }
    let single = start.elapsed().as_secs_f64() * 1e9 / (ROUNDS * BATCH) as f64;

    let start = Instant::now();
    for _ in 0..ROUNDS {
        rss::softrss_bulk(black_box(&flat), 3, &KEY, &mut hashes)?;
        black_box(&hashes);
    }
    let bulk = start.elapsed().as_secs_f64() * 1e9 / (ROUNDS * BATCH) as f64;

    println!("rte_softrss, IPv4 4-tuple, ns per tuple (same run)");
    println!("  one shim call per tuple     {single:7.2}");
    println!("  one shim call per {BATCH} tuples {bulk:7.2}");
    println!("  ratio per-tuple / bulk      {:7.2}", single / bulk);
    Ok(())
}
