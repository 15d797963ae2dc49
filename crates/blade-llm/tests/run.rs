//! LLM run folders and SFT on a tiny random model and tiny synthetic data.

use blade_core::batch::PromptBatch;
use blade_core::policy::Recommender;
use blade_data::synthetic::{generate, SyntheticConfig};
use blade_data::{Dataset, PreprocessConfig};
use blade_llm::model::LoraConfig;
use blade_llm::run::{load_llm_run, train_llm_sft, LlmRunConfig, LlmSftConfig};
use blade_llm::PromptTemplate;
use blade_testkit::{write_tiny_gguf, TinySpec};
use burn::prelude::*;

/// A tiny GGUF model in a temporary folder, tiny synthetic data split with history length `l`,
/// and a run config over its titles.
fn fixture(
    lora: Option<LoraConfig>,
    l: usize,
    prompt_k: usize,
) -> (tempfile::TempDir, Dataset, blade_data::Split, LlmRunConfig) {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("tiny.gguf");
    write_tiny_gguf(&g, &TinySpec::default()).unwrap();
    let raw = generate(&SyntheticConfig::tiny());
    let ds = Dataset::from_raw(
        &raw,
        &PreprocessConfig {
            min_rating: None,
            k_core: 0,
        },
    )
    .unwrap();
    let split = ds.leave_one_out(l);
    let run = LlmRunConfig {
        weights: g,
        lora,
        template: PromptTemplate::default(),
        prompt_k,
        max_seq_len: 1024,
        titles: ds.catalog.items.iter().map(|i| i.title.clone()).collect(),
    };
    (dir, ds, split, run)
}

#[test]
fn sft_lowers_the_loss_and_the_run_folder_round_trips() {
    let lora = LoraConfig {
        rank: 4,
        alpha: 8.0,
        ..LoraConfig::default()
    };
    let (dir, _, split, run) = fixture(Some(lora), 5, 10);
    let cfg = LlmSftConfig {
        epochs: 3,
        lr: 5e-3,
        batch_size: 8,
        max_train_prompts: Some(32),
        valid_users: 8,
        ..LlmSftConfig::default()
    };
    let out = dir.path().join("run");
    let device = Device::default();
    let (policy, log) = train_llm_sft(&run, &cfg, &split, &device, &out, false, |_| {}).unwrap();
    assert_eq!(log.len(), 3);
    assert!(log
        .iter()
        .all(|r| r.loss.is_finite() && r.valid_ndcg.is_finite()));
    assert!(
        log[2].loss < log[0].loss,
        "the training loss should fall: {:?}",
        log.iter().map(|r| r.loss).collect::<Vec<_>>()
    );
    assert!(out.join("llm.json").exists() && out.join("adapter.safetensors").exists());
    // the folder restores the same policy
    let (cfg2, again) = load_llm_run(&out, &device).unwrap();
    assert_eq!(cfg2, run);
    let prompts = PromptBatch {
        histories: vec![split.test[0].history.clone()],
        exclude: vec![vec![]],
    };
    let a = policy.score_all(&prompts).unwrap();
    let b = again.score_all(&prompts).unwrap();
    let d = a[0]
        .iter()
        .zip(&b[0])
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(d < 1e-5, "reloaded policy differs by {d}");
}

#[test]
fn the_llm_policy_aligns_through_the_shared_trainer_and_resumes() {
    use blade_core::align::{train_align, AlignConfig, AlignInputs, Method, OptimConfig};
    use blade_core::reward::{parse_reward, CatalogInfo};
    use blade_core::sft::Dashboard;
    use blade_llm::LlmPolicy;

    let lora = LoraConfig {
        rank: 2,
        alpha: 4.0,
        ..LoraConfig::default()
    };
    let (dir, ds, split, run) = fixture(Some(lora), 3, 4);
    let device = Device::default();
    let sft = dir.path().join("sft");
    let cfg = LlmSftConfig {
        epochs: 0,
        valid_users: 4,
        ..LlmSftConfig::default()
    };
    train_llm_sft(&run, &cfg, &split, &device, &sft, false, |_| {}).unwrap();
    let catalog = CatalogInfo::from_dataset(&ds, &split);
    let reward = parse_reward("ndcg@10 + 0.2*ild", &catalog).unwrap();
    let inputs = AlignInputs {
        split: &split,
        catalog: &catalog,
        reward: reward.as_ref(),
        init: &sft,
        device: &device,
    };
    let align = |steps| {
        AlignConfig::new(Method::Blade.default_config())
            .with_steps(steps)
            .with_prompts_per_step(2)
            .with_group_size(3)
            .with_list_len(4)
            .with_reference_lists(4)
            .with_inner_epochs(1)
            .with_eval_every(0)
            .with_valid_users(Some(4))
            .with_optim(OptimConfig::new().with_lr(1e-2))
    };
    let out_dir = dir.path().join("blade");
    let out =
        train_align::<LlmPolicy>(&align(2), &inputs, &out_dir, Dashboard::Plain, false).unwrap();
    assert!(!out.summary.non_finite);
    assert_eq!(out.curves.len(), 3);
    assert!(out.curves[1..]
        .iter()
        .all(|c| c.kl.is_finite() && c.loss.is_finite()));
    // the adapters moved away from the SFT run's
    let (_, before) = load_llm_run(&sft, &device).unwrap();
    let prompts = PromptBatch {
        histories: vec![split.test[0].history.clone()],
        exclude: vec![vec![]],
    };
    let a = before.score_all(&prompts).unwrap();
    let b = out.model.score_all(&prompts).unwrap();
    assert!(
        a[0].iter().zip(&b[0]).any(|(x, y)| (x - y).abs() > 1e-6),
        "alignment changed nothing"
    );
    // resume to 3 steps: the same adapters, byte for byte, as 3 steps at once
    let more =
        train_align::<LlmPolicy>(&align(3), &inputs, &out_dir, Dashboard::Plain, true).unwrap();
    assert_eq!(more.curves.len(), 4);
    let straight = dir.path().join("blade-straight");
    train_align::<LlmPolicy>(&align(3), &inputs, &straight, Dashboard::Plain, false).unwrap();
    assert!(
        std::fs::read(straight.join("adapter.safetensors")).unwrap()
            == std::fs::read(out_dir.join("adapter.safetensors")).unwrap(),
        "the resumed LLM alignment ends with other adapters than an uninterrupted one"
    );
    // the title policy scores lists at temperature 1 only: another rollout temperature is
    // refused before anything is written
    let cold = dir.path().join("cold");
    let e = train_align::<LlmPolicy>(
        &align(1).with_rollout_temperature(0.5),
        &inputs,
        &cold,
        Dashboard::Plain,
        false,
    )
    .err()
    .expect("a rollout temperature the LLM policy cannot score")
    .to_string();
    assert!(e.contains("--rollout-temperature"), "{e}");
    assert!(!cold.exists(), "a refused run wrote its folder");
    // so is the ranking anchor: the title policy has no catalogue-wide first-slot distribution
    let anchored = align(1).with_optim(align(1).optim.with_rank_kl(1.0));
    let e = train_align::<LlmPolicy>(&anchored, &inputs, &cold, Dashboard::Plain, false)
        .err()
        .expect("a ranking anchor the LLM policy cannot compute")
        .to_string();
    assert!(e.contains("--rank-kl 1"), "{e}");
    assert!(!cold.exists(), "a refused run wrote its folder");
}

#[test]
fn full_fine_tuning_saves_and_restores_every_weight() {
    let (dir, _, split, run) = fixture(None, 3, 4);
    let cfg = LlmSftConfig {
        epochs: 1,
        lr: 1e-3,
        batch_size: 8,
        max_train_prompts: Some(16),
        // no validation users: every epoch ties the best and is kept
        valid_users: 0,
        ..LlmSftConfig::default()
    };
    let device = Device::default();
    let out = dir.path().join("full");
    let (trained, _) = train_llm_sft(&run, &cfg, &split, &device, &out, false, |_| {}).unwrap();
    assert!(out.join("model.bpk").exists() && !out.join("adapter.safetensors").exists());
    let (_, again) = load_llm_run(&out, &device).unwrap();
    let base = blade_llm::run::build_policy(&run, &device).unwrap();
    let prompts = PromptBatch {
        histories: vec![split.test[0].history.clone()],
        exclude: vec![vec![]],
    };
    let (a, b, c) = (
        trained.score_all(&prompts).unwrap(),
        again.score_all(&prompts).unwrap(),
        base.score_all(&prompts).unwrap(),
    );
    let diff = |x: &[f32], y: &[f32]| {
        x.iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max)
    };
    assert!(diff(&a[0], &b[0]) < 1e-5, "reload differs");
    assert!(
        diff(&a[0], &c[0]) > 1e-4,
        "full fine-tuning changed nothing"
    );
}

#[test]
fn llm_sft_resumes_exactly_and_refuses_other_settings() {
    let lora = LoraConfig {
        rank: 2,
        alpha: 4.0,
        ..LoraConfig::default()
    };
    let (dir, _, split, run) = fixture(Some(lora), 5, 10);
    let cfg = LlmSftConfig {
        epochs: 2,
        lr: 5e-3,
        batch_size: 8,
        max_train_prompts: Some(24),
        valid_users: 6,
        ..LlmSftConfig::default()
    };
    let device = Device::default();
    let straight = dir.path().join("straight");
    train_llm_sft(&run, &cfg, &split, &device, &straight, false, |_| {}).unwrap();
    // one epoch, then a resume to two, gives the same adapters byte for byte
    let parts = dir.path().join("parts");
    let one = LlmSftConfig {
        epochs: 1,
        ..cfg.clone()
    };
    train_llm_sft(&run, &one, &split, &device, &parts, false, |_| {}).unwrap();
    let (_, log) = train_llm_sft(&run, &cfg, &split, &device, &parts, true, |_| {}).unwrap();
    assert_eq!(log.len(), 2);
    for f in ["adapter.safetensors", "sft_log.json"] {
        if f == "sft_log.json" {
            // the log has wall times; compare everything else
            let strip = |p: &std::path::Path| -> Vec<(usize, u64, u64)> {
                let v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        (
                            r["step"].as_u64().unwrap() as usize,
                            r["loss"].as_f64().unwrap().to_bits(),
                            r["valid_ndcg"].as_f64().unwrap().to_bits(),
                        )
                    })
                    .collect()
            };
            assert_eq!(strip(&straight.join(f)), strip(&parts.join(f)));
        } else {
            assert!(
                std::fs::read(straight.join(f)).unwrap() == std::fs::read(parts.join(f)).unwrap(),
                "{f} differs between the resumed and the uninterrupted run"
            );
        }
    }
    // (optim.bpk itself is not compared: burn writes its per-parameter states in hash-map
    // order; the adapters after epoch 2 depend on the restored Adam moments)
    // a resume with another learning rate is refused and writes nothing
    let before = std::fs::read(parts.join("adapter.safetensors")).unwrap();
    let other = LlmSftConfig {
        lr: 1e-3,
        epochs: 3,
        ..cfg.clone()
    };
    let err = train_llm_sft(&run, &other, &split, &device, &parts, true, |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("other settings"), "{err}");
    assert!(std::fs::read(parts.join("adapter.safetensors")).unwrap() == before);
    assert!(parts.join("checkpoint/epoch-000002").exists());
    // and a resume with nothing to resume is an error
    let err = train_llm_sft(
        &run,
        &cfg,
        &split,
        &device,
        &dir.path().join("none"),
        true,
        |_| {},
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("cannot resume"), "{err}");
    assert!(!dir.path().join("none").exists());
}

/// Evaluation loads a LoRA run with its base in the GGUF's Q8_0 blocks (memory) and frozen
/// adapters: the scores equal the trainable f32 load's to float rounding, the adapters matter
/// (they move the scores), and nothing in the inference copy trains.
#[test]
fn a_lora_run_loaded_for_inference_keeps_its_blocks_and_its_scores() {
    use blade_llm::run::{build_policy, load_llm_run_for_inference, save_llm_run};
    let (dir, _, split, mut run) = fixture(
        Some(LoraConfig {
            rank: 2,
            alpha: 4.0,
            ..LoraConfig::default()
        }),
        3,
        4,
    );
    run.weights = dir.path().join("q8.gguf");
    write_tiny_gguf(
        &run.weights,
        &TinySpec {
            matrix_type: blade_llm::gguf::GgmlType::Q8_0,
            ..TinySpec::default()
        },
    )
    .unwrap();
    let device = Device::default();
    // adapters that do something: B = 0 at initialisation, so fill it
    let mut policy = build_policy(&run, &device).unwrap();
    let mut k = 0.0f32;
    for b in policy.model.blocks.iter_mut() {
        for p in [&mut b.attn.q, &mut b.attn.v, &mut b.mlp.down] {
            let l = p.lora.as_mut().unwrap();
            let [r, c] = l.b.dims();
            let v: Vec<f32> = (0..r * c)
                .map(|i| {
                    k += 1.0;
                    ((i as f32 * 0.37 + k).sin()) * 0.5
                })
                .collect();
            l.b = burn::module::Param::initialized(
                l.b.id,
                Tensor::<2>::from_data(TensorData::new(v, [r, c]), &device),
            );
        }
    }
    let out = dir.path().join("run");
    save_llm_run(&policy, &run, &out).unwrap();
    let (_, float) = load_llm_run(&out, &device).unwrap();
    let (_, quant) = load_llm_run_for_inference(&out, &device).unwrap();
    assert!(quant.model.quantised() && !float.model.quantised());
    let base = build_policy(&run, &device).unwrap();
    let prompts = PromptBatch {
        histories: split.test[..3].iter().map(|c| c.history.clone()).collect(),
        exclude: vec![vec![]; 3],
    };
    let (f, q, b) = (
        float.score_all(&prompts).unwrap(),
        quant.score_all(&prompts).unwrap(),
        base.score_all(&prompts).unwrap(),
    );
    let diff = |x: &[Vec<f32>], y: &[Vec<f32>]| {
        x.iter()
            .flatten()
            .zip(y.iter().flatten())
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max)
    };
    let scale = f.iter().flatten().fold(0f32, |m, x| m.max(x.abs()));
    assert!(
        diff(&f, &q) / scale < 1e-5,
        "quantised inference load differs: {}",
        diff(&f, &q) / scale
    );
    assert!(diff(&f, &b) > 1e-3, "the adapters should move the scores");
    // nothing trains in the inference copy
    let blk = &quant.model.blocks[0];
    let l = blk.attn.q.lora.as_ref().unwrap();
    assert!(!l.a.is_require_grad() && !l.b.is_require_grad());
}
