//! What a run records: one [`StepRecord`] per step (`curves.csv`), the resumable [`RunState`]
//! and the final [`AlignSummary`] (docs/METHOD.md section 7).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::reference::Ceilings;
use crate::error::CoreError;
use crate::sft::write_atomic;

/// One row of the training curves. The first columns keep the order of earlier versions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StepRecord {
    /// 1-based step (0 = before training).
    pub step: usize,
    /// Mean raw list reward of the rollouts.
    pub reward: f64,
    /// Mean within-group std of the raw reward.
    pub reward_std: f64,
    /// Mean training signal (proxy reward R, or the raw reward for GRPO and preferences).
    pub proxy: f64,
    /// Mean within-group std of the training signal (gradient decay shows here).
    pub proxy_std: f64,
    /// Mean tau of the batch's prompts.
    pub tau: f64,
    /// The KL estimate of KL(pi_theta || pi_ref) per list (last inner step).
    pub kl: f64,
    /// Monte Carlo policy entropy per list (mean of -log pi(y)).
    pub entropy: f64,
    /// Share of rollouts at or above the reference's maximum (`F_ref = 1`).
    pub saturated: f64,
    /// Loss of the last inner step.
    pub loss: f64,
    /// Share of ratios outside the clip range (last inner step).
    pub clip_frac: f64,
    /// Validation NDCG@10 of greedy lists, where evaluated this step.
    pub valid_ndcg: Option<f64>,
    /// Wall time of the whole step.
    pub seconds_step: f64,
    /// Seconds spent turning rewards into the signal (target update, proxy rewards).
    pub seconds_target: f64,
    /// Seconds spent in the gradient steps.
    pub seconds_grad: f64,
    /// Learning rate of the last optimiser step.
    pub lr: f64,
    /// Share of groups whose raw reward has zero spread (before dynamic sampling).
    pub zero_spread_raw: f64,
    /// Share of groups whose training signal has zero spread.
    pub zero_spread_signal: f64,
    /// Mean number of distinct lists per group.
    pub distinct_lists: f64,
    /// Share of rollouts tied with the reference's maximum reward.
    pub saturated_tied: f64,
    /// Share of rollouts strictly beyond the reference's range.
    pub saturated_beyond: f64,
    /// Share clipped from below where it matters (ratio < 1 - clip_low, A < 0).
    pub clip_low: f64,
    /// Share clipped from above where it matters (ratio > 1 + clip_high, A > 0).
    pub clip_high: f64,
    /// Global gradient L2 norm before clipping (last inner step).
    pub grad_norm: f64,
    /// Lists sampled per second of the step's wall time.
    pub lists_per_sec: f64,
    /// Groups that reached the loss.
    pub groups_used: usize,
    /// Zero-spread groups dropped by dynamic sampling (refills included).
    pub groups_dropped: usize,
    /// The selection metric on validation greedy lists, where evaluated this step.
    pub valid_metric: Option<f64>,
}

impl StepRecord {
    /// Whether every training scalar is finite.
    pub fn is_finite(&self) -> bool {
        [
            self.reward,
            self.proxy,
            self.proxy_std,
            self.tau,
            self.kl,
            self.entropy,
            self.saturated,
            self.loss,
            self.grad_norm,
        ]
        .iter()
        .all(|x| x.is_finite())
            && self.valid_ndcg.is_none_or(f64::is_finite)
            && self.valid_metric.is_none_or(f64::is_finite)
    }
}

/// Checkpointed progress of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct RunState {
    pub step: usize,
    pub curves: Vec<StepRecord>,
    /// Step of the best validation metric so far.
    pub best_step: usize,
    /// The best validation metric so far.
    pub best_metric: Option<f64>,
    /// Evaluations since the best one.
    pub evals_since_best: usize,
    /// Set when early stopping ended the run.
    pub stopped_early: bool,
}

/// The before/after comparison written to `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlignSummary {
    /// The method.
    pub method: String,
    /// The reward's name.
    pub reward: String,
    /// Prompts the comparison used (the first of the pool).
    pub prompts: usize,
    /// Mean reward of the SFT reference's cached lists on those prompts.
    pub reference_reward: f64,
    /// Mean reward of `M` fresh lists per prompt from the aligned policy (last step), same prompts.
    pub policy_reward: f64,
    /// Validation NDCG@10 (greedy lists) before alignment.
    pub valid_ndcg_start: Option<f64>,
    /// Validation NDCG@10 (greedy lists) at the end.
    pub valid_ndcg_end: Option<f64>,
    /// Whether any recorded scalar was NaN or infinite.
    pub non_finite: bool,
    /// The selection metric (a reward spec on validation greedy lists).
    #[serde(default)]
    pub select: String,
    /// Step of the best checkpoint (`best/`; 0 = the SFT start).
    #[serde(default)]
    pub best_step: usize,
    /// The selection metric at the best checkpoint.
    #[serde(default)]
    pub best_metric: Option<f64>,
    /// Steps run (fewer than configured after early stopping).
    #[serde(default)]
    pub steps_run: usize,
    /// Whether early stopping ended the run.
    #[serde(default)]
    pub stopped_early: bool,
    /// The static ceilings on the training pool (all of it).
    #[serde(default)]
    pub ceilings_pool: Ceilings,
    /// The static ceilings on the held-out (validation) prompts, sampled from SFT.
    #[serde(default)]
    pub ceilings_valid: Ceilings,
}

pub(crate) use crate::checkpoint::save_json;

/// Writes `curves.csv`: one row per step, the columns being [`StepRecord`]'s fields.
pub fn write_curves(path: &Path, curves: &[StepRecord]) -> crate::Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in curves {
        w.serialize(r).map_err(|e| CoreError::file(path, e))?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| CoreError::file(path, e.to_string()))?;
    write_atomic(path, &bytes)
}

/// Reads a `curves.csv` written by [`write_curves`] (columns added later default to 0).
pub fn read_curves(path: &Path) -> crate::Result<Vec<StepRecord>> {
    let mut r = csv::Reader::from_path(path).map_err(|e| CoreError::file(path, e))?;
    r.deserialize()
        .enumerate()
        .map(|(i, row)| row.map_err(|e| CoreError::file(path, format!("row {}: {e}", i + 2))))
        .collect()
}
