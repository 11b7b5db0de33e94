//! Opening a V4L2 device: check it captures, read what it offers, negotiate, configure.

use super::decode::BufferLayout;
use super::error::CameraError;
use super::format::{FrameSizes, OfferedFormat, fourcc_str};
use super::negotiate::{FormatRequest, negotiate};
use std::path::{Path, PathBuf};
use v4l::framesize::FrameSizeEnum;
use v4l::video::Capture;
use v4l::{Device, Format, FourCC};

/// What to open and what to ask of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraConfig {
    pub device: PathBuf,
    pub request: FormatRequest,
    /// Requested frame rate; 0 keeps the device's.
    pub fps: u32,
}

/// An opened, configured device and the layout of the buffers it will deliver.
pub struct OpenedCamera {
    pub device: Device,
    pub layout: BufferLayout,
    /// The card name the driver reports (for logs and `describe`).
    pub card: String,
}

/// `/dev/video*` nodes present, sorted, for the "no camera" message.
pub fn list_video_devices() -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir("/dev")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("video") && n[5..].chars().all(|c| c.is_ascii_digit()) && n.len() > 5)
                .map(|n| format!("/dev/{n}"))
                .collect()
        })
        .unwrap_or_default();
    found.sort_by_key(|p| p[10..].parse::<u32>().unwrap_or(u32::MAX));
    found
}

/// Opens `config.device`, negotiates a format and sets it.
pub fn open_camera(config: &CameraConfig) -> Result<OpenedCamera, CameraError> {
    let name = config.device.display().to_string();
    if !Path::new(&config.device).exists() {
        return Err(CameraError::NotFound {
            device: name,
            present: list_video_devices(),
        });
    }
    let device = Device::with_path(&config.device).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            CameraError::NotFound {
                device: name.clone(),
                present: list_video_devices(),
            }
        } else {
            CameraError::Open {
                device: name.clone(),
                source,
            }
        }
    })?;
    let io = |what: &'static str| {
        let device = name.clone();
        move |source| CameraError::Io { device, what, source }
    };
    let caps = device.query_caps().map_err(io("reading capabilities"))?;
    let flags = caps.capabilities;
    if !flags.contains(v4l::capability::Flags::VIDEO_CAPTURE) || !flags.contains(v4l::capability::Flags::STREAMING) {
        return Err(CameraError::NotCapture { device: name });
    }
    let offered = offered_formats(&device).map_err(io("listing formats"))?;
    let chosen = negotiate(&name, config.request, &offered)?;
    let set = device
        .set_format(&Format::new(chosen.width, chosen.height, FourCC::new(&chosen.fourcc)))
        .map_err(io("setting the format"))?;
    if set.fourcc.repr != chosen.fourcc {
        return Err(CameraError::FormatRefused {
            device: name,
            asked: format!("{} {}x{}", fourcc_str(chosen.fourcc), chosen.width, chosen.height),
            got: format!("{} {}x{}", fourcc_str(set.fourcc.repr), set.width, set.height),
        });
    }
    if config.fps > 0 {
        // Not every driver implements S_PARM (CSI bridges often fix the rate); the stream still
        // works at the device's own rate, so this is a warning, not an error.
        if let Err(e) = device.set_params(&v4l::video::capture::Parameters::with_fps(config.fps)) {
            log::warn!("{name}: cannot set {} fps ({e}); using the device's rate", config.fps);
        }
    }
    Ok(OpenedCamera {
        device,
        layout: BufferLayout {
            format: chosen.format,
            width: set.width,
            height: set.height,
            stride: set.stride as usize,
        },
        card: caps.card,
    })
}

fn offered_formats(device: &Device) -> std::io::Result<Vec<OfferedFormat>> {
    let mut out = Vec::new();
    for desc in device.enum_formats()? {
        // A format whose sizes cannot be listed is still reported (with no sizes) so the error
        // message shows everything the device claims.
        let sizes = device.enum_framesizes(desc.fourcc).unwrap_or_default();
        let mut discrete = Vec::new();
        let mut stepwise = None;
        for s in sizes {
            match s.size {
                FrameSizeEnum::Discrete(d) => discrete.push((d.width, d.height)),
                FrameSizeEnum::Stepwise(s) => {
                    stepwise = Some(FrameSizes::Stepwise {
                        min: (s.min_width, s.min_height),
                        max: (s.max_width, s.max_height),
                        step: (s.step_width, s.step_height),
                    })
                }
            }
        }
        out.push(OfferedFormat {
            fourcc: desc.fourcc.repr,
            description: desc.description,
            sizes: stepwise.unwrap_or(FrameSizes::Discrete(discrete)),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::PixelFormat;

    fn config(device: &str) -> CameraConfig {
        CameraConfig {
            device: PathBuf::from(device),
            request: FormatRequest {
                format: Some(PixelFormat::Yuyv),
                width: 640,
                height: 480,
            },
            fps: 30,
        }
    }

    #[test]
    fn no_camera_is_a_clear_message() {
        let err = open_camera(&config("/nonexistent/video9")).err().unwrap().to_string();
        assert!(err.starts_with("no camera at /nonexistent/video9"), "{err}");
        assert!(err.contains("--source") && err.contains(".y4m"), "{err}");
    }

    #[test]
    fn a_node_that_is_not_a_camera_is_refused() {
        // /dev/null opens but answers no V4L2 ioctl.
        let err = open_camera(&config("/dev/null")).err().unwrap().to_string();
        assert!(err.starts_with("/dev/null: reading capabilities"), "{err}");
    }

    #[test]
    fn video_nodes_sort_numerically() {
        let nodes = list_video_devices();
        let numbers: Vec<u32> = nodes.iter().map(|n| n["/dev/video".len()..].parse().unwrap()).collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{nodes:?}");
    }
}
