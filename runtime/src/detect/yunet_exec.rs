//! Running the layers [`super::yunet_native`] reads from the graph: each layer's output rows split
//! into bands over rayon's current pool (every kernel computes any band of rows from the layer's
//! whole input), the kernels compiled for AVX2 + FMA where the CPU has them.
//!
//! Why rows: each of YuNet's layers is too small to share by anything else, but a 640x480 frame
//! has 60–240 rows per layer, so two cores share every layer; the layers stay in order (each reads
//! the ones before). The pool is rayon's current one: the global pool sized by
//! `RAYON_NUM_THREADS` or, under a board profile, by its `inference.threads` (`sitfer run` builds
//! the global pool from it), so a board that wants one thread gets the plain sequential loop.

use super::nhwc::{self, ConvGeom, Lanes, Shape};
use super::nhwc_lanes as lanes;
use rayon::prelude::*;

/// What a layer computes; `x`, `a`, `b` index the net's buffers.
#[derive(Debug)]
pub(super) enum Op {
    /// Dense convolution: the 1x1 ones and the stem.
    Conv {
        x: usize,
        s: Shape,
        g: ConvGeom,
        /// as [`nhwc::conv_weights`] lays them out
        w: Vec<f32>,
        bias: Vec<f32>,
        relu: bool,
    },
    Depthwise {
        x: usize,
        s: Shape,
        /// `[ky*3+kx][c]`
        w: Vec<f32>,
        bias: Vec<f32>,
        relu: bool,
    },
    Pool {
        x: usize,
        s: Shape,
    },
    Upsample {
        x: usize,
        s: Shape,
    },
    Add {
        a: usize,
        b: usize,
    },
    /// On the output buffer, in place.
    Sigmoid,
}

/// One step of the forward pass: `op` written into buffer `out`, of shape `shape`.
#[derive(Debug)]
pub(super) struct Layer {
    pub op: Op,
    pub out: usize,
    pub shape: Shape,
}

/// Output floats below which a band is not worth a thread: handing one over costs microseconds,
/// and YuNet's stride-32 layers hold only 20x15 pixels.
const MIN_BAND: usize = 8192;
/// Bands per thread: more than one, so a thread that finishes early (its core not shared with
/// the capture thread or another process) takes over the rest.
const BANDS_PER_THREAD: usize = 2;

impl Layer {
    /// Writes output rows `y0..` into `dst`, a band of them (for `Sigmoid` the band is also the
    /// input), reading the inputs from `bufs`; the convolutions over vectors `L`, `K` of them
    /// making [`nhwc::CONV_BLOCK`] channels.
    #[inline(always)]
    fn band<L: Lanes, const K: usize>(&self, bufs: &[Vec<f32>], y0: usize, dst: &mut [f32]) {
        match &self.op {
            Op::Conv {
                x, s, g, w, bias, relu, ..
            } => nhwc::conv::<L, K>(&bufs[*x], *s, *g, w, bias, *relu, y0, dst),
            Op::Depthwise { x, s, w, bias, relu } => nhwc::depthwise3x3::<L>(&bufs[*x], *s, w, bias, *relu, y0, dst),
            Op::Pool { x, s } => nhwc::maxpool2(&bufs[*x], *s, y0, dst),
            Op::Upsample { x, s } => nhwc::upsample2(&bufs[*x], *s, y0, dst),
            Op::Add { a, b } => {
                let at = y0 * self.shape.row();
                nhwc::add(&bufs[*a][at..], &bufs[*b][at..], dst)
            }
            Op::Sigmoid => nhwc::sigmoid(dst),
        }
    }

    /// [`Self::band`] over the widest vectors the CPU has.
    fn band_dispatch(&self, bufs: &[Vec<f32>], y0: usize, dst: &mut [f32], avx2: bool) {
        #[cfg(target_arch = "x86_64")]
        {
            if avx2 {
                // SAFETY: the CPU has AVX2 and FMA (checked when the net was built).
                unsafe { self.band_avx2(bufs, y0, dst) };
            } else {
                self.band::<lanes::Sse, 4>(bufs, y0, dst);
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            let _ = avx2;
            self.band::<lanes::Neon, 4>(bufs, y0, dst);
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            let _ = avx2;
            self.band::<f32, 16>(bufs, y0, dst);
        }
    }

    /// [`Self::band`] compiled for AVX2 and FMA, the kernels (all `#[inline(always)]`) built
    /// again inside it over 8-float vectors.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn band_avx2(&self, bufs: &[Vec<f32>], y0: usize, dst: &mut [f32]) {
        self.band::<lanes::Avx, 2>(bufs, y0, dst);
    }
}

/// Runs `layers` in order on `bufs` (buffer 0 holds the input) over rayon's current pool.
pub(super) fn run(layers: &[Layer], bufs: &mut [Vec<f32>], avx2: bool) {
    let threads = rayon::current_num_threads();
    if threads > 1 {
        // once onto a pool thread for the whole pass, rather than once per layer from outside
        rayon::scope(|_| run_on(layers, bufs, avx2, threads));
    } else {
        run_on(layers, bufs, avx2, 1);
    }
}

fn run_on(layers: &[Layer], bufs: &mut [Vec<f32>], avx2: bool, threads: usize) {
    for l in layers {
        // the output buffer is taken out while the inputs are read, then put back
        let mut dst = std::mem::take(&mut bufs[l.out]);
        let rows = l.shape.h;
        let bands = (dst.len() / MIN_BAND)
            .min(threads * BANDS_PER_THREAD)
            .clamp(1, rows.max(1));
        if threads == 1 || bands == 1 {
            l.band_dispatch(bufs, 0, &mut dst, avx2);
        } else {
            let per = rows.div_ceil(bands);
            let bufs = &*bufs;
            dst.par_chunks_mut(per * l.shape.row())
                .enumerate()
                .for_each(|(i, d)| l.band_dispatch(bufs, i * per, d, avx2));
        }
        bufs[l.out] = dst;
    }
}
