//! `blade bench`: throughput and step-time measurements printed as a table, measured in one
//! process so that ratios are comparable on a shared, noisy machine.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use blade_core::align::{AlignConfig, AlignInputs, Method, StepRecord};
use blade_core::reward::{parse_reward, CatalogInfo};
use blade_core::sft::{train_sft, Dashboard};
use blade_core::{Policy, PromptBatch, Recommender, SampleSpec};
use blade_exp::{align_run, open_run, Checkpoint, RunKind, RunManifest};
use clap::Args;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::common::{BackendArgs, DataArgs};
use crate::train_cmd::SftArgs;

/// Arguments of `blade bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Alignment steps timed per method (the first is not counted).
    #[arg(long, default_value_t = 12)]
    pub steps: usize,
    /// Scratch folder for the short SFT run the measurements start from and the alignment runs.
    #[arg(long, default_value = "runs/bench")]
    pub out: PathBuf,
    /// Measure this SFT run (item-level or LLM; its data settings are used) instead of
    /// training a short item-level one.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Prompts of the rollout measurement and per alignment step.
    #[arg(long, default_value_t = 32)]
    pub prompts: usize,
    /// Items per list (K) of the rollouts and alignment steps.
    #[arg(long, default_value_t = 10)]
    pub list_len: usize,
    /// Row shards (threads) of each alignment gradient pass, and of each batch of the SFT
    /// epoch it trains first (`--sft-grad-shards` of `blade train`).
    #[arg(long, default_value_t = AlignConfig::new(Method::BonStatic.default_config()).grad_shards)]
    pub grad_shards: usize,
    /// Also run the PyTorch peer of the item-level model (`--peer-script`) with this Python
    /// interpreter (one with `torch`; `benches/peers/setup.sh` makes one) on the same sizes,
    /// right after blade, and print the blade / peer speed ratios.
    #[arg(long)]
    pub peer: Option<PathBuf>,
    /// The peer script.
    #[arg(long, default_value = "benches/peers/torch_itemlm.py")]
    pub peer_script: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Runs `blade bench`.
pub fn run(a: BenchArgs) -> Result<()> {
    crate::common::check_out_folder(&a.out)?;
    if let Some(python) = &a.peer {
        crate::common::check_peer(python, &a.peer_script, "benches/peers/setup.sh")?;
    }
    let device = a.backend.device()?;
    let sft_dir = match &a.init {
        Some(init) => init.clone(),
        None => a.out.join("sft"),
    };
    let data = match &a.init {
        Some(init) => RunManifest::load_sft(init)?.data,
        None => a.data.clone(),
    };
    let (ds, split) = data.dataset_and_split()?;
    let mut sft_epoch = None;
    if a.init.is_none() {
        std::fs::create_dir_all(&sft_dir)?;
        RunManifest::new(RunKind::Item, "sft", &data, &ds).save(&sft_dir)?;
        let sft = SftArgs {
            epochs: 1,
            batch_size: 256,
            lr: 2e-3,
            patience: 1,
            d_model: 64,
            layers: 2,
            heads: 2,
            dropout: 0.1,
            list_len: 10,
            max_train_prompts: Some(20_000),
            seed: 42,
            sft_objective: blade_core::SftObjective::Windows,
            window_stride: 0,
            sft_grad_shards: a.grad_shards,
        };
        let config = sft.config(ds.num_items(), data.history_len);
        let t = Instant::now();
        train_sft(&config, &split, &device, &sft_dir, Dashboard::Plain, false)?;
        sft_epoch = Some(t.elapsed().as_secs_f64());
    }
    let model = open_run(&sft_dir, Checkpoint::Best, &device)?;
    let kind = model.manifest.kind;
    if a.peer.is_some() && kind != RunKind::Item {
        bail!("--peer: the PyTorch peer implements the item-level model, not the LLM policy");
    }

    let mut rows: Vec<(String, String)> = Vec::new();
    if let Some(s) = sft_epoch {
        rows.push((
            format!(
                "SFT epoch of {} windows, batch 256 (+ validation)",
                split.train.len().min(20_000)
            ),
            format!("{s:.2} s"),
        ));
    }
    // rollout throughput: G = 16 lists of K = 10 per prompt
    let prompts = PromptBatch::from_cases(&split.test[..split.test.len().min(a.prompts)], true);
    let spec = SampleSpec {
        lists_per_prompt: 16,
        list_len: a.list_len,
        ..SampleSpec::default()
    };
    let mut rng = StdRng::seed_from_u64(0);
    model.sample(&prompts, &spec, &mut rng)?; // warm-up
    let t = Instant::now();
    let mut lists = 0;
    for _ in 0..3 {
        lists += model.sample(&prompts, &spec, &mut rng)?.lists.len();
    }
    let rollout = lists as f64 / t.elapsed().as_secs_f64();
    rows.push((
        format!(
            "rollout lists/s (G=16, K={}, {} prompts)",
            a.list_len,
            prompts.len()
        ),
        format!("{rollout:.0}"),
    ));
    // full-ranking evaluation throughput: one pass over the test users to warm up, then 3
    // timed passes (as the peer does)
    let all = PromptBatch::from_cases(&split.test, true);
    let bs = kind.eval_batch_size();
    let all = all.slice(
        0..all.len().min(if kind == RunKind::Llm {
            a.prompts
        } else {
            usize::MAX
        }),
    );
    let rank_pass = || -> Result<usize> {
        let mut users = 0;
        for start in (0..all.len()).step_by(bs) {
            let batch = all.slice(start..(start + bs).min(all.len()));
            for (s, e) in model.score_all(&batch)?.iter().zip(&batch.exclude) {
                users += usize::from(!blade_metrics::top_k_by_scores(s, 10, e).is_empty());
            }
        }
        Ok(users)
    };
    let passes = if kind == RunKind::Llm { 1 } else { 3 };
    if kind != RunKind::Llm {
        rank_pass()?;
    }
    let t = Instant::now();
    let mut users = 0;
    for _ in 0..passes {
        users += rank_pass()?;
    }
    let ranking = users as f64 / t.elapsed().as_secs_f64();
    rows.push((
        "full-ranking users/s (score + top-10)".into(),
        format!("{ranking:.0}"),
    ));

    // one alignment step, blade vs bon-static, same settings
    let catalog = CatalogInfo::from_dataset(&ds, &split);
    let reward = parse_reward("ndcg@10", &catalog).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut step_times = Vec::new();
    for method in [Method::BonStatic, Method::Blade] {
        let mut cfg = AlignConfig::new(method.default_config())
            .with_steps(a.steps.max(2))
            .with_prompts_per_step(a.prompts)
            .with_list_len(a.list_len)
            .with_grad_shards(a.grad_shards)
            .with_eval_every(0);
        if kind == RunKind::Llm {
            // the reference cache and the held-out ceilings are one-off costs, not the step:
            // keep them small for a slow policy
            cfg = cfg
                .with_prompt_pool(blade_core::align::PromptPool::Sample(4 * a.prompts))
                .with_valid_users(Some(a.prompts));
        }
        let inputs = AlignInputs {
            split: &split,
            catalog: &catalog,
            reward: reward.as_ref(),
            init: &sft_dir,
            device: &device,
        };
        let out = align_run(
            &cfg,
            &inputs,
            &a.out.join(method.name()),
            Dashboard::Plain,
            false,
        )?;
        let steps: Vec<&StepRecord> = out.curves.iter().filter(|c| c.step > 1).collect();
        let step = mean(&steps.iter().map(|c| c.seconds_step).collect::<Vec<_>>());
        let target = mean(&steps.iter().map(|c| c.seconds_target).collect::<Vec<_>>());
        let grad = mean(&steps.iter().map(|c| c.seconds_grad).collect::<Vec<_>>());
        let lists = (cfg.prompts_per_step * cfg.group_size) as f64;
        rows.push((
            format!(
                "{} step time (B={}, G={}, K={}, {} inner epochs)",
                method.name(),
                cfg.prompts_per_step,
                cfg.group_size,
                cfg.list_len,
                cfg.inner_epochs
            ),
            format!("{:.3} s", step),
        ));
        rows.push((
            format!("{} target update + proxy rewards", method.name()),
            format!(
                "{:.3} ms ({:.3}% of the step)",
                target * 1e3,
                100.0 * target / step
            ),
        ));
        rows.push((
            format!("{} gradient steps", method.name()),
            format!("{:.3} s ({:.1}% of the step)", grad, 100.0 * grad / step),
        ));
        rows.push((
            format!("{} rollout + scoring lists/s", method.name()),
            format!("{:.0}", lists / (step - grad - target).max(1e-9)),
        ));
        step_times.push(step);
    }
    rows.push((
        "blade / bon-static step time".into(),
        format!("{:.3}", step_times[1] / step_times[0]),
    ));

    println!(
        "\n| measurement ({}, {} items, {} policy, backend {}, {}) | value |\n|---|---:|",
        data.data,
        ds.num_items(),
        kind.name(),
        a.backend.backend,
        crate::common::build_profile()
    );
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
    if let Some(python) = &a.peer {
        // the sizes of the peer's model (d = 64, feed-forward 256), which are the bench's SFT
        // model's; rows: the step's B x G x K list slots
        let g = AlignConfig::new(Method::BonStatic.default_config()).group_size;
        let kernels = Kernels::measure(
            &device,
            a.prompts * g * a.list_len,
            64,
            ds.num_items() + 2,
            256,
        );
        let ours = Measured {
            rollout_lists_per_s: rollout,
            align_step_s: step_times[0],
            sft_epoch_s: sft_epoch,
            full_rank_users_per_s: ranking,
            kernels,
        };
        peer_table(&a, python, &ours, ds.num_items(), data.history_len)?;
    }
    Ok(())
}

/// What blade measured, in the peer's units.
struct Measured {
    rollout_lists_per_s: f64,
    align_step_s: f64,
    sft_epoch_s: Option<f64>,
    full_rank_users_per_s: f64,
    kernels: Kernels,
}

/// Single backend operations at the sizes of one alignment step's training pass (`rows` =
/// B x G x K list slots), each the median seconds of 7 calls after a warm-up: where the
/// backend itself stands against PyTorch's, apart from blade's own code.
struct Kernels {
    /// The output head `[rows, d] x [d, vocab]`.
    head_forward_s: f64,
    /// Its two backward products, `[rows, vocab] x [vocab, d]` and `[d, rows] x [rows, vocab]`.
    head_backward_s: f64,
    /// `exp` over the `[rows, vocab]` logits.
    exp_s: f64,
    /// GELU over the feed-forward activations of the whole sequences, `[rows * 2, ff]` (about
    /// B x G x (L + K) tokens), burn's.
    gelu_s: f64,
    /// The same GELU by blade's kernel ([`blade_core::kernels::gelu`]).
    gelu_blade_s: f64,
    /// `log_softmax` over the `[rows, vocab]` logits' last dimension, burn's.
    log_softmax_s: f64,
    /// The same by blade's kernel ([`blade_core::kernels::log_softmax`]).
    log_softmax_blade_s: f64,
    rows: usize,
    d: usize,
    vocab: usize,
    ff: usize,
}

impl Kernels {
    fn measure(
        device: &burn::prelude::Device,
        rows: usize,
        d: usize,
        vocab: usize,
        ff: usize,
    ) -> Self {
        use burn::prelude::*;
        use burn::tensor::Distribution;
        let normal = Distribution::Normal(0.0, 1.0);
        let x = Tensor::<2>::random([rows, d], normal, device);
        let w = Tensor::<2>::random([d, vocab], normal, device);
        let g = Tensor::<2>::random([rows, vocab], normal, device);
        let h = Tensor::<2>::random([rows * 2, ff], normal, device);
        // reading one element back waits for the work on any backend
        let done = |t: Tensor<2>| {
            let _ = t.slice([0..1, 0..1]).into_data();
        };
        let time = |f: &dyn Fn()| {
            f();
            let mut v: Vec<f64> = (0..7)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64()
                })
                .collect();
            v.sort_by(f64::total_cmp);
            v[3]
        };
        Self {
            head_forward_s: time(&|| done(x.clone().matmul(w.clone()))),
            head_backward_s: time(&|| {
                done(g.clone().matmul(w.clone().transpose()));
                done(x.clone().transpose().matmul(g.clone()));
            }),
            exp_s: time(&|| done(g.clone().exp())),
            gelu_s: time(&|| done(burn::tensor::activation::gelu(h.clone()))),
            gelu_blade_s: time(&|| done(blade_core::kernels::gelu(h.clone()))),
            log_softmax_s: time(&|| done(burn::tensor::activation::log_softmax(g.clone(), 1))),
            log_softmax_blade_s: time(&|| done(blade_core::kernels::log_softmax(g.clone(), 1))),
            rows,
            d,
            vocab,
            ff,
        }
    }
}

/// Runs the PyTorch peer on the same sizes and prints blade's speed relative to it (> 1 =
/// blade faster), per measurement.
fn peer_table(
    a: &BenchArgs,
    python: &std::path::Path,
    ours: &Measured,
    items: usize,
    history_len: usize,
) -> Result<()> {
    let threads = crate::common::peer_threads();
    let args: Vec<String> = [
        ("--items", items),
        ("--history-len", history_len),
        ("--list-len", a.list_len),
        ("--prompts", a.prompts),
        ("--threads", threads),
        ("--kernel-rows", ours.kernels.rows),
    ]
    .iter()
    .flat_map(|(k, v)| [k.to_string(), v.to_string()])
    .collect();
    let json = crate::common::run_peer(python, &a.peer_script, &args)?;
    let get = |k: &str| json.get(k).and_then(serde_json::Value::as_f64);
    println!(
        "\n| blade ({}) vs PyTorch {} ({threads} threads), same sizes, back to back | PyTorch | blade | blade speed / PyTorch |\n|---|---:|---:|---:|",
        crate::common::build_profile(),
        json.get("torch_version").and_then(|v| v.as_str()).unwrap_or("?")
    );
    let k = &ours.kernels;
    let kernel = |name: &str| {
        json.get("kernels")
            .and_then(|j| j.get(name))
            .and_then(serde_json::Value::as_f64)
    };
    let head = format!("[{}x{}]x[{}x{}]", k.rows, k.d, k.d, k.vocab);
    let rows: [(String, Option<f64>, Option<f64>, bool); 11] = [
        (
            "rollout lists/s".into(),
            get("rollout_lists_per_s"),
            Some(ours.rollout_lists_per_s),
            true,
        ),
        (
            "alignment step, s".into(),
            get("align_step_s"),
            Some(ours.align_step_s),
            false,
        ),
        (
            "SFT epoch, s".into(),
            get("sft_epoch_s"),
            ours.sft_epoch_s,
            false,
        ),
        (
            "full-ranking users/s".into(),
            get("full_rank_users_per_s"),
            Some(ours.full_rank_users_per_s),
            true,
        ),
        (
            format!("kernel: output head {head}, ms"),
            kernel("head_forward_s").map(|s| s * 1e3),
            Some(k.head_forward_s * 1e3),
            false,
        ),
        (
            "kernel: its two backward products, ms".into(),
            kernel("head_backward_s").map(|s| s * 1e3),
            Some(k.head_backward_s * 1e3),
            false,
        ),
        (
            format!("kernel: exp over [{}x{}], ms", k.rows, k.vocab),
            kernel("exp_s").map(|s| s * 1e3),
            Some(k.exp_s * 1e3),
            false,
        ),
        (
            format!("kernel: GELU over [{}x{}], burn's, ms", 2 * k.rows, k.ff),
            kernel("gelu_s").map(|s| s * 1e3),
            Some(k.gelu_s * 1e3),
            false,
        ),
        (
            format!("kernel: GELU over [{}x{}], blade's, ms", 2 * k.rows, k.ff),
            kernel("gelu_s").map(|s| s * 1e3),
            Some(k.gelu_blade_s * 1e3),
            false,
        ),
        (
            format!(
                "kernel: log_softmax over [{}x{}], burn's, ms",
                k.rows, k.vocab
            ),
            kernel("log_softmax_s").map(|s| s * 1e3),
            Some(k.log_softmax_s * 1e3),
            false,
        ),
        (
            format!(
                "kernel: log_softmax over [{}x{}], blade's, ms",
                k.rows, k.vocab
            ),
            kernel("log_softmax_s").map(|s| s * 1e3),
            Some(k.log_softmax_blade_s * 1e3),
            false,
        ),
    ];
    for (name, peer, blade, higher_is_better) in rows {
        let ratio = match (peer, blade) {
            (Some(p), Some(b)) if p > 0.0 && b > 0.0 => {
                format!("{:.2}x", if higher_is_better { b / p } else { p / b })
            }
            _ => "-".into(),
        };
        let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
        println!("| {name} | {} | {} | {ratio} |", f(peer), f(blade));
    }
    Ok(())
}
