//! An ONNX face detector in the UltraFace output format, run by tract: input `[1, 3, H, W]`
//! RGB normalised as `(x - mean) / std` on 0–255 pixels; outputs `scores [1, N, 2]`
//! (background, face) and `boxes [1, N, 4]` (x1, y1, x2, y2 as fractions of the frame).
//! Which weights to use is the user's (or board profile's) choice; none ship with sitfer.

use super::{BBox, DetectError, Detection, FaceDetector, nms};
use crate::infer::guard::tract_guarded;
use crate::source::Frame;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tract_onnx::prelude::*;

#[derive(Debug, Clone, Copy)]
pub struct OnnxDetectorConfig {
    /// Network input width and height.
    pub width: u32,
    pub height: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Face probability a box needs.
    pub score_threshold: f32,
    pub iou_threshold: f32,
    pub max_faces: usize,
}

impl Default for OnnxDetectorConfig {
    /// UltraFace RFB-320 / slim-320.
    fn default() -> Self {
        OnnxDetectorConfig {
            width: 320,
            height: 240,
            mean: [127.0; 3],
            std: [128.0; 3],
            score_threshold: 0.7,
            iou_threshold: 0.3,
            max_faces: 64,
        }
    }
}

pub struct OnnxDetector {
    plan: Arc<TypedRunnableModel>,
    cfg: OnnxDetectorConfig,
    file: PathBuf,
    input: Vec<f32>,
    /// Which output is `scores` and which `boxes`.
    scores_out: usize,
    boxes_out: usize,
}

impl OnnxDetector {
    pub fn load(path: &Path, cfg: OnnxDetectorConfig) -> Result<Self, DetectError> {
        let bytes = std::fs::read(path).map_err(|e| DetectError::Model {
            file: path.to_path_buf(),
            message: e.to_string(),
        })?;
        OnnxDetector::from_bytes(&bytes, path, cfg)
    }

    pub fn from_bytes(bytes: &[u8], path: &Path, cfg: OnnxDetectorConfig) -> Result<Self, DetectError> {
        let err = |message: String| DetectError::Model {
            file: path.to_path_buf(),
            message,
        };
        let (w, h) = (cfg.width as usize, cfg.height as usize);
        let typed = tract_guarded(&format!("not a loadable ONNX model at {w}x{h}"), || {
            tract_onnx::onnx()
                .model_for_read(&mut &bytes[..])?
                .with_input_fact(0, f32::fact([1, 3, h, w]).into())?
                .into_typed()
        })
        .map_err(err)?;
        let outs = typed.output_outlets().map_err(|e| err(e.to_string()))?.len();
        let last = |i: usize| -> Option<i64> {
            typed
                .output_fact(i)
                .ok()
                .and_then(|f| f.shape.iter().last().and_then(|d| d.as_i64()))
        };
        let (mut scores_out, mut boxes_out) = (None, None);
        for i in 0..outs {
            match last(i) {
                Some(2) => scores_out = scores_out.or(Some(i)),
                Some(4) => boxes_out = boxes_out.or(Some(i)),
                _ => {}
            }
        }
        let (Some(scores_out), Some(boxes_out)) = (scores_out, boxes_out) else {
            return Err(err(format!(
                "{outs} outputs without the UltraFace pair `scores [1, N, 2]` and `boxes [1, N, 4]`"
            )));
        };
        let plan = tract_guarded("optimising", || typed.into_optimized()?.into_runnable()).map_err(err)?;
        Ok(OnnxDetector {
            plan,
            cfg,
            file: path.to_path_buf(),
            input: vec![0.0; 3 * w * h],
            scores_out,
            boxes_out,
        })
    }

    fn run_err(&self, e: impl std::fmt::Display) -> DetectError {
        DetectError::Run {
            detector: self.name(),
            message: e.to_string(),
        }
    }
}

/// Bilinear resampling of the whole frame into `[3, h, w]` with `(x - mean) / std`.
fn frame_to_chw(frame: &Frame, w: usize, h: usize, mean: [f32; 3], std: [f32; 3], out: &mut [f32]) {
    let (fw, fh) = (frame.width as usize, frame.height as usize);
    let sx = fw as f32 / w as f32;
    let sy = fh as f32 / h as f32;
    let plane = w * h;
    let inv: [f32; 3] = std.map(|s| 1.0 / s);
    for y in 0..h {
        let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (fh - 1) as f32);
        let y0 = fy as usize;
        let y1 = (y0 + 1).min(fh - 1);
        let ty = fy - y0 as f32;
        for x in 0..w {
            let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (fw - 1) as f32);
            let x0 = fx as usize;
            let x1 = (x0 + 1).min(fw - 1);
            let tx = fx - x0 as f32;
            for c in 0..3 {
                let p = |xx: usize, yy: usize| frame.rgb[(yy * fw + xx) * 3 + c] as f32;
                let top = p(x0, y0) + (p(x1, y0) - p(x0, y0)) * tx;
                let bot = p(x0, y1) + (p(x1, y1) - p(x0, y1)) * tx;
                let v = top + (bot - top) * ty;
                out[c * plane + y * w + x] = (v - mean[c]) * inv[c];
            }
        }
    }
}

impl FaceDetector for OnnxDetector {
    fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>, DetectError> {
        if frame.width == 0 || frame.height == 0 {
            return Ok(Vec::new());
        }
        let (w, h) = (self.cfg.width as usize, self.cfg.height as usize);
        frame_to_chw(frame, w, h, self.cfg.mean, self.cfg.std, &mut self.input);
        let x = Tensor::from_shape(&[1, 3, h, w], &self.input).map_err(|e| self.run_err(e))?;
        let out = self.plan.run(tvec![x.into_tvalue()]).map_err(|e| self.run_err(e))?;
        let flat = |i: usize| -> Result<Vec<f32>, DetectError> {
            Ok(out[i]
                .to_plain_array_view::<f32>()
                .map_err(|e| self.run_err(e))?
                .iter()
                .copied()
                .collect())
        };
        let (scores, boxes) = (flat(self.scores_out)?, flat(self.boxes_out)?);
        if scores.len() / 2 != boxes.len() / 4 {
            return Err(self.run_err(format!("{} scores for {} boxes", scores.len() / 2, boxes.len() / 4)));
        }
        let (fw, fh) = (frame.width as f32, frame.height as f32);
        let dets: Vec<Detection> = scores
            .chunks_exact(2)
            .zip(boxes.chunks_exact(4))
            .filter(|(s, _)| s[1] > self.cfg.score_threshold)
            .map(|(s, b)| Detection {
                bbox: BBox::new(b[0] * fw, b[1] * fh, b[2] * fw, b[3] * fh).clamp(frame.width, frame.height),
                score: s[1],
                landmarks: None,
            })
            .filter(|d| d.bbox.area() > 0.0)
            .collect();
        Ok(nms(dets, self.cfg.iou_threshold, self.cfg.max_faces))
    }

    fn name(&self) -> String {
        format!("onnx:{}", self.file.display())
    }
}
