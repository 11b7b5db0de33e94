//! Which faces enter the buffer. A confident p̂ alone is not enough: one person in front of the
//! camera for a minute would flood a class with near-identical embeddings. A face is admitted
//! when p̂ is confident and of the same class for several consecutive observations of its
//! track, no sooner than a minimum number of frames after the track's last admission, and only
//! if its embedding moved away from that last admitted one.

use crate::fusion::{Probs, argmax};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdmissionPolicy {
    /// Confidence of p̂ needed (the manifest's `fusion.threshold`).
    pub threshold: f32,
    /// Consecutive confident observations of one class needed.
    pub stable_frames: u32,
    /// Frames between two admissions from one track.
    pub min_interval_frames: u64,
    /// Cosine distance (1 - cos) to the track's last admitted embedding needed.
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
        if let Some(prev) = &st.last_embedding {
            let cos: f32 = prev.iter().zip(z).map(|(a, b)| a * b).sum();
            if 1.0 - cos < self.min_change {
                return None;
            }
        }
        st.last_frame = Some(frame);
        st.last_embedding = Some(z.to_vec());
        Some(class)
    }
}

/// Per-track admission state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrackAdmission {
    streak_class: Option<usize>,
    streak: u32,
    last_frame: Option<u64>,
    last_embedding: Option<Vec<f32>>,
}
