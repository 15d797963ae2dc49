//! The `blade` binary: bad input gets clear errors naming the flag, file or line; baselines
//! evaluate and dump lists end to end on the built-in data.

use std::path::Path;
use std::process::Output;

mod common;
use common::blade;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A one-epoch SFT run on `prompts` windows of the built-in data, into `dir/out`.
fn small_sft(dir: &Path, out: &str, prompts: &str) {
    let o = blade(
        &[
            "train",
            "--method",
            "sft",
            "--out",
            out,
            "--epochs",
            "1",
            "--max-train-prompts",
            prompts,
            "--dashboard",
            "plain",
        ],
        dir,
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn unknown_or_missing_backends_name_the_flag_or_feature() {
    let dir = tempfile::tempdir().unwrap();
    let o = blade(&["eval", "--method", "pop", "--backend", "tpu"], dir.path());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--backend tpu"), "{}", stderr(&o));
    let o = blade(
        &["eval", "--method", "pop", "--backend", "cuda:0"],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--features cuda"), "{}", stderr(&o));
}

#[test]
fn bad_data_arguments_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let o = blade(&["eval", "--method", "pop", "--data", "nope"], dir.path());
    assert!(stderr(&o).contains("--data nope"), "{}", stderr(&o));
    let o = blade(
        &[
            "eval", "--method", "pop", "--data", "ml-100k", "--cache", "empty",
        ],
        dir.path(),
    );
    assert!(
        stderr(&o).contains("blade data fetch ml-100k"),
        "{}",
        stderr(&o)
    );
    let o = blade(
        &["eval", "--method", "pop", "--data", "missing.json"],
        dir.path(),
    );
    assert!(stderr(&o).contains("missing.json"), "{}", stderr(&o));
    let o = blade(&["eval", "--method", "best"], dir.path());
    assert!(stderr(&o).contains("--method best"), "{}", stderr(&o));
    let o = blade(
        &["eval", "--method", "pop", "--strategy", "beam:x"],
        dir.path(),
    );
    assert!(stderr(&o).contains("--strategy beam:x"), "{}", stderr(&o));
}

#[test]
fn import_reports_file_and_line_and_writes_nothing_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("inter.csv");
    let mut text = String::from("user,item,timestamp\n");
    for u in 0..8 {
        for i in 0..8 {
            text.push_str(&format!("u{u},i{i},{}\n", u * 100 + i));
        }
    }
    text.push_str("u1,i2,not-a-time\n");
    std::fs::write(&csv, &text).unwrap();
    let out = dir.path().join("ds.json");
    let o = blade(
        &[
            "data",
            "import",
            "--format",
            "csv",
            "--path",
            "inter.csv",
            "--out",
            "ds.json",
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("inter.csv") && err.contains(":66"), "{err}");
    assert!(!out.exists(), "no output after a failed import");

    let o = blade(
        &[
            "data",
            "import",
            "--format",
            "csv",
            "--path",
            "inter.csv",
            "--out",
            "ds.json",
            "--skip-bad-rows",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("skipped 1"), "{}", stderr(&o));
    // a .whl is unpacked for --format recbole only, and must be the known wheel
    std::fs::write(dir.path().join("fake.whl"), b"PK\x03\x04 not a wheel").unwrap();
    let o = blade(
        &[
            "data", "import", "--format", "csv", "--path", "fake.whl", "--out", "w.json",
        ],
        dir.path(),
    );
    assert!(stderr(&o).contains("--format recbole"), "{}", stderr(&o));
    let o = blade(
        &[
            "data", "import", "--format", "recbole", "--path", "fake.whl", "--out", "w.json",
            "--cache", "c",
        ],
        dir.path(),
    );
    assert!(
        !o.status.success() && stderr(&o).contains("fake.whl"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("w.json").exists());
    let o = blade(&["data", "stats", "--data", "ds.json"], dir.path());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("64"),
        "64 interactions"
    );
}

#[test]
fn baselines_evaluate_and_dump_lists_on_synthetic_data() {
    let dir = tempfile::tempdir().unwrap();
    let o = blade(
        &[
            "eval",
            "--method",
            "pop",
            "--method",
            "random",
            "--json",
            "eval.json",
            "--dump-lists",
            "lists.jsonl",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("| pop | full-rank |") && stdout.contains("ndcg@10"),
        "{stdout}"
    );
    let reports: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("eval.json")).unwrap())
            .unwrap();
    let pop = reports[0]["full_ranking"]["values"]["ndcg@10"]
        .as_f64()
        .unwrap();
    let random = reports[1]["full_ranking"]["values"]["ndcg@10"]
        .as_f64()
        .unwrap();
    assert!(pop > random, "pop {pop} vs random {random}");
    let lines = std::fs::read_to_string(dir.path().join("lists.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // two recommenders, each with its generated lists and the top of its full ranking
    assert_eq!(lines.len(), 2 * 2 * 600);
    for (method, mode) in [
        ("pop", "generation"),
        ("pop", "full-rank"),
        ("random", "full-rank"),
    ] {
        let n = lines
            .iter()
            .filter(|l| l["method"] == method && l["mode"] == mode)
            .count();
        assert_eq!(n, 600, "{method} {mode}");
    }
    for l in &lines {
        let list: Vec<&str> = l["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        let history: Vec<&str> = l["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        assert_eq!(list.len(), 10);
        assert!(list
            .iter()
            .all(|i| i.starts_with('i') && !history.contains(i)));
        assert_eq!(l["targets"].as_array().unwrap().len(), 1);
    }
}

/// Copies folder `from` into a new folder `to`, subfolders included.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn compare_writes_tables_curves_and_pictures() {
    let dir = tempfile::tempdir().unwrap();
    small_sft(dir.path(), "sft", "3000");
    let compare: &[&str] = &[
        "compare",
        "--init",
        "sft",
        "--out",
        "cmp",
        "--methods",
        "sft,bon-static,blade,blade:tau=auto",
        "--seeds",
        "1,2",
        "--steps",
        "2",
        "--prompts-per-step",
        "8",
        "--group-size",
        "4",
        "--reference-lists",
        "4",
        "--bon-n",
        "4",
        "--eval-every",
        "0",
    ];
    let extra = [
        "--bon-inference",
        "4",
        "--lambdas",
        "0.5",
        "--front-methods",
        "blade",
        "--jobs",
        "2",
    ];
    let o = blade(&[compare, &extra[..]].concat(), dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let cmp = dir.path().join("cmp");
    for f in [
        "results.md",
        "results.csv",
        "reports.json",
        "curves.csv",
        "reward.svg",
        "gradient_decay.svg",
        "pareto_fairness.svg",
        "pareto_diversity.svg",
        "fronts.csv",
        "paired.csv",
        "per_user.csv",
    ] {
        assert!(cmp.join(f).exists(), "compare did not write {f}");
    }
    let md = std::fs::read_to_string(cmp.join("results.md")).unwrap();
    assert!(
        md.contains("| blade |") && md.contains("| bon-static |") && md.contains("(oracle)"),
        "{md}"
    );
    assert!(md.contains(" ± "));
    // a method variant has its own row and run folders
    assert!(md.contains("| blade:tau=auto |"), "{md}");
    let auto = std::fs::read_to_string(cmp.join("runs/blade_tau=auto-s1/align.json")).unwrap();
    assert!(auto.contains("\"tau_auto\":true"), "{auto}");
    assert!(
        md.contains("Paired differences to `bon-static`")
            && md.contains("Paired differences to `sft`")
            && md.contains("| blade | generation ndcg@10 |"),
        "{md}"
    );
    let svg = std::fs::read_to_string(cmp.join("gradient_decay.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("blade") && svg.contains("bon-static"));
    // the static ceilings are drawn on the reward curves; the new diagnostics have pictures
    let svg = std::fs::read_to_string(cmp.join("reward.svg")).unwrap();
    assert!(
        svg.contains("ceiling: max of M cached") && svg.contains("ceiling: E[best of N] of SFT"),
        "reward.svg lacks the ceiling lines"
    );
    for f in [
        "zero_spread.svg",
        "distinct_lists.svg",
        "saturation_split.svg",
        "kl.svg",
        "kl_k1.svg",
    ] {
        let svg = std::fs::read_to_string(cmp.join(f)).unwrap();
        assert!(svg.contains("blade") && svg.contains("bon-static"), "{f}");
    }
    // tau is drawn for the BLADE variants only
    let svg = std::fs::read_to_string(cmp.join("tau.svg")).unwrap();
    assert!(
        svg.contains("blade:tau=auto") && !svg.contains("bon-static"),
        "tau.svg"
    );
    // mean +- std rows: 2 seeds per aligned method
    let csv = std::fs::read_to_string(cmp.join("results.csv")).unwrap();
    assert!(
        csv.lines()
            .any(|l| l.starts_with("blade,generation,ndcg@10,") && l.ends_with(",2")),
        "{csv}"
    );

    // two runs side by side give what one at a time gives: retrain one cell alone
    let reports = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("reports.json")).unwrap()).unwrap()
    };
    let cell_of = |v: &serde_json::Value, method: &str, seed: u64| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|c| c["method"] == method && c["seed"] == seed)
            .map(|c| c["report"]["generation"].clone())
            .unwrap()
    };
    let cell = |v: &serde_json::Value| cell_of(v, "blade", 1);
    let parallel = cell(&reports(&cmp));
    std::fs::remove_dir_all(cmp.join("runs/blade-s1")).unwrap();
    let o = blade(&[compare, &["--jobs", "1"][..]].concat(), dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(cell(&reports(&cmp)), parallel, "--jobs changed a result");
    // only the removed run was trained again; a setting that changes no result (--recompute)
    // reuses every finished run
    let trained = |o: &Output| -> Vec<String> {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.starts_with("== "))
            .map(String::from)
            .collect()
    };
    assert_eq!(trained(&o), ["== blade seed 1 (ndcg@10)"], "{}", stdout(&o));
    let o = blade(&[compare, &["--recompute"][..]].concat(), dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(trained(&o).is_empty(), "{}", stdout(&o));
    assert_eq!(cell(&reports(&cmp)), parallel, "a reused run changed");
    // a run left unfinished (a comparison killed before its summary) continues from its last
    // checkpoint instead of training again, to the same result
    let bon = |v: &serde_json::Value| cell_of(v, "bon-static", 2);
    let finished = bon(&reports(&cmp));
    std::fs::remove_file(cmp.join("runs/bon-static-s2/summary.json")).unwrap();
    let o = blade(compare, dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        trained(&o),
        ["== bon-static seed 2 (ndcg@10), continued from its last checkpoint"],
        "{}",
        stdout(&o)
    );
    assert_eq!(bon(&reports(&cmp)), finished, "the continued run changed");
    // another SFT run (here: a copy with one more file) in the same folder trains every run
    // again rather than reusing runs aligned from the first one
    copy_dir(&dir.path().join("sft"), &dir.path().join("sft2"));
    std::fs::write(dir.path().join("sft2/note.txt"), "another SFT run").unwrap();
    let mut again = compare.to_vec();
    again[2] = "sft2";
    let o = blade(&again, dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(trained(&o).len(), 6, "{}", stdout(&o));

    let o = blade(
        &[
            "train",
            "--method",
            "blade",
            "--out",
            "x",
            "--reward",
            "ndcg@10 + 0.3*ildd",
        ],
        dir.path(),
    );
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains("--init"), "{err}");
    let o = blade(
        &[
            "train",
            "--method",
            "blade",
            "--init",
            "sft",
            "--out",
            "x",
            "--reward",
            "ndcg@10 + 0.3*ildd",
        ],
        dir.path(),
    );
    let err = stderr(&o);
    assert!(
        err.contains("unknown reward `ildd`")
            && err.contains('^')
            && !err.contains("--reward --reward"),
        "{err}"
    );
}

#[test]
fn llm_generate_keeps_quantised_weights_in_their_blocks_unless_told_to_dequantise() {
    use blade_llm::gguf::GgmlType;
    use blade_testkit::{write_tiny_gguf, TinySpec};
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("tiny-q8.gguf");
    let spec = TinySpec {
        matrix_type: GgmlType::Q8_0,
        ..TinySpec::default()
    };
    write_tiny_gguf(&g, &spec).unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "llm",
            "generate",
            "--weights",
            g.to_str().unwrap(),
            "--prompt",
            "the",
            "--max-tokens",
            "6",
        ];
        args.extend_from_slice(extra);
        let o = blade(&args, dir.path());
        assert!(o.status.success(), "{}", stderr(&o));
        (stdout(&o), stderr(&o))
    };
    let (blocks, blocks_err) = run(&[]);
    let (f32_text, f32_err) = run(&["--dequantise"]);
    assert!(
        blocks_err.contains("weights in their GGUF blocks"),
        "{blocks_err}"
    );
    assert!(f32_err.contains("f32 weights"), "{f32_err}");
    assert_eq!(blocks, f32_text, "the same greedy tokens either way");
}

#[test]
fn llm_commands_run_on_a_tiny_model_and_name_bad_input() {
    use blade_testkit::{write_tiny_gguf, TinySpec};
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("tiny.gguf");
    write_tiny_gguf(&g, &TinySpec::default()).unwrap();
    let g = g.to_str().unwrap();
    let o = blade(
        &[
            "llm",
            "generate",
            "--weights",
            g,
            "--prompt",
            "the",
            "--max-tokens",
            "4",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("tokens/s"), "{}", stderr(&o));
    let out = dir.path().join("logits.json");
    let o = blade(
        &[
            "llm",
            "logits",
            "--weights",
            g,
            "--tokens",
            "1,2,3",
            "--out",
            out.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(v["logits_last"].as_array().unwrap().len(), 267);
    // bad input names the flag and writes nothing
    let bad = dir.path().join("bad.json");
    let o = blade(
        &[
            "llm",
            "logits",
            "--weights",
            g,
            "--tokens",
            "1,99999",
            "--out",
            bad.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--tokens: id 99999"), "{}", stderr(&o));
    assert!(!bad.exists());
    let o = blade(&["train", "--policy", "llm", "--out", "r"], dir.path());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--weights"), "{}", stderr(&o));
    let o = blade(&["llm", "info", "--weights", "nope.gguf"], dir.path());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("nope.gguf"), "{}", stderr(&o));
    // an empty prompt is an error, not a panic; generation stops at the rotary table's end
    let o = blade(
        &[
            "llm",
            "generate",
            "--weights",
            g,
            "--prompt",
            "",
            "--max-tokens",
            "4",
        ],
        dir.path(),
    );
    assert!(
        !o.status.success() && stderr(&o).contains("empty token sequence"),
        "{}",
        stderr(&o)
    );
    let o = blade(
        &[
            "llm",
            "generate",
            "--weights",
            g,
            "--prompt",
            "the",
            "--max-tokens",
            "5000",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The LLM policy goes through every command that takes a run: SFT, alignment, eval,
/// recommend, compare, bench and demo, on a tiny random model over a slice of the synthetic
/// data. What a run holds is read from its manifest.
#[test]
fn every_run_command_accepts_an_llm_run() {
    use blade_testkit::{write_tiny_gguf, TinySpec};
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("tiny.gguf");
    write_tiny_gguf(&g, &TinySpec::default()).unwrap();
    let g = g.to_str().unwrap();
    let slice = [
        "--max-items",
        "24",
        "--max-users",
        "40",
        "--history-len",
        "3",
    ];
    let small = [
        "--steps",
        "1",
        "--prompts-per-step",
        "2",
        "--group-size",
        "2",
        "--reference-lists",
        "2",
        "--align-k",
        "3",
        "--valid-users",
        "3",
        "--dashboard",
        "plain",
    ];
    let run = |args: &[&str]| {
        let o = blade(args, dir.path());
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let mut sft = vec![
        "train",
        "--policy",
        "llm",
        "--weights",
        g,
        "--method",
        "sft",
        "--out",
        "llm-sft",
        "--epochs",
        "1",
        "--llm-train-prompts",
        "8",
        "--llm-valid-users",
        "3",
        "--list-len",
        "3",
    ];
    sft.extend(slice);
    run(&sft);
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("llm-sft/run.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["kind"], "llm");
    let mut align = vec![
        "train", "--method", "grpo", "--init", "llm-sft", "--out", "llm-grpo",
    ];
    align.extend(small);
    run(&align);
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("llm-grpo/run.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (manifest["kind"].as_str(), manifest["method"].as_str()),
        (Some("llm"), Some("grpo"))
    );
    // an aligned run exports, and its export scores as the run does
    run(&[
        "export", "--run", "llm-grpo", "--format", "hf", "--out", "grpo-hf",
    ]);
    run(&[
        "export",
        "--run",
        "llm-grpo",
        "--format",
        "gguf",
        "--dtype",
        "f16",
        "--out",
        "grpo.gguf",
    ]);
    let logits = |source: &[&str], out: &str| -> Vec<f64> {
        let mut args = vec!["llm", "logits", "--tokens", "265,116,104,10", "--out", out];
        args.extend(source);
        run(&args);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(out)).unwrap()).unwrap();
        v["logits_last"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let ours = logits(&["--run", "llm-grpo"], "l-run.json");
    let max_diff = |other: &[f64]| {
        ours.iter()
            .zip(other)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    };
    assert!(max_diff(&logits(&["--weights", "grpo-hf"], "l-hf.json")) < 1e-4);
    assert!(max_diff(&logits(&["--weights", "grpo.gguf"], "l-gguf.json")) < 1e-2);
    let o = blade(
        &[
            "export", "--run", "llm-grpo", "--format", "hf", "--out", "grpo-hf",
        ],
        dir.path(),
    );
    assert!(
        !o.status.success() && stderr(&o).contains("already exists"),
        "{}",
        stderr(&o)
    );
    let o = blade(
        &[
            "export", "--run", "llm-grpo", "--format", "hf", "--dtype", "q4", "--out", "x",
        ],
        dir.path(),
    );
    assert!(
        !o.status.success() && stderr(&o).contains("--dtype"),
        "{}",
        stderr(&o)
    );

    let out = run(&[
        "eval",
        "--run",
        "llm-sft",
        "--run",
        "llm-grpo",
        "--max-eval-users",
        "3",
        "--ks",
        "3",
    ]);
    assert!(
        out.contains("llm:llm-sft") && out.contains("llm:llm-grpo"),
        "{out}"
    );
    let ds: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("llm-sft/run.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(ds["data"]["max_items"], 24);
    let out = run(&[
        "recommend",
        "--run",
        "llm-grpo",
        "--user",
        "u001",
        "--k",
        "3",
    ]);
    assert!(
        out.contains("top-3 recommendations") && out.contains("  1. Item "),
        "{out}"
    );

    let mut cmp = vec![
        "compare",
        "--init",
        "llm-sft",
        "--out",
        "cmp",
        "--methods",
        "sft,grpo",
        "--seeds",
        "1",
        "--max-eval-users",
        "3",
    ];
    cmp.extend(small);
    run(&cmp);
    let md = std::fs::read_to_string(dir.path().join("cmp/results.md")).unwrap();
    assert!(
        md.contains("llm policy") && md.contains("| grpo |") && md.contains("| sft |"),
        "{md}"
    );
    assert!(dir.path().join("cmp/reward.svg").exists());

    let out = run(&[
        "bench",
        "--init",
        "llm-sft",
        "--out",
        "bench",
        "--steps",
        "2",
        "--prompts",
        "2",
        "--list-len",
        "3",
    ]);
    assert!(
        out.contains("llm policy") && out.contains("blade / bon-static step time"),
        "{out}"
    );

    let mut demo = vec![
        "demo",
        "--policy",
        "llm",
        "--weights",
        g,
        "--out",
        "demo",
        "--epochs",
        "1",
        "--align-steps",
        "1",
        "--methods",
        "blade",
        "--llm-train-prompts",
        "8",
        "--llm-valid-users",
        "3",
        "--max-eval-users",
        "3",
        "--list-len",
        "3",
        "--reward",
        "ndcg@5",
    ];
    demo.extend(slice);
    let out = run(&demo);
    assert!(
        out.contains("| blade |") && out.contains("| sft |"),
        "{out}"
    );
    // each aligned method is compared with SFT user by user, on its reward and NDCG@10, at the
    // checkpoint validation chose (1 evaluation: the level is select_p itself), and the demo
    // says what one seed is
    assert!(
        out.contains("Against SFT on the 3 test users")
            && out.contains("| method | `ndcg@5` of the generated lists | vs SFT | NDCG@10, generated lists | vs SFT | NDCG@10, full ranking | vs SFT |")
            && out.contains("| blade (step ")
            && out.contains("not evidence")
            && out.contains("training reward (`ndcg@5` of sampled lists")
            && out.contains("evaluated: the checkpoint of step"),
        "{out}"
    );

    // a manifest without `kind` (an older blade) is refused with what to add, not guessed
    let old = dir.path().join("llm-sft/run.json");
    let text = std::fs::read_to_string(&old)
        .unwrap()
        .replace("\"kind\": \"llm\",", "");
    std::fs::write(&old, text).unwrap();
    let o = blade(&["eval", "--run", "llm-sft"], dir.path());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("\"kind\": \"llm\""), "{}", stderr(&o));
}

/// `bench --peer` runs the peer with the bench's sizes and prints blade's speed ratios; a
/// stand-in interpreter answers with a fixed JSON line (the real peer needs torch).
#[cfg(unix)]
#[test]
fn bench_prints_speed_ratios_against_a_peer() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake-python");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho \"args: $*\" > args.txt\necho 'warming up'\n\
         echo '{\"torch_version\": \"9.9\", \"rollout_lists_per_s\": 1e9, \"align_step_s\": 1e-9, \
         \"sft_epoch_s\": 1e-9, \"full_rank_users_per_s\": 1e9, \"kernels\": {\"head_forward_s\": 1e-9, \
         \"head_backward_s\": 1e-9, \"exp_s\": 1e-9, \"gelu_s\": 1e-9, \"log_softmax_s\": 1e-9}}'\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    // flags are checked before any work or file
    let o = blade(&["bench", "--out", "c", "--peer", "nope"], dir.path());
    assert!(
        !o.status.success() && stderr(&o).contains("--peer nope"),
        "{}",
        stderr(&o)
    );
    let fake_s = fake.to_str().unwrap();
    let o = blade(&["bench", "--out", "c", "--peer", fake_s], dir.path());
    assert!(stderr(&o).contains("--peer-script"), "{}", stderr(&o));
    assert!(
        !dir.path().join("c").exists(),
        "nothing is written before the flags are checked"
    );

    std::fs::write(dir.path().join("peer.py"), "").unwrap();
    let o = blade(
        &[
            "bench",
            "--out",
            "b",
            "--steps",
            "2",
            "--prompts",
            "4",
            "--max-items",
            "60",
            "--max-users",
            "80",
            "--peer",
            fake_s,
            "--peer-script",
            "peer.py",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    // the header names the build (the test and the binary share their profile)
    let build = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    assert!(
        out.contains(&format!("blade ({build} build) vs PyTorch 9.9")),
        "{out}"
    );
    // an absurdly fast peer: blade is far slower on every row, and the ratio says so
    for row in [
        "rollout lists/s",
        "alignment step, s",
        "SFT epoch, s",
        "full-ranking users/s",
        // the backend's own kernels at the step's sizes: 4 prompts x 8 lists x 10 slots, and
        // blade's GELU and log_softmax kernels
        "kernel: output head [320x64]x[64x62], ms",
        "kernel: its two backward products, ms",
        "kernel: exp over [320x62], ms",
        "kernel: GELU over [640x256], burn's, ms",
        "kernel: GELU over [640x256], blade's, ms",
        "kernel: log_softmax over [320x62], burn's, ms",
        "kernel: log_softmax over [320x62], blade's, ms",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("| {row} |")))
            .unwrap_or_else(|| panic!("no row {row}: {out}"));
        assert!(line.trim_end().ends_with("0.00x |"), "{line}");
    }
    let args = std::fs::read_to_string(dir.path().join("args.txt")).unwrap();
    assert!(
        args.contains("peer.py --items")
            && args.contains("--prompts 4")
            && args.contains("--kernel-rows 320"),
        "{args}"
    );
}

/// Training flags that burn cannot take are refused with the flag's name before the run folder
/// exists (a NaN learning rate used to "succeed" and write `"lr": null`).
#[test]
fn bad_training_flags_are_named_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value, expect) in [
        ("--lr", "nan", "--lr NaN"),
        ("--lr", "-1", "--lr -1"),
        ("--lr", "inf", "--lr inf"),
        ("--epochs", "0", "--epochs 0"),
        ("--batch-size", "0", "--batch-size 0"),
        ("--d-model", "0", "--d-model 0"),
        ("--heads", "3", "--heads 3"),
        ("--heads", "0", "--heads 0"),
        ("--dropout", "1.5", "--dropout 1.5"),
        ("--dropout", "NaN", "--dropout NaN"),
        ("--list-len", "0", "--list-len 0"),
        ("--list-len", "100000", "--list-len 100000"),
        ("--layers", "0", "--layers 0"),
    ] {
        let o = blade(
            &[
                "train",
                "--method",
                "sft",
                "--out",
                "r",
                "--max-train-prompts",
                "100",
                &format!("{flag}={value}"),
            ],
            dir.path(),
        );
        let err = stderr(&o);
        assert!(
            !o.status.success() && err.contains(expect),
            "{flag} {value}: {err}"
        );
        assert!(
            !dir.path().join("r").exists(),
            "{flag} {value} left a run folder"
        );
    }
    // the demo checks its reward before it trains SFT
    let o = blade(
        &["demo", "--out", "d", "--reward", "ndcg@10 + 0.5*nope"],
        dir.path(),
    );
    let err = stderr(&o);
    assert!(
        !o.status.success() && err.contains("--reward") && err.contains("nope"),
        "{err}"
    );
    assert!(!dir.path().join("d").exists(), "the demo left a folder");
    // so is a reward that needs the SFT model's belief, which does not exist yet, and the
    // selection metric
    for (flag, spec, bad) in [
        ("--reward", "endcg@10 + 0.5*nope", "nope"),
        ("--select", "endcg@0", "endcg@0"),
        ("--rollout-temperature", "0", "--rollout-temperature 0"),
        ("--align-lr", "nan", "NaN"),
        ("--rank-kl", "nan", "--rank-kl NaN"),
    ] {
        let o = blade(&["demo", "--out", "d", flag, spec], dir.path());
        let err = stderr(&o);
        assert!(
            !o.status.success() && err.contains(flag) && err.contains(bad),
            "{err}"
        );
        assert!(!dir.path().join("d").exists(), "the demo left a folder");
    }
    // the ranking anchor needs the item policy
    let o = blade(
        &["demo", "--out", "d", "--policy", "llm", "--rank-kl", "1"],
        dir.path(),
    );
    let err = stderr(&o);
    assert!(
        !o.status.success() && err.contains("--rank-kl 1") && err.contains("item policy"),
        "{err}"
    );
    assert!(!dir.path().join("d").exists(), "the demo left a folder");
}

/// Alignment, evaluation and LLM flags are named with their values, a refused command leaves
/// nothing behind, and a run whose data changed since training is refused, not mis-scored.
#[test]
fn bad_alignment_eval_and_llm_flags_are_named_and_changed_data_is_refused() {
    use blade_testkit::{write_tiny_gguf, TinySpec};
    let dir = tempfile::tempdir().unwrap();
    small_sft(dir.path(), "sft", "300");
    for (flag, value, expect) in [
        ("--reference-lists", "0", "--reference-lists 0"),
        ("--prompts-per-step", "0", "--prompts-per-step 0"),
        ("--group-size", "1", "--group-size 1"),
        ("--beta-kl", "nan", "--beta-kl NaN"),
        ("--rank-kl", "-0.5", "--rank-kl -0.5"),
        ("--ptx-coef", "inf", "--ptx-coef inf"),
        ("--align-lr", "0", "--align-lr 0"),
        ("--align-k", "0", "--align-k 0"),
        ("--valid-users", "0", "--valid-users 0"),
    ] {
        let o = blade(
            &[
                "train",
                "--method",
                "blade",
                "--init",
                "sft",
                "--out",
                "a",
                &format!("{flag}={value}"),
            ],
            dir.path(),
        );
        let err = stderr(&o);
        assert!(
            !o.status.success() && err.contains(expect),
            "{flag} {value}: {err}"
        );
        assert!(
            !dir.path().join("a").exists(),
            "{flag} {value} left a run folder"
        );
    }
    std::fs::write(dir.path().join("afile"), "x").unwrap();
    for cmd in ["train", "compare"] {
        let o = blade(&[cmd, "--init", "sft", "--out", "afile"], dir.path());
        assert!(
            stderr(&o).contains("--out afile: is a file"),
            "{cmd}: {}",
            stderr(&o)
        );
    }
    for (args, expect) in [
        (vec!["--ks", "1000000000000"], "--ks 1000000000000"),
        (vec!["--strategy", "beam:100000"], "--strategy beam:100000"),
    ] {
        let mut all = vec!["eval", "--run", "sft"];
        all.extend(args);
        let o = blade(&all, dir.path());
        assert!(
            !o.status.success() && stderr(&o).contains(expect),
            "{}",
            stderr(&o)
        );
    }
    for v in ["0", "1000000000000"] {
        let o = blade(&["eval", "--method", "pop", "--history-len", v], dir.path());
        let expect = format!("--history-len {v}: expected 1..=10000");
        assert!(
            !o.status.success() && stderr(&o).contains(&expect),
            "{}",
            stderr(&o)
        );
    }
    // the data changed since training (here: the catalogue cut to 50 items): refused
    let manifest = dir.path().join("sft/run.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    m["data"]["max_items"] = serde_json::json!(50);
    std::fs::write(&manifest, m.to_string()).unwrap();
    for cmd in [
        vec!["eval", "--run", "sft"],
        vec!["recommend", "--run", "sft", "--user", "u0"],
    ] {
        let o = blade(&cmd, dir.path());
        let err = stderr(&o);
        assert!(
            !o.status.success() && err.contains("the dataset changed since"),
            "{cmd:?}: {err}"
        );
    }

    let g = dir.path().join("tiny.gguf");
    write_tiny_gguf(&g, &TinySpec::default()).unwrap();
    let g = g.to_str().unwrap();
    for (flag, value, expect) in [
        ("--lora-targets", "qq", "--lora-targets qq"),
        ("--lora-rank", "100000", "--lora-rank 100000"),
        ("--lora-alpha", "nan", "--lora-alpha NaN"),
        ("--llm-lr", "0", "--llm-lr"),
    ] {
        let o = blade(
            &[
                "train",
                "--method",
                "sft",
                "--policy",
                "llm",
                "--weights",
                g,
                "--max-items",
                "30",
                "--out",
                "l",
                &format!("{flag}={value}"),
            ],
            dir.path(),
        );
        let err = stderr(&o);
        assert!(
            !o.status.success() && err.contains(expect),
            "{flag} {value}: {err}"
        );
        assert!(
            !dir.path().join("l").exists(),
            "{flag} {value} left a run folder"
        );
    }
}
