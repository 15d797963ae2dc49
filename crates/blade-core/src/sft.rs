//! Supervised fine-tuning (SFT) of [`ItemLm`] on next-item prediction, through burn-train's
//! `Learner`: the TUI dashboard (or a plain-text renderer), checkpoints, resume, early stopping
//! and best-epoch selection on validation NDCG@10.
//!
//! Each training prompt is a sliding window `history -> next item`; the list slots are taught
//! the items that actually followed (`y_1 = next`, `y_2 = the one after`, ...), so every list
//! position of the model learns next-item prediction (METHOD.md section 4, `sft`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use blade_data::{EvalCase, ItemId, Split};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::Dataset;
use burn::optim::AdamWConfig;
use burn::prelude::*;
use burn::tensor::ExecutionError;
use burn::train::checkpoint::{
    ComposedCheckpointingStrategy, KeepLastNCheckpoints, MetricCheckpointingStrategy,
};
use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::store::{Aggregate, Direction, Split as MetricSplit};
use burn::train::metric::{
    Adaptor, ItemLazy, LearningRateMetric, LossInput, LossMetric, Metric, MetricAttributes,
    MetricMetadata, MetricName, Numeric, NumericAttributes, NumericEntry, SerializedEntry,
};
use burn::train::renderer::MetricsRenderer;
use burn::train::{
    InferenceStep, Learner, MetricEarlyStoppingStrategy, StoppingCondition, SupervisedTraining,
    TrainOutput, TrainStep,
};
use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::policy::item_lm::{ItemLm, ItemLmConfig, MASK_VALUE};
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
    /// Use at most this many training prompts (the most recent windows are kept first).
    #[config(default = "None")]
    pub max_train_prompts: Option<usize>,
    /// Data-loading worker threads (0 = load on the training thread).
    #[config(default = 0)]
    pub num_workers: usize,
}

impl SftConfig {
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

/// A vector of [`SftItem`]s as a burn dataset.
#[derive(Debug, Clone)]
pub struct SftDataset(pub Vec<SftItem>);

impl Dataset<SftItem> for SftDataset {
    fn get(&self, index: usize) -> std::result::Result<SftItem, burn::data::dataset::DatasetError> {
        self.0.get(index).cloned().ok_or_else(|| {
            burn::data::dataset::DatasetError::new(std::io::Error::other(format!(
                "index {index} out of range"
            )))
        })
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// A batch of SFT examples; tensors are built by the model on its own device.
#[derive(Debug, Clone)]
pub struct SftBatch {
    /// The examples.
    pub items: Vec<SftItem>,
}

/// Batches [`SftItem`]s.
#[derive(Debug, Clone, Default)]
pub struct SftBatcher;

impl Batcher<SftItem, SftBatch> for SftBatcher {
    fn batch(&self, items: Vec<SftItem>, _device: &Device) -> SftBatch {
        SftBatch { items }
    }
}

/// Output of one SFT step: the loss and first-slot scores (history-masked) with their targets.
pub struct SftOutput {
    /// Mean cross-entropy. `[1]`
    pub loss: Tensor<1>,
    /// First-slot scores with excluded items masked. `[batch, num_items]`
    pub scores: Tensor<2>,
    /// The next item of each prompt. `[batch]`
    pub targets: Tensor<1, Int>,
}

impl ItemLazy for SftOutput {
    fn sync(self) -> std::result::Result<Self, ExecutionError> {
        self.loss.device().flush()?;
        Ok(Self {
            loss: self.loss.without_autodiff(),
            scores: self.scores.without_autodiff(),
            targets: self.targets.without_autodiff(),
        })
    }
}

impl Adaptor<LossInput> for SftOutput {
    fn adapt(&self) -> LossInput {
        LossInput::new(self.loss.clone())
    }
}

/// Input of [`NdcgMetric`].
pub struct RankInput {
    scores: Tensor<2>,
    targets: Tensor<1, Int>,
}

impl Adaptor<RankInput> for SftOutput {
    fn adapt(&self) -> RankInput {
        RankInput {
            scores: self.scores.clone(),
            targets: self.targets.clone(),
        }
    }
}

impl ItemLm {
    fn sft_forward(&self, batch: SftBatch, slots: usize) -> SftOutput {
        let device = self.devices()[0].clone();
        let n = batch.items.len();
        let v = self.num_items();
        let slots = slots.clamp(1, self.max_list());
        let histories: Vec<Vec<ItemId>> = batch.items.iter().map(|i| i.history.clone()).collect();
        let targets: Vec<Vec<ItemId>> = batch
            .items
            .iter()
            .map(|i| i.targets.iter().take(slots).copied().collect())
            .collect();
        let logits = self.teacher_forced_logits(&histories, &targets, slots, &device);
        let mut labels = Vec::with_capacity(n * slots);
        let mut weights = Vec::with_capacity(n * slots);
        for t in &targets {
            for j in 0..slots {
                labels.push(t.get(j).map_or(0, |&x| x as i64));
                weights.push(if j < t.len() { 1.0f32 } else { 0.0 });
            }
        }
        let labels = Tensor::<2, Int>::from_data(TensorData::new(labels, [n, slots]), &device);
        let weights = Tensor::<2>::from_data(TensorData::new(weights, [n, slots]), &device);
        let first = logits.clone().narrow(1, 0, 1).reshape([n, v]);
        let loss = ItemLm::cross_entropy(logits, labels, weights);
        let mut mask = vec![0.0f32; n * v];
        for (r, it) in batch.items.iter().enumerate() {
            for &e in &it.exclude {
                if let Some(x) = mask.get_mut(r * v + e as usize) {
                    *x = MASK_VALUE;
                }
            }
        }
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [n, v]), &device);
        let first_targets: Vec<i64> = targets
            .iter()
            .map(|t| t.first().map_or(0, |&x| x as i64))
            .collect();
        SftOutput {
            loss,
            scores: first.detach() + mask,
            targets: Tensor::<1, Int>::from_data(TensorData::new(first_targets, [n]), &device),
        }
    }
}

impl TrainStep for ItemLm {
    type Input = SftBatch;
    type Output = SftOutput;

    fn step(&self, batch: SftBatch) -> TrainOutput<SftOutput> {
        let out = self.sft_forward(batch, self.max_list());
        TrainOutput::new(self, out.loss.backward(), out)
    }
}

impl InferenceStep for ItemLm {
    type Input = SftBatch;
    type Output = SftOutput;

    fn step(&self, batch: SftBatch) -> SftOutput {
        self.sft_forward(batch, 1)
    }
}

/// NDCG@k of the held-out next item under full ranking, as a burn-train metric. Each epoch's
/// final value is also appended to a shared log, used to pick the best epoch.
#[derive(Clone)]
pub struct NdcgMetric {
    k: usize,
    name: MetricName,
    state: NumericMetricState,
    epochs: Arc<Mutex<Vec<f64>>>,
}

impl NdcgMetric {
    /// NDCG at `k`.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            name: Arc::new(format!("NDCG@{k} (full ranking)")),
            state: NumericMetricState::default(),
            epochs: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Final values of the epochs seen so far.
    pub fn epoch_values(&self) -> Vec<f64> {
        self.epochs.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Metric for NdcgMetric {
    type Input = RankInput;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn update(
        &mut self,
        input: &RankInput,
        _metadata: &MetricMetadata,
    ) -> std::result::Result<SerializedEntry, burn::tensor::TensorReadError> {
        let [n, v] = input.scores.dims();
        let scores = input.scores.clone().try_into_data_as::<f32>()?;
        let scores = scores
            .as_slice::<f32>()
            .map_err(burn::tensor::TensorReadError::Data)?;
        let targets = input.targets.clone().try_into_data_as::<i64>()?;
        let targets = targets
            .as_slice::<i64>()
            .map_err(burn::tensor::TensorReadError::Data)?;
        let mut total = 0.0;
        for r in 0..n {
            let row = &scores[r * v..(r + 1) * v];
            let t = targets[r] as usize;
            let rank = blade_metrics::rank_of(row, t as u32, &[]);
            if rank <= self.k {
                total += 1.0 / ((rank + 1) as f64).log2();
            }
        }
        self.state.update(total / n.max(1) as f64, n);
        Ok(self
            .state
            .compute_update(FormatOptions::new(self.name()).precision(4)))
    }

    fn compute(&mut self) -> std::result::Result<SerializedEntry, burn::tensor::TensorReadError> {
        let entry = self
            .state
            .compute_final(FormatOptions::new(self.name()).precision(4));
        if let NumericEntry::Final(v) | NumericEntry::Value(v) = self.state.final_value() {
            if let Ok(mut e) = self.epochs.lock() {
                e.push(v);
            }
        }
        Ok(entry)
    }

    fn clear(&mut self) {
        self.state.reset();
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: None,
            higher_is_better: true,
        }
        .into()
    }
}

impl Numeric for NdcgMetric {
    fn value(&self) -> Option<NumericEntry> {
        Some(self.state.current_value())
    }

    fn running_value(&self) -> Option<NumericEntry> {
        Some(self.state.running_value())
    }

    fn final_value(&self) -> NumericEntry {
        self.state.final_value()
    }
}

/// Training windows of a split as SFT examples (the list slots get the items that followed).
pub fn train_items(split: &Split, max_list: usize, max_prompts: Option<usize>) -> Vec<SftItem> {
    let mut items = Vec::new();
    for seq in &split.train_sequences {
        for t in 1..seq.len() {
            let start = t.saturating_sub(split.max_history);
            let end = (t + max_list).min(seq.len());
            items.push(SftItem {
                history: seq[start..t].to_vec(),
                targets: seq[t..end].to_vec(),
                exclude: Vec::new(),
            });
        }
    }
    if let Some(m) = max_prompts {
        if items.len() > m {
            let skip = items.len() - m;
            items.drain(..skip);
        }
    }
    items
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
    /// Validation NDCG@10 of every epoch run in this invocation.
    pub valid_ndcg: Vec<f64>,
    /// The epoch (1-based) whose weights were kept.
    pub best_epoch: usize,
    /// Where the final model was written.
    pub model_path: PathBuf,
}

/// The newest epoch with a saved model checkpoint in `dir`, if any.
pub fn latest_checkpoint(dir: &Path) -> Option<usize> {
    let entries = std::fs::read_dir(dir.join("checkpoint")).ok()?;
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.strip_prefix("model-")?
                .strip_suffix(".bpk")?
                .parse::<usize>()
                .ok()
        })
        .max()
}

/// Trains an [`ItemLm`] with SFT on `split`, writing checkpoints, `config.json` and
/// `model.bpk` into `dir`. With `resume`, training continues from the newest checkpoint.
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
    std::fs::create_dir_all(dir).map_err(|e| CoreError::file(dir, e))?;
    let cfg_path = dir.join("config.json");
    write_atomic(&cfg_path, config.to_string().as_bytes())?;

    let train = train_items(split, config.model.max_list, config.max_train_prompts);
    let valid = eval_items(&split.valid, config.mask_history);
    if train.is_empty() || valid.is_empty() {
        return Err(CoreError::Config(
            "the split has no training prompts or no validation users".into(),
        ));
    }
    device.seed(config.seed);
    let ad = device.clone().autodiff();
    let model = config.model.init(&ad);

    let loader = |data: Vec<SftItem>, shuffle: bool| {
        let mut b = DataLoaderBuilder::new(SftBatcher)
            .batch_size(config.batch_size)
            .set_device(ad.clone());
        if shuffle {
            b = b.shuffle(config.seed);
        }
        if config.num_workers > 0 {
            b = b.num_workers(config.num_workers);
        }
        b.build(SftDataset(data))
    };
    let ndcg = NdcgMetric::new(10);
    let mut training = SupervisedTraining::new(dir, loader(train, true), loader(valid, false))
        .metrics((LossMetric::new(),))
        .metric_valid_numeric(ndcg.clone())
        .metric_train_numeric(LearningRateMetric::new())
        .with_default_checkpointers()
        .with_checkpointing_strategy(
            ComposedCheckpointingStrategy::builder()
                .add(KeepLastNCheckpoints::new(1))
                .add(MetricCheckpointingStrategy::new(
                    &ndcg,
                    Aggregate::Mean,
                    Direction::Highest,
                    MetricSplit::Valid,
                ))
                .build(),
        )
        .early_stopping(MetricEarlyStoppingStrategy::new(
            &ndcg,
            Aggregate::Mean,
            Direction::Highest,
            MetricSplit::Valid,
            StoppingCondition::NoImprovementSince {
                n_epochs: config.patience.max(1),
            },
        ))
        .num_epochs(config.epochs)
        // the application's own logger (env_logger in the CLI) stays in charge of log records
        .with_application_logger(None);
    let resumed_from = if resume { latest_checkpoint(dir) } else { None };
    if let Some(epoch) = resumed_from {
        log::info!("resuming SFT from epoch {epoch} in {}", dir.display());
        training = training.checkpoint(epoch);
    }
    if let Some(r) = renderer(dashboard, &training) {
        training = training.renderer(r);
    }
    let optim = AdamWConfig::new()
        .with_weight_decay(config.weight_decay)
        .init();
    let result = training.launch(Learner::new(model, optim, config.lr));

    let values = ndcg.epoch_values();
    let first_epoch = resumed_from.map_or(1, |e| e + 1);
    let (best_idx, _) =
        values
            .iter()
            .enumerate()
            .fold((0usize, f64::NEG_INFINITY), |acc, (i, &v)| {
                if v > acc.1 {
                    (i, v)
                } else {
                    acc
                }
            });
    let best_epoch = first_epoch + best_idx;
    let ckpt = dir
        .join("checkpoint")
        .join(format!("model-{best_epoch}.bpk"));
    let model = if !values.is_empty() && ckpt.exists() {
        result
            .model
            .clone()
            .try_load_file(&ckpt)
            .map_err(|e| CoreError::file(&ckpt, format!("{e:?}")))?
    } else {
        result.model
    };
    let model = model.valid();
    let model_path = dir.join("model.bpk");
    save_model_atomic(&model, &model_path)?;
    Ok(SftOutcome {
        model,
        valid_ndcg: values,
        best_epoch,
        model_path,
    })
}

fn renderer(
    dashboard: Dashboard,
    training: &SupervisedTraining<ItemLm>,
) -> Option<Box<dyn MetricsRenderer>> {
    use std::io::IsTerminal;
    let tui = match dashboard {
        Dashboard::Tui => true,
        Dashboard::Plain => false,
        Dashboard::Auto => std::io::stdout().is_terminal(),
    };
    if tui {
        let _ = training;
        None // burn-train's default renderer is the TUI on a terminal
    } else {
        Some(Box::new(crate::render::PlainRenderer::new()))
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so no half-written file
/// is ever left at `path` (see [`blade_data::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> crate::Result<()> {
    Ok(blade_data::write_atomic(path, bytes)?)
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Saves a module atomically (temporary file, then rename).
pub fn save_model_atomic<M: Module>(model: &M, path: &Path) -> crate::Result<()> {
    let tmp = tmp_path(path).with_extension("tmp.bpk");
    model
        .clone()
        .save_file(&tmp)
        .map_err(|e| CoreError::file(&tmp, format!("{e:?}")))?;
    std::fs::rename(&tmp, path).map_err(|e| CoreError::file(path, e))
}

/// Loads an [`ItemLm`] saved by [`train_sft`] from its run folder (`config.json` + `model.bpk`).
pub fn load_item_lm(dir: &Path, device: &Device) -> crate::Result<(SftConfig, ItemLm)> {
    let cfg_path = dir.join("config.json");
    let config = SftConfig::load(&cfg_path).map_err(|e| {
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
        .map_err(|e| CoreError::file(&path, format!("{e:?}")))?;
    Ok((config, model))
}
