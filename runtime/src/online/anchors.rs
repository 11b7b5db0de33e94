//! The bundle's anchor faces on the device: labeled pooled features of the head's own domain
//! (`sitfer anchors`), split in two halves of the same class mix. The refit replays one half
//! (cross-entropy beside its unlabeled objective, [`crate::adapt::refit::Replay`]), and every
//! candidate head is scored on the other, which no refit ever fits: a candidate that is less
//! accurate there than the bundle's own head by more than a margin is refused. This is the
//! check a confidence-based watch cannot make: a self-trained head can grow surer while growing
//! wrong, but it cannot hide a loss on labeled faces it never saw.

use crate::adapt::Head;
use crate::adapt::refit::Replay;
use crate::bundle::SeedBuffer;
use crate::fusion::argmax;
use crate::labels::NUM_CLASSES;

/// Labeled pooled features.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Labeled {
    pub feats: Vec<Vec<f32>>,
    pub labels: Vec<usize>,
}

impl Labeled {
    /// Share of the rows `head` classifies right (0 for none).
    pub fn accuracy(&self, head: &Head) -> f32 {
        let right = self
            .feats
            .iter()
            .zip(&self.labels)
            .filter(|(f, y)| argmax(&head.logits(f)).0 == **y)
            .count();
        right as f32 / self.labels.len().max(1) as f32
    }
}

/// A candidate head's accuracy on the held-back half fell too far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnchorLoss {
    pub base: f32,
    pub candidate: f32,
    pub margin: f32,
}

impl std::fmt::Display for AnchorLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "accuracy on the bundle's held-back anchor faces {:.2}% under the bundle's head {:.2}% by more than {:.2} points",
            100.0 * self.candidate,
            100.0 * self.base,
            100.0 * self.margin
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Anchors {
    /// Fitted by every refit.
    pub replay: Labeled,
    /// Never fitted: where candidates are judged.
    pub check: Labeled,
    /// The bundle's head on `check`, the reference every candidate is held to (not the head in
    /// use, so that small losses cannot add up over refits).
    pub base_accuracy: f32,
    /// The class mix of all the anchors: the bundle's training mix, which they were drawn in.
    pub mix: crate::fusion::Probs,
}

impl Anchors {
    /// Splits the bundle's anchors: within each class alternately to replay and check, so both
    /// halves keep the class mix. `None` when their width is not the head's input width.
    pub fn split(a: &SeedBuffer, base: &Head) -> Option<Anchors> {
        if a.dim != base.dim || a.is_empty() {
            return None;
        }
        let (mut replay, mut check) = (Labeled::default(), Labeled::default());
        let mut seen = [0usize; NUM_CLASSES];
        for i in 0..a.len() {
            let c = a.labels[i] as usize;
            let half = if seen[c] % 2 == 0 { &mut replay } else { &mut check };
            seen[c] += 1;
            half.feats.push(a.embedding(i).to_vec());
            half.labels.push(c);
        }
        let base_accuracy = check.accuracy(base);
        let labels: Vec<usize> = a.labels.iter().map(|&y| y as usize).collect();
        let mix = crate::adapt::label_shift::class_mix(&labels)?;
        Some(Anchors {
            replay,
            check,
            base_accuracy,
            mix,
        })
    }

    /// The replay rows for a refit, at `weight`.
    pub fn replay<'a>(&'a self, feats: &'a [&'a [f32]], weight: f32) -> Replay<'a> {
        Replay {
            feats,
            labels: &self.replay.labels,
            weight,
        }
    }

    /// `candidate`'s accuracy on the held-back half; `Err` when it is below the bundle's head's
    /// by more than `margin` (a share: 0.02 is two points; `None`: never).
    pub fn judge(&self, candidate: &Head, margin: Option<f32>) -> Result<f32, AnchorLoss> {
        let acc = self.check.accuracy(candidate);
        match margin {
            Some(margin) if acc < self.base_accuracy - margin => Err(AnchorLoss {
                base: self.base_accuracy,
                candidate: acc,
                margin,
            }),
            _ => Ok(acc),
        }
    }
}
