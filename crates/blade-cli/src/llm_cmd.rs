//! `blade llm`: inspect and run a pretrained language model (GGUF or safetensors).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use blade_llm::gguf::GgufFile;
use blade_llm::LanguageModel;
use clap::{Args, Subcommand};

use crate::common::BackendArgs;

/// `blade llm ...`
#[derive(Subcommand, Debug)]
pub enum LlmCommand {
    /// Print a weight file's metadata and tensor directory summary.
    Info(InfoArgs),
    /// Token ids of texts, one JSON array per line (special tokens parsed).
    Tokenize(TokArgs),
    /// Next-token logits of the last position of a token sequence, as JSON.
    Logits(LogitsArgs),
    /// Greedy generation from a prompt, with tokens/s.
    Generate(GenArgs),
    /// Throughput of the language model (greedy generation, batched sampling, teacher-forced
    /// scoring on synthetic token ids) and of the title policy (constrained list sampling, list
    /// log-probabilities, catalogue scoring), printed as a table; `--peer` adds the same
    /// language-model workloads in Hugging Face transformers and the speed ratios.
    Bench(LlmBenchArgs),
}

/// `blade llm bench`
#[derive(Args, Debug)]
pub struct LlmBenchArgs {
    #[command(flatten)]
    w: WeightsArg,
    #[command(flatten)]
    mode: WeightsMode,
    #[command(flatten)]
    backend: BackendArgs,
    #[command(flatten)]
    data: crate::common::DataArgs,
    /// Prompts per sampling batch.
    #[arg(long, default_value_t = 4)]
    prompts: usize,
    /// Lists per prompt.
    #[arg(long, default_value_t = 4)]
    group_size: usize,
    /// Items per list.
    #[arg(long, default_value_t = 10)]
    list_len: usize,
    /// Users whose whole catalogue is scored.
    #[arg(long, default_value_t = 2)]
    score_users: usize,
    /// Only the language-model workloads: skip the title-policy rows (and the dataset).
    #[arg(long)]
    lm_only: bool,
    /// Length of the synthetic prompt of greedy generation and batched sampling.
    #[arg(long, default_value_t = 32)]
    prompt_len: usize,
    /// Tokens generated per sequence by greedy generation and batched sampling (never stopped
    /// early by an end-of-sequence token).
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    /// Sequences sampled together from the same prompt (temperature 1, KV cache).
    #[arg(long, default_value_t = 16)]
    sample_rows: usize,
    /// Rows of the teacher-forced scoring batch.
    #[arg(long, default_value_t = 16)]
    score_rows: usize,
    /// Tokens per row of the teacher-forced scoring batch.
    #[arg(long, default_value_t = 128)]
    score_len: usize,
    /// Timed runs of each language-model workload after one warm-up; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Also run the Hugging Face transformers peer (`--peer-script`) with this Python
    /// interpreter (one with torch, transformers and gguf; `benches/peers/setup_hf.sh` makes
    /// one) on the same weights, token ids, sizes and threads, right after blade, and print the
    /// blade / transformers speed ratios. The weights must be a `.gguf` file or a Hugging Face
    /// folder.
    #[arg(long)]
    peer: Option<PathBuf>,
    /// The peer script.
    #[arg(long, default_value = "benches/peers/hf_llm.py")]
    peer_script: PathBuf,
}

/// The weights to load.
#[derive(Args, Debug)]
pub struct WeightsArg {
    /// A `.gguf` file, a Hugging Face folder with config.json, *.safetensors, tokenizer.json,
    /// or a repo id in the local Hugging Face cache: `org/name[@revision][:FILE]`.
    #[arg(long)]
    pub weights: PathBuf,
}

/// How an inference command holds a GGUF file's quantised weights.
#[derive(Args, Debug)]
pub struct WeightsMode {
    /// Dequantise the weights a GGUF file stores in Q4_0 / Q4_1 / Q8_0 blocks to f32 at load.
    /// By default they stay in their blocks and are multiplied directly: memory near the file's
    /// size, and the same products up to summation order (docs/results/speed-llm.md).
    #[arg(long)]
    dequantise: bool,
}

impl WeightsArg {
    /// The file or folder `--weights` names (a repo id resolved from the Hugging Face cache).
    pub fn resolve(&self) -> Result<PathBuf> {
        Ok(blade_llm::hub::resolve_weights(&self.weights)?)
    }
}

/// `blade llm info`
#[derive(Args, Debug)]
pub struct InfoArgs {
    #[command(flatten)]
    w: WeightsArg,
}

/// `blade llm tokenize`
#[derive(Args, Debug)]
pub struct TokArgs {
    #[command(flatten)]
    w: WeightsArg,
    /// Texts to tokenise.
    texts: Vec<String>,
    /// Also tokenise the texts of this JSON file (a list of strings, or `{"texts": [...]}`).
    #[arg(long)]
    texts_json: Option<PathBuf>,
    /// Write `{"texts", "ids", "decoded", "parse_special": true}` here instead of printing.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Tokenise with this pre-tokenizer instead of the file's `tokenizer.ggml.pre` (gpt2,
    /// smollm, llama3, qwen2, ...): checks the other pre-tokenizers on a real vocabulary.
    #[arg(long)]
    pre: Option<String>,
}

/// `blade llm logits`
#[derive(Args, Debug)]
pub struct LogitsArgs {
    /// A `.gguf` file, a Hugging Face folder, or a repo id in the local Hugging Face cache.
    #[arg(long, required_unless_present = "run", conflicts_with = "run")]
    weights: Option<PathBuf>,
    /// An LLM run folder instead of `--weights`: the trained policy (base weights and the
    /// run's adapters), e.g. to compare with its export.
    #[arg(long)]
    run: Option<PathBuf>,
    #[command(flatten)]
    backend: BackendArgs,
    /// Comma-separated token ids.
    #[arg(long, value_delimiter = ',', required = true)]
    tokens: Vec<u32>,
    /// Output JSON file (`tokens`, `logits_last`, `top5_last`).
    #[arg(long)]
    out: PathBuf,
}

/// `blade llm generate`
#[derive(Args, Debug)]
pub struct GenArgs {
    #[command(flatten)]
    w: WeightsArg,
    #[command(flatten)]
    mode: WeightsMode,
    #[command(flatten)]
    backend: BackendArgs,
    /// The prompt.
    #[arg(long)]
    prompt: String,
    /// Wrap the prompt in the model's chat template (instruct models).
    #[arg(long)]
    chat: bool,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 32)]
    max_tokens: usize,
}

/// Runs `blade llm ...`.
pub fn run(c: LlmCommand) -> Result<()> {
    match c {
        LlmCommand::Info(a) => info(a),
        LlmCommand::Tokenize(a) => tokenize(a),
        LlmCommand::Logits(a) => logits(a),
        LlmCommand::Generate(a) => generate(a),
        LlmCommand::Bench(a) => bench(a),
    }
}

fn info(a: InfoArgs) -> Result<()> {
    let weights = a.w.resolve()?;
    let f = GgufFile::open(&weights)?;
    println!(
        "{} (GGUF v{}), {} tensors",
        weights.display(),
        f.version,
        f.tensors.len()
    );
    for (k, v) in &f.metadata {
        let s = match v.as_array() {
            Some(arr) => format!("[{} values]", arr.len()),
            None => {
                let s = format!("{v:?}");
                s.chars().take(100).collect()
            }
        };
        println!("  {k} = {s}");
    }
    let mut by_type = std::collections::BTreeMap::<String, usize>::new();
    for t in &f.tensors {
        *by_type.entry(t.ggml_type.to_string()).or_default() += 1;
    }
    println!("  tensor types: {by_type:?}");
    Ok(())
}

fn tokenize(a: TokArgs) -> Result<()> {
    let f = GgufFile::open(&a.w.resolve()?)?;
    let pre = match &a.pre {
        Some(name) => Some(
            blade_llm::tokenizer::PreTokenizer::from_gguf_name(name)
                .map_err(|e| anyhow::anyhow!("--pre: {e}"))?,
        ),
        None => None,
    };
    let tok = blade_llm::load::gguf_tokenizer_with(&f, pre)?;
    let mut texts = a.texts.clone();
    if let Some(p) = &a.texts_json {
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("{}: not JSON", p.display()))?;
        let list = v.get("texts").unwrap_or(&v);
        let arr = list.as_array().with_context(|| {
            format!(
                "{}: expected a list of strings or {{\"texts\": [...]}}",
                p.display()
            )
        })?;
        for (i, t) in arr.iter().enumerate() {
            let t = t
                .as_str()
                .with_context(|| format!("{}: entry {i} is not a string", p.display()))?;
            texts.push(t.to_string());
        }
    }
    if texts.is_empty() {
        anyhow::bail!("nothing to tokenise: give texts or --texts-json");
    }
    let mut ids = Vec::with_capacity(texts.len());
    for t in &texts {
        ids.push(
            tok.encode(t, true)
                .map_err(|e| anyhow::anyhow!("{t:?}: {e}"))?,
        );
    }
    match &a.json {
        Some(out) => {
            let decoded: Vec<String> = ids.iter().map(|i| tok.decode(i)).collect();
            let json = serde_json::json!({
                "texts": texts, "ids": ids, "decoded": decoded, "parse_special": true,
            });
            blade_data::write_atomic(out, serde_json::to_string(&json)?.as_bytes())?;
            println!("{} texts tokenised into {}", texts.len(), out.display());
        }
        None => {
            for i in &ids {
                println!("{}", serde_json::to_string(i)?);
            }
        }
    }
    Ok(())
}

/// How `lm` holds its weights, for tables and messages.
fn held_as(lm: &LanguageModel) -> &'static str {
    if lm.model.quantised() {
        "weights in their GGUF blocks"
    } else {
        "f32 weights"
    }
}

/// Loads the weights `w` names; `quantised`: block-quantised GGUF weights stay in their blocks.
fn load(w: &WeightsArg, b: &BackendArgs, quantised: bool) -> Result<LanguageModel> {
    let device = b.device()?;
    let t0 = Instant::now();
    let weights = w.resolve()?;
    let lm = LanguageModel::load_with(&weights, Some(4096), quantised, &device)
        .with_context(|| format!("loading {}", weights.display()))?;
    eprintln!(
        "loaded {} ({} layers, d={}, {} heads / {} kv heads, vocab {}, {}) in {:.1} s",
        weights.display(),
        lm.config.n_layers,
        lm.config.d_model,
        lm.config.n_heads,
        lm.config.n_kv_heads,
        lm.config.vocab_size,
        held_as(&lm),
        t0.elapsed().as_secs_f64()
    );
    Ok(lm)
}

fn logits(a: LogitsArgs) -> Result<()> {
    let (config, model) = match (&a.run, &a.weights) {
        (Some(run), _) => {
            let (_, policy) = blade_llm::run::load_llm_run(run, &a.backend.device()?)?;
            (policy.ctx.config.clone(), policy.model)
        }
        (None, Some(w)) => {
            let lm = load(&WeightsArg { weights: w.clone() }, &a.backend, false)?;
            (lm.config, lm.model)
        }
        (None, None) => anyhow::bail!("give --weights or --run"),
    };
    if let Some(bad) = a.tokens.iter().find(|&&t| t as usize >= config.vocab_size) {
        anyhow::bail!(
            "--tokens: id {bad} is outside the vocabulary (0..{})",
            config.vocab_size
        );
    }
    if a.tokens.len() > config.max_seq_len {
        anyhow::bail!(
            "--tokens: {} ids exceed the model's rotary table of {} positions",
            a.tokens.len(),
            config.max_seq_len
        );
    }
    let t0 = Instant::now();
    let logits = blade_llm::lm::last_logits(&model, &a.tokens)?;
    let secs = t0.elapsed().as_secs_f64();
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&i, &j| logits[j].total_cmp(&logits[i]));
    let top5: Vec<(usize, f32)> = idx.iter().take(5).map(|&i| (i, logits[i])).collect();
    let json = serde_json::json!({
        "tokens": a.tokens,
        "logits_last": logits,
        "top5_last": top5,
        "forward_seconds": secs,
    });
    blade_data::write_atomic(&a.out, serde_json::to_string(&json)?.as_bytes())?;
    println!(
        "top-5 next tokens: {:?} ({} tokens in {secs:.2} s)",
        top5,
        a.tokens.len()
    );
    Ok(())
}

fn generate(a: GenArgs) -> Result<()> {
    let lm = load(&a.w, &a.backend, !a.mode.dequantise)?;
    let text = if a.chat {
        lm.template.render(None, &a.prompt)
    } else {
        a.prompt.clone()
    };
    let prompt = lm.encode(&text)?;
    let mut stop: Vec<u32> = lm.tokenizer.eos().into_iter().collect();
    if let Some(id) = lm
        .template
        .end_of_turn()
        .and_then(|t| lm.tokenizer.token_id(t))
    {
        stop.push(id);
    }
    let t0 = Instant::now();
    let out = lm.greedy(&prompt, a.max_tokens, &stop)?;
    let secs = t0.elapsed().as_secs_f64();
    println!("{}", lm.tokenizer.decode_skip_special(&out));
    eprintln!(
        "{} prompt tokens, {} generated in {secs:.2} s ({:.1} tokens/s, prefill included)",
        prompt.len(),
        out.len(),
        out.len() as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// Token `k` of the synthetic id stream of `blade llm bench` (and of its peer,
/// `benches/peers/hf_llm.py`, which uses the same formula): spread over the vocabulary, clear of
/// the first 100 ids where the usual vocabularies keep their special tokens.
fn synthetic_id(k: usize, vocab: usize) -> u32 {
    let lo = 100.min(vocab / 2);
    (lo + (k * 7919 + 13) % (vocab - lo)) as u32
}

/// Ids `start..start + n` of the synthetic stream.
fn synthetic_ids(start: usize, n: usize, vocab: usize) -> Vec<u32> {
    (start..start + n).map(|k| synthetic_id(k, vocab)).collect()
}

/// The median of `v` (the mean of the middle two for an even count).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs `f` once to warm up, then `repeats` times: the median seconds, every timed run's
/// seconds and the last result.
fn timed<T>(repeats: usize, mut f: impl FnMut() -> Result<T>) -> Result<(f64, Vec<f64>, T)> {
    let mut last = f()?;
    let mut secs = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let t = Instant::now();
        last = f()?;
        secs.push(t.elapsed().as_secs_f64());
    }
    Ok((median(&secs), secs, last))
}

/// What the plain language-model workloads measured, for the peer table.
struct LmMeasured {
    greedy_tps: f64,
    sample_tps: f64,
    score_tps: f64,
    greedy: Vec<u32>,
    score_mean_lp: f64,
    ids_checksum: u64,
}

/// Greedy generation, batched sampling and teacher-forced scoring on synthetic ids: table rows
/// and the figures.
fn lm_workloads(
    a: &LlmBenchArgs,
    lm: &LanguageModel,
) -> Result<(Vec<(String, String)>, LmMeasured)> {
    use rand::SeedableRng;
    let vocab = lm.config.vocab_size;
    let prompt = synthetic_ids(0, a.prompt_len, vocab);
    let p = prompt.len();
    let score_ids: Vec<Vec<u32>> = (0..a.score_rows)
        .map(|r| synthetic_ids(p + r * a.score_len, a.score_len, vocab))
        .collect();
    let ids_checksum: u64 = prompt
        .iter()
        .chain(score_ids.iter().flatten())
        .map(|&t| u64::from(t))
        .sum();
    // "(median of 3 runs: 1.20, 1.31, 1.25 s)"
    let fmt = |secs: &[f64]| {
        let list = secs
            .iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>()
            .join(", ");
        match secs.len() {
            1 => format!("one run: {list} s"),
            n => format!("median of {n} runs: {list} s"),
        }
    };
    let mut rows = Vec::new();

    eprintln!(
        "greedy generation: {p}-token prompt, {} new tokens",
        a.new_tokens
    );
    let with_prompt = || format!("--prompt-len {p} --new-tokens {}", a.new_tokens);
    let (secs, all, greedy) = timed(a.repeats, || {
        lm.greedy(&prompt, a.new_tokens, &[])
            .with_context(with_prompt)
    })?;
    let greedy_tps = greedy.len() as f64 / secs;
    rows.push((
        format!(
            "greedy generation, KV cache, batch 1 ({p}-token prompt + {} new, prefill included)",
            greedy.len()
        ),
        format!("{greedy_tps:.1} tokens/s ({})", fmt(&all)),
    ));

    eprintln!(
        "batched sampling: {} sequences x {} new tokens",
        a.sample_rows, a.new_tokens
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let (secs, all, sampled) = timed(a.repeats, || {
        lm.sample_batch(&prompt, a.sample_rows, a.new_tokens, 1.0, &mut rng)
            .with_context(with_prompt)
    })?;
    let sampled_tokens: usize = sampled.iter().map(Vec::len).sum();
    let sample_tps = sampled_tokens as f64 / secs;
    rows.push((
        format!(
            "batched sampling, KV cache, T = 1 ({} sequences x {} new, one {p}-token prefill)",
            a.sample_rows, a.new_tokens
        ),
        format!("{sample_tps:.1} tokens/s ({})", fmt(&all)),
    ));

    eprintln!("teacher-forced scoring: {} x {}", a.score_rows, a.score_len);
    let (secs, all, lp) = timed(a.repeats, || {
        lm.token_log_probs(&score_ids)
            .with_context(|| format!("--score-len {}", a.score_len))
    })?;
    let score_tps = (a.score_rows * a.score_len) as f64 / secs;
    let n_lp = lp.iter().map(Vec::len).sum::<usize>().max(1);
    let score_mean_lp = lp.iter().flatten().map(|&x| f64::from(x)).sum::<f64>() / n_lp as f64;
    rows.push((
        format!(
            "teacher-forced scoring, one forward of {} x {} (log-softmax, next-token log-probs)",
            a.score_rows, a.score_len
        ),
        format!("{score_tps:.1} tokens/s ({})", fmt(&all)),
    ));
    Ok((
        rows,
        LmMeasured {
            greedy_tps,
            sample_tps,
            score_tps,
            greedy,
            score_mean_lp,
            ids_checksum,
        },
    ))
}

/// Runs the transformers peer on the same weights, ids, sizes and threads and prints blade's
/// speed relative to it (> 1 = blade faster).
fn lm_peer_table(
    a: &LlmBenchArgs,
    python: &std::path::Path,
    weights: &std::path::Path,
    ours: &LmMeasured,
    held: &str,
) -> Result<()> {
    let threads = crate::common::peer_threads();
    let mut args: Vec<String> = vec!["--gguf".into(), weights.display().to_string()];
    for (k, v) in [
        ("--threads", threads),
        ("--prompt-len", a.prompt_len),
        ("--new-tokens", a.new_tokens),
        ("--sample-rows", a.sample_rows),
        ("--score-rows", a.score_rows),
        ("--score-len", a.score_len),
        ("--repeats", a.repeats),
    ] {
        args.push(k.into());
        args.push(v.to_string());
    }
    eprintln!(
        "running the peer: {} {} {}",
        python.display(),
        a.peer_script.display(),
        args.join(" ")
    );
    let json = crate::common::run_peer(python, &a.peer_script, &args)?;
    let get = |k: &str| json.get(k).and_then(serde_json::Value::as_f64);
    if let Some(sum) = json.get("ids_checksum").and_then(serde_json::Value::as_u64) {
        if sum != ours.ids_checksum {
            bail!(
                "--peer: the peer read other token ids than blade (id checksum {sum} vs {}): \
                 is its vocabulary ({}) another size?",
                ours.ids_checksum,
                json["sizes"]["vocab"]
            );
        }
    }
    let version = |k: &str| {
        json.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_string()
    };
    println!(
        "\n| work (blade, {}, {held}, vs transformers {}, torch {}, float32, {threads} threads, same ids, back to back) | transformers | blade | blade / transformers |\n|---|---:|---:|---:|",
        crate::common::build_profile(),
        version("transformers_version"),
        version("torch_version"),
    );
    let rows = [
        (
            format!(
                "greedy tokens/s ({} new, KV cache, prefill included)",
                a.new_tokens
            ),
            get("greedy_tokens_per_s"),
            ours.greedy_tps,
        ),
        (
            format!(
                "batched sampling tokens/s ({} sequences x {} new)",
                a.sample_rows, a.new_tokens
            ),
            get("sample_tokens_per_s"),
            ours.sample_tps,
        ),
        (
            format!(
                "teacher-forced scoring tokens/s ({} x {})",
                a.score_rows, a.score_len
            ),
            get("score_tokens_per_s"),
            ours.score_tps,
        ),
    ];
    for (name, peer, blade) in rows {
        let ratio = match peer {
            Some(p) if p > 0.0 && blade > 0.0 => format!("{:.2}x", blade / p),
            _ => "-".into(),
        };
        let peer = peer.map_or("-".into(), |p| format!("{p:.1}"));
        println!("| {name} | {peer} | {blade:.1} | {ratio} |");
    }
    // the peer's timed runs, to judge the noise as blade's rows allow
    let runs = |k: &str| {
        json["seconds"][k].as_array().map_or("?".into(), |v| {
            v.iter()
                .filter_map(serde_json::Value::as_f64)
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
    };
    println!(
        "\ntransformers' timed runs: greedy {} s; sampling {} s; scoring {} s",
        runs("greedy"),
        runs("sample"),
        runs("score")
    );
    // the two sides ran the same model: greedy tokens and mean log-probabilities agree
    if let Some(theirs) = json.get("greedy_tokens").and_then(|v| v.as_array()) {
        let theirs: Vec<u64> = theirs
            .iter()
            .filter_map(serde_json::Value::as_u64)
            .collect();
        let same = ours
            .greedy
            .iter()
            .zip(&theirs)
            .take_while(|(a, b)| u64::from(**a) == **b)
            .count();
        println!(
            "greedy continuations agree on the first {same} of {} tokens; mean teacher-forced log-prob: blade {:.4}, transformers {}",
            ours.greedy.len().max(theirs.len()),
            ours.score_mean_lp,
            get("score_mean_log_prob").map_or("?".into(), |v| format!("{v:.4}"))
        );
    }
    Ok(())
}

fn bench(a: LlmBenchArgs) -> Result<()> {
    use blade_core::{Policy, PromptBatch, Recommender, SampleSpec};
    use rand::SeedableRng;
    if let Some(python) = &a.peer {
        crate::common::check_peer(python, &a.peer_script, "benches/peers/setup_hf.sh")?;
    }
    for (flag, v) in [
        ("--prompt-len", a.prompt_len),
        ("--new-tokens", a.new_tokens),
        ("--sample-rows", a.sample_rows),
        ("--score-rows", a.score_rows),
        ("--repeats", a.repeats),
    ] {
        if v == 0 {
            bail!("{flag}: must be at least 1");
        }
    }
    if a.score_len < 2 {
        bail!("--score-len: must be at least 2 (a token and its successor)");
    }
    let weights = a.w.resolve()?;
    let data = if a.lm_only {
        None
    } else {
        Some(a.data.dataset_and_split()?)
    };
    let lm = load(&a.w, &a.backend, !a.mode.dequantise)?;
    let held = held_as(&lm);
    let (mut lm_rows, measured) = lm_workloads(&a, &lm)?;
    lm_rows.insert(0, ("weights".into(), held.into()));
    let Some((ds, split)) = data else {
        print_rows(&lm_rows);
        if let Some(python) = &a.peer {
            lm_peer_table(&a, python, &weights, &measured, held)?;
        }
        return Ok(());
    };
    let titles: Vec<String> = ds.catalog.items.iter().map(|i| i.title.clone()).collect();
    let t0 = Instant::now();
    let policy = blade_llm::LlmPolicy::new(lm, &titles, blade_llm::PromptTemplate::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let index_s = t0.elapsed().as_secs_f64();
    let idx = policy.index();
    let title_tokens: usize = idx.tokens.iter().map(Vec::len).sum();
    let cases = &split.test[..split.test.len().min(a.prompts.max(a.score_users))];
    let prompts = PromptBatch::from_cases(&cases[..a.prompts.min(cases.len())], true);
    let prompt_tokens: usize = prompts
        .histories
        .iter()
        .map(|h| policy.prompt_text(h, 10))
        .map(|t| {
            policy
                .ctx
                .tokenizer
                .encode(&t, true)
                .map(|v| v.len())
                .unwrap_or(0)
        })
        .sum();
    let mut rows = lm_rows;
    rows.push((
        "catalogue".into(),
        format!(
            "{} titles, {title_tokens} tokens, trie of {} nodes, built in {index_s:.2} s",
            idx.len(),
            idx.num_nodes()
        ),
    ));
    // constrained sampling (prefill + lockstep decoding with the KV cache)
    let spec = SampleSpec {
        lists_per_prompt: a.group_size,
        list_len: a.list_len,
        ..SampleSpec::default()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let t = Instant::now();
    let roll = policy.sample(&prompts, &spec, &mut rng)?;
    let secs = t.elapsed().as_secs_f64();
    let gen_tokens: usize = roll
        .lists
        .iter()
        .flatten()
        .map(|&i| idx.tokens[i as usize].len())
        .sum();
    rows.push((
        format!("constrained sampling ({} prompts x {} lists x {} items)", prompts.len(), a.group_size, a.list_len),
        format!(
            "{:.1} s: {:.1} generated tokens/s, {:.2} lists/s ({prompt_tokens} prompt tokens prefilled)",
            secs,
            gen_tokens as f64 / secs,
            roll.lists.len() as f64 / secs
        ),
    ));
    // differentiable list log-probability (what a training step costs, forward only)
    let rep = prompts.repeat_each(a.group_size);
    let t = Instant::now();
    let lp = policy.log_prob(&rep, &roll.lists)?;
    let _ = lp.into_data();
    let secs = t.elapsed().as_secs_f64();
    rows.push((
        "list log-prob, full forward".into(),
        format!(
            "{:.1} s for {} lists: {:.1} tokens/s (prompt + list)",
            secs,
            roll.lists.len(),
            (prompt_tokens * a.group_size + gen_tokens) as f64 / secs
        ),
    ));
    // full-catalogue scoring with the prompt's KV cache shared
    let users = PromptBatch::from_cases(&cases[..a.score_users.min(cases.len())], true);
    let t = Instant::now();
    let scores = policy.score_all(&users)?;
    let secs = t.elapsed().as_secs_f64();
    rows.push((
        format!("prompt scoring, whole catalogue ({} users)", scores.len()),
        format!(
            "{:.1} s: {:.1} title tokens/s, {:.1} s per user",
            secs,
            (title_tokens * scores.len()) as f64 / secs,
            secs / scores.len().max(1) as f64
        ),
    ));
    print_rows(&rows);
    if let Some(python) = &a.peer {
        lm_peer_table(&a, python, &weights, &measured, held)?;
    }
    Ok(())
}

fn print_rows(rows: &[(String, String)]) {
    println!("\n| measurement | result |\n|---|---|");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_ids_match_the_peer_script() {
        // values printed by benches/peers/hf_llm.py's synthetic_ids
        assert_eq!(synthetic_ids(0, 4, 49152), [113, 8032, 15951, 23870]);
        assert_eq!(synthetic_ids(32, 3, 49152), [8261, 16180, 24099]);
        assert_eq!(synthetic_ids(0, 4, 267), [113, 183, 253, 156]);
        assert_eq!(synthetic_ids(0, 3, 10), [8, 7, 6]);
        assert!(synthetic_ids(0, 10_000, 267)
            .iter()
            .all(|&t| (100..267).contains(&t)));
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
