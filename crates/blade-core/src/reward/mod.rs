//! List rewards: the public [`ListReward`] trait, the built-in rewards of METHOD.md section 5,
//! their weighted sums and the `--reward` spec parser.
//!
//! A reward scores one whole list `y` for one prompt `x` (METHOD.md section 1): it sees the
//! user's history, the held-out target(s) and read-only catalogue facts ([`CatalogInfo`]). It
//! may be non-differentiable. Users write their own by implementing [`ListReward`]; the
//! trainers only ever call it through [`score_checked`] or [`score_group`], which turn a NaN or
//! infinite value into a [`RewardError`] naming the reward instead of passing it on.
//!
//! The metric maths lives in `blade-metrics`; the built-ins here only adapt it to the trait.

mod belief;
mod builtin;
mod error;
mod spec;

use std::fmt;
use std::sync::Arc;

use blade_data::{Dataset, ItemId, Split, UserId};

pub use belief::{masked_softmax, Belief, ModelBelief, NextItemBelief, PendingBelief};
pub use builtin::{Dgu, Diversity, ExpectedNdcg, Fairness, Hit, IldDistance, Mrr, Ndcg, Recall};
pub use builtin::{TailExposure, Taste, WeightedSum};
pub use error::{RewardError, SpecError};
pub use spec::{parse_reward, REWARD_NAMES};

/// What a reward may look at besides the list: genres, popularity and optional embeddings of
/// the catalogue's items, indexed by dense [`ItemId`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogInfo {
    /// Per item, its genre indices (into `0..n_genres`).
    pub item_genres: Vec<Vec<u16>>,
    /// Number of genres.
    pub n_genres: usize,
    /// Per item, its training popularity (occurrences in the training sequences).
    pub popularity: Vec<u32>,
    /// Per item, whether it is in the popular head (top 20% by `popularity`, from
    /// [`blade_metrics::head_mask`]); kept in step with `popularity` by the constructors.
    pub head: Vec<bool>,
    /// Per item, an embedding vector, if the catalogue has them (needed by `ild_cos`).
    pub embeddings: Option<Vec<Vec<f32>>>,
    /// Per user (dense [`UserId`]), a latent taste over the genres (needed by `taste@K`): the
    /// synthetic generator's own tastes, so that the best possible list is known.
    pub user_tastes: Option<Vec<Vec<f32>>>,
    /// A next-item distribution per prompt (needed by `endcg@K`): in blade, the SFT run's own
    /// (the reference's) softmax over the unseen items.
    pub belief: Option<Belief>,
}

impl CatalogInfo {
    /// Catalogue facts without embeddings; the head is computed from `popularity`.
    pub fn new(item_genres: Vec<Vec<u16>>, n_genres: usize, popularity: Vec<u32>) -> Self {
        let head = blade_metrics::head_mask(&popularity);
        Self {
            item_genres,
            n_genres,
            popularity,
            head,
            embeddings: None,
            user_tastes: None,
            belief: None,
        }
    }

    /// The same facts with item embeddings attached (enables `ild_cos`).
    pub fn with_embeddings(mut self, embeddings: Vec<Vec<f32>>) -> Self {
        self.embeddings = Some(embeddings);
        self
    }

    /// The same facts with per-user genre tastes attached (enables `taste@K`); `tastes[u]` has
    /// one weight per genre.
    pub fn with_user_tastes(mut self, tastes: Vec<Vec<f32>>) -> Self {
        self.user_tastes = Some(tastes);
        self
    }

    /// The same facts with a next-item belief attached (enables `endcg@K`).
    pub fn with_belief(mut self, belief: Arc<dyn NextItemBelief>) -> Self {
        self.belief = Some(Belief(belief));
        self
    }

    /// Facts of a dataset's catalogue; popularity is the split's training popularity, so the
    /// head does not leak validation or test interactions.
    pub fn from_dataset(ds: &Dataset, split: &Split) -> Self {
        Self::new(
            ds.catalog.item_genres(),
            ds.catalog.genre_names.len(),
            split.item_popularity.clone(),
        )
    }
}

/// Everything a reward is told about one prompt, besides the list it scores.
#[derive(Debug, Clone, Copy)]
pub struct RewardContext<'a> {
    /// The prompt's user, where known (rewards keyed by user, like `taste@K`, need it).
    pub user: Option<UserId>,
    /// Every item the user saw before the target, sorted (what history masking excludes).
    pub history: &'a [ItemId],
    /// The prompt the policy reads: up to `L` most recent items, oldest first (what a
    /// next-item model, and so `endcg@K`, conditions on).
    pub window: &'a [ItemId],
    /// The held-out item(s) the list is judged against (empty at inference).
    pub targets: &'a [ItemId],
    /// Catalogue facts shared by all prompts.
    pub catalog: &'a CatalogInfo,
}

/// A list-wise reward `r(x, y)` (METHOD.md section 1); users implement this in their own crate.
///
/// `Send + Sync` because [`score_group`] may score a batch on several threads.
pub trait ListReward: Send + Sync {
    /// A short name used in logs and errors; the built-ins return their spec token (`ndcg@10`),
    /// so that [`parse_reward`] of the name rebuilds an equal reward.
    fn name(&self) -> String;

    /// The reward of `list` (item ids, best first) for the prompt described by `ctx`. Higher is
    /// better. Must be finite; [`score_checked`] reports anything else as an error.
    fn score(&self, ctx: &RewardContext<'_>, list: &[ItemId]) -> f32;

    /// The best value any list of unseen items can score for this prompt, where the reward
    /// knows it (`taste@K`: 1, its best list); `None` (the default) where it does not. The
    /// trainer reports its mean over the prompt pool beside the static ceilings.
    fn optimum(&self, _ctx: &RewardContext<'_>) -> Option<f32> {
        None
    }
}

/// The mean of [`ListReward::optimum`] over `contexts`; `None` unless every prompt has one.
pub fn mean_optimum(reward: &dyn ListReward, contexts: &[RewardContext<'_>]) -> Option<f64> {
    if contexts.is_empty() {
        return None;
    }
    let mut total = 0.0;
    for ctx in contexts {
        total += f64::from(reward.optimum(ctx)?);
    }
    Some(total / contexts.len() as f64)
}

impl fmt::Debug for dyn ListReward + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ListReward({})", self.name())
    }
}

/// Scores `list` and checks that the value is finite; NaN or infinity is an error naming the
/// reward and the value.
pub fn score_checked(
    reward: &dyn ListReward,
    ctx: &RewardContext<'_>,
    list: &[ItemId],
) -> Result<f32, RewardError> {
    check(reward, reward.score(ctx, list), None)
}

fn check(reward: &dyn ListReward, value: f32, list: Option<usize>) -> Result<f32, RewardError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(RewardError::NonFinite {
            reward: reward.name(),
            value,
            list,
        })
    }
}

/// Batches up to this many lists are scored on the calling thread: below it, spawning threads
/// costs more than the metrics.
const PARALLEL_THRESHOLD: usize = 256;

/// Scores `lists[i]` under `contexts[i]` for every `i`, in order, checking each value like
/// [`score_checked`]; the error of the first (lowest-index) offending list is returned.
///
/// Batches above 256 lists are split into contiguous chunks over
/// [`std::thread::available_parallelism`] scoped threads; the result order is unchanged.
pub fn score_group<L: AsRef<[ItemId]> + Sync>(
    reward: &dyn ListReward,
    contexts: &[RewardContext<'_>],
    lists: &[L],
) -> Result<Vec<f32>, RewardError> {
    if contexts.len() != lists.len() {
        return Err(RewardError::BatchMismatch {
            contexts: contexts.len(),
            lists: lists.len(),
        });
    }
    let score_range = |offset: usize, ctxs: &[RewardContext<'_>], ls: &[L]| {
        ctxs.iter()
            .zip(ls)
            .enumerate()
            .map(|(i, (ctx, list))| {
                check(reward, reward.score(ctx, list.as_ref()), Some(offset + i))
            })
            .collect::<Result<Vec<f32>, RewardError>>()
    };
    let n = lists.len();
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
    if n <= PARALLEL_THRESHOLD || threads < 2 {
        return score_range(0, contexts, lists);
    }
    let chunk = n.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = contexts
            .chunks(chunk)
            .zip(lists.chunks(chunk))
            .enumerate()
            .map(|(c, (ctxs, ls))| scope.spawn(move || score_range(c * chunk, ctxs, ls)))
            .collect();
        let mut scores = Vec::with_capacity(n);
        for handle in handles {
            match handle.join() {
                Ok(part) => scores.extend(part?),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(scores)
    })
}
