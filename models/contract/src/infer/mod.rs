//! Inference with tract on a bundle's model.

pub mod model;
pub mod panic_guard;

pub use model::{InferError, Inference, Model};
