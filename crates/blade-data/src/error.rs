//! Typed errors of the data layer. Every error about a file names the file and, where there is
//! one, the 1-based line, and says what was expected.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, DataError>;

/// Everything that can go wrong while reading, converting or writing data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened, read or written.
    // the cause is in the message and deliberately not a `source()`: error chains printed as
    // `{:#}` would repeat it ("x.csv: No such file: No such file")
    #[error("{path}: {cause}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying I/O error.
        cause: std::io::Error,
    },
    /// A row of a data file is malformed.
    #[error("{path}:{line}: {message}")]
    BadRow {
        /// The file concerned.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was found and what was expected.
        message: String,
    },
    /// The file as a whole does not have the expected layout (missing header column, ...).
    #[error("{path}: {message}")]
    BadFile {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The data is valid but unusable (for example nothing is left after k-core filtering).
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            cause: source,
        }
    }

    /// A malformed row at `line` (1-based) of `path`.
    pub fn bad_row(path: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> Self {
        Self::BadRow {
            path: path.into(),
            line,
            message: message.into(),
        }
    }

    /// A file-level layout problem in `path`.
    pub fn bad_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::BadFile {
            path: path.into(),
            message: message.into(),
        }
    }
}
