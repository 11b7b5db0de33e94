//! The buffer on disk: the queued (device-learned) entries only, since the seed comes with the
//! bundle. A safetensors file (`embeddings [M, d]` f32, `labels [M]` u8, each class's entries
//! oldest first) whose metadata holds the format name and version, the embedding space it
//! belongs to and a SHA-256 of the tensors; written atomically so that a kill mid-write leaves
//! the previous file loadable.

use super::InstanceBuffer;
use super::versioned_file::{VersionedReadError, read_versioned};
use crate::bundle::Manifest;
use crate::file_write::atomic_write_bytes;
use crate::labels::NUM_CLASSES;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

pub const BUFFER_FORMAT: &str = "sitfer-instance-buffer";
/// Bumped whenever the file's meaning changes.
pub const BUFFER_VERSION: u32 = 1;
/// Queue capacity bound; also bounds the file size accepted.
pub const MAX_QUEUE_PER_CLASS: usize = 4096;
const HEADER_BYTES: u64 = 64 << 10;

#[derive(Debug, Error)]
pub enum BufferError {
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Invalid { file: PathBuf, message: String },
    #[error(
        "{file}: buffer format version {found} is not supported (this runtime reads version {BUFFER_VERSION}); \
         remove the file to start a new buffer"
    )]
    Version { file: PathBuf, found: String },
    #[error(
        "{file}: the buffer belongs to another model (embedding space {found}, this bundle's is {expected}); \
         its embeddings mean nothing here: remove the file or pass another --buffer"
    )]
    OtherModel {
        file: PathBuf,
        found: String,
        expected: String,
    },
}

/// Identifies a bundle's embedding space: the model that computes the embeddings (fp32 if
/// present, else int8) and the dimension. Buffers from another model are refused.
pub fn space_id(m: &Manifest) -> String {
    let model = m.models.fp32.as_ref().or(m.models.int8.as_ref());
    format!("{}:{}", model.map_or("none", |e| e.sha256.as_str()), m.embedding_dim)
}

fn checksum(emb: &[u8], labels: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(emb);
    h.update(labels);
    format!("{:x}", h.finalize())
}

impl InstanceBuffer {
    /// The queued entries as file bytes.
    pub fn to_file_bytes(&self, space: &str) -> Vec<u8> {
        let mut emb = Vec::new();
        let mut labels = Vec::new();
        for c in 0..NUM_CLASSES {
            for z in self.queued(c) {
                emb.extend(z.iter().flat_map(|x| x.to_le_bytes()));
                labels.push(c as u8);
            }
        }
        let n = labels.len();
        let meta = HashMap::from([
            ("format".to_string(), BUFFER_FORMAT.to_string()),
            ("version".to_string(), BUFFER_VERSION.to_string()),
            ("space".to_string(), space.to_string()),
            ("sha256".to_string(), checksum(&emb, &labels)),
        ]);
        let views = vec![
            (
                "embeddings".to_string(),
                TensorView::new(Dtype::F32, vec![n, self.dim], &emb).expect("sizes agree"),
            ),
            (
                "labels".to_string(),
                TensorView::new(Dtype::U8, vec![n], &labels).expect("sizes agree"),
            ),
        ];
        safetensors::tensor::serialize(views, Some(meta)).expect("in-memory serialisation")
    }

    /// Saves the queued entries to `path` atomically.
    pub fn save(&self, path: &Path, space: &str) -> Result<(), BufferError> {
        atomic_write_bytes(path, &self.to_file_bytes(space)).map_err(|source| BufferError::Io {
            file: path.to_path_buf(),
            source,
        })
    }

    /// Replaces the queues with the entries saved at `path`. A buffer saved with a larger
    /// capacity keeps each class's newest entries.
    pub fn load(&mut self, path: &Path, space: &str) -> Result<(), BufferError> {
        let file = path.to_path_buf();
        let invalid = |message: String| BufferError::Invalid {
            file: file.clone(),
            message,
        };
        let limit = HEADER_BYTES + (NUM_CLASSES * MAX_QUEUE_PER_CLASS) as u64 * (4 * self.dim as u64 + 1);
        let (bytes, meta) = match read_versioned(path, limit, BUFFER_FORMAT, BUFFER_VERSION, "a buffer file") {
            Ok(read) => read,
            Err(VersionedReadError::Io(source)) => return Err(BufferError::Io { file, source }),
            Err(VersionedReadError::Invalid(m)) => return Err(invalid(m)),
            Err(VersionedReadError::Version(found)) => return Err(BufferError::Version { file, found }),
        };
        let get = |k: &str| meta.get(k).cloned().unwrap_or_default();
        if get("space") != space {
            return Err(BufferError::OtherModel {
                file,
                found: get("space"),
                expected: space.to_string(),
            });
        }
        let st = SafeTensors::deserialize(&bytes).map_err(|e| invalid(e.to_string()))?;
        let tensor = |name: &str, dtype: Dtype| {
            st.tensor(name)
                .map_err(|e| invalid(format!("tensor `{name}`: {e}")))
                .and_then(|t| {
                    if t.dtype() == dtype {
                        Ok(t)
                    } else {
                        Err(invalid(format!(
                            "tensor `{name}` is {:?}, expected {dtype:?}",
                            t.dtype()
                        )))
                    }
                })
        };
        let labels = tensor("labels", Dtype::U8)?;
        let emb = tensor("embeddings", Dtype::F32)?;
        let n = labels.shape().first().copied().unwrap_or(0);
        if labels.shape() != [n] || emb.shape() != [n, self.dim] {
            return Err(invalid(format!(
                "shapes {:?} and {:?}, expected [n] and [n, {}]",
                labels.shape(),
                emb.shape(),
                self.dim
            )));
        }
        if checksum(emb.data(), labels.data()) != get("sha256") {
            return Err(invalid("checksum mismatch: the file is damaged".into()));
        }
        if let Some(bad) = labels.data().iter().find(|&&l| l as usize >= NUM_CLASSES) {
            return Err(invalid(format!("class id {bad} (≥ {NUM_CLASSES})")));
        }
        let values: Vec<f32> = emb
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if values.iter().any(|v| !v.is_finite()) {
            return Err(invalid("non-finite embedding values".into()));
        }
        self.reset_queues();
        for (i, &c) in labels.data().iter().enumerate() {
            self.push(c as usize, &values[i * self.dim..(i + 1) * self.dim]);
        }
        Ok(())
    }
}
