//! The semi-supervised algorithm: fused pseudo-labels from the classifier (p_sem), the text
//! prototypes (p_text) and the instance memory (p_ins); thresholds; the combined loss; and the
//! step that ties them together for `supervised`, `fixmatch` and `sitfer`.

pub mod config;
pub mod fusion;
pub mod loss;
pub mod memory;
pub mod step;
pub mod threshold;

pub use config::{Aggregate, FuseMode, FusionWeights, SslConfig, ThresholdMode};
pub use memory::InstanceMemory;
pub use step::{SslState, StepOutput};
pub use threshold::Thresholds;
