//! Augmentation: weak (random crop with padding + horizontal flip) and strong (RandAugment:
//! N ops drawn from the 14 of FixMatch's pool, each with a random magnitude, then Cutout).
//!
//! Everything takes an explicit RNG, so a view is a pure function of (image, seed). The pixel
//! ops are written here because no crate offers RandAugment on `image` buffers; geometric warps
//! use imageproc.

use image::{Rgb, RgbImage};
use imageproc::geometric_transformations::{Interpolation, Projection, rotate_about_center, warp};
use rand::Rng;

/// Fill value for pixels uncovered by geometric ops and by Cutout (mid gray, as in FixMatch).
pub const FILL: Rgb<u8> = Rgb([128, 128, 128]);

/// Which augmentation a view gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ViewKind {
    /// No augmentation (evaluation).
    None,
    Weak,
    Strong,
}

/// Augmentation parameters.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct AugmentConfig {
    /// Padding before the random crop, as a fraction of the side (FixMatch: 4/32 = 0.125).
    pub pad_fraction: f32,
    /// Number of RandAugment ops per strong view.
    pub ops: usize,
    /// Largest magnitude (1..=10) drawn for each op.
    pub max_magnitude: u32,
    /// Cutout square side as a fraction of the image side.
    pub cutout_fraction: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            pad_fraction: 0.125,
            ops: 2,
            max_magnitude: 10,
            cutout_fraction: 0.4,
        }
    }
}

/// The 14 RandAugment ops of FixMatch's pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Identity,
    AutoContrast,
    Equalize,
    Rotate,
    Solarize,
    Color,
    Posterize,
    Contrast,
    Brightness,
    Sharpness,
    ShearX,
    ShearY,
    TranslateX,
    TranslateY,
}

pub const OPS: [Op; 14] = [
    Op::Identity,
    Op::AutoContrast,
    Op::Equalize,
    Op::Rotate,
    Op::Solarize,
    Op::Color,
    Op::Posterize,
    Op::Contrast,
    Op::Brightness,
    Op::Sharpness,
    Op::ShearX,
    Op::ShearY,
    Op::TranslateX,
    Op::TranslateY,
];

/// Produces a view of `img`.
pub fn augment(img: &RgbImage, kind: ViewKind, cfg: &AugmentConfig, rng: &mut impl Rng) -> RgbImage {
    match kind {
        ViewKind::None => img.clone(),
        ViewKind::Weak => weak(img, cfg, rng),
        ViewKind::Strong => {
            let mut out = weak(img, cfg, rng);
            for _ in 0..cfg.ops {
                let op = OPS[rng.random_range(0..OPS.len())];
                let m = rng.random_range(1..=cfg.max_magnitude.max(1)) as f32 / 10.0;
                out = apply(&out, op, m, rng);
            }
            cutout(&mut out, cfg.cutout_fraction, rng);
            out
        }
    }
}

/// Random crop after reflect-padding, then a horizontal flip with probability 1/2.
pub fn weak(img: &RgbImage, cfg: &AugmentConfig, rng: &mut impl Rng) -> RgbImage {
    let (w, h) = img.dimensions();
    let pad = ((w.min(h) as f32) * cfg.pad_fraction).round() as i64;
    let dx = rng.random_range(-pad..=pad);
    let dy = rng.random_range(-pad..=pad);
    let flip = rng.random_bool(0.5);
    let mut out = RgbImage::new(w, h);
    let reflect = |v: i64, n: i64| -> u32 {
        // Reflect without repeating the edge pixel (numpy's "reflect"); pads are < n.
        let r = if v < 0 {
            -v
        } else if v >= n {
            2 * n - 2 - v
        } else {
            v
        };
        r.clamp(0, n - 1) as u32
    };
    for y in 0..h {
        let sy = reflect(y as i64 + dy, h as i64);
        for x in 0..w {
            let xx = if flip { w - 1 - x } else { x };
            let sx = reflect(xx as i64 + dx, w as i64);
            out.put_pixel(x, y, *img.get_pixel(sx, sy));
        }
    }
    out
}

/// Greys out a random square (centre anywhere in the image, clipped at the border).
pub fn cutout(img: &mut RgbImage, fraction: f32, rng: &mut impl Rng) {
    let (w, h) = img.dimensions();
    let side = ((w.min(h) as f32) * fraction).round() as i64;
    if side <= 0 {
        return;
    }
    let cx = rng.random_range(0..w as i64);
    let cy = rng.random_range(0..h as i64);
    let (x0, y0) = ((cx - side / 2).max(0), (cy - side / 2).max(0));
    let (x1, y1) = (
        (cx - side / 2 + side).min(w as i64),
        (cy - side / 2 + side).min(h as i64),
    );
    for y in y0..y1 {
        for x in x0..x1 {
            img.put_pixel(x as u32, y as u32, FILL);
        }
    }
}

fn signed(m: f32, rng: &mut impl Rng) -> f32 {
    if rng.random_bool(0.5) { m } else { -m }
}

/// Blends `img` toward `degenerate` as PIL's ImageEnhance does: out = d + f * (img - d).
fn blend(img: &RgbImage, degenerate: &RgbImage, factor: f32) -> RgbImage {
    let mut out = img.clone();
    for (o, (a, d)) in out.pixels_mut().zip(img.pixels().zip(degenerate.pixels())) {
        for c in 0..3 {
            let v = d[c] as f32 + factor * (a[c] as f32 - d[c] as f32);
            o[c] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

fn luma(p: &Rgb<u8>) -> u8 {
    ((p[0] as u32 * 299 + p[1] as u32 * 587 + p[2] as u32 * 114) / 1000) as u8
}

fn affine(img: &RgbImage, m: [f32; 9]) -> RgbImage {
    match Projection::from_matrix(m) {
        Some(p) => warp(img, &p, Interpolation::Bilinear, FILL),
        None => img.clone(),
    }
}

/// Applies one op at magnitude `m` in (0, 1].
pub fn apply(img: &RgbImage, op: Op, m: f32, rng: &mut impl Rng) -> RgbImage {
    let (w, h) = img.dimensions();
    match op {
        Op::Identity => img.clone(),
        Op::AutoContrast => {
            let mut lo = [255u8; 3];
            let mut hi = [0u8; 3];
            for p in img.pixels() {
                for c in 0..3 {
                    lo[c] = lo[c].min(p[c]);
                    hi[c] = hi[c].max(p[c]);
                }
            }
            let mut out = img.clone();
            for p in out.pixels_mut() {
                for c in 0..3 {
                    if hi[c] > lo[c] {
                        p[c] = ((p[c] - lo[c]) as u32 * 255 / (hi[c] - lo[c]) as u32) as u8;
                    }
                }
            }
            out
        }
        Op::Equalize => {
            let mut out = img.clone();
            for c in 0..3 {
                let mut hist = [0u32; 256];
                for p in img.pixels() {
                    hist[p[c] as usize] += 1;
                }
                let n = (w * h) as f32;
                let mut lut = [0u8; 256];
                let mut acc = 0u32;
                for v in 0..256 {
                    acc += hist[v];
                    lut[v] = ((acc as f32 / n) * 255.0).round() as u8;
                }
                for p in out.pixels_mut() {
                    p[c] = lut[p[c] as usize];
                }
            }
            out
        }
        Op::Rotate => {
            let deg = signed(30.0 * m, rng);
            rotate_about_center(img, deg.to_radians(), Interpolation::Bilinear, FILL)
        }
        Op::Solarize => {
            let threshold = (256.0 - 256.0 * m).round() as i32;
            let mut out = img.clone();
            for p in out.pixels_mut() {
                for c in 0..3 {
                    if p[c] as i32 >= threshold {
                        p[c] = 255 - p[c];
                    }
                }
            }
            out
        }
        Op::Posterize => {
            let bits = (8.0 - (4.0 * m).round()).clamp(4.0, 8.0) as u32;
            let mask = !((1u16 << (8 - bits)) - 1) as u8;
            let mut out = img.clone();
            for p in out.pixels_mut() {
                for c in 0..3 {
                    p[c] &= mask;
                }
            }
            out
        }
        Op::Color => {
            let mut gray = img.clone();
            for p in gray.pixels_mut() {
                let l = luma(p);
                *p = Rgb([l, l, l]);
            }
            blend(img, &gray, 1.0 + signed(0.9 * m, rng))
        }
        Op::Contrast => {
            let mean = img.pixels().map(|p| luma(p) as u64).sum::<u64>() as f32 / (w * h) as f32;
            let mean = mean.round() as u8;
            let degenerate = RgbImage::from_pixel(w, h, Rgb([mean, mean, mean]));
            blend(img, &degenerate, 1.0 + signed(0.9 * m, rng))
        }
        Op::Brightness => {
            let black = RgbImage::new(w, h);
            blend(img, &black, 1.0 + signed(0.9 * m, rng))
        }
        Op::Sharpness => {
            // PIL's SMOOTH kernel [[1,1,1],[1,5,1],[1,1,1]]/13 on the interior, edges kept.
            let mut smooth = img.clone();
            for y in 1..h.saturating_sub(1) {
                for x in 1..w.saturating_sub(1) {
                    let mut acc = [0u32; 3];
                    for dy in 0..3 {
                        for dx in 0..3 {
                            let p = img.get_pixel(x + dx - 1, y + dy - 1);
                            let k = if dx == 1 && dy == 1 { 5 } else { 1 };
                            for c in 0..3 {
                                acc[c] += k * p[c] as u32;
                            }
                        }
                    }
                    smooth.put_pixel(x, y, Rgb(acc.map(|a| ((a + 6) / 13) as u8)));
                }
            }
            blend(img, &smooth, 1.0 + signed(0.9 * m, rng))
        }
        Op::ShearX => {
            let s = signed(0.3 * m, rng);
            let cy = h as f32 / 2.0;
            affine(img, [1.0, s, -s * cy, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
        }
        Op::ShearY => {
            let s = signed(0.3 * m, rng);
            let cx = w as f32 / 2.0;
            affine(img, [1.0, 0.0, 0.0, s, 1.0, -s * cx, 0.0, 0.0, 1.0])
        }
        Op::TranslateX => {
            let t = signed(0.3 * m, rng) * w as f32;
            affine(img, [1.0, 0.0, t, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
        }
        Op::TranslateY => {
            let t = signed(0.3 * m, rng) * h as f32;
            affine(img, [1.0, 0.0, 0.0, 0.0, 1.0, t, 0.0, 0.0, 1.0])
        }
    }
}

/// Channel normalisation applied when an image becomes a tensor.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for Normalization {
    /// ImageNet statistics: what the pretrained EfficientNet-Lite0 stem expects, and harmless
    /// for nets trained from scratch.
    fn default() -> Self {
        Normalization {
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }
}

/// Named normalisation presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NormalizationPreset {
    /// torchvision's ImageNet mean/std.
    Imagenet,
    /// TF-Lite's (x - 127) / 128: what the EfficientNet-Lite0 ImageNet weights were trained with.
    TfLite,
}

impl NormalizationPreset {
    pub fn normalization(self) -> Normalization {
        match self {
            NormalizationPreset::Imagenet => Normalization::default(),
            NormalizationPreset::TfLite => Normalization {
                mean: [127.0 / 255.0; 3],
                std: [128.0 / 255.0; 3],
            },
        }
    }
}

/// Writes `img` as normalised CHW floats into `out` (length 3*w*h).
pub fn to_chw(img: &RgbImage, norm: &Normalization, out: &mut [f32]) {
    let (w, h) = img.dimensions();
    let plane = (w * h) as usize;
    assert_eq!(out.len(), 3 * plane, "output buffer size");
    let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * norm.std[c]));
    let shift: [f32; 3] = std::array::from_fn(|c| norm.mean[c] / norm.std[c]);
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = p[c] as f32 * scale[c] - shift[c];
        }
    }
}
