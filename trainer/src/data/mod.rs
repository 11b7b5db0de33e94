//! Data layer: dataset readers, the semi-supervised split, decoding, augmentation and batch
//! loading.

pub mod affectnet;
pub mod augment;
pub mod csv_util;
pub mod dataset;
pub mod decode;
pub mod error;
pub mod fer2013_csv;
pub mod ferplus;
pub mod image_folder;
pub mod loader;
pub mod mix;
pub mod rafdb;
pub mod read_options;
pub mod sample;
pub mod split;

pub use dataset::{Dataset, DropReport, Split};
pub use error::DataError;
pub use read_options::{OutsidePolicy, ReadOptions};
pub use sample::{ImageRef, LabeledSample, Target, UnlabeledSample};

use std::path::{Path, PathBuf};

/// The dataset formats sitfer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `<root>/<split>/<class>/*.{png,jpg,tiff}`.
    ImageFolder,
    /// FER2013 as PNG folders (`train/angry/fer0000000.png`, …): an ImageFolder.
    Fer2013Folder,
    /// Kaggle's `fer2013.csv`.
    Fer2013Csv,
    /// FER+ votes (`fer2013new.csv`) over FER2013 pixels (CSV or PNG folders).
    Ferplus,
    /// RAF-DB basic.
    Rafdb,
    /// AffectNet (`training.csv` / `validation.csv`).
    Affectnet,
    /// SFEW 2.0 (`Train/`, `Val/` class folders).
    Sfew,
}

/// Reads a dataset in `format` from `root`.
pub fn read_dataset(format: Format, root: &Path, opts: &ReadOptions) -> Result<Dataset, DataError> {
    if !root.exists() {
        return Err(DataError::layout(root, "does not exist"));
    }
    match format {
        Format::ImageFolder | Format::Fer2013Folder | Format::Sfew => image_folder::read_image_folder(root, opts),
        Format::Fer2013Csv => fer2013_csv::read_fer2013_csv(root),
        Format::Ferplus => ferplus::read_ferplus(root, opts),
        Format::Rafdb => rafdb::read_rafdb(root),
        Format::Affectnet => affectnet::read_affectnet(root, opts),
    }
}

/// The data root: an explicit path, else `$SITFER_DATA`, else `../shared/data`.
pub fn data_root(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    std::env::var_os("SITFER_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/data"))
}
