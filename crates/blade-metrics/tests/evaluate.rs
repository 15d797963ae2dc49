//! End-to-end check of `evaluate` on a two-user corpus whose every metric is worked out by hand.

use blade_metrics::{evaluate, list_dgu, list_mgu, to_markdown, EvalInput, MetricTable};

/// Items: 0 -> {0}, 1 -> {1}, 2 -> {0, 1}, 3 -> {2}, 4 -> {2}, 5 -> {}.
fn item_genres() -> Vec<Vec<u16>> {
    vec![vec![0], vec![1], vec![0, 1], vec![2], vec![2], vec![]]
}

fn table(with_embeddings: bool) -> MetricTable {
    let lists = vec![vec![0, 1, 2], vec![3, 0, 4]];
    let targets = vec![vec![1], vec![4, 5]];
    let histories = vec![vec![0], vec![3]];
    let genres = item_genres();
    // 6 items -> head = ceil(1.2) = 2 items: {0, 3}.
    let popularity = vec![10, 1, 1, 5, 0, 0];
    let embeddings: Vec<Vec<f32>> = vec![
        vec![1.0, 0.0],
        vec![0.0, 1.0],
        vec![1.0, 1.0],
        vec![-1.0, 0.0],
        vec![-1.0, 0.0],
        vec![0.0, 0.0],
    ];
    let input = EvalInput {
        lists: &lists,
        targets: &targets,
        histories: &histories,
        item_genres: &genres,
        n_genres: 3,
        popularity: &popularity,
        embeddings: with_embeddings.then_some(embeddings.as_slice()),
    };
    evaluate(&input, &[2, 3])
}

fn assert_close(t: &MetricTable, key: &str, expected: f64) {
    let got = t.get(key).unwrap_or(f64::NAN);
    assert!(
        (got - expected).abs() < 1e-12,
        "{key}: got {got}, expected {expected}"
    );
}

#[test]
fn closed_form_at_k2() {
    let t = table(true);
    assert_eq!(t.users, 2);
    let l3 = 3f64.log2();
    // User 0: target 1 at rank 2. User 1: targets {4, 5} absent from [3, 0].
    assert_close(&t, "recall@2", 0.5);
    assert_close(&t, "hit@2", 0.5);
    assert_close(&t, "precision@2", 0.25);
    assert_close(&t, "ndcg@2", (1.0 / l3) / 2.0);
    assert_close(&t, "mrr@2", 0.25);
    // GP from [0, 1, 3, 0] = (1/2, 1/4, 1/4); GH from [0], [3] = (1/2, 0, 1/2).
    assert_close(&t, "mgu@2", 1.0 / 6.0);
    assert_close(&t, "dgu@2", 0.5);
    assert_close(&t, "ild@2", 1.0);
    // Cosine distances: [0, 1] -> 1, [3, 0] -> 2.
    assert_close(&t, "ild_cos@2", 1.5);
    assert_close(&t, "div_ratio@2", 3.0 / 4.0);
    assert_close(&t, "or_ratio@2", 1.0);
    assert_close(&t, "coverage@2", 0.5);
    assert_close(&t, "tail_share@2", 0.25);
}

#[test]
fn closed_form_at_k3() {
    let t = table(false);
    let l3 = 3f64.log2();
    // User 1: target 4 at rank 3 of 2 targets: DCG 1/2, IDCG 1 + 1/log2(3).
    assert_close(&t, "recall@3", 0.75);
    assert_close(&t, "hit@3", 1.0);
    assert_close(&t, "precision@3", 1.0 / 3.0);
    assert_close(&t, "ndcg@3", (1.0 / l3 + 0.5 / (1.0 + 1.0 / l3)) / 2.0);
    assert_close(&t, "mrr@3", (0.5 + 1.0 / 3.0) / 2.0);
    // GP from [0, 1, 2, 3, 0, 4] = (3/7, 2/7, 2/7); gaps (-1/14, 2/7, -3/14).
    assert_close(&t, "mgu@3", 4.0 / 21.0);
    assert_close(&t, "dgu@3", 0.5);
    assert_close(&t, "ild@3", 2.0 / 3.0);
    assert_eq!(t.get("ild_cos@3"), None);
    assert_close(&t, "div_ratio@3", 5.0 / 6.0);
    assert_close(&t, "or_ratio@3", 4.0 / 6.0);
    assert_close(&t, "coverage@3", 5.0 / 6.0);
    assert_close(&t, "tail_share@3", 0.5);
}

#[test]
fn single_user_corpus_fairness_matches_list_reward() {
    let genres = item_genres();
    let lists = vec![vec![0, 1, 3]];
    let histories = vec![vec![2, 2, 5]];
    let input = EvalInput {
        lists: &lists,
        targets: &[],
        histories: &histories,
        item_genres: &genres,
        n_genres: 3,
        popularity: &[],
        embeddings: None,
    };
    let t = evaluate(&input, &[3]);
    assert_close(&t, "mgu@3", list_mgu(&lists[0], &histories[0], &genres, 3));
    assert_close(&t, "dgu@3", list_dgu(&lists[0], &histories[0], &genres, 3));
    // No targets: ranking metrics are 0, not NaN.
    assert_close(&t, "ndcg@3", 0.0);
}

#[test]
fn table_round_trips_through_json_and_renders() {
    let t = table(true);
    let json = serde_json::to_string(&t).expect("serialise");
    let back: MetricTable = serde_json::from_str(&json).expect("deserialise");
    // serde_json without its `float_roundtrip` feature may be 1 ulp off on parse.
    assert_eq!(back.users, t.users);
    assert!(back.values.keys().eq(t.values.keys()));
    for (key, v) in &t.values {
        assert_close(&back, key, *v);
    }

    let md = to_markdown(&[("blade".to_string(), &t)], &[2]);
    let lines: Vec<&str> = md.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("| method | recall@2 | hit@2 | precision@2 | ndcg@2 |"));
    assert!(!lines[0].contains("@3"));
    assert!(lines[2].starts_with("| blade | 0.5000 | 0.5000 | 0.2500 | 0.3155 |"));
    assert_eq!(lines[2].matches('|').count(), 15); // method + 13 metrics
}
