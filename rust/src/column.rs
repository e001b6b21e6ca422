//! Columns read in place from their chunks.
//!
//! polars and Arrow hand a column over as several buffers (one per parquet row group, say: a
//! 20M-row file read by polars comes as 163 chunks). Copying them into one buffer costs a pass
//! over the data and as much fresh memory as the column, so the core reads the chunks where they
//! are: a [`Column`] is the list of chunk slices and the row at which each starts.

use rayon::prelude::*;

#[derive(Debug, Clone)]
pub struct Column<'a, T> {
    parts: Vec<&'a [T]>,
    /// `starts[k]` is the first row of part `k`; `starts[parts.len()]` is the length.
    starts: Vec<usize>,
}

impl<'a, T: Copy + Send + Sync> Column<'a, T> {
    pub fn new(parts: Vec<&'a [T]>) -> Self {
        let mut starts = Vec::with_capacity(parts.len() + 1);
        let mut at = 0;
        starts.push(0);
        for p in &parts {
            at += p.len();
            starts.push(at);
        }
        Column { parts, starts }
    }

    pub fn len(&self) -> usize {
        *self.starts.last().expect("starts is never empty")
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The chunks, in row order.
    pub fn parts(&self) -> &[&'a [T]] {
        &self.parts
    }

    /// Every value, in row order (sequential).
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.parts.iter().flat_map(|p| p.iter().copied())
    }

    /// Blocks of at most `1 << 16` values over all chunks, for parallel passes whose order does
    /// not matter.
    pub fn par_blocks(&self) -> impl ParallelIterator<Item = &'a [T]> + '_ {
        self.parts.par_iter().flat_map_iter(|p| p.chunks(1 << 16))
    }

    /// The pieces of rows `lo..hi`, in order.
    pub fn range(&self, lo: usize, hi: usize) -> impl Iterator<Item = &'a [T]> + '_ {
        let first = self.starts.partition_point(|&s| s <= lo).saturating_sub(1);
        self.parts[first.min(self.parts.len())..].iter().zip(&self.starts[first..]).map_while(move |(p, &s)| {
            if s >= hi {
                return None;
            }
            let a = lo.saturating_sub(s).min(p.len());
            let b = (hi - s).min(p.len());
            Some(&p[a..b])
        })
    }

    /// The value of row `r` (a binary search over the chunks: for checks and errors, not loops).
    pub fn get(&self, r: usize) -> T {
        let k = self.starts.partition_point(|&s| s <= r) - 1;
        self.parts[k][r - self.starts[k]]
    }
}

impl<'a, T: Copy + Send + Sync> From<&'a [T]> for Column<'a, T> {
    fn from(v: &'a [T]) -> Self {
        Column::new(vec![v])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cross_chunks() {
        let (a, b, c): (&[i64], &[i64], &[i64]) = (&[0, 1, 2], &[], &[3, 4, 5, 6]);
        let col = Column::new(vec![a, b, c]);
        assert_eq!(col.len(), 7);
        for lo in 0..=7 {
            for hi in lo..=7 {
                let got: Vec<i64> = col.range(lo, hi).flat_map(|s| s.iter().copied()).collect();
                assert_eq!(got, (lo as i64..hi as i64).collect::<Vec<_>>(), "{lo}..{hi}");
            }
        }
        assert_eq!((0..7).map(|r| col.get(r)).collect::<Vec<_>>(), col.iter().collect::<Vec<_>>());
        let empty: Column<i64> = Column::new(vec![]);
        assert_eq!(empty.range(0, 0).count(), 0);
    }
}
