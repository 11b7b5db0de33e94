//! Training-mode batch normalisation as one candle custom op with a closed-form backward.
//!
//! candle-nn's batch norm is composed of about a dozen tensor ops (a transpose copy, means,
//! broadcasts), each allocating a full activation-sized tensor, forward and backward; on CPU that
//! made it the largest cost of a training step after the convolutions. This op reads the input
//! twice and writes once in each direction.

use super::contiguous_f32;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// Per-channel batch statistics of the last forward pass: mean and biased variance.
#[derive(Debug, Clone, Default)]
pub struct BatchStats {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    /// Elements per channel.
    pub count: usize,
}

/// `(x [B, C, H, W], gamma [C], beta [C])` → normalised `x`. The statistics it computed are
/// left in `stats` for the running averages.
#[derive(Debug, Clone)]
pub struct BatchNormTrain {
    pub eps: f32,
    pub stats: Arc<Mutex<BatchStats>>,
}

/// Backward: `(x, grad, gamma)` → `[dx…, dgamma…, dbeta…]` packed in one vector.
#[derive(Debug, Clone)]
struct BatchNormBackward {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
}

fn dims(l: &Layout) -> Result<(usize, usize, usize)> {
    match l.dims() {
        [b, c, rest @ ..] => Ok((*b, *c, rest.iter().product())),
        d => candle_core::bail!("batch norm expects [B, C, ...], got {d:?}"),
    }
}

/// Σ over batch and positions of f(value) for one channel.
fn channel_sum(x: &[f32], b: usize, c: usize, plane: usize, ch: usize, f: impl Fn(f32) -> f32) -> f64 {
    let mut acc = 0f64;
    for bi in 0..b {
        let p = &x[(bi * c + ch) * plane..][..plane];
        acc += p.iter().map(|&v| f(v)).sum::<f32>() as f64;
    }
    acc
}

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "sitfer-batch-norm-train"
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
        let x = contiguous_f32(s1, l1, "batch norm input")?;
        let gamma = contiguous_f32(s2, l2, "batch norm weight")?;
        let beta = contiguous_f32(s3, l3, "batch norm bias")?;
        let (b, c, plane) = dims(l1)?;
        let n = (b * plane) as f64;
        let stats: Vec<(f32, f32)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let mean = channel_sum(x, b, c, plane, ch, |v| v) / n;
                let m = mean as f32;
                let var = channel_sum(x, b, c, plane, ch, |v| (v - m) * (v - m)) / n;
                (m, var as f32)
            })
            .collect();
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(plane).enumerate().for_each(|(bc, o)| {
            let ch = bc % c;
            let (m, v) = stats[ch];
            let scale = gamma[ch] / (v + self.eps).sqrt();
            let shift = beta[ch] - m * scale;
            for (o, &xi) in o.iter_mut().zip(&x[bc * plane..][..plane]) {
                *o = xi * scale + shift;
            }
        });
        *self.stats.lock().expect("stats lock") = BatchStats {
            mean: stats.iter().map(|s| s.0).collect(),
            var: stats.iter().map(|s| s.1).collect(),
            count: b * plane,
        };
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let s = self.stats.lock().expect("stats lock").clone();
        let op = BatchNormBackward {
            inv_std: s.var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect(),
            mean: s.mean,
        };
        let n = x.elem_count();
        let c = gamma.elem_count();
        let packed = x
            .contiguous()?
            .apply_op3_no_bwd(&grad.contiguous()?, &gamma.contiguous()?, &op)?;
        let dx = packed.narrow(0, 0, n)?.reshape(x.shape())?;
        let dgamma = packed.narrow(0, n, c)?;
        let dbeta = packed.narrow(0, n + c, c)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

impl CustomOp3 for BatchNormBackward {
    fn name(&self) -> &'static str {
        "sitfer-batch-norm-backward"
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
        let x = contiguous_f32(s1, l1, "batch norm input")?;
        let dy = contiguous_f32(s2, l2, "batch norm grad")?;
        let gamma = contiguous_f32(s3, l3, "batch norm weight")?;
        let (b, c, plane) = dims(l1)?;
        let n = (b * plane) as f32;
        // Σdy and Σdy·x̂ per channel.
        let sums: Vec<(f32, f32)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (m, is) = (self.mean[ch], self.inv_std[ch]);
                let mut sdy = 0f64;
                let mut sdyx = 0f64;
                for bi in 0..b {
                    let off = (bi * c + ch) * plane;
                    let (xp, gp) = (&x[off..off + plane], &dy[off..off + plane]);
                    let (mut a, mut bb) = (0f32, 0f32);
                    for (&xi, &gi) in xp.iter().zip(gp) {
                        a += gi;
                        bb += gi * (xi - m) * is;
                    }
                    sdy += a as f64;
                    sdyx += bb as f64;
                }
                (sdy as f32, sdyx as f32)
            })
            .collect();
        let total = x.len();
        let mut out = vec![0f32; total + 2 * c];
        let (dx, tail) = out.split_at_mut(total);
        dx.par_chunks_mut(plane).enumerate().for_each(|(bc, o)| {
            let ch = bc % c;
            let (m, is) = (self.mean[ch], self.inv_std[ch]);
            let (sdy, sdyx) = sums[ch];
            let k = gamma[ch] * is;
            let off = bc * plane;
            for ((o, &xi), &gi) in o.iter_mut().zip(&x[off..off + plane]).zip(&dy[off..off + plane]) {
                let xhat = (xi - m) * is;
                *o = k * (gi - sdy / n - xhat * sdyx / n);
            }
        });
        for ch in 0..c {
            tail[ch] = sums[ch].1;
            tail[c + ch] = sums[ch].0;
        }
        Ok((CpuStorage::F32(out), Shape::from(total + 2 * c)))
    }
}
