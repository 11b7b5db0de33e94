//! ResNet-18 (He et al. 2016) with parameter names as in torchvision, and a stem for small
//! faces: a 3x3 stride-1 convolution without max-pool, so a 48x48 face keeps a 6x6 map at the
//! last stage instead of 2x2.

use super::conv::{Conv2d, ConvSpec};
use super::conv_bn::{Act, conv_bn_nhwc};
use super::norm::BatchNorm;
use super::norm::batch_norm;
use super::{FerModel, ModelOutput};
use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

/// Which first layers a ResNet uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stem {
    /// 3x3 stride-1 convolution, no max-pool (for 48–112 px faces).
    Small,
    /// 7x7 stride-2 convolution and 3x3 stride-2 max-pool (ImageNet's).
    Standard,
}

/// Conv-BN-ReLU-Conv-BN with an identity or 1x1 projection shortcut.
#[derive(Debug, Clone)]
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    downsample: Option<(Conv2d, BatchNorm)>,
}

impl BasicBlock {
    pub fn new(in_c: usize, out_c: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        let conv1 = Conv2d::new(in_c, out_c, 3, ConvSpec::new(stride, 1), false, vb.pp("conv1"))?;
        let bn1 = batch_norm(out_c, vb.pp("bn1"))?;
        let conv2 = Conv2d::new(out_c, out_c, 3, ConvSpec::new(1, 1), false, vb.pp("conv2"))?;
        let bn2 = batch_norm(out_c, vb.pp("bn2"))?;
        let downsample = if stride != 1 || in_c != out_c {
            Some((
                Conv2d::new(in_c, out_c, 1, ConvSpec::new(stride, 0), false, vb.pp("downsample.0"))?,
                batch_norm(out_c, vb.pp("downsample.1"))?,
            ))
        } else {
            None
        };
        Ok(BasicBlock {
            conv1,
            bn1,
            conv2,
            bn2,
            downsample,
        })
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = self
            .bn1
            .forward_t(&self.conv1.forward(x)?, train)?
            .apply(&crate::ops::relu)?;
        let y = self.bn2.forward_t(&self.conv2.forward(&y)?, train)?;
        let shortcut = match &self.downsample {
            Some((c, b)) => b.forward_t(&c.forward(x)?, train)?,
            None => x.clone(),
        };
        (y + shortcut)?.apply(&crate::ops::relu)
    }

    /// The same block on channels-last activations with the fused CPU ops.
    fn forward_nhwc(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = conv_bn_nhwc(x, &self.conv1, &self.bn1, Act::Relu, train)?;
        let y = conv_bn_nhwc(&y, &self.conv2, &self.bn2, Act::None, train)?;
        let shortcut = match &self.downsample {
            Some((c, b)) => conv_bn_nhwc(x, c, b, Act::None, train)?,
            None => x.clone(),
        };
        add_relu(&y, &shortcut)
    }
}

fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (a, b) = (a.contiguous()?, b.contiguous()?);
    if crate::ops::grad_enabled() {
        a.apply_op2(&b, crate::ops::add_relu::AddRelu)
    } else {
        a.apply_op2_no_bwd(&b, &crate::ops::add_relu::AddRelu)
    }
}

/// A stack of basic-block stages with a global-average-pooled embedding and a linear classifier.
#[derive(Debug, Clone)]
pub struct ResNet {
    stem: Stem,
    conv1: Conv2d,
    bn1: BatchNorm,
    layers: Vec<Vec<BasicBlock>>,
    fc: Linear,
    embedding_dim: usize,
}

impl ResNet {
    /// A ResNet with `blocks[i]` basic blocks of `widths[i]` channels in stage `i`; every stage
    /// after the first halves the resolution.
    pub fn new(
        stem: Stem,
        stem_width: usize,
        widths: &[usize],
        blocks: &[usize],
        num_classes: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let conv1 = match stem {
            Stem::Small => Conv2d::new(3, stem_width, 3, ConvSpec::new(1, 1), false, vb.pp("conv1"))?,
            Stem::Standard => Conv2d::new(3, stem_width, 7, ConvSpec::new(2, 3), false, vb.pp("conv1"))?,
        };
        let bn1 = batch_norm(stem_width, vb.pp("bn1"))?;
        let mut layers = Vec::new();
        let mut in_c = stem_width;
        for (i, (&w, &n)) in widths.iter().zip(blocks).enumerate() {
            let vbl = vb.pp(format!("layer{}", i + 1));
            let mut stage = Vec::new();
            for j in 0..n {
                let stride = if i > 0 && j == 0 { 2 } else { 1 };
                stage.push(BasicBlock::new(in_c, w, stride, vbl.pp(j.to_string()))?);
                in_c = w;
            }
            layers.push(stage);
        }
        let fc = candle_nn::linear(in_c, num_classes, vb.pp("fc"))?;
        Ok(ResNet {
            stem,
            conv1,
            bn1,
            layers,
            fc,
            embedding_dim: in_c,
        })
    }

    /// ResNet-18: stages of 2 blocks, 64-128-256-512 channels (11.2 M parameters).
    pub fn resnet18(stem: Stem, num_classes: usize, vb: VarBuilder) -> Result<Self> {
        Self::new(stem, 64, &[64, 128, 256, 512], &[2, 2, 2, 2], num_classes, vb)
    }
}

impl ResNet {
    /// The CPU training path: the trunk on channels-last activations, one fused op per
    /// convolution + batch norm (+ ReLU) and one per residual add + ReLU. Same parameters,
    /// same result as [`FerModel::forward_t`]'s composed path up to float rounding.
    fn forward_nhwc(&self, x: &Tensor, train: bool) -> Result<ModelOutput> {
        let mut y = match self.stem {
            Stem::Small => conv_bn_nhwc(&x.permute((0, 2, 3, 1))?, &self.conv1, &self.bn1, Act::Relu, train)?,
            Stem::Standard => {
                // ImageNet's stem ends in a max-pool, which candle runs channels-first.
                let y = conv_bn_nhwc(&x.permute((0, 2, 3, 1))?, &self.conv1, &self.bn1, Act::Relu, train)?;
                y.permute((0, 3, 1, 2))?
                    .pad_with_zeros(2, 1, 1)?
                    .pad_with_zeros(3, 1, 1)?
                    .max_pool2d_with_stride(3, 2)?
                    .permute((0, 2, 3, 1))?
            }
        };
        for stage in &self.layers {
            for block in stage {
                y = block.forward_nhwc(&y, train)?;
            }
        }
        let embedding = y.mean((1, 2))?;
        let logits = self.fc.forward(&embedding)?;
        Ok(ModelOutput { logits, embedding })
    }
}

impl FerModel for ResNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<ModelOutput> {
        if crate::ops::fast_path(x) {
            return self.forward_nhwc(x, train);
        }
        let mut y = self
            .bn1
            .forward_t(&self.conv1.forward(x)?, train)?
            .apply(&crate::ops::relu)?;
        if self.stem == Stem::Standard {
            // Zero padding is exact for max-pool here: inputs are ≥ 0 after ReLU.
            y = y
                .pad_with_zeros(2, 1, 1)?
                .pad_with_zeros(3, 1, 1)?
                .max_pool2d_with_stride(3, 2)?;
        }
        for stage in &self.layers {
            for block in stage {
                y = block.forward_t(&y, train)?;
            }
        }
        let embedding = y.mean((2, 3))?;
        let logits = self.fc.forward(&embedding)?;
        Ok(ModelOutput { logits, embedding })
    }

    fn embedding_dim(&self) -> usize {
        self.embedding_dim
    }
}
