//! Several faces at once with stable identities: detections are matched to tracks by IoU with
//! each track's predicted box (constant velocity, so faces that cross keep their ids), tracks
//! are carried between detection frames, a face whose embedding is far from its track's
//! running embedding starts a new track (two people in the same spot are not one track), and
//! each track smooths its probabilities so labels do not flicker.

mod ema;
mod tracker;

pub use ema::Ema;
pub use tracker::{DEFAULT_MIN_IDENTITY_COS, Track, Tracker, TrackerConfig};

#[cfg(test)]
mod tests;
