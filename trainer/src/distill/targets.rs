//! The student's training set: every face with the teacher's p̂ folded into its target.

use super::{DistillConfig, Teacher};
use crate::data::decode::decode_all;
use crate::data::loader::ImageStore;
use crate::evaluate::{mean_rows, mirrored};
use crate::train::error::{TrainError, io_err};
use crate::train::prepare::PreparedData;
use serde::{Deserialize, Serialize};
use sitfer_contract::labels::NUM_CLASSES;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// The teacher's p̂ kept in the student's run directory, so `--resume` does not score every face
/// again (minutes on FER2013).
pub const TEACHER_CACHE: &str = "teacher-targets.json";

#[derive(Serialize, Deserialize)]
struct Cached {
    teacher: String,
    step: u64,
    /// Scored with the mirror ensemble (absent in caches written before it existed: false).
    #[serde(default)]
    mirror: bool,
    /// The ensemble's further teachers, (directory, step) each (absent in earlier caches: none).
    #[serde(default)]
    more: Vec<(String, u64)>,
    labeled: Vec<[f32; NUM_CLASSES]>,
    unlabeled: Vec<[f32; NUM_CLASSES]>,
}

/// Class probabilities, one row per face.
type Rows = Vec<[f32; NUM_CLASSES]>;

/// (directory, step) of each teacher after the first.
fn more_of(teachers: &[Teacher]) -> Vec<(String, u64)> {
    teachers[1..]
        .iter()
        .map(|t| (t.dir.display().to_string(), t.step))
        .collect()
}

/// The cached p̂ if it was made by these teachers for these many faces.
fn load_cache(
    path: &Path,
    teachers: &[Teacher],
    mirror: bool,
    n_labeled: usize,
    n_unlabeled: usize,
) -> Option<(Rows, Rows)> {
    let c: Cached = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let teacher = &teachers[0];
    let same = c.teacher == teacher.dir.display().to_string()
        && c.step == teacher.step
        && c.more == more_of(teachers)
        && c.mirror == mirror
        && c.labeled.len() == n_labeled
        && c.unlabeled.len() == n_unlabeled;
    if !same {
        log::info!("{}: made by another teacher or split, scoring again", path.display());
        return None;
    }
    Some((c.labeled, c.unlabeled))
}

/// A labeled face's target: (y + w·p̂) / (1 + w). Cross-entropy to it is CE(y) + w·KL(p̂ ‖ ·)
/// over 1 + w, plus a constant.
pub fn mix_labeled(y: &[f32; NUM_CLASSES], p_hat: &[f32; NUM_CLASSES], w: f64) -> [f32; NUM_CLASSES] {
    let w = w as f32;
    std::array::from_fn(|c| (y[c] + w * p_hat[c]) / (1.0 + w))
}

/// Decodes `items` at `size`; every face must decode (the same faces decoded at the student's
/// size, so a failure here would misalign teacher and student).
fn decode_exact<'a>(
    items: impl IntoIterator<Item = (&'a str, &'a crate::data::ImageRef)>,
    size: u32,
    expected: usize,
    what: &str,
) -> Result<ImageStore, TrainError> {
    let decoded = decode_all(items, size);
    if decoded.images.len() != expected {
        return Err(TrainError::Config(format!(
            "distill: {what}: {} faces decoded at the teacher's {size} px, {expected} at the student's",
            decoded.images.len()
        )));
    }
    Ok(ImageStore {
        images: Arc::new(decoded.images),
        targets: None,
    })
}

/// The teacher's p̂ for the labeled faces, then the unlabeled ones (`kept`: their indices in the
/// split), decoded again at the teacher's input size when it differs from the student's; with
/// `mirror`, the mean of p̂ on each face and on its mirror image.
fn score(
    data: &PreparedData,
    unlabeled: &ImageStore,
    kept: &[usize],
    labeled_targets: &Arc<Vec<[f32; NUM_CLASSES]>>,
    teacher: &Teacher,
    student_size: u32,
    mirror: bool,
) -> Result<(Rows, Rows), TrainError> {
    let (t_labeled, t_unlabeled) = if teacher.input_size() == student_size {
        (data.labeled.clone(), unlabeled.clone())
    } else {
        // Re-decoded from the source at the teacher's size (not upsampled from the student's).
        // The labeled store left out the faces that did not decode; so must the teacher's.
        let skipped: std::collections::HashSet<&str> = data.skipped.iter().map(|(id, _)| id.as_str()).collect();
        let labeled_ok: Vec<_> = data
            .split
            .labeled
            .iter()
            .filter(|s| !skipped.contains(s.id.as_str()))
            .map(|s| (s.id.as_str(), &s.image))
            .collect();
        let mut l = decode_exact(labeled_ok, teacher.input_size(), data.labeled.len(), "labeled")?;
        l.targets = Some(labeled_targets.clone());
        let u = decode_exact(
            kept.iter().map(|&i| {
                let s = &data.split.unlabeled[i];
                (s.id.as_str(), &s.image)
            }),
            teacher.input_size(),
            unlabeled.len(),
            "unlabeled",
        )?;
        (l, u)
    };
    let (l, u) = teacher.soft_labels(&t_labeled, Some(&t_unlabeled))?;
    if !mirror {
        return Ok((l, u));
    }
    let (ml, mu) = teacher.soft_labels(&mirrored(&t_labeled), Some(&mirrored(&t_unlabeled)))?;
    Ok((mean_rows(&[&l, &ml]), mean_rows(&[&u, &mu])))
}

/// The face-by-face mean of several teachers' (labeled, unlabeled) p̂.
fn mean_over_teachers(per_teacher: &[(Rows, Rows)]) -> (Rows, Rows) {
    let labeled: Vec<&[_]> = per_teacher.iter().map(|(l, _)| &l[..]).collect();
    let unlabeled: Vec<&[_]> = per_teacher.iter().map(|(_, u)| &u[..]).collect();
    (mean_rows(&labeled), mean_rows(&unlabeled))
}

/// Replaces `data`'s training faces by the distillation set: the labeled faces with mixed
/// targets, then the unlabeled faces with p̂ as their target (all of them in `data.labeled`;
/// `data.unlabeled` is then empty). `student_size` is the side the stores were decoded at.
/// `teachers`: one, or an ensemble whose p̂ is averaged face by face (the first is named in logs).
/// `cache`: where the teachers' p̂ is kept between runs (`None`: always scored).
pub fn relabel(
    mut data: PreparedData,
    cfg: &DistillConfig,
    teachers: &[Teacher],
    student_size: u32,
    cache: Option<&Path>,
) -> Result<PreparedData, TrainError> {
    let Some(teacher) = teachers.first() else {
        return Err(TrainError::Config("distill: no teacher".into()));
    };
    let t0 = Instant::now();
    // The student's unlabeled faces (decoded only when its own method needs them).
    let (unlabeled, kept) = match data.unlabeled.take() {
        Some(u) => u,
        None => {
            let d = decode_all(
                data.split.unlabeled.iter().map(|s| (s.id.as_str(), &s.image)),
                student_size,
            );
            (
                ImageStore {
                    images: Arc::new(d.images),
                    targets: None,
                },
                d.kept,
            )
        }
    };
    let labeled_targets = data.labeled.targets.clone().expect("labeled store has targets");
    let cached = cache.and_then(|p| load_cache(p, teachers, cfg.teacher_mirror, data.labeled.len(), unlabeled.len()));
    let from_cache = cached.is_some();
    let (p_labeled, p_unlabeled) = match cached {
        Some(c) => c,
        None => {
            let mut per_teacher = Vec::with_capacity(teachers.len());
            for t in teachers {
                per_teacher.push(score(
                    &data,
                    &unlabeled,
                    &kept,
                    &labeled_targets,
                    t,
                    student_size,
                    cfg.teacher_mirror,
                )?);
            }
            let p = mean_over_teachers(&per_teacher);
            if let Some(path) = cache {
                let c = Cached {
                    teacher: teacher.dir.display().to_string(),
                    step: teacher.step,
                    mirror: cfg.teacher_mirror,
                    more: more_of(teachers),
                    labeled: p.0.clone(),
                    unlabeled: p.1.clone(),
                };
                let bytes = serde_json::to_vec(&c).expect("p̂ serialises");
                sitfer_contract::file_write::atomic_write_bytes(path, &bytes).map_err(io_err(path))?;
            }
            p
        }
    };

    let agree = p_labeled
        .iter()
        .zip(labeled_targets.iter())
        .filter(|(p, y)| crate::evaluate::argmax(*p) == crate::evaluate::argmax(*y))
        .count();
    let hidden: Vec<(usize, usize)> = p_unlabeled
        .iter()
        .zip(&kept)
        .filter_map(|(p, &i)| {
            data.split
                .analysis
                .get(i)
                .map(|h| (crate::evaluate::argmax(p), h.index()))
        })
        .collect();
    log::info!(
        "teacher {} (step {}{}): p̂ for {} labeled faces (top-1 = label on {:.1} %) and {} unlabeled{} {} {:.0} s",
        teacher.dir.display(),
        teacher.step,
        if teachers.len() > 1 {
            format!("; mean with {} more teachers", teachers.len() - 1)
        } else {
            String::new()
        },
        p_labeled.len(),
        100.0 * agree as f64 / p_labeled.len().max(1) as f64,
        p_unlabeled.len(),
        if hidden.is_empty() {
            String::new()
        } else {
            format!(
                " (right on {:.1} % by their hidden labels, analysis only)",
                100.0 * hidden.iter().filter(|(p, h)| p == h).count() as f64 / hidden.len() as f64
            )
        },
        if from_cache {
            "read from the run's cache in"
        } else {
            "scored in"
        },
        t0.elapsed().as_secs_f64()
    );

    let mut images: Vec<_> = data.labeled.images.iter().cloned().collect();
    images.extend(unlabeled.images.iter().cloned());
    let mut targets: Vec<[f32; NUM_CLASSES]> = labeled_targets
        .iter()
        .zip(&p_labeled)
        .map(|(y, p)| mix_labeled(y, p, cfg.kd_weight))
        .collect();
    targets.extend(p_unlabeled);
    data.labeled = ImageStore {
        images: Arc::new(images),
        targets: Some(Arc::new(targets)),
    };
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::mix_labeled;

    #[test]
    fn mixed_targets_are_distributions_between_label_and_teacher() {
        let y = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0];
        let p = [0.1, 0.2, 0.05, 0.4, 0.05, 0.1, 0.1];
        assert_eq!(mix_labeled(&y, &p, 0.0), y, "w = 0 is the label alone");
        for w in [0.5, 1.0, 4.0] {
            let m = mix_labeled(&y, &p, w);
            assert!((m.iter().sum::<f32>() - 1.0).abs() < 1e-6, "{m:?}");
            for c in 0..7 {
                let expected = (y[c] + w as f32 * p[c]) / (1.0 + w as f32);
                assert!((m[c] - expected).abs() < 1e-6);
            }
        }
        // A large w leans on the teacher: its top class wins over the label.
        let m = mix_labeled(&y, &p, 20.0);
        assert!(m[3] > m[2], "{m:?}");
    }
}
