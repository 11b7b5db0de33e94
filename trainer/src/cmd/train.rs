//! `sitfer-train train`: the run configuration from the options, then the training run.

use super::DataArgs;
use super::ssl_args::{Preset, SslArgs};
use anyhow::{Context, Result, bail};
use clap::Args;
use sitfer_trainer::data::augment::{AugmentConfig, NormalizationPreset};
use sitfer_trainer::data::mix::BatchMix;
use sitfer_trainer::data::split::LabelBudget;
use sitfer_trainer::model::{Arch, ModelSpec, Stem};
use sitfer_trainer::train::config::{DataConfig, Method, TextConfig, TrainConfig};
use sitfer_trainer::train::optimizer::OptimizerConfig;
use sitfer_trainer::train::run::{RunOptions, train};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OptimizerKind {
    Adamw,
    Sgd,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Training method [default: supervised; `distill`: sitfer when the teacher has text prototypes]
    #[arg(long, value_enum)]
    pub method: Option<Method>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Labels kept per class: a count, `all`, or a fraction (`0.1`, `10%`); the rest is unlabeled.
    #[arg(long, default_value = "all")]
    pub labels_per_class: LabelBudget,
    /// Reuse a split manifest (split.json) instead of drawing one.
    #[arg(long)]
    pub split: Option<PathBuf>,
    /// Share of each class's labeled faces held out to calibrate the fusion (never trained on;
    /// `--calibrate-every`); supervised runs with it train on the rest (a like-for-like baseline).
    #[arg(long, default_value_t = 0.0)]
    pub calibration_fraction: f64,
    /// Fraction of train held out for validation when the dataset has no val split.
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    #[arg(long, value_enum, default_value = "student")]
    pub arch: Arch,
    /// ResNet stem (small: 3x3 stride 1, no max-pool).
    #[arg(long, value_enum, default_value = "small")]
    pub stem: Stem,
    /// Input side in pixels.
    #[arg(long, default_value_t = 48)]
    pub input_size: u32,
    /// Start from pretrained weights (safetensors; tensors matched by name and shape): ImageNet
    /// weights, or another run's `checkpoints/step-N/weights.safetensors` (a warm restart).
    #[arg(long)]
    pub pretrained: Option<PathBuf>,
    /// Input normalisation (tf-lite for the EfficientNet-Lite0 ImageNet weights).
    #[arg(long, value_enum, default_value = "imagenet")]
    pub normalization: NormalizationPreset,
    /// Optimizer [default: adamw; `--preset reference`: Adam].
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Peak learning rate [default: 2e-3; `--preset reference`: 1e-4].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Weight decay [default: 5e-4; `--preset reference`: 0].
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// SGD momentum (Nesterov).
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Constant learning rate after warm-up instead of cosine decay.
    #[arg(long)]
    pub constant_lr: bool,
    #[arg(long, default_value_t = 100)]
    pub warmup_steps: u64,
    /// Labeled batch size [default: 64; `--preset reference`: 16].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Epochs over the labeled split (ignored when --steps is given).
    #[arg(long, default_value_t = 30.0)]
    pub epochs: f64,
    /// Total optimizer steps.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Steps between validation runs (default: one labeled epoch).
    #[arg(long)]
    pub eval_every: Option<u64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Threads preparing batches.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Run directory (checkpoints, metrics.jsonl, plots, split.json).
    #[arg(long, default_value = "runs/latest")]
    pub out: PathBuf,
    /// Continue from the run directory's latest checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many steps (resume later with --resume).
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// Mixup of the labeled batch: α of Beta(α, α) (e.g. 0.2; supervised runs).
    #[arg(long, default_value_t = 0.0)]
    pub mixup: f32,
    /// CutMix of the labeled batch: α of Beta(α, α) (e.g. 1.0; with --mixup, one of the two per
    /// batch at even odds).
    #[arg(long, default_value_t = 0.0)]
    pub cutmix: f32,
    /// Label smoothing ε of the labeled targets (e.g. 0.1).
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f32,
    #[command(flatten)]
    pub ssl: SslArgs,
}

/// The run configuration the options describe, `method` being the one to train.
pub fn train_config(a: &TrainArgs, method: Method) -> Result<TrainConfig> {
    let reference = a.ssl.preset == Some(Preset::Reference);
    let method = if reference { Method::Sitfer } else { method };
    if reference && a.method == Some(Method::Fixmatch) {
        bail!("--preset reference is a sitfer preset: drop --method fixmatch");
    }
    let weight_decay = a.weight_decay.unwrap_or(if reference { 0.0 } else { 5e-4 });
    let optimizer = match a.optimizer.unwrap_or(OptimizerKind::Adamw) {
        OptimizerKind::Adamw => OptimizerConfig::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        },
        OptimizerKind::Sgd => OptimizerConfig::Sgd {
            momentum: a.momentum,
            nesterov: true,
            weight_decay,
        },
    };
    let batch_size = a.batch_size.unwrap_or(if reference { 16 } else { 64 });
    if batch_size == 0 {
        bail!("--batch-size must be positive");
    }
    if !(0.0..1.0).contains(&a.calibration_fraction) {
        bail!("--calibration-fraction must be in [0, 1)");
    }
    let ssl = a.ssl.config(method)?;
    let mix = BatchMix {
        mixup_alpha: a.mixup,
        cutmix_alpha: a.cutmix,
        label_smoothing: a.label_smoothing,
    };
    if a.mixup < 0.0 || a.cutmix < 0.0 || !(0.0..1.0).contains(&a.label_smoothing) {
        bail!("--mixup and --cutmix must be ≥ 0, --label-smoothing in [0, 1)");
    }
    if !mix.is_off() && method != Method::Supervised {
        // The buffer's labeled slots, L_t and a teacher's cached targets would all see mixed faces.
        bail!("--mixup, --cutmix and --label-smoothing are for --method supervised");
    }
    let text = ssl.as_ref().filter(|c| c.text).map(|_| TextConfig {
        prototypes: a.ssl.prototypes.clone(),
        encoder_dir: a.ssl.text_encoder.clone(),
        encoder_kind: a.ssl.text_encoder_kind,
    });
    let cfg = TrainConfig {
        method,
        model: ModelSpec {
            arch: a.arch,
            stem: a.stem,
            num_classes: sitfer_contract::NUM_CLASSES,
            input_size: a.input_size,
        },
        data: DataConfig {
            root: a.data.root(),
            format: a.data.format,
            budget: a.labels_per_class,
            outside: a.data.outside_labels,
            soft_labels: a.data.soft_labels,
            val_fraction: a.val_fraction,
            split_manifest: a.split.clone(),
            calibration_fraction: a.calibration_fraction,
        },
        norm: a.normalization.normalization(),
        augment: AugmentConfig::default(),
        optimizer,
        lr: a.lr.unwrap_or(if reference { 1e-4 } else { 2e-3 }),
        cosine: !a.constant_lr,
        warmup_steps: a.warmup_steps,
        batch_size,
        steps: a.steps.unwrap_or(0),
        epochs: a.epochs,
        eval_every: a.eval_every.unwrap_or(0),
        seed: a.seed,
        workers: a.workers,
        pretrained: a.pretrained.clone(),
        device: a.device.clone(),
        ssl,
        text,
        distill: None,
        mix: (!mix.is_off()).then_some(mix),
    };
    Ok(cfg)
}

pub fn run(a: TrainArgs) -> Result<()> {
    let cfg = train_config(&a, a.method.unwrap_or(Method::Supervised))?;
    run_config(&cfg, &a)
}

/// Writes the command line into a new run directory (kept on resume): export copies it into the
/// bundle's provenance.
pub fn record_command(run_dir: &Path) -> Result<()> {
    let file = run_dir.join(sitfer_trainer::export::bundle::COMMAND_FILE);
    if file.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(run_dir).with_context(|| run_dir.display().to_string())?;
    let quote = |s: String| {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,%".contains(&b)) {
            s
        } else {
            format!("'{}'", s.replace('\'', "'\\''"))
        }
    };
    let line: Vec<String> = std::env::args().map(quote).collect();
    sitfer_contract::file_write::atomic_write_bytes(&file, format!("{}\n", line.join(" ")).as_bytes())
        .with_context(|| file.display().to_string())
}

pub fn run_config(cfg: &TrainConfig, a: &TrainArgs) -> Result<()> {
    record_command(&a.out)?;
    let opts = RunOptions {
        run_dir: a.out.clone(),
        resume: a.resume,
        stop_after: a.stop_after,
    };
    let summary = match cfg.distill {
        Some(_) => sitfer_trainer::distill::train(cfg, &opts)?,
        None => train(cfg, &opts)?,
    };
    println!(
        "{}",
        serde_json::json!({
            "run": a.out,
            "steps": summary.step,
            "best_step": summary.best_step,
            "best_val_accuracy": summary.best_val_accuracy,
            "elapsed_seconds": summary.elapsed_seconds,
        })
    );
    Ok(())
}
