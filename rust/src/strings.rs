//! String id columns as the core reads them, in either Arrow layout, without a copy.
//!
//! - [`OffsetsStr`]: `large_string` (`offsets` int64 of length rows + 1 into one `data` buffer).
//! - [`ViewsStr`]: `string_view` (Utf8View), polars' own string layout since 1.0: 16 bytes per
//!   row — the length (u32), then either the value itself when it has at most 12 bytes (zero
//!   padded), or its first 4 bytes, the index of the data buffer holding it and its offset there
//!   (u32 each). A column may come in chunks, each with its own views and data buffers. Reading
//!   this layout in place saves the conversion to `large_string` (a pass over the column and as
//!   much fresh memory), and a short id's view is its hash key as it stands.
//!
//! Both are read through [`StrColumn`]: every row is checked before it is used (a length or an
//! offset outside its buffers is an error at that row, never a panic or a read out of bounds).

use crate::error::{CoreError, Result};

/// How a row's value is looked up in a hash table: short values by two words that hold the bytes
/// and the length (the probe compares integers instead of following a pointer back into the
/// column), long ones by their bytes. Within one column every value of a given length takes the
/// same kind of key, so equal values get equal keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key<'a> {
    Short(u64, u64),
    Long(&'a [u8]),
}

/// A string column read in place.
pub trait StrColumn<'a>: Sync {
    fn rows(&self) -> usize;
    /// Calls `f(row, value)` for rows `lo..hi` in order; stops at the first malformed row with
    /// its error.
    fn each_value<F: FnMut(usize, &'a [u8]) -> Result<()>>(&self, lo: usize, hi: usize, f: F) -> Result<()>;
    /// For the `string_view` layout: calls `f(first row, views, their chunk's data buffers)` over
    /// the runs of views that make up rows `lo..hi`, in order (nothing checked: see
    /// [`long_view_value`]); `None` for the other layout.
    fn view_runs<F: FnMut(usize, &'a [[u8; 16]], &[&'a [u8]]) -> Result<()>>(
        &self,
        lo: usize,
        hi: usize,
        f: F,
    ) -> Option<Result<()>> {
        let _ = (lo, hi, f);
        None
    }
    /// Calls `f(row, key)` for rows `lo..hi` in order (see [`Key`]), with the same checks.
    fn each_key<F: FnMut(usize, Key<'a>)>(&self, lo: usize, hi: usize, f: F) -> Result<()>;
    /// The value of a row that an `each_*` pass has already checked (for merges and sorts over
    /// distinct values: a lookup per call, not for loops over rows).
    fn value(&self, row: usize) -> &'a [u8];
    /// The key of a checked row.
    fn key(&self, row: usize) -> Key<'a>;
}

// ----------------------------------------------------------------------------- offsets layout

/// Strings of at most this many bytes get a [`Key::Short`] in the offsets layout (measured at
/// 20M rows over 138k 8-byte ids, one thread: 0.23 s by value, 0.45-0.65 s by slice).
const INLINE_BYTES: usize = 15;

/// `large_string` layout: `data[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone, Copy)]
pub struct OffsetsStr<'a> {
    offsets: &'a [i64],
    data: &'a [u8],
}

impl<'a> OffsetsStr<'a> {
    /// Checks the two ends, each reported at the row it bounds (the rows are checked as they
    /// are read). At most one offset is a column without rows: nothing is read, nothing checked.
    pub fn new(offsets: &'a [i64], data: &'a [u8]) -> Result<Self> {
        if offsets.len() <= 1 {
            return Ok(OffsetsStr { offsets: &[], data });
        }
        let (a, z, last_row) = (offsets[0], offsets[offsets.len() - 1], offsets.len() - 2);
        if a < 0 {
            return Err(CoreError::InvalidOffsets { what: "string ids", row: 0 });
        }
        if z < a || z as u64 > data.len() as u64 {
            return Err(CoreError::InvalidOffsets { what: "string ids", row: last_row });
        }
        Ok(OffsetsStr { offsets, data })
    }

    #[inline]
    fn span(&self, row: usize) -> Result<(usize, usize)> {
        let (a, z) = (self.offsets[row], self.offsets[row + 1]);
        // (a < 0: another block's row ends there; checked here too, before slicing)
        if a < 0 || a > z || z as u64 > self.data.len() as u64 {
            return Err(CoreError::InvalidOffsets { what: "string ids", row });
        }
        Ok((a as usize, z as usize))
    }
}

/// `len <= 8` bytes from `data[at..]` as a little-endian word, zero above: one unaligned load
/// where 8 bytes are readable (copying into a small buffer first was 4x slower), else a copy.
#[inline]
fn word(data: &[u8], at: usize, len: usize) -> u64 {
    match data.get(at..at + 8) {
        Some(w) => {
            let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            if len >= 8 {
                w
            } else {
                w & ((1u64 << (len * 8)) - 1)
            }
        }
        None => {
            let mut b = [0u8; 8];
            b[..len].copy_from_slice(&data[at..at + len]);
            u64::from_le_bytes(b)
        }
    }
}

/// The bytes `data[a..a + len]` (`len <= INLINE_BYTES`) and their length, packed: distinct
/// strings give distinct keys (bytes 0-14 fill the words, the length takes the top byte).
#[inline]
fn inline_key(data: &[u8], a: usize, len: usize) -> Key<'static> {
    let lo = word(data, a, len.min(8));
    let hi = if len > 8 { word(data, a + 8, len - 8) } else { 0 };
    Key::Short(lo, hi | (len as u64) << 56)
}

impl<'a> OffsetsStr<'a> {
    #[inline]
    fn key_at(&self, a: usize, z: usize) -> Key<'a> {
        if z - a <= INLINE_BYTES {
            inline_key(self.data, a, z - a)
        } else {
            Key::Long(&self.data[a..z])
        }
    }
}

impl<'a> StrColumn<'a> for OffsetsStr<'a> {
    fn rows(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    fn each_value<F: FnMut(usize, &'a [u8]) -> Result<()>>(&self, lo: usize, hi: usize, mut f: F) -> Result<()> {
        for row in lo..hi {
            let (a, z) = self.span(row)?;
            f(row, &self.data[a..z])?;
        }
        Ok(())
    }

    fn each_key<F: FnMut(usize, Key<'a>)>(&self, lo: usize, hi: usize, mut f: F) -> Result<()> {
        for row in lo..hi {
            let (a, z) = self.span(row)?;
            f(row, self.key_at(a, z));
        }
        Ok(())
    }

    fn value(&self, row: usize) -> &'a [u8] {
        &self.data[self.offsets[row] as usize..self.offsets[row + 1] as usize]
    }

    fn key(&self, row: usize) -> Key<'a> {
        self.key_at(self.offsets[row] as usize, self.offsets[row + 1] as usize)
    }
}

// ----------------------------------------------------------------------------- view layout

/// Values of at most this many bytes sit inside their view.
pub const VIEW_INLINE: usize = 12;

/// One chunk of a `string_view` column: its views (16 bytes per row) and its data buffers.
#[derive(Debug, Clone)]
pub struct ViewChunk<'a> {
    pub views: &'a [[u8; 16]],
    pub buffers: Vec<&'a [u8]>,
}

/// A `string_view` column in chunks, read in place.
#[derive(Debug, Clone)]
pub struct ViewsStr<'a> {
    chunks: Vec<ViewChunk<'a>>,
    /// `starts[k]` is the first row of chunk `k`; `starts[chunks.len()]` is the length.
    starts: Vec<usize>,
}

#[inline]
fn u32_at(v: &[u8; 16], at: usize) -> u32 {
    u32::from_le_bytes(v[at..at + 4].try_into().expect("4 bytes"))
}

/// The value of a view whose length exceeds [`VIEW_INLINE`], checked against its chunk's data
/// `buffers` (row `row`, for the error).
#[inline]
pub fn long_view_value<'a>(buffers: &[&'a [u8]], v: &[u8; 16], row: usize) -> Result<&'a [u8]> {
    let (len, buf, off) = (u32_at(v, 0) as usize, u32_at(v, 8) as usize, u32_at(v, 12) as usize);
    match buffers.get(buf).and_then(|b| b.get(off..off.checked_add(len)?)) {
        Some(s) => Ok(s),
        None => Err(CoreError::InvalidOffsets { what: "string ids (views)", row }),
    }
}

impl<'a> ViewsStr<'a> {
    pub fn new(chunks: Vec<ViewChunk<'a>>) -> Self {
        let mut starts = Vec::with_capacity(chunks.len() + 1);
        let mut at = 0;
        starts.push(0);
        for c in &chunks {
            at += c.views.len();
            starts.push(at);
        }
        ViewsStr { chunks, starts }
    }

    fn chunk_of(&self, row: usize) -> usize {
        self.starts.partition_point(|&s| s <= row) - 1
    }

    /// The value of `view` (row `row`, for the error), checked against its chunk's buffers.
    #[inline]
    fn view_value(chunk: &ViewChunk<'a>, v: &'a [u8; 16], row: usize) -> Result<&'a [u8]> {
        let len = u32_at(v, 0) as usize;
        if len <= VIEW_INLINE {
            return Ok(&v[4..4 + len]);
        }
        long_view_value(&chunk.buffers, v, row)
    }

    /// The key of `view`: a short value's view as it stands (length and bytes, the padding
    /// masked off rather than trusted to be zero), a long value's bytes.
    #[inline]
    fn view_key(chunk: &ViewChunk<'a>, v: &'a [u8; 16], row: usize) -> Result<Key<'a>> {
        let len = u32_at(v, 0) as usize;
        if len <= VIEW_INLINE {
            let lo = u64::from_le_bytes(v[0..8].try_into().expect("8 bytes"));
            let hi = u64::from_le_bytes(v[8..16].try_into().expect("8 bytes"));
            // bytes 0-3 hold the length, 4..4+len the value
            return Ok(if len <= 4 {
                Key::Short(lo & (u64::MAX >> (8 * (4 - len))), 0)
            } else {
                Key::Short(lo, hi & (u64::MAX >> (8 * (VIEW_INLINE - len))))
            });
        }
        Self::view_value(chunk, v, row).map(Key::Long)
    }

    /// Runs `f(chunk, views of rows a..b of that chunk, first row)` over the pieces of `lo..hi`.
    fn pieces<F: FnMut(&ViewChunk<'a>, &'a [[u8; 16]], usize) -> Result<()>>(
        &self,
        lo: usize,
        hi: usize,
        mut f: F,
    ) -> Result<()> {
        if lo >= hi {
            return Ok(());
        }
        let mut k = self.chunk_of(lo);
        let mut row = lo;
        while row < hi {
            let (s, e) = (self.starts[k], self.starts[k + 1]);
            let b = hi.min(e);
            if b > row {
                let c = &self.chunks[k];
                f(c, &c.views[row - s..b - s], row)?;
                row = b;
            }
            k += 1;
        }
        Ok(())
    }
}

impl<'a> StrColumn<'a> for ViewsStr<'a> {
    fn rows(&self) -> usize {
        *self.starts.last().expect("starts is never empty")
    }

    fn each_value<F: FnMut(usize, &'a [u8]) -> Result<()>>(&self, lo: usize, hi: usize, mut f: F) -> Result<()> {
        self.pieces(lo, hi, |c, views, first| {
            for (j, v) in views.iter().enumerate() {
                f(first + j, Self::view_value(c, v, first + j)?)?;
            }
            Ok(())
        })
    }

    fn view_runs<F: FnMut(usize, &'a [[u8; 16]], &[&'a [u8]]) -> Result<()>>(
        &self,
        lo: usize,
        hi: usize,
        mut f: F,
    ) -> Option<Result<()>> {
        Some(self.pieces(lo, hi, |c, views, first| f(first, views, &c.buffers)))
    }

    fn each_key<F: FnMut(usize, Key<'a>)>(&self, lo: usize, hi: usize, mut f: F) -> Result<()> {
        self.pieces(lo, hi, |c, views, first| {
            for (j, v) in views.iter().enumerate() {
                // Read in order, yet waited on line by line without a prefetch (as in text.rs).
                crate::buffer::prefetch(views.as_ptr().wrapping_add(j + 64));
                f(first + j, Self::view_key(c, v, first + j)?);
            }
            Ok(())
        })
    }

    fn value(&self, row: usize) -> &'a [u8] {
        let k = self.chunk_of(row);
        let c = &self.chunks[k];
        Self::view_value(c, &c.views[row - self.starts[k]], row).expect("a checked row")
    }

    fn key(&self, row: usize) -> Key<'a> {
        let k = self.chunk_of(row);
        let c = &self.chunks[k];
        Self::view_key(c, &c.views[row - self.starts[k]], row).expect("a checked row")
    }
}

/// Test helpers: build either layout from values.
#[cfg(test)]
pub(crate) mod build {
    /// `large_string` buffers of `values`.
    pub fn offsets(values: &[&[u8]]) -> (Vec<i64>, Vec<u8>) {
        let mut offsets = vec![0i64];
        let mut data = Vec::new();
        for v in values {
            data.extend_from_slice(v);
            offsets.push(data.len() as i64);
        }
        (offsets, data)
    }

    /// `string_view` views and data buffers of `values`; long values go to buffer `i % n_bufs`
    /// (with a gap before each, as a writer that reuses buffers may leave), short padding is
    /// filled with `pad` (the spec says zero; the reader must not rely on it).
    pub fn views(values: &[&[u8]], n_bufs: usize, pad: u8) -> (Vec<[u8; 16]>, Vec<Vec<u8>>) {
        let mut bufs = vec![Vec::new(); n_bufs.max(1)];
        let views = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut out = [pad; 16];
                out[0..4].copy_from_slice(&(v.len() as u32).to_le_bytes());
                if v.len() <= super::VIEW_INLINE {
                    out[4..4 + v.len()].copy_from_slice(v);
                } else {
                    let b = i % bufs.len();
                    bufs[b].push(0xAA);
                    let off = bufs[b].len();
                    bufs[b].extend_from_slice(v);
                    out[4..8].copy_from_slice(&v[..4]);
                    out[8..12].copy_from_slice(&(b as u32).to_le_bytes());
                    out[12..16].copy_from_slice(&(off as u32).to_le_bytes());
                }
                out
            })
            .collect();
        (views, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect<'a, S: StrColumn<'a>>(s: &S, lo: usize, hi: usize) -> Result<Vec<(usize, Vec<u8>, Key<'a>)>> {
        let mut vals = Vec::new();
        s.each_value(lo, hi, |r, v| {
            vals.push((r, v.to_vec()));
            Ok(())
        })?;
        let mut keys = Vec::new();
        s.each_key(lo, hi, |_, k| keys.push(k))?;
        Ok(vals.into_iter().zip(keys).map(|((r, v), k)| (r, v, k)).collect())
    }

    #[test]
    fn both_layouts_read_the_same_values_across_chunks() {
        let owned: Vec<Vec<u8>> = (0..40usize).map(|i| "x".repeat(i % 20).into_bytes()).collect();
        let values: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        let (o, d) = build::offsets(&values);
        let offs = OffsetsStr::new(&o, &d).unwrap();
        let (v1, b1) = build::views(&values[..15], 2, 0);
        let (v2, b2) = build::views(&values[15..], 1, 0x5c);
        let views = ViewsStr::new(vec![
            ViewChunk { views: &v1, buffers: b1.iter().map(Vec::as_slice).collect() },
            ViewChunk { views: &[], buffers: vec![] },
            ViewChunk { views: &v2, buffers: b2.iter().map(Vec::as_slice).collect() },
        ]);
        assert_eq!((offs.rows(), views.rows()), (40, 40));
        for (lo, hi) in [(0, 40), (3, 17), (15, 15), (14, 16), (39, 40)] {
            let a = collect(&offs, lo, hi).unwrap();
            let b = collect(&views, lo, hi).unwrap();
            assert_eq!(a.len(), hi - lo);
            for ((ra, va, _), (rb, vb, _)) in a.iter().zip(&b) {
                assert_eq!((ra, va), (rb, vb));
            }
        }
        for (r, v) in values.iter().enumerate() {
            assert_eq!(offs.value(r), *v);
            assert_eq!(views.value(r), *v);
        }
        // Equal values, equal keys; different values, different keys (padding ignored).
        for layout in [&collect(&offs, 0, 40).unwrap(), &collect(&views, 0, 40).unwrap()] {
            for (_, va, ka) in layout.iter() {
                for (_, vb, kb) in layout.iter() {
                    assert_eq!(va == vb, ka == kb, "{va:?} {vb:?}");
                }
            }
        }
    }

    #[test]
    fn short_view_keys_ignore_padding_and_tell_lengths_apart() {
        let vals: [&[u8]; 6] = [b"", b"\0", b"ab", b"ab\0", b"abcdefghijkl", b"abcdefghijk"];
        let (clean, _) = build::views(&vals, 1, 0);
        let (dirty, _) = build::views(&vals, 1, 0xff);
        let c = ViewChunk { views: &clean, buffers: vec![] };
        let d = ViewChunk { views: &dirty, buffers: vec![] };
        let keys: Vec<Key> = clean.iter().map(|v| ViewsStr::view_key(&c, v, 0).unwrap()).collect();
        for (i, v) in dirty.iter().enumerate() {
            assert_eq!(ViewsStr::view_key(&d, v, 0).unwrap(), keys[i]);
        }
        for i in 0..keys.len() {
            for j in 0..keys.len() {
                assert_eq!(keys[i] == keys[j], i == j);
            }
        }
    }

    #[test]
    fn malformed_views_and_offsets_are_errors_at_their_row() {
        let vals: [&[u8]; 3] = [b"short", b"a value longer than twelve", b"another long value here"];
        let (mut v, b) = build::views(&vals, 1, 0);
        let bufs: Vec<&[u8]> = b.iter().map(Vec::as_slice).collect();
        v[2][8..12].copy_from_slice(&7u32.to_le_bytes()); // no buffer 7
        let s = ViewsStr::new(vec![ViewChunk { views: &v, buffers: bufs.clone() }]);
        let e = s.each_value(0, 3, |_, _| Ok(())).unwrap_err();
        assert!(matches!(e, CoreError::InvalidOffsets { row: 2, .. }), "{e:?}");
        let (mut v, _) = build::views(&vals, 1, 0);
        v[1][12..16].copy_from_slice(&u32::MAX.to_le_bytes()); // past the end (no overflow)
        let s = ViewsStr::new(vec![ViewChunk { views: &v, buffers: bufs.clone() }]);
        assert!(matches!(s.each_key(0, 3, |_, _| ()), Err(CoreError::InvalidOffsets { row: 1, .. })));
        let (mut v, _) = build::views(&vals, 1, 0);
        v[2][0..4].copy_from_slice(&u32::MAX.to_le_bytes()); // a length past the end
        let s = ViewsStr::new(vec![ViewChunk { views: &v, buffers: bufs }]);
        assert!(matches!(s.each_key(0, 3, |_, _| ()), Err(CoreError::InvalidOffsets { row: 2, .. })));
        assert!(OffsetsStr::new(&[0, 5], b"abc").is_err());
        assert_eq!(OffsetsStr::new(&[5], b"").unwrap().rows(), 0); // no rows: nothing to read
        assert!(OffsetsStr::new(&[-1, 0], b"abc").is_err());
        let o = OffsetsStr::new(&[0, 2, 1, 3], b"abc").unwrap();
        assert!(matches!(o.each_value(0, 3, |_, _| Ok(())), Err(CoreError::InvalidOffsets { row: 1, .. })));
    }
}
