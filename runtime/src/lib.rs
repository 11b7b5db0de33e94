//! sitfer edge runtime.
//!
//! It reads the model bundle through `sitfer-contract` (re-exported here: `bundle`, `labels`,
//! `fusion`, `infer`, `file_write`) and turns frames into expressions: sources
//! → face detection → crops → model → fusion with the text prototypes and the on-device
//! instance buffer → tracking and smoothing → sinks (see `docs/ARCHITECTURE.md`).

pub mod adapt;
pub mod board;
pub mod calibrate;
pub mod camera;
pub mod default_bundle;
pub mod detect;
pub mod display;
pub mod instance_buffer;
pub mod metrics;
pub mod mqtt;
pub mod online;
pub mod pipeline;
pub mod preprocess;
pub mod source;
pub mod track;

pub use sitfer_contract::{
    ALL_EXPRESSIONS, Expression, LabelMeaning, NUM_CLASSES, OutsideLabel, bundle, file_write, fusion, image_files,
    infer, labels, onnx_names,
};
