//! Decoding samples into fixed-size RGB images.
//!
//! Rule for grayscale inputs (FER2013, CK+): the luma value is copied into R, G and B, so a
//! gray face and its RGB rendering give the same tensor and ImageNet-pretrained stems see the
//! channel statistics they expect. Non-square crops are resized to the square input directly
//! (face crops are near-square; padding would waste input pixels).

use super::error::{DataError, Result};
use super::sample::ImageRef;
use image::{DynamicImage, GrayImage, RgbImage, imageops::FilterType};
use rayon::prelude::*;

/// Decodes one image and resizes it to `size`x`size` RGB.
pub fn load_rgb(image: &ImageRef, size: u32) -> Result<RgbImage> {
    let dynamic = match image {
        ImageRef::File { path, crop } => {
            let img = image::open(path).map_err(|e| match e {
                image::ImageError::IoError(io) => DataError::io(path, io),
                other => DataError::Image {
                    path: path.clone(),
                    message: other.to_string(),
                },
            })?;
            match crop {
                Some(b) => {
                    let (w, h) = (img.width(), img.height());
                    let x = b.x.min(w.saturating_sub(1));
                    let y = b.y.min(h.saturating_sub(1));
                    let cw = b.width.min(w - x).max(1);
                    let ch = b.height.min(h - y).max(1);
                    img.crop_imm(x, y, cw, ch)
                }
                None => img,
            }
        }
        ImageRef::Gray { width, height, pixels } => {
            let g = GrayImage::from_raw(*width, *height, pixels.to_vec()).ok_or_else(|| DataError::Image {
                path: "<in-memory>".into(),
                message: format!("{} pixels for {width}x{height}", pixels.len()),
            })?;
            DynamicImage::ImageLuma8(g)
        }
    };
    // DynamicImage::to_rgb8 replicates luma into the three channels (the documented rule).
    let rgb = dynamic.to_rgb8();
    if rgb.width() == size && rgb.height() == size {
        Ok(rgb)
    } else {
        Ok(image::imageops::resize(&rgb, size, size, FilterType::Triangle))
    }
}

/// Images decoded once and kept in memory (FER-sized faces are small: 32k faces at 48x48 RGB
/// take 220 MB), plus the samples that failed to decode.
pub struct DecodedImages {
    pub images: Vec<RgbImage>,
    /// Indices into the input that decoded; `images[k]` is input `kept[k]`.
    pub kept: Vec<usize>,
    /// (sample id, error) of every image that could not be decoded.
    pub failed: Vec<(String, String)>,
}

/// Decodes all images in parallel. Corrupt or unreadable images are reported, not fatal.
pub fn decode_all<'a>(items: impl IntoIterator<Item = (&'a str, &'a ImageRef)>, size: u32) -> DecodedImages {
    let items: Vec<(&str, &ImageRef)> = items.into_iter().collect();
    let results: Vec<Result<RgbImage>> = items.par_iter().map(|(_, img)| load_rgb(img, size)).collect();
    let mut out = DecodedImages {
        images: Vec::with_capacity(items.len()),
        kept: Vec::with_capacity(items.len()),
        failed: Vec::new(),
    };
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(img) => {
                out.images.push(img);
                out.kept.push(i);
            }
            Err(e) => out.failed.push((items[i].0.to_string(), e.to_string())),
        }
    }
    out
}
