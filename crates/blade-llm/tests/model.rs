//! The Llama implementation against itself: the two weight formats give the same logits, the KV
//! cache and left padding do not change them, a fresh LoRA adapter is a no-op.

use blade_llm::gguf::GgmlType;
use blade_llm::lm::{ids_tensor, to_vec};
use blade_llm::model::{KvCache, LoraConfig};
use blade_llm::LanguageModel;
use blade_testkit::{max_abs_diff as max_diff, write_tiny_gguf, write_tiny_hf, TinySpec};
use burn::prelude::*;

fn device() -> Device {
    Device::default()
}

fn both(spec: &TinySpec) -> (LanguageModel, LanguageModel) {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("tiny.gguf");
    write_tiny_gguf(&g, spec).unwrap();
    let hf = dir.path().join("hf");
    write_tiny_hf(&hf, spec).unwrap();
    let a = LanguageModel::load(&g, None, &device()).unwrap();
    let b = LanguageModel::load(&hf, None, &device()).unwrap();
    (a, b)
}

const PROMPT: [u32; 9] = [257, 72, 101, 108, 108, 111, 32, 265, 260];

#[test]
fn gguf_and_safetensors_give_the_same_logits() {
    for spec in [
        TinySpec::default(),
        TinySpec {
            untied: true,
            n_kv_heads: 4,
            ..TinySpec::default()
        },
        // qwen2: Q/K biases, "rotate halves" rows in both files
        TinySpec {
            qkv_bias: true,
            n_kv_heads: 1,
            ..TinySpec::default()
        },
    ] {
        let (a, b) = both(&spec);
        assert_eq!(a.config.tie_embeddings, !spec.untied);
        assert_eq!(a.config.n_kv_heads, spec.n_kv_heads);
        assert_eq!(a.config.vocab_size, b.config.vocab_size);
        let la = a.last_logits(&PROMPT).unwrap();
        let lb = b.last_logits(&PROMPT).unwrap();
        assert!(la.iter().all(|x| x.is_finite()));
        let spread = la.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(spread > 0.1, "logits should not be flat: {spread}");
        let d = max_diff(&la, &lb);
        assert!(d < 1e-4, "{spec:?}: GGUF vs safetensors max |diff| {d}");
        // the tokenizers agree too
        let text = "<|im_start|>user\nthe theory in 1995<|im_end|>";
        assert_eq!(a.encode(text).unwrap(), b.encode(text).unwrap());
    }
}

#[test]
fn quantised_files_stay_close_to_the_float_model() {
    let (f32_model, _) = both(&TinySpec::default());
    let reference = f32_model.last_logits(&PROMPT).unwrap();
    let scale = reference.iter().fold(0f32, |m, x| m.max(x.abs()));
    for (ty, tol) in [
        (GgmlType::F16, 0.01),
        (GgmlType::Q8_0, 0.05),
        (GgmlType::Q4_1, 0.5),
        (GgmlType::Q4_0, 0.5),
    ] {
        let (q, _) = both(&TinySpec {
            matrix_type: ty,
            ..TinySpec::default()
        });
        let l = q.last_logits(&PROMPT).unwrap();
        let d = max_diff(&l, &reference) / scale;
        assert!(d < tol, "{ty}: relative max diff {d} >= {tol}");
        assert!(
            d > 0.0 || ty == GgmlType::F32,
            "{ty} should differ a little from f32"
        );
    }
}

#[test]
fn weights_kept_in_their_blocks_give_the_dequantised_logits() {
    let dev = device();
    for (ty, spec) in [GgmlType::Q8_0, GgmlType::Q4_1, GgmlType::Q4_0]
        .into_iter()
        .flat_map(|ty| {
            [
                TinySpec::default(),
                // a separate head, and qwen2's biases and "rotate halves" rows
                TinySpec {
                    untied: true,
                    qkv_bias: true,
                    n_kv_heads: 1,
                    ..TinySpec::default()
                },
            ]
            .map(|s| {
                (
                    ty,
                    TinySpec {
                        matrix_type: ty,
                        ..s
                    },
                )
            })
        })
    {
        let dir = tempfile::tempdir().unwrap();
        let g = dir.path().join("tiny.gguf");
        write_tiny_gguf(&g, &spec).unwrap();
        let f = LanguageModel::load_with(&g, None, false, &dev).unwrap();
        let q = LanguageModel::load_with(&g, None, true, &dev).unwrap();
        assert!(q.model.quantised() && !f.model.quantised(), "{ty}");
        let (lf, lq) = (
            f.last_logits(&PROMPT).unwrap(),
            q.last_logits(&PROMPT).unwrap(),
        );
        let scale = lf.iter().fold(0f32, |m, x| m.max(x.abs()));
        let close = |a: &[f32], b: &[f32], what: &str| {
            let d = max_diff(a, b) / scale;
            assert!(d < 1e-5, "{ty} {spec:?} {what}: relative max |diff| {d}");
        };
        close(&lq, &lf, "one row (the fused product)");
        // 4 x 9 = 36 rows: above the direct-product limit, the dequantised-tile path
        let rows = vec![PROMPT.to_vec(); 4];
        let full = |lm: &LanguageModel| {
            let mut cache = KvCache::new(lm.config.n_layers);
            to_vec(lm.model.forward(ids_tensor(&rows, &dev), None, &mut cache)).unwrap()
        };
        close(&full(&q), &full(&f), "36 rows (dequantised tiles)");
        let ids = [3u32, 72, 260, 101];
        let at = |lm: &LanguageModel| {
            let mut cache = KvCache::new(lm.config.n_layers);
            let h = lm
                .model
                .forward_hidden(ids_tensor(&[PROMPT.to_vec()], &dev), None, &mut cache);
            to_vec(lm.model.logits_for(h, &ids)).unwrap()
        };
        close(&at(&q), &at(&f), "logits at chosen tokens");
        assert_eq!(
            q.greedy(&PROMPT, 6, &[]).unwrap(),
            f.greedy(&PROMPT, 6, &[]).unwrap()
        );
    }
}

#[test]
fn kv_cache_matches_the_full_pass() {
    let (lm, _) = both(&TinySpec::default());
    let dev = device();
    let mut full_cache = KvCache::new(lm.config.n_layers);
    let full = lm
        .model
        .forward(ids_tensor(&[PROMPT.to_vec()], &dev), None, &mut full_cache);
    let full = to_vec(full).unwrap();
    let v = lm.config.vocab_size;
    // feed 4 tokens, then 1, then the remaining 4
    let mut cache = KvCache::new(lm.config.n_layers);
    let mut got = Vec::new();
    for part in [&PROMPT[..4], &PROMPT[4..5], &PROMPT[5..]] {
        let l = lm
            .model
            .forward(ids_tensor(&[part.to_vec()], &dev), None, &mut cache);
        got.extend(to_vec(l).unwrap());
    }
    assert_eq!(cache.len, PROMPT.len());
    assert_eq!(got.len(), PROMPT.len() * v);
    let d = max_diff(&got, &full);
    assert!(d < 1e-4, "incremental vs full: {d}");
    // greedy generation with the cache equals recomputing from scratch each step
    let fast = lm.greedy(&PROMPT, 6, &[]).unwrap();
    let mut slow = Vec::new();
    let mut seq = PROMPT.to_vec();
    for _ in 0..6 {
        let l = lm.last_logits(&seq).unwrap();
        let next = blade_llm::lm::argmax(&l) as u32;
        slow.push(next);
        seq.push(next);
    }
    assert_eq!(fast, slow);
}

#[test]
fn left_padding_and_batching_do_not_change_logits() {
    let (lm, _) = both(&TinySpec::default());
    let dev = device();
    let short = &PROMPT[3..];
    let alone = lm.last_logits(short).unwrap();
    // batch row 0: the full prompt, row 1: the short one left-padded with token 0
    let pad_n = PROMPT.len() - short.len();
    let mut padded = vec![0u32; pad_n];
    padded.extend_from_slice(short);
    let mut mask = vec![false; PROMPT.len()];
    mask.extend((0..PROMPT.len()).map(|i| i < pad_n));
    let pad = Tensor::<2, Bool>::from_data(TensorData::new(mask, [2, PROMPT.len()]), &dev);
    let mut cache = KvCache::new(lm.config.n_layers);
    let logits = lm.model.forward(
        ids_tensor(&[PROMPT.to_vec(), padded], &dev),
        Some(pad),
        &mut cache,
    );
    let [_, s, v] = logits.dims();
    let row1 = to_vec(logits.clone().slice([1..2, s - 1..s, 0..v])).unwrap();
    let row0 = to_vec(logits.slice([0..1, s - 1..s, 0..v])).unwrap();
    assert!(
        max_diff(&row1, &alone) < 1e-3,
        "padded row differs: {}",
        max_diff(&row1, &alone)
    );
    assert!(max_diff(&row0, &lm.last_logits(&PROMPT).unwrap()) < 1e-4);
}

#[test]
fn a_fresh_lora_adapter_changes_nothing_and_trains_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("tiny.gguf");
    write_tiny_gguf(&g, &TinySpec::default()).unwrap();
    let ad = device().autodiff();
    let lm = LanguageModel::load(&g, None, &ad).unwrap();
    let before = lm.last_logits(&PROMPT).unwrap();
    let lora = LoraConfig {
        rank: 4,
        alpha: 8.0,
        targets: vec!["q".into(), "v".into(), "down".into()],
    };
    let lm = lm.with_lora(&lora, &ad);
    let after = lm.last_logits(&PROMPT).unwrap();
    assert!(max_diff(&before, &after) < 1e-6);
    // gradients reach the adapters only: 3 targets x 2 layers x (A, B)
    let mut cache = KvCache::new(lm.config.n_layers);
    let logits = lm
        .model
        .forward(ids_tensor(&[PROMPT.to_vec()], &ad), None, &mut cache);
    let grads = logits.powf_scalar(2.0).mean().backward();
    let params = burn::optim::GradientsParams::from_grads(grads, &lm.model);
    assert_eq!(params.len(), 3 * 2 * 2);
}

#[test]
fn a_prompt_cache_repeated_for_its_rollouts_gives_the_logits_of_separate_prefills() {
    // two prompts of different lengths prefilled once (left-padded), the cache repeated for 3
    // rollouts each, then 2 different tokens per rollout: every row must score as its own
    // prompt + continuation run from scratch
    let (lm, _) = both(&TinySpec::default());
    let dev = device();
    let prompts = [PROMPT.to_vec(), PROMPT[3..].to_vec()];
    let s = PROMPT.len();
    let pad_n = s - prompts[1].len();
    let mut padded = vec![0u32; pad_n];
    padded.extend_from_slice(&prompts[1]);
    let mut mask = vec![false; s];
    mask.extend((0..s).map(|i| i < pad_n));
    let pad = Tensor::<2, Bool>::from_data(TensorData::new(mask, [2, s]), &dev);
    let mut cache = KvCache::new(lm.config.n_layers);
    lm.model.forward(
        ids_tensor(&[prompts[0].clone(), padded], &dev),
        Some(pad),
        &mut cache,
    );
    let times = 3;
    let mut forked = cache.repeat_rows(times);
    assert_eq!(forked.len, s);
    let conts: Vec<Vec<u32>> = (0..2 * times as u32)
        .map(|r| vec![(r * 13 + 40) % 256, (r * 7 + 100) % 256])
        .collect();
    let logits = lm
        .model
        .forward(ids_tensor(&conts, &dev), None, &mut forked);
    let v = lm.config.vocab_size;
    assert_eq!(logits.dims(), [2 * times, 2, v]);
    let mut worst = 0f32;
    for (r, cont) in conts.iter().enumerate() {
        let full = [prompts[r / times].clone(), cont.clone()].concat();
        let n = full.len();
        let mut c = KvCache::new(lm.config.n_layers);
        let alone = lm.model.forward(ids_tensor(&[full], &dev), None, &mut c);
        let alone = to_vec(alone.slice([0..1, n - 2..n, 0..v])).unwrap();
        let row = to_vec(logits.clone().slice([r..r + 1, 0..2, 0..v])).unwrap();
        worst = worst.max(max_diff(&row, &alone));
    }
    assert!(worst < 1e-3, "forked cache vs separate prefills: {worst}");
    // the rows of one prompt differ only through their continuations: a mix-up of rows would
    // show here (row 0 and row 3 read different prompts with different tokens)
    let r0 = to_vec(logits.clone().slice([0..1, 0..2, 0..v])).unwrap();
    let r3 = to_vec(logits.slice([3..4, 0..2, 0..v])).unwrap();
    assert!(max_diff(&r0, &r3) > 1e-2);
}

/// Logits at chosen tokens only equal those columns of the full product, with a tied and with
/// a separate head.
#[test]
fn logits_at_chosen_tokens_are_the_full_logits_columns() {
    let tokens = [3u32, 257, 72, 266, 101, 0];
    for untied in [false, true] {
        let spec = TinySpec {
            untied,
            ..TinySpec::default()
        };
        let (lm, _) = both(&spec);
        let rows = [PROMPT.to_vec(), PROMPT.iter().rev().copied().collect()];
        let mut cache = KvCache::new(lm.config.n_layers);
        let hidden = lm
            .model
            .forward_hidden(ids_tensor(&rows, &device()), None, &mut cache);
        let [b, s, _] = hidden.dims();
        let full = to_vec(lm.model.logits(hidden.clone())).unwrap();
        let some = to_vec(lm.model.logits_for(hidden, &tokens)).unwrap();
        let vocab = lm.config.vocab_size;
        assert_eq!(some.len(), b * s * tokens.len());
        let mut worst = 0f32;
        for r in 0..b * s {
            for (j, &t) in tokens.iter().enumerate() {
                let a = full[r * vocab + t as usize];
                worst = worst.max((a - some[r * tokens.len() + j]).abs());
            }
        }
        assert!(worst < 1e-4, "untied {untied}: max |diff| {worst}");
    }
}
