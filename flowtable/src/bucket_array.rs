//! Fixed, zero-initialised arrays for the bucket table, on transparent huge pages when large.
//!
//! A [`BucketArray`] is allocated once, when a table is created, and never grows. Its all-zero
//! bytes are the empty state ([`ZeroIsEmpty`]), so it comes zeroed from the kernel or the
//! allocator with no initialising pass.
//!
//! Backing, chosen at allocation:
//!
//! | array                           | backing                                                  |
//! |---------------------------------|----------------------------------------------------------|
//! | at least 2 MiB, on Linux        | an anonymous mapping aligned to 2 MiB, `madvise(MADV_HUGEPAGE)`, every page touched once (committed now) |
//! | smaller, or on other systems    | the global allocator (`alloc_zeroed`)                     |
//!
//! Why: a lookup reads a bucket head, and on a hit a key line, at a random place in its array, so
//! with 4 KiB pages a 16 MiB head array spans 4096 pages, more than the second-level TLB holds, and most lookups of a 1 Mi-rule
//! table also pay a page walk (two-dimensional on a virtual machine). On 2 MiB pages the same
//! array takes 8 TLB entries. The kernel decides: with transparent huge pages set to `never`, with
//! no free 2 MiB frame, or when the mapping or the advice fails, the array lives on 4 KiB pages
//! (or on the heap) and works the same, only with more TLB misses; no error is raised.
//! [`BucketArray::on_huge_pages`] reports whether the advice was given and accepted, and
//! [`huge_page_fallbacks`] counts the arrays that asked for huge pages and did not get the
//! advice in, process-wide.
//!
//! Cost: one `mmap`, one `madvise` and one page fault per 2 MiB (per 4 KiB on the fallback) at
//! creation; nothing afterwards. The mapping is rounded up to whole 2 MiB pages.

use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Size (and alignment) of a transparent huge page on x86-64 and most aarch64 kernels.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) const HUGE_PAGE: usize = 2 << 20;

/// Arrays that asked for huge pages and were left on base pages: the mapping or the advice
/// failed (for instance a kernel built without transparent huge pages).
static HUGE_PAGE_FALLBACKS: AtomicUsize = AtomicUsize::new(0);

/// Arrays, process-wide, that asked for transparent huge pages and were left on base pages
/// because the kernel refused the mapping or the advice. An accepted advice can still be served
/// with base pages (huge pages disabled, memory fragmented); only `/proc/self/smaps` tells.
pub fn huge_page_fallbacks() -> usize {
    HUGE_PAGE_FALLBACKS.load(Ordering::Relaxed)
}

/// Bucket storage whose all-zero bytes mean "version 0, every slot empty", so that the arrays
/// come zeroed from the kernel or the allocator.
///
/// # Safety
///
/// All-zero bytes must be a valid value of the type.
pub(crate) unsafe trait ZeroIsEmpty: Sized {
    /// The same empty value built field by field, for the model checker's atomics (which are
    /// not plain words).
    #[cfg(loom)]
    fn empty() -> Self;
}

/// Where the elements live, and how to give the memory back.
enum Backing {
    /// The global allocator, with this layout.
    #[cfg(not(loom))]
    Heap(std::alloc::Layout),
    /// An anonymous mapping starting at `base`, `bytes` long, which the array lies inside.
    #[cfg(all(target_os = "linux", not(miri), not(loom)))]
    Mapping { base: NonNull<u8>, bytes: usize },
    /// The model checker's atomics, built one by one into a Box<[T]> (rebuilt in Drop).
    #[cfg(loom)]
    Boxed,
}

/// A fixed array of `T`, zero-initialised; see the module documentation.
pub(crate) struct BucketArray<T> {
    elements: NonNull<T>,
    len: usize,
    backing: Backing,
    huge: bool,
}

// SAFETY: the array owns its elements (no other handle to the memory exists) and hands out only
// shared references to them, as a Box<[T]> would; so it may move to and be shared with other
// threads exactly when T may.
unsafe impl<T: Send> Send for BucketArray<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for BucketArray<T> {}

impl<T: ZeroIsEmpty> BucketArray<T> {
    /// `count` empty elements (`count > 0`): on transparent huge pages when they take at least
    /// [`HUGE_PAGE`] and the kernel agrees, else on base pages.
    #[cfg(not(loom))]
    pub(crate) fn zeroed(count: usize) -> Self {
        use std::alloc::Layout;
        let Ok(layout) = Layout::array::<T>(count) else {
            panic!("flow table of {count} buckets exceeds the address space");
        };
        assert!(layout.size() != 0, "bucket arrays are never empty");
        #[cfg(all(target_os = "linux", not(miri)))]
        if layout.size() >= HUGE_PAGE {
            if let Some(array) = Self::mapped(count, layout) {
                return array;
            }
            HUGE_PAGE_FALLBACKS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: `layout` has a non-zero size (checked above). The block is checked for null and
        // freed in Drop with the same layout.
        let pointer = unsafe { std::alloc::alloc_zeroed(layout) } as *mut T;
        let Some(elements) = NonNull::new(pointer) else {
            std::alloc::handle_alloc_error(layout);
        };
        BucketArray {
            elements,
            len: count,
            backing: Backing::Heap(layout),
            huge: false,
        }
    }

    /// The huge-page backing, or `None` when the mapping or the advice failed (after giving the
    /// mapping back).
    #[cfg(all(target_os = "linux", not(miri), not(loom)))]
    fn mapped(count: usize, layout: std::alloc::Layout) -> Option<Self> {
        let aligned_bytes = layout.size().div_ceil(HUGE_PAGE) * HUGE_PAGE;
        // Room to start the array at a 2 MiB boundary wherever the kernel places the mapping.
        let bytes = aligned_bytes.checked_add(HUGE_PAGE)?;
        // SAFETY: a fresh private anonymous mapping at an address the kernel picks; no existing
        // memory is affected. The result is checked against MAP_FAILED.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return None;
        }
        let base = NonNull::new(raw.cast::<u8>())?;
        let offset = base.as_ptr().align_offset(HUGE_PAGE);
        // SAFETY: `offset < HUGE_PAGE`, so `[start, start + aligned_bytes)` lies inside the
        // `aligned_bytes + HUGE_PAGE` bytes just mapped.
        let start = unsafe { base.as_ptr().add(offset) };
        // SAFETY: the range lies inside the mapping (above); advice changes no contents.
        let advised =
            unsafe { libc::madvise(start.cast(), aligned_bytes, libc::MADV_HUGEPAGE) } == 0;
        if !advised {
            // SAFETY: the mapping made above, unmapped once; nothing points into it yet.
            unsafe { libc::munmap(raw, bytes) };
            return None;
        }
        // Commit the memory now, as the allocator's zeroed blocks are, rather than in the first
        // lookups: one write per base page faults in a whole huge page at the first of its 512.
        for page in (0..aligned_bytes).step_by(4096) {
            // SAFETY: inside the mapping (above), which is writable and not yet shared; writing
            // the zero a fresh anonymous page already holds changes no value.
            unsafe { start.add(page).write_volatile(0) };
        }
        Some(BucketArray {
            // The start is 2 MiB aligned, which is a multiple of any T's alignment here (at most
            // a cache line).
            elements: NonNull::new(start.cast::<T>())?,
            len: count,
            backing: Backing::Mapping { base, bytes },
            huge: true,
        })
    }

    /// The model checker's build: elements built one by one, on the heap.
    #[cfg(loom)]
    pub(crate) fn zeroed(count: usize) -> Self {
        let boxed: Box<[T]> = (0..count).map(|_| T::empty()).collect();
        let len = boxed.len();
        let elements = NonNull::new(Box::into_raw(boxed) as *mut T).expect("box is non-null");
        BucketArray {
            elements,
            len,
            backing: Backing::Boxed,
            huge: false,
        }
    }
}

impl<T> BucketArray<T> {
    /// True when the array lies in a mapping advised for transparent huge pages (the kernel
    /// accepted the advice; see the module documentation for what that does not promise).
    pub(crate) fn on_huge_pages(&self) -> bool {
        self.huge
    }
}

impl<T> Deref for BucketArray<T> {
    type Target = [T];

    #[inline]
    fn deref(&self) -> &[T] {
        // SAFETY: `elements` points at `len` initialised elements (zeroed memory, valid per
        // ZeroIsEmpty, or built one by one) that live until Drop and are only shared.
        unsafe { std::slice::from_raw_parts(self.elements.as_ptr(), self.len) }
    }
}

impl<T> Drop for BucketArray<T> {
    fn drop(&mut self) {
        // The elements are atomics and plain words (ZeroIsEmpty types): nothing to drop in place
        // outside the model checker's build.
        match &self.backing {
            #[cfg(not(loom))]
            // SAFETY: the block came from `alloc_zeroed` with this layout and is freed once.
            Backing::Heap(layout) => unsafe {
                std::alloc::dealloc(self.elements.as_ptr().cast(), *layout)
            },
            #[cfg(all(target_os = "linux", not(miri), not(loom)))]
            Backing::Mapping { base, bytes } => {
                // SAFETY: the mapping made in `mapped`, unmapped once; no reference into it
                // outlives the array.
                unsafe { libc::munmap(base.as_ptr().cast(), *bytes) };
            }
            #[cfg(loom)]
            Backing::Boxed => {
                // SAFETY: `elements` and `len` came from Box::into_raw of a Box<[T]> of this
                // length, rebuilt and dropped once.
                drop(unsafe {
                    Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                        self.elements.as_ptr(),
                        self.len,
                    ))
                });
            }
        }
    }
}

/// Starts loading the line at `address` into the cache, for a read soon after.
#[inline(always)]
pub(crate) fn prefetch(address: *const u8) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: a prefetch is a hint with no architectural effect: it never faults, reads nothing
    // into the program and is defined for any address. SSE is part of the x86-64 baseline, so the
    // target feature the intrinsic requires is always present.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            address as *const i8,
        );
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = address;
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    /// One cache line of atomics, like a bucket head.
    #[repr(C, align(64))]
    struct Line([AtomicU64; 8]);

    // SAFETY: AtomicU64s only; zero is a valid AtomicU64.
    unsafe impl ZeroIsEmpty for Line {}

    /// Kilobytes of transparent huge pages backing the mapping that holds `address`, from
    /// `/proc/self/smaps`.
    fn anon_huge_kb(address: usize) -> Option<u64> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((start, end)) = range.split_once('-') {
                    if let (Ok(start), Ok(end)) = (
                        usize::from_str_radix(start, 16),
                        usize::from_str_radix(end, 16),
                    ) {
                        inside = (start..end).contains(&address);
                        continue;
                    }
                }
            }
            if inside {
                if let Some(value) = line.strip_prefix("AnonHugePages:") {
                    return value.trim().trim_end_matches("kB").trim().parse().ok();
                }
            }
        }
        None
    }

    fn check_zeroed_and_usable(array: &BucketArray<Line>, count: usize) {
        assert_eq!(array.len(), count);
        for index in (0..count).step_by(count / 64 + 1).chain([count - 1]) {
            assert!(array[index]
                .0
                .iter()
                .all(|w| w.load(Ordering::Relaxed) == 0));
            array[index].0[7].store(index as u64, Ordering::Relaxed);
            assert_eq!(array[index].0[7].load(Ordering::Relaxed), index as u64);
        }
        assert_eq!(
            array.as_ptr() as usize % 64,
            0,
            "elements keep their alignment"
        );
    }

    #[test]
    fn small_arrays_come_from_the_allocator() {
        for count in [1, 1000, HUGE_PAGE / 64 - 1] {
            let array = BucketArray::<Line>::zeroed(count);
            check_zeroed_and_usable(&array, count);
            assert!(!array.on_huge_pages(), "{count} lines");
        }
    }

    /// An array of 4 MiB asked on huge pages is advised for them on Linux, and the kernel backs
    /// it with them whenever its settings let a madvised mapping have them.
    #[test]
    fn large_arrays_get_transparent_huge_pages_where_the_kernel_allows() {
        // Miri has no mmap and takes the heap path; a smaller array keeps it quick.
        let count = if cfg!(miri) {
            1000
        } else {
            2 * HUGE_PAGE / 64 + 3
        };
        let array = BucketArray::<Line>::zeroed(count);
        check_zeroed_and_usable(&array, count);
        if cfg!(miri) || !cfg!(target_os = "linux") {
            assert!(!array.on_huge_pages());
            return;
        }
        assert_eq!(array.as_ptr() as usize % HUGE_PAGE, 0);
        let setting = |name: &str| {
            std::fs::read_to_string(format!("/sys/kernel/mm/transparent_hugepage/{name}"))
                .unwrap_or_default()
        };
        let enabled = setting("enabled");
        if enabled.is_empty() {
            // A kernel without transparent huge pages refuses the advice: the fallback.
            assert!(!array.on_huge_pages());
            assert!(huge_page_fallbacks() > 0);
            return;
        }
        assert!(array.on_huge_pages());
        // Huge pages for madvised memory, with direct compaction when none is free.
        let compacts = ["[always]", "[madvise]", "[defer+madvise]"]
            .iter()
            .any(|mode| setting("defrag").contains(mode));
        if !enabled.contains("[never]") && compacts {
            let huge_kb = anon_huge_kb(array.as_ptr() as usize).expect("mapping in smaps");
            assert!(huge_kb >= 2048, "{huge_kb} kB on huge pages");
        }
    }
}
