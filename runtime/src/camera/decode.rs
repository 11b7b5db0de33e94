//! One captured buffer (YUYV, MJPEG or RGB3 bytes) to a packed RGB8 image.

use super::error::CameraError;
use super::format::PixelFormat;
use super::yuyv::yuyv_to_rgb;

/// Geometry of the buffers a negotiated stream delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferLayout {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    /// Bytes per row as the driver reports it (ignored for MJPEG).
    pub stride: usize,
}

/// Decodes `bytes` (the used part of one buffer) to `width * height * 3` RGB bytes.
pub fn to_rgb(layout: BufferLayout, bytes: &[u8]) -> Result<Vec<u8>, CameraError> {
    let BufferLayout {
        format,
        width,
        height,
        stride,
    } = layout;
    let short = || CameraError::Decode {
        format,
        message: format!(
            "{} bytes do not hold a {width}x{height} frame with stride {stride}",
            bytes.len()
        ),
    };
    match format {
        PixelFormat::Yuyv => yuyv_to_rgb(bytes, width, height, stride.max(2 * width as usize)).ok_or_else(short),
        PixelFormat::Rgb3 => {
            let (w, h, stride) = (width as usize, height as usize, stride.max(3 * width as usize));
            if h == 0 || bytes.len() < stride * (h - 1) + 3 * w {
                return Err(short());
            }
            let mut out = Vec::with_capacity(w * h * 3);
            for row in 0..h {
                out.extend_from_slice(&bytes[row * stride..row * stride + 3 * w]);
            }
            Ok(out)
        }
        PixelFormat::Mjpeg => {
            // The image crate's decoder (zune-jpeg) inserts the default Huffman tables that UVC
            // MJPEG frames leave out, so camera frames decode like ordinary JPEG files.
            let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg).map_err(|e| {
                CameraError::Decode {
                    format,
                    message: e.to_string(),
                }
            })?;
            if (img.width(), img.height()) != (width, height) {
                return Err(CameraError::Decode {
                    format,
                    message: format!(
                        "JPEG is {}x{} but the stream was negotiated at {width}x{height}",
                        img.width(),
                        img.height()
                    ),
                });
            }
            Ok(img.into_rgb8().into_raw())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::ImageEncoder;

    fn layout(format: PixelFormat, width: u32, height: u32, stride: usize) -> BufferLayout {
        BufferLayout {
            format,
            width,
            height,
            stride,
        }
    }

    #[test]
    fn rgb3_drops_row_padding() {
        let src = [1, 2, 3, 4, 5, 6, 0, 0, 7, 8, 9, 10, 11, 12];
        let rgb = to_rgb(layout(PixelFormat::Rgb3, 2, 2, 8), &src).unwrap();
        assert_eq!(rgb, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert!(to_rgb(layout(PixelFormat::Rgb3, 2, 3, 8), &src).is_err());
    }

    #[test]
    fn mjpeg_round_trips_a_flat_colour() {
        let (w, h) = (32u32, 16u32);
        let pixels: Vec<u8> = (0..w * h).flat_map(|_| [200u8, 40, 90]).collect();
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
            .write_image(&pixels, w, h, image::ExtendedColorType::Rgb8)
            .unwrap();
        let rgb = to_rgb(layout(PixelFormat::Mjpeg, w, h, 0), &jpeg).unwrap();
        assert_eq!(rgb.len(), (w * h * 3) as usize);
        for px in rgb.chunks_exact(3) {
            for (got, want) in px.iter().zip([200u8, 40, 90]) {
                assert!((*got as i32 - want as i32).abs() <= 3, "{px:?}");
            }
        }
        let err = to_rgb(layout(PixelFormat::Mjpeg, 64, 16, 0), &jpeg).unwrap_err();
        assert!(err.to_string().contains("32x16"), "{err}");
        assert!(to_rgb(layout(PixelFormat::Mjpeg, w, h, 0), &jpeg[..jpeg.len() / 3]).is_err());
    }

    #[test]
    fn yuyv_goes_through_the_bt601_converter() {
        let rgb = to_rgb(layout(PixelFormat::Yuyv, 2, 1, 4), &[235, 128, 16, 128]).unwrap();
        assert_eq!(rgb, [255, 255, 255, 0, 0, 0]);
        let err = to_rgb(layout(PixelFormat::Yuyv, 4, 1, 8), &[0; 4]).unwrap_err();
        assert!(err.to_string().contains("4 bytes"), "{err}");
    }
}
