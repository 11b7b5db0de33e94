//! Fusion settings: the manifest's temperatures, weights and threshold, plus the two choices
//! the trainer also has (fusion mode, buffer aggregate). The trainer uses these same types, so
//! both sides spell and serialise them identically.

use crate::bundle::{Fusion, FusionWeights};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FuseMode {
    /// p̂ = Σ w_k softmax(s_k) / Σ w_k (the paper's (p_sem + p_text + p_ins) / 3 with equal weights).
    Probabilities,
    /// p̂ = softmax(Σ w_k s_k) over the sources' scores (logits, cos/τ_t, sim/τ_i): the reference
    /// code's fusion.
    RawScores,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aggregate {
    /// The nearest entry of the class.
    Max,
    /// Mean of the k nearest entries of the class.
    TopKMean(usize),
}

impl std::str::FromStr for Aggregate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "max" {
            return Ok(Aggregate::Max);
        }
        match s.strip_prefix("top").and_then(|k| k.parse::<usize>().ok()) {
            Some(k) if k >= 1 => Ok(Aggregate::TopKMean(k)),
            _ => Err(format!("`{s}`: expected `max` or `topK` (e.g. `top5`)")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FusionConfig {
    pub tau_t: f32,
    pub tau_i: f32,
    pub weights: FusionWeights,
    /// Confidence of p̂ needed to add a face to the buffer.
    pub threshold: f32,
    pub mode: FuseMode,
    pub aggregate: Aggregate,
}

impl FusionConfig {
    /// The manifest's settings; the manifest has no mode or aggregate field yet, so these are
    /// the trainer's defaults (probabilities, max) unless overridden.
    pub fn from_manifest(f: &Fusion) -> Self {
        FusionConfig {
            tau_t: f.tau_t,
            tau_i: f.tau_i,
            weights: f.weights,
            threshold: f.threshold,
            mode: FuseMode::Probabilities,
            aggregate: Aggregate::Max,
        }
    }
}
