//! `sitfer-train eval`: a checkpoint's accuracy on a labeled split.

use anyhow::{Context, Result, bail};
use clap::Args;
use sitfer_trainer::data::{Format, ReadOptions, read_dataset};
use sitfer_trainer::evaluate::{mean_rows, mirrored, predict};
use sitfer_trainer::metrics::EvalReport;
use sitfer_trainer::model::build;
use sitfer_trainer::train::checkpoint::{self, Which};
use sitfer_trainer::train::prepare::{labeled_store, parse_device, set_vars};
use std::path::PathBuf;

#[derive(Args)]
pub struct EvalArgs {
    /// A run directory (its best checkpoint) or a checkpoint directory.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Dataset to evaluate on (default: the one the checkpoint was trained on).
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Split: val or test.
    #[arg(long, default_value = "val")]
    split: String,
    /// Use the latest checkpoint of a run instead of the best.
    #[arg(long)]
    latest: bool,
    /// Score each face as the mean of the model's probabilities on it and on its mirror image
    /// (as the runtime's `--mirror` does).
    #[arg(long)]
    mirror: bool,
    /// Write the report (JSON) and a confusion-matrix PNG beside this path stem.
    #[arg(long)]
    report: Option<PathBuf>,
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(a: EvalArgs) -> Result<()> {
    let device = parse_device(&a.device)?;
    let which = if a.latest { Which::Latest } else { Which::Best };
    let dir = checkpoint::resolve(&a.checkpoint, which)?;
    let ck = checkpoint::load(&dir, &device)?;
    let cfg = &ck.state.config;
    let varmap = candle_nn::VarMap::new();
    let model = build(
        &cfg.model,
        candle_nn::VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &device),
    )?;
    set_vars(&varmap, &ck.weights, &dir)?;
    let root = a.data.clone().unwrap_or_else(|| cfg.data.root.clone());
    let format = a.format.unwrap_or(cfg.data.format);
    let opts = ReadOptions {
        outside: cfg.data.outside,
        soft_labels: false,
    };
    let mut dataset = read_dataset(format, &root, &opts)?;
    if a.data.is_none() {
        // The same carving as in training, so "val" means the same samples.
        sitfer_trainer::data::split::carve_validation(&mut dataset, cfg.data.val_fraction, cfg.seed);
    }
    let samples = match a.split.as_str() {
        "val" => &dataset.val,
        "test" => &dataset.test,
        "train" => &dataset.train,
        other => bail!("--split `{other}`: expected val, test or train"),
    };
    if samples.is_empty() {
        bail!("{}: split `{}` is empty", root.display(), a.split);
    }
    let (store, skipped) = labeled_store(samples, cfg.model.input_size, &a.split);
    let mut preds = predict(model.as_ref(), &store, cfg.norm, cfg.batch_size, &device)?;
    if a.mirror {
        let m = predict(model.as_ref(), &mirrored(&store), cfg.norm, cfg.batch_size, &device)?;
        preds.probs = mean_rows(&[&preds.probs, &m.probs]);
    }
    let report = EvalReport::from_confusion(preds.confusion(&store));
    println!(
        "checkpoint {} (step {}){}\ndata {} [{}]{}",
        dir.display(),
        ck.state.step,
        if a.mirror { ", mirror ensemble" } else { "" },
        root.display(),
        a.split,
        if skipped.is_empty() {
            String::new()
        } else {
            format!(" ({} unreadable images skipped)", skipped.len())
        }
    );
    print!("{}", report.to_text());
    if let Some(stem) = a.report {
        let json = stem.with_extension("json");
        sitfer_contract::file_write::atomic_write_bytes(&json, &serde_json::to_vec_pretty(&report)?)
            .with_context(|| json.display().to_string())?;
        let png = stem.with_extension("png");
        sitfer_trainer::plot::confusion_matrix(
            &png,
            &format!("{} {}: acc {:.2}%", root.display(), a.split, 100.0 * report.accuracy),
            &report.confusion,
        )
        .map_err(|e| anyhow::anyhow!("{}: {e}", png.display()))?;
        println!("wrote {} and {}", json.display(), png.display());
    }
    Ok(())
}
