//! The collapse guard. Self-training on one's own confident predictions can run away: footage
//! of one person smiling makes "happy" the only pseudo-label, and a head refitted on it forgets
//! the other classes. Before anything is written the guard checks the pseudo-labels (enough of
//! them, no class dominating, enough entropy) and what the adapted bundle predicts on the
//! footage (no class it used to predict vanishes); any finding stops the adaptation.

use crate::labels::{ALL, NUM_CLASSES};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardConfig {
    /// Confident faces needed at all.
    pub min_pseudo_labels: usize,
    /// Largest share of the pseudo-labels one class may hold.
    pub max_class_share: f32,
    /// Smallest entropy of the pseudo-label class distribution, as a fraction of ln(classes).
    pub min_entropy: f32,
    /// A class predicted on at least this share of the footage's faces before adaptation
    /// must keep at least a fifth of it after.
    pub vanish_share: f32,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            min_pseudo_labels: 20,
            max_class_share: 0.75,
            min_entropy: 0.25,
            vanish_share: 0.05,
        }
    }
}

/// Why an adaptation was stopped.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Collapse {
    TooFewPseudoLabels {
        found: usize,
        needed: usize,
    },
    DominantClass {
        class: &'static str,
        share: f32,
        max: f32,
    },
    LowEntropy {
        entropy: f32,
        min: f32,
    },
    ClassVanished {
        class: &'static str,
        share_before: f32,
        share_after: f32,
    },
}

impl std::fmt::Display for Collapse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Collapse::TooFewPseudoLabels { found, needed } => write!(
                f,
                "only {found} pseudo-labels (at least {needed} needed): give more footage, or raise --top-fraction or lower --threshold"
            ),
            Collapse::DominantClass { class, share, max } => write!(
                f,
                "{class} holds {:.0}% of the pseudo-labels (at most {:.0}% allowed): the footage or the model is one-sided",
                share * 100.0,
                max * 100.0
            ),
            Collapse::LowEntropy { entropy, min } => write!(
                f,
                "pseudo-label entropy {entropy:.2} of the maximum (at least {min:.2} needed): the labels are degenerate"
            ),
            Collapse::ClassVanished {
                class,
                share_before,
                share_after,
            } => write!(
                f,
                "{class} vanished: predicted on {:.1}% of the footage's faces before adaptation, {:.1}% after",
                share_before * 100.0,
                share_after * 100.0
            ),
        }
    }
}

/// Entropy of a count distribution as a fraction of ln(NUM_CLASSES).
pub fn normalized_entropy(counts: &[usize; NUM_CLASSES]) -> f32 {
    let n: usize = counts.iter().sum();
    if n == 0 {
        return 0.0;
    }
    let h: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n as f64;
            -p * p.ln()
        })
        .sum();
    (h / (NUM_CLASSES as f64).ln()) as f32
}

fn shares(counts: &[usize; NUM_CLASSES]) -> [f32; NUM_CLASSES] {
    let n = counts.iter().sum::<usize>().max(1) as f32;
    std::array::from_fn(|c| counts[c] as f32 / n)
}

impl GuardConfig {
    /// Findings on the class counts of all confident pseudo-labels.
    pub fn check_pseudo_labels(&self, counts: &[usize; NUM_CLASSES]) -> Vec<Collapse> {
        let n: usize = counts.iter().sum();
        if n < self.min_pseudo_labels {
            return vec![Collapse::TooFewPseudoLabels {
                found: n,
                needed: self.min_pseudo_labels,
            }];
        }
        let mut found = Vec::new();
        let s = shares(counts);
        let (top, &share) = s.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).expect("classes");
        if share > self.max_class_share {
            found.push(Collapse::DominantClass {
                class: ALL[top].name(),
                share,
                max: self.max_class_share,
            });
        }
        let entropy = normalized_entropy(counts);
        if entropy < self.min_entropy {
            found.push(Collapse::LowEntropy {
                entropy,
                min: self.min_entropy,
            });
        }
        found
    }

    /// Findings on the predicted classes of the footage's faces before and after adaptation.
    pub fn check_predictions(&self, before: &[usize; NUM_CLASSES], after: &[usize; NUM_CLASSES]) -> Vec<Collapse> {
        self.check_predictions_toward(before, after, None)
    }

    /// As [`Self::check_predictions`], for a head fitted toward the class mix `toward`: a class
    /// that mix itself puts under a fifth of its share before is not a collapse when it
    /// vanishes, since the refit was asked to shrink it (CK+ has no neutral faces, and a head
    /// that stops predicting neutral there is right).
    pub fn check_predictions_toward(
        &self,
        before: &[usize; NUM_CLASSES],
        after: &[usize; NUM_CLASSES],
        toward: Option<&[f32; NUM_CLASSES]>,
    ) -> Vec<Collapse> {
        let (b, a) = (shares(before), shares(after));
        // One rule for what "vanished" means, applied to the new head and to the target mix.
        let under_a_fifth = |share: f32, c: usize| share < b[c] / 5.0;
        let expected_to_shrink = |c: usize| toward.is_some_and(|t| under_a_fifth(t[c], c));
        (0..NUM_CLASSES)
            .filter(|&c| b[c] >= self.vanish_share && under_a_fifth(a[c], c) && !expected_to_shrink(c))
            .map(|c| Collapse::ClassVanished {
                class: ALL[c].name(),
                share_before: b[c],
                share_after: a[c],
            })
            .collect()
    }
}
