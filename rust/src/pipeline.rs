//! The fused preprocessing pipeline: raw id columns and timestamps in; dense codes, the k-core,
//! each user's chronological log as CSR and the split out, with no copies between stages.
//!
//! Passes over the rows (n = rows, all in parallel over row blocks or user ranges):
//! 1. encode: min/max, mark the id table, map rows to codes while counting them (per column);
//! 2. k-core: a few read-only scans ([`crate::kcore::kcore_nodes`]);
//! 3. group: count the surviving rows per user and block, then a stable two-pass radix partition
//!    by user (see `group`) carrying timestamp, dense item and rating to their final CSR slot;
//!    in the second pass, in cache, each user's slice is sorted by timestamp — skipped when
//!    already in order, else one sort ([`crate::sort`]) of packed
//!    `(timestamp - min) << bits | position` keys, so ties keep the input order with no second key;
//!    timestamps finer than seconds (`Input::ts_per_second`) are sorted as they are and floored to
//!    seconds right after, in the same cache-resident pass;
//! 4. split: the numpy-linear quantile — from 65,536 rows gathered in the grouping's second pass
//!    (a sampled value bracket, counted per bucket in cache; `split::Tally`), else or when
//!    the bracket misses by sampled or radix selection — and a binary search per user;
//! 5. audit: one pass over the training rows and one over the targets ([`crate::audit`]).
//!
//! The filter is the k-core or, for `Filter::Compat`, one strict pass
//! ([`crate::kcore::single_pass_nodes`]); either way `Prepared::kcore_removed` says what each of
//! its rounds removed. Every stage is timed; `Prepared::stages` reports the seconds of each.

use std::mem::MaybeUninit;
use std::time::Instant;

use rayon::prelude::*;

use crate::audit::{self, Audit};
use crate::buffer::{self, AHEAD};
use crate::column::Column;
use crate::error::{same_len, CoreError, Result};
use crate::ids::{self, Encoded, Ids, Uniques};
use crate::kcore::{self, Filter, Removed};
use crate::split::{self, Split, Target, Valid};
use crate::text::{self, IdText};

/// How to split the prepared log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SplitSpec {
    /// One threshold over all timestamps: the `quantile` (numpy-linear), or `threshold` itself.
    GlobalTemporal {
        quantile: f64,
        threshold: Option<f64>,
        target: Target,
        valid: Valid,
    },
    LeaveOneOut,
}

/// What `prepare` reads (in place, chunks and all). Lengths must agree; `ratings` is optional.
/// `k_user` / `k_item` are the k-core's minimum counts, or the compat filter's thresholds that a
/// count must exceed.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub users: Ids<'a>,
    pub items: Ids<'a>,
    pub timestamps: Column<'a, i64>,
    /// Counts of `timestamps` per second (1: they are seconds). Above 1, each user's rows are
    /// ordered by the full timestamps and stored as whole seconds (floored): sub-second parts
    /// order the rows of one second at no extra pass, and everything after the grouping (the
    /// split, the audit, the output) sees seconds.
    pub ts_per_second: i64,
    pub ratings: Option<Column<'a, f32>>,
    pub filter: Filter,
    pub k_user: u32,
    pub k_item: u32,
    pub split: SplitSpec,
}

/// The prepared log. `items` holds dense item ids `1..=n_items` (0 is padding).
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// Surviving users and items in code order (dense user `u` is `users[u]`, item `j` is `items[j - 1]`).
    pub users: Uniques,
    pub items: Uniques,
    pub offsets: Vec<i64>,
    pub item_csr: Vec<i64>,
    pub timestamps: Vec<i64>,
    pub ratings: Option<Vec<f32>>,
    /// None when nothing survives the k-core (the caller reports it with the dataset's name).
    pub split: Option<Split>,
    pub users_before: usize,
    pub items_before: usize,
    pub kcore_rounds: u32,
    pub rows_dropped: usize,
    /// What each round of the filter removed (`kcore_rounds` entries).
    pub kcore_removed: Vec<Removed>,
    /// The split audit; None with the split.
    pub audit: Option<Audit>,
    /// For a string id column read in place (not for the parquet reader's columns): the id text
    /// check ([`text::check_distinct`]) of its distinct values before the filter, rows being first
    /// rows (beyond 2^32 rows, [`text::check_column`] of every row). The caller's id checks take it
    /// in place of their own pass over every row.
    pub user_check: Option<IdText>,
    pub item_check: Option<IdText>,
    pub stages: Vec<(&'static str, f64)>,
}

struct Clock(Instant, Vec<(&'static str, f64)>);

impl Clock {
    fn lap(&mut self, name: &'static str) {
        let now = Instant::now();
        self.1.push((name, (now - self.0).as_secs_f64()));
        self.0 = now;
    }
}

fn check(input: &Input<'_>) -> Result<()> {
    let n = input.users.len();
    same_len("item ids", n, input.items.len())?;
    check_rest(input, n)
}

/// The checks of everything but the id columns, for `n` rows.
fn check_rest(input: &Input<'_>, n: usize) -> Result<()> {
    same_len("timestamps", n, input.timestamps.len())?;
    if input.ts_per_second < 1 {
        return Err(CoreError::invalid(
            "ts_per_second",
            format!("timestamp counts per second must be >= 1, got {}", input.ts_per_second),
        ));
    }
    if let Some(r) = &input.ratings {
        same_len("ratings", n, r.len())?;
    }
    if input.filter == Filter::KCore && (input.k_user == 0 || input.k_item == 0) {
        return Err(CoreError::invalid(
            "k_core",
            format!("k values must be >= 1, got ({}, {})", input.k_user, input.k_item),
        ));
    }
    if let SplitSpec::GlobalTemporal { quantile, threshold, valid, .. } = input.split {
        if threshold.is_none() && !(quantile > 0.0 && quantile < 1.0) {
            return Err(CoreError::invalid("quantile", format!("quantile must be in (0, 1), got {quantile}")));
        }
        if threshold.is_some_and(f64::is_nan) {
            return Err(CoreError::invalid("threshold", "the test threshold is NaN"));
        }
        if let Valid::Time(vq) = valid {
            if !(vq > 0.0 && vq < 1.0) {
                return Err(CoreError::invalid(
                    "valid_quantile",
                    format!("validation quantile must be in (0, 1), got {vq}"),
                ));
            }
        }
    }
    Ok(())
}

/// From this many rows the two id columns are encoded one after the other (see [`prepare`]).
const SEQUENTIAL_ENCODE_ROWS: usize = 1 << 25;

/// Runs the whole pipeline (see the module doc).
pub fn prepare(input: &Input<'_>) -> Result<Prepared> {
    check(input)?;
    let mut clock = Clock(Instant::now(), Vec::new());
    // Each encode is parallel over row blocks. Small logs encode both columns at once; large ones
    // one after the other, because their per-id tables (the rank bitmap and a count array per
    // block: ~50 MB at 5M users) then overflow the shared cache if both run together (measured at
    // 100M rows: encode 4.5-5.6 s concurrently, 2.9-4.5 s one after the other; at 20M and 3.6M
    // rows concurrent is as fast or faster).
    let rows = input.users.len();
    let sequential = rows >= SEQUENTIAL_ENCODE_ROWS;
    if rows > 0 && rows <= u32::MAX as usize {
        // Both codes in one block that later holds the item output (see [`Codes`]).
        let mut block = buffer::with_capacity::<i64>(rows);
        // SAFETY: the allocation holds 2·rows u32; the two halves are disjoint.
        let words = unsafe { std::slice::from_raw_parts_mut(block.as_mut_ptr() as *mut MaybeUninit<u32>, 2 * rows) };
        let (uo, io) = words.split_at_mut(rows);
        let limit = offsets_up_to(rows);
        // A string column encoded beside the other gets half the threads' worth of row blocks
        // (the columns have as many rows; see [`ids::shared_blocks`]: at the M2 shape, 616k users
        // in 3.65M rows, inserting the distinct strings was most of the work, done once a block).
        let threads = rayon::current_num_threads();
        let (ub, ib) = if sequential { (threads, threads) } else { ids::shared_blocks(rows, rows) };
        // String ids are checked on their distinct values as they are encoded (`check`).
        let strings = |r: Result<ids::EncodedStr>| {
            r.map(|e| {
                (Encoded { codes: Vec::new(), uniques: Uniques::FirstRows(e.first_rows), counts: e.counts }, e.check)
            })
        };
        let into = |ids: &Ids<'_>, out: &mut [MaybeUninit<u32>], blocks: usize| -> Result<(Encoded, Option<IdText>)> {
            match ids {
                Ids::Int(v) => {
                    let (uniques, counts) = ids::encode_int_into(v, out, limit);
                    Ok((Encoded { codes: Vec::new(), uniques, counts }, None))
                }
                Ids::Str(c) => strings(ids::encode_column_into(c, out, blocks, true)),
                Ids::View(c) => strings(ids::encode_column_into(c, out, blocks, true)),
            }
        };
        let (u, i) = (&input.users, &input.items);
        let (users, items) = if sequential {
            (into(u, uo, ub), into(i, io, ib))
        } else {
            rayon::join(|| into(u, uo, ub), || into(i, io, ib))
        };
        let ((users, user_check), (items, item_check)) = (users?, items?);
        clock.lap("encode");
        return with_checks(
            filter_group_split(users, items, Some((block, rows)), input, clock),
            (user_check, item_check),
        );
    }
    let (users, items) = if sequential {
        (encode(&input.users), encode(&input.items))
    } else {
        rayon::join(|| encode(&input.users), || encode(&input.items))
    };
    let (users, items): (Encoded, Encoded) = (users?, items?);
    clock.lap("encode");
    // An empty log, or one of more than 2^32 rows (rare in memory): its string ids are checked row
    // by row here.
    let checks = (id_text(&input.users)?, id_text(&input.items)?);
    with_checks(filter_group_split(users, items, None, input, clock), checks)
}

/// The id text check of a string column, row by row (None for integer ids).
fn id_text(ids: &Ids<'_>) -> Result<Option<IdText>> {
    match ids {
        Ids::Int(_) => Ok(None),
        Ids::Str(c) => text::check_column(c).map(Some),
        Ids::View(c) => text::check_column(c).map(Some),
    }
}

fn with_checks(prepared: Result<Prepared>, (users, items): (Option<IdText>, Option<IdText>)) -> Result<Prepared> {
    prepared.map(|p| Prepared { user_check: users, item_check: items, ..p })
}

/// An id column's codes for the pipeline: integer ids dense enough in their range by their offset
/// in it ([`ids::encode_offsets`]: per-code tables of at most a quarter of the rows, 2^26 codes),
/// anything else by rank ([`ids::encode`]).
fn encode(column: &Ids<'_>) -> Result<Encoded> {
    if let Ids::Int(values) = column {
        if let Some(e) = ids::encode_offsets(values, offsets_up_to(values.len())) {
            return Ok(e);
        }
    }
    ids::encode(column)
}

#[cfg(not(test))]
fn offsets_up_to(rows: usize) -> usize {
    (rows / 4).min(1 << 26)
}

/// Unit tests take both paths: offsets for logs of an even number of rows, ranks for the others.
#[cfg(test)]
fn offsets_up_to(rows: usize) -> usize {
    if rows.is_multiple_of(2) {
        1 << 20
    } else {
        0
    }
}

/// The pipeline from already encoded id columns (e.g. [`crate::parquet_log`], which encodes
/// while it reads): `input.users` and `input.items` are not read (pass empty columns); the codes
/// are in `block`, `rows` of them per column (see `Codes`; `users.codes` and `items.codes` are
/// empty); the stage timings start with the caller's (`stages`, e.g. the read).
pub fn prepare_encoded(
    users: Encoded,
    items: Encoded,
    block: Vec<i64>,
    rows: usize,
    input: &Input<'_>,
    stages: Vec<(&'static str, f64)>,
) -> Result<Prepared> {
    assert!(block.capacity() >= rows && users.codes.is_empty() && items.codes.is_empty());
    check_rest(input, rows)?;
    filter_group_split(users, items, Some((block, rows)), input, Clock(Instant::now(), stages))
}

/// `block`: the codes when they are in one block (see [`Codes`]; `users.codes` and `items.codes`
/// are then empty).
fn filter_group_split(
    users: Encoded,
    items: Encoded,
    block: Option<(Vec<i64>, usize)>,
    input: &Input<'_>,
    mut clock: Clock,
) -> Result<Prepared> {
    // Codes with no rows (the offset encoding's gaps) are no users or items.
    let present = |counts: &[u32]| counts.iter().filter(|&&c| c > 0).count();
    let (users_before, items_before) = (present(&users.counts), present(&items.counts));
    let (ucodes, icodes) = match &block {
        Some((b, rows)) => halves(b, *rows),
        None => (users.codes.as_slice(), items.codes.as_slice()),
    };
    let rows = ucodes.len();
    let (ku, ki) = (input.k_user, input.k_item);
    let core = match input.filter {
        Filter::KCore => kcore::kcore_nodes(ucodes, icodes, users.counts, items.counts, ku, ki),
        Filter::Compat => kcore::single_pass_nodes(ucodes, icodes, users.counts, items.counts, ku, ki),
    };
    let (umap, n_users) = ids::compact_map(&core.keep_users);
    let (imap, n_items) = ids::compact_map(&core.keep_items);
    clock.lap("kcore");
    let mut out = Prepared {
        users: users.uniques.retain(&umap),
        items: items.uniques.retain(&imap),
        offsets: vec![0],
        item_csr: Vec::new(),
        timestamps: Vec::new(),
        ratings: input.ratings.as_ref().map(|_| Vec::new()),
        split: None,
        users_before,
        items_before,
        kcore_rounds: core.rounds,
        rows_dropped: core.rows_dropped,
        kcore_removed: core.removed,
        audit: None,
        user_check: None,
        item_check: None,
        stages: Vec::new(),
    };
    if n_users == 0 {
        out.stages = clock.1;
        return Ok(out);
    }
    let keep = (core.keep_users.as_slice(), core.keep_items.as_slice());
    // The split's quantile is gathered while grouping, unless a threshold is given.
    let fuse = match input.split {
        SplitSpec::GlobalTemporal { quantile, threshold: None, .. } if rows >= FUSE_FROM => Some(quantile),
        _ => None,
    };
    let codes = match block {
        Some((b, rows)) => Codes::Block(b, rows),
        None => Codes::Slices(&users.codes, &items.codes),
    };
    let grouped = group(codes, keep, core.user_rows.as_deref(), &imap, input, fuse);
    drop((users.codes, items.codes));
    clock.lap("group");
    let Grouped { offsets, ts, item_csr, ratings, tally } = grouped;
    debug_assert_eq!((n_items, n_users), (out.items.len(), offsets.len() - 1));
    let split = match input.split {
        SplitSpec::LeaveOneOut => split::leave_one_out(&offsets),
        SplitSpec::GlobalTemporal { quantile, threshold, target, valid } => {
            let t = match threshold {
                Some(t) => t,
                None => match tally.and_then(|t| t.quantile(ts.len(), quantile)) {
                    Some(t) => t,
                    None => split::quantile(&ts, quantile).expect("non-empty log"),
                },
            };
            split::threshold_split(&offsets, &ts, t, target, valid)?
        }
    };
    clock.lap("split");
    out.audit = Some(audit::audit(&offsets, &ts, &item_csr, n_items, &split));
    clock.lap("audit");
    out.offsets = offsets;
    out.item_csr = item_csr;
    out.timestamps = ts;
    out.ratings = ratings;
    out.split = Some(split);
    out.stages = clock.1;
    Ok(out)
}

struct Grouped {
    offsets: Vec<i64>,
    ts: Vec<i64>,
    item_csr: Vec<i64>,
    ratings: Option<Vec<f32>>,
    /// The grouped timestamps' tally for the quantile asked of [`group`], if it sampled a bracket.
    tally: Option<split::Tally>,
}

/// The code columns the filter and [`group`] read: two slices, or one block of `rows` i64 slots
/// whose bytes hold the users' `rows` u32 codes, then the items' (written by
/// [`ids::encode_int_into`]); [`group`] then writes the item output into the block once its first
/// pass has read the codes, so the stage allocates one row-sized buffer fewer (fresh memory is
/// what the pipeline waits on: see [`group`]).
enum Codes<'a> {
    Slices(&'a [u32], &'a [u32]),
    Block(Vec<i64>, usize),
}

impl Codes<'_> {
    fn views(&self) -> (&[u32], &[u32]) {
        match self {
            Codes::Slices(u, i) => (u, i),
            Codes::Block(block, rows) => halves(block, *rows),
        }
    }
}

/// The users' and items' codes in a block (see [`Codes`]).
fn halves(block: &Vec<i64>, rows: usize) -> (&[u32], &[u32]) {
    assert!(block.capacity() >= rows, "the block holds two u32 codes per row");
    let at = block.as_ptr() as *const u32;
    // SAFETY: the allocation holds `rows` i64 = 2·rows u32 (aligned), all written by the encoders
    // (the block's len is 0, or `rows` zeroed slots from the parquet reader, until it becomes the
    // item output; these views borrow it).
    unsafe { (std::slice::from_raw_parts(at, rows), std::slice::from_raw_parts(at.add(rows), rows)) }
}

/// From this many rows the split's quantile is gathered in the grouping's second pass (a sample
/// of the grouped timestamps guesses a bracket; each bucket, still in cache, counts the values
/// below it and collects those inside), which saves the quantile its own pass over the
/// timestamps (at 20M rows the split went from 0.04 s to 0.015 s, the grouping barely moved).
/// Unit tests take this path at every size.
#[cfg(not(test))]
const FUSE_FROM: usize = split::SAMPLE_FROM;
#[cfg(test)]
const FUSE_FROM: usize = 1;

/// A pointer that parallel tasks write through at positions no other task writes.
#[derive(Clone, Copy)]
struct Slots<T>(*mut T);
// SAFETY: tasks write disjoint positions (prefix-sum partitions), and the owning Vec outlives the
// parallel loop that uses the pointer.
unsafe impl<T: Send> Send for Slots<T> {}
unsafe impl<T: Send> Sync for Slots<T> {}

impl<T> Slots<T> {
    /// Writes go to `v`'s allocation (its capacity), whatever its length.
    fn of(v: &mut Vec<T>) -> Self {
        Slots(v.as_mut_ptr())
    }

    fn ptr(self) -> *mut T {
        self.0
    }

    /// # Safety
    /// `at` is in bounds and written by one task only.
    #[inline]
    unsafe fn put(self, at: usize, v: T) {
        unsafe { self.0.add(at).write(v) }
    }
}

/// Rows of one user-bucket stay within about this many rows, so that the second pass of the
/// grouping works in cache (the bucket's rows and its sorted copy are a few MiB at most).
const BUCKET_ROWS: usize = 1 << 16;
const MAX_BUCKETS: usize = 1 << 12;

/// Surviving rows grouped by user, each user's rows in chronological order (ties: input order).
///
/// A scatter straight to each row's final slot writes to as many places as there are users and
/// misses the cache (and the TLB) on almost every row. So it is done in two stable passes, as a
/// radix partition: first by bucket (a run of consecutive users; few enough buckets that every
/// write stream stays in cache), then, per bucket and in cache, by user, where each user's slice
/// is also sorted by timestamp.
///
/// Both passes work in the output arrays themselves: pass 1 leaves each row in its bucket's range
/// of the outputs (the range its users will occupy) as one word in the timestamp slot — user
/// within the bucket, timestamp above a base, item ([`Packing`]) — or, when those do not fit 64
/// bits, as the timestamp with `user << 32 | item` in the item slot; pass 2 reads a bucket's
/// range into a reused buffer, sorts it there and writes the final values back over the same
/// range. Fresh memory is expensive (a first touch
/// costs a page fault and the kernel's zeroing — on this project's VMs it was 40% of a
/// single-threaded run when the rows went through a separate buffer), so the outputs are the only
/// row-sized buffers this stage allocates.
fn group(
    codes: Codes<'_>,
    keep: (&[bool], &[bool]),
    user_rows: Option<&[u32]>,
    imap: &[u32],
    input: &Input<'_>,
    quantile: Option<f64>,
) -> Grouped {
    let (ucodes, icodes) = codes.views();
    // Rows are grouped by their encoded (pre-filter) user code: dropped users simply have no rows,
    // and the one-byte keep flags are all a row needs to know whether it survives (the code maps
    // are four times larger and, at millions of users, miss the cache). Items get their final
    // code in pass 2.
    let (keep_u, keep_i) = keep;
    let n_users = keep_u.len();
    let rows = ucodes.len();
    let blocks = ids::n_blocks(rows, n_users);
    let size = rows.div_ceil(blocks).max(1);
    let alive = |r: usize| -> Option<(u32, u32)> {
        let (u, i) = (ucodes[r], icodes[r]);
        (keep_u[u as usize] && keep_i[i as usize]).then_some((u, i))
    };
    // The keep flags of row r, fetched ahead of `alive(r)`.
    let hint = |r: usize| buffer::prefetch_flags(ucodes, icodes, r, keep_u, keep_i);
    let mut offsets = vec![0i64; n_users + 1];
    // Rows per block and user: needed to give each block its own stable range of every bucket,
    // unless there are at most two blocks and the filter reported the surviving rows per user
    // (it does unless it switched to wave peeling). Two blocks then need no counts: the first
    // fills each bucket from its start, in row order, and the second from its end, walking its
    // rows backwards, so both meet with every row in input order (this saves a pass over the
    // codes on a 2-core machine).
    let from_both_ends = blocks <= 2 && user_rows.is_some();
    let per_block: Vec<Vec<u32>> = if from_both_ends {
        Vec::new()
    } else {
        (0..blocks)
            .into_par_iter()
            .map(|b| {
                let mut c = buffer::zeroed::<u32>(n_users);
                for r in b * size..((b + 1) * size).min(rows) {
                    hint(r + AHEAD);
                    if let Some((u, _)) = alive(r) {
                        c[u as usize] += 1;
                    }
                }
                c
            })
            .collect()
    };
    let rows_of = |u: usize| -> i64 {
        match user_rows {
            Some(counts) if from_both_ends => counts[u] as i64,
            _ => per_block.iter().map(|c| c[u] as i64).sum(),
        }
    };
    for u in 0..n_users {
        offsets[u + 1] = offsets[u] + rows_of(u);
    }
    let n = offsets[n_users] as usize;
    // Buckets of 2^shift consecutive users.
    let want = (n / BUCKET_ROWS).clamp(1, MAX_BUCKETS);
    let shift = ids::range_shift(n_users, want);
    let n_buckets = ((n_users - 1) >> shift) + 1;
    let first_user = |k: usize| (k << shift).min(n_users);
    // Each block's first slot in each bucket (for the second of two blocks counting from both
    // ends: one past its last slot).
    let mut cursors: Vec<Vec<usize>> = Vec::with_capacity(blocks);
    if from_both_ends {
        for b in 0..blocks {
            let at = |k: usize| offsets[first_user(k + b)] as usize;
            cursors.push((0..n_buckets).map(at).collect());
        }
    } else {
        let mut seen = vec![0usize; n_buckets];
        for c in &per_block {
            let mut cur = Vec::with_capacity(n_buckets);
            for (k, s) in seen.iter_mut().enumerate() {
                cur.push(offsets[first_user(k)] as usize + *s);
                *s += c[first_user(k)..first_user(k + 1)].iter().map(|&x| x as usize).sum::<usize>();
            }
            cursors.push(cur);
        }
    }
    drop(per_block);
    // Every slot of 0..n is written exactly once by pass 1 (the cursors partition 0..n), so the
    // outputs are allocated without zeroing and their length set afterwards. When a row's bucket
    // user, timestamp and item fit one u64 (`Packing`), pass 1 writes that word alone into the
    // timestamp output, half the bytes, and pass 2 writes the items into a zeroed (untouched)
    // item output; otherwise, or if a timestamp falls outside the guessed range, the timestamp
    // and `user << 32 | item` are written separately.
    let mut ts = buffer::with_capacity::<i64>(n);
    buffer::populate(&ts);
    let mut ratings = input.ratings.as_ref().map(|_| buffer::with_capacity::<f32>(n));
    ratings.iter().for_each(buffer::populate);
    let packing = Packing::new(&input.timestamps, shift, imap.len());
    let ctx = Pass1 { ucodes, icodes, keep_u, keep_i, shift, size, rows, from_both_ends, input };
    let packed = packing.filter(|p| {
        let start = cursors.clone();
        let out = Slots::of(&mut ts);
        let qr = ratings.as_mut().map(Slots::of);
        // A refused row leaves the whole pass to be redone wide, so the blocks not yet started
        // may be skipped (`all` stops at the first false).
        let ok = cursors.par_iter_mut().enumerate().all(|(b, cur)| {
            let sink = PackedSink { c: buffer::Combiner::new(out.ptr(), cur), p: *p };
            ctx.run(b, cur, sink, qr)
        });
        if !ok {
            cursors.clone_from(&start);
        }
        ok
    });
    let mut item_csr = match packed {
        // Pass 2 writes the items: into the codes' block when there is one (pass 1 was their last
        // reader; its memory is already faulted in), else into untouched zeroed memory.
        Some(_) => match codes {
            Codes::Block(mut block, rows) => {
                debug_assert!(n <= rows && block.capacity() >= rows);
                // SAFETY: the block's first `rows` slots hold the codes (every byte written), and
                // n <= rows.
                unsafe { block.set_len(n) };
                block
            }
            Codes::Slices(..) => {
                let item_csr = buffer::zeroed::<i64>(n);
                buffer::populate(&item_csr);
                item_csr
            }
        },
        None => {
            let mut item_csr = buffer::with_capacity::<i64>(n);
            buffer::populate(&item_csr);
            let (pt, pi) = (Slots::of(&mut ts), Slots::of(&mut item_csr));
            let qr = ratings.as_mut().map(Slots::of);
            cursors.par_iter_mut().enumerate().for_each(|(b, cur)| {
                let sink =
                    WideSink { t: buffer::Combiner::new(pt.ptr(), cur), i: buffer::Combiner::new(pi.ptr(), cur) };
                ctx.run(b, cur, sink, qr);
            });
            drop(codes);
            // SAFETY: pass 1 wrote every slot of 0..n.
            unsafe { item_csr.set_len(n) };
            item_csr
        }
    };
    // SAFETY: pass 1 wrote every slot of 0..n.
    unsafe {
        ts.set_len(n);
        if let Some(r) = ratings.as_mut() {
            r.set_len(n);
        }
    }
    // The quantile's bracket, from a sample of the rows as pass 1 left them (whole seconds, as
    // they will be stored).
    let per_second = input.ts_per_second;
    let bracket = quantile.and_then(|q| {
        let mut sample = match packed {
            Some(p) => split::sample_parts(&[&ts[..]], |w| p.unpack(w).1.div_euclid(per_second)),
            None => split::sample_parts(&[&ts[..]], |t| t.div_euclid(per_second)),
        };
        split::bracket(&mut sample, q)
    });
    // Pass 2: per bucket, in place: by user, then each user's slice by time.
    let bucket_ranges: Vec<(usize, usize)> = (0..n_buckets).map(|k| (first_user(k), first_user(k + 1))).collect();
    let mut tasks = Vec::with_capacity(n_buckets);
    let (mut t_rest, mut i_rest, mut r_rest) = (&mut ts[..], &mut item_csr[..], ratings.as_deref_mut());
    for &(u0, u1) in &bucket_ranges {
        let len = (offsets[u1] - offsets[u0]) as usize;
        let (t, tr) = t_rest.split_at_mut(len);
        let (i, ir) = i_rest.split_at_mut(len);
        let (r, rr) = match r_rest {
            Some(r) => {
                let (x, y) = r.split_at_mut(len);
                (Some(x), Some(y))
            }
            None => (None, None),
        };
        tasks.push((u0, u1, t, i, r));
        (t_rest, i_rest, r_rest) = (tr, ir, rr);
    }
    let tally = tasks
        .into_par_iter()
        .map_init(Bucket::default, |bk, (u0, u1, t, i, r)| {
            bk.sort_in_place(t, i, r, &offsets[u0..=u1], u0, imap, per_second, packed);
            let mut tally = split::Tally::default();
            if let Some(br) = bracket {
                // Each user's slice is in time order now.
                let base = offsets[u0];
                for w in offsets[u0..=u1].windows(2) {
                    tally.add_sorted(&t[(w[0] - base) as usize..(w[1] - base) as usize], br);
                }
            }
            tally
        })
        .collect::<Vec<_>>();
    let tally = split::Tally::concat(tally);
    // The CSR over the surviving users only (the others have no rows).
    let mut kept = Vec::with_capacity(n_users + 1);
    kept.extend(offsets.iter().zip(keep_u).filter(|(_, &k)| k).map(|(&o, _)| o));
    kept.push(n as i64);
    Grouped { offsets: kept, ts, item_csr, ratings, tally: bracket.map(|_| tally) }
}

/// What pass 1 of the grouping reads, for one row block at a time.
struct Pass1<'a, 'b> {
    ucodes: &'a [u32],
    icodes: &'a [u32],
    keep_u: &'a [bool],
    keep_i: &'a [bool],
    shift: u32,
    size: usize,
    rows: usize,
    from_both_ends: bool,
    input: &'a Input<'b>,
}

impl Pass1<'_, '_> {
    /// Puts block `b`'s surviving rows into their buckets through `sink` (the second of two
    /// blocks counting from both ends walks backwards from each bucket's end); ratings go
    /// straight to `qr`. False when the sink refused a row (the block then stops).
    fn run<S: Sink>(&self, b: usize, cur: &mut [usize], mut sink: S, qr: Option<Slots<f32>>) -> bool {
        let (lo, hi) = (b * self.size, ((b + 1) * self.size).min(self.rows));
        let (us, is, ku, ki, shift) = (self.ucodes, self.icodes, self.keep_u, self.keep_i, self.shift);
        let alive = |r: usize| -> Option<(u32, u32)> {
            let (u, i) = (us[r], is[r]);
            (ku[u as usize] && ki[i as usize]).then_some((u, i))
        };
        let hint = |r: usize| buffer::prefetch_flags(us, is, r, ku, ki);
        let input = self.input;
        if self.from_both_ends && b == 1 {
            // Backwards from each bucket's end.
            let ts_parts: Vec<&[i64]> = input.timestamps.range(lo, hi).collect();
            let r_parts: Option<Vec<&[f32]>> = input.ratings.as_ref().map(|c| c.range(lo, hi).collect());
            let mut rts = r_parts.as_ref().map(|p| p.iter().rev().flat_map(|s| s.iter().rev().copied()));
            let mut r = hi;
            for part in ts_parts.iter().rev() {
                for &t in part.iter().rev() {
                    r -= 1;
                    hint(r.wrapping_sub(AHEAD));
                    let rating = rts.as_mut().and_then(Iterator::next);
                    if let Some((u, i)) = alive(r) {
                        let k = u as usize >> shift;
                        cur[k] -= 1;
                        let at = cur[k];
                        // SAFETY: `at` lies in this block's own range of the bucket's slots.
                        unsafe {
                            if !sink.push::<false>(k, at, t, u, i) {
                                // The rows are written again; the lines streamed so far must
                                // not land after that.
                                buffer::store_fence();
                                return false;
                            }
                            if let (Some(p), Some(x)) = (qr, rating) {
                                p.put(at, x);
                            }
                        }
                    }
                }
            }
            // SAFETY: the positions still buffered are this block's.
            unsafe { sink.finish(cur, false) };
            return true;
        }
        let mut rts = input.ratings.as_ref().map(|c| c.range(lo, hi).flat_map(|s| s.iter().copied()));
        let mut r = lo;
        for part in input.timestamps.range(lo, hi) {
            for &t in part {
                hint(r + AHEAD);
                let rating = rts.as_mut().and_then(Iterator::next);
                if let Some((u, i)) = alive(r) {
                    let k = u as usize >> shift;
                    let at = cur[k];
                    cur[k] += 1;
                    // SAFETY: `at` lies in this block's own range of the bucket's slots.
                    unsafe {
                        if !sink.push::<true>(k, at, t, u, i) {
                            buffer::store_fence();
                            return false;
                        }
                        if let (Some(p), Some(x)) = (qr, rating) {
                            p.put(at, x);
                        }
                    }
                }
                r += 1;
            }
        }
        // SAFETY: the positions still buffered are this block's.
        unsafe { sink.finish(cur, true) };
        true
    }
}

/// Where pass 1 writes a surviving row (timestamp `t`, user and item codes `u`, `i`) that goes
/// to slot `at` of bucket `k`.
trait Sink {
    /// False when the row cannot be written this way.
    ///
    /// # Safety
    /// `at` is in bounds and belongs to this sink's block alone.
    unsafe fn push<const FORWARD: bool>(&mut self, k: usize, at: usize, t: i64, u: u32, i: u32) -> bool;

    /// # Safety
    /// As [`buffer::Combiner::finish`].
    unsafe fn finish(self, ends: &[usize], forward: bool);
}

/// The timestamp and `user << 32 | item`, each to its own output.
struct WideSink {
    t: buffer::Combiner,
    i: buffer::Combiner,
}

impl Sink for WideSink {
    #[inline(always)]
    unsafe fn push<const FORWARD: bool>(&mut self, k: usize, at: usize, t: i64, u: u32, i: u32) -> bool {
        let ui = (((u as u64) << 32) | i as u64) as i64;
        // SAFETY: as the caller's.
        unsafe {
            if FORWARD {
                self.t.push_forward(k, at, t);
                self.i.push_forward(k, at, ui);
            } else {
                self.t.push_backward(k, at, t);
                self.i.push_backward(k, at, ui);
            }
        }
        true
    }

    unsafe fn finish(self, ends: &[usize], forward: bool) {
        // SAFETY: as the caller's.
        unsafe {
            self.t.finish(ends, forward);
            self.i.finish(ends, forward);
        }
    }
}

/// One word per row ([`Packing`]).
struct PackedSink {
    c: buffer::Combiner,
    p: Packing,
}

impl Sink for PackedSink {
    #[inline(always)]
    unsafe fn push<const FORWARD: bool>(&mut self, k: usize, at: usize, t: i64, u: u32, i: u32) -> bool {
        let Some(word) = self.p.pack(t, u, i) else { return false };
        // SAFETY: as the caller's.
        unsafe {
            if FORWARD {
                self.c.push_forward(k, at, word);
            } else {
                self.c.push_backward(k, at, word);
            }
        }
        true
    }

    unsafe fn finish(self, ends: &[usize], forward: bool) {
        // SAFETY: as the caller's.
        unsafe { self.c.finish(ends, forward) };
    }
}

/// A row's user within its bucket (the low `shift` bits of its code), its timestamp above `t0`
/// and its item code in one 64-bit word, high to low, for timestamps in `t0..=t0 + t_max`.
#[derive(Clone, Copy, Debug)]
struct Packing {
    t0: i64,
    t_max: u64,
    user_bits: u32,
    item_bits: u32,
}

impl Packing {
    /// The packing for a log whose timestamps are guessed (from evenly spaced rows, widened) to
    /// lie in a range, if user, timestamp and item then fit 64 bits.
    fn new(ts: &Column<'_, i64>, shift: u32, n_items: usize) -> Option<Packing> {
        if ts.is_empty() {
            return None;
        }
        let (t0, t1) = ids::guessed_range(ts);
        let t_max = (t1 as i128 - t0 as i128) as u128;
        let item_bits = u32::BITS - (n_items.max(2) as u32 - 1).leading_zeros();
        let t_bits = u128::BITS - t_max.leading_zeros();
        (shift + t_bits + item_bits <= 64).then_some(Packing { t0, t_max: t_max as u64, user_bits: shift, item_bits })
    }

    #[inline(always)]
    fn pack(&self, t: i64, u: u32, i: u32) -> Option<i64> {
        if t < self.t0 || t.wrapping_sub(self.t0) as u64 > self.t_max {
            return None;
        }
        let local = u as u64 & mask(self.user_bits);
        let high = if self.user_bits == 0 { 0 } else { local << (64 - self.user_bits) };
        Some((high | (t.wrapping_sub(self.t0) as u64) << self.item_bits | i as u64) as i64)
    }

    /// (user within the bucket, timestamp, item code) of a word.
    #[inline(always)]
    fn unpack(&self, word: i64) -> (usize, i64, u32) {
        let w = word as u64;
        let t_bits = 64 - self.user_bits - self.item_bits;
        let rel = (w >> self.item_bits) & mask(t_bits);
        let local = if self.user_bits == 0 { 0 } else { w >> (64 - self.user_bits) };
        (local as usize, self.t0.wrapping_add(rel as i64), (w & mask(self.item_bits)) as u32)
    }
}

/// The low `bits` bits set.
#[inline(always)]
fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// Reused buffers for one bucket at a time.
#[derive(Default)]
struct Bucket {
    ts: Vec<i64>,
    /// Sort keys of packed rows (see `sort_packed`).
    keys: Vec<u64>,
    items: Vec<i64>,
    ratings: Vec<f32>,
    cursor: Vec<usize>,
    scratch: Scratch,
}

impl Bucket {
    /// `ts`/`items`/`ratings` hold a bucket's rows in input order, `items` as `user << 32 | item`
    /// (users `u0..`, `offsets`: their CSR offsets). Rewrites them grouped by user, each user's
    /// slice by timestamp (stable), with items as dense ids `imap[item] + 1`; timestamps counted
    /// `per_second` to the second are then floored to whole seconds.
    ///
    /// The rows are first scattered by user into the bucket's buffers (in cache); each user's
    /// slice is then sorted on its way back into the outputs, so no row is copied twice.
    #[allow(clippy::too_many_arguments)]
    fn sort_in_place(
        &mut self,
        ts: &mut [i64],
        items: &mut [i64],
        mut ratings: Option<&mut [f32]>,
        offsets: &[i64],
        u0: usize,
        imap: &[u32],
        per_second: i64,
        packed: Option<Packing>,
    ) {
        let (m, base) = (ts.len(), offsets[0]);
        if let Some(p) = packed {
            if ratings.is_none() && self.sort_packed(ts, items, offsets, imap, p) {
                if per_second > 1 {
                    ts.iter_mut().for_each(|t| *t = t.div_euclid(per_second));
                }
                return;
            }
        }
        let user = |packed: i64| ((packed as u64) >> 32) as usize - u0;
        // The scatter below writes every one of the first `m` slots, so the buffers are only
        // grown, never cleared (zeroing them per bucket would write every row once more).
        if self.ts.len() < m {
            self.ts.resize(m, 0);
            self.items.resize(m, 0);
        }
        self.cursor.clear();
        self.cursor.extend(offsets[..offsets.len() - 1].iter().map(|&o| (o - base) as usize));
        match packed {
            // One word per row in `ts`; `items` is written below, never read.
            Some(p) => {
                for &w in ts.iter() {
                    let (local, t, item) = p.unpack(w);
                    let c = &mut self.cursor[local];
                    self.ts[*c] = t;
                    self.items[*c] = imap[item as usize] as i64 + 1;
                    *c += 1;
                }
            }
            None => {
                for (&t, &ui) in ts.iter().zip(items.iter()) {
                    let c = &mut self.cursor[user(ui)];
                    self.ts[*c] = t;
                    self.items[*c] = imap[((ui as u64) & 0xFFFF_FFFF) as usize] as i64 + 1;
                    *c += 1;
                }
            }
        }
        if let Some(r) = ratings.as_deref() {
            if self.ratings.len() < m {
                self.ratings.resize(m, 0.0);
            }
            self.cursor.clear();
            self.cursor.extend(offsets[..offsets.len() - 1].iter().map(|&o| (o - base) as usize));
            for (j, &x) in r.iter().enumerate() {
                let local = match packed {
                    Some(p) => p.unpack(ts[j]).0,
                    None => user(items[j]),
                };
                let c = &mut self.cursor[local];
                self.ratings[*c] = x;
                *c += 1;
            }
        }
        for w in offsets.windows(2) {
            let (s, e) = ((w[0] - base) as usize, (w[1] - base) as usize);
            let rated: &[f32] = if ratings.is_some() { &self.ratings[s..e] } else { &[] };
            let from = Rows { ts: &self.ts[s..e], items: &self.items[s..e], ratings: rated };
            let r = ratings.as_deref_mut().map(|r| &mut r[s..e]);
            write_sorted(from, &mut ts[s..e], &mut items[s..e], r, &mut self.scratch);
        }
        if per_second > 1 {
            ts.iter_mut().for_each(|t| *t = t.div_euclid(per_second));
        }
    }

    /// [`Bucket::sort_in_place`] for packed rows without ratings, when a row's time above the
    /// packing's base and its position in its user's slice fit one u64 (false: nothing written).
    /// The scatter by user writes that key straight away, so each user's slice is sorted (if it
    /// is not in order already) with no pass to build keys and no pass to find its time range,
    /// and the timestamp comes back out of the key.
    fn sort_packed(&mut self, ts: &mut [i64], items: &mut [i64], offsets: &[i64], imap: &[u32], p: Packing) -> bool {
        let (m, base) = (ts.len(), offsets[0]);
        let longest = offsets.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0) as u64;
        let pos_bits = u64::BITS - longest.saturating_sub(1).leading_zeros();
        if (u64::BITS - p.t_max.leading_zeros()) + pos_bits > 64 {
            return false;
        }
        if self.keys.len() < m {
            self.keys.resize(m, 0);
        }
        if self.items.len() < m {
            self.items.resize(m, 0);
        }
        self.cursor.clear();
        self.cursor.extend(offsets[..offsets.len() - 1].iter().map(|&o| (o - base) as usize));
        for &w in ts.iter() {
            let (local, t, item) = p.unpack(w);
            let c = self.cursor[local];
            let at = c - (offsets[local] - base) as usize;
            self.keys[c] = (t.wrapping_sub(p.t0) as u64) << pos_bits | at as u64;
            self.items[c] = imap[item as usize] as i64 + 1;
            self.cursor[local] = c + 1;
        }
        let pos_mask = mask(pos_bits);
        for w in offsets.windows(2) {
            let (s, e) = ((w[0] - base) as usize, (w[1] - base) as usize);
            let keys = &mut self.keys[s..e];
            if keys.windows(2).any(|k| k[0] > k[1]) {
                crate::sort::sort_u64(keys, &mut self.scratch.merge);
            }
            let from = &self.items[s..e];
            for ((&k, t), item) in keys.iter().zip(&mut ts[s..e]).zip(&mut items[s..e]) {
                *t = p.t0.wrapping_add((k >> pos_bits) as i64);
                *item = from[(k & pos_mask) as usize];
            }
        }
        true
    }
}

/// One user's rows in input order (`ratings` empty when the log has none).
#[derive(Clone, Copy)]
struct Rows<'a> {
    ts: &'a [i64],
    items: &'a [i64],
    ratings: &'a [f32],
}

#[derive(Default)]
struct Scratch {
    keys: Vec<u64>,
    merge: Vec<u64>,
    pairs: Vec<(i64, u32)>,
}

/// Writes one user's rows into `ts`/`items`/`ratings` sorted by timestamp (stable: ties keep
/// their order).
fn write_sorted(from: Rows<'_>, ts: &mut [i64], items: &mut [i64], ratings: Option<&mut [f32]>, s: &mut Scratch) {
    let n = from.ts.len();
    if n < 2 || from.ts.windows(2).all(|w| w[0] <= w[1]) {
        ts.copy_from_slice(from.ts);
        items.copy_from_slice(from.items);
        if let Some(r) = ratings {
            r.copy_from_slice(from.ratings);
        }
        return;
    }
    let (mn, mx) = from.ts.iter().fold((i64::MAX, i64::MIN), |(a, b), &t| (a.min(t), b.max(t)));
    let span = mx.wrapping_sub(mn) as u64;
    let bits = usize::BITS - (n - 1).leading_zeros(); // enough for positions 0..n-1
    if bits < 64 && span >> (64 - bits) == 0 {
        // One u64 per row: the time offset above the position, so the sort is stable and the
        // timestamp comes back out of the key.
        s.keys.clear();
        s.keys.extend(from.ts.iter().enumerate().map(|(j, &t)| ((t.wrapping_sub(mn) as u64) << bits) | j as u64));
        crate::sort::sort_u64(&mut s.keys, &mut s.merge);
        let mask = (1u64 << bits) - 1;
        for ((&k, t), item) in s.keys.iter().zip(ts.iter_mut()).zip(items.iter_mut()) {
            *t = mn.wrapping_add((k >> bits) as i64);
            *item = from.items[(k & mask) as usize];
        }
        if let Some(r) = ratings {
            for (&k, x) in s.keys.iter().zip(r.iter_mut()) {
                *x = from.ratings[(k & mask) as usize];
            }
        }
    } else {
        s.pairs.clear();
        s.pairs.extend(from.ts.iter().enumerate().map(|(j, &t)| (t, j as u32)));
        s.pairs.sort_unstable();
        for ((&(tv, j), t), item) in s.pairs.iter().zip(ts.iter_mut()).zip(items.iter_mut()) {
            *t = tv;
            *item = from.items[j as usize];
        }
        if let Some(r) = ratings {
            for (&(_, j), x) in s.pairs.iter().zip(r.iter_mut()) {
                *x = from.ratings[j as usize];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The column cut into uneven chunks, as polars hands a column read from parquet.
    fn chunks<T: Copy + Send + Sync>(v: &[T]) -> Column<'_, T> {
        let mut parts = Vec::new();
        let mut rest = v;
        let mut k = 1;
        while !rest.is_empty() {
            let (a, b) = rest.split_at((k * 37 % 101).min(rest.len()));
            parts.push(a);
            parts.push(&b[..0]);
            rest = b;
            k += 1;
        }
        Column::new(parts)
    }

    fn users_as_one<T: Copy + Send + Sync>(v: &[T]) -> Column<'_, T> {
        v.into()
    }

    /// The k-core input (`k` for users and items) over chunked integer columns.
    fn chunked_input<'a>(
        (users, items, ts): (&'a [i64], &'a [i64], &'a [i64]),
        ratings: Option<&'a [f32]>,
        k: u32,
        split: SplitSpec,
    ) -> Input<'a> {
        Input {
            users: Ids::Int(chunks(users)),
            items: Ids::Int(chunks(items)),
            timestamps: chunks(ts),
            ts_per_second: 1,
            ratings: ratings.map(chunks),
            filter: Filter::KCore,
            k_user: k,
            k_item: k,
            split,
        }
    }

    /// The step-by-step path: encode, row-level k-core, stable sort by (user, time), split.
    /// Kept raw users, offsets, item CSR, timestamp CSR and the split.
    type Reference = (Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>, Option<Split>);

    /// Asserts that `got` keeps the reference's users and holds its offsets, item CSR and
    /// timestamp CSR (`case` names the case in a failure); returns the reference's split.
    fn assert_like_reference(
        got: &Prepared,
        (users, items, ts): (&[i64], &[i64], &[i64]),
        k: u32,
        spec: SplitSpec,
        case: &str,
    ) -> Option<Split> {
        let (kept_users, offsets, items_csr, ts_csr, split) = reference(users, items, ts, k, spec);
        assert_eq!(got.users, Uniques::Int(kept_users), "{case}");
        assert_eq!(got.offsets, offsets, "{case}");
        assert_eq!(got.item_csr, items_csr, "{case}");
        assert_eq!(got.timestamps, ts_csr, "{case}");
        split
    }

    fn reference(users: &[i64], items: &[i64], ts: &[i64], k: u32, spec: SplitSpec) -> Reference {
        let (uc, uu) = ids::encode_i64(users);
        let (ic, iu) = ids::encode_i64(items);
        let core = kcore::kcore(&uc, &ic, uu.len(), iu.len(), k, k).unwrap();
        let (umap, nu) = ids::compact_map(&core.keep_users);
        let (imap, _) = ids::compact_map(&core.keep_items);
        let rows: Vec<usize> = (0..users.len()).filter(|&r| core.keep[r]).collect();
        let mut order = rows.clone();
        order.sort_by_key(|&r| (umap[uc[r] as usize], ts[r], r));
        let kept_users: Vec<i64> = uu.iter().zip(&umap).filter(|(_, &m)| m != u32::MAX).map(|(&v, _)| v).collect();
        let mut offsets = vec![0i64; nu + 1];
        for &r in &rows {
            offsets[umap[uc[r] as usize] as usize + 1] += 1;
        }
        for u in 0..nu {
            offsets[u + 1] += offsets[u];
        }
        let items_csr: Vec<i64> = order.iter().map(|&r| imap[ic[r] as usize] as i64 + 1).collect();
        let ts_csr: Vec<i64> = order.iter().map(|&r| ts[r]).collect();
        let split = (nu > 0).then(|| match spec {
            SplitSpec::LeaveOneOut => split::leave_one_out(&offsets),
            SplitSpec::GlobalTemporal { quantile, threshold, target, valid } => {
                let t = threshold.unwrap_or_else(|| split::quantile(&ts_csr, quantile).unwrap());
                split::threshold_split(&offsets, &ts_csr, t, target, valid).unwrap()
            }
        });
        (kept_users, offsets, items_csr, ts_csr, split)
    }

    #[test]
    fn fused_matches_step_by_step_on_random_logs() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for case in 0..400 {
            let n = rng.gen_range(0..400);
            let nu = rng.gen_range(1..30);
            let ni = rng.gen_range(1..30);
            let span = if case % 3 == 0 { 5 } else { 1_000_000_000 };
            let users: Vec<i64> = (0..n).map(|_| rng.gen_range(0..nu) * 1000 - 7).collect();
            let items: Vec<i64> = (0..n).map(|_| rng.gen_range(0..ni)).collect();
            let ts: Vec<i64> = (0..n).map(|_| rng.gen_range(0..span)).collect();
            let ratings: Vec<f32> = (0..n).map(|r| r as f32).collect();
            let k = rng.gen_range(1..4);
            let spec = if case % 4 == 0 {
                SplitSpec::LeaveOneOut
            } else {
                SplitSpec::GlobalTemporal {
                    quantile: 0.8,
                    threshold: None,
                    target: Target::All,
                    valid: Valid::LastItem,
                }
            };
            let got = prepare(&chunked_input((&users, &items, &ts), Some(&ratings), k, spec)).unwrap();
            let (kept_users, offsets, items_csr, ts_csr, split) = reference(&users, &items, &ts, k, spec);
            assert_eq!(got.users, Uniques::Int(kept_users));
            let ((uc, uu), (ic, iu)) = (ids::encode_i64(&users), ids::encode_i64(&items));
            assert_eq!(got.kcore_removed, kcore::kcore(&uc, &ic, uu.len(), iu.len(), k, k).unwrap().removed);
            if got.split.is_none() {
                assert!(split.is_none());
                continue;
            }
            assert_eq!(got.offsets, offsets);
            assert_eq!(got.item_csr, items_csr);
            assert_eq!(got.timestamps, ts_csr);
            assert_eq!(format!("{:?}", got.split), format!("{split:?}")); // NaN thresholds compare equal as text
                                                                          // Ratings travel with their rows: rating r was row r, whose timestamp is ts[r].
            for (j, &rt) in got.ratings.as_ref().unwrap().iter().enumerate() {
                assert_eq!(ts[rt as usize], got.timestamps[j]);
            }
        }
    }

    #[test]
    fn sub_second_timestamps_order_rows_within_a_second_and_are_stored_as_seconds() {
        // Reference: the rows stably sorted by their full timestamps, then the step-by-step path on
        // whole seconds (floored, also before 1970), where equal seconds keep that order.
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        for case in 0..300 {
            let n = rng.gen_range(0..300);
            let per = [1000i64, 1_000_000, 7][case % 3];
            let users: Vec<i64> = (0..n).map(|_| rng.gen_range(0..8)).collect();
            let items: Vec<i64> = (0..n).map(|_| rng.gen_range(0..20)).collect();
            // Few distinct seconds, so that most rows share theirs with others of the same user.
            let fine: Vec<i64> = (0..n).map(|_| rng.gen_range(-3 * per..6 * per)).collect();
            let ratings: Vec<f32> = (0..n).map(|r| r as f32).collect();
            let spec = if case % 2 == 0 {
                SplitSpec::LeaveOneOut
            } else {
                SplitSpec::GlobalTemporal { quantile: 0.6, threshold: None, target: Target::Last, valid: Valid::None }
            };
            let mut input = chunked_input((&users, &items, &fine), Some(&ratings), 1, spec);
            input.ts_per_second = per;
            let got = prepare(&input).unwrap();
            let mut by_time: Vec<usize> = (0..n).collect();
            by_time.sort_by_key(|&r| (fine[r], r));
            let u2: Vec<i64> = by_time.iter().map(|&r| users[r]).collect();
            let i2: Vec<i64> = by_time.iter().map(|&r| items[r]).collect();
            let s2: Vec<i64> = by_time.iter().map(|&r| fine[r].div_euclid(per)).collect();
            let (kept_users, offsets, items_csr, ts_csr, split) = reference(&u2, &i2, &s2, 1, spec);
            assert_eq!(got.users, Uniques::Int(kept_users), "case {case}");
            if got.split.is_none() {
                assert!(split.is_none());
                continue;
            }
            assert_eq!(got.offsets, offsets, "case {case}");
            assert_eq!(got.item_csr, items_csr, "case {case}");
            assert_eq!(got.timestamps, ts_csr, "case {case}");
            assert_eq!(format!("{:?}", got.split), format!("{split:?}"), "case {case}");
            // Each rating (its row number) sits where that row's full time puts it.
            let rows: Vec<usize> = got.ratings.as_ref().unwrap().iter().map(|&r| r as usize).collect();
            for w in got.offsets.windows(2) {
                let seg = &rows[w[0] as usize..w[1] as usize];
                assert!(seg.windows(2).all(|p| (fine[p[0]], p[0]) < (fine[p[1]], p[1])), "case {case}");
            }
        }
        let mut input = chunked_input((&[1], &[1], &[5]), None, 1, SplitSpec::LeaveOneOut);
        input.ts_per_second = 0;
        assert!(prepare(&input).is_err());
    }

    #[test]
    fn fused_matches_step_by_step_on_a_log_with_many_buckets() {
        // Enough rows and users for several row blocks and user buckets.
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let n = 400_000;
        let users: Vec<i64> = (0..n).map(|_| rng.gen_range(0..30_000i64).pow(2) % 40_000).collect();
        let items: Vec<i64> = (0..n).map(|_| rng.gen_range(0..5_000)).collect();
        let ts: Vec<i64> = (0..n).map(|_| rng.gen_range(0..2_000)).collect();
        let spec =
            SplitSpec::GlobalTemporal { quantile: 0.7, threshold: None, target: Target::Last, valid: Valid::Time(0.8) };
        let input = Input {
            users: Ids::Int(chunks(&users)),
            items: Ids::Int(users_as_one(&items)),
            timestamps: chunks(&ts),
            ts_per_second: 1,
            ratings: None,
            filter: Filter::KCore,
            k_user: 3,
            k_item: 3,
            split: spec,
        };
        let got = prepare(&input).unwrap();
        let split = assert_like_reference(&got, (&users, &items, &ts), 3, spec, "");
        assert_eq!(format!("{:?}", got.split), format!("{split:?}"));
    }

    #[test]
    fn long_segments_and_wide_timestamps_sort_stably() {
        // One user with many rows (key path) and extreme timestamps (pair path); every row's
        // timestamp, item and rating must come out together.
        let n = 5000usize;
        let users = vec![1i64; n];
        let items: Vec<i64> = (0..n as i64).collect();
        let ratings: Vec<f32> = (0..n).map(|r| r as f32 + 0.5).collect();
        for ts in [
            (0..n).map(|j| ((j * 7919) % 13) as i64).collect::<Vec<i64>>(),
            (0..n).map(|j| if j % 2 == 0 { i64::MIN + j as i64 % 3 } else { i64::MAX - j as i64 % 3 }).collect(),
        ] {
            for rated in [None, Some(ratings.as_slice())] {
                let spec = SplitSpec::GlobalTemporal {
                    quantile: 0.5,
                    threshold: None,
                    target: Target::Last,
                    valid: Valid::None,
                };
                let got = prepare(&Input {
                    users: Ids::Int(users.as_slice().into()),
                    items: Ids::Int(items.as_slice().into()),
                    timestamps: ts.as_slice().into(),
                    ts_per_second: 1,
                    ratings: rated.map(Into::into),
                    filter: Filter::KCore,
                    k_user: 1,
                    k_item: 1,
                    split: spec,
                })
                .unwrap();
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by_key(|&r| (ts[r], r));
                assert_eq!(got.item_csr, order.iter().map(|&r| items[r] + 1).collect::<Vec<_>>());
                assert_eq!(got.timestamps, order.iter().map(|&r| ts[r]).collect::<Vec<_>>());
                match rated {
                    Some(x) => assert_eq!(got.ratings.unwrap(), order.iter().map(|&r| x[r]).collect::<Vec<_>>()),
                    None => assert!(got.ratings.is_none()),
                }
            }
        }
    }

    #[test]
    fn every_bucket_path_matches_the_reference() {
        // The same logs in five row orders: shuffled, by time (every user's slice already in
        // order), by (user, time), shuffled with a 64-bit timestamp span over several users
        // (the pair sort of long slices), and by time with a few rows swapped (some users out
        // of order). Half the logs are small, half have thousands of rows.
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for case in 0..80 {
            let n = if case % 2 == 0 { rng.gen_range(1..3000) } else { rng.gen_range(4096..12_000) };
            let nu = rng.gen_range(1..200);
            let wide = case % 5 == 3;
            let mut rows: Vec<(i64, i64, i64)> = (0..n)
                .map(|_| {
                    let t = if wide {
                        [i64::MIN, -1, 0, i64::MAX][rng.gen_range(0..4)].wrapping_sub(rng.gen_range(-3..3i64).signum())
                    } else {
                        rng.gen_range(0..50)
                    };
                    (rng.gen_range(0..nu), rng.gen_range(0..40), t)
                })
                .collect();
            match case % 5 {
                1 => rows.sort_by_key(|r| r.2),
                2 => rows.sort_by_key(|r| (r.0, r.2)),
                4 => {
                    rows.sort_by_key(|r| r.2);
                    for _ in 0..n / 40 + 1 {
                        rows.swap(rng.gen_range(0..n), rng.gen_range(0..n));
                    }
                }
                _ => {}
            }
            let users: Vec<i64> = rows.iter().map(|r| r.0).collect();
            let items: Vec<i64> = rows.iter().map(|r| r.1).collect();
            let ts: Vec<i64> = rows.iter().map(|r| r.2).collect();
            let ratings: Vec<f32> = (0..n).map(|r| r as f32).collect();
            let spec = SplitSpec::LeaveOneOut;
            let got = prepare(&chunked_input((&users, &items, &ts), Some(&ratings), 1, spec)).unwrap();
            assert_like_reference(&got, (&users, &items, &ts), 1, spec, &format!("case {case}"));
            // Ratings travel with their rows, ties in input order: rating r was row r.
            let order: Vec<usize> = got.ratings.unwrap().iter().map(|&r| r as usize).collect();
            let mut want: Vec<usize> = (0..n).collect();
            want.sort_by_key(|&r| (users[r], ts[r], r));
            assert_eq!(order, want, "case {case}");
        }
    }

    #[test]
    fn packed_rows_round_trip_and_refuse_what_does_not_fit() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        for case in 0..2000 {
            let user_bits = [0, 1, 9, 20, 31][case % 5];
            let item_bits = [1, 5, 19, 32][case / 5 % 4];
            let t_bits = rng.gen_range(0..=64 - user_bits - item_bits);
            let t0: i64 = [0, -1 << 40, i64::MIN, i64::MAX - 5, rng.gen()][case / 20 % 5];
            let t_max = mask(t_bits).min((i64::MAX as i128 - t0 as i128).max(0) as u64);
            let p = Packing { t0, t_max, user_bits, item_bits };
            let u: u32 = rng.gen();
            let i = (rng.gen::<u64>() & mask(item_bits)) as u32;
            let t = t0.wrapping_add(rng.gen_range(0..=t_max) as i64);
            let w = p.pack(t, u, i).expect("in range");
            assert_eq!(p.unpack(w), ((u as u64 & mask(user_bits)) as usize, t, i), "case {case} {p:?}");
            if t0 > i64::MIN {
                assert_eq!(p.pack(t0 - 1, u, i), None);
            }
            if (t0 as i128 + t_max as i128) < i64::MAX as i128 {
                assert_eq!(p.pack(t0 + t_max as i64 + 1, u, i), None);
            }
        }
    }

    #[test]
    fn packed_keys_sort_a_bucket_as_the_general_path_does() {
        // A bucket of packed rows sorted through keys built in the scatter (`sort_packed`) must
        // give what the general path gives (forced here by a ratings column, which it carries
        // along and this test ignores): users' slices in time order, ties in input order, items
        // mapped; and `sort_packed` must refuse (write nothing) when a time and a position do
        // not fit one u64, leaving the bucket to the general path.
        let mut rng = rand::rngs::StdRng::seed_from_u64(23);
        let (mut keyed, mut refused) = (0, 0);
        for case in 0..600 {
            let user_bits = [0u32, 2, 5][case % 3];
            let n_users = 1usize << user_bits;
            let item_bits = [1u32, 4, 12][case / 3 % 3];
            let n_items = 1usize << item_bits;
            // Timestamp spans from a few seconds (many ties) to nearly all the word leaves.
            let t_room = 64 - user_bits - item_bits;
            let t_bits = [2, 20, t_room - 3, t_room][case / 9 % 4];
            let p = Packing { t0: rng.gen_range(-1000..1000), t_max: mask(t_bits), user_bits, item_bits };
            let lens: Vec<usize> = (0..n_users).map(|_| rng.gen_range(0..[3, 40, 300][case % 3])).collect();
            let mut offsets = vec![rng.gen_range(0..50i64)];
            for l in &lens {
                offsets.push(offsets.last().unwrap() + *l as i64);
            }
            // Rows in a random order of users (the input order within each user is kept).
            let mut order: Vec<usize> = lens.iter().enumerate().flat_map(|(u, &l)| std::iter::repeat_n(u, l)).collect();
            rand::seq::SliceRandom::shuffle(&mut order[..], &mut rng);
            let words: Vec<i64> = order
                .iter()
                .map(|&u| {
                    let t = p.t0 + (rng.gen::<u64>() & mask(t_bits.min(rng.gen_range(1..=t_bits)))) as i64;
                    p.pack(t, u as u32, rng.gen_range(0..n_items as u32)).unwrap()
                })
                .collect();
            let imap: Vec<u32> = (0..n_items as u32).map(|i| i * 3 + 1).collect();
            let m = words.len();
            let (mut ts_a, mut it_a) = (words.clone(), vec![0i64; m]);
            let mut bucket = Bucket::default();
            if bucket.sort_packed(&mut ts_a, &mut it_a, &offsets, &imap, p) {
                keyed += 1;
            } else {
                refused += 1;
                assert_eq!((ts_a.clone(), it_a.clone()), (words.clone(), vec![0i64; m]), "case {case}: refused, wrote");
                continue;
            }
            let (mut ts_b, mut it_b, mut r_b) = (words.clone(), vec![0i64; m], vec![0f32; m]);
            Bucket::default().sort_in_place(&mut ts_b, &mut it_b, Some(&mut r_b), &offsets, 0, &imap, 1, Some(p));
            assert_eq!(ts_a, ts_b, "case {case}");
            assert_eq!(it_a, it_b, "case {case}");
        }
        assert!(keyed > 100 && refused > 20, "keyed {keyed}, refused {refused}");
    }

    #[test]
    fn timestamps_outside_the_guessed_range_fall_back_to_wide_rows() {
        // More rows than the range sample, with a few timestamps far outside the sampled range
        // at rows the sample skips: pass 1 starts packed, meets them and starts again wide.
        // Also with ratings, which both attempts write.
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        for case in 0..6 {
            let n = 150_000 + case * 7;
            let users: Vec<i64> = (0..n).map(|_| rng.gen_range(0..3000)).collect();
            let items: Vec<i64> = (0..n).map(|_| rng.gen_range(0..500)).collect();
            let mut ts: Vec<i64> = (0..n).map(|_| rng.gen_range(0..1000)).collect();
            let far = [5_000, 1 << 40, -(1 << 50)][case % 3];
            let stride = n / (1 << 16);
            for _ in 0..case {
                let r = rng.gen_range(0..n);
                if r % stride != 0 {
                    ts[r] = far + r as i64;
                }
            }
            let ratings: Vec<f32> = (0..n).map(|r| r as f32).collect();
            let spec = SplitSpec::LeaveOneOut;
            let got = prepare(&chunked_input((&users, &items, &ts), Some(&ratings), 2, spec)).unwrap();
            assert_like_reference(&got, (&users, &items, &ts), 2, spec, &format!("case {case}"));
            // Rating r was row r: each output row carries its own row's timestamp and item.
            let Uniques::Int(kept_items) = &got.items else { panic!("integer items") };
            let order: Vec<usize> = got.ratings.unwrap().iter().map(|&r| r as usize).collect();
            assert_eq!(order.len(), got.timestamps.len(), "case {case}");
            for (j, &r) in order.iter().enumerate() {
                let item = kept_items[got.item_csr[j] as usize - 1];
                assert_eq!((ts[r], items[r]), (got.timestamps[j], item), "case {case}");
            }
        }
    }

    #[test]
    fn row_blocks_keep_input_order_on_one_two_and_three_threads() {
        // Enough rows for several row blocks: two blocks fill each bucket from both ends (no
        // per-block counts), other counts use the counted cursors. k = 4 drops rows (the filter
        // scans them), k = 1 drops none (no scan); spread-out ids take the hashed encoding. Every
        // user's rows must come out by time, ties in input order, either way.
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        let n = 300_000;
        let user_draw: Vec<i64> = (0..n).map(|_| rng.gen_range(0..20_000i64)).collect();
        let items: Vec<i64> = (0..n).map(|_| rng.gen_range(0..30_000i64)).collect();
        let ts: Vec<i64> = (0..n).map(|_| rng.gen_range(0..40)).collect();
        let ratings: Vec<f32> = (0..n).map(|r| r as f32).collect();
        let spec = SplitSpec::LeaveOneOut;
        for (k, spread) in [(4u32, 3i64), (1, 3), (1, 1_000_000_007)] {
            let users: Vec<i64> = user_draw.iter().map(|&u| u * spread).collect();
            let (kept_users, offsets, items_csr, ts_csr, _) = reference(&users, &items, &ts, k, spec);
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let got =
                    pool.install(|| prepare(&chunked_input((&users, &items, &ts), Some(&ratings), k, spec))).unwrap();
                let case = format!("k {k}, spread {spread}, {threads} threads");
                assert_eq!(got.rows_dropped > 0, k > 1, "{case}");
                assert_eq!(got.users, Uniques::Int(kept_users.clone()), "{case}");
                assert_eq!(got.offsets, offsets, "{case}");
                assert_eq!(got.item_csr, items_csr, "{case}");
                assert_eq!(got.timestamps, ts_csr, "{case}");
                // Rating r was row r: each user's rows by (time, input row).
                let rows: Vec<usize> = got.ratings.unwrap().iter().map(|&r| r as usize).collect();
                for w in got.offsets.windows(2) {
                    let seg = &rows[w[0] as usize..w[1] as usize];
                    assert!(seg.windows(2).all(|p| (ts[p[0]], p[0]) < (ts[p[1]], p[1])), "{case}");
                    assert!(seg.iter().all(|&r| users[r] == users[seg[0]]), "{case}");
                }
            }
        }
    }

    #[test]
    fn a_log_that_peels_past_the_scan_rounds_matches_the_reference() {
        // A chain (user u rated items u and u + 1) loses a node per round at each of its two ends
        // for ~60 rounds: past the scan rounds, so the filter peels the rest in waves; a dense
        // block of users and items beside it survives.
        let mut rows: Vec<(i64, i64)> = (0..60).flat_map(|u| [(u, u), (u, u + 1)]).collect();
        rows.extend((100..110).flat_map(|u| (200..206).map(move |i| (u, i))));
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for j in (1..rows.len()).rev() {
            rows.swap(j, rng.gen_range(0..=j));
        }
        let users: Vec<i64> = rows.iter().map(|r| r.0).collect();
        let items: Vec<i64> = rows.iter().map(|r| r.1).collect();
        let ts: Vec<i64> = (0..rows.len() as i64).map(|t| t % 7).collect();
        let spec = SplitSpec::LeaveOneOut;
        let got = prepare(&chunked_input((&users, &items, &ts), None, 2, spec)).unwrap();
        assert!(got.kcore_rounds > kcore::SCAN_ROUNDS, "{} rounds", got.kcore_rounds);
        assert_like_reference(&got, (&users, &items, &ts), 2, spec, "");
        let ((uc, uu), (ic, iu)) = (ids::encode_i64(&users), ids::encode_i64(&items));
        assert_eq!(got.kcore_removed, kcore::kcore(&uc, &ic, uu.len(), iu.len(), 2, 2).unwrap().removed);
    }

    #[test]
    fn compat_filter_is_one_strict_pass() {
        // Counts on the input: users 1:2 2:2 3:1, items 10:2 11:1 12:2. Thresholds "> 1": user 3
        // and item 11 fail, taking rows (3, 12) and (1, 11); user 1 and item 12 are left with one
        // row each and stay (there is no second round).
        let users: &[i64] = &[1, 1, 2, 2, 3];
        let items: &[i64] = &[10, 11, 10, 12, 12];
        let ts: &[i64] = &[1, 2, 3, 4, 5];
        let spec = SplitSpec::LeaveOneOut;
        let mut input = Input {
            users: Ids::Int(users.into()),
            items: Ids::Int(items.into()),
            timestamps: ts.into(),
            ts_per_second: 1,
            ratings: None,
            filter: Filter::Compat,
            k_user: 1,
            k_item: 1,
            split: spec,
        };
        let got = prepare(&input).unwrap();
        assert_eq!(got.users, Uniques::Int(vec![1, 2]));
        assert_eq!(got.items, Uniques::Int(vec![10, 12]));
        assert_eq!((got.offsets, got.item_csr), (vec![0, 1, 3], vec![1, 1, 2]));
        assert_eq!(got.kcore_removed, vec![Removed { users: 1, items: 1, rows: 2 }]);
        // The k-core with k = 2 goes on (user 1 and item 12, then the last row) to nothing.
        input.filter = Filter::KCore;
        input.k_user = 2;
        input.k_item = 2;
        assert!(prepare(&input).unwrap().split.is_none());
        // Compat accepts 0 (keep everything).
        input.filter = Filter::Compat;
        input.k_user = 0;
        input.k_item = 0;
        assert_eq!(prepare(&input).unwrap().rows_dropped, 0);
    }

    #[test]
    fn bad_arguments_are_refused_before_work() {
        let spec =
            SplitSpec::GlobalTemporal { quantile: 1.5, threshold: None, target: Target::Last, valid: Valid::None };
        let one: &[i64] = &[1];
        let input = Input {
            users: Ids::Int(one.into()),
            items: Ids::Int(one.into()),
            timestamps: one.into(),
            ts_per_second: 1,
            ratings: None,
            filter: Filter::KCore,
            k_user: 1,
            k_item: 1,
            split: spec,
        };
        assert!(matches!(prepare(&input), Err(CoreError::InvalidArgument { name: "quantile", .. })));
        let two: &[i64] = &[1, 2];
        let input = Input { timestamps: two.into(), ..input };
        assert!(matches!(prepare(&input), Err(CoreError::LengthMismatch { .. })));
    }

    #[test]
    fn everything_filtered_gives_no_split() {
        let spec = SplitSpec::LeaveOneOut;
        let two: &[i64] = &[1, 2];
        let input = Input {
            users: Ids::Int(two.into()),
            items: Ids::Int(two.into()),
            timestamps: two.into(),
            ts_per_second: 1,
            ratings: None,
            filter: Filter::KCore,
            k_user: 5,
            k_item: 5,
            split: spec,
        };
        let got = prepare(&input).unwrap();
        assert!(got.split.is_none());
        assert_eq!((got.users_before, got.items_before, got.rows_dropped), (2, 2, 2));
    }
}
