//! A small builder over the ONNX protobuf types that tract-onnx exposes (`tract_onnx::pb`),
//! encoded with prost: initialisers, nodes with attributes, and typed inputs/outputs.

use prost::Message;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension};
use tract_onnx::pb::type_proto::{self, Value};
use tract_onnx::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

/// Opset 13: per-channel QLinearConv / QuantizeLinear, and `axes` still an attribute of the
/// Reduce ops (it became an input in 18).
pub const OPSET: i64 = 13;
const IR_VERSION: i64 = 7;

/// Name of the symbolic batch dimension.
pub const BATCH: &str = "N";

/// An attribute value.
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
}

#[derive(Default)]
pub struct GraphBuilder {
    graph: GraphProto,
}

fn dims_i64(dims: &[usize]) -> Vec<i64> {
    dims.iter().map(|&d| d as i64).collect()
}

impl GraphBuilder {
    pub fn new(name: &str) -> Self {
        GraphBuilder {
            graph: GraphProto {
                name: name.to_string(),
                ..Default::default()
            },
        }
    }

    fn push_init(&mut self, t: TensorProto) -> String {
        let name = t.name.clone();
        self.graph.initializer.push(t);
        name
    }

    pub fn f32(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        assert_eq!(dims.iter().product::<usize>(), data.len(), "initialiser `{name}` shape");
        self.push_init(TensorProto {
            name: name.to_string(),
            dims: dims_i64(dims),
            data_type: DataType::Float as i32,
            raw_data: data.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ..Default::default()
        })
    }

    pub fn i8(&mut self, name: &str, dims: &[usize], data: &[i8]) -> String {
        assert_eq!(dims.iter().product::<usize>(), data.len(), "initialiser `{name}` shape");
        self.push_init(TensorProto {
            name: name.to_string(),
            dims: dims_i64(dims),
            data_type: DataType::Int8 as i32,
            raw_data: data.iter().map(|&x| x as u8).collect(),
            ..Default::default()
        })
    }

    pub fn u8(&mut self, name: &str, dims: &[usize], data: &[u8]) -> String {
        assert_eq!(dims.iter().product::<usize>(), data.len(), "initialiser `{name}` shape");
        self.push_init(TensorProto {
            name: name.to_string(),
            dims: dims_i64(dims),
            data_type: DataType::Uint8 as i32,
            raw_data: data.to_vec(),
            ..Default::default()
        })
    }

    pub fn i32(&mut self, name: &str, dims: &[usize], data: &[i32]) -> String {
        assert_eq!(dims.iter().product::<usize>(), data.len(), "initialiser `{name}` shape");
        self.push_init(TensorProto {
            name: name.to_string(),
            dims: dims_i64(dims),
            data_type: DataType::Int32 as i32,
            raw_data: data.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ..Default::default()
        })
    }

    /// Adds a node; its name is its first output's.
    pub fn node(&mut self, op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<(&str, Attr)>) {
        let attribute = attrs
            .into_iter()
            .map(|(name, a)| match a {
                Attr::Int(i) => AttributeProto {
                    name: name.to_string(),
                    r#type: AttributeType::Int as i32,
                    i,
                    ..Default::default()
                },
                Attr::Ints(ints) => AttributeProto {
                    name: name.to_string(),
                    r#type: AttributeType::Ints as i32,
                    ints,
                    ..Default::default()
                },
            })
            .collect();
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: format!("{op}:{}", outputs[0]),
            op_type: op.to_string(),
            attribute,
            ..Default::default()
        });
    }

    /// A float tensor value `[N, rest...]`.
    fn value_info(name: &str, rest: &[usize]) -> ValueInfoProto {
        let mut dim = vec![Dimension {
            value: Some(dimension::Value::DimParam(BATCH.into())),
            ..Default::default()
        }];
        dim.extend(rest.iter().map(|&d| Dimension {
            value: Some(dimension::Value::DimValue(d as i64)),
            ..Default::default()
        }));
        ValueInfoProto {
            name: name.to_string(),
            r#type: Some(TypeProto {
                value: Some(Value::TensorType(type_proto::Tensor {
                    elem_type: DataType::Float as i32,
                    shape: Some(TensorShapeProto { dim }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub fn input(&mut self, name: &str, rest: &[usize]) {
        self.graph.input.push(Self::value_info(name, rest));
    }

    pub fn output(&mut self, name: &str, rest: &[usize]) {
        self.graph.output.push(Self::value_info(name, rest));
    }

    /// An output whose type and shape tract infers (intermediate tensors read for calibration).
    pub fn output_untyped(&mut self, name: &str) {
        self.graph.output.push(ValueInfoProto {
            name: name.to_string(),
            ..Default::default()
        });
    }

    pub fn count_ops(&self, op: &str) -> usize {
        self.graph.node.iter().filter(|n| n.op_type == op).count()
    }

    pub fn into_model_bytes(self, doc: &str) -> Vec<u8> {
        let model = ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: "sitfer-train".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.to_string(),
            graph: Some(self.graph),
            ..Default::default()
        };
        model.encode_to_vec()
    }
}

/// The op types of an encoded model, in graph order (for tests and reports).
pub fn op_types(model: &[u8]) -> Result<Vec<String>, prost::DecodeError> {
    let m = ModelProto::decode(model)?;
    Ok(m.graph
        .map(|g| g.node.into_iter().map(|n| n.op_type).collect())
        .unwrap_or_default())
}
