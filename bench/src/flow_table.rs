//! `flowtable`: `lookup_bulk` of 32 IPv4 5-tuple keys, hit and miss, at 64 Ki and 1 Mi rules,
//! with 1 and 2 reader threads, with and without a writer thread inserting and deleting rules.
//!
//! flowsteer's table runs, the DashMap-backed baseline table (behind the same [`FlowTable`]
//! trait, [`competitors::DashMapTable`]), papaya's lock-free map (the Rust ecosystem's
//! concurrent map with lock-free reads, one key per probe), and with `--features dpdk` DPDK's rte_hash
//! (`RW_CONCURRENCY_LF`, `rte_hash_lookup_bulk_data`) twice: `rte_hash48` with the 40 bytes of
//! [`FlowKey::words`] padded to 48 (the length of DPDK's l3fwd IPv6 key, for which rte_hash has
//! a vector compare) as its key, one table for both address families as flowsteer's, and
//! `rte_hash16` with a 16-byte IPv4 key (addresses, ports, protocol), the form DPDK's l3fwd
//! keys its IPv4 exact-match table with. flowsteer's table stores IPv4 keys in 16 bytes too.
//!
//! What one operation is: one key of a 32-key burst, including the key's hash (the table's own:
//! `hash_lookup_bulk` for the flowsteer tables, rte_hash's CRC32 inside `lookup_bulk`). The keys
//! are read in a shuffled order from a precomputed array, so a 1 Mi table is probed at random
//! places, as traffic of many flows would. At `1Mi` the array is a random 256 Ki of the rules
//! (the flows active at once among more installed ones; each reused once per pass); at
//! `1Mi-all` it is every rule once, in random order (all of the table's memory in every pass,
//! so this point leans hardest on the caches: see the `memory` experiment).
//!
//! The writer inserts a fresh exact rule and deletes the oldest of the 4096 it keeps alive, at
//! 100 000 inserts and 100 000 deletes per second, paced once a millisecond. Its keys are
//! disjoint from the looked-up ones, so a hit stays a hit; the measured rate is what readers
//! pay for sharing the table with a writer. The rate the writer achieved is printed (on a
//! 2-core machine with 2 readers it competes with them for a core).
//!
//! All implementations of one point run on tables built side by side, their repetitions
//! interleaved (one of each per round), so their ratio is taken over the same seconds, not
//! across runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use flowtable::{new_table, BucketTable, FlowKey, FlowTable, Lookup, Proto, ThreadId};

use crate::competitors;
use crate::measure::{parallel_rep, repeat_interleaved, SplitMix64, Summary, REPS};
use crate::table::{num, speed_ratio, Align, Table};
use crate::Options;

/// Keys per `lookup_bulk`.
pub const BURST: usize = 32;
/// A table size measured: rules installed before the readers start, and how many of them the
/// lookup sequences cover.
struct Size {
    rules: usize,
    sample: usize,
    name: &'static str,
}

const SIZES: [Size; 3] = [
    Size {
        rules: 64 * 1024,
        sample: 64 * 1024,
        name: "64Ki",
    },
    Size {
        rules: 1024 * 1024,
        sample: 256 * 1024,
        name: "1Mi",
    },
    Size {
        rules: 1024 * 1024,
        sample: 1024 * 1024,
        name: "1Mi-all",
    },
];
/// Inserts (and as many deletes) per second of the writer thread.
pub const WRITER_RULES_PER_SEC: u64 = 100_000;
/// Rules the writer keeps alive: it deletes the rule it inserted this many inserts ago.
pub const CHURN_WINDOW: usize = 4096;
/// Distinct keys the writer cycles through (each deleted long before it is inserted again).
pub const CHURN_KEYS: usize = 64 * 1024;

/// The keys of one table size: rules, lookup sequences and the writer's keys, disjoint sets.
pub struct Keys {
    /// The installed rules, owner `i % 2` for rule `i`.
    pub rules: Vec<FlowKey>,
    /// A shuffled sample of `rules` (length a multiple of [`BURST`]).
    pub hits: Vec<FlowKey>,
    /// Keys no rule matches (same length as `hits`).
    pub misses: Vec<FlowKey>,
    /// The writer's keys.
    pub churn: Vec<FlowKey>,
}

/// Server-side key of client `index` in address space `net` (10 = rules, 11 = writer, 12 =
/// misses): the local side is the server 198.18.0.1:8000/8001, the remote a client at
/// `net.x.y.z` (the index spread over 24 bits) with a random port.
fn key(net: u8, index: u32, rng: &mut SplitMix64) -> FlowKey {
    let [_, a, b, c] = index.to_be_bytes();
    let remote_port = 1024 + (rng.next_u64() % 64_000) as u16;
    FlowKey::from_v4_bytes(
        Proto::Tcp,
        [198, 18, 0, 1],
        8000 + (index % 2) as u16,
        [net, a, b, c],
        remote_port,
    )
}

/// Owner of rule `index`: the two stack threads alternate.
pub fn owner_of(index: usize) -> ThreadId {
    (index % 2) as ThreadId
}

impl Keys {
    /// Builds the keys of a table of `rules` entries (`rules < 2^24`), deterministically, with
    /// lookup sequences of `sample` keys (at most `rules`, rounded down to whole bursts, at
    /// least one): a random sample of the rules in random order, each at most once, and as many
    /// miss keys.
    pub fn new(rules: usize, sample: usize) -> Keys {
        let mut rng = SplitMix64::new(0x5eed_0000 + rules as u64);
        let rule_keys: Vec<FlowKey> = (0..rules as u32).map(|i| key(10, i, &mut rng)).collect();
        let sample = (rules.min(sample) / BURST).max(1) * BURST;
        let mut order: Vec<usize> = (0..rules).collect();
        rng.shuffle(&mut order);
        let hits: Vec<FlowKey> = order
            .iter()
            .cycle()
            .take(sample)
            .map(|&i| rule_keys[i])
            .collect();
        let misses = (0..sample as u32).map(|i| key(12, i, &mut rng)).collect();
        let churn = (0..CHURN_KEYS as u32)
            .map(|i| key(11, i, &mut rng))
            .collect();
        Keys {
            rules: rule_keys,
            hits,
            misses,
            churn,
        }
    }

    /// The lookup sequence of the hit or the miss points.
    pub fn sequence(&self, hit: bool) -> &[FlowKey] {
        if hit {
            &self.hits
        } else {
            &self.misses
        }
    }
}

/// Per-reader scratch, allocated before the timed loop.
pub struct Scratch {
    hashes: [u64; BURST],
    results: [Lookup; BURST],
    /// For competitors that return one word per key.
    #[cfg(feature = "dpdk")]
    pub data: [usize; BURST],
}

impl Scratch {
    /// Zeroed scratch for one reader.
    pub fn new() -> Self {
        Scratch {
            hashes: [0; BURST],
            results: [Lookup::Miss; BURST],
            #[cfg(feature = "dpdk")]
            data: [0; BURST],
        }
    }
}

/// A table under test, as the readers and the writer see it.
pub trait Contender: Sync {
    /// Name in the tables.
    fn name(&self) -> String;
    /// Looks up the burst of [`BURST`] keys at `start` of the hit or miss sequence; returns how
    /// many were found, with owners checked by [`Contender::verify`] rather than here.
    fn lookup_burst(&self, hit: bool, start: usize, scratch: &mut Scratch) -> usize;
    /// Checks every hit key is found with its owner and every miss key is not; the error says
    /// which key failed.
    fn verify(&self, keys: &Keys) -> Result<(), String>;
    /// The writer's view; called once per point that has a writer, by the writer thread.
    fn with_writer(&self, f: &mut dyn FnMut(&mut dyn ChurnWriter));
}

/// The writer side of a table under test: inserts and deletes the writer's keys.
pub trait ChurnWriter {
    /// Inserts writer key `index % CHURN_KEYS`; false when the table refused it.
    fn insert(&mut self, index: usize) -> bool;
    /// Deletes writer key `index % CHURN_KEYS`; false when it was not there.
    fn remove(&mut self, index: usize) -> bool;
    /// Called once per pacing tick (deferred reclamation); returns failures to count.
    fn tick(&mut self) -> u64 {
        0
    }
    /// Called when the writer stops and no reader runs any more; returns failures to count.
    fn finish(&mut self) -> u64 {
        0
    }
}

/// A table behind flowsteer's [`FlowTable`] trait: flowsteer's own or the DashMap baseline.
struct Ours<'k> {
    table: Box<dyn FlowTable>,
    keys: &'k Keys,
}

impl<'k> Ours<'k> {
    /// Room for the rules, the writer's window and a burst.
    fn capacity(keys: &Keys) -> usize {
        keys.rules.len() + CHURN_WINDOW + BURST
    }

    /// The tables of the experiment, in the order of their rows: the DashMap baseline, then
    /// flowsteer's.
    fn all(keys: &'k Keys) -> Result<Vec<Self>, String> {
        let capacity = Self::capacity(keys);
        [
            Box::new(competitors::DashMapTable::with_capacity(capacity)) as Box<dyn FlowTable>,
            new_table(capacity),
        ]
        .into_iter()
        .map(|table| Self::build(table, keys))
        .collect()
    }

    /// `table`, holding `keys.rules`.
    fn build(table: Box<dyn FlowTable>, keys: &'k Keys) -> Result<Self, String> {
        for (i, k) in keys.rules.iter().enumerate() {
            table
                .insert(*k, owner_of(i))
                .map_err(|e| format!("{}: installing rule {i}: {e}", table.name()))?;
        }
        Ok(Ours { table, keys })
    }
}

impl Contender for Ours<'_> {
    fn name(&self) -> String {
        self.table.name().to_string()
    }

    #[inline]
    fn lookup_burst(&self, hit: bool, start: usize, scratch: &mut Scratch) -> usize {
        let keys = &self.keys.sequence(hit)[start..start + BURST];
        // Hashed by the table, as rte_hash_lookup_bulk hashes inside.
        self.table
            .hash_lookup_bulk(keys, &mut scratch.hashes, &mut scratch.results);
        scratch
            .results
            .iter()
            .filter(|r| matches!(r, Lookup::Exact(_)))
            .count()
    }

    fn verify(&self, keys: &Keys) -> Result<(), String> {
        for (i, k) in keys.rules.iter().enumerate() {
            if self.table.lookup(k) != Lookup::Exact(owner_of(i)) {
                return Err(format!(
                    "{}: rule {i} ({k}) not found with its owner",
                    self.name()
                ));
            }
        }
        if let Some(k) = keys
            .misses
            .iter()
            .find(|k| self.table.lookup(k) != Lookup::Miss)
        {
            return Err(format!("{}: miss key {k} found", self.name()));
        }
        Ok(())
    }

    fn with_writer(&self, f: &mut dyn FnMut(&mut dyn ChurnWriter)) {
        let mut writer = OursWriter {
            table: &*self.table,
            keys: &self.keys.churn,
        };
        f(&mut writer);
    }
}

struct OursWriter<'a> {
    table: &'a dyn FlowTable,
    keys: &'a [FlowKey],
}

impl ChurnWriter for OursWriter<'_> {
    fn insert(&mut self, index: usize) -> bool {
        self.table
            .insert(self.keys[index % self.keys.len()], owner_of(index))
            .is_ok()
    }

    fn remove(&mut self, index: usize) -> bool {
        self.table
            .remove(&self.keys[index % self.keys.len()])
            .is_some()
    }
}

/// What the writer did over one point.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriterReport {
    /// Inserts per second achieved (deletes run at the same pace).
    pub inserts_per_sec: f64,
    /// Inserts the table refused plus deletes that found nothing (0 when correct).
    pub failures: u64,
}

/// The writer loop: paced inserts and deletes until `stop`, then deletes what it left.
pub fn run_writer(writer: &mut dyn ChurnWriter, stop: &AtomicBool) -> WriterReport {
    let start = Instant::now();
    let mut next = 0usize;
    let mut failures = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let target = (start.elapsed().as_secs_f64() * WRITER_RULES_PER_SEC as f64) as usize;
        while next < target {
            if next >= CHURN_WINDOW && !writer.remove(next - CHURN_WINDOW) {
                failures += 1;
            }
            if !writer.insert(next) {
                failures += 1;
            }
            next += 1;
        }
        failures += writer.tick();
        thread::sleep(Duration::from_millis(1));
    }
    let elapsed = start.elapsed().as_secs_f64();
    for index in next.saturating_sub(CHURN_WINDOW)..next {
        if !writer.remove(index) {
            failures += 1;
        }
    }
    failures += writer.finish();
    WriterReport {
        inserts_per_sec: next as f64 / elapsed.max(1e-9),
        failures,
    }
}

/// One measured point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Point {
    size: usize,
    hit: bool,
    readers: usize,
    writer: bool,
}

/// One repetition of `contender` at `point`: the readers' rate, and the report of the writer
/// that ran beside them (started before them, stopped after them).
fn measure_rep(
    contender: &dyn Contender,
    keys: &Keys,
    point: Point,
    rep_time: Duration,
) -> (f64, Option<WriterReport>) {
    let stop = AtomicBool::new(false);
    let len = keys.sequence(point.hit).len();
    thread::scope(|s| {
        let writer = point.writer.then(|| {
            let stop = &stop;
            s.spawn(move || {
                let mut report = WriterReport::default();
                contender.with_writer(&mut |w| report = run_writer(w, stop));
                report
            })
        });
        let rate = parallel_rep(point.readers, rep_time, |reader| {
            let mut scratch = Scratch::new();
            // Readers start half a sequence apart so they do not walk in lockstep.
            let mut pos = (reader * len / 2) / BURST * BURST % len;
            move || {
                let found = contender.lookup_burst(point.hit, pos, &mut scratch);
                std::hint::black_box(found);
                pos += BURST;
                if pos + BURST > len {
                    pos = 0;
                }
                BURST as u64
            }
        });
        stop.store(true, Ordering::Relaxed);
        let report = writer.map(|h| match h.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        });
        (rate, report)
    })
}

/// Measures every contender at `point`, their repetitions interleaved
/// ([`repeat_interleaved`]): per contender the median reader rate and the writer's reports
/// summed (failures) and averaged (rate) over the repetitions.
fn measure(
    contenders: &[&dyn Contender],
    keys: &Keys,
    point: Point,
    rep_time: Duration,
) -> Vec<(Option<Summary>, Option<WriterReport>)> {
    let mut writers: Vec<Vec<WriterReport>> = vec![Vec::new(); contenders.len()];
    let summaries = repeat_interleaved(contenders.len(), point.readers, |i| {
        let (rate, report) = measure_rep(contenders[i], keys, point, rep_time);
        writers[i].extend(report);
        rate
    });
    summaries
        .into_iter()
        .zip(writers)
        .map(|(summary, reports)| {
            let report = (!reports.is_empty()).then(|| WriterReport {
                inserts_per_sec: reports.iter().map(|r| r.inserts_per_sec).sum::<f64>()
                    / reports.len() as f64,
                failures: reports.iter().map(|r| r.failures).sum(),
            });
            (summary, report)
        })
        .collect()
}

/// One short point (hits, 2 readers, the writer) for the DPDK contender's tests; returns the
/// writer's failures.
#[cfg(all(test, feature = "dpdk"))]
pub fn measure_for_test(contender: &dyn Contender, keys: &Keys) -> u64 {
    let point = Point {
        size: keys.rules.len(),
        hit: true,
        readers: 2,
        writer: true,
    };
    let (summary, writer) = measure(&[contender], keys, point, Duration::from_millis(20))[0];
    assert!(summary.is_some_and(|s| s.ops_per_sec > 0.0));
    writer.map_or(u64::MAX, |w| w.failures)
}

/// The table whose ratio against the others is printed: flowsteer's, the engine's only one.
pub fn ours_name() -> &'static str {
    BucketTable::NAME
}

/// Runs the experiment and prints its table.
pub fn run(opts: &Options) -> Result<(), String> {
    let rep_time = Duration::from_secs_f64(opts.seconds / (REPS + 1) as f64);
    let ours = ours_name();
    let mut table = Table::new(
        "flowtable: bulk lookup of 32 IPv4 5-tuple keys, hash included (hash_lookup_bulk; rte_hash_lookup_bulk_data), median of 5 repetitions, the tables' interleaved",
        &[
            ("rules", Align::Left),
            ("lookup", Align::Left),
            ("readers", Align::Right),
            ("writer", Align::Left),
            ("table", Align::Left),
            ("ns/key", Align::Right),
            ("Mkeys/s", Align::Right),
            ("spread%", Align::Right),
            ("writer ins/s", Align::Right),
            (&format!("{ours}/this"), Align::Right),
        ],
    );
    table.describe(format!(
        "{:.2} s per point; ns/key = one reader thread's time per key; Mkeys/s = all readers together",
        opts.seconds
    ));
    table.describe(format!(
        "writer: {WRITER_RULES_PER_SEC} inserts/s + as many deletes/s of other keys, {CHURN_WINDOW} alive; \
         ratio = this row's ns/key / {ours}'s, >1 = {ours} faster"
    ));
    table.describe(
        "a flowsteer miss also checks the listen rules: no port here has one, so its per-port filter ends the miss; rte_hash has only exact keys",
    );
    table.describe(
        "rte_hash48: 48-byte keys (IPv4 and IPv6 in one table, as flowsteer's; padded as l3fwd's IPv6 key); rte_hash16: 16-byte IPv4-only keys (l3fwd's IPv4 form)",
    );
    table.describe(format!(
        "readers and writer unpinned on {} cores",
        thread::available_parallelism().map_or(1, |n| n.get())
    ));

    let dpdk = competitors::dpdk_ready();
    let mut checks = Vec::new();
    table.describe(
        "1Mi: lookups over a random 256 Ki of the rules; 1Mi-all: over every rule once per pass (misses: as many keys)",
    );
    for Size {
        rules: size,
        sample,
        name: size_name,
    } in SIZES
    {
        let keys = Keys::new(size, sample);
        let mut contenders: Vec<Box<dyn Contender + '_>> = Vec::new();
        for ours in Ours::all(&keys)? {
            contenders.push(Box::new(ours));
        }
        contenders.push(Box::new(competitors::PapayaContender::build(&keys)));
        if dpdk.is_ok() {
            match competitors::rte_hash_contenders(&keys) {
                Ok(c) => contenders.extend(c),
                Err(e) => checks.push(format!("rte_hash at {size_name}: did not run: {e}")),
            }
        }
        for c in &contenders {
            c.verify(&keys)?;
        }
        checks.push(format!(
            "{size_name}: every contender found all {} rules with their owners and none of {} miss keys",
            keys.rules.len(),
            keys.misses.len()
        ));
        for hit in [true, false] {
            for writer in [false, true] {
                for readers in [1, 2] {
                    let point = Point {
                        size,
                        hit,
                        readers,
                        writer,
                    };
                    let views: Vec<&dyn Contender> =
                        contenders.iter().map(|c| c.as_ref()).collect();
                    let results: Vec<(String, Option<Summary>, Option<WriterReport>)> =
                        measure(&views, &keys, point, rep_time)
                            .into_iter()
                            .zip(&contenders)
                            .map(|((s, w), c)| (c.name(), s, w))
                            .collect();
                    let ours_ns = results
                        .iter()
                        .find(|(name, ..)| name == ours)
                        .and_then(|(_, s, _)| s.map(|s| s.ns_per_op()));
                    for (name, summary, writer_report) in results {
                        let Some(s) = summary else {
                            checks.push(format!("{name}: no valid repetition at {point:?}"));
                            continue;
                        };
                        if let Some(w) = writer_report.filter(|w| w.failures > 0) {
                            checks.push(format!(
                                "{name} {size_name} {} {readers} reader(s): writer saw {} failed \
                                 inserts/deletes/frees",
                                if hit { "hit" } else { "miss" },
                                w.failures
                            ));
                        }
                        table.row(vec![
                            size_name.to_string(),
                            if hit { "hit" } else { "miss" }.to_string(),
                            readers.to_string(),
                            if writer { "yes" } else { "no" }.to_string(),
                            name.clone(),
                            num(s.ns_per_op(), 2),
                            num(s.mops(), 1),
                            num(s.spread_pct(), 0),
                            writer_report
                                .map_or("-".to_string(), |w| format!("{:.0}", w.inserts_per_sec)),
                            match ours_ns {
                                Some(_) if name == ours => "-".to_string(),
                                Some(o) => speed_ratio(o, s.ns_per_op()),
                                None => "n/a".to_string(),
                            },
                        ]);
                    }
                }
            }
        }
    }
    if let Err(why) = &dpdk {
        table.note(format!("rte_hash: did not run: {why}"));
    }
    if let Some(memory) = crate::competitors::dpdk_memory() {
        table.note(format!(
            "memory: rte_hash on {memory}; bucketized's bucket heads and key blocks on \
             transparent huge pages when the kernel grants them ({})",
            if flowtable::huge_page_fallbacks() == 0 {
                "no refusal counted"
            } else {
                "some were refused"
            }
        ));
    }
    for c in checks {
        table.note(c);
    }
    table.print();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn key_sets_are_disjoint_and_sequences_whole_bursts() {
        let keys = Keys::new(3000, 3000);
        let rules: HashSet<FlowKey> = keys.rules.iter().copied().collect();
        assert_eq!(rules.len(), 3000, "rule keys repeat");
        assert!(keys.hits.iter().all(|k| rules.contains(k)));
        assert!(keys.misses.iter().all(|k| !rules.contains(k)));
        assert!(keys.churn.iter().all(|k| !rules.contains(k)));
        assert!(keys.churn.iter().all(|k| !keys.misses.contains(k)));
        assert_eq!(keys.hits.len() % BURST, 0);
        assert_eq!(keys.hits.len(), keys.misses.len());
    }

    /// Records what the writer loop does, to check its window discipline.
    #[derive(Default)]
    struct Recorder {
        alive: HashSet<usize>,
        inserts: usize,
        bad: usize,
    }

    impl ChurnWriter for Recorder {
        fn insert(&mut self, index: usize) -> bool {
            self.inserts += 1;
            let fresh = self.alive.insert(index % CHURN_KEYS);
            self.bad += usize::from(!fresh || self.alive.len() > CHURN_WINDOW);
            fresh
        }

        fn remove(&mut self, index: usize) -> bool {
            let was = self.alive.remove(&(index % CHURN_KEYS));
            self.bad += usize::from(!was);
            was
        }
    }

    #[test]
    fn writer_keeps_its_window_and_cleans_up() {
        let stop = AtomicBool::new(false);
        let mut recorder = Recorder::default();
        let report = thread::scope(|s| {
            let handle = s.spawn(|| run_writer(&mut recorder, &stop));
            thread::sleep(Duration::from_millis(100));
            stop.store(true, Ordering::Relaxed);
            handle.join().unwrap()
        });
        assert_eq!(report.failures, 0);
        assert_eq!(recorder.bad, 0);
        assert!(recorder.alive.is_empty(), "the writer left rules behind");
        assert!(
            recorder.inserts > CHURN_WINDOW,
            "{} inserts",
            recorder.inserts
        );
        assert!(report.inserts_per_sec > 0.0);
    }

    #[test]
    fn every_table_verifies_and_measures_with_a_writer() {
        let keys = Keys::new(2048, 2048);
        let tables = Ours::all(&keys).unwrap();
        let names: Vec<String> = tables.iter().map(|t| t.name()).collect();
        assert_eq!(names, ["dashmap", ours_name()]);
        for ours in tables {
            let name = ours.name();
            ours.verify(&keys).unwrap();
            let point = Point {
                size: 2048,
                hit: true,
                readers: 2,
                writer: true,
            };
            let (summary, writer) = measure(&[&ours], &keys, point, Duration::from_millis(10))[0];
            assert!(summary.unwrap().ops_per_sec > 0.0, "{name}");
            assert_eq!(writer.unwrap().failures, 0, "{name}");
            // The writer removed what it inserted: the table holds the rules again.
            assert_eq!(ours.table.exact_len(), 2048, "{name}");
            let found = ours.lookup_burst(true, 0, &mut Scratch::new());
            assert_eq!(found, BURST);
            assert_eq!(ours.lookup_burst(false, 0, &mut Scratch::new()), 0);
        }
    }
}
