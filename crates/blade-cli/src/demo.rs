//! `blade demo`: the whole pipeline on the built-in synthetic data, offline, in minutes.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use blade_core::align::{train_align, AlignConfig, AlignInputs, Method, OptimConfig};
use blade_core::reward::{parse_reward, CatalogInfo};
use blade_core::sft::{train_sft, Dashboard};
use blade_core::{EvalConfig, Evaluator, ItemLm, PopRecommender, RandomRecommender};
use clap::Args;

use crate::common::{dataset_and_split, report_table, BackendArgs, DataArgs, RunInfo};
use crate::eval_cmd::{evaluate_one, Named};
use crate::train_cmd::{DashboardArg, SftArgs};

/// Arguments of `blade demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where the run and the results go.
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// SFT epochs.
    #[arg(long, default_value_t = 6)]
    pub epochs: usize,
    /// Alignment steps per method (0 = SFT and baselines only).
    #[arg(long, default_value_t = 25)]
    pub align_steps: usize,
    /// The list reward the alignment methods optimise.
    #[arg(long, default_value = "ndcg@10")]
    pub reward: String,
    /// auto, tui or plain.
    #[arg(long, value_enum, default_value = "plain")]
    pub dashboard: DashboardArg,
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// Runs the demo.
pub fn run(a: DemoArgs) -> Result<()> {
    let start = Instant::now();
    let device = a.backend.device()?;
    let data = DataArgs {
        data: "synthetic".into(),
        cache: PathBuf::from(crate::common::DEFAULT_CACHE),
        history_len: 10,
        k_core: 5,
        min_rating: None,
        data_seed: 7,
        max_items: None,
        max_users: None,
    };
    let (ds, split) = dataset_and_split(&data)?;
    println!(
        "synthetic data: {} users, {} items, {} interactions, {} training windows",
        ds.num_users(),
        ds.num_items(),
        ds.num_interactions(),
        split.train.len()
    );
    let sft = SftArgs {
        epochs: a.epochs,
        batch_size: 256,
        lr: 2e-3,
        patience: 3,
        d_model: 64,
        layers: 2,
        heads: 2,
        dropout: 0.1,
        list_len: 10,
        max_train_prompts: None,
        seed: 42,
    };
    let config = sft.config(ds.num_items(), data.history_len);
    let run_dir = a.out.join("sft");
    std::fs::create_dir_all(&run_dir)?;
    RunInfo {
        method: "sft".into(),
        data: data.clone(),
    }
    .save(&run_dir)?;
    let outcome = train_sft(
        &config,
        &split,
        &device,
        &run_dir,
        Dashboard::from(a.dashboard),
        false,
    )?;

    let ev = Evaluator::new(&ds, &split, EvalConfig::default())?;
    let mut reports = Vec::new();
    reports.push(evaluate_one(&ev, &RandomRecommender::new(ds.num_items(), 0), &split.test)?.0);
    reports.push(
        evaluate_one(
            &ev,
            &PopRecommender::new(&split.item_popularity),
            &split.test,
        )?
        .0,
    );
    let sft_named = Named {
        name: "sft".into(),
        inner: &outcome.model,
    };
    reports.push(evaluate_one(&ev, &sft_named, &split.test)?.0);
    if a.align_steps > 0 {
        let catalog = CatalogInfo::from_dataset(&ds, &split);
        let reward =
            parse_reward(&a.reward, &catalog).map_err(|e| anyhow::anyhow!("--reward {e}"))?;
        for method in Method::ALL {
            let cfg = AlignConfig::new(method.default_config())
                .with_steps(a.align_steps)
                .with_optim(OptimConfig::new().with_lr(1e-3))
                .with_eval_every(a.align_steps);
            let inputs = AlignInputs {
                split: &split,
                catalog: &catalog,
                reward: reward.as_ref(),
                init: &run_dir,
                device: &device,
            };
            let dir = a.out.join(method.name());
            let out =
                train_align::<ItemLm>(&cfg, &inputs, &dir, Dashboard::from(a.dashboard), false)?;
            RunInfo {
                method: method.name().into(),
                data: data.clone(),
            }
            .save(&dir)?;
            let named = Named {
                name: method.name().into(),
                inner: &out.model,
            };
            reports.push(evaluate_one(&ev, &named, &split.test)?.0);
        }
    }
    let table = report_table(&reports);
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
