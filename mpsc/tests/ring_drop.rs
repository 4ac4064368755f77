//! Element ownership: nothing is dropped twice, leaked, or dropped while a caller still owns it.

mod common;

use common::{Counted, DropLedger};
use flowsteer_mpsc::ring;

#[test]
fn dropping_a_ring_with_elements_drops_each_exactly_once() {
    let ledger = DropLedger::new(20);
    let (producer, mut consumer) = ring::<Counted>(12).unwrap();

    let mut burst: Vec<Counted> = (0..20).map(|id| Counted::new(id, &ledger)).collect();
    assert_eq!(producer.enqueue_burst(&mut burst), 12);
    // A partial burst moves elements, it never drops or duplicates them.
    assert_eq!(ledger.total_drops(), 0);
    assert_eq!(burst.len(), 8);

    let mut out = Vec::new();
    assert_eq!(consumer.dequeue_burst(&mut out, 5), 5);
    assert_eq!(ledger.total_drops(), 0);
    drop(out);
    assert_eq!(ledger.total_drops(), 5);

    drop(burst);
    assert_eq!(ledger.total_drops(), 13);

    drop(consumer);
    // The producer still holds the ring, so its 7 elements are alive.
    assert_eq!(ledger.total_drops(), 13);
    drop(producer);
    assert_eq!(ledger.total_drops(), 20);
    ledger.assert_each_dropped_once();
}

#[test]
fn the_last_handle_of_either_side_drops_the_elements() {
    let ledger = DropLedger::new(6);
    let (producer, consumer) = ring::<Counted>(8).unwrap();
    let clone = producer.clone();

    let mut burst: Vec<Counted> = (0..3).map(|id| Counted::new(id, &ledger)).collect();
    assert_eq!(clone.enqueue_burst(&mut burst), 3);
    drop(producer);
    drop(clone);
    assert_eq!(ledger.total_drops(), 0, "the consumer still owns the ring");
    drop(consumer);
    assert_eq!(ledger.total_drops(), 3);

    // Consumer gone first: enqueueing still works and the last producer drops the elements.
    let (producer, consumer) = ring::<Counted>(8).unwrap();
    drop(consumer);
    let mut burst: Vec<Counted> = (3..6).map(|id| Counted::new(id, &ledger)).collect();
    assert_eq!(producer.enqueue_burst(&mut burst), 3);
    assert_eq!(ledger.total_drops(), 3);
    drop(producer);
    ledger.assert_each_dropped_once();
}

#[test]
fn an_empty_ring_drops_nothing() {
    let ledger = DropLedger::new(4);
    let (producer, mut consumer) = ring::<Counted>(4).unwrap();
    let mut burst: Vec<Counted> = (0..4).map(|id| Counted::new(id, &ledger)).collect();
    assert_eq!(producer.enqueue_burst(&mut burst), 4);
    let mut out = Vec::new();
    assert_eq!(consumer.dequeue_burst(&mut out, 4), 4);
    drop(producer);
    drop(consumer);
    assert_eq!(ledger.total_drops(), 0);
    drop(out);
    assert_eq!(ledger.drops_of(3), 1);
    ledger.assert_each_dropped_once();
}
