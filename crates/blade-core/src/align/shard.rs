//! Gradient passes split over threads (data parallelism on one device).
//!
//! burn's CPU backend runs most operations of a small model on the calling thread, so one
//! forward and backward pass over the batch keeps one core busy. Every alignment loss depends on
//! the policy only through the lists' log-probabilities `x` (`[lists]`, or `[lists, tokens]` for
//! token-level ratios), so by the chain rule
//!
//! ```text
//! dL/dθ = Σ_shards Σ_{rows r in shard} (dL/dx_r) · dx_r/dθ
//! ```
//!
//! The batch's rows are cut into contiguous shards. Each shard runs the policy's forward pass on
//! its own thread, on its own copy of the policy ([`Module::fork`]: the same values and parameter
//! ids, fresh autodiff leaves, so each shard has a graph of its own); the loss is computed once
//! on the concatenated, detached `x`, whose gradient `dL/dx` then drives each shard's backward
//! pass of `Σ (dL/dx) · x` on its thread; the shards' parameter gradients are summed. The result
//! is the gradient of the one-pass loss up to floating-point summation order (tested).

use std::ops::Range;

use blade_data::ItemId;
use burn::optim::GradientsParams;
use burn::prelude::*;

use super::host;
use super::policy::AlignPolicy;
use crate::batch::PromptBatch;
use crate::error::CoreError;
use crate::parallel::{add_grads, on_threads, ranges};
use crate::policy::TokenLogProbs;

/// The policy's differentiable output on a batch, computed in shards.
pub(crate) struct Sharded<P> {
    /// `[lists, T]`: the concatenated values (detached from the shards, a leaf that tracks its
    /// gradient); `T` = 1 for list-level log-probabilities.
    values: Tensor<2>,
    /// `[lists, T]`: 1 for a real token, 0 for padding (token level only).
    mask: Option<Tensor<2>>,
    parts: Vec<Part<P>>,
}

struct Part<P> {
    replica: P,
    /// `[rows, T_shard]`, attached to the replica's graph.
    values: Tensor<2>,
    rows: Range<usize>,
}

/// Pads `[rows, t]` with zero columns to `[rows, width]`.
fn pad_cols(t: Tensor<2>, width: usize) -> Tensor<2> {
    let [rows, cols] = t.dims();
    if cols == width {
        return t;
    }
    let device = t.device();
    Tensor::cat(vec![t, Tensor::zeros([rows, width - cols], &device)], 1)
}

impl<P: AlignPolicy> Sharded<P> {
    /// The forward passes: list log-probabilities (`token_level` false) or per-token ones, of
    /// `lists` under `prompts`, each shard on its own thread and its own fork of `policy`.
    pub(crate) fn forward(
        policy: &P,
        device: &Device,
        prompts: &PromptBatch,
        lists: &[Vec<ItemId>],
        token_level: bool,
        shards: usize,
    ) -> crate::Result<Self> {
        let jobs: Vec<(P, Range<usize>)> = ranges(lists.len(), shards)
            .into_iter()
            .map(|r| (policy.clone().fork(device), r))
            .collect();
        let outs = on_threads(jobs, |(replica, rows)| {
            let p = prompts.slice(rows.clone());
            let l = &lists[rows.clone()];
            let (values, mask) = if token_level {
                let t = replica.token_log_probs(&p, l)?;
                (t.values, Some(t.mask))
            } else {
                let v = replica.log_prob(&p, l)?;
                let m = v.dims()[0];
                (v.reshape([m, 1]), None)
            };
            Ok((
                Part {
                    replica,
                    values,
                    rows,
                },
                mask,
            ))
        })?;
        let width = outs
            .iter()
            .map(|(p, _)| p.values.dims()[1])
            .max()
            .unwrap_or(1);
        let values = Tensor::cat(
            outs.iter()
                .map(|(p, _)| pad_cols(p.values.clone().detach(), width))
                .collect(),
            0,
        )
        .require_grad();
        let mask = token_level.then(|| {
            Tensor::cat(
                outs.iter()
                    .map(|(_, m)| pad_cols(m.clone().expect("token level has a mask"), width))
                    .collect(),
                0,
            )
        });
        Ok(Self {
            values,
            mask,
            parts: outs.into_iter().map(|(p, _)| p).collect(),
        })
    }

    /// The per-token view (token level).
    pub(crate) fn tokens(&self) -> Option<TokenLogProbs> {
        self.mask.as_ref().map(|mask| TokenLogProbs {
            values: self.values.clone(),
            mask: mask.clone(),
        })
    }

    /// The list log-probabilities, `[lists]`.
    pub(crate) fn log_probs(&self) -> Tensor<1> {
        match self.tokens() {
            Some(t) => t.sum(),
            None => {
                let n = self.values.dims()[0];
                self.values.clone().reshape([n])
            }
        }
    }

    /// The parameter gradients of the loss whose backward pass gave `grads`: each shard's
    /// backward pass of `Σ (dL/dx) · x` on its thread, summed over shards, keyed as
    /// `GradientsParams::from_grads(grads, policy)` would key them.
    pub(crate) fn backward(
        self,
        grads: &burn::tensor::Gradients,
    ) -> crate::Result<GradientsParams> {
        let width = self.values.dims()[1];
        let dx = self.values.grad(grads).ok_or_else(|| {
            CoreError::Tensor("the loss does not depend on the lists' log-probabilities".into())
        })?;
        let dx = host(dx)?;
        let dx = &dx;
        let mut each = on_threads(self.parts, |part| {
            let [m, t] = part.values.dims();
            let rows: Vec<f32> = part
                .rows
                .clone()
                .flat_map(|r| dx[r * width..r * width + t].iter().copied())
                .collect();
            let upstream =
                Tensor::<2>::from_data(TensorData::new(rows, [m, t]), &part.values.device());
            let surrogate = (part.values * upstream).sum();
            Ok((
                GradientsParams::from_grads(surrogate.backward(), &part.replica),
                part.replica,
            ))
        })?;
        let (mut total, replica) = each.remove(0);
        for (mut g, _) in each {
            add_grads(&replica, &mut total, &mut g);
        }
        Ok(total)
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::parallel::testing::{host_grads, tiny_model};
    use crate::policy::Policy;
    use crate::ItemLm;
    use burn::module::ParamId;

    fn collect(model: &ItemLm, grads: &GradientsParams) -> Vec<(ParamId, Vec<f32>)> {
        host_grads(model, grads)
    }

    /// A loss that couples rows (batch mean, a softmax over rows) and tokens, as the alignment
    /// losses do (group baselines, token aggregation).
    fn loss(tokens: &TokenLogProbs) -> Tensor<1> {
        let x = tokens.sum();
        let n = x.dims()[0];
        let w = Tensor::<1>::from_data(
            TensorData::new((0..n).map(|i| (i as f32 - 3.0) / 7.0).collect(), [n]),
            &x.device(),
        );
        let mean = x.clone().mean();
        (x.clone() * w).sum()
            + (mean.clone() * mean)
            + burn::tensor::activation::softmax(x / 10.0, 0).max()
            + (tokens.values.clone() * tokens.mask.clone())
                .powi_scalar(2)
                .mean()
                * 0.1
    }

    #[test]
    fn sharded_gradients_equal_the_one_pass_gradient() {
        let device = crate::BackendSpec::Flex.device().unwrap().autodiff();
        let model = tiny_model(30, &device);
        let n = 11;
        let prompts = PromptBatch {
            histories: (0..n)
                .map(|r| {
                    (0..r % 6)
                        .map(|i| ((r * 7 + i * 3) % 30) as ItemId)
                        .collect()
                })
                .collect(),
            exclude: vec![Vec::new(); n],
        };
        let lists: Vec<Vec<ItemId>> = (0..n)
            .map(|r| {
                (0..4)
                    .map(|k| ((r * 5 + k * 11 + 1) % 30) as ItemId)
                    .collect()
            })
            .collect();
        let one = {
            let t = model.token_log_probs(&prompts, &lists).unwrap();
            let g = GradientsParams::from_grads(loss(&t).backward(), &model);
            collect(&model, &g)
        };
        assert!(!one.is_empty());
        for shards in [2, 3, 11] {
            let sh = Sharded::forward(&model, &device, &prompts, &lists, true, shards).unwrap();
            let l = loss(&sh.tokens().unwrap());
            let g = sh.backward(&l.backward()).unwrap();
            let many = collect(&model, &g);
            assert_eq!(
                many.len(),
                one.len(),
                "{shards} shards: parameters with gradients"
            );
            let (mut worst, mut scale) = (0f32, 0f32);
            for ((ida, a), (idb, b)) in one.iter().zip(&many) {
                assert_eq!(ida, idb);
                for (x, y) in a.iter().zip(b) {
                    worst = worst.max((x - y).abs());
                    scale = scale.max(x.abs());
                }
            }
            assert!(scale > 1e-3, "the gradient is not trivially zero");
            assert!(
                worst <= 1e-5 * scale.max(1.0),
                "{shards} shards: max |difference| {worst} (largest gradient {scale})"
            );
        }
        // list level: a [lists] output, the same gradient
        let x = model.log_prob(&prompts, &lists).unwrap();
        let g1 = GradientsParams::from_grads((x.clone() * x).sum().backward(), &model);
        let sh = Sharded::forward(&model, &device, &prompts, &lists, false, 2).unwrap();
        assert!(sh.tokens().is_none());
        let x = sh.log_probs();
        let g2 = sh.backward(&(x.clone() * x).sum().backward()).unwrap();
        for ((_, a), (_, b)) in collect(&model, &g1).iter().zip(&collect(&model, &g2)) {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 1e-4 * x.abs().max(1.0), "{x} vs {y}");
            }
        }
    }
}
