//! Preprocessing (rating threshold, duplicates, k-core, time order, re-indexing), the
//! leave-one-out split with sliding windows, and save/load, on hand-made data.

use blade_data::{
    Catalog, DataError, Dataset, EvalCase, Item, PreprocessConfig, RawDataset, RawInteraction,
    RawItem, TrainPrompt,
};

fn inter(user: &str, item: &str, timestamp: i64, rating: Option<f32>) -> RawInteraction {
    RawInteraction {
        user: user.into(),
        item: item.into(),
        timestamp,
        rating,
    }
}

fn raw(interactions: Vec<RawInteraction>) -> RawDataset {
    RawDataset {
        name: "hand".into(),
        interactions,
        ..RawDataset::default()
    }
}

fn cfg(min_rating: Option<f32>, k_core: usize) -> PreprocessConfig {
    PreprocessConfig { min_rating, k_core }
}

fn raw_ids(ds: &Dataset) -> Vec<Vec<&str>> {
    ds.sequences
        .iter()
        .map(|s| {
            s.iter()
                .map(|&i| ds.catalog.items[i as usize].raw_id.as_str())
                .collect()
        })
        .collect()
}

#[test]
fn k_core_needs_a_second_round() {
    // k = 2. Round 1 drops only (C, c): item c has 1 interaction, C still has 2.
    // Round 2 drops (C, a): C is now down to 1. Items a and b keep 2 each (A, B).
    let r = raw(vec![
        inter("A", "a", 1, None),
        inter("A", "b", 2, None),
        inter("B", "a", 3, None),
        inter("B", "b", 4, None),
        inter("C", "a", 5, None),
        inter("C", "c", 6, None),
    ]);
    let ds = Dataset::from_raw(&r, &cfg(None, 2)).expect("A and B survive");
    assert_eq!(ds.user_raw_ids, vec!["A", "B"]);
    assert_eq!(raw_ids(&ds), vec![vec!["a", "b"], vec!["a", "b"]]);
    assert_eq!(ds.num_users(), 2);
    assert_eq!(ds.num_items(), 2);
    assert_eq!(ds.num_interactions(), 4);

    // A single round would have kept C with its item a.
    let none = Dataset::from_raw(&r, &cfg(None, 0)).expect("no filter");
    assert_eq!(none.num_users(), 3);
    assert_eq!(none.num_items(), 3);
}

#[test]
fn k_core_cascade_can_empty_the_dataset() {
    // A chain where every removal starves the next user: nothing is 2-core.
    let r = raw(vec![
        inter("A", "a", 1, None),
        inter("A", "b", 2, None),
        inter("B", "b", 3, None),
        inter("B", "c", 4, None),
        inter("C", "c", 5, None),
        inter("C", "d", 6, None),
    ]);
    let err = Dataset::from_raw(&r, &cfg(None, 2)).expect_err("nothing is 2-core");
    let msg = err.to_string();
    assert!(matches!(err, DataError::Invalid(_)));
    assert!(
        msg.contains("hand") && msg.contains("6 read") && msg.contains("k_core"),
        "{msg}"
    );
}

#[test]
fn rating_threshold_keeps_unrated() {
    let r = raw(vec![
        inter("u", "five", 1, Some(5.0)),
        inter("u", "three", 2, Some(3.0)),
        inter("u", "none", 3, None),
        inter("u", "edge", 4, Some(3.5)),
    ]);
    let ds = Dataset::from_raw(&r, &cfg(Some(3.5), 0)).expect("valid");
    assert_eq!(raw_ids(&ds), vec![vec!["five", "none", "edge"]]);
    // The dropped item is not in the catalogue either.
    assert!(ds.catalog.items.iter().all(|it| it.raw_id != "three"));

    let all = Dataset::from_raw(&r, &cfg(None, 0)).expect("valid");
    assert_eq!(all.num_interactions(), 4);

    let r2 = raw(vec![inter("u", "five", 1, Some(5.0))]);
    assert!(Dataset::from_raw(&r2, &cfg(Some(6.0), 0)).is_err());
    assert!(Dataset::from_raw(&r, &cfg(Some(f32::NAN), 0)).is_err());
}

#[test]
fn unrated_survives_high_threshold() {
    let r = raw(vec![
        inter("u", "five", 1, Some(5.0)),
        inter("u", "none", 2, None),
    ]);
    let ds = Dataset::from_raw(&r, &cfg(Some(6.0), 0)).expect("the unrated one stays");
    assert_eq!(raw_ids(&ds), vec![vec!["none"]]);
}

#[test]
fn time_order_with_ties_keeps_file_order() {
    let r = raw(vec![
        inter("u", "x", 5, None),
        inter("u", "y", 3, None),
        inter("u", "z", 5, None),
        inter("u", "w", 3, None),
        // A later duplicate of y is dropped; an earlier duplicate of x moves x to t = 1.
        inter("u", "y", 9, None),
        inter("u", "x", 1, None),
    ]);
    let ds = Dataset::from_raw(&r, &cfg(None, 0)).expect("valid");
    assert_eq!(raw_ids(&ds), vec![vec!["x", "y", "w", "z"]]);
    // Dense item ids follow the original id order: w=0, x=1, y=2, z=3.
    assert_eq!(ds.sequences, vec![vec![1, 2, 0, 3]]);
}

#[test]
fn ids_are_dense_in_original_id_order() {
    let mut r = raw(vec![
        inter("b", "i2", 1, None),
        inter("9", "i1", 2, None),
        inter("10", "i2", 3, None),
        inter("a", "i3", 4, None),
    ]);
    r.items.insert(
        "i2".into(),
        RawItem {
            title: "Two".into(),
            genres: vec!["Pop".into(), "Jazz".into()],
        },
    );
    let ds = Dataset::from_raw(&r, &cfg(None, 1)).expect("valid");
    // Byte-wise string order, not numeric: "10" < "9".
    assert_eq!(ds.user_raw_ids, vec!["10", "9", "a", "b"]);
    assert_eq!(ds.sequences, vec![vec![1], vec![0], vec![2], vec![1]]);
    assert_eq!(ds.catalog.title(1), Some("Two"));
    assert_eq!(ds.catalog.title(0), Some("i1"));
    assert_eq!(ds.catalog.genre_names, vec!["Jazz", "Pop"]);
    assert_eq!(ds.catalog.item_genres(), vec![vec![], vec![0, 1], vec![]]);
    assert_eq!(ds.catalog.len(), 3);
    assert!(!ds.catalog.is_empty());
    assert_eq!(ds.preprocess, cfg(None, 1));
    assert_eq!(ds.name, "hand");
}

#[test]
fn empty_input_is_an_error() {
    assert!(Dataset::from_raw(&raw(vec![]), &PreprocessConfig::default()).is_err());
}

fn hand_dataset() -> Dataset {
    Dataset {
        name: "hand".into(),
        catalog: Catalog {
            items: (0..6)
                .map(|i| Item {
                    raw_id: format!("i{i}"),
                    title: format!("Item {i}"),
                    genres: vec![(i % 2) as u16],
                })
                .collect(),
            genre_names: vec!["Even".into(), "Odd".into()],
        },
        user_raw_ids: vec!["u0".into(), "u1".into(), "u2".into()],
        sequences: vec![vec![0, 1, 2, 3, 4, 5], vec![3, 1, 0, 2], vec![4, 2]],
        preprocess: PreprocessConfig::default(),
    }
}

fn prompt(user: u32, history: &[u32], target: u32) -> TrainPrompt {
    TrainPrompt {
        user,
        history: history.to_vec(),
        target,
    }
}

fn case(user: u32, history: &[u32], seen: &[u32], target: u32) -> EvalCase {
    EvalCase {
        user,
        history: history.to_vec(),
        seen: seen.to_vec(),
        target,
    }
}

#[test]
fn leave_one_out_exact() {
    let split = hand_dataset().leave_one_out(2);
    assert_eq!(split.max_history, 2);
    // User 2 has only 2 items: skipped, empty training sequence.
    assert_eq!(
        split.train_sequences,
        vec![vec![0, 1, 2, 3], vec![3, 1], vec![]]
    );
    assert_eq!(
        split.train,
        vec![
            prompt(0, &[0], 1),
            prompt(0, &[0, 1], 2),
            prompt(0, &[1, 2], 3),
            prompt(1, &[3], 1),
        ]
    );
    assert_eq!(
        split.valid,
        vec![
            case(0, &[2, 3], &[0, 1, 2, 3], 4),
            case(1, &[3, 1], &[1, 3], 0)
        ]
    );
    assert_eq!(
        split.test,
        vec![
            case(0, &[3, 4], &[0, 1, 2, 3, 4], 5),
            case(1, &[1, 0], &[0, 1, 3], 2)
        ]
    );
    assert_eq!(split.item_popularity, vec![1, 2, 1, 2, 0, 0]);
}

#[test]
fn leave_one_out_long_history() {
    let split = hand_dataset().leave_one_out(10);
    assert_eq!(split.train[2], prompt(0, &[0, 1, 2], 3));
    assert_eq!(split.valid[0].history, vec![0, 1, 2, 3]);
    assert_eq!(split.test[0].history, vec![0, 1, 2, 3, 4]);
    // No leakage: no training prompt targets a validation or test item of its user.
    for p in &split.train {
        let seq = &hand_dataset().sequences[p.user as usize];
        let n = seq.len();
        assert!(!seq[n - 2..].contains(&p.target));
    }
}

#[test]
fn save_load_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested").join("hand.json");
    let ds = hand_dataset();
    ds.save(&path).expect("save");
    let back = Dataset::load(&path).expect("load");
    assert_eq!(back, ds);
    // Overwriting works and leaves no temporary file behind.
    ds.save(&path).expect("save again");
    let names: Vec<_> = std::fs::read_dir(path.parent().expect("parent"))
        .expect("read dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("hand.json")]);
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.json");
    let err = Dataset::load(&missing).expect_err("missing");
    assert!(matches!(err, DataError::Io { .. }));
    assert!(err.to_string().contains("missing.json"));

    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{ not json").expect("write");
    let err = Dataset::load(&garbage).expect_err("garbage");
    assert!(matches!(err, DataError::BadFile { .. }));
    assert!(err.to_string().contains("garbage.json"));

    // Valid JSON that breaks an invariant (item 9 is outside a 6-item catalogue).
    let mut bad = hand_dataset();
    bad.sequences[0].push(9);
    let path = dir.path().join("bad.json");
    std::fs::write(&path, serde_json::to_string(&bad).expect("json")).expect("write");
    let err = Dataset::load(&path).expect_err("inconsistent");
    assert!(err.to_string().contains("bad.json") && err.to_string().contains("item 9"));
}
