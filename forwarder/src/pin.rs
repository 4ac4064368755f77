//! Pinning a stack thread to its core (`engine.cores`).

/// Pins the calling thread to `core` and checks that the kernel applied exactly that set.
pub(crate) fn pin_to_core(core: usize) -> Result<(), String> {
    let error = |what: &str| {
        format!(
            "cannot pin to core {core} (engine.cores): {what}: {}",
            std::io::Error::last_os_error()
        )
    };
    // SAFETY: cpu_set_t is plain data for which all-zero is the empty set; CPU_SET writes inside it
    // for core < CPU_SETSIZE (config validation bounds cores below 1024 = CPU_SETSIZE), and
    // sched_setaffinity only reads the set we pass with its exact size.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(error("sched_setaffinity"));
    }
    // SAFETY: as above; sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into `set`,
    // and CPU_ISSET/CPU_COUNT only read it.
    let (rc, only_core) = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let rc = libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        (
            rc,
            libc::CPU_COUNT(&set) == 1 && libc::CPU_ISSET(core, &set),
        )
    };
    match (rc, only_core) {
        (0, true) => Ok(()),
        (0, false) => Err(format!(
            "cannot pin to core {core} (engine.cores): the kernel applied another CPU set"
        )),
        _ => Err(error("sched_getaffinity")),
    }
}

/// The lowest-numbered CPU the calling thread may run on, `None` when the kernel does not say.
pub(crate) fn first_allowed_core() -> Option<usize> {
    // SAFETY: cpu_set_t is plain data for which all-zero is the empty set; sched_getaffinity
    // writes at most size_of::<cpu_set_t>() bytes into it, and CPU_ISSET reads it for cores
    // below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        (0..libc::CPU_SETSIZE as usize).find(|&core| libc::CPU_ISSET(core, &set))
    }
}

/// Runs `f`, then puts the calling thread's CPU set back as it was: `rte_eal_init` pins the
/// thread that calls it to the main lcore's CPU, and every thread spawned from it later (the
/// stack threads without `engine.cores`, the metrics server) would inherit that one CPU.
#[cfg(feature = "dpdk")]
pub(crate) fn keeping_cpu_set<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: cpu_set_t is plain data for which all-zero is the empty set; sched_getaffinity
    // writes at most `size` bytes into it.
    let mut saved: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let read = unsafe { libc::sched_getaffinity(0, size, &mut saved) } == 0;
    let result = f();
    // SAFETY: sched_setaffinity only reads the set it is given, with its exact size.
    if read && unsafe { libc::sched_setaffinity(0, size, &saved) } != 0 {
        return Err(format!(
            "the CPU set of the thread that started the EAL could not be restored: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(result)
}
