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

impl RawDataset {
    /// A smaller copy for quick experiments (e.g. with an LLM policy on a CPU): keeps the
    /// `max_items` most frequent items (ties by id), then the interactions of the first
    /// `max_users` users in file order that still have any. `None` keeps everything. Item
    /// metadata of dropped items is dropped too. Run the usual preprocessing (k-core, ...) after.
    pub fn slice(&self, max_items: Option<usize>, max_users: Option<usize>) -> RawDataset {
        use std::collections::{HashMap, HashSet};
        let mut inter: Vec<&RawInteraction> = self.interactions.iter().collect();
        if let Some(m) = max_items {
            let mut count: HashMap<&str, usize> = HashMap::new();
            for i in &inter {
                *count.entry(i.item.as_str()).or_default() += 1;
            }
            let mut items: Vec<(&str, usize)> = count.into_iter().collect();
            items.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let keep: HashSet<&str> = items.into_iter().take(m).map(|(i, _)| i).collect();
            inter.retain(|i| keep.contains(i.item.as_str()));
        }
        if let Some(m) = max_users {
            let mut keep = HashSet::new();
            for i in &inter {
                if keep.len() == m {
                    break;
                }
                keep.insert(i.user.as_str());
            }
            inter.retain(|i| keep.contains(i.user.as_str()));
        }
        let items_left: HashSet<&str> = inter.iter().map(|i| i.item.as_str()).collect();
        RawDataset {
            name: self.name.clone(),
            interactions: inter.into_iter().cloned().collect(),
            items: self
                .items
                .iter()
                .filter(|(k, _)| items_left.contains(k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            skipped_rows: self.skipped_rows,
        }
    }
}

#[cfg(test)]
mod slice_tests {
    use super::*;

    fn inter(user: &str, item: &str, t: i64) -> RawInteraction {
        RawInteraction {
            user: user.into(),
            item: item.into(),
            timestamp: t,
            rating: None,
        }
    }

    #[test]
    fn slice_keeps_popular_items_and_first_users() {
        let raw = RawDataset {
            name: "t".into(),
            interactions: vec![
                inter("u2", "a", 1),
                inter("u1", "a", 2),
                inter("u1", "b", 3),
                inter("u3", "c", 4),
                inter("u3", "b", 5),
                inter("u1", "d", 6),
                inter("u4", "a", 7),
            ],
            items: BTreeMap::new(),
            skipped_rows: 0,
        };
        let s = raw.slice(Some(2), Some(2));
        // items a (3) and b (2) survive; users u2 and u1 come first in file order
        let got: Vec<(&str, &str)> = s
            .interactions
            .iter()
            .map(|i| (i.user.as_str(), i.item.as_str()))
            .collect();
        assert_eq!(got, [("u2", "a"), ("u1", "a"), ("u1", "b")]);
        assert_eq!(raw.slice(None, None).interactions.len(), 7);
        assert_eq!(raw.slice(Some(1), None).interactions.len(), 3);
    }
}
