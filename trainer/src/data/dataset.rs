//! A dataset as read from disk: labeled train/val/test splits plus a report of what was dropped.

use super::sample::LabeledSample;
use serde::Serialize;
use sitfer_contract::labels::{Expression, NUM_CLASSES};
use std::collections::BTreeMap;

/// Which split a sample belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    /// Maps the split names datasets use (`Training`, `PublicTest`, `valid`, …).
    pub fn parse(name: &str) -> Option<Split> {
        let key = name.trim().to_ascii_lowercase();
        Some(match key.as_str() {
            "train" | "training" => Split::Train,
            "val" | "valid" | "validation" | "publictest" | "dev" => Split::Val,
            "test" | "privatetest" | "testing" => Split::Test,
            _ => return None,
        })
    }
}

/// Samples that a reader skipped, by reason (label outside the set, no majority, missing file…).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DropReport {
    pub reasons: BTreeMap<String, usize>,
}

impl DropReport {
    pub fn add(&mut self, reason: &str) {
        *self.reasons.entry(reason.to_string()).or_default() += 1;
    }

    pub fn total(&self) -> usize {
        self.reasons.values().sum()
    }
}

/// Labeled samples of every split that the dataset provides.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub train: Vec<LabeledSample>,
    pub val: Vec<LabeledSample>,
    pub test: Vec<LabeledSample>,
    pub dropped: DropReport,
}

impl Dataset {
    pub fn split_mut(&mut self, split: Split) -> &mut Vec<LabeledSample> {
        match split {
            Split::Train => &mut self.train,
            Split::Val => &mut self.val,
            Split::Test => &mut self.test,
        }
    }

    pub fn split(&self, split: Split) -> &[LabeledSample] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }

    /// Samples per class (canonical order) in a split.
    pub fn class_counts(samples: &[LabeledSample]) -> [usize; NUM_CLASSES] {
        let mut c = [0; NUM_CLASSES];
        for s in samples {
            c[s.target.class().index()] += 1;
        }
        c
    }

    /// Short human summary: per split, count and per-class counts.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for (name, s) in [("train", &self.train), ("val", &self.val), ("test", &self.test)] {
            if s.is_empty() {
                continue;
            }
            let counts = Self::class_counts(s);
            let per: Vec<String> = counts
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{}={c}", Expression::from_index(i).unwrap()))
                .collect();
            out.push_str(&format!("{name}: {} ({}); ", s.len(), per.join(" ")));
        }
        if self.dropped.total() > 0 {
            out.push_str(&format!("dropped: {:?}", self.dropped.reasons));
        }
        out
    }
}
