//! Refit of the classifier head (`fc`) on the footage's features, anchored to the bundle's
//! weights by an L2 pull so that a small or skewed footage set nudges the head instead of
//! replacing it. Two objectives:
//! - pseudo-labels: class-balanced cross-entropy toward the selected faces' pseudo-labels
//!   (self-training);
//! - information maximisation (SHOT, Liang et al. 2020, on the head only): each face's
//!   prediction confident (low conditional entropy) while the predictions over the footage stay
//!   diverse (high marginal entropy); it uses every face and no labels at all.
//!
//! Written by hand because the runtime has no training framework (tract only runs models) and
//! a 7 × F head on a few thousand rows needs none: a full-batch Adam step is two small loops.

use crate::fusion::{Probs, softmax};
use crate::labels::NUM_CLASSES;

/// `logits = W f + b`, `W` row-major `[NUM_CLASSES, dim]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub dim: usize,
    pub weight: Vec<f32>,
    pub bias: [f32; NUM_CLASSES],
}

impl Head {
    pub fn logits(&self, f: &[f32]) -> Probs {
        std::array::from_fn(|c| {
            let w = &self.weight[c * self.dim..(c + 1) * self.dim];
            self.bias[c] + w.iter().zip(f).map(|(a, b)| a * b).sum::<f32>()
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    PseudoLabels,
    /// Weight of the marginal-entropy (diversity) term; SHOT uses 1.
    InfoMax {
        diversity: f32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefitConfig {
    pub objective: Objective,
    /// Full-batch optimiser steps.
    pub steps: usize,
    /// Adam learning rate.
    pub lr: f32,
    /// Weight of ½‖W − W₀‖² + ½‖b − b₀‖² (per-sample loss scale).
    pub anchor: f32,
}

impl Default for RefitConfig {
    fn default() -> Self {
        RefitConfig {
            objective: Objective::PseudoLabels,
            steps: 100,
            lr: 1e-2,
            anchor: 1e-2,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Refit {
    pub head: Head,
    /// Objective before the first and after the last step.
    pub loss_before: f32,
    pub loss_after: f32,
    /// ‖W − W₀‖ / ‖W₀‖.
    pub relative_change: f32,
}

/// The data term: loss and its gradient with respect to each row's logits.
type DataTerm<'a> = dyn Fn(&[Probs]) -> (f32, Vec<Probs>) + 'a;

/// Class-balanced cross-entropy toward `labels`: each class weighs the same whatever its count,
/// so the refit does not learn the footage's class frequencies as a prior.
fn pseudo_label_term(labels: &[usize]) -> impl Fn(&[Probs]) -> (f32, Vec<Probs>) + '_ {
    let mut counts = [0usize; NUM_CLASSES];
    for &y in labels {
        counts[y] += 1;
    }
    let present = counts.iter().filter(|&&n| n > 0).count().max(1) as f32;
    move |logits: &[Probs]| {
        let mut loss = 0.0;
        let grads = logits
            .iter()
            .zip(labels)
            .map(|(z, &y)| {
                let w = 1.0 / (counts[y] as f32 * present);
                let p = softmax(z);
                loss -= w * p[y].max(1e-12).ln();
                std::array::from_fn(|c| w * (p[c] - (c == y) as u8 as f32))
            })
            .collect();
        (loss, grads)
    }
}

/// Mean conditional entropy minus `diversity` × entropy of the mean prediction.
fn info_max_term(diversity: f32) -> impl Fn(&[Probs]) -> (f32, Vec<Probs>) {
    move |logits: &[Probs]| {
        let n = logits.len().max(1) as f32;
        let ps: Vec<Probs> = logits.iter().map(softmax).collect();
        let mean: Probs = std::array::from_fn(|c| ps.iter().map(|p| p[c]).sum::<f32>() / n);
        let log_mean: Probs = std::array::from_fn(|c| mean[c].max(1e-12).ln());
        let marginal_entropy: f32 = -(0..NUM_CLASSES).map(|c| mean[c] * log_mean[c]).sum::<f32>();
        let mut cond = 0.0;
        let grads = ps
            .iter()
            .map(|p| {
                let logp: Probs = std::array::from_fn(|c| p[c].max(1e-12).ln());
                let h: f32 = -(0..NUM_CLASSES).map(|c| p[c] * logp[c]).sum::<f32>();
                cond += h / n;
                // d H(p)/dz_j = -p_j (log p_j + H); d(-H(mean))/dz_j = p_j (log mean_j - Σ_c p_c log mean_c) / n.
                let pl: f32 = (0..NUM_CLASSES).map(|c| p[c] * log_mean[c]).sum();
                std::array::from_fn(|j| -p[j] * (logp[j] + h) / n + diversity * p[j] * (log_mean[j] - pl) / n)
            })
            .collect();
        (cond - diversity * marginal_entropy, grads)
    }
}

fn anchored(head: &Head, h0: &Head, feats: &[&[f32]], term: &DataTerm, anchor: f32) -> (f32, Vec<Probs>) {
    let logits: Vec<Probs> = feats.iter().map(|f| head.logits(f)).collect();
    let (loss, grads) = term(&logits);
    let reg: f32 = head
        .weight
        .iter()
        .zip(&h0.weight)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f32>()
        + head
            .bias
            .iter()
            .zip(&h0.bias)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>();
    (loss + 0.5 * anchor * reg, grads)
}

fn optimize(h0: &Head, feats: &[&[f32]], term: &DataTerm, cfg: &RefitConfig) -> Refit {
    let mut head = h0.clone();
    let (d, n) = (head.dim, head.weight.len());
    let mut g = vec![0.0f32; n + NUM_CLASSES];
    // Adam moments, weights then biases.
    let (mut m, mut v) = (vec![0.0f32; n + NUM_CLASSES], vec![0.0f32; n + NUM_CLASSES]);
    let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    let loss_before = anchored(&head, h0, feats, term, cfg.anchor).0;
    for t in 1..=cfg.steps {
        let (_, grads) = anchored(&head, h0, feats, term, cfg.anchor);
        g.fill(0.0);
        for (f, gz) in feats.iter().zip(&grads) {
            for c in 0..NUM_CLASSES {
                for (gi, fi) in g[c * d..(c + 1) * d].iter_mut().zip(*f) {
                    *gi += gz[c] * fi;
                }
                g[n + c] += gz[c];
            }
        }
        for ((gi, w), w0) in g.iter_mut().zip(&head.weight).zip(&h0.weight) {
            *gi += cfg.anchor * (w - w0);
        }
        for c in 0..NUM_CLASSES {
            g[n + c] += cfg.anchor * (head.bias[c] - h0.bias[c]);
        }
        let (c1, c2) = (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32));
        for i in 0..n + NUM_CLASSES {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            let step = cfg.lr * (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
            if i < n {
                head.weight[i] -= step;
            } else {
                head.bias[i - n] -= step;
            }
        }
    }
    let loss_after = anchored(&head, h0, feats, term, cfg.anchor).0;
    let norm0: f32 = h0.weight.iter().map(|w| w * w).sum::<f32>().sqrt();
    let diff: f32 = head
        .weight
        .iter()
        .zip(&h0.weight)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f32>()
        .sqrt();
    Refit {
        head,
        loss_before,
        loss_after,
        relative_change: diff / norm0.max(1e-12),
    }
}

/// Self-training: fits the head to the pseudo-labels of `feats`.
pub fn refit(h0: &Head, feats: &[&[f32]], labels: &[usize], cfg: &RefitConfig) -> Refit {
    optimize(h0, feats, &pseudo_label_term(labels), cfg)
}

/// Information maximisation over every face's feature; no labels.
pub fn refit_info_max(h0: &Head, feats: &[&[f32]], diversity: f32, cfg: &RefitConfig) -> Refit {
    optimize(h0, feats, &info_max_term(diversity), cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written gradients against central differences of the loss.
    #[test]
    fn data_term_gradients_match_finite_differences() {
        let logits: Vec<Probs> = (0..5)
            .map(|i| std::array::from_fn(|c| ((i * 7 + c * 3) as f32 * 0.37).sin() * 2.0))
            .collect();
        let labels = [0usize, 3, 3, 6, 1];
        let terms: Vec<Box<DataTerm>> = vec![Box::new(pseudo_label_term(&labels)), Box::new(info_max_term(0.8))];
        for term in &terms {
            let (_, g) = term(&logits);
            for i in 0..logits.len() {
                for c in 0..NUM_CLASSES {
                    let (mut up, mut down) = (logits.clone(), logits.clone());
                    up[i][c] += 1e-2;
                    down[i][c] -= 1e-2;
                    let num = (term(&up).0 - term(&down).0) / 2e-2;
                    assert!((num - g[i][c]).abs() < 2e-3, "row {i} class {c}: {num} vs {}", g[i][c]);
                }
            }
        }
    }
}
