//! The class mix of a camera's faces, estimated from the head's predictions (Saerens, Latinne
//! & Decaestecker 2002): expectation–maximisation over the prior, each face's posterior
//! re-weighted by the ratio of the current estimate to the training mix.
//!
//! Why the refit needs it: information maximisation's diversity term pushes the mean prediction
//! toward uniform. On a camera whose faces are mostly of a few classes (a lab with no neutral
//! faces) that corrects a head stuck on the source's mix; on a camera like the training data —
//! a quarter happy, 1.5 % disgust — it pushes rare classes into being predicted and costs
//! accuracy. Pushing toward the camera's own estimated mix instead keeps the first effect where
//! the mix differs and removes the second where it does not.
//!
//! Hand-written: a few lines of arithmetic over seven classes, which no crate packages.

use crate::fusion::Probs;
use crate::labels::NUM_CLASSES;

/// EM iterations: the estimate moves by less than 1e-4 after a few dozen on thousands of faces.
const MAX_ITERS: usize = 100;
/// No class is estimated below this share, so the re-weighting and the logarithm of the
/// estimate stay finite (a class that is absent reads as rare, not impossible).
const FLOOR: f32 = 1e-3;

/// The estimated class mix of the faces whose predicted probabilities (under a model trained
/// on the class mix `source`) are `probs`; `source` itself when there are none.
pub fn estimate_prior(probs: &[Probs], source: &Probs) -> Probs {
    let source = normalized(source);
    if probs.is_empty() {
        return source;
    }
    let mut prior = source;
    for _ in 0..MAX_ITERS {
        let ratio: Probs = std::array::from_fn(|c| prior[c] / source[c]);
        let mut next = [0.0f32; NUM_CLASSES];
        for p in probs {
            let w: Probs = std::array::from_fn(|c| p[c] * ratio[c]);
            let z = w.iter().sum::<f32>().max(1e-12);
            for c in 0..NUM_CLASSES {
                next[c] += w[c] / z;
            }
        }
        let next = normalized(&next);
        let moved = next.iter().zip(&prior).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        prior = next;
        if moved < 1e-5 {
            break;
        }
    }
    prior
}

/// KL(p ‖ q) in nats, both floored at [`FLOOR`]: how far a camera's class mix is from the
/// training mix (0 for the same mix).
pub fn divergence(p: &Probs, q: &Probs) -> f32 {
    let (p, q) = (normalized(p), normalized(q));
    (0..NUM_CLASSES).map(|c| p[c] * (p[c] / q[c]).ln()).sum()
}

/// A lower confidence bound on how far the faces' class mix is from `source` (KL, nats): the
/// `level` quantile of the divergence over `resamples` bootstrap resamples of the faces, each
/// estimated anew. Why not a χ² test of the point estimate: the EM estimate on soft posteriors
/// of a hundred faces varies far more than counts of hard labels would (a class at 17 % of the
/// training mix read as 2 %), and near the simplex's edge not as χ² at all; the resamples carry
/// the estimate's own spread. Frames of one camera are not independent (near copies of one
/// face), so on live footage the bound is optimistic; on independent faces it is what it says.
/// Deterministic: the resamples are drawn from a fixed seed.
pub fn shift_lower_bound(probs: &[Probs], source: &Probs, level: f32, resamples: usize) -> f32 {
    if probs.is_empty() || resamples == 0 {
        return 0.0;
    }
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ probs.len() as u64;
    // splitmix64: a few lines instead of a dependency for one loop of index draws.
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut shifts: Vec<f32> = (0..resamples)
        .map(|_| {
            let sample: Vec<Probs> = (0..probs.len())
                .map(|_| probs[(next() % probs.len() as u64) as usize])
                .collect();
            divergence(&estimate_prior(&sample, source), source)
        })
        .collect();
    shifts.sort_by(f32::total_cmp);
    let k = ((level.clamp(0.0, 1.0) * resamples as f32).floor() as usize).min(resamples - 1);
    shifts[k]
}

/// `p` floored at [`FLOOR`] and summing to 1.
fn normalized(p: &Probs) -> Probs {
    let q: Probs = std::array::from_fn(|c| p[c].max(FLOOR));
    let s: f32 = q.iter().sum();
    std::array::from_fn(|c| q[c] / s)
}

/// The class mix of labeled rows (the bundle's anchor faces, drawn in its training mix).
pub fn class_mix(labels: &[usize]) -> Option<Probs> {
    if labels.is_empty() {
        return None;
    }
    let mut n = [0.0f32; NUM_CLASSES];
    for &y in labels.iter().filter(|&&y| y < NUM_CLASSES) {
        n[y] += 1.0;
    }
    Some(normalized(&n))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Posteriors of a calibrated model trained on `source`, for faces drawn from `target`: a
    /// face of class y shows what a face of class o shows with probability 0.6 when o = y and
    /// 0.4 / 6 otherwise (each face expanded into 30 in those proportions: 18 and 2 × 6), and the
    /// posterior of what it shows is Bayes' rule under the training mix.
    fn posteriors(source: &Probs, target: &[usize]) -> Vec<Probs> {
        let posterior = |o: usize| -> Probs {
            let joint: Probs = std::array::from_fn(|c| if c == o { 0.6 } else { 0.4 / 6.0 } * source[c]);
            let z: f32 = joint.iter().sum();
            std::array::from_fn(|c| joint[c] / z)
        };
        target
            .iter()
            .flat_map(|&y| (0..NUM_CLASSES).flat_map(move |o| std::iter::repeat_n(o, if o == y { 18 } else { 2 })))
            .map(posterior)
            .collect()
    }

    fn draw(mix: &[usize; NUM_CLASSES]) -> Vec<usize> {
        (0..NUM_CLASSES).flat_map(|c| std::iter::repeat_n(c, mix[c])).collect()
    }

    #[test]
    fn faces_in_the_training_mix_give_back_the_training_mix() {
        let counts = [110, 140, 15, 250, 170, 140, 175];
        let source = class_mix(&draw(&counts)).unwrap();
        let est = estimate_prior(&posteriors(&source, &draw(&counts)), &source);
        for c in 0..NUM_CLASSES {
            assert!(
                (est[c] - source[c]).abs() < 0.02,
                "class {c}: {} vs {}",
                est[c],
                source[c]
            );
        }
    }

    /// A camera with no faces of class 6 (CK+ has no neutral) and many of class 2: the mean
    /// posterior still gives class 6 a large share; the estimate takes most of it away.
    #[test]
    fn a_shifted_mix_is_recovered_closer_than_the_mean_prediction() {
        let source = class_mix(&draw(&[110, 140, 15, 250, 170, 140, 175])).unwrap();
        let target = [200, 60, 140, 170, 70, 110, 0];
        let truth = class_mix(&draw(&target)).unwrap();
        let probs = posteriors(&source, &draw(&target));
        let est = estimate_prior(&probs, &source);
        let mean: Probs = std::array::from_fn(|c| probs.iter().map(|p| p[c]).sum::<f32>() / probs.len() as f32);
        let l1 = |p: &Probs| p.iter().zip(&truth).map(|(a, b)| (a - b).abs()).sum::<f32>();
        assert!(
            l1(&est) < 0.5 * l1(&mean),
            "EM {} vs mean prediction {}",
            l1(&est),
            l1(&mean)
        );
        assert!(
            est[6] < 0.05 && mean[6] > 0.08,
            "neutral: EM {} mean {}",
            est[6],
            mean[6]
        );
        assert_eq!(estimate_prior(&[], &source), source);
        assert!(
            divergence(&est, &source)
                > 10.0
                    * divergence(
                        &estimate_prior(
                            &posteriors(&source, &draw(&[110, 140, 15, 250, 170, 140, 175])),
                            &source
                        ),
                        &source
                    )
        );
        assert!(divergence(&source, &source).abs() < 1e-6);
    }

    /// The bound is below the point estimate, and it grows with the number of faces behind it:
    /// of one shifted camera's faces, 1,050 bound the shift far higher than every 21st of them.
    #[test]
    fn the_lower_bound_of_a_shift_needs_enough_faces_behind_it() {
        let source = class_mix(&draw(&[110, 140, 15, 250, 170, 140, 175])).unwrap();
        let many = posteriors(&source, &draw(&[5, 0, 7, 7, 3, 3, 10]));
        let few: Vec<Probs> = many.iter().step_by(21).copied().collect();
        let point = divergence(&estimate_prior(&many, &source), &source);
        let (lo_few, lo_many) = (
            shift_lower_bound(&few, &source, 0.05, 40),
            shift_lower_bound(&many, &source, 0.05, 40),
        );
        assert!(lo_many < point && lo_many > 0.2, "many: bound {lo_many}, point {point}");
        assert!(lo_few < 0.5 * lo_many, "few {lo_few} vs many {lo_many}");
        assert_eq!(shift_lower_bound(&[], &source, 0.05, 40), 0.0);
        assert!(class_mix(&[]).is_none());
    }
}
