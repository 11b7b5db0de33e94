//! Fixtures shared by the end-to-end tests: a tiny exported bundle, generated face crops, and the
//! `sitfer` binary of this build.
#![allow(dead_code)] // each test binary uses its own subset

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use sitfer_runtime::bundle::TextPrototypes;
use sitfer_trainer::export::bundle::{BundleInputs, SeedImages, default_fusion, write_model_bundle};
use sitfer_trainer::export::fold::{PROJ_WEIGHT, fold};
use sitfer_trainer::model::{Arch, ModelSpec, Stem, build, init::seeded_var_builder};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const SIZE: usize = 48;
pub const TEXT_DIM: usize = 16;

/// A random student with a projection head, exported fp32-only.
pub fn tiny_bundle(out: &Path) {
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
pub fn face_folder(dir: &Path, n: u32) {
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

/// A binary `name` of this workspace's build (another package's binaries are not in a test's
/// env, so it is built here).
pub fn workspace_bin(name: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        // The same package set and dev-dependency features as `cargo test --workspace`, so the
        // binary reuses the test build's artifacts instead of resolving features anew (which
        // would rebuild tract and friends on a clean CI machine).
        .args(["build", "-q", "--workspace", "--bins", "--tests"])
        .status()
        .expect("running cargo build");
    assert!(status.success(), "building the workspace binaries");
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let exe = std::env::current_exe().unwrap();
    let target_debug = exe.parent().and_then(Path::parent).unwrap();
    let bin = target_debug.join(&file);
    if bin.exists() {
        return bin;
    }
    // Built in release while the test runs in debug, or the reverse.
    let other = target_debug.parent().unwrap().join("debug").join(&file);
    assert!(other.exists(), "no {name} binary at {}", bin.display());
    other
}

/// The `sitfer` binary of this build.
pub fn sitfer() -> PathBuf {
    workspace_bin("sitfer")
}

pub fn lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}
