//! The contract between the sitfer trainer and runtime: everything both sides must read and
//! compute identically, and nothing else (no camera, display or training code).
//!
//! - [`labels`]: the canonical seven classes and the name table every dataset reader maps through;
//! - [`bundle`]: the model bundle (manifest with the fusion settings, reader, writer, pack);
//! - [`onnx_names`]: the tensor names of an exported model;
//! - [`infer`]: a bundle's ONNX run in tract (the trainer's export computes the seed buffer with
//!   it, so the buffer lives in exactly the space the device computes);
//! - [`fusion`]: p_sem, p_text, p_ins and p̂, including the per-class buffer similarity;
//! - [`file_write`]: write-temp-then-rename, for every file either side must never leave torn;
//! - [`image_files`]: which files are images, and a folder's image files in a stable order.

pub mod bundle;
pub mod file_write;
pub mod fusion;
pub mod image_files;
pub mod infer;
pub mod labels;
pub mod onnx_names;

pub use labels::{ALL as ALL_EXPRESSIONS, Expression, LabelMeaning, NUM_CLASSES, OutsideLabel};
