//! Dataset statistics (`blade data stats`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Dataset;

/// Summary statistics of a preprocessed [`Dataset`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetStats {
    /// The dataset's short name.
    pub name: String,
    /// Number of users.
    pub users: usize,
    /// Number of catalogue items.
    pub items: usize,
    /// Number of interactions.
    pub interactions: usize,
    /// `interactions / (users * items)` (0 for an empty dataset).
    pub density: f64,
    /// Shortest user sequence (0 for an empty dataset).
    pub history_min: usize,
    /// Mean user sequence length.
    pub history_mean: f64,
    /// Median user sequence length (mean of the two middle values for an even user count).
    pub history_median: f64,
    /// Longest user sequence.
    pub history_max: usize,
    /// Per genre, in vocabulary order: its share of the interactions, where an interaction with
    /// an item of `m` distinct genres counts once for each of them, and shares are normalised to
    /// sum to 1 over genres (interactions with genre-less items count for none).
    pub genre_shares: Vec<(String, f64)>,
    /// Gini coefficient of the per-item interaction counts (0: all items equally popular).
    pub popularity_gini: f64,
}

impl DatasetStats {
    /// Computes the statistics of `dataset`. Item ids outside the catalogue are ignored.
    pub fn compute(dataset: &Dataset) -> Self {
        let users = dataset.num_users();
        let items = dataset.num_items();
        let interactions = dataset.num_interactions();
        let density = if users == 0 || items == 0 {
            0.0
        } else {
            interactions as f64 / (users as f64 * items as f64)
        };

        let mut lengths: Vec<usize> = dataset.sequences.iter().map(Vec::len).collect();
        lengths.sort_unstable();
        let history_mean = if users == 0 {
            0.0
        } else {
            interactions as f64 / users as f64
        };
        let history_median = match lengths.len() {
            0 => 0.0,
            n if n % 2 == 1 => lengths[n / 2] as f64,
            n => (lengths[n / 2 - 1] + lengths[n / 2]) as f64 / 2.0,
        };

        let mut item_counts = vec![0u32; items];
        for &item in dataset.sequences.iter().flatten() {
            if let Some(c) = item_counts.get_mut(item as usize) {
                *c += 1;
            }
        }
        let genre_names = &dataset.catalog.genre_names;
        let mut genre_counts = vec![0u64; genre_names.len()];
        for (item, &count) in dataset.catalog.items.iter().zip(&item_counts) {
            for &g in &item.genres {
                if let Some(c) = genre_counts.get_mut(usize::from(g)) {
                    *c += u64::from(count);
                }
            }
        }
        let genre_total: u64 = genre_counts.iter().sum();
        let genre_shares = genre_names
            .iter()
            .zip(&genre_counts)
            .map(|(name, &c)| {
                let share = if genre_total == 0 {
                    0.0
                } else {
                    c as f64 / genre_total as f64
                };
                (name.clone(), share)
            })
            .collect();

        Self {
            name: dataset.name.clone(),
            users,
            items,
            interactions,
            density,
            history_min: lengths.first().copied().unwrap_or(0),
            history_mean,
            history_median,
            history_max: lengths.last().copied().unwrap_or(0),
            genre_shares,
            popularity_gini: gini(&item_counts),
        }
    }
}

/// Gini coefficient of non-negative counts: `sum_i (2i - n - 1) x_(i) / (n * sum x)` over the
/// counts sorted ascending (`i` 1-based). 0 when all counts are equal, approaching 1 when one
/// item takes everything; 0 for an empty slice or all-zero counts.
pub fn gini(counts: &[u32]) -> f64 {
    let n = counts.len();
    let total: f64 = counts.iter().map(|&c| f64::from(c)).sum();
    if n == 0 || total == 0.0 {
        return 0.0;
    }
    let mut sorted = counts.to_vec();
    sorted.sort_unstable();
    let weighted: f64 = sorted
        .iter()
        .enumerate()
        .map(|(i, &x)| (2.0 * (i as f64 + 1.0) - n as f64 - 1.0) * f64::from(x))
        .sum();
    weighted / (n as f64 * total)
}

impl fmt::Display for DatasetStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "dataset          {}", self.name)?;
        writeln!(f, "users            {}", self.users)?;
        writeln!(f, "items            {}", self.items)?;
        writeln!(f, "interactions     {}", self.interactions)?;
        writeln!(f, "density          {:.6}", self.density)?;
        writeln!(
            f,
            "history length   min {}  mean {:.2}  median {:.1}  max {}",
            self.history_min, self.history_mean, self.history_median, self.history_max
        )?;
        writeln!(f, "popularity Gini  {:.4}", self.popularity_gini)?;
        if self.genre_shares.is_empty() {
            return writeln!(f, "genres           (none)");
        }
        writeln!(f, "genres           {} (by share)", self.genre_shares.len())?;
        let width = self
            .genre_shares
            .iter()
            .map(|(name, _)| name.chars().count())
            .max()
            .unwrap_or(0)
            .max(5);
        let mut by_share: Vec<&(String, f64)> = self.genre_shares.iter().collect();
        by_share.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (name, share) in by_share {
            writeln!(f, "  {name:<width$}  {:6.2}%", share * 100.0)?;
        }
        Ok(())
    }
}
