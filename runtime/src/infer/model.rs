//! A bundle's ONNX model run with tract: `[B, 3, H, W]` f32 → logits `[B, classes]` and the
//! normalised embedding `[B, d]`.

use crate::bundle::{Bundle, BundleError, Manifest, Precision};
use crate::labels::NUM_CLASSES;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;
use tract_onnx::prelude::*;

#[derive(Debug, Error)]
pub enum InferError {
    #[error("input: {0}")]
    Input(String),
    #[error("{file}: running the model: {message}")]
    Run { file: PathBuf, message: String },
}

/// What the model returns for a batch.
#[derive(Debug, Clone)]
pub struct Inference {
    pub batch: usize,
    pub dim: usize,
    /// `[batch, NUM_CLASSES]`, row-major.
    pub logits: Vec<f32>,
    /// `[batch, dim]`, row-major, L2-normalised rows.
    pub embedding: Vec<f32>,
}

impl Inference {
    pub fn logits_row(&self, i: usize) -> &[f32] {
        &self.logits[i * NUM_CLASSES..(i + 1) * NUM_CLASSES]
    }
    pub fn embedding_row(&self, i: usize) -> &[f32] {
        &self.embedding[i * self.dim..(i + 1) * self.dim]
    }
}

/// An optimised, runnable model.
pub struct Model {
    plan: Arc<TypedRunnableModel>,
    file: PathBuf,
    size: usize,
    channels: usize,
    dim: usize,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("file", &self.file)
            .field("size", &self.size)
            .field("dim", &self.dim)
            .finish()
    }
}

impl Model {
    /// Loads the bundle's model of `precision` (its hash is checked again).
    pub fn load(bundle: &Bundle, precision: Precision) -> Result<Model, BundleError> {
        let (path, bytes) = bundle.model_bytes(precision)?;
        Model::from_onnx(&bytes, &path, bundle.manifest.model(precision).1, &bundle.manifest)
    }

    /// Builds a model from ONNX bytes, checking its input and outputs against `manifest`.
    /// `file` and `field` name the model in errors.
    pub fn from_onnx(bytes: &[u8], file: &Path, field: &str, manifest: &Manifest) -> Result<Model, BundleError> {
        let err = |message: String| BundleError::Model {
            file: file.to_path_buf(),
            field: field.to_string(),
            message,
        };
        let typed = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .and_then(|m| m.into_typed())
            .map_err(|e| err(format!("not a loadable ONNX model: {e:#}")))?;
        let size = manifest.input.size as usize;
        let channels = manifest.input.channels as usize;
        let dim = manifest.embedding_dim;
        check_shapes(&typed, size, channels, dim).map_err(err)?;
        let plan = typed
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| err(format!("optimising the model: {e:#}")))?;
        Ok(Model {
            plan,
            file: file.to_path_buf(),
            size,
            channels,
            dim,
        })
    }

    pub fn input_size(&self) -> usize {
        self.size
    }
    pub fn embedding_dim(&self) -> usize {
        self.dim
    }

    /// Runs a batch of normalised CHW images (`input.len() == batch * 3 * size * size`).
    pub fn run(&self, input: &[f32], batch: usize) -> Result<Inference, InferError> {
        let per = self.channels * self.size * self.size;
        if batch == 0 || input.len() != batch * per {
            return Err(InferError::Input(format!(
                "{} values for a batch of {batch} images of {}x{}x{} (expected {})",
                input.len(),
                self.channels,
                self.size,
                self.size,
                batch * per
            )));
        }
        let run_err = |e: TractError| InferError::Run {
            file: self.file.clone(),
            message: format!("{e:#}"),
        };
        let x = Tensor::from_shape(&[batch, self.channels, self.size, self.size], input).map_err(run_err)?;
        let out = self.plan.run(tvec![x.into_tvalue()]).map_err(run_err)?;
        let take = |i: usize, width: usize| -> Result<Vec<f32>, InferError> {
            let v = out[i].to_plain_array_view::<f32>().map_err(run_err)?;
            if v.shape() != [batch, width] {
                return Err(InferError::Run {
                    file: self.file.clone(),
                    message: format!("output {i} has shape {:?}, expected [{batch}, {width}]", v.shape()),
                });
            }
            Ok(v.iter().copied().collect())
        };
        Ok(Inference {
            batch,
            dim: self.dim,
            logits: take(0, NUM_CLASSES)?,
            embedding: take(1, self.dim)?,
        })
    }
}

/// Input `[N, channels, size, size]` f32, outputs `logits [N, NUM_CLASSES]` then
/// `embedding [N, dim]`; the batch dimension may be symbolic.
fn check_shapes(m: &TypedModel, size: usize, channels: usize, dim: usize) -> Result<(), String> {
    let n_in = m.input_outlets().map_err(|e| e.to_string())?.len();
    let n_out = m.output_outlets().map_err(|e| e.to_string())?.len();
    if n_in != 1 || n_out != 2 {
        return Err(format!(
            "{n_in} inputs and {n_out} outputs; expected one input and two outputs (logits, embedding)"
        ));
    }
    let dims = |f: &TypedFact| -> Vec<Option<i64>> { f.shape.iter().map(|d| d.as_i64()).collect() };
    let show = |f: &TypedFact| format!("{:?}", f.shape);
    let input = m.input_fact(0).map_err(|e| e.to_string())?;
    let want = [channels as i64, size as i64, size as i64];
    let d = dims(input);
    if input.datum_type != f32::datum_type() || d.len() != 4 || d[1..] != want.map(Some) {
        return Err(format!(
            "input has shape {} of {:?}; the manifest (input.channels, input.size) says [N, {channels}, {size}, {size}] of f32",
            show(input),
            input.datum_type
        ));
    }
    for (i, name, width, field) in [
        (0, "logits", NUM_CLASSES, "classes"),
        (1, "embedding", dim, "embedding_dim"),
    ] {
        let f = m.output_fact(i).map_err(|e| e.to_string())?;
        let d = dims(f);
        if d.len() != 2 || d[1] != Some(width as i64) {
            return Err(format!(
                "output {i} ({name}) has shape {}; the manifest ({field}) says [N, {width}]",
                show(f)
            ));
        }
    }
    Ok(())
}
