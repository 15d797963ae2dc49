//! The layouts of the paper's model family and of Qwen2.5, with random weights: Llama-3.2-1B's
//! exact configuration (GQA 32/8, tied embeddings, a 128,256-token vocabulary, rotary base 500,000
//! with Llama 3's scaling) and Qwen2.5-0.5B's (GQA 14/2, Q/K/V biases, 151,936 embedding rows
//! for 151,665 tokens), both narrowed to two layers: each loads from GGUF and from safetensors into
//! the same model, runs forward, and takes LoRA steps. Rotary scaling (Llama 3 and linear) is
//! read from both formats, agrees between them, and changes the logits.

use blade_llm::gguf::Value;
use blade_llm::lm::{ids_tensor, to_vec};
use blade_llm::model::{KvCache, LoraConfig, RopeScaling};
use blade_llm::tokenizer::ChatTemplate;
use blade_llm::LanguageModel;
use blade_testkit::{max_abs_diff, write_tiny_gguf, write_tiny_hf, TinySpec};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;

fn scale(a: &[f32]) -> f32 {
    a.iter().fold(0f32, |m, x| m.max(x.abs()))
}

/// The model written both ways and loaded from each (rotary table capped at 512 positions, as a
/// run caps it).
fn both(spec: &TinySpec, device: &Device) -> (LanguageModel, LanguageModel) {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("m.gguf");
    write_tiny_gguf(&g, spec).unwrap();
    let hf = dir.path().join("hf");
    write_tiny_hf(&hf, spec).unwrap();
    let a = LanguageModel::load(&g, Some(512), device).unwrap();
    let b = LanguageModel::load(&hf, Some(512), device).unwrap();
    (a, b)
}

/// `n` token ids spread over the ordinary vocabulary `0..ordinary`.
fn ids(n: usize, ordinary: u32) -> Vec<u32> {
    (0..n as u32).map(|i| (i * 7919 + 13) % ordinary).collect()
}

/// Mean next-token cross-entropy of `tokens` under `lm`.
fn next_token_loss(lm: &LanguageModel, tokens: &[u32]) -> Tensor<1> {
    let dev = lm.model.embed.val().device();
    let mut cache = KvCache::new(lm.config.n_layers);
    let logits = lm
        .model
        .forward(ids_tensor(&[tokens.to_vec()], &dev), None, &mut cache);
    let [_, s, v] = logits.dims();
    let lp = log_softmax(logits.slice([0..1, 0..s - 1, 0..v]), 2);
    let next: Vec<i64> = tokens[1..].iter().map(|&t| i64::from(t)).collect();
    let target =
        Tensor::<1, Int>::from_data(TensorData::new(next, [s - 1]), &dev).reshape([1, s - 1, 1]);
    lp.gather(2, target).mean().neg().reshape([1])
}

/// Attaches LoRA adapters to every projection, takes `steps` Adam steps on `tokens` and returns
/// the loss before and after, and how many parameters got gradients.
fn lora_steps(lm: LanguageModel, tokens: &[u32], steps: usize) -> (f32, f32, usize) {
    let dev = lm.model.embed.val().device();
    let mut lm = lm.with_lora(&LoraConfig::default(), &dev);
    let loss_of = |lm: &LanguageModel| to_vec(next_token_loss(lm, tokens)).unwrap()[0];
    let before = loss_of(&lm);
    let mut optim = AdamConfig::new().init();
    let mut n_params = 0;
    for _ in 0..steps {
        let loss = next_token_loss(&lm, tokens);
        let grads = GradientsParams::from_grads(loss.backward(), &lm.model);
        n_params = grads.len();
        lm.model = optim.step(1e-2, lm.model, grads);
    }
    (before, loss_of(&lm), n_params)
}

/// LoRA on every projection of `spec` loaded from its GGUF file (or its Hugging Face folder):
/// 7 targets x 2 layers x (A, B) get gradients, and 3 Adam steps on `tokens` lower the loss.
fn lora_lowers_the_loss(spec: &TinySpec, hf: bool, tokens: &[u32]) {
    let dir = tempfile::tempdir().unwrap();
    let p = if hf {
        let p = dir.path().join("hf");
        write_tiny_hf(&p, spec).unwrap();
        p
    } else {
        let p = dir.path().join("m.gguf");
        write_tiny_gguf(&p, spec).unwrap();
        p
    };
    let lm = LanguageModel::load(&p, Some(512), &Device::default().autodiff()).unwrap();
    let (before, after, n) = lora_steps(lm, tokens, 3);
    assert_eq!(n, 7 * 2 * 2);
    assert!(
        after < before,
        "LoRA steps did not lower the loss: {before} -> {after}"
    );
}

#[test]
fn llama_3_2_1b_layout_loads_from_both_formats_and_takes_lora_steps() {
    let spec = TinySpec::llama32_1b();
    let dev = Device::default();
    let (g, h) = both(&spec, &dev);
    for lm in [&g, &h] {
        let c = &lm.config;
        assert_eq!(
            (c.n_heads, c.n_kv_heads, c.head_dim(), c.n_layers),
            (32, 8, 8, 2)
        );
        assert_eq!(c.vocab_size, 128_256);
        assert!(c.tie_embeddings && !c.qkv_bias);
        assert_eq!(c.rope_theta, 500_000.0);
        // the GGUF file holds only rope_freqs.weight: the parameters are recognised from it
        assert_eq!(c.rope_scaling, spec.rope_scaling, "{}", lm.source.display());
        assert_eq!(lm.tokenizer.vocab_size(), 128_256);
        assert_eq!(lm.tokenizer.bos(), Some(128_000));
        assert_eq!(lm.tokenizer.eos(), Some(128_009));
        assert_eq!(lm.template, ChatTemplate::Llama3);
    }
    let prompt = g
        .encode(&g.template.render(None, "Recommend a film."))
        .unwrap();
    assert_eq!(
        prompt,
        h.encode(&h.template.render(None, "Recommend a film."))
            .unwrap()
    );
    assert_eq!(prompt[0], 128_000);
    for special in [128_006, 128_007, 128_009] {
        assert!(
            prompt.contains(&special),
            "{special} missing from {prompt:?}"
        );
    }
    // the same model from both files: F16 GGUF and BF16 safetensors hold the same values
    let tokens = ids(48, 128_000);
    let (lg, lh) = (
        g.last_logits(&tokens).unwrap(),
        h.last_logits(&tokens).unwrap(),
    );
    assert!(lg.iter().all(|x| x.is_finite()));
    assert!(scale(&lg) > 0.1, "flat logits");
    let d = max_abs_diff(&lg, &lh);
    assert!(d < 1e-4 * scale(&lg).max(1.0), "GGUF vs safetensors: {d}");
    drop((g, h));
    lora_lowers_the_loss(&spec, false, &tokens[..24]);
}

#[test]
fn qwen2_5_0_5b_layout_loads_from_both_formats_and_takes_lora_steps() {
    let spec = TinySpec::qwen25_05b();
    let dev = Device::default();
    let (g, h) = both(&spec, &dev);
    for lm in [&g, &h] {
        let c = &lm.config;
        assert_eq!(c.arch, "qwen2");
        assert_eq!(
            (c.n_heads, c.n_kv_heads, c.head_dim(), c.d_model),
            (14, 2, 8, 112)
        );
        assert!(c.tie_embeddings && c.qkv_bias);
        assert_eq!(c.vocab_size, 151_936);
        assert_eq!((c.rope_theta, c.rms_eps as f32), (1e6, 1e-6));
        assert_eq!(c.rope_scaling, RopeScaling::None);
        // fewer tokens than embedding rows, as released
        assert_eq!(lm.tokenizer.vocab_size(), 151_665);
        assert_eq!(lm.tokenizer.eos(), Some(151_645));
        assert_eq!(lm.template, ChatTemplate::ChatMl);
    }
    let text = g
        .template
        .render(Some("You recommend films."), "One film, please.");
    let prompt = g.encode(&text).unwrap();
    assert_eq!(prompt, h.encode(&text).unwrap());
    assert_eq!(prompt[0], 151_644);
    let tokens = ids(40, 151_643);
    let (lg, lh) = (
        g.last_logits(&tokens).unwrap(),
        h.last_logits(&tokens).unwrap(),
    );
    assert!(scale(&lg) > 0.1, "flat logits");
    let d = max_abs_diff(&lg, &lh);
    assert!(d < 1e-4 * scale(&lg).max(1.0), "GGUF vs safetensors: {d}");
    drop((g, h));
    lora_lowers_the_loss(&spec, true, &tokens[..24]);
}

#[test]
fn rope_scaling_is_read_from_both_formats_and_changes_the_logits() {
    let dev = Device::default();
    // an original context of 64 puts the 8 frequencies of a 16-wide head in all three bands of
    // Llama 3's rule (kept, interpolated, divided) at these short lengths
    let llama3 = RopeScaling::Llama3 {
        factor: 32.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 64,
    };
    let tokens: Vec<u32> = ids(40, 256);
    let (plain, _) = both(&TinySpec::scaled_rope(RopeScaling::None), &dev);
    let reference = plain.last_logits(&tokens).unwrap();
    for scaling in [llama3, RopeScaling::Linear { factor: 4.0 }] {
        let (g, h) = both(&TinySpec::scaled_rope(scaling.clone()), &dev);
        // a non-standard Llama 3 band is not recognised from the divisors: it is kept as them
        match (&scaling, &g.config.rope_scaling) {
            (RopeScaling::Llama3 { .. }, RopeScaling::Factors { factors }) => {
                assert_eq!(factors, &scaling.divisors(16, 500_000.0).unwrap());
            }
            (want, got) => assert_eq!(want, got),
        }
        assert_eq!(h.config.rope_scaling, scaling);
        let (lg, lh) = (
            g.last_logits(&tokens).unwrap(),
            h.last_logits(&tokens).unwrap(),
        );
        let d = max_abs_diff(&lg, &lh);
        assert!(d < 1e-4, "{scaling:?}: GGUF vs safetensors {d}");
        let moved = max_abs_diff(&lg, &reference) / scale(&reference);
        assert!(
            moved > 1e-2,
            "{scaling:?} barely changes the logits: {moved}"
        );
    }
}

#[test]
fn llama3_divisors_follow_the_three_bands() {
    // Llama 3.2's own setting: head width 64, base 500,000, factor 32, band 1..4, context 8192
    let s = RopeScaling::Llama3 {
        factor: 32.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 8192,
    };
    let d = s.divisors(64, 500_000.0).unwrap();
    let f = RopeScaling::base_frequencies(64, 500_000.0);
    assert_eq!(d.len(), 32);
    let mut bands = [0; 3];
    for (&div, &freq) in d.iter().zip(&f) {
        let wavelen = 2.0 * std::f64::consts::PI / freq;
        if wavelen < 2048.0 {
            assert_eq!(div, 1.0);
            bands[0] += 1;
        } else if wavelen > 8192.0 {
            assert_eq!(div, 32.0);
            bands[2] += 1;
        } else {
            // 1 / ((1 - s) / 32 + s), s = (8192 / wavelen - 1) / (4 - 1) in [0, 1]
            let s = (8192.0 / wavelen - 1.0) / 3.0;
            let want = 1.0 / ((1.0 - s) / 32.0 + s);
            assert!(((div as f64) - want).abs() < 1e-4 * want, "{div} vs {want}");
            assert!(div > 1.0 && div < 32.0);
            bands[1] += 1;
        }
    }
    assert!(
        bands.iter().all(|&n| n > 0),
        "every band is used: {bands:?}"
    );
    // divisors grow with the wavelength
    assert!(d.windows(2).all(|w| w[0] <= w[1]));
    // a GGUF file's divisors are recognised as these parameters; others stay divisors
    assert_eq!(RopeScaling::from_factors(d.clone(), 64, 500_000.0), s);
    let mut odd = d;
    odd[31] = 16.0;
    assert!(matches!(
        RopeScaling::from_factors(odd, 64, 500_000.0),
        RopeScaling::Factors { .. }
    ));
    assert_eq!(
        RopeScaling::from_factors(vec![1.0; 32], 64, 500_000.0),
        RopeScaling::None
    );
}

/// The error of loading `path`, as text.
fn load_error(path: &std::path::Path) -> String {
    match LanguageModel::load(path, Some(64), &Device::default()) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn rotary_settings_blade_does_not_compute_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    // GGUF: a scaling type other than none/linear, a partial rotary width, bad divisors
    let s = |s: &str| Value::String(s.into());
    for (meta, want) in [
        (
            vec![("llama.rope.scaling.type", s("yarn"))],
            "`llama.rope.scaling.type` is `yarn`",
        ),
        (
            vec![("llama.rope.scaling.type", s("linear"))],
            "without `llama.rope.scaling.factor`",
        ),
        // no heads: refused as such before the rotary width is worked out from them
        (
            vec![("llama.attention.head_count", Value::U32(0))],
            "n_heads is 0",
        ),
        (
            vec![("llama.rope.dimension_count", Value::U32(4))],
            "`llama.rope.dimension_count` is 4 but the heads are 8 wide",
        ),
        (
            vec![
                ("llama.rope.scaling.type", s("linear")),
                ("llama.rope.scaling.factor", Value::F32(-2.0)),
            ],
            "rope scaling factor -2",
        ),
    ] {
        let spec = TinySpec {
            gguf_meta: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            ..TinySpec::default()
        };
        let p = dir.path().join("m.gguf");
        write_tiny_gguf(&p, &spec).unwrap();
        let e = load_error(&p);
        assert!(e.contains(want) && e.contains("m.gguf"), "{e}");
    }
    // Hugging Face: rope types other than default/linear/llama3, missing parameters, a head
    // width that does not split the residual, partial rotary
    let hf = dir.path().join("hf");
    write_tiny_hf(&hf, &TinySpec::default()).unwrap();
    let original = std::fs::read_to_string(hf.join("config.json")).unwrap();
    for (key, value, want) in [
        (
            "rope_scaling",
            serde_json::json!({"rope_type": "yarn", "factor": 4.0}),
            "`rope_scaling` has rope type `yarn`",
        ),
        (
            "rope_parameters",
            serde_json::json!({"rope_type": "llama3", "factor": 8.0, "rope_theta": 5e5}),
            "`rope_parameters.low_freq_factor` (a number) is missing",
        ),
        (
            "rope_scaling",
            serde_json::json!({"type": "linear"}),
            "`rope_scaling.factor` (a number) is missing",
        ),
        ("head_dim", serde_json::json!(64), "`head_dim` is 64"),
        (
            "partial_rotary_factor",
            serde_json::json!(0.5),
            "`partial_rotary_factor` is not 1",
        ),
    ] {
        let mut c: serde_json::Value = serde_json::from_str(&original).unwrap();
        c[key] = value;
        std::fs::write(hf.join("config.json"), c.to_string()).unwrap();
        let e = load_error(&hf);
        assert!(e.contains(want) && e.contains("config.json"), "{e}");
    }
    // transformers 5's `rope_parameters` with its own `rope_theta` is read
    let mut c: serde_json::Value = serde_json::from_str(&original).unwrap();
    c.as_object_mut().unwrap().remove("rope_theta");
    c["rope_parameters"] =
        serde_json::json!({"rope_type": "linear", "factor": 2.0, "rope_theta": 5e5});
    std::fs::write(hf.join("config.json"), c.to_string()).unwrap();
    let lm = LanguageModel::load(&hf, Some(64), &Device::default()).unwrap();
    assert_eq!(lm.config.rope_theta, 5e5);
    assert_eq!(lm.config.rope_scaling, RopeScaling::Linear { factor: 2.0 });
}

#[test]
fn end_ids_come_from_config_json_when_tokenizer_config_lacks_them() {
    let dir = tempfile::tempdir().unwrap();
    let hf = dir.path().join("hf");
    write_tiny_hf(&hf, &TinySpec::llama32_1b()).unwrap();
    std::fs::remove_file(hf.join("tokenizer_config.json")).unwrap();
    // Llama 3.1+ lists several end ids: the first is taken
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap();
    c["eos_token_id"] = serde_json::json!([128_001, 128_008, 128_009]);
    std::fs::write(hf.join("config.json"), c.to_string()).unwrap();
    let lm = LanguageModel::load(&hf, Some(64), &Device::default()).unwrap();
    assert_eq!(lm.tokenizer.bos(), Some(128_000));
    assert_eq!(lm.tokenizer.eos(), Some(128_001));
    // an id beyond the vocabulary is refused, naming the file
    c["eos_token_id"] = serde_json::json!(200_000);
    std::fs::write(hf.join("config.json"), c.to_string()).unwrap();
    let e = load_error(&hf);
    assert!(
        e.contains("eos_token_id is 200000") && e.contains("config.json"),
        "{e}"
    );
}
