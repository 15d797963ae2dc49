//! Experiments with blade, as library code: run folders and their manifest ([`run`]), the data
//! settings a run records ([`data`]), multi-seed comparisons ([`compare`]), tables and pictures.
//! The `blade` command line parses arguments and prints; what it runs lives here, so a program
//! can run the same experiments (on an item-level or an LLM policy) without the CLI.

pub mod compare;
pub mod data;
pub mod plot;
pub mod run;
pub mod stats;
pub mod table;

pub use compare::{compare, CompareOutcome, CompareSpec};
pub use data::DataSpec;
pub use run::{
    align_run, model_dir, open_run, open_run_lean, uses_belief, with_sft_belief, Checkpoint,
    GradientPasses, OpenedRun, RunKind, RunManifest,
};
pub use table::report_table;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// `f` over `items` with up to `jobs` threads (each takes the next item when it is free);
/// results in item order, the first failure (in item order) returned. Training runs on burn's
/// CPU backend keep about one core busy each, so independent runs gain from running side by
/// side; each run is seeded on its own, so results do not depend on `jobs`.
pub fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    f: impl Fn(&T) -> blade_core::Result<R> + Sync,
) -> blade_core::Result<Vec<R>> {
    let jobs = jobs.clamp(1, items.len().max(1));
    if jobs == 1 {
        return items.iter().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, blade_core::Result<R>)>();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let (tx, next, f) = (tx.clone(), &next, &f);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(i) else {
                    break;
                };
                if tx.send((i, f(item))).is_err() {
                    break;
                }
            });
        }
    });
    drop(tx);
    let mut out: Vec<Option<blade_core::Result<R>>> = (0..items.len()).map(|_| None).collect();
    for (i, r) in rx {
        out[i] = Some(r);
    }
    out.into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(blade_core::CoreError::Config(
                    "a worker stopped without a result".into(),
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_map_keeps_order_and_reports_the_first_failure() {
        let items: Vec<u64> = (0..20).collect();
        for jobs in [1, 2, 5, 64] {
            let out = parallel_map(&items, jobs, |&i| Ok(i * i)).unwrap();
            assert_eq!(out, items.iter().map(|i| i * i).collect::<Vec<_>>());
        }
        let e = parallel_map(&items, 3, |&i| {
            if i % 7 == 3 {
                Err(blade_core::CoreError::Config(format!("item {i}")))
            } else {
                Ok(i)
            }
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("item 3"), "{e}");
        assert!(parallel_map(&Vec::<u8>::new(), 2, |&i| Ok(i))
            .unwrap()
            .is_empty());
    }
}
