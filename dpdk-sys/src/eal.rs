//! The Environment Abstraction Layer: process-wide initialisation.
//!
//! `rte_eal_init` may run once per process; every other DPDK call (mempools, rings, hashes,
//! ports) needs it first. The thread that calls [`init`] becomes the EAL main lcore: the EAL pins
//! it to the main lcore's CPU set, and starts one worker thread per other lcore of `-l`/`-c`
//! (they block, they do not spin). Pass `-l <one core>` to keep the EAL from creating workers,
//! and call [`init`] from a thread whose pinning does not matter.

use std::ffi::{CStr, CString, OsString};
use std::marker::PhantomData;
use std::os::raw::c_char;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::{ffi, Error};

const NEVER: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
const FAILED: u8 = 3;
const CLEANED: u8 = 4;

static STATE: AtomicU8 = AtomicU8::new(NEVER);

/// Initialises the EAL with `args`, the arguments of a DPDK command line without the program
/// name (this function supplies `argv[0]`), e.g.
/// `["--no-huge", "--no-pci", "--no-shconf", "-m", "256", "--vdev=net_ring0"]`.
///
/// Returns the number of arguments the EAL consumed. Fails with the EAL's `rte_errno` text when
/// `rte_eal_init` fails, and without calling it when an argument holds a NUL byte or when
/// [`init`] already ran in this process (successfully or not: the EAL does not support a second
/// attempt). Concurrent callers are serialised by an atomic state: exactly one calls
/// `rte_eal_init`, the others get the "already" error at once.
///
/// Cost: milliseconds (memory set-up, driver probing); once per process.
pub fn init<I, S>(args: I) -> Result<usize, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let program = std::env::args_os()
        .next()
        .unwrap_or_else(|| OsString::from("flowsteer"));
    let mut owned = vec![CString::new(program.to_string_lossy().into_owned())
        .unwrap_or_else(|_| c"flowsteer".to_owned())];
    for arg in args {
        let arg = arg.as_ref();
        owned.push(CString::new(arg).map_err(|_| {
            Error::invalid(
                "rte_eal_init",
                format!("argument {arg:?} contains a NUL byte"),
            )
        })?);
    }
    let argc = i32::try_from(owned.len())
        .map_err(|_| Error::invalid("rte_eal_init", "too many arguments".to_owned()))?;
    if let Err(state) = STATE.compare_exchange(NEVER, RUNNING, Ordering::AcqRel, Ordering::Acquire)
    {
        let why = match state {
            DONE => "the EAL is already initialised in this process",
            FAILED => "an earlier rte_eal_init failed; the EAL cannot be initialised twice",
            CLEANED => "the EAL was cleaned up (rte_eal_cleanup); it cannot be initialised again",
            _ => "another thread is initialising the EAL",
        };
        return Err(Error::invalid("rte_eal_init", why.to_owned()));
    }
    // The EAL keeps pointers into argv (it reorders it and may keep option strings), so the
    // strings and the array live for the rest of the process: a few hundred bytes, once.
    let strings: &'static mut [CString] = Vec::leak(owned);
    let argv: &'static mut [*mut c_char] = Vec::leak(
        strings
            .iter_mut()
            .map(|s| s.as_ptr().cast_mut())
            .chain(std::iter::once(std::ptr::null_mut()))
            .collect(),
    );
    // SAFETY: argv holds argc valid NUL-terminated strings followed by NULL, all leaked so they
    // outlive the EAL; the STATE transition above guarantees this is the only call in the
    // process.
    let consumed = unsafe { ffi::rte_eal_init(argc, argv.as_mut_ptr()) };
    if consumed < 0 {
        let err = Error::last("rte_eal_init");
        STATE.store(FAILED, Ordering::Release);
        return Err(err);
    }
    STATE.store(DONE, Ordering::Release);
    Ok(usize::try_from(consumed).unwrap_or(0))
}

/// Whether [`init`] has completed successfully in this process (and [`cleanup`] has not run).
pub fn is_initialized() -> bool {
    STATE.load(Ordering::Acquire) == DONE
}

/// Sends the EAL's log to the standard error stream alone, for the rest of the process
/// (`rte_openlog_stream(stderr)`; by default each line also goes to syslog). Call it before
/// [`init`], so that the EAL's own messages during initialisation go there too.
///
/// Fails, changing nothing, once [`init`] has started in this process: the log stream is a
/// plain global that EAL threads read without synchronisation. Cost: one store.
pub fn log_to_stderr() -> Result<(), Error> {
    const OP: &str = "rte_openlog_stream";
    // Holding RUNNING keeps a concurrent init out while the stream changes.
    STATE
        .compare_exchange(NEVER, RUNNING, Ordering::AcqRel, Ordering::Acquire)
        .map_err(|_| Error::invalid(OP, "call it before dpdk_sys::eal::init".to_owned()))?;
    // SAFETY: before rte_eal_init no EAL thread exists, and the RUNNING state keeps init (and so
    // any EAL thread) from starting until the store is done; the shim passes the C library's
    // stderr, which lives for the whole process.
    let rc = unsafe { ffi::dpdk_sys_log_to_stderr() };
    STATE.store(NEVER, Ordering::Release);
    if rc < 0 {
        return Err(Error::from_code(OP, rc));
    }
    Ok(())
}

/// Releases what the EAL holds (`rte_eal_cleanup`): the buses' devices (22.11 removes the
/// vdevs and PCI devices it probed), its services, its memory. The runtime directory the EAL
/// made at [`init`] stays, empty when the EAL ran with `--in-memory` (or `--no-shconf`) and
/// `--no-telemetry`: [`runtime_dir`], read before, names it for the caller to remove. Afterwards
/// [`is_initialized`] is false and [`init`] refuses: DPDK does not support a second
/// initialisation.
///
/// Stop and close the ports the caller used first ([`crate::ethdev::stop`],
/// [`crate::ethdev::close`]), as DPDK's examples do.
///
/// # Safety
/// No DPDK object made through this crate or [`crate::ffi`] (pool, ring, hash, started port)
/// may be used or dropped after this call, and no other thread may be inside a DPDK call
/// during it.
pub unsafe fn cleanup() -> Result<(), Error> {
    const OP: &str = "rte_eal_cleanup";
    STATE
        .compare_exchange(DONE, CLEANED, Ordering::AcqRel, Ordering::Acquire)
        .map_err(|_| Error::invalid(OP, "the EAL is not initialised".to_owned()))?;
    // SAFETY: the EAL is initialised (the state was DONE, now CLEANED so no safe constructor
    // starts meanwhile); the caller guarantees that nothing uses DPDK during or after the call.
    let rc = unsafe { ffi::rte_eal_cleanup() };
    if rc < 0 {
        return Err(Error::from_code(OP, rc));
    }
    Ok(())
}

/// Fails unless the EAL is initialised: DPDK objects created before `rte_eal_init` crash inside
/// DPDK instead of returning an error, so the safe constructors check this first.
pub(crate) fn ensure(op: &'static str) -> Result<(), Error> {
    if is_initialized() {
        Ok(())
    } else {
        Err(Error::invalid(
            op,
            "the EAL is not initialised (call dpdk_sys::eal::init first)".to_owned(),
        ))
    }
}

/// The directory from which the EAL loads driver plugins by default (`RTE_EAL_PMD_PATH` of the
/// DPDK build, `/usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0` on Debian 22.11). Debian's
/// `libdpdk.pc` has no variable for it, so it comes from `rte_build_config.h`. Pass
/// `-d <this>` only if the EAL was linked statically or the drivers were moved; with this
/// crate's dynamic linking the EAL loads it by itself.
pub fn pmd_dir() -> &'static str {
    CStr::from_bytes_with_nul(ffi::RTE_EAL_PMD_PATH)
        .ok()
        .and_then(|s| s.to_str().ok())
        .unwrap_or("")
}

/// The EAL's runtime directory (`/var/run/dpdk/<file-prefix>` for root), `None` before
/// [`init`].
pub fn runtime_dir() -> Option<std::path::PathBuf> {
    if !is_initialized() {
        return None;
    }
    // SAFETY: after init the EAL returns a pointer to its static, NUL-terminated path buffer.
    let dir = unsafe { CStr::from_ptr(ffi::rte_eal_get_runtime_dir()) };
    Some(std::path::PathBuf::from(dir.to_string_lossy().into_owned()))
}

/// The EAL lcore id of the calling thread, `None` for a thread the EAL did not create or
/// register. Cost: one shim call reading a TLS variable.
pub fn lcore_id() -> Option<u32> {
    // SAFETY: reads the calling thread's TLS lcore id; valid before and after init.
    let id = unsafe { ffi::dpdk_sys_lcore_id() };
    (id != ffi::LCORE_ID_ANY).then_some(id)
}

/// The calling thread registered as an EAL lcore ([`register_thread`]) until this is dropped
/// (`rte_thread_unregister`, which releases the lcore id). Neither `Send` nor `Sync`: the
/// registration belongs to the thread that made it.
#[derive(Debug)]
pub struct ThreadRegistration {
    lcore: u32,
    not_send: PhantomData<*const ()>,
}

impl ThreadRegistration {
    /// The lcore id the thread was given.
    pub fn lcore(&self) -> u32 {
        self.lcore
    }
}

impl Drop for ThreadRegistration {
    fn drop(&mut self) {
        // SAFETY: runs on the thread that registered (the type is not Send), which still holds
        // the lcore id it was given; rte_thread_unregister releases exactly that id.
        unsafe { ffi::rte_thread_unregister() }
    }
}

/// Registers the calling thread, one the EAL did not create, as an lcore
/// (`rte_thread_register`): it gets a free lcore id and so the per-lcore caches of mempools
/// (`rte_pktmbuf_alloc` and friends stop going to the shared ring every time). The thread's CPU
/// set is left as it is.
///
/// Fails before [`init`], on a thread that already has an lcore id (an EAL thread, or one
/// registered already), when every lcore id is taken (`RTE_MAX_LCORE`), or when the process
/// uses DPDK's multi-process support. The lcore id is released when the returned value is
/// dropped; per-lcore mempool caches keep what they hold with the id, so flush them first
/// ([`PktmbufPool::flush_lcore_cache`](crate::PktmbufPool::flush_lcore_cache)).
///
/// Cost: a lock and a scan of the lcore table; once per thread, not per packet.
pub fn register_thread() -> Result<ThreadRegistration, Error> {
    const OP: &str = "rte_thread_register";
    ensure(OP)?;
    if let Some(lcore) = lcore_id() {
        return Err(Error::invalid(
            OP,
            format!("the calling thread already is lcore {lcore}"),
        ));
    }
    // SAFETY: the EAL is initialised and the calling thread has no lcore id: registering only
    // writes this thread's TLS and the EAL's lcore table under its lock.
    let rc = unsafe { ffi::rte_thread_register() };
    if rc != 0 {
        return Err(Error::last(OP));
    }
    // From here on the value unregisters on drop, on the error path too.
    let registration = ThreadRegistration {
        lcore: lcore_id().unwrap_or(ffi::LCORE_ID_ANY),
        not_send: PhantomData,
    };
    if registration.lcore == ffi::LCORE_ID_ANY {
        return Err(Error::invalid(
            OP,
            "registered, but the thread has no lcore id".to_owned(),
        ));
    }
    Ok(registration)
}

/// The time stamp counter (`rte_get_tsc_cycles`). Not serialising.
pub fn tsc() -> u64 {
    // SAFETY: rdtsc has no precondition.
    unsafe { ffi::dpdk_sys_rdtsc() }
}

/// TSC ticks per second as the EAL measured them (`rte_get_tsc_hz`); 0 before [`init`].
pub fn tsc_hz() -> u64 {
    if !is_initialized() {
        return 0;
    }
    // SAFETY: the EAL is initialised, which is rte_get_tsc_hz's only precondition.
    unsafe { ffi::rte_get_tsc_hz() }
}
