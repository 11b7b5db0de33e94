//! The "detector" for inputs that are already face crops (datasets, a face camera): the whole
//! frame is the one face.

use super::{BBox, DetectError, Detection, FaceDetector};
use crate::source::Frame;

#[derive(Debug, Clone, Copy, Default)]
pub struct WholeFrame;

impl FaceDetector for WholeFrame {
    fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>, DetectError> {
        Ok(vec![Detection {
            bbox: BBox::new(0.0, 0.0, frame.width as f32, frame.height as f32),
            score: 1.0,
            landmarks: None,
        }])
    }
    fn name(&self) -> String {
        "whole-frame".into()
    }
}
