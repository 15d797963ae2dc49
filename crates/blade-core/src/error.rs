//! Typed errors of the core crate.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, CoreError>;

/// Everything that can go wrong in policies, training and evaluation.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A backend was asked for that this binary was not built with, or the spec is malformed.
    #[error("{0}")]
    Backend(String),
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An error of the data layer.
    #[error(transparent)]
    Data(#[from] blade_data::DataError),
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file concerned.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A list reward failed (a NaN or infinite value, a batch mismatch).
    #[error(transparent)]
    Reward(#[from] crate::reward::RewardError),
    /// Training diverged: a loss became NaN or infinite.
    #[error("training diverged: {0}")]
    Diverged(String),
    /// Reading a tensor back from the device failed.
    #[error("tensor read-back failed: {0}")]
    Tensor(String),
}

impl CoreError {
    /// A file error on `path`.
    pub fn file(path: impl Into<PathBuf>, message: impl ToString) -> Self {
        Self::File {
            path: path.into(),
            message: message.to_string(),
        }
    }
}
