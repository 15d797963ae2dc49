//! GRPO on the raw list reward (docs/METHOD.md section 6.1).
//!
//! Source: Shao et al., "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open
//! Language Models", 2024, arXiv 2402.03300: group-normalised advantages of the raw reward and
//! the clipped surrogate of PPO.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::{raw_values, LossInputs, LossParts, Objective, Signal};
use crate::align::config::OptimConfig;
use crate::align::config::RatioLevel;
use crate::align::loss::{advantages, clipped_surrogate, token_surrogate};
use crate::align::policy::AlignPolicy;
use crate::align::rollout::ScoredGroups;
use crate::target::BayesianTarget;

/// GRPO has no settings of its own (the clip ranges and advantage scaling are shared).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GrpoConfig {}

impl GrpoConfig {
    /// GRPO.
    pub fn new() -> Self {
        Self {}
    }
}

/// The clipped surrogate on the signal's advantages: the loss of every policy-gradient method.
pub(crate) fn pg_loss(
    new_logp: &Tensor<1>,
    inputs: &LossInputs,
) -> crate::Result<(Tensor<1>, LossParts)> {
    let adv = &inputs.signal.advantages;
    let (pg, clip) = match (inputs.optim.ratio, inputs.tokens) {
        (RatioLevel::Token | RatioLevel::Gspo, Some(t)) => {
            token_surrogate(t.new, t.old, adv, inputs.optim)?
        }
        _ => clipped_surrogate(new_logp, inputs.old_logp, adv, inputs.optim)?,
    };
    Ok((pg, LossParts { clip }))
}

impl<P: AlignPolicy> Objective<P> for GrpoConfig {
    fn signal(
        &mut self,
        scored: &ScoredGroups,
        _target: &mut BayesianTarget,
        optim: &OptimConfig,
    ) -> crate::Result<Signal> {
        let values = raw_values(scored);
        Ok(Signal {
            advantages: advantages(&values, scored.g, optim.advantage, optim.std_eps),
            values,
            ..Signal::default()
        })
    }

    fn loss(
        &self,
        new_logp: &Tensor<1>,
        inputs: &LossInputs,
    ) -> crate::Result<(Tensor<1>, LossParts)> {
        pg_loss(new_logp, inputs)
    }
}
