#![allow(missing_docs)] // criterion_group! generates undocumented items
//! LLM title policy throughput on a small random Llama (d = 128, 4 layers, byte-level vocabulary)
//! and 200 synthetic titles: constrained list sampling, whole-catalogue prompt scoring and the
//! differentiable list log-probability. Criterion reports time per call; divide the token counts
//! printed at start-up by it for tokens/s. `blade llm bench --weights <gguf>` measures a real
//! model the same way and prints tokens/s directly.

use blade_core::policy::{Policy, Recommender, SampleSpec};
use blade_core::PromptBatch;
use blade_llm::{LanguageModel, LlmPolicy, PromptTemplate};
use blade_testkit::{write_tiny_gguf, TinySpec};
use burn::prelude::*;
use criterion::{criterion_group, criterion_main, Criterion};
use rand::{rngs::StdRng, SeedableRng};

fn setup() -> (LlmPolicy, PromptBatch) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.gguf");
    let spec = TinySpec {
        d_model: 128,
        n_layers: 4,
        n_heads: 4,
        n_kv_heads: 2,
        d_ff: 256,
        ..TinySpec::default()
    };
    write_tiny_gguf(&path, &spec).unwrap();
    let lm = LanguageModel::load(&path, None, &Device::default()).unwrap();
    let titles: Vec<String> = (0..200)
        .map(|i| format!("movie {i} ({})", 1950 + i % 60))
        .collect();
    let policy = LlmPolicy::new(lm, &titles, PromptTemplate::default()).unwrap();
    let prompts = PromptBatch {
        histories: (0..4)
            .map(|u| (0..5).map(|j| (u * 7 + j * 3) % 200).collect())
            .collect(),
        exclude: vec![Vec::new(); 4],
    };
    (policy, prompts)
}

fn bench(c: &mut Criterion) {
    let (policy, prompts) = setup();
    let title_tokens: usize = policy.index().tokens.iter().map(Vec::len).sum();
    let spec = SampleSpec {
        lists_per_prompt: 4,
        list_len: 10,
        ..SampleSpec::default()
    };
    let roll = policy
        .sample(&prompts, &spec, &mut StdRng::seed_from_u64(0))
        .unwrap();
    let list_tokens: usize = roll
        .lists
        .iter()
        .flatten()
        .map(|&i| policy.index().tokens[i as usize].len())
        .sum();
    println!(
        "catalogue: 200 titles, {title_tokens} tokens; one sampling call writes {list_tokens} tokens"
    );
    let mut g = c.benchmark_group("llm_policy");
    g.sample_size(10);
    g.bench_function("sample 4 prompts x 4 lists x 10 titles", |b| {
        let mut rng = StdRng::seed_from_u64(1);
        b.iter(|| policy.sample(&prompts, &spec, &mut rng).unwrap())
    });
    let one = prompts.slice(0..1);
    g.bench_function("score whole catalogue, 1 prompt", |b| {
        b.iter(|| policy.score_all(&one).unwrap())
    });
    let rep = prompts.repeat_each(4);
    g.bench_function("log_prob of 16 lists", |b| {
        b.iter(|| policy.log_prob(&rep, &roll.lists).unwrap().into_data())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
