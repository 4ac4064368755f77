//! `rte_distributor`: one distributor thread hands mbufs to worker threads by flow tag
//! (`mbuf->hash.usr`), so that no two packets of one tag are processed by two workers at the same
//! time. DPDK's central load-balancing design: the distributor sees every packet, the workers
//! ask for work.
//!
//! Split into one [`DistributorCore`] (process, returns, flush: one thread) and one
//! [`DistributorWorker`] per worker id (request, poll, return: one thread each), so that the
//! single-thread contracts of each side are the types' (`&mut self`, `Send`, not `Sync`).
//!
//! Algorithms ([`Algorithm`]): `Burst` (DPDK's default since 17.05) moves up to 8 mbufs per
//! hand-over through one cache line per worker, matches 15-bit tags against every worker's
//! in-flight and backlog tags with SIMD; `Single` (the original) moves one mbuf per hand-over
//! with 32-bit tags.
//!
//! Lifetime: DPDK 22.11 has no call that frees a distributor, so its memzone (one cache line
//! pair per possible worker, about 100 KiB) stays reserved for the process; names must be unique
//! among the process's distributors. The handles keep a pointer to it that stays valid for the
//! process, so they may outlive nothing and need no reference count.
//!
//! Cost (burst): the distributor touches each worker's hand-over line once per 8 packets; a
//! worker's request spins (with `rte_pause`) until the distributor has taken its previous
//! returns, and the distributor spins when a worker's backlog is full until that worker asks
//! again: the two sides wait on each other, which is its back-pressure (no packet is dropped).

use std::ffi::CString;
use std::ptr::NonNull;

use crate::{eal, ffi, Error};

/// Most mbufs one hand-over to a worker carries (`RTE_DIST_BURST_SIZE`).
pub const BURST: usize = 8;

/// `RTE_DISTRIB_MAX_WORKERS` of DPDK 22.11 (in its private header): the worker count must stay
/// below it.
const MAX_WORKERS: u32 = 64;

/// Which of DPDK's two distributor implementations (`enum rte_distributor_alg_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// `RTE_DIST_ALG_BURST`: up to [`BURST`] mbufs per hand-over, 15-bit tags.
    Burst,
    /// `RTE_DIST_ALG_SINGLE`: one mbuf per hand-over, 32-bit tags.
    Single,
}

impl Algorithm {
    fn raw(self) -> u32 {
        match self {
            Algorithm::Burst => ffi::RTE_DIST_ALG_BURST,
            Algorithm::Single => ffi::RTE_DIST_ALG_SINGLE,
        }
    }
}

/// Creates distributor `name` for `workers` workers (`rte_distributor_create`): the
/// distributor's handle and one handle per worker id, `0..workers`.
///
/// Fails before the EAL is up, on a name with a NUL byte or longer than DPDK's 31 bytes less
/// its prefix, on 0 workers or as many as `RTE_DISTRIB_MAX_WORKERS` (64), and with DPDK's
/// error (a name in use, no memory).
pub fn create(
    name: &str,
    workers: u32,
    algorithm: Algorithm,
) -> Result<(DistributorCore, Vec<DistributorWorker>), Error> {
    const OP: &str = "rte_distributor_create";
    eal::ensure(OP)?;
    if workers == 0 || workers >= MAX_WORKERS {
        return Err(Error::invalid(
            OP,
            format!("workers must be 1..{}, got {workers}", MAX_WORKERS),
        ));
    }
    // The memzone is named "DIST_" + name, at most RTE_MEMZONE_NAMESIZE - 1 bytes.
    if name.len() > 26 {
        return Err(Error::invalid(
            OP,
            format!("name {name:?} is longer than 26 bytes"),
        ));
    }
    let cname = CString::new(name)
        .map_err(|_| Error::invalid(OP, format!("name {name:?} contains a NUL byte")))?;
    // SAFETY: the EAL is initialised; cname outlives the call (DPDK copies the name); the
    // worker count is in DPDK's range, checked above.
    let raw = unsafe {
        ffi::rte_distributor_create(
            cname.as_ptr(),
            ffi::SOCKET_ID_ANY as u32,
            workers,
            algorithm.raw(),
        )
    };
    let ptr = NonNull::new(raw).ok_or_else(|| Error::last(OP))?;
    let handles = (0..workers)
        .map(|id| DistributorWorker {
            ptr,
            id,
            algorithm,
            requested: false,
        })
        .collect();
    Ok((DistributorCore { ptr, algorithm }, handles))
}

/// The distributor side: one thread, the only one calling process, returns and flush.
#[derive(Debug)]
pub struct DistributorCore {
    ptr: NonNull<ffi::rte_distributor>,
    algorithm: Algorithm,
}

// SAFETY: the distributor is shared memory made for a distributor thread and worker threads;
// this handle is the only one for the distributor side, and its methods take &mut self, so the
// single-thread contract of that side holds wherever the handle moves.
unsafe impl Send for DistributorCore {}

impl DistributorCore {
    /// The algorithm it was created with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Distributes `mbufs` to the workers that asked for work (`rte_distributor_process`) and
    /// returns how many leading ones it took: all of them, unless no worker is active (none has
    /// asked yet, or all have left with [`DistributorWorker::leave`]), in which case the rest
    /// stay the caller's. Blocks while a worker that a tag pins a packet to has a full backlog,
    /// until that worker asks again. An empty slice flushes partly filled hand-overs to the
    /// workers waiting for them.
    ///
    /// # Safety
    ///
    /// Each pointer is a valid mbuf the caller owns and gives up if taken (the distributor reads
    /// its `hash.usr` tag and passes it to a worker); no pointer is listed twice.
    pub unsafe fn process(&mut self, mbufs: &mut [*mut ffi::rte_mbuf]) -> usize {
        let n = u32::try_from(mbufs.len()).unwrap_or(u32::MAX);
        // SAFETY: the distributor side is this handle's (&mut self); the caller vouches for the
        // mbufs; DPDK reads at most n entries.
        let taken =
            unsafe { ffi::rte_distributor_process(self.ptr.as_ptr(), mbufs.as_mut_ptr(), n) };
        usize::try_from(taken).unwrap_or(0)
    }

    /// Takes up to `out.len()` mbufs the workers handed back (`rte_distributor_returned_pkts`)
    /// into the front of `out`; they are the caller's again. DPDK keeps the last 127 returns
    /// and overwrites older ones, so call it after every [`process`](Self::process) when the
    /// workers return mbufs.
    pub fn returned(&mut self, out: &mut [*mut ffi::rte_mbuf]) -> usize {
        let n = u32::try_from(out.len()).unwrap_or(u32::MAX);
        // SAFETY: distributor side only (&mut self); out has room for n pointers.
        let got =
            unsafe { ffi::rte_distributor_returned_pkts(self.ptr.as_ptr(), out.as_mut_ptr(), n) };
        usize::try_from(got).unwrap_or(0)
    }

    /// Hands every backlogged and partly filled burst to its worker and waits until the workers
    /// have taken them, then sends each an empty burst (`rte_distributor_flush`); returns how
    /// many packets were outstanding. Blocks until the workers ask for work: call it while they
    /// still run.
    pub fn flush(&mut self) -> usize {
        // SAFETY: distributor side only (&mut self).
        let n = unsafe { ffi::rte_distributor_flush(self.ptr.as_ptr()) };
        usize::try_from(n).unwrap_or(0)
    }
}

/// One worker id's side: one thread at a time, the only one asking for that id's work.
#[derive(Debug)]
pub struct DistributorWorker {
    ptr: NonNull<ffi::rte_distributor>,
    id: u32,
    algorithm: Algorithm,
    /// A request is out that [`poll`](Self::poll) has not answered yet.
    requested: bool,
}

// SAFETY: as DistributorCore: this handle is the only one for worker `id`, its methods take
// &mut self, so one thread at a time acts as that worker.
unsafe impl Send for DistributorWorker {}

impl DistributorWorker {
    /// The worker id (below the distributor's worker count).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Asks for work (`rte_distributor_request_pkt`), handing back `returning`
    /// (at most [`BURST`] mbufs, 1 with [`Algorithm::Single`]; pass none when the worker frees
    /// its packets itself). A request already out is not repeated: the call does nothing and
    /// returns false. It does not wait for the answer ([`poll`](Self::poll) does), but it spins
    /// until the distributor has taken the previous request: a worker must not ask again once
    /// the distributor has stopped calling [`DistributorCore::process`].
    ///
    /// # Safety
    ///
    /// Each pointer of `returning` is an mbuf this worker was given and gives up.
    pub unsafe fn request(&mut self, returning: &[*mut ffi::rte_mbuf]) -> bool {
        let limit = match self.algorithm {
            Algorithm::Burst => BURST,
            Algorithm::Single => 1,
        };
        if self.requested || returning.len() > limit {
            return false;
        }
        // SAFETY: worker `id` is this handle's (&mut self) and below the worker count; DPDK
        // copies at most `returning.len()` pointers (it does not write through the array).
        unsafe {
            ffi::rte_distributor_request_pkt(
                self.ptr.as_ptr(),
                self.id,
                returning.as_ptr().cast_mut(),
                returning.len() as u32,
            )
        };
        self.requested = true;
        true
    }

    /// The answer to the request out (`rte_distributor_poll_pkt`): `None` while the
    /// distributor has not answered (or no request is out), else the number of mbufs now in
    /// the front of `out`, which are this worker's; 0 is an empty burst (a flush). A new
    /// [`request`](Self::request) is needed after an answer.
    pub fn poll(&mut self, out: &mut [*mut ffi::rte_mbuf; BURST]) -> Option<usize> {
        if !self.requested {
            return None;
        }
        // SAFETY: worker `id` is this handle's; out has room for RTE_DIST_BURST_SIZE pointers,
        // the most DPDK writes.
        let got =
            unsafe { ffi::rte_distributor_poll_pkt(self.ptr.as_ptr(), self.id, out.as_mut_ptr()) };
        let answered = match self.algorithm {
            Algorithm::Burst => got >= 0,
            Algorithm::Single => got > 0,
        };
        if !answered {
            return None;
        }
        self.requested = false;
        Some(usize::try_from(got).unwrap_or(0))
    }

    /// Leaves (`rte_distributor_return_pkt` with nothing returned): the distributor gives the
    /// packets it had queued for this worker to the others and sends it nothing more. The
    /// handle is consumed. Like [`request`](Self::request), it spins until the distributor has
    /// taken this worker's previous request: call it while the distributor still processes.
    pub fn leave(self) {
        // SAFETY: worker `id` is this handle's, consumed here; no mbuf is returned.
        unsafe {
            ffi::rte_distributor_return_pkt(self.ptr.as_ptr(), self.id, std::ptr::null_mut(), 0)
        };
    }
}
