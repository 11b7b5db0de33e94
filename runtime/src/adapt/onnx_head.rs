//! The classifier head inside a bundle's ONNX files: read `fc.weight` / `fc.bias` (the
//! initialiser names the trainer's exporter writes; the int8 form keeps its head in float) and
//! write refitted values back, leaving every other byte of the graph as it was.

use super::AdaptError;
use super::refit::Head;
use crate::labels::NUM_CLASSES;
use prost::Message;
use std::path::Path;
use tract_onnx::pb::{ModelProto, TensorProto, tensor_proto::DataType};

pub use crate::onnx_names::{FC_BIAS, FC_WEIGHT};

fn err(file: &Path, message: impl Into<String>) -> AdaptError {
    AdaptError::Head {
        file: file.to_path_buf(),
        message: message.into(),
    }
}

fn decode(bytes: &[u8], file: &Path) -> Result<ModelProto, AdaptError> {
    ModelProto::decode(bytes).map_err(|e| err(file, format!("not an ONNX protobuf: {e}")))
}

fn floats(t: &TensorProto, file: &Path) -> Result<Vec<f32>, AdaptError> {
    if t.data_type != DataType::Float as i32 {
        return Err(err(file, format!("`{}` is not float32", t.name)));
    }
    if !t.float_data.is_empty() {
        return Ok(t.float_data.clone());
    }
    if !t.raw_data.len().is_multiple_of(4) {
        return Err(err(file, format!("`{}` has {} raw bytes", t.name, t.raw_data.len())));
    }
    Ok(t.raw_data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn find<'a>(m: &'a ModelProto, name: &str, file: &Path) -> Result<&'a TensorProto, AdaptError> {
    m.graph
        .as_ref()
        .and_then(|g| g.initializer.iter().find(|t| t.name == name))
        .ok_or_else(|| {
            err(
                file,
                format!("no `{name}` initialiser (not a model exported by sitfer-train)"),
            )
        })
}

/// The head of the ONNX model `bytes`.
pub fn read_head(bytes: &[u8], file: &Path) -> Result<Head, AdaptError> {
    let m = decode(bytes, file)?;
    let w = find(&m, FC_WEIGHT, file)?;
    if w.dims.len() != 2 || w.dims[0] != NUM_CLASSES as i64 || w.dims[1] <= 0 {
        return Err(err(
            file,
            format!("`{FC_WEIGHT}` has dims {:?}, expected [{NUM_CLASSES}, F]", w.dims),
        ));
    }
    let dim = w.dims[1] as usize;
    let weight = floats(w, file)?;
    let bias = floats(find(&m, FC_BIAS, file)?, file)?;
    if weight.len() != NUM_CLASSES * dim || bias.len() != NUM_CLASSES {
        return Err(err(
            file,
            format!("`{FC_WEIGHT}`/`{FC_BIAS}` hold {}/{} values", weight.len(), bias.len()),
        ));
    }
    Ok(Head {
        dim,
        weight,
        bias: std::array::from_fn(|c| bias[c]),
    })
}

/// `bytes` with the head replaced by `head` (same shapes).
pub fn write_head(bytes: &[u8], head: &Head, file: &Path) -> Result<Vec<u8>, AdaptError> {
    let old = read_head(bytes, file)?;
    if old.dim != head.dim {
        return Err(err(
            file,
            format!("head width {} differs from the model's {}", head.dim, old.dim),
        ));
    }
    let mut m = decode(bytes, file)?;
    let graph = m.graph.as_mut().expect("read_head found the graph");
    for t in graph.initializer.iter_mut() {
        let values: &[f32] = match t.name.as_str() {
            FC_WEIGHT => &head.weight,
            FC_BIAS => &head.bias,
            _ => continue,
        };
        t.float_data.clear();
        t.raw_data = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    }
    Ok(m.encode_to_vec())
}
