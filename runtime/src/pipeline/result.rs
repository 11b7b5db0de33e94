//! What the pipeline says about a frame: one JSON line per frame.

use crate::detect::BBox;
use crate::fusion::Probs;
use serde::Serialize;

/// Milliseconds spent per stage on a frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StageTimes {
    pub detect: f64,
    pub crop: f64,
    pub infer: f64,
    pub fuse: f64,
}

impl StageTimes {
    pub fn total(&self) -> f64 {
        self.detect + self.crop + self.infer + self.fuse
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaceResult {
    pub track: u64,
    /// x1, y1, x2, y2 in frame pixels.
    #[serde(rename = "box")]
    pub bbox: BBox,
    /// Detector score (on the detector's own scale).
    pub score: f32,
    /// Class of the track's smoothed p̂.
    pub label: &'static str,
    pub confidence: f32,
    /// This frame's fused prediction, and the track's smoothed one; probabilities in the
    /// canonical class order.
    pub p_hat: Probs,
    pub p_smooth: Probs,
    pub p_sem: Probs,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_text: Option<Probs>,
    pub p_ins: Probs,
    /// Whether this face's embedding entered the instance buffer.
    pub added: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameResult {
    pub frame: u64,
    /// Seconds from the start of the stream.
    pub time: f64,
    pub width: u32,
    pub height: u32,
    /// Whether a detection placed this frame's tracks: one of this frame, or, detecting ahead,
    /// the previous frame's, applied here (otherwise the tracks were only carried).
    pub detected: bool,
    pub faces: Vec<FaceResult>,
    pub ms: StageTimes,
}
