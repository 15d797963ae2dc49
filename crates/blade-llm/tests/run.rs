//! LLM run folders and SFT on a tiny random model and tiny synthetic data.

use blade_core::batch::PromptBatch;
use blade_core::policy::Recommender;
use blade_data::synthetic::{generate, SyntheticConfig};
use blade_data::{Dataset, PreprocessConfig};
use blade_llm::model::LoraConfig;
use blade_llm::run::{load_llm_run, train_llm_sft, LlmRunConfig, LlmSftConfig};
use blade_llm::testing::{write_tiny_gguf, TinySpec};
use blade_llm::PromptTemplate;
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
    let (policy, log) = train_llm_sft(&run, &cfg, &split, &device, &out, |_| {}).unwrap();
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
    train_llm_sft(&run, &cfg, &split, &device, &sft, |_| {}).unwrap();
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
    // resume to 3 steps
    let more =
        train_align::<LlmPolicy>(&align(3), &inputs, &out_dir, Dashboard::Plain, true).unwrap();
    assert_eq!(more.curves.len(), 4);
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
    let (trained, _) = train_llm_sft(&run, &cfg, &split, &device, &out, |_| {}).unwrap();
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
