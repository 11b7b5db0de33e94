//! The convolution layer all sitfer models use.
//!
//! A thin layer over a weight tensor so that the convolution kernel can be chosen in one place
//! (see `crate::ops` for the CPU training path).

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// Stride, padding and groups of a 2-D convolution (dilation is always 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSpec {
    pub stride: usize,
    pub padding: Padding,
    pub groups: usize,
}

/// Padding rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// The same number of pixels on every side.
    Symmetric(usize),
    /// TensorFlow's "SAME": output = ceil(input / stride), the extra pixel on the right/bottom
    /// (EfficientNet-Lite's pretrained weights were trained this way).
    TfSame,
}

impl ConvSpec {
    pub fn new(stride: usize, padding: usize) -> Self {
        ConvSpec {
            stride,
            padding: Padding::Symmetric(padding),
            groups: 1,
        }
    }
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
    pub fn tf_same(mut self) -> Self {
        self.padding = Padding::TfSame;
        self
    }
}

/// A 2-D convolution with an optional bias; weights `[out, in / groups, k, k]` as in PyTorch.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    spec: ConvSpec,
    kernel: usize,
}

impl Conv2d {
    pub fn new(in_c: usize, out_c: usize, kernel: usize, spec: ConvSpec, bias: bool, vb: VarBuilder) -> Result<Self> {
        let fan_in = (in_c / spec.groups) * kernel * kernel;
        let weight = vb.get_with_hints(
            (out_c, in_c / spec.groups, kernel, kernel),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )?;
        let bias = if bias {
            let bound = 1.0 / (fan_in as f64).sqrt();
            Some(vb.get_with_hints(out_c, "bias", Init::Uniform { lo: -bound, up: bound })?)
        } else {
            None
        };
        Ok(Conv2d {
            weight,
            bias,
            spec,
            kernel,
        })
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
    pub fn spec(&self) -> ConvSpec {
        self.spec
    }

    /// (top/left, bottom/right) padding for an input side.
    pub fn pads(&self, side: usize) -> (usize, usize) {
        match self.spec.padding {
            Padding::Symmetric(p) => (p, p),
            Padding::TfSame => {
                let s = self.spec.stride;
                let out = side.div_ceil(s);
                let total = ((out - 1) * s + self.kernel).saturating_sub(side);
                (total / 2, total - total / 2)
            }
        }
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let (pt, pb) = self.pads(h);
        let (pl, pr) = self.pads(w);
        let (x, pad) = if pt == pb && pl == pr && pt == pl {
            (x.clone(), pt)
        } else {
            (x.pad_with_zeros(2, pt, pb)?.pad_with_zeros(3, pl, pr)?, 0)
        };
        let y = crate::ops::conv2d(&x, &self.weight, pad, self.spec.stride, self.spec.groups)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }
}
