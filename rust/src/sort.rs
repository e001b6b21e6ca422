//! Sorting 64-bit keys with AVX-512 sorting networks, where the CPU has them.
//!
//! The grouping sorts every user's rows by time (a key per row: the time offset above the row's
//! position, so keys are distinct and the order is stable). A comparison sort costs about
//! log2(n) mispredicted branches per key; at 20M shuffled rows (users of ~145 rows) that was a
//! third of the grouping. Here a slice of up to 64 keys is sorted in registers by a bitonic
//! network (compare-exchanges as vector min/max, no data-dependent branches), and longer slices
//! are cut into such blocks and merged with a vector merge (one branch per 8 keys).
//! Without AVX-512 the standard library's sort is used; the result is the same either way.

/// Keys per block sorted in registers (32 to 64 measured best: larger networks spill registers
/// and pad more).
const BLOCK: usize = 64;

/// Sorts `v` ascending (`scratch`: reused space for longer slices).
pub fn sort_u64(v: &mut [u64], scratch: &mut Vec<u64>) {
    #[cfg(target_arch = "x86_64")]
    if v.len() > 1 && std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F.
        unsafe { avx512::sort(v, scratch) };
        return;
    }
    let _ = scratch;
    v.sort_unstable();
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::BLOCK;
    use std::arch::x86_64::*;

    /// The lane permutations `i -> i ^ j` for `j` = 1, 2, 4, 7 (7 reverses the register).
    #[derive(Clone, Copy)]
    struct Partners([__m512i; 4]);

    impl Partners {
        #[inline(always)]
        unsafe fn new() -> Self {
            let one = |j: usize| {
                let idx: [i64; 8] = std::array::from_fn(|i| (i ^ j) as i64);
                // SAFETY: reads 64 bytes from a local array.
                unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) }
            };
            Partners([one(1), one(2), one(4), one(7)])
        }

        #[inline(always)]
        fn at(self, j: usize) -> __m512i {
            self.0[match j {
                1 => 0,
                2 => 1,
                4 => 2,
                _ => 3,
            }]
        }
    }

    /// Lanes `i` (of the 8) with `i & j != 0` (`j` = 1, 2, 4): those that keep the larger key of
    /// their pair in an ascending compare-exchange at distance `j`.
    #[inline(always)]
    fn upper_lanes(j: usize) -> __mmask8 {
        match j {
            1 => 0xAA,
            2 => 0xCC,
            _ => 0xF0,
        }
    }

    /// One compare-exchange at lane distance `j` inside `x`; lanes in `take_max` keep the larger.
    #[inline(always)]
    unsafe fn exchange_lanes(x: __m512i, p: Partners, j: usize, take_max: __mmask8) -> __m512i {
        unsafe {
            let y = _mm512_permutexvar_epi64(p.at(j), x);
            _mm512_mask_blend_epi64(take_max, _mm512_min_epu64(x, y), _mm512_max_epu64(x, y))
        }
    }

    /// Sorts the `8 * N` keys of `r` (register `q` holds keys `8q..8q+8`) ascending with a
    /// bitonic network: for every block size `k` and distance `j`, key `i` is compare-exchanged
    /// with key `i ^ j`, the lower index taking the minimum in blocks that run ascending
    /// (`i & k == 0`) and the maximum in the others.
    #[inline(always)]
    unsafe fn network<const N: usize>(r: &mut [__m512i; N], p: Partners) {
        let m = 8 * N;
        let mut k = 2;
        while k <= m {
            let mut j = k / 2;
            while j >= 1 {
                if j >= 8 {
                    let d = j / 8;
                    for q in 0..N {
                        if q & d == 0 {
                            let (lo, hi) = (r[q], r[q | d]);
                            // SAFETY: AVX-512F is enabled for the caller.
                            let (mn, mx) = unsafe { (_mm512_min_epu64(lo, hi), _mm512_max_epu64(lo, hi)) };
                            let ascending = (8 * q) & k == 0;
                            (r[q], r[q | d]) = if ascending { (mn, mx) } else { (mx, mn) };
                        }
                    }
                } else {
                    for (q, x) in r.iter_mut().enumerate() {
                        // Key i = 8q + lane takes the max when (i & j != 0) != (i & k != 0).
                        let descending: __mmask8 = if k < 8 {
                            upper_lanes(k)
                        } else if (8 * q) & k != 0 {
                            0xFF
                        } else {
                            0
                        };
                        // SAFETY: as above.
                        *x = unsafe { exchange_lanes(*x, p, j, upper_lanes(j) ^ descending) };
                    }
                }
                j /= 2;
            }
            k *= 2;
        }
    }

    /// Sorts `v` (at most `8 * N` keys) in registers; missing keys are padded with `u64::MAX`,
    /// which sort last and are not stored back.
    #[target_feature(enable = "avx512f")]
    unsafe fn sort_block<const N: usize>(v: &mut [u64]) {
        debug_assert!(v.len() <= 8 * N);
        let n = v.len();
        let lane_mask = |q: usize| -> __mmask8 {
            let have = n.saturating_sub(8 * q).min(8);
            ((1u16 << have) - 1) as __mmask8
        };
        let pad = _mm512_set1_epi64(-1);
        let mut r = [pad; N];
        for (q, x) in r.iter_mut().enumerate() {
            // SAFETY: the masked load reads only lanes below `n` (registers past the end load none;
            // their address is only computed, with wrapping arithmetic).
            *x = unsafe { _mm512_mask_loadu_epi64(pad, lane_mask(q), v.as_ptr().wrapping_add(8 * q).cast()) };
        }
        // SAFETY: AVX-512F is enabled here.
        unsafe { network(&mut r, Partners::new()) };
        for (q, x) in r.iter().enumerate() {
            // SAFETY: the masked store writes only lanes below `n`.
            unsafe { _mm512_mask_storeu_epi64(v.as_mut_ptr().wrapping_add(8 * q).cast(), lane_mask(q), *x) };
        }
    }

    /// Sorts up to [`BLOCK`] keys with the smallest network that holds them.
    #[target_feature(enable = "avx512f")]
    unsafe fn sort_small(v: &mut [u64]) {
        const { assert!(BLOCK == 64) }; // the largest network below holds 8 registers of 8 keys
        assert!(v.len() <= BLOCK);
        // SAFETY (all arms): AVX-512F is enabled here; each network holds `v.len()` keys.
        unsafe {
            match v.len().div_ceil(8) {
                0..=1 => sort_block::<1>(v),
                2 => sort_block::<2>(v),
                3..=4 => sort_block::<4>(v),
                _ => sort_block::<8>(v),
            }
        }
    }

    /// The 16 keys of two ascending registers, merged: the 8 smallest and the 8 largest, each
    /// ascending (a bitonic merge of `a` with `b` reversed).
    #[inline(always)]
    unsafe fn merge16(a: __m512i, b: __m512i, p: Partners) -> (__m512i, __m512i) {
        unsafe {
            let rev = _mm512_permutexvar_epi64(p.at(7), b);
            let (mut lo, mut hi) = (_mm512_min_epu64(a, rev), _mm512_max_epu64(a, rev));
            for j in [4, 2, 1] {
                lo = exchange_lanes(lo, p, j, upper_lanes(j));
                hi = exchange_lanes(hi, p, j, upper_lanes(j));
            }
            (lo, hi)
        }
    }

    /// Merges the ascending runs `a` and `b` (lengths multiples of 8) into `out`.
    #[target_feature(enable = "avx512f")]
    unsafe fn merge_runs(a: &[u64], b: &[u64], out: &mut [u64]) {
        debug_assert!(a.len().is_multiple_of(8) && b.len().is_multiple_of(8) && out.len() == a.len() + b.len());
        if a.is_empty() || b.is_empty() {
            out.copy_from_slice(if a.is_empty() { b } else { a });
            return;
        }
        // SAFETY: every load reads 8 keys at an index below its run's length (a multiple of 8),
        // every store writes 8 keys below `out.len()` (one register per 8 keys consumed).
        unsafe {
            let load = |s: &[u64], at: usize| _mm512_loadu_si512(s.as_ptr().add(at).cast());
            let p = Partners::new();
            let (mut ia, mut ib) = (8, 8);
            let (lo, mut cur) = merge16(load(a, 0), load(b, 0), p);
            _mm512_storeu_si512(out.as_mut_ptr().cast(), lo);
            let mut o = 8;
            loop {
                let next = if ia < a.len() && (ib == b.len() || a[ia] < b[ib]) {
                    ia += 8;
                    load(a, ia - 8)
                } else if ib < b.len() {
                    ib += 8;
                    load(b, ib - 8)
                } else {
                    break;
                };
                let (lo, hi) = merge16(cur, next, p);
                _mm512_storeu_si512(out.as_mut_ptr().add(o).cast(), lo);
                o += 8;
                cur = hi;
            }
            _mm512_storeu_si512(out.as_mut_ptr().add(o).cast(), cur);
        }
    }

    /// Sorts `v`: in one network up to [`BLOCK`] keys; otherwise blocks of [`BLOCK`] keys (the
    /// slice padded to a multiple of 8 with `u64::MAX` in `scratch`) merged pairwise, bottom up.
    /// `scratch` keeps its length between calls (its contents are never read before written).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn sort(v: &mut [u64], scratch: &mut Vec<u64>) {
        let n = v.len();
        if n <= BLOCK {
            // SAFETY: AVX-512F is enabled here.
            unsafe { sort_small(v) };
            return;
        }
        let m = n.next_multiple_of(8);
        // Only the padding needs `u64::MAX`: every merge level writes the whole of `dst`. (Filling
        // all 2·m slots on every call cost 5% of sorting 20M keys in slices of ~130.)
        if scratch.len() < 2 * m {
            scratch.resize(2 * m, u64::MAX);
        }
        let (mut src, mut dst) = scratch[..2 * m].split_at_mut(m);
        src[..n].copy_from_slice(v);
        src[n..].fill(u64::MAX);
        for block in src.chunks_mut(BLOCK) {
            // SAFETY: as above.
            unsafe { sort_small(block) };
        }
        let mut width = BLOCK;
        while width < m {
            for (s, d) in src.chunks(2 * width).zip(dst.chunks_mut(2 * width)) {
                let (a, b) = s.split_at(width.min(s.len()));
                // SAFETY: as above; run lengths are multiples of 8 (BLOCK and m are).
                unsafe { merge_runs(a, b, d) };
            }
            std::mem::swap(&mut src, &mut dst);
            width *= 2;
        }
        v.copy_from_slice(&src[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn sorts_like_the_standard_library() {
        // Every length up to a few blocks and some long ones, over distinct keys, keys with
        // many ties, keys near u64::MAX (the padding value) and presorted / reversed input.
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut scratch = Vec::new();
        let lengths: Vec<usize> = (0..=700).chain([1024, 1025, 2047, 4096 + 8, 10_001]).collect();
        for (case, &n) in lengths.iter().enumerate() {
            let mut v: Vec<u64> = match case % 5 {
                0 => (0..n).map(|_| rng.gen()).collect(),
                1 => (0..n).map(|_| rng.gen_range(0..4)).collect(),
                2 => (0..n).map(|_| u64::MAX - rng.gen_range(0..3)).collect(),
                3 => (0..n as u64).collect(),
                _ => (0..n as u64).rev().map(|x| x << 20 | rng.gen_range(0..1 << 20)).collect(),
            };
            let mut want = v.clone();
            want.sort_unstable();
            sort_u64(&mut v, &mut scratch);
            assert_eq!(v, want, "length {n}, case {case}");
        }
    }
}
