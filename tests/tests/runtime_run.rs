//! End to end: a tiny random student exported by the trainer into a bundle, then the `sitfer`
//! binary runs it over a generated folder of face crops and a generated Y4M clip; the JSON lines
//! must describe every frame with well-formed probabilities, and the buffer must persist.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use sitfer_runtime::bundle::{Bundle, Precision, TextPrototypes};
use sitfer_runtime::infer::Model;
use sitfer_runtime::labels::ALL;
use sitfer_runtime::source::encode_y4m_444;
use sitfer_trainer::export::bundle::{BundleInputs, SeedImages, default_fusion, write_model_bundle};
use sitfer_trainer::export::fold::{PROJ_WEIGHT, fold};
use sitfer_trainer::model::{Arch, ModelSpec, Stem, build, init::seeded_var_builder};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

const SIZE: usize = 48;
const TEXT_DIM: usize = 16;

/// A random student with a projection head, exported fp32-only.
fn tiny_bundle(out: &Path) {
    let spec = ModelSpec {
        arch: Arch::Student,
        stem: Stem::Small,
        num_classes: 7,
        input_size: SIZE as u32,
    };
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, 5, DType::F32, &Device::Cpu);
    let model = build(&spec, vb.clone()).unwrap();
    vb.get_with_hints(
        (TEXT_DIM, model.embedding_dim()),
        PROJ_WEIGHT,
        candle_nn::init::DEFAULT_KAIMING_NORMAL,
    )
    .unwrap();
    let weights: HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let net = fold(&spec, &weights).unwrap();
    let rows: Vec<Vec<f32>> = (0..7)
        .map(|c| {
            let r: Vec<f32> = (0..TEXT_DIM).map(|i| ((c * 13 + i) as f32).cos()).collect();
            let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
            r.iter().map(|x| x / n).collect()
        })
        .collect();
    let images: Vec<Vec<f32>> = (0..14)
        .map(|k| {
            (0..3 * SIZE * SIZE)
                .map(|i| ((i * (k + 1)) as f32 * 0.01).sin())
                .collect()
        })
        .collect();
    let seed = SeedImages {
        classes: (0..14).map(|i| (i % 7) as u8).collect(),
        images,
    };
    write_model_bundle(
        out,
        BundleInputs {
            net: &net,
            norm: Default::default(),
            prototypes: Some(TextPrototypes::from_rows(&rows).unwrap()),
            seed: &seed,
            calib: None,
            fusion: default_fusion(true),
            provenance: BTreeMap::from([("test".into(), "runtime_run".into())]),
        },
    )
    .unwrap();
}

/// Face-like gray crops of varying content (sizes vary too, as real crops do).
fn face_folder(dir: &Path, n: u32) {
    std::fs::create_dir_all(dir).unwrap();
    for k in 0..n {
        let side = 40 + 4 * k;
        let img = image::RgbImage::from_fn(side, side, |x, y| {
            let v = (128.0 + 100.0 * ((x as f32 * 0.2 + k as f32).sin() * (y as f32 * 0.15).cos())) as u8;
            image::Rgb([v, v, v])
        });
        img.save(dir.join(format!("face-{k:03}.png"))).unwrap();
    }
}

/// The `sitfer` binary of this build (another package's binaries are not in this test's env).
fn sitfer() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        // The same package set and dev-dependency features as `cargo test --workspace`, so the
        // binary reuses the test build's artifacts instead of resolving features anew (which
        // would rebuild tract and friends on a clean CI machine).
        .args(["build", "-q", "--workspace", "--bins", "--tests"])
        .status()
        .expect("running cargo build");
    assert!(status.success(), "building the sitfer binary");
    let exe = std::env::current_exe().unwrap();
    let target_debug = exe.parent().and_then(Path::parent).unwrap();
    let bin = target_debug.join(format!("sitfer{}", std::env::consts::EXE_SUFFIX));
    if bin.exists() {
        return bin;
    }
    // Built in release while the test runs in debug, or the reverse.
    let other = target_debug
        .parent()
        .unwrap()
        .join("debug")
        .join(format!("sitfer{}", std::env::consts::EXE_SUFFIX));
    assert!(other.exists(), "no sitfer binary at {}", bin.display());
    other
}

fn lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

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
