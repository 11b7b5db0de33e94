//! The typed board profile and its value checks.

use super::error::BoardError;
use crate::bundle::Precision;
use crate::camera::{CameraConfig, FormatRequest, PixelFormat};
use serde::Deserialize;
use std::path::PathBuf;

/// Targets a profile may name: the ones `scripts/cross-build.sh` and CI know how to build.
pub const KNOWN_TARGETS: &[&str] = &[
    "aarch64-unknown-linux-gnu",
    "aarch64-unknown-linux-musl",
    "x86_64-unknown-linux-gnu",
    "x86_64-unknown-linux-musl",
];

/// Rust's standard library needs glibc 2.17 or newer on Linux.
const GLIBC_FLOOR: (u32, u32) = (2, 17);

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardProfile {
    pub name: String,
    /// Rust target triple the binary for this board is built for.
    pub target: String,
    /// Oldest glibc on the board's OS (`"2.35"`): a binary linked against a newer glibc does not
    /// start there. Absent for musl targets.
    #[serde(default)]
    pub min_glibc: Option<String>,
    pub camera: CameraProfile,
    pub inference: InferenceProfile,
    pub display: DisplayProfile,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraProfile {
    pub device: PathBuf,
    /// `yuyv`, `mjpeg` or `rgb3`: tried first, then the others.
    pub format: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceProfile {
    /// Threads of the detector's pool (rustface and YuNet's native engine run on rayon; tract
    /// runs the models on one thread, which measured fastest on x86); 1 keeps detection on the
    /// inference thread.
    pub threads: u32,
    /// Run the detector every N frames and track between.
    pub detection_interval: u32,
    /// `yunet`, `blazeface`, `blazeface-full`, `mtcnn`, `rustface`, `onnx:PATH` or `whole-frame` (see
    /// `detect::DetectorSpec`).
    pub detector: String,
    /// The model precision the board runs, `fp32`, `int8` or `fp16` (`--precision` wins); absent:
    /// the bundle's preferred one (`Manifest::preferred_precision`). The shipped profiles set it
    /// from the instruction counts of docs/results/boards.md.
    #[serde(default)]
    pub precision: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DisplayOutput {
    /// The Linux framebuffer (console on HDMI/DP).
    Framebuffer,
    /// Annotated PNG snapshots every `snapshot_every` frames.
    Png,
    /// JSON lines only.
    Headless,
    /// MJPEG preview over HTTP.
    Http,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisplayProfile {
    pub output: DisplayOutput,
    #[serde(default = "default_framebuffer")]
    pub framebuffer: PathBuf,
    #[serde(default = "default_snapshot_dir")]
    pub snapshot_dir: PathBuf,
    #[serde(default = "default_snapshot_every")]
    pub snapshot_every: u32,
    #[serde(default = "default_http_port")]
    pub http_port: u16,
    /// Loopback by default: the preview shows faces, so exposing it is an explicit choice.
    #[serde(default = "default_http_bind")]
    pub http_bind: String,
    /// Preview connections served at once (`--preview-max-viewers`).
    #[serde(default = "default_http_max_viewers")]
    pub http_max_viewers: usize,
}

fn default_http_max_viewers() -> usize {
    crate::display::preview::DEFAULT_MAX_VIEWERS
}

fn default_framebuffer() -> PathBuf {
    PathBuf::from("/dev/fb0")
}
fn default_snapshot_dir() -> PathBuf {
    PathBuf::from("snapshots")
}
fn default_snapshot_every() -> u32 {
    30
}
fn default_http_port() -> u16 {
    8090
}
fn default_http_bind() -> String {
    "127.0.0.1".to_string()
}

impl BoardProfile {
    /// Parses and checks one profile; `file` names it in errors.
    pub fn from_toml(file: &str, text: &str) -> Result<BoardProfile, BoardError> {
        let profile: BoardProfile = toml::from_str(text).map_err(|e| BoardError::Parse {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        profile.validate(file)?;
        Ok(profile)
    }

    fn validate(&self, file: &str) -> Result<(), BoardError> {
        let bad = |key: &'static str, value: String, message: &str| {
            Err(BoardError::Invalid {
                file: file.to_string(),
                key,
                value,
                message: message.to_string(),
            })
        };
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad("name", format!("{:?}", self.name), "use letters, digits, `-` and `_`");
        }
        if !KNOWN_TARGETS.contains(&self.target.as_str()) {
            return bad(
                "target",
                format!("{:?}", self.target),
                &format!("expected one of {}", KNOWN_TARGETS.join(", ")),
            );
        }
        let musl = self.target.ends_with("-musl");
        match (&self.min_glibc, musl) {
            (Some(v), true) => {
                return bad(
                    "min_glibc",
                    format!("{v:?}"),
                    "musl targets do not link glibc; remove the key",
                );
            }
            (None, false) => {
                return bad(
                    "min_glibc",
                    "(missing)".into(),
                    "glibc targets need the board's glibc version, e.g. \"2.35\"",
                );
            }
            (Some(v), false) => match parse_glibc(v) {
                Some(ver) if ver >= GLIBC_FLOOR => {}
                Some(_) => {
                    return bad(
                        "min_glibc",
                        format!("{v:?}"),
                        "Rust's standard library needs glibc 2.17 or newer",
                    );
                }
                None => return bad("min_glibc", format!("{v:?}"), "expected MAJOR.MINOR, e.g. \"2.35\""),
            },
            (None, true) => {}
        }
        let c = &self.camera;
        if !c.device.is_absolute() {
            return bad(
                "camera.device",
                format!("{:?}", c.device),
                "expected an absolute path such as /dev/video0",
            );
        }
        let Some(format) = PixelFormat::parse(&c.format) else {
            return bad(
                "camera.format",
                format!("{:?}", c.format),
                "expected yuyv, mjpeg or rgb3",
            );
        };
        if !(16..=7680).contains(&c.width) {
            return bad("camera.width", c.width.to_string(), "expected 16..=7680 pixels");
        }
        if format == PixelFormat::Yuyv && !c.width.is_multiple_of(2) {
            return bad(
                "camera.width",
                c.width.to_string(),
                "yuyv stores pixels in pairs: the width must be even",
            );
        }
        if !(16..=4320).contains(&c.height) {
            return bad("camera.height", c.height.to_string(), "expected 16..=4320 pixels");
        }
        if !(1..=240).contains(&c.fps) {
            return bad("camera.fps", c.fps.to_string(), "expected 1..=240");
        }
        let i = &self.inference;
        if !(1..=64).contains(&i.threads) {
            return bad("inference.threads", i.threads.to_string(), "expected 1..=64");
        }
        if !(1..=1000).contains(&i.detection_interval) {
            return bad(
                "inference.detection_interval",
                i.detection_interval.to_string(),
                "expected 1..=1000 frames",
            );
        }
        if let Err(e) = i.detector.parse::<crate::detect::DetectorSpec>() {
            return bad("inference.detector", format!("{:?}", i.detector), &e);
        }
        if let Some(p) = &i.precision
            && Precision::parse(p).is_none()
        {
            return bad("inference.precision", format!("{p:?}"), "expected fp32, int8 or fp16");
        }
        let d = &self.display;
        if d.snapshot_every == 0 {
            return bad("display.snapshot_every", "0".into(), "expected at least 1 frame");
        }
        if d.http_port == 0 {
            return bad("display.http_port", "0".into(), "expected a port in 1..=65535");
        }
        if d.http_bind.parse::<std::net::IpAddr>().is_err() {
            return bad(
                "display.http_bind",
                format!("{:?}", d.http_bind),
                "expected an IP address such as 127.0.0.1",
            );
        }
        if !(1..=64).contains(&d.http_max_viewers) {
            return bad(
                "display.http_max_viewers",
                d.http_max_viewers.to_string(),
                "expected 1 to 64 connections",
            );
        }
        Ok(())
    }

    /// The camera settings as the capture code takes them.
    pub fn camera_config(&self) -> CameraConfig {
        CameraConfig {
            device: self.camera.device.clone(),
            request: FormatRequest {
                format: PixelFormat::parse(&self.camera.format),
                width: self.camera.width,
                height: self.camera.height,
            },
            fps: self.camera.fps,
        }
    }

    /// The detector, already checked by `validate`.
    pub fn detector_spec(&self) -> crate::detect::DetectorSpec {
        self.inference
            .detector
            .parse()
            .expect("checked when the profile was loaded")
    }

    /// The model precision, when the profile sets one (already checked by `validate`).
    pub fn precision(&self) -> Option<Precision> {
        self.inference.precision.as_deref().and_then(Precision::parse)
    }

    /// `(major, minor)` of `min_glibc`, when the target links glibc.
    pub fn glibc(&self) -> Option<(u32, u32)> {
        self.min_glibc.as_deref().and_then(parse_glibc)
    }
}

fn parse_glibc(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}
