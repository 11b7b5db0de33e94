//! The fp16 path (`--precision fp16`: the bundle's fp32 model with its convolutional trunk
//! translated to f16 by tract) computes what fp32 computes, on the shipped default bundle's model.
//! The accuracy on FER2013 val is in docs/results/boards.md; this guards the translation itself:
//! a wrong cast, a head left in f16 (the L2 normalisation would drift) or an overflow would show
//! as logits far from fp32's, another top class, or an embedding off the unit sphere.

use sitfer_runtime::bundle::{Bundle, Precision};
use sitfer_runtime::infer::Model;
use std::path::Path;

fn default_bundle() -> Bundle {
    Bundle::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/default")).unwrap()
}

/// Deterministic face-sized inputs, normalised like the crops (values in about ±2.5): smooth
/// shading plus a blob and a texture that differ per image, so the logits differ too.
fn inputs(n: usize, size: usize) -> Vec<f32> {
    let mut x = Vec::with_capacity(n * 3 * size * size);
    for k in 0..n {
        let (cx, cy) = ((k * 7 % 11) as f32 / 11.0, (k * 5 % 13) as f32 / 13.0);
        let plane: Vec<f32> = (0..size * size)
            .map(|i| {
                let (u, v) = ((i % size) as f32 / size as f32, (i / size) as f32 / size as f32);
                let blob = (-((u - cx).powi(2) + (v - cy).powi(2)) * 12.0).exp();
                let texture = ((i * (k + 3)) % 17) as f32 / 17.0 - 0.5;
                2.0 * (u * 0.6 + v * 0.4 + blob - 0.5) + 0.5 * texture
            })
            .collect();
        // Grey like the FER crops: the same luma in R, G and B.
        for _ in 0..3 {
            x.extend_from_slice(&plane);
        }
    }
    x
}

#[test]
fn fp16_runs_the_fp32_model_within_f16_rounding_of_fp32() {
    let b = default_bundle();
    assert_eq!(
        b.manifest.model(Precision::Fp16).1,
        "models.fp32",
        "fp16 reads the fp32 model"
    );
    let fp32 = Model::load(&b, Precision::Fp32).unwrap();
    let fp16 = Model::load(&b, Precision::Fp16).unwrap();
    let n = 12;
    let x = inputs(n, fp32.input_size());
    let (a, h) = (fp32.run(&x, n).unwrap(), fp16.run(&x, n).unwrap());
    assert_eq!((h.logits.len(), h.embedding.len()), (a.logits.len(), a.embedding.len()));
    let mut worst = 0f32;
    for i in 0..n {
        let (la, lh) = (a.logits_row(i), h.logits_row(i));
        let spread = la.iter().cloned().fold(f32::MIN, f32::max) - la.iter().cloned().fold(f32::MAX, f32::min);
        let diff = la.iter().zip(lh).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        worst = worst.max(diff / spread);
        // f16 keeps ~3 significant digits: a few per mille of the logits' range after twelve
        // convolutions; a broken translation is off by the range itself.
        assert!(
            diff <= 0.02 * spread,
            "image {i}: logits differ by {diff} (range {spread}): {la:?} vs {lh:?}"
        );
        let argmax = |l: &[f32]| (0..l.len()).max_by(|&p, &q| l[p].total_cmp(&l[q])).unwrap();
        let top2 = {
            let mut s = la.to_vec();
            s.sort_by(|p, q| q.total_cmp(p));
            s[0] - s[1]
        };
        if top2 > 2.0 * diff {
            assert_eq!(argmax(la), argmax(lh), "image {i}: top class changed");
        }
        let (ea, eh) = (a.embedding_row(i), h.embedding_row(i));
        let norm = eh.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-4,
            "image {i}: the f32 head normalises, got |e| = {norm}"
        );
        let cos: f32 = ea.iter().zip(eh).map(|(p, q)| p * q).sum();
        assert!(cos > 0.999, "image {i}: embedding cosine to fp32 {cos}");
    }
    eprintln!("worst logit difference / range: {worst:.5}");
}

#[test]
fn fp16_exposes_the_pooled_feature_as_f32_for_the_head_refit() {
    let b = default_bundle();
    let fp32 = Model::load_with_feature(&b, Precision::Fp32).unwrap();
    let fp16 = Model::load_with_feature(&b, Precision::Fp16).unwrap();
    assert_eq!(fp16.feature_dim(), fp32.feature_dim());
    let x = inputs(2, fp32.input_size());
    let (a, h) = (fp32.run(&x, 2).unwrap(), fp16.run(&x, 2).unwrap());
    for i in 0..2 {
        let (fa, fh) = (a.feature_row(i).unwrap(), h.feature_row(i).unwrap());
        let scale = fa.iter().map(|v| v.abs()).fold(0f32, f32::max);
        let diff = fa.iter().zip(fh).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        assert!(
            scale > 0.0 && diff <= 0.02 * scale,
            "image {i}: feature off by {diff} (scale {scale})"
        );
    }
}
