//! Samples as the readers produce them.
//!
//! Labeled and unlabeled samples are separate types: an [`UnlabeledSample`] has no label field,
//! so code that trains on unlabeled data cannot read one.

use serde::{Deserialize, Serialize};
use sitfer_contract::labels::{Expression, NUM_CLASSES};
use std::path::PathBuf;
use std::sync::Arc;

/// A face box inside an image, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaceBox {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// Where a sample's pixels come from.
#[derive(Debug, Clone)]
pub enum ImageRef {
    /// An image file, optionally cropped to a face box (AffectNet).
    File { path: PathBuf, crop: Option<FaceBox> },
    /// 8-bit grayscale pixels held in memory (FER2013's CSV).
    Gray { width: u32, height: u32, pixels: Arc<[u8]> },
}

/// A training target: one class, or a distribution over the classes (FER+ votes).
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Hard(Expression),
    Soft([f32; NUM_CLASSES]),
}

impl Target {
    /// The class used for accuracy and for per-class splitting (argmax of a soft target).
    pub fn class(&self) -> Expression {
        match self {
            Target::Hard(e) => *e,
            Target::Soft(p) => {
                let mut best = 0;
                for i in 1..NUM_CLASSES {
                    if p[i] > p[best] {
                        best = i;
                    }
                }
                Expression::from_index(best).expect("index < NUM_CLASSES")
            }
        }
    }

    /// The target as a probability vector (one-hot for a hard label).
    pub fn distribution(&self) -> [f32; NUM_CLASSES] {
        match self {
            Target::Hard(e) => {
                let mut p = [0.0; NUM_CLASSES];
                p[e.index()] = 1.0;
                p
            }
            Target::Soft(p) => *p,
        }
    }
}

/// A face with its label.
#[derive(Debug, Clone)]
pub struct LabeledSample {
    /// Stable identifier, unique within the dataset (a relative path or `file:row`).
    pub id: String,
    pub image: ImageRef,
    pub target: Target,
}

/// A face without a label. Built only by dropping the label of a [`LabeledSample`] or by reading
/// unlabeled footage; there is no way back to the label from here.
#[derive(Debug, Clone)]
pub struct UnlabeledSample {
    pub id: String,
    pub image: ImageRef,
}

impl LabeledSample {
    /// Forgets the label.
    pub fn into_unlabeled(self) -> UnlabeledSample {
        UnlabeledSample {
            id: self.id,
            image: self.image,
        }
    }
}
