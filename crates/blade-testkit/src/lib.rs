//! Tiny random models for tests, examples and benchmarks: a small Llama with a byte-level
//! vocabulary, written as a GGUF file and as a Hugging Face folder (safetensors + config.json +
//! tokenizer.json) holding the *same* weights, so both loaders can be checked against each other.

use std::collections::BTreeMap;
use std::path::Path;

use blade_llm::gguf::{GgmlType, GgufWriter, Value};
use blade_llm::load::{hf_name, permute_rope_rows};
pub use blade_llm::safetensors::write_safetensors;
use blade_llm::tokenizer::byte_level_char;

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
    /// Seed of the weights.
    pub seed: u64,
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
            seed: 7,
        }
    }
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

/// Row-major weights in canonical (GGUF) names and layout, Q/K rows in adjacent-pair order.
pub fn tiny_weights(spec: &TinySpec) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let vocab = tiny_vocab().0.len();
    let mut state = spec.seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;
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
    w
}

/// Writes the tiny model as a GGUF file (`llama` architecture, ChatML template).
pub fn write_tiny_gguf(path: &Path, spec: &TinySpec) -> std::io::Result<()> {
    let (tokens, types, merges) = tiny_vocab();
    let arch = if spec.qkv_bias { "qwen2" } else { "llama" };
    let k = |s: &str| format!("{arch}.{s}");
    let mut g = GgufWriter::new();
    g.meta("general.architecture", Value::String(arch.into()))
        .meta(&k("block_count"), Value::U32(spec.n_layers as u32))
        .meta(&k("context_length"), Value::U32(1024))
        .meta(&k("embedding_length"), Value::U32(spec.d_model as u32))
        .meta(&k("feed_forward_length"), Value::U32(spec.d_ff as u32))
        .meta(&k("attention.head_count"), Value::U32(spec.n_heads as u32))
        .meta(
            &k("attention.head_count_kv"),
            Value::U32(spec.n_kv_heads as u32),
        )
        .meta(&k("rope.freq_base"), Value::F32(10_000.0))
        .meta(&k("attention.layer_norm_rms_epsilon"), Value::F32(1e-5))
        .meta("tokenizer.ggml.model", Value::String("gpt2".into()))
        .meta("tokenizer.ggml.pre", Value::String("smollm".into()))
        .meta(
            "tokenizer.ggml.tokens",
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        )
        .meta(
            "tokenizer.ggml.token_type",
            Value::Array(types.into_iter().map(Value::I32).collect()),
        )
        .meta(
            "tokenizer.ggml.merges",
            Value::Array(merges.into_iter().map(Value::String).collect()),
        )
        .meta("tokenizer.ggml.eos_token_id", Value::U32(264))
        .meta(
            "tokenizer.chat_template",
            Value::String("{{'<|im_start|>' + message['role'] }}".into()),
        );
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

/// Writes the tiny model as a Hugging Face folder: `config.json`, `model.safetensors` (Q/K in
/// "rotate halves" order, HF names) and `tokenizer.json`.
pub fn write_tiny_hf(dir: &Path, spec: &TinySpec) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let (tokens, types, merges) = tiny_vocab();
    let n_base = tokens.len() - TINY_SPECIALS.len();
    let config = serde_json::json!({
        "model_type": if spec.qkv_bias { "qwen2" } else { "llama" },
        "vocab_size": tokens.len(),
        "hidden_size": spec.d_model,
        "num_hidden_layers": spec.n_layers,
        "num_attention_heads": spec.n_heads,
        "num_key_value_heads": spec.n_kv_heads,
        "intermediate_size": spec.d_ff,
        "rope_theta": 10000.0,
        "rms_norm_eps": 1e-5,
        "max_position_embeddings": 1024,
        "tie_word_embeddings": !spec.untied,
    });
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
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
    std::fs::write(dir.join("tokenizer.json"), serde_json::to_string(&tok)?)?;
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
    write_safetensors(&dir.join("model.safetensors"), &out)
}

/// One `added_tokens` entry of a `tokenizer.json`, with every field the `tokenizers` crate reads.
pub fn added_token_json(id: usize, content: &str, special: bool) -> serde_json::Value {
    serde_json::json!({
        "id": id, "content": content, "special": special, "single_word": false,
        "lstrip": false, "rstrip": false, "normalized": !special
    })
}
