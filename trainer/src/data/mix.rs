//! Batch-level regularisation for supervised training: mixup (Zhang et al. 2018), CutMix (Yun et
//! al. 2019) and label smoothing, as timm's `Mixup` applies them: per batch, one of mixup or CutMix
//! (each chosen with even odds when both are on) mixes every face with a partner from the same
//! batch, and the targets follow by the same λ.
//!
//! Hand-written because no crate does this on candle's side: it is a few loops over the batch's
//! CHW pixels, and drawing λ and the box from the run's seed and step keeps a resumed run
//! identical to an uninterrupted one.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};
use sitfer_contract::labels::NUM_CLASSES;

/// How a labeled batch is mixed (all off: [`BatchMix::is_off`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BatchMix {
    /// α of mixup's Beta(α, α); 0 = off.
    pub mixup_alpha: f32,
    /// α of CutMix's Beta(α, α); 0 = off.
    pub cutmix_alpha: f32,
    /// ε: targets become (1 − ε)·t + ε/K.
    pub label_smoothing: f32,
}

impl BatchMix {
    pub fn is_off(&self) -> bool {
        self.mixup_alpha <= 0.0 && self.cutmix_alpha <= 0.0 && self.label_smoothing <= 0.0
    }

    /// Mixes a batch of `targets.len()` CHW images of side `side` in place (pixels and targets),
    /// with draws from `seed` and `step` only.
    pub fn apply(&self, pixels: &mut [f32], targets: &mut [[f32; NUM_CLASSES]], side: usize, seed: u64, step: u64) {
        let b = targets.len();
        let per = pixels.len() / b.max(1);
        debug_assert_eq!(per, 3 * side * side);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x006D_6978);
        let use_cutmix = match (self.mixup_alpha > 0.0, self.cutmix_alpha > 0.0) {
            (false, false) => None,
            (true, false) => Some(false),
            (false, true) => Some(true),
            (true, true) => Some(rng.random_bool(0.5)),
        };
        if let (Some(cutmix), true) = (use_cutmix, b > 1) {
            let alpha = if cutmix { self.cutmix_alpha } else { self.mixup_alpha };
            let lam = Beta::new(alpha, alpha).expect("alpha > 0").sample(&mut rng);
            let mut partner: Vec<usize> = (0..b).collect();
            partner.shuffle(&mut rng);
            let src = pixels.to_vec();
            let src_t = targets.to_vec();
            let lam = if cutmix {
                let (y0, y1, x0, x1) = cut_box(side, lam, &mut rng);
                for (i, &j) in partner.iter().enumerate() {
                    for c in 0..3 {
                        for y in y0..y1 {
                            let row = c * side * side + y * side;
                            pixels[i * per + row + x0..i * per + row + x1]
                                .copy_from_slice(&src[j * per + row + x0..j * per + row + x1]);
                        }
                    }
                }
                // λ from the box as clipped at the border, so the targets match the pixels.
                1.0 - ((y1 - y0) * (x1 - x0)) as f32 / (side * side) as f32
            } else {
                for (i, &j) in partner.iter().enumerate() {
                    let (a, p) = (&mut pixels[i * per..(i + 1) * per], &src[j * per..(j + 1) * per]);
                    for (v, &w) in a.iter_mut().zip(p) {
                        *v = lam * *v + (1.0 - lam) * w;
                    }
                }
                lam
            };
            for (i, &j) in partner.iter().enumerate() {
                for k in 0..NUM_CLASSES {
                    targets[i][k] = lam * src_t[i][k] + (1.0 - lam) * src_t[j][k];
                }
            }
        }
        let eps = self.label_smoothing;
        if eps > 0.0 {
            for t in targets.iter_mut() {
                for v in t.iter_mut() {
                    *v = (1.0 - eps) * *v + eps / NUM_CLASSES as f32;
                }
            }
        }
    }
}

/// CutMix's box: area (1 − λ) of the image, centred uniformly, clipped at the border
/// (`y0..y1`, `x0..x1`).
fn cut_box(side: usize, lam: f32, rng: &mut impl Rng) -> (usize, usize, usize, usize) {
    let cut = ((1.0 - lam).max(0.0).sqrt() * side as f32).round() as i64;
    let (cy, cx) = (rng.random_range(0..side as i64), rng.random_range(0..side as i64));
    let clip = |v: i64| v.clamp(0, side as i64) as usize;
    (
        clip(cy - cut / 2),
        clip(cy + cut - cut / 2),
        clip(cx - cut / 2),
        clip(cx + cut - cut / 2),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Image i is the constant i + 1 in every pixel; its target is one-hot on class i.
    fn batch(b: usize, side: usize) -> (Vec<f32>, Vec<[f32; NUM_CLASSES]>) {
        let per = 3 * side * side;
        let pixels = (0..b * per).map(|k| (k / per + 1) as f32).collect();
        let targets = (0..b)
            .map(|i| {
                let mut t = [0f32; NUM_CLASSES];
                t[i] = 1.0;
                t
            })
            .collect();
        (pixels, targets)
    }

    #[test]
    fn mixup_mixes_pixels_and_targets_by_the_same_lambda() {
        let (mut p, mut t) = batch(4, 6);
        let m = BatchMix {
            mixup_alpha: 0.4,
            cutmix_alpha: 0.0,
            label_smoothing: 0.0,
        };
        m.apply(&mut p, &mut t, 6, 1, 7);
        for (i, ti) in t.iter().enumerate() {
            assert!((ti.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            // Every pixel is Σ_k target_k · (k + 1): the image is the targets' mix of the faces.
            let want: f32 = ti.iter().enumerate().map(|(k, w)| w * (k + 1) as f32).sum();
            assert!(p[i * 108..(i + 1) * 108].iter().all(|v| (v - want).abs() < 1e-4), "{i}");
        }
        // Same seed and step: the same batch (a resumed run mixes as the uninterrupted one).
        let (mut p2, mut t2) = batch(4, 6);
        m.apply(&mut p2, &mut t2, 6, 1, 7);
        assert_eq!((p, t), (p2, t2));
    }

    #[test]
    fn cutmix_targets_follow_the_pasted_area_and_smoothing_spreads_epsilon() {
        let side = 8;
        let per = 3 * side * side;
        let m = BatchMix {
            mixup_alpha: 0.0,
            cutmix_alpha: 1.0,
            label_smoothing: 0.1,
        };
        let mut any_cut = false;
        for step in 0..20 {
            let (mut p, mut t) = batch(3, side);
            m.apply(&mut p, &mut t, side, 3, step);
            for (i, ti) in t.iter().enumerate() {
                assert!((ti.iter().sum::<f32>() - 1.0).abs() < 1e-5);
                // Share of the face's own pixels, from the pixels themselves.
                let own = p[i * per..(i + 1) * per]
                    .iter()
                    .filter(|&&v| v == (i + 1) as f32)
                    .count() as f32
                    / per as f32;
                let others: f32 = (0..3).filter(|&k| k != i).map(|k| ti[k] - 0.1 / 7.0).sum();
                // Smoothed: own class (1 − ε)·λ + ε/K, where λ is the own share unless the
                // partner is the face itself.
                if own < 1.0 {
                    any_cut = true;
                    assert!(
                        ((ti[i] - 0.1 / 7.0) / 0.9 - own).abs() < 1e-4,
                        "step {step} face {i}: {ti:?} own {own}"
                    );
                }
                assert!((others / 0.9 - (1.0 - (ti[i] - 0.1 / 7.0) / 0.9)).abs() < 1e-4);
                assert!(
                    ti[3..].iter().all(|&v| (v - 0.1 / 7.0).abs() < 1e-6),
                    "classes never in the batch get ε/K"
                );
            }
        }
        assert!(any_cut, "some box was pasted in 20 batches");
    }
}
