//! BOND with a moving anchor (docs/METHOD.md section 6.5).
//!
//! Source: Sessa et al., "BOND: Aligning LLMs with Best-of-N Distillation", 2024, arXiv
//! 2407.14622. The Jeffreys objective mixes `(1 - b)` forward KL (SFT on each group's best list,
//! per item) with `b` backward KL (the clipped surrogate on the BoN log-ratio estimated from the
//! group's own rewards), and the KL penalty is measured against an anchor that follows the policy
//! as an exponential moving average (J-BOND): `anchor <- rate * anchor + (1 - rate) * policy`.

use std::path::Path;

use burn::config::Config;
use burn::prelude::*;

use super::grpo::pg_loss;
use super::{bad, best_offsets, imitate_rows, LossInputs, LossParts, Method, Objective, Signal};
use crate::align::config::OptimConfig;
use crate::align::loss::{advantages, sft_term};
use crate::align::policy::AlignPolicy;
use crate::align::rollout::ScoredGroups;
use crate::error::CoreError;
use crate::sft::save_model_atomic;
use crate::target::BayesianTarget;

/// Settings of BOND.
#[derive(Config, Debug, PartialEq)]
pub struct BondConfig {
    /// `N` of the best-of-N distribution being distilled.
    #[config(default = 8)]
    pub bon_n: usize,
    /// Jeffreys mix `b`: `(1 - b)` forward KL + `b` backward KL.
    #[config(default = 0.5)]
    pub mix: f32,
    /// EMA rate of the moving anchor, in `[0, 1)`.
    #[config(default = 0.9)]
    pub anchor_ema: f64,
}

impl BondConfig {
    pub(crate) fn check(&self) -> crate::Result<()> {
        if self.bon_n == 0 {
            return bad(Method::Bond, "bon_n must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.mix) {
            return bad(
                Method::Bond,
                format!("mix must be in [0, 1], got {}", self.mix),
            );
        }
        if !(0.0..1.0).contains(&self.anchor_ema) {
            return bad(
                Method::Bond,
                format!("anchor_ema must be in [0, 1), got {}", self.anchor_ema),
            );
        }
        Ok(())
    }
}

/// The BoN log density ratio from a group's own rewards (BOND's quantile estimate): the
/// tie-aware `log((p_le^N - p_lt^N)/(p_le - p_lt))` with the group's empirical CDF, computed as
/// the division-free sum `log sum_i p_le^i p_lt^(N-1-i)` (docs/METHOD.md section 2).
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

/// BOND's state: its settings and the moving anchor.
pub(crate) struct Bond<P> {
    config: BondConfig,
    anchor: P,
}

impl<P> Bond<P> {
    pub(crate) fn new(config: BondConfig, reference: P) -> Self {
        Self {
            config,
            anchor: reference,
        }
    }
}

const ANCHOR_FILE: &str = "anchor.bpk";

impl<P: AlignPolicy> Objective<P> for Bond<P> {
    fn signal(
        &mut self,
        scored: &ScoredGroups,
        _target: &mut BayesianTarget,
        optim: &OptimConfig,
    ) -> crate::Result<Signal> {
        let values = group_bon_log_ratio(&scored.rewards, scored.g, self.config.bon_n);
        Ok(Signal {
            advantages: advantages(&values, scored.g, optim.advantage, optim.std_eps),
            values,
            imitate: best_offsets(scored),
            ..Signal::default()
        })
    }

    fn loss(
        &self,
        new_logp: &Tensor<1>,
        inputs: &LossInputs,
    ) -> crate::Result<(Tensor<1>, LossParts)> {
        let (pg, parts) = pg_loss(new_logp, inputs)?;
        let best = imitate_rows(inputs.signal, inputs.g);
        let sft = sft_term(new_logp, &best, inputs.list_len);
        Ok((pg * self.config.mix + sft * (1.0 - self.config.mix), parts))
    }

    fn kl_reference<'a>(&'a self, _reference: &'a P) -> &'a P {
        &self.anchor
    }

    fn after_update(&mut self, policy: &P) {
        self.anchor = ema(self.anchor.clone(), policy, self.config.anchor_ema);
    }

    fn save_state(&self, dir: &Path) -> crate::Result<()> {
        save_model_atomic(&self.anchor, &dir.join(ANCHOR_FILE))
    }

    fn load_state(&mut self, dir: &Path) -> crate::Result<()> {
        let path = dir.join(ANCHOR_FILE);
        if !path.exists() {
            return Err(CoreError::file(
                &path,
                "BOND's anchor is missing from the checkpoint",
            ));
        }
        self.anchor = self
            .anchor
            .clone()
            .try_load_file(&path)
            .map_err(|e| CoreError::file(&path, e))?;
        Ok(())
    }
}

/// Collects every float parameter's values, in visiting order.
struct Collect(Vec<TensorData>);

impl burn::module::ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        self.0.push(param.val().into_data());
    }
}

/// Blends every float parameter with the collected values: `rate * own + (1 - rate) * other`.
struct Blend {
    other: std::vec::IntoIter<TensorData>,
    rate: f64,
}

impl burn::module::ModuleMapper for Blend {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        let Some(other) = self.other.next() else {
            return param;
        };
        let rate = self.rate;
        param.map(|t| {
            let o = Tensor::<D>::from_data(other, &t.device());
            t * rate + o * (1.0 - rate)
        })
    }
}

/// `anchor <- rate * anchor + (1 - rate) * policy`, parameter by parameter (BOND's moving
/// anchor). Both modules share one architecture, so their parameters visit in the same order.
pub fn ema<M: Module>(anchor: M, policy: &M, rate: f64) -> M {
    let mut collect = Collect(Vec::new());
    policy.valid().visit(&mut collect);
    anchor.map(&mut Blend {
        other: collect.0.into_iter(),
        rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
