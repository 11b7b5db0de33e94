//! Confidence thresholds that decide which pseudo-labels supervise the strong view: one fixed
//! value, or per class adaptive (Ada-CM): the running mean confidence of correctly classified
//! labeled samples of that class, so a class the model is still unsure about admits
//! pseudo-labels at a lower confidence.

use super::config::ThresholdMode;
use sitfer_contract::labels::NUM_CLASSES;

#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    mode: ThresholdMode,
    per_class: [f64; NUM_CLASSES],
}

impl Thresholds {
    /// All classes start at `base`.
    pub fn new(base: f64, mode: ThresholdMode) -> Self {
        Thresholds {
            mode,
            per_class: [base; NUM_CLASSES],
        }
    }

    pub fn get(&self, class: usize) -> f64 {
        self.per_class[class]
    }

    pub fn per_class(&self) -> [f64; NUM_CLASSES] {
        self.per_class
    }

    pub fn set_per_class(&mut self, v: [f64; NUM_CLASSES]) {
        self.per_class = v;
    }

    /// Which samples are confident enough: `conf[i] ≥ threshold(class[i])` (compared in f32, the
    /// precision of the probabilities, so a threshold of 0.95 admits a confidence of 0.95f32).
    pub fn mask(&self, conf: &[f32], class: &[usize]) -> Vec<bool> {
        conf.iter()
            .zip(class)
            .map(|(&c, &k)| c >= self.per_class[k] as f32)
            .collect()
    }

    /// Whether [`Thresholds::update`] moves anything (the labeled faces' fused confidences are
    /// only worth computing then).
    pub fn is_adaptive(&self) -> bool {
        matches!(self.mode, ThresholdMode::Adaptive { .. })
    }

    /// Adaptive mode: moves each class's threshold toward the mean confidence of this batch's
    /// correctly classified labeled samples of the class. No-op when fixed.
    pub fn update(&mut self, conf: &[f32], predicted: &[usize], truth: &[usize]) {
        let ThresholdMode::Adaptive { floor, momentum } = self.mode else {
            return;
        };
        let mut sum = [0f64; NUM_CLASSES];
        let mut n = [0usize; NUM_CLASSES];
        for ((&c, &p), &t) in conf.iter().zip(predicted).zip(truth) {
            if p == t {
                sum[t] += c as f64;
                n[t] += 1;
            }
        }
        for k in 0..NUM_CLASSES {
            if n[k] > 0 {
                let mean = sum[k] / n[k] as f64;
                let v = momentum * self.per_class[k] + (1.0 - momentum) * mean;
                self.per_class[k] = v.clamp(floor, 0.99);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_mask_is_a_plain_comparison() {
        let mut t = Thresholds::new(0.95, ThresholdMode::Fixed);
        assert_eq!(t.mask(&[0.96, 0.95, 0.94], &[0, 3, 6]), vec![true, true, false]);
        t.update(&[0.1], &[0], &[0]);
        assert_eq!(t.get(0), 0.95, "fixed thresholds never move");
    }

    #[test]
    fn adaptive_thresholds_follow_correct_labeled_confidence_per_class() {
        let mode = ThresholdMode::Adaptive {
            floor: 0.5,
            momentum: 0.5,
        };
        let mut t = Thresholds::new(0.9, mode);
        // Class 1: two correct at 0.6 and 0.8 (mean 0.7) and one wrong at 0.99 (ignored).
        // Class 2: correct at 0.1 -> pulled toward it but clamped at the floor.
        t.update(&[0.6, 0.8, 0.99, 0.1], &[1, 1, 3, 2], &[1, 1, 1, 2]);
        assert!((t.get(1) - 0.8).abs() < 1e-6, "{:?}", t.per_class());
        assert!((t.get(2) - 0.5).abs() < 1e-6, "{:?}", t.per_class());
        assert_eq!(t.get(0), 0.9, "a class without correct samples keeps its threshold");
        // Per-class masks use each class's own threshold.
        assert_eq!(t.mask(&[0.85, 0.85, 0.55], &[0, 1, 2]), vec![false, true, true]);
    }
}
