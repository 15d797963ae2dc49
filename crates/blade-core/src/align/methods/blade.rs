//! BLADE: the BoN log-ratio under a per-prompt Bayesian posterior (docs/METHOD.md sections 3
//! and 6.4).
//!
//! Source: Chen et al., "Beyond Static Best-of-N: Bayesian List-wise Alignment for LLM-based
//! Recommendation", SIGIR 2026, arXiv 2605.04559. Each group is first observed into its
//! prompt's posterior (prior: the M cached reference rewards with concentration `kappa`;
//! evidence: the policy's rollouts with forgetting `gamma`), then scored by the proxy reward
//! under that posterior, with group-normalised advantages.

use burn::config::Config;
use burn::prelude::*;

use super::grpo::pg_loss;
use super::{bad, LossInputs, LossParts, Method, Objective, Signal};
use crate::align::config::{AlignConfig, OptimConfig};
use crate::align::loss::advantages;
use crate::align::policy::AlignPolicy;
use crate::align::rollout::ScoredGroups;
use crate::target::{BayesianTarget, Concentration, TargetConfig};

/// Settings of BLADE.
#[derive(Config, Debug, PartialEq)]
pub struct BladeConfig {
    /// `N` of the best-of-N distribution being distilled.
    #[config(default = 8)]
    pub bon_n: usize,
    /// The target mixing weight `tau` in `[0, 1]` (ignored when `kappa`, `tau_auto` or
    /// `tau_spread` is set).
    #[config(default = 0.3)]
    pub tau: f64,
    /// Choose each prompt's `tau` by empirical Bayes (METHOD.md section 3, tau auto).
    #[config(default = false)]
    pub tau_auto: bool,
    /// Choose each prompt's `tau` at each visit to keep this share, in `(0, 1]`, of the proxy
    /// spread the policy's own rollouts give (METHOD.md section 3, tau spread).
    #[config(default = "None")]
    pub tau_spread: Option<f64>,
    /// A fixed prior concentration instead of `tau`.
    #[config(default = "None")]
    pub kappa: Option<f64>,
    /// Forgetting factor of old rollout evidence, in `(0, 1]`.
    #[config(default = 0.9)]
    pub gamma: f64,
}

impl BladeConfig {
    pub(crate) fn target_config(&self) -> TargetConfig {
        TargetConfig {
            concentration: match self.kappa {
                Some(k) => Concentration::Kappa(k),
                None if self.tau_auto => Concentration::Auto,
                None => match self.tau_spread {
                    Some(share) => Concentration::Spread(share),
                    None => Concentration::Tau(self.tau),
                },
            },
            gamma: self.gamma,
            n: self.bon_n,
            ..TargetConfig::default()
        }
    }

    pub(crate) fn check(&self, _run: &AlignConfig) -> crate::Result<()> {
        if self.bon_n == 0 {
            return bad(Method::Blade, "bon_n must be at least 1".into());
        }
        let rules = [
            self.kappa.map(|_| "kappa"),
            self.tau_auto.then_some("tau auto"),
            self.tau_spread.map(|_| "tau spread"),
        ];
        let set: Vec<&str> = rules.into_iter().flatten().collect();
        if set.len() > 1 {
            return bad(
                Method::Blade,
                format!(
                    "set one of kappa, tau auto and tau spread, not {} (each chooses the prior \
                     strength)",
                    set.join(" and ")
                ),
            );
        }
        self.target_config()
            .validate()
            .or_else(|e| bad(Method::Blade, e.to_string()))
    }
}

impl<P: AlignPolicy> Objective<P> for BladeConfig {
    fn signal(
        &mut self,
        scored: &ScoredGroups,
        target: &mut BayesianTarget,
        optim: &OptimConfig,
    ) -> crate::Result<Signal> {
        // each group is observed, then scored, before the next group of the batch (a prompt
        // drawn twice in one batch scores its first group before its second is observed)
        let mut values = Vec::with_capacity(scored.rewards.len());
        for (i, &pid) in scored.prompt_ids.iter().enumerate() {
            target.observe(pid as u64, scored.group_rewards(i))?;
            values.extend(target.proxy_rewards(pid as u64, scored.group_rewards(i)));
        }
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
