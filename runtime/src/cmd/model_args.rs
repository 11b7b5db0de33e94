//! The model and face options every command that runs the recognizer shares (`run`, `eval`,
//! `adapt`, `calibrate`, `anchors`), and the recognizer settings they give.

use super::bundle_arg;
use anyhow::Result;
use clap::Args;
use sitfer_runtime::bundle::{Bundle, Precision};
use sitfer_runtime::detect::{DetectorSpec, FaceDetector, WholeFrame};
use sitfer_runtime::fusion::{Aggregate, FuseMode};
use sitfer_runtime::pipeline::RecognizerConfig;
use sitfer_runtime::preprocess::ColorMode;
use sitfer_runtime::track::DEFAULT_MIN_IDENTITY_COS;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Faces {
    /// Detect faces in each frame.
    Detect,
    /// Each frame is one face crop.
    WholeFrame,
}

/// Options shared by `run` and `eval`: the model and how faces reach it.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Bundle directory or packed bundle file (default: the bundle embedded at build time from
    /// models/default/).
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// fp32, int8 or fp16 (the fp32 model run in f16 arithmetic) [default: the --board profile's,
    /// else fp16 on an aarch64 core with FP16 arithmetic and fp32 elsewhere, chosen by measured
    /// cost: docs/results/boards.md].
    #[arg(long, value_parser = bundle_arg::parse_precision)]
    pub precision: Option<Precision>,
    #[arg(long, value_enum, default_value = "detect")]
    pub faces: Faces,
    /// yunet (yunet:WxH: its largest input; yunet-tract: the same model in tract), rustface, mtcnn or blazeface / blazeface-full (shipped),
    /// onnx:PATH (UltraFace output format) or
    /// whole-frame [default: the --board profile's, else yunet for `run` and rustface for `eval`].
    #[arg(long)]
    pub detector: Option<DetectorSpec>,
    /// Crop margin per side, as a fraction of the face box's longer side [default: the
    /// detector's, chosen on FER2013 validation frames: 0.1 for rustface, -0.1 for mtcnn, whose
    /// boxes take in more of the head; 0.1 for the others].
    #[arg(long, allow_negative_numbers = true)]
    pub margin: Option<f32>,
    /// gray (luma in R, G, B: models trained on FER2013/CK+) or rgb.
    #[arg(long, default_value = "gray")]
    pub color: ColorMode,
    /// Fusion mode: probabilities or raw-scores [default: the bundle's].
    #[arg(long)]
    pub fuse_mode: Option<FuseMode>,
    /// Per-class aggregate of buffer similarities: max or topK [default: the bundle's].
    #[arg(long)]
    pub aggregate: Option<Aggregate>,
    /// Crop faces as boxed, without levelling the eyes when the detector gives landmarks
    /// (yunet, mtcnn, blazeface, blazeface-full).
    #[arg(long)]
    pub no_align: bool,
    /// Test-time flip: average each face with its mirror image (twice the model time per face).
    #[arg(long)]
    pub mirror: bool,
    /// Smallest face side searched, in pixels, by rustface and mtcnn [default: 20]: larger is
    /// faster (fewer pyramid levels) and misses smaller faces.
    #[arg(long, value_parser = clap::value_parser!(u32).range(12..=4096))]
    pub min_face: Option<u32>,
    /// A face whose embedding's cosine to its track's running embedding is below this starts a
    /// new track (someone else in the same spot); -1 links by boxes alone.
    #[arg(long, allow_negative_numbers = true, default_value_t = DEFAULT_MIN_IDENTITY_COS)]
    pub min_identity_cos: f32,
}

impl ModelArgs {
    /// The recognizer's settings for `bundle` with these options (crop, colour, fusion).
    pub fn recognizer_config(&self, bundle: &Bundle) -> RecognizerConfig {
        let mut cfg = RecognizerConfig::for_bundle(bundle);
        cfg.margin = self.margin.unwrap_or(self.detector_spec().default_margin());
        cfg.align = !self.no_align;
        cfg.color = self.color;
        cfg.tracker.min_identity_cos = self.min_identity_cos;
        cfg.fusion.mode = self.fuse_mode.unwrap_or(cfg.fusion.mode);
        cfg.fusion.aggregate = self.aggregate.unwrap_or(cfg.fusion.aggregate);
        cfg
    }

    /// `path` is a folder of face crops (whole-frame faces from a directory): a set of unrelated
    /// faces, not a video, so one crop's confidence never vouches for the next.
    pub fn is_crop_folder(&self, path: &std::path::Path) -> bool {
        self.faces == Faces::WholeFrame && path.is_dir()
    }

    /// The detector asked for, rustface when none was.
    pub fn detector_spec(&self) -> DetectorSpec {
        self.detector.clone().unwrap_or(DetectorSpec::Rustface)
    }

    pub fn detector(&self) -> Result<Box<dyn FaceDetector>> {
        Ok(match self.faces {
            Faces::WholeFrame => Box::new(WholeFrame),
            Faces::Detect => self.detector_spec().build_with_min_face(self.min_face)?,
        })
    }
}
