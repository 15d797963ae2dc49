//! `blade train`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use blade_core::align::{train_align, AlignConfig, AlignInputs, LossConfig, Method};
use blade_core::reward::{parse_reward, CatalogInfo};
use blade_core::sft::{train_sft, Dashboard};
use blade_core::{ItemLm, ItemLmConfig, SftConfig};
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

/// Settings of the alignment methods (all but `sft`).
#[derive(Args, Debug, Clone)]
pub struct AlignArgs {
    /// The SFT run to start from; it is also the frozen reference policy.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// The list reward, e.g. `ndcg@10`, `ndcg@10 + 0.3*ild`, `recall@10 + 0.5*fairness`.
    #[arg(long, default_value = "ndcg@10")]
    pub reward: String,
    /// Rollout batches.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Prompts per rollout batch (B).
    #[arg(long, default_value_t = 32)]
    pub prompts_per_step: usize,
    /// Lists sampled per prompt (G).
    #[arg(long, default_value_t = 8)]
    pub group_size: usize,
    /// Gradient steps per rollout batch.
    #[arg(long, default_value_t = 2)]
    pub inner_epochs: usize,
    /// Learning rate of alignment (Adam).
    #[arg(long, default_value_t = 5e-4)]
    pub align_lr: f64,
    /// Weight of the KL penalty to the reference.
    #[arg(long, default_value_t = 0.05)]
    pub beta_kl: f32,
    /// Clip range of the importance ratio.
    #[arg(long, default_value_t = 0.2)]
    pub clip_eps: f32,
    /// Reference lists per prompt sampled once from the SFT model (M).
    #[arg(long, default_value_t = 16)]
    pub reference_lists: usize,
    /// N of the best-of-N target.
    #[arg(long, default_value_t = 8)]
    pub bon_n: usize,
    /// BLADE's target mixing weight tau (0 = static BoN).
    #[arg(long, default_value_t = 0.3)]
    pub tau: f64,
    /// A fixed prior concentration kappa instead of --tau.
    #[arg(long)]
    pub kappa: Option<f64>,
    /// Forgetting factor of old rollout evidence.
    #[arg(long, default_value_t = 0.9)]
    pub gamma: f64,
    /// Training windows per user in the alignment prompt pool.
    #[arg(long, default_value_t = 1)]
    pub prompts_per_user: usize,
    /// Steps between validation evaluations and checkpoints.
    #[arg(long, default_value_t = 20)]
    pub eval_every: usize,
}

impl AlignArgs {
    /// The alignment configuration for `method`, seeded with `seed`.
    pub fn config(&self, method: Method, seed: u64) -> AlignConfig {
        AlignConfig {
            method,
            steps: self.steps,
            prompts_per_step: self.prompts_per_step,
            group_size: self.group_size,
            list_len: 10,
            inner_epochs: self.inner_epochs,
            lr: self.align_lr,
            loss: LossConfig {
                clip_eps: self.clip_eps,
                beta_kl: self.beta_kl,
                ..LossConfig::default()
            },
            reference_lists: self.reference_lists,
            bon_n: self.bon_n,
            tau: self.tau,
            kappa: self.kappa,
            gamma: self.gamma,
            prompts_per_user: self.prompts_per_user,
            eval_every: self.eval_every,
            seed,
            ..AlignConfig::default()
        }
    }
}

/// Arguments of `blade train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// sft, grpo, bon-static, bond, bonbon, sdpo or blade (all but sft need --init).
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
    #[command(flatten)]
    pub align: AlignArgs,
    #[command(flatten)]
    pub llm: LlmArgs,
}

/// The policy to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyKind {
    /// The item-level transformer (`ItemLm`) trained from scratch.
    Item,
    /// A pretrained LLM that reads and writes item titles (`--weights`).
    Llm,
}

/// Settings of the LLM policy (`--policy llm`).
#[derive(Args, Debug, Clone)]
pub struct LlmArgs {
    /// item (default) or llm.
    #[arg(long, value_enum, default_value = "item")]
    pub policy: PolicyKind,
    /// Base weights of the LLM policy: a `.gguf` file or a Hugging Face folder.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// LoRA rank (0 = full fine-tuning of every weight).
    #[arg(long, default_value_t = 8)]
    pub lora_rank: usize,
    /// LoRA alpha (the adapter is scaled by alpha / rank).
    #[arg(long, default_value_t = 16.0)]
    pub lora_alpha: f32,
    /// Projections that get adapters.
    #[arg(long, value_delimiter = ',', default_value = "q,k,v,o,gate,up,down")]
    pub lora_targets: Vec<String>,
    /// User message of the prompt; `{history}` = the history titles one per line, `{k}` = the
    /// list length.
    #[arg(long)]
    pub prompt: Option<String>,
    /// Use the prompt as plain text instead of the model's chat template.
    #[arg(long)]
    pub no_chat: bool,
    /// LLM SFT: windows per gradient step.
    #[arg(long, default_value_t = 4)]
    pub llm_batch: usize,
    /// LLM SFT: training windows used (the most recent per user first).
    #[arg(long, default_value_t = 256)]
    pub llm_train_prompts: usize,
    /// LLM SFT: learning rate (Adam).
    #[arg(long, default_value_t = 1e-4)]
    pub llm_lr: f64,
    /// LLM SFT: validation users whose greedy lists give NDCG@10 after each epoch.
    #[arg(long, default_value_t = 32)]
    pub llm_valid_users: usize,
}

/// Runs `blade train`.
pub fn run(a: TrainArgs) -> Result<()> {
    if a.llm.policy == PolicyKind::Llm && a.method == "sft" {
        return llm_sft(&a);
    }
    if a.method != "sft" {
        let method: Method = a
            .method
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--method {}: {e}", a.method))?;
        return align(&a, method);
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

/// Runs an alignment method from an SFT run.
fn align(a: &TrainArgs, method: Method) -> Result<()> {
    let Some(init) = &a.align.init else {
        bail!(
            "--method {}: give the SFT run to start from with --init DIR",
            method.name()
        );
    };
    let info = RunInfo::load(init)?;
    if info.method != "sft" {
        bail!(
            "--init {}: expected an SFT run, found a `{}` run",
            init.display(),
            info.method
        );
    }
    let device = a.backend.device()?;
    let (ds, split) = dataset_and_split(&info.data)?;
    let catalog = CatalogInfo::from_dataset(&ds, &split);
    let reward =
        parse_reward(&a.align.reward, &catalog).map_err(|e| anyhow::anyhow!("--reward {e}"))?;
    let config = a.align.config(method, a.sft.seed);
    std::fs::create_dir_all(&a.out)?;
    RunInfo {
        method: method.name().into(),
        data: info.data.clone(),
    }
    .save(&a.out)?;
    let inputs = AlignInputs {
        split: &split,
        catalog: &catalog,
        reward: reward.as_ref(),
        init,
        device: &device,
    };
    let start = Instant::now();
    let is_llm = init.join(blade_llm::run::LLM_RUN_FILE).exists();
    let (summary, model_path) = if is_llm {
        let out = train_align::<blade_llm::LlmPolicy>(
            &config,
            &inputs,
            &a.out,
            a.dashboard.into(),
            a.resume,
        )?;
        (out.summary, a.out.join(blade_llm::run::ADAPTER_FILE))
    } else {
        let out = train_align::<ItemLm>(&config, &inputs, &a.out, a.dashboard.into(), a.resume)?;
        (out.summary, out.model_path)
    };
    let s = &summary;
    let fmt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
    println!(
        "{} done in {:.1}s: `{}` of the SFT reference {:.4} -> aligned policy {:.4} (same {} prompts); \
         valid NDCG@10 {} -> {}; model at {}",
        method.name(),
        start.elapsed().as_secs_f64(),
        s.reward,
        s.reference_reward,
        s.policy_reward,
        s.prompts,
        fmt(s.valid_ndcg_start),
        fmt(s.valid_ndcg_end),
        model_path.display()
    );
    Ok(())
}

/// Supervised fine-tuning of a pretrained LLM on the titles of the data's items.
fn llm_sft(a: &TrainArgs) -> Result<()> {
    let Some(weights) = &a.llm.weights else {
        bail!(
            "--policy llm: give the base model with --weights FILE.gguf (or a Hugging Face folder)"
        );
    };
    if !weights.exists() {
        bail!("--weights {}: no such file or folder", weights.display());
    }
    let weights = std::fs::canonicalize(weights)?;
    let device = a.backend.device()?;
    let (ds, split) = dataset_and_split(&a.data)?;
    let mut template = blade_llm::PromptTemplate::default();
    if let Some(p) = &a.llm.prompt {
        template.user = p.clone();
    }
    template.chat = !a.llm.no_chat;
    let run = blade_llm::run::LlmRunConfig {
        weights,
        lora: (a.llm.lora_rank > 0).then(|| blade_llm::model::LoraConfig {
            rank: a.llm.lora_rank,
            alpha: a.llm.lora_alpha,
            targets: a.llm.lora_targets.clone(),
        }),
        template,
        prompt_k: a.sft.list_len,
        max_seq_len: 4096,
        titles: ds.catalog.items.iter().map(|i| i.title.clone()).collect(),
    };
    let cfg = blade_llm::run::LlmSftConfig {
        epochs: a.sft.epochs,
        lr: a.llm.llm_lr,
        batch_size: a.llm.llm_batch,
        target_len: 1,
        max_train_prompts: Some(a.llm.llm_train_prompts),
        valid_users: a.llm.llm_valid_users,
        mask_history: true,
        seed: a.sft.seed,
    };
    std::fs::create_dir_all(&a.out)?;
    RunInfo {
        method: "sft".into(),
        data: a.data.clone(),
    }
    .save(&a.out)?;
    let start = Instant::now();
    let (_, log) =
        blade_llm::run::train_llm_sft(&run, &cfg, &split, &device, &a.out, |l| println!("{l}"))?;
    println!(
        "LLM SFT done in {:.1}s: validation NDCG@10 per epoch: {}; adapters at {}",
        start.elapsed().as_secs_f64(),
        log.iter()
            .map(|r| format!("{:.4}", r.valid_ndcg))
            .collect::<Vec<_>>()
            .join(", "),
        a.out.join(blade_llm::run::ADAPTER_FILE).display()
    );
    Ok(())
}
