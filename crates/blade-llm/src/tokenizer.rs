//! Byte-level BPE tokenizers (GPT-2 style: SmolLM2, Llama-3, Qwen2) through Hugging Face's
//! `tokenizers` crate, the implementation Python's `tokenizers` and `transformers` run.
//!
//! A [`Tokenizer`] is built either from a Hugging Face `tokenizer.json`
//! ([`Tokenizer::from_tokenizer_json`]: any model and pre-tokenizer the crate reads) or from the
//! vocabulary stored in a GGUF file's metadata ([`Tokenizer::from_parts`]). For GGUF, the crate's
//! tokenizer is assembled the way llama.cpp's converter reads it back: a BPE model over
//! `tokenizer.ggml.tokens` / `merges` (the first id wins where a text repeats), the pre-tokenizer
//! named by `tokenizer.ggml.pre` ([`PreTokenizer`]), a ByteLevel decoder, and the control (3) /
//! user-defined (4) tokens as special / added tokens matched literally. `scripts/check_tokenizer.py`
//! builds the same tokenizer in Python and CI compares the ids on every ML-100K title and a chat
//! prompt.
//!
//! [`Tokenizer::save`] writes the crate's `tokenizer.json`, which `transformers` loads (the export
//! of an aligned model uses it).
//!
//! This replaces a hand-written BPE (1,744 lines with its tests) whose pre-tokenizers approximated
//! `\p{L}` with `char::is_alphabetic` and so split Devanagari, Thai and other scripts with
//! combining vowel signs differently from the reference; the crate runs the models' own regular
//! expressions (through `fancy-regex`: pure Rust, no C build).

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    AddedToken, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer as _,
    PreTokenizerWrapper, SplitDelimiterBehavior,
};

/// GGUF token type of an ordinary vocabulary entry.
const TYPE_NORMAL: i32 = 1;
/// GGUF token type of a control token such as `<|im_start|>`.
const TYPE_CONTROL: i32 = 3;
/// GGUF token type of a user-defined token, matched literally like a control token.
const TYPE_USER_DEFINED: i32 = 4;

/// The Llama-3 pre-tokenizer pattern as written in its `tokenizer.json`.
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The Qwen2 pre-tokenizer pattern as written in its `tokenizer.json`.
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How many unused ids a `tokenizer.json` may leave below its largest id (the id table is
/// dense, so this bounds the table by the number of tokens in the file).
const MAX_ID_GAPS: usize = 1 << 16;

/// Errors raised while building a [`Tokenizer`] or encoding text.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A file could not be read or written.
    // the cause is in the message, not a `source()`: chains printed as `{:#}` would repeat it
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        cause: std::io::Error,
    },
    /// A file is not valid JSON.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// The vocabulary, merges or configuration are malformed or unsupported.
    #[error("{origin}: {message}")]
    Invalid {
        /// Where the data came from: a file name or `tokenizer metadata`.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A pre-tokenizer name (GGUF `tokenizer.ggml.pre`) that is not supported.
    #[error(
        "unknown pre-tokenizer `{name}`; supported: gpt2, default, smollm, starcoder, refact, \
         llama-bpe, llama3, qwen2"
    )]
    UnknownPreTokenizer {
        /// The name that was asked for.
        name: String,
    },
    /// A byte of the input has no token of its own in a GGUF vocabulary (the crate would drop it
    /// silently).
    #[error("cannot encode {text:?}: byte 0x{byte:02x} has no token in the vocabulary")]
    UnencodableByte {
        /// The text being encoded.
        text: String,
        /// The byte without a token.
        byte: u8,
    },
    /// A file could not be written (the message names it).
    #[error("{0}")]
    Write(String),
    /// The tokenizer failed on some input.
    #[error("cannot encode {text:?}: {message}")]
    Encode {
        /// The text being encoded.
        text: String,
        /// The crate's message.
        message: String,
    },
}

impl TokenizerError {
    fn invalid(origin: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            origin: origin.to_string(),
            message: message.into(),
        }
    }
}

/// GPT-2's `bytes_to_unicode`: printable bytes map to themselves, the others in increasing order
/// to U+0100, U+0101, ...
const BYTE_TO_CHAR: [char; 256] = {
    let mut table = ['\0'; 256];
    let mut next = 0x100u32;
    let mut b = 0usize;
    while b < 256 {
        let printable = matches!(b as u8, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
        let code = if printable {
            b as u32
        } else {
            let code = next;
            next += 1;
            code
        };
        table[b] = match char::from_u32(code) {
            Some(c) => c,
            None => panic!("invalid code point"),
        };
        b += 1;
    }
    table
};

/// The character GPT-2's byte-level alphabet uses for byte `b` (printable ASCII maps to itself,
/// other bytes to U+0100 and up): the vocabulary spelling of a single-byte token.
pub fn byte_level_char(b: u8) -> char {
    BYTE_TO_CHAR[b as usize]
}

/// The pre-tokenizer of a GGUF vocabulary (`tokenizer.ggml.pre`), as the crate's components.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PreTokenizer {
    /// GPT-2: `ByteLevel(add_prefix_space = false, use_regex = true)`.
    Gpt2,
    /// SmolLM / StarCoder / Refact: `Digits(individual_digits = true)`, then GPT-2's.
    SmolLm,
    /// Llama-3: `Split(<Llama-3 pattern>, isolated)`, then `ByteLevel(use_regex = false)`; a
    /// pre-token that is a whole vocabulary entry is not split (`ignore_merges`, as llama.cpp).
    Llama3,
    /// Qwen2: the Llama-3 pattern with `\p{N}` (single digits) instead of `\p{N}{1,3}`.
    Qwen2,
}

impl PreTokenizer {
    /// Maps a llama.cpp pre-tokenizer name (GGUF `tokenizer.ggml.pre`) to a pre-tokenizer:
    /// `gpt2`/`default` → [`Gpt2`](Self::Gpt2), `smollm`/`starcoder`/`refact` →
    /// [`SmolLm`](Self::SmolLm), `llama-bpe`/`llama3` → [`Llama3`](Self::Llama3), `qwen2` →
    /// [`Qwen2`](Self::Qwen2).
    pub fn from_gguf_name(name: &str) -> Result<Self, TokenizerError> {
        match name {
            "gpt2" | "default" => Ok(Self::Gpt2),
            "smollm" | "starcoder" | "refact" => Ok(Self::SmolLm),
            "llama-bpe" | "llama3" => Ok(Self::Llama3),
            "qwen2" => Ok(Self::Qwen2),
            other => Err(TokenizerError::UnknownPreTokenizer {
                name: other.to_string(),
            }),
        }
    }

    /// Every pre-tokenizer blade builds.
    pub const ALL: [Self; 4] = [Self::Gpt2, Self::SmolLm, Self::Llama3, Self::Qwen2];

    /// The name llama.cpp writes in `tokenizer.ggml.pre` for this pre-tokenizer.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Self::Gpt2 => "gpt2",
            Self::SmolLm => "smollm",
            Self::Llama3 => "llama-bpe",
            Self::Qwen2 => "qwen2",
        }
    }

    /// The crate's pre-tokenizer.
    fn wrapper(self) -> PreTokenizerWrapper {
        let byte_level = |use_regex| ByteLevel::new(false, true, use_regex);
        match self {
            Self::Gpt2 => byte_level(true).into(),
            Self::SmolLm => {
                Sequence::new(vec![Digits::new(true).into(), byte_level(true).into()]).into()
            }
            Self::Llama3 | Self::Qwen2 => {
                let pattern = if self == Self::Llama3 {
                    LLAMA3_PATTERN
                } else {
                    QWEN2_PATTERN
                };
                let split = Split::new(
                    SplitPattern::Regex(pattern.into()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .expect("the built-in patterns compile");
                Sequence::new(vec![split.into(), byte_level(false).into()]).into()
            }
        }
    }

    /// Splits `text` into pre-tokens (as substrings of `text`; they concatenate back to it).
    pub fn split(self, text: &str) -> Vec<String> {
        let mut pre = PreTokenizedString::from(text);
        if self.wrapper().pre_tokenize(&mut pre).is_err() {
            return vec![text.to_string()];
        }
        pre.get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(_, (a, b), _)| text[a..b].to_string())
            .collect()
    }
}

/// Splits a merge line `"a b"` at its first space after the first character (as llama.cpp does).
fn split_merge(line: &str) -> Option<(&str, &str)> {
    let first = line.chars().next()?.len_utf8();
    let space = first + line[first..].find(' ')?;
    Some((&line[..space], &line[space + 1..]))
}

/// A vocabulary in GGUF's terms, see [`Tokenizer::gguf_vocab`].
#[derive(Debug, Clone, PartialEq)]
pub struct GgufVocab {
    /// `tokenizer.ggml.tokens`: texts by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`: 1 normal, 3 control, 4 user-defined.
    pub types: Vec<i32>,
    /// `tokenizer.ggml.merges`, in rank order.
    pub merges: Vec<String>,
    /// The pre-tokenizer (`tokenizer.ggml.pre` is its [`PreTokenizer::gguf_name`]).
    pub pre: PreTokenizer,
}

/// A tokenizer: the crate's, once with the special tokens matched literally and once without.
pub struct Tokenizer {
    /// Special and added tokens are cut out of the text literally, longest match first.
    hf: tokenizers::Tokenizer,
    /// The same model and pre-tokenizer without added tokens: special-token text is ordinary.
    plain: tokenizers::Tokenizer,
    /// Token texts by id (byte-level spelling for ordinary tokens, literal for special ones).
    tokens: Vec<String>,
    /// Whether each id is a special or added token.
    special: Vec<bool>,
    /// For a GGUF vocabulary, the bytes that have no token of their own.
    missing_bytes: Option<Box<[bool; 256]>>,
    bos: Option<u32>,
    eos: Option<u32>,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.tokens.len())
            .field("specials", &self.special.iter().filter(|&&s| s).count())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish()
    }
}

impl Tokenizer {
    /// Builds a tokenizer from the vocabulary as stored in GGUF metadata:
    /// `tokenizer.ggml.tokens`, `tokenizer.ggml.token_type` (1 normal, 2 unknown, 3 control,
    /// 4 user-defined, 5 unused, 6 byte; may be empty, meaning all normal) and
    /// `tokenizer.ggml.merges` (`"a b"` each, in rank order).
    ///
    /// Control tokens become special tokens and user-defined tokens added tokens: both are
    /// matched literally when [`encode`](Self::encode) is asked to. Every merge's parts and
    /// result must be vocabulary entries (the crate's rule).
    pub fn from_parts(
        tokens: Vec<String>,
        token_types: Vec<i32>,
        merges: Vec<String>,
        pre: PreTokenizer,
        bos: Option<u32>,
        eos: Option<u32>,
    ) -> Result<Self, TokenizerError> {
        const ORIGIN: &str = "tokenizer metadata";
        let bad = |m: String| TokenizerError::invalid(ORIGIN, m);
        let types = if token_types.is_empty() {
            vec![1; tokens.len()]
        } else if token_types.len() == tokens.len() {
            token_types
        } else {
            return Err(bad(format!(
                "{} tokens but {} token types",
                tokens.len(),
                token_types.len()
            )));
        };
        if tokens.is_empty() {
            return Err(bad("the vocabulary is empty".into()));
        }
        let vocab_size =
            u32::try_from(tokens.len()).map_err(|_| bad("the vocabulary is too large".into()))?;
        for (name, id) in [("bos", bos), ("eos", eos)] {
            if let Some(id) = id.filter(|&id| id >= vocab_size) {
                return Err(bad(format!(
                    "{name} token id {id} is outside the vocabulary of {vocab_size}"
                )));
            }
        }
        let merges = merges
            .iter()
            .enumerate()
            .map(|(k, line)| {
                split_merge(line)
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| {
                        bad(format!(
                            "merge {k} `{line}` is not two tokens separated by a space"
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut vocab = Vocab::default();
        for (id, text) in tokens.iter().enumerate() {
            vocab.entry(text.clone()).or_insert(id as u32);
        }
        let mut missing = [false; 256];
        for (b, m) in missing.iter_mut().enumerate() {
            *m = !vocab.contains_key(&byte_level_char(b as u8).to_string());
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(pre == PreTokenizer::Llama3)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let mut plain = tokenizers::Tokenizer::new(bpe);
        plain.with_pre_tokenizer(Some(pre.wrapper()));
        plain.with_decoder(Some(ByteLevel::default()));
        let mut hf = plain.clone();
        let literal = |kind: i32, special: bool| {
            tokens
                .iter()
                .zip(&types)
                .filter(move |&(t, &ty)| ty == kind && !t.is_empty())
                .map(move |(t, _)| AddedToken::from(t.clone(), special).normalized(false))
        };
        hf.add_special_tokens(literal(TYPE_CONTROL, true))
            .map_err(|e| bad(e.to_string()))?;
        hf.add_tokens(literal(TYPE_USER_DEFINED, false))
            .map_err(|e| bad(e.to_string()))?;
        let special = types
            .iter()
            .map(|&t| t == TYPE_CONTROL || t == TYPE_USER_DEFINED)
            .collect();
        Ok(Self {
            hf,
            plain,
            tokens,
            special,
            missing_bytes: missing.contains(&true).then(|| Box::new(missing)),
            bos,
            eos,
        })
    }

    /// Reads a Hugging Face `tokenizer.json` (any model the `tokenizers` crate reads). Its
    /// `added_tokens` are matched literally by [`encode`](Self::encode) when asked. BOS and EOS
    /// are taken from `bos_token` and `eos_token` in a `tokenizer_config.json` next to the file,
    /// when there is one, else from `bos_token_id` and `eos_token_id` in a `config.json` next to
    /// it.
    pub fn from_tokenizer_json(path: &Path) -> Result<Self, TokenizerError> {
        let origin = path.display().to_string();
        let bad = |message: String| TokenizerError::invalid(&origin, message);
        let root = read_json(path)?;
        let hf: tokenizers::Tokenizer =
            serde::Deserialize::deserialize(&root).map_err(|e| bad(e.to_string()))?;
        // the crate gives an added token missing from the model's vocabulary the next free id,
        // whatever id the file states (with a log warning): a file whose ids disagree would
        // index the wrong embedding rows, so it is refused
        for (k, t) in root
            .get("added_tokens")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let (Some(content), Some(stated)) = (
                t.get("content").and_then(Value::as_str),
                t.get("id").and_then(Value::as_u64),
            ) else {
                continue;
            };
            let given = hf.token_to_id(content);
            if given.map(u64::from) != Some(stated) {
                return Err(bad(format!(
                    "added_tokens[{k}] {content:?} states id {stated}, but the vocabulary gives \
                     it {}: the ids must follow the model's vocabulary without gaps",
                    given.map_or("none".into(), |g| g.to_string())
                )));
            }
        }
        // the same pipeline without the added tokens (what the file would give with
        // `added_tokens: []`), built from the parsed parts rather than by parsing again
        let mut plain = tokenizers::Tokenizer::new(hf.get_model().clone());
        plain
            .with_normalizer(hf.get_normalizer().cloned())
            .map_err(|e| bad(e.to_string()))?;
        plain
            .with_pre_tokenizer(hf.get_pre_tokenizer().cloned())
            .with_post_processor(hf.get_post_processor().cloned())
            .with_decoder(hf.get_decoder().cloned())
            .with_padding(hf.get_padding().cloned());
        plain
            .with_truncation(hf.get_truncation().cloned())
            .map_err(|e| bad(e.to_string()))?;
        let vocab = hf.get_vocab(true);
        let size = vocab.values().map(|&id| id as usize + 1).max().unwrap_or(0);
        if size == 0 {
            return Err(bad("the vocabulary is empty".into()));
        }
        // The id table is dense: bound it by what the file holds, so that one huge id (e.g.
        // 4294967295) is an error rather than a table of billions of entries.
        if size > vocab.len() + MAX_ID_GAPS {
            let (text, id) = vocab
                .iter()
                .max_by_key(|&(_, &id)| id)
                .expect("size > 0 implies an entry");
            return Err(bad(format!(
                "token {text:?} has id {id}, but the file holds only {} tokens (ids may leave at \
                 most {MAX_ID_GAPS} unused): corrupt tokenizer?",
                vocab.len()
            )));
        }
        let mut tokens = vec![String::new(); size];
        for (text, id) in vocab {
            tokens[id as usize] = text;
        }
        let mut special = vec![false; size];
        for id in hf.get_added_tokens_decoder().keys() {
            if let Some(s) = special.get_mut(*id as usize) {
                *s = true;
            }
        }
        let mut tokenizer = Self {
            hf,
            plain,
            tokens,
            special,
            missing_bytes: None,
            bos: None,
            eos: None,
        };
        let config = path.with_file_name("tokenizer_config.json");
        if config.is_file() {
            let config_json = read_json(&config)?;
            let special_id = |key: &str| -> Result<Option<u32>, TokenizerError> {
                let text = match config_json.get(key) {
                    Some(Value::String(s)) => s.as_str(),
                    Some(Value::Object(o)) => match o.get("content") {
                        Some(Value::String(s)) => s.as_str(),
                        _ => return Ok(None),
                    },
                    _ => return Ok(None),
                };
                tokenizer.token_id(text).map(Some).ok_or_else(|| {
                    TokenizerError::invalid(
                        &config.display().to_string(),
                        format!("{key} `{text}` is not in the vocabulary"),
                    )
                })
            };
            let bos = special_id("bos_token")?;
            let eos = special_id("eos_token")?;
            tokenizer.bos = bos;
            tokenizer.eos = eos;
        }
        // what tokenizer_config.json does not name, the model's config.json may (as ids; a
        // list of end ids, as Llama 3.1+ has, gives its first)
        let model_config = path.with_file_name("config.json");
        if (tokenizer.bos.is_none() || tokenizer.eos.is_none()) && model_config.is_file() {
            let c = read_json(&model_config)?;
            let n = tokenizer.vocab_size() as u64;
            let id = |key: &str| -> Result<Option<u32>, TokenizerError> {
                let v = match &c[key] {
                    Value::Array(a) => a.first().cloned().unwrap_or(Value::Null),
                    v => v.clone(),
                };
                match v {
                    Value::Null => Ok(None),
                    Value::Number(x) if x.as_u64().is_some_and(|i| i < n) => {
                        Ok(x.as_u64().map(|i| i as u32))
                    }
                    other => Err(TokenizerError::invalid(
                        &model_config.display().to_string(),
                        format!("{key} is {other}; expected a token id below {n}"),
                    )),
                }
            };
            if tokenizer.bos.is_none() {
                tokenizer.bos = id("bos_token_id")?;
            }
            if tokenizer.eos.is_none() {
                tokenizer.eos = id("eos_token_id")?;
            }
        }
        Ok(tokenizer)
    }

    /// Writes the tokenizer as a Hugging Face `tokenizer.json` (what `transformers` and
    /// `tokenizers` load), atomically.
    pub fn save(&self, path: &Path) -> Result<(), TokenizerError> {
        let text = self
            .hf
            .to_string(true)
            .map_err(|e| TokenizerError::invalid(&path.display().to_string(), e.to_string()))?;
        blade_data::write_atomic(path, text.as_bytes())
            .map_err(|e| TokenizerError::Write(e.to_string()))
    }

    /// The vocabulary as GGUF metadata stores it: `(tokens by id, token types, merges "a b" in
    /// rank order, the pre-tokenizer)`. Added tokens become control (special) or user-defined
    /// tokens. Fails for a model other than byte-level BPE, and for a pre-tokenizer that is
    /// none of [`PreTokenizer::ALL`] (llama.cpp names its pre-tokenizers; a file with another
    /// one cannot say which it is).
    /// `pre` names the pre-tokenizer instead of recognising it.
    pub fn gguf_vocab(&self, pre: Option<PreTokenizer>) -> Result<GgufVocab, TokenizerError> {
        const ORIGIN: &str = "the tokenizer";
        let bad = |m: String| TokenizerError::invalid(ORIGIN, m);
        let model = serde_json::to_value(self.plain.get_model()).map_err(|e| bad(e.to_string()))?;
        if model.get("type").and_then(Value::as_str) != Some("BPE") {
            return Err(bad(format!(
                "its model is {}, GGUF export reads byte-level BPE",
                model
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
            )));
        }
        let merges = model
            .get("merges")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|m| match m {
                Value::String(s) => Some(s.clone()),
                Value::Array(pair) => match &pair[..] {
                    [Value::String(a), Value::String(b)] => Some(format!("{a} {b}")),
                    _ => None,
                },
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("a merge is neither \"a b\" nor [\"a\", \"b\"]".into()))?;
        let have = serde_json::to_value(self.plain.get_pre_tokenizer()).ok();
        let detected = PreTokenizer::ALL
            .into_iter()
            .find(|p| serde_json::to_value(p.wrapper()).ok() == have);
        let pre = pre.or(detected).ok_or_else(|| {
            bad(format!(
                "its pre-tokenizer is none of gpt2, smollm, llama-bpe, qwen2 (the ones blade \
                     can name for llama.cpp); name the right one with --pre: {}",
                have.map_or("none".into(), |h| h.to_string())
            ))
        })?;
        let added = self.hf.get_added_tokens_decoder();
        let types = (0..self.tokens.len() as u32)
            .map(|id| match added.get(&id) {
                Some(t) if t.special => TYPE_CONTROL,
                Some(_) => TYPE_USER_DEFINED,
                None => TYPE_NORMAL,
            })
            .collect();
        Ok(GgufVocab {
            tokens: self.tokens.clone(),
            types,
            merges,
            pre,
        })
    }

    /// Encodes `text` into token ids. With `parse_special`, the text of special and added
    /// tokens (e.g. `<|im_start|>`) is matched literally, longest first, and becomes their id;
    /// otherwise it is tokenised like any other text. No BOS or EOS is added.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>, TokenizerError> {
        if let Some(missing) = &self.missing_bytes {
            if let Some(&byte) = text.as_bytes().iter().find(|&&b| missing[b as usize]) {
                return Err(TokenizerError::UnencodableByte {
                    text: text.to_string(),
                    byte,
                });
            }
        }
        let t = if parse_special { &self.hf } else { &self.plain };
        let encoding = t
            .encode_fast(text, false)
            .map_err(|e| TokenizerError::Encode {
                text: text.to_string(),
                message: e.to_string(),
            })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Decodes ids into text; special tokens are written as their literal text. Unknown ids are
    /// skipped and invalid UTF-8 is replaced by U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.hf.decode(ids, false).unwrap_or_default()
    }

    /// Decodes ids into text, leaving out the special tokens (as `skip_special_tokens`).
    pub fn decode_skip_special(&self, ids: &[u32]) -> String {
        self.hf.decode(ids, true).unwrap_or_default()
    }

    /// Number of token ids.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The id of a token given its vocabulary text (byte-level encoded for ordinary tokens, e.g.
    /// `"Ġthe"`; literal for special tokens, e.g. `"<|im_end|>"`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.hf.token_to_id(token)
    }

    /// The vocabulary text of a token id.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The beginning-of-sequence token, if the model has one.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// The end-of-sequence token, if the model has one.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Whether `id` is a special or added token (GGUF type control or user-defined).
    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }
}

fn read_json(path: &Path) -> Result<Value, TokenizerError> {
    let text = std::fs::read_to_string(path).map_err(|cause| TokenizerError::Io {
        path: path.to_path_buf(),
        cause,
    })?;
    serde_json::from_str(&text).map_err(|source| TokenizerError::Json {
        path: path.to_path_buf(),
        source,
    })
}

// ---------------------------------------------------------------------------------------------
// Chat templates
// ---------------------------------------------------------------------------------------------

/// The prompt format of an instruction-tuned model, recognised from its Jinja chat template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChatTemplate {
    /// ChatML (`<|im_start|>role\n...<|im_end|>`), used by SmolLM2 and Qwen2.
    ChatMl,
    /// Llama-3 (`<|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>`).
    Llama3,
    /// No template: system prompt, blank line, user message.
    Plain,
}

impl ChatTemplate {
    /// Recognises the format from a GGUF `tokenizer.chat_template` (or `tokenizer_config.json`
    /// `chat_template`): one containing `<|im_start|>` is ChatML, one containing
    /// `<|start_header_id|>` Llama-3, anything else (or none) plain.
    pub fn detect(jinja: Option<&str>) -> Self {
        match jinja {
            Some(t) if t.contains("<|im_start|>") => Self::ChatMl,
            Some(t) if t.contains("<|start_header_id|>") => Self::Llama3,
            _ => Self::Plain,
        }
    }

    /// Renders a single-turn prompt that ends with the assistant's generation header, ready for
    /// [`Tokenizer::encode`] with `parse_special`. The Llama-3 prompt starts with
    /// `<|begin_of_text|>`, so no BOS should be added to it.
    pub fn render(&self, system: Option<&str>, user: &str) -> String {
        match self {
            Self::ChatMl => {
                let mut out = String::new();
                if let Some(system) = system {
                    out.push_str(&format!("<|im_start|>system\n{system}<|im_end|>\n"));
                }
                out.push_str(&format!(
                    "<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
                ));
                out
            }
            Self::Llama3 => {
                let mut out = String::from("<|begin_of_text|>");
                if let Some(system) = system {
                    out.push_str(&format!(
                        "<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>"
                    ));
                }
                out.push_str(&format!(
                    "<|start_header_id|>user<|end_header_id|>\n\n{user}<|eot_id|>\
                     <|start_header_id|>assistant<|end_header_id|>\n\n"
                ));
                out
            }
            Self::Plain => match system {
                Some(system) => format!("{system}\n\n{user}\n"),
                None => format!("{user}\n"),
            },
        }
    }

    /// The special token that ends an assistant turn in this format, if any (`<|im_end|>` or
    /// `<|eot_id|>`).
    pub fn end_of_turn(&self) -> Option<&'static str> {
        match self {
            Self::ChatMl => Some("<|im_end|>"),
            Self::Llama3 => Some("<|eot_id|>"),
            Self::Plain => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn byte_to_char(b: u8) -> char {
        byte_level_char(b)
    }

    /// The 256 byte tokens (id = byte value), then `extra` tokens, with `merges` in rank order
    /// and two control tokens at the end.
    fn tiny(extra: &[&str], merges: &[&str], pre: PreTokenizer) -> Tokenizer {
        let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_to_char(b).to_string()).collect();
        tokens.extend(extra.iter().map(|t| t.to_string()));
        tokens.push("<|im_start|>".into());
        tokens.push("<|im_end|>".into());
        let mut types = vec![TYPE_NORMAL; tokens.len()];
        let n = types.len();
        types[n - 2] = TYPE_CONTROL;
        types[n - 1] = TYPE_CONTROL;
        let merges = merges.iter().map(|m| m.to_string()).collect();
        let eos = Some(n as u32 - 1);
        Tokenizer::from_parts(tokens, types, merges, pre, None, eos).unwrap()
    }

    fn hello() -> Tokenizer {
        // 256 he, 257 ll, 258 hell, 259 hello, 260 Ġw, 261 <|im_start|>, 262 <|im_end|>
        tiny(
            &["he", "ll", "hell", "hello", "Ġw"],
            &["h e", "l l", "he ll", "hell o", "Ġ w"],
            PreTokenizer::Gpt2,
        )
    }

    #[test]
    fn byte_table_is_gpt2s() {
        let mut seen = std::collections::HashSet::new();
        for b in 0..=255u8 {
            let c = byte_to_char(b);
            assert!(seen.insert(c), "{c:?} appears twice");
            if (0x21..=0x7E).contains(&b) {
                assert_eq!(c as u32, b as u32);
            } else if !matches!(b, 0xA1..=0xAC | 0xAE..=0xFF) {
                assert!((0x100..0x144).contains(&(c as u32)));
            }
        }
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(0), '\u{100}');
        assert_eq!(byte_to_char(0xAD), '\u{143}');
        assert_eq!(byte_to_char(0xE9), 'é');
        // every byte decodes back through the crate's ByteLevel decoder
        let t = hello();
        let all: Vec<u32> = (0..=255u32).collect();
        let bytes: Vec<u8> = (0..=255u8).collect();
        assert_eq!(t.decode(&all), String::from_utf8_lossy(&bytes));
    }
    #[test]
    fn encodes_with_exact_ids() {
        let t = hello();
        assert_eq!(t.vocab_size(), 263);
        assert_eq!(
            t.encode("hello world", false).unwrap(),
            vec![259, 260, b'o' as u32, b'r' as u32, b'l' as u32, b'd' as u32]
        );
        assert_eq!(t.encode("hell", false).unwrap(), vec![258]);
        assert_eq!(t.encode("", false).unwrap(), Vec::<u32>::new());
        // "Ġw" only merges at the start of a pre-token, "he" also inside a word.
        assert_eq!(t.encode("whe", false).unwrap(), vec![b'w' as u32, 256]);
        assert_eq!(t.token_id("hello"), Some(259));
        assert_eq!(t.token(260), Some("Ġw"));
        assert_eq!(t.token(9999), None);
        assert_eq!(t.eos(), Some(262));
        assert_eq!(t.bos(), None);
    }

    #[test]
    fn lowest_rank_merge_wins() {
        let ab_first = tiny(&["ab", "bc"], &["a b", "b c"], PreTokenizer::Gpt2);
        assert_eq!(
            ab_first.encode("abc", false).unwrap(),
            vec![256, b'c' as u32]
        );
        let bc_first = tiny(&["ab", "bc"], &["b c", "a b"], PreTokenizer::Gpt2);
        assert_eq!(
            bc_first.encode("abc", false).unwrap(),
            vec![b'a' as u32, 257]
        );
        // Equal ranks: leftmost first.
        let aa = tiny(&["aa"], &["a a"], PreTokenizer::Gpt2);
        assert_eq!(
            aa.encode("aaaaa", false).unwrap(),
            vec![256, 256, b'a' as u32]
        );
    }

    #[test]
    fn merges_must_stay_in_the_vocabulary() {
        // "xy" is not a token: the crate refuses the merge (the hand-written BPE fell back to
        // bytes, as llama.cpp does); real vocabularies hold every merge result
        let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_to_char(b).to_string()).collect();
        tokens.push("xyz".into());
        let err = Tokenizer::from_parts(
            tokens,
            vec![],
            vec!["x y".into(), "xy z".into()],
            PreTokenizer::Gpt2,
            None,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("tokenizer metadata: "), "{err}");
        assert!(err.contains("xy"), "{err}");
    }

    #[test]
    fn a_byte_without_a_token_is_an_error() {
        let tokens: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let t =
            Tokenizer::from_parts(tokens, vec![], vec![], PreTokenizer::Gpt2, None, None).unwrap();
        assert_eq!(t.encode("ab", false).unwrap(), vec![0, 1]);
        let err = t.encode("abc", false).unwrap_err().to_string();
        assert_eq!(
            err,
            "cannot encode \"abc\": byte 0x63 has no token in the vocabulary"
        );
    }

    #[test]
    fn ignore_merges_takes_whole_words_from_the_vocabulary() {
        // No merges at all, but "hello" is a token: Llama-3 takes it whole, GPT-2 does not.
        let llama = tiny(&["hello"], &[], PreTokenizer::Llama3);
        assert_eq!(llama.encode("hello", false).unwrap(), vec![256]);
        let gpt2 = tiny(&["hello"], &[], PreTokenizer::Gpt2);
        assert_eq!(gpt2.encode("hello", false).unwrap().len(), 5);
    }

    #[test]
    fn special_tokens_are_parsed_only_when_asked() {
        let t = hello();
        let text = "<|im_start|>hello<|im_end|>\n";
        assert_eq!(
            t.encode(text, true).unwrap(),
            vec![261, 259, 262, b'\n' as u32]
        );
        let plain = t.encode(text, false).unwrap();
        assert!(!plain.contains(&261) && !plain.contains(&262));
        assert_eq!(t.decode(&plain), text);
        assert!(t.is_special(261) && t.is_special(262));
        assert!(!t.is_special(259) && !t.is_special(9999));
        assert_eq!(t.decode(&[261, 259, 262]), "<|im_start|>hello<|im_end|>");
        assert_eq!(t.decode_skip_special(&[261, 259, 262]), "hello");
        // A truncated special token is ordinary text.
        assert_eq!(t.encode("<|im_sta", true).unwrap().len(), 8);
    }

    #[test]
    fn longest_special_token_wins() {
        let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_to_char(b).to_string()).collect();
        tokens.push("<s>".into());
        tokens.push("<s>x".into());
        let mut types = vec![TYPE_NORMAL; 256];
        types.extend([TYPE_CONTROL, TYPE_USER_DEFINED]);
        let t = Tokenizer::from_parts(tokens, types, vec![], PreTokenizer::Gpt2, Some(256), None)
            .unwrap();
        assert_eq!(
            t.encode("<s>x<s>y", true).unwrap(),
            vec![257, 256, b'y' as u32]
        );
        assert_eq!(t.bos(), Some(256));
    }

    #[test]
    fn unicode_round_trips() {
        let t = hello();
        let text = "Léon: The Professional (1994) 🎬🍿 naïve — 日本語\n\n  hello\tworld 👩‍👩‍👧 Ⅻ";
        let ids = t.encode(text, true).unwrap();
        assert_eq!(t.decode(&ids), text);
        // Invalid UTF-8 (a lone continuation byte) is replaced, unknown ids skipped.
        assert_eq!(
            t.decode(&[b'a' as u32, 0x80, 9999, b'b' as u32]),
            "a\u{FFFD}b"
        );
    }

    fn split(pre: PreTokenizer, text: &str) -> Vec<String> {
        let pieces = pre.split(text);
        assert_eq!(pieces.concat(), text);
        pieces
    }

    #[test]
    fn scripts_with_combining_marks_split_as_the_regex_does() {
        // the hand-written pre-tokenizer took `Alphabetic` for `\p{L}` and gave `हिन`, `्`, `दी`
        assert_eq!(
            split(PreTokenizer::Gpt2, "हिन्दी"),
            ["ह", "ि", "न", "्", "द", "ी"]
        );
        let t = hello();
        let ids = t.encode("हिन्दी ภาษาไทย", false).unwrap();
        assert_eq!(t.decode(&ids), "हिन्दी ภาษาไทย");
    }

    // Expected pieces checked against Hugging Face `tokenizers` 0.23.
    #[test]
    fn gpt2_pre_tokenizer() {
        let p = PreTokenizer::Gpt2;
        assert_eq!(
            split(p, "Hello world  foo's 12345!!\n\nbar"),
            ["Hello", " world", " ", " foo", "'s", " 12345", "!!", "\n", "\n", "bar"]
        );
        assert_eq!(
            split(p, "I'M here 'Re we'VE x'll"),
            ["I", "'", "M", " here", " '", "Re", " we", "'", "VE", " x", "'ll"]
        );
        assert_eq!(
            split(p, "  lead\ttab\t\tz  "),
            [" ", " lead", "\t", "tab", "\t", "\t", "z", "  "]
        );
        assert_eq!(
            split(p, "a\r\n\r\n b\n \nc"),
            ["a", "\r\n\r\n", " b", "\n ", "\n", "c"]
        );
        assert_eq!(
            split(p, "(foo ((bar \"Léon\" 日本語 ①② Ⅻ café 🎬🎬 ok"),
            [
                "(",
                "foo",
                " ((",
                "bar",
                " \"",
                "Léon",
                "\"",
                " 日本語",
                " ①②",
                " Ⅻ",
                " café",
                " 🎬🎬",
                " ok"
            ]
        );
        assert_eq!(split(p, "end !!\n\n  "), ["end", " !!", "\n\n  "]);
        assert!(split(p, "").is_empty());
    }

    #[test]
    fn smollm_pre_tokenizer() {
        let p = PreTokenizer::SmolLm;
        assert_eq!(
            split(p, "Hello world  foo's 12345!!\n\nbar"),
            [
                "Hello", " world", " ", " foo", "'s", " ", "1", "2", "3", "4", "5", "!!", "\n",
                "\n", "bar"
            ]
        );
        assert_eq!(
            split(p, "Se7en (1995)"),
            ["Se", "7", "en", " (", "1", "9", "9", "5", ")"]
        );
        assert_eq!(
            split(p, "(foo ((bar \"Léon\" 日本語 ①② Ⅻ café 🎬🎬 ok"),
            [
                "(",
                "foo",
                " ((",
                "bar",
                " \"",
                "Léon",
                "\"",
                " 日本語",
                " ",
                "①",
                "②",
                " ",
                "Ⅻ",
                " café",
                " 🎬🎬",
                " ok"
            ]
        );
    }

    #[test]
    fn llama3_pre_tokenizer() {
        let p = PreTokenizer::Llama3;
        assert_eq!(
            split(p, "Hello world  foo's 12345!!\n\nbar"),
            ["Hello", " world", " ", " foo", "'s", " ", "123", "45", "!!\n\n", "bar"]
        );
        assert_eq!(
            split(p, "I'M here 'Re we'VE x'll"),
            ["I", "'M", " here", " '", "Re", " we", "'VE", " x", "'ll"]
        );
        assert_eq!(
            split(p, "  lead\ttab\t\tz  "),
            [" ", " lead", "\ttab", "\t", "\tz", "  "]
        );
        assert_eq!(
            split(p, "a\r\n\r\n b\n \nc"),
            ["a", "\r\n\r\n", " b", "\n \n", "c"]
        );
        assert_eq!(
            split(p, "(foo ((bar \"Léon\" 日本語 ①② Ⅻ café 🎬🎬 ok"),
            [
                "(foo",
                " ((",
                "bar",
                " \"",
                "Léon",
                "\"",
                " 日本語",
                " ",
                "①②",
                " ",
                "Ⅻ",
                " café",
                " 🎬🎬",
                " ok"
            ]
        );
        assert_eq!(split(p, "end !!\n\n  "), ["end", " !!\n\n", "  "]);
        // Case folding as in a Unicode regex: `ſ` (long s) matches `s`.
        assert_eq!(split(p, "x'ſa'Ll"), ["x", "'ſ", "a", "'Ll"]);
    }

    #[test]
    fn qwen2_pre_tokenizer() {
        let p = PreTokenizer::Qwen2;
        assert_eq!(
            split(p, "Hello world  foo's 12345!!\n\nbar"),
            ["Hello", " world", " ", " foo", "'s", " ", "1", "2", "3", "4", "5", "!!\n\n", "bar"]
        );
        assert_eq!(
            split(p, "  lead\ttab\t\tz  "),
            [" ", " lead", "\ttab", "\t", "\tz", "  "]
        );
    }

    #[test]
    fn pre_tokenizer_names() {
        for (name, pre) in [
            ("gpt2", PreTokenizer::Gpt2),
            ("default", PreTokenizer::Gpt2),
            ("smollm", PreTokenizer::SmolLm),
            ("starcoder", PreTokenizer::SmolLm),
            ("refact", PreTokenizer::SmolLm),
            ("llama-bpe", PreTokenizer::Llama3),
            ("llama3", PreTokenizer::Llama3),
            ("qwen2", PreTokenizer::Qwen2),
        ] {
            assert_eq!(PreTokenizer::from_gguf_name(name).unwrap(), pre);
        }
        let err = PreTokenizer::from_gguf_name("deepseek-llm")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`deepseek-llm`"), "{err}");
        assert!(err.contains("smollm") && err.contains("qwen2"), "{err}");
    }

    #[test]
    fn malformed_parts_are_reported() {
        let tokens = vec!["a".to_string(), "b".to_string()];
        let err = Tokenizer::from_parts(
            tokens.clone(),
            vec![1],
            vec![],
            PreTokenizer::Gpt2,
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "tokenizer metadata: 2 tokens but 1 token types"
        );
        let err = Tokenizer::from_parts(
            tokens.clone(),
            vec![],
            vec!["ab".into()],
            PreTokenizer::Gpt2,
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "tokenizer metadata: merge 0 `ab` is not two tokens separated by a space"
        );
        let err = Tokenizer::from_parts(tokens, vec![], vec![], PreTokenizer::Gpt2, None, Some(2))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "tokenizer metadata: eos token id 2 is outside the vocabulary of 2"
        );
    }

    /// A `tokenizer.json` over the 256 byte tokens plus "he", "ll", "hell", "hello", "Ġw",
    /// with merges written as pairs and two special added tokens.
    fn tokenizer_json(model_type: &str, pre: Value) -> Value {
        let mut vocab = serde_json::Map::new();
        for b in 0..=255u8 {
            vocab.insert(byte_to_char(b).to_string(), Value::from(b));
        }
        for (k, t) in ["he", "ll", "hell", "hello", "Ġw"].iter().enumerate() {
            vocab.insert(t.to_string(), Value::from(256 + k));
        }
        serde_json::json!({
            "version": "1.0",
            "added_tokens": [
                {"id": 261, "content": "<|im_start|>", "special": true, "single_word": false,
                 "lstrip": false, "rstrip": false, "normalized": false},
                {"id": 262, "content": "<|im_end|>", "special": true, "single_word": false,
                 "lstrip": false, "rstrip": false, "normalized": false}
            ],
            "normalizer": null,
            "pre_tokenizer": pre,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": model_type,
                "vocab": vocab,
                "merges": [["h", "e"], ["l", "l"], ["he", "ll"], ["hell", "o"], ["Ġ", "w"]]
            }
        })
    }

    fn write(dir: &Path, name: &str, json: &Value) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, serde_json::to_string_pretty(json).unwrap()).unwrap();
        path
    }

    #[test]
    fn loads_tokenizer_json() {
        let dir = tempfile::tempdir().unwrap();
        let byte_level = serde_json::json!({
            "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true
        });
        let path = write(
            dir.path(),
            "tokenizer.json",
            &tokenizer_json("BPE", byte_level),
        );
        write(
            dir.path(),
            "tokenizer_config.json",
            &serde_json::json!({"eos_token": "<|im_end|>", "bos_token": null}),
        );
        let t = Tokenizer::from_tokenizer_json(&path).unwrap();
        assert_eq!(t.vocab_size(), 263);
        assert_eq!(t.eos(), Some(262));
        assert_eq!(t.bos(), None);
        assert!(t.is_special(261) && !t.is_special(259));
        let text = "<|im_start|>hello world<|im_end|>";
        let ids = t.encode(text, true).unwrap();
        assert_eq!(
            ids,
            [
                261,
                259,
                260,
                b'o' as u32,
                b'r' as u32,
                b'l' as u32,
                b'd' as u32,
                262
            ]
        );
        assert_eq!(t.decode_skip_special(&ids), "hello world");
        assert_eq!(ids, hello().encode(text, true).unwrap());
        assert!(!t.encode(text, false).unwrap().contains(&261));

        // SmolLM2's and Llama-3's pre-tokenizer sections give what the GGUF recipe gives
        let smollm = serde_json::json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
        ]});
        let llama = serde_json::json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated",
             "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
             "use_regex": false}
        ]});
        for (name, pre, kind) in [
            ("smollm.json", smollm, PreTokenizer::SmolLm),
            ("llama.json", llama, PreTokenizer::Llama3),
        ] {
            let path = write(dir.path(), name, &tokenizer_json("BPE", pre));
            let t = Tokenizer::from_tokenizer_json(&path).unwrap();
            let text = "hello 2024 world's\n\n x";
            let want = tiny(
                &["he", "ll", "hell", "hello", "Ġw"],
                &["h e", "l l", "he ll", "hell o", "Ġ w"],
                kind,
            );
            assert_eq!(
                t.encode(text, false).unwrap(),
                want.encode(text, false).unwrap(),
                "{name}"
            );
        }
    }

    #[test]
    fn saved_tokenizer_json_reloads_with_the_same_ids() {
        let dir = tempfile::tempdir().unwrap();
        for pre in [
            PreTokenizer::Gpt2,
            PreTokenizer::SmolLm,
            PreTokenizer::Llama3,
            PreTokenizer::Qwen2,
        ] {
            let t = tiny(
                &["he", "ll", "hell", "hello", "Ġw"],
                &["h e", "l l", "he ll", "hell o", "Ġ w"],
                pre,
            );
            let path = dir.path().join("tokenizer.json");
            t.save(&path).unwrap();
            let back = Tokenizer::from_tokenizer_json(&path).unwrap();
            let text = "<|im_start|>hello world 12345 Léon's\n\n<|im_end|>";
            for parse in [true, false] {
                assert_eq!(
                    back.encode(text, parse).unwrap(),
                    t.encode(text, parse).unwrap(),
                    "{pre:?}"
                );
            }
            assert_eq!(back.vocab_size(), t.vocab_size());
            assert!(back.is_special(261) && back.is_special(262));
        }
    }

    #[test]
    fn tokenizer_json_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let byte_level = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
        let path = write(
            dir.path(),
            "tokenizer.json",
            &tokenizer_json("Unigram", byte_level),
        );
        let err = Tokenizer::from_tokenizer_json(&path)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&format!("{}: ", path.display())), "{err}");

        let mut bad_merge = tokenizer_json(
            "BPE",
            serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}),
        );
        bad_merge["model"]["merges"][1] = serde_json::json!(["l"]);
        let path = write(dir.path(), "merge.json", &bad_merge);
        let err = Tokenizer::from_tokenizer_json(&path)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&format!("{}: ", path.display())), "{err}");

        let mut huge = tokenizer_json(
            "BPE",
            serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}),
        );
        huge["added_tokens"][0]["id"] = serde_json::json!(4_000_000_000u64);
        let path = write(dir.path(), "huge.json", &huge);
        let err = Tokenizer::from_tokenizer_json(&path)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&format!("{}: ", path.display())), "{err}");

        let missing = dir.path().join("missing.json");
        let err = Tokenizer::from_tokenizer_json(&missing)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&missing.display().to_string()), "{err}");

        let path = dir.path().join("garbage.json");
        std::fs::write(&path, "{ not json").unwrap();
        let err = Tokenizer::from_tokenizer_json(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("garbage.json: invalid JSON"), "{err}");
    }

    #[test]
    fn chat_templates() {
        assert_eq!(
            ChatTemplate::detect(Some("{{'<|im_start|>' + role}}")),
            ChatTemplate::ChatMl
        );
        assert_eq!(
            ChatTemplate::detect(Some("{{ '<|start_header_id|>' }}")),
            ChatTemplate::Llama3
        );
        assert_eq!(
            ChatTemplate::detect(Some("{{ messages }}")),
            ChatTemplate::Plain
        );
        assert_eq!(ChatTemplate::detect(None), ChatTemplate::Plain);

        assert_eq!(
            ChatTemplate::ChatMl.render(Some("Be brief."), "Hi"),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
             <|im_start|>assistant\n"
        );
        assert_eq!(
            ChatTemplate::ChatMl.render(None, "Hi"),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            ChatTemplate::Llama3.render(Some("Be brief."), "Hi"),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        assert_eq!(
            ChatTemplate::Llama3.render(None, "Hi"),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        assert_eq!(
            ChatTemplate::Plain.render(Some("Be brief."), "Hi"),
            "Be brief.\n\nHi\n"
        );
        assert_eq!(ChatTemplate::Plain.render(None, "Hi"), "Hi\n");
        assert_eq!(ChatTemplate::ChatMl.end_of_turn(), Some("<|im_end|>"));

        // The rendered ChatML prompt tokenises its markers as special tokens.
        let t = hello();
        let ids = t
            .encode(&ChatTemplate::ChatMl.render(None, "hello"), true)
            .unwrap();
        assert_eq!(ids.iter().filter(|&&id| id == 261).count(), 2);
        assert_eq!(ids.iter().filter(|&&id| id == 262).count(), 1);
    }
}
