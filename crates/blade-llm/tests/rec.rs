//! The title policy on a tiny random model: constrained lists are valid, the three ways of
//! computing a list's probability (sampling, `log_prob`, `score_all`) agree.

use blade_core::batch::PromptBatch;
use blade_core::policy::{DecodeStrategy, Policy, Recommender, SampleSpec};
use blade_llm::{LanguageModel, LlmPolicy, PromptTemplate};
use blade_testkit::{write_tiny_gguf, TinySpec};
use burn::prelude::*;
use rand::{rngs::StdRng, SeedableRng};

fn titles() -> Vec<String> {
    [
        "the theory (1995)",
        "the thin man",
        "the other",
        "an inn",
        "inner 12",
        "Heron",
        "Toy Story (1995)",
        "Toy Story 2",
        "the theory (1995)", // a duplicate title gets a suffix
        "on and on",
        "rather",
        "Ant",
    ]
    .map(String::from)
    .to_vec()
}

fn policy(device: &Device) -> LlmPolicy {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("tiny.gguf");
    write_tiny_gguf(&g, &TinySpec::default()).unwrap();
    let lm = LanguageModel::load(&g, None, device).unwrap();
    LlmPolicy::new(lm, &titles(), PromptTemplate::default()).unwrap()
}

fn prompts() -> PromptBatch {
    PromptBatch {
        histories: vec![vec![0, 5, 6], vec![3], vec![]],
        exclude: vec![vec![0, 5, 6], vec![3], vec![]],
    }
}

#[test]
fn titles_are_unique_and_the_trie_covers_them() {
    let p = policy(&Device::default());
    assert_eq!(p.index().len(), 12);
    assert_eq!(p.index().titles[8], "the theory (1995) #2");
    assert!(p.index().num_nodes() > 12);
    assert!(p
        .prompt_text(&[6, 7], 5)
        .contains("Toy Story (1995)\nToy Story 2"));
}

#[test]
fn sampled_lists_are_valid_and_their_log_probs_match_the_full_pass() {
    let p = policy(&Device::default());
    let spec = SampleSpec {
        lists_per_prompt: 3,
        list_len: 4,
        ..SampleSpec::default()
    };
    let mut rng = StdRng::seed_from_u64(3);
    let roll = p.sample(&prompts(), &spec, &mut rng).unwrap();
    assert_eq!(roll.lists.len(), 9);
    for (r, list) in roll.lists.iter().enumerate() {
        let excl = &prompts().exclude[r / 3];
        assert_eq!(list.len(), 4);
        let mut s = list.clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), 4, "repeated item in {list:?}");
        assert!(
            list.iter().all(|i| (*i as usize) < 12 && !excl.contains(i)),
            "{list:?}"
        );
    }
    let rep = prompts().repeat_each(3);
    let lp = p.log_prob(&rep, &roll.lists).unwrap();
    let lp: Vec<f32> = lp.into_data().try_to_vec::<f32>().unwrap();
    for (a, b) in lp.iter().zip(&roll.log_probs) {
        assert!(a.is_finite() && *a < 0.0);
        assert!((a - b).abs() < 1e-3, "log_prob {a} vs sampled {b}");
    }
    // per title token: real tokens only, each a log-probability, summing to the list's
    let toks = p.token_log_probs(&rep, &roll.lists).unwrap();
    let [n, t] = toks.values.dims();
    assert_eq!(n, 9);
    assert!(t >= 4, "at least one token per title");
    let mask: Vec<f32> = toks.mask.clone().into_data().try_to_vec::<f32>().unwrap();
    let vals: Vec<f32> = toks.values.clone().into_data().try_to_vec::<f32>().unwrap();
    assert!(mask.iter().all(|&m| m == 0.0 || m == 1.0));
    assert!(vals
        .iter()
        .zip(&mask)
        .all(|(v, m)| *v <= 1e-6 && (*m == 1.0 || *v == 0.0)));
    let summed: Vec<f32> = toks.sum().into_data().try_to_vec::<f32>().unwrap();
    for (a, b) in summed.iter().zip(&lp) {
        assert!((a - b).abs() < 1e-4, "token sum {a} vs log_prob {b}");
    }
    // sampling is reproducible from the seed
    let again = p
        .sample(&prompts(), &spec, &mut StdRng::seed_from_u64(3))
        .unwrap();
    assert_eq!(again.lists, roll.lists);
}

#[test]
fn full_ranking_is_a_distribution_whose_top_item_greedy_writes_first() {
    let p = policy(&Device::default());
    let batch = PromptBatch {
        histories: vec![vec![1, 2], vec![7]],
        exclude: vec![vec![], vec![]],
    };
    let scores = p.score_all(&batch).unwrap();
    let greedy = p.decode(&batch, 3, DecodeStrategy::Greedy).unwrap();
    for (s, g) in scores.iter().zip(&greedy) {
        let total: f32 = s.iter().map(|x| x.exp()).sum();
        assert!(
            (total - 1.0).abs() < 1e-3,
            "first-title probabilities sum to {total}"
        );
        let best = (0..s.len()).max_by(|&a, &b| s[a].total_cmp(&s[b])).unwrap();
        // greedy is token-by-token, the ranking is by whole titles: they agree when the best
        // title also wins every token step, which holds for the first token at least
        assert_eq!(
            p.index().tokens[g[0] as usize][0],
            p.index().tokens[best][0]
        );
        assert_eq!(g.len(), 3);
    }
    // the log-prob of a one-item list equals that item's score
    let one = PromptBatch {
        histories: vec![vec![1, 2]],
        exclude: vec![vec![]],
    };
    let lp: Vec<f32> = p
        .log_prob(&one, &[vec![4]])
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert!(
        (lp[0] - scores[0][4]).abs() < 1e-3,
        "{} vs {}",
        lp[0],
        scores[0][4]
    );
}

#[test]
fn bad_lists_are_errors_not_panics() {
    let p = policy(&Device::default());
    let one = PromptBatch {
        histories: vec![vec![1]],
        exclude: vec![vec![1]],
    };
    let err = p.log_prob(&one, &[vec![1]]).unwrap_err().to_string();
    assert!(err.contains("excluded or repeated"), "{err}");
    let err = p.log_prob(&one, &[vec![99]]).unwrap_err().to_string();
    assert!(err.contains("outside the catalogue"), "{err}");
    let err = p
        .decode(&one, 12, DecodeStrategy::Greedy)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no catalogue title left"), "{err}");
}
