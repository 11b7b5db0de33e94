//! Export: a trained checkpoint → ONNX (fp32, and int8 in the QOperator form) → a model bundle
//! that `sitfer-runtime` reads (and that export verifies with the runtime's own reader).

pub mod bundle;
pub mod fold;
pub mod onnx;
pub mod proto;
pub mod quantize;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ExportError {
    #[error("checkpoint weights: {0}")]
    Weights(String),
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Checkpoint(#[from] crate::train::checkpoint::CheckpointError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Bundle(#[from] sitfer_contract::bundle::BundleError),
    #[error(transparent)]
    Infer(#[from] sitfer_contract::infer::InferError),
    #[error("{path}: {message}")]
    File { path: std::path::PathBuf, message: String },
    #[error("{0}")]
    Config(String),
}
