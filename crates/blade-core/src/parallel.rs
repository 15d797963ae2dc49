//! Data parallelism on one device: rows of a batch cut into contiguous shards, each shard on its
//! own thread.
//!
//! burn's CPU backends run most operations of a small model on the calling thread (only large
//! matrix products are split), so one pass over a batch keeps one core busy. Work whose rows are
//! independent (decoding, scoring, sampling with a random stream per prompt, reference
//! log-probabilities) is therefore run as row shards on [`threads`] threads; gradient passes are
//! split the same way and their gradients summed ([`add_grads`]). Every caller makes its result
//! independent of the number of shards (tested where it is used), so the thread count is a
//! speed setting only.

use std::ops::Range;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;

/// Threads for row-parallel work: `BLADE_THREADS` when set to a positive number, else the
/// cores this process may use.
pub fn threads() -> usize {
    std::env::var("BLADE_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// `n` rows cut into at most `shards` contiguous, near-equal ranges (none empty unless `n` is 0,
/// which gives one empty range).
pub fn ranges(n: usize, shards: usize) -> Vec<Range<usize>> {
    let k = shards.clamp(1, n.max(1));
    (0..k).map(|i| i * n / k..(i + 1) * n / k).collect()
}

/// Shards for `n` rows when each shard should hold at least `min_rows` of them: at most
/// [`threads`], at least 1.
pub fn shards_for(n: usize, min_rows: usize) -> usize {
    threads().min(n / min_rows.max(1)).max(1)
}

/// Runs `work` on every item, each on its own scoped thread (the first on the calling thread),
/// and returns the results in order; a panicking thread panics the caller.
pub fn on_threads<T: Send, R: Send>(
    items: Vec<T>,
    work: impl Fn(T) -> crate::Result<R> + Sync,
) -> crate::Result<Vec<R>> {
    let work = &work;
    let mut items = items.into_iter();
    let Some(first) = items.next() else {
        return Ok(Vec::new());
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = items.map(|item| s.spawn(move || work(item))).collect();
        let mut out = vec![work(first)];
        out.extend(
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))),
        );
        out.into_iter().collect()
    })
}

/// Runs `work` on row shards of `n` rows (at least `min_rows` rows a shard, at most
/// [`threads`] shards), each with its own clone of `model`, and concatenates the per-shard
/// outputs in row order.
pub fn map_rows<M: Clone + Send, R: Send>(
    model: &M,
    n: usize,
    min_rows: usize,
    work: impl Fn(&M, Range<usize>) -> crate::Result<Vec<R>> + Sync,
) -> crate::Result<Vec<R>> {
    let shards = ranges(n, shards_for(n, min_rows));
    if shards.len() == 1 {
        return work(model, 0..n);
    }
    let jobs: Vec<(M, Range<usize>)> = shards.into_iter().map(|r| (model.clone(), r)).collect();
    let parts = on_threads(jobs, |(m, r)| work(&m, r))?;
    Ok(parts.into_iter().flatten().collect())
}

/// Adds the gradients of `from` into `into`, parameter by parameter of `module` (the module
/// whose parameter ids key both).
pub fn add_grads<M: Module>(module: &M, into: &mut GradientsParams, from: &mut GradientsParams) {
    module.visit(&mut AddGrads { into, from });
}

struct AddGrads<'a> {
    into: &'a mut GradientsParams,
    from: &'a mut GradientsParams,
}

impl ModuleVisitor for AddGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let id: ParamId = param.id;
        if let Some(g) = self.from.remove::<D>(id) {
            let sum = match self.into.remove::<D>(id) {
                Some(a) => a + g,
                None => g,
            };
            self.into.register(id, sum);
        }
    }
}

/// What the shard tests share: a small item model and its gradients on the host.
#[cfg(all(test, feature = "flex"))]
pub(crate) mod testing {
    use burn::module::{Module, ModuleVisitor, Param, ParamId};
    use burn::optim::GradientsParams;
    use burn::prelude::*;

    use crate::{ItemLm, ItemLmConfig};

    /// An item model of `items` items, L = 5, K = 4, d = 16, no dropout, on `device`.
    pub(crate) fn tiny_model(items: usize, device: &Device) -> ItemLm {
        ItemLmConfig::new(items)
            .with_max_history(5)
            .with_max_list(4)
            .with_d_model(16)
            .with_d_ff(32)
            .with_dropout(0.0)
            .init(device)
    }

    /// Every float gradient of `module` as `(param id, values)`, in visiting order.
    pub(crate) fn host_grads<M: Module>(
        module: &M,
        grads: &GradientsParams,
    ) -> Vec<(ParamId, Vec<f32>)> {
        struct Collect<'a> {
            grads: &'a GradientsParams,
            out: Vec<(ParamId, Vec<f32>)>,
        }
        impl ModuleVisitor for Collect<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if let Some(g) = self.grads.get::<D>(param.id) {
                    let v = g.into_data().try_to_vec::<f32>().unwrap();
                    self.out.push((param.id, v));
                }
            }
        }
        let mut c = Collect {
            grads,
            out: Vec::new(),
        };
        module.visit(&mut c);
        c.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_every_row_once() {
        assert_eq!(ranges(10, 3), vec![0..3, 3..6, 6..10]);
        assert_eq!(ranges(2, 4), vec![0..1, 1..2]);
        assert_eq!(ranges(0, 2), vec![0..0]);
        assert_eq!(ranges(5, 1), vec![0..5]);
    }

    #[test]
    fn on_threads_keeps_the_order_and_the_first_error() {
        let out = on_threads((0..5).collect(), |i: usize| Ok(i * 10)).unwrap();
        assert_eq!(out, vec![0, 10, 20, 30, 40]);
        let err = on_threads((0..4).collect(), |i: usize| {
            if i >= 2 {
                Err(crate::CoreError::Config(format!("shard {i}")))
            } else {
                Ok(i)
            }
        })
        .unwrap_err();
        assert!(err.to_string().contains("shard 2"), "{err}");
    }

    #[test]
    fn map_rows_concatenates_in_row_order() {
        let out = map_rows(&7usize, 100, 10, |m, r| Ok(r.map(|i| i * m).collect())).unwrap();
        assert_eq!(out, (0..100).map(|i| i * 7).collect::<Vec<_>>());
    }
}
