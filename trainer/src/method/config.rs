//! Settings of the semi-supervised methods (saved with the run's `TrainConfig`).

use serde::{Deserialize, Serialize};

/// Weights of the three sources of the fused pseudo-label p̂.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FusionWeights {
    pub sem: f64,
    pub text: f64,
    pub ins: f64,
}

impl FusionWeights {
    pub const EQUAL: FusionWeights = FusionWeights {
        sem: 1.0,
        text: 1.0,
        ins: 1.0,
    };
}

/// How the sources are combined, and how a class's buffer similarities are aggregated: the
/// contract's types, so a bundle's fusion means the same on both sides.
pub use sitfer_contract::fusion::{Aggregate, FuseMode};

/// Fixed or per-class adaptive confidence thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ThresholdMode {
    Fixed,
    /// Per class, the running mean confidence on correctly classified labeled samples (Ada-CM),
    /// clamped to `[floor, 0.99]`.
    Adaptive {
        floor: f64,
        momentum: f64,
    },
}

/// What an admitted unlabeled face's strong view is trained toward.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PseudoTarget {
    /// The argmax of p̂ as a one-hot label (FixMatch, SIT-FER as described).
    #[default]
    Hard,
    /// p̂ itself: with calibrated sources it says how likely each class is, so a face whose
    /// sources disagree pulls toward both instead of toward one coin-flip label.
    Soft,
    /// The argmax of p̂, weighted by its confidence (an estimate of the chance it is right once
    /// the sources are calibrated): with a low threshold, many faces at a weight that follows
    /// their reliability instead of few at full weight.
    Weighted,
}

/// Everything the semi-supervised step needs besides the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SslConfig {
    /// Unlabeled batch = `unlabeled_ratio` × labeled batch.
    pub unlabeled_ratio: usize,
    /// Loss weights: L = λ_s L_s + λ_t L_t + λ_u L_u.
    pub lambda_s: f64,
    pub lambda_t: f64,
    pub lambda_u: f64,
    /// Temperatures of p_text and p_ins.
    pub tau_t: f64,
    pub tau_i: f64,
    pub weights: FusionWeights,
    pub fuse: FuseMode,
    pub threshold: f64,
    pub threshold_mode: ThresholdMode,
    /// p_ins joins the fusion after this many steps (the buffer first fills with real embeddings).
    pub ins_warmup_steps: u64,
    /// Capacity of each class's queue of confidently pseudo-labeled embeddings (0: labeled only).
    pub queue_per_class: usize,
    pub aggregate: Aggregate,
    /// Whether a projection head and text prototypes are used at all (L_t or p_text).
    pub text: bool,
    /// Fit the fusion's temperatures and the threshold on a labeled calibration hold-out
    /// (`None`: τ_t, τ_i and `threshold` as configured, p_sem at temperature 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<CalibrationConfig>,
    #[serde(default)]
    pub pseudo_target: PseudoTarget,
    /// The confidence of p̂ at which a pseudo-labeled embedding joins the buffer's queue (`None`:
    /// the L_u threshold). Lets a low L_u threshold (weighted targets) leave the buffer as clean
    /// as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_threshold: Option<f64>,
    /// Pseudo-labels (every source of p̂, the buffer's embeddings, the calibration) from an
    /// exponential moving average of the model's weights with this decay (`ema_teacher.rs`)
    /// instead of from the model being trained. `None`: the model itself, as FixMatch does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema_teacher: Option<f64>,
    /// Instance consistency (`instance_loss.rs`): weight λ_in of L_in, which trains every
    /// unlabeled face's strong view to be as similar to the buffer's embeddings as its weak view
    /// is (re-weighted by p̂); `None`: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_loss: Option<InstanceLoss>,
}

/// L_in's settings: its weight and the temperature of the similarity distributions over the
/// buffer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InstanceLoss {
    pub lambda: f64,
    pub tau: f64,
}

/// How the sources of p̂ are calibrated on the hold-out (`crate::method::calibrate`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CalibrationConfig {
    /// Refit every this many steps (and once before the first).
    pub every: u64,
    /// The threshold is the smallest confidence at which p̂ on the hold-out is right this often.
    pub target_precision: f64,
    /// Instead of the precision target: this fixed threshold on the calibrated p̂ (Protocol 3).
    /// After temperature scaling a confidence estimates the chance the label is right, so 0.5
    /// admits the pseudo-labels more likely right than all other classes together, without
    /// reading a precision off a hold-out of a few dozen faces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_threshold: Option<f64>,
    /// The threshold's bounds; the ceiling also when no confidence reaches the target.
    pub threshold_floor: f64,
    pub threshold_ceil: f64,
}

impl CalibrationConfig {
    /// Protocol 3 (docs/results/sitfer.md): temperatures fitted as in Protocol 2, the threshold
    /// fixed at `threshold` on the calibrated p̂.
    pub fn protocol3(every: u64, threshold: f64) -> Self {
        CalibrationConfig {
            fixed_threshold: Some(threshold),
            ..Self::protocol2(every, 0.9)
        }
    }

    /// Protocol 2's bounds (docs/results/sitfer.md): the threshold within [0.5, 0.99].
    pub fn protocol2(every: u64, target_precision: f64) -> Self {
        CalibrationConfig {
            every,
            target_precision,
            fixed_threshold: None,
            threshold_floor: 0.5,
            threshold_ceil: 0.99,
        }
    }
}

impl SslConfig {
    /// FixMatch: p̂ = p_sem, threshold 0.95, λ_u = 1, no text or instance terms.
    pub fn fixmatch() -> Self {
        SslConfig {
            unlabeled_ratio: 1,
            lambda_s: 1.0,
            lambda_t: 0.0,
            lambda_u: 1.0,
            tau_t: 0.1,
            tau_i: 0.1,
            weights: FusionWeights {
                sem: 1.0,
                text: 0.0,
                ins: 0.0,
            },
            fuse: FuseMode::Probabilities,
            threshold: 0.95,
            threshold_mode: ThresholdMode::Fixed,
            ins_warmup_steps: 0,
            queue_per_class: 0,
            aggregate: Aggregate::Max,
            text: false,
            calibration: None,
            pseudo_target: PseudoTarget::Hard,
            queue_threshold: None,
            ema_teacher: None,
            instance_loss: None,
        }
    }

    /// SIT-FER as described: p̂ = (p_sem + p_text + p_ins) / 3, L_t and L_u with weight 1, a
    /// buffer with per-class queues of confident pseudo-labels.
    pub fn sitfer() -> Self {
        SslConfig {
            lambda_t: 1.0,
            weights: FusionWeights::EQUAL,
            threshold: 0.7,
            ins_warmup_steps: 100,
            queue_per_class: 256,
            aggregate: Aggregate::TopKMean(5),
            text: true,
            ..Self::fixmatch()
        }
    }

    /// The reference code's choices: raw-score fusion 0.3/0.2/0.5, threshold 0.75, loss weights
    /// 0.4/0.4/0.2, a labeled-only buffer with per-class max similarity. (Adam 1e-4 and batches
    /// 16 + 16 are set on the run by the `reference` preset.) Where it still differs from that
    /// code (cosines instead of raw dot products, p_ins's warm-up, L_u's normalisation, …) and
    /// why: docs/results/sitfer.md, "The `reference` preset and the reference code".
    pub fn reference() -> Self {
        SslConfig {
            lambda_s: 0.4,
            lambda_t: 0.4,
            lambda_u: 0.2,
            weights: FusionWeights {
                sem: 0.3,
                text: 0.2,
                ins: 0.5,
            },
            fuse: FuseMode::RawScores,
            threshold: 0.75,
            queue_per_class: 0,
            aggregate: Aggregate::Max,
            ..Self::sitfer()
        }
    }

    /// Whether the instance buffer is needed: for p_ins, or as L_in's bank (which it is even
    /// with p_ins out of the fused label, the ablation of p_ins under L_in).
    pub fn uses_memory(&self) -> bool {
        self.text && (self.weights.ins > 0.0 || self.instance_loss.is_some())
    }
}
