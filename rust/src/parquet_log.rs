//! An interaction log read straight from a parquet file into the pipeline's encoded columns.
//!
//! Parquet writers store id columns dictionary-encoded: per row group, a dictionary page of the
//! distinct values and data pages of small bit-packed indices into it. So the encoding needs no
//! pass over raw 64-bit ids at all: the pages' indices are decoded into the code column as they
//! are (parallel over row groups and columns), the distinct values of all row-group dictionaries —
//! a few per cent of the rows — are ranked once (`ids::int_code_table`), and one pass maps each
//! row group's indices through its dictionary's codes while counting them. Timestamps are
//! decoded into one `i64` column. The `parquet` crate reads the footer; the pages are walked by
//! our own Thrift reader (`chunk_pages`) and decompressed by each rayon thread into one buffer
//! it reuses (`Inflate`: a fresh buffer per page, as the crate's page reader allocates, cost a
//! page fault per 4 KiB of it). Nothing passes through Arrow or Python.
//!
//! The reader handles flat `INT32`/`INT64` columns (integer, no logical type or `Timestamp`) and
//! UTF-8 string id columns (`BYTE_ARRAY` strings: the entries of all dictionaries are encoded as
//! `ids::encode_column` encodes a string column; then `text::check_column` must find none of
//! the strings rows use that the caller's id checks would trim, refuse or read as an integer, and
//! none holding a non-ASCII byte), stored `PLAIN` or dictionary-encoded, with any of the page
//! versions and the snappy, zstd or lz4 codecs. Dictionary values no row uses are dropped.
//! Anything else is `ReadError::Unsupported`: the caller reads the file another way (the
//! result is the same). A null is `ReadError::Null`, naming the column and the row. A page
//! claiming a negative number of values, or a footer list longer than the footer, is
//! `ReadError::Damaged`: polars' reader aborts the process on it, so the caller reports it
//! rather than handing the file on (`check_file` looks for such damage before polars reads).
//!
//! Damage is looked for before anything is sized from it: the footer's lists are bounded by its
//! bytes (`check_footer`), page counts by the page's bytes, and every column chunk's page
//! headers are walked first (`chunk_pages`: every field parquet.thrift requires, of its type;
//! each page inside the chunk, their sizes within the chunk's, each uncompressed size one its
//! codec's data can give and no more than its stored bytes can expand to), so a damaged header
//! makes the file the caller's to read, not a huge allocation; a page must then decompress to
//! exactly its header's size, and a chunk hold a value per row.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use parquet::basic::{Compression, ConvertedType, Encoding, LogicalType, TimeUnit, Type as Physical};
use parquet::file::metadata::{ColumnChunkMetaData, RowGroupMetaData};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::schema::types::ColumnDescriptor;
use rayon::prelude::*;

use crate::buffer;
use crate::column::Column;
use crate::ids::{self, Encoded, Uniques};
use crate::strings::OffsetsStr;
use crate::text;

/// Why a file was not read.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadError {
    /// The file may be fine, but this reader does not handle it (a column type, an encoding or a
    /// codec it does not know, or damage the caller's own reader should describe).
    Unsupported(String),
    /// A column holds a null: its name and the first null row (file order, from 0).
    Null { column: String, row: u64 },
    /// Damage polars' reader aborts the process on (a page claiming a negative number of values,
    /// a footer list longer than the footer; see [`check_file`]): the caller reports it instead
    /// of handing the file on.
    Damaged(String),
}

type Res<T> = std::result::Result<T, ReadError>;

fn unsupported(what: impl Into<String>) -> ReadError {
    ReadError::Unsupported(what.into())
}

fn pq(e: parquet::errors::ParquetError) -> ReadError {
    ReadError::Unsupported(format!("parquet: {e}"))
}

/// The log as the pipeline takes it.
#[derive(Debug)]
pub struct ParquetLog {
    /// The id columns' distinct values and counts; their codes are in `codes` (`codes` empty).
    pub users: Encoded,
    pub items: Encoded,
    /// `rows` i64 slots holding the users' `rows` u32 codes, then the items' (the pipeline's
    /// codes block: it later holds the item output).
    pub codes: Vec<i64>,
    pub rows: usize,
    pub timestamps: Vec<i64>,
    /// Timestamp counts per second: 1 for plain integers, 1000/10^6/10^9 for a `Timestamp` column.
    pub ts_per_second: i64,
    /// The smallest and largest timestamp (None for an empty file).
    pub ts_range: Option<(i64, i64)>,
}

/// A file mapped read-only into memory: [`chunk_pages`] slices compressed pages out of it
/// without a copy (as polars reads parquet). The file must not be truncated while it is read.
struct Mapped {
    at: *const u8,
    len: usize,
}

// SAFETY: the mapping is read-only and lives until `drop`; nothing writes through it.
unsafe impl Send for Mapped {}
unsafe impl Sync for Mapped {}

impl Mapped {
    fn of(path: &Path) -> Res<Self> {
        let file = File::open(path).map_err(|e| unsupported(format!("open: {e}")))?;
        let len = file.metadata().map_err(|e| unsupported(format!("stat: {e}")))?.len() as usize;
        if len == 0 {
            return Err(unsupported("an empty file"));
        }
        // SAFETY: a private read-only mapping of a file we opened; checked for failure below.
        let at =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0) };
        if at == libc::MAP_FAILED {
            return Err(unsupported(format!("mmap: {}", std::io::Error::last_os_error())));
        }
        Ok(Mapped { at: at as *const u8, len })
    }
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `len` bytes mapped at `at`, alive as long as `self`.
        unsafe { std::slice::from_raw_parts(self.at, self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `of` mapped, once.
        unsafe { libc::munmap(self.at as *mut libc::c_void, self.len) };
    }
}

/// How the values of one column are read.
#[derive(Debug, Clone, Copy)]
struct Col {
    index: usize,
    physical: Physical,
    /// An unsigned integer type (UInt8/16/32).
    unsigned: bool,
    /// The declared integer width (8, 16, 32 or 64): values are read as that type, as polars
    /// reads them (a non-conforming file's 300 in an INTEGER(8) column is 44 for both).
    bits: u32,
    nullable: bool,
}

fn find(columns: &[Arc<ColumnDescriptor>], name: &str) -> Res<usize> {
    let found: Vec<usize> = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.path().parts().len() == 1 && c.name() == name)
        .map(|(i, _)| i)
        .collect();
    match found[..] {
        [i] => Ok(i),
        [] => Err(unsupported(format!("no flat column {name:?}"))),
        _ => Err(unsupported(format!("column {name:?} appears more than once"))),
    }
}

/// Rows of column `index` in chunks with no dictionary-encoded page (their footer lists neither
/// dictionary encoding): string ids a writer stored as they are, having given up on a dictionary
/// (many distinct values). Each such value becomes an entry of the chunk's dictionary here,
/// where polars decodes them straight into a column that `prepare(df)` encodes: measured with
/// fresh processes, polars' read then `prepare(df)` took 1.51-1.55 s against this reader's
/// 1.87-1.92 s on a 20M-row file of such string ids (138k users, 27k items), 0.60-0.62 against
/// 0.75-0.79 s on 3.65M rows whose 616k user ids were stored so; on dictionary-encoded files this
/// reader is the faster one (20M rows: 1.18 against 1.40 s).
fn plain_rows(groups: &[RowGroupMetaData], index: usize) -> usize {
    let dictionary = |e: Encoding| matches!(e, Encoding::PLAIN_DICTIONARY | Encoding::RLE_DICTIONARY);
    groups
        .iter()
        .map(|g| g.column(index))
        .filter(|c| !c.encodings().any(dictionary))
        .map(|c| c.num_values().max(0) as usize)
        .sum()
}

/// The column's reading plan and, for timestamps, the counts per second.
fn plan(columns: &[Arc<ColumnDescriptor>], name: &str, timestamp: bool) -> Res<(Col, i64)> {
    let index = find(columns, name)?;
    let c = &columns[index];
    if c.max_rep_level() != 0 || c.max_def_level() > 1 {
        return Err(unsupported(format!("column {name:?} is nested")));
    }
    let physical = c.physical_type();
    if physical == Physical::BYTE_ARRAY && !timestamp {
        let utf8 = matches!(c.logical_type_ref(), Some(LogicalType::String))
            || (c.logical_type_ref().is_none() && c.converted_type() == ConvertedType::UTF8);
        if !utf8 {
            return Err(unsupported(format!("column {name:?} is binary, not UTF-8 strings")));
        }
        return Ok((Col { index, physical, unsigned: false, bits: 64, nullable: c.max_def_level() == 1 }, 1));
    }
    if !matches!(physical, Physical::INT32 | Physical::INT64) {
        return Err(unsupported(format!("column {name:?} is {physical}, not an integer")));
    }
    let (mut unsigned, mut per_second) = (false, 1);
    let mut bits = if physical == Physical::INT64 { 64 } else { 32 };
    match c.logical_type_ref() {
        None => match c.converted_type() {
            ConvertedType::NONE | ConvertedType::INT_32 | ConvertedType::INT_64 => {}
            ConvertedType::INT_8 => bits = 8,
            ConvertedType::INT_16 => bits = 16,
            ConvertedType::UINT_8 => (unsigned, bits) = (true, 8),
            ConvertedType::UINT_16 => (unsigned, bits) = (true, 16),
            ConvertedType::UINT_32 => (unsigned, bits) = (true, 32),
            ConvertedType::TIMESTAMP_MILLIS if timestamp => per_second = 1_000,
            ConvertedType::TIMESTAMP_MICROS if timestamp => per_second = 1_000_000,
            other => return Err(unsupported(format!("column {name:?} has converted type {other}"))),
        },
        Some(LogicalType::Integer { bit_width, is_signed }) => {
            if !is_signed && *bit_width == 64 {
                return Err(unsupported(format!("column {name:?} is UInt64 (values may exceed int64)")));
            }
            unsigned = !is_signed;
            bits = match bit_width {
                8 => 8,
                16 => 16,
                32 => 32,
                64 => 64,
                other => return Err(unsupported(format!("column {name:?} is a {other}-bit integer"))),
            };
        }
        Some(LogicalType::Timestamp { unit, .. }) if timestamp && physical == Physical::INT64 => {
            per_second = match unit {
                TimeUnit::MILLIS => 1_000,
                TimeUnit::MICROS => 1_000_000,
                TimeUnit::NANOS => 1_000_000_000,
            };
        }
        Some(other) => return Err(unsupported(format!("column {name:?} has logical type {other:?}"))),
    }
    Ok((Col { index, physical, unsigned, bits, nullable: c.max_def_level() == 1 }, per_second))
}

/// Reads the three columns of `path` (see the module doc). Row groups and columns are decoded in
/// parallel; the id columns come out encoded (codes in sorted raw order, counted). With
/// `plain_strings` false, a string id column stored mostly without a dictionary is left to the
/// caller's reader (`Unsupported`; see `plain_rows`: polars reads such files faster).
pub fn read_log(path: &Path, user: &str, item: &str, timestamp: &str, plain_strings: bool) -> Res<ParquetLog> {
    // The parquet crate panics on some damaged files (a missing header field); that is damage
    // the caller's own reader describes, not a crash, and nothing is printed for it.
    std::panic::catch_unwind(|| quietly(|| read(path, user, item, timestamp, plain_strings)))
        .unwrap_or_else(|_| Err(unsupported("the parquet reader failed on this file")))
}

/// Looks for the damage polars' parquet reader aborts the process on, before polars is handed
/// the file: a footer whose lists claim more elements than it has bytes (or a schema element
/// more children than the schema has elements), and, in the chunks of the top-level columns
/// named `columns` (every column: None; chunks taken by position, as readers take them), a
/// page claiming a negative number of values, a dictionary page claiming more than 2^24 values
/// and more than its bytes hold, or a chunk and its row group both claiming far more values
/// than the chunk's pages hold. Only that damage is reported, as [`ReadError::Damaged`];
/// anything else (a file that is not parquet, other damage, a panic) is Ok for the caller's
/// reader to describe. Reads the footer and the page headers only: no page is decompressed.
pub fn check_file(path: &Path, columns: Option<&[String]>) -> Res<()> {
    match std::panic::catch_unwind(|| quietly(|| check(path, columns))) {
        Ok(Err(e @ ReadError::Damaged(_))) => Err(e),
        _ => Ok(()),
    }
}

fn check(path: &Path, columns: Option<&[String]>) -> Res<()> {
    let mapped = Mapped::of(path)?;
    let file = mapped.as_ref();
    let footer = check_footer(file)?;
    // The footer walked here, not by the parquet crate: a footer the crate refuses and polars
    // reads (a `column_orders` list one entry short) must not hide a page polars aborts on.
    let Some(walk) = Thrift::loose(footer).footer_walk() else {
        return Ok(()); // polars describes it
    };
    for c in &walk.chunks {
        // Chunks are taken by position (a chunk naming another column is read as this one);
        // when the schema does not say whose a position is, every chunk is looked at.
        let top = walk.leaves.get(c.index).map(String::as_str);
        if let (Some(wanted), Some(top)) = (columns, top) {
            if !wanted.iter().any(|w| w == top) {
                continue;
            }
        }
        let name = top.map_or_else(|| c.path.join("."), str::to_string);
        let start = c.dictionary_offset.unwrap_or(c.data_offset);
        let bytes = usize::try_from(start)
            .ok()
            .zip(usize::try_from(c.compressed).ok())
            .and_then(|(at, len)| file.get(at..at.checked_add(len)?));
        let Some(mut rest) = bytes else { continue };
        // The pages as polars' reader steps through them: every header that parses, however
        // damaged otherwise (a crc of the wrong type, a field given twice, an index page).
        let mut values = Some(0i64);
        while !rest.is_empty() {
            let mut t = Thrift::loose(rest);
            let Some(page) = t.loose_page() else {
                values = None; // a header polars stops at too
                break;
            };
            if let Some(v) = page.num_values.iter().copied().find(|&v| v < 0) {
                return Err(negative_count(&name, v));
            }
            if page.kind == DICTIONARY_PAGE {
                // At least a bit per value (a byte, but for booleans) in the uncompressed page.
                // (polars reads smaller lies: only claims of memory it would abort on count.)
                let most = page.uncompressed.max(0).saturating_mul(8).saturating_add(8).max(1 << 24);
                if let Some(&v) = page.num_values.iter().find(|&&v| v > most) {
                    return Err(ReadError::Damaged(format!(
                        "column {name:?}: a dictionary page claiming {v} values in {} bytes",
                        page.uncompressed
                    )));
                }
            } else if let (Some(sum), Some(&v)) = (values.as_mut(), page.num_values.last()) {
                *sum = sum.saturating_add(v);
            }
            let Some(tail) = usize::try_from(page.compressed).ok().and_then(|k| t.0.get(k..)) else {
                values = None;
                break;
            };
            rest = tail;
        }
        // A chunk and its row group claiming far more values than the chunk's pages hold (polars
        // sizes the column from the claims: 3e9 rows of 40 aborted it; either claim alone it
        // reads or refuses). Smaller differences are left to polars.
        let far = |claim: i64, held: i64| claim > held.saturating_mul(2).saturating_add(1 << 20);
        if let Some(held) = values.filter(|&held| far(c.num_values, held) && far(c.group_rows, held)) {
            return Err(ReadError::Damaged(format!(
                "column {name:?}: a column chunk claiming {} values whose pages hold {held}",
                c.num_values
            )));
        }
    }
    Ok(())
}

/// What [`check_file`] and the reader need of a footer.
struct FooterWalk {
    /// The top-level column of each leaf of the schema, in order (a row group's chunks are its
    /// leaves' in this order); empty when the schema does not describe a tree.
    leaves: Vec<String>,
    chunks: Vec<FooterChunk>,
}

/// What [`check_file`] and the reader need of a column chunk from the footer.
struct FooterChunk {
    /// Its `path_in_schema` (what it says it is; readers take it by position).
    path: Vec<String>,
    num_values: i64,
    compressed: i64,
    data_offset: i64,
    dictionary_offset: Option<i64>,
    /// Its position in its row group, and the row group's num_rows.
    index: usize,
    group_rows: i64,
}

/// The top-level name of each leaf of a schema given depth first as (name, num_children), the
/// root first; None when the counts do not make one tree.
fn schema_leaves(schema: &[(String, i64)]) -> Option<Vec<String>> {
    let (root, rest) = schema.split_first()?;
    let mut leaves = Vec::new();
    // Children still to come at each open level, and the top-level name in force.
    let mut open: Vec<i64> = vec![root.1];
    let mut top = String::new();
    for (name, children) in rest {
        let level = open.iter().rposition(|&c| c > 0)?;
        open.truncate(level + 1);
        open[level] -= 1;
        if level == 0 {
            top.clone_from(name);
        }
        if *children > 0 {
            open.push(*children);
        } else {
            leaves.push(top.clone());
        }
    }
    open.iter().all(|&c| c == 0).then_some(leaves)
}

/// What [`check_file`] needs of a page header: any `num_values` of its data or dictionary
/// headers (every one given, in order).
struct LoosePage {
    kind: i64,
    uncompressed: i64,
    compressed: i64,
    num_values: Vec<i64>,
}

fn negative_count(name: &str, n: i64) -> ReadError {
    ReadError::Damaged(format!("column {name:?}: a page claiming {n} values"))
}

thread_local! {
    /// Set while this thread reads a file: a panic then is caught by [`read_log`] and not printed.
    static READING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with this thread's panics kept quiet (the process's panic hook, wrapped once, stays
/// silent for a thread inside `quietly` and prints every other panic as before).
fn quietly<R>(f: impl FnOnce() -> R) -> R {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !READING.with(|r| r.get()) {
                previous(info)
            }
        }));
    });
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            READING.with(|r| r.set(self.0));
        }
    }
    let _restore = Restore(READING.with(|r| r.replace(true)));
    f()
}

fn read(path: &Path, user: &str, item: &str, timestamp: &str, plain_strings: bool) -> Res<ParquetLog> {
    let file = Bytes::from_owner(Mapped::of(path)?);
    let footer = check_footer(&file)?;
    let reader = SerializedFileReader::new(file.clone()).map_err(pq)?;
    let meta = reader.metadata();
    let columns = meta.file_metadata().schema_descr().columns();
    let (ucol, _) = plan(columns, user, false)?;
    let (icol, _) = plan(columns, item, false)?;
    let (tcol, ts_per_second) = plan(columns, timestamp, true)?;
    let groups = meta.row_groups();
    let mut starts = Vec::with_capacity(groups.len() + 1);
    starts.push(0usize);
    for g in groups {
        let rows = usize::try_from(g.num_rows()).map_err(|_| unsupported("negative row count"))?;
        starts.push(starts.last().unwrap() + rows);
    }
    let n = *starts.last().unwrap();
    if meta.file_metadata().num_rows() != n as i64 {
        return Err(unsupported("the footer's row count disagrees with its row groups"));
    }
    if n == 0 {
        return Err(unsupported("no rows"));
    }
    if n > u32::MAX as usize {
        return Err(unsupported(format!("{n} rows: more than the core indexes")));
    }
    // Nothing is sized from the footer's row count before the column chunks agree with it (a
    // footer claiming 4e9 rows made the blocks below abort the process) and the memory is
    // there. Each chunk must also be the column it stands for: the crate takes a row group's
    // chunks by position, and a footer listing another column's chunk there (of another type)
    // had the reader decode text as integers (polars refuses such a file).
    let listed = Thrift::new(footer).footer_walk().ok_or_else(|| unsupported("a footer the core cannot walk"))?.chunks;
    let width = columns.len();
    if listed.len() != groups.len() * width {
        return Err(unsupported("row groups that do not list every column"));
    }
    for (k, (g, rows)) in groups.iter().zip(starts.windows(2)).enumerate() {
        for (col, name) in [(ucol, user), (icol, item), (tcol, timestamp)] {
            let chunk = g.column(col.index);
            // A flat column has a value (or a null) per row; polars stops at the chunk's count.
            if chunk.num_values() != (rows[1] - rows[0]) as i64 {
                return Err(unsupported(format!("column {name:?}: a column chunk's value count is not its row count")));
            }
            if listed[k * width + col.index].path != [name] || chunk.column_type() != col.physical {
                return Err(unsupported(format!(
                    "column {name:?}: a row group lists another column's chunk in its place"
                )));
            }
        }
    }
    for (col, name) in [(ucol, user), (icol, item)] {
        if !plain_strings && col.physical == Physical::BYTE_ARRAY && plain_rows(groups, col.index) * 2 >= n {
            return Err(unsupported(format!(
                "column {name:?}: string ids mostly stored without a dictionary (polars reads those faster)"
            )));
        }
    }
    buffer::check_alloc::<i64>(2 * n as u128, "rows").map_err(|e| unsupported(e.to_string()))?;
    // The two index columns in one block (zeros from calloc: untouched until decoded into), which
    // become the codes in place and later the pipeline's item output.
    let mut block = buffer::zeroed::<i64>(n);
    // SAFETY: n initialized i64 are 2n initialized, aligned u32; the two halves are disjoint.
    let words = unsafe { std::slice::from_raw_parts_mut(block.as_mut_ptr() as *mut u32, 2 * n) };
    let (uidx, iidx) = words.split_at_mut(n);
    let mut ts = buffer::zeroed::<i64>(n);
    buffer::populate(&ts);
    // One task per (column, row group), each writing its own rows.
    let mut tasks: Vec<Task<'_>> = Vec::with_capacity(3 * groups.len());
    for (col, name, out) in [(ucol, user, &mut *uidx), (icol, item, &mut *iidx)] {
        for ((g, meta), rows) in groups.iter().enumerate().zip(by_group(out, &starts)) {
            tasks.push(Task { col, name, meta, start: starts[g], out: Out::Idx(rows) });
        }
    }
    for ((g, meta), rows) in groups.iter().enumerate().zip(by_group(&mut ts, &starts)) {
        tasks.push(Task { col: tcol, name: timestamp, meta, start: starts[g], out: Out::Ts(rows) });
    }
    let done: Vec<Res<Decoded>> =
        tasks.into_par_iter().map_init(Inflate::default, |inf, t| quietly(|| t.run(&file, inf))).collect();
    let mut first_null: Option<(u64, String)> = None;
    let (mut udicts, mut idicts, mut ranges) = (Vec::new(), Vec::new(), Vec::new());
    let mut first_error: Option<ReadError> = None;
    for (k, d) in done.into_iter().enumerate() {
        match d {
            Ok(Decoded::Dict(d)) if k < groups.len() => udicts.push(d),
            Ok(Decoded::Dict(d)) => idicts.push(d),
            Ok(Decoded::Range(r)) => ranges.extend(r),
            Err(ReadError::Null { column, row }) => {
                if first_null.as_ref().is_none_or(|(r, _)| row < *r) {
                    first_null = Some((row, column));
                }
            }
            // Damage first: the caller must not hand such a file on.
            Err(e @ ReadError::Damaged(_)) => return Err(e),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if let Some((row, column)) = first_null {
        return Err(ReadError::Null { column, row });
    }
    let ts_range = ranges.into_iter().reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
    // Encoded side by side, the two columns' string dictionaries share the threads in proportion
    // to their entries ([`ids::shared_blocks`]: at the M2 shape, where the dictionaries hold
    // nearly every row, one block each; at 20M rows the users' entries are five times the items',
    // two blocks for them).
    let threads = rayon::current_num_threads();
    let (users, items) = if n >= 1 << 25 {
        (encode(uidx, &udicts, &starts, threads), encode(iidx, &idicts, &starts, threads))
    } else {
        let entries = |d: &[Dict]| d.iter().map(Dict::len).sum::<usize>();
        let (ub, ib) = ids::shared_blocks(entries(&udicts), entries(&idicts));
        rayon::join(|| encode(uidx, &udicts, &starts, ub), || encode(iidx, &idicts, &starts, ib))
    };
    let (users, items) = (used(uidx, users?), used(iidx, items?));
    for (e, name) in [(&users, user), (&items, item)] {
        if let Uniques::Text(offsets, data) = &e.uniques {
            plain_text(offsets, data, name)?;
        }
    }
    Ok(ParquetLog { users, items, codes: block, rows: n, timestamps: ts, ts_per_second, ts_range })
}

/// `rows` cut into the disjoint slices of the row groups starting at `starts`.
fn by_group<'a, T>(mut rows: &'a mut [T], starts: &[usize]) -> Vec<&'a mut [T]> {
    starts
        .windows(2)
        .map(|w| {
            let (here, after) = std::mem::take(&mut rows).split_at_mut(w[1] - w[0]);
            rows = after;
            here
        })
        .collect()
}

enum Out<'a> {
    /// Dictionary indices of an id column's rows (codes after [`encode`]).
    Idx(&'a mut [u32]),
    Ts(&'a mut [i64]),
}

struct Task<'a> {
    col: Col,
    name: &'a str,
    meta: &'a RowGroupMetaData,
    start: usize,
    out: Out<'a>,
}

/// An id column chunk's dictionary: the values its rows' indices point at.
enum Dict {
    Int(Vec<i64>),
    /// Arrow `large_string` layout: offsets (from 0) and bytes.
    Text(Vec<i64>, Vec<u8>),
}

impl Dict {
    fn len(&self) -> usize {
        match self {
            Dict::Int(v) => v.len(),
            Dict::Text(o, _) => o.len() - 1,
        }
    }

    /// Appends `n` PLAIN values (integers, or strings as a 4-byte length and the bytes).
    fn push_plain(&mut self, b: &[u8], n: usize, col: Col, name: &str) -> Res<()> {
        match self {
            Dict::Int(v) => plain_into(b, n, col, v, name),
            Dict::Text(offsets, data) => {
                if n > b.len() / 4 {
                    return Err(truncated(name)); // each value takes 4 bytes at least
                }
                let mut rest = b;
                data.reserve(b.len() - 4 * n);
                offsets.reserve(n);
                for _ in 0..n {
                    let (len, tail) = rest.split_at_checked(4).ok_or_else(|| truncated(name))?;
                    let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
                    let (value, tail) = tail.split_at_checked(len).ok_or_else(|| truncated(name))?;
                    data.extend_from_slice(value);
                    offsets.push(data.len() as i64);
                    rest = tail;
                }
                Ok(())
            }
        }
    }
}

enum Decoded {
    Dict(Dict),
    /// A timestamp chunk's (min, max); None when it has no rows.
    Range(Option<(i64, i64)>),
}

/// A data page's values.
enum Values<'p> {
    Plain(&'p [u8]),
    /// Bit width byte, then RLE/bit-packed hybrid dictionary indices.
    Dict(&'p [u8]),
}

impl Task<'_> {
    fn run(self, file: &[u8], inflate: &mut Inflate) -> Res<Decoded> {
        let Task { col, name, meta, start, out } = self;
        let chunk = meta.column(col.index);
        let codec = chunk.compression();
        let rows = out_len(&out); // the chunk's value count too (see `read`)
        let mut dict =
            if col.physical == Physical::BYTE_ARRAY { Dict::Text(vec![0], Vec::new()) } else { Dict::Int(Vec::new()) };
        let mut dict_len = None; // values from the dictionary page (indices must stay below)
        let (mut at, mut scratch) = (0usize, Vec::<u32>::new());
        let mut out = out;
        let mut range = (i64::MAX, i64::MIN);
        for (head, body) in chunk_pages(file, chunk, name)? {
            let Some(h) = head.data else {
                return Err(unsupported(format!("column {name:?}: a page without its header")));
            };
            let buf = inflate.page(&head.sizes, body, codec, name)?;
            let n = usize::try_from(h.num_values).map_err(|_| negative_count(name, h.num_values))?;
            let (values, count) = match h.of {
                DICTIONARY_PAGE => {
                    if dict_len.is_some() || at > 0 {
                        return Err(unsupported(format!("column {name:?}: a second dictionary page")));
                    }
                    if !matches!(h.encoding, ENC_PLAIN | ENC_PLAIN_DICTIONARY) {
                        return Err(unsupported(format!(
                            "column {name:?}: dictionary encoding {}",
                            encoding_name(h.encoding)
                        )));
                    }
                    dict.push_plain(buf, n, col, name)?;
                    dict_len = Some(dict.len());
                    continue;
                }
                DATA_PAGE => {
                    too_many(at, n, rows, name)?;
                    let mut body: &[u8] = buf;
                    if col.nullable {
                        if h.def_encoding != ENC_RLE {
                            return Err(unsupported(format!(
                                "column {name:?}: levels encoded {}",
                                encoding_name(h.def_encoding)
                            )));
                        }
                        let len = body.get(..4).map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize);
                        let levels = len.and_then(|l| body.get(4..4 + l)).ok_or_else(|| truncated(name))?;
                        if let Some(j) =
                            first_zero_level(levels, n).map_err(|e| unsupported(format!("{name:?}: {e}")))?
                        {
                            return Err(null(name, start + at + j));
                        }
                        body = &body[4 + levels.len()..];
                    }
                    (values(body, h.encoding, name)?, n)
                }
                _ => {
                    too_many(at, n, rows, name)?;
                    let (def, rep) = (h.def_len as usize, h.rep_len as usize);
                    let levels = buf.get(rep..rep + def).ok_or_else(|| truncated(name))?;
                    if h.num_nulls < 0 {
                        return Err(unsupported(format!("column {name:?}: a negative null count")));
                    }
                    if h.num_nulls > 0 {
                        let j = first_zero_level(levels, n).map_err(|e| unsupported(format!("{name:?}: {e}")))?;
                        return Err(null(name, start + at + j.unwrap_or(0)));
                    }
                    (values(&buf[rep + def..], h.encoding, name)?, n)
                }
            };
            match (&mut out, values) {
                (Out::Idx(o), Values::Dict(b)) => {
                    let d = dict_len.ok_or_else(|| unsupported(format!("column {name:?}: no dictionary page")))?;
                    let page = &mut o[at..at + count];
                    hybrid(b, page, name)?;
                    if page.iter().any(|&x| x as usize >= d) {
                        return Err(unsupported(format!("column {name:?}: a dictionary index out of range")));
                    }
                }
                (Out::Idx(o), Values::Plain(b)) => {
                    // Plain pages (a writer that gave up on its dictionary): each value becomes an
                    // entry of the chunk's dictionary (room made once for the rest of the chunk's
                    // rows, which plain pages usually hold all of, rather than doubling per page).
                    let first = dict.len();
                    if let Dict::Int(v) = &mut dict {
                        v.reserve_exact(rows - at); // at most the rows of this chunk
                    }
                    dict.push_plain(b, count, col, name)?;
                    for (j, x) in o[at..at + count].iter_mut().enumerate() {
                        *x = (first + j) as u32;
                    }
                }
                (Out::Ts(o), Values::Dict(b)) => {
                    let d = dict_len.ok_or_else(|| unsupported(format!("column {name:?}: no dictionary page")))?;
                    scratch.resize(count, 0);
                    hybrid(b, &mut scratch, name)?;
                    let Dict::Int(values) = &dict else { unreachable!("timestamps are integers") };
                    for (x, &k) in o[at..at + count].iter_mut().zip(&scratch) {
                        *x = *values[..d]
                            .get(k as usize)
                            .ok_or_else(|| unsupported("a dictionary index out of range"))?;
                    }
                }
                (Out::Ts(o), Values::Plain(b)) => {
                    let page = &mut o[at..at + count];
                    plain_to(b, col, page, name)?;
                }
            }
            if let Out::Ts(o) = &out {
                range = o[at..at + count].iter().fold(range, |(lo, hi), &v| (lo.min(v), hi.max(v)));
            }
            at += count;
        }
        if at != rows {
            return Err(unsupported(format!("column {name:?}: {at} values for {rows} rows")));
        }
        Ok(match out {
            Out::Idx(_) => Decoded::Dict(dict),
            Out::Ts(_) => Decoded::Range((rows > 0).then_some(range)),
        })
    }
}

/// A column chunk's pages: each header, read by our own Thrift reader, and the page's stored
/// bytes (a slice of the mapped file). Damage is refused before anything is sized from it: every
/// page must lie inside the chunk, the pages together must not exceed the chunk's uncompressed
/// size, and a page's uncompressed size must be what its compressed data can give (see
/// [`fits_codec`]; a damaged header once asked for 2 GiB per page, and a snappy page shorter than
/// its header came back padded with zeros where polars refuses the file). Anything else is damage
/// for the caller's reader.
fn chunk_pages<'f>(file: &'f [u8], chunk: &ColumnChunkMetaData, name: &str) -> Res<Vec<(PageHead, &'f [u8])>> {
    let damaged = |what: &str| unsupported(format!("column {name:?}: {what}"));
    let start = chunk.dictionary_page_offset().unwrap_or(chunk.data_page_offset());
    let bytes = usize::try_from(start)
        .ok()
        .zip(usize::try_from(chunk.compressed_size()).ok())
        .and_then(|(at, len)| file.get(at..at.checked_add(len)?))
        .ok_or_else(|| damaged("a column chunk outside the file"))?;
    let declared = chunk.uncompressed_size();
    let (mut rest, mut uncompressed) = (bytes, 0i64);
    let mut pages = Vec::new();
    while !rest.is_empty() {
        let mut t = Thrift::new(rest);
        let h = t.page_header().ok_or_else(|| damaged("a damaged page header"))?;
        if h.sizes.index_page {
            // The crate would skip it; polars refuses the file.
            return Err(damaged("an index page"));
        }
        let body = usize::try_from(h.sizes.compressed)
            .ok()
            .and_then(|n| t.0.get(..n))
            .ok_or_else(|| damaged("a page larger than its column chunk"))?;
        uncompressed = uncompressed.saturating_add(h.sizes.uncompressed);
        if h.sizes.uncompressed < 0 || uncompressed > declared {
            return Err(damaged("pages larger than the column chunk"));
        }
        if !fits_codec(&h.sizes, body, chunk.compression()) {
            return Err(damaged("a page's uncompressed size that its data does not have"));
        }
        rest = &t.0[body.len()..];
        pages.push((h, body));
    }
    Ok(pages)
}

/// A rayon thread's decompressors and the buffer it decompresses pages into, reused from page to
/// page and chunk to chunk (a fresh buffer per page costs a page fault per 4 KiB of it).
#[derive(Default)]
struct Inflate {
    zstd: Option<zstd::bulk::Decompressor<'static>>,
    snappy: snap::raw::Decoder,
    /// Initialized up to its length (a zstd page sets it to the page's; the others only grow
    /// it).
    buf: Vec<u8>,
}

impl Inflate {
    /// The page's bytes as stored uncompressed: `body` itself when it is, else the v2 levels
    /// (stored as they are) followed by the decompressed values, which must be exactly the
    /// header's size ([`fits_codec`] has checked the stored ones).
    fn page<'a>(&'a mut self, h: &PageSizes, body: &'a [u8], codec: Compression, name: &str) -> Res<&'a [u8]> {
        if !h.values_compressed || codec == Compression::UNCOMPRESSED {
            return Ok(body);
        }
        if !matches!(codec, Compression::SNAPPY | Compression::ZSTD(_) | Compression::LZ4 | Compression::LZ4_RAW) {
            // Before anything is sized from the header (no bound is known for other codecs).
            return Err(unsupported(format!("column {name:?}: codec {codec}")));
        }
        let (levels, values) = body.split_at(h.levels as usize);
        let (total, want) = (h.uncompressed as usize, (h.uncompressed - h.levels) as usize);
        let too_large = || unsupported(format!("column {name:?}: a page too large to decompress"));
        let wrong_size = || unsupported(format!("column {name:?}: a page that does not decompress to its size"));
        if let Compression::ZSTD(_) = codec {
            // Into reserved capacity: memory is touched only as the frame fills it (a forged size
            // without a content size in the frame reserves address space, nothing more).
            self.buf.clear();
            self.buf.try_reserve(total).map_err(|_| too_large())?;
            self.buf.extend_from_slice(levels);
            if want > 0 {
                let d = match &mut self.zstd {
                    Some(d) => d,
                    None => self
                        .zstd
                        .insert(zstd::bulk::Decompressor::new().map_err(|e| unsupported(format!("zstd: {e}")))?),
                };
                let mut out = std::io::Cursor::new(&mut self.buf);
                out.set_position(levels.len() as u64);
                if d.decompress_to_buffer(values, &mut out).ok() != Some(want) {
                    return Err(wrong_size());
                }
            }
            if self.buf.len() != total {
                return Err(wrong_size());
            }
            return Ok(&self.buf[..]);
        }
        if self.buf.len() < total {
            // Initialized (snappy and LZ4 write into slices); bounded by `fits_codec`.
            self.buf.try_reserve(total - self.buf.len()).map_err(|_| too_large())?;
            self.buf.resize(total, 0);
        }
        self.buf[..levels.len()].copy_from_slice(levels);
        let out = &mut self.buf[levels.len()..total];
        let got = match codec {
            _ if want == 0 => Some(0),
            Compression::SNAPPY => self.snappy.decompress(values, out).ok(),
            Compression::LZ4_RAW => lz4_flex::block::decompress_into(values, out).ok(),
            _ => lz4_hadoop(values, out).or_else(|| lz4_flex::block::decompress_into(values, out).ok()), // LZ4
        };
        if got != Some(want) {
            return Err(wrong_size());
        }
        Ok(&self.buf[..total])
    }
}

/// LZ4 as Hadoop frames it (the `LZ4` codec of parquet-mr and older Arrow): blocks, each after its
/// decompressed and compressed sizes (big-endian u32). The decompressed bytes, if `b` is that.
fn lz4_hadoop(mut b: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut at = 0usize;
    while !b.is_empty() {
        let (head, rest) = b.split_first_chunk::<8>()?;
        let size = u32::from_be_bytes(head[..4].try_into().unwrap()) as usize;
        let packed = u32::from_be_bytes(head[4..].try_into().unwrap()) as usize;
        let (block, rest) = rest.split_at_checked(packed)?;
        let target = out.get_mut(at..at.checked_add(size)?)?;
        if lz4_flex::block::decompress_into(block, target).ok()? != size {
            return None;
        }
        at += size;
        b = rest;
    }
    Some(at)
}

/// The footer's Thrift walked before the parquet crate decodes it: the crate sizes its vectors
/// from the lengths and counts it reads, so a damaged footer claiming 2^31 list elements or
/// schema children made it allocate tens of GiB (an abort; polars' reader aborts on such
/// footers too, so they are [`ReadError::Damaged`]). Every list must fit the bytes left (each
/// element takes one byte at least), and no schema element may claim more children than there
/// are elements. A file with no footer is left to the caller's reader (polars names it); the
/// rest of the footer is the crate's to check. Returns the footer's bytes.
fn check_footer(file: &[u8]) -> Res<&[u8]> {
    let missing = |what: &str| unsupported(format!("a damaged footer: {what}"));
    let damaged = |what: &str| ReadError::Damaged(format!("a damaged footer: {what}"));
    let n = file.len();
    if n < 12 || &file[n - 4..] != b"PAR1" {
        return Err(missing("no parquet footer at the end of the file"));
    }
    let len = u32::from_le_bytes(file[n - 8..n - 4].try_into().expect("four bytes")) as usize;
    let footer = n.checked_sub(8 + len).filter(|&at| at >= 4).map(|at| &file[at..n - 8]);
    let footer = footer.ok_or_else(|| missing("a footer length beyond the file"))?;
    let mut t = Thrift::new(footer);
    let (mut elements, mut children) = (0u64, 0i64);
    t.fields(0, |t, id, kind| {
        if (id, kind) != (2, 9) {
            return Some(false); // skipped: its lists are bounded by the bytes as it is read
        }
        // FileMetaData.schema: a list of SchemaElement, whose field 5 is num_children.
        let count = t.list_len(STRUCT)?;
        for _ in 0..count {
            t.fields(1, |t, id, kind| match (id, kind) {
                (5, 5) => {
                    children = children.max(t.int()?);
                    Some(true)
                }
                _ => Some(false),
            })?;
        }
        elements = count;
        Some(true)
    })
    .ok_or_else(|| damaged("a list longer than the footer, or nesting too deep"))?;
    if children > elements as i64 {
        return Err(damaged("a schema element with more children than the schema has elements"));
    }
    Ok(footer)
}

/// Whether `body` can decompress to the header's uncompressed size, as far as the codec tells
/// without decompressing: snappy and zstd store the size (zstd optionally), and LZ4 expands
/// at most 255 times (one byte adds 255 to a match's length); values stored uncompressed must be
/// exactly that size. A v2 data page's levels are stored uncompressed before the values.
fn fits_codec(h: &PageSizes, body: &[u8], codec: Compression) -> bool {
    let (levels, values) = match usize::try_from(h.levels) {
        Ok(l) if l <= body.len() && h.levels <= h.uncompressed => (h.levels, &body[l..]),
        _ => return false,
    };
    let want = (h.uncompressed - levels) as u64;
    if !h.values_compressed || codec == Compression::UNCOMPRESSED {
        // Stored as they are (a v2 page may say so in a compressed chunk): the sizes must agree,
        // as polars requires.
        return values.len() as u64 == want;
    }
    if want == 0 {
        return true;
    }
    // What the stored bytes can expand to at most: snappy's densest element is a 3-byte copy of
    // 64 bytes; a zstd block (at most 128 KiB) takes 4 bytes at least (an RLE block); an LZ4
    // byte adds at most 255 to a match's length.
    let len = values.len() as u64;
    match codec {
        Compression::SNAPPY => want <= 22 * len && uleb(&mut &values[..]).is_ok_and(|n| n == want),
        Compression::ZSTD(_) => {
            want <= (128 << 10) * (len / 4 + 1) && zstd_content_size(values).is_none_or(|n| n == want)
        }
        Compression::LZ4 | Compression::LZ4_RAW => want <= 255 * len + 64,
        _ => true,
    }
}

/// The content size a zstd frame header declares, if it declares one.
fn zstd_content_size(b: &[u8]) -> Option<u64> {
    let (&[0x28, 0xb5, 0x2f, 0xfd, descriptor], rest) = b.split_first_chunk::<5>()? else { return None };
    let single_segment = descriptor & 0x20 != 0;
    let size_bytes = match descriptor >> 6 {
        0 => single_segment as usize,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    // A window byte unless single-segment, then the dictionary id (0, 1, 2 or 4 bytes).
    let skip = !single_segment as usize + [0, 1, 2, 4][(descriptor & 3) as usize];
    let field = rest.get(skip..skip + size_bytes).filter(|f| !f.is_empty())?;
    let mut le = [0u8; 8];
    le[..field.len()].copy_from_slice(field);
    Some(u64::from_le_bytes(le) + if size_bytes == 2 { 256 } else { 0 })
}

/// `PageType::INDEX_PAGE` in parquet.thrift.
const INDEX_PAGE: i64 = 1;

/// The sizes in a `PageHeader` (see [`chunk_pages`]).
#[derive(Debug, PartialEq)]
struct PageSizes {
    /// The page is an `INDEX_PAGE` (a page type the format reserves and no writer writes).
    index_page: bool,
    uncompressed: i64,
    compressed: i64,
    /// A v2 data page's level bytes (definition and repetition); 0 for other pages.
    levels: i64,
    /// False for a v2 data page whose values are stored uncompressed.
    values_compressed: bool,
}

/// `PageType`s in parquet.thrift.
const DATA_PAGE: i64 = 0;
const DICTIONARY_PAGE: i64 = 2;
const DATA_PAGE_V2: i64 = 3;

/// A page header as [`chunk_pages`] reads it.
#[derive(Debug, PartialEq)]
struct PageHead {
    sizes: PageSizes,
    /// The header of the page's own type (None: none, or only another type's).
    data: Option<DataHead>,
}

/// A data or dictionary page's header: -1 where a field is missing (refused where it is needed).
#[derive(Debug, PartialEq, Clone, Copy)]
struct DataHead {
    /// The `PageType` this header is for.
    of: i64,
    num_values: i64,
    /// The values' `Encoding` (thrift numbering).
    encoding: i64,
    /// A v1 data page's definition level `Encoding`.
    def_encoding: i64,
    /// A v2 data page's nulls and level byte lengths, and whether its values are compressed.
    num_nulls: i64,
    def_len: i64,
    rep_len: i64,
    compressed: bool,
}

/// A Thrift compact-protocol reader over the bytes still to read (and how deep unknown fields
/// may nest): just enough to read page headers and the footer's chunks, and skip every other
/// field.
struct Thrift<'a>(&'a [u8], u32);

impl<'a> Thrift<'a> {
    /// A reader of what a strict reader reads: unknown fields nested up to 32 deep (as
    /// polars' reader; deeper is damage it refuses).
    fn new(bytes: &'a [u8]) -> Self {
        Thrift(bytes, 32)
    }

    /// A reader that walks what polars' reader may step past (see [`check_file`]).
    fn loose(bytes: &'a [u8]) -> Self {
        Thrift(bytes, 256)
    }

    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn int(&mut self) -> Option<i64> {
        let v = uleb(&mut self.0).ok()?;
        Some((v >> 1) as i64 ^ -((v & 1) as i64)) // zigzag
    }

    /// Calls `field(self, id, type)` for each field of a struct; it reads the value and says
    /// true, or says false and the value is skipped.
    fn fields(&mut self, depth: u32, mut field: impl FnMut(&mut Self, i64, u8) -> Option<bool>) -> Option<()> {
        let mut id = 0i64;
        loop {
            let head = self.byte()?;
            if head == 0 {
                return Some(());
            }
            let (kind, delta) = (head & 0x0f, head >> 4);
            id = if delta == 0 { self.int()? } else { id + delta as i64 };
            if !field(self, id, kind)? {
                self.skip(kind, depth, false)?;
            }
        }
    }

    /// A list's (or set's) header: its elements' type and how many it claims.
    fn list_header(&mut self) -> Option<(u8, u64)> {
        let head = self.byte()?;
        let n = if head >> 4 == 15 { uleb(&mut self.0).ok()? } else { (head >> 4) as u64 };
        Some((head & 0x0f, n))
    }

    /// The length of a list of `elements` (a Thrift type), which must fit the bytes left (each
    /// element takes a byte at least).
    fn list_len(&mut self, elements: u8) -> Option<u64> {
        let (kind, n) = self.list_header()?;
        (kind == elements && n <= self.0.len() as u64).then_some(n)
    }

    /// Skips a value of type `kind`: a bool is in its field's type, or one byte in a list.
    fn skip(&mut self, kind: u8, depth: u32, in_list: bool) -> Option<()> {
        if depth > self.1 {
            return None;
        }
        let n = match kind {
            1 | 2 => in_list as usize,
            3 => 1,
            4..=6 => return self.int().map(drop),
            7 => 8,
            8 => usize::try_from(uleb(&mut self.0).ok()?).ok()?,
            9 | 10 => {
                let (kind, n) = self.list_header()?;
                for _ in 0..n {
                    self.skip(kind, depth + 1, true)?; // each element takes a byte at least
                }
                0
            }
            11 => {
                let n = uleb(&mut self.0).ok()?;
                let types = if n > 0 { self.byte()? } else { 0 };
                for _ in 0..n {
                    self.skip(types >> 4, depth + 1, true)?;
                    self.skip(types & 0x0f, depth + 1, true)?;
                }
                0
            }
            12 => return self.fields(depth + 1, |_, _, _| Some(false)),
            _ => return None,
        };
        self.0 = self.0.get(n..)?;
        Some(())
    }

    /// The schema's leaves and every column chunk of a footer (`FileMetaData`: 2 schema, 4
    /// row_groups; `SchemaElement`: 4 name, 5 num_children; `RowGroup`: 1 columns, 3 num_rows;
    /// `ColumnChunk`: 3 meta_data; `ColumnMetaData`: 3 path_in_schema, 5 num_values, 7
    /// total_compressed_size, 9 data_page_offset, 11 dictionary_page_offset), None when they do
    /// not parse. Other fields are skipped, whatever they hold.
    fn footer_walk(&mut self) -> Option<FooterWalk> {
        let mut walk = FooterWalk { leaves: Vec::new(), chunks: Vec::new() };
        let mut schema: Vec<(String, i64)> = Vec::new();
        self.fields(0, |t, id, kind| {
            if (id, kind) == (2, LIST) {
                for _ in 0..t.list_len(STRUCT)? {
                    let (mut name, mut children) = (String::new(), 0i64);
                    t.fields(1, |t, id, kind| {
                        match (id, kind) {
                            (4, BINARY) => name = t.string()?,
                            (5, I32) => children = t.int()?,
                            _ => return Some(false),
                        }
                        Some(true)
                    })?;
                    schema.push((name, children));
                }
                return Some(true);
            }
            if (id, kind) != (4, LIST) {
                return Some(false);
            }
            for _ in 0..t.list_len(STRUCT)? {
                let first = walk.chunks.len();
                let mut rows = -1;
                t.fields(1, |t, id, kind| {
                    if (id, kind) == (3, I64) {
                        rows = t.int()?;
                        return Some(true);
                    }
                    if (id, kind) != (1, LIST) {
                        return Some(false);
                    }
                    for _ in 0..t.list_len(STRUCT)? {
                        t.fields(2, |t, id, kind| {
                            if (id, kind) != (3, STRUCT) {
                                return Some(false);
                            }
                            walk.chunks.push(t.column_meta()?);
                            Some(true)
                        })?;
                    }
                    Some(true)
                })?;
                for (k, c) in walk.chunks[first..].iter_mut().enumerate() {
                    (c.index, c.group_rows) = (k, rows);
                }
            }
            Some(true)
        })?;
        walk.leaves = schema_leaves(&schema).unwrap_or_default();
        Some(walk)
    }

    /// A binary field's value as text (lossy).
    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(uleb(&mut self.0).ok()?).ok()?;
        let (bytes, rest) = self.0.split_at_checked(len)?;
        self.0 = rest;
        Some(String::from_utf8_lossy(bytes).into_owned())
    }

    fn column_meta(&mut self) -> Option<FooterChunk> {
        let mut c = FooterChunk {
            path: Vec::new(),
            num_values: -1,
            compressed: -1,
            data_offset: -1,
            dictionary_offset: None,
            index: 0,
            group_rows: -1,
        };
        self.fields(3, |t, id, kind| {
            match (id, kind) {
                (3, LIST) => {
                    for _ in 0..t.list_len(BINARY)? {
                        c.path.push(t.string()?);
                    }
                }
                (5, I64) => c.num_values = t.int()?,
                (7, I64) => c.compressed = t.int()?,
                (9, I64) => c.data_offset = t.int()?,
                (11, I64) => c.dictionary_offset = Some(t.int()?),
                _ => return Some(false),
            }
            Some(true)
        })?;
        Some(c)
    }

    /// A page header read as loosely as it can be walked (see [`check_file`]): 1 its type, 2 and
    /// 3 its sizes, and the num_values (field 1) of any data or dictionary header (5, 7, 8).
    fn loose_page(&mut self) -> Option<LoosePage> {
        let mut p = LoosePage { kind: -1, uncompressed: -1, compressed: -1, num_values: Vec::new() };
        self.fields(0, |t, id, kind| {
            match (id, kind) {
                (1, I32) => p.kind = t.int()?,
                (2, I32) => p.uncompressed = t.int()?,
                (3, I32) => p.compressed = t.int()?,
                (5 | 7 | 8, STRUCT) => {
                    t.fields(1, |t, id, kind| {
                        if (id, kind) != (1, I32) {
                            return Some(false);
                        }
                        p.num_values.push(t.int()?);
                        Some(true)
                    })?;
                }
                _ => return Some(false),
            }
            Some(true)
        })?;
        Some(p)
    }

    /// An `i32` field's value (`kind` must say i32).
    fn i32_field(&mut self, kind: u8) -> Option<i64> {
        (kind == 5).then_some(())?;
        self.int().filter(|v| i32::try_from(*v).is_ok())
    }

    /// A `PageHeader`: 1 its type, 2 uncompressed_page_size and 3 compressed_page_size (all
    /// required), 4 crc, 5 a v1 data page's header, 6 an index page's, 7 a dictionary page's, 8 a
    /// v2 data page's. A field given twice, or a known field with another type, is damage (as for
    /// polars' Thrift reader); unknown fields are skipped.
    fn page_header(&mut self) -> Option<PageHead> {
        let (mut kind_of_page, mut uncompressed, mut compressed, mut crc) = (None, None, None, None);
        let mut data: Option<DataHead> = None;
        self.fields(0, |t, id, kind| {
            let slot = match id {
                1 => &mut kind_of_page,
                2 => &mut uncompressed,
                3 => &mut compressed,
                4 => &mut crc,
                5 | 7 | 8 => {
                    (kind == STRUCT).then_some(())?;
                    let head = t.data_header(id)?;
                    return data.replace(head).is_none().then_some(true);
                }
                6 => return (kind == STRUCT).then_some(false), // skipped
                _ => return Some(false),
            };
            slot.replace(t.i32_field(kind)?).is_none().then_some(true)
        })?;
        let kind = kind_of_page?;
        let data = data.filter(|d| d.of == kind);
        let (levels, values_compressed) = match &data {
            Some(d) if d.of == DATA_PAGE_V2 => {
                (if d.def_len < 0 || d.rep_len < 0 { -1 } else { d.def_len + d.rep_len }, d.compressed)
            }
            _ => (0, true),
        };
        let sizes = PageSizes {
            index_page: kind == INDEX_PAGE,
            uncompressed: uncompressed?,
            compressed: compressed?,
            levels,
            values_compressed,
        };
        (sizes.compressed >= 0).then_some(PageHead { sizes, data })
    }

    /// The header of a page of type `id` (5 v1 data, 7 dictionary, 8 v2 data; the `PageType`
    /// this returns), with every field parquet.thrift requires: v1 1 num_values, 2 encoding, 3
    /// and 4 the definition and repetition level encodings; dictionary 1 num_values, 2 encoding;
    /// v2 1 num_values, 2 num_nulls, 3 num_rows, 4 encoding, 5 and 6 the level byte lengths. The
    /// optional ones must have their types too: v1's 5 and v2's 8 statistics, the dictionary's 3
    /// is_sorted and v2's 7 is_compressed (booleans).
    fn data_header(&mut self, id: i64) -> Option<DataHead> {
        let of = match id {
            5 => DATA_PAGE,
            7 => DICTIONARY_PAGE,
            _ => DATA_PAGE_V2,
        };
        let mut h = DataHead {
            of,
            num_values: -1,
            encoding: -1,
            def_encoding: -1,
            num_nulls: 0,
            def_len: 0,
            rep_len: 0,
            compressed: true,
        };
        let (mut seen, mut unused) = (0u32, 0i64);
        self.fields(1, |t, fid, kind| {
            let slot = match (of, fid) {
                (_, 1) => &mut h.num_values,
                (DATA_PAGE | DICTIONARY_PAGE, 2) | (DATA_PAGE_V2, 4) => &mut h.encoding,
                (DATA_PAGE, 3) => &mut h.def_encoding,
                (DATA_PAGE, 4) | (DATA_PAGE_V2, 3) => &mut unused,
                (DATA_PAGE_V2, 2) => &mut h.num_nulls,
                (DATA_PAGE_V2, 5) => &mut h.def_len,
                (DATA_PAGE_V2, 6) => &mut h.rep_len,
                (DICTIONARY_PAGE, 3) | (DATA_PAGE_V2, 7) => {
                    (kind == TRUE || kind == FALSE).then_some(())?;
                    h.compressed = of != DATA_PAGE_V2 || kind == TRUE;
                    return Some(true);
                }
                (DATA_PAGE, 5) | (DATA_PAGE_V2, 8) => return (kind == STRUCT).then_some(false), // skipped
                _ => return Some(false),
            };
            if seen & (1 << fid) != 0 {
                return None;
            }
            seen |= 1 << fid;
            *slot = t.i32_field(kind)?;
            Some(true)
        })?;
        let required: u32 = match of {
            DATA_PAGE => 0b1_1110,
            DICTIONARY_PAGE => 0b110,
            _ => 0b111_1110,
        };
        (seen & required == required).then_some(h)
    }
}

/// Thrift compact-protocol types: a boolean field's value is its type.
const TRUE: u8 = 1;
const FALSE: u8 = 2;
const STRUCT: u8 = 12;
const I32: u8 = 5;
const I64: u8 = 6;
const BINARY: u8 = 8;
const LIST: u8 = 9;

fn too_many(at: usize, n: usize, rows: usize, name: &str) -> Res<()> {
    if n > rows - at {
        return Err(unsupported(format!("column {name:?}: more values than rows")));
    }
    Ok(())
}

fn out_len(out: &Out<'_>) -> usize {
    match out {
        Out::Idx(o) => o.len(),
        Out::Ts(o) => o.len(),
    }
}

fn null(name: &str, row: usize) -> ReadError {
    ReadError::Null { column: name.to_string(), row: row as u64 }
}

fn truncated(name: &str) -> ReadError {
    unsupported(format!("column {name:?}: a truncated page"))
}

/// `Encoding`s in parquet.thrift.
const ENC_PLAIN: i64 = 0;
const ENC_PLAIN_DICTIONARY: i64 = 2;
const ENC_RLE: i64 = 3;
const ENC_RLE_DICTIONARY: i64 = 8;

fn values<'p>(body: &'p [u8], encoding: i64, name: &str) -> Res<Values<'p>> {
    match encoding {
        ENC_PLAIN => Ok(Values::Plain(body)),
        ENC_PLAIN_DICTIONARY | ENC_RLE_DICTIONARY => Ok(Values::Dict(body)),
        other => Err(unsupported(format!("column {name:?}: values encoded {}", encoding_name(other)))),
    }
}

/// An `Encoding`'s name in parquet.thrift.
fn encoding_name(e: i64) -> String {
    let names = [
        "PLAIN",
        "GROUP_VAR_INT",
        "PLAIN_DICTIONARY",
        "RLE",
        "BIT_PACKED",
        "DELTA_BINARY_PACKED",
        "DELTA_LENGTH_BYTE_ARRAY",
        "DELTA_BYTE_ARRAY",
        "RLE_DICTIONARY",
        "BYTE_STREAM_SPLIT",
    ];
    usize::try_from(e).ok().and_then(|i| names.get(i)).map_or_else(|| format!("{e}"), |n| n.to_string())
}

/// Appends `n` PLAIN values of `col`'s type to `out` as i64.
fn plain_into(b: &[u8], n: usize, col: Col, out: &mut Vec<i64>, name: &str) -> Res<()> {
    let width = if col.physical == Physical::INT64 { 8 } else { 4 };
    if n > b.len() / width {
        return Err(truncated(name)); // a count the page cannot hold: nothing allocated for it
    }
    let first = out.len();
    out.resize(first + n, 0);
    plain_to(b, col, &mut out[first..], name)
}

/// Decodes `out.len()` PLAIN values of `col`'s type into `out`.
fn plain_to(b: &[u8], col: Col, out: &mut [i64], name: &str) -> Res<()> {
    debug_assert_ne!(col.physical, Physical::BYTE_ARRAY, "string columns keep Dict::Text");
    let width = if col.physical == Physical::INT64 { 8 } else { 4 };
    let b = b.get(..out.len() * width).ok_or_else(|| truncated(name))?;
    if width == 8 {
        for (x, c) in out.iter_mut().zip(b.chunks_exact(8)) {
            *x = i64::from_le_bytes(c.try_into().unwrap());
        }
    } else {
        for (x, c) in out.iter_mut().zip(b.chunks_exact(4)) {
            *x = i32::from_le_bytes(c.try_into().unwrap()) as i64;
        }
    }
    // The declared width, where it is narrower than what was read.
    let narrow: Option<fn(i64) -> i64> = match (col.bits, col.unsigned, width) {
        (64, false, _) | (32, false, 4) => None,
        (8, false, _) => Some(|x| x as i8 as i64),
        (16, false, _) => Some(|x| x as i16 as i64),
        (32, false, _) => Some(|x| x as i32 as i64),
        (8, true, _) => Some(|x| x as u8 as i64),
        (16, true, _) => Some(|x| x as u16 as i64),
        _ => Some(|x| x as u32 as i64),
    };
    if let Some(f) = narrow {
        out.iter_mut().for_each(|x| *x = f(*x));
    }
    Ok(())
}

/// Dictionary indices: a bit-width byte, then the hybrid runs.
fn hybrid(b: &[u8], out: &mut [u32], name: &str) -> Res<()> {
    let (&bw, runs) = b.split_first().ok_or_else(|| truncated(name))?;
    decode_hybrid(runs, bw as u32, out).map_err(|e| unsupported(format!("column {name:?}: {e}")))
}

fn uleb(b: &mut &[u8]) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b.split_first().ok_or("a truncated run header")?;
        *b = rest;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("a run header longer than 64 bits".into())
}

/// Decodes exactly `out.len()` values of the RLE/bit-packed hybrid encoding with `bw` bits each.
pub(crate) fn decode_hybrid(mut b: &[u8], bw: u32, out: &mut [u32]) -> Result<(), String> {
    if bw > 32 {
        return Err(format!("bit width {bw}"));
    }
    let mut at = 0;
    while at < out.len() {
        let header = uleb(&mut b)?;
        let count = (header >> 1) as usize;
        if header & 1 == 1 {
            // Bit-packed: `count` groups of 8 values, `bw` bytes per group.
            let values = count.saturating_mul(8);
            let bytes = count.saturating_mul(bw as usize).min(b.len());
            let take = values.min(out.len() - at);
            if take * bw as usize > bytes * 8 {
                return Err("a truncated bit-packed run".into());
            }
            unpack(&b[..bytes], bw, &mut out[at..at + take]);
            b = &b[bytes..];
            at += take;
        } else {
            if count == 0 {
                return Err("an empty run".into());
            }
            let width = bw.div_ceil(8) as usize;
            let (v, rest) = b.split_at_checked(width).ok_or("a truncated run value")?;
            let mut le = [0u8; 4];
            le[..width].copy_from_slice(v);
            let value = u32::from_le_bytes(le);
            if bw < 32 && value >> bw != 0 {
                return Err(format!("run value {value} wider than {bw} bits"));
            }
            b = rest;
            let take = count.min(out.len() - at);
            out[at..at + take].fill(value);
            at += take;
        }
    }
    Ok(())
}

/// Unpacks `out.len()` little-endian bit-packed values of `bw` bits (`b` holds them all).
fn unpack(b: &[u8], bw: u32, out: &mut [u32]) {
    if bw == 0 {
        out.fill(0);
        return;
    }
    let mask = if bw == 32 { u32::MAX as u64 } else { (1u64 << bw) - 1 };
    let n = out.len();
    // Values whose 8-byte window lies inside `b` are read unaligned; the last few through a copy.
    let fast = if b.len() >= 8 { ((b.len() - 8) * 8 / bw as usize).min(n) } else { 0 };
    for (i, x) in out[..fast].iter_mut().enumerate() {
        let bit = i * bw as usize;
        let word = u64::from_le_bytes(b[bit >> 3..(bit >> 3) + 8].try_into().unwrap());
        *x = ((word >> (bit & 7)) & mask) as u32;
    }
    for (i, x) in out.iter_mut().enumerate().skip(fast) {
        let bit = i * bw as usize;
        let mut w = [0u8; 8];
        let tail = &b[(bit >> 3).min(b.len())..];
        let k = tail.len().min(8);
        w[..k].copy_from_slice(&tail[..k]);
        *x = ((u64::from_le_bytes(w) >> (bit & 7)) & mask) as u32;
    }
}

/// The first of `n` definition levels (RLE hybrid, 1 bit) that is 0 — a null —, if any.
fn first_zero_level(b: &[u8], n: usize) -> Result<Option<usize>, String> {
    let mut levels = vec![0u32; n];
    decode_hybrid(b, 1, &mut levels)?;
    Ok(levels.iter().position(|&l| l == 0))
}

/// Codes of an id column from its chunks' dictionary indices (in place) and dictionaries; the
/// returned `codes` are empty (they are `idx`).
fn encode(idx: &mut [u32], dicts: &[Dict], starts: &[usize], blocks: usize) -> Res<Encoded> {
    if dicts.iter().all(|d| matches!(d, Dict::Int(_))) {
        let values: Vec<&[i64]> = dicts
            .iter()
            .map(|d| match d {
                Dict::Int(v) => v.as_slice(),
                Dict::Text(..) => unreachable!(),
            })
            .collect();
        let (lookup, uniques) = ids::int_code_table(&Column::new(values.clone()));
        // A table of each entry's code, unless the dictionary holds about a value per row (plain
        // pages, as when a writer gave up on its dictionary: the table would be a row-sized
        // buffer written and read once).
        let per_row = |g: usize| 2 * values[g].len() > starts[g + 1] - starts[g];
        let luts: Vec<Option<Vec<u32>>> = (0..values.len())
            .into_par_iter()
            .map(|g| (!per_row(g)).then(|| values[g].iter().map(|&v| lookup.code(v)).collect()))
            .collect();
        let counts = remap(
            idx,
            |g| match &luts[g] {
                Some(t) => GroupCodes::Table(t),
                None => GroupCodes::Values(values[g], &lookup),
            },
            uniques.len(),
            starts,
        );
        return Ok(Encoded { codes: Vec::new(), uniques: Uniques::Int(uniques), counts });
    }
    // Strings: every row group's dictionary entries as one column, encoded as a string column is.
    let entries: usize = dicts.iter().map(Dict::len).sum();
    let bytes: usize = dicts.iter().map(|d| if let Dict::Text(_, b) = d { b.len() } else { 0 }).sum();
    let (mut offsets, mut data) = (Vec::with_capacity(entries + 1), Vec::with_capacity(bytes));
    offsets.push(0i64);
    let mut first_entry = Vec::with_capacity(dicts.len() + 1);
    for d in dicts {
        let Dict::Text(o, b) = d else { return Err(unsupported("string and integer dictionaries mixed")) };
        first_entry.push(offsets.len() - 1);
        let base = data.len() as i64;
        offsets.extend(o[1..].iter().map(|x| x + base));
        data.extend_from_slice(b);
    }
    first_entry.push(offsets.len() - 1);
    let col = OffsetsStr::new(&offsets, &data).map_err(|e| unsupported(e.to_string()))?;
    let mut entry_codes = Vec::with_capacity(entries);
    let first = ids::encode_column_into(&col, &mut entry_codes.spare_capacity_mut()[..entries], blocks, false)
        .map_err(|e| unsupported(e.to_string()))?
        .first_rows;
    // SAFETY: encode_column_into wrote every element of 0..entries (it returned Ok).
    unsafe { entry_codes.set_len(entries) };
    let (mut u_offsets, mut u_data) = (Vec::with_capacity(first.len() + 1), Vec::new());
    u_offsets.push(0i64);
    for &e in &first {
        let e = e as usize;
        u_data.extend_from_slice(&data[offsets[e] as usize..offsets[e + 1] as usize]);
        u_offsets.push(u_data.len() as i64);
    }
    drop((offsets, data));
    let counts =
        remap(idx, |g| GroupCodes::Table(&entry_codes[first_entry[g]..first_entry[g + 1]]), first.len(), starts);
    Ok(Encoded { codes: Vec::new(), uniques: Uniques::Text(u_offsets, u_data), counts })
}

/// String ids the caller's id checks would leave as they are: none empty, padded, holding a
/// control character, NaN-like or a non-ASCII byte (those are checked with Unicode tables), and
/// not all integers (a file's column of integer text becomes Int64). Checked on the distinct
/// strings rows use; anything else is for the caller's reader.
fn plain_text(offsets: &[i64], data: &[u8], name: &str) -> Res<()> {
    let col = OffsetsStr::new(offsets, data).map_err(|e| unsupported(e.to_string()))?;
    let seen = text::check_column(&col).map_err(|e| unsupported(e.to_string()))?;
    if seen.first_empty.is_some()
        || seen.first_control.is_some()
        || seen.first_nan_like.is_some()
        || seen.padded
        || seen.int_like
        || !seen.non_ascii.is_empty()
    {
        return Err(unsupported(format!(
            "column {name:?}: string ids that the id checks would trim, refuse, or read as integers"
        )));
    }
    Ok(())
}

/// Without the codes no row holds: a dictionary may carry values no row uses (a writer that
/// stores an Arrow dictionary as it is, unused categories and all), and those are no users or
/// items of the log.
fn used(codes: &mut [u32], mut e: Encoded) -> Encoded {
    if !e.counts.contains(&0) {
        return e;
    }
    let keep: Vec<bool> = e.counts.iter().map(|&c| c > 0).collect();
    let (map, _) = ids::compact_map(&keep);
    codes.par_iter_mut().for_each(|c| *c = map[*c as usize]);
    e.uniques = e.uniques.retain(&map);
    e.counts.retain(|&c| c > 0);
    e
}

/// How [`remap`] maps one row group's dictionary indices to codes.
enum GroupCodes<'l> {
    /// Each entry's code.
    Table(&'l [u32]),
    /// The entries' values, coded row by row.
    Values(&'l [i64], &'l ids::Lookup),
}

/// Maps each row group `g`'s indices to codes as `lut(g)` says, in place, and counts the codes, in parallel
/// over contiguous blocks of row groups (one count array per block).
fn remap<'l, F>(idx: &mut [u32], lut: F, n_codes: usize, starts: &[usize]) -> Vec<u32>
where
    F: Fn(usize) -> GroupCodes<'l> + Sync,
{
    let groups = starts.len() - 1;
    let blocks = ids::n_blocks(idx.len(), n_codes).min(groups).max(1);
    let per = groups.div_ceil(blocks).max(1);
    // Blocks of `per` row groups: their first groups and their rows.
    let firsts: Vec<usize> = (0..groups).step_by(per).chain([groups]).collect();
    let block_starts: Vec<usize> = firsts.iter().map(|&g| starts[g]).collect();
    let counts = firsts
        .windows(2)
        .zip(by_group(idx, &block_starts))
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|(g, rows)| {
            let (g0, g1) = (g[0], g[1]);
            let mut c = ids::ByteCounts::new(n_codes);
            let mut at = 0;
            for g in g0..g1 {
                let k = starts[g + 1] - starts[g];
                let group = &mut rows[at..at + k];
                match lut(g) {
                    GroupCodes::Table(t) => group.iter_mut().for_each(|x| {
                        let code = t[*x as usize];
                        *x = code;
                        c.add(code as usize);
                    }),
                    GroupCodes::Values(v, lookup) => group.iter_mut().for_each(|x| {
                        let code = lookup.code(v[*x as usize]);
                        *x = code;
                        c.add(code as usize);
                    }),
                }
                at += k;
            }
            c
        })
        .collect::<Vec<_>>();
    ids::ByteCounts::total(counts, n_codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_leaves_name_each_leafs_top_level_column() {
        let el = |n: &str, c: i64| (n.to_string(), c);
        // root: a, b { b1, b2 { x } }, c
        let schema = [el("root", 3), el("a", 0), el("b", 2), el("b1", 0), el("b2", 1), el("x", 0), el("c", 0)];
        assert_eq!(schema_leaves(&schema), Some(vec!["a".into(), "b".into(), "b".into(), "c".into()]));
        assert_eq!(schema_leaves(&schema[..6]), None); // c missing
        assert_eq!(schema_leaves(&[el("root", 1), el("a", 0), el("b", 0)]), None); // one too many
        assert_eq!(schema_leaves(&[el("root", 0)]), Some(vec![]));
        assert_eq!(schema_leaves(&[]), None);
    }
    use rand::{Rng, SeedableRng};

    /// The parquet format spec's example: 0..=7 with 3 bits packed as 10001000 11000110 11111010.
    #[test]
    fn bit_packed_run_from_the_spec() {
        let mut out = [0u32; 8];
        decode_hybrid(&[0b11, 0b1000_1000, 0b1100_0110, 0b1111_1010], 3, &mut out).unwrap();
        assert_eq!(out, [0, 1, 2, 3, 4, 5, 6, 7]);
        // An RLE run: 300 (header 600 as ULEB128: 0xd8 0x04) copies of 5 in one byte.
        let mut out = vec![0u32; 300];
        decode_hybrid(&[0xd8, 0x04, 5], 3, &mut out).unwrap();
        assert!(out.iter().all(|&x| x == 5));
    }

    fn uleb_push(out: &mut Vec<u8>, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    /// A plain reference encoder: runs of equal values as RLE, the rest bit-packed bit by bit.
    fn encode_reference(values: &[u32], bw: u32, rng: &mut rand::rngs::StdRng) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < values.len() {
            let run = values[i..].iter().take_while(|&&v| v == values[i]).count();
            if run >= 8 && rng.gen_bool(0.7) {
                uleb_push(&mut out, (run as u64) << 1);
                out.extend_from_slice(&values[i].to_le_bytes()[..bw.div_ceil(8) as usize]);
                i += run;
            } else {
                let groups = rng.gen_range(1..4usize);
                let take = (groups * 8).min(values.len() - i);
                uleb_push(&mut out, ((take.div_ceil(8) as u64) << 1) | 1);
                let mut bits = vec![0u8; take.div_ceil(8) * bw as usize];
                for (j, &v) in values[i..i + take].iter().enumerate() {
                    for b in 0..bw as usize {
                        if v >> b & 1 == 1 {
                            let at = j * bw as usize + b;
                            bits[at / 8] |= 1 << (at % 8);
                        }
                    }
                }
                out.extend(bits);
                i += take;
            }
        }
        out
    }

    #[test]
    fn hybrid_decoding_matches_a_reference_encoder() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for case in 0..400 {
            let bw = rng.gen_range(0..=32u32);
            let n = rng.gen_range(1..600usize);
            let top = if bw == 32 { u32::MAX } else { (1u64 << bw) as u32 - 1 };
            let mut values = Vec::with_capacity(n);
            while values.len() < n {
                let v = rng.gen_range(0..=top);
                let k = if rng.gen_bool(0.3) { rng.gen_range(1..40) } else { 1 };
                values.extend(std::iter::repeat_n(v, k.min(n - values.len())));
            }
            let bytes = encode_reference(&values, bw, &mut rng);
            let mut out = vec![u32::MAX; n];
            decode_hybrid(&bytes, bw, &mut out).unwrap();
            assert_eq!(out, values, "case {case}, bit width {bw}");
        }
    }

    #[test]
    fn damaged_runs_are_errors_not_panics() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        for _ in 0..2000 {
            let len = rng.gen_range(0..24);
            let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let mut out = vec![0u32; rng.gen_range(1..100)];
            let _ = decode_hybrid(&bytes, rng.gen_range(0..=40), &mut out);
        }
        let mut out = [0u32; 16];
        assert!(decode_hybrid(&[0b11, 0xff], 3, &mut out).is_err()); // 8 values of 3 bits need 3 bytes
        assert!(decode_hybrid(&[0x10, 9], 3, &mut out).is_err()); // run value 9 needs 4 bits
        assert!(decode_hybrid(&[], 3, &mut out).is_err());
    }

    /// Thrift compact: a field header (id delta and type) and a zigzag integer.
    fn field(out: &mut Vec<u8>, delta: u8, kind: u8) {
        out.push(delta << 4 | kind);
    }

    fn int(out: &mut Vec<u8>, v: i64) {
        uleb_push(out, ((v << 1) ^ (v >> 63)) as u64);
    }

    /// A `PageHeader` as writers put it: type, sizes, then a data page header with statistics
    /// (fields the reader skips), or a v2 data page header with its level lengths.
    fn page_header(uncompressed: i64, compressed: i64, v2: Option<(i64, i64, bool)>) -> Vec<u8> {
        let mut h = Vec::new();
        for v in [if v2.is_some() { DATA_PAGE_V2 } else { DATA_PAGE }, uncompressed, compressed] {
            field(&mut h, 1, 5);
            int(&mut h, v);
        }
        if let Some((def, rep, is_compressed)) = v2 {
            field(&mut h, 5, 12); // field 8
            for (delta, v) in [(1, 10), (1, 0), (1, 3), (1, 8), (1, def), (1, rep)] {
                field(&mut h, delta, 5);
                int(&mut h, v);
            }
            field(&mut h, 1, if is_compressed { 1 } else { 2 });
            h.push(0);
        } else {
            field(&mut h, 2, 12); // field 5: DataPageHeader
            for v in [10, 0, 3, 3] {
                field(&mut h, 1, 5);
                int(&mut h, v);
            }
            field(&mut h, 1, 12); // statistics: max (binary), a list of bools, is_max_value_exact
            field(&mut h, 1, 8);
            h.extend([3, b'a', b'b', b'c']);
            field(&mut h, 0, 9);
            int(&mut h, 20); // a field id given in full
            h.extend([0x21, 1, 2]);
            field(&mut h, 1, 1);
            h.extend([0, 0]);
        }
        h.push(0);
        h
    }

    #[test]
    fn page_header_sizes_are_read_and_other_fields_skipped() {
        let h = page_header(100, 40, None);
        let mut t = Thrift::new(&h);
        let sizes =
            PageSizes { index_page: false, uncompressed: 100, compressed: 40, levels: 0, values_compressed: true };
        let data = DataHead {
            of: DATA_PAGE,
            num_values: 10,
            encoding: ENC_PLAIN,
            def_encoding: ENC_RLE,
            num_nulls: 0,
            def_len: 0,
            rep_len: 0,
            compressed: true,
        };
        assert_eq!(t.page_header(), Some(PageHead { sizes, data: Some(data) }));
        assert!(t.0.is_empty());
        let h = page_header(2_000_000, 7, Some((4, 2, false)));
        let sizes = PageSizes {
            index_page: false,
            uncompressed: 2_000_000,
            compressed: 7,
            levels: 6,
            values_compressed: false,
        };
        let data = DataHead {
            of: DATA_PAGE_V2,
            num_values: 10,
            encoding: ENC_RLE_DICTIONARY,
            def_encoding: -1,
            num_nulls: 0,
            def_len: 4,
            rep_len: 2,
            compressed: false,
        };
        assert_eq!(Thrift::new(&h).page_header(), Some(PageHead { sizes, data: Some(data) }));
        // A required field missing, or a known field of another type: damage. Struct bodies
        // (after their struct header): i32 fields as (delta << 4 | 5, zigzag value), 0 ends.
        let v1 = [0x15, 20, 0x15, 0, 0x15, 6, 0x15, 6, 0]; // num_values 10, PLAIN, RLE, RLE
        assert_eq!(Thrift::new(&v1).data_header(5).map(|d| (d.num_values, d.def_encoding)), Some((10, ENC_RLE)));
        assert_eq!(Thrift::new(&[0x15, 20, 0x15, 0, 0x15, 6, 0]).data_header(5), None); // no field 4
        assert_eq!(Thrift::new(&[0x15, 20, 0x16, 0, 0x15, 6, 0x15, 6, 0]).data_header(5), None); // 2 as i64
        let stats_as_i32 = [0x15, 20, 0x15, 0, 0x15, 6, 0x15, 6, 0x15, 2, 0];
        assert_eq!(Thrift::new(&stats_as_i32).data_header(5), None);
        assert!(Thrift::new(&[0x15, 20, 0x15, 0, 0]).data_header(7).is_some()); // dictionary: 1, 2
        assert!(Thrift::new(&[0x15, 20, 0x15, 0, 0x11, 0]).data_header(7).is_some()); // is_sorted true
        assert_eq!(Thrift::new(&[0x15, 20, 0x15, 0, 0x15, 2, 0]).data_header(7), None); // is_sorted as i32
        assert_eq!(Thrift::new(&[0x15, 20, 0]).data_header(7), None); // no encoding
        let v2 = [0x15, 20, 0x15, 0, 0x15, 20, 0x15, 16, 0x15, 8, 0x15, 4, 0];
        assert!(Thrift::new(&v2).data_header(8).is_some());
        let no_rows = [0x15, 20, 0x15, 0, 0x25, 16, 0x15, 8, 0x15, 4, 0]; // 1, 2, 4, 5, 6
        assert_eq!(Thrift::new(&no_rows).data_header(8), None);
        assert_eq!(Thrift::new(&[&v2[..v2.len() - 3], &[0]].concat()).data_header(8), None); // no field 6
        let compressed_as_i32 = [&v2[..v2.len() - 1], &[0x15, 0, 0]].concat();
        assert_eq!(Thrift::new(&compressed_as_i32).data_header(8), None);
        let mut crc = page_header(100, 40, None);
        crc.pop();
        crc.extend([0x08, 8, 1, b'x', 0]); // field 4 (id in full, going back from 5) as binary
        assert_eq!(Thrift::new(&crc).page_header(), None);
        let mut crc = page_header(100, 40, None);
        crc.pop();
        crc.extend([0x05, 8, 16, 0]); // field 4 as an i32 (8): fine
        assert!(Thrift::new(&crc).page_header().is_some());
        // A header of another page type than the page's is not the page's.
        let mut other = page_header(100, 40, None);
        other[1] = 2 * DICTIONARY_PAGE as u8; // zigzag
        assert_eq!(Thrift::new(&other).page_header().map(|h| h.data), Some(None));
        // Damage: cut anywhere, a negative compressed size, a size twice, a size as i64.
        for cut in 0..h.len() {
            assert_eq!(Thrift::new(&h[..cut]).page_header(), None, "cut at {cut}");
        }
        assert_eq!(Thrift::new(&page_header(100, -1, None)).page_header(), None);
        let mut twice = page_header(100, 40, None);
        twice.pop();
        twice.extend([0x05, 4, 2, 0]); // uncompressed_page_size again (id 2 in full) = 1
        assert_eq!(Thrift::new(&twice).page_header(), None);
        let mut wide = page_header(100, 40, None);
        wide[2] = 0x16; // uncompressed_page_size typed i64
        assert_eq!(Thrift::new(&wide).page_header(), None);
    }

    /// Pages come back as stored when they are (no codec, or a v2 page's values kept raw), else
    /// decompressed after their v2 levels, by each codec, exactly to the header's size.
    #[test]
    fn pages_decompress_to_their_size_with_each_codec() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let data: Vec<u8> = (0..5000).map(|i| if i % 7 == 0 { rng.gen() } else { (i % 13) as u8 }).collect();
        let levels = [9u8, 8, 7];
        let sizes = |uncompressed: usize, levels: usize| PageSizes {
            index_page: false,
            uncompressed: uncompressed as i64,
            compressed: 0,
            levels: levels as i64,
            values_compressed: true,
        };
        let zstd_packed = zstd::bulk::compress(&data, 3).unwrap();
        let snappy_packed = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        let lz4_packed = lz4_flex::block::compress(&data);
        let mut framed = Vec::new(); // Hadoop's LZ4 framing, two blocks
        for part in [&data[..1234], &data[1234..]] {
            let block = lz4_flex::block::compress(part);
            framed.extend((part.len() as u32).to_be_bytes());
            framed.extend((block.len() as u32).to_be_bytes());
            framed.extend(block);
        }
        let mut inf = Inflate::default();
        let cases = [
            (Compression::ZSTD(Default::default()), &zstd_packed),
            (Compression::SNAPPY, &snappy_packed),
            (Compression::LZ4_RAW, &lz4_packed),
            (Compression::LZ4, &framed),
            (Compression::LZ4, &lz4_packed), // older writers: a raw block under the LZ4 codec
        ];
        for (codec, packed) in cases {
            for with_levels in [false, true] {
                let lv: &[u8] = if with_levels { &levels } else { &[] };
                let body = [lv, packed.as_slice()].concat();
                let want = [lv, data.as_slice()].concat();
                let h = sizes(want.len(), lv.len());
                assert_eq!(inf.page(&h, &body, codec, "c").unwrap(), want.as_slice(), "{codec:?} {with_levels}");
                // A header one byte off either way is refused, not padded or cut.
                for off in [-1i64, 1] {
                    let h = PageSizes { uncompressed: h.uncompressed + off, ..sizes(want.len(), lv.len()) };
                    assert!(inf.page(&h, &body, codec, "c").is_err(), "{codec:?} {with_levels} {off}");
                }
            }
        }
        // Stored as they are: the body itself.
        let raw = PageSizes { values_compressed: false, ..sizes(data.len(), 0) };
        assert_eq!(inf.page(&raw, &data, Compression::SNAPPY, "c").unwrap(), data.as_slice());
        assert_eq!(inf.page(&sizes(data.len(), 0), &data, Compression::UNCOMPRESSED, "c").unwrap(), data.as_slice());
        // Garbage and codecs the reader does not take.
        assert!(inf.page(&sizes(100, 0), &[1, 2, 3], Compression::ZSTD(Default::default()), "c").is_err());
        assert!(inf.page(&sizes(100, 0), &[1, 2, 3], Compression::GZIP(Default::default()), "c").is_err());
        let before = inf.buf.capacity();
        assert!(inf.page(&sizes(1 << 26, 0), &[1, 2, 3], Compression::BROTLI(Default::default()), "c").is_err());
        assert_eq!(inf.buf.capacity(), before, "nothing sized for a codec the reader does not take");
        // Hadoop frames that do not add up.
        let mut out = vec![0u8; data.len()];
        assert_eq!(lz4_hadoop(&framed, &mut out), Some(data.len()));
        assert_eq!(out, data);
        assert_eq!(lz4_hadoop(&framed[..framed.len() - 1], &mut out), None);
        assert_eq!(lz4_hadoop(&framed, &mut out[..data.len() - 1]), None);
        let mut wrong = framed.clone();
        wrong[3] += 1; // the first block claims a byte more than it gives
        assert_eq!(lz4_hadoop(&wrong, &mut out), None);
    }

    #[test]
    fn uncompressed_sizes_the_codec_cannot_give_are_refused() {
        let h = |uncompressed, levels| PageSizes {
            index_page: false,
            uncompressed,
            compressed: 0,
            levels,
            values_compressed: true,
        };
        // Snappy data begins with the uncompressed length (ULEB128), and 3 bytes give 64 at most.
        let snappy = |n: usize| [&[0xac, 0x02][..], &vec![0; n - 2]].concat(); // says 300
        assert!(fits_codec(&h(300, 0), &snappy(14), Compression::SNAPPY));
        assert!(!fits_codec(&h(300, 0), &snappy(13), Compression::SNAPPY)); // 22 x 13 < 300
        assert!(!fits_codec(&h(301, 0), &snappy(14), Compression::SNAPPY));
        assert!(!fits_codec(&h(i32::MAX as i64, 0), &snappy(14), Compression::SNAPPY));
        let levels = [&[9; 5][..], &snappy(14)].concat();
        assert!(fits_codec(&h(305, 5), &levels, Compression::SNAPPY)); // v2 levels
        assert!(!fits_codec(&h(4, 5), &[0; 8], Compression::SNAPPY)); // levels beyond the page
        let lz4 = Compression::LZ4_RAW;
        assert!(fits_codec(&h(255 * 10, 0), &[0; 10], lz4) && !fits_codec(&h(1 << 20, 0), &[0; 10], lz4));
        // Zstd frame headers: a 1-byte size (single segment), a 2-byte size (+256), none.
        let zstd = Compression::ZSTD(Default::default());
        let frame = |descriptor: u8, rest: &[u8]| [&[0x28, 0xb5, 0x2f, 0xfd, descriptor][..], rest].concat();
        assert_eq!(zstd_content_size(&frame(0x20, &[16])), Some(16));
        assert_eq!(zstd_content_size(&frame(0x40, &[0x58, 4, 0])), Some(260));
        assert_eq!(zstd_content_size(&frame(0x00, &[0x58])), None);
        assert!(fits_codec(&h(16, 0), &frame(0x20, &[16]), zstd));
        assert!(!fits_codec(&h(1 << 30, 0), &frame(0x20, &[16]), zstd));
        // No size to compare: at most 128 KiB per 4 bytes (a frame of 6 bytes: two blocks' worth).
        assert!(fits_codec(&h(256 << 10, 0), &frame(0x00, &[0x58]), zstd));
        assert!(!fits_codec(&h((256 << 10) + 1, 0), &frame(0x00, &[0x58]), zstd));
        assert!(!fits_codec(&h(1 << 30, 0), &frame(0x00, &[0x58]), zstd));
        // Values stored as they are (no codec, or a v2 page not compressed): exactly the size.
        let raw = |uncompressed, levels| PageSizes { values_compressed: false, ..h(uncompressed, levels) };
        assert!(fits_codec(&raw(8, 2), &[0; 8], Compression::SNAPPY));
        assert!(!fits_codec(&raw(9, 2), &[0; 8], Compression::SNAPPY) && !fits_codec(&raw(7, 2), &[0; 8], zstd));
        assert!(fits_codec(&h(6, 0), &[0; 6], Compression::UNCOMPRESSED));
        assert!(!fits_codec(&h(7, 0), &[0; 6], Compression::UNCOMPRESSED));
    }

    #[test]
    fn remapped_dictionary_codes_are_counted_whole() {
        // Row groups' dictionary indices mapped to codes through a table or through the entries'
        // values, in parallel blocks of row groups, with codes repeated past each byte wrap of the
        // counts (ids::ByteCounts): the codes and counts against a plain count.
        let mut rng = rand::rngs::StdRng::seed_from_u64(77);
        let entries: Vec<Vec<i64>> = vec![vec![40, 10, 30], vec![20, 10], vec![30, 50, 40, 20], vec![10]];
        let (lookup, uniques) = ids::int_code_table(&Column::new(entries.iter().map(|e| e.as_slice()).collect()));
        assert_eq!(uniques, vec![10, 20, 30, 40, 50]);
        let tables: Vec<Vec<u32>> = entries.iter().map(|e| e.iter().map(|&v| lookup.code(v)).collect()).collect();
        let sizes = [70_001usize, 513, 66_000, 257];
        let mut starts = vec![0usize];
        let mut idx = Vec::new();
        for (g, &k) in sizes.iter().enumerate() {
            idx.extend((0..k).map(|_| rng.gen_range(0..entries[g].len()) as u32));
            starts.push(idx.len());
        }
        let want_codes: Vec<u32> = (0..sizes.len())
            .flat_map(|g| idx[starts[g]..starts[g + 1]].iter().map(|&x| tables[g][x as usize]).collect::<Vec<_>>())
            .collect();
        let mut want = vec![0u32; uniques.len()];
        want_codes.iter().for_each(|&c| want[c as usize] += 1);
        for by_value in [false, true] {
            let mut got = idx.clone();
            let counts = remap(
                &mut got,
                |g| if by_value { GroupCodes::Values(&entries[g], &lookup) } else { GroupCodes::Table(&tables[g]) },
                uniques.len(),
                &starts,
            );
            assert_eq!(got, want_codes, "by value: {by_value}");
            assert_eq!(counts, want, "by value: {by_value}");
        }
    }

    #[test]
    fn a_missing_file_is_not_read() {
        let got = read_log(Path::new("/nonexistent/log.parquet"), "u", "i", "t", true);
        assert!(matches!(got, Err(ReadError::Unsupported(why)) if why.starts_with("open")));
    }
}
