//! `sitfer-train export`: a checkpoint as a model bundle.

use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CalibKind {
    /// Observed minimum and maximum of each activation.
    Minmax,
    /// `--percentile` of each activation's values (outliers clipped).
    Percentile,
}

#[derive(Args)]
pub struct ExportArgs {
    /// Run directory (best checkpoint) or checkpoint directory.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Bundle directory to write (replaced atomically).
    #[arg(long)]
    out: PathBuf,
    /// Also write the int8 (QOperator) model.
    #[arg(long)]
    int8: bool,
    /// Folder of face images for int8 calibration (default: the run's labeled split).
    #[arg(long)]
    calib: Option<PathBuf>,
    #[arg(long, default_value_t = 300)]
    calib_images: usize,
    #[arg(long, value_enum, default_value = "minmax")]
    calib_method: CalibKind,
    #[arg(long, default_value_t = 99.99)]
    percentile: f64,
    /// Seed instance buffer entries per class (from the labeled split).
    #[arg(long, default_value_t = 32)]
    per_class: usize,
    /// Dataset root, if it moved since training.
    #[arg(long)]
    data: Option<PathBuf>,
}

pub fn run(a: ExportArgs) -> Result<()> {
    use sitfer_trainer::export::bundle::{ExportOptions, export_checkpoint};
    use sitfer_trainer::export::quantize::CalibMethod;
    let summary = export_checkpoint(&ExportOptions {
        checkpoint: a.checkpoint.clone(),
        out: a.out.clone(),
        calib: a.calib,
        int8: a.int8,
        calib_images: a.calib_images,
        calib_method: match a.calib_method {
            CalibKind::Minmax => CalibMethod::MinMax,
            CalibKind::Percentile => CalibMethod::Percentile(a.percentile),
        },
        per_class: a.per_class,
        data: a.data,
    })
    .with_context(|| format!("exporting {}", a.checkpoint.display()))?;
    println!(
        "{}",
        serde_json::json!({
            "bundle": a.out,
            "fp32_bytes": summary.fp32_bytes,
            "int8_bytes": summary.int8_bytes,
            "qlinear_convs": summary.qlinear_convs,
            "embedding_dim": summary.manifest.embedding_dim,
            "prototypes": summary.manifest.prototypes.is_some(),
            "buffer": summary.manifest.buffer.path,
        })
    );
    Ok(())
}
