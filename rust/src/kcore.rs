//! Iterative (k_user, k_item)-core of an interaction log.
//!
//! The core — the largest sub-log in which every user has at least `k_user` rows and every item at
//! least `k_item` rows — is unique, so any removal order reaches it. Rounds are those of the plain
//! loop "drop every row whose user or item is below its threshold on the current log, repeat":
//! round r removes every user and item below its threshold after round r-1.
//!
//! [`kcore_nodes`] runs the first rounds as parallel scans over the rows: a node's death round is
//! recorded, a row dies in the round `min(death(user), death(item))`, and only rows dying in the
//! current round touch the counters. Real logs settle in a handful of rounds, so this reads the
//! code arrays a few times and writes almost nothing. A log that keeps peeling (long chains) is
//! handed, after [`SCAN_ROUNDS`] rounds, to wave peeling over per-node row lists ([`kcore`]'s
//! algorithm), which touches each row a constant number of times whatever the number of rounds.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use rayon::prelude::*;

use crate::error::{CoreError, Result};

/// Rounds run as full scans before switching to wave peeling.
pub const SCAN_ROUNDS: u32 = 8;

/// Which users and items survive, and how the filter got there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCore {
    pub keep_users: Vec<bool>,
    pub keep_items: Vec<bool>,
    /// Rounds that removed something.
    pub rounds: u32,
    pub rows_dropped: usize,
}

/// The k-core over codes whose row counts are already known (`ucount[u]` rows of user `u`).
/// Codes must be in range (the caller built them).
pub fn kcore_nodes(users: &[u32], items: &[u32], ucount: Vec<u32>, icount: Vec<u32>, k_user: u32, k_item: u32) -> NodeCore {
    kcore_nodes_with(users, items, ucount, icount, k_user, k_item, SCAN_ROUNDS)
}

fn atomics(v: Vec<u32>) -> Vec<AtomicU32> {
    v.into_iter().map(AtomicU32::new).collect()
}

/// Marks the alive nodes (death round `u32::MAX`) with `0 < count < k` as dying in `round`.
fn mark_dying(death: &mut [u32], count: &[AtomicU32], k: u32, round: u32) -> bool {
    let mut any = false;
    for (d, c) in death.iter_mut().zip(count) {
        let c = c.load(Ordering::Relaxed);
        if *d == u32::MAX && c > 0 && c < k {
            *d = round;
            any = true;
        }
    }
    any
}

pub(crate) fn kcore_nodes_with(
    users: &[u32],
    items: &[u32],
    ucount: Vec<u32>,
    icount: Vec<u32>,
    k_user: u32,
    k_item: u32,
    scan_rounds: u32,
) -> NodeCore {
    let (ucount, icount) = (atomics(ucount), atomics(icount));
    let mut du = vec![u32::MAX; ucount.len()];
    let mut di = vec![u32::MAX; icount.len()];
    let mut rounds = 0u32;
    let mut rows_dropped = 0usize;
    loop {
        if rounds >= scan_rounds {
            return peel_rest(users, items, &du, &di, rounds, rows_dropped, k_user, k_item);
        }
        let round = rounds + 1;
        let dying_users = mark_dying(&mut du, &ucount, k_user, round);
        let dying_items = mark_dying(&mut di, &icount, k_item, round);
        if !dying_users && !dying_items {
            break;
        }
        let dropped = AtomicUsize::new(0);
        users.par_chunks(1 << 16).zip(items.par_chunks(1 << 16)).for_each(|(us, is)| {
            let mut n = 0usize;
            for (&u, &i) in us.iter().zip(is) {
                let (a, b) = (du[u as usize], di[i as usize]);
                if a.min(b) == round {
                    n += 1;
                    if a > round {
                        ucount[u as usize].fetch_sub(1, Ordering::Relaxed);
                    }
                    if b > round {
                        icount[i as usize].fetch_sub(1, Ordering::Relaxed);
                    }
                }
            }
            dropped.fetch_add(n, Ordering::Relaxed);
        });
        rows_dropped += dropped.into_inner();
        rounds = round;
    }
    let alive = |death: &[u32], count: &[AtomicU32]| -> Vec<bool> {
        death.iter().zip(count).map(|(&d, c)| d == u32::MAX && c.load(Ordering::Relaxed) > 0).collect()
    };
    NodeCore { keep_users: alive(&du, &ucount), keep_items: alive(&di, &icount), rounds, rows_dropped }
}

/// Finishes by wave peeling on the rows still alive after `rounds` scan rounds.
#[allow(clippy::too_many_arguments)]
fn peel_rest(users: &[u32], items: &[u32], du: &[u32], di: &[u32], rounds: u32, rows_dropped: usize, k_user: u32, k_item: u32) -> NodeCore {
    let rows: Vec<u32> = (0..users.len() as u32)
        .into_par_iter()
        .filter(|&r| du[users[r as usize] as usize] == u32::MAX && di[items[r as usize] as usize] == u32::MAX)
        .collect();
    let sub_users: Vec<u32> = rows.par_iter().map(|&r| users[r as usize]).collect();
    let sub_items: Vec<u32> = rows.par_iter().map(|&r| items[r as usize]).collect();
    let rest = peel(&sub_users, &sub_items, du.len(), di.len(), k_user, k_item);
    NodeCore {
        keep_users: rest.keep_users,
        keep_items: rest.keep_items,
        rounds: rounds + rest.rounds,
        rows_dropped: rows_dropped + rest.rows_dropped,
    }
}

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

/// Row-level k-core of a log given as codes below `n_users` / `n_items`.
pub fn kcore(users: &[u32], items: &[u32], n_users: usize, n_items: usize, k_user: u32, k_item: u32) -> Result<KCore> {
    check_codes(users, items, n_users, n_items)?;
    let ucount = crate::ids::count_codes(users, n_users);
    let icount = crate::ids::count_codes(items, n_items);
    let nodes = kcore_nodes(users, items, ucount, icount, k_user, k_item);
    let keep = users.par_iter().zip(items.par_iter()).map(|(&u, &i)| nodes.keep_users[u as usize] && nodes.keep_items[i as usize]).collect();
    Ok(KCore { keep, keep_users: nodes.keep_users, keep_items: nodes.keep_items, rounds: nodes.rounds, rows_dropped: nodes.rows_dropped })
}

fn check_codes(users: &[u32], items: &[u32], n_users: usize, n_items: usize) -> Result<()> {
    crate::error::same_len("items", users.len(), items.len())?;
    if users.len() > u32::MAX as usize {
        return Err(CoreError::TooManyRows { rows: users.len(), limit: u32::MAX as usize });
    }
    for (what, codes, n) in [("user codes", users, n_users), ("item codes", items, n_items)] {
        if let Some(row) = codes.iter().position(|&c| c as usize >= n) {
            return Err(CoreError::OutOfRange { what, row, value: codes[row] as i64, limit: n });
        }
    }
    Ok(())
}

/// Wave peeling (O(rows) whatever the number of rounds); codes are known to be in range.
fn peel(users: &[u32], items: &[u32], n_users: usize, n_items: usize, k_user: u32, k_item: u32) -> KCore {
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
        return KCore { keep, keep_users, keep_items, rounds: 0, rows_dropped: 0 };
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
    KCore { keep, keep_users, keep_items, rounds, rows_dropped }
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
    fn scan_rounds_then_waves_match_reference() {
        // Every switch point from scans to wave peeling gives the reference's rows and rounds.
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..300 {
            let (nu, ni) = (rng.gen_range(1..15usize), rng.gen_range(1..15usize));
            let n = rng.gen_range(0..120);
            let users: Vec<u32> = (0..n).map(|_| rng.gen_range(0..nu as u32)).collect();
            let items: Vec<u32> = (0..n).map(|_| rng.gen_range(0..ni as u32)).collect();
            let (ku, ki) = (rng.gen_range(1..5), rng.gen_range(1..5));
            let (want, rounds) = reference(&users, &items, nu, ni, ku, ki);
            for scans in 0..4 {
                let uc = crate::ids::count_codes(&users, nu);
                let ic = crate::ids::count_codes(&items, ni);
                let got = kcore_nodes_with(&users, &items, uc, ic, ku, ki, scans);
                let keep: Vec<bool> = users.iter().zip(&items).map(|(&u, &i)| got.keep_users[u as usize] && got.keep_items[i as usize]).collect();
                assert_eq!(keep, want, "scan rounds {scans}");
                assert_eq!(got.rounds, rounds, "scan rounds {scans}");
                assert_eq!(got.rows_dropped, want.iter().filter(|k| !**k).count());
            }
        }
    }

    #[test]
    fn long_chain_peels_one_pair_per_round() {
        // A path u0-i0-u1-i1-... with 2-core: each round strips the two ends, so the number of
        // rounds grows with the length and the wave fallback takes over after SCAN_ROUNDS.
        let len = 60u32;
        let mut users = Vec::new();
        let mut items = Vec::new();
        for j in 0..len {
            users.push(j);
            items.push(j);
            if j + 1 < len {
                users.push(j + 1);
                items.push(j);
            }
        }
        let r = kcore(&users, &items, len as usize, len as usize, 2, 2).unwrap();
        let (want, rounds) = reference(&users, &items, len as usize, len as usize, 2, 2);
        assert_eq!(r.keep, want);
        assert_eq!(r.rounds, rounds);
        assert!(rounds > SCAN_ROUNDS);
    }

    #[test]
    fn out_of_range_code_is_an_error() {
        assert!(kcore(&[3], &[0], 2, 1, 1, 1).is_err());
    }
}
