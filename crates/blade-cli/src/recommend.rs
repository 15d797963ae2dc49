//! `blade recommend`: the top-K list of a trained run (item-level or LLM) for one user, with
//! titles.

use std::path::PathBuf;

use anyhow::{bail, Result};
use blade_core::{PromptBatch, Recommender};
use blade_exp::{open_run_lean, Checkpoint, RunManifest};
use clap::Args;

use crate::common::BackendArgs;
use crate::eval_cmd::parse_strategy;

/// Arguments of `blade recommend`.
#[derive(Args, Debug)]
pub struct RecommendArgs {
    /// Trained run folder.
    #[arg(long)]
    pub run: PathBuf,
    /// The user's id as it appears in the dataset.
    #[arg(long)]
    pub user: String,
    /// List length.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// `greedy` or `beam:W`.
    #[arg(long, default_value = "greedy")]
    pub strategy: String,
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// Runs `blade recommend`: the list after the user's whole history (test time).
pub fn run(a: RecommendArgs) -> Result<()> {
    let info = RunManifest::load(&a.run)?;
    let (ds, split) = info.dataset_and_split(&a.run)?;
    let Some(uid) = ds.user_raw_ids.iter().position(|u| *u == a.user) else {
        bail!(
            "--user {}: no such user in {} (ids are the dataset's own, e.g. `{}`)",
            a.user,
            info.data.data,
            ds.user_raw_ids.first().map_or("", String::as_str)
        );
    };
    let Some(case) = split.test.iter().find(|c| c.user as usize == uid) else {
        bail!(
            "--user {}: this user has fewer than 3 interactions and is not evaluated",
            a.user
        );
    };
    let device = a.backend.device()?;
    let model = open_run_lean(&a.run, Checkpoint::Best, &device)?;
    let mut history = case.history.clone();
    history.push(case.target);
    let l = info.data.history_len;
    let history = history[history.len().saturating_sub(l)..].to_vec();
    let mut seen = case.seen.clone();
    seen.push(case.target);
    let prompt = PromptBatch {
        histories: vec![history.clone()],
        exclude: vec![seen],
    };
    let list = model.decode(&prompt, a.k, parse_strategy(&a.strategy)?)?;
    let title = |i: &u32| {
        ds.catalog
            .items
            .get(*i as usize)
            .map_or("?".to_string(), |it| it.title.clone())
    };
    println!("user {} — recent history:", a.user);
    for i in &history {
        println!("    {}", title(i));
    }
    println!("top-{} recommendations:", a.k);
    for (r, i) in list.first().into_iter().flatten().enumerate() {
        println!("{:>3}. {}", r + 1, title(i));
    }
    Ok(())
}
