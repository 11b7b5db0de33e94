//! The fused prediction p̂ on the device, defined exactly as in the trainer
//! (`trainer/src/semi/fusion.rs`, `memory.rs`): p_sem = softmax(logits);
//! p_text = softmax(cos(z, T) / τ_t); p_ins = softmax over classes of the per-class aggregated
//! cosine similarity of z to the instance buffer's entries / τ_i (a class with no entry scores
//! -1e4, so ~0); p̂ = Σ w_k p_k / Σ w_k over the sources with weight > 0, or, in raw-scores mode,
//! softmax(Σ w_k s_k).

mod config;

pub use config::{Aggregate, FuseMode, FusionConfig};

use crate::buffer::InstanceBuffer;
use crate::bundle::TextPrototypes;
use crate::labels::NUM_CLASSES;
use serde::Serialize;

/// Score of a class with no buffer entry (the trainer's `EMPTY_CLASS_SCORE`).
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

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// cos(z, T_c) / τ_t for unit `z` and unit prototypes.
pub fn text_scores(z: &[f32], protos: &TextPrototypes, tau_t: f32) -> Probs {
    std::array::from_fn(|c| dot(z, protos.row(c)) / tau_t)
}

/// Per class, the aggregated cosine similarity of unit `z` to the buffer's entries, / τ_i.
pub fn ins_scores(z: &[f32], buffer: &InstanceBuffer, aggregate: Aggregate, tau_i: f32) -> Probs {
    let mut sims: Vec<f32> = Vec::new();
    std::array::from_fn(|c| {
        sims.clear();
        sims.extend(buffer.class_entries(c).map(|e| dot(z, e)));
        if sims.is_empty() {
            return EMPTY_CLASS_SCORE;
        }
        let agg = match aggregate {
            Aggregate::Max => sims.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            Aggregate::TopKMean(k) => {
                sims.sort_by(|a, b| b.total_cmp(a));
                let k = k.clamp(1, sims.len());
                sims[..k].iter().sum::<f32>() / k as f32
            }
        };
        agg / tau_i
    })
}

/// Fuses one face's sources. `logits` and unit `z` come from the model.
pub fn fuse(
    cfg: &FusionConfig,
    logits: &[f32],
    z: &[f32],
    prototypes: Option<&TextPrototypes>,
    buffer: &InstanceBuffer,
) -> Fused {
    let s_sem: Probs = std::array::from_fn(|i| logits[i]);
    let s_text = prototypes.map(|t| text_scores(z, t, cfg.tau_t));
    let s_ins = ins_scores(z, buffer, cfg.aggregate, cfg.tau_i);
    let w = cfg.weights;
    let parts: Vec<(&Probs, f32)> = [(Some(&s_sem), w.sem), (s_text.as_ref(), w.text), (Some(&s_ins), w.ins)]
        .into_iter()
        .filter_map(|(s, w)| s.filter(|_| w > 0.0).map(|s| (s, w)))
        .collect();
    let p_sem = softmax(&s_sem);
    let p_text = s_text.as_ref().map(softmax);
    let p_ins = softmax(&s_ins);
    let p_hat = if parts.is_empty() {
        // The manifest reader refuses all-zero weights; a hand-built config falls back to p_sem.
        p_sem
    } else {
        match cfg.mode {
            FuseMode::Probabilities => {
                let total: f32 = parts.iter().map(|(_, w)| w).sum();
                let mut acc = [0f32; NUM_CLASSES];
                for (s, w) in &parts {
                    for (a, p) in acc.iter_mut().zip(softmax(s)) {
                        *a += p * (w / total);
                    }
                }
                acc
            }
            FuseMode::RawScores => {
                let mut acc = [0f32; NUM_CLASSES];
                for (s, w) in &parts {
                    for (a, v) in acc.iter_mut().zip(s.iter()) {
                        *a += v * w;
                    }
                }
                softmax(&acc)
            }
        }
    };
    Fused {
        p_sem,
        p_text,
        p_ins,
        p_hat,
    }
}

#[cfg(test)]
mod tests;
