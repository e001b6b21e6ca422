//! Large output buffers: allocated without zeroing, backed by transparent huge pages where the
//! kernel offers them (`madvise(MADV_HUGEPAGE)`) and they are cheap to fault in
//! ([`huge_pages`]), and filled by the caller before use.
//!
//! A fresh 4 KiB page costs a fault on first touch; the pipeline writes about 1 GiB of fresh
//! buffers at 20M rows, i.e. ~250k faults (measured: 0.16 s of a 1.2 s run). With 2 MiB pages the
//! same memory takes ~500 faults, and the scattered writes of the grouping miss the TLB far less.

use crate::error::{CoreError, Result};
use rayon::prelude::*;

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

/// Faults in the pages of `v`'s whole capacity now, in parallel, when large buffers use small
/// pages (see [`huge_pages`]): for row-sized outputs that the caller is about to write in full.
///
/// A first touch of a fresh 4 KiB page costs a trap, the kernel's zeroing and a page-table
/// update; taken one by one inside a pass, these traps stall that pass's thread. Asked of the
/// kernel in one call per thread (`MADV_POPULATE_WRITE`), the same pages are faulted in without
/// the traps: on this project's 2-core VM, 320 MB took 0.146 s touched page by page on one
/// thread, 0.074 s on two, 0.095 s populated on one and 0.050 s on two. Used for the grouping's
/// outputs (at 20M rows its stage went from 0.26-0.28 to 0.24-0.25 s in fresh processes) and the
/// parquet reader's timestamps. Not for the id codes' block: with it populated before encoding,
/// string ids encoded 0.2 s slower at 20M rows (user time, every run; integer ids 0.01 s faster)
/// — not explained; one guess is that the encoders' hash tables then get other physical memory,
/// slower to reach at random under this VM's nested paging. With huge pages there are 512 times fewer faults, so nothing is done; nor below
/// 4 MiB, on kernels older than 5.14 (the call fails and pages are faulted in as touched) or off
/// Linux. Never for buffers that may be left partly unwritten: populated pages cost memory.
pub fn populate<T>(v: &Vec<T>) {
    #[cfg(target_os = "linux")]
    {
        let bytes = v.capacity() * std::mem::size_of::<T>();
        if bytes < HUGE_FROM || huge_pages() {
            return;
        }
        const PAGE: usize = 4096;
        let start = (v.as_ptr() as usize).next_multiple_of(PAGE);
        let end = (v.as_ptr() as usize + bytes) & !(PAGE - 1);
        if end <= start {
            return;
        }
        let parts = rayon::current_num_threads().max(1);
        let step = ((end - start) / parts).next_multiple_of(PAGE);
        (0..parts).into_par_iter().for_each(|p| {
            let lo = start + p * step;
            let hi = (lo + step).min(end);
            if hi > lo {
                // SAFETY: [lo, hi) lies within the vector's allocation; populating only faults in
                // its pages (the contents stay what they were: zero, or not yet written).
                unsafe {
                    libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_POPULATE_WRITE);
                }
            }
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

/// Whether large buffers ask for huge pages: `SEQDISTILL_HUGE_PAGES=1` or `0` if set, else yes
/// unless the machine is a virtual machine whose balloon device reports free memory to its host
/// (free page reporting: device id 5, feature bit 5, in `/sys/bus/virtio/devices`). There the
/// host takes back the memory of free 2 MiB blocks — the blocks a huge page is made of — and a
/// fresh huge page's first touch waits while the host backs it again: measured on such a VM (Firecracker, 2 cores), a fresh process filling 160 MB of huge
/// pages ran at 0.2–0.4 GB/s, of small pages at 2.7 GB/s; a fresh process's first `prepare` of 20M
/// rows took 0.55–1.17 s with huge pages and 0.55–0.60 s without (string ids: 0.92–1.11 s and
/// 0.69 s), and 100M rows as long either way.
pub fn huge_pages() -> bool {
    static HUGE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HUGE.get_or_init(|| {
        huge_pages_policy(std::env::var("SEQDISTILL_HUGE_PAGES").ok().as_deref(), || {
            free_pages_reported(std::path::Path::new("/sys/bus/virtio/devices"))
        })
    })
}

/// [`huge_pages`] from the variable's value and the machine's answer (asked only when needed).
fn huge_pages_policy(var: Option<&str>, reported: impl FnOnce() -> bool) -> bool {
    match var.map(str::trim) {
        Some("1") => true,
        Some("0") => false,
        _ => !reported(),
    }
}

/// Whether a virtio balloon device under `devices` (Linux sysfs: `/sys/bus/virtio/devices`) has
/// free page reporting: device id 5, feature bit 5 (`VIRTIO_BALLOON_F_REPORTING`; the `features`
/// file lists the bits as '0'/'1' characters, bit 0 first). False where there is no such file.
fn free_pages_reported(devices: &std::path::Path) -> bool {
    let Ok(entries) = std::fs::read_dir(devices) else {
        return false;
    };
    entries.flatten().any(|d| {
        let read = |name: &str| std::fs::read_to_string(d.path().join(name)).unwrap_or_default();
        read("device").trim() == "0x0005" && read("features").as_bytes().get(5) == Some(&b'1')
    })
}

fn advise_huge<T>(ptr: *const T, bytes: usize) {
    #[cfg(target_os = "linux")]
    if bytes >= HUGE_FROM && huge_pages() {
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

/// One cache line of `i64`s.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([i64; 8]);

/// Scattered writes of `i64`s into many output streams (a radix partition), combined in cache
/// into whole 64-byte lines that go to memory with non-temporal stores.
///
/// A plain scatter into a few hundred streams makes each write miss and first read the line it
/// writes (read-for-ownership), so every output byte crosses the memory bus twice, and the
/// streams' open lines evict each other. Here each stream keeps its current line in a small
/// buffer; a full, aligned line is streamed out at once; partial lines (a stream's first and last)
/// are written normally. Positions are absolute indices into the output; a stream is filled either
/// forwards or backwards, one position at a time, never both.
pub struct Combiner {
    out: *mut i64,
    /// `(address / 8) % 8` of position 0: positions `p` with `(p + phase) % 8 == 0` start a line.
    phase: usize,
    lines: Vec<Line>,
    /// Per stream: the first buffered position (forwards) or one past the last (backwards).
    mark: Vec<usize>,
}

impl Combiner {
    /// Streams start at `starts` (forwards: the first position each will write; backwards: one
    /// past the last).
    pub fn new(out: *mut i64, starts: &[usize]) -> Self {
        Combiner { out, phase: (out as usize / 8) % 8, lines: vec![Line([0; 8]); starts.len()], mark: starts.to_vec() }
    }

    #[inline(always)]
    fn slot(&self, p: usize) -> usize {
        (p + self.phase) & 7
    }

    /// Writes `v` at position `p`, the next position of stream `k` going forwards.
    ///
    /// # Safety
    /// `p` is in bounds of the output and belongs to this combiner alone.
    #[inline(always)]
    pub unsafe fn push_forward(&mut self, k: usize, p: usize, v: i64) {
        let s = self.slot(p);
        self.lines[k].0[s] = v;
        if s == 7 {
            let from = self.mark[k];
            unsafe { self.flush(k, from, p + 1) };
            self.mark[k] = p + 1;
        }
    }

    /// Writes `v` at position `p`, the next position of stream `k` going backwards.
    ///
    /// # Safety
    /// As [`Self::push_forward`].
    #[inline(always)]
    pub unsafe fn push_backward(&mut self, k: usize, p: usize, v: i64) {
        let s = self.slot(p);
        self.lines[k].0[s] = v;
        if s == 0 {
            let to = self.mark[k];
            unsafe { self.flush(k, p, to) };
            self.mark[k] = p;
        }
    }

    /// Writes what stream `k` holds for positions `lo..hi` (all in its current line).
    unsafe fn flush(&mut self, k: usize, lo: usize, hi: usize) {
        let line = &self.lines[k];
        if hi - lo == 8 {
            // SAFETY: `lo` starts a 64-byte-aligned line inside the output (see `phase`).
            unsafe { stream_line(self.out.add(lo), line) };
        } else {
            for p in lo..hi {
                // SAFETY: as the caller's.
                unsafe { self.out.add(p).write(line.0[self.slot(p)]) };
            }
        }
    }

    /// Writes the partial lines left: `ends[k]` is where stream `k` stopped (forwards: one past
    /// its last position; backwards: its last position). Then fences the non-temporal stores, so
    /// that other threads see them once this thread's task is joined.
    ///
    /// # Safety
    /// As [`Self::push_forward`], for every position still buffered.
    pub unsafe fn finish(mut self, ends: &[usize], forward: bool) {
        for (k, &e) in ends.iter().enumerate() {
            let m = self.mark[k];
            let (lo, hi) = if forward { (m, e) } else { (e, m) };
            if hi > lo {
                unsafe { self.flush(k, lo, hi) };
            }
        }
        store_fence();
    }
}

/// Orders this thread's earlier non-temporal stores before its later stores (so that they are
/// visible to other threads once this thread's task is joined).
pub fn store_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a store fence has no preconditions.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

/// Copies one aligned line to `dst` (64-byte aligned) bypassing the cache where the CPU allows.
#[inline(always)]
unsafe fn stream_line(dst: *mut i64, line: &Line) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `dst` and `line` are 64-byte aligned, so every 16-byte access is aligned.
    unsafe {
        use std::arch::x86_64::{__m128i, _mm_load_si128, _mm_stream_si128};
        let (s, d) = (line.0.as_ptr() as *const __m128i, dst as *mut __m128i);
        for q in 0..4 {
            _mm_stream_si128(d.add(q), _mm_load_si128(s.add(q)));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: as the caller's.
    unsafe {
        std::ptr::copy_nonoverlapping(line.0.as_ptr(), dst, 8)
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Resident pages of `v`'s whole pages, as the kernel reports them (`mincore`).
    #[cfg(target_os = "linux")]
    fn resident<T>(v: &Vec<T>) -> (usize, usize) {
        let start = (v.as_ptr() as usize).next_multiple_of(4096);
        let end = (v.as_ptr() as usize + v.capacity() * std::mem::size_of::<T>()) & !4095;
        let pages = (end - start) / 4096;
        let mut vec = vec![0u8; pages];
        // SAFETY: the range lies within the vector's allocation; `vec` has a byte per page.
        let r = unsafe { libc::mincore(start as *mut libc::c_void, end - start, vec.as_mut_ptr()) };
        assert_eq!(r, 0);
        (vec.iter().filter(|&&b| b & 1 == 1).count(), pages)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn populate_faults_in_every_page_and_keeps_the_contents() {
        // Where huge pages are on, or the kernel predates MADV_POPULATE_WRITE (5.14), populate
        // does nothing by design: then only the contents are checked.
        let probe = buffer_probe_populates();
        let n = 5 << 20; // 20 MiB of u32, fresh from calloc (mmap: untouched)
        let mut v = zeroed::<u32>(n);
        let (before, pages) = resident(&v);
        populate(&v);
        let (after, _) = resident(&v);
        if probe && !huge_pages() {
            assert!(before < pages / 2, "a fresh calloc'd buffer is not yet resident ({before} of {pages})");
            assert_eq!(after, pages, "every page is resident once populated");
        }
        assert!(v.iter().all(|&x| x == 0), "populating keeps zeros");
        v[n - 1] = 7;
        let mut w = with_capacity::<u64>(n);
        populate(&w);
        w.extend((0..n as u64).map(|i| i * 3));
        assert_eq!((v[n - 1], w[n - 1], w.len()), (7, 3 * (n as u64 - 1), n));
        // Small buffers are left alone.
        let small = zeroed::<u8>(HUGE_FROM / 2);
        populate(&small);
        assert!(small.iter().all(|&x| x == 0));
    }

    /// Whether this kernel knows MADV_POPULATE_WRITE (asked on one fresh page).
    #[cfg(target_os = "linux")]
    fn buffer_probe_populates() -> bool {
        // SAFETY: a fresh private mapping of one page, unmapped after the call.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            let ok = libc::madvise(p, 4096, libc::MADV_POPULATE_WRITE) == 0;
            libc::munmap(p, 4096);
            ok
        }
    }

    #[test]
    fn free_page_reporting_is_read_from_the_balloon_device_alone() {
        let root = std::env::temp_dir().join(format!("seqdistill-virtio-{}", std::process::id()));
        let device = |name: &str, id: &str, features: &str| {
            let d = root.join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("device"), format!("{id}\n")).unwrap();
            std::fs::write(d.join("features"), format!("{features}\n")).unwrap();
        };
        // No such folder: no virtio devices.
        assert!(!free_pages_reported(&root));
        // A network device with bit 5 set, a balloon without reporting (bits 1, 2 and 7).
        device("virtio0", "0x0001", "1100011110111011");
        device("virtio1", "0x0005", "0110000100000000");
        assert!(!free_pages_reported(&root));
        // The balloon of the VM this was measured on: bits 1, 2, 5 and 7.
        device("virtio1", "0x0005", "01100101000000000000000000000000");
        assert!(free_pages_reported(&root));
        std::fs::remove_dir_all(&root).unwrap();
        // The variable decides when set to 0 or 1; the machine is asked only otherwise.
        assert!(huge_pages_policy(Some("1"), || panic!("not asked")));
        assert!(!huge_pages_policy(Some(" 0 "), || panic!("not asked")));
        assert!(!huge_pages_policy(None, || true));
        assert!(huge_pages_policy(Some("yes"), || false));
    }

    /// Streams of random lengths at every alignment, filled forwards or backwards in a random
    /// interleaving, must leave exactly what plain writes would.
    #[test]
    fn combined_writes_equal_plain_writes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for case in 0..300 {
            let forward = case % 2 == 0;
            let lens: Vec<usize> = (0..rng.gen_range(1..40)).map(|_| rng.gen_range(0..50)).collect();
            let n: usize = lens.iter().sum();
            // Start the output at each of the eight positions within a line.
            let shift = case % 8;
            let mut backing = vec![-1i64; n + 16];
            let out = &mut backing[shift..shift + n];
            let mut bounds = vec![0usize];
            for l in &lens {
                bounds.push(bounds.last().unwrap() + l);
            }
            let mut cur: Vec<usize> = if forward { bounds[..lens.len()].to_vec() } else { bounds[1..].to_vec() };
            let mut c = Combiner::new(out.as_mut_ptr(), &cur);
            let mut expect = vec![-1i64; n];
            let mut left = lens.clone();
            let mut total = n;
            while total > 0 {
                let k = rng.gen_range(0..lens.len());
                if left[k] == 0 {
                    continue;
                }
                let v: i64 = rng.gen();
                left[k] -= 1;
                total -= 1;
                let p = if forward {
                    cur[k] += 1;
                    cur[k] - 1
                } else {
                    cur[k] -= 1;
                    cur[k]
                };
                expect[p] = v;
                // SAFETY: p < n, and stream k alone writes it.
                unsafe {
                    if forward {
                        c.push_forward(k, p, v)
                    } else {
                        c.push_backward(k, p, v)
                    }
                };
            }
            // SAFETY: as above.
            unsafe { c.finish(&cur, forward) };
            assert_eq!(&backing[shift..shift + n], expect.as_slice(), "case {case}");
            assert!(backing[..shift].iter().chain(&backing[shift + n..]).all(|&x| x == -1), "case {case}");
        }
    }
}
