//! Tensor ops the models need beyond candle's own: a convolution whose training backward is
//! fast on CPU.
//!
//! On CPU, `conv2d` runs as im2col + one gemm (groups = 1) or as a direct depthwise kernel
//! (groups = channels); both have custom backward passes. Elsewhere (CUDA) and for other
//! group counts it defers to candle's `conv2d`.

pub mod batch_norm;
pub mod depthwise;
pub mod geometry;
pub mod im2col;
pub mod relu;

use candle_core::{CpuStorage, DType, Layout, Result, Tensor};
use geometry::ConvGeometry;

/// The f32 data of a contiguous CPU tensor (all custom ops here get contiguous inputs).
pub(crate) fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{what}: input must be contiguous")))?;
    Ok(&s.as_slice::<f32>()?[start..end])
}

/// Which convolution implementation to use (for benchmarks and cross-checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvImpl {
    /// im2col + gemm / direct depthwise on CPU (the default).
    Fast,
    /// candle's own `conv2d`.
    Candle,
}

static USE_CANDLE_CONV: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Selects the convolution implementation process-wide.
pub fn set_conv_impl(imp: ConvImpl) {
    USE_CANDLE_CONV.store(imp == ConvImpl::Candle, std::sync::atomic::Ordering::Relaxed);
}

pub fn conv_impl() -> ConvImpl {
    if USE_CANDLE_CONV.load(std::sync::atomic::Ordering::Relaxed) {
        ConvImpl::Candle
    } else {
        ConvImpl::Fast
    }
}

/// 2-D convolution of `x` `[B, C, H, W]` with `w` `[O, C / groups, k, k]`, dilation 1, with the
/// process-wide implementation.
pub fn conv2d(x: &Tensor, w: &Tensor, padding: usize, stride: usize, groups: usize) -> Result<Tensor> {
    conv2d_with(conv_impl(), x, w, padding, stride, groups)
}

/// [`conv2d`] with an explicit implementation.
pub fn conv2d_with(
    imp: ConvImpl,
    x: &Tensor,
    w: &Tensor,
    padding: usize,
    stride: usize,
    groups: usize,
) -> Result<Tensor> {
    let (b, c, h, wd) = x.dims4()?;
    let (o, _, k, k2) = w.dims4()?;
    let fast = imp == ConvImpl::Fast && x.device().is_cpu() && x.dtype() == DType::F32 && k == k2;
    let g = ConvGeometry {
        channels: c,
        h,
        w: wd,
        k,
        stride,
        pad: padding,
    };
    if fast && groups == 1 {
        let (oh, ow) = (g.out_h(), g.out_w());
        let cols = x.contiguous()?.apply_op1(im2col::Im2Col(g))?; // [B, L, C*k*k]
        let y = cols
            .reshape((b * oh * ow, g.patch()))?
            .matmul(&w.reshape((o, g.patch()))?.t()?)?; // [B*L, O]
        return y.reshape((b, oh * ow, o))?.transpose(1, 2)?.reshape((b, o, oh, ow));
    }
    if fast && groups == c && o == c {
        return x.contiguous()?.apply_op2(&w.contiguous()?, depthwise::Depthwise(g));
    }
    x.conv2d(w, padding, stride, 1, groups)
}

/// ReLU; on CPU with the one-pass backward of [`relu::Relu`].
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if conv_impl() == ConvImpl::Fast && x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(relu::Relu)
    } else {
        x.relu()
    }
}
