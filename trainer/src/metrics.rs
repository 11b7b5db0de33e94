//! Classification metrics: accuracy, per-class recall and precision, macro-F1, confusion matrix.

use serde::{Deserialize, Serialize};
use sitfer_contract::labels::{Expression, NUM_CLASSES};

/// Confusion matrix, `counts[true][predicted]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Confusion {
    pub counts: [[u64; NUM_CLASSES]; NUM_CLASSES],
}

impl Confusion {
    pub fn add(&mut self, truth: usize, predicted: usize) {
        self.counts[truth][predicted] += 1;
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    pub fn correct(&self) -> u64 {
        (0..NUM_CLASSES).map(|i| self.counts[i][i]).sum()
    }

    pub fn accuracy(&self) -> f64 {
        let t = self.total();
        if t == 0 { 0.0 } else { self.correct() as f64 / t as f64 }
    }

    /// Recall per class; `None` for a class with no samples.
    pub fn recall(&self) -> [Option<f64>; NUM_CLASSES] {
        std::array::from_fn(|i| {
            let row: u64 = self.counts[i].iter().sum();
            (row > 0).then(|| self.counts[i][i] as f64 / row as f64)
        })
    }

    /// Precision per class; `None` for a class never predicted.
    pub fn precision(&self) -> [Option<f64>; NUM_CLASSES] {
        std::array::from_fn(|j| {
            let col: u64 = (0..NUM_CLASSES).map(|i| self.counts[i][j]).sum();
            (col > 0).then(|| self.counts[j][j] as f64 / col as f64)
        })
    }

    /// Mean F1 over the classes present in the ground truth (a never-predicted present class
    /// counts as F1 = 0).
    pub fn macro_f1(&self) -> f64 {
        let r = self.recall();
        let p = self.precision();
        let mut sum = 0.0;
        let mut n = 0;
        for i in 0..NUM_CLASSES {
            if let Some(rec) = r[i] {
                let prec = p[i].unwrap_or(0.0);
                sum += if prec + rec > 0.0 {
                    2.0 * prec * rec / (prec + rec)
                } else {
                    0.0
                };
                n += 1;
            }
        }
        if n == 0 { 0.0 } else { sum / n as f64 }
    }

    /// Recall averaged over present classes (balanced accuracy).
    pub fn mean_recall(&self) -> f64 {
        let r: Vec<f64> = self.recall().into_iter().flatten().collect();
        if r.is_empty() {
            0.0
        } else {
            r.iter().sum::<f64>() / r.len() as f64
        }
    }
}

/// A summary fit for JSON and reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    pub samples: u64,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub mean_recall: f64,
    /// class name -> recall
    pub per_class_recall: Vec<(String, Option<f64>)>,
    pub confusion: Confusion,
}

impl EvalReport {
    pub fn from_confusion(c: Confusion) -> Self {
        EvalReport {
            samples: c.total(),
            accuracy: c.accuracy(),
            macro_f1: c.macro_f1(),
            mean_recall: c.mean_recall(),
            per_class_recall: c
                .recall()
                .iter()
                .enumerate()
                .map(|(i, r)| (Expression::from_index(i).unwrap().name().to_string(), *r))
                .collect(),
            confusion: c,
        }
    }

    /// A plain-text table.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "samples {}  accuracy {:.2}%  macro-F1 {:.2}%  mean recall {:.2}%\n",
            self.samples,
            100.0 * self.accuracy,
            100.0 * self.macro_f1,
            100.0 * self.mean_recall
        );
        s.push_str("per-class recall:");
        for (name, r) in &self.per_class_recall {
            match r {
                Some(r) => s.push_str(&format!(" {name} {:.1}%", 100.0 * r)),
                None => s.push_str(&format!(" {name} -")),
            }
        }
        s.push_str("\nconfusion (rows: truth, columns: prediction)\n");
        s.push_str(&format!("{:>9}", ""));
        for e in sitfer_contract::labels::ALL {
            s.push_str(&format!("{:>9}", e.name()));
        }
        s.push('\n');
        for (i, row) in self.confusion.counts.iter().enumerate() {
            s.push_str(&format!("{:>9}", Expression::from_index(i).unwrap().name()));
            for v in row {
                s.push_str(&format!("{v:>9}"));
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_metrics() {
        let mut c = Confusion::default();
        // class 0: 3 samples, 2 right, 1 predicted as 1; class 1: 1 sample, right.
        c.add(0, 0);
        c.add(0, 0);
        c.add(0, 1);
        c.add(1, 1);
        assert!((c.accuracy() - 0.75).abs() < 1e-12);
        let r = c.recall();
        assert!((r[0].unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r[1], Some(1.0));
        assert_eq!(r[2], None);
        // F1_0 = 2*(1*2/3)/(1+2/3) = 0.8; F1_1 = 2*(0.5*1)/(1.5) = 2/3.
        assert!((c.macro_f1() - (0.8 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
    }
}
