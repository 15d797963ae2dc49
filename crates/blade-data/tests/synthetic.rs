//! The synthetic dataset: determinism, survival of preprocessing, and a sequential signal that
//! beats popularity.

use std::collections::HashMap;

use blade_data::synthetic::{generate, SyntheticConfig};
use blade_data::{Dataset, PreprocessConfig};

#[test]
fn same_seed_same_data_other_seed_other_data() {
    let cfg = SyntheticConfig::tiny();
    let a = generate(&cfg);
    let b = generate(&cfg);
    assert_eq!(a, b);
    let c = generate(&SyntheticConfig {
        seed: cfg.seed + 1,
        ..cfg.clone()
    });
    assert_ne!(a.interactions, c.interactions);
}

#[test]
fn shape_of_the_raw_data() {
    let cfg = SyntheticConfig::tiny();
    let raw = generate(&cfg);
    assert_eq!(raw.name, "synthetic");
    assert_eq!(raw.items.len(), cfg.items);
    let mut per_user: HashMap<&str, Vec<i64>> = HashMap::new();
    for x in &raw.interactions {
        per_user.entry(&x.user).or_default().push(x.timestamp);
        assert!(raw.items.contains_key(&x.item));
        assert_eq!(x.rating, None);
    }
    assert_eq!(per_user.len(), cfg.users);
    for times in per_user.values() {
        assert!(times.len() >= 5);
        assert!(times.windows(2).all(|w| w[0] < w[1]), "timestamps increase");
    }
    for (id, item) in &raw.items {
        assert!(
            (1..=3).contains(&item.genres.len()),
            "{id}: {:?}",
            item.genres
        );
        assert!(item.title.starts_with("Item "));
        assert!(item
            .title
            .ends_with(&format!("({})", item.genres.join("/"))));
        assert!(item.genres.iter().all(|g| g.starts_with("Genre")));
    }
    assert_eq!(raw.items["i17"].title.split(' ').nth(1), Some("17"));
}

#[test]
fn default_survives_five_core() {
    let raw = generate(&SyntheticConfig::default());
    let ds = Dataset::from_raw(&raw, &PreprocessConfig::default()).expect("5-core survives");
    assert!(ds.num_users() > 500, "{} users", ds.num_users());
    assert!(ds.num_items() > 300, "{} items", ds.num_items());
    assert!(ds.sequences.iter().filter(|s| s.len() >= 3).count() > 500);
    assert!(ds.sequences.iter().all(|s| s.len() >= 5));
    assert_eq!(ds.catalog.genre_names.len(), 12);
    let split = ds.leave_one_out(10);
    assert_eq!(split.test.len(), ds.num_users());
}

/// Hit@10 on the test cases of two history-blind/aware baselines: the most popular unseen
/// items, and the most frequent training successors of the last history item (filled up with
/// popularity). The second must win clearly, or a sequential model would have nothing to learn.
#[test]
fn next_item_is_predictable_beyond_popularity() {
    let raw = generate(&SyntheticConfig::default());
    let ds = Dataset::from_raw(&raw, &PreprocessConfig::default()).expect("valid");
    let split = ds.leave_one_out(10);
    let mut by_pop: Vec<u32> = (0..ds.num_items() as u32).collect();
    by_pop.sort_by_key(|&i| (std::cmp::Reverse(split.item_popularity[i as usize]), i));
    let mut successors: HashMap<u32, HashMap<u32, u32>> = HashMap::new();
    for p in &split.train {
        if let Some(&last) = p.history.last() {
            *successors
                .entry(last)
                .or_default()
                .entry(p.target)
                .or_default() += 1;
        }
    }
    let (mut pop_hits, mut seq_hits) = (0usize, 0usize);
    for case in &split.test {
        let unseen = |i: &u32| case.seen.binary_search(i).is_err();
        let pop: Vec<u32> = by_pop.iter().copied().filter(unseen).take(10).collect();
        pop_hits += usize::from(pop.contains(&case.target));

        let mut next: Vec<(u32, u32)> = case
            .history
            .last()
            .and_then(|l| successors.get(l))
            .map(|m| m.iter().map(|(&i, &c)| (i, c)).collect())
            .unwrap_or_default();
        next.sort_by_key(|&(i, c)| (std::cmp::Reverse(c), i));
        let mut list: Vec<u32> = next
            .into_iter()
            .map(|(i, _)| i)
            .filter(unseen)
            .take(10)
            .collect();
        for i in by_pop.iter().copied().filter(unseen) {
            if list.len() == 10 {
                break;
            }
            if !list.contains(&i) {
                list.push(i);
            }
        }
        seq_hits += usize::from(list.contains(&case.target));
    }
    let n = split.test.len() as f64;
    let (pop, seq) = (pop_hits as f64 / n, seq_hits as f64 / n);
    eprintln!("hit@10 popularity {pop:.3}, successor counts {seq:.3}");
    assert!(
        seq > 1.5 * pop && seq > 0.2,
        "popularity {pop:.3}, successors {seq:.3}"
    );
}

#[test]
fn config_json_defaults() {
    let cfg: SyntheticConfig = serde_json::from_str(r#"{"users": 50, "seed": 3}"#).expect("json");
    assert_eq!(cfg.users, 50);
    assert_eq!(cfg.seed, 3);
    assert_eq!(cfg.items, SyntheticConfig::default().items);
    let back: SyntheticConfig =
        serde_json::from_str(&serde_json::to_string(&cfg).expect("ser")).expect("de");
    assert_eq!(back, cfg);
}
