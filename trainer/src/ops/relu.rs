//! ReLU with a one-pass backward. candle's ReLU backward builds a zeros tensor, a comparison, a
//! dtype cast and a product (four activation-sized allocations); this one reads the output and
//! the incoming gradient once.

use super::contiguous_f32;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

const CHUNK: usize = 1 << 14;

#[derive(Debug, Clone, Copy)]
pub struct Relu;

/// `(y, grad)` → grad where y > 0, else 0: the backward of any op whose output is a ReLU's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReluGrad;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "sitfer-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l, "relu")?;
        let out: Vec<f32> = x.par_iter().with_min_len(CHUNK).map(|v| v.max(0.0)).collect();
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            res.contiguous()?.apply_op2_no_bwd(&grad.contiguous()?, &ReluGrad)?,
        ))
    }
}

impl CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "sitfer-relu-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let y = contiguous_f32(s1, l1, "relu output")?;
        let g = contiguous_f32(s2, l2, "relu grad")?;
        let out: Vec<f32> = y
            .par_iter()
            .zip(g.par_iter())
            .with_min_len(CHUNK)
            .map(|(&y, &g)| if y > 0.0 { g } else { 0.0 })
            .collect();
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}
