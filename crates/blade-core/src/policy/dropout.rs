//! Dropout noise from a stream the caller seeds, instead of the backend's process-global
//! generator.
//!
//! burn's `Dropout` draws its Bernoulli masks from one generator shared by the whole process, so
//! training passes that run side by side on threads would interleave their draws (and a
//! reproducible run has to make them take turns). [`DropoutNoise`] derives every mask from its
//! own seed and a counter of the sites it has masked: the masks of a pass depend on that seed
//! and on the order of the pass's own dropout sites only, so row shards draw in parallel and a
//! seed gives the same masks whatever the thread count.

use std::cell::Cell;

use burn::prelude::*;

use crate::policy::baselines::splitmix;

/// A seeded source of inverted-dropout masks (see the module doc).
#[derive(Debug)]
pub struct DropoutNoise {
    seed: u64,
    site: Cell<u64>,
}

impl DropoutNoise {
    /// A fresh stream: the `i`-th call of [`apply`](Self::apply) draws from `(seed, i)`.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            site: Cell::new(0),
        }
    }

    /// `x` with each element zeroed with probability `prob` and the rest scaled by
    /// `1 / (1 - prob)` (inverted dropout, as burn's `Dropout` in training mode). The mask is a
    /// constant of the autodiff graph, so the gradient flows through the kept elements only.
    /// `prob <= 0` returns `x` and draws nothing.
    pub fn apply<const D: usize>(&self, x: Tensor<D>, prob: f64) -> Tensor<D> {
        if prob <= 0.0 {
            return x;
        }
        let site = self.site.get();
        self.site.set(site + 1);
        let shape = x.shape();
        let mask = self.mask(site, shape.num_elements(), prob);
        let device = x.device();
        x * Tensor::<D>::from_data(TensorData::new(mask, shape), &device)
    }

    /// `n` mask values of site `site`: `1 / (1 - prob)` kept, `0` dropped. Two 32-bit uniforms
    /// per SplitMix64 draw; an element is kept when its uniform is below `(1 - prob) * 2^32`.
    fn mask(&self, site: u64, n: usize, prob: f64) -> Vec<f32> {
        let keep = (1.0 - prob).clamp(0.0, 1.0);
        let threshold = (keep * 4_294_967_296.0) as u64;
        let scale = if keep > 0.0 { (1.0 / keep) as f32 } else { 0.0 };
        let mut state = splitmix(self.seed ^ splitmix(site));
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            state = splitmix(state);
            for half in [state & 0xffff_ffff, state >> 32] {
                if out.len() < n {
                    out.push(if half < threshold { scale } else { 0.0 });
                }
            }
        }
        out
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::policy::item_lm::to_host;

    #[test]
    fn masks_keep_the_right_share_and_depend_on_seed_and_site_only() {
        let a = DropoutNoise::new(7);
        let m1 = a.mask(0, 100_000, 0.1);
        let kept = m1.iter().filter(|&&v| v > 0.0).count() as f64 / m1.len() as f64;
        assert!((kept - 0.9).abs() < 0.005, "kept share {kept}");
        assert!(m1.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.9).abs() < 1e-6));
        // same (seed, site): same mask; another site or seed: another mask
        assert_eq!(m1, DropoutNoise::new(7).mask(0, 100_000, 0.1));
        assert_ne!(m1, a.mask(1, 100_000, 0.1));
        assert_ne!(m1, DropoutNoise::new(8).mask(0, 100_000, 0.1));
        // a shorter mask is a prefix of a longer one
        assert_eq!(&m1[..77], &a.mask(0, 77, 0.1)[..]);
    }

    #[test]
    fn apply_counts_its_sites_and_zero_probability_draws_nothing() {
        let device = crate::BackendSpec::Flex.device().unwrap();
        let x = Tensor::<2>::ones([4, 64], &device);
        let noise = DropoutNoise::new(3);
        let first = noise.apply(x.clone(), 0.0);
        assert_eq!(noise.site.get(), 0);
        assert_eq!(to_host(first).unwrap(), vec![1.0f32; 256]);
        let a = to_host(noise.apply(x.clone(), 0.5)).unwrap();
        let b = to_host(noise.apply(x, 0.5)).unwrap();
        assert_eq!(noise.site.get(), 2);
        assert_ne!(a, b);
        assert_eq!(a, noise.mask(0, 256, 0.5));
    }
}
