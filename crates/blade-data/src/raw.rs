//! The format-independent result of every importer: interactions and item metadata keyed by the
//! dataset's original (string) ids, before any filtering or re-indexing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One user-item interaction as found in the source file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawInteraction {
    /// The dataset's own user id.
    pub user: String,
    /// The dataset's own item id.
    pub item: String,
    /// Seconds since the Unix epoch (or any monotone clock the source provides).
    pub timestamp: i64,
    /// Explicit rating, where the source has one.
    pub rating: Option<f32>,
}

/// Item metadata as found in the source file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RawItem {
    /// Human-readable title (may be empty when the source has none).
    pub title: String,
    /// Genres or categories, in the source's wording.
    pub genres: Vec<String>,
}

/// What an importer returns: the interaction log and whatever item metadata the source has.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RawDataset {
    /// Short name of the dataset (`ml-100k`, `amazon-cds`, ...).
    pub name: String,
    /// All interactions, in file order.
    pub interactions: Vec<RawInteraction>,
    /// Item metadata keyed by the original item id. Items without metadata may be absent.
    pub items: BTreeMap<String, RawItem>,
    /// Number of malformed rows skipped (only non-zero with `skip_bad_rows`).
    pub skipped_rows: usize,
}
