//! Settings of an alignment run (docs/METHOD.md sections 4, 5 and 7), saved as `align.json`.
//!
//! The method's own settings live in its tagged [`MethodConfig`] variant, so an option of one
//! method cannot be set on another; everything here applies to every method.

use std::fmt;
use std::str::FromStr;

use burn::config::Config;
use serde::{Deserialize, Serialize};

use super::methods::MethodConfig;
use crate::error::CoreError;

/// How per-list signals become advantages (docs/METHOD.md section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdvantageScaling {
    /// `(s - group mean) / (group std + eps)`: GRPO.
    Group,
    /// Centred on the group mean, divided by the std of the centred values over the batch + eps.
    Batch,
    /// Centred on the group mean only (Dr. GRPO).
    None,
}

impl FromStr for AdvantageScaling {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "group" => Ok(Self::Group),
            "batch" => Ok(Self::Batch),
            "none" => Ok(Self::None),
            _ => Err(format!("`{s}`: expected group, batch or none")),
        }
    }
}

/// Where the importance ratio of the clipped surrogate is taken (docs/METHOD.md section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RatioLevel {
    /// One ratio per list, `exp(log pi(y) - log pi_old(y))` (the list is the action).
    Sequence,
    /// One ratio per token (an item slot, or an LLM title token), clipped token by token (PPO,
    /// GRPO as published); the per-token terms are combined by [`LossAggregation`].
    Token,
    /// One length-normalised ratio per list, `exp(mean_t (log pi - log pi_old))` (GSPO).
    Gspo,
}

impl FromStr for RatioLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sequence" => Ok(Self::Sequence),
            "token" => Ok(Self::Token),
            "gspo" => Ok(Self::Gspo),
            _ => Err(format!("`{s}`: expected sequence, token or gspo")),
        }
    }
}

/// How token-level surrogate terms are combined into the loss (`--ratio token` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossAggregation {
    /// Mean over each list's tokens, then over lists (GRPO as published).
    SeqMeanTokenMean,
    /// Sum over all tokens of the batch divided by their number (DAPO's token-mean).
    TokenMean,
    /// Sum over each list's tokens divided by the batch's longest list, then mean over lists
    /// (Dr. GRPO: no length normalisation per list).
    SeqMeanTokenSumNorm,
}

impl FromStr for LossAggregation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "seq-mean-token-mean" => Ok(Self::SeqMeanTokenMean),
            "token-mean" => Ok(Self::TokenMean),
            "seq-mean-token-sum-norm" => Ok(Self::SeqMeanTokenSumNorm),
            _ => Err(format!(
                "`{s}`: expected seq-mean-token-mean, token-mean or seq-mean-token-sum-norm"
            )),
        }
    }
}

/// The KL penalty to the reference and its estimator, per list (Schulman's note, METHOD.md 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KlEstimator {
    /// In the loss, `log pi - log pi_ref`.
    K1,
    /// In the loss, `exp(d) - d - 1` with `d = log pi_ref - log pi` (non-negative, low
    /// variance; its gradient on the policy's own samples is that of the forward KL).
    K3,
    /// In the reward: `beta_kl * (log pi_old - log pi_ref)` of each sampled list is subtracted
    /// from its signal before the advantages, and the loss has no KL term (PPO-RLHF style). The
    /// policy gradient is then that of `E[signal] - beta_kl * KL(pi || pi_ref)`, the backward
    /// KL, whose optimum is `pi_ref * exp(signal / beta_kl)` (METHOD.md section 2). Only for
    /// the methods whose advantages are the centred signal: grpo, bon-static, blade and bond.
    Reward,
}

impl KlEstimator {
    /// The methods `--kl reward` applies to (their advantages are `advantages(signal)`).
    pub fn applies_to(self, method: super::methods::Method) -> bool {
        use super::methods::Method as M;
        self != Self::Reward || matches!(method, M::Grpo | M::BonStatic | M::Blade | M::Bond)
    }
}

impl FromStr for KlEstimator {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "k1" => Ok(Self::K1),
            "k3" => Ok(Self::K3),
            "reward" => Ok(Self::Reward),
            _ => Err(format!("`{s}`: expected k1, k3 or reward")),
        }
    }
}

/// The learning-rate schedule over optimiser steps, after the linear warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// The base rate throughout.
    Constant,
    /// Linear decay towards 0 at the last optimiser step (the paper's choice).
    Linear,
    /// Cosine decay towards 0.
    Cosine,
}

impl FromStr for LrSchedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "constant" => Ok(Self::Constant),
            "linear" => Ok(Self::Linear),
            "cosine" => Ok(Self::Cosine),
            _ => Err(format!("`{s}`: expected constant, linear or cosine")),
        }
    }
}

impl LrSchedule {
    /// The rate of optimiser step `t` (0-based) of `total`, after `warmup` linear warm-up steps.
    pub fn rate(self, base: f64, t: usize, total: usize, warmup: usize) -> f64 {
        if t < warmup {
            return base * (t + 1) as f64 / warmup as f64;
        }
        let span = total.saturating_sub(warmup).max(1) as f64;
        let done = (t - warmup) as f64 / span;
        match self {
            Self::Constant => base,
            Self::Linear => base * (1.0 - done),
            Self::Cosine => base * 0.5 * (1.0 + (std::f64::consts::PI * done).cos()),
        }
    }
}

/// How the selection's paired test allows for testing every validation against step 0
/// (docs/METHOD.md section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelectCorrection {
    /// Each evaluation is tested at `select_p`: over many evaluations the chance that some
    /// checkpoint passes by luck is larger than `select_p`.
    None,
    /// Each evaluation is tested at `select_p / m`, `m` the evaluations after step 0 that the
    /// run schedules: the chance that any checkpoint without a real gain passes is at most
    /// `select_p` (Bonferroni's bound, whatever the dependence between checkpoints).
    Bonferroni,
}

impl FromStr for SelectCorrection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "bonferroni" => Ok(Self::Bonferroni),
            _ => Err(format!("`{s}`: expected bonferroni or none")),
        }
    }
}

/// Which training windows form the alignment prompt pool (docs/METHOD.md section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PromptPool {
    /// The `n` most recent training windows of every user.
    Last(usize),
    /// Every training window.
    All,
    /// A seeded uniform sample of `n` windows from all (without replacement).
    Sample(usize),
}

impl fmt::Display for PromptPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Last(n) => write!(f, "last:{n}"),
            Self::All => write!(f, "all"),
            Self::Sample(n) => write!(f, "sample:{n}"),
        }
    }
}

impl FromStr for PromptPool {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let count = |v: &str| match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "`{s}`: the count after `:` must be a positive integer"
            )),
        };
        match s.split_once(':') {
            None if s == "all" => Ok(Self::All),
            Some(("last", n)) => Ok(Self::Last(count(n)?)),
            Some(("sample", n)) => Ok(Self::Sample(count(n)?)),
            _ => Err(format!("`{s}`: expected last:N, all or sample:N")),
        }
    }
}

/// Dynamic sampling (DAPO): what happens to groups whose raw reward has zero spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DynamicSampling {
    /// Every group reaches the loss.
    Off,
    /// Zero-spread groups are dropped from the loss.
    Drop,
    /// Dropped, and fresh prompts are drawn for up to this many extra rounds until the batch
    /// holds `B` informative groups.
    Refill(usize),
}

impl FromStr for DynamicSampling {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "off" => Ok(Self::Off),
            None if s == "drop" => Ok(Self::Drop),
            None if s == "refill" => Ok(Self::Refill(4)),
            Some(("refill", n)) => n
                .parse()
                .map(Self::Refill)
                .map_err(|_| format!("`{s}`: the rounds after `refill:` must be an integer")),
            _ => Err(format!(
                "`{s}`: expected off, drop, refill or refill:ROUNDS"
            )),
        }
    }
}

/// The optimisation settings every method shares (docs/METHOD.md section 5).
#[derive(Config, Debug, PartialEq)]
pub struct OptimConfig {
    /// Lower clip range: ratios below `1 - clip_low` are clipped.
    #[config(default = 0.2)]
    pub clip_low: f32,
    /// Upper clip range: ratios above `1 + clip_high` are clipped (DAPO's clip-higher).
    #[config(default = 0.2)]
    pub clip_high: f32,
    /// Where the importance ratio is taken: per list, per token, or GSPO's normalised list ratio.
    #[config(default = "RatioLevel::Sequence")]
    pub ratio: RatioLevel,
    /// How token-level terms are combined (with `ratio = token`).
    #[config(default = "LossAggregation::SeqMeanTokenMean")]
    pub loss_agg: LossAggregation,
    /// Weight of the KL penalty to the reference (0 allowed).
    #[config(default = 0.05)]
    pub beta_kl: f32,
    /// The KL estimator.
    #[config(default = "KlEstimator::K3")]
    pub kl: KlEstimator,
    /// Weight of the entropy bonus (0 = none).
    #[config(default = 0.0)]
    pub entropy_coef: f32,
    /// Weight of the next-item term (InstructGPT's PPO-ptx, METHOD.md section 5): the mean
    /// cross-entropy of each batch prompt's training next item as a one-item list, added to
    /// the loss so that alignment keeps the policy's next-item ranking (0 = off).
    #[config(default = 0.0)]
    pub ptx_coef: f32,
    /// Weight of the ranking anchor (METHOD.md section 5): the exact KL from the reference's
    /// first-slot distribution over the whole catalogue to the policy's, on the batch's
    /// prompts, which keeps the policy's full ranking near the reference's (0 = off; item
    /// policy only).
    #[config(default = 0.0)]
    pub rank_kl: f32,
    /// Clip the global gradient L2 norm to this (none when unset).
    #[config(default = "None")]
    pub max_grad_norm: Option<f64>,
    /// How signals become advantages.
    #[config(default = "AdvantageScaling::Group")]
    pub advantage: AdvantageScaling,
    /// Added to the std that divides the advantages (the std floor).
    #[config(default = 1e-3)]
    pub std_eps: f64,
    /// Dynamic sampling of zero-spread groups.
    #[config(default = "DynamicSampling::Off")]
    pub dynamic_sampling: DynamicSampling,
    /// Adam learning rate (1e-4: chosen on validation, docs/results/ml100k-diagnosis; 5e-4 left
    /// the reference within 25 steps and lowered held-out NDCG on ML-100K and synthetic data).
    #[config(default = 1e-4)]
    pub lr: f64,
    /// Learning-rate schedule.
    #[config(default = "LrSchedule::Constant")]
    pub schedule: LrSchedule,
    /// Linear warm-up, in optimiser steps.
    #[config(default = 0)]
    pub warmup: usize,
}

/// Settings of an alignment run; saved as `align.json` in the run folder.
#[derive(Config, Debug, PartialEq)]
pub struct AlignConfig {
    /// The method and its own settings.
    pub method: MethodConfig,
    /// Rollout batches (outer steps).
    #[config(default = 100)]
    pub steps: usize,
    /// Prompts per rollout batch (`B`).
    #[config(default = 32)]
    pub prompts_per_step: usize,
    /// Lists per prompt (`G`).
    #[config(default = 8)]
    pub group_size: usize,
    /// Items per list (`K`).
    #[config(default = 10)]
    pub list_len: usize,
    /// Optimisation steps per rollout batch.
    #[config(default = 2)]
    pub inner_epochs: usize,
    /// The optimisation settings every method shares.
    #[config(default = "OptimConfig::new()")]
    pub optim: OptimConfig,
    /// Each gradient pass over the batch is cut into this many row shards, run on as many
    /// threads (1 = one pass on one thread). The gradient is the same up to floating-point
    /// summation order (docs/METHOD.md section 5). 4: on 2 cores, 4 shards of 64 lists were
    /// faster than 2 of 128 (smaller passes are cheaper per row) and no slower than 8 or 16
    /// (docs/results/speed-itemlm.md).
    #[config(default = 4)]
    pub grad_shards: usize,
    /// Keep no shard's autodiff graph from the forward pass: the lists' log-probabilities come
    /// from the inference copy, and each shard's forward pass runs again, with its graph, at
    /// the backward pass, as many at a time as there are threads. Peak activation memory falls
    /// to that of `threads` shards (use more shards than threads), for one more forward pass
    /// per shard; the gradient is the same up to summation order. Does not change the run's
    /// results, so a resume may turn it on or off.
    #[config(default = false)]
    pub recompute: bool,
    /// Softmax temperature of the policy being aligned: rollouts, their log-probabilities,
    /// the reference's (KL) and the reference lists are all of the policy with its logits
    /// divided by it (docs/METHOD.md section 5). Below 1 the trained distribution sits nearer
    /// the greedy lists that evaluation decodes; 1 = the policy itself.
    #[config(default = 1.0)]
    pub rollout_temperature: f32,
    /// Reference lists sampled per prompt from the SFT model (`M`).
    #[config(default = 16)]
    pub reference_lists: usize,
    /// Which training windows form the prompt pool.
    #[config(default = "PromptPool::Last(1)")]
    pub prompt_pool: PromptPool,
    /// Reward targets of a training prompt: its next item and the `train_targets - 1` items
    /// after it in the user's training sequence (docs/METHOD.md section 9). 1 = next item only.
    #[config(default = 1)]
    pub train_targets: usize,
    /// Exclude each prompt's earlier items from its lists.
    #[config(default = true)]
    pub mask_history: bool,
    /// Steps between validation evaluations, each followed by a checkpoint (0 = only at the
    /// end).
    #[config(default = 20)]
    pub eval_every: usize,
    /// Steps between checkpoints besides those after validations (0 = none besides them).
    #[config(default = 10)]
    pub checkpoint_every: usize,
    /// Validate on the first N validation users only (all when unset).
    #[config(default = "None")]
    pub valid_users: Option<usize>,
    /// Keep the validation users out of the prompt pool, so that the selection is measured on
    /// users alignment never trained on (with `valid_users`, the first N validate and the rest
    /// align). Without it, each validation prompt is a pool window moved on by one item.
    #[config(default = false)]
    pub valid_holdout: bool,
    /// The validation metric that selects the best checkpoint: a reward spec scored on greedy
    /// lists against the validation targets.
    #[config(default = "String::from(\"ndcg@10\")")]
    pub select: String,
    /// How sure the selection must be that a checkpoint beats the SFT start: a checkpoint after
    /// step 0 becomes the best only if, besides a higher selection metric than the best so
    /// far, its gain over step 0 on the validation users passes a one-sided paired test at
    /// this level (docs/METHOD.md section 7). 1 = every higher mean counts (no test).
    #[config(default = 0.05)]
    pub select_p: f64,
    /// How `select_p` allows for the many evaluations tested against step 0: `Bonferroni`
    /// tests each at `select_p` divided by the evaluations the run schedules.
    #[config(default = "SelectCorrection::Bonferroni")]
    pub select_correction: SelectCorrection,
    /// Stop after this many evaluations without a better validation metric (never when unset).
    #[config(default = "None")]
    pub patience: Option<usize>,
    /// Seed of prompt sampling and rollouts.
    #[config(default = 1)]
    pub seed: u64,
}

impl AlignConfig {
    /// Checks every setting once, before anything is written.
    pub fn check(&self) -> crate::Result<()> {
        // messages name the command-line flags (`blade train`, `blade compare`)
        let bad = |m: String| Err(CoreError::Config(m));
        if self.group_size < 2 || self.group_size > 4096 {
            return bad(format!(
                "--group-size {}: expected 2..=4096 (advantages are normalised within a group)",
                self.group_size
            ));
        }
        for (flag, v, max) in [
            // a run of no steps would write an aligned model that is the reference
            ("--steps", self.steps, 100_000_000),
            ("--prompts-per-step", self.prompts_per_step, 1_000_000),
            ("--inner-epochs", self.inner_epochs, 1000),
            ("--align-k", self.list_len, 1000),
            ("--reference-lists", self.reference_lists, 100_000),
            ("--grad-shards", self.grad_shards, 64),
        ] {
            if v == 0 || v > max {
                return bad(format!("{flag} {v}: expected 1..={max}"));
            }
        }
        let o = &self.optim;
        if !(o.lr.is_finite() && o.lr > 0.0) {
            return bad(format!("--align-lr {}: expected a finite number > 0", o.lr));
        }
        if !(o.clip_low.is_finite() && (0.0..1.0).contains(&o.clip_low)) {
            return bad(format!(
                "--clip-low {}: expected a number in [0, 1)",
                o.clip_low
            ));
        }
        // weights and ranges where 0 means off
        for (flag, v) in [
            ("--clip-high", o.clip_high),
            ("--beta-kl", o.beta_kl),
            ("--entropy-coef", o.entropy_coef),
            ("--ptx-coef", o.ptx_coef),
            ("--rank-kl", o.rank_kl),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{flag} {v}: expected a finite number >= 0"));
            }
        }
        if !o.kl.applies_to(self.method.method()) {
            return bad(format!(
                "--kl reward: {} does not train on a centred per-list signal; use it with grpo, \
                 bon-static, blade or bond (or --kl k3)",
                self.method.method().name()
            ));
        }
        if let Some(n) = o.max_grad_norm {
            if !(n.is_finite() && n > 0.0) {
                return bad(format!("--max-grad-norm {n}: expected a finite number > 0"));
            }
        }
        if !(o.std_eps.is_finite() && o.std_eps > 0.0) {
            return bad(format!(
                "--adv-std-eps {}: expected a finite number > 0",
                o.std_eps
            ));
        }
        let t = self.rollout_temperature;
        if !(t.is_finite() && (0.05..=20.0).contains(&t)) {
            return bad(format!(
                "--rollout-temperature {t}: expected a number in [0.05, 20]"
            ));
        }
        if self.train_targets == 0 || self.train_targets > 1000 {
            return bad(format!(
                "--train-targets {}: expected 1..=1000",
                self.train_targets
            ));
        }
        if self.train_targets > 1 && self.prompt_pool == PromptPool::Last(1) {
            return bad(format!(
                "--train-targets {}: with --prompt-pool last:1 every prompt is a user's last \
                 training window, whose only later training item is its target, so the setting \
                 would change nothing; use it with --prompt-pool all, sample:N or last:N (N > 1)",
                self.train_targets
            ));
        }
        if !(self.select_p > 0.0 && self.select_p <= 1.0) {
            return bad(format!(
                "--select-p {}: expected a level in (0, 1] (1 = no test)",
                self.select_p
            ));
        }
        if self.valid_users == Some(0) {
            return bad("--valid-users 0: expected at least 1 (or leave it out for all)".into());
        }
        if self.patience == Some(0) {
            return bad("--align-patience 0: expected at least 1 evaluation".into());
        }
        self.method.check(self)
    }

    /// Validations after step 0 that the run schedules: every `eval_every` steps and after the
    /// last step (one, after the last step, when `eval_every` is 0).
    pub fn scheduled_evaluations(&self) -> usize {
        if self.eval_every == 0 {
            1
        } else {
            self.steps.div_ceil(self.eval_every)
        }
    }

    /// The level each evaluation's paired test must pass to replace step 0: `select_p`,
    /// divided by [`Self::scheduled_evaluations`] under the Bonferroni correction.
    pub fn select_level(&self) -> f64 {
        match self.select_correction {
            SelectCorrection::None => self.select_p,
            SelectCorrection::Bonferroni => self.select_p / self.scheduled_evaluations() as f64,
        }
    }

    /// Optimiser steps of the whole run (the schedule's horizon).
    pub fn total_updates(&self) -> usize {
        self.steps * self.inner_epochs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_of_zero_are_refused_naming_their_flag() {
        let ok = AlignConfig::new(crate::align::Method::Grpo.default_config());
        assert!(ok.check().is_ok());
        for (cfg, flag) in [
            (ok.clone().with_steps(0), "--steps 0: expected 1..="),
            (ok.clone().with_prompts_per_step(0), "--prompts-per-step 0"),
            (ok.clone().with_grad_shards(0), "--grad-shards 0"),
        ] {
            let e = cfg.check().unwrap_err().to_string();
            assert!(e.contains(flag), "{e}");
        }
    }

    #[test]
    fn the_kl_in_the_reward_is_refused_where_advantages_are_not_the_centred_signal() {
        use crate::align::Method;
        let with = |m: Method| {
            AlignConfig::new(m.default_config())
                .with_optim(OptimConfig::new().with_kl(KlEstimator::Reward))
                .check()
        };
        for m in [Method::Grpo, Method::BonStatic, Method::Blade, Method::Bond] {
            assert!(with(m).is_ok(), "{m}");
        }
        for m in [Method::Rloo, Method::Bonbon, Method::Sdpo, Method::Dpo] {
            let e = with(m).unwrap_err().to_string();
            assert!(e.contains("--kl reward") && e.contains(m.name()), "{e}");
        }
    }

    #[test]
    fn schedules_warm_up_and_decay() {
        let lin = |t| LrSchedule::Linear.rate(1.0, t, 10, 2);
        assert_eq!((lin(0), lin(1)), (0.5, 1.0));
        assert!((lin(2) - 1.0).abs() < 1e-12 && (lin(9) - 0.125).abs() < 1e-12);
        let cos = |t| LrSchedule::Cosine.rate(1.0, t, 10, 0);
        assert!((cos(0) - 1.0).abs() < 1e-12 && (cos(5) - 0.5).abs() < 1e-12);
        assert!(cos(9) < 0.03);
        assert_eq!(LrSchedule::Constant.rate(0.3, 7, 10, 0), 0.3);
    }

    #[test]
    fn options_parse_and_name_what_is_wrong() {
        assert_eq!("last:3".parse::<PromptPool>(), Ok(PromptPool::Last(3)));
        assert_eq!("all".parse::<PromptPool>(), Ok(PromptPool::All));
        assert_eq!(
            "sample:50".parse::<PromptPool>(),
            Ok(PromptPool::Sample(50))
        );
        assert!("last:0"
            .parse::<PromptPool>()
            .unwrap_err()
            .contains("positive"));
        assert_eq!(PromptPool::Sample(7).to_string(), "sample:7");
        assert_eq!("refill:2".parse(), Ok(DynamicSampling::Refill(2)));
        assert_eq!("drop".parse(), Ok(DynamicSampling::Drop));
        assert!("k2".parse::<KlEstimator>().is_err());
        assert_eq!("reward".parse(), Ok(KlEstimator::Reward));
        assert_eq!("none".parse(), Ok(AdvantageScaling::None));
    }
}
