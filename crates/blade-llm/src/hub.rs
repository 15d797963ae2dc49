//! Models by Hugging Face repo id (`--weights HuggingFaceTB/SmolLM2-135M-Instruct`), resolved
//! offline from the local Hugging Face cache exactly as `huggingface_hub` lays it out:
//!
//! ```text
//! <cache>/models--<org>--<name>/refs/<revision>        the commit a branch or tag points at
//! <cache>/models--<org>--<name>/snapshots/<commit>/    the files of that commit (links to blobs)
//! ```
//!
//! `<cache>` is `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `HF_HOME/hub`, else
//! `XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub` (huggingface_hub's order).
//! A spec is `org/name`, `org/name@revision` (a branch, tag or commit; default `main`), and
//! either may end in `:FILE` to pick one file of the snapshot (a repo with several GGUF
//! quantisations). A path that exists is always taken as a path.
//!
//! The `hf-hub` crate is not used: without its network features it only maps a known file
//! name to a cached path, and it reads neither `HF_HUB_CACHE` nor `XDG_CACHE_HOME`; this
//! module needs the snapshot itself (a Hugging Face folder) or its only GGUF file, and the
//! cache root by the rules above. Nothing here touches the network.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// A model that could not be found; the message lists every place that was looked at.
#[derive(Debug, thiserror::Error)]
#[error("--weights {spec}: {problem}")]
pub struct HubError {
    /// The `--weights` value.
    pub spec: String,
    /// What is missing, and where it was looked for.
    pub problem: String,
}

/// A parsed `org/name[@revision][:FILE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSpec {
    /// `org/name`.
    pub repo: String,
    /// Branch, tag or commit (`main` by default).
    pub revision: String,
    /// One file of the snapshot, if named.
    pub file: Option<String>,
}

impl RepoSpec {
    /// `Some` when `spec` has the shape of a repo id: exactly one `/` between two non-empty
    /// names of letters, digits, `-`, `_` and `.` (not `.` or `..`).
    pub fn parse(spec: &str) -> Option<Self> {
        let (id, file) = match spec.split_once(':') {
            Some((id, f)) if !f.is_empty() => (id, Some(f.to_string())),
            Some(_) => return None,
            None => (spec, None),
        };
        let (repo, revision) = match id.split_once('@') {
            Some((r, rev)) if !rev.is_empty() => (r, rev.to_string()),
            Some(_) => return None,
            None => (id, "main".to_string()),
        };
        let (org, name) = repo.split_once('/')?;
        let ok = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        (ok(org) && ok(name)).then(|| Self {
            repo: repo.to_string(),
            revision,
            file,
        })
    }

    /// The repo's folder name in the cache, `models--org--name`.
    pub fn folder(&self) -> String {
        format!("models--{}", self.repo.replace('/', "--"))
    }
}

/// The Hugging Face hub cache root, by huggingface_hub's rules, reading variables through
/// `var`; also which rule chose it (for error messages).
pub fn cache_dir(var: &dyn Fn(&str) -> Option<OsString>) -> (PathBuf, &'static str) {
    let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = set("HF_HUB_CACHE") {
        return (p, "HF_HUB_CACHE");
    }
    if let Some(p) = set("HUGGINGFACE_HUB_CACHE") {
        return (p, "HUGGINGFACE_HUB_CACHE");
    }
    if let Some(p) = set("HF_HOME") {
        return (p.join("hub"), "HF_HOME/hub");
    }
    if let Some(p) = set("XDG_CACHE_HOME") {
        return (
            p.join("huggingface").join("hub"),
            "XDG_CACHE_HOME/huggingface/hub",
        );
    }
    let home = set("HOME").unwrap_or_else(|| PathBuf::from("."));
    (
        home.join(".cache").join("huggingface").join("hub"),
        "~/.cache/huggingface/hub",
    )
}

/// `spec` as a file or folder to load: an existing path as is, else a repo id resolved from
/// the cache of [`cache_dir`] with the process environment.
///
/// # Errors
///
/// [`HubError`] when `spec` is neither an existing path nor a cached repo (every place looked
/// at is named).
pub fn resolve_weights(spec: &Path) -> Result<PathBuf, HubError> {
    resolve_weights_with(spec, &|name| std::env::var_os(name))
}

/// [`resolve_weights`] with the environment read through `var` (for tests).
///
/// # Errors
///
/// As [`resolve_weights`].
pub fn resolve_weights_with(
    spec: &Path,
    var: &dyn Fn(&str) -> Option<OsString>,
) -> Result<PathBuf, HubError> {
    if spec.exists() {
        return Ok(spec.to_path_buf());
    }
    let text = spec.to_string_lossy().into_owned();
    let fail = |problem: String| HubError {
        spec: text.clone(),
        problem,
    };
    let Some(repo) = RepoSpec::parse(&text) else {
        return Err(fail(
            "no such file or folder (nor a Hugging Face repo id such as org/name[@revision])"
                .into(),
        ));
    };
    let (root, rule) = cache_dir(var);
    let dir = root.join(repo.folder());
    if !dir.is_dir() {
        return Err(fail(format!(
            "neither a file nor a cached Hugging Face model: looked for {} (the cache from {rule}); \
             download it with `huggingface-cli download {}` or give a path",
            dir.display(),
            repo.repo
        )));
    }
    let refs = dir.join("refs").join(&repo.revision);
    let commit = match std::fs::read_to_string(&refs) {
        Ok(c) => c.trim().to_string(),
        Err(_) if is_commit(&repo.revision) => repo.revision.clone(),
        Err(_) => {
            return Err(fail(format!(
                "revision `{}` is not in the cache: looked for {} (a branch or tag) and found no \
                 commit of that name",
                repo.revision,
                refs.display()
            )))
        }
    };
    let snapshot = dir.join("snapshots").join(&commit);
    if !snapshot.is_dir() {
        return Err(fail(format!(
            "revision `{}` points at commit {commit}, but {} is missing (an interrupted download?)",
            repo.revision,
            snapshot.display()
        )));
    }
    if let Some(file) = &repo.file {
        let path = snapshot.join(file);
        return if path.exists() && !file.split(['/', '\\']).any(|p| p == "..") {
            Ok(path)
        } else {
            Err(fail(format!("{} has no file {file}", snapshot.display())))
        };
    }
    if snapshot.join("config.json").is_file() {
        return Ok(snapshot);
    }
    let mut ggufs: Vec<String> = std::fs::read_dir(&snapshot)
        .map_err(|e| fail(format!("reading {}: {e}", snapshot.display())))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.to_ascii_lowercase().ends_with(".gguf"))
        .collect();
    ggufs.sort();
    match ggufs.as_slice() {
        [one] => Ok(snapshot.join(one)),
        [] => Err(fail(format!(
            "{} has neither a config.json (a Hugging Face model folder) nor a .gguf file",
            snapshot.display()
        ))),
        many => Err(fail(format!(
            "{} holds {} GGUF files ({}); name one as {}:FILE",
            snapshot.display(),
            many.len(),
            many.join(", "),
            text
        ))),
    }
}

/// A full 40-digit hexadecimal commit hash.
fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_parse_and_paths_do_not() {
        let r = RepoSpec::parse("HuggingFaceTB/SmolLM2-135M-Instruct").unwrap();
        assert_eq!(
            (r.repo.as_str(), r.revision.as_str(), r.file.clone()),
            ("HuggingFaceTB/SmolLM2-135M-Instruct", "main", None)
        );
        assert_eq!(r.folder(), "models--HuggingFaceTB--SmolLM2-135M-Instruct");
        let r = RepoSpec::parse("org/m.v1@v2.0:q8/model.gguf").unwrap();
        assert_eq!(
            (r.repo.as_str(), r.revision.as_str(), r.file.as_deref()),
            ("org/m.v1", "v2.0", Some("q8/model.gguf"))
        );
        for bad in [
            "model.gguf",
            "a/b/c",
            "/abs",
            "./x",
            "../x",
            "org/",
            "org/n@",
            "o/n:",
            "a b/c",
        ] {
            assert_eq!(RepoSpec::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_cache_root_follows_huggingface_hub() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let all = [
            ("HF_HUB_CACHE", "/a"),
            ("HUGGINGFACE_HUB_CACHE", "/b"),
            ("HF_HOME", "/c"),
            ("XDG_CACHE_HOME", "/d"),
            ("HOME", "/e"),
        ];
        let want = [
            "/a",
            "/b",
            "/c/hub",
            "/d/huggingface/hub",
            "/e/.cache/huggingface/hub",
        ];
        for (i, w) in want.iter().enumerate() {
            let pairs: &'static [(&str, &str)] = Vec::leak(all[i..].to_vec());
            assert_eq!(cache_dir(&env(pairs)).0, PathBuf::from(w));
        }
        // an empty variable counts as unset
        assert_eq!(
            cache_dir(&env(&[("HF_HUB_CACHE", ""), ("HF_HOME", "/c")])).0,
            PathBuf::from("/c/hub")
        );
    }
}
