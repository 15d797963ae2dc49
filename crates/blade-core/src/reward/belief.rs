//! Next-item beliefs: a distribution over the catalogue for one prompt, which `endcg@K` takes
//! its expectation under (METHOD.md section 8).
//!
//! The one implementation, [`ModelBelief`], is a recommender's full-catalogue scores turned
//! into probabilities: the softmax of [`Recommender::score_all`] over the items the prompt has
//! not seen. With the SFT run an alignment starts from, that is the reference's own estimate of
//! which item comes next.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use blade_data::ItemId;

use crate::batch::PromptBatch;
use crate::policy::Recommender;

/// A next-item distribution per prompt.
pub trait NextItemBelief: Send + Sync {
    /// Where the belief comes from, for logs and errors.
    fn name(&self) -> String;

    /// `P(next = i | prompt)` for every catalogue item `i` (indexed by item id, summing to 1
    /// over the unseen items), for the prompt whose model input is `window` (oldest first) and
    /// whose seen items are `seen` (sorted; they get probability 0). `None` when it cannot be
    /// computed; the reward then scores NaN, which the trainers report as an error.
    fn probs(&self, window: &[ItemId], seen: &[ItemId]) -> Option<Arc<[f32]>>;
}

/// A shared [`NextItemBelief`] as [`super::CatalogInfo`] holds it: cloned by reference, equal
/// when it is the same object.
#[derive(Clone)]
pub struct Belief(pub Arc<dyn NextItemBelief>);

impl fmt::Debug for Belief {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Belief({})", self.0.name())
    }
}

impl PartialEq for Belief {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Stands for a belief attached later (the SFT model, before it is trained): lets a spec that
/// uses `endcg@K` be checked up front. It has no probabilities: scoring with it gives NaN.
pub struct PendingBelief;

impl NextItemBelief for PendingBelief {
    fn name(&self) -> String {
        "a belief not attached yet".into()
    }

    fn probs(&self, _window: &[ItemId], _seen: &[ItemId]) -> Option<Arc<[f32]>> {
        None
    }
}

/// Prompts whose probabilities are kept; past it the cache starts again (a pool of the built-in
/// data or ML-100K's last windows fits many times over).
const CACHE_PROMPTS: usize = 8192;

type Key = (Vec<ItemId>, Vec<ItemId>);

/// The softmax of a recommender's full-catalogue scores over the unseen items, cached per
/// prompt (one forward pass per distinct prompt until the cache is full).
pub struct ModelBelief<R> {
    model: R,
    name: String,
    cache: Mutex<HashMap<Key, Arc<[f32]>>>,
}

impl<R: Recommender + Send + Sync> ModelBelief<R> {
    /// The belief of `model`, named `name` in logs.
    pub fn new(model: R, name: impl Into<String>) -> Self {
        Self {
            model,
            name: name.into(),
            cache: Mutex::new(HashMap::new()),
        }
    }
}

/// The softmax of `scores` over the items not in `seen` (sorted); seen items get 0. `None` when
/// no item is left or a score is not a number.
pub fn masked_softmax(scores: &[f32], seen: &[ItemId]) -> Option<Vec<f32>> {
    let open = |i: usize| seen.binary_search(&(i as ItemId)).is_err();
    let max = scores
        .iter()
        .enumerate()
        .filter(|&(i, _)| open(i))
        .map(|(_, &s)| f64::from(s))
        .fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return None;
    }
    let mut out: Vec<f64> = scores
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            if open(i) {
                (f64::from(s) - max).exp()
            } else {
                0.0
            }
        })
        .collect();
    let total: f64 = out.iter().sum();
    if !(total.is_finite() && total > 0.0) {
        return None;
    }
    out.iter_mut().for_each(|p| *p /= total);
    Some(out.into_iter().map(|p| p as f32).collect())
}

impl<R: Recommender + Send + Sync> NextItemBelief for ModelBelief<R> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn probs(&self, window: &[ItemId], seen: &[ItemId]) -> Option<Arc<[f32]>> {
        let key = (window.to_vec(), seen.to_vec());
        if let Some(p) = self.cache.lock().ok()?.get(&key) {
            return Some(p.clone());
        }
        let batch = PromptBatch {
            histories: vec![window.to_vec()],
            exclude: vec![seen.to_vec()],
        };
        let scores = self.model.score_all(&batch).ok()?.into_iter().next()?;
        let probs: Arc<[f32]> = masked_softmax(&scores, seen)?.into();
        let mut cache = self.cache.lock().ok()?;
        if cache.len() >= CACHE_PROMPTS {
            cache.clear();
        }
        cache.insert(key, probs.clone());
        Some(probs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::DecodeStrategy;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Scores item `i` as `i * (history length)`; counts its forward passes.
    struct Stub(AtomicUsize);

    impl Recommender for Stub {
        fn name(&self) -> String {
            "stub".into()
        }
        fn num_items(&self) -> usize {
            4
        }
        fn score_all(&self, prompts: &PromptBatch) -> crate::Result<Vec<Vec<f32>>> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(prompts
                .histories
                .iter()
                .map(|h| (0..4).map(|i| (i * h.len()) as f32).collect())
                .collect())
        }
        fn decode(
            &self,
            _p: &PromptBatch,
            _k: usize,
            _s: DecodeStrategy,
        ) -> crate::Result<Vec<Vec<ItemId>>> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn a_model_belief_is_the_masked_softmax_of_its_scores_computed_once_per_prompt() {
        let belief = ModelBelief::new(Stub(AtomicUsize::new(0)), "stub");
        let p = belief.probs(&[3, 1], &[1, 3]).unwrap();
        assert_eq!(belief.model.0.load(Ordering::Relaxed), 1);
        // scores 0, 2, 4, 6 with items 1 and 3 seen: softmax over items 0 and 2
        let z = 1.0 + 4f64.exp();
        assert!((f64::from(p[2]) - 4f64.exp() / z).abs() < 1e-6);
        assert_eq!((p[1], p[3]), (0.0, 0.0));
        // the same prompt again: from the cache
        let again = belief.probs(&[3, 1], &[1, 3]).unwrap();
        assert_eq!(&*again, &*p);
        assert_eq!(belief.model.0.load(Ordering::Relaxed), 1);
        // another window (or another seen set) is another prompt
        let other = belief.probs(&[1], &[1]).unwrap();
        assert_eq!(belief.model.0.load(Ordering::Relaxed), 2);
        assert!(other[3] > other[2] && other[1] == 0.0);
        belief.probs(&[1], &[]).unwrap();
        assert_eq!(belief.model.0.load(Ordering::Relaxed), 3);
        // nothing left to recommend: no belief
        assert!(belief.probs(&[1], &[0, 1, 2, 3]).is_none());
    }

    #[test]
    fn the_masked_softmax_gives_seen_items_nothing_and_sums_to_one() {
        let p = masked_softmax(&[0.0, 1.0, 2.0, 100.0], &[3]).unwrap();
        assert_eq!(p[3], 0.0);
        let total: f32 = p.iter().sum();
        assert!((total - 1.0).abs() < 1e-6);
        let z = 1.0 + 1f64.exp() + 2f64.exp();
        assert!((f64::from(p[2]) - 2f64.exp() / z).abs() < 1e-6);
        assert!(masked_softmax(&[1.0, 2.0], &[0, 1]).is_none());
        assert!(masked_softmax(&[f32::NAN, 1.0], &[]).is_none());
    }
}
