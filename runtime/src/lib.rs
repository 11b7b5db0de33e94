//! sitfer edge runtime.
//!
//! It owns the model bundle (the trainer writes bundles through this crate and verifies them
//! with its reader), runs bundle models with tract, and turns frames into expressions: sources
//! → face detection → crops → model → fusion with the text prototypes and the on-device
//! instance buffer → tracking and smoothing → sinks (see `docs/ARCHITECTURE.md`).

pub mod adapt;
pub mod atomic;
pub mod board;
pub mod buffer;
pub mod bundle;
pub mod camera;
pub mod detect;
pub mod display;
pub mod fusion;
pub mod infer;
pub mod labels;
pub mod pipeline;
pub mod preprocess;
pub mod source;
pub mod track;

pub use labels::{ALL as ALL_EXPRESSIONS, Expression, LabelMeaning, NUM_CLASSES, OutsideLabel};
