//! What a run reports as it goes: per-interval statistics (loss terms, pseudo-label mask rate
//! and precision against the hidden labels, for analysis only), `metrics.jsonl`, the best
//! validation report and the plots.

use super::checkpoint::{EpochRecord, SslRecord};
use super::error::{TrainError, io_err};
use super::prepare::PreparedData;
use crate::method::{CalibrationOutcome, SslState, StepOutput};
use crate::metrics::EvalReport;
use crate::plot;
use sitfer_contract::file_write::atomic_write_bytes;
use std::path::Path;

/// Statistics since the last validation.
#[derive(Default)]
pub(super) struct Interval {
    pub(super) loss_sum: f64,
    pub(super) correct: usize,
    pub(super) seen: usize,
    pub(super) train_seconds: f64,
    pub(super) steps: usize,
    pub(super) loss_s: f64,
    pub(super) loss_t: Option<f64>,
    pub(super) loss_u: f64,
    pub(super) loss_in: Option<f64>,
    pub(super) unlabeled: usize,
    pub(super) masked: usize,
    pub(super) masked_correct: usize,
    pub(super) fused_correct: usize,
    pub(super) sem_correct: usize,
    pub(super) text_correct: Option<usize>,
    pub(super) ins_correct: Option<usize>,
    /// Unlabeled samples whose instance source was active.
    pub(super) ins_seen: usize,
    /// The latest calibration on the hold-out in this interval.
    pub(super) calibration: Option<CalibrationOutcome>,
}

impl Interval {
    /// Accumulates a step's semi-supervised statistics; `samples` are the unlabeled batch's
    /// store indices, mapped to hidden labels for analysis only.
    pub(super) fn add_ssl(&mut self, out: &StepOutput, samples: Option<&[usize]>, data: &PreparedData) {
        self.steps += 1;
        self.loss_s += out.l_s as f64;
        if let Some(t) = out.l_t {
            *self.loss_t.get_or_insert(0.0) += t as f64;
        }
        self.loss_u += out.l_u.unwrap_or(0.0) as f64;
        if let Some(l) = out.l_in {
            *self.loss_in.get_or_insert(0.0) += l as f64;
        }
        let (Some(p), Some(samples), Some((_, kept))) = (&out.unlabeled, samples, &data.unlabeled) else {
            return;
        };
        let hidden: Vec<Option<usize>> = samples
            .iter()
            .map(|&i| data.split.analysis.get(kept[i]).map(|e| e as usize))
            .collect();
        let hits = |pred: &[usize]| pred.iter().zip(&hidden).filter(|(p, h)| Some(**p) == **h).count();
        self.unlabeled += samples.len();
        self.fused_correct += hits(&p.class);
        self.sem_correct += hits(&p.sem);
        if let Some(t) = &p.text {
            *self.text_correct.get_or_insert(0) += hits(t);
        }
        if let Some(i) = &p.ins {
            *self.ins_correct.get_or_insert(0) += hits(i);
            self.ins_seen += samples.len();
        }
        for ((c, m), h) in p.class.iter().zip(&p.mask).zip(&hidden) {
            if *m {
                self.masked += 1;
                if Some(*c) == *h {
                    self.masked_correct += 1;
                }
            }
        }
    }

    pub(super) fn ssl_record(&self, ssl: &SslState) -> Option<SslRecord> {
        if self.steps == 0 {
            return None;
        }
        let n = self.steps as f64;
        let u = self.unlabeled as f64;
        let share = |c: usize| (self.unlabeled > 0).then(|| c as f64 / u);
        let th = ssl.thresholds.per_class();
        Some(SslRecord {
            loss_s: self.loss_s / n,
            loss_t: self.loss_t.map(|t| t / n),
            loss_u: self.loss_u / n,
            loss_in: self.loss_in.map(|l| l / n),
            mask_rate: share(self.masked),
            pseudo_precision: (self.masked > 0).then(|| self.masked_correct as f64 / self.masked as f64),
            fused_accuracy: share(self.fused_correct),
            sem_accuracy: share(self.sem_correct),
            text_accuracy: self.text_correct.map(|c| c as f64 / u),
            ins_accuracy: self.ins_correct.map(|c| c as f64 / self.ins_seen.max(1) as f64),
            buffer_size: ssl.memory.as_ref().map(|m| m.len()),
            mean_threshold: th.iter().sum::<f64>() / th.len() as f64,
            temperatures: Some(ssl.temperatures.to_array()),
            calibration: self.calibration.clone(),
        })
    }
}

pub(super) fn write_metrics(run_dir: &Path, history: &[EpochRecord]) -> Result<(), TrainError> {
    let p = run_dir.join("metrics.jsonl");
    let text: String = history
        .iter()
        .map(|r| serde_json::to_string(r).expect("record serialises") + "\n")
        .collect();
    atomic_write_bytes(&p, text.as_bytes()).map_err(io_err(&p))
}

pub(super) fn write_report(run_dir: &Path, report: &EvalReport) -> Result<(), TrainError> {
    let p = run_dir.join("best-val-report.json");
    atomic_write_bytes(&p, &serde_json::to_vec_pretty(report).expect("report serialises")).map_err(io_err(&p))?;
    let png = run_dir.join("best-val-confusion.png");
    if let Err(e) = plot::confusion_matrix(
        &png,
        &format!("validation, acc {:.2}%", 100.0 * report.accuracy),
        &report.confusion,
    ) {
        log::warn!("{}: {e}", png.display());
    }
    Ok(())
}

fn plot_pseudo_labels(run_dir: &Path, history: &[EpochRecord]) {
    let with: Vec<(f64, &SslRecord)> = history
        .iter()
        .filter_map(|r| {
            r.ssl
                .as_ref()
                .filter(|s| s.mask_rate.is_some())
                .map(|s| (r.step as f64, s))
        })
        .collect();
    if with.is_empty() {
        return;
    }
    let series = |name, f: &dyn Fn(&SslRecord) -> Option<f64>| plot::Series {
        name,
        points: with.iter().filter_map(|(x, r)| f(r).map(|v| (*x, 100.0 * v))).collect(),
    };
    let all = [
        series("mask rate", &|r| r.mask_rate),
        series("precision of confident", &|r| r.pseudo_precision),
        series("accuracy of p-hat (all)", &|r| r.fused_accuracy),
        series("p_sem", &|r| r.sem_accuracy),
        series("p_text", &|r| r.text_accuracy),
        series("p_ins", &|r| r.ins_accuracy),
    ];
    let present: Vec<plot::Series> = all.into_iter().filter(|s| !s.points.is_empty()).collect();
    let path = run_dir.join("pseudo-labels.png");
    if let Err(e) = plot::line_chart(
        &path,
        "Pseudo-labels on the unlabeled split (hidden labels, analysis only)",
        "step",
        "%",
        &present,
        None,
    ) {
        log::warn!("{}: {e}", path.display());
    }
}

pub(super) fn plot_history(run_dir: &Path, history: &[EpochRecord]) {
    let acc = [
        plot::Series {
            name: "train (augmented)",
            points: history
                .iter()
                .map(|r| (r.step as f64, 100.0 * r.train_accuracy))
                .collect(),
        },
        plot::Series {
            name: "validation",
            points: history
                .iter()
                .map(|r| (r.step as f64, 100.0 * r.val_accuracy))
                .collect(),
        },
    ];
    let term = |name, f: fn(&SslRecord) -> Option<f64>| plot::Series {
        name,
        points: history
            .iter()
            .filter_map(|r| r.ssl.as_ref().and_then(f).map(|v| (r.step as f64, v)))
            .collect(),
    };
    let loss: Vec<plot::Series> = [
        plot::Series {
            name: "train loss",
            points: history.iter().map(|r| (r.step as f64, r.train_loss)).collect(),
        },
        term("L_s", |s| Some(s.loss_s)),
        term("L_t", |s| s.loss_t),
        term("L_u", |s| s.mask_rate.map(|_| s.loss_u)),
        term("L_in", |s| s.loss_in),
    ]
    .into_iter()
    .filter(|s| !s.points.is_empty())
    .collect();
    for (path, title, y, series) in [
        (run_dir.join("accuracy.png"), "Accuracy", "accuracy (%)", &acc[..]),
        (run_dir.join("loss.png"), "Training loss", "cross-entropy", &loss[..]),
    ] {
        if let Err(e) = plot::line_chart(&path, title, "step", y, series, None) {
            log::warn!("{}: {e}", path.display());
        }
    }
    plot_pseudo_labels(run_dir, history);
}

/// The line a validation logs: loss, accuracies, throughput and the method's terms.
pub(super) fn log_record(record: &EpochRecord) {
    log::info!(
        "step {} loss {:.4} train acc {:.2}% | val acc {:.2}%{} macro-F1 {:.2}% | {:.0} img/s{}",
        record.step,
        record.train_loss,
        100.0 * record.train_accuracy,
        100.0 * record.val_accuracy,
        record
            .val_fused_accuracy
            .map(|a| format!(" (fused {:.2}%)", 100.0 * a))
            .unwrap_or_default(),
        100.0 * record.val_macro_f1,
        record.images_per_second,
        record
            .ssl
            .as_ref()
            .map(|r| match r.mask_rate {
                Some(m) => format!(
                    " | mask {:.1}% precision {} L_u {:.3}",
                    100.0 * m,
                    r.pseudo_precision
                        .map(|p| format!("{:.1}%", 100.0 * p))
                        .unwrap_or_else(|| "-".into()),
                    r.loss_u
                ),
                None => format!(
                    " | L_s {:.3} L_t {}",
                    r.loss_s,
                    r.loss_t.map(|t| format!("{t:.3}")).unwrap_or_else(|| "-".into())
                ),
            })
            .unwrap_or_default()
    );
}
