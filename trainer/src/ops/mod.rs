//! Tensor ops the models need beyond candle's own: a training path that is fast on CPU.
//!
//! The models (the student, ResNet-18, EfficientNet-Lite0) train on channels-last activations
//! through [`conv_bn::conv_bn`] (a dense or depthwise convolution + batch norm + activation as
//! one op) and [`add_relu::AddRelu`]. The previous channels-first path stays selectable
//! ([`ConvImpl::ChannelsFirst`]): `conv2d` here as im2col + one gemm (groups = 1) or a direct
//! depthwise kernel (groups = channels), the fused batch norm and ReLU. Elsewhere (CUDA) and
//! for other group counts everything defers to candle's own ops.

pub mod add_relu;
pub mod batch_norm;
pub mod conv_bn;
pub mod conv_nhwc;
pub mod depthwise;
pub mod gemm;
pub mod geometry;
pub mod im2col;
pub mod relu;

use candle_core::{CpuStorage, DType, Layout, Result, Storage, Tensor};
use geometry::ConvGeometry;
use std::cell::Cell;

thread_local! {
    static NO_GRAD: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with gradients off for the fused ops: they keep nothing for a backward pass and
/// add no node to the graph (the weak view of a semi-supervised step, teachers, evaluation).
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            NO_GRAD.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(NO_GRAD.with(|c| c.replace(true)));
    f()
}

/// False inside [`no_grad`].
pub fn grad_enabled() -> bool {
    !NO_GRAD.with(|c| c.get())
}

/// Runs `f` on the f32 data of a CPU tensor (made contiguous first).
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => f(contiguous_f32(s, layout, "tensor")?),
        _ => candle_core::bail!("expected a CPU tensor"),
    }
}

/// Whether the models take the channels-last fused path for `x`.
pub fn fast_path(x: &Tensor) -> bool {
    conv_impl() == ConvImpl::Fast && x.device().is_cpu() && x.dtype() == DType::F32
}

/// The f32 data of a contiguous CPU tensor (all custom ops here get contiguous inputs).
pub(crate) fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{what}: input must be contiguous")))?;
    Ok(&s.as_slice::<f32>()?[start..end])
}

/// Which implementation the models train with (for benchmarks and cross-checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvImpl {
    /// The default on CPU: residual nets on channels-last activations with fused
    /// convolution + batch norm + ReLU ([`conv_bn`]); other models as `ChannelsFirst`.
    Fast,
    /// Channels-first activations with one op per layer: im2col + gemm convolution, direct
    /// depthwise convolution, fused batch norm, one-pass ReLU (the previous CPU path).
    ChannelsFirst,
    /// candle's own `conv2d`, composed batch norm and ReLU.
    Candle,
}

static CONV_IMPL: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Selects the implementation process-wide.
pub fn set_conv_impl(imp: ConvImpl) {
    let v = match imp {
        ConvImpl::Fast => 0,
        ConvImpl::ChannelsFirst => 1,
        ConvImpl::Candle => 2,
    };
    CONV_IMPL.store(v, std::sync::atomic::Ordering::Relaxed);
}

pub fn conv_impl() -> ConvImpl {
    match CONV_IMPL.load(std::sync::atomic::Ordering::Relaxed) {
        0 => ConvImpl::Fast,
        1 => ConvImpl::ChannelsFirst,
        _ => ConvImpl::Candle,
    }
}

/// Whether sitfer's CPU ops (either layout) apply to `x`.
pub fn cpu_ops(x: &Tensor) -> bool {
    conv_impl() != ConvImpl::Candle && x.device().is_cpu() && x.dtype() == DType::F32
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
    let fast = imp != ConvImpl::Candle && x.device().is_cpu() && x.dtype() == DType::F32 && k == k2;
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
    if cpu_ops(x) {
        x.contiguous()?.apply_op1(relu::Relu)
    } else {
        x.relu()
    }
}
