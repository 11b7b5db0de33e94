//! Fixtures shared by the end-to-end training tests: a generated ImageFolder dataset and the
//! supervised configuration they start from.

use image::{Rgb, RgbImage};
use sitfer_contract::labels::ALL;
use sitfer_trainer::data::augment::{AugmentConfig, Normalization};
use sitfer_trainer::data::split::LabelBudget;
use sitfer_trainer::data::{Format, OutsidePolicy};
use sitfer_trainer::method::SslConfig;
use sitfer_trainer::model::{Arch, ModelSpec, Stem};
use sitfer_trainer::text::encoder::{EncoderId, EncoderKind};
use sitfer_trainer::text::prototypes::{PROTOTYPES_VERSION, PrototypeSet, texts_hash};
use sitfer_trainer::train::config::{DataConfig, Method, TextConfig, TrainConfig};
use sitfer_trainer::train::optimizer::OptimizerConfig;
use sitfer_trainer::train::run::RunOptions;
use std::path::Path;

/// Class `c` is a bright square in one of 7 positions on a noisy background.
/// `noise_seed` picks the background noise.
pub fn write_dataset(root: &Path, per_class: usize, noise_seed: u32) {
    let mut state = noise_seed;
    let mut noise = move || {
        state = state.wrapping_mul(1664525).wrapping_add(1013904223);
        (state >> 24) as u8 / 4
    };
    for (split, n) in [("train", per_class), ("val", per_class / 2)] {
        for (c, e) in ALL.iter().enumerate() {
            let dir = root.join(split).join(e.name());
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                let img = RgbImage::from_fn(16, 16, |x, y| {
                    let inside = x / 4 == (c as u32 % 4) && y / 8 == (c as u32 / 4);
                    let v = if inside { 220 } else { noise() };
                    Rgb([v, v, v])
                });
                img.save(dir.join(format!("{i}.png"))).unwrap();
            }
        }
    }
}

/// A supervised run of the student at 16x16 on every label, seed 3.
pub fn config(root: &Path, steps: u64) -> TrainConfig {
    TrainConfig {
        method: Method::Supervised,
        model: ModelSpec {
            arch: Arch::Student,
            stem: Stem::Small,
            num_classes: 7,
            input_size: 16,
        },
        data: DataConfig {
            root: root.to_path_buf(),
            format: Format::ImageFolder,
            budget: LabelBudget::All,
            outside: OutsidePolicy::Drop,
            soft_labels: false,
            val_fraction: 0.0,
            split_manifest: None,
            calibration_fraction: 0.0,
        },
        norm: Normalization::default(),
        augment: AugmentConfig::default(),
        optimizer: OptimizerConfig::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-4,
        },
        lr: 3e-3,
        cosine: true,
        warmup_steps: 2,
        batch_size: 16,
        steps,
        epochs: 0.0,
        eval_every: 4,
        seed: 3,
        workers: 2,
        pretrained: None,
        device: "cpu".into(),
        ssl: None,
        text: None,
        distill: None,
        mix: None,
    }
}

/// A prototype cache for the default descriptions, as if made by an encoder of dimension `dim`:
/// class c's prototype leans on axis c.
#[allow(dead_code)] // not every test binary that includes `common` trains with text
pub fn write_prototypes(path: &Path, dim: usize) {
    let texts = sitfer_trainer::text::descriptions::default_descriptions();
    let prototypes: Vec<Vec<f32>> = (0..7)
        .map(|c| {
            let mut v = vec![0.2f32; dim];
            v[c] = 1.0;
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| x / n).collect()
        })
        .collect();
    PrototypeSet {
        version: PROTOTYPES_VERSION,
        encoder: EncoderId {
            name: "fixture".into(),
            kind: EncoderKind::Minilm,
            sha256: "0".repeat(64),
        },
        classes: ALL.iter().map(|e| e.name().to_string()).collect(),
        texts_hash: texts_hash(&texts),
        texts,
        dim,
        prototypes,
    }
    .save(path)
    .unwrap();
}

/// The shared supervised fixture config, turned into `method` on 3 labels per class.
#[allow(dead_code)]
pub fn semi_config(root: &Path, method: Method, ssl: Option<SslConfig>, steps: u64) -> TrainConfig {
    let base = config(root, steps);
    TrainConfig {
        method,
        data: DataConfig {
            budget: LabelBudget::PerClass(3),
            ..base.data
        },
        batch_size: 7,
        seed: 5,
        text: ssl.as_ref().filter(|c| c.text).map(|_| TextConfig {
            prototypes: root.join("prototypes.json"),
            encoder_dir: root.join("no-encoder-here"),
            encoder_kind: EncoderKind::Minilm,
        }),
        ssl,
        ..base
    }
}

/// Options of a run in `dir`.
#[allow(dead_code)]
pub fn run_opts(dir: &Path, resume: bool, stop_after: Option<u64>) -> RunOptions {
    RunOptions {
        run_dir: dir.to_path_buf(),
        resume,
        stop_after,
    }
}
