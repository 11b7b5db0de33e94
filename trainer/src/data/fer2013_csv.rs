//! FER2013 as Kaggle published it: `fer2013.csv` with columns `emotion,pixels,Usage`;
//! `pixels` holds 48x48 space-separated gray values, `Usage` is Training/PublicTest/PrivateTest.

use super::csv_util::{column, csv_error, field, line_of, open};
use super::dataset::{Dataset, Split};
use super::error::{DataError, Result};
use super::sample::{ImageRef, LabeledSample, Target};
use sitfer_contract::labels::Expression;
use std::path::Path;
use std::sync::Arc;

/// FER2013's emotion ids, in its own order: 0=Angry, 1=Disgust, 2=Fear, 3=Happy, 4=Sad,
/// 5=Surprise, 6=Neutral.
pub const FER2013_IDS: [Expression; 7] = [
    Expression::Angry,
    Expression::Disgust,
    Expression::Fear,
    Expression::Happy,
    Expression::Sad,
    Expression::Surprise,
    Expression::Neutral,
];

/// Parses a `pixels` field into a square gray image.
pub fn parse_pixels(raw: &str, path: &Path, line: usize) -> Result<(u32, Arc<[u8]>)> {
    let mut px = Vec::with_capacity(48 * 48);
    for (i, tok) in raw.split_ascii_whitespace().enumerate() {
        let v: u8 = tok.parse().map_err(|_| DataError::Field {
            path: path.to_path_buf(),
            line,
            field: "pixels".into(),
            message: format!("value #{i} `{tok}` is not an integer in 0..=255"),
        })?;
        px.push(v);
    }
    let side = (px.len() as f64).sqrt().round() as usize;
    if px.is_empty() || side * side != px.len() {
        return Err(DataError::Field {
            path: path.to_path_buf(),
            line,
            field: "pixels".into(),
            message: format!("{} values do not form a square image", px.len()),
        });
    }
    Ok((side as u32, px.into()))
}

/// Reads `fer2013.csv` (a file, or a folder holding it).
pub fn read_fer2013_csv(path: &Path) -> Result<Dataset> {
    let path = if path.is_dir() {
        path.join("fer2013.csv")
    } else {
        path.to_path_buf()
    };
    let mut rdr = open(&path, true)?;
    let headers = rdr.headers().map_err(|e| csv_error(&path, e))?.clone();
    let c_emotion = column(&headers, "emotion", &path)?;
    let c_pixels = column(&headers, "pixels", &path)?;
    let c_usage = column(&headers, "Usage", &path)?;
    let mut dataset = Dataset::default();
    for (row, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| csv_error(&path, e))?;
        let line = line_of(&rec);
        let raw_label = field(&rec, c_emotion, "emotion", &path)?;
        let class = raw_label
            .parse::<usize>()
            .ok()
            .and_then(|i| FER2013_IDS.get(i).copied())
            .ok_or_else(|| DataError::UnknownLabel {
                path: path.clone(),
                line,
                label: raw_label.to_string(),
            })?;
        let usage = field(&rec, c_usage, "Usage", &path)?;
        let split = Split::parse(usage).ok_or_else(|| DataError::Field {
            path: path.clone(),
            line,
            field: "Usage".into(),
            message: format!("`{usage}` is not Training, PublicTest or PrivateTest"),
        })?;
        let (side, pixels) = parse_pixels(field(&rec, c_pixels, "pixels", &path)?, &path, line)?;
        dataset.split_mut(split).push(LabeledSample {
            id: format!("fer2013.csv:{row}"),
            image: ImageRef::Gray {
                width: side,
                height: side,
                pixels,
            },
            target: Target::Hard(class),
        });
    }
    Ok(dataset)
}
