//! A convolution and the batch norm after it, as one layer of the channels-last CPU training
//! path (`crate::ops::conv_bn`). The parameters stay in the `Conv2d` and `BatchNorm` they
//! belong to (PyTorch's names, checkpoints and export unchanged); this only runs them together.

use super::conv::Conv2d;
use super::norm::BatchNorm;
pub use crate::ops::conv_bn::Act;
use crate::ops::conv_bn::{ConvBnSpec, Norm, conv_bn};
use candle_core::{Result, Tensor};

/// `act(bn(conv(x)))` for `x` `[B, H, W, C]` on CPU; `train` selects batch statistics (and
/// updates the running ones).
pub fn conv_bn_nhwc(x: &Tensor, conv: &Conv2d, bn: &BatchNorm, act: Act, train: bool) -> Result<Tensor> {
    let (_, h, w, c) = x.dims4()?;
    let groups = conv.spec().groups;
    if conv.bias().is_some() || (groups != 1 && groups != c) {
        candle_core::bail!("conv-bn: the fused layer takes a bias-free dense or depthwise convolution");
    }
    let eps = bn.eps() as f32;
    let norm = if train {
        Norm::Batch { eps }
    } else {
        Norm::Running {
            mean: bn.running_mean().to_vec1()?,
            var: bn.running_var().to_vec1()?,
            eps,
        }
    };
    let spec = ConvBnSpec {
        stride: conv.spec().stride,
        pad_h: conv.pads(h),
        pad_w: conv.pads(w),
        depthwise: groups != 1,
        act,
        norm,
    };
    let out = conv_bn(x, conv.weight(), bn.weight(), bn.bias(), spec)?;
    if let Some(stats) = &out.stats {
        bn.update_running(stats)?;
    }
    Ok(out.y)
}
