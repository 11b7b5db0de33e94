//! Checkpoints: one directory per saved step holding `weights.safetensors`,
//! `optimizer.safetensors` and `state.json`, written under a temporary name and renamed into
//! place; `latest.json` and `best.json` point to them and are replaced atomically. A kill at any
//! moment leaves the previous checkpoint loadable.

use super::config::TrainConfig;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use sitfer_contract::file_write::atomic_write_bytes;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

pub const CHECKPOINT_VERSION: u32 = 1;

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Tensor {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One epoch's (evaluation interval's) record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRecord {
    pub step: u64,
    pub epoch: u64,
    pub lr: f64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_accuracy: f64,
    pub val_macro_f1: f64,
    pub images_per_second: f64,
    pub elapsed_seconds: f64,
    /// Validation accuracy of the fused p̂ (p_sem, p_text, p_ins with the labeled buffer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_fused_accuracy: Option<f64>,
    /// Validation accuracy of the EMA teacher's p_sem (runs with a teacher, at the last step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_teacher_accuracy: Option<f64>,
    /// Semi-supervised statistics of the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl: Option<SslRecord>,
}

/// The loss terms and pseudo-label statistics over an evaluation interval. Precision and
/// accuracies are measured against the unlabeled split's hidden labels, which training never
/// reads; they are absent (null) when the split has no unlabeled faces (SIT-FER on every label
/// still logs L_s and L_t).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SslRecord {
    pub loss_s: f64,
    pub loss_t: Option<f64>,
    pub loss_u: f64,
    /// Instance consistency L_in (runs with `--lambda-in`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_in: Option<f64>,
    /// Share of unlabeled samples whose p̂ passed the threshold.
    pub mask_rate: Option<f64>,
    /// Accuracy of the pseudo-labels that passed.
    pub pseudo_precision: Option<f64>,
    /// Accuracy of argmax p̂ over all unlabeled samples, and of each source alone.
    pub fused_accuracy: Option<f64>,
    pub sem_accuracy: Option<f64>,
    pub text_accuracy: Option<f64>,
    pub ins_accuracy: Option<f64>,
    pub buffer_size: Option<usize>,
    pub mean_threshold: f64,
    /// The temperatures p̂'s sources were divided by (sem, text, ins) at the end of the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperatures: Option<[f64; 3]>,
    /// The latest calibration on the hold-out in the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<crate::method::CalibrationOutcome>,
}

/// Everything but the tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    pub version: u32,
    pub step: u64,
    pub optimizer_updates: u64,
    pub best_step: Option<u64>,
    pub best_val_accuracy: f64,
    pub elapsed_seconds: f64,
    pub config: TrainConfig,
    pub history: Vec<EpochRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pointer {
    dir: String,
    step: u64,
}

/// A loaded checkpoint.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub state: TrainState,
    pub weights: HashMap<String, Tensor>,
    pub optimizer: HashMap<String, Tensor>,
}

fn step_dir_name(step: u64) -> String {
    format!("step-{step:08}")
}

fn safetensors_bytes(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<Vec<u8>, CheckpointError> {
    let mut items: Vec<(&String, &Tensor)> = tensors.iter().collect();
    items.sort_by(|a, b| a.0.cmp(b.0));
    safetensors::tensor::serialize(items, None).map_err(|e| CheckpointError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Saves a checkpoint of `step` in `run_dir/checkpoints/`, points `latest.json` (and
/// `best.json` when `is_best`) at it, and prunes checkpoints that neither points to.
pub fn save(
    run_dir: &Path,
    state: &TrainState,
    weights: &HashMap<String, Tensor>,
    optimizer: &HashMap<String, Tensor>,
    is_best: bool,
) -> Result<PathBuf, CheckpointError> {
    let root = run_dir.join("checkpoints");
    std::fs::create_dir_all(&root).map_err(io(&root))?;
    let name = step_dir_name(state.step);
    let final_dir = root.join(&name);
    let tmp_dir = root.join(format!(".{name}.tmp"));
    // Half-written step directories of saves that were killed (one run directory has one
    // writer): a resumed run saves other steps, so nothing else would ever remove them.
    for e in std::fs::read_dir(&root).map_err(io(&root))?.flatten() {
        let n = e.file_name();
        let n = n.to_string_lossy();
        if n.starts_with(".step-") && n.ends_with(".tmp") {
            std::fs::remove_dir_all(e.path()).map_err(io(&e.path()))?;
        }
    }
    std::fs::create_dir_all(&tmp_dir).map_err(io(&tmp_dir))?;
    let filled = (|| {
        let w = tmp_dir.join("weights.safetensors");
        atomic_write_bytes(&w, &safetensors_bytes(&w, weights)?).map_err(io(&w))?;
        let o = tmp_dir.join("optimizer.safetensors");
        atomic_write_bytes(&o, &safetensors_bytes(&o, optimizer)?).map_err(io(&o))?;
        let s = tmp_dir.join("state.json");
        let json = serde_json::to_vec_pretty(state).expect("state serialises");
        atomic_write_bytes(&s, &json).map_err(io(&s))
    })();
    if let Err(e) = filled {
        // A failed save (disk full) leaves nothing behind: a half-filled step directory would
        // only hold the space that ran out.
        let _ = std::fs::remove_dir_all(&tmp_dir);
        return Err(e);
    }
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
    }
    std::fs::rename(&tmp_dir, &final_dir).map_err(io(&final_dir))?;
    let pointer = serde_json::to_vec(&Pointer {
        dir: name.clone(),
        step: state.step,
    })
    .expect("pointer serialises");
    // latest.json first: a kill between the two writes leaves best.json at an older checkpoint,
    // never one newer than the step a resumed run starts from (found by the SIGKILL tests).
    let p = run_dir.join("latest.json");
    atomic_write_bytes(&p, &pointer).map_err(io(&p))?;
    if is_best {
        let p = run_dir.join("best.json");
        atomic_write_bytes(&p, &pointer).map_err(io(&p))?;
    }
    prune(run_dir)?;
    Ok(final_dir)
}

fn read_pointer(path: &Path) -> Result<Option<Pointer>, CheckpointError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CheckpointError::Invalid {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CheckpointError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

fn prune(run_dir: &Path) -> Result<(), CheckpointError> {
    let keep: Vec<String> = ["latest.json", "best.json"]
        .iter()
        .filter_map(|f| read_pointer(&run_dir.join(f)).ok().flatten())
        .map(|p| p.dir)
        .collect();
    let root = run_dir.join("checkpoints");
    for e in std::fs::read_dir(&root).map_err(io(&root))? {
        let e = e.map_err(io(&root))?;
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("step-") && !keep.contains(&name) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    Ok(())
}

/// Which checkpoint of a run to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Latest,
    Best,
}

/// The run directory of a checkpoint directory (`run/checkpoints/step-N`).
pub fn run_dir_of(ckpt_dir: &Path) -> PathBuf {
    match ckpt_dir.parent() {
        Some(p) if p.file_name().is_some_and(|n| n == "checkpoints") => {
            p.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
        }
        _ => ckpt_dir.to_path_buf(),
    }
}

/// Resolves a path to a checkpoint directory: a step directory itself, or a run directory
/// (then `best.json` / `latest.json` choose).
pub fn resolve(path: &Path, which: Which) -> Result<PathBuf, CheckpointError> {
    if path.join("state.json").is_file() {
        return Ok(path.to_path_buf());
    }
    let pointer_file = path.join(match which {
        Which::Latest => "latest.json",
        Which::Best => "best.json",
    });
    let fallback = path.join("latest.json");
    let pointer = match read_pointer(&pointer_file)? {
        Some(p) => p,
        None => read_pointer(&fallback)?.ok_or_else(|| CheckpointError::Invalid {
            path: path.to_path_buf(),
            message: "not a checkpoint (no state.json) nor a run directory (no latest.json)".into(),
        })?,
    };
    Ok(path.join("checkpoints").join(pointer.dir))
}

/// Reads only a checkpoint's `state.json` (step, settings): enough to refuse a resume before
/// any costly work.
pub fn load_state(dir: &Path) -> Result<TrainState, CheckpointError> {
    let s = dir.join("state.json");
    let bytes = std::fs::read(&s).map_err(io(&s))?;
    let state: TrainState = serde_json::from_slice(&bytes).map_err(|e| CheckpointError::Invalid {
        path: s.clone(),
        message: format!("line {} column {}: {e}", e.line(), e.column()),
    })?;
    if state.version != CHECKPOINT_VERSION {
        return Err(CheckpointError::Invalid {
            path: s,
            message: format!(
                "field `version`: {} is not supported (expected {CHECKPOINT_VERSION})",
                state.version
            ),
        });
    }
    Ok(state)
}

/// Loads a checkpoint directory.
pub fn load(dir: &Path, device: &Device) -> Result<Checkpoint, CheckpointError> {
    let state = load_state(dir)?;
    let load_st = |name: &str| {
        let p = dir.join(name);
        candle_core::safetensors::load(&p, device).map_err(|source| CheckpointError::Tensor { path: p, source })
    };
    Ok(Checkpoint {
        dir: dir.to_path_buf(),
        state,
        weights: load_st("weights.safetensors")?,
        optimizer: load_st("optimizer.safetensors")?,
    })
}
