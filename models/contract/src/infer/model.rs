//! A bundle's ONNX model run with tract: `[B, 3, H, W]` f32 → logits `[B, classes]` and the
//! normalised embedding `[B, d]`, and on request the pooled feature `[B, F]` the heads read
//! (the adaptation refits the classifier head on it).

use super::panic_guard::tract_guarded;
use crate::bundle::{Bundle, BundleError, Manifest, Precision};
use crate::labels::NUM_CLASSES;
use crate::onnx_names::{EMBEDDING, FEATURE, LOGITS};
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
    /// `[batch, feature_dim]` pooled features, when the model was loaded with them.
    pub feature: Option<Vec<f32>>,
    pub feature_dim: usize,
}

impl Inference {
    pub fn logits_row(&self, i: usize) -> &[f32] {
        &self.logits[i * NUM_CLASSES..(i + 1) * NUM_CLASSES]
    }
    pub fn embedding_row(&self, i: usize) -> &[f32] {
        &self.embedding[i * self.dim..(i + 1) * self.dim]
    }
    pub fn feature_row(&self, i: usize) -> Option<&[f32]> {
        let d = self.feature_dim;
        self.feature.as_ref().map(|f| &f[i * d..(i + 1) * d])
    }
}

/// An optimised, runnable model.
///
/// The plan is optimised for one image (`[1, C, H, W]`) and a batch runs image by image: tract
/// optimises a graph with a symbolic batch less well (5.7 vs 4.4 ms per 48x48 face on x86 with
/// AVX-512), and batches cost more per image than single images there (8–12 ms at 4–8 faces),
/// measured with `sitfer bench` (docs/results/bundle.md).
pub struct Model {
    plan: Arc<TypedRunnableModel>,
    file: PathBuf,
    size: usize,
    channels: usize,
    dim: usize,
    /// Width of the exposed feature output, when loaded with one.
    feature_dim: Option<usize>,
    /// Average every face with its mirror image ([`Model::set_mirror`]).
    mirror: bool,
    /// The plan's input type: f32, or f16 for [`Precision::Fp16`] (the image is converted at
    /// the door; outputs are read back as f32 whatever their type).
    input_dt: DatumType,
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
    /// [`Precision::Fp16`] reads the fp32 model and translates it to f16 ([`to_f16_trunk`]).
    pub fn load(bundle: &Bundle, precision: Precision) -> Result<Model, BundleError> {
        let (path, bytes) = bundle.model_bytes(precision)?;
        let field = bundle.manifest.model(precision).1;
        Model::from_onnx_with(
            &bytes,
            &path,
            field,
            &bundle.manifest,
            false,
            precision == Precision::Fp16,
        )
    }

    /// Builds a model from ONNX bytes, checking its input and outputs against `manifest`.
    /// `file` and `field` name the model in errors.
    pub fn from_onnx(bytes: &[u8], file: &Path, field: &str, manifest: &Manifest) -> Result<Model, BundleError> {
        Model::from_onnx_with(bytes, file, field, manifest, false, false)
    }

    /// As [`Model::from_onnx`], with the convolutional trunk run in f16 ([`Precision::Fp16`]).
    pub fn from_onnx_f16(bytes: &[u8], file: &Path, field: &str, manifest: &Manifest) -> Result<Model, BundleError> {
        Model::from_onnx_with(bytes, file, field, manifest, false, true)
    }

    /// Loads the bundle's model of `precision` with the pooled feature ([`FEATURE`]) as a
    /// third output; an error when the graph has no such tensor.
    pub fn load_with_feature(bundle: &Bundle, precision: Precision) -> Result<Model, BundleError> {
        let (path, bytes) = bundle.model_bytes(precision)?;
        Model::from_onnx_with(
            &bytes,
            &path,
            bundle.manifest.model(precision).1,
            &bundle.manifest,
            true,
            precision == Precision::Fp16,
        )
    }

    fn from_onnx_with(
        bytes: &[u8],
        file: &Path,
        field: &str,
        manifest: &Manifest,
        with_feature: bool,
        half: bool,
    ) -> Result<Model, BundleError> {
        let err = |message: String| BundleError::Model {
            file: file.to_path_buf(),
            field: field.to_string(),
            message,
        };
        let mut inference = tract_guarded("not a loadable ONNX model", || {
            tract_onnx::onnx().model_for_read(&mut &bytes[..])
        })
        .map_err(err)?;
        if with_feature {
            let feature = inference.find_outlet_label(FEATURE).ok_or_else(|| {
                err(format!(
                    "the graph has no `{FEATURE}` tensor (the pooled feature the heads read), so its heads cannot be refitted"
                ))
            })?;
            let mut outputs = inference.output_outlets().map_err(|e| err(e.to_string()))?.to_vec();
            outputs.push(feature);
            inference
                .select_output_outlets(&outputs)
                .map_err(|e| err(e.to_string()))?;
        }
        let size = manifest.input.size as usize;
        let channels = manifest.input.channels as usize;
        let dim = manifest.embedding_dim;
        // The shapes are checked on the graph as exported (batch symbolic or not), the plan is
        // built for one image.
        let typed = tract_guarded("not a loadable ONNX model", || inference.clone().into_typed()).map_err(err)?;
        check_shapes(&typed, size, channels, dim, with_feature).map_err(err)?;
        let typed = tract_guarded("not a loadable ONNX model for one image", || {
            inference
                .with_input_fact(0, f32::fact([1, channels, size, size]).into())?
                .into_typed()
        })
        .map_err(err)?;
        let feature_dim = if with_feature {
            let f = typed.output_fact(2).map_err(|e| err(e.to_string()))?;
            match f.shape.get(1).and_then(|d| d.as_i64()) {
                Some(d) if f.rank() == 2 && d > 0 => Some(d as usize),
                _ => {
                    return Err(err(format!("`{FEATURE}` has shape {:?}, expected [N, F]", f.shape)));
                }
            }
        } else {
            None
        };
        let typed = if half {
            tract_guarded("translating the model to f16", || to_f16_trunk(typed)).map_err(err)?
        } else {
            typed
        };
        let input_dt = typed.input_fact(0).map_err(|e| err(e.to_string()))?.datum_type;
        let plan = tract_guarded("optimising the model", || typed.into_optimized()?.into_runnable()).map_err(err)?;
        Ok(Model {
            plan,
            file: file.to_path_buf(),
            size,
            channels,
            dim,
            feature_dim,
            mirror: false,
            input_dt,
        })
    }

    /// Test-time flip: each face is also run mirrored left to right, and the two runs' logits and
    /// pooled features are averaged and their embeddings averaged and re-normalised. Faces are
    /// close to symmetric and the trainer's weak augmentation flips them, so the mirrored face
    /// is another view of the same expression: a two-view ensemble for twice the model time.
    pub fn set_mirror(&mut self, on: bool) {
        self.mirror = on;
    }

    /// Width of the pooled feature, when the model exposes it.
    pub fn feature_dim(&self) -> Option<usize> {
        self.feature_dim
    }

    pub fn input_size(&self) -> usize {
        self.size
    }
    pub fn embedding_dim(&self) -> usize {
        self.dim
    }

    /// Runs a batch of normalised CHW images (`input.len() == batch * 3 * size * size`), one
    /// image at a time (see [`Model`]).
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
        let mut res = Inference {
            batch,
            dim: self.dim,
            logits: Vec::with_capacity(batch * NUM_CLASSES),
            embedding: Vec::with_capacity(batch * self.dim),
            feature: self.feature_dim.map(|d| Vec::with_capacity(batch * d)),
            feature_dim: self.feature_dim.unwrap_or(0),
        };
        let mut flipped = vec![0f32; if self.mirror { per } else { 0 }];
        for image in input.chunks_exact(per) {
            self.push_outputs(image, &mut res)?;
            if self.mirror {
                // The mirrored run's rows land after the face's own and are folded into them.
                mirror_chw(image, self.size, &mut flipped);
                self.push_outputs(&flipped, &mut res)?;
                average_last_two(&mut res.logits, NUM_CLASSES);
                let z = average_last_two(&mut res.embedding, self.dim);
                let norm = z.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                z.iter_mut().for_each(|v| *v /= norm);
                if let (Some(d), Some(f)) = (self.feature_dim, res.feature.as_mut()) {
                    average_last_two(f, d);
                }
            }
        }
        Ok(res)
    }

    /// Runs one image through the plan and appends its logits, embedding and (when loaded)
    /// pooled feature to `res`.
    fn push_outputs(&self, image: &[f32], res: &mut Inference) -> Result<(), InferError> {
        let run_err = |e: TractError| InferError::Run {
            file: self.file.clone(),
            message: format!("{e:#}"),
        };
        let mut x = Tensor::from_shape(&[1, self.channels, self.size, self.size], image).map_err(run_err)?;
        if self.input_dt != f32::datum_type() {
            x = x.cast_to_dt(self.input_dt).map_err(run_err)?.into_owned();
        }
        let out = self.plan.run(tvec![x.into_tvalue()]).map_err(run_err)?;
        let take = |i: usize, width: usize, to: &mut Vec<f32>| -> Result<(), InferError> {
            // f32 already for logits and embedding (the f16 translation keeps the head in f32);
            // the pooled feature of an f16 trunk is f16.
            let t = out[i].cast_to::<f32>().map_err(run_err)?;
            let v = t.to_plain_array_view::<f32>().map_err(run_err)?;
            if v.shape() != [1, width] {
                return Err(InferError::Run {
                    file: self.file.clone(),
                    message: format!("output {i} has shape {:?}, expected [1, {width}]", v.shape()),
                });
            }
            to.extend(v.iter().copied());
            Ok(())
        };
        take(0, NUM_CLASSES, &mut res.logits)?;
        take(1, self.dim, &mut res.embedding)?;
        if let (Some(d), Some(f)) = (self.feature_dim, res.feature.as_mut()) {
            take(2, d, f)?;
        }
        Ok(())
    }
}

/// `model` (a typed plan for one f32 image) with the convolutional trunk in f16: every node the
/// pooled [`FEATURE`] depends on, input included, computes in f16, so tract picks its f16 matrix
/// kernels (FP16 arithmetic on Cortex-A76/A78: twice the lanes of f32 per NEON instruction).
/// The heads (`Gemm` logits and projection, the L2 normalisation) stay f32: they cost little
/// and the normalisation's sum of squares could overflow f16's 65504. A graph without a
/// `feature` tensor is translated whole.
fn to_f16_trunk(model: TypedModel) -> TractResult<TypedModel> {
    use tract_onnx::tract_core::floats::FloatPrecisionTranslator;
    use tract_onnx::tract_core::transform::ModelTransform;
    let trunk: Option<std::collections::HashSet<usize>> = model.find_outlet_label(FEATURE).map(|f| {
        let mut seen = std::collections::HashSet::new();
        let mut todo = vec![f.node];
        while let Some(n) = todo.pop() {
            if seen.insert(n) {
                todo.extend(model.node(n).inputs.iter().map(|i| i.node));
            }
        }
        seen
    });
    let translator = match trunk {
        Some(trunk) => FloatPrecisionTranslator::with_filter(f32::datum_type(), f16::datum_type(), move |node| {
            trunk.contains(&node.id)
        }),
        None => FloatPrecisionTranslator::new(f32::datum_type(), f16::datum_type()),
    };
    translator.transform_into(model)
}

/// Replaces the last two `width`-wide rows of `rows` by their mean, returned as the new last row.
fn average_last_two(rows: &mut Vec<f32>, width: usize) -> &mut [f32] {
    let n = rows.len();
    let (a, b) = rows[n - 2 * width..].split_at_mut(width);
    a.iter_mut().zip(b.iter()).for_each(|(x, y)| *x = 0.5 * (*x + y));
    rows.truncate(n - width);
    &mut rows[n - 2 * width..]
}

/// `image` (`[C, size, size]`) mirrored left to right into `out`.
fn mirror_chw(image: &[f32], size: usize, out: &mut [f32]) {
    for (src, dst) in image.chunks_exact(size).zip(out.chunks_exact_mut(size)) {
        dst.iter_mut().zip(src.iter().rev()).for_each(|(d, s)| *d = *s);
    }
}

/// Input `[N, channels, size, size]` f32, outputs `logits [N, NUM_CLASSES]` then
/// `embedding [N, dim]`; the batch dimension may be symbolic.
fn check_shapes(m: &TypedModel, size: usize, channels: usize, dim: usize, with_feature: bool) -> Result<(), String> {
    let n_in = m.input_outlets().map_err(|e| e.to_string())?.len();
    let n_out = m.output_outlets().map_err(|e| e.to_string())?.len();
    if n_in != 1 || n_out != 2 + with_feature as usize {
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
        (0, LOGITS, NUM_CLASSES, "classes"),
        (1, EMBEDDING, dim, "embedding_dim"),
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
