//! Errors of the data layer: every one names the file (and line/field where there is one).

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}:{line}: field `{field}`: {message}")]
    Field {
        path: PathBuf,
        line: usize,
        field: String,
        message: String,
    },
    #[error(
        "{path}:{line}: unknown expression label `{label}` (known: surprise, fear, disgust, happy, sad, angry, neutral and their usual aliases)"
    )]
    UnknownLabel { path: PathBuf, line: usize, label: String },
    #[error(
        "{path}:{line}: label `{label}` is not in the 7-class set; pass `--outside-labels drop` to skip such samples"
    )]
    OutsideLabel { path: PathBuf, line: usize, label: String },
    #[error("{path}: {message}")]
    Layout { path: PathBuf, message: String },
    #[error("{path}: cannot decode image: {message}")]
    Image { path: PathBuf, message: String },
    #[error("manifest {path}: {message}")]
    Manifest { path: PathBuf, message: String },
}

impl DataError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn layout(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        DataError::Layout {
            path: path.into(),
            message: message.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, DataError>;
