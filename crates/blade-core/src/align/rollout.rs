//! The rollout phase (docs/METHOD.md section 4): the prompt pool, and one `sample_and_score`
//! that every caller uses (training steps, the reference cache, the held-out ceilings and the
//! final summary).

use blade_data::{EvalCase, ItemId, Split, UserId};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::config::PromptPool;
use crate::batch::PromptBatch;
use crate::policy::{Policy, SampleSpec};
use crate::reward::{score_group, CatalogInfo, ListReward, RewardContext};

/// One prompt: a window, its next item and the items seen before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolPrompt {
    /// The prompt's user (dense id).
    pub user: UserId,
    /// Up to `L` items, oldest first.
    pub history: Vec<ItemId>,
    /// The reward's targets: the next item, then (with `train_targets > 1`) the items after
    /// it in the user's training sequence. Held-out prompts have one target.
    pub targets: Vec<ItemId>,
    /// Every item before the target (excluded from lists when masking), sorted.
    pub seen: Vec<ItemId>,
}

impl PoolPrompt {
    /// The prompt of an evaluation case (validation or test).
    pub fn from_case(c: &EvalCase) -> Self {
        Self {
            user: c.user,
            history: c.history.clone(),
            targets: vec![c.target],
            seen: c.seen.clone(),
        }
    }
}

/// The alignment prompt pool drawn from the split's training sequences; each prompt's reward
/// targets are its next `targets` training items (fewer at the end of a sequence; at least 1).
pub fn prompt_pool(split: &Split, pool: PromptPool, targets: usize) -> Vec<PoolPrompt> {
    let per_user = match pool {
        PromptPool::Last(n) => n,
        PromptPool::All | PromptPool::Sample(_) => usize::MAX,
    };
    let mut out = Vec::new();
    for (user, seq) in split.train_sequences.iter().enumerate() {
        let first = seq.len().saturating_sub(per_user).max(1);
        for t in first..seq.len() {
            let mut seen = seq[..t].to_vec();
            seen.sort_unstable();
            seen.dedup();
            out.push(PoolPrompt {
                user: user as UserId,
                history: seq[t.saturating_sub(split.max_history)..t].to_vec(),
                targets: seq[t..(t + targets.max(1)).min(seq.len())].to_vec(),
                seen,
            });
        }
    }
    if let PromptPool::Sample(n) = pool {
        if n < out.len() {
            let mut rng = StdRng::seed_from_u64(0x9001_5a3e);
            out.shuffle(&mut rng);
            out.truncate(n);
        }
    }
    out
}

/// The prompts `idx` of `pool` as a batch; with `mask`, each excludes its earlier items.
pub fn batch_of(pool: &[PoolPrompt], idx: &[usize], mask: bool) -> PromptBatch {
    PromptBatch {
        histories: idx.iter().map(|&i| pool[i].history.clone()).collect(),
        exclude: idx
            .iter()
            .map(|&i| {
                if mask {
                    pool[i].seen.clone()
                } else {
                    Vec::new()
                }
            })
            .collect(),
    }
}

/// Reward contexts of `g` lists for each prompt `idx` of `pool`.
pub fn contexts<'a>(
    pool: &'a [PoolPrompt],
    idx: &[usize],
    g: usize,
    catalog: &'a CatalogInfo,
) -> Vec<RewardContext<'a>> {
    idx.iter()
        .flat_map(|&i| {
            let p = &pool[i];
            std::iter::repeat_n(
                RewardContext {
                    user: Some(p.user),
                    history: &p.seen,
                    window: &p.history,
                    targets: &p.targets,
                    catalog,
                },
                g,
            )
        })
        .collect()
}

/// Sampled and scored groups: lists `i*g .. (i+1)*g` belong to prompt `prompt_ids[i]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScoredGroups {
    /// Lists per prompt (`G`).
    pub g: usize,
    /// Pool index of each group's prompt.
    pub prompt_ids: Vec<usize>,
    /// The lists.
    pub lists: Vec<Vec<ItemId>>,
    /// Log-probability of each list under the policy that sampled it.
    pub log_probs: Vec<f32>,
    /// Raw list reward of each list.
    pub rewards: Vec<f32>,
}

impl ScoredGroups {
    /// Number of groups.
    pub fn groups(&self) -> usize {
        self.prompt_ids.len()
    }

    /// The raw rewards of group `i`.
    pub fn group_rewards(&self, i: usize) -> &[f32] {
        &self.rewards[i * self.g..(i + 1) * self.g]
    }

    /// Whether group `i`'s raw rewards are all equal (no preference, zero advantage).
    pub fn zero_spread(&self, i: usize) -> bool {
        let r = self.group_rewards(i);
        r.iter().all(|&x| x == r[0])
    }

    /// Number of distinct lists in group `i`.
    pub fn distinct_lists(&self, i: usize) -> usize {
        let mut lists: Vec<&Vec<ItemId>> =
            self.lists[i * self.g..(i + 1) * self.g].iter().collect();
        lists.sort();
        lists.dedup();
        lists.len()
    }

    /// Keeps the groups whose `keep` flag is set, in order.
    pub fn retain_groups(&mut self, keep: &[bool]) {
        let g = self.g;
        retain_rows(&mut self.prompt_ids, keep, 1);
        retain_rows(&mut self.lists, keep, g);
        retain_rows(&mut self.log_probs, keep, g);
        retain_rows(&mut self.rewards, keep, g);
    }

    /// Appends the groups of `other` (same `g`).
    pub fn append(&mut self, mut other: ScoredGroups) {
        self.prompt_ids.append(&mut other.prompt_ids);
        self.lists.append(&mut other.lists);
        self.log_probs.append(&mut other.log_probs);
        self.rewards.append(&mut other.rewards);
    }
}

/// Keeps the `g`-row blocks of `v` whose flag in `keep` is set.
pub(crate) fn retain_rows<T>(v: &mut Vec<T>, keep: &[bool], g: usize) {
    let mut i = 0;
    v.retain(|_| {
        i += 1;
        keep[(i - 1) / g]
    });
}

/// Samples `spec.lists_per_prompt` lists for each prompt `idx` of `pool` from `policy` and
/// scores them with `reward`, in chunks of `chunk` prompts (one `rng` stream throughout).
#[allow(clippy::too_many_arguments)]
pub fn sample_and_score<P: Policy + ?Sized>(
    policy: &P,
    pool: &[PoolPrompt],
    idx: &[usize],
    spec: &SampleSpec,
    mask: bool,
    reward: &dyn ListReward,
    catalog: &CatalogInfo,
    chunk: usize,
    rng: &mut StdRng,
) -> crate::Result<ScoredGroups> {
    let g = spec.lists_per_prompt;
    let mut out = ScoredGroups {
        g,
        ..ScoredGroups::default()
    };
    for part in idx.chunks(chunk.max(1)) {
        let roll = policy.sample(&batch_of(pool, part, mask), spec, rng)?;
        let ctx = contexts(pool, part, g, catalog);
        let rewards = score_group(reward, &ctx, &roll.lists)?;
        out.prompt_ids.extend_from_slice(part);
        out.lists.extend(roll.lists);
        out.log_probs.extend(roll.log_probs);
        out.rewards.extend(rewards);
    }
    Ok(out)
}
