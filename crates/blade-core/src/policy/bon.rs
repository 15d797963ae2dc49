//! Best-of-N at inference (METHOD.md section 4, `bon-inference`): sample N lists per prompt
//! from a policy and keep the one with the highest reward. When the reward looks at the
//! held-out targets the result is an oracle upper bound, not a deployable recommender, and
//! must be labelled so.

use blade_data::{EvalCase, ItemId};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::batch::PromptBatch;
use crate::error::CoreError;
use crate::policy::{Policy, SampleSpec};
use crate::reward::{score_group, CatalogInfo, ListReward, RewardContext};

/// The best of `n` sampled lists per case. With `oracle`, rewards see each case's target;
/// without, the target is hidden (only rewards computable at inference, such as fairness or
/// diversity, are meaningful then).
#[allow(clippy::too_many_arguments)]
pub fn best_of_n_lists(
    policy: &dyn Policy,
    cases: &[EvalCase],
    reward: &dyn ListReward,
    catalog: &CatalogInfo,
    n: usize,
    k: usize,
    mask_history: bool,
    oracle: bool,
    seed: u64,
) -> crate::Result<Vec<Vec<ItemId>>> {
    let n = n.max(1);
    let mut rng = StdRng::seed_from_u64(seed);
    let spec = SampleSpec {
        lists_per_prompt: n,
        list_len: k,
        ..SampleSpec::default()
    };
    let mut out = Vec::with_capacity(cases.len());
    for chunk in cases.chunks(64) {
        let roll = policy.sample(
            &PromptBatch::from_cases(chunk, mask_history),
            &spec,
            &mut rng,
        )?;
        let targets: Vec<[ItemId; 1]> = chunk.iter().map(|c| [c.target]).collect();
        let ctx: Vec<RewardContext> = chunk
            .iter()
            .zip(&targets)
            .flat_map(|(c, t)| {
                let targets: &[ItemId] = if oracle { t } else { &[] };
                std::iter::repeat_n(
                    RewardContext {
                        user: Some(c.user),
                        history: &c.seen,
                        window: &c.history,
                        targets,
                        catalog,
                    },
                    n,
                )
            })
            .collect();
        let r =
            score_group(reward, &ctx, &roll.lists).map_err(|e| CoreError::Config(e.to_string()))?;
        for (gi, grp) in r.chunks(n).enumerate() {
            let best = (0..grp.len()).fold(0, |b, j| if grp[j] > grp[b] { j } else { b });
            out.push(roll.lists[gi * n + best].clone());
        }
    }
    Ok(out)
}
