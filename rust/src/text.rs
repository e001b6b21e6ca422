//! One pass over a string id column (Arrow layout) that answers what the data layer's id checks
//! ask, so that they do not run one regular expression per question over every value.
//!
//! Values are looked at as the checks see them: trimmed of leading and trailing whitespace
//! (`str::trim`, Unicode `White_Space`). Reported: the first row whose trimmed value is empty,
//! the first row whose trimmed value holds a control character (`\x00`-`\x1f`, `\x7f`), whether
//! any value changes when trimmed, whether every value could be a decimal integer (digits and
//! signs once trimmed: only then is an integer parse worth trying), the first row whose trimmed
//! value is NaN-like (`nan`, `+nan`, `-nan` in any case: what a float column written as text
//! holds where a value was missing), and the rows holding any non-ASCII character — the only ones that can hold an invisible format character,
//! which the caller checks with its own Unicode tables on those rows alone.

use rayon::prelude::*;

use crate::buffer;
use crate::error::{CoreError, Result};
use crate::strings::{long_view_value, OffsetsStr, StrColumn, VIEW_INLINE};

/// What [`check_ids`] found (rows count from 0).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdText {
    pub first_empty: Option<usize>,
    pub first_control: Option<usize>,
    pub first_nan_like: Option<usize>,
    pub padded: bool,
    pub int_like: bool,
    pub non_ascii: Vec<u64>,
}

const ROWS_PER_TASK: usize = 1 << 16;

/// ASCII characters that `char::is_whitespace` accepts.
#[inline]
const fn ascii_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t'..=b'\r')
}

#[inline]
const fn control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// The values a NaN-like id can take (compared ASCII-case-insensitively, trimmed).
pub const NAN_LIKE: [&str; 3] = ["nan", "+nan", "-nan"];

#[inline]
fn nan_like(v: &[u8]) -> bool {
    (3..=4).contains(&v.len()) && NAN_LIKE.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(v))
}

/// Checks the UTF-8 values `data[offsets[i]..offsets[i + 1]]` (Arrow `large_string` layout).
pub fn check_ids(offsets: &[i64], data: &[u8]) -> Result<IdText> {
    check_column(&OffsetsStr::new(offsets, data)?)
}

/// Checks every value of a string column in either Arrow layout (see [`crate::strings`]).
pub fn check_column<'a, S: StrColumn<'a>>(col: &S) -> Result<IdText> {
    let n = col.rows();
    if n == 0 {
        return Ok(IdText { int_like: false, ..IdText::default() });
    }
    let parts: Vec<Result<IdText>> = (0..n.div_ceil(ROWS_PER_TASK))
        .into_par_iter()
        .map(|t| block(col, t * ROWS_PER_TASK, ((t + 1) * ROWS_PER_TASK).min(n)))
        .collect();
    let mut out = IdText { int_like: true, ..IdText::default() };
    for p in parts {
        let p = p?;
        out.first_empty = out.first_empty.or(p.first_empty);
        out.first_control = out.first_control.or(p.first_control);
        out.first_nan_like = out.first_nan_like.or(p.first_nan_like);
        out.padded |= p.padded;
        out.int_like &= p.int_like;
        out.non_ascii.extend(p.non_ascii);
    }
    Ok(out)
}

/// Byte classes for [`block`]'s one-pass test of a value.
const NON_ASCII: u8 = 1;
const SPACE: u8 = 2;
const CONTROL: u8 = 4;
const NOT_INT: u8 = 8;

/// The class bits of every byte value.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if c >= 0x80 {
            NON_ASCII | NOT_INT
        } else if ascii_space(c) {
            SPACE
        } else if control(c) {
            CONTROL | NOT_INT
        } else if c.is_ascii_digit() || c == b'+' || c == b'-' {
            0
        } else {
            NOT_INT
        };
        b += 1;
    }
    t
};

/// The classes of a value's bytes, OR-ed.
#[inline]
fn byte_classes(v: &[u8]) -> u8 {
    v.iter().fold(0u8, |a, &b| a | CLASS[b as usize])
}

/// For the value inside a `string_view` view (its first `len` bytes after the length, `len` at
/// most [`VIEW_INLINE`]), all bytes tested at once, the padding masked off: whether any byte has
/// one of the classes `NON_ASCII | SPACE | CONTROL`, and (meaningful only when none has)
/// whether any is `NOT_INT`.
#[inline(always)]
fn inline_flags(view: &[u8; 16], len: usize) -> (bool, bool) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let live = ((1u32 << len.min(VIEW_INLINE)) - 1) << 4;
        // SAFETY: SSE2 is part of x86_64; the load reads the 16 bytes of `view`.
        let (odd, int) = unsafe {
            let x = _mm_loadu_si128(view.as_ptr() as *const __m128i);
            let m = |v: __m128i| _mm_movemask_epi8(v) as u32;
            let set = |b: u8| _mm_set1_epi8(b as i8);
            // Signed compares: the bytes from 0x80 are negative, so "below 0x21" takes them (not
            // ASCII) with the controls and the whitespace; 0x7f is the one control above.
            let odd = m(_mm_cmplt_epi8(x, set(0x21))) | m(_mm_cmpeq_epi8(x, set(0x7f)));
            let digit = m(_mm_cmpgt_epi8(x, set(b'0' - 1))) & m(_mm_cmplt_epi8(x, set(b'9' + 1)));
            (odd, digit | m(_mm_cmpeq_epi8(x, set(b'+'))) | m(_mm_cmpeq_epi8(x, set(b'-'))))
        };
        (odd & live != 0, !int & live != 0)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let c = byte_classes(&view[4..4 + len.min(VIEW_INLINE)]);
        (c & (NON_ASCII | SPACE | CONTROL) != 0, c & NOT_INT != 0)
    }
}

fn block<'a, S: StrColumn<'a>>(col: &S, lo: usize, hi: usize) -> Result<IdText> {
    let mut out = IdText { int_like: true, ..IdText::default() };
    // Rows are checked as they are read (blocks run in parallel: a block may start past another's
    // bad row). A short value in the view layout is looked at in its view: only an odd one (not
    // ASCII, whitespace, a control), an empty one or one that may spell a NaN goes further.
    let runs = col.view_runs(lo, hi, |first, views, buffers| {
        // Kept apart from `out` so that the loop carries it in a register.
        let mut not_int = false;
        for (j, v) in views.iter().enumerate() {
            // The views are read in order, yet this loop waited on each line of them without a
            // prefetch 64 views (1 KiB) ahead (measured: 6.9 -> 2.5 ns a row).
            buffer::prefetch(views.as_ptr().wrapping_add(j + 64));
            let len = u32::from_le_bytes([v[0], v[1], v[2], v[3]]) as usize;
            if len <= VIEW_INLINE {
                let (odd, digits_not_all) = inline_flags(v, len);
                // Only an empty value or one that may be NaN-like ("nan", "+nan", "-nan") goes on.
                // (Bitwise, not short-circuit: how long an id is varies at random from row to row.)
                let lead = v[4];
                let nan_start = ((lead | 0x20) == b'n') | (lead == b'+') | (lead == b'-');
                let special = (len == 0) | ((len.wrapping_sub(3) < 2) & nan_start);
                if !(odd | special) {
                    not_int |= digits_not_all;
                    continue;
                }
                value(&mut out, first + j, &v[4..4 + len])?;
            } else {
                value(&mut out, first + j, long_view_value(buffers, v, first + j)?)?;
            }
        }
        out.int_like &= !not_int;
        Ok(())
    });
    match runs {
        Some(r) => r?,
        None => col.each_value(lo, hi, |row, v| value(&mut out, row, v))?,
    }
    Ok(out)
}

/// What the checks ask of one value, as bits ([`flags`]).
const F_EMPTY: u8 = 1;
const F_CONTROL: u8 = 2;
const F_NAN_LIKE: u8 = 4;
const F_PADDED: u8 = 8;
const F_NOT_INT: u8 = 16;
const F_NON_ASCII: u8 = 32;
/// Not UTF-8 (the other answers are then meaningless).
const F_INVALID: u8 = 64;

/// The answers about one value, seen trimmed: the common case (ASCII, no whitespace, no control
/// character) from the classes of its bytes, as it is its own trimmed value.
#[inline]
pub(crate) fn flags(v: &[u8]) -> u8 {
    let classes = byte_classes(v);
    if classes & (NON_ASCII | SPACE | CONTROL) != 0 {
        return other_flags(v);
    }
    let empty = if v.is_empty() { F_EMPTY | F_NOT_INT } else { 0 };
    let nan = if nan_like(v) { F_NAN_LIKE } else { 0 };
    empty | nan | if classes & NOT_INT != 0 { F_NOT_INT } else { 0 }
}

/// [`flags`] for a value that is not ASCII or holds whitespace or a control character.
#[cold]
#[inline(never)]
fn other_flags(v: &[u8]) -> u8 {
    let mut f = 0;
    let trimmed: &[u8] = if v.is_ascii() {
        let s = v.iter().position(|&c| !ascii_space(c)).unwrap_or(v.len());
        let e = v.iter().rposition(|&c| !ascii_space(c)).map_or(s, |e| e + 1);
        &v[s..e]
    } else {
        f |= F_NON_ASCII;
        match std::str::from_utf8(v) {
            Ok(s) => s.trim().as_bytes(),
            Err(_) => return F_NON_ASCII | F_INVALID,
        }
    };
    if trimmed.len() != v.len() {
        f |= F_PADDED;
    }
    if trimmed.is_empty() {
        f |= F_EMPTY;
    }
    if trimmed.iter().any(|&c| control(c)) {
        f |= F_CONTROL;
    }
    if nan_like(trimmed) {
        f |= F_NAN_LIKE;
    }
    // Judged on the trimmed value: an integer padded with Unicode whitespace parses once stripped.
    if trimmed.is_empty() || !trimmed.iter().all(|&c| c.is_ascii_digit() || c == b'+' || c == b'-' || ascii_space(c)) {
        f |= F_NOT_INT;
    }
    f
}

impl IdText {
    /// Takes in the answers `f` ([`flags`]) about the value of `row`. Rows may come in any order:
    /// the first rows kept are the smallest (`non_ascii` is in the order given).
    #[inline]
    fn note(&mut self, row: usize, f: u8) -> Result<()> {
        if f & F_INVALID != 0 {
            return Err(CoreError::Data(format!("row {row}: invalid UTF-8")));
        }
        let at = |first: &mut Option<usize>, bit: u8| {
            if f & bit != 0 {
                *first = Some(first.map_or(row, |r| r.min(row)));
            }
        };
        at(&mut self.first_empty, F_EMPTY);
        at(&mut self.first_control, F_CONTROL);
        at(&mut self.first_nan_like, F_NAN_LIKE);
        self.padded |= f & F_PADDED != 0;
        self.int_like &= f & F_NOT_INT == 0;
        if f & F_NON_ASCII != 0 {
            self.non_ascii.push(row as u64);
        }
        Ok(())
    }
}

/// [`block`]'s questions for one value.
#[inline]
fn value(out: &mut IdText, row: usize, v: &[u8]) -> Result<()> {
    out.note(row, flags(v))
}

/// The answers [`check_column`] gives for a column, from the answers about its distinct values
/// alone: `rows[d]` is the first row holding distinct value `d`, `flags[d]` the answers about it
/// (one bit per question). Every answer is about one value at a time, so the first rows reported
/// are those [`check_column`] reports, `padded` and `int_like` are its own, and `non_ascii` lists
/// the first row of each non-ASCII value (ascending). A check of the distinct values in place of
/// a pass over every row: the string encoder (`ids::encode_column_into`) computes the flags while
/// it reads each distinct value to sort it.
pub fn check_distinct(rows: &[u64], flags: &[u8]) -> Result<IdText> {
    assert_eq!(rows.len(), flags.len(), "one answer per distinct value");
    let mut out = IdText { int_like: !rows.is_empty(), ..IdText::default() };
    let mut invalid: Option<u64> = None;
    for (&row, &f) in rows.iter().zip(flags) {
        if f & F_INVALID != 0 {
            invalid = Some(invalid.map_or(row, |r| r.min(row)));
        } else if f != 0 {
            out.note(row as usize, f)?;
        }
    }
    if let Some(row) = invalid {
        return Err(CoreError::Data(format!("row {row}: invalid UTF-8")));
    }
    out.non_ascii.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrow(values: &[&str]) -> (Vec<i64>, Vec<u8>) {
        let mut offsets = vec![0i64];
        let mut data = Vec::new();
        for v in values {
            data.extend_from_slice(v.as_bytes());
            offsets.push(data.len() as i64);
        }
        (offsets, data)
    }

    #[test]
    fn hand_made_column() {
        let (o, d) = arrow(&["a", " b", "\u{3000}", "c\u{1}d", "x\n", "é", "\u{200b}"]);
        let t = check_ids(&o, &d).unwrap();
        assert_eq!(t.first_empty, Some(2)); // U+3000 is whitespace: trimmed to nothing
        assert_eq!(t.first_control, Some(3)); // "x\n" trims to "x"
        assert!(t.padded);
        assert!(!t.int_like);
        assert_eq!(t.non_ascii, vec![2, 5, 6]);
        assert_eq!(t.first_nan_like, None);
    }

    #[test]
    fn nan_like_values_trimmed_any_case() {
        let (o, d) = arrow(&["nana", "na", "nan1", "x", " NaN\t", "-nan"]);
        assert_eq!(check_ids(&o, &d).unwrap().first_nan_like, Some(4));
        let (o, d) = arrow(&["a", "+NAN"]);
        assert_eq!(check_ids(&o, &d).unwrap().first_nan_like, Some(1));
        let (o, d) = arrow(&["\u{3000}nan", "n\u{e1}n"]); // Unicode space trimmed; accented is not NaN
        assert_eq!(check_ids(&o, &d).unwrap().first_nan_like, Some(0));
        let (o, d) = arrow(&["n\u{e1}n", "nAn "]);
        assert_eq!(check_ids(&o, &d).unwrap().first_nan_like, Some(1));
    }

    #[test]
    fn integers_and_clean_columns() {
        let (o, d) = arrow(&["12", "-3", "+4", " 5 "]);
        let t = check_ids(&o, &d).unwrap();
        assert!(t.int_like && t.padded && t.first_empty.is_none() && t.first_control.is_none());
        let (o, d) = arrow(&["0\u{2028}", "\u{3000}7"]);
        assert!(check_ids(&o, &d).unwrap().int_like); // Unicode whitespace around digits
        let (o, d) = arrow(&["12", ""]);
        let t = check_ids(&o, &d).unwrap();
        assert!(!t.int_like && !t.padded);
        assert_eq!(t.first_empty, Some(1));
        assert_eq!(check_ids(&[0], &[]).unwrap(), IdText::default());
    }

    #[test]
    fn many_blocks_keep_the_first_rows() {
        let values: Vec<String> =
            (0..200_000).map(|i| if i % 70_001 == 70_000 { "\u{7f}".into() } else { format!("u{i}") }).collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let (o, d) = arrow(&refs);
        assert_eq!(check_ids(&o, &d).unwrap().first_control, Some(70_000));
    }

    #[test]
    fn views_check_like_offsets() {
        use crate::strings::{build, ViewChunk, ViewsStr};
        let values: Vec<String> = (0..150_000)
            .map(|i| match i % 9_973 {
                5_000 => "\u{3000}".into(),
                7_000 => " NaN".into(),
                8_000 => "c\u{1}d-and-then-a-long-tail".into(),
                9_000 => "\u{e9}t\u{e9}".into(),
                _ => format!("{i}"),
            })
            .collect();
        let bytes: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        let (o, d) = build::offsets(&bytes);
        let want = check_ids(&o, &d).unwrap();
        let (v1, b1) = build::views(&bytes[..100_000], 2, 0);
        let (v2, b2) = build::views(&bytes[100_000..], 1, 0);
        let col = ViewsStr::new(vec![
            ViewChunk { views: &v1, buffers: b1.iter().map(Vec::as_slice).collect() },
            ViewChunk { views: &v2, buffers: b2.iter().map(Vec::as_slice).collect() },
        ]);
        assert_eq!(check_column(&col).unwrap(), want);
        assert_eq!(
            (want.first_empty, want.first_nan_like, want.first_control),
            (Some(5_000), Some(7_000), Some(8_000))
        );
        assert!(!want.int_like && want.padded && want.non_ascii.len() == 2 * 15);
    }

    #[test]
    fn inline_flags_are_the_byte_classes() {
        // The second flag only counts when the first is false.
        let seen = |(odd, not_int): (bool, bool)| (odd, !odd && not_int);
        let want = |v: &[u8]| {
            let c = byte_classes(v);
            let odd = c & (NON_ASCII | SPACE | CONTROL) != 0;
            (odd, !odd && c & NOT_INT != 0)
        };
        // Every byte value at every place of every length, with the padding holding that byte
        // too (it must be masked off), then random views.
        for len in 0..=VIEW_INLINE {
            for b in 0..=255u8 {
                for at in 4..16 {
                    let mut view = [b'7'; 16];
                    view[..4].copy_from_slice(&(len as u32).to_le_bytes());
                    view[at] = b;
                    assert_eq!(seen(inline_flags(&view, len)), want(&view[4..4 + len]), "len {len} byte {b} at {at}");
                }
            }
        }
        let (mut x, mut view) = (0x9e37_79b9_7f4a_7c15u64, [0u8; 16]);
        for _ in 0..200_000 {
            for byte in view.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Mostly digits, signs, spaces and controls, sometimes anything.
                let pick = b"0123456789+- \t\r\n\x0b\x0c\x1f\x7f\x80\xffaZ";
                *byte = if x & 0x100 == 0 { (x >> 24) as u8 } else { pick[(x >> 32) as usize % pick.len()] };
            }
            let len = (x >> 40) as usize % (VIEW_INLINE + 1);
            assert_eq!(seen(inline_flags(&view, len)), want(&view[4..4 + len]));
        }
    }

    #[test]
    fn bad_offsets_and_bytes() {
        assert!(check_ids(&[0, 5], b"abc").is_err());
        assert!(check_ids(&[0, 2, 1], b"abc").is_err());
        assert!(check_ids(&[0, 2], &[0xff, 0xfe]).is_err());
        // A negative or too-large offset inside the column (not only at its ends): errors, no panic.
        let (mut o, d) = arrow(&vec!["ab"; 200_000]);
        o[131_072] = -3;
        assert!(matches!(check_ids(&o, &d), Err(CoreError::InvalidOffsets { row: 131_071, .. })));
        o[131_072] = d.len() as i64 + 7;
        assert!(matches!(check_ids(&o, &d), Err(CoreError::InvalidOffsets { row: 131_071, .. })));
    }
}
