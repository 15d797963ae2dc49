//! Per-list accuracy metrics against held-out targets, and full-ranking helpers.
//!
//! Every metric takes `list` (item ids, best first), `targets` (the held-out item ids) and a
//! cut-off `k`; only the first `k` entries of `list` count. `targets` is treated as a set
//! (duplicates are ignored), and a target that appears several times in the list is credited
//! once, at its first position. Empty `targets` or `k == 0` give 0.0 (METHOD.md section 5).

use std::cmp::Ordering;

/// 1-based ranks, within the first `k` entries of `list`, at which distinct targets first
/// appear, and the number of distinct targets.
fn hit_ranks(list: &[u32], targets: &[u32], k: usize) -> (Vec<usize>, usize) {
    let mut wanted = targets.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    let mut found = vec![false; wanted.len()];
    let mut ranks = Vec::new();
    for (pos, item) in list.iter().take(k).enumerate() {
        if let Ok(t) = wanted.binary_search(item) {
            if !found[t] {
                found[t] = true;
                ranks.push(pos + 1);
            }
        }
    }
    (ranks, wanted.len())
}

/// Discount of a hit at 1-based `rank`: `1 / log2(rank + 1)`.
fn discount(rank: usize) -> f64 {
    1.0 / ((rank + 1) as f64).log2()
}

/// Recall@k = |top-k ∩ targets| / |targets|; 0.0 when `targets` is empty.
pub fn recall_at_k(list: &[u32], targets: &[u32], k: usize) -> f64 {
    let (ranks, n_targets) = hit_ranks(list, targets, k);
    if n_targets == 0 {
        return 0.0;
    }
    ranks.len() as f64 / n_targets as f64
}

/// Hit@k = 1.0 if any target is in the top k, else 0.0.
pub fn hit_at_k(list: &[u32], targets: &[u32], k: usize) -> f64 {
    let (ranks, _) = hit_ranks(list, targets, k);
    if ranks.is_empty() {
        0.0
    } else {
        1.0
    }
}

/// Precision@k = |top-k ∩ targets| / k; 0.0 when `k == 0`.
///
/// The denominator is `k` even when the list is shorter than `k` (a short list is penalised).
pub fn precision_at_k(list: &[u32], targets: &[u32], k: usize) -> f64 {
    if k == 0 {
        return 0.0;
    }
    let (ranks, _) = hit_ranks(list, targets, k);
    ranks.len() as f64 / k as f64
}

/// NDCG@k with binary gains: DCG / IDCG, where DCG = Σ over hits of `1 / log2(rank + 1)`
/// (rank 1-based, within the top k) and IDCG is the same sum over ranks
/// `1..=min(|targets|, k)`. 0.0 when `targets` is empty or `k == 0`. Lies in `[0, 1]`.
pub fn ndcg_at_k(list: &[u32], targets: &[u32], k: usize) -> f64 {
    let (ranks, n_targets) = hit_ranks(list, targets, k);
    let ideal = n_targets.min(k);
    if ideal == 0 {
        return 0.0;
    }
    let dcg: f64 = ranks.iter().map(|&r| discount(r)).sum();
    let idcg: f64 = (1..=ideal).map(discount).sum();
    dcg / idcg
}

/// MRR@k = 1 / rank of the first target within the top k (rank 1-based), else 0.0.
pub fn mrr_at_k(list: &[u32], targets: &[u32], k: usize) -> f64 {
    let (ranks, _) = hit_ranks(list, targets, k);
    ranks.first().map_or(0.0, |&r| 1.0 / r as f64)
}

/// Ranking order on `(score, item id)`: higher score first, then lower id. Callers filter NaN
/// scores out, so `partial_cmp` is total here.
fn ranking_order(a: &(f32, u32), b: &(f32, u32)) -> Ordering {
    b.0.partial_cmp(&a.0)
        .unwrap_or(Ordering::Equal)
        .then(a.1.cmp(&b.1))
}

/// `mask[i]` is true when item `i` is in `exclude`; ids beyond `n` are ignored.
fn exclusion_mask(n: usize, exclude: &[u32]) -> Vec<bool> {
    let mut mask = vec![false; n];
    for &e in exclude {
        if let Some(slot) = mask.get_mut(e as usize) {
            *slot = true;
        }
    }
    mask
}

/// The `k` best item ids by score (item id = index into `scores`), best first.
///
/// Order is (score desc, item id asc); ids in `exclude` (e.g. the user's history) and items with
/// a NaN score are skipped. Returns fewer than `k` ids when fewer items remain. Runs in
/// O(n + k log k): for a short list (k <= 32) one pass keeps the best k seen so far in a sorted
/// buffer (most items fail the first comparison with the buffer's worst), else a partial
/// selection over all candidates.
pub fn top_k_by_scores(scores: &[f32], k: usize, exclude: &[u32]) -> Vec<u32> {
    if k == 0 || scores.is_empty() {
        return Vec::new();
    }
    let excluded = exclusion_mask(scores.len(), exclude);
    if k <= 32 {
        let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
        for (id, &s) in (0..=u32::MAX).zip(scores) {
            if s.is_nan() || excluded[id as usize] {
                continue;
            }
            // ids arrive in increasing order, so a tie with the worst kept item never beats it
            if best.len() == k && best.last().is_some_and(|w| s <= w.0) {
                continue;
            }
            let c = (s, id);
            let at = best.partition_point(|x| ranking_order(x, &c) == Ordering::Less);
            best.insert(at, c);
            best.truncate(k);
        }
        return best.into_iter().map(|(_, id)| id).collect();
    }
    let mut candidates: Vec<(f32, u32)> = (0..=u32::MAX)
        .zip(scores)
        .filter(|&(id, s)| !s.is_nan() && !excluded[id as usize])
        .map(|(id, &s)| (s, id))
        .collect();
    if candidates.len() > k {
        candidates.select_nth_unstable_by(k - 1, ranking_order);
        candidates.truncate(k);
    }
    candidates.sort_unstable_by(ranking_order);
    candidates.into_iter().map(|(_, id)| id).collect()
}

/// 1-based rank of `target` among all items by score, under the same order as
/// [`top_k_by_scores`] (score desc, item id asc).
///
/// Items in `exclude` and items with NaN scores are not counted as competitors; `target` itself
/// is always ranked, even if listed in `exclude`. A target with a NaN score or an id beyond
/// `scores` is ranked after every counted item. Runs in O(n).
pub fn rank_of(scores: &[f32], target: u32, exclude: &[u32]) -> usize {
    let target_score = scores.get(target as usize).copied().filter(|s| !s.is_nan());
    let excluded = exclusion_mask(scores.len(), exclude);
    let mut rank = 1;
    for (id, &s) in (0..=u32::MAX).zip(scores) {
        if id == target || s.is_nan() || excluded[id as usize] {
            continue;
        }
        let ahead = match target_score {
            Some(t) => ranking_order(&(s, id), &(t, target)) == Ordering::Less,
            None => true,
        };
        if ahead {
            rank += 1;
        }
    }
    rank
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn single_target_at_rank_three() {
        let list = [7, 8, 9, 10];
        assert!(close(ndcg_at_k(&list, &[9], 5), 0.5)); // 1/log2(4)
        assert!(close(mrr_at_k(&list, &[9], 5), 1.0 / 3.0));
        assert!(close(recall_at_k(&list, &[9], 5), 1.0));
        assert!(close(hit_at_k(&list, &[9], 5), 1.0));
        assert!(close(precision_at_k(&list, &[9], 5), 0.2));
    }

    #[test]
    fn k_truncation_drops_late_hits() {
        let list = [7, 8, 9, 10];
        assert_eq!(ndcg_at_k(&list, &[9], 2), 0.0);
        assert_eq!(mrr_at_k(&list, &[9], 2), 0.0);
        assert_eq!(recall_at_k(&list, &[9], 2), 0.0);
        assert_eq!(hit_at_k(&list, &[9], 2), 0.0);
        assert_eq!(precision_at_k(&list, &[9], 2), 0.0);
    }

    #[test]
    fn two_targets() {
        // Hits at ranks 1 and 3; IDCG over ranks 1 and 2.
        let list = [1, 2, 3, 4];
        let targets = [3, 1];
        let dcg = 1.0 + 0.5;
        let idcg = 1.0 + 1.0 / 3f64.log2();
        assert!(close(ndcg_at_k(&list, &targets, 4), dcg / idcg));
        assert!(close(recall_at_k(&list, &targets, 4), 1.0));
        assert!(close(recall_at_k(&list, &targets, 2), 0.5));
        assert!(close(precision_at_k(&list, &targets, 4), 0.5));
        assert!(close(mrr_at_k(&list, &targets, 4), 1.0));
        // k = 1: IDCG over min(2, 1) = 1 position, hit at rank 1 -> perfect.
        assert!(close(ndcg_at_k(&list, &targets, 1), 1.0));
    }

    #[test]
    fn duplicates_are_credited_once() {
        assert!(close(recall_at_k(&[5, 5, 6], &[5, 5], 3), 1.0));
        assert!(close(precision_at_k(&[5, 5, 6], &[5], 3), 1.0 / 3.0));
        assert!(close(ndcg_at_k(&[5, 5], &[5], 2), 1.0));
    }

    #[test]
    fn empty_inputs_give_zero() {
        for f in [recall_at_k, hit_at_k, precision_at_k, ndcg_at_k, mrr_at_k] {
            assert_eq!(f(&[], &[1], 5), 0.0);
            assert_eq!(f(&[1, 2], &[], 5), 0.0);
            assert_eq!(f(&[1, 2], &[1], 0), 0.0);
        }
        assert!(top_k_by_scores(&[], 3, &[]).is_empty());
        assert!(top_k_by_scores(&[1.0], 0, &[]).is_empty());
        assert_eq!(rank_of(&[], 0, &[]), 1);
    }

    #[test]
    fn top_k_breaks_ties_by_id() {
        let scores = [0.5, 0.9, 0.5, 0.9, 0.1];
        assert_eq!(top_k_by_scores(&scores, 3, &[]), vec![1, 3, 0]);
        assert_eq!(top_k_by_scores(&scores, 10, &[]), vec![1, 3, 0, 2, 4]);
        assert_eq!(rank_of(&scores, 2, &[]), 4);
        assert_eq!(rank_of(&scores, 3, &[]), 2);
    }

    #[test]
    fn top_k_skips_excluded_and_nan() {
        let scores = [0.5, f32::NAN, 0.7, 0.9, 0.1];
        assert_eq!(top_k_by_scores(&scores, 3, &[3, 99]), vec![2, 0, 4]);
        assert_eq!(rank_of(&scores, 0, &[3]), 2);
        // The target itself is ranked even when excluded.
        assert_eq!(rank_of(&scores, 3, &[3]), 1);
        // NaN or unknown target: after all 4 counted items.
        assert_eq!(rank_of(&scores, 1, &[]), 5);
        assert_eq!(rank_of(&scores, 42, &[]), 5);
    }

    #[test]
    fn top_k_is_fast_enough_on_a_catalogue() {
        let scores: Vec<f32> = (0..2000u32).map(|i| ((i * 7919) % 2000) as f32).collect();
        let top = top_k_by_scores(&scores, 10, &[]);
        assert_eq!(top.len(), 10);
        assert_eq!(scores[top[0] as usize], 1999.0);
        assert_eq!(rank_of(&scores, top[9], &[]), 10);
    }
}
