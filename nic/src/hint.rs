//! A hint to the CPU, shared by the crate's hot loops (the pool's buffers, the frame ring's
//! slots).

/// A hint to load the cache line at `address` into every cache level.
#[inline(always)]
pub(crate) fn prefetch(address: *const u8) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: a prefetch is a hint with no architectural effect: it never faults and reads
    // nothing into the program, for any address. SSE is part of the x86-64 baseline, so the
    // target feature the intrinsic requires is always present.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            address as *const i8,
        );
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = address;
}
