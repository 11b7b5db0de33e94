//! `sitfer-train split`: draw a labeled/unlabeled split and save its manifest.

use super::DataArgs;
use anyhow::{Context, Result};
use clap::Args;
use sitfer_trainer::data::read_dataset;
use sitfer_trainer::data::split::{LabelBudget, semi_supervised_split};
use std::path::PathBuf;

#[derive(Args)]
pub struct SplitArgs {
    #[command(flatten)]
    data: DataArgs,
    #[arg(long)]
    labels_per_class: LabelBudget,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: SplitArgs) -> Result<()> {
    let root = a.data.root();
    let dataset = read_dataset(a.data.format, &root, &a.data.read_options())?;
    let split = semi_supervised_split(&dataset.train, a.labels_per_class, a.seed);
    split
        .manifest
        .save(&a.out)
        .with_context(|| a.out.display().to_string())?;
    println!(
        "{} labeled, {} unlabeled -> {}",
        split.labeled.len(),
        split.unlabeled.len(),
        a.out.display()
    );
    Ok(())
}
