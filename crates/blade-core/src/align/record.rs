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
    /// One-sided p-value of the selection metric's gain over step 0, paired over the
    /// validation users, where evaluated after step 0.
    pub valid_p: Option<f64>,
    /// The k1 estimate of `KL(pi || pi_ref)` per list, unclamped: the mean over the step's
    /// rollouts of `log pi(y) - log pi_ref(y)` under the policy that sampled them (at the
    /// rollout temperature, as the loss scores them). A diagnostic beside `kl`, which is the
    /// loss's own estimator (k3 caps each list's term at `e^20`, so it saturates at 19 nats).
    pub kl_k1: f64,
    /// The next-item term's cross-entropy (mean over the batch's prompts, last inner step)
    /// when `ptx_coef > 0`, else 0.
    pub next_nll: f64,
    /// The ranking anchor's KL (mean over the batch's prompts, nats, last inner step) when
    /// `rank_kl > 0`, else 0.
    pub rank_kl: f64,
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
    /// The selection metric of every validation user at step 0 (what later checkpoints are
    /// tested against).
    pub start_users: Vec<f64>,
    /// The best checkpoint's p-value against step 0.
    pub best_p: Option<f64>,
    /// The name of the reward the run trains on (empty in checkpoints written before it was
    /// recorded): a resume with another reward is refused.
    pub reward: String,
    /// [`crate::checkpoint::folder_fingerprint`] of the SFT run the run started from (empty in
    /// checkpoints written before it was recorded): a resume from another one is refused.
    pub init: String,
}

/// One-sided p-value of a paired gain: the chance, under no gain, of a mean difference
/// `new - base` over the users at least as large as the one seen (normal approximation of the
/// paired t statistic; with no spread, 0 for a positive mean and 1 otherwise).
pub fn paired_gain_p(new: &[f64], base: &[f64]) -> f64 {
    let n = new.len().min(base.len());
    if n == 0 {
        return 1.0;
    }
    let d: Vec<f64> = new.iter().zip(base).map(|(a, b)| a - b).collect();
    let mean = d.iter().sum::<f64>() / n as f64;
    let var = if n > 1 {
        d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    let se = (var / n as f64).sqrt();
    if se <= 0.0 || !se.is_finite() {
        return if mean > 0.0 { 0.0 } else { 1.0 };
    }
    0.5 * erfc(mean / se / std::f64::consts::SQRT_2)
}

/// The complementary error function (Numerical Recipes' `erfcc`: fractional error below 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// The before/after comparison written to `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlignSummary {
    /// The method.
    pub method: String,
    /// The reward's name.
    pub reward: String,
    /// [`crate::checkpoint::folder_fingerprint`] of the SFT run the run started from (empty
    /// in summaries written before it was recorded).
    #[serde(default)]
    pub init: String,
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
    /// The best checkpoint's p-value against step 0 (none for step 0).
    #[serde(default)]
    pub best_p: Option<f64>,
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

#[cfg(test)]
mod tests {
    use super::paired_gain_p;

    #[test]
    fn the_paired_gain_p_value_is_the_normal_tail_of_the_paired_statistic() {
        // differences +-1 around a mean m over n users: sd = sqrt(n / (n - 1)), se = sd / sqrt(n)
        let n = 400;
        let base = vec![0.0; n];
        let with_mean = |m: f64| -> Vec<f64> {
            (0..n)
                .map(|i| m + if i % 2 == 0 { 1.0 } else { -1.0 })
                .collect()
        };
        let se = ((n as f64) / (n as f64 - 1.0)).sqrt() / (n as f64).sqrt();
        for (z, p) in [
            (0.0, 0.5),
            (1.644_853_6, 0.05),
            (2.326_347_9, 0.01),
            (-1.0, 0.841_344_7),
        ] {
            let got = paired_gain_p(&with_mean(z * se), &base);
            assert!((got - p).abs() < 1e-6, "z = {z}: p {got}, expected {p}");
        }
        // no spread: certain either way; nothing to compare: no evidence of a gain
        assert_eq!(paired_gain_p(&[0.2, 0.3], &[0.1, 0.2]), 0.0);
        assert_eq!(paired_gain_p(&[0.1, 0.2], &[0.1, 0.2]), 1.0);
        assert_eq!(paired_gain_p(&[], &[]), 1.0);
    }
}
