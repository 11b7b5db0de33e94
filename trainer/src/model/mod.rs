//! Models: plain structs built from a `VarBuilder`, each returning `(logits, embedding)`.

pub mod conv;
pub mod conv_bn;
pub mod efficientnet_lite;
pub mod init;
pub mod norm;
pub mod pretrained;
pub mod projection;
pub mod resnet;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
pub use resnet::Stem;
use serde::{Deserialize, Serialize};

/// What a model returns for a batch: class logits `[B, classes]` and the pooled embedding
/// `[B, d]` that text prototypes and the instance buffer work on.
#[derive(Debug, Clone)]
pub struct ModelOutput {
    pub logits: Tensor,
    pub embedding: Tensor,
}

/// One trait for every FER model.
pub trait FerModel: Send + Sync {
    /// `train` selects batch statistics (and updates the running ones) in batch norm.
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<ModelOutput>;
    fn embedding_dim(&self) -> usize;
}

/// Architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// Compact edge student: a ResNet-10-like net, 32-64-128-256 channels, one block per stage
    /// (1.2 M parameters).
    Student,
    /// ResNet-18 (11.2 M parameters).
    Resnet18,
    /// EfficientNet-Lite0 (3.4 M parameters without the ImageNet head).
    EfficientnetLite0,
}

impl Arch {
    /// The command-line name (`student`, `resnet18`, `efficientnet-lite0`).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Student => "student",
            Arch::Resnet18 => "resnet18",
            Arch::EfficientnetLite0 => "efficientnet-lite0",
        }
    }
}

/// Everything needed to rebuild a model (stored in checkpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub arch: Arch,
    pub stem: Stem,
    pub num_classes: usize,
    pub input_size: u32,
}

/// Builds a model; its variables live wherever `vb` puts them.
pub fn build(spec: &ModelSpec, vb: VarBuilder) -> Result<Box<dyn FerModel>> {
    Ok(match spec.arch {
        Arch::Student => Box::new(resnet::ResNet::new(
            spec.stem,
            32,
            &[32, 64, 128, 256],
            &[1, 1, 1, 1],
            spec.num_classes,
            vb,
        )?),
        Arch::Resnet18 => Box::new(resnet::ResNet::resnet18(spec.stem, spec.num_classes, vb)?),
        Arch::EfficientnetLite0 => Box::new(efficientnet_lite::EfficientNetLite0::new(spec.num_classes, vb)?),
    })
}
