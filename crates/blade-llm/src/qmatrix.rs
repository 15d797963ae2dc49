//! Weights kept in a GGUF file's quantised blocks (Q4_0, Q4_1, Q8_0) for inference.
//!
//! Dequantised to `f32` at load, SmolLM2-135M's Q4_1 file (98 MB) becomes 540 MB of weights. A
//! [`QMatrix`] keeps the blocks as they are in the file and multiplies by them directly:
//! [`QMatrix::times_rows`] dequantises one weight row at a time into a buffer that stays in the
//! L1 cache and takes its dot products with every input row (`blade_kernels::block_row_dots`,
//! at the widest vector instructions the CPU has), in tasks of 32 weight rows on rayon's
//! threads. The values are the file's own (a quantised weight has no
//! other), so the products equal those of the dequantised path up to the order of the sums.
//!
//! Only inference uses them: LoRA training differentiates through the base projections, which
//! these host-side products do not record, so training keeps the `f32` path.

use std::sync::Arc;

use blade_kernels::BlockFormat;
use rayon::prelude::*;

use crate::gguf::{quantize, GgmlType};

/// Weight rows per parallel task (and per dispatch).
const ROWS_PER_TASK: usize = 32;

/// A `rows x cols` matrix (a GGUF linear weight is `[out, in]`) stored as quantised blocks along
/// each row. Cheap to clone (the blocks are shared).
#[derive(Clone)]
pub struct QMatrix {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: Arc<Vec<u8>>,
}

impl std::fmt::Debug for QMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QMatrix({} {}x{})", self.ty, self.rows, self.cols)
    }
}

impl QMatrix {
    /// Whether weights of type `ty` can stay quantised (the block types; F32/F16/BF16 tensors are
    /// dequantised as before).
    pub fn supports(ty: GgmlType) -> bool {
        ty.block_format().is_some()
    }

    /// The matrix of `rows` rows of `cols` values stored in `data`; `None` if the type is not a
    /// block type, `cols` is not a whole number of blocks, or `data` has the wrong length.
    pub fn new(ty: GgmlType, rows: usize, cols: usize, data: Vec<u8>) -> Option<Self> {
        let format = ty.block_format()?;
        if cols == 0 || !cols.is_multiple_of(BlockFormat::VALUES) {
            return None;
        }
        let row_bytes = cols / BlockFormat::VALUES * format.bytes();
        (data.len() == rows.checked_mul(row_bytes)?).then(|| Self {
            ty,
            rows,
            cols,
            row_bytes,
            data: Arc::new(data),
        })
    }

    /// Quantises row-major `values` (`rows x cols`) the way ggml does (tests, fixtures).
    pub fn quantize(ty: GgmlType, rows: usize, cols: usize, values: &[f32]) -> Option<Self> {
        if values.len() != rows * cols {
            return None;
        }
        Self::new(ty, rows, cols, quantize(ty, values)?)
    }

    /// Rows (a linear weight's outputs).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns (a linear weight's inputs).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// The same matrix with its rows in the order `order` (row `i` of the result is row
    /// `order[i]`); `None` unless `order` is a permutation of the rows.
    pub fn permute_rows(&self, order: &[usize]) -> Option<Self> {
        let mut seen = vec![false; self.rows];
        if order.len() != self.rows || order.iter().any(|&r| r >= self.rows) {
            return None;
        }
        let mut data = Vec::with_capacity(self.data.len());
        for &r in order {
            if std::mem::replace(&mut seen[r], true) {
                return None;
            }
            data.extend_from_slice(self.row(r));
        }
        Self::new(self.ty, self.rows, self.cols, data)
    }

    fn format(&self) -> BlockFormat {
        self.ty
            .block_format()
            .expect("QMatrix holds block types only")
    }

    fn row(&self, r: usize) -> &[u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// Rows `ids`, dequantised, row-major (`ids.len() x cols`): an embedding lookup.
    ///
    /// # Panics
    /// If an id is not a row.
    pub fn rows_f32(&self, ids: &[usize]) -> Vec<f32> {
        let mut out = vec![0.0; ids.len() * self.cols];
        for (o, &r) in out.chunks_exact_mut(self.cols).zip(ids) {
            blade_kernels::dequantize_blocks(self.format(), self.row(r), o);
        }
        out
    }

    /// Rows `range`, dequantised, row-major: the contiguous blocks in one pass.
    ///
    /// # Panics
    /// If the range runs past the last row.
    pub fn range_f32(&self, range: std::ops::Range<usize>) -> Vec<f32> {
        let mut out = vec![0.0; range.len() * self.cols];
        let raw = &self.data[range.start * self.row_bytes..range.end * self.row_bytes];
        blade_kernels::dequantize_blocks(self.format(), raw, &mut out);
        out
    }

    /// `x W^T` for `n` input rows `x` (row-major `n x cols`): row-major `n x rows`, entry
    /// `(i, r)` the dot product of input row `i` with weight row `r`.
    ///
    /// # Panics
    /// If `x` is not `n` rows of `cols`.
    pub fn times_rows(&self, x: &[f32], n: usize) -> Vec<f32> {
        assert_eq!(
            x.len(),
            n * self.cols,
            "QMatrix::times_rows: x is not {n} rows"
        );
        let tasks: Vec<std::ops::Range<usize>> = (0..self.rows)
            .step_by(ROWS_PER_TASK)
            .map(|r| r..(r + ROWS_PER_TASK).min(self.rows))
            .collect();
        // rayon's pool (burn's CPU backend already runs one): no thread start per product,
        // which greedy decoding makes ~200 times per token
        let parts: Vec<(usize, Vec<f32>)> = tasks
            .par_iter()
            .map(|r| {
                let raw = &self.data[r.start * self.row_bytes..r.end * self.row_bytes];
                (
                    r.start,
                    blade_kernels::block_row_dots(self.format(), raw, self.cols, x, n),
                )
            })
            .collect();
        let mut y = vec![0.0f32; n * self.rows];
        for (start, yt) in parts {
            for (k, dots) in yt.chunks_exact(n).enumerate() {
                for (i, &v) in dots.iter().enumerate() {
                    y[i * self.rows + start + k] = v;
                }
            }
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::dequantize;

    fn ramp(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn products_equal_the_dequantised_ones_for_every_block_type() {
        let (rows, cols) = (70, 96);
        let w = ramp(rows * cols, 7);
        // one input row (greedy decoding: the fused kernel) and several (dequantised rows)
        for (ty, n) in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0]
            .into_iter()
            .flat_map(|ty| [(ty, 1), (ty, 5)])
        {
            let x = ramp(n * cols, 11 + n as u32);
            let q = QMatrix::quantize(ty, rows, cols, &w).unwrap();
            let dense = dequantize(ty, &quantize(ty, &w).unwrap(), rows * cols).unwrap();
            assert_eq!(q.range_f32(0..rows), dense, "{ty}");
            let y = q.times_rows(&x, n);
            for i in 0..n {
                for r in 0..rows {
                    let want: f64 = (0..cols)
                        .map(|c| f64::from(x[i * cols + c]) * f64::from(dense[r * cols + c]))
                        .sum();
                    let got = f64::from(y[i * rows + r]);
                    assert!(
                        (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                        "{ty} n={n} ({i}, {r}): {got} vs {want}"
                    );
                }
            }
            assert_eq!(q.bytes(), rows * cols / 32 * ty.block().unwrap().1);
        }
    }

    #[test]
    fn rows_are_looked_up_and_permuted_as_wholes() {
        let (rows, cols) = (4, 64);
        let w = ramp(rows * cols, 3);
        let q = QMatrix::quantize(GgmlType::Q8_0, rows, cols, &w).unwrap();
        let all = q.range_f32(0..rows);
        assert_eq!(q.rows_f32(&[2]), all[2 * cols..3 * cols]);
        let p = q.permute_rows(&[3, 0, 2, 1]).unwrap();
        assert_eq!(p.rows_f32(&[0]), all[3 * cols..4 * cols]);
        assert_eq!(p.rows_f32(&[3]), all[cols..2 * cols]);
        assert!(q.permute_rows(&[0, 0, 1, 2]).is_none());
        assert!(QMatrix::new(GgmlType::Q8_0, 2, 48, vec![0; 2 * 51]).is_none());
        assert!(QMatrix::new(GgmlType::F32, 1, 32, vec![0; 128]).is_none());
    }
}
