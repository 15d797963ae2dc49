//! `blade llm bench`: the language-model workloads on a tiny random model, and `--peer` with a
//! stand-in peer (a shell script printing the JSON line), its arguments and its failures.

use blade_testkit::{write_tiny_gguf, TinySpec};

mod common;
use common::blade;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const SIZES: [&str; 12] = [
    "--lm-only",
    "--prompt-len",
    "6",
    "--new-tokens",
    "3",
    "--sample-rows",
    "2",
    "--score-rows",
    "2",
    "--score-len",
    "5",
    "--repeats",
];

fn bench_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["llm", "bench", "--weights", "tiny.gguf"];
    v.extend(SIZES);
    v.push("1");
    v.extend(extra);
    v
}

#[test]
fn llm_bench_measures_and_compares_with_a_peer() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_gguf(&dir.path().join("tiny.gguf"), &TinySpec::default()).unwrap();

    let o = blade(&bench_args(&[]), dir.path());
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    for row in [
        "greedy generation, KV cache, batch 1 (6-token prompt + 3 new",
        "batched sampling, KV cache, T = 1 (2 sequences x 3 new",
        "teacher-forced scoring, one forward of 2 x 5",
    ] {
        assert!(out.contains(row), "no row {row:?} in\n{out}");
    }
    assert!(!out.contains("transformers"), "{out}");

    // a stand-in peer: records its arguments, prints progress and then the JSON line
    let peer = dir.path().join("peer.sh");
    std::fs::write(
        &peer,
        "echo \"$@\" > args.txt\necho progress\necho '{\"transformers_version\": \"9.9\", \"torch_version\": \"8.8\", \
         \"greedy_tokens_per_s\": 2.0, \"sample_tokens_per_s\": 4.0, \"score_tokens_per_s\": 1e9}'\n",
    )
    .unwrap();
    let o = blade(
        &bench_args(&["--peer", "sh", "--peer-script", "peer.sh"]),
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.contains(&format!(
            // the tiny model's matrices are F32, so nothing stays in blocks
            "| work (blade, {} build, f32 weights, vs transformers 9.9, torch 8.8, float32,",
            if cfg!(debug_assertions) {
                "dev"
            } else {
                "release"
            }
        )),
        "{out}"
    );
    assert!(
        out.contains("| greedy tokens/s (3 new, KV cache, prefill included) | 2.0 |"),
        "{out}"
    );
    assert!(
        out.contains("| batched sampling tokens/s (2 sequences x 3 new) | 4.0 |"),
        "{out}"
    );
    // blade is not a billion tokens/s: the ratio is printed and small
    assert!(
        out.contains("| teacher-forced scoring tokens/s (2 x 5) | 1000000000.0 |"),
        "{out}"
    );
    assert!(out.contains(" | 0.00x |"), "{out}");
    let args = std::fs::read_to_string(dir.path().join("args.txt")).unwrap();
    for want in [
        "--gguf tiny.gguf",
        "--prompt-len 6",
        "--new-tokens 3",
        "--sample-rows 2",
        "--score-rows 2",
        "--score-len 5",
        "--repeats 1",
        "--threads ",
    ] {
        assert!(
            args.contains(want),
            "{want:?} not in the peer's arguments: {args}"
        );
    }

    // a peer that read other ids, fails, or prints no JSON: errors name --peer
    std::fs::write(
        &peer,
        "echo '{\"ids_checksum\": 1, \"sizes\": {\"vocab\": 5}}'\n",
    )
    .unwrap();
    let o = blade(
        &bench_args(&["--peer", "sh", "--peer-script", "peer.sh"]),
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("--peer: the peer read other token ids"),
        "{}",
        text(&o.stderr)
    );
    std::fs::write(&peer, "echo 'no module named torch' >&2\nexit 3\n").unwrap();
    let o = blade(
        &bench_args(&["--peer", "sh", "--peer-script", "peer.sh"]),
        dir.path(),
    );
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("--peer sh peer.sh: failed") && err.contains("no module named torch"),
        "{err}"
    );
    std::fs::write(&peer, "echo 'nothing to see'\n").unwrap();
    let o = blade(
        &bench_args(&["--peer", "sh", "--peer-script", "peer.sh"]),
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("--peer: no JSON line"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn llm_bench_refuses_a_missing_peer_before_measuring() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_gguf(&dir.path().join("tiny.gguf"), &TinySpec::default()).unwrap();
    let o = blade(&bench_args(&["--peer", "no/such/python"]), dir.path());
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("--peer no/such/python: no such interpreter") && err.contains("setup_hf.sh"),
        "{err}"
    );
    let o = blade(
        &bench_args(&["--peer", "sh", "--peer-script", "nope.py"]),
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("--peer-script nope.py: no such file"),
        "{}",
        text(&o.stderr)
    );
    let o = blade(
        &[
            "llm",
            "bench",
            "--weights",
            "tiny.gguf",
            "--lm-only",
            "--score-len",
            "1",
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("--score-len"),
        "{}",
        text(&o.stderr)
    );
}
