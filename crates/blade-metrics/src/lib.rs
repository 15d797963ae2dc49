//! Ranking, fairness and diversity metrics on item-id lists (METHOD.md section 5).
//!
//! Pure Rust, no tensors: item ids are dense `u32` in `0..n_items`, genres of item `i` are
//! `item_genres[i]` (indices into `0..n_genres`). Lists are ordered best first. Every function
//! returns 0.0 on empty input instead of panicking.
//!
//! - [`ranking`]: recall, hit, precision, NDCG, MRR at k; top-k selection and ranks from scores.
//! - [`fairness`]: genre shares, MGU and DGU (lower is better).
//! - [`diversity`]: intra-list diversity by genre Jaccard or embedding cosine.
//! - [`corpus`]: DivRatio, ORRatio, coverage and tail share over all users.
//! - [`report`]: one-call evaluation into a [`MetricTable`] and a Markdown renderer.

pub mod corpus;
pub mod diversity;
pub mod fairness;
pub mod ranking;
pub mod report;

pub use corpus::{coverage, div_ratio, head_mask, or_ratio, tail_share};
pub use diversity::{ild_cosine, ild_jaccard};
pub use fairness::{dgu, genre_shares, list_dgu, list_mgu, mgu};
pub use ranking::{
    hit_at_k, mrr_at_k, ndcg_at_k, precision_at_k, rank_of, recall_at_k, top_k_by_scores,
};
pub use report::{evaluate, to_markdown, EvalInput, MetricTable, UserMetrics, METRIC_NAMES};
