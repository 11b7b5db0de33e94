//! `relu(a + b)`, the end of a residual block, as one op: one output allocation forward, and a
//! backward that masks the gradient once and hands the same tensor to both inputs (candle's
//! composed form would allocate the sum, the ReLU, a zeros tensor, a mask and a product).

use super::contiguous_f32;
use super::relu::ReluGrad;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

const CHUNK: usize = 1 << 14;

#[derive(Debug, Clone, Copy)]
pub struct AddRelu;

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "sitfer-add-relu"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!("add-relu: shapes differ, {:?} and {:?}", l1.dims(), l2.dims());
        }
        let a = contiguous_f32(s1, l1, "add-relu lhs")?;
        let b = contiguous_f32(s2, l2, "add-relu rhs")?;
        let out: Vec<f32> = a
            .par_iter()
            .zip(b.par_iter())
            .with_min_len(CHUNK)
            .map(|(a, b)| (a + b).max(0.0))
            .collect();
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(&self, _a: &Tensor, _b: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = res.contiguous()?.apply_op2_no_bwd(&grad.contiguous()?, &ReluGrad)?;
        Ok((Some(g.clone()), Some(g)))
    }
}
