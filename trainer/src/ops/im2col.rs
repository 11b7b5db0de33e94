//! im2col / col2im as candle custom ops, each the other's backward.
//!
//! With them a convolution becomes one large matrix product whose forward and backward both run
//! in candle's gemm, instead of candle's CPU `conv_transpose2d` (a plain loop, ~10x slower than
//! its gemm) for the input gradient. candle has no public im2col op, hence these.

use super::contiguous_f32;
use super::geometry::ConvGeometry;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `[B, C, H, W]` → `[B, OH*OW, C*k*k]`: row `l` holds the patch under output position `l`.
#[derive(Debug, Clone, Copy)]
pub struct Im2Col(pub ConvGeometry);

/// `[B, OH*OW, C*k*k]` → `[B, C, H, W]`: sums every patch entry back onto its input pixel (the
/// adjoint of [`Im2Col`]).
#[derive(Debug, Clone, Copy)]
pub struct Col2Im(pub ConvGeometry);

/// im2col of one image.
pub fn im2col_image(g: &ConvGeometry, x: &[f32], out: &mut [f32]) {
    let (oh, ow, k, s, p) = (g.out_h(), g.out_w(), g.k, g.stride, g.pad);
    let patch = g.patch();
    let plane = g.h * g.w;
    for oy in 0..oh {
        for ox in 0..ow {
            let row = &mut out[(oy * ow + ox) * patch..][..patch];
            let mut i = 0;
            for c in 0..g.channels {
                let xc = &x[c * plane..][..plane];
                for ky in 0..k {
                    match ConvGeometry::source(oy, ky, s, p, g.h) {
                        Some(iy) => {
                            for kx in 0..k {
                                row[i] = match ConvGeometry::source(ox, kx, s, p, g.w) {
                                    Some(ix) => xc[iy * g.w + ix],
                                    None => 0.0,
                                };
                                i += 1;
                            }
                        }
                        None => {
                            row[i..i + k].fill(0.0);
                            i += k;
                        }
                    }
                }
            }
        }
    }
}

/// col2im of one image (accumulates into a zeroed `out`).
pub fn col2im_image(g: &ConvGeometry, cols: &[f32], out: &mut [f32]) {
    let (oh, ow, k, s, p) = (g.out_h(), g.out_w(), g.k, g.stride, g.pad);
    let patch = g.patch();
    let plane = g.h * g.w;
    for oy in 0..oh {
        for ox in 0..ow {
            let row = &cols[(oy * ow + ox) * patch..][..patch];
            let mut i = 0;
            for c in 0..g.channels {
                let oc = &mut out[c * plane..][..plane];
                for ky in 0..k {
                    let Some(iy) = ConvGeometry::source(oy, ky, s, p, g.h) else {
                        i += k;
                        continue;
                    };
                    for kx in 0..k {
                        if let Some(ix) = ConvGeometry::source(ox, kx, s, p, g.w) {
                            oc[iy * g.w + ix] += row[i];
                        }
                        i += 1;
                    }
                }
            }
        }
    }
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "sitfer-im2col"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let x = contiguous_f32(s, l, "im2col")?;
        let b = l.dims()[0];
        let (in_len, out_len) = (g.channels * g.h * g.w, g.positions() * g.patch());
        let mut out = vec![0f32; b * out_len];
        out.par_chunks_mut(out_len)
            .zip(x.par_chunks(in_len))
            .for_each(|(o, xi)| im2col_image(g, xi, o));
        Ok((CpuStorage::F32(out), Shape::from((b, g.positions(), g.patch()))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1(Col2Im(self.0))?))
    }
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "sitfer-col2im"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let cols = contiguous_f32(s, l, "col2im")?;
        let b = l.dims()[0];
        let (img_len, cols_len) = (g.channels * g.h * g.w, g.positions() * g.patch());
        let mut out = vec![0f32; b * img_len];
        out.par_chunks_mut(img_len)
            .zip(cols.par_chunks(cols_len))
            .for_each(|(o, c)| col2im_image(g, c, o));
        Ok((CpuStorage::F32(out), Shape::from((b, g.channels, g.h, g.w))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1(Im2Col(self.0))?))
    }
}
