//! LLM run folders and supervised fine-tuning of the title policy.
//!
//! A run folder holds `llm.json` ([`LlmRunConfig`]: the base weights' path, LoRA settings, the
//! prompt template and the catalogue titles) and the trained delta: `adapter.safetensors` (LoRA
//! `A`/`B` of every adapted projection, F32, names `blk.N.<proj>.lora_a|lora_b`) or, for full
//! fine-tuning, `model.bpk`. Base weights are never copied.
//!
//! SFT maximises the trie-renormalised log-likelihood ([`Policy::log_prob`]) of the items that
//! actually followed each training window, written as a list of titles (the same objective the
//! item-level model is taught), with Adam, and keeps the epoch with the best validation NDCG@10
//! of greedy lists.

use std::path::{Path, PathBuf};
use std::time::Instant;

use blade_core::batch::PromptBatch;
use blade_core::checkpoint::{
    checkpoint_name, fnv1a, save_json, with_seeded_ids, Checkpoints, BEST, EPOCH,
};
use blade_core::error::CoreError;
use blade_core::policy::{DecodeStrategy, Policy, Recommender};
use blade_core::sft::{save_model_atomic, train_items};
use blade_data::{ItemId, Split};
use burn::module::{Module, Param};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use rand::seq::SliceRandom;
use rand::{rngs::StdRng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::lm::{to_vec, LanguageModel};
use crate::model::{LoraConfig, Proj};
use crate::rec::{LlmPolicy, PromptTemplate};

type CoreResult<T> = blade_core::error::Result<T>;

/// File of the run settings.
pub const LLM_RUN_FILE: &str = "llm.json";
/// File of the LoRA adapters.
pub const ADAPTER_FILE: &str = "adapter.safetensors";
/// File of fully fine-tuned weights.
pub const FULL_FILE: &str = "model.bpk";

/// What an LLM run folder records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmRunConfig {
    /// The base weights (`.gguf` or a Hugging Face folder), absolute.
    pub weights: PathBuf,
    /// LoRA settings; `None` = full fine-tuning.
    pub lora: Option<LoraConfig>,
    /// The prompt.
    pub template: PromptTemplate,
    /// The list length the prompt asks for.
    pub prompt_k: usize,
    /// Cap of the rotary table.
    pub max_seq_len: usize,
    /// Catalogue titles, indexed by item id.
    pub titles: Vec<String>,
}

fn cerr(path: &Path, e: impl std::fmt::Display) -> CoreError {
    CoreError::file(path, e.to_string())
}

/// The projections LoRA can adapt.
pub const LORA_TARGETS: [&str; 7] = ["q", "k", "v", "o", "gate", "up", "down"];

/// Checks LoRA settings against the model: known targets, a rank the projections can hold.
fn check_lora(l: &LoraConfig, m: &crate::model::LlamaConfig) -> CoreResult<()> {
    if l.targets.is_empty() {
        return Err(CoreError::Config(format!(
            "--lora-targets: name at least one of {}",
            LORA_TARGETS.join(",")
        )));
    }
    if let Some(t) = l
        .targets
        .iter()
        .find(|t| !LORA_TARGETS.contains(&t.as_str()))
    {
        return Err(CoreError::Config(format!(
            "--lora-targets {t}: no such projection; expected some of {}",
            LORA_TARGETS.join(",")
        )));
    }
    let smallest = m
        .head_dim()
        .saturating_mul(m.n_kv_heads)
        .min(m.d_model)
        .min(m.d_ff);
    if l.rank == 0 || l.rank > smallest {
        return Err(CoreError::Config(format!(
            "--lora-rank {}: expected 1..={smallest} (the narrowest projection of this model), \
             or 0 for full fine-tuning",
            l.rank
        )));
    }
    if !(l.alpha.is_finite() && l.alpha > 0.0) {
        return Err(CoreError::Config(format!(
            "--lora-alpha {}: expected a finite number > 0",
            l.alpha
        )));
    }
    Ok(())
}

/// The base model with fresh adapters (or all weights trainable), as the run config says.
pub fn build_policy(cfg: &LlmRunConfig, device: &Device) -> CoreResult<LlmPolicy> {
    build_policy_with(cfg, false, device)
}

/// [`build_policy`]; with `quantised`, the base weights a GGUF file stores in Q4 / Q8 blocks
/// stay in them ([`LanguageModel::load_with`]) and the adapters are frozen: for inference.
fn build_policy_with(
    cfg: &LlmRunConfig,
    quantised: bool,
    device: &Device,
) -> CoreResult<LlmPolicy> {
    let lm = LanguageModel::load_with(&cfg.weights, Some(cfg.max_seq_len), quantised, device)
        .map_err(|e| cerr(&cfg.weights, e))?;
    let mut p =
        LlmPolicy::new(lm, &cfg.titles, cfg.template.clone()).map_err(|e| cerr(&cfg.weights, e))?;
    if let Some(l) = &cfg.lora {
        check_lora(l, &p.ctx.config)?;
        p.model = p.model.with_lora(l, device);
    }
    // parameter ids that are the same in every process: the optimiser state saved in a
    // checkpoint is keyed by them, so a resumed run finds it again
    p.model = with_seeded_ids(p.model, 0x11a_0001);
    if let Some(ctx) = std::sync::Arc::get_mut(&mut p.ctx) {
        ctx.prompt_k = cfg.prompt_k;
    }
    Ok(p)
}

fn adapted(policy: &LlmPolicy) -> Vec<(String, &Proj)> {
    let mut out = Vec::new();
    for (i, b) in policy.model.blocks.iter().enumerate() {
        for (name, p) in b.projections() {
            if p.lora.is_some() {
                out.push((format!("blk.{i}.{name}"), p));
            }
        }
    }
    out
}

/// Writes `llm.json` and the trained delta into `dir` (atomically, file by file).
pub fn save_llm_run(policy: &LlmPolicy, cfg: &LlmRunConfig, dir: &Path) -> CoreResult<()> {
    std::fs::create_dir_all(dir).map_err(|e| cerr(dir, e))?;
    if cfg.lora.is_some() {
        let mut tensors = Vec::new();
        for (name, p) in adapted(policy) {
            let l = p.lora.as_ref().expect("adapted projections have adapters");
            for (suffix, t) in [("lora_a", l.a.val()), ("lora_b", l.b.val())] {
                let shape = t.dims().to_vec();
                let v = to_vec(t).map_err(|e| cerr(dir, e))?;
                tensors.push((format!("{name}.{suffix}"), shape, v));
            }
        }
        let path = dir.join(ADAPTER_FILE);
        crate::safetensors::write_safetensors(&path, &tensors).map_err(|e| cerr(&path, e))?;
    } else {
        save_model_atomic(&policy.model, &dir.join(FULL_FILE))?;
    }
    let text = serde_json::to_string_pretty(cfg).map_err(|e| cerr(dir, e))?;
    blade_data::write_atomic(&dir.join(LLM_RUN_FILE), text.as_bytes()).map_err(|e| cerr(dir, e))?;
    Ok(())
}

/// Reads a run folder's `llm.json`.
pub fn read_llm_run_config(dir: &Path) -> CoreResult<LlmRunConfig> {
    let path = dir.join(LLM_RUN_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        cerr(
            &path,
            format!("{e}; is this an LLM run folder (made by `blade train --policy llm`)?"),
        )
    })?;
    serde_json::from_str(&text).map_err(|e| cerr(&path, e))
}

/// Loads the policy of an LLM run folder: base weights + the saved delta, trainable (f32 base).
pub fn load_llm_run(dir: &Path, device: &Device) -> CoreResult<(LlmRunConfig, LlmPolicy)> {
    load_llm_run_with(dir, read_llm_run_config(dir)?, false, device)
}

/// Loads the policy of an LLM run folder for one-off inference (`blade recommend`; bulk
/// evaluation keeps [`load_llm_run`]'s f32 base, which scores many lists faster): a LoRA
/// run's base weights stay in their GGUF blocks, as `blade llm generate` keeps them, instead of
/// being dequantised to f32, and its adapters are frozen. Same logits as [`load_llm_run`] to
/// float rounding (tested). A run that trained every weight (no LoRA) is loaded in f32; a
/// zero-shot run (no delta) keeps its blocks too.
pub fn load_llm_run_for_inference(
    dir: &Path,
    device: &Device,
) -> CoreResult<(LlmRunConfig, LlmPolicy)> {
    let cfg = read_llm_run_config(dir)?;
    // a LoRA run, or a zero-shot one (no delta): the base is never written
    let quantised = cfg.lora.is_some() || !dir.join(FULL_FILE).exists();
    load_llm_run_with(dir, cfg, quantised, device)
}

/// The policy of the run folder `dir` whose `llm.json` holds `cfg`.
fn load_llm_run_with(
    dir: &Path,
    cfg: LlmRunConfig,
    quantised: bool,
    device: &Device,
) -> CoreResult<(LlmRunConfig, LlmPolicy)> {
    let mut policy = build_policy_with(&cfg, quantised, device)?;
    if cfg.lora.is_some() {
        let path = dir.join(ADAPTER_FILE);
        if path.exists() {
            let st = crate::safetensors::read_safetensors_f32(&path).map_err(|e| cerr(&path, e))?;
            let mut missing = Vec::new();
            let take = |name: &str, want: [usize; 2], missing: &mut Vec<String>| match st.get(name)
            {
                Some((shape, v)) if shape[..] == want[..] => Some(Tensor::<2>::from_data(
                    TensorData::new(v.clone(), want),
                    device,
                )),
                _ => {
                    missing.push(name.to_string());
                    None
                }
            };
            for (i, b) in policy.model.blocks.iter_mut().enumerate() {
                for (name, p) in [
                    ("q", &mut b.attn.q),
                    ("k", &mut b.attn.k),
                    ("v", &mut b.attn.v),
                    ("o", &mut b.attn.o),
                    ("gate", &mut b.mlp.gate),
                    ("up", &mut b.mlp.up),
                    ("down", &mut b.mlp.down),
                ] {
                    if let Some(l) = p.lora.as_mut() {
                        let key = format!("blk.{i}.{name}");
                        let (a, bb) = (l.a.dims(), l.b.dims());
                        // keep the parameter ids (optimiser state is keyed by them)
                        if let Some(t) = take(&format!("{key}.lora_a"), a, &mut missing) {
                            l.a = Param::initialized(l.a.id, t).set_require_grad(!quantised);
                        }
                        if let Some(t) = take(&format!("{key}.lora_b"), bb, &mut missing) {
                            l.b = Param::initialized(l.b.id, t).set_require_grad(!quantised);
                        }
                    }
                }
            }
            if !missing.is_empty() {
                return Err(cerr(
                    &path,
                    format!(
                        "adapters missing or of the wrong shape for this base model: {}",
                        missing.join(", ")
                    ),
                ));
            }
        }
    } else {
        let path = dir.join(FULL_FILE);
        if path.exists() {
            policy.model = policy
                .model
                .try_load_file(&path)
                .map_err(|e| cerr(&path, e))?;
        }
    }
    Ok((cfg, policy))
}

/// Settings of LLM supervised fine-tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmSftConfig {
    /// Passes over the training windows.
    pub epochs: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Windows per gradient step.
    pub batch_size: usize,
    /// Items that followed each window taught as the target list (at least 1).
    pub target_len: usize,
    /// Use at most this many training windows (the most recent per user first); `None` = all.
    pub max_train_prompts: Option<usize>,
    /// Validation users whose greedy lists measure NDCG@10 after each epoch.
    pub valid_users: usize,
    /// Mask history items in lists and targets.
    pub mask_history: bool,
    /// Shuffling seed.
    pub seed: u64,
}

impl Default for LlmSftConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            lr: 1e-4,
            batch_size: 4,
            target_len: 1,
            max_train_prompts: Some(512),
            valid_users: 64,
            mask_history: true,
            seed: 1,
        }
    }
}

/// One logged point of LLM SFT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmSftRecord {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Gradient steps so far.
    pub step: usize,
    /// Mean negative log-likelihood per target list over the epoch.
    pub loss: f64,
    /// Validation NDCG@10 of greedy lists after the epoch.
    pub valid_ndcg: f64,
    /// Seconds of the epoch.
    pub seconds: f64,
}

/// Greedy-list NDCG@10 on the first `n` validation cases.
pub fn valid_ndcg_llm(policy: &LlmPolicy, split: &Split, n: usize, mask: bool) -> CoreResult<f64> {
    let cases = &split.valid[..n.min(split.valid.len())];
    if cases.is_empty() {
        return Ok(0.0);
    }
    let prompts = PromptBatch::from_cases(cases, mask);
    let mut total = 0.0;
    for start in (0..cases.len()).step_by(16) {
        let end = (start + 16).min(cases.len());
        let lists = policy.decode(&prompts.slice(start..end), 10, DecodeStrategy::Greedy)?;
        for (l, c) in lists.iter().zip(&cases[start..end]) {
            total += blade_metrics::ndcg_at_k(l, &[c.target], 10);
        }
    }
    Ok(total / cases.len() as f64)
}

/// Progress of LLM SFT, saved in every epoch checkpoint (`state.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct LlmSftState {
    epoch: usize,
    step: usize,
    records: Vec<LlmSftRecord>,
    /// Best epoch so far (0 = the base model before training).
    best_epoch: usize,
    best_ndcg: f64,
    /// The settings and data the run was made with (a resume must match them).
    settings: String,
}

/// Supervised fine-tuning of an LLM title policy; writes the run folder `dir` (best epoch) and
/// returns the trained policy (inference mode) with its log.
///
/// Each epoch ends with a crash-consistent checkpoint (`checkpoint/epoch-N`: the delta, the Adam
/// state and the progress, published with one rename); the epoch's data order depends on
/// `(seed, epoch)` only, so a run killed at any moment and resumed with `resume` ends with the
/// same adapter file, byte for byte, as an uninterrupted run. A resume with other settings or
/// data is refused before anything is written.
pub fn train_llm_sft(
    run: &LlmRunConfig,
    cfg: &LlmSftConfig,
    split: &Split,
    device: &Device,
    dir: &Path,
    resume: bool,
    mut log: impl FnMut(&str),
) -> CoreResult<(LlmPolicy, Vec<LlmSftRecord>)> {
    // 0 epochs is allowed: the run folder then holds the base model (and fresh adapters)
    if cfg.batch_size == 0 || !(cfg.lr.is_finite() && cfg.lr > 0.0) {
        return Err(CoreError::Config(format!(
            "LLM SFT needs --llm-batch >= 1 and a positive finite --llm-lr (got {}, {})",
            cfg.batch_size, cfg.lr
        )));
    }
    let ad = device.clone().autodiff();
    let mut policy = blade_core::device::seeded_init(device, cfg.seed, || build_policy(run, &ad))?;
    let n_items = policy.num_items();
    let mut items = train_items(split, cfg.target_len.max(1), cfg.max_train_prompts);
    // targets: distinct catalogue items, not in the (masked) history
    let examples: Vec<(Vec<ItemId>, Vec<ItemId>, Vec<ItemId>)> = items
        .drain(..)
        .filter_map(|it| {
            let exclude = if cfg.mask_history {
                it.history.clone()
            } else {
                Vec::new()
            };
            let mut targets = Vec::new();
            for t in it.targets {
                if (t as usize) < n_items && !exclude.contains(&t) && !targets.contains(&t) {
                    targets.push(t);
                }
            }
            (!targets.is_empty()).then_some((it.history, exclude, targets))
        })
        .collect();
    if examples.is_empty() {
        return Err(CoreError::Config("no training windows for LLM SFT".into()));
    }
    // what a resume must share with the run: the model settings, the SFT settings but the
    // number of epochs, and the examples
    let settings = {
        let mut c = cfg.clone();
        c.epochs = 0;
        let text = serde_json::to_string(&(run, &c, &examples)).map_err(|e| cerr(dir, e))?;
        format!("{:016x}", fnv1a(text.as_bytes(), 0))
    };
    let store = Checkpoints::of_run(dir);
    let mut optim = AdamConfig::new().init();
    let mut state = if resume {
        let Some((_, ck)) = store.latest(EPOCH) else {
            return Err(cerr(
                store.root(),
                "cannot resume: no complete LLM SFT checkpoint here; run without --resume to \
                 start this folder afresh",
            ));
        };
        let sp = ck.join("state.json");
        let text = std::fs::read_to_string(&sp).map_err(|e| cerr(&sp, e))?;
        let state: LlmSftState = serde_json::from_str(&text)
            .map_err(|e| cerr(&sp, format!("not an LLM SFT checkpoint state ({e})")))?;
        if state.settings != settings {
            return Err(cerr(
                &sp,
                "cannot resume: the run was made with other settings or data (weights, LoRA, \
                 prompt, --llm-lr, --llm-batch, --llm-train-prompts, seed or dataset differ); \
                 resume with the run's, or start afresh without --resume",
            ));
        }
        let (_, restored) = load_llm_run(&ck, &ad)?;
        policy = restored;
        let p = ck.join("optim.bpk");
        optim = optim.load(&p).map_err(|e| cerr(&p, e))?;
        log(&format!("resuming LLM SFT after epoch {}", state.epoch));
        store.remove_stale()?;
        state
    } else {
        std::fs::create_dir_all(dir).map_err(|e| cerr(dir, e))?;
        store.clear()?;
        let v0 = valid_ndcg_llm(&policy.valid(), split, cfg.valid_users, cfg.mask_history)?;
        log(&format!(
            "epoch 0: valid NDCG@10 {v0:.4} ({} validation users)",
            cfg.valid_users.min(split.valid.len())
        ));
        let name = checkpoint_name(BEST, 0);
        save_llm_run(&policy.valid(), run, &store.stage(&name)?)?;
        store.publish(&name, &[], false)?;
        LlmSftState {
            best_ndcg: v0,
            settings,
            ..LlmSftState::default()
        }
    };
    while state.epoch < cfg.epochs {
        let epoch = state.epoch + 1;
        let t0 = Instant::now();
        let mut order: Vec<usize> = (0..examples.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(fnv1a(
            &(epoch as u64).to_le_bytes(),
            cfg.seed,
        )));
        let (mut loss_sum, mut n) = (0.0, 0usize);
        let batches = order.len().div_ceil(cfg.batch_size);
        for (bi, chunk) in order.chunks(cfg.batch_size).enumerate() {
            let prompts = PromptBatch {
                histories: chunk.iter().map(|&i| examples[i].0.clone()).collect(),
                exclude: chunk.iter().map(|&i| examples[i].1.clone()).collect(),
            };
            let lists: Vec<Vec<ItemId>> = chunk.iter().map(|&i| examples[i].2.clone()).collect();
            let lp = policy.log_prob(&prompts, &lists)?;
            let loss = lp.neg().mean();
            let value =
                to_vec(loss.clone().detach()).map_err(|e| CoreError::Tensor(e.to_string()))?[0];
            if !value.is_finite() {
                return Err(CoreError::Config(format!(
                    "the LLM SFT loss is {value} at step {}: lower --llm-lr (now {})",
                    state.step + 1,
                    cfg.lr
                )));
            }
            let grads = GradientsParams::from_grads(loss.backward(), &policy);
            policy = optim.step(cfg.lr, policy, grads);
            loss_sum += f64::from(value) * chunk.len() as f64;
            n += chunk.len();
            state.step += 1;
            if bi % 10 == 0 || bi + 1 == batches {
                log(&format!(
                    "epoch {epoch} batch {}/{batches}: loss {:.4} ({:.1} s)",
                    bi + 1,
                    loss_sum / n as f64,
                    t0.elapsed().as_secs_f64()
                ));
            }
        }
        let inference = policy.valid();
        let v = valid_ndcg_llm(&inference, split, cfg.valid_users, cfg.mask_history)?;
        let rec = LlmSftRecord {
            epoch,
            step: state.step,
            loss: loss_sum / n.max(1) as f64,
            valid_ndcg: v,
            seconds: t0.elapsed().as_secs_f64(),
        };
        log(&format!(
            "epoch {epoch}: loss {:.4} | valid NDCG@10 {v:.4} | {:.0} s",
            rec.loss, rec.seconds
        ));
        state.records.push(rec);
        state.epoch = epoch;
        if v >= state.best_ndcg {
            state.best_ndcg = v;
            state.best_epoch = epoch;
            let name = checkpoint_name(BEST, epoch);
            save_llm_run(&inference, run, &store.stage(&name)?)?;
            store.publish(&name, &[], false)?;
        }
        let name = checkpoint_name(EPOCH, epoch);
        let stage = store.stage(&name)?;
        save_llm_run(&inference, run, &stage)?;
        let p = stage.join("optim.bpk");
        optim.save(&p).map_err(|e| cerr(&p, e))?;
        save_json(&stage.join("state.json"), &state)?;
        store.publish(&name, &[checkpoint_name(BEST, state.best_epoch)], true)?;
    }
    if state.best_epoch == 0 && !state.records.is_empty() {
        // said plainly: otherwise a run that kept nothing of its training looks like any other
        log(&format!(
            "no epoch beat the starting model on validation (NDCG@10 {:.4}): the run keeps epoch \
             0, whose {} are untrained; train longer or change --llm-lr (--llm-valid-users 0 \
             keeps the last epoch)",
            state.best_ndcg,
            if run.lora.is_some() {
                "adapters"
            } else {
                "weights"
            }
        ));
    }
    // the run's outputs: the best epoch's files, then the log
    let best = store.path(&checkpoint_name(BEST, state.best_epoch));
    for f in [ADAPTER_FILE, FULL_FILE, LLM_RUN_FILE] {
        let src = best.join(f);
        if src.exists() {
            let bytes = std::fs::read(&src).map_err(|e| cerr(&src, e))?;
            blade_data::write_atomic(&dir.join(f), &bytes).map_err(|e| cerr(dir, e))?;
        }
    }
    let text = serde_json::to_string_pretty(&state.records).map_err(|e| cerr(dir, e))?;
    blade_data::write_atomic(&dir.join("sft_log.json"), text.as_bytes())
        .map_err(|e| cerr(dir, e))?;
    let (_, best_policy) = load_llm_run(dir, device)?;
    Ok((best_policy, state.records))
}

impl blade_core::align::AlignPolicy for LlmPolicy {
    fn load_run(dir: &Path, device: &Device) -> CoreResult<Self> {
        Ok(load_llm_run(dir, device)?.1)
    }

    /// Writes `llm.json` (copied from the SFT run `init`) and the adapters (or full weights).
    fn save_run(&self, dir: &Path, init: &Path) -> CoreResult<()> {
        let cfg = read_llm_run_config(init)?;
        save_llm_run(self, &cfg, dir)
    }

    fn check_fit(&self, list_len: usize, max_history: usize) -> CoreResult<()> {
        let idx = self.index();
        if list_len > idx.len() {
            return Err(CoreError::Config(format!(
                "lists of {list_len} items from a catalogue of {} titles",
                idx.len()
            )));
        }
        let longest = idx.tokens.iter().map(Vec::len).max().unwrap_or(0);
        let history: Vec<ItemId> = (0..max_history.min(idx.len()) as ItemId).collect();
        let base = self
            .ctx
            .tokenizer
            .encode(&self.prompt_text(&history, self.ctx.prompt_k), true)
            .map(|t| t.len())
            .unwrap_or(0);
        let need = base + max_history * longest + list_len.max(self.ctx.prompt_k) * longest;
        if need > self.ctx.config.max_seq_len {
            return Err(CoreError::Config(format!(
                "prompts of {max_history} titles plus lists of {list_len} may need {need} tokens, \
                 more than the model's {} positions",
                self.ctx.config.max_seq_len
            )));
        }
        Ok(())
    }
}
