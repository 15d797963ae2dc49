//! What several commands share: dataset resolution, device choice, tables and progress bars.

use anyhow::Result;
use blade_core::BackendSpec;
use burn::tensor::Device;
use clap::Args;

/// Default cache of downloaded datasets (ignored by git).
pub use blade_exp::data::DEFAULT_CACHE;
/// Where the data comes from and how it is prepared (flattened into commands).
pub use blade_exp::DataSpec as DataArgs;

/// The compute backend.
#[derive(Args, Debug, Clone)]
pub struct BackendArgs {
    /// flex (CPU, default), ndarray (CPU), wgpu[:index] (GPU via Vulkan/Metal/DX12), cuda[:index].
    #[arg(long, default_value = "flex")]
    pub backend: String,
}

impl BackendArgs {
    /// The burn device of `--backend`.
    pub fn device(&self) -> Result<Device> {
        let spec: BackendSpec = self.backend.parse()?;
        Ok(spec.device()?)
    }
}

pub use blade_exp::report_table;

/// A progress bar for long non-dashboard work (hidden when stderr is not a terminal).
pub fn progress_bar(total: usize, what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(total as u64);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} ({elapsed})")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

/// `--out` must name a folder (new or existing), not a file.
pub fn check_out_folder(out: &std::path::Path) -> anyhow::Result<()> {
    if out.exists() && !out.is_dir() {
        anyhow::bail!(
            "--out {}: is a file; expected a folder (a new one, or the run to resume)",
            out.display()
        );
    }
    Ok(())
}

/// Checks `--peer PYTHON` (a path, or a name on `PATH`) and `--peer-script SCRIPT` before any
/// measurement starts; `setup` names the script that makes a suitable interpreter.
pub fn check_peer(python: &std::path::Path, script: &std::path::Path, setup: &str) -> Result<()> {
    let found = if python.components().count() > 1 {
        python.is_file()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(python).is_file()))
    };
    if !found {
        anyhow::bail!(
            "--peer {}: no such interpreter (give the Python that `{setup}` prints)",
            python.display()
        );
    }
    if !script.is_file() {
        anyhow::bail!(
            "--peer-script {}: no such file (run from the repository root or give its path)",
            script.display()
        );
    }
    Ok(())
}

/// Runs the peer benchmark `python script args..` and returns the last JSON line of its
/// standard output; every failure names `--peer`.
pub fn run_peer(
    python: &std::path::Path,
    script: &std::path::Path,
    args: &[String],
) -> Result<serde_json::Value> {
    use anyhow::Context;
    let out = std::process::Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .with_context(|| format!("--peer {}: could not run the interpreter", python.display()))?;
    if !out.status.success() {
        anyhow::bail!(
            "--peer {} {}: failed: {}",
            python.display(),
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .filter(serde_json::Value::is_object)
        })
        .with_context(|| format!("--peer: no JSON line in the peer's output:\n{text}"))
}

/// The build this binary came from, for the header of a timing table: figures of a dev build
/// and a release build are not comparable (blade's own crates keep `opt-level = 1` and their
/// overflow checks in the dev profile).
pub fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "dev build"
    } else {
        "release build"
    }
}

/// Threads the peers get: `RAYON_NUM_THREADS` where set (blade's CPU backends size their pool
/// from it), else every core.
pub fn peer_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}
