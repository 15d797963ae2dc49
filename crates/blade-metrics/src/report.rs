//! One-call evaluation of a method's recommendation lists into a [`MetricTable`], and a
//! Markdown renderer comparing several methods.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::corpus::{coverage, div_ratio, or_ratio, tail_share};
use crate::diversity::{ild_cosine, ild_jaccard};
use crate::fairness::{dgu, genre_shares, mgu};
use crate::ranking::{hit_at_k, mrr_at_k, ndcg_at_k, precision_at_k, recall_at_k};

/// Metric names produced by [`evaluate`], in the column order used by [`to_markdown`]; each is
/// suffixed with `@k` in a [`MetricTable`].
pub const METRIC_NAMES: &[&str] = &[
    "recall",
    "hit",
    "precision",
    "ndcg",
    "mrr",
    "mgu",
    "dgu",
    "ild",
    "ild_cos",
    "div_ratio",
    "or_ratio",
    "coverage",
    "tail_share",
];

/// Everything [`evaluate`] needs about one method's output on one test set.
///
/// `lists[u]`, `targets[u]` and `histories[u]` belong to the same user `u`; a user missing from
/// `targets` has no targets. `item_genres[i]` and `popularity[i]` describe item `i`;
/// `embeddings`, when given, enables the `ild_cos@k` metric.
#[derive(Debug, Clone, Copy)]
pub struct EvalInput<'a> {
    /// Recommended item ids per user, best first (at least `max(ks)` long to be fair).
    pub lists: &'a [Vec<u32>],
    /// Held-out item ids per user.
    pub targets: &'a [Vec<u32>],
    /// Training-history item ids per user (the GH side of MGU/DGU).
    pub histories: &'a [Vec<u32>],
    /// Genre ids of each item, indices into `0..n_genres`.
    pub item_genres: &'a [Vec<u16>],
    /// Number of genres.
    pub n_genres: usize,
    /// Interaction count of each item in the training data (defines the popular head).
    pub popularity: &'a [u32],
    /// Optional item embeddings for cosine ILD.
    pub embeddings: Option<&'a [Vec<f32>]>,
}

impl EvalInput<'_> {
    /// Catalogue size used by coverage: `max(item_genres.len(), popularity.len())`.
    pub fn n_items(&self) -> usize {
        self.item_genres.len().max(self.popularity.len())
    }
}

/// Metric values of one method, keyed `"name@k"` (e.g. `"ndcg@10"`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricTable {
    /// Metric values by key.
    pub values: BTreeMap<String, f64>,
    /// Number of evaluated users (`lists.len()`).
    pub users: usize,
}

impl MetricTable {
    /// The value stored under `name` (e.g. `"recall@5"`), if any.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }
}

/// Ranking metrics of one user's list at one cut-off (see [`crate::ranking`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct UserMetrics {
    /// Recall@k.
    pub recall: f64,
    /// Hit@k.
    pub hit: f64,
    /// Precision@k.
    pub precision: f64,
    /// NDCG@k.
    pub ndcg: f64,
    /// MRR@k.
    pub mrr: f64,
}

impl UserMetrics {
    /// Computes all ranking metrics of `list` against `targets` at cut-off `k`.
    pub fn new(list: &[u32], targets: &[u32], k: usize) -> Self {
        Self {
            recall: recall_at_k(list, targets, k),
            hit: hit_at_k(list, targets, k),
            precision: precision_at_k(list, targets, k),
            ndcg: ndcg_at_k(list, targets, k),
            mrr: mrr_at_k(list, targets, k),
        }
    }
}

/// Mean of `values`; 0.0 when empty.
fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// Evaluates every metric of [`METRIC_NAMES`] at each cut-off in `ks`.
///
/// - `recall`, `hit`, `precision`, `ndcg`, `mrr`: mean over all users of the per-list values
///   (a user without targets scores 0, so drop such users beforehand).
/// - `mgu`, `dgu`: corpus level, GP from all lists truncated at k, GH from all histories.
/// - `ild` (Jaccard of genre sets) and `ild_cos` (only with embeddings): mean over users of the
///   per-list ILD of the top k.
/// - `div_ratio`, `or_ratio` (top 3 items), `coverage` (over [`EvalInput::n_items`]),
///   `tail_share`: over all lists truncated at k.
///
/// With no users every value is 0.0.
pub fn evaluate(input: &EvalInput, ks: &[usize]) -> MetricTable {
    let users = input.lists.len();
    let gh = genre_shares(input.histories, input.item_genres, input.n_genres);
    let mut values = BTreeMap::new();
    for &k in ks {
        let top: Vec<&[u32]> = input.lists.iter().map(|l| &l[..k.min(l.len())]).collect();
        let per_user: Vec<UserMetrics> = top
            .iter()
            .enumerate()
            .map(|(u, list)| {
                let targets = input.targets.get(u).map_or(&[][..], Vec::as_slice);
                UserMetrics::new(list, targets, k)
            })
            .collect();
        let gp = genre_shares(&top, input.item_genres, input.n_genres);
        let mut put = |name: &str, v: f64| {
            values.insert(format!("{name}@{k}"), v);
        };
        put("recall", mean(per_user.iter().map(|m| m.recall)));
        put("hit", mean(per_user.iter().map(|m| m.hit)));
        put("precision", mean(per_user.iter().map(|m| m.precision)));
        put("ndcg", mean(per_user.iter().map(|m| m.ndcg)));
        put("mrr", mean(per_user.iter().map(|m| m.mrr)));
        put("mgu", mgu(&gp, &gh));
        put("dgu", dgu(&gp, &gh));
        put(
            "ild",
            mean(top.iter().map(|l| ild_jaccard(l, input.item_genres))),
        );
        if let Some(emb) = input.embeddings {
            put("ild_cos", mean(top.iter().map(|l| ild_cosine(l, emb))));
        }
        put("div_ratio", div_ratio(&top, k));
        put("or_ratio", or_ratio(&top, 3));
        put("coverage", coverage(&top, input.n_items()));
        put("tail_share", tail_share(&top, input.popularity));
    }
    MetricTable { values, users }
}

/// Renders a Markdown table with one row per `(method name, table)` and one column per metric.
///
/// Columns are the [`METRIC_NAMES`] × `ks` keys present in at least one table (metric-major),
/// followed by any other keys ending in `@k` for a `k` in `ks`, in key order. Values have 4
/// decimals; a value missing from a table is shown as `-`.
pub fn to_markdown(tables: &[(String, &MetricTable)], ks: &[usize]) -> String {
    let present = |key: &str| tables.iter().any(|(_, t)| t.values.contains_key(key));
    let mut columns: Vec<String> = METRIC_NAMES
        .iter()
        .flat_map(|name| ks.iter().map(move |k| format!("{name}@{k}")))
        .filter(|key| present(key))
        .collect();
    let suffixes: Vec<String> = ks.iter().map(|k| format!("@{k}")).collect();
    let mut extra: Vec<String> = tables
        .iter()
        .flat_map(|(_, t)| t.values.keys())
        .filter(|key| suffixes.iter().any(|s| key.ends_with(s.as_str())))
        .filter(|key| !columns.contains(key))
        .cloned()
        .collect();
    extra.sort();
    extra.dedup();
    columns.extend(extra);

    let mut out = String::from("| method |");
    for c in &columns {
        let _ = write!(out, " {c} |");
    }
    out.push_str("\n|---|");
    for _ in &columns {
        out.push_str("---:|");
    }
    out.push('\n');
    for (name, table) in tables {
        let _ = write!(out, "| {} |", name.replace('|', "\\|"));
        for c in &columns {
            match table.get(c) {
                Some(v) => {
                    let _ = write!(out, " {v:.4} |");
                }
                None => out.push_str(" - |"),
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_metrics_match_functions() {
        let m = UserMetrics::new(&[4, 5, 6], &[6], 3);
        assert_eq!(m.hit, 1.0);
        assert_eq!(m.recall, 1.0);
        assert_eq!(m.ndcg, 0.5);
        assert!((m.mrr - 1.0 / 3.0).abs() < 1e-12);
        assert!((m.precision - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn no_users_gives_zeros() {
        let input = EvalInput {
            lists: &[],
            targets: &[],
            histories: &[],
            item_genres: &[],
            n_genres: 0,
            popularity: &[],
            embeddings: None,
        };
        let t = evaluate(&input, &[5]);
        assert_eq!(t.users, 0);
        assert_eq!(t.values.len(), 12);
        assert!(t.values.values().all(|&v| v == 0.0));
        assert_eq!(t.get("ild_cos@5"), None);
    }

    #[test]
    fn markdown_layout() {
        let mut a = MetricTable::default();
        a.values.insert("ndcg@10".into(), 0.5);
        a.values.insert("recall@10".into(), 1.0 / 3.0);
        a.values.insert("reward@10".into(), 2.0);
        a.values.insert("recall@5".into(), 0.25);
        let b = MetricTable::default();
        let md = to_markdown(&[("a|b".into(), &a), ("empty".into(), &b)], &[10]);
        let expected = "| method | recall@10 | ndcg@10 | reward@10 |\n\
                        |---|---:|---:|---:|\n\
                        | a\\|b | 0.3333 | 0.5000 | 2.0000 |\n\
                        | empty | - | - | - |\n";
        assert_eq!(md, expected);
    }
}
