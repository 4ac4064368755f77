//! The shared ring and its two kinds of handle: [`Producer`] (many) and [`Consumer`] (one).
//!
//! Both handles hold an `Arc` of the same [`BurstRing`]; the ring and every element still in it are
//! dropped when the last handle goes, whichever side that is. Single-consumer is enforced by the
//! type system rather than by a runtime check: [`ring`] returns exactly one `Consumer`, which is
//! neither `Clone` nor `Sync`, and dequeuing needs `&mut Consumer`.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::mem::size_of;
// Under loom the handles' reference count is modelled too, so that the ring's `Drop` is
// ordered after the last use through any handle.
#[cfg(loom)]
use loom::sync::Arc;
#[cfg(not(loom))]
use std::sync::Arc;

use crate::burst_ring::{BurstRing, HeadCache};
use crate::CapacityError;

/// Largest capacity [`ring`] accepts.
///
/// Far above the configuration's `swq.size` limit (2^20); the bound exists so that index
/// arithmetic can never overflow and a typo such as `usize::MAX` is an error instead of an
/// allocation abort.
pub const MAX_CAPACITY: usize = 1 << 30;

/// Largest capacity [`ring`] accepts for elements of type `T`: the lesser of [`MAX_CAPACITY`]
/// and the largest power of two of cells whose total size still fits in `isize::MAX` bytes (the
/// limit of one Rust allocation).
pub fn max_capacity<T>() -> usize {
    // Cells are `MaybeUninit<T>` in one allocation of `capacity` rounded up to a power of two
    // (run headers are a second allocation of 16 bytes per cell, far below the limit for any
    // capacity up to MAX_CAPACITY). So the answer is the largest power of two whose cells still
    // fit.
    let fit = isize::MAX as usize / size_of::<T>().max(1);
    if fit >= MAX_CAPACITY {
        MAX_CAPACITY
    } else {
        1 << (usize::BITS - 1 - fit.leading_zeros())
    }
}

/// Builds one bounded ring holding at most `capacity` elements.
///
/// `T` is an owned packet handle: elements are moved in and out, never copied or cloned. Returns
/// the producer side (clone it for every producing thread) and the one consumer side.
///
/// Errors with [`CapacityError`] when `capacity` is 0 or above [`max_capacity`]`::<T>()`.
/// Allocates the whole ring up front; nothing allocates afterwards.
///
/// ```
/// use flowsteer_mpsc::ring;
///
/// let (producer, mut consumer) = ring::<Box<u32>>(4)?;
/// let mut burst: Vec<Box<u32>> = (0..6).map(Box::new).collect();
/// assert_eq!(producer.enqueue_burst(&mut burst), 4);
/// // What did not fit stays with the caller, in order, to be freed and counted.
/// assert_eq!(burst, vec![Box::new(4), Box::new(5)]);
///
/// let mut received = Vec::new();
/// assert_eq!(consumer.dequeue_burst(&mut received, 32), 4);
/// assert_eq!(received, (0..4).map(Box::new).collect::<Vec<_>>());
/// # Ok::<(), flowsteer_mpsc::CapacityError>(())
/// ```
pub fn ring<T: Send>(capacity: usize) -> Result<(Producer<T>, Consumer<T>), CapacityError> {
    let max = max_capacity::<T>();
    if capacity == 0 || capacity > max {
        return Err(CapacityError::new(capacity, max));
    }
    let shared = Arc::new(BurstRing::new(capacity));
    let producer = Producer {
        ring: Arc::clone(&shared),
        head_cache: HeadCache::new(),
    };
    let consumer = Consumer {
        ring: shared,
        not_sync: PhantomData,
    };
    Ok((producer, consumer))
}

/// The enqueue side of a ring: `Clone + Send + Sync`, any number of producer threads.
///
/// Concurrency: any number of threads may call [`enqueue_burst`](Producer::enqueue_burst) on
/// clones of (or references to) the same producer at once.
///
/// Each handle carries a private copy of the consumer's position, so that
/// enqueueing does not read the cache line the consumer writes; give every producing thread its
/// own clone. Sharing one handle by reference between threads stays correct (the copy is an
/// atomic lower bound) but makes those threads write one line when they refresh it.
pub struct Producer<T> {
    ring: Arc<BurstRing<T>>,
    head_cache: HeadCache,
}

impl<T> Clone for Producer<T> {
    // Derive would demand `T: Clone`; only the handle is cloned, never an element.
    fn clone(&self) -> Self {
        Producer {
            ring: Arc::clone(&self.ring),
            head_cache: self.head_cache.clone(),
        }
    }
}

impl<T: Send> Producer<T> {
    /// Moves the longest prefix of `items` that fits into the ring, removing it from `items`, and
    /// returns its length. What did not fit stays in `items`, in its original order, for the
    /// caller to free and count (or to retry later). Never blocks, never waits for room.
    ///
    /// The accepted part is claimed at once and occupies consecutive positions; it is shorter
    /// than `items` only if the ring was full at some instant during the call. Elements of one
    /// producer keep their FIFO order: a producer's accepted elements are dequeued in the order
    /// it enqueued them.
    ///
    /// Cost: one CAS on the shared tail per burst (retried only when
    /// another producer reserved in between), a `memcpy` of the accepted elements, one release
    /// store to publish them and a `memmove` of the rest of `items`; the consumer's position is
    /// read only when this handle's copy of it shows too little room. Never waits for another
    /// producer, even one preempted in the middle of its own burst.
    pub fn enqueue_burst(&self, items: &mut Vec<T>) -> usize {
        self.ring.enqueue_burst(items, &self.head_cache)
    }

    /// Elements in the ring at some instant during the call; never above
    /// [`capacity`](Producer::capacity). Stale as soon as it returns while others run.
    ///
    /// The count includes slots a producer has reserved but not yet published.
    ///
    /// Cost: reads both shared indices (three sequentially consistent loads, retried while both
    /// move): a statistic, not something to call per packet.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether the ring was empty at some instant during the call.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// The fixed number of elements the ring can hold.
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.ring.capacity())
            .field("len", &self.ring.len())
            .finish()
    }
}

/// The dequeue side of a ring: `Send`, not `Clone`, not `Sync`; exactly one exists per ring.
///
/// ```compile_fail
/// use flowsteer_mpsc::ring;
/// let (_producer, consumer) = ring::<u32>(8).unwrap();
/// let _second = consumer.clone(); // a second consumer cannot exist
/// ```
///
/// ```compile_fail
/// use flowsteer_mpsc::Consumer;
/// fn shared_between_threads<S: Sync>() {}
/// shared_between_threads::<Consumer<u32>>();
/// ```
pub struct Consumer<T> {
    ring: Arc<BurstRing<T>>,
    // `Cell` is Send but not Sync: it keeps `&Consumer` on one thread, so that consumer-side
    // state (a local head index) may later be cached in plain, non-atomic fields without
    // changing the handle's contract.
    not_sync: PhantomData<Cell<()>>,
}

impl<T: Send> Consumer<T> {
    /// Appends up to `max` elements to `out`, oldest first, and returns how many. Returns 0 when
    /// the ring is empty or `max` is 0. Elements of each producer come out in the order that
    /// producer enqueued them.
    ///
    /// Cost: one acquire load of a run header per producer burst taken, one `memcpy` per run,
    /// one release store of the head per call; no atomic read-modify-write. `out` grows only if
    /// its spare capacity is below the number taken; keep one `Vec` with capacity `max` per
    /// thread to make this allocation-free.
    ///
    /// Never waits: when a producer has claimed the next slot but not yet published it (it was
    /// preempted mid-enqueue), the call returns what was published before that slot (possibly
    /// nothing), and the rest comes out on a later call once the producer publishes. If `out`
    /// cannot grow (allocation failure) the call stops early instead of panicking; the elements
    /// not taken stay in the ring.
    pub fn dequeue_burst(&mut self, out: &mut Vec<T>, max: usize) -> usize {
        self.ring.dequeue_burst(out, max)
    }

    /// Elements in the ring at some instant during the call; never above
    /// [`capacity`](Consumer::capacity). Only grows while the consumer is not dequeuing.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether the ring was empty at some instant during the call.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// The fixed number of elements the ring can hold.
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.ring.capacity())
            .field("len", &self.ring.len())
            .finish()
    }
}
