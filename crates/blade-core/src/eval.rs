//! The evaluator: the same protocol for every recommender (METHOD.md sections 5 and 6).
//!
//! For each evaluation case the recommender (a) generates a list of `max(ks)` items with the
//! chosen decoding strategy ("generation"), and (b) scores the whole catalogue, from which the
//! top `max(ks)` items are taken with ties broken by (score desc, item id asc)
//! ("full ranking"). Both lists are scored with every metric of `blade-metrics` at each `k`.

use std::time::Instant;

use blade_data::{Dataset, EvalCase, ItemId, Split};
use blade_metrics::{EvalInput, MetricTable};
use serde::{Deserialize, Serialize};

use crate::batch::PromptBatch;
use crate::error::{CoreError, Result};
use crate::policy::{DecodeStrategy, Recommender};

/// Settings of an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    /// Cut-offs to report (default 5 and 10).
    pub ks: Vec<usize>,
    /// Exclude every item seen before the target from lists and rankings.
    pub mask_history: bool,
    /// Prompts per forward pass.
    pub batch_size: usize,
    /// How generated lists are decoded.
    pub strategy: DecodeStrategy,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            ks: vec![5, 10],
            mask_history: true,
            batch_size: 256,
            strategy: DecodeStrategy::Greedy,
        }
    }
}

/// The result of evaluating one recommender on one set of cases.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    /// Name of the recommender.
    pub method: String,
    /// Metrics of the generated lists.
    pub generation: MetricTable,
    /// Metrics of the top of the full-catalogue ranking.
    pub full_ranking: MetricTable,
    /// Number of users evaluated.
    pub users: usize,
    /// Whether history items were masked.
    pub mask_history: bool,
    /// The cut-offs reported.
    pub ks: Vec<usize>,
    /// Wall time of the evaluation in seconds.
    pub seconds: f64,
}

/// Generated and full-ranking lists of one evaluation, per case.
#[derive(Debug, Clone, Default)]
pub struct EvalLists {
    /// Generated lists.
    pub generated: Vec<Vec<ItemId>>,
    /// Top of the full ranking.
    pub ranked: Vec<Vec<ItemId>>,
}

/// Scores recommenders on evaluation cases against one catalogue.
pub struct Evaluator {
    item_genres: Vec<Vec<u16>>,
    n_genres: usize,
    popularity: Vec<u32>,
    config: EvalConfig,
}

impl Evaluator {
    /// An evaluator for `dataset`'s catalogue, with popularity from `split`'s training part.
    pub fn new(dataset: &Dataset, split: &Split, config: EvalConfig) -> Result<Self> {
        if config.ks.is_empty() || config.ks.contains(&0) {
            return Err(CoreError::Config(
                "cut-offs must be a non-empty list of positive k".into(),
            ));
        }
        Ok(Self {
            item_genres: dataset
                .catalog
                .items
                .iter()
                .map(|i| i.genres.clone())
                .collect(),
            n_genres: dataset.catalog.genre_names.len(),
            popularity: split.item_popularity.clone(),
            config,
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &EvalConfig {
        &self.config
    }

    /// Evaluates `rec` on `cases`; `progress(done, total)` is called after every batch.
    pub fn evaluate(
        &self,
        rec: &dyn Recommender,
        cases: &[EvalCase],
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(EvalReport, EvalLists)> {
        let start = Instant::now();
        let k = self.config.ks.iter().copied().max().unwrap_or(10);
        let prompts = PromptBatch::from_cases(cases, self.config.mask_history);
        let mut lists = EvalLists::default();
        let bs = self.config.batch_size.max(1);
        let mut done = 0;
        while done < prompts.len() {
            let end = (done + bs).min(prompts.len());
            let batch = prompts.slice(done..end);
            lists
                .generated
                .extend(rec.decode(&batch, k, self.config.strategy)?);
            for (scores, ex) in rec.score_all(&batch)?.iter().zip(&batch.exclude) {
                lists
                    .ranked
                    .push(blade_metrics::top_k_by_scores(scores, k, ex));
            }
            done = end;
            progress(done, prompts.len());
        }
        let report = EvalReport {
            method: rec.name(),
            generation: self.table(&lists.generated, cases),
            full_ranking: self.table(&lists.ranked, cases),
            users: cases.len(),
            mask_history: self.config.mask_history,
            ks: self.config.ks.clone(),
            seconds: start.elapsed().as_secs_f64(),
        };
        Ok((report, lists))
    }

    /// Every metric of `lists` against the cases' targets and histories.
    pub fn table(&self, lists: &[Vec<ItemId>], cases: &[EvalCase]) -> MetricTable {
        let targets: Vec<Vec<ItemId>> = cases.iter().map(|c| vec![c.target]).collect();
        let histories: Vec<Vec<ItemId>> = cases.iter().map(|c| c.seen.clone()).collect();
        let input = EvalInput {
            lists,
            targets: &targets,
            histories: &histories,
            item_genres: &self.item_genres,
            n_genres: self.n_genres,
            popularity: &self.popularity,
            embeddings: None,
        };
        blade_metrics::evaluate(&input, &self.config.ks)
    }
}
