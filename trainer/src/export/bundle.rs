//! Builds a bundle: the fp32 (and optionally int8) ONNX of a folded network, the text
//! prototypes of the run, and a seed instance buffer of K embeddings per class computed by the
//! exported model itself, so the buffer lives in exactly the space the runtime computes.

use super::ExportError;
use super::fold::{FoldedNet, fold};
use super::onnx::fp32_onnx;
use super::quantize::{CalibMethod, int8_onnx};
use crate::data::augment::{Normalization, to_chw};
use crate::data::split::{SplitManifest, carve_validation, split_from_manifest};
use crate::data::{ReadOptions, read_dataset};
use crate::train::checkpoint::{self, Which};
use crate::train::prepare::labeled_store;
use candle_core::Device;
use serde::Deserialize;
use sitfer_contract::bundle::{
    Bundle, BundleContents, BundleSettings, Fusion, FusionWeights, InputSpec, Manifest, Precision, SeedBuffer,
    TextPrototypes, write_bundle,
};
use sitfer_contract::fusion::{Aggregate, FuseMode};
use sitfer_contract::image_files::image_files;
use sitfer_contract::infer::Model;
use sitfer_contract::{ALL_EXPRESSIONS, NUM_CLASSES};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Normalised CHW images with their class, for the seed buffer.
pub struct SeedImages {
    pub images: Vec<Vec<f32>>,
    pub classes: Vec<u8>,
}

/// Everything a bundle is made of, once the data is decoded.
pub struct BundleInputs<'a> {
    pub net: &'a FoldedNet,
    pub norm: Normalization,
    pub prototypes: Option<TextPrototypes>,
    pub seed: &'a SeedImages,
    /// Calibration images for the int8 model; `None`: fp32 only.
    pub calib: Option<(&'a [Vec<f32>], CalibMethod)>,
    pub fusion: Fusion,
    pub provenance: BTreeMap<String, String>,
}

/// What was written.
#[derive(Debug)]
pub struct BundleSummary {
    pub manifest: Manifest,
    pub fp32_bytes: usize,
    pub int8_bytes: Option<usize>,
    pub qlinear_convs: usize,
}

/// Runs `model` over `images` in batches of `batch`; returns the embeddings, row-major.
pub fn embed_all(model: &Model, images: &[Vec<f32>], batch: usize) -> Result<Vec<f32>, ExportError> {
    let mut out = Vec::with_capacity(images.len() * model.embedding_dim());
    for chunk in images.chunks(batch.max(1)) {
        let flat: Vec<f32> = chunk.concat();
        out.extend(model.run(&flat, chunk.len())?.embedding);
    }
    Ok(out)
}

fn manifest_stub(net: &FoldedNet, norm: &Normalization) -> Manifest {
    Manifest {
        format_version: sitfer_contract::bundle::manifest::FORMAT_VERSION,
        classes: ALL_EXPRESSIONS.iter().map(|e| e.name().to_string()).collect(),
        input: InputSpec {
            size: net.input_size as u32,
            channels: 3,
            mean: norm.mean,
            std: norm.std,
        },
        embedding_dim: net.embedding_dim(),
        fusion: default_fusion(true),
        models: sitfer_contract::bundle::Models { fp32: None, int8: None },
        prototypes: None,
        buffer: sitfer_contract::bundle::FileEntry {
            path: String::new(),
            bytes: 0,
            sha256: String::new(),
        },
        anchors: None,
        provenance: BTreeMap::new(),
    }
}

/// Writes the bundle at `out` and verifies it by opening it with the contract's reader and
/// loading every model.
pub fn write_model_bundle(out: &Path, inputs: BundleInputs) -> Result<BundleSummary, ExportError> {
    let net = inputs.net;
    let dim = net.embedding_dim();
    if let Some(p) = &inputs.prototypes
        && p.dim != dim
    {
        return Err(ExportError::Config(format!(
            "text prototypes have dimension {}, the model's embedding {dim} (projection head missing or of another size?)",
            p.dim
        )));
    }
    let fp32 = fp32_onnx(net);
    let stub = manifest_stub(net, &inputs.norm);
    let model = Model::from_onnx(&fp32, Path::new("<fp32 export>"), "models.fp32", &stub)?;
    let embeddings = embed_all(&model, &inputs.seed.images, 32)?;
    let buffer = SeedBuffer {
        dim,
        embeddings,
        labels: inputs.seed.classes.clone(),
    };
    let (int8, qlinear_convs) = match inputs.calib {
        Some((images, method)) => {
            let (bytes, n) = int8_onnx(net, images, method)?;
            (Some(bytes), n)
        }
        None => (None, 0),
    };
    let mut fusion = inputs.fusion;
    if inputs.prototypes.is_none() {
        fusion.weights.text = 0.0;
    }
    let settings = BundleSettings {
        input: stub.input.clone(),
        embedding_dim: dim,
        fusion,
        provenance: inputs.provenance,
    };
    let manifest = write_bundle(
        out,
        &settings,
        BundleContents {
            model_fp32: Some(&fp32),
            model_int8: int8.as_deref(),
            prototypes: inputs.prototypes.as_ref(),
            buffer: &buffer,
        },
    )?;
    let bundle = Bundle::open(out)?;
    Model::load(&bundle, Precision::Fp32)?;
    if int8.is_some() {
        Model::load(&bundle, Precision::Int8)?;
    }
    Ok(BundleSummary {
        manifest,
        fp32_bytes: fp32.len(),
        int8_bytes: int8.as_ref().map(Vec::len),
        qlinear_convs,
    })
}

/// Fusion defaults until the SIT-FER configuration carries its own: equal weights, the
/// temperatures of the SIT-FER reference code, FixMatch's confidence threshold.
pub fn default_fusion(with_text: bool) -> Fusion {
    let third = 1.0 / 3.0;
    Fusion {
        tau_sem: 1.0,
        tau_t: 0.1,
        tau_i: 0.1,
        weights: FusionWeights {
            sem: if with_text { third } else { 0.5 },
            text: if with_text { third } else { 0.0 },
            ins: if with_text { third } else { 0.5 },
        },
        threshold: 0.95,
        mode: FuseMode::Probabilities,
        aggregate: Aggregate::Max,
    }
}

/// The run's own fusion settings when it was semi-supervised (mode and aggregate included, so
/// the device fuses as the run did), else the defaults.
pub fn fusion_of(cfg: &crate::train::config::TrainConfig, with_text: bool) -> Fusion {
    match &cfg.ssl {
        Some(s) => Fusion {
            tau_sem: 1.0,
            tau_t: s.tau_t as f32,
            tau_i: s.tau_i as f32,
            weights: FusionWeights {
                sem: s.weights.sem as f32,
                text: s.weights.text as f32,
                ins: s.weights.ins as f32,
            },
            threshold: s.threshold as f32,
            mode: s.fuse,
            aggregate: s.aggregate,
        },
        None => default_fusion(with_text),
    }
}

/// `<run_dir>/prototypes.json` as written by the training code.
#[derive(Debug, Deserialize)]
struct PrototypesJson {
    version: u32,
    classes: Vec<String>,
    dim: usize,
    prototypes: Vec<Vec<f32>>,
}

/// Reads a run's prototypes; `Ok(None)` when the run has none.
pub fn read_prototypes(run_dir: &Path) -> Result<Option<TextPrototypes>, ExportError> {
    let path = run_dir.join("prototypes.json");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ExportError::File {
                path,
                message: e.to_string(),
            });
        }
    };
    let file_err = |message: String| ExportError::File {
        path: path.clone(),
        message,
    };
    let p: PrototypesJson = serde_json::from_slice(&bytes).map_err(|e| file_err(e.to_string()))?;
    if p.version != 1 {
        return Err(file_err(format!(
            "field `version`: {} is not supported (expected 1)",
            p.version
        )));
    }
    let canonical: Vec<&str> = ALL_EXPRESSIONS.iter().map(|e| e.name()).collect();
    if p.classes != canonical {
        return Err(file_err(format!(
            "field `classes`: {:?} is not the canonical order",
            p.classes
        )));
    }
    let t = TextPrototypes::from_rows(&p.prototypes).map_err(|m| file_err(format!("field `prototypes`: {m}")))?;
    if t.dim != p.dim {
        return Err(file_err(format!("field `dim`: {} but the rows have {}", p.dim, t.dim)));
    }
    Ok(Some(t))
}

/// The file in a run directory holding the command line that started the run.
pub const COMMAND_FILE: &str = "command.txt";

/// `n` items evenly spaced over `all`: the calibration faces. A split lists its faces class by
/// class, so the first `n` would all be one class (FER2013's first 300 are all `angry`).
pub fn spread<T: Clone>(all: &[T], n: usize) -> Vec<T> {
    let stride = (all.len() / n.max(1)).max(1);
    all.iter().step_by(stride).take(n).cloned().collect()
}

/// The command a run directory recorded (`command.txt`), if any.
fn recorded_command(run_dir: &Path) -> Result<Option<String>, ExportError> {
    let path = run_dir.join(COMMAND_FILE);
    match std::fs::read_to_string(&path) {
        Ok(c) => Ok(Some(c.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ExportError::File {
            path,
            message: e.to_string(),
        }),
    }
}

/// The weights a run started from and, when they are another run's checkpoint, that run's
/// command, following its own `pretrained` back: nearest first. Stops at weights that are not a
/// checkpoint (ImageNet's), and after 32 links (a chain that loops).
fn pretrained_chain(first: Option<&Path>) -> Result<Vec<(PathBuf, Option<String>)>, ExportError> {
    let mut chain = Vec::new();
    let mut next = first.map(Path::to_path_buf);
    while let Some(weights) = next.take() {
        if chain.len() == 32 {
            break;
        }
        let step_dir = weights.parent().unwrap_or(Path::new("."));
        let mut command = None;
        if step_dir.join("state.json").is_file() {
            command = recorded_command(&checkpoint::run_dir_of(step_dir))?;
            next = checkpoint::load_state(step_dir)?.config.pretrained;
        }
        chain.push((weights, command));
    }
    Ok(chain)
}

/// Options of `sitfer-train export`.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub checkpoint: PathBuf,
    pub out: PathBuf,
    /// Image directory for int8 calibration; `None` with `int8`: the labeled split.
    pub calib: Option<PathBuf>,
    pub int8: bool,
    pub calib_images: usize,
    pub calib_method: CalibMethod,
    /// Seed buffer entries per class.
    pub per_class: usize,
    /// Dataset root overriding the checkpoint's.
    pub data: Option<PathBuf>,
}

fn chw(img: &image::RgbImage, norm: &Normalization) -> Vec<f32> {
    let mut v = vec![0f32; 3 * (img.width() * img.height()) as usize];
    to_chw(img, norm, &mut v);
    v
}

/// Image files under `dir` (recursively), sorted, decoded at `size`.
fn calib_folder(dir: &Path, size: u32, limit: usize, norm: &Normalization) -> Result<Vec<Vec<f32>>, ExportError> {
    let files = image_files(dir, true).map_err(|e| ExportError::File {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    for p in files {
        if out.len() >= limit {
            break;
        }
        match image::open(&p) {
            Ok(img) => {
                let img = image::imageops::resize(&img.to_rgb8(), size, size, image::imageops::FilterType::Triangle);
                out.push(chw(&img, norm));
            }
            Err(e) => log::warn!("{}: skipped for calibration: {e}", p.display()),
        }
    }
    if out.is_empty() {
        return Err(ExportError::File {
            path: dir.to_path_buf(),
            message: "no readable image for calibration".into(),
        });
    }
    Ok(out)
}

/// `sitfer-train export`: checkpoint → bundle.
pub fn export_checkpoint(opts: &ExportOptions) -> Result<BundleSummary, ExportError> {
    let dir = checkpoint::resolve(&opts.checkpoint, Which::Best)?;
    let ck = checkpoint::load(&dir, &Device::Cpu)?;
    let cfg = &ck.state.config;
    let net = fold(&cfg.model, &ck.weights)?;
    let run_dir = checkpoint::run_dir_of(&dir);
    let prototypes = read_prototypes(&run_dir)?;

    let root = opts.data.clone().unwrap_or_else(|| cfg.data.root.clone());
    let read_opts = ReadOptions {
        outside: cfg.data.outside,
        soft_labels: cfg.data.soft_labels,
    };
    let mut dataset = read_dataset(cfg.data.format, &root, &read_opts)?;
    carve_validation(&mut dataset, cfg.data.val_fraction, cfg.seed);
    let split_path = run_dir.join("split.json");
    let split = split_from_manifest(&dataset.train, &SplitManifest::load(&split_path)?, &split_path)?;
    // The first K of each class in split order: deterministic, and the split is already seeded.
    let mut counts = [0usize; NUM_CLASSES];
    let chosen: Vec<_> = split
        .labeled
        .iter()
        .filter(|s| {
            let c = s.target.class().index();
            counts[c] += 1;
            counts[c] <= opts.per_class
        })
        .cloned()
        .collect();
    let (store, _) = labeled_store(&chosen, cfg.model.input_size, "seed buffer");
    let targets = store.targets.as_ref().expect("labeled store has targets");
    let seed = SeedImages {
        images: store.images.iter().map(|img| chw(img, &cfg.norm)).collect(),
        classes: targets
            .iter()
            .map(|t| {
                t.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i as u8)
            })
            .collect(),
    };

    let calib = if opts.int8 {
        Some(match &opts.calib {
            Some(d) => calib_folder(d, cfg.model.input_size, opts.calib_images, &cfg.norm)?,
            None => {
                let take = spread(&split.labeled, opts.calib_images);
                let (s, _) = labeled_store(&take, cfg.model.input_size, "calibration");
                s.images.iter().map(|img| chw(img, &cfg.norm)).collect()
            }
        })
    } else {
        None
    };
    let mut provenance = BTreeMap::new();
    provenance.insert("checkpoint".into(), dir.display().to_string());
    provenance.insert("step".into(), ck.state.step.to_string());
    provenance.insert("arch".into(), cfg.model.arch.name().into());
    provenance.insert("method".into(), format!("{:?}", cfg.method).to_lowercase());
    if let Some(d) = &cfg.distill {
        provenance.insert("teacher".into(), d.teacher.display().to_string());
        provenance.insert("kd_weight".into(), d.kd_weight.to_string());
        if d.teacher_mirror {
            provenance.insert("teacher_mirror".into(), "true".into());
        }
        // The teacher's own command, so that the bundle says how to retrain both stages.
        if let Some(c) = recorded_command(&checkpoint::run_dir_of(&d.teacher))? {
            provenance.insert("teacher.command".into(), c);
        }
        for (i, t) in d.more_teachers.iter().enumerate() {
            provenance.insert(format!("teacher.{}", i + 2), t.display().to_string());
            if let Some(c) = recorded_command(&checkpoint::run_dir_of(t))? {
                provenance.insert(format!("teacher.{}.command", i + 2), c);
            }
        }
    }
    provenance.insert("data".into(), root.display().to_string());
    // The command that started the run, as `sitfer-train` recorded it, and those of the runs it
    // started from (`--pretrained` with another run's weights), so that the bundle says how to
    // retrain it from scratch.
    if let Some(c) = recorded_command(&run_dir)? {
        provenance.insert("command".into(), c);
    }
    for (i, (weights, command)) in pretrained_chain(cfg.pretrained.as_deref())?.into_iter().enumerate() {
        provenance.insert(format!("pretrained.{}.weights", i + 1), weights.display().to_string());
        if let Some(c) = command {
            provenance.insert(format!("pretrained.{}.command", i + 1), c);
        }
    }
    provenance.insert("best_val_accuracy".into(), format!("{:.4}", ck.state.best_val_accuracy));
    provenance.insert(
        "calibration".into(),
        match (&calib, &opts.calib) {
            (None, _) => "none".into(),
            (Some(c), Some(d)) => format!("{} images from {} ({:?})", c.len(), d.display(), opts.calib_method),
            (Some(c), None) => format!("{} labeled training images ({:?})", c.len(), opts.calib_method),
        },
    );
    provenance.insert("exporter".into(), format!("sitfer-train {}", env!("CARGO_PKG_VERSION")));
    let with_text = prototypes.is_some();
    write_model_bundle(
        &opts.out,
        BundleInputs {
            net: &net,
            norm: cfg.norm,
            prototypes,
            seed: &seed,
            calib: calib.as_deref().map(|c| (c, opts.calib_method)),
            fusion: fusion_of(cfg, with_text),
            provenance,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn calibration_faces_come_from_every_class() {
        // 7 classes of 100, listed class by class as a split manifest lists them.
        let faces: Vec<usize> = (0..700).map(|i| i / 100).collect();
        let picked = spread(&faces, 70);
        assert_eq!(picked.len(), 70);
        for c in 0..7 {
            assert_eq!(picked.iter().filter(|&&k| k == c).count(), 10, "class {c}");
        }
        assert_eq!(spread(&faces[..5], 300).len(), 5, "fewer faces than asked: all of them");
    }
}
