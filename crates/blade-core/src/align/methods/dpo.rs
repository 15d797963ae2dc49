//! DPO on each group's best and worst list (docs/METHOD.md section 6.8).
//!
//! Source: Rafailov et al., "Direct Preference Optimization: Your Language Model is Secretly a
//! Reward Model", 2023, arXiv 2305.18290: `-log sigmoid(beta (h_w - h_l))` with the implicit
//! reward `h = log pi - log pi_ref`, on the (best, worst) pair of every group whose rewards are
//! not all equal.

use burn::config::Config;
use burn::prelude::*;

use super::bonbon::{best_vs_worst, winner_margin};
use super::{bad, raw_values, LossInputs, LossParts, Method, Objective, Signal};
use crate::align::config::OptimConfig;
use crate::align::loss::softplus;
use crate::align::policy::AlignPolicy;
use crate::align::rollout::ScoredGroups;
use crate::target::BayesianTarget;

/// Settings of DPO.
#[derive(Config, Debug, PartialEq)]
pub struct DpoConfig {
    /// `beta` of the implicit reward.
    #[config(default = 0.1)]
    pub beta: f32,
}

impl DpoConfig {
    pub(crate) fn check(&self) -> crate::Result<()> {
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return bad(
                Method::Dpo,
                format!("beta must be finite and > 0, got {}", self.beta),
            );
        }
        Ok(())
    }
}

impl<P: AlignPolicy> Objective<P> for DpoConfig {
    fn signal(
        &mut self,
        scored: &ScoredGroups,
        _target: &mut BayesianTarget,
        _optim: &OptimConfig,
    ) -> crate::Result<Signal> {
        Ok(Signal {
            values: raw_values(scored),
            preferences: best_vs_worst(scored),
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
        // -log sigmoid(x) = softplus(-x)
        let x = winner_margin(new_logp, inputs) * self.beta;
        Ok((softplus(x.neg()).mean(), LossParts::default()))
    }
}
