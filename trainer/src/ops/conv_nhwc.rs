//! Channels-last (NHWC) convolution kernels for training, over plain slices.
//!
//! In NHWC a convolution is `Y[B·L, O] = cols[B·L, k·k·C] · W'ᵀ`, with `W'` the weight as
//! `[O, k, k, C]`: the product's rows are already the output's NHWC rows, so no layout transpose
//! follows it, and a 1x1 stride-1 convolution needs no im2col at all (its input rows are its
//! columns). Work is split into chunks of whole images: each chunk's im2col lands in a
//! per-thread workspace that lives across steps, so the im2col matrix of a whole batch (170 MB for
//! the student's first stage) is never materialised, and the backward pass rebuilds it chunk by
//! chunk instead of keeping it.

use super::gemm::{Mat, matmul};
use std::cell::RefCell;

/// Shape of one NHWC convolution (square kernel, dilation 1): dense (`depthwise` false, weight
/// `[O, C, k, k]`) or depthwise (one k x k filter per channel, O = C, weight `[C, 1, k, k]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NhwcConv {
    pub depthwise: bool,
    pub batch: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub o: usize,
    pub k: usize,
    pub stride: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub out_h: usize,
    pub out_w: usize,
}

/// Rows of a chunk's im2col matrix worth one gemm call: fewer images per chunk on large maps
/// (cache), more on small ones (a gemm of a few dozen rows runs far below peak).
const CHUNK_ROWS: usize = 512;

impl NhwcConv {
    /// Geometry of a dense convolution with symmetric padding.
    #[allow(clippy::too_many_arguments)]
    pub fn symmetric(
        batch: usize,
        h: usize,
        w: usize,
        c: usize,
        o: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Self {
        NhwcConv {
            depthwise: false,
            batch,
            h,
            w,
            c,
            o,
            k,
            stride,
            pad_top: pad,
            pad_left: pad,
            out_h: (h + 2 * pad - k) / stride + 1,
            out_w: (w + 2 * pad - k) / stride + 1,
        }
    }

    /// Output positions per image.
    pub fn positions(&self) -> usize {
        self.out_h * self.out_w
    }
    /// Length of one im2col row (and of one weight row of `W'`): k·k·C.
    pub fn patch(&self) -> usize {
        self.k * self.k * self.c
    }
    pub fn input_len(&self) -> usize {
        self.batch * self.h * self.w * self.c
    }
    pub fn output_len(&self) -> usize {
        self.batch * self.positions() * self.o
    }
    /// Elements of the weight (and of its gradient).
    pub fn weight_len(&self) -> usize {
        if self.depthwise {
            self.k * self.k * self.c
        } else {
            self.o * self.patch()
        }
    }
    /// A 1x1 stride-1 unpadded dense convolution: the input rows are the im2col rows.
    pub fn is_pointwise(&self) -> bool {
        !self.depthwise
            && self.k == 1
            && self.stride == 1
            && self.pad_top == 0
            && self.pad_left == 0
            && self.out_h == self.h
            && self.out_w == self.w
    }
    /// Whole images per chunk.
    pub fn images_per_chunk(&self) -> usize {
        (CHUNK_ROWS / self.positions().max(1)).clamp(1, self.batch.max(1))
    }
    /// Output rows per chunk (the last chunk may be shorter).
    pub fn chunk_rows(&self) -> usize {
        self.images_per_chunk() * self.positions()
    }

    #[inline]
    fn source(o: usize, t: usize, stride: usize, pad: usize, n: usize) -> Option<usize> {
        let v = (o * stride + t) as isize - pad as isize;
        (v >= 0 && (v as usize) < n).then_some(v as usize)
    }
}

/// `[O, C, k, k]` (PyTorch's weight layout) → `[O, k, k, C]` (`W'`); depthwise `[C, 1, k, k]`
/// → `[k, k, C]`.
pub fn weight_to_ohwc(g: &NhwcConv, w: &[f32]) -> Vec<f32> {
    let (c, k) = (g.c, g.k);
    if g.depthwise {
        let mut out = vec![0f32; g.weight_len()];
        for ci in 0..c {
            for t in 0..k * k {
                out[t * c + ci] = w[ci * k * k + t];
            }
        }
        return out;
    }
    let mut out = vec![0f32; g.o * g.patch()];
    for o in 0..g.o {
        for ci in 0..c {
            for t in 0..k * k {
                out[o * g.patch() + t * c + ci] = w[(o * c + ci) * k * k + t];
            }
        }
    }
    out
}

/// The inverse of [`weight_to_ohwc`] (for the weight gradient).
pub fn weight_to_oihw(g: &NhwcConv, w: &[f32]) -> Vec<f32> {
    let (c, k) = (g.c, g.k);
    if g.depthwise {
        let mut out = vec![0f32; g.weight_len()];
        for ci in 0..c {
            for t in 0..k * k {
                out[ci * k * k + t] = w[t * c + ci];
            }
        }
        return out;
    }
    let mut out = vec![0f32; g.o * g.patch()];
    for o in 0..g.o {
        for ci in 0..c {
            for t in 0..k * k {
                out[(o * c + ci) * k * k + t] = w[o * g.patch() + t * c + ci];
            }
        }
    }
    out
}

/// im2col of the images `first..first + n` of `x` into `cols` (`n·L` rows of k·k·C, taps in
/// (ky, kx, c) order so each tap copies C contiguous channels).
pub fn im2col(g: &NhwcConv, x: &[f32], first: usize, n: usize, cols: &mut [f32]) {
    let (c, patch, img_len) = (g.c, g.patch(), g.h * g.w * g.c);
    for bi in 0..n {
        let img = &x[(first + bi) * img_len..][..img_len];
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                let row = &mut cols[((bi * g.out_h + oy) * g.out_w + ox) * patch..][..patch];
                for ky in 0..g.k {
                    let iy = NhwcConv::source(oy, ky, g.stride, g.pad_top, g.h);
                    for kx in 0..g.k {
                        let dst = &mut row[(ky * g.k + kx) * c..][..c];
                        match (iy, NhwcConv::source(ox, kx, g.stride, g.pad_left, g.w)) {
                            (Some(iy), Some(ix)) => dst.copy_from_slice(&img[(iy * g.w + ix) * c..][..c]),
                            _ => dst.fill(0.0),
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`] for `n` images: adds each column entry onto its input pixel of
/// `dx` (`n` images, zeroed by the caller).
pub fn col2im(g: &NhwcConv, cols: &[f32], n: usize, dx: &mut [f32]) {
    let (c, patch, img_len) = (g.c, g.patch(), g.h * g.w * g.c);
    for bi in 0..n {
        let img = &mut dx[bi * img_len..][..img_len];
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                let row = &cols[((bi * g.out_h + oy) * g.out_w + ox) * patch..][..patch];
                for ky in 0..g.k {
                    let Some(iy) = NhwcConv::source(oy, ky, g.stride, g.pad_top, g.h) else {
                        continue;
                    };
                    for kx in 0..g.k {
                        if let Some(ix) = NhwcConv::source(ox, kx, g.stride, g.pad_left, g.w) {
                            let src = &row[(ky * g.k + kx) * c..][..c];
                            for (d, s) in img[(iy * g.w + ix) * c..][..c].iter_mut().zip(src) {
                                *d += s;
                            }
                        }
                    }
                }
            }
        }
    }
}

thread_local! {
    // Per-thread scratch that outlives a step: sized by the largest chunk on the first step,
    // then reused, so no step allocates (or page-faults) im2col memory again.
    static COLS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static DCOLS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer `which`, at least `len` long.
fn with_scratch<R>(
    which: &'static std::thread::LocalKey<RefCell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    which.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        f(&mut buf[..len])
    })
}

/// Forward of the images `first..first + n` into their output rows `y` (`n·L x O`), with `w`
/// as `W'` `[O, k·k·C]`.
pub fn forward_chunk(g: &NhwcConv, x: &[f32], w_ohwc: &[f32], first: usize, n: usize, y: &mut [f32]) {
    if g.depthwise {
        return depthwise_forward(g, x, w_ohwc, first, n, y);
    }
    let (rows, patch) = (n * g.positions(), g.patch());
    let wt = Mat::transposed(w_ohwc, patch, g.o);
    if g.is_pointwise() {
        let lhs = Mat::rows(&x[first * g.h * g.w * g.c..][..rows * patch], rows, patch);
        matmul(y, lhs, wt, false);
    } else {
        with_scratch(&COLS, rows * patch, |cols| {
            im2col(g, x, first, n, cols);
            matmul(y, Mat::rows(cols, rows, patch), wt, false);
        });
    }
}

/// Backward of the images `first..first + n` given their output gradient rows `dy`: adds
/// `dyᵀ · cols` to `dw` (`[O, k·k·C]`) and writes those images' input gradient into `dx`.
#[allow(clippy::too_many_arguments)]
pub fn backward_chunk(
    g: &NhwcConv,
    x: &[f32],
    w_ohwc: &[f32],
    first: usize,
    n: usize,
    dy: &[f32],
    dw: &mut [f32],
    dx: &mut [f32],
) {
    if g.depthwise {
        return depthwise_backward(g, x, w_ohwc, first, n, dy, dw, dx);
    }
    let (rows, patch) = (n * g.positions(), g.patch());
    let dyt = Mat::transposed(dy, g.o, rows);
    let w = Mat::rows(w_ohwc, g.o, patch);
    let dym = Mat::rows(dy, rows, g.o);
    if g.is_pointwise() {
        let cols = Mat::rows(&x[first * g.h * g.w * g.c..][..rows * patch], rows, patch);
        matmul(dw, dyt, cols, true);
        matmul(dx, dym, w, false);
        return;
    }
    with_scratch(&COLS, rows * patch, |cols| {
        im2col(g, x, first, n, cols);
        matmul(dw, dyt, Mat::rows(cols, rows, patch), true);
    });
    with_scratch(&DCOLS, rows * patch, |dcols| {
        matmul(dcols, dym, w, false);
        dx.fill(0.0);
        col2im(g, dcols, n, dx);
    });
}

/// Calls `f(output row, input pixel, tap)` for every in-bounds (output position, kernel tap)
/// pair of one image.
#[inline]
fn for_each_tap(g: &NhwcConv, mut f: impl FnMut(usize, usize, usize)) {
    for oy in 0..g.out_h {
        for ky in 0..g.k {
            let Some(iy) = NhwcConv::source(oy, ky, g.stride, g.pad_top, g.h) else {
                continue;
            };
            for ox in 0..g.out_w {
                for kx in 0..g.k {
                    if let Some(ix) = NhwcConv::source(ox, kx, g.stride, g.pad_left, g.w) {
                        f(oy * g.out_w + ox, iy * g.w + ix, ky * g.k + kx);
                    }
                }
            }
        }
    }
}

/// Depthwise forward: in NHWC every tap is a product of two contiguous channel vectors, which
/// the compiler vectorises; no im2col.
fn depthwise_forward(g: &NhwcConv, x: &[f32], w: &[f32], first: usize, n: usize, y: &mut [f32]) {
    let (c, img, out) = (g.c, g.h * g.w * g.c, g.positions() * g.c);
    y[..n * out].fill(0.0);
    for bi in 0..n {
        let xi = &x[(first + bi) * img..][..img];
        let yi = &mut y[bi * out..][..out];
        for_each_tap(g, |o, i, t| {
            let (yr, xr, wr) = (&mut yi[o * c..][..c], &xi[i * c..][..c], &w[t * c..][..c]);
            for ((y, x), w) in yr.iter_mut().zip(xr).zip(wr) {
                *y += x * w;
            }
        });
    }
}

/// Depthwise backward: per tap, `dw += x ⊙ dy` and `dx += w ⊙ dy` over channel vectors.
#[allow(clippy::too_many_arguments)]
fn depthwise_backward(
    g: &NhwcConv,
    x: &[f32],
    w: &[f32],
    first: usize,
    n: usize,
    dy: &[f32],
    dw: &mut [f32],
    dx: &mut [f32],
) {
    let (c, img, out) = (g.c, g.h * g.w * g.c, g.positions() * g.c);
    dx[..n * img].fill(0.0);
    for bi in 0..n {
        let xi = &x[(first + bi) * img..][..img];
        let dyi = &dy[bi * out..][..out];
        let dxi = &mut dx[bi * img..][..img];
        for_each_tap(g, |o, i, t| {
            let d = &dyi[o * c..][..c];
            for ((acc, xv), dv) in dw[t * c..][..c].iter_mut().zip(&xi[i * c..][..c]).zip(d) {
                *acc += xv * dv;
            }
            for ((acc, wv), dv) in dxi[i * c..][..c].iter_mut().zip(&w[t * c..][..c]).zip(d) {
                *acc += wv * dv;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize, f: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 + 1.0) * f).sin()).collect()
    }

    /// Direct definition of the convolution in NHWC with an OIHW weight.
    fn direct(g: &NhwcConv, x: &[f32], w: &[f32]) -> Vec<f32> {
        let mut y = vec![0f32; g.output_len()];
        for b in 0..g.batch {
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    for o in 0..g.o {
                        let mut acc = 0f32;
                        for ci in 0..g.c {
                            for ky in 0..g.k {
                                for kx in 0..g.k {
                                    let iy = (oy * g.stride + ky) as isize - g.pad_top as isize;
                                    let ix = (ox * g.stride + kx) as isize - g.pad_left as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                        continue;
                                    }
                                    let xv = x[((b * g.h + iy as usize) * g.w + ix as usize) * g.c + ci];
                                    acc += xv * w[((o * g.c + ci) * g.k + ky) * g.k + kx];
                                }
                            }
                        }
                        y[((b * g.out_h + oy) * g.out_w + ox) * g.o + o] = acc;
                    }
                }
            }
        }
        y
    }

    #[test]
    fn chunked_forward_matches_the_definition() {
        for g in [
            NhwcConv::symmetric(3, 7, 5, 4, 6, 3, 1, 1),
            NhwcConv::symmetric(2, 9, 8, 3, 5, 3, 2, 1),
            NhwcConv::symmetric(2, 6, 6, 4, 3, 1, 1, 0),
            NhwcConv::symmetric(2, 7, 7, 4, 3, 1, 2, 0),
            NhwcConv::symmetric(1, 11, 9, 2, 4, 7, 2, 3),
        ] {
            let x = ramp(g.input_len(), 0.31);
            let w = ramp(g.o * g.patch(), 0.17);
            let want = direct(&g, &x, &w);
            let wo = weight_to_ohwc(&g, &w);
            assert_eq!(weight_to_oihw(&g, &wo), w);
            let mut y = vec![0f32; g.output_len()];
            let per = g.images_per_chunk();
            for first in (0..g.batch).step_by(per) {
                let n = per.min(g.batch - first);
                let rows = &mut y[first * g.positions() * g.o..][..n * g.positions() * g.o];
                forward_chunk(&g, &x, &wo, first, n, rows);
            }
            for (a, b) in y.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "{g:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), c> = <x, col2im(c)> for any x, c.
        let g = NhwcConv::symmetric(2, 5, 6, 3, 1, 3, 2, 1);
        let x = ramp(g.input_len(), 0.7);
        let c = ramp(g.batch * g.positions() * g.patch(), 0.29);
        let mut cols = vec![0f32; c.len()];
        im2col(&g, &x, 0, g.batch, &mut cols);
        let mut back = vec![0f32; x.len()];
        col2im(&g, &c, g.batch, &mut back);
        let lhs: f64 = cols.iter().zip(&c).map(|(a, b)| (a * b) as f64).sum();
        let rhs: f64 = x.iter().zip(&back).map(|(a, b)| (a * b) as f64).sum();
        assert!((lhs - rhs).abs() < 1e-3, "{lhs} vs {rhs}");
    }
}
