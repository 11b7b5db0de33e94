//! Offline adaptation of a bundle to a device's own footage, without labels.
//!
//! The footage runs through the same [`Recognizer`] as `sitfer run`'s continual mode (detection,
//! tracking, fusion, and the admission of confident faces into the buffer); the adaptation
//! additionally keeps what it observed. From the admitted faces it then builds a class-balanced,
//! diverse set of buffer entries for this domain ([`select`]), optionally refits the classifier
//! head on their features ([`refit`]), and lets the [`guard`] stop everything when the
//! pseudo-labels or the adapted predictions look degenerate. The caller writes the result as a
//! new bundle; the source bundle is never touched.

pub mod collapse_guard;
mod error;
pub mod label_shift;
pub mod onnx_head;
pub mod refit;
mod report;
pub mod select;

pub use collapse_guard::{Collapse, GuardConfig};
pub use error::AdaptError;
pub use refit::{Head, Objective, Refit, RefitConfig};
pub use report::{AdaptReport, ConfidenceHistogram, RefitReport, histogram_png};
pub use select::{Candidate, SelectConfig, select};

use crate::bundle::{SeedBuffer, TextPrototypes};
use crate::fusion::{FusionConfig, argmax, fuse};
use crate::instance_buffer::AdmissionPolicy;
use crate::instance_buffer::InstanceBuffer;
use crate::labels::NUM_CLASSES;
use crate::pipeline::{Observation, Recognizer};
use crate::source::FrameSource;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptConfig {
    /// Of the admitted faces predicted as a class, the most confident this fraction are
    /// pseudo-labels (class-balanced self-training: confidence is ranked within a class, so a
    /// model that is less sure of some classes, or miscalibrated on a new domain, still
    /// contributes every class it predicts).
    pub top_fraction: f32,
    pub select: SelectConfig,
    /// `None`: keep the bundle's heads, adapt the buffer only.
    pub refit: Option<RefitConfig>,
    pub guard: GuardConfig,
    /// Faces kept (evenly thinned) to compare predictions before and after adaptation.
    pub max_compared_faces: usize,
}

impl Default for AdaptConfig {
    fn default() -> Self {
        AdaptConfig {
            top_fraction: 0.5,
            select: SelectConfig::default(),
            refit: None,
            guard: GuardConfig::default(),
            max_compared_faces: 4096,
        }
    }
}

/// What a pass over the footage gathered.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub frames: u64,
    pub faces: u64,
    pub tracks: usize,
    /// Faces observed per track.
    pub track_faces: HashMap<u64, u64>,
    /// Every admitted face: the pseudo-labels.
    pub candidates: Vec<Candidate>,
    /// An evenly thinned sample of all faces.
    pub sample: Vec<Observation>,
    pub confidence: ConfidenceHistogram,
}

impl Observed {
    /// Counts one face: its confidence, and its pseudo-label when it was admitted.
    pub fn record(&mut self, o: &Observation) {
        self.faces += 1;
        *self.track_faces.entry(o.track).or_default() += 1;
        self.confidence.add(argmax(&o.p_hat).1);
        if let Some(class) = o.admitted {
            self.candidates.push(Candidate {
                class,
                confidence: o.p_hat[class],
                track: o.track,
                // Known once the footage ends; set by `plan`.
                track_faces: 0,
                embedding: o.embedding.clone(),
                feature: o.feature.clone(),
            });
        }
    }
}

/// Keeps every `stride`-th item and doubles the stride when full, so a stream of any length
/// leaves an even sample of at most `cap` items without a random generator.
struct Thinned {
    cap: usize,
    stride: u64,
    seen: u64,
    items: Vec<Observation>,
}

impl Thinned {
    fn push(&mut self, o: Observation) {
        if self.seen.is_multiple_of(self.stride) {
            self.items.push(o);
            if self.items.len() >= self.cap.max(2) {
                let mut k = 0;
                self.items.retain(|_| {
                    k += 1;
                    k % 2 == 1
                });
                self.stride *= 2;
            }
        }
        self.seen += 1;
    }
}

/// Runs `rec` (its config must have `observe` on and continual admission set as wanted) over
/// the frames of `source` (at most `max_frames`); `progress` is called after each frame.
pub fn observe(
    rec: &mut Recognizer,
    source: &mut dyn FrameSource,
    max_frames: Option<u64>,
    max_compared_faces: usize,
    mut progress: impl FnMut(u64),
) -> Result<Observed, AdaptError> {
    let mut out = Observed::default();
    let mut tracks = HashSet::new();
    let mut sample = Thinned {
        cap: max_compared_faces,
        stride: 1,
        seen: 0,
        items: Vec::new(),
    };
    while max_frames.is_none_or(|m| out.frames < m)
        && let Some(frame) = source.next_frame()?
    {
        rec.process(&frame)?;
        out.frames += 1;
        for o in rec.take_observations() {
            tracks.insert(o.track);
            out.record(&o);
            sample.push(o);
        }
        progress(out.frames);
    }
    out.tracks = tracks.len();
    out.sample = sample.items;
    Ok(out)
}

/// Admission for an offline pass over recorded footage: the live policy without its frame
/// interval. Live, the interval keeps a camera at 30 fps from queueing near-identical frames
/// of one track; offline, the selection that follows (ranking within each class, per-class and
/// per-track caps, farthest-point choice) does that, and the interval would only starve a
/// one-person camera: one long track then gives one face per interval (8 of 108 frames, 4
/// pseudo-labels after ranking, before this), too few for the collapse guard. The near-duplicate
/// check against the track's earlier admissions stays.
pub fn offline_admission(live: AdmissionPolicy) -> AdmissionPolicy {
    AdmissionPolicy {
        min_interval_frames: 0,
        ..live
    }
}

/// The adapted state, ready to be written as a bundle.
#[derive(Debug, Clone)]
pub struct Plan {
    pub buffer: SeedBuffer,
    pub refit: Option<Refit>,
    pub report: AdaptReport,
}

/// The bundle-side inputs of [`plan`].
pub struct Original<'a> {
    pub fusion: &'a FusionConfig,
    pub prototypes: Option<&'a TextPrototypes>,
    pub buffer: &'a SeedBuffer,
    /// The classifier head, needed for a refit.
    pub head: Option<&'a Head>,
}

/// Indices of the candidates in the top `fraction` by confidence within their class (at least
/// one per predicted class when `fraction > 0`).
pub fn top_per_class(cands: &[Candidate], fraction: f32) -> Vec<usize> {
    let mut keep = Vec::new();
    for class in 0..NUM_CLASSES {
        let mut idx: Vec<usize> = (0..cands.len()).filter(|&i| cands[i].class == class).collect();
        idx.sort_by(|&a, &b| cands[b].confidence.total_cmp(&cands[a].confidence));
        let n = ((idx.len() as f32 * fraction.clamp(0.0, 1.0)).ceil() as usize).min(idx.len());
        keep.extend_from_slice(&idx[..n]);
    }
    keep.sort_unstable();
    keep
}

fn counts_of(labels: impl Iterator<Item = usize>) -> [usize; NUM_CLASSES] {
    let mut c = [0; NUM_CLASSES];
    for l in labels {
        c[l] += 1;
    }
    c
}

/// The pooled features of every sampled face, for the objectives that need no labels; `None`
/// when the model exposes none.
fn unlabeled(observed: &Observed) -> Option<Vec<&[f32]>> {
    let feats: Vec<&[f32]> = observed.sample.iter().filter_map(|o| o.feature.as_deref()).collect();
    (!feats.is_empty() && feats.len() == observed.sample.len()).then_some(feats)
}

/// Selection, refit and guard on what [`observe`] gathered. `Err` carries the report with the
/// guard's findings: nothing may be written then.
pub fn plan(original: &Original, observed: &Observed, cfg: &AdaptConfig) -> Result<Plan, Box<AdaptReport>> {
    let mut report = AdaptReport::new(observed, original.buffer);
    let pseudo: Vec<Candidate> = top_per_class(&observed.candidates, cfg.top_fraction)
        .into_iter()
        .map(|i| {
            let c = &observed.candidates[i];
            Candidate {
                track_faces: observed.track_faces.get(&c.track).copied().unwrap_or(0),
                ..c.clone()
            }
        })
        .collect();
    report.pseudo_labels = counts_of(pseudo.iter().map(|c| c.class));
    report.findings = cfg.guard.check_pseudo_labels(&report.pseudo_labels);
    if !report.findings.is_empty() {
        return Err(Box::new(report));
    }
    let chosen = select(&pseudo, &cfg.select);
    let mut buffer = original.buffer.clone();
    for &i in &chosen {
        let c = &pseudo[i];
        buffer.embeddings.extend_from_slice(&c.embedding);
        buffer.labels.push(c.class as u8);
    }
    report.selected = counts_of(chosen.iter().map(|&i| pseudo[i].class));
    report.buffer_after = buffer.class_counts();

    let refit = match (cfg.refit, original.head) {
        (Some(rc), Some(h0)) => match rc.objective {
            Objective::PseudoLabels => {
                let rows: Vec<(&[f32], usize)> = chosen
                    .iter()
                    .filter_map(|&i| pseudo[i].feature.as_deref().map(|f| (f, pseudo[i].class)))
                    .collect();
                (!rows.is_empty() && rows.len() == chosen.len()).then(|| {
                    let feats: Vec<&[f32]> = rows.iter().map(|r| r.0).collect();
                    let labels: Vec<usize> = rows.iter().map(|r| r.1).collect();
                    refit::refit(h0, &feats, &labels, &rc)
                })
            }
            Objective::InfoMax { diversity } => {
                unlabeled(observed).map(|feats| refit::refit_info_max(h0, &feats, diversity, &rc))
            }
            Objective::Shot {
                diversity,
                beta,
                relabels,
            } => unlabeled(observed).map(|feats| refit::refit_shot(h0, &feats, diversity, beta, relabels, &rc)),
        },
        _ => None,
    };
    if cfg.refit.is_some() && refit.is_none() {
        report
            .notes
            .push("refit skipped: the model exposes no pooled feature or its head could not be read".to_string());
    }
    report.refit = refit.as_ref().zip(cfg.refit).map(|(r, c)| RefitReport::new(r, &c));

    // The footage's faces under the original bundle and under the adapted one.
    let before_buf = InstanceBuffer::from_seed(original.buffer, 0);
    let after_buf = InstanceBuffer::from_seed(&buffer, 0);
    let mut before = [0usize; NUM_CLASSES];
    let mut after = [0usize; NUM_CLASSES];
    let mut changed = 0usize;
    for o in &observed.sample {
        let p0 = fuse(
            original.fusion,
            &o.logits,
            &o.embedding,
            original.prototypes,
            &before_buf,
        );
        let logits = match (&refit, &o.feature) {
            (Some(r), Some(f)) => r.head.logits(f),
            _ => o.logits,
        };
        let p1 = fuse(original.fusion, &logits, &o.embedding, original.prototypes, &after_buf);
        let (a, b) = (argmax(&p0.p_hat).0, argmax(&p1.p_hat).0);
        before[a] += 1;
        after[b] += 1;
        changed += (a != b) as usize;
    }
    report.predicted_before = before;
    report.predicted_after = after;
    report.changed_share = changed as f32 / observed.sample.len().max(1) as f32;
    report.findings = cfg.guard.check_predictions(&before, &after);
    if !report.findings.is_empty() {
        return Err(Box::new(report));
    }
    Ok(Plan { buffer, refit, report })
}

#[cfg(test)]
mod long_track_tests;
#[cfg(test)]
mod tests;
