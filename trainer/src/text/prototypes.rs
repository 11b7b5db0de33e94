//! Text prototypes: one unit vector per class, the normalised mean of its descriptions'
//! embeddings. They are cached in a JSON file that records the encoder (with the hash of its
//! weights), the texts and their hash, so training and the runtime never need the encoder again
//! and a change of texts or encoder rebuilds the cache.

use super::encoder::{EncoderError, EncoderId, EncoderKind, TextEncoder};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sitfer_contract::file_write::atomic_write_bytes;
use sitfer_contract::labels::{ALL, NUM_CLASSES};
use std::path::{Path, PathBuf};
use thiserror::Error;

pub const PROTOTYPES_VERSION: u32 = 1;

#[derive(Debug, Error)]
pub enum PrototypeError {
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(
        "{cache}: {why}, and no text encoder at {encoder} to rebuild it (run scripts/fetch-text-encoder.sh, or pass --text-encoder DIR)"
    )]
    NeedEncoder {
        cache: PathBuf,
        encoder: PathBuf,
        why: String,
    },
}

/// The cache file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrototypeSet {
    pub version: u32,
    pub encoder: EncoderId,
    /// Class names in canonical order.
    pub classes: Vec<String>,
    /// Descriptions per class (same order as `classes`).
    pub texts: Vec<Vec<String>>,
    pub texts_hash: String,
    pub dim: usize,
    /// `[classes][dim]`, each row L2-normalised.
    pub prototypes: Vec<Vec<f32>>,
}

/// SHA-256 of the descriptions (as JSON, so that moving a text between classes changes it).
pub fn texts_hash(texts: &[Vec<String>]) -> String {
    format!(
        "{:x}",
        Sha256::digest(serde_json::to_vec(texts).expect("texts serialise"))
    )
}

/// SHA-256 of an encoder directory's weights, as [`EncoderId::sha256`] records it.
pub fn weights_sha256(dir: &Path) -> Result<String, PrototypeError> {
    let p = dir.join("model.safetensors");
    let bytes = std::fs::read(&p).map_err(|e| PrototypeError::File {
        path: p.clone(),
        message: e.to_string(),
    })?;
    Ok(format!("{:x}", Sha256::digest(bytes)))
}

fn normalized_mean(rows: &[Vec<f32>]) -> Vec<f32> {
    let dim = rows[0].len();
    let mut m = vec![0f32; dim];
    for r in rows {
        for (a, b) in m.iter_mut().zip(r) {
            *a += b;
        }
    }
    let n = m.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    m.iter_mut().for_each(|v| *v /= n);
    m
}

impl PrototypeSet {
    /// Embeds every description and averages per class.
    pub fn compute(encoder: &TextEncoder, texts: &[Vec<String>]) -> Result<Self, PrototypeError> {
        assert_eq!(texts.len(), NUM_CLASSES, "one list of descriptions per class");
        let mut prototypes = Vec::with_capacity(NUM_CLASSES);
        for class_texts in texts {
            assert!(!class_texts.is_empty(), "every class needs a description");
            prototypes.push(normalized_mean(&encoder.embed(class_texts)?));
        }
        Ok(PrototypeSet {
            version: PROTOTYPES_VERSION,
            encoder: encoder.id.clone(),
            classes: ALL.iter().map(|e| e.name().to_string()).collect(),
            texts: texts.to_vec(),
            texts_hash: texts_hash(texts),
            dim: prototypes[0].len(),
            prototypes,
        })
    }

    pub fn load(path: &Path) -> Result<Self, PrototypeError> {
        let err = |message: String| PrototypeError::File {
            path: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let set: PrototypeSet = serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
        if set.version != PROTOTYPES_VERSION {
            return Err(err(format!(
                "field `version`: {} is not the supported {PROTOTYPES_VERSION}",
                set.version
            )));
        }
        let canonical: Vec<String> = ALL.iter().map(|e| e.name().to_string()).collect();
        if set.classes != canonical {
            return Err(err(format!(
                "field `classes`: {:?} is not the canonical order {canonical:?}",
                set.classes
            )));
        }
        if set.prototypes.len() != NUM_CLASSES || set.prototypes.iter().any(|r| r.len() != set.dim) || set.dim == 0 {
            return Err(err(format!(
                "field `prototypes`: expected {NUM_CLASSES} rows of `dim` = {} values",
                set.dim
            )));
        }
        if set.texts.len() != NUM_CLASSES {
            return Err(err(format!("field `texts`: expected {NUM_CLASSES} lists")));
        }
        Ok(set)
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        atomic_write_bytes(path, &serde_json::to_vec_pretty(self).expect("prototypes serialise"))
    }

    /// `[classes, dim]` on `device`.
    pub fn tensor(&self, device: &Device) -> candle_core::Result<Tensor> {
        Tensor::from_vec(
            self.prototypes.iter().flatten().copied().collect::<Vec<f32>>(),
            (NUM_CLASSES, self.dim),
            device,
        )
    }

    /// Cosine similarity between two classes' prototypes.
    pub fn similarity(&self, a: usize, b: usize) -> f32 {
        self.prototypes[a]
            .iter()
            .zip(&self.prototypes[b])
            .map(|(x, y)| x * y)
            .sum()
    }
}

/// Where the encoder lives, for [`resolve`].
#[derive(Debug, Clone)]
pub struct EncoderSource {
    pub dir: PathBuf,
    pub kind: EncoderKind,
}

/// The prototypes for `texts`: from `cache` when it was made from these texts (and from this
/// encoder, when the encoder is present to compare with), otherwise computed with the encoder
/// and written to `cache`. Returns the set and whether it was rebuilt.
pub fn resolve(
    cache: &Path,
    encoder: &EncoderSource,
    texts: &[Vec<String>],
) -> Result<(PrototypeSet, bool), PrototypeError> {
    let encoder_present = encoder.dir.join("model.safetensors").is_file();
    let want_hash = texts_hash(texts);
    let stale_reason = if cache.is_file() {
        let set = PrototypeSet::load(cache)?;
        if set.texts_hash != want_hash {
            Some("the descriptions changed since the cache was made".to_string())
        } else if encoder_present
            && (set.encoder.kind != encoder.kind || set.encoder.sha256 != weights_sha256(&encoder.dir)?)
        {
            Some(format!(
                "the cache was made with another encoder ({})",
                set.encoder.name
            ))
        } else {
            return Ok((set, false));
        }
    } else {
        None
    };
    if !encoder_present {
        return Err(PrototypeError::NeedEncoder {
            cache: cache.to_path_buf(),
            encoder: encoder.dir.clone(),
            why: stale_reason.unwrap_or_else(|| "no prototype cache".into()),
        });
    }
    if let Some(why) = &stale_reason {
        log::info!("{}: {why}; rebuilding", cache.display());
    }
    let enc = TextEncoder::load(&encoder.dir, encoder.kind)?;
    let set = PrototypeSet::compute(&enc, texts)?;
    set.save(cache).map_err(|e| PrototypeError::File {
        path: cache.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok((set, true))
}
