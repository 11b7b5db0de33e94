//! Which faces enter the buffer. A confident p̂ alone is not enough: one person in front of the
//! camera for a minute would flood a class with near-identical embeddings. A face is admitted
//! when p̂ is confident and of the same class for several consecutive observations of its
//! track, no sooner than a minimum number of frames after the track's last admission, and only
//! if its embedding is not a near-duplicate of one the track already gave (the last
//! [`TRACK_MEMORY`] of them: a face that returns to an earlier look adds nothing).

use crate::fusion::{Probs, argmax};
use std::collections::VecDeque;

/// Admitted embeddings a track remembers for the near-duplicate check: bounded so a track that
/// lasts hours costs the same per face as a new one (at most this many dot products).
pub const TRACK_MEMORY: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdmissionPolicy {
    /// Confidence of p̂ needed (the manifest's `fusion.threshold`).
    pub threshold: f32,
    /// Consecutive confident observations of one class needed.
    pub stable_frames: u32,
    /// Frames between two admissions from one track.
    pub min_interval_frames: u64,
    /// Cosine distance (1 - cos) needed to every embedding the track gave before (its last
    /// [`TRACK_MEMORY`]).
    pub min_change: f32,
}

impl AdmissionPolicy {
    pub fn with_threshold(threshold: f32) -> Self {
        AdmissionPolicy {
            threshold,
            stable_frames: 3,
            min_interval_frames: 15,
            min_change: 0.02,
        }
    }

    /// Updates a track's state with one observation; the class to add `z` to, if admitted.
    pub fn consider(&self, st: &mut TrackAdmission, frame: u64, p_hat: &Probs, z: &[f32]) -> Option<usize> {
        let (class, conf) = argmax(p_hat);
        if conf < self.threshold {
            st.streak = 0;
            return None;
        }
        if st.streak_class == Some(class) && st.streak > 0 {
            st.streak += 1;
        } else {
            st.streak_class = Some(class);
            st.streak = 1;
        }
        if st.streak < self.stable_frames {
            return None;
        }
        if let Some(last) = st.last_frame
            && frame < last + self.min_interval_frames
        {
            return None;
        }
        let near = |prev: &Vec<f32>| 1.0 - prev.iter().zip(z).map(|(a, b)| a * b).sum::<f32>() < self.min_change;
        if st.admitted.iter().any(near) {
            return None;
        }
        st.last_frame = Some(frame);
        if st.admitted.len() == TRACK_MEMORY {
            st.admitted.pop_front();
        }
        st.admitted.push_back(z.to_vec());
        Some(class)
    }
}

/// Per-track admission state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrackAdmission {
    streak_class: Option<usize>,
    streak: u32,
    last_frame: Option<u64>,
    /// The track's admitted embeddings, oldest first.
    admitted: VecDeque<Vec<f32>>,
}
