//! List rewards through the public API: a user-written reward, checked scoring, batches and
//! spec round trips.

use blade_core::reward::{
    parse_reward, score_checked, score_group, CatalogInfo, Fairness, ListReward, Ndcg,
    RewardContext, RewardError, WeightedSum,
};
use blade_data::ItemId;

/// 20 items; item `i` has genre `i % 4` and also genre 4 when `i` is a multiple of 5; item `i`
/// has popularity `20 - i`, so the head is items 0..4.
fn catalog() -> CatalogInfo {
    let genres = (0..20u16)
        .map(|i| {
            if i.is_multiple_of(5) {
                vec![i % 4, 4]
            } else {
                vec![i % 4]
            }
        })
        .collect();
    let popularity = (0..20).map(|i| 20 - i).collect();
    CatalogInfo::new(genres, 5, popularity)
}

/// A reward a user might write in their own crate: the share of even item ids in the list.
struct EvenShare;

impl ListReward for EvenShare {
    fn name(&self) -> String {
        "even_share".into()
    }

    fn score(&self, _ctx: &RewardContext<'_>, list: &[ItemId]) -> f32 {
        list.iter().filter(|&&i| i.is_multiple_of(2)).count() as f32 / list.len() as f32
    }
}

/// Returns a fixed value, finite or not.
struct Constant(f32);

impl ListReward for Constant {
    fn name(&self) -> String {
        format!("constant({})", self.0)
    }

    fn score(&self, _ctx: &RewardContext<'_>, _list: &[ItemId]) -> f32 {
        self.0
    }
}

/// A deterministic pseudo-random list of `len` distinct-ish items from `seed`.
fn list(seed: u32, len: u32) -> Vec<ItemId> {
    (0..len)
        .map(|j| (seed * 7 + j * 13 + seed / 3) % 20)
        .collect()
}

#[test]
fn user_reward_works_through_score_checked_and_sums() {
    let cat = catalog();
    let ctx = RewardContext {
        user: None,
        history: &[1, 2],
        window: &[1, 2],
        targets: &[4],
        catalog: &cat,
    };
    assert_eq!(score_checked(&EvenShare, &ctx, &[4, 5, 6, 7]).unwrap(), 0.5);
    let sum = WeightedSum::new(vec![
        (1.0, Box::new(Ndcg { k: 4 })),
        (2.0, Box::new(EvenShare)),
    ]);
    // The target is at rank 1: 1 + 2 * 0.5.
    assert_eq!(score_checked(&sum, &ctx, &[4, 5, 6, 7]).unwrap(), 2.0);
    assert_eq!(sum.name(), "ndcg@4 + 2*even_share");
    // A boxed reward goes through the same function.
    let boxed: Box<dyn ListReward> = Box::new(EvenShare);
    assert_eq!(score_checked(boxed.as_ref(), &ctx, &[2]).unwrap(), 1.0);
}

#[test]
fn non_finite_rewards_are_errors_naming_the_reward() {
    let cat = catalog();
    let ctx = RewardContext {
        user: None,
        history: &[],
        window: &[],
        targets: &[],
        catalog: &cat,
    };
    // The user's reward divides by zero on an empty list.
    let err = score_checked(&EvenShare, &ctx, &[]).unwrap_err();
    assert!(
        matches!(&err, RewardError::NonFinite { reward, value, list: None }
        if reward == "even_share" && value.is_nan())
    );
    let msg = err.to_string();
    assert!(msg.contains("`even_share`") && msg.contains("NaN"), "{msg}");
    let err = score_checked(&Constant(f32::INFINITY), &ctx, &[1]).unwrap_err();
    assert!(err.to_string().contains("inf"), "{err}");
    // NaN inside a sum is reported under the sum's name.
    let sum = WeightedSum::new(vec![
        (1.0, Box::new(Fairness)),
        (0.1, Box::new(Constant(f32::NAN))),
    ]);
    let msg = score_checked(&sum, &ctx, &[1]).unwrap_err().to_string();
    assert!(msg.contains("fairness + 0.1*constant(NaN)"), "{msg}");
}

#[test]
fn score_group_keeps_order_and_finds_the_first_bad_list() {
    let cat = catalog();
    let reward = parse_reward("ndcg@5 + 0.3*ild - 0.2*tail + 0.5*fairness", &cat).unwrap();
    let n = 1000; // above the parallel threshold
    let lists: Vec<Vec<ItemId>> = (0..n).map(|s| list(s, 5)).collect();
    let histories: Vec<Vec<ItemId>> = (0..n).map(|s| list(s + 1, 3)).collect();
    let targets: Vec<[ItemId; 1]> = (0..n).map(|s| [(s * 3) % 20]).collect();
    let contexts: Vec<RewardContext<'_>> = (0..n as usize)
        .map(|i| RewardContext {
            user: None,
            history: &histories[i],
            window: &histories[i],
            targets: &targets[i],
            catalog: &cat,
        })
        .collect();
    let batch = score_group(reward.as_ref(), &contexts, &lists).unwrap();
    let one_by_one: Vec<f32> = contexts
        .iter()
        .zip(&lists)
        .map(|(c, l)| reward.score(c, l))
        .collect();
    assert_eq!(batch, one_by_one);
    assert!(batch.iter().any(|&r| r != batch[0]));
    // The small path gives the same prefix.
    assert_eq!(
        score_group(reward.as_ref(), &contexts[..10], &lists[..10]).unwrap(),
        batch[..10]
    );

    // Lists 700 and 900 are empty, so EvenShare is NaN there; the first is reported.
    let mut holes = lists.clone();
    holes[900].clear();
    holes[700].clear();
    let err = score_group(&EvenShare, &contexts, &holes).unwrap_err();
    assert!(
        matches!(
            err,
            RewardError::NonFinite {
                list: Some(700),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("list 700"), "{err}");

    let err = score_group(&EvenShare, &contexts[..3], &lists[..2]).unwrap_err();
    assert!(
        matches!(
            err,
            RewardError::BatchMismatch {
                contexts: 3,
                lists: 2
            }
        ),
        "{err}"
    );
    let none: &[Vec<ItemId>] = &[];
    assert!(score_group(&EvenShare, &[], none).unwrap().is_empty());
}

#[test]
fn parsed_names_parse_back_to_equal_rewards() {
    let cat = catalog().with_embeddings((0..20).map(|i| vec![i as f32, 1.0]).collect());
    let specs = [
        "ndcg@10",
        "ndcg@10 + 0.3*ild",
        "recall@5 - 0.2 * tail",
        "0.5*ndcg@10+0.5*fairness",
        "ndcg@10 + 1e-1*ild",
        "-0.25*fairness_dgu + mrr@3 - hit@1 + 0.7*ild_cos",
        "3*tail",
    ];
    for spec in specs {
        let first = parse_reward(spec, &cat).unwrap();
        let second = parse_reward(&first.name(), &cat).unwrap();
        assert_eq!(first.name(), second.name(), "{spec}");
        for seed in 0..30 {
            let (history, l) = (list(seed + 5, 4), list(seed, 10));
            let targets = [seed % 20, (seed * 11) % 20];
            let ctx = RewardContext {
                user: None,
                history: &history,
                window: &history,
                targets: &targets,
                catalog: &cat,
            };
            let (a, b) = (
                score_checked(first.as_ref(), &ctx, &l),
                second.score(&ctx, &l),
            );
            assert_eq!(a.unwrap(), b, "{spec} on {l:?}");
        }
    }
}

#[test]
fn parsed_sum_equals_the_weighted_parts() {
    let cat = catalog();
    let sum = parse_reward("ndcg@10 + 0.3*ild - 0.2*tail", &cat).unwrap();
    let parts: Vec<Box<dyn ListReward>> = ["ndcg@10", "ild", "tail"]
        .iter()
        .map(|s| parse_reward(s, &cat).unwrap())
        .collect();
    let history = [1, 6, 11];
    for seed in 0..20 {
        let l = list(seed, 10);
        let ctx = RewardContext {
            user: None,
            history: &history,
            window: &history,
            targets: &[seed % 20],
            catalog: &cat,
        };
        let expected = parts[0].score(&ctx, &l) + 0.3 * parts[1].score(&ctx, &l)
            - 0.2 * parts[2].score(&ctx, &l);
        assert!((sum.score(&ctx, &l) - expected).abs() < 1e-6);
    }
}

#[test]
fn catalog_from_a_dataset_uses_training_popularity() {
    let raw = blade_data::synthetic::generate(&blade_data::synthetic::SyntheticConfig::tiny());
    let ds = blade_data::Dataset::from_raw(&raw, &Default::default()).unwrap();
    let split = ds.leave_one_out(5);
    let cat = CatalogInfo::from_dataset(&ds, &split);
    assert_eq!(cat.item_genres.len(), ds.num_items());
    assert_eq!(cat.n_genres, ds.catalog.genre_names.len());
    assert_eq!(cat.popularity, split.item_popularity);
    assert_eq!(
        cat.head.iter().filter(|&&h| h).count(),
        ds.num_items().div_ceil(5)
    );
    assert!(cat.embeddings.is_none());
    let err = parse_reward("ild_cos", &cat).unwrap_err();
    assert!(err.to_string().contains("needs item embeddings"), "{err}");
}
