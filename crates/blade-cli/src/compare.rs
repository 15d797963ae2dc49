//! `blade compare`: several methods from one SFT reference (item-level or LLM) over several
//! seeds, into one results folder: tables (mean ± std over seeds), per-step curves, and SVG
//! pictures. The work is [`blade_exp::compare`]; this file parses and prints.

use std::path::PathBuf;

use anyhow::{bail, Result};
use blade_exp::{compare, CompareSpec};
use clap::Args;

use crate::common::BackendArgs;
use crate::train_cmd::{AlignArgs, DashboardArg};

/// Arguments of `blade compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Methods to compare: sft, grpo, rloo, bon-static, bond, bonbon, sdpo, dpo, blade; a method
    /// may carry its own settings, e.g. `blade:tau=0.1:gamma=1` or `blade:tau=auto` (a sweep in
    /// one comparison, with paired statistics).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "sft,grpo,rloo,bon-static,bond,bonbon,sdpo,dpo,blade"
    )]
    pub methods: Vec<String>,
    /// Seeds; each alignment method runs once per seed.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub seeds: Vec<u64>,
    /// Results folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Also add a best-of-N-at-inference row with this N (0 = none).
    #[arg(long, default_value_t = 0)]
    pub bon_inference: usize,
    /// Composite weights lambda for the accuracy-vs-fairness and accuracy-vs-diversity fronts
    /// (`<reward> + lambda*fairness`, `<reward> + lambda*ild`); empty = no fronts.
    #[arg(long, value_delimiter = ',')]
    pub lambdas: Vec<f32>,
    /// Methods whose fronts are traced (first seed only).
    #[arg(long, value_delimiter = ',', default_value = "bon-static,blade")]
    pub front_methods: Vec<String>,
    /// Baselines of the paired statistics: every method's difference to each, user by user,
    /// with a 95% bootstrap interval and p-value (`paired.csv`, end of `results.md`).
    #[arg(long, value_delimiter = ',', default_value = "bon-static,sft")]
    pub baselines: Vec<String>,
    /// Alignment runs trained at the same time (threads; burn's CPU backend keeps about one
    /// core busy per run). Results do not depend on it.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Evaluate only the first N test users (e.g. for an LLM policy on a CPU).
    #[arg(long)]
    pub max_eval_users: Option<usize>,
    /// auto, tui or plain.
    #[arg(long, value_enum, default_value = "plain")]
    pub dashboard: DashboardArg,
    #[command(flatten)]
    pub align: AlignArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// Runs `blade compare`.
pub fn run(a: CompareArgs) -> Result<()> {
    crate::common::check_out_folder(&a.out)?;
    let Some(init) = a.align.init.clone() else {
        bail!("give the SFT run every method starts from with --init DIR");
    };
    let device = a.backend.device()?;
    let kind = blade_exp::RunManifest::load_sft(&init)?.kind;
    crate::memory_for(kind);
    let config = |method, seed| {
        a.align
            .config(method, seed, false, kind)
            .map_err(|e| blade_core::CoreError::Config(format!("{e:#}")))
    };
    let spec = CompareSpec {
        init: &init,
        methods: &a.methods,
        seeds: &a.seeds,
        out: &a.out,
        reward: &a.align.reward,
        bon_inference: a.bon_inference,
        lambdas: &a.lambdas,
        front_methods: &a.front_methods,
        max_eval_users: a.max_eval_users,
        baselines: &a.baselines,
        config: &config,
        dashboard: a.dashboard.into(),
        jobs: a.jobs,
        device: &device,
        log: &|line| println!("{line}"),
    };
    let outcome = compare(&spec)?;
    println!("{}\nresults in {}", outcome.markdown, a.out.display());
    Ok(())
}
