//! YuNet's forward pass without tract: the ONNX graph written by `scripts/convert-yunet.sh` is
//! read once (its convolutions' weights and how they connect) into a fixed list of layers over
//! channels-last buffers sized for one input size, run by [`super::yunet_exec`] on the kernels in
//! [`super::nhwc`].
//!
//! Why by hand: tract 0.23 takes 22–28 ms per 640x480 frame on this network where ONNX Runtime
//! takes 6.9 ms on one thread (docs/results/detection.md); profiled per node, tract spends 47 %
//! in the 1x1 convolutions (packed matrix products, the packing alone 15 %), 21 % in the
//! channels-first depthwise convolutions and 15 % in the max pools, and none of its settings
//! changes that. No crate the runtime could use runs depthwise convolutions channels-last. Only
//! the operators the converter emits are accepted (dense and depthwise 3x3, 1x1, ReLU, 2x2 max
//! pool, the x2 nearest upsampling it writes as a depthwise transposed convolution of ones, Add,
//! Sigmoid, and the NCHW→NHWC Transpose + Reshape of the outputs, which channels-last makes free); anything else is refused at load, so a different graph cannot be
//! run wrongly. The tract path stays (`yunet-tract`), and a test checks both give the same
//! outputs.

use super::nhwc::{self, ConvGeom, Shape};
use super::yunet_exec::{self, Layer, Op};
use std::collections::HashMap;
use tract_onnx::pb::{AttributeProto, ModelProto, NodeProto, TensorProto, tensor_proto::DataType};

/// A value of the graph: the buffer holding it, its shape, and whether the NCHW→NHWC transpose
/// has been applied (after which only a reshape to `[1, h*w, c]` may follow).
#[derive(Debug, Clone, Copy)]
struct Value {
    buf: usize,
    s: Shape,
    transposed: bool,
}

pub struct YunetNet {
    layers: Vec<Layer>,
    bufs: Vec<Vec<f32>>,
    outputs: Vec<usize>,
    /// The CPU has AVX2 and FMA (x86-64): the kernels run compiled for them.
    avx2: bool,
}

fn ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    node.attribute.iter().find(|a| a.name == name).map(
        |a: &AttributeProto| {
            if a.ints.is_empty() { vec![a.i] } else { a.ints.clone() }
        },
    )
}

fn floats(t: &TensorProto) -> Result<Vec<f32>, String> {
    if t.data_type != DataType::Float as i32 {
        return Err(format!("initializer `{}` is not float32", t.name));
    }
    if !t.float_data.is_empty() {
        return Ok(t.float_data.clone());
    }
    if !t.raw_data.len().is_multiple_of(4) {
        return Err(format!("initializer `{}` has {} raw bytes", t.name, t.raw_data.len()));
    }
    Ok(t.raw_data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

impl YunetNet {
    /// Reads the graph from the ONNX bytes for an input of `w` x `h` pixels (BGR, channels-last).
    pub fn from_onnx(bytes: &[u8], w: usize, h: usize) -> Result<Self, String> {
        use prost::Message;
        let model = ModelProto::decode(bytes).map_err(|e| format!("not an ONNX protobuf: {e}"))?;
        let graph = model.graph.as_ref().ok_or("no graph")?;
        let inits: HashMap<&str, &TensorProto> = graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
        let init_names: Vec<&str> = inits.keys().copied().collect();
        let inputs: Vec<&str> = graph
            .input
            .iter()
            .map(|i| i.name.as_str())
            .filter(|n| !init_names.contains(n))
            .collect();
        let [input] = inputs[..] else {
            return Err(format!("{} graph inputs, expected one image", inputs.len()));
        };
        // how many nodes read each value: a ReLU is fused into the convolution before it only
        // when nothing else reads the convolution's output, likewise a sigmoid runs in place
        let mut readers: HashMap<&str, usize> = HashMap::new();
        for n in &graph.node {
            for i in &n.input {
                *readers.entry(i.as_str()).or_default() += 1;
            }
        }
        for o in &graph.output {
            *readers.entry(o.name.as_str()).or_default() += 1;
        }

        let in_shape = Shape { h, w, c: 3 };
        let mut net = YunetNet {
            layers: Vec::new(),
            bufs: vec![vec![0.0; in_shape.len()]],
            outputs: Vec::new(),
            #[cfg(target_arch = "x86_64")]
            avx2: std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"),
            #[cfg(not(target_arch = "x86_64"))]
            avx2: false,
        };
        let mut values: HashMap<String, Value> = HashMap::new();
        values.insert(
            input.to_string(),
            Value {
                buf: 0,
                s: in_shape,
                transposed: false,
            },
        );
        let mut fused: Option<usize> = None;
        for (at, node) in graph.node.iter().enumerate() {
            let what = || format!("node {at} `{}` ({})", node.name, node.op_type);
            let out_name = node.output.first().ok_or_else(|| format!("{}: no output", what()))?;
            if fused == Some(at) {
                // this ReLU was folded into the convolution before it, whose value it takes over
                let v = values[&node.input[0]];
                values.insert(out_name.clone(), v);
                continue;
            }
            let arg = |i: usize| -> Result<Value, String> {
                let name = node
                    .input
                    .get(i)
                    .ok_or_else(|| format!("{}: input {i} missing", what()))?;
                values
                    .get(name)
                    .copied()
                    .ok_or_else(|| format!("{}: input `{name}` is not a computed value", what()))
            };
            let weight = |i: usize| -> Result<(&TensorProto, Vec<f32>), String> {
                let name = node
                    .input
                    .get(i)
                    .ok_or_else(|| format!("{}: input {i} missing", what()))?;
                let t = inits
                    .get(name.as_str())
                    .ok_or_else(|| format!("{}: `{name}` is not a weight", what()))?;
                Ok((t, floats(t)?))
            };
            let value = match node.op_type.as_str() {
                "Conv" => {
                    let x = arg(0)?;
                    let (wt, wv) = weight(1)?;
                    let (_, bias) = weight(2)?;
                    let dims: Vec<usize> = wt.dims.iter().map(|&d| d as usize).collect();
                    let [n, ci, kh, kw] = dims[..] else {
                        return Err(format!("{}: weight dims {dims:?}", what()));
                    };
                    let group = ints(node, "group").map_or(1, |g| g[0] as usize);
                    let k = ints(node, "kernel_shape").unwrap_or(vec![kh as i64, kw as i64]);
                    let stride = ints(node, "strides").unwrap_or(vec![1, 1]);
                    let pads = ints(node, "pads").unwrap_or(vec![0; 4]);
                    let dil = ints(node, "dilations").unwrap_or(vec![1, 1]);
                    let square = |v: &[i64]| v.iter().all(|&e| e == v[0]);
                    if kh != kw || k != [kh as i64, kw as i64] || !square(&stride) || !square(&pads) || dil != [1, 1] {
                        return Err(format!(
                            "{}: kernel {k:?} strides {stride:?} pads {pads:?} dilations {dil:?} not supported",
                            what()
                        ));
                    }
                    if bias.len() != n || x.transposed || ci * group != x.s.c {
                        return Err(format!(
                            "{}: {} channels in, weight {dims:?}, group {group}",
                            what(),
                            x.s.c
                        ));
                    }
                    let g = ConvGeom {
                        k: kh,
                        stride: stride[0] as usize,
                        pad: pads[0] as usize,
                    };
                    let next_relu = graph.node.get(at + 1).filter(|r| {
                        r.op_type == "Relu" && r.input.first() == Some(out_name) && readers[out_name.as_str()] == 1
                    });
                    let relu = next_relu.is_some();
                    fused = relu.then_some(at + 1);
                    let s = Shape {
                        h: g.out_side(x.s.h),
                        w: g.out_side(x.s.w),
                        c: n,
                    };
                    let op = if group == x.s.c
                        && ci == 1
                        && n == group
                        && g == (ConvGeom {
                            k: 3,
                            stride: 1,
                            pad: 1,
                        }) {
                        // [c][1][ky][kx] → [ky*3+kx][c]
                        let w = (0..9)
                            .flat_map(|t| (0..n).map(move |c| (t, c)))
                            .map(|(t, c)| wv[c * 9 + t])
                            .collect();
                        Op::Depthwise {
                            x: x.buf,
                            s: x.s,
                            w,
                            bias,
                            relu,
                        }
                    } else if group == 1 && g.k <= x.s.h + 2 * g.pad && g.k <= x.s.w + 2 * g.pad && g.pad < g.k {
                        Op::Conv {
                            x: x.buf,
                            s: x.s,
                            g,
                            w: nhwc::conv_weights(&wv, ci, n, g.k),
                            bias,
                            relu,
                        }
                    } else {
                        return Err(format!("{}: group {group} with weight {dims:?} not supported", what()));
                    };
                    let out = net.push(op, s);
                    Value {
                        buf: out,
                        s,
                        transposed: false,
                    }
                }
                "MaxPool" => {
                    let x = arg(0)?;
                    let (k, st) = (ints(node, "kernel_shape"), ints(node, "strides"));
                    let pads = ints(node, "pads").unwrap_or(vec![0; 4]);
                    if k != Some(vec![2, 2]) || st != Some(vec![2, 2]) || pads.iter().any(|&p| p != 0) || x.transposed {
                        return Err(format!("{}: only 2x2 pooling with stride 2 and no padding", what()));
                    }
                    let s = Shape {
                        h: x.s.h / 2,
                        w: x.s.w / 2,
                        c: x.s.c,
                    };
                    let out = net.push(Op::Pool { x: x.buf, s: x.s }, s);
                    Value {
                        buf: out,
                        s,
                        transposed: false,
                    }
                }
                "ConvTranspose" => {
                    // the converter's nearest x2 upsampling: depthwise, 2x2 kernels of ones, stride 2
                    let x = arg(0)?;
                    let (wt, wv) = weight(1)?;
                    let ok = node.input.len() == 2
                        && wt.dims == [x.s.c as i64, 1, 2, 2]
                        && ints(node, "group") == Some(vec![x.s.c as i64])
                        && ints(node, "strides") == Some(vec![2, 2])
                        && ints(node, "pads").is_none_or(|p| p.iter().all(|&v| v == 0))
                        && ints(node, "output_padding").is_none_or(|p| p.iter().all(|&v| v == 0))
                        && wv.iter().all(|&v| v == 1.0)
                        && !x.transposed;
                    if !ok {
                        return Err(format!(
                            "{}: only the x2 upsampling (depthwise 2x2 ones, stride 2)",
                            what()
                        ));
                    }
                    let s = Shape {
                        h: 2 * x.s.h,
                        w: 2 * x.s.w,
                        c: x.s.c,
                    };
                    let out = net.push(Op::Upsample { x: x.buf, s: x.s }, s);
                    Value {
                        buf: out,
                        s,
                        transposed: false,
                    }
                }
                "Add" => {
                    let (a, b) = (arg(0)?, arg(1)?);
                    if a.s != b.s || a.transposed || b.transposed {
                        return Err(format!("{}: shapes {:?} and {:?}", what(), a.s, b.s));
                    }
                    let out = net.push(Op::Add { a: a.buf, b: b.buf }, a.s);
                    Value {
                        buf: out,
                        s: a.s,
                        transposed: false,
                    }
                }
                "Sigmoid" => {
                    let x = arg(0)?;
                    if readers[node.input[0].as_str()] != 1 || x.buf == 0 {
                        return Err(format!("{}: its input is read elsewhere too", what()));
                    }
                    net.layers.push(Layer {
                        op: Op::Sigmoid,
                        out: x.buf,
                        shape: x.s,
                    });
                    x
                }
                "Transpose" => {
                    let x = arg(0)?;
                    if ints(node, "perm") != Some(vec![0, 2, 3, 1]) || x.transposed {
                        return Err(format!("{}: only NCHW → NHWC", what()));
                    }
                    // the buffers are NHWC already
                    Value { transposed: true, ..x }
                }
                "Reshape" => {
                    let x = arg(0)?;
                    let shape = node.input.get(1).and_then(|n| inits.get(n.as_str()));
                    let dims: Option<Vec<i64>> = shape.map(|t| {
                        if t.int64_data.is_empty() {
                            t.raw_data
                                .chunks_exact(8)
                                .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                                .collect()
                        } else {
                            t.int64_data.clone()
                        }
                    });
                    if !x.transposed || dims != Some(vec![1, -1, x.s.c as i64]) {
                        return Err(format!(
                            "{}: only [1, h*w, c] after the transpose, not {dims:?}",
                            what()
                        ));
                    }
                    x
                }
                other => return Err(format!("{}: operator `{other}` not supported", what())),
            };
            values.insert(out_name.clone(), value);
        }
        for o in &graph.output {
            let v = values
                .get(&o.name)
                .ok_or_else(|| format!("output `{}` is not computed", o.name))?;
            if !v.transposed {
                return Err(format!("output `{}` is not laid out as [1, cells, channels]", o.name));
            }
            net.outputs.push(v.buf);
        }
        Ok(net)
    }

    /// Adds a layer writing a new buffer of shape `s`; its index.
    fn push(&mut self, op: Op, s: Shape) -> usize {
        self.bufs.push(vec![0.0; s.len()]);
        let out = self.bufs.len() - 1;
        self.layers.push(Layer { op, out, shape: s });
        out
    }

    /// The input buffer to fill: `[h][w][3]`, BGR 0–255.
    pub fn input_mut(&mut self) -> &mut [f32] {
        &mut self.bufs[0]
    }

    /// Runs the layers on the input buffer over rayon's current pool (one thread: in the calling
    /// thread); [`Self::output`] then reads the results.
    pub fn run(&mut self) {
        yunet_exec::run(&self.layers, &mut self.bufs, self.avx2);
    }

    /// Output `i` of the graph (in its order), `[cells][channels]`.
    pub fn output(&self, i: usize) -> &[f32] {
        &self.bufs[self.outputs[i]]
    }

    pub fn num_outputs(&self) -> usize {
        self.outputs.len()
    }
}
