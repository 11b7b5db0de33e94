//! Bundle settings for tests and fuzz seeds: one definition, so a new manifest field is filled
//! in one place rather than in every test that writes a bundle.

use super::manifest::{Fusion, FusionWeights, InputSpec};
use super::writer::BundleSettings;
use crate::fusion::{Aggregate, FuseMode};
use std::collections::BTreeMap;

/// Settings of a small bundle: `[N, 3, size, size]` input, embedding `dim`, fusion weights
/// 0.4 / 0.3 / 0.3 (set `fusion.weights.text` to 0 for a bundle without prototypes), no
/// provenance.
pub fn settings(size: u32, dim: usize) -> BundleSettings {
    BundleSettings {
        input: InputSpec {
            size,
            channels: 3,
            mean: [0.5; 3],
            std: [0.25; 3],
        },
        embedding_dim: dim,
        fusion: Fusion {
            tau_sem: 1.0,
            tau_t: 0.1,
            tau_i: 0.1,
            weights: FusionWeights {
                sem: 0.4,
                text: 0.3,
                ins: 0.3,
            },
            threshold: 0.9,
            mode: FuseMode::Probabilities,
            aggregate: Aggregate::Max,
        },
        provenance: BTreeMap::new(),
    }
}
