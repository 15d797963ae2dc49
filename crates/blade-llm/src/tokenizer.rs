//! A byte-level BPE tokenizer (GPT-2 style), as used by SmolLM2, Llama-3 and Qwen2.
//!
//! The tokenizer is built either from the vocabulary stored in a GGUF file's metadata
//! ([`Tokenizer::from_parts`]) or from a Hugging Face `tokenizer.json`
//! ([`Tokenizer::from_tokenizer_json`]). Encoding runs in four steps:
//!
//! 1. when asked, special tokens (GGUF token types control and user-defined, or the
//!    `added_tokens` of a `tokenizer.json`) are cut out of the text literally, longest match first;
//! 2. the remaining text is split into pre-tokens by a hand-coded equivalent of the model's
//!    pre-tokenizer regular expression ([`PreTokenizer`]);
//! 3. each pre-token's UTF-8 bytes are mapped to printable characters with GPT-2's
//!    `bytes_to_unicode` table;
//! 4. the lowest-ranked adjacent pair from the merges list is merged until none applies, and the
//!    resulting symbols are looked up in the vocabulary.
//!
//! Decoding reverses the byte mapping and replaces invalid UTF-8 lossily.
//!
//! # Approximations
//!
//! The regular expressions use Unicode classes that are approximated with `std`:
//! `\p{L}` is `char::is_alphabetic() && !char::is_numeric()`, `\p{N}` is `char::is_numeric()`
//! (exactly `Nd`, `Nl` and `No`) and `\s` is `char::is_whitespace()` (the Unicode `White_Space`
//! property, as in Oniguruma). The `Alphabetic` property is wider than `\p{L}` by about 1,400
//! assigned code points (`Other_Alphabetic`): the vowel signs and points of Indic, Southeast
//! Asian, Hebrew, Arabic and Syriac scripts, the Latin combining letters U+0363..U+036F and
//! circled or squared letters such as `Ⓐ`. Those count as letters here and not in the regex, so
//! Devanagari `हिन्दी` is split `हिन`, `्`, `दी` where the regex gives `ह`, `ि`, `न`, `्`, `द`,
//! `ी`. Latin (including precomposed accents), Greek, Cyrillic, CJK, Hangul and unpointed Arabic
//! text, digits, punctuation and emoji are classified as the regex does (up to differences between
//! the Unicode versions of Rust's tables and the reference's). No Unicode normalisation
//! is applied: a `tokenizer.json` declaring an NFC normaliser (Qwen2) is accepted, and input text
//! is expected to be NFC already.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

/// GGUF token type of an ordinary vocabulary entry.
const TYPE_NORMAL: i32 = 1;
/// GGUF token type of a control token such as `<|im_start|>`.
const TYPE_CONTROL: i32 = 3;
/// GGUF token type of a user-defined token, matched literally like a control token.
const TYPE_USER_DEFINED: i32 = 4;
/// GGUF token type of an unused slot.
const TYPE_UNUSED: i32 = 5;
/// GGUF token type of a byte token written `<0xNN>`.
const TYPE_BYTE: i32 = 6;

/// Number of pre-token encodings kept in the cache before it is emptied.
const CACHE_CAPACITY: usize = 1 << 16;

/// The Llama-3 pre-tokenizer pattern as written in its `tokenizer.json`.
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The Qwen2 pre-tokenizer pattern as written in its `tokenizer.json`.
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Errors raised while building a [`Tokenizer`] or encoding text.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A file could not be read.
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
    /// A byte of the input has no token, neither as a merged symbol nor on its own.
    #[error("cannot encode {piece:?}: byte 0x{byte:02x} has no token in the vocabulary")]
    UnencodableByte {
        /// The pre-token being encoded.
        piece: String,
        /// The byte without a token.
        byte: u8,
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

// ---------------------------------------------------------------------------------------------
// Byte-level mapping
// ---------------------------------------------------------------------------------------------

/// Whether GPT-2's `bytes_to_unicode` maps byte `b` to the character with the same code.
const fn is_printable_byte(b: u8) -> bool {
    matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// GPT-2's `bytes_to_unicode`: printable bytes map to themselves, the others in increasing order
/// to U+0100, U+0101, ...
const BYTE_TO_CHAR: [char; 256] = {
    let mut table = ['\0'; 256];
    let mut next = 0x100u32;
    let mut b = 0usize;
    while b < 256 {
        let code = if is_printable_byte(b as u8) {
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

/// Highest character code produced by [`BYTE_TO_CHAR`] plus one.
const CHAR_TABLE_LEN: usize = 0x100 + 68;

/// Inverse of [`BYTE_TO_CHAR`], indexed by character code; -1 where no byte maps there.
const CHAR_TO_BYTE: [i16; CHAR_TABLE_LEN] = {
    let mut table = [-1i16; CHAR_TABLE_LEN];
    let mut b = 0usize;
    while b < 256 {
        table[BYTE_TO_CHAR[b] as usize] = b as i16;
        b += 1;
    }
    table
};

/// The character GPT-2's byte-level alphabet uses for byte `b` (printable ASCII maps to itself,
/// other bytes to U+0100 and up): the vocabulary spelling of a single-byte token.
pub fn byte_level_char(b: u8) -> char {
    BYTE_TO_CHAR[b as usize]
}

fn byte_to_char(b: u8) -> char {
    BYTE_TO_CHAR[b as usize]
}

/// The byte a printable character stands for, if it is one of the 256 in the table.
fn char_to_byte(c: char) -> Option<u8> {
    let code = c as usize;
    if code < CHAR_TABLE_LEN && CHAR_TO_BYTE[code] >= 0 {
        Some(CHAR_TO_BYTE[code] as u8)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizers
// ---------------------------------------------------------------------------------------------

/// How text is split into pre-tokens before BPE; each variant is a hand-coded equivalent of the
/// regular expression(s) the model was trained with (see the module documentation for the
/// Unicode approximations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PreTokenizer {
    /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
    Gpt2,
    /// SmolLM / StarCoder / Refact: every single digit `\p{N}` is first split off as its own
    /// piece, then the GPT-2 pattern is applied to each remaining stretch of text.
    SmolLm,
    /// Llama-3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
    /// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
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

    /// Splits `text` into pre-tokens; the pieces concatenate back to `text`.
    pub fn split<'a>(&self, text: &'a str) -> Vec<&'a str> {
        let indexed: Vec<(usize, char)> = text.char_indices().collect();
        let chars: Vec<char> = indexed.iter().map(|&(_, c)| c).collect();
        let mut ranges = Vec::new();
        match self {
            Self::Gpt2 => split_gpt2(&chars, 0, &mut ranges),
            Self::SmolLm => {
                let mut segment = 0;
                for (k, &c) in chars.iter().enumerate() {
                    if is_number(c) {
                        if segment < k {
                            split_gpt2(&chars[segment..k], segment, &mut ranges);
                        }
                        ranges.push((k, k + 1));
                        segment = k + 1;
                    }
                }
                if segment < chars.len() {
                    split_gpt2(&chars[segment..], segment, &mut ranges);
                }
            }
            Self::Llama3 => split_llama(&chars, 3, &mut ranges),
            Self::Qwen2 => split_llama(&chars, 1, &mut ranges),
        }
        let byte_at = |k: usize| indexed.get(k).map_or(text.len(), |&(b, _)| b);
        ranges
            .into_iter()
            .map(|(start, end)| &text[byte_at(start)..byte_at(end)])
            .collect()
    }
}

/// `\p{L}`, approximated (see the module documentation).
fn is_letter(c: char) -> bool {
    c.is_alphabetic() && !c.is_numeric()
}

/// `\p{N}`.
fn is_number(c: char) -> bool {
    c.is_numeric()
}

/// `[^\s\p{L}\p{N}]`.
fn is_other(c: char) -> bool {
    !c.is_whitespace() && !is_letter(c) && !is_number(c)
}

/// `[\r\n]`.
fn is_newline(c: char) -> bool {
    c == '\r' || c == '\n'
}

/// The end of the run of characters satisfying `pred` that starts at `from`.
fn run_end(chars: &[char], from: usize, pred: impl Fn(char) -> bool) -> usize {
    chars[from..]
        .iter()
        .position(|&c| !pred(c))
        .map_or(chars.len(), |k| from + k)
}

/// Length of the contraction (`'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d`) starting at `i`, if
/// any; `ignore_case` folds case as a Unicode regex engine does for these letters (ASCII case,
/// and U+017F `ſ` matching `s`).
fn contraction(chars: &[char], i: usize, ignore_case: bool) -> Option<usize> {
    if chars[i] != '\'' {
        return None;
    }
    let at = |k: usize| {
        chars.get(i + k).map(|&c| {
            if !ignore_case {
                c
            } else if c == '\u{17F}' {
                's'
            } else {
                c.to_ascii_lowercase()
            }
        })
    };
    match (at(1), at(2)) {
        (Some('s' | 't' | 'm' | 'd'), _) => Some(2),
        (Some('r' | 'v'), Some('e')) | (Some('l'), Some('l')) => Some(3),
        _ => None,
    }
}

/// End of the match of `\s+(?!\S)|\s+` at `i` (a whitespace character): a whitespace run followed
/// by a non-space leaves its last character to the next piece, unless it is a single character.
fn whitespace_end(chars: &[char], i: usize) -> usize {
    let end = run_end(chars, i, char::is_whitespace);
    if end == chars.len() || end - i == 1 {
        end
    } else {
        end - 1
    }
}

/// The GPT-2 pattern on `chars`, pushing `(start, end)` character ranges shifted by `base`.
fn split_gpt2(chars: &[char], base: usize, out: &mut Vec<(usize, usize)>) {
    let n = chars.len();
    let mut i = 0;
    while i < n {
        let c = chars[i];
        let end = if let Some(len) = contraction(chars, i, false) {
            i + len
        } else {
            // ` ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+`
            let body = if c == ' ' { i + 1 } else { i };
            let class: Option<fn(char) -> bool> = match chars.get(body) {
                Some(&b) if is_letter(b) => Some(is_letter),
                Some(&b) if is_number(b) => Some(is_number),
                Some(&b) if is_other(b) => Some(is_other),
                _ => None,
            };
            match class {
                Some(pred) => run_end(chars, body, pred),
                None => whitespace_end(chars, i),
            }
        };
        out.push((base + i, base + end));
        i = end;
    }
}

/// The Llama-3 pattern (`max_digits` = 3) or the Qwen2 pattern (`max_digits` = 1) on `chars`.
fn split_llama(chars: &[char], max_digits: usize, out: &mut Vec<(usize, usize)>) {
    let n = chars.len();
    let mut i = 0;
    while i < n {
        let c = chars[i];
        // Where `[^\s\p{L}\p{N}]+` would start after the optional space of ` ?`.
        let other_start = if c == ' ' { i + 1 } else { i };
        let end = if let Some(len) = contraction(chars, i, true) {
            i + len
        } else if is_letter(c) {
            // `[^\r\n\p{L}\p{N}]?\p{L}+` without the optional character
            run_end(chars, i, is_letter)
        } else if !is_newline(c) && !is_number(c) && chars.get(i + 1).is_some_and(|&d| is_letter(d))
        {
            // ... and with it
            run_end(chars, i + 1, is_letter)
        } else if is_number(c) {
            // `\p{N}{1,3}` or `\p{N}`
            run_end(chars, i, is_number).min(i + max_digits)
        } else if chars.get(other_start).is_some_and(|&d| is_other(d)) {
            // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
            run_end(chars, run_end(chars, other_start, is_other), is_newline)
        } else {
            // `\s*[\r\n]+`: the whitespace run up to and including its last newline
            let run = run_end(chars, i, char::is_whitespace);
            match chars[i..run].iter().rposition(|&d| is_newline(d)) {
                Some(k) => i + k + 1,
                None => whitespace_end(chars, i),
            }
        };
        out.push((i, end));
        i = end;
    }
}

// ---------------------------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------------------------

/// A byte-level BPE tokenizer.
///
/// Encodings of pre-tokens are cached, so the tokenizer is cheap to call repeatedly on similar
/// text; it is `Send + Sync`.
pub struct Tokenizer {
    /// Token texts by id (byte-level encoded for ordinary tokens, literal for special ones).
    tokens: Vec<String>,
    /// GGUF token types by id.
    types: Vec<i32>,
    /// Token ids by text (first id where a text repeats).
    token_to_id: HashMap<String, u32>,
    /// Ranked merges: pair of symbol ids → (rank, merged symbol id). Symbols are vocabulary ids,
    /// or ids from `vocab_size()` up for strings that occur in the merges only.
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Initial BPE symbol of each byte, if any.
    byte_symbol: [Option<u32>; 256],
    /// Vocabulary id of each byte's own token, if any (fallback for unknown symbols).
    byte_token: [Option<u32>; 256],
    /// Special tokens (text, id), longest first.
    specials: Vec<(String, u32)>,
    /// Whether a byte starts some special token.
    special_first: [bool; 256],
    pre: PreTokenizer,
    /// Whether a pre-token found whole in the vocabulary skips BPE (Llama-3).
    ignore_merges: bool,
    bos: Option<u32>,
    eos: Option<u32>,
    cache: Mutex<HashMap<String, Vec<u32>>>,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.tokens.len())
            .field("merges", &self.merges.len())
            .field("specials", &self.specials.len())
            .field("pre", &self.pre)
            .field("ignore_merges", &self.ignore_merges)
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish()
    }
}

/// How many unused ids a `tokenizer.json` may leave below its largest id (its id table is
/// dense, so this bounds the table by the number of tokens in the file).
const MAX_ID_GAPS: usize = 1 << 16;

/// Splits a merge line `"a b"` at its first space after the first character (as llama.cpp does).
fn split_merge(line: &str) -> Option<(&str, &str)> {
    let first = line.chars().next()?.len_utf8();
    let space = first + line[first..].find(' ')?;
    Some((&line[..space], &line[space + 1..]))
}

impl Tokenizer {
    /// Builds a tokenizer from the vocabulary as stored in GGUF metadata:
    /// `tokenizer.ggml.tokens`, `tokenizer.ggml.token_type` (1 normal, 2 unknown, 3 control,
    /// 4 user-defined, 5 unused, 6 byte; may be empty, meaning all normal) and
    /// `tokenizer.ggml.merges` (`"a b"` each, in rank order).
    ///
    /// Control and user-defined tokens are special: [`encode`](Self::encode) matches them
    /// literally when asked to. As in llama.cpp, the [`Llama3`](PreTokenizer::Llama3)
    /// pre-tokenizer implies `ignore_merges` (a pre-token that is a whole vocabulary entry is
    /// not split).
    pub fn from_parts(
        tokens: Vec<String>,
        token_types: Vec<i32>,
        merges: Vec<String>,
        pre: PreTokenizer,
        bos: Option<u32>,
        eos: Option<u32>,
    ) -> Result<Self, TokenizerError> {
        const ORIGIN: &str = "tokenizer metadata";
        let merges = merges
            .iter()
            .enumerate()
            .map(|(k, line)| {
                split_merge(line)
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| {
                        TokenizerError::invalid(
                            ORIGIN,
                            format!("merge {k} `{line}` is not two tokens separated by a space"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ignore_merges = pre == PreTokenizer::Llama3;
        Self::build(
            ORIGIN,
            tokens,
            token_types,
            merges,
            pre,
            ignore_merges,
            bos,
            eos,
        )
    }

    /// Reads a Hugging Face `tokenizer.json` whose model is byte-level BPE.
    ///
    /// `model.merges` may hold `"a b"` strings or `["a", "b"]` pairs; `added_tokens` marked
    /// `"special": true` become special (control) tokens, the other added tokens user-defined
    /// tokens (as llama.cpp's converter does), both matched literally by
    /// [`encode`](Self::encode). The pre-tokenizer is recognised from the `pre_tokenizer`
    /// section (ByteLevel → GPT-2, Digits + ByteLevel → SmolLM, the Llama-3 or Qwen2 Split
    /// pattern + ByteLevel). BOS and EOS are taken from `bos_token` and `eos_token` in a
    /// `tokenizer_config.json` next to the file, when there is one.
    pub fn from_tokenizer_json(path: &Path) -> Result<Self, TokenizerError> {
        let origin = path.display().to_string();
        let bad = |message: String| TokenizerError::invalid(&origin, message);
        let root = read_json(path)?;

        let model = root
            .get("model")
            .filter(|m| m.is_object())
            .ok_or_else(|| bad("no `model` object".into()))?;
        match model.get("type") {
            None => {}
            Some(Value::String(kind)) if kind == "BPE" => {}
            Some(Value::String(kind)) => {
                return Err(bad(format!("model.type is `{kind}`, expected `BPE`")));
            }
            Some(other) => return Err(bad(format!("model.type is {other}, expected `BPE`"))),
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let Some(Value::String(s)) = model.get(key) {
                if !s.is_empty() {
                    return Err(bad(format!("model.{key} `{s}` is not supported")));
                }
            }
        }
        let ignore_merges = model
            .get("ignore_merges")
            .and_then(Value::as_bool)
            .unwrap_or(false);

        // Vocabulary, then added tokens, into a dense id → text table.
        let vocab = model
            .get("vocab")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("model.vocab is missing or not an object".into()))?;
        let mut entries: Vec<(u32, String, i32)> = Vec::with_capacity(vocab.len());
        for (text, id) in vocab {
            let id = id
                .as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| bad(format!("model.vocab[{text:?}] is {id}, not a token id")))?;
            entries.push((id, text.clone(), TYPE_NORMAL));
        }
        if let Some(added) = root.get("added_tokens").filter(|a| !a.is_null()) {
            let added = added
                .as_array()
                .ok_or_else(|| bad("added_tokens is not an array".into()))?;
            for (k, token) in added.iter().enumerate() {
                let id = token
                    .get("id")
                    .and_then(Value::as_u64)
                    .and_then(|id| u32::try_from(id).ok())
                    .ok_or_else(|| bad(format!("added_tokens[{k}] has no valid `id`")))?;
                let content = token
                    .get("content")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(format!("added_tokens[{k}] has no `content`")))?;
                let special = token
                    .get("special")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let kind = if special {
                    TYPE_CONTROL
                } else {
                    TYPE_USER_DEFINED
                };
                entries.push((id, content.to_string(), kind));
            }
        }
        let size = entries
            .iter()
            .map(|&(id, _, _)| id as usize + 1)
            .max()
            .unwrap_or(0);
        // The id table is dense: bound it by what the file holds, so that one huge id (e.g.
        // 4294967295) is an error rather than a table of billions of entries.
        if size > entries.len() + MAX_ID_GAPS {
            let (id, text, _) = entries
                .iter()
                .max_by_key(|&&(id, _, _)| id)
                .expect("size > 0 implies an entry");
            return Err(bad(format!(
                "token {text:?} has id {id}, but the file holds only {} tokens (ids may leave at \
                 most {MAX_ID_GAPS} unused): corrupt tokenizer?",
                entries.len()
            )));
        }
        let mut tokens = vec![String::new(); size];
        let mut types = vec![TYPE_UNUSED; size];
        for (id, text, kind) in entries {
            tokens[id as usize] = text;
            types[id as usize] = kind;
        }

        let merges_json = model
            .get("merges")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("model.merges is missing or not an array".into()))?;
        let mut merges = Vec::with_capacity(merges_json.len());
        for (k, merge) in merges_json.iter().enumerate() {
            let pair = match merge {
                Value::String(line) => split_merge(line),
                Value::Array(pair) => match pair.as_slice() {
                    [Value::String(a), Value::String(b)] => Some((a.as_str(), b.as_str())),
                    _ => None,
                },
                _ => None,
            };
            let (a, b) = pair.ok_or_else(|| {
                bad(format!(
                    "model.merges[{k}] is {merge}, expected \"a b\" or [\"a\", \"b\"]"
                ))
            })?;
            merges.push((a.to_string(), b.to_string()));
        }

        match root.get("normalizer") {
            None | Some(Value::Null) => {}
            Some(n) if n.get("type").and_then(Value::as_str) == Some("NFC") => {}
            Some(n) => {
                return Err(bad(format!(
                    "normalizer {} is not supported",
                    n.get("type").unwrap_or(n)
                )));
            }
        }
        let pre = match root.get("pre_tokenizer") {
            Some(p) if !p.is_null() => detect_pre_tokenizer(p).map_err(bad)?,
            _ => return Err(bad("no pre_tokenizer; a byte-level BPE needs one".into())),
        };

        let mut tokenizer = Self::build(
            &origin,
            tokens,
            types,
            merges,
            pre,
            ignore_merges,
            None,
            None,
        )?;
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
        Ok(tokenizer)
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        origin: &str,
        tokens: Vec<String>,
        token_types: Vec<i32>,
        merges: Vec<(String, String)>,
        pre: PreTokenizer,
        ignore_merges: bool,
        bos: Option<u32>,
        eos: Option<u32>,
    ) -> Result<Self, TokenizerError> {
        let types = if token_types.is_empty() {
            vec![TYPE_NORMAL; tokens.len()]
        } else if token_types.len() == tokens.len() {
            token_types
        } else {
            return Err(TokenizerError::invalid(
                origin,
                format!(
                    "{} tokens but {} token types",
                    tokens.len(),
                    token_types.len()
                ),
            ));
        };
        if tokens.is_empty() {
            return Err(TokenizerError::invalid(origin, "the vocabulary is empty"));
        }
        let vocab_size = u32::try_from(tokens.len())
            .map_err(|_| TokenizerError::invalid(origin, "the vocabulary is too large"))?;
        for (name, id) in [("bos", bos), ("eos", eos)] {
            if let Some(id) = id.filter(|&id| id >= vocab_size) {
                return Err(TokenizerError::invalid(
                    origin,
                    format!("{name} token id {id} is outside the vocabulary of {vocab_size}"),
                ));
            }
        }

        let mut token_to_id = HashMap::with_capacity(tokens.len());
        for (id, text) in tokens.iter().enumerate() {
            if !text.is_empty() {
                token_to_id.entry(text.clone()).or_insert(id as u32);
            }
        }

        // Symbols: vocabulary ids first, then strings that only occur in the merges.
        let mut extra_ids: HashMap<String, u32> = HashMap::new();
        let mut symbol = |text: &str| -> u32 {
            if let Some(&id) = token_to_id.get(text) {
                return id;
            }
            if let Some(&id) = extra_ids.get(text) {
                return id;
            }
            let id = vocab_size + extra_ids.len() as u32;
            extra_ids.insert(text.to_string(), id);
            id
        };
        let mut merge_table = HashMap::with_capacity(merges.len());
        for (rank, (a, b)) in merges.iter().enumerate() {
            let left = symbol(a);
            let right = symbol(b);
            let merged = symbol(&format!("{a}{b}"));
            merge_table
                .entry((left, right))
                .or_insert((rank as u32, merged));
        }
        let mut byte_symbol = [None; 256];
        for (b, slot) in byte_symbol.iter_mut().enumerate() {
            let text = byte_to_char(b as u8).to_string();
            *slot = token_to_id
                .get(&text)
                .or_else(|| extra_ids.get(&text))
                .copied();
        }
        let mut byte_token = [None; 256];
        for (b, slot) in byte_token.iter_mut().enumerate() {
            *slot = token_to_id.get(&byte_to_char(b as u8).to_string()).copied();
        }

        let mut specials: Vec<(String, u32)> = tokens
            .iter()
            .zip(&types)
            .enumerate()
            .filter(|&(_, (text, &kind))| {
                !text.is_empty() && (kind == TYPE_CONTROL || kind == TYPE_USER_DEFINED)
            })
            .map(|(id, (text, _))| (text.clone(), id as u32))
            .collect();
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let mut special_first = [false; 256];
        for (text, _) in &specials {
            special_first[text.as_bytes()[0] as usize] = true;
        }

        Ok(Self {
            tokens,
            types,
            token_to_id,
            merges: merge_table,
            byte_symbol,
            byte_token,
            specials,
            special_first,
            pre,
            ignore_merges,
            bos,
            eos,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Encodes `text` into token ids. With `parse_special`, the text of special tokens
    /// (control and user-defined, e.g. `<|im_start|>`) is matched literally, longest first, and
    /// becomes their id; otherwise it is tokenised like any other text. No BOS or EOS is added.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 1);
        if !parse_special || self.specials.is_empty() {
            self.encode_ordinary(text, &mut ids)?;
            return Ok(ids);
        }
        let bytes = text.as_bytes();
        let mut segment = 0;
        let mut i = 0;
        while i < bytes.len() {
            // A byte that starts a special token is never a UTF-8 continuation byte, so `i` is
            // a character boundary whenever a special token matches here.
            if self.special_first[bytes[i] as usize] {
                if let Some((len, id)) = self.match_special(&bytes[i..]) {
                    self.encode_ordinary(&text[segment..i], &mut ids)?;
                    ids.push(id);
                    i += len;
                    segment = i;
                    continue;
                }
            }
            i += 1;
        }
        self.encode_ordinary(&text[segment..], &mut ids)?;
        Ok(ids)
    }

    /// The longest special token at the start of `rest`: (length in bytes, id).
    fn match_special(&self, rest: &[u8]) -> Option<(usize, u32)> {
        self.specials
            .iter()
            .find(|(text, _)| rest.starts_with(text.as_bytes()))
            .map(|(text, id)| (text.len(), *id))
    }

    /// Pre-tokenises and BPE-encodes text that holds no special tokens.
    fn encode_ordinary(&self, text: &str, ids: &mut Vec<u32>) -> Result<(), TokenizerError> {
        if text.is_empty() {
            return Ok(());
        }
        for piece in self.pre.split(text) {
            let cached = self
                .cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(piece)
                .cloned();
            let encoded = match cached {
                Some(encoded) => encoded,
                None => {
                    let encoded = self.encode_piece(piece)?;
                    let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                    if cache.len() >= CACHE_CAPACITY {
                        cache.clear();
                    }
                    cache.insert(piece.to_string(), encoded.clone());
                    encoded
                }
            };
            ids.extend_from_slice(&encoded);
        }
        Ok(())
    }

    /// BPE on one pre-token.
    fn encode_piece(&self, piece: &str) -> Result<Vec<u32>, TokenizerError> {
        let bytes = piece.as_bytes();
        if self.ignore_merges {
            let mapped: String = bytes.iter().map(|&b| byte_to_char(b)).collect();
            if let Some(&id) = self.token_to_id.get(&mapped) {
                return Ok(vec![id]);
            }
        }
        let unencodable = |byte: u8| TokenizerError::UnencodableByte {
            piece: piece.to_string(),
            byte,
        };

        /// A symbol of the word being merged, in a doubly linked list over the initial bytes.
        struct Node {
            symbol: u32,
            prev: usize,
            next: usize,
            alive: bool,
        }
        const NONE: usize = usize::MAX;
        let mut nodes = Vec::with_capacity(bytes.len());
        for (k, &b) in bytes.iter().enumerate() {
            let symbol = self.byte_symbol[b as usize].ok_or_else(|| unencodable(b))?;
            nodes.push(Node {
                symbol,
                prev: if k == 0 { NONE } else { k - 1 },
                next: if k + 1 == bytes.len() { NONE } else { k + 1 },
                alive: true,
            });
        }
        // Candidate merges ordered by rank, then by position (leftmost first).
        let mut heap: BinaryHeap<Reverse<(u32, usize, usize)>> = BinaryHeap::new();
        let rank_of = |nodes: &[Node], left: usize, right: usize| {
            self.merges
                .get(&(nodes[left].symbol, nodes[right].symbol))
                .map(|&(rank, _)| rank)
        };
        for left in 0..nodes.len().saturating_sub(1) {
            if let Some(rank) = rank_of(&nodes, left, left + 1) {
                heap.push(Reverse((rank, left, left + 1)));
            }
        }
        while let Some(Reverse((rank, left, right))) = heap.pop() {
            if !nodes[left].alive || !nodes[right].alive || nodes[left].next != right {
                continue;
            }
            let Some(&(current, merged)) =
                self.merges.get(&(nodes[left].symbol, nodes[right].symbol))
            else {
                continue;
            };
            if current != rank {
                continue; // stale entry: one side has been merged since
            }
            nodes[left].symbol = merged;
            nodes[right].alive = false;
            let after = nodes[right].next;
            nodes[left].next = after;
            if after != NONE {
                nodes[after].prev = left;
                if let Some(rank) = rank_of(&nodes, left, after) {
                    heap.push(Reverse((rank, left, after)));
                }
            }
            let before = nodes[left].prev;
            if before != NONE {
                if let Some(rank) = rank_of(&nodes, before, left) {
                    heap.push(Reverse((rank, before, left)));
                }
            }
        }

        let vocab_size = self.tokens.len();
        let mut ids = Vec::new();
        let mut k = if nodes.is_empty() { NONE } else { 0 };
        while k != NONE {
            let symbol = nodes[k].symbol;
            let next = nodes[k].next;
            if (symbol as usize) < vocab_size {
                ids.push(symbol);
            } else {
                // A merged symbol missing from the vocabulary: fall back to the tokens of the
                // bytes it covers.
                let end = if next == NONE { bytes.len() } else { next };
                for &byte in &bytes[k..end] {
                    ids.push(self.byte_token[byte as usize].ok_or_else(|| unencodable(byte))?);
                }
            }
            k = next;
        }
        Ok(ids)
    }

    /// Decodes ids into text; special tokens are written as their literal text. Unknown ids are
    /// skipped and invalid UTF-8 is replaced by U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.decode_with(ids, false)
    }

    /// Decodes ids into text, leaving out special tokens (those for which
    /// [`is_special`](Self::is_special) holds).
    pub fn decode_skip_special(&self, ids: &[u32]) -> String {
        self.decode_with(ids, true)
    }

    fn decode_with(&self, ids: &[u32], skip_special: bool) -> String {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let Some(text) = self.tokens.get(id as usize) else {
                continue;
            };
            let kind = self.types[id as usize];
            if kind == TYPE_CONTROL || kind == TYPE_USER_DEFINED {
                if !skip_special {
                    bytes.extend_from_slice(text.as_bytes());
                }
                continue;
            }
            if kind == TYPE_BYTE {
                let hex = text.strip_prefix("<0x").and_then(|t| t.strip_suffix('>'));
                if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    bytes.push(byte);
                    continue;
                }
            }
            // As Hugging Face's ByteLevel decoder: a token with a character outside the byte
            // table is written as its own UTF-8.
            let start = bytes.len();
            for c in text.chars() {
                match char_to_byte(c) {
                    Some(b) => bytes.push(b),
                    None => {
                        bytes.truncate(start);
                        bytes.extend_from_slice(text.as_bytes());
                        break;
                    }
                }
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Number of token ids.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The id of a token given its vocabulary text (byte-level encoded for ordinary tokens, e.g.
    /// `"Ġthe"`; literal for special tokens, e.g. `"<|im_end|>"`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.token_to_id.get(token).copied()
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

    /// Whether `id` is a special token (GGUF type control or user-defined).
    pub fn is_special(&self, id: u32) -> bool {
        matches!(
            self.types.get(id as usize),
            Some(&TYPE_CONTROL | &TYPE_USER_DEFINED)
        )
    }

    /// The pre-tokenizer in use.
    pub fn pre_tokenizer(&self) -> PreTokenizer {
        self.pre
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

/// Recognises the pre-tokenizer of a `tokenizer.json`.
fn detect_pre_tokenizer(pre: &Value) -> Result<PreTokenizer, String> {
    let kind = |v: &Value| {
        v.get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let flag = |v: &Value, key: &str, default: bool| {
        v.get(key).and_then(Value::as_bool).unwrap_or(default)
    };
    let byte_level = |v: &Value, use_regex: bool| {
        kind(v) == "ByteLevel"
            && !flag(v, "add_prefix_space", false)
            && flag(v, "use_regex", true) == use_regex
    };
    if byte_level(pre, true) {
        return Ok(PreTokenizer::Gpt2);
    }
    if kind(pre) == "Sequence" {
        if let Some(parts) = pre.get("pretokenizers").and_then(Value::as_array) {
            match parts.as_slice() {
                [digits, bl]
                    if kind(digits) == "Digits"
                        && flag(digits, "individual_digits", false)
                        && byte_level(bl, true) =>
                {
                    return Ok(PreTokenizer::SmolLm);
                }
                [split, bl] if kind(split) == "Split" && byte_level(bl, false) => {
                    let pattern = split
                        .get("pattern")
                        .and_then(|p| p.get("Regex"))
                        .and_then(Value::as_str);
                    let behavior = split.get("behavior").and_then(Value::as_str);
                    let isolated = behavior == Some("Isolated") && !flag(split, "invert", false);
                    match pattern {
                        Some(LLAMA3_PATTERN) if isolated => return Ok(PreTokenizer::Llama3),
                        Some(QWEN2_PATTERN) if isolated => return Ok(PreTokenizer::Qwen2),
                        _ => {
                            return Err(format!(
                                "pre_tokenizer Split {} is not the Llama-3 or Qwen2 pattern",
                                split.get("pattern").unwrap_or(&Value::Null)
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Err(format!(
        "pre_tokenizer {pre} is not supported (expected ByteLevel, Digits + ByteLevel, or the \
         Llama-3/Qwen2 Split + ByteLevel)"
    ))
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
    fn byte_table_round_trips_all_256_bytes() {
        let mut seen = std::collections::HashSet::new();
        for b in 0..=255u8 {
            let c = byte_to_char(b);
            assert!(seen.insert(c), "{c:?} appears twice");
            assert_eq!(char_to_byte(c), Some(b));
            if is_printable_byte(b) {
                assert_eq!(c as u32, b as u32);
            } else {
                assert!((0x100..0x144).contains(&(c as u32)));
            }
        }
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(0), '\u{100}');
        assert_eq!(byte_to_char(0xAD), '\u{143}');
        assert_eq!(char_to_byte('\u{144}'), None);
        assert_eq!(char_to_byte('é'), Some(0xE9));
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
    fn symbols_missing_from_the_vocabulary_fall_back_to_bytes() {
        // "xy" is not a token: it falls back to its bytes unless merged further into "xyz".
        let t = tiny(&["xyz"], &["x y", "xy z"], PreTokenizer::Gpt2);
        assert_eq!(
            t.encode("xy", false).unwrap(),
            vec![b'x' as u32, b'y' as u32]
        );
        assert_eq!(t.encode("xyz", false).unwrap(), vec![256]);
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

    fn split(pre: PreTokenizer, text: &str) -> Vec<&str> {
        let pieces = pre.split(text);
        assert_eq!(pieces.concat(), text);
        pieces
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
    /// with merges written both ways and two special added tokens.
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
                {"id": 261, "content": "<|im_start|>", "special": true},
                {"id": 262, "content": "<|im_end|>", "special": true}
            ],
            "normalizer": null,
            "pre_tokenizer": pre,
            "decoder": {"type": "ByteLevel"},
            "model": {
                "type": model_type,
                "vocab": vocab,
                "merges": ["h e", ["l", "l"], "he ll", ["hell", "o"], "Ġ w"]
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
        assert_eq!(t.pre_tokenizer(), PreTokenizer::Gpt2);
        assert_eq!(t.vocab_size(), 263);
        assert_eq!(t.eos(), Some(262));
        assert_eq!(t.bos(), None);
        let ids = t.encode("<|im_start|>hello world<|im_end|>", true).unwrap();
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
        assert_eq!(
            ids,
            hello()
                .encode("<|im_start|>hello world<|im_end|>", true)
                .unwrap()
        );

        // SmolLM2's pre-tokenizer section.
        let smollm = serde_json::json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
        ]});
        let path = write(dir.path(), "smollm.json", &tokenizer_json("BPE", smollm));
        let t = Tokenizer::from_tokenizer_json(&path).unwrap();
        assert_eq!(t.pre_tokenizer(), PreTokenizer::SmolLm);
        // Llama-3's.
        let llama = serde_json::json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated",
             "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
             "use_regex": false}
        ]});
        let path = write(dir.path(), "llama.json", &tokenizer_json("BPE", llama));
        assert_eq!(
            Tokenizer::from_tokenizer_json(&path)
                .unwrap()
                .pre_tokenizer(),
            PreTokenizer::Llama3
        );
    }

    #[test]
    fn tokenizer_json_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let byte_level = serde_json::json!({"type": "ByteLevel"});
        let path = write(
            dir.path(),
            "tokenizer.json",
            &tokenizer_json("WordPiece", byte_level),
        );
        let err = Tokenizer::from_tokenizer_json(&path)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "{}: model.type is `WordPiece`, expected `BPE`",
                path.display()
            )
        );

        let metaspace = serde_json::json!({"type": "Metaspace", "replacement": "▁"});
        let path = write(
            dir.path(),
            "metaspace.json",
            &tokenizer_json("BPE", metaspace),
        );
        let err = Tokenizer::from_tokenizer_json(&path)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("{}: pre_tokenizer ", path.display())),
            "{err}"
        );
        assert!(err.contains("Metaspace"), "{err}");

        let mut bad_merge = tokenizer_json("BPE", serde_json::json!({"type": "ByteLevel"}));
        bad_merge["model"]["merges"][1] = serde_json::json!(["l"]);
        let path = write(dir.path(), "merge.json", &bad_merge);
        let err = Tokenizer::from_tokenizer_json(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("model.merges[1] is [\"l\"]"), "{err}");

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
