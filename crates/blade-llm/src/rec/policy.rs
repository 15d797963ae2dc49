//! The LLM as a blade [`Policy`] and [`Recommender`]: sampling and greedy decoding (no beam
//! search) under the title trie, list log-probabilities and whole-catalogue scoring.

use blade_core::batch::PromptBatch;
use blade_core::error::CoreError;
use blade_core::policy::sampling::{greedy_pick, sample_pick, Blocked};
use blade_core::policy::{
    DecodeStrategy, Policy, Recommender, Rollouts, SampleSpec, TokenLogProbs,
};
use blade_data::ItemId;
use burn::prelude::*;
use rand::rngs::StdRng;

use std::sync::Arc;

use super::prompt::PromptTemplate;
use super::trie::{allowed_tensors, local_vocabulary, TitleIndex, Walker};
use crate::lm::{ids_tensor, to_vec, LanguageModel};
use crate::model::{KvCache, Llama, LlamaConfig};
use crate::tokenizer::{ChatTemplate, Tokenizer};

type CoreResult<T> = blade_core::error::Result<T>;

fn core_err(e: impl std::fmt::Display) -> CoreError {
    CoreError::Config(e.to_string())
}

/// Everything of an [`LlmPolicy`] that is not a trainable tensor.
#[derive(Debug)]
pub struct LlmContext {
    /// Hyperparameters of the model.
    pub config: LlamaConfig,
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// The model's chat template.
    pub chat: ChatTemplate,
    /// The catalogue's titles and trie.
    pub index: TitleIndex,
    /// The prompt template.
    pub template: PromptTemplate,
    /// The `{k}` the prompt asks for: fixed, so that sampling, `log_prob` and `score_all` all
    /// condition on the same text whatever list length they handle.
    pub prompt_k: usize,
    /// Items per batch row group when scoring the whole catalogue.
    pub score_chunk: usize,
}

/// An LLM that recommends catalogue items by writing their titles. A burn module: the decoder's
/// weights (and LoRA adapters) are its parameters; the tokenizer, catalogue and prompt are
/// shared, immutable context.
#[derive(Module, Debug)]
pub struct LlmPolicy {
    /// The decoder.
    pub model: Llama,
    /// Tokenizer, catalogue trie and prompt.
    #[module(skip)]
    pub ctx: Arc<LlmContext>,
}

impl LlmPolicy {
    /// A policy over `titles` (indexed by item id) with the newline as separator.
    pub fn new(
        lm: LanguageModel,
        titles: &[String],
        template: PromptTemplate,
    ) -> Result<Self, String> {
        let sep = lm
            .tokenizer
            .encode("\n", false)
            .map_err(|e| e.to_string())?;
        let [sep] = sep[..] else {
            return Err("the newline is not a single token in this vocabulary".into());
        };
        let index = TitleIndex::build(&lm.tokenizer, titles, sep)?;
        Ok(Self {
            model: lm.model,
            ctx: Arc::new(LlmContext {
                config: lm.config,
                tokenizer: lm.tokenizer,
                chat: lm.template,
                index,
                template,
                prompt_k: 10,
                score_chunk: 128,
            }),
        })
    }

    /// The catalogue index.
    pub fn index(&self) -> &TitleIndex {
        &self.ctx.index
    }

    /// A copy without autodiff (shares the context).
    pub fn inference(&self) -> Self {
        Self {
            model: self.model.valid(),
            ctx: self.ctx.clone(),
        }
    }

    /// Whether any parameter tracks gradients (the model lives on an autodiff device).
    fn has_trainable(&self) -> bool {
        struct Any(bool);
        impl burn::module::ModuleVisitor for Any {
            fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<D>>) {
                self.0 |= p.val().is_require_grad();
            }
        }
        let mut v = Any(false);
        self.model.visit(&mut v);
        v.0
    }

    /// The prompt text of one history.
    pub fn prompt_text(&self, history: &[ItemId], k: usize) -> String {
        let titles: Vec<&str> = history
            .iter()
            .filter_map(|&i| self.ctx.index.titles.get(i as usize).map(String::as_str))
            .collect();
        self.ctx.template.render(&self.ctx.chat, &titles, k)
    }

    fn prompt_tokens(&self, prompts: &PromptBatch) -> CoreResult<Vec<Vec<u32>>> {
        let toks = prompts
            .histories
            .iter()
            .map(|h| {
                self.ctx
                    .tokenizer
                    .encode(&self.prompt_text(h, self.ctx.prompt_k), true)
                    .map_err(core_err)
            })
            .collect::<CoreResult<Vec<_>>>()?;
        // room for a list of prompt_k of the longest titles
        let longest = self
            .ctx
            .index
            .tokens
            .iter()
            .map(Vec::len)
            .max()
            .unwrap_or(0);
        let need = toks.iter().map(Vec::len).max().unwrap_or(0) + self.ctx.prompt_k * longest;
        if need > self.ctx.config.max_seq_len {
            return Err(CoreError::Config(format!(
                "a prompt plus a list of {} titles needs up to {need} tokens, more than the model's \
                 rotary table ({} positions); shorten the history (--history-len) or raise the cap",
                self.ctx.prompt_k, self.ctx.config.max_seq_len
            )));
        }
        Ok(toks)
    }

    fn device(&self) -> Device {
        self.model.embed.val().device()
    }

    /// Left-pads token rows; returns `(tokens, pad mask)`.
    fn left_pad(&self, rows: &[Vec<u32>]) -> (Tensor<2, Int>, Tensor<2, Bool>) {
        let len = rows.iter().map(Vec::len).max().unwrap_or(0);
        let pad_id = self.ctx.tokenizer.eos().unwrap_or(0);
        let mut toks = Vec::with_capacity(rows.len());
        let mut mask = Vec::with_capacity(rows.len() * len);
        for r in rows {
            let n = len - r.len();
            let mut t = vec![pad_id; n];
            t.extend_from_slice(r);
            toks.push(t);
            mask.extend((0..len).map(|i| i < n));
        }
        let device = self.device();
        (
            ids_tensor(&toks, &device),
            Tensor::from_data(TensorData::new(mask, [rows.len(), len]), &device),
        )
    }

    /// Prefills the prompts; returns the cache and the next-token logits of each prompt.
    fn prefill(&self, prompts: &[Vec<u32>]) -> CoreResult<(KvCache, Vec<Vec<f32>>)> {
        let (tokens, pad) = self.left_pad(prompts);
        let mut cache = KvCache::new(self.ctx.config.n_layers);
        let [b, s] = tokens.dims();
        let hidden = self.model.forward_hidden(tokens, Some(pad), &mut cache);
        let d = hidden.dims()[2];
        let last = self
            .model
            .logits(hidden.slice([0..b, s - 1..s, 0..d]).reshape([b, d]));
        let v = last.dims()[1];
        let flat = to_vec(last).map_err(core_err)?;
        Ok((cache, flat.chunks(v).map(<[f32]>::to_vec).collect()))
    }

    /// Lockstep constrained decoding of `per_prompt` lists of `k` items per prompt.
    fn generate(
        &self,
        prompts: &PromptBatch,
        per_prompt: usize,
        k: usize,
        mut pick: impl FnMut(&[f32]) -> CoreResult<(usize, f32)>,
    ) -> CoreResult<(Vec<Vec<ItemId>>, Vec<f32>)> {
        let toks = self.prompt_tokens(prompts)?;
        let (cache, first) = self.prefill(&toks)?;
        let mut cache = cache.repeat_rows(per_prompt);
        let rows = prompts.len() * per_prompt;
        let mut walkers: Vec<Walker> = (0..rows)
            .map(|r| Walker::new(&self.ctx.index, &prompts.exclude[r / per_prompt]))
            .collect();
        let mut logits: Vec<Vec<f32>> = (0..rows).map(|r| first[r / per_prompt].clone()).collect();
        let filler = self.ctx.tokenizer.eos().unwrap_or(0);
        let device = self.device();
        loop {
            let mut next = vec![filler; rows];
            let mut active = false;
            for (r, w) in walkers.iter_mut().enumerate() {
                if w.items.len() >= k {
                    continue;
                }
                let allowed = self.ctx.index.allowed(w.node, &w.blocked);
                if allowed.is_empty() {
                    return Err(CoreError::Config(
                        "no catalogue title left to write: the list length exceeds the catalogue minus the excluded items".into(),
                    ));
                }
                let sub: Vec<f32> = allowed
                    .iter()
                    .map(|&(t, _)| logits[r][t as usize])
                    .collect();
                let (j, lp) = pick(&sub)?;
                w.log_prob += lp;
                let (tok, child) = allowed[j];
                w.step(&self.ctx.index, child);
                next[r] = tok;
                active |= w.items.len() < k;
            }
            if !active {
                break;
            }
            let input = ids_tensor(&next.iter().map(|&t| vec![t]).collect::<Vec<_>>(), &device);
            let out = self.model.forward(input, None, &mut cache);
            let v = out.dims()[2];
            let flat = to_vec(out.reshape([rows, v])).map_err(core_err)?;
            logits = flat.chunks(v).map(<[f32]>::to_vec).collect();
        }
        Ok((
            walkers.iter().map(|w| w.items.clone()).collect(),
            walkers.iter().map(|w| w.log_prob).collect(),
        ))
    }

    /// At every step of every row, the log-probability of the chosen token (the first of the
    /// step's allowed set, as [`list_steps`](Self::list_steps) writes them) under the softmax
    /// restricted to that set, from the hidden states `[n, s, d]` that predict each step. The
    /// logits are computed at the batch's distinct allowed tokens only
    /// ([`Llama::logits_for`]). Returns the log-probs `[n, s]` and the validity mask `[n, s]`
    /// (0 past a row's end; the log-probs there are meaningless).
    fn chosen_log_probs(
        &self,
        hidden: Tensor<3>,
        mut sets: Vec<Vec<Vec<u32>>>,
    ) -> (Tensor<2>, Tensor<2>) {
        let [n, s, _] = hidden.dims();
        let vocab = local_vocabulary(&mut sets);
        let (idx, mask, valid) = allowed_tensors(&sets, s, &hidden.device());
        let sub = self.model.logits_for(hidden, &vocab).gather(2, idx) + mask;
        let lp = blade_core::kernels::log_softmax(sub, 2)
            .slice([0..n, 0..s, 0..1])
            .reshape([n, s]);
        (lp, valid)
    }

    /// Per list, the token sequence and at every token the allowed tokens with the chosen one
    /// first (what [`Policy::log_prob`] renormalises over).
    fn list_steps(
        &self,
        exclude: &[ItemId],
        list: &[ItemId],
    ) -> CoreResult<(Vec<u32>, Vec<Vec<u32>>)> {
        let mut w = Walker::new(&self.ctx.index, exclude);
        let mut seq = Vec::new();
        let mut allowed_sets = Vec::new();
        for &item in list {
            let toks = self.ctx.index.tokens.get(item as usize).ok_or_else(|| {
                CoreError::Config(format!(
                    "item {item} is outside the catalogue ({} titles)",
                    self.ctx.index.len()
                ))
            })?;
            for &tok in toks {
                let allowed = self.ctx.index.allowed(w.node, &w.blocked);
                let Some(&(_, child)) = allowed.iter().find(|(t, _)| *t == tok) else {
                    return Err(CoreError::Config(format!(
                        "item {item} cannot be written here (excluded or repeated in the list)"
                    )));
                };
                let mut set = vec![tok];
                set.extend(allowed.iter().map(|&(t, _)| t).filter(|&t| t != tok));
                allowed_sets.push(set);
                seq.push(tok);
                w.step(&self.ctx.index, child);
            }
        }
        Ok((seq, allowed_sets))
    }
}

impl Recommender for LlmPolicy {
    fn name(&self) -> String {
        "llm".into()
    }

    fn num_items(&self) -> usize {
        self.ctx.index.len()
    }

    /// Each item's title log-probability as the first line of the answer (trie-renormalised),
    /// one prompt prefill per user and the catalogue in chunks over the shared cache.
    fn score_all(&self, prompts: &PromptBatch) -> CoreResult<Vec<Vec<f32>>> {
        if self.has_trainable() {
            return self.inference().score_all(prompts);
        }
        let device = self.device();
        let mut out = Vec::with_capacity(prompts.len());
        for p in 0..prompts.len() {
            let one = prompts.slice(p..p + 1);
            let toks = self.prompt_tokens(&one)?;
            let (cache, first) = self.prefill(&toks)?;
            let first = &first[0];
            let mut scores = vec![f32::NEG_INFINITY; self.ctx.index.len()];
            let empty = vec![false; self.ctx.index.len()];
            let items: Vec<ItemId> = (0..self.ctx.index.len() as ItemId).collect();
            for chunk in items.chunks(self.ctx.score_chunk.max(1)) {
                let len = chunk
                    .iter()
                    .map(|&i| self.ctx.index.tokens[i as usize].len())
                    .max()
                    .unwrap_or(0);
                // inputs: all but the last token of each title, right-padded with the separator
                let sep = *self.ctx.index.tokens[chunk[0] as usize]
                    .last()
                    .unwrap_or(&0);
                let rows: Vec<Vec<u32>> = chunk
                    .iter()
                    .map(|&i| {
                        let t = &self.ctx.index.tokens[i as usize];
                        let mut r = t[..t.len() - 1].to_vec();
                        r.resize(len.saturating_sub(1).max(1), sep);
                        r
                    })
                    .collect();
                let mut c = cache.repeat_rows(chunk.len());
                let (n, s) = (rows.len(), rows[0].len());
                let pad_mask = Tensor::<2, Bool>::from_data(
                    TensorData::new(vec![false; n * s], [n, s]),
                    &device,
                );
                let hidden =
                    self.model
                        .forward_hidden(ids_tensor(&rows, &device), Some(pad_mask), &mut c);
                // position j - 1 predicts token j (j >= 1) over the trie children of its node
                let mut sets: Vec<Vec<Vec<u32>>> = Vec::with_capacity(n);
                let mut first_lp = Vec::with_capacity(n);
                for &item in chunk {
                    let t = &self.ctx.index.tokens[item as usize];
                    let mut node = 0usize;
                    let mut per = Vec::new();
                    for (j, &tok) in t.iter().enumerate() {
                        let allowed = self.ctx.index.allowed(node, &empty);
                        let pos = allowed.iter().position(|&(a, _)| a == tok).unwrap_or(0);
                        if j == 0 {
                            let sub: Vec<f32> =
                                allowed.iter().map(|&(a, _)| first[a as usize]).collect();
                            let lse =
                                blade_core::policy::sampling::masked_logsumexp(&sub, |_| true);
                            first_lp.push(sub[pos] - lse);
                        } else {
                            let mut set = vec![tok];
                            set.extend(allowed.iter().map(|&(a, _)| a).filter(|&a| a != tok));
                            per.push(set);
                        }
                        node = allowed[pos].1;
                    }
                    sets.push(per);
                }
                let (lp, valid) = self.chosen_log_probs(hidden, sets);
                let rest = to_vec((lp * valid).sum_dim(1).reshape([n])).map_err(core_err)?;
                for (ci, &item) in chunk.iter().enumerate() {
                    scores[item as usize] = first_lp[ci] + rest[ci];
                }
            }
            out.push(scores);
        }
        Ok(out)
    }

    fn decode(
        &self,
        prompts: &PromptBatch,
        k: usize,
        strategy: DecodeStrategy,
    ) -> CoreResult<Vec<Vec<ItemId>>> {
        if let DecodeStrategy::Beam(w) = strategy {
            if w > 1 {
                return Err(CoreError::Config(
                    "beam search is not implemented for the LLM policy; use greedy decoding".into(),
                ));
            }
        }
        if self.has_trainable() {
            return self.inference().decode(prompts, k, strategy);
        }
        let none = Blocked::default();
        let (lists, _) = self.generate(prompts, 1, k, |sub| {
            greedy_pick(sub, &none).map(|(i, lp)| (i as usize, lp))
        })?;
        Ok(lists)
    }
}

impl Policy for LlmPolicy {
    fn sample(
        &self,
        prompts: &PromptBatch,
        spec: &SampleSpec,
        rng: &mut StdRng,
    ) -> CoreResult<Rollouts> {
        if self.has_trainable() {
            // sampling needs no graph
            return self.inference().sample(prompts, spec, rng);
        }
        let none = Blocked::default();
        let (lists, log_probs) =
            self.generate(prompts, spec.lists_per_prompt, spec.list_len, |sub| {
                sample_pick(sub, &none, spec, rng).map(|(i, lp)| (i as usize, lp))
            })?;
        Ok(Rollouts {
            group_size: spec.lists_per_prompt,
            lists,
            log_probs,
        })
    }

    /// Differentiable trie-renormalised log-probabilities of `lists[i]` given prompt `i`.
    fn log_prob(&self, prompts: &PromptBatch, lists: &[Vec<ItemId>]) -> CoreResult<Tensor<1>> {
        Ok(self.token_log_probs(prompts, lists)?.sum())
    }

    /// One token per title token of the written list (separators included), trie-renormalised;
    /// the mask marks each row's real tokens.
    fn token_log_probs(
        &self,
        prompts: &PromptBatch,
        lists: &[Vec<ItemId>],
    ) -> CoreResult<TokenLogProbs> {
        if lists.len() != prompts.len() {
            return Err(CoreError::Config(format!(
                "{} lists for {} prompts",
                lists.len(),
                prompts.len()
            )));
        }
        let n = lists.len();
        let device = self.device();
        // rows of the same prompt (a group of G rollouts) share one prompt prefill
        let mut unique: Vec<usize> = Vec::new();
        let mut row_of: Vec<usize> = Vec::with_capacity(n);
        {
            let mut seen = std::collections::HashMap::<(&[ItemId], &[ItemId]), usize>::new();
            for i in 0..n {
                let key = (&prompts.histories[i][..], &prompts.exclude[i][..]);
                let u = *seen.entry(key).or_insert_with(|| {
                    unique.push(i);
                    unique.len() - 1
                });
                row_of.push(u);
            }
        }
        let uniq_prompts = PromptBatch {
            histories: unique
                .iter()
                .map(|&i| prompts.histories[i].clone())
                .collect(),
            exclude: unique.iter().map(|&i| prompts.exclude[i].clone()).collect(),
        };
        let ptoks = self.prompt_tokens(&uniq_prompts)?;
        let mut seqs = Vec::with_capacity(n);
        let mut sets = Vec::with_capacity(n);
        for (excl, list) in prompts.exclude.iter().zip(lists) {
            let (s, a) = self.list_steps(excl, list)?;
            seqs.push(s);
            sets.push(a);
        }
        let t_len = seqs.iter().map(Vec::len).max().unwrap_or(0);
        if t_len == 0 {
            return Ok(TokenLogProbs {
                values: Tensor::zeros([n, 1], &device),
                mask: Tensor::zeros([n, 1], &device),
            });
        }
        let filler = self.ctx.tokenizer.eos().unwrap_or(0);
        // prefill the distinct prompts; the last position predicts each list's first token
        let (ptok, ppad) = self.left_pad(&ptoks);
        let [u, p_len] = ptok.dims();
        let mut cache = KvCache::new(self.ctx.config.n_layers);
        let prompt_hidden = self.model.forward_hidden(ptok, Some(ppad), &mut cache);
        let d = prompt_hidden.dims()[2];
        let sel = Tensor::<1, Int>::from_data(
            TensorData::new(row_of.iter().map(|&r| r as i64).collect::<Vec<_>>(), [n]),
            &device,
        );
        let first = prompt_hidden
            .slice([0..u, p_len - 1..p_len, 0..d])
            .select(0, sel);
        // then every row's list tokens but the last (right-padded) over its prompt's cache
        let h = if t_len > 1 {
            let mut cache = cache.select_rows(&row_of);
            let rows: Vec<Vec<u32>> = seqs
                .iter()
                .map(|s| {
                    let mut r = s[..s.len().saturating_sub(1)].to_vec();
                    r.resize(t_len - 1, filler);
                    r
                })
                .collect();
            let rest = self
                .model
                .forward_hidden(ids_tensor(&rows, &device), None, &mut cache);
            Tensor::cat(vec![first, rest], 1)
        } else {
            first
        };
        let (lp, valid) = self.chosen_log_probs(h, sets);
        Ok(TokenLogProbs {
            values: lp * valid.clone(),
            mask: valid,
        })
    }
}
