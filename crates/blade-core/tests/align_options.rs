//! Every trainer option changes what it should (docs/METHOD.md sections 4, 5 and 7), on small
//! synthetic data: each check compares a short run with the option against one without it.

mod common;

use std::path::Path;

use blade_core::align::{
    prompt_pool, train_align, AdvantageScaling, AlignConfig, AlignInputs, AlignOutcome,
    AlignPolicy, DynamicSampling, KlEstimator, LossAggregation, LrSchedule, Method, OptimConfig,
    PromptPool, RatioLevel, SelectCorrection, StepRecord, BEST_DIR,
};
use blade_core::reward::{parse_reward, CatalogInfo};
use blade_core::sft::Dashboard;
use blade_core::{BackendSpec, ItemLm, Policy, PromptBatch};
use blade_data::{Dataset, Split};

fn setup(dir: &Path) -> (Dataset, Split) {
    common::synthetic_sft(dir, 120, 60, 2)
}

use common::short_align as base;

#[test]
fn every_option_changes_what_it_should() {
    let root = tempfile::tempdir().unwrap();
    let sft = root.path().join("sft");
    let (ds, split) = setup(&sft);
    let device = BackendSpec::Flex.device().unwrap();
    let catalog = CatalogInfo::from_dataset(&ds, &split);
    let reward = parse_reward("ndcg@10", &catalog).unwrap();
    let sparse = parse_reward("hit@1", &catalog).unwrap();
    let inputs = AlignInputs {
        split: &split,
        catalog: &catalog,
        reward: reward.as_ref(),
        init: &sft,
        device: &device,
    };
    let n = std::cell::Cell::new(0);
    let run = |cfg: &AlignConfig, inputs: &AlignInputs| -> AlignOutcome<ItemLm> {
        n.set(n.get() + 1);
        let dir = root.path().join(format!("run{}", n.get()));
        train_align::<ItemLm>(cfg, inputs, &dir, Dashboard::Plain, false).unwrap()
    };
    let o = |f: fn(OptimConfig) -> OptimConfig| f(OptimConfig::new().with_lr(2e-3));
    let step1 = |out: &AlignOutcome<ItemLm>| out.curves[1].clone();

    // dynamic sampling: zero-spread groups never reach the loss; refill draws replacements
    let sparse_inputs = AlignInputs {
        reward: sparse.as_ref(),
        ..inputs
    };
    let off = run(&base(Method::Grpo, 3), &sparse_inputs);
    let drop = run(
        &base(Method::Grpo, 3).with_optim(o(|c| c.with_dynamic_sampling(DynamicSampling::Drop))),
        &sparse_inputs,
    );
    let refill = run(
        &base(Method::Grpo, 3)
            .with_optim(o(|c| c.with_dynamic_sampling(DynamicSampling::Refill(4)))),
        &sparse_inputs,
    );
    let b = 12;
    assert!(off.curves[1..]
        .iter()
        .all(|c| c.groups_used == b && c.groups_dropped == 0));
    let zero = |c: &StepRecord| (c.zero_spread_raw * b as f64).round() as usize;
    for c in &drop.curves[1..] {
        assert_eq!(c.groups_dropped, zero(c), "step {}", c.step);
        assert_eq!(c.groups_used, b - c.groups_dropped, "step {}", c.step);
    }
    assert!(
        drop.curves[1..].iter().any(|c| c.groups_dropped > 0),
        "hit@1 leaves some groups without spread"
    );
    assert_eq!(
        step1(&off).reward,
        step1(&drop).reward,
        "same rollouts at step 1"
    );
    assert!(refill.curves[1..].iter().all(|c| c.groups_used <= b));
    let used =
        |out: &AlignOutcome<ItemLm>| out.curves[1..].iter().map(|c| c.groups_used).sum::<usize>();
    assert!(
        used(&refill) > used(&drop),
        "refill {} vs drop {}",
        used(&refill),
        used(&drop)
    );
    assert!(refill.curves[1].groups_dropped >= drop.curves[1].groups_dropped);

    // advantage scaling, clip ranges, KL estimator, entropy bonus: same rollouts, other loss
    let group = run(&base(Method::Grpo, 1), &inputs);
    let none = run(
        &base(Method::Grpo, 1).with_optim(o(|c| c.with_advantage(AdvantageScaling::None))),
        &inputs,
    );
    let batch = run(
        &base(Method::Grpo, 1).with_optim(o(|c| c.with_advantage(AdvantageScaling::Batch))),
        &inputs,
    );
    assert_eq!(step1(&group).reward, step1(&none).reward);
    assert_ne!(step1(&group).loss, step1(&none).loss);
    assert_ne!(step1(&none).loss, step1(&batch).loss);
    let tight = run(
        &base(Method::Grpo, 1).with_optim(o(|c| c.with_clip_low(0.0).with_clip_high(0.0))),
        &inputs,
    );
    assert!(
        step1(&tight).clip_frac > step1(&group).clip_frac,
        "a zero clip range clips every moved ratio: {} vs {}",
        step1(&tight).clip_frac,
        step1(&group).clip_frac
    );
    assert!(step1(&tight).clip_frac > 0.9);
    let k1 = run(
        &base(Method::Grpo, 1).with_optim(o(|c| c.with_kl(KlEstimator::K1))),
        &inputs,
    );
    assert_eq!(step1(&k1).reward, step1(&group).reward);
    assert_ne!(step1(&k1).kl, step1(&group).kl);
    assert!(step1(&group).kl >= 0.0, "k3 is non-negative");
    // the KL in the reward: with beta 0 the same updates as no penalty (so the same loss and
    // k1 estimate as k1 at beta 0); with beta > 0 other advantages, and no KL term in the loss
    let beta = |kl: KlEstimator, b: f32| {
        run(
            &base(Method::BonStatic, 2)
                .with_optim(OptimConfig::new().with_lr(2e-3).with_kl(kl).with_beta_kl(b)),
            &inputs,
        )
    };
    let (in_reward0, k1_0) = (beta(KlEstimator::Reward, 0.0), beta(KlEstimator::K1, 0.0));
    assert_eq!(step1(&in_reward0).loss, step1(&k1_0).loss);
    assert_eq!(step1(&in_reward0).kl, step1(&k1_0).kl);
    let in_reward = beta(KlEstimator::Reward, 5.0);
    assert_eq!(step1(&in_reward).reward, step1(&in_reward0).reward);
    // at step 1 the policy is the reference (no penalty); at step 2 it has moved
    assert!(in_reward.curves[2].kl.abs() > 0.0);
    assert_ne!(in_reward.curves[2].loss, in_reward0.curves[2].loss);
    let ent = run(
        &base(Method::Grpo, 1).with_optim(o(|c| c.with_entropy_coef(0.5))),
        &inputs,
    );
    assert_ne!(step1(&ent).loss, step1(&group).loss);
    // token-level and GSPO ratios: same rollouts, another surrogate; the aggregations weigh
    // the tokens differently, and a zero clip range clips every moved GSPO ratio
    let token = run(
        &base(Method::Grpo, 1).with_optim(o(|c| c.with_ratio(RatioLevel::Token))),
        &inputs,
    );
    let dapo = run(
        &base(Method::Grpo, 1).with_optim(o(|c| {
            c.with_ratio(RatioLevel::Token)
                .with_loss_agg(LossAggregation::SeqMeanTokenSumNorm)
        })),
        &inputs,
    );
    let gspo = run(
        &base(Method::Grpo, 1).with_optim(o(|c| c.with_ratio(RatioLevel::Gspo))),
        &inputs,
    );
    for r in [&token, &dapo, &gspo] {
        assert_eq!(step1(r).reward, step1(&group).reward);
        assert!(step1(r).loss.is_finite());
    }
    assert_ne!(step1(&token).loss, step1(&group).loss);
    assert_ne!(step1(&gspo).loss, step1(&group).loss);
    // every item list has K tokens, so token-mean and seq-mean-token-sum-norm are one
    // quantity here, up to rounding (they differ on lists of unequal lengths, LLM titles:
    // `token_level_surrogates_aggregate_as_documented` in loss.rs)
    let (a, b) = (step1(&token).loss, step1(&dapo).loss);
    assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{a} vs {b}");
    let tight_gspo = run(
        &base(Method::Grpo, 1).with_optim(o(|c| {
            c.with_ratio(RatioLevel::Gspo)
                .with_clip_low(0.0)
                .with_clip_high(0.0)
        })),
        &inputs,
    );
    assert!(
        step1(&tight_gspo).clip_frac > 0.9,
        "{}",
        step1(&tight_gspo).clip_frac
    );
    let no_kl = run(
        &base(Method::Grpo, 1).with_optim(o(|c| c.with_beta_kl(0.0))),
        &inputs,
    );
    assert!(no_kl.curves[1].loss.is_finite(), "beta_kl = 0 is allowed");

    // gradient-norm clipping: the norm is reported and a tiny cap keeps the policy at the start
    let free = run(&base(Method::Grpo, 3), &inputs);
    let capped = run(
        &base(Method::Grpo, 3).with_optim(o(|c| c.with_max_grad_norm(Some(1e-6)))),
        &inputs,
    );
    assert!(free.curves[1..].iter().all(|c| c.grad_norm > 0.0));
    assert!(
        capped.curves[3].kl < free.curves[3].kl,
        "capped KL {} vs free {}",
        capped.curves[3].kl,
        free.curves[3].kl
    );

    // schedules: warm-up starts low, linear decay ends low
    let sched = run(
        &base(Method::Grpo, 4)
            .with_optim(o(|c| c.with_schedule(LrSchedule::Linear).with_warmup(3))),
        &inputs,
    );
    let lr: Vec<f64> = sched.curves[1..].iter().map(|c| c.lr).collect();
    assert!(lr[0] > 0.0 && lr[0] < 2e-3 && lr[3] < lr[1], "{lr:?}");
    assert!(free.curves[1..].iter().all(|c| c.lr == 2e-3));

    // best-checkpoint selection and early stopping: a selection metric that never improves
    // keeps the SFT start as the best and stops after `patience` evaluations
    let stop = run(
        &base(Method::Blade, 10)
            .with_eval_every(1)
            .with_select("ndcg@10 - ndcg@10".into())
            .with_patience(Some(2)),
        &inputs,
    );
    let s = &stop.summary;
    assert!(
        s.stopped_early && s.steps_run == 2 && s.best_step == 0,
        "{s:?}"
    );
    assert_eq!(stop.curves.len(), 3);
    let best_dir = root.path().join(format!("run{}", n.get())).join(BEST_DIR);
    let best = ItemLm::load_run(&best_dir, &device).unwrap();
    let start = ItemLm::load_run(&sft, &device).unwrap();
    let prompts = PromptBatch {
        histories: vec![vec![1, 2, 3]],
        exclude: vec![vec![]],
    };
    let lp = |m: &ItemLm| {
        m.log_prob(&prompts, &[vec![4, 5, 6]])
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    assert_eq!(
        lp(&best),
        lp(&start),
        "the best checkpoint is the SFT start"
    );
    let sel = run(&base(Method::Blade, 4).with_eval_every(2), &inputs);
    let metrics: Vec<(usize, f64)> = sel
        .curves
        .iter()
        .filter_map(|c| c.valid_metric.map(|m| (c.step, m)))
        .collect();
    assert_eq!(
        metrics.iter().map(|m| m.0).collect::<Vec<_>>(),
        vec![0, 2, 4]
    );
    let top = metrics
        .iter()
        .map(|m| m.1)
        .fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(sel.summary.best_metric, Some(top));
    let first_top = metrics.iter().find(|m| m.1 == top).unwrap().0;
    assert_eq!(sel.summary.best_step, first_top);

    // the static ceilings: reference mean <= E[best of N] <= max of M, on the pool and held out
    for c in [sel.summary.ceilings_pool, sel.summary.ceilings_valid] {
        let bon = c.expected_bon.unwrap();
        assert!(
            c.reference_mean <= bon + 1e-12 && bon <= c.max_of_m + 1e-12,
            "{c:?}"
        );
        assert!(c.prompts > 0);
    }
    // validation users cap the held-out prompts
    let few = run(&base(Method::Grpo, 1).with_valid_users(Some(7)), &inputs);
    assert_eq!(few.summary.ceilings_valid.prompts, 7);
    assert_eq!(sel.summary.ceilings_valid.prompts, split.valid.len());
    // --valid-holdout: the validating users' windows leave the pool, nothing else does
    let held_users: std::collections::HashSet<_> =
        split.valid[..7].iter().map(|c| c.user).collect();
    let full_pool = prompt_pool(&split, PromptPool::Last(1), 1);
    let kept = full_pool
        .iter()
        .filter(|p| !held_users.contains(&p.user))
        .count();
    assert!(kept > 0 && kept < full_pool.len());
    let held = run(
        &base(Method::Grpo, 1)
            .with_valid_users(Some(7))
            .with_valid_holdout(true),
        &inputs,
    );
    assert_eq!(few.summary.prompts, full_pool.len());
    assert_eq!(held.summary.prompts, kept);
    assert_eq!(held.summary.ceilings_valid.prompts, 7);
    // with every user validating, nothing is left to align on: refused, naming the flag
    let none_left = root.path().join("none-left");
    let err = train_align::<ItemLm>(
        &base(Method::Grpo, 1).with_valid_holdout(true),
        &inputs,
        &none_left,
        Dashboard::Plain,
        false,
    )
    .err()
    .expect("an empty pool is refused")
    .to_string();
    assert!(
        err.contains("--valid-holdout") && err.contains("--valid-users"),
        "{err}"
    );
    assert!(!none_left.exists(), "a refused run leaves no folder");

    // prompt pools
    let last1 = prompt_pool(&split, PromptPool::Last(1), 1);
    let last2 = prompt_pool(&split, PromptPool::Last(2), 1);
    let all = prompt_pool(&split, PromptPool::All, 1);
    let sample = prompt_pool(&split, PromptPool::Sample(30), 1);
    let windows: usize = split
        .train_sequences
        .iter()
        .map(|s| s.len().saturating_sub(1))
        .sum();
    assert_eq!(all.len(), windows);
    assert_eq!(
        last1.len(),
        split.train_sequences.iter().filter(|s| s.len() > 1).count()
    );
    assert!(last2.len() > last1.len() && last2.len() < all.len());
    assert_eq!(sample.len(), 30);
    assert!(sample.iter().all(|p| all.contains(p)));
    let pooled = run(
        &base(Method::Grpo, 1).with_prompt_pool(PromptPool::All),
        &inputs,
    );
    assert!(pooled.curves[1].reward.is_finite());
    // multi-item targets: the window's next items of the training sequence, never past it
    let three = prompt_pool(&split, PromptPool::All, 3);
    assert_eq!(three.len(), all.len());
    let mut at = 0;
    for seq in &split.train_sequences {
        for t in 1..seq.len() {
            let p = &three[at];
            assert_eq!(p.targets, seq[t..(t + 3).min(seq.len())].to_vec());
            assert_eq!(all[at].targets, vec![seq[t]]);
            at += 1;
        }
    }
    assert!(three.iter().any(|p| p.targets.len() == 3));
    let multi = run(
        &base(Method::Grpo, 1)
            .with_prompt_pool(PromptPool::All)
            .with_train_targets(3),
        &inputs,
    );
    assert!(multi.curves[1].reward.is_finite());
    assert!(base(Method::Grpo, 1).with_train_targets(0).check().is_err());
    // on the last window of each user there is nothing beyond the one target: refused
    let e = base(Method::Grpo, 1)
        .with_prompt_pool(PromptPool::Last(1))
        .with_train_targets(3)
        .check()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--train-targets 3") && e.contains("last:1"),
        "{e}"
    );

    // the selection's paired test: a checkpoint after step 0 is the best only if it beats the
    // best so far and its gain over step 0 has p below select_p; at select_p = 1, the argmax
    // (a reward alignment raises on held-out lists within a few steps: diversity)
    let ild = parse_reward("ild", &catalog).unwrap();
    let ild_inputs = AlignInputs {
        reward: ild.as_ref(),
        ..inputs
    };
    let select = |p: f64, correction: SelectCorrection| {
        base(Method::Grpo, 6)
            .with_eval_every(1)
            .with_select("ild".into())
            .with_select_p(p)
            .with_select_correction(correction)
            .with_optim(OptimConfig::new().with_lr(4e-5))
    };
    let plain = run(&select(1.0, SelectCorrection::None), &ild_inputs);
    let gated = run(&select(0.05, SelectCorrection::None), &ild_inputs);
    // the default: each of the 6 evaluations tested at 0.05 / 6
    let bonferroni_cfg = select(0.05, SelectCorrection::Bonferroni);
    assert_eq!(bonferroni_cfg.scheduled_evaluations(), 6);
    assert!((bonferroni_cfg.select_level() - 0.05 / 6.0).abs() < 1e-15);
    let bonferroni = run(&bonferroni_cfg, &ild_inputs);
    let evals = |o: &AlignOutcome<ItemLm>| -> Vec<(usize, f64, Option<f64>)> {
        o.curves
            .iter()
            .filter_map(|c| c.valid_metric.map(|m| (c.step, m, c.valid_p)))
            .collect()
    };
    let e = evals(&plain);
    assert_eq!(e.len(), 7);
    assert_eq!(e, evals(&gated), "the test changes the choice, not the run");
    assert!(e[1..]
        .iter()
        .all(|(_, _, p)| p.is_some_and(|p| (0.0..=1.0).contains(&p))));
    let argmax = e.iter().fold(e[0], |b, x| if x.1 > b.1 { *x } else { b });
    assert_eq!(plain.summary.best_step, argmax.0);
    assert_eq!(e, evals(&bonferroni));
    // replay the gated rule over the evaluations, at both levels
    let replay = |level: f64| {
        let mut best = e[0];
        for x in &e[1..] {
            if x.2.is_some_and(|p| p < level) && x.1 > best.1 {
                best = *x;
            }
        }
        best
    };
    let best = replay(0.05);
    assert_eq!(gated.summary.best_step, best.0);
    assert_eq!(gated.summary.best_p, best.2);
    let strict = replay(0.05 / 6.0);
    assert_eq!(bonferroni.summary.best_step, strict.0);
    assert_eq!(bonferroni.summary.best_p, strict.2);
    assert!(
        e[1..].iter().any(|x| x.1 > e[0].1) && e[1..].iter().any(|x| x.2.unwrap() >= 0.05),
        "the run should hold a later checkpoint with a higher mean and one the test refuses: {e:?}"
    );
    assert!(base(Method::Grpo, 1).with_select_p(0.0).check().is_err());
    // the evaluations a run schedules: every eval_every steps and after the last one
    let sched = |steps: usize, every: usize| {
        base(Method::Grpo, steps)
            .with_eval_every(every)
            .scheduled_evaluations()
    };
    assert_eq!(
        (sched(7, 3), sched(6, 3), sched(7, 0), sched(2, 5)),
        (3, 2, 1, 1)
    );

    // rollout temperature: the old log-probabilities are the tempered policy's own (at the
    // first pass every ratio is exactly 1, so even a zero clip range clips nothing, and the
    // policy is its reference: no KL); colder rollouts are likelier lists (lower entropy)
    let cold = |t: f32| {
        base(Method::Grpo, 1)
            .with_inner_epochs(1)
            .with_rollout_temperature(t)
            .with_optim(o(|c| c.with_clip_low(0.0).with_clip_high(0.0)))
    };
    let cold_half = run(&cold(0.5), &inputs);
    let warm = run(&cold(1.0), &inputs);
    assert_eq!(step1(&cold_half).clip_frac, 0.0);
    assert!(
        step1(&cold_half).kl.abs() < 1e-6,
        "{}",
        step1(&cold_half).kl
    );
    assert!(
        step1(&cold_half).entropy < step1(&warm).entropy,
        "{} vs {}",
        step1(&cold_half).entropy,
        step1(&warm).entropy
    );
    assert_ne!(step1(&cold_half).reward, step1(&warm).reward);
    for bad in [0.0, -1.0, f32::NAN, 1000.0] {
        let e = base(Method::Grpo, 1)
            .with_rollout_temperature(bad)
            .check()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--rollout-temperature"), "{e}");
    }

    // a method's settings cannot reach another: BLADE's tau is BLADE's
    let mut bad = base(Method::Blade, 1);
    bad.method = blade_core::align::MethodConfig::Blade(
        blade_core::align::methods::BladeConfig::new().with_tau(1.5),
    );
    let e = train_align::<ItemLm>(
        &bad,
        &inputs,
        &root.path().join("bad"),
        Dashboard::Plain,
        false,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("blade") && e.contains("tau"), "{e}");
    assert!(
        !root.path().join("bad").exists(),
        "a bad config writes nothing"
    );
}
