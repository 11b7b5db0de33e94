//! Semi-supervised splits: N labels per class (or a fraction), seeded and deterministic; the rest
//! becomes unlabeled. The split is saved as a manifest so that a run can be repeated exactly.

use super::dataset::Dataset;
use super::error::{DataError, Result};
use super::sample::{LabeledSample, UnlabeledSample};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sitfer_contract::labels::{Expression, NUM_CLASSES};
use std::collections::HashMap;
use std::path::Path;

/// How many training labels to keep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelBudget {
    /// Every training label (no unlabeled data).
    All,
    /// N per class (all of a class that has fewer).
    PerClass(usize),
    /// This fraction of each class (at least one).
    Fraction(f64),
}

impl std::str::FromStr for LabelBudget {
    type Err = String;
    /// `all`, an integer (per class) or a fraction like `0.1` / `10%`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("all") {
            return Ok(LabelBudget::All);
        }
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p.parse().map_err(|_| format!("`{s}` is not a percentage"))?;
            return Self::fraction(v / 100.0);
        }
        if let Ok(n) = s.parse::<usize>() {
            return if n == 0 {
                Err("labels per class must be ≥ 1".into())
            } else {
                Ok(LabelBudget::PerClass(n))
            };
        }
        let v: f64 = s
            .parse()
            .map_err(|_| format!("`{s}` is not `all`, a count or a fraction"))?;
        Self::fraction(v)
    }
}

impl LabelBudget {
    fn fraction(v: f64) -> std::result::Result<Self, String> {
        if v > 0.0 && v <= 1.0 {
            Ok(LabelBudget::Fraction(v))
        } else {
            Err(format!("fraction {v} is not in (0, 1]"))
        }
    }
}

/// Labels of the unlabeled split, kept apart for analysis only (pseudo-label precision). The
/// training code gets [`UnlabeledSample`]s, which have no label; this type is handed to the
/// metrics logger alone.
#[derive(Debug, Clone, Default)]
pub struct AnalysisLabels(Vec<Expression>);

impl AnalysisLabels {
    /// The hidden label of unlabeled sample `i` (same index as `SemiSplit::unlabeled`).
    pub fn get(&self, i: usize) -> Option<Expression> {
        self.0.get(i).copied()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A labeled / unlabeled partition of a training split.
#[derive(Debug, Clone)]
pub struct SemiSplit {
    pub labeled: Vec<LabeledSample>,
    pub unlabeled: Vec<UnlabeledSample>,
    pub analysis: AnalysisLabels,
    pub manifest: SplitManifest,
}

/// The saved form of a split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitManifest {
    pub version: u32,
    pub seed: u64,
    pub budget: LabelBudget,
    /// SHA-256 over the sorted ids of the training split the split was drawn from.
    pub train_fingerprint: String,
    pub labeled: Vec<String>,
    pub unlabeled: Vec<String>,
}

pub const MANIFEST_VERSION: u32 = 1;

/// Fingerprint of a set of sample ids (order-independent).
pub fn fingerprint(samples: &[LabeledSample]) -> String {
    let mut ids: Vec<&str> = samples.iter().map(|s| s.id.as_str()).collect();
    ids.sort_unstable();
    let mut h = Sha256::new();
    for id in ids {
        h.update(id.as_bytes());
        h.update([0u8]);
    }
    format!("{:x}", h.finalize())
}

/// Draws the split. Each class is shuffled with its own stream derived from `seed`, so the draw
/// of one class does not depend on the size of another.
pub fn semi_supervised_split(train: &[LabeledSample], budget: LabelBudget, seed: u64) -> SemiSplit {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); NUM_CLASSES];
    // Sort by id first so the draw does not depend on the reader's file order.
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.sort_by(|&a, &b| train[a].id.cmp(&train[b].id));
    for i in order {
        by_class[train[i].target.class().index()].push(i);
    }
    let mut is_labeled = vec![false; train.len()];
    for (c, idx) in by_class.iter_mut().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (c as u64 + 1));
        idx.shuffle(&mut rng);
        let take = match budget {
            LabelBudget::All => idx.len(),
            LabelBudget::PerClass(n) => n.min(idx.len()),
            LabelBudget::Fraction(f) => ((idx.len() as f64 * f).round() as usize).clamp(1.min(idx.len()), idx.len()),
        };
        for &i in &idx[..take] {
            is_labeled[i] = true;
        }
    }
    let mut labeled = Vec::new();
    let mut unlabeled = Vec::new();
    let mut hidden = Vec::new();
    for (i, s) in train.iter().enumerate() {
        if is_labeled[i] {
            labeled.push(s.clone());
        } else {
            hidden.push(s.target.class());
            unlabeled.push(s.clone().into_unlabeled());
        }
    }
    let manifest = SplitManifest {
        version: MANIFEST_VERSION,
        seed,
        budget,
        train_fingerprint: fingerprint(train),
        labeled: labeled.iter().map(|s| s.id.clone()).collect(),
        unlabeled: unlabeled.iter().map(|s| s.id.clone()).collect(),
    };
    SemiSplit {
        labeled,
        unlabeled,
        analysis: AnalysisLabels(hidden),
        manifest,
    }
}

/// Rebuilds a split from a manifest. Every id must exist in `train`.
pub fn split_from_manifest(train: &[LabeledSample], manifest: &SplitManifest, path: &Path) -> Result<SemiSplit> {
    if manifest.version != MANIFEST_VERSION {
        return Err(DataError::Manifest {
            path: path.to_path_buf(),
            message: format!(
                "field `version`: {} is not supported (expected {MANIFEST_VERSION})",
                manifest.version
            ),
        });
    }
    let by_id: HashMap<&str, &LabeledSample> = train.iter().map(|s| (s.id.as_str(), s)).collect();
    let find = |id: &String, field: &str| {
        by_id.get(id.as_str()).copied().ok_or_else(|| DataError::Manifest {
            path: path.to_path_buf(),
            message: format!("field `{field}`: sample `{id}` is not in the training split"),
        })
    };
    let labeled = manifest
        .labeled
        .iter()
        .map(|id| find(id, "labeled").cloned())
        .collect::<Result<Vec<_>>>()?;
    let mut unlabeled = Vec::new();
    let mut hidden = Vec::new();
    for id in &manifest.unlabeled {
        let s = find(id, "unlabeled")?;
        hidden.push(s.target.class());
        unlabeled.push(s.clone().into_unlabeled());
    }
    Ok(SemiSplit {
        labeled,
        unlabeled,
        analysis: AnalysisLabels(hidden),
        manifest: manifest.clone(),
    })
}

impl SplitManifest {
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        sitfer_contract::file_write::atomic_write_bytes(path, &bytes)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| DataError::Manifest {
            path: path.to_path_buf(),
            message: format!("line {} column {}: {e}", e.line(), e.column()),
        })
    }
}

/// Splits the labeled faces into (training, calibration hold-out): a stratified, seeded
/// `fraction` of each class (at least one face of a class that has any) is held out. The draw
/// depends only on the faces' ids and `seed`, so a resumed run or another method on the same
/// split holds out the same faces.
pub fn hold_out(labeled: Vec<LabeledSample>, fraction: f64, seed: u64) -> (Vec<LabeledSample>, Vec<LabeledSample>) {
    if fraction <= 0.0 {
        return (labeled, Vec::new());
    }
    let drawn = semi_supervised_split(&labeled, LabelBudget::Fraction(fraction.min(1.0)), seed ^ 0x0043_414C);
    let held: std::collections::HashSet<String> = drawn.labeled.into_iter().map(|s| s.id).collect();
    let (calibration, train): (Vec<_>, Vec<_>) = labeled.into_iter().partition(|s| held.contains(&s.id));
    (train, calibration)
}

/// Moves a stratified, seeded fraction of `train` into `val` when a dataset has no validation
/// split (RAF-DB), so that model selection never looks at test.
pub fn carve_validation(dataset: &mut Dataset, fraction: f64, seed: u64) {
    if !dataset.val.is_empty() || fraction <= 0.0 {
        return;
    }
    let split = semi_supervised_split(
        &dataset.train,
        LabelBudget::Fraction(fraction.min(1.0)),
        seed ^ 0x0056_414C,
    );
    let val_ids: std::collections::HashSet<String> = split.labeled.iter().map(|s| s.id.clone()).collect();
    let (val, train): (Vec<_>, Vec<_>) = std::mem::take(&mut dataset.train)
        .into_iter()
        .partition(|s| val_ids.contains(&s.id));
    dataset.train = train;
    dataset.val = val;
}
