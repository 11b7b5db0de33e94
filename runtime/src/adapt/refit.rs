//! Refit of the classifier head (`fc`) on the footage's features, anchored to the bundle's
//! weights by an L2 pull so that a small or skewed footage set nudges the head instead of
//! replacing it. Two objectives:
//! - pseudo-labels: class-balanced cross-entropy toward the selected faces' pseudo-labels
//!   (self-training);
//! - information maximisation (SHOT, Liang et al. 2020, on the head only): each face's
//!   prediction confident (low conditional entropy) while the predictions over the footage stay
//!   diverse (high marginal entropy); it uses every face and no labels at all;
//! - SHOT's full objective: information maximisation plus β × cross-entropy toward
//!   self-supervised pseudo-labels from nearest class centroids of the features, relabelled as
//!   the head moves.
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
    /// Information maximisation plus `beta` × cross-entropy toward the nearest-centroid labels
    /// ([`cluster_labels`]), recomputed `relabels` times over the refit (SHOT: β 0.3, labels
    /// recomputed 15 times over training).
    Shot {
        diversity: f32,
        beta: f32,
        relabels: usize,
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
    /// The class mix the diversity term pulls the mean prediction toward, as KL(mean ‖ mix)
    /// ([`super::label_shift`]); `None`: uniform, SHOT's marginal entropy.
    pub target_mix: Option<Probs>,
}

impl Default for RefitConfig {
    fn default() -> Self {
        RefitConfig {
            objective: Objective::PseudoLabels,
            steps: 100,
            lr: 1e-2,
            anchor: 1e-2,
            target_mix: None,
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

/// The data term at an optimiser step: loss and its gradient with respect to each row's logits.
type DataTerm<'a> = dyn FnMut(usize, &[Probs]) -> (f32, Vec<Probs>) + 'a;

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

/// Mean conditional entropy plus `diversity` × KL(mean prediction ‖ `mix`); with no mix, uniform:
/// minus the entropy of the mean prediction (SHOT's), up to a constant.
fn info_max_term(diversity: f32, mix: Option<Probs>) -> impl Fn(&[Probs]) -> (f32, Vec<Probs>) {
    // KL(mean ‖ mix) = Σ mean (log mean − log mix): with a uniform mix it is −H(mean) + log K,
    // so one expression serves both, and the gradients differ only through log mix.
    let log_mix: Probs = match mix {
        Some(m) => std::array::from_fn(|c| m[c].max(1e-12).ln()),
        None => [-(NUM_CLASSES as f32).ln(); NUM_CLASSES],
    };
    move |logits: &[Probs]| {
        let n = logits.len().max(1) as f32;
        let ps: Vec<Probs> = logits.iter().map(softmax).collect();
        let mean: Probs = std::array::from_fn(|c| ps.iter().map(|p| p[c]).sum::<f32>() / n);
        let log_ratio: Probs = std::array::from_fn(|c| mean[c].max(1e-12).ln() - log_mix[c]);
        let divergence: f32 = (0..NUM_CLASSES).map(|c| mean[c] * log_ratio[c]).sum::<f32>();
        let mut cond = 0.0;
        let grads = ps
            .iter()
            .map(|p| {
                let logp: Probs = std::array::from_fn(|c| p[c].max(1e-12).ln());
                let h: f32 = -(0..NUM_CLASSES).map(|c| p[c] * logp[c]).sum::<f32>();
                cond += h / n;
                // d H(p)/dz_j = -p_j (log p_j + H); d KL(mean ‖ mix)/dz_j = p_j (r_j - Σ_c p_c r_c) / n,
                // r = log mean − log mix.
                let pr: f32 = (0..NUM_CLASSES).map(|c| p[c] * log_ratio[c]).sum();
                std::array::from_fn(|j| -p[j] * (logp[j] + h) / n + diversity * p[j] * (log_ratio[j] - pr) / n)
            })
            .collect();
        (cond + diversity * divergence, grads)
    }
}

/// SHOT's self-supervised pseudo-labels (Liang et al. 2020, eq. 4–6, as in their code): the
/// features get a constant 1 appended and are L2-normalised; class centroids are the features
/// averaged with the predicted probabilities as weights; each face takes its nearest centroid
/// (cosine); then centroids of those hard labels (classes with no face left out) and a second
/// nearest-centroid pass. Unlike the predictions themselves, the labels follow the footage's
/// own cluster structure, which corrects part of a shifted head's systematic confusions.
pub fn cluster_labels(feats: &[&[f32]], probs: &[Probs]) -> Vec<usize> {
    let normed: Vec<Vec<f32>> = feats
        .iter()
        .map(|f| {
            let mut v: Vec<f32> = f.iter().copied().chain(std::iter::once(1.0)).collect();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            v.iter_mut().for_each(|x| *x /= n);
            v
        })
        .collect();
    let dim = normed.first().map_or(0, Vec::len);
    // Centroids come unit-length, so the cosine is a dot product.
    let nearest = |centroids: &[Option<Vec<f32>>]| -> Vec<usize> {
        normed
            .iter()
            .map(|f| {
                let mut best = (0, f32::NEG_INFINITY);
                for (c, centroid) in centroids.iter().enumerate() {
                    if let Some(m) = centroid {
                        let cos = f.iter().zip(m).map(|(a, b)| a * b).sum::<f32>();
                        if cos > best.1 {
                            best = (c, cos);
                        }
                    }
                }
                best.0
            })
            .collect()
    };
    // The weighted mean of the features, scaled to unit length (only its direction counts).
    let centroids = |weight: &dyn Fn(usize, usize) -> f32| -> Vec<Option<Vec<f32>>> {
        (0..NUM_CLASSES)
            .map(|c| {
                let mut sum = vec![0.0f32; dim];
                let mut total = 0.0f32;
                for (i, f) in normed.iter().enumerate() {
                    let w = weight(i, c);
                    if w > 0.0 {
                        total += w;
                        sum.iter_mut().zip(f).for_each(|(s, x)| *s += w * x);
                    }
                }
                let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt();
                (total > 0.0 && norm > 0.0).then(|| sum.into_iter().map(|s| s / norm).collect())
            })
            .collect()
    };
    let first = nearest(&centroids(&|i, c| probs[i][c]));
    nearest(&centroids(&|i, c| (first[i] == c) as u8 as f32))
}

/// Information maximisation plus `beta` × mean cross-entropy toward [`cluster_labels`] of the
/// current predictions, relabelled every `interval` steps.
fn shot_term<'a>(
    feats: &'a [&'a [f32]],
    diversity: f32,
    beta: f32,
    interval: usize,
    mix: Option<Probs>,
) -> impl FnMut(usize, &[Probs]) -> (f32, Vec<Probs>) + 'a {
    let im = info_max_term(diversity, mix);
    let mut labels: Option<(usize, Vec<usize>)> = None;
    move |step: usize, logits: &[Probs]| {
        let stale = match &labels {
            None => true,
            Some((at, _)) => step != *at && step.is_multiple_of(interval.max(1)),
        };
        if stale {
            let probs: Vec<Probs> = logits.iter().map(softmax).collect();
            labels = Some((step, cluster_labels(feats, &probs)));
        }
        let y = &labels.as_ref().expect("labelled above").1;
        let (mut loss, mut grads) = im(logits);
        let n = logits.len().max(1) as f32;
        for ((z, &y), g) in logits.iter().zip(y).zip(grads.iter_mut()) {
            let p = softmax(z);
            loss -= beta * p[y].max(1e-12).ln() / n;
            for c in 0..NUM_CLASSES {
                g[c] += beta * (p[c] - (c == y) as u8 as f32) / n;
            }
        }
        (loss, grads)
    }
}

fn anchored(
    head: &Head,
    h0: &Head,
    feats: &[&[f32]],
    step: usize,
    term: &mut DataTerm,
    anchor: f32,
) -> (f32, Vec<Probs>) {
    let logits: Vec<Probs> = feats.iter().map(|f| head.logits(f)).collect();
    let (loss, grads) = term(step, &logits);
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

fn optimize(h0: &Head, feats: &[&[f32]], term: &mut DataTerm, cfg: &RefitConfig) -> Refit {
    let mut head = h0.clone();
    let (d, n) = (head.dim, head.weight.len());
    let mut g = vec![0.0f32; n + NUM_CLASSES];
    // Adam moments, weights then biases.
    let (mut m, mut v) = (vec![0.0f32; n + NUM_CLASSES], vec![0.0f32; n + NUM_CLASSES]);
    let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    let loss_before = anchored(&head, h0, feats, 0, term, cfg.anchor).0;
    for t in 1..=cfg.steps {
        let (_, grads) = anchored(&head, h0, feats, t - 1, term, cfg.anchor);
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
    let loss_after = anchored(&head, h0, feats, cfg.steps, term, cfg.anchor).0;
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

/// Labeled rows the refit also fits by plain cross-entropy (the bundle's anchor faces, in the
/// class mix of the head's training data): replaying them keeps the head right on its own
/// domain while the data term moves it toward the new one (the in-domain cost of an unlabeled
/// objective, which otherwise pulls the predictions toward whatever it rewards).
#[derive(Debug, Clone, Copy)]
pub struct Replay<'a> {
    pub feats: &'a [&'a [f32]],
    pub labels: &'a [usize],
    /// Weight of the replay's mean cross-entropy against the data term.
    pub weight: f32,
}

/// `term` over the first `n` rows plus the replay's mean cross-entropy over the rest. Plain,
/// not class-balanced: the anchor faces' class mix is the prior the head should keep.
fn with_replay<'a, 'b: 'a>(
    term: &'a mut DataTerm<'b>,
    n: usize,
    r: Replay<'a>,
) -> impl FnMut(usize, &[Probs]) -> (f32, Vec<Probs>) + 'a {
    let m = r.labels.len().max(1) as f32;
    move |step: usize, logits: &[Probs]| {
        let (mut loss, mut grads) = term(step, &logits[..n]);
        for (z, &y) in logits[n..].iter().zip(r.labels) {
            let p = softmax(z);
            loss -= r.weight * p[y].max(1e-12).ln() / m;
            grads.push(std::array::from_fn(|c| r.weight * (p[c] - (c == y) as u8 as f32) / m));
        }
        (loss, grads)
    }
}

/// The refit of `h0` by `objective` on `feats` (`labels`: their pseudo-labels, read by the
/// pseudo-label objective only), with the replay rows added to every step when given.
pub fn refit_objective(
    h0: &Head,
    feats: &[&[f32]],
    labels: &[usize],
    objective: Objective,
    replay: Option<Replay>,
    cfg: &RefitConfig,
) -> Refit {
    let cfg = RefitConfig { objective, ..*cfg };
    let mut term: Box<DataTerm> = match objective {
        Objective::PseudoLabels => {
            let t = pseudo_label_term(labels);
            Box::new(move |_, z: &[Probs]| t(z))
        }
        Objective::InfoMax { diversity } => {
            let t = info_max_term(diversity, cfg.target_mix);
            Box::new(move |_, z: &[Probs]| t(z))
        }
        Objective::Shot {
            diversity,
            beta,
            relabels,
        } => Box::new(shot_term(
            feats,
            diversity,
            beta,
            cfg.steps.div_ceil(relabels.max(1)).max(1),
            cfg.target_mix,
        )),
    };
    match replay {
        None => optimize(h0, feats, &mut term, &cfg),
        Some(r) => {
            let all: Vec<&[f32]> = feats.iter().chain(r.feats).copied().collect();
            optimize(h0, &all, &mut with_replay(&mut term, feats.len(), r), &cfg)
        }
    }
}

/// Self-training: fits the head to the pseudo-labels of `feats`.
pub fn refit(h0: &Head, feats: &[&[f32]], labels: &[usize], cfg: &RefitConfig) -> Refit {
    let term = pseudo_label_term(labels);
    optimize(h0, feats, &mut |_, z: &[Probs]| term(z), cfg)
}

/// Information maximisation over every face's feature; no labels.
pub fn refit_info_max(h0: &Head, feats: &[&[f32]], diversity: f32, cfg: &RefitConfig) -> Refit {
    let term = info_max_term(diversity, cfg.target_mix);
    optimize(h0, feats, &mut |_, z: &[Probs]| term(z), cfg)
}

/// SHOT's objective over every face's feature: information maximisation and nearest-centroid
/// pseudo-labels, recomputed `relabels` times over the steps; no labels.
pub fn refit_shot(h0: &Head, feats: &[&[f32]], diversity: f32, beta: f32, relabels: usize, cfg: &RefitConfig) -> Refit {
    let interval = cfg.steps.div_ceil(relabels.max(1)).max(1);
    optimize(
        h0,
        feats,
        &mut shot_term(feats, diversity, beta, interval, cfg.target_mix),
        cfg,
    )
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
        let feats: Vec<Vec<f32>> = (0..5)
            .map(|i| vec![(i as f32).cos(), (i as f32 * 0.5).sin(), 1.0])
            .collect();
        let feat_refs: Vec<&[f32]> = feats.iter().map(Vec::as_slice).collect();
        let (pl, im) = (pseudo_label_term(&labels), info_max_term(0.8, None));
        // Info-max on the first three rows, the last two replayed with their labels.
        let im3 = info_max_term(0.8, None);
        let mut inner: Box<DataTerm> = Box::new(move |_, z: &[Probs]| im3(z));
        let replay = Replay {
            feats: &feat_refs[3..],
            labels: &[2, 5],
            weight: 0.7,
        };
        let toward_mix = info_max_term(0.8, Some([0.3, 0.05, 0.15, 0.2, 0.1, 0.1, 0.1]));
        let mut terms: Vec<Box<DataTerm>> = vec![
            Box::new(move |_, z: &[Probs]| pl(z)),
            Box::new(move |_, z: &[Probs]| im(z)),
            Box::new(move |_, z: &[Probs]| toward_mix(z)),
            // Relabels only at step 0: the labels stay fixed while differences are taken.
            Box::new(shot_term(&feat_refs, 0.8, 0.3, usize::MAX, None)),
            Box::new(with_replay(&mut inner, 3, replay)),
        ];
        for term in &mut terms {
            let (_, g) = term(0, &logits);
            for i in 0..logits.len() {
                for c in 0..NUM_CLASSES {
                    let (mut up, mut down) = (logits.clone(), logits.clone());
                    up[i][c] += 1e-2;
                    down[i][c] -= 1e-2;
                    let num = (term(0, &up).0 - term(0, &down).0) / 2e-2;
                    assert!((num - g[i][c]).abs() < 2e-3, "row {i} class {c}: {num} vs {}", g[i][c]);
                }
            }
        }
    }

    /// A head that is biased toward one class: it gives most of the second cluster to class 0,
    /// but the centroids follow the features, so the nearest-centroid labels split the clusters.
    #[test]
    fn cluster_labels_follow_the_features_not_the_head() {
        let feats: Vec<Vec<f32>> = (0..20)
            .map(|i| {
                let j = (i % 10) as f32 * 0.01;
                if i < 10 { vec![1.0, j, 0.0] } else { vec![0.0, j, 1.0] }
            })
            .collect();
        let refs: Vec<&[f32]> = feats.iter().map(Vec::as_slice).collect();
        let probs: Vec<Probs> = (0..20)
            .map(|i| {
                let mut p = [0.0; NUM_CLASSES];
                // Cluster A: class 0 sure; cluster B: class 0 preferred on 7 of 10 faces.
                let (p0, p3) = if i < 10 {
                    (0.9, 0.1)
                } else if i < 17 {
                    (0.55, 0.45)
                } else {
                    (0.3, 0.7)
                };
                p[0] = p0;
                p[3] = p3;
                p
            })
            .collect();
        let predicted: Vec<usize> = probs.iter().map(|p| crate::fusion::argmax(p).0).collect();
        assert_eq!(predicted.iter().filter(|&&c| c == 0).count(), 17);
        let labels = cluster_labels(&refs, &probs);
        assert!(labels[..10].iter().all(|&c| c == 0), "{labels:?}");
        assert!(labels[10..].iter().all(|&c| c == 3), "{labels:?}");
    }
}
