//! The seed instance buffer: embeddings of labeled faces with their class ids, from which the
//! on-device buffer starts and the instance-level prediction p_ins is computed.

use super::error::BundleError;
use super::reader::MAX_EMBEDDING_DIM;
use super::tensors::{TensorFile, encode, f32_bytes, f32_from_bytes};
use crate::labels::NUM_CLASSES;
use safetensors::Dtype;
use std::path::Path;

const EMBEDDINGS: &str = "embeddings";
const LABELS: &str = "labels";

/// Entries a bundle's buffer may hold; a file claiming more is refused before allocation.
pub const MAX_BUFFER_ENTRIES: usize = 1 << 16;

#[derive(Debug, Clone, PartialEq)]
pub struct SeedBuffer {
    pub dim: usize,
    /// `[len, dim]`, row-major.
    pub embeddings: Vec<f32>,
    /// Canonical class index of each entry.
    pub labels: Vec<u8>,
}

impl SeedBuffer {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn embedding(&self, i: usize) -> &[f32] {
        &self.embeddings[i * self.dim..(i + 1) * self.dim]
    }

    /// Entries per class, in canonical order.
    pub fn class_counts(&self) -> [usize; NUM_CLASSES] {
        let mut c = [0; NUM_CLASSES];
        for &l in &self.labels {
            c[l as usize] += 1;
        }
        c
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, BundleError> {
        encode(vec![
            (
                EMBEDDINGS,
                Dtype::F32,
                vec![self.len(), self.dim],
                f32_bytes(&self.embeddings),
            ),
            (LABELS, Dtype::U8, vec![self.len()], self.labels.clone()),
        ])
    }

    /// Reads a file whose row width is its own (the anchors: the head's input width, which the
    /// manifest does not state); the width must be in `1..=MAX_EMBEDDING_DIM`.
    pub fn from_bytes_any_dim(bytes: &[u8], file: &Path, field: &str) -> Result<Self, BundleError> {
        let f = TensorFile::parse(bytes, file, field)?;
        let (eshape, _) = f.get(EMBEDDINGS, Dtype::F32)?;
        match eshape[..] {
            [_, dim] if (1..=MAX_EMBEDDING_DIM).contains(&dim) => Self::from_bytes(bytes, dim, file, field),
            _ => Err(f.error(format!(
                "tensor `{EMBEDDINGS}` has shape {eshape:?}, expected [n, F] with 1 ≤ F ≤ {MAX_EMBEDDING_DIM}"
            ))),
        }
    }

    pub fn from_bytes(bytes: &[u8], dim: usize, file: &Path, field: &str) -> Result<Self, BundleError> {
        let f = TensorFile::parse(bytes, file, field)?;
        let (lshape, labels) = f.get(LABELS, Dtype::U8)?;
        let n = match lshape[..] {
            [n] if n <= MAX_BUFFER_ENTRIES => n,
            _ => {
                return Err(f.error(format!(
                    "tensor `{LABELS}` has shape {lshape:?}, expected [n] with n ≤ {MAX_BUFFER_ENTRIES}"
                )));
            }
        };
        let (eshape, emb) = f.get(EMBEDDINGS, Dtype::F32)?;
        if eshape != [n, dim] {
            return Err(f.error(format!(
                "tensor `{EMBEDDINGS}` has shape {eshape:?}, expected [{n}, {dim}] (labels, embedding_dim)"
            )));
        }
        if let Some(bad) = labels.iter().find(|&&l| l as usize >= NUM_CLASSES) {
            return Err(f.error(format!("tensor `{LABELS}` holds class id {bad} (≥ {NUM_CLASSES})")));
        }
        let embeddings = f32_from_bytes(emb);
        if embeddings.iter().any(|x| !x.is_finite()) {
            return Err(f.error(format!("tensor `{EMBEDDINGS}` holds non-finite values")));
        }
        Ok(SeedBuffer {
            dim,
            embeddings,
            labels: labels.to_vec(),
        })
    }
}
