//! What several commands share: dataset resolution, device choice, run folders and tables.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use blade_core::{BackendSpec, EvalReport};
use blade_data::synthetic::{generate, SyntheticConfig};
use blade_data::{Dataset, PreprocessConfig, Split};
use burn::tensor::Device;
use clap::Args;
use serde::{Deserialize, Serialize};

/// Default cache of downloaded datasets (ignored by git).
pub const DEFAULT_CACHE: &str = "data-cache";

/// Where the data comes from and how it is prepared.
#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct DataArgs {
    /// `synthetic` (built in, offline), `ml-100k` (after `blade data fetch ml-100k`), or a
    /// dataset JSON written by `blade data import`.
    #[arg(long, default_value = "synthetic")]
    pub data: String,
    /// Cache folder of fetched datasets.
    #[arg(long, default_value = DEFAULT_CACHE)]
    pub cache: PathBuf,
    /// Prompt length L: the number of most recent items a prompt holds.
    #[arg(long, default_value_t = 10)]
    pub history_len: usize,
    /// k-core filter applied to built-in and fetched datasets.
    #[arg(long, default_value_t = 5)]
    pub k_core: usize,
    /// Keep only interactions rated at least this (built-in and fetched datasets).
    #[arg(long)]
    pub min_rating: Option<f32>,
    /// Seed of the synthetic dataset.
    #[arg(long, default_value_t = 7)]
    pub data_seed: u64,
    /// Keep only the N most frequent items (before k-core): a slice for quick runs, e.g. with
    /// an LLM policy on a CPU.
    #[arg(long)]
    #[serde(default)]
    pub max_items: Option<usize>,
    /// Keep only the first N users (file order) after `--max-items` (before k-core).
    #[arg(long)]
    #[serde(default)]
    pub max_users: Option<usize>,
}

impl DataArgs {
    /// Loads and preprocesses the dataset named by `--data`.
    pub fn load(&self) -> Result<Dataset> {
        let prep = PreprocessConfig {
            min_rating: self.min_rating,
            k_core: self.k_core,
        };
        match self.data.as_str() {
            "synthetic" => {
                let raw = generate(&SyntheticConfig { seed: self.data_seed, ..SyntheticConfig::default() });
                Ok(Dataset::from_raw(&raw.slice(self.max_items, self.max_users), &prep)?)
            }
            "ml-100k" => {
                let dir = self.cache.join("ml-100k");
                if !dir.join("ml-100k.inter").exists() {
                    bail!(
                        "--data ml-100k: {} has no ml-100k.inter; run `blade data fetch ml-100k --cache {}` first",
                        dir.display(),
                        self.cache.display()
                    );
                }
                let raw = blade_data::importers::read_recbole_dir(&dir, "ml-100k", &Default::default())?;
                Ok(Dataset::from_raw(&raw.slice(self.max_items, self.max_users), &prep)?)
            }
            path if path.ends_with(".json") => {
                if self.max_items.is_some() || self.max_users.is_some() {
                    bail!("--max-items / --max-users apply to `synthetic` and `ml-100k`; slice an imported dataset when importing it");
                }
                Dataset::load(Path::new(path))
                    .with_context(|| format!("--data {path}: could not load the dataset"))
            }
            other => bail!(
                "--data {other}: expected `synthetic`, `ml-100k` or a dataset .json from `blade data import`"
            ),
        }
    }
}

/// The compute backend.
#[derive(Args, Debug, Clone)]
pub struct BackendArgs {
    /// flex (CPU, default), ndarray (CPU), wgpu[:index] (GPU via Vulkan/Metal/DX12), cuda[:index].
    #[arg(long, default_value = "flex")]
    pub backend: String,
}

impl BackendArgs {
    /// The burn device of `--backend`.
    pub fn device(&self) -> Result<Device> {
        let spec: BackendSpec = self.backend.parse()?;
        Ok(spec.device()?)
    }
}

/// What `blade train` records about a run, so later commands rebuild the same data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    /// The method trained.
    pub method: String,
    /// The data arguments of the run.
    pub data: DataArgs,
}

impl RunInfo {
    /// Reads `run.json` of a run folder.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("run.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("{}: not a run folder made by `blade train`", path.display())
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: malformed run description", path.display()))
    }

    /// Writes `run.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        blade_core::sft::write_atomic(&dir.join("run.json"), text.as_bytes())?;
        Ok(())
    }
}

/// The folder whose model a command evaluates: an alignment run's best checkpoint (`best/`,
/// chosen on validation) unless `last`, otherwise the run folder itself.
pub fn model_dir(run: &Path, last: bool) -> PathBuf {
    let best = run.join(blade_core::align::BEST_DIR);
    if !last && best.is_dir() {
        best
    } else {
        run.to_path_buf()
    }
}

/// Loads the dataset and split of `args`.
pub fn dataset_and_split(args: &DataArgs) -> Result<(Dataset, Split)> {
    let ds = args.load()?;
    let split = ds.leave_one_out(args.history_len);
    if split.test.is_empty() {
        bail!(
            "--data {}: no user has the 3 interactions the leave-one-out split needs",
            args.data
        );
    }
    Ok((ds, split))
}

/// The metrics shown in tables, in order; `{k}` is replaced by each cut-off.
const COLUMNS: &[&str] = &[
    "recall@{k}",
    "ndcg@{k}",
    "mrr@{k}",
    "precision@{k}",
    "mgu@{k}",
    "dgu@{k}",
    "ild@{k}",
    "div_ratio@{k}",
    "or_ratio@{k}",
    "coverage@{k}",
    "tail_share@{k}",
];

/// A Markdown table of reports: one row per method and mode, one column per metric and k.
pub fn report_table(reports: &[EvalReport]) -> String {
    let Some(first) = reports.first() else {
        return String::new();
    };
    let mut out = String::new();
    for &k in &first.ks {
        let cols: Vec<String> = COLUMNS
            .iter()
            .map(|c| c.replace("{k}", &k.to_string()))
            .collect();
        out.push_str(&format!("| method | mode | {} |\n", cols.join(" | ")));
        out.push_str(&format!("|---|---|{}\n", "---:|".repeat(cols.len())));
        for r in reports {
            for (mode, table) in [
                ("generation", &r.generation),
                ("full-rank", &r.full_ranking),
            ] {
                let vals: Vec<String> = cols
                    .iter()
                    .map(|c| table.get(c).map_or("-".into(), |v| format!("{v:.4}")))
                    .collect();
                out.push_str(&format!(
                    "| {} | {} | {} |\n",
                    r.method,
                    mode,
                    vals.join(" | ")
                ));
            }
        }
        out.push('\n');
    }
    let users = first.users;
    out.push_str(&format!(
        "users: {users}; history masked: {}; lower is better for mgu, dgu, or_ratio\n",
        first.mask_history
    ));
    out
}

/// A progress bar for long non-dashboard work (hidden when stderr is not a terminal).
pub fn progress_bar(total: usize, what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(total as u64);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} ({elapsed})")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}
