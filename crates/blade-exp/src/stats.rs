//! Paired statistics over users: the difference of a method to a baseline with a bootstrap
//! confidence interval and p-value (docs/METHOD.md section 8).
//!
//! Each user is one unit. With several seeds, a user's difference is the mean over seeds of
//! (method on seed s) - (baseline on seed s) (a seed-independent baseline such as SFT repeats
//! its value), so the bootstrap resamples users and carries the seed spread inside each unit.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The paired difference `method - baseline`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedDiff {
    /// Users.
    pub n: usize,
    /// Mean difference.
    pub mean: f64,
    /// Mean of the baseline (for the relative difference).
    pub baseline_mean: f64,
    /// Lower end of the 95% percentile-bootstrap interval.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
    /// Two-sided bootstrap p-value of "no difference": the share of the resampled means,
    /// re-centred on 0 (`d* - mean`, the null distribution), at least as far from 0 as the
    /// observed mean, `(#{|d* - mean| >= |mean|} + 1) / (B + 1)`.
    pub p: f64,
}

impl PairedDiff {
    /// Whether the difference is significant at 5%: the interval excludes 0 and p < 0.05
    /// (both, so that float residue in a zero-width interval is not a difference).
    pub fn significant(&self) -> bool {
        (self.lo > 0.0 || self.hi < 0.0) && self.p < 0.05
    }

    /// `"win"` or `"loss"` when [`significant`](Self::significant) (by the sign of the mean
    /// difference), `"tie"` otherwise.
    pub fn verdict(&self) -> &'static str {
        match (self.significant(), self.mean > 0.0) {
            (true, true) => "win",
            (true, false) => "loss",
            (false, _) => "tie",
        }
    }

    /// The difference relative to the baseline's mean, in percent (`None` for a zero baseline).
    pub fn relative_pct(&self) -> Option<f64> {
        (self.baseline_mean.abs() > 0.0).then(|| 100.0 * self.mean / self.baseline_mean)
    }
}

/// Per user, the mean over seeds of `method[s][u] - baseline[s][u]` (and the baseline's mean);
/// `None` when the seeds' user counts differ or nothing is given.
pub fn pool_seeds(method: &[Vec<f64>], baseline: &[Vec<f64>]) -> Option<(Vec<f64>, Vec<f64>)> {
    let n = method.first()?.len();
    if method.len() != baseline.len() || method.iter().chain(baseline).any(|v| v.len() != n) {
        return None;
    }
    let s = method.len() as f64;
    let diff = (0..n)
        .map(|u| {
            method
                .iter()
                .zip(baseline)
                .map(|(m, b)| m[u] - b[u])
                .sum::<f64>()
                / s
        })
        .collect();
    let base = (0..n)
        .map(|u| baseline.iter().map(|b| b[u]).sum::<f64>() / s)
        .collect();
    Some((diff, base))
}

/// Paired bootstrap of the mean of per-user differences `diff` (`resamples` draws of the users
/// with replacement, seeded). `baseline` gives the baseline's per-user values.
pub fn paired_bootstrap(diff: &[f64], baseline: &[f64], resamples: usize, seed: u64) -> PairedDiff {
    let n = diff.len();
    let mean = diff.iter().sum::<f64>() / n.max(1) as f64;
    let baseline_mean = baseline.iter().sum::<f64>() / baseline.len().max(1) as f64;
    if n == 0 || resamples == 0 {
        return PairedDiff {
            n,
            mean,
            baseline_mean,
            lo: mean,
            hi: mean,
            p: 1.0,
        };
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| diff[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let q = |p: f64| means[((p * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    // under "no difference" the centred resampled means d* - mean are the null distribution;
    // the p-value is the share of them at least as far from 0 as the observed mean
    let far = means
        .iter()
        .filter(|&&m| (m - mean).abs() >= mean.abs() - 1e-15)
        .count();
    PairedDiff {
        n,
        mean,
        baseline_mean,
        lo: q(0.025),
        hi: q(0.975),
        p: ((far + 1) as f64 / (resamples + 1) as f64).min(1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_gain_is_certain_and_a_symmetric_one_is_not() {
        let base = vec![0.5; 200];
        let d = paired_bootstrap(&vec![0.1; 200], &base, 999, 1);
        assert!(
            (d.mean - 0.1).abs() < 1e-12
                && (d.lo - 0.1).abs() < 1e-12
                && (d.hi - 0.1).abs() < 1e-12
        );
        assert!(d.significant() && d.p <= 1.0 / 1000.0 + 1e-12, "{d:?}");
        assert!((d.relative_pct().unwrap() - 20.0).abs() < 1e-9);

        // +1 / -1 in equal numbers: mean 0, the interval straddles 0, p = 1
        let sym: Vec<f64> = (0..200)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let d = paired_bootstrap(&sym, &base, 999, 1);
        assert!(d.mean.abs() < 1e-12 && d.lo < 0.0 && d.hi > 0.0 && !d.significant());
        assert!(d.p > 0.99, "{d:?}");
    }

    #[test]
    fn the_interval_matches_the_normal_approximation() {
        // 400 users, differences 1 with probability 0.3, else 0: mean 0.3, sd of the mean
        // sqrt(0.3 * 0.7 / 400) = 0.0229; the 95% interval is about 0.3 +- 0.045
        let diff: Vec<f64> = (0..400).map(|i| f64::from(u8::from(i % 10 < 3))).collect();
        let d = paired_bootstrap(&diff, &vec![0.0; 400], 4000, 7);
        assert!((d.mean - 0.3).abs() < 1e-12);
        assert!((d.lo - (0.3 - 0.0449)).abs() < 0.008, "{d:?}");
        assert!((d.hi - (0.3 + 0.0449)).abs() < 0.008, "{d:?}");
        assert!(d.p < 0.001 && d.relative_pct().is_none());
        // a weak effect: mean 0.02 with sd 1 per user over 100 users is not significant
        let noisy: Vec<f64> = (0..100)
            .map(|i| if i % 2 == 0 { 1.02 } else { -0.98 })
            .collect();
        let d = paired_bootstrap(&noisy, &vec![1.0; 100], 2000, 3);
        assert!(!d.significant() && d.p > 0.5, "{d:?}");
    }

    #[test]
    fn seeds_pool_per_user() {
        let m = vec![vec![1.0, 2.0], vec![3.0, 2.0]];
        let b = vec![vec![0.0, 1.0], vec![1.0, 1.0]];
        let (d, base) = pool_seeds(&m, &b).unwrap();
        assert_eq!(d, vec![1.5, 1.0]);
        assert_eq!(base, vec![0.5, 1.0]);
        assert!(pool_seeds(&m, &b[..1]).is_none());
        assert!(pool_seeds(&[vec![1.0]], &[vec![1.0, 2.0]]).is_none());
    }
}
