//! Choosing a capture format and size from what a device offers.
//!
//! Kept a pure function over the offered list so it is tested without a camera.

use super::error::CameraError;
use super::format::{FrameSizes, OfferedFormat, PixelFormat};

/// What the board profile (or the command line) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatRequest {
    /// Tried first; `None` goes straight to the fallback order.
    pub format: Option<PixelFormat>,
    pub width: u32,
    pub height: u32,
}

/// The format and size to set on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub format: PixelFormat,
    /// The FourCC exactly as the device spelled it (`MJPG` or `JPEG`).
    pub fourcc: [u8; 4],
    pub width: u32,
    pub height: u32,
}

/// Picks the format and size.
///
/// Formats are tried in order: the requested one, then YUYV, MJPEG, RGB3. A format offering the
/// exact size wins over an earlier format that does not, because a wrong size costs a resize on
/// every frame and changes what the detector sees, while the format only changes the decode.
/// When no format has the exact size, the earliest format with the nearest size (by pixel count,
/// ties to the larger) is used. `device` only names the device in the error.
pub fn negotiate(device: &str, request: FormatRequest, offered: &[OfferedFormat]) -> Result<Negotiated, CameraError> {
    let mut order: Vec<PixelFormat> = request.format.into_iter().collect();
    for f in PixelFormat::FALLBACK {
        if !order.contains(&f) {
            order.push(f);
        }
    }
    let candidates: Vec<(PixelFormat, &OfferedFormat)> = order
        .iter()
        .filter_map(|&want| {
            offered
                .iter()
                .find(|o| PixelFormat::from_fourcc(o.fourcc) == Some(want))
                .map(|o| (want, o))
        })
        .collect();

    let wanted = (request.width, request.height);
    for &(format, o) in &candidates {
        if supports(&o.sizes, wanted) {
            return Ok(Negotiated {
                format,
                fourcc: o.fourcc,
                width: wanted.0,
                height: wanted.1,
            });
        }
    }
    for &(format, o) in &candidates {
        if let Some((width, height)) = nearest(&o.sizes, wanted) {
            return Ok(Negotiated {
                format,
                fourcc: o.fourcc,
                width,
                height,
            });
        }
    }
    Err(CameraError::NoUsableFormat {
        device: device.to_string(),
        offered: if offered.is_empty() {
            "nothing (the device lists no capture formats)".to_string()
        } else {
            offered.iter().map(|o| o.to_string()).collect::<Vec<_>>().join("; ")
        },
    })
}

fn supports(sizes: &FrameSizes, (w, h): (u32, u32)) -> bool {
    match sizes {
        FrameSizes::Discrete(list) => list.contains(&(w, h)),
        FrameSizes::Stepwise { min, max, step } => {
            let on_grid =
                |v: u32, lo: u32, hi: u32, s: u32| v >= lo && v <= hi && (s == 0 || (v - lo).is_multiple_of(s));
            on_grid(w, min.0, max.0, step.0) && on_grid(h, min.1, max.1, step.1)
        }
    }
}

fn nearest(sizes: &FrameSizes, (w, h): (u32, u32)) -> Option<(u32, u32)> {
    let area = |(a, b): (u32, u32)| a as i64 * b as i64;
    let target = area((w, h));
    let list: Vec<(u32, u32)> = match sizes {
        FrameSizes::Discrete(list) => list.clone(),
        FrameSizes::Stepwise { min, max, step } => {
            let snap = |v: u32, lo: u32, hi: u32, s: u32| {
                let v = v.clamp(lo, hi);
                (v - lo).checked_div(s).map_or(v, |n| lo + n * s)
            };
            vec![(snap(w, min.0, max.0, step.0), snap(h, min.1, max.1, step.1))]
        }
    };
    list.into_iter()
        .filter(|&(a, b)| a > 0 && b > 0)
        .min_by_key(|&s| ((area(s) - target).abs(), -area(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(code: &[u8; 4], sizes: &[(u32, u32)]) -> OfferedFormat {
        OfferedFormat {
            fourcc: *code,
            description: String::from_utf8_lossy(code).into_owned(),
            sizes: FrameSizes::Discrete(sizes.to_vec()),
        }
    }

    fn req(format: Option<PixelFormat>, w: u32, h: u32) -> FormatRequest {
        FormatRequest {
            format,
            width: w,
            height: h,
        }
    }

    #[test]
    fn requested_format_wins_when_it_has_the_size() {
        let offered = [
            offer(b"YUYV", &[(640, 480)]),
            offer(b"MJPG", &[(640, 480), (1280, 720)]),
        ];
        let n = negotiate("cam", req(Some(PixelFormat::Mjpeg), 640, 480), &offered).unwrap();
        assert_eq!((n.format, n.width, n.height), (PixelFormat::Mjpeg, 640, 480));
    }

    #[test]
    fn falls_back_through_yuyv_mjpeg_rgb() {
        let offered = [offer(b"RGB3", &[(640, 480)]), offer(b"MJPG", &[(640, 480)])];
        let n = negotiate("cam", req(Some(PixelFormat::Yuyv), 640, 480), &offered).unwrap();
        assert_eq!(n.format, PixelFormat::Mjpeg);
        let offered = [offer(b"RGB3", &[(640, 480)])];
        assert_eq!(
            negotiate("cam", req(None, 640, 480), &offered).unwrap().format,
            PixelFormat::Rgb3
        );
    }

    #[test]
    fn exact_size_beats_format_order() {
        // YUYV only at 1280x720 (typical for USB 2 cameras at high resolution), MJPEG has 640x480.
        let offered = [offer(b"YUYV", &[(1280, 720)]), offer(b"MJPG", &[(640, 480)])];
        let n = negotiate("cam", req(Some(PixelFormat::Yuyv), 640, 480), &offered).unwrap();
        assert_eq!(n.format, PixelFormat::Mjpeg);
    }

    #[test]
    fn nearest_size_when_nothing_is_exact() {
        let offered = [offer(b"YUYV", &[(320, 240), (800, 600), (1920, 1080)])];
        let n = negotiate("cam", req(None, 640, 480), &offered).unwrap();
        assert_eq!((n.width, n.height), (800, 600));
    }

    #[test]
    fn stepwise_sizes_snap_to_the_grid() {
        let offered = [OfferedFormat {
            fourcc: *b"YUYV",
            description: "YUYV".into(),
            sizes: FrameSizes::Stepwise {
                min: (48, 32),
                max: (1920, 1080),
                step: (16, 8),
            },
        }];
        let n = negotiate("cam", req(None, 640, 480), &offered).unwrap();
        assert_eq!((n.width, n.height), (640, 480));
        let n = negotiate("cam", req(None, 641, 4000), &offered).unwrap();
        assert_eq!((n.width, n.height), (640, 1080));
    }

    #[test]
    fn jpeg_fourcc_counts_as_mjpeg_and_keeps_the_device_spelling() {
        let offered = [offer(b"JPEG", &[(640, 480)])];
        let n = negotiate("cam", req(None, 640, 480), &offered).unwrap();
        assert_eq!((n.format, n.fourcc), (PixelFormat::Mjpeg, *b"JPEG"));
    }

    #[test]
    fn nothing_usable_lists_what_the_device_offers() {
        let offered = [
            offer(b"GREY", &[(640, 480)]),
            OfferedFormat {
                fourcc: *b"NV12",
                description: "Y/CbCr 4:2:0".into(),
                sizes: FrameSizes::Stepwise {
                    min: (16, 16),
                    max: (4096, 2160),
                    step: (2, 2),
                },
            },
        ];
        let err = negotiate("/dev/video7", req(Some(PixelFormat::Yuyv), 640, 480), &offered).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/dev/video7"), "{msg}");
        assert!(msg.contains("GREY (GREY) 640x480"), "{msg}");
        assert!(msg.contains("NV12 (Y/CbCr 4:2:0) 16x16..4096x2160 step 2x2"), "{msg}");
        assert!(msg.contains("yuyv, mjpeg, rgb3"), "{msg}");
        let err = negotiate("/dev/video7", req(None, 640, 480), &[]).unwrap_err();
        assert!(err.to_string().contains("lists no capture formats"), "{err}");
    }
}
