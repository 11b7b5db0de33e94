//! `--resume`: the checkpoint's settings compared with the command's, and the model, optimizer
//! and method state (thresholds, instance memory) restored from it.

use super::checkpoint::{self, TrainState, Which};
use super::config::TrainConfig;
use super::error::TrainError;
use super::optimizer::Optimizer;
use super::prepare::set_vars;
use super::run::RunOptions;
use crate::method::SslState;
use crate::method::ema_teacher::EMA_PREFIX;
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use sitfer_contract::labels::NUM_CLASSES;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The checkpoint `--resume` continues from: the run's latest, once its settings are checked
/// against the command's. `None` without `--resume` or before the first checkpoint.
pub(super) fn checkpoint_to_resume(cfg: &TrainConfig, opts: &RunOptions) -> Result<Option<PathBuf>, TrainError> {
    if !(opts.resume && opts.run_dir.join("latest.json").is_file()) {
        return Ok(None);
    }
    let dir = checkpoint::resolve(&opts.run_dir, Which::Latest)?;
    check_resumable(&checkpoint::load_state(&dir)?.config, cfg)?;
    Ok(Some(dir))
}

/// Loads the checkpoint `dir` into the model's variables, the optimizer, the method's state and
/// the run state.
pub(super) fn restore(
    dir: &Path,
    device: &Device,
    varmap: &VarMap,
    optimizer: &mut Optimizer,
    ssl: &mut SslState,
    state: &mut TrainState,
) -> Result<(), TrainError> {
    let ck = checkpoint::load(dir, device)?;
    set_vars(varmap, &ck.weights, dir)?;
    let (ssl_state, optim_state): (HashMap<_, _>, HashMap<_, _>) = ck
        .optimizer
        .into_iter()
        .partition(|(k, _)| k.starts_with(SSL_STATE_PREFIX) || k.starts_with("memory.") || k.starts_with(EMA_PREFIX));
    optimizer.load_state(optim_state, ck.state.optimizer_updates)?;
    restore_ssl_state(ssl, &ssl_state)?;
    *state = ck.state;
    Ok(())
}

/// Fields that must match between a checkpoint and the current command for `--resume`.
fn check_resumable(saved: &TrainConfig, now: &TrainConfig) -> Result<(), TrainError> {
    let a = serde_json::to_value(saved).expect("config serialises");
    let mut b = serde_json::to_value(now).expect("config serialises");
    // The worker count and device do not change the result.
    for k in ["workers", "device"] {
        b[k] = a[k].clone();
    }
    if a != b {
        let diff: Vec<String> = a
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, v)| b.get(k.as_str()) != Some(v))
            .map(|(k, _)| k.clone())
            .collect();
        return Err(TrainError::Config(format!(
            "--resume: the checkpoint was trained with other settings (differs: {})",
            diff.join(", ")
        )));
    }
    Ok(())
}

/// Prefix of the method's state (thresholds) in the checkpoint's optimizer file; the instance
/// memory uses `memory.`, the EMA teacher `ema.`.
const SSL_STATE_PREFIX: &str = "ssl.";

pub(super) fn ssl_state_tensors(ssl: &SslState) -> Result<HashMap<String, Tensor>, TrainError> {
    let mut m = match &ssl.memory {
        Some(mem) => mem.to_tensors()?,
        None => HashMap::new(),
    };
    if let Some(t) = &ssl.teacher {
        m.extend(t.to_tensors()?);
    }
    let th: Vec<f64> = ssl.thresholds.per_class().to_vec();
    m.insert(
        format!("{SSL_STATE_PREFIX}thresholds"),
        Tensor::from_vec(th, NUM_CLASSES, &Device::Cpu)?,
    );
    m.insert(
        format!("{SSL_STATE_PREFIX}temperatures"),
        Tensor::from_vec(ssl.temperatures.to_array().to_vec(), 3, &Device::Cpu)?,
    );
    Ok(m)
}

fn restore_ssl_state(ssl: &mut SslState, t: &HashMap<String, Tensor>) -> Result<(), TrainError> {
    if let Some(th) = t.get(&format!("{SSL_STATE_PREFIX}thresholds")) {
        let v = th.to_vec1::<f64>()?;
        let mut a = [0f64; NUM_CLASSES];
        a.copy_from_slice(&v[..NUM_CLASSES]);
        ssl.thresholds.set_per_class(a);
    }
    if let Some(temps) = t.get(&format!("{SSL_STATE_PREFIX}temperatures")) {
        let v = temps.to_vec1::<f64>()?;
        ssl.temperatures = crate::method::Temperatures::from_array([v[0], v[1], v[2]]);
    }
    if let Some(mem) = &mut ssl.memory {
        mem.load_tensors(t)?;
    }
    if let Some(teacher) = &ssl.teacher {
        teacher.load_tensors(t)?;
    }
    Ok(())
}
