//! The split audit: what each part of a split holds and where it could mislead an evaluation.
//!
//! Counted on the chronological CSR and the split the pipeline built (users in CSR order, each
//! user's rows in time order, dense items `1..=n_items`): users and rows per part, training rows
//! at or after each cutoff (the global temporal split puts none there; the audit counts them from
//! the timestamps rather than trusting the split), test users with no training row, and test
//! targets whose item never occurs in the training part. One parallel pass over the training
//! rows' items, a binary search per user and cutoff, and one pass over the targets.

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use crate::split::Split;

/// Users with at least one row in a part, and its rows (training rows, or targets).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Part {
    pub users: usize,
    pub rows: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audit {
    /// The training prefixes: users with a non-empty prefix, and their rows.
    pub train: Part,
    /// Validation and test targets: distinct users, and targets.
    pub valid: Part,
    pub test: Part,
    /// Training rows whose timestamp is at or after the test cutoff (None: the split has none).
    pub train_at_or_after_test_cutoff: Option<usize>,
    /// The same for the validation cutoff (None: the split has none).
    pub train_at_or_after_valid_cutoff: Option<usize>,
    /// Distinct test users whose training prefix is empty.
    pub test_users_without_train: usize,
    /// Test targets whose item has no training row, and how many distinct items they are.
    pub test_targets_unseen_item: usize,
    pub test_items_unseen: usize,
}

fn cutoff(t: f64) -> Option<f64> {
    (!t.is_nan()).then_some(t)
}

/// Distinct users of a target list and whether each user is one.
fn part(users: &[i64], n_users: usize) -> (Part, Vec<bool>) {
    let mut is = vec![false; n_users];
    let mut distinct = 0;
    for &u in users {
        let seen = &mut is[u as usize];
        distinct += !*seen as usize;
        *seen = true;
    }
    (Part { users: distinct, rows: users.len() }, is)
}

/// The audit of `split` over the CSR (`offsets`, `ts` and `items` in CSR order, each user's
/// timestamps ascending). Target users and positions must lie in the CSR (the split functions of
/// this crate only make such targets).
pub fn audit(offsets: &[i64], ts: &[i64], items: &[i64], n_items: usize, split: &Split) -> Audit {
    let n_users = offsets.len().saturating_sub(1);
    let (test_cut, valid_cut) = (cutoff(split.test_threshold), cutoff(split.valid_threshold));
    let seen: Vec<AtomicBool> = (0..=n_items).map(|_| AtomicBool::new(false)).collect();
    // Training rows of a sorted prefix at or after a cutoff: those past the last one before it.
    let after = |prefix: &[i64], cut: Option<f64>| {
        cut.map_or(0, |c| prefix.len() - prefix.partition_point(|&t| (t as f64) < c))
    };
    // One pass over the training rows: the items seen, and the rows at or after each cutoff.
    let (at_test, at_valid) = (0..n_users)
        .into_par_iter()
        .with_min_len(1 << 10)
        .fold(
            || (0usize, 0usize),
            |(a, b), u| {
                let start = offsets[u] as usize;
                let end = start + split.train_end[u] as usize;
                for &i in &items[start..end] {
                    // Read before writing: popular items are seen early, and their flags stay shared.
                    let flag = &seen[i as usize];
                    if !flag.load(Ordering::Relaxed) {
                        flag.store(true, Ordering::Relaxed);
                    }
                }
                let prefix = &ts[start..end];
                (a + after(prefix, test_cut), b + after(prefix, valid_cut))
            },
        )
        .reduce(|| (0, 0), |x, y| (x.0 + y.0, x.1 + y.1));
    let (valid, _) = part(&split.valid_users, n_users);
    let (test, is_test) = part(&split.test_users, n_users);
    let mut unseen = vec![false; n_items + 1];
    let (mut targets_unseen, mut items_unseen) = (0, 0);
    for (&u, &p) in split.test_users.iter().zip(&split.test_pos) {
        let item = items[(offsets[u as usize] + p) as usize] as usize;
        if !seen[item].load(Ordering::Relaxed) {
            targets_unseen += 1;
            items_unseen += !unseen[item] as usize;
            unseen[item] = true;
        }
    }
    Audit {
        train: Part {
            users: split.train_end.iter().filter(|&&e| e > 0).count(),
            rows: split.train_end.iter().sum::<i64>() as usize,
        },
        valid,
        test,
        train_at_or_after_test_cutoff: test_cut.map(|_| at_test),
        train_at_or_after_valid_cutoff: valid_cut.map(|_| at_valid),
        test_users_without_train: (0..n_users).filter(|&u| is_test[u] && split.train_end[u] == 0).count(),
        test_targets_unseen_item: targets_unseen,
        test_items_unseen: items_unseen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split::{leave_one_out, threshold_split, Target, Valid};

    #[test]
    fn hand_case_global_temporal() {
        // user 0: (item 1, t1) (2, t2) (3, t6) ; user 1: (2, t7) (4, t8) ; user 2: (1, t3) (5, t9)
        let offsets = [0, 3, 5, 7];
        let ts = [1, 2, 6, 7, 8, 3, 9];
        let items = [1, 2, 3, 2, 4, 1, 5];
        let s = threshold_split(&offsets, &ts, 6.0, Target::Last, Valid::None).unwrap();
        // train: user 0 rows t1 t2, user 2 row t3; user 1 has none.
        // test (last at or after 6): user 0 pos 2 (item 3), user 1 pos 1 (item 4), user 2 pos 1 (item 5).
        let a = audit(&offsets, &ts, &items, 5, &s);
        assert_eq!(a.train, Part { users: 2, rows: 3 });
        assert_eq!(a.test, Part { users: 3, rows: 3 });
        assert_eq!(a.valid, Part { users: 0, rows: 0 });
        assert_eq!(a.train_at_or_after_test_cutoff, Some(0));
        assert_eq!(a.train_at_or_after_valid_cutoff, None);
        assert_eq!(a.test_users_without_train, 1);
        // Items 3, 4 and 5 never occur in training.
        assert_eq!((a.test_targets_unseen_item, a.test_items_unseen), (3, 3));
    }

    #[test]
    fn leave_one_out_has_no_cutoff_and_counts_targets() {
        // user 0: items 1 2 3 ; user 1: items 1 1 ; user 2: item 2
        let offsets = [0, 3, 5, 6];
        let ts = [1, 2, 3, 1, 2, 5];
        let items = [1, 2, 3, 1, 1, 2];
        let s = leave_one_out(&offsets);
        let a = audit(&offsets, &ts, &items, 3, &s);
        assert_eq!(a.train, Part { users: 3, rows: 3 });
        assert_eq!(a.valid, Part { users: 1, rows: 1 });
        assert_eq!(a.test, Part { users: 2, rows: 2 });
        assert_eq!((a.train_at_or_after_test_cutoff, a.train_at_or_after_valid_cutoff), (None, None));
        assert_eq!(a.test_users_without_train, 0);
        // Test targets: item 3 (unseen: user 0 trains on item 1 only) and item 1 (seen).
        assert_eq!((a.test_targets_unseen_item, a.test_items_unseen), (1, 1));
    }

    #[test]
    fn a_training_row_past_the_cutoff_is_counted() {
        // A hand-made split whose training prefix reaches past its own threshold.
        let offsets = [0, 3];
        let ts = [1, 5, 9];
        let items = [1, 1, 2];
        let s = Split {
            train_end: vec![2],
            test_users: vec![0],
            test_pos: vec![2],
            test_threshold: 4.0,
            valid_threshold: 5.0,
            ..Default::default()
        };
        let a = audit(&offsets, &ts, &items, 2, &s);
        assert_eq!((a.train_at_or_after_test_cutoff, a.train_at_or_after_valid_cutoff), (Some(1), Some(1)));
    }
}
