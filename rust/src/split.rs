//! Chronological ordering and train / validation / test splits.
//!
//! A split is described per user over that user's chronological log (the CSR built by
//! [`sort_by_user_time`]): `train_end[u]` is the length of the prefix the model trains on, and each
//! target is a `(user, position)` pair whose input is the prefix before `position`. Every split
//! here is therefore prefix-closed: nothing at or after a threshold reaches the side before it.

use rayon::prelude::*;

use crate::error::{CoreError, Result};

/// Stable order of rows by (user, timestamp): rows with equal timestamps keep their input order.
/// Returns `(order, offsets)`: user `u`'s rows are `order[offsets[u]..offsets[u+1]]`.
pub fn sort_by_user_time(users: &[u32], timestamps: &[i64], n_users: usize) -> Result<(Vec<u32>, Vec<i64>)> {
    crate::error::same_len("timestamps", users.len(), timestamps.len())?;
    if users.len() > u32::MAX as usize {
        return Err(CoreError::TooManyRows { rows: users.len(), limit: u32::MAX as usize });
    }
    if let Some(row) = users.iter().position(|&u| u as usize >= n_users) {
        return Err(CoreError::OutOfRange { what: "user codes", row, value: users[row] as i64, limit: n_users });
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

/// Linear-interpolated quantile (numpy's default) of `values`.
pub fn quantile(values: &[i64], q: f64) -> Option<f64> {
    quantile_parts(&[values], q)
}

/// Linear-interpolated quantile (numpy's default) of all the values in `parts`, found without
/// sorting or copying the data: a sampled bracket read once (usually), else radix selection — a
/// 2^16-bucket histogram narrows the rank to one bucket, and only that bucket's values are
/// collected and selected.
pub fn quantile_parts(parts: &[&[i64]], q: f64) -> Option<f64> {
    let n: usize = parts.iter().map(|p| p.len()).sum();
    if n == 0 {
        return None;
    }
    let (lo, hi, h) = ranks(n, q);
    let (x_lo, x_hi) = select_pair(parts, lo, hi);
    Some(interpolate(x_lo, x_hi, lo, h))
}

const BUCKETS: u64 = 1 << 16;
const COLLECT_LIMIT: usize = 1 << 20;

/// Visits every value of `parts`, in parallel; `f(acc, v)` folds, `merge` combines.
fn fold_parts<A: Send, F, M>(parts: &[&[i64]], init: impl Fn() -> A + Sync + Send, f: F, merge: M) -> A
where
    F: Fn(&mut A, i64) + Sync + Send,
    M: Fn(A, A) -> A + Sync + Send,
{
    parts
        .par_iter()
        .flat_map_iter(|p| p.chunks(1 << 16))
        .fold(&init, |mut acc, chunk| {
            for &v in chunk {
                f(&mut acc, v);
            }
            acc
        })
        .reduce(&init, merge)
}

/// The values at ranks `lo` and `hi` (`hi` is `lo` or `lo + 1`) of the multiset `parts`.
///
/// First a sample guesses a narrow value bracket around the ranks; one pass counts the values
/// below it and collects those inside, and when the ranks fall inside, they are selected there
/// (one read of the data). Otherwise — skewed data, or an unlucky sample — the exact radix
/// narrowing below decides; either way the result is exact.
fn select_pair(parts: &[&[i64]], lo: usize, hi: usize) -> (i64, i64) {
    let n: usize = parts.iter().map(|p| p.len()).sum();
    if n >= SAMPLE_FROM {
        if let Some(pair) = select_pair_sampled(parts, n, lo, hi) {
            return pair;
        }
    }
    select_pair_radix(parts, lo, hi)
}

pub(crate) const SAMPLE_FROM: usize = 1 << 16;
pub(crate) const SAMPLE: usize = 1 << 14;

/// `SAMPLE` values of `parts` drawn uniformly (with replacement, a fixed seed), `value(v)` of each.
pub(crate) fn sample_parts<T: Copy>(parts: &[&[T]], value: impl Fn(T) -> i64) -> Vec<i64> {
    let mut starts = Vec::with_capacity(parts.len() + 1);
    let mut at = 0usize;
    starts.push(0);
    for p in parts {
        at += p.len();
        starts.push(at);
    }
    if at == 0 {
        return Vec::new();
    }
    let mut rng = crate::sequences::SplitMix64::new(0x005E_ED0F_5A3D);
    (0..SAMPLE)
        .map(|_| {
            let r = rng.below(at as u64) as usize;
            let k = starts.partition_point(|&s| s <= r) - 1;
            value(parts[k][r - starts[k]])
        })
        .collect()
}

/// A value bracket `[a, b]` that very likely holds the values at the ranks the linear `q`
/// quantile reads, guessed from a uniform `sample` of the values (sorted here): the quantile's
/// place in the sample widened by six standard deviations of a sample rank (binomial) plus a few
/// values. Whether it does hold them is checked by [`Tally::quantile`], so a bad guess costs time,
/// never a wrong result.
pub(crate) fn bracket(sample: &mut [i64], q: f64) -> Option<(i64, i64)> {
    let m = sample.len();
    if m < 2 {
        return None;
    }
    sample.sort_unstable();
    let centre = (q * (m - 1) as f64).round() as usize;
    let margin = (6.0 * (m as f64 * q * (1.0 - q)).sqrt()).ceil() as usize + 4;
    // Near either end, the bracket runs to the end of the value range: the sample's extremes are
    // no bound on the values'.
    let a = if centre >= margin { sample[centre - margin] } else { i64::MIN };
    let b = if centre + margin < m { sample[centre + margin] } else { i64::MAX };
    Some((a, b))
}

/// What one pass over the values gathers for a bracket `[a, b]`: how many lie below `a`, and the
/// ones inside.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub below: usize,
    pub inside: Vec<i64>,
}

impl Tally {
    #[inline]
    pub fn add(&mut self, values: &[i64], (a, b): (i64, i64)) {
        for &v in values {
            if v < a {
                self.below += 1;
            } else if v <= b {
                self.inside.push(v);
            }
        }
    }

    /// As [`Tally::add`] for ascending `values`: two binary searches and one copy.
    #[inline]
    pub fn add_sorted(&mut self, values: &[i64], (a, b): (i64, i64)) {
        debug_assert!(values.windows(2).all(|w| w[0] <= w[1]));
        let lo = values.partition_point(|&v| v < a);
        let hi = lo + values[lo..].partition_point(|&v| v <= b);
        self.below += lo;
        self.inside.extend_from_slice(&values[lo..hi]);
    }

    /// The tallies of parts of the values, as one (each value copied once).
    pub fn concat(parts: Vec<Tally>) -> Tally {
        let mut inside = Vec::with_capacity(parts.iter().map(|t| t.inside.len()).sum());
        let mut below = 0;
        for t in &parts {
            below += t.below;
            inside.extend_from_slice(&t.inside);
        }
        Tally { below, inside }
    }

    pub fn merge(mut self, mut other: Tally) -> Tally {
        self.below += other.below;
        if self.inside.len() < other.inside.len() {
            std::mem::swap(&mut self.inside, &mut other.inside);
        }
        self.inside.append(&mut other.inside);
        self
    }

    /// The values at ranks `lo` and `hi` (`hi` is `lo` or `lo + 1`) if the bracket held them.
    fn pair(mut self, lo: usize, hi: usize) -> Option<(i64, i64)> {
        if lo < self.below || hi >= self.below + self.inside.len() {
            return None;
        }
        let (i_lo, i_hi) = (lo - self.below, hi - self.below);
        let (_, &mut x_lo, upper) = self.inside.select_nth_unstable(i_lo);
        let x_hi = if i_hi > i_lo { *upper.iter().min().expect("rank hi exists") } else { x_lo };
        Some((x_lo, x_hi))
    }

    /// The linear `q` quantile of the `n` values tallied, if the bracket held its ranks.
    pub fn quantile(self, n: usize, q: f64) -> Option<f64> {
        if n == 0 {
            return None;
        }
        let (lo, hi, h) = ranks(n, q);
        let (x_lo, x_hi) = self.pair(lo, hi)?;
        Some(interpolate(x_lo, x_hi, lo, h))
    }
}

/// The ranks numpy's linear quantile reads and its fractional rank.
fn ranks(n: usize, q: f64) -> (usize, usize, f64) {
    let h = (n - 1) as f64 * q;
    (h.floor() as usize, (h.ceil() as usize).min(n - 1), h)
}

fn interpolate(x_lo: i64, x_hi: i64, lo: usize, h: f64) -> f64 {
    x_lo as f64 + (h - lo as f64) * (x_hi as f64 - x_lo as f64)
}

/// [`quantile_parts`] for parts that are each in ascending order (users' time-ordered rows): the
/// sampled bracket is tallied by two binary searches per part instead of a pass over the values.
pub fn quantile_sorted_parts(parts: &[&[i64]], q: f64) -> Option<f64> {
    let n: usize = parts.iter().map(|p| p.len()).sum();
    if n >= SAMPLE_FROM {
        let mut sample = sample_parts(parts, |v| v);
        if let Some(br) = bracket(&mut sample, q) {
            let tallies: Vec<Tally> = parts
                .par_chunks(1 << 12)
                .map(|chunk| {
                    let mut t = Tally::default();
                    chunk.iter().for_each(|p| t.add_sorted(p, br));
                    t
                })
                .collect();
            if let Some(x) = Tally::concat(tallies).quantile(n, q) {
                return Some(x);
            }
        }
    }
    quantile_parts(parts, q)
}

/// Checks that each user's timestamps in a CSR (`offsets` already checked) are in time order, as
/// the splits' binary searches assume.
pub fn check_chronological(offsets: &[i64], ts: &[i64]) -> Result<()> {
    let n_users = offsets.len().saturating_sub(1);
    let first_bad = (0..n_users).into_par_iter().find_first(|&u| {
        let (a, b) = (offsets[u] as usize, offsets[u + 1] as usize);
        ts[a..b].windows(2).any(|w| w[0] > w[1])
    });
    match first_bad {
        None => Ok(()),
        Some(u) => {
            let (a, b) = (offsets[u] as usize, offsets[u + 1] as usize);
            let j = a + 1 + ts[a..b].windows(2).position(|w| w[0] > w[1]).expect("found above");
            Err(CoreError::invalid(
                "timestamps",
                format!(
                    "must be in time order within each user (the chronological CSR): user {u} has {} at row {j} after {} at row {}",
                    ts[j],
                    ts[j - 1],
                    j - 1
                ),
            ))
        }
    }
}

fn select_pair_sampled(parts: &[&[i64]], n: usize, lo: usize, hi: usize) -> Option<(i64, i64)> {
    let mut sample = sample_parts(parts, |v| v);
    let br = bracket(&mut sample, lo as f64 / (n - 1).max(1) as f64)?;
    let tally = parts
        .par_iter()
        .flat_map_iter(|p| p.chunks(1 << 16))
        .fold(Tally::default, |mut t, chunk| {
            t.add(chunk, br);
            t
        })
        .reduce(Tally::default, Tally::merge);
    tally.pair(lo, hi)
}

/// Exact selection by histogram narrowing (see [`quantile_parts`]).
fn select_pair_radix(parts: &[&[i64]], lo: usize, hi: usize) -> (i64, i64) {
    let (mn, mx) = fold_parts(
        parts,
        || (i64::MAX, i64::MIN),
        |a, v| *a = (a.0.min(v), a.1.max(v)),
        |a, b| (a.0.min(b.0), a.1.max(b.1)),
    );
    // Invariant: the ranks are relative to the values in [base, base + span].
    let (mut base, mut span) = (mn, mx.wrapping_sub(mn) as u64);
    let (mut r_lo, mut r_hi) = (lo, hi);
    loop {
        if span == 0 {
            return (base, base);
        }
        let width = span / BUCKETS + 1;
        let in_range = move |v: i64| -> Option<usize> {
            let d = v.wrapping_sub(base) as u64;
            (d <= span).then(|| (d / width) as usize)
        };
        let hist = fold_parts(
            parts,
            || vec![0usize; BUCKETS as usize],
            |h, v| {
                if let Some(b) = in_range(v) {
                    h[b] += 1;
                }
            },
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                a
            },
        );
        let (mut b_lo, mut b_hi, mut before_lo, mut cum) = (usize::MAX, 0, 0, 0usize);
        for (b, &c) in hist.iter().enumerate() {
            if b_lo == usize::MAX && cum + c > r_lo {
                b_lo = b;
                before_lo = cum;
            }
            if cum + c > r_hi {
                b_hi = b;
                break;
            }
            cum += c;
        }
        // Bucket b covers base + [b·width, (b+1)·width - 1] (clipped to the span).
        let at = |b: usize, end: bool| -> i64 {
            let off = (b as u128 * width as u128 + if end { width as u128 - 1 } else { 0 }).min(span as u128);
            base.wrapping_add(off as u64 as i64)
        };
        let start = at(b_lo, false);
        if width == 1 {
            return (start, at(b_hi, false));
        }
        let in_lo = hist[b_lo];
        if b_lo == b_hi && in_lo > COLLECT_LIMIT {
            // Narrow to the bucket and histogram it again.
            span = (at(b_lo, true).wrapping_sub(start)) as u64;
            base = start;
            r_lo -= before_lo;
            r_hi -= before_lo;
            continue;
        }
        let end = at(b_hi, true);
        if b_lo != b_hi && in_lo + hist[b_hi] > COLLECT_LIMIT {
            // r_lo is the last value of bucket b_lo and r_hi the first of bucket b_hi.
            let (lo_end, hi_start) = (at(b_lo, true), at(b_hi, false));
            return fold_parts(
                parts,
                || (i64::MIN, i64::MAX),
                |a, v| {
                    if v >= start && v <= lo_end {
                        a.0 = a.0.max(v);
                    } else if v >= hi_start && v <= end {
                        a.1 = a.1.min(v);
                    }
                },
                |a, b| (a.0.max(b.0), a.1.min(b.1)),
            );
        }
        let mut vals = fold_parts(
            parts,
            Vec::new,
            |acc, v| {
                if v >= start && v <= end {
                    acc.push(v);
                }
            },
            |mut a, mut b| {
                a.append(&mut b);
                a
            },
        );
        let (i_lo, i_hi) = (r_lo - before_lo, r_hi - before_lo);
        let (_, &mut x_lo, upper) = vals.select_nth_unstable(i_lo);
        let x_hi = if i_hi > i_lo { *upper.iter().min().expect("rank hi exists") } else { x_lo };
        return (x_lo, x_hi);
    }
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

impl Target {
    /// The option names, in declaration order (the Python API and CLI read them from here).
    pub const NAMES: [&'static str; 3] = ["last", "first", "all"];

    pub fn parse(name: &str) -> Result<Target> {
        match name {
            "last" => Ok(Target::Last),
            "first" => Ok(Target::First),
            "all" => Ok(Target::All),
            other => Err(CoreError::invalid("target", format!("must be one of {:?}, got {other:?}", Target::NAMES))),
        }
    }
}

/// The validation option names (the Python API and CLI read them from here).
pub const VALID_NAMES: [&str; 3] = ["time", "last_item", "none"];
/// The split kinds.
pub const SPLIT_KINDS: [&str; 2] = ["global_temporal", "leave_one_out"];

impl Valid {
    /// `valid_quantile` is used by `"time"` only.
    pub fn parse(name: &str, valid_quantile: f64) -> Result<Valid> {
        match name {
            "time" => Ok(Valid::Time(valid_quantile)),
            "last_item" => Ok(Valid::LastItem),
            "none" => Ok(Valid::None),
            other => Err(CoreError::invalid("valid", format!("must be one of {VALID_NAMES:?}, got {other:?}"))),
        }
    }
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

/// Target positions of one user with log positions `[start, end)` past a threshold (empty when
/// there are none); an input must be non-empty, so position 0 is never a target.
fn targets(start: usize, end: usize, target: Target) -> std::ops::Range<usize> {
    let start = start.max(1);
    if start >= end {
        return 0..0;
    }
    match target {
        Target::Last => end - 1..end,
        Target::First => start..start + 1,
        Target::All => start..end,
    }
}

/// Appends one user's [`targets`].
fn push_targets(user: usize, start: usize, end: usize, target: Target, users: &mut Vec<i64>, pos: &mut Vec<i64>) {
    for p in targets(start, end, target) {
        users.push(user as i64);
        pos.push(p as i64);
    }
}

/// Global temporal split over the chronological CSR (`offsets`, `ts` in CSR order).
///
/// The test threshold is the `q` quantile of all timestamps: training is everything strictly
/// before it, targets are taken at or after it. Validation is carved from the training part.
pub fn global_temporal(offsets: &[i64], ts: &[i64], q: f64, target: Target, valid: Valid) -> Result<Split> {
    if !(q > 0.0 && q < 1.0) {
        return Err(CoreError::invalid("quantile", format!("quantile must be in (0, 1), got {q}")));
    }
    check_valid(valid)?;
    let t_test = quantile(ts, q).ok_or_else(|| CoreError::Data("empty log: nothing to split".into()))?;
    threshold_split(offsets, ts, t_test, target, valid)
}

fn check_valid(valid: Valid) -> Result<()> {
    match valid {
        Valid::Time(vq) if !(vq > 0.0 && vq < 1.0) => {
            Err(CoreError::invalid("valid_quantile", format!("validation quantile must be in (0, 1), got {vq}")))
        }
        _ => Ok(()),
    }
}

/// Checks that `offsets` is a CSR over `rows` rows.
pub fn check_offsets(offsets: &[i64], rows: usize) -> Result<()> {
    if offsets.first().is_some_and(|&o| o != 0)
        || offsets.windows(2).any(|w| w[0] > w[1])
        || offsets.last().map_or(rows != 0, |&o| o as usize != rows)
    {
        return Err(CoreError::invalid(
            "offsets",
            format!("must start at 0, not decrease, and end at the number of rows ({rows})"),
        ));
    }
    Ok(())
}

/// The split at an explicit test threshold.
pub fn threshold_split(offsets: &[i64], ts: &[i64], t_test: f64, target: Target, valid: Valid) -> Result<Split> {
    check_offsets(offsets, ts.len())?;
    check_valid(valid)?;
    if t_test.is_nan() {
        return Err(CoreError::invalid("threshold", "the test threshold is NaN"));
    }
    let n_users = offsets.len().saturating_sub(1);
    let span = |u: usize| (offsets[u] as usize, offsets[u + 1] as usize);
    // Training prefix per user: timestamps are sorted within a user.
    let train_len: Vec<usize> = (0..n_users)
        .into_par_iter()
        .map(|u| {
            let (a, b) = span(u);
            ts[a..b].partition_point(|&t| (t as f64) < t_test)
        })
        .collect();
    let mut s = Split { test_threshold: t_test, valid_threshold: f64::NAN, ..Default::default() };
    let n: usize = (0..n_users).map(|u| targets(train_len[u], span(u).1 - span(u).0, target).len()).sum();
    s.test_users.reserve_exact(n);
    s.test_pos.reserve_exact(n);
    for (u, &len) in train_len.iter().enumerate() {
        let (a, b) = span(u);
        push_targets(u, len, b - a, target, &mut s.test_users, &mut s.test_pos);
    }
    match valid {
        // (Collected in place: the same allocation, usize to i64.)
        Valid::None => s.train_end = train_len.into_iter().map(|l| l as i64).collect(),
        Valid::LastItem => {
            for (u, &len) in train_len.iter().enumerate() {
                if len >= 2 {
                    s.valid_users.push(u as i64);
                    s.valid_pos.push(len as i64 - 1);
                    s.train_end.push(len as i64 - 1);
                } else {
                    s.train_end.push(len as i64);
                }
            }
        }
        Valid::Time(vq) => {
            let train_ts: Vec<&[i64]> = (0..n_users).map(|u| &ts[span(u).0..span(u).0 + train_len[u]]).collect();
            let t_valid = quantile_sorted_parts(&train_ts, vq).ok_or_else(|| {
                CoreError::Data("the training part is empty: nothing before the test threshold".into())
            })?;
            s.valid_threshold = t_valid;
            for u in 0..n_users {
                let (a, _) = span(u);
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

    fn numpy_quantile(v: &[i64], q: f64) -> f64 {
        let mut s = v.to_vec();
        s.sort();
        let h = (s.len() - 1) as f64 * q;
        let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
        s[lo] as f64 + (h - lo as f64) * (s[hi] as f64 - s[lo] as f64)
    }

    #[test]
    fn radix_quantile_matches_sorting_on_many_shapes() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let shapes: Vec<Vec<i64>> = vec![
            (0..3_000_000).map(|_| rng.gen_range(0..1_000_000_000)).collect(),
            // heavy duplicates: one bucket holds far more than the collect limit
            (0..3_000_000).map(|i| if i % 10 == 0 { rng.gen_range(-5..5) } else { 7 }).collect(),
            // two clusters far apart: ranks straddle an empty gap of buckets
            (0..2_500_000)
                .map(|i| if i < 1_250_000 { rng.gen_range(0..3) } else { rng.gen_range(i64::MAX - 3..i64::MAX) })
                .collect(),
            vec![i64::MIN, i64::MAX, 0, -1, 1],
            (0..50).map(|_| rng.gen_range(-100..100)).collect(),
        ];
        for v in &shapes {
            for q in [0.0, 0.1, 0.5, 0.8, 0.999_999, 1.0] {
                let want = numpy_quantile(v, q);
                assert_eq!(quantile(v, q).unwrap(), want, "q {q} len {}", v.len());
                let (a, b) = v.split_at(v.len() / 3);
                assert_eq!(quantile_parts(&[a, &[], b], q).unwrap(), want);
                // Both selection paths on their own, whichever the quantile took.
                let h = (v.len() - 1) as f64 * q;
                let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
                let mut sorted = v.clone();
                sorted.sort();
                assert_eq!(select_pair_radix(&[a, b], lo, hi), (sorted[lo], sorted[hi]));
                if v.len() >= SAMPLE_FROM {
                    if let Some(pair) = select_pair_sampled(&[a, b], v.len(), lo, hi) {
                        assert_eq!(pair, (sorted[lo], sorted[hi]));
                    }
                }
            }
        }
    }

    #[test]
    fn tally_in_a_sampled_bracket_gives_the_quantile_or_nothing() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let (mut held, mut missed) = (0, 0);
        for case in 0..300 {
            let n = rng.gen_range(1..5_000);
            let span = [3, 1_000, i64::MAX / 2][case % 3];
            let v: Vec<i64> = (0..n).map(|_| rng.gen_range(-span..span)).collect();
            let q = [0.0, 0.2, 0.8, 0.999, 1.0, rng.gen_range(0.0..1.0)][case % 6];
            let want = numpy_quantile(&v, q);
            let (a, b) = v.split_at(n / 2);
            let mut sample = sample_parts(&[a, b], |x| x);
            let br = bracket(&mut sample, q).unwrap();
            let mut t = Tally::default();
            t.add(a, br);
            let mut u = Tally::default();
            u.add(b, br);
            match t.merge(u).quantile(n, q) {
                Some(got) => {
                    assert_eq!(got, want, "case {case}");
                    held += 1;
                }
                None => missed += 1,
            }
            // A bracket beside the ranks is never taken for them.
            let (lo, hi, _) = ranks(n, q);
            let mut sorted = v.clone();
            sorted.sort();
            let above = (sorted[hi].saturating_add(1), i64::MAX);
            let mut w = Tally::default();
            w.add(&v, above);
            assert_eq!(w.quantile(n, q), None, "case {case}");
            if sorted[lo] > i64::MIN {
                let mut x = Tally::default();
                x.add(&v, (i64::MIN, sorted[lo] - 1));
                assert_eq!(x.quantile(n, q), None, "case {case}");
            }
        }
        assert!(held > 290, "the bracket held {held} times, missed {missed}");
    }

    #[test]
    fn quantile_of_sorted_parts_matches_numpy() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(23);
        for case in 0..12 {
            // Many users with short sorted histories (some empty), above and below the sample size.
            let users = [10, 3_000, 30_000][case % 3];
            let span = [5, 1_000_000, i64::MAX / 4][case / 3 % 3];
            let mut parts: Vec<Vec<i64>> = (0..users)
                .map(|_| {
                    let mut p: Vec<i64> = (0..rng.gen_range(0..12)).map(|_| rng.gen_range(-span..span)).collect();
                    p.sort();
                    p
                })
                .collect();
            parts.push(Vec::new());
            let refs: Vec<&[i64]> = parts.iter().map(|p| p.as_slice()).collect();
            let all: Vec<i64> = parts.concat();
            for q in [0.0, 0.3, 0.8, 0.9999, 1.0] {
                let got = quantile_sorted_parts(&refs, q);
                if all.is_empty() {
                    assert_eq!(got, None);
                } else {
                    assert_eq!(got.unwrap(), numpy_quantile(&all, q), "case {case} q {q}");
                }
            }
        }
    }

    #[test]
    fn unordered_timestamps_are_named() {
        assert!(check_chronological(&[0, 2, 4], &[1, 2, 3, 3]).is_ok());
        let e = check_chronological(&[0, 2, 5], &[1, 2, 9, 8, 7]).unwrap_err().to_string();
        assert!(e.contains("user 1 has 8 at row 3 after 9 at row 2"), "{e}");
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
