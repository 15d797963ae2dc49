#![allow(missing_docs)] // criterion_group! generates undocumented items
//! Throughput of the item-level policy on the CPU backend: list sampling (G = 16, K = 10) and
//! full-ranking evaluation. Run with `cargo bench -p blade-benches`.
//!
//! The model is untrained (throughput does not depend on the weights) and sized like the
//! ML-100K default config: 1,682 items, L = 10, d_model = 64, 2 layers.

use blade_core::policy::sampling::blocked;
use blade_core::{ItemLmConfig, Policy, PromptBatch, Recommender, SampleSpec};
use burn::tensor::Device;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::SeedableRng;

const ITEMS: usize = 1682;

fn prompts(n: usize) -> PromptBatch {
    let histories: Vec<Vec<u32>> = (0..n)
        .map(|u| {
            (0..10)
                .map(|j| ((u * 37 + j * 101) % ITEMS) as u32)
                .collect()
        })
        .collect();
    PromptBatch {
        exclude: histories.clone(),
        histories,
    }
}

fn bench(c: &mut Criterion) {
    let device = Device::flex();
    let model = ItemLmConfig::new(ITEMS).init(&device);
    let _ = blocked(&[], &[]);

    let mut g = c.benchmark_group("sampling");
    g.sample_size(10);
    for &batch in &[8usize, 32] {
        let p = prompts(batch);
        let spec = SampleSpec {
            lists_per_prompt: 16,
            list_len: 10,
            ..SampleSpec::default()
        };
        g.throughput(Throughput::Elements((batch * 16) as u64));
        g.bench_with_input(BenchmarkId::new("lists_G16_K10", batch), &p, |b, p| {
            let mut rng = StdRng::seed_from_u64(0);
            b.iter(|| model.sample(p, &spec, &mut rng).map(|r| r.lists.len()));
        });
    }
    g.finish();

    let mut g = c.benchmark_group("full_ranking");
    g.sample_size(10);
    let p = prompts(256);
    g.throughput(Throughput::Elements(256));
    g.bench_function("score_and_top10_users", |b| {
        b.iter(|| {
            let scores = model.score_all(&p).unwrap_or_default();
            scores
                .iter()
                .zip(&p.exclude)
                .map(|(s, e)| blade_metrics::top_k_by_scores(s, 10, e).len())
                .sum::<usize>()
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
