//! Loss pieces shared by the methods (docs/METHOD.md section 5): advantages, the clipped
//! policy-gradient surrogate, the KL estimators, the entropy bonus and the SFT term. A method
//! file combines these; none of them knows which method calls it.

use burn::prelude::*;
use burn::tensor::activation::relu;

use super::config::{AdvantageScaling, KlEstimator, OptimConfig};

/// Mean and (population) standard deviation of a group.
fn mean_std(grp: &[f64]) -> (f64, f64) {
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

/// The per-list KL estimate of `KL(pi_theta || pi_ref)` averaged over the batch.
pub fn kl_estimate(
    new_logp: &Tensor<1>,
    ref_logp: &Tensor<1>,
    estimator: KlEstimator,
) -> Tensor<1> {
    match estimator {
        KlEstimator::K1 => (new_logp.clone() - ref_logp.clone()).mean(),
        KlEstimator::K3 => {
            // exp(d) - d - 1 with d = ref - new, clamped against overflow
            let d = (ref_logp.clone() - new_logp.clone()).clamp(-20.0, 20.0);
            (d.clone().exp() - d - 1.0).mean()
        }
    }
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
}
