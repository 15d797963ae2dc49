//! Softmax-DPO (docs/METHOD.md section 6.7).
//!
//! Source: Chen et al., "On Softmax Direct Preference Optimization for Recommendation", 2024,
//! arXiv 2406.09215: `-log sigmoid(-log sum_l exp(beta (h_l - h_w)))` for the best list `w` of a
//! group against `m` worse ones, `h = log pi - log pi_ref`.

use burn::config::Config;
use burn::prelude::*;

use super::{
    bad, ranked, raw_values, LossInputs, LossParts, Method, Objective, Preference, Signal,
};
use crate::align::config::OptimConfig;
use crate::align::loss::{select, softplus};
use crate::align::policy::AlignPolicy;
use crate::align::rollout::ScoredGroups;
use crate::target::BayesianTarget;

/// Settings of S-DPO.
#[derive(Config, Debug, PartialEq)]
pub struct SdpoConfig {
    /// `beta` of the implicit reward.
    #[config(default = 1.0)]
    pub beta: f32,
    /// Worse lists per winner (clamped to `G - 1`).
    #[config(default = 3)]
    pub negatives: usize,
}

impl SdpoConfig {
    pub(crate) fn check(&self) -> crate::Result<()> {
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return bad(
                Method::Sdpo,
                format!("beta must be finite and > 0, got {}", self.beta),
            );
        }
        if self.negatives == 0 {
            return bad(Method::Sdpo, "negatives must be at least 1".into());
        }
        Ok(())
    }
}

impl<P: AlignPolicy> Objective<P> for SdpoConfig {
    fn signal(
        &mut self,
        scored: &ScoredGroups,
        _target: &mut BayesianTarget,
        _optim: &OptimConfig,
    ) -> crate::Result<Signal> {
        let m = self.negatives.clamp(1, scored.g - 1);
        let preferences = (0..scored.groups())
            .filter(|&i| !scored.zero_spread(i))
            .map(|i| {
                let grp = scored.group_rewards(i);
                let order = ranked(grp);
                let best_r = grp[order[0]];
                // the worst lists first; fewer than m worse lists are cycled
                let worse: Vec<usize> = order
                    .iter()
                    .rev()
                    .filter(|&&j| grp[j] < best_r)
                    .take(m)
                    .copied()
                    .collect();
                Preference {
                    group: i,
                    winner: order[0],
                    losers: (0..m).map(|j| worse[j % worse.len()]).collect(),
                }
            })
            .collect();
        Ok(Signal {
            values: raw_values(scored),
            preferences,
            ..Signal::default()
        })
    }

    fn loss(
        &self,
        new_logp: &Tensor<1>,
        inputs: &LossInputs,
    ) -> crate::Result<(Tensor<1>, LossParts)> {
        let prefs = &inputs.signal.preferences;
        if prefs.is_empty() {
            return Ok((new_logp.clone().sum() * 0.0, LossParts::default()));
        }
        let h = new_logp.clone() - inputs.ref_logp.clone();
        let (k, m) = (prefs.len(), prefs[0].losers.len());
        let winners: Vec<usize> = prefs
            .iter()
            .map(|p| p.group * inputs.g + p.winner)
            .collect();
        let losers: Vec<usize> = prefs
            .iter()
            .flat_map(|p| p.losers.iter().map(move |&l| p.group * inputs.g + l))
            .collect();
        let hw = select(&h, &winners).reshape([k, 1]);
        let hl = select(&h, &losers).reshape([k, m]);
        let z = (hl - hw) * self.beta;
        let zmax = z.clone().max_dim(1);
        let lse = (z - zmax.clone()).exp().sum_dim(1).log() + zmax;
        Ok((softplus(lse.reshape([k])).mean(), LossParts::default()))
    }
}
