//! `blade eval`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use blade_core::{
    DecodeStrategy, EvalConfig, EvalLists, EvalReport, Evaluator, PopRecommender,
    RandomRecommender, Recommender,
};
use blade_data::{Dataset, EvalCase, Split};
use clap::Args;

use blade_exp::{open_run, Checkpoint, RunKind, RunManifest};

use crate::common::{progress_bar, report_table, BackendArgs, DataArgs};

/// Arguments of `blade eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Trained run folders to evaluate (their data settings are reused).
    #[arg(long = "run")]
    pub runs: Vec<PathBuf>,
    /// Baselines to evaluate: random, pop.
    #[arg(long = "method")]
    pub methods: Vec<String>,
    /// Which cases: `test` (last item) or `valid` (second to last).
    #[arg(long, default_value = "test")]
    pub split: String,
    /// `greedy` or `beam:W` for generated lists.
    #[arg(long, default_value = "greedy")]
    pub strategy: String,
    /// Cut-offs to report.
    #[arg(long, value_delimiter = ',', default_value = "5,10")]
    pub ks: Vec<usize>,
    /// Keep history items eligible for recommendation.
    #[arg(long)]
    pub no_mask_history: bool,
    /// Write every report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the generated lists as JSON lines (original ids): user, list, targets, history.
    #[arg(long)]
    pub dump_lists: Option<PathBuf>,
    /// Evaluate only the first N users of the split (e.g. for a slow LLM policy on a CPU).
    #[arg(long)]
    pub max_eval_users: Option<usize>,
    /// Evaluate an alignment run's last model instead of its best checkpoint (`best/`).
    #[arg(long)]
    pub last: bool,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// Parses `greedy` or `beam:W`.
pub fn parse_strategy(s: &str) -> Result<DecodeStrategy> {
    match s.split_once(':') {
        None if s == "greedy" => Ok(DecodeStrategy::Greedy),
        Some(("beam", w)) => match w.parse::<usize>() {
            // each beam keeps a scored copy of the catalogue per slot: past a few hundred
            // beams the search costs minutes per user without changing the lists
            Ok(w) if (1..=256).contains(&w) => Ok(DecodeStrategy::Beam(w)),
            _ => bail!("--strategy {s}: the beam width must be an integer in 1..=256"),
        },
        _ => bail!("--strategy {s}: expected `greedy` or `beam:W`"),
    }
}

/// Picks the evaluation cases of a split.
pub fn cases<'a>(split: &'a Split, which: &str) -> Result<&'a [EvalCase]> {
    match which {
        "test" => Ok(&split.test),
        "valid" => Ok(&split.valid),
        other => bail!("--split {other}: expected `test` or `valid`"),
    }
}

/// Evaluates one recommender with a progress bar.
pub fn evaluate_one(
    ev: &Evaluator,
    rec: &dyn Recommender,
    cases: &[EvalCase],
) -> Result<(EvalReport, EvalLists)> {
    let pb = progress_bar(cases.len(), &rec.name());
    let out = ev.evaluate(rec, cases, &mut |done, _| pb.set_position(done as u64))?;
    pb.finish_and_clear();
    Ok(out)
}

/// Writes the evaluated lists as JSON lines in the dataset's original ids, atomically: one line
/// per (method, mode, case) with `method`, `mode` (`generation`, or `full-rank` for the top of
/// the full ranking where the recommender ranks the catalogue), `user`, `list`, `targets` and
/// `history`.
pub fn dump_lists(
    path: &Path,
    ds: &Dataset,
    cases: &[EvalCase],
    dumped: &[(String, &str, Vec<Vec<u32>>)],
) -> Result<()> {
    let raw = |i: &u32| {
        ds.catalog
            .items
            .get(*i as usize)
            .map(|it| it.raw_id.clone())
            .unwrap_or_default()
    };
    let mut out = String::new();
    for (method, mode, lists) in dumped {
        for (c, l) in cases.iter().zip(lists) {
            let line = serde_json::json!({
                "method": method,
                "mode": mode,
                "user": ds.user_raw_ids.get(c.user as usize),
                "list": l.iter().map(raw).collect::<Vec<_>>(),
                "targets": [raw(&c.target)],
                "history": c.history.iter().map(raw).collect::<Vec<_>>(),
            });
            out.push_str(&line.to_string());
            out.push('\n');
        }
    }
    blade_core::sft::write_atomic(path, out.as_bytes())?;
    Ok(())
}

/// Keeps a recommender's lists for `--dump-lists`: its generated lists, and the top of its full
/// ranking where the evaluation produced one.
fn keep_lists(
    dumped: &mut Vec<(String, &'static str, Vec<Vec<u32>>)>,
    method: &str,
    lists: blade_core::eval::EvalLists,
) {
    dumped.push((method.to_string(), "generation", lists.generated));
    if !lists.ranked.is_empty() {
        dumped.push((method.to_string(), "full-rank", lists.ranked));
    }
}

/// Runs `blade eval`.
pub fn run(a: EvalArgs) -> Result<()> {
    if a.runs.is_empty() && a.methods.is_empty() {
        bail!("nothing to evaluate: give --run DIR and/or --method random|pop");
    }
    let device = a.backend.device()?;
    let which = if a.last {
        Checkpoint::Last
    } else {
        Checkpoint::Best
    };
    let manifests = a
        .runs
        .iter()
        .map(|r| RunManifest::load(r))
        .collect::<blade_core::Result<Vec<_>>>()?;
    // every run is checked against the data it is evaluated on (its catalogue stamp)
    let data = manifests
        .first()
        .map_or_else(|| a.data.clone(), |m| m.data.clone());
    let (ds, split) = match manifests.first() {
        Some(m) => m.dataset_and_split(&a.runs[0])?,
        None => a.data.dataset_and_split()?,
    };
    for (m, r) in manifests.iter().zip(&a.runs).skip(1) {
        m.check_catalog(&ds, r)?;
    }
    let cases = cases(&split, &a.split)?;
    let cases = &cases[..a.max_eval_users.unwrap_or(cases.len()).min(cases.len())];
    let config = EvalConfig {
        ks: a.ks.clone(),
        mask_history: !a.no_mask_history,
        batch_size: manifests
            .iter()
            .map(|m| m.kind.eval_batch_size())
            .min()
            .unwrap_or(RunKind::Item.eval_batch_size()),
        strategy: parse_strategy(&a.strategy)?,
    };
    let ev = Evaluator::new(&ds, &split, config)?;
    let mut reports = Vec::new();
    let mut dumped = Vec::new();
    for m in &a.methods {
        let rec: Box<dyn Recommender> = match m.as_str() {
            "random" => Box::new(RandomRecommender::new(ds.num_items(), 0)),
            "pop" => Box::new(PopRecommender::new(&split.item_popularity)),
            other => bail!("--method {other}: expected `random` or `pop` (trained methods are given with --run)"),
        };
        let (r, l) = evaluate_one(&ev, rec.as_ref(), cases)?;
        keep_lists(&mut dumped, &r.method, l);
        reports.push(r);
    }
    for (run, info) in a.runs.iter().zip(&manifests) {
        if info.data.data != data.data || info.data.history_len != data.history_len {
            bail!(
                "--run {}: trained on other data than the first run; evaluate them separately",
                run.display()
            );
        }
        let opened = open_run(run, which, &device)?;
        let (r, l) = evaluate_one(&ev, &opened, cases)?;
        keep_lists(&mut dumped, &r.method, l);
        reports.push(r);
    }
    println!("{}", report_table(&reports));
    for r in &reports {
        println!(
            "{}: evaluated {} users in {:.2}s",
            r.method, r.users, r.seconds
        );
    }
    if let Some(path) = &a.json {
        blade_core::sft::write_atomic(path, serde_json::to_string_pretty(&reports)?.as_bytes())?;
    }
    if let Some(path) = &a.dump_lists {
        dump_lists(path, &ds, cases, &dumped)?;
    }
    Ok(())
}
