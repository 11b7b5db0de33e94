//! `sitfer-train`: train, evaluate and split FER datasets.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use sitfer_trainer::data::augment::{AugmentConfig, NormalizationPreset};
use sitfer_trainer::data::split::{LabelBudget, semi_supervised_split};
use sitfer_trainer::data::{Format, OutsidePolicy, ReadOptions, data_root, read_dataset};
use sitfer_trainer::evaluate::predict;
use sitfer_trainer::metrics::EvalReport;
use sitfer_trainer::model::{Arch, ModelSpec, Stem, build};
use sitfer_trainer::semi::{Aggregate, FuseMode, SslConfig, ThresholdMode};
use sitfer_trainer::text::EncoderKind;
use sitfer_trainer::train::checkpoint::{self, Which};
use sitfer_trainer::train::config::{DataConfig, Method, TextConfig, TrainConfig};
use sitfer_trainer::train::optimizer::OptimizerConfig;
use sitfer_trainer::train::run::{RunOptions, labeled_store, parse_device, set_vars, train};
use std::path::{Path, PathBuf};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sitfer-train",
    version,
    about = "Train and evaluate sitfer facial expression models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model: supervised, FixMatch or SIT-FER.
    Train(Box<TrainArgs>),
    /// Build (or check) the text prototype cache and show how the classes' prototypes relate.
    Prototypes(PrototypesArgs),
    /// Evaluate a checkpoint on a labeled split.
    Eval(EvalArgs),
    /// Draw a labeled/unlabeled split and save its manifest.
    Split(SplitArgs),
    /// Training throughput and peak memory, candle side by side with PyTorch CPU.
    Bench(BenchArgs),
    /// Export a checkpoint as a model bundle (fp32 ONNX, optionally int8) and verify it.
    Export(ExportArgs),
    /// Train a student on a teacher's fused pseudo-labels p̂ (KL to p̂ plus CE on labels, and
    /// L_t when the student has a projection head).
    Distill(Box<DistillArgs>),
}

#[derive(Args)]
struct DistillArgs {
    /// The teacher: a run directory (its best checkpoint) or a checkpoint directory.
    #[arg(long)]
    teacher: PathBuf,
    /// w: a labeled face's target is (label + w·p̂) / (1 + w); unlabeled faces learn p̂ alone.
    #[arg(long, default_value_t = 1.0)]
    kd_weight: f64,
    /// The student's training options (`--split` defaults to the teacher's split, so both see
    /// the same labeled faces).
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CalibKind {
    /// Observed minimum and maximum of each activation.
    Minmax,
    /// `--percentile` of each activation's values (outliers clipped).
    Percentile,
}

#[derive(Args)]
struct ExportArgs {
    /// Run directory (best checkpoint) or checkpoint directory.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Bundle directory to write (replaced atomically).
    #[arg(long)]
    out: PathBuf,
    /// Also write the int8 (QOperator) model.
    #[arg(long)]
    int8: bool,
    /// Folder of face images for int8 calibration (default: the run's labeled split).
    #[arg(long)]
    calib: Option<PathBuf>,
    #[arg(long, default_value_t = 300)]
    calib_images: usize,
    #[arg(long, value_enum, default_value = "minmax")]
    calib_method: CalibKind,
    #[arg(long, default_value_t = 99.99)]
    percentile: f64,
    /// Seed instance buffer entries per class (from the labeled split).
    #[arg(long, default_value_t = 32)]
    per_class: usize,
    /// Dataset root, if it moved since training.
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BenchConv {
    /// The default CPU path: residual nets channels-last with fused conv + batch norm + ReLU.
    Fast,
    /// The previous CPU path: channels-first, one sitfer op per layer (im2col conv, fused batch
    /// norm, ReLU).
    ChannelsFirst,
    /// candle's own conv2d and composed batch norm.
    Candle,
    /// All three, for a before/after table.
    All,
}

impl BenchConv {
    fn impls(self) -> Vec<sitfer_trainer::ops::ConvImpl> {
        use sitfer_trainer::ops::ConvImpl;
        match self {
            BenchConv::Fast => vec![ConvImpl::Fast],
            BenchConv::ChannelsFirst => vec![ConvImpl::ChannelsFirst],
            BenchConv::Candle => vec![ConvImpl::Candle],
            BenchConv::All => vec![ConvImpl::Fast, ConvImpl::ChannelsFirst, ConvImpl::Candle],
        }
    }
}

#[derive(Args)]
struct BenchArgs {
    /// Architectures (student, resnet18, efficientnet-lite0).
    #[arg(long, value_delimiter = ',', default_value = "student,resnet18")]
    archs: Vec<Arch>,
    /// Input sides.
    #[arg(long, value_delimiter = ',', default_value = "48,64")]
    sizes: Vec<usize>,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Timed steps per configuration (after 2 warm-up steps).
    #[arg(long, default_value_t = 6)]
    steps: usize,
    #[arg(long, value_enum, default_value = "all")]
    conv: BenchConv,
    /// cpu, cuda or cuda:N (sitfer's fast ops are CPU code; on CUDA the models use candle's).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Also measure the SIT-FER step (16 labeled + 16 unlabeled in two views, all sources on).
    #[arg(long)]
    sitfer_step: bool,
    /// Python with PyTorch (made by bench/setup.sh); the PyTorch column is skipped if missing.
    #[arg(long, default_value = "bench/.venv/bin/python")]
    python: PathBuf,
    #[arg(long, default_value = "bench/pytorch_bench.py")]
    pytorch_script: PathBuf,
    /// Also write all results as JSON lines here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Internal: measure one configuration in this process and print it as JSON.
    #[arg(long, hide = true)]
    single: bool,
}

#[derive(Args, Clone)]
struct DataArgs {
    /// Dataset root (default: $SITFER_DATA/fer2013, else ../shared/data/fer2013).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Dataset format.
    #[arg(long, value_enum, default_value = "fer2013-folder")]
    format: Format,
    /// Labels outside the 7-class set (contempt…): drop the samples or refuse the dataset.
    #[arg(long, value_enum, default_value = "drop")]
    outside_labels: OutsidePolicy,
    /// FER+: train on vote distributions instead of majority labels.
    #[arg(long)]
    soft_labels: bool,
}

impl DataArgs {
    fn root(&self) -> PathBuf {
        match &self.data {
            Some(p) => p.clone(),
            None => data_root(None).join("fer2013"),
        }
    }
    fn read_options(&self) -> ReadOptions {
        ReadOptions {
            outside: self.outside_labels,
            soft_labels: self.soft_labels,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OptimizerKind {
    Adamw,
    Sgd,
}

#[derive(Args)]
struct TrainArgs {
    /// Training method [default: supervised; `distill`: sitfer when the teacher has text prototypes]
    #[arg(long, value_enum)]
    method: Option<Method>,
    #[command(flatten)]
    data: DataArgs,
    /// Labels kept per class: a count, `all`, or a fraction (`0.1`, `10%`); the rest is unlabeled.
    #[arg(long, default_value = "all")]
    labels_per_class: LabelBudget,
    /// Reuse a split manifest (split.json) instead of drawing one.
    #[arg(long)]
    split: Option<PathBuf>,
    /// Fraction of train held out for validation when the dataset has no val split.
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    #[arg(long, value_enum, default_value = "student")]
    arch: Arch,
    /// ResNet stem (small: 3x3 stride 1, no max-pool).
    #[arg(long, value_enum, default_value = "small")]
    stem: Stem,
    /// Input side in pixels.
    #[arg(long, default_value_t = 48)]
    input_size: u32,
    /// Start from pretrained weights (safetensors; tensors matched by name and shape): ImageNet
    /// weights, or another run's `checkpoints/step-N/weights.safetensors` (a warm restart).
    #[arg(long)]
    pretrained: Option<PathBuf>,
    /// Input normalisation (tf-lite for the EfficientNet-Lite0 ImageNet weights).
    #[arg(long, value_enum, default_value = "imagenet")]
    normalization: NormalizationPreset,
    /// Optimizer [default: adamw; `--preset reference`: Adam].
    #[arg(long, value_enum)]
    optimizer: Option<OptimizerKind>,
    /// Peak learning rate [default: 2e-3; `--preset reference`: 1e-4].
    #[arg(long)]
    lr: Option<f64>,
    /// Weight decay [default: 5e-4; `--preset reference`: 0].
    #[arg(long)]
    weight_decay: Option<f64>,
    /// SGD momentum (Nesterov).
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// Constant learning rate after warm-up instead of cosine decay.
    #[arg(long)]
    constant_lr: bool,
    #[arg(long, default_value_t = 100)]
    warmup_steps: u64,
    /// Labeled batch size [default: 64; `--preset reference`: 16].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Epochs over the labeled split (ignored when --steps is given).
    #[arg(long, default_value_t = 30.0)]
    epochs: f64,
    /// Total optimizer steps.
    #[arg(long)]
    steps: Option<u64>,
    /// Steps between validation runs (default: one labeled epoch).
    #[arg(long)]
    eval_every: Option<u64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Threads preparing batches.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Run directory (checkpoints, metrics.jsonl, plots, split.json).
    #[arg(long, default_value = "runs/latest")]
    out: PathBuf,
    /// Continue from the run directory's latest checkpoint.
    #[arg(long)]
    resume: bool,
    /// Stop after this many steps (resume later with --resume).
    #[arg(long)]
    stop_after: Option<u64>,
    #[command(flatten)]
    ssl: SslArgs,
}

/// A bundle of settings reproducing a reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Preset {
    /// The SIT-FER reference code: raw-score fusion 0.3/0.2/0.5, threshold 0.75, loss weights
    /// 0.4/0.4/0.2, Adam 1e-4, batches 16 + 16, labeled-only buffer with max similarity.
    Reference,
}

/// Semi-supervised settings; each defaults to the method's (or the preset's) value.
#[derive(Args)]
struct SslArgs {
    /// Settings of a reference implementation (implies --method sitfer).
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// Unlabeled batch = this × labeled batch [default 1].
    #[arg(long)]
    unlabeled_ratio: Option<usize>,
    /// Weight of L_s.
    #[arg(long)]
    lambda_s: Option<f64>,
    /// Weight of L_t, the text co-supervision (0 disables it).
    #[arg(long)]
    lambda_t: Option<f64>,
    /// Weight of L_u, the pseudo-label loss.
    #[arg(long)]
    lambda_u: Option<f64>,
    /// Temperature of p_text.
    #[arg(long)]
    tau_t: Option<f64>,
    /// Temperature of p_ins.
    #[arg(long)]
    tau_i: Option<f64>,
    /// Fusion weight of p_sem (0 drops it).
    #[arg(long)]
    w_sem: Option<f64>,
    /// Fusion weight of p_text (0 drops it).
    #[arg(long)]
    w_text: Option<f64>,
    /// Fusion weight of p_ins (0 drops it).
    #[arg(long)]
    w_ins: Option<f64>,
    #[arg(long, value_enum)]
    fuse: Option<FuseMode>,
    /// Confidence threshold of p̂ [fixmatch 0.95, sitfer 0.7, reference 0.75].
    #[arg(long)]
    threshold: Option<f64>,
    /// Per-class adaptive thresholds (Ada-CM) with this floor; --threshold is their start.
    #[arg(long)]
    adaptive_threshold: Option<f64>,
    /// Steps before p_ins joins the fusion.
    #[arg(long)]
    ins_warmup: Option<u64>,
    /// Per-class queue of confident pseudo-labeled embeddings in the buffer (0: labeled only).
    #[arg(long)]
    queue_per_class: Option<usize>,
    /// Buffer similarity per class: `max` or `topK` (mean of the K nearest).
    #[arg(long)]
    aggregate: Option<Aggregate>,
    /// Text prototype cache (rebuilt with the encoder when the descriptions or encoder change).
    #[arg(long, default_value = sitfer_trainer::text::DEFAULT_PROTOTYPES)]
    prototypes: PathBuf,
    /// Directory of the text encoder (config.json, model.safetensors, tokenizer.json).
    #[arg(long, env = "SITFER_TEXT_ENCODER", default_value = sitfer_trainer::text::DEFAULT_ENCODER_DIR)]
    text_encoder: PathBuf,
    #[arg(long, value_enum, default_value = "minilm")]
    text_encoder_kind: EncoderKind,
}

impl SslArgs {
    /// The method's settings with the given overrides.
    fn config(&self, method: Method) -> Result<Option<SslConfig>> {
        let mut c = match (method, self.preset) {
            (_, Some(Preset::Reference)) => SslConfig::reference(),
            (Method::Supervised, None) => {
                let given = [
                    self.lambda_t,
                    self.lambda_u,
                    self.w_sem,
                    self.w_text,
                    self.w_ins,
                    self.threshold,
                ];
                if given.iter().any(Option::is_some) {
                    bail!("semi-supervised options need --method fixmatch or sitfer");
                }
                return Ok(None);
            }
            (Method::Fixmatch, None) => SslConfig::fixmatch(),
            (Method::Sitfer, None) => SslConfig::sitfer(),
        };
        macro_rules! set {
            ($($field:ident => $target:expr),*) => {$(if let Some(v) = self.$field { $target = v; })*};
        }
        set!(unlabeled_ratio => c.unlabeled_ratio, lambda_s => c.lambda_s, lambda_t => c.lambda_t,
            lambda_u => c.lambda_u, tau_t => c.tau_t, tau_i => c.tau_i, w_sem => c.weights.sem,
            w_text => c.weights.text, w_ins => c.weights.ins, fuse => c.fuse, threshold => c.threshold,
            ins_warmup => c.ins_warmup_steps, queue_per_class => c.queue_per_class, aggregate => c.aggregate);
        if let Some(floor) = self.adaptive_threshold {
            c.threshold_mode = ThresholdMode::Adaptive { floor, momentum: 0.99 };
        }
        if method == Method::Fixmatch && (c.lambda_t > 0.0 || c.weights.text > 0.0 || c.weights.ins > 0.0) {
            bail!("--method fixmatch uses p_sem only: use --method sitfer for text or instance terms");
        }
        if c.unlabeled_ratio == 0 {
            bail!("--unlabeled-ratio must be ≥ 1");
        }
        if !(c.threshold > 0.0 && c.threshold <= 1.0) || c.tau_t <= 0.0 || c.tau_i <= 0.0 {
            bail!("--threshold must be in (0, 1] and temperatures positive");
        }
        if c.weights.sem < 0.0 || c.weights.text < 0.0 || c.weights.ins < 0.0 {
            bail!("fusion weights must be ≥ 0");
        }
        if c.weights.sem + c.weights.text + c.weights.ins <= 0.0 {
            bail!("at least one fusion weight must be positive");
        }
        c.text = c.lambda_t > 0.0 || c.weights.text > 0.0 || c.weights.ins > 0.0;
        Ok(Some(c))
    }
}

#[derive(Args)]
struct EvalArgs {
    /// A run directory (its best checkpoint) or a checkpoint directory.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Dataset to evaluate on (default: the one the checkpoint was trained on).
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Split: val or test.
    #[arg(long, default_value = "val")]
    split: String,
    /// Use the latest checkpoint of a run instead of the best.
    #[arg(long)]
    latest: bool,
    /// Write the report (JSON) and a confusion-matrix PNG beside this path stem.
    #[arg(long)]
    report: Option<PathBuf>,
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Args)]
struct SplitArgs {
    #[command(flatten)]
    data: DataArgs,
    #[arg(long)]
    labels_per_class: LabelBudget,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    out: PathBuf,
}

fn main() -> Result<()> {
    sitfer_trainer::alloc::configure();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match cli.command {
        Command::Train(a) => run_train(*a),
        Command::Prototypes(a) => run_prototypes(a),
        Command::Eval(a) => run_eval(a),
        Command::Split(a) => run_split(a),
        Command::Bench(a) => run_bench(a),
        Command::Export(a) => run_export(a),
        Command::Distill(a) => run_distill(*a),
    }
}

#[derive(Args)]
struct PrototypesArgs {
    /// The cache to build or check.
    #[arg(long, default_value = sitfer_trainer::text::DEFAULT_PROTOTYPES)]
    prototypes: PathBuf,
    #[arg(long, env = "SITFER_TEXT_ENCODER", default_value = sitfer_trainer::text::DEFAULT_ENCODER_DIR)]
    text_encoder: PathBuf,
    #[arg(long, value_enum, default_value = "minilm")]
    text_encoder_kind: EncoderKind,
}

fn run_prototypes(a: PrototypesArgs) -> Result<()> {
    let (set, rebuilt) = sitfer_trainer::text::resolve(
        &a.prototypes,
        &sitfer_trainer::text::EncoderSource {
            dir: a.text_encoder.clone(),
            kind: a.text_encoder_kind,
        },
        &sitfer_trainer::text::descriptions::default_descriptions(),
    )?;
    println!(
        "{} {} (encoder {}, {} descriptions, dim {})",
        a.prototypes.display(),
        if rebuilt { "rebuilt" } else { "is up to date" },
        set.encoder.name,
        set.texts.iter().map(Vec::len).sum::<usize>(),
        set.dim
    );
    println!("cosine similarity between class prototypes:");
    print!("{:>10}", "");
    for c in &set.classes {
        print!("{c:>10}");
    }
    println!();
    for (i, c) in set.classes.iter().enumerate() {
        print!("{c:>10}");
        for j in 0..set.classes.len() {
            print!("{:>10.3}", set.similarity(i, j));
        }
        println!();
    }
    Ok(())
}

/// The run configuration the options describe, `method` being the one to train.
fn train_config(a: &TrainArgs, method: Method) -> Result<TrainConfig> {
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
    let ssl = a.ssl.config(method)?;
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
            num_classes: sitfer_runtime::NUM_CLASSES,
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
    };
    Ok(cfg)
}

fn run_train(a: TrainArgs) -> Result<()> {
    let cfg = train_config(&a, a.method.unwrap_or(Method::Supervised))?;
    run_config(&cfg, &a)
}

/// Writes the command line into a new run directory (kept on resume): export copies it into the
/// bundle's provenance.
fn record_command(run_dir: &Path) -> Result<()> {
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
    sitfer_runtime::atomic::atomic_write_bytes(&file, format!("{}\n", line.join(" ")).as_bytes())
        .with_context(|| file.display().to_string())
}

/// `sitfer-train distill`: the student's run with the teacher's p̂ as targets.
fn run_distill(a: DistillArgs) -> Result<()> {
    if !(a.kd_weight >= 0.0 && a.kd_weight.is_finite()) {
        bail!("--kd-weight must be a finite number ≥ 0");
    }
    let teacher = checkpoint::resolve(&a.teacher, Which::Best)?;
    let run_dir = checkpoint::run_dir_of(&teacher);
    let mut t = a.train;
    if t.split.is_none() {
        let split = run_dir.join("split.json");
        if !split.is_file() {
            bail!("{}: the teacher's split is missing; pass --split", split.display());
        }
        t.split = Some(split);
    }
    let teacher_has_text = run_dir.join("prototypes.json").is_file();
    let method = t.method.unwrap_or(if teacher_has_text {
        Method::Sitfer
    } else {
        Method::Supervised
    });
    if method == Method::Fixmatch {
        bail!("--method fixmatch: a distilled student learns p̂, not its own pseudo-labels (use supervised or sitfer)");
    }
    let mut cfg = train_config(&t, method)?;
    cfg.distill = Some(sitfer_trainer::distill::DistillConfig {
        teacher,
        kd_weight: a.kd_weight,
    });
    run_config(&cfg, &t)
}

fn run_config(cfg: &TrainConfig, a: &TrainArgs) -> Result<()> {
    record_command(&a.out)?;
    let summary = train(
        cfg,
        &RunOptions {
            run_dir: a.out.clone(),
            resume: a.resume,
            stop_after: a.stop_after,
        },
    )?;
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

fn run_eval(a: EvalArgs) -> Result<()> {
    let device = parse_device(&a.device)?;
    let which = if a.latest { Which::Latest } else { Which::Best };
    let dir = checkpoint::resolve(&a.checkpoint, which)?;
    let ck = checkpoint::load(&dir, &device)?;
    let cfg = &ck.state.config;
    let varmap = candle_nn::VarMap::new();
    let model = build(
        &cfg.model,
        candle_nn::VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &device),
    )?;
    set_vars(&varmap, &ck.weights, &dir)?;
    let root = a.data.clone().unwrap_or_else(|| cfg.data.root.clone());
    let format = a.format.unwrap_or(cfg.data.format);
    let opts = ReadOptions {
        outside: cfg.data.outside,
        soft_labels: false,
    };
    let mut dataset = read_dataset(format, &root, &opts)?;
    if a.data.is_none() {
        // The same carving as in training, so "val" means the same samples.
        sitfer_trainer::data::split::carve_validation(&mut dataset, cfg.data.val_fraction, cfg.seed);
    }
    let samples = match a.split.as_str() {
        "val" => &dataset.val,
        "test" => &dataset.test,
        "train" => &dataset.train,
        other => bail!("--split `{other}`: expected val, test or train"),
    };
    if samples.is_empty() {
        bail!("{}: split `{}` is empty", root.display(), a.split);
    }
    let (store, skipped) = labeled_store(samples, cfg.model.input_size, &a.split);
    let preds = predict(model.as_ref(), &store, cfg.norm, cfg.batch_size, &device)?;
    let report = EvalReport::from_confusion(preds.confusion(&store));
    println!(
        "checkpoint {} (step {})\ndata {} [{}]{}",
        dir.display(),
        ck.state.step,
        root.display(),
        a.split,
        if skipped.is_empty() {
            String::new()
        } else {
            format!(" ({} unreadable images skipped)", skipped.len())
        }
    );
    print!("{}", report.to_text());
    if let Some(stem) = a.report {
        let json = stem.with_extension("json");
        sitfer_runtime::atomic::atomic_write_bytes(&json, &serde_json::to_vec_pretty(&report)?)
            .with_context(|| json.display().to_string())?;
        let png = stem.with_extension("png");
        sitfer_trainer::plot::confusion_matrix(
            &png,
            &format!("{} {}: acc {:.2}%", root.display(), a.split, 100.0 * report.accuracy),
            &report.confusion,
        )
        .map_err(|e| anyhow::anyhow!("{}: {e}", png.display()))?;
        println!("wrote {} and {}", json.display(), png.display());
    }
    Ok(())
}

fn run_split(a: SplitArgs) -> Result<()> {
    let root = a.data.root();
    let dataset = read_dataset(a.data.format, &root, &a.data.read_options())?;
    let split = semi_supervised_split(&dataset.train, a.labels_per_class, a.seed);
    split
        .manifest
        .save(&a.out)
        .with_context(|| a.out.display().to_string())?;
    println!(
        "{} labeled, {} unlabeled -> {}",
        split.labeled.len(),
        split.unlabeled.len(),
        a.out.display()
    );
    Ok(())
}

fn run_bench(a: BenchArgs) -> Result<()> {
    use sitfer_trainer::bench::{BenchPlan, bench_sitfer_step, bench_training, run_plan};
    let device = sitfer_trainer::train::run::parse_device(&a.device)?;
    if a.single {
        let imp = a.conv.impls()[0];
        let r = if a.sitfer_step {
            sitfer_trainer::ops::set_conv_impl(imp);
            bench_sitfer_step(a.archs[0], a.sizes[0], a.steps, 2, &device)?
        } else {
            bench_training(a.archs[0], a.sizes[0], a.batch, a.steps, 2, imp, &device)?
        };
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    let plan = BenchPlan {
        archs: a.archs,
        sizes: a.sizes,
        batch: a.batch,
        steps: a.steps,
        impls: a.conv.impls(),
        device: a.device,
        sitfer_step: a.sitfer_step,
        python: a.python,
        pytorch_script: a.pytorch_script,
    };
    let all = run_plan(&std::env::current_exe()?, &plan)?;
    if let Some(out) = a.out {
        let text: String = all.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect();
        sitfer_runtime::atomic::atomic_write_bytes(&out, text.as_bytes()).with_context(|| out.display().to_string())?;
    }
    Ok(())
}

fn run_export(a: ExportArgs) -> Result<()> {
    use sitfer_trainer::export::bundle::{ExportOptions, export_checkpoint};
    use sitfer_trainer::export::quantize::CalibMethod;
    let summary = export_checkpoint(&ExportOptions {
        checkpoint: a.checkpoint.clone(),
        out: a.out.clone(),
        calib: a.calib,
        int8: a.int8,
        calib_images: a.calib_images,
        calib_method: match a.calib_method {
            CalibKind::Minmax => CalibMethod::MinMax,
            CalibKind::Percentile => CalibMethod::Percentile(a.percentile),
        },
        per_class: a.per_class,
        data: a.data,
    })
    .with_context(|| format!("exporting {}", a.checkpoint.display()))?;
    println!(
        "{}",
        serde_json::json!({
            "bundle": a.out,
            "fp32_bytes": summary.fp32_bytes,
            "int8_bytes": summary.int8_bytes,
            "qlinear_convs": summary.qlinear_convs,
            "embedding_dim": summary.manifest.embedding_dim,
            "prototypes": summary.manifest.prototypes.is_some(),
            "buffer": summary.manifest.buffer.path,
        })
    );
    Ok(())
}
