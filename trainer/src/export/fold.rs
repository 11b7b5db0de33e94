//! The exportable form of a trained network: batch norm folded into the convolutions, layers
//! in execution order with named tensors between them. The fp32 and int8 ONNX writers both emit
//! from this one description, so they cannot disagree on the network.

use super::ExportError;
use crate::model::{Arch, ModelSpec, Stem};
use candle_core::Tensor;
use std::collections::HashMap;

/// Batch-norm epsilon of the ResNets (`model::norm::batch_norm`).
const BN_EPS: f64 = 1e-5;

/// A convolution with batch norm folded in: `weight` `[out, in, k, k]`, `bias` `[out]`.
#[derive(Debug, Clone)]
pub struct FoldedConv {
    pub name: String,
    pub out_c: usize,
    pub in_c: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// A fully connected layer `y = x · weightᵀ (+ bias)`, `weight` `[out, in]`.
#[derive(Debug, Clone)]
pub struct Dense {
    pub name: String,
    pub out_f: usize,
    pub in_f: usize,
    pub weight: Vec<f32>,
    pub bias: Option<Vec<f32>>,
}

/// One step of the feature extractor; tensors are referred to by name.
#[derive(Debug, Clone)]
pub enum Layer {
    Conv {
        input: String,
        output: String,
        conv: FoldedConv,
        relu: bool,
    },
    /// `relu(a + b)`: the end of a residual block.
    AddRelu { a: String, b: String, output: String },
    /// 3x3, stride 2, padding 1 (ImageNet stem); inputs are ≥ 0.
    MaxPool { input: String, output: String },
}

/// The whole network: `layers` map `INPUT` to `features`, which is average-pooled to the
/// `[N, C]` feature; `fc` gives the logits and `proj` (when trained) the text-space embedding.
#[derive(Debug, Clone)]
pub struct FoldedNet {
    pub input_size: usize,
    pub layers: Vec<Layer>,
    pub features: String,
    pub feature_dim: usize,
    pub fc: Dense,
    pub proj: Option<Dense>,
}

pub use sitfer_contract::onnx_names::INPUT;

impl FoldedNet {
    /// Dimension of the `embedding` output.
    pub fn embedding_dim(&self) -> usize {
        self.proj.as_ref().map_or(self.feature_dim, |p| p.out_f)
    }
}

struct Weights<'a>(&'a HashMap<String, Tensor>);

impl Weights<'_> {
    fn get(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), ExportError> {
        let t = self
            .0
            .get(name)
            .ok_or_else(|| ExportError::Weights(format!("tensor `{name}` missing")))?;
        let v = t
            .flatten_all()
            .and_then(|t| t.to_dtype(candle_core::DType::F32))
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| ExportError::Weights(format!("tensor `{name}`: {e}")))?;
        Ok((t.dims().to_vec(), v))
    }

    fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// `prefix` conv followed by batch norm `bn`, folded: w·γ/σ and β − μ·γ/σ per channel.
    fn conv_bn(&self, conv: &str, bn: &str, stride: usize, pad: usize) -> Result<FoldedConv, ExportError> {
        let (dims, w) = self.get(&format!("{conv}.weight"))?;
        let [out_c, in_c, kh, kw] = dims[..] else {
            return Err(ExportError::Weights(format!(
                "`{conv}.weight` has shape {dims:?}, expected 4-D"
            )));
        };
        if kh != kw {
            return Err(ExportError::Weights(format!(
                "`{conv}.weight`: non-square kernel {kh}x{kw}"
            )));
        }
        let gamma = self.get(&format!("{bn}.weight"))?.1;
        let beta = self.get(&format!("{bn}.bias"))?.1;
        let mean = self.get(&format!("{bn}.running_mean"))?.1;
        let var = self.get(&format!("{bn}.running_var"))?.1;
        if [gamma.len(), beta.len(), mean.len(), var.len()]
            .iter()
            .any(|&n| n != out_c)
        {
            return Err(ExportError::Weights(format!(
                "`{bn}`: parameters do not have {out_c} channels"
            )));
        }
        let per = in_c * kh * kw;
        let mut weight = vec![0f32; w.len()];
        let mut bias = vec![0f32; out_c];
        for o in 0..out_c {
            let scale = gamma[o] as f64 / (var[o] as f64 + BN_EPS).sqrt();
            for i in 0..per {
                weight[o * per + i] = (w[o * per + i] as f64 * scale) as f32;
            }
            bias[o] = (beta[o] as f64 - mean[o] as f64 * scale) as f32;
        }
        Ok(FoldedConv {
            name: conv.to_string(),
            out_c,
            in_c,
            kernel: kh,
            stride,
            pad,
            weight,
            bias,
        })
    }

    fn dense(&self, prefix: &str, bias: bool) -> Result<Dense, ExportError> {
        let (dims, weight) = self.get(&format!("{prefix}.weight"))?;
        let [out_f, in_f] = dims[..] else {
            return Err(ExportError::Weights(format!(
                "`{prefix}.weight` has shape {dims:?}, expected 2-D"
            )));
        };
        let bias = if bias {
            Some(self.get(&format!("{prefix}.bias"))?.1)
        } else {
            None
        };
        Ok(Dense {
            name: prefix.to_string(),
            out_f,
            in_f,
            weight,
            bias,
        })
    }
}

/// Name of the projection head's weight `[d_t, d]` in a checkpoint (no bias).
pub const PROJ_WEIGHT: &str = "proj.weight";

/// Folds a checkpoint's weights. The block structure is read from the tensor names, with the
/// stride rule of `model::resnet::ResNet::new` (first block of every stage after the first).
pub fn fold(spec: &ModelSpec, weights: &HashMap<String, Tensor>) -> Result<FoldedNet, ExportError> {
    if spec.arch == Arch::EfficientnetLite0 {
        return Err(ExportError::Unsupported(format!(
            "architecture `{}` is not supported for export (only the ResNets: student, resnet18)",
            spec.arch.name()
        )));
    }
    let w = Weights(weights);
    let mut layers = Vec::new();
    let stem = match spec.stem {
        Stem::Small => w.conv_bn("conv1", "bn1", 1, 1)?,
        Stem::Standard => w.conv_bn("conv1", "bn1", 2, 3)?,
    };
    let mut channels = stem.out_c;
    layers.push(Layer::Conv {
        input: INPUT.into(),
        output: "stem".into(),
        conv: stem,
        relu: true,
    });
    let mut x = "stem".to_string();
    if spec.stem == Stem::Standard {
        layers.push(Layer::MaxPool {
            input: x.clone(),
            output: "stem.pool".into(),
        });
        x = "stem.pool".into();
    }
    for i in 1.. {
        if !w.has(&format!("layer{i}.0.conv1.weight")) {
            break;
        }
        for j in 0.. {
            let p = format!("layer{i}.{j}");
            if !w.has(&format!("{p}.conv1.weight")) {
                break;
            }
            let stride = if i > 1 && j == 0 { 2 } else { 1 };
            let c1 = w.conv_bn(&format!("{p}.conv1"), &format!("{p}.bn1"), stride, 1)?;
            let c2 = w.conv_bn(&format!("{p}.conv2"), &format!("{p}.bn2"), 1, 1)?;
            channels = c2.out_c;
            layers.push(Layer::Conv {
                input: x.clone(),
                output: format!("{p}.conv1"),
                conv: c1,
                relu: true,
            });
            layers.push(Layer::Conv {
                input: format!("{p}.conv1"),
                output: format!("{p}.conv2"),
                conv: c2,
                relu: false,
            });
            let shortcut = if w.has(&format!("{p}.downsample.0.weight")) {
                let ds = w.conv_bn(&format!("{p}.downsample.0"), &format!("{p}.downsample.1"), stride, 0)?;
                layers.push(Layer::Conv {
                    input: x.clone(),
                    output: format!("{p}.downsample"),
                    conv: ds,
                    relu: false,
                });
                format!("{p}.downsample")
            } else {
                x.clone()
            };
            layers.push(Layer::AddRelu {
                a: format!("{p}.conv2"),
                b: shortcut,
                output: p.clone(),
            });
            x = p;
        }
    }
    let fc = w.dense("fc", true)?;
    if fc.in_f != channels || fc.out_f != sitfer_contract::NUM_CLASSES {
        return Err(ExportError::Weights(format!(
            "`fc.weight` is [{}, {}], expected [{}, {channels}]",
            fc.out_f,
            fc.in_f,
            sitfer_contract::NUM_CLASSES
        )));
    }
    let proj = if w.has(PROJ_WEIGHT) {
        let p = w.dense("proj", false)?;
        if p.in_f != channels {
            return Err(ExportError::Weights(format!(
                "`{PROJ_WEIGHT}` is [{}, {}], expected [d_t, {channels}]",
                p.out_f, p.in_f
            )));
        }
        Some(p)
    } else {
        None
    };
    Ok(FoldedNet {
        input_size: spec.input_size as usize,
        layers,
        features: x,
        feature_dim: channels,
        fc,
        proj,
    })
}
