//! Raw id → dense code encoding.
//!
//! Codes follow the sorted order of the raw values (numbers ascending, strings by UTF-8 bytes), so
//! the result does not depend on row order. Codes start at 0; callers shift items by one so that
//! 0 stays the padding id.

use ahash::AHashMap;
use rayon::prelude::*;

/// Dense table lookups are used when the raw integer range is at most this many times the row
/// count (and at most `DENSE_RANGE_MAX`); otherwise a hash map.
const DENSE_RANGE_FACTOR: u64 = 4;
const DENSE_RANGE_MAX: u64 = 1 << 28;

/// Encodes integer ids. Returns `(codes, uniques)` with `uniques[codes[i]] == values[i]` and
/// `uniques` strictly increasing.
pub fn encode_i64(values: &[i64]) -> (Vec<u32>, Vec<i64>) {
    if values.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let (lo, hi) = values
        .par_iter()
        .fold(|| (i64::MAX, i64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)))
        .reduce(|| (i64::MAX, i64::MIN), |a, b| (a.0.min(b.0), a.1.max(b.1)));
    let range = (hi as i128 - lo as i128) as u128 + 1;
    let limit = (values.len() as u64).saturating_mul(DENSE_RANGE_FACTOR).max(1 << 16).min(DENSE_RANGE_MAX);
    if range <= limit as u128 {
        encode_dense(values, lo, range as usize)
    } else {
        encode_hashed(values)
    }
}

fn encode_dense(values: &[i64], lo: i64, range: usize) -> (Vec<u32>, Vec<i64>) {
    let mut table = vec![0u32; range];
    for &v in values {
        table[(v - lo) as usize] = 1;
    }
    let mut uniques = Vec::new();
    let mut next = 0u32;
    for (offset, slot) in table.iter_mut().enumerate() {
        if *slot != 0 {
            *slot = next;
            next += 1;
            uniques.push(lo + offset as i64);
        }
    }
    let codes = values.par_iter().map(|&v| table[(v - lo) as usize]).collect();
    (codes, uniques)
}

fn encode_hashed(values: &[i64]) -> (Vec<u32>, Vec<i64>) {
    let mut seen: AHashMap<i64, u32> = AHashMap::new();
    for &v in values {
        let n = seen.len() as u32;
        seen.entry(v).or_insert(n);
    }
    let mut uniques: Vec<i64> = seen.keys().copied().collect();
    uniques.par_sort_unstable();
    for (code, v) in uniques.iter().enumerate() {
        *seen.get_mut(v).expect("present") = code as u32;
    }
    let codes = values.par_iter().map(|v| seen[v]).collect();
    (codes, uniques)
}

/// Encodes UTF-8 strings given in Arrow layout (`offsets` of length n+1 into `data`). Returns
/// `(codes, first_rows)`: `first_rows[c]` is the first row holding the string with code `c`, so the
/// caller can take the raw values from its own column without a copy through Rust.
pub fn encode_str(offsets: &[i64], data: &[u8]) -> Result<(Vec<u32>, Vec<u64>), String> {
    if offsets.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let n = offsets.len() - 1;
    let get = |i: usize| -> &[u8] { &data[offsets[i] as usize..offsets[i + 1] as usize] };
    for i in 0..n {
        if offsets[i] < 0 || offsets[i] > offsets[i + 1] || offsets[i + 1] as usize > data.len() {
            return Err(format!("invalid string offsets at row {i}"));
        }
    }
    let mut seen: AHashMap<&[u8], u32> = AHashMap::new();
    let mut first_rows: Vec<u64> = Vec::new();
    let mut provisional = Vec::with_capacity(n);
    for i in 0..n {
        let s = get(i);
        let next = seen.len() as u32;
        let code = *seen.entry(s).or_insert_with(|| {
            first_rows.push(i as u64);
            next
        });
        provisional.push(code);
    }
    // Sort the distinct strings and renumber.
    let mut order: Vec<u32> = (0..first_rows.len() as u32).collect();
    order.par_sort_unstable_by(|&a, &b| get(first_rows[a as usize] as usize).cmp(get(first_rows[b as usize] as usize)));
    let mut renumber = vec![0u32; order.len()];
    for (new, &old) in order.iter().enumerate() {
        renumber[old as usize] = new as u32;
    }
    let sorted_first: Vec<u64> = order.iter().map(|&old| first_rows[old as usize]).collect();
    let codes = provisional.par_iter().map(|&c| renumber[c as usize]).collect();
    Ok((codes, sorted_first))
}

/// Renumbers kept codes densely, preserving order: `keep[c]` says whether code `c` survives.
/// Returns the map old → new (`u32::MAX` for dropped codes) and the number kept.
pub fn compact_map(keep: &[bool]) -> (Vec<u32>, usize) {
    let mut next = 0u32;
    let map = keep
        .iter()
        .map(|&k| {
            if k {
                next += 1;
                next - 1
            } else {
                u32::MAX
            }
        })
        .collect();
    (map, next as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_sorted_codes() {
        let (codes, uniques) = encode_i64(&[30, -5, 30, 7]);
        assert_eq!(uniques, vec![-5, 7, 30]);
        assert_eq!(codes, vec![2, 0, 2, 1]);
    }

    #[test]
    fn ints_sparse_range_uses_hash_and_agrees() {
        let vals = vec![i64::MAX, i64::MIN, 0, i64::MAX, 42];
        let (codes, uniques) = encode_i64(&vals);
        assert_eq!(uniques, vec![i64::MIN, 0, 42, i64::MAX]);
        assert_eq!(codes, vec![3, 0, 1, 3, 2]);
    }

    #[test]
    fn empty() {
        assert_eq!(encode_i64(&[]), (vec![], vec![]));
        assert_eq!(encode_str(&[], &[]).unwrap(), (vec![], vec![]));
        assert_eq!(encode_str(&[0], &[]).unwrap(), (vec![], vec![]));
    }

    #[test]
    fn strings_sorted_by_bytes() {
        let strs = ["b", "a", "é", "b", ""];
        let mut data = Vec::new();
        let mut offsets = vec![0i64];
        for s in strs {
            data.extend_from_slice(s.as_bytes());
            offsets.push(data.len() as i64);
        }
        let (codes, first) = encode_str(&offsets, &data).unwrap();
        // sorted: "", "a", "b", "é"
        assert_eq!(codes, vec![2, 1, 3, 2, 0]);
        assert_eq!(first, vec![4, 1, 0, 2]);
    }

    #[test]
    fn bad_offsets_rejected() {
        assert!(encode_str(&[0, 5], b"abc").is_err());
    }

    #[test]
    fn compact() {
        let (map, n) = compact_map(&[true, false, true]);
        assert_eq!(n, 2);
        assert_eq!(map, vec![0, u32::MAX, 1]);
    }
}
