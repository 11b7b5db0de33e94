//! FER+ (Microsoft's relabelling of FER2013): `fer2013new.csv` with columns
//! `Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF`
//! (10 crowd votes per image). Pixels come from `fer2013.csv` (matched by row) or from an
//! ImageFolder of `ferNNNNNNN.png` files (matched by file name).
//!
//! Labels follow FER+'s own rules: votes of 1 are outliers and removed; the majority label is
//! the one with more than half of the remaining votes; `unknown` and `NF` majorities and
//! images without a majority are dropped. Soft targets are the remaining votes over the 7
//! classes, normalised.

use super::csv_util::{column, csv_error, field, line_of, open, parse_field};
use super::dataset::{Dataset, Split};
use super::error::{DataError, Result};
use super::fer2013_csv::read_fer2013_csv;
use super::image_folder::{is_image_file, sorted_entries};
use super::read_options::{ReadOptions, resolve_name};
use super::sample::{ImageRef, LabeledSample, Target};
use sitfer_contract::labels::NUM_CLASSES;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The vote columns, in file order.
pub const VOTE_COLUMNS: [&str; 10] = [
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
];

/// The FER+ target of one row of votes: `Ok(Some(index of the majority column))` or `None`
/// when there is no majority. Votes of 1 are removed first (FER+'s outlier rule).
pub fn majority(votes: &[u32; 10]) -> Option<usize> {
    // Summed in u64: a corrupt row of huge counts must not overflow (found by fuzzing).
    let cleaned: Vec<u64> = votes.iter().map(|&v| if v <= 1 { 0 } else { u64::from(v) }).collect();
    let total: u64 = cleaned.iter().sum();
    let (best, &max) = cleaned
        .iter()
        .enumerate()
        .max_by_key(|(i, v)| (**v, std::cmp::Reverse(*i)))?;
    (total > 0 && max * 2 > total).then_some(best)
}

fn find_votes_file(root: &Path) -> Option<PathBuf> {
    if root.is_file() {
        return Some(root.to_path_buf());
    }
    [
        root.join("fer2013new.csv"),
        root.join("ferplus_original/fer2013new.csv"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// Reads FER+ labels. `root` is a folder holding `fer2013new.csv` (directly or in
/// `ferplus_original/`) and either `fer2013.csv` or `<split>/<class>/ferNNNNNNN.png` images.
pub fn read_ferplus(root: &Path, opts: &ReadOptions) -> Result<Dataset> {
    let votes_path = find_votes_file(root)
        .ok_or_else(|| DataError::layout(root, "no fer2013new.csv here (nor in ferplus_original/)"))?;
    let base = if root.is_file() {
        root.parent().unwrap_or(Path::new("."))
    } else {
        root
    };
    // Pixels by row (fer2013.csv) or by file name (image folders).
    let csv_pixels = base.join("fer2013.csv");
    let mut by_row: Vec<ImageRef> = Vec::new();
    let mut by_name: HashMap<String, PathBuf> = HashMap::new();
    let pixels_from_csv = csv_pixels.is_file();
    if pixels_from_csv {
        let d = read_fer2013_csv(&csv_pixels)?;
        // Rows are numbered over the whole file; the reader keeps file order within each
        // split, so re-sort by the row in the id.
        let mut all: Vec<_> = d.train.into_iter().chain(d.val).chain(d.test).collect();
        all.sort_by_key(|s| {
            s.id.rsplit(':')
                .next()
                .and_then(|r| r.parse::<usize>().ok())
                .unwrap_or(0)
        });
        by_row = all.into_iter().map(|s| s.image).collect();
    } else {
        for split_dir in sorted_entries(base)? {
            if !split_dir.is_dir() || Split::parse(&split_dir.file_name().unwrap().to_string_lossy()).is_none() {
                continue;
            }
            for class_dir in sorted_entries(&split_dir)? {
                if !class_dir.is_dir() {
                    continue;
                }
                for f in sorted_entries(&class_dir)? {
                    if is_image_file(&f) {
                        by_name.insert(f.file_name().unwrap().to_string_lossy().to_string(), f);
                    }
                }
            }
        }
        if by_name.is_empty() {
            return Err(DataError::layout(
                base,
                "FER+ needs pixels: neither fer2013.csv nor <split>/<class>/fer*.png images found",
            ));
        }
    }

    let mut rdr = open(&votes_path, true)?;
    let headers = rdr.headers().map_err(|e| csv_error(&votes_path, e))?.clone();
    let c_usage = column(&headers, "Usage", &votes_path)?;
    let c_name = column(&headers, "Image name", &votes_path)?;
    let c_votes: Vec<usize> = VOTE_COLUMNS
        .iter()
        .map(|n| column(&headers, n, &votes_path))
        .collect::<Result<_>>()?;
    let mut dataset = Dataset::default();
    for (row, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| csv_error(&votes_path, e))?;
        let line = line_of(&rec);
        let usage = field(&rec, c_usage, "Usage", &votes_path)?;
        let split = Split::parse(usage).ok_or_else(|| DataError::Field {
            path: votes_path.clone(),
            line,
            field: "Usage".into(),
            message: format!("`{usage}` is not Training, PublicTest or PrivateTest"),
        })?;
        let name = field(&rec, c_name, "Image name", &votes_path)?.to_string();
        let mut votes = [0u32; 10];
        for (k, &c) in c_votes.iter().enumerate() {
            votes[k] = parse_field(&rec, c, VOTE_COLUMNS[k], &votes_path)?;
        }
        if name.is_empty() {
            // FER+ removed this image (no face or broken).
            dataset.dropped.add("removed by FER+");
            continue;
        }
        let image = if pixels_from_csv {
            match by_row.get(row) {
                Some(img) => img.clone(),
                None => {
                    return Err(DataError::Parse {
                        path: votes_path.clone(),
                        line,
                        message: format!("row {row} has no pixels in {}", csv_pixels.display()),
                    });
                }
            }
        } else {
            match by_name.get(&name) {
                Some(p) => ImageRef::File {
                    path: p.clone(),
                    crop: None,
                },
                None => {
                    dataset.dropped.add("image file not present");
                    continue;
                }
            }
        };
        let Some(best) = majority(&votes) else {
            dataset.dropped.add("no FER+ majority");
            continue;
        };
        if best >= 8 {
            // FER+ itself discards unknown / not-a-face majorities: they are not expressions.
            dataset.dropped.add("FER+ majority unknown or not-a-face");
            continue;
        }
        let Some(class) = resolve_name(VOTE_COLUMNS[best], &votes_path, line, opts, &mut dataset.dropped)? else {
            continue;
        };
        let target = if opts.soft_labels {
            let mut p = [0f32; NUM_CLASSES];
            for (k, &v) in votes.iter().enumerate().take(7) {
                if v > 1 {
                    // The first 7 vote columns are all in the set; map each through the table.
                    if let Some(c) = resolve_name(VOTE_COLUMNS[k], &votes_path, line, opts, &mut Default::default())? {
                        p[c.index()] += v as f32;
                    }
                }
            }
            let s: f32 = p.iter().sum();
            p.iter_mut().for_each(|x| *x /= s);
            Target::Soft(p)
        } else {
            Target::Hard(class)
        };
        dataset.split_mut(split).push(LabeledSample {
            id: format!("ferplus:{name}"),
            image,
            target,
        });
    }
    if dataset.train.is_empty() && dataset.val.is_empty() && dataset.test.is_empty() {
        let source = if pixels_from_csv {
            format!("{} ({} rows)", csv_pixels.display(), by_row.len())
        } else {
            format!(
                "the {} images under {} (FER+ names them `ferNNNNNNN.png`)",
                by_name.len(),
                base.display()
            )
        };
        return Err(DataError::Layout {
            path: votes_path,
            message: format!(
                "no FER+ row could be paired with pixels from {source}; dropped: {:?}",
                dataset.dropped.reasons
            ),
        });
    }
    Ok(dataset)
}

#[cfg(test)]
mod tests {
    use super::majority;

    #[test]
    fn majority_follows_ferplus_rules() {
        // 4 neutral of 10 is no majority.
        assert_eq!(majority(&[4, 0, 0, 1, 3, 2, 0, 0, 0, 0]), None);
        // 5 of 9 after removing the single vote.
        assert_eq!(majority(&[5, 0, 0, 3, 1, 0, 0, 0, 1, 0]), Some(0));
        assert_eq!(majority(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(majority(&[0, 0, 0, 0, 0, 0, 0, 0, 10, 0]), Some(8));
    }

    /// Fuzzing regression: counts near u32::MAX overflowed the vote total.
    #[test]
    fn huge_vote_counts_do_not_overflow() {
        assert_eq!(majority(&[u32::MAX, u32::MAX, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(majority(&[u32::MAX, 2, 0, 0, 0, 0, 0, 0, 0, 0]), Some(0));
        assert_eq!(majority(&[u32::MAX; 10]), None);
    }
}
