//! Text prototypes: one embedding per class (rows in canonical class order, L2-normalised), the
//! anchors of the text-level prediction p_text.

use super::error::BundleError;
use super::tensors::{TensorFile, encode, f32_bytes, f32_from_bytes};
use crate::labels::NUM_CLASSES;
use safetensors::Dtype;
use std::path::Path;

const TENSOR: &str = "prototypes";

#[derive(Debug, Clone, PartialEq)]
pub struct TextPrototypes {
    pub dim: usize,
    /// `[NUM_CLASSES, dim]`, row-major.
    pub data: Vec<f32>,
}

impl TextPrototypes {
    /// Rows must be `NUM_CLASSES` vectors of one length.
    pub fn from_rows(rows: &[Vec<f32>]) -> Result<Self, String> {
        if rows.len() != NUM_CLASSES {
            return Err(format!("{} prototype rows, expected {NUM_CLASSES}", rows.len()));
        }
        let dim = rows[0].len();
        if dim == 0 || rows.iter().any(|r| r.len() != dim) {
            return Err("prototype rows are empty or of different lengths".into());
        }
        Ok(TextPrototypes {
            dim,
            data: rows.concat(),
        })
    }

    pub fn row(&self, class: usize) -> &[f32] {
        &self.data[class * self.dim..(class + 1) * self.dim]
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, BundleError> {
        encode(vec![(
            TENSOR,
            Dtype::F32,
            vec![NUM_CLASSES, self.dim],
            f32_bytes(&self.data),
        )])
    }

    /// Parses and checks the shape against the manifest's `embedding_dim`.
    pub fn from_bytes(bytes: &[u8], dim: usize, file: &Path, field: &str) -> Result<Self, BundleError> {
        let f = TensorFile::parse(bytes, file, field)?;
        let (shape, data) = f.get(TENSOR, Dtype::F32)?;
        if shape != [NUM_CLASSES, dim] {
            return Err(f.error(format!(
                "tensor `{TENSOR}` has shape {shape:?}, expected [{NUM_CLASSES}, {dim}] (embedding_dim)"
            )));
        }
        let data = f32_from_bytes(data);
        if data.iter().any(|x| !x.is_finite()) {
            return Err(f.error(format!("tensor `{TENSOR}` holds non-finite values")));
        }
        Ok(TextPrototypes { dim, data })
    }
}
