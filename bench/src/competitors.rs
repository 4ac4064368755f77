//! The competitors that are not flowsteer's own: the DashMap-backed flow table and the crossbeam
//! `ArrayQueue` ring (the engine's selectable baselines until the product kept one table and one
//! ring), papaya's map (all three always built), and DPDK's (rte_hash, rte_ring, rte_softrss,
//! rte_mempool), behind the `dpdk` cargo feature.
//!
//! Without the feature every DPDK entry point returns why the competitor did not run, so that the
//! experiments print it instead of silently leaving rows out. With it, the EAL is initialized
//! once, on first use, without PCI or shared configuration, on huge pages when the machine has
//! enough free (see `dpdk`); if that fails (no permission, no memory) the reason is returned and
//! the rest of the run goes on.

use std::ops::Range;
use std::time::Duration;

use crate::flow_table::{Contender, Keys};
use crate::pool::{self, Failure, Params, Pattern};
use crate::swq::Shape;

pub mod crossbeam;
mod dashmap;
#[cfg(feature = "dpdk")]
mod dpdk;
#[cfg(feature = "dpdk")]
mod mempool;
mod papaya;

pub use dashmap::DashMapTable;
pub use papaya::PapayaContender;

/// A hash under test over a range of the experiment's tuples: hashes each and folds them.
pub type TupleHasher<'a> = Box<dyn Fn(Range<usize>) -> u32 + Sync + 'a>;

/// Ok when the DPDK competitors can run (the EAL is up), else why not.
pub fn dpdk_ready() -> Result<(), String> {
    #[cfg(feature = "dpdk")]
    {
        dpdk::eal_init()
    }
    #[cfg(not(feature = "dpdk"))]
    {
        Err("built without --features dpdk".to_string())
    }
}

/// How the DPDK competitors' memory is backed, once the EAL is up.
pub fn dpdk_memory() -> Option<&'static str> {
    #[cfg(feature = "dpdk")]
    {
        dpdk::eal_memory()
    }
    #[cfg(not(feature = "dpdk"))]
    {
        None
    }
}

/// rte_hash (`RW_CONCURRENCY_LF`) holding `keys.rules`, as flow-table contenders: with the
/// 48-byte key of both address families (one table for both, as flowsteer's) and with a 16-byte
/// IPv4 key (an IPv4-only table).
pub fn rte_hash_contenders(keys: &Keys) -> Result<Vec<Box<dyn Contender + '_>>, String> {
    dpdk_ready()?;
    #[cfg(feature = "dpdk")]
    {
        Ok(vec![
            Box::new(dpdk::HashContender::<[u8; 48]>::build(keys)?),
            Box::new(dpdk::HashContender::<[u8; 16]>::build(keys)?),
        ])
    }
    #[cfg(not(feature = "dpdk"))]
    {
        let _ = keys;
        Err("built without --features dpdk".to_string())
    }
}

/// One repetition of the software-queue experiment on a fresh rte_ring (MP enqueue, SC dequeue).
pub fn rte_ring_rep(shape: Shape, duration: Duration) -> Result<f64, String> {
    dpdk_ready()?;
    #[cfg(feature = "dpdk")]
    {
        dpdk::ring_rep(shape, duration)
    }
    #[cfg(not(feature = "dpdk"))]
    {
        let _ = (shape, duration);
        Err("built without --features dpdk".to_string())
    }
}

/// `rte_softrss` and `rte_softrss_be` over `words` (DPDK's `rte_ipv4_tuple` layout) with `key`.
pub fn softrss_hashers<'a>(
    words: &'a [[u32; 3]],
    key: &'a [u8; 40],
) -> Result<Vec<(String, TupleHasher<'a>)>, String> {
    dpdk_ready()?;
    #[cfg(feature = "dpdk")]
    {
        Ok(dpdk::softrss_hashers(words, key))
    }
    #[cfg(not(feature = "dpdk"))]
    {
        let _ = (words, key);
        Err("built without --features dpdk".to_string())
    }
}

/// One repetition of the pool experiment on a fresh rte_mempool (an mbuf pool of `params`),
/// reached the way `contender` names.
pub fn mempool_rep(
    contender: pool::Contender,
    pattern: Pattern,
    burst: usize,
    params: Params,
    duration: Duration,
) -> Result<f64, Failure> {
    dpdk_ready().map_err(Failure::Setup)?;
    #[cfg(feature = "dpdk")]
    {
        mempool::rep(contender, pattern, burst, params, duration)
    }
    #[cfg(not(feature = "dpdk"))]
    {
        let _ = (contender, pattern, burst, params, duration);
        Err(Failure::Setup("built without --features dpdk".to_string()))
    }
}

/// The EAL lcore id of the calling thread; `None` for a thread the EAL did not create or register,
/// or without the DPDK competitors.
pub fn calling_lcore() -> Option<u32> {
    #[cfg(feature = "dpdk")]
    {
        dpdk_sys::eal::lcore_id()
    }
    #[cfg(not(feature = "dpdk"))]
    {
        None
    }
}

/// What one element of the pool experiment's rte_mempool holds, and where its memory is; `None`
/// without the DPDK competitors.
pub fn mempool_layout(params: Params) -> Option<String> {
    #[cfg(feature = "dpdk")]
    {
        dpdk_ready().ok()?;
        Some(mempool::layout(params))
    }
    #[cfg(not(feature = "dpdk"))]
    {
        let _ = params;
        None
    }
}
