//! Tensor names of an exported model: the trainer's export writes them, the runtime's model
//! loader and head refit look them up.

/// The graph input `[N, 3, H, W]`.
pub const INPUT: &str = "input";
/// First output: class logits `[N, 7]`.
pub const LOGITS: &str = "logits";
/// Second output: the L2-normalised embedding `[N, d]`.
pub const EMBEDDING: &str = "embedding";
/// The pooled feature `[N, F]` both heads read; the adaptation refits the classifier on it.
pub const FEATURE: &str = "feature";
/// The classifier head's initializers.
pub const FC_WEIGHT: &str = "fc.weight";
pub const FC_BIAS: &str = "fc.bias";
