//! The training loop shared by every method: data preparation, optimisation, periodic
//! evaluation on the validation split, checkpoints, metrics and plots.

use super::checkpoint::{self, CheckpointError, EpochRecord, SslRecord, TrainState, Which};
use super::config::{Method, TrainConfig};
use super::optimizer::{Optimizer, Param};
use super::schedule::Schedule;
use crate::data::augment::ViewKind;
use crate::data::decode::decode_all;
use crate::data::loader::{BatchStream, ImageStore, StreamConfig};
use crate::data::split::{SemiSplit, SplitManifest, carve_validation, semi_supervised_split, split_from_manifest};
use crate::data::{DataError, LabeledSample, ReadOptions, read_dataset};
use crate::evaluate::{Predictions, forward_store, prob_rows};
use crate::metrics::EvalReport;
use crate::model::projection::ProjectionHead;
use crate::model::{FerModel, build, pretrained};
use crate::plot;
use crate::semi::step::{LabeledInput, UnlabeledInput, hard_labels};
use crate::semi::{InstanceMemory, SslState};
use crate::text::{EncoderSource, PrototypeSet};
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
    #[error(transparent)]
    Prototypes(#[from] crate::text::prototypes::PrototypeError),
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

/// Maps an I/O error on `path` to [`TrainError::Io`] naming the file.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
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
    let size = cfg.model.input_size;
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
    let run_dir = &opts.run_dir;
    std::fs::create_dir_all(run_dir).map_err(io_err(run_dir))?;
    let device = parse_device(&cfg.device)?;
    let resume_from = if opts.resume && run_dir.join("latest.json").is_file() {
        let dir = checkpoint::resolve(run_dir, Which::Latest)?;
        // Refused before the data is decoded and a teacher scores every face (minutes).
        check_resumable(&checkpoint::load_state(&dir)?.config, cfg)?;
        Some(dir)
    } else {
        None
    };
    let mut data = prepare_data(cfg, run_dir)?;
    if let Some(d) = &cfg.distill {
        let teacher = crate::distill::Teacher::load(&d.teacher, &device)?;
        let cache = run_dir.join(crate::distill::TEACHER_CACHE);
        data = crate::distill::relabel(data, d, &teacher, cfg.model.input_size, Some(&cache))?;
    }
    let prototypes = run_prototypes(cfg, run_dir)?;
    let ModelVars { varmap, model, proj } = build_model(cfg, &device, prototypes.as_ref().map(|p| p.dim))?;
    let labeled_labels = hard_labels(data.labeled.targets.as_ref().expect("labeled store has targets"));
    let mut ssl = SslState::new(
        cfg.ssl.clone().unwrap_or_else(crate::semi::SslConfig::fixmatch),
        prototypes.as_ref().map(|p| p.tensor(&device)).transpose()?,
        proj,
        None,
    );
    if let (Some(c), Some(p)) = (&cfg.ssl, &prototypes)
        && c.uses_memory()
    {
        ssl.memory = Some(InstanceMemory::new(p.dim, labeled_labels.clone(), c.queue_per_class));
    }
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
        "{} for {total_steps} steps of batch {}{} ({steps_per_epoch} per labeled epoch), evaluation every {eval_every}",
        cfg.method.name(),
        cfg.batch_size,
        match (&cfg.ssl, &data.unlabeled) {
            (Some(c), Some(_)) => format!(" + {} unlabeled", c.unlabeled_ratio * cfg.batch_size),
            _ => String::new(),
        }
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
    if let Some(dir) = resume_from {
        let ck = checkpoint::load(&dir, &device)?;
        set_vars(&varmap, &ck.weights, &dir)?;
        let (ssl_state, optim_state): (HashMap<_, _>, HashMap<_, _>) = ck
            .optimizer
            .into_iter()
            .partition(|(k, _)| k.starts_with(SSL_STATE_PREFIX) || k.starts_with("memory."));
        optimizer.load_state(optim_state, ck.state.optimizer_updates)?;
        restore_ssl_state(&mut ssl, &ssl_state)?;
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
    let mut stream = BatchStream::new(data.labeled.clone(), stream_cfg.clone(), state.step, Some(total_steps));
    // The unlabeled stream has its own seed so its order is independent of the labeled one.
    let mut unlabeled_stream = match (&cfg.ssl, &data.unlabeled) {
        (Some(c), Some((store, _))) => {
            let bu = c.unlabeled_ratio * cfg.batch_size;
            Some(BatchStream::new(
                store.clone(),
                StreamConfig {
                    batch_size: bu,
                    views: vec![ViewKind::Weak, ViewKind::Strong],
                    drop_last: store.len() >= bu,
                    seed: crate::data::loader::mix(cfg.seed ^ 0x55),
                    ..stream_cfg
                },
                state.step,
                Some(total_steps),
            ))
        }
        _ => None,
    };
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
        let labels = hard_labels(targets);
        let ubatch = match &mut unlabeled_stream {
            Some(s) => Some(
                s.next()
                    .ok_or_else(|| TrainError::Config("unlabeled batch stream ended early".into()))?,
            ),
            None => None,
        };
        let uviews = match &ubatch {
            Some(u) => {
                let n = u.len();
                Some((
                    Tensor::from_vec(u.views[0].clone(), (n, 3, side, side), &device)?,
                    Tensor::from_vec(u.views[1].clone(), (n, 3, side, side), &device)?,
                ))
            }
            None => None,
        };
        let out = ssl.step(
            model.as_ref(),
            state.step,
            LabeledInput {
                x: &x,
                targets: &t,
                labels: &labels,
                slots: &batch.samples,
            },
            uviews.as_ref().map(|(weak, strong)| UnlabeledInput { weak, strong }),
        )?;
        let loss_value = out.loss.to_scalar::<f32>()?;
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
        let grads = out.loss.backward()?;
        optimizer.step(&grads, lr)?;
        state.step += 1;
        state.optimizer_updates = optimizer.t;
        let preds = out.labeled_logits.argmax(1)?.to_vec1::<u32>()?;
        interval.correct += preds.iter().zip(&labels).filter(|(p, t)| **p as usize == **t).count();
        interval.seen += b;
        interval.loss_sum += loss_value as f64 * b as f64;
        interval.add_ssl(&out, ubatch.as_ref().map(|u| &u.samples[..]), &data);
        interval.train_seconds += t0.elapsed().as_secs_f64();
        let ips = interval.seen as f64 / interval.train_seconds.max(1e-9);
        bar.set_position(state.step);
        bar.set_message(format!("loss {loss_value:.4}  lr {lr:.2e}  {ips:.0} labeled img/s"));
        if state.step.is_multiple_of(eval_every) || state.step == total_steps {
            let (logits, embedding) = forward_store(model.as_ref(), &data.val, cfg.norm, cfg.batch_size, &device)?;
            let preds = Predictions {
                probs: prob_rows(&crate::semi::fusion::softmax(&logits)?)?,
            };
            let report = EvalReport::from_confusion(preds.confusion(&data.val));
            let val_fused_accuracy = if cfg.ssl.as_ref().is_some_and(|c| c.text) {
                let fused = Predictions {
                    probs: prob_rows(&ssl.fused_eval(&logits, &embedding)?)?,
                };
                Some(fused.confusion(&data.val).accuracy())
            } else {
                None
            };
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
                val_fused_accuracy,
                ssl: interval.ssl_record(&ssl),
            };
            bar.suspend(|| {
                log::info!(
                    "step {} loss {:.4} train acc {:.2}% | val acc {:.2}%{} macro-F1 {:.2}% | {:.0} img/s{}",
                    record.step,
                    record.train_loss,
                    100.0 * record.train_accuracy,
                    100.0 * record.val_accuracy,
                    record
                        .val_fused_accuracy
                        .map(|a| format!(" (fused {:.2}%)", 100.0 * a))
                        .unwrap_or_default(),
                    100.0 * record.val_macro_f1,
                    record.images_per_second,
                    record
                        .ssl
                        .as_ref()
                        .map(|r| match r.mask_rate {
                            Some(m) => format!(
                                " | mask {:.1}% precision {} L_u {:.3}",
                                100.0 * m,
                                r.pseudo_precision
                                    .map(|p| format!("{:.1}%", 100.0 * p))
                                    .unwrap_or_else(|| "-".into()),
                                r.loss_u
                            ),
                            None => format!(
                                " | L_s {:.3} L_t {}",
                                r.loss_s,
                                r.loss_t.map(|t| format!("{t:.3}")).unwrap_or_else(|| "-".into())
                            ),
                        })
                        .unwrap_or_default()
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
            let mut extra = optimizer.state_tensors();
            extra.extend(ssl_state_tensors(&ssl)?);
            checkpoint::save(run_dir, &state, &named_tensors(&varmap), &extra, is_best)?;
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

/// Prefix of the method's state (thresholds) in the checkpoint's optimizer file; the instance
/// memory uses `memory.`.
const SSL_STATE_PREFIX: &str = "ssl.";

fn ssl_state_tensors(ssl: &SslState) -> Result<HashMap<String, Tensor>, TrainError> {
    let mut m = match &ssl.memory {
        Some(mem) => mem.to_tensors()?,
        None => HashMap::new(),
    };
    let th: Vec<f64> = ssl.thresholds.per_class().to_vec();
    m.insert(
        format!("{SSL_STATE_PREFIX}thresholds"),
        Tensor::from_vec(th, NUM_CLASSES, &Device::Cpu)?,
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
    if let Some(mem) = &mut ssl.memory {
        mem.load_tensors(t)?;
    }
    Ok(())
}

#[derive(Default)]
struct Interval {
    loss_sum: f64,
    correct: usize,
    seen: usize,
    train_seconds: f64,
    steps: usize,
    loss_s: f64,
    loss_t: Option<f64>,
    loss_u: f64,
    unlabeled: usize,
    masked: usize,
    masked_correct: usize,
    fused_correct: usize,
    sem_correct: usize,
    text_correct: Option<usize>,
    ins_correct: Option<usize>,
    /// Unlabeled samples whose instance source was active.
    ins_seen: usize,
}

impl Interval {
    /// Accumulates a step's semi-supervised statistics; `samples` are the unlabeled batch's
    /// store indices, mapped to hidden labels for analysis only.
    fn add_ssl(&mut self, out: &crate::semi::StepOutput, samples: Option<&[usize]>, data: &PreparedData) {
        self.steps += 1;
        self.loss_s += out.l_s as f64;
        if let Some(t) = out.l_t {
            *self.loss_t.get_or_insert(0.0) += t as f64;
        }
        self.loss_u += out.l_u.unwrap_or(0.0) as f64;
        let (Some(p), Some(samples), Some((_, kept))) = (&out.unlabeled, samples, &data.unlabeled) else {
            return;
        };
        let hidden: Vec<Option<usize>> = samples
            .iter()
            .map(|&i| data.split.analysis.get(kept[i]).map(|e| e as usize))
            .collect();
        let hits = |pred: &[usize]| pred.iter().zip(&hidden).filter(|(p, h)| Some(**p) == **h).count();
        self.unlabeled += samples.len();
        self.fused_correct += hits(&p.class);
        self.sem_correct += hits(&p.sem);
        if let Some(t) = &p.text {
            *self.text_correct.get_or_insert(0) += hits(t);
        }
        if let Some(i) = &p.ins {
            *self.ins_correct.get_or_insert(0) += hits(i);
            self.ins_seen += samples.len();
        }
        for ((c, m), h) in p.class.iter().zip(&p.mask).zip(&hidden) {
            if *m {
                self.masked += 1;
                if Some(*c) == *h {
                    self.masked_correct += 1;
                }
            }
        }
    }

    fn ssl_record(&self, ssl: &SslState) -> Option<SslRecord> {
        if self.steps == 0 {
            return None;
        }
        let n = self.steps as f64;
        let u = self.unlabeled as f64;
        let share = |c: usize| (self.unlabeled > 0).then(|| c as f64 / u);
        let th = ssl.thresholds.per_class();
        Some(SslRecord {
            loss_s: self.loss_s / n,
            loss_t: self.loss_t.map(|t| t / n),
            loss_u: self.loss_u / n,
            mask_rate: share(self.masked),
            pseudo_precision: (self.masked > 0).then(|| self.masked_correct as f64 / self.masked as f64),
            fused_accuracy: share(self.fused_correct),
            sem_accuracy: share(self.sem_correct),
            text_accuracy: self.text_correct.map(|c| c as f64 / u),
            ins_accuracy: self.ins_correct.map(|c| c as f64 / self.ins_seen.max(1) as f64),
            buffer_size: ssl.memory.as_ref().map(|m| m.len()),
            mean_threshold: th.iter().sum::<f64>() / th.len() as f64,
        })
    }
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

fn plot_pseudo_labels(run_dir: &Path, history: &[EpochRecord]) {
    let with: Vec<(f64, &SslRecord)> = history
        .iter()
        .filter_map(|r| {
            r.ssl
                .as_ref()
                .filter(|s| s.mask_rate.is_some())
                .map(|s| (r.step as f64, s))
        })
        .collect();
    if with.is_empty() {
        return;
    }
    let series = |name, f: &dyn Fn(&SslRecord) -> Option<f64>| plot::Series {
        name,
        points: with.iter().filter_map(|(x, r)| f(r).map(|v| (*x, 100.0 * v))).collect(),
    };
    let all = [
        series("mask rate", &|r| r.mask_rate),
        series("precision of confident", &|r| r.pseudo_precision),
        series("accuracy of p-hat (all)", &|r| r.fused_accuracy),
        series("p_sem", &|r| r.sem_accuracy),
        series("p_text", &|r| r.text_accuracy),
        series("p_ins", &|r| r.ins_accuracy),
    ];
    let present: Vec<plot::Series> = all.into_iter().filter(|s| !s.points.is_empty()).collect();
    let path = run_dir.join("pseudo-labels.png");
    if let Err(e) = plot::line_chart(
        &path,
        "Pseudo-labels on the unlabeled split (hidden labels, analysis only)",
        "step",
        "%",
        &present,
        None,
    ) {
        log::warn!("{}: {e}", path.display());
    }
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
    let term = |name, f: fn(&SslRecord) -> Option<f64>| plot::Series {
        name,
        points: history
            .iter()
            .filter_map(|r| r.ssl.as_ref().and_then(f).map(|v| (r.step as f64, v)))
            .collect(),
    };
    let loss: Vec<plot::Series> = [
        plot::Series {
            name: "train loss",
            points: history.iter().map(|r| (r.step as f64, r.train_loss)).collect(),
        },
        term("L_s", |s| Some(s.loss_s)),
        term("L_t", |s| s.loss_t),
        term("L_u", |s| s.mask_rate.map(|_| s.loss_u)),
    ]
    .into_iter()
    .filter(|s| !s.points.is_empty())
    .collect();
    for (path, title, y, series) in [
        (run_dir.join("accuracy.png"), "Accuracy", "accuracy (%)", &acc[..]),
        (run_dir.join("loss.png"), "Training loss", "cross-entropy", &loss[..]),
    ] {
        if let Err(e) = plot::line_chart(&path, title, "step", y, series, None) {
            log::warn!("{}: {e}", path.display());
        }
    }
    plot_pseudo_labels(run_dir, history);
}
