//! Collecting an importance matrix during a forward pass, as llama-imatrix does: for every
//! matrix multiplication with a block weight, the sum over activation rows of each input
//! column's square (`in_sum2`) and the number of rows summed (`counts`). The quantizer then
//! weighs each column's rounding error by `in_sum2 / counts`, the mean squared input.
//!
//! What llama-imatrix (tools/imatrix/imatrix.cpp) collects, and this collector too:
//! - only weights named `blk.*` (the output head only with its `--process-output`, which is
//!   off by default and not offered here);
//! - only batches of at least 16 activation rows (smaller ones are skipped there);
//! - `counts` grows by the number of rows of each multiplication, one count per dense weight;
//! - `chunk_count` is the rows seen divided by the chunk (window) size.
//!
//! The sums are kept in f64 (llama-imatrix adds in f32); written as f32 like its files.

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::imatrix::{ImatrixData, ImatrixEntry};
use crate::forward::BlockObserver;

/// llama-imatrix ignores multiplications with fewer activation rows than this.
pub const MIN_ROWS: usize = 16;

/// A [`BlockObserver`] that accumulates squared matmul inputs per weight.
#[derive(Debug, Default)]
pub struct ImatrixCollector {
    sums: BTreeMap<String, (Vec<f64>, u64)>,
    /// A weight whose input width changed between calls (which would be a forward-pass bug);
    /// reported by [`ImatrixCollector::finish`] instead of panicking inside the pass.
    inconsistent: Option<String>,
}

impl ImatrixCollector {
    pub fn new() -> ImatrixCollector {
        ImatrixCollector::default()
    }

    /// Weights seen so far.
    pub fn len(&self) -> usize {
        self.sums.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sums.is_empty()
    }

    /// The collected matrix. `dataset` is recorded in `imatrix.datasets`, `chunk_size` (tokens
    /// per calibration window) in `imatrix.chunk_size`.
    pub fn finish(self, dataset: &str, chunk_size: u32) -> crate::error::Result<ImatrixData> {
        if let Some(name) = self.inconsistent {
            return Err(crate::error::Error::ImatrixWidthChanged { name });
        }
        let rows = self.sums.values().map(|(_, c)| *c).max().unwrap_or(0);
        let entries = self
            .sums
            .into_iter()
            .map(|(name, (sums, count))| {
                let e = ImatrixEntry {
                    sums: sums.into_iter().map(|v| v as f32).collect(),
                    counts: vec![count as i64],
                };
                (name, e)
            })
            .collect();
        let chunk_count = (rows / u64::from(chunk_size.max(1))) as u32;
        Ok(ImatrixData::new(
            entries,
            vec![dataset.to_string()],
            chunk_count,
            chunk_size,
        ))
    }
}

impl BlockObserver for ImatrixCollector {
    fn matmul_input(&mut self, il: usize, weight: &str, x: &[f32], n: usize) {
        if n < MIN_ROWS || x.is_empty() || !x.len().is_multiple_of(n) {
            return;
        }
        let cols = x.len() / n;
        let name = crate::arch::names::block_weight(il, weight);
        let (sums, count) = self
            .sums
            .entry(name.clone())
            .or_insert_with(|| (vec![0.0; cols], 0));
        if sums.len() != cols {
            self.inconsistent.get_or_insert(name);
            return;
        }
        // Columns in parallel, rows in order: reproducible sums.
        const STRIPE: usize = 32;
        sums.par_chunks_mut(STRIPE)
            .enumerate()
            .for_each(|(s, acc)| {
                let (c0, w) = (s * STRIPE, acc.len());
                for row in x.chunks_exact(cols) {
                    for (a, &v) in acc.iter_mut().zip(&row[c0..c0 + w]) {
                        *a += f64::from(v) * f64::from(v);
                    }
                }
            });
        *count += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_squares_per_column_and_counts_rows() {
        let mut c = ImatrixCollector::new();
        let n = 20;
        let x: Vec<f32> = (0..n * 3).map(|i| (i % 3) as f32 + 1.0).collect();
        c.matmul_input(2, "ffn_up", &x, n);
        c.matmul_input(2, "ffn_up", &x, n);
        // Fewer than 16 rows: skipped, as llama-imatrix does.
        c.matmul_input(2, "ffn_up", &x[..3 * 4], 4);
        let im = c.finish("calib.txt", 10).unwrap();
        let e = &im.entries["blk.2.ffn_up.weight"];
        assert_eq!(e.counts, vec![40]);
        assert_eq!(e.sums, vec![40.0, 160.0, 360.0]);
        assert_eq!(im.get("blk.2.ffn_up.weight").unwrap(), &[1.0, 4.0, 9.0]);
        assert_eq!(im.chunk_count, 4);
        assert_eq!(im.datasets, vec!["calib.txt".to_string()]);
    }

    #[test]
    fn width_change_is_an_error() {
        let mut c = ImatrixCollector::new();
        c.matmul_input(0, "attn_q", &[1.0; 32], 16);
        c.matmul_input(0, "attn_q", &[1.0; 48], 16);
        assert!(c.finish("x", 1).is_err());
    }
}
