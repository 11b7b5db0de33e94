//! The error of a training run: every variant names what failed (file, setting, step).

use super::checkpoint::CheckpointError;
use crate::data::DataError;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Prototypes(#[from] crate::text::prototypes::PrototypeError),
    #[error(
        "loss became {loss} at step {step}: training stopped. Likely causes: learning rate too high ({lr}), or a corrupt batch. The last good checkpoint is kept in {run_dir}/checkpoints (resume with --resume after lowering --lr)."
    )]
    NonFinite {
        step: u64,
        loss: f32,
        lr: f64,
        run_dir: PathBuf,
    },
}

/// Maps an I/O error on `path` to [`TrainError::Io`] naming the file.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}
