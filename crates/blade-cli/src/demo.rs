//! `blade demo`: the whole pipeline on the built-in synthetic data, offline, in minutes: SFT
//! (of the item-level model, or of an LLM with `--policy llm --weights FILE`), then each
//! alignment method from it, all evaluated against `random` and `pop` on the test users.

use std::path::PathBuf;
use std::time::Instant;

use std::sync::Arc;

use anyhow::{bail, Result};
use blade_core::align::{AlignConfig, AlignInputs, Method, OptimConfig};
use blade_core::reward::{parse_reward, PendingBelief};
use blade_core::sft::{train_sft, Dashboard};
use blade_core::{EvalConfig, Evaluator, PopRecommender, RandomRecommender};
use blade_exp::{
    align_run, open_run, parallel_map, uses_belief, with_sft_belief, Checkpoint, RunKind,
    RunManifest,
};
use clap::Args;

use crate::common::{report_table, BackendArgs, DataArgs};
use crate::eval_cmd::evaluate_one;
use crate::train_cmd::{llm_sft, DashboardArg, LlmArgs, PolicyKind, SftArgs};

/// Arguments of `blade demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where the run and the results go.
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// SFT epochs.
    #[arg(long, default_value_t = 4)]
    pub epochs: usize,
    /// Alignment steps per method (0 = SFT and baselines only) [default: 300 for the item
    /// policy, 40 for an LLM].
    #[arg(long)]
    pub align_steps: Option<usize>,
    /// Steps between validation evaluations; each method is tested at its best one on the
    /// selection metric (step 0, the SFT model, included) [default: 20 for the item policy, 5
    /// for an LLM].
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Alignment methods to run from the SFT model (`all` = every method).
    #[arg(long, value_delimiter = ',', default_value = "grpo,bon-static,blade")]
    pub methods: Vec<String>,
    /// The list reward the alignment methods optimise [default: endcg@10 for the item policy,
    /// the expected NDCG@10 under the SFT model's own next-item belief (docs/METHOD.md section
    /// 8); ndcg@10 for an LLM]. Others: ndcg@10, taste@10 (the synthetic users' own genre
    /// tastes), `ndcg@10 + 0.5*ild`, ...
    #[arg(long)]
    pub reward: Option<String>,
    /// The validation metric that picks each method's checkpoint (a reward spec scored on
    /// greedy lists against the validation users' next items) [default: the reward itself;
    /// for `endcg@K`, which estimates `ndcg@K` with the model's belief, the real `ndcg@K`].
    #[arg(long)]
    pub select: Option<String>,
    /// The alignment learning rate [default: 3e-4 for the item policy, chosen on validation
    /// in docs/results/synthetic-endcg; 1e-3 for an LLM's LoRA adapters].
    #[arg(long)]
    pub align_lr: Option<f64>,
    /// The temperature rollouts are sampled at; below 1 the groups are drawn near the greedy
    /// lists the evaluation scores [default: 0.5 for the item policy, 1 for an LLM].
    #[arg(long)]
    pub rollout_temperature: Option<f32>,
    /// Weight of the ranking anchor, the exact KL from the SFT model's first-slot distribution
    /// to the policy's, which keeps the full ranking near the SFT model's (docs/METHOD.md
    /// section 5) [default: ITEM_RANK_KL for the item policy, chosen on validation in
    /// docs/results/synthetic-endcg; 0 for an LLM, which has no catalogue-wide first slot].
    #[arg(long)]
    pub rank_kl: Option<f32>,
    /// Keep only the N most frequent synthetic items (e.g. for an LLM policy on a CPU).
    #[arg(long)]
    pub max_items: Option<usize>,
    /// Keep only the first N synthetic users.
    #[arg(long)]
    pub max_users: Option<usize>,
    /// Items per generated list (K) in SFT and alignment.
    #[arg(long, default_value_t = 10)]
    pub list_len: usize,
    /// Prompt length L (most recent items in a prompt).
    #[arg(long, default_value_t = 10)]
    pub history_len: usize,
    /// Evaluate only the first N test users (and validate alignment on the first N).
    #[arg(long)]
    pub max_eval_users: Option<usize>,
    /// Alignment methods trained at the same time (threads; burn's CPU backend keeps about one
    /// core busy per run).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// auto, tui or plain.
    #[arg(long, value_enum, default_value = "plain")]
    pub dashboard: DashboardArg,
    #[command(flatten)]
    pub llm: LlmArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// The item policy's default `--rank-kl` (docs/results/synthetic-endcg).
const ITEM_RANK_KL: f32 = 5.0;

/// Runs the demo.
pub fn run(a: DemoArgs) -> Result<()> {
    crate::common::check_out_folder(&a.out)?;
    let start = Instant::now();
    let methods = if a.methods.iter().any(|m| m == "all") {
        Method::ALL.to_vec()
    } else {
        a.methods
            .iter()
            .map(|m| {
                m.parse::<Method>()
                    .map_err(|e| anyhow::anyhow!("--methods {m}: {e}"))
            })
            .collect::<Result<Vec<_>>>()?
    };
    let device = a.backend.device()?;
    let data = DataArgs {
        max_items: a.max_items,
        max_users: a.max_users,
        history_len: a.history_len,
        ..DataArgs::default()
    };
    let (ds, split) = data.dataset_and_split()?;
    println!(
        "synthetic data: {} users, {} items, {} interactions, {} training windows",
        ds.num_users(),
        ds.num_items(),
        ds.num_interactions(),
        split.train.len()
    );
    let item = matches!(a.llm.policy, PolicyKind::Item);
    let reward_spec = a
        .reward
        .clone()
        .unwrap_or_else(|| if item { "endcg@10" } else { "ndcg@10" }.to_string());
    let select = a
        .select
        .clone()
        .unwrap_or_else(|| default_select(&reward_spec));
    // the item policy's defaults were chosen on the synthetic validation users
    // (docs/results/synthetic-endcg); an LLM keeps the earlier ones (LoRA adapters take a
    // larger rate; `endcg@K` needs the item policy's belief)
    let align_steps = a.align_steps.unwrap_or(if item { 300 } else { 40 });
    let eval_every = a.eval_every.unwrap_or(if item { 20 } else { 5 });
    let temperature = a
        .rollout_temperature
        .unwrap_or(if item { 0.5 } else { 1.0 });
    let lr = a.align_lr.unwrap_or(if item { 3e-4 } else { 1e-3 });
    let rank_kl = a.rank_kl.unwrap_or(if item { ITEM_RANK_KL } else { 0.0 });
    if !item && rank_kl > 0.0 {
        bail!(
            "--rank-kl {rank_kl}: the ranking anchor needs the item policy's catalogue-wide \
             first slot; an LLM policy scores titles one by one (use --rank-kl 0)"
        );
    }
    let align_config = |method: Method| {
        AlignConfig::new(method.default_config())
            .with_steps(align_steps)
            .with_list_len(a.list_len)
            .with_optim(OptimConfig::new().with_lr(lr).with_rank_kl(rank_kl))
            .with_rollout_temperature(temperature)
            .with_eval_every(eval_every.min(align_steps).max(1))
            .with_select(select.clone())
            .with_valid_users(a.max_eval_users)
    };
    if align_steps > 0 {
        for &method in &methods {
            align_config(method)
                .check()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    // checked before anything is trained; `endcg@K`'s belief is the SFT model, attached once
    // it exists
    let base = data.catalog_info(&ds, &split)?;
    let needs_belief = uses_belief(&reward_spec) || uses_belief(&select);
    let check = if needs_belief {
        base.clone().with_belief(Arc::new(PendingBelief))
    } else {
        base.clone()
    };
    for (flag, spec) in [("--reward", &reward_spec), ("--select", &select)] {
        if uses_belief(spec) && !item {
            bail!(
                "{flag} {spec}: `endcg@K` takes its expectation under the item policy's \
                 next-item belief; with --policy llm use another reward (e.g. ndcg@10)"
            );
        }
        parse_reward(spec, &check).map_err(|e| anyhow::anyhow!("{flag} {e}"))?;
    }
    let sft = SftArgs {
        epochs: a.epochs,
        batch_size: 256,
        lr: 2e-3,
        patience: 3,
        d_model: 64,
        layers: 2,
        heads: 2,
        dropout: 0.1,
        list_len: a.list_len,
        max_train_prompts: None,
        seed: 42,
        sft_objective: blade_core::SftObjective::Windows,
        window_stride: 0,
        sft_grad_shards: 4,
    };
    let run_dir = a.out.join("sft");
    let kind = match a.llm.policy {
        PolicyKind::Item => {
            std::fs::create_dir_all(&run_dir)?;
            RunManifest::new(RunKind::Item, "sft", &data, &ds).save(&run_dir)?;
            let config = sft.config(ds.num_items(), data.history_len);
            train_sft(
                &config,
                &split,
                &device,
                &run_dir,
                Dashboard::from(a.dashboard),
                false,
            )?;
            RunKind::Item
        }
        PolicyKind::Llm => {
            llm_sft(&a.llm, &sft, &data, &device, &run_dir, false)?;
            RunKind::Llm
        }
    };

    let catalog = if needs_belief {
        with_sft_belief(base, &run_dir, &device)?
    } else {
        base
    };
    let reward = parse_reward(&reward_spec, &catalog).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ev = Evaluator::new(
        &ds,
        &split,
        EvalConfig {
            batch_size: kind.eval_batch_size(),
            ..EvalConfig::default()
        },
    )?;
    let cases = &split.test[..a.max_eval_users.unwrap_or(usize::MAX).min(split.test.len())];
    let mut reports = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    reports.push(evaluate_one(&ev, &RandomRecommender::new(ds.num_items(), 0), cases)?.0);
    reports.push(evaluate_one(&ev, &PopRecommender::new(&split.item_popularity), cases)?.0);
    let sft_run = open_run(&run_dir, Checkpoint::Best, &device)?.named("sft");
    let (sft_report, sft_lists) = evaluate_one(&ev, &sft_run, cases)?;
    reports.push(sft_report);
    // per test user: the reward of the generated list and the paired NDCG@10s, what each
    // aligned method is compared with SFT on
    let users = |lists: &blade_core::EvalLists| {
        blade_exp::compare::paired_per_user(lists, cases, reward.as_ref(), &catalog)
    };
    let sft_users = users(&sft_lists)?;
    let keys = demo_keys(&reward.name(), &reward_spec);
    let mut paired_rows = Vec::new();
    if align_steps > 0 {
        let dashboard = if a.jobs > 1 {
            Dashboard::Plain
        } else {
            Dashboard::from(a.dashboard)
        };
        crate::memory_for(kind);
        let passes = kind.gradient_passes();
        let aligned = parallel_map(&methods, a.jobs, |&method| {
            let cfg = align_config(method)
                .with_grad_shards(passes.grad_shards)
                .with_recompute(passes.recompute);
            let inputs = AlignInputs {
                split: &split,
                catalog: &catalog,
                reward: reward.as_ref(),
                init: &run_dir,
                device: &device,
            };
            let dir = a.out.join(method.name());
            let out = align_run(&cfg, &inputs, &dir, dashboard, false)?;
            let run = open_run(&dir, Checkpoint::Best, &device)?.named(method.name());
            let s = &out.summary;
            let fmt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
            let start = out.curves.first().and_then(|c| c.valid_metric);
            let gain = |m: Option<f64>| m.zip(start).map_or(0.0, |(m, s)| m - s);
            let why = if s.best_step > 0 {
                format!(
                    " (validation gain {:+.4} over step 0, p = {:.4} < {:.4})",
                    gain(s.best_metric),
                    s.best_p.unwrap_or(f64::NAN),
                    cfg.select_level()
                )
            } else {
                // the later checkpoint with the highest validation mean, which the paired
                // test did not accept
                let top = out.curves[1..]
                    .iter()
                    .filter(|c| c.valid_metric.is_some())
                    .max_by(|a, b| {
                        let m = |c: &blade_core::align::StepRecord| {
                            c.valid_metric.unwrap_or(f64::NEG_INFINITY)
                        };
                        m(a).total_cmp(&m(b))
                    });
                match top {
                    Some(c) if gain(c.valid_metric) > 0.0 => format!(
                        " (the SFT model: the best later checkpoint, step {}, gained {:+.4} on \
                         validation, p = {:.2}, not below {:.4} = {} / {} evaluations)",
                        c.step,
                        gain(c.valid_metric),
                        c.valid_p.unwrap_or(f64::NAN),
                        cfg.select_level(),
                        cfg.select_p,
                        cfg.scheduled_evaluations()
                    ),
                    _ => " (the SFT model: no later checkpoint scored higher on validation)".into(),
                }
            };
            let note = format!(
                "{}: training reward (`{}` of sampled lists, {} training prompts) {:.4} for SFT \
                 -> {:.4} at step {}; validation NDCG@10 (greedy lists) {} at step 0 -> {}; \
                 evaluated: the checkpoint of step {}{why}",
                method.name(),
                s.reward,
                s.prompts,
                s.reference_reward,
                s.policy_reward,
                s.steps_run,
                fmt(s.valid_ndcg_start),
                fmt(s.valid_ndcg_end),
                s.best_step,
            );
            let (report, lists) = ev.evaluate(&run, cases, &mut |_, _| {})?;
            let name = format!("{} (step {})", method.name(), s.best_step);
            let row = paired_row(&keys, &name, &users(&lists)?, Some(&sft_users));
            Ok((report, note, row))
        })?;
        for (report, note, row) in aligned {
            reports.push(report);
            notes.push(note);
            paired_rows.push(row);
        }
    }
    if !notes.is_empty() {
        notes.push(format!(
            "(95% paired bootstrap intervals over the {} test users. This is one seed on synthetic \
             data: a demonstration, not evidence. `blade compare` runs several seeds and reports \
             paired intervals and p-values for every method.)",
            cases.len()
        ));
    }
    let mut table = report_table(&reports);
    if !paired_rows.is_empty() {
        let head: String = keys
            .iter()
            .map(|(_, h)| format!(" {h} | vs SFT |"))
            .collect();
        table += &format!(
            "\nAgainst SFT on the {} test users (paired over users; 95% bootstrap interval, \
             p-value; win or loss where the interval excludes 0):\n\n| method |{head}\n|---|{}\n{}{}",
            cases.len(),
            "---:|---|".repeat(keys.len()),
            paired_row(&keys, "sft", &sft_users, None),
            paired_rows.concat()
        );
    }
    table += &("\n".to_string() + &notes.join("\n") + "\n");
    println!("\n{table}");
    blade_core::sft::write_atomic(&a.out.join("results.md"), table.as_bytes())?;
    blade_core::sft::write_atomic(
        &a.out.join("results.json"),
        serde_json::to_string_pretty(&reports)?.as_bytes(),
    )?;
    println!(
        "demo finished in {:.0}s; results in {}",
        start.elapsed().as_secs_f64(),
        a.out.display()
    );
    Ok(())
}

/// The selection metric when none is given: the reward itself, except `endcg@K` (a model's
/// estimate of `ndcg@K`), whose checkpoints are chosen on the real `ndcg@K`.
fn default_select(reward: &str) -> String {
    let compact: String = reward.chars().filter(|c| !c.is_whitespace()).collect();
    match compact.strip_prefix("endcg@") {
        Some(k) if !k.is_empty() && k.chars().all(|c| c.is_ascii_digit()) => format!("ndcg@{k}"),
        _ => reward.to_string(),
    }
}

/// The columns the demo compares on: NDCG@10 of generated lists and of full ranking, and
/// first, unless it is NDCG@10 itself (by the parsed reward's `name`), the aligned reward of
/// the generated lists, headed by the `spec` the user gave.
fn demo_keys(name: &str, spec: &str) -> Vec<(&'static str, String)> {
    let mut keys = vec![
        ("generation ndcg@10", "NDCG@10, generated lists".to_string()),
        ("full-rank ndcg@10", "NDCG@10, full ranking".to_string()),
    ];
    if name != "ndcg@10" {
        keys.insert(
            0,
            (
                blade_exp::compare::REWARD_KEY,
                format!("`{spec}` of the generated lists"),
            ),
        );
    }
    keys
}

/// One row of the demo's paired table: per key the method's mean over the test users and,
/// given SFT's values, its paired difference to them (an empty cell for SFT itself).
fn paired_row(
    keys: &[(&str, String)],
    name: &str,
    users: &blade_exp::compare::PerUser,
    sft: Option<&blade_exp::compare::PerUser>,
) -> String {
    let mut row = format!("| {name} |");
    for &(key, _) in keys {
        let Some(m) = users.get(key) else {
            row += " - | - |";
            continue;
        };
        let mean = m.iter().sum::<f64>() / m.len().max(1) as f64;
        row += &format!(" {mean:.4} |");
        let Some(b) = sft.and_then(|s| s.get(key)) else {
            row += " |";
            continue;
        };
        let diff: Vec<f64> = m.iter().zip(b).map(|(m, b)| m - b).collect();
        let d = blade_exp::stats::paired_bootstrap(&diff, b, 2000, 0);
        let rel = d
            .relative_pct()
            .map_or(String::new(), |r| format!(" ({r:+.1}%)"));
        row += &format!(
            " {:+.4}{rel} [{:+.4}, {:+.4}], p = {:.3}, {} |",
            d.mean,
            d.lo,
            d.hi,
            d.p,
            d.verdict()
        );
    }
    row + "\n"
}

#[cfg(test)]
mod tests {
    use super::default_select;

    #[test]
    fn expected_ndcg_is_selected_on_the_real_ndcg_and_other_rewards_on_themselves() {
        assert_eq!(default_select("endcg@10"), "ndcg@10");
        assert_eq!(default_select(" endcg @ 5 "), "ndcg@5");
        assert_eq!(default_select("taste@10"), "taste@10");
        assert_eq!(default_select("endcg@10 + 0.5*ild"), "endcg@10 + 0.5*ild");
    }
}
