//! `ItemLm`: a decoder-only transformer over item tokens.
//!
//! Token layout of one prompt (`L` = `max_history`, `K` = `max_list`):
//!
//! ```text
//! slot:   0 .. L-1                    L      L+1 .. L+K-1
//! token:  [PAD..PAD h_1 .. h_n]       SEP    y_1 .. y_{K-1}
//! ```
//!
//! Histories are left-padded so the most recent item always sits at slot `L-1`; padded slots
//! are masked out of attention. The output at slot `L + j` is the distribution of list item
//! `y_{j+1}`. Attention is causal, so the same forward pass scores a whole list (training,
//! `log_prob`) or the next slot of a partial list (decoding). Sampling and greedy decoding keep
//! each layer's keys and values of earlier slots and run the new slot alone
//! (`ItemLm::incremental`); full ranking runs the final layer at the scored position only
//! (`ItemLm::last_hidden`). The encoder layers are burn's modules, run by blade's own layer
//! functions so that GELU and `log_softmax` use blade's CPU kernels (`crate::kernels`).

use blade_data::ItemId;
use burn::nn::attention::{generate_autoregressive_mask, MhaInput};
use burn::nn::transformer::{
    PositionWiseFeedForward, TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
    TransformerEncoderLayer,
};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{quiet_softmax, softmax};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::batch::PromptBatch;
use crate::checkpoint::fnv1a;
use crate::error::CoreError;
use crate::parallel;
use crate::policy::dropout::DropoutNoise;
use crate::policy::sampling::{beam_step, blocked, greedy_pick, sample_pick, Beam};
use crate::policy::{DecodeStrategy, Policy, Recommender, Rollouts, SampleSpec, TokenLogProbs};

/// Rows (sequences) a thread of inference work holds at least: smaller shards cost more in
/// per-call overhead than a second core gives back.
const MIN_ROWS_PER_THREAD: usize = 16;

/// Additive logit mask for disallowed items: large and finite so that `log_softmax` stays
/// finite even in a (never sampled) fully masked row.
pub const MASK_VALUE: f32 = -1.0e9;

/// Settings of [`ItemLm`].
#[derive(Config, Debug)]
pub struct ItemLmConfig {
    /// Catalogue size; item tokens are `0..num_items`, then PAD and SEP.
    pub num_items: usize,
    /// Longest history the prompt holds (`L`).
    #[config(default = 10)]
    pub max_history: usize,
    /// Longest list the model generates (`K`).
    #[config(default = 10)]
    pub max_list: usize,
    /// Width of the residual stream.
    #[config(default = 64)]
    pub d_model: usize,
    /// Transformer layers.
    #[config(default = 2)]
    pub n_layers: usize,
    /// Attention heads.
    #[config(default = 2)]
    pub n_heads: usize,
    /// Hidden width of the feed-forward blocks.
    #[config(default = 256)]
    pub d_ff: usize,
    /// Dropout in training mode.
    #[config(default = 0.1)]
    pub dropout: f64,
}

impl ItemLmConfig {
    /// Builds the model on `device` (use an autodiff device to train it).
    pub fn init(&self, device: &Device) -> ItemLm {
        let vocab = self.num_items + 2;
        let seq = self.max_history + self.max_list;
        ItemLm {
            item_emb: EmbeddingConfig::new(vocab, self.d_model).init(device),
            pos_emb: EmbeddingConfig::new(seq, self.d_model).init(device),
            encoder: TransformerEncoderConfig::new(
                self.d_model,
                self.d_ff,
                self.n_heads,
                self.n_layers,
            )
            .with_dropout(self.dropout)
            .with_norm_first(true)
            .init(device),
            norm: LayerNormConfig::new(self.d_model).init(device),
            head: LinearConfig::new(self.d_model, self.num_items).init(device),
            num_items: self.num_items,
            max_history: self.max_history,
            max_list: self.max_list,
        }
    }
}

/// The item-level autoregressive list policy.
#[derive(Module, Debug)]
pub struct ItemLm {
    item_emb: Embedding,
    pos_emb: Embedding,
    encoder: TransformerEncoder,
    norm: LayerNorm,
    head: Linear,
    num_items: usize,
    max_history: usize,
    max_list: usize,
}

/// See [`ItemLm::incremental`].
struct IncrementalDecoder<'a> {
    model: &'a ItemLm,
    histories: &'a [Vec<ItemId>],
    /// Per encoder layer, the attention keys and values of the positions seen so far,
    /// `[rows, heads, positions, d_k]` each (pre-norm layers).
    kv: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    /// Positions seen so far.
    seen: usize,
    /// burn's autoregressive cache, for a model with post-norm layers (which `ItemLmConfig`
    /// never builds).
    burn_cache: Option<burn::nn::transformer::TransformerEncoderAutoregressiveCache>,
}

impl IncrementalDecoder<'_> {
    /// Next-item logits after the rows' partial `lists` (all of equal length, each one item
    /// longer than at the previous call), on the host. The first call runs the whole prompt
    /// and keeps each layer's keys and values; each later call runs the one new position
    /// through every layer (its attention over the kept keys and values). A call whose length
    /// is not one more than the last one's starts again from the whole sequence.
    fn next(&mut self, lists: &[Vec<ItemId>]) -> crate::Result<Vec<Vec<f32>>> {
        let m = self.model;
        let n = self.histories.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let j = lists.first().map_or(0, Vec::len);
        let device = m.devices()[0].clone();
        let (tokens, pad) = m.encode(self.histories, lists, j).tensors(&device);
        let seq = tokens.dims()[1];
        let last = if let Some(cache) = self.burn_cache.as_mut() {
            let h = m
                .encoder
                .forward_autoregressive_inference(m.encoder_input(tokens, pad), cache);
            m.norm.forward(h.narrow(1, seq - 1, 1))
        } else if self.seen > 0 && seq == self.seen + 1 {
            let position =
                Tensor::<1, Int>::arange((seq - 1) as i64..seq as i64, &device).reshape([1, 1]);
            let mut x =
                m.item_emb.forward(tokens.narrow(1, seq - 1, 1)) + m.pos_emb.forward(position);
            for (layer, kv) in m.encoder.layers.iter().zip(self.kv.iter_mut()) {
                x = decode_layer(layer, x, &pad, kv);
            }
            m.norm.forward(x)
        } else {
            let (mut x, mask) = m.embed(tokens);
            for (layer, kv) in m.encoder.layers.iter().zip(self.kv.iter_mut()) {
                x = encoder_layer(layer, x, &pad, &mask, Dropouts::Modules, Some(kv));
            }
            m.norm.forward(x.narrow(1, seq - 1, 1))
        };
        self.seen = seq;
        m.host_rows(m.head.forward(last).reshape([n, m.num_items]))
    }
}

/// The list inputs after SEP when teaching `targets`: the targets shifted right by one (the
/// first `targets_len - 1` of each).
fn shifted_inputs(targets: &[Vec<ItemId>], targets_len: usize) -> Vec<Vec<ItemId>> {
    targets
        .iter()
        .map(|t| {
            t.iter()
                .take(targets_len.saturating_sub(1))
                .copied()
                .collect()
        })
        .collect()
}

/// Token ids and padding mask of a batch, on the host.
struct Encoded {
    tokens: Vec<i64>,
    pad: Vec<bool>,
    batch: usize,
    len: usize,
}

impl Encoded {
    /// `[batch, len]` token ids and padding mask on `device`.
    fn tensors(self, device: &Device) -> (Tensor<2, Int>, Tensor<2, Bool>) {
        let shape = [self.batch, self.len];
        (
            Tensor::from_data(TensorData::new(self.tokens, shape), device),
            Tensor::from_data(TensorData::new(self.pad, shape), device),
        )
    }
}

impl ItemLm {
    /// The PAD token id.
    pub fn pad_token(&self) -> usize {
        self.num_items
    }

    /// The SEP token id (start of the list).
    pub fn sep_token(&self) -> usize {
        self.num_items + 1
    }

    /// Longest history the prompt holds.
    pub fn max_history(&self) -> usize {
        self.max_history
    }

    /// Longest list the model can generate.
    pub fn max_list(&self) -> usize {
        self.max_list
    }

    /// Lays out `[history, SEP, list]` for each row; every list has `list_len` items (the
    /// caller pads with PAD where a row has fewer).
    fn encode(&self, histories: &[Vec<ItemId>], lists: &[Vec<ItemId>], list_len: usize) -> Encoded {
        let l = self.max_history;
        let len = l + 1 + list_len;
        let pad_tok = self.pad_token() as i64;
        let mut tokens = Vec::with_capacity(histories.len() * len);
        let mut pad = Vec::with_capacity(histories.len() * len);
        for (h, y) in histories.iter().zip(lists) {
            let h = &h[h.len().saturating_sub(l)..];
            for _ in 0..(l - h.len()) {
                tokens.push(pad_tok);
                pad.push(true);
            }
            for &i in h {
                tokens.push(i as i64);
                pad.push(false);
            }
            tokens.push(self.sep_token() as i64);
            pad.push(false);
            for j in 0..list_len {
                match y.get(j) {
                    Some(&i) => {
                        tokens.push(i as i64);
                        pad.push(false);
                    }
                    None => {
                        tokens.push(pad_tok);
                        pad.push(true);
                    }
                }
            }
        }
        Encoded {
            tokens,
            pad,
            batch: histories.len(),
            len,
        }
    }

    /// Hidden states of a token batch.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, seq]` (token ids), `pad`: `[batch, seq]` (true = padding)
    /// - output: `[batch, seq, d_model]`
    pub fn forward_hidden(&self, tokens: Tensor<2, Int>, pad: Tensor<2, Bool>) -> Tensor<3> {
        self.forward_layers(tokens, pad, Dropouts::Modules)
    }

    /// The encoder layers and the final norm. Pre-norm layers (all that `ItemLmConfig` builds)
    /// run [`encoder_layer`]: burn's layer computation written out, with blade's GELU kernel
    /// ([`crate::kernels::gelu`]) and `dropouts`' masks; any other layer runs burn's forward.
    fn forward_layers(
        &self,
        tokens: Tensor<2, Int>,
        pad: Tensor<2, Bool>,
        dropouts: Dropouts<'_>,
    ) -> Tensor<3> {
        let (mut x, mask) = self.embed(tokens);
        for layer in &self.encoder.layers {
            x = if layer.norm_first {
                encoder_layer(layer, x, &pad, &mask, dropouts, None)
            } else {
                layer.forward(x, Some(pad.clone()), Some(mask.clone()))
            };
        }
        self.norm.forward(x)
    }

    /// [`forward_hidden`](Self::forward_hidden) with the dropout masks drawn from `noise`
    /// instead of burn's process-global generator (training passes that run on threads; see
    /// [`DropoutNoise`]). Each pre-norm layer computes what burn's `TransformerEncoderLayer`
    /// does, from its public sub-modules, with the same four dropout sites at the same rates:
    /// the attention weights, the attention output, the feed-forward hidden activations and the
    /// feed-forward output. A post-norm layer (which `ItemLmConfig` never builds) runs burn's own
    /// forward.
    ///
    /// # Shapes
    /// - as [`forward_hidden`](Self::forward_hidden)
    pub fn forward_hidden_noisy(
        &self,
        tokens: Tensor<2, Int>,
        pad: Tensor<2, Bool>,
        noise: &DropoutNoise,
    ) -> Tensor<3> {
        self.forward_layers(tokens, pad, Dropouts::Seeded(noise))
    }

    /// Item + position embeddings with the padding and causal masks (burn's encoder input, for
    /// its autoregressive cache).
    fn encoder_input(
        &self,
        tokens: Tensor<2, Int>,
        pad: Tensor<2, Bool>,
    ) -> TransformerEncoderInput {
        let (x, mask) = self.embed(tokens);
        TransformerEncoderInput::new(x)
            .mask_pad(pad)
            .mask_attn(mask)
    }

    /// Item + position embeddings of a token batch and its causal attention mask.
    ///
    /// # Shapes
    /// - output: `[batch, seq, d_model]` and `[batch, seq, seq]`
    fn embed(&self, tokens: Tensor<2, Int>) -> (Tensor<3>, Tensor<3, Bool>) {
        let [batch, seq] = tokens.dims();
        let device = tokens.device();
        let positions = Tensor::<1, Int>::arange(0..seq as i64, &device).reshape([1, seq]);
        let x = self.item_emb.forward(tokens) + self.pos_emb.forward(positions);
        (x, generate_autoregressive_mask(batch, seq, &device))
    }

    /// Item logits at the list slots: slot `j` is the distribution of list item `j+1`.
    ///
    /// # Shapes
    /// - output: `[histories.len(), list_len + 1, num_items]` where lists hold `list_len` items
    fn list_logits(
        &self,
        histories: &[Vec<ItemId>],
        lists: &[Vec<ItemId>],
        list_len: usize,
        device: &Device,
        noise: Option<&DropoutNoise>,
    ) -> Tensor<3> {
        self.position_logits(histories, lists, list_len, self.max_history, device, noise)
    }

    /// Item logits at every position from `from` on (`from = max_history` is the SEP slot).
    ///
    /// # Shapes
    /// - output: `[histories.len(), max_history + list_len + 1 - from, num_items]`
    fn position_logits(
        &self,
        histories: &[Vec<ItemId>],
        lists: &[Vec<ItemId>],
        list_len: usize,
        from: usize,
        device: &Device,
        noise: Option<&DropoutNoise>,
    ) -> Tensor<3> {
        let (tokens, pad) = self.encode(histories, lists, list_len).tensors(device);
        let hidden = match noise {
            Some(noise) => self.forward_hidden_noisy(tokens, pad, noise),
            None => self.forward_hidden(tokens, pad),
        };
        let hidden = hidden.narrow(1, from, self.max_history + list_len + 1 - from);
        self.head.forward(hidden)
    }

    /// Next-item logits after `histories` and partial `lists` (all of equal length), on the host.
    fn next_logits(
        &self,
        histories: &[Vec<ItemId>],
        lists: &[Vec<ItemId>],
    ) -> crate::Result<Vec<Vec<f32>>> {
        let n = histories.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let j = lists.first().map_or(0, Vec::len);
        let device = self.devices()[0].clone();
        let (tokens, pad) = self.encode(histories, lists, j).tensors(&device);
        // the head only at the last position: the next item's distribution
        let last = self.last_hidden(tokens, pad);
        self.host_rows(self.head.forward(last).reshape([n, self.num_items]))
    }

    /// The hidden state of the last position only, after the final norm: the rows of
    /// [`forward_hidden`](Self::forward_hidden) at `seq - 1`, for inference (no dropout). The
    /// final layer computes its attention query, feed-forward block and norms at that position
    /// alone; its keys and values still come from every position. The earlier layers run whole.
    ///
    /// # Shapes
    /// - output: `[batch, 1, d_model]`
    fn last_hidden(&self, tokens: Tensor<2, Int>, pad: Tensor<2, Bool>) -> Tensor<3> {
        let seq = tokens.dims()[1];
        let (last, rest) = match self.encoder.layers.split_last() {
            Some((last, rest)) if last.norm_first => (last, rest),
            // ItemLmConfig builds pre-norm layers; anything else takes the full pass
            _ => return self.forward_hidden(tokens, pad).narrow(1, seq - 1, 1),
        };
        let (mut x, mask) = self.embed(tokens);
        for layer in rest {
            x = if layer.norm_first {
                encoder_layer(layer, x, &pad, &mask, Dropouts::Modules, None)
            } else {
                layer.forward(x, Some(pad.clone()), Some(mask.clone()))
            };
        }
        // the last query may attend to every key (causal), so only padding is masked
        let normed = last.norm_2.forward(x.clone());
        let query = normed.clone().narrow(1, seq - 1, 1);
        let attn = MhaInput::new(query, normed.clone(), normed).mask_pad(pad);
        let h = x.narrow(1, seq - 1, 1) + last.mha.forward(attn).context;
        let h = h.clone() + feed_forward(&last.pwff, last.norm_1.forward(h), Dropouts::Modules);
        self.norm.forward(h)
    }

    fn host_rows(&self, logits: Tensor<2>) -> crate::Result<Vec<Vec<f32>>> {
        let flat = to_host(logits)?;
        Ok(flat.chunks(self.num_items).map(<[f32]>::to_vec).collect())
    }

    /// An incremental decoder over `histories`: each call to [`IncrementalDecoder::next`]
    /// extends every row's list by the items given and returns the next-item logits, reusing
    /// the attention keys and values of earlier positions and computing the new position
    /// alone (with blade's GELU). Rows must keep their order from call to call.
    fn incremental<'a>(&'a self, histories: &'a [Vec<ItemId>]) -> IncrementalDecoder<'a> {
        let pre_norm = self.encoder.layers.iter().all(|l| l.norm_first);
        IncrementalDecoder {
            model: self,
            histories,
            kv: vec![None; self.encoder.layers.len()],
            seen: 0,
            burn_cache: (!pre_norm).then(|| self.encoder.new_autoregressive_cache()),
        }
    }

    /// Next-item training loss: mean cross-entropy over the list slots whose label is present.
    ///
    /// # Shapes
    /// - `logits`: `[batch, slots, num_items]`, `labels`: `[batch, slots]`,
    ///   `weights`: `[batch, slots]` (1 = counted, 0 = padding)
    /// - output: `[1]`
    pub fn cross_entropy(
        logits: Tensor<3>,
        labels: Tensor<2, Int>,
        weights: Tensor<2>,
    ) -> Tensor<1> {
        let total = weights.clone().sum().clamp_min(1.0);
        Self::cross_entropy_sum(logits, labels, weights) / total
    }

    /// The summed (not averaged) cross-entropy of [`cross_entropy`](Self::cross_entropy).
    ///
    /// # Shapes
    /// - as [`cross_entropy`](Self::cross_entropy); output: `[1]`
    pub fn cross_entropy_sum(
        logits: Tensor<3>,
        labels: Tensor<2, Int>,
        weights: Tensor<2>,
    ) -> Tensor<1> {
        let logp = crate::kernels::log_softmax(logits, 2);
        let picked = logp
            .gather(2, labels.unsqueeze_dim::<3>(2))
            .squeeze_dim::<2>(2);
        (picked * weights).sum().neg()
    }

    /// Logits of the list slots for SFT batches, on `device`. With `noise`, dropout masks come
    /// from it ([`forward_hidden_noisy`](Self::forward_hidden_noisy)); without, from the
    /// modules themselves (burn's generator, on an autodiff device in training mode).
    ///
    /// # Shapes
    /// - output: `[histories.len(), targets_len, num_items]`
    pub fn teacher_forced_logits(
        &self,
        histories: &[Vec<ItemId>],
        targets: &[Vec<ItemId>],
        targets_len: usize,
        device: &Device,
        noise: Option<&DropoutNoise>,
    ) -> Tensor<3> {
        let inputs = shifted_inputs(targets, targets_len);
        self.list_logits(
            histories,
            &inputs,
            targets_len.saturating_sub(1),
            device,
            noise,
        )
    }

    /// Logits of every position for the causal (SASRec-style) SFT objective: the `L` history
    /// slots (slot `p` predicts the item after it) followed by the list slots of
    /// [`teacher_forced_logits`](Self::teacher_forced_logits) (and its `noise`).
    ///
    /// # Shapes
    /// - output: `[histories.len(), max_history + targets_len, num_items]`
    pub fn causal_logits(
        &self,
        histories: &[Vec<ItemId>],
        targets: &[Vec<ItemId>],
        targets_len: usize,
        device: &Device,
        noise: Option<&DropoutNoise>,
    ) -> Tensor<3> {
        let inputs = shifted_inputs(targets, targets_len);
        self.position_logits(
            histories,
            &inputs,
            targets_len.saturating_sub(1),
            0,
            device,
            noise,
        )
    }

    /// Scores of every item as the first list slot, on the device.
    ///
    /// # Shapes
    /// - output: `[histories.len(), num_items]`
    pub fn first_slot_logits(&self, histories: &[Vec<ItemId>], device: &Device) -> Tensor<2> {
        let empty = vec![Vec::new(); histories.len()];
        let n = histories.len();
        self.list_logits(histories, &empty, 0, device, None)
            .reshape([n, self.num_items])
    }

    fn check_list_len(&self, k: usize) -> crate::Result<()> {
        if k == 0 || k > self.max_list {
            return Err(CoreError::Config(format!(
                "list length {k} is outside 1..={} (the model's max_list)",
                self.max_list
            )));
        }
        Ok(())
    }
}

/// Where an encoder pass's dropout masks come from.
#[derive(Clone, Copy)]
enum Dropouts<'a> {
    /// burn's `Dropout` modules: active only on an autodiff device in training mode, drawing
    /// from burn's process-global generator (what burn's own layer forward does).
    Modules,
    /// Seeded streams ([`DropoutNoise`]), at the modules' rates.
    Seeded(&'a DropoutNoise),
}

impl Dropouts<'_> {
    fn apply<const D: usize>(self, module: &burn::nn::Dropout, x: Tensor<D>) -> Tensor<D> {
        match self {
            Dropouts::Modules => module.forward(x),
            Dropouts::Seeded(noise) => noise.apply(x, module.prob),
        }
    }
}

/// One pre-norm encoder layer: burn's `TransformerEncoderLayer::forward` (and
/// `MultiHeadAttention::forward`, `PositionWiseFeedForward::forward`) written out from their
/// public sub-modules, with the same four dropout sites (attention weights, attention output,
/// feed-forward hidden activations, feed-forward output) taken from `dropouts`, and the
/// feed-forward GELU computed by [`crate::kernels::gelu`].
///
/// # Shapes
/// - `x`: `[batch, seq, d_model]`, `pad`: `[batch, seq]`, `mask`: `[batch, seq, seq]`
/// - output: `[batch, seq, d_model]`
fn encoder_layer(
    layer: &TransformerEncoderLayer,
    x: Tensor<3>,
    pad: &Tensor<2, Bool>,
    mask: &Tensor<3, Bool>,
    dropouts: Dropouts<'_>,
    keep_kv: Option<&mut Option<(Tensor<4>, Tensor<4>)>>,
) -> Tensor<3> {
    let [batch, seq, d_model] = x.dims();
    let mha = &layer.mha;
    let (query, key, value) = attention_heads(layer, x.clone());
    if let Some(slot) = keep_kv {
        *slot = Some((key.clone(), value.clone()));
    }
    let scores = query
        .matmul(key.transpose())
        .div_scalar((mha.d_k as f32).sqrt())
        .mask_fill(pad.clone().reshape([batch, 1, 1, seq]), mha.min_float)
        .mask_fill(mask.clone().reshape([batch, 1, seq, seq]), mha.min_float);
    let weights = attention_weights(mha, scores);
    let context = dropouts
        .apply(&mha.dropout, weights)
        .matmul(value)
        .swap_dims(1, 2)
        .reshape([batch, seq, d_model]);
    after_attention(layer, x, context, dropouts)
}

/// The attention query, key and value heads of a pre-norm layer's input:
/// `norm_2(x)` projected and split into `[batch, heads, seq, d_k]` each.
fn attention_heads(
    layer: &TransformerEncoderLayer,
    x: Tensor<3>,
) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
    let [batch, seq, _] = x.dims();
    let mha = &layer.mha;
    let normed = layer.norm_2.forward(x);
    let heads = |linear: &Linear| {
        linear
            .forward(normed.clone())
            .reshape([batch, seq, mha.n_heads, mha.d_k])
            .swap_dims(1, 2)
    };
    (heads(&mha.query), heads(&mha.key), heads(&mha.value))
}

/// The rest of a pre-norm layer once its attention context is known: the output projection
/// and the feed-forward block, each added to the residual stream after its dropout.
fn after_attention(
    layer: &TransformerEncoderLayer,
    x: Tensor<3>,
    context: Tensor<3>,
    dropouts: Dropouts<'_>,
) -> Tensor<3> {
    let x = x + dropouts.apply(&layer.dropout, layer.mha.output.forward(context));
    let out = feed_forward(&layer.pwff, layer.norm_1.forward(x.clone()), dropouts);
    x + dropouts.apply(&layer.dropout, out)
}

/// The attention weights of masked scores: burn's softmax, or its quiet softmax where the
/// attention module asks for it.
fn attention_weights(
    mha: &burn::nn::attention::MultiHeadAttention,
    scores: Tensor<4>,
) -> Tensor<4> {
    if mha.quiet_softmax {
        quiet_softmax(scores, 3)
    } else {
        softmax(scores, 3)
    }
}

/// One pre-norm encoder layer at one new position, in inference: the new position's query
/// attends to the kept keys and values of every earlier position and its own (appended to
/// `kv`); the rest is [`encoder_layer`] at that position. No causal mask is needed (every kept
/// position is earlier); padding is masked.
///
/// # Shapes
/// - `x`: `[batch, 1, d_model]`, `pad`: `[batch, seq]` (`seq` = kept positions + 1)
/// - `kv`: `[batch, heads, seq - 1, d_k]` each, then `[batch, heads, seq, d_k]`
/// - output: `[batch, 1, d_model]`
fn decode_layer(
    layer: &TransformerEncoderLayer,
    x: Tensor<3>,
    pad: &Tensor<2, Bool>,
    kv: &mut Option<(Tensor<4>, Tensor<4>)>,
) -> Tensor<3> {
    let [batch, _, d_model] = x.dims();
    let mha = &layer.mha;
    let (query, key, value) = attention_heads(layer, x.clone());
    let (key, value) = match kv.take() {
        Some((k, v)) => (Tensor::cat(vec![k, key], 2), Tensor::cat(vec![v, value], 2)),
        None => (key, value),
    };
    let seq = key.dims()[2];
    let scores = query
        .matmul(key.clone().transpose())
        .div_scalar((mha.d_k as f32).sqrt())
        .mask_fill(pad.clone().reshape([batch, 1, 1, seq]), mha.min_float);
    let weights = attention_weights(mha, scores);
    let drop = Dropouts::Modules;
    let context = drop
        .apply(&mha.dropout, weights)
        .matmul(value.clone())
        .swap_dims(1, 2)
        .reshape([batch, 1, d_model]);
    *kv = Some((key, value));
    after_attention(layer, x, context, drop)
}

/// burn's `PositionWiseFeedForward::forward` with its GELU computed by
/// [`crate::kernels::gelu`] (another activation runs burn's) and its dropout from `dropouts`.
fn feed_forward<const D: usize>(
    ff: &PositionWiseFeedForward,
    x: Tensor<D>,
    dropouts: Dropouts<'_>,
) -> Tensor<D> {
    let hidden = ff.linear_inner.forward(x);
    let hidden = match ff.activation {
        burn::nn::activation::Activation::Gelu(_) => crate::kernels::gelu(hidden),
        ref other => other.forward(hidden),
    };
    ff.linear_outer.forward(dropouts.apply(&ff.dropout, hidden))
}

/// Appends one row of an additive logit mask, built for a scatter-add on the device: the ids
/// of `masked` (those inside the catalogue of `v` items) with [`MASK_VALUE`], padded to `width`
/// with id 0 and value 0 (padding adds nothing; a repeated id adds twice and stays masked).
fn push_mask_row<'a>(
    ids: &mut Vec<i64>,
    vals: &mut Vec<f32>,
    masked: impl Iterator<Item = &'a ItemId>,
    v: usize,
    width: usize,
) {
    let start = ids.len();
    ids.extend(masked.filter(|&&e| (e as usize) < v).map(|&e| e as i64));
    let kept = ids.len() - start;
    vals.extend(std::iter::repeat_n(MASK_VALUE, kept));
    vals.extend(std::iter::repeat_n(0.0f32, width - kept));
    ids.extend(std::iter::repeat_n(0i64, width - kept));
}

/// Reads a float tensor back to the host.
pub(crate) fn to_host<const D: usize>(t: Tensor<D>) -> crate::Result<Vec<f32>> {
    t.try_into_data_as::<f32>()
        .map_err(|e| CoreError::Tensor(format!("{e:?}")))?
        .try_into_vec::<f32>()
        .map_err(|e| CoreError::Tensor(format!("{e:?}")))
}

impl Recommender for ItemLm {
    fn name(&self) -> String {
        "item-lm".into()
    }

    fn num_items(&self) -> usize {
        self.num_items
    }

    /// Row shards on [`parallel::threads`] threads (each row's scores do not depend on the
    /// others).
    fn score_all(&self, prompts: &PromptBatch) -> crate::Result<Vec<Vec<f32>>> {
        let model = self.valid();
        let empty = vec![Vec::new(); prompts.len()];
        parallel::map_rows(&model, prompts.len(), MIN_ROWS_PER_THREAD, |m, r| {
            m.next_logits(&prompts.histories[r.clone()], &empty[r])
        })
    }

    /// Prompt shards on [`parallel::threads`] threads (each prompt is decoded on its own).
    fn decode(
        &self,
        prompts: &PromptBatch,
        k: usize,
        strategy: DecodeStrategy,
    ) -> crate::Result<Vec<Vec<ItemId>>> {
        self.check_list_len(k)?;
        let model = self.valid();
        parallel::map_rows(&model, prompts.len(), MIN_ROWS_PER_THREAD, |m, r| {
            m.decode_rows(&prompts.slice(r), k, strategy)
        })
    }
}

impl ItemLm {
    /// [`Recommender::decode`] on one thread, on the inference copy.
    fn decode_rows(
        &self,
        prompts: &PromptBatch,
        k: usize,
        strategy: DecodeStrategy,
    ) -> crate::Result<Vec<Vec<ItemId>>> {
        match strategy {
            DecodeStrategy::Greedy => {
                let mut lists = vec![Vec::with_capacity(k); prompts.len()];
                let mut dec = self.incremental(&prompts.histories);
                for _ in 0..k {
                    let logits = dec.next(&lists)?;
                    for (i, l) in logits.iter().enumerate() {
                        let (item, _) = greedy_pick(l, &blocked(&prompts.exclude[i], &lists[i]))?;
                        lists[i].push(item);
                    }
                }
                Ok(lists)
            }
            DecodeStrategy::Beam(width) => {
                let width = width.max(1);
                let mut beams: Vec<Vec<Beam>> = vec![
                    vec![Beam {
                        items: Vec::new(),
                        log_prob: 0.0
                    }];
                    prompts.len()
                ];
                for _ in 0..k {
                    let mut hist = Vec::new();
                    let mut partial = Vec::new();
                    for (p, bs) in beams.iter().enumerate() {
                        for b in bs {
                            hist.push(prompts.histories[p].clone());
                            partial.push(b.items.clone());
                        }
                    }
                    let logits = self.next_logits(&hist, &partial)?;
                    let mut offset = 0;
                    for (p, bs) in beams.iter_mut().enumerate() {
                        let n = bs.len();
                        *bs =
                            beam_step(bs, &logits[offset..offset + n], &prompts.exclude[p], width)?;
                        offset += n;
                    }
                }
                Ok(beams
                    .into_iter()
                    .map(|mut b| b.swap_remove(0).items)
                    .collect())
            }
        }
    }

    /// `spec.lists_per_prompt` sampled lists and their log-probabilities for each prompt, on
    /// one thread; prompt `i` (counted from `first`) draws from its own stream seeded by
    /// `(base, first + i)`.
    fn sample_rows(
        &self,
        prompts: &PromptBatch,
        first: usize,
        spec: &SampleSpec,
        base: u64,
    ) -> crate::Result<Vec<(Vec<ItemId>, f32)>> {
        let g = spec.lists_per_prompt.max(1);
        let mut rngs: Vec<StdRng> = (0..prompts.len())
            .map(|i| StdRng::seed_from_u64(fnv1a(&((first + i) as u64).to_le_bytes(), base)))
            .collect();
        let rep = prompts.repeat_each(g);
        let mut lists = vec![Vec::with_capacity(spec.list_len); rep.len()];
        let mut log_probs = vec![0.0f32; rep.len()];
        let mut dec = self.incremental(&rep.histories);
        for _ in 0..spec.list_len {
            let logits = dec.next(&lists)?;
            for (i, l) in logits.iter().enumerate() {
                let blocked = blocked(&rep.exclude[i], &lists[i]);
                let (item, lp) = sample_pick(l, &blocked, spec, &mut rngs[i / g])?;
                lists[i].push(item);
                log_probs[i] += lp;
            }
        }
        Ok(lists.into_iter().zip(log_probs).collect())
    }
}

impl Policy for ItemLm {
    fn sample(
        &self,
        prompts: &PromptBatch,
        spec: &SampleSpec,
        rng: &mut StdRng,
    ) -> crate::Result<Rollouts> {
        self.check_list_len(spec.list_len)?;
        let g = spec.lists_per_prompt.max(1);
        let model = self.valid();
        // one random stream per prompt, seeded from one draw of `rng` and the prompt's index,
        // so that the lists do not depend on how the prompts are split over threads
        let base: u64 = rng.random();
        let rows = parallel::map_rows(
            &model,
            prompts.len(),
            MIN_ROWS_PER_THREAD.div_ceil(g),
            |m, r| m.sample_rows(&prompts.slice(r.clone()), r.start, spec, base),
        )?;
        let (lists, log_probs) = rows.into_iter().unzip();
        Ok(Rollouts {
            group_size: g,
            lists,
            log_probs,
        })
    }

    fn log_prob(&self, prompts: &PromptBatch, lists: &[Vec<ItemId>]) -> crate::Result<Tensor<1>> {
        Ok(self.token_log_probs(prompts, lists)?.sum())
    }

    /// One token per list slot: `[lists, K]`, every slot real.
    fn token_log_probs(
        &self,
        prompts: &PromptBatch,
        lists: &[Vec<ItemId>],
    ) -> crate::Result<TokenLogProbs> {
        self.token_log_probs_at(prompts, lists, 1.0)
    }

    fn scores_at_any_temperature(&self) -> bool {
        true
    }

    fn has_first_slot(&self) -> bool {
        true
    }

    /// [`ItemLm::first_slot_logits`] with each prompt's excluded items at [`MASK_VALUE`],
    /// log-softmaxed over the catalogue.
    fn first_slot_log_probs(&self, prompts: &PromptBatch) -> crate::Result<Tensor<2>> {
        let device = self.devices()[0].clone();
        let (n, v) = (prompts.len(), self.num_items);
        let logits = self.first_slot_logits(&prompts.histories, &device);
        let width = prompts
            .exclude
            .iter()
            .map(Vec::len)
            .max()
            .unwrap_or(0)
            .max(1);
        let mut ids = Vec::with_capacity(n * width);
        let mut vals = Vec::with_capacity(n * width);
        for ex in &prompts.exclude {
            push_mask_row(&mut ids, &mut vals, ex.iter(), v, width);
        }
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [n, width]), &device);
        let vals = Tensor::<2>::from_data(TensorData::new(vals, [n, width]), &device);
        let masked = logits.scatter(1, ids, vals, burn::tensor::IndexingUpdateOp::Add);
        Ok(crate::kernels::log_softmax(masked, 1))
    }

    /// One token per list slot, each slot's softmax over the logits divided by `temperature`.
    fn token_log_probs_at(
        &self,
        prompts: &PromptBatch,
        lists: &[Vec<ItemId>],
        temperature: f32,
    ) -> crate::Result<TokenLogProbs> {
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(CoreError::Config(format!(
                "log_prob: temperature {temperature}: expected a finite number > 0"
            )));
        }
        if prompts.len() != lists.len() {
            return Err(CoreError::Config(format!(
                "log_prob: {} prompts but {} lists",
                prompts.len(),
                lists.len()
            )));
        }
        let n = lists.len();
        let k = lists.first().map_or(0, Vec::len);
        if lists.iter().any(|l| l.len() != k) {
            return Err(CoreError::Config(
                "log_prob: lists must all have the same length".into(),
            ));
        }
        self.check_list_len(k)?;
        let device = self.devices()[0].clone();
        let v = self.num_items;
        let inputs: Vec<Vec<ItemId>> = lists.iter().map(|l| l[..k - 1].to_vec()).collect();
        let logits = self.list_logits(&prompts.histories, &inputs, k - 1, &device, None);
        // additive mask: slot j may not take excluded items nor y_1..y_{j}; built on the
        // device by scattering MASK_VALUE at those ids (padding adds 0; a repeated id adds
        // twice and stays masked), so only the ids cross from the host
        let width = prompts.exclude.iter().map(Vec::len).max().unwrap_or(0) + k - 1;
        let width = width.max(1);
        let mut ids = Vec::with_capacity(n * k * width);
        let mut vals = Vec::with_capacity(n * k * width);
        let mut labels = Vec::with_capacity(n * k);
        for (r, list) in lists.iter().enumerate() {
            for j in 0..k {
                let masked = prompts.exclude[r].iter().chain(&list[..j]);
                push_mask_row(&mut ids, &mut vals, masked, v, width);
                labels.push(list[j] as i64);
            }
        }
        let ids = Tensor::<3, Int>::from_data(TensorData::new(ids, [n, k, width]), &device);
        let vals = Tensor::<3>::from_data(TensorData::new(vals, [n, k, width]), &device);
        // added into the logits in place of a `[n, k, v]` mask tensor: one full-size
        // allocation and pass fewer; allowed entries get + 0.0, so they are unchanged
        let masked = logits.scatter(2, ids, vals, burn::tensor::IndexingUpdateOp::Add);
        let labels = Tensor::<2, Int>::from_data(TensorData::new(labels, [n, k]), &device);
        // masked entries stay far below every allowed one after the division
        let masked = if temperature == 1.0 {
            masked
        } else {
            masked / temperature
        };
        let logp = crate::kernels::log_softmax(masked, 2);
        let picked = logp.gather(2, labels.unsqueeze_dim::<3>(2)).reshape([n, k]);
        Ok(TokenLogProbs {
            values: picked,
            mask: Tensor::ones([n, k], &device),
        })
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;

    fn prompts(n: usize, items: usize) -> PromptBatch {
        PromptBatch {
            histories: (0..n)
                .map(|r| {
                    (0..r % 7)
                        .map(|i| ((r * 7 + i * 3) % items) as ItemId)
                        .collect()
                })
                .collect(),
            exclude: (0..n)
                .map(|r| vec![(r % items) as ItemId, ((r * 3 + 1) % items) as ItemId])
                .collect(),
        }
    }

    #[test]
    fn first_slot_log_probs_are_the_masked_scores_normalised() {
        let device = crate::BackendSpec::Flex.device().unwrap();
        let model = ItemLmConfig::new(40)
            .with_max_history(4)
            .with_max_list(3)
            .with_d_model(16)
            .with_d_ff(32)
            .init(&device);
        let prompts = PromptBatch {
            histories: vec![vec![1, 2, 3], vec![7], vec![]],
            exclude: vec![vec![1, 2, 3], vec![7, 39], vec![]],
        };
        assert!(model.has_first_slot());
        let logp = to_host(model.first_slot_log_probs(&prompts).unwrap()).unwrap();
        let scores = model.score_all(&prompts).unwrap();
        for (r, row) in logp.chunks(40).enumerate() {
            let total: f64 = row.iter().map(|&x| f64::from(x).exp()).sum();
            assert!((total - 1.0).abs() < 1e-4, "row {r} sums to {total}");
            let kept: Vec<usize> = (0..40)
                .filter(|i| !prompts.exclude[r].contains(&(*i as ItemId)))
                .collect();
            for &i in &prompts.exclude[r] {
                assert!(row[i as usize] < -1e6, "row {r}: excluded item {i} kept");
            }
            // the same order as the full ranking's scores: equal differences
            let a = kept[0];
            for &b in &kept[1..] {
                let (d1, d2) = (row[b] - row[a], scores[r][b] - scores[r][a]);
                assert!(
                    (d1 - d2).abs() < 1e-4,
                    "row {r}, items {a} {b}: {d1} vs {d2}"
                );
            }
        }
    }

    #[test]
    fn sampled_lists_do_not_depend_on_how_prompts_are_split_over_threads() {
        let device = crate::BackendSpec::Flex.device().unwrap();
        let model = ItemLmConfig::new(40)
            .with_max_history(6)
            .with_max_list(5)
            .with_d_model(16)
            .with_d_ff(32)
            .init(&device);
        let p = prompts(9, 40);
        let spec = SampleSpec {
            lists_per_prompt: 3,
            list_len: 5,
            ..SampleSpec::default()
        };
        let whole = model.sample_rows(&p, 0, &spec, 77).unwrap();
        assert_eq!(whole.len(), 27);
        for cut in [1, 4, 8] {
            let mut parts = model.sample_rows(&p.slice(0..cut), 0, &spec, 77).unwrap();
            parts.extend(model.sample_rows(&p.slice(cut..9), cut, &spec, 77).unwrap());
            for (a, b) in whole.iter().zip(&parts) {
                assert_eq!(a.0, b.0, "cut at prompt {cut}");
                assert!((a.1 - b.1).abs() < 1e-4, "cut {cut}: {} vs {}", a.1, b.1);
            }
        }
        // another base seed gives other lists; each prompt's lists are valid
        let other = model.sample_rows(&p, 0, &spec, 78).unwrap();
        assert_ne!(
            whole.iter().map(|r| &r.0).collect::<Vec<_>>(),
            other.iter().map(|r| &r.0).collect::<Vec<_>>()
        );
        for (i, (list, lp)) in whole.iter().enumerate() {
            let mut d = list.clone();
            d.sort_unstable();
            d.dedup();
            assert_eq!(d.len(), 5, "row {i}: repeated items {list:?}");
            assert!(list.iter().all(|x| !p.exclude[i / 3].contains(x)));
            assert!(lp.is_finite() && *lp < 0.0);
        }
        // the public entry point: the same lists as one thread, whatever the thread count
        let mut rng = StdRng::seed_from_u64(5);
        let base: u64 = StdRng::seed_from_u64(5).random();
        let r = model.sample(&p, &spec, &mut rng).unwrap();
        let one = model.sample_rows(&p, 0, &spec, base).unwrap();
        assert_eq!(r.lists, one.iter().map(|x| x.0.clone()).collect::<Vec<_>>());
    }

    #[test]
    fn last_position_scores_equal_the_full_pass() {
        let device = crate::BackendSpec::Flex.device().unwrap();
        for layers in [1, 3] {
            let model = ItemLmConfig::new(50)
                .with_max_history(6)
                .with_max_list(4)
                .with_d_model(16)
                .with_d_ff(32)
                .with_n_layers(layers)
                .init(&device);
            // uneven histories (left padding), one empty, and partial lists
            let p = prompts(9, 50);
            for j in [0, 2] {
                let lists: Vec<Vec<ItemId>> = (0..9)
                    .map(|r| (0..j).map(|i| (20 + r + i) as ItemId).collect())
                    .collect();
                let fast = model.next_logits(&p.histories, &lists).unwrap();
                let (tokens, pad) = model.encode(&p.histories, &lists, j).tensors(&device);
                let seq = tokens.dims()[1];
                let full =
                    model
                        .head
                        .forward(model.forward_hidden(tokens, pad).narrow(1, seq - 1, 1));
                let full = to_host(full).unwrap();
                let (mut worst, mut scale) = (0f32, 0f32);
                for (a, b) in fast.iter().flatten().zip(&full) {
                    worst = worst.max((a - b).abs());
                    scale = scale.max(b.abs());
                }
                assert_eq!(fast.len() * 50, full.len());
                assert!(scale > 0.1);
                assert!(
                    worst < 1e-5 * scale.max(1.0),
                    "{layers} layers, {j} items: {worst}"
                );
            }
        }
    }

    /// The layers written out (for seeded dropout and blade's GELU kernel) compute burn's
    /// layers: with the masks off (rate 0) blade's passes, with and without seeded masks, agree
    /// with burn's own encoder forward, on an autodiff device in training mode; with the masks
    /// on, a seed gives the same output twice and another seed another one.
    #[test]
    fn the_noisy_pass_is_burns_pass_with_seeded_masks() {
        let device = crate::BackendSpec::Flex.device().unwrap().autodiff();
        let p = prompts(9, 50);
        let lists: Vec<Vec<ItemId>> = (0..9)
            .map(|r| (0..3).map(|i| (20 + r + i) as ItemId).collect())
            .collect();
        let config = ItemLmConfig::new(50)
            .with_max_history(6)
            .with_max_list(4)
            .with_d_model(16)
            .with_d_ff(32);
        let pass = |model: &ItemLm, noise: Option<u64>| {
            let (tokens, pad) = model.encode(&p.histories, &lists, 3).tensors(&device);
            let h = match noise {
                Some(seed) => model.forward_hidden_noisy(tokens, pad, &DropoutNoise::new(seed)),
                None => model.forward_hidden(tokens, pad),
            };
            to_host(h).unwrap()
        };
        let plain = config.clone().with_dropout(0.0).init(&device);
        let burns = {
            let (tokens, pad) = plain.encode(&p.histories, &lists, 3).tensors(&device);
            let input = plain.encoder_input(tokens, pad);
            to_host(plain.norm.forward(plain.encoder.forward(input))).unwrap()
        };
        let (a, b) = (pass(&plain, None), pass(&plain, Some(1)));
        for ours in [&a, &b] {
            let worst = ours
                .iter()
                .zip(&burns)
                .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(worst < 1e-5, "max |difference| {worst}");
        }
        let noisy = config.with_dropout(0.3).init(&device);
        let (x, y, z) = (
            pass(&noisy, Some(1)),
            pass(&noisy, Some(1)),
            pass(&noisy, Some(2)),
        );
        assert_eq!(x, y);
        assert_ne!(x, z);
    }

    #[test]
    fn scores_and_greedy_lists_do_not_depend_on_the_row_shards() {
        let device = crate::BackendSpec::Flex.device().unwrap();
        let model = ItemLmConfig::new(50)
            .with_max_history(6)
            .with_max_list(4)
            .with_d_model(16)
            .with_d_ff(32)
            .init(&device);
        // enough rows for several shards on a machine with several cores
        let p = prompts(70, 50);
        let scores = model.score_all(&p).unwrap();
        let empty = vec![Vec::new(); 70];
        let one = model.next_logits(&p.histories, &empty).unwrap();
        assert_eq!(scores.len(), 70);
        for (a, b) in scores.iter().flatten().zip(one.iter().flatten()) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        for strategy in [DecodeStrategy::Greedy, DecodeStrategy::Beam(2)] {
            let lists = model.decode(&p, 4, strategy).unwrap();
            let mut halves = model.decode_rows(&p.slice(0..31), 4, strategy).unwrap();
            halves.extend(model.decode_rows(&p.slice(31..70), 4, strategy).unwrap());
            assert_eq!(lists, halves, "{strategy:?}");
        }
    }

    #[test]
    fn the_incremental_decoder_gives_the_full_pass_logits() {
        let device = crate::BackendSpec::Flex.device().unwrap();
        let model = ItemLmConfig::new(40)
            .with_max_history(5)
            .with_max_list(4)
            .with_d_model(16)
            .with_d_ff(32)
            .init(&device);
        // uneven histories (left padding), one empty
        let histories = vec![vec![1, 2, 3, 4, 5, 6], vec![7], vec![]];
        let mut dec = model.incremental(&histories);
        let mut lists: Vec<Vec<ItemId>> = vec![Vec::new(); 3];
        for step in 0..4 {
            let full = model.next_logits(&histories, &lists).unwrap();
            let inc = dec.next(&lists).unwrap();
            for (a, b) in full.iter().flatten().zip(inc.iter().flatten()) {
                assert!((a - b).abs() < 1e-4, "step {step}: {a} vs {b}");
            }
            for (r, l) in lists.iter_mut().enumerate() {
                l.push((10 + 3 * step + r) as ItemId);
            }
        }
        // a call that is not one position longer than the last starts again from the whole
        // sequence
        let mut dec = model.incremental(&histories);
        let _ = dec.next(&vec![Vec::new(); 3]).unwrap();
        let two: Vec<Vec<ItemId>> = lists.iter().map(|l| l[..2].to_vec()).collect();
        let (full, inc) = (
            model.next_logits(&histories, &two).unwrap(),
            dec.next(&two).unwrap(),
        );
        for (a, b) in full.iter().flatten().zip(inc.iter().flatten()) {
            assert!((a - b).abs() < 1e-4, "restart: {a} vs {b}");
        }
    }
}
