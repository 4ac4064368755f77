//! Ring implementations a caller can choose from, and the capacity bounds each accepts.
//!
//! Selecting a kind is a construction-time decision (`[swq] ring` in the configuration); every
//! kind offers the same [`Producer`](crate::Producer) / [`Consumer`](crate::Consumer) contract and
//! differs only in cost and in how a burst is claimed.

use std::fmt;
use std::mem::{size_of, MaybeUninit};
use std::sync::atomic::AtomicUsize;

/// Largest capacity any kind accepts.
///
/// Far above the configuration's `swq.size` limit (2^20); the bound exists so that index
/// arithmetic (the crossbeam ring rounds `capacity + 1` up to a power of two) can never overflow
/// and a typo such as `usize::MAX` is an error instead of an allocation abort.
pub const MAX_CAPACITY: usize = 1 << 30;

/// Which ring implementation backs a [`ring`](crate::ring).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RingKind {
    /// This crate's burst ring: one CAS on the shared tail reserves a whole burst, one release
    /// store publishes it, and the consumer releases everything it took with one store.
    ///
    /// A burst is accepted in part only when the ring is full, and its accepted part occupies
    /// consecutive positions (it never interleaves with another producer's burst). A producer
    /// preempted mid-enqueue never stalls other producers; the consumer stops in front of its
    /// run until it publishes. See the crate documentation for costs.
    Burst,
    /// `crossbeam_queue::ArrayQueue` used with a single consumer.
    ///
    /// Claims slots one element at a time: one compare-and-swap on the shared tail per enqueued
    /// element, one on the head per dequeued element. A burst is therefore not atomic: it may be
    /// accepted in part and may interleave with other producers' bursts.
    Crossbeam,
}

impl RingKind {
    /// Every kind, so tests and benchmarks cover a new kind as soon as it is added.
    pub const ALL: [RingKind; 2] = [RingKind::Burst, RingKind::Crossbeam];

    /// Stable lowercase name, identical to the configuration value (`"burst"`, `"crossbeam"`).
    pub fn name(self) -> &'static str {
        match self {
            RingKind::Burst => "burst",
            RingKind::Crossbeam => "crossbeam",
        }
    }

    /// The kind whose [`name`](RingKind::name) is `name`, or `None`; case-sensitive, like the
    /// configuration values.
    pub fn from_name(name: &str) -> Option<RingKind> {
        RingKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Largest capacity this kind accepts for elements of type `T`.
    ///
    /// The lesser of [`MAX_CAPACITY`] and the number of slots whose total size still fits in
    /// `isize::MAX` bytes (the limit of one Rust allocation).
    pub fn max_capacity<T>(self) -> usize {
        match self {
            RingKind::Burst => {
                // Cells are `MaybeUninit<T>` in one allocation of `capacity` rounded up to a
                // power of two (run headers are a second allocation of 16 bytes per cell, far
                // below the limit for any capacity up to MAX_CAPACITY). So the answer is the
                // largest power of two whose cells still fit.
                let fit = isize::MAX as usize / size_of::<T>().max(1);
                if fit >= MAX_CAPACITY {
                    MAX_CAPACITY
                } else {
                    1 << (usize::BITS - 1 - fit.leading_zeros())
                }
            }
            RingKind::Crossbeam => {
                // Mirrors the layout of one ArrayQueue slot: a stamp word next to the value.
                let slot_bytes = size_of::<(AtomicUsize, MaybeUninit<T>)>().max(1);
                MAX_CAPACITY.min(isize::MAX as usize / slot_bytes)
            }
        }
    }
}

impl fmt::Display for RingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
