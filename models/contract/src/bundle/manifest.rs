//! The bundle manifest: the typed contract between the trainer that writes a bundle and the
//! runtime that reads it. Unknown and missing fields are errors so that a manifest from a
//! different format version can never be half-understood.

use crate::fusion::{Aggregate, FuseMode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bundle format this runtime reads and writes. A change to any field's meaning bumps it.
pub const FORMAT_VERSION: u32 = 1;

/// File name of the manifest inside a bundle directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Names the writer gives the files it stores.
pub const MODEL_FP32_FILE: &str = "model-fp32.onnx";
pub const MODEL_INT8_FILE: &str = "model-int8.onnx";
pub const PROTOTYPES_FILE: &str = "prototypes.safetensors";
pub const BUFFER_FILE: &str = "buffer.safetensors";
pub const ANCHORS_FILE: &str = "anchors.safetensors";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    /// Class names in model-output order; must be the canonical order of `crate::labels`.
    pub classes: Vec<String>,
    pub input: InputSpec,
    /// Dimension of the model's `embedding` output, the prototypes and the buffer.
    pub embedding_dim: usize,
    pub fusion: Fusion,
    pub models: Models,
    /// Text prototypes `[classes, embedding_dim]`; absent for a run without a projection head
    /// (then `fusion.weights.text` is 0).
    pub prototypes: Option<FileEntry>,
    /// Seed instance buffer: embeddings of labeled faces with their class ids.
    pub buffer: FileEntry,
    /// Anchor faces: the classifier head's input (the pooled feature, `[n, F]`) of labeled faces
    /// with their class ids, which the on-device refit of the head replays and is checked
    /// against (runtime/src/online). Optional: bundles without it (all written before it
    /// existed) still open, and the manifest of one without it has no such field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchors: Option<FileEntry>,
    /// Where the bundle came from (checkpoint, training command, data); free-form, for people.
    pub provenance: BTreeMap<String, String>,
}

/// What the model expects: `[N, channels, size, size]` f32, pixels scaled to [0, 1] then
/// normalised per channel with `(x - mean) / std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub size: u32,
    pub channels: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// How the runtime fuses the semantic (classifier), text (prototype) and instance (buffer)
/// predictions, with a temperature per source: the settings the model was trained with (or
/// calibrated at export), so the device fuses as the trainer did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fusion {
    /// Temperature of the classifier's logits. Bundles written before it existed fused raw
    /// logits, which is τ = 1; it is left out of the file when 1 so that such bundles, and
    /// uncalibrated new ones, stay readable by runtimes that predate the field.
    #[serde(default = "unit_temperature", skip_serializing_if = "is_unit_temperature")]
    pub tau_sem: f32,
    pub tau_t: f32,
    pub tau_i: f32,
    pub weights: FusionWeights,
    /// Confidence below which a fused prediction is not trusted (nor added to the buffer).
    pub threshold: f32,
    /// Bundles written before these two fields existed were always fused as probabilities with
    /// per-class max similarity; missing fields keep meaning that, so such bundles still open.
    #[serde(default = "legacy_mode")]
    pub mode: FuseMode,
    #[serde(default = "legacy_aggregate")]
    pub aggregate: Aggregate,
}

fn unit_temperature() -> f32 {
    1.0
}

fn is_unit_temperature(t: &f32) -> bool {
    *t == 1.0
}

fn legacy_mode() -> FuseMode {
    FuseMode::Probabilities
}

fn legacy_aggregate() -> Aggregate {
    Aggregate::Max
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FusionWeights {
    pub sem: f32,
    pub text: f32,
    pub ins: f32,
}

/// The model files; at least one must be present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Models {
    pub fp32: Option<FileEntry>,
    pub int8: Option<FileEntry>,
}

/// A file of the bundle, relative to the bundle directory, with its size and SHA-256 (lowercase
/// hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Which model of a bundle to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Fp32,
    Int8,
    /// The fp32 model translated by tract to f16 arithmetic when it is loaded (no file of its
    /// own: the bundle's fp32 model is read). Cheap only on cores with FP16 arithmetic
    /// (Cortex-A76/A78: Raspberry Pi 5, Jetson Orin), where tract runs its aarch64 f16 kernels;
    /// elsewhere tract falls back to its generic Rust f16 kernel (docs/results/boards.md).
    Fp16,
}

impl Precision {
    /// Every precision, in the order `sitfer bench` and `info` list them.
    pub const ALL: [Precision; 3] = [Precision::Fp32, Precision::Int8, Precision::Fp16];

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
            Precision::Fp16 => "fp16",
        }
    }

    /// `fp32`, `int8` or `fp16`.
    pub fn parse(s: &str) -> Option<Precision> {
        Precision::ALL.into_iter().find(|p| p.name() == s)
    }

    /// The model file a precision runs: fp16 is computed from the fp32 model.
    pub fn file_precision(self) -> Precision {
        match self {
            Precision::Int8 => Precision::Int8,
            Precision::Fp32 | Precision::Fp16 => Precision::Fp32,
        }
    }
}

/// Whether this CPU has FP16 arithmetic (Armv8.2 FEAT_FP16: Cortex-A55/A75/A76/A78, not the
/// Jetson Nano's Cortex-A57), the condition for tract's f16 kernels. Always false off aarch64.
pub fn cpu_has_fp16() -> bool {
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("fp16")
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        false
    }
}

impl Manifest {
    /// The model entry of `precision` and its manifest field name (fp16 reads the fp32 model).
    pub fn model(&self, precision: Precision) -> (Option<&FileEntry>, &'static str) {
        match precision.file_precision() {
            Precision::Int8 => (self.models.int8.as_ref(), "models.int8"),
            _ => (self.models.fp32.as_ref(), "models.fp32"),
        }
    }

    /// The model to run when neither `--precision` nor a board profile says, chosen by
    /// measurement (docs/results/boards.md, docs/results/bundle.md):
    /// - on an aarch64 core with FP16 arithmetic (Cortex-A76/A78), fp16: counted under qemu as a
    ///   Cortex-A76 it executes 0.57x fp32's instructions per face, and int8 1.46x fp32's;
    /// - elsewhere fp32: on x86_64 tract's int8 measured 1.6x slower than fp32, and on a core
    ///   without FP16 (Cortex-A57) int8 counts 1.93x fp32 and tract has no f16 kernels.
    ///
    /// A bundle without an fp32 model runs its int8 one.
    pub fn preferred_precision(&self) -> Precision {
        if self.models.fp32.is_none() {
            Precision::Int8
        } else if cpu_has_fp16() {
            Precision::Fp16
        } else {
            Precision::Fp32
        }
    }

    /// Every file entry with its manifest field name.
    pub fn files(&self) -> Vec<(&'static str, &FileEntry)> {
        let mut v = Vec::new();
        if let Some(e) = &self.models.fp32 {
            v.push(("models.fp32", e));
        }
        if let Some(e) = &self.models.int8 {
            v.push(("models.int8", e));
        }
        if let Some(e) = &self.prototypes {
            v.push(("prototypes", e));
        }
        v.push(("buffer", &self.buffer));
        if let Some(e) = &self.anchors {
            v.push(("anchors", e));
        }
        v
    }
}
