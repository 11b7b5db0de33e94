//! sitfer edge runtime.
//!
//! For now this crate holds what the trainer shares with the runtime: the canonical label set
//! and atomic file writes. The bundle reader, inference, detection and the camera loop land here
//! next (see `docs/ARCHITECTURE.md`).

pub mod atomic;
pub mod labels;

pub use labels::{ALL as ALL_EXPRESSIONS, Expression, LabelMeaning, NUM_CLASSES, OutsideLabel};
