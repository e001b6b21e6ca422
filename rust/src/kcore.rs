//! Iterative (k_user, k_item)-core of an interaction log.
//!
//! The core — the largest sub-log in which every user has at least `k_user` rows and every item at
//! least `k_item` rows — is unique, so any removal order reaches it. Rounds are those of the plain
//! loop "drop every row whose user or item is below its threshold on the current log, repeat":
//! round r removes every user and item below its threshold after round r-1.
//!
//! [`kcore_nodes`] runs the rounds as parallel scans over the rows: a node's death round is
//! recorded, a row dies in the round `min(death(user), death(item))`, and only rows dying in the
//! current round touch the counters. Dense logs settle in a handful of rounds, so this reads the
//! code arrays a few times and writes almost nothing; logs that peel for longer (an Amazon-M2-like
//! log of 3.65M rows took 11 rounds and lost 36% of its rows) scan a compacted copy of the
//! survivors once a round has dropped much. A log that keeps peeling (long chains) is handed,
//! after [`SCAN_ROUNDS`] rounds, to wave peeling over per-node row lists ([`kcore`]'s algorithm),
//! which touches each row a constant number of times whatever the number of rounds.
//!
//! Large logs that settle in a few rounds drop few rows after the first, yet each late round would
//! scan every row to find them (100M rows, 5M users: rounds 2-4 dropped 28k, 1k and 16 rows and
//! took 0.33 s each). So nodes start *fragile* when their count is below twice their threshold,
//! and the first scan that copies nothing also lists the rows it keeps that have a fragile
//! endpoint (if the fragile nodes hold at most a quarter of the rows). A later round in which
//! every dying node is fragile scans that list instead of every row: a row dies only with a
//! dying endpoint, and such a row, alive before the round, is on the list. A round in which some
//! node that started with `2k` rows or more dies scans all the rows, as before (the list stays a
//! superset of the live rows with a fragile endpoint, so later rounds may use it again).
//!
//! Both regimes report what each round removed ([`Removed`]): the users and items that left the
//! log in it (their last row went in that round: the nodes below their threshold, and the nodes
//! whose every remaining row went with such a node) and its rows (a row goes in the round of the
//! earlier of its user's and item's removals). The counts ride on work the rounds do anyway.
//!
//! [`single_pass_nodes`] is the other filter the pipeline offers (`compat`): the seed paper's
//! released code counted users and items once, on the input log, and kept the rows whose user
//! count and item count were both strictly above their thresholds — one round, no repetition.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU32, Ordering};

use rayon::prelude::*;

use crate::buffer;
use crate::error::{CoreError, Result};

/// Rounds run as scans before switching to wave peeling (scans are cheap once the survivors are
/// compacted; waves need two per-node row indexes built first).
pub const SCAN_ROUNDS: u32 = 32;

/// Which nodes are fragile (see the module doc): a count below `factor` times the threshold; and
/// the list of their rows is kept only while those nodes hold at most `1 / share` of the rows
/// (each row counted once per fragile endpoint; `share` 0: always).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fragile {
    factor: u64,
    share: usize,
}

const FRAGILE_NODES: Fragile = Fragile { factor: 2, share: 4 };

/// What one round of a filter removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Users whose last row went in this round.
    pub users: usize,
    /// Items whose last row went in this round.
    pub items: usize,
    /// Rows whose user or item was removed in this round (and not in an earlier one).
    pub rows: usize,
}

/// The filters `prepare` offers; the option names are [`Filter::NAMES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// The iterative (k_user, k_item)-core: users with at least `k_user` rows and items with at
    /// least `k_item`, repeated until nothing changes.
    KCore,
    /// One pass as the seed paper's released code did it: users with strictly more than `k_user`
    /// rows and items with strictly more than `k_item` rows, both counted once on the input log;
    /// a row stays when its user and its item both pass.
    Compat,
}

impl Filter {
    /// The option names, in declaration order (the Python API and CLI read them from here).
    pub const NAMES: [&'static str; 2] = ["kcore", "compat"];

    pub fn parse(name: &str) -> Result<Filter> {
        match name {
            "kcore" => Ok(Filter::KCore),
            "compat" => Ok(Filter::Compat),
            other => Err(CoreError::invalid("filter", format!("must be one of {:?}, got {other:?}", Filter::NAMES))),
        }
    }
}

/// Which users and items survive, and how the filter got there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCore {
    pub keep_users: Vec<bool>,
    pub keep_items: Vec<bool>,
    /// Rounds that removed something.
    pub rounds: u32,
    pub rows_dropped: usize,
    /// What each of those rounds removed (`removed.len() == rounds`).
    pub removed: Vec<Removed>,
    /// Surviving rows per user code (0 for removed users), where the filter kept the counts
    /// exact (the scan rounds do; wave peeling does not report them).
    pub user_rows: Option<Vec<u32>>,
}

impl NodeCore {
    /// Whether each row (its user and item codes) survives: both its user and its item do.
    pub fn keep_rows(&self, users: &[u32], items: &[u32]) -> Vec<bool> {
        users
            .par_iter()
            .zip(items.par_iter())
            .map(|(&u, &i)| self.keep_users[u as usize] && self.keep_items[i as usize])
            .collect()
    }
}

/// The k-core over codes whose row counts are already known (`ucount[u]` rows of user `u`).
/// Codes must be in range (the caller built them).
pub fn kcore_nodes(
    users: &[u32],
    items: &[u32],
    ucount: Vec<u32>,
    icount: Vec<u32>,
    k_user: u32,
    k_item: u32,
) -> NodeCore {
    kcore_nodes_with(users, items, ucount, icount, k_user, k_item, SCAN_ROUNDS, FRAGILE_NODES)
}

fn atomics(v: Vec<u32>) -> Vec<AtomicU32> {
    v.into_iter().map(AtomicU32::new).collect()
}

/// Death round of a node; `ALIVE` or `FRAGILE` while it lives (rounds never reach either: at most
/// [`SCAN_ROUNDS`] run as scans). One byte per node keeps the scans' lookups in cache.
type Death = u8;
const ALIVE: Death = Death::MAX;
/// A live node that started with fewer than `Fragile::factor` times its threshold rows.
const FRAGILE: Death = Death::MAX - 1;

#[inline(always)]
fn alive(d: Death) -> bool {
    d >= FRAGILE
}

/// Marks the `candidates` still alive with `0 < count < k` as dying in `round`; returns how many,
/// how many rows they still hold, and how many of them were not fragile.
/// (`k` is wide so that the compat filter's `count <= t` is `count < t + 1` for every `u32` t.)
fn mark_dying(
    death: &mut [Death],
    count: &[AtomicU32],
    k: u64,
    round: Death,
    candidates: impl Iterator<Item = u32>,
) -> (usize, usize, usize) {
    let (mut marked, mut rows, mut sturdy) = (0, 0, 0);
    for x in candidates {
        let c = count[x as usize].load(Ordering::Relaxed);
        let d = &mut death[x as usize];
        if alive(*d) && c > 0 && (c as u64) < k {
            sturdy += (*d == ALIVE) as usize;
            *d = round;
            marked += 1;
            rows += c as usize;
        }
    }
    (marked, rows, sturdy)
}

/// Rows held by the nodes with `k <= count < below` (the fragile ones).
fn fragile_rows(count: &[u32], k: u64, below: u64) -> usize {
    count.iter().map(|&c| if c as u64 >= k && (c as u64) < below { c as u64 } else { 0 }).sum::<u64>() as usize
}

/// The first round's [`mark_dying`] over every node (all alive, none fragile yet), which also
/// marks the nodes with `k <= count < below` fragile.
fn mark_first(death: &mut [Death], count: &[AtomicU32], k: u64, below: u64, round: Death) -> (usize, usize, usize) {
    let (mut marked, mut rows) = (0, 0);
    for (d, c) in death.iter_mut().zip(count) {
        let c = c.load(Ordering::Relaxed) as u64;
        if c > 0 && c < k {
            *d = round;
            marked += 1;
            rows += c as usize;
        } else if c >= k && c < below {
            *d = FRAGILE;
        }
    }
    (marked, rows, marked)
}

/// The compat filter (see the module doc): one round in which every node whose count on the
/// input log is at most its threshold (`above_user`, `above_item`) dies.
pub fn single_pass_nodes(
    users: &[u32],
    items: &[u32],
    ucount: Vec<u32>,
    icount: Vec<u32>,
    above_user: u32,
    above_item: u32,
) -> NodeCore {
    let (ucount, icount) = (atomics(ucount), atomics(icount));
    let mut du = buffer::filled(ALIVE, ucount.len());
    let mut di = buffer::filled(ALIVE, icount.len());
    let (n_users, ..) = mark_dying(&mut du, &ucount, above_user as u64 + 1, 1, 0..ucount.len() as u32);
    let (n_items, ..) = mark_dying(&mut di, &icount, above_item as u64 + 1, 1, 0..icount.len() as u32);
    let mut removed = Vec::new();
    if n_users + n_items > 0 {
        // No threshold crossings are needed (there is no next round): k = 0 is never crossed.
        let (scan, _) = scan_round(users, items, &du, &di, &ucount, &icount, (0, 0), 1, Keep::Nothing);
        removed.push(Removed {
            users: n_users + scan.users_emptied,
            items: n_items + scan.items_emptied,
            rows: scan.dropped,
        });
    }
    finish(&du, &di, &ucount, &icount, removed)
}

/// The survivors (alive, with rows left) and the totals of `removed`.
fn finish(du: &[Death], di: &[Death], ucount: &[AtomicU32], icount: &[AtomicU32], removed: Vec<Removed>) -> NodeCore {
    let survive = |death: &[Death], count: &[AtomicU32]| -> Vec<bool> {
        death.iter().zip(count).map(|(&d, c)| alive(d) && c.load(Ordering::Relaxed) > 0).collect()
    };
    // A node's count loses every dropped row while the node lives (see `scan_round`), so a
    // survivor's count is its surviving rows.
    let user_rows = du.iter().zip(ucount).map(|(&d, c)| if alive(d) { c.load(Ordering::Relaxed) } else { 0 }).collect();
    NodeCore {
        keep_users: survive(du, ucount),
        keep_items: survive(di, icount),
        rounds: removed.len() as u32,
        rows_dropped: removed.iter().map(|r| r.rows).sum(),
        removed,
        user_rows: Some(user_rows),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn kcore_nodes_with(
    users: &[u32],
    items: &[u32],
    ucount: Vec<u32>,
    icount: Vec<u32>,
    k_user: u32,
    k_item: u32,
    scan_rounds: u32,
    fragile: Fragile,
) -> NodeCore {
    let scan_rounds = scan_rounds.min(FRAGILE as u32 - 1);
    let (ku, ki) = (k_user as u64, k_item as u64);
    let (below_u, below_i) = (ku.saturating_mul(fragile.factor), ki.saturating_mul(fragile.factor));
    // Whether the fragile nodes hold few enough rows to list them (see the module doc).
    let mut listing = fragile_rows(&ucount, ku, below_u) + fragile_rows(&icount, ki, below_i)
        <= users.len().checked_div(fragile.share).unwrap_or(usize::MAX);
    let (ucount, icount) = (atomics(ucount), atomics(icount));
    let mut du = buffer::filled(ALIVE, ucount.len());
    let mut di = buffer::filled(ALIVE, icount.len());
    let mut removed: Vec<Removed> = Vec::new();
    // The rows scanned: all of them, or a compacted copy of the ones still alive.
    let mut kept: Option<Rows> = None;
    // The live rows with a fragile endpoint, once a scan has listed them (see the module doc);
    // `listing` while a scan is still to list them.
    let mut listed: Option<Rows> = None;
    // Nodes whose count fell below k in the last round (every node before the first).
    let mut below: Option<(Vec<u32>, Vec<u32>)> = None;
    loop {
        let all = kept.as_ref().map_or((users, items), |(u, i)| (u.as_slice(), i.as_slice()));
        let rounds = removed.len() as u32;
        if rounds >= scan_rounds {
            return peel_rest(all.0, all.1, &du, &di, removed, k_user, k_item);
        }
        let round = (rounds + 1) as Death;
        let ((dying_users, rows_u, sturdy_u), (dying_items, rows_i, sturdy_i)) = match &below {
            None if listing => {
                (mark_first(&mut du, &ucount, ku, below_u, round), mark_first(&mut di, &icount, ki, below_i, round))
            }
            None => (
                mark_dying(&mut du, &ucount, ku, round, 0..ucount.len() as u32),
                mark_dying(&mut di, &icount, ki, round, 0..icount.len() as u32),
            ),
            Some((bu, bi)) => (
                mark_dying(&mut du, &ucount, ku, round, bu.iter().copied()),
                mark_dying(&mut di, &icount, ki, round, bi.iter().copied()),
            ),
        };
        if dying_users + dying_items == 0 {
            break;
        }
        // Only fragile nodes die: their rows are all on the list.
        let on_list = listed.is_some() && sturdy_u + sturdy_i == 0;
        let list = if on_list { listed.take() } else { None };
        #[cfg(test)]
        tests::ROUNDS_SEEN.with(|c| {
            let mut c = c.borrow_mut();
            c.0 += on_list as usize;
            c.1 += (listed.is_some() && !on_list) as usize;
        });
        let (us, is) = list.as_ref().map_or(all, |(u, i)| (u.as_slice(), i.as_slice()));
        // Logs that peel for many rounds (short histories, long tails) drop most of their rows
        // early: once a round drops an eighth of what is scanned, later rounds scan a copy of
        // the survivors instead. The dying users' rows (or items') all go this round, so when
        // they alone make an eighth, the round's scan writes that copy as it goes.
        let eighth = us.len() / 8;
        let keep = if rows_u.max(rows_i) >= eighth {
            Keep::Alive
        } else if listing && !on_list {
            Keep::Fragile
        } else {
            Keep::Nothing
        };
        let (scan, copied) = scan_round(us, is, &du, &di, &ucount, &icount, (k_user, k_item), round, keep);
        removed.push(Removed {
            users: dying_users + scan.users_emptied,
            items: dying_items + scan.items_emptied,
            rows: scan.dropped,
        });
        let dropped = scan.dropped;
        below = Some((scan.users_below, scan.items_below));
        let mut copied = copied;
        if keep == Keep::Fragile {
            (listed, listing) = (copied.take(), false);
        }
        let compacted = match copied {
            Some(rows) => Some(rows),
            None if dropped >= eighth => Some(survivors(us, is, &du, &di)),
            None => None,
        };
        match compacted {
            Some(rows) if on_list => listed = Some(rows),
            Some(rows) => kept = Some(rows),
            None if on_list => listed = list,
            None => {}
        }
    }
    finish(&du, &di, &ucount, &icount, removed)
}

struct Scan {
    dropped: usize,
    users_below: Vec<u32>,
    items_below: Vec<u32>,
    /// Nodes not dying this round whose every remaining row went with a dying node.
    users_emptied: usize,
    items_emptied: usize,
}

impl Scan {
    fn empty() -> Scan {
        Scan { dropped: 0, users_below: Vec::new(), items_below: Vec::new(), users_emptied: 0, items_emptied: 0 }
    }
}

/// Rows as their user and item code arrays.
type Rows = (Vec<u32>, Vec<u32>);

/// Where a scan block copies rows to (user codes, item codes), if it copies any.
type Out<'a> = Option<(&'a mut [MaybeUninit<u32>], &'a mut [MaybeUninit<u32>])>;

/// Which rows a scan copies, in row order: none, those that outlive the round (both endpoints
/// alive), or those of them with a fragile endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    Nothing,
    Alive,
    Fragile,
}

/// Rows per task of the scans.
const SCAN_CHUNK: usize = 1 << 16;

/// What one block of rows gives [`scan_round`]: the rows it drops, the endpoints that lose a row
/// (users, items; one list per range of node codes), and how many rows it copied.
struct Block {
    dropped: usize,
    lose_u: Vec<Vec<u32>>,
    lose_i: Vec<Vec<u32>>,
    copied: usize,
}

/// One round over the rows: a row dies in `round` when the earlier of its user's and item's death
/// rounds is `round`; it then leaves the counts of its endpoints that are still alive. Returns the
/// rows dropped, the nodes whose count fell below k (the only candidates for the next round) and
/// how many nodes lost their last row without dying themselves; and the rows `keep` asks for (for
/// [`Keep::Alive`], as [`survivors`] would give them).
///
/// In two steps: the scan over row blocks lists the endpoints that lose a row, split by ranges
/// of node codes, one range per thread; then each thread takes its range's counts down from those
/// lists. A shared decrement (`fetch_sub`) in the scan itself was a locked instruction per dying
/// row's endpoint, each waiting for its counter's line with every load behind it held up — half
/// the scan's samples at the Amazon-M2 shape; within one range the counts are plain loads and
/// stores, fetched ahead.
#[allow(clippy::too_many_arguments)]
fn scan_round(
    us: &[u32],
    is: &[u32],
    du: &[Death],
    di: &[Death],
    ucount: &[AtomicU32],
    icount: &[AtomicU32],
    k: (u32, u32),
    round: Death,
    keep: Keep,
) -> (Scan, Option<Rows>) {
    let threads = rayon::current_num_threads();
    // Node ranges of 2^shift codes, at most one per thread.
    let (su, si) = (crate::ids::range_shift(ucount.len(), threads), crate::ids::range_shift(icount.len(), threads));
    let (ru, ri) = ((ucount.len() >> su) + 1, (icount.len() >> si) + 1);
    // One block's rows: the rows it drops, the endpoints that lose a row (by range), and how many
    // rows it copied to the front of `out`.
    let task = |us: &[u32], is: &[u32], out: Out<'_>| -> Block {
        let ranges = (su, si, ru, ri);
        match keep {
            Keep::Fragile => scan_block::<true>(us, is, out, du, di, ranges, round),
            _ => scan_block::<false>(us, is, out, du, di, ranges, round),
        }
    };
    // Takes one range's counts down by the lists of every block: the nodes that fell to k - 1
    // (below k for the first time), and how many fell to 0.
    let take_down = |lists: &[&Vec<u32>], count: &[AtomicU32], k: u32| -> (Vec<u32>, usize) {
        let (mut below, mut emptied) = (Vec::new(), 0);
        for list in lists {
            for (j, &x) in list.iter().enumerate() {
                if let Some(&y) = list.get(j + buffer::AHEAD) {
                    buffer::prefetch(count.as_ptr().wrapping_add(y as usize));
                }
                // This range's counts are written by this task alone (and read by none other).
                let c = &count[x as usize];
                let before = c.load(Ordering::Relaxed);
                c.store(before - 1, Ordering::Relaxed);
                if before == k {
                    below.push(x);
                }
                emptied += (before == 1) as usize;
            }
        }
        (below, emptied)
    };
    let settle = |parts: &[Block]| -> Scan {
        let dropped = parts.iter().map(|p| p.dropped).sum();
        let ranges = (0..ru).map(|r| (true, r)).chain((0..ri).map(|r| (false, r)));
        let done: Vec<(bool, Vec<u32>, usize)> = ranges
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|(user, r)| {
                let lists: Vec<&Vec<u32>> =
                    parts.iter().map(|p| if user { &p.lose_u[r] } else { &p.lose_i[r] }).collect();
                let (below, emptied) =
                    if user { take_down(&lists, ucount, k.0) } else { take_down(&lists, icount, k.1) };
                (user, below, emptied)
            })
            .collect();
        let mut scan = Scan::empty();
        scan.dropped = dropped;
        for (user, mut below, emptied) in done {
            if user {
                scan.users_below.append(&mut below);
                scan.users_emptied += emptied;
            } else {
                scan.items_below.append(&mut below);
                scan.items_emptied += emptied;
            }
        }
        scan
    };
    let rows = us.par_chunks(SCAN_CHUNK).zip(is.par_chunks(SCAN_CHUNK));
    if keep == Keep::Nothing {
        let parts: Vec<_> = rows.map(|(us, is)| task(us, is, None)).collect();
        return (settle(&parts), None);
    }
    // Each task copies its survivors to the start of its own range of the new arrays; the ranges
    // are then closed up in order. The gaps are never touched, so they cost no memory.
    let n = us.len();
    let (mut nu, mut ni) = (buffer::with_capacity::<u32>(n), buffer::with_capacity::<u32>(n));
    let outs = nu.spare_capacity_mut()[..n]
        .par_chunks_mut(SCAN_CHUNK)
        .zip(ni.spare_capacity_mut()[..n].par_chunks_mut(SCAN_CHUNK));
    let parts: Vec<_> = rows.zip(outs).map(|((us, is), (ou, oi))| task(us, is, Some((ou, oi)))).collect();
    let mut at = 0;
    for (c, part) in parts.iter().enumerate() {
        let len = part.copied;
        // SAFETY: task c wrote `len` values from `c * SCAN_CHUNK`; the destination `at` is not
        // after it, and `ptr::copy` allows the overlap.
        unsafe {
            std::ptr::copy(nu.as_ptr().add(c * SCAN_CHUNK), nu.as_mut_ptr().add(at), len);
            std::ptr::copy(ni.as_ptr().add(c * SCAN_CHUNK), ni.as_mut_ptr().add(at), len);
        }
        at += len;
    }
    // SAFETY: the first `at` values of both were written just above.
    unsafe {
        nu.set_len(at);
        ni.set_len(at);
    }
    (settle(&parts), Some((nu, ni)))
}

/// One block's rows of [`scan_round`]: the rows it drops, the endpoints that lose a row (by range
/// of node codes: `su`, `si` the shifts, `ru`, `ri` the numbers of ranges), and how many rows it
/// copied to the front of `out` — those that outlive the round, or with `FRAGILE_ONLY` those of
/// them with a fragile endpoint (a loop of its own: the two tests combined in one loop made the
/// M2-shape k-core 0.003–0.005 s slower, warm, where it lists nothing).
fn scan_block<const FRAGILE_ONLY: bool>(
    us: &[u32],
    is: &[u32],
    mut out: Out<'_>,
    du: &[Death],
    di: &[Death],
    (su, si, ru, ri): (u32, u32, usize, usize),
    round: Death,
) -> Block {
    let (mut dropped, mut copied) = (0, 0);
    let (mut lose_u, mut lose_i) = (vec![Vec::new(); ru], vec![Vec::new(); ri]);
    for (j, (&u, &i)) in us.iter().zip(is).enumerate() {
        buffer::prefetch_flags(us, is, j + buffer::AHEAD, du, di);
        let (a, b) = (du[u as usize], di[i as usize]);
        let m = a.min(b);
        if m == round {
            dropped += 1;
            if a > round {
                lose_u[u as usize >> su].push(u);
            }
            if b > round {
                lose_i[i as usize >> si].push(i);
            }
        } else if let Some((ou, oi)) = out.as_mut() {
            // Not dying now: alive (both ALIVE or FRAGILE) unless it died in an earlier round;
            // with a fragile endpoint when the lower of the two is FRAGILE.
            if m > round && (!FRAGILE_ONLY || m == FRAGILE) {
                ou[copied].write(u);
                oi[copied].write(i);
                copied += 1;
            }
        }
    }
    Block { dropped, lose_u, lose_i, copied }
}

/// The rows whose user and item are both still alive, as new code arrays (two parallel passes:
/// count per block, then copy into place).
fn survivors(us: &[u32], is: &[u32], du: &[Death], di: &[Death]) -> (Vec<u32>, Vec<u32>) {
    const BLOCK: usize = 1 << 16;
    let alive = |u: u32, i: u32| alive(du[u as usize]) && alive(di[i as usize]);
    let counts: Vec<usize> = us
        .par_chunks(BLOCK)
        .zip(is.par_chunks(BLOCK))
        .map(|(us, is)| {
            let mut c = 0;
            for (j, (&u, &i)) in us.iter().zip(is).enumerate() {
                buffer::prefetch_flags(us, is, j + buffer::AHEAD, du, di);
                c += alive(u, i) as usize;
            }
            c
        })
        .collect();
    let n = counts.iter().sum();
    let (mut nu, mut ni) = (buffer::zeroed::<u32>(n), buffer::zeroed::<u32>(n));
    let mut outs = Vec::with_capacity(counts.len());
    let (mut ru, mut ri) = (&mut nu[..], &mut ni[..]);
    for &c in &counts {
        let (a, b) = ru.split_at_mut(c);
        let (x, y) = ri.split_at_mut(c);
        outs.push((a, x));
        ru = b;
        ri = y;
    }
    us.par_chunks(BLOCK).zip(is.par_chunks(BLOCK)).zip(outs).for_each(|((us, is), (ou, oi))| {
        let mut j = 0;
        for (&u, &i) in us.iter().zip(is) {
            if alive(u, i) {
                ou[j] = u;
                oi[j] = i;
                j += 1;
            }
        }
    });
    (nu, ni)
}

/// Finishes by wave peeling on the rows still alive after the scan rounds of `removed`.
fn peel_rest(
    users: &[u32],
    items: &[u32],
    du: &[Death],
    di: &[Death],
    mut removed: Vec<Removed>,
    k_user: u32,
    k_item: u32,
) -> NodeCore {
    let (sub_users, sub_items) = survivors(users, items, du, di);
    let rest = peel(&sub_users, &sub_items, du.len(), di.len(), k_user, k_item);
    removed.extend(rest.removed);
    NodeCore {
        keep_users: rest.keep_users,
        keep_items: rest.keep_items,
        rounds: removed.len() as u32,
        rows_dropped: removed.iter().map(|r| r.rows).sum(),
        removed,
        user_rows: None,
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
    /// What each of those rounds removed.
    pub removed: Vec<Removed>,
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
    let keep = nodes.keep_rows(users, items);
    Ok(KCore {
        keep,
        keep_users: nodes.keep_users,
        keep_items: nodes.keep_items,
        rounds: nodes.rounds,
        rows_dropped: nodes.rows_dropped,
        removed: nodes.removed,
    })
}

fn check_codes(users: &[u32], items: &[u32], n_users: usize, n_items: usize) -> Result<()> {
    crate::error::same_len("items", users.len(), items.len())?;
    // Codes are u32, so at most 2^32 nodes; and the per-node tables must be allocatable.
    for (name, n) in [("n_users", n_users), ("n_items", n_items)] {
        if n as u128 > u32::MAX as u128 + 1 {
            return Err(CoreError::invalid(name, format!("codes are 32-bit, so at most 2^32 nodes; got {n}")));
        }
        crate::buffer::check_alloc::<u32>(n as u128, name)?;
    }
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
///
/// Wave w holds the nodes that fell below their threshold in wave w - 1 (the first: those below
/// it on the input), so wave w removes exactly the rows of round w. Both endpoints' counts follow
/// every removed row, so a node leaves in the wave where its count reaches zero.
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
    let mut queued_users: Vec<u32> =
        (0..n_users as u32).filter(|&u| ucount[u as usize] > 0 && ucount[u as usize] < k_user).collect();
    let mut queued_items: Vec<u32> =
        (0..n_items as u32).filter(|&i| icount[i as usize] > 0 && icount[i as usize] < k_item).collect();
    let mut keep = vec![true; n];
    if queued_users.is_empty() && queued_items.is_empty() {
        return KCore { keep, keep_users, keep_items, rounds: 0, rows_dropped: 0, removed: Vec::new() };
    }
    let (uoff, urows) = group_rows(users, n_users);
    let (ioff, irows) = group_rows(items, n_items);
    for &u in &queued_users {
        keep_users[u as usize] = false;
    }
    for &i in &queued_items {
        keep_items[i as usize] = false;
    }
    let mut removed = Vec::new();
    while !queued_users.is_empty() || !queued_items.is_empty() {
        let mut wave = Wave { ucount: &mut ucount, icount: &mut icount, gone: Removed::default() };
        let mut next_users = Vec::new();
        let mut next_items = Vec::new();
        for &u in &queued_users {
            for &r in &urows[uoff[u as usize]..uoff[u as usize + 1]] {
                let r = r as usize;
                if keep[r] {
                    keep[r] = false;
                    let i = items[r] as usize;
                    wave.drop_row(users[r] as usize, i);
                    if keep_items[i] && wave.icount[i] < k_item {
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
                    let u = users[r] as usize;
                    wave.drop_row(u, items[r] as usize);
                    if keep_users[u] && wave.ucount[u] < k_user {
                        keep_users[u] = false;
                        next_users.push(u as u32);
                    }
                }
            }
        }
        // A wave can hold nodes whose rows all went in the previous wave: not a round of its own
        // (it can only be the last wave: with no rows removed, nothing falls below k).
        if wave.gone.rows > 0 {
            removed.push(wave.gone);
        }
        queued_users = next_users;
        queued_items = next_items;
    }
    let rows_dropped = removed.iter().map(|r| r.rows).sum();
    KCore { keep, keep_users, keep_items, rounds: removed.len() as u32, rows_dropped, removed }
}

/// The counts a wave updates, and what it removed so far.
struct Wave<'a> {
    ucount: &'a mut [u32],
    icount: &'a mut [u32],
    gone: Removed,
}

impl Wave<'_> {
    /// Row `(u, i)` goes: both counts drop, and a node whose count reaches zero leaves the log.
    fn drop_row(&mut self, u: usize, i: usize) {
        self.gone.rows += 1;
        self.ucount[u] -= 1;
        self.gone.users += (self.ucount[u] == 0) as usize;
        self.icount[i] -= 1;
        self.gone.items += (self.icount[i] == 0) as usize;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Users and items that have a row in `keep`.
    fn present(users: &[u32], items: &[u32], keep: &[bool], nu: usize, ni: usize) -> (Vec<u32>, Vec<u32>) {
        let mut uc = vec![0u32; nu];
        let mut ic = vec![0u32; ni];
        for r in 0..users.len() {
            if keep[r] {
                uc[users[r] as usize] += 1;
                ic[items[r] as usize] += 1;
            }
        }
        (uc, ic)
    }

    /// Plain reference: simultaneous rounds recounting on the surviving rows, and what each round
    /// removed (users and items present before it and absent after it, and its rows).
    fn reference_rounds(
        users: &[u32],
        items: &[u32],
        nu: usize,
        ni: usize,
        ku: u32,
        ki: u32,
        max_rounds: usize,
    ) -> (Vec<bool>, Vec<Removed>) {
        let mut keep = vec![true; users.len()];
        let mut removed = Vec::new();
        while removed.len() < max_rounds {
            let (uc, ic) = present(users, items, &keep, nu, ni);
            let mut rows = 0;
            for r in 0..users.len() {
                if keep[r] && (uc[users[r] as usize] < ku || ic[items[r] as usize] < ki) {
                    keep[r] = false;
                    rows += 1;
                }
            }
            if rows == 0 {
                break;
            }
            let (uc2, ic2) = present(users, items, &keep, nu, ni);
            let gone = |a: &[u32], b: &[u32]| a.iter().zip(b).filter(|(&x, &y)| x > 0 && y == 0).count();
            removed.push(Removed { users: gone(&uc, &uc2), items: gone(&ic, &ic2), rows });
        }
        (keep, removed)
    }

    /// Skewed codes below `m`: a few heavy users or items, a long tail of light ones.
    fn skewed(rng: &mut rand::rngs::StdRng, m: usize) -> u32 {
        let x: f64 = rng.gen_range(0.0..1.0);
        ((x * x * x) * m as f64) as u32
    }

    /// A dense block of `block` users × `block` items with `chains` paths hanging off it, each of
    /// 1..`max_len` rows and each step to a new user or a new item: logs that peel for many
    /// rounds. Returns the rows and the numbers of users and items.
    fn chains_off_block(
        rng: &mut rand::rngs::StdRng,
        block: u32,
        chains: u32,
        max_len: u32,
    ) -> (Vec<u32>, Vec<u32>, u32, u32) {
        let (mut users, mut items) = (Vec::new(), Vec::new());
        for u in 0..block {
            for i in 0..block {
                users.push(u);
                items.push(i);
            }
        }
        let (mut nu, mut ni) = (block.max(1), block.max(1));
        for _ in 0..chains {
            let len = rng.gen_range(1..max_len);
            let (mut u, mut i) = (rng.gen_range(0..nu), rng.gen_range(0..ni));
            for _ in 0..len {
                users.push(u);
                items.push(i);
                if rng.gen_bool(0.5) {
                    u = nu;
                    nu += 1;
                } else {
                    i = ni;
                    ni += 1;
                }
            }
        }
        (users, items, nu, ni)
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
            let (want, removed) = reference_rounds(&users, &items, nu as usize, ni as usize, ku, ki, usize::MAX);
            assert_eq!(got.keep, want);
            assert_eq!(got.rounds, removed.len() as u32);
            assert_eq!(got.removed, removed);
            assert_eq!(got.rows_dropped, want.iter().filter(|k| !**k).count());
        }
    }

    #[test]
    fn many_blocks_and_ranges_match_reference() {
        // Logs of several scan blocks (SCAN_CHUNK rows each), peeling for several rounds, on pools
        // of 1-3 threads (so 1-3 ranges of node codes): the rounds, what each removed, and the
        // surviving rows per user are the reference's.
        let mut rng = rand::rngs::StdRng::seed_from_u64(23);
        let mut most_rounds = 0;
        for threads in 1..=3 {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            for _ in 0..3 {
                let n = rng.gen_range(2 * SCAN_CHUNK..5 * SCAN_CHUNK);
                let (nu, ni) = (rng.gen_range(1_000..60_000usize), rng.gen_range(100..20_000usize));
                let users: Vec<u32> = (0..n).map(|_| skewed(&mut rng, nu)).collect();
                let items: Vec<u32> = (0..n).map(|_| skewed(&mut rng, ni)).collect();
                let (ku, ki) = (rng.gen_range(2..8), rng.gen_range(2..8));
                let (want, removed) = reference_rounds(&users, &items, nu, ni, ku, ki, usize::MAX);
                let got = pool.install(|| {
                    let (uc, ic) = (crate::ids::count_codes(&users, nu), crate::ids::count_codes(&items, ni));
                    kcore_nodes(&users, &items, uc, ic, ku, ki)
                });
                let keep = got.keep_rows(&users, &items);
                assert_eq!(keep, want, "threads {threads}");
                assert_eq!(got.removed, removed, "threads {threads}");
                most_rounds = most_rounds.max(removed.len());
                let mut per_user = vec![0u32; nu];
                for (&u, &k) in users.iter().zip(&want) {
                    per_user[u as usize] += k as u32;
                }
                assert_eq!(got.user_rows.as_deref(), Some(per_user.as_slice()), "threads {threads}");
            }
        }
        assert!(most_rounds >= 3, "some log peels for several rounds ({most_rounds})");
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
            let (want, removed) = reference_rounds(&users, &items, nu, ni, ku, ki, usize::MAX);
            let rounds = removed.len() as u32;
            for scans in 0..4 {
                let uc = crate::ids::count_codes(&users, nu);
                let ic = crate::ids::count_codes(&items, ni);
                let got = kcore_nodes_with(&users, &items, uc, ic, ku, ki, scans, FRAGILE_NODES);
                let keep = got.keep_rows(&users, &items);
                assert_eq!(keep, want, "scan rounds {scans}");
                assert_eq!(got.rounds, rounds, "scan rounds {scans}");
                assert_eq!(got.removed, removed, "scan rounds {scans}");
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
        let (want, removed) = reference_rounds(&users, &items, len as usize, len as usize, 2, 2, usize::MAX);
        assert_eq!(r.keep, want);
        assert_eq!(r.rounds, removed.len() as u32);
        assert_eq!(r.removed, removed);
        assert!(r.rounds > SCAN_ROUNDS);
    }

    #[test]
    fn chains_with_branches_count_every_round_in_both_regimes() {
        // Random forests of paths hanging off a dense block: many rounds, nodes emptied by their
        // neighbours' deaths, compaction and the wave fallback, all compared round by round.
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        for _ in 0..60 {
            let block = rng.gen_range(0..4u32);
            let chains = rng.gen_range(1..4);
            let (users, items, nu, ni) = chains_off_block(&mut rng, block, chains, 90);
            let (ku, ki) = (rng.gen_range(1..4), rng.gen_range(1..4));
            let (want, removed) = reference_rounds(&users, &items, nu as usize, ni as usize, ku, ki, usize::MAX);
            for scans in [0, 1, 5, SCAN_ROUNDS] {
                let uc = crate::ids::count_codes(&users, nu as usize);
                let ic = crate::ids::count_codes(&items, ni as usize);
                let got = kcore_nodes_with(&users, &items, uc, ic, ku, ki, scans, FRAGILE_NODES);
                let keep = got.keep_rows(&users, &items);
                assert_eq!(keep, want, "scan rounds {scans}");
                assert_eq!(got.removed, removed, "scan rounds {scans}");
            }
        }
    }

    thread_local! {
        /// Rounds of `kcore_nodes_with` on this thread that scanned the fragile nodes' list, and
        /// rounds that scanned every row while a list existed (a node not fragile died).
        pub(super) static ROUNDS_SEEN: std::cell::RefCell<(usize, usize)> = const { std::cell::RefCell::new((0, 0)) };
    }

    #[test]
    fn fragile_lists_match_reference() {
        // Every fragility (none, some, all nodes) with the list always kept, on logs that peel
        // for many rounds: skewed logs of several scan blocks, and chains off a dense block. The
        // rows, rounds, what each removed and the rows per user are the reference's, and both the
        // list's rounds and the fallback to every row are taken.
        let mut rng = rand::rngs::StdRng::seed_from_u64(29);
        let mut logs: Vec<(Vec<u32>, Vec<u32>, usize, usize)> = Vec::new();
        for _ in 0..4 {
            let n = rng.gen_range(SCAN_CHUNK..3 * SCAN_CHUNK);
            let (nu, ni) = (rng.gen_range(1_000..30_000usize), rng.gen_range(100..10_000usize));
            let users = (0..n).map(|_| skewed(&mut rng, nu)).collect();
            let items = (0..n).map(|_| skewed(&mut rng, ni)).collect();
            logs.push((users, items, nu, ni));
        }
        for _ in 0..60 {
            let block = rng.gen_range(3..12u32);
            let chains = rng.gen_range(1..6);
            let (users, items, nu, ni) = chains_off_block(&mut rng, block, chains, 60);
            logs.push((users, items, nu as usize, ni as usize));
        }
        ROUNDS_SEEN.with(|c| *c.borrow_mut() = (0, 0));
        for (users, items, nu, ni) in &logs {
            let (nu, ni) = (*nu, *ni);
            let (ku, ki) = (rng.gen_range(1..5), rng.gen_range(1..5));
            let (want, removed) = reference_rounds(users, items, nu, ni, ku, ki, usize::MAX);
            let mut per_user = vec![0u32; nu];
            for (&u, &k) in users.iter().zip(&want) {
                per_user[u as usize] += k as u32;
            }
            for factor in [1, 2, 3, 1 << 20] {
                for scans in [3, SCAN_ROUNDS] {
                    let uc = crate::ids::count_codes(users, nu);
                    let ic = crate::ids::count_codes(items, ni);
                    let got = kcore_nodes_with(users, items, uc, ic, ku, ki, scans, Fragile { factor, share: 0 });
                    let keep = got.keep_rows(users, items);
                    assert_eq!(keep, want, "factor {factor}, scan rounds {scans}");
                    assert_eq!(got.removed, removed, "factor {factor}, scan rounds {scans}");
                    if let Some(rows) = got.user_rows.as_deref() {
                        assert_eq!(rows, per_user.as_slice(), "factor {factor}");
                    }
                }
            }
        }
        let (on_list, fallback) = ROUNDS_SEEN.with(|c| *c.borrow());
        assert!(on_list >= 20 && fallback >= 5, "list rounds {on_list}, fallbacks {fallback}");
    }

    #[test]
    fn single_pass_is_the_first_round_with_strict_thresholds() {
        // Round one of the k-core at k = t + 1 is the released code's `count > t` filter.
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        for _ in 0..300 {
            let (nu, ni) = (rng.gen_range(1..15usize), rng.gen_range(1..15usize));
            let n = rng.gen_range(0..120);
            let users: Vec<u32> = (0..n).map(|_| rng.gen_range(0..nu as u32)).collect();
            let items: Vec<u32> = (0..n).map(|_| rng.gen_range(0..ni as u32)).collect();
            let (tu, ti) = (rng.gen_range(0..5), rng.gen_range(0..5));
            let (want, removed) = reference_rounds(&users, &items, nu, ni, tu + 1, ti + 1, 1);
            let uc = crate::ids::count_codes(&users, nu);
            let ic = crate::ids::count_codes(&items, ni);
            let got = single_pass_nodes(&users, &items, uc.clone(), ic.clone(), tu, ti);
            for r in 0..n {
                let (u, i) = (users[r] as usize, items[r] as usize);
                assert_eq!(want[r], uc[u] > tu && ic[i] > ti);
                assert_eq!(got.keep_users[u] && got.keep_items[i], want[r]);
            }
            let (pu, pi) = present(&users, &items, &want, nu, ni);
            assert_eq!(got.keep_users, pu.iter().map(|&c| c > 0).collect::<Vec<_>>());
            assert_eq!(got.keep_items, pi.iter().map(|&c| c > 0).collect::<Vec<_>>());
            assert_eq!(got.removed, removed);
        }
        // The widest threshold removes everything without overflowing.
        let got = single_pass_nodes(&[0, 1], &[0, 0], vec![1, 1], vec![2], u32::MAX, 0);
        assert_eq!((got.keep_users, got.rows_dropped), (vec![false, false], 2));
    }

    #[test]
    fn out_of_range_code_is_an_error() {
        assert!(kcore(&[3], &[0], 2, 1, 1, 1).is_err());
    }
}
