//! Titles as token sequences: the catalogue's trie, the walk of one list through it, and the
//! allowed-token tensors that renormalise the model's distribution over what the trie allows.

use blade_data::ItemId;
use burn::prelude::*;

use crate::tokenizer::Tokenizer;

/// A node of the title trie. Items are sorted by their token sequences, so the items below a
/// node are the contiguous range `lo..hi` of that order.
#[derive(Debug, Clone)]
struct Node {
    /// `(token, child node)`, sorted by token.
    children: Vec<(u32, usize)>,
    lo: usize,
    hi: usize,
    /// The item this node completes (its separator token was just consumed).
    item: Option<ItemId>,
}

/// The catalogue as token sequences and their trie.
#[derive(Debug, Clone)]
pub struct TitleIndex {
    /// Per item, the title text used (after de-duplication).
    pub titles: Vec<String>,
    /// Per item, `tokens(title) ++ [separator]`.
    pub tokens: Vec<Vec<u32>>,
    /// Position of each item in `order`.
    rank: Vec<usize>,
    nodes: Vec<Node>,
}

impl TitleIndex {
    /// Tokenises every title with `lm`'s tokenizer and builds the trie. `sep` is the separator
    /// token (e.g. the newline).
    pub fn build(tokenizer: &Tokenizer, titles: &[String], sep: u32) -> Result<Self, String> {
        if titles.is_empty() {
            return Err("the catalogue has no titles".into());
        }
        let mut seen = std::collections::HashMap::<String, usize>::new();
        let mut unique = Vec::with_capacity(titles.len());
        for t in titles {
            let t = t.trim().replace('\n', " ");
            let n = seen.entry(t.clone()).or_insert(0);
            *n += 1;
            unique.push(if *n == 1 { t } else { format!("{t} #{n}") });
        }
        let mut tokens = Vec::with_capacity(unique.len());
        for t in &unique {
            let mut ids = tokenizer
                .encode(t, false)
                .map_err(|e| format!("title {t:?}: {e}"))?;
            if ids.is_empty() {
                return Err(format!("title {t:?} has no tokens"));
            }
            ids.push(sep);
            tokens.push(ids);
        }
        let mut order: Vec<ItemId> = (0..tokens.len() as ItemId).collect();
        order.sort_by(|&a, &b| tokens[a as usize].cmp(&tokens[b as usize]));
        let mut rank = vec![0; tokens.len()];
        for (pos, &it) in order.iter().enumerate() {
            rank[it as usize] = pos;
        }
        let mut nodes = vec![Node {
            children: Vec::new(),
            lo: 0,
            hi: order.len(),
            item: None,
        }];
        for (pos, &it) in order.iter().enumerate() {
            let mut cur = 0;
            for &tok in &tokens[it as usize] {
                let next = match nodes[cur].children.iter().find(|(t, _)| *t == tok) {
                    Some(&(_, n)) => n,
                    None => {
                        nodes.push(Node {
                            children: Vec::new(),
                            lo: pos,
                            hi: pos,
                            item: None,
                        });
                        let n = nodes.len() - 1;
                        nodes[cur].children.push((tok, n));
                        n
                    }
                };
                nodes[next].hi = pos + 1;
                cur = next;
            }
            if nodes[cur].item.is_some() || !nodes[cur].children.is_empty() {
                // a sequence that is a prefix of another cannot happen: every one ends with the
                // separator, which never occurs inside a title's tokens
                return Err(format!(
                    "title {:?} is ambiguous in the trie",
                    unique[it as usize]
                ));
            }
            nodes[cur].item = Some(it);
        }
        Ok(Self {
            titles: unique,
            tokens,
            rank,
            nodes,
        })
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the catalogue is empty.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Number of trie nodes.
    pub fn num_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Tokens allowed after node `node` given the blocked items (by order position):
    /// `(token, child)` pairs whose subtree holds an unblocked item.
    pub(super) fn allowed(&self, node: usize, blocked_pos: &[bool]) -> Vec<(u32, usize)> {
        self.nodes[node]
            .children
            .iter()
            .copied()
            .filter(|&(_, c)| {
                let n = &self.nodes[c];
                blocked_pos[n.lo..n.hi].iter().any(|b| !b)
            })
            .collect()
    }
}

/// The distinct tokens of `sets` (sorted), with every token of `sets` replaced by its position
/// in that list: the columns of [`crate::model::Llama::logits_for`] that
/// [`allowed_tensors`] then indexes.
pub(super) fn local_vocabulary(sets: &mut [Vec<Vec<u32>>]) -> Vec<u32> {
    let mut vocab: Vec<u32> = sets.iter().flatten().flatten().copied().collect();
    vocab.sort_unstable();
    vocab.dedup();
    for t in sets.iter_mut().flatten().flatten() {
        // present by construction
        *t = vocab.binary_search(t).unwrap_or(0) as u32;
    }
    vocab
}

/// Per row and step, the allowed tokens with the chosen one first, as tensors: indices
/// `[n, s, a]` (padded with the row's first token), an additive mask `[n, s, a]` (0 or -1e9 on
/// padding) and a validity mask `[n, s]` (0 past a row's end).
pub(super) fn allowed_tensors(
    sets: &[Vec<Vec<u32>>],
    s: usize,
    device: &Device,
) -> (Tensor<3, Int>, Tensor<3>, Tensor<2>) {
    let n = sets.len();
    let a_len = sets.iter().flatten().map(Vec::len).max().unwrap_or(1);
    let mut idx = Vec::with_capacity(n * s * a_len);
    let mut mask = Vec::with_capacity(n * s * a_len);
    let mut valid = Vec::with_capacity(n * s);
    for per in sets {
        for j in 0..s {
            match per.get(j) {
                Some(set) => {
                    for a in 0..a_len {
                        idx.push(i64::from(*set.get(a).unwrap_or(&set[0])));
                        mask.push(if a < set.len() { 0.0f32 } else { -1.0e9 });
                    }
                    valid.push(1.0f32);
                }
                None => {
                    idx.extend(std::iter::repeat_n(0i64, a_len));
                    mask.extend(std::iter::repeat_n(0.0f32, a_len));
                    valid.push(0.0);
                }
            }
        }
    }
    (
        Tensor::from_data(TensorData::new(idx, [n, s, a_len]), device),
        Tensor::from_data(TensorData::new(mask, [n, s, a_len]), device),
        Tensor::from_data(TensorData::new(valid, [n, s]), device),
    )
}

/// Walks one list through the trie, token by token.
#[derive(Debug, Clone)]
pub(super) struct Walker {
    pub(super) node: usize,
    pub(super) blocked: Vec<bool>,
    pub(super) items: Vec<ItemId>,
    pub(super) log_prob: f32,
}

impl Walker {
    pub(super) fn new(index: &TitleIndex, exclude: &[ItemId]) -> Self {
        let mut blocked = vec![false; index.len()];
        for &e in exclude {
            if let Some(&p) = index.rank.get(e as usize) {
                blocked[p] = true;
            }
        }
        Self {
            node: 0,
            blocked,
            items: Vec::new(),
            log_prob: 0.0,
        }
    }

    /// Moves along `child`; returns the item completed, if any.
    pub(super) fn step(&mut self, index: &TitleIndex, child: usize) -> Option<ItemId> {
        self.node = child;
        let item = index.nodes[child].item?;
        self.items.push(item);
        self.blocked[index.rank[item as usize]] = true;
        self.node = 0;
        Some(item)
    }
}
