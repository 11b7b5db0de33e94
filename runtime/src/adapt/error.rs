use crate::bundle::BundleError;
use crate::pipeline::PipelineError;
use crate::source::SourceError;
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum AdaptError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("{file}: classifier head: {message}")]
    Head { file: PathBuf, message: String },
}
