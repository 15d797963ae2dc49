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
//!
//! With `recompute` (`--recompute`), no shard keeps its graph from the forward pass: `x` comes
//! from the policy's inference copy (no graph at all), and each shard's forward pass runs again,
//! with its graph, at the backward pass, at most [`threads`] at a time. Peak activation memory
//! is then that of `threads` shards instead of all of them, for one more forward pass per shard.

use std::ops::Range;

use blade_data::ItemId;
use burn::optim::GradientsParams;
use burn::prelude::*;

use super::host;
use super::policy::AlignPolicy;
use crate::batch::PromptBatch;
use crate::error::CoreError;
use crate::parallel::{add_grads, on_threads, ranges, threads};
use crate::policy::TokenLogProbs;

/// The policy's differentiable output on a batch, computed in shards.
pub(crate) struct Sharded<'a, P> {
    /// `[lists, T]`: the concatenated values (detached from the shards, a leaf that tracks its
    /// gradient); `T` = 1 for list-level log-probabilities.
    values: Tensor<2>,
    /// `[lists, T]`: 1 for a real token, 0 for padding (token level only).
    mask: Option<Tensor<2>>,
    parts: Vec<Part<P>>,
    /// With `recompute`: what the shards' forward passes need again at the backward pass.
    again: Option<Again<'a, P>>,
}

struct Part<P> {
    /// The shard's replica and its `[rows, T_shard]` output, attached to the replica's graph
    /// (`None` with `recompute`).
    kept: Option<(P, Tensor<2>)>,
    rows: Range<usize>,
}

struct Again<'a, P> {
    policy: P,
    device: &'a Device,
    prompts: &'a PromptBatch,
    lists: &'a [Vec<ItemId>],
    how: Scoring,
}

/// How a gradient pass scores the lists.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scoring {
    /// Per token (`[lists, T]`) rather than per list.
    pub token_level: bool,
    /// The policy's softmax temperature (`AlignConfig::rollout_temperature`).
    pub temperature: f32,
}

/// The list log-probabilities of `lists` under `policy` at softmax temperature `temperature`,
/// `[lists]` (at temperature 1 through [`Policy::log_prob`](crate::policy::Policy::log_prob)).
pub(crate) fn list_log_probs<P: crate::policy::Policy>(
    policy: &P,
    prompts: &PromptBatch,
    lists: &[Vec<ItemId>],
    temperature: f32,
) -> crate::Result<Tensor<1>> {
    if temperature == 1.0 {
        policy.log_prob(prompts, lists)
    } else {
        Ok(policy
            .token_log_probs_at(prompts, lists, temperature)?
            .sum())
    }
}

/// A pass's `[rows, T]` values and token mask (from [`scored`] or a [`Sharded`] pass) as the
/// loss takes them: the list log-probabilities `[rows]` and, at token level, the per-token view.
pub(crate) fn as_lists(
    values: Tensor<2>,
    mask: Option<Tensor<2>>,
) -> (Tensor<1>, Option<TokenLogProbs>) {
    match mask {
        Some(mask) => {
            let t = TokenLogProbs { values, mask };
            (t.sum(), Some(t))
        }
        None => {
            let n = values.dims()[0];
            (values.reshape([n]), None)
        }
    }
}

/// One pass's log-probabilities: `[rows, T]` values (per token, or per list as `T` = 1) and
/// the token mask at token level.
pub(crate) fn scored<P: AlignPolicy>(
    policy: &P,
    prompts: &PromptBatch,
    lists: &[Vec<ItemId>],
    how: Scoring,
) -> crate::Result<(Tensor<2>, Option<Tensor<2>>)> {
    if how.token_level {
        let t = policy.token_log_probs_at(prompts, lists, how.temperature)?;
        Ok((t.values, Some(t.mask)))
    } else {
        let v = list_log_probs(policy, prompts, lists, how.temperature)?;
        let m = v.dims()[0];
        Ok((v.reshape([m, 1]), None))
    }
}

/// `Σ (dL/dx) · x` over one shard's `[m, t]` output, with `dx` the whole batch's `[lists,
/// width]` gradient on the host, and the replica's parameter gradients from its backward pass.
fn shard_backward<P: AlignPolicy>(
    replica: &P,
    values: Tensor<2>,
    rows: &Range<usize>,
    dx: &[f32],
    width: usize,
) -> GradientsParams {
    let [m, t] = values.dims();
    let up: Vec<f32> = rows
        .clone()
        .flat_map(|r| dx[r * width..r * width + t].iter().copied())
        .collect();
    let upstream = Tensor::<2>::from_data(TensorData::new(up, [m, t]), &values.device());
    GradientsParams::from_grads((values * upstream).sum().backward(), replica)
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

impl<'a, P: AlignPolicy> Sharded<'a, P> {
    /// The forward passes: list log-probabilities (`token_level` false) or per-token ones, of
    /// `lists` under `prompts`, each shard on its own thread and its own fork of `policy`
    /// (its inference copy, without graphs, with `recompute`).
    pub(crate) fn forward(
        policy: &P,
        device: &'a Device,
        prompts: &'a PromptBatch,
        lists: &'a [Vec<ItemId>],
        how: Scoring,
        shards: usize,
        recompute: bool,
    ) -> crate::Result<Self> {
        let jobs: Vec<(P, Range<usize>)> = ranges(lists.len(), shards)
            .into_iter()
            .map(|r| {
                let replica = if recompute {
                    policy.valid()
                } else {
                    policy.clone().fork(device)
                };
                (replica, r)
            })
            .collect();
        let outs = on_threads(jobs, |(replica, rows)| {
            let (values, mask) = scored(
                &replica,
                &prompts.slice(rows.clone()),
                &lists[rows.clone()],
                how,
            )?;
            Ok((replica, values, mask, rows))
        })?;
        let width = outs
            .iter()
            .map(|(_, v, _, _)| v.dims()[1])
            .max()
            .unwrap_or(1);
        let cat = |parts: Vec<Tensor<2>>| {
            let t = Tensor::cat(parts, 0);
            if recompute {
                // from the inference copy: onto the autodiff device, as a leaf
                Tensor::from_data(t.into_data(), device)
            } else {
                t
            }
        };
        let values = cat(outs
            .iter()
            .map(|(_, v, _, _)| pad_cols(v.clone().detach(), width))
            .collect())
        .require_grad();
        let mask = how.token_level.then(|| {
            cat(outs
                .iter()
                .map(|(_, _, m, _)| pad_cols(m.clone().expect("token level has a mask"), width))
                .collect())
        });
        let parts = outs
            .into_iter()
            .map(|(replica, values, _, rows)| Part {
                kept: (!recompute).then_some((replica, values)),
                rows,
            })
            .collect();
        let again = recompute.then(|| Again {
            policy: policy.clone(),
            device,
            prompts,
            lists,
            how,
        });
        Ok(Self {
            values,
            mask,
            parts,
            again,
        })
    }

    /// The concatenated output as the loss takes it ([`as_lists`]).
    pub(crate) fn outputs(&self) -> (Tensor<1>, Option<TokenLogProbs>) {
        as_lists(self.values.clone(), self.mask.clone())
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
        let mut each = match self.again {
            None => on_threads(self.parts, |part| {
                let (replica, values) = part.kept.expect("kept without recompute");
                Ok((
                    shard_backward(&replica, values, &part.rows, dx, width),
                    replica,
                ))
            })?,
            Some(a) => {
                // each shard's forward pass again, with its graph, `threads` shards at a time
                let mut each = Vec::new();
                let rows: Vec<Range<usize>> = self.parts.into_iter().map(|p| p.rows).collect();
                for wave in rows.chunks(threads().max(1)) {
                    let jobs: Vec<(P, Range<usize>)> = wave
                        .iter()
                        .map(|r| (a.policy.clone().fork(a.device), r.clone()))
                        .collect();
                    each.extend(on_threads(jobs, |(replica, rows)| {
                        let (values, _) = scored(
                            &replica,
                            &a.prompts.slice(rows.clone()),
                            &a.lists[rows.clone()],
                            a.how,
                        )?;
                        Ok((shard_backward(&replica, values, &rows, dx, width), replica))
                    })?);
                }
                each
            }
        };
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
        for (shards, recompute) in [(2, false), (3, false), (11, false), (1, true), (3, true)] {
            let how = Scoring {
                token_level: true,
                temperature: 1.0,
            };
            let sh = Sharded::forward(&model, &device, &prompts, &lists, how, shards, recompute)
                .unwrap();
            let l = loss(&sh.outputs().1.unwrap());
            let g = sh.backward(&l.backward()).unwrap();
            let many = collect(&model, &g);
            assert_eq!(
                many.len(),
                one.len(),
                "{shards} shards (recompute {recompute}): parameters with gradients"
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
                "{shards} shards (recompute {recompute}): max |difference| {worst} (largest \
                 gradient {scale})"
            );
        }
        // list level: a [lists] output, the same gradient, at temperature 1 and below
        for (temperature, recompute) in [(1.0, false), (1.0, true), (0.5, false), (0.5, true)] {
            let x = list_log_probs(&model, &prompts, &lists, temperature).unwrap();
            let g1 = GradientsParams::from_grads((x.clone() * x).sum().backward(), &model);
            let how = Scoring {
                token_level: false,
                temperature,
            };
            let sh =
                Sharded::forward(&model, &device, &prompts, &lists, how, 2, recompute).unwrap();
            let (x, tokens) = sh.outputs();
            assert!(tokens.is_none());
            let g2 = sh.backward(&(x.clone() * x).sum().backward()).unwrap();
            for ((_, a), (_, b)) in collect(&model, &g1).iter().zip(&collect(&model, &g2)) {
                for (x, y) in a.iter().zip(b) {
                    assert!((x - y).abs() <= 1e-4 * x.abs().max(1.0), "{x} vs {y}");
                }
            }
        }
    }
}
