//! Multi-seed comparisons: several methods aligned from one SFT run (of either policy kind)
//! over several seeds into one results folder, with tables (mean ± std over seeds), every run's
//! curves, SVG pictures with the static ceilings, and accuracy-vs-fairness/diversity fronts.

use std::collections::BTreeMap;
use std::path::Path;

use blade_core::align::reference::read_json;
use blade_core::align::{
    read_curves, AlignConfig, AlignInputs, AlignSummary, Ceilings, Method, StepRecord,
};
use blade_core::policy::bon::best_of_n_lists;
use blade_core::reward::{parse_reward, score_group, CatalogInfo, ListReward, RewardContext};
use blade_core::sft::write_atomic;
use blade_core::{CoreError, Dashboard, EvalConfig, EvalLists, EvalReport, Evaluator, Result};
use blade_data::{EvalCase, ItemId, Split};
use blade_metrics::{ndcg_at_k, recall_at_k};
use burn::tensor::Device;
use serde::Serialize;

use crate::parallel_map;
use crate::plot::{line_chart, Series};
use crate::run::{align_run, open_run, Checkpoint, RunManifest};
use crate::table::mean_std;

/// What to compare.
pub struct CompareSpec<'a> {
    /// The SFT run every method starts from (item-level or LLM).
    pub init: &'a Path,
    /// Methods: `sft` (the reference itself) and alignment method names.
    pub methods: &'a [String],
    /// Seeds; each alignment method runs once per seed.
    pub seeds: &'a [u64],
    /// Results folder (runs go to `runs/<method>-s<seed>`).
    pub out: &'a Path,
    /// The training reward spec.
    pub reward: &'a str,
    /// Also add a best-of-N-at-inference row with this N (0 = none).
    pub bon_inference: usize,
    /// Composite weights of the fronts (empty = none).
    pub lambdas: &'a [f32],
    /// Methods whose fronts are traced (first seed only).
    pub front_methods: &'a [String],
    /// Evaluate only the first N test users (e.g. for an LLM policy on a CPU).
    pub max_eval_users: Option<usize>,
    /// Methods every other method is compared with, user by user (paired bootstrap over users,
    /// pooled over seeds; absent ones are skipped).
    pub baselines: &'a [String],
    /// The alignment settings of a method and seed.
    pub config: &'a (dyn Fn(Method, u64) -> Result<AlignConfig> + Sync),
    /// Dashboard of each alignment run (plain text when `jobs > 1`).
    pub dashboard: Dashboard,
    /// (method, seed) runs trained at the same time, each in its own thread. burn's CPU
    /// backend keeps about one core busy per run, so two jobs on two cores nearly halve a
    /// comparison's time; every run is seeded on its own, so results do not depend on `jobs`.
    pub jobs: usize,
    /// The device.
    pub device: &'a Device,
    /// Progress lines (`== method seed`), e.g. printed by the caller.
    pub log: &'a (dyn Fn(&str) + Sync),
}

/// One (method, seed) result.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// The method.
    pub method: String,
    /// The seed.
    pub seed: u64,
    /// Its test report.
    pub report: EvalReport,
    /// Per-user values of the paired metrics (in `per_user.csv`, not in `reports.json`).
    #[serde(skip)]
    pub per_user: PerUser,
}

/// What a comparison produced (also written into its folder).
pub struct CompareOutcome {
    /// `results.md`.
    pub markdown: String,
    /// Every (method, seed) report.
    pub cells: Vec<Cell>,
}

/// One entry of `--methods`: a method, optionally with its own settings changed, e.g.
/// `blade:tau=0.1:gamma=1` or `blade:tau=auto`, so that a sweep is one comparison with paired
/// statistics. The label names its table row and its run folders (`:` becomes `_`).
#[derive(Debug, Clone, PartialEq)]
pub struct MethodVariant {
    /// The entry as written.
    pub label: String,
    /// The method.
    pub method: Method,
    /// `(setting, value)` pairs applied to the method's own settings, in order.
    pub settings: Vec<(String, String)>,
}

impl MethodVariant {
    /// Parses `method[:setting=value]*`.
    pub fn parse(entry: &str) -> Result<Self> {
        let bad = |m: String| CoreError::Config(format!("--methods {entry}: {m}"));
        let mut parts = entry.split(':');
        let method: Method = parts.next().unwrap_or_default().parse().map_err(bad)?;
        let settings = parts
            .map(|p| match p.split_once('=') {
                Some((k, v)) if !k.is_empty() && !v.is_empty() => {
                    Ok((k.to_string(), v.to_string()))
                }
                _ => Err(bad(format!("`{p}`: expected setting=value"))),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            label: entry.to_string(),
            method,
            settings,
        })
    }

    /// The folder name of the variant's runs.
    pub fn dir_name(&self) -> String {
        label_dir(&self.label)
    }

    /// `cfg` with the variant's settings applied to its method's settings (the fields of the
    /// method's entry in `align.json`; `tau=auto` sets BLADE's `tau_auto`, `tau=spread` its
    /// `tau_spread` to the default share). An unknown setting
    /// or a value of the wrong type is an error naming the method's settings.
    pub fn apply(&self, mut cfg: AlignConfig) -> Result<AlignConfig> {
        let bad = |m: String| CoreError::Config(format!("--methods {}: {m}", self.label));
        let mut value = serde_json::to_value(&cfg.method).map_err(|e| bad(e.to_string()))?;
        let serde_json::Value::Object(fields) = &mut value else {
            return Err(bad("the method's settings are not an object".into()));
        };
        let known: Vec<String> = fields
            .keys()
            .filter(|k| k.as_str() != "method")
            .cloned()
            .collect();
        for (k, v) in &self.settings {
            let (key, v) = match (k.as_str(), v.as_str()) {
                ("tau", "auto") if fields.contains_key("tau_auto") => ("tau_auto", "true"),
                ("tau", "spread") if fields.contains_key("tau_spread") => {
                    ("tau_spread", SPREAD_DEFAULT)
                }
                _ => (k.as_str(), v.as_str()),
            };
            if key == "method" || !fields.contains_key(key) {
                return Err(bad(format!(
                    "unknown setting `{k}` of {}; its settings: {}",
                    self.method.name(),
                    known.join(", ")
                )));
            }
            let parsed: serde_json::Value = serde_json::from_str(v)
                .map_err(|_| bad(format!("`{k}={v}`: expected a number or true/false")))?;
            fields.insert(key.to_string(), parsed);
        }
        cfg.method = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        Ok(cfg)
    }
}

/// `tau=spread`'s share, as JSON text ([`blade_core::target::DEFAULT_SPREAD_SHARE`]).
const SPREAD_DEFAULT: &str = "0.5";

/// The folder name of a method label's runs (`blade:tau=0.1` -> `blade_tau=0.1`).
fn label_dir(label: &str) -> String {
    label.replace(':', "_")
}

struct Ctx<'a> {
    s: &'a CompareSpec<'a>,
    split: &'a Split,
    catalog: &'a CatalogInfo,
    /// The table's training reward, also scored on the held-out generated lists.
    reward: &'a dyn ListReward,
    ev: &'a Evaluator,
    cases: &'a [EvalCase],
    /// `folder_fingerprint` of the SFT run: finished or unfinished runs aligned from another
    /// SFT run (or from this one before it changed) are trained again.
    init_fingerprint: String,
}

fn is_accuracy(spec: &str) -> bool {
    ["ndcg", "recall", "mrr", "hit"]
        .iter()
        .any(|t| spec.contains(t))
}

/// Per-user values of the metrics the paired statistics use, keyed `"<mode> <metric>"`.
pub type PerUser = BTreeMap<String, Vec<f64>>;

/// The metrics of the paired statistics: (mode, metric, cut-off).
const PAIRED: &[(&str, &str, usize)] = &[
    ("generation", "ndcg", 5),
    ("generation", "ndcg", 10),
    ("generation", "recall", 10),
    ("full-rank", "ndcg", 10),
];

/// The key of the training reward scored on each test user's generated list.
pub const REWARD_KEY: &str = "generation reward";

/// Every key of the paired statistics, in table order: the metrics, then [`REWARD_KEY`].
fn paired_keys() -> Vec<String> {
    PAIRED
        .iter()
        .map(|(mode, metric, k)| format!("{mode} {metric}@{k}"))
        .chain([REWARD_KEY.to_string()])
        .collect()
}

/// Per test user, `reward` of the generated list (the prompt's user, everything seen before the
/// target as history, the target) under the [`REWARD_KEY`] key of `out`.
pub fn add_reward(
    out: &mut PerUser,
    generated: &[Vec<ItemId>],
    cases: &[EvalCase],
    reward: &dyn ListReward,
    catalog: &CatalogInfo,
) -> Result<()> {
    let targets: Vec<[ItemId; 1]> = cases.iter().map(|c| [c.target]).collect();
    let ctx: Vec<RewardContext> = cases
        .iter()
        .zip(&targets)
        .map(|(c, t)| RewardContext {
            user: Some(c.user),
            history: &c.seen,
            window: &c.history,
            targets: t,
            catalog,
        })
        .collect();
    let scores = score_group(reward, &ctx, &generated[..cases.len().min(generated.len())])
        .map_err(|e| CoreError::Config(e.to_string()))?;
    out.insert(
        REWARD_KEY.into(),
        scores.into_iter().map(f64::from).collect(),
    );
    Ok(())
}

/// Per test user, the paired metrics of `lists` against each case's target (keys as in
/// `per_user.csv`, e.g. `"generation ndcg@10"`).
pub fn per_user(lists: &EvalLists, cases: &[EvalCase]) -> PerUser {
    let mut out = PerUser::new();
    for &(mode, metric, k) in PAIRED {
        let rows = if mode == "generation" {
            &lists.generated
        } else {
            &lists.ranked
        };
        let v = rows
            .iter()
            .zip(cases)
            .map(|(l, c)| {
                let t = [c.target];
                if metric == "ndcg" {
                    ndcg_at_k(l, &t, k)
                } else {
                    recall_at_k(l, &t, k)
                }
            })
            .collect();
        out.insert(format!("{mode} {metric}@{k}"), v);
    }
    out
}

fn evaluate(c: &Ctx, rec: &dyn blade_core::Recommender) -> Result<(EvalReport, PerUser)> {
    let (report, lists) = c.ev.evaluate(rec, c.cases, &mut |_, _| {})?;
    let users = paired_per_user(&lists, c.cases, c.reward, c.catalog)?;
    Ok((report, users))
}

/// The paired metrics of `lists` ([`per_user`]) and the reward of the generated lists
/// ([`add_reward`]), per test user.
pub fn paired_per_user(
    lists: &EvalLists,
    cases: &[EvalCase],
    reward: &dyn ListReward,
    catalog: &CatalogInfo,
) -> Result<PerUser> {
    let mut users = per_user(lists, cases);
    add_reward(&mut users, &lists.generated, cases, reward, catalog)?;
    Ok(users)
}

/// Trains (or reuses a finished run of) one method with one reward and seed, then evaluates
/// its best checkpoint on validation, as `blade eval` does by default.
fn run_one(
    c: &Ctx,
    variant: &MethodVariant,
    reward: &dyn ListReward,
    seed: u64,
    dir: &Path,
) -> Result<(EvalReport, PerUser, Vec<StepRecord>)> {
    let cfg = variant.apply((c.s.config)(variant.method, seed)?)?;
    // reuse a finished run only if it was trained with these settings *and* this reward from
    // this SFT run as it is now (runs from before the SFT run was recorded: as before)
    let same_inputs = read_json::<AlignSummary>(&dir.join("summary.json")).is_ok_and(|s| {
        s.reward == reward.name() && (s.init.is_empty() || s.init == c.init_fingerprint)
    });
    let done = same_inputs
        && std::fs::read_to_string(dir.join("align.json"))
            .is_ok_and(|saved| blade_core::align::same_results(&saved, &cfg));
    if !done {
        // an unfinished run of these settings and this reward (a comparison killed half-way)
        // continues from its last checkpoint: the same result as training it again
        let resume = blade_core::align::resumable(dir, &cfg, &reward.name(), &c.init_fingerprint);
        // `summary.json` is written last: remove it first, so that a retrain killed half-way
        // is never taken for a finished run by the next comparison
        let summary = dir.join("summary.json");
        if summary.exists() {
            std::fs::remove_file(&summary).map_err(|e| CoreError::file(&summary, e))?;
        }
        let inputs = AlignInputs {
            split: c.split,
            catalog: c.catalog,
            reward,
            init: c.s.init,
            device: c.s.device,
        };
        (c.s.log)(&format!(
            "== {} seed {seed} ({}){}",
            variant.label,
            reward.name(),
            if resume {
                ", continued from its last checkpoint"
            } else {
                ""
            }
        ));
        align_run(&cfg, &inputs, dir, c.s.dashboard, resume)?;
    }
    let curves = read_curves(&dir.join("curves.csv"))?;
    let run = open_run(dir, Checkpoint::Best, c.s.device)?.named(&variant.label);
    let (report, users) = evaluate(c, &run)?;
    Ok((report, users, curves))
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
pub fn seed_tables(cells: &[Cell], order: &[String], ks: &[usize]) -> (String, String) {
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

/// Bootstrap resamples of the paired statistics.
const RESAMPLES: usize = 2000;

/// Markdown and CSV of every method's paired difference to each baseline, per paired metric:
/// mean, 95% bootstrap interval over users (pooled over seeds), relative difference, p-value;
/// a significant difference (interval excludes 0 and p < 0.05) is marked a win or a loss.
pub fn paired_tables(
    cells: &[Cell],
    order: &[String],
    seeds: &[u64],
    baselines: &[String],
) -> (String, String) {
    let mut md = String::new();
    let mut csv = String::from("method,baseline,metric,users,diff,lo,hi,relative_pct,p\n");
    let values = |m: &str, key: &str| -> Option<Vec<Vec<f64>>> {
        seeds
            .iter()
            .map(|&s| {
                cells
                    .iter()
                    .find(|c| c.method == m && c.seed == s)
                    .and_then(|c| c.per_user.get(key).cloned())
            })
            .collect()
    };
    for b in baselines.iter().filter(|b| order.contains(b)) {
        md.push_str(&format!(
            "\n**Paired differences to `{b}`** (test users; per user the mean over seeds of method - \
             {b}; 95% percentile bootstrap over users, {RESAMPLES} resamples; p two-sided)\n\n\
             | method | metric | diff | 95% CI | relative | p | |\n|---|---|---:|---|---:|---:|---|\n"
        ));
        for m in order.iter().filter(|m| *m != b) {
            for key in paired_keys() {
                let (Some(mv), Some(bv)) = (values(m, &key), values(b, &key)) else {
                    continue;
                };
                let Some((diff, base)) = crate::stats::pool_seeds(&mv, &bv) else {
                    continue;
                };
                let d = crate::stats::paired_bootstrap(&diff, &base, RESAMPLES, 0);
                let rel = d.relative_pct().map_or("-".into(), |r| format!("{r:+.1}%"));
                let mark = match d.verdict() {
                    "tie" => "tie".to_string(),
                    v => format!("**{v}**"),
                };
                md.push_str(&format!(
                    "| {m} | {key} | {:+.4} | [{:+.4}, {:+.4}] | {rel} | {:.3} | {mark} |\n",
                    d.mean, d.lo, d.hi, d.p
                ));
                csv.push_str(&format!(
                    "{m},{b},{key},{},{},{},{},{},{}\n",
                    d.n,
                    d.mean,
                    d.lo,
                    d.hi,
                    d.relative_pct().unwrap_or(f64::NAN),
                    d.p
                ));
            }
        }
    }
    (md, csv)
}

/// `per_user.csv`: one row per (method, seed, user) with the paired metrics.
fn per_user_csv(cells: &[Cell], cases: &[EvalCase]) -> String {
    let keys = paired_keys();
    let mut out = format!("method,seed,user,{}\n", keys.join(","));
    for c in cells.iter().filter(|c| !c.per_user.is_empty()) {
        for (u, case) in cases.iter().enumerate() {
            let vals: Vec<String> = keys
                .iter()
                .map(|k| {
                    c.per_user
                        .get(k)
                        .and_then(|v| v.get(u))
                        .map_or(String::new(), |v| v.to_string())
                })
                .collect();
            out.push_str(&format!(
                "{},{},{},{}\n",
                c.method,
                c.seed,
                case.user,
                vals.join(",")
            ));
        }
    }
    out
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

/// Runs a comparison into `spec.out`.
pub fn compare(spec: &CompareSpec) -> Result<CompareOutcome> {
    if spec.seeds.is_empty() || spec.methods.is_empty() {
        return Err(CoreError::Config(
            "--methods and --seeds must not be empty".into(),
        ));
    }
    let info = RunManifest::load_sft(spec.init)?;
    let (ds, split) = info.dataset_and_split(spec.init)?;
    let methods: Vec<Option<MethodVariant>> = spec
        .methods
        .iter()
        .map(|m| {
            if m == "sft" {
                Ok(None)
            } else {
                MethodVariant::parse(m).map(Some)
            }
        })
        .collect::<Result<_>>()?;
    let mut specs = vec![spec.reward.to_string()];
    for v in methods.iter().flatten() {
        // a bad setting fails here, before anything trains
        let cfg = v.apply((spec.config)(v.method, spec.seeds[0])?)?;
        cfg.check()?;
        specs.push(cfg.select);
    }
    let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
    let catalog = info.catalog_for(&ds, &split, spec.init, &specs, spec.device)?;
    let reward =
        parse_reward(spec.reward, &catalog).map_err(|e| CoreError::Config(e.to_string()))?;
    let ev = Evaluator::new(
        &ds,
        &split,
        EvalConfig {
            batch_size: info.kind.eval_batch_size(),
            ..EvalConfig::default()
        },
    )?;
    let n_cases = spec
        .max_eval_users
        .unwrap_or(usize::MAX)
        .min(split.test.len());
    let c = Ctx {
        s: spec,
        split: &split,
        catalog: &catalog,
        reward: reward.as_ref(),
        ev: &ev,
        cases: &split.test[..n_cases],
        init_fingerprint: blade_core::checkpoint::folder_fingerprint(spec.init)?,
    };
    let runs_dir = spec.out.join("runs");
    std::fs::create_dir_all(&runs_dir).map_err(|e| CoreError::file(&runs_dir, e))?;

    let mut cells = Vec::new();
    let mut curves: BTreeMap<String, Vec<(u64, Vec<StepRecord>)>> = BTreeMap::new();
    let mut order = Vec::new();
    let mut tasks = Vec::new();
    for variant in methods.iter().flatten() {
        for &seed in spec.seeds {
            let dir = runs_dir.join(format!("{}-s{seed}", variant.dir_name()));
            tasks.push((variant, seed, dir));
        }
    }
    let mut results = parallel_map(&tasks, spec.jobs, |(m, seed, dir)| {
        run_one(&c, m, reward.as_ref(), *seed, dir)
    })?
    .into_iter();
    // the SFT reference, loaded once for its own row and for best-of-N at inference
    let sft = if methods.contains(&None) || spec.bon_inference > 0 {
        Some(open_run(spec.init, Checkpoint::Best, spec.device)?.named("sft"))
    } else {
        None
    };
    for method in &methods {
        let Some(method) = method else {
            let Some(sft) = &sft else { continue };
            let (report, users) = evaluate(&c, sft)?;
            for &seed in spec.seeds {
                cells.push(Cell {
                    method: "sft".into(),
                    seed,
                    report: report.clone(),
                    per_user: users.clone(),
                });
            }
            order.push("sft".to_string());
            continue;
        };
        for &seed in spec.seeds {
            let Some((report, users, cv)) = results.next() else {
                return Err(CoreError::Config("a comparison run is missing".into()));
            };
            cells.push(Cell {
                method: method.label.clone(),
                seed,
                report,
                per_user: users,
            });
            curves
                .entry(method.label.clone())
                .or_default()
                .push((seed, cv));
        }
        order.push(method.label.clone());
    }
    if let Some(sft) = sft.as_ref().filter(|_| spec.bon_inference > 0) {
        let oracle = is_accuracy(spec.reward);
        let name = format!(
            "bon-inference@{}{}",
            spec.bon_inference,
            if oracle { " (oracle)" } else { "" }
        );
        for &seed in spec.seeds {
            let lists = best_of_n_lists(
                sft,
                c.cases,
                reward.as_ref(),
                &catalog,
                spec.bon_inference,
                10,
                true,
                oracle,
                seed,
            )?;
            let table = ev.table(&lists, c.cases);
            let report = EvalReport {
                method: name.clone(),
                generation: table.clone(),
                full_ranking: table,
                users: c.cases.len(),
                mask_history: true,
                ks: ev.config().ks.clone(),
                seconds: 0.0,
            };
            // an oracle sees the test target: an upper bound, kept out of the paired tables
            let users = if oracle {
                PerUser::new()
            } else {
                let both = EvalLists {
                    generated: lists.clone(),
                    ranked: lists,
                };
                paired_per_user(&both, c.cases, reward.as_ref(), &catalog)?
            };
            cells.push(Cell {
                method: name.clone(),
                seed,
                report,
                per_user: users,
            });
        }
        order.push(name);
    }

    let (md, csv) = seed_tables(&cells, &order, &ev.config().ks);
    let (paired_md, paired_csv) = paired_tables(&cells, &order, spec.seeds, spec.baselines);
    let first = (spec.config)(Method::Grpo, spec.seeds[0])?;
    let header = format!(
        "# blade compare\n\ndata: {} ({} users, {} items, {} policy); {} test users; reward: `{}`; seeds: {:?}; \
         steps: {}, B = {}, G = {}; history masked; lower is better for mgu, dgu, or_ratio. \
         `bon-inference (oracle)` sees the test target and is an upper bound, not a method.\n",
        info.data.data,
        ds.num_users(),
        ds.num_items(),
        info.kind.name(),
        c.cases.len(),
        spec.reward,
        spec.seeds,
        first.steps,
        first.prompts_per_step,
        first.group_size
    );
    let md = header + &md + &paired_md;
    let out = spec.out;
    let write = |name: &str, bytes: &[u8]| write_atomic(&out.join(name), bytes);
    write("results.md", md.as_bytes())?;
    write("results.csv", csv.as_bytes())?;
    write("paired.csv", paired_csv.as_bytes())?;
    write("per_user.csv", per_user_csv(&cells, c.cases).as_bytes())?;
    let json = serde_json::to_string_pretty(&cells).map_err(|e| CoreError::file(out, e))?;
    write("reports.json", json.as_bytes())?;
    // every run's own curves.csv, prefixed with its method and seed
    let mut all = String::new();
    for (m, runs) in &curves {
        for (seed, _) in runs {
            let path = runs_dir
                .join(format!("{}-s{seed}", label_dir(m)))
                .join("curves.csv");
            let text = std::fs::read_to_string(&path).map_err(|e| CoreError::file(&path, e))?;
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
    write("curves.csv", all.as_bytes())?;
    // the static ceilings of the training pool (same SFT run, reward and M for every method)
    let ceilings = curves.iter().next().and_then(|(m, runs)| {
        let dir = runs_dir.join(format!("{}-s{}", label_dir(m), runs.first()?.0));
        read_json::<AlignSummary>(&dir.join("summary.json"))
            .ok()
            .map(|s| s.ceilings_pool)
    });
    pictures(out, &curves, ceilings)?;
    if !spec.lambdas.is_empty() {
        fronts(&c, out)?;
    }
    Ok(CompareOutcome {
        markdown: md,
        cells,
    })
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
    if let Some(o) = c.optimum {
        lines.push(flat("optimum: best possible list", o));
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
    line_chart(
        &out.join("kl.svg"),
        "KL to the reference per list (the run's --kl estimator: k1, or k3 capped at 19; nats)",
        "step",
        "KL",
        &series(&|r| r.kl, &[]),
        false,
    )?;
    line_chart(
        &out.join("kl_k1.svg"),
        "KL to the reference per list, k1 estimate on the rollouts, unclamped (nats)",
        "step",
        "KL (k1)",
        &series(&|r| r.kl_k1, &[]),
        false,
    )?;
    // the mixing weight of every BLADE variant (fixed, auto or spread: what the target used)
    let blades: Vec<&str> = curves
        .keys()
        .map(String::as_str)
        .filter(|m| *m == "blade" || m.starts_with("blade:"))
        .collect();
    if !blades.is_empty() {
        line_chart(
            &out.join("tau.svg"),
            "BLADE's mixing weight tau (batch mean of the prompts' values)",
            "step",
            "tau",
            &series(&|r| r.tau, &blades),
            false,
        )?;
    }
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
    let seed = c.s.seeds[0];
    let base = c.s.reward;
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
        for m in c.s.front_methods {
            let method = MethodVariant::parse(m)?;
            let mut pts = Vec::new();
            for &lambda in c.s.lambdas {
                let spec = if lambda == 0.0 {
                    base.to_string()
                } else {
                    format!("{base} + {lambda}*{term}")
                };
                let reward =
                    parse_reward(&spec, c.catalog).map_err(|e| CoreError::Config(e.to_string()))?;
                // lambda = 0 is the table's own run of this method and seed
                let name = if lambda == 0.0 {
                    format!("{}-s{seed}", method.dir_name())
                } else {
                    format!("{}-{axis}-l{lambda}-s{seed}", method.dir_name())
                };
                let dir = out.join("runs").join(name);
                let (report, _, _) = run_one(c, &method, reward.as_ref(), seed, &dir)?;
                let g = &report.generation;
                let (n, f, d) = (
                    g.get("ndcg@10").unwrap_or(f64::NAN),
                    g.get("mgu@10").unwrap_or(f64::NAN),
                    g.get("ild@10").unwrap_or(f64::NAN),
                );
                csv.push_str(&format!("{},{axis},{lambda},{n},{f},{d}\n", method.label));
                pts.push((g.get(metric).unwrap_or(f64::NAN), n));
            }
            series.push(Series {
                label: method.label.clone(),
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
    write_atomic(&out.join("fronts.csv"), csv.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_variants_change_only_their_own_settings() {
        use blade_core::align::MethodConfig;
        let base = |m: Method| AlignConfig::new(m.default_config());
        let v = MethodVariant::parse("blade:tau=0.1:gamma=1").unwrap();
        assert_eq!(
            (v.method, v.dir_name()),
            (Method::Blade, "blade_tau=0.1_gamma=1".into())
        );
        let MethodConfig::Blade(c) = v.apply(base(Method::Blade)).unwrap().method else {
            panic!("not blade")
        };
        assert_eq!((c.tau, c.gamma, c.tau_auto), (0.1, 1.0, false));
        let auto = MethodVariant::parse("blade:tau=auto").unwrap();
        let MethodConfig::Blade(c) = auto.apply(base(Method::Blade)).unwrap().method else {
            panic!("not blade")
        };
        assert!(c.tau_auto);
        for (label, share) in [("blade:tau=spread", 0.5), ("blade:tau_spread=0.7", 0.7)] {
            let v = MethodVariant::parse(label).unwrap();
            let MethodConfig::Blade(c) = v.apply(base(Method::Blade)).unwrap().method else {
                panic!("not blade")
            };
            assert_eq!((c.tau_spread, c.tau_auto), (Some(share), false), "{label}");
        }
        assert_eq!(
            SPREAD_DEFAULT.parse::<f64>().unwrap(),
            blade_core::target::DEFAULT_SPREAD_SHARE
        );
        assert_eq!(
            MethodVariant::parse("grpo")
                .unwrap()
                .apply(base(Method::Grpo))
                .unwrap(),
            base(Method::Grpo)
        );
        let unknown = MethodVariant::parse("grpo:tau=0.1")
            .unwrap()
            .apply(base(Method::Grpo))
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("unknown setting `tau` of grpo"),
            "{unknown}"
        );
        let typed = MethodVariant::parse("blade:tau=high")
            .unwrap()
            .apply(base(Method::Blade))
            .unwrap_err()
            .to_string();
        assert!(typed.contains("`tau=high`"), "{typed}");
        for bad in ["blade:tau", "blade:=1", "nope:tau=1"] {
            assert!(MethodVariant::parse(bad).is_err(), "{bad}");
        }
    }

    fn cell(method: &str, seed: u64, gen_ndcg10: Vec<f64>) -> Cell {
        let mut per_user = PerUser::new();
        per_user.insert("generation ndcg@10".into(), gen_ndcg10);
        Cell {
            method: method.into(),
            seed,
            report: EvalReport {
                method: method.into(),
                generation: Default::default(),
                full_ranking: Default::default(),
                users: 0,
                mask_history: true,
                ks: vec![10],
                seconds: 0.0,
            },
            per_user,
        }
    }

    #[test]
    fn paired_tables_mark_known_wins_losses_and_ties() {
        let users = 100;
        let base: Vec<f64> = (0..users).map(|u| (u % 5) as f64 / 10.0).collect();
        let plus = |d: f64| base.iter().map(|b| b + d).collect::<Vec<_>>();
        let cells = vec![
            cell("bon-static", 1, base.clone()),
            cell("bon-static", 2, base.clone()),
            // +0.1 on every user and seed: a certain win of +0.1 (+50% of the mean 0.2)
            cell("blade", 1, plus(0.1)),
            cell("blade", 2, plus(0.1)),
            // -0.05 on seed 1, +0.05 on seed 2: per user the mean is 0, a tie
            cell("grpo", 1, plus(-0.05)),
            cell("grpo", 2, plus(0.05)),
            // -0.02 everywhere: a loss
            cell("sdpo", 1, plus(-0.02)),
            cell("sdpo", 2, plus(-0.02)),
        ];
        let order: Vec<String> = ["bon-static", "blade", "grpo", "sdpo"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (md, csv) = paired_tables(
            &cells,
            &order,
            &[1, 2],
            &["bon-static".into(), "absent".into()],
        );
        let row = |m: &str| {
            md.lines()
                .find(|l| l.starts_with(&format!("| {m} | generation ndcg@10")))
                .unwrap_or_else(|| panic!("no row for {m} in\n{md}"))
                .to_string()
        };
        assert!(
            row("blade").contains("+0.1000 | [+0.1000, +0.1000] | +50.0% | 0.000 | **win**"),
            "{}",
            row("blade")
        );
        assert!(
            row("grpo").contains("| tie |") && row("grpo").contains("| 1.000 |"),
            "{}",
            row("grpo")
        );
        assert!(
            row("sdpo").contains("**loss**") && row("sdpo").contains("-10.0%"),
            "{}",
            row("sdpo")
        );
        assert!(
            !md.contains("`absent`"),
            "a baseline that did not run is skipped"
        );
        assert_eq!(csv.lines().count(), 1 + 3, "{csv}");
        assert!(csv.contains("blade,bon-static,generation ndcg@10,100,"));
    }

    #[test]
    fn the_training_reward_on_test_lists_is_paired_too() {
        use blade_core::reward::Taste;
        let catalog = CatalogInfo::new(vec![vec![0], vec![1], vec![0, 1]], 2, vec![3, 2, 1]);
        // user 0 likes genre 0, user 1 genre 1
        let taste = Taste::new(1, &[vec![1.0, 0.0], vec![0.0, 1.0]], &catalog.item_genres);
        let case = |user, seen: Vec<ItemId>| EvalCase {
            user,
            history: seen.clone(),
            seen,
            target: 2,
        };
        // user 1 has seen item 1, so its best unseen item is 2 (affinity 0.5 of the best 0.5)
        let cases = vec![case(0, vec![]), case(1, vec![1])];
        let mut users = PerUser::new();
        add_reward(&mut users, &[vec![1], vec![2]], &cases, &taste, &catalog).unwrap();
        assert_eq!(users[REWARD_KEY], vec![0.0, 1.0]);
        // the key gets its own rows in the paired tables
        let with_reward = |method: &str, v: f64| {
            let mut c = cell(method, 1, vec![0.5; 2]);
            c.per_user.insert(REWARD_KEY.into(), vec![v; 2]);
            c
        };
        let cells = vec![with_reward("bon-static", 0.4), with_reward("blade", 0.6)];
        let order = vec!["bon-static".to_string(), "blade".to_string()];
        let (md, _) = paired_tables(&cells, &order, &[1], &["bon-static".into()]);
        assert!(
            md.lines()
                .any(|l| l.starts_with("| blade | generation reward | +0.2000")),
            "{md}"
        );
    }
}
