//! Helpers shared by the integration tests: a seeded generator and an element that counts drops.

#![allow(dead_code)] // each test binary uses a different subset

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// xorshift64*: reproducible burst sizes without a dependency.
pub struct SeededRng(u64);

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        // xorshift has a fixed point at 0.
        SeededRng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough value in `low..=high`.
    pub fn in_range(&mut self, low: usize, high: usize) -> usize {
        low + (self.next_u64() % (high - low + 1) as u64) as usize
    }
}

/// Drop counts per element id, so "exactly once" is checked per element, not only in total.
#[derive(Debug)]
pub struct DropLedger {
    drops: Vec<AtomicUsize>,
}

impl DropLedger {
    pub fn new(elements: usize) -> Arc<Self> {
        Arc::new(DropLedger {
            drops: (0..elements).map(|_| AtomicUsize::new(0)).collect(),
        })
    }

    pub fn drops_of(&self, id: usize) -> usize {
        self.drops[id].load(Ordering::SeqCst)
    }

    pub fn total_drops(&self) -> usize {
        self.drops.iter().map(|d| d.load(Ordering::SeqCst)).sum()
    }

    pub fn assert_each_dropped_once(&self) {
        for (id, count) in self.drops.iter().enumerate() {
            assert_eq!(count.load(Ordering::SeqCst), 1, "element {id} drop count");
        }
    }
}

/// A non-Copy, non-Clone element that records its own drop in a ledger.
#[derive(Debug)]
pub struct Counted {
    pub id: usize,
    ledger: Arc<DropLedger>,
}

impl Counted {
    pub fn new(id: usize, ledger: &Arc<DropLedger>) -> Self {
        Counted {
            id,
            ledger: Arc::clone(ledger),
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.ledger.drops[self.id].fetch_add(1, Ordering::SeqCst);
    }
}
