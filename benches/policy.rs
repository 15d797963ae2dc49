#![allow(missing_docs)] // criterion_group! generates undocumented items
//! Throughput of the item-level policy on the CPU backend: list sampling (G = 16, K = 10),
//! full-ranking evaluation, list log-probabilities (forward, and forward + backward), one policy
//! update of an alignment step (B x G = 256 lists: log-prob, clipped surrogate, backward, Adam)
//! and one SFT batch (256 windows: teacher-forced logits, cross-entropy, backward, Adam). Run with
//! `cargo bench -p blade-benches`.
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

fn lists(n: usize) -> Vec<Vec<u32>> {
    (0..n)
        .map(|r| {
            (0..10)
                .map(|j| ((r * 53 + j * 13 + 500) % ITEMS) as u32)
                .collect()
        })
        .collect()
}

fn bench_training(c: &mut Criterion) {
    use blade_core::align::loss::clipped_surrogate;
    use blade_core::align::OptimConfig;
    use blade_core::ItemLm;
    use burn::optim::{AdamConfig, GradientsParams};

    let device = Device::flex().autodiff();
    // 32 prompts x G = 8 lists, as in one alignment step
    let p = prompts(32).repeat_each(8);
    let l = lists(p.len());
    let mut g = c.benchmark_group("log_prob");
    g.sample_size(10);
    g.throughput(Throughput::Elements(p.len() as u64));
    let plain = ItemLmConfig::new(ITEMS)
        .with_dropout(0.0)
        .init(&Device::flex());
    g.bench_function("forward_256_lists", |b| {
        b.iter(|| plain.log_prob(&p, &l).map(|t| t.dims()[0]));
    });
    let model = ItemLmConfig::new(ITEMS).with_dropout(0.0).init(&device);
    g.bench_function("forward_backward_256_lists", |b| {
        b.iter(|| {
            let lp = model.log_prob(&p, &l).unwrap();
            lp.sum().backward()
        });
    });
    g.finish();

    let mut g = c.benchmark_group("training_step");
    g.sample_size(10);
    g.throughput(Throughput::Elements(p.len() as u64));
    let old: Vec<f32> = vec![-60.0; p.len()];
    let adv: Vec<f32> = (0..p.len()).map(|i| (i % 8) as f32 - 3.5).collect();
    let o = OptimConfig::new();
    let mut optim = AdamConfig::new().init();
    let mut policy = Some(model.clone());
    g.bench_function("policy_update_256_lists", |b| {
        b.iter(|| {
            let m = policy.take().unwrap();
            let lp = m.log_prob(&p, &l).unwrap();
            let (loss, _) = clipped_surrogate(&lp, &old, &adv, &o).unwrap();
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            policy = Some(optim.step(5e-4, m, grads));
        });
    });
    // SFT: 256 windows of L = 10 with K = 10 targets each
    let windows = prompts(256);
    let targets = lists(256);
    let labels: Vec<i64> = targets.iter().flatten().map(|&i| i64::from(i)).collect();
    let mut sft_optim = AdamConfig::new().init();
    let mut sft = Some(ItemLmConfig::new(ITEMS).init(&device));
    g.throughput(Throughput::Elements(256));
    g.bench_function("sft_batch_256_windows", |b| {
        b.iter(|| {
            let m = sft.take().unwrap();
            let logits = m.teacher_forced_logits(&windows.histories, &targets, 10, &device, None);
            let labels = burn::tensor::Tensor::<2, burn::tensor::Int>::from_data(
                burn::tensor::TensorData::new(labels.clone(), [256, 10]),
                &device,
            );
            let weights = burn::tensor::Tensor::<2>::ones([256, 10], &device);
            let loss = ItemLm::cross_entropy(logits, labels, weights);
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            sft = Some(sft_optim.step(1e-3, m, grads));
        });
    });
    g.finish();
}

criterion_group!(benches, bench, bench_training);
criterion_main!(benches);
