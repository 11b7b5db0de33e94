//! The on-device instance buffer: the bundle's seed entries (fixed) plus bounded per-class FIFO
//! queues of confidently pseudo-labelled embeddings from this device, so that p_ins adapts to
//! this camera, light and people. A library API shared by `sitfer run` and `sitfer adapt`.

mod admission;
mod store;
pub mod versioned_file;

pub use admission::{AdmissionPolicy, TRACK_MEMORY, TrackAdmission};
pub use store::{BUFFER_FORMAT, BUFFER_VERSION, BufferError, MAX_QUEUE_PER_CLASS, space_id};

use crate::bundle::SeedBuffer;
use crate::fusion::ClassEntries;
use crate::labels::NUM_CLASSES;
use std::collections::VecDeque;

#[derive(Debug, Clone, PartialEq)]
pub struct InstanceBuffer {
    dim: usize,
    cap_per_class: usize,
    /// Seed rows of each class, flat.
    seed: [Vec<f32>; NUM_CLASSES],
    /// Pseudo-labelled rows of each class, oldest first.
    queues: [VecDeque<Vec<f32>>; NUM_CLASSES],
}

impl InstanceBuffer {
    /// An empty buffer whose queues hold at most `cap_per_class` entries per class.
    pub fn new(dim: usize, cap_per_class: usize) -> Self {
        InstanceBuffer {
            dim,
            cap_per_class: cap_per_class.min(MAX_QUEUE_PER_CLASS),
            seed: std::array::from_fn(|_| Vec::new()),
            queues: std::array::from_fn(|_| VecDeque::new()),
        }
    }

    /// Seeded with a bundle's buffer.
    pub fn from_seed(seed: &SeedBuffer, cap_per_class: usize) -> Self {
        let mut b = InstanceBuffer::new(seed.dim, cap_per_class);
        for i in 0..seed.len() {
            b.add_seed(seed.labels[i] as usize, seed.embedding(i));
        }
        b
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn cap_per_class(&self) -> usize {
        self.cap_per_class
    }

    pub fn add_seed(&mut self, class: usize, z: &[f32]) {
        assert_eq!(z.len(), self.dim, "embedding dimension");
        self.seed[class].extend_from_slice(z);
    }

    /// Queues a pseudo-labelled embedding; the class's oldest leaves when its queue is full.
    pub fn push(&mut self, class: usize, z: &[f32]) {
        assert_eq!(z.len(), self.dim, "embedding dimension");
        if self.cap_per_class == 0 {
            return;
        }
        let q = &mut self.queues[class];
        if q.len() == self.cap_per_class {
            q.pop_front();
        }
        q.push_back(z.to_vec());
    }

    /// Queued entries of `class`, oldest first.
    pub fn queued(&self, class: usize) -> impl Iterator<Item = &[f32]> {
        self.queues[class].iter().map(Vec::as_slice)
    }

    pub fn queued_counts(&self) -> [usize; NUM_CLASSES] {
        std::array::from_fn(|c| self.queues[c].len())
    }

    pub fn seed_counts(&self) -> [usize; NUM_CLASSES] {
        std::array::from_fn(|c| self.seed[c].len() / self.dim)
    }

    /// Seed plus queued entries per class.
    pub fn counts(&self) -> [usize; NUM_CLASSES] {
        let (s, q) = (self.seed_counts(), self.queued_counts());
        std::array::from_fn(|c| s[c] + q[c])
    }

    pub fn len(&self) -> usize {
        self.counts().iter().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every queued entry (the seed stays).
    pub fn reset_queues(&mut self) {
        for q in &mut self.queues {
            q.clear();
        }
    }
}

impl ClassEntries for InstanceBuffer {
    /// Seed then queued entries of `class`.
    fn class_entries(&self, class: usize) -> impl Iterator<Item = &[f32]> {
        self.seed[class]
            .chunks_exact(self.dim)
            .chain(self.queues[class].iter().map(Vec::as_slice))
    }
}

#[cfg(test)]
mod tests;
