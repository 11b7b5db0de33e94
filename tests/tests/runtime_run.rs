//! End to end: a tiny random student exported by the trainer into a bundle, then the `sitfer`
//! binary runs it over a generated folder of face crops and a generated Y4M clip; the JSON lines
//! must describe every frame with well-formed probabilities, and the buffer must persist.

mod common;

use common::{face_folder, lines, sitfer, tiny_bundle};
use sitfer_runtime::bundle::{Bundle, Precision};
use sitfer_runtime::infer::Model;
use sitfer_runtime::labels::ALL;
use sitfer_runtime::source::encode_y4m_444;
use std::path::Path;
use std::process::Command;

fn check_probs(v: &serde_json::Value) {
    let p: Vec<f64> = v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!(p.len(), 7);
    assert!(p.iter().all(|x| (0.0..=1.0 + 1e-6).contains(x)), "{p:?}");
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-4, "{p:?}");
}

#[test]
fn sitfer_run_whole_frame_over_a_folder_and_a_y4m_clip() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    tiny_bundle(&bundle);
    let faces = tmp.path().join("faces");
    face_folder(&faces, 6);
    let bin = sitfer();
    let buffer = tmp.path().join("device-buffer.safetensors");
    let out = Command::new(&bin)
        .args(["run", "--faces", "whole-frame", "--smoothing", "1"])
        .arg("--bundle")
        .arg(&bundle)
        .arg("--source")
        .arg(&faces)
        .arg("--buffer")
        .arg(&buffer)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ls = lines(&out.stdout);
    assert_eq!(ls.len(), 6);
    let names: Vec<&str> = ALL.iter().map(|e| e.name()).collect();
    for (i, l) in ls.iter().enumerate() {
        assert_eq!(l["frame"], i as u64);
        let faces = l["faces"].as_array().unwrap();
        assert_eq!(faces.len(), 1, "{l}");
        let f = &faces[0];
        assert_eq!(f["box"]["x1"], 0.0);
        assert_eq!(f["box"]["x2"].as_f64().unwrap(), (40 + 4 * i) as f64);
        assert!(f["track"].as_u64().unwrap() >= 1);
        assert!(names.contains(&f["label"].as_str().unwrap()), "{f}");
        for k in ["p_hat", "p_smooth", "p_sem", "p_text", "p_ins"] {
            check_probs(&f[k]);
        }
    }
    // A folder of crops is a set of unrelated faces: each is its own track (a clip is one, below).
    let mut ids: Vec<u64> = ls.iter().map(|l| l["faces"][0]["track"].as_u64().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 6, "{ids:?}");
    // The first frame's p_sem is what the library computes for the same crop.
    let b = Bundle::open(&bundle).unwrap();
    let model = Model::load(&b, Precision::Fp32).unwrap();
    let prep = sitfer_runtime::preprocess::FacePrep::from_manifest(
        &b.manifest,
        0.1,
        sitfer_runtime::preprocess::ColorMode::Gray,
    );
    let img = image::open(faces.join("face-000.png")).unwrap().to_rgb8();
    let frame = sitfer_runtime::source::Frame {
        index: 0,
        timestamp: std::time::Duration::ZERO,
        width: img.width(),
        height: img.height(),
        rgb: img.into_raw(),
    };
    let whole = sitfer_runtime::detect::BBox::new(0.0, 0.0, frame.width as f32, frame.height as f32);
    let o = model.run(&prep.batch(&frame, &[whole]), 1).unwrap();
    let p = sitfer_runtime::fusion::softmax(&std::array::from_fn(|i| o.logits_row(0)[i]));
    for (a, want) in ls[0]["faces"][0]["p_sem"].as_array().unwrap().iter().zip(p) {
        assert!((a.as_f64().unwrap() - want as f64).abs() < 1e-5);
    }
    assert!(buffer.exists(), "the buffer is saved at exit");
    // `sitfer buffer`: the stats list the bundle's seed per class; export writes one line per
    // added entry; reset keeps the file loadable with nothing added.
    let buffer_cmd = |action: &str| {
        let out = Command::new(&bin)
            .args(["buffer", action, "--bundle"])
            .arg(&bundle)
            .arg("--buffer")
            .arg(&buffer)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let stats = buffer_cmd("stats");
    let total = stats.lines().find(|l| l.starts_with("| total |")).expect("a total row");
    let cells: Vec<usize> = total.split('|').filter_map(|c| c.trim().parse().ok()).collect();
    assert_eq!(cells.len(), 2, "{stats}");
    assert!(cells[0] > 0, "the seed is listed: {stats}");
    assert_eq!(buffer_cmd("export").lines().count(), cells[1], "{stats}");
    buffer_cmd("reset");
    assert!(buffer_cmd("stats").contains(&format!("| total | {} | 0 |", cells[0])));
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(summary.contains("\"processed\":6"), "{summary}");

    // A Y4M clip of the same crops (resized to one size), limited to 3 frames.
    let rgb: Vec<Vec<u8>> = (0..5)
        .map(|k| {
            let img = image::open(faces.join(format!("face-{k:03}.png"))).unwrap().to_rgb8();
            image::imageops::resize(&img, 48, 48, image::imageops::FilterType::Triangle).into_raw()
        })
        .collect();
    let refs: Vec<&[u8]> = rgb.iter().map(Vec::as_slice).collect();
    let clip = tmp.path().join("clip.y4m");
    std::fs::write(&clip, encode_y4m_444(48, 48, (25, 1), &refs)).unwrap();
    let json = tmp.path().join("out.jsonl");
    let out = Command::new(&bin)
        .args(["run", "--faces", "whole-frame", "--max-frames", "3", "--no-continual"])
        .arg("--bundle")
        .arg(&bundle)
        .arg("--source")
        .arg(&clip)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ls = lines(&std::fs::read(&json).unwrap());
    assert_eq!(ls.len(), 3);
    assert!((ls[1]["time"].as_f64().unwrap() - 0.04).abs() < 1e-9);
    // One unchanged face box: one track throughout.
    let ids: Vec<u64> = ls.iter().map(|l| l["faces"][0]["track"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![1, 1, 1]);

    // A buffer from a different format version is refused with a clear error.
    let mut bytes = std::fs::read(&buffer).unwrap();
    let pos = bytes.windows(13).position(|w| w == b"\"version\":\"1\"").unwrap();
    bytes[pos + 11] = b'9';
    std::fs::write(&buffer, &bytes).unwrap();
    let out = Command::new(&bin)
        .args(["run", "--faces", "whole-frame"])
        .arg("--bundle")
        .arg(&bundle)
        .arg("--source")
        .arg(&faces)
        .arg("--buffer")
        .arg(&buffer)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("version 9") && err.contains("device-buffer.safetensors"),
        "{err}"
    );
}

/// The README's main job: `sitfer run` with no arguments on a machine without a camera runs the
/// embedded default bundle on the built-in demo photo and finds the (smiling) face.
#[test]
fn sitfer_run_without_arguments_uses_the_demo_photo() {
    if Path::new("/dev/video0").exists() {
        eprintln!("skipped: a camera is present, so `sitfer run` would open it");
        return;
    }
    let out = Command::new(sitfer()).arg("run").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ls = lines(&out.stdout);
    assert_eq!(ls.len(), 1, "one frame line (the summary goes to stderr)");
    let faces = ls[0]["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 1, "{}", ls[0]);
    check_probs(&faces[0]["p_hat"]);
    assert_eq!(faces[0]["label"], "happy", "{}", ls[0]);
    // The display sink: an annotated PNG of the frame.
    let tmp = tempfile::tempdir().unwrap();
    let snaps = tmp.path().join("snaps");
    let out = Command::new(sitfer())
        .arg("run")
        .arg("--snapshots")
        .arg(&snaps)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let png = snaps.join("frame-00000000.png");
    let img = image::open(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert_eq!((img.width(), img.height()), (512, 512));
}
