//! Chronological ordering and train / validation / test splits.
//!
//! A split is described per user over that user's chronological log (the CSR built by
//! [`sort_by_user_time`]): `train_end[u]` is the length of the prefix the model trains on, and each
//! target is a `(user, position)` pair whose input is the prefix before `position`. Every split
//! here is therefore prefix-closed: nothing at or after a threshold reaches the side before it.

use rayon::prelude::*;

/// Stable order of rows by (user, timestamp): rows with equal timestamps keep their input order.
/// Returns `(order, offsets)`: user `u`'s rows are `order[offsets[u]..offsets[u+1]]`.
pub fn sort_by_user_time(users: &[u32], timestamps: &[i64], n_users: usize) -> Result<(Vec<u32>, Vec<i64>), String> {
    if users.len() != timestamps.len() {
        return Err(format!("users has {} rows but timestamps has {}", users.len(), timestamps.len()));
    }
    if users.len() > u32::MAX as usize {
        return Err("more than 2^32 - 1 rows".into());
    }
    if let Some(&u) = users.iter().find(|&&u| u as usize >= n_users) {
        return Err(format!("user code {u} out of range (n_users = {n_users})"));
    }
    let (offsets, mut order) = crate::kcore::group_rows(users, n_users);
    let offsets: Vec<i64> = offsets.into_iter().map(|o| o as i64).collect();
    // Per-user stable sort by timestamp, in parallel over users.
    let mut chunks: Vec<&mut [u32]> = Vec::with_capacity(n_users);
    let mut rest: &mut [u32] = &mut order;
    for u in 0..n_users {
        let (head, tail) = rest.split_at_mut((offsets[u + 1] - offsets[u]) as usize);
        chunks.push(head);
        rest = tail;
    }
    chunks.par_iter_mut().for_each(|rows| {
        if rows.windows(2).any(|w| timestamps[w[0] as usize] > timestamps[w[1] as usize]) {
            let mut keyed: Vec<(i64, u32)> = rows.iter().map(|&r| (timestamps[r as usize], r)).collect();
            keyed.sort_unstable(); // (timestamp, row) is unique, so this is the stable order
            for (slot, (_, r)) in rows.iter_mut().zip(keyed) {
                *slot = r;
            }
        }
    });
    Ok((order, offsets))
}

/// Linear-interpolated quantile (numpy's default), computed by selection on a copy.
pub fn quantile(values: &[i64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    let h = (v.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    let (_, &mut x_lo, upper) = v.select_nth_unstable(lo);
    let x_hi = if hi > lo { *upper.iter().min().expect("hi exists") } else { x_lo };
    Some(x_lo as f64 + (h - lo as f64) * (x_hi as f64 - x_lo as f64))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The user's last interaction at or after the threshold.
    Last,
    /// The first one.
    First,
    /// Every one, each with its own prefix.
    All,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Valid {
    /// The same rule again on the training part, at this quantile of its timestamps.
    Time(f64),
    /// Each training user's last training item.
    LastItem,
    None,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Split {
    pub train_end: Vec<i64>,
    pub valid_users: Vec<i64>,
    pub valid_pos: Vec<i64>,
    pub test_users: Vec<i64>,
    pub test_pos: Vec<i64>,
    pub test_threshold: f64,
    pub valid_threshold: f64,
}

/// Targets of one user with log positions `[start, end)` past a threshold; an input must be
/// non-empty, so position 0 is never a target.
fn push_targets(user: usize, start: usize, end: usize, target: Target, users: &mut Vec<i64>, pos: &mut Vec<i64>) {
    let start = start.max(1);
    if start >= end {
        return;
    }
    let range = match target {
        Target::Last => end - 1..end,
        Target::First => start..start + 1,
        Target::All => start..end,
    };
    for p in range {
        users.push(user as i64);
        pos.push(p as i64);
    }
}

/// Global temporal split over the chronological CSR (`offsets`, `ts` in CSR order).
///
/// The test threshold is the `q` quantile of all timestamps: training is everything strictly
/// before it, targets are taken at or after it. Validation is carved from the training part.
pub fn global_temporal(offsets: &[i64], ts: &[i64], q: f64, target: Target, valid: Valid) -> Result<Split, String> {
    if !(q > 0.0 && q < 1.0) {
        return Err(format!("quantile must be in (0, 1), got {q}"));
    }
    if let Valid::Time(vq) = valid {
        if !(vq > 0.0 && vq < 1.0) {
            return Err(format!("validation quantile must be in (0, 1), got {vq}"));
        }
    }
    let t_test = quantile(ts, q).ok_or("empty log: nothing to split")?;
    threshold_split(offsets, ts, t_test, target, valid)
}

/// The split at an explicit test threshold.
pub fn threshold_split(offsets: &[i64], ts: &[i64], t_test: f64, target: Target, valid: Valid) -> Result<Split, String> {
    let n_users = offsets.len().saturating_sub(1);
    let lens: Vec<(usize, usize)> = (0..n_users).map(|u| (offsets[u] as usize, offsets[u + 1] as usize)).collect();
    // Training prefix per user: timestamps are sorted within a user.
    let train_len: Vec<usize> = lens
        .par_iter()
        .map(|&(a, b)| ts[a..b].partition_point(|&t| (t as f64) < t_test))
        .collect();
    let mut s = Split { test_threshold: t_test, valid_threshold: f64::NAN, ..Default::default() };
    for u in 0..n_users {
        let (a, b) = lens[u];
        push_targets(u, train_len[u], b - a, target, &mut s.test_users, &mut s.test_pos);
    }
    match valid {
        Valid::None => s.train_end = train_len.iter().map(|&l| l as i64).collect(),
        Valid::LastItem => {
            for u in 0..n_users {
                if train_len[u] >= 2 {
                    s.valid_users.push(u as i64);
                    s.valid_pos.push(train_len[u] as i64 - 1);
                    s.train_end.push(train_len[u] as i64 - 1);
                } else {
                    s.train_end.push(train_len[u] as i64);
                }
            }
        }
        Valid::Time(vq) => {
            let train_ts: Vec<i64> = (0..n_users).flat_map(|u| ts[lens[u].0..lens[u].0 + train_len[u]].iter().copied()).collect();
            let t_valid = quantile(&train_ts, vq).ok_or("the training part is empty: nothing before the test threshold")?;
            s.valid_threshold = t_valid;
            for u in 0..n_users {
                let (a, _) = lens[u];
                let fit = ts[a..a + train_len[u]].partition_point(|&t| (t as f64) < t_valid);
                push_targets(u, fit, train_len[u], target, &mut s.valid_users, &mut s.valid_pos);
                s.train_end.push(fit as i64);
            }
        }
    }
    Ok(s)
}

/// Leave-one-out: the last item is the test target, the second to last the validation target,
/// the rest trains. Users with two items get a test target only; users with one only train.
pub fn leave_one_out(offsets: &[i64]) -> Split {
    let n_users = offsets.len().saturating_sub(1);
    let mut s = Split { test_threshold: f64::NAN, valid_threshold: f64::NAN, ..Default::default() };
    for u in 0..n_users {
        let len = offsets[u + 1] - offsets[u];
        if len >= 2 {
            s.test_users.push(u as i64);
            s.test_pos.push(len - 1);
        }
        if len >= 3 {
            s.valid_users.push(u as i64);
            s.valid_pos.push(len - 2);
        }
        s.train_end.push(match len {
            0 | 1 => len,
            2 => 1,
            _ => len - 2,
        });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_sort_keeps_row_order_for_ties() {
        let users = [1, 0, 1, 1, 0];
        let ts = [5, 3, 5, 1, 3];
        let (order, offsets) = sort_by_user_time(&users, &ts, 2).unwrap();
        assert_eq!(offsets, vec![0, 2, 5]);
        assert_eq!(order, vec![1, 4, 3, 0, 2]);
    }

    #[test]
    fn quantile_matches_numpy_linear() {
        // numpy.quantile([1, 2, 3, 4], 0.8) == 3.4
        assert!((quantile(&[4, 1, 3, 2], 0.8).unwrap() - 3.4).abs() < 1e-12);
        assert_eq!(quantile(&[7], 0.5), Some(7.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn global_split_hand_case() {
        // user 0: ts 1 2 3 ; user 1: ts 4 5 ; user 2: ts 10
        let offsets = [0, 3, 5, 6];
        let ts = [1, 2, 3, 4, 5, 10];
        // q = 0.6 over [1,2,3,4,5,10]: h = 3.0 → 4.0. Train: ts < 4.
        let s = global_temporal(&offsets, &ts, 0.6, Target::Last, Valid::None).unwrap();
        assert_eq!(s.test_threshold, 4.0);
        assert_eq!(s.train_end, vec![3, 0, 0]);
        // user 1 has targets at positions 0 and 1; last → 1 (input: its item at ts 4).
        // user 2's only item has an empty input: dropped.
        assert_eq!((s.test_users, s.test_pos), (vec![1], vec![1]));
        let all = global_temporal(&offsets, &ts, 0.6, Target::All, Valid::None).unwrap();
        assert_eq!((all.test_users, all.test_pos), (vec![1], vec![1]));
        let first = global_temporal(&offsets, &ts, 0.6, Target::First, Valid::None).unwrap();
        assert_eq!((first.test_users, first.test_pos), (vec![1], vec![1]));
    }

    #[test]
    fn bad_quantile() {
        assert!(global_temporal(&[0, 1], &[1], 1.0, Target::Last, Valid::None).is_err());
        assert!(global_temporal(&[0, 1], &[1], 0.0, Target::Last, Valid::None).is_err());
        assert!(global_temporal(&[0, 1], &[1], 0.5, Target::Last, Valid::Time(1.5)).is_err());
    }

    #[test]
    fn loo() {
        let s = leave_one_out(&[0, 1, 3, 7]);
        assert_eq!(s.train_end, vec![1, 1, 2]);
        assert_eq!((s.test_users, s.test_pos), (vec![1, 2], vec![1, 3]));
        assert_eq!((s.valid_users, s.valid_pos), (vec![2], vec![2]));
    }
}
