//! The reference cache (M lists per prompt sampled once from the SFT model) and the static
//! ceilings computed from it (docs/METHOD.md section 7).

use std::path::Path;

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::config::{AlignConfig, PromptPool};
use super::rollout::{sample_and_score, PoolPrompt};
use super::AlignInputs;
use crate::error::CoreError;
use crate::policy::{Policy, SampleSpec};
use crate::sft::write_atomic;

/// Per prompt of the pool (and of the held-out prompts), the M reference rewards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceCache {
    /// What the cache was made for; a mismatch means it is rebuilt.
    pub key: String,
    /// Per pool prompt, the M reference rewards.
    pub rewards: Vec<Vec<f32>>,
    /// What the held-out rewards were made for.
    #[serde(default)]
    pub valid_key: String,
    /// Per held-out (validation) prompt, M reference rewards against its validation target.
    #[serde(default)]
    pub valid_rewards: Vec<Vec<f32>>,
}

/// The two static ceilings of a set of prompts, averaged over the prompts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Ceilings {
    /// Prompts averaged over.
    pub prompts: usize,
    /// Mean reward of the reference's lists (the SFT level).
    pub reference_mean: f64,
    /// Mean of each prompt's largest cached reference reward: a static target gives every
    /// rollout at or above it the same proxy reward.
    pub max_of_m: f64,
    /// Mean expected best-of-N reward of the reference (the optimum of the exact BoN objective),
    /// estimated without bias from the M cached rewards; `None` when `N > M`.
    pub expected_bon: Option<f64>,
    /// Mean reward of the best possible list, where the reward knows it
    /// ([`crate::reward::ListReward::optimum`], e.g. `taste@K`); `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimum: Option<f64>,
}

/// The expected maximum of `n` draws without replacement from `values` (sorted ascending): the
/// `i`-th smallest (1-based) is the maximum of a uniform `n`-subset with probability
/// `C(i-1, n-1) / C(M, n)`. An unbiased estimate of `E[max of n i.i.d. draws]` from M i.i.d.
/// samples (a U-statistic). `None` when `n == 0` or `n > M`.
pub fn expected_best_of_n(sorted: &[f64], n: usize) -> Option<f64> {
    let m = sorted.len();
    if n == 0 || n > m {
        return None;
    }
    // w_M = n / M; w_{i-1} = w_i (i - n) / (i - 1)
    let mut w = n as f64 / m as f64;
    let mut total = 0.0;
    for i in (n..=m).rev() {
        total += w * sorted[i - 1];
        if i > 1 {
            w *= (i - n) as f64 / (i - 1) as f64;
        }
    }
    Some(total)
}

/// The ceilings of per-prompt reward samples with best-of-`n`.
pub fn ceilings(rewards: &[Vec<f32>], n: usize) -> Ceilings {
    let mut c = Ceilings {
        prompts: rewards.len(),
        ..Ceilings::default()
    };
    let mut bon = Some(0.0);
    let mut count = 0usize;
    for r in rewards {
        if r.is_empty() {
            continue;
        }
        count += 1;
        let mut s: Vec<f64> = r.iter().map(|&x| f64::from(x)).collect();
        s.sort_by(f64::total_cmp);
        c.reference_mean += s.iter().sum::<f64>() / s.len() as f64;
        c.max_of_m += s[s.len() - 1];
        bon = bon.zip(expected_best_of_n(&s, n)).map(|(a, b)| a + b);
    }
    let d = count.max(1) as f64;
    c.reference_mean /= d;
    c.max_of_m /= d;
    c.expected_bon = bon.map(|b| b / d);
    c
}

/// Samples (or reloads) the reference cache of `pool` and of the held-out prompts `valid`,
/// kept beside the SFT run in `<init>/reference/<hash>.json` and shared by every method and
/// seed started from it.
pub(crate) fn reference_cache<P: Policy>(
    cfg: &AlignConfig,
    inputs: &AlignInputs,
    reference: &P,
    pool: &[PoolPrompt],
    valid: &[PoolPrompt],
) -> crate::Result<ReferenceCache> {
    let mut pool_name = match cfg.prompt_pool {
        PromptPool::Last(n) => format!("per_user={n}"),
        other => format!("prompt_pool={other}"),
    };
    if cfg.train_targets > 1 {
        pool_name.push_str(&format!(" train_targets={}", cfg.train_targets));
    }
    if cfg.rollout_temperature != 1.0 {
        pool_name.push_str(&format!(" temperature={}", cfg.rollout_temperature));
    }
    let key = format!(
        "pool={} {pool_name} M={} K={} reward={} mask={}",
        pool.len(),
        cfg.reference_lists,
        cfg.list_len,
        inputs.reward.name(),
        cfg.mask_history,
    );
    let valid_key = format!("valid={} {key}", valid.len());
    let cache_dir = inputs.init.join("reference");
    std::fs::create_dir_all(&cache_dir).map_err(|e| CoreError::file(&cache_dir, e))?;
    let path = cache_dir.join(format!(
        "{:016x}.json",
        crate::checkpoint::fnv1a(key.as_bytes(), 0)
    ));
    let mut cache = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| serde_json::from_str::<ReferenceCache>(&text).ok())
        .filter(|c| c.key == key && c.rewards.len() == pool.len());
    let spec = SampleSpec {
        lists_per_prompt: cfg.reference_lists,
        list_len: cfg.list_len,
        temperature: cfg.rollout_temperature,
        ..SampleSpec::default()
    };
    let sample = |prompts: &[PoolPrompt], seed: u64| -> crate::Result<Vec<Vec<f32>>> {
        let mut rng = StdRng::seed_from_u64(seed);
        let all: Vec<usize> = (0..prompts.len()).collect();
        let scored = sample_and_score(
            reference,
            prompts,
            &all,
            &spec,
            cfg.mask_history,
            inputs.reward,
            inputs.catalog,
            64,
            &mut rng,
        )?;
        Ok(scored
            .rewards
            .chunks(cfg.reference_lists)
            .map(<[f32]>::to_vec)
            .collect())
    };
    let mut changed = false;
    let c = match cache.as_mut() {
        Some(c) => c,
        None => {
            changed = true;
            cache.insert(ReferenceCache {
                rewards: sample(pool, 0x5eed_0ef0)?,
                key,
                valid_key: String::new(),
                valid_rewards: Vec::new(),
            })
        }
    };
    if c.valid_key != valid_key || c.valid_rewards.len() != valid.len() {
        c.valid_rewards = sample(valid, 0x5eed_0ef1)?;
        c.valid_key = valid_key;
        changed = true;
    }
    if changed {
        let text = serde_json::to_string(&*c).map_err(|e| CoreError::file(&path, e))?;
        write_atomic(&path, text.as_bytes())?;
    }
    Ok(c.clone())
}

/// Reads a JSON file written by the trainer (e.g. `summary.json`), naming the file on error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> crate::Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| CoreError::file(path, e))?;
    serde_json::from_str(&text).map_err(|e| CoreError::file(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force: the mean of the maximum over every n-subset of the values.
    fn brute(values: &[f64], n: usize) -> f64 {
        let m = values.len();
        let (mut total, mut count) = (0.0, 0usize);
        for mask in 0u32..(1 << m) {
            if mask.count_ones() as usize != n {
                continue;
            }
            let max = (0..m)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| values[i])
                .fold(f64::NEG_INFINITY, f64::max);
            total += max;
            count += 1;
        }
        total / count as f64
    }

    #[test]
    fn expected_best_of_n_matches_brute_force() {
        let mut v = vec![0.0, 0.3, 0.0, 1.0, 0.25, 0.7, 0.0, 0.9, 0.1, 0.45];
        v.sort_by(f64::total_cmp);
        for n in 1..=v.len() {
            let fast = expected_best_of_n(&v, n).unwrap();
            assert!((fast - brute(&v, n)).abs() < 1e-12, "n = {n}");
        }
        assert_eq!(
            expected_best_of_n(&v, 1),
            Some(v.iter().sum::<f64>() / 10.0)
        );
        assert_eq!(expected_best_of_n(&v, v.len()), Some(1.0));
        assert_eq!(expected_best_of_n(&v, 11), None);
        assert_eq!(expected_best_of_n(&v, 0), None);
    }

    #[test]
    fn ceilings_average_over_prompts() {
        let c = ceilings(&[vec![0.0, 1.0], vec![0.5, 0.5]], 2);
        assert_eq!(c.prompts, 2);
        assert!((c.reference_mean - 0.5).abs() < 1e-12);
        assert!((c.max_of_m - 0.75).abs() < 1e-12);
        assert_eq!(c.expected_bon, Some(0.75));
        assert_eq!(ceilings(&[vec![0.0, 1.0]], 3).expected_bon, None);
    }
}
