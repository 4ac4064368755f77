//! Concurrent stress: writers churn their own disjoint key ranges while readers bulk-look-up every
//! range. Readers must never see a key under an owner that never owned it (a torn or misplaced
//! owner), and must always see the pinned keys that no writer ever touches.

use std::net::Ipv6Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;

use flowtable::{new_table, FlowKey, FlowTable, Lookup, Proto, ThreadId};

const PINNED_KEYS: u32 = 1_000;
const KEYS_PER_WRITER: u32 = 1_000;
const WRITERS: u32 = 2;
const READERS: usize = 2;
const WRITER_ROUNDS: u32 = 60;
const BURST: usize = 32;

/// Owners whose two bytes differ, so a value mixed from two owners could not pass for either.
const PINNED_OWNER: ThreadId = 0x0F0F;
const WRITER_OWNERS: [ThreadId; WRITERS as usize] = [0x5AA5, 0xA55A];

/// Key number `i` of the whole key space: pinned keys first, then each writer's range. Alternates
/// address families so both layouts are exercised.
fn key(i: u32) -> FlowKey {
    let remote_port = (i % 50_000) as u16 + 1024;
    if i.is_multiple_of(2) {
        FlowKey::from_v4_bytes(
            Proto::Tcp,
            [198, 18, 0, 1],
            8000,
            (0x0a00_0000 | i).to_be_bytes(),
            remote_port,
        )
    } else {
        let remote = Ipv6Addr::from(0x2001_0db8_0000_0000_0000_0000_0000_0000u128 | u128::from(i));
        FlowKey::v6(
            Proto::Udp,
            "2001:db8::1".parse().unwrap(),
            8000,
            remote,
            remote_port,
        )
    }
}

fn writer_range(writer: u32) -> std::ops::Range<u32> {
    let start = PINNED_KEYS + writer * KEYS_PER_WRITER;
    start..start + KEYS_PER_WRITER
}

/// The only owner key `i` ever has.
fn owner_of(i: u32) -> ThreadId {
    if i < PINNED_KEYS {
        PINNED_OWNER
    } else {
        WRITER_OWNERS[((i - PINNED_KEYS) / KEYS_PER_WRITER) as usize]
    }
}

fn writer(table: &dyn FlowTable, writer: u32, start: &Barrier) {
    let owner = WRITER_OWNERS[writer as usize];
    let range = writer_range(writer);
    start.wait();
    for round in 0..WRITER_ROUNDS {
        for i in range.clone() {
            let previous = table
                .insert(key(i), owner)
                .expect("capacity covers every key");
            assert!(
                previous.is_none() || previous == Some(owner),
                "key {i}: {previous:?}"
            );
        }
        // Re-insert a stride of keys: replacing must keep the owner and report it.
        for i in range.clone().step_by(7) {
            assert_eq!(table.insert(key(i), owner), Ok(Some(owner)));
        }
        // Remove a different half each round, so readers catch keys both present and absent.
        for i in range.clone().filter(|i| (i + round) % 2 == 0) {
            assert_eq!(table.remove(&key(i)), Some(owner), "key {i} round {round}");
        }
    }
}

fn reader(table: &dyn FlowTable, writers_done: &AtomicBool, start: &Barrier, lookups: &AtomicU64) {
    let total = PINNED_KEYS + WRITERS * KEYS_PER_WRITER;
    let mut indices = [0u32; BURST];
    let mut keys = [key(0); BURST];
    let mut hashes = [0u64; BURST];
    let mut out = [Lookup::Miss; BURST];
    // An odd stride coprime with `total` walks every key, interleaving pinned and writer ranges.
    let mut cursor = 0u32;
    let mut done_lookups = 0u64;
    start.wait();
    loop {
        // Read the flag before the pass, so at least one full pass runs after the writers finish.
        let finishing = writers_done.load(Ordering::Acquire);
        for _ in 0..total.div_ceil(BURST as u32) {
            for slot in 0..BURST {
                indices[slot] = cursor;
                keys[slot] = key(cursor);
                hashes[slot] = keys[slot].hash();
                cursor = (cursor + 997) % total;
            }
            table.lookup_bulk(&keys, &hashes, &mut out);
            for slot in 0..BURST {
                let i = indices[slot];
                match out[slot] {
                    Lookup::Exact(owner) => {
                        assert_eq!(owner, owner_of(i), "key {i} seen under a foreign owner")
                    }
                    Lookup::Miss => assert!(i >= PINNED_KEYS, "pinned key {i} went missing"),
                    other => panic!("key {i}: no listen rule exists, got {other:?}"),
                }
            }
            done_lookups += BURST as u64;
        }
        if finishing {
            break;
        }
    }
    lookups.fetch_add(done_lookups, Ordering::Relaxed);
}

#[test]
fn readers_never_see_a_foreign_owner_or_lose_a_pinned_key() {
    let table = new_table(4 * 1024);
    for i in 0..PINNED_KEYS {
        assert_eq!(table.insert(key(i), PINNED_OWNER), Ok(None));
    }
    let table = table.as_ref();
    let start = Barrier::new(WRITERS as usize + READERS);
    let writers_done = AtomicBool::new(false);
    let lookups = AtomicU64::new(0);

    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..READERS)
            .map(|_| scope.spawn(|| reader(table, &writers_done, &start, &lookups)))
            .collect();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let start = &start;
                scope.spawn(move || writer(table, w, start))
            })
            .collect();
        for handle in writers {
            handle.join().expect("writer thread panicked");
        }
        writers_done.store(true, Ordering::Release);
        for handle in readers {
            handle.join().expect("reader thread panicked");
        }
    });

    // Each writer ends a round with the keys of one parity present: half its range.
    let expected = PINNED_KEYS + WRITERS * KEYS_PER_WRITER / 2;
    assert_eq!(table.exact_len(), expected as usize);
    for w in 0..WRITERS {
        let last_round = WRITER_ROUNDS - 1;
        for i in writer_range(w) {
            let expected = if (i + last_round).is_multiple_of(2) {
                Lookup::Miss
            } else {
                Lookup::Exact(WRITER_OWNERS[w as usize])
            };
            assert_eq!(table.lookup(&key(i)), expected, "key {i}");
        }
    }
    assert!(
        lookups.load(Ordering::Relaxed)
            >= READERS as u64 * u64::from(PINNED_KEYS + WRITERS * KEYS_PER_WRITER)
    );
}
