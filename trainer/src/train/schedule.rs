//! Learning-rate schedules.

use serde::{Deserialize, Serialize};

/// Linear warm-up followed by cosine decay to `min_lr_ratio * base` at `total` steps, or a
/// constant rate after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub base_lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
    pub cosine: bool,
    pub min_lr_ratio: f64,
}

impl Schedule {
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        if !self.cosine {
            return self.base_lr;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        let min = self.base_lr * self.min_lr_ratio;
        min + 0.5 * (self.base_lr - min) * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_to_min() {
        let s = Schedule {
            base_lr: 1.0,
            warmup_steps: 10,
            total_steps: 110,
            cosine: true,
            min_lr_ratio: 0.0,
        };
        assert!((s.lr(0) - 0.1).abs() < 1e-12);
        assert!((s.lr(9) - 1.0).abs() < 1e-12);
        assert!((s.lr(10) - 1.0).abs() < 1e-12);
        assert!((s.lr(60) - 0.5).abs() < 1e-12);
        assert!(s.lr(110).abs() < 1e-12);
        assert!(s.lr(35) > s.lr(36));
    }
}
