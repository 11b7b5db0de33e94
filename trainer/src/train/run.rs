//! The training loop shared by every method: data preparation, optimisation, periodic
//! evaluation on the validation split, checkpoints, metrics and plots.

use super::checkpoint::{self, CheckpointError, EpochRecord, TrainState, Which};
use super::config::{Method, TrainConfig};
use super::loss::soft_cross_entropy;
use super::optimizer::{Optimizer, Param};
use super::schedule::Schedule;
use crate::data::augment::ViewKind;
use crate::data::decode::decode_all;
use crate::data::loader::{BatchStream, ImageStore, StreamConfig};
use crate::data::split::{SemiSplit, SplitManifest, carve_validation, semi_supervised_split, split_from_manifest};
use crate::data::{DataError, LabeledSample, ReadOptions, read_dataset};
use crate::evaluate::{argmax, predict};
use crate::metrics::EvalReport;
use crate::model::{FerModel, build, pretrained};
use crate::plot;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use sitfer_runtime::atomic::atomic_write_bytes;
use sitfer_runtime::labels::NUM_CLASSES;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error(
        "loss became {loss} at step {step}: training stopped. Likely causes: learning rate too high ({lr}), or a corrupt batch. The last good checkpoint is kept in {run_dir}/checkpoints (resume with --resume after lowering --lr)."
    )]
    NonFinite {
        step: u64,
        loss: f32,
        lr: f64,
        run_dir: PathBuf,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

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
    let size = cfg.model.input_size;
    let (labeled, mut skipped) = labeled_store(&split.labeled, size, "labeled train");
    let (val, s2) = labeled_store(&dataset.val, size, "val");
    skipped.extend(s2);
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
        skipped,
    })
}

/// The model with its variables.
pub struct ModelVars {
    pub varmap: VarMap,
    pub model: Box<dyn FerModel>,
}

pub fn build_model(cfg: &TrainConfig, device: &Device) -> Result<ModelVars, TrainError> {
    let varmap = VarMap::new();
    let vb = crate::model::init::seeded_var_builder(&varmap, cfg.seed, DType::F32, device);
    let model = build(&cfg.model, vb)?;
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
    Ok(ModelVars { varmap, model })
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

/// Options that do not change what is trained.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub run_dir: PathBuf,
    pub resume: bool,
    /// Stop after this many steps in this invocation (the rest can be resumed).
    pub stop_after: Option<u64>,
}

/// What a finished (or stopped) run reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    pub step: u64,
    pub best_step: Option<u64>,
    pub best_val_accuracy: f64,
    pub elapsed_seconds: f64,
    pub history: Vec<EpochRecord>,
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

/// Trains according to `cfg`, writing everything under `opts.run_dir`.
pub fn train(cfg: &TrainConfig, opts: &RunOptions) -> Result<RunSummary, TrainError> {
    match cfg.method {
        Method::Supervised => {}
    }
    let run_dir = &opts.run_dir;
    std::fs::create_dir_all(run_dir).map_err(io_err(run_dir))?;
    let device = parse_device(&cfg.device)?;
    let data = prepare_data(cfg, run_dir)?;
    let ModelVars { varmap, model } = build_model(cfg, &device)?;
    let steps_per_epoch = (data.labeled.len() / cfg.batch_size).max(1) as u64;
    let total_steps = if cfg.steps > 0 {
        cfg.steps
    } else {
        ((cfg.epochs * steps_per_epoch as f64).round() as u64).max(1)
    };
    let eval_every = if cfg.eval_every > 0 {
        cfg.eval_every
    } else {
        steps_per_epoch
    };
    log::info!(
        "{total_steps} steps of batch {} ({steps_per_epoch} per labeled epoch), evaluation every {eval_every}",
        cfg.batch_size
    );
    let mut optimizer = Optimizer::new(cfg.optimizer, trainable(&varmap));
    let schedule = Schedule {
        base_lr: cfg.lr,
        warmup_steps: cfg.warmup_steps,
        total_steps,
        cosine: cfg.cosine,
        min_lr_ratio: 0.0,
    };
    let mut state = TrainState {
        version: checkpoint::CHECKPOINT_VERSION,
        step: 0,
        optimizer_updates: 0,
        best_step: None,
        best_val_accuracy: -1.0,
        elapsed_seconds: 0.0,
        config: cfg.clone(),
        history: Vec::new(),
    };
    if opts.resume && run_dir.join("latest.json").is_file() {
        let dir = checkpoint::resolve(run_dir, Which::Latest)?;
        let ck = checkpoint::load(&dir, &device)?;
        check_resumable(&ck.state.config, cfg)?;
        set_vars(&varmap, &ck.weights, &dir)?;
        optimizer.load_state(ck.optimizer, ck.state.optimizer_updates)?;
        state = ck.state;
        state.config = cfg.clone();
        log::info!("resumed from {} at step {}", dir.display(), state.step);
        // metrics.jsonl may hold lines past the checkpoint (a kill after logging): rewrite it.
        write_metrics(run_dir, &state.history)?;
    } else if opts.resume {
        log::info!(
            "--resume: no checkpoint in {} yet, starting from scratch",
            run_dir.display()
        );
    }
    let side = cfg.model.input_size as usize;
    let stream_cfg = StreamConfig {
        batch_size: cfg.batch_size,
        views: vec![ViewKind::Weak],
        shuffle: true,
        drop_last: data.labeled.len() >= cfg.batch_size,
        seed: cfg.seed,
        workers: cfg.workers,
        prefetch: 4,
        augment: cfg.augment,
        norm: cfg.norm,
    };
    let stop_at = opts
        .stop_after
        .map(|n| (state.step + n).min(total_steps))
        .unwrap_or(total_steps);
    let mut stream = BatchStream::new(data.labeled.clone(), stream_cfg, state.step, Some(total_steps));
    let bar = indicatif::ProgressBar::new(total_steps);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} steps  {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_position(state.step);
    let mut interval = Interval::default();
    let run_start = Instant::now();
    let elapsed_before = state.elapsed_seconds;
    while state.step < stop_at {
        let t0 = Instant::now();
        let batch = stream
            .next()
            .ok_or_else(|| TrainError::Config("batch stream ended early".into()))?;
        let b = batch.len();
        let x = Tensor::from_vec(batch.views[0].clone(), (b, 3, side, side), &device)?;
        let targets = batch.targets.as_ref().expect("labeled batches carry targets");
        let t = Tensor::from_vec(
            targets.iter().flatten().copied().collect::<Vec<f32>>(),
            (b, NUM_CLASSES),
            &device,
        )?;
        let out = model.forward_t(&x, true)?;
        let loss = soft_cross_entropy(&out.logits, &t)?;
        let loss_value = loss.to_scalar::<f32>()?;
        let lr = schedule.lr(state.step);
        if !loss_value.is_finite() {
            bar.abandon();
            return Err(TrainError::NonFinite {
                step: state.step,
                loss: loss_value,
                lr,
                run_dir: run_dir.clone(),
            });
        }
        let grads = loss.backward()?;
        optimizer.step(&grads, lr)?;
        state.step += 1;
        state.optimizer_updates = optimizer.t;
        let preds = out.logits.argmax(1)?.to_vec1::<u32>()?;
        interval.correct += preds
            .iter()
            .zip(targets)
            .filter(|(p, t)| **p as usize == argmax(&t[..]))
            .count();
        interval.seen += b;
        interval.loss_sum += loss_value as f64 * b as f64;
        interval.train_seconds += t0.elapsed().as_secs_f64();
        let ips = interval.seen as f64 / interval.train_seconds.max(1e-9);
        bar.set_position(state.step);
        bar.set_message(format!("loss {loss_value:.4}  lr {lr:.2e}  {ips:.0} img/s"));
        if state.step.is_multiple_of(eval_every) || state.step == total_steps {
            let preds = predict(model.as_ref(), &data.val, cfg.norm, cfg.batch_size, &device)?;
            let report = EvalReport::from_confusion(preds.confusion(&data.val));
            state.elapsed_seconds = elapsed_before + run_start.elapsed().as_secs_f64();
            let record = EpochRecord {
                step: state.step,
                epoch: state.step / eval_every,
                lr,
                train_loss: interval.loss_sum / interval.seen.max(1) as f64,
                train_accuracy: interval.correct as f64 / interval.seen.max(1) as f64,
                val_accuracy: report.accuracy,
                val_macro_f1: report.macro_f1,
                images_per_second: ips,
                elapsed_seconds: state.elapsed_seconds,
            };
            bar.suspend(|| {
                log::info!(
                    "step {} loss {:.4} train acc {:.2}% | val acc {:.2}% macro-F1 {:.2}% | {:.0} img/s",
                    record.step,
                    record.train_loss,
                    100.0 * record.train_accuracy,
                    100.0 * record.val_accuracy,
                    100.0 * record.val_macro_f1,
                    record.images_per_second
                )
            });
            state.history.push(record);
            interval = Interval::default();
            let is_best = report.accuracy > state.best_val_accuracy;
            if is_best {
                state.best_val_accuracy = report.accuracy;
                state.best_step = Some(state.step);
                write_report(run_dir, &report)?;
            }
            checkpoint::save(
                run_dir,
                &state,
                &named_tensors(&varmap),
                &optimizer.state_tensors(),
                is_best,
            )?;
            write_metrics(run_dir, &state.history)?;
            plot_history(run_dir, &state.history);
        }
    }
    bar.finish_and_clear();
    Ok(RunSummary {
        step: state.step,
        best_step: state.best_step,
        best_val_accuracy: state.best_val_accuracy,
        elapsed_seconds: elapsed_before + run_start.elapsed().as_secs_f64(),
        history: state.history,
    })
}

#[derive(Default)]
struct Interval {
    loss_sum: f64,
    correct: usize,
    seen: usize,
    train_seconds: f64,
}

fn write_metrics(run_dir: &Path, history: &[EpochRecord]) -> Result<(), TrainError> {
    let p = run_dir.join("metrics.jsonl");
    let text: String = history
        .iter()
        .map(|r| serde_json::to_string(r).expect("record serialises") + "\n")
        .collect();
    atomic_write_bytes(&p, text.as_bytes()).map_err(io_err(&p))
}

fn write_report(run_dir: &Path, report: &EvalReport) -> Result<(), TrainError> {
    let p = run_dir.join("best-val-report.json");
    atomic_write_bytes(&p, &serde_json::to_vec_pretty(report).expect("report serialises")).map_err(io_err(&p))?;
    let png = run_dir.join("best-val-confusion.png");
    if let Err(e) = plot::confusion_matrix(
        &png,
        &format!("validation, acc {:.2}%", 100.0 * report.accuracy),
        &report.confusion,
    ) {
        log::warn!("{}: {e}", png.display());
    }
    Ok(())
}

fn plot_history(run_dir: &Path, history: &[EpochRecord]) {
    let acc = [
        plot::Series {
            name: "train (augmented)",
            points: history
                .iter()
                .map(|r| (r.step as f64, 100.0 * r.train_accuracy))
                .collect(),
        },
        plot::Series {
            name: "validation",
            points: history
                .iter()
                .map(|r| (r.step as f64, 100.0 * r.val_accuracy))
                .collect(),
        },
    ];
    let loss = [plot::Series {
        name: "train loss",
        points: history.iter().map(|r| (r.step as f64, r.train_loss)).collect(),
    }];
    for (path, title, y, series) in [
        (run_dir.join("accuracy.png"), "Accuracy", "accuracy (%)", &acc[..]),
        (run_dir.join("loss.png"), "Training loss", "cross-entropy", &loss[..]),
    ] {
        if let Err(e) = plot::line_chart(&path, title, "step", y, series, None) {
            log::warn!("{}: {e}", path.display());
        }
    }
}
