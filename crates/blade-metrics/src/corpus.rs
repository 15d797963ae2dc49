//! Corpus-level diversity over all users' lists: DivRatio, ORRatio, coverage and tail share
//! (METHOD.md section 5). Each list is one user's recommendations; `lists` may be any slice of
//! item-id sequences (`&[Vec<u32>]`, `&[&[u32]]`).

use std::collections::{HashMap, HashSet};

/// Distinct item ids over all lists.
fn distinct<L: AsRef<[u32]>>(lists: &[L]) -> HashSet<u32> {
    lists
        .iter()
        .flat_map(|l| l.as_ref().iter().copied())
        .collect()
}

/// DivRatio = distinct recommended items / (users · k), counting only the first `k` entries of
/// each list; `users = lists.len()`. 0.0 when there are no users or `k == 0`.
pub fn div_ratio<L: AsRef<[u32]>>(lists: &[L], k: usize) -> f64 {
    let denom = lists.len().saturating_mul(k);
    if denom == 0 {
        return 0.0;
    }
    let items: HashSet<u32> = lists
        .iter()
        .flat_map(|l| l.as_ref().iter().take(k).copied())
        .collect();
    items.len() as f64 / denom as f64
}

/// ORRatio = share of all recommendations (list entries, repeats included) taken by the `top`
/// most recommended items (the paper uses `top = 3`). 0.0 when there are no recommendations.
pub fn or_ratio<L: AsRef<[u32]>>(lists: &[L], top: usize) -> f64 {
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for &item in lists.iter().flat_map(|l| l.as_ref()) {
        *counts.entry(item).or_default() += 1;
    }
    let total: usize = counts.values().sum();
    if total == 0 {
        return 0.0;
    }
    let mut sorted: Vec<usize> = counts.into_values().collect();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.iter().take(top).sum::<usize>() as f64 / total as f64
}

/// Coverage = distinct recommended item ids in `0..n_items` / `n_items`; 0.0 when
/// `n_items == 0`. Ids outside the catalogue are not counted.
pub fn coverage<L: AsRef<[u32]>>(lists: &[L], n_items: usize) -> f64 {
    if n_items == 0 {
        return 0.0;
    }
    let covered = distinct(lists)
        .into_iter()
        .filter(|&i| (i as usize) < n_items)
        .count();
    covered as f64 / n_items as f64
}

/// The popular head: `mask[i]` is true for the `ceil(0.2 · n)` item ids with the highest
/// `popularity` (n = `popularity.len()`), ties broken by item id ascending.
pub fn head_mask(popularity: &[u32]) -> Vec<bool> {
    let n = popularity.len();
    let head = n.div_ceil(5);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_unstable_by(|&a, &b| popularity[b].cmp(&popularity[a]).then(a.cmp(&b)));
    let mut mask = vec![false; n];
    for &i in order.iter().take(head) {
        mask[i] = true;
    }
    mask
}

/// Tail share = share of recommendations (list entries, repeats included) going to items
/// outside the popular head of [`head_mask`] (the top 20% of ids by `popularity`). Ids beyond
/// `popularity` count as tail. 0.0 when there are no recommendations.
pub fn tail_share<L: AsRef<[u32]>>(lists: &[L], popularity: &[u32]) -> f64 {
    let head = head_mask(popularity);
    let mut total = 0usize;
    let mut tail = 0usize;
    for &item in lists.iter().flat_map(|l| l.as_ref()) {
        total += 1;
        if !head.get(item as usize).copied().unwrap_or(false) {
            tail += 1;
        }
    }
    if total == 0 {
        return 0.0;
    }
    tail as f64 / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    fn lists() -> Vec<Vec<u32>> {
        vec![vec![0, 1, 2], vec![0, 1, 3], vec![0, 4, 5]]
    }

    #[test]
    fn div_ratio_closed_form() {
        let l = lists();
        assert!(close(div_ratio(&l, 3), 6.0 / 9.0));
        // First 2 entries: {0, 1, 4}.
        assert!(close(div_ratio(&l, 2), 3.0 / 6.0));
        assert_eq!(div_ratio(&l, 0), 0.0);
        assert_eq!(div_ratio::<Vec<u32>>(&[], 3), 0.0);
    }

    #[test]
    fn or_ratio_closed_form() {
        let l = lists();
        // Counts: 0 -> 3, 1 -> 2, then 1 each; top 3 take 3 + 2 + 1 of 9.
        assert!(close(or_ratio(&l, 3), 6.0 / 9.0));
        assert!(close(or_ratio(&l, 1), 3.0 / 9.0));
        assert_eq!(or_ratio(&l, 100), 1.0);
        assert_eq!(or_ratio::<Vec<u32>>(&[vec![]], 3), 0.0);
    }

    #[test]
    fn coverage_closed_form() {
        let l = lists();
        assert!(close(coverage(&l, 10), 0.6));
        assert!(close(coverage(&l, 4), 1.0)); // ids 4, 5 are outside the catalogue
        assert_eq!(coverage(&l, 0), 0.0);
    }

    #[test]
    fn head_is_top_fifth_with_id_ties() {
        // n = 6 -> ceil(1.2) = 2 head items; items 1, 3, 4 tie at 5 -> 1 and 3 win.
        let pop = [1, 5, 0, 5, 5, 2];
        assert_eq!(
            head_mask(&pop),
            vec![false, true, false, true, false, false]
        );
        assert!(head_mask(&[]).is_empty());
        assert_eq!(head_mask(&[0]), vec![true]);
    }

    #[test]
    fn tail_share_closed_form() {
        let pop = [1, 5, 0, 5, 5, 2];
        let l = vec![vec![1u32, 3, 4], vec![0, 1, 9]];
        // Head {1, 3}: entries 1, 3, 1 are head; 4, 0, 9 are tail.
        assert!(close(tail_share(&l, &pop), 0.5));
        assert_eq!(tail_share::<Vec<u32>>(&[], &pop), 0.0);
        assert_eq!(tail_share(&l, &[]), 1.0);
    }
}
