//! What the online refit learned, on disk beside the buffer file: the refitted head (if a refit
//! was accepted) and the pool of pseudo-labelled features it was fitted on, so that a restart
//! goes on refitting from everything seen rather than from the faces of the new run only.
//!
//! A safetensors file (`weight [7, F]`, `bias [7]` when a head is present; `pool_features
//! [M, F]` f32, `pool_labels [M]` u8) whose metadata ties it to the bundle: the embedding space
//! (`space_id`, the model's SHA-256) and a hash of the bundle's own head, the anchor every refit
//! starts from. A head fitted for another bundle would silently compute nonsense logits from
//! this model's features, so it is refused. Written atomically, like the buffer.

use crate::adapt::Head;
use crate::file_write::atomic_write_bytes;
use crate::instance_buffer::versioned_file::{VersionedReadError, read_versioned};
use crate::labels::NUM_CLASSES;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

pub const HEAD_FORMAT: &str = "sitfer-online-head";
/// Bumped whenever the file's meaning changes.
pub const HEAD_VERSION: u32 = 1;
/// Pool rows per class accepted from a file (bounds the allocation a file can ask for).
pub const MAX_POOL_PER_CLASS: usize = 4096;
const HEADER_BYTES: u64 = 64 << 10;

#[derive(Debug, Error)]
pub enum HeadFileError {
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Invalid { file: PathBuf, message: String },
    #[error(
        "{file}: online head format version {found} is not supported (this runtime reads version {HEAD_VERSION}); \
         remove the file (`sitfer buffer reset`) to start again"
    )]
    Version { file: PathBuf, found: String },
    #[error(
        "{file}: the refitted head belongs to another bundle ({what}: the file's {found}, this bundle's {expected}); \
         its weights mean nothing for this model: run `sitfer buffer reset` or pass another --buffer"
    )]
    OtherBundle {
        file: PathBuf,
        what: &'static str,
        found: String,
        expected: String,
    },
}

/// The head file beside a buffer file: `dir/name.safetensors` → `dir/name.head.safetensors`.
pub fn head_path(buffer: &Path) -> PathBuf {
    let stem = buffer
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    buffer.with_file_name(format!("{stem}.head.safetensors"))
}

/// Identifies the bundle's own head (the refit's anchor): SHA-256 of its width, weights and bias.
pub fn head_id(h: &Head) -> String {
    let mut s = Sha256::new();
    s.update((h.dim as u64).to_le_bytes());
    for x in h.weight.iter().chain(&h.bias) {
        s.update(x.to_le_bytes());
    }
    format!("{:x}", s.finalize())
}

/// Which bundle a head file belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadIdentity {
    /// [`crate::instance_buffer::space_id`] of the bundle.
    pub space: String,
    /// [`head_id`] of the bundle's head.
    pub base: String,
}

/// The persisted state of the online refit.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadState {
    /// The accepted refit head; `None` before the first accepted refit.
    pub head: Option<Head>,
    /// Pseudo-labelled pooled features, each class's oldest first.
    pub pool: Vec<(usize, Vec<f32>)>,
    /// Refits accepted over the device's life (informational).
    pub refits: u64,
}

fn f32_bytes(v: impl Iterator<Item = f32>) -> Vec<u8> {
    v.flat_map(f32::to_le_bytes).collect()
}

fn checksum(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    format!("{:x}", h.finalize())
}

impl HeadState {
    /// The state as file bytes; `dim` is the feature width (the pool's rows must have it).
    pub fn to_file_bytes(&self, dim: usize, id: &HeadIdentity) -> Vec<u8> {
        let (w, b) = match &self.head {
            Some(h) => (f32_bytes(h.weight.iter().copied()), f32_bytes(h.bias.iter().copied())),
            None => (Vec::new(), Vec::new()),
        };
        let feats = f32_bytes(self.pool.iter().flat_map(|(_, f)| f.iter().copied()));
        let labels: Vec<u8> = self.pool.iter().map(|(c, _)| *c as u8).collect();
        let meta = HashMap::from([
            ("format".to_string(), HEAD_FORMAT.to_string()),
            ("version".to_string(), HEAD_VERSION.to_string()),
            ("space".to_string(), id.space.clone()),
            ("base_head".to_string(), id.base.clone()),
            ("refits".to_string(), self.refits.to_string()),
            ("sha256".to_string(), checksum(&[&w, &b, &feats, &labels])),
        ]);
        let m = labels.len();
        let mut views = vec![
            (
                "pool_features".to_string(),
                TensorView::new(Dtype::F32, vec![m, dim], &feats).expect("sizes agree"),
            ),
            (
                "pool_labels".to_string(),
                TensorView::new(Dtype::U8, vec![m], &labels).expect("sizes agree"),
            ),
        ];
        if self.head.is_some() {
            views.push((
                "weight".to_string(),
                TensorView::new(Dtype::F32, vec![NUM_CLASSES, dim], &w).expect("sizes agree"),
            ));
            views.push((
                "bias".to_string(),
                TensorView::new(Dtype::F32, vec![NUM_CLASSES], &b).expect("sizes agree"),
            ));
        }
        safetensors::tensor::serialize(views, Some(meta)).expect("in-memory serialisation")
    }

    /// Saves atomically: a kill mid-write leaves the previous file as it was.
    pub fn save(&self, path: &Path, dim: usize, id: &HeadIdentity) -> Result<(), HeadFileError> {
        atomic_write_bytes(path, &self.to_file_bytes(dim, id)).map_err(|source| HeadFileError::Io {
            file: path.to_path_buf(),
            source,
        })
    }

    /// Reads a state saved for the bundle `id` with feature width `dim`.
    pub fn load(path: &Path, dim: usize, id: &HeadIdentity) -> Result<HeadState, HeadFileError> {
        let file = path.to_path_buf();
        let invalid = |message: String| HeadFileError::Invalid {
            file: file.clone(),
            message,
        };
        let limit = HEADER_BYTES + ((NUM_CLASSES * MAX_POOL_PER_CLASS + NUM_CLASSES + 1) * (4 * dim + 1)) as u64;
        let (bytes, meta) = match read_versioned(path, limit, HEAD_FORMAT, HEAD_VERSION, "an online head file") {
            Ok(read) => read,
            Err(VersionedReadError::Io(source)) => return Err(HeadFileError::Io { file, source }),
            Err(VersionedReadError::Invalid(m)) => return Err(invalid(m)),
            Err(VersionedReadError::Version(found)) => return Err(HeadFileError::Version { file, found }),
        };
        let get = |k: &str| meta.get(k).cloned().unwrap_or_default();
        for (key, what, expected) in [
            ("space", "model", &id.space),
            ("base_head", "classifier head", &id.base),
        ] {
            if &get(key) != expected {
                return Err(HeadFileError::OtherBundle {
                    file,
                    what,
                    found: get(key),
                    expected: expected.clone(),
                });
            }
        }
        let st = SafeTensors::deserialize(&bytes).map_err(|e| invalid(e.to_string()))?;
        let tensor = |name: &str, dtype: Dtype, shape: &dyn Fn(&[usize]) -> bool| {
            let t = st.tensor(name).map_err(|e| invalid(format!("tensor `{name}`: {e}")))?;
            if t.dtype() != dtype || !shape(t.shape()) {
                return Err(invalid(format!(
                    "tensor `{name}` is {:?} {:?} (feature width {dim})",
                    t.dtype(),
                    t.shape()
                )));
            }
            Ok(t)
        };
        let labels = tensor("pool_labels", Dtype::U8, &|s| s.len() == 1)?;
        let m = labels.shape()[0];
        let feats = tensor("pool_features", Dtype::F32, &|s| s == [m, dim])?;
        let head = match (st.tensor("weight").is_ok(), st.tensor("bias").is_ok()) {
            (false, false) => None,
            _ => Some((
                tensor("weight", Dtype::F32, &|s| s == [NUM_CLASSES, dim])?,
                tensor("bias", Dtype::F32, &|s| s == [NUM_CLASSES])?,
            )),
        };
        let (w, b) = head.as_ref().map_or((&[][..], &[][..]), |(w, b)| (w.data(), b.data()));
        if checksum(&[w, b, feats.data(), labels.data()]) != get("sha256") {
            return Err(invalid("checksum mismatch: the file is damaged".into()));
        }
        if let Some(bad) = labels.data().iter().find(|&&l| l as usize >= NUM_CLASSES) {
            return Err(invalid(format!("class id {bad} (≥ {NUM_CLASSES})")));
        }
        let floats = |d: &[u8]| -> Vec<f32> {
            d.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        let (fw, fb, ff) = (floats(w), floats(b), floats(feats.data()));
        if fw.iter().chain(&fb).chain(&ff).any(|v| !v.is_finite()) {
            return Err(invalid("non-finite values".into()));
        }
        Ok(HeadState {
            head: head.map(|_| Head {
                dim,
                weight: fw,
                bias: std::array::from_fn(|c| fb[c]),
            }),
            pool: labels
                .data()
                .iter()
                .enumerate()
                .map(|(i, &c)| (c as usize, ff[i * dim..(i + 1) * dim].to_vec()))
                .collect(),
            refits: get("refits").parse().unwrap_or(0),
        })
    }
}
