//! Non-learned baselines: `random` and `pop` (most popular unseen items).

use blade_data::ItemId;

use crate::batch::PromptBatch;
use crate::error::Result;
use crate::policy::sampling::{blocked, greedy_pick};
use crate::policy::{DecodeStrategy, Recommender};

/// Uniformly random recommendations, deterministic for a seed and a prompt.
#[derive(Debug, Clone)]
pub struct RandomRecommender {
    num_items: usize,
    seed: u64,
}

impl RandomRecommender {
    /// A random recommender over `num_items` items.
    pub fn new(num_items: usize, seed: u64) -> Self {
        Self { num_items, seed }
    }
}

/// SplitMix64: a stateless, well-mixed hash for reproducible pseudo-random scores.
pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Recommender for RandomRecommender {
    fn name(&self) -> String {
        "random".into()
    }

    fn num_items(&self) -> usize {
        self.num_items
    }

    fn score_all(&self, prompts: &PromptBatch) -> Result<Vec<Vec<f32>>> {
        Ok(prompts
            .histories
            .iter()
            .map(|h| {
                let key = h
                    .iter()
                    .fold(splitmix(self.seed), |a, &i| splitmix(a ^ u64::from(i)));
                (0..self.num_items)
                    .map(|i| {
                        (splitmix(key ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)) >> 40)
                            as f32
                    })
                    .collect()
            })
            .collect())
    }

    fn decode(
        &self,
        prompts: &PromptBatch,
        k: usize,
        _: DecodeStrategy,
    ) -> Result<Vec<Vec<ItemId>>> {
        top_k_lists(&self.score_all(prompts)?, prompts, k)
    }
}

/// Most popular items the user has not seen, by training-set interaction counts.
#[derive(Debug, Clone)]
pub struct PopRecommender {
    popularity: Vec<f32>,
}

impl PopRecommender {
    /// A popularity recommender from per-item training counts.
    pub fn new(popularity: &[u32]) -> Self {
        Self {
            popularity: popularity.iter().map(|&c| c as f32).collect(),
        }
    }
}

impl Recommender for PopRecommender {
    fn name(&self) -> String {
        "pop".into()
    }

    fn num_items(&self) -> usize {
        self.popularity.len()
    }

    fn score_all(&self, prompts: &PromptBatch) -> Result<Vec<Vec<f32>>> {
        Ok(vec![self.popularity.clone(); prompts.len()])
    }

    fn decode(
        &self,
        prompts: &PromptBatch,
        k: usize,
        _: DecodeStrategy,
    ) -> Result<Vec<Vec<ItemId>>> {
        top_k_lists(&self.score_all(prompts)?, prompts, k)
    }
}

/// The `k` best non-excluded items per prompt (ties to the lower id).
fn top_k_lists(scores: &[Vec<f32>], prompts: &PromptBatch, k: usize) -> Result<Vec<Vec<ItemId>>> {
    scores
        .iter()
        .zip(&prompts.exclude)
        .map(|(s, ex)| {
            let mut list = Vec::with_capacity(k);
            for _ in 0..k {
                list.push(greedy_pick(s, &blocked(ex, &list))?.0);
            }
            Ok(list)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pop_takes_most_popular_unseen() {
        let pop = PopRecommender::new(&[5, 9, 9, 1]);
        let p = PromptBatch {
            histories: vec![vec![1]],
            exclude: vec![vec![1]],
        };
        assert_eq!(
            pop.decode(&p, 2, DecodeStrategy::Greedy).unwrap(),
            vec![vec![2, 0]]
        );
    }

    #[test]
    fn random_is_deterministic_distinct_and_seed_dependent() {
        let p = PromptBatch {
            histories: vec![vec![1, 2]],
            exclude: vec![vec![3]],
        };
        let a = RandomRecommender::new(50, 1)
            .decode(&p, 10, DecodeStrategy::Greedy)
            .unwrap();
        let b = RandomRecommender::new(50, 1)
            .decode(&p, 10, DecodeStrategy::Greedy)
            .unwrap();
        let c = RandomRecommender::new(50, 2)
            .decode(&p, 10, DecodeStrategy::Greedy)
            .unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut s = a[0].clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), 10);
        assert!(!a[0].contains(&3));
    }
}
