//! Loading a [`Llama`] from GGUF or from Hugging Face safetensors + `config.json`.
//!
//! Both sources are read through one canonical naming (GGUF's: `token_embd.weight`,
//! `blk.N.attn_q.weight`, ...); Hugging Face names (Llama, SmolLM and Qwen2 use the same ones) are
//! mapped onto it. Matrices arrive row-major `[d_out, d_in]` and are transposed to burn's
//! `[d_in, d_out]`. Q/K rows in "rotate halves" order (Hugging Face files, `qwen2` GGUF files) are
//! permuted to adjacent-pair order, see [`crate::model`].

use std::path::Path;

use burn::prelude::*;

use crate::error::{ferr, LoadError};
use crate::gguf::GgufFile;
use crate::model::{
    host_tensor, rms_norm, rope_for, Attention, Block, Llama, LlamaConfig, Mlp, Proj, RopeScaling,
};
use crate::qmatrix::QMatrix;
use crate::safetensors::{HostTensor, SafetensorsModel};
use crate::tokenizer::{PreTokenizer, Tokenizer};

/// Where weights come from, in canonical (GGUF) names.
pub trait WeightSource {
    /// The file, for error messages.
    fn path(&self) -> &Path;
    /// The model's hyperparameters.
    fn config(&self) -> Result<LlamaConfig, LoadError>;
    /// Tensor `name` as `(row-major shape, values)`, or `None` if the file lacks it.
    fn tensor(&self, name: &str) -> Result<Option<HostTensor>, LoadError>;
    /// Whether Q/K rows are in "rotate halves" order and need permuting.
    fn halves_rope(&self) -> bool;
    /// Tensor `name` in its quantised blocks, when it is a 2-D weight stored in a block type
    /// [`QMatrix`] multiplies by (GGUF Q4_0, Q4_1, Q8_0); `None` otherwise.
    fn quantised(&self, _name: &str) -> Result<Option<QMatrix>, LoadError> {
        Ok(None)
    }
}

/// Architectures whose GGUF files keep Hugging Face's "rotate halves" order (llama.cpp's NEOX
/// rope type).
pub(crate) const NEOX_ARCHS: &[&str] = &[
    "qwen2", "qwen3", "phi3", "gemma", "gemma2", "stablelm", "olmo2",
];

impl GgufFile {
    /// The rotary scaling a GGUF file states: `{arch}.rope.scaling.type` (`none` or `linear`,
    /// with `{arch}.rope.scaling.factor`, or the older `{arch}.rope.scale_linear`) and the
    /// per-frequency divisors of a `rope_freqs.weight` tensor (what llama.cpp's converter writes
    /// for Llama 3.1+). Scalings blade does not compute (YaRN, LongRoPE, ...) are refused by
    /// name, and so is a rotary width (`{arch}.rope.dimension_count`) other than the head's.
    fn rope_scaling(&self, cfg: &LlamaConfig) -> Result<RopeScaling, LoadError> {
        let path = GgufFile::path(self);
        let key = |s: &str| format!("{}.{s}", cfg.arch);
        let dh = cfg.head_dim();
        if let Some(n) = self
            .get(&key("rope.dimension_count"))
            .and_then(|v| v.as_u64())
        {
            if n != dh as u64 {
                return Err(ferr(
                    path,
                    format!(
                        "`{}` is {n} but the heads are {dh} wide: blade rotates whole heads \
                         (partial rotary embeddings are not supported)",
                        key("rope.dimension_count")
                    ),
                ));
            }
        }
        let kind = match self.get(&key("rope.scaling.type")) {
            None => None,
            Some(v) => Some(v.as_str().ok_or_else(|| {
                ferr(
                    path,
                    format!("`{}` is not a string", key("rope.scaling.type")),
                )
            })?),
        };
        let factor_key = key("rope.scaling.factor");
        let linear = match kind {
            None | Some("none") => self
                .get(&key("rope.scale_linear"))
                .and_then(|v| v.as_f64())
                .filter(|&f| f != 1.0),
            Some("linear") => Some(self.get(&factor_key).and_then(|v| v.as_f64()).ok_or_else(
                || ferr(path, format!("linear rope scaling without `{factor_key}`")),
            )?),
            Some(other) => {
                return Err(ferr(
                    path,
                    format!(
                        "`{}` is `{other}`: blade computes plain, linear and Llama-3 \
                         (`rope_freqs.weight`) rotary scaling only",
                        key("rope.scaling.type")
                    ),
                ))
            }
        };
        let factors = match self.tensor_info("rope_freqs.weight") {
            None => None,
            Some(_) => Some(self.tensor_f32("rope_freqs.weight")?.1),
        };
        let scaling = match (linear, factors) {
            (None, None) => RopeScaling::None,
            (Some(f), None) => RopeScaling::Linear { factor: f as f32 },
            (None, Some(f)) => RopeScaling::from_factors(f, dh, cfg.rope_theta),
            (Some(_), Some(_)) => {
                return Err(ferr(
                    path,
                    "the file has both linear rope scaling and `rope_freqs.weight`; blade \
                     applies one or the other",
                ))
            }
        };
        scaling.validate(dh).map_err(|w| ferr(path, w))?;
        Ok(scaling)
    }
}

impl WeightSource for GgufFile {
    fn path(&self) -> &Path {
        GgufFile::path(self)
    }

    fn config(&self) -> Result<LlamaConfig, LoadError> {
        let arch = self.get_str("general.architecture")?.to_string();
        let k = |s: &str| format!("{arch}.{s}");
        let n_heads = self.get_u64(&k("attention.head_count"))? as usize;
        let vocab_size = match self.get(&k("vocab_size")).and_then(|v| v.as_u64()) {
            Some(v) => v as usize,
            None => match self.tensor_info("token_embd.weight") {
                Some(t) => t.shape()[0],
                None => self.get_strings("tokenizer.ggml.tokens")?.len(),
            },
        };
        let n_layers = self.get_u64(&k("block_count"))?;
        check_layers(
            GgufFile::path(self),
            &k("block_count"),
            n_layers,
            self.tensors.len(),
        )?;
        let mut cfg = LlamaConfig {
            vocab_size,
            d_model: self.get_u64(&k("embedding_length"))? as usize,
            n_layers: n_layers as usize,
            n_heads,
            n_kv_heads: self
                .get(&k("attention.head_count_kv"))
                .and_then(|v| v.as_u64())
                .map_or(n_heads, |v| v as usize),
            d_ff: self.get_u64(&k("feed_forward_length"))? as usize,
            rope_theta: self
                .get(&k("rope.freq_base"))
                .and_then(|v| v.as_f64())
                .unwrap_or(10_000.0) as f32,
            rms_eps: self
                .get(&k("attention.layer_norm_rms_epsilon"))
                .and_then(|v| v.as_f64())
                .unwrap_or(1e-5),
            max_seq_len: self
                .get(&k("context_length"))
                .and_then(|v| v.as_u64())
                .unwrap_or(2048) as usize,
            tie_embeddings: self.tensor_info("output.weight").is_none(),
            qkv_bias: self.tensor_info("blk.0.attn_q.bias").is_some(),
            // read below, once the head width is known to be sound
            rope_scaling: RopeScaling::None,
            arch,
        };
        let key = |s: &str| format!("{}.{s}", cfg.arch);
        check_rope_and_eps(
            GgufFile::path(self),
            (&key("rope.freq_base"), cfg.rope_theta),
            (&key("attention.layer_norm_rms_epsilon"), cfg.rms_eps),
        )?;
        check_positive(
            GgufFile::path(self),
            &[
                (&key("embedding_length"), cfg.d_model),
                (&key("feed_forward_length"), cfg.d_ff),
                (&key("context_length"), cfg.max_seq_len),
            ],
        )?;
        cfg.validate().map_err(|w| ferr(GgufFile::path(self), w))?;
        cfg.rope_scaling = self.rope_scaling(&cfg)?;
        Ok(cfg)
    }

    fn tensor(&self, name: &str) -> Result<Option<HostTensor>, LoadError> {
        if self.tensor_info(name).is_none() {
            return Ok(None);
        }
        Ok(Some(self.tensor_f32(name)?))
    }

    fn halves_rope(&self) -> bool {
        self.get_str("general.architecture")
            .is_ok_and(|a| NEOX_ARCHS.contains(&a))
    }

    fn quantised(&self, name: &str) -> Result<Option<QMatrix>, LoadError> {
        let Some(info) = self.tensor_info(name) else {
            return Ok(None);
        };
        let shape = info.shape();
        if shape.len() != 2 || !QMatrix::supports(info.ggml_type) {
            return Ok(None);
        }
        let (_, raw) = self.tensor_bytes(name)?;
        Ok(QMatrix::new(info.ggml_type, shape[0], shape[1], raw))
    }
}

/// A model's weight files as found at a path: a `.gguf` file, or a Hugging Face checkpoint (a
/// folder with `config.json`, or one of its `.safetensors` files).
#[derive(Debug)]
pub enum ModelFiles {
    /// A GGUF file.
    Gguf(GgufFile),
    /// A Hugging Face checkpoint.
    Hf(SafetensorsModel),
}

impl ModelFiles {
    /// Opens `path`: GGUF by its `.gguf` extension, a Hugging Face checkpoint otherwise.
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            Ok(Self::Gguf(GgufFile::open(path)?))
        } else {
            Ok(Self::Hf(SafetensorsModel::open(path)?))
        }
    }

    /// The weights, in canonical names.
    pub fn weights(&self) -> &dyn WeightSource {
        match self {
            Self::Gguf(g) => g,
            Self::Hf(s) => s,
        }
    }
}

/// Refuses a layer count the file cannot hold: every layer is several tensors, so a file with
/// `tensors` tensors has at most that many layers (this bounds what loading allocates).
fn check_layers(path: &Path, key: &str, n_layers: u64, tensors: usize) -> Result<(), LoadError> {
    if n_layers > tensors as u64 {
        return Err(ferr(
            path,
            format!(
                "`{key}` is {n_layers}, but the file holds only {tensors} tensors (each layer \
                 needs 9): corrupt metadata?"
            ),
        ));
    }
    Ok(())
}

/// Refuses a rotary base that is not a positive finite number (as `f32`) and an RMSNorm
/// epsilon that is negative or not finite; each pair is `(key, value)`.
fn check_rope_and_eps(
    path: &Path,
    (theta_key, theta): (&str, f32),
    (eps_key, eps): (&str, f64),
) -> Result<(), LoadError> {
    if !(theta.is_finite() && theta > 0.0) {
        return Err(ferr(
            path,
            format!("`{theta_key}` is {theta}; expected a positive finite number (e.g. 10000)"),
        ));
    }
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(ferr(
            path,
            format!("`{eps_key}` is {eps}; expected a small non-negative number (e.g. 1e-5)"),
        ));
    }
    Ok(())
}

/// Refuses a width or a context length of 0 (the layers and the rotary table need at least one);
/// `values` are `(key, value)` pairs.
fn check_positive(path: &Path, values: &[(&str, usize)]) -> Result<(), LoadError> {
    match values.iter().find(|(_, v)| *v == 0) {
        Some((key, _)) => Err(ferr(path, format!("`{key}` is 0; expected at least 1"))),
        None => Ok(()),
    }
}

/// Checks that every token id of `tokenizer` has a row in the model's embedding of
/// `embedding_rows` rows (a model may have more rows than tokens, not fewer); `path` names the
/// file in the error. Call it where a model and its tokenizer are put together.
pub fn check_vocab_fits(
    path: &Path,
    tokenizer: &Tokenizer,
    embedding_rows: usize,
) -> Result<(), LoadError> {
    let n = tokenizer.vocab_size();
    if n > embedding_rows {
        return Err(ferr(
            path,
            format!(
                "the tokenizer has {n} token ids but the embedding only {embedding_rows} rows: \
                 the tokenizer does not belong to this model"
            ),
        ));
    }
    Ok(())
}

/// The Hugging Face name (Llama / SmolLM / Qwen2 naming) of a canonical GGUF tensor name.
pub fn hf_name(canonical: &str) -> Option<String> {
    {
        let fixed = match canonical {
            "token_embd.weight" => Some("model.embed_tokens.weight"),
            "output_norm.weight" => Some("model.norm.weight"),
            "output.weight" => Some("lm_head.weight"),
            _ => None,
        };
        if let Some(f) = fixed {
            return Some(f.to_string());
        }
        let rest = canonical.strip_prefix("blk.")?;
        let (layer, tail) = rest.split_once('.')?;
        let (part, kind) = tail.rsplit_once('.')?;
        let hf = match part {
            "attn_norm" => "input_layernorm",
            "ffn_norm" => "post_attention_layernorm",
            "attn_q" => "self_attn.q_proj",
            "attn_k" => "self_attn.k_proj",
            "attn_v" => "self_attn.v_proj",
            "attn_output" => "self_attn.o_proj",
            "ffn_gate" => "mlp.gate_proj",
            "ffn_up" => "mlp.up_proj",
            "ffn_down" => "mlp.down_proj",
            _ => return None,
        };
        Some(format!("model.layers.{layer}.{hf}.{kind}"))
    }
}

impl WeightSource for SafetensorsModel {
    fn path(&self) -> &Path {
        self.dir()
    }

    fn config(&self) -> Result<LlamaConfig, LoadError> {
        let c = self.config_json();
        let path = self.config_path();
        let need = |k: &str| {
            c[k].as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| ferr(&path, format!("`{k}` (an integer) is missing")))
        };
        let arch = c["model_type"].as_str().unwrap_or("llama").to_string();
        let n_heads = need("num_attention_heads")?;
        let n_layers = need("num_hidden_layers")?;
        check_layers(
            &path,
            "num_hidden_layers",
            n_layers as u64,
            self.num_tensors(),
        )?;
        let cfg = LlamaConfig {
            vocab_size: need("vocab_size")?,
            d_model: need("hidden_size")?,
            n_layers,
            n_heads,
            n_kv_heads: c["num_key_value_heads"]
                .as_u64()
                .map_or(n_heads, |v| v as usize),
            d_ff: need("intermediate_size")?,
            // transformers 5 writes `rope_parameters.rope_theta`, earlier versions `rope_theta`
            rope_theta: c["rope_theta"]
                .as_f64()
                .or_else(|| c["rope_parameters"]["rope_theta"].as_f64())
                .unwrap_or(10_000.0) as f32,
            rms_eps: c["rms_norm_eps"].as_f64().unwrap_or(1e-6),
            max_seq_len: c["max_position_embeddings"].as_u64().unwrap_or(2048) as usize,
            tie_embeddings: c["tie_word_embeddings"].as_bool().unwrap_or(false)
                || !self.contains("lm_head.weight"),
            qkv_bias: self.contains("model.layers.0.self_attn.q_proj.bias"),
            rope_scaling: hf_rope_scaling(c).map_err(|w| ferr(&path, w))?,
            arch,
        };
        if let Some(dh) = c["head_dim"].as_u64() {
            if dh as usize != cfg.d_model / n_heads.max(1) {
                return Err(ferr(
                    &path,
                    format!(
                        "`head_dim` is {dh} but hidden_size / num_attention_heads is {}: blade \
                         needs heads that split the residual width",
                        cfg.d_model / n_heads.max(1)
                    ),
                ));
            }
        }
        if c["partial_rotary_factor"]
            .as_f64()
            .is_some_and(|f| f != 1.0)
        {
            return Err(ferr(
                &path,
                "`partial_rotary_factor` is not 1: partial rotary embeddings are not supported",
            ));
        }
        check_rope_and_eps(
            &path,
            ("rope_theta", cfg.rope_theta),
            ("rms_norm_eps", cfg.rms_eps),
        )?;
        check_positive(
            &path,
            &[
                ("hidden_size", cfg.d_model),
                ("intermediate_size", cfg.d_ff),
                ("max_position_embeddings", cfg.max_seq_len),
            ],
        )?;
        cfg.validate().map_err(|w| ferr(&path, w))?;
        Ok(cfg)
    }

    fn tensor(&self, name: &str) -> Result<Option<HostTensor>, LoadError> {
        match hf_name(name) {
            Some(hf) => self.read(&hf),
            None => Ok(None),
        }
    }

    fn halves_rope(&self) -> bool {
        true
    }
}

/// The rotary scaling of a Hugging Face `config.json`: `rope_scaling` (transformers 4) or
/// `rope_parameters` (transformers 5), keyed by `rope_type` (or the older `type`): absent,
/// `default`, `linear` or `llama3`; anything else is refused by name.
pub fn hf_rope_scaling(c: &serde_json::Value) -> Result<RopeScaling, String> {
    let (key, r) = match (&c["rope_scaling"], &c["rope_parameters"]) {
        (serde_json::Value::Null, serde_json::Value::Null) => return Ok(RopeScaling::None),
        (serde_json::Value::Null, p) => ("rope_parameters", p),
        (s, _) => ("rope_scaling", s),
    };
    let kind = r["rope_type"]
        .as_str()
        .or_else(|| r["type"].as_str())
        .unwrap_or("default");
    let num = |k: &str| -> Result<f64, String> {
        r[k].as_f64()
            .ok_or_else(|| format!("`{key}.{k}` (a number) is missing for rope type `{kind}`"))
    };
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear {
            factor: num("factor")? as f32,
        }),
        "llama3" => Ok(RopeScaling::Llama3 {
            factor: num("factor")? as f32,
            low_freq_factor: num("low_freq_factor")? as f32,
            high_freq_factor: num("high_freq_factor")? as f32,
            original_max_position_embeddings: r["original_max_position_embeddings"]
                .as_u64()
                .ok_or_else(|| {
                    format!("`{key}.original_max_position_embeddings` (an integer) is missing")
                })? as usize,
        }),
        other => Err(format!(
            "`{key}` has rope type `{other}`: blade computes the default, `linear` and `llama3` \
             rotary scalings only"
        )),
    }
}

/// Reorders the rows of a `[n_heads * d_head, ...]` Q or K weight (or bias, `cols = 1`) from
/// "rotate halves" to adjacent-pair order: new row `2i + j` of a head = old row `j * d_head/2 + i`.
pub fn permute_halves_to_pairs(values: &[f32], n_heads: usize, cols: usize) -> Vec<f32> {
    permute_rope_rows(values, n_heads, cols, true)
}

/// Row permutation between the two rotary layouts (`to_pairs`: halves -> pairs, else back).
pub fn permute_rope_rows(values: &[f32], n_heads: usize, cols: usize, to_pairs: bool) -> Vec<f32> {
    let rows = values.len() / cols;
    let dh = rows / n_heads;
    let mut out = vec![0f32; values.len()];
    for h in 0..n_heads {
        for i in 0..dh / 2 {
            for j in 0..2 {
                let pairs = h * dh + 2 * i + j;
                let halves = h * dh + j * (dh / 2) + i;
                let (new, old) = if to_pairs {
                    (pairs, halves)
                } else {
                    (halves, pairs)
                };
                out[new * cols..(new + 1) * cols]
                    .copy_from_slice(&values[old * cols..(old + 1) * cols]);
            }
        }
    }
    out
}

/// Transposes a row-major `[r, c]` matrix.
pub(crate) fn transpose(values: &[f32], r: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0f32; values.len()];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = values[i * c + j];
        }
    }
    out
}

/// Builds the model from any [`WeightSource`]; `max_seq_len` caps the rotary table.
pub fn load_llama(
    src: &dyn WeightSource,
    max_seq_len: Option<usize>,
    device: &Device,
) -> Result<(LlamaConfig, Llama), LoadError> {
    load_llama_with(src, max_seq_len, false, device)
}

/// [`load_llama`]; with `quantised`, every linear weight and the embedding that the source
/// stores in a block type stay in their blocks ([`QMatrix`]): an inference-only model (LoRA
/// cannot be added to it) near the file's size in memory. Other tensors load as `f32`.
pub fn load_llama_with(
    src: &dyn WeightSource,
    max_seq_len: Option<usize>,
    quantised: bool,
    device: &Device,
) -> Result<(LlamaConfig, Llama), LoadError> {
    let mut cfg = src.config()?;
    if let Some(m) = max_seq_len {
        cfg.max_seq_len = cfg.max_seq_len.min(m);
    }
    let path = src.path().to_path_buf();
    let get = |name: &str, want: &[usize]| -> Result<Vec<f32>, LoadError> {
        let (shape, v) = src
            .tensor(name)?
            .ok_or_else(|| ferr(&path, format!("tensor `{name}` is missing")))?;
        if shape != want {
            return Err(ferr(
                &path,
                format!("tensor `{name}` has shape {shape:?}, the config implies {want:?}"),
            ));
        }
        Ok(v)
    };
    // a weight kept in its blocks, when asked for and stored so, with the shape checked
    let quant = |name: &str, want: &[usize]| -> Result<Option<QMatrix>, LoadError> {
        if !quantised {
            return Ok(None);
        }
        match src.quantised(name)? {
            Some(q) if [q.rows(), q.cols()] != want => Err(ferr(
                &path,
                format!(
                    "tensor `{name}` has shape {:?}, the config implies {want:?}",
                    [q.rows(), q.cols()]
                ),
            )),
            other => Ok(other),
        }
    };
    let (d, dh) = (cfg.d_model, cfg.head_dim());
    let (q_out, kv_out) = (cfg.n_heads * dh, cfg.n_kv_heads * dh);
    let halves = src.halves_rope();
    // a [out, in] matrix -> burn [in, out] projection
    let proj = |name: &str,
                out: usize,
                inp: usize,
                heads: Option<usize>,
                bias: bool|
     -> Result<Proj, LoadError> {
        let mut b = if bias {
            Some(get(&format!("{name}.bias"), &[out])?)
        } else {
            None
        };
        if let Some(mut q) = quant(&format!("{name}.weight"), &[out, inp])? {
            if let (Some(h), true) = (heads, halves) {
                let rows: Vec<f32> = (0..out).map(|r| r as f32).collect();
                let order: Vec<usize> = permute_halves_to_pairs(&rows, h, 1)
                    .into_iter()
                    .map(|r| r as usize)
                    .collect();
                q = q
                    .permute_rows(&order)
                    .ok_or_else(|| ferr(&path, format!("{name}: rows do not permute")))?;
                b = b.map(|b| permute_halves_to_pairs(&b, h, 1));
            }
            return Ok(Proj::quantised(
                q,
                b.map(|b| host_tensor(b, [out], device)),
                device,
            ));
        }
        let mut w = get(&format!("{name}.weight"), &[out, inp])?;
        if let (Some(h), true) = (heads, halves) {
            w = permute_halves_to_pairs(&w, h, inp);
            b = b.map(|b| permute_halves_to_pairs(&b, h, 1));
        }
        Ok(Proj::new(
            host_tensor(transpose(&w, out, inp), [inp, out], device),
            b.map(|b| host_tensor(b, [out], device)),
        ))
    };
    let quant_embed = quant("token_embd.weight", &[cfg.vocab_size, d])?;
    let embed = match &quant_embed {
        Some(_) => Tensor::empty([0, 0], device),
        None => host_tensor(
            get("token_embd.weight", &[cfg.vocab_size, d])?,
            [cfg.vocab_size, d],
            device,
        ),
    };
    let mut blocks = Vec::with_capacity(cfg.n_layers);
    for i in 0..cfg.n_layers {
        let p = |s: &str| format!("blk.{i}.{s}");
        blocks.push(Block {
            attn_norm: rms_norm(get(&p("attn_norm.weight"), &[d])?, cfg.rms_eps, device),
            attn: Attention {
                q: proj(&p("attn_q"), q_out, d, Some(cfg.n_heads), cfg.qkv_bias)?,
                k: proj(&p("attn_k"), kv_out, d, Some(cfg.n_kv_heads), cfg.qkv_bias)?,
                v: proj(&p("attn_v"), kv_out, d, None, cfg.qkv_bias)?,
                o: proj(&p("attn_output"), d, q_out, None, false)?,
                n_heads: cfg.n_heads,
                n_kv_heads: cfg.n_kv_heads,
            },
            ffn_norm: rms_norm(get(&p("ffn_norm.weight"), &[d])?, cfg.rms_eps, device),
            mlp: Mlp {
                gate: proj(&p("ffn_gate"), cfg.d_ff, d, None, false)?,
                up: proj(&p("ffn_up"), cfg.d_ff, d, None, false)?,
                down: proj(&p("ffn_down"), d, cfg.d_ff, None, false)?,
            },
        });
    }
    let head = if cfg.tie_embeddings {
        None
    } else {
        Some(proj("output", cfg.vocab_size, d, None, false)?)
    };
    let model = Llama {
        embed: burn::module::Param::from_tensor(embed),
        blocks,
        norm: rms_norm(get("output_norm.weight", &[d])?, cfg.rms_eps, device),
        head,
        rope: rope_for(&cfg, device),
        quant_embed,
    };
    Ok((cfg, model))
}

/// The tokenizer stored in a GGUF file's metadata.
pub fn gguf_tokenizer(f: &GgufFile) -> Result<Tokenizer, LoadError> {
    gguf_tokenizer_with(f, None)
}

/// The tokenizer stored in a GGUF file's metadata, with `pre` in place of the file's
/// `tokenizer.ggml.pre` when given.
pub fn gguf_tokenizer_with(
    f: &GgufFile,
    pre: Option<PreTokenizer>,
) -> Result<Tokenizer, LoadError> {
    let model = f.get_str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(ferr(
            f.path(),
            format!(
                "tokenizer.ggml.model is `{model}`; blade reads byte-level BPE (`gpt2`) tokenizers"
            ),
        ));
    }
    let tokens = f.get_strings("tokenizer.ggml.tokens")?;
    let types: Vec<i32> = match f
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.as_array())
    {
        Some(a) => a.iter().map(|v| v.as_f64().unwrap_or(1.0) as i32).collect(),
        None => vec![1; tokens.len()],
    };
    let merges = f.get_strings("tokenizer.ggml.merges")?;
    let pre = match pre {
        Some(p) => p,
        None => PreTokenizer::from_gguf_name(f.get_str("tokenizer.ggml.pre").unwrap_or("default"))
            .map_err(|e| ferr(f.path(), e.to_string()))?,
    };
    let id = |k: &str| -> Result<Option<u32>, LoadError> {
        match f.get(k).and_then(|v| v.as_u64()) {
            None => Ok(None),
            Some(v) => u32::try_from(v)
                .map(Some)
                .map_err(|_| ferr(f.path(), format!("`{k}` is {v}, not a token id"))),
        }
    };
    let tokenizer = Tokenizer::from_parts(
        tokens,
        types,
        merges,
        pre,
        id("tokenizer.ggml.bos_token_id")?,
        id("tokenizer.ggml.eos_token_id")?,
    )
    .map_err(|e| ferr(f.path(), e.to_string()))?;
    // The model and its tokenizer meet here for GGUF: both are in this file.
    if let Some(rows) = f
        .tensor_info("token_embd.weight")
        .and_then(|t| t.shape().first().copied())
    {
        check_vocab_fits(f.path(), &tokenizer, rows)?;
    }
    Ok(tokenizer)
}
