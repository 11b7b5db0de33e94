//! The fp32 ONNX graph of a folded network: `input [N, 3, H, W]` → `logits [N, 7]` and
//! `embedding [N, d]` (L2-normalised projection of the pooled feature, or of the feature itself
//! when the run has no projection head).

use super::fold::{Dense, FoldedNet, INPUT, Layer};
use super::proto::{Attr, GraphBuilder};
use sitfer_contract::NUM_CLASSES;

use sitfer_contract::onnx_names::FEATURE;
/// Output names, in this order.
pub use sitfer_contract::onnx_names::{EMBEDDING, LOGITS};

/// Floor of the embedding norm, as in PyTorch's `F.normalize`: a zero vector stays zero instead
/// of becoming NaN.
pub const NORM_EPS: f32 = 1e-12;

/// Conv (+ Relu) in ONNX, stride/pad from the folded layer.
pub(crate) fn conv_attrs(k: usize, stride: usize, pad: usize) -> Vec<(&'static str, Attr)> {
    let (k, s, p) = (k as i64, stride as i64, pad as i64);
    vec![
        ("kernel_shape", Attr::Ints(vec![k, k])),
        ("strides", Attr::Ints(vec![s, s])),
        ("pads", Attr::Ints(vec![p, p, p, p])),
    ]
}

pub(crate) fn maxpool_attrs() -> Vec<(&'static str, Attr)> {
    vec![
        ("kernel_shape", Attr::Ints(vec![3, 3])),
        ("strides", Attr::Ints(vec![2, 2])),
        ("pads", Attr::Ints(vec![1, 1, 1, 1])),
    ]
}

/// `y = x · Wᵀ (+ b)` as Gemm.
pub(crate) fn gemm(g: &mut GraphBuilder, x: &str, d: &Dense, out: &str) {
    let w = g.f32(&format!("{}.weight", d.name), &[d.out_f, d.in_f], &d.weight);
    match &d.bias {
        Some(b) => {
            let b = g.f32(&format!("{}.bias", d.name), &[d.out_f], b);
            g.node("Gemm", &[x, &w, &b], &[out], vec![("transB", Attr::Int(1))]);
        }
        None => g.node("Gemm", &[x, &w], &[out], vec![("transB", Attr::Int(1))]),
    }
}

/// `embedding = e / max(‖e‖₂, NORM_EPS)` row-wise.
pub(crate) fn l2_normalize(g: &mut GraphBuilder, e: &str, out: &str) {
    let norm = format!("{e}.l2");
    g.node(
        "ReduceL2",
        &[e],
        &[&norm],
        vec![("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(1))],
    );
    let eps = g.f32("norm_eps", &[1], &[NORM_EPS]);
    let floor = format!("{e}.l2.floor");
    g.node("Max", &[&norm, &eps], &[&floor], vec![]);
    g.node("Div", &[e, &floor], &[out], vec![]);
}

/// Global average pool to `[N, C]`.
pub(crate) fn pool_flatten(g: &mut GraphBuilder, x: &str, out: &str) {
    let pooled = format!("{x}.gap");
    g.node("GlobalAveragePool", &[x], &[&pooled], vec![]);
    g.node("Flatten", &[&pooled], &[out], vec![("axis", Attr::Int(1))]);
}

/// The head shared by both forms: logits and embedding from the float feature `f`.
pub(crate) fn float_head(g: &mut GraphBuilder, net: &FoldedNet, f: &str) {
    gemm(g, f, &net.fc, LOGITS);
    match &net.proj {
        Some(p) => {
            gemm(g, f, p, "projected");
            l2_normalize(g, "projected", EMBEDDING);
        }
        None => l2_normalize(g, f, EMBEDDING),
    }
    g.output(LOGITS, &[NUM_CLASSES]);
    g.output(EMBEDDING, &[net.embedding_dim()]);
}

/// The fp32 graph; `extra_outputs` are intermediate tensors exposed as further outputs (the
/// int8 calibration reads activation ranges through them).
pub fn fp32_graph(net: &FoldedNet, extra_outputs: &[String]) -> GraphBuilder {
    let mut g = GraphBuilder::new("sitfer-fp32");
    g.input(INPUT, &[3, net.input_size, net.input_size]);
    for layer in &net.layers {
        match layer {
            Layer::Conv {
                input,
                output,
                conv,
                relu,
            } => {
                let w = g.f32(
                    &format!("{}.weight", conv.name),
                    &[conv.out_c, conv.in_c, conv.kernel, conv.kernel],
                    &conv.weight,
                );
                let b = g.f32(&format!("{}.bias", conv.name), &[conv.out_c], &conv.bias);
                let pre = if *relu { format!("{output}.pre") } else { output.clone() };
                g.node(
                    "Conv",
                    &[input, &w, &b],
                    &[&pre],
                    conv_attrs(conv.kernel, conv.stride, conv.pad),
                );
                if *relu {
                    g.node("Relu", &[&pre], &[output], vec![]);
                }
            }
            Layer::AddRelu { a, b, output } => {
                let sum = format!("{output}.sum");
                g.node("Add", &[a, b], &[&sum], vec![]);
                g.node("Relu", &[&sum], &[output], vec![]);
            }
            Layer::MaxPool { input, output } => g.node("MaxPool", &[input], &[output], maxpool_attrs()),
        }
    }
    pool_flatten(&mut g, &net.features, FEATURE);
    float_head(&mut g, net, FEATURE);
    for name in extra_outputs {
        g.output_untyped(name);
    }
    g
}

/// The encoded fp32 model.
pub fn fp32_onnx(net: &FoldedNet) -> Vec<u8> {
    fp32_graph(net, &[]).into_model_bytes("sitfer fp32 model: batch norm folded into the convolutions")
}
