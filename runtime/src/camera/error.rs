//! `CameraError`: every error names the device and says what to do next.

use super::format::PixelFormat;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CameraError {
    #[error("no camera at {device}{}: connect one, or pass --source with another /dev/videoN, an image, a folder or a .y4m file", present_list(.present))]
    NotFound { device: String, present: Vec<String> },
    #[error("cannot open camera {device}: {source}{}", permission_hint(.source))]
    Open {
        device: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{device} is not a video capture device (it may be a metadata or output node; try the next /dev/videoN)")]
    NotCapture { device: String },
    #[error("{device} offers no format sitfer can convert (yuyv, mjpeg, rgb3); it offers: {offered}")]
    NoUsableFormat { device: String, offered: String },
    #[error("{device}: {what}: {source}")]
    Io {
        device: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{device} accepted {asked} but switched to {got}")]
    FormatRefused { device: String, asked: String, got: String },
    #[error("cannot decode a {format} frame: {message}")]
    Decode { format: PixelFormat, message: String },
    #[error("camera {device} stopped: {message}")]
    Stopped { device: String, message: String },
}

fn present_list(present: &[String]) -> String {
    if present.is_empty() {
        " (no /dev/video* devices on this machine)".to_string()
    } else {
        format!(" (video devices present: {})", present.join(", "))
    }
}

fn permission_hint(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        " (add the user to the `video` group)"
    } else {
        ""
    }
}
