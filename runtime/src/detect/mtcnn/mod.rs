//! MTCNN (Zhang et al. 2016, "Joint Face Detection and Alignment using Multi-task Cascaded
//! Convolutional Networks") with facenet-pytorch's weights (MIT; converted to ONNX by
//! `scripts/convert-mtcnn.sh`, see `models/detectors/mtcnn/SOURCE.md`), run by tract.
//!
//! Three networks in cascade: PNet slides a 12x12 window (stride 2) over an image pyramid and
//! proposes boxes; RNet (24x24 crops) and ONet (48x48 crops) re-score and refine them, ONet also
//! giving five landmarks. The maths follows facenet-pytorch's `detect_face`
//! (`facenet_pytorch/models/utils/detect_face.py` in facenet-pytorch 2.6.0) step by step, quirks
//! included (the `+ 1` pixel widths of some steps and not others, the 1-based `pad`), since that
//! is the code the weights were checked with.

mod boxes;
mod integral;

use super::nms::nms_indices;
use super::{BBox, DetectError, Detection, FaceDetector};
use crate::infer::panic_guard::tract_guarded;
use crate::source::Frame;
use boxes::{bbreg, min_overlap, pad, rerec};
use integral::Integral;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tract_onnx::prelude::*;

static PNET: &[u8] = include_bytes!("../../../../models/detectors/mtcnn/pnet.onnx");
static RNET: &[u8] = include_bytes!("../../../../models/detectors/mtcnn/rnet.onnx");
static ONET: &[u8] = include_bytes!("../../../../models/detectors/mtcnn/onet.onnx");

/// facenet-pytorch's `MTCNN` defaults.
#[derive(Debug, Clone, Copy)]
pub struct MtcnnConfig {
    /// Smallest face side searched for, in frame pixels: the pyramid's first scale maps it to
    /// PNet's 12 px window.
    pub min_face_size: f32,
    /// Ratio between pyramid levels.
    pub scale_factor: f32,
    /// Face probability needed by PNet (`>=`), RNet and ONet (`>`).
    pub thresholds: [f32; 3],
    /// NMS IoU among PNet's boxes of one pyramid level, then among those of all levels.
    pub pnet_level_iou: f32,
    pub pnet_iou: f32,
    /// NMS IoU after RNet.
    pub rnet_iou: f32,
    /// NMS after ONet, on intersection over the smaller box ("Min"), not IoU: a small box
    /// inside a larger one is dropped.
    pub onet_min_overlap: f32,
}

impl Default for MtcnnConfig {
    fn default() -> Self {
        MtcnnConfig {
            min_face_size: 20.0,
            scale_factor: 0.709,
            thresholds: [0.6, 0.7, 0.7],
            pnet_level_iou: 0.5,
            pnet_iou: 0.7,
            rnet_iou: 0.7,
            onet_min_overlap: 0.7,
        }
    }
}

/// facenet-pytorch's input normalisation: `(x - 127.5) * 0.0078125`.
const MEAN: f32 = 127.5;
const SCALE: f32 = 0.0078125;
/// PNet's window and stride in its input.
const CELL: f32 = 12.0;
const STRIDE: f32 = 2.0;
/// Plans kept for PNet's input sizes; a video has one pyramid (about ten sizes), so this only
/// bounds the memory when frame sizes keep changing.
const MAX_PNET_PLANS: usize = 64;

/// A candidate face between the stages: its box, score, and the network's regression
/// (dx1, dy1, dx2, dy2 in units of the box's width / height).
#[derive(Debug, Clone, Copy)]
struct Candidate {
    bbox: BBox,
    score: f32,
    reg: [f32; 4],
}

/// Where the time of the last `detect` went (for profiling; also logged at debug level).
#[derive(Debug, Clone, Copy, Default)]
pub struct MtcnnTimings {
    pub pyramid_levels: usize,
    /// Integral image + area resampling of the pyramid levels.
    pub resize: Duration,
    pub pnet: Duration,
    /// Crops + RNet (one run per box).
    pub rnet: Duration,
    /// Crops + ONet (one run per box).
    pub onet: Duration,
    /// Boxes in: RNet, ONet; faces out.
    pub rnet_in: usize,
    pub onet_in: usize,
    pub faces: usize,
}

pub struct MtcnnDetector {
    cfg: MtcnnConfig,
    /// PNet parsed once; tract optimises best with concrete shapes, so one plan is made per
    /// pyramid level size and cached.
    pnet: InferenceModel,
    pnet_plans: HashMap<(usize, usize), Arc<TypedRunnableModel>>,
    /// RNet and ONet at batch 1, run once per crop: in tract that was faster per crop than
    /// batches, whether the batch size was symbolic (about 2x slower) or concrete (no gain, and
    /// one plan per batch size).
    rnet: Arc<TypedRunnableModel>,
    onet: Arc<TypedRunnableModel>,
    /// Output indices of `prob`, `reg` (and ONet's `landmarks`).
    pnet_outs: [usize; 2],
    rnet_outs: [usize; 2],
    onet_outs: [usize; 3],
    integral: Integral,
    input: Vec<f32>,
    timings: MtcnnTimings,
}

fn model_err(file: &str, message: String) -> DetectError {
    DetectError::Model {
        file: PathBuf::from(format!("models/detectors/mtcnn/{file}")),
        message,
    }
}

/// The indices of the named outputs of an ONNX model.
fn output_indices<const K: usize>(model: &TypedModel, names: [&str; K], file: &str) -> Result<[usize; K], DetectError> {
    let outlets = model.output_outlets().map_err(|e| model_err(file, e.to_string()))?;
    let mut idx = [0; K];
    for (k, name) in names.iter().enumerate() {
        idx[k] = outlets
            .iter()
            .position(|o| model.outlet_label(*o) == Some(name))
            .ok_or_else(|| model_err(file, format!("no output named `{name}`")))?;
    }
    Ok(idx)
}

/// RNet or ONet (input `[N, 3, side, side]` in the file) at batch 1.
fn crop_plan<const K: usize>(
    bytes: &[u8],
    side: usize,
    names: [&str; K],
    file: &str,
) -> Result<(Arc<TypedRunnableModel>, [usize; K]), DetectError> {
    let typed = tract_guarded(
        &format!("not a loadable ONNX model with input [1, 3, {side}, {side}]"),
        || {
            tract_onnx::onnx()
                .model_for_read(&mut &bytes[..])?
                .with_input_fact(0, f32::fact([1, 3, side, side]).into())?
                .into_typed()
        },
    )
    .map_err(|e| model_err(file, e))?;
    let outs = output_indices(&typed, names, file)?;
    let plan =
        tract_guarded("optimising", || typed.into_optimized()?.into_runnable()).map_err(|e| model_err(file, e))?;
    Ok((plan, outs))
}

impl MtcnnDetector {
    pub fn new(cfg: MtcnnConfig) -> Result<Self, DetectError> {
        let pnet = tract_guarded("not a loadable ONNX model", || {
            tract_onnx::onnx().model_for_read(&mut &PNET[..])
        })
        .map_err(|e| model_err("pnet.onnx", e))?;
        let (rnet, rnet_outs) = crop_plan(RNET, 24, ["prob", "reg"], "rnet.onnx")?;
        let (onet, onet_outs) = crop_plan(ONET, 48, ["prob", "reg", "landmarks"], "onet.onnx")?;
        let mut d = MtcnnDetector {
            cfg,
            pnet,
            pnet_plans: HashMap::new(),
            pnet_outs: [0, 1],
            rnet,
            onet,
            rnet_outs,
            onet_outs,
            integral: Integral::default(),
            input: Vec::new(),
            timings: MtcnnTimings::default(),
        };
        // Fail at load rather than on the first frame if PNet does not type at a concrete size;
        // every size's plan has the outputs in the same order.
        let plan = d.pnet_plan(12, 12).map_err(|e| model_err("pnet.onnx", e.to_string()))?;
        d.pnet_outs = output_indices(plan.model(), ["prob", "reg"], "pnet.onnx")?;
        Ok(d)
    }

    pub fn config(&self) -> &MtcnnConfig {
        &self.cfg
    }

    /// Where the time of the last `detect` went.
    pub fn timings(&self) -> MtcnnTimings {
        self.timings
    }

    fn run_err(&self, e: impl std::fmt::Display) -> DetectError {
        DetectError::Run {
            detector: self.name(),
            message: e.to_string(),
        }
    }

    fn pnet_plan(&mut self, h: usize, w: usize) -> Result<Arc<TypedRunnableModel>, DetectError> {
        if let Some(p) = self.pnet_plans.get(&(h, w)) {
            return Ok(p.clone());
        }
        if self.pnet_plans.len() >= MAX_PNET_PLANS {
            self.pnet_plans.clear();
        }
        let model = self.pnet.clone();
        let plan = tract_guarded(&format!("PNet at {w}x{h}"), || {
            model
                .with_input_fact(0, f32::fact([1, 3, h, w]).into())?
                .into_optimized()?
                .into_runnable()
        })
        .map_err(|e| self.run_err(e))?;
        self.pnet_plans.insert((h, w), plan.clone());
        Ok(plan)
    }

    /// The pyramid's scales: the first maps `min_face_size` to 12 px, each next one is
    /// `scale_factor` times smaller, down to where the frame's short side is under 12 px.
    /// In f64 like facenet-pytorch's Python floats, so that the level sizes are the same.
    fn scales(&self, w: u32, h: u32) -> Vec<f64> {
        let m = CELL as f64 / self.cfg.min_face_size as f64;
        let factor = self.cfg.scale_factor as f64;
        let mut minl = w.min(h) as f64 * m;
        let mut scale = m;
        let mut scales = Vec::new();
        // factor >= 1 would never end; facenet-pytorch has no such guard.
        while minl >= 12.0 && factor < 1.0 && factor > 0.0 {
            scales.push(scale);
            scale *= factor;
            minl *= factor;
        }
        scales
    }

    /// Stage 1: PNet over the pyramid, boxes regressed and made square.
    fn stage1(&mut self, frame: &Frame) -> Result<Vec<Candidate>, DetectError> {
        let (w, h) = (frame.width as usize, frame.height as usize);
        let scales = self.scales(frame.width, frame.height);
        self.timings.pyramid_levels = scales.len();
        let mut all = Vec::new();
        for scale in scales {
            // `imresample(imgs, (int(h * scale + 1), int(w * scale + 1)))`
            let (hs, ws) = ((h as f64 * scale + 1.0) as usize, (w as f64 * scale + 1.0) as usize);
            let t = Instant::now();
            self.input.resize(3 * hs * ws, 0.0);
            self.integral.area_resample(0, 0, w, h, ws, hs, &mut self.input);
            let x = Tensor::from_shape(&[1, 3, hs, ws], &self.input).map_err(|e| self.run_err(e))?;
            self.timings.resize += t.elapsed();
            let t = Instant::now();
            let plan = self.pnet_plan(hs, ws)?;
            let out = plan.run(tvec![x.into_tvalue()]).map_err(|e| self.run_err(e))?;
            self.timings.pnet += t.elapsed();
            // prob [1, 2, oh, ow], reg [1, 4, oh, ow]
            let prob = out[self.pnet_outs[0]]
                .to_plain_array_view::<f32>()
                .map_err(|e| self.run_err(e))?;
            let reg = out[self.pnet_outs[1]]
                .to_plain_array_view::<f32>()
                .map_err(|e| self.run_err(e))?;
            if prob.ndim() != 4 || reg.ndim() != 4 {
                return Err(self.run_err(format!("PNet outputs {:?} and {:?}", prob.shape(), reg.shape())));
            }
            let (oh, ow) = (prob.shape()[2], prob.shape()[3]);
            if prob.shape()[1] != 2 || reg.shape()[1] != 4 || reg.shape()[2..] != [oh, ow] {
                return Err(self.run_err(format!("PNet outputs {:?} and {:?}", prob.shape(), reg.shape())));
            }
            let (Some(prob), Some(reg)) = (prob.as_slice(), reg.as_slice()) else {
                return Err(self.run_err("PNet outputs not contiguous"));
            };
            let cells = oh * ow;
            let face = &prob[cells..];
            let scale = scale as f32;
            let mut level = Vec::new();
            for y in 0..oh {
                for x in 0..ow {
                    let p = face[y * ow + x];
                    if p < self.cfg.thresholds[0] {
                        continue;
                    }
                    // generateBoundingBox: the cell's 12x12 window back in frame pixels, floored.
                    let (fx, fy) = (x as f32 * STRIDE, y as f32 * STRIDE);
                    level.push(Candidate {
                        bbox: BBox::new(
                            ((fx + 1.0) / scale).floor(),
                            ((fy + 1.0) / scale).floor(),
                            ((fx + CELL) / scale).floor(),
                            ((fy + CELL) / scale).floor(),
                        ),
                        score: p,
                        reg: std::array::from_fn(|k| reg[k * cells + y * ow + x]),
                    });
                }
            }
            all.extend(keep(&level, nms_iou(&level, self.cfg.pnet_level_iou)));
        }
        let mut boxes = keep(&all, nms_iou(&all, self.cfg.pnet_iou));
        for c in &mut boxes {
            // This regression uses x2 - x1, without the + 1 of `bbreg` in the later stages.
            let b = c.bbox;
            let (bw, bh) = (b.x2 - b.x1, b.y2 - b.y1);
            c.bbox = rerec(BBox::new(
                b.x1 + c.reg[0] * bw,
                b.y1 + c.reg[1] * bh,
                b.x2 + c.reg[2] * bw,
                b.y2 + c.reg[3] * bh,
            ));
        }
        Ok(boxes)
    }

    /// Runs `net` (RNet or ONet) on the crop of `bbox` (as `pad` makes it) resampled to
    /// `side` x `side`, returning its outputs in the order of `outs` as flat vectors; `None`
    /// when the crop is empty (the box wholly outside the frame). facenet-pytorch skips such a
    /// box without dropping it from its list, which shifts the later boxes' scores onto the
    /// wrong boxes; here the box is dropped.
    fn run_crop<const K: usize>(
        &mut self,
        net: &Arc<TypedRunnableModel>,
        outs: [usize; K],
        bbox: &BBox,
        side: usize,
    ) -> Result<Option<[Vec<f32>; K]>, DetectError> {
        let Some((x0, y0, x1, y1)) = pad(bbox, self.integral.w, self.integral.h) else {
            return Ok(None);
        };
        self.input.resize(3 * side * side, 0.0);
        self.integral
            .area_resample(x0, y0, x1 - x0, y1 - y0, side, side, &mut self.input);
        let x = Tensor::from_shape(&[1, 3, side, side], &self.input).map_err(|e| self.run_err(e))?;
        let out = net.run(tvec![x.into_tvalue()]).map_err(|e| self.run_err(e))?;
        let mut flat: [Vec<f32>; K] = std::array::from_fn(|_| Vec::new());
        for (k, &o) in outs.iter().enumerate() {
            let v = out[o].to_plain_array_view::<f32>().map_err(|e| self.run_err(e))?;
            flat[k] = v.iter().copied().collect();
        }
        Ok(Some(flat))
    }

    /// Stage 2: RNet re-scores and regresses stage 1's boxes.
    fn stage2(&mut self, boxes: Vec<Candidate>) -> Result<Vec<Candidate>, DetectError> {
        let (net, outs) = (self.rnet.clone(), self.rnet_outs);
        let mut passed = Vec::new();
        for c in &boxes {
            let Some([prob, reg]) = self.run_crop(&net, outs, &c.bbox, 24)? else {
                continue;
            };
            if prob.len() != 2 || reg.len() != 4 {
                return Err(self.run_err(format!("RNet gave {} scores, {} regressions", prob.len(), reg.len())));
            }
            if prob[1] > self.cfg.thresholds[1] {
                passed.push(Candidate {
                    bbox: c.bbox,
                    score: prob[1],
                    reg: [reg[0], reg[1], reg[2], reg[3]],
                });
            }
        }
        let mut kept = keep(&passed, nms_iou(&passed, self.cfg.rnet_iou));
        for c in &mut kept {
            c.bbox = rerec(bbreg(&c.bbox, &c.reg));
        }
        Ok(kept)
    }

    /// Stage 3: ONet re-scores, regresses and places the landmarks.
    fn stage3(&mut self, boxes: Vec<Candidate>) -> Result<Vec<Detection>, DetectError> {
        let (net, outs) = (self.onet.clone(), self.onet_outs);
        let mut dets = Vec::new();
        for c in &boxes {
            let Some([prob, reg, lm]) = self.run_crop(&net, outs, &c.bbox, 48)? else {
                continue;
            };
            if prob.len() != 2 || reg.len() != 4 || lm.len() != 10 {
                return Err(self.run_err(format!(
                    "ONet gave {} scores, {} regressions, {} landmark coordinates",
                    prob.len(),
                    reg.len(),
                    lm.len()
                )));
            }
            let score = prob[1];
            if score <= self.cfg.thresholds[2] {
                continue;
            }
            // Landmarks are fractions of the box ONet saw (before its regression), x0..x4 then
            // y0..y4, placed with the `+ 1` width and the `- 1` of the 1-based crop.
            let b = c.bbox;
            let (bw, bh) = (b.x2 - b.x1 + 1.0, b.y2 - b.y1 + 1.0);
            let landmarks: [[f32; 2]; 5] =
                std::array::from_fn(|k| [bw * lm[k] + b.x1 - 1.0, bh * lm[k + 5] + b.y1 - 1.0]);
            dets.push(Detection {
                bbox: bbreg(&b, &[reg[0], reg[1], reg[2], reg[3]]),
                score,
                landmarks: Some(landmarks),
            });
        }
        // Equal scores are common here (boxes that truncate to the same crop get the same ONet
        // outputs); the first of them wins. facenet-pytorch's `nms_numpy` leaves that to
        // `np.argsort`, whose order of equal keys is unspecified (a SIMD sort on AVX-512), so on
        // such ties its kept box can differ from this one by a pixel or two.
        let boxes: Vec<BBox> = dets.iter().map(|d| d.bbox).collect();
        let scores: Vec<f32> = dets.iter().map(|d| d.score).collect();
        let picked = nms_indices(&boxes, &scores, self.cfg.onet_min_overlap, min_overlap);
        Ok(picked.into_iter().map(|i| dets[i].clone()).collect())
    }
}

impl FaceDetector for MtcnnDetector {
    fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>, DetectError> {
        let (w, h) = (frame.width as usize, frame.height as usize);
        if frame.rgb.len() != w * h * 3 {
            return Err(self.run_err(format!("{} bytes for a {w}x{h} RGB frame", frame.rgb.len())));
        }
        self.timings = MtcnnTimings::default();
        let t = Instant::now();
        self.integral.build(frame);
        self.timings.resize += t.elapsed();
        let boxes = self.stage1(frame)?;
        self.timings.rnet_in = boxes.len();
        let t = Instant::now();
        let boxes = self.stage2(boxes)?;
        self.timings.rnet = t.elapsed();
        self.timings.onet_in = boxes.len();
        let t = Instant::now();
        let mut dets = self.stage3(boxes)?;
        self.timings.onet = t.elapsed();
        // Like the other detectors, boxes are clamped to the frame (facenet-pytorch returns them
        // as regressed, possibly outside it); the landmarks are left as they are.
        for d in &mut dets {
            d.bbox = d.bbox.clamp(frame.width, frame.height);
        }
        dets.retain(|d| d.bbox.area() > 0.0);
        self.timings.faces = dets.len();
        let tm = &self.timings;
        log::debug!(
            "mtcnn {w}x{h}: {} levels, resize {:.1} ms, pnet {:.1} ms, rnet {:.1} ms ({} boxes), onet {:.1} ms ({} boxes), {} faces",
            tm.pyramid_levels,
            tm.resize.as_secs_f64() * 1e3,
            tm.pnet.as_secs_f64() * 1e3,
            tm.rnet.as_secs_f64() * 1e3,
            tm.rnet_in,
            tm.onet.as_secs_f64() * 1e3,
            tm.onet_in,
            tm.faces
        );
        Ok(dets)
    }

    fn name(&self) -> String {
        "mtcnn".into()
    }
}

fn keep(cands: &[Candidate], picked: Vec<usize>) -> Vec<Candidate> {
    picked.into_iter().map(|i| cands[i]).collect()
}

/// NMS on IoU as torchvision's `batched_nms` computes it (areas `(x2 - x1) * (y2 - y1)`).
fn nms_iou(cands: &[Candidate], threshold: f32) -> Vec<usize> {
    let boxes: Vec<BBox> = cands.iter().map(|c| c.bbox).collect();
    let scores: Vec<f32> = cands.iter().map(|c| c.score).collect();
    nms_indices(&boxes, &scores, threshold, BBox::iou)
}
