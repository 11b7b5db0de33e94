//! p̂ means the same in training and on the device: the trainer's fusion (scores as candle
//! tensors, the buffer's similarities as one matmul) and the runtime's (one face at a time)
//! agree for every fuse mode and aggregate; and the runtime fuses a bundle with the settings
//! its manifest carries, not with defaults of its own.

mod common;

use candle_core::{Device, Tensor};
use common::{SIZE, TEXT_DIM, tiny_bundle};
use sitfer_runtime::bundle::{Bundle, FusionWeights, Precision, TextPrototypes};
use sitfer_runtime::detect::{BBox, WholeFrame};
use sitfer_runtime::fusion::{Aggregate, FuseMode, FusionConfig, fuse};
use sitfer_runtime::infer::Model;
use sitfer_runtime::instance_buffer::{InstanceBuffer, MAX_QUEUE_PER_CLASS};
use sitfer_runtime::pipeline::{Recognizer, RecognizerConfig};
use sitfer_runtime::preprocess::FacePrep;
use sitfer_runtime::source::Frame;
use sitfer_trainer::method::fusion::{SourceScores, fuse as train_fuse, text_scores};
use sitfer_trainer::method::memory::{InstanceMemory, ins_scores};
use std::time::Duration;

const MODES: [FuseMode; 2] = [FuseMode::Probabilities, FuseMode::RawScores];
const AGGREGATES: [Aggregate; 4] = [
    Aggregate::Max,
    Aggregate::TopKMean(1),
    Aggregate::TopKMean(3),
    Aggregate::TopKMean(50),
];

/// Deterministic unit rows of width `d`.
fn unit_rows(n: usize, d: usize, seed: f32) -> Vec<Vec<f32>> {
    (0..n)
        .map(|r| {
            let v: Vec<f32> = (0..d).map(|i| ((r * d + i) as f32 * 0.37 + seed).sin()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| x / norm).collect()
        })
        .collect()
}

#[test]
fn trainer_and_runtime_fuse_alike_for_every_mode_and_aggregate() {
    let (d, faces) = (8, 5);
    let z = unit_rows(faces, d, 0.3);
    let logits: Vec<Vec<f32>> = (0..faces)
        .map(|r| (0..7).map(|c| ((r * 7 + c) as f32 * 0.9).cos() * 2.0).collect())
        .collect();
    let protos = unit_rows(7, d, 1.7);
    // Classes with 0 to 6 entries: the empty class, fewer entries than k, and more.
    let entries = unit_rows(21, d, 2.9);
    let classes: Vec<usize> = (0..7).flat_map(|c| std::iter::repeat_n(c, c)).collect();
    assert_eq!(classes.len(), entries.len());

    let dev = Device::Cpu;
    let tensor = |rows: &[Vec<f32>]| Tensor::new(rows.to_vec(), &dev).unwrap();
    let (z_t, logits_t, protos_t) = (tensor(&z), tensor(&logits), tensor(&protos));
    let mut memory = InstanceMemory::new(d, classes.clone(), 0);
    let all: Vec<usize> = (0..classes.len()).collect();
    memory.update_labeled(&all, &entries.concat());
    let bank = memory.bank(&dev, false).unwrap();
    let mut buffer = InstanceBuffer::new(d, 0);
    for (c, e) in classes.iter().zip(&entries) {
        buffer.add_seed(*c, e);
    }
    let prototypes = TextPrototypes::from_rows(&protos).unwrap();

    let weights = FusionWeights {
        sem: 0.3,
        text: 0.2,
        ins: 0.5,
    };
    let (tau_t, tau_i) = (0.1f32, 0.07f32);
    for mode in MODES {
        for aggregate in AGGREGATES {
            let s_text = text_scores(&z_t, &protos_t, tau_t as f64).unwrap();
            let s_ins = ins_scores(&z_t, &bank, aggregate, tau_i as f64).unwrap();
            let trained = train_fuse(
                &SourceScores {
                    sem: Some(&logits_t),
                    text: Some(&s_text),
                    ins: Some(&s_ins),
                },
                &sitfer_trainer::method::FusionWeights {
                    sem: weights.sem as f64,
                    text: weights.text as f64,
                    ins: weights.ins as f64,
                },
                mode,
            )
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
            let cfg = FusionConfig {
                tau_sem: 1.0,
                tau_t,
                tau_i,
                weights,
                threshold: 0.5,
                mode,
                aggregate,
            };
            for i in 0..faces {
                let device = fuse(&cfg, &logits[i], &z[i], Some(&prototypes), &buffer).p_hat;
                // The trainer's cosines come from one matmul, the runtime's from dot products
                // summed in another order: equal up to f32 rounding.
                for (a, b) in trained[i].iter().zip(device) {
                    assert!(
                        (a - b).abs() < 1e-5,
                        "{mode:?} {aggregate:?} face {i}: {:?} vs {device:?}",
                        trained[i]
                    );
                }
            }
        }
    }
}

#[test]
fn the_runtime_fuses_with_the_settings_in_the_bundles_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    tiny_bundle(&dir);
    let side = SIZE as u32 + 10;
    let frame = Frame {
        index: 0,
        timestamp: Duration::ZERO,
        width: side,
        height: side,
        rgb: (0..3 * side * side).map(|i| ((i * 7) % 251) as u8).collect(),
    };
    let mut seen = Vec::new();
    for mode in MODES {
        for aggregate in AGGREGATES {
            // The manifest is not hashed: its fusion fields are set in place.
            let path = dir.join("manifest.json");
            let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            m["fusion"]["mode"] = serde_json::to_value(mode).unwrap();
            m["fusion"]["aggregate"] = serde_json::to_value(aggregate).unwrap();
            std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
            let bundle = Bundle::open(&dir).unwrap();
            let cfg = RecognizerConfig::for_bundle(&bundle);
            assert_eq!((cfg.fusion.mode, cfg.fusion.aggregate), (mode, aggregate));
            let buffer = InstanceBuffer::from_seed(&bundle.buffer, MAX_QUEUE_PER_CLASS);

            // What the recognizer says for the whole frame as one face…
            let model = Model::load(&bundle, Precision::Fp32).unwrap();
            let mut rec = Recognizer::new(&bundle, model, Box::new(WholeFrame), buffer.clone(), cfg);
            let got = rec.fuse_single_faces(std::slice::from_ref(&frame), true).unwrap()[0]
                .clone()
                .expect("the whole frame is the face");
            // …is the contract's fusion of the model's outputs under the manifest's settings.
            let model = Model::load(&bundle, Precision::Fp32).unwrap();
            let prep = FacePrep::from_manifest(&bundle.manifest, cfg.margin, cfg.color);
            let whole = BBox::new(0.0, 0.0, side as f32, side as f32);
            let out = model.run(&prep.batch(&frame, &[whole]), 1).unwrap();
            assert_eq!(out.dim, TEXT_DIM);
            let want = fuse(
                &bundle.manifest.fusion,
                out.logits_row(0),
                out.embedding_row(0),
                bundle.prototypes.as_ref(),
                &buffer,
            );
            assert_eq!(got.p_hat, want.p_hat, "{mode:?} {aggregate:?}");
            seen.push(got.p_hat);
        }
    }
    // The settings change the answer (so the comparison above is not vacuous).
    assert_ne!(seen[0], seen[AGGREGATES.len()], "raw scores vs probabilities");
    assert_ne!(seen[0], seen[2], "max vs top-3 mean");
}
