//! Large output buffers: allocated without zeroing, backed by transparent huge pages where the
//! kernel offers them (`madvise(MADV_HUGEPAGE)`), and filled by the caller before use.
//!
//! A fresh 4 KiB page costs a fault on first touch; the pipeline writes about 1 GiB of fresh
//! buffers at 20M rows, i.e. ~250k faults (measured: 0.16 s of a 1.2 s run). With 2 MiB pages the
//! same memory takes ~500 faults, and the scattered writes of the grouping miss the TLB far less.

use crate::error::{CoreError, Result};

/// Checks that `n` elements of `T` can be allocated, without keeping or touching them: a size
/// the allocator refuses becomes an error naming `what` instead of aborting the process. (The
/// probe reserves address space only; the kernel refuses sizes beyond what the machine could
/// ever back.)
pub fn check_alloc<T>(n: u128, what: &'static str) -> Result<usize> {
    let too_large =
        || CoreError::TooLarge { what, elements: n, bytes: n.saturating_mul(std::mem::size_of::<T>() as u128) };
    let n_usize = usize::try_from(n).map_err(|_| too_large())?;
    let mut probe: Vec<T> = Vec::new();
    probe.try_reserve_exact(n_usize).map_err(|_| too_large())?;
    Ok(n_usize)
}

/// Bytes from which a buffer asks for huge pages.
const HUGE_FROM: usize = 4 << 20;

/// A vector with capacity `n` and length 0, whose memory is advised to use huge pages.
pub fn with_capacity<T>(n: usize) -> Vec<T> {
    let v: Vec<T> = Vec::with_capacity(n);
    advise_huge(v.as_ptr(), n * std::mem::size_of::<T>());
    v
}

/// `n` copies of `value` (zero-valued primitives come from `calloc`: fresh pages, untouched), with
/// the memory advised to use huge pages before the first write. For the per-id tables that
/// random lookups and increments hit (counts, flags, bitmaps): at millions of ids they span tens
/// of MiB, and with 4 KiB pages nearly every access would also miss the TLB.
pub fn filled<T: Clone>(value: T, n: usize) -> Vec<T> {
    let bytes = n * std::mem::size_of::<T>();
    if bytes < HUGE_FROM {
        return vec![value; n];
    }
    let mut v: Vec<T> = Vec::with_capacity(n);
    advise_huge(v.as_ptr(), bytes);
    v.resize(n, value);
    v
}

/// `n` zeros (`T::default()` of a primitive): from `calloc`, so a large table's pages are fresh
/// and untouched when they are advised to be huge; the first writes fault them in.
pub fn zeroed<T: Clone + Default>(n: usize) -> Vec<T> {
    let v = vec![T::default(); n];
    advise_huge(v.as_ptr(), n * std::mem::size_of::<T>());
    v
}

fn advise_huge<T>(ptr: *const T, bytes: usize) {
    #[cfg(target_os = "linux")]
    if bytes >= HUGE_FROM {
        // Advise the 2 MiB-aligned interior; failure only means small pages.
        let start = ptr as usize;
        let lo = (start + (2 << 20) - 1) & !((2 << 20) - 1);
        let hi = (start + bytes) & !((2 << 20) - 1);
        if hi > lo {
            // SAFETY: the range lies inside this allocation; madvise does not touch its contents.
            unsafe {
                libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, bytes);
}

/// How many rows ahead the loops that look up per-id tables at random prefetch (see
/// [`crate::ids`]'s `map_count`).
pub const AHEAD: usize = 16;

/// Asks the CPU to bring the cache line at `p` closer (a hint: never faults, any address).
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch does not access memory architecturally; any address is allowed.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Prefetches the per-user and per-item flags that row `j` of the code columns `us`, `is` will
/// read (nothing past the end): the k-core scans and the grouping read such flags at random,
/// and at millions of users they are megabytes.
#[inline(always)]
pub fn prefetch_flags<T>(us: &[u32], is: &[u32], j: usize, user_flags: &[T], item_flags: &[T]) {
    if let (Some(&u), Some(&i)) = (us.get(j), is.get(j)) {
        prefetch(user_flags.as_ptr().wrapping_add(u as usize));
        prefetch(item_flags.as_ptr().wrapping_add(i as usize));
    }
}
