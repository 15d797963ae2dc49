//! Data for blade: the item catalogue, interaction logs, importers for public recommendation
//! datasets, preprocessing (rating threshold, k-core, time order), the leave-one-out split,
//! sliding-window training prompts, a seeded synthetic dataset and dataset statistics.
//!
//! Everything here is plain Rust; the conversion of prompts to burn tensors lives in
//! `blade-core`, at the edge where the model needs it.

pub mod error;
pub mod raw;

pub use error::{DataError, Result};
pub use raw::{RawDataset, RawInteraction, RawItem};

/// Dense item index used everywhere after preprocessing (`0..catalog.len()`).
pub type ItemId = u32;
/// Dense user index used everywhere after preprocessing.
pub type UserId = u32;
pub mod dataset;
pub use dataset::{
    write_atomic, write_atomic_with, Catalog, Dataset, EvalCase, Item, PreprocessConfig, Split,
    TrainPrompt,
};
pub mod fetch;
pub mod importers;
pub mod stats;
pub mod synthetic;
