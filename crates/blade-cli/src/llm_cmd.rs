//! `blade llm`: inspect and run a pretrained language model (GGUF or safetensors).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
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
    /// Throughput of the title policy: prompt prefill, catalogue scoring, constrained list
    /// sampling and plain generation, in tokens/s, printed as a table.
    Bench(LlmBenchArgs),
}

/// `blade llm bench`
#[derive(Args, Debug)]
pub struct LlmBenchArgs {
    #[command(flatten)]
    w: WeightsArg,
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
}

/// The weights to load.
#[derive(Args, Debug)]
pub struct WeightsArg {
    /// A `.gguf` file, a Hugging Face folder with config.json, *.safetensors, tokenizer.json,
    /// or a repo id in the local Hugging Face cache: `org/name[@revision][:FILE]`.
    #[arg(long)]
    pub weights: PathBuf,
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

fn load(w: &WeightsArg, b: &BackendArgs) -> Result<LanguageModel> {
    let device = b.device()?;
    let t0 = Instant::now();
    let weights = w.resolve()?;
    let lm = LanguageModel::load(&weights, Some(4096), &device)
        .with_context(|| format!("loading {}", weights.display()))?;
    eprintln!(
        "loaded {} ({} layers, d={}, {} heads / {} kv heads, vocab {}) in {:.1} s",
        weights.display(),
        lm.config.n_layers,
        lm.config.d_model,
        lm.config.n_heads,
        lm.config.n_kv_heads,
        lm.config.vocab_size,
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
            let lm = load(&WeightsArg { weights: w.clone() }, &a.backend)?;
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
    let lm = load(&a.w, &a.backend)?;
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

fn bench(a: LlmBenchArgs) -> Result<()> {
    use blade_core::{Policy, PromptBatch, Recommender, SampleSpec};
    use rand::SeedableRng;
    let (ds, split) = a.data.dataset_and_split()?;
    let lm = load(&a.w, &a.backend)?;
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
    let mut rows: Vec<(String, String)> = vec![(
        "catalogue".into(),
        format!(
            "{} titles, {title_tokens} tokens, trie of {} nodes, built in {index_s:.2} s",
            idx.len(),
            idx.num_nodes()
        ),
    )];
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
    println!("\n| measurement | result |\n|---|---|");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
    Ok(())
}
