//! The rollback rule after a head swap. The collapse guard judged the candidate on faces seen
//! before the swap; the watch judges it on the faces that come after, where a self-trained head
//! goes wrong first. Comparing the live frames before the swap with those after would mostly
//! measure the scene (someone else walked in, the person stopped smiling), so both heads score
//! the same post-swap faces (two 7 × F dot products per face, next to nothing) and the new head
//! is kept only if, over the first `faces` faces after the swap:
//! - its mean max-probability is no more than `max_confidence_drop` under the old head's: a
//!   refit on the device's own confident faces should make it surer of them, not less sure;
//! - the distribution of its predicted classes has not collapsed against the old head's: no
//!   class the old head predicted on at least `vanish_share` of the faces falls under a fifth
//!   of that share (the collapse guard's rule), and no class holds more than
//!   `max_class_share` unless it already did under the old head.
//!
//! Otherwise the previous head comes back (a pointer swap, like the swap itself).

use crate::adapt::{Collapse, GuardConfig, Head};
use crate::fusion::{argmax, softmax};
use crate::labels::{ALL, NUM_CLASSES};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WatchConfig {
    /// Faces after a swap before the new head is confirmed or rolled back.
    pub faces: u64,
    /// Largest drop of the mean max-probability (p_sem at τ 1) allowed.
    pub max_confidence_drop: f32,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            faces: 64,
            max_confidence_drop: 0.05,
        }
    }
}

/// Why a new head was rolled back.
#[derive(Debug, Clone, PartialEq)]
pub enum Degraded {
    Confidence { before: f32, after: f32 },
    Collapse(Collapse),
}

impl std::fmt::Display for Degraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Degraded::Confidence { before, after } => write!(
                f,
                "mean confidence fell from {before:.3} (previous head) to {after:.3} on the same faces"
            ),
            Degraded::Collapse(c) => write!(f, "{c}"),
        }
    }
}

/// Scores the faces after one swap under the previous and the new head.
#[derive(Debug, Clone)]
pub struct Watch {
    pub previous: Arc<Head>,
    faces: u64,
    conf: [f64; 2],
    counts: [[usize; NUM_CLASSES]; 2],
    /// The class mix the new head was fitted toward, when the guard follows it.
    toward: Option<[f32; NUM_CLASSES]>,
}

/// What a watch concluded.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Pending,
    Keep,
    RollBack(Vec<Degraded>),
}

impl Watch {
    pub fn new(previous: Arc<Head>) -> Self {
        Self::toward(previous, None)
    }

    /// A watch whose collapse check lets the classes vanish that `toward`, the class mix the
    /// new head was fitted toward, puts under a fifth of their share (the guard's rule).
    pub fn toward(previous: Arc<Head>, toward: Option<[f32; NUM_CLASSES]>) -> Self {
        Watch {
            previous,
            faces: 0,
            conf: [0.0; 2],
            counts: [[0; NUM_CLASSES]; 2],
            toward,
        }
    }

    /// Counts one face's pooled feature under both heads.
    pub fn observe(&mut self, current: &Head, feature: &[f32]) {
        for (k, h) in [self.previous.as_ref(), current].into_iter().enumerate() {
            let (c, p) = argmax(&softmax(&h.logits(feature)));
            self.conf[k] += p as f64;
            self.counts[k][c] += 1;
        }
        self.faces += 1;
    }

    pub fn verdict(&self, cfg: &WatchConfig, guard: &GuardConfig) -> Verdict {
        if self.faces < cfg.faces.max(1) {
            return Verdict::Pending;
        }
        let n = self.faces as f64;
        let (before, after) = ((self.conf[0] / n) as f32, (self.conf[1] / n) as f32);
        let mut found = Vec::new();
        if after < before - cfg.max_confidence_drop {
            found.push(Degraded::Confidence { before, after });
        }
        let [old, new] = &self.counts;
        found.extend(
            guard
                .check_predictions_toward(old, new, self.toward.as_ref())
                .into_iter()
                .map(Degraded::Collapse),
        );
        let share = |c: &[usize; NUM_CLASSES], k: usize| c[k] as f32 / n as f32;
        for (k, class) in ALL.iter().enumerate() {
            if share(new, k) > guard.max_class_share && share(old, k) <= guard.max_class_share {
                found.push(Degraded::Collapse(Collapse::DominantClass {
                    class: class.name(),
                    share: share(new, k),
                    max: guard.max_class_share,
                }));
            }
        }
        if found.is_empty() {
            Verdict::Keep
        } else {
            Verdict::RollBack(found)
        }
    }
}
