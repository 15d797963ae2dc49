//! The online alignment trainer (docs/METHOD.md section 4), shared by every method: sample G
//! lists per prompt from the policy, score them with a list reward, turn them into the method's
//! training signal, and take a few optimiser steps on the method's loss plus the shared KL and
//! entropy terms.
//!
//! Layout: [`config`] (the run's settings), [`rollout`] (prompt pool, `sample_and_score`),
//! [`methods`] (one file per method, the [`Objective`] trait), [`loss`] (pieces the methods
//! share), [`reference`] (the reference cache and the static ceilings), [`record`] (curves,
//! summary), [`trainer`] (the loop) and [`policy`] (what a policy must offer).
//!
//! The trainer is generic over [`AlignPolicy`]: the item-level [`ItemLm`](crate::ItemLm) and any
//! other policy that can load and save itself in a run folder go through the same code path.
//!
//! A run folder holds `align.json` (the config), the aligned policy as written by
//! [`AlignPolicy::save_run`] (for `ItemLm`: `config.json` + `model.bpk`, loadable like an SFT
//! run), `best/` (the policy at the best validation metric, the same layout), `checkpoint/`
//! (the newest checkpoint `step-N/` with the policy, `optim.bpk`, `target.json` (the per-prompt
//! posterior), the method's state (BOND: `anchor.bpk`) and `state.json` (progress), published as
//! one folder, and the best policy so far `best-N/`; see [`crate::checkpoint`]), `curves.csv`
//! (one row per step) and, written last, `summary.json`: a run without it is not finished. The M
//! reference lists per prompt are sampled once from the SFT model and cached beside it, in
//! `<sft run>/reference/<settings hash>.json`, shared by every method and seed.

pub mod config;
pub mod loss;
pub mod methods;
pub mod policy;
pub mod record;
pub mod reference;
pub mod rollout;
mod shard;
pub mod trainer;

use std::path::Path;

use blade_data::Split;
use burn::prelude::*;

pub use config::{
    AdvantageScaling, AlignConfig, DynamicSampling, KlEstimator, LossAggregation, LrSchedule,
    OptimConfig, PromptPool, RatioLevel, SelectCorrection,
};
pub use methods::{Method, MethodConfig, Objective, Signal};
pub use policy::AlignPolicy;
pub use record::{paired_gain_p, read_curves, write_curves, AlignSummary, StepRecord};
pub use reference::{ceilings, expected_best_of_n, Ceilings, ReferenceCache};
pub use rollout::{prompt_pool, sample_and_score, PoolPrompt, ScoredGroups};
pub use trainer::{resumable, same_results, train_align, AlignOutcome, BEST_DIR};

use crate::error::CoreError;
use crate::reward::{CatalogInfo, ListReward};

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

/// Reads a tensor back to the host (row-major).
pub(crate) fn host<const D: usize>(t: Tensor<D>) -> crate::Result<Vec<f32>> {
    t.into_data()
        .try_to_vec::<f32>()
        .map_err(|e| CoreError::Tensor(format!("{e:?}")))
}
