//! The model bundle: the only contract between the trainer (which writes it) and the runtime.
//!
//! A bundle is a directory holding `manifest.json` (format version, classes, input spec, fusion
//! settings, and the size and SHA-256 of every other file), the ONNX model(s), the text
//! prototypes and the seed instance buffer; `pack` puts those files into one tar file that
//! opens like the directory.

pub mod error;
pub mod fixture;
pub mod manifest;
pub mod pack;
pub mod prototypes;
pub mod reader;
pub mod seed_buffer;
mod tensors;
pub mod writer;

pub use error::BundleError;
pub use manifest::{FileEntry, Fusion, FusionWeights, InputSpec, Manifest, Models, Precision, cpu_has_fp16};
pub use pack::{pack, unpack};
pub use prototypes::TextPrototypes;
pub use reader::{Bundle, sha256_hex};
pub use seed_buffer::SeedBuffer;
pub use writer::{BundleContents, BundleSettings, write_bundle, write_bundle_with_anchors, write_bundle_with_extras};

#[cfg(test)]
mod tests;
