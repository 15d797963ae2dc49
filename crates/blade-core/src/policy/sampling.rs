//! Host-side list construction shared by item-level policies: masking, greedy choice,
//! temperature / top-k / top-p sampling and beam search, given per-slot logits.

use blade_data::ItemId;
use rand::rngs::StdRng;
use rand::RngExt;

use crate::error::{CoreError, Result};
use crate::policy::SampleSpec;

/// `log sum exp` of `logits` over the allowed items; `-inf` when nothing is allowed.
pub fn masked_logsumexp(logits: &[f32], allowed: impl Fn(usize) -> bool) -> f32 {
    let mut max = f32::NEG_INFINITY;
    for (i, &l) in logits.iter().enumerate() {
        if allowed(i) && l > max {
            max = l;
        }
    }
    if !max.is_finite() {
        return f32::NEG_INFINITY;
    }
    let sum: f32 = logits
        .iter()
        .enumerate()
        .filter(|(i, _)| allowed(*i))
        .map(|(_, &l)| (l - max).exp())
        .sum();
    max + sum.ln()
}

/// The items a slot may not take: the prompt's exclusions and the list so far (a handful of
/// ids; the pickers turn them into a dense mask over the logits once per pick).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blocked {
    ids: Vec<usize>,
}

impl Blocked {
    /// Whether item `i` is blocked.
    pub fn contains(&self, i: usize) -> bool {
        self.ids.contains(&i)
    }

    /// `allowed[i]` for the `n` logits of a slot.
    fn allowed(&self, n: usize) -> Vec<bool> {
        let mut ok = vec![true; n];
        for &i in &self.ids {
            if let Some(x) = ok.get_mut(i) {
                *x = false;
            }
        }
        ok
    }
}

/// The items a slot may not take: the prompt's exclusions and the list so far.
pub fn blocked(exclude: &[ItemId], partial: &[ItemId]) -> Blocked {
    Blocked {
        ids: exclude.iter().chain(partial).map(|&i| i as usize).collect(),
    }
}

/// The best allowed item (ties to the lower id), or an error when the catalogue is exhausted.
pub fn greedy_pick(logits: &[f32], blocked: &Blocked) -> Result<(ItemId, f32)> {
    let ok = blocked.allowed(logits.len());
    let mut best: Option<(usize, f32)> = None;
    for (i, &l) in logits.iter().enumerate() {
        if !ok[i] || l.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| l > b) {
            best = Some((i, l));
        }
    }
    let (item, _) = best.ok_or_else(|| exhausted(logits.len(), blocked))?;
    let lse = masked_logsumexp(logits, |i| ok[i]);
    Ok((item as ItemId, logits[item] - lse))
}

fn exhausted(n: usize, blocked: &Blocked) -> CoreError {
    let mut ids = blocked.ids.clone();
    ids.sort_unstable();
    ids.dedup();
    let excluded = ids.iter().filter(|&&i| i < n).count();
    CoreError::Config(format!(
        "no item left to recommend: the catalogue has {n} items and {excluded} are excluded \
         (the prompt's history and the items already in the list); make the list shorter \
         (--list-len, --align-k, --k) or the history shorter (--history-len)"
    ))
}

/// Draws one allowed item with the sampler of `spec`; returns it with its log-probability
/// under the policy (temperature 1, no truncation).
pub fn sample_pick(
    logits: &[f32],
    blocked: &Blocked,
    spec: &SampleSpec,
    rng: &mut StdRng,
) -> Result<(ItemId, f32)> {
    if spec.temperature == 1.0 && spec.top_k.is_none() && spec.top_p.is_none() {
        plain_pick(logits, blocked, rng)
    } else {
        general_pick(logits, blocked, spec, rng)
    }
}

/// [`sample_pick`] at temperature 1 without truncation (every rollout of alignment): the same
/// arithmetic in the same order as [`general_pick`], so the same item and log-probability for
/// the same random state (tested), in one buffer and without the candidate list.
fn plain_pick(logits: &[f32], blocked: &Blocked, rng: &mut StdRng) -> Result<(ItemId, f32)> {
    // blocked (and NaN) logits become NaN, which every pass below skips
    let mut w = logits.to_vec();
    for &i in &blocked.ids {
        if let Some(x) = w.get_mut(i) {
            *x = f32::NAN;
        }
    }
    let mut max = f32::NEG_INFINITY;
    let mut last = None;
    for (i, &l) in w.iter().enumerate() {
        if !l.is_nan() {
            max = max.max(l);
            last = Some(i);
        }
    }
    let Some(last) = last else {
        return Err(exhausted(logits.len(), blocked));
    };
    let mut total = 0.0f32;
    for x in &mut w {
        if !x.is_nan() {
            *x = (*x - max).exp();
            total += *x;
        }
    }
    let lse = max + total.ln();
    let mut u = rng.random::<f32>() * total;
    let mut chosen = last;
    for (i, &x) in w.iter().enumerate() {
        if x.is_nan() {
            continue;
        }
        if u < x {
            chosen = i;
            break;
        }
        u -= x;
    }
    Ok((chosen as ItemId, logits[chosen] - lse))
}

/// [`sample_pick`] with any temperature and truncation.
fn general_pick(
    logits: &[f32],
    blocked: &Blocked,
    spec: &SampleSpec,
    rng: &mut StdRng,
) -> Result<(ItemId, f32)> {
    let ok = blocked.allowed(logits.len());
    let t = spec.temperature.max(1e-4);
    let mut cand: Vec<(usize, f32)> = logits
        .iter()
        .enumerate()
        .filter(|(i, l)| ok[*i] && !l.is_nan())
        .map(|(i, &l)| (i, l / t))
        .collect();
    if cand.is_empty() {
        return Err(exhausted(logits.len(), blocked));
    }
    if spec.top_k.is_some() || spec.top_p.is_some() {
        cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if let Some(k) = spec.top_k {
            cand.truncate(k.max(1));
        }
    }
    let max = cand.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    let mut weights: Vec<f32> = cand.iter().map(|c| (c.1 - max).exp()).collect();
    // the policy's own normaliser: at temperature 1 without truncation the weights are its
    // terms (same values, same order), so it needs no second pass of exponentials
    let plain = t == 1.0 && spec.top_k.is_none() && spec.top_p.is_none();
    let lse_plain = plain.then(|| max + weights.iter().sum::<f32>().ln());
    if let Some(p) = spec.top_p {
        let total: f32 = weights.iter().sum();
        let mut acc = 0.0;
        let mut keep = weights.len();
        for (j, w) in weights.iter().enumerate() {
            acc += w / total;
            if acc >= p {
                keep = j + 1;
                break;
            }
        }
        weights.truncate(keep);
        cand.truncate(keep);
    }
    let total: f32 = weights.iter().sum();
    let mut u = rng.random::<f32>() * total;
    let mut chosen = cand[cand.len() - 1].0;
    for (c, w) in cand.iter().zip(&weights) {
        if u < *w {
            chosen = c.0;
            break;
        }
        u -= w;
    }
    let lse = match lse_plain {
        Some(l) => l,
        None => masked_logsumexp(logits, |i| ok[i]),
    };
    Ok((chosen as ItemId, logits[chosen] - lse))
}

/// One beam: a partial list and its log-probability.
#[derive(Debug, Clone, PartialEq)]
pub struct Beam {
    /// Items so far.
    pub items: Vec<ItemId>,
    /// Sum of the slot log-probabilities.
    pub log_prob: f32,
}

/// Extends every beam of one prompt by one slot and keeps the `width` best (ties by the items'
/// ids, for determinism). `logits[b]` are the next-slot logits of beam `b`.
pub fn beam_step(
    beams: &[Beam],
    logits: &[Vec<f32>],
    exclude: &[ItemId],
    width: usize,
) -> Result<Vec<Beam>> {
    let mut cands: Vec<Beam> = Vec::new();
    for (beam, l) in beams.iter().zip(logits) {
        let ok = blocked(exclude, &beam.items).allowed(l.len());
        let lse = masked_logsumexp(l, |i| ok[i]);
        let mut local: Vec<(usize, f32)> = l
            .iter()
            .enumerate()
            .filter(|(i, v)| ok[*i] && !v.is_nan())
            .map(|(i, &v)| (i, v - lse))
            .collect();
        local.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        for (i, lp) in local.into_iter().take(width) {
            let mut items = beam.items.clone();
            items.push(i as ItemId);
            cands.push(Beam {
                items,
                log_prob: beam.log_prob + lp,
            });
        }
    }
    if cands.is_empty() {
        let n = logits.first().map_or(0, Vec::len);
        let partial = beams.first().map_or(&[][..], |b| &b.items[..]);
        return Err(exhausted(n, &blocked(exclude, partial)));
    }
    cands.sort_by(|a, b| {
        b.log_prob
            .total_cmp(&a.log_prob)
            .then(a.items.cmp(&b.items))
    });
    cands.truncate(width);
    Ok(cands)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn greedy_skips_blocked_and_normalises() {
        let logits = [0.0, 3.0, 1.0, 1.0f32];
        let b = blocked(&[1], &[]);
        let (i, lp) = greedy_pick(&logits, &b).unwrap();
        assert_eq!(i, 2, "tie between 2 and 3 goes to the lower id");
        let expect = 1.0 - (1.0f32.exp() * 2.0 + 1.0).ln();
        assert!((lp - expect).abs() < 1e-6);
    }

    #[test]
    fn sampling_matches_softmax_frequencies() {
        let logits = [0.0, (2.0f32).ln(), 10.0, 0.0];
        let b = blocked(&[2], &[]);
        let spec = SampleSpec::default();
        let mut rng = StdRng::seed_from_u64(1);
        let mut counts = [0usize; 4];
        for _ in 0..20_000 {
            counts[sample_pick(&logits, &b, &spec, &mut rng).unwrap().0 as usize] += 1;
        }
        assert_eq!(counts[2], 0);
        let share1 = counts[1] as f64 / 20_000.0;
        assert!((share1 - 0.5).abs() < 0.02, "p(1) = 2/4, got {share1}");
    }

    /// The plain path (every rollout of alignment) draws exactly what the general one draws.
    #[test]
    fn the_plain_path_draws_what_the_general_one_draws() {
        let mut gen = StdRng::seed_from_u64(9);
        let spec = SampleSpec::default();
        for case in 0..300 {
            let n = 1 + case % 40;
            let logits: Vec<f32> = (0..n)
                .map(|i| match (case + i) % 17 {
                    0 => f32::NAN,
                    1 => -80.0, // weight 0 after the shift: still a candidate
                    _ => gen.random::<f32>() * 12.0 - 6.0,
                })
                .collect();
            let ids: Vec<ItemId> = (0..n as ItemId)
                .filter(|i| (i * 7 + case as ItemId).is_multiple_of(5))
                .collect();
            let b = blocked(&ids, &[n as ItemId + 3]);
            let (mut r1, mut r2) = (
                StdRng::seed_from_u64(case as u64),
                StdRng::seed_from_u64(case as u64),
            );
            let a = plain_pick(&logits, &b, &mut r1);
            let g = general_pick(&logits, &b, &spec, &mut r2);
            match (a, g) {
                (Ok((i, lp)), Ok((j, lq))) => {
                    assert_eq!(i, j, "case {case}");
                    assert_eq!(lp.to_bits(), lq.to_bits(), "case {case}");
                }
                (Err(_), Err(_)) => {}
                (a, g) => panic!("case {case}: {a:?} vs {g:?}"),
            }
        }
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_truncates() {
        let logits = [0.0, 5.0, 4.9, -3.0f32];
        let b = blocked(&[], &[]);
        let mut rng = StdRng::seed_from_u64(2);
        let spec = SampleSpec {
            top_k: Some(1),
            ..SampleSpec::default()
        };
        for _ in 0..50 {
            assert_eq!(sample_pick(&logits, &b, &spec, &mut rng).unwrap().0, 1);
        }
        let spec = SampleSpec {
            top_p: Some(0.5),
            ..SampleSpec::default()
        };
        for _ in 0..50 {
            assert_eq!(sample_pick(&logits, &b, &spec, &mut rng).unwrap().0, 1);
        }
    }

    #[test]
    fn exhausted_catalogue_is_an_error_not_a_panic() {
        let b = blocked(&[0, 1], &[]);
        let e = greedy_pick(&[1.0, 2.0], &b).unwrap_err().to_string();
        assert!(e.contains("has 2 items and 2 are excluded"), "{e}");
        let mut rng = StdRng::seed_from_u64(0);
        assert!(sample_pick(&[1.0, 2.0], &b, &SampleSpec::default(), &mut rng).is_err());
    }

    #[test]
    fn beam_keeps_best_joint_lists() {
        let start = vec![Beam {
            items: vec![],
            log_prob: 0.0,
        }];
        let step1 = beam_step(&start, &[vec![2.0, 1.9, -5.0]], &[], 2).unwrap();
        assert_eq!(
            step1.iter().map(|b| b.items[0]).collect::<Vec<_>>(),
            vec![0, 1]
        );
        // second slot: after 0, item 1 dominates; after 1, item 0 dominates equally
        let step2 =
            beam_step(&step1, &[vec![0.0, 0.0, 0.0], vec![9.0, 0.0, -9.0]], &[], 2).unwrap();
        assert_eq!(
            step2[0].items,
            vec![1, 0],
            "the lower first slot wins on the joint score"
        );
        assert!(step2[0].log_prob > step2[1].log_prob);
    }
}
