//! `SourceError`: every error names the file (or device) and, for Y4M, what in it is wrong.

use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not a readable image: {message}")]
    Decode { file: PathBuf, message: String },
    #[error("{file}: Y4M {what}: {message}")]
    Y4m {
        file: PathBuf,
        /// `header` or `frame N`.
        what: String,
        message: String,
    },
    #[error("{file}: no image files (png, jpg, jpeg, tif, tiff, bmp)")]
    Empty { file: PathBuf },
    /// For sources outside this module (the camera).
    #[error("{source_name}: {message}")]
    Other { source_name: String, message: String },
}

impl SourceError {
    pub(crate) fn io(file: &Path) -> impl FnOnce(std::io::Error) -> SourceError + '_ {
        move |source| SourceError::Io {
            file: file.to_path_buf(),
            source,
        }
    }
}
