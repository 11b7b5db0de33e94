//! The training loop shared by every method: the run is prepared (`prepare.rs`), resumed when
//! asked (`resume.rs`), then steps through the method's `SslState::step`, validating every
//! `eval_every` steps, keeping checkpoints, metrics and plots (`report.rs`).

use super::checkpoint::{self, EpochRecord, TrainState};
use super::config::TrainConfig;
use super::error::{TrainError, io_err};
use super::optimizer::Optimizer;
use super::prepare::{ModelVars, build_model, run_prototypes};
use super::report::{Interval, log_record, plot_history, write_metrics, write_report};
use super::resume::{checkpoint_to_resume, restore, ssl_state_tensors};
use super::schedule::Schedule;
use crate::data::augment::ViewKind;
use crate::data::loader::{Batch, BatchStream, StreamConfig};
use crate::evaluate::{Predictions, forward_store, prob_rows};
use crate::method::step::{LabeledInput, UnlabeledInput, hard_labels};
use crate::method::{EmaTeacher, InstanceMemory, SslConfig, SslState};
use crate::metrics::EvalReport;
use crate::model::FerModel;
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use indicatif::ProgressBar;
use sitfer_contract::labels::NUM_CLASSES;
use std::path::{Path, PathBuf};
use std::time::Instant;

// The paths the examples and `bench.rs` import these by.
pub use super::prepare::{PreparedData, labeled_store, named_tensors, parse_device, prepare_data, set_vars, trainable};

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

/// Trains according to `cfg`, writing everything under `opts.run_dir`. A distillation run
/// (`cfg.distill`) goes through `crate::distill::train`, which supplies the teacher's targets.
pub fn train(cfg: &TrainConfig, opts: &RunOptions) -> Result<RunSummary, TrainError> {
    if cfg.distill.is_some() {
        return Err(TrainError::Config(
            "a distillation run trains through `distill::train`, which scores the faces with the teacher".into(),
        ));
    }
    train_with_targets(cfg, opts, |data, _, _| Ok(data))
}

/// [`train`] with `retarget` applied to the prepared data before the first step (and again on
/// resume): the hook through which a method that brings its own targets (distillation) uses
/// this loop without the loop knowing it.
pub fn train_with_targets(
    cfg: &TrainConfig,
    opts: &RunOptions,
    retarget: impl FnOnce(PreparedData, &Device, &Path) -> Result<PreparedData, TrainError>,
) -> Result<RunSummary, TrainError> {
    let run_dir = &opts.run_dir;
    std::fs::create_dir_all(run_dir).map_err(io_err(run_dir))?;
    let device = parse_device(&cfg.device)?;
    // Refused before the data is decoded and a teacher scores every face (minutes).
    let resume_from = checkpoint_to_resume(cfg, opts)?;
    let data = retarget(prepare_data(cfg, run_dir)?, &device, run_dir)?;
    if cfg.ssl.as_ref().is_some_and(|c| c.calibration.is_some()) && data.calibration.is_none() {
        return Err(TrainError::Config(
            "calibrating the fusion needs a labeled hold-out: --calibration-fraction > 0".into(),
        ));
    }
    let prototypes = run_prototypes(cfg, run_dir)?;
    let ModelVars { varmap, model, proj } = build_model(cfg, &device, prototypes.as_ref().map(|p| p.dim))?;
    let mut ssl = SslState::new(
        cfg.ssl.clone().unwrap_or_else(SslConfig::fixmatch),
        prototypes.as_ref().map(|p| p.tensor(&device)).transpose()?,
        proj,
        None,
    );
    if let (Some(c), Some(p)) = (&cfg.ssl, &prototypes)
        && c.uses_memory()
    {
        let labeled_labels = hard_labels(data.labeled.targets.as_ref().expect("labeled store has targets"));
        ssl.memory = Some(InstanceMemory::new(p.dim, labeled_labels, c.queue_per_class));
    }
    if let Some(decay) = cfg.ssl.as_ref().and_then(|c| c.ema_teacher) {
        // A second build of the same model (same seed, same pretrained file), then a copy of
        // the first's variables: the teacher starts where the trained model starts.
        let t = build_model(cfg, &device, prototypes.as_ref().map(|p| p.dim))?;
        ssl.teacher = Some(EmaTeacher::new(t.model, t.proj, &t.varmap, &varmap, decay)?);
        log::info!("pseudo-labels from an EMA teacher (decay {decay})");
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
    let mut run = Run {
        cfg,
        run_dir,
        optimizer: Optimizer::new(cfg.optimizer, trainable(&varmap)),
        schedule: Schedule {
            base_lr: cfg.lr,
            warmup_steps: cfg.warmup_steps,
            total_steps,
            cosine: cfg.cosine,
            min_lr_ratio: 0.0,
        },
        state: TrainState {
            version: checkpoint::CHECKPOINT_VERSION,
            step: 0,
            optimizer_updates: 0,
            best_step: None,
            best_val_accuracy: -1.0,
            elapsed_seconds: 0.0,
            config: cfg.clone(),
            history: Vec::new(),
        },
        device,
        data,
        varmap,
        model,
        ssl,
        interval: Interval::default(),
        eval_every,
        total_steps,
        started: Instant::now(),
        elapsed_before: 0.0,
    };
    if let Some(dir) = resume_from {
        restore(
            &dir,
            &run.device,
            &run.varmap,
            &mut run.optimizer,
            &mut run.ssl,
            &mut run.state,
        )?;
        run.state.config = cfg.clone();
        log::info!("resumed from {} at step {}", dir.display(), run.state.step);
        // metrics.jsonl may hold lines past the checkpoint (a kill after logging): rewrite it.
        write_metrics(run_dir, &run.state.history)?;
    } else if opts.resume {
        log::info!(
            "--resume: no checkpoint in {} yet, starting from scratch",
            run_dir.display()
        );
    }
    run.elapsed_before = run.state.elapsed_seconds;
    let stop_at = opts
        .stop_after
        .map(|n| (run.state.step + n).min(total_steps))
        .unwrap_or(total_steps);
    run.train_until(stop_at)
}

/// Everything a running training holds between steps.
struct Run<'a> {
    cfg: &'a TrainConfig,
    run_dir: &'a PathBuf,
    device: Device,
    data: PreparedData,
    varmap: VarMap,
    model: Box<dyn FerModel>,
    ssl: SslState,
    optimizer: Optimizer,
    schedule: Schedule,
    state: TrainState,
    interval: Interval,
    eval_every: u64,
    total_steps: u64,
    /// When this invocation started, and the time earlier invocations of the run took.
    started: Instant,
    elapsed_before: f64,
}

impl Run<'_> {
    fn train_until(mut self, stop_at: u64) -> Result<RunSummary, TrainError> {
        let cfg = self.cfg;
        let stream_cfg = StreamConfig {
            batch_size: cfg.batch_size,
            views: vec![ViewKind::Weak],
            shuffle: true,
            drop_last: self.data.labeled.len() >= cfg.batch_size,
            seed: cfg.seed,
            workers: cfg.workers,
            prefetch: 4,
            augment: cfg.augment,
            norm: cfg.norm,
        };
        let (step, total) = (self.state.step, Some(self.total_steps));
        let mut stream = BatchStream::new(self.data.labeled.clone(), stream_cfg.clone(), step, total);
        // The unlabeled stream has its own seed so its order is independent of the labeled one.
        let mut unlabeled_stream = match (&cfg.ssl, &self.data.unlabeled) {
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
                    step,
                    total,
                ))
            }
            _ => None,
        };
        let bar = ProgressBar::new(self.total_steps);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} steps  {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_position(self.state.step);
        self.started = Instant::now();
        if self.state.step == 0 {
            bar.suspend(|| -> Result<(), TrainError> {
                self.prefill_memory()?;
                self.calibrate()
            })?;
        }
        while self.state.step < stop_at {
            let batch = stream
                .next()
                .ok_or_else(|| TrainError::Config("batch stream ended early".into()))?;
            let ubatch = match &mut unlabeled_stream {
                Some(s) => Some(
                    s.next()
                        .ok_or_else(|| TrainError::Config("unlabeled batch stream ended early".into()))?,
                ),
                None => None,
            };
            let (loss, lr) = match self.step(&batch, ubatch.as_ref()) {
                Ok(v) => v,
                Err(e) => {
                    bar.abandon();
                    return Err(e);
                }
            };
            let ips = self.interval.seen as f64 / self.interval.train_seconds.max(1e-9);
            bar.set_position(self.state.step);
            bar.set_message(format!("loss {loss:.4}  lr {lr:.2e}  {ips:.0} labeled img/s"));
            if let Some(c) = self.ssl.cfg.calibration
                && self.state.step.is_multiple_of(c.every.max(1))
            {
                bar.suspend(|| self.calibrate())?;
            }
            if self.state.step.is_multiple_of(self.eval_every) || self.state.step == self.total_steps {
                self.validate(lr, ips, &bar)?;
            }
        }
        bar.finish_and_clear();
        Ok(RunSummary {
            step: self.state.step,
            best_step: self.state.best_step,
            best_val_accuracy: self.state.best_val_accuracy,
            elapsed_seconds: self.elapsed(),
            history: self.state.history,
        })
    }

    /// Fills the buffer's labeled slots with every labeled face's embedding before the first
    /// step, so p_ins reads a full buffer from the start instead of the few faces the first
    /// batches happened to draw.
    fn prefill_memory(&mut self) -> Result<(), TrainError> {
        if self.ssl.proj.is_none() || self.ssl.memory.is_none() {
            return Ok(());
        }
        let n = self.data.labeled.len();
        let (_, embedding) = self.forward(self.ssl.labeler(self.model.as_ref()), &self.data.labeled)?;
        let proj = self.ssl.labeler_head().map(|(p, _)| p).expect("checked above");
        let z = proj.forward(&embedding)?.flatten_all()?.to_vec1::<f32>()?;
        let slots: Vec<usize> = (0..n).collect();
        self.ssl
            .memory
            .as_mut()
            .expect("checked above")
            .update_labeled(&slots, &z);
        log::info!("instance buffer: {n} labeled embeddings before the first step");
        Ok(())
    }

    /// A model's logits and embeddings over a store (eval mode, no augmentation).
    fn forward(
        &self,
        model: &dyn FerModel,
        store: &crate::data::loader::ImageStore,
    ) -> Result<(Tensor, Tensor), TrainError> {
        Ok(forward_store(
            model,
            store,
            self.cfg.norm,
            self.cfg.batch_size,
            &self.device,
        )?)
    }

    /// Refits the fusion's temperatures and threshold on the calibration hold-out (when the
    /// method calibrates).
    fn calibrate(&mut self) -> Result<(), TrainError> {
        let (Some(c), Some(store)) = (self.ssl.cfg.calibration, &self.data.calibration) else {
            return Ok(());
        };
        let (logits, embedding) = self.forward(self.ssl.labeler(self.model.as_ref()), store)?;
        let labels = hard_labels(store.targets.as_ref().expect("the hold-out is labeled"));
        let scores = self.ssl.holdout_scores(&logits, &embedding)?;
        let out = self.ssl.calibrate(&scores, &labels, &c);
        let pct = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{:.1}", 100.0 * v));
        log::info!(
            "step {}: calibrated on {} hold-out faces: τ sem {:.3} text {:.4} ins {:.4}; threshold {:.3}{} admits {:.1} % at {} % precision; accuracy p̂ {:.1} / sem {:.1} / text {} / ins {}",
            self.state.step,
            labels.len(),
            out.temperatures.sem,
            out.temperatures.text,
            out.temperatures.ins,
            out.threshold,
            if out.reached {
                ""
            } else {
                " (target not reached: ceiling)"
            },
            100.0 * out.admitted,
            pct(out.admitted_precision),
            100.0 * out.fused_accuracy,
            100.0 * out.sem_accuracy,
            pct(out.text_accuracy),
            pct(out.ins_accuracy),
        );
        self.interval.calibration = Some(out);
        Ok(())
    }

    fn elapsed(&self) -> f64 {
        self.elapsed_before + self.started.elapsed().as_secs_f64()
    }

    /// One optimiser step on a labeled batch (and the unlabeled one, for the semi-supervised
    /// methods); returns the loss and the learning rate used.
    fn step(&mut self, batch: &Batch, ubatch: Option<&Batch>) -> Result<(f32, f64), TrainError> {
        let t0 = Instant::now();
        let side = self.cfg.model.input_size as usize;
        let device = &self.device;
        let b = batch.len();
        let targets = batch.targets.as_ref().expect("labeled batches carry targets");
        // The hard labels stay the faces' own (training accuracy, the buffer's slots).
        let labels = hard_labels(targets);
        let (mut pixels, mut mixed) = (batch.views[0].clone(), targets.clone());
        if let Some(m) = &self.cfg.mix {
            m.apply(&mut pixels, &mut mixed, side, self.cfg.seed, self.state.step);
        }
        let x = Tensor::from_vec(pixels, (b, 3, side, side), device)?;
        let t = Tensor::from_vec(
            mixed.iter().flatten().copied().collect::<Vec<f32>>(),
            (b, NUM_CLASSES),
            device,
        )?;
        let uviews = match ubatch {
            Some(u) => {
                let n = u.len();
                Some((
                    Tensor::from_vec(u.views[0].clone(), (n, 3, side, side), device)?,
                    Tensor::from_vec(u.views[1].clone(), (n, 3, side, side), device)?,
                ))
            }
            None => None,
        };
        let out = self.ssl.step(
            self.model.as_ref(),
            self.state.step,
            LabeledInput {
                x: &x,
                targets: &t,
                labels: &labels,
                slots: &batch.samples,
            },
            uviews.as_ref().map(|(weak, strong)| UnlabeledInput { weak, strong }),
        )?;
        let loss_value = out.loss.to_scalar::<f32>()?;
        let lr = self.schedule.lr(self.state.step);
        if !loss_value.is_finite() {
            return Err(TrainError::NonFinite {
                step: self.state.step,
                loss: loss_value,
                lr,
                run_dir: self.run_dir.clone(),
            });
        }
        let grads = out.loss.backward()?;
        self.optimizer.step(&grads, lr)?;
        if let Some(t) = &self.ssl.teacher {
            t.update()?;
        }
        self.state.step += 1;
        self.state.optimizer_updates = self.optimizer.t;
        let preds = out.labeled_logits.argmax(1)?.to_vec1::<u32>()?;
        let interval = &mut self.interval;
        interval.correct += preds.iter().zip(&labels).filter(|(p, t)| **p as usize == **t).count();
        interval.seen += b;
        interval.loss_sum += loss_value as f64 * b as f64;
        interval.add_ssl(&out, ubatch.map(|u| &u.samples[..]), &self.data);
        interval.train_seconds += t0.elapsed().as_secs_f64();
        Ok((loss_value, lr))
    }

    /// Validation (p_sem, and the fused p̂ with the labeled buffer when the method has text),
    /// model selection on its accuracy, a checkpoint, metrics and plots.
    fn validate(&mut self, lr: f64, ips: f64, bar: &ProgressBar) -> Result<(), TrainError> {
        let cfg = self.cfg;
        let val = &self.data.val;
        let (logits, embedding) = self.forward(self.model.as_ref(), val)?;
        let preds = Predictions {
            probs: prob_rows(&crate::method::fusion::softmax(&logits)?)?,
        };
        let report = EvalReport::from_confusion(preds.confusion(val));
        let val_fused_accuracy = if cfg.ssl.as_ref().is_some_and(|c| c.text) {
            let fused = Predictions {
                probs: prob_rows(&self.ssl.fused_eval(&logits, &embedding)?)?,
            };
            Some(fused.confusion(val).accuracy())
        } else {
            None
        };
        // The teacher's own accuracy once, at the end (a pass over val every interval would add
        // a quarter to a run): what the run would give if the teacher were the model kept.
        let val_teacher_accuracy = match &self.ssl.teacher {
            Some(t) if self.state.step == self.total_steps => {
                let (logits, _) = self.forward(t.model.as_ref(), val)?;
                let probs = prob_rows(&crate::method::fusion::softmax(&logits)?)?;
                Some(Predictions { probs }.confusion(val).accuracy())
            }
            _ => None,
        };
        let state = &mut self.state;
        state.elapsed_seconds = self.elapsed_before + self.started.elapsed().as_secs_f64();
        let interval = &self.interval;
        let record = EpochRecord {
            step: state.step,
            epoch: state.step / self.eval_every,
            lr,
            train_loss: interval.loss_sum / interval.seen.max(1) as f64,
            train_accuracy: interval.correct as f64 / interval.seen.max(1) as f64,
            val_accuracy: report.accuracy,
            val_macro_f1: report.macro_f1,
            images_per_second: ips,
            elapsed_seconds: state.elapsed_seconds,
            val_fused_accuracy,
            val_teacher_accuracy,
            ssl: interval.ssl_record(&self.ssl),
        };
        bar.suspend(|| log_record(&record));
        state.history.push(record);
        self.interval = Interval::default();
        let is_best = report.accuracy > state.best_val_accuracy;
        if is_best {
            state.best_val_accuracy = report.accuracy;
            state.best_step = Some(state.step);
            write_report(self.run_dir, &report)?;
        }
        let mut extra = self.optimizer.state_tensors();
        extra.extend(ssl_state_tensors(&self.ssl)?);
        checkpoint::save(self.run_dir, state, &named_tensors(&self.varmap), &extra, is_best)?;
        write_metrics(self.run_dir, &state.history)?;
        plot_history(self.run_dir, &state.history);
        Ok(())
    }
}
