//! RAF-DB basic: `EmoLabel/list_patition_label.txt` (sic, RAF-DB's spelling) with lines
//! `train_00001.jpg 5`, images in `Image/aligned/train_00001_aligned.jpg`.
//! Ids: 1=Surprise, 2=Fear, 3=Disgust, 4=Happiness, 5=Sadness, 6=Anger, 7=Neutral — the
//! canonical order shifted by one. RAF-DB has train and test; the trainer carves a validation
//! split from train (model selection never looks at test).

use super::dataset::{Dataset, Split};
use super::error::{DataError, Result};
use super::sample::{ImageRef, LabeledSample, Target};
use sitfer_contract::labels::Expression;
use std::path::Path;

/// RAF-DB basic ids 1..=7 in canonical order.
pub const RAFDB_IDS: [Expression; 7] = [
    Expression::Surprise,
    Expression::Fear,
    Expression::Disgust,
    Expression::Happy,
    Expression::Sad,
    Expression::Angry,
    Expression::Neutral,
];

pub fn read_rafdb(root: &Path) -> Result<Dataset> {
    let list = root.join("EmoLabel/list_patition_label.txt");
    let text = std::fs::read_to_string(&list).map_err(|e| DataError::io(&list, e))?;
    let aligned = root.join("Image/aligned");
    if !aligned.is_dir() {
        return Err(DataError::layout(
            root,
            "missing Image/aligned/ (RAF-DB basic aligned faces)",
        ));
    }
    let mut dataset = Dataset::default();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(name), Some(label), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(DataError::Parse {
                path: list.clone(),
                line: line_no,
                message: format!("expected `<image> <label>`, got `{line}`"),
            });
        };
        let class = label
            .parse::<usize>()
            .ok()
            .and_then(|id| id.checked_sub(1))
            .and_then(|i| RAFDB_IDS.get(i).copied())
            .ok_or_else(|| DataError::UnknownLabel {
                path: list.clone(),
                line: line_no,
                label: label.to_string(),
            })?;
        let split = if name.starts_with("train_") {
            Split::Train
        } else if name.starts_with("test_") {
            Split::Test
        } else {
            return Err(DataError::Field {
                path: list.clone(),
                line: line_no,
                field: "image".into(),
                message: format!("`{name}` starts with neither train_ nor test_"),
            });
        };
        let stem = name.rsplit_once('.').map(|(s, _)| s).unwrap_or(name);
        let path = aligned.join(format!("{stem}_aligned.jpg"));
        dataset.split_mut(split).push(LabeledSample {
            id: format!("rafdb:{name}"),
            image: ImageRef::File { path, crop: None },
            target: Target::Hard(class),
        });
    }
    Ok(dataset)
}
