//! Dataset statistics and the Gini coefficient on hand-made cases with closed-form answers.

use blade_data::stats::{gini, DatasetStats};
use blade_data::{Catalog, Dataset, Item, PreprocessConfig};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn gini_known_cases() {
    assert!(close(gini(&[5, 5, 5, 5]), 0.0));
    assert!(close(gini(&[0, 0, 0, 1]), 0.75));
    // sorted [1,2,3,4]: (-3*1 - 1*2 + 1*3 + 3*4) / (4 * 10) = 10 / 40.
    assert!(close(gini(&[4, 1, 3, 2]), 0.25));
    assert!(close(gini(&[]), 0.0));
    assert!(close(gini(&[0, 0]), 0.0));
}

/// Gini against the mean-absolute-difference definition `sum_ij |x_i - x_j| / (2 n^2 mean)`.
#[test]
fn gini_matches_pairwise_definition() {
    let counts = [7u32, 0, 3, 3, 12, 1, 9, 4];
    let n = counts.len() as f64;
    let mean = counts.iter().map(|&c| f64::from(c)).sum::<f64>() / n;
    let pairs: f64 = counts
        .iter()
        .flat_map(|&a| {
            counts
                .iter()
                .map(move |&b| (f64::from(a) - f64::from(b)).abs())
        })
        .sum();
    assert!(close(gini(&counts), pairs / (2.0 * n * n * mean)));
}

fn hand() -> Dataset {
    let item = |i: usize, genres: Vec<u16>| Item {
        raw_id: i.to_string(),
        title: format!("Item {i}"),
        genres,
    };
    Dataset {
        name: "hand".into(),
        catalog: Catalog {
            items: vec![
                item(0, vec![0]),
                item(1, vec![0, 1]),
                item(2, vec![1]),
                item(3, vec![]),
            ],
            genre_names: vec!["A".into(), "B".into()],
        },
        user_raw_ids: vec!["x".into(), "y".into(), "z".into()],
        sequences: vec![vec![0, 1, 2], vec![1, 2], vec![2, 3, 0, 1]],
        preprocess: PreprocessConfig::default(),
    }
}

#[test]
fn stats_exact() {
    let s = DatasetStats::compute(&hand());
    assert_eq!(s.name, "hand");
    assert_eq!((s.users, s.items, s.interactions), (3, 4, 9));
    assert!(close(s.density, 0.75));
    assert_eq!((s.history_min, s.history_max), (2, 4));
    assert!(close(s.history_mean, 3.0));
    assert!(close(s.history_median, 3.0));
    // Item counts 2, 3, 3, 1; A = items 0, 1 -> 5; B = items 1, 2 -> 6.
    assert_eq!(s.genre_shares.len(), 2);
    assert_eq!(s.genre_shares[0].0, "A");
    assert!(close(s.genre_shares[0].1, 5.0 / 11.0));
    assert_eq!(s.genre_shares[1].0, "B");
    assert!(close(s.genre_shares[1].1, 6.0 / 11.0));
    // Sorted [1,2,3,3]: (-3 - 2 + 3 + 9) / (4 * 9) = 7 / 36.
    assert!(close(s.popularity_gini, 7.0 / 36.0));

    let text = s.to_string();
    assert!(text.contains("interactions     9"), "{text}");
    assert!(text.contains("median 3.0"), "{text}");
    // Genres listed by share, largest first.
    let (a, b) = (text.find("  A "), text.find("  B "));
    assert!(b < a && b.is_some(), "{text}");

    let json = serde_json::to_string(&s).expect("json");
    let back: DatasetStats = serde_json::from_str(&json).expect("back");
    // serde_json parses floats to within an ulp, not always bit-exactly.
    assert_eq!((back.users, back.items, back.interactions), (3, 4, 9));
    assert!((back.genre_shares[0].1 - s.genre_shares[0].1).abs() < 1e-15);
    assert!((back.popularity_gini - s.popularity_gini).abs() < 1e-15);
}

#[test]
fn even_median_and_empty_dataset() {
    let mut ds = hand();
    ds.sequences.push(vec![3, 2, 1, 0]);
    ds.user_raw_ids.push("w".into());
    let s = DatasetStats::compute(&ds);
    // Lengths 2, 3, 4, 4.
    assert!(close(s.history_median, 3.5));

    let empty = Dataset {
        catalog: Catalog::default(),
        user_raw_ids: vec![],
        sequences: vec![],
        ..hand()
    };
    let s = DatasetStats::compute(&empty);
    assert_eq!(
        (s.users, s.items, s.interactions, s.history_min),
        (0, 0, 0, 0)
    );
    assert!(close(s.density, 0.0) && close(s.popularity_gini, 0.0));
    assert!(s.to_string().contains("(none)"));
}
