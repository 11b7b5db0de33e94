//! The two fusion choices besides weights and temperatures: how the sources are combined and
//! how a class's buffer similarities are aggregated. The trainer saves them in its run config and
//! the manifest carries them, so both sides spell and serialise them identically.

use crate::bundle::Fusion;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FuseMode {
    /// p̂ = Σ w_k softmax(s_k) / Σ w_k (the paper's (p_sem + p_text + p_ins) / 3 with equal weights).
    Probabilities,
    /// p̂ = softmax(Σ w_k s_k) over the sources' scores (logits, cos/τ_t, sim/τ_i): the reference
    /// code's fusion.
    RawScores,
}

impl std::str::FromStr for FuseMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "probabilities" => Ok(FuseMode::Probabilities),
            "raw-scores" => Ok(FuseMode::RawScores),
            _ => Err(format!("`{s}`: expected `probabilities` or `raw-scores`")),
        }
    }
}

impl std::fmt::Display for FuseMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FuseMode::Probabilities => "probabilities",
            FuseMode::RawScores => "raw-scores",
        })
    }
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

impl std::fmt::Display for Aggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Aggregate::Max => f.write_str("max"),
            Aggregate::TopKMean(k) => write!(f, "top{k}"),
        }
    }
}

/// The manifest's fusion settings as the runtime applies them; kept as its own type so a
/// command line can override a field without touching the bundle's manifest.
pub type FusionConfig = Fusion;
