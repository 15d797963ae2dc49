//! The ggml tensor types blade reads and writes, and their block codecs: ggml's reference
//! quantisers here, the dequantisation of the block types in `blade-kernels` (shared with the
//! products by quantised weights).

use blade_kernels::BlockFormat;
use half::{bf16, f16};

/// ggml tensor types this crate knows by name (the numbering of ggml's `ggml_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// Blocks of 32: `f16 d`, 16 bytes of 4-bit codes; `x = (q - 8) * d`.
    Q4_0,
    /// Blocks of 32: `f16 d`, `f16 m`, 16 bytes of 4-bit codes; `x = q * d + m`.
    Q4_1,
    /// Blocks of 32: `f16 d`, 32 signed bytes; `x = q * d`.
    Q8_0,
    /// bfloat16.
    BF16,
    /// Any other type (k-quants, i-quants, ...): readable metadata, not dequantised here.
    Other(u32),
}

impl GgmlType {
    /// The type of ggml's numeric code.
    pub fn from_code(code: u32) -> Self {
        match code {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            30 => Self::BF16,
            other => Self::Other(other),
        }
    }

    /// ggml's numeric code.
    pub fn code(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q8_0 => 8,
            Self::BF16 => 30,
            Self::Other(c) => c,
        }
    }

    /// The block format of a block-quantised type (Q4_0, Q4_1, Q8_0), whose kernels
    /// (dequantisation, products) live in `blade-kernels`.
    pub fn block_format(self) -> Option<BlockFormat> {
        match self {
            Self::Q4_0 => Some(BlockFormat::Q4_0),
            Self::Q4_1 => Some(BlockFormat::Q4_1),
            Self::Q8_0 => Some(BlockFormat::Q8_0),
            _ => None,
        }
    }

    /// `(elements per block, bytes per block)`, or `None` for an unsupported type.
    pub fn block(self) -> Option<(usize, usize)> {
        match self {
            Self::F32 => Some((1, 4)),
            Self::F16 | Self::BF16 => Some((1, 2)),
            Self::Q4_0 => Some((32, 18)),
            Self::Q4_1 => Some((32, 20)),
            Self::Q8_0 => Some((32, 34)),
            Self::Other(_) => None,
        }
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Other(c) => write!(f, "ggml type {c}"),
            t => write!(f, "{t:?}"),
        }
    }
}

/// Dequantises `n` values of type `ty` from `raw`; `None` for unsupported types or short input.
pub fn dequantize(ty: GgmlType, raw: &[u8], n: usize) -> Option<Vec<f32>> {
    let (per, bytes) = ty.block()?;
    if raw.len() < n.div_ceil(per) * bytes {
        return None;
    }
    let half = |b: &[u8]| f16::from_le_bytes([b[0], b[1]]).to_f32();
    let mut out = Vec::with_capacity(n.div_ceil(per) * per);
    match ty {
        GgmlType::F32 => out.extend(
            raw.chunks_exact(4)
                .take(n)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        GgmlType::F16 => out.extend(raw.chunks_exact(2).take(n).map(half)),
        GgmlType::BF16 => out.extend(
            raw.chunks_exact(2)
                .take(n)
                .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0 => {
            let blocks = n.div_ceil(per);
            let format = ty.block_format()?;
            out.resize(blocks * per, 0.0);
            blade_kernels::dequantize_blocks(format, &raw[..blocks * bytes], &mut out);
        }
        GgmlType::Other(_) => return None,
    }
    out.truncate(n);
    Some(out)
}

/// Quantises `values` (a multiple of 32 long for the block types) the way ggml's reference
/// quantisers do. Used by the writer, i.e. by tests and by anyone exporting a model.
pub fn quantize(ty: GgmlType, values: &[f32]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let h = |x: f32| f16::from_f32(x).to_le_bytes();
    match ty {
        GgmlType::F32 => values.iter().for_each(|v| out.extend(v.to_le_bytes())),
        GgmlType::F16 => values.iter().for_each(|&v| out.extend(h(v))),
        GgmlType::BF16 => values
            .iter()
            .for_each(|&v| out.extend(bf16::from_f32(v).to_le_bytes())),
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0 if !values.len().is_multiple_of(32) => {
            return None
        }
        GgmlType::Q4_0 => {
            for blk in values.chunks_exact(32) {
                // the value of largest magnitude, with its sign, maps to -8
                let max = blk
                    .iter()
                    .copied()
                    .fold(0f32, |m, v| if v.abs() > m.abs() { v } else { m });
                let d = max / -8.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend(h(d));
                let q = |v: f32| ((v * id + 8.5) as i32).clamp(0, 15) as u8;
                for j in 0..16 {
                    out.push(q(blk[j]) | (q(blk[j + 16]) << 4));
                }
            }
        }
        GgmlType::Q4_1 => {
            for blk in values.chunks_exact(32) {
                let min = blk.iter().copied().fold(f32::INFINITY, f32::min);
                let max = blk.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let d = (max - min) / 15.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend(h(d));
                out.extend(h(min));
                let q = |v: f32| (((v - min) * id + 0.5) as i32).clamp(0, 15) as u8;
                for j in 0..16 {
                    out.push(q(blk[j]) | (q(blk[j + 16]) << 4));
                }
            }
        }
        GgmlType::Q8_0 => {
            for blk in values.chunks_exact(32) {
                let amax = blk.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend(h(d));
                out.extend(blk.iter().map(|&v| (v * id).round() as i8 as u8));
            }
        }
        GgmlType::Other(_) => return None,
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::test_ramp as ramp;

    #[test]
    fn quantised_round_trips_within_half_a_step() {
        let x = ramp(128);
        for (ty, step) in [
            (GgmlType::F32, 0.0),
            (GgmlType::F16, 2e-3),
            (GgmlType::BF16, 2e-2),
            (GgmlType::Q8_0, 3.0 / 127.0),
            (GgmlType::Q4_1, 6.0 / 15.0),
            // Q4_0 is asymmetric (codes -8..7): the side opposite the largest value saturates
            (GgmlType::Q4_0, 2.0 * 3.0 / 8.0),
        ] {
            let raw = quantize(ty, &x).unwrap();
            assert_eq!(
                raw.len(),
                x.len().div_ceil(ty.block().unwrap().0) * ty.block().unwrap().1
            );
            let y = dequantize(ty, &raw, x.len()).unwrap();
            let err = x
                .iter()
                .zip(&y)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                err <= step * 0.5 + 1e-3,
                "{ty}: max error {err} > half step {step}"
            );
        }
    }

    #[test]
    fn hand_made_q4_0_and_q4_1_blocks() {
        // Q4_0: d = 0.5, codes 0..15 in the low nibbles, 15 - j in the high ones
        let mut blk = f16::from_f32(0.5).to_le_bytes().to_vec();
        blk.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let y = dequantize(GgmlType::Q4_0, &blk, 32).unwrap();
        assert_eq!(y[0], -4.0);
        assert_eq!(y[15], 3.5);
        assert_eq!(y[16], 3.5);
        assert_eq!(y[31], -4.0);
        // Q4_1: d = 2, m = -1
        let mut blk = f16::from_f32(2.0).to_le_bytes().to_vec();
        blk.extend(f16::from_f32(-1.0).to_le_bytes());
        blk.extend((0..16u8).map(|j| j | (3 << 4)));
        let y = dequantize(GgmlType::Q4_1, &blk, 32).unwrap();
        assert_eq!((y[0], y[5], y[20]), (-1.0, 9.0, 5.0));
        // Q8_0: d = 0.25, q = -128..
        let mut blk = f16::from_f32(0.25).to_le_bytes().to_vec();
        blk.extend((0..32i32).map(|j| (j * 8 - 128) as i8 as u8));
        let y = dequantize(GgmlType::Q8_0, &blk, 32).unwrap();
        assert_eq!((y[0], y[16], y[31]), (-32.0, 0.0, 30.0));
    }
}
