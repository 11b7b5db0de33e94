//! Face crops as the model saw them in training: a square around the face with a margin,
//! resized with the same filter as the trainer's decoder (`image`'s Triangle), grey copied into
//! three channels when the model was trained on grey faces, normalised with the manifest's
//! mean and std, laid out CHW; the faces of one frame become one batch.

use crate::bundle::Manifest;
use crate::detect::BBox;
use crate::source::Frame;
use image::{RgbImage, imageops};

/// Colour handling of crops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorMode {
    /// BT.601 luma in R, G and B: FER2013 and CK+ are grey, so a model trained on them has never
    /// seen colour, and the trainer feeds grey faces this way.
    Gray,
    /// The frame's colours as they are (for models trained on colour faces).
    Rgb,
}

impl std::str::FromStr for ColorMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "gray" | "grey" => Ok(ColorMode::Gray),
            "rgb" => Ok(ColorMode::Rgb),
            _ => Err(format!("`{s}`: expected `gray` or `rgb`")),
        }
    }
}

/// Rolls below this (radians, about 2°) are not corrected.
const MIN_ROLL: f32 = 0.035;

#[derive(Debug, Clone)]
pub struct FacePrep {
    pub size: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Added on each side, as a fraction of the box's longer side.
    pub margin: f32,
    pub color: ColorMode,
}

impl FacePrep {
    pub fn from_manifest(m: &Manifest, margin: f32, color: ColorMode) -> Self {
        FacePrep {
            size: m.input.size,
            mean: m.input.mean,
            std: m.input.std,
            margin,
            color,
        }
    }

    /// Floats per face.
    pub fn face_len(&self) -> usize {
        3 * (self.size * self.size) as usize
    }

    /// The pixel rectangle `(x, y, w, h)` cropped for `bbox`: the square with margin, clamped
    /// to the frame (a face at the border gets a non-square crop, resized like the trainer's
    /// boxes that leave the image), at least one pixel.
    pub fn crop_rect(&self, frame: &Frame, bbox: &BBox) -> (u32, u32, u32, u32) {
        let b = bbox.square_with_margin(self.margin).clamp(frame.width, frame.height);
        let x = (b.x1.floor() as u32).min(frame.width.saturating_sub(1));
        let y = (b.y1.floor() as u32).min(frame.height.saturating_sub(1));
        let w = ((b.x2.ceil() as u32).saturating_sub(x)).clamp(1, frame.width - x);
        let h = ((b.y2.ceil() as u32).saturating_sub(y)).clamp(1, frame.height - y);
        (x, y, w, h)
    }

    /// The resized RGB crop of `bbox` (before normalisation).
    pub fn crop(&self, frame: &Frame, bbox: &BBox) -> RgbImage {
        let (x, y, w, h) = self.crop_rect(frame, bbox);
        let mut img = RgbImage::new(w, h);
        let fw = frame.width as usize;
        for row in 0..h as usize {
            let src = ((y as usize + row) * fw + x as usize) * 3;
            let dst = row * w as usize * 3;
            img.as_mut()[dst..dst + w as usize * 3].copy_from_slice(&frame.rgb[src..src + w as usize * 3]);
        }
        self.finish(img)
    }

    /// The crop of `bbox` turned by `-roll` (radians) about the box's centre, so that a face
    /// whose eye line has angle `roll` comes out with level eyes, as the mostly upright faces of
    /// FER2013 and CK+ the model learnt from. Sampled bilinearly at the frame's resolution, then
    /// resized like [`FacePrep::crop`]; outside the frame the edge pixels repeat. Below ~2° the
    /// plain crop is returned: turning would only blur it.
    pub fn crop_rolled(&self, frame: &Frame, bbox: &BBox, roll: f32) -> RgbImage {
        if !roll.is_finite() || roll.abs() < MIN_ROLL || frame.width == 0 || frame.height == 0 {
            return self.crop(frame, bbox);
        }
        let sq = bbox.square_with_margin(self.margin);
        let side = (sq.x2 - sq.x1).max(1.0);
        let n = (side.round() as u32).clamp(1, 4096);
        let step = side / n as f32;
        let (cx, cy) = ((sq.x1 + sq.x2) / 2.0, (sq.y1 + sq.y2) / 2.0);
        let (sin, cos) = roll.sin_cos();
        let mut img = RgbImage::new(n, n);
        for v in 0..n {
            let dy = (v as f32 + 0.5) * step - side / 2.0;
            for u in 0..n {
                let dx = (u as f32 + 0.5) * step - side / 2.0;
                // Continuous frame coordinates (pixel centres at i + 0.5) to pixel indices.
                let rgb = frame.bilinear(cx + cos * dx - sin * dy - 0.5, cy + sin * dx + cos * dy - 0.5);
                img.put_pixel(u, v, image::Rgb(rgb.map(|x| x.round().clamp(0.0, 255.0) as u8)));
            }
        }
        self.finish(img)
    }

    /// Grey if asked, then resized to the model's input.
    fn finish(&self, mut img: RgbImage) -> RgbImage {
        let (w, h) = img.dimensions();
        if self.color == ColorMode::Gray {
            for p in img.pixels_mut() {
                let l = ((77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32 + 128) >> 8) as u8;
                p.0 = [l; 3];
            }
        }
        if w == self.size && h == self.size {
            img
        } else {
            imageops::resize(&img, self.size, self.size, imageops::FilterType::Triangle)
        }
    }

    /// Appends the normalised CHW floats of `img` (`size` x `size`) to `out`.
    pub fn push_chw(&self, img: &RgbImage, out: &mut Vec<f32>) {
        let plane = (self.size * self.size) as usize;
        let start = out.len();
        out.resize(start + 3 * plane, 0.0);
        let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * self.std[c]));
        let shift: [f32; 3] = std::array::from_fn(|c| self.mean[c] / self.std[c]);
        for (i, p) in img.pixels().enumerate() {
            for c in 0..3 {
                out[start + c * plane + i] = p[c] as f32 * scale[c] - shift[c];
            }
        }
    }

    /// The batch `[boxes.len(), 3, size, size]` of a frame's faces.
    pub fn batch(&self, frame: &Frame, boxes: &[BBox]) -> Vec<f32> {
        self.batch_rolled(frame, boxes, &[])
    }

    /// [`FacePrep::batch`] with each face levelled by its roll ([`FacePrep::crop_rolled`]);
    /// faces without a roll in `rolls` are cropped as they are.
    pub fn batch_rolled(&self, frame: &Frame, boxes: &[BBox], rolls: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(boxes.len() * self.face_len());
        for (i, b) in boxes.iter().enumerate() {
            let img = self.crop_rolled(frame, b, rolls.get(i).copied().unwrap_or(0.0));
            self.push_chw(&img, &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn prep(margin: f32, color: ColorMode) -> FacePrep {
        FacePrep {
            size: 4,
            mean: [0.5; 3],
            std: [0.25; 3],
            margin,
            color,
        }
    }

    #[test]
    fn crop_is_square_with_margin_and_clamped() {
        let f = Frame {
            index: 0,
            timestamp: Duration::ZERO,
            width: 100,
            height: 80,
            rgb: vec![0; 100 * 80 * 3],
        };
        let p = prep(0.25, ColorMode::Rgb);
        assert_eq!(p.crop_rect(&f, &BBox::new(40.0, 30.0, 60.0, 50.0)), (35, 25, 30, 30));
        // At the corner the square leaves the frame and is cut.
        assert_eq!(p.crop_rect(&f, &BBox::new(0.0, 0.0, 20.0, 20.0)), (0, 0, 25, 25));
        assert_eq!(p.crop_rect(&f, &BBox::new(99.0, 79.0, 100.0, 80.0)), (98, 78, 2, 2));
    }

    #[test]
    fn batch_is_normalised_chw_and_gray_copies_luma() {
        // A 4x4 frame: red left half, blue right half.
        let mut rgb = Vec::new();
        for _y in 0..4 {
            for x in 0..4 {
                rgb.extend(if x < 2 { [255, 0, 0] } else { [0, 0, 255] });
            }
        }
        let f = Frame {
            index: 0,
            timestamp: Duration::ZERO,
            width: 4,
            height: 4,
            rgb,
        };
        let whole = BBox::new(0.0, 0.0, 4.0, 4.0);
        let b = prep(0.0, ColorMode::Rgb).batch(&f, &[whole, whole]);
        assert_eq!(b.len(), 2 * 3 * 16);
        // R plane: 1.0 → (1 - .5) / .25 = 2 on the left, (0 - .5)/.25 = -2 on the right.
        assert_eq!(&b[..4], &[2.0, 2.0, -2.0, -2.0]);
        assert_eq!(&b[32..36], &[-2.0, -2.0, 2.0, 2.0]);
        let g = prep(0.0, ColorMode::Gray).batch(&f, &[whole]);
        // Red luma 77/256*255 ≈ 77: every channel equal.
        assert_eq!(g[0], g[16]);
        assert_eq!(g[0], g[32]);
        assert!((g[0] - ((77.0 / 255.0) - 0.5) / 0.25).abs() < 0.02, "{}", g[0]);
    }

    /// Rows and columns of the two brightest blobs of `img` (left one first).
    fn two_dots(img: &RgbImage) -> [(f32, f32); 2] {
        let (w, h) = img.dimensions();
        let mut found: Vec<(f32, f32)> = Vec::new();
        let mut seen = vec![false; (w * h) as usize];
        for y in 0..h {
            for x in 0..w {
                if img.get_pixel(x, y)[0] < 128 || seen[(y * w + x) as usize] {
                    continue;
                }
                // Centroid of the bright pixels within 8 px.
                let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
                for yy in y.saturating_sub(8)..(y + 8).min(h) {
                    for xx in x.saturating_sub(8)..(x + 8).min(w) {
                        if img.get_pixel(xx, yy)[0] >= 128 && !seen[(yy * w + xx) as usize] {
                            seen[(yy * w + xx) as usize] = true;
                            (sx, sy, n) = (sx + xx as f32, sy + yy as f32, n + 1.0);
                        }
                    }
                }
                found.push((sx / n, sy / n));
            }
        }
        assert_eq!(found.len(), 2, "{found:?}");
        found.sort_by(|a, b| a.0.total_cmp(&b.0));
        [found[0], found[1]]
    }

    #[test]
    fn rolled_crop_levels_a_tilted_eye_line() {
        // Two bright "eyes" 60 px apart on a line tilted by 20° about (100, 100).
        let roll = 20f32.to_radians();
        let mut rgb = vec![0u8; 200 * 200 * 3];
        for sign in [-1.0f32, 1.0] {
            let (ex, ey) = (100.0 + sign * 30.0 * roll.cos(), 100.0 + sign * 30.0 * roll.sin());
            for y in 0..200 {
                for x in 0..200 {
                    if (x as f32 + 0.5 - ex).hypot(y as f32 + 0.5 - ey) < 4.0 {
                        rgb[(y * 200 + x) * 3..][..3].copy_from_slice(&[255; 3]);
                    }
                }
            }
        }
        let f = Frame {
            index: 0,
            timestamp: Duration::ZERO,
            width: 200,
            height: 200,
            rgb,
        };
        let p = FacePrep {
            size: 80,
            ..prep(0.0, ColorMode::Rgb)
        };
        let face = BBox::new(60.0, 60.0, 140.0, 140.0);
        let [l, r] = two_dots(&p.crop(&f, &face));
        assert!(r.1 - l.1 > 15.0, "plain crop keeps the tilt: {l:?} {r:?}");
        let [l, r] = two_dots(&p.crop_rolled(&f, &face, roll));
        assert!((r.1 - l.1).abs() < 1.0, "levelled: {l:?} {r:?}");
        assert!((r.0 - l.0 - 60.0).abs() < 1.5, "distance kept: {l:?} {r:?}");
        assert!(
            ((l.1 + r.1) / 2.0 - 40.0).abs() < 1.0,
            "about the box centre: {l:?} {r:?}"
        );
        // No roll (or a negligible one): exactly the plain crop.
        assert_eq!(p.crop_rolled(&f, &face, 0.0), p.crop(&f, &face));
        assert_eq!(p.crop_rolled(&f, &face, 0.01), p.crop(&f, &face));
        // A face at the frame's corner is filled from the edge, not out of bounds.
        let corner = p.crop_rolled(&f, &BBox::new(-20.0, -20.0, 30.0, 30.0), roll);
        assert_eq!(corner.dimensions(), (80, 80));
    }
}
