//! The next-item term (PPO-ptx) and the ranking anchor (docs/METHOD.md section 5), in a test
//! binary of its own. Next to `align_options` in one process, before `device::seeded_init`
//! existed, the two tests' SFT runs raced on burn's process-wide random generator and got other
//! models from run to run, and `align_options`' data-dependent selection check failed with some.

mod common;

use blade_core::align::{
    prompt_pool, train_align, AlignInputs, AlignPolicy, Method, OptimConfig, PromptPool, StepRecord,
};
use blade_core::reward::{parse_reward, CatalogInfo};
use blade_core::sft::Dashboard;
use blade_core::{BackendSpec, ItemLm, Policy, PromptBatch};

use common::short_align as base;

/// The next-item term (PPO-ptx) and the ranking anchor: reported only when on, doing what
/// they are for when weighted heavily, and the same gradient whether the lists' terms are cut
/// into shards or not.
#[test]
fn the_next_item_term_and_the_ranking_anchor_train_in_shards_and_in_one_pass() {
    let root = tempfile::tempdir().unwrap();
    let sft = root.path().join("sft");
    let (ds, split) = common::synthetic_sft(&sft, 120, 60, 2);
    let device = BackendSpec::Flex.device().unwrap();
    let catalog = CatalogInfo::from_dataset(&ds, &split);
    let reward = parse_reward("ndcg@10", &catalog).unwrap();
    let inputs = AlignInputs {
        split: &split,
        catalog: &catalog,
        reward: reward.as_ref(),
        init: &sft,
        device: &device,
    };
    let train = |name: &str, shards: usize, optim: OptimConfig| -> Vec<StepRecord> {
        let cfg = base(Method::Grpo, 4)
            .with_grad_shards(shards)
            .with_optim(optim.with_lr(2e-3));
        let dir = root.path().join(name);
        train_align::<ItemLm>(&cfg, &inputs, &dir, Dashboard::Plain, false)
            .unwrap()
            .curves
    };
    let run = |name: &str, shards: usize, ptx: f32| {
        train(name, shards, OptimConfig::new().with_ptx_coef(ptx))
    };
    let anchored = |name: &str, shards: usize, coef: f32| {
        train(name, shards, OptimConfig::new().with_rank_kl(coef))
    };
    let off = run("off", 4, 0.0);
    assert!(off[1..].iter().all(|c| c.next_nll == 0.0));
    let one = run("one", 1, 20.0);
    let four = run("four", 4, 20.0);
    assert!(one[1].next_nll > 0.0, "{one:?}");
    // on one fixed set of prompts (each user's last training window; the steps' batches differ
    // from run to run): a heavy weight fits their next items better than no term, and holds
    // the first-slot distribution nearer the SFT model's than a negligible anchor
    let pool = prompt_pool(&split, PromptPool::Last(1), 1);
    let prompts = PromptBatch {
        histories: pool.iter().map(|p| p.history.clone()).collect(),
        exclude: pool.iter().map(|p| p.seen.clone()).collect(),
    };
    let nexts: Vec<Vec<u32>> = pool.iter().map(|p| vec![p.targets[0]]).collect();
    let model = |name: &str| ItemLm::load_run(&root.path().join(name), &device).unwrap();
    let nll = |name: &str| -> f32 {
        let lp = model(name).log_prob(&prompts, &nexts).unwrap();
        -lp.mean().into_data().try_to_vec::<f32>().unwrap()[0]
    };
    let reference = ItemLm::load_run(&sft, &device)
        .unwrap()
        .first_slot_log_probs(&prompts)
        .unwrap();
    let rank_kl = |name: &str| -> f32 {
        let logp = model(name).first_slot_log_probs(&prompts).unwrap();
        let p = reference.clone().exp();
        let kl = (p * (reference.clone() - logp)).sum_dim(1).mean();
        kl.into_data().try_to_vec::<f32>().unwrap()[0]
    };
    let (fitted, free) = (nll("one"), nll("off"));
    assert!(
        fitted < free,
        "next-item NLL with the term {fitted}, without {free}"
    );
    // the term's gradient reaches the sharded pass: the runs agree after the first update
    for t in 1..=4 {
        let (a, b) = (one[t].next_nll, four[t].next_nll);
        assert!((a - b).abs() <= 1e-3 * a.abs(), "step {t}: {a} vs {b}");
        assert_eq!(one[t].reward, four[t].reward, "step {t}");
    }
    assert_ne!(one[2].reward, off[2].reward, "the term changes training");
    assert!(off[1..].iter().all(|c| c.rank_kl == 0.0));

    // the ranking anchor: a heavy weight keeps the first-slot distribution nearer the
    // reference's than a negligible one (which still reports it), in shards as in one pass
    let light = anchored("light", 4, 1e-6);
    let heavy = anchored("heavy", 4, 50.0);
    let heavy_one = anchored("heavy1", 1, 50.0);
    assert!(light[4].rank_kl > 0.0, "{light:?}");
    let (held, drifted) = (rank_kl("heavy"), rank_kl("light"));
    assert!(
        held < 0.5 * drifted,
        "first-slot KL to SFT anchored {held} vs free {drifted}"
    );
    for t in 1..=4 {
        let (a, b) = (heavy_one[t].rank_kl, heavy[t].rank_kl);
        assert!(
            (a - b).abs() <= 1e-3 * a.abs().max(1e-6),
            "step {t}: {a} vs {b}"
        );
        assert_eq!(heavy_one[t].reward, heavy[t].reward, "step {t}");
    }
    // a negative weight is refused, naming the flag
    let e = base(Method::Grpo, 1)
        .with_optim(OptimConfig::new().with_ptx_coef(-1.0))
        .check()
        .unwrap_err()
        .to_string();
    assert!(e.contains("--ptx-coef -1"), "{e}");
    let e = base(Method::Grpo, 1)
        .with_optim(OptimConfig::new().with_rank_kl(f32::NAN))
        .check()
        .unwrap_err()
        .to_string();
    assert!(e.contains("--rank-kl NaN"), "{e}");
}
