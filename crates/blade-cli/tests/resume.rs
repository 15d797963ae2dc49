//! Killed with SIGKILL at several moments and resumed with `--resume`, SFT and alignment end
//! with the same model files, byte for byte, as runs never interrupted (issue 12).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn cmd(args: &[&str], cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_blade"));
    c.args(args).current_dir(cwd).env("RUST_LOG", "warn");
    c
}

fn run(args: &[&str], cwd: &Path) -> Output {
    cmd(args, cwd).output().expect("the blade binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Starts `args` (with `--resume` when the folder has something to resume, else afresh), kills
/// it with SIGKILL after `after`, and reports whether it was still running then.
fn start_and_kill(args: &[&str], cwd: &Path, after: Duration) -> bool {
    let mut with_resume: Vec<&str> = args.to_vec();
    with_resume.push("--resume");
    // a resume of a folder without a complete checkpoint is refused at once: start afresh
    let probe_start = Instant::now();
    let mut child = cmd(&with_resume, cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300).min(after));
    if let Some(status) = child.try_wait().unwrap() {
        if !status.success() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert!(err.contains("cannot resume"), "{err}");
            child = cmd(args, cwd)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
        } else {
            return false;
        }
    }
    let left = after.saturating_sub(probe_start.elapsed());
    std::thread::sleep(left);
    let running = child.try_wait().unwrap().is_none();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    running
}

/// Runs `args` killed with SIGKILL again and again, each time a little later after its start
/// (from a tenth of the uninterrupted time `full`, in steps of a twentieth), each attempt
/// resuming the one before, until one finishes on its own; then resumes once more (a finished
/// run resumed does nothing). Returns how many kills hit a running process.
fn killed_and_resumed(args: &[&str], cwd: &Path, full: Duration) -> usize {
    let out = args[args.iter().position(|a| *a == "--out").unwrap() + 1];
    let mut hits = 0;
    for i in 0..16 {
        let f = 0.1 + 0.05 * i as f64;
        let hit = start_and_kill(args, cwd, full.mul_f64(f));
        let ck: Vec<String> = std::fs::read_dir(cwd.join(out).join("checkpoint"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        eprintln!("{out}: killed at {f:.2} of the full time: running {hit}, checkpoints {ck:?}");
        if !hit {
            break;
        }
        hits += 1;
    }
    let mut with_resume: Vec<&str> = args.to_vec();
    with_resume.push("--resume");
    let o = run(&with_resume, cwd);
    assert!(o.status.success(), "{}", stderr(&o));
    hits
}

fn same_file(a: &Path, b: &Path) {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert!(
        x == y,
        "{} and {} differ: the resumed run is not the uninterrupted one",
        a.display(),
        b.display()
    );
}

#[test]
fn sft_and_alignment_killed_at_any_moment_resume_to_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let sft = |out: &'static str| -> Vec<&'static str> {
        vec![
            "train",
            "--method",
            "sft",
            "--out",
            out,
            "--epochs",
            "6",
            "--patience",
            "6",
            "--max-train-prompts",
            "1500",
            "--batch-size",
            "64",
            "--d-model",
            "16",
            "--dashboard",
            "plain",
        ]
    };
    let t0 = Instant::now();
    let o = run(&sft("sft-ref"), root);
    assert!(o.status.success(), "{}", stderr(&o));
    let full = t0.elapsed();
    let hits = killed_and_resumed(&sft("sft-killed"), root, full);
    eprintln!(
        "SFT: uninterrupted {:.1} s, {hits} kills hit a running run",
        full.as_secs_f64()
    );
    assert!(hits >= 3, "only {hits} kills hit a running SFT run");
    same_file(
        &root.join("sft-ref/model.bpk"),
        &root.join("sft-killed/model.bpk"),
    );
    same_file(
        &root.join("sft-ref/sft_log.json"),
        &root.join("sft-killed/sft_log.json"),
    );
    assert!(
        std::fs::read_dir(root.join("sft-killed/checkpoint"))
            .unwrap()
            .all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".tmp")),
        "staging folders left behind"
    );

    let align = |out: &'static str| -> Vec<&'static str> {
        vec![
            "train",
            "--method",
            "blade",
            "--init",
            "sft-ref",
            "--out",
            out,
            "--steps",
            "20",
            "--eval-every",
            "4",
            "--checkpoint-every",
            "1",
            "--prompts-per-step",
            "8",
            "--group-size",
            "4",
            "--reference-lists",
            "4",
            "--valid-users",
            "40",
            "--dashboard",
            "plain",
        ]
    };
    let t0 = Instant::now();
    let o = run(&align("blade-ref"), root);
    assert!(o.status.success(), "{}", stderr(&o));
    let full = t0.elapsed();
    let hits = killed_and_resumed(&align("blade-killed"), root, full);
    eprintln!(
        "alignment: uninterrupted {:.1} s, {hits} kills hit a running run",
        full.as_secs_f64()
    );
    assert!(hits >= 3, "only {hits} kills hit a running alignment run");
    for f in [
        "model.bpk",
        "best/model.bpk",
        "checkpoint/step-000020/target.json",
    ] {
        same_file(
            &root.join("blade-ref").join(f),
            &root.join("blade-killed").join(f),
        );
    }
    assert!(root.join("blade-killed/summary.json").exists());
}
