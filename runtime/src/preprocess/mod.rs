//! From a frame and face boxes to the model's input batch.

mod crop;

pub use crop::{ColorMode, FacePrep};
