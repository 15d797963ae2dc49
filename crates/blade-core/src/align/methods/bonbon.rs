//! BoNBoN (docs/METHOD.md section 6.6).
//!
//! Source: Gui et al., "BoNBoN Alignment for Large Language Models and the Sweetness of
//! Best-of-n Sampling", 2024, arXiv 2406.00832: `alpha` SFT on each group's best list plus
//! `(1 - alpha)` IPO on (best, worst) with the implicit reward `h = log pi - log pi_ref` and
//! target margin `1 / (2 beta*)`, `beta* = 1 / (2 (n-1) H_{n-1})`, i.e. `(n-1) H_{n-1}`.

use burn::config::Config;
use burn::prelude::*;

use super::{
    bad, best_offsets, imitate_rows, ranked, raw_values, LossInputs, LossParts, Method, Objective,
    Preference, Signal,
};
use crate::align::config::OptimConfig;
use crate::align::loss::{select, sft_term};
use crate::align::policy::AlignPolicy;
use crate::align::rollout::ScoredGroups;
use crate::target::BayesianTarget;

/// Settings of BoNBoN.
#[derive(Config, Debug, PartialEq)]
pub struct BonbonConfig {
    /// Weight of the SFT term against IPO, in `[0, 1]`.
    #[config(default = 0.5)]
    pub alpha: f32,
}

impl BonbonConfig {
    pub(crate) fn check(&self) -> crate::Result<()> {
        if !(0.0..=1.0).contains(&self.alpha) {
            return bad(
                Method::Bonbon,
                format!("alpha must be in [0, 1], got {}", self.alpha),
            );
        }
        Ok(())
    }
}

/// Best-vs-worst preferences of the groups whose rewards are not all equal.
pub(crate) fn best_vs_worst(scored: &ScoredGroups) -> Vec<Preference> {
    (0..scored.groups())
        .filter(|&i| !scored.zero_spread(i))
        .map(|i| {
            let order = ranked(scored.group_rewards(i));
            Preference {
                group: i,
                winner: order[0],
                losers: vec![order[order.len() - 1]],
            }
        })
        .collect()
}

/// Per preference, the winner's log-ratio to the reference minus its first loser's:
/// `(log pi - log pi_ref)(winner) - (log pi - log pi_ref)(loser)`, the margin DPO and BoNBoN's
/// IPO term act on.
pub(crate) fn winner_margin(new_logp: &Tensor<1>, inputs: &LossInputs) -> Tensor<1> {
    let h = new_logp.clone() - inputs.ref_logp.clone();
    let g = inputs.g;
    let (w, l): (Vec<usize>, Vec<usize>) = inputs
        .signal
        .preferences
        .iter()
        .map(|p| (p.group * g + p.winner, p.group * g + p.losers[0]))
        .unzip();
    select(&h, &w) - select(&h, &l)
}

impl<P: AlignPolicy> Objective<P> for BonbonConfig {
    fn signal(
        &mut self,
        scored: &ScoredGroups,
        _target: &mut BayesianTarget,
        _optim: &OptimConfig,
    ) -> crate::Result<Signal> {
        Ok(Signal {
            values: raw_values(scored),
            imitate: best_offsets(scored),
            preferences: best_vs_worst(scored),
            ..Signal::default()
        })
    }

    fn loss(
        &self,
        new_logp: &Tensor<1>,
        inputs: &LossInputs,
    ) -> crate::Result<(Tensor<1>, LossParts)> {
        // the SFT term applies to every group's best list, informative or not
        let best = imitate_rows(inputs.signal, inputs.g);
        let sft = sft_term(new_logp, &best, inputs.list_len);
        let prefs = &inputs.signal.preferences;
        if prefs.is_empty() {
            return Ok((sft * self.alpha, LossParts::default()));
        }
        let n = inputs.g as f32;
        let harmonic: f32 = (1..inputs.g).map(|i| 1.0 / i as f32).sum();
        let margin = (n - 1.0) * harmonic;
        let ipo = (winner_margin(new_logp, inputs) - margin)
            .powi_scalar(2)
            .mean();
        Ok((
            sft * self.alpha + ipo * (1.0 - self.alpha),
            LossParts::default(),
        ))
    }
}
