//! A fixed, timer-free lookup workload for instruction counting: `hash_lookup_bulk`s bursts
//! of 32 keys on a bucketized table of 64 Ki rules (the keys of the `flowtable` benchmark: a
//! server 198.18.0.1:8000/8001 and clients spread over 10.0.0.0/8 with random ports), first hits,
//! then misses. Each phase is its own non-inlined function, so an instruction counter can report
//! them apart:
//!
//! ```text
//! cargo build --release -p flowtable --example lookup_count
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/lookup.cg \
//!     --toggle-collect='lookup_count::hit_phase' --toggle-collect='lookup_count::miss_phase' \
//!     target/release/examples/lookup_count
//! callgrind_annotate --inclusive=yes /tmp/lookup.cg | grep _phase
//! ```
//!
//! Arguments: `[rules] [bursts per phase]`, default 65536 and 4096. Pass `listen` as a third
//! argument to install one any-address listen rule on each server port first, so that the misses
//! are new connections to a listened port (the engine's usual miss).

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use flowtable::{BucketTable, FlowKey, FlowTable, ListenKey, Lookup, Proto};

const BURST: usize = 32;

struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn client_key(net: u8, index: u32, rng: &mut SplitMix64) -> FlowKey {
    let [_, a, b, c] = index.to_be_bytes();
    FlowKey::from_v4_bytes(
        Proto::Tcp,
        [198, 18, 0, 1],
        8000 + (index % 2) as u16,
        [net, a, b, c],
        1024 + (rng.next_u64() % 64_000) as u16,
    )
}

/// Looks up every burst of `keys` once, hashed by the table as the engine's are
/// (`hash_lookup_bulk`); returns the number of results `counted` accepts, so the work cannot be
/// optimized away.
#[inline(always)]
fn run_bursts(table: &BucketTable, keys: &[FlowKey], counted: fn(&Lookup) -> bool) -> usize {
    let mut hashes = [0u64; BURST];
    let mut out = [Lookup::Miss; BURST];
    let mut found = 0;
    for burst in keys.chunks_exact(BURST) {
        table.hash_lookup_bulk(burst, &mut hashes, &mut out);
        found += out.iter().filter(|r| counted(r)).count();
    }
    found
}

#[inline(never)]
fn hit_phase(table: &BucketTable, keys: &[FlowKey]) -> usize {
    // Distinct bodies: identical functions would be merged into one symbol.
    run_bursts(table, black_box(keys), |r| matches!(r, Lookup::Exact(_)))
}

#[inline(never)]
fn miss_phase(table: &BucketTable, keys: &[FlowKey]) -> usize {
    run_bursts(table, black_box(keys), |r| r.owner().is_some())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |index: usize, default: usize| -> usize {
        args.get(index)
            .map(|text| {
                text.parse()
                    .unwrap_or_else(|_| panic!("argument {index}: not a number: {text}"))
            })
            .unwrap_or(default)
    };
    let rules = number(0, 64 * 1024).max(1);
    let bursts = number(1, 4096).max(1);
    let listen = args.get(2).is_some_and(|a| a == "listen");

    let mut rng = SplitMix64(0x5eed);
    let table = BucketTable::with_capacity(rules);
    let rule_keys: Vec<FlowKey> = (0..rules as u32)
        .map(|i| client_key(10, i, &mut rng))
        .collect();
    for (i, key) in rule_keys.iter().enumerate() {
        table
            .insert(*key, (i % 2) as u16)
            .unwrap_or_else(|e| panic!("rule {i}: {e}"));
    }
    if listen {
        for port in [8000, 8001] {
            table
                .listen_add(ListenKey::any_ip(Proto::Tcp, port), 0)
                .expect("listen rule");
            table
                .listen_add(
                    ListenKey::on_ip(Proto::Tcp, Ipv4Addr::new(198, 18, 0, 2).into(), port),
                    1,
                )
                .expect("listen rule");
        }
    }
    let hits: Vec<FlowKey> = (0..bursts * BURST)
        .map(|_| rule_keys[(rng.next_u64() % rules as u64) as usize])
        .collect();
    let misses: Vec<FlowKey> = (0..(bursts * BURST) as u32)
        .map(|i| client_key(12, i, &mut rng))
        .collect();

    let started = Instant::now();
    let found_hits = hit_phase(&table, &hits);
    let hit_time = started.elapsed();
    let started = Instant::now();
    let found_misses = miss_phase(&table, &misses);
    let miss_time = started.elapsed();
    let expected_misses = if listen { misses.len() } else { 0 };
    assert_eq!(found_hits, hits.len(), "every hit key must be found");
    assert_eq!(found_misses, expected_misses, "miss keys found");
    let per_key = |time: Duration, keys: usize| time.as_secs_f64() * 1e9 / keys as f64;
    println!(
        "{} of {rules} rules ({:.1}%) sit in their primary bucket",
        table.rules_in_primary(),
        table.rules_in_primary() as f64 * 100.0 / rules as f64
    );
    println!(
        "{rules} rules, {} hit keys, {} miss keys{}: ok; {:.1} ns/hit, {:.1} ns/miss (wall time, \
         one thread; for instruction counts use the phases)",
        hits.len(),
        misses.len(),
        if listen { " (listened ports)" } else { "" },
        per_key(hit_time, hits.len()),
        per_key(miss_time, misses.len()),
    );
}
