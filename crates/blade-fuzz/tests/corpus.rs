//! Replays every file of `fuzz/corpus/<target>/` through its harness (CI runs this; it does not
//! run the fuzzers themselves). A panic names the target and the file.
//!
//! `write_seeds` (ignored) regenerates the seed files (`seed-*`) from the fixtures of the
//! parsers' own tests: `cargo test -p blade-fuzz --test corpus -- --ignored write_seeds`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use blade_fuzz::TARGETS;

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

/// Runs every file of `fuzz/corpus/<name>/` through the harness `name` of [`TARGETS`].
fn replay(name: &str) {
    let harness = TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no harness {name}"))
        .1;
    let dir = corpus_root().join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("read a corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let seeds = files
        .iter()
        .filter(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seed-"))
        })
        .count();
    assert!(seeds > 0, "{}: no seed files", dir.display());
    let mut failures = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).expect("read a corpus file");
        if catch_unwind(AssertUnwindSafe(|| harness(&bytes))).is_err() {
            failures.push(file.display().to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: the harness panicked on {} of {} corpus files:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// One test per target (they run in parallel), plus a check that the list is complete.
macro_rules! replay_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name));
            }
        )*

        #[test]
        fn every_target_has_a_replay_test() {
            let tested = [$(stringify!($name)),*];
            for (name, _) in TARGETS {
                assert!(tested.contains(name), "no replay test for {name}");
            }
        }
    };
}

replay_tests!(
    importers,
    python_literal,
    gguf,
    safetensors,
    tokenizer_json,
    dataset_json,
    reward_spec,
);

#[test]
fn every_target_has_a_fuzz_target_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/fuzz_targets");
    for &(name, _) in TARGETS {
        let file = dir.join(format!("{name}.rs"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            text.contains(&format!("blade_fuzz::{name}(data)")),
            "{} does not call blade_fuzz::{name}",
            file.display()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Seeds, from the fixtures of the parsers' tests.

fn seed(target: &str, name: &str, bytes: &[u8]) {
    let dir = corpus_root().join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

/// `selector byte ++ main ++ [NUL ++ meta]`, the layout of [`blade_fuzz::importers`].
fn importer_input(sel: u8, main: &[u8], meta: Option<&[u8]>) -> Vec<u8> {
    let mut v = vec![sel];
    v.extend_from_slice(main);
    if let Some(meta) = meta {
        v.push(0);
        v.extend_from_slice(meta);
    }
    v
}

fn u_item_row(id: &str, title: &[u8], flags: &[usize]) -> Vec<u8> {
    let mut row = id.as_bytes().to_vec();
    row.push(b'|');
    row.extend_from_slice(title);
    row.extend_from_slice(b"|01-Jan-1995||http://us.imdb.com/x");
    for g in 0..19 {
        row.extend_from_slice(if flags.contains(&g) { b"|1" } else { b"|0" });
    }
    row.push(b'\n');
    row
}

const STEAM_REVIEWS: &str = concat!(
    r#"{'username': 'Chaos Syren', 'hours': 0.1, 'products': 41, 'product_id': '725280', 'page_order': 0, 'date': '2017-12-17', 'text': 'it\'s "fine"', 'early_access': False, 'page': 1}"#,
    "\n",
    r#"{'user_id': '76561198', 'product_id': '440', 'date': '2014-05-01', 'text': "don't \u00e9", 'found_funny': None, 'compensation': 'Product received for free'}"#,
    "\n",
);
const STEAM_GAMES: &str = concat!(
    r#"{'publisher': 'Kotoshiro', 'genres': ['Action', 'Indie'], 'app_name': 'Lost Summoner Kitty', 'id': '725280', 'price': 4.99, 'early_access': False}"#,
    "\n",
    r#"{'app_name': 'Team Fortress 2', 'tags': ['Free to Play', 'FPS'], 'id': '440', 'metascore': 92}"#,
    "\n",
    r#"{'app_name': 'No id at all', 'genres': ['Action']}"#,
    "\n",
);
const AUSTRALIAN: &str = concat!(
    r#"{'user_id': 'u1', 'user_url': 'http://steamcommunity.com/id/u1', 'reviews': [{'funny': '', 'posted': 'Posted November 5, 2011.', 'last_edited': '', 'item_id': '1250', 'helpful': 'No ratings yet', 'recommend': True, 'review': 'Simple yet with great replayability.'}, {'posted': 'Posted March 3.', 'item_id': '22200', 'recommend': True, 'review': 'no year'}]}"#,
    "\n"
);
const GOODREADS: &str = concat!(
    r#"{"user_id": "8842", "book_id": "24375664", "review_id": "r1", "is_read": true, "rating": 5, "date_added": "Fri Aug 25 13:55:02 -0700 2017", "date_updated": "Mon Oct 09 08:55:59 -0700 2017"}"#,
    "\n",
    r#"{"user_id": "8842", "book_id": "18245960", "is_read": false, "rating": 0, "date_added": "Mon Jan 02 10:00:00 +0530 2012", "date_updated": ""}"#,
    "\n",
    r#"{"user_id": "72fb", "book_id": "24375664", "is_read": true, "rating": 3, "date_added": "", "date_updated": "Tue Feb 28 23:30:00 -0800 2012"}"#,
    "\n",
);
const GOODREADS_BOOKS: &str = concat!(
    r#"{"book_id": "24375664", "title": "Poems", "popular_shelves": [{"count": "3", "name": "to-read"}, {"count": "9", "name": "poetry"}, {"count": "2", "name": "favorites"}, {"count": "4", "name": "currently-reading"}, {"count": "5", "name": "verse"}]}"#,
    "\n",
    r#"{"book_id": "18245960", "title": "", "title_without_series": "Untitled", "popular_shelves": []}"#,
    "\n",
);
const AMAZON: &str = concat!(
    r#"{"overall": 5.0, "verified": true, "reviewerID": "A1", "asin": "B01", "unixReviewTime": 1252800000, "style": {"Format:": " Audio CD"}}"#,
    "\n",
    r#"{"overall": 2.0, "reviewerID": "A2", "asin": "B02", "reviewText": "meh", "unixReviewTime": 1252900000}"#,
    "\n"
);
const AMAZON_META: &str = concat!(
    r#"{"asin": "B01", "title": "Rock &amp; Roll", "category": ["CDs & Vinyl", "Pop", "Dance Pop"]}"#,
    "\n",
    r#"{"asin": "B02", "title": "Only root", "category": ["CDs & Vinyl"]}"#,
    "\n",
    r#"{"title": "no asin"}"#,
    "\n",
);

fn importer_seeds() {
    const SKIP: u8 = 8;
    let t = "importers";
    seed(
        t,
        "recbole",
        &importer_input(
            0,
            b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n\
              1\t10\t4\t881250949\n2\t11\t3.5\t881250950.7\n\n1\t11\t\t881250951\n",
            Some(
                "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n\
                 10\tToy Story\t1995\tAnimation Children's Comedy\n11\tMisérables, Les\t1995\tDrama\n"
                    .as_bytes(),
            ),
        ),
    );
    seed(
        t,
        "recbole-bad",
        &importer_input(
            SKIP,
            b"user_id:token\titem_id:token\ttimestamp:float\n1\t10\t5\n2\t11\tsoon\n3\n4\t12\t7\n",
            None,
        ),
    );
    let mut item = u_item_row("242", b"Kolya (1996)", &[5]);
    item.extend(u_item_row("302", b"Mis\xe9rables, Les (1995)", &[8, 12]));
    item.extend_from_slice(b"3|Short|x\n");
    seed(
        t,
        "ml100k",
        &importer_input(
            1,
            b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n",
            Some(&item),
        ),
    );
    seed(
        t,
        "ml100k-bad",
        &importer_input(SKIP | 1, b"1\t2\t3\t4\n1\t2\t3\n1\tx\tgood\t5\n", None),
    );
    seed(
        t,
        "ml1m",
        &importer_input(
            2,
            b"1::1193::5::978300760\n1::661::3::978302109\n1::661::3\n",
            Some(b"1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::Caf\xe9 (1996)::Animation|Children's|Musical\n"),
        ),
    );
    seed(
        t,
        "csv",
        &importer_input(
            3,
            b"User_ID,Item,TIMESTAMP,Rating\nu1,i1,100,4.5\nu2,\"i,2\",2020-02-29,\n\nu1,i3,1.9e2,1\n",
            Some(b"item,title,genres\ni1,First,Drama|Comedy\n\"i,2\",\"Second, the\",\ni9,Unused,War\n"),
        ),
    );
    seed(
        t,
        "csv-bad",
        &importer_input(
            SKIP | 3,
            b"user,item,timestamp\na,b,1\na,b,later\na\na,b,99999999999-01-01\na,\"b\n",
            None,
        ),
    );
    seed(
        t,
        "steam",
        &importer_input(4, STEAM_REVIEWS.as_bytes(), Some(STEAM_GAMES.as_bytes())),
    );
    seed(
        t,
        "steam-bad",
        &importer_input(
            SKIP | 4,
            b"{'username': 'a', 'product_id': '1', 'date': '2017-01-02'}\n{'username': 'b', 'product_id': '2', 'date': '2017-02-30'}\n{'username': 'c', 'product_id\n{'username': 'd', 'product_id': '3', 'date': '9223372036854775807-01-01'}\n",
            None,
        ),
    );
    seed(
        t,
        "australian",
        &importer_input(5, AUSTRALIAN.as_bytes(), None),
    );
    seed(
        t,
        "australian-bad",
        &importer_input(
            SKIP | 5,
            b"{'user_id': 'u2', 'reviews': [{'posted': 'Posted May 1, 99999999999999.', 'item_id': '1'}, {'posted': 'Posted May 1, 2012.', 'item_id': 2}]}\n",
            None,
        ),
    );
    seed(
        t,
        "goodreads",
        &importer_input(6, GOODREADS.as_bytes(), Some(GOODREADS_BOOKS.as_bytes())),
    );
    seed(
        t,
        "goodreads-bad",
        &importer_input(
            SKIP | 6,
            b"{\"user_id\": \"u\", \"book_id\": \"b\", \"date_added\": \"Fri Aug 25 13:55:02 -0700 2017\"}\n{\"user_id\": \"u\", \"book_id\": \"b\", \"date_added\": \"2017-08-25\"}\n{\"user_id\": \"u\", \"book_id\": \"b\", \"date_added\": \"Fri Aug 25 13:55:02 -0700 99999999999999\"}\n",
            None,
        ),
    );
    seed(
        t,
        "amazon",
        &importer_input(7, AMAZON.as_bytes(), Some(AMAZON_META.as_bytes())),
    );
    seed(
        t,
        "amazon-bad",
        &importer_input(
            SKIP | 7,
            b"{\"overall\": 1.0, \"reviewerID\": \"A\", \"asin\": \"B\", \"unixReviewTime\": 1}\n{\"overall\": 1.0, \"asin\": \"B\"}\nnot json\n{\"overall\": 1e999, \"reviewerID\": \"A\", \"asin\": \"B\", \"unixReviewTime\": 1e300}\n",
            None,
        ),
    );
}

fn python_literal_seeds() {
    let t = "python_literal";
    for (i, line) in STEAM_REVIEWS
        .lines()
        .chain(STEAM_GAMES.lines())
        .chain(AUSTRALIAN.lines())
        .enumerate()
    {
        seed(t, &format!("steam-{i}"), line.as_bytes());
    }
    seed(
        t,
        "scalars",
        br#"[1, -2, 1_000, 10L, 0x1F, 1.5e-3, -.5, nan, inf, -inf, True, False, None, (1,), {1, 2}, (), {}]"#,
    );
    seed(
        t,
        "strings",
        br#"{'a': u'\u00e9\N{DASH}', "b": b'\x00\xff', 'c': r'\d+', 'd': '\ud83d\ude00', 'e': 'tab\tnl\n\\', 1: 'int key', (1, 2): 'tuple key'}"#,
    );
    seed(t, "nested", &[b'['; 200]);
}

fn gguf_seeds() {
    use blade_llm::gguf::{GgmlType, GgufWriter, Value};
    use blade_testkit::{write_tiny_gguf, TinySpec};
    let t = "gguf";
    let dir = tempfile::tempdir().unwrap();
    let specs = [
        (
            "tiny-q4_0",
            TinySpec {
                n_layers: 1,
                d_ff: 32,
                matrix_type: GgmlType::Q4_0,
                ..TinySpec::default()
            },
        ),
        (
            "tiny-q8_0-bias-untied",
            TinySpec {
                n_layers: 1,
                d_ff: 32,
                n_heads: 2,
                n_kv_heads: 1,
                untied: true,
                qkv_bias: true,
                matrix_type: GgmlType::Q8_0,
                ..TinySpec::default()
            },
        ),
    ];
    for (name, spec) in specs {
        let path = dir.path().join("m.gguf");
        write_tiny_gguf(&path, &spec).unwrap();
        seed(t, name, &std::fs::read(&path).unwrap());
    }
    // Small hand-made files: metadata of every type, one tensor of each storage type.
    let mut w = GgufWriter::new();
    w.meta("general.architecture", Value::String("llama".into()))
        .meta("general.alignment", Value::U32(32))
        .meta("llama.block_count", Value::U64(1))
        .meta("llama.attention.head_count", Value::U32(2))
        .meta("llama.embedding_length", Value::U32(4))
        .meta("llama.feed_forward_length", Value::U32(8))
        .meta("llama.rope.freq_base", Value::F32(10000.0))
        .meta("llama.context_length", Value::U64(16))
        .meta("tokenizer.ggml.model", Value::String("gpt2".into()))
        .meta(
            "tokenizer.ggml.tokens",
            Value::Array(
                ["a", "b", "ab", "<s>"]
                    .map(|s| Value::String(s.into()))
                    .to_vec(),
            ),
        )
        .meta(
            "tokenizer.ggml.token_type",
            Value::Array(vec![
                Value::I32(1),
                Value::I32(1),
                Value::I32(1),
                Value::I32(3),
            ]),
        )
        .meta(
            "tokenizer.ggml.merges",
            Value::Array(vec![Value::String("a b".into())]),
        )
        .meta("tokenizer.ggml.eos_token_id", Value::U32(3))
        .meta(
            "misc",
            Value::Array(vec![
                Value::U8(1),
                Value::I8(-1),
                Value::U16(2),
                Value::I16(-2),
                Value::I64(-3),
                Value::F64(0.5),
                Value::Bool(true),
            ]),
        );
    w.tensor("token_embd.weight", &[4, 4], &[0.5; 16], GgmlType::F32)
        .tensor("output_norm.weight", &[4], &[1.0; 4], GgmlType::F16)
        .tensor("blk.0.attn_norm.weight", &[4], &[1.0; 4], GgmlType::BF16)
        .tensor(
            "blk.0.ffn_up.weight",
            &[8, 32],
            &[0.25; 256],
            GgmlType::Q4_1,
        );
    seed(t, "handmade", &w.to_bytes());
    seed(
        t,
        "header-only",
        b"GGUF\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
    );
}

fn safetensors_seeds() {
    use blade_llm::safetensors::write_safetensors;
    use blade_testkit::{write_tiny_hf, TinySpec};
    let t = "safetensors";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.safetensors");
    write_safetensors(
        &path,
        &[
            ("a".into(), vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]),
            ("b".into(), vec![3], vec![0.5; 3]),
            ("scalar".into(), vec![], vec![7.0]),
        ],
    )
    .unwrap();
    let mut st = vec![0u8];
    st.extend(std::fs::read(&path).unwrap());
    seed(t, "f32", &st);
    // F16 and BF16 tensors, a `__metadata__` entry.
    let header = br#"{"__metadata__":{"format":"pt"},"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"bf":{"dtype":"BF16","shape":[1,2],"data_offsets":[4,8]}}"#;
    let mut st = vec![0u8];
    st.extend((header.len() as u64).to_le_bytes());
    st.extend_from_slice(header);
    st.extend([0x00, 0x3c, 0x00, 0xc0, 0x80, 0x3f, 0x00, 0x40]);
    seed(t, "f16-bf16", &st);

    let hf = dir.path().join("hf");
    let spec = TinySpec {
        d_model: 8,
        n_layers: 1,
        n_heads: 2,
        n_kv_heads: 1,
        d_ff: 8,
        ..TinySpec::default()
    };
    write_tiny_hf(&hf, &spec).unwrap();
    let config = std::fs::read(hf.join("config.json")).unwrap();
    let mut input = vec![1u8];
    input.extend_from_slice(&config);
    seed(t, "config-alone", &input);
    input.push(0);
    input.extend(std::fs::read(hf.join("model.safetensors")).unwrap());
    seed(t, "config-and-model", &input);
    let qwen = br#"{"model_type":"qwen2","vocab_size":8,"hidden_size":4,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"intermediate_size":8,"rope_theta":1000000.0,"rms_norm_eps":1e-6,"max_position_embeddings":32,"tie_word_embeddings":true}"#;
    let mut input = vec![1u8];
    input.extend_from_slice(qwen);
    seed(t, "config-qwen", &input);
}

fn tokenizer_seeds() {
    use blade_testkit::{write_tiny_hf, TinySpec};
    let t = "tokenizer_json";
    let dir = tempfile::tempdir().unwrap();
    write_tiny_hf(dir.path(), &TinySpec::default()).unwrap();
    let json = std::fs::read(dir.path().join("tokenizer.json")).unwrap();
    seed(t, "tiny-hf", &json);
    let mut with_config = json.clone();
    with_config.push(0);
    with_config.extend_from_slice(
        br#"{"eos_token": "<|im_end|>", "bos_token": {"content": "<|endoftext|>"}}"#,
    );
    seed(t, "tiny-hf-with-config", &with_config);
    // Small vocabularies with each recognised pre-tokenizer (tokenizer.rs's unit tests).
    let vocab =
        r#"{"h":0,"e":1,"l":2,"o":3,"Ġ":4,"w":5,"he":6,"ll":7,"hell":8,"hello":9,"Ġw":10,"1":11}"#;
    let merges = r#"["h e", "l l", "he ll", "hell o", "Ġ w"]"#;
    let pres = [
        (
            "gpt2",
            r#"{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}"#,
        ),
        (
            "smollm",
            r#"{"type":"Sequence","pretokenizers":[{"type":"Digits","individual_digits":true},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}]}"#,
        ),
        (
            "llama3",
            r#"{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}]}"#,
        ),
    ];
    for (name, pre) in pres {
        let text = format!(
            r#"{{"added_tokens":[{{"id":12,"content":"<|im_start|>","special":true,"single_word":false,"lstrip":false,"rstrip":false,"normalized":false}},{{"id":13,"content":"<x>","special":false,"single_word":false,"lstrip":false,"rstrip":false,"normalized":false}}],"normalizer":{{"type":"NFC"}},"pre_tokenizer":{pre},"model":{{"type":"BPE","ignore_merges":{},"vocab":{vocab},"merges":{merges}}}}}"#,
            name == "llama3"
        );
        seed(t, name, text.as_bytes());
    }
}

fn dataset_seeds() {
    use blade_data::synthetic::{generate, SyntheticConfig};
    use blade_data::{Dataset, PreprocessConfig, RawDataset, RawInteraction};
    let t = "dataset_json";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.json");
    let raw = generate(&SyntheticConfig {
        users: 6,
        items: 8,
        genres: 3,
        mean_length: 4,
        ..SyntheticConfig::default()
    });
    let cfg = PreprocessConfig {
        min_rating: None,
        k_core: 0,
    };
    Dataset::from_raw(&raw, &cfg).unwrap().save(&path).unwrap();
    seed(t, "synthetic", &std::fs::read(&path).unwrap());
    let inter = |user: &str, item: &str, timestamp| RawInteraction {
        user: user.into(),
        item: item.into(),
        timestamp,
        rating: Some(4.0),
    };
    let hand = RawDataset {
        name: "hand".into(),
        interactions: vec![inter("A", "a", 1), inter("A", "b", 2), inter("B", "a", 3)],
        ..RawDataset::default()
    };
    Dataset::from_raw(&hand, &cfg).unwrap().save(&path).unwrap();
    seed(t, "hand", &std::fs::read(&path).unwrap());
}

fn reward_seeds() {
    let t = "reward_spec";
    let specs = [
        "ndcg@10",
        "  ndcg@10 + 0.3*ild ",
        "recall@5 - 0.2 * tail",
        "0.5*ndcg@10+0.5*fairness",
        "ndcg@10 + 1e-1*ild",
        "mrr@3 - fairness_dgu + .5*hit@1",
        "-tail",
        "2E0*ndcg@5",
        "ndcg @ 10",
        "ündcg + ild",
        "ndcg@10 – ild",
        "hit@0",
        "ndcg@2.5",
        "fairness@10 + ndcg@1",
        "1e999*ild",
        "1.2.3*ild",
        "ndcg@10 + 0.1*ild_cos",
        "ndcg@99999999999999999999999",
    ];
    for (i, s) in specs.iter().enumerate() {
        seed(t, &format!("{i:02}"), s.as_bytes());
    }
}

#[test]
#[ignore = "writes the seed corpora into fuzz/corpus; run by hand"]
fn write_seeds() {
    importer_seeds();
    python_literal_seeds();
    gguf_seeds();
    safetensors_seeds();
    tokenizer_seeds();
    dataset_seeds();
    reward_seeds();
}
