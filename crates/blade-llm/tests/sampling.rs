//! Batched sampling and teacher-forced scoring of `LanguageModel` against the one-row paths:
//! sampling at temperature ~0 is greedy decoding on every row, the rows are independent draws
//! from the model's distribution, and the scores are the log-softmax of `last_logits`.

use blade_llm::lm::sample_logits;
use blade_llm::LanguageModel;
use blade_testkit::{write_tiny_gguf, TinySpec};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

const PROMPT: [u32; 9] = [257, 72, 101, 108, 108, 111, 32, 265, 260];

fn tiny() -> LanguageModel {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("tiny.gguf");
    write_tiny_gguf(&g, &TinySpec::default()).unwrap();
    LanguageModel::load(&g, None, &Device::default()).unwrap()
}

fn log_softmax(v: &[f32]) -> Vec<f64> {
    let max = v.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let lse = f64::from(max)
        + v.iter()
            .map(|&x| f64::from(x - max).exp())
            .sum::<f64>()
            .ln();
    v.iter().map(|&x| f64::from(x) - lse).collect()
}

#[test]
fn sampling_at_temperature_zero_is_greedy_on_every_row() {
    let lm = tiny();
    let greedy = lm.greedy(&PROMPT, 8, &[]).unwrap();
    assert_eq!(greedy.len(), 8);
    for temperature in [0.0, 1e-6] {
        let mut rng = StdRng::seed_from_u64(1);
        let rows = lm
            .sample_batch(&PROMPT, 3, 8, temperature, &mut rng)
            .unwrap();
        assert_eq!(rows.len(), 3);
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row, &greedy, "temperature {temperature}, row {i}");
        }
    }
}

#[test]
fn sampled_rows_are_independent_seeded_draws() {
    let lm = tiny();
    // T = 4: the tiny model puts 99.6% of the first token's mass on one token at T = 1
    let rows = |seed: u64| {
        lm.sample_batch(&PROMPT, 6, 8, 4.0, &mut StdRng::seed_from_u64(seed))
            .unwrap()
    };
    let a = rows(7);
    assert_eq!(a.len(), 6);
    assert!(a.iter().all(|r| r.len() == 8));
    assert!(a
        .iter()
        .flatten()
        .all(|&t| (t as usize) < lm.config.vocab_size));
    // the same seed gives the same rows, another seed other rows
    assert_eq!(a, rows(7));
    assert_ne!(a, rows(8));
    // the rows do not share their draws: all distinct
    let distinct: std::collections::BTreeSet<&Vec<u32>> = a.iter().collect();
    assert_eq!(distinct.len(), a.len(), "rows repeat each other: {a:?}");
    // no row is the greedy continuation
    let greedy = lm.greedy(&PROMPT, 8, &[]).unwrap();
    assert!(a.iter().all(|r| r != &greedy));
}

#[test]
fn first_tokens_follow_the_model_distribution() {
    // many one-token rows: each is a draw from softmax(last_logits / T); T = 4 flattens the tiny
    // model's distribution (at T = 1 one token has 99.6% of the mass) so that the test means
    // something
    let lm = tiny();
    let tempered: Vec<f32> = lm
        .last_logits(&PROMPT)
        .unwrap()
        .iter()
        .map(|x| x / 4.0)
        .collect();
    let p: Vec<f64> = log_softmax(&tempered).into_iter().map(f64::exp).collect();
    let n = 16_000;
    let rows = lm
        .sample_batch(&PROMPT, n, 1, 4.0, &mut StdRng::seed_from_u64(3))
        .unwrap();
    let mut counts = vec![0usize; p.len()];
    for r in &rows {
        assert_eq!(r.len(), 1);
        counts[r[0] as usize] += 1;
    }
    let tv: f64 = counts
        .iter()
        .zip(&p)
        .map(|(&c, &q)| (c as f64 / n as f64 - q).abs())
        .sum::<f64>()
        / 2.0;
    assert!(
        tv < 0.08,
        "total variation {tv} from the model's distribution"
    );
    // the most likely token comes about as often as it should
    let (top, &pt) = p
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap();
    let ft = counts[top] as f64 / n as f64;
    assert!((ft - pt).abs() < 0.02, "top token: {ft} vs {pt}");
}

#[test]
fn sample_logits_draws_from_the_tempered_softmax() {
    let mut rng = StdRng::seed_from_u64(0);
    let logits: Vec<f32> = [1.0f32, 2.0, 3.0, 4.0].iter().map(|x| x.ln()).collect();
    let mut counts = [0usize; 4];
    let n = 20_000;
    for _ in 0..n {
        counts[sample_logits(&logits, 1.0, &mut rng)] += 1;
    }
    for (i, &c) in counts.iter().enumerate() {
        let want = (i + 1) as f64 / 10.0;
        let got = c as f64 / n as f64;
        assert!((got - want).abs() < 0.02, "token {i}: {got} vs {want}");
    }
    // temperature 2 flattens: probabilities proportional to sqrt(1, 2, 3, 4)
    let mut counts = [0usize; 4];
    for _ in 0..n {
        counts[sample_logits(&logits, 2.0, &mut rng)] += 1;
    }
    let z: f64 = (1..=4).map(|k| (k as f64).sqrt()).sum();
    for (i, &c) in counts.iter().enumerate() {
        let want = ((i + 1) as f64).sqrt() / z;
        assert!((c as f64 / n as f64 - want).abs() < 0.02);
    }
    // greedy, masked and NaN entries
    assert_eq!(sample_logits(&logits, 0.0, &mut rng), 3);
    assert_eq!(sample_logits(&logits, -1.0, &mut rng), 3);
    let masked = [f32::NEG_INFINITY, 0.5, f32::NAN, f32::NEG_INFINITY];
    for _ in 0..100 {
        assert_eq!(sample_logits(&masked, 1.0, &mut rng), 1);
    }
    assert_eq!(sample_logits(&[f32::NEG_INFINITY; 3], 1.0, &mut rng), 0);
}

#[test]
fn token_log_probs_are_the_log_softmax_of_every_prefix() {
    let lm = tiny();
    let rows = vec![PROMPT[..7].to_vec(), PROMPT[2..].to_vec()];
    let lp = lm.token_log_probs(&rows).unwrap();
    assert_eq!(lp.len(), 2);
    for (row, got) in rows.iter().zip(&lp) {
        assert_eq!(got.len(), row.len() - 1);
        for t in 1..row.len() {
            let want = log_softmax(&lm.last_logits(&row[..t]).unwrap())[row[t] as usize];
            let d = (f64::from(got[t - 1]) - want).abs();
            assert!(d < 1e-4, "position {t}: {} vs {want}", got[t - 1]);
        }
    }
    // one-token rows have nothing to score; unequal rows and foreign ids are refused
    assert_eq!(
        lm.token_log_probs(&[vec![1], vec![2]]).unwrap(),
        vec![Vec::<f32>::new(); 2]
    );
    assert!(lm.token_log_probs(&[]).unwrap().is_empty());
    let err = lm
        .token_log_probs(&[vec![1, 2, 3], vec![1, 2]])
        .unwrap_err();
    assert!(err.to_string().contains("equal lengths"), "{err}");
    let too_big = lm.config.vocab_size as u32;
    assert!(lm.token_log_probs(&[vec![1, too_big]]).is_err());
}
