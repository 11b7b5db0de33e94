//! The frame's summed-area table and the area resampling that MTCNN's pyramid and crops read.

use super::{MEAN, SCALE};
use crate::source::Frame;

/// Per-channel summed-area table of the frame (exact integer sums), so that each output pixel
/// of an area resampling costs four look-ups whatever the scale: the pyramid's ten-odd levels
/// and the crops of RNet and ONet all read it.
#[derive(Default)]
pub(super) struct Integral {
    pub(super) w: usize,
    pub(super) h: usize,
    /// `[(h + 1) * (w + 1) * 3]`: sums over `[0, x) x [0, y)`; u32 arithmetic wraps, but every
    /// rectangle's sum fits (frames up to 16 M pixels) so the differences are exact.
    sums: Vec<u32>,
}

impl Integral {
    pub(super) fn build(&mut self, frame: &Frame) {
        let (w, h) = (frame.width as usize, frame.height as usize);
        let stride = (w + 1) * 3;
        self.w = w;
        self.h = h;
        self.sums.clear();
        self.sums.resize((h + 1) * stride, 0);
        for y in 0..h {
            let mut row = [0u32; 3];
            let src = &frame.rgb[y * w * 3..(y + 1) * w * 3];
            let (above, cur) = self.sums.split_at_mut((y + 1) * stride);
            let above = &above[y * stride..];
            for x in 0..w {
                for c in 0..3 {
                    row[c] = row[c].wrapping_add(src[x * 3 + c] as u32);
                    let i = (x + 1) * 3 + c;
                    cur[i] = above[i].wrapping_add(row[c]);
                }
            }
        }
    }

    /// facenet-pytorch's `imresample`, `interpolate(mode="area")`, which is adaptive average
    /// pooling: output pixel `i` of `n` over an input span of `len` averages input pixels
    /// `[floor(i * len / n), ceil((i + 1) * len / n))` (a box filter when shrinking, repetition
    /// when enlarging). Resamples the `cw` x `ch` window at `(x0, y0)` to `ow` x `oh`, written to
    /// `out` as normalised CHW.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn area_resample(
        &self,
        x0: usize,
        y0: usize,
        cw: usize,
        ch: usize,
        ow: usize,
        oh: usize,
        out: &mut [f32],
    ) {
        debug_assert!(x0 + cw <= self.w && y0 + ch <= self.h && cw > 0 && ch > 0);
        let span = |i: usize, len: usize, n: usize| (i * len / n, ((i + 1) * len).div_ceil(n));
        let xs: Vec<(usize, usize)> = (0..ow)
            .map(|i| {
                let (a, b) = span(i, cw, ow);
                (x0 + a, x0 + b)
            })
            .collect();
        let stride = (self.w + 1) * 3;
        let plane = ow * oh;
        for oy in 0..oh {
            let (a, b) = span(oy, ch, oh);
            let (top, bot) = ((y0 + a) * stride, (y0 + b) * stride);
            let rows = (b - a) as f32;
            for (ox, &(xa, xb)) in xs.iter().enumerate() {
                let cols = (xb - xa) as f32;
                for c in 0..3 {
                    let s = &self.sums;
                    let sum = s[bot + xb * 3 + c]
                        .wrapping_sub(s[top + xb * 3 + c])
                        .wrapping_sub(s[bot + xa * 3 + c])
                        .wrapping_add(s[top + xa * 3 + c]);
                    // Divided by the rows, then the columns, as torch's kernel does: the same
                    // float as facenet-pytorch's pyramid (one division by rows * cols differs
                    // in the last bit for about a tenth of the pixels, enough to flip the odd
                    // borderline box).
                    out[c * plane + oy * ow + ox] = (sum as f32 / rows / cols - MEAN) * SCALE;
                }
            }
        }
    }
}
