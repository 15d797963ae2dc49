//! [`DataSpec`]: which dataset a run uses and how it is prepared, recorded in every run's
//! manifest so that later commands rebuild exactly the same data and split.

use std::path::{Path, PathBuf};

use blade_core::reward::CatalogInfo;
use blade_core::{CoreError, Result};
use blade_data::synthetic::{generate, generate_with_tastes, SyntheticConfig};
use blade_data::{Dataset, PreprocessConfig, Split};
use serde::{Deserialize, Serialize};

/// Default cache of downloaded datasets (ignored by git).
pub const DEFAULT_CACHE: &str = "data-cache";

fn config(msg: String) -> CoreError {
    CoreError::Config(msg)
}

/// Where the data comes from and how it is prepared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct DataSpec {
    /// `synthetic` (built in, offline), `ml-100k` (after `blade data fetch ml-100k`), or a
    /// dataset JSON written by `blade data import`.
    #[cfg_attr(feature = "clap", arg(long, default_value = "synthetic"))]
    pub data: String,
    /// Cache folder of fetched datasets.
    #[cfg_attr(feature = "clap", arg(long, default_value = DEFAULT_CACHE))]
    pub cache: PathBuf,
    /// Prompt length L: the number of most recent items a prompt holds.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 10))]
    pub history_len: usize,
    /// k-core filter applied to built-in and fetched datasets.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 5))]
    pub k_core: usize,
    /// Keep only interactions rated at least this (built-in and fetched datasets).
    #[cfg_attr(feature = "clap", arg(long))]
    pub min_rating: Option<f32>,
    /// Seed of the synthetic dataset.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 7))]
    pub data_seed: u64,
    /// Keep only the N most frequent items (before k-core): a slice for quick runs, e.g. with
    /// an LLM policy on a CPU.
    #[cfg_attr(feature = "clap", arg(long))]
    #[serde(default)]
    pub max_items: Option<usize>,
    /// Keep only the first N users (file order) after `--max-items` (before k-core).
    #[cfg_attr(feature = "clap", arg(long))]
    #[serde(default)]
    pub max_users: Option<usize>,
}

impl Default for DataSpec {
    /// The built-in synthetic data with the command line's defaults.
    fn default() -> Self {
        Self {
            data: "synthetic".into(),
            cache: PathBuf::from(DEFAULT_CACHE),
            history_len: 10,
            k_core: 5,
            min_rating: None,
            data_seed: 7,
            max_items: None,
            max_users: None,
        }
    }
}

impl DataSpec {
    /// Loads and preprocesses the dataset named by `data`.
    pub fn load(&self) -> Result<Dataset> {
        let prep = PreprocessConfig {
            min_rating: self.min_rating,
            k_core: self.k_core,
        };
        match self.data.as_str() {
            "synthetic" => {
                let raw = generate(&self.synthetic_config());
                Ok(Dataset::from_raw(
                    &raw.slice(self.max_items, self.max_users),
                    &prep,
                )?)
            }
            "ml-100k" => {
                let dir = self.cache.join("ml-100k");
                if !dir.join("ml-100k.inter").exists() {
                    return Err(config(format!(
                        "--data ml-100k: {} has no ml-100k.inter; run `blade data fetch ml-100k --cache {}` first",
                        dir.display(),
                        self.cache.display()
                    )));
                }
                let raw = blade_data::importers::read_recbole_dir(
                    &dir,
                    "ml-100k",
                    &Default::default(),
                )?;
                Ok(Dataset::from_raw(
                    &raw.slice(self.max_items, self.max_users),
                    &prep,
                )?)
            }
            path if path.ends_with(".json") => {
                if self.max_items.is_some() || self.max_users.is_some() {
                    return Err(config(
                        "--max-items / --max-users apply to `synthetic` and `ml-100k`; slice an imported dataset when importing it".into(),
                    ));
                }
                Dataset::load(Path::new(path)).map_err(|e| {
                    CoreError::file(path, format!("could not load the dataset: {e}"))
                })
            }
            other => Err(config(format!(
                "--data {other}: expected `synthetic`, `ml-100k` or a dataset .json from `blade data import`"
            ))),
        }
    }

    /// The generator settings of `--data synthetic`.
    fn synthetic_config(&self) -> SyntheticConfig {
        SyntheticConfig {
            seed: self.data_seed,
            ..SyntheticConfig::default()
        }
    }

    /// The catalogue facts rewards see ([`CatalogInfo::from_dataset`]); on the built-in
    /// synthetic data also the generator's own user tastes, which `taste@K` scores against.
    pub fn catalog_info(&self, ds: &Dataset, split: &Split) -> Result<CatalogInfo> {
        let catalog = CatalogInfo::from_dataset(ds, split);
        if self.data != "synthetic" {
            return Ok(catalog);
        }
        let (_, tastes) = generate_with_tastes(&self.synthetic_config());
        Ok(catalog.with_user_tastes(tastes.for_dataset(ds)?))
    }

    /// Loads the dataset and its leave-one-out split (prompts of `history_len` items).
    pub fn dataset_and_split(&self) -> Result<(Dataset, Split)> {
        if self.history_len == 0 || self.history_len > 10_000 {
            return Err(config(format!(
                "--history-len {}: expected 1..=10000",
                self.history_len
            )));
        }
        let ds = self.load()?;
        let split = ds.leave_one_out(self.history_len);
        if split.test.is_empty() {
            return Err(config(format!(
                "--data {}: no user has the 3 interactions the leave-one-out split needs",
                self.data
            )));
        }
        Ok((ds, split))
    }
}
