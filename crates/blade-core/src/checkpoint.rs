//! Crash-consistent checkpoints.
//!
//! A training run keeps its checkpoints in one folder (`<run>/checkpoint/`). Each checkpoint is a
//! folder of its own (`step-000040`, `epoch-0003`, `best-000020`, ...) holding every file that
//! belongs to it (model, optimiser, target, state). It is written under a hidden staging name
//! (`.step-000040.tmp`), every file and the folder are flushed to disk, and it is then published
//! with **one rename** and a flush of the parent folder. A checkpoint is therefore either wholly
//! there or not there at all: a `kill -9` at any moment leaves the newest *complete* checkpoint
//! to resume from, never a model without its optimiser or a target a step ahead of its policy.
//! Staging folders left by a crash are removed when the store is opened for writing, and older
//! checkpoints once a newer one is published.

use std::path::{Path, PathBuf};

use crate::error::CoreError;

/// The checkpoint folder of a run, relative to the run folder.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// Kind of the per-epoch checkpoints of SFT (`epoch-000003`).
pub const EPOCH: &str = "epoch";
/// Kind of the per-step checkpoints of alignment (`step-000040`).
pub const STEP: &str = "step";
/// Kind of the best model kept during a run (`best-000020`).
pub const BEST: &str = "best";

/// The checkpoints of one run.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    root: PathBuf,
}

/// The name of checkpoint `n` of kind `kind` (`step-000040`).
pub fn checkpoint_name(kind: &str, n: usize) -> String {
    format!("{kind}-{n:06}")
}

fn parse_name(kind: &str, name: &str) -> Option<usize> {
    name.strip_prefix(kind)?.strip_prefix('-')?.parse().ok()
}

impl Checkpoints {
    /// The store of run folder `run_dir` (`run_dir/checkpoint`); nothing is created yet.
    pub fn of_run(run_dir: &Path) -> Self {
        Self {
            root: run_dir.join(CHECKPOINT_DIR),
        }
    }

    /// The store's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The newest published checkpoint of `kind`, with its number and folder.
    pub fn latest(&self, kind: &str) -> Option<(usize, PathBuf)> {
        let entries = std::fs::read_dir(&self.root).ok()?;
        entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| parse_name(kind, &e.file_name().to_string_lossy()))
            .max()
            .map(|n| (n, self.root.join(checkpoint_name(kind, n))))
    }

    /// The folder of checkpoint `name` (published or not).
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Removes every checkpoint (a run started afresh in an existing folder).
    pub fn clear(&self) -> crate::Result<()> {
        match std::fs::remove_dir_all(&self.root) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CoreError::file(&self.root, e)),
        }
    }

    /// Removes staging folders a crash left behind.
    pub fn remove_stale(&self) -> crate::Result<()> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Ok(());
        };
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') && name.ends_with(".tmp") {
                remove_any(&e.path())?;
            }
        }
        Ok(())
    }

    /// An empty staging folder for checkpoint `name`; write its files there, then [`publish`].
    ///
    /// [`publish`]: Checkpoints::publish
    pub fn stage(&self, name: &str) -> crate::Result<PathBuf> {
        let tmp = self.root.join(format!(".{name}.tmp"));
        remove_any(&tmp)?;
        std::fs::create_dir_all(&tmp).map_err(|e| CoreError::file(&tmp, e))?;
        Ok(tmp)
    }

    /// Publishes the staged checkpoint `name` with one rename (after flushing its files), then
    /// removes every other entry of the store except those named in `keep`. With `prune` false
    /// nothing else is touched.
    pub fn publish(&self, name: &str, keep: &[String], prune: bool) -> crate::Result<PathBuf> {
        let tmp = self.root.join(format!(".{name}.tmp"));
        let dst = self.root.join(name);
        sync_tree(&tmp)?;
        // a checkpoint of the same name (a run resumed before it) is replaced
        replace_dir(&tmp, &dst)?;
        if prune {
            let entries =
                std::fs::read_dir(&self.root).map_err(|e| CoreError::file(&self.root, e))?;
            for e in entries.filter_map(|e| e.ok()) {
                let n = e.file_name().to_string_lossy().to_string();
                if n != name && !keep.contains(&n) {
                    remove_any(&e.path())?;
                }
            }
        }
        Ok(dst)
    }
}

/// Removes a file or folder; one that is not there is no error.
pub(crate) fn remove_any(path: &Path) -> crate::Result<()> {
    let r = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => return Ok(()),
    };
    r.map_err(|e| CoreError::file(path, e))
}

/// Flushes every file under `dir` and the folders themselves to disk.
pub fn sync_tree(dir: &Path) -> crate::Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| CoreError::file(dir, e))?;
    for e in entries {
        let e = e.map_err(|e| CoreError::file(dir, e))?;
        let p = e.path();
        if e.file_type()
            .map_err(|err| CoreError::file(&p, err))?
            .is_dir()
        {
            sync_tree(&p)?;
        } else {
            std::fs::File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(|err| CoreError::file(&p, err))?;
        }
    }
    sync_dir(dir)
}

/// Flushes a folder's entries (names created or renamed in it) to disk.
pub fn sync_dir(dir: &Path) -> crate::Result<()> {
    // opening a folder read-only and syncing it is how POSIX makes a rename durable; where the
    // platform refuses it (Windows) the rename is still atomic, only not yet durable
    match std::fs::File::open(dir).and_then(|f| f.sync_all()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Ok(()),
        Err(e) if cfg!(windows) => {
            let _ = e;
            Ok(())
        }
        Err(e) => Err(CoreError::file(dir, e)),
    }
}

/// Copies the files of folder `src` (not recursive) into a folder `dst` published atomically:
/// written as `.<dst>.tmp` beside it, then renamed over the old one.
pub fn publish_copy(src: &Path, dst: &Path) -> crate::Result<()> {
    let parent = dst.parent().unwrap_or(Path::new("."));
    let name = dst
        .file_name()
        .ok_or_else(|| CoreError::file(dst, "expected a folder path"))?
        .to_string_lossy()
        .to_string();
    let tmp = parent.join(format!(".{name}.tmp"));
    remove_any(&tmp)?;
    std::fs::create_dir_all(&tmp).map_err(|e| CoreError::file(&tmp, e))?;
    let entries = std::fs::read_dir(src).map_err(|e| CoreError::file(src, e))?;
    for e in entries {
        let e = e.map_err(|e| CoreError::file(src, e))?;
        if e.file_type().is_ok_and(|t| t.is_file()) {
            let to = tmp.join(e.file_name());
            std::fs::copy(e.path(), &to).map_err(|err| CoreError::file(&to, err))?;
        }
    }
    sync_tree(&tmp)?;
    replace_dir(&tmp, dst)
}

/// Renames the finished folder `tmp` to `dst` (a sibling) and flushes their parent. An existing
/// `dst` is moved aside first, since a rename onto a non-empty folder fails, and removed after.
fn replace_dir(tmp: &Path, dst: &Path) -> crate::Result<()> {
    let parent = dst.parent().unwrap_or(Path::new("."));
    if dst.exists() {
        let name = dst.file_name().unwrap_or_default().to_string_lossy();
        let old = parent.join(format!(".{name}.old.tmp"));
        remove_any(&old)?;
        std::fs::rename(dst, &old).map_err(|e| CoreError::file(dst, e))?;
        std::fs::rename(tmp, dst).map_err(|e| CoreError::file(dst, e))?;
        remove_any(&old)?;
    } else {
        std::fs::rename(tmp, dst).map_err(|e| CoreError::file(dst, e))?;
    }
    sync_dir(parent)
}

/// Writes `value` as JSON to `path` atomically.
pub fn save_json<T: serde::Serialize>(path: &Path, value: &T) -> crate::Result<()> {
    let text = serde_json::to_string(value).map_err(|e| CoreError::file(path, e))?;
    crate::sft::write_atomic(path, text.as_bytes())
}

/// A resume must continue the same run: the run's settings `saved` (as read from its file) and
/// `now` must agree in everything but the top-level keys in `ignore`. Both are compared through
/// JSON text, as the file was written (f32 settings print in their shortest form); the error,
/// on `path`, lists every differing setting as `key.sub: run X, now Y`.
pub(crate) fn check_same_settings<T: serde::Serialize>(
    saved: &serde_json::Value,
    now: &T,
    ignore: &[&str],
    path: &Path,
) -> crate::Result<()> {
    let now = text_value(now, path)?;
    let strip = |v: &serde_json::Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            for k in ignore {
                o.remove(*k);
            }
        }
        v
    };
    let (a, b) = (strip(saved), strip(&now));
    if a == b {
        return Ok(());
    }
    let mut diffs = Vec::new();
    flat_diff("", &a, &b, &mut diffs);
    Err(CoreError::file(
        path,
        format!(
            "cannot resume: the run was made with other settings ({}); resume with the run's \
             settings, or start afresh without --resume",
            diffs.join(", ")
        ),
    ))
}

/// `value` as JSON, through its text form (f32 fields as they print, not widened to f64).
pub(crate) fn text_value<T: serde::Serialize>(
    value: &T,
    path: &Path,
) -> crate::Result<serde_json::Value> {
    serde_json::to_string(value)
        .and_then(|t| serde_json::from_str(&t))
        .map_err(|e| CoreError::file(path, e))
}

fn flat_diff(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    match (a.as_object(), b.as_object()) {
        (Some(x), Some(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let null = serde_json::Value::Null;
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flat_diff(
                    &name,
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        _ if a != b => out.push(format!("{prefix}: run {a}, now {b}")),
        _ => {}
    }
}

/// A fingerprint of a run folder as it is now: FNV-1a over the names and bytes of the files
/// directly in it, in name order. Subfolders are left out (`checkpoint/`, and the `reference/`
/// caches alignment writes beside an SFT run), so aligning from a run does not change it.
/// Aligned runs record the fingerprint of the SFT run they start from.
pub fn folder_fingerprint(dir: &Path) -> crate::Result<String> {
    let entries = std::fs::read_dir(dir).map_err(|e| CoreError::file(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| CoreError::file(dir, e))?;
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            files.push(entry.path());
        }
    }
    files.sort();
    let mut h = 0u64;
    for f in files {
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
        h = fnv1a(name.unwrap_or_default().as_bytes(), h);
        h = fnv1a(&std::fs::read(&f).map_err(|e| CoreError::file(&f, e))?, h);
    }
    Ok(format!("{h:016x}"))
}

/// A stable 64-bit FNV-1a hash, for fingerprints of data and configurations stored in runs.
pub fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Gives every parameter of `module` an id derived from `seed` and its position, instead of
/// burn's random ids. Saved modules (and the optimiser state, keyed by those ids) are then the
/// same bytes in two runs with the same seed: an interrupted and resumed run can be compared
/// with an uninterrupted one file for file.
pub fn with_seeded_ids<M: burn::module::Module>(module: M, seed: u64) -> M {
    use burn::module::{ModuleMapper, Param, ParamId};
    use burn::prelude::Tensor;
    struct Ids {
        seed: u64,
        next: u64,
    }
    impl ModuleMapper for Ids {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            self.next += 1;
            let id = fnv1a(&self.next.to_le_bytes(), self.seed);
            let (_, value, mapper) = param.consume();
            Param::from_mapped_value(ParamId::from(id), value, mapper)
        }
    }
    module.map(&mut Ids { seed, next: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_is_all_or_nothing_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Checkpoints::of_run(dir.path());
        assert!(store.latest("step").is_none());
        for n in [1usize, 2] {
            let name = checkpoint_name("step", n);
            let s = store.stage(&name).unwrap();
            std::fs::write(s.join("a"), format!("{n}")).unwrap();
            // not visible before it is published
            assert_eq!(
                store.latest("step").map(|x| x.0),
                n.checked_sub(1).filter(|&x| x > 0)
            );
            store.publish(&name, &[], true).unwrap();
            assert_eq!(store.latest("step").map(|x| x.0), Some(n));
        }
        // an unfinished stage (a crash) is ignored by latest and removed by remove_stale
        let s = store.stage(&checkpoint_name("step", 3)).unwrap();
        std::fs::write(s.join("a"), "3").unwrap();
        let (n, p) = store.latest("step").unwrap();
        assert_eq!(n, 2);
        assert_eq!(std::fs::read_to_string(p.join("a")).unwrap(), "2");
        store.remove_stale().unwrap();
        let names: Vec<String> = std::fs::read_dir(store.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(names, vec![checkpoint_name("step", 2)]);
        // keep protects a named entry from pruning; republishing a name replaces it
        let b = checkpoint_name("best", 2);
        std::fs::write(store.stage(&b).unwrap().join("m"), "best").unwrap();
        store.publish(&b, &[], false).unwrap();
        let s = store.stage(&checkpoint_name("step", 2)).unwrap();
        std::fs::write(s.join("a"), "2b").unwrap();
        store
            .publish(&checkpoint_name("step", 2), std::slice::from_ref(&b), true)
            .unwrap();
        let (_, p) = store.latest("step").unwrap();
        assert_eq!(std::fs::read_to_string(p.join("a")).unwrap(), "2b");
        assert!(store.path(&b).join("m").exists());
    }

    #[test]
    fn publish_copy_replaces_a_folder_whole() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("x"), "new").unwrap();
        let dst = dir.path().join("best");
        std::fs::create_dir(&dst).unwrap();
        std::fs::write(dst.join("stale"), "old").unwrap();
        publish_copy(&src, &dst).unwrap();
        assert_eq!(std::fs::read_to_string(dst.join("x")).unwrap(), "new");
        assert!(!dst.join("stale").exists());
    }

    #[test]
    fn folder_fingerprint_sees_files_not_subfolders() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("model.bpk"), b"weights").unwrap();
        let a = folder_fingerprint(d.path()).unwrap();
        std::fs::create_dir(d.path().join("reference")).unwrap();
        std::fs::write(d.path().join("reference/x.json"), b"cache").unwrap();
        assert_eq!(
            folder_fingerprint(d.path()).unwrap(),
            a,
            "subfolders are left out"
        );
        std::fs::write(d.path().join("model.bpk"), b"weightz").unwrap();
        let b = folder_fingerprint(d.path()).unwrap();
        assert_ne!(a, b, "a changed file changes it");
        std::fs::write(d.path().join("extra.json"), b"").unwrap();
        assert_ne!(
            folder_fingerprint(d.path()).unwrap(),
            b,
            "a new file changes it"
        );
        assert!(folder_fingerprint(&d.path().join("missing")).is_err());
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(b"", 0), 0xcbf2_9ce4_8422_2325);
        assert_ne!(fnv1a(b"a", 0), fnv1a(b"b", 0));
        assert_ne!(fnv1a(b"a", 0), fnv1a(b"a", 1));
    }
}
