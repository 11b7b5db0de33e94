//! Depthwise convolution (groups = channels, one filter per channel) as a candle custom op with
//! a direct forward and backward. candle runs grouped convolutions as one convolution per group
//! glued with `cat`, which for depthwise layers means hundreds of tiny ops per layer; im2col
//! would multiply memory by k*k. A direct loop over each plane is both small and fast.

use super::contiguous_f32;
use super::geometry::ConvGeometry;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `x [B, C, H, W]`, `w [C, 1, k, k]` → `[B, C, OH, OW]`.
#[derive(Debug, Clone, Copy)]
pub struct Depthwise(pub ConvGeometry);

/// Input gradient: `grad [B, C, OH, OW]`, `w` → `[B, C, H, W]`.
#[derive(Debug, Clone, Copy)]
struct DepthwiseGradInput(ConvGeometry);

/// Weight gradient: `x`, `grad` → `[C, 1, k, k]`.
#[derive(Debug, Clone, Copy)]
struct DepthwiseGradWeight(ConvGeometry);

/// Calls `f(oy, ox, iy, ix, tap)` for every in-bounds (output, kernel tap) pair of a plane.
#[inline]
fn for_each_tap(g: &ConvGeometry, mut f: impl FnMut(usize, usize, usize, usize, usize)) {
    let (oh, ow, k) = (g.out_h(), g.out_w(), g.k);
    for oy in 0..oh {
        for ky in 0..k {
            let Some(iy) = ConvGeometry::source(oy, ky, g.stride, g.pad, g.h) else {
                continue;
            };
            for ox in 0..ow {
                for kx in 0..k {
                    if let Some(ix) = ConvGeometry::source(ox, kx, g.stride, g.pad, g.w) {
                        f(oy, ox, iy, ix, ky * k + kx);
                    }
                }
            }
        }
    }
}

impl CustomOp2 for Depthwise {
    fn name(&self) -> &'static str {
        "sitfer-depthwise-conv"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let x = contiguous_f32(s1, l1, "depthwise input")?;
        let w = contiguous_f32(s2, l2, "depthwise weight")?;
        let b = l1.dims()[0];
        let (plane_in, plane_out, kk) = (g.h * g.w, g.positions(), g.k * g.k);
        let ow = g.out_w();
        let mut out = vec![0f32; b * g.channels * plane_out];
        out.par_chunks_mut(plane_out).enumerate().for_each(|(bc, o)| {
            let c = bc % g.channels;
            let xi = &x[bc * plane_in..][..plane_in];
            let wc = &w[c * kk..][..kk];
            for_each_tap(&g, |oy, ox, iy, ix, t| o[oy * ow + ox] += xi[iy * g.w + ix] * wc[t]);
        });
        Ok((CpuStorage::F32(out), Shape::from((b, g.channels, g.out_h(), g.out_w()))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let gx = grad.apply_op2_no_bwd(&w.contiguous()?, &DepthwiseGradInput(self.0))?;
        let gw = x.contiguous()?.apply_op2_no_bwd(&grad, &DepthwiseGradWeight(self.0))?;
        Ok((Some(gx), Some(gw)))
    }
}

impl CustomOp2 for DepthwiseGradInput {
    fn name(&self) -> &'static str {
        "sitfer-depthwise-grad-input"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let grad = contiguous_f32(s1, l1, "depthwise grad")?;
        let w = contiguous_f32(s2, l2, "depthwise weight")?;
        let b = l1.dims()[0];
        let (plane_in, plane_out, kk) = (g.h * g.w, g.positions(), g.k * g.k);
        let ow = g.out_w();
        let mut out = vec![0f32; b * g.channels * plane_in];
        out.par_chunks_mut(plane_in).enumerate().for_each(|(bc, o)| {
            let c = bc % g.channels;
            let gi = &grad[bc * plane_out..][..plane_out];
            let wc = &w[c * kk..][..kk];
            for_each_tap(&g, |oy, ox, iy, ix, t| o[iy * g.w + ix] += gi[oy * ow + ox] * wc[t]);
        });
        Ok((CpuStorage::F32(out), Shape::from((b, g.channels, g.h, g.w))))
    }
}

impl CustomOp2 for DepthwiseGradWeight {
    fn name(&self) -> &'static str {
        "sitfer-depthwise-grad-weight"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let x = contiguous_f32(s1, l1, "depthwise input")?;
        let grad = contiguous_f32(s2, l2, "depthwise grad")?;
        let b = l1.dims()[0];
        let (plane_in, plane_out, kk) = (g.h * g.w, g.positions(), g.k * g.k);
        let ow = g.out_w();
        let mut out = vec![0f32; g.channels * kk];
        out.par_chunks_mut(kk).enumerate().for_each(|(c, o)| {
            for bi in 0..b {
                let bc = bi * g.channels + c;
                let xi = &x[bc * plane_in..][..plane_in];
                let gi = &grad[bc * plane_out..][..plane_out];
                for_each_tap(&g, |oy, ox, iy, ix, t| o[t] += gi[oy * ow + ox] * xi[iy * g.w + ix]);
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((g.channels, 1, g.k, g.k))))
    }
}
