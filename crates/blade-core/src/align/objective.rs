//! The losses of every alignment method, all computed from one rollout batch (METHOD.md
//! sections 2 to 4). Every method sees the same rollouts, rewards and reference log-probs;
//! they differ only in the per-list signal and the loss built from it.

use burn::prelude::*;
use burn::tensor::activation::relu;
use serde::{Deserialize, Serialize};

/// An alignment method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// GRPO on the raw list reward `r(y)`.
    Grpo,
    /// Static BoN alignment (vBoN): BLADE's proxy reward with `tau = 0` (the frozen reference CDF).
    BonStatic,
    /// BLADE: the proxy reward under the per-prompt Bayesian posterior, refreshed by rollouts.
    Blade,
    /// BOND's Jeffreys objective with a moving (EMA) anchor.
    Bond,
    /// BoNBoN: SFT on the best list plus IPO(best vs worst).
    Bonbon,
    /// Softmax-DPO: the best list against several worse ones in one softmax.
    Sdpo,
}

impl Method {
    /// Every trainable method, in table order.
    pub const ALL: [Method; 6] = [
        Method::Grpo,
        Method::BonStatic,
        Method::Bond,
        Method::Bonbon,
        Method::Sdpo,
        Method::Blade,
    ];

    /// The CLI / table name.
    pub fn name(self) -> &'static str {
        match self {
            Method::Grpo => "grpo",
            Method::BonStatic => "bon-static",
            Method::Blade => "blade",
            Method::Bond => "bond",
            Method::Bonbon => "bonbon",
            Method::Sdpo => "sdpo",
        }
    }

    /// Whether the method trains on a clipped policy-gradient surrogate with advantages.
    pub fn uses_advantages(self) -> bool {
        matches!(
            self,
            Method::Grpo | Method::BonStatic | Method::Blade | Method::Bond
        )
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown method `{s}`; expected sft, {}",
                    Method::ALL.map(Method::name).join(", ")
                )
            })
    }
}

/// Hyper-parameters of the losses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossConfig {
    /// PPO/GRPO clip range `eps`.
    pub clip_eps: f32,
    /// Weight of the k3 KL estimate to the reference.
    pub beta_kl: f32,
    /// BOND's Jeffreys mix `b`: `(1-b)` forward KL (SFT on the group's best) + `b` backward KL.
    pub bond_mix: f32,
    /// BoNBoN's `alpha`: weight of the SFT term against IPO.
    pub bonbon_alpha: f32,
    /// S-DPO's `beta`.
    pub sdpo_beta: f32,
    /// S-DPO's number of worse lists per winner.
    pub sdpo_negatives: usize,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            clip_eps: 0.2,
            beta_kl: 0.05,
            bond_mix: 0.5,
            bonbon_alpha: 0.5,
            sdpo_beta: 1.0,
            sdpo_negatives: 3,
        }
    }
}

/// Host-side data of one rollout batch: `groups` prompts of `g` lists each.
#[derive(Debug, Clone)]
pub struct LossBatch {
    /// Lists per prompt.
    pub g: usize,
    /// Raw list rewards, `[groups * g]`.
    pub rewards: Vec<f32>,
    /// Group-normalised advantages, `[groups * g]` (policy-gradient methods).
    pub advantages: Vec<f32>,
    /// Log-probs under the policy that sampled the lists, `[groups * g]`.
    pub old_logp: Vec<f32>,
    /// Log-probs under the KL reference (frozen SFT, or BOND's anchor), `[groups * g]`.
    pub ref_logp: Vec<f32>,
    /// List length (to put sequence log-probs on a per-item scale in SFT terms).
    pub list_len: usize,
}

/// Group-normalised advantages `A_g = (R_g - mean R) / (std R + 1e-6)` (METHOD.md section 3).
pub fn group_advantages(signal: &[f64], g: usize) -> Vec<f32> {
    signal
        .chunks(g.max(1))
        .flat_map(|grp| {
            let n = grp.len() as f64;
            let mean = grp.iter().sum::<f64>() / n;
            let std = (grp.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
            grp.iter().map(move |x| ((x - mean) / (std + 1e-6)) as f32)
        })
        .collect()
}

/// Mean within-group standard deviation of a per-list signal.
pub fn mean_group_std(signal: &[f64], g: usize) -> f64 {
    let groups: Vec<f64> = signal
        .chunks(g.max(1))
        .map(|grp| {
            let n = grp.len() as f64;
            let mean = grp.iter().sum::<f64>() / n;
            (grp.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt()
        })
        .collect();
    groups.iter().sum::<f64>() / groups.len().max(1) as f64
}

/// The BoN log density ratio from a group's own rewards (BOND's quantile estimate):
/// `log((p_le^G - p_lt^G)/(p_le - p_lt))` with the group's empirical CDF, computed as the
/// division-free sum `log sum_i p_le^i p_lt^(G-1-i)`.
pub fn group_bon_log_ratio(rewards: &[f32], g: usize, n: usize) -> Vec<f64> {
    rewards
        .chunks(g.max(1))
        .flat_map(|grp| {
            let m = grp.len() as f64;
            grp.iter()
                .map(|&r| {
                    let le = grp.iter().filter(|&&x| x <= r).count() as f64 / m;
                    let lt = grp.iter().filter(|&&x| x < r).count() as f64 / m;
                    let s: f64 = (0..n)
                        .map(|i| le.powi(i as i32) * lt.powi((n - 1 - i) as i32))
                        .sum();
                    s.max(1e-9).ln()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Indices (best, worst...) inside each group, ordered by reward desc then index asc.
fn ranked(rewards: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..rewards.len()).collect();
    idx.sort_by(|&a, &b| rewards[b].total_cmp(&rewards[a]).then(a.cmp(&b)));
    idx
}

/// Scalars reported by a loss computation.
#[derive(Debug, Clone, Copy, Default)]
pub struct LossStats {
    /// The total loss.
    pub loss: f64,
    /// Mean k3 estimate of `KL(pi_theta || pi_ref)` per list.
    pub kl: f64,
    /// Share of lists whose ratio was clipped (policy-gradient methods).
    pub clip_frac: f64,
}

fn host(t: &Tensor<1>) -> Vec<f32> {
    t.clone()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}

/// The loss of `method` given the policy's differentiable list log-probs `new_logp`
/// (`[groups * g]`, same order as the batch).
pub fn loss(
    method: Method,
    new_logp: Tensor<1>,
    b: &LossBatch,
    cfg: &LossConfig,
) -> (Tensor<1>, LossStats) {
    let device = new_logp.device();
    let n = b.old_logp.len();
    let vec = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), &device);
    let old = vec(&b.old_logp);
    let refp = vec(&b.ref_logp);

    // k3 estimator of KL(pi_theta || pi_ref) per list: exp(d) - d - 1 with d = ref - new
    let d = (refp.clone() - new_logp.clone()).clamp(-20.0, 20.0);
    let kl = (d.clone().exp() - d - 1.0).mean();

    let mut stats = LossStats::default();
    let main = if method.uses_advantages() {
        let adv = vec(&b.advantages);
        let ratio = (new_logp.clone() - old).clamp(-20.0, 20.0).exp();
        let r = host(&ratio);
        stats.clip_frac = r
            .iter()
            .filter(|x| (**x - 1.0).abs() > cfg.clip_eps)
            .count() as f64
            / n.max(1) as f64;
        let s1 = ratio.clone() * adv.clone();
        let s2 = ratio.clamp(1.0 - cfg.clip_eps, 1.0 + cfg.clip_eps) * adv;
        let pg = s1.min_pair(s2).mean().neg();
        if method == Method::Bond {
            // (1-b) forward KL: SFT on each group's best list; b: the backward (RL) term
            let best = group_pick(&b.rewards, b.g, 0);
            let sft = select(&new_logp, &best, &device).mean().neg() / b.list_len.max(1) as f32;
            pg * cfg.bond_mix + sft * (1.0 - cfg.bond_mix)
        } else {
            pg
        }
    } else {
        preference_loss(method, &new_logp, &refp, b, cfg, &device)
    };
    let total = main + kl.clone() * cfg.beta_kl;
    stats.loss = host(&total).first().copied().unwrap_or(f32::NAN) as f64;
    stats.kl = host(&kl).first().copied().unwrap_or(f32::NAN) as f64;
    (total, stats)
}

/// Per group, the list at position `rank` of the reward order (0 = best).
fn group_pick(rewards: &[f32], g: usize, rank: usize) -> Vec<usize> {
    rewards
        .chunks(g.max(1))
        .enumerate()
        .map(|(i, grp)| i * g + ranked(grp)[rank.min(grp.len() - 1)])
        .collect()
}

fn select(t: &Tensor<1>, idx: &[usize], device: &Device) -> Tensor<1> {
    let idx: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
    let n = idx.len();
    t.clone().select(
        0,
        Tensor::<1, Int>::from_data(TensorData::new(idx, [n]), device),
    )
}

/// `log(1 + exp(x))` without overflow.
fn softplus(x: Tensor<1>) -> Tensor<1> {
    relu(x.clone()) + x.abs().neg().exp().log1p()
}

fn preference_loss(
    method: Method,
    new_logp: &Tensor<1>,
    refp: &Tensor<1>,
    b: &LossBatch,
    cfg: &LossConfig,
    device: &Device,
) -> Tensor<1> {
    // groups whose rewards are all equal carry no preference and are skipped
    let informative: Vec<usize> = b
        .rewards
        .chunks(b.g)
        .enumerate()
        .filter(|(_, grp)| grp.iter().any(|&r| r != grp[0]))
        .map(|(i, _)| i)
        .collect();
    let h = new_logp.clone() - refp.clone(); // implicit reward log pi/pi_ref
    let best_all = group_pick(&b.rewards, b.g, 0);
    let best: Vec<usize> = informative.iter().map(|&i| best_all[i]).collect();
    // the SFT term applies to every group's best list, informative or not
    let sft = select(new_logp, &best_all, device).mean().neg() / b.list_len.max(1) as f32;
    if best.is_empty() {
        return match method {
            Method::Bonbon => sft * cfg.bonbon_alpha,
            _ => new_logp.clone().sum() * 0.0,
        };
    }
    match method {
        Method::Bonbon => {
            let worst_all = group_pick(&b.rewards, b.g, b.g - 1);
            let worst: Vec<usize> = informative.iter().map(|&i| worst_all[i]).collect();
            // IPO target margin 1/(2 beta*) with beta* = 1/(2 (n-1) H_{n-1}) (BoNBoN, Gui et al. 2024)
            let n = b.g as f32;
            let harmonic: f32 = (1..b.g).map(|i| 1.0 / i as f32).sum();
            let margin = (n - 1.0) * harmonic;
            let diff = select(&h, &best, device) - select(&h, &worst, device);
            let ipo = (diff - margin).powi_scalar(2).mean();
            sft * cfg.bonbon_alpha + ipo * (1.0 - cfg.bonbon_alpha)
        }
        _ => {
            // S-DPO (Chen et al. 2024): -log sigmoid(-log sum_l exp(beta (h_l - h_w)))
            let m = cfg.sdpo_negatives.clamp(1, b.g - 1);
            let mut losers = Vec::new();
            for &gi in &informative {
                let grp = &b.rewards[gi * b.g..(gi + 1) * b.g];
                let order = ranked(grp);
                let best_r = grp[order[0]];
                let worse: Vec<usize> = order
                    .iter()
                    .rev()
                    .filter(|&&j| grp[j] < best_r)
                    .take(m)
                    .copied()
                    .collect();
                for j in 0..m {
                    losers.push(gi * b.g + worse[j % worse.len()]);
                }
            }
            let k = best.len();
            let hw = select(&h, &best, device).reshape([k, 1]);
            let hl = select(&h, &losers, device).reshape([k, m]);
            let z = (hl - hw) * cfg.sdpo_beta;
            let zmax = z.clone().max_dim(1);
            let lse = (z - zmax.clone()).exp().sum_dim(1).log() + zmax;
            softplus(lse.reshape([k])).mean()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advantages_are_group_normalised() {
        let a = group_advantages(&[1.0, 3.0, 5.0, 5.0], 2);
        assert!((a[0] + 1.0).abs() < 1e-5 && (a[1] - 1.0).abs() < 1e-5);
        assert_eq!(
            &a[2..],
            &[0.0, 0.0],
            "equal rewards give zero advantage, not NaN"
        );
        assert!((mean_group_std(&[1.0, 3.0, 5.0, 5.0], 2) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn group_bon_ratio_matches_closed_form() {
        // distinct rewards in a group of 4, N = 4: F = rank/4, p_lt = (rank-1)/4
        let r = group_bon_log_ratio(&[0.1, 0.4, 0.2, 0.3], 4, 4);
        let expect = |le: f64, lt: f64| ((le.powi(4) - lt.powi(4)) / (le - lt)).ln();
        assert!((r[1] - expect(1.0, 0.75)).abs() < 1e-9);
        assert!((r[0] - expect(0.25, 0.0)).abs() < 1e-9);
        // all tied: p_le = 1, p_lt = 0 -> log 1 = 0
        assert!(group_bon_log_ratio(&[2.0, 2.0], 2, 4)
            .iter()
            .all(|x| x.abs() < 1e-12));
    }

    #[test]
    fn method_names_round_trip() {
        for m in Method::ALL {
            assert_eq!(m.name().parse::<Method>(), Ok(m));
        }
        assert!("ppo"
            .parse::<Method>()
            .unwrap_err()
            .contains("expected sft"));
    }
}
