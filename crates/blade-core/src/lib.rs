//! The core of blade: the [`Policy`] and [`Recommender`] traits, the item-level transformer
//! policy [`ItemLm`], the `random` and `pop` baselines, supervised fine-tuning (SFT) with
//! crash-consistent checkpoints, and the evaluator that scores generated lists and full rankings.
//!
//! Everything takes a burn [`Device`](burn::tensor::Device): the same code path runs on the
//! CPU (`flex`, `ndarray`), on GPUs through `wgpu` or on `cuda`, whichever features are built.

pub mod align;
pub mod batch;
pub mod checkpoint;
pub mod dashboard;
pub mod device;
pub mod error;
pub mod eval;
pub mod kernels;
pub mod parallel;
pub mod policy;
pub mod reward;
pub mod sft;
pub mod target;

pub use batch::PromptBatch;
pub use device::BackendSpec;
pub use error::{CoreError, Result};
pub use eval::{EvalConfig, EvalLists, EvalReport, Evaluator};
pub use policy::baselines::{PopRecommender, RandomRecommender};
pub use policy::item_lm::{ItemLm, ItemLmConfig};
pub use policy::{DecodeStrategy, Policy, Recommender, Rollouts, SampleSpec, TokenLogProbs};
pub use sft::{load_item_lm, train_sft, Dashboard, SftConfig, SftObjective, SftOutcome};
