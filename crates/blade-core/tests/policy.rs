//! The item-level policy: sampling, decoding and log-probabilities agree with each other and
//! respect the list constraints.

use blade_core::{
    BackendSpec, DecodeStrategy, ItemLm, ItemLmConfig, Policy, PromptBatch, Recommender, SampleSpec,
};
use burn::tensor::Device;
use rand::rngs::StdRng;
use rand::SeedableRng;

const ITEMS: usize = 40;

fn device() -> Device {
    BackendSpec::Flex.device().unwrap()
}

fn model(device: &Device) -> ItemLm {
    device.seed(3);
    ItemLmConfig::new(ITEMS)
        .with_max_history(4)
        .with_max_list(5)
        .with_dropout(0.0)
        .init(device)
}

fn prompts() -> PromptBatch {
    PromptBatch {
        histories: vec![vec![1, 2, 3], vec![7], vec![10, 11, 12, 13, 14, 15]],
        exclude: vec![vec![1, 2, 3], vec![], vec![12, 13, 14, 15, 0]],
    }
}

#[test]
fn sampled_lists_are_distinct_allowed_and_grouped() {
    let d = device();
    let m = model(&d);
    let p = prompts();
    let spec = SampleSpec {
        lists_per_prompt: 6,
        list_len: 5,
        ..SampleSpec::default()
    };
    let r = m.sample(&p, &spec, &mut StdRng::seed_from_u64(1)).unwrap();
    assert_eq!(r.group_size, 6);
    assert_eq!(r.lists.len(), 18);
    for (i, l) in r.lists.iter().enumerate() {
        let prompt = i / 6;
        assert_eq!(l.len(), 5);
        let mut s = l.clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), 5, "list {l:?} repeats an item");
        assert!(l.iter().all(|x| (*x as usize) < ITEMS));
        assert!(
            l.iter().all(|x| !p.exclude[prompt].contains(x)),
            "{l:?} holds an excluded item"
        );
    }
    // same seed, same lists; another seed, other lists
    let again = m.sample(&p, &spec, &mut StdRng::seed_from_u64(1)).unwrap();
    assert_eq!(again.lists, r.lists);
    let other = m.sample(&p, &spec, &mut StdRng::seed_from_u64(2)).unwrap();
    assert_ne!(other.lists, r.lists);
}

#[test]
fn log_prob_matches_the_sampler_and_is_differentiable() {
    let d = device().autodiff();
    let m = model(&d);
    let p = prompts();
    let spec = SampleSpec {
        lists_per_prompt: 4,
        list_len: 5,
        ..SampleSpec::default()
    };
    let r = m.sample(&p, &spec, &mut StdRng::seed_from_u64(9)).unwrap();
    let rep = p.repeat_each(4);
    let lp = m.log_prob(&rep, &r.lists).unwrap();
    let values: Vec<f32> = lp.clone().into_data().try_to_vec().unwrap();
    for (a, b) in values.iter().zip(&r.log_probs) {
        assert!((a - b).abs() < 1e-3, "log_prob {a} vs sampler {b}");
        assert!(*a < 0.0 && a.is_finite());
    }
    // gradients reach the parameters
    let grads = lp.sum().backward();
    let params = burn::optim::GradientsParams::from_grads(grads, &m);
    assert!(!params.is_empty(), "no parameter received a gradient");
}

#[test]
fn greedy_equals_width_one_beam_and_probabilities_normalise() {
    let d = device();
    let m = model(&d);
    let p = prompts();
    let greedy = m.decode(&p, 5, DecodeStrategy::Greedy).unwrap();
    let beam1 = m.decode(&p, 5, DecodeStrategy::Beam(1)).unwrap();
    assert_eq!(greedy, beam1);
    let beam4 = m.decode(&p, 5, DecodeStrategy::Beam(4)).unwrap();
    for l in &beam4 {
        let mut s = l.clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), 5);
    }
    // the first-slot distribution over all allowed items sums to one
    let one = PromptBatch {
        histories: vec![vec![5, 6]],
        exclude: vec![vec![5, 6]],
    };
    let lists: Vec<Vec<u32>> = (0..ITEMS as u32)
        .filter(|i| *i != 5 && *i != 6)
        .map(|i| vec![i])
        .collect();
    let rep = PromptBatch {
        histories: vec![vec![5, 6]; lists.len()],
        exclude: vec![vec![5, 6]; lists.len()],
    };
    let lp: Vec<f32> = m
        .log_prob(&rep, &lists)
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    let total: f32 = lp.iter().map(|x| x.exp()).sum();
    assert!((total - 1.0).abs() < 1e-4, "probabilities sum to {total}");
    assert_eq!(m.score_all(&one).unwrap()[0].len(), ITEMS);
}

#[test]
fn tempered_log_probs_are_the_softmax_of_the_logits_over_the_temperature() {
    let d = device();
    let m = model(&d);
    // two-item lists after one prompt: every allowed first item, then every second item after
    // the first item 9
    let hist = vec![5, 6];
    let mut lists: Vec<Vec<u32>> = (0..ITEMS as u32)
        .filter(|i| ![5, 6, 9].contains(i))
        .map(|i| vec![i, 9])
        .collect();
    lists.extend(
        (0..ITEMS as u32)
            .filter(|i| ![5, 6, 9].contains(i))
            .map(|i| vec![9, i]),
    );
    let half = lists.len() / 2;
    let rep = PromptBatch {
        histories: vec![hist.clone(); lists.len()],
        exclude: vec![hist; lists.len()],
    };
    let at = |t: f32| -> Vec<f32> {
        m.token_log_probs_at(&rep, &lists, t)
            .unwrap()
            .values
            .into_data()
            .try_to_vec()
            .unwrap()
    };
    let (one, cold) = (at(1.0), at(0.5));
    assert_eq!(one, {
        let t = m.token_log_probs(&rep, &lists).unwrap();
        t.values.into_data().try_to_vec::<f32>().unwrap()
    });
    // slot 1 of the first half, slot 2 of the second: log p_t(i) - log p_t(j) = (log p(i) -
    // log p(j)) / t, and each slot's tempered distribution sums to one over the allowed items
    // (item 9 is missing from each: it is added from its own list)
    for (rows, slot) in [(0..half, 0), (half..lists.len(), 1)] {
        let pick = |v: &[f32], r: usize| v[r * 2 + slot];
        let r0 = rows.start;
        for r in rows.clone() {
            let want = (pick(&one, r) - pick(&one, r0)) / 0.5;
            let got = pick(&cold, r) - pick(&cold, r0);
            assert!((got - want).abs() < 1e-4, "row {r}: {got} vs {want}");
        }
        let missing = if slot == 0 {
            cold[half * 2]
        } else {
            -f32::INFINITY
        };
        let total: f32 = rows.map(|r| pick(&cold, r).exp()).sum::<f32>() + missing.exp();
        assert!((total - 1.0).abs() < 1e-4, "slot {slot}: sums to {total}");
    }
    assert!(m.token_log_probs_at(&rep, &lists, 0.0).is_err());
    assert!(m.scores_at_any_temperature());
}

#[test]
fn bad_requests_are_errors() {
    let d = device();
    let m = model(&d);
    let p = prompts();
    assert!(
        m.decode(&p, 6, DecodeStrategy::Greedy).is_err(),
        "longer than max_list"
    );
    assert!(m.decode(&p, 0, DecodeStrategy::Greedy).is_err());
    let lists = vec![vec![1, 2], vec![3]];
    assert!(m.log_prob(&p.slice(0..2), &lists).is_err(), "ragged lists");
    assert!(m.log_prob(&p, &lists).is_err(), "count mismatch");
}
