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
    let mut users = Vec::new();
    let mut ends = Vec::new();
    for (u, &len) in train_end.iter().enumerate() {
        if len < 0 {
            return Err(CoreError::OutOfRange {
                what: "train_end (negative prefix length)",
                row: u,
                value: len,
                limit: 0,
            });
        }
        let len = len as usize;
        if len < min_len.max(1) {
            continue;
        }
        let mut end = len;
        loop {
            users.push(u as i64);
            ends.push(end as i64);
            if end <= length || end < stride + min_len.max(1) {
                break;
            }
            end -= stride;
        }
    }
    Ok((users, ends))
}

/// Left-padded windows: row `j` holds the last `length` items of user `users[j]`'s log before
/// position `ends[j]`, right-aligned, with 0 in front.
pub fn gather_windows(offsets: &[i64], items: &[i64], users: &[i64], ends: &[i64], length: usize) -> Result<Vec<i64>> {
    check_rows(offsets, items, users, ends)?;
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
pub fn permutation(n: usize, seed: u64) -> Vec<i64> {
    let mut p: Vec<i64> = (0..n as i64).collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        p.swap(i, j);
    }
    p
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
    fn permutation_is_a_permutation_and_seeded() {
        let p = permutation(1000, 3);
        let mut s = p.clone();
        s.sort();
        assert_eq!(s, (0..1000).collect::<Vec<i64>>());
        assert_eq!(p, permutation(1000, 3));
        assert_ne!(p, permutation(1000, 4));
    }

    #[test]
    fn seen_sets() {
        let (o, v) = seen_items(&[0, 4], &[5, 3, 5, 9], &[0, 0], &[3, 0]).unwrap();
        assert_eq!(o, vec![0, 2, 2]);
        assert_eq!(v, vec![3, 5]);
    }
}
