//! The alignment loop (docs/METHOD.md section 4): each step is rollout -> score -> signal ->
//! optimise -> record, one call each; validation, best-checkpoint selection and checkpoints
//! sit around it. Nothing here depends on which method runs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use blade_data::ItemId;
use burn::module::{ModuleVisitor, Param, ParamId};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::config::{AlignConfig, DynamicSampling, KlEstimator, RatioLevel};
use super::loss::{
    advantages, entropy_surrogate, k1_mean, kl_estimate, kl_penalised, mean_group_std, vec_tensor,
    zero_spread_share,
};
use super::methods::{LossInputs, Objective, Signal, TokenInputs};
use super::record::{paired_gain_p, save_json, write_curves, AlignSummary, RunState, StepRecord};
use super::reference::{ceilings, reference_cache, Ceilings, ReferenceCache};
use super::rollout::{batch_of, contexts, prompt_pool, sample_and_score, PoolPrompt, ScoredGroups};
use super::shard::{as_lists, list_log_probs, scored as scored_pass, Scoring, Sharded};
use super::{host, AlignInputs, AlignPolicy};
use crate::batch::PromptBatch;
use crate::checkpoint::{
    check_same_settings, checkpoint_name, folder_fingerprint, publish_copy, remove_any,
    Checkpoints, BEST, STEP,
};
use crate::dashboard::LiveDashboard;
use crate::error::CoreError;
use crate::policy::{DecodeStrategy, Recommender, SampleSpec};
use crate::reward::{mean_optimum, parse_reward, score_group, ListReward, RewardContext};
use crate::sft::Dashboard;
use crate::target::BayesianTarget;

/// Lists a thread of reference log-probabilities holds at least.
const REF_ROWS_PER_THREAD: usize = 32;

/// Folder of the best checkpoint inside a run folder.
pub const BEST_DIR: &str = "best";

/// What an alignment run leaves behind.
pub struct AlignOutcome<P> {
    /// The aligned policy at the last step (inference mode).
    pub model: P,
    /// Per-step curves.
    pub curves: Vec<StepRecord>,
    /// Where the last model was written (`model.bpk` in the run folder; a policy whose
    /// `save_run` writes other files keeps them beside it). The best is in `best/`.
    pub model_path: PathBuf,
    /// Reward of the aligned policy against the reference on the same prompts, the ceilings and
    /// the best checkpoint.
    pub summary: AlignSummary,
}

/// Validation: greedy lists of the (capped) validation prompts, their NDCG@10 and the
/// selection metric.
struct Validation<'a> {
    prompts: Vec<PoolPrompt>,
    select: Box<dyn ListReward + 'a>,
}

impl Validation<'_> {
    fn run<R: Recommender + ?Sized>(
        &self,
        model: &R,
        k: usize,
        mask: bool,
        inputs: &AlignInputs,
    ) -> crate::Result<(f64, f64, Vec<f64>)> {
        let all: Vec<usize> = (0..self.prompts.len()).collect();
        let mut ndcg = 0.0;
        let mut users = Vec::with_capacity(all.len());
        for part in all.chunks(512) {
            let lists = model.decode(
                &batch_of(&self.prompts, part, mask),
                k,
                DecodeStrategy::Greedy,
            )?;
            let ctx: Vec<RewardContext> = part
                .iter()
                .map(|&i| RewardContext {
                    user: Some(self.prompts[i].user),
                    history: &self.prompts[i].seen,
                    window: &self.prompts[i].history,
                    targets: &self.prompts[i].targets,
                    catalog: inputs.catalog,
                })
                .collect();
            for (l, &i) in lists.iter().zip(part) {
                ndcg += blade_metrics::ndcg_at_k(l, &self.prompts[i].targets, 10);
            }
            users.extend(
                score_group(self.select.as_ref(), &ctx, &lists)?
                    .iter()
                    .map(|&x| f64::from(x)),
            );
        }
        let n = self.prompts.len().max(1) as f64;
        let metric = users.iter().sum::<f64>() / n;
        Ok((ndcg / n, metric, users))
    }
}

/// The global L2 norm of the gradients of `module`'s float parameters.
struct GradNorm<'a> {
    grads: &'a GradientsParams,
    squares: Vec<Tensor<1>>,
}

impl ModuleVisitor for GradNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.squares.push(g.powi_scalar(2).sum());
        }
    }
}

/// Multiplies every gradient of `module`'s float parameters by `scale`.
struct ScaleGrads<'a> {
    grads: &'a mut GradientsParams,
    scale: f64,
}

impl ModuleVisitor for ScaleGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let id: ParamId = param.id;
        if let Some(g) = self.grads.remove::<D>(id) {
            self.grads.register(id, g * self.scale);
        }
    }
}

/// The global gradient norm; with `max`, gradients above it are scaled down to it.
fn clip_grad_norm<M: Module>(
    module: &M,
    grads: &mut GradientsParams,
    max: Option<f64>,
) -> crate::Result<f64> {
    let mut v = GradNorm {
        grads,
        squares: Vec::new(),
    };
    module.visit(&mut v);
    if v.squares.is_empty() {
        return Ok(0.0);
    }
    let total = host(Tensor::cat(v.squares, 0).sum())?;
    let norm = f64::from(total.first().copied().unwrap_or(f32::NAN)).sqrt();
    if let Some(max) = max {
        if norm > max {
            module.visit(&mut ScaleGrads {
                grads,
                scale: max / norm,
            });
        }
    }
    Ok(norm)
}

/// Drops the groups whose raw reward has zero spread from `scored` and `signal` (DAPO's
/// dynamic sampling); returns how many were dropped.
fn drop_zero_spread(scored: &mut ScoredGroups, signal: &mut Signal) -> usize {
    let keep: Vec<bool> = (0..scored.groups())
        .map(|i| !scored.zero_spread(i))
        .collect();
    scored.retain_groups(&keep);
    signal.retain_groups(&keep, scored.g);
    keep.iter().filter(|&&k| !k).count()
}

/// The trainer's state between steps.
struct Trainer<'a, P: AlignPolicy> {
    cfg: &'a AlignConfig,
    inputs: &'a AlignInputs<'a>,
    store: Checkpoints,
    pool: Vec<PoolPrompt>,
    reference: P,
    policy: P,
    optim: ModuleOptimizer,
    objective: Box<dyn Objective<P>>,
    target: BayesianTarget,
    ref_max: Vec<f32>,
    spec: SampleSpec,
}

/// What `optimise` reports.
#[derive(Default)]
struct Optimised {
    loss: f64,
    kl: f64,
    kl_k1: f64,
    next_nll: f64,
    rank_kl: f64,
    clip: super::loss::ClipStats,
    grad_norm: f64,
    lr: f64,
}

impl<P: AlignPolicy + 'static> Trainer<'_, P> {
    fn draw(&self, rng: &mut StdRng, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| rng.random_range(0..self.pool.len()))
            .collect()
    }

    /// Samples G lists for each prompt `idx` from the current policy and scores them.
    fn rollout(&self, idx: &[usize], rng: &mut StdRng) -> crate::Result<ScoredGroups> {
        sample_and_score(
            &self.policy,
            &self.pool,
            idx,
            &self.spec,
            self.cfg.mask_history,
            self.inputs.reward,
            self.inputs.catalog,
            usize::MAX,
            rng,
        )
    }

    /// The method's signal, then dynamic sampling: zero-spread groups dropped and, with refill,
    /// replaced by fresh prompts. Returns the groups that reach the loss and the dropped count.
    fn signal(
        &mut self,
        mut scored: ScoredGroups,
        mut signal: Signal,
        rng: &mut StdRng,
    ) -> crate::Result<(ScoredGroups, Signal, usize)> {
        let rounds = match self.cfg.optim.dynamic_sampling {
            DynamicSampling::Off => return Ok((scored, signal, 0)),
            DynamicSampling::Drop => 0,
            DynamicSampling::Refill(r) => r,
        };
        let mut dropped = drop_zero_spread(&mut scored, &mut signal);
        for _ in 0..rounds {
            let need = self.cfg.prompts_per_step.saturating_sub(scored.groups());
            if need == 0 {
                break;
            }
            let idx = self.draw(rng, need);
            let mut more = self.rollout(&idx, rng)?;
            let mut s = self
                .objective
                .signal(&more, &mut self.target, &self.cfg.optim)?;
            dropped += drop_zero_spread(&mut more, &mut s);
            signal.append(s, scored.groups());
            scored.append(more);
        }
        Ok((scored, signal, dropped))
    }

    /// `inner_epochs` optimiser steps on the batch.
    fn optimise(
        &mut self,
        step: usize,
        scored: &ScoredGroups,
        signal: &Signal,
    ) -> crate::Result<Optimised> {
        let cfg = self.cfg;
        let o = &cfg.optim;
        let mut out = Optimised::default();
        if scored.groups() == 0 {
            return Ok(out);
        }
        // the step's prompts, one per group, and repeated for the group's lists
        let step_prompts = batch_of(&self.pool, &scored.prompt_ids, cfg.mask_history);
        let prompts = step_prompts.repeat_each(scored.g);
        // the reference's log-probabilities: no gradient, rows independent, so in row shards
        // on threads
        let temperature = cfg.rollout_temperature;
        let ref_logp = {
            let kl_ref = self.objective.kl_reference(&self.reference);
            crate::parallel::map_rows(kl_ref, prompts.len(), REF_ROWS_PER_THREAD, |m, r| {
                let lists = &scored.lists[r.clone()];
                host(list_log_probs(m, &prompts.slice(r), lists, temperature)?)
            })?
        };
        // the sampler reports log-probabilities at temperature 1; at another temperature the
        // old log-probabilities are the first epoch's own (the same weights), detached
        let mut old_tempered: Option<Vec<f32>> = None;
        // token-level ratios: the sampling policy's per-token log-probabilities are the
        // policy's own before the first update of the step (the same weights), detached
        let mut old_tokens: Option<Tensor<2>> = None;
        let mut penalised: Option<Signal> = None;
        let token_level = o.ratio != RatioLevel::Sequence;
        let how = Scoring {
            token_level,
            temperature,
        };
        let device = self.inputs.device.clone().autodiff();
        // the reference's first-slot probabilities, once per step (no gradient)
        let anchor = if o.rank_kl > 0.0 {
            let p = self.reference.first_slot_log_probs(&step_prompts)?.exp();
            Some(Tensor::<2>::from_data(p.into_data(), &device))
        } else {
            None
        };
        for epoch in 0..cfg.inner_epochs {
            // with several shards, the forward and backward passes run on as many threads
            // (`shard`: the same gradient up to summation order)
            let sharded = if cfg.grad_shards > 1 || cfg.recompute {
                Some(Sharded::forward(
                    &self.policy,
                    &device,
                    &prompts,
                    &scored.lists,
                    how,
                    cfg.grad_shards,
                    cfg.recompute,
                )?)
            } else {
                None
            };
            let (new_logp, tokens) = match &sharded {
                Some(sh) => sh.outputs(),
                None => {
                    let (values, mask) = scored_pass(&self.policy, &prompts, &scored.lists, how)?;
                    as_lists(values, mask)
                }
            };
            if let (Some(t), None) = (&tokens, &old_tokens) {
                old_tokens = Some(t.values.clone().detach());
            }
            if temperature != 1.0 && old_tempered.is_none() {
                old_tempered = Some(host(new_logp.clone().detach())?);
            }
            let refp = vec_tensor(&ref_logp, &new_logp.device());
            let old_logp = old_tempered.as_deref().unwrap_or(&scored.log_probs);
            if epoch == 0 {
                out.kl_k1 = k1_mean(old_logp, &ref_logp);
            }
            // the KL penalty in the reward: the advantages of the penalised signal, once per
            // step (the sampling policy's and the reference's log-probabilities are fixed)
            if o.kl == KlEstimator::Reward && penalised.is_none() {
                let values = kl_penalised(&signal.values, old_logp, &ref_logp, o.beta_kl);
                penalised = Some(Signal {
                    advantages: advantages(&values, scored.g, o.advantage, o.std_eps),
                    ..signal.clone()
                });
            }
            let inputs = LossInputs {
                g: scored.g,
                list_len: cfg.list_len,
                old_logp,
                ref_logp: &refp,
                signal: penalised.as_ref().unwrap_or(signal),
                optim: o,
                tokens: match (&tokens, &old_tokens) {
                    (Some(new), Some(old)) => Some(TokenInputs { new, old }),
                    _ => None,
                },
            };
            let (main, parts) = self.objective.loss(&new_logp, &inputs)?;
            let kl = kl_estimate(&new_logp, &refp, o.kl);
            let mut total = if o.kl == KlEstimator::Reward {
                main
            } else {
                main + kl.clone() * o.beta_kl
            };
            if o.entropy_coef > 0.0 {
                total = total - entropy_surrogate(&new_logp) * o.entropy_coef;
            }
            // the next-item term (PPO-ptx) and the ranking anchor, on the policy itself,
            // outside the shards
            if o.ptx_coef > 0.0 {
                let nll = self.next_item_nll(&step_prompts, &scored.prompt_ids)?;
                out.next_nll = scalar(nll.clone())?;
                total = total + nll * o.ptx_coef;
            }
            if let Some(p_ref) = &anchor {
                let kl = self.rank_anchor(&step_prompts, p_ref.clone())?;
                out.rank_kl = scalar(kl.clone())?;
                total = total + kl * o.rank_kl;
            }
            let direct = o.ptx_coef > 0.0 || anchor.is_some();
            let loss = scalar(total.clone())?;
            if !loss.is_finite() {
                return Err(CoreError::Diverged(format!(
                    "{} at step {step}: the loss is {loss} (lower --align-lr, check --beta-kl \
                     and the reward)",
                    cfg.method.method().name()
                )));
            }
            out.loss = loss;
            out.kl = scalar(kl)?;
            out.clip = parts.clip;
            let mut grads = match sharded {
                Some(sh) => {
                    let back = total.backward();
                    let mut grads = sh.backward(&back)?;
                    if direct {
                        // the shards carry the lists' terms; the next-item term and the
                        // anchor reached the policy's own parameters
                        let mut own = GradientsParams::from_grads(back, &self.policy);
                        crate::parallel::add_grads(&self.policy, &mut grads, &mut own);
                    }
                    grads
                }
                None => GradientsParams::from_grads(total.backward(), &self.policy),
            };
            out.grad_norm = clip_grad_norm(&self.policy, &mut grads, o.max_grad_norm)?;
            let t = (step - 1) * cfg.inner_epochs + epoch;
            out.lr = o.schedule.rate(o.lr, t, cfg.total_updates(), o.warmup);
            self.policy = self.optim.step(out.lr, self.policy.clone(), grads);
        }
        self.objective.after_update(&self.policy);
        Ok(out)
    }

    /// The mean cross-entropy of the training next item (each prompt's first target) as a
    /// one-item list, over the step's prompts (`prompts`, the batch of the pool's prompts `ids`,
    /// one per group): the PPO-ptx term, on the autodiff policy.
    fn next_item_nll(&self, prompts: &PromptBatch, ids: &[usize]) -> crate::Result<Tensor<1>> {
        let lists: Vec<Vec<ItemId>> = ids.iter().map(|&i| vec![self.pool[i].targets[0]]).collect();
        Ok(self.policy.log_prob(prompts, &lists)?.mean().neg())
    }

    /// The ranking anchor: `KL(p_ref || pi)` of the first-slot distributions over the whole
    /// catalogue, mean over the step's `prompts`, on the autodiff policy; `p_ref` the
    /// reference's probabilities (`[prompts, items]`, computed once per step).
    fn rank_anchor(&self, prompts: &PromptBatch, p_ref: Tensor<2>) -> crate::Result<Tensor<1>> {
        let logp = self.policy.first_slot_log_probs(prompts)?;
        // sum_j p_j (log p_j - log pi_j); masked items have p_j = 0 and add nothing
        let log_ref = p_ref.clone().clamp_min(1e-30).log();
        let n = prompts.len();
        Ok((p_ref * (log_ref - logp)).sum_dim(1).reshape([n]).mean())
    }

    /// The diagnostics of the step's rollouts (before dynamic sampling).
    fn record(&self, step: usize, scored: &ScoredGroups, signal: &Signal) -> StepRecord {
        let g = scored.g;
        let raw: Vec<f64> = scored.rewards.iter().map(|&r| f64::from(r)).collect();
        let nb = scored.groups().max(1) as f64;
        let (mut tau, mut saturated, mut tied, mut beyond, mut distinct) =
            (0.0, 0.0, 0.0, 0.0, 0.0);
        for (i, &pid) in scored.prompt_ids.iter().enumerate() {
            let grp = scored.group_rewards(i);
            tau += self.target.tau(pid as u64);
            saturated += self.target.saturated_share(pid as u64, grp);
            let max = self.ref_max[pid];
            tied += grp.iter().filter(|&&r| r == max).count() as f64 / g as f64;
            beyond += grp.iter().filter(|&&r| r > max).count() as f64 / g as f64;
            distinct += scored.distinct_lists(i) as f64;
        }
        StepRecord {
            step,
            reward: raw.iter().sum::<f64>() / raw.len().max(1) as f64,
            reward_std: mean_group_std(&raw, g),
            proxy: signal.values.iter().sum::<f64>() / signal.values.len().max(1) as f64,
            proxy_std: mean_group_std(&signal.values, g),
            tau: tau / nb,
            entropy: -scored.log_probs.iter().map(|&x| f64::from(x)).sum::<f64>()
                / scored.log_probs.len().max(1) as f64,
            saturated: saturated / nb,
            zero_spread_raw: zero_spread_share(&raw, g),
            zero_spread_signal: zero_spread_share(&signal.values, g),
            distinct_lists: distinct / nb,
            saturated_tied: tied / nb,
            saturated_beyond: beyond / nb,
            ..StepRecord::default()
        }
    }

    /// Writes one checkpoint, `checkpoint/step-N`: the policy (through
    /// [`AlignPolicy::save_run`]), the optimiser, the target, the method's state and the run's
    /// progress, published as one folder (see [`crate::checkpoint`]); older checkpoints and
    /// best models no longer referenced are removed.
    fn checkpoint(&self, state: &RunState) -> crate::Result<()> {
        let name = checkpoint_name(STEP, state.step);
        let stage = self.store.stage(&name)?;
        self.policy.valid().save_run(&stage, self.inputs.init)?;
        let p = stage.join("optim.bpk");
        self.optim.save(&p).map_err(|e| CoreError::file(&p, e))?;
        self.target.save(&stage.join("target.json"))?;
        self.objective.save_state(&stage)?;
        save_json(&stage.join("state.json"), state)?;
        self.store
            .publish(&name, &[checkpoint_name(BEST, state.best_step)], true)?;
        Ok(())
    }

    /// Validates, and keeps the model as `checkpoint/best-<step>` when the selection metric
    /// improved on the best so far and, after step 0, its gain over step 0 passes the paired
    /// test at [`AlignConfig::select_level`]. Returns NDCG@10, the selection metric and (after
    /// step 0) the gain's p-value.
    fn validate(
        &self,
        v: &Validation,
        state: &mut RunState,
        step: usize,
        dash: &mut LiveDashboard,
    ) -> crate::Result<(f64, f64, Option<f64>)> {
        let (ndcg, metric, users) = v.run(
            &self.policy.valid(),
            self.cfg.list_len,
            self.cfg.mask_history,
            self.inputs,
        )?;
        dash.valid("valid NDCG@10 (greedy lists)", ndcg, true);
        let p = if step == 0 {
            state.start_users = users;
            None
        } else {
            Some(paired_gain_p(&users, &state.start_users))
        };
        // select_p = 1 keeps the plain rule (a run resumed from before the test was recorded
        // has no per-user start, and its settings say 1)
        let level = self.cfg.select_level();
        let sure = self.cfg.select_p >= 1.0 || p.is_none_or(|p| p < level);
        if sure && state.best_metric.is_none_or(|b| metric > b) {
            // kept as checkpoint/best-N until the end of the run, published before the step
            // checkpoint that refers to it
            let name = checkpoint_name(BEST, step);
            let stage = self.store.stage(&name)?;
            self.policy.valid().save_run(&stage, self.inputs.init)?;
            self.store.publish(&name, &[], false)?;
            state.best_metric = Some(metric);
            state.best_step = step;
            state.best_p = p;
            state.evals_since_best = 0;
        } else {
            state.evals_since_best += 1;
        }
        Ok((ndcg, metric, p))
    }
}

/// The value of a one-element tensor (a loss, a KL) on the host, NaN if it has none.
fn scalar(t: Tensor<1>) -> crate::Result<f64> {
    Ok(host(t)?.first().copied().map_or(f64::NAN, f64::from))
}

/// Settings of `align.json` that do not change a run's results: a resume may change them, and
/// a finished run made with other values still stands for these settings.
const RESULT_NEUTRAL: [&str; 2] = ["checkpoint_every", "recompute"];

/// A saved `align.json` as JSON, completed where older versions wrote less: runs made before
/// `grad_shards` existed computed each gradient in one pass, and sampled at temperature 1.
fn saved_settings(text: &str) -> serde_json::Result<serde_json::Value> {
    let mut saved: serde_json::Value = serde_json::from_str(text)?;
    if let Some(o) = saved.as_object_mut() {
        o.entry("grad_shards").or_insert(serde_json::json!(1));
        o.entry("rollout_temperature")
            .or_insert(serde_json::json!(1.0));
        // and took every higher validation mean as the best checkpoint
        o.entry("select_p").or_insert(serde_json::json!(1.0));
        // and, once it did, tested each evaluation at select_p itself
        o.entry("select_correction")
            .or_insert(serde_json::json!("none"));
        o.entry("valid_holdout").or_insert(serde_json::json!(false));
        // and had neither the next-item term nor the ranking anchor
        if let Some(m) = o.get_mut("optim").and_then(|m| m.as_object_mut()) {
            m.entry("ptx_coef").or_insert(serde_json::json!(0.0));
            m.entry("rank_kl").or_insert(serde_json::json!(0.0));
        }
        // and chose BLADE's tau without the spread rule
        if let Some(m) = o.get_mut("method").and_then(|m| m.as_object_mut()) {
            if m.get("method").and_then(|n| n.as_str()) == Some("blade") {
                m.entry("tau_spread").or_insert(serde_json::Value::Null);
            }
        }
    }
    Ok(saved)
}

/// Whether a run whose `align.json` holds `saved` was trained with settings that give the
/// results `cfg` gives: every setting equal except those that change no result
/// (`checkpoint_every`, `recompute`), a setting missing from an older file read as the value
/// that version used. `blade compare` reuses a finished run only when this holds.
pub fn same_results(saved: &str, cfg: &AlignConfig) -> bool {
    let Ok(saved) = saved_settings(saved) else {
        return false;
    };
    check_same_settings(&saved, cfg, &RESULT_NEUTRAL, Path::new("align.json")).is_ok()
}

/// Whether the unfinished run in `dir` can continue as a run of `cfg` on the reward named
/// `reward` from the SFT run whose [`folder_fingerprint`] is `init`: its `align.json` holds
/// settings with the same results and its latest checkpoint records that reward and that SFT
/// run. (Checkpoints from before those were recorded do not qualify.) A resumed run is
/// bit-identical to an uninterrupted one (docs/METHOD.md section 7), so `blade compare`
/// continues such a run instead of training it again.
pub fn resumable(dir: &Path, cfg: &AlignConfig, reward: &str, init: &str) -> bool {
    let same = std::fs::read_to_string(dir.join("align.json"))
        .is_ok_and(|saved| same_results(&saved, cfg));
    let Some((_, ck)) = Checkpoints::of_run(dir).latest(STEP) else {
        return false;
    };
    same && std::fs::read_to_string(ck.join("state.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<RunState>(&t).ok())
        .is_some_and(|s| s.reward == reward && s.init == init)
}

/// Runs alignment from the SFT run in `inputs.init`, writing the run into `dir`; with
/// `resume`, continues from the run's last checkpoint (policy, optimiser, target, method state,
/// step).
///
/// The policy type is chosen by the caller, e.g. `train_align::<ItemLm>(..)`: the trained copy
/// is `P::load_run(inputs.init, ..)` on the autodiff device (from `dir` when resuming), the
/// reference its `valid()` copy on `inputs.device` (sharing its weight buffers; loaded from
/// `init` again when resuming), and checkpoints go through [`AlignPolicy::save_run`].
pub fn train_align<P: AlignPolicy + 'static>(
    cfg: &AlignConfig,
    inputs: &AlignInputs,
    dir: &Path,
    dashboard: Dashboard,
    resume: bool,
) -> crate::Result<AlignOutcome<P>> {
    cfg.check()?;
    let select = parse_reward(&cfg.select, inputs.catalog)
        .map_err(|e| CoreError::Config(format!("the selection metric {e}")))?;
    let valid_cases = &inputs.split.valid[..cfg
        .valid_users
        .unwrap_or(usize::MAX)
        .min(inputs.split.valid.len())];
    let mut pool = prompt_pool(inputs.split, cfg.prompt_pool, cfg.train_targets);
    if cfg.valid_holdout {
        let held: std::collections::HashSet<_> = valid_cases.iter().map(|c| c.user).collect();
        pool.retain(|p| !held.contains(&p.user));
        if pool.is_empty() {
            return Err(CoreError::Config(format!(
                "--valid-holdout: all {} users with training windows validate, none is left to \
                 align on; validate on fewer with --valid-users N",
                held.len()
            )));
        }
    }
    if pool.is_empty() {
        return Err(CoreError::Config("no training windows to align on".into()));
    }
    let ad = inputs.device.clone().autodiff();
    let store = Checkpoints::of_run(dir);
    let cfg_path = dir.join("align.json");
    // a resume without a complete checkpoint is an error: restarting silently from step 0
    // would overwrite the run that was meant to continue; so is a resume with other settings
    let resumed: Option<(PathBuf, RunState)> = if resume {
        let Some((_, ck)) = store.latest(STEP) else {
            return Err(CoreError::file(
                store.root(),
                "cannot resume: no complete alignment checkpoint here; run without --resume to \
                 start this folder afresh",
            ));
        };
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| {
            CoreError::file(
                &cfg_path,
                format!("cannot resume: no readable alignment config ({e})"),
            )
        })?;
        let saved = saved_settings(&text).map_err(|e| {
            CoreError::file(
                &cfg_path,
                format!("cannot resume: not an alignment config ({e})"),
            )
        })?;
        let mut ignore = vec!["steps", "patience"];
        ignore.extend(RESULT_NEUTRAL);
        check_same_settings(&saved, cfg, &ignore, &cfg_path)?;
        let state_path = ck.join("state.json");
        let text = std::fs::read_to_string(&state_path).map_err(|e| {
            CoreError::file(
                &state_path,
                format!("cannot resume: unreadable state ({e})"),
            )
        })?;
        let state: RunState = serde_json::from_str(&text).map_err(|e| {
            CoreError::file(
                &state_path,
                format!("cannot resume: not an alignment checkpoint state ({e})"),
            )
        })?;
        let reward = inputs.reward.name();
        if !state.reward.is_empty() && state.reward != reward {
            return Err(CoreError::file(
                &state_path,
                format!(
                    "cannot resume: the run trains on the reward `{}`, not `{reward}` (--reward); \
                     resume with its reward, or start another folder",
                    state.reward
                ),
            ));
        }
        Some((ck, state))
    } else {
        None
    };
    let policy_src = resumed.as_ref().map_or(inputs.init, |(ck, _)| ck.as_path());
    let policy = P::load_run(policy_src, &ad)?;
    // the frozen reference: from the policy itself when both come from `init`, so that they
    // share their weight buffers (the backend's tensors are reference-counted and copied on
    // write); a LoRA policy then holds one copy of its frozen base, not two
    let reference = match resumed {
        None => policy.valid(),
        Some(_) => P::load_run(inputs.init, inputs.device)?,
    };
    reference.check_fit(cfg.list_len, inputs.split.max_history)?;
    // the SFT run as it is now: a run aligned from another one (or from this one before it
    // changed) is not continued
    let init = folder_fingerprint(inputs.init)?;
    if let Some((ck, state)) = resumed.as_ref() {
        if !state.init.is_empty() && state.init != init {
            return Err(CoreError::file(
                ck.join("state.json"),
                format!(
                    "cannot resume: the run was aligned from another SFT model than --init {} \
                     holds now (fingerprint {}, now {init}); resume with that SFT run, or start \
                     another folder",
                    inputs.init.display(),
                    state.init
                ),
            ));
        }
    }
    if cfg.optim.rank_kl > 0.0 && !policy.has_first_slot() {
        return Err(CoreError::Config(format!(
            "--rank-kl {}: this policy has no catalogue-wide first-slot distribution (the item \
             policy has; an LLM policy scores titles one by one)",
            cfg.optim.rank_kl
        )));
    }
    if cfg.rollout_temperature != 1.0 && !policy.scores_at_any_temperature() {
        return Err(CoreError::Config(format!(
            "--rollout-temperature {}: this policy scores lists at temperature 1 only",
            cfg.rollout_temperature
        )));
    }
    let mut optim = AdamConfig::new().init();
    let mut objective = cfg.method.objective(&reference);
    if let Some((ck, _)) = resumed.as_ref() {
        let p = ck.join("optim.bpk");
        optim = optim.load(&p).map_err(|e| CoreError::file(&p, e))?;
        objective.load_state(ck)?;
    }
    let valid = Validation {
        prompts: valid_cases.iter().map(PoolPrompt::from_case).collect(),
        select,
    };
    let cache = reference_cache(cfg, inputs, &reference, &pool, &valid.prompts)?;
    let target = match resumed.as_ref() {
        Some((ck, _)) => BayesianTarget::load(&ck.join("target.json"))?,
        None => {
            let mut t = BayesianTarget::new(cfg.method.target_config())?;
            for (i, r) in cache.rewards.iter().enumerate() {
                t.set_reference(i as u64, r)?;
            }
            t
        }
    };
    std::fs::create_dir_all(dir).map_err(|e| CoreError::file(dir, e))?;
    // from here on the run folder changes (everything that can fail on the inputs has been
    // done): a run that is not finished has no summary.json
    remove_any(&dir.join("summary.json"))?;
    if resumed.is_some() {
        store.remove_stale()?;
    } else {
        store.clear()?;
    }
    save_json(&cfg_path, cfg)?;
    let mut t = Trainer {
        cfg,
        inputs,
        store,
        ref_max: cache
            .rewards
            .iter()
            .map(|r| r.iter().copied().fold(f32::NEG_INFINITY, f32::max))
            .collect(),
        pool,
        reference,
        policy,
        optim,
        objective,
        target,
        spec: SampleSpec {
            lists_per_prompt: cfg.group_size,
            list_len: cfg.list_len,
            temperature: cfg.rollout_temperature,
            ..SampleSpec::default()
        },
    };
    let mut state = resumed.map(|(_, s)| s).unwrap_or_default();
    state.reward = inputs.reward.name();
    state.init = init;
    let name = cfg.method.method().name();
    let mut dash = LiveDashboard::new(dashboard, &format!("align {name}"), cfg.steps);
    dash.begin(cfg.steps);
    if state.step == 0 {
        let (ndcg, metric, _) = t.validate(&valid, &mut state, 0, &mut dash)?;
        state.curves.push(StepRecord {
            step: 0,
            valid_ndcg: Some(ndcg),
            valid_metric: Some(metric),
            ..StepRecord::default()
        });
    }
    while state.step < cfg.steps && !state.stopped_early {
        if dash.should_stop() {
            break;
        }
        let step = state.step + 1;
        let t0 = Instant::now();
        let mut rng =
            StdRng::seed_from_u64(cfg.seed.wrapping_mul(1_000_003).wrapping_add(step as u64));
        // rollout and score
        let idx = t.draw(&mut rng, cfg.prompts_per_step);
        let scored = t.rollout(&idx, &mut rng)?;
        // signal
        let ts = Instant::now();
        let first = t.objective.signal(&scored, &mut t.target, &cfg.optim)?;
        let mut rec = t.record(step, &scored, &first);
        let (used, signal, dropped) = t.signal(scored, first, &mut rng)?;
        let seconds_target = ts.elapsed().as_secs_f64();
        // optimise
        let tg = Instant::now();
        let opt = t.optimise(step, &used, &signal)?;
        // record
        rec.kl = opt.kl;
        rec.kl_k1 = opt.kl_k1;
        rec.next_nll = opt.next_nll;
        rec.rank_kl = opt.rank_kl;
        rec.loss = opt.loss;
        rec.clip_frac = opt.clip.clip_frac;
        rec.clip_low = opt.clip.clip_low;
        rec.clip_high = opt.clip.clip_high;
        rec.grad_norm = opt.grad_norm;
        rec.lr = opt.lr;
        rec.groups_used = used.groups();
        rec.groups_dropped = dropped;
        rec.seconds_grad = tg.elapsed().as_secs_f64();
        rec.seconds_target = seconds_target;
        rec.seconds_step = t0.elapsed().as_secs_f64();
        rec.lists_per_sec = (cfg.prompts_per_step + dropped) as f64 * cfg.group_size as f64
            / rec.seconds_step.max(1e-9);
        dash.train("reward", rec.reward, true);
        dash.train("proxy reward", rec.proxy, true);
        dash.train("group std (proxy)", rec.proxy_std, true);
        dash.train("zero-spread groups (raw)", rec.zero_spread_raw, false);
        dash.train("distinct lists per group", rec.distinct_lists, true);
        dash.train("tau", rec.tau, true);
        dash.train("KL to reference", rec.kl, false);
        dash.train("KL k1", rec.kl_k1, false);
        if cfg.optim.ptx_coef > 0.0 {
            dash.train("next-item NLL", rec.next_nll, false);
        }
        if cfg.optim.rank_kl > 0.0 {
            dash.train("ranking KL", rec.rank_kl, false);
        }
        dash.train("entropy", rec.entropy, true);
        dash.train("saturated share", rec.saturated, false);
        let last = step == cfg.steps;
        dash.progress(step);
        let eval_now = last || (cfg.eval_every > 0 && step.is_multiple_of(cfg.eval_every));
        if eval_now {
            let (ndcg, metric, p) = t.validate(&valid, &mut state, step, &mut dash)?;
            rec.valid_ndcg = Some(ndcg);
            rec.valid_metric = Some(metric);
            rec.valid_p = p;
            if cfg.patience.is_some_and(|p| state.evals_since_best >= p) {
                state.stopped_early = true;
            }
        }
        state.curves.push(rec);
        state.step = step;
        // the final state is checkpointed once, after the loop
        let every = cfg.checkpoint_every > 0 && step.is_multiple_of(cfg.checkpoint_every);
        if !last && !state.stopped_early && (eval_now || every) {
            t.checkpoint(&state)?;
        }
    }
    dash.finish();
    t.checkpoint(&state)?;
    // the run's outputs, from the final checkpoint; summary.json goes last
    t.policy.valid().save_run(dir, inputs.init)?;
    let best = t.store.path(&checkpoint_name(BEST, state.best_step));
    if best.is_dir() {
        publish_copy(&best, &dir.join(BEST_DIR))?;
    }
    write_curves(&dir.join("curves.csv"), &state.curves)?;
    let summary = summarize(cfg, inputs, &t, &cache, &state)?;
    save_json(&dir.join("summary.json"), &summary)?;
    Ok(AlignOutcome {
        model: t.policy.valid(),
        curves: state.curves,
        model_path: dir.join("model.bpk"),
        summary,
    })
}

fn summarize<P: AlignPolicy + 'static>(
    cfg: &AlignConfig,
    inputs: &AlignInputs,
    t: &Trainer<P>,
    cache: &ReferenceCache,
    state: &RunState,
) -> crate::Result<AlignSummary> {
    let n = t.pool.len().min(512);
    let idx: Vec<usize> = (0..n).collect();
    let spec = SampleSpec {
        lists_per_prompt: cfg.reference_lists,
        ..t.spec.clone()
    };
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0xa11_6ed);
    let policy = t.policy.valid();
    let scored = sample_and_score(
        &policy,
        &t.pool,
        &idx,
        &spec,
        cfg.mask_history,
        inputs.reward,
        inputs.catalog,
        64,
        &mut rng,
    )?;
    let total: f64 = scored.rewards.iter().map(|&x| f64::from(x)).sum();
    let reference: Vec<f64> = cache.rewards[..n]
        .iter()
        .flatten()
        .map(|&x| f64::from(x))
        .collect();
    let curves = &state.curves;
    let n_bon = t.target.config().n;
    Ok(AlignSummary {
        method: cfg.method.method().name().into(),
        reward: inputs.reward.name(),
        init: state.init.clone(),
        prompts: n,
        reference_reward: reference.iter().sum::<f64>() / reference.len().max(1) as f64,
        policy_reward: total / scored.rewards.len().max(1) as f64,
        valid_ndcg_start: curves.first().and_then(|c| c.valid_ndcg),
        valid_ndcg_end: curves.iter().rev().find_map(|c| c.valid_ndcg),
        non_finite: !curves.iter().skip(1).all(StepRecord::is_finite),
        select: cfg.select.clone(),
        best_step: state.best_step,
        best_metric: state.best_metric,
        best_p: state.best_p,
        steps_run: state.step,
        stopped_early: state.stopped_early,
        ceilings_pool: Ceilings {
            optimum: mean_optimum(
                inputs.reward,
                &contexts(
                    &t.pool,
                    &(0..t.pool.len()).collect::<Vec<_>>(),
                    1,
                    inputs.catalog,
                ),
            ),
            ..ceilings(&cache.rewards, n_bon)
        },
        ceilings_valid: ceilings(&cache.valid_rewards, n_bon),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::align::methods::Preference;
    use crate::align::Method;

    #[test]
    fn dynamic_sampling_leaves_no_zero_spread_group() {
        let mut scored = ScoredGroups {
            g: 2,
            prompt_ids: vec![4, 5, 6],
            lists: vec![vec![1], vec![2], vec![3], vec![4], vec![5], vec![6]],
            log_probs: vec![-1.0, -2.0, -3.0, -4.0, -5.0, -6.0],
            rewards: vec![0.0, 0.0, 0.0, 1.0, 0.5, 0.5],
        };
        let mut signal = Signal {
            values: scored.rewards.iter().map(|&r| f64::from(r)).collect(),
            advantages: vec![0.0, 0.0, -1.0, 1.0, 0.0, 0.0],
            imitate: vec![0, 1, 0],
            preferences: vec![Preference {
                group: 1,
                winner: 1,
                losers: vec![0],
            }],
        };
        assert_eq!(drop_zero_spread(&mut scored, &mut signal), 2);
        assert_eq!(scored.prompt_ids, vec![5]);
        assert!((0..scored.groups()).all(|i| !scored.zero_spread(i)));
        assert_eq!(scored.lists, vec![vec![3], vec![4]]);
        assert_eq!(signal.advantages, vec![-1.0, 1.0]);
        assert_eq!(signal.imitate, vec![1]);
        assert_eq!(signal.preferences[0].group, 0);
    }

    #[test]
    fn a_finished_run_stands_for_the_settings_that_give_its_results() {
        let cfg = AlignConfig::new(Method::Blade.default_config());
        let saved = serde_json::to_string(&cfg).unwrap();
        assert!(same_results(&saved, &cfg));
        // a file written before `recompute` existed, and a run with it on: same results
        let mut v: serde_json::Value = serde_json::from_str(&saved).unwrap();
        v.as_object_mut().unwrap().remove("recompute");
        assert!(same_results(&v.to_string(), &cfg));
        // one from before `rollout_temperature` sampled at temperature 1
        v.as_object_mut().unwrap().remove("rollout_temperature");
        assert!(same_results(&v.to_string(), &cfg));
        assert!(!same_results(
            &v.to_string(),
            &cfg.clone().with_rollout_temperature(0.5)
        ));
        assert!(same_results(&saved, &cfg.clone().with_recompute(true)));
        assert!(same_results(&saved, &cfg.clone().with_checkpoint_every(3)));
        // a BLADE run from before `tau_spread` chose tau without it; one with it does not stand
        // for one without
        let mut old: serde_json::Value = serde_json::from_str(&saved).unwrap();
        old["method"].as_object_mut().unwrap().remove("tau_spread");
        assert!(same_results(&old.to_string(), &cfg));
        let spread = crate::align::methods::BladeConfig::new().with_tau_spread(Some(0.5));
        let spread = AlignConfig::new(crate::align::MethodConfig::Blade(spread));
        assert!(!same_results(&old.to_string(), &spread));
        // one from before `ptx_coef` had no next-item term; one with the term does not stand
        // for it
        let mut old: serde_json::Value = serde_json::from_str(&saved).unwrap();
        old["optim"].as_object_mut().unwrap().remove("ptx_coef");
        assert!(same_results(&old.to_string(), &cfg));
        let ptx = cfg.clone().with_optim(cfg.optim.clone().with_ptx_coef(0.5));
        assert!(!same_results(&old.to_string(), &ptx));
        // settings that change the results
        assert!(!same_results(
            &saved,
            &cfg.clone().with_steps(cfg.steps + 1)
        ));
        assert!(!same_results(&saved, &cfg.clone().with_seed(cfg.seed + 1)));
        let lr = cfg.optim.lr * 2.0;
        assert!(!same_results(
            &saved,
            &cfg.clone().with_optim(cfg.optim.clone().with_lr(lr))
        ));
        assert!(!same_results(
            &saved,
            &AlignConfig::new(Method::BonStatic.default_config())
        ));
        // a file from before `grad_shards` computed each gradient in one pass
        v.as_object_mut().unwrap().remove("grad_shards");
        assert!(!same_results(&v.to_string(), &cfg));
        assert!(same_results(
            &v.to_string(),
            &cfg.clone().with_grad_shards(1)
        ));
        assert!(!same_results("not json", &cfg));
        assert!(!same_results("{}", &cfg));
    }
}
