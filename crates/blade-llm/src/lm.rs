//! A loaded language model: weights, tokenizer and chat template, with greedy generation,
//! batched sampling, teacher-forced scoring and next-token logits.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use rand::RngExt;

use crate::error::LoadError;
use crate::load::{gguf_tokenizer, load_llama, load_llama_with, ModelFiles};
use crate::model::{KvCache, Llama, LlamaConfig};
use crate::tokenizer::{ChatTemplate, Tokenizer};

/// A model with its tokenizer.
#[derive(Debug)]
pub struct LanguageModel {
    /// Where it was loaded from.
    pub source: PathBuf,
    /// Hyperparameters.
    pub config: LlamaConfig,
    /// The decoder.
    pub model: Llama,
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// The chat template of the file (ChatML, Llama-3 or plain).
    pub template: ChatTemplate,
}

/// Errors of loading or running a language model.
#[derive(Debug, thiserror::Error)]
pub enum LmError {
    /// Loading failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The tokenizer failed.
    #[error("{0}")]
    Tokenizer(String),
    /// A tensor could not be read back.
    #[error("reading a result back from the device: {0}")]
    Device(String),
}

impl LanguageModel {
    /// Loads a `.gguf` file, or a Hugging Face folder (`config.json`, `*.safetensors`,
    /// `tokenizer.json`). `max_seq_len` caps the rotary table (memory).
    pub fn load(path: &Path, max_seq_len: Option<usize>, device: &Device) -> Result<Self, LmError> {
        Self::load_with(path, max_seq_len, false, device)
    }

    /// [`LanguageModel::load`]; with `quantised`, the weights a GGUF file stores in Q4_0 / Q4_1 /
    /// Q8_0 blocks stay in them ([`crate::load::load_llama_with`]): inference only.
    pub fn load_with(
        path: &Path,
        max_seq_len: Option<usize>,
        quantised: bool,
        device: &Device,
    ) -> Result<Self, LmError> {
        let st = match ModelFiles::open(path)? {
            ModelFiles::Gguf(f) => {
                let (config, model) = load_llama_with(&f, max_seq_len, quantised, device)?;
                let tokenizer = gguf_tokenizer(&f)?;
                let template =
                    ChatTemplate::detect(f.get("tokenizer.chat_template").and_then(|v| v.as_str()));
                return Ok(Self {
                    source: path.to_path_buf(),
                    config,
                    model,
                    tokenizer,
                    template,
                });
            }
            ModelFiles::Hf(st) => st,
        };
        let (config, model) = load_llama(&st, max_seq_len, device)?;
        let dir = st.dir().to_path_buf();
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_tokenizer_json(&tok_path)
            .map_err(|e| LmError::Tokenizer(e.to_string()))?;
        // a tokenizer with ids beyond the embedding's rows would index past it at run time
        crate::load::check_vocab_fits(&tok_path, &tokenizer, config.vocab_size)?;
        let jinja = std::fs::read_to_string(dir.join("tokenizer_config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["chat_template"].as_str().map(str::to_owned));
        let template = ChatTemplate::detect(jinja.as_deref());
        Ok(Self {
            source: path.to_path_buf(),
            config,
            model,
            tokenizer,
            template,
        })
    }

    /// The model with LoRA adapters on `lora`'s targets (fresh adapters leave it unchanged;
    /// the base weights are frozen), for training on `device`.
    pub fn with_lora(self, lora: &crate::model::LoraConfig, device: &Device) -> Self {
        Self {
            model: self.model.with_lora(lora, device),
            ..self
        }
    }

    /// Token ids of `text`; special tokens in it (e.g. `<|im_start|>`) are parsed.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LmError> {
        self.tokenizer
            .encode(text, true)
            .map_err(|e| LmError::Tokenizer(e.to_string()))
    }

    /// A token sequence the model can read: not empty, within the rotary table, every id a row
    /// of the embedding.
    fn check_tokens(&self, tokens: &[u32]) -> Result<(), LmError> {
        let n = tokens.len();
        if n > self.config.max_seq_len {
            return Err(LmError::Tokenizer(format!(
                "{n} tokens exceed the model's rotary table of {} positions",
                self.config.max_seq_len
            )));
        }
        if n == 0 {
            return Err(LmError::Tokenizer(
                "an empty token sequence (an empty prompt without a chat template?)".into(),
            ));
        }
        if let Some(&t) = tokens
            .iter()
            .find(|&&t| t as usize >= self.config.vocab_size)
        {
            return Err(LmError::Tokenizer(format!(
                "token id {t} is beyond the model's vocabulary of {} ids",
                self.config.vocab_size
            )));
        }
        Ok(())
    }

    /// Logits of the last position after `tokens` (one forward pass, no cache kept).
    pub fn last_logits(&self, tokens: &[u32]) -> Result<Vec<f32>, LmError> {
        self.check_tokens(tokens)?;
        last_logits(&self.model, tokens)
    }

    /// Greedy continuation of `prompt` with the KV cache: at most `max_new` tokens, stopping after
    /// any of `stop` or when the rotary table is full.
    pub fn greedy(
        &self,
        prompt: &[u32],
        max_new: usize,
        stop: &[u32],
    ) -> Result<Vec<u32>, LmError> {
        self.check_tokens(prompt)?;
        let device = self.model.embed.val().device();
        let mut cache = KvCache::new(self.config.n_layers);
        let mut out = Vec::new();
        let mut input = prompt.to_vec();
        // every generated token but the last is fed back: the sequence read stays within the table
        let room = self.config.max_seq_len - prompt.len() + 1;
        for _ in 0..max_new.min(room) {
            let logits = self
                .model
                .forward(ids_tensor(&[input], &device), None, &mut cache);
            let [_, s, v] = logits.dims();
            let last = to_vec(logits.slice([0..1, s - 1..s, 0..v]).reshape([v]))?;
            let next = argmax(&last) as u32;
            out.push(next);
            if stop.contains(&next) {
                break;
            }
            input = vec![next];
        }
        Ok(out)
    }

    /// `n` continuations of `prompt` sampled together with the KV cache: the prompt is prefilled
    /// once, its cache repeated for the `n` rows, then the rows decode in lockstep, each drawing
    /// its next token from `softmax(logits / temperature)` on the host ([`sample_logits`];
    /// `temperature <= 0` is greedy). Every row gets `max_new` tokens (no stop tokens), fewer only
    /// where the rotary table fills up. Draws come from `rng` row by row, step by step, so a seeded
    /// generator gives the same rows again.
    pub fn sample_batch<R: rand::Rng + ?Sized>(
        &self,
        prompt: &[u32],
        n: usize,
        max_new: usize,
        temperature: f32,
        rng: &mut R,
    ) -> Result<Vec<Vec<u32>>, LmError> {
        self.check_tokens(prompt)?;
        let room = self.config.max_seq_len - prompt.len() + 1;
        let steps = max_new.min(room);
        let mut rows = vec![Vec::with_capacity(steps); n];
        if n == 0 || steps == 0 {
            return Ok(rows);
        }
        let device = self.model.embed.val().device();
        let mut cache = KvCache::new(self.config.n_layers);
        let logits = self
            .model
            .forward(ids_tensor(&[prompt.to_vec()], &device), None, &mut cache);
        let [_, s, v] = logits.dims();
        let last = to_vec(logits.slice([0..1, s - 1..s, 0..v]).reshape([v]))?;
        for row in &mut rows {
            row.push(sample_logits(&last, temperature, rng) as u32);
        }
        let mut cache = cache.repeat_rows(n);
        for _ in 1..steps {
            let input: Vec<Vec<u32>> = rows.iter().map(|r| vec![r[r.len() - 1]]).collect();
            let logits = self
                .model
                .forward(ids_tensor(&input, &device), None, &mut cache);
            let host = to_vec(logits.reshape([n, v]))?;
            for (row, l) in rows.iter_mut().zip(host.chunks_exact(v)) {
                row.push(sample_logits(l, temperature, rng) as u32);
            }
        }
        Ok(rows)
    }

    /// Teacher-forced scoring of equal-length `rows` in one forward pass: for every row, the
    /// log-probability of each token after the first given the tokens before it (`len - 1`
    /// values per row; none for rows of one token).
    pub fn token_log_probs(&self, rows: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, LmError> {
        let Some(first) = rows.first() else {
            return Ok(Vec::new());
        };
        let s = first.len();
        if let Some(r) = rows.iter().position(|r| r.len() != s) {
            return Err(LmError::Tokenizer(format!(
                "row {r} has {} tokens where row 0 has {s}: rows must have equal lengths",
                rows[r].len()
            )));
        }
        for r in rows {
            self.check_tokens(r)?;
        }
        if s < 2 {
            return Ok(vec![Vec::new(); rows.len()]);
        }
        let b = rows.len();
        let device = self.model.embed.val().device();
        let mut cache = KvCache::new(self.config.n_layers);
        let logits = self
            .model
            .forward(ids_tensor(rows, &device), None, &mut cache);
        let v = logits.dims()[2];
        let targets: Vec<Vec<u32>> = rows.iter().map(|r| r[1..].to_vec()).collect();
        let lp = blade_core::kernels::log_softmax(logits.slice([0..b, 0..s - 1, 0..v]), 2)
            .gather(2, ids_tensor(&targets, &device).unsqueeze_dim::<3>(2))
            .reshape([b, s - 1]);
        Ok(to_vec(lp)?
            .chunks_exact(s - 1)
            .map(<[f32]>::to_vec)
            .collect())
    }
}

/// A token drawn from `softmax(logits / temperature)` with `rng` (one uniform draw); the
/// [`argmax`] when `temperature <= 0` or no logit is finite. NaN logits are never drawn.
pub fn sample_logits<R: rand::Rng + ?Sized>(
    logits: &[f32],
    temperature: f32,
    rng: &mut R,
) -> usize {
    let max = logits
        .iter()
        .copied()
        .filter(|x| !x.is_nan())
        .fold(f32::NEG_INFINITY, f32::max);
    if temperature <= 0.0 || !max.is_finite() {
        return argmax(logits);
    }
    let inv = 1.0 / f64::from(temperature);
    let weights: Vec<f64> = logits
        .iter()
        .map(|&x| {
            if x.is_nan() {
                0.0
            } else {
                (f64::from(x - max) * inv).exp()
            }
        })
        .collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (i, &w) in weights.iter().enumerate() {
        if u < w {
            return i;
        }
        u -= w;
    }
    // rounding left `u` past the end: the last token that can be drawn
    weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)
}

/// `[b, s]` token tensor from equal-length rows.
pub fn ids_tensor(rows: &[Vec<u32>], device: &Device) -> Tensor<2, Int> {
    let s = rows.first().map_or(0, Vec::len);
    let flat: Vec<i64> = rows.iter().flatten().map(|&t| i64::from(t)).collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), s]), device)
}

/// Host copy of a float tensor.
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, LmError> {
    t.try_into_data_as::<f32>()
        .map_err(|e| LmError::Device(format!("{e:?}")))?
        .try_into_vec::<f32>()
        .map_err(|e| LmError::Device(format!("{e:?}")))
}

/// Logits of the last position after `tokens` (`[vocab]`): one forward pass of `model`, no cache
/// kept. The caller checks the ids against the vocabulary and the rotary table.
pub fn last_logits(model: &Llama, tokens: &[u32]) -> Result<Vec<f32>, LmError> {
    let device = model.embed.val().device();
    let mut cache = KvCache::new(model.blocks.len());
    let logits = model.forward(ids_tensor(&[tokens.to_vec()], &device), None, &mut cache);
    let [_, s, v] = logits.dims();
    to_vec(logits.slice([0..1, s - 1..s, 0..v]).reshape([v]))
}

/// Index of the largest value (first on ties; NaN never wins).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}
