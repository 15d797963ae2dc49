//! Static BoN alignment, vBoN (docs/METHOD.md section 6.3).
//!
//! Source: Amini et al., "Variational Best-of-N Alignment", 2024, arXiv 2407.06057. The signal
//! is the tie-aware BoN log-ratio under the frozen reference CDF of the M cached reference
//! rewards (the run's target with `tau = 0`), with group-normalised advantages.

use burn::config::Config;
use burn::prelude::*;

use super::grpo::pg_loss;
use super::{bad, LossInputs, LossParts, Method, Objective, Signal};
use crate::align::config::{AlignConfig, OptimConfig};
use crate::align::loss::advantages;
use crate::align::policy::AlignPolicy;
use crate::align::rollout::ScoredGroups;
use crate::target::BayesianTarget;

/// Settings of bon-static.
#[derive(Config, Debug, PartialEq)]
pub struct BonStaticConfig {
    /// `N` of the best-of-N distribution being distilled.
    #[config(default = 8)]
    pub bon_n: usize,
}

impl BonStaticConfig {
    pub(crate) fn check(&self, _run: &AlignConfig) -> crate::Result<()> {
        if self.bon_n == 0 {
            return bad(Method::BonStatic, "bon_n must be at least 1".into());
        }
        Ok(())
    }
}

/// The proxy rewards of every group under `target` (which the caller may have just updated).
pub(crate) fn proxy_signal(
    scored: &ScoredGroups,
    target: &BayesianTarget,
    optim: &OptimConfig,
) -> Signal {
    let mut values = Vec::with_capacity(scored.rewards.len());
    for (i, &pid) in scored.prompt_ids.iter().enumerate() {
        values.extend(target.proxy_rewards(pid as u64, scored.group_rewards(i)));
    }
    Signal {
        advantages: advantages(&values, scored.g, optim.advantage, optim.std_eps),
        values,
        ..Signal::default()
    }
}

impl<P: AlignPolicy> Objective<P> for BonStaticConfig {
    fn signal(
        &mut self,
        scored: &ScoredGroups,
        target: &mut BayesianTarget,
        optim: &OptimConfig,
    ) -> crate::Result<Signal> {
        Ok(proxy_signal(scored, target, optim))
    }

    fn loss(
        &self,
        new_logp: &Tensor<1>,
        inputs: &LossInputs,
    ) -> crate::Result<(Tensor<1>, LossParts)> {
        pg_loss(new_logp, inputs)
    }
}
