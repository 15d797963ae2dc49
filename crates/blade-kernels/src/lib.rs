//! Vectorised CPU kernels for blade's CPU backend (`blade-core`'s `kernels` backend
//! extension). burn's flex backend computes GELU with a scalar `erf` per element and
//! `log_softmax` as six separate passes around a scalar `exp`; these compute the same functions
//! with branch-free approximations that the compiler vectorises, at the widest instruction set
//! the CPU offers (chosen at run time by `pulp`), GELU in one pass and `log_softmax` over the
//! last dimension in two passes per row. For LLM inference, [`block_row_dots`] multiplies by
//! weight rows kept in ggml's quantised blocks (Q4_0, Q4_1, Q8_0) without dequantising the
//! matrix.
//!
//! Accuracy (tested against `f64` references on `[-12, 12]`): GELU `x Phi(x)` within
//! `1.5e-7 * (1 + |x|)` (burn-flex's scalar-`erf` GELU: `8e-8 * (1 + |x|)`) and its derivative
//! within `4e-7` of the exact values: one or two `f32` rounding steps at values of order 1, far
//! below the differences that reordering a sum makes in a training run.
//!
//! The normal tail uses Abramowitz and Stegun 7.1.26 (`erfc(z) = t P(t) e^{-z^2}`,
//! `t = 1 / (1 + p z)`, absolute error at most `1.5e-7`); `e^{-z^2}` uses a range reduction to
//! `[-ln2/2, ln2/2]` and a degree-7 polynomial. One exponential serves both the value and the
//! derivative (`phi(x) = e^{-x^2/2} / sqrt(2 pi)`).

use pulp::{Arch, Simd, WithSimd};

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// `1 / sqrt(2 pi)`.
const INV_SQRT_2PI: f32 = 0.398_942_3;
/// `1.5 * 2^23`: adding and subtracting it rounds an `f32` of magnitude below `2^22` to the
/// nearest integer, and the sum's low mantissa bits hold that integer.
const ROUND_MAGIC: f32 = 12_582_912.0;
const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` split so that `n * LN2_HI` is exact for the `n` that occur.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
// Abramowitz and Stegun 7.1.26
const AS_P: f32 = 0.327_591_1;
const AS_A1: f32 = 0.254_829_6;
const AS_A2: f32 = -0.284_496_74;
const AS_A3: f32 = 1.421_413_7;
const AS_A4: f32 = -1.453_152_1;
const AS_A5: f32 = 1.061_405_4;

/// `e^v` for `v <= 0`; 0 below `-87` (`e^-87` is about `1.6e-38`, the smallest normal `f32`
/// is `1.2e-38`). Relative error below `3e-7`.
#[inline(always)]
fn exp_nonpositive(v: f32) -> f32 {
    let underflow = v < -87.0;
    // a select, not `max`, so that NaN stays NaN
    let v = if underflow { -87.0 } else { v };
    let shifted = v * LOG2_E + ROUND_MAGIC;
    let n = shifted - ROUND_MAGIC;
    let r = (v - n * LN2_HI) - n * LN2_LO;
    // e^r on [-ln2/2, ln2/2], Taylor to degree 7 (remainder below 6e-9)
    let p = 1.0 / 5040.0;
    let p = p * r + 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    // 2^n from the integer in `shifted`'s low bits: n + 127 in the exponent field
    let n_bits = shifted
        .to_bits()
        .wrapping_sub(ROUND_MAGIC.to_bits())
        .wrapping_add(127);
    let value = p * f32::from_bits(n_bits << 23);
    if underflow {
        0.0
    } else {
        value
    }
}

/// `(Phi(x), e^{-x^2/2})`: the standard normal CDF and the unnormalised density.
#[inline(always)]
fn normal_cdf_and_density(x: f32) -> (f32, f32) {
    let z = x.abs() * FRAC_1_SQRT_2;
    let e = exp_nonpositive(-(z * z));
    let t = 1.0 / (1.0 + AS_P * z);
    let poly = t * (AS_A1 + t * (AS_A2 + t * (AS_A3 + t * (AS_A4 + t * AS_A5))));
    // P(X > |x|) = erfc(|x| / sqrt 2) / 2
    let tail = 0.5 * poly * e;
    let cdf = if x >= 0.0 { 1.0 - tail } else { tail };
    (cdf, e)
}

/// GELU of one value, `x Phi(x)` (the exact, `erf`-based GELU, not the `tanh` approximation).
#[inline(always)]
pub fn gelu_scalar(x: f32) -> f32 {
    x * normal_cdf_and_density(x).0
}

/// The derivative of [`gelu_scalar`]: `Phi(x) + x phi(x)`.
#[inline(always)]
pub fn gelu_derivative_scalar(x: f32) -> f32 {
    let (cdf, e) = normal_cdf_and_density(x);
    cdf + x * (INV_SQRT_2PI * e)
}

struct GeluCollect<'a>(&'a [f32]);

impl WithSimd for GeluCollect<'_> {
    type Output = Vec<f32>;
    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.0.len());
        out.extend(self.0.iter().map(|&x| gelu_scalar(x)));
        out
    }
}

struct GeluBackwardCollect<'a>(&'a [f32], &'a [f32]);

impl WithSimd for GeluBackwardCollect<'_> {
    type Output = Vec<f32>;
    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.0.len());
        out.extend(
            self.0
                .iter()
                .zip(self.1)
                .map(|(&x, &g)| g * gelu_derivative_scalar(x)),
        );
        out
    }
}

/// `GELU(x)` element-wise, in a new vector.
pub fn gelu(x: &[f32]) -> Vec<f32> {
    Arch::new().dispatch(GeluCollect(x))
}

/// `grad * GELU'(x)` element-wise, in a new vector: the backward pass of GELU.
///
/// # Panics
/// If the lengths differ.
pub fn gelu_backward(x: &[f32], grad: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), grad.len(), "gelu_backward: lengths differ");
    Arch::new().dispatch(GeluBackwardCollect(x, grad))
}

/// Lanes of the partial sums and maxima in the row kernels (the compiler keeps them in
/// vector registers).
const LANES: usize = 16;

#[inline(always)]
fn row_max(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            // NaN-propagating maximum, as a select
            *a = if v > *a || v.is_nan() { v } else { *a };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &v in acc.iter().chain(chunks.remainder()) {
        m = if v > m || v.is_nan() { v } else { m };
    }
    m
}

#[inline(always)]
fn row_sum_exp_shifted(row: &[f32], shift: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += exp_nonpositive(v - shift);
        }
    }
    let mut s = 0.0f32;
    for &v in chunks.remainder() {
        s += exp_nonpositive(v - shift);
    }
    acc.iter().sum::<f32>() + s
}

#[inline(always)]
fn row_sum(row: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

struct LogSoftmaxRows<'a>(&'a [f32], usize);

impl WithSimd for LogSoftmaxRows<'_> {
    type Output = Vec<f32>;
    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> Vec<f32> {
        let (x, cols) = (self.0, self.1);
        let mut out = Vec::with_capacity(x.len());
        for row in x.chunks_exact(cols) {
            let max = row_max(row);
            let shift = max + row_sum_exp_shifted(row, max).ln();
            out.extend(row.iter().map(|&v| v - shift));
        }
        out
    }
}

struct LogSoftmaxBackwardRows<'a>(&'a [f32], &'a [f32], usize);

impl WithSimd for LogSoftmaxBackwardRows<'_> {
    type Output = Vec<f32>;
    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> Vec<f32> {
        let (out, grad, cols) = (self.0, self.1, self.2);
        let mut dx = Vec::with_capacity(out.len());
        for (o, g) in out.chunks_exact(cols).zip(grad.chunks_exact(cols)) {
            let total = row_sum(g);
            dx.extend(
                o.iter()
                    .zip(g)
                    .map(|(&o, &g)| g - exp_nonpositive(o) * total),
            );
        }
        dx
    }
}

/// `log_softmax` of each row of `x` (row-major, `cols` values per row):
/// `x - max - ln(sum(exp(x - max)))`. The sum runs over 16 interleaved partial sums (its order
/// differs from a sequential sum by rounding only); `exp` is the polynomial of this crate
/// (relative error below `3e-7`; exactly 0 below `e^-87`, so masked logits cost nothing).
///
/// # Panics
/// If `cols` is 0 or does not divide `x.len()`.
pub fn log_softmax_rows(x: &[f32], cols: usize) -> Vec<f32> {
    assert!(
        cols > 0 && x.len().is_multiple_of(cols),
        "log_softmax_rows: {} values are not rows of {cols}",
        x.len()
    );
    Arch::new().dispatch(LogSoftmaxRows(x, cols))
}

/// The backward pass of [`log_softmax_rows`] from its output `out` and the output's gradient
/// `grad`: `grad - exp(out) * sum(grad)` per row.
///
/// # Panics
/// If the lengths differ, or `cols` is 0 or does not divide them.
pub fn log_softmax_backward_rows(out: &[f32], grad: &[f32], cols: usize) -> Vec<f32> {
    assert_eq!(
        out.len(),
        grad.len(),
        "log_softmax_backward_rows: lengths differ"
    );
    assert!(
        cols > 0 && out.len().is_multiple_of(cols),
        "log_softmax_backward_rows: {} values are not rows of {cols}",
        out.len()
    );
    Arch::new().dispatch(LogSoftmaxBackwardRows(out, grad, cols))
}

/// ggml's block formats of 32 values (GGUF tensor types Q4_0, Q4_1 and Q8_0), little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockFormat {
    /// `f16 d`, then 16 bytes of 4-bit `q` (value `j` in the low nibble of byte `j`, value
    /// `j + 16` in its high nibble): `(q - 8) d`.
    Q4_0,
    /// `f16 d`, `f16 m`, then 16 bytes of 4-bit `q` as in Q4_0: `q d + m`.
    Q4_1,
    /// `f16 d`, then 32 `i8` `q`: `q d`.
    Q8_0,
}

impl BlockFormat {
    /// Values per block.
    pub const VALUES: usize = 32;

    /// Bytes per block.
    pub fn bytes(self) -> usize {
        match self {
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q8_0 => 34,
        }
    }
}

/// An `f16` in two little-endian bytes as `f32` (subnormals, infinities and NaN included).
#[inline(always)]
fn f16_to_f32(b: &[u8]) -> f32 {
    let h = u32::from(u16::from_le_bytes([b[0], b[1]]));
    let sign = (h & 0x8000) << 16;
    let exp = (h >> 10) & 0x1f;
    let mant = h & 0x3ff;
    let bits = match exp {
        0 if mant == 0 => sign,
        // subnormal: mant * 2^-24
        0 => {
            let v = mant as f32 * f32::from_bits(0x3380_0000); // mant * 2^-24
            return if sign == 0 { v } else { -v };
        }
        0x1f => sign | 0x7f80_0000 | (mant << 13),
        _ => sign | ((exp + 112) << 23) | (mant << 13),
    };
    f32::from_bits(bits)
}

/// Dequantises the blocks `raw` into `out` (`out.len()` values, a multiple of 32).
#[inline(always)]
fn dequantize_into(format: BlockFormat, raw: &[u8], out: &mut [f32]) {
    let half = BlockFormat::VALUES / 2;
    for (blk, o) in raw
        .chunks_exact(format.bytes())
        .zip(out.chunks_exact_mut(BlockFormat::VALUES))
    {
        let (lo, hi) = o.split_at_mut(half);
        match format {
            BlockFormat::Q4_0 => {
                let d = f16_to_f32(&blk[..2]);
                for ((l, h), &q) in lo.iter_mut().zip(hi.iter_mut()).zip(&blk[2..]) {
                    *l = (f32::from(q & 0x0f) - 8.0) * d;
                    *h = (f32::from(q >> 4) - 8.0) * d;
                }
            }
            BlockFormat::Q4_1 => {
                let (d, m) = (f16_to_f32(&blk[..2]), f16_to_f32(&blk[2..4]));
                for ((l, h), &q) in lo.iter_mut().zip(hi.iter_mut()).zip(&blk[4..]) {
                    *l = f32::from(q & 0x0f) * d + m;
                    *h = f32::from(q >> 4) * d + m;
                }
            }
            BlockFormat::Q8_0 => {
                let d = f16_to_f32(&blk[..2]);
                for (v, &q) in o.iter_mut().zip(&blk[2..]) {
                    *v = f32::from(q as i8) * d;
                }
            }
        }
    }
}

/// The dot product of two equal-length rows over [`LANES`] interleaved partial sums, on
/// fixed-size chunks (no bounds checks, so the compiler vectorises the lanes) and in `for`
/// loops: an iterator adapter's `fold` (`extend`, `sum`) is a function of its own, compiled
/// outside the caller's run-time target features (perf put half of a quantised product there).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        let x: &[f32; LANES] = x.try_into().expect("a chunk of LANES");
        let y: &[f32; LANES] = y.try_into().expect("a chunk of LANES");
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = 0.0f32;
    for v in acc {
        s += v;
    }
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// [`block_row_dots`] for one input row `x`, without dequantising a weight row first: per
/// block, `d * sum(q x) + m * sum(x)` (Q4_0: `m = -8 d`), the sums of `x` over each block taken
/// once for all weight rows.
#[inline(always)]
fn one_row_dots(format: BlockFormat, raw: &[u8], row_bytes: usize, x: &[f32]) -> Vec<f32> {
    const HALF: usize = BlockFormat::VALUES / 2;
    let blocks = x.len() / BlockFormat::VALUES;
    let mut xsum = vec![0.0f32; blocks];
    for (s, xb) in xsum.iter_mut().zip(x.chunks_exact(BlockFormat::VALUES)) {
        let xb: &[f32; BlockFormat::VALUES] = xb.try_into().expect("a block of x");
        let mut t = 0.0f32;
        for v in xb {
            t += v;
        }
        *s = t;
    }
    let mut out = Vec::with_capacity(raw.len() / row_bytes.max(1));
    for row in raw.chunks_exact(row_bytes) {
        let mut acc = [0.0f32; HALF];
        let mut offset = 0.0f32;
        for ((blk, xb), &xs) in row
            .chunks_exact(format.bytes())
            .zip(x.chunks_exact(BlockFormat::VALUES))
            .zip(&xsum)
        {
            let (xl, xh) = xb.split_at(HALF);
            let xl: &[f32; HALF] = xl.try_into().expect("half a block");
            let xh: &[f32; HALF] = xh.try_into().expect("half a block");
            let d = f16_to_f32(&blk[..2]);
            match format {
                BlockFormat::Q4_0 | BlockFormat::Q4_1 => {
                    let (m, qs) = match format {
                        BlockFormat::Q4_1 => (f16_to_f32(&blk[2..4]), &blk[4..]),
                        _ => (-8.0 * d, &blk[2..]),
                    };
                    let qs: &[u8; HALF] = qs.try_into().expect("16 bytes of nibbles");
                    for l in 0..HALF {
                        let (lo, hi) = (f32::from(qs[l] & 0x0f), f32::from(qs[l] >> 4));
                        acc[l] += d * (lo * xl[l] + hi * xh[l]);
                    }
                    offset += m * xs;
                }
                BlockFormat::Q8_0 => {
                    let qs: &[u8; BlockFormat::VALUES] =
                        blk[2..].try_into().expect("32 bytes of values");
                    for l in 0..HALF {
                        let (lo, hi) = (f32::from(qs[l] as i8), f32::from(qs[l + HALF] as i8));
                        acc[l] += d * (lo * xl[l] + hi * xh[l]);
                    }
                }
            }
        }
        let mut total = offset;
        for v in acc {
            total += v;
        }
        out.push(total);
    }
    out
}

/// The dot products of four rows (`w` holds them, `cols` each) with `x`, one pass over `x`.
#[inline(always)]
fn dot4(w: &[f32], cols: usize, x: &[f32]) -> [f32; 4] {
    let whole = cols - cols % LANES;
    let (w0, rest) = w.split_at(cols);
    let (w1, rest) = rest.split_at(cols);
    let (w2, w3) = rest.split_at(cols);
    let chunks = x[..whole]
        .chunks_exact(LANES)
        .zip(w0[..whole].chunks_exact(LANES))
        .zip(w1[..whole].chunks_exact(LANES))
        .zip(w2[..whole].chunks_exact(LANES))
        .zip(w3[..whole].chunks_exact(LANES));
    // four named accumulators: an array of them stayed scalar (docs/results/speed-llm.md)
    let [mut a0, mut a1, mut a2, mut a3] = [[0.0f32; LANES]; 4];
    for ((((xc, c0), c1), c2), c3) in chunks {
        let xc: &[f32; LANES] = xc.try_into().expect("a chunk of LANES");
        let c0: &[f32; LANES] = c0.try_into().expect("a chunk of LANES");
        let c1: &[f32; LANES] = c1.try_into().expect("a chunk of LANES");
        let c2: &[f32; LANES] = c2.try_into().expect("a chunk of LANES");
        let c3: &[f32; LANES] = c3.try_into().expect("a chunk of LANES");
        for l in 0..LANES {
            a0[l] += c0[l] * xc[l];
            a1[l] += c1[l] * xc[l];
            a2[l] += c2[l] * xc[l];
            a3[l] += c3[l] * xc[l];
        }
    }
    let acc = [a0, a1, a2, a3];
    let mut out = [0.0f32; 4];
    for ((o, a), wr) in out.iter_mut().zip(acc).zip([w0, w1, w2, w3]) {
        let mut s = 0.0f32;
        for v in a {
            s += v;
        }
        for (p, q) in wr[whole..].iter().zip(&x[whole..cols]) {
            s += p * q;
        }
        *o = s;
    }
    out
}

struct Dequantize<'a>(BlockFormat, &'a [u8], &'a mut [f32]);

impl WithSimd for Dequantize<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        dequantize_into(self.0, self.1, self.2);
    }
}

struct BlockRowDots<'a>(BlockFormat, &'a [u8], usize, &'a [f32], usize);

impl WithSimd for BlockRowDots<'_> {
    type Output = Vec<f32>;
    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> Vec<f32> {
        let BlockRowDots(format, raw, cols, x, n) = self;
        let row_bytes = cols / BlockFormat::VALUES * format.bytes();
        if n == 1 {
            return one_row_dots(format, raw, row_bytes, x);
        }
        // four weight rows at a time: each input chunk is loaded once for four products
        let rows = raw.len() / row_bytes.max(1);
        let mut w = vec![0.0f32; 4 * cols];
        let mut out = vec![0.0f32; rows * n];
        for (g, group) in raw.chunks(4 * row_bytes).enumerate() {
            let k = group.len() / row_bytes;
            for (row, wr) in group.chunks_exact(row_bytes).zip(w.chunks_exact_mut(cols)) {
                dequantize_into(format, row, wr);
            }
            for i in 0..n {
                let xi = &x[i * cols..(i + 1) * cols];
                if k == 4 {
                    let d = dot4(&w, cols, xi);
                    for (j, v) in d.into_iter().enumerate() {
                        out[(4 * g + j) * n + i] = v;
                    }
                } else {
                    for j in 0..k {
                        out[(4 * g + j) * n + i] = dot(&w[j * cols..(j + 1) * cols], xi);
                    }
                }
            }
        }
        out
    }
}

/// Dequantises whole blocks `raw` of `format` into `out` (32 values per block).
///
/// # Panics
/// If `out` is not 32 values per block of `raw`.
pub fn dequantize_blocks(format: BlockFormat, raw: &[u8], out: &mut [f32]) {
    assert_eq!(
        raw.len() / format.bytes() * BlockFormat::VALUES,
        out.len(),
        "dequantize_blocks: {} bytes of {format:?} blocks do not hold {} values",
        raw.len(),
        out.len()
    );
    Arch::new().dispatch(Dequantize(format, raw, out));
}

/// Dot products of quantised weight rows with `n` input rows: `raw` holds whole rows of
/// `cols` values (`cols / 32` blocks of `format` each), `x` holds `n` rows of `cols` values,
/// and the result is `[rows of raw, n]` (row-major), entry `(r, i)` the dot product of weight
/// row `r` with input row `i`. Each weight row is dequantised once into a buffer that stays in
/// the L1 cache; the dot products use 16 interleaved partial sums.
///
/// # Panics
/// If `cols` is not a positive multiple of 32, `raw` is not whole rows, or `x` is not `n` rows.
pub fn block_row_dots(
    format: BlockFormat,
    raw: &[u8],
    cols: usize,
    x: &[f32],
    n: usize,
) -> Vec<f32> {
    assert!(
        cols > 0 && cols.is_multiple_of(BlockFormat::VALUES),
        "block_row_dots: {cols} columns are not whole blocks"
    );
    let row_bytes = cols / BlockFormat::VALUES * format.bytes();
    assert!(
        raw.len().is_multiple_of(row_bytes),
        "block_row_dots: partial weight row"
    );
    assert_eq!(
        x.len(),
        n * cols,
        "block_row_dots: x is not {n} rows of {cols}"
    );
    Arch::new().dispatch(BlockRowDots(format, raw, cols, x, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cdf64(x: f64) -> f64 {
        0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
    }

    fn gelu64(x: f64) -> f64 {
        x * cdf64(x)
    }

    fn dgelu64(x: f64) -> f64 {
        cdf64(x) + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
    }

    /// burn-flex's GELU: `0.5 x (1 + erf(x / sqrt 2))` with a scalar `f32` erf.
    fn gelu_flex(x: f32) -> f32 {
        0.5 * x * (1.0 + libm::erff(x / std::f32::consts::SQRT_2))
    }

    #[test]
    fn exp_matches_std_on_its_range() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let v = -87.0 * i as f32 / 200_000.0;
            let got = exp_nonpositive(v) as f64;
            let want = (v as f64).exp();
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-1e4), 0.0);
        assert!(exp_nonpositive(-87.0) > 1e-38);
    }

    #[test]
    fn gelu_and_its_derivative_on_a_dense_grid() {
        let (mut worst_v, mut worst_d, mut worst_flex) = (0.0f64, 0.0f64, 0.0f64);
        for i in -120_000..=120_000 {
            let x = i as f32 / 10_000.0; // [-12, 12]
            let xd = x as f64;
            let ev = (gelu_scalar(x) as f64 - gelu64(xd)).abs() / (1.0 + xd.abs());
            let ed = (gelu_derivative_scalar(x) as f64 - dgelu64(xd)).abs();
            let ef = (gelu_flex(x) as f64 - gelu64(xd)).abs() / (1.0 + xd.abs());
            worst_v = worst_v.max(ev);
            worst_d = worst_d.max(ed);
            worst_flex = worst_flex.max(ef);
        }
        assert!(
            worst_v < 1.5e-7,
            "GELU: worst error {worst_v:e} (burn-flex's: {worst_flex:e})"
        );
        assert!(worst_d < 4e-7, "GELU': worst error {worst_d:e}");
    }

    #[test]
    fn special_values() {
        assert_eq!(gelu_scalar(0.0), 0.0);
        assert!((gelu_derivative_scalar(0.0) - 0.5).abs() < 2e-7);
        assert_eq!(gelu_scalar(f32::INFINITY), f32::INFINITY);
        assert!(gelu_scalar(f32::NAN).is_nan());
        assert!(gelu_derivative_scalar(f32::NAN).is_nan());
        assert_eq!(gelu_scalar(1e30), 1e30);
        assert_eq!(gelu_scalar(-1e30), 0.0);
        assert_eq!(gelu_derivative_scalar(-1e30), 0.0);
        assert_eq!(gelu_derivative_scalar(1e30), 1.0);
    }

    fn log_softmax64(row: &[f32]) -> Vec<f64> {
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let lse = max
            + row
                .iter()
                .map(|&v| (v as f64 - max).exp())
                .sum::<f64>()
                .ln();
        row.iter().map(|&v| v as f64 - lse).collect()
    }

    #[test]
    fn log_softmax_rows_and_backward_against_f64() {
        let cols = 1351;
        let x: Vec<f32> = (0..3 * cols)
            .map(|i| match i % 97 {
                0 => -1e9, // a masked logit
                r => ((i * 7919) % 2003) as f32 / 100.0 - 10.0 + r as f32 * 0.01,
            })
            .collect();
        let out = log_softmax_rows(&x, cols);
        for (row, got) in x.chunks(cols).zip(out.chunks(cols)) {
            for (w, &g) in log_softmax64(row).iter().zip(got) {
                assert!((g as f64 - w).abs() <= 2e-6 * (1.0 + w.abs()), "{g} vs {w}");
            }
            // probabilities sum to 1
            let total: f64 = got.iter().map(|&v| (v as f64).exp()).sum();
            assert!((total - 1.0).abs() < 1e-5, "{total}");
        }
        let grad: Vec<f32> = (0..x.len())
            .map(|i| ((i * 31) % 17) as f32 / 8.0 - 1.0)
            .collect();
        let dx = log_softmax_backward_rows(&out, &grad, cols);
        for r in 0..3 {
            let (o, g) = (
                &out[r * cols..(r + 1) * cols],
                &grad[r * cols..(r + 1) * cols],
            );
            let total: f64 = g.iter().map(|&v| v as f64).sum();
            for j in 0..cols {
                let want = g[j] as f64 - (o[j] as f64).exp() * total;
                assert!(
                    (dx[r * cols + j] as f64 - want).abs() < 1e-5,
                    "{} vs {want}",
                    dx[r * cols + j]
                );
            }
        }
    }

    #[test]
    fn log_softmax_propagates_nan_and_handles_short_rows() {
        let out = log_softmax_rows(&[1.0, f32::NAN, 0.0], 3);
        assert!(out.iter().all(|v| v.is_nan()));
        let out = log_softmax_rows(&[0.0, 0.0, 5.0], 1);
        assert_eq!(out, vec![0.0, 0.0, 0.0]);
        let out = log_softmax_rows(&[2.0, 2.0], 2);
        assert!((out[0] + std::f32::consts::LN_2).abs() < 1e-7);
    }

    proptest! {
        #[test]
        fn slice_kernels_equal_the_scalar_function(xs in proptest::collection::vec(-20.0f32..20.0, 0..300),
                                                   g in -3.0f32..3.0) {
            let collected = gelu(&xs);
            let grad = vec![g; xs.len()];
            let grad_collected = gelu_backward(&xs, &grad);
            for (i, &x) in xs.iter().enumerate() {
                prop_assert_eq!(collected[i].to_bits(), gelu_scalar(x).to_bits());
                let want = g * gelu_derivative_scalar(x);
                prop_assert_eq!(grad_collected[i].to_bits(), want.to_bits());
            }
        }
    }

    #[test]
    fn f16_bytes_convert_exactly() {
        for (bits, want) in [
            (0x3c00u16, 1.0f32),
            (0xc000, -2.0),
            (0x7bff, 65504.0),
            (0x0001, 2f32.powi(-24)),
            (0x8001, -(2f32.powi(-24))),
            (0x03ff, 1023.0 * 2f32.powi(-24)),
            (0x0400, 2f32.powi(-14)),
            (0x3555, 0.333_251_95),
            (0x0000, 0.0),
            (0x7c00, f32::INFINITY),
            (0xfc00, f32::NEG_INFINITY),
        ] {
            assert_eq!(f16_to_f32(&bits.to_le_bytes()), want, "{bits:#06x}");
        }
        assert!(f16_to_f32(&0x7e00u16.to_le_bytes()).is_nan());
        assert!(f16_to_f32(&0x8000u16.to_le_bytes()).is_sign_negative());
    }

    #[test]
    fn block_row_dots_are_the_dots_of_the_dequantised_rows() {
        // blocks with finite scales (f16 0.01-ish and -0.5) and arbitrary quantised bytes
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut byte = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        };
        let (rows, cols) = (5, 64);
        for format in [BlockFormat::Q4_0, BlockFormat::Q4_1, BlockFormat::Q8_0] {
            let mut raw = Vec::new();
            for _ in 0..rows * cols / BlockFormat::VALUES {
                raw.extend(0x211eu16.to_le_bytes()); // d = 0.01001
                if format == BlockFormat::Q4_1 {
                    raw.extend(0xb800u16.to_le_bytes()); // m = -0.5
                }
                let q = if format == BlockFormat::Q8_0 { 32 } else { 16 };
                raw.extend((0..q).map(|_| byte()));
            }
            let mut w = vec![0.0f32; rows * cols];
            dequantize_blocks(format, &raw, &mut w);
            for n in [1, 3] {
                let x: Vec<f32> = (0..n * cols).map(|i| (i as f32 * 0.37).sin()).collect();
                let y = block_row_dots(format, &raw, cols, &x, n);
                assert_eq!(y.len(), rows * n);
                for r in 0..rows {
                    for i in 0..n {
                        let want: f64 = (0..cols)
                            .map(|c| f64::from(w[r * cols + c]) * f64::from(x[i * cols + c]))
                            .sum();
                        let got = f64::from(y[r * n + i]);
                        assert!(
                            (got - want).abs() < 1e-5 * (1.0 + want.abs()),
                            "{format:?} n={n} ({r}, {i}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
