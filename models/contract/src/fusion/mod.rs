//! The fused prediction p̂, written once for the trainer and the runtime: p_sem =
//! softmax(logits / τ_sem); p_text = softmax(cos(z, T) / τ_t); p_ins = softmax over classes of the
//! per-class aggregated cosine similarity of z to the instance buffer's entries / τ_i (a class
//! with no entry scores -1e4, so ~0); p̂ = Σ w_k p_k / Σ w_k over the sources with weight > 0,
//! or, in raw-scores mode, softmax(Σ w_k s_k).
//!
//! The trainer computes the similarity matrix on its device and hands each row here
//! ([`class_similarity`], [`fuse_scores`]); the runtime scores one face at a time ([`fuse`]).

pub mod calibration;
mod config;

pub use config::{Aggregate, FuseMode, FusionConfig};

use crate::bundle::TextPrototypes;
use crate::labels::NUM_CLASSES;
use serde::Serialize;

/// Score of a class with no buffer entry: far below any cosine / τ, so it gets ~0 probability.
pub const EMPTY_CLASS_SCORE: f32 = -1e4;

pub type Probs = [f32; NUM_CLASSES];

/// Every source's distribution and the fused one, for one face.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fused {
    pub p_sem: Probs,
    /// Absent when the bundle has no text prototypes.
    pub p_text: Option<Probs>,
    pub p_ins: Probs,
    pub p_hat: Probs,
}

pub fn softmax(s: &Probs) -> Probs {
    let m = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Probs = std::array::from_fn(|i| (s[i] - m).exp());
    let z: f32 = e.iter().sum();
    std::array::from_fn(|i| e[i] / z)
}

/// (class, probability) of the largest entry.
pub fn argmax(p: &Probs) -> (usize, f32) {
    p.iter()
        .copied()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |a, (i, v)| if v > a.1 { (i, v) } else { a })
}

/// Eight running sums instead of one: a single sum is a chain of dependent additions the compiler
/// may not reorder, so it ran one lane at a time, and with a seed buffer of 128 faces per class
/// the buffer's similarities became a large part of a frame (docs/results/bundle.md).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    let mut acc = [0f32; 8];
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// cos(z, T_c) / τ_t for unit `z` and unit prototypes.
pub fn text_scores(z: &[f32], protos: &TextPrototypes, tau_t: f32) -> Probs {
    std::array::from_fn(|c| dot(z, protos.row(c)) / tau_t)
}

/// An instance buffer as fusion reads it: each class's unit embeddings.
pub trait ClassEntries {
    fn class_entries(&self, class: usize) -> impl Iterator<Item = &[f32]>;
}

/// One class's aggregated similarity: the largest of `sims`, or the mean of its `k` largest
/// (all of them when the class has fewer). `sims` is reordered; `None` when it is empty.
pub fn class_similarity(sims: &mut [f32], aggregate: Aggregate) -> Option<f32> {
    if sims.is_empty() {
        return None;
    }
    Some(match aggregate {
        Aggregate::Max => sims.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        Aggregate::TopKMean(k) => {
            // A partial selection, not a sort: with a few hundred entries per class the sort
            // was most of a face's fusion time.
            let k = k.clamp(1, sims.len());
            if k < sims.len() {
                sims.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
            }
            sims[..k].iter().sum::<f32>() / k as f32
        }
    })
}

/// Per class, the aggregated cosine similarity of unit `z` to the buffer's entries, / τ_i.
pub fn ins_scores(z: &[f32], buffer: &impl ClassEntries, aggregate: Aggregate, tau_i: f32) -> Probs {
    let mut sims: Vec<f32> = Vec::new();
    std::array::from_fn(|c| {
        sims.clear();
        sims.extend(buffer.class_entries(c).map(|e| dot(z, e)));
        class_similarity(&mut sims, aggregate).map_or(EMPTY_CLASS_SCORE, |s| s / tau_i)
    })
}

/// p̂ from the sources' scores (before their softmaxes); a source that is absent or has weight 0
/// does not take part. `None` when no source does.
pub fn fuse_scores(sources: [(Option<&[f32]>, f32); 3], mode: FuseMode) -> Option<Probs> {
    let parts: Vec<(&[f32], f32)> = sources
        .into_iter()
        .filter_map(|(s, w)| s.filter(|_| w > 0.0).map(|s| (s, w)))
        .collect();
    if parts.is_empty() {
        return None;
    }
    let row = |s: &[f32]| -> Probs { std::array::from_fn(|i| s[i]) };
    let mut acc = [0f32; NUM_CLASSES];
    match mode {
        FuseMode::Probabilities => {
            let total: f32 = parts.iter().map(|(_, w)| w).sum();
            for (s, w) in &parts {
                for (a, p) in acc.iter_mut().zip(softmax(&row(s))) {
                    *a += p * (w / total);
                }
            }
            Some(acc)
        }
        FuseMode::RawScores => {
            for (s, w) in &parts {
                for (a, v) in acc.iter_mut().zip(s.iter()) {
                    *a += v * w;
                }
            }
            Some(softmax(&acc))
        }
    }
}

/// The classifier's scores at temperature `tau_sem`: logits / τ_sem.
pub fn sem_scores(logits: &[f32], tau_sem: f32) -> Probs {
    std::array::from_fn(|i| logits[i] / tau_sem)
}

/// Fuses one face's sources. `logits` and unit `z` come from the model.
pub fn fuse(
    cfg: &FusionConfig,
    logits: &[f32],
    z: &[f32],
    prototypes: Option<&TextPrototypes>,
    buffer: &impl ClassEntries,
) -> Fused {
    let s_sem = sem_scores(logits, cfg.tau_sem);
    let s_text = prototypes.map(|t| text_scores(z, t, cfg.tau_t));
    let s_ins = ins_scores(z, buffer, cfg.aggregate, cfg.tau_i);
    let w = cfg.weights;
    let p_sem = softmax(&s_sem);
    let p_hat = fuse_scores(
        [
            (Some(&s_sem), w.sem),
            (s_text.as_ref().map(|s| &s[..]), w.text),
            (Some(&s_ins), w.ins),
        ],
        cfg.mode,
    )
    // The manifest reader refuses all-zero weights; a hand-built config falls back to p_sem.
    .unwrap_or(p_sem);
    Fused {
        p_sem,
        p_text: s_text.as_ref().map(softmax),
        p_ins: softmax(&s_ins),
        p_hat,
    }
}

#[cfg(test)]
mod tests;
