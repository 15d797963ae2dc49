//! REINFORCE with a leave-one-out baseline (docs/METHOD.md section 6.2).
//!
//! Sources: Ahmadian et al., "Back to Basics: Revisiting REINFORCE Style Optimization for
//! Learning from Human Feedback in LLMs", 2024, arXiv 2402.14740; Kool et al., "Buy 4 REINFORCE
//! Samples, Get a Baseline for Free!", 2019. Each list's baseline is the mean reward of the
//! other `G - 1` lists of its group: `A_i = r_i - mean_{j != i} r_j`, with no std scaling. The
//! same clipped surrogate as GRPO makes the inner epochs safe.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::grpo::pg_loss;
use super::{raw_values, LossInputs, LossParts, Objective, Signal};
use crate::align::config::OptimConfig;
use crate::align::policy::AlignPolicy;
use crate::align::rollout::ScoredGroups;
use crate::target::BayesianTarget;

/// RLOO has no settings of its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RlooConfig {}

impl RlooConfig {
    /// RLOO.
    pub fn new() -> Self {
        Self {}
    }
}

/// Leave-one-out advantages `r_i - mean_{j != i} r_j` in groups of `g >= 2`.
pub fn leave_one_out(values: &[f64], g: usize) -> Vec<f32> {
    values
        .chunks(g)
        .flat_map(|grp| {
            let sum: f64 = grp.iter().sum();
            let others = (grp.len() - 1).max(1) as f64;
            grp.iter().map(move |&x| (x - (sum - x) / others) as f32)
        })
        .collect()
}

impl<P: AlignPolicy> Objective<P> for RlooConfig {
    fn signal(
        &mut self,
        scored: &ScoredGroups,
        _target: &mut BayesianTarget,
        _optim: &OptimConfig,
    ) -> crate::Result<Signal> {
        let values = raw_values(scored);
        Ok(Signal {
            advantages: leave_one_out(&values, scored.g),
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

#[cfg(test)]
mod tests {
    #[test]
    fn baseline_leaves_the_list_out() {
        let a = super::leave_one_out(&[1.0, 2.0, 6.0, 4.0, 4.0, 4.0], 3);
        // 1 - (2 + 6)/2 = -3; 2 - 3.5 = -1.5; 6 - 1.5 = 4.5
        assert_eq!(a, vec![-3.0, -1.5, 4.5, 0.0, 0.0, 0.0]);
    }
}
