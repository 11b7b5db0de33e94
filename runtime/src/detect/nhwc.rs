//! The few convolution kernels YuNet needs, on channels-last (NHWC, batch 1) f32 maps: written
//! by hand because tract 0.23 runs this network ~4x slower than ONNX Runtime, mostly in the 1x1
//! and 3x3-depthwise convolutions and the pools (docs/results/detection.md, "YuNet without tract
//! (tenth session)"), and no crate the runtime can use offers depthwise convolutions.
//! Channels-last makes every kernel a loop over contiguous channels; the convolutions keep their
//! accumulators in registers (a block of output channels for a few pixels at once), so each
//! weight row loaded serves several pixels. They are written once over the [`Lanes`] trait
//! (`nhwc_lanes.rs`: AVX2 + FMA, SSE2, NEON, plain floats), not through the `gemm` crate: its
//! blocking is made for large matrices, YuNet's have 1 to 64 outputs, and adding it to the
//! runtime changes the features tract's shared dependencies are built with.
//!
//! Every kernel computes a band of output rows (`y0` and as many rows as `dst` holds), so a layer
//! can be split across threads by rows; none allocates. All are `#[inline(always)]` so that
//! [`super::yunet_exec`] compiles them inside its function built for AVX2 and FMA (the default
//! x86-64 target has only SSE2), chosen at run time.

pub use super::nhwc_dw::depthwise3x3;
pub use super::nhwc_lanes::Lanes;

/// A feature map's shape: rows, columns, channels (data is `[h][w][c]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Shape {
    pub fn len(&self) -> usize {
        self.h * self.w * self.c
    }

    /// Floats in one row.
    pub fn row(&self) -> usize {
        self.w * self.c
    }
}

/// A convolution's geometry (square kernel, same stride and padding on both axes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvGeom {
    pub fn out_side(&self, side: usize) -> usize {
        (side + 2 * self.pad - self.k) / self.stride + 1
    }
}

#[inline(always)]
pub fn sigmoid(x: &mut [f32]) {
    for v in x {
        *v = 1.0 / (1.0 + (-*v).exp());
    }
}

/// Output channels per block of [`conv`]: 16 accumulators a pixel, times [`CONV_PX`] pixels,
/// fill 8 of AVX2's 16 vector registers and leave room for the weight row and the broadcast input.
pub const CONV_BLOCK: usize = 16;
/// Pixels [`conv`] computes at once, so each weight row loaded serves 4 pixels (one pixel at a
/// time, the loads of weights bound the 1x1 convolutions at ~22 G multiply-adds/s).
const CONV_PX: usize = 4;

/// A dense convolution's weights, ONNX's `[c_out][c_in][ky][kx]`, in the layout [`conv`] reads:
/// output channels in blocks of 16 (the last one the remainder), each block `[ky][kx][c_in][16]`.
pub fn conv_weights(w_oihw: &[f32], c_in: usize, c_out: usize, k: usize) -> Vec<f32> {
    let kk = k * k;
    assert_eq!(w_oihw.len(), c_out * c_in * kk);
    let mut out = Vec::with_capacity(w_oihw.len());
    for b0 in (0..c_out).step_by(CONV_BLOCK) {
        let bw = (c_out - b0).min(CONV_BLOCK);
        for t in 0..kk {
            for i in 0..c_in {
                out.extend((b0..b0 + bw).map(|o| w_oihw[(o * c_in + i) * kk + t]));
            }
        }
    }
    out
}

/// Dense (group 1) k x k convolution of `x` (shape `s`) into output rows `y0..` (as many as `dst`
/// holds, each `ow * c_out` floats), `w` laid out by [`conv_weights`]; YuNet's 1x1 convolutions
/// and its 3x3/2 stem. `K` vectors of `L` make [`CONV_BLOCK`] channels; a last, narrower block
/// is done a vector (then a float) at a time.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn conv<L: Lanes, const K: usize>(
    x: &[f32],
    s: Shape,
    g: ConvGeom,
    w: &[f32],
    bias: &[f32],
    relu_after: bool,
    y0: usize,
    dst: &mut [f32],
) {
    debug_assert_eq!(K * L::N, CONV_BLOCK);
    let n = bias.len();
    let ow = g.out_side(s.w);
    let per_tap = g.k * g.k * s.c;
    assert!(x.len() >= s.len() && w.len() == per_tap * n && dst.len().is_multiple_of(ow * n));
    assert!(y0 + dst.len() / (ow * n) <= g.out_side(s.h), "conv: rows past the map");
    let c = Conv {
        x,
        s,
        g,
        relu: relu_after,
        n,
    };
    for b0 in (0..n).step_by(CONV_BLOCK) {
        let bw = (n - b0).min(CONV_BLOCK);
        // this block's weights, [tap][c_in][bw]
        let wb = &w[b0 * per_tap..][..bw * per_tap];
        if bw == CONV_BLOCK {
            c.block::<L, K>(wb, bw, b0, &bias[b0..], y0, dst);
            continue;
        }
        // the remainder: a vector of L, of L's half, or one float, at a time
        let mut j = 0;
        while j < bw {
            let r = bw - j;
            if r >= L::N {
                c.block::<L, 1>(&wb[j..], bw, b0 + j, &bias[b0 + j..], y0, dst);
                j += L::N;
            } else if r >= <L::Half as Lanes>::N {
                c.block::<L::Half, 1>(&wb[j..], bw, b0 + j, &bias[b0 + j..], y0, dst);
                j += <L::Half as Lanes>::N;
            } else {
                c.block::<f32, 1>(&wb[j..], bw, b0 + j, &bias[b0 + j..], y0, dst);
                j += 1;
            }
        }
    }
}

/// What every block of one [`conv`] call shares.
struct Conv<'a> {
    x: &'a [f32],
    s: Shape,
    g: ConvGeom,
    relu: bool,
    /// output channels
    n: usize,
}

impl Conv<'_> {
    /// Output channels `b0..b0 + K * L::N` for every pixel of the band: `w` starts at the block's
    /// first column in rows of `stride` floats (`[tap][c_in]`). Per output row, the taps that fall
    /// inside the map are found once; the pixels whose taps all fall inside are done [`CONV_PX`]
    /// at a time, the rest one at a time with their columns checked.
    #[inline(always)]
    fn block<L: Lanes, const K: usize>(
        &self,
        w: &[f32],
        stride: usize,
        b0: usize,
        bias: &[f32],
        y0: usize,
        dst: &mut [f32],
    ) {
        let (s, g, n) = (self.s, self.g, self.n);
        let bias: [L; K] = std::array::from_fn(|v| L::load(&bias[v * L::N..]));
        let ow = g.out_side(s.w);
        // columns whose taps all lie inside the row: pad <= ox * stride and ox * stride - pad + k <= w
        let ox_lo = g.pad.div_ceil(g.stride).min(ow);
        let ox_hi = if s.w + g.pad >= g.k {
            ((s.w + g.pad - g.k) / g.stride + 1).clamp(ox_lo, ow)
        } else {
            ox_lo
        };
        for (r, out) in dst.chunks_exact_mut(ow * n).enumerate() {
            let oy = y0 + r;
            // taps ky with a row inside the map
            let top = oy * g.stride;
            let ky = g.pad.saturating_sub(top)..(s.h + g.pad - top).min(g.k);
            let mut ox = 0;
            while ox < ow {
                if ox >= ox_lo && ox + CONV_PX <= ox_hi {
                    self.pixels::<L, K, CONV_PX>(
                        w,
                        stride,
                        &bias,
                        (oy, ox),
                        ky.clone(),
                        0..g.k,
                        &mut out[ox * n + b0..],
                    );
                    ox += CONV_PX;
                } else {
                    // the taps kx whose column lies inside the row
                    let left = (ox * g.stride) as isize - g.pad as isize;
                    let kx = (-left).max(0) as usize..(s.w as isize - left).clamp(0, g.k as isize) as usize;
                    self.pixels::<L, K, 1>(w, stride, &bias, (oy, ox), ky.clone(), kx, &mut out[ox * n + b0..]);
                    ox += 1;
                }
            }
        }
    }

    /// `P` pixels from output pixel `(oy, ox)` on, over the taps `ky` x `kx` (which the caller
    /// checked lie inside the map for all `P`): the accumulators start at the bias and take, per
    /// tap and input channel, the weight row times each pixel's input value.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn pixels<L: Lanes, const K: usize, const P: usize>(
        &self,
        w: &[f32],
        stride: usize,
        bias: &[L; K],
        (oy, ox): (usize, usize),
        ky: std::ops::Range<usize>,
        kx: std::ops::Range<usize>,
        out: &mut [f32],
    ) {
        let (s, g, c) = (self.s, self.g, self.s.c);
        let mut acc = [*bias; P];
        for ky in ky {
            let iy = oy * g.stride + ky - g.pad;
            for kx in kx.clone() {
                // checked here, once per tap, so that the loop over input channels (a weight row
                // and a value per pixel each) has no bounds checks: with them it ran ~35
                // instructions for 8 multiply-adds
                let taps = &w[(ky * g.k + kx) * c * stride..][..(c - 1) * stride + K * L::N];
                let ix = ox * g.stride + kx - g.pad;
                let px: [&[f32]; P] = std::array::from_fn(|p| &self.x[(iy * s.w + ix + p * g.stride) * c..][..c]);
                for ci in 0..c {
                    // SAFETY: ci * stride + (K - 1) * L::N + L::N <= taps.len() and ci < c = px[p].len()
                    let wv: [L; K] =
                        std::array::from_fn(|v| unsafe { L::load_ptr(taps.as_ptr().add(ci * stride + v * L::N)) });
                    for p in 0..P {
                        let xv = L::splat(unsafe { *px[p].get_unchecked(ci) });
                        for v in 0..K {
                            acc[p][v] = acc[p][v].madd(xv, wv[v]);
                        }
                    }
                }
            }
        }
        for (p, a) in acc.iter().enumerate() {
            for (v, &l) in a.iter().enumerate() {
                let l = if self.relu { l.relu() } else { l };
                l.store(&mut out[p * self.n + v * L::N..]);
            }
        }
    }
}

/// 2x2 max pooling, stride 2 (odd last rows and columns dropped, as ONNX `MaxPool` without pads),
/// into output rows `y0..`.
#[inline(always)]
pub fn maxpool2(x: &[f32], s: Shape, y0: usize, dst: &mut [f32]) {
    let (ow, c) = (s.w / 2, s.c);
    for (r, out) in dst.chunks_exact_mut(ow * c).enumerate() {
        let oy = y0 + r;
        let r0 = &x[(2 * oy) * s.row()..][..s.row()];
        let r1 = &x[(2 * oy + 1) * s.row()..][..s.row()];
        for ((o, a), b) in out
            .chunks_exact_mut(c)
            .zip(r0.chunks_exact(2 * c))
            .zip(r1.chunks_exact(2 * c))
        {
            for ch in 0..c {
                o[ch] = a[ch].max(a[c + ch]).max(b[ch]).max(b[c + ch]);
            }
        }
    }
}

/// Nearest-neighbour x2 upsampling of `x` (shape `s`) into output rows `y0..` (each `2 * s.w`
/// pixels): each input pixel becomes a 2x2 block.
#[inline(always)]
pub fn upsample2(x: &[f32], s: Shape, y0: usize, dst: &mut [f32]) {
    let c = s.c;
    for (r, out) in dst.chunks_exact_mut(2 * s.row()).enumerate() {
        let src = &x[((y0 + r) / 2) * s.row()..][..s.row()];
        for (o, p) in out.chunks_exact_mut(2 * c).zip(src.chunks_exact(c)) {
            o[..c].copy_from_slice(p);
            o[c..].copy_from_slice(p);
        }
    }
}

#[inline(always)]
pub fn add(a: &[f32], b: &[f32], dst: &mut [f32]) {
    for ((d, x), y) in dst.iter_mut().zip(a).zip(b) {
        *d = x + y;
    }
}
