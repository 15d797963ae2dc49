//! The error of reading a model's files (GGUF, safetensors, `config.json`, tokenizer files).

use std::path::{Path, PathBuf};

use crate::gguf::GgufError;

/// Errors of loading a model; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A GGUF problem.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A safetensors / config.json problem.
    #[error("{path}: {what}")]
    File {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
}

/// A [`LoadError::File`] naming `path`.
pub(crate) fn ferr(path: &Path, what: impl Into<String>) -> LoadError {
    LoadError::File {
        path: path.to_path_buf(),
        what: what.into(),
    }
}
