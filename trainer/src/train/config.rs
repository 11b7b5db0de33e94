//! The typed configuration of a training run (saved in every checkpoint).

use crate::data::augment::{AugmentConfig, Normalization};
use crate::data::split::LabelBudget;
use crate::data::{Format, OutsidePolicy};
use crate::method::SslConfig;
use crate::model::ModelSpec;
use crate::text::EncoderKind;
use crate::train::optimizer::OptimizerConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Training method. The semi-supervised methods share this trainer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Cross-entropy on the labeled split only.
    Supervised,
    /// FixMatch: confident p_sem of the weak view supervises the strong view.
    Fixmatch,
    /// SIT-FER: fused semantic + text + instance pseudo-labels, text co-supervision.
    Sitfer,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Supervised => "supervised",
            Method::Fixmatch => "fixmatch",
            Method::Sitfer => "sitfer",
        }
    }
}

/// Where the text prototypes come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextConfig {
    /// The prototype cache (rebuilt with the encoder when stale).
    pub prototypes: PathBuf,
    pub encoder_dir: PathBuf,
    pub encoder_kind: EncoderKind,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataConfig {
    pub root: PathBuf,
    pub format: Format,
    pub budget: LabelBudget,
    pub outside: OutsidePolicy,
    pub soft_labels: bool,
    /// Fraction of train moved to validation when the dataset has none (RAF-DB).
    pub val_fraction: f64,
    /// A split manifest to reuse instead of drawing one.
    pub split_manifest: Option<PathBuf>,
    /// Share of each class's labeled faces held out for calibrating the fusion (never trained
    /// on); 0: none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub calibration_fraction: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    pub method: Method,
    pub model: ModelSpec,
    pub data: DataConfig,
    pub norm: Normalization,
    pub augment: AugmentConfig,
    pub optimizer: OptimizerConfig,
    pub lr: f64,
    pub cosine: bool,
    pub warmup_steps: u64,
    pub batch_size: usize,
    /// Total optimizer steps; 0 = derive from `epochs` over the labeled split.
    pub steps: u64,
    /// Epochs over the labeled split (used when `steps` is 0).
    pub epochs: f64,
    /// Steps between evaluations; 0 = once per labeled epoch.
    pub eval_every: u64,
    pub seed: u64,
    pub workers: usize,
    pub pretrained: Option<PathBuf>,
    pub device: String,
    /// Semi-supervised settings (`None` for supervised runs).
    #[serde(default)]
    pub ssl: Option<SslConfig>,
    /// Text prototypes (methods that use text).
    #[serde(default)]
    pub text: Option<TextConfig>,
    /// Distillation from a teacher's fused p̂ (`sitfer-train distill`); absent in other runs'
    /// configs so that their checkpoints compare equal on resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<DistillConfig>,
    /// Mixup / CutMix / label smoothing of the labeled batch (supervised runs only); absent when
    /// off, so earlier runs' checkpoints compare equal on resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mix: Option<crate::data::mix::BatchMix>,
}

/// What a distilled run was taught by (saved in its checkpoints; the teaching itself is
/// `crate::distill`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillConfig {
    /// The teacher's checkpoint directory (resolved from a run directory at the start).
    pub teacher: PathBuf,
    /// w: the weight of KL to p̂ beside the label on labeled faces.
    pub kd_weight: f64,
    /// The teacher's p̂ is the mean of its p̂ on the face and on the face's mirror image (a
    /// two-view ensemble: a stronger teacher for the cost of scoring every face twice, once).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub teacher_mirror: bool,
    /// Further teachers' checkpoint directories: the faces' p̂ is the mean over `teacher` and
    /// these (an ensemble of teachers trained differently teaches softer, better-calibrated
    /// targets than either). Empty for one teacher, so earlier runs' configs compare equal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_teachers: Vec<PathBuf>,
}
