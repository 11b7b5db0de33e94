//! An ONNX face detector in the UltraFace output format, run by tract: input `[1, 3, H, W]`
//! RGB normalised as `(x - mean) / std` on 0–255 pixels; outputs `scores [1, N, 2]`
//! (background, face) and `boxes [1, N, 4]` (x1, y1, x2, y2 as fractions of the frame).
//! BlazeFace (converted from MediaPipe by `scripts/convert-blazeface.sh`, in
//! `models/detectors/blazeface/`) ships embedded in the binary in this format; any other model
//! in it (UltraFace RFB-320, …) is the user's (or board profile's) choice.

use super::{BBox, DetectError, Detection, FaceDetector, nms, weighted_nms};
use crate::infer::panic_guard::tract_guarded;
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
    /// Keep the frame's aspect ratio: scale it into the input and pad the rest with black
    /// (BlazeFace was trained on letterboxed squares; stretching a 4:3 frame lowers its scores).
    pub letterbox: bool,
    /// Weighted NMS (a cluster's boxes averaged by score, as MediaPipe does for BlazeFace)
    /// instead of keeping the best box: steadier boxes from frame to frame.
    pub weighted_nms: bool,
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
            letterbox: false,
            weighted_nms: false,
        }
    }
}

impl OnnxDetectorConfig {
    /// BlazeFace short range (128x128, faces within about 2 m of the camera), with MediaPipe's
    /// settings: pixels to [-1, 1], letterboxed, face probability > 0.5, weighted NMS at IoU 0.3.
    pub fn blazeface_short() -> Self {
        OnnxDetectorConfig {
            width: 128,
            height: 128,
            mean: [127.5; 3],
            std: [127.5; 3],
            score_threshold: 0.5,
            iou_threshold: 0.3,
            max_faces: 64,
            letterbox: true,
            weighted_nms: true,
        }
    }

    /// BlazeFace full range (192x192, faces up to about 5 m), MediaPipe's threshold 0.6.
    pub fn blazeface_full() -> Self {
        OnnxDetectorConfig {
            width: 192,
            height: 192,
            score_threshold: 0.6,
            ..OnnxDetectorConfig::blazeface_short()
        }
    }
}

/// Where the frame lands in the network input: input pixel = frame pixel * scale + offset.
#[derive(Debug, Clone, Copy)]
struct Placement {
    scale_x: f32,
    scale_y: f32,
    off_x: f32,
    off_y: f32,
}

impl Placement {
    fn new(frame_w: u32, frame_h: u32, w: usize, h: usize, letterbox: bool) -> Self {
        let (sx, sy) = (w as f32 / frame_w as f32, h as f32 / frame_h as f32);
        if letterbox {
            let s = sx.min(sy);
            Placement {
                scale_x: s,
                scale_y: s,
                off_x: (w as f32 - frame_w as f32 * s) / 2.0,
                off_y: (h as f32 - frame_h as f32 * s) / 2.0,
            }
        } else {
            Placement {
                scale_x: sx,
                scale_y: sy,
                off_x: 0.0,
                off_y: 0.0,
            }
        }
    }

    /// A point given as fractions of the input, in frame pixels.
    fn to_frame(self, fx: f32, fy: f32, w: usize, h: usize) -> (f32, f32) {
        (
            (fx * w as f32 - self.off_x) / self.scale_x,
            (fy * h as f32 - self.off_y) / self.scale_y,
        )
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
    /// BlazeFace's `keypoints [1, N, 12]`, when the model has them.
    keypoints_out: Option<usize>,
}

impl OnnxDetector {
    pub fn load(path: &Path, cfg: OnnxDetectorConfig) -> Result<Self, DetectError> {
        OnnxDetector::from_bytes(&super::read_model(path)?, path, cfg)
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
        let (mut scores_out, mut boxes_out, mut keypoints_out) = (None, None, None);
        for i in 0..outs {
            match last(i) {
                Some(2) => scores_out = scores_out.or(Some(i)),
                Some(4) => boxes_out = boxes_out.or(Some(i)),
                Some(12) => keypoints_out = keypoints_out.or(Some(i)),
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
            keypoints_out,
        })
    }

    fn run_err(&self, e: impl std::fmt::Display) -> DetectError {
        DetectError::Run {
            detector: self.name(),
            message: e.to_string(),
        }
    }
}

/// Bilinear resampling of the frame into `[3, h, w]` with `(x - mean) / std`, placed as `at`
/// says; input pixels outside the frame are black.
fn frame_to_chw(frame: &Frame, w: usize, h: usize, at: Placement, mean: [f32; 3], std: [f32; 3], out: &mut [f32]) {
    let (fw, fh) = (frame.width as f32, frame.height as f32);
    let plane = w * h;
    let inv: [f32; 3] = std.map(|s| 1.0 / s);
    let black: [f32; 3] = std::array::from_fn(|c| -mean[c] * inv[c]);
    let (x_end, y_end) = (at.off_x + fw * at.scale_x, at.off_y + fh * at.scale_y);
    for y in 0..h {
        let cy = y as f32 + 0.5;
        let inside_y = cy >= at.off_y && cy <= y_end;
        let fy = (cy - at.off_y) / at.scale_y - 0.5;
        for x in 0..w {
            let cx = x as f32 + 0.5;
            let v = if inside_y && cx >= at.off_x && cx <= x_end {
                let v = frame.bilinear((cx - at.off_x) / at.scale_x - 0.5, fy);
                std::array::from_fn(|c| (v[c] - mean[c]) * inv[c])
            } else {
                black
            };
            for c in 0..3 {
                out[c * plane + y * w + x] = v[c];
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
        let at = Placement::new(frame.width, frame.height, w, h, self.cfg.letterbox);
        frame_to_chw(frame, w, h, at, self.cfg.mean, self.cfg.std, &mut self.input);
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
        let n = scores.len() / 2;
        if n != boxes.len() / 4 {
            return Err(self.run_err(format!("{n} scores for {} boxes", boxes.len() / 4)));
        }
        let keypoints = self.keypoints_out.map(flat).transpose()?;
        if let Some(k) = &keypoints
            && k.len() / 12 != n
        {
            return Err(self.run_err(format!("{n} scores for {} keypoint sets", k.len() / 12)));
        }
        let dets: Vec<Detection> = (0..n)
            .filter(|&i| scores[2 * i + 1] > self.cfg.score_threshold)
            .map(|i| {
                let b = &boxes[4 * i..4 * i + 4];
                let (x1, y1) = at.to_frame(b[0], b[1], w, h);
                let (x2, y2) = at.to_frame(b[2], b[3], w, h);
                Detection {
                    bbox: BBox::new(x1, y1, x2, y2).clamp(frame.width, frame.height),
                    score: scores[2 * i + 1],
                    landmarks: keypoints.as_ref().map(|k| {
                        let point = |j: usize| {
                            let (x, y) = at.to_frame(k[12 * i + 2 * j], k[12 * i + 2 * j + 1], w, h);
                            [x, y]
                        };
                        // MediaPipe's order: the subject's right eye (the image's left), left
                        // eye, nose tip, mouth centre, ear tragions. BlazeFace has no mouth
                        // corners: the mouth centre stands for both.
                        [point(0), point(1), point(2), point(3), point(3)]
                    }),
                }
            })
            .filter(|d| d.bbox.area() > 0.0)
            .collect();
        Ok(if self.cfg.weighted_nms {
            weighted_nms(dets, self.cfg.iou_threshold, self.cfg.max_faces)
        } else {
            nms(dets, self.cfg.iou_threshold, self.cfg.max_faces)
        })
    }

    fn name(&self) -> String {
        format!("onnx:{}", self.file.display())
    }
}
