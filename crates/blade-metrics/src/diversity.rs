//! Intra-list diversity (ILD): mean pairwise distance between a list's items
//! (METHOD.md section 5).

/// Sorted, deduplicated genre set of `item`; empty for unknown ids.
fn genre_set(item: u32, item_genres: &[Vec<u16>]) -> Vec<u16> {
    let mut set = item_genres.get(item as usize).cloned().unwrap_or_default();
    set.sort_unstable();
    set.dedup();
    set
}

/// Jaccard distance `1 - |A ∩ B| / |A ∪ B|` of two sorted, deduplicated sets; 0.0 when both
/// are empty (two genre-less items are not evidence of diversity).
fn jaccard_distance(a: &[u16], b: &[u16]) -> f64 {
    let common = a.iter().filter(|g| b.binary_search(g).is_ok()).count();
    let union = a.len() + b.len() - common;
    if union == 0 {
        return 0.0;
    }
    1.0 - common as f64 / union as f64
}

/// Mean of `dist(i, j)` over unordered pairs `i < j` of `n` items; 0.0 when `n < 2`.
fn mean_pairwise(n: usize, dist: impl Fn(usize, usize) -> f64) -> f64 {
    if n < 2 {
        return 0.0;
    }
    let mut sum = 0.0;
    for i in 0..n {
        for j in i + 1..n {
            sum += dist(i, j);
        }
    }
    sum / (n * (n - 1) / 2) as f64
}

/// ILD with genre sets: `(2 / (n (n - 1))) Σ_{i<j} (1 - Jaccard(G_i, G_j))`.
///
/// Two items whose genre sets are both empty (or unknown ids) have distance 0; an empty set
/// against a non-empty one has distance 1. Repeated genres are ignored. Lists with fewer than
/// two items give 0.0. The result lies in `[0, 1]`.
pub fn ild_jaccard(list: &[u32], item_genres: &[Vec<u16>]) -> f64 {
    let sets: Vec<Vec<u16>> = list.iter().map(|&i| genre_set(i, item_genres)).collect();
    mean_pairwise(sets.len(), |i, j| jaccard_distance(&sets[i], &sets[j]))
}

/// ILD with item embeddings: `(2 / (n (n - 1))) Σ_{i<j} (1 - cos(e_i, e_j))`.
///
/// A pair in which either vector is zero (or the id has no embedding) has distance 1. Vectors
/// of different lengths are compared over their common prefix. Lists with fewer than two items
/// give 0.0. The result lies in `[0, 2]`.
pub fn ild_cosine(list: &[u32], embeddings: &[Vec<f32>]) -> f64 {
    let empty: &[f32] = &[];
    let vecs: Vec<&[f32]> = list
        .iter()
        .map(|&i| embeddings.get(i as usize).map_or(empty, Vec::as_slice))
        .collect();
    let norms: Vec<f64> = vecs
        .iter()
        .map(|v| {
            v.iter()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    mean_pairwise(vecs.len(), |i, j| {
        if norms[i] == 0.0 || norms[j] == 0.0 {
            return 1.0;
        }
        let dot: f64 = vecs[i]
            .iter()
            .zip(vecs[j])
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum();
        1.0 - dot / (norms[i] * norms[j])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn jaccard_closed_form() {
        // 0 -> {0, 1}, 1 -> {1, 2}, 2 -> {3}, 3 -> {}, 4 -> {}.
        let g: Vec<Vec<u16>> = vec![vec![0, 1], vec![1, 2, 2], vec![3], vec![], vec![]];
        // d(0,1) = 1 - 1/3; d(0,2) = 1; d(1,2) = 1.
        assert!(close(
            ild_jaccard(&[0, 1, 2], &g),
            (2.0 / 3.0 + 1.0 + 1.0) / 3.0
        ));
        assert!(close(ild_jaccard(&[0, 1], &g), 2.0 / 3.0));
        assert_eq!(ild_jaccard(&[3, 4], &g), 0.0);
        assert_eq!(ild_jaccard(&[0, 3], &g), 1.0);
        assert_eq!(ild_jaccard(&[0, 0], &g), 0.0);
        assert_eq!(ild_jaccard(&[0], &g), 0.0);
        assert_eq!(ild_jaccard(&[], &g), 0.0);
    }

    #[test]
    fn cosine_closed_form() {
        let e = vec![
            vec![1.0, 0.0],
            vec![0.0, 2.0],
            vec![-3.0, 0.0],
            vec![0.0, 0.0],
        ];
        assert!(close(ild_cosine(&[0, 1], &e), 1.0));
        assert!(close(ild_cosine(&[0, 2], &e), 2.0));
        assert!(close(ild_cosine(&[0, 0], &e), 0.0));
        // d(0,1) = 1, d(0,2) = 2, d(1,2) = 1.
        assert!(close(ild_cosine(&[0, 1, 2], &e), 4.0 / 3.0));
        assert_eq!(ild_cosine(&[3, 3], &e), 1.0);
        assert_eq!(ild_cosine(&[0, 9], &e), 1.0);
        assert_eq!(ild_cosine(&[1], &e), 0.0);
    }
}
