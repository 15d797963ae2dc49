//! Exporting a trained LLM run for the rest of the stack: a Hugging Face folder that
//! `transformers` (and vLLM) load, or a GGUF file for llama.cpp.
//!
//! The run's LoRA adapters are merged into the base weights, `W' = W + (alpha / r) A B` (in
//! burn's `[d_in, d_out]` layout), and the matrices are written back row-major `[d_out, d_in]`.
//! Inside blade the Q/K rows are in adjacent-pair rotary order (see [`crate::model`]); a Hugging
//! Face export permutes them back to "rotate halves" order, a GGUF export keeps pair order except
//! for the architectures llama.cpp runs in NEOX mode (`qwen2`, ...), which keep halves.
//!
//! What else goes out comes from the base model, never from the run's working copy: the context
//! length is the base's own (runs cap the rotary table), and for a Hugging Face base its
//! `config.json`, tokenizer files and `generation_config.json` are copied, so nothing a serving
//! stack reads is lost. For a GGUF base the Hugging Face files are written from the GGUF metadata
//! (the tokenizer through [`Tokenizer::save`]), and a GGUF export copies the base's metadata.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use blade_core::error::CoreError;
use serde_json::{json, Value as Json};

use crate::gguf::{GgmlType, GgufWriter, Value};
use crate::lm::to_vec;
use crate::load::{hf_name, permute_rope_rows, transpose, ModelFiles, NEOX_ARCHS};
use crate::model::{Llama, LlamaConfig, Proj, RopeScaling};
use crate::run::{load_llm_run, LlmRunConfig};
use crate::safetensors::{write_safetensors_as, NamedTensor, StDtype};
use crate::tokenizer::{PreTokenizer, Tokenizer};

type CoreResult<T> = blade_core::error::Result<T>;

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// A Hugging Face folder: `config.json`, safetensors, tokenizer and generation files.
    Hf,
    /// One GGUF file.
    Gguf,
}

/// How the matrices are stored (vectors, e.g. norms and biases, always stay F32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportDtype {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
    /// ggml's 8-bit blocks (GGUF only); rows that are not a multiple of 32 fall back to F16.
    Q8_0,
}

impl std::str::FromStr for ExportDtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Self::F32),
            "f16" | "float16" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            "q8_0" | "q8" => Ok(Self::Q8_0),
            other => Err(format!("`{other}`: expected f32, f16, bf16 or q8_0")),
        }
    }
}

/// Export settings.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Hugging Face folder or GGUF file.
    pub format: ExportFormat,
    /// Storage of the matrices.
    pub dtype: ExportDtype,
    /// Largest safetensors shard in bytes (Hugging Face's default is 5 GB); a bigger model is
    /// split into `model-0000i-of-0000n.safetensors` with an index.
    pub max_shard_bytes: u64,
    /// The pre-tokenizer to name in a GGUF export of a Hugging Face base, when blade cannot
    /// recognise it from the `tokenizer.json`.
    pub pre: Option<PreTokenizer>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            format: ExportFormat::Hf,
            dtype: ExportDtype::F32,
            max_shard_bytes: 5_000_000_000,
            pre: None,
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportReport {
    /// The folder or file.
    pub out: PathBuf,
    /// Files written (names inside the folder, or the file's name).
    pub files: Vec<String>,
    /// Tensors written.
    pub tensors: usize,
    /// Projections whose LoRA adapter was merged.
    pub merged_adapters: usize,
    /// Bytes of tensor data.
    pub tensor_bytes: u64,
}

fn cerr(path: &Path, e: impl std::fmt::Display) -> CoreError {
    CoreError::file(path, e.to_string())
}

/// The weights of `model` with every adapter merged, in canonical (GGUF) names, row-major
/// `[d_out, d_in]`, Q/K rows in adjacent-pair order; and how many adapters were merged.
pub fn merged_weights(model: &Llama) -> CoreResult<(Vec<NamedTensor>, usize)> {
    let dev = |e: crate::lm::LmError| CoreError::Config(format!("reading the weights: {e}"));
    let mut out: Vec<NamedTensor> = Vec::new();
    let mut merged = 0;
    let mut proj = |p: &Proj, name: &str, out: &mut Vec<NamedTensor>| -> CoreResult<()> {
        let mut w = p.weight.val();
        if let Some(l) = &p.lora {
            w = w + l.a.val().matmul(l.b.val()).mul_scalar(l.scale);
            merged += 1;
        }
        let [d_in, d_out] = w.dims();
        let v = transpose(&to_vec(w).map_err(dev)?, d_in, d_out);
        out.push((format!("{name}.weight"), vec![d_out, d_in], v));
        if let Some(b) = &p.bias {
            out.push((
                format!("{name}.bias"),
                vec![d_out],
                to_vec(b.val()).map_err(dev)?,
            ));
        }
        Ok(())
    };
    let [vocab, d] = model.embed.dims();
    out.push((
        "token_embd.weight".into(),
        vec![vocab, d],
        to_vec(model.embed.val()).map_err(dev)?,
    ));
    for (i, b) in model.blocks.iter().enumerate() {
        let p = |s: &str| format!("blk.{i}.{s}");
        out.push((
            p("attn_norm.weight"),
            vec![d],
            to_vec(b.attn_norm.gamma.val()).map_err(dev)?,
        ));
        proj(&b.attn.q, &p("attn_q"), &mut out)?;
        proj(&b.attn.k, &p("attn_k"), &mut out)?;
        proj(&b.attn.v, &p("attn_v"), &mut out)?;
        proj(&b.attn.o, &p("attn_output"), &mut out)?;
        out.push((
            p("ffn_norm.weight"),
            vec![d],
            to_vec(b.ffn_norm.gamma.val()).map_err(dev)?,
        ));
        proj(&b.mlp.gate, &p("ffn_gate"), &mut out)?;
        proj(&b.mlp.up, &p("ffn_up"), &mut out)?;
        proj(&b.mlp.down, &p("ffn_down"), &mut out)?;
    }
    out.push((
        "output_norm.weight".into(),
        vec![d],
        to_vec(model.norm.gamma.val()).map_err(dev)?,
    ));
    if let Some(h) = &model.head {
        proj(h, "output", &mut out)?;
    }
    Ok((out, merged))
}

/// Permutes the Q/K rows (and biases) of canonical tensors from pair to "rotate halves" order.
fn q_k_to_halves(tensors: &mut [NamedTensor], cfg: &LlamaConfig) {
    for (name, shape, v) in tensors.iter_mut() {
        let heads = if name.contains(".attn_q.") {
            cfg.n_heads
        } else if name.contains(".attn_k.") {
            cfg.n_kv_heads
        } else {
            continue;
        };
        let cols = shape.get(1).copied().unwrap_or(1);
        *v = permute_rope_rows(v, heads, cols, false);
    }
}

/// Architectures whose layout blade writes (the ones it loads with the same tensor names).
const EXPORT_ARCHS: [&str; 2] = ["llama", "qwen2"];

/// Exports the run folder `run` to `out` (a new folder for [`ExportFormat::Hf`], a new `.gguf`
/// file for [`ExportFormat::Gguf`]). Nothing is written at `out` unless the whole export
/// succeeds, and an existing `out` is never overwritten.
pub fn export_run(run: &Path, out: &Path, opts: &ExportOptions) -> CoreResult<ExportReport> {
    if out.exists() {
        return Err(CoreError::Config(format!(
            "--out {}: already exists; export writes a new {} (remove it or choose another \
             path)",
            out.display(),
            match opts.format {
                ExportFormat::Hf => "folder",
                ExportFormat::Gguf => "file",
            }
        )));
    }
    if opts.format == ExportFormat::Hf && opts.dtype == ExportDtype::Q8_0 {
        return Err(CoreError::Config(
            "--dtype q8_0 is for --format gguf; a Hugging Face export stores f32, f16 or bf16"
                .into(),
        ));
    }
    if opts.max_shard_bytes == 0 {
        return Err(CoreError::Config(
            "--max-shard-size: expected more than 0 bytes".into(),
        ));
    }
    let device = burn::prelude::Device::default();
    let (run_cfg, policy) = load_llm_run(run, &device)?;
    let base = ModelFiles::open(&run_cfg.weights).map_err(|e| cerr(&run_cfg.weights, e))?;
    // the base's own hyperparameters: the run's copy has its rotary table capped
    let base_cfg = base
        .weights()
        .config()
        .map_err(|e| cerr(&run_cfg.weights, e))?;
    if !EXPORT_ARCHS.contains(&base_cfg.arch.as_str()) {
        return Err(cerr(
            &run_cfg.weights,
            format!(
                "architecture `{}`: export writes the {} layouts",
                base_cfg.arch,
                EXPORT_ARCHS.join(" and ")
            ),
        ));
    }
    let (tensors, merged) = merged_weights(&policy.model)?;
    let tokenizer = &policy.ctx.tokenizer;
    let mut report = match opts.format {
        ExportFormat::Hf => write_hf(&base, &base_cfg, &run_cfg, tokenizer, tensors, opts, out)?,
        ExportFormat::Gguf => write_gguf(&base, &base_cfg, tokenizer, tensors, opts, out)?,
    };
    report.merged_adapters = merged;
    Ok(report)
}

/// A staging folder beside `out`, renamed onto it when complete and removed on failure.
struct Staging {
    dir: PathBuf,
    done: bool,
}

impl Staging {
    fn new(out: &Path) -> CoreResult<Self> {
        let name = out.file_name().ok_or_else(|| {
            CoreError::Config(format!("--out {}: not a folder name", out.display()))
        })?;
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(|e| cerr(&parent, e))?;
        let dir = parent.join(format!(
            ".{}.partial-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| cerr(&dir, e))?;
        }
        std::fs::create_dir(&dir).map_err(|e| cerr(&dir, e))?;
        Ok(Self { dir, done: false })
    }

    fn finish(mut self, out: &Path) -> CoreResult<()> {
        std::fs::rename(&self.dir, out).map_err(|e| cerr(out, e))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn write_json(path: &Path, v: &Json) -> CoreResult<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| cerr(path, e))?;
    blade_data::write_atomic(path, text.as_bytes()).map_err(|e| cerr(path, e))
}

fn read_json(path: &Path) -> CoreResult<Json> {
    let text = std::fs::read_to_string(path).map_err(|e| cerr(path, e))?;
    serde_json::from_str(&text).map_err(|e| cerr(path, format!("not JSON: {e}")))
}

/// The `rope_scaling` entry of a Hugging Face `config.json` for `cfg` (`None` for plain rotary);
/// per-frequency divisors that are not Llama 3's have no Hugging Face form and are refused.
fn hf_rope_scaling(cfg: &LlamaConfig) -> CoreResult<Option<Json>> {
    Ok(match &cfg.rope_scaling {
        RopeScaling::None => None,
        RopeScaling::Linear { factor } => Some(json!({"rope_type": "linear", "factor": factor})),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => Some(json!({
            "rope_type": "llama3",
            "factor": factor,
            "low_freq_factor": low_freq_factor,
            "high_freq_factor": high_freq_factor,
            "original_max_position_embeddings": original_max_position_embeddings,
        })),
        RopeScaling::Factors { .. } => {
            return Err(CoreError::Config(
                "the base's rope_freqs.weight is not Llama-3 scaling that blade recognises, and a \
                 Hugging Face config.json cannot state other per-frequency factors: export with \
                 --format gguf"
                    .into(),
            ))
        }
    })
}

/// llama.cpp's `rope_freqs.weight` for `cfg`: the per-frequency divisors of Llama-3 (or
/// unrecognised) scaling; linear scaling and plain rotary have none.
fn rope_freqs_tensor(cfg: &LlamaConfig) -> Option<NamedTensor> {
    match cfg.rope_scaling {
        RopeScaling::Llama3 { .. } | RopeScaling::Factors { .. } => {
            let d = cfg.rope_scaling.divisors(cfg.head_dim(), cfg.rope_theta)?;
            Some(("rope_freqs.weight".into(), vec![d.len()], d))
        }
        RopeScaling::None | RopeScaling::Linear { .. } => None,
    }
}

/// `config.json` of a Hugging Face export of a GGUF base.
fn hf_config(cfg: &LlamaConfig, tokenizer: &Tokenizer, torch_dtype: &str) -> CoreResult<Json> {
    let qwen = cfg.arch == "qwen2";
    let mut c = json!({
        "architectures": [if qwen { "Qwen2ForCausalLM" } else { "LlamaForCausalLM" }],
        "model_type": cfg.arch,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim(),
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.rms_eps,
        "rope_theta": cfg.rope_theta,
        "tie_word_embeddings": cfg.tie_embeddings,
        "torch_dtype": torch_dtype,
        "dtype": torch_dtype,
    });
    if !qwen {
        c["attention_bias"] = json!(cfg.qkv_bias);
        c["mlp_bias"] = json!(false);
    }
    if let Some(r) = hf_rope_scaling(cfg)? {
        c["rope_scaling"] = r;
    }
    if let Some(b) = tokenizer.bos() {
        c["bos_token_id"] = json!(b);
    }
    if let Some(e) = tokenizer.eos() {
        c["eos_token_id"] = json!(e);
    }
    Ok(c)
}

/// Splits tensors into shards of at most `max` bytes each (a tensor larger than `max` gets a
/// shard of its own), keeping their order.
fn shards(sizes: &[u64], max: u64) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, &s) in sizes.iter().enumerate() {
        if i > start && bytes + s > max {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += s;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

fn write_hf(
    base: &ModelFiles,
    base_cfg: &LlamaConfig,
    run_cfg: &LlmRunConfig,
    tokenizer: &Tokenizer,
    mut tensors: Vec<NamedTensor>,
    opts: &ExportOptions,
    out: &Path,
) -> CoreResult<ExportReport> {
    let (dtype, torch_dtype) = match opts.dtype {
        ExportDtype::F32 => (StDtype::F32, "float32"),
        ExportDtype::F16 => (StDtype::F16, "float16"),
        ExportDtype::Bf16 => (StDtype::BF16, "bfloat16"),
        ExportDtype::Q8_0 => unreachable!("refused by export_run"),
    };
    if matches!(base, ModelFiles::Gguf(_)) {
        // before anything is written: a scaling config.json cannot state is refused
        hf_rope_scaling(base_cfg)?;
    }
    q_k_to_halves(&mut tensors, base_cfg);
    let mut named: Vec<NamedTensor> = Vec::with_capacity(tensors.len() + base_cfg.n_layers);
    for (name, shape, v) in tensors {
        let hf = hf_name(&name).ok_or_else(|| {
            CoreError::Config(format!("tensor `{name}` has no Hugging Face name"))
        })?;
        named.push((hf, shape, v));
    }
    // Hugging Face's Llama puts `attention_bias` on the output projection too
    if base_cfg.qkv_bias && base_cfg.arch == "llama" {
        for i in 0..base_cfg.n_layers {
            named.push((
                format!("model.layers.{i}.self_attn.o_proj.bias"),
                vec![base_cfg.d_model],
                vec![0.0; base_cfg.d_model],
            ));
        }
    }
    let stage = Staging::new(out)?;
    let mut files = Vec::new();
    let sizes: Vec<u64> = named
        .iter()
        .map(|(_, _, v)| (v.len() * dtype.size()) as u64)
        .collect();
    let total: u64 = sizes.iter().sum();
    let groups = shards(&sizes, opts.max_shard_bytes);
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    let mut weight_map = serde_json::Map::new();
    for (k, range) in groups.iter().enumerate() {
        let file = if groups.len() == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", k + 1, groups.len())
        };
        let path = stage.dir.join(&file);
        write_safetensors_as(&path, &named[range.clone()], dtype, &meta)
            .map_err(|e| cerr(&path, e))?;
        for (name, _, _) in &named[range.clone()] {
            weight_map.insert(name.clone(), json!(file));
        }
        files.push(file);
    }
    if groups.len() > 1 {
        let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        write_json(&stage.dir.join("model.safetensors.index.json"), &index)?;
        files.push("model.safetensors.index.json".into());
    }
    match base {
        ModelFiles::Hf(st) => {
            let dir = st.dir();
            let mut config = read_json(&dir.join("config.json"))?;
            config["torch_dtype"] = json!(torch_dtype);
            config["dtype"] = json!(torch_dtype);
            write_json(&stage.dir.join("config.json"), &config)?;
            files.push("config.json".into());
            for f in [
                "tokenizer.json",
                "tokenizer_config.json",
                "special_tokens_map.json",
                "generation_config.json",
                "chat_template.jinja",
            ] {
                let src = dir.join(f);
                if src.is_file() {
                    std::fs::copy(&src, stage.dir.join(f)).map_err(|e| cerr(&src, e))?;
                    files.push(f.into());
                }
            }
        }
        ModelFiles::Gguf(g) => {
            write_json(
                &stage.dir.join("config.json"),
                &hf_config(base_cfg, tokenizer, torch_dtype)?,
            )?;
            let tok = stage.dir.join("tokenizer.json");
            tokenizer.save(&tok).map_err(|e| cerr(&tok, e))?;
            let token = |id: Option<u32>| id.and_then(|i| tokenizer.token(i)).map(str::to_owned);
            let id = |k: &str| g.get(k).and_then(Value::as_u64).map(|v| v as u32);
            let pad = id("tokenizer.ggml.padding_token_id");
            let mut tc = json!({
                "tokenizer_class": "PreTrainedTokenizerFast",
                "model_max_length": base_cfg.max_seq_len,
                "clean_up_tokenization_spaces": false,
                "add_bos_token": false,
                "add_eos_token": false,
            });
            for (key, id) in [
                ("bos_token", tokenizer.bos()),
                ("eos_token", tokenizer.eos()),
                ("pad_token", pad),
                ("unk_token", id("tokenizer.ggml.unknown_token_id")),
            ] {
                if let Some(t) = token(id) {
                    tc[key] = json!(t);
                }
            }
            if let Some(t) = g.get("tokenizer.chat_template").and_then(Value::as_str) {
                tc["chat_template"] = json!(t);
            }
            write_json(&stage.dir.join("tokenizer_config.json"), &tc)?;
            let mut gen = json!({"_from_model_config": true});
            for (key, id) in [
                ("bos_token_id", tokenizer.bos()),
                ("eos_token_id", tokenizer.eos()),
                ("pad_token_id", pad),
            ] {
                if let Some(id) = id {
                    gen[key] = json!(id);
                }
            }
            write_json(&stage.dir.join("generation_config.json"), &gen)?;
            files.extend(
                [
                    "config.json",
                    "tokenizer.json",
                    "tokenizer_config.json",
                    "generation_config.json",
                ]
                .map(String::from),
            );
        }
    }
    // where this came from, for the model card a user writes
    let origin = json!({
        "exported_by": format!("blade {}", env!("CARGO_PKG_VERSION")),
        "base": run_cfg.weights,
        "lora": run_cfg.lora,
        "dtype": torch_dtype,
    });
    write_json(&stage.dir.join("blade_export.json"), &origin)?;
    files.push("blade_export.json".into());
    stage.finish(out)?;
    Ok(ExportReport {
        out: out.to_path_buf(),
        files,
        tensors: named.len(),
        merged_adapters: 0,
        tensor_bytes: total,
    })
}

/// ggml's `general.file_type` of a file whose matrices are `ty`.
fn file_type(ty: GgmlType) -> u32 {
    match ty {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q8_0 => 7,
        GgmlType::BF16 => 32,
        _ => unreachable!("export writes F32, F16, BF16 or Q8_0"),
    }
}

/// GGUF metadata of a Hugging Face base: the architecture keys llama.cpp reads and the
/// tokenizer as `tokenizer.ggml.*`.
fn gguf_metadata_of_hf(
    dir: &Path,
    cfg: &LlamaConfig,
    tokenizer: &Tokenizer,
    pre: Option<PreTokenizer>,
) -> CoreResult<Vec<(String, Value)>> {
    let vocab = tokenizer
        .gguf_vocab(pre)
        .map_err(|e| cerr(&dir.join("tokenizer.json"), e))?;
    let a = &cfg.arch;
    let u = |v: usize| Value::U32(v as u32);
    let name = dir
        .file_name()
        .map_or("model".into(), |n| n.to_string_lossy().into_owned());
    let mut m = vec![
        ("general.architecture".to_string(), Value::String(a.clone())),
        ("general.name".into(), Value::String(name)),
        (format!("{a}.context_length"), u(cfg.max_seq_len)),
        (format!("{a}.embedding_length"), u(cfg.d_model)),
        (format!("{a}.block_count"), u(cfg.n_layers)),
        (format!("{a}.feed_forward_length"), u(cfg.d_ff)),
        (format!("{a}.attention.head_count"), u(cfg.n_heads)),
        (format!("{a}.attention.head_count_kv"), u(cfg.n_kv_heads)),
        (format!("{a}.rope.freq_base"), Value::F32(cfg.rope_theta)),
        (format!("{a}.rope.dimension_count"), u(cfg.head_dim())),
        (
            format!("{a}.attention.layer_norm_rms_epsilon"),
            Value::F32(cfg.rms_eps as f32),
        ),
        (format!("{a}.vocab_size"), u(cfg.vocab_size)),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        (
            "tokenizer.ggml.pre".into(),
            Value::String(vocab.pre.gguf_name().into()),
        ),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(vocab.tokens.into_iter().map(Value::String).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(vocab.types.into_iter().map(Value::I32).collect()),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(vocab.merges.into_iter().map(Value::String).collect()),
        ),
        // blade never adds a BOS token when it encodes; the file says so
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
    ];
    if let RopeScaling::Linear { factor } = cfg.rope_scaling {
        m.push((
            format!("{a}.rope.scaling.type"),
            Value::String("linear".into()),
        ));
        m.push((format!("{a}.rope.scaling.factor"), Value::F32(factor)));
    }
    for (key, id) in [
        ("tokenizer.ggml.bos_token_id", tokenizer.bos()),
        ("tokenizer.ggml.eos_token_id", tokenizer.eos()),
    ] {
        if let Some(id) = id {
            m.push((key.into(), Value::U32(id)));
        }
    }
    let tc = dir.join("tokenizer_config.json");
    if tc.is_file() {
        if let Some(t) = read_json(&tc)?["chat_template"].as_str() {
            m.push(("tokenizer.chat_template".into(), Value::String(t.into())));
        }
    }
    Ok(m)
}

fn write_gguf(
    base: &ModelFiles,
    base_cfg: &LlamaConfig,
    tokenizer: &Tokenizer,
    mut tensors: Vec<NamedTensor>,
    opts: &ExportOptions,
    out: &Path,
) -> CoreResult<ExportReport> {
    let ty = match opts.dtype {
        ExportDtype::F32 => GgmlType::F32,
        ExportDtype::F16 => GgmlType::F16,
        ExportDtype::Bf16 => GgmlType::BF16,
        ExportDtype::Q8_0 => GgmlType::Q8_0,
    };
    if NEOX_ARCHS.contains(&base_cfg.arch.as_str()) {
        q_k_to_halves(&mut tensors, base_cfg);
    }
    tensors.extend(rope_freqs_tensor(base_cfg));
    let metadata: Vec<(String, Value)> = match base {
        ModelFiles::Gguf(g) => g
            .metadata
            .iter()
            // the writer aligns to 32 bytes and states the file type itself
            .filter(|(k, _)| !matches!(k.as_str(), "general.alignment" | "general.file_type"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        ModelFiles::Hf(st) => gguf_metadata_of_hf(st.dir(), base_cfg, tokenizer, opts.pre)?,
    };
    let mut w = GgufWriter::new();
    for (k, v) in metadata {
        w.meta(&k, v);
    }
    w.meta("general.file_type", Value::U32(file_type(ty)));
    let mut bytes = 0u64;
    for (name, shape, v) in &tensors {
        let t = match (shape.len(), ty) {
            (1, _) => GgmlType::F32,
            // block types need whole blocks of 32 along each row (llama.cpp falls back too)
            (_, GgmlType::Q8_0) if !shape[shape.len() - 1].is_multiple_of(32) => GgmlType::F16,
            _ => ty,
        };
        w.tensor(name, shape, v, t);
        let (per, size) = t.block().expect("writable types have a block size");
        bytes += (v.len() / per * size) as u64;
    }
    w.write(out).map_err(|e| cerr(out, e))?;
    Ok(ExportReport {
        out: out.to_path_buf(),
        files: vec![out
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned())],
        tensors: tensors.len(),
        merged_adapters: 0,
        tensor_bytes: bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_respect_the_limit_and_keep_order() {
        assert_eq!(shards(&[3, 3, 3], 10), vec![0..3]);
        assert_eq!(shards(&[3, 3, 3], 6), vec![0..2, 2..3]);
        // a tensor above the limit gets a shard of its own
        assert_eq!(shards(&[2, 9, 2], 4), vec![0..1, 1..2, 2..3]);
        assert_eq!(shards(&[], 4), Vec::<std::ops::Range<usize>>::new());
    }

    #[test]
    fn dtypes_parse_and_refuse_unknown_names() {
        assert_eq!("BF16".parse::<ExportDtype>(), Ok(ExportDtype::Bf16));
        assert_eq!("q8_0".parse::<ExportDtype>(), Ok(ExportDtype::Q8_0));
        assert!("q4_k"
            .parse::<ExportDtype>()
            .unwrap_err()
            .contains("f32, f16, bf16 or q8_0"));
    }
}
