//! `blade compare`: several methods from one SFT reference over several seeds, into one
//! results folder: tables (mean ± std over seeds), per-step curves, and SVG pictures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use blade_core::align::{
    read_curves, train_align, AlignInputs, AlignSummary, Ceilings, Method, StepRecord,
};
use blade_core::policy::bon::best_of_n_lists;
use blade_core::reward::{parse_reward, CatalogInfo, ListReward};
use blade_core::sft::load_item_lm;
use blade_core::{EvalConfig, EvalReport, Evaluator, ItemLm};
use blade_data::{Dataset, Split};
use clap::Args;
use serde::Serialize;

use crate::common::{dataset_and_split, model_dir, BackendArgs, RunInfo};
use crate::eval_cmd::{evaluate_one, Named};
use crate::plot::{line_chart, Series};
use crate::train_cmd::{AlignArgs, DashboardArg};

/// Arguments of `blade compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Methods to compare: sft, grpo, rloo, bon-static, bond, bonbon, sdpo, dpo, blade.
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
    /// auto, tui or plain.
    #[arg(long, value_enum, default_value = "plain")]
    pub dashboard: DashboardArg,
    #[command(flatten)]
    pub align: AlignArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// One (method, seed) result.
#[derive(Serialize)]
struct Cell {
    method: String,
    seed: u64,
    report: EvalReport,
}

struct Ctx<'a> {
    a: &'a CompareArgs,
    init: &'a Path,
    ds: &'a Dataset,
    split: &'a Split,
    catalog: &'a CatalogInfo,
    ev: &'a Evaluator,
    device: &'a burn::tensor::Device,
}

fn is_accuracy(spec: &str) -> bool {
    ["ndcg", "recall", "mrr", "hit"]
        .iter()
        .any(|t| spec.contains(t))
}

/// Trains (or reuses a finished run of) one method with one reward and seed, then evaluates it.
fn run_one(
    c: &Ctx,
    method: Method,
    reward: &dyn ListReward,
    seed: u64,
    dir: &Path,
) -> Result<(EvalReport, Vec<StepRecord>)> {
    let cfg = c.a.align.config(method, seed, false)?;
    // reuse a finished run only if it was trained with these settings *and* this reward
    let same_reward = std::fs::read_to_string(dir.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<AlignSummary>(&t).ok())
        .is_some_and(|s| s.reward == reward.name());
    let done = same_reward
        && std::fs::read_to_string(dir.join("align.json")).ok() == serde_json::to_string(&cfg).ok();
    if !done {
        let inputs = AlignInputs {
            split: c.split,
            catalog: c.catalog,
            reward,
            init: c.init,
            device: c.device,
        };
        println!("== {} seed {seed} ({})", method.name(), reward.name());
        train_align::<ItemLm>(&cfg, &inputs, dir, c.a.dashboard.into(), false)?;
        let info = RunInfo::load(c.init)?;
        RunInfo {
            method: method.name().into(),
            data: info.data,
        }
        .save(dir)?;
    }
    let curves = read_curves(&dir.join("curves.csv"))?;
    // the best checkpoint on validation, as `blade eval` does by default
    let (_, model) = load_item_lm(&model_dir(dir, false), c.device)?;
    let named = Named {
        name: method.name().into(),
        inner: &model,
    };
    let (report, _) = evaluate_one(c.ev, &named, &c.split.test)?;
    Ok((report, curves))
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

const TABLE_METRICS: &[&str] = &[
    "recall",
    "ndcg",
    "mrr",
    "mgu",
    "dgu",
    "ild",
    "div_ratio",
    "or_ratio",
    "coverage",
    "tail_share",
];

/// Markdown (mean ± std over seeds) and CSV of every metric, per method and mode.
fn tables(cells: &[Cell], order: &[String], ks: &[usize]) -> (String, String) {
    let mut md = String::new();
    let mut csv = String::from("method,mode,metric,mean,std,seeds\n");
    for (mode, pick) in [("generation", true), ("full-rank", false)] {
        for &k in ks {
            let cols: Vec<String> = TABLE_METRICS.iter().map(|m| format!("{m}@{k}")).collect();
            md.push_str(&format!(
                "\n**{mode}, @{k}** (mean ± std over seeds)\n\n| method | {} |\n|---|{}\n",
                cols.join(" | "),
                "---:|".repeat(cols.len())
            ));
            for m in order {
                let mine: Vec<&Cell> = cells.iter().filter(|c| &c.method == m).collect();
                if mine.is_empty() {
                    continue;
                }
                let mut row = Vec::new();
                for col in &cols {
                    let vals: Vec<f64> = mine
                        .iter()
                        .filter_map(|c| {
                            if pick {
                                c.report.generation.get(col)
                            } else {
                                c.report.full_ranking.get(col)
                            }
                        })
                        .collect();
                    let (mean, std) = mean_std(&vals);
                    row.push(format!("{mean:.4} ± {std:.4}"));
                    csv.push_str(&format!("{m},{mode},{col},{mean},{std},{}\n", vals.len()));
                }
                md.push_str(&format!("| {m} | {} |\n", row.join(" | ")));
            }
        }
    }
    (md, csv)
}

fn seed_mean(curves: &[&Vec<StepRecord>], f: impl Fn(&StepRecord) -> f64) -> Vec<(f64, f64)> {
    let len = curves.iter().map(|c| c.len()).min().unwrap_or(0);
    (1..len)
        .map(|i| {
            let v: Vec<f64> = curves.iter().map(|c| f(&c[i])).collect();
            (curves[0][i].step as f64, mean_std(&v).0)
        })
        .collect()
}

/// Runs `blade compare`.
pub fn run(a: CompareArgs) -> Result<()> {
    if a.seeds.is_empty() || a.methods.is_empty() {
        bail!("--methods and --seeds must not be empty");
    }
    let Some(init) = a.align.init.clone() else {
        bail!("give the SFT run every method starts from with --init DIR");
    };
    let info = RunInfo::load(&init)?;
    let device = a.backend.device()?;
    let (ds, split) = dataset_and_split(&info.data)?;
    let catalog = CatalogInfo::from_dataset(&ds, &split);
    let reward =
        parse_reward(&a.align.reward, &catalog).map_err(|e| anyhow::anyhow!("--reward {e}"))?;
    let ev = Evaluator::new(&ds, &split, EvalConfig::default())?;
    let c = Ctx {
        a: &a,
        init: &init,
        ds: &ds,
        split: &split,
        catalog: &catalog,
        ev: &ev,
        device: &device,
    };
    std::fs::create_dir_all(a.out.join("runs"))?;

    let mut cells = Vec::new();
    let mut curves: BTreeMap<String, Vec<(u64, Vec<StepRecord>)>> = BTreeMap::new();
    let mut order = Vec::new();
    for m in &a.methods {
        if m == "sft" {
            let (_, model) = load_item_lm(&init, &device)?;
            let (report, _) = evaluate_one(
                &ev,
                &Named {
                    name: "sft".into(),
                    inner: &model,
                },
                &split.test,
            )?;
            for &seed in &a.seeds {
                cells.push(Cell {
                    method: "sft".into(),
                    seed,
                    report: report.clone(),
                });
            }
            order.push("sft".to_string());
            continue;
        }
        let method: Method = m
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--methods {m}: {e}"))?;
        for &seed in &a.seeds {
            let dir = a
                .out
                .join("runs")
                .join(format!("{}-s{seed}", method.name()));
            let (report, cv) = run_one(&c, method, reward.as_ref(), seed, &dir)?;
            cells.push(Cell {
                method: method.name().into(),
                seed,
                report,
            });
            curves
                .entry(method.name().into())
                .or_default()
                .push((seed, cv));
        }
        order.push(method.name().to_string());
    }
    if a.bon_inference > 0 {
        let (_, model) = load_item_lm(&init, &device)?;
        let oracle = is_accuracy(&a.align.reward);
        let name = format!(
            "bon-inference@{}{}",
            a.bon_inference,
            if oracle { " (oracle)" } else { "" }
        );
        for &seed in &a.seeds {
            let lists = best_of_n_lists(
                &model,
                &split.test,
                reward.as_ref(),
                &catalog,
                a.bon_inference,
                10,
                true,
                oracle,
                seed,
            )?;
            let table = ev.table(&lists, &split.test);
            let report = EvalReport {
                method: name.clone(),
                generation: table.clone(),
                full_ranking: table,
                users: split.test.len(),
                mask_history: true,
                ks: ev.config().ks.clone(),
                seconds: 0.0,
            };
            cells.push(Cell {
                method: name.clone(),
                seed,
                report,
            });
        }
        order.push(name);
    }

    let (md, csv) = tables(&cells, &order, &ev.config().ks);
    let header = format!(
        "# blade compare\n\ndata: {} ({} users, {} items); reward: `{}`; seeds: {:?}; steps: {}, B = {}, G = {}; \
         history masked; lower is better for mgu, dgu, or_ratio. `bon-inference (oracle)` sees the test \
         target and is an upper bound, not a method.\n",
        info.data.data,
        ds.num_users(),
        ds.num_items(),
        a.align.reward,
        a.seeds,
        a.align.steps,
        a.align.prompts_per_step,
        a.align.group_size
    );
    let md = header + &md;
    blade_core::sft::write_atomic(&a.out.join("results.md"), md.as_bytes())?;
    blade_core::sft::write_atomic(&a.out.join("results.csv"), csv.as_bytes())?;
    blade_core::sft::write_atomic(
        &a.out.join("reports.json"),
        serde_json::to_string_pretty(&cells)?.as_bytes(),
    )?;
    // every run's own curves.csv, prefixed with its method and seed
    let mut all = String::new();
    for (m, runs) in &curves {
        for (seed, _) in runs {
            let path = a
                .out
                .join("runs")
                .join(format!("{m}-s{seed}"))
                .join("curves.csv");
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            if all.is_empty() {
                all.push_str(&format!("method,seed,{header}\n"));
            }
            for line in lines {
                all.push_str(&format!("{m},{seed},{line}\n"));
            }
        }
    }
    blade_core::sft::write_atomic(&a.out.join("curves.csv"), all.as_bytes())?;
    // the static ceilings of the training pool (same SFT run, reward and M for every method)
    let ceilings = curves.iter().next().and_then(|(m, runs)| {
        let dir = a.out.join("runs").join(format!("{m}-s{}", runs.first()?.0));
        blade_core::align::reference::read_json::<AlignSummary>(&dir.join("summary.json"))
            .ok()
            .map(|s| s.ceilings_pool)
    });
    pictures(&a.out, &curves, ceilings)?;
    if !a.lambdas.is_empty() {
        fronts(&c, &a.out)?;
    }
    println!("{md}\nresults in {}", a.out.display());
    Ok(())
}

/// Horizontal lines at the static ceilings, spanning the steps of `series`.
fn ceiling_lines(series: &[Series], c: &Ceilings) -> Vec<Series> {
    let last = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let flat = |label: &str, y: f64| Series {
        label: label.into(),
        points: vec![(1.0, y), (last, y)],
    };
    let mut lines = vec![
        flat("SFT reference (mean)", c.reference_mean),
        flat("ceiling: max of M cached", c.max_of_m),
    ];
    if let Some(b) = c.expected_bon {
        lines.push(flat("ceiling: E[best of N] of SFT", b));
    }
    lines
}

fn pictures(
    out: &Path,
    curves: &BTreeMap<String, Vec<(u64, Vec<StepRecord>)>>,
    ceilings: Option<Ceilings>,
) -> Result<()> {
    let series = |f: &dyn Fn(&StepRecord) -> f64, only: &[&str]| -> Vec<Series> {
        curves
            .iter()
            .filter(|(m, _)| only.is_empty() || only.contains(&m.as_str()))
            .map(|(m, runs)| {
                let cv: Vec<&Vec<StepRecord>> = runs.iter().map(|(_, c)| c).collect();
                Series {
                    label: m.clone(),
                    points: seed_mean(&cv, f),
                }
            })
            .collect()
    };
    let mut reward = series(&|r| r.reward, &[]);
    if let Some(c) = &ceilings {
        let lines = ceiling_lines(&reward, c);
        reward.extend(lines);
    }
    line_chart(
        &out.join("reward.svg"),
        "Mean list reward of the rollouts, with the static ceilings of the pool",
        "step",
        "reward",
        &reward,
        false,
    )?;
    line_chart(
        &out.join("zero_spread.svg"),
        "Share of groups whose raw reward has zero spread",
        "step",
        "share of groups",
        &series(&|r| r.zero_spread_raw, &[]),
        false,
    )?;
    line_chart(
        &out.join("distinct_lists.svg"),
        "Distinct lists per group (entropy collapse shows here)",
        "step",
        "distinct lists",
        &series(&|r| r.distinct_lists, &[]),
        false,
    )?;
    let pair = ["bon-static", "blade"];
    if pair.iter().all(|m| curves.contains_key(*m)) {
        line_chart(
            &out.join("gradient_decay.svg"),
            "Within-group std of the training signal (gradient decay)",
            "step",
            "std of R within a group",
            &series(&|r| r.proxy_std, &pair),
            false,
        )?;
        line_chart(
            &out.join("reward_static_vs_blade.svg"),
            "Rollout reward: bon-static vs blade",
            "step",
            "reward",
            &series(&|r| r.reward, &pair),
            false,
        )?;
        let mut split: Vec<Series> = series(&|r| r.saturated_tied, &pair)
            .into_iter()
            .map(|s| Series {
                label: format!("{} tied", s.label),
                ..s
            })
            .collect();
        split.extend(
            series(&|r| r.saturated_beyond, &pair)
                .into_iter()
                .map(|s| Series {
                    label: format!("{} beyond", s.label),
                    ..s
                }),
        );
        line_chart(
            &out.join("saturation_split.svg"),
            "Rollouts tied with the reference maximum vs strictly beyond it",
            "step",
            "share",
            &split,
            false,
        )?;
        line_chart(
            &out.join("saturation.svg"),
            "Share of rollouts beyond the reference (F_ref = 1)",
            "step",
            "share",
            &series(&|r| r.saturated, &pair),
            false,
        )?;
    }
    Ok(())
}

/// Accuracy-vs-fairness and accuracy-vs-diversity fronts over the composite weight lambda.
fn fronts(c: &Ctx, out: &Path) -> Result<()> {
    let seed = c.a.seeds[0];
    let base = &c.a.align.reward;
    let mut csv = String::from("method,axis,lambda,ndcg@10,mgu@10,ild@10\n");
    for (axis, term, metric, file, label) in [
        (
            "fairness",
            "fairness",
            "mgu@10",
            "pareto_fairness.svg",
            "MGU@10 (lower is fairer)",
        ),
        (
            "diversity",
            "ild",
            "ild@10",
            "pareto_diversity.svg",
            "ILD@10",
        ),
    ] {
        let mut series = Vec::new();
        for m in &c.a.front_methods {
            let method: Method = m
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--front-methods {m}: {e}"))?;
            let mut pts = Vec::new();
            for &lambda in &c.a.lambdas {
                let spec = if lambda == 0.0 {
                    base.clone()
                } else {
                    format!("{base} + {lambda}*{term}")
                };
                let reward = parse_reward(&spec, c.catalog).map_err(|e| anyhow::anyhow!("{e}"))?;
                // lambda = 0 is the table's own run of this method and seed
                let name = if lambda == 0.0 {
                    format!("{}-s{seed}", method.name())
                } else {
                    format!("{}-{axis}-l{lambda}-s{seed}", method.name())
                };
                let dir = out.join("runs").join(name);
                let (report, _) = run_one(c, method, reward.as_ref(), seed, &dir)?;
                let g = &report.generation;
                let (n, f, d) = (
                    g.get("ndcg@10").unwrap_or(f64::NAN),
                    g.get("mgu@10").unwrap_or(f64::NAN),
                    g.get("ild@10").unwrap_or(f64::NAN),
                );
                csv.push_str(&format!("{},{axis},{lambda},{n},{f},{d}\n", method.name()));
                pts.push((g.get(metric).unwrap_or(f64::NAN), n));
            }
            series.push(Series {
                label: method.name().into(),
                points: pts,
            });
        }
        line_chart(
            &out.join(file),
            &format!("NDCG@10 vs {axis} over lambda"),
            label,
            "NDCG@10",
            &series,
            true,
        )?;
    }
    let _ = c.ds;
    blade_core::sft::write_atomic(&out.join("fronts.csv"), csv.as_bytes())?;
    Ok(())
}
