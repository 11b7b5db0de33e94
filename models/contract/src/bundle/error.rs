//! `BundleError`: everything that can be wrong with a bundle, each naming the file and the
//! manifest field involved so that a broken deployment can be fixed without a debugger.

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BundleError {
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Malformed JSON, a missing or an unknown field (serde's message names it).
    #[error("{file}: line {line} column {column}: {message}")]
    Json {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: field `format_version`: {found} is not supported (this runtime reads version {supported})")]
    UnsupportedVersion { file: PathBuf, found: u64, supported: u32 },
    #[error("{file}: field `{field}`: {message}")]
    Invalid {
        file: PathBuf,
        field: String,
        message: String,
    },
    #[error(
        "{file}: field `{field}`: path `{path}` leaves the bundle directory (absolute, `..` or not a plain relative path)"
    )]
    PathEscapes { file: PathBuf, field: String, path: String },
    #[error("{file} (field `{field}`): {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        file: PathBuf,
        field: String,
        size: u64,
        limit: u64,
    },
    #[error("{file} (field `{field}`): size {actual} bytes, the manifest says {expected} (truncated or replaced file)")]
    SizeMismatch {
        file: PathBuf,
        field: String,
        expected: u64,
        actual: u64,
    },
    #[error("{file} (field `{field}`): sha256 {actual} does not match the manifest's {expected}")]
    HashMismatch {
        file: PathBuf,
        field: String,
        expected: String,
        actual: String,
    },
    #[error("{file} (field `{field}`): {message}")]
    Tensor {
        file: PathBuf,
        field: String,
        message: String,
    },
    #[error("{file} (field `{field}`): {message}")]
    Model {
        file: PathBuf,
        field: String,
        message: String,
    },
}

impl BundleError {
    /// The file the error names.
    pub(crate) fn file_mut(&mut self) -> &mut PathBuf {
        match self {
            BundleError::Io { file, .. }
            | BundleError::Json { file, .. }
            | BundleError::UnsupportedVersion { file, .. }
            | BundleError::Invalid { file, .. }
            | BundleError::PathEscapes { file, .. }
            | BundleError::TooLarge { file, .. }
            | BundleError::SizeMismatch { file, .. }
            | BundleError::HashMismatch { file, .. }
            | BundleError::Tensor { file, .. }
            | BundleError::Model { file, .. } => file,
        }
    }

    pub(crate) fn io(file: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> BundleError {
        let file = file.into();
        move |source| BundleError::Io { file, source }
    }

    pub(crate) fn invalid(file: impl Into<PathBuf>, field: &str, message: impl Into<String>) -> BundleError {
        BundleError::Invalid {
            file: file.into(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn tensor(file: impl Into<PathBuf>, field: &str, message: impl Into<String>) -> BundleError {
        BundleError::Tensor {
            file: file.into(),
            field: field.to_string(),
            message: message.into(),
        }
    }
}
