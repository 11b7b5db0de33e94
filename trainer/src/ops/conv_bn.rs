//! Convolution + batch norm (+ ReLU) as one candle op on channels-last activations, with the
//! backward of all three in closed form.
//!
//! Composed from candle ops, one such layer was seven graph nodes (im2col, matmul, transpose,
//! copy, batch norm, ReLU, and their reshapes), each allocating an activation-sized output and
//! each gradient accumulated by candle as `zeros_like + add`. As one node the layer allocates
//! its output and the pre-norm activation it must keep for the backward, nothing else: im2col
//! and the normalised gradient live in per-thread scratch (see `conv_nhwc`).

use super::batch_norm::BatchStats;
use super::conv_nhwc::{self, NhwcConv};
use super::{contiguous_f32, grad_enabled, with_f32};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::{Arc, Mutex};

/// Which statistics normalise the convolution's output.
#[derive(Debug, Clone)]
pub enum Norm {
    /// The batch's own (training); they are reported through [`ConvBnOut::stats`].
    Batch { eps: f32 },
    /// Given running statistics (evaluation).
    Running { mean: Vec<f32>, var: Vec<f32>, eps: f32 },
}

/// The activation after the norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    None,
    Relu,
    /// min(max(x, 0), 6) (MobileNet / EfficientNet-Lite).
    Relu6,
}

impl Act {
    /// The activation is `clamp(z, lo, hi)` and passes the gradient where `lo < z < hi`: one
    /// branch-free form for all three, so the per-channel loops vectorise.
    fn bounds(self) -> (f32, f32) {
        match self {
            Act::None => (f32::NEG_INFINITY, f32::INFINITY),
            Act::Relu => (0.0, f32::INFINITY),
            Act::Relu6 => (0.0, 6.0),
        }
    }
}

/// Everything but the tensors.
#[derive(Debug, Clone)]
pub struct ConvBnSpec {
    pub stride: usize,
    /// (top, bottom) and (left, right) zero padding.
    pub pad_h: (usize, usize),
    pub pad_w: (usize, usize),
    /// One filter per channel (weight `[C, 1, k, k]`) instead of a dense convolution.
    pub depthwise: bool,
    pub act: Act,
    pub norm: Norm,
}

/// The layer's output `[B, OH, OW, O]` and, in training mode, the batch statistics.
pub struct ConvBnOut {
    pub y: Tensor,
    pub stats: Option<BatchStats>,
}

/// What the backward needs from the forward.
struct Saved {
    /// Convolution output before normalisation, NHWC.
    y: Vec<f32>,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    scale: Vec<f32>,
    shift: Vec<f32>,
    w_ohwc: Vec<f32>,
    geom: NhwcConv,
}

#[derive(Default)]
struct State {
    saved: Option<Saved>,
    stats: Option<BatchStats>,
}

struct ConvBnOp {
    spec: ConvBnSpec,
    keep: bool,
    state: Arc<Mutex<State>>,
}

/// `x` `[B, H, W, C]` (contiguous f32 on CPU), `weight` `[O, C, k, k]` (depthwise: `[C, 1, k,
/// k]`), `gamma`, `beta` `[O]` →
/// `act(bn(conv(x)))` in NHWC. Gradients flow to all four unless [`super::no_grad`] is active,
/// in which case nothing is kept for a backward pass.
pub fn conv_bn(x: &Tensor, weight: &Tensor, gamma: &Tensor, beta: &Tensor, spec: ConvBnSpec) -> Result<ConvBnOut> {
    let keep = grad_enabled();
    let state = Arc::new(Mutex::new(State::default()));
    let op = ConvBnOp {
        spec,
        keep,
        state: state.clone(),
    };
    let gb = Tensor::cat(&[gamma, beta], 0)?;
    let x = x.contiguous()?;
    let w = weight.contiguous()?;
    let y = if keep {
        x.apply_op3(&w, &gb, op)?
    } else {
        x.apply_op3_no_bwd(&w, &gb, &op)?
    };
    let stats = state.lock().expect("conv-bn state").stats.take();
    Ok(ConvBnOut { y, stats })
}

/// Mean and M2 (Σ(v − mean)²) per channel of a chunk's rows, combined across chunks by Chan's
/// rule so that a large mean does not cancel the variance away.
#[derive(Clone)]
struct Moments {
    n: f64,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl Moments {
    fn of_rows(y: &[f32], o: usize) -> Self {
        let rows = y.len() / o;
        let mut sum = vec![0f32; o];
        for r in y.chunks_exact(o) {
            for (s, v) in sum.iter_mut().zip(r) {
                *s += v;
            }
        }
        let mean: Vec<f32> = sum.iter().map(|s| s / rows as f32).collect();
        let mut m2 = vec![0f32; o];
        for r in y.chunks_exact(o) {
            for ((s, v), m) in m2.iter_mut().zip(r).zip(&mean) {
                *s += (v - m) * (v - m);
            }
        }
        Moments {
            n: rows as f64,
            mean: mean.iter().map(|&v| v as f64).collect(),
            m2: m2.iter().map(|&v| v as f64).collect(),
        }
    }

    fn merge(mut self, other: Moments) -> Self {
        let n = self.n + other.n;
        if other.n == 0.0 {
            return self;
        }
        if self.n == 0.0 {
            return other;
        }
        for i in 0..self.mean.len() {
            let d = other.mean[i] - self.mean[i];
            self.m2[i] += other.m2[i] + d * d * self.n * other.n / n;
            self.mean[i] += d * other.n / n;
        }
        self.n = n;
        self
    }
}

fn geometry(spec: &ConvBnSpec, x: &Layout, w: &Layout) -> Result<NhwcConv> {
    let (&[b, h, wd, c], &[o, wc, k, k2]) = (x.dims(), w.dims()) else {
        candle_core::bail!(
            "conv-bn: expects x [B, H, W, C] and weight [O, C, k, k], got {:?} and {:?}",
            x.dims(),
            w.dims()
        )
    };
    let fits = if spec.depthwise { wc == 1 && o == c } else { wc == c };
    if !fits || k != k2 {
        candle_core::bail!("conv-bn: weight {:?} does not fit input channels {c}", w.dims());
    }
    let (pt, pb) = spec.pad_h;
    let (pl, pr) = spec.pad_w;
    if h + pt + pb < k || wd + pl + pr < k {
        candle_core::bail!("conv-bn: {h}x{wd} input smaller than the {k}x{k} kernel");
    }
    Ok(NhwcConv {
        depthwise: spec.depthwise,
        batch: b,
        h,
        w: wd,
        c,
        o,
        k,
        stride: spec.stride,
        pad_top: pt,
        pad_left: pl,
        out_h: (h + pt + pb - k) / spec.stride + 1,
        out_w: (wd + pl + pr - k) / spec.stride + 1,
    })
}

impl CustomOp3 for ConvBnOp {
    fn name(&self) -> &'static str {
        "sitfer-conv-bn-nhwc"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = geometry(&self.spec, l1, l2)?;
        let x = contiguous_f32(s1, l1, "conv-bn input")?;
        let w = contiguous_f32(s2, l2, "conv-bn weight")?;
        let gb = contiguous_f32(s3, l3, "conv-bn gamma/beta")?;
        let (gamma, beta) = gb.split_at(g.o);
        let w_ohwc = conv_nhwc::weight_to_ohwc(&g, w);
        let per = g.images_per_chunk();
        let chunk = g.chunk_rows() * g.o;
        let mut y = vec![0f32; g.output_len()];
        let batch_stats = matches!(self.spec.norm, Norm::Batch { .. });
        let moments = y
            .par_chunks_mut(chunk)
            .enumerate()
            .map(|(i, ys)| {
                let first = i * per;
                conv_nhwc::forward_chunk(&g, x, &w_ohwc, first, per.min(g.batch - first), ys);
                batch_stats.then(|| Moments::of_rows(ys, g.o))
            })
            .reduce(
                || None,
                |a, b| match (a, b) {
                    (Some(a), Some(b)) => Some(a.merge(b)),
                    (a, b) => a.or(b),
                },
            );
        let (mean, var, eps) = match (&self.spec.norm, moments) {
            (Norm::Batch { eps }, Some(m)) => (
                m.mean.iter().map(|&v| v as f32).collect::<Vec<_>>(),
                m.m2.iter().map(|&v| (v / m.n.max(1.0)) as f32).collect::<Vec<_>>(),
                *eps,
            ),
            (Norm::Running { mean, var, eps }, _) => (mean.clone(), var.clone(), *eps),
            (Norm::Batch { .. }, None) => candle_core::bail!("conv-bn: empty batch"),
        };
        let inv_std: Vec<f32> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
        let scale: Vec<f32> = gamma.iter().zip(&inv_std).map(|(g, s)| g * s).collect();
        let shift: Vec<f32> = beta
            .iter()
            .zip(&mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        let mut out = vec![0f32; y.len()];
        let (lo, hi) = self.spec.act.bounds();
        out.par_chunks_mut(chunk).zip(y.par_chunks(chunk)).for_each(|(os, ys)| {
            for (orow, yrow) in os.chunks_exact_mut(g.o).zip(ys.chunks_exact(g.o)) {
                for (((o, &v), s), t) in orow.iter_mut().zip(yrow).zip(&scale).zip(&shift) {
                    *o = (v * s + t).max(lo).min(hi);
                }
            }
        });
        let mut st = self.state.lock().expect("conv-bn state");
        if batch_stats {
            st.stats = Some(BatchStats {
                mean: mean.clone(),
                var: var.clone(),
                count: g.batch * g.positions(),
            });
        }
        if self.keep {
            st.saved = Some(Saved {
                y,
                mean,
                inv_std,
                scale,
                shift,
                w_ohwc,
                geom: g,
            });
        }
        Ok((CpuStorage::F32(out), Shape::from((g.batch, g.out_h, g.out_w, g.o))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        gb: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let st = self.state.lock().expect("conv-bn state");
        let Some(s) = st.saved.as_ref() else {
            candle_core::bail!("conv-bn: backward through a layer run under no_grad")
        };
        let g = s.geom;
        let (o, rows_total) = (g.o, g.batch * g.positions());
        let n = rows_total as f32;
        let batch_terms = matches!(self.spec.norm, Norm::Batch { .. });
        let (lo, hi) = self.spec.act.bounds();
        let chunk = g.chunk_rows() * o;
        let per = g.images_per_chunk();
        let (dx, dw_ohwc, sdy, sdyx) = with_f32(x, |xs| {
            with_f32(gb, |gbs| {
                with_f32(grad, |gs| {
                    let gamma = &gbs[..o];
                    // Every per-channel slice cut to exactly `o` so the loops below compile
                    // without bounds checks and vectorise; the activation's gradient mask is
                    // recomputed from y.
                    let ch = Channels {
                        scale: &s.scale,
                        shift: &s.shift,
                        mean: &s.mean,
                        inv_std: &s.inv_std,
                    };
                    // Σ dz and Σ dz·x̂ per channel (dβ and dγ).
                    let (sdy, sdyx) =
                        s.y.par_chunks(chunk)
                            .zip(gs.par_chunks(chunk))
                            .map(|(ys, gs)| {
                                let (mut a, mut b) = (vec![0f32; o], vec![0f32; o]);
                                for (yr, gr) in ys.chunks_exact(o).zip(gs.chunks_exact(o)) {
                                    row_sums(&mut a, &mut b, yr, gr, &ch, (lo, hi));
                                }
                                (a, b)
                            })
                            .reduce(
                                || (vec![0f32; o], vec![0f32; o]),
                                |(mut a, mut b), (c, d)| {
                                    a.iter_mut().zip(&c).for_each(|(x, y)| *x += y);
                                    b.iter_mut().zip(&d).for_each(|(x, y)| *x += y);
                                    (a, b)
                                },
                            );
                    let k: Vec<f32> = gamma.iter().zip(&s.inv_std).map(|(g, i)| g * i).collect();
                    let (mdy, mdyx): (Vec<f32>, Vec<f32>) = if batch_terms {
                        (
                            sdy.iter().map(|v| v / n).collect(),
                            sdyx.iter().map(|v| v / n).collect(),
                        )
                    } else {
                        (vec![0.0; o], vec![0.0; o])
                    };
                    let img = g.h * g.w * g.c;
                    let mut dx = vec![0f32; g.input_len()];
                    let dw = dx
                        .par_chunks_mut(per * img)
                        .enumerate()
                        .fold(
                            || vec![0f32; g.weight_len()],
                            |mut dw, (i, dxs)| {
                                let first = i * per;
                                let nimg = per.min(g.batch - first);
                                let off = first * g.positions() * o;
                                let len = nimg * g.positions() * o;
                                let (ys, gs) = (&s.y[off..off + len], &gs[off..off + len]);
                                with_dy(len, |dy| {
                                    for ((dr, yr), gr) in
                                        dy.chunks_exact_mut(o).zip(ys.chunks_exact(o)).zip(gs.chunks_exact(o))
                                    {
                                        row_grad(dr, yr, gr, &ch, (lo, hi), (&k, &mdy, &mdyx));
                                    }
                                    conv_nhwc::backward_chunk(&g, xs, &s.w_ohwc, first, nimg, dy, &mut dw, dxs);
                                });
                                dw
                            },
                        )
                        .reduce(
                            || vec![0f32; g.weight_len()],
                            |mut a, b| {
                                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                                a
                            },
                        );
                    Ok((dx, dw, sdy, sdyx))
                })
            })
        })?;
        let dev = x.device();
        let dx = Tensor::from_vec(dx, x.shape(), dev)?;
        let dw = Tensor::from_vec(conv_nhwc::weight_to_oihw(&g, &dw_ohwc), w.shape(), dev)?;
        let dgb = Tensor::from_vec([sdyx, sdy].concat(), gb.shape(), dev)?;
        Ok((Some(dx), Some(dw), Some(dgb)))
    }
}

/// Per-channel constants of a layer's backward.
struct Channels<'a> {
    scale: &'a [f32],
    shift: &'a [f32],
    mean: &'a [f32],
    inv_std: &'a [f32],
}

// The two per-element loops of the backward, as functions over slices of one length so that
// they compile to branch-free vector code (the activation's mask as a 0/1 factor).

/// Adds one row's Σ dz (into `a`) and Σ dz·x̂ (into `b`).
fn row_sums(a: &mut [f32], b: &mut [f32], y: &[f32], g: &[f32], c: &Channels, (lo, hi): (f32, f32)) {
    let n = a.len();
    let (b, y, g) = (&mut b[..n], &y[..n], &g[..n]);
    let (scale, shift, mean, inv_std) = (&c.scale[..n], &c.shift[..n], &c.mean[..n], &c.inv_std[..n]);
    for i in 0..n {
        let z = y[i] * scale[i] + shift[i];
        let d = g[i] * (((z > lo) & (z < hi)) as u32 as f32);
        a[i] += d;
        b[i] += d * (y[i] - mean[i]) * inv_std[i];
    }
}

/// One row's gradient before the norm: `k (dz − mean(dz) − x̂ · mean(dz·x̂))`.
fn row_grad(
    dr: &mut [f32],
    y: &[f32],
    g: &[f32],
    c: &Channels,
    (lo, hi): (f32, f32),
    (k, mdy, mdyx): (&[f32], &[f32], &[f32]),
) {
    let n = dr.len();
    let (y, g, k, mdy, mdyx) = (&y[..n], &g[..n], &k[..n], &mdy[..n], &mdyx[..n]);
    let (scale, shift, mean, inv_std) = (&c.scale[..n], &c.shift[..n], &c.mean[..n], &c.inv_std[..n]);
    for i in 0..n {
        let z = y[i] * scale[i] + shift[i];
        let d = g[i] * (((z > lo) & (z < hi)) as u32 as f32);
        let xhat = (y[i] - mean[i]) * inv_std[i];
        dr[i] = k[i] * (d - mdy[i] - xhat * mdyx[i]);
    }
}

thread_local! {
    static DY: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// This thread's scratch for a chunk's pre-norm gradient.
fn with_dy<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    DY.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        f(&mut buf[..len])
    })
}
