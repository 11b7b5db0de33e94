//! The semi-supervised options of `train` and `distill`, over the method's (or preset's)
//! defaults.

use anyhow::{Result, bail};
use clap::Args;
use sitfer_trainer::method::{
    Aggregate, CalibrationConfig, FuseMode, InstanceLoss, PseudoTarget, SslConfig, ThresholdMode,
};
use sitfer_trainer::text::EncoderKind;
use sitfer_trainer::train::config::Method;
use std::path::PathBuf;

/// A bundle of settings reproducing a reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// The SIT-FER reference code: raw-score fusion 0.3/0.2/0.5, threshold 0.75, loss weights
    /// 0.4/0.4/0.2, Adam 1e-4, batches 16 + 16, labeled-only buffer with max similarity.
    Reference,
}

/// Semi-supervised settings; each defaults to the method's (or the preset's) value.
#[derive(Args)]
pub struct SslArgs {
    /// Settings of a reference implementation (implies --method sitfer).
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// Unlabeled batch = this × labeled batch [default 1].
    #[arg(long)]
    pub unlabeled_ratio: Option<usize>,
    /// Weight of L_s.
    #[arg(long)]
    pub lambda_s: Option<f64>,
    /// Weight of L_t, the text co-supervision (0 disables it).
    #[arg(long)]
    pub lambda_t: Option<f64>,
    /// Weight of L_u, the pseudo-label loss.
    #[arg(long)]
    pub lambda_u: Option<f64>,
    /// Temperature of p_text.
    #[arg(long)]
    pub tau_t: Option<f64>,
    /// Temperature of p_ins.
    #[arg(long)]
    pub tau_i: Option<f64>,
    /// Fusion weight of p_sem (0 drops it).
    #[arg(long)]
    pub w_sem: Option<f64>,
    /// Fusion weight of p_text (0 drops it).
    #[arg(long)]
    pub w_text: Option<f64>,
    /// Fusion weight of p_ins (0 drops it).
    #[arg(long)]
    pub w_ins: Option<f64>,
    /// probabilities or raw-scores [fixmatch, sitfer: probabilities; reference: raw-scores].
    #[arg(long)]
    pub fuse: Option<FuseMode>,
    /// Confidence threshold of p̂ [fixmatch 0.95, sitfer 0.7, reference 0.75].
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Per-class adaptive thresholds (Ada-CM) with this floor; --threshold is their start.
    #[arg(long)]
    pub adaptive_threshold: Option<f64>,
    /// Steps before p_ins joins the fusion.
    #[arg(long)]
    pub ins_warmup: Option<u64>,
    /// Per-class queue of confident pseudo-labeled embeddings in the buffer (0: labeled only).
    #[arg(long)]
    pub queue_per_class: Option<usize>,
    /// Buffer similarity per class: `max` or `topK` (mean of the K nearest).
    #[arg(long)]
    pub aggregate: Option<Aggregate>,
    /// Fit each source's temperature and the threshold on the labeled calibration hold-out
    /// (needs --calibration-fraction) before the first step and every this many steps; replaces
    /// --threshold, --tau-t and --tau-i in p̂ (L_t keeps --tau-t).
    #[arg(long)]
    pub calibrate_every: Option<u64>,
    /// With --calibrate-every: the threshold is the smallest confidence at which p̂ is right this
    /// often on the hold-out (clamped to [0.5, 0.99]).
    #[arg(long, default_value_t = 0.9)]
    pub target_precision: f64,
    /// With --calibrate-every: a fixed threshold on the calibrated p̂ instead of the precision
    /// target (the temperatures are still fitted).
    #[arg(long, conflicts_with = "target_precision")]
    pub calibrated_threshold: Option<f64>,
    /// What an admitted face's strong view learns: the argmax of p̂ (hard), p̂ itself (soft), or
    /// the argmax weighted by its confidence (weighted) [default hard].
    #[arg(long, value_enum)]
    pub pseudo_target: Option<PseudoTarget>,
    /// The confidence of p̂ at which a pseudo-label joins the buffer [default: the L_u threshold].
    #[arg(long)]
    pub queue_threshold: Option<f64>,
    /// Make the pseudo-labels with a mean teacher: a copy of the model whose weights follow the
    /// trained ones as an exponential moving average with this decay (e.g. 0.999).
    #[arg(long)]
    pub ema_teacher: Option<f64>,
    /// Weight of the instance consistency L_in (every unlabeled face's strong view learns the
    /// weak view's similarities to the buffer, re-weighted by p̂; sitfer with a buffer).
    #[arg(long)]
    pub lambda_in: Option<f64>,
    /// Temperature of L_in's similarity distributions.
    #[arg(long, default_value_t = 0.1)]
    pub tau_in: f64,
    /// Text prototype cache (rebuilt with the encoder when the descriptions or encoder change).
    #[arg(long, default_value = sitfer_trainer::text::DEFAULT_PROTOTYPES)]
    pub prototypes: PathBuf,
    /// Directory of the text encoder (config.json, model.safetensors, tokenizer.json).
    #[arg(long, env = "SITFER_TEXT_ENCODER", default_value = sitfer_trainer::text::DEFAULT_ENCODER_DIR)]
    pub text_encoder: PathBuf,
    #[arg(long, value_enum, default_value = "minilm")]
    pub text_encoder_kind: EncoderKind,
}

impl SslArgs {
    /// The method's settings with the given overrides.
    pub fn config(&self, method: Method) -> Result<Option<SslConfig>> {
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
                if given.iter().any(Option::is_some)
                    || self.pseudo_target.is_some()
                    || self.queue_threshold.is_some()
                    || self.ema_teacher.is_some()
                    || self.lambda_in.is_some()
                {
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
            ins_warmup => c.ins_warmup_steps, queue_per_class => c.queue_per_class, aggregate => c.aggregate,
            pseudo_target => c.pseudo_target);
        if let Some(t) = self.queue_threshold {
            if !(0.0..=1.0).contains(&t) {
                bail!("--queue-threshold {t}: a probability in [0, 1]");
            }
            c.queue_threshold = Some(t);
        }
        if let Some(d) = self.ema_teacher {
            if !(0.0..1.0).contains(&d) {
                bail!("--ema-teacher {d}: a decay in [0, 1)");
            }
            c.ema_teacher = Some(d);
        }
        if let Some(lambda) = self.lambda_in.filter(|&l| l > 0.0) {
            if self.tau_in <= 0.0 {
                bail!("--tau-in must be positive");
            }
            c.instance_loss = Some(InstanceLoss {
                lambda,
                tau: self.tau_in,
            });
        }
        if self.calibrated_threshold.is_some() && self.calibrate_every.is_none() {
            bail!("--calibrated-threshold needs --calibrate-every (a threshold on calibrated p̂)");
        }
        if let Some(every) = self.calibrate_every {
            if every == 0 || !(self.target_precision > 0.0 && self.target_precision <= 1.0) {
                bail!("--calibrate-every must be ≥ 1 and --target-precision in (0, 1]");
            }
            if self.adaptive_threshold.is_some() {
                bail!("--calibrate-every sets the threshold: drop --adaptive-threshold");
            }
            c.calibration = Some(match self.calibrated_threshold {
                Some(t) if (0.0..=1.0).contains(&t) => CalibrationConfig::protocol3(every, t),
                Some(t) => bail!("--calibrated-threshold {t}: a probability in [0, 1]"),
                None => CalibrationConfig::protocol2(every, self.target_precision),
            });
        }
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
        if c.instance_loss.is_some() && !c.uses_memory() {
            bail!("--lambda-in needs the instance buffer: --method sitfer with the projection (text or L_t on)");
        }
        Ok(Some(c))
    }
}
