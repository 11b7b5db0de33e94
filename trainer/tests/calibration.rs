//! Calibration of p̂ on the labeled hold-out (Protocol 2 of docs/results/sitfer.md): the hold-out
//! is never trained on, the buffer is full before the first step, temperatures and threshold are
//! fitted, logged, checkpointed and resumed.

mod common;

use candle_core::Device;
use common::{run_opts, semi_config as config, write_dataset, write_prototypes};
use sitfer_contract::labels::NUM_CLASSES;
use sitfer_trainer::method::calibrate::HoldoutScores;
use sitfer_trainer::method::{CalibrationConfig, FusionWeights, SslConfig, SslState, ThresholdMode};
use sitfer_trainer::train::checkpoint::{self, Which};
use sitfer_trainer::train::config::{DataConfig, Method, TrainConfig};
use sitfer_trainer::train::run::train;
use std::collections::HashSet;
use std::path::Path;

const DIM: usize = 8;

fn calibrated(root: &Path, steps: u64) -> TrainConfig {
    let ssl = SslConfig {
        ins_warmup_steps: 0,
        queue_per_class: 4,
        unlabeled_ratio: 2,
        calibration: Some(CalibrationConfig::protocol2(2, 0.9)),
        ..SslConfig::sitfer()
    };
    let c = config(root, Method::Sitfer, Some(ssl), steps);
    TrainConfig {
        data: DataConfig {
            calibration_fraction: 0.34, // 1 of each class's 3 labeled faces
            ..c.data
        },
        ..c
    }
}

fn ids(path: &Path) -> Vec<String> {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_calibrated_run_holds_out_fits_logs_and_resumes() {
    let data = tempfile::tempdir().unwrap();
    write_dataset(data.path(), 10, 4242);
    write_prototypes(&data.path().join("prototypes.json"), DIM);
    let cfg = calibrated(data.path(), 6);
    let run = tempfile::tempdir().unwrap();
    let s = train(&cfg, &run_opts(run.path(), false, None)).unwrap();
    assert_eq!(s.step, 6);

    // One face per class held out, all of them labeled faces of the split, none trained on.
    let held = ids(&run.path().join("calibration.json"));
    assert_eq!(held.len(), NUM_CLASSES, "{held:?}");
    let split: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.path().join("split.json")).unwrap()).unwrap();
    let labeled: HashSet<&str> = split["labeled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(held.iter().all(|id| labeled.contains(id.as_str())));
    let classes: HashSet<&str> = held.iter().map(|id| id.split('/').nth(1).unwrap()).collect();
    assert_eq!(classes.len(), NUM_CLASSES, "stratified: {held:?}");

    let first = s.history[0].ssl.as_ref().unwrap();
    // The buffer's 14 labeled training slots are filled before the first step (without the
    // prefill, a first batch of 7 fills at most 7); the hold-out's 7 never enter it.
    assert!(first.buffer_size.unwrap() >= 14, "{first:?}");
    let cal = first.calibration.as_ref().expect("calibrated at step 0 and logged");
    let t = cal.temperatures;
    assert!(t.sem > 0.0 && t.text > 0.0 && t.ins > 0.0 && (t.sem, t.text, t.ins) != (1.0, 0.1, 0.1));
    assert!((0.5..=0.99).contains(&cal.threshold), "{cal:?}");
    assert!(cal.ins_accuracy.is_some() && cal.text_accuracy.is_some());
    for r in &s.history {
        let ssl = r.ssl.as_ref().unwrap();
        let th = ssl.mean_threshold;
        assert!(
            (0.5 - 1e-9..=0.99 + 1e-9).contains(&th),
            "the threshold is the calibrated one: {th}"
        );
        assert!(ssl.temperatures.is_some());
    }

    // Stopped after 4 steps and resumed: the temperatures and thresholds of the checkpoint
    // carry on, so the two runs end equal.
    let resumed = tempfile::tempdir().unwrap();
    let opts = |stop| run_opts(resumed.path(), true, stop);
    train(&cfg, &opts(Some(4))).unwrap();
    let r = train(&cfg, &opts(None)).unwrap();
    assert_eq!(ids(&resumed.path().join("calibration.json")), held);
    let last = |h: &[sitfer_trainer::train::checkpoint::EpochRecord]| {
        let ssl = h.last().unwrap().ssl.clone().unwrap();
        (ssl.temperatures.unwrap(), ssl.mean_threshold)
    };
    let (ta, ha) = last(&s.history);
    let (tb, hb) = last(&r.history);
    for (a, b) in ta.iter().zip(tb) {
        assert!((a - b).abs() < 1e-4 * a.abs().max(1.0), "{ta:?} vs {tb:?}");
    }
    assert!((ha - hb).abs() < 1e-6);
    let ck = checkpoint::load(
        &checkpoint::resolve(resumed.path(), Which::Latest).unwrap(),
        &Device::Cpu,
    )
    .unwrap();
    assert!(ck.optimizer.contains_key("ssl.temperatures"));
}

#[test]
fn calibration_without_a_hold_out_is_refused() {
    let data = tempfile::tempdir().unwrap();
    write_dataset(data.path(), 6, 1);
    write_prototypes(&data.path().join("prototypes.json"), DIM);
    let mut cfg = calibrated(data.path(), 2);
    cfg.data.calibration_fraction = 0.0;
    let run = tempfile::tempdir().unwrap();
    let err = train(&cfg, &run_opts(run.path(), false, None)).unwrap_err().to_string();
    assert!(err.contains("--calibration-fraction"), "{err}");
}

/// Hold-out scores: `n` faces of cycling classes; `sem` puts `margin` on the true class for a
/// share `right` of them (else on the next class); text is flat noise-free 0.01 on the truth.
fn scores(n: usize, margin: f32, right: f64) -> (HoldoutScores, Vec<usize>) {
    let mut sem = Vec::new();
    let mut text = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let y = i % NUM_CLASSES;
        let hit = ((i / NUM_CLASSES) as f64 + 0.5) / (n / NUM_CLASSES) as f64 <= right;
        let mut s = [0f32; NUM_CLASSES];
        s[if hit { y } else { (y + 1) % NUM_CLASSES }] = margin;
        let mut t = [0f32; NUM_CLASSES];
        t[y] = 0.01;
        sem.push(s);
        text.push(t);
        labels.push(y);
    }
    (
        HoldoutScores {
            sem,
            text: Some(text),
            ins: None,
        },
        labels,
    )
}

fn state(weights: FusionWeights) -> SslState {
    SslState::new(
        SslConfig {
            weights,
            threshold_mode: ThresholdMode::Fixed,
            ..SslConfig::sitfer()
        },
        None,
        None,
        None,
    )
}

#[test]
fn temperatures_follow_each_sources_reliability_and_the_threshold_its_precision() {
    let (s, y) = scores(700, 20.0, 0.7);
    let c = CalibrationConfig::protocol2(1, 0.9);
    // p_sem alone, overconfident (margin 20, right 70 %): softened until confidence ≈ accuracy,
    // and no confidence reaches 90 % precision: the ceiling.
    let mut sem_only = state(FusionWeights {
        sem: 1.0,
        text: 0.0,
        ins: 0.0,
    });
    let out = sem_only.calibrate(&s, &y, &c);
    assert!(out.temperatures.sem > 5.0, "{out:?}");
    let p = 1.0 / (1.0 + 6.0 * (-20.0 / out.temperatures.sem).exp());
    assert!((p - 0.7).abs() < 0.02, "calibrated confidence {p}");
    assert!(!out.reached && out.threshold == 0.99, "{out:?}");
    assert!((out.sem_accuracy - 0.7).abs() < 0.01);
    // The text source is always right but flat (0.01 apart): sharpened (τ far below 0.1), and
    // fused with p_sem it lets a threshold reach 90 % precision on the hold-out.
    let mut both = state(FusionWeights::EQUAL);
    let out = both.calibrate(&s, &y, &c);
    assert!(out.temperatures.text < 0.01, "{out:?}");
    assert_eq!(out.text_accuracy, Some(1.0));
    assert!(out.reached, "{out:?}");
    assert!(out.admitted_precision.unwrap() >= 0.9, "{out:?}");
    assert!(out.admitted > 0.0);
    // It is the state's threshold and temperatures from now on.
    assert_eq!(both.thresholds.per_class(), [out.threshold; NUM_CLASSES]);
    assert_eq!(both.temperatures, out.temperatures);
}

#[test]
fn a_fixed_calibrated_threshold_keeps_its_value_and_admits_by_calibrated_confidence() {
    let (s, y) = scores(700, 20.0, 0.7);
    let sem_only = || {
        state(FusionWeights {
            sem: 1.0,
            text: 0.0,
            ins: 0.0,
        })
    };
    // The same temperatures as the precision-target rule; the threshold is the configured one,
    // although no confidence reaches 90 % precision here (that rule falls to the ceiling).
    let target = sem_only().calibrate(&s, &y, &CalibrationConfig::protocol2(1, 0.9));
    let mut fixed = sem_only();
    let out = fixed.calibrate(&s, &y, &CalibrationConfig::protocol3(1, 0.5));
    assert_eq!(out.temperatures, target.temperatures);
    assert!(out.reached && out.threshold == 0.5, "{out:?}");
    assert_eq!(fixed.thresholds.per_class(), [0.5; NUM_CLASSES]);
    // Calibrated, every face's confidence is ≈ 0.7 ≥ 0.5: all admitted, at p_sem's 70 %.
    assert_eq!(out.admitted, 1.0, "{out:?}");
    assert!((out.admitted_precision.unwrap() - 0.7).abs() < 0.01, "{out:?}");
    // Above every calibrated confidence nothing passes.
    let out = sem_only().calibrate(&s, &y, &CalibrationConfig::protocol3(1, 0.8));
    assert_eq!((out.threshold, out.admitted, out.admitted_precision), (0.8, 0.0, None));
}
