//! End-to-end training on a generated ImageFolder dataset: checkpoints, resume, metrics and
//! evaluation through the library and the `sitfer-train` binary.

mod common;

use common::{config, run_opts, write_dataset};
use sitfer_trainer::train::checkpoint::{self, Which};
use sitfer_trainer::train::run::train;
use std::path::Path;

fn weights(run: &Path, which: Which) -> std::collections::HashMap<String, Vec<f32>> {
    let dir = checkpoint::resolve(run, which).unwrap();
    let ck = checkpoint::load(&dir, &candle_core::Device::Cpu).unwrap();
    ck.weights
        .into_iter()
        .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

#[test]
fn resume_reaches_the_same_step_with_the_same_state() {
    let data = tempfile::tempdir().unwrap();
    write_dataset(data.path(), 8, 12345);
    let runs = tempfile::tempdir().unwrap();
    let cfg = config(data.path(), 8);

    let straight = runs.path().join("straight");
    let s = train(&cfg, &run_opts(&straight, false, None)).unwrap();
    assert_eq!(s.step, 8);
    assert_eq!(s.history.len(), 2);

    let resumed = runs.path().join("resumed");
    let first = train(&cfg, &run_opts(&resumed, false, Some(4))).unwrap();
    assert_eq!(first.step, 4);
    let ck = checkpoint::load(
        &checkpoint::resolve(&resumed, Which::Latest).unwrap(),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert_eq!(ck.state.step, 4);
    assert_eq!(ck.state.optimizer_updates, 4);
    assert!(
        ck.optimizer.keys().any(|k| k.starts_with("m.")) && ck.optimizer.keys().any(|k| k.starts_with("v.")),
        "Adam moments are saved"
    );
    let second = train(&cfg, &run_opts(&resumed, true, None)).unwrap();
    assert_eq!(second.step, 8);
    assert_eq!(second.history.len(), 2, "history continues, not restarts");

    let (a, b) = (weights(&straight, Which::Latest), weights(&resumed, Which::Latest));
    assert_eq!(a.len(), b.len());
    for (k, va) in &a {
        let d = va.iter().zip(&b[k]).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(d < 1e-4, "{k}: resumed run differs by {d}");
    }
    // metrics.jsonl has one line per evaluation, and the plots exist.
    let metrics = std::fs::read_to_string(resumed.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 2);
    for f in [
        "accuracy.png",
        "loss.png",
        "best-val-confusion.png",
        "split.json",
        "best.json",
    ] {
        assert!(resumed.join(f).is_file(), "{f} missing");
    }
    // Older checkpoints are pruned: only latest and best remain.
    let kept = std::fs::read_dir(resumed.join("checkpoints")).unwrap().count();
    assert!(kept <= 2, "{kept} checkpoints kept");
}

#[test]
fn resume_refuses_a_different_configuration() {
    let data = tempfile::tempdir().unwrap();
    write_dataset(data.path(), 4, 12345);
    let run = tempfile::tempdir().unwrap();
    let cfg = config(data.path(), 4);
    train(&cfg, &run_opts(run.path(), false, Some(4))).unwrap();
    let mut other = cfg.clone();
    other.lr = 1.0;
    let err = train(&other, &run_opts(run.path(), true, None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--resume") && err.contains("lr"), "{err}");
}

#[test]
fn a_diverging_run_stops_with_a_diagnosis_and_keeps_its_checkpoint() {
    let data = tempfile::tempdir().unwrap();
    write_dataset(data.path(), 4, 12345);
    let run = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path(), 4);
    train(&cfg, &run_opts(run.path(), false, None)).unwrap();
    let before = weights(run.path(), Which::Latest);
    // An absurd learning rate makes the loss overflow; resume from the good checkpoint.
    cfg.lr = 1e30;
    cfg.steps = 40;
    cfg.warmup_steps = 0;
    let run2 = tempfile::tempdir().unwrap();
    let err = train(&cfg, &run_opts(run2.path(), false, None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("loss became") && err.contains("learning rate"), "{err}");
    assert_eq!(before, weights(run.path(), Which::Latest));
}

#[test]
fn cli_trains_and_evaluates() {
    let data = tempfile::tempdir().unwrap();
    write_dataset(data.path(), 6, 12345);
    let run = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_sitfer-train");
    let out = std::process::Command::new(bin)
        .args([
            "train",
            "--format",
            "image-folder",
            "--input-size",
            "16",
            "--batch-size",
            "16",
            "--steps",
            "4",
            "--eval-every",
            "2",
            "--warmup-steps",
            "1",
        ])
        .arg("--data")
        .arg(data.path())
        .arg("--out")
        .arg(run.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["steps"], 4);
    let report = run.path().join("report");
    let out = std::process::Command::new(bin)
        .arg("eval")
        .arg("--checkpoint")
        .arg(run.path())
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("accuracy") && text.contains("macro-F1") && text.contains("confusion"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.with_extension("json")).unwrap()).unwrap();
    assert_eq!(json["samples"], 21);
    assert!(report.with_extension("png").is_file());
    // A missing dataset is a clear error naming the path.
    let out = std::process::Command::new(bin)
        .args(["train", "--data", "/nonexistent/fer"])
        .arg("--out")
        .arg(run.path().join("x"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/fer"));
    // A calibrated threshold without calibration, or outside [0, 1], is refused by name.
    for (extra, says) in [
        (&["--calibrated-threshold", "0.5"][..], "needs --calibrate-every"),
        (
            &["--calibrated-threshold", "1.5", "--calibrate-every", "10"][..],
            "--calibrated-threshold 1.5",
        ),
    ] {
        let out = std::process::Command::new(bin)
            .args(["train", "--method", "sitfer"])
            .args(extra)
            .arg("--data")
            .arg(data.path())
            .arg("--out")
            .arg(run.path().join("y"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{err}");
    }
}

#[test]
fn a_save_interrupted_midway_leaves_the_previous_checkpoint_loadable() {
    let data = tempfile::tempdir().unwrap();
    write_dataset(data.path(), 4, 12345);
    let run = tempfile::tempdir().unwrap();
    let cfg = config(data.path(), 4);
    train(&cfg, &run_opts(run.path(), false, None)).unwrap();
    let good = weights(run.path(), Which::Latest);
    // What a kill during the next save leaves behind: a half-written step directory under its
    // temporary name, and a temporary pointer file that was never renamed.
    let tmp = run.path().join("checkpoints/.step-00000008.tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("weights.safetensors"), b"torn").unwrap();
    std::fs::write(run.path().join(".latest.json.123.tmp"), b"{\"dir\":").unwrap();
    assert_eq!(
        weights(run.path(), Which::Latest),
        good,
        "the previous checkpoint still loads"
    );
    // Resuming continues from it and the leftovers do not get in the way.
    let mut longer = cfg.clone();
    longer.steps = 8;
    let err = train(&longer, &run_opts(run.path(), true, None));
    // `steps` is part of the configuration, so this resume is refused with a clear message…
    assert!(err.unwrap_err().to_string().contains("steps"));
    // …while the same configuration resumes (and finishes at once: it already reached its end).
    let s = train(&cfg, &run_opts(run.path(), true, None)).unwrap();
    assert_eq!(s.step, 4);
}

#[test]
fn a_mixed_batch_run_trains_differently_and_resumes_exactly() {
    use sitfer_trainer::data::mix::BatchMix;
    let data = tempfile::tempdir().unwrap();
    write_dataset(data.path(), 8, 12345);
    let runs = tempfile::tempdir().unwrap();
    let plain = config(data.path(), 6);
    let cfg = sitfer_trainer::train::config::TrainConfig {
        mix: Some(BatchMix {
            mixup_alpha: 0.4,
            cutmix_alpha: 1.0,
            label_smoothing: 0.1,
        }),
        ..plain.clone()
    };
    train(&plain, &run_opts(&runs.path().join("plain"), false, None)).unwrap();
    train(&cfg, &run_opts(&runs.path().join("straight"), false, None)).unwrap();
    let resumed = runs.path().join("resumed");
    assert_eq!(train(&cfg, &run_opts(&resumed, false, Some(3))).unwrap().step, 3);
    assert_eq!(train(&cfg, &run_opts(&resumed, true, None)).unwrap().step, 6);
    let (p, a, b) = (
        weights(&runs.path().join("plain"), Which::Latest),
        weights(&runs.path().join("straight"), Which::Latest),
        weights(&resumed, Which::Latest),
    );
    let max_diff = |x: &Vec<f32>, y: &Vec<f32>| x.iter().zip(y).fold(0f32, |m, (u, v)| m.max((u - v).abs()));
    for (k, va) in &a {
        assert!(max_diff(va, &b[k]) < 1e-4, "{k}: the resumed mixed run differs");
    }
    assert!(
        a.iter().any(|(k, va)| max_diff(va, &p[k]) > 1e-4),
        "mixing changed the training"
    );
    // Resuming a mixed run without the mixing is refused (the settings differ).
    let err = train(&plain, &run_opts(&resumed, true, None)).unwrap_err().to_string();
    assert!(err.contains("mix"), "{err}");
}
