//! SFT learns the synthetic data's sequential structure, saves a model that loads back
//! identically, resumes from its checkpoints exactly, and refuses a resume with other settings.

use blade_core::sft::{latest_checkpoint, load_item_lm, train_sft, Dashboard};
use blade_core::{
    BackendSpec, EvalConfig, Evaluator, ItemLmConfig, PopRecommender, Recommender, SftConfig,
};
use blade_data::synthetic::{generate, SyntheticConfig};
use blade_data::{Dataset, PreprocessConfig};

/// The synthetic data of these tests: 200 users, 120 items, prompts of 6 items.
fn data() -> (Dataset, blade_data::Split) {
    let raw = generate(&SyntheticConfig {
        users: 200,
        items: 120,
        ..SyntheticConfig::tiny()
    });
    let ds = Dataset::from_raw(&raw, &PreprocessConfig::default()).unwrap();
    let split = ds.leave_one_out(6);
    (ds, split)
}

/// 4 epochs of a small model (d = 32, L = 6, K = 10), lr 3e-3, batches of 64.
fn small_config(ds: &Dataset) -> SftConfig {
    SftConfig::new(
        ItemLmConfig::new(ds.num_items())
            .with_max_history(6)
            .with_max_list(10)
            .with_d_model(32),
    )
    .with_epochs(4)
    .with_lr(3e-3)
    .with_batch_size(64)
}

#[test]
fn sft_beats_popularity_saves_and_resumes() {
    let (ds, split) = data();
    let device = BackendSpec::Flex.device().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(&ds);
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

    let lists = assert_beats_pop(&ds, &split, &out.model, "SFT");
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

    // resume: two more epochs continue from checkpoint 4; the best epoch is chosen over all six
    let more = config.clone().with_epochs(6).with_patience(10);
    let resumed = train_sft(&more, &split, &device, dir.path(), Dashboard::Plain, true).unwrap();
    assert_eq!(
        resumed.epochs_run, 2,
        "only epochs 5 and 6 run after resuming"
    );
    assert_eq!(resumed.valid_ndcg.len(), 6);
    assert_eq!(&resumed.valid_ndcg[..4], &out.valid_ndcg[..]);
    let best = resumed
        .valid_ndcg
        .iter()
        .enumerate()
        .fold(
            (0, f64::NEG_INFINITY),
            |a, (i, &v)| if v > a.1 { (i + 1, v) } else { a },
        );
    assert_eq!(resumed.best_epoch, best.0);
    assert_eq!(latest_checkpoint(dir.path()), Some(6));

    // resuming a finished run runs nothing and keeps its best model
    let model_bytes = std::fs::read(&resumed.model_path).unwrap();
    let again = train_sft(&more, &split, &device, dir.path(), Dashboard::Plain, true).unwrap();
    assert_eq!(again.epochs_run, 0);
    assert_eq!(again.best_epoch, resumed.best_epoch);
    assert_eq!(std::fs::read(&again.model_path).unwrap(), model_bytes);

    // the two-step run (4 epochs, then 2 more) is the same, byte for byte, as 6 epochs at once
    let straight = tempfile::tempdir().unwrap();
    let s6 = train_sft(
        &more,
        &split,
        &device,
        straight.path(),
        Dashboard::Plain,
        false,
    )
    .unwrap();
    assert_eq!(s6.valid_ndcg, resumed.valid_ndcg);
    assert_eq!(std::fs::read(&s6.model_path).unwrap(), model_bytes);

    // a resume with another architecture or other data is refused before anything is written
    let config_before = std::fs::read(dir.path().join("config.json")).unwrap();
    let mut other = more.clone();
    other.model = other.model.with_d_model(16);
    let err = train_sft(&other, &split, &device, dir.path(), Dashboard::Plain, true)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("model.d_model: run 32, now 16"), "{err}");
    let fewer = more.clone().with_max_train_prompts(Some(50));
    let err = train_sft(&fewer, &split, &device, dir.path(), Dashboard::Plain, true)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("max_train_prompts"), "{err}");
    let mut shorter = split.clone();
    shorter.train_sequences.truncate(100);
    let err = train_sft(&more, &shorter, &device, dir.path(), Dashboard::Plain, true)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("the data differ"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("config.json")).unwrap(),
        config_before
    );
    assert_eq!(std::fs::read(&resumed.model_path).unwrap(), model_bytes);

    // a config.json of an older version, without the settings added since, still loads
    let mut old: serde_json::Value = serde_json::from_slice(&config_before).unwrap();
    old.as_object_mut().unwrap().remove("objective");
    old.as_object_mut().unwrap().remove("window_stride");
    std::fs::write(dir.path().join("config.json"), old.to_string()).unwrap();
    let (cfg, _) = load_item_lm(dir.path(), &device).unwrap();
    assert_eq!(cfg.objective, blade_core::SftObjective::Windows);
}

#[test]
fn resume_without_a_checkpoint_is_an_error_that_writes_nothing() {
    let raw = generate(&SyntheticConfig::tiny());
    let ds = Dataset::from_raw(&raw, &PreprocessConfig::default()).unwrap();
    let split = ds.leave_one_out(6);
    let device = BackendSpec::Flex.device().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let config = SftConfig::new(ItemLmConfig::new(ds.num_items()).with_max_history(6));
    let err = train_sft(&config, &split, &device, &run, Dashboard::Plain, true)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("cannot resume"), "{err}");
    assert!(!run.exists());
}

#[test]
fn loading_a_folder_without_a_model_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let device = BackendSpec::Flex.device().unwrap();
    let err = load_item_lm(dir.path(), &device).err().unwrap().to_string();
    assert!(err.contains("config.json"), "{err}");
}

/// `--max-train-prompts` keeps every user's most recent windows and shares the cap evenly; it
/// once kept the last windows of the split, so the first users lost all of theirs.
#[test]
fn capped_windows_are_each_users_most_recent_shared_evenly() {
    use blade_core::sft::train_windows;
    let (_, split) = data();
    let key = |w: &blade_core::sft::SftItem| (w.history.clone(), w.targets.clone());
    let all: Vec<_> = train_windows(&split, 10, None, 1).iter().map(key).collect();
    // the uncapped windows, user by user (one per item after the first)
    let mut groups = Vec::new();
    let mut at = 0;
    for seq in &split.train_sequences {
        let n = seq.len().saturating_sub(1);
        groups.push(&all[at..at + n]);
        at += n;
    }
    assert_eq!(at, all.len());
    let users = groups.iter().filter(|g| !g.is_empty()).count();
    for cap in [users / 2, users + 7, all.len() / 3, all.len() - 1] {
        let kept: Vec<_> = train_windows(&split, 10, Some(cap), 1)
            .iter()
            .map(key)
            .collect();
        assert_eq!(kept.len(), cap);
        // each user contributes the most recent suffix of its windows, users in order
        let mut at = 0;
        let mut share = Vec::new();
        for g in &groups {
            let k = (0..=g.len().min(kept.len() - at))
                .rev()
                .find(|&k| kept[at..at + k] == g[g.len() - k..])
                .unwrap();
            share.push((g.len(), k));
            at += k;
        }
        assert_eq!(
            at, cap,
            "every kept window is a user's most recent: {share:?}"
        );
        // evenly: a user short of its windows keeps the even share c or c + 1, and any user
        // with at most c windows keeps them all
        let c = share
            .iter()
            .filter(|(n, k)| k < n)
            .map(|&(_, k)| k)
            .min()
            .unwrap();
        for &(n, k) in &share {
            assert!(
                k == n.min(c) || k == c + 1,
                "uneven share (c = {c}): {share:?}"
            );
        }
        if cap >= users {
            assert!(share.iter().all(|&(n, k)| n == 0 || k > 0), "{share:?}");
        } else {
            // fewer windows than users: one each, spread over the split, not its first users
            let half = share.len() / 2;
            let second: usize = share[half..].iter().map(|&(_, k)| k).sum();
            assert!(second * 3 >= cap, "{second} of {cap} in the second half");
        }
    }
}

#[test]
fn the_causal_objective_learns_and_strided_windows_keep_each_sequence_end() {
    use blade_core::sft::{train_items, train_windows};
    use blade_core::SftObjective;
    let (ds, split) = data();
    // windows every 6 items, counted back from the end: each sequence keeps its last window
    let all = train_items(&split, 10, None);
    let strided = train_windows(&split, 10, None, 6);
    assert!(
        strided.len() * 4 < all.len(),
        "{} vs {}",
        strided.len(),
        all.len()
    );
    for seq in &split.train_sequences {
        if seq.len() > 1 {
            let last = &seq[seq.len().saturating_sub(7)..seq.len() - 1];
            assert!(strided.iter().any(|w| w.history == last));
        }
    }
    let device = BackendSpec::Flex.device().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(&ds)
        .with_batch_size(32)
        .with_objective(SftObjective::Causal);
    assert_eq!(
        config.stride(),
        6,
        "causal windows default to every L items"
    );
    // measured here (validation NDCG@10 after 4 epochs): windows 0.235, causal with every
    // window 0.247; with a window every 6 items both plateau lower (best of 16 epochs: causal
    // 0.185, windows 0.169), so the test trains causal on every window
    let config = config.with_window_stride(1);
    let out = train_sft(
        &config,
        &split,
        &device,
        dir.path(),
        Dashboard::Plain,
        false,
    )
    .unwrap();
    assert_beats_pop(&ds, &split, &out.model, "causal SFT");
}

/// Test NDCG@10 (full ranking) of `model` clearly above popularity's; returns its lists.
fn assert_beats_pop(
    ds: &Dataset,
    split: &blade_data::Split,
    model: &blade_core::ItemLm,
    what: &str,
) -> blade_core::EvalLists {
    let ev = Evaluator::new(ds, split, EvalConfig::default()).unwrap();
    let (sft, lists) = ev.evaluate(model, &split.test, &mut |_, _| {}).unwrap();
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
        "{what} NDCG@10 {s:.4} should clearly beat pop {p:.4}"
    );
    lists
}

#[test]
fn sharded_sft_learns_reproduces_and_resumes_exactly() {
    let (ds, split) = data();
    let device = BackendSpec::Flex.device().unwrap();
    let config = small_config(&ds).with_grad_shards(3);
    let train = |cfg: &SftConfig, dir: &std::path::Path, resume: bool| {
        train_sft(cfg, &split, &device, dir, Dashboard::Plain, resume).unwrap()
    };
    let a = tempfile::tempdir().unwrap();
    let first = train(&config.clone().with_epochs(2), a.path(), false);
    let resumed = train(&config, a.path(), true);
    assert_eq!(resumed.epochs_run, 2);
    assert_beats_pop(&ds, &split, &resumed.model, "sharded SFT");
    // the same run at once, twice: the same model file, byte for byte, as the resumed one
    // (the dropout noise is drawn per epoch, batch and shard, whatever the threads' timing)
    let bytes = std::fs::read(&resumed.model_path).unwrap();
    for _ in 0..2 {
        let b = tempfile::tempdir().unwrap();
        let straight = train(&config, b.path(), false);
        assert_eq!(straight.valid_ndcg, resumed.valid_ndcg);
        assert_eq!(&straight.valid_ndcg[..2], &first.valid_ndcg[..]);
        assert_eq!(std::fs::read(&straight.model_path).unwrap(), bytes);
    }
    // another shard count is another noise stream: a resume with it is refused, untouched
    let err = train_sft(
        &config.clone().with_epochs(6).with_grad_shards(2),
        &split,
        &device,
        a.path(),
        Dashboard::Plain,
        true,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("grad_shards: run 3, now 2"), "{err}");
    assert_eq!(std::fs::read(&resumed.model_path).unwrap(), bytes);
    // and 0 shards is refused by name
    let err = config
        .clone()
        .with_grad_shards(0)
        .check()
        .unwrap_err()
        .to_string();
    assert!(err.contains("--sft-grad-shards 0"), "{err}");
    // a config.json from before the setting reads as one pass
    let text = std::fs::read_to_string(a.path().join("config.json")).unwrap();
    let mut old: serde_json::Value = serde_json::from_str(&text).unwrap();
    old.as_object_mut().unwrap().remove("grad_shards");
    let p = a.path().join("old.json");
    std::fs::write(&p, old.to_string()).unwrap();
    assert_eq!(SftConfig::read(&p).unwrap().grad_shards, 1);
}
