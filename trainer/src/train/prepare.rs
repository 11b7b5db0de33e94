//! What a run needs before its first step: the device, the decoded data and split, the model
//! (with the projection head when the method uses text) and the text prototypes.

use super::config::{Method, TrainConfig};
use super::error::{TrainError, io_err};
use super::optimizer::Param;
use crate::data::decode::decode_all;
use crate::data::loader::ImageStore;
use crate::data::split::{
    SemiSplit, SplitManifest, carve_validation, hold_out, semi_supervised_split, split_from_manifest,
};
use crate::data::{LabeledSample, ReadOptions, read_dataset};
use crate::model::projection::ProjectionHead;
use crate::model::{FerModel, build, pretrained};
use crate::text::{EncoderSource, PrototypeSet};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use sitfer_contract::file_write::atomic_write_bytes;
use sitfer_contract::labels::NUM_CLASSES;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Parses `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(s: &str) -> Result<Device, TrainError> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::new_cuda(0)?),
        other => match other.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => Ok(Device::new_cuda(n)?),
            None => Err(TrainError::Config(format!(
                "--device `{other}`: expected cpu, cuda or cuda:N"
            ))),
        },
    }
}

/// Decoded labeled images as a store.
pub fn labeled_store(samples: &[LabeledSample], size: u32, what: &str) -> (ImageStore, Vec<(String, String)>) {
    let decoded = decode_all(samples.iter().map(|s| (s.id.as_str(), &s.image)), size);
    let targets: Vec<[f32; NUM_CLASSES]> = decoded.kept.iter().map(|&i| samples[i].target.distribution()).collect();
    if !decoded.failed.is_empty() {
        log::warn!(
            "{what}: {} images could not be decoded and are skipped (first: {} — {})",
            decoded.failed.len(),
            decoded.failed[0].0,
            decoded.failed[0].1
        );
    }
    (
        ImageStore {
            images: Arc::new(decoded.images),
            targets: Some(Arc::new(targets)),
        },
        decoded.failed,
    )
}

/// The data a run trains and selects on.
pub struct PreparedData {
    pub split: SemiSplit,
    pub labeled: ImageStore,
    pub val: ImageStore,
    /// The labeled calibration hold-out (`calibration_fraction` > 0): never trained on.
    pub calibration: Option<ImageStore>,
    /// Decoded unlabeled images (semi-supervised methods only) and, for each, its index in
    /// `split.unlabeled` (to look up the hidden label for analysis).
    pub unlabeled: Option<(ImageStore, Vec<usize>)>,
    pub skipped: Vec<(String, String)>,
}

/// Reads the dataset, draws (or reloads) the split and decodes the images.
pub fn prepare_data(cfg: &TrainConfig, run_dir: &Path) -> Result<PreparedData, TrainError> {
    let opts = ReadOptions {
        outside: cfg.data.outside,
        soft_labels: cfg.data.soft_labels,
    };
    let mut dataset = read_dataset(cfg.data.format, &cfg.data.root, &opts)?;
    carve_validation(&mut dataset, cfg.data.val_fraction, cfg.seed);
    log::info!("dataset {}: {}", cfg.data.root.display(), dataset.summary());
    if dataset.val.is_empty() {
        return Err(TrainError::Config(format!(
            "{}: no validation split (and --val-fraction is 0): model selection needs one",
            cfg.data.root.display()
        )));
    }
    let manifest_path = run_dir.join("split.json");
    let split = match (&cfg.data.split_manifest, manifest_path.is_file()) {
        (Some(p), _) => split_from_manifest(&dataset.train, &SplitManifest::load(p)?, p)?,
        (None, true) => split_from_manifest(&dataset.train, &SplitManifest::load(&manifest_path)?, &manifest_path)?,
        (None, false) => semi_supervised_split(&dataset.train, cfg.data.budget, cfg.seed),
    };
    split.manifest.save(&manifest_path).map_err(io_err(&manifest_path))?;
    log::info!(
        "split: {} labeled, {} unlabeled (manifest {})",
        split.labeled.len(),
        split.unlabeled.len(),
        manifest_path.display()
    );
    let mut split = split;
    let (train_labeled, held) = hold_out(
        std::mem::take(&mut split.labeled),
        cfg.data.calibration_fraction,
        cfg.seed,
    );
    split.labeled = train_labeled;
    let size = cfg.model.input_size;
    let calibration = if held.is_empty() {
        None
    } else {
        let p = run_dir.join("calibration.json");
        let ids: Vec<&str> = held.iter().map(|s| s.id.as_str()).collect();
        atomic_write_bytes(&p, &serde_json::to_vec_pretty(&ids).expect("ids serialise")).map_err(io_err(&p))?;
        log::info!(
            "calibration hold-out: {} labeled faces never trained on ({}), {} left to train on",
            held.len(),
            p.display(),
            split.labeled.len()
        );
        Some(labeled_store(&held, size, "calibration hold-out").0)
    };
    let (labeled, mut skipped) = labeled_store(&split.labeled, size, "labeled train");
    let (val, s2) = labeled_store(&dataset.val, size, "val");
    skipped.extend(s2);
    let unlabeled = if cfg.ssl.is_some() {
        let decoded = decode_all(split.unlabeled.iter().map(|s| (s.id.as_str(), &s.image)), size);
        if !decoded.failed.is_empty() {
            log::warn!(
                "unlabeled train: {} images could not be decoded and are skipped",
                decoded.failed.len()
            );
        }
        skipped.extend(decoded.failed);
        if decoded.images.is_empty() {
            // SIT-FER with every face labeled is still more than supervised training: L_t keeps
            // the projection head aligned to the text prototypes (what the runtime's p_text and
            // p_ins read). FixMatch would be plain supervised training, so it stays an error.
            if cfg.method != Method::Sitfer {
                return Err(TrainError::Config(format!(
                    "method {} needs unlabeled images, and the split has none (labels per class: {:?})",
                    cfg.method.name(),
                    cfg.data.budget
                )));
            }
            log::info!("no unlabeled images: L_u is idle, training L_s + λ1·L_t on the labeled split");
            None
        } else {
            Some((
                ImageStore {
                    images: Arc::new(decoded.images),
                    targets: None,
                },
                decoded.kept,
            ))
        }
    } else {
        None
    };
    if !skipped.is_empty() {
        let p = run_dir.join("skipped-images.txt");
        let text: String = skipped.iter().map(|(id, e)| format!("{id}\t{e}\n")).collect();
        atomic_write_bytes(&p, text.as_bytes()).map_err(io_err(&p))?;
    }
    if labeled.is_empty() {
        return Err(TrainError::Config("no labeled training image could be decoded".into()));
    }
    Ok(PreparedData {
        split,
        labeled,
        val,
        calibration,
        unlabeled,
        skipped,
    })
}

/// The model with its variables.
pub struct ModelVars {
    pub varmap: VarMap,
    pub model: Box<dyn FerModel>,
    /// The projection into the text space (methods that use text).
    pub proj: Option<ProjectionHead>,
}

/// Builds the model, and the projection head when `text_dim` is given.
pub fn build_model(cfg: &TrainConfig, device: &Device, text_dim: Option<usize>) -> Result<ModelVars, TrainError> {
    let varmap = VarMap::new();
    let vb = crate::model::init::seeded_var_builder(&varmap, cfg.seed, DType::F32, device);
    let model = build(&cfg.model, vb.clone())?;
    let proj = text_dim
        .map(|d| ProjectionHead::new(model.embedding_dim(), d, vb))
        .transpose()?;
    if let Some(p) = &cfg.pretrained {
        let r = pretrained::load_matching(&varmap, p, device)?;
        log::info!(
            "pretrained {}: {} tensors loaded, {} kept at init (shape differs: {:?}; missing: {})",
            p.display(),
            r.loaded,
            r.skipped_shape.len() + r.missing.len(),
            r.skipped_shape,
            r.missing.len()
        );
        if r.loaded == 0 {
            return Err(TrainError::Config(format!(
                "{}: no tensor matches this model's parameters",
                p.display()
            )));
        }
    }
    Ok(ModelVars { varmap, model, proj })
}

/// The run's text prototypes: resolved from the configured cache (rebuilt with the encoder when
/// stale) on a fresh run, from the run's own copy (`prototypes.json`) on resume.
pub fn run_prototypes(cfg: &TrainConfig, run_dir: &Path) -> Result<Option<PrototypeSet>, TrainError> {
    let Some(text) = &cfg.text else { return Ok(None) };
    let copy = run_dir.join("prototypes.json");
    if copy.is_file() {
        return Ok(Some(PrototypeSet::load(&copy)?));
    }
    let (set, rebuilt) = crate::text::resolve(
        &text.prototypes,
        &EncoderSource {
            dir: text.encoder_dir.clone(),
            kind: text.encoder_kind,
        },
        &crate::text::descriptions::default_descriptions(),
    )?;
    log::info!(
        "text prototypes: {} ({}, dim {}){}",
        text.prototypes.display(),
        set.encoder.name,
        set.dim,
        if rebuilt { ", rebuilt" } else { "" }
    );
    set.save(&copy).map_err(io_err(&copy))?;
    Ok(Some(set))
}

/// All variables by name (weights and batch-norm statistics).
pub fn named_tensors(varmap: &VarMap) -> HashMap<String, Tensor> {
    varmap
        .data()
        .lock()
        .expect("varmap lock")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect()
}

/// Sets every variable of `varmap` from `tensors`; all must be present with the same shape.
pub fn set_vars(varmap: &VarMap, tensors: &HashMap<String, Tensor>, source: &Path) -> Result<(), TrainError> {
    let data = varmap.data().lock().expect("varmap lock");
    for (name, var) in data.iter() {
        let t = tensors
            .get(name)
            .ok_or_else(|| TrainError::Config(format!("{}: tensor `{name}` missing", source.display())))?;
        if t.shape() != var.shape() {
            return Err(TrainError::Config(format!(
                "{}: tensor `{name}` has shape {:?}, the model expects {:?}",
                source.display(),
                t.shape(),
                var.shape()
            )));
        }
        var.set(t)?;
    }
    Ok(())
}

/// Trainable parameters (everything but batch-norm running statistics).
pub fn trainable(varmap: &VarMap) -> Vec<Param> {
    varmap
        .data()
        .lock()
        .expect("varmap lock")
        .iter()
        .filter(|(k, _)| !k.ends_with("running_mean") && !k.ends_with("running_var"))
        .map(|(k, v)| Param {
            name: k.clone(),
            var: v.clone(),
            decay: v.rank() >= 2,
        })
        .collect()
}
