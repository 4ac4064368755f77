//! Bulk lookups of 32 IPv4 keys in the flow table.
//!
//! `cargo bench -p flowtable --bench lookup` (add `-- 1Mi` to filter). Groups
//! `lookup_bulk32/<entries>/<hit|miss|hit+writer>` (hashes computed before the timed loop) and
//! `hash_lookup_bulk32/<entries>/<hit|miss>` (the table hashes, as in the engine). The comparison
//! with the baselines (dashmap, papaya, rte_hash) is `flowsteer-bench flowtable`, where they run
//! side by side. The keys of each iteration come from a pool of 64 Ki distinct keys
//! walked in order, so a burst is not served from the cache lines of the previous one (at 1 Mi
//! entries the tables are far larger than the caches). `hit+writer` runs a thread that inserts
//! and removes 100 000 other rules per second meanwhile, as flow set-up and teardown do.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flowtable::{new_table, FlowKey, FlowTable, Lookup, Proto};

const BURST: usize = 32;
const POOL: usize = 1 << 16;
const WRITER_RULES_PER_SECOND: u64 = 100_000;

fn key(i: u32) -> FlowKey {
    // Scatter the index so consecutive keys share nothing but the local side.
    let mixed = i.wrapping_mul(0x9E37_79B9).rotate_left(7);
    FlowKey::from_v4_bytes(
        Proto::Tcp,
        [198, 18, 0, 1],
        8000 + (i % 4) as u16,
        mixed.to_be_bytes(),
        (i % 60_000) as u16 + 1024,
    )
}

/// A pool of keys in `range`, with hashes, in a scattered order.
fn pool(range: std::ops::Range<u32>) -> (Vec<FlowKey>, Vec<u64>) {
    let len = range.end - range.start;
    let keys: Vec<FlowKey> = (0..POOL as u32)
        .map(|n| key(range.start + n.wrapping_mul(2_654_435_761) % len))
        .collect();
    let hashes = keys.iter().map(FlowKey::hash).collect();
    (keys, hashes)
}

fn filled(entries: u32) -> Box<dyn FlowTable> {
    // Room for the writer's rules on top of the resident ones.
    let table = new_table(entries as usize + 4096);
    for i in 0..entries {
        table
            .insert(key(i), (i % 4) as u16)
            .expect("capacity covers the fill");
    }
    table
}

fn bench_walk(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    table: &dyn FlowTable,
    keys: &[FlowKey],
    hashes: &[u64],
) {
    let mut out = [Lookup::Miss; BURST];
    let mut cursor = 0;
    group.bench_function(BenchmarkId::from_parameter(table.name()), |b| {
        b.iter(|| {
            table.lookup_bulk(
                &keys[cursor..cursor + BURST],
                &hashes[cursor..cursor + BURST],
                &mut out,
            );
            cursor = (cursor + BURST) % POOL;
            std::hint::black_box(&out);
        })
    });
}

/// As [`bench_walk`], the table hashing each burst (`hash_lookup_bulk`).
fn bench_walk_hashing(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    table: &dyn FlowTable,
    keys: &[FlowKey],
) {
    let mut hashes = [0u64; BURST];
    let mut out = [Lookup::Miss; BURST];
    let mut cursor = 0;
    group.bench_function(BenchmarkId::from_parameter(table.name()), |b| {
        b.iter(|| {
            table.hash_lookup_bulk(&keys[cursor..cursor + BURST], &mut hashes, &mut out);
            cursor = (cursor + BURST) % POOL;
            std::hint::black_box(&out);
        })
    });
}

/// Inserts and removes rules of a range no reader asks for, at `WRITER_RULES_PER_SECOND`.
fn writer(table: &dyn FlowTable, base: u32, stop: &AtomicBool) {
    let started = Instant::now();
    let mut done = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let due = started.elapsed().as_micros() as u64 * WRITER_RULES_PER_SECOND / 1_000_000;
        if done >= due {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let i = base + (done / 2 % 2048) as u32;
        if done.is_multiple_of(2) {
            let _ = table.insert(key(i), 7);
        } else {
            table.remove(&key(i));
        }
        done += 1;
    }
}

fn lookup_bulk(c: &mut Criterion) {
    for (label, entries) in [("64Ki", 1u32 << 16), ("1Mi", 1u32 << 20)] {
        let (hit_keys, hit_hashes) = pool(0..entries);
        let (miss_keys, miss_hashes) = pool(entries + 10_000..entries + 10_000 + (POOL as u32));
        let table = filled(entries);
        for (case, keys, hashes) in [
            ("hit", &hit_keys, &hit_hashes),
            ("miss", &miss_keys, &miss_hashes),
        ] {
            let mut group = c.benchmark_group(format!("lookup_bulk32/{label}/{case}"));
            group.throughput(Throughput::Elements(BURST as u64));
            bench_walk(&mut group, table.as_ref(), keys, hashes);
            group.finish();
            let mut group = c.benchmark_group(format!("hash_lookup_bulk32/{label}/{case}"));
            group.throughput(Throughput::Elements(BURST as u64));
            bench_walk_hashing(&mut group, table.as_ref(), keys);
            group.finish();
        }
        let mut group = c.benchmark_group(format!("lookup_bulk32/{label}/hit+writer"));
        group.throughput(Throughput::Elements(BURST as u64));
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let table = table.as_ref();
            let stop = &stop;
            scope.spawn(move || writer(table, entries + 1_000_000, stop));
            bench_walk(&mut group, table, &hit_keys, &hit_hashes);
            stop.store(true, Ordering::Relaxed);
        });
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = lookup_bulk
}
criterion_main!(benches);
