//! Options shared by all dataset readers, and the one place where a label name becomes a class.

use super::dataset::DropReport;
use super::error::{DataError, Result};
use sitfer_contract::labels::{Expression, LabelMeaning, lookup_label_name};
use std::path::Path;

/// What to do with a sample whose label is known but outside the 7-class set (contempt…).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutsidePolicy {
    /// Skip the sample and count it in the drop report.
    #[default]
    Drop,
    /// Stop with an error naming the file and line.
    Refuse,
}

/// Reader options.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    pub outside: OutsidePolicy,
    /// FER+: use the vote distribution as a soft target instead of the majority label.
    pub soft_labels: bool,
}

/// Turns a label's meaning into a class, applying the outside-label policy.
/// `Ok(None)` means: drop this sample (already counted in `report`).
pub fn resolve_meaning(
    meaning: Option<LabelMeaning>,
    raw: &str,
    path: &Path,
    line: usize,
    opts: &ReadOptions,
    report: &mut DropReport,
) -> Result<Option<Expression>> {
    match meaning {
        Some(LabelMeaning::Class(e)) => Ok(Some(e)),
        Some(LabelMeaning::OutsideSet(o)) => match opts.outside {
            OutsidePolicy::Drop => {
                report.add(&format!("label {}", o.name()));
                Ok(None)
            }
            OutsidePolicy::Refuse => Err(DataError::OutsideLabel {
                path: path.to_path_buf(),
                line,
                label: raw.to_string(),
            }),
        },
        None => Err(DataError::UnknownLabel {
            path: path.to_path_buf(),
            line,
            label: raw.to_string(),
        }),
    }
}

/// Resolves a label given by name.
pub fn resolve_name(
    raw: &str,
    path: &Path,
    line: usize,
    opts: &ReadOptions,
    report: &mut DropReport,
) -> Result<Option<Expression>> {
    resolve_meaning(lookup_label_name(raw), raw, path, line, opts, report)
}
