//! YuNet's 3x3 depthwise convolutions (stride 1, zero padding 1) on channels-last maps: the
//! kernel of [`super::nhwc`] that was bound by loads (~7 G multiply-adds/s when every tap loaded
//! its weights beside its inputs). Here a vector of channels keeps its 9 tap weights in
//! registers while a run of [`DW_PX`] output pixels is computed, each input pixel loaded once per
//! kernel row for the three outputs it touches: 9 x 4 multiply-adds for 18 loads.

use super::nhwc::{Lanes, Shape};

/// Output pixels computed at once: 4 accumulators + 9 weights + the input in AVX2's 16 registers.
const DW_PX: usize = 4;
/// Output pixels of a row done before moving to the next channel block, so the three input rows'
/// stretch stays in L1 (a whole 320-pixel row of 16 channels is 20 KB an input row).
const DW_SPAN: usize = 32;

/// 3x3 depthwise convolution of `x` (shape `s`), stride 1, zero padding 1, into output rows `y0..`
/// (as many as `dst` holds): `w` is `[ky*3+kx][c]`. Channels go a vector of `L` at a time (the
/// last ones a narrower vector, then a float).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn depthwise3x3<L: Lanes>(
    x: &[f32],
    s: Shape,
    w: &[f32],
    bias: &[f32],
    relu_after: bool,
    y0: usize,
    dst: &mut [f32],
) {
    let Shape { h, w: wd, c } = s;
    let row = s.row();
    assert!(x.len() >= s.len() && w.len() == 9 * c && bias.len() == c && dst.len().is_multiple_of(row));
    assert!(y0 + dst.len() / row <= h, "depthwise3x3: rows past the map");
    let dw = Dw {
        s,
        w,
        bias,
        relu: relu_after,
    };
    for (r, out) in dst.chunks_exact_mut(row).enumerate() {
        let y = y0 + r;
        // input rows y-1, y, y+1 where they exist (zeros outside add nothing)
        let rows: [Option<&[f32]>; 3] = std::array::from_fn(|ky| {
            (y + ky)
                .checked_sub(1)
                .filter(|&r| r < h)
                .map(|r| &x[r * row..(r + 1) * row])
        });
        for x0 in (0..wd).step_by(DW_SPAN) {
            let xs = x0..(x0 + DW_SPAN).min(wd);
            let mut b0 = 0;
            while b0 < c {
                let r = c - b0;
                if r >= L::N {
                    dw.span::<L>(&rows, b0, xs.clone(), out);
                    b0 += L::N;
                } else if r >= <L::Half as Lanes>::N {
                    dw.span::<L::Half>(&rows, b0, xs.clone(), out);
                    b0 += <L::Half as Lanes>::N;
                } else {
                    dw.span::<f32>(&rows, b0, xs.clone(), out);
                    b0 += 1;
                }
            }
        }
    }
}

/// What every channel block of one [`depthwise3x3`] call shares.
struct Dw<'a> {
    s: Shape,
    w: &'a [f32],
    bias: &'a [f32],
    relu: bool,
}

impl Dw<'_> {
    /// Output pixels `xs` of one row, channels `b0..b0 + L::N`.
    #[inline(always)]
    fn span<L: Lanes>(&self, rows: &[Option<&[f32]>; 3], b0: usize, xs: std::ops::Range<usize>, out: &mut [f32]) {
        let c = self.s.c;
        let wt: [L; 9] = std::array::from_fn(|t| L::load(&self.w[t * c + b0..]));
        let bias = L::load(&self.bias[b0..]);
        let mut x = xs.start;
        while x < xs.end {
            // the row's first and last pixels read the padding; the rest run DW_PX at a time
            if x > 0 && x + DW_PX < self.s.w && x + DW_PX <= xs.end {
                self.pixels::<L, DW_PX, false>(rows, &wt, bias, b0, x, out);
                x += DW_PX;
            } else {
                self.pixels::<L, 1, true>(rows, &wt, bias, b0, x, out);
                x += 1;
            }
        }
    }

    /// `P` output pixels from column `x0` on, channels `b0..b0 + L::N`: input column `x0 - 1 + i`
    /// is loaded once per kernel row and added into the (up to three) outputs it is a tap of. With
    /// `EDGE` a column outside the row is skipped (zero padding); without, the caller has checked
    /// that all `P + 2` columns exist.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn pixels<L: Lanes, const P: usize, const EDGE: bool>(
        &self,
        rows: &[Option<&[f32]>; 3],
        wt: &[L; 9],
        bias: L,
        b0: usize,
        x0: usize,
        out: &mut [f32],
    ) {
        let c = self.s.c;
        let mut acc = [bias; P];
        // the columns read, checked once: x0 - 1 ..= x0 + P inside the row unless EDGE
        assert!(EDGE || (x0 >= 1 && x0 + P < self.s.w && b0 + L::N <= c));
        for (ky, src) in rows.iter().enumerate() {
            let Some(src) = src else { continue };
            assert!(src.len() >= self.s.w * c);
            for i in 0..P + 2 {
                // input column ix - 1 (ix = 0 is the padding on the left)
                let ix = x0 + i;
                if EDGE && (ix == 0 || ix > self.s.w) {
                    continue;
                }
                let at = (ix - 1) * c + b0;
                // SAFETY: column ix - 1 < s.w (checked above, or just now with EDGE) and
                // b0 + L::N <= c, so at + L::N <= s.w * c <= src.len()
                let v = if EDGE {
                    L::load(&src[at..])
                } else {
                    unsafe { L::load_ptr(src.as_ptr().add(at)) }
                };
                for kx in 0..3 {
                    // input column x0 - 1 + i is tap kx of output pixel i - kx
                    if i >= kx && i - kx < P {
                        acc[i - kx] = acc[i - kx].madd(v, wt[ky * 3 + kx]);
                    }
                }
            }
        }
        for (p, a) in acc.iter().enumerate() {
            let a = if self.relu { a.relu() } else { *a };
            a.store(&mut out[(x0 + p) * c + b0..]);
        }
    }
}
