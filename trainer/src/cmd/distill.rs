//! `sitfer-train distill`: a student trained on a teacher's fused pseudo-labels.

use super::train::{TrainArgs, run_config, train_config};
use anyhow::{Result, bail};
use clap::Args;
use sitfer_trainer::train::checkpoint::{self, Which};
use sitfer_trainer::train::config::Method;
use std::path::PathBuf;

#[derive(Args)]
pub struct DistillArgs {
    /// The teacher: a run directory (its best checkpoint) or a checkpoint directory. Given
    /// more than once, the teachers' p̂ is averaged face by face (an ensemble; the first one's
    /// split is the default `--split`).
    #[arg(long, required = true)]
    teacher: Vec<PathBuf>,
    /// w: a labeled face's target is (label + w·p̂) / (1 + w); unlabeled faces learn p̂ alone.
    #[arg(long, default_value_t = 1.0)]
    kd_weight: f64,
    /// The teacher scores each face and its mirror image and teaches the mean of the two p̂.
    #[arg(long)]
    teacher_mirror: bool,
    /// The student's training options (`--split` defaults to the teacher's split, so both see
    /// the same labeled faces).
    #[command(flatten)]
    train: TrainArgs,
}

/// `sitfer-train distill`: the student's run with the teacher's p̂ as targets.
pub fn run(a: DistillArgs) -> Result<()> {
    if !(a.kd_weight >= 0.0 && a.kd_weight.is_finite()) {
        bail!("--kd-weight must be a finite number ≥ 0");
    }
    let teacher = checkpoint::resolve(&a.teacher[0], Which::Best)?;
    let more_teachers = a.teacher[1..]
        .iter()
        .map(|t| checkpoint::resolve(t, Which::Best))
        .collect::<Result<Vec<_>, _>>()?;
    let run_dir = checkpoint::run_dir_of(&teacher);
    let mut t = a.train;
    if t.split.is_none() {
        let split = run_dir.join("split.json");
        if !split.is_file() {
            bail!("{}: the teacher's split is missing; pass --split", split.display());
        }
        t.split = Some(split);
    }
    let teacher_has_text = run_dir.join("prototypes.json").is_file();
    let method = t.method.unwrap_or(if teacher_has_text {
        Method::Sitfer
    } else {
        Method::Supervised
    });
    if method == Method::Fixmatch {
        bail!("--method fixmatch: a distilled student learns p̂, not its own pseudo-labels (use supervised or sitfer)");
    }
    let mut cfg = train_config(&t, method)?;
    cfg.distill = Some(sitfer_trainer::distill::DistillConfig {
        teacher,
        kd_weight: a.kd_weight,
        teacher_mirror: a.teacher_mirror,
        more_teachers,
    });
    run_config(&cfg, &t)
}
