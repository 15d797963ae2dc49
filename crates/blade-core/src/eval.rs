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
        let n = dataset.catalog.items.len();
        if config.ks.is_empty() || config.ks.iter().any(|&k| k == 0 || k > n) {
            return Err(CoreError::Config(format!(
                "--ks {}: expected cut-offs in 1..={n} (the catalogue's size)",
                config
                    .ks
                    .iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            )));
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use blade_data::synthetic::{generate, SyntheticConfig};
    use blade_data::PreprocessConfig;

    /// Ranks each case's target first: a perfect recommender, keyed by the prompt's history.
    struct Oracle {
        n: usize,
        targets: HashMap<Vec<ItemId>, ItemId>,
    }

    impl Recommender for Oracle {
        fn name(&self) -> String {
            "oracle".into()
        }
        fn num_items(&self) -> usize {
            self.n
        }
        fn score_all(&self, p: &PromptBatch) -> Result<Vec<Vec<f32>>> {
            Ok(p.histories
                .iter()
                .map(|h| {
                    let t = self.targets.get(h).copied();
                    (0..self.n)
                        .map(|i| if Some(i as ItemId) == t { 1.0 } else { 0.0 })
                        .collect()
                })
                .collect())
        }
        fn decode(&self, p: &PromptBatch, k: usize, _: DecodeStrategy) -> Result<Vec<Vec<ItemId>>> {
            Ok(self
                .score_all(p)?
                .iter()
                .zip(&p.exclude)
                .map(|(s, e)| blade_metrics::top_k_by_scores(s, k, e))
                .collect())
        }
    }

    #[test]
    fn a_perfect_recommender_scores_one_and_masks_history() {
        let raw = generate(&SyntheticConfig::tiny());
        let ds = Dataset::from_raw(&raw, &PreprocessConfig::default()).unwrap();
        let split = ds.leave_one_out(5);
        let mut targets = HashMap::new();
        let cases: Vec<EvalCase> = split
            .test
            .iter()
            .filter(|c| match targets.entry(c.history.clone()) {
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(c.target);
                    true
                }
                std::collections::hash_map::Entry::Occupied(_) => false,
            })
            .cloned()
            .collect();
        assert!(cases.len() > 50);
        let oracle = Oracle {
            n: ds.num_items(),
            targets,
        };
        let ev = Evaluator::new(&ds, &split, EvalConfig::default()).unwrap();
        let (r, lists) = ev.evaluate(&oracle, &cases, &mut |_, _| {}).unwrap();
        assert_eq!(r.generation.get("ndcg@10"), Some(1.0));
        assert_eq!(r.full_ranking.get("recall@5"), Some(1.0));
        assert_eq!(r.full_ranking.get("mrr@10"), Some(1.0));
        for (l, c) in lists.ranked.iter().zip(&cases) {
            assert_eq!(l.len(), 10);
            assert!(l.iter().all(|i| !c.seen.contains(i)));
        }
        let bad = EvalConfig {
            ks: vec![0],
            ..EvalConfig::default()
        };
        assert!(Evaluator::new(&ds, &split, bad).is_err());
    }
}
