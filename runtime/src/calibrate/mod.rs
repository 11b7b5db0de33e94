//! A bundle's fusion calibrated on labeled faces it will not be scored on (`sitfer calibrate`):
//! a temperature per source fitted by negative log-likelihood, the buffer aggregate and the
//! instance source's fusion weight whose fused p̂ has the lowest NLL, and the admission threshold
//! at a target precision of p̂.
//!
//! Exported as trained, the three sources come on unrelated scales (logits at 1; cosines / 0.1
//! twice), so p̂ is their mean only in name: the instance source, 13 points weaker in-domain,
//! pulls it under p_sem. Each source's scores are computed once at temperature 1; the fitting
//! and the fusion are the contract's (`fit_temperature`, `class_similarity`, `fuse_scores`,
//! `precision_threshold`), so the device fuses exactly what was calibrated here.

use crate::bundle::{Fusion, TextPrototypes};
use crate::fusion::calibration::{fit_temperature, nll, precision_threshold};
use crate::fusion::{Aggregate, ClassEntries, Probs, argmax, class_similarity, fuse_scores, sem_scores, text_scores};
use crate::labels::NUM_CLASSES;
use serde::Serialize;

/// Temperatures are searched over this range (log scale): logits want τ ≈ 1, cosines 0.01–0.1.
pub const T_RANGE: (f64, f64) = (1e-3, 1e2);

/// One labeled face's model outputs.
#[derive(Debug, Clone)]
pub struct LabeledFace {
    pub logits: Probs,
    /// Unit embedding.
    pub embedding: Vec<f32>,
    pub label: usize,
}

/// Accuracy of each source and of p̂, and p̂'s NLL, on the calibration faces.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scores {
    pub sem: f64,
    pub text: Option<f64>,
    pub ins: f64,
    pub fused: f64,
    /// Mean −ln p̂(true class).
    pub fused_nll: f64,
}

/// One aggregate and instance weight tried: the aggregate's fitted τ_i and what p̂ measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AggregateTrial {
    pub aggregate: Aggregate,
    pub tau_i: f32,
    /// Weight of p_ins in the fusion (p_sem and p_text keep the bundle's).
    pub w_ins: f32,
    pub ins_nll: f64,
    pub scores: Scores,
}

/// The fusion fitted, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FusionFit {
    pub fusion: Fusion,
    /// Every aggregate tried, in the order given; the chosen one has the lowest `fused_nll`.
    pub trials: Vec<AggregateTrial>,
    /// The chosen trial's scores.
    pub scores: Scores,
    /// Faces whose top p̂ reaches the threshold, and their precision; `None` when no threshold
    /// reached the target (then the base threshold is kept).
    pub admitted: Option<(usize, f64)>,
    pub target_precision: f64,
}

/// Each source's scores at temperature 1 for every face.
struct RawScores {
    sem: Vec<Probs>,
    text: Option<Vec<Probs>>,
    /// Per face and class, the cosines to the buffer's entries of that class.
    sims: Vec<[Vec<f32>; NUM_CLASSES]>,
    labels: Vec<usize>,
}

fn raw_scores(faces: &[LabeledFace], prototypes: Option<&TextPrototypes>, buffer: &impl ClassEntries) -> RawScores {
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    RawScores {
        sem: faces.iter().map(|f| sem_scores(&f.logits, 1.0)).collect(),
        text: prototypes.map(|p| faces.iter().map(|f| text_scores(&f.embedding, p, 1.0)).collect()),
        sims: faces
            .iter()
            .map(|f| std::array::from_fn(|c| buffer.class_entries(c).map(|e| dot(&f.embedding, e)).collect()))
            .collect(),
        labels: faces.iter().map(|f| f.label).collect(),
    }
}

impl RawScores {
    /// Per face, the aggregated similarity per class at temperature 1 (empty classes at the
    /// contract's empty score, as in `ins_scores`).
    fn ins(&self, aggregate: Aggregate) -> Vec<Probs> {
        let mut work = Vec::new();
        self.sims
            .iter()
            .map(|per_class| {
                std::array::from_fn(|c| {
                    work.clear();
                    work.extend_from_slice(&per_class[c]);
                    class_similarity(&mut work, aggregate).unwrap_or(crate::fusion::EMPTY_CLASS_SCORE)
                })
            })
            .collect()
    }
}

fn scaled(row: &Probs, t: f32) -> Probs {
    row.map(|v| v / t)
}

fn accuracy(rows: &[Probs], labels: &[usize]) -> f64 {
    let right = rows.iter().zip(labels).filter(|(r, y)| argmax(r).0 == **y).count();
    right as f64 / labels.len().max(1) as f64
}

/// p̂ of every face under `fusion` (its temperatures and weights) from scores at temperature 1.
fn fused_rows(fusion: &Fusion, raw: &RawScores, ins: &[Probs]) -> Vec<Probs> {
    let w = fusion.weights;
    (0..raw.labels.len())
        .map(|i| {
            let sem = scaled(&raw.sem[i], fusion.tau_sem);
            let text = raw.text.as_ref().map(|t| scaled(&t[i], fusion.tau_t));
            let ins = scaled(&ins[i], fusion.tau_i);
            fuse_scores(
                [
                    (Some(&sem[..]), w.sem),
                    (text.as_ref().map(|r| &r[..]), w.text),
                    (Some(&ins[..]), w.ins),
                ],
                fusion.mode,
            )
            .unwrap_or_else(|| crate::fusion::softmax(&sem))
        })
        .collect()
}

fn scores_of(raw: &RawScores, ins: &[Probs], fused: &[Probs]) -> Scores {
    let n = raw.labels.len().max(1) as f64;
    let fused_nll = fused
        .iter()
        .zip(&raw.labels)
        .map(|(p, &y)| -(p[y].max(1e-12) as f64).ln())
        .sum::<f64>()
        / n;
    Scores {
        sem: accuracy(&raw.sem, &raw.labels),
        text: raw.text.as_deref().map(|t| accuracy(t, &raw.labels)),
        ins: accuracy(ins, &raw.labels),
        fused: accuracy(fused, &raw.labels),
        fused_nll,
    }
}

/// The scores of `fusion` as it stands (no fitting): what the bundle measures before.
pub fn score(
    fusion: &Fusion,
    faces: &[LabeledFace],
    prototypes: Option<&TextPrototypes>,
    buffer: &impl ClassEntries,
) -> Scores {
    let raw = raw_scores(faces, prototypes, buffer);
    let ins = raw.ins(fusion.aggregate);
    let fused = fused_rows(fusion, &raw, &ins);
    scores_of(&raw, &ins, &fused)
}

/// Fits `base`'s temperatures (τ_sem, τ_t when there are prototypes, τ_i per aggregate), keeps
/// the aggregate of `aggregates` with the lowest NLL of p̂, and sets the threshold at which p̂
/// reaches `target_precision` on these faces. Weights and mode stay the bundle's. `None`
/// without faces or aggregates.
pub fn fit_fusion(
    base: &Fusion,
    faces: &[LabeledFace],
    prototypes: Option<&TextPrototypes>,
    buffer: &impl ClassEntries,
    aggregates: &[Aggregate],
    ins_weights: &[f32],
    target_precision: f64,
) -> Option<FusionFit> {
    if faces.is_empty() || aggregates.is_empty() {
        return None;
    }
    // No weights to try: the bundle's.
    let ins_weights = if ins_weights.is_empty() {
        vec![base.weights.ins]
    } else {
        ins_weights.to_vec()
    };
    let raw = raw_scores(faces, prototypes, buffer);
    let fit = |rows: &[Probs]| fit_temperature(rows, &raw.labels, T_RANGE.0, T_RANGE.1).map(|t| t as f32);
    let mut fusion = *base;
    fusion.tau_sem = fit(&raw.sem)?;
    if let Some(t) = &raw.text {
        fusion.tau_t = fit(t)?;
    }
    let mut trials = Vec::new();
    let mut best: Option<(usize, Fusion, Vec<Probs>)> = None;
    for &aggregate in aggregates {
        let ins = raw.ins(aggregate);
        let tau_i = fit(&ins)?;
        let ins_nll = nll(&ins, &raw.labels, tau_i as f64);
        for &w_ins in &ins_weights {
            let f = Fusion {
                tau_i,
                aggregate,
                weights: crate::bundle::FusionWeights {
                    ins: w_ins,
                    ..fusion.weights
                },
                ..fusion
            };
            let fused = fused_rows(&f, &raw, &ins);
            let scores = scores_of(&raw, &ins, &fused);
            trials.push(AggregateTrial {
                aggregate,
                tau_i,
                w_ins,
                ins_nll,
                scores,
            });
            if best
                .as_ref()
                .is_none_or(|(k, _, _)| scores.fused_nll < trials[*k].scores.fused_nll)
            {
                best = Some((trials.len() - 1, f, fused));
            }
        }
    }
    let (k, mut fusion, fused) = best?;
    let (conf, correct): (Vec<f32>, Vec<bool>) = fused
        .iter()
        .zip(&raw.labels)
        .map(|(p, &y)| {
            let (c, v) = argmax(p);
            (v, c == y)
        })
        .unzip();
    let admitted = precision_threshold(&conf, &correct, target_precision, 0.0, 1.0).map(|t| {
        fusion.threshold = t as f32;
        let at: Vec<bool> = conf.iter().map(|&v| v >= fusion.threshold).collect();
        let n = at.iter().filter(|&&a| a).count();
        let right = at.iter().zip(&correct).filter(|(a, c)| **a && **c).count();
        (n, right as f64 / n.max(1) as f64)
    });
    Some(FusionFit {
        fusion,
        scores: trials[k].scores,
        trials,
        admitted,
        target_precision,
    })
}

#[cfg(test)]
mod tests;
