//! `blade train`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use blade_core::sft::{train_sft, Dashboard};
use blade_core::{ItemLmConfig, SftConfig};
use clap::{Args, ValueEnum};

use crate::common::{dataset_and_split, BackendArgs, DataArgs, RunInfo};

/// Dashboard choice on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DashboardArg {
    /// The terminal dashboard on a terminal, plain text otherwise.
    Auto,
    /// burn-train's terminal dashboard.
    Tui,
    /// One line per epoch.
    Plain,
}

impl From<DashboardArg> for Dashboard {
    fn from(d: DashboardArg) -> Self {
        match d {
            DashboardArg::Auto => Dashboard::Auto,
            DashboardArg::Tui => Dashboard::Tui,
            DashboardArg::Plain => Dashboard::Plain,
        }
    }
}

/// Model and optimisation settings of SFT.
#[derive(Args, Debug, Clone)]
pub struct SftArgs {
    /// Maximum epochs.
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    /// Prompts per batch.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Learning rate (AdamW).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Early-stopping patience in epochs (validation NDCG@10).
    #[arg(long, default_value_t = 3)]
    pub patience: usize,
    /// Width of the transformer.
    #[arg(long, default_value_t = 64)]
    pub d_model: usize,
    /// Transformer layers.
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 2)]
    pub heads: usize,
    /// Dropout.
    #[arg(long, default_value_t = 0.1)]
    pub dropout: f64,
    /// Longest list the model generates (K).
    #[arg(long, default_value_t = 10)]
    pub list_len: usize,
    /// Use at most this many training windows (the most recent per user are kept).
    #[arg(long)]
    pub max_train_prompts: Option<usize>,
    /// Seed of initialisation and shuffling.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl SftArgs {
    /// The SFT configuration for a catalogue of `num_items` and prompts of `history_len`.
    pub fn config(&self, num_items: usize, history_len: usize) -> SftConfig {
        let model = ItemLmConfig::new(num_items)
            .with_max_history(history_len)
            .with_max_list(self.list_len)
            .with_d_model(self.d_model)
            .with_n_layers(self.layers)
            .with_n_heads(self.heads)
            .with_d_ff(self.d_model * 4)
            .with_dropout(self.dropout);
        SftConfig::new(model)
            .with_epochs(self.epochs)
            .with_batch_size(self.batch_size)
            .with_lr(self.lr)
            .with_patience(self.patience)
            .with_seed(self.seed)
            .with_max_train_prompts(self.max_train_prompts)
    }
}

/// Arguments of `blade train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Training method (`sft`; the alignment methods come with the alignment trainer).
    #[arg(long, default_value = "sft")]
    pub method: String,
    /// Run folder: checkpoints, config.json, model.bpk, run.json, logs.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue from the newest checkpoint in the run folder.
    #[arg(long)]
    pub resume: bool,
    /// auto, tui or plain.
    #[arg(long, value_enum, default_value = "auto")]
    pub dashboard: DashboardArg,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
    #[command(flatten)]
    pub sft: SftArgs,
}

/// Runs `blade train`.
pub fn run(a: TrainArgs) -> Result<()> {
    if a.method != "sft" {
        bail!("--method {}: this build trains `sft` only", a.method);
    }
    let device = a.backend.device()?;
    let (ds, split) = dataset_and_split(&a.data)?;
    let config = a.sft.config(ds.num_items(), a.data.history_len);
    std::fs::create_dir_all(&a.out)?;
    RunInfo {
        method: a.method.clone(),
        data: a.data.clone(),
    }
    .save(&a.out)?;
    let start = Instant::now();
    let outcome = train_sft(
        &config,
        &split,
        &device,
        &a.out,
        a.dashboard.into(),
        a.resume,
    )?;
    println!(
        "SFT done in {:.1}s: best epoch {} (validation NDCG@10 per epoch: {}); model at {}",
        start.elapsed().as_secs_f64(),
        outcome.best_epoch,
        outcome
            .valid_ndcg
            .iter()
            .map(|v| format!("{v:.4}"))
            .collect::<Vec<_>>()
            .join(", "),
        outcome.model_path.display()
    );
    Ok(())
}
