//! Exponential moving average of a track's class probabilities.

use crate::fusion::Probs;

#[derive(Debug, Clone, PartialEq)]
pub struct Ema {
    /// Weight of the newest observation, in (0, 1]; 1 means no smoothing.
    pub alpha: f32,
    value: Option<Probs>,
}

impl Ema {
    pub fn new(alpha: f32) -> Self {
        Ema {
            alpha: alpha.clamp(f32::EPSILON, 1.0),
            value: None,
        }
    }

    /// Adds an observation; the first one is taken as it is.
    pub fn update(&mut self, p: &Probs) -> Probs {
        let a = self.alpha;
        let v = match self.value {
            None => *p,
            Some(prev) => std::array::from_fn(|i| a * p[i] + (1.0 - a) * prev[i]),
        };
        self.value = Some(v);
        v
    }

    pub fn value(&self) -> Option<&Probs> {
        self.value.as_ref()
    }
}
