//! What the command-line test binaries share.

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `blade` binary with `args` in `cwd` and waits for it.
pub fn blade(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_blade"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the blade binary runs")
}
