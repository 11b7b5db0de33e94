//! Inference with tract on a bundle's model.

pub mod guard;
pub mod model;

pub use model::{FEATURE_OUTPUT, InferError, Inference, Model};
