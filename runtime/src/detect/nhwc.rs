//! The few convolution kernels YuNet needs, on channels-last (NHWC, batch 1) f32 maps: written
//! by hand because tract 0.23 runs this network ~4x slower than ONNX Runtime, mostly in the 1x1
//! and 3x3-depthwise convolutions and the pools (docs/results/detection.md, "YuNet without tract
//! (tenth session)"), and no crate the runtime can use offers depthwise convolutions.
//! Channels-last makes every kernel a loop over contiguous channels, which the compiler
//! vectorises; the 1x1 convolutions are matrix products with few outputs (1 to 64), written here
//! with the accumulators in registers rather than through the `gemm` crate: its blocking is made
//! for large matrices, and adding it to the runtime changes the features tract's shared
//! dependencies are built with.
//!
//! Each function writes its whole output; none allocates. All are `#[inline(always)]` so that
//! [`super::yunet_native`] can compile them a second time inside a function built for AVX2 and
//! FMA (the default x86-64 target has only SSE2), chosen at run time.

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
}

/// `acc + a * b`, fused into one instruction (one rounding) when `FMA`: only for code compiled
/// with the `fma` target feature (x86-64) or on aarch64, where `mul_add` is an instruction; on
/// plain x86-64 it would be a library call.
#[inline(always)]
fn madd<const FMA: bool>(acc: f32, a: f32, b: f32) -> f32 {
    if FMA { a.mul_add(b, acc) } else { acc + a * b }
}

#[inline(always)]
pub fn relu(x: &mut [f32]) {
    for v in x {
        *v = v.max(0.0);
    }
}

#[inline(always)]
pub fn sigmoid(x: &mut [f32]) {
    for v in x {
        *v = 1.0 / (1.0 + (-*v).exp());
    }
}

/// `dst (m x n) = bias + a (m x k) * b (k x n)`, all row-major and contiguous: per row of `a`, the
/// accumulators (one per output channel) start at the bias and take one multiply-add of a
/// broadcast input value by a weight row per input channel. Specialised for the output widths
/// YuNet uses so the accumulators stay in registers.
#[inline(always)]
fn matmul_bias<const FMA: bool>(dst: &mut [f32], a: &[f32], b: &[f32], bias: &[f32], m: usize, k: usize) {
    #[inline(always)]
    fn fixed<const N: usize, const FMA: bool>(dst: &mut [f32], a: &[f32], b: &[f32], bias: &[f32], k: usize) {
        let bias: &[f32; N] = bias.try_into().expect("N outputs");
        for (out, row) in dst.chunks_exact_mut(N).zip(a.chunks_exact(k)) {
            let mut acc = *bias;
            for (&v, wr) in row.iter().zip(b.chunks_exact(N)) {
                let wr: &[f32; N] = wr.try_into().expect("N outputs");
                for j in 0..N {
                    acc[j] = madd::<FMA>(acc[j], v, wr[j]);
                }
            }
            out.copy_from_slice(&acc);
        }
    }
    /// Wide outputs 16 columns at a time with `b` block-major (`[n/16][k][16]`, see
    /// [`pointwise_weights`]): each block is the 16-output loop above, whose accumulators stay in
    /// registers (one pass over 32 or 64 outputs kept them in memory: a third of the speed).
    #[inline(always)]
    fn blocks16<const FMA: bool>(dst: &mut [f32], a: &[f32], b: &[f32], bias: &[f32], k: usize, n: usize) {
        const B: usize = 16;
        for (blk, (wb, bb)) in b.chunks_exact(k * B).zip(bias.chunks_exact(B)).enumerate() {
            let bb: &[f32; B] = bb.try_into().expect("16 outputs");
            for (out, row) in dst.chunks_exact_mut(n).zip(a.chunks_exact(k)) {
                let mut acc = *bb;
                for (&v, wr) in row.iter().zip(wb.chunks_exact(B)) {
                    let wr: &[f32; B] = wr.try_into().expect("16 outputs");
                    for j in 0..B {
                        acc[j] = madd::<FMA>(acc[j], v, wr[j]);
                    }
                }
                out[blk * B..][..B].copy_from_slice(&acc);
            }
        }
    }
    let n = bias.len();
    assert!(
        dst.len() >= m * n && a.len() >= m * k && b.len() == k * n,
        "matmul_bias: slices too small"
    );
    let (dst, a) = (&mut dst[..m * n], &a[..m * k]);
    match n {
        1 => fixed::<1, FMA>(dst, a, b, bias, k),
        4 => fixed::<4, FMA>(dst, a, b, bias, k),
        10 => fixed::<10, FMA>(dst, a, b, bias, k),
        16 => fixed::<16, FMA>(dst, a, b, bias, k),
        32 | 64 => blocks16::<FMA>(dst, a, b, bias, k, n),
        _ => {
            for (out, row) in dst.chunks_exact_mut(n).zip(a.chunks_exact(k)) {
                out.copy_from_slice(bias);
                for (&v, wr) in row.iter().zip(b.chunks_exact(n)) {
                    for (o, w) in out.iter_mut().zip(wr) {
                        *o = madd::<FMA>(*o, v, *w);
                    }
                }
            }
        }
    }
}

/// A 1x1 convolution's weights `[c_out][c_in]` (ONNX's) in the layout [`pointwise`] reads:
/// `[c_in][c_out]`, or `[c_out/16][c_in][16]` for 32 and 64 outputs (done 16 at a time).
pub fn pointwise_weights(w_oi: &[f32], c_in: usize, c_out: usize) -> Vec<f32> {
    if c_out == 32 || c_out == 64 {
        (0..c_out * c_in)
            .map(|q| (q / (16 * c_in), q / 16 % c_in, q % 16))
            .map(|(blk, i, j)| w_oi[(blk * 16 + j) * c_in + i])
            .collect()
    } else {
        (0..c_in * c_out)
            .map(|q| w_oi[(q % c_out) * c_in + q / c_out])
            .collect()
    }
}

/// 1x1 convolution: `dst[p] = bias + x[p] · w`, `w` laid out by [`pointwise_weights`]; one
/// matrix product over all pixels.
#[inline(always)]
pub fn pointwise<const FMA: bool>(x: &[f32], s: Shape, w: &[f32], bias: &[f32], dst: &mut [f32]) {
    matmul_bias::<FMA>(dst, x, w, bias, s.h * s.w, s.c);
}

/// 3x3 depthwise convolution, stride 1, zero padding 1: `w` is `[ky*3+kx][c]`. A pixel's
/// neighbours left and right are the same row shifted by `c` floats, so when `c` divides 64 the
/// row is done in runs of 64 floats against weights repeated to 64: fixed-size loops that become
/// full-width vector operations, the 9 taps summed in registers. (Per-pixel loops over 16 or 32
/// channels came out scalar, and tap-by-tap passes over the row were load/store bound: 2.5x
/// slower in the profile.) The row's first and last pixels, where the padding is, take a plain
/// loop.
#[inline(always)]
pub fn depthwise3x3<const FMA: bool>(x: &[f32], s: Shape, w: &[f32], bias: &[f32], relu_after: bool, dst: &mut [f32]) {
    const L: usize = 64;
    let Shape { h, w: wd, c } = s;
    assert!(x.len() >= s.len() && dst.len() >= s.len() && w.len() == 9 * c && bias.len() == c);
    let row = wd * c;
    // the weights and bias repeated over 64 floats (64 / c pixels), when c divides 64
    let tiled = L.is_multiple_of(c) && row >= L + 2 * c;
    let rep: [[f32; L]; 10] = std::array::from_fn(|t| {
        std::array::from_fn(|j| match (tiled, t) {
            (false, _) => 0.0,
            (true, 9) => bias[j % c],
            (true, t) => w[t * c + j % c],
        })
    });
    for y in 0..h {
        let out = &mut dst[y * row..(y + 1) * row];
        // input rows y-1, y, y+1 where they exist (zeros outside add nothing)
        let rows: [Option<&[f32]>; 3] = std::array::from_fn(|ky| {
            (y + ky)
                .checked_sub(1)
                .filter(|&r| r < h)
                .map(|r| &x[r * row..(r + 1) * row])
        });
        // Interior runs of 64 floats whose three column shifts (-c, 0, +c) stay inside the row:
        // all 9 taps summed in registers, one store. Their first and last pixels are not at the
        // row's ends, so no padding is involved.
        let (mut lo, mut hi) = (0, 0);
        if tiled {
            lo = c;
            let mut j = lo;
            while j + L + c <= row {
                let mut acc = rep[9];
                for (ky, src) in rows.iter().enumerate() {
                    let Some(src) = src else { continue };
                    for kx in 0..3 {
                        let ip: &[f32; L] = src[j + kx * c - c..][..L].try_into().expect("L floats");
                        let wt = &rep[ky * 3 + kx];
                        for q in 0..L {
                            acc[q] = madd::<FMA>(acc[q], ip[q], wt[q]);
                        }
                    }
                }
                out[j..j + L].copy_from_slice(&acc);
                j += L;
            }
            hi = j;
        }
        // the rest (the row's ends, or all of it): tap by tap over shifted row slices
        for range in [0..lo, hi..row] {
            if range.is_empty() {
                continue;
            }
            let part = &mut out[range.clone()];
            for (q, v) in part.iter_mut().enumerate() {
                *v = bias[(range.start + q) % c];
            }
            for (ky, src) in rows.iter().enumerate() {
                let Some(src) = src else { continue };
                for kx in 0..3 {
                    let wt = &w[(ky * 3 + kx) * c..(ky * 3 + kx + 1) * c];
                    for (q, v) in part.iter_mut().enumerate() {
                        let j = range.start + q;
                        // input column of this output pixel, shifted by kx - 1
                        let px = j / c;
                        if (kx == 0 && px == 0) || (kx == 2 && px + 1 == wd) {
                            continue;
                        }
                        *v = madd::<FMA>(*v, src[j + kx * c - c], wt[j % c]);
                    }
                }
            }
        }
        if relu_after {
            relu(out);
        }
    }
}

/// A dense (group 1) convolution's geometry.
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

/// Dense k x k convolution (YuNet's 3x3/2 stem, 3 input channels), direct: per output pixel the
/// accumulators start at the bias and take, for each tap inside the map and each input channel,
/// the input value times that tap's weight row. `w` is `[ky][kx][c_in][c_out]`. (An im2col copy
/// of 3 floats per tap cost more than the products here.)
#[inline(always)]
pub fn dense_conv<const FMA: bool>(
    x: &[f32],
    s: Shape,
    g: ConvGeom,
    w: &[f32],
    bias: &[f32],
    relu_after: bool,
    dst: &mut [f32],
) {
    #[inline(always)]
    fn fixed<const N: usize, const FMA: bool>(
        x: &[f32],
        s: Shape,
        g: ConvGeom,
        w: &[f32],
        bias: &[f32],
        dst: &mut [f32],
    ) {
        let ow = g.out_side(s.w);
        let bias: &[f32; N] = bias.try_into().expect("N outputs");
        for (p, out) in dst.chunks_exact_mut(N).enumerate() {
            let (oy, ox) = (p / ow, p % ow);
            let mut acc = *bias;
            for ky in 0..g.k {
                let iy = (oy * g.stride + ky).wrapping_sub(g.pad);
                if iy >= s.h {
                    continue; // above (wrapped) or below the map
                }
                for kx in 0..g.k {
                    let ix = (ox * g.stride + kx).wrapping_sub(g.pad);
                    if ix >= s.w {
                        continue;
                    }
                    let px = &x[(iy * s.w + ix) * s.c..][..s.c];
                    let taps = &w[(ky * g.k + kx) * s.c * N..][..s.c * N];
                    for (&v, wr) in px.iter().zip(taps.chunks_exact(N)) {
                        let wr: &[f32; N] = wr.try_into().expect("N outputs");
                        for j in 0..N {
                            acc[j] = madd::<FMA>(acc[j], v, wr[j]);
                        }
                    }
                }
            }
            out.copy_from_slice(&acc);
        }
    }
    let (oh, ow, n) = (g.out_side(s.h), g.out_side(s.w), bias.len());
    assert!(w.len() == g.k * g.k * s.c * n && x.len() >= s.len() && dst.len() >= oh * ow * n);
    let dst = &mut dst[..oh * ow * n];
    match n {
        16 => fixed::<16, FMA>(x, s, g, w, bias, dst),
        32 => fixed::<32, FMA>(x, s, g, w, bias, dst),
        _ => {
            for (p, out) in dst.chunks_exact_mut(n).enumerate() {
                let (oy, ox) = (p / ow, p % ow);
                out.copy_from_slice(bias);
                for ky in 0..g.k {
                    let iy = (oy * g.stride + ky).wrapping_sub(g.pad);
                    for kx in 0..g.k {
                        let ix = (ox * g.stride + kx).wrapping_sub(g.pad);
                        if iy >= s.h || ix >= s.w {
                            continue;
                        }
                        let px = &x[(iy * s.w + ix) * s.c..][..s.c];
                        let taps = &w[(ky * g.k + kx) * s.c * n..][..s.c * n];
                        for (&v, wr) in px.iter().zip(taps.chunks_exact(n)) {
                            for (o, wv) in out.iter_mut().zip(wr) {
                                *o = madd::<FMA>(*o, v, *wv);
                            }
                        }
                    }
                }
            }
        }
    }
    if relu_after {
        relu(dst);
    }
}

/// 2x2 max pooling, stride 2 (odd last rows and columns dropped, as ONNX `MaxPool` without pads).
#[inline(always)]
pub fn maxpool2(x: &[f32], s: Shape, dst: &mut [f32]) {
    let (oh, ow, c) = (s.h / 2, s.w / 2, s.c);
    for oy in 0..oh {
        let r0 = &x[(2 * oy) * s.w * c..];
        let r1 = &x[(2 * oy + 1) * s.w * c..];
        for ox in 0..ow {
            let out = &mut dst[(oy * ow + ox) * c..(oy * ow + ox + 1) * c];
            let (a, b) = (&r0[2 * ox * c..], &r1[2 * ox * c..]);
            for ch in 0..c {
                out[ch] = a[ch].max(a[c + ch]).max(b[ch]).max(b[c + ch]);
            }
        }
    }
}

/// Nearest-neighbour x2 upsampling: `dst` (2h x 2w x c) repeats each pixel of `x` (h x w x c) in a
/// 2x2 block.
#[inline(always)]
pub fn upsample2(x: &[f32], s: Shape, dst: &mut [f32]) {
    let c = s.c;
    let ow = 2 * s.w;
    for y in 0..2 * s.h {
        for xo in 0..ow {
            let src = &x[((y / 2) * s.w + xo / 2) * c..][..c];
            dst[(y * ow + xo) * c..][..c].copy_from_slice(src);
        }
    }
}

#[inline(always)]
pub fn add(a: &[f32], b: &[f32], dst: &mut [f32]) {
    for ((d, x), y) in dst.iter_mut().zip(a).zip(b) {
        *d = x + y;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain NHWC reference convolution (any group), written for clarity, not speed.
    #[allow(clippy::too_many_arguments)]
    fn reference_conv(
        x: &[f32],
        s: Shape,
        w_oihw: &[f32],
        bias: &[f32],
        k: usize,
        stride: usize,
        pad: usize,
        group: usize,
    ) -> (Vec<f32>, Shape) {
        let n = bias.len();
        let g = ConvGeom { k, stride, pad };
        let os = Shape {
            h: g.out_side(s.h),
            w: g.out_side(s.w),
            c: n,
        };
        let (cin_g, cout_g) = (s.c / group, n / group);
        let mut out = vec![0f32; os.len()];
        for oy in 0..os.h {
            for ox in 0..os.w {
                for o in 0..n {
                    let grp = o / cout_g;
                    let mut acc = bias[o];
                    for i in 0..cin_g {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * stride + ky) as isize - pad as isize;
                                let ix = (ox * stride + kx) as isize - pad as isize;
                                if iy < 0 || ix < 0 || iy as usize >= s.h || ix as usize >= s.w {
                                    continue;
                                }
                                let xv = x[(iy as usize * s.w + ix as usize) * s.c + grp * cin_g + i];
                                acc += xv * w_oihw[((o * cin_g + i) * k + ky) * k + kx];
                            }
                        }
                    }
                    out[(oy * os.w + ox) * n + o] = acc;
                }
            }
        }
        (out, os)
    }

    /// Deterministic values in [-1, 1) (no rand dependency in the runtime).
    fn noise(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn kernels_match_a_plain_convolution() {
        // odd sizes and a channel count without a specialised path, beside the specialised ones
        for &(h, w, c) in &[(7, 5, 16), (4, 9, 3), (6, 6, 32), (3, 11, 64)] {
            let s = Shape { h, w, c };
            let x = noise(s.len(), 1 + c as u32);
            // depthwise: ONNX weights [c][1][3][3], ours [tap][c]
            let wd = noise(9 * c, 2);
            let b = noise(c, 3);
            let ours_w: Vec<f32> = (0..9)
                .flat_map(|t| (0..c).map(move |ch| (t, ch)))
                .map(|(t, ch)| wd[ch * 9 + t])
                .collect();
            let (want, _) = reference_conv(&x, s, &wd, &b, 3, 1, 1, c);
            let mut got = vec![f32::NAN; s.len()];
            depthwise3x3::<false>(&x, s, &ours_w, &b, false, &mut got);
            assert!(max_diff(&got, &want) < 1e-5, "depthwise {h}x{w}x{c}");
            depthwise3x3::<true>(&x, s, &ours_w, &b, true, &mut got);
            let relu_want: Vec<f32> = want.iter().map(|v| v.max(0.0)).collect();
            assert!(max_diff(&got, &relu_want) < 1e-5, "depthwise + relu {h}x{w}x{c}");
            assert!(got.contains(&0.0) && got.iter().any(|&v| v > 0.0));

            // pointwise to 10, 16, 32, 64 and 7 channels: both weight layouts, the specialised
            // paths and the plain one
            for n in [10, 16, 32, 64, 7] {
                let wp = noise(n * c, 4);
                let bp = noise(n, 5);
                let (want, _) = reference_conv(&x, s, &wp, &bp, 1, 1, 0, 1);
                let mut got = vec![f32::NAN; h * w * n];
                pointwise::<false>(&x, s, &pointwise_weights(&wp, c, n), &bp, &mut got);
                assert!(max_diff(&got, &want) < 1e-4, "pointwise {h}x{w}x{c} to {n}");
                pointwise::<true>(&x, s, &pointwise_weights(&wp, c, n), &bp, &mut got);
                assert!(max_diff(&got, &want) < 1e-4, "pointwise {h}x{w}x{c} to {n}");
            }

            // dense 3x3 stride 2 pad 1 to 16 channels: ours [ky][kx][i][o]
            let g = ConvGeom {
                k: 3,
                stride: 2,
                pad: 1,
            };
            let wf = noise(16 * c * 9, 6);
            let bf = noise(16, 7);
            let mut ours_f = vec![0f32; wf.len()];
            for o in 0..16 {
                for i in 0..c {
                    for t in 0..9 {
                        ours_f[(t * c + i) * 16 + o] = wf[(o * c + i) * 9 + t];
                    }
                }
            }
            let (want, os) = reference_conv(&x, s, &wf, &bf, 3, 2, 1, 1);
            let mut got = vec![f32::NAN; os.len()];
            dense_conv::<true>(&x, s, g, &ours_f, &bf, false, &mut got);
            assert!(max_diff(&got, &want) < 1e-4, "dense {h}x{w}x{c}");
            // and to a channel count without a specialised path, with ReLU
            let (wf5, bf5) = (&ours_f[..5 * c * 9], &bf[..5]);
            let w5: Vec<f32> = (0..9 * c).flat_map(|r| wf5[r * 5..r * 5 + 5].to_vec()).collect();
            let w_oihw5: Vec<f32> = (0..5)
                .flat_map(|o| (0..c * 9).map(move |j| (o, j)))
                .map(|(o, j)| {
                    let (i, t) = (j / 9, j % 9);
                    w5[(t * c + i) * 5 + o]
                })
                .collect();
            let (want5, os5) = reference_conv(&x, s, &w_oihw5, bf5, 3, 2, 1, 1);
            let mut got5 = vec![f32::NAN; os5.len()];
            dense_conv::<false>(&x, s, g, &w5, bf5, true, &mut got5);
            let want5: Vec<f32> = want5.iter().map(|v| v.max(0.0)).collect();
            assert!(max_diff(&got5, &want5) < 1e-4, "dense to 5 {h}x{w}x{c}");
        }
    }

    #[test]
    fn pool_and_upsample_move_the_right_pixels() {
        let s = Shape { h: 5, w: 4, c: 2 };
        let x: Vec<f32> = (0..s.len()).map(|i| i as f32).collect();
        let mut p = vec![0f32; 2 * 2 * 2];
        maxpool2(&x, s, &mut p);
        // the max of each 2x2 block is its bottom-right pixel here; row 4 is dropped
        assert_eq!(p, vec![10.0, 11.0, 14.0, 15.0, 26.0, 27.0, 30.0, 31.0]);
        let small = Shape { h: 1, w: 2, c: 2 };
        let mut u = vec![0f32; 2 * 4 * 2];
        upsample2(&[1.0, 2.0, 3.0, 4.0], small, &mut u);
        assert_eq!(u, vec![1., 2., 1., 2., 3., 4., 3., 4., 1., 2., 1., 2., 3., 4., 3., 4.]);
    }
}
