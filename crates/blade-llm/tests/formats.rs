//! Corrupt model files: every number a header claims is checked against what the file holds,
//! and the error names the file and the key (no panic, no huge allocation, no silent default).

use std::path::Path;

use blade_llm::gguf::{GgmlType, GgufFile, GgufWriter, Value};
use blade_llm::load::{check_vocab_fits, gguf_tokenizer, WeightSource};
use blade_llm::safetensors::{read_safetensors_f32, write_safetensors, SafetensorsModel};
use blade_llm::tokenizer::Tokenizer;

/// A safetensors file whose header is `header` followed by `data`.
fn raw_safetensors(path: &Path, header: &str, data: &[u8]) {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

fn st_error(header: &str, data: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    raw_safetensors(&path, header, data);
    let err = read_safetensors_f32(&path).unwrap_err().to_string();
    assert!(err.contains("bad.safetensors"), "{err}");
    err
}

#[test]
fn safetensors_offsets_ending_near_2_pow_64_are_an_error_naming_the_file() {
    let end = u64::MAX - 3;
    let err = st_error(
        &format!(r#"{{"w":{{"dtype":"F32","shape":[1],"data_offsets":[0,{end}]}}}}"#),
        &[0; 4],
    );
    assert!(err.contains("past the end of the file"), "{err}");
    let err = st_error(
        &format!(
            r#"{{"w":{{"dtype":"F32","shape":[1],"data_offsets":[{end},{}]}}}}"#,
            u64::MAX
        ),
        &[0; 4],
    );
    assert!(err.contains("past the end of the file"), "{err}");
}

#[test]
fn safetensors_shape_product_overflow_is_an_error_naming_the_file() {
    let big = 1u64 << 32;
    let err = st_error(
        &format!(r#"{{"w":{{"dtype":"F32","shape":[{big},{big},{big}],"data_offsets":[0,4]}}}}"#),
        &[0; 4],
    );
    assert!(err.contains("more elements than fit"), "{err}");
}

#[test]
fn safetensors_shape_must_match_the_bytes_of_its_offsets() {
    let err = st_error(
        r#"{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,8]}}"#,
        &[0; 8],
    );
    assert!(
        err.contains("needs 24 bytes") && err.contains("hold 8"),
        "{err}"
    );
    let err = st_error(
        r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[4]}}"#,
        &[0; 4],
    );
    assert!(err.contains("not a pair"), "{err}");
    // A good file still reads.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.safetensors");
    write_safetensors(&path, &[("w".into(), vec![2], vec![1.0, 2.0])]).unwrap();
    assert_eq!(
        read_safetensors_f32(&path).unwrap()["w"],
        (vec![2], vec![1.0, 2.0])
    );
}

/// A GGUF file with llama metadata (`overrides` replace or add entries) and a 4 x 4 embedding.
fn small_gguf(path: &Path, overrides: &[(&str, Value)], tokens: usize) {
    let mut meta: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("llama.block_count", Value::U64(0)),
        ("llama.attention.head_count", Value::U32(2)),
        ("llama.embedding_length", Value::U32(4)),
        ("llama.feed_forward_length", Value::U32(8)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        (
            "tokenizer.ggml.tokens",
            Value::Array(
                (0..tokens)
                    .map(|i| Value::String(format!("t{i}")))
                    .collect(),
            ),
        ),
        ("tokenizer.ggml.merges", Value::Array(vec![])),
    ];
    for (k, v) in overrides {
        meta.retain(|(key, _)| key != k);
        meta.push((k, v.clone()));
    }
    let mut w = GgufWriter::new();
    for (k, v) in meta {
        w.meta(k, v);
    }
    w.tensor("token_embd.weight", &[4, 4], &[0.5; 16], GgmlType::F32);
    w.write(path).unwrap();
}

fn gguf_config_error(overrides: &[(&str, Value)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    small_gguf(&path, overrides, 4);
    let f = GgufFile::open(&path).unwrap();
    let err = f.config().unwrap_err().to_string();
    assert!(err.contains("bad.gguf"), "{err}");
    err
}

#[test]
fn gguf_block_count_2_pow_32_is_an_error_not_an_allocation() {
    let err = gguf_config_error(&[("llama.block_count", Value::U64(1 << 32))]);
    assert!(
        err.contains("llama.block_count")
            && err.contains("4294967296")
            && err.contains("1 tensors"),
        "{err}"
    );
    // The small file itself is fine.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.gguf");
    small_gguf(&path, &[], 4);
    assert_eq!(GgufFile::open(&path).unwrap().config().unwrap().n_layers, 0);
}

#[test]
fn gguf_rope_theta_must_be_positive_and_finite() {
    for theta in [0.0, -10_000.0, f32::NAN, f32::INFINITY] {
        let err = gguf_config_error(&[("llama.rope.freq_base", Value::F32(theta))]);
        assert!(err.contains("llama.rope.freq_base"), "{theta}: {err}");
    }
    // As f32, 1e39 is infinite.
    let err = gguf_config_error(&[("llama.rope.freq_base", Value::F64(1e39))]);
    assert!(err.contains("llama.rope.freq_base"), "{err}");
    let err = gguf_config_error(&[(
        "llama.attention.layer_norm_rms_epsilon",
        Value::F32(f32::NAN),
    )]);
    assert!(err.contains("layer_norm_rms_epsilon"), "{err}");
}

#[test]
fn gguf_zero_context_length_or_width_is_an_error_naming_the_key() {
    // Found by the gguf fuzz target: a context_length of 0 panicked in burn's rotary table.
    let err = gguf_config_error(&[("llama.context_length", Value::U32(0))]);
    assert!(err.contains("`llama.context_length` is 0"), "{err}");
    let err = gguf_config_error(&[("llama.feed_forward_length", Value::U32(0))]);
    assert!(err.contains("`llama.feed_forward_length` is 0"), "{err}");
}

#[test]
fn gguf_tokenizer_beyond_the_embedding_rows_is_an_error_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big-vocab.gguf");
    small_gguf(&path, &[], 5);
    let f = GgufFile::open(&path).unwrap();
    let err = gguf_tokenizer(&f).unwrap_err().to_string();
    assert!(
        err.contains("big-vocab.gguf") && err.contains("5 token ids") && err.contains("4 rows"),
        "{err}"
    );
    small_gguf(&path, &[], 4);
    let f = GgufFile::open(&path).unwrap();
    let tok = gguf_tokenizer(&f).unwrap();
    assert_eq!(tok.vocab_size(), 4);
    check_vocab_fits(&path, &tok, 4).unwrap();
    let err = check_vocab_fits(&path, &tok, 3).unwrap_err().to_string();
    assert!(
        err.contains("big-vocab.gguf") && err.contains("3 rows"),
        "{err}"
    );
    // A BOS id that does not fit in 32 bits is not truncated into a valid one.
    small_gguf(
        &path,
        &[("tokenizer.ggml.bos_token_id", Value::U64((1 << 32) + 1))],
        4,
    );
    let err = gguf_tokenizer(&GgufFile::open(&path).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bos_token_id") && err.contains("4294967297"),
        "{err}"
    );
}

/// A checkpoint folder with `config` and a model.safetensors holding a 4 x 4 embedding.
fn hf_config_error(config: serde_json::Value) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let tensors = [(
        "model.embed_tokens.weight".to_string(),
        vec![4, 4],
        vec![0.5; 16],
    )];
    write_safetensors(&dir.path().join("model.safetensors"), &tensors).unwrap();
    let model = SafetensorsModel::open(dir.path()).unwrap();
    let err = model.config().unwrap_err().to_string();
    assert!(err.contains("config.json"), "{err}");
    err
}

fn hf_config(layers: u64, rope_theta: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "vocab_size": 4, "hidden_size": 4, "num_hidden_layers": layers,
        "num_attention_heads": 2, "intermediate_size": 8, "rope_theta": rope_theta,
    })
}

#[test]
fn hf_num_hidden_layers_2_pow_32_is_an_error_not_an_allocation() {
    let err = hf_config_error(hf_config(1 << 32, serde_json::json!(10000.0)));
    assert!(
        err.contains("num_hidden_layers") && err.contains("4294967296"),
        "{err}"
    );
}

#[test]
fn hf_zero_max_position_embeddings_is_an_error_naming_the_key() {
    let mut config = hf_config(0, serde_json::json!(10000.0));
    config["max_position_embeddings"] = serde_json::json!(0);
    let err = hf_config_error(config);
    assert!(err.contains("`max_position_embeddings` is 0"), "{err}");
}

#[test]
fn hf_rope_theta_must_be_positive_and_finite() {
    for theta in [
        serde_json::json!(0.0),
        serde_json::json!(-1.0),
        serde_json::json!(1e300),
    ] {
        let err = hf_config_error(hf_config(0, theta.clone()));
        assert!(err.contains("`rope_theta`"), "{theta}: {err}");
    }
}

#[test]
fn tokenizer_json_token_id_4294967295_is_an_error_not_a_huge_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    // a two-token vocabulary with one added token of the given id, loaded from `path`
    let load = |id: usize, content: &str| {
        let json = serde_json::json!({
            "added_tokens": [blade_testkit::added_token_json(id, content, true)],
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false,
                              "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []},
        });
        std::fs::write(&path, json.to_string()).unwrap();
        Tokenizer::from_tokenizer_json(&path)
    };
    let err = load(4294967295, "<huge>").unwrap_err().to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains("4294967295") && err.contains("<huge>"),
        "{err}"
    );
    // an id that does not follow the vocabulary is refused, naming both ids
    let err = load(1000, "<gap>").unwrap_err().to_string();
    assert!(
        err.contains("<gap>") && err.contains("1000") && err.contains("gives it 2"),
        "{err}"
    );
    // the next id is fine
    assert_eq!(load(2, "<next>").unwrap().vocab_size(), 3);
}
