//! The online alignment trainer (METHOD.md section 3, "Training loop"), shared by every
//! method: sample G lists per prompt from the policy, score them with a list reward, update
//! the Bayesian target, turn rewards into the method's training signal, and take a few
//! clipped-surrogate (or preference) steps with a k3 KL penalty to the frozen reference.
//!
//! The trainer is generic over [`AlignPolicy`]: the item-level [`ItemLm`](crate::ItemLm) and any
//! other policy that can load and save itself in a run folder go through the same code path.
//!
//! A run folder holds `align.json` (this config), the aligned policy as written by
//! [`AlignPolicy::save_run`] (for `ItemLm`: `config.json` + `model.bpk`, loadable like an SFT
//! run), `optim.bpk`, `target.json` (the per-prompt posterior),
//! `state.json` (step counter), `curves.csv` (one row per step) and `summary.json`. The M
//! reference lists per prompt are sampled once from the SFT model and cached beside it, in
//! `<sft run>/reference/<settings hash>.json`, shared by every method and seed.

pub mod objective;
pub mod policy;

use std::path::{Path, PathBuf};
use std::time::Instant;

use blade_data::{ItemId, Split};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

pub use objective::{LossConfig, Method};
pub use policy::AlignPolicy;

use crate::batch::PromptBatch;
use crate::dashboard::LiveDashboard;
use crate::error::CoreError;
use crate::policy::{DecodeStrategy, Policy, Recommender, SampleSpec};
use crate::reward::{score_group, CatalogInfo, ListReward, RewardContext};
use crate::sft::{save_model_atomic, write_atomic, Dashboard};
use crate::target::{BayesianTarget, Concentration, TargetConfig};

/// Settings of an alignment run; saved as `align.json` in the run folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlignConfig {
    /// The method.
    pub method: Method,
    /// Rollout batches (outer steps).
    pub steps: usize,
    /// Prompts per rollout batch (`B`).
    pub prompts_per_step: usize,
    /// Lists per prompt (`G`).
    pub group_size: usize,
    /// Items per list (`K`).
    pub list_len: usize,
    /// Optimisation steps per rollout batch.
    pub inner_epochs: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Loss hyper-parameters.
    pub loss: LossConfig,
    /// Reference lists sampled per prompt from the SFT model (`M`).
    pub reference_lists: usize,
    /// `N` of the best-of-N distribution being distilled.
    pub bon_n: usize,
    /// BLADE's target mixing weight `tau` (ignored when `kappa` is set).
    pub tau: f64,
    /// A fixed prior concentration instead of `tau`.
    pub kappa: Option<f64>,
    /// Forgetting factor of old evidence.
    pub gamma: f64,
    /// BOND: EMA rate of the moving anchor (`anchor <- rate*anchor + (1-rate)*policy`).
    pub bond_anchor_ema: f64,
    /// Training windows per user in the prompt pool (the most recent ones).
    pub prompts_per_user: usize,
    /// Exclude each prompt's earlier items from its lists.
    pub mask_history: bool,
    /// Steps between validation NDCG@10 evaluations (0 = only at the end).
    pub eval_every: usize,
    /// Seed of prompt sampling and rollouts.
    pub seed: u64,
}

impl Default for AlignConfig {
    fn default() -> Self {
        Self {
            method: Method::Blade,
            steps: 100,
            prompts_per_step: 32,
            group_size: 8,
            list_len: 10,
            inner_epochs: 2,
            lr: 5e-4,
            loss: LossConfig::default(),
            reference_lists: 16,
            bon_n: 8,
            tau: 0.3,
            kappa: None,
            gamma: 0.9,
            bond_anchor_ema: 0.9,
            prompts_per_user: 1,
            mask_history: true,
            eval_every: 20,
            seed: 1,
        }
    }
}

impl AlignConfig {
    /// The target configuration implied by the method (`bon-static` is `tau = 0`).
    pub fn target_config(&self) -> TargetConfig {
        let concentration = match (self.method, self.kappa) {
            (Method::BonStatic, _) => Concentration::Tau(0.0),
            (_, Some(k)) => Concentration::Kappa(k),
            (_, None) => Concentration::Tau(self.tau),
        };
        TargetConfig {
            concentration,
            gamma: self.gamma,
            n: self.bon_n,
            ..TargetConfig::default()
        }
    }

    fn check(&self) -> crate::Result<()> {
        let bad = |m: &str| Err(CoreError::Config(m.into()));
        if self.group_size < 2 {
            return bad(
                "group size G must be at least 2 (advantages are normalised within a group)",
            );
        }
        if self.prompts_per_step == 0 || self.inner_epochs == 0 || self.list_len == 0 {
            return bad("prompts per step, inner epochs and list length must be positive");
        }
        if !(0.0..1.0).contains(&self.bond_anchor_ema) {
            return bad("bond_anchor_ema must be in [0, 1)");
        }
        Ok(())
    }
}

/// One training prompt of the pool: a window, its next item and the items seen before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolPrompt {
    /// Up to `L` items, oldest first.
    pub history: Vec<ItemId>,
    /// The next item (the reward's target).
    pub target: ItemId,
    /// Every item before the target (excluded from lists when masking).
    pub seen: Vec<ItemId>,
}

/// The alignment prompt pool: the `per_user` most recent training windows of every user.
pub fn prompt_pool(split: &Split, per_user: usize) -> Vec<PoolPrompt> {
    let mut pool = Vec::new();
    for seq in &split.train_sequences {
        let first = seq.len().saturating_sub(per_user).max(1);
        for t in first..seq.len() {
            let mut seen = seq[..t].to_vec();
            seen.sort_unstable();
            seen.dedup();
            pool.push(PoolPrompt {
                history: seq[t.saturating_sub(split.max_history)..t].to_vec(),
                target: seq[t],
                seen,
            });
        }
    }
    pool
}

/// The reference cache: per pool prompt, `M` lists from the SFT model and their rewards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceCache {
    /// What the cache was made for; a mismatch means it is rebuilt.
    pub key: String,
    /// Per prompt, the M reference rewards.
    pub rewards: Vec<Vec<f32>>,
}

/// One row of the training curves.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StepRecord {
    /// 1-based step.
    pub step: usize,
    /// Mean raw list reward of the rollouts.
    pub reward: f64,
    /// Mean within-group std of the raw reward.
    pub reward_std: f64,
    /// Mean training signal (proxy reward R, or the raw reward for GRPO and preferences).
    pub proxy: f64,
    /// Mean within-group std of the training signal (gradient decay shows here).
    pub proxy_std: f64,
    /// Mean tau of the batch's prompts.
    pub tau: f64,
    /// k3 estimate of KL(pi_theta || pi_ref) per list.
    pub kl: f64,
    /// Monte Carlo policy entropy per list (mean of -log pi(y)).
    pub entropy: f64,
    /// Share of rollouts whose reference CDF is saturated at 1.
    pub saturated: f64,
    /// Mean loss of the last inner step.
    pub loss: f64,
    /// Share of clipped ratios.
    pub clip_frac: f64,
    /// Validation NDCG@10 of greedy lists, where evaluated this step.
    pub valid_ndcg: Option<f64>,
    /// Wall time of the whole step: sampling, scoring, target update and gradient steps.
    pub seconds_step: f64,
    /// Seconds spent in the target update and proxy rewards.
    pub seconds_target: f64,
    /// Seconds spent in the gradient steps.
    pub seconds_grad: f64,
}

/// What an alignment run leaves behind.
pub struct AlignOutcome<P> {
    /// The aligned policy (inference mode).
    pub model: P,
    /// Per-step curves.
    pub curves: Vec<StepRecord>,
    /// Where the model was written (`model.bpk` in the run folder; a policy whose `save_run`
    /// writes other files keeps them beside it).
    pub model_path: PathBuf,
    /// Reward of the aligned policy against the reference on the same prompts.
    pub summary: AlignSummary,
}

/// Everything the trainer needs besides its config.
pub struct AlignInputs<'a> {
    /// The split (prompt pool from its training part, validation cases).
    pub split: &'a Split,
    /// Catalogue information for the reward.
    pub catalog: &'a CatalogInfo,
    /// The list reward.
    pub reward: &'a dyn ListReward,
    /// The SFT run folder: the reference and the start, loaded with [`AlignPolicy::load_run`]
    /// (for `ItemLm`, its `config.json` + `model.bpk`).
    pub init: &'a Path,
    /// The device.
    pub device: &'a Device,
}

fn contexts<'a>(
    pool: &'a [PoolPrompt],
    idx: &[usize],
    g: usize,
    catalog: &'a CatalogInfo,
) -> Vec<RewardContext<'a>> {
    idx.iter()
        .flat_map(|&i| {
            let p = &pool[i];
            std::iter::repeat_n(
                RewardContext {
                    history: &p.seen,
                    targets: std::slice::from_ref(&p.target),
                    catalog,
                },
                g,
            )
        })
        .collect()
}

fn batch_of(pool: &[PoolPrompt], idx: &[usize], mask: bool) -> PromptBatch {
    PromptBatch {
        histories: idx.iter().map(|&i| pool[i].history.clone()).collect(),
        exclude: idx
            .iter()
            .map(|&i| {
                if mask {
                    pool[i].seen.clone()
                } else {
                    Vec::new()
                }
            })
            .collect(),
    }
}

fn host(t: Tensor<1>) -> crate::Result<Vec<f32>> {
    t.into_data()
        .try_to_vec::<f32>()
        .map_err(|e| CoreError::Tensor(format!("{e:?}")))
}

/// Greedy-list NDCG@10 on the validation cases.
pub fn valid_ndcg<R: Recommender + ?Sized>(
    model: &R,
    split: &Split,
    k: usize,
    mask: bool,
) -> crate::Result<f64> {
    let prompts = PromptBatch::from_cases(&split.valid, mask);
    let mut total = 0.0;
    for start in (0..prompts.len()).step_by(512) {
        let end = (start + 512).min(prompts.len());
        let lists = model.decode(&prompts.slice(start..end), k, DecodeStrategy::Greedy)?;
        for (l, c) in lists.iter().zip(&split.valid[start..end]) {
            total += blade_metrics::ndcg_at_k(l, &[c.target], k);
        }
    }
    Ok(total / prompts.len().max(1) as f64)
}

/// Samples (or reloads) the reference cache and installs it as every prompt's prior.
fn reference_cache<P: Policy>(
    cfg: &AlignConfig,
    inputs: &AlignInputs,
    reference: &P,
    pool: &[PoolPrompt],
    dir: &Path,
) -> crate::Result<ReferenceCache> {
    // shared by every method and seed started from this SFT run: same prompts, same reward
    let key = format!(
        "pool={} per_user={} M={} K={} reward={} mask={}",
        pool.len(),
        cfg.prompts_per_user,
        cfg.reference_lists,
        cfg.list_len,
        inputs.reward.name(),
        cfg.mask_history,
    );
    let fnv = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let cache_dir = inputs.init.join("reference");
    std::fs::create_dir_all(&cache_dir).map_err(|e| CoreError::file(&cache_dir, e))?;
    let path = cache_dir.join(format!("{fnv:016x}.json"));
    let _ = dir;
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(cache) = serde_json::from_str::<ReferenceCache>(&text) {
            if cache.key == key && cache.rewards.len() == pool.len() {
                return Ok(cache);
            }
        }
    }
    let mut rng = StdRng::seed_from_u64(0x5eed_0ef0);
    let spec = SampleSpec {
        lists_per_prompt: cfg.reference_lists,
        list_len: cfg.list_len,
        ..SampleSpec::default()
    };
    let mut rewards = Vec::with_capacity(pool.len());
    let all: Vec<usize> = (0..pool.len()).collect();
    for chunk in all.chunks(64) {
        let roll = reference.sample(&batch_of(pool, chunk, cfg.mask_history), &spec, &mut rng)?;
        let ctx = contexts(pool, chunk, cfg.reference_lists, inputs.catalog);
        let r = score_group(inputs.reward, &ctx, &roll.lists)
            .map_err(|e| CoreError::Config(e.to_string()))?;
        rewards.extend(r.chunks(cfg.reference_lists).map(<[f32]>::to_vec));
    }
    let cache = ReferenceCache { key, rewards };
    write_atomic(
        &path,
        serde_json::to_string(&cache)
            .map_err(|e| CoreError::file(&path, e))?
            .as_bytes(),
    )?;
    Ok(cache)
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

/// Checkpointed progress of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RunState {
    step: usize,
    curves: Vec<StepRecord>,
}

fn save_json<T: Serialize>(path: &Path, value: &T) -> crate::Result<()> {
    let text = serde_json::to_string(value).map_err(|e| CoreError::file(path, e))?;
    write_atomic(path, text.as_bytes())
}

/// Writes `curves.csv`: one row per step, the columns being [`StepRecord`]'s fields.
pub fn write_curves(path: &Path, curves: &[StepRecord]) -> crate::Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in curves {
        w.serialize(r).map_err(|e| CoreError::file(path, e))?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| CoreError::file(path, e.to_string()))?;
    write_atomic(path, &bytes)
}

/// Reads a `curves.csv` written by [`write_curves`].
pub fn read_curves(path: &Path) -> crate::Result<Vec<StepRecord>> {
    let mut r = csv::Reader::from_path(path).map_err(|e| CoreError::file(path, e))?;
    r.deserialize()
        .enumerate()
        .map(|(i, row)| row.map_err(|e| CoreError::file(path, format!("row {}: {e}", i + 2))))
        .collect()
}

/// Runs alignment from the SFT run in `inputs.init`, writing the run into `dir`; with
/// `resume`, continues from the run's last checkpoint (policy, optimiser, target, step).
///
/// The policy type is chosen by the caller, e.g. `train_align::<ItemLm>(..)`: the reference is
/// `P::load_run(inputs.init, inputs.device)`, the trained copy the same on the autodiff device
/// (from `dir` when resuming), and checkpoints go through [`AlignPolicy::save_run`].
pub fn train_align<P: AlignPolicy>(
    cfg: &AlignConfig,
    inputs: &AlignInputs,
    dir: &Path,
    dashboard: Dashboard,
    resume: bool,
) -> crate::Result<AlignOutcome<P>> {
    cfg.check()?;
    std::fs::create_dir_all(dir).map_err(|e| CoreError::file(dir, e))?;
    let reference = P::load_run(inputs.init, inputs.device)?;
    reference.check_fit(cfg.list_len, inputs.split.max_history)?;
    let ad = inputs.device.clone().autodiff();
    let state_path = dir.join("state.json");
    let resumed: Option<RunState> = if resume {
        std::fs::read_to_string(&state_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
    } else {
        None
    };
    let policy_src = if resumed.is_some() { dir } else { inputs.init };
    let mut policy = P::load_run(policy_src, &ad)?;
    let mut optim = AdamConfig::new().init();
    let mut anchor = reference.clone();
    if resumed.is_some() {
        let p = dir.join("optim.bpk");
        optim = optim
            .load(&p)
            .map_err(|e| CoreError::file(&p, format!("{e:?}")))?;
        let a = dir.join("anchor.bpk");
        if cfg.method == Method::Bond && a.exists() {
            anchor = anchor
                .try_load_file(&a)
                .map_err(|e| CoreError::file(&a, format!("{e:?}")))?;
        }
    }
    save_json(&dir.join("align.json"), cfg)?;

    let pool = prompt_pool(inputs.split, cfg.prompts_per_user);
    if pool.is_empty() {
        return Err(CoreError::Config("no training windows to align on".into()));
    }
    let cache = reference_cache(cfg, inputs, &reference, &pool, dir)?;
    let target_path = dir.join("target.json");
    let mut target = match resumed.as_ref().map(|_| BayesianTarget::load(&target_path)) {
        Some(t) => t?,
        None => {
            let mut t = BayesianTarget::new(cfg.target_config())?;
            for (i, r) in cache.rewards.iter().enumerate() {
                t.set_reference(i as u64, r)?;
            }
            t
        }
    };
    let mut state = resumed.unwrap_or_default();
    let g = cfg.group_size;
    let spec = SampleSpec {
        lists_per_prompt: g,
        list_len: cfg.list_len,
        ..SampleSpec::default()
    };
    let mut dash = LiveDashboard::new(
        dashboard,
        &format!("align {}", cfg.method.name()),
        cfg.steps,
    );
    dash.begin(cfg.steps);
    if state.step == 0 {
        let v = valid_ndcg(&policy.valid(), inputs.split, 10, cfg.mask_history)?;
        dash.valid("valid NDCG@10", v, true);
        state.curves.push(StepRecord {
            step: 0,
            valid_ndcg: Some(v),
            ..StepRecord::default()
        });
    }
    while state.step < cfg.steps {
        if dash.should_stop() {
            break;
        }
        let step = state.step + 1;
        let t0 = Instant::now();
        let mut rng =
            StdRng::seed_from_u64(cfg.seed.wrapping_mul(1_000_003).wrapping_add(step as u64));
        let idx: Vec<usize> = (0..cfg.prompts_per_step)
            .map(|_| rng.random_range(0..pool.len()))
            .collect();
        let prompts = batch_of(&pool, &idx, cfg.mask_history);
        let roll = policy.sample(&prompts, &spec, &mut rng)?;
        let ctx = contexts(&pool, &idx, g, inputs.catalog);
        let rewards = score_group(inputs.reward, &ctx, &roll.lists)
            .map_err(|e| CoreError::Config(e.to_string()))?;

        let tt = Instant::now();
        let mut signal = Vec::with_capacity(rewards.len());
        let (mut tau, mut saturated) = (0.0, 0.0);
        for (gi, &pid) in idx.iter().enumerate() {
            let grp = &rewards[gi * g..(gi + 1) * g];
            let pid = pid as u64;
            match cfg.method {
                Method::Blade => {
                    target.observe(pid, grp)?;
                    signal.extend(target.proxy_rewards(pid, grp));
                }
                Method::BonStatic => signal.extend(target.proxy_rewards(pid, grp)),
                _ => {}
            }
            tau += target.tau(pid);
            saturated += target.saturated_share(pid, grp);
        }
        match cfg.method {
            Method::Bond => signal = objective::group_bon_log_ratio(&rewards, g, cfg.bon_n),
            Method::Grpo | Method::Bonbon | Method::Sdpo => {
                signal = rewards.iter().map(|&r| f64::from(r)).collect()
            }
            _ => {}
        }
        let seconds_target = tt.elapsed().as_secs_f64();
        let nb = idx.len() as f64;
        let raw: Vec<f64> = rewards.iter().map(|&r| f64::from(r)).collect();

        let tg = Instant::now();
        let rep = prompts.repeat_each(g);
        let kl_ref = if cfg.method == Method::Bond {
            &anchor
        } else {
            &reference
        };
        let batch = objective::LossBatch {
            g,
            rewards: rewards.clone(),
            advantages: objective::group_advantages(&signal, g),
            old_logp: roll.log_probs.clone(),
            ref_logp: host(kl_ref.log_prob(&rep, &roll.lists)?)?,
            list_len: cfg.list_len,
        };
        let mut stats = objective::LossStats::default();
        for _ in 0..cfg.inner_epochs {
            let new_logp = policy.log_prob(&rep, &roll.lists)?;
            let (loss, st) = objective::loss(cfg.method, new_logp, &batch, &cfg.loss);
            if !st.loss.is_finite() {
                return Err(CoreError::Config(format!(
                    "{} diverged at step {step}: the loss is {} (try a lower --lr)",
                    cfg.method.name(),
                    st.loss
                )));
            }
            stats = st;
            let grads = GradientsParams::from_grads(loss.backward(), &policy);
            policy = optim.step(cfg.lr, policy, grads);
        }
        if cfg.method == Method::Bond {
            anchor = ema(anchor, &policy, cfg.bond_anchor_ema);
        }
        let seconds_grad = tg.elapsed().as_secs_f64();

        let mut rec = StepRecord {
            step,
            reward: raw.iter().sum::<f64>() / raw.len().max(1) as f64,
            reward_std: objective::mean_group_std(&raw, g),
            proxy: signal.iter().sum::<f64>() / signal.len().max(1) as f64,
            proxy_std: objective::mean_group_std(&signal, g),
            tau: tau / nb,
            kl: stats.kl,
            entropy: -roll.log_probs.iter().map(|&x| f64::from(x)).sum::<f64>()
                / roll.log_probs.len().max(1) as f64,
            saturated: saturated / nb,
            loss: stats.loss,
            clip_frac: stats.clip_frac,
            valid_ndcg: None,
            seconds_step: t0.elapsed().as_secs_f64(),
            seconds_target,
            seconds_grad,
        };
        dash.train("reward", rec.reward, true);
        dash.train("proxy reward", rec.proxy, true);
        dash.train("group std (proxy)", rec.proxy_std, true);
        dash.train("tau", rec.tau, true);
        dash.train("KL to reference", rec.kl, false);
        dash.train("entropy", rec.entropy, true);
        dash.train("saturated share", rec.saturated, false);
        let last = step == cfg.steps;
        dash.progress(step);
        if last || (cfg.eval_every > 0 && step.is_multiple_of(cfg.eval_every)) {
            let v = valid_ndcg(&policy.valid(), inputs.split, 10, cfg.mask_history)?;
            rec.valid_ndcg = Some(v);
            dash.valid("valid NDCG@10", v, true);
        }
        state.curves.push(rec);
        state.step = step;
        // the final state is checkpointed once, after the loop
        if !last && cfg.eval_every > 0 && step.is_multiple_of(cfg.eval_every) {
            let bond_anchor = (cfg.method == Method::Bond).then_some(&anchor);
            checkpoint(
                dir,
                inputs.init,
                &policy,
                &optim,
                &target,
                bond_anchor,
                &state,
            )?;
        }
    }
    dash.finish();
    let bond_anchor = (cfg.method == Method::Bond).then_some(&anchor);
    checkpoint(
        dir,
        inputs.init,
        &policy,
        &optim,
        &target,
        bond_anchor,
        &state,
    )?;
    write_curves(&dir.join("curves.csv"), &state.curves)?;
    let summary = summarize(cfg, inputs, &policy.valid(), &pool, &cache, &state.curves)?;
    save_json(&dir.join("summary.json"), &summary)?;
    Ok(AlignOutcome {
        model: policy.valid(),
        curves: state.curves,
        model_path: dir.join("model.bpk"),
        summary,
    })
}

/// The before/after comparison written to `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlignSummary {
    /// The method.
    pub method: String,
    /// The reward's name.
    pub reward: String,
    /// Prompts the comparison used (the first of the pool).
    pub prompts: usize,
    /// Mean reward of the SFT reference's cached lists on those prompts.
    pub reference_reward: f64,
    /// Mean reward of `M` fresh lists per prompt from the aligned policy, same prompts.
    pub policy_reward: f64,
    /// Validation NDCG@10 before alignment.
    pub valid_ndcg_start: Option<f64>,
    /// Validation NDCG@10 at the end.
    pub valid_ndcg_end: Option<f64>,
    /// Whether any recorded scalar was NaN or infinite.
    pub non_finite: bool,
}

fn summarize<P: Policy>(
    cfg: &AlignConfig,
    inputs: &AlignInputs,
    policy: &P,
    pool: &[PoolPrompt],
    cache: &ReferenceCache,
    curves: &[StepRecord],
) -> crate::Result<AlignSummary> {
    let n = pool.len().min(512);
    let idx: Vec<usize> = (0..n).collect();
    let spec = SampleSpec {
        lists_per_prompt: cfg.reference_lists,
        list_len: cfg.list_len,
        ..SampleSpec::default()
    };
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0xa11_6ed);
    let mut total = 0.0;
    let mut count = 0usize;
    for chunk in idx.chunks(64) {
        let roll = policy.sample(&batch_of(pool, chunk, cfg.mask_history), &spec, &mut rng)?;
        let ctx = contexts(pool, chunk, cfg.reference_lists, inputs.catalog);
        let r = score_group(inputs.reward, &ctx, &roll.lists)
            .map_err(|e| CoreError::Config(e.to_string()))?;
        total += r.iter().map(|&x| f64::from(x)).sum::<f64>();
        count += r.len();
    }
    let reference: Vec<f64> = cache.rewards[..n]
        .iter()
        .flatten()
        .map(|&x| f64::from(x))
        .collect();
    let finite = |c: &StepRecord| {
        [
            c.reward,
            c.proxy,
            c.proxy_std,
            c.tau,
            c.kl,
            c.entropy,
            c.saturated,
            c.loss,
        ]
        .iter()
        .all(|x| x.is_finite())
            && c.valid_ndcg.is_none_or(f64::is_finite)
    };
    Ok(AlignSummary {
        method: cfg.method.name().into(),
        reward: inputs.reward.name(),
        prompts: n,
        reference_reward: reference.iter().sum::<f64>() / reference.len().max(1) as f64,
        policy_reward: total / count.max(1) as f64,
        valid_ndcg_start: curves.first().and_then(|c| c.valid_ndcg),
        valid_ndcg_end: curves.iter().rev().find_map(|c| c.valid_ndcg),
        non_finite: !curves.iter().skip(1).all(finite),
    })
}

/// Writes the policy (through [`AlignPolicy::save_run`]), the optimiser, the target, BOND's
/// anchor (`bond_anchor`, BOND only) and, last, the step counter.
fn checkpoint<P: AlignPolicy>(
    dir: &Path,
    init: &Path,
    policy: &P,
    optim: &burn::optim::ModuleOptimizer,
    target: &BayesianTarget,
    bond_anchor: Option<&P>,
    state: &RunState,
) -> crate::Result<()> {
    policy.valid().save_run(dir, init)?;
    let p = dir.join("optim.bpk");
    let tmp = dir.join("optim.tmp.bpk");
    optim
        .save(&tmp)
        .map_err(|e| CoreError::file(&tmp, format!("{e:?}")))?;
    std::fs::rename(&tmp, &p).map_err(|e| CoreError::file(&p, e))?;
    target.save(&dir.join("target.json"))?;
    if let Some(anchor) = bond_anchor {
        save_model_atomic(anchor, &dir.join("anchor.bpk"))?;
    }
    // the step counter goes last: a crash before it resumes from the previous checkpoint
    save_json(&dir.join("state.json"), state)
}
