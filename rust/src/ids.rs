//! Raw id → dense code encoding.
//!
//! Codes follow the sorted order of the raw values (numbers ascending, strings by UTF-8 bytes), so
//! the result does not depend on row order. Codes start at 0; callers shift items by one so that
//! 0 stays the padding id.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};

use ahash::AHashMap;
use rayon::prelude::*;

use crate::buffer::{self, AHEAD};
use crate::column::Column;
use crate::error::{CoreError, Result};
use crate::strings::{Key, OffsetsStr, StrColumn, ViewsStr};
use crate::text::{self, IdText};

/// A bitmap over the raw integer range is used when the range is at most this many times the row
/// count (at most `DENSE_RANGE_MAX` values: a 512 MiB bitmap); otherwise a hash map.
const DENSE_RANGE_FACTOR: u64 = 32;
const DENSE_RANGE_MAX: u64 = 1 << 32;

/// An id column as the core reads it: 64-bit integers (in chunks, read in place), or UTF-8
/// strings in either Arrow layout, read in place ([`crate::strings`]).
#[derive(Debug, Clone)]
pub enum Ids<'a> {
    Int(Column<'a, i64>),
    Str(OffsetsStr<'a>),
    View(ViewsStr<'a>),
}

impl Ids<'_> {
    pub fn len(&self) -> usize {
        match self {
            Ids::Int(v) => v.len(),
            Ids::Str(s) => s.rows(),
            Ids::View(s) => s.rows(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The distinct raw values, in code order: the integers themselves, or for strings the first row
/// holding each one (the caller takes the strings from its own column without a copy through Rust).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uniques {
    Int(Vec<i64>),
    FirstRows(Vec<u64>),
    /// The strings themselves (Arrow `large_string` layout: offsets from 0, bytes), where the
    /// caller has no column to take them from ([`crate::parquet_log`]).
    Text(Vec<i64>, Vec<u8>),
}

impl Uniques {
    pub fn len(&self) -> usize {
        match self {
            Uniques::Int(v) => v.len(),
            Uniques::FirstRows(v) => v.len(),
            Uniques::Text(o, _) => o.len() - 1,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps the values whose code survives (`map[code] != u32::MAX`), in code order.
    pub fn retain(self, map: &[u32]) -> Uniques {
        fn keep<T: Copy>(v: Vec<T>, map: &[u32]) -> Vec<T> {
            v.into_iter().zip(map).filter(|(_, &m)| m != u32::MAX).map(|(x, _)| x).collect()
        }
        match self {
            Uniques::Int(v) => Uniques::Int(keep(v, map)),
            Uniques::FirstRows(v) => Uniques::FirstRows(keep(v, map)),
            Uniques::Text(offsets, data) => {
                let (mut o, mut d) = (vec![0i64], Vec::new());
                for (w, &m) in offsets.windows(2).zip(map) {
                    if m != u32::MAX {
                        d.extend_from_slice(&data[w[0] as usize..w[1] as usize]);
                        o.push(d.len() as i64);
                    }
                }
                Uniques::Text(o, d)
            }
        }
    }
}

/// Codes per row, the distinct values, and how many rows hold each code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub codes: Vec<u32>,
    pub uniques: Uniques,
    pub counts: Vec<u32>,
}

/// Encodes an id column and counts the rows of every code in the same pass.
pub fn encode(ids: &Ids<'_>) -> Result<Encoded> {
    if ids.len() > u32::MAX as usize {
        return Err(CoreError::TooManyRows { rows: ids.len(), limit: u32::MAX as usize });
    }
    match ids {
        Ids::Int(values) => {
            let (table_or_map, uniques) = int_code_table(values);
            let (codes, counts) = match &table_or_map {
                Lookup::Dense(bitmap) => map_count(values, uniques.len(), |v| bitmap.code(v), |v| bitmap.hint(v)),
                Lookup::Hashed(map) => map_count(values, uniques.len(), |v| map[&v], |_| ()),
            };
            Ok(Encoded { codes, uniques: Uniques::Int(uniques), counts })
        }
        Ids::Str(col) => encode_strings(col),
        Ids::View(col) => encode_strings(col),
    }
}

fn encode_strings<'a, S: StrColumn<'a>>(col: &S) -> Result<Encoded> {
    let (codes, first, counts) = encode_column(col)?;
    Ok(Encoded { codes, uniques: Uniques::FirstRows(first), counts })
}

pub(crate) enum Lookup {
    Dense(RankBitmap),
    Hashed(AHashMap<i64, u32>),
}

impl Lookup {
    /// The code of a value the table was built from.
    #[inline]
    pub(crate) fn code(&self, v: i64) -> u32 {
        match self {
            Lookup::Dense(bitmap) => bitmap.code(v),
            Lookup::Hashed(map) => map[&v],
        }
    }
}

/// The set of distinct values of a dense integer range as a bitmap with a running count per
/// 64-bit word: the code of a value is the number of set bits before it. At a few bits per
/// possible value it stays in cache where a table of u32 codes would not (ML-20M-like ids: a
/// 240 KiB table instead of a 3.9 MiB one). Each word sits next to its count (16 aligned bytes),
/// so that a lookup touches one cache line: at millions of distinct ids the table outgrows the
/// core's cache, and two separate arrays cost two misses per row (measured: 100M rows over 5M
/// ids in a synthetic test, one thread: 1.4–1.9 s with two arrays, 0.9–1.0 s interleaved).
pub(crate) struct RankBitmap {
    lo: i64,
    words: Vec<RankWord>,
}

#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct RankWord {
    bits: u64,
    before: u64,
}

impl RankBitmap {
    #[inline(always)]
    fn code(&self, v: i64) -> u32 {
        let off = (v - self.lo) as u64;
        let w = &self.words[(off >> 6) as usize];
        (w.before + (w.bits & ((1u64 << (off & 63)) - 1)).count_ones() as u64) as u32
    }

    /// Replaces every value (all in the bitmap's range, above `lo` = 0) by its code.
    fn rank_in_place(&self, values: &mut [u32]) {
        debug_assert_eq!(self.lo, 0);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU has POPCNT.
            unsafe { self.rank_in_place_popcnt(values) };
            return;
        }
        self.rank_in_place_portable(values);
    }

    /// [`Self::rank_in_place`] compiled with the POPCNT instruction (`count_ones` is a dozen
    /// instructions on the baseline x86-64 target).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "popcnt")]
    unsafe fn rank_in_place_popcnt(&self, values: &mut [u32]) {
        self.rank_in_place_portable(values);
    }

    #[inline(always)]
    fn rank_in_place_portable(&self, values: &mut [u32]) {
        for x in values.iter_mut() {
            *x = self.code(*x as i64);
        }
    }

    /// Prefetches the word [`Self::code`] will read for `v` (any `v`: out of range is harmless).
    #[inline]
    fn hint(&self, v: i64) {
        let off = v.wrapping_sub(self.lo) as u64 >> 6;
        buffer::prefetch(self.words.as_ptr().wrapping_add(off as usize));
    }
}

/// The value → code lookup of an integer column and its sorted distinct values.
///
/// The bitmap needs the column's range before its marking pass, and finding it exactly is one
/// more pass over the column (at 20M rows, ~0.03 s of a ~0.14 s encoding). So the marking pass
/// first runs over a range guessed from evenly spaced rows and widened on both sides; it gives up
/// at the first value outside it, and only then is the range measured and the pass run again.
pub(crate) fn int_code_table(values: &Column<'_, i64>) -> (Lookup, Vec<i64>) {
    if values.is_empty() {
        return (Lookup::Hashed(AHashMap::new()), Vec::new());
    }
    let limit = (values.len() as u64).saturating_mul(DENSE_RANGE_FACTOR).clamp(1 << 16, DENSE_RANGE_MAX);
    let width = |lo: i64, hi: i64| (hi as i128 - lo as i128) as u128 + 1;
    let (glo, ghi) = guessed_range(values);
    if width(glo, ghi) <= limit as u128 {
        if let Some((bitmap, uniques)) = dense_table(values, glo, width(glo, ghi) as usize) {
            return (Lookup::Dense(bitmap), uniques);
        }
    }
    let (lo, hi) = min_max(values);
    if width(lo, hi) <= limit as u128 {
        let (bitmap, uniques) = dense_table(values, lo, width(lo, hi) as usize).expect("the range holds every value");
        (Lookup::Dense(bitmap), uniques)
    } else {
        let (map, uniques) = hashed_table(values);
        (Lookup::Hashed(map), uniques)
    }
}

/// Rows read (evenly spaced) to guess the range of an integer column.
const RANGE_SAMPLE: usize = 1 << 16;

/// The range of the sampled rows, widened on each side by a sixteenth of its width plus 64.
pub(crate) fn guessed_range(values: &Column<'_, i64>) -> (i64, i64) {
    let stride = (values.len() / RANGE_SAMPLE).max(1);
    let (lo, hi) = values
        .parts()
        .iter()
        .flat_map(|p| p.iter().step_by(stride))
        .fold((i64::MAX, i64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let pad = (hi as i128 - lo as i128) / 16 + 64;
    let clamp = |x: i128| x.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
    (clamp(lo as i128 - pad), clamp(hi as i128 + pad))
}

/// Minimum and maximum of a non-empty column, in parallel.
pub(crate) fn min_max(values: &Column<'_, i64>) -> (i64, i64) {
    values
        .par_blocks()
        .map(|c| c.iter().fold((i64::MAX, i64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v))))
        .reduce(|| (i64::MAX, i64::MIN), |a, b| (a.0.min(b.0), a.1.max(b.1)))
}

/// The rank bitmap of the values over `lo..lo + range`, or `None` as soon as a value lies outside.
fn dense_table(values: &Column<'_, i64>, lo: i64, range: usize) -> Option<(RankBitmap, Vec<i64>)> {
    let n_words = range.div_ceil(64);
    // One bitmap per row block, OR-ed together (no atomics in the hot loop).
    let blocks = n_blocks(values.len(), n_words * 2);
    let size = values.len().div_ceil(blocks).max(1);
    let outside = AtomicBool::new(false);
    let words = (0..blocks)
        .into_par_iter()
        .map(|b| {
            let mut w = buffer::zeroed::<u64>(n_words);
            for part in values.range(b * size, ((b + 1) * size).min(values.len())) {
                for piece in part.chunks(1 << 16) {
                    if outside.load(Ordering::Relaxed) {
                        return None;
                    }
                    for &v in piece {
                        let off = v.wrapping_sub(lo) as u64;
                        if off >= range as u64 {
                            outside.store(true, Ordering::Relaxed);
                            return None;
                        }
                        w[(off >> 6) as usize] |= 1u64 << (off & 63);
                    }
                }
            }
            Some(w)
        })
        .reduce_with(|a, b| {
            let (mut a, b) = (a?, b?);
            a.iter_mut().zip(b).for_each(|(x, y)| *x |= y);
            Some(a)
        })
        .unwrap_or_else(|| Some(vec![0u64; n_words]))?;
    let mut table = buffer::with_capacity(n_words);
    let mut uniques = Vec::new();
    for (i, &w) in words.iter().enumerate() {
        table.push(RankWord { bits: w, before: uniques.len() as u64 });
        let mut bits = w;
        while bits != 0 {
            uniques.push(lo + (i as i64) * 64 + bits.trailing_zeros() as i64);
            bits &= bits - 1;
        }
    }
    Some((RankBitmap { lo, words: table }, uniques))
}

fn hashed_table(values: &Column<'_, i64>) -> (AHashMap<i64, u32>, Vec<i64>) {
    let mut seen: AHashMap<i64, u32> = AHashMap::new();
    for v in values.iter() {
        seen.entry(v).or_insert(0);
    }
    let mut uniques: Vec<i64> = seen.keys().copied().collect();
    uniques.par_sort_unstable();
    for (code, v) in uniques.iter().enumerate() {
        *seen.get_mut(v).expect("present") = code as u32;
    }
    (seen, uniques)
}

/// Encodes an integer column for the pipeline by its offsets `v - lo` from the bottom of a range
/// guessed from evenly spaced rows ([`guessed_range`]), counting them in the same pass, when that
/// range is at most `max_range` wide and holds every value (else None: use [`encode`]).
///
/// The codes then are not ranks: `uniques` lists every value of the range, and values the column
/// lacks have a count of 0. The pipeline needs no ranks (the k-core never keeps a node with no
/// rows, and the survivors are numbered afresh), so this saves [`int_code_table`]'s marking pass
/// over the column and every row's rank lookup: one read of the column instead of two (at 20M
/// rows, ~0.05 s of a ~0.14 s encoding of both columns). Ids that are dense in their range — row
/// numbers, database keys — are the common case; the caller bounds the range by the rows so that
/// per-code tables stay smaller than the columns. Ids that fill less than half their range get
/// their ranks after all, in a pass over the codes (not the column; see [`encode_offsets_into`]).
pub(crate) fn encode_offsets(values: &Column<'_, i64>, max_range: usize) -> Option<Encoded> {
    let n = values.len();
    let mut codes = buffer::with_capacity::<u32>(n);
    let (uniques, counts) = encode_offsets_into(values, &mut codes.spare_capacity_mut()[..n], max_range)?;
    // SAFETY: encode_offsets_into wrote every element of 0..n when it gave codes.
    unsafe { codes.set_len(n) };
    Some(Encoded { codes, uniques, counts })
}

/// [`encode_offsets`] into `out` (the column's length): the uniques and counts when it wrote the
/// codes there (`out` is left partly written otherwise).
pub(crate) fn encode_offsets_into(
    values: &Column<'_, i64>,
    out: &mut [MaybeUninit<u32>],
    max_range: usize,
) -> Option<(Uniques, Vec<u32>)> {
    if values.is_empty() || values.len() > u32::MAX as usize {
        return None;
    }
    let (lo, hi) = guessed_range(values);
    let width = (hi as i128 - lo as i128) as u128 + 1;
    if width > max_range.min(u32::MAX as usize) as u128 {
        return None;
    }
    let range = width as u64;
    let counts = offset_count_into(values, out, lo, range as usize)?;
    let present = counts.iter().filter(|&&c| c > 0).count();
    if range as usize <= 2 * present {
        return Some((Uniques::Int((0..range as i64).map(|c| lo + c).collect()), counts));
    }
    // Sparse in the range (gaps would make every per-code table of the pipeline larger than the
    // ids need): the offsets become ranks through the bitmap of the present ones, in one pass over
    // the codes (not the column), giving what `encode` gives.
    let mut words = buffer::with_capacity::<RankWord>((range as usize).div_ceil(64));
    let mut uniques = Vec::with_capacity(present);
    for (w, chunk) in counts.chunks(64).enumerate() {
        let mut bits = 0u64;
        for (j, &c) in chunk.iter().enumerate() {
            bits |= ((c > 0) as u64) << j;
        }
        words.push(RankWord { bits, before: uniques.len() as u64 });
        let mut b = bits;
        while b != 0 {
            uniques.push(lo + (w * 64) as i64 + b.trailing_zeros() as i64);
            b &= b - 1;
        }
    }
    let bitmap = RankBitmap { lo: 0, words };
    // SAFETY: offset_count_into wrote every element.
    let codes: &mut [u32] = unsafe { &mut *(out as *mut [MaybeUninit<u32>] as *mut [u32]) };
    codes.par_chunks_mut(1 << 16).for_each(|chunk| bitmap.rank_in_place(chunk));
    let counts = counts.into_iter().filter(|&c| c > 0).collect();
    Some((Uniques::Int(uniques), counts))
}

/// Writes every value's offset `v - lo` into `out` (the column's length) and counts them, in
/// parallel over row blocks; None when a value lies outside `lo..lo + range` (`out` is then
/// partly written).
///
/// A block counts in [`ByteCounts`] (one byte per offset while small): the offsets of ids sparse
/// in their range span many more counts than there are ids.
///
/// The same block loop as [`map_count_into`], kept apart on purpose: for offsets a plain loop,
/// its range check reported after each piece, beats `map_count_into`'s look-ahead loop in fresh
/// processes (20M rows, both columns, alternating builds: encode 0.136–0.143 s against 0.166–0.183
/// s; warm calls alike).
fn offset_count_into(
    values: &Column<'_, i64>,
    out: &mut [MaybeUninit<u32>],
    lo: i64,
    range: usize,
) -> Option<Vec<u32>> {
    let n = values.len();
    assert_eq!(out.len(), n, "one code per row");
    let blocks = n_blocks(n, range);
    let size = n.div_ceil(blocks).max(1);
    let outside = AtomicBool::new(false);
    out.par_chunks_mut(size)
        .enumerate()
        .map(|(b, out)| {
            let mut c = ByteCounts::new(range);
            let mut at = 0;
            for part in values.range(b * size, b * size + out.len()) {
                for piece in part.chunks(1 << 16) {
                    if outside.load(Ordering::Relaxed) {
                        return None;
                    }
                    let mut bad = false;
                    for (o, &v) in out[at..at + piece.len()].iter_mut().zip(piece) {
                        let off = v.wrapping_sub(lo) as u64;
                        // Out of the range: reported after the piece (no branch per row).
                        bad |= off >= range as u64;
                        let off = if off < range as u64 { off as usize } else { 0 };
                        o.write(off as u32);
                        c.add(off);
                    }
                    if bad {
                        outside.store(true, Ordering::Relaxed);
                        return None;
                    }
                    at += piece.len();
                }
            }
            Some(c)
        })
        .collect::<Option<Vec<_>>>()
        .map(|blocks| ByteCounts::total(blocks, range))
}

/// An integer column's codes for the pipeline into `out` (the column's length): by offset
/// ([`encode_offsets_into`]) when the range allows, else by rank as [`encode`] gives them.
/// Returns the uniques and counts. At most 2^32 rows (the caller checks).
pub(crate) fn encode_int_into(
    values: &Column<'_, i64>,
    out: &mut [MaybeUninit<u32>],
    max_range: usize,
) -> (Uniques, Vec<u32>) {
    if let Some(coded) = encode_offsets_into(values, out, max_range) {
        return coded;
    }
    let (table_or_map, uniques) = int_code_table(values);
    let counts = match &table_or_map {
        Lookup::Dense(bitmap) => map_count_into(values, out, uniques.len(), |v| bitmap.code(v), |v| bitmap.hint(v)),
        Lookup::Hashed(map) => map_count_into(values, out, uniques.len(), |v| map[&v], |_| ()),
    };
    (Uniques::Int(uniques), counts)
}

/// Number of row blocks for the per-block counting passes: enough for every thread, few enough
/// that `blocks × codes` counters stay small.
pub(crate) fn n_blocks(rows: usize, codes: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let by_memory = (1usize << 27) / codes.max(1) / 4; // at most ~512 MiB of counters
    threads.min(by_memory.max(1)).min(rows.div_ceil(1 << 16).max(1))
}

/// The smallest shift such that `codes` consecutive codes, cut into ranges of `2^shift`, make at
/// most `parts` ranges (code `c` is in range `c >> shift`).
pub(crate) fn range_shift(codes: usize, parts: usize) -> u32 {
    usize::BITS - (codes.div_ceil(parts.max(1)).max(1) - 1).leading_zeros()
}

/// Maps every value to its code and counts the codes, in parallel over row blocks.
///
/// With millions of distinct values the lookup table and the counts are tens of MiB, and each row
/// reads one and increments the other at random: a loop that waits for every miss. So the loop
/// runs ahead: `hint(v)` (prefetch the table entry of `v`) is issued [`AHEAD`]·2 rows early, the
/// code [`AHEAD`] rows early (its count slot prefetched then), and the count incremented last.
fn map_count<F, H>(values: &Column<'_, i64>, n_codes: usize, code: F, hint: H) -> (Vec<u32>, Vec<u32>)
where
    F: Fn(i64) -> u32 + Sync,
    H: Fn(i64) + Sync,
{
    let n = values.len();
    let mut codes = buffer::with_capacity::<u32>(n);
    let counts = map_count_into(values, &mut codes.spare_capacity_mut()[..n], n_codes, code, hint);
    // SAFETY: map_count_into wrote every element of 0..n.
    unsafe { codes.set_len(n) };
    (codes, counts)
}

/// [`map_count`] into `out` (the column's length), which it fills; returns the counts.
fn map_count_into<F, H>(
    values: &Column<'_, i64>,
    out: &mut [MaybeUninit<u32>],
    n_codes: usize,
    code: F,
    hint: H,
) -> Vec<u32>
where
    F: Fn(i64) -> u32 + Sync,
    H: Fn(i64) + Sync,
{
    let n = values.len();
    assert_eq!(out.len(), n, "one code per row");
    let blocks = n_blocks(n, n_codes);
    let size = n.div_ceil(blocks).max(1);
    let blocks = out
        .par_chunks_mut(size)
        .enumerate()
        .map(|(b, out)| {
            let mut c = ByteCounts::new(n_codes);
            let mut at = 0;
            for part in values.range(b * size, b * size + out.len()) {
                let o = &mut out[at..at + part.len()];
                let k = part.len();
                for (j, &v) in part.iter().enumerate().take(AHEAD) {
                    let x = code(v);
                    o[j].write(x);
                    buffer::prefetch(c.slot(x as usize));
                }
                for j in 0..k {
                    if j + 2 * AHEAD < k {
                        hint(part[j + 2 * AHEAD]);
                    }
                    if j + AHEAD < k {
                        let x = code(part[j + AHEAD]);
                        o[j + AHEAD].write(x);
                        buffer::prefetch(c.slot(x as usize));
                    }
                    // SAFETY: row j's code was written AHEAD rows ago (or before the loop).
                    let x = unsafe { o[j].assume_init_read() };
                    c.add(x as usize);
                }
                at += k;
            }
            c
        })
        .collect::<Vec<_>>();
    // (The blocks above cover 0..n and write every element: a column's ranges hold exactly the
    // rows asked for.)
    ByteCounts::total(blocks, n_codes)
}

/// Counts of codes below `n`, kept in one byte per code while they are small: adding to a code
/// whose byte wraps lists the code as a carry of 256 (once every 256 rows of a code). Counts
/// that a pass increments at random then take a quarter of the cache: with a million codes
/// (the bench's users, 138k ids sparse in a range of 966k, coded by offset) four-byte counts
/// outgrew a core's 2 MB L2, and encoding 20M rows took 0.17 s against 0.095 s for the same ids
/// made dense (0.12–0.13 s and 0.085–0.09 s with these counts; warm calls). The blocks' counts
/// are then summed into one four-byte table ([`ByteCounts::total`]), the only one written: a
/// four-byte carry table per block, zeroed and then added in full, faulted in `4 × n` bytes per
/// block more (at 100M rows, 13M item offsets: 52 MB a block).
pub(crate) struct ByteCounts {
    low: Vec<u8>,
    carries: Vec<u32>,
}

impl ByteCounts {
    pub(crate) fn new(n: usize) -> Self {
        assert!(n <= u32::MAX as usize + 1, "codes are 32-bit");
        ByteCounts { low: buffer::zeroed(n), carries: Vec::new() }
    }

    #[inline(always)]
    pub(crate) fn add(&mut self, code: usize) {
        let b = self.low[code].wrapping_add(1);
        self.low[code] = b;
        if b == 0 {
            self.carries.push(code as u32);
        }
    }

    /// Where [`Self::add`] of `code` will write first, to prefetch.
    #[inline(always)]
    pub(crate) fn slot(&self, code: usize) -> *const u8 {
        self.low.as_ptr().wrapping_add(code)
    }

    /// The counts of every code below `n` over all `blocks` (each of `n` codes), in parallel over
    /// ranges of codes. Each total is written once into fresh memory: one block or two (one per
    /// thread on the machines this runs on) in one pass each; more, code by code. (One loop adding
    /// every block into a zeroed table encoded 20M rows in 0.134 s against 0.117 s, the M2 shape
    /// in 0.054 s against 0.043 s, fresh processes — likely two faults per page, the first read
    /// of a fresh zeroed page mapping the shared zero page and the write then copying it.)
    pub(crate) fn total(blocks: Vec<ByteCounts>, n: usize) -> Vec<u32> {
        debug_assert!(blocks.iter().all(|b| b.low.len() == n));
        let mut total = buffer::with_capacity::<u32>(n);
        const CODES: usize = 1 << 16;
        total.spare_capacity_mut()[..n].par_chunks_mut(CODES).enumerate().for_each(|(j, out)| {
            let at = j * CODES;
            match blocks.as_slice() {
                [a] => out.iter_mut().zip(&a.low[at..]).for_each(|(o, &x)| {
                    o.write(x as u32);
                }),
                [a, b] => out.iter_mut().zip(a.low[at..].iter().zip(&b.low[at..])).for_each(|(o, (&x, &y))| {
                    o.write(x as u32 + y as u32);
                }),
                _ => out.iter_mut().enumerate().for_each(|(k, o)| {
                    o.write(blocks.iter().map(|b| b.low[at + k] as u32).sum());
                }),
            }
        });
        // SAFETY: the chunks above cover 0..n and write every element.
        unsafe { total.set_len(n) };
        for c in blocks.iter().flat_map(|b| &b.carries) {
            total[*c as usize] += 256;
        }
        total
    }
}

/// Adds `b`'s counts into `a` (combined with `reduce_with`: rayon's `reduce` would start every
/// leaf from a zeroed table of every code, faulted in only to have a block's counts added to it).
pub(crate) fn add_counts(mut a: Vec<u32>, b: Vec<u32>) -> Vec<u32> {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
    a
}

/// Rows per code.
pub fn count_codes(codes: &[u32], n_codes: usize) -> Vec<u32> {
    let blocks = n_blocks(codes.len(), n_codes);
    let size = codes.len().div_ceil(blocks).max(1);
    codes
        .par_chunks(size)
        .map(|cs| {
            let mut c = buffer::zeroed::<u32>(n_codes);
            for &x in cs {
                c[x as usize] += 1;
            }
            c
        })
        .reduce_with(add_counts)
        .unwrap_or_else(|| vec![0u32; n_codes])
}

/// Encodes integer ids. Returns `(codes, uniques)` with `uniques[codes[i]] == values[i]` and
/// `uniques` strictly increasing.
pub fn encode_i64(values: &[i64]) -> (Vec<u32>, Vec<i64>) {
    match encode(&Ids::Int(values.into())) {
        Ok(Encoded { codes, uniques: Uniques::Int(u), .. }) => (codes, u),
        _ => unreachable!("integer encoding cannot fail below 2^32 rows"),
    }
}

/// Encodes UTF-8 strings given in Arrow layout (`offsets` of length n+1 into `data`). Returns
/// `(codes, first_rows)`: `first_rows[c]` is the first row holding the string with code `c`.
pub fn encode_str(offsets: &[i64], data: &[u8]) -> Result<(Vec<u32>, Vec<u64>)> {
    let (codes, first, _) = encode_str_counted(offsets, data)?;
    Ok((codes, first))
}

/// The distinct strings of one row block, numbered in order of first appearance.
struct StrBlock<'a> {
    first_rows: Vec<u64>,
    counts: Vec<u32>,
    /// The distinct strings' keys, in code order (the merge reads them here, not in the column;
    /// empty for the first block, whose table the merge starts from).
    keys: Vec<Key<'a>>,
    /// The block's table (kept for the first block only: the merge starts from it).
    table: Option<StrTable<'a>>,
}

/// A string → code table over one column, by [`Key`]: short strings by value (two words, in
/// [`ShortTable`]), long ones by slice.
#[derive(Default)]
struct StrTable<'a> {
    short: ShortTable,
    long: AHashMap<&'a [u8], u32>,
}

impl<'a> StrTable<'a> {
    /// The code of `key`, or `fresh()` (which numbers it) when the string is new.
    #[inline]
    fn code(&mut self, key: Key<'a>, fresh: impl FnOnce() -> u32) -> u32 {
        match key {
            Key::Short(lo, hi) => {
                let h = self.short.hash(lo, hi);
                self.short.code(h, lo, hi, fresh)
            }
            Key::Long(bytes) => *self.long.entry(bytes).or_insert_with(fresh),
        }
    }
}

/// One slot of [`ShortTable`]: a key, its code (`EMPTY`: a free slot) and the rows counted for it
/// (see [`ShortTable::code`]); 24 bytes.
#[derive(Clone, Copy)]
struct Slot {
    lo: u64,
    hi: u64,
    code: u32,
    rows: u32,
}

const EMPTY: u32 = u32::MAX;
const FREE: Slot = Slot { lo: 0, hi: 0, code: EMPTY, rows: 0 };

/// An open-addressing (linear probing) table from two-word keys to codes, whose slot for a key
/// can be prefetched before the lookup: the row loops hash a row [`AHEAD`] rows early and
/// prefetch its slot, so that the lookup finds it in cache. (At hundreds of thousands of
/// distinct ids a table is tens of MiB, and a lookup without the prefetch waits on memory.)
/// Slots are 24 bytes (a third of them straddle two cache lines, so both are prefetched); the
/// table doubles past 5/8 full.
struct ShortTable {
    slots: Vec<Slot>,
    len: usize,
    state: ahash::RandomState,
}

impl Default for ShortTable {
    fn default() -> Self {
        ShortTable { slots: vec![FREE; 1 << 10], len: 0, state: ahash::RandomState::new() }
    }
}

impl ShortTable {
    #[inline(always)]
    fn hash(&self, lo: u64, hi: u64) -> u64 {
        self.state.hash_one((lo, hi))
    }

    #[inline(always)]
    fn prefetch(&self, h: u64) {
        let slot = self.slots.as_ptr().wrapping_add(h as usize & (self.slots.len() - 1));
        buffer::prefetch(slot);
        buffer::prefetch((slot as *const u8).wrapping_add(std::mem::size_of::<Slot>() - 1));
    }

    /// The code of `(lo, hi)` (hash `h`), or `fresh()` when the key is new; counts the call in
    /// the key's slot (the row loops count rows there, in the line the lookup has just read,
    /// rather than in an array indexed by code: see [`ShortTable::add_rows`]).
    #[inline]
    fn code(&mut self, h: u64, lo: u64, hi: u64, fresh: impl FnOnce() -> u32) -> u32 {
        if (self.len + 1) * 8 > self.slots.len() * 5 {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut at = h as usize & mask;
        loop {
            let slot = &mut self.slots[at];
            if slot.code == EMPTY {
                let code = fresh();
                debug_assert_ne!(code, EMPTY);
                *slot = Slot { lo, hi, code, rows: 1 };
                self.len += 1;
                return code;
            }
            if slot.lo == lo && slot.hi == hi {
                slot.rows += 1;
                return slot.code;
            }
            at = (at + 1) & mask;
        }
    }

    /// Adds every key's counted rows to `counts[code]`.
    fn add_rows(&self, counts: &mut [u32]) {
        for s in self.slots.iter().filter(|s| s.code != EMPTY) {
            counts[s.code as usize] += s.rows;
        }
    }

    fn grow(&mut self) {
        let doubled = buffer::filled(FREE, self.slots.len() * 2);
        let old = std::mem::replace(&mut self.slots, doubled);
        let mask = self.slots.len() - 1;
        for s in old.into_iter().filter(|s| s.code != EMPTY) {
            let mut at = self.hash(s.lo, s.hi) as usize & mask;
            while self.slots[at].code != EMPTY {
                at = (at + 1) & mask;
            }
            self.slots[at] = s;
        }
    }
}

/// Like [`encode_str`], with the number of rows of every code.
pub fn encode_str_counted(offsets: &[i64], data: &[u8]) -> Result<(Vec<u32>, Vec<u64>, Vec<u32>)> {
    encode_column(&OffsetsStr::new(offsets, data)?)
}

/// Encodes a string column in either Arrow layout: `(codes, first_rows, counts)`. Row blocks are
/// encoded in parallel (each with its own table, codes in order of first appearance), their
/// distinct strings merged in block order (so a string's first row is the first in the column),
/// sorted by bytes, and every row's block-local code replaced by its final one in a second
/// parallel pass.
pub fn encode_column<'a, S: StrColumn<'a>>(col: &S) -> Result<(Vec<u32>, Vec<u64>, Vec<u32>)> {
    let n = col.rows();
    let mut codes = buffer::with_capacity::<u32>(n);
    let blocks = rayon::current_num_threads();
    let EncodedStr { first_rows, counts, .. } =
        encode_column_into(col, &mut codes.spare_capacity_mut()[..n], blocks, false)?;
    // SAFETY: encode_column_into wrote every element of 0..n (it returned Ok).
    unsafe { codes.set_len(n) };
    Ok((codes, first_rows, counts))
}

/// Row blocks for two string columns encoded side by side ([`encode_column_into`]), holding `a`
/// and `b` values: the threads shared in proportion to the values, at least one block each.
/// Each block inserts the distinct strings it holds into a table of its own, so blocks beyond a
/// column's share of the threads repeat work (at many distinct ids, most of it).
pub(crate) fn shared_blocks(a: usize, b: usize) -> (usize, usize) {
    let threads = rayon::current_num_threads() as f64;
    let share = threads * a as f64 / (a as f64 + b as f64).max(1.0);
    ((share.round() as usize).max(1), ((threads - share).round() as usize).max(1))
}

/// What [`encode_column_into`] gives besides the codes.
pub(crate) struct EncodedStr {
    /// The first row of each code's string (codes in byte order of the strings).
    pub first_rows: Vec<u64>,
    pub counts: Vec<u32>,
    /// When asked for: the id text check ([`text::check_distinct`]) of the distinct strings.
    pub check: Option<IdText>,
}

/// [`encode_column`] into `out` (the column's length), which it fills when it returns Ok. The
/// rows are encoded in at most `blocks` parallel blocks (each block inserts the distinct strings
/// it holds into a table of its own, so more blocks than threads to run them is work for
/// nothing: with many distinct strings, most of the time). With `check`, each distinct string is
/// also checked as [`text::check_column`] checks a value, while it is read to be sorted: the
/// column's check for the price of its distinct values, no pass over the rows.
pub(crate) fn encode_column_into<'a, S: StrColumn<'a>>(
    col: &S,
    out: &mut [MaybeUninit<u32>],
    blocks: usize,
    check: bool,
) -> Result<EncodedStr> {
    let n = col.rows();
    assert_eq!(out.len(), n, "one code per row");
    if n == 0 {
        let check = check.then(|| IdText { int_like: false, ..IdText::default() });
        return Ok(EncodedStr { first_rows: Vec::new(), counts: Vec::new(), check });
    }
    let size = n.div_ceil(blocks.max(1).min(n.div_ceil(1 << 16)).max(1));
    let blocks: Vec<Result<StrBlock>> = out
        .par_chunks_mut(size)
        .enumerate()
        .map(|(b, out)| {
            let lo = b * size;
            let mut table = StrTable::default();
            let (mut first_rows, mut counts, mut keys) = (Vec::new(), Vec::<u32>::new(), Vec::new());
            // Rows wait AHEAD places in a ring between being hashed (their slot prefetched) and
            // being looked up.
            let hi = lo + out.len();
            let mut ring: [(usize, Key<'a>, u64); AHEAD] = [(0, Key::Short(0, 0), 0); AHEAD];
            let mut queued = 0usize;
            let mut lookup = |table: &mut StrTable<'a>, (row, key, h): (usize, Key<'a>, u64)| {
                let next = first_rows.len() as u32;
                let fresh = || {
                    first_rows.push(row as u64);
                    counts.push(0);
                    if b > 0 {
                        keys.push(key);
                    }
                    next
                };
                // Short keys are counted in their slot (added to `counts` at the end), long ones here.
                let code = match key {
                    Key::Short(k0, k1) => table.short.code(h, k0, k1, fresh),
                    Key::Long(_) => {
                        let code = table.code(key, fresh);
                        counts[code as usize] += 1;
                        code
                    }
                };
                out[row - lo].write(code);
            };
            col.each_key(lo, hi, |row, key| {
                let h = match key {
                    Key::Short(k0, k1) => {
                        let h = table.short.hash(k0, k1);
                        table.short.prefetch(h);
                        h
                    }
                    Key::Long(_) => 0,
                };
                // The row queued AHEAD rows ago leaves the slot this one takes.
                let slot = &mut ring[queued % AHEAD];
                if queued >= AHEAD {
                    lookup(&mut table, *slot);
                }
                *slot = (row, key, h);
                queued += 1;
            })?;
            for k in queued.saturating_sub(AHEAD)..queued {
                lookup(&mut table, ring[k % AHEAD]);
            }
            table.short.add_rows(&mut counts);
            Ok(StrBlock { first_rows, counts, keys, table: (b == 0).then_some(table) })
        })
        .collect();
    let blocks = blocks.into_iter().collect::<Result<Vec<_>>>()?;
    // SAFETY: the blocks above cover 0..n and each wrote every element of its chunk (a block that
    // stopped early returned an error, and we returned with it).
    let codes: &mut [u32] = unsafe { &mut *(out as *mut [MaybeUninit<u32>] as *mut [u32]) };
    let get = |row: u64| col.value(row as usize);

    // Merge the blocks' distinct strings in row order: local code -> merged code, per block. The
    // first block's table is the start (its codes already are in order of first appearance).
    let mut blocks = blocks;
    let mut merged = blocks[0].table.take().expect("the first block keeps its table");
    let mut first_rows: Vec<u64> = blocks[0].first_rows.clone();
    let mut locals: Vec<Vec<u32>> = vec![(0..first_rows.len() as u32).collect()];
    for blk in &blocks[1..] {
        let keys = &blk.keys;
        let mut local = Vec::with_capacity(keys.len());
        for (j, (&key, &row)) in keys.iter().zip(&blk.first_rows).enumerate() {
            if let Some(&Key::Short(k0, k1)) = keys.get(j + AHEAD) {
                merged.short.prefetch(merged.short.hash(k0, k1));
            }
            let next = first_rows.len() as u32;
            local.push(merged.code(key, || {
                first_rows.push(row);
                next
            }));
        }
        locals.push(local);
    }
    drop(merged);
    // Sort the distinct strings and renumber.
    // By a 16-byte key whose order is the strings' up to their 15th byte (a comparison that
    // stays in cache); only long strings that share those 15 bytes are compared in the column
    // (measured at 616k distinct ids: 0.65 s comparing in the column, where every comparison
    // misses the cache twice).
    let (mut keyed, flags): (Vec<(u128, u32)>, Vec<u8>) = first_rows
        .par_iter()
        .enumerate()
        .map(|(c, &row)| {
            let v = get(row);
            ((order_key(v), c as u32), if check { text::flags(v) } else { 0 })
        })
        .unzip();
    let check = if check { Some(text::check_distinct(&first_rows, &flags)?) } else { None };
    drop(flags);
    keyed.par_sort_unstable_by(|a, b| {
        a.0.cmp(&b.0).then_with(|| {
            if a.0 as u8 == LONG {
                get(first_rows[a.1 as usize]).cmp(get(first_rows[b.1 as usize]))
            } else {
                std::cmp::Ordering::Equal
            }
        })
    });
    let order: Vec<u32> = keyed.into_iter().map(|(_, c)| c).collect();
    let mut renumber = vec![0u32; order.len()];
    for (new, &old) in order.iter().enumerate() {
        renumber[old as usize] = new as u32;
    }
    let sorted_first: Vec<u64> = order.iter().map(|&old| first_rows[old as usize]).collect();
    let mut counts = vec![0u32; order.len()];
    let finals: Vec<Vec<u32>> = locals
        .into_iter()
        .zip(&blocks)
        .map(|(local, blk)| {
            local
                .into_iter()
                .zip(&blk.counts)
                .map(|(m, &c)| {
                    let code = renumber[m as usize];
                    counts[code as usize] += c;
                    code
                })
                .collect()
        })
        .collect();
    codes.par_chunks_mut(size).zip(&finals).for_each(|(out, fin)| {
        for c in out {
            *c = fin[*c as usize];
        }
    });
    Ok(EncodedStr { first_rows: sorted_first, counts, check })
}

/// The last byte of [`order_key`] for strings of more than 15 bytes.
const LONG: u8 = 16;

/// A key that orders strings as their bytes do, up to ties between strings of more than 15
/// bytes that share the first 15: the first 15 bytes (zero-padded), then the length, or
/// [`LONG`] for longer strings. A proper prefix sorts first: where the longer string has a
/// non-zero byte the padding is smaller, and where it has zeros the length is.
fn order_key(v: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    let m = v.len().min(15);
    b[..m].copy_from_slice(&v[..m]);
    b[15] = if v.len() > 15 { LONG } else { v.len() as u8 };
    u128::from_be_bytes(b)
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
    fn offset_codes_are_offsets_when_dense_and_ranks_otherwise() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(29);
        let (mut dense, mut ranked) = (0, 0);
        for case in 0..200 {
            let n = rng.gen_range(1..20_000);
            let spread = [1, 2, 3, 50][case % 4];
            let base = rng.gen_range(-1_000_000i64..1_000_000);
            let distinct = rng.gen_range(1..5_000);
            let values: Vec<i64> = (0..n).map(|_| base + rng.gen_range(0..distinct) * spread).collect();
            let col: Column<'_, i64> = values.as_slice().into();
            let Some(got) = encode_offsets(&col, 1 << 20) else { continue };
            let Uniques::Int(u) = &got.uniques else { panic!("integer uniques") };
            // Every row's value comes back through its code, counted once.
            let mut counts = vec![0u32; u.len()];
            for (r, &c) in got.codes.iter().enumerate() {
                assert_eq!(u[c as usize], values[r], "case {case}");
                counts[c as usize] += 1;
            }
            assert_eq!(counts, got.counts, "case {case}");
            assert!(u.windows(2).all(|w| w[0] < w[1]));
            if got.counts.contains(&0) || u.len() > distinct as usize {
                // Offsets: the whole range, consecutive.
                assert!(u.windows(2).all(|w| w[1] == w[0] + 1), "case {case}");
                dense += 1;
            } else {
                assert_eq!(got, encode(&Ids::Int(col)).unwrap(), "case {case}");
                ranked += 1;
            }
        }
        assert!(dense > 20 && ranked > 20, "dense {dense} ranked {ranked}");
        // A value outside the guessed range: no offsets.
        let mut v: Vec<i64> = (0..1_000_000).collect();
        v[1] = 1 << 40; // the range is guessed from every 15th row
        assert!(encode_offsets(&v.as_slice().into(), 1 << 30).is_none());
        // A range wider than allowed: no offsets.
        let w: Vec<i64> = (0..1000).map(|x| x * 1000).collect();
        assert!(encode_offsets(&w.as_slice().into(), 1000).is_none());
    }
    use rand::{Rng, SeedableRng};

    #[test]
    fn byte_counts_of_any_number_of_blocks_add_up() {
        // 1-5 blocks (machines with more cores make more), codes hit 0 to 70,000 times in a
        // block, across a range of codes past one parallel chunk of the sum: every total is the
        // plain count.
        let mut rng = rand::rngs::StdRng::seed_from_u64(41);
        for blocks in 1..=5 {
            let n = (1 << 16) + rng.gen_range(1..5_000);
            let mut want = vec![0u32; n];
            let parts: Vec<ByteCounts> = (0..blocks)
                .map(|_| {
                    let mut c = ByteCounts::new(n);
                    for _ in 0..rng.gen_range(1..40) {
                        let code = rng.gen_range(0..n);
                        let times = [1, 255, 256, 257, 511, 512, 70_000][rng.gen_range(0..7)];
                        for _ in 0..times {
                            c.add(code);
                        }
                        want[code] += times;
                    }
                    c
                })
                .collect();
            assert_eq!(ByteCounts::total(parts, n), want, "{blocks} blocks");
        }
    }

    #[test]
    fn counts_past_a_byte_come_out_whole() {
        // The encoders count in one byte per code and carry 256 into a wide count when the byte
        // wraps: multiplicities at and around each wrap (and many wraps), rows shuffled, in one
        // chunk or many, over enough rows for two blocks; offsets (dense and sparse in their
        // range) and ranks (bitmap and hash map) against a BTreeMap's counts.
        use rand::seq::SliceRandom;
        let mut rng = rand::rngs::StdRng::seed_from_u64(41);
        let mults = [1usize, 2, 255, 256, 257, 511, 512, 513, 767, 768, 769, 65_535, 65_536, 65_537, 100_003];
        for spread in [1i64, 7, 1 << 40] {
            let base = rng.gen_range(-1_000i64..1_000);
            let mut vals = Vec::new();
            for (j, &m) in mults.iter().enumerate() {
                vals.extend(std::iter::repeat_n(base + j as i64 * spread, m));
            }
            vals.shuffle(&mut rng);
            let mut want = std::collections::BTreeMap::new();
            vals.iter().for_each(|&v| *want.entry(v).or_insert(0u32) += 1);
            let want_counts: Vec<u32> = want.values().copied().collect();
            let ranks: Vec<i64> = want.keys().copied().collect();
            for col in [Column::from(vals.as_slice()), Column::new(vals.chunks(40_009).collect())] {
                let e = encode(&Ids::Int(col.clone())).unwrap();
                assert_eq!(
                    (e.uniques, e.counts),
                    (Uniques::Int(ranks.clone()), want_counts.clone()),
                    "spread {spread}"
                );
                let Some(o) = encode_offsets(&col, 1 << 20) else {
                    assert_eq!(spread, 1 << 40, "offsets for a range of {} values", mults.len() as i64 * spread);
                    continue;
                };
                let Uniques::Int(u) = &o.uniques else { panic!("integer uniques") };
                let mut got = std::collections::BTreeMap::new();
                for (&c, &n) in o.codes.iter().zip(&vals).take(1000) {
                    assert_eq!(u[c as usize], n, "spread {spread}");
                }
                for (&v, &c) in u.iter().zip(&o.counts) {
                    if c > 0 {
                        got.insert(v, c);
                    }
                }
                assert_eq!(got, want, "spread {spread}");
            }
        }
    }

    #[test]
    fn ints_sorted_codes() {
        let (codes, uniques) = encode_i64(&[30, -5, 30, 7]);
        assert_eq!(uniques, vec![-5, 7, 30]);
        assert_eq!(codes, vec![2, 0, 2, 1]);
    }

    #[test]
    fn ranges_guessed_from_samples_that_miss_the_extremes() {
        // Values in a narrow band with a few extremes at rows the range sample skips (the guess
        // fails: either bitmap or hash map on the measured range), in one chunk or many, or a
        // column sorted so that the extremes sit at both ends, or none at all.
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for case in 0..24 {
            let n = [70_000, 200_001, 1 << 17][case % 3];
            let mut vals: Vec<i64> = (0..n).map(|_| rng.gen_range(-500..500)).collect();
            let far: i64 = [3_000, 2_000_000, i64::MAX / 3, 0][case / 6];
            if far != 0 {
                for _ in 0..3 {
                    let r = rng.gen_range(0..n);
                    if r % (n / RANGE_SAMPLE).max(1) != 0 {
                        vals[r] = if rng.gen() { far } else { -far };
                    }
                }
            }
            if case % 2 == 1 {
                vals.sort_unstable();
            }
            let mut map = std::collections::BTreeMap::new();
            vals.iter().for_each(|&v| {
                map.insert(v, 0u32);
            });
            for (code, c) in map.values_mut().enumerate() {
                *c = code as u32;
            }
            let want: Vec<u32> = vals.iter().map(|v| map[v]).collect();
            for col in [Column::from(vals.as_slice()), Column::new(vals.chunks(9_999).collect())] {
                let e = encode(&Ids::Int(col)).unwrap();
                assert_eq!(e.uniques, Uniques::Int(map.keys().copied().collect()), "case {case}");
                assert_eq!(e.codes, want, "case {case}");
            }
        }
    }

    #[test]
    fn ints_sparse_range_uses_hash_and_agrees() {
        let vals = vec![i64::MAX, i64::MIN, 0, i64::MAX, 42];
        let (codes, uniques) = encode_i64(&vals);
        assert_eq!(uniques, vec![i64::MIN, 0, 42, i64::MAX]);
        assert_eq!(codes, vec![3, 0, 1, 3, 2]);
    }

    #[test]
    fn counts_agree_with_codes() {
        let vals: Vec<i64> = (0..300_000).map(|i| (i * 7919) % 1013 - 400).collect();
        let e = encode(&Ids::Int(vals.as_slice().into())).unwrap();
        let mut want = vec![0u32; e.uniques.len()];
        for &c in &e.codes {
            want[c as usize] += 1;
        }
        assert_eq!(e.counts, want);
        assert_eq!(count_codes(&e.codes, want.len()), want);
    }

    #[test]
    fn chunks_around_the_lookahead_encode_like_a_sorted_map() {
        // map_count runs AHEAD and 2·AHEAD rows ahead within each chunk: chunks shorter than,
        // equal to and just past those distances, empty ones, dense and hashed tables alike.
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for spread in [1i64, 3, 1 << 40] {
            let vals: Vec<i64> = (0..5_000).map(|_| rng.gen_range(-60..200i64) * spread).collect();
            let sizes = [0, 1, AHEAD - 1, AHEAD, AHEAD + 1, 2 * AHEAD - 1, 2 * AHEAD, 2 * AHEAD + 1, 97];
            let mut parts: Vec<&[i64]> = Vec::new();
            let mut rest = vals.as_slice();
            while !rest.is_empty() {
                let (a, b) = rest.split_at(sizes[rng.gen_range(0..sizes.len())].min(rest.len()));
                parts.push(a);
                rest = b;
            }
            let e = encode(&Ids::Int(Column::new(parts))).unwrap();
            let sorted: std::collections::BTreeSet<i64> = vals.iter().copied().collect();
            let rank: std::collections::BTreeMap<i64, u32> =
                sorted.iter().enumerate().map(|(c, &v)| (v, c as u32)).collect();
            assert_eq!(e.uniques, Uniques::Int(sorted.into_iter().collect()));
            assert_eq!(e.codes, vals.iter().map(|v| rank[v]).collect::<Vec<u32>>());
            let mut want = vec![0u32; rank.len()];
            vals.iter().for_each(|v| want[rank[v] as usize] += 1);
            assert_eq!(e.counts, want);
        }
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

    /// Codes, first rows and counts of a string column by a sorted map (the definition).
    fn reference(values: &[String]) -> (Vec<u32>, Vec<u64>, Vec<u32>) {
        let mut first = std::collections::BTreeMap::new();
        for (i, v) in values.iter().enumerate() {
            first.entry(v.as_bytes()).or_insert(i as u64);
        }
        let code: std::collections::HashMap<&[u8], u32> =
            first.keys().enumerate().map(|(c, k)| (*k, c as u32)).collect();
        let codes: Vec<u32> = values.iter().map(|v| code[v.as_bytes()]).collect();
        let mut counts = vec![0u32; first.len()];
        codes.iter().for_each(|&c| counts[c as usize] += 1);
        (codes, first.into_values().collect(), counts)
    }

    #[test]
    fn strings_in_parallel_blocks_match_the_definition() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // Long and short values, some only in one block, some repeated across blocks.
        let values: Vec<String> = (0..300_000)
            .map(|i| match rng.gen_range(0..10) {
                0 => format!("late-{}", rng.gen_range(0..50) + if i > 200_000 { 1000 } else { 0 }),
                1 => "x".repeat(rng.gen_range(0..40)),
                _ => format!("u{}", rng.gen_range(0..20_000u32)),
            })
            .collect();
        let mut data = Vec::new();
        let mut offsets = vec![0i64];
        for v in &values {
            data.extend_from_slice(v.as_bytes());
            offsets.push(data.len() as i64);
        }
        let want = reference(&values);
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let got = pool.install(|| encode_str_counted(&offsets, &data).unwrap());
            assert_eq!(got, want, "{threads} threads");
            // A bad offset in a later block is reported at its own row, the first bad one.
            let mut bad = offsets.clone();
            bad[250_001] = bad[250_000] - 1;
            bad[280_001] = bad[280_000] - 1;
            let err = pool.install(|| encode_str_counted(&bad, &data).unwrap_err());
            assert!(matches!(err, CoreError::InvalidOffsets { row: 250_000, .. }), "{err:?}");
            // A negative offset where a block starts: an error at the row that ends there, no panic.
            let mut bad = offsets.clone();
            let start = 300_000usize.div_ceil(threads);
            bad[start] = -5;
            let err = pool.install(|| encode_str_counted(&bad, &data).unwrap_err());
            assert!(matches!(err, CoreError::InvalidOffsets { row, .. } if row == start - 1), "{err:?}");
        }
    }

    #[test]
    fn string_views_in_chunks_encode_like_the_definition() {
        use crate::strings::{build, ViewChunk, ViewsStr};
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        // Lengths around the 4-, 12- and 15-byte edges, NULs inside, repeats across chunks.
        let values: Vec<String> = (0..200_000)
            .map(|_| match rng.gen_range(0..6) {
                0 => "y".repeat(rng.gen_range(0..20)),
                1 => format!("{}\0", "z".repeat(rng.gen_range(0..14))),
                2 => format!("a-long-item-id-{}", rng.gen_range(0..300)),
                _ => format!("u{}", rng.gen_range(0..20_000u32)),
            })
            .collect();
        let want = reference(&values);
        let bytes: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        // Chunks of uneven sizes (one empty), each with its own buffers and non-zero padding.
        let cuts = [0, 1, 70_000, 70_000, 131_072, 200_000];
        let built: Vec<_> = cuts.windows(2).map(|w| build::views(&bytes[w[0]..w[1]], 1 + w[0] % 3, 0x7e)).collect();
        let col = ViewsStr::new(
            built.iter().map(|(v, b)| ViewChunk { views: v, buffers: b.iter().map(Vec::as_slice).collect() }).collect(),
        );
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            assert_eq!(pool.install(|| encode_column(&col).unwrap()), want, "{threads} threads");
            let enc = pool.install(|| encode(&Ids::View(col.clone())).unwrap());
            assert_eq!((enc.codes, enc.counts), (want.0.clone(), want.2.clone()));
        }
    }

    #[test]
    fn the_check_of_distinct_strings_answers_as_the_check_of_every_row() {
        use crate::strings::{build, ViewChunk, ViewsStr};
        use rand::{Rng, SeedableRng};
        // Values drawn from a pool holding every kind the checks tell apart, each value repeated
        // at random rows, so that first rows fall in every block.
        let pool: Vec<String> = vec![
            "u1".into(),
            "42".into(),
            "-7".into(),
            "+nan".into(),
            "NaN".into(),
            "nana".into(),
            "".into(),
            " ".into(),
            " u2".into(),
            "u3\t".into(),
            "a\u{1}b".into(),
            "x\u{7f}".into(),
            "\u{e9}t\u{e9}".into(),
            "\u{3000}9".into(),
            "\u{200b}z".into(),
            "a-long-item-id-with-a-tail".into(),
            " a-long-item-id-padded ".into(),
            "\u{1F600}\u{1F600}\u{1F600}\u{1F600}".into(),
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for case in 0..40 {
            // Some cases draw from a few kinds only (a clean column, or one odd kind).
            let kinds: Vec<&String> =
                if case % 3 == 0 { pool.iter().filter(|_| rng.gen_bool(0.3)).collect() } else { pool.iter().collect() };
            if kinds.is_empty() {
                continue;
            }
            let n = rng.gen_range(1..150_000);
            let values: Vec<String> = (0..n)
                .map(|_| {
                    let v = kinds[rng.gen_range(0..kinds.len())];
                    // Most rows hold plain distinct-ish ids, as a log does.
                    if rng.gen_bool(0.8) {
                        format!("u{}", rng.gen_range(0..5_000u32))
                    } else {
                        v.clone()
                    }
                })
                .collect();
            let bytes: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
            let (o, d) = build::offsets(&bytes);
            let flat = OffsetsStr::new(&o, &d).unwrap();
            let cut = n / 3;
            let built = [build::views(&bytes[..cut], 2, 0x20), build::views(&bytes[cut..], 1, 0x00)];
            let views = ViewsStr::new(
                built
                    .iter()
                    .map(|(v, b)| ViewChunk { views: v, buffers: b.iter().map(Vec::as_slice).collect() })
                    .collect(),
            );
            let whole = text::check_column(&flat).unwrap();
            // The first row of each distinct value, by the definition.
            let mut first = std::collections::HashMap::new();
            for (r, v) in values.iter().enumerate() {
                first.entry(v.as_str()).or_insert(r as u64);
            }
            let mut want = whole.clone();
            want.non_ascii.retain(|r| first[values[*r as usize].as_str()] == *r);
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                for (layout, got) in [
                    ("offsets", pool.install(|| encode_checked(&flat))),
                    ("views", pool.install(|| encode_checked(&views))),
                ] {
                    assert_eq!(got, want, "case {case}, {layout}, {threads} threads");
                }
            }
        }
    }

    fn encode_checked<'a, S: StrColumn<'a>>(col: &S) -> IdText {
        let mut out = vec![MaybeUninit::uninit(); col.rows()];
        encode_column_into(col, &mut out, rayon::current_num_threads(), true).unwrap().check.unwrap()
    }

    #[test]
    fn packed_keys_keep_strings_apart() {
        // Trailing NULs, the 8/15/16-byte edges, and values at the very end of the data (where
        // a word cannot be loaded whole).
        let values: Vec<String> = [
            "a",
            "a\0",
            "\0",
            "",
            "abcdefgh",
            "abcdefgh\0",
            "abcdefghijklmno",
            "abcdefghijklmno\0",
            "abcdefghijklmnop",
            "a",
            "\0",
            "abcdefgh",
        ]
        .iter()
        .map(|v| v.to_string())
        .collect();
        for end in 1..=values.len() {
            let part = &values[..end];
            let mut data = Vec::new();
            let mut offsets = vec![0i64];
            for v in part {
                data.extend_from_slice(v.as_bytes());
                offsets.push(data.len() as i64);
            }
            assert_eq!(encode_str_counted(&offsets, &data).unwrap(), reference(part), "first {end} values");
        }
    }

    #[test]
    fn byte_order_holds_across_the_15_byte_key() {
        // Few distinct bytes (NUL, 0x01, 'a', 0xff) and lengths around 15, so that prefixes,
        // zero padding and long strings sharing their first 15 bytes all occur; not UTF-8, so
        // the offsets layout is driven directly.
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let alphabet = [0u8, 1, b'a', 0xff];
        for case in 0..40 {
            let n = rng.gen_range(1..3000);
            let k = if case % 2 == 0 { 2 } else { 4 };
            let mut pool: Vec<Vec<u8>> = Vec::new();
            for _ in 0..rng.gen_range(1..100) {
                // A base string and its near twins: a prefix, one byte changed, one byte added.
                let base: Vec<u8> = (0..rng.gen_range(0..34)).map(|_| alphabet[rng.gen_range(0..k)]).collect();
                let mut changed = base.clone();
                if let Some(x) = changed.last_mut() {
                    *x = alphabet[rng.gen_range(0..k)];
                }
                let mut longer = base.clone();
                longer.push(alphabet[rng.gen_range(0..k)]);
                pool.extend([base[..rng.gen_range(0..=base.len())].to_vec(), changed, longer, base]);
            }
            let values: Vec<&Vec<u8>> = (0..n).map(|_| &pool[rng.gen_range(0..pool.len())]).collect();
            let mut data = Vec::new();
            let mut offsets = vec![0i64];
            for v in &values {
                data.extend_from_slice(v);
                offsets.push(data.len() as i64);
            }
            let mut sorted: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
            sorted.sort();
            sorted.dedup();
            let (codes, first, counts) = encode_str_counted(&offsets, &data).unwrap();
            for (r, v) in values.iter().enumerate() {
                assert_eq!(sorted[codes[r] as usize], v.as_slice(), "case {case} row {r}");
            }
            assert_eq!(first.len(), sorted.len());
            assert_eq!(counts.iter().map(|&c| c as usize).sum::<usize>(), n);
        }
    }

    #[test]
    fn bad_offsets_rejected() {
        assert!(encode_str(&[0, 5], b"abc").is_err());
        assert!(encode_str(&[-1, 0], b"abc").is_err());
    }

    #[test]
    fn compact() {
        let (map, n) = compact_map(&[true, false, true]);
        assert_eq!(n, 2);
        assert_eq!(map, vec![0, u32::MAX, 1]);
    }
}
