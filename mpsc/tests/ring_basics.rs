//! Single-threaded behaviour of the ring: capacity errors, partial bursts, FIFO, limits.

use flowsteer_mpsc::{max_capacity, ring, Consumer, Producer, MAX_CAPACITY};

/// Not Copy and not Clone, like a packet handle: the ring can only move it.
#[derive(Debug, PartialEq, Eq)]
struct Handle(usize);

fn ids(items: &[Handle]) -> Vec<usize> {
    items.iter().map(|handle| handle.0).collect()
}

fn handles(range: std::ops::Range<usize>) -> Vec<Handle> {
    range.map(Handle).collect()
}

#[test]
fn capacity_zero_is_an_error() {
    let err = ring::<Handle>(0).unwrap_err();
    assert_eq!(err.requested(), 0);
    assert_eq!(err.max(), max_capacity::<Handle>());
    assert_eq!(
        err.to_string(),
        format!(
            "ring capacity must be 1..={}, got 0",
            max_capacity::<Handle>()
        )
    );
}

#[test]
fn capacity_above_the_maximum_is_an_error() {
    for requested in [MAX_CAPACITY + 1, usize::MAX] {
        let err = ring::<u64>(requested).unwrap_err();
        assert_eq!(err.requested(), requested);
        assert_eq!(err.max(), MAX_CAPACITY);
    }
}

#[test]
fn huge_elements_lower_the_maximum_capacity() {
    type Huge = [u8; 1 << 34];
    let max = max_capacity::<Huge>();
    assert!(max < MAX_CAPACITY);
    assert!(max >= 1);
    assert_eq!(max_capacity::<u64>(), MAX_CAPACITY);
    assert_eq!(max_capacity::<()>(), MAX_CAPACITY);
}

#[test]
fn capacity_one_holds_one_element() {
    let (producer, mut consumer) = ring::<Handle>(1).unwrap();
    let mut burst = handles(0..3);
    assert_eq!(producer.enqueue_burst(&mut burst), 1);
    assert_eq!(ids(&burst), vec![1, 2]);
    let mut out = Vec::new();
    assert_eq!(consumer.dequeue_burst(&mut out, 8), 1);
    assert_eq!(ids(&out), vec![0]);
    assert_eq!(producer.enqueue_burst(&mut burst), 1);
    assert_eq!(ids(&burst), vec![2]);
}

#[test]
fn fill_to_capacity_then_partial_burst_keeps_the_rest_in_order() {
    let (producer, mut consumer) = ring::<Handle>(8).unwrap();

    let mut first = handles(0..5);
    assert_eq!(producer.enqueue_burst(&mut first), 5);
    assert!(first.is_empty());

    let mut second = handles(5..11);
    assert_eq!(producer.enqueue_burst(&mut second), 3);
    assert_eq!(ids(&second), vec![8, 9, 10]);
    assert_eq!(producer.len(), 8);

    // A full ring rejects the whole burst and leaves it untouched.
    assert_eq!(producer.enqueue_burst(&mut second), 0);
    assert_eq!(ids(&second), vec![8, 9, 10]);

    let mut out = Vec::new();
    assert_eq!(consumer.dequeue_burst(&mut out, 100), 8);
    assert_eq!(ids(&out), (0..8).collect::<Vec<_>>());

    // The leftovers are retryable as they are.
    assert_eq!(producer.enqueue_burst(&mut second), 3);
    assert!(second.is_empty());
    out.clear();
    assert_eq!(consumer.dequeue_burst(&mut out, 100), 3);
    assert_eq!(ids(&out), vec![8, 9, 10]);
}

#[test]
fn empty_burst_enqueues_nothing() {
    let (producer, consumer) = ring::<Handle>(4).unwrap();
    let mut nothing: Vec<Handle> = Vec::new();
    assert_eq!(producer.enqueue_burst(&mut nothing), 0);
    assert!(consumer.is_empty());
}

#[test]
fn fifo_across_many_wraparounds() {
    let (producer, mut consumer) = ring::<Handle>(7).unwrap();
    let mut next_in = 0;
    let mut next_out = 0;
    let mut out = Vec::new();
    // Burst sizes coprime with the capacity walk the head and tail across every slot.
    for round in 0..500 {
        let mut burst = handles(next_in..next_in + 1 + round % 5);
        let offered = burst.len();
        let accepted = producer.enqueue_burst(&mut burst);
        assert_eq!(accepted + burst.len(), offered);
        next_in += accepted;

        out.clear();
        let taken = consumer.dequeue_burst(&mut out, 1 + round % 3);
        for item in &out {
            assert_eq!(item.0, next_out);
            next_out += 1;
        }
        assert_eq!(taken, out.len());
        assert_eq!(consumer.len(), next_in - next_out);
    }
    out.clear();
    consumer.dequeue_burst(&mut out, usize::MAX);
    for item in &out {
        assert_eq!(item.0, next_out);
        next_out += 1;
    }
    assert_eq!(next_out, next_in);
    assert!(next_in > 7 * 50, "the ring wrapped many times");
}

#[test]
fn dequeue_takes_at_most_max_and_appends() {
    let (producer, mut consumer) = ring::<Handle>(16).unwrap();
    let mut burst = handles(0..10);
    assert_eq!(producer.enqueue_burst(&mut burst), 10);

    let mut out = vec![Handle(999)];
    assert_eq!(consumer.dequeue_burst(&mut out, 0), 0);
    assert_eq!(ids(&out), vec![999]);

    assert_eq!(consumer.dequeue_burst(&mut out, 3), 3);
    assert_eq!(ids(&out), vec![999, 0, 1, 2]);
    assert_eq!(consumer.len(), 7);

    assert_eq!(consumer.dequeue_burst(&mut out, 100), 7);
    assert_eq!(ids(&out), vec![999, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);

    assert_eq!(consumer.dequeue_burst(&mut out, 100), 0);
    assert_eq!(out.len(), 11);
}

#[test]
fn both_ends_report_the_same_state() {
    let (producer, mut consumer) = ring::<Handle>(5).unwrap();
    let second_producer = producer.clone();
    assert_eq!(producer.capacity(), 5);
    assert_eq!(consumer.capacity(), 5);
    assert!(producer.is_empty() && consumer.is_empty());

    let mut burst = handles(0..2);
    second_producer.enqueue_burst(&mut burst);
    assert_eq!(producer.len(), 2);
    assert_eq!(consumer.len(), 2);
    assert!(!producer.is_empty() && !consumer.is_empty());

    let mut out = Vec::new();
    consumer.dequeue_burst(&mut out, 1);
    assert_eq!(second_producer.len(), 1);

    let debug = format!("{producer:?} {consumer:?}");
    assert!(
        debug.contains("capacity: 5") && debug.contains("len: 1"),
        "{debug}"
    );
}

#[test]
fn capacity_need_not_be_a_power_of_two() {
    // The cells are rounded up to a power of two; the capacity is not.
    for capacity in [1, 3, 5, 7, 100, 1000] {
        let (producer, mut consumer) = ring::<Handle>(capacity).unwrap();
        let mut burst = handles(0..capacity + 3);
        assert_eq!(producer.enqueue_burst(&mut burst), capacity);
        assert_eq!(producer.len(), capacity);
        assert_eq!(burst.len(), 3);
        let mut out = Vec::new();
        assert_eq!(consumer.dequeue_burst(&mut out, usize::MAX), capacity);
        assert_eq!(ids(&out), (0..capacity).collect::<Vec<_>>());
    }
}

#[test]
fn max_capacity_is_a_power_of_two_that_fits() {
    type Huge = [u8; 1 << 34];
    let max = max_capacity::<Huge>();
    assert!(max.is_power_of_two());
    assert!(max.checked_mul(1 << 34).unwrap() <= isize::MAX as usize);
    assert!((max * 2)
        .checked_mul(1 << 34)
        .is_none_or(|b| b > isize::MAX as usize));
}

#[test]
fn handles_have_the_promised_auto_traits() {
    fn clone_send_sync<P: Clone + Send + Sync>() {}
    fn send<C: Send>() {}
    // An element that is Send but neither Sync nor Clone, like a packet handle.
    struct PacketHandle(#[allow(dead_code)] std::cell::Cell<u32>);
    clone_send_sync::<Producer<PacketHandle>>();
    send::<Consumer<PacketHandle>>();
}
