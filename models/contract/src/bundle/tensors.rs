//! Reading and writing the few f32/u8 tensors of a bundle as safetensors, with shape checks
//! before any allocation sized by the file's own header.

use super::error::BundleError;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::path::Path;

/// Serialises named tensors; `(name, dtype, shape, little-endian bytes)`.
pub(crate) fn encode(tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)>) -> Result<Vec<u8>, BundleError> {
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (name.to_string(), v))
                .map_err(|e| BundleError::tensor(*name, name, e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::tensor::serialize(views, None).map_err(|e| BundleError::tensor("<memory>", "tensors", e.to_string()))
}

/// The parsed file, with the field name its errors report.
pub(crate) struct TensorFile<'a> {
    st: SafeTensors<'a>,
    file: &'a Path,
    field: &'a str,
}

impl<'a> TensorFile<'a> {
    pub(crate) fn parse(bytes: &'a [u8], file: &'a Path, field: &'a str) -> Result<Self, BundleError> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| BundleError::tensor(file, field, e.to_string()))?;
        Ok(TensorFile { st, file, field })
    }

    /// Tensor `name` of `dtype`, with its shape.
    pub(crate) fn get(&self, name: &str, dtype: Dtype) -> Result<(Vec<usize>, &'a [u8]), BundleError> {
        let t = self
            .st
            .tensor(name)
            .map_err(|e| BundleError::tensor(self.file, self.field, format!("tensor `{name}`: {e}")))?;
        if t.dtype() != dtype {
            return Err(BundleError::tensor(
                self.file,
                self.field,
                format!("tensor `{name}`: dtype {:?}, expected {dtype:?}", t.dtype()),
            ));
        }
        Ok((t.shape().to_vec(), t.data()))
    }

    pub(crate) fn error(&self, message: impl Into<String>) -> BundleError {
        BundleError::tensor(self.file, self.field, message)
    }
}

pub(crate) fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(crate) fn f32_from_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
