//! The per-prompt Bayesian target of BLADE (METHOD.md section 3).
//!
//! Static best-of-N alignment (vBoN) scores a rollout `y` by the empirical CDF `F_ref` of `M`
//! cached reference rewards. BLADE (Chen et al., "Beyond Static Best-of-N: Bayesian List-wise
//! Alignment for LLM-based Recommendation", SIGIR 2026, arXiv 2605.04559) replaces `F_ref` by a
//! posterior refreshed with the policy's own rollout rewards. The project's definition
//! (METHOD.md section 3) is a Dirichlet-process posterior per prompt: prior `F_ref` with
//! concentration `kappa`, evidence `(r_g, w_g)` with total weight `W`, and
//!
//! ```text
//! F_post(t) = ( kappa * F_ref(t) + sum_g w_g 1[r_g <= t] ) / ( kappa + W )
//! R(y)      = log( (p_le^N - p_lt^N) / (p_le - p_lt) )      (tie-aware, METHOD.md section 2)
//! ```
//!
//! Conventions this module adds where METHOD.md leaves a case open:
//! - A prompt with an **empty reference** (or never seen) has no prior mass: with a finite
//!   concentration its posterior is the evidence's weighted empirical CDF. When there is no
//!   information at all (no reference and no evidence, or `tau = 0` with no reference) every CDF
//!   value is the neutral `0.5`; the proxy reward is then the same for every reward, so the
//!   target contributes no advantage for that prompt.
//! - With `kappa = 0` and no evidence yet (also `Tau` mode before the first group), the
//!   posterior is `F_ref`, the limit of the formula as the evidence weight goes to zero.
//! - A NaN threshold compares false with everything: its CDF values are 0 (or the neutral 0.5).

use std::collections::BTreeMap;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::align::loss::mean_std;
use crate::error::{CoreError, Result};

/// Evidence whose weight has decayed below this is dropped, bounding memory per prompt.
const MIN_WEIGHT: f64 = 1e-6;
/// CDF value used when a prompt carries no information at all (see the module docs).
const NEUTRAL_CDF: f64 = 0.5;

/// How the prior's concentration (pseudo-count) `kappa` is set (METHOD.md section 3).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Concentration {
    /// A fixed pseudo-count `kappa >= 0`; the mixing weight `tau = W / (kappa + W)` grows with
    /// the evidence.
    Kappa(f64),
    /// A target mixing weight `tau` in `[0, 1]`: `kappa = W (1 - tau) / tau` for the prompt's
    /// current evidence weight `W`. `tau = 0` means `kappa = infinity`, i.e. exactly the static
    /// reference CDF (vBoN); `tau = 1` ignores the reference once evidence exists.
    Tau(f64),
    /// Empirical Bayes (METHOD.md section 3, "tau auto"): each prompt's `tau` is the value of
    /// [`AUTO_TAU_GRID`] under which the posterior predictive gave the prompt's past groups the
    /// highest likelihood (decayed by `gamma`, shrunk towards the mean over prompts). `tau = 0`
    /// until a prompt's evidence has predicted anything.
    Auto,
    /// Signal keeping (METHOD.md section 3, "tau spread"): at each visit the prompt's `tau` is
    /// the smallest value of [`AUTO_TAU_GRID`] whose proxy rewards on the group just observed
    /// spread (standard deviation) at least this share, in `(0, 1]`, of what `tau = 1` (the
    /// policy's own evidence alone) gives them. The static target is kept while it
    /// discriminates the group nearly as well as the evidence can, and the target moves only as
    /// far as it must when the static target saturates.
    Spread(f64),
}

/// The default share of [`Concentration::Spread`] (`--tau spread`): the target keeps at least
/// half of the spread the policy's own rollouts could give.
pub const DEFAULT_SPREAD_SHARE: f64 = 0.5;

/// Candidate mixing weights of [`Concentration::Auto`]: 0, 0.05, ..., 1.
pub const AUTO_TAU_GRID: [f64; 21] = {
    let mut grid = [0.0; 21];
    let mut i = 0;
    while i < 21 {
        grid[i] = i as f64 / 20.0;
        i += 1;
    }
    grid
};
/// Pseudo-count per reward bin of each component's predictive in METHOD.md section 3 (tau auto).
const AUTO_PSEUDO_COUNT: f64 = 1.0;

/// Settings of a [`BayesianTarget`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TargetConfig {
    /// How the prior's concentration is set.
    pub concentration: Concentration,
    /// Forgetting factor in `(0, 1]` applied to old evidence when a prompt is visited again.
    pub gamma: f64,
    /// `N` of best-of-N.
    pub n: usize,
    /// Proxy rewards are clipped below at this (finite, negative) value so `log 0` never occurs.
    pub log_floor: f64,
}

impl Default for TargetConfig {
    /// BLADE with `tau = 0.3` (the paper's reported sweet spot), no forgetting, `N = 16`.
    fn default() -> Self {
        Self::blade(0.3)
    }
}

impl TargetConfig {
    /// BLADE with a target mixing weight `tau`, `gamma = 1`, `N = 16`, floor `-20`.
    pub fn blade(tau: f64) -> Self {
        Self {
            concentration: Concentration::Tau(tau),
            gamma: 1.0,
            n: 16,
            log_floor: -20.0,
        }
    }

    /// Static best-of-N alignment (vBoN, the `bon-static` baseline): `tau = 0`.
    pub fn static_bon(n: usize) -> Self {
        Self {
            n,
            ..Self::blade(0.0)
        }
    }

    /// Checks every setting is in range.
    pub fn validate(&self) -> Result<()> {
        match self.concentration {
            Concentration::Kappa(k) if !(k.is_finite() && k >= 0.0) => {
                return Err(CoreError::Config(format!(
                    "target kappa must be finite and >= 0, got {k}"
                )))
            }
            Concentration::Tau(t) if !(0.0..=1.0).contains(&t) => {
                return Err(CoreError::Config(format!(
                    "target tau must be in [0, 1], got {t}"
                )))
            }
            Concentration::Spread(s) if !(s > 0.0 && s <= 1.0) => {
                return Err(CoreError::Config(format!(
                    "target spread share must be in (0, 1], got {s}"
                )))
            }
            _ => {}
        }
        if !(self.gamma > 0.0 && self.gamma <= 1.0) {
            return Err(CoreError::Config(format!(
                "target gamma must be in (0, 1], got {}",
                self.gamma
            )));
        }
        if self.n == 0 {
            return Err(CoreError::Config(
                "target n (best-of-N) must be >= 1".into(),
            ));
        }
        if !(self.log_floor.is_finite() && self.log_floor < 0.0) {
            return Err(CoreError::Config(format!(
                "target log_floor must be finite and negative, got {}",
                self.log_floor
            )));
        }
        Ok(())
    }
}

/// One prompt's posterior: the reference prior and the decayed rollout evidence.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PromptPosterior {
    /// Sorted cached reference rewards (the prior `F_ref`).
    reference: Vec<f32>,
    /// `(reward, weight)`, sorted by reward, one entry per distinct reward.
    evidence: Vec<(f32, f64)>,
    /// `W`, the sum of the evidence weights.
    total_weight: f64,
    /// How many non-empty groups were observed.
    visits: u64,
    /// [`Concentration::Auto`]: per candidate of [`AUTO_TAU_GRID`], the decayed log predictive
    /// likelihood of the prompt's groups observed after the first (empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    auto_loglik: Vec<f64>,
    /// [`Concentration::Spread`]: the `tau` chosen at the latest visit whose group had more than
    /// one distinct reward (`None` before; then `tau = 0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spread_tau: Option<f64>,
}

impl PromptPosterior {
    /// `F_ref(t)` (`<=` or `<`), `None` when the reference is empty.
    fn reference_cdf(&self, t: f32, strict: bool) -> Option<f64> {
        if self.reference.is_empty() {
            return None;
        }
        let count = if strict {
            self.reference.partition_point(|&x| x < t)
        } else {
            self.reference.partition_point(|&x| x <= t)
        };
        Some(count as f64 / self.reference.len() as f64)
    }

    /// The posterior CDF at mixing weight `tau` (see [`BayesianTarget::cdf_le`]); `None` when
    /// the prompt carries no information at all (no reference and `tau = 0`, or no evidence).
    fn cdf_at(&self, t: f32, strict: bool, tau: f64) -> Option<f64> {
        let prior = self.reference_cdf(t, strict);
        match prior {
            Some(f) if tau <= 0.0 => Some(f),
            None if tau <= 0.0 => None,
            _ => {
                let ev = self.evidence_mass(t, strict) / self.total_weight;
                Some((1.0 - tau) * prior.unwrap_or(0.0) + tau * ev)
            }
        }
    }

    /// [`Concentration::Spread`]'s choice for a group just observed (METHOD.md section 3, tau
    /// spread): the smallest `tau` of [`AUTO_TAU_GRID`] whose proxy rewards on `rewards` have a
    /// (population) standard deviation, the group std the trainer logs as `proxy_std`, of at
    /// least `share` times that at `tau = 1`. `None` when the group's
    /// rewards are all equal (every `tau` gives them one value: nothing to choose from).
    fn spread_choice(&self, rewards: &[f32], share: f64, config: &TargetConfig) -> Option<f64> {
        if self.total_weight <= 0.0 || rewards.iter().all(|&r| r == rewards[0]) {
            return None;
        }
        let spread = |tau: f64| {
            let values: Vec<f64> = rewards
                .iter()
                .map(|&r| {
                    let (le, lt) = (self.cdf_at(r, false, tau), self.cdf_at(r, true, tau));
                    proxy_value(le, lt, config)
                })
                .collect();
            mean_std(&values).1
        };
        let goal = share * spread(1.0);
        AUTO_TAU_GRID
            .iter()
            .copied()
            .find(|&tau| spread(tau) >= goal - 1e-12)
    }

    /// `sum_g w_g 1[r_g <= t]` (or `<`).
    fn evidence_mass(&self, t: f32, strict: bool) -> f64 {
        self.evidence
            .iter()
            .take_while(|(r, _)| if strict { *r < t } else { *r <= t })
            .map(|(_, w)| w)
            .sum()
    }

    /// The log predictive likelihood of `rewards` under the mixture `(1 - tau) P_ref +
    /// tau P_ev` for every candidate `tau` of [`AUTO_TAU_GRID`] (METHOD.md section 3, tau auto).
    /// Rewards are binned at the prompt's distinct reference values `v_1 < ... < v_k`
    /// (`(-inf, v_1), [v_1, v_2), ..., [v_k, inf)`), and each component's bin probabilities are
    /// its counts (reference copies; evidence weights) with one pseudo-count per bin.
    fn auto_group_loglik(&self, rewards: &[f32]) -> [f64; AUTO_TAU_GRID.len()] {
        let mut cuts = self.reference.clone();
        cuts.dedup();
        let bins = cuts.len() + 1;
        let bin = |r: f32| cuts.partition_point(|&v| v <= r);
        let mut ref_counts = vec![0.0; bins];
        for &r in &self.reference {
            ref_counts[bin(r)] += 1.0;
        }
        let mut ev_counts = vec![0.0; bins];
        for &(r, w) in &self.evidence {
            ev_counts[bin(r)] += w;
        }
        let (m, w, nb) = (
            self.reference.len() as f64,
            self.total_weight,
            bins as f64 * AUTO_PSEUDO_COUNT,
        );
        let mut out = [0.0; AUTO_TAU_GRID.len()];
        for &r in rewards {
            let b = bin(r + 0.0);
            let p_ref = (ref_counts[b] + AUTO_PSEUDO_COUNT) / (m + nb);
            let p_ev = (ev_counts[b] + AUTO_PSEUDO_COUNT) / (w + nb);
            for (o, &tau) in out.iter_mut().zip(AUTO_TAU_GRID.iter()) {
                *o += ((1.0 - tau) * p_ref + tau * p_ev).ln();
            }
        }
        out
    }

    fn validate(&self, prompt: u64) -> std::result::Result<(), String> {
        if self.spread_tau.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
            return Err(format!("prompt {prompt}: spread_tau must be in [0, 1]"));
        }
        if !(self.auto_loglik.is_empty() || self.auto_loglik.len() == AUTO_TAU_GRID.len())
            || self.auto_loglik.iter().any(|l| !l.is_finite())
        {
            return Err(format!(
                "prompt {prompt}: auto_loglik must hold {} finite values",
                AUTO_TAU_GRID.len()
            ));
        }
        if self.reference.iter().any(|r| !r.is_finite()) {
            return Err(format!("prompt {prompt}: non-finite reference reward"));
        }
        if self
            .evidence
            .iter()
            .any(|&(r, w)| !r.is_finite() || !w.is_finite() || w <= 0.0)
        {
            return Err(format!("prompt {prompt}: invalid evidence entry"));
        }
        Ok(())
    }
}

/// The per-prompt Bayesian best-of-N target (METHOD.md section 3), keyed by a `u64` prompt id
/// chosen by the trainer. Saved beside checkpoints as JSON; it is not part of the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BayesianTarget {
    config: TargetConfig,
    prompts: BTreeMap<u64, PromptPosterior>,
    /// [`Concentration::Auto`]: the mean over prompts of their `auto_loglik`, recomputed from
    /// the prompts in a fixed order after every observation and on load (so a resumed run
    /// chooses exactly as the uninterrupted one).
    #[serde(skip)]
    auto_mean: Option<Vec<f64>>,
}

impl BayesianTarget {
    /// An empty target; fails with [`CoreError::Config`] on an out-of-range setting.
    pub fn new(config: TargetConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            prompts: BTreeMap::new(),
            auto_mean: None,
        })
    }

    /// The settings.
    pub fn config(&self) -> &TargetConfig {
        &self.config
    }

    /// Number of prompts with a reference or evidence.
    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    /// Whether no prompt is known.
    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }

    /// Sets (replaces) the prompt's cached reference rewards, the prior `F_ref`; evidence is
    /// kept. An empty slice is allowed and means `F_ref` is undefined (see the module docs).
    pub fn set_reference(&mut self, prompt: u64, rewards: &[f32]) -> Result<()> {
        check_finite(prompt, rewards, "reference")?;
        // `+ 0.0` turns -0.0 into 0.0 so equal rewards sort and tie together.
        let mut sorted: Vec<f32> = rewards.iter().map(|r| r + 0.0).collect();
        sorted.sort_by(f32::total_cmp);
        self.prompts.entry(prompt).or_default().reference = sorted;
        Ok(())
    }

    /// Adds one group of rollout rewards: old evidence is first multiplied by `gamma`, then each
    /// new reward enters with weight 1; entries below `1e-6` are dropped. An empty group changes
    /// nothing. A non-finite reward is rejected before anything changes.
    pub fn observe(&mut self, prompt: u64, rewards: &[f32]) -> Result<()> {
        check_finite(prompt, rewards, "rollout")?;
        if rewards.is_empty() {
            return Ok(());
        }
        let gamma = self.config.gamma;
        let auto = self.config.concentration == Concentration::Auto;
        let mut auto_changed = false;
        let post = self.prompts.entry(prompt).or_default();
        if auto && post.total_weight > 0.0 && !post.reference.is_empty() {
            // score the new group under the posterior predictive before it becomes evidence
            let group = post.auto_group_loglik(rewards);
            if post.auto_loglik.is_empty() {
                post.auto_loglik = vec![0.0; AUTO_TAU_GRID.len()];
            }
            for (l, g) in post.auto_loglik.iter_mut().zip(group) {
                *l = *l * gamma + g;
            }
            auto_changed = true;
        }
        let mut evidence: Vec<(f32, f64)> = post
            .evidence
            .iter()
            .map(|&(r, w)| (r, w * gamma))
            .chain(rewards.iter().map(|&r| (r + 0.0, 1.0)))
            .collect();
        evidence.sort_by(|a, b| a.0.total_cmp(&b.0));
        // One entry per distinct reward: list rewards tie a lot, so this keeps memory small.
        let mut merged: Vec<(f32, f64)> = Vec::with_capacity(evidence.len());
        for (r, w) in evidence {
            match merged.last_mut() {
                Some(last) if last.0 == r => last.1 += w,
                _ => merged.push((r, w)),
            }
        }
        merged.retain(|&(_, w)| w >= MIN_WEIGHT);
        post.evidence = merged;
        post.total_weight = evidence_weight(&post.evidence);
        post.visits += 1;
        if let Concentration::Spread(share) = self.config.concentration {
            if !post.reference.is_empty() {
                if let Some(tau) = post.spread_choice(rewards, share, &self.config) {
                    post.spread_tau = Some(tau);
                }
            }
        }
        if auto_changed {
            self.recount_auto();
        }
        Ok(())
    }

    /// `W`, the prompt's total evidence weight (0 for an unknown prompt).
    pub fn evidence_weight(&self, prompt: u64) -> f64 {
        self.prompts.get(&prompt).map_or(0.0, |p| p.total_weight)
    }

    /// How many non-empty groups were observed for the prompt.
    pub fn visits(&self, prompt: u64) -> u64 {
        self.prompts.get(&prompt).map_or(0, |p| p.visits)
    }

    /// The effective concentration `kappa`: the configured one, or `W (1 - tau) / tau` in
    /// [`Concentration::Tau`] mode (`f64::INFINITY` for `tau = 0`). A prompt without reference
    /// rewards has no prior mass, so its finite `kappa` is 0.
    pub fn kappa(&self, prompt: u64) -> f64 {
        let no_prior = self
            .prompts
            .get(&prompt)
            .is_none_or(|p| p.reference.is_empty());
        // the same cases, in the same order, as `tau`
        let from_tau = |t: f64| match t {
            t if t <= 0.0 => f64::INFINITY,
            t => self.evidence_weight(prompt) * (1.0 - t) / t,
        };
        match self.config.concentration {
            Concentration::Tau(t) if t <= 0.0 => f64::INFINITY,
            _ if no_prior => 0.0,
            Concentration::Tau(t) => from_tau(t),
            Concentration::Auto => from_tau(self.auto_tau(prompt)),
            Concentration::Spread(_) => from_tau(self.tau(prompt)),
            Concentration::Kappa(k) => k,
        }
    }

    /// The mixing weight `tau = W / (kappa + W)`: 0 when `W = 0` or `kappa` is infinite, and
    /// exactly the configured `tau` in [`Concentration::Tau`] mode once `W > 0` (1 for a prompt
    /// without reference rewards, unless `tau = 0`).
    pub fn tau(&self, prompt: u64) -> f64 {
        let Some(post) = self.prompts.get(&prompt) else {
            return 0.0;
        };
        let w = post.total_weight;
        if w <= 0.0 {
            return 0.0;
        }
        let no_prior = post.reference.is_empty();
        match self.config.concentration {
            Concentration::Tau(t) if t <= 0.0 => 0.0,
            _ if no_prior => 1.0,
            Concentration::Tau(t) => t,
            Concentration::Auto => self.auto_tau(prompt),
            Concentration::Spread(_) => post.spread_tau.unwrap_or(0.0),
            Concentration::Kappa(k) => (w / (k + w)).clamp(0.0, 1.0),
        }
    }

    /// [`Concentration::Auto`]'s choice for the prompt: the candidate of [`AUTO_TAU_GRID`] that
    /// maximises the prompt's decayed log predictive likelihood plus the mean of all
    /// prompts' (one prompt's worth of shrinkage); the smallest such candidate on ties, so 0
    /// before anything was predicted. Outside [`Concentration::Auto`] nothing is recorded and it
    /// is 0; [`tau`](Self::tau) is the mixing weight in use in every mode.
    pub fn auto_tau(&self, prompt: u64) -> f64 {
        let own = self.prompts.get(&prompt).map(|p| &p.auto_loglik);
        let mut best = (f64::NEG_INFINITY, 0.0);
        for (i, &tau) in AUTO_TAU_GRID.iter().enumerate() {
            let mut score = own.and_then(|l| l.get(i)).copied().unwrap_or(0.0);
            if let Some(mean) = &self.auto_mean {
                score += mean[i];
            }
            if score > best.0 + 1e-12 {
                best = (score, tau);
            }
        }
        best.1
    }

    /// The distribution of [`auto_tau`](Self::auto_tau) over the known prompts: `(mean, share
    /// of prompts at 0, share at 1)`; `None` outside [`Concentration::Auto`] or with no prompt.
    pub fn auto_tau_summary(&self) -> Option<(f64, f64, f64)> {
        if self.config.concentration != Concentration::Auto || self.prompts.is_empty() {
            return None;
        }
        let taus: Vec<f64> = self.prompts.keys().map(|&p| self.auto_tau(p)).collect();
        let n = taus.len() as f64;
        Some((
            taus.iter().sum::<f64>() / n,
            taus.iter().filter(|&&t| t <= 0.0).count() as f64 / n,
            taus.iter().filter(|&&t| t >= 1.0).count() as f64 / n,
        ))
    }

    /// The prior `F_ref(t) = #{reference <= t} / M` (binary search); `0.5` without reference.
    pub fn reference_cdf_le(&self, prompt: u64, t: f32) -> f64 {
        self.prompts
            .get(&prompt)
            .and_then(|p| p.reference_cdf(t, false))
            .unwrap_or(NEUTRAL_CDF)
    }

    /// The posterior CDF `F_post(t) = (kappa F_ref(t) + sum_g w_g 1[r_g <= t]) / (kappa + W)`,
    /// computed as the mixture `(1 - tau) F_ref(t) + tau * (evidence CDF)`; exactly `F_ref(t)`
    /// when `kappa` is infinite (`tau = 0`).
    pub fn cdf_le(&self, prompt: u64, t: f32) -> f64 {
        self.cdf(prompt, t, false)
    }

    /// [`cdf_le`](Self::cdf_le) with strict inequality, in `F_ref` too: `P[r' < t]`.
    pub fn cdf_lt(&self, prompt: u64, t: f32) -> f64 {
        self.cdf(prompt, t, true)
    }

    fn cdf(&self, prompt: u64, t: f32, strict: bool) -> f64 {
        let Some(post) = self.prompts.get(&prompt) else {
            return NEUTRAL_CDF;
        };
        finish_cdf(post.cdf_at(t, strict, self.tau(prompt)))
    }

    /// The Beta marginal of the Dirichlet-process posterior at threshold `t`:
    /// `a = kappa F_ref(t) + sum_g w_g 1[r_g <= t]`, `b = kappa + W - a`. `None` when `kappa`
    /// is infinite (the static target has no posterior spread) or `kappa + W = 0`.
    pub fn beta(&self, prompt: u64, t: f32) -> Option<(f64, f64)> {
        let total = self.kappa(prompt) + self.evidence_weight(prompt);
        if !total.is_finite() || total <= 0.0 {
            return None;
        }
        let mean = self.cdf_le(prompt, t);
        Some((total * mean, total * (1.0 - mean)))
    }

    /// Mean `a / (a + b)` (equal to [`cdf_le`](Self::cdf_le)) and variance
    /// `ab / ((a + b)^2 (a + b + 1))` of [`beta`](Self::beta); `None` where `beta` is.
    pub fn beta_mean_var(&self, prompt: u64, t: f32) -> Option<(f64, f64)> {
        let (a, b) = self.beta(prompt, t)?;
        let mean = self.cdf_le(prompt, t);
        // Same value as ab / ((a+b)^2 (a+b+1)), without overflowing for a huge kappa.
        Some((mean, mean * (1.0 - mean) / (a + b + 1.0)))
    }

    /// The proxy reward `R = log((p_le^N - p_lt^N) / (p_le - p_lt))` of a rollout with reward
    /// `r` (METHOD.md sections 2-3), `p_le = F_post(r)`, `p_lt` its strict form. Computed as
    /// `log(sum_{i<N} p_le^i p_lt^(N-1-i))` (equal to `log(N p^(N-1))` without ties), clipped
    /// below at `log_floor`; always finite.
    pub fn proxy_reward(&self, prompt: u64, r: f32) -> f64 {
        let value = bon_log_ratio(
            self.cdf_le(prompt, r),
            self.cdf_lt(prompt, r),
            self.config.n,
        );
        floored(value, &self.config)
    }

    /// [`proxy_reward`](Self::proxy_reward) of each reward of a group.
    pub fn proxy_rewards(&self, prompt: u64, rewards: &[f32]) -> Vec<f64> {
        rewards
            .iter()
            .map(|&r| self.proxy_reward(prompt, r))
            .collect()
    }

    /// Share of `rewards` at which the static reference CDF is saturated (`F_ref(r) = 1`): the
    /// "indiscriminate supervision" of METHOD.md section 2. 0 for an empty group or reference.
    pub fn saturated_share(&self, prompt: u64, rewards: &[f32]) -> f64 {
        let Some(post) = self.prompts.get(&prompt) else {
            return 0.0;
        };
        if rewards.is_empty() {
            return 0.0;
        }
        let saturated = rewards
            .iter()
            .filter(|&&r| post.reference_cdf(r, false) == Some(1.0))
            .count();
        saturated as f64 / rewards.len() as f64
    }

    /// Writes the target as JSON through a temporary sibling file and a rename.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec(self).map_err(|e| CoreError::file(path, e))?;
        crate::sft::write_atomic(path, &bytes)
    }

    /// Reads a target written by [`save`](Self::save), checking every value again.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read(path).map_err(|e| CoreError::file(path, e))?;
        let mut target: Self = serde_json::from_slice(&text)
            .map_err(|e| CoreError::file(path, format!("not a saved Bayesian target: {e}")))?;
        target
            .config
            .validate()
            .map_err(|e| CoreError::file(path, e))?;
        for (&prompt, post) in &mut target.prompts {
            post.validate(prompt)
                .map_err(|e| CoreError::file(path, e))?;
            post.reference.sort_by(f32::total_cmp);
            post.evidence.sort_by(|a, b| a.0.total_cmp(&b.0));
            post.total_weight = evidence_weight(&post.evidence);
        }
        target.recount_auto();
        Ok(target)
    }
}

/// The total weight of a posterior's evidence; `+ 0.0` makes an empty sum `0.0` (a float sum
/// starts at `-0.0`), so that a target saved and loaded again is the same bytes.
fn evidence_weight(evidence: &[(f32, f64)]) -> f64 {
    evidence.iter().map(|(_, w)| w).sum::<f64>() + 0.0
}

impl BayesianTarget {
    /// Rebuilds the mean over prompts that [`Concentration::Auto`] shrinks towards.
    fn recount_auto(&mut self) {
        let mut sum = vec![0.0; AUTO_TAU_GRID.len()];
        let mut count = 0;
        for post in self.prompts.values().filter(|p| !p.auto_loglik.is_empty()) {
            count += 1;
            for (s, l) in sum.iter_mut().zip(&post.auto_loglik) {
                *s += l;
            }
        }
        self.auto_mean = (count > 0).then(|| sum.iter().map(|s| s / count as f64).collect());
    }
}

/// A CDF value as the target reports it: clamped to `[0, 1]`; the neutral `0.5` where there is
/// no information or the value is not finite.
fn finish_cdf(value: Option<f64>) -> f64 {
    match value {
        Some(v) if v.is_finite() => v.clamp(0.0, 1.0),
        _ => NEUTRAL_CDF,
    }
}

/// A proxy reward clipped below at the floor (the floor for NaN).
fn floored(value: f64, config: &TargetConfig) -> f64 {
    if value.is_nan() {
        config.log_floor
    } else {
        value.max(config.log_floor)
    }
}

/// The proxy reward of a rollout whose posterior CDF values at mixing weight `tau` are `le`
/// and `lt` (as [`PromptPosterior::cdf_at`] gives them), as
/// [`BayesianTarget::proxy_reward`] computes it.
fn proxy_value(le: Option<f64>, lt: Option<f64>, config: &TargetConfig) -> f64 {
    floored(
        bon_log_ratio(finish_cdf(le), finish_cdf(lt), config.n),
        config,
    )
}

fn check_finite(prompt: u64, rewards: &[f32], what: &str) -> Result<()> {
    match rewards.iter().position(|r| !r.is_finite()) {
        Some(i) => Err(CoreError::Config(format!(
            "prompt {prompt}: {what} reward {i} is {} (must be finite)",
            rewards[i]
        ))),
        None => Ok(()),
    }
}

/// `log(sum_{i=0}^{N-1} p_le^i p_lt^(N-1-i))`, the tie-aware best-of-N log density ratio.
///
/// Factoring out `p_le^(N-1)` with `q = p_lt / p_le` and `d = 1 - q` leaves the geometric sum
/// `(1 - q^N) / d = -expm1(N ln1p(-d)) / d`, accurate for every `d` in `(0, 1]` and `N` in O(1)
/// (`N` when `d = 0`). `N = 1` gives 0 (best-of-1 is the reference); `p_le = 0` gives `-inf`.
pub(crate) fn bon_log_ratio(p_le: f64, p_lt: f64, n: usize) -> f64 {
    if n <= 1 {
        return 0.0;
    }
    if p_le.is_nan() || p_le <= 0.0 {
        return f64::NEG_INFINITY;
    }
    let n = n as f64;
    let q = (p_lt / p_le).clamp(0.0, 1.0);
    let d = 1.0 - q;
    let geometric = if d <= 0.0 {
        n
    } else {
        (-(n * (-d).ln_1p()).exp_m1() / d).clamp(1.0, n)
    };
    (n - 1.0) * p_le.min(1.0).ln() + geometric.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(concentration: Concentration, gamma: f64) -> BayesianTarget {
        let config = TargetConfig {
            concentration,
            gamma,
            ..TargetConfig::blade(0.3)
        };
        BayesianTarget::new(config).expect("valid config")
    }

    /// `log((p_le^N - p_lt^N) / (p_le - p_lt))`, or `log(N p^(N-1))` when they are equal.
    fn direct(p_le: f64, p_lt: f64, n: usize) -> f64 {
        let n_i = n as i32;
        if p_le == p_lt {
            (n as f64 * p_le.powi(n_i - 1)).ln()
        } else {
            ((p_le.powi(n_i) - p_lt.powi(n_i)) / (p_le - p_lt)).ln()
        }
    }

    #[test]
    fn tau_zero_is_exactly_the_static_reference_cdf() {
        let mut t = target(Concentration::Tau(0.0), 0.7);
        t.set_reference(1, &[2.0, 0.0, 1.0, 0.0]).unwrap();
        t.observe(1, &[5.0, 5.0, -3.0, 1.0]).unwrap();
        t.observe(1, &[0.5, 9.0]).unwrap();
        for x in [-4.0f32, 0.0, 0.5, 1.0, 1.5, 2.0, 7.0] {
            let le = [-4.0, 0.0, 0.5, 1.0, 1.5, 2.0, 7.0]
                .iter()
                .position(|&y| y == x);
            let f_le = [0.0, 0.5, 0.5, 0.75, 0.75, 1.0, 1.0][le.unwrap()];
            let f_lt = [0.0, 0.0, 0.5, 0.5, 0.75, 0.75, 1.0][le.unwrap()];
            assert_eq!(t.cdf_le(1, x), f_le, "le at {x}");
            assert_eq!(t.cdf_lt(1, x), f_lt, "lt at {x}");
            assert_eq!(t.reference_cdf_le(1, x), f_le);
        }
        assert_eq!(t.kappa(1), f64::INFINITY);
        assert_eq!(t.tau(1), 0.0);
        assert_eq!(t.beta(1, 1.0), None);
        assert!((t.evidence_weight(1) - (4.0 * 0.7 + 2.0)).abs() < 1e-12);
    }

    #[test]
    fn hand_computed_posterior() {
        let mut t = target(Concentration::Kappa(2.0), 1.0);
        t.set_reference(7, &[0.0, 0.0, 1.0, 2.0]).unwrap();
        t.observe(7, &[1.0, 3.0]).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(t.cdf_le(7, 1.0), (2.0 * 0.75 + 1.0) / 4.0)); // 0.625
        assert!(close(t.cdf_lt(7, 1.0), (2.0 * 0.5 + 0.0) / 4.0)); // 0.25
        assert!(close(t.cdf_le(7, 2.5), (2.0 + 1.0) / 4.0));
        assert!(close(t.cdf_le(7, 3.0), 1.0));
        assert_eq!(t.cdf_le(7, -1.0), 0.0);
        assert_eq!(t.kappa(7), 2.0);
        assert!(close(t.tau(7), 0.5));
        let (a, b) = t.beta(7, 1.0).unwrap();
        assert!(close(a, 2.5) && close(b, 1.5));
        let (mean, var) = t.beta_mean_var(7, 1.0).unwrap();
        assert!(close(mean, 0.625) && close(var, 2.5 * 1.5 / (16.0 * 5.0)));
        let r = t.proxy_reward(7, 1.0);
        assert!(close(r, direct(0.625, 0.25, 16)));
    }

    #[test]
    fn forgetting_halves_old_weights_per_visit() {
        let mut t = target(Concentration::Kappa(0.0), 0.5);
        t.set_reference(3, &[0.0]).unwrap();
        t.observe(3, &[1.0, 2.0]).unwrap();
        assert_eq!(t.evidence_weight(3), 2.0);
        t.observe(3, &[3.0]).unwrap(); // weights 0.5, 0.5, 1
        t.observe(3, &[]).unwrap(); // an empty group is not a visit
        assert_eq!(t.evidence_weight(3), 2.0);
        assert_eq!(t.visits(3), 2);
        assert_eq!(t.cdf_le(3, 1.0), 0.25);
        assert_eq!(t.cdf_le(3, 2.0), 0.5);
        assert_eq!(t.cdf_lt(3, 3.0), 0.5);
        t.observe(3, &[3.0]).unwrap(); // 0.25, 0.25, 0.5 + 1 merged
        assert_eq!(
            t.prompts[&3].evidence,
            vec![(1.0, 0.25), (2.0, 0.25), (3.0, 1.5)]
        );
        assert_eq!(t.evidence_weight(3), 2.0);
        for _ in 0..18 {
            t.observe(3, &[3.0]).unwrap();
        }
        // 0.5^20 < 1e-6: the first group's rewards are gone.
        assert_eq!(t.prompts[&3].evidence.len(), 1);
        assert_eq!(t.cdf_le(3, 2.5), 0.0);
    }

    #[test]
    fn tau_mode_hits_the_configured_tau() {
        let mut t = target(Concentration::Tau(0.3), 1.0);
        t.set_reference(0, &[0.0, 1.0]).unwrap();
        assert_eq!((t.tau(0), t.kappa(0)), (0.0, 0.0));
        assert_eq!(t.cdf_le(0, 0.5), 0.5); // no evidence yet: F_ref
        t.observe(0, &[0.5, 2.0, 2.0]).unwrap();
        assert_eq!(t.tau(0), 0.3);
        let (w, kappa) = (t.evidence_weight(0), t.kappa(0));
        assert!((kappa - 3.0 * 0.7 / 0.3).abs() < 1e-12);
        assert!((w / (kappa + w) - 0.3).abs() < 1e-12);
        let formula = (kappa * 1.0 + 1.0) / (kappa + w);
        assert!((t.cdf_le(0, 1.0) - formula).abs() < 1e-12);
        assert!((t.cdf_le(0, 1.0) - 0.8).abs() < 1e-12);
    }

    #[test]
    fn ties_use_the_tie_aware_form() {
        let mut t = target(Concentration::Kappa(1.0), 1.0);
        t.set_reference(0, &[0.0, 0.0, 0.0]).unwrap();
        t.observe(0, &[0.0, 0.0]).unwrap();
        assert_eq!((t.cdf_le(0, 0.0), t.cdf_lt(0, 0.0)), (1.0, 0.0));
        assert_eq!(t.proxy_reward(0, 0.0), 0.0);
        assert_eq!(direct(1.0, 0.0, 16), 0.0);
        let mut s = target(Concentration::Tau(0.0), 1.0);
        s.set_reference(0, &[0.0, 0.0, 1.0, 1.0]).unwrap();
        let r = s.proxy_reward(0, 0.0); // p_le = 0.5, p_lt = 0
        assert!((r - 15.0 * 0.5f64.ln()).abs() < 1e-12);
        assert!((r - direct(0.5, 0.0, 16)).abs() < 1e-12);
        for (le, lt, n) in [
            (0.75f64, 0.25f64, 16i32),
            (0.9, 0.899, 8),
            (1.0, 0.5, 3),
            (0.3, 0.1, 100),
        ] {
            let loop_sum: f64 = (0..n).map(|i| le.powi(i) * lt.powi(n - 1 - i)).sum();
            let got = bon_log_ratio(le, lt, n as usize);
            assert!((got - loop_sum.ln()).abs() < 1e-12, "{le} {lt} {n}");
            assert!((got - direct(le, lt, n as usize)).abs() < 1e-9);
        }
    }

    #[test]
    fn no_ties_limit_is_n_f_pow_n_minus_one() {
        for f in [1e-3f64, 0.2, 0.5, 0.99, 1.0] {
            let expected = (16.0f64).ln() + 15.0 * f.ln();
            assert!((bon_log_ratio(f, f, 16) - expected).abs() < 1e-12);
            let gaps: Vec<f64> = [1e-2, 1e-5, 1e-9]
                .iter()
                .map(|&eps| (bon_log_ratio(f, f * (1.0 - eps), 16) - expected).abs())
                .collect();
            assert!(
                gaps[0] > gaps[1] && gaps[1] > gaps[2] && gaps[2] < 1e-6,
                "{gaps:?}"
            );
        }
        // Distinct continuous rewards: the gap p_le - p_lt = 1/M shrinks as M grows.
        let error_at = |m: usize| {
            let mut t = target(Concentration::Tau(0.0), 1.0);
            let reference: Vec<f32> = (0..m).map(|i| i as f32 / m as f32).collect();
            t.set_reference(0, &reference).unwrap();
            let r = reference[m / 2];
            let f = t.cdf_le(0, r);
            assert!((t.cdf_le(0, r) - t.cdf_lt(0, r) - 1.0 / m as f64).abs() < 1e-12);
            (t.proxy_reward(0, r) - (16.0f64.ln() + 15.0 * f.ln())).abs()
        };
        assert!(error_at(10_000) < error_at(100) && error_at(10_000) < 1e-2);
        let mut t = target(Concentration::Tau(0.0), 1.0);
        t.set_reference(0, &[0.0, 1.0, 2.0, 3.0]).unwrap();
        let expected = 16.0f64.ln() + 15.0 * 0.5f64.ln();
        assert!((t.proxy_reward(0, 1.5) - expected).abs() < 1e-12);
    }

    fn std(v: &[f64]) -> f64 {
        mean_std(v).1
    }

    /// The proxy rewards of `rewards` under the mixture at `tau`, by hand from the prompt's
    /// reference and evidence CDFs (for the tau spread tests).
    fn proxies_at(t: &BayesianTarget, prompt: u64, rewards: &[f32], tau: f64) -> Vec<f64> {
        let post = &t.prompts[&prompt];
        let mix = |r: f32, strict: bool| {
            let f = post.reference_cdf(r, strict).unwrap();
            let e = post.evidence_mass(r, strict) / post.total_weight;
            ((1.0 - tau) * f + tau * e).clamp(0.0, 1.0)
        };
        rewards
            .iter()
            .map(|&r| direct(mix(r, false), mix(r, true), t.config.n).max(-20.0))
            .collect()
    }

    #[test]
    fn tau_spread_stays_static_while_the_reference_discriminates() {
        let mut t = target(Concentration::Spread(0.5), 0.9);
        let reference: Vec<f32> = (0..16).map(|i| i as f32).collect();
        t.set_reference(1, &reference).unwrap();
        assert_eq!(t.tau(1), 0.0);
        // a group spread over the reference's range: the static target ranks it as finely as
        // the group's own evidence does
        let group = [1.5, 3.5, 5.5, 7.5, 9.5, 11.5, 13.5, 15.5];
        t.observe(1, &group).unwrap();
        assert_eq!(t.tau(1), 0.0);
        assert_eq!(t.kappa(1), f64::INFINITY);
        let mut fixed = target(Concentration::Tau(0.0), 0.9);
        fixed.set_reference(1, &reference).unwrap();
        assert_eq!(t.proxy_rewards(1, &group), fixed.proxy_rewards(1, &group));
    }

    #[test]
    fn tau_spread_moves_just_as_far_as_a_saturated_group_needs() {
        for share in [0.25, 0.5, 1.0] {
            let mut t = target(Concentration::Spread(share), 0.9);
            t.set_reference(1, &[0.0, 1.0, 2.0, 3.0]).unwrap();
            t.observe(1, &[0.5, 1.5, 2.5, 2.5]).unwrap();
            // every reward of this group lies above the reference's best: F_ref = 1 for all,
            // so the static proxy ties them
            let group = [4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0];
            t.observe(1, &group).unwrap();
            assert!(std(&proxies_at(&t, 1, &group, 0.0)) < 1e-12);
            let chosen = t.tau(1);
            let at_one = std(&proxies_at(&t, 1, &group, 1.0));
            let got = std(&proxies_at(&t, 1, &group, chosen));
            assert!(
                chosen > 0.0 && got >= share * at_one - 1e-9,
                "share {share}: {chosen}"
            );
            if chosen > 0.0 {
                let below = std(&proxies_at(&t, 1, &group, chosen - 0.05));
                assert!(
                    below < share * at_one,
                    "share {share}: {chosen} is not the smallest"
                );
            }
            // the target scores the group at the chosen tau, and kappa follows from it
            let by_hand = proxies_at(&t, 1, &group, chosen);
            for (a, b) in t.proxy_rewards(1, &group).iter().zip(&by_hand) {
                assert!((a - b).abs() < 1e-9, "share {share}: {a} vs {b}");
            }
            let w = t.evidence_weight(1);
            assert!((t.kappa(1) - w * (1.0 - chosen) / chosen).abs() < 1e-9);
            // a group of equal rewards carries no choice: tau stays, and survives a save
            t.observe(1, &[12.0; 8]).unwrap();
            assert_eq!(t.tau(1), chosen);
            let back: BayesianTarget =
                serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
            assert_eq!(back.tau(1), chosen);
        }
        // a larger share never chooses a smaller tau on the same evidence
        let chosen = |share: f64| {
            let mut t = target(Concentration::Spread(share), 1.0);
            t.set_reference(1, &[0.0, 1.0, 2.0, 3.0]).unwrap();
            t.observe(1, &[3.5, 4.0, 5.0, 6.0, 7.0, 8.0]).unwrap();
            t.tau(1)
        };
        assert!(chosen(0.25) <= chosen(0.5) && chosen(0.5) <= chosen(1.0));
        assert!(chosen(0.25) < chosen(1.0));
        // without a reference the rule has nothing to keep: tau 1, as in every finite mode
        let mut t = target(Concentration::Spread(0.5), 1.0);
        t.observe(2, &[1.0, 2.0]).unwrap();
        assert_eq!((t.tau(2), t.kappa(2)), (1.0, 0.0));
    }

    #[test]
    fn floor_and_best_of_one() {
        let mut t = target(Concentration::Tau(0.0), 1.0);
        t.set_reference(0, &[1.0, 2.0]).unwrap();
        assert_eq!(t.proxy_reward(0, 0.0), -20.0); // p_le = 0
        assert_eq!(t.proxy_reward(0, f32::NAN), -20.0);
        let mut one = BayesianTarget::new(TargetConfig::static_bon(1)).unwrap();
        one.set_reference(0, &[1.0, 2.0]).unwrap();
        assert_eq!(one.proxy_rewards(0, &[0.0, 1.5, 9.0]), vec![0.0; 3]);
    }

    #[test]
    fn prompts_without_reference() {
        let mut t = target(Concentration::Kappa(5.0), 1.0);
        assert_eq!(t.cdf_le(9, 1.0), 0.5);
        assert_eq!(t.proxy_reward(9, 1.0), t.proxy_reward(9, -1.0));
        t.observe(9, &[1.0, 2.0]).unwrap();
        assert_eq!((t.kappa(9), t.tau(9)), (0.0, 1.0));
        assert_eq!(t.cdf_le(9, 1.0), 0.5);
        assert_eq!(t.cdf_lt(9, 1.0), 0.0);
        assert_eq!(t.beta(9, 1.5), Some((1.0, 1.0)));
        assert_eq!(t.saturated_share(9, &[5.0]), 0.0);
        let mut s = target(Concentration::Tau(0.0), 1.0);
        s.observe(9, &[1.0, 2.0]).unwrap();
        assert_eq!((s.cdf_le(9, 1.0), s.cdf_le(9, 5.0)), (0.5, 0.5));
    }

    #[test]
    fn saturated_share_counts_f_ref_equal_one() {
        let mut t = target(Concentration::Kappa(1.0), 1.0);
        t.set_reference(0, &[0.0, 1.0]).unwrap();
        assert_eq!(t.saturated_share(0, &[0.5, 1.0, 2.0, 3.0]), 0.75);
        assert_eq!(t.saturated_share(0, &[]), 0.0);
    }

    #[test]
    fn invalid_inputs_are_rejected() {
        let base = TargetConfig::default();
        assert!(BayesianTarget::new(base.clone()).is_ok());
        let rejects = |edit: &dyn Fn(&mut TargetConfig)| {
            let mut config = base.clone();
            edit(&mut config);
            matches!(BayesianTarget::new(config), Err(CoreError::Config(_)))
        };
        for gamma in [0.0, 1.5, f64::NAN] {
            assert!(rejects(&|c| c.gamma = gamma), "gamma {gamma}");
        }
        for floor in [0.0, f64::NEG_INFINITY, f64::NAN] {
            assert!(rejects(&|c| c.log_floor = floor), "floor {floor}");
        }
        assert!(rejects(&|c| c.n = 0));
        for x in [-0.1, 1.1, f64::NAN] {
            assert!(
                rejects(&|c| c.concentration = Concentration::Tau(x)),
                "tau {x}"
            );
        }
        for x in [-1.0, f64::INFINITY, f64::NAN] {
            assert!(
                rejects(&|c| c.concentration = Concentration::Kappa(x)),
                "kappa {x}"
            );
        }
        for x in [0.0, -0.5, 1.5, f64::NAN] {
            assert!(
                rejects(&|c| c.concentration = Concentration::Spread(x)),
                "spread share {x}"
            );
        }
        let mut t = BayesianTarget::new(base).unwrap();
        t.set_reference(4, &[1.0]).unwrap();
        let err = t.observe(4, &[1.0, f32::NAN]).unwrap_err().to_string();
        assert!(err.contains("prompt 4"), "{err}");
        assert!(t.set_reference(4, &[f32::INFINITY]).is_err());
        assert_eq!(t.evidence_weight(4), 0.0);
        assert_eq!(t.reference_cdf_le(4, 1.0), 1.0);
    }

    #[test]
    fn auto_tau_by_hand() {
        let mut t = target(Concentration::Auto, 1.0);
        t.set_reference(1, &[0.0, 1.0]).unwrap();
        // nothing predicted yet: tau 0, the static reference CDF exactly
        assert_eq!((t.tau(1), t.kappa(1)), (0.0, f64::INFINITY));
        t.observe(1, &[1.0, 1.0]).unwrap();
        assert_eq!(t.tau(1), 0.0, "the first group only becomes evidence");
        assert_eq!(t.cdf_le(1, 0.5), 0.5);
        // bins (-inf, 0), [0, 1), [1, inf): reference counts 0, 1, 1 of M = 2, evidence 0, 0, 2
        // of W = 2, one pseudo-count per bin.
        // [0.0] lands in [0, 1): P_ref = 2/5 beats P_ev = 1/5, so the reference wins (tau 0)
        let mut back = t.clone();
        back.observe(1, &[0.0]).unwrap();
        assert_eq!(back.auto_tau(1), 0.0);
        // [1.0] lands in [1, inf): P_ref = 2/5, P_ev = 3/5, log-likelihood ln(0.4 + 0.2 tau)
        t.observe(1, &[1.0]).unwrap();
        assert_eq!(t.auto_tau(1), 1.0);
        assert_eq!((t.tau(1), t.kappa(1)), (1.0, 0.0));
        let want = [0.0, 0.5, 1.0].map(|tau: f64| (0.4 + 0.2 * tau).ln());
        let got = &t.prompts[&1].auto_loglik;
        for (i, w) in [0, 10, 20].into_iter().zip(want) {
            assert!((got[i] - w).abs() < 1e-12, "grid {i}: {} vs {w}", got[i]);
        }
        assert_eq!(t.auto_tau_summary(), Some((1.0, 0.0, 1.0)));
        // a prompt without reference rewards has no prior mass in auto mode too: tau 1, kappa 0
        let mut bare = target(Concentration::Auto, 1.0);
        bare.observe(2, &[0.5]).unwrap();
        assert_eq!((bare.tau(2), bare.kappa(2)), (1.0, 0.0));
        assert_eq!(
            target(Concentration::Tau(0.3), 1.0).auto_tau_summary(),
            None
        );
    }

    #[test]
    fn auto_tau_follows_a_policy_that_moved_and_stays_put_for_one_that_did_not() {
        let reference: Vec<f32> = (0..16).map(|i| [0.0, 0.0, 0.0, 0.3][i % 4]).collect();
        let same: Vec<f32> = (0..8).map(|i| [0.0, 0.0, 0.0, 0.3][i % 4]).collect();
        let moved = [0.6f32, 0.6, 0.9, 0.6, 0.9, 0.6, 0.6, 0.3];
        let run = |group: &[f32]| {
            let mut t = target(Concentration::Auto, 0.9);
            for p in 0..20u64 {
                t.set_reference(p, &reference).unwrap();
                for _ in 0..4 {
                    t.observe(p, group).unwrap();
                }
            }
            t
        };
        let (still, shifted) = (run(&same), run(&moved));
        let (m_still, _, _) = still.auto_tau_summary().unwrap();
        let (m_moved, _, at_one) = shifted.auto_tau_summary().unwrap();
        assert!(m_moved >= 0.9 && at_one > 0.5, "moved: mean tau {m_moved}");
        assert!(m_still <= 0.5, "unmoved: mean tau {m_still}");
        // the chosen tau is the mixing weight the posterior uses
        // (F_ref(0.3) = 1; one reward in eight of every group is <= 0.3)
        let tau = shifted.tau(3);
        assert!((shifted.cdf_le(3, 0.3) - ((1.0 - tau) + tau / 8.0)).abs() < 1e-12);
        // saving and loading keeps every choice exactly (the mean over prompts is rebuilt)
        let dir = std::env::temp_dir().join(format!("blade-auto-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("target.json");
        shifted.save(&path).unwrap();
        let back = BayesianTarget::load(&path).unwrap();
        assert_eq!(back, shifted);
        for p in 0..20 {
            assert_eq!(back.tau(p), shifted.tau(p));
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
