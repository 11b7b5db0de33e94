//! sitfer-trainer: supervised and semi-supervised facial expression recognition with candle.
//!
//! Pipeline order: [`data`] (readers, split, augmentation, loading) → [`model`] →
//! [`train`] (loop, optimisers, checkpoints) → [`evaluate`] / [`metrics`] / [`plot`].

pub mod alloc;
pub mod bench;
pub mod data;
pub mod evaluate;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod plot;
pub mod train;
