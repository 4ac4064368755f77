//! `dpdk-peers`: the engine's software balancing against DPDK's own two ways of passing each
//! flow's packets to one core, on the `listeners` profile (half the packets arrive on a queue
//! whose thread does not own their flow), in one process, one after the other:
//!
//! - **rte_distributor** ([`distributor`]): one distributor thread receives every queue, tags
//!   each mbuf with its flow and hands it to a worker (the stack thread) through
//!   `rte_distributor_process`; the workers ask for work and process what they get;
//! - **eventdev** ([`eventdev`]): each stack thread receives its queue, looks each packet's
//!   owner up as the engine does and enqueues the packet as an event to the owner's event queue
//!   of a software event device, then dequeues and processes its own events.
//!
//! Same frames, same work per packet: every design runs the traffic generator of the engine
//! (same configuration, flows, rules and frames, generated inline in the receive burst by the
//! thread that receives) and hands each packet to the engine's [`VerifyingSink`], which checks
//! the generator's stamp against the thread that processes it (`misdirected`) and frees it. The
//! peers' frames are mbufs ([`PacketPool::with_mbufs`]), as a DPDK application's are; the
//! engine's are the uveth pool's heap buffers (the table says so).
//!
//! Accounting as the engine's and the ltran baseline's: every received packet is processed or
//! dropped with a reason, `rx == processed + dropped` is checked per run, and after shutdown every
//! mbuf is back in its pool.
//!
//! Cycles: each peer's threads time their phases with the TSC, once per burst (a few cycles per
//! packet), so the table can say where a peer's time goes: for the distributor, its receive and
//! tagging against `rte_distributor_process`; for eventdev, the enqueue and dequeue calls against
//! the rest.

#[cfg(feature = "dpdk")]
mod bench;
#[cfg(feature = "dpdk")]
mod distributor;
#[cfg(feature = "dpdk")]
mod eventdev;
#[cfg(feature = "dpdk")]
mod frames;

use crate::Options;

/// Runs the comparison and prints its table.
pub fn run(opts: &Options) -> Result<(), String> {
    #[cfg(feature = "dpdk")]
    {
        bench::run(opts)
    }
    #[cfg(not(feature = "dpdk"))]
    {
        let _ = opts;
        Err(
            "dpdk-peers needs DPDK: cargo run --release -p flowsteer-bench --features dpdk -- \
             dpdk-peers (Debian/Ubuntu: apt-get install libdpdk-dev libclang-dev clang pkg-config)"
                .to_string(),
        )
    }
}
