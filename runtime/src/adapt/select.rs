//! Which confident faces become the domain's buffer entries. Footage is redundant (consecutive
//! frames of one person are near-duplicates), so each class takes its most confident face
//! first, then the faces farthest from what it already holds, weighted by confidence, and no
//! track gives more than its share: a buffer that covers the domain, not one moment of it. A
//! track's share grows with its length, so one person in front of the camera for minutes (one
//! long track) is not held to the few entries of someone walking past.

use crate::labels::NUM_CLASSES;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SelectConfig {
    /// Entries per class at most.
    pub per_class: usize,
    /// Entries from one track at most (over all classes), however short the track.
    pub per_track: usize,
    /// A track may also give one entry per this many of its faces (0: `per_track` only).
    pub faces_per_entry: u64,
    /// Cosine distance (1 - cos) to the class's chosen entries below which a face is a
    /// duplicate and never chosen.
    pub min_distance: f32,
}

impl Default for SelectConfig {
    fn default() -> Self {
        SelectConfig {
            per_class: 64,
            per_track: 4,
            faces_per_entry: 4,
            min_distance: 0.01,
        }
    }
}

/// A confidently pseudo-labelled face.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub class: usize,
    pub confidence: f32,
    pub track: u64,
    /// Faces observed on the candidate's track over the whole footage (for its share).
    pub track_faces: u64,
    /// Unit embedding.
    pub embedding: Vec<f32>,
    pub feature: Option<Vec<f32>>,
}

impl SelectConfig {
    /// Entries a track of `faces` observed faces may give.
    pub fn track_cap(&self, faces: u64) -> usize {
        let by_length = faces.checked_div(self.faces_per_entry).unwrap_or(0);
        self.per_track.max(by_length as usize)
    }
}

fn cos_distance(a: &[f32], b: &[f32]) -> f32 {
    1.0 - a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()
}

/// Indices of the chosen candidates, class by class in the order they were chosen. Greedy
/// farthest-point selection scored by confidence × distance to the nearest chosen entry of the
/// class: O(per_class × candidates of the class) per class.
pub fn select(cands: &[Candidate], cfg: &SelectConfig) -> Vec<usize> {
    let mut chosen = Vec::new();
    let mut from_track: HashMap<u64, usize> = HashMap::new();
    for class in 0..NUM_CLASSES {
        let pool: Vec<usize> = (0..cands.len()).filter(|&i| cands[i].class == class).collect();
        // Distance to the nearest chosen entry of this class; none chosen yet counts as 1 so
        // the first pick is the most confident face.
        let mut nearest = vec![1.0f32; pool.len()];
        let mut taken = vec![false; pool.len()];
        let mut n = 0;
        while n < cfg.per_class {
            let mut best: Option<(usize, f32)> = None;
            for (k, &i) in pool.iter().enumerate() {
                let c = &cands[i];
                let track_full = from_track.get(&c.track).copied().unwrap_or(0) >= cfg.track_cap(c.track_faces);
                if taken[k] || track_full || nearest[k] < cfg.min_distance {
                    continue;
                }
                let score = c.confidence * nearest[k];
                if best.is_none_or(|(_, s)| score > s) {
                    best = Some((k, score));
                }
            }
            let Some((k, _)) = best else { break };
            taken[k] = true;
            n += 1;
            let i = pool[k];
            *from_track.entry(cands[i].track).or_default() += 1;
            chosen.push(i);
            for (j, &o) in pool.iter().enumerate() {
                if !taken[j] {
                    nearest[j] = nearest[j].min(cos_distance(&cands[i].embedding, &cands[o].embedding));
                }
            }
        }
    }
    chosen
}
