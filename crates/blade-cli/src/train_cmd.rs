//! `blade train`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use blade_core::align::{
    AdvantageScaling, AlignConfig, AlignInputs, DynamicSampling, KlEstimator, LossAggregation,
    LrSchedule, Method, OptimConfig, PromptPool, RatioLevel, SelectCorrection,
};
use blade_core::reward::parse_reward;
use blade_core::sft::{train_sft, Dashboard};
use blade_core::{ItemLmConfig, SftConfig, SftObjective};
use blade_exp::{align_run, RunKind, RunManifest};
use clap::{Args, ValueEnum};

use crate::common::{BackendArgs, DataArgs};

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
    /// Use at most this many training windows: every user keeps its most recent ones, the cap
    /// shared out evenly between users.
    #[arg(long)]
    pub max_train_prompts: Option<usize>,
    /// SFT objective: `windows` (every window, list slots taught) or `causal` (SASRec-style:
    /// a window every --window-stride items, every position taught its next item).
    #[arg(long, default_value = "windows")]
    pub sft_objective: SftObjective,
    /// Items between successive SFT windows (0 = 1 for `windows`, the history length for
    /// `causal`).
    #[arg(long, default_value_t = 0)]
    pub window_stride: usize,
    /// Item policy: each SFT batch's gradient is computed as this many row shards on as many
    /// threads (1 = one pass on one thread); the dropout noise is drawn per (epoch, batch,
    /// shard), so a run is reproducible and resumes exactly for a given value, which resume
    /// checks. The LLM policy's SFT does not use it.
    #[arg(long, default_value_t = 4)]
    pub sft_grad_shards: usize,
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
            .with_objective(self.sft_objective)
            .with_window_stride(self.window_stride)
            .with_grad_shards(self.sft_grad_shards)
    }
}

/// Settings of the alignment methods (all but `sft`). Defaults come from
/// [`AlignConfig`] / [`OptimConfig`] and each method's config, never from literals here.
#[derive(Args, Debug, Clone)]
pub struct AlignArgs {
    /// The SFT run to start from; it is also the frozen reference policy.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// The list reward, e.g. `ndcg@10`, `ndcg@10 + 0.3*ild`, `recall@10 + 0.5*fairness`.
    #[arg(long, default_value = "ndcg@10")]
    pub reward: String,
    /// Rollout batches.
    #[arg(long, default_value_t = defaults().steps)]
    pub steps: usize,
    /// Prompts per rollout batch (B).
    #[arg(long, default_value_t = defaults().prompts_per_step)]
    pub prompts_per_step: usize,
    /// Lists sampled per prompt (G).
    #[arg(long, default_value_t = defaults().group_size)]
    pub group_size: usize,
    /// Items per aligned list (K); at most the SFT model's --list-len.
    #[arg(long, default_value_t = defaults().list_len)]
    pub align_k: usize,
    /// Gradient steps per rollout batch.
    #[arg(long, default_value_t = defaults().inner_epochs)]
    pub inner_epochs: usize,
    /// Each gradient pass is cut into this many row shards on as many threads (1 = one pass on
    /// one thread); the gradient is the same up to floating-point summation order. Default: 4
    /// for the item policy, 16 for an LLM policy (with --recompute: its memory default).
    #[arg(long)]
    pub grad_shards: Option<usize>,
    /// Keep no shard's autodiff graph from the forward pass: each shard's forward pass runs
    /// again at the backward pass, as many at a time as there are threads. Less memory (that
    /// of `threads` shards: use more --grad-shards than threads) for one more forward pass
    /// per shard; the same gradient up to summation order. On by default for an LLM policy
    /// (`--recompute false` turns it off), off for the item policy.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub recompute: Option<bool>,
    /// Learning rate of alignment (Adam).
    #[arg(long, default_value_t = OptimConfig::new().lr)]
    pub align_lr: f64,
    /// Learning-rate schedule: constant, linear (decay to 0) or cosine.
    #[arg(long, default_value = "constant")]
    pub lr_schedule: LrSchedule,
    /// Linear warm-up of the learning rate, in optimiser steps.
    #[arg(long, default_value_t = OptimConfig::new().warmup)]
    pub warmup: usize,
    /// Weight of the KL penalty to the reference (0 allowed).
    #[arg(long, default_value_t = OptimConfig::new().beta_kl)]
    pub beta_kl: f32,
    /// KL penalty: k3 or k1 (an estimator added to the loss), or reward (beta_kl * (log pi_old -
    /// log pi_ref) of each list subtracted from its signal before the advantages: the gradient
    /// of the backward KL; grpo, bon-static, blade and bond only).
    #[arg(long, default_value = "k3")]
    pub kl: KlEstimator,
    /// Importance ratio: sequence (one per list), token (per item slot or LLM title token,
    /// PPO/GRPO style) or gspo (GSPO's length-normalised list ratio).
    #[arg(long, default_value = "sequence")]
    pub ratio: RatioLevel,
    /// With --ratio token: seq-mean-token-mean (GRPO), token-mean (DAPO) or
    /// seq-mean-token-sum-norm (Dr. GRPO).
    #[arg(long)]
    pub loss_agg: Option<LossAggregation>,
    /// Symmetric clip range of the importance ratio (sets --clip-low and --clip-high).
    #[arg(long)]
    pub clip_eps: Option<f32>,
    /// Lower clip range: ratios below 1 - clip_low are clipped.
    #[arg(long, default_value_t = OptimConfig::new().clip_low)]
    pub clip_low: f32,
    /// Upper clip range: ratios above 1 + clip_high are clipped (DAPO's clip-higher).
    #[arg(long, default_value_t = OptimConfig::new().clip_high)]
    pub clip_high: f32,
    /// Weight of the entropy bonus.
    #[arg(long, default_value_t = OptimConfig::new().entropy_coef)]
    pub entropy_coef: f32,
    /// Weight of the next-item term (InstructGPT's PPO-ptx): the cross-entropy of each batch
    /// prompt's training next item, added to the loss to keep the policy's next-item ranking
    /// (what full-ranking evaluation scores); 0 = off.
    #[arg(long, default_value_t = OptimConfig::new().ptx_coef)]
    pub ptx_coef: f32,
    /// Weight of the ranking anchor: the exact KL from the reference's first-slot
    /// distribution over the whole catalogue to the policy's, on each step's prompts, which
    /// keeps the full ranking near the SFT model's; 0 = off. Item policy only.
    #[arg(long, default_value_t = OptimConfig::new().rank_kl)]
    pub rank_kl: f32,
    /// Clip the global gradient L2 norm to this.
    #[arg(long)]
    pub max_grad_norm: Option<f64>,
    /// Advantage scaling: group (GRPO), batch, or none (Dr. GRPO).
    #[arg(long, default_value = "group")]
    pub advantage: AdvantageScaling,
    /// Added to the std that divides the advantages (the std floor).
    #[arg(long, default_value_t = OptimConfig::new().std_eps)]
    pub adv_std_eps: f64,
    /// Groups whose raw reward has zero spread: off, drop, or refill[:ROUNDS] with fresh prompts.
    #[arg(long, default_value = "off")]
    pub dynamic_sampling: DynamicSampling,
    /// Softmax temperature of the aligned policy: rollouts, log-probabilities, the KL's
    /// reference and the reference lists all use the logits divided by it (1 = the policy).
    #[arg(long, default_value_t = defaults().rollout_temperature)]
    pub rollout_temperature: f32,
    /// Reference lists per prompt sampled once from the SFT model (M).
    #[arg(long, default_value_t = defaults().reference_lists)]
    pub reference_lists: usize,
    /// Prompt pool: last:N (each user's N most recent windows), all, or sample:N.
    #[arg(long, default_value_t = defaults().prompt_pool)]
    pub prompt_pool: PromptPool,
    /// Reward targets of a training prompt: its next N training items (1 = the next item).
    #[arg(long, default_value_t = defaults().train_targets)]
    pub train_targets: usize,
    /// Steps between validation evaluations (each followed by a checkpoint; 0 = at the end).
    #[arg(long, default_value_t = defaults().eval_every)]
    pub eval_every: usize,
    /// Steps between checkpoints besides those after validations (0 = none besides them).
    #[arg(long, default_value_t = defaults().checkpoint_every)]
    pub checkpoint_every: usize,
    /// Validate on the first N validation users only.
    #[arg(long)]
    pub valid_users: Option<usize>,
    /// Keep the validation users out of the alignment prompt pool: the best checkpoint is then
    /// chosen on users alignment never trained on (with --valid-users N, the first N validate
    /// and the others align).
    #[arg(long)]
    pub valid_holdout: bool,
    /// Selection metric of the best checkpoint: a reward spec on greedy validation lists.
    #[arg(long, default_value_t = defaults().select)]
    pub select: String,
    /// A checkpoint after step 0 is kept as the best only if its gain over step 0 passes a
    /// one-sided paired test over the validation users at this level (1 = any higher mean).
    #[arg(long, default_value_t = defaults().select_p)]
    pub select_p: f64,
    /// How --select-p allows for testing every evaluation against step 0: bonferroni (each at
    /// --select-p divided by the evaluations the run schedules, so the chance that any
    /// checkpoint passes by luck is at most --select-p) or none (each at --select-p).
    #[arg(long, default_value = "bonferroni")]
    pub select_correction: SelectCorrection,
    /// Stop alignment after this many evaluations without a better selection metric.
    #[arg(long)]
    pub align_patience: Option<usize>,
    /// N of the best-of-N target (bon-static, blade, bond).
    #[arg(long)]
    pub bon_n: Option<usize>,
    /// BLADE: target mixing weight tau in [0, 1] (0 = static BoN), `auto` (empirical Bayes,
    /// per prompt), or `spread` / `spread:S` (per prompt and visit, the smallest tau keeping a
    /// share S, default 0.5, of the proxy spread; docs/METHOD.md section 3).
    #[arg(long)]
    pub tau: Option<TauArg>,
    /// BLADE: a fixed prior concentration kappa instead of --tau.
    #[arg(long)]
    pub kappa: Option<f64>,
    /// BLADE: forgetting factor of old rollout evidence.
    #[arg(long)]
    pub gamma: Option<f64>,
    /// BOND: Jeffreys mix b ((1-b) forward KL + b backward KL).
    #[arg(long)]
    pub bond_mix: Option<f32>,
    /// BOND: EMA rate of the moving anchor.
    #[arg(long)]
    pub bond_anchor_ema: Option<f64>,
    /// BoNBoN: weight alpha of the SFT term.
    #[arg(long)]
    pub bonbon_alpha: Option<f32>,
    /// S-DPO: beta.
    #[arg(long)]
    pub sdpo_beta: Option<f32>,
    /// S-DPO: worse lists per winner.
    #[arg(long)]
    pub sdpo_negatives: Option<usize>,
    /// DPO: beta.
    #[arg(long)]
    pub dpo_beta: Option<f32>,
}

/// `--tau`: a fixed mixing weight, `auto` or `spread[:S]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TauArg {
    /// A fixed `tau`.
    Fixed(f64),
    /// Empirical Bayes per prompt.
    Auto,
    /// Signal keeping per prompt and visit, with this share.
    Spread(f64),
}

impl std::str::FromStr for TauArg {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "auto" {
            return Ok(Self::Auto);
        }
        if s == "spread" {
            return Ok(Self::Spread(blade_core::target::DEFAULT_SPREAD_SHARE));
        }
        if let Some(share) = s.strip_prefix("spread:") {
            return match share.parse::<f64>() {
                Ok(v) if v > 0.0 && v <= 1.0 => Ok(Self::Spread(v)),
                _ => Err(format!(
                    "`{s}`: expected `spread:S` with a share S in (0, 1], e.g. spread:0.5"
                )),
            };
        }
        match s.parse::<f64>() {
            Ok(t) if (0.0..=1.0).contains(&t) => Ok(Self::Fixed(t)),
            _ => Err(format!(
                "`{s}`: expected a number in [0, 1], `auto`, `spread` or `spread:S`"
            )),
        }
    }
}

fn defaults() -> AlignConfig {
    AlignConfig::new(Method::Grpo.default_config())
}

/// Sets `field` from `flag` when given; a flag of another method is an error when `strict`.
fn method_flag<T: Copy>(
    value: Option<T>,
    flag: &str,
    owners: &[Method],
    method: Method,
    strict: bool,
    field: &mut Option<&mut T>,
) -> Result<()> {
    let Some(v) = value else { return Ok(()) };
    match field {
        Some(f) => **f = v,
        None if strict => bail!(
            "{flag} applies to {} only, not to --method {}",
            owners
                .iter()
                .map(|m| m.name())
                .collect::<Vec<_>>()
                .join(", "),
            method.name()
        ),
        None => {}
    }
    Ok(())
}

impl AlignArgs {
    /// The alignment configuration for `method`, seeded with `seed`, for a policy of `kind`
    /// (which sets the defaults of `--grad-shards` and `--recompute`). With `strict`, a flag
    /// that belongs to another method is an error (`blade train`); otherwise it applies to its
    /// own methods only (`blade compare`).
    pub fn config(
        &self,
        method: Method,
        seed: u64,
        strict: bool,
        kind: RunKind,
    ) -> Result<AlignConfig> {
        let lean = kind.gradient_passes();
        let mut mc = method.default_config();
        {
            use blade_core::align::MethodConfig as M;
            let bon = [Method::BonStatic, Method::Blade, Method::Bond];
            let mut f = match &mut mc {
                M::BonStatic(c) => Some(&mut c.bon_n),
                M::Blade(c) => Some(&mut c.bon_n),
                M::Bond(c) => Some(&mut c.bon_n),
                _ => None,
            };
            method_flag(self.bon_n, "--bon-n", &bon, method, strict, &mut f)?;
            let blade = [Method::Blade];
            let (mut tau, mut auto, mut gamma) = match &mut mc {
                M::Blade(c) => (Some(&mut c.tau), Some(&mut c.tau_auto), Some(&mut c.gamma)),
                _ => (None, None, None),
            };
            let fixed = match self.tau {
                Some(TauArg::Fixed(t)) => Some(t),
                _ => None,
            };
            method_flag(fixed, "--tau", &blade, method, strict, &mut tau)?;
            let is_auto = (self.tau == Some(TauArg::Auto)).then_some(true);
            method_flag(is_auto, "--tau", &blade, method, strict, &mut auto)?;
            method_flag(self.gamma, "--gamma", &blade, method, strict, &mut gamma)?;
            let mut spread = match &mut mc {
                M::Blade(c) => Some(&mut c.tau_spread),
                _ => None,
            };
            let share = match self.tau {
                Some(TauArg::Spread(v)) => Some(Some(v)),
                _ => None,
            };
            method_flag(share, "--tau", &blade, method, strict, &mut spread)?;
            let mut kappa = match &mut mc {
                M::Blade(c) => Some(&mut c.kappa),
                _ => None,
            };
            method_flag(
                self.kappa.map(Some),
                "--kappa",
                &blade,
                method,
                strict,
                &mut kappa,
            )?;
            let bond = [Method::Bond];
            let (mut mix, mut ema) = match &mut mc {
                M::Bond(c) => (Some(&mut c.mix), Some(&mut c.anchor_ema)),
                _ => (None, None),
            };
            method_flag(self.bond_mix, "--bond-mix", &bond, method, strict, &mut mix)?;
            method_flag(
                self.bond_anchor_ema,
                "--bond-anchor-ema",
                &bond,
                method,
                strict,
                &mut ema,
            )?;
            let mut alpha = match &mut mc {
                M::Bonbon(c) => Some(&mut c.alpha),
                _ => None,
            };
            method_flag(
                self.bonbon_alpha,
                "--bonbon-alpha",
                &[Method::Bonbon],
                method,
                strict,
                &mut alpha,
            )?;
            let (mut sb, mut sn) = match &mut mc {
                M::Sdpo(c) => (Some(&mut c.beta), Some(&mut c.negatives)),
                _ => (None, None),
            };
            method_flag(
                self.sdpo_beta,
                "--sdpo-beta",
                &[Method::Sdpo],
                method,
                strict,
                &mut sb,
            )?;
            method_flag(
                self.sdpo_negatives,
                "--sdpo-negatives",
                &[Method::Sdpo],
                method,
                strict,
                &mut sn,
            )?;
            let mut db = match &mut mc {
                M::Dpo(c) => Some(&mut c.beta),
                _ => None,
            };
            method_flag(
                self.dpo_beta,
                "--dpo-beta",
                &[Method::Dpo],
                method,
                strict,
                &mut db,
            )?;
        }
        if self.loss_agg.is_some() && self.ratio != RatioLevel::Token {
            bail!("--loss-agg combines per-token terms: it needs --ratio token");
        }
        let (clip_low, clip_high) = match self.clip_eps {
            Some(e) => (e, e),
            None => (self.clip_low, self.clip_high),
        };
        let optim = OptimConfig::new()
            .with_lr(self.align_lr)
            .with_schedule(self.lr_schedule)
            .with_warmup(self.warmup)
            .with_beta_kl(self.beta_kl)
            .with_kl(self.kl)
            .with_ratio(self.ratio)
            .with_loss_agg(self.loss_agg.unwrap_or(LossAggregation::SeqMeanTokenMean))
            .with_clip_low(clip_low)
            .with_clip_high(clip_high)
            .with_entropy_coef(self.entropy_coef)
            .with_ptx_coef(self.ptx_coef)
            .with_rank_kl(self.rank_kl)
            .with_max_grad_norm(self.max_grad_norm)
            .with_advantage(self.advantage)
            .with_std_eps(self.adv_std_eps)
            .with_dynamic_sampling(self.dynamic_sampling);
        Ok(AlignConfig::new(mc)
            .with_steps(self.steps)
            .with_prompts_per_step(self.prompts_per_step)
            .with_group_size(self.group_size)
            .with_list_len(self.align_k)
            .with_inner_epochs(self.inner_epochs)
            .with_grad_shards(self.grad_shards.unwrap_or(lean.grad_shards))
            .with_recompute(self.recompute.unwrap_or(lean.recompute))
            .with_optim(optim)
            .with_rollout_temperature(self.rollout_temperature)
            .with_reference_lists(self.reference_lists)
            .with_prompt_pool(self.prompt_pool)
            .with_train_targets(self.train_targets)
            .with_eval_every(self.eval_every)
            .with_checkpoint_every(self.checkpoint_every)
            .with_valid_users(self.valid_users)
            .with_valid_holdout(self.valid_holdout)
            .with_select(self.select.clone())
            .with_select_p(self.select_p)
            .with_select_correction(self.select_correction)
            .with_patience(self.align_patience)
            .with_seed(seed))
    }
}

/// Arguments of `blade train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// sft, grpo, rloo, bon-static, bond, bonbon, sdpo, dpo or blade (all but sft need --init).
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
    /// Base weights of the LLM policy: a `.gguf` file, a Hugging Face folder, or a repo id in
    /// the local Hugging Face cache (`org/name[@revision][:FILE]`).
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
    /// LLM SFT: training windows used: every user keeps its most recent ones, the cap shared
    /// out evenly between users (256 on ML-100K: the last window of 256 users spread over
    /// the split).
    #[arg(long, default_value_t = 256)]
    pub llm_train_prompts: usize,
    /// LLM SFT: learning rate (Adam).
    #[arg(long, default_value_t = 1e-4)]
    pub llm_lr: f64,
    /// LLM SFT: validation users whose greedy lists give NDCG@10 after each epoch; the run keeps
    /// the best epoch, epoch 0 (the starting model) included. 0 = no validation: the last epoch
    /// is kept.
    #[arg(long, default_value_t = 32)]
    pub llm_valid_users: usize,
}

/// Runs `blade train`.
pub fn run(a: TrainArgs) -> Result<()> {
    crate::common::check_out_folder(&a.out)?;
    if a.llm.policy == PolicyKind::Llm && a.method == "sft" {
        let device = a.backend.device()?;
        return llm_sft(&a.llm, &a.sft, &a.data, &device, &a.out, a.resume);
    }
    if a.method != "sft" {
        let method: Method = a
            .method
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--method {}: {e}", a.method))?;
        return align(&a, method);
    }
    let device = a.backend.device()?;
    let (ds, split) = a.data.dataset_and_split()?;
    let config = a.sft.config(ds.num_items(), a.data.history_len);
    // every flag is checked before the run folder is made; train_sft checks a resume against
    // the run before it writes anything, and the manifest is written once training succeeded
    config.check()?;
    let start = Instant::now();
    let outcome = train_sft(
        &config,
        &split,
        &device,
        &a.out,
        a.dashboard.into(),
        a.resume,
    )?;
    RunManifest::new(RunKind::Item, &a.method, &a.data, &ds).save(&a.out)?;
    println!(
        "SFT done in {:.1}s: best epoch {} (validation NDCG@10, full ranking, per epoch: {}); model at {}",
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
    let info = RunManifest::load_sft(init)?;
    let device = a.backend.device()?;
    let (ds, split) = info.dataset_and_split(init)?;
    let specs = [a.align.reward.as_str(), a.align.select.as_str()];
    let catalog = info.catalog_for(&ds, &split, init, &specs, &device)?;
    let reward = parse_reward(&a.align.reward, &catalog).map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = a.align.config(method, a.sft.seed, true, info.kind)?;
    crate::memory_for(info.kind);
    let inputs = AlignInputs {
        split: &split,
        catalog: &catalog,
        reward: reward.as_ref(),
        init,
        device: &device,
    };
    let start = Instant::now();
    let out = align_run(&config, &inputs, &a.out, a.dashboard.into(), a.resume)?;
    let (summary, model_path) = (out.summary, out.model_path);
    let s = &summary;
    let fmt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
    println!(
        "{} done in {:.1}s: `{}` of the SFT reference {:.4} -> aligned policy {:.4} (same {} prompts; \
         static ceilings on the pool: max of M {:.4}, E[best of N] {}); valid NDCG@10 (greedy lists) \
         {} -> {}; best checkpoint: step {} (`{}` {}) in {}; last model at {}",
        method.name(),
        start.elapsed().as_secs_f64(),
        s.reward,
        s.reference_reward,
        s.policy_reward,
        s.prompts,
        s.ceilings_pool.max_of_m,
        fmt(s.ceilings_pool.expected_bon),
        fmt(s.valid_ndcg_start),
        fmt(s.valid_ndcg_end),
        s.best_step,
        s.select,
        fmt(s.best_metric),
        a.out.join(blade_core::align::BEST_DIR).display(),
        model_path.display()
    );
    Ok(())
}

/// Supervised fine-tuning of a pretrained LLM (`llm`) on the titles of the data's items into
/// the run folder `out` (`sft` gives the epochs, list length and seed).
pub fn llm_sft(
    llm: &LlmArgs,
    sft: &SftArgs,
    data: &DataArgs,
    device: &burn::tensor::Device,
    out: &std::path::Path,
    resume: bool,
) -> Result<()> {
    let Some(weights) = &llm.weights else {
        bail!(
            "--policy llm: give the base model with --weights FILE.gguf (or a Hugging Face folder)"
        );
    };
    // absolute, but not canonical: a cached GGUF is a link to an extension-less blob
    let weights = std::path::absolute(blade_llm::hub::resolve_weights(weights)?)?;
    let (ds, split) = data.dataset_and_split()?;
    let mut template = blade_llm::PromptTemplate::default();
    if let Some(p) = &llm.prompt {
        template.user = p.clone();
    }
    template.chat = !llm.no_chat;
    let run = blade_llm::run::LlmRunConfig {
        weights,
        lora: (llm.lora_rank > 0).then(|| blade_llm::model::LoraConfig {
            rank: llm.lora_rank,
            alpha: llm.lora_alpha,
            targets: llm.lora_targets.clone(),
        }),
        template,
        prompt_k: sft.list_len,
        max_seq_len: 4096,
        titles: ds.catalog.items.iter().map(|i| i.title.clone()).collect(),
    };
    let cfg = blade_llm::run::LlmSftConfig {
        epochs: sft.epochs,
        lr: llm.llm_lr,
        batch_size: llm.llm_batch,
        target_len: 1,
        max_train_prompts: Some(llm.llm_train_prompts),
        valid_users: llm.llm_valid_users,
        mask_history: true,
        seed: sft.seed,
    };
    let start = Instant::now();
    let (_, log) = blade_llm::run::train_llm_sft(&run, &cfg, &split, device, out, resume, |l| {
        println!("{l}")
    })?;
    // written once training succeeded: a refused resume leaves the folder as it was
    RunManifest::new(RunKind::Llm, "sft", data, &ds).save(out)?;
    println!(
        "LLM SFT done in {:.1}s: validation NDCG@10 per epoch: {}; {} at {}",
        start.elapsed().as_secs_f64(),
        log.iter()
            .map(|r| format!("{:.4}", r.valid_ndcg))
            .collect::<Vec<_>>()
            .join(", "),
        if run.lora.is_some() {
            "adapters"
        } else {
            "weights"
        },
        out.join(if run.lora.is_some() {
            blade_llm::run::ADAPTER_FILE
        } else {
            blade_llm::run::FULL_FILE
        })
        .display()
    );
    Ok(())
}
