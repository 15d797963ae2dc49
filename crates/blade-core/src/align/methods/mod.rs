//! The alignment methods, one file each (docs/METHOD.md section 6).
//!
//! A method is an [`Objective`]: it turns a scored rollout batch into its training [`Signal`]
//! (advantages, the lists to imitate, preference pairs) and builds its loss term from that signal
//! alone; it owns its state (BLADE's use of the posterior, BOND's EMA anchor). Its settings are one
//! variant of the tagged [`MethodConfig`]. Adding a method is one file here and one variant in
//! [`Method`] and [`MethodConfig`]; the trainer does not change.

mod blade;
mod bon_static;
mod bonbon;
mod bond;
mod dpo;
mod grpo;
mod rloo;
mod sdpo;

use std::path::Path;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

pub use blade::BladeConfig;
pub use bon_static::BonStaticConfig;
pub use bonbon::BonbonConfig;
pub use bond::{ema, BondConfig};
pub use dpo::DpoConfig;
pub use grpo::GrpoConfig;
pub use rloo::RlooConfig;
pub use sdpo::SdpoConfig;

use super::config::{AlignConfig, OptimConfig};
use super::policy::AlignPolicy;
use super::rollout::ScoredGroups;
use crate::error::CoreError;
use crate::target::{BayesianTarget, TargetConfig};

/// An alignment method's name (CLI, tables, run folders).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// GRPO on the raw list reward.
    Grpo,
    /// REINFORCE with a leave-one-out baseline.
    Rloo,
    /// Static BoN alignment (vBoN): the proxy reward under the frozen reference CDF.
    BonStatic,
    /// BLADE: the proxy reward under the per-prompt Bayesian posterior.
    Blade,
    /// BOND's Jeffreys objective with a moving (EMA) anchor.
    Bond,
    /// BoNBoN: SFT on the best list plus IPO(best vs worst).
    Bonbon,
    /// Softmax-DPO: the best list against several worse ones in one softmax.
    Sdpo,
    /// DPO: the best list against the worst.
    Dpo,
}

impl Method {
    /// Every trainable method, in table order.
    pub const ALL: [Method; 8] = [
        Method::Grpo,
        Method::Rloo,
        Method::BonStatic,
        Method::Bond,
        Method::Bonbon,
        Method::Sdpo,
        Method::Dpo,
        Method::Blade,
    ];

    /// The CLI / table name.
    pub fn name(self) -> &'static str {
        match self {
            Method::Grpo => "grpo",
            Method::Rloo => "rloo",
            Method::BonStatic => "bon-static",
            Method::Blade => "blade",
            Method::Bond => "bond",
            Method::Bonbon => "bonbon",
            Method::Sdpo => "sdpo",
            Method::Dpo => "dpo",
        }
    }

    /// The method with its default settings.
    pub fn default_config(self) -> MethodConfig {
        match self {
            Method::Grpo => MethodConfig::Grpo(GrpoConfig::new()),
            Method::Rloo => MethodConfig::Rloo(RlooConfig::new()),
            Method::BonStatic => MethodConfig::BonStatic(BonStaticConfig::new()),
            Method::Blade => MethodConfig::Blade(BladeConfig::new()),
            Method::Bond => MethodConfig::Bond(BondConfig::new()),
            Method::Bonbon => MethodConfig::Bonbon(BonbonConfig::new()),
            Method::Sdpo => MethodConfig::Sdpo(SdpoConfig::new()),
            Method::Dpo => MethodConfig::Dpo(DpoConfig::new()),
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
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

/// A method and its own settings, tagged by `method` in `align.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum MethodConfig {
    /// GRPO.
    Grpo(GrpoConfig),
    /// RLOO.
    Rloo(RlooConfig),
    /// Static BoN alignment.
    BonStatic(BonStaticConfig),
    /// BLADE.
    Blade(BladeConfig),
    /// BOND.
    Bond(BondConfig),
    /// BoNBoN.
    Bonbon(BonbonConfig),
    /// S-DPO.
    Sdpo(SdpoConfig),
    /// DPO.
    Dpo(DpoConfig),
}

impl MethodConfig {
    /// The method's name.
    pub fn method(&self) -> Method {
        match self {
            MethodConfig::Grpo(_) => Method::Grpo,
            MethodConfig::Rloo(_) => Method::Rloo,
            MethodConfig::BonStatic(_) => Method::BonStatic,
            MethodConfig::Blade(_) => Method::Blade,
            MethodConfig::Bond(_) => Method::Bond,
            MethodConfig::Bonbon(_) => Method::Bonbon,
            MethodConfig::Sdpo(_) => Method::Sdpo,
            MethodConfig::Dpo(_) => Method::Dpo,
        }
    }

    /// Checks the method's settings against the run's.
    pub fn check(&self, run: &AlignConfig) -> crate::Result<()> {
        match self {
            MethodConfig::Grpo(_) | MethodConfig::Rloo(_) => Ok(()),
            MethodConfig::BonStatic(c) => c.check(run),
            MethodConfig::Blade(c) => c.check(run),
            MethodConfig::Bond(c) => c.check(),
            MethodConfig::Bonbon(c) => c.check(),
            MethodConfig::Sdpo(c) => c.check(),
            MethodConfig::Dpo(c) => c.check(),
        }
    }

    /// The Bayesian target the run keeps: BLADE's posterior, bon-static's frozen reference CDF,
    /// and for every other method the frozen reference CDF too, kept for the diagnostics
    /// (saturated shares, ceilings); only BLADE observes rollouts.
    pub fn target_config(&self) -> TargetConfig {
        match self {
            MethodConfig::Blade(c) => c.target_config(),
            MethodConfig::BonStatic(c) => TargetConfig::static_bon(c.bon_n),
            _ => TargetConfig::static_bon(8),
        }
    }

    /// The method's objective, with its state, for a run whose frozen reference is `reference`.
    pub fn objective<P: AlignPolicy + 'static>(&self, reference: &P) -> Box<dyn Objective<P>> {
        match self {
            MethodConfig::Grpo(c) => Box::new(c.clone()),
            MethodConfig::Rloo(c) => Box::new(c.clone()),
            MethodConfig::BonStatic(c) => Box::new(c.clone()),
            MethodConfig::Blade(c) => Box::new(c.clone()),
            MethodConfig::Bond(c) => Box::new(bond::Bond::new(c.clone(), reference.clone())),
            MethodConfig::Bonbon(c) => Box::new(c.clone()),
            MethodConfig::Sdpo(c) => Box::new(c.clone()),
            MethodConfig::Dpo(c) => Box::new(c.clone()),
        }
    }
}

/// A preference inside one group: list offsets (0..G) of a winner and its losers.
#[derive(Debug, Clone, PartialEq)]
pub struct Preference {
    /// The group.
    pub group: usize,
    /// The preferred list's offset in the group.
    pub winner: usize,
    /// The dispreferred lists' offsets.
    pub losers: Vec<usize>,
}

/// What a method trains on, computed from one scored batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signal {
    /// Per list, the method's signal (the proxy reward of the BoN methods, the raw reward of the
    /// others): what `proxy` and `proxy_std` in the curves report.
    pub values: Vec<f64>,
    /// Per list, the advantage (policy-gradient methods; empty otherwise).
    pub advantages: Vec<f32>,
    /// Per group, the offset of the list an SFT term imitates (BOND, BoNBoN; empty otherwise).
    pub imitate: Vec<usize>,
    /// Preferences (BoNBoN, S-DPO, DPO; empty otherwise).
    pub preferences: Vec<Preference>,
}

impl Signal {
    /// Keeps the groups whose `keep` flag is set (`g` lists each), renumbering preferences.
    pub fn retain_groups(&mut self, keep: &[bool], g: usize) {
        super::rollout::retain_rows(&mut self.values, keep, g);
        if !self.advantages.is_empty() {
            super::rollout::retain_rows(&mut self.advantages, keep, g);
        }
        if !self.imitate.is_empty() {
            super::rollout::retain_rows(&mut self.imitate, keep, 1);
        }
        let new_index: Vec<Option<usize>> = keep
            .iter()
            .scan(0, |n, &k| {
                let i = k.then_some(*n);
                *n += usize::from(k);
                Some(i)
            })
            .collect();
        self.preferences.retain_mut(|p| match new_index[p.group] {
            Some(i) => {
                p.group = i;
                true
            }
            None => false,
        });
    }

    /// Appends the signal of further groups; `groups` is how many groups `self` holds.
    pub fn append(&mut self, mut other: Signal, groups: usize) {
        self.values.append(&mut other.values);
        self.advantages.append(&mut other.advantages);
        self.imitate.append(&mut other.imitate);
        for mut p in other.preferences {
            p.group += groups;
            self.preferences.push(p);
        }
    }
}

/// Everything a loss term may read besides the new log-probabilities.
pub struct LossInputs<'a> {
    /// Lists per group.
    pub g: usize,
    /// List length `K` (SFT terms are per item).
    pub list_len: usize,
    /// Log-probabilities under the sampling policy.
    pub old_logp: &'a [f32],
    /// Log-probabilities under the method's KL reference (frozen SFT, or BOND's anchor).
    pub ref_logp: &'a Tensor<1>,
    /// The method's signal for these lists.
    pub signal: &'a Signal,
    /// The shared optimisation settings (clip ranges).
    pub optim: &'a OptimConfig,
    /// Per-token log-probabilities, now and at the start of the step, when the ratio is taken
    /// per token or GSPO's way (`optim.ratio`); `None` for list-level ratios.
    pub tokens: Option<TokenInputs<'a>>,
}

/// The per-token log-probabilities a token-level surrogate needs.
#[derive(Clone, Copy)]
pub struct TokenInputs<'a> {
    /// The policy's, with gradients.
    pub new: &'a crate::policy::TokenLogProbs,
    /// The sampling policy's (detached), same shape.
    pub old: &'a Tensor<2>,
}

/// Scalars a method's loss term reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct LossParts {
    /// Clip statistics of the surrogate (policy-gradient methods).
    pub clip: super::loss::ClipStats,
}

/// One alignment method (docs/METHOD.md section 6).
pub trait Objective<P: AlignPolicy> {
    /// Turns scored groups into the method's signal; `target` is the run's Bayesian target
    /// (BLADE observes the groups into it first).
    fn signal(
        &mut self,
        scored: &ScoredGroups,
        target: &mut BayesianTarget,
        optim: &OptimConfig,
    ) -> crate::Result<Signal>;

    /// The method's loss term from the policy's differentiable list log-probs
    /// (`[groups * g]`, the batch's order). The trainer adds the KL and entropy terms.
    fn loss(
        &self,
        new_logp: &Tensor<1>,
        inputs: &LossInputs,
    ) -> crate::Result<(Tensor<1>, LossParts)>;

    /// The policy the KL penalty and implicit rewards are measured against.
    fn kl_reference<'a>(&'a self, reference: &'a P) -> &'a P {
        reference
    }

    /// Called after each rollout batch's optimiser steps (BOND moves its anchor).
    fn after_update(&mut self, _policy: &P) {}

    /// Writes the method's state into a checkpoint folder.
    fn save_state(&self, _dir: &Path) -> crate::Result<()> {
        Ok(())
    }

    /// Restores the method's state from a checkpoint folder.
    fn load_state(&mut self, _dir: &Path) -> crate::Result<()> {
        Ok(())
    }
}

/// Offsets of group `rewards` ordered best first (reward desc, then offset asc).
pub(crate) fn ranked(rewards: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..rewards.len()).collect();
    idx.sort_by(|&a, &b| rewards[b].total_cmp(&rewards[a]).then(a.cmp(&b)));
    idx
}

/// Per group, the offset of the best list.
pub(crate) fn best_offsets(scored: &ScoredGroups) -> Vec<usize> {
    (0..scored.groups())
        .map(|i| ranked(scored.group_rewards(i))[0])
        .collect()
}

/// Global list indices of each group's imitated list.
pub(crate) fn imitate_rows(signal: &Signal, g: usize) -> Vec<usize> {
    signal
        .imitate
        .iter()
        .enumerate()
        .map(|(i, &o)| i * g + o)
        .collect()
}

/// The raw rewards as the signal values.
pub(crate) fn raw_values(scored: &ScoredGroups) -> Vec<f64> {
    scored.rewards.iter().map(|&r| f64::from(r)).collect()
}

/// An out-of-range method setting.
pub(crate) fn bad(method: Method, what: String) -> crate::Result<()> {
    Err(CoreError::Config(format!("{}: {what}", method.name())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_round_trip() {
        for m in Method::ALL {
            assert_eq!(m.name().parse::<Method>(), Ok(m));
            assert_eq!(m.default_config().method(), m);
        }
        assert!("ppo"
            .parse::<Method>()
            .unwrap_err()
            .contains("expected sft"));
    }

    #[test]
    fn method_configs_are_tagged() {
        let c = MethodConfig::Blade(BladeConfig::new().with_tau(0.5));
        let text = serde_json::to_string(&c).unwrap();
        assert!(
            text.contains("\"method\":\"blade\"") && text.contains("\"tau\":0.5"),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<MethodConfig>(&text).unwrap(), c);
        let grpo = serde_json::to_string(&Method::Grpo.default_config()).unwrap();
        assert_eq!(grpo, r#"{"method":"grpo"}"#);
    }

    #[test]
    fn signals_keep_and_renumber_groups() {
        let mut s = Signal {
            values: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            advantages: vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
            imitate: vec![1, 0, 1],
            preferences: vec![
                Preference {
                    group: 0,
                    winner: 1,
                    losers: vec![0],
                },
                Preference {
                    group: 2,
                    winner: 1,
                    losers: vec![0],
                },
            ],
        };
        s.retain_groups(&[false, true, true], 2);
        assert_eq!(s.values, vec![3.0, 4.0, 5.0, 6.0]);
        assert_eq!(s.imitate, vec![0, 1]);
        assert_eq!(s.preferences.len(), 1);
        assert_eq!(s.preferences[0].group, 1);
    }
}
