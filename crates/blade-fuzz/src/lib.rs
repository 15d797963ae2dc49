//! Fuzz harnesses of blade's parsers of untrusted bytes.
//!
//! One function per parser, each taking arbitrary bytes: it must return normally for every
//! input (an `Err` from the parser is fine); a panic, an abort from a huge allocation or a hang
//! is a bug. The cargo-fuzz targets in `fuzz/fuzz_targets/` call exactly these functions, and
//! `tests/corpus.rs` replays every file of `fuzz/corpus/<target>/` through them, so the harness
//! code exists once. [`TARGETS`] lists them by target name.
//!
//! Parsers that read files (the importers, GGUF, safetensors, the dataset loader) get the bytes
//! through a scratch directory of their own per thread, under the system temporary directory.
//! Several harnesses choose a variant from the first byte of the input (see each function).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use blade_core::reward::{parse_reward, CatalogInfo, RewardContext};
use blade_data::importers::{self, Format, ImportOptions};
use blade_data::Dataset;
use blade_llm::gguf::GgufFile;
use blade_llm::load::{self, WeightSource};
use blade_llm::safetensors::{self, SafetensorsModel};
use blade_llm::tokenizer::Tokenizer;
use blade_llm::LoadError;

/// A harness: arbitrary bytes in, nothing out; it panics only on a bug.
pub type Harness = fn(&[u8]);

/// Every fuzz target, by name (the name of its `fuzz/fuzz_targets/<name>.rs` and of its
/// `fuzz/corpus/<name>/` directory).
pub const TARGETS: &[(&str, Harness)] = &[
    ("importers", importers),
    ("python_literal", python_literal),
    ("gguf", gguf),
    ("safetensors", safetensors),
    ("tokenizer_json", tokenizer_json),
    ("dataset_json", dataset_json),
    ("reward_spec", reward_spec),
];

/// The rotary table cap the model-loading harnesses pass to [`load::load_llama`] (as the CLI's
/// `--max-seq-len` would), so that a large `context_length` is not what they measure.
const MAX_SEQ_LEN: usize = 64;

/// A few texts the tokenizer harnesses encode and decode.
const TEXTS: &[&str] = &[
    "",
    "Hello, world! 123 4567",
    "<|im_start|>user\nRecommend a film<|im_end|>\n",
    " \t\n  caf\u{e9} na\u{ef}ve \u{1F642} \u{4E2D}\u{6587} 's 're don't",
];

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

/// A directory owned by one thread, emptied before every use and removed at thread exit.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `f` with this thread's scratch directory, freshly emptied.
fn with_scratch<T>(f: impl FnOnce(&Path) -> T) -> T {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    SCRATCH.with(|cell| {
        let mut slot = cell.borrow_mut();
        let dir = slot.get_or_insert_with(|| {
            let base = if Path::new("/dev/shm").is_dir() {
                PathBuf::from("/dev/shm")
            } else {
                std::env::temp_dir()
            };
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            Scratch(base.join(format!("blade-fuzz-{}-{n}", std::process::id())))
        });
        let _ = std::fs::remove_dir_all(&dir.0);
        std::fs::create_dir_all(&dir.0).expect("create the fuzz scratch directory");
        f(&dir.0)
    })
}

fn put(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write a fuzz scratch file");
    path
}

/// Splits at the first NUL byte: `(before, Some(after))`, or `(all, None)` without one.
fn split_nul(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    }
}

/// The importers' row parsers, through [`importers::import`] on a directory.
///
/// Byte 0 chooses: bits 0-2 the format (0 RecBole atomic, 1 MovieLens-100K, 2 MovieLens-1M,
/// 3 generic CSV, 4 Steam reviews, 5 Australian Steam reviews, 6 Goodreads, 7 Amazon 2018),
/// bit 3 `skip_bad_rows`. The rest is the interactions file; after a NUL byte, if any, comes the
/// metadata (items) file.
pub fn importers(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let (format, main, meta) = match sel & 7 {
        0 => (Format::RecBole, "fuzz.inter", "fuzz.item"),
        1 => (Format::MovieLens100k, "u.data", "u.item"),
        2 => (Format::MovieLens1m, "ratings.dat", "movies.dat"),
        3 => (Format::Csv, "interactions.csv", "items.csv"),
        4 => (Format::Steam, "steam_reviews.json", "steam_games.json"),
        5 => (
            Format::Steam,
            "australian_user_reviews.json",
            "steam_games.json",
        ),
        6 => (
            Format::Goodreads,
            "goodreads_interactions_fuzz.json",
            "goodreads_books_fuzz.json",
        ),
        _ => (Format::Amazon2018, "Fuzz.json", "meta_Fuzz.json"),
    };
    let opts = ImportOptions {
        skip_bad_rows: sel & 8 != 0,
    };
    let (inter, items) = split_nul(rest);
    with_scratch(|dir| {
        put(dir, main, inter);
        if let Some(items) = items {
            put(dir, meta, items);
        }
        if let Ok(ds) = importers::import(format, dir, &opts) {
            // Rows are lines: a reader cannot invent more interactions than there are bytes
            // (the Australian layout has several per line, each at least `{}` long).
            assert!(ds.interactions.len() <= inter.len(), "more rows than bytes");
        }
    });
}

/// The Python-literal parser of the Steam files, on the input as (lossy) UTF-8 text.
pub fn python_literal(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = importers::parse_python_literal(&text);
}

/// The GGUF reader: header, metadata, tensor directory, every tensor's data, the model config,
/// the model itself (rotary table capped at 64 positions) and the tokenizer, whose encode and
/// decode then run on a few texts.
pub fn gguf(data: &[u8]) {
    with_scratch(|dir| {
        let path = put(dir, "model.gguf", data);
        let Ok(f) = GgufFile::open(&path) else {
            return;
        };
        for t in &f.tensors {
            if let Ok((shape, values)) = f.tensor_f32(&t.name) {
                assert_eq!(shape.iter().product::<usize>(), values.len());
            }
        }
        if let Ok(tok) = load::gguf_tokenizer(&f) {
            exercise_tokenizer(&tok);
        }
        if f.config().is_ok() {
            let _ = load_model(&f);
        }
    });
}

fn load_model(src: &dyn WeightSource) -> Result<(), LoadError> {
    let device = blade_core::BackendSpec::Flex
        .device()
        .expect("the flex backend is compiled in");
    load::load_llama(src, Some(MAX_SEQ_LEN), &device).map(|_| ())
}

/// A small safetensors file (an 8 x 4 embedding) for the `config.json` variant of
/// [`safetensors`].
fn small_safetensors(path: &Path) {
    let embed = (0..32).map(|i| i as f32).collect();
    let tensors = [("model.embed_tokens.weight".to_string(), vec![8, 4], embed)];
    safetensors::write_safetensors(path, &tensors).expect("write a fuzz scratch file");
}

/// The safetensors reader and the Hugging Face `config.json`.
///
/// Byte 0 even: the rest is a `.safetensors` file, read whole by
/// [`safetensors::read_safetensors_f32`]. Byte 0 odd: the rest is a `config.json`, followed after a NUL
/// byte by the `model.safetensors` (a fixed 8 x 4 embedding without one), opened as a checkpoint
/// folder whose config and model are then loaded.
pub fn safetensors(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    with_scratch(|dir| {
        if sel & 1 == 0 {
            let path = put(dir, "model.safetensors", rest);
            if let Ok(tensors) = safetensors::read_safetensors_f32(&path) {
                for (shape, values) in tensors.values() {
                    assert_eq!(shape.iter().product::<usize>(), values.len());
                }
            }
            return;
        }
        let (config, weights) = split_nul(rest);
        put(dir, "config.json", config);
        match weights {
            Some(w) => drop(put(dir, "model.safetensors", w)),
            None => small_safetensors(&dir.join("model.safetensors")),
        }
        let Ok(model) = SafetensorsModel::open(dir) else {
            return;
        };
        if model.config().is_ok() {
            let _ = load_model(&model);
        }
    });
}

/// `tokenizer.json` loading, then encode and decode of a few texts with the tokenizer.
///
/// The input is the `tokenizer.json`; after a NUL byte, if any, comes a
/// `tokenizer_config.json` beside it.
pub fn tokenizer_json(data: &[u8]) {
    let (json, config) = split_nul(data);
    with_scratch(|dir| {
        let path = put(dir, "tokenizer.json", json);
        if let Some(config) = config {
            put(dir, "tokenizer_config.json", config);
        }
        if let Ok(tok) = Tokenizer::from_tokenizer_json(&path) {
            exercise_tokenizer(&tok);
        }
    });
}

fn exercise_tokenizer(tok: &Tokenizer) {
    let n = tok.vocab_size();
    for text in TEXTS {
        for special in [false, true] {
            if let Ok(ids) = tok.encode(text, special) {
                assert!(
                    ids.iter().all(|&id| (id as usize) < n),
                    "an id outside the vocabulary"
                );
                let _ = tok.decode(&ids);
                let _ = tok.decode_skip_special(&ids);
            }
        }
    }
    // Any ids, including ones outside the vocabulary, decode without a panic.
    let _ = tok.decode(&[0, 1, u32::MAX, n as u32]);
}

/// The dataset JSON loader ([`Dataset::load`]).
pub fn dataset_json(data: &[u8]) {
    with_scratch(|dir| {
        let path = put(dir, "dataset.json", data);
        let _ = Dataset::load(&path);
    });
}

/// The `--reward` spec parser, on the input as (lossy) UTF-8 text, over a three-item catalogue.
///
/// A spec that parses is scored on a small list, and its name must parse back to a reward of
/// the same name (the documented round trip).
pub fn reward_spec(data: &[u8]) {
    let spec = String::from_utf8_lossy(data);
    let catalog = CatalogInfo::new(vec![vec![0], vec![1], vec![0, 1]], 2, vec![3, 2, 1])
        .with_user_tastes(vec![vec![0.3, 0.7]]);
    let Ok(reward) = parse_reward(&spec, &catalog) else {
        return;
    };
    let ctx = RewardContext {
        user: Some(0),
        history: &[0, 1],
        window: &[0, 1],
        targets: &[2],
        catalog: &catalog,
    };
    let _ = reward.score(&ctx, &[2, 0, 7]);
    let name = reward.name();
    match parse_reward(&name, &catalog) {
        Ok(again) => assert_eq!(
            again.name(),
            name,
            "the name of {spec:?} does not round-trip"
        ),
        Err(e) => panic!("the name {name:?} of {spec:?} does not parse back: {e}"),
    }
}
