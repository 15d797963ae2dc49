//! Run folders: the manifest every run carries (`run.json`: which policy kind it holds, the
//! method and the data), opening a trained run of either kind as one [`Policy`], and aligning
//! from an SFT run of either kind.
//!
//! What a run holds is read from its manifest, never guessed from which files exist.

use std::path::{Path, PathBuf};

use blade_core::align::{
    train_align, AlignConfig, AlignInputs, AlignSummary, StepRecord, BEST_DIR,
};
use blade_core::sft::{load_item_lm, write_atomic};
use blade_core::{
    CoreError, Dashboard, DecodeStrategy, ItemLm, Policy, PromptBatch, Recommender, Result,
    Rollouts, SampleSpec, TokenLogProbs,
};
use blade_data::ItemId;
use burn::tensor::{Device, Tensor};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::data::DataSpec;

/// The manifest's file name inside a run folder.
pub const MANIFEST_FILE: &str = "run.json";

/// Which policy a run folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunKind {
    /// The item-level transformer [`ItemLm`] (`config.json` + `model.bpk`).
    Item,
    /// A pretrained LLM over item titles ([`blade_llm::LlmPolicy`]: `llm.json` + adapters).
    Llm,
}

impl RunKind {
    /// The name written in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Self::Item => "item",
            Self::Llm => "llm",
        }
    }

    /// Prompts per evaluation batch: an LLM decodes a batch in lockstep with a KV cache per
    /// row, so its batches stay small.
    pub fn eval_batch_size(self) -> usize {
        match self {
            Self::Item => 256,
            Self::Llm => 16,
        }
    }

    /// How alignment cuts its gradient passes unless told otherwise. The item policy: the
    /// trainer's defaults (4 shards, graphs kept: the fastest on 2 cores). An LLM policy: 16
    /// shards, each recomputed at the backward pass, so that only as many shards' graphs as
    /// threads are alive at once (LoRA alignment of SmolLM2-135M then peaks under 1.5 GB,
    /// docs/results/speed-llm.md). Neither changes the results beyond summation order.
    pub fn gradient_passes(self) -> GradientPasses {
        match self {
            Self::Item => {
                let d = blade_core::align::AlignConfig::new(
                    blade_core::align::Method::Grpo.default_config(),
                );
                GradientPasses {
                    grad_shards: d.grad_shards,
                    recompute: d.recompute,
                }
            }
            Self::Llm => GradientPasses {
                grad_shards: 16,
                recompute: true,
            },
        }
    }
}

/// `AlignConfig::grad_shards` and `AlignConfig::recompute` together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GradientPasses {
    /// Row shards of each gradient pass.
    pub grad_shards: usize,
    /// Whether each shard's forward pass is recomputed at the backward pass.
    pub recompute: bool,
}

/// What every run folder records about itself (`run.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    /// The policy the folder holds.
    pub kind: RunKind,
    /// The method trained (`sft`, or an alignment method's name).
    pub method: String,
    /// The data settings, so later commands rebuild the same data and split.
    pub data: DataSpec,
    /// The catalogue the run was trained on; commands that use the run check that the data
    /// they rebuild still has it (absent in runs of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<CatalogStamp>,
}

/// A catalogue's size and a hash of its content (every item's raw id and title, in order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogStamp {
    /// Number of items.
    pub items: usize,
    /// FNV-1a hash of the raw ids and titles, hex.
    pub hash: String,
}

impl CatalogStamp {
    /// The stamp of `ds`'s catalogue.
    pub fn of(ds: &blade_data::Dataset) -> Self {
        let mut bytes = Vec::new();
        for it in &ds.catalog.items {
            for part in [&it.raw_id, &it.title] {
                bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
                bytes.extend_from_slice(part.as_bytes());
            }
        }
        Self {
            items: ds.catalog.items.len(),
            hash: format!("{:016x}", blade_core::checkpoint::fnv1a(&bytes, 0)),
        }
    }
}

/// The manifest as written by older versions, which had no `kind`.
#[derive(Deserialize)]
struct RawManifest {
    kind: Option<RunKind>,
    method: String,
    data: DataSpec,
    #[serde(default)]
    catalog: Option<CatalogStamp>,
}

impl RunManifest {
    /// Reads `run.json` of the run folder `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            CoreError::file(
                &path,
                format!("{e}; not a run folder made by `blade train`"),
            )
        })?;
        let raw: RawManifest = serde_json::from_str(&text)
            .map_err(|e| CoreError::file(&path, format!("malformed run manifest: {e}")))?;
        let Some(kind) = raw.kind else {
            return Err(CoreError::file(
                &path,
                "the manifest has no `kind` (written by an older blade): add \
                 \"kind\": \"item\" for an item-level run or \"kind\": \"llm\" for an LLM run",
            ));
        };
        Ok(Self {
            kind,
            method: raw.method,
            data: raw.data,
            catalog: raw.catalog,
        })
    }

    /// A manifest for a run of `kind` and `method` trained on `ds` built from `data`.
    pub fn new(kind: RunKind, method: &str, data: &DataSpec, ds: &blade_data::Dataset) -> Self {
        Self {
            kind,
            method: method.into(),
            data: data.clone(),
            catalog: Some(CatalogStamp::of(ds)),
        }
    }

    /// Rebuilds the run's data and split, and checks that the catalogue is the one the run in
    /// `dir` was trained on: a catalogue that gained, lost or changed items would be scored
    /// with the wrong item embeddings (or past their end).
    pub fn dataset_and_split(
        &self,
        dir: &Path,
    ) -> Result<(blade_data::Dataset, blade_data::Split)> {
        let (ds, split) = self.data.dataset_and_split()?;
        self.check_catalog(&ds, dir)?;
        Ok((ds, split))
    }

    /// The catalogue facts of the run's data for rewards ([`DataSpec::catalog_info`]).
    pub fn catalog_info(
        &self,
        ds: &blade_data::Dataset,
        split: &blade_data::Split,
    ) -> Result<blade_core::reward::CatalogInfo> {
        self.data.catalog_info(ds, split)
    }

    /// The catalogue facts an alignment from this SFT run (in `init`) scores with:
    /// [`Self::catalog_info`], and, where one of `specs` (the reward, the selection metric) uses
    /// `endcg@K`, the run's own next-item belief: its model's softmax over the unseen items
    /// ([`blade_core::reward::ModelBelief`]). Only an item-policy run has one here.
    pub fn catalog_for(
        &self,
        ds: &blade_data::Dataset,
        split: &blade_data::Split,
        init: &Path,
        specs: &[&str],
        device: &Device,
    ) -> Result<blade_core::reward::CatalogInfo> {
        let catalog = self.catalog_info(ds, split)?;
        if !specs.iter().any(|s| uses_belief(s)) {
            return Ok(catalog);
        }
        match self.kind {
            RunKind::Item => with_sft_belief(catalog, init, device),
            RunKind::Llm => Err(CoreError::Config(format!(
                "`endcg@K` takes its expectation under an item-policy SFT run's next-item \
                 belief, and {} is an LLM run (its whole-catalogue scoring is too slow to score \
                 every rollout); use another reward",
                init.display()
            ))),
        }
    }

    /// Checks that `ds` (built from `--data` `data`) has the catalogue the run in `dir` was
    /// trained on; runs of older versions carry no stamp and pass.
    pub fn check_catalog(&self, ds: &blade_data::Dataset, dir: &Path) -> Result<()> {
        let Some(stamp) = &self.catalog else {
            return Ok(());
        };
        let now = CatalogStamp::of(ds);
        if &now == stamp {
            return Ok(());
        }
        Err(CoreError::file(
            dir.join(MANIFEST_FILE),
            format!(
                "the run was trained on a catalogue of {} items (content hash {}), but the data \
                 now gives {} items (hash {}): the dataset changed since; rebuild it as it was, \
                 or train a new run on it",
                stamp.items, stamp.hash, now.items, now.hash
            ),
        ))
    }

    /// Writes `run.json` into `dir` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| CoreError::file(dir.join(MANIFEST_FILE), e))?;
        write_atomic(&dir.join(MANIFEST_FILE), text.as_bytes())
    }

    /// Reads the manifest of `init` and checks that it is an SFT run.
    pub fn load_sft(init: &Path) -> Result<Self> {
        let m = Self::load(init)?;
        if m.method != "sft" {
            return Err(CoreError::Config(format!(
                "--init {}: expected an SFT run, found a `{}` run",
                init.display(),
                m.method
            )));
        }
        Ok(m)
    }
}

/// `catalog` with the item-policy SFT run in `init` as its next-item belief
/// ([`blade_core::reward::ModelBelief`]: the model's softmax over the unseen items).
pub fn with_sft_belief(
    catalog: blade_core::reward::CatalogInfo,
    init: &Path,
    device: &Device,
) -> Result<blade_core::reward::CatalogInfo> {
    let (_, model) = load_item_lm(init, device)?;
    let name = format!("the next-item belief of {}", init.display());
    let belief = blade_core::reward::ModelBelief::new(model, name);
    Ok(catalog.with_belief(std::sync::Arc::new(belief)))
}

/// Whether a reward spec needs a next-item belief (`endcg@K`).
pub fn uses_belief(spec: &str) -> bool {
    spec.contains("endcg")
}

/// Which model of an alignment run to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Checkpoint {
    /// The best checkpoint on validation (`best/`) when the run has one, else the run itself.
    #[default]
    Best,
    /// The model at the last step.
    Last,
}

/// The folder whose model is used: an alignment run's `best/` unless `Last` (or absent).
pub fn model_dir(run: &Path, which: Checkpoint) -> PathBuf {
    let best = run.join(BEST_DIR);
    if which == Checkpoint::Best && best.is_dir() {
        best
    } else {
        run.to_path_buf()
    }
}

/// A trained run, opened: its manifest and its policy behind one interface, under a name.
pub struct OpenedRun {
    /// The run's manifest.
    pub manifest: RunManifest,
    /// The name shown in tables.
    pub name: String,
    /// The policy.
    pub policy: Box<dyn Policy>,
}

/// Opens the run folder `run` on `device`, whatever policy kind its manifest names. Item runs
/// are named by their method; LLM runs by `llm:<folder>` (a zero-shot and a trained SFT run
/// are both `sft`).
pub fn open_run(run: &Path, which: Checkpoint, device: &Device) -> Result<OpenedRun> {
    open_run_with(run, which, device, false)
}

/// [`open_run`] for one-off inference (`blade recommend`): an LLM run's base weights stay in
/// their GGUF blocks (`blade_llm::run::load_llm_run_for_inference`). Measured on SmolLM2-135M
/// Q4_1 with a LoRA run (docs/results/speed-llm.md): one user's list at a third of the memory
/// and faster, since nothing is dequantised at load; bulk evaluation stays on [`open_run`],
/// whose f32 base scores many lists faster. Item runs load as in [`open_run`].
pub fn open_run_lean(run: &Path, which: Checkpoint, device: &Device) -> Result<OpenedRun> {
    open_run_with(run, which, device, true)
}

fn open_run_with(run: &Path, which: Checkpoint, device: &Device, lean: bool) -> Result<OpenedRun> {
    let manifest = RunManifest::load(run)?;
    let dir = model_dir(run, which);
    let (name, policy): (String, Box<dyn Policy>) = match manifest.kind {
        RunKind::Item => (
            manifest.method.clone(),
            Box::new(load_item_lm(&dir, device)?.1),
        ),
        RunKind::Llm => {
            let folder = run.file_name().map_or_else(
                || manifest.method.clone(),
                |f| f.to_string_lossy().into_owned(),
            );
            (
                format!("llm:{folder}"),
                if lean {
                    Box::new(blade_llm::run::load_llm_run_for_inference(&dir, device)?.1)
                } else {
                    Box::new(blade_llm::run::load_llm_run(&dir, device)?.1)
                },
            )
        }
    };
    Ok(OpenedRun {
        manifest,
        name,
        policy,
    })
}

impl OpenedRun {
    /// The same run under another name.
    pub fn named(self, name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..self
        }
    }
}

impl Recommender for OpenedRun {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn num_items(&self) -> usize {
        self.policy.num_items()
    }
    fn score_all(&self, p: &PromptBatch) -> Result<Vec<Vec<f32>>> {
        self.policy.score_all(p)
    }
    fn decode(&self, p: &PromptBatch, k: usize, s: DecodeStrategy) -> Result<Vec<Vec<ItemId>>> {
        self.policy.decode(p, k, s)
    }
}

impl Policy for OpenedRun {
    fn sample(&self, p: &PromptBatch, spec: &SampleSpec, rng: &mut StdRng) -> Result<Rollouts> {
        self.policy.sample(p, spec, rng)
    }
    fn log_prob(&self, p: &PromptBatch, lists: &[Vec<ItemId>]) -> Result<Tensor<1>> {
        self.policy.log_prob(p, lists)
    }
    fn token_log_probs(&self, p: &PromptBatch, lists: &[Vec<ItemId>]) -> Result<TokenLogProbs> {
        self.policy.token_log_probs(p, lists)
    }
    fn token_log_probs_at(
        &self,
        p: &PromptBatch,
        lists: &[Vec<ItemId>],
        temperature: f32,
    ) -> Result<TokenLogProbs> {
        self.policy.token_log_probs_at(p, lists, temperature)
    }
    fn scores_at_any_temperature(&self) -> bool {
        self.policy.scores_at_any_temperature()
    }
    fn first_slot_log_probs(&self, p: &PromptBatch) -> Result<Tensor<2>> {
        self.policy.first_slot_log_probs(p)
    }
    fn has_first_slot(&self) -> bool {
        self.policy.has_first_slot()
    }
}

/// What an alignment run produced.
pub struct AlignedRun {
    /// Per-step curves.
    pub curves: Vec<StepRecord>,
    /// Where the last model was written.
    pub model_path: PathBuf,
    /// The summary (`summary.json`).
    pub summary: AlignSummary,
}

/// Aligns from the SFT run `inputs.init`, whatever its kind, into `out`: trains with
/// [`train_align`], then writes the manifest (the SFT run's kind and data, this method).
pub fn align_run(
    cfg: &AlignConfig,
    inputs: &AlignInputs,
    out: &Path,
    dashboard: Dashboard,
    resume: bool,
) -> Result<AlignedRun> {
    let init = RunManifest::load_sft(inputs.init)?;
    let manifest = RunManifest {
        kind: init.kind,
        method: cfg.method.method().name().into(),
        data: init.data,
        catalog: init.catalog,
    };
    let run = match init.kind {
        RunKind::Item => {
            let o = train_align::<ItemLm>(cfg, inputs, out, dashboard, resume)?;
            AlignedRun {
                curves: o.curves,
                model_path: o.model_path,
                summary: o.summary,
            }
        }
        RunKind::Llm => {
            let o = train_align::<blade_llm::LlmPolicy>(cfg, inputs, out, dashboard, resume)?;
            AlignedRun {
                curves: o.curves,
                model_path: out.join(blade_llm::run::ADAPTER_FILE),
                summary: o.summary,
            }
        }
    };
    // written once the run succeeded: a refused or failed command leaves no manifest behind
    manifest.save(out)?;
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_round_trips_and_names_what_an_old_one_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let m = RunManifest {
            kind: RunKind::Llm,
            method: "sft".into(),
            data: DataSpec {
                max_items: Some(30),
                ..DataSpec::default()
            },
            catalog: Some(CatalogStamp {
                items: 30,
                hash: "0123456789abcdef".into(),
            }),
        };
        m.save(dir.path()).unwrap();
        assert_eq!(RunManifest::load(dir.path()).unwrap(), m);
        assert_eq!(
            RunManifest::load_sft(dir.path()).unwrap().kind,
            RunKind::Llm
        );
        let aligned = RunManifest {
            method: "blade".into(),
            ..m.clone()
        };
        aligned.save(dir.path()).unwrap();
        let e = RunManifest::load_sft(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("expected an SFT run, found a `blade` run"),
            "{e}"
        );

        // a manifest of an older blade: no kind; it is refused, not guessed
        let old = serde_json::json!({"method": "sft", "data": DataSpec::default()});
        std::fs::write(dir.path().join(MANIFEST_FILE), old.to_string()).unwrap();
        let e = RunManifest::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("run.json") && e.contains("\"kind\": \"item\""),
            "{e}"
        );
        std::fs::write(dir.path().join(MANIFEST_FILE), "{").unwrap();
        let e = RunManifest::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("malformed run manifest"), "{e}");
        let e = RunManifest::load(&dir.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a run folder"), "{e}");
    }

    #[test]
    fn the_best_checkpoint_is_used_unless_last_or_absent() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(model_dir(dir.path(), Checkpoint::Best), dir.path());
        std::fs::create_dir(dir.path().join(BEST_DIR)).unwrap();
        assert_eq!(
            model_dir(dir.path(), Checkpoint::Best),
            dir.path().join(BEST_DIR)
        );
        assert_eq!(model_dir(dir.path(), Checkpoint::Last), dir.path());
    }
}
