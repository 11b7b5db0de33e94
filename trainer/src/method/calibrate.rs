//! Calibration of p̂'s sources on a labeled hold-out the method never trains on: a temperature
//! per source fitted by negative log-likelihood, then the confidence threshold at which the
//! fused p̂ reaches a target precision on the same faces.
//!
//! Uncalibrated, the three sources come on different scales (logits; cosines / 0.1; top-k
//! cosines / 0.1), so the sharpest source decides the mean and a fixed threshold admits
//! pseudo-labels at whatever precision that source happens to have: the reason pseudo-labels
//! either never switched on (Protocol 1) or switched on at 44 % precision. The maths is the
//! contract's (`sitfer_contract::fusion::calibration`), shared with export.

use super::config::CalibrationConfig;
use super::memory::ins_scores;
use super::step::SslState;
use crate::evaluate::argmax;
use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};
use sitfer_contract::fusion::calibration::{fit_temperature, precision_threshold};
use sitfer_contract::fusion::{FuseMode, fuse_scores, softmax};
use sitfer_contract::labels::NUM_CLASSES;

type Row = [f32; NUM_CLASSES];

/// Temperatures the fusion divides each source's scores by.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Temperatures {
    pub sem: f64,
    pub text: f64,
    pub ins: f64,
}

impl Temperatures {
    pub fn to_array(self) -> [f64; 3] {
        [self.sem, self.text, self.ins]
    }
    pub fn from_array(a: [f64; 3]) -> Self {
        Temperatures {
            sem: a[0],
            text: a[1],
            ins: a[2],
        }
    }
}

/// Each source's scores on the hold-out at temperature 1 (logits, cosines, aggregated cosines).
pub struct HoldoutScores {
    pub sem: Vec<Row>,
    pub text: Option<Vec<Row>>,
    pub ins: Option<Vec<Row>>,
}

/// What one calibration found (logged with the run's metrics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationOutcome {
    pub temperatures: Temperatures,
    /// The threshold set for every class.
    pub threshold: f64,
    /// Whether some confidence reached the target precision (else the ceiling is used).
    pub reached: bool,
    /// Hold-out accuracy of p̂ and of each source, and the share of it p̂ admits at the threshold
    /// with the precision of what it admits.
    pub fused_accuracy: f64,
    pub sem_accuracy: f64,
    pub text_accuracy: Option<f64>,
    pub ins_accuracy: Option<f64>,
    pub admitted: f64,
    pub admitted_precision: Option<f64>,
}

/// Temperatures are searched over this range (log scale): wide enough for logits (τ ≈ 1) and
/// for cosines (τ ≈ 0.01–0.1).
const T_RANGE: (f64, f64) = (1e-3, 1e2);

fn rows(t: &Tensor) -> Result<Vec<Row>> {
    crate::evaluate::prob_rows(t)
}

fn accuracy(scores: &[Row], labels: &[usize]) -> f64 {
    let right = scores.iter().zip(labels).filter(|(s, y)| argmax(&s[..]) == **y).count();
    right as f64 / labels.len().max(1) as f64
}

fn scaled(row: &Row, t: f64) -> Row {
    row.map(|v| (v as f64 / t) as f32)
}

impl SslState {
    /// The hold-out's scores per source from the pseudo-labeler's outputs on it (eval mode, no
    /// augmentation; the teacher's when there is one). p_ins reads the buffer p̂ reads during
    /// training (with its queues).
    pub fn holdout_scores(&self, logits: &Tensor, embedding: &Tensor) -> Result<HoldoutScores> {
        let sem = rows(logits)?;
        let Some((proj, protos)) = self.labeler_head() else {
            return Ok(HoldoutScores {
                sem,
                text: None,
                ins: None,
            });
        };
        let z = proj.forward(embedding)?;
        let text = Some(rows(&z.matmul(&protos.t()?)?)?);
        let ins = match &self.memory {
            Some(mem) if !mem.is_empty() => {
                let bank = mem.bank(z.device(), self.cfg.queue_per_class == 0)?;
                Some(rows(&ins_scores(&z, &bank, self.cfg.aggregate, 1.0)?)?)
            }
            _ => None,
        };
        Ok(HoldoutScores { sem, text, ins })
    }

    /// Fits the temperatures and the threshold (unless the configuration fixes it) on the hold-out
    /// and sets them.
    pub fn calibrate(&mut self, s: &HoldoutScores, labels: &[usize], c: &CalibrationConfig) -> CalibrationOutcome {
        let fit = |rows: &[Row], fallback: f64| fit_temperature(rows, labels, T_RANGE.0, T_RANGE.1).unwrap_or(fallback);
        let t = Temperatures {
            sem: fit(&s.sem, self.temperatures.sem),
            text: s
                .text
                .as_deref()
                .map_or(self.temperatures.text, |r| fit(r, self.temperatures.text)),
            ins: s
                .ins
                .as_deref()
                .map_or(self.temperatures.ins, |r| fit(r, self.temperatures.ins)),
        };
        let w = self.cfg.weights;
        let mut conf = Vec::with_capacity(labels.len());
        let mut correct = Vec::with_capacity(labels.len());
        for (i, &y) in labels.iter().enumerate() {
            let sem = scaled(&s.sem[i], t.sem);
            let text = s.text.as_ref().map(|r| scaled(&r[i], t.text));
            let ins = s.ins.as_ref().map(|r| scaled(&r[i], t.ins));
            // The sources p̂ fuses in training; p_sem stands in when every weight is elsewhere
            // and those sources are absent (as in `SslState::fuse_scores`).
            let p = fuse_scores(
                [
                    (Some(&sem[..]), w.sem as f32),
                    (text.as_ref().map(|r| &r[..]), w.text as f32),
                    (ins.as_ref().map(|r| &r[..]), w.ins as f32),
                ],
                FuseMode::Probabilities,
            )
            .unwrap_or_else(|| softmax(&sem));
            let k = argmax(&p[..]);
            conf.push(p[k]);
            correct.push(k == y);
        }
        let found = match c.fixed_threshold {
            Some(t) => Some(t),
            None => precision_threshold(&conf, &correct, c.target_precision, c.threshold_floor, c.threshold_ceil),
        };
        let threshold = found.unwrap_or(c.threshold_ceil);
        let admitted: Vec<bool> = conf.iter().map(|&v| v >= threshold as f32).collect();
        let n_adm = admitted.iter().filter(|&&a| a).count();
        let right_adm = admitted.iter().zip(&correct).filter(|(a, c)| **a && **c).count();
        let n = labels.len().max(1) as f64;
        self.temperatures = t;
        self.thresholds.set_per_class([threshold; NUM_CLASSES]);
        CalibrationOutcome {
            temperatures: t,
            threshold,
            reached: found.is_some(),
            fused_accuracy: correct.iter().filter(|&&c| c).count() as f64 / n,
            sem_accuracy: accuracy(&s.sem, labels),
            text_accuracy: s.text.as_deref().map(|r| accuracy(r, labels)),
            ins_accuracy: s.ins.as_deref().map(|r| accuracy(r, labels)),
            admitted: n_adm as f64 / n,
            admitted_precision: (n_adm > 0).then(|| right_adm as f64 / n_adm as f64),
        }
    }
}
