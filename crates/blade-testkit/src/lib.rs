//! Tiny random models for tests, examples and benchmarks: a small Llama with a byte-level
//! vocabulary, written as a GGUF file and as a Hugging Face folder (safetensors + config.json +
//! tokenizer.json) holding the *same* weights, so both loaders can be checked against each other.
//!
//! Besides the tiny default, [`TinySpec::llama32_1b`] and [`TinySpec::qwen25_05b`] give the
//! layouts of Llama-3.2-1B-Instruct and Qwen2.5-0.5B-Instruct (their exact head counts, head
//! width, rotary settings, norms, tying and vocabulary sizes with their special tokens), narrowed to
//! two layers so that tests run in seconds.

use std::collections::BTreeMap;
use std::path::Path;

use blade_llm::gguf::{GgmlType, GgufWriter, Value};
use blade_llm::load::{hf_name, permute_rope_rows};
pub use blade_llm::model::RopeScaling;
use blade_llm::safetensors::write_safetensors_as;
pub use blade_llm::safetensors::{write_safetensors, StDtype};
use blade_llm::tokenizer::{byte_level_char, PreTokenizer, Tokenizer};

/// Shape of the tiny model.
#[derive(Debug, Clone)]
pub struct TinySpec {
    /// Residual width (a multiple of 32 so that block-quantised types fit).
    pub d_model: usize,
    /// Blocks.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// MLP width (a multiple of 32).
    pub d_ff: usize,
    /// Separate output head instead of a tied one.
    pub untied: bool,
    /// Q/K/V biases (Qwen2 style).
    pub qkv_bias: bool,
    /// Storage type of the matrices in the GGUF file.
    pub matrix_type: GgmlType,
    /// Storage type of the matrices in the safetensors file.
    pub hf_dtype: StDtype,
    /// Seed of the weights.
    pub seed: u64,
    /// Rotary base `theta`.
    pub rope_theta: f32,
    /// Rotary scaling: `rope_scaling` in `config.json`, `rope_freqs.weight` (Llama 3) or
    /// `rope.scaling.*` (linear) in the GGUF file.
    pub rope_scaling: RopeScaling,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Context length the files state.
    pub context_length: usize,
    /// The vocabulary.
    pub vocab: Vocab,
    /// More GGUF metadata; a key the writer sets anyway takes this value instead.
    pub gguf_meta: Vec<(String, Value)>,
}

/// Which vocabulary the model gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vocab {
    /// 267 tokens: 256 bytes, 8 merges, 3 ChatML specials (`<|endoftext|>` = eos).
    Tiny,
    /// Llama 3's layout: 128,000 ordinary tokens (the bytes, the tiny merges, then fillers) and
    /// 256 specials from id 128000 (`<|begin_of_text|>` = bos, `<|eot_id|>` = 128009 = eos), the
    /// `llama-bpe` pre-tokenizer and a Llama-3 chat template; 128,256 embedding rows.
    Llama3,
    /// Qwen2's layout: 151,643 ordinary tokens and 22 specials from id 151643 (`<|im_end|>` =
    /// 151645 = eos), the `qwen2` pre-tokenizer and ChatML; 151,936 embedding rows (more rows
    /// than tokens, as in the released models).
    Qwen2,
}

impl Default for TinySpec {
    fn default() -> Self {
        Self {
            d_model: 32,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 2,
            d_ff: 64,
            untied: false,
            qkv_bias: false,
            matrix_type: GgmlType::F32,
            hf_dtype: StDtype::F32,
            seed: 7,
            rope_theta: 10_000.0,
            rope_scaling: RopeScaling::None,
            rms_eps: 1e-5,
            context_length: 1024,
            vocab: Vocab::Tiny,
            gguf_meta: Vec::new(),
        }
    }
}

impl TinySpec {
    /// Llama-3.2-1B-Instruct's configuration with 2 of its 16 layers and the width cut from 2048
    /// to 256 (head width 8 instead of 64, MLP 512 instead of 8192): 32 query heads over 8
    /// key/value heads, tied embeddings, 128,256 vocabulary rows, rotary base 500,000 with Llama
    /// 3's scaling (factor 32, band 1..4, original context 8192), RMSNorm eps 1e-5, context
    /// 131,072. The matrices are F16 in the GGUF file and BF16 in the safetensors, as released,
    /// with values representable in both so that the two files hold the same model.
    pub fn llama32_1b() -> Self {
        Self {
            d_model: 256,
            n_layers: 2,
            n_heads: 32,
            n_kv_heads: 8,
            d_ff: 512,
            untied: false,
            qkv_bias: false,
            matrix_type: GgmlType::F16,
            hf_dtype: StDtype::BF16,
            seed: 11,
            rope_theta: 500_000.0,
            rope_scaling: RopeScaling::Llama3 {
                factor: 32.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            },
            rms_eps: 1e-5,
            context_length: 131_072,
            vocab: Vocab::Llama3,
            gguf_meta: Vec::new(),
        }
    }

    /// Qwen2.5-0.5B-Instruct's configuration with 2 of its 24 layers and the width cut from 896 to
    /// 112 (head width 8 instead of 64, MLP 256 instead of 4864): 14 query heads over 2 key/value
    /// heads, Q/K/V biases, tied embeddings, 151,936 vocabulary rows, rotary base 1,000,000, RMSNorm
    /// eps 1e-6, context 32,768; BF16 safetensors, F16 GGUF matrices.
    pub fn qwen25_05b() -> Self {
        Self {
            d_model: 112,
            n_layers: 2,
            n_heads: 14,
            n_kv_heads: 2,
            d_ff: 256,
            untied: false,
            qkv_bias: true,
            matrix_type: GgmlType::F16,
            hf_dtype: StDtype::BF16,
            seed: 13,
            rope_theta: 1_000_000.0,
            rope_scaling: RopeScaling::None,
            rms_eps: 1e-6,
            context_length: 32_768,
            vocab: Vocab::Qwen2,
            gguf_meta: Vec::new(),
        }
    }

    /// The tiny model with 16-wide heads (d = 64, 4 query and 2 key/value heads) and rotary
    /// base 500,000, its rotary frequencies scaled by `scaling`. With Llama 3's rule and an
    /// original context of 64, its 8 frequencies fall in all three bands of the rule, so the
    /// scaling shows at a few tokens.
    pub fn scaled_rope(scaling: RopeScaling) -> Self {
        Self {
            d_model: 64,
            n_heads: 4,
            n_kv_heads: 2,
            rope_theta: 500_000.0,
            rope_scaling: scaling,
            ..Self::default()
        }
    }

    /// The architecture name the files state.
    pub fn arch(&self) -> &'static str {
        if self.qkv_bias {
            "qwen2"
        } else {
            "llama"
        }
    }
}

/// A vocabulary and what goes with it.
#[derive(Debug, Clone)]
pub struct VocabLayout {
    /// Token texts (byte-level encoded), by id.
    pub tokens: Vec<String>,
    /// GGUF token types (1 normal, 3 control).
    pub types: Vec<i32>,
    /// BPE merges.
    pub merges: Vec<String>,
    /// Rows of the embedding (at least `tokens.len()`).
    pub rows: usize,
    /// Beginning-of-sequence id.
    pub bos: Option<u32>,
    /// End-of-sequence id.
    pub eos: u32,
    /// The pre-tokenizer.
    pub pre: PreTokenizer,
    /// The chat template (Jinja text).
    pub template: &'static str,
}

/// The tiny model's chat template: only what [`blade_llm::tokenizer::ChatTemplate::detect`] reads.
const TINY_TEMPLATE: &str = "{{'<|im_start|>' + message['role'] }}";
/// ChatML as Qwen2.5 renders it (without its default system prompt).
const CHATML_TEMPLATE: &str = "{%- for message in messages %}{{- '<|im_start|>' + \
    message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{%- endfor %}{%- if \
    add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}";
/// Llama 3's chat format (without the tool and date preamble of the released template).
const LLAMA3_TEMPLATE: &str = "{{- bos_token }}{%- for message in messages %}{{- \
    '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] \
    | trim + '<|eot_id|>' }}{%- endfor %}{%- if add_generation_prompt %}{{- \
    '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}";

/// The vocabulary of `vocab`.
pub fn vocab_layout(vocab: Vocab) -> VocabLayout {
    let (mut tokens, mut types, merges) = tiny_vocab();
    let n_base = tokens.len() - TINY_SPECIALS.len();
    let (ordinary, specials, rows, bos, eos, pre, template): (usize, Vec<String>, _, _, _, _, _) =
        match vocab {
            Vocab::Tiny => {
                let rows = tokens.len();
                return VocabLayout {
                    tokens,
                    types,
                    merges,
                    rows,
                    bos: None,
                    eos: 264,
                    pre: PreTokenizer::SmolLm,
                    template: TINY_TEMPLATE,
                };
            }
            Vocab::Llama3 => {
                let mut sp: Vec<String> = [
                    "<|begin_of_text|>",
                    "<|end_of_text|>",
                    "<|reserved_special_token_0|>",
                    "<|reserved_special_token_1|>",
                    "<|finetune_right_pad_id|>",
                    "<|reserved_special_token_2|>",
                    "<|start_header_id|>",
                    "<|end_header_id|>",
                    "<|eom_id|>",
                    "<|eot_id|>",
                    "<|python_tag|>",
                ]
                .map(String::from)
                .to_vec();
                sp.extend((3..248).map(|i| format!("<|reserved_special_token_{i}|>")));
                (
                    128_000,
                    sp,
                    128_256,
                    Some(128_000),
                    128_009,
                    PreTokenizer::Llama3,
                    LLAMA3_TEMPLATE,
                )
            }
            Vocab::Qwen2 => {
                let mut sp: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
                    .map(String::from)
                    .to_vec();
                sp.extend((3..22).map(|i| format!("<|qwen_special_{i}|>")));
                (
                    151_643,
                    sp,
                    151_936,
                    None,
                    151_645,
                    PreTokenizer::Qwen2,
                    CHATML_TEMPLATE,
                )
            }
        };
    tokens.truncate(n_base);
    types.truncate(n_base);
    // fillers: ordinary tokens no merge reaches, as the rare tokens of a real vocabulary
    tokens.extend((n_base..ordinary).map(|i| format!("ĠfillerĠ{i}")));
    types.resize(ordinary, 1);
    types.extend(std::iter::repeat_n(3, specials.len()));
    tokens.extend(specials);
    VocabLayout {
        tokens,
        types,
        merges,
        rows,
        bos,
        eos,
        pre,
        template,
    }
}

/// The tokenizer of `vocab`, as blade builds it from GGUF metadata.
pub fn vocab_tokenizer(vocab: Vocab) -> Tokenizer {
    let v = vocab_layout(vocab);
    Tokenizer::from_parts(v.tokens, v.types, v.merges, v.pre, v.bos, Some(v.eos))
        .expect("the test vocabularies are valid")
}

/// Special tokens of the tiny vocabulary, after the 256 byte tokens and the merges.
pub const TINY_SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// Merges of the tiny vocabulary: a few frequent English pairs.
pub const TINY_MERGES: [&str; 8] = ["t h", "th e", "Ġ t", "Ġ the", "o n", "i n", "e r", "a n"];

/// `(tokens, token types, merges)` of the tiny byte-level vocabulary: 256 bytes, 8 merged tokens,
/// 3 specials (`<|endoftext|>` = eos).
pub fn tiny_vocab() -> (Vec<String>, Vec<i32>, Vec<String>) {
    let mut tokens: Vec<String> = (0..=255u8)
        .map(|b| byte_level_char(b).to_string())
        .collect();
    let mut types = vec![1; 256];
    for m in TINY_MERGES {
        tokens.push(m.replace(' ', ""));
        types.push(1);
    }
    for s in TINY_SPECIALS {
        tokens.push(s.to_string());
        types.push(3);
    }
    (
        tokens,
        types,
        TINY_MERGES.iter().map(|m| m.to_string()).collect(),
    )
}

/// Rounds `x` to the nearest value that both bf16 and f16 store exactly (8 significant bits,
/// magnitudes from 2^-14, else 0), so that an F16 GGUF file and a BF16 safetensors file can hold
/// the same weights.
fn bf16_and_f16_exact(x: f32) -> f32 {
    if x.abs() < 6.2e-5 {
        return 0.0;
    }
    let bits = x.to_bits();
    // round to nearest even on the 16 bits dropped by bf16
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) & 0xffff_0000;
    f32::from_bits(rounded)
}

/// Row-major weights in canonical (GGUF) names and layout, Q/K rows in adjacent-pair order.
pub fn tiny_weights(spec: &TinySpec) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let vocab = vocab_layout(spec.vocab).rows;
    let mut state = spec.seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;
    let half = spec.hf_dtype != StDtype::F32;
    let mut rand = |n: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (((state >> 11) as f64 / (1u64 << 53) as f64) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    };
    let d = spec.d_model;
    let dh = d / spec.n_heads;
    let kv = spec.n_kv_heads * dh;
    let mut w = BTreeMap::new();
    let mut put = |name: String, shape: Vec<usize>, v: Vec<f32>| {
        w.insert(name, (shape, v));
    };
    put(
        "token_embd.weight".into(),
        vec![vocab, d],
        rand(vocab * d, 1.0),
    );
    for i in 0..spec.n_layers {
        let p = |s: &str| format!("blk.{i}.{s}");
        let s = 1.0 / (d as f32).sqrt();
        put(
            p("attn_norm.weight"),
            vec![d],
            rand(d, 0.2).iter().map(|x| 1.0 + x).collect(),
        );
        put(
            p("ffn_norm.weight"),
            vec![d],
            rand(d, 0.2).iter().map(|x| 1.0 + x).collect(),
        );
        put(p("attn_q.weight"), vec![d, d], rand(d * d, s * 2.0));
        put(p("attn_k.weight"), vec![kv, d], rand(kv * d, s * 2.0));
        put(p("attn_v.weight"), vec![kv, d], rand(kv * d, s));
        put(p("attn_output.weight"), vec![d, d], rand(d * d, s));
        if spec.qkv_bias {
            put(p("attn_q.bias"), vec![d], rand(d, 0.1));
            put(p("attn_k.bias"), vec![kv], rand(kv, 0.1));
            put(p("attn_v.bias"), vec![kv], rand(kv, 0.1));
        }
        put(
            p("ffn_gate.weight"),
            vec![spec.d_ff, d],
            rand(spec.d_ff * d, s),
        );
        put(
            p("ffn_up.weight"),
            vec![spec.d_ff, d],
            rand(spec.d_ff * d, s),
        );
        put(
            p("ffn_down.weight"),
            vec![d, spec.d_ff],
            rand(spec.d_ff * d, 1.0 / (spec.d_ff as f32).sqrt()),
        );
    }
    put("output_norm.weight".into(), vec![d], vec![1.0; d]);
    if spec.untied {
        put(
            "output.weight".into(),
            vec![vocab, d],
            rand(vocab * d, 1.0 / (d as f32).sqrt()),
        );
    }
    if half {
        for (_, v) in w.values_mut() {
            v.iter_mut().for_each(|x| *x = bf16_and_f16_exact(*x));
        }
    }
    w
}

/// Writes the model as a GGUF file (`llama` architecture, or `qwen2` with Q/K/V biases) with its
/// vocabulary, chat template and rotary scaling.
pub fn write_tiny_gguf(path: &Path, spec: &TinySpec) -> std::io::Result<()> {
    let v = vocab_layout(spec.vocab);
    let arch = spec.arch();
    let k = |s: &str| format!("{arch}.{s}");
    let u = |n: usize| Value::U32(n as u32);
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        (k("block_count"), u(spec.n_layers)),
        (k("context_length"), u(spec.context_length)),
        (k("embedding_length"), u(spec.d_model)),
        (k("feed_forward_length"), u(spec.d_ff)),
        (k("attention.head_count"), u(spec.n_heads)),
        (k("attention.head_count_kv"), u(spec.n_kv_heads)),
        (k("rope.freq_base"), Value::F32(spec.rope_theta)),
        (k("rope.dimension_count"), u(spec.d_model / spec.n_heads)),
        (
            k("attention.layer_norm_rms_epsilon"),
            Value::F32(spec.rms_eps),
        ),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        (
            "tokenizer.ggml.pre".into(),
            Value::String(v.pre.gguf_name().into()),
        ),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(v.tokens.into_iter().map(Value::String).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(v.types.into_iter().map(Value::I32).collect()),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(v.merges.into_iter().map(Value::String).collect()),
        ),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(v.eos)),
        (
            "tokenizer.chat_template".into(),
            Value::String(v.template.into()),
        ),
    ];
    if let Some(b) = v.bos {
        meta.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(b)));
    }
    if let RopeScaling::Linear { factor } = spec.rope_scaling {
        meta.push((k("rope.scaling.type"), Value::String("linear".into())));
        meta.push((k("rope.scaling.factor"), Value::F32(factor)));
    }
    // the spec's extra entries replace equal keys in place
    for (key, value) in &spec.gguf_meta {
        match meta.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.clone(),
            None => meta.push((key.clone(), value.clone())),
        }
    }
    let mut g = GgufWriter::new();
    for (key, value) in meta {
        g.meta(&key, value);
    }
    let mut weights = tiny_weights(spec);
    if spec.qkv_bias {
        // qwen2 GGUF files keep "rotate halves" order: store what a converter would
        for (name, heads) in [("attn_q", spec.n_heads), ("attn_k", spec.n_kv_heads)] {
            for i in 0..spec.n_layers {
                for kind in ["weight", "bias"] {
                    let key = format!("blk.{i}.{name}.{kind}");
                    if let Some((shape, v)) = weights.get_mut(&key) {
                        let cols = if kind == "weight" { shape[1] } else { 1 };
                        *v = pairs_to_halves(v, heads, cols);
                    }
                }
            }
        }
    }
    // llama.cpp's converter stores Llama 3's scaling as per-frequency divisors
    if matches!(spec.rope_scaling, RopeScaling::Llama3 { .. }) {
        let d = spec
            .rope_scaling
            .divisors(spec.d_model / spec.n_heads, spec.rope_theta)
            .expect("Llama 3 scaling has divisors");
        weights.insert("rope_freqs.weight".into(), (vec![d.len()], d));
    }
    for (name, (shape, v)) in &weights {
        let ty = if shape.len() == 2 {
            spec.matrix_type
        } else {
            GgmlType::F32
        };
        g.tensor(name, shape, v, ty);
    }
    g.write(path)
}

/// Inverse of [`blade_llm::load::permute_halves_to_pairs`].
pub fn pairs_to_halves(values: &[f32], n_heads: usize, cols: usize) -> Vec<f32> {
    permute_rope_rows(values, n_heads, cols, false)
}

/// Writes the model as a Hugging Face folder: `config.json` (with `rope_scaling`),
/// `model.safetensors` (Q/K in "rotate halves" order, HF names, `spec.hf_dtype`),
/// `tokenizer.json` and, for the large vocabularies, `tokenizer_config.json` with the chat
/// template.
pub fn write_tiny_hf(dir: &Path, spec: &TinySpec) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let layout = vocab_layout(spec.vocab);
    let mut config = serde_json::json!({
        "model_type": spec.arch(),
        "vocab_size": layout.rows,
        "hidden_size": spec.d_model,
        "num_hidden_layers": spec.n_layers,
        "num_attention_heads": spec.n_heads,
        "num_key_value_heads": spec.n_kv_heads,
        "intermediate_size": spec.d_ff,
        "rope_theta": spec.rope_theta,
        "rms_norm_eps": spec.rms_eps,
        "max_position_embeddings": spec.context_length,
        "tie_word_embeddings": !spec.untied,
    });
    match &spec.rope_scaling {
        RopeScaling::None => {}
        RopeScaling::Linear { factor } => {
            config["rope_scaling"] = serde_json::json!({"rope_type": "linear", "factor": factor})
        }
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            config["rope_scaling"] = serde_json::json!({
                "rope_type": "llama3", "factor": factor, "low_freq_factor": low_freq_factor,
                "high_freq_factor": high_freq_factor,
                "original_max_position_embeddings": original_max_position_embeddings,
            })
        }
        RopeScaling::Factors { .. } => {
            return Err(std::io::Error::other(
                "per-frequency rope factors have no config.json form",
            ))
        }
    }
    if spec.vocab != Vocab::Tiny {
        config["head_dim"] = serde_json::json!(spec.d_model / spec.n_heads);
        config["bos_token_id"] = serde_json::json!(layout.bos);
        config["eos_token_id"] = serde_json::json!(layout.eos);
        config["torch_dtype"] = serde_json::json!("bfloat16");
    }
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
    if spec.vocab == Vocab::Tiny {
        write_tiny_tokenizer_json(&dir.join("tokenizer.json"))?;
    } else {
        vocab_tokenizer(spec.vocab)
            .save(&dir.join("tokenizer.json"))
            .map_err(std::io::Error::other)?;
        let name = |id: Option<u32>| id.map(|i| layout.tokens[i as usize].clone());
        let tc = serde_json::json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "chat_template": layout.template,
            "bos_token": name(layout.bos),
            "eos_token": name(Some(layout.eos)),
        });
        std::fs::write(
            dir.join("tokenizer_config.json"),
            serde_json::to_string_pretty(&tc)?,
        )?;
    }
    let mut out = Vec::new();
    for (name, (shape, v)) in tiny_weights(spec) {
        let hf = hf_name(&name).expect("every tiny tensor has a Hugging Face name");
        let v = if name.contains("attn_q.") || name.contains("attn_k.") {
            let heads = if name.contains("attn_q.") {
                spec.n_heads
            } else {
                spec.n_kv_heads
            };
            let cols = if shape.len() == 2 { shape[1] } else { 1 };
            pairs_to_halves(&v, heads, cols)
        } else {
            v
        };
        out.push((hf, shape, v));
    }
    let path = dir.join("model.safetensors");
    if spec.hf_dtype == StDtype::F32 {
        write_safetensors(&path, &out)
    } else {
        write_safetensors_as(&path, &out, spec.hf_dtype, &BTreeMap::new())
    }
}

/// The tiny vocabulary's `tokenizer.json`, written by hand the way Hugging Face lays it out.
fn write_tiny_tokenizer_json(path: &Path) -> std::io::Result<()> {
    let (tokens, types, merges) = tiny_vocab();
    let n_base = tokens.len() - TINY_SPECIALS.len();
    let vocab: serde_json::Map<String, serde_json::Value> = tokens[..n_base]
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), serde_json::json!(i)))
        .collect();
    let added: Vec<serde_json::Value> = tokens[n_base..]
        .iter()
        .zip(&types[n_base..])
        .enumerate()
        .map(|(i, (t, _))| added_token_json(n_base + i, t, true))
        .collect();
    let tok = serde_json::json!({
        "added_tokens": added,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
        ]},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "vocab": vocab, "merges": merges},
    });
    std::fs::write(path, serde_json::to_string(&tok)?)
}

/// One `added_tokens` entry of a `tokenizer.json`, with every field the `tokenizers` crate reads.
pub fn added_token_json(id: usize, content: &str, special: bool) -> serde_json::Value {
    serde_json::json!({
        "id": id, "content": content, "special": special, "single_word": false,
        "lstrip": false, "rstrip": false, "normalized": !special
    })
}

/// The largest absolute difference between two equally long slices (e.g. two models' logits).
///
/// # Panics
/// If the lengths differ.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "comparing slices of different lengths");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
