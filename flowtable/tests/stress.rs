//! Stress of the flow table under concurrent inserters, removers, owner removal and bulk readers.
//!
//! Owners encode their key (`owner_code(i, generation)`), so a reader detects a torn or misplaced
//! owner; pinned keys stay in the table throughout and must always be found with their owner; keys
//! of the never-inserted range must never be found (no false hit). The table is sized so that the
//! writers keep it near its capacity, where the bucketized table relocates entries.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;

use flowtable::{new_table, FlowKey, FlowTable, Lookup, Proto, ThreadId};

const PINNED: u32 = 4_000;
const PER_WRITER: u32 = 2_000;
const WRITERS: u32 = 2;
const NEVER: u32 = 2_000;
const CHURN_BATCH: u32 = 200;
const ROUNDS: u32 = 30;
const BURST: usize = 32;
/// Owner removal uses owners above every owner code (codes are below 0xF000).
const CHURN_OWNER: ThreadId = 0xF00D;

fn key(i: u32) -> FlowKey {
    FlowKey::from_v4_bytes(
        Proto::Tcp,
        [198, 18, 0, (i % 3) as u8],
        8000 + (i % 5) as u16,
        (0x0a00_0000 | i).to_be_bytes(),
        (i % 50_000) as u16 + 1024,
    )
}

/// The owner key `i` has in `generation` (0 or 1): a function of the key, below 0xF000.
fn owner_code(i: u32, generation: u32) -> ThreadId {
    ((i.wrapping_mul(0x9E37_79B9) ^ generation.wrapping_mul(0x85EB_CA6B)) % 0xF000) as ThreadId
}

fn writer_range(writer: u32) -> std::ops::Range<u32> {
    let start = PINNED + writer * PER_WRITER;
    start..start + PER_WRITER
}

fn never_range() -> std::ops::Range<u32> {
    let start = PINNED + WRITERS * PER_WRITER;
    start..start + NEVER
}

fn churn_range() -> std::ops::Range<u32> {
    let start = never_range().end;
    start..start + CHURN_BATCH
}

fn writer(table: &dyn FlowTable, writer: u32, start: &Barrier) {
    start.wait();
    for round in 0..ROUNDS {
        let generation = round % 2;
        for i in writer_range(writer) {
            let previous = table.insert(key(i), owner_code(i, generation)).unwrap();
            assert!(
                previous.is_none() || previous == Some(owner_code(i, 1 - generation)),
                "key {i}: replaced {previous:?}"
            );
        }
        for i in writer_range(writer).filter(|i| (i + round) % 3 != 0) {
            assert_eq!(
                table.remove(&key(i)),
                Some(owner_code(i, generation)),
                "key {i} round {round}"
            );
        }
    }
}

fn churner(table: &dyn FlowTable, start: &Barrier) {
    start.wait();
    for _ in 0..ROUNDS {
        for i in churn_range() {
            assert_eq!(table.insert(key(i), CHURN_OWNER), Ok(None));
        }
        assert_eq!(table.remove_owner(CHURN_OWNER), CHURN_BATCH as usize);
    }
}

fn reader(table: &dyn FlowTable, done: &AtomicBool, start: &Barrier, lookups: &AtomicU64) {
    let total = churn_range().end;
    let mut indices = [0u32; BURST];
    let mut keys = [key(0); BURST];
    let mut hashes = [0u64; BURST];
    let mut out = [Lookup::Miss; BURST];
    let mut cursor = 0u32;
    let mut count = 0u64;
    start.wait();
    loop {
        let finishing = done.load(Ordering::Acquire);
        for _ in 0..total.div_ceil(BURST as u32) {
            for slot in 0..BURST {
                indices[slot] = cursor;
                keys[slot] = key(cursor);
                hashes[slot] = keys[slot].hash();
                cursor = (cursor + 1_009) % total;
            }
            // Both bulk paths, in turn: the caller's hashes, and the table's own.
            if count.is_multiple_of(2 * BURST as u64) {
                table.lookup_bulk(&keys, &hashes, &mut out);
            } else {
                table.hash_lookup_bulk(&keys, &mut hashes, &mut out);
            }
            for slot in 0..BURST {
                let i = indices[slot];
                match out[slot] {
                    Lookup::Exact(owner) if i < PINNED => {
                        assert_eq!(owner, owner_code(i, 0), "pinned key {i}: torn owner")
                    }
                    Lookup::Exact(owner) if never_range().contains(&i) => {
                        panic!("key {i} was never inserted, found under {owner}")
                    }
                    Lookup::Exact(owner) if churn_range().contains(&i) => {
                        assert_eq!(owner, CHURN_OWNER, "churn key {i}")
                    }
                    Lookup::Exact(owner) => assert!(
                        owner == owner_code(i, 0) || owner == owner_code(i, 1),
                        "key {i}: owner {owner} is not one of its owners"
                    ),
                    Lookup::Miss => assert!(i >= PINNED, "pinned key {i} went missing"),
                    other => panic!("key {i}: no listen rule exists, got {other:?}"),
                }
            }
            count += BURST as u64;
        }
        if finishing {
            break;
        }
    }
    lookups.fetch_add(count, Ordering::Relaxed);
}

#[test]
fn table_under_concurrent_writers_and_readers() {
    // Everything that can be present at once fits exactly: the table runs full.
    let capacity = (PINNED + WRITERS * PER_WRITER + CHURN_BATCH) as usize;
    let table = new_table(capacity);
    for i in 0..PINNED {
        assert_eq!(table.insert(key(i), owner_code(i, 0)), Ok(None));
    }
    let table = table.as_ref();
    let readers = 2;
    let start = Barrier::new(WRITERS as usize + 1 + readers);
    let done = AtomicBool::new(false);
    let lookups = AtomicU64::new(0);
    std::thread::scope(|scope| {
        let reader_handles: Vec<_> = (0..readers)
            .map(|_| scope.spawn(|| reader(table, &done, &start, &lookups)))
            .collect();
        let mut writer_handles: Vec<_> = (0..WRITERS)
            .map(|w| {
                let start = &start;
                scope.spawn(move || writer(table, w, start))
            })
            .collect();
        writer_handles.push(scope.spawn(|| churner(table, &start)));
        for handle in writer_handles {
            handle.join().expect("writer panicked");
        }
        done.store(true, Ordering::Release);
        for handle in reader_handles {
            handle.join().expect("reader panicked");
        }
    });
    let last = ROUNDS - 1;
    let mut expected_len = PINNED as usize;
    for w in 0..WRITERS {
        for i in writer_range(w) {
            let expected = if !(i + last).is_multiple_of(3) {
                Lookup::Miss
            } else {
                expected_len += 1;
                Lookup::Exact(owner_code(i, last % 2))
            };
            assert_eq!(table.lookup(&key(i)), expected, "key {i}");
        }
    }
    for i in 0..PINNED {
        assert_eq!(table.lookup(&key(i)), Lookup::Exact(owner_code(i, 0)));
    }
    assert_eq!(table.exact_len(), expected_len);
    assert!(lookups.load(Ordering::Relaxed) >= readers as u64 * u64::from(churn_range().end));
}

/// A connection's end races a new connection on the same 5-tuple: thread A ends its connection
/// (an owner-checked remove) while thread B installs the rule of a new incarnation. Whichever
/// comes first, B's rule must survive: A deletes only its own rule.
#[test]
fn owner_checked_remove_races_takeover() {
    const OLD: ThreadId = 1;
    const NEW: ThreadId = 2;
    const KEYS: u32 = 2_000;
    const RACE_ROUNDS: u32 = 20;
    let table = new_table(4 * KEYS as usize);
    let table = &*table;
    let start = Barrier::new(2);
    let (mut old_won, mut new_won) = (0u64, 0u64);
    for round in 0..RACE_ROUNDS {
        let keys = (round * KEYS)..(round + 1) * KEYS;
        for i in keys.clone() {
            assert_eq!(table.insert(key(i), OLD), Ok(None));
        }
        let (removed, replaced) = std::thread::scope(|s| {
            let ender = s.spawn(|| {
                start.wait();
                keys.clone()
                    .filter(|&i| table.remove_owned(&key(i), OLD))
                    .count()
            });
            let taker = s.spawn(|| {
                start.wait();
                keys.clone()
                    .filter(|&i| table.insert(key(i), NEW) == Ok(Some(OLD)))
                    .count()
            });
            (ender.join().unwrap(), taker.join().unwrap())
        });
        for i in keys.clone() {
            assert_eq!(table.lookup(&key(i)), Lookup::Exact(NEW), "key {i}");
            assert!(!table.remove_owned(&key(i), OLD), "key {i}");
        }
        // Every key was either removed by its old owner first or taken over first.
        assert_eq!(removed + replaced, KEYS as usize);
        old_won += removed as u64;
        new_won += replaced as u64;
        assert_eq!(table.exact_len(), KEYS as usize);
        for i in keys {
            assert!(table.remove_owned(&key(i), NEW), "key {i}");
        }
        assert_eq!(table.exact_len(), 0);
    }
    eprintln!("old owner removed first {old_won} times, takeover first {new_won}");
}
