//! SFT through burn-train learns the synthetic data's sequential structure, saves a model that
//! loads back identically, and resumes from its checkpoints.

use blade_core::sft::{latest_checkpoint, load_item_lm, train_sft, Dashboard};
use blade_core::{
    BackendSpec, EvalConfig, Evaluator, ItemLmConfig, PopRecommender, Recommender, SftConfig,
};
use blade_data::synthetic::{generate, SyntheticConfig};
use blade_data::{Dataset, PreprocessConfig};

#[test]
fn sft_beats_popularity_saves_and_resumes() {
    let raw = generate(&SyntheticConfig {
        users: 200,
        items: 120,
        ..SyntheticConfig::tiny()
    });
    let ds = Dataset::from_raw(&raw, &PreprocessConfig::default()).unwrap();
    let split = ds.leave_one_out(6);
    let device = BackendSpec::Flex.device().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = SftConfig::new(
        ItemLmConfig::new(ds.num_items())
            .with_max_history(6)
            .with_max_list(10)
            .with_d_model(32),
    )
    .with_epochs(4)
    .with_lr(3e-3)
    .with_batch_size(64);
    let out = train_sft(
        &config,
        &split,
        &device,
        dir.path(),
        Dashboard::Plain,
        false,
    )
    .unwrap();
    assert_eq!(out.valid_ndcg.len(), 4);
    assert!(out
        .valid_ndcg
        .iter()
        .all(|v| v.is_finite() && (0.0..=1.0).contains(v)));
    assert!(dir.path().join("config.json").exists() && out.model_path.exists());
    assert_eq!(latest_checkpoint(dir.path()), Some(4));

    let ev = Evaluator::new(&ds, &split, EvalConfig::default()).unwrap();
    let (sft, lists) = ev
        .evaluate(&out.model, &split.test, &mut |_, _| {})
        .unwrap();
    let (pop, _) = ev
        .evaluate(
            &PopRecommender::new(&split.item_popularity),
            &split.test,
            &mut |_, _| {},
        )
        .unwrap();
    let s = sft.full_ranking.get("ndcg@10").unwrap();
    let p = pop.full_ranking.get("ndcg@10").unwrap();
    assert!(
        s > 1.3 * p,
        "SFT NDCG@10 {s:.4} should clearly beat pop {p:.4}"
    );
    assert_eq!(lists.generated.len(), split.test.len());
    for (l, c) in lists.generated.iter().zip(&split.test) {
        assert!(
            l.iter().all(|i| !c.seen.contains(i)),
            "history masking violated"
        );
    }

    // the saved model reproduces the trained one
    let (_, loaded) = load_item_lm(dir.path(), &device).unwrap();
    let prompts = blade_core::PromptBatch::from_cases(&split.test[..4], true);
    let a = out.model.score_all(&prompts).unwrap();
    let b = loaded.score_all(&prompts).unwrap();
    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
        assert!((x - y).abs() < 1e-5);
    }

    // resume: two more epochs continue from checkpoint 4
    let more = config.clone().with_epochs(6).with_patience(10);
    let resumed = train_sft(&more, &split, &device, dir.path(), Dashboard::Plain, true).unwrap();
    assert_eq!(
        resumed.valid_ndcg.len(),
        2,
        "only epochs 5 and 6 run after resuming"
    );
    assert!(resumed.best_epoch >= 5);
    assert_eq!(latest_checkpoint(dir.path()), Some(6));
}

#[test]
fn loading_a_folder_without_a_model_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let device = BackendSpec::Flex.device().unwrap();
    let err = load_item_lm(dir.path(), &device).err().unwrap().to_string();
    assert!(err.contains("config.json"), "{err}");
}
