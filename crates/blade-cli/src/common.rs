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
