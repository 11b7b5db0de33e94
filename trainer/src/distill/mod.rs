//! Distillation: a student trained on a teacher's fused pseudo-labels p̂.
//!
//! The teacher (any trained run) scores every training face once, before training, with the same
//! fusion it was trained with (p_sem, p_text from its projection head and prototypes, p_ins from
//! a buffer of its own embeddings of the labeled faces). The student then trains on soft targets:
//! a labeled face's target is (y + w·p̂) / (1 + w) — cross-entropy to y plus w × KL to p̂, up to
//! the factor 1 + w — and an unlabeled face's target is p̂ alone. With a projection head the
//! student's L_t is the cross-entropy of its text similarities to the same targets, which keeps
//! its embedding aligned to the text prototypes for the runtime's p_text and p_ins.

mod targets;
mod teacher;

pub use targets::{TEACHER_CACHE, mix_labeled, relabel};
pub use teacher::Teacher;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What a distilled run was taught by (saved in its checkpoints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillConfig {
    /// The teacher's checkpoint directory (resolved from a run directory at the start).
    pub teacher: PathBuf,
    /// w: the weight of KL to p̂ beside the label on labeled faces.
    pub kd_weight: f64,
}
