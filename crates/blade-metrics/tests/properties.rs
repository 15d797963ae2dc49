//! Random cross-checks of the ranking metrics against an independent brute-force formula, and
//! invariants of all metrics.

use std::collections::BTreeSet;

use blade_metrics::{
    dgu, genre_shares, hit_at_k, ild_jaccard, mgu, mrr_at_k, ndcg_at_k, precision_at_k, rank_of,
    recall_at_k, top_k_by_scores,
};
use proptest::prelude::*;

/// Full ranking by repeated selection of the best remaining item: higher score wins, equal
/// scores go to the smaller id; NaN scores and excluded ids never enter.
fn brute_ranking(scores: &[f32], exclude: &BTreeSet<u32>) -> Vec<u32> {
    let mut left: Vec<u32> = (0..scores.len() as u32)
        .filter(|i| !exclude.contains(i) && !scores[*i as usize].is_nan())
        .collect();
    let mut out = Vec::new();
    while !left.is_empty() {
        let mut best = 0;
        for j in 1..left.len() {
            let (a, b) = (scores[left[j] as usize], scores[left[best] as usize]);
            if a > b || (a == b && left[j] < left[best]) {
                best = j;
            }
        }
        out.push(left.remove(best));
    }
    out
}

/// NDCG, recall and MRR by explicit loops over the first k positions of a duplicate-free list.
fn brute_metrics(ranking: &[u32], targets: &BTreeSet<u32>, k: usize) -> (f64, f64, f64) {
    if targets.is_empty() || k == 0 {
        return (0.0, 0.0, 0.0);
    }
    let mut dcg = 0.0;
    let mut hits = 0;
    let mut rr = 0.0;
    for (i, item) in ranking.iter().enumerate() {
        if i >= k {
            break;
        }
        if targets.contains(item) {
            dcg += 1.0 / ((i + 2) as f64).log2();
            hits += 1;
            if rr == 0.0 {
                rr = 1.0 / (i + 1) as f64;
            }
        }
    }
    let mut idcg = 0.0;
    for i in 0..targets.len().min(k) {
        idcg += 1.0 / ((i + 2) as f64).log2();
    }
    (dcg / idcg, hits as f64 / targets.len() as f64, rr)
}

/// Scores over 1..=50 items with many ties, some NaNs and some arbitrary values.
fn scores() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(
        prop_oneof![
            6 => (0..6i32).prop_map(|s| s as f32),
            2 => -10.0f32..10.0,
            1 => Just(f32::NAN),
        ],
        1..=50,
    )
}

/// Scores plus random target and exclusion sets of item ids (some beyond the catalogue).
fn case() -> impl Strategy<Value = (Vec<f32>, BTreeSet<u32>, BTreeSet<u32>)> {
    scores().prop_flat_map(|s| {
        let n = s.len() as u32;
        (
            Just(s),
            prop::collection::btree_set(0..n + 2, 0..6),
            prop::collection::btree_set(0..n + 2, 0..10),
        )
    })
}

proptest! {
    #[test]
    fn top_k_matches_brute_force((s, _t, ex) in case(), k in 0usize..60) {
        let exclude: Vec<u32> = ex.iter().copied().collect();
        let brute = brute_ranking(&s, &ex);
        let top = top_k_by_scores(&s, k, &exclude);
        prop_assert_eq!(&top[..], &brute[..k.min(brute.len())]);
    }

    #[test]
    fn rank_of_matches_brute_force((s, _t, ex) in case()) {
        let exclude: Vec<u32> = ex.iter().copied().collect();
        let brute = brute_ranking(&s, &ex);
        for (pos, &item) in brute.iter().enumerate() {
            prop_assert_eq!(rank_of(&s, item, &exclude), pos + 1);
        }
    }

    #[test]
    fn metrics_match_brute_force((s, t, ex) in case(), k in 0usize..60) {
        let exclude: Vec<u32> = ex.iter().copied().collect();
        let targets: Vec<u32> = t.iter().copied().collect();
        let full = top_k_by_scores(&s, s.len(), &exclude);
        let (ndcg, recall, mrr) = brute_metrics(&brute_ranking(&s, &ex), &t, k);
        prop_assert!((ndcg_at_k(&full, &targets, k) - ndcg).abs() < 1e-12);
        prop_assert!((recall_at_k(&full, &targets, k) - recall).abs() < 1e-12);
        prop_assert!((mrr_at_k(&full, &targets, k) - mrr).abs() < 1e-12);
    }

    #[test]
    fn single_target_ndcg_from_rank((s, _t, ex) in case(), k in 1usize..60) {
        let exclude: Vec<u32> = ex.iter().copied().collect();
        let full = top_k_by_scores(&s, s.len(), &exclude);
        for &target in &full {
            let rank = rank_of(&s, target, &exclude);
            let expected = if rank <= k { 1.0 / ((rank + 1) as f64).log2() } else { 0.0 };
            prop_assert!((ndcg_at_k(&full, &[target], k) - expected).abs() < 1e-12);
        }
    }

    #[test]
    fn ranking_invariants((s, t, ex) in case(), k in 0usize..60) {
        let exclude: Vec<u32> = ex.iter().copied().collect();
        let targets: Vec<u32> = t.iter().copied().collect();
        let list = top_k_by_scores(&s, s.len(), &exclude);
        let ndcg = ndcg_at_k(&list, &targets, k);
        let recall = recall_at_k(&list, &targets, k);
        let hit = hit_at_k(&list, &targets, k);
        let mrr = mrr_at_k(&list, &targets, k);
        prop_assert!((0.0..=1.0 + 1e-12).contains(&ndcg));
        prop_assert!(recall <= recall_at_k(&list, &targets, k + 1));
        prop_assert!(ndcg > 0.0 || recall == 0.0);
        prop_assert!(hit >= recall && hit >= mrr && mrr <= 1.0);
        let hits = list.iter().take(k).filter(|i| t.contains(i)).count();
        prop_assert!((precision_at_k(&list, &targets, k) * k as f64 - hits as f64).abs() < 1e-9);
    }

    #[test]
    fn fairness_and_diversity_invariants(
        genres in prop::collection::vec(prop::collection::vec(0u16..5, 0..4), 1..20),
        list in prop::collection::vec(0u32..25, 0..12),
        history in prop::collection::vec(0u32..25, 0..12),
    ) {
        let gp = genre_shares([list.as_slice()], &genres, 5);
        let gh = genre_shares([history.as_slice()], &genres, 5);
        for shares in [&gp, &gh] {
            let sum: f64 = shares.iter().sum();
            prop_assert!(sum == 0.0 || (sum - 1.0).abs() < 1e-9);
        }
        prop_assert_eq!(mgu(&gp, &gp), 0.0);
        prop_assert!(dgu(&gp, &gh) >= 0.0);
        if gp.iter().sum::<f64>() > 0.0 && gh.iter().sum::<f64>() > 0.0 {
            // Gaps sum to 0, so max >= 0 >= min and mean |gap| <= max - min.
            prop_assert!(mgu(&gp, &gh) <= dgu(&gp, &gh) + 1e-12);
        }
        let ild = ild_jaccard(&list, &genres);
        prop_assert!((0.0..=1.0).contains(&ild));
        let reversed: Vec<u32> = list.iter().rev().copied().collect();
        prop_assert!((ild_jaccard(&reversed, &genres) - ild).abs() < 1e-12);
    }
}
