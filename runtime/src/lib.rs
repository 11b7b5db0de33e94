//! sitfer edge runtime.
//!
//! It owns the model bundle (the trainer writes bundles through this crate and verifies them
//! with its reader) and runs bundle models with tract. Detection, tracking, the on-device
//! instance buffer and the camera loop land here next (see `docs/ARCHITECTURE.md`).

pub mod atomic;
pub mod bundle;
pub mod infer;
pub mod labels;

pub use labels::{ALL as ALL_EXPRESSIONS, Expression, LabelMeaning, NUM_CLASSES, OutsideLabel};
