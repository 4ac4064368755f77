//! Bounded multi-producer single-consumer (MPSC) packet rings with burst enqueue and dequeue.
//!
//! Every stack thread owns one ring: the consumer end, drained once per loop with
//! [`Consumer::dequeue_burst`]. Every other thread holds a [`Producer`] clone and, after its rx
//! burst and flow lookup, pushes each group of packets it does not own with one
//! [`Producer::enqueue_burst`]. Elements are owned packet handles, moved in and out, never copied.
//!
//! # Modes
//!
//! - Producers: multi-producer, "variable" bursts (DPDK `RTE_RING_QUEUE_VARIABLE`): a burst
//!   enqueues as many elements as fit and hands the rest back in the caller's `Vec`, never
//!   blocking and never waiting for room. A full ring is the caller's decision to drop and count.
//! - Consumer: single-consumer, enforced by types: one [`Consumer`] per ring, not `Clone`, not
//!   `Sync`, dequeue through `&mut self`.
//! - Ring: one CAS on the shared tail claims a whole burst and one release store into a per-run
//!   header publishes it, so that a producer preempted mid-burst never stalls the other producers
//!   (the design, and why DPDK's classic multi-producer mode does not have that property, is
//!   documented in `src/burst_ring.rs`). The crossbeam `ArrayQueue` baseline it is measured
//!   against (one CAS per element) lives in `flowsteer-bench` (`bench/src/competitors/crossbeam.rs`).
//!
//! # Costs
//!
//! | operation | cost |
//! |---|---|
//! | `enqueue_burst` of n | 1 CAS on the shared tail (retried under contention) + 1 release store; the consumer's head is read only when the handle's cached copy shows too little room |
//! | `dequeue_burst` of n | 1 acquire load per producer run taken + 1 release store of the head |
//! | element copies | one `memcpy` per run (two where it wraps) |
//! | `len` / `is_empty` | 3 sequentially consistent loads, retried (boundedly) while both ends move |
//! | `ring` | two allocations: `capacity` rounded up to a power of two cells, and as many 16-byte run headers |
//!
//! # Invariants
//!
//! - `0 <= len() <= capacity()` at every observation, from any thread.
//! - Every element a producer enqueued is either dequeued exactly once or dropped exactly once
//!   when the last handle of the ring is dropped; a rejected element is returned, never dropped.
//! - Per-producer FIFO: elements one producer enqueued come out in the order it enqueued them.
//!   Elements of different producers have no order guarantee beyond the ring's linearization.
//! - The accepted part of a burst is always a prefix of it; the remainder keeps its order.
//! - Progress: producers are lock-free and never wait for each other or for room. A producer
//!   preempted after claiming slots but before publishing them holds back the consumer at those
//!   slots until it runs again; the consumer returns at once with what precedes them and the
//!   other producers go on publishing behind them (the ring may fill, and they then drop),
//!   whereas an `rte_ring` multi-producer tail update makes the later producers spin.
//! - The ring lives as long as any handle. Enqueueing after the consumer is gone succeeds while
//!   room remains; those elements are dropped with the last producer.

#![deny(unsafe_op_in_unsafe_fn)]
// Safe code everywhere but the burst ring's cells, whose module opts in.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod burst_ring;
mod error;
mod ring;

pub use error::CapacityError;
pub use ring::{max_capacity, ring, Consumer, Producer, MAX_CAPACITY};
