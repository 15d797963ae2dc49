//! Supervised fine-tuning (SFT) of [`ItemLm`] on next-item prediction: burn-train's terminal
//! dashboard (or plain text), crash-consistent epoch checkpoints, exact resume, early stopping
//! and best-epoch selection on validation NDCG@10.
//!
//! Every epoch draws its data order and its dropout noise from `(seed, epoch)` alone, and each
//! epoch's checkpoint (model, AdamW state, progress) is one folder published with one rename
//! ([`crate::checkpoint`]): a run killed at any moment and resumed with `--resume` ends with the
//! same model file, byte for byte, as a run never interrupted. The dropout masks come from a
//! stream seeded per `(seed, epoch, batch, shard)` ([`DropoutNoise`]), not from the backend's
//! process-global generator, so row shards draw them side by side (only the model's
//! initialisation still draws from the backend's generator, seeded with `seed`).
//!
//! Each training prompt is a sliding window `history -> next item`; the list slots are taught
//! the items that actually followed (`y_1 = next`, `y_2 = the one after`, ...), so every list
//! position of the model learns next-item prediction (METHOD.md section 4, `sft`).

use std::path::{Path, PathBuf};

use blade_data::{EvalCase, ItemId, Split};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{
    check_same_settings, checkpoint_name, fnv1a, save_json, text_value, with_seeded_ids,
    Checkpoints, BEST, EPOCH,
};
use crate::dashboard::LiveDashboard;
use crate::error::CoreError;
use crate::policy::dropout::DropoutNoise;
use crate::policy::item_lm::{to_host, ItemLm, ItemLmConfig, MASK_VALUE};
use crate::policy::Recommender;

/// Settings of an SFT run; saved as `config.json` beside the checkpoints.
#[derive(Config, Debug)]
pub struct SftConfig {
    /// The model to train.
    pub model: ItemLmConfig,
    /// Maximum number of epochs.
    #[config(default = 20)]
    pub epochs: usize,
    /// Prompts per batch.
    #[config(default = 256)]
    pub batch_size: usize,
    /// AdamW learning rate.
    #[config(default = 1e-3)]
    pub lr: f64,
    /// AdamW weight decay.
    #[config(default = 1e-4)]
    pub weight_decay: f32,
    /// Stop after this many epochs without a better validation NDCG@10.
    #[config(default = 3)]
    pub patience: usize,
    /// Seed of initialisation and shuffling.
    #[config(default = 42)]
    pub seed: u64,
    /// Mask every item seen before the target when scoring validation NDCG@10.
    #[config(default = true)]
    pub mask_history: bool,
    /// Use at most this many training prompts: every user keeps its most recent windows, the
    /// cap shared out evenly between users ([`train_windows`]).
    #[config(default = "None")]
    pub max_train_prompts: Option<usize>,
    /// The training objective (see [`SftObjective`]).
    #[config(default = "SftObjective::Windows")]
    pub objective: SftObjective,
    /// Items between the ends of successive training windows of a sequence; 0 = the
    /// objective's default (1 for `windows`, `max_history` for `causal`).
    #[config(default = 0)]
    pub window_stride: usize,
    /// Kept for reading older runs' `config.json`; batches are built on the training thread.
    #[config(default = 0)]
    pub num_workers: usize,
    /// Each batch's gradient is computed as this many row shards on as many threads and
    /// summed (1 = one pass; see [`train_sft`] for how the dropout noise stays reproducible).
    #[config(default = 1)]
    pub grad_shards: usize,
}

/// What SFT teaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SftObjective {
    /// Every window `history -> next items` of every sequence; the list slots are taught the
    /// items that followed (each item is a target in up to `L + K` overlapping windows).
    Windows,
    /// SASRec-style: windows every `window_stride` items (default `L`), and every position of
    /// a window is taught its next item, the history slots as well as the list slots, in one
    /// causal pass. About `L` times fewer forward passes per epoch than `windows`.
    Causal,
}

impl std::str::FromStr for SftObjective {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "windows" => Ok(Self::Windows),
            "causal" | "sasrec" => Ok(Self::Causal),
            _ => Err(format!(
                "--sft-objective {s}: expected `windows` or `causal`"
            )),
        }
    }
}

impl std::fmt::Display for SftObjective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Windows => "windows",
            Self::Causal => "causal",
        })
    }
}

impl SftConfig {
    /// Reads a run's `config.json`; settings added after the run was made (absent from the
    /// file) take their defaults, so older runs keep loading.
    pub fn read(path: &Path) -> std::result::Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let mut v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        if let Some(o) = v.as_object_mut() {
            o.entry("objective").or_insert_with(|| "windows".into());
            o.entry("window_stride").or_insert_with(|| 0.into());
            o.entry("grad_shards").or_insert_with(|| 1.into());
        }
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    /// Items between successive training windows (the objective's default when unset).
    pub fn stride(&self) -> usize {
        match (self.window_stride, self.objective) {
            (0, SftObjective::Windows) => 1,
            (0, SftObjective::Causal) => self.model.max_history.max(1),
            (s, _) => s,
        }
    }

    /// Checks every setting against what burn and the data can take; an error names the
    /// command-line flag and what was expected. `catalogue` is the number of items, the
    /// longest list a user with a full history can still get is `catalogue - max_history`.
    pub fn check(&self) -> crate::Result<()> {
        let bad = |m: String| Err(CoreError::Config(m));
        let m = &self.model;
        if m.num_items == 0 {
            return bad("the catalogue is empty".into());
        }
        if m.d_model == 0 || m.d_model > 4096 {
            return bad(format!("--d-model {}: expected 1..=4096", m.d_model));
        }
        if m.n_heads == 0 || !m.d_model.is_multiple_of(m.n_heads) {
            return bad(format!(
                "--heads {}: expected a positive divisor of --d-model {}",
                m.n_heads, m.d_model
            ));
        }
        if m.n_layers == 0 || m.n_layers > 64 {
            return bad(format!("--layers {}: expected 1..=64", m.n_layers));
        }
        if !(m.dropout.is_finite() && (0.0..1.0).contains(&m.dropout)) {
            return bad(format!(
                "--dropout {}: expected a number in [0, 1)",
                m.dropout
            ));
        }
        if m.max_history == 0 || m.max_history > 10_000 {
            return bad(format!(
                "--history-len {}: expected 1..=10000",
                m.max_history
            ));
        }
        if m.max_list == 0 || m.max_list + m.max_history > m.num_items {
            return bad(format!(
                "--list-len {}: expected 1..={} (the catalogue of {} items minus the {} history \
                 items a prompt may exclude)",
                m.max_list,
                m.num_items.saturating_sub(m.max_history).max(1),
                m.num_items,
                m.max_history
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!(
                "--lr {}: expected a positive finite number",
                self.lr
            ));
        }
        if self.epochs == 0 {
            return bad("--epochs 0: expected at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("--batch-size 0: expected at least 1".into());
        }
        if self.grad_shards == 0 || self.grad_shards > 64 {
            return bad(format!(
                "--sft-grad-shards {}: expected 1..=64",
                self.grad_shards
            ));
        }
        if self.window_stride > 10_000 {
            return bad(format!(
                "--window-stride {}: expected 0..=10000 (0 = the objective's default)",
                self.window_stride
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "weight decay {}: expected a finite number >= 0",
                self.weight_decay
            ));
        }
        Ok(())
    }
}

/// Which renderer shows the training progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Dashboard {
    /// The burn-train terminal dashboard when stdout is a terminal, plain text otherwise.
    Auto,
    /// Always the terminal dashboard.
    Tui,
    /// One line per epoch and split.
    Plain,
}

/// One SFT example: a prompt and the items the list slots are taught.
#[derive(Debug, Clone)]
pub struct SftItem {
    /// Up to `L` history items, oldest first.
    pub history: Vec<ItemId>,
    /// The items that followed, first = next item (at least one).
    pub targets: Vec<ItemId>,
    /// Items excluded from the validation ranking.
    pub exclude: Vec<ItemId>,
}

impl ItemLm {
    /// The labels and weights (1 = taught, 0 = padding) of a batch, `width` per row: with
    /// `causal`, the `L` history slots (slot `p` the item after it, the last history slot the
    /// first target) before the `slots` list slots.
    fn sft_labels(&self, items: &[&SftItem], slots: usize, causal: bool) -> (Vec<i64>, Vec<f32>) {
        let l = self.max_history();
        let width = if causal { l + slots } else { slots };
        let mut labels = Vec::with_capacity(items.len() * width);
        let mut weights = Vec::with_capacity(items.len() * width);
        for it in items {
            let t = &it.targets[..it.targets.len().min(slots)];
            if causal {
                // the history is left-padded to L slots, most recent last
                let h = &it.history[it.history.len().saturating_sub(l)..];
                let pad = l - h.len();
                for p in 0..l {
                    let next = if p < pad {
                        None
                    } else if p - pad + 1 < h.len() {
                        Some(h[p - pad + 1])
                    } else {
                        t.first().copied()
                    };
                    labels.push(next.map_or(0, i64::from));
                    weights.push(if next.is_some() { 1.0f32 } else { 0.0 });
                }
            }
            for j in 0..slots {
                labels.push(t.get(j).map_or(0, |&x| x as i64));
                weights.push(if j < t.len() { 1.0f32 } else { 0.0 });
            }
        }
        (labels, weights)
    }

    /// The number of taught slots of a batch: the denominator of its mean loss.
    fn sft_label_count(&self, items: &[&SftItem], slots: usize, causal: bool) -> f32 {
        let slots = slots.clamp(1, self.max_list());
        self.sft_labels(items, slots, causal).1.iter().sum()
    }

    /// The SFT loss of a batch; with `causal`, the history slots are taught too (slot `p` the
    /// item after it, the last history slot the first target), else only the list slots. The
    /// loss is the summed cross-entropy divided by `denominator` (a row shard passes its whole
    /// batch's label count), or by the batch's own label count. Dropout masks come from
    /// `noise` (none: the modules' own, which an inference model never draws). `[1]`
    fn sft_loss(
        &self,
        items: &[&SftItem],
        slots: usize,
        causal: bool,
        denominator: Option<f32>,
        noise: Option<&DropoutNoise>,
    ) -> Tensor<1> {
        let device = self.devices()[0].clone();
        let n = items.len();
        let l = self.max_history();
        let slots = slots.clamp(1, self.max_list());
        let histories: Vec<Vec<ItemId>> = items.iter().map(|i| i.history.clone()).collect();
        let targets: Vec<Vec<ItemId>> = items
            .iter()
            .map(|i| i.targets.iter().take(slots).copied().collect())
            .collect();
        let (logits, width) = if causal {
            let all = self.causal_logits(&histories, &targets, slots, &device, noise);
            (all, l + slots)
        } else {
            let list = self.teacher_forced_logits(&histories, &targets, slots, &device, noise);
            (list, slots)
        };
        let (labels, weights) = self.sft_labels(items, slots, causal);
        let labels = Tensor::<2, Int>::from_data(TensorData::new(labels, [n, width]), &device);
        let weights = Tensor::<2>::from_data(TensorData::new(weights, [n, width]), &device);
        match denominator {
            None => ItemLm::cross_entropy(logits, labels, weights),
            Some(d) => ItemLm::cross_entropy_sum(logits, labels, weights) / d.max(1.0),
        }
    }
}

/// The loss of one SFT batch on the host and its parameter gradients, the batch cut into
/// `shards` row shards (see [`train_sft`]): each shard runs its forward and backward pass on its
/// own thread and its own fork of `model`, with dropout masks from its own stream seeded by
/// `(noise_seed, shard)`. The summed gradient is the gradient of the batch's mean loss with that
/// noise.
fn sharded_sft_gradients(
    model: &ItemLm,
    device: &Device,
    items: &[&SftItem],
    slots: usize,
    causal: bool,
    shards: usize,
    noise_seed: u64,
) -> crate::Result<(f32, GradientsParams)> {
    let ad = device.clone().autodiff();
    let total = model.sft_label_count(items, slots, causal);
    let jobs: Vec<(usize, ItemLm, std::ops::Range<usize>)> =
        crate::parallel::ranges(items.len(), shards)
            .into_iter()
            .enumerate()
            .map(|(s, r)| (s, model.clone().fork(&ad), r))
            .collect();
    let mut outs = crate::parallel::on_threads(jobs, |(s, replica, rows)| {
        let noise = shard_noise(noise_seed, s);
        let loss = replica.sft_loss(&items[rows], slots, causal, Some(total), Some(&noise));
        let value = loss_value(&loss)?;
        let grads = GradientsParams::from_grads(loss.backward(), &replica);
        Ok((value, grads, replica))
    })?;
    let (mut value, mut grads, replica) = outs.remove(0);
    for (v, mut g, _) in outs {
        value += v;
        crate::parallel::add_grads(&replica, &mut grads, &mut g);
    }
    Ok((value, grads))
}

/// The dropout stream of row shard `shard` of a batch whose noise seed is `noise_seed` (one
/// pass is shard 0).
fn shard_noise(noise_seed: u64, shard: usize) -> DropoutNoise {
    DropoutNoise::new(fnv1a(&(shard as u64).to_le_bytes(), noise_seed))
}

/// A scalar loss on the host.
fn loss_value(loss: &Tensor<1>) -> crate::Result<f32> {
    Ok(loss
        .clone()
        .detach()
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| CoreError::Tensor(format!("{e:?}")))?
        .first()
        .copied()
        .unwrap_or(f32::NAN))
}

/// Mean NDCG@`k` of each example's next item under full ranking of the first slot's scores
/// (excluded items masked), in batches of `batch`.
pub fn sft_valid_ndcg(
    model: &ItemLm,
    items: &[SftItem],
    k: usize,
    batch: usize,
) -> crate::Result<f64> {
    let v = model.num_items();
    let device = model.devices()[0].clone();
    let mut total = 0.0;
    for chunk in items.chunks(batch.max(1)) {
        let histories: Vec<Vec<ItemId>> = chunk.iter().map(|i| i.history.clone()).collect();
        let mut scores = to_host(model.first_slot_logits(&histories, &device))?;
        for (it, row) in chunk.iter().zip(scores.chunks_mut(v)) {
            // excluded items pushed to the bottom (the target is ranked even if excluded)
            let mut mask = vec![0.0f32; v];
            for &e in &it.exclude {
                if let Some(x) = mask.get_mut(e as usize) {
                    *x = MASK_VALUE;
                }
            }
            for (s, m) in row.iter_mut().zip(&mask) {
                *s += m;
            }
            let t = it.targets.first().copied().unwrap_or(0);
            let rank = blade_metrics::rank_of(row, t, &[]);
            if rank <= k {
                total += 1.0 / ((rank + 1) as f64).log2();
            }
        }
    }
    Ok(total / items.len().max(1) as f64)
}

/// Training windows of a split as SFT examples (the list slots get the items that followed).
pub fn train_items(split: &Split, max_list: usize, max_prompts: Option<usize>) -> Vec<SftItem> {
    train_windows(split, max_list, max_prompts, 1)
}

/// Training windows every `stride` items, counted back from each sequence's end (so the most
/// recent window is always there), as SFT examples.
///
/// With `max_prompts` below the number of windows, every user keeps its most recent windows
/// and the cap is shared out evenly: the largest per-user count `c` with
/// `sum_u min(n_u, c) <= max_prompts`, then one more window each for users that have one,
/// spread evenly over them in split order, until exactly `max_prompts` are kept. (Before
/// 2026-12-07 the cap kept the last `max_prompts` windows of all users in split order, so the
/// first users lost all of theirs.)
pub fn train_windows(
    split: &Split,
    max_list: usize,
    max_prompts: Option<usize>,
    stride: usize,
) -> Vec<SftItem> {
    let stride = stride.max(1);
    let ends: Vec<Vec<usize>> = split
        .train_sequences
        .iter()
        .map(|seq| {
            let mut ends: Vec<usize> = (1..seq.len()).rev().step_by(stride).collect();
            ends.reverse();
            ends
        })
        .collect();
    let counts: Vec<usize> = ends.iter().map(Vec::len).collect();
    let keep = match max_prompts {
        Some(m) if counts.iter().sum::<usize>() > m => share_out(&counts, m),
        _ => counts,
    };
    let mut items = Vec::with_capacity(keep.iter().sum());
    for ((seq, ends), &k) in split.train_sequences.iter().zip(&ends).zip(&keep) {
        for &t in &ends[ends.len() - k..] {
            let start = t.saturating_sub(split.max_history);
            let end = (t + max_list).min(seq.len());
            items.push(SftItem {
                history: seq[start..t].to_vec(),
                targets: seq[t..end].to_vec(),
                exclude: Vec::new(),
            });
        }
    }
    items
}

/// How many of its `counts[u]` windows each user keeps when `total` (less than their sum) are
/// kept: the largest even cap `c`, then one more for users above it, spread evenly over them.
fn share_out(counts: &[usize], total: usize) -> Vec<usize> {
    let kept = |c: usize| counts.iter().map(|&n| n.min(c)).sum::<usize>();
    // kept(c) grows with c; kept(0) = 0 <= total < kept(max)
    let (mut lo, mut hi) = (0, counts.iter().copied().max().unwrap_or(0));
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if kept(mid) <= total {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let mut keep: Vec<usize> = counts.iter().map(|&n| n.min(lo)).collect();
    // the remaining windows go one each to users that have more, spread evenly over them
    let above: Vec<usize> = (0..counts.len()).filter(|&u| counts[u] > lo).collect();
    let left = total - kept(lo);
    for i in 0..left {
        keep[above[i * above.len() / left]] += 1;
    }
    keep
}

/// Evaluation cases as SFT examples (one target; exclusions when `mask_history`).
pub fn eval_items(cases: &[EvalCase], mask_history: bool) -> Vec<SftItem> {
    cases
        .iter()
        .map(|c| SftItem {
            history: c.history.clone(),
            targets: vec![c.target],
            exclude: if mask_history {
                c.seen.clone()
            } else {
                Vec::new()
            },
        })
        .collect()
}

/// What an SFT run leaves behind.
pub struct SftOutcome {
    /// The selected model (best validation epoch), in inference mode.
    pub model: ItemLm,
    /// Validation NDCG@10 of every epoch of the run, those before a resume included.
    pub valid_ndcg: Vec<f64>,
    /// Epochs run by this call (fewer than `valid_ndcg.len()` after a resume).
    pub epochs_run: usize,
    /// The epoch (1-based) whose weights were kept.
    pub best_epoch: usize,
    /// Where the final model was written.
    pub model_path: PathBuf,
}

/// Progress of an SFT run, saved in every epoch checkpoint as `state.json` and, at the end, as
/// the run's `sft_log.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SftState {
    /// Epochs completed.
    pub epoch: usize,
    /// Validation NDCG@10 (full ranking) after each epoch.
    pub valid_ndcg: Vec<f64>,
    /// Mean training loss of each epoch.
    pub train_loss: Vec<f64>,
    /// The best epoch so far (1-based; 0 = none yet).
    pub best_epoch: usize,
    /// Epochs since the best one.
    pub since_best: usize,
    /// Set when early stopping ended the run.
    pub stopped_early: bool,
    /// Fingerprint of the training and validation examples the run was made with.
    pub data: String,
}

/// The newest epoch with a complete checkpoint in run folder `dir`, if any.
pub fn latest_checkpoint(dir: &Path) -> Option<usize> {
    Checkpoints::of_run(dir).latest(EPOCH).map(|(n, _)| n)
}

/// A fingerprint of the examples (catalogue size, every history, target and exclusion).
fn data_fingerprint(num_items: usize, train: &[SftItem], valid: &[SftItem]) -> String {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&(num_items as u64).to_le_bytes());
    for set in [train, valid] {
        bytes.extend_from_slice(&(set.len() as u64).to_le_bytes());
        for it in set {
            for part in [&it.history, &it.targets, &it.exclude] {
                bytes.extend_from_slice(&(part.len() as u32).to_le_bytes());
                for &x in part.iter() {
                    bytes.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
    }
    format!("{:016x}", fnv1a(&bytes, 0))
}

fn read_state(path: &Path) -> crate::Result<SftState> {
    let text = std::fs::read_to_string(path).map_err(|e| CoreError::file(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| CoreError::file(path, format!("not an SFT checkpoint state ({e})")))
}

/// Trains an [`ItemLm`] with SFT on `split`, writing `config.json`, the checkpoints
/// (`checkpoint/`), `sft_log.json` and the best epoch's `model.bpk` into `dir`.
///
/// With `resume`, training continues from the newest complete epoch checkpoint: the settings
/// (all but `epochs` and `patience`) and the data must be the run's, else nothing is written and
/// the error names what differs. The result is the same, file for file, as an uninterrupted run.
/// Every check is made before anything is written.
pub fn train_sft(
    config: &SftConfig,
    split: &Split,
    device: &Device,
    dir: &Path,
    dashboard: Dashboard,
    resume: bool,
) -> crate::Result<SftOutcome> {
    config.check()?;
    if config.model.max_history != split.max_history {
        return Err(CoreError::Config(format!(
            "model max_history {} differs from the split's {}",
            config.model.max_history, split.max_history
        )));
    }
    let train = train_windows(
        split,
        config.model.max_list,
        config.max_train_prompts,
        config.stride(),
    );
    let causal = config.objective == SftObjective::Causal;
    let valid = eval_items(&split.valid, config.mask_history);
    if train.is_empty() || valid.is_empty() {
        return Err(CoreError::Config(
            "the split has no training prompts or no validation users".into(),
        ));
    }
    let data = data_fingerprint(config.model.num_items, &train, &valid);
    let store = Checkpoints::of_run(dir);
    let cfg_path = dir.join("config.json");
    let resumed = if resume {
        let Some((_, ck)) = store.latest(EPOCH) else {
            return Err(CoreError::file(
                store.root(),
                "cannot resume: no complete SFT checkpoint here; run without --resume to start \
                 this folder afresh",
            ));
        };
        let saved = SftConfig::read(&cfg_path).map_err(|e| {
            CoreError::file(
                &cfg_path,
                format!("cannot resume: no readable SFT config ({e})"),
            )
        })?;
        let saved = text_value(&saved, &cfg_path)?;
        check_same_settings(
            &saved,
            config,
            &["epochs", "patience", "num_workers"],
            &cfg_path,
        )?;
        let state = read_state(&ck.join("state.json"))?;
        if state.data != data {
            return Err(CoreError::file(
                &cfg_path,
                format!(
                    "cannot resume: the data differ from the run's (fingerprint {} now, {} in the \
                     run): resume with the run's dataset, --history-len and --max-train-prompts",
                    data, state.data
                ),
            ));
        }
        Some((ck, state))
    } else {
        None
    };

    std::fs::create_dir_all(dir).map_err(|e| CoreError::file(dir, e))?;
    if resumed.is_some() {
        store.remove_stale()?;
    } else {
        store.clear()?;
    }
    write_atomic(&cfg_path, config.to_string().as_bytes())?;

    let ad = device.clone().autodiff();
    let init = crate::device::seeded_init(device, config.seed, || Ok(config.model.init(&ad)))?;
    let mut model = with_seeded_ids(init, config.seed);
    let mut optim: ModuleOptimizer = AdamWConfig::new()
        .with_weight_decay(config.weight_decay)
        .init();
    let mut state = match resumed {
        Some((ck, state)) => {
            let p = ck.join("model.bpk");
            model = model
                .try_load_file(&p)
                .map_err(|e| CoreError::file(&p, e))?;
            let p = ck.join("optim.bpk");
            optim = optim.load(&p).map_err(|e| CoreError::file(&p, e))?;
            log::info!(
                "resuming SFT after epoch {} in {}",
                state.epoch,
                dir.display()
            );
            state
        }
        None => SftState {
            data,
            ..SftState::default()
        },
    };

    let bs = config.batch_size;
    let batches = train.len().div_ceil(bs);
    let total = config.epochs * batches;
    let mut dash = LiveDashboard::new(dashboard, "sft", total);
    dash.begin(total);
    let mut epochs_run = 0;
    while state.epoch < config.epochs && !state.stopped_early {
        if dash.should_stop() {
            break;
        }
        let epoch = state.epoch + 1;
        // the epoch's data order and dropout noise depend on (seed, epoch) only
        let mix = fnv1a(&(epoch as u64).to_le_bytes(), config.seed);
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(mix));
        let (mut loss_sum, mut seen) = (0.0f64, 0usize);
        for (b, chunk) in order.chunks(bs).enumerate() {
            let items: Vec<&SftItem> = chunk.iter().map(|&i| &train[i]).collect();
            let slots = config.model.max_list;
            // dropout masks seeded per (epoch, batch[, shard]): the same noise whatever the
            // thread timing, and on resume
            let noise = fnv1a(&(b as u64).to_le_bytes(), mix);
            let (value, grads) = if config.grad_shards > 1 {
                sharded_sft_gradients(
                    &model,
                    device,
                    &items,
                    slots,
                    causal,
                    config.grad_shards,
                    noise,
                )?
            } else {
                let noise = shard_noise(noise, 0);
                let loss = model.sft_loss(&items, slots, causal, None, Some(&noise));
                let value = loss_value(&loss)?;
                (value, GradientsParams::from_grads(loss.backward(), &model))
            };
            if !value.is_finite() {
                return Err(CoreError::Config(format!(
                    "the SFT loss is {value} at epoch {epoch}, batch {}: lower --lr (now {})",
                    b + 1,
                    config.lr
                )));
            }
            model = optim.step(config.lr, model, grads);
            loss_sum += f64::from(value) * chunk.len() as f64;
            seen += chunk.len();
            dash.train("loss", loss_sum / seen as f64, false);
            dash.progress((epoch - 1) * batches + b + 1);
        }
        let inference = model.valid();
        let v = sft_valid_ndcg(&inference, &valid, 10, 256)?;
        dash.valid("valid NDCG@10 (full ranking)", v, true);
        state.epoch = epoch;
        state.valid_ndcg.push(v);
        state.train_loss.push(loss_sum / seen.max(1) as f64);
        let best_so_far = state
            .best_epoch
            .checked_sub(1)
            .and_then(|i| state.valid_ndcg.get(i).copied());
        if best_so_far.is_none_or(|b| v > b) {
            state.best_epoch = epoch;
            state.since_best = 0;
            let name = checkpoint_name(BEST, epoch);
            let stage = store.stage(&name)?;
            save_model_atomic(&inference, &stage.join("model.bpk"))?;
            store.publish(&name, &[], false)?;
        } else {
            state.since_best += 1;
            if state.since_best >= config.patience.max(1) {
                state.stopped_early = true;
            }
        }
        // the epoch's checkpoint: model, optimiser and progress as one folder
        let name = checkpoint_name(EPOCH, epoch);
        let stage = store.stage(&name)?;
        save_model_atomic(&inference, &stage.join("model.bpk"))?;
        let p = stage.join("optim.bpk");
        optim.save(&p).map_err(|e| CoreError::file(&p, e))?;
        save_json(&stage.join("state.json"), &state)?;
        store.publish(&name, &[checkpoint_name(BEST, state.best_epoch)], true)?;
        epochs_run += 1;
    }
    dash.finish();
    if state.best_epoch == 0 {
        return Err(CoreError::Config(
            "SFT stopped before its first epoch ended: no model to keep".into(),
        ));
    }
    let best = store
        .path(&checkpoint_name(BEST, state.best_epoch))
        .join("model.bpk");
    let model_path = dir.join("model.bpk");
    let bytes = std::fs::read(&best).map_err(|e| CoreError::file(&best, e))?;
    write_atomic(&model_path, &bytes)?;
    save_json(&dir.join("sft_log.json"), &state)?;
    let model = config
        .model
        .init(device)
        .try_load_file(&model_path)
        .map_err(|e| CoreError::file(&model_path, e))?;
    Ok(SftOutcome {
        model,
        valid_ndcg: state.valid_ndcg,
        epochs_run,
        best_epoch: state.best_epoch,
        model_path,
    })
}

/// Writes `bytes` to `path` through a temporary file and a rename, so no half-written file
/// is ever left at `path` (see [`blade_data::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> crate::Result<()> {
    Ok(blade_data::write_atomic(path, bytes)?)
}

/// Saves a module atomically: into a temporary sibling unique to the call (process and call
/// number, as [`write_atomic`]), then renamed onto `path`; the temporary file is removed when
/// either step fails. Two threads saving the same path (`blade compare --jobs`) cannot rename
/// each other's half-written file away.
pub fn save_model_atomic<M: Module>(model: &M, path: &Path) -> crate::Result<()> {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // burn's recorder sets the `.bpk` extension itself, so the temporary name ends in it
    let tmp = path.with_file_name(format!(".{name}.tmp-{}-{call}.bpk", std::process::id()));
    if let Err(e) = model.clone().save_file(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(CoreError::file(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        CoreError::file(path, e)
    })
}

/// Loads an [`ItemLm`] saved by [`train_sft`] from its run folder (`config.json` + `model.bpk`).
pub fn load_item_lm(dir: &Path, device: &Device) -> crate::Result<(SftConfig, ItemLm)> {
    let cfg_path = dir.join("config.json");
    let config = SftConfig::read(&cfg_path).map_err(|e| {
        CoreError::file(
            &cfg_path,
            format!("not a readable SFT config ({e}); was this folder made by `blade train`?"),
        )
    })?;
    let path = dir.join("model.bpk");
    if !path.exists() {
        return Err(CoreError::file(
            &path,
            "no trained model here; run `blade train` first",
        ));
    }
    let model = config
        .model
        .init(device)
        .try_load_file(&path)
        .map_err(|e| CoreError::file(&path, e))?;
    Ok((config, model))
}

#[cfg(all(test, feature = "flex"))]
mod shard_tests {
    use super::*;
    use crate::parallel::testing::{host_grads, tiny_model};

    #[test]
    fn concurrent_saves_of_one_model_file_all_land_and_leave_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.bpk");
        let device = Default::default();
        let model = tiny_model(16, &device);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| save_model_atomic(&model, &path)))
                .collect();
            for h in handles {
                h.join().unwrap().unwrap();
            }
        });
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["model.bpk".to_string()]);
        let loaded = tiny_model(16, &device).try_load_file(&path);
        assert!(loaded.is_ok(), "{:?}", loaded.err());
        // a save that cannot be written leaves nothing behind and names the file
        let bad = dir.path().join("no-such-folder").join("model.bpk");
        let err = save_model_atomic(&model, &bad).unwrap_err().to_string();
        assert!(err.contains("no-such-folder"), "{err}");
    }

    fn flat(model: &ItemLm, grads: &GradientsParams) -> Vec<f32> {
        host_grads(model, grads)
            .into_iter()
            .flat_map(|(_, g)| g)
            .collect()
    }

    /// Without dropout, the summed shard gradients are the one-pass gradient of the batch's
    /// mean loss (up to summation order), for both objectives and uneven shards.
    #[test]
    fn sharded_gradients_equal_the_one_pass_gradient() {
        let device = crate::BackendSpec::Flex.device().unwrap();
        let ad = device.clone().autodiff();
        let model = tiny_model(30, &ad);
        let items: Vec<SftItem> = (0..13)
            .map(|r| SftItem {
                history: (0..r % 6)
                    .map(|i| ((r * 7 + i * 3) % 30) as ItemId)
                    .collect(),
                // uneven target counts: the shards' label counts differ
                targets: (0..1 + r % 4)
                    .map(|k| ((r * 5 + k * 11 + 1) % 30) as ItemId)
                    .collect(),
                exclude: Vec::new(),
            })
            .collect();
        let refs: Vec<&SftItem> = items.iter().collect();
        for causal in [false, true] {
            let loss = model.sft_loss(&refs, 4, causal, None, None);
            let value = loss_value(&loss).unwrap();
            let one = flat(
                &model,
                &GradientsParams::from_grads(loss.backward(), &model),
            );
            let scale = one.iter().fold(0f32, |m, x| m.max(x.abs()));
            assert!(scale > 1e-3);
            for shards in [2, 5, 13] {
                let (v, g) =
                    sharded_sft_gradients(&model, &device, &refs, 4, causal, shards, 9).unwrap();
                assert!(
                    (v - value).abs() < 1e-5 * value.abs().max(1.0),
                    "{v} vs {value}"
                );
                let many = flat(&model, &g);
                assert_eq!(many.len(), one.len());
                let worst = one
                    .iter()
                    .zip(&many)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(
                    worst <= 1e-5 * scale.max(1.0),
                    "causal {causal}, {shards} shards: max |difference| {worst} (scale {scale})"
                );
            }
        }
    }
}
