//! Exporting a run: the merged model, read back by blade's own loaders from the Hugging Face
//! folder and from the GGUF file, gives the run's logits; the folder and file carry what
//! transformers and llama.cpp read; a failed or refused export leaves nothing behind.
//! (CI loads the SmolLM2 exports with transformers and the gguf package as well.)

use std::path::{Path, PathBuf};

use blade_llm::export::{export_run, ExportDtype, ExportFormat, ExportOptions};
use blade_llm::gguf::{GgmlType, GgufFile, Value};
use blade_llm::lm::last_logits;
use blade_llm::model::{LoraConfig, RopeScaling};
use blade_llm::run::{build_policy, load_llm_run, save_llm_run, LlmRunConfig};
use blade_llm::{LanguageModel, PromptTemplate};
use blade_testkit::{max_abs_diff as max_diff, write_tiny_gguf, write_tiny_hf, TinySpec};
use burn::module::Param;
use burn::prelude::*;

const TOKENS: [u32; 9] = [265, 116, 104, 101, 32, 257, 260, 10, 266];

/// A LoRA run over `base` whose adapters are non-zero (as after training), saved in `dir/run`.
fn run_over(base: &Path, dir: &Path, lora: Option<LoraConfig>) -> PathBuf {
    let cfg = LlmRunConfig {
        weights: base.to_path_buf(),
        lora,
        template: PromptTemplate::default(),
        prompt_k: 3,
        max_seq_len: 64,
        titles: ["the one", "in an", "on her"].map(String::from).to_vec(),
    };
    let device = Device::default();
    let mut policy = build_policy(&cfg, &device).unwrap();
    let mut k = 0u32;
    let mut fill = |dims: [usize; 2]| {
        k += 1;
        let v: Vec<f32> = (0..dims[0] * dims[1])
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(k * 97) % 1000) as f32 / 1000.0
                    - 0.5
            })
            .collect();
        Tensor::<2>::from_data(TensorData::new(v, dims), &device)
    };
    for b in &mut policy.model.blocks {
        for p in [
            &mut b.attn.q,
            &mut b.attn.k,
            &mut b.attn.v,
            &mut b.attn.o,
            &mut b.mlp.gate,
            &mut b.mlp.up,
            &mut b.mlp.down,
        ] {
            if let Some(l) = p.lora.as_mut() {
                l.b = Param::initialized(l.b.id, fill(l.b.dims()));
            } else {
                // full fine-tuning: move the weight itself
                let w = p.weight.val() + fill(p.weight.dims()).mul_scalar(0.1);
                p.weight = Param::initialized(p.weight.id, w);
            }
        }
    }
    let out = dir.join("run");
    save_llm_run(&policy, &cfg, &out).unwrap();
    out
}

fn lora() -> Option<LoraConfig> {
    Some(LoraConfig {
        rank: 4,
        alpha: 8.0,
        ..LoraConfig::default()
    })
}

fn run_logits(run: &Path) -> Vec<f32> {
    let (_, policy) = load_llm_run(run, &Device::default()).unwrap();
    last_logits(&policy.model, &TOKENS).unwrap()
}

fn export_logits(path: &Path) -> Vec<f32> {
    let lm = LanguageModel::load(path, None, &Device::default()).unwrap();
    lm.last_logits(&TOKENS).unwrap()
}

fn opts(format: ExportFormat, dtype: ExportDtype) -> ExportOptions {
    ExportOptions {
        format,
        dtype,
        ..ExportOptions::default()
    }
}

#[test]
fn a_lora_run_exports_to_hf_and_gguf_with_its_own_logits() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("tiny.gguf");
    write_tiny_gguf(&base, &TinySpec::default()).unwrap();
    let run = run_over(&base, dir.path(), lora());
    let ours = run_logits(&run);
    // the adapters matter: the base alone scores differently
    assert!(max_diff(&ours, &export_logits(&base)) > 1e-2);

    let hf = dir.path().join("hf");
    let r = export_run(&run, &hf, &opts(ExportFormat::Hf, ExportDtype::F32)).unwrap();
    assert_eq!(r.merged_adapters, 2 * 7);
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        assert!(hf.join(f).is_file(), "{f} missing from {:?}", r.files);
    }
    let d = max_diff(&ours, &export_logits(&hf));
    assert!(
        d < 1e-4,
        "the Hugging Face export differs from the run by {d}"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "LlamaForCausalLM");
    // the base's context length, not the run's capped rotary table (64)
    assert_eq!(config["max_position_embeddings"], 1024);
    assert_eq!(config["tie_word_embeddings"], true);
    let tc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("tokenizer_config.json")).unwrap())
            .unwrap();
    assert_eq!(tc["eos_token"], "<|endoftext|>");
    assert!(tc["chat_template"].as_str().unwrap().contains("im_start"));
    // the exported tokenizer tokenises as the base's
    let base_lm = LanguageModel::load(&base, None, &Device::default()).unwrap();
    let hf_lm = LanguageModel::load(&hf, None, &Device::default()).unwrap();
    for text in [
        "the other one",
        "<|im_start|>user\nin 1995<|im_end|>",
        "naïve 🎬",
    ] {
        assert_eq!(
            hf_lm.encode(text).unwrap(),
            base_lm.encode(text).unwrap(),
            "{text}"
        );
    }

    let gguf = dir.path().join("model.gguf");
    export_run(&run, &gguf, &opts(ExportFormat::Gguf, ExportDtype::F32)).unwrap();
    let d = max_diff(&ours, &export_logits(&gguf));
    assert!(d < 1e-4, "the GGUF export differs from the run by {d}");
    let f = GgufFile::open(&gguf).unwrap();
    assert_eq!(f.get("general.file_type"), Some(&Value::U32(0)));
    // the base's metadata, tokenizer included, is carried over
    assert_eq!(
        f.get("tokenizer.ggml.pre").and_then(Value::as_str),
        Some("smollm")
    );
    assert_eq!(f.get_u64("llama.context_length").unwrap(), 1024);

    // Q8_0 and F16 keep the logits close (rounding of the weights), and say what they hold
    let q8 = dir.path().join("q8.gguf");
    export_run(&run, &q8, &opts(ExportFormat::Gguf, ExportDtype::Q8_0)).unwrap();
    let f = GgufFile::open(&q8).unwrap();
    assert_eq!(f.get("general.file_type"), Some(&Value::U32(7)));
    assert_eq!(
        f.tensor_info("blk.0.attn_q.weight").unwrap().ggml_type,
        GgmlType::Q8_0
    );
    assert_eq!(
        f.tensor_info("blk.0.attn_norm.weight").unwrap().ggml_type,
        GgmlType::F32
    );
    let scale = ours.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = max_diff(&ours, &export_logits(&q8));
    assert!(
        d > 0.0 && d < 0.05 * scale,
        "Q8_0 logits differ by {d} (max |logit| {scale})"
    );
    let f16 = dir.path().join("hf16");
    export_run(&run, &f16, &opts(ExportFormat::Hf, ExportDtype::F16)).unwrap();
    let d = max_diff(&ours, &export_logits(&f16));
    assert!(d > 0.0 && d < 0.01 * scale, "F16 logits differ by {d}");
}

#[test]
fn an_hf_qwen2_base_round_trips_through_both_formats_and_shards() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let spec = TinySpec {
        qkv_bias: true,
        untied: true,
        ..TinySpec::default()
    };
    write_tiny_hf(&base, &spec).unwrap();
    // the full-fine-tuning path: every weight moved, no adapters
    let run = run_over(&base, dir.path(), None);
    let ours = run_logits(&run);

    let hf = dir.path().join("hf");
    // tiny shards: every tensor above 1 KB gets a file of its own, with an index
    let sharded = ExportOptions {
        max_shard_bytes: 1000,
        ..opts(ExportFormat::Hf, ExportDtype::F32)
    };
    let r = export_run(&run, &hf, &sharded).unwrap();
    assert_eq!(r.merged_adapters, 0);
    assert!(r.files.len() > 10, "{:?}", r.files);
    assert!(hf.join("model.safetensors.index.json").is_file());
    assert!(r.files[0].starts_with("model-00001-of-"), "{:?}", r.files);
    let d = max_diff(&ours, &export_logits(&hf));
    assert!(d < 1e-4, "the sharded export differs from the run by {d}");
    // a Hugging Face base's own config and tokenizer are copied, the dtype stated
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "qwen2");
    assert_eq!(config["torch_dtype"], "float32");
    assert_eq!(
        std::fs::read(hf.join("tokenizer.json")).unwrap(),
        std::fs::read(base.join("tokenizer.json")).unwrap()
    );

    // GGUF from a Hugging Face base: metadata and the tokenizer written from scratch; qwen2
    // keeps "rotate halves" rows, as llama.cpp's converter writes them
    let gguf = dir.path().join("q.gguf");
    export_run(&run, &gguf, &opts(ExportFormat::Gguf, ExportDtype::F32)).unwrap();
    let d = max_diff(&ours, &export_logits(&gguf));
    assert!(d < 1e-4, "the GGUF export of an HF base differs by {d}");
    let f = GgufFile::open(&gguf).unwrap();
    assert_eq!(f.get_str("general.architecture").unwrap(), "qwen2");
    assert_eq!(f.get_str("tokenizer.ggml.pre").unwrap(), "smollm");
    assert!(f.tensor_info("output.weight").is_some());
    let base_lm = LanguageModel::load(&base, None, &Device::default()).unwrap();
    let g_lm = LanguageModel::load(&gguf, None, &Device::default()).unwrap();
    for text in ["the other one", "<|im_start|>hi<|im_end|>"] {
        assert_eq!(
            g_lm.encode(text).unwrap(),
            base_lm.encode(text).unwrap(),
            "{text}"
        );
    }
}

#[test]
fn refused_exports_leave_nothing_and_touch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("tiny.gguf");
    write_tiny_gguf(&base, &TinySpec::default()).unwrap();
    let run = run_over(&base, dir.path(), lora());
    // an existing destination is never overwritten
    let taken = dir.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("keep.txt"), "mine").unwrap();
    let err = export_run(&run, &taken, &opts(ExportFormat::Hf, ExportDtype::F32))
        .unwrap_err()
        .to_string();
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        std::fs::read_to_string(taken.join("keep.txt")).unwrap(),
        "mine"
    );
    // Q8_0 is a GGUF type
    let out = dir.path().join("hf");
    let err = export_run(&run, &out, &opts(ExportFormat::Hf, ExportDtype::Q8_0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--dtype q8_0 is for --format gguf"), "{err}");
    // a run whose base has gone: the error names it, and no folder or staging is left
    std::fs::remove_file(&base).unwrap();
    let err = export_run(&run, &out, &opts(ExportFormat::Hf, ExportDtype::F32))
        .unwrap_err()
        .to_string();
    assert!(err.contains("tiny.gguf"), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !left.iter().any(|n| n == "hf" || n.contains("partial")),
        "{left:?}"
    );
}

#[test]
fn rotary_scaling_is_carried_into_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let llama3 = RopeScaling::Llama3 {
        factor: 32.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 64,
    };
    let linear = RopeScaling::Linear { factor: 4.0 };
    // the check is sensitive: at these 9 positions either scaling moves the logits
    let plain = dir.path().join("plain.gguf");
    write_tiny_gguf(&plain, &TinySpec::scaled_rope(RopeScaling::None)).unwrap();
    let plain = export_logits(&plain);
    for (k, (scaling, hf_base)) in [
        (llama3.clone(), true),
        (llama3, false),
        (linear.clone(), true),
        (linear, false),
    ]
    .into_iter()
    .enumerate()
    {
        let case = dir.path().join(format!("case{k}"));
        std::fs::create_dir(&case).unwrap();
        let base = if hf_base {
            let b = case.join("base");
            write_tiny_hf(&b, &TinySpec::scaled_rope(scaling.clone())).unwrap();
            b
        } else {
            let b = case.join("base.gguf");
            write_tiny_gguf(&b, &TinySpec::scaled_rope(scaling.clone())).unwrap();
            b
        };
        let moved = max_diff(&export_logits(&base), &plain);
        assert!(
            moved > 1e-3,
            "{scaling:?}: not visible at 9 tokens ({moved})"
        );
        let run = run_over(&base, &case, lora());
        let ours = run_logits(&run);
        let gguf = case.join("out.gguf");
        export_run(&run, &gguf, &opts(ExportFormat::Gguf, ExportDtype::F32)).unwrap();
        let d = max_diff(&ours, &export_logits(&gguf));
        assert!(
            d < 1e-4,
            "{scaling:?} (HF base {hf_base}): GGUF export differs by {d}"
        );
        let f = GgufFile::open(&gguf).unwrap();
        let llama3 = matches!(scaling, RopeScaling::Llama3 { .. });
        assert_eq!(f.tensor_info("rope_freqs.weight").is_some(), llama3);
        if !llama3 {
            assert_eq!(f.get_str("llama.rope.scaling.type").unwrap(), "linear");
        }
        let hf = case.join("hf");
        let r = export_run(&run, &hf, &opts(ExportFormat::Hf, ExportDtype::F32));
        if llama3 && !hf_base {
            // divisors of a non-standard band have no config.json form: refused, nothing left
            let e = r.unwrap_err().to_string();
            assert!(e.contains("--format gguf"), "{e}");
            assert!(!hf.exists());
            continue;
        }
        r.unwrap();
        let d = max_diff(&ours, &export_logits(&hf));
        assert!(
            d < 1e-4,
            "{scaling:?} (HF base {hf_base}): HF export differs by {d}"
        );
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap())
                .unwrap();
        let want = if llama3 { "llama3" } else { "linear" };
        assert_eq!(config["rope_scaling"]["rope_type"], want);
    }
}

#[test]
fn a_llama_3_2_layout_gguf_base_exports_its_scaling_to_config_json() {
    // released Llama 3.x GGUF files hold only rope_freqs.weight: the parameters are recognised
    // and written as Hugging Face's rope_scaling
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("l32.gguf");
    write_tiny_gguf(&base, &TinySpec::llama32_1b()).unwrap();
    let run = run_over(&base, dir.path(), lora());
    let hf = dir.path().join("hf");
    export_run(&run, &hf, &opts(ExportFormat::Hf, ExportDtype::Bf16)).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        config["rope_scaling"],
        serde_json::json!({"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
    );
    assert_eq!(config["max_position_embeddings"], 131_072);
    assert_eq!(config["num_key_value_heads"], 8);
    let lm = LanguageModel::load(&hf, Some(64), &Device::default()).unwrap();
    assert_eq!(lm.config.rope_scaling, TinySpec::llama32_1b().rope_scaling);
    assert_eq!(lm.tokenizer.eos(), Some(128_009));
}
