//! Sequence windows, seeded shuffles and seen-item sets over the chronological CSR.

use rayon::prelude::*;

use crate::error::{CoreError, Result};

/// Training samples as sliding windows over each user's training prefix.
///
/// A window of `length` items ending (exclusive) at `end` covers `[max(0, end - length), end)`.
/// For user `u` with prefix length `L >= min_len`, windows end at `L, L - stride, L - 2·stride, …`
/// until a window reaches the start of the prefix. With `stride = length - 1` the next-item targets
/// of a causal model (`window[1..]`) tile the prefix exactly once.
pub fn training_windows(
    train_end: &[i64],
    length: usize,
    stride: usize,
    min_len: usize,
) -> Result<(Vec<i64>, Vec<i64>)> {
    if length == 0 || stride == 0 {
        return Err(CoreError::invalid(
            "length",
            format!("length and stride must be positive, got length={length}, stride={stride}"),
        ));
    }
    let m = min_len.max(1);
    // Count the windows first (a closed form per user), so that an absurd train_end is refused
    // before the loop would run for ever or the outputs abort on allocation.
    let mut total: u128 = 0;
    for (u, &len) in train_end.iter().enumerate() {
        if len < 0 {
            return Err(CoreError::OutOfRange {
                what: "train_end (negative prefix length)",
                row: u,
                value: len,
                limit: 0,
            });
        }
        total += window_count(len as u128, length as u128, stride as u128, m as u128);
    }
    let total = crate::buffer::check_alloc::<[i64; 2]>(total, "training windows")?;
    let mut users = Vec::with_capacity(total);
    let mut ends = Vec::with_capacity(total);
    for (u, &len) in train_end.iter().enumerate() {
        let len = len as usize;
        if len < m {
            continue;
        }
        let mut end = len;
        loop {
            users.push(u as i64);
            ends.push(end as i64);
            if end <= length || end < stride + m {
                break;
            }
            end -= stride;
        }
    }
    debug_assert_eq!(users.len(), total);
    Ok((users, ends))
}

/// The windows [`training_windows`] makes for a prefix of `len` rows: ends `len - i * stride` for
/// i = 0, 1, ... up to the first that is at most `length` or below `stride + m`.
fn window_count(len: u128, length: u128, stride: u128, m: u128) -> u128 {
    if len < m {
        return 0;
    }
    // First i with len - i * stride <= length, and first i with len - i * stride < stride + m.
    let by_length = if len <= length { 0 } else { (len - length).div_ceil(stride) };
    let by_min = if len < stride + m { 0 } else { (len - stride - m) / stride + 1 };
    by_length.min(by_min) + 1
}

/// Left-padded windows: row `j` holds the last `length` items of user `users[j]`'s log before
/// position `ends[j]`, right-aligned, with 0 in front.
pub fn gather_windows(offsets: &[i64], items: &[i64], users: &[i64], ends: &[i64], length: usize) -> Result<Vec<i64>> {
    check_rows(offsets, items, users, ends)?;
    crate::buffer::check_alloc::<i64>(users.len() as u128 * length as u128, "windows")?;
    let mut out = vec![0i64; users.len() * length];
    if length == 0 {
        return Ok(out);
    }
    out.par_chunks_mut(length).enumerate().for_each(|(j, row)| {
        let start = offsets[users[j] as usize];
        let end = start + ends[j];
        let from = (end - length as i64).max(start);
        let n = (end - from) as usize;
        row[length - n..].copy_from_slice(&items[from as usize..end as usize]);
    });
    Ok(out)
}

fn check_rows(offsets: &[i64], items: &[i64], users: &[i64], ends: &[i64]) -> Result<()> {
    crate::split::check_offsets(offsets, items.len())?;
    crate::error::same_len("ends", users.len(), ends.len())?;
    let n_users = offsets.len().saturating_sub(1);
    for (j, (&u, &e)) in users.iter().zip(ends).enumerate() {
        if u < 0 || u as usize >= n_users {
            return Err(CoreError::OutOfRange { what: "users", row: j, value: u, limit: n_users });
        }
        let len = offsets[u as usize + 1] - offsets[u as usize];
        if e < 0 || e > len {
            return Err(CoreError::invalid("ends", format!("row {j}: end {e} outside user {u}'s log of length {len}")));
        }
    }
    Ok(())
}

/// SplitMix64: a small, portable, seedable generator (same stream on every platform).
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, n)` by Lemire's multiply-shift (bias below 2^-32 for n < 2^32).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// A seeded permutation of `0..n` (Fisher–Yates).
pub fn permutation(n: usize, seed: u64) -> Result<Vec<i64>> {
    if n as u128 > i64::MAX as u128 {
        return Err(CoreError::invalid(
            "n",
            format!("the permutation's values are int64, so n is at most 2^63 - 1; got {n}"),
        ));
    }
    crate::buffer::check_alloc::<i64>(n as u128, "permutation")?;
    let mut p: Vec<i64> = (0..n as i64).collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        p.swap(i, j);
    }
    Ok(p)
}

/// Distinct items of each row's input (`items` of user `users[j]` before `ends[j]`), sorted, as CSR.
pub fn seen_items(offsets: &[i64], items: &[i64], users: &[i64], ends: &[i64]) -> Result<(Vec<i64>, Vec<i64>)> {
    check_rows(offsets, items, users, ends)?;
    let sets: Vec<Vec<i64>> = users
        .par_iter()
        .zip(ends.par_iter())
        .map(|(&u, &e)| {
            let start = offsets[u as usize] as usize;
            let mut v = items[start..start + e as usize].to_vec();
            v.sort_unstable();
            v.dedup();
            v
        })
        .collect();
    let mut out_offsets = Vec::with_capacity(sets.len() + 1);
    out_offsets.push(0i64);
    let total: usize = sets.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(total);
    for s in sets {
        out.extend_from_slice(&s);
        out_offsets.push(out.len() as i64);
    }
    Ok((out_offsets, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_tile_the_prefix() {
        // L = 10, windows of 4 items (3 targets each) with stride 3: ends 10, 7, 4.
        let (u, e) = training_windows(&[10], 4, 3, 2).unwrap();
        assert_eq!(u, vec![0, 0, 0]);
        assert_eq!(e, vec![10, 7, 4]);
        // Short prefix: one window; too short: none.
        assert_eq!(training_windows(&[3, 1], 4, 3, 2).unwrap(), (vec![0], vec![3]));
        // L = 11: ends 11, 8, 5, 2 (the last window covers [0, 2)).
        assert_eq!(training_windows(&[11], 4, 3, 2).unwrap().1, vec![11, 8, 5, 2]);
    }

    #[test]
    fn gather_left_pads() {
        let offsets = [0, 3, 5];
        let items = [1, 2, 3, 7, 8];
        let w = gather_windows(&offsets, &items, &[0, 1, 0], &[3, 2, 1], 2).unwrap();
        assert_eq!(w, vec![2, 3, 7, 8, 0, 1]);
        assert!(gather_windows(&offsets, &items, &[1], &[3], 2).is_err());
    }

    #[test]
    fn window_count_matches_the_window_loop() {
        let mut rng = SplitMix64::new(7);
        for _ in 0..20_000 {
            let len = rng.below(60) as usize;
            let length = 1 + rng.below(12) as usize;
            let stride = 1 + rng.below(8) as usize;
            let min_len = rng.below(5) as usize;
            let (users, _) = training_windows(&[len as i64], length, stride, min_len).unwrap();
            // The loop of training_windows, written out again.
            let m = min_len.max(1);
            let mut want = 0;
            if len >= m {
                let mut end = len;
                loop {
                    want += 1;
                    if end <= length || end < stride + m {
                        break;
                    }
                    end -= stride;
                }
            }
            assert_eq!(users.len(), want, "len {len} length {length} stride {stride} min_len {min_len}");
            assert_eq!(window_count(len as u128, length as u128, stride as u128, m as u128), want as u128);
        }
    }

    #[test]
    fn absurd_sizes_are_errors_not_aborts() {
        assert!(permutation(usize::MAX, 0).is_err());
        assert!(permutation(1 << 60, 0).is_err());
        assert!(training_windows(&[i64::MAX], 2, 1, 2).is_err());
        let (offsets, items) = ([0i64, 3], [1i64, 2, 3]);
        assert!(gather_windows(&offsets, &items, &[0], &[2], 1 << 60).is_err());
        assert!(gather_windows(&offsets, &items, &[0, 0], &[2, 2], usize::MAX).is_err());
    }

    #[test]
    fn permutation_is_a_permutation_and_seeded() {
        let p = permutation(1000, 3).unwrap();
        let mut s = p.clone();
        s.sort();
        assert_eq!(s, (0..1000).collect::<Vec<i64>>());
        assert_eq!(p, permutation(1000, 3).unwrap());
        assert_ne!(p, permutation(1000, 4).unwrap());
    }

    #[test]
    fn seen_sets() {
        let (o, v) = seen_items(&[0, 4], &[5, 3, 5, 9], &[0, 0], &[3, 0]).unwrap();
        assert_eq!(o, vec![0, 2, 2]);
        assert_eq!(v, vec![3, 5]);
    }
}
