//! A Llama-architecture decoder in burn: RMSNorm, rotary embeddings, grouped-query attention,
//! SwiGLU, tied or separate output head, a KV cache, and optional LoRA adapters on every
//! projection.
//!
//! Conventions (shapes are row-major, batch first):
//!
//! - Linear weights are stored `[d_in, d_out]` and applied as `x @ W` (burn's layout); the
//!   loaders transpose the `[d_out, d_in]` matrices of GGUF and safetensors.
//! - Rotary embeddings rotate *adjacent* pairs `(x[2i], x[2i+1])` by `pos * theta^(-2i/d_head)`
//!   (burn's [`RotaryEncoding`], llama.cpp's "normal" mode). GGUF files of the `llama`
//!   architecture already store Q/K rows in that order (llama.cpp's converter permutes them);
//!   Hugging Face checkpoints and `qwen2` GGUF files use the "rotate halves" order, and the loaders
//!   permute their Q/K rows (and biases) once at load so that one attention code path serves all.
//! - Query head `h` reads key/value head `h / (n_heads / n_kv_heads)`.
//! - Batches of prompts of different lengths are *left*-padded; padded key positions are masked.
//!   Rotary attention depends only on relative positions, so the shift of a padded prompt does not
//!   change its real tokens' attention (up to float rounding).

use burn::module::Param;
use burn::nn::{RmsNorm, RmsNormConfig, RotaryEncoding, RotaryEncodingConfig};
use burn::prelude::*;
use burn::tensor::activation::{silu, softmax};
use burn::tensor::module::linear;
use serde::{Deserialize, Serialize};

use crate::qmatrix::QMatrix;

/// First parameter id of LoRA adapters (see [`Proj::with_lora`]).
pub const LORA_ID_BASE: u64 = 0x4c4f_5241_0000_0000;

/// Additive attention mask value for blocked positions (finite, so fully masked rows stay finite).
const BLOCKED: f32 = -1.0e9;

/// Hyperparameters of a Llama-architecture model, read from the weight file's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// Architecture name as the file states it (`llama`, `qwen2`, ...).
    pub arch: String,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Residual width.
    pub d_model: usize,
    /// Decoder blocks.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_heads`).
    pub n_kv_heads: usize,
    /// Hidden width of the SwiGLU MLP.
    pub d_ff: usize,
    /// Rotary base `theta`.
    pub rope_theta: f32,
    /// How the rotary frequencies are stretched for long contexts (Llama 3.1+, linear).
    #[serde(default)]
    pub rope_scaling: RopeScaling,
    /// RMSNorm epsilon.
    pub rms_eps: f64,
    /// Longest sequence the rotary table covers (capped by the caller to save memory).
    pub max_seq_len: usize,
    /// Output head tied to the token embedding.
    pub tie_embeddings: bool,
    /// Biases on the Q/K/V projections (Qwen2).
    pub qkv_bias: bool,
}

impl LlamaConfig {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// Checks the shapes fit together; the error says which field is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            (self.n_heads == 0, "n_heads is 0".to_string()),
            (
                self.n_heads > 0 && !self.d_model.is_multiple_of(self.n_heads),
                format!(
                    "d_model {} is not a multiple of n_heads {}",
                    self.d_model, self.n_heads
                ),
            ),
            (
                self.n_kv_heads == 0 || !self.n_heads.is_multiple_of(self.n_kv_heads.max(1)),
                format!(
                    "n_heads {} is not a multiple of n_kv_heads {}",
                    self.n_heads, self.n_kv_heads
                ),
            ),
            (
                self.n_heads > 0 && !(self.d_model / self.n_heads).is_multiple_of(2),
                "the head width must be even for rotary embeddings".to_string(),
            ),
            (self.vocab_size == 0, "vocab_size is 0".to_string()),
        ];
        if let Some((_, why)) = checks.iter().find(|(bad, _)| *bad) {
            return Err(why.clone());
        }
        self.rope_scaling.validate(self.head_dim())
    }
}

/// How the rotary frequencies `theta^(-2i/d_head)` are scaled, as Hugging Face's `rope_scaling`
/// (`rope_parameters` in transformers 5) and llama.cpp's GGUF keys state it. Each variant divides
/// frequency `i` by a divisor `f_i >= 0` (see [`RopeScaling::divisors`]); llama.cpp stores those
/// divisors as the tensor `rope_freqs.weight` (its "frequency factors").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RopeScaling {
    /// Plain rotary embeddings.
    #[default]
    None,
    /// Every frequency divided by `factor` (Hugging Face `linear`, GGUF `rope.scaling.type =
    /// linear`).
    Linear {
        /// The divisor.
        factor: f32,
    },
    /// Llama 3.1+ (`rope_type: llama3`): frequencies whose wavelength `2 pi / f` is longer than
    /// `original_max_position_embeddings / low_freq_factor` are divided by `factor`, those shorter
    /// than `original_max_position_embeddings / high_freq_factor` are kept, and the band between
    /// is interpolated: with `s = (original / wavelength - low) / (high - low)`, the frequency is
    /// multiplied by `(1 - s) / factor + s`.
    Llama3 {
        /// Divisor of the low frequencies (32 for Llama 3.2, 8 for Llama 3.1).
        factor: f32,
        /// Lower end of the interpolated band (1).
        low_freq_factor: f32,
        /// Upper end of the interpolated band (4).
        high_freq_factor: f32,
        /// Context length of the unscaled pre-training (8192).
        original_max_position_embeddings: usize,
    },
    /// Per-frequency divisors as read from a GGUF `rope_freqs.weight` that blade did not
    /// recognise as Llama 3 parameters.
    Factors {
        /// One divisor per frequency, `d_head / 2` of them.
        factors: Vec<f32>,
    },
}

impl RopeScaling {
    /// The unscaled inverse frequencies `theta^(-2i/d_head)`, `i < d_head / 2`, in `f64`.
    pub fn base_frequencies(head_dim: usize, theta: f32) -> Vec<f64> {
        (0..head_dim / 2)
            .map(|i| (theta as f64).powf(-((2 * i) as f64) / head_dim as f64))
            .collect()
    }

    /// The divisor of each of the `head_dim / 2` frequencies; `None` for plain rotary.
    pub fn divisors(&self, head_dim: usize, theta: f32) -> Option<Vec<f32>> {
        let n = head_dim / 2;
        match self {
            Self::None => None,
            Self::Linear { factor } => Some(vec![*factor; n]),
            Self::Factors { factors } => Some(factors.clone()),
            Self::Llama3 {
                factor,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: orig,
            } => {
                let (factor, low, high, orig) =
                    (*factor as f64, *low as f64, *high as f64, *orig as f64);
                let (low_wavelen, high_wavelen) = (orig / low, orig / high);
                Some(
                    Self::base_frequencies(head_dim, theta)
                        .into_iter()
                        .map(|f| {
                            let wavelen = 2.0 * std::f64::consts::PI / f;
                            if wavelen < high_wavelen {
                                1.0
                            } else if wavelen > low_wavelen {
                                factor as f32
                            } else {
                                let s = (orig / wavelen - low) / (high - low);
                                (1.0 / ((1.0 - s) / factor + s)) as f32
                            }
                        })
                        .collect(),
                )
            }
        }
    }

    /// The scaling that per-frequency divisors read from a GGUF file stand for: the Llama 3
    /// parameters when the divisors are theirs for a known set (the released Llama 3.1/3.2/3.3
    /// ones, or any `factor` with the standard band 1..4 and an original context of 8192), else
    /// the divisors themselves. All ones is no scaling.
    pub fn from_factors(factors: Vec<f32>, head_dim: usize, theta: f32) -> Self {
        if factors.iter().all(|&f| f == 1.0) {
            return Self::None;
        }
        let factor = factors.iter().fold(0f32, |m, &f| m.max(f));
        for orig in [8192, 4096, 16384, 32768, 2048] {
            let cand = Self::Llama3 {
                factor,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: orig,
            };
            if let Some(d) = cand.divisors(head_dim, theta) {
                let close = d.len() == factors.len()
                    && d.iter()
                        .zip(&factors)
                        .all(|(a, b)| (a - b).abs() <= 1e-4 * a.abs());
                if close {
                    return cand;
                }
            }
        }
        Self::Factors { factors }
    }

    /// Checks the parameters: positive finite factors, a band with `low < high`, one divisor per
    /// frequency.
    pub fn validate(&self, head_dim: usize) -> Result<(), String> {
        let pos = |x: f32| x.is_finite() && x > 0.0;
        match self {
            Self::None => Ok(()),
            Self::Linear { factor } if !pos(*factor) => Err(format!(
                "rope scaling factor {factor}: expected a positive number"
            )),
            Self::Linear { .. } => Ok(()),
            Self::Llama3 {
                factor,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: orig,
            } => {
                if !(pos(*factor) && pos(*low) && pos(*high)) {
                    Err(format!(
                        "llama3 rope scaling: factor {factor}, low_freq_factor {low} and \
                         high_freq_factor {high} must be positive numbers"
                    ))
                } else if low >= high {
                    Err(format!(
                        "llama3 rope scaling: low_freq_factor {low} must be below \
                         high_freq_factor {high}"
                    ))
                } else if *orig == 0 {
                    Err("llama3 rope scaling: original_max_position_embeddings is 0".into())
                } else {
                    Ok(())
                }
            }
            Self::Factors { factors } => {
                if factors.len() != head_dim / 2 {
                    Err(format!(
                        "rope_freqs.weight has {} values; the head width {head_dim} needs {}",
                        factors.len(),
                        head_dim / 2
                    ))
                } else if let Some(f) = factors.iter().find(|f| !pos(**f)) {
                    Err(format!(
                        "rope_freqs.weight holds {f}; expected positive numbers"
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// LoRA settings: `W x + (alpha / rank) * B A x` on the chosen projections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Adapter rank `r`.
    pub rank: usize,
    /// Scale numerator `alpha`.
    pub alpha: f32,
    /// Projections that get adapters: any of `q`, `k`, `v`, `o`, `gate`, `up`, `down`.
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            targets: ["q", "k", "v", "o", "gate", "up", "down"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// A low-rank adapter: `A` is `[d_in, r]` (small random), `B` is `[r, d_out]` (zero), so a fresh
/// adapter leaves the model unchanged.
#[derive(Module, Debug)]
pub struct Lora {
    /// Down projection `[d_in, r]`.
    pub a: Param<Tensor<2>>,
    /// Up projection `[r, d_out]`.
    pub b: Param<Tensor<2>>,
    /// `alpha / r`.
    pub scale: f32,
}

/// A projection `x @ W (+ bias)` with an optional LoRA adapter.
#[derive(Module, Debug)]
pub struct Proj {
    /// `[d_in, d_out]`.
    pub weight: Param<Tensor<2>>,
    /// `[d_out]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// The adapter, when this projection is a LoRA target.
    pub lora: Option<Lora>,
    /// The weight in its GGUF blocks (`[d_out, d_in]`), for inference; `weight` is then an empty
    /// placeholder ([`Llama::quantised`]).
    #[module(skip)]
    pub quant: Option<QMatrix>,
}

impl Proj {
    /// A projection from a `[d_in, d_out]` weight.
    pub fn new(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Self {
        Self {
            weight: Param::from_tensor(weight),
            bias: bias.map(Param::from_tensor),
            lora: None,
            quant: None,
        }
    }

    /// A projection whose weight stays in its quantised blocks `q` (`[d_out, d_in]`).
    pub fn quantised(q: QMatrix, bias: Option<Tensor<1>>, device: &Device) -> Self {
        Self {
            quant: Some(q),
            ..Self::new(Tensor::empty([0, 0], device), bias)
        }
    }

    /// `[..., d_in] -> [..., d_out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let base = match &self.quant {
            None => linear(
                x.clone(),
                self.weight.val(),
                self.bias.as_ref().map(Param::val),
            ),
            Some(q) => {
                let y = quant_times_rows(q, x.clone());
                match &self.bias {
                    Some(b) => y + b.val().unsqueeze(),
                    None => y,
                }
            }
        };
        match &self.lora {
            None => base,
            Some(l) => {
                let low = linear(x, l.a.val(), None);
                base + linear(low, l.b.val(), None).mul_scalar(l.scale)
            }
        }
    }

    /// Adds an adapter of rank `r` and freezes the base weight. On a quantised projection the
    /// adapter is frozen too: the quantised product records no gradient, so such a model is for
    /// inference only (a run's trained adapters are loaded into it, e.g. by `blade recommend`).
    pub fn with_lora(mut self, rank: usize, alpha: f32, seed: u64, device: &Device) -> Self {
        let trainable = self.quant.is_none();
        // a quantised weight is `[d_out, d_in]` blocks beside an empty placeholder
        let [d_in, d_out] = match &self.quant {
            Some(q) => [q.cols(), q.rows()],
            None => self.weight.dims(),
        };
        // Kaiming-uniform-like A from a deterministic stream, B = 0 (standard LoRA init)
        let bound = (1.0 / d_in as f64).sqrt() as f32;
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let a: Vec<f32> = (0..d_in * rank)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 11) as f64 / (1u64 << 53) as f64) as f32 * 2.0 * bound - bound
            })
            .collect();
        let a = Tensor::<2>::from_data(TensorData::new(a, [d_in, rank]), device);
        let b = Tensor::<2>::zeros([rank, d_out], device);
        self.weight = self.weight.set_require_grad(false);
        self.bias = self.bias.map(|b| b.set_require_grad(false));
        // deterministic parameter ids: an adapter reloaded from disk keeps the id its optimiser
        // state was saved under, so a resumed run finds its Adam moments
        let id = |k: u64| burn::module::ParamId::from(LORA_ID_BASE + 2 * seed + k);
        self.lora = Some(Lora {
            a: Param::initialized(id(0), a).set_require_grad(trainable),
            b: Param::initialized(id(1), b).set_require_grad(trainable),
            scale: alpha / rank.max(1) as f32,
        });
        self
    }
}

/// Keys and values of the positions seen so far, one entry per layer: `[batch, n_kv_heads, t,
/// d_head]`, plus the key padding mask `[batch, t]` (true = padded).
#[derive(Debug, Clone)]
pub struct KvCache {
    /// Per layer `(keys, values)`.
    pub layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    /// Which cached positions are padding (1) or real (0). Kept as integers: boolean tensors
    /// that went through `select` / `cat` can change storage type on some backends.
    pub pad: Option<Tensor<2, Int>>,
    /// Positions cached so far.
    pub len: usize,
}

impl KvCache {
    /// An empty cache for `n_layers`.
    pub fn new(n_layers: usize) -> Self {
        Self {
            layers: vec![None; n_layers],
            pad: None,
            len: 0,
        }
    }

    /// Repeats every batch row `times` times in place (row `i` becomes rows `i*times..`): one
    /// prompt prefill then serves `times` sampled continuations.
    pub fn repeat_rows(&self, times: usize) -> Self {
        let rep4 = |t: &Tensor<4>| {
            let [b, h, s, d] = t.dims();
            t.clone()
                .unsqueeze_dim::<5>(1)
                .expand([b, times, h, s, d])
                .reshape([b * times, h, s, d])
        };
        Self {
            layers: self
                .layers
                .iter()
                .map(|l| l.as_ref().map(|(k, v)| (rep4(k), rep4(v))))
                .collect(),
            pad: self.pad.as_ref().map(|p| {
                let [b, s] = p.dims();
                p.clone()
                    .unsqueeze_dim::<3>(1)
                    .expand([b, times, s])
                    .reshape([b * times, s])
            }),
            len: self.len,
        }
    }

    /// Keeps only the batch rows `rows` (e.g. beams that survive).
    pub fn select_rows(&self, rows: &[usize]) -> Self {
        let device = self
            .pad
            .as_ref()
            .map(|p| p.device())
            .or_else(|| self.layers.iter().flatten().next().map(|(k, _)| k.device()));
        let Some(device) = device else {
            return self.clone();
        };
        let idx = Tensor::<1, Int>::from_data(
            TensorData::new(
                rows.iter().map(|&r| r as i64).collect::<Vec<_>>(),
                [rows.len()],
            ),
            &device,
        );
        Self {
            layers: self
                .layers
                .iter()
                .map(|l| {
                    l.as_ref().map(|(k, v)| {
                        (
                            k.clone().select(0, idx.clone()),
                            v.clone().select(0, idx.clone()),
                        )
                    })
                })
                .collect(),
            pad: self.pad.as_ref().map(|p| p.clone().select(0, idx.clone())),
            len: self.len,
        }
    }
}

/// Grouped-query self-attention.
#[derive(Module, Debug)]
pub struct Attention {
    /// Query projection `[d, n_heads * d_head]`.
    pub q: Proj,
    /// Key projection `[d, n_kv_heads * d_head]`.
    pub k: Proj,
    /// Value projection `[d, n_kv_heads * d_head]`.
    pub v: Proj,
    /// Output projection `[n_heads * d_head, d]`.
    pub o: Proj,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
}

impl Attention {
    /// `x`: `[b, s, d]`; `mask`: additive `[b, 1, s, t]` over all `t` key positions (cached and
    /// new). Returns `[b, s, d]` and this layer's updated `(keys, values)`.
    fn forward(
        &self,
        x: Tensor<3>,
        rope: &RotaryEncoding,
        start: usize,
        past: Option<(Tensor<4>, Tensor<4>)>,
        mask: Tensor<4>,
    ) -> (Tensor<3>, (Tensor<4>, Tensor<4>)) {
        let [b, s, d] = x.dims();
        let dh = d / self.n_heads;
        let heads = |t: Tensor<3>, n: usize| t.reshape([b, s, n, dh]).swap_dims(1, 2);
        let q = rope.apply(heads(self.q.forward(x.clone()), self.n_heads), start);
        let k = rope.apply(heads(self.k.forward(x.clone()), self.n_kv_heads), start);
        let v = heads(self.v.forward(x), self.n_kv_heads);
        let (k, v) = match past {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
            None => (k, v),
        };
        let t = k.dims()[2];
        let rep = self.n_heads / self.n_kv_heads;
        let expand = |kv: Tensor<4>| {
            if rep == 1 {
                kv
            } else {
                kv.unsqueeze_dim::<5>(2)
                    .expand([b, self.n_kv_heads, rep, t, dh])
                    .reshape([b, self.n_heads, t, dh])
            }
        };
        let scores = q
            .matmul(expand(k.clone()).swap_dims(2, 3))
            .div_scalar((dh as f32).sqrt())
            + mask;
        let att = softmax(scores, 3).matmul(expand(v.clone()));
        let out = att.swap_dims(1, 2).reshape([b, s, d]);
        (self.o.forward(out), (k, v))
    }
}

/// SwiGLU feed-forward: `down(silu(gate(x)) * up(x))`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// `[d, d_ff]`.
    pub gate: Proj,
    /// `[d, d_ff]`.
    pub up: Proj,
    /// `[d_ff, d]`.
    pub down: Proj,
}

/// One pre-norm decoder block.
#[derive(Module, Debug)]
pub struct Block {
    /// Norm before attention.
    pub attn_norm: RmsNorm,
    /// Self-attention.
    pub attn: Attention,
    /// Norm before the MLP.
    pub ffn_norm: RmsNorm,
    /// The MLP.
    pub mlp: Mlp,
}

impl Block {
    /// The block's seven projections with their LoRA target names.
    pub fn projections(&self) -> [(&'static str, &Proj); 7] {
        [
            ("q", &self.attn.q),
            ("k", &self.attn.k),
            ("v", &self.attn.v),
            ("o", &self.attn.o),
            ("gate", &self.mlp.gate),
            ("up", &self.mlp.up),
            ("down", &self.mlp.down),
        ]
    }
}

/// The decoder.
#[derive(Module, Debug)]
pub struct Llama {
    /// Token embedding `[vocab, d]`.
    pub embed: Param<Tensor<2>>,
    /// Decoder blocks.
    pub blocks: Vec<Block>,
    /// Final norm.
    pub norm: RmsNorm,
    /// Separate output head `[d, vocab]`; `None` = tied to the embedding.
    pub head: Option<Proj>,
    /// Rotary table.
    pub rope: RotaryEncoding,
    /// The embedding in its GGUF blocks (`[vocab, d]`), for inference; `embed` is then an empty
    /// placeholder ([`Llama::quantised`]).
    #[module(skip)]
    pub quant_embed: Option<QMatrix>,
}

/// A float tensor from host values.
pub fn host_tensor<const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Input rows up to which a quantised projection multiplies on its blocks directly (greedy
/// decoding: 1; batched sampling: one row per sequence); above it, the weight is dequantised
/// in tiles of [`QUANT_TILE_ROWS`] rows for burn's matrix product, which is faster on many rows
/// and holds one tile at a time.
const QUANT_DIRECT_ROWS: usize = 32;
/// Weight rows per dequantised tile (the tied head of SmolLM2: 6 tiles of 19 MB).
const QUANT_TILE_ROWS: usize = 8192;

/// `x` (`[..., d_in]`) times the transpose of the quantised `q` (`[d_out, d_in]`).
fn quant_times_rows<const D: usize>(q: &QMatrix, x: Tensor<D>) -> Tensor<D> {
    let dims = x.dims();
    let n = dims[..D - 1].iter().product::<usize>();
    let device = x.device();
    let mut out = dims;
    out[D - 1] = q.rows();
    if n <= QUANT_DIRECT_ROWS {
        let xv = x
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("float activations convert to f32");
        return host_tensor(q.times_rows(&xv, n), out, &device);
    }
    let mut parts: Vec<Tensor<D>> = (0..q.rows())
        .step_by(QUANT_TILE_ROWS)
        .map(|r0| {
            let r1 = (r0 + QUANT_TILE_ROWS).min(q.rows());
            let w = host_tensor(q.range_f32(r0..r1), [r1 - r0, q.cols()], &device);
            times_rows(x.clone(), w)
        })
        .collect();
    if parts.len() == 1 {
        parts.pop().expect("one tile")
    } else {
        Tensor::cat(parts, D - 1)
    }
}

/// Rows `ids` (`[n]`) of the quantised `q`, dequantised: `[n, cols]`.
fn quant_rows(q: &QMatrix, ids: Tensor<1, Int>) -> Tensor<2> {
    let device = ids.device();
    let ids: Vec<usize> = ids
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("token ids convert to i64")
        .into_iter()
        .map(|t| t as usize)
        .collect();
    host_tensor(q.rows_f32(&ids), [ids.len(), q.cols()], &device)
}

/// `hidden` (`[..., d]`) times the transpose of `table` (`[n, d]`): `[..., n]`, column `j` the
/// dot product with row `j`, as one 2-D product over the flattened rows (no copy of the
/// transposed table).
fn times_rows<const D: usize>(hidden: Tensor<D>, table: Tensor<2>) -> Tensor<D> {
    let dims = hidden.dims();
    let rows = dims[..D - 1].iter().product::<usize>();
    let [n, d] = table.dims();
    let mut out = dims;
    out[D - 1] = n;
    hidden
        .reshape([rows, d])
        .matmul(table.transpose())
        .reshape(out)
}

/// Builds an RMSNorm with the given weight.
pub fn rms_norm(weight: Vec<f32>, eps: f64, device: &Device) -> RmsNorm {
    let d = weight.len();
    let mut n = RmsNormConfig::new(d).with_epsilon(eps).init(device);
    n.gamma = Param::from_tensor(host_tensor(weight, [d], device));
    n
}

/// The rotary table for `cfg`, its frequencies divided by [`RopeScaling::divisors`].
pub fn rope_for(cfg: &LlamaConfig, device: &Device) -> RotaryEncoding {
    let rope =
        RotaryEncodingConfig::new(cfg.max_seq_len, cfg.head_dim()).with_theta(cfg.rope_theta);
    match cfg.rope_scaling.divisors(cfg.head_dim(), cfg.rope_theta) {
        None => rope.init(device),
        Some(d) => {
            let n = d.len();
            let div = host_tensor(d, [n], device);
            rope.init_with_frequency_scaling(|f| f.div(div.clone()), device)
        }
    }
}

impl Llama {
    /// Width of the residual stream.
    pub fn d_model(&self) -> usize {
        match &self.quant_embed {
            Some(q) => q.cols(),
            None => self.embed.dims()[1],
        }
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        match &self.quant_embed {
            Some(q) => q.rows(),
            None => self.embed.dims()[0],
        }
    }

    /// Whether any weight is held in quantised blocks (an inference-only model).
    pub fn quantised(&self) -> bool {
        self.quant_embed.is_some()
            || self.head.as_ref().is_some_and(|h| h.quant.is_some())
            || self
                .blocks
                .iter()
                .any(|b| b.projections().iter().any(|(_, p)| p.quant.is_some()))
    }

    /// The embedding rows of `ids` (`[n]`): `[n, d]`.
    fn embed_rows(&self, ids: Tensor<1, Int>) -> Tensor<2> {
        match &self.quant_embed {
            None => self.embed.val().select(0, ids),
            Some(q) => quant_rows(q, ids),
        }
    }

    /// Runs `tokens` (`[b, s]`) after the `cache`d positions and returns the final hidden states
    /// `[b, s, d]`; the cache grows by `s`. `pad` (`[b, s]`, true = padding) masks padded keys.
    pub fn forward_hidden(
        &self,
        tokens: Tensor<2, Int>,
        pad: Option<Tensor<2, Bool>>,
        cache: &mut KvCache,
    ) -> Tensor<3> {
        let [b, s] = tokens.dims();
        let device = tokens.device();
        let start = cache.len;
        let d = self.d_model();
        let mut x = self.embed_rows(tokens.reshape([b * s])).reshape([b, s, d]);
        // key padding over all positions
        let new_pad = match pad {
            Some(p) => p.int(),
            None => Tensor::<2, Int>::zeros([b, s], &device),
        };
        let key_pad = match cache.pad.take() {
            Some(p) => Tensor::cat(vec![p, new_pad], 1),
            None => new_pad,
        };
        let t = start + s;
        // causal: query i (absolute start + i) sees keys j <= start + i
        let qi = Tensor::<1, Int>::arange(start as i64..t as i64, &device).reshape([s, 1]);
        let kj = Tensor::<1, Int>::arange(0..t as i64, &device).reshape([1, t]);
        let future = kj.greater(qi); // [s, t]
        let blocked = future.unsqueeze_dim::<3>(0).expand([b, s, t]).bool_or(
            key_pad
                .clone()
                .equal_elem(1)
                .unsqueeze_dim::<3>(1)
                .expand([b, s, t]),
        );
        let mask = Tensor::<3>::zeros([b, s, t], &device)
            .mask_fill(blocked, BLOCKED)
            .unsqueeze_dim::<4>(1);
        for (i, blk) in self.blocks.iter().enumerate() {
            let h = blk.attn_norm.forward(x.clone());
            let past = cache.layers[i].take();
            let (a, kv) = blk.attn.forward(h, &self.rope, start, past, mask.clone());
            cache.layers[i] = Some(kv);
            x = x + a;
            let h = blk.ffn_norm.forward(x.clone());
            let m = blk
                .mlp
                .down
                .forward(silu(blk.mlp.gate.forward(h.clone())) * blk.mlp.up.forward(h));
            x = x + m;
        }
        cache.pad = Some(key_pad);
        cache.len = t;
        self.norm.forward(x)
    }

    /// Output logits of hidden states `[..., d] -> [..., vocab]`.
    pub fn logits<const D: usize>(&self, hidden: Tensor<D>) -> Tensor<D> {
        match &self.head {
            Some(h) => h.forward(hidden),
            // tied head, not through burn's `linear`: that reshapes its weight to the input's
            // rank, and reshaping this transposed view copies the whole `[vocab, d]` table
            // (113 MB for SmolLM2) at every call: 77% of greedy generation's time before this
            None => match &self.quant_embed {
                Some(q) => quant_times_rows(q, hidden),
                None => times_rows(hidden, self.embed.val()),
            },
        }
    }

    /// Logits of hidden states `[b, s, d]` at the vocabulary entries `tokens` only:
    /// `[b, s, tokens.len()]`, column `j` the logit of token `tokens[j]`. One
    /// `[b * s, d] x [d, tokens.len()]` product instead of the full `[b, s, vocab]` one (the
    /// trie's allowed tokens are a few hundred of the vocabulary), so neither the forward pass
    /// nor the gradient holds vocabulary-wide logits.
    pub fn logits_for(&self, hidden: Tensor<3>, tokens: &[u32]) -> Tensor<3> {
        let ids = Tensor::<1, Int>::from_data(
            TensorData::new(
                tokens.iter().map(|&t| i64::from(t)).collect::<Vec<_>>(),
                [tokens.len()],
            ),
            &hidden.device(),
        );
        let table = match &self.head {
            // a separate head without an adapter: its columns are the rows we need
            Some(h) if h.lora.is_none() && h.bias.is_none() => match &h.quant {
                Some(q) => quant_rows(q, ids),
                None => h.weight.val().transpose().select(0, ids),
            },
            // general case (bias or adapter): the full product, then the columns
            Some(h) => return h.forward(hidden).select(2, ids),
            None => self.embed_rows(ids),
        };
        times_rows(hidden, table) // table rows: [tokens, d]
    }

    /// Logits of every position of `tokens` (`[b, s]`) after the cache: `[b, s, vocab]`.
    pub fn forward(
        &self,
        tokens: Tensor<2, Int>,
        pad: Option<Tensor<2, Bool>>,
        cache: &mut KvCache,
    ) -> Tensor<3> {
        let h = self.forward_hidden(tokens, pad, cache);
        self.logits(h)
    }

    /// Adds LoRA adapters to the configured projections and freezes everything else (the
    /// adapters too when the model is [`quantised`](Self::quantised): inference only).
    pub fn with_lora(mut self, lora: &LoraConfig, device: &Device) -> Self {
        let want = |name: &str| lora.targets.iter().any(|t| t == name);
        self.embed = self.embed.set_require_grad(false);
        let freeze_norm = |mut n: RmsNorm| {
            n.gamma = n.gamma.set_require_grad(false);
            n
        };
        self.norm = freeze_norm(self.norm);
        self.head = self.head.map(|mut h| {
            h.weight = h.weight.set_require_grad(false);
            h
        });
        let mut seed = 0u64;
        let mut adapt = |p: Proj, name: &str| {
            seed += 1;
            if want(name) {
                p.with_lora(lora.rank, lora.alpha, seed, device)
            } else {
                let mut p = p;
                p.weight = p.weight.set_require_grad(false);
                p.bias = p.bias.map(|b| b.set_require_grad(false));
                p
            }
        };
        self.blocks = self
            .blocks
            .into_iter()
            .map(|b| Block {
                attn_norm: freeze_norm(b.attn_norm),
                ffn_norm: freeze_norm(b.ffn_norm),
                attn: Attention {
                    q: adapt(b.attn.q, "q"),
                    k: adapt(b.attn.k, "k"),
                    v: adapt(b.attn.v, "v"),
                    o: adapt(b.attn.o, "o"),
                    n_heads: b.attn.n_heads,
                    n_kv_heads: b.attn.n_kv_heads,
                },
                mlp: Mlp {
                    gate: adapt(b.mlp.gate, "gate"),
                    up: adapt(b.mlp.up, "up"),
                    down: adapt(b.mlp.down, "down"),
                },
            })
            .collect();
        self
    }
}
