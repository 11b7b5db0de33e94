//! The pixel formats the camera path can turn into RGB, and what a device says it offers.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A capture pixel format sitfer can convert to packed RGB8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// Packed 4:2:2 `Y0 U Y1 V`: what nearly every UVC webcam streams uncompressed.
    Yuyv,
    /// Motion JPEG: one JPEG per frame; the only way most USB 2 cameras reach 30 fps above 640x480.
    Mjpeg,
    /// Packed 8-bit RGB (`RGB3`): CSI bridges and virtual cameras (v4l2loopback).
    Rgb3,
}

impl PixelFormat {
    /// Fallback order when the requested format is not offered: uncompressed YUYV first (no
    /// decode cost, no JPEG artefacts on faces), then MJPEG, then RGB.
    pub const FALLBACK: [PixelFormat; 3] = [PixelFormat::Yuyv, PixelFormat::Mjpeg, PixelFormat::Rgb3];

    pub fn fourcc(self) -> [u8; 4] {
        match self {
            PixelFormat::Yuyv => *b"YUYV",
            PixelFormat::Mjpeg => *b"MJPG",
            PixelFormat::Rgb3 => *b"RGB3",
        }
    }

    pub fn from_fourcc(code: [u8; 4]) -> Option<PixelFormat> {
        match &code {
            b"YUYV" => Some(PixelFormat::Yuyv),
            // Some drivers report baseline JPEG as `JPEG` for the same byte stream.
            b"MJPG" | b"JPEG" => Some(PixelFormat::Mjpeg),
            b"RGB3" => Some(PixelFormat::Rgb3),
            _ => None,
        }
    }

    /// The profile spelling (`yuyv`, `mjpeg`, `rgb3`).
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Yuyv => "yuyv",
            PixelFormat::Mjpeg => "mjpeg",
            PixelFormat::Rgb3 => "rgb3",
        }
    }

    pub fn parse(name: &str) -> Option<PixelFormat> {
        match name.to_ascii_lowercase().as_str() {
            "yuyv" | "yuy2" => Some(PixelFormat::Yuyv),
            "mjpeg" | "mjpg" => Some(PixelFormat::Mjpeg),
            "rgb3" | "rgb" | "rgb24" => Some(PixelFormat::Rgb3),
            _ => None,
        }
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Frame sizes a device offers for one format (V4L2 `ENUM_FRAMESIZES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameSizes {
    Discrete(Vec<(u32, u32)>),
    /// Any size in the range on the step grid (stepwise and continuous devices).
    Stepwise {
        min: (u32, u32),
        max: (u32, u32),
        step: (u32, u32),
    },
}

/// One entry of a device's format list, independent of the v4l types so negotiation is a pure
/// function that tests can feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedFormat {
    pub fourcc: [u8; 4],
    pub description: String,
    pub sizes: FrameSizes,
}

/// Renders a FourCC for messages, escaping non-printable bytes.
pub fn fourcc_str(code: [u8; 4]) -> String {
    code.iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

impl fmt::Display for OfferedFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", fourcc_str(self.fourcc), self.description)?;
        match &self.sizes {
            FrameSizes::Discrete(sizes) if sizes.is_empty() => write!(f, " no sizes listed"),
            FrameSizes::Discrete(sizes) => {
                let list: Vec<String> = sizes.iter().map(|(w, h)| format!("{w}x{h}")).collect();
                write!(f, " {}", list.join(" "))
            }
            FrameSizes::Stepwise { min, max, step } => write!(
                f,
                " {}x{}..{}x{} step {}x{}",
                min.0, min.1, max.0, max.1, step.0, step.1
            ),
        }
    }
}
