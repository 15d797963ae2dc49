//! The policy interfaces.
//!
//! A [`Recommender`] turns prompts into ranked lists and catalogue-wide scores: every method,
//! trainable or not (`random`, `pop`), implements it, so one evaluator serves all. A [`Policy`]
//! is a trainable recommender that also samples lists with their log-probabilities and gives
//! differentiable log-probabilities of given lists: what the alignment objectives consume.
//!
//! The list distribution of a policy is autoregressive: slot `j` is drawn from a softmax over the
//! catalogue restricted to items that are neither excluded by the prompt nor already in the list,
//! so lists never repeat an item. `log_prob(list) = sum_j log p(y_j | prompt, y_<j)` under that
//! restricted softmax at temperature 1 (the policy itself, whatever sampler drew the list).

pub mod baselines;
pub mod bon;
pub mod dropout;
pub mod item_lm;
pub mod sampling;

use blade_data::ItemId;
use burn::tensor::Tensor;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::batch::PromptBatch;
use crate::error::Result;

/// How to sample lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleSpec {
    /// Lists per prompt (`G` in GRPO, `N` in best-of-N).
    pub lists_per_prompt: usize,
    /// Items per list (`K`).
    pub list_len: usize,
    /// Softmax temperature of the sampler (1 = the policy itself).
    pub temperature: f32,
    /// Keep only the `top_k` most likely allowed items at each slot.
    pub top_k: Option<usize>,
    /// Keep the smallest set of items whose probability reaches `top_p` (nucleus sampling).
    pub top_p: Option<f32>,
}

impl Default for SampleSpec {
    fn default() -> Self {
        Self {
            lists_per_prompt: 16,
            list_len: 10,
            temperature: 1.0,
            top_k: None,
            top_p: None,
        }
    }
}

/// Sampled lists, grouped by prompt: lists `g*G .. (g+1)*G` belong to prompt `g`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollouts {
    /// Lists per prompt (`G`).
    pub group_size: usize,
    /// The lists, each of `K` distinct items.
    pub lists: Vec<Vec<ItemId>>,
    /// Per list, its log-probability under the policy at temperature 1.
    pub log_probs: Vec<f32>,
}

/// How to decode one list deterministically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DecodeStrategy {
    /// Take the most likely allowed item at each slot.
    Greedy,
    /// Beam search over whole lists with this many beams, maximising the list log-probability.
    Beam(usize),
}

/// Anything that recommends: ranks the whole catalogue and produces a list per prompt.
pub trait Recommender {
    /// Short name used in tables (`sft`, `pop`, ...).
    fn name(&self) -> String;

    /// Size of the catalogue the recommender scores.
    fn num_items(&self) -> usize;

    /// Scores of every catalogue item for each prompt (`[prompts][num_items]`, higher is
    /// better). Excluded items are not removed here: the evaluator masks them.
    fn score_all(&self, prompts: &PromptBatch) -> Result<Vec<Vec<f32>>>;

    /// One list of `k` distinct, non-excluded items per prompt.
    fn decode(
        &self,
        prompts: &PromptBatch,
        k: usize,
        strategy: DecodeStrategy,
    ) -> Result<Vec<Vec<ItemId>>>;
}

/// A trainable list policy, the object every alignment method optimises.
pub trait Policy: Recommender {
    /// Samples `spec.lists_per_prompt` lists of `spec.list_len` items for each prompt.
    fn sample(
        &self,
        prompts: &PromptBatch,
        spec: &SampleSpec,
        rng: &mut StdRng,
    ) -> Result<Rollouts>;

    /// Differentiable log-probabilities of the given lists, one per list.
    ///
    /// `prompts` and `lists` have the same length (repeat prompts for groups).
    ///
    /// # Shapes
    /// - output: `[lists.len()]`
    fn log_prob(&self, prompts: &PromptBatch, lists: &[Vec<ItemId>]) -> Result<Tensor<1>>;

    /// Differentiable log-probabilities of the given lists token by token: what token-level
    /// importance ratios and loss aggregation need (docs/METHOD.md section 5). A token is
    /// whatever the policy emits one softmax at a time: an item slot for the item-level model,
    /// a title token for an LLM. The row sums of `values * mask` equal [`Policy::log_prob`].
    ///
    /// The default treats the whole list as one token (`[lists.len(), 1]`).
    fn token_log_probs(
        &self,
        prompts: &PromptBatch,
        lists: &[Vec<ItemId>],
    ) -> Result<TokenLogProbs> {
        let values = self.log_prob(prompts, lists)?;
        let n = values.dims()[0];
        let mask = Tensor::ones([n, 1], &values.device());
        Ok(TokenLogProbs {
            values: values.reshape([n, 1]),
            mask,
        })
    }

    /// [`Policy::token_log_probs`] of the policy at softmax temperature `temperature` (its
    /// logits divided by it): the distribution that [`SampleSpec::temperature`] samples from.
    /// The default scores at temperature 1 only and refuses any other; a policy that overrides
    /// it says so in [`Policy::scores_at_any_temperature`].
    fn token_log_probs_at(
        &self,
        prompts: &PromptBatch,
        lists: &[Vec<ItemId>],
        temperature: f32,
    ) -> Result<TokenLogProbs> {
        if temperature == 1.0 {
            return self.token_log_probs(prompts, lists);
        }
        Err(crate::error::CoreError::Config(format!(
            "this policy scores lists at temperature 1 only, not {temperature}"
        )))
    }

    /// Whether [`Policy::token_log_probs_at`] takes temperatures other than 1.
    fn scores_at_any_temperature(&self) -> bool {
        false
    }

    /// Differentiable log-probabilities of every catalogue item as a list's first item, each
    /// prompt's excluded items masked out: the distribution whose order full-ranking
    /// evaluation reads, and what the ranking anchor (`rank_kl`, docs/METHOD.md section 5)
    /// keeps near the reference's. The default refuses; a policy that overrides it says so in
    /// [`Policy::has_first_slot`].
    ///
    /// # Shapes
    /// - output: `[prompts.len(), num_items]`
    fn first_slot_log_probs(&self, _prompts: &PromptBatch) -> Result<Tensor<2>> {
        Err(crate::error::CoreError::Config(
            "this policy has no catalogue-wide first-slot distribution".into(),
        ))
    }

    /// Whether [`Policy::first_slot_log_probs`] is available (not for an LLM policy, which
    /// scores the catalogue title by title).
    fn has_first_slot(&self) -> bool {
        false
    }
}

/// Per-token log-probabilities of a batch of lists.
#[derive(Debug, Clone)]
pub struct TokenLogProbs {
    /// `[lists, T]`: log-probability of each list's `t`-th token (0 past its end).
    pub values: Tensor<2>,
    /// `[lists, T]`: 1 for a real token, 0 for padding.
    pub mask: Tensor<2>,
}

impl TokenLogProbs {
    /// The list log-probabilities, `[lists]`.
    pub fn sum(&self) -> Tensor<1> {
        let n = self.values.dims()[0];
        (self.values.clone() * self.mask.clone())
            .sum_dim(1)
            .reshape([n])
    }
}
