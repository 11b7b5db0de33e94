//! AffectNet: `training.csv` / `validation.csv` with columns `subDirectory_filePath, face_x,
//! face_y, face_width, face_height, facial_landmarks, expression, valence, arousal`; images under
//! `Manually_Annotated_Images/` (or the root). Ids: 0=Neutral, 1=Happy, 2=Sad, 3=Surprise, 4=Fear,
//! 5=Disgust, 6=Anger, 7=Contempt, 8=None, 9=Uncertain, 10=No-Face.
//!
//! The 7-class variant has ids 0–6; the 8-class one adds contempt, which follows the
//! outside-label policy. Ids 8–10 are not expressions and are always dropped (and counted).

use super::csv_util::{column, csv_error, field, line_of, open, parse_field};
use super::dataset::{Dataset, Split};
use super::error::{DataError, Result};
use super::read_options::{ReadOptions, resolve_meaning};
use super::sample::{FaceBox, ImageRef, LabeledSample, Target};
use sitfer_contract::labels::{Expression, LabelMeaning, OutsideLabel};
use std::path::Path;

pub fn affectnet_meaning(id: usize) -> Option<LabelMeaning> {
    use Expression::*;
    use LabelMeaning::{Class, OutsideSet};
    Some(match id {
        0 => Class(Neutral),
        1 => Class(Happy),
        2 => Class(Sad),
        3 => Class(Surprise),
        4 => Class(Fear),
        5 => Class(Disgust),
        6 => Class(Angry),
        7 => OutsideSet(OutsideLabel::Contempt),
        8 => OutsideSet(OutsideLabel::NoFace),
        9 => OutsideSet(OutsideLabel::Uncertain),
        10 => OutsideSet(OutsideLabel::NotAFace),
        _ => return None,
    })
}

fn read_file(root: &Path, csv_path: &Path, split: Split, opts: &ReadOptions, dataset: &mut Dataset) -> Result<()> {
    let images = if root.join("Manually_Annotated_Images").is_dir() {
        root.join("Manually_Annotated_Images")
    } else {
        root.to_path_buf()
    };
    let mut rdr = open(csv_path, true)?;
    let headers = rdr.headers().map_err(|e| csv_error(csv_path, e))?.clone();
    let c_path = column(&headers, "subDirectory_filePath", csv_path)?;
    let c_x = column(&headers, "face_x", csv_path)?;
    let c_y = column(&headers, "face_y", csv_path)?;
    let c_w = column(&headers, "face_width", csv_path)?;
    let c_h = column(&headers, "face_height", csv_path)?;
    let c_expr = column(&headers, "expression", csv_path)?;
    for rec in rdr.records() {
        let rec = rec.map_err(|e| csv_error(csv_path, e))?;
        let line = line_of(&rec);
        let rel = field(&rec, c_path, "subDirectory_filePath", csv_path)?;
        let id: usize = parse_field(&rec, c_expr, "expression", csv_path)?;
        let meaning = affectnet_meaning(id);
        if id >= 8 && meaning.is_some() {
            dataset.dropped.add("AffectNet none/uncertain/no-face");
            continue;
        }
        let Some(class) = resolve_meaning(meaning, &id.to_string(), csv_path, line, opts, &mut dataset.dropped)? else {
            continue;
        };
        let crop = FaceBox {
            x: parse_field(&rec, c_x, "face_x", csv_path)?,
            y: parse_field(&rec, c_y, "face_y", csv_path)?,
            width: parse_field(&rec, c_w, "face_width", csv_path)?,
            height: parse_field(&rec, c_h, "face_height", csv_path)?,
        };
        for (value, name) in [(crop.width, "face_width"), (crop.height, "face_height")] {
            if value == 0 {
                return Err(DataError::Field {
                    path: csv_path.to_path_buf(),
                    line,
                    field: name.into(),
                    message: "empty face box (0 pixels)".into(),
                });
            }
        }
        dataset.split_mut(split).push(LabeledSample {
            id: format!("affectnet:{rel}"),
            image: ImageRef::File {
                path: images.join(rel),
                crop: Some(crop),
            },
            target: Target::Hard(class),
        });
    }
    Ok(())
}

pub fn read_affectnet(root: &Path, opts: &ReadOptions) -> Result<Dataset> {
    let mut dataset = Dataset::default();
    let mut any = false;
    for (name, split) in [("training.csv", Split::Train), ("validation.csv", Split::Val)] {
        let p = root.join(name);
        if p.is_file() {
            any = true;
            read_file(root, &p, split, opts, &mut dataset)?;
        }
    }
    if !any {
        return Err(DataError::layout(root, "neither training.csv nor validation.csv found"));
    }
    Ok(dataset)
}
