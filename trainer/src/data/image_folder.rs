//! ImageFolder: `<root>/<split>/<class>/*.{png,jpg,jpeg,tif,tiff}`.
//!
//! Also the layout of FER2013 as PNG folders and of SFEW 2.0 (`Train/Angry/…`, `Val/…`):
//! split and class folder names are matched through the explicit tables, case-insensitively.

use super::dataset::{Dataset, DropReport, Split};
use super::error::{DataError, Result};
use super::read_options::{ReadOptions, resolve_meaning};
use super::sample::{ImageRef, LabeledSample, Target};
use sitfer_contract::labels::{LabelMeaning, lookup_label_name};
use std::fs;
use std::path::{Path, PathBuf};

pub use sitfer_contract::image_files::is_image_file;

/// Sorted directory entries (sorting keeps every reader deterministic across file systems).
pub fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|err| DataError::io(dir, err)))
        .collect::<Result<_>>()?;
    v.sort();
    Ok(v)
}

/// Reads one `<class>/*` folder into labeled samples; `id_prefix` is the split folder name.
pub fn read_class_folders(
    split_dir: &Path,
    root: &Path,
    opts: &ReadOptions,
    dataset: &mut Dataset,
    split: Split,
) -> Result<()> {
    for class_dir in sorted_entries(split_dir)? {
        if !class_dir.is_dir() {
            continue;
        }
        let name = class_dir.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with('.') {
            // Hidden folders (.ipynb_checkpoints, .DS_Store dirs…) are not classes.
            continue;
        }
        // Everything named like an image, folders included: what cannot be decoded is listed
        // as skipped rather than passed over in silence.
        let images: Vec<PathBuf> = sorted_entries(&class_dir)?
            .into_iter()
            .filter(|p| is_image_file(p))
            .collect();
        let class = match lookup_label_name(&name) {
            None => {
                return Err(DataError::layout(
                    &class_dir,
                    format!("class folder `{name}` is not a known expression name"),
                ));
            }
            Some(LabelMeaning::Class(c)) => c,
            Some(meaning) => {
                // A folder outside the set: refuse, or drop all its images and count them.
                let mut one = DropReport::default();
                resolve_meaning(Some(meaning), &name, &class_dir, 0, opts, &mut one).map_err(|_| {
                    DataError::layout(
                        &class_dir,
                        format!(
                            "class folder `{name}` is not in the 7-class set; pass `--outside-labels drop` to skip it"
                        ),
                    )
                })?;
                for (reason, _) in one.reasons {
                    *dataset.dropped.reasons.entry(reason).or_default() += images.len();
                }
                continue;
            }
        };
        for file in images {
            let id = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .to_string_lossy()
                .replace('\\', "/");
            dataset.split_mut(split).push(LabeledSample {
                id,
                image: ImageRef::File { path: file, crop: None },
                target: Target::Hard(class),
            });
        }
    }
    Ok(())
}

/// Reads `<root>/<split>/<class>/*`.
pub fn read_image_folder(root: &Path, opts: &ReadOptions) -> Result<Dataset> {
    let mut dataset = Dataset::default();
    let mut found = false;
    for dir in sorted_entries(root)? {
        if !dir.is_dir() {
            continue;
        }
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let Some(split) = Split::parse(&name) else {
            continue;
        };
        found = true;
        read_class_folders(&dir, root, opts, &mut dataset, split)?;
    }
    if !found {
        return Err(DataError::layout(
            root,
            "no split folder found: expected `train/`, `val/` (or `valid`, `validation`, `PublicTest`) and optionally `test/`, each holding one folder per class",
        ));
    }
    if dataset.train.is_empty() && dataset.val.is_empty() && dataset.test.is_empty() {
        return Err(DataError::layout(root, "no images found under the split folders"));
    }
    Ok(dataset)
}
