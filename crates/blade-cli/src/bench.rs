//! `blade bench`: throughput and step-time measurements printed as a table, measured in one
//! process so that ratios are comparable on a shared, noisy machine.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use blade_core::align::{train_align, AlignConfig, AlignInputs, Method, StepRecord};
use blade_core::reward::{parse_reward, CatalogInfo};
use blade_core::sft::{train_sft, Dashboard};
use blade_core::{ItemLm, Policy, PromptBatch, Recommender, SampleSpec};
use clap::Args;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::common::{dataset_and_split, BackendArgs, DataArgs, RunInfo};
use crate::train_cmd::SftArgs;

/// Arguments of `blade bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Alignment steps timed per method (the first is not counted).
    #[arg(long, default_value_t = 12)]
    pub steps: usize,
    /// Scratch folder for the short SFT run the measurements start from.
    #[arg(long, default_value = "runs/bench")]
    pub out: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Runs `blade bench`.
pub fn run(a: BenchArgs) -> Result<()> {
    let device = a.backend.device()?;
    let (ds, split) = dataset_and_split(&a.data)?;
    let sft_dir = a.out.join("sft");
    std::fs::create_dir_all(&sft_dir)?;
    RunInfo {
        method: "sft".into(),
        data: a.data.clone(),
    }
    .save(&sft_dir)?;
    let sft = SftArgs {
        epochs: 1,
        batch_size: 256,
        lr: 2e-3,
        patience: 1,
        d_model: 64,
        layers: 2,
        heads: 2,
        dropout: 0.1,
        list_len: 10,
        max_train_prompts: Some(20_000),
        seed: 42,
    };
    let config = sft.config(ds.num_items(), a.data.history_len);
    let model = train_sft(&config, &split, &device, &sft_dir, Dashboard::Plain, false)?.model;

    let mut rows: Vec<(String, String)> = Vec::new();
    // rollout throughput: G = 16 lists of K = 10 for 32 prompts
    let prompts = PromptBatch::from_cases(&split.test[..split.test.len().min(32)], true);
    let spec = SampleSpec {
        lists_per_prompt: 16,
        list_len: 10,
        ..SampleSpec::default()
    };
    let mut rng = StdRng::seed_from_u64(0);
    model.sample(&prompts, &spec, &mut rng)?; // warm-up
    let t = Instant::now();
    let mut lists = 0;
    for _ in 0..3 {
        lists += model.sample(&prompts, &spec, &mut rng)?.lists.len();
    }
    rows.push((
        "rollout lists/s (G=16, K=10, 32 prompts)".into(),
        format!("{:.0}", lists as f64 / t.elapsed().as_secs_f64()),
    ));
    // full-ranking evaluation throughput
    let all = PromptBatch::from_cases(&split.test, true);
    let t = Instant::now();
    let mut users = 0;
    for start in (0..all.len()).step_by(256) {
        let batch = all.slice(start..(start + 256).min(all.len()));
        for (s, e) in model.score_all(&batch)?.iter().zip(&batch.exclude) {
            users += usize::from(!blade_metrics::top_k_by_scores(s, 10, e).is_empty());
        }
    }
    rows.push((
        "full-ranking users/s (score + top-10)".into(),
        format!("{:.0}", users as f64 / t.elapsed().as_secs_f64()),
    ));

    // one alignment step, blade vs bon-static, same settings
    let catalog = CatalogInfo::from_dataset(&ds, &split);
    let reward = parse_reward("ndcg@10", &catalog).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut step_times = Vec::new();
    for method in [Method::BonStatic, Method::Blade] {
        let cfg = AlignConfig::new(method.default_config())
            .with_steps(a.steps.max(2))
            .with_eval_every(0);
        let inputs = AlignInputs {
            split: &split,
            catalog: &catalog,
            reward: reward.as_ref(),
            init: &sft_dir,
            device: &device,
        };
        let out = train_align::<ItemLm>(
            &cfg,
            &inputs,
            &a.out.join(method.name()),
            Dashboard::Plain,
            false,
        )?;
        let steps: Vec<&StepRecord> = out.curves.iter().filter(|c| c.step > 1).collect();
        let step = mean(&steps.iter().map(|c| c.seconds_step).collect::<Vec<_>>());
        let target = mean(&steps.iter().map(|c| c.seconds_target).collect::<Vec<_>>());
        let grad = mean(&steps.iter().map(|c| c.seconds_grad).collect::<Vec<_>>());
        let lists = (cfg.prompts_per_step * cfg.group_size) as f64;
        rows.push((
            format!(
                "{} step time (B=32, G=8, K=10, 2 inner epochs)",
                method.name()
            ),
            format!("{:.3} s", step),
        ));
        rows.push((
            format!("{} target update + proxy rewards", method.name()),
            format!(
                "{:.3} ms ({:.3}% of the step)",
                target * 1e3,
                100.0 * target / step
            ),
        ));
        rows.push((
            format!("{} gradient steps", method.name()),
            format!("{:.3} s ({:.1}% of the step)", grad, 100.0 * grad / step),
        ));
        rows.push((
            format!("{} rollout + scoring lists/s", method.name()),
            format!("{:.0}", lists / (step - grad - target).max(1e-9)),
        ));
        step_times.push(step);
    }
    rows.push((
        "blade / bon-static step time".into(),
        format!("{:.3}", step_times[1] / step_times[0]),
    ));

    println!(
        "\n| measurement ({}, {} items, backend {}) | value |\n|---|---:|",
        a.data.data,
        ds.num_items(),
        a.backend.backend
    );
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
    Ok(())
}
