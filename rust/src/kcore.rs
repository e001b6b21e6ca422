//! Iterative (k_user, k_item)-core of an interaction log.
//!
//! The core — the largest sub-log in which every user has at least `k_user` rows and every item at
//! least `k_item` rows — is unique, so any removal order reaches it. We peel in waves: round r
//! removes every user and item that is below its threshold after round r-1 (the same rounds a
//! "filter users, filter items on the same snapshot, repeat" loop counts), but each row is touched
//! a constant number of times, so the whole run is O(rows) instead of O(rows × rounds).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KCore {
    /// Per row: survives the filter.
    pub keep: Vec<bool>,
    /// Per user / item code: survives.
    pub keep_users: Vec<bool>,
    pub keep_items: Vec<bool>,
    /// Rounds that removed something.
    pub rounds: u32,
    pub rows_dropped: usize,
}

/// CSR of row indices grouped by a code, rows in input order within a group (a stable counting
/// sort). Codes must be below `n`.
pub(crate) fn group_rows(codes: &[u32], n: usize) -> (Vec<usize>, Vec<u32>) {
    let mut offsets = vec![0usize; n + 1];
    for &c in codes {
        offsets[c as usize + 1] += 1;
    }
    for i in 0..n {
        offsets[i + 1] += offsets[i];
    }
    let mut fill = offsets.clone();
    let mut rows = vec![0u32; codes.len()];
    for (r, &c) in codes.iter().enumerate() {
        rows[fill[c as usize]] = r as u32;
        fill[c as usize] += 1;
    }
    (offsets, rows)
}

pub fn kcore(users: &[u32], items: &[u32], n_users: usize, n_items: usize, k_user: u32, k_item: u32) -> Result<KCore, String> {
    if users.len() != items.len() {
        return Err(format!("users has {} rows but items has {}", users.len(), items.len()));
    }
    if users.len() > u32::MAX as usize {
        return Err("more than 2^32 - 1 rows".into());
    }
    if let Some(&u) = users.iter().find(|&&u| u as usize >= n_users) {
        return Err(format!("user code {u} out of range (n_users = {n_users})"));
    }
    if let Some(&i) = items.iter().find(|&&i| i as usize >= n_items) {
        return Err(format!("item code {i} out of range (n_items = {n_items})"));
    }
    let n = users.len();
    let mut ucount = vec![0u32; n_users];
    let mut icount = vec![0u32; n_items];
    for r in 0..n {
        ucount[users[r] as usize] += 1;
        icount[items[r] as usize] += 1;
    }
    let mut keep_users: Vec<bool> = ucount.iter().map(|&c| c > 0).collect();
    let mut keep_items: Vec<bool> = icount.iter().map(|&c| c > 0).collect();
    let mut queued_users: Vec<u32> = (0..n_users as u32).filter(|&u| ucount[u as usize] > 0 && ucount[u as usize] < k_user).collect();
    let mut queued_items: Vec<u32> = (0..n_items as u32).filter(|&i| icount[i as usize] > 0 && icount[i as usize] < k_item).collect();
    let mut keep = vec![true; n];
    if queued_users.is_empty() && queued_items.is_empty() {
        return Ok(KCore { keep, keep_users, keep_items, rounds: 0, rows_dropped: 0 });
    }
    let (uoff, urows) = group_rows(users, n_users);
    let (ioff, irows) = group_rows(items, n_items);
    for &u in &queued_users {
        keep_users[u as usize] = false;
    }
    for &i in &queued_items {
        keep_items[i as usize] = false;
    }
    let mut rounds = 0u32;
    let mut rows_dropped = 0usize;
    while !queued_users.is_empty() || !queued_items.is_empty() {
        let dropped_before = rows_dropped;
        let mut next_users = Vec::new();
        let mut next_items = Vec::new();
        for &u in &queued_users {
            for &r in &urows[uoff[u as usize]..uoff[u as usize + 1]] {
                let r = r as usize;
                if keep[r] {
                    keep[r] = false;
                    rows_dropped += 1;
                    let i = items[r] as usize;
                    icount[i] -= 1;
                    if keep_items[i] && icount[i] < k_item {
                        keep_items[i] = false;
                        next_items.push(i as u32);
                    }
                }
            }
        }
        for &i in &queued_items {
            for &r in &irows[ioff[i as usize]..ioff[i as usize + 1]] {
                let r = r as usize;
                if keep[r] {
                    keep[r] = false;
                    rows_dropped += 1;
                    let u = users[r] as usize;
                    ucount[u] -= 1;
                    if keep_users[u] && ucount[u] < k_user {
                        keep_users[u] = false;
                        next_users.push(u as u32);
                    }
                }
            }
        }
        // A wave can hold nodes whose rows all went in the previous wave: not a round of its own.
        if rows_dropped > dropped_before {
            rounds += 1;
        }
        queued_users = next_users;
        queued_items = next_items;
    }
    Ok(KCore { keep, keep_users, keep_items, rounds, rows_dropped })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Plain reference: simultaneous rounds recounting on the surviving rows.
    fn reference(users: &[u32], items: &[u32], nu: usize, ni: usize, ku: u32, ki: u32) -> (Vec<bool>, u32) {
        let mut keep = vec![true; users.len()];
        let mut rounds = 0;
        loop {
            let mut uc = vec![0u32; nu];
            let mut ic = vec![0u32; ni];
            for r in 0..users.len() {
                if keep[r] {
                    uc[users[r] as usize] += 1;
                    ic[items[r] as usize] += 1;
                }
            }
            let mut changed = false;
            for r in 0..users.len() {
                if keep[r] && (uc[users[r] as usize] < ku || ic[items[r] as usize] < ki) {
                    keep[r] = false;
                    changed = true;
                }
            }
            if !changed {
                return (keep, rounds);
            }
            rounds += 1;
        }
    }

    #[test]
    fn hand_case_two_rounds() {
        // user 0: items 0,1 ; user 1: items 0,1 ; user 2: item 0 only.
        // k=2: round 1 drops user 2 (1 row). Then all counts >= 2.
        let users = [0, 0, 1, 1, 2];
        let items = [0, 1, 0, 1, 0];
        let r = kcore(&users, &items, 3, 2, 2, 2).unwrap();
        assert_eq!(r.keep, vec![true, true, true, true, false]);
        assert_eq!(r.rounds, 1);
        assert_eq!(r.rows_dropped, 1);
        assert_eq!(r.keep_users, vec![true, true, false]);
    }

    #[test]
    fn cascade_empties_everything() {
        let users = [0, 1, 1];
        let items = [0, 0, 1];
        let r = kcore(&users, &items, 2, 2, 2, 2).unwrap();
        assert!(r.keep.iter().all(|k| !k));
        assert_eq!(r.rows_dropped, 3);
    }

    #[test]
    fn k_one_keeps_all() {
        let r = kcore(&[0, 1], &[1, 0], 2, 2, 1, 1).unwrap();
        assert_eq!(r.rounds, 0);
        assert!(r.keep.iter().all(|&k| k));
    }

    #[test]
    fn matches_reference_on_random_logs() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..300 {
            let nu = rng.gen_range(1..20);
            let ni = rng.gen_range(1..20);
            let n = rng.gen_range(0..150);
            let users: Vec<u32> = (0..n).map(|_| rng.gen_range(0..nu)).collect();
            let items: Vec<u32> = (0..n).map(|_| rng.gen_range(0..ni)).collect();
            let (ku, ki) = (rng.gen_range(1..6), rng.gen_range(1..6));
            let got = kcore(&users, &items, nu as usize, ni as usize, ku, ki).unwrap();
            let (want, rounds) = reference(&users, &items, nu as usize, ni as usize, ku, ki);
            assert_eq!(got.keep, want);
            assert_eq!(got.rounds, rounds);
            assert_eq!(got.rows_dropped, want.iter().filter(|k| !**k).count());
        }
    }

    #[test]
    fn out_of_range_code_is_an_error() {
        assert!(kcore(&[3], &[0], 2, 1, 1, 1).is_err());
    }
}
