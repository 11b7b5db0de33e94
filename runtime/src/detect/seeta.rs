//! The SeetaFace frontal cascade through the `rustface` crate: the detector that ships with
//! the project (its BSD-2 model came inside the crate; a copy is in `models/detectors/seetaface`
//! and is embedded in the binary).

use super::{BBox, DetectError, Detection, FaceDetector};
use crate::source::Frame;
use std::path::PathBuf;

static MODEL: &[u8] = include_bytes!("../../../models/detectors/seetaface/seeta_fd_frontal_v1.0.bin");

/// The cascade's search settings (rustface's own names).
#[derive(Debug, Clone, Copy)]
pub struct RustfaceConfig {
    /// Smallest face side searched, in pixels. rustface 0.1.7 stores its own setting but never
    /// uses it (its pyramid always starts at the frame's size, where the 40-px window finds faces
    /// from ~32 px), so above 40 the frame is shrunk by 40 / `min_face_size` before the cascade.
    pub min_face_size: u32,
    /// Score threshold on the cascade's last stage (rustface's examples use 2.0).
    pub score_threshold: f64,
    /// Ratio between pyramid levels (0.8: five levels per halving).
    pub pyramid_scale: f32,
    /// Sliding-window step in pixels.
    pub step: u32,
}

impl Default for RustfaceConfig {
    fn default() -> Self {
        RustfaceConfig {
            min_face_size: 20,
            score_threshold: 2.0,
            pyramid_scale: 0.8,
            step: 4,
        }
    }
}

pub struct RustfaceDetector {
    inner: Box<dyn rustface::Detector>,
    gray: Vec<u8>,
    min_face_size: u32,
}

/// The cascade's window at the first pyramid level (rustface's `K_WND_SIZE`).
const WINDOW: f32 = 40.0;

// SAFETY: `rustface::create_detector_with_model` returns a `FuStDetector`, which owns only
// plain vectors and numbers (no Rc, cells or shared pointers); the boxed trait object lacks
// `Send` only because `rustface::Detector` does not declare it. It is used by one thread at a
// time, through `&mut self`.
unsafe impl Send for RustfaceDetector {}

impl RustfaceDetector {
    pub fn new(cfg: RustfaceConfig) -> Result<Self, DetectError> {
        let model = rustface::read_model(MODEL).map_err(|e| DetectError::Model {
            file: PathBuf::from("models/detectors/seetaface/seeta_fd_frontal_v1.0.bin"),
            message: e.to_string(),
        })?;
        let mut inner = rustface::create_detector_with_model(model);
        inner.set_min_face_size(cfg.min_face_size.max(20));
        inner.set_score_thresh(cfg.score_threshold);
        inner.set_pyramid_scale_factor(cfg.pyramid_scale.clamp(0.1, 0.99));
        inner.set_slide_window_step(cfg.step.max(1), cfg.step.max(1));
        Ok(RustfaceDetector {
            inner,
            gray: Vec::new(),
            min_face_size: cfg.min_face_size,
        })
    }
}

/// BT.601 luma, what the SeetaFace model was trained on (OpenCV's grey conversion).
pub(crate) fn luma(frame: &Frame, out: &mut Vec<u8>) {
    out.clear();
    out.extend(
        frame
            .rgb
            .chunks_exact(3)
            .map(|p| ((77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32 + 128) >> 8) as u8),
    );
}

impl FaceDetector for RustfaceDetector {
    fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>, DetectError> {
        // The cascade panics on images smaller than its window.
        if frame.width < 20 || frame.height < 20 {
            return Ok(Vec::new());
        }
        luma(frame, &mut self.gray);
        let shrink = (WINDOW / self.min_face_size as f32).min(1.0);
        let (w, h) = (
            ((frame.width as f32 * shrink).round() as u32).max(1),
            ((frame.height as f32 * shrink).round() as u32).max(1),
        );
        if w < 20 || h < 20 {
            return Ok(Vec::new());
        }
        let faces = if shrink < 1.0 {
            let full = image::GrayImage::from_raw(frame.width, frame.height, std::mem::take(&mut self.gray))
                .expect("one luma byte per pixel");
            let small = image::imageops::resize(&full, w, h, image::imageops::FilterType::Triangle);
            self.gray = full.into_raw();
            self.inner.detect(&rustface::ImageData::new(small.as_raw(), w, h))
        } else {
            self.inner.detect(&rustface::ImageData::new(&self.gray, w, h))
        };
        let up = 1.0 / shrink;
        Ok(faces
            .iter()
            .map(|f| {
                let b = f.bbox();
                let (x, y) = (b.x() as f32 * up, b.y() as f32 * up);
                let (bw, bh) = (b.width() as f32 * up, b.height() as f32 * up);
                Detection {
                    bbox: BBox::new(x, y, x + bw, y + bh).clamp(frame.width, frame.height),
                    score: f.score() as f32,
                    landmarks: None,
                }
            })
            .collect())
    }
    fn name(&self) -> String {
        "rustface".into()
    }
}
