//! Distillation: a student trained on a teacher's fused pseudo-labels p̂.
//!
//! The teacher (any trained run, or the mean of several) scores every training face once, before training, with the same
//! fusion it was trained with (p_sem, p_text from its projection head and prototypes, p_ins from
//! a buffer of its own embeddings of the labeled faces). The student then trains on soft targets:
//! a labeled face's target is (y + w·p̂) / (1 + w) — cross-entropy to y plus w × KL to p̂, up to
//! the factor 1 + w — and an unlabeled face's target is p̂ alone. With a projection head the
//! student's L_t is the cross-entropy of its text similarities to the same targets, which keeps
//! its embedding aligned to the text prototypes for the runtime's p_text and p_ins.

mod targets;
mod teacher;

pub use crate::train::config::DistillConfig;
pub use targets::{TEACHER_CACHE, mix_labeled, relabel};
pub use teacher::Teacher;

use crate::train::config::TrainConfig;
use crate::train::error::TrainError;
use crate::train::run::{RunOptions, RunSummary, train_with_targets};

/// Trains the student `cfg` describes (its `distill` names the teacher): the shared loop, with
/// the prepared faces' targets replaced by the teacher's p̂ before the first step.
pub fn train(cfg: &TrainConfig, opts: &RunOptions) -> Result<RunSummary, TrainError> {
    let Some(d) = &cfg.distill else {
        return Err(TrainError::Config("distill::train: the config names no teacher".into()));
    };
    train_with_targets(cfg, opts, |data, device, run_dir| {
        let teachers = std::iter::once(&d.teacher)
            .chain(&d.more_teachers)
            .map(|t| Teacher::load(t, device))
            .collect::<Result<Vec<_>, _>>()?;
        let cache = run_dir.join(TEACHER_CACHE);
        relabel(data, d, &teachers, cfg.model.input_size, Some(&cache))
    })
}
