//! The `sitfer-train` subcommands, one module each: their arguments and the call into the
//! library that does the work.

pub mod bench;
pub mod distill;
pub mod eval;
pub mod export;
pub mod prototypes;
pub mod split;
pub mod ssl_args;
pub mod train;

use clap::Args;
use sitfer_trainer::data::{Format, OutsidePolicy, ReadOptions, data_root};
use std::path::PathBuf;

#[derive(Args, Clone)]
pub struct DataArgs {
    /// Dataset root (default: $SITFER_DATA/fer2013, else ../shared/data/fer2013).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Dataset format.
    #[arg(long, value_enum, default_value = "fer2013-folder")]
    pub format: Format,
    /// Labels outside the 7-class set (contempt…): drop the samples or refuse the dataset.
    #[arg(long, value_enum, default_value = "drop")]
    pub outside_labels: OutsidePolicy,
    /// FER+: train on vote distributions instead of majority labels.
    #[arg(long)]
    pub soft_labels: bool,
}

impl DataArgs {
    pub fn root(&self) -> PathBuf {
        match &self.data {
            Some(p) => p.clone(),
            None => data_root(None).join("fer2013"),
        }
    }
    pub fn read_options(&self) -> ReadOptions {
        ReadOptions {
            outside: self.outside_labels,
            soft_labels: self.soft_labels,
        }
    }
}
