//! Post-training int8 quantization in ONNX's QOperator form: per-channel symmetric int8 conv
//! weights with int32 biases, per-tensor asymmetric uint8 activations whose ranges are
//! calibrated on images (min-max or a percentile), so tract runs the convolutions with integer
//! kernels. ReLU is folded into the quantization itself (a zero point of 0 clamps negatives).
//!
//! The residual additions run in float between DequantizeLinear and QuantizeLinear (ONNX has no
//! standard quantized Add), and so does the head after the average pool: it is a few thousand
//! multiply-adds per face, and keeping logits and embedding in float keeps them exact.

use super::ExportError;
use super::fold::{FoldedConv, FoldedNet, INPUT, Layer};
use super::onnx::{conv_attrs, float_head, fp32_graph, maxpool_attrs, pool_flatten};
use super::proto::GraphBuilder;
use sitfer_contract::onnx_names::FEATURE;
use std::collections::HashMap;
use tract_onnx::prelude::*;

/// How activation ranges are taken from the calibration images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CalibMethod {
    /// The observed minimum and maximum.
    MinMax,
    /// The given percentile of the values (and its mirror for the minimum), ignoring outliers.
    Percentile(f64),
}

/// Values kept per tensor for the percentile (a strided sample beyond this).
const SAMPLE_CAP: usize = 1 << 20;

/// A range observer.
#[derive(Debug, Clone, Default)]
struct Observer {
    min: f32,
    max: f32,
    seen: usize,
    sample: Vec<f32>,
}

impl Observer {
    fn observe(&mut self, v: &[f32], keep_sample: bool) {
        for &x in v {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        if keep_sample {
            let step = (self.seen + v.len()).div_ceil(SAMPLE_CAP).max(1);
            self.sample.extend(v.iter().step_by(step));
        }
        self.seen += v.len();
    }

    fn range(&mut self, method: CalibMethod) -> (f32, f32) {
        let (lo, hi) = match method {
            CalibMethod::MinMax => (self.min, self.max),
            CalibMethod::Percentile(p) => {
                self.sample.sort_by(f32::total_cmp);
                let n = self.sample.len();
                if n == 0 {
                    (0.0, 0.0)
                } else {
                    let at = |q: f64| self.sample[((q / 100.0) * (n - 1) as f64).round() as usize];
                    (at(100.0 - p), at(p))
                }
            }
        };
        // The range must hold 0 exactly (zero padding, ReLU).
        (lo.min(0.0), hi.max(0.0))
    }
}

/// Scale and zero point of an asymmetric uint8 tensor over `[lo, hi]` (lo ≤ 0 ≤ hi).
fn u8_params(lo: f32, hi: f32) -> (f32, u8) {
    let scale = ((hi - lo) / 255.0).max(1e-8);
    let zp = (-lo / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zp)
}

/// Runs the fp32 graph with every quantized activation exposed, over `images`.
fn calibrate(
    net: &FoldedNet,
    images: &[Vec<f32>],
    method: CalibMethod,
) -> Result<HashMap<String, (f32, u8)>, ExportError> {
    let names: Vec<String> = net
        .layers
        .iter()
        .map(|l| match l {
            Layer::Conv { output, .. } | Layer::AddRelu { output, .. } | Layer::MaxPool { output, .. } => {
                output.clone()
            }
        })
        .collect();
    let bytes = fp32_graph(net, &names).into_model_bytes("calibration graph");
    let tract_err = |e: TractError| ExportError::Config(format!("calibration graph: {e:#}"));
    let plan = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(tract_err)?;
    let keep = matches!(method, CalibMethod::Percentile(_));
    let mut input = Observer::default();
    let mut obs = vec![Observer::default(); names.len()];
    let s = net.input_size;
    for chunk in images.chunks(16) {
        let flat: Vec<f32> = chunk.concat();
        input.observe(&flat, keep);
        let x = Tensor::from_shape(&[chunk.len(), 3, s, s], &flat).map_err(tract_err)?;
        let out = plan.run(tvec![x.into_tvalue()]).map_err(tract_err)?;
        // Outputs: logits, embedding, then the extra ones in order.
        for (o, v) in obs.iter_mut().zip(out.iter().skip(2)) {
            let view = v.to_plain_array_view::<f32>().map_err(tract_err)?;
            match view.as_slice() {
                Some(sl) => o.observe(sl, keep),
                None => o.observe(&view.iter().copied().collect::<Vec<_>>(), keep),
            }
        }
    }
    let mut params = HashMap::new();
    let (lo, hi) = input.range(method);
    params.insert(INPUT.to_string(), u8_params(lo, hi));
    for (name, mut o) in names.into_iter().zip(obs) {
        let (lo, hi) = o.range(method);
        params.insert(name, u8_params(lo, hi));
    }
    Ok(params)
}

/// Per-output-channel symmetric int8 weights and their scales.
fn quantize_weights(c: &FoldedConv) -> (Vec<i8>, Vec<f32>) {
    let per = c.weight.len() / c.out_c;
    let mut q = Vec::with_capacity(c.weight.len());
    let mut scales = Vec::with_capacity(c.out_c);
    for row in c.weight.chunks(per) {
        let m = row.iter().fold(0f32, |m, x| m.max(x.abs()));
        let s = if m > 0.0 { m / 127.0 } else { 1.0 };
        scales.push(s);
        q.extend(row.iter().map(|x| (x / s).round().clamp(-127.0, 127.0) as i8));
    }
    (q, scales)
}

fn q(name: &str) -> String {
    format!("{name}.q")
}

/// Scale and zero-point initialisers of activation `name`.
fn act_params(g: &mut GraphBuilder, params: &HashMap<String, (f32, u8)>, name: &str) -> (String, String, f32) {
    let (s, zp) = params[name];
    (
        g.f32(&format!("{name}.scale"), &[], &[s]),
        g.u8(&format!("{name}.zero_point"), &[], &[zp]),
        s,
    )
}

/// The int8 model and its number of QLinearConv nodes.
pub fn int8_onnx(net: &FoldedNet, calib: &[Vec<f32>], method: CalibMethod) -> Result<(Vec<u8>, usize), ExportError> {
    if calib.is_empty() {
        return Err(ExportError::Config("int8 export needs calibration images".into()));
    }
    if let CalibMethod::Percentile(p) = method
        && !(50.0..=100.0).contains(&p)
    {
        return Err(ExportError::Config(format!("percentile {p} is outside 50..=100")));
    }
    let params = calibrate(net, calib, method)?;
    let mut g = GraphBuilder::new("sitfer-int8");
    g.input(INPUT, &[3, net.input_size, net.input_size]);
    let (s, zp, _) = act_params(&mut g, &params, INPUT);
    g.node("QuantizeLinear", &[INPUT, &s, &zp], &[&q(INPUT)], vec![]);
    for layer in &net.layers {
        match layer {
            Layer::Conv {
                input, output, conv, ..
            } => {
                let (xs, xzp, x_scale) = act_params(&mut g, &params, input);
                let (ys, yzp, _) = act_params(&mut g, &params, output);
                let (wq, w_scales) = quantize_weights(conv);
                let n = &conv.name;
                let w = g.i8(
                    &format!("{n}.weight.q"),
                    &[conv.out_c, conv.in_c, conv.kernel, conv.kernel],
                    &wq,
                );
                let ws = g.f32(&format!("{n}.weight.scale"), &[conv.out_c], &w_scales);
                // One scalar zero point, not one per channel: symmetric weights have zp 0
                // everywhere, and tract 0.23 broadcasts a per-channel zero point into full-size
                // zero-point corrections that it cannot fuse into the int8 matrix product.
                let wzp = g.i8(&format!("{n}.weight.zero_point"), &[], &[0]);
                let bias: Vec<i32> = conv
                    .bias
                    .iter()
                    .zip(&w_scales)
                    .map(|(b, ws)| (*b as f64 / (x_scale as f64 * *ws as f64)).round() as i32)
                    .collect();
                let b = g.i32(&format!("{n}.bias.q"), &[conv.out_c], &bias);
                g.node(
                    "QLinearConv",
                    &[&q(input), &xs, &xzp, &w, &ws, &wzp, &ys, &yzp, &b],
                    &[&q(output)],
                    conv_attrs(conv.kernel, conv.stride, conv.pad),
                );
            }
            Layer::AddRelu { a, b, output } => {
                let deq = |g: &mut GraphBuilder, t: &str| {
                    let (s, zp, _) = act_params(g, &params, t);
                    let f = format!("{output}.{t}.f");
                    g.node("DequantizeLinear", &[&q(t), &s, &zp], &[&f], vec![]);
                    f
                };
                let (fa, fb) = (deq(&mut g, a), deq(&mut g, b));
                let sum = format!("{output}.sum");
                g.node("Add", &[&fa, &fb], &[&sum], vec![]);
                let (s, zp, _) = act_params(&mut g, &params, output);
                g.node("QuantizeLinear", &[&sum, &s, &zp], &[&q(output)], vec![]);
            }
            Layer::MaxPool { input, output } => {
                let (s, zp, _) = act_params(&mut g, &params, input);
                let f = format!("{input}.f");
                g.node("DequantizeLinear", &[&q(input), &s, &zp], &[&f], vec![]);
                let pooled = format!("{output}.f");
                g.node("MaxPool", &[&f], &[&pooled], maxpool_attrs());
                let (s, zp, _) = act_params(&mut g, &params, output);
                g.node("QuantizeLinear", &[&pooled, &s, &zp], &[&q(output)], vec![]);
            }
        }
    }
    let (s, zp, _) = act_params(&mut g, &params, &net.features);
    let features = format!("{}.f", net.features);
    g.node("DequantizeLinear", &[&q(&net.features), &s, &zp], &[&features], vec![]);
    pool_flatten(&mut g, &features, FEATURE);
    float_head(&mut g, net, FEATURE);
    let convs = g.count_ops("QLinearConv");
    let doc = format!(
        "sitfer int8 model (QOperator), activations calibrated on {} images ({method:?})",
        calib.len()
    );
    Ok((g.into_model_bytes(&doc), convs))
}
