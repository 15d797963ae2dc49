//! Loss pieces shared by the methods (docs/METHOD.md section 5): advantages, the clipped
//! policy-gradient surrogate, the KL estimators, the entropy bonus and the SFT term. A method
//! file combines these; none of them knows which method calls it.

use burn::prelude::*;
use burn::tensor::activation::relu;

use super::config::{AdvantageScaling, KlEstimator, LossAggregation, OptimConfig, RatioLevel};
use crate::policy::TokenLogProbs;

/// Mean and (population) standard deviation of a group (also the spread `tau spread` keeps,
/// `crate::target`).
pub(crate) fn mean_std(grp: &[f64]) -> (f64, f64) {
    let n = grp.len() as f64;
    let mean = grp.iter().sum::<f64>() / n;
    let std = (grp.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    (mean, std)
}

/// Advantages of a per-list signal in groups of `g` (docs/METHOD.md section 5): centred on the
/// group mean, then divided by the group std + `eps` (`Group`), by the batch std of the centred
/// values + `eps` (`Batch`), or not at all (`None`).
pub fn advantages(signal: &[f64], g: usize, scaling: AdvantageScaling, eps: f64) -> Vec<f32> {
    let g = g.max(1);
    match scaling {
        AdvantageScaling::Group => signal
            .chunks(g)
            .flat_map(|grp| {
                let (mean, std) = mean_std(grp);
                grp.iter().map(move |x| ((x - mean) / (std + eps)) as f32)
            })
            .collect(),
        AdvantageScaling::Batch | AdvantageScaling::None => {
            let centred: Vec<f64> = signal
                .chunks(g)
                .flat_map(|grp| {
                    let mean = mean_std(grp).0;
                    grp.iter().map(move |x| x - mean)
                })
                .collect();
            let scale = if scaling == AdvantageScaling::Batch && !centred.is_empty() {
                mean_std(&centred).1 + eps
            } else {
                1.0
            };
            centred.iter().map(|x| (x / scale) as f32).collect()
        }
    }
}

/// Mean within-group standard deviation of a per-list signal.
pub fn mean_group_std(signal: &[f64], g: usize) -> f64 {
    let stds: Vec<f64> = signal.chunks(g.max(1)).map(|grp| mean_std(grp).1).collect();
    stds.iter().sum::<f64>() / stds.len().max(1) as f64
}

/// Share of groups whose signal has zero spread.
pub fn zero_spread_share(signal: &[f64], g: usize) -> f64 {
    let groups: Vec<bool> = signal
        .chunks(g.max(1))
        .map(|grp| grp.iter().all(|&x| x == grp[0]))
        .collect();
    groups.iter().filter(|&&z| z).count() as f64 / groups.len().max(1) as f64
}

/// A host vector as a 1-D tensor on `device`.
pub fn vec_tensor(v: &[f32], device: &Device) -> Tensor<1> {
    Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), device)
}

/// Rows `idx` of a 1-D tensor.
pub fn select(t: &Tensor<1>, idx: &[usize]) -> Tensor<1> {
    let device = t.device();
    let idx: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
    let n = idx.len();
    t.clone().select(
        0,
        Tensor::<1, Int>::from_data(TensorData::new(idx, [n]), &device),
    )
}

/// `log(1 + exp(x))` without overflow.
pub fn softplus(x: Tensor<1>) -> Tensor<1> {
    relu(x.clone()) + x.abs().neg().exp().log1p()
}

/// What the clipped surrogate reports besides its value.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClipStats {
    /// Share of ratios outside `[1 - clip_low, 1 + clip_high]`.
    pub clip_frac: f64,
    /// Share clipped from below where it matters (`ratio < 1 - clip_low`, `A < 0`).
    pub clip_low: f64,
    /// Share clipped from above where it matters (`ratio > 1 + clip_high`, `A > 0`).
    pub clip_high: f64,
}

/// The clipped policy-gradient surrogate (PPO, GRPO; docs/METHOD.md section 5) on list
/// log-probabilities: `-mean(min(rho A, clip(rho, 1 - lo, 1 + hi) A))`, `rho = exp(new - old)`.
pub fn clipped_surrogate(
    new_logp: &Tensor<1>,
    old_logp: &[f32],
    adv: &[f32],
    o: &OptimConfig,
) -> crate::Result<(Tensor<1>, ClipStats)> {
    let device = new_logp.device();
    let old = vec_tensor(old_logp, &device);
    let a = vec_tensor(adv, &device);
    let ratio = (new_logp.clone() - old).clamp(-20.0, 20.0).exp();
    let r = super::host(ratio.clone())?;
    let n = r.len().max(1) as f64;
    let (lo, hi) = (o.clip_low, o.clip_high);
    let stats = ClipStats {
        clip_frac: r.iter().filter(|&&x| x - 1.0 < -lo || x - 1.0 > hi).count() as f64 / n,
        clip_low: r
            .iter()
            .zip(adv)
            .filter(|(&x, &a)| x - 1.0 < -lo && a < 0.0)
            .count() as f64
            / n,
        clip_high: r
            .iter()
            .zip(adv)
            .filter(|(&x, &a)| x - 1.0 > hi && a > 0.0)
            .count() as f64
            / n,
    };
    let s1 = ratio.clone() * a.clone();
    let s2 = ratio.clamp(1.0 - lo, 1.0 + hi) * a;
    Ok((s1.min_pair(s2).mean().neg(), stats))
}

/// The clipped surrogate with token-level or GSPO ratios (docs/METHOD.md section 5). `new` are
/// the policy's per-token log-probabilities, `old` the same at the start of the step (detached;
/// the sampling policy), `adv` one advantage per list, shared by its tokens.
///
/// - `Token`: `rho_t = exp(new_t - old_t)`, `s_t = min(rho_t A, clip(rho_t) A)`, combined by
///   `o.loss_agg`;
/// - `Gspo`: `rho = exp(sum_t m_t (new_t - old_t) / sum_t m_t)` per list, clipped per list.
pub fn token_surrogate(
    new: &TokenLogProbs,
    old: &Tensor<2>,
    adv: &[f32],
    o: &OptimConfig,
) -> crate::Result<(Tensor<1>, ClipStats)> {
    let [n, t] = new.values.dims();
    let device = new.values.device();
    let mask = new.mask.clone();
    let a = vec_tensor(adv, &device);
    let (lo, hi) = (o.clip_low, o.clip_high);
    let diff = (new.values.clone() - old.clone()) * mask.clone();
    let (ratio, a_b, m) = match o.ratio {
        RatioLevel::Gspo => {
            let len = mask.clone().sum_dim(1).clamp_min(1.0);
            let mean = (diff.sum_dim(1) / len).reshape([n, 1]);
            (
                mean.clamp(-20.0, 20.0).exp(),
                a.reshape([n, 1]),
                Tensor::ones([n, 1], &device),
            )
        }
        _ => (
            diff.clamp(-20.0, 20.0).exp(),
            a.reshape([n, 1]).expand([n, t]),
            mask.clone(),
        ),
    };
    // clip statistics over real tokens (or lists)
    let width = ratio.dims()[1];
    let r = super::host(ratio.clone().reshape([n * width]))?;
    let mh = super::host(m.clone().reshape([n * width]))?;
    let (mut real, mut frac, mut low, mut high) = (0.0, 0.0, 0.0, 0.0);
    for (i, (&x, &mm)) in r.iter().zip(&mh).enumerate() {
        if mm == 0.0 {
            continue;
        }
        let adv_i = adv[i / width.max(1)];
        real += 1.0;
        frac += f64::from(u8::from(x - 1.0 < -lo || x - 1.0 > hi));
        low += f64::from(u8::from(x - 1.0 < -lo && adv_i < 0.0));
        high += f64::from(u8::from(x - 1.0 > hi && adv_i > 0.0));
    }
    let real_n: f64 = real;
    let stats = ClipStats {
        clip_frac: frac / real_n.max(1.0),
        clip_low: low / real_n.max(1.0),
        clip_high: high / real_n.max(1.0),
    };
    let s1 = ratio.clone() * a_b.clone();
    let s2 = ratio.clamp(1.0 - lo, 1.0 + hi) * a_b;
    let per = s1.min_pair(s2) * m.clone(); // [n, t] (or [n, 1])
    let loss = match (o.ratio, o.loss_agg) {
        (RatioLevel::Gspo, _) | (_, LossAggregation::SeqMeanTokenMean) => {
            let len = m.sum_dim(1).clamp_min(1.0);
            (per.sum_dim(1) / len).mean()
        }
        (_, LossAggregation::TokenMean) => per.sum() / (real_n.max(1.0) as f32),
        (_, LossAggregation::SeqMeanTokenSumNorm) => per.sum_dim(1).mean() / t.max(1) as f32,
    };
    Ok((loss.reshape([1]).neg(), stats))
}

/// The per-list KL estimate of `KL(pi_theta || pi_ref)` averaged over the batch (`Reward`,
/// whose penalty is not a loss term, reports the k1 estimate).
pub fn kl_estimate(
    new_logp: &Tensor<1>,
    ref_logp: &Tensor<1>,
    estimator: KlEstimator,
) -> Tensor<1> {
    match estimator {
        KlEstimator::K1 | KlEstimator::Reward => (new_logp.clone() - ref_logp.clone()).mean(),
        KlEstimator::K3 => {
            // exp(d) - d - 1 with d = ref - new, clamped against overflow
            let d = (ref_logp.clone() - new_logp.clone()).clamp(-20.0, 20.0);
            (d.clone().exp() - d - 1.0).mean()
        }
    }
}

/// The k1 estimate of `KL(pi || pi_ref)` per list from host-side log-probabilities of the
/// same sampled lists: `mean(log pi - log pi_ref)`, unclamped (the `kl_k1` column; 0 for no
/// lists).
pub(crate) fn k1_mean(logp: &[f32], ref_logp: &[f32]) -> f64 {
    let n = logp.len().min(ref_logp.len());
    if n == 0 {
        return 0.0;
    }
    let sum: f64 = logp
        .iter()
        .zip(ref_logp)
        .map(|(&a, &b)| f64::from(a) - f64::from(b))
        .sum();
    sum / n as f64
}

/// The per-list signal with the KL penalty in the reward (`--kl reward`, METHOD.md section 5):
/// `value - beta * (log pi_old - log pi_ref)` for each sampled list.
pub fn kl_penalised(values: &[f64], old_logp: &[f32], ref_logp: &[f32], beta: f32) -> Vec<f64> {
    values
        .iter()
        .zip(old_logp.iter().zip(ref_logp))
        .map(|(&v, (&old, &r))| v - f64::from(beta) * (f64::from(old) - f64::from(r)))
        .collect()
}

/// A score-function surrogate of the list entropy on (near) on-policy samples: its gradient,
/// `mean((-logp - mean(-logp)) grad logp)`, estimates the gradient of `H = -E[log pi]`.
pub fn entropy_surrogate(new_logp: &Tensor<1>) -> Tensor<1> {
    let nll = new_logp.clone().detach().neg();
    let centred = nll.clone() - nll.mean();
    (centred * new_logp.clone()).mean()
}

/// Negative mean log-likelihood of lists `rows`, per item (the SFT term of BOND and BoNBoN).
pub fn sft_term(new_logp: &Tensor<1>, rows: &[usize], list_len: usize) -> Tensor<1> {
    select(new_logp, rows).mean().neg() / list_len.max(1) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_advantages_are_normalised_and_safe() {
        let a = advantages(&[1.0, 3.0, 5.0, 5.0], 2, AdvantageScaling::Group, 1e-6);
        assert!((a[0] + 1.0).abs() < 1e-5 && (a[1] - 1.0).abs() < 1e-5);
        assert_eq!(
            &a[2..],
            &[0.0, 0.0],
            "equal rewards give zero advantage, not NaN"
        );
        assert!((mean_group_std(&[1.0, 3.0, 5.0, 5.0], 2) - 0.5).abs() < 1e-12);
        // float residue: a group that differs by 1e-9 stays small with the 1e-3 floor
        let tiny = advantages(&[0.0, 1e-9], 2, AdvantageScaling::Group, 1e-3);
        assert!(tiny.iter().all(|x| x.abs() < 1e-5), "{tiny:?}");
        let huge = advantages(&[0.0, 1e-9], 2, AdvantageScaling::Group, 1e-9);
        assert!(huge[1] > 0.3, "a tiny floor amplifies residue: {huge:?}");
    }

    #[cfg(feature = "flex")]
    fn toks(values: Vec<f32>, mask: Vec<f32>, n: usize) -> TokenLogProbs {
        let device = crate::BackendSpec::Flex.device().unwrap();
        let t = values.len() / n;
        TokenLogProbs {
            values: Tensor::<2>::from_data(TensorData::new(values, [n, t]), &device),
            mask: Tensor::<2>::from_data(TensorData::new(mask, [n, t]), &device),
        }
    }

    #[cfg(feature = "flex")]
    fn scalar(t: Tensor<1>) -> f64 {
        f64::from(super::super::host(t).unwrap()[0])
    }

    #[cfg(feature = "flex")]
    #[test]
    fn token_level_surrogates_aggregate_as_documented() {
        // two lists: 3 real tokens and 1 real token (+ 2 padding), advantages 1 and -2
        let new = toks(
            vec![-1.0, -2.0, -0.5, -1.0, 0.0, 0.0],
            vec![1., 1., 1., 1., 0., 0.],
            2,
        );
        let old = new.values.clone();
        let adv = [1.0f32, -2.0];
        let o = |r, a| OptimConfig::new().with_ratio(r).with_loss_agg(a);
        let at = |r, a| token_surrogate(&new, &old, &adv, &o(r, a)).unwrap();
        // on-policy every ratio is 1: the loss is minus the aggregated advantages
        let (l, st) = at(RatioLevel::Token, LossAggregation::SeqMeanTokenMean);
        assert!((scalar(l) - 0.5).abs() < 1e-6, "-(1 + -2)/2");
        assert_eq!(st.clip_frac, 0.0);
        let (l, _) = at(RatioLevel::Token, LossAggregation::TokenMean);
        assert!(
            (scalar(l) - -(3.0 - 2.0) / 4.0).abs() < 1e-6,
            "over the 4 real tokens"
        );
        let (l, _) = at(RatioLevel::Token, LossAggregation::SeqMeanTokenSumNorm);
        assert!(
            (scalar(l) - -(3.0 - 2.0) / 2.0 / 3.0).abs() < 1e-6,
            "sums over width 3"
        );
        let (l, _) = at(RatioLevel::Gspo, LossAggregation::TokenMean);
        assert!((scalar(l) - 0.5).abs() < 1e-6, "GSPO: one ratio per list");

        // moved: list 0 by +0.5 per token (ratio e^0.5, clipped at 1.2 for A > 0), list 1's
        // padding moved (must not count)
        let moved = toks(
            vec![-0.5, -1.5, 0.0, -1.0, 3.0, 3.0],
            vec![1., 1., 1., 1., 0., 0.],
            2,
        );
        let (l, st) = token_surrogate(
            &moved,
            &old,
            &adv,
            &o(RatioLevel::Token, LossAggregation::TokenMean),
        )
        .unwrap();
        assert!(
            (st.clip_high - 0.75).abs() < 1e-9 && st.clip_low == 0.0,
            "{st:?}"
        );
        assert!((scalar(l) - -(3.0 * 1.2 - 2.0) / 4.0).abs() < 1e-5);
        let (l, st) = token_surrogate(
            &moved,
            &old,
            &adv,
            &o(RatioLevel::Gspo, LossAggregation::TokenMean),
        )
        .unwrap();
        assert!((st.clip_high - 0.5).abs() < 1e-9, "{st:?}");
        assert!((scalar(l) - -(1.2 - 2.0) / 2.0).abs() < 1e-5);
    }

    #[test]
    fn batch_and_no_scaling_centre_on_the_group() {
        let s = [1.0, 3.0, 10.0, 30.0];
        let none = advantages(&s, 2, AdvantageScaling::None, 1e-3);
        assert_eq!(none, vec![-1.0, 1.0, -10.0, 10.0]);
        let batch = advantages(&s, 2, AdvantageScaling::Batch, 0.0);
        // centred values -1, 1, -10, 10: batch std = sqrt(101/2)
        let sd = (101.0f64 / 2.0).sqrt();
        assert!((f64::from(batch[3]) - 10.0 / sd).abs() < 1e-5);
        assert!((f64::from(batch[0]) + 1.0 / sd).abs() < 1e-5);
        assert_eq!(zero_spread_share(&[1.0, 1.0, 0.0, 2.0], 2), 0.5);
    }

    #[test]
    fn the_k1_column_is_the_unclamped_mean_log_ratio() {
        // 30 nats on one list: k3 would cap its term, k1 keeps it
        assert!((k1_mean(&[-1.0, -2.0], &[-31.0, -2.0]) - 15.0).abs() < 1e-12);
        assert!((k1_mean(&[-3.0], &[-1.0]) + 2.0).abs() < 1e-12);
        assert_eq!(k1_mean(&[], &[]), 0.0);
    }

    #[test]
    fn the_kl_penalty_in_the_reward_is_subtracted_per_list() {
        // lists whose sampling policy is 2 and 0 nats above the reference, beta 0.5
        let v = kl_penalised(
            &[1.0, 1.0, 3.0],
            &[-1.0, -4.0, -2.0],
            &[-3.0, -4.0, -1.0],
            0.5,
        );
        assert_eq!(v, vec![0.0, 1.0, 3.5]);
        assert_eq!(kl_penalised(&[1.0], &[-1.0], &[-3.0], 0.0), vec![1.0]);
    }
}
