//! Models by repo id from a Hugging Face cache the test writes the way `huggingface_hub` does
//! (`refs/<branch>` holding a commit, `snapshots/<commit>/` with links into `blobs/`), offline.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use blade_llm::hub::resolve_weights_with;
use blade_llm::LanguageModel;
use blade_testkit::{write_tiny_gguf, write_tiny_hf, TinySpec};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const OLD: &str = "89abcdef0123456789abcdef0123456789abcdef";

/// Moves every file of `snapshot` into `repo/blobs/<name>` and links it back, as the hub does.
fn as_blobs(repo: &Path, snapshot: &Path) {
    let blobs = repo.join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    for e in std::fs::read_dir(snapshot).unwrap() {
        let path = e.unwrap().path();
        let blob = blobs.join(format!(
            "blob-{}",
            path.file_name().unwrap().to_string_lossy()
        ));
        std::fs::rename(&path, &blob).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(&blob, &path).unwrap();
        #[cfg(not(unix))]
        std::fs::copy(&blob, &path).unwrap();
    }
}

/// A cache under `root` with `org/tiny` (a Hugging Face folder on `main`, an older GGUF-only
/// commit tagged `v0`) and `org/tiny-gguf` (two GGUF files on `main`).
fn cache(root: &Path) -> PathBuf {
    let hub = root.join("hub");
    let repo = hub.join("models--org--tiny");
    let snap = repo.join("snapshots").join(COMMIT);
    write_tiny_hf(&snap, &TinySpec::default()).unwrap();
    as_blobs(&repo, &snap);
    let old = repo.join("snapshots").join(OLD);
    std::fs::create_dir_all(&old).unwrap();
    write_tiny_gguf(&old.join("tiny.gguf"), &TinySpec::default()).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    std::fs::write(repo.join("refs/v0"), format!("{OLD}\n")).unwrap();

    let two = hub.join("models--org--tiny-gguf");
    let snap = two.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(&snap).unwrap();
    for name in ["tiny-f32.gguf", "tiny-q8.gguf"] {
        write_tiny_gguf(&snap.join(name), &TinySpec::default()).unwrap();
    }
    std::fs::create_dir_all(two.join("refs")).unwrap();
    std::fs::write(two.join("refs/main"), COMMIT).unwrap();
    hub
}

fn env(hf_home: &Path) -> impl Fn(&str) -> Option<OsString> + '_ {
    move |name| (name == "HF_HOME").then(|| hf_home.as_os_str().to_owned())
}

#[test]
fn a_repo_id_resolves_from_the_cache_and_loads() {
    let dir = tempfile::tempdir().unwrap();
    let hub = cache(dir.path());
    let var = env(dir.path());
    let resolve = |spec: &str| resolve_weights_with(Path::new(spec), &var);

    // main -> the snapshot folder (config.json + safetensors through blob links)
    let main = resolve("org/tiny").unwrap();
    assert_eq!(main, hub.join("models--org--tiny/snapshots").join(COMMIT));
    let lm = LanguageModel::load(&main, None, &Default::default()).unwrap();
    // a tag, and a commit given directly, reach the older GGUF-only snapshot's only file
    let old = hub
        .join("models--org--tiny/snapshots")
        .join(OLD)
        .join("tiny.gguf");
    assert_eq!(resolve("org/tiny@v0").unwrap(), old);
    assert_eq!(resolve(&format!("org/tiny@{OLD}")).unwrap(), old);
    let gguf = LanguageModel::load(&old, None, &Default::default()).unwrap();
    // the same weights in both layouts: the same next-token logits
    let prompt = [257, 72, 101, 108];
    let (a, b) = (
        lm.last_logits(&prompt).unwrap(),
        gguf.last_logits(&prompt).unwrap(),
    );
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    assert!(diff < 1e-4, "max logit difference {diff}");
    // one file of a repo with several
    assert_eq!(
        resolve("org/tiny-gguf:tiny-q8.gguf").unwrap(),
        hub.join("models--org--tiny-gguf/snapshots")
            .join(COMMIT)
            .join("tiny-q8.gguf")
    );
    // HF_HUB_CACHE wins over HF_HOME
    let direct = |name: &str| (name == "HF_HUB_CACHE").then(|| hub.as_os_str().to_owned());
    assert_eq!(
        resolve_weights_with(Path::new("org/tiny"), &direct).unwrap(),
        main
    );
    // an existing path is a path, even one shaped like a repo id
    let local = dir.path().join("org");
    std::fs::create_dir_all(local.join("tiny")).unwrap();
    let here = local.join("tiny");
    assert_eq!(resolve(here.to_str().unwrap()).unwrap(), here);
}

#[test]
fn what_is_missing_is_named_with_where_it_was_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let hub = cache(dir.path());
    let var = env(dir.path());
    let err = |spec: &str| {
        resolve_weights_with(Path::new(spec), &var)
            .unwrap_err()
            .to_string()
    };
    let e = err("org/absent");
    assert!(
        e.starts_with("--weights org/absent: ")
            && e.contains(&hub.join("models--org--absent").display().to_string())
            && e.contains("HF_HOME/hub"),
        "{e}"
    );
    let e = err("org/tiny@v9");
    assert!(e.contains("revision `v9`") && e.contains("refs/v9"), "{e}");
    let e = err("org/tiny-gguf");
    assert!(
        e.contains("2 GGUF files (tiny-f32.gguf, tiny-q8.gguf)")
            && e.contains("org/tiny-gguf:FILE"),
        "{e}"
    );
    let e = err("org/tiny-gguf:nope.gguf");
    assert!(e.contains("has no file nope.gguf"), "{e}");
    let e = err("no-such-file.gguf");
    assert!(e.contains("no such file or folder"), "{e}");
    // a ref to a commit whose snapshot is gone
    std::fs::write(
        hub.join("models--org--tiny/refs/broken"),
        "ffffffffffffffffffffffffffffffffffffffff",
    )
    .unwrap();
    let e = err("org/tiny@broken");
    assert!(e.contains("interrupted download"), "{e}");
}
