//! sitfer-trainer: supervised and semi-supervised facial expression recognition with candle.
//!
//! Pipeline order: [`data`] (readers, split, augmentation, loading) → [`model`] →
//! [`text`] (descriptions, encoder, prototypes) → [`method`] (supervised, FixMatch, SIT-FER: fusion, instance
//! memory, thresholds) → [`train`] (loop, optimisers, checkpoints; [`distill`]: a student from a teacher's p̂) → [`evaluate`] /
//! [`metrics`] / [`plot`].

pub mod alloc;
pub mod bench;
pub mod data;
pub mod distill;
pub mod evaluate;
pub mod export;
pub mod method;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod plot;
pub mod text;
pub mod train;
