//! Genre-calibration fairness: MGU and DGU (METHOD.md section 5). Lower is better; as a reward
//! use the negative, per list against that user's own history.

/// Genre share over the items of `lists`: `share_g = count_g / Σ_h count_h`, where `count_g` is
/// the number of item occurrences (across all lists, repeats included) whose genre set contains
/// `g`. An item with several genres adds 1 to each of them, so a multi-genre item weighs more
/// than a single-genre one.
///
/// Items with ids beyond `item_genres` count as genre-less; genre ids `>= n_genres` and repeated
/// genre ids within one item are ignored. Returns `n_genres` zeros when no counted genre occurs
/// (for instance on empty input).
///
/// `lists` is anything yielding item-id slices: `&[Vec<u32>]`, `[list]`, an iterator of `&[u32]`.
pub fn genre_shares<L: AsRef<[u32]>>(
    lists: impl IntoIterator<Item = L>,
    item_genres: &[Vec<u16>],
    n_genres: usize,
) -> Vec<f64> {
    let mut counts = vec![0u64; n_genres];
    for list in lists {
        for &item in list.as_ref() {
            let Some(genres) = item_genres.get(item as usize) else {
                continue;
            };
            for (j, &g) in genres.iter().enumerate() {
                if genres[..j].contains(&g) {
                    continue;
                }
                if let Some(c) = counts.get_mut(g as usize) {
                    *c += 1;
                }
            }
        }
    }
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return vec![0.0; n_genres];
    }
    counts.iter().map(|&c| c as f64 / total as f64).collect()
}

/// `gp[g] - gh[g]` over `max(len)` genres, a missing entry counting as 0.
fn gaps(gp: &[f64], gh: &[f64]) -> Vec<f64> {
    let n = gp.len().max(gh.len());
    (0..n)
        .map(|g| gp.get(g).copied().unwrap_or(0.0) - gh.get(g).copied().unwrap_or(0.0))
        .collect()
}

/// Mean genre unfairness: MGU = (1/G) Σ_g |GP_g - GH_g|, with GP the genre shares of the
/// recommendations and GH those of the histories (see [`genre_shares`]). 0.0 for empty input.
pub fn mgu(gp: &[f64], gh: &[f64]) -> f64 {
    let d = gaps(gp, gh);
    if d.is_empty() {
        return 0.0;
    }
    d.iter().map(|x| x.abs()).sum::<f64>() / d.len() as f64
}

/// Difference of genre unfairness: DGU = max_g (GP_g - GH_g) - min_g (GP_g - GH_g). Always
/// `>= 0`; 0.0 for empty input.
pub fn dgu(gp: &[f64], gh: &[f64]) -> f64 {
    let d = gaps(gp, gh);
    if d.is_empty() {
        return 0.0;
    }
    let max = d.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = d.iter().copied().fold(f64::INFINITY, f64::min);
    max - min
}

/// MGU of one list against one user's history: GP from `list`, GH from `history`.
pub fn list_mgu(list: &[u32], history: &[u32], item_genres: &[Vec<u16>], n_genres: usize) -> f64 {
    let gp = genre_shares([list], item_genres, n_genres);
    let gh = genre_shares([history], item_genres, n_genres);
    mgu(&gp, &gh)
}

/// DGU of one list against one user's history: GP from `list`, GH from `history`.
pub fn list_dgu(list: &[u32], history: &[u32], item_genres: &[Vec<u16>], n_genres: usize) -> f64 {
    let gp = genre_shares([list], item_genres, n_genres);
    let gh = genre_shares([history], item_genres, n_genres);
    dgu(&gp, &gh)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// Items: 0 -> {0}, 1 -> {1}, 2 -> {0, 1}, 3 -> {2}, 4 -> {}.
    fn genres() -> Vec<Vec<u16>> {
        vec![vec![0], vec![1], vec![0, 1], vec![2], vec![]]
    }

    #[test]
    fn shares_count_each_genre_per_occurrence() {
        let g = genres();
        // Counts: genre 0 -> 2 (items 0, 2), genre 1 -> 1, genre 2 -> 1.
        let s = genre_shares([[0u32, 2, 3, 4].as_slice()], &g, 3);
        assert_eq!(s, vec![0.5, 0.25, 0.25]);
        // Repeated occurrences count again; lists are pooled.
        let s = genre_shares(&[vec![0u32], vec![0, 1]], &g, 3);
        assert!(close(s[0], 2.0 / 3.0) && close(s[1], 1.0 / 3.0) && s[2] == 0.0);
    }

    #[test]
    fn shares_ignore_unknowns_and_handle_empty() {
        let g = vec![vec![0u16, 0, 7]];
        assert_eq!(genre_shares([[0u32, 9].as_slice()], &g, 2), vec![1.0, 0.0]);
        assert_eq!(genre_shares(Vec::<Vec<u32>>::new(), &g, 2), vec![0.0, 0.0]);
        assert_eq!(
            genre_shares([[4u32].as_slice()], &genres(), 3),
            vec![0.0; 3]
        );
    }

    #[test]
    fn mgu_and_dgu_closed_form() {
        let gp = [0.5, 0.5, 0.0];
        let gh = [0.25, 0.25, 0.5];
        // gaps: +0.25, +0.25, -0.5
        assert!(close(mgu(&gp, &gh), 1.0 / 3.0));
        assert!(close(dgu(&gp, &gh), 0.75));
        assert_eq!(mgu(&gp, &gp), 0.0);
        assert_eq!(dgu(&gp, &gp), 0.0);
        assert_eq!(mgu(&[], &[]), 0.0);
        assert_eq!(dgu(&[], &[]), 0.0);
    }

    #[test]
    fn per_list_versions() {
        let g = genres();
        // GP from [0, 1] = (0.5, 0.5, 0), GH from [3] = (0, 0, 1).
        assert!(close(list_mgu(&[0, 1], &[3], &g, 3), 2.0 / 3.0));
        assert!(close(list_dgu(&[0, 1], &[3], &g, 3), 1.5));
        // Calibrated list: same genre mix as the history.
        assert_eq!(list_mgu(&[2], &[0, 1], &g, 3), 0.0);
        assert_eq!(list_dgu(&[], &[], &g, 3), 0.0);
    }
}
