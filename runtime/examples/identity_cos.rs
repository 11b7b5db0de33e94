//! How well a bundle's face embedding tells people apart in one spot: CK+ crops (files
//! `S<subject>_<sequence>_<frame>.png` under class folders) in name order, as if one camera
//! filmed the subjects one after another, each face run through the tracker's identity check
//! (`Tracker::check_identity`) at several thresholds. Prints, per threshold, how many subject
//! changes start a new track (wanted: all) and how many splits fall inside one subject's frames
//! (wanted: few; each costs only some smoothing and admission history). docs/results/runtime.md,
//! "One track per person".
//!
//!   cargo run --release -p sitfer-runtime --example identity_cos -- BUNDLE_DIR ../shared/data/ckplus48

use sitfer_runtime::bundle::Bundle;
use sitfer_runtime::detect::{BBox, Detection, WholeFrame};
use sitfer_runtime::infer::Model;
use sitfer_runtime::instance_buffer::InstanceBuffer;
use sitfer_runtime::pipeline::{Recognizer, RecognizerConfig};
use sitfer_runtime::source::Frame;
use sitfer_runtime::track::{Tracker, TrackerConfig};
use std::path::PathBuf;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (bundle_dir, data) = match args.as_slice() {
        [_, b, d] => (PathBuf::from(b), PathBuf::from(d)),
        _ => return Err("usage: identity_cos BUNDLE_DIR CKPLUS_DIR".into()),
    };
    let bundle = Bundle::open(&bundle_dir)?;
    // With the pooled feature, compared beside the embedding: the embedding is trained to
    // separate expressions, the feature before the heads may keep more of who the face is.
    let model = Model::load_with_feature(&bundle, bundle.manifest.preferred_precision())?;
    let cfg = RecognizerConfig::for_bundle(&bundle);
    let buffer = InstanceBuffer::from_seed(&bundle.buffer, 0);
    let mut rec = Recognizer::new(&bundle, model, Box::new(WholeFrame), buffer, cfg);
    let mut files: Vec<PathBuf> = Vec::new();
    for class in std::fs::read_dir(&data)? {
        let class = class?.path();
        if class.is_dir() {
            files.extend(sitfer_runtime::image_files::image_files(&class, false)?);
        }
    }
    files.sort_by_key(|p| p.file_name().map(|n| n.to_os_string()));
    let subject = |p: &PathBuf| p.file_name().unwrap().to_string_lossy()[..4].to_string();
    let mut z = Vec::with_capacity(files.len());
    let mut feat = Vec::with_capacity(files.len());
    for chunk in files.chunks(32) {
        let frames: Vec<Frame> = chunk
            .iter()
            .map(|p| {
                let img = image::open(p).expect("decodable").to_rgb8();
                Frame {
                    index: 0,
                    timestamp: Duration::ZERO,
                    width: img.width(),
                    height: img.height(),
                    rgb: img.into_raw(),
                }
            })
            .collect();
        for f in rec.embed_single_faces(&frames, true)? {
            let f = f.expect("whole frame");
            let v = f.feature.expect("loaded with the feature");
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            feat.push(v.iter().map(|x| x / n).collect::<Vec<f32>>());
            z.push(f.embedding);
        }
    }
    let changes = (1..files.len())
        .filter(|&i| subject(&files[i]) != subject(&files[i - 1]))
        .count();
    println!(
        "{} faces of {} subjects in name order ({} subject changes)",
        files.len(),
        changes + 1,
        changes
    );
    for (name, vectors) in [("embedding", &z), ("pooled feature", &feat)] {
        let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let mut same: Vec<f32> = Vec::new();
        let mut other: Vec<f32> = Vec::new();
        for i in 1..files.len() {
            let c = cos(&vectors[i], &vectors[i - 1]);
            if subject(&files[i]) == subject(&files[i - 1]) {
                same.push(c);
            } else {
                other.push(c);
            }
        }
        let q = |v: &mut Vec<f32>, p: f32| {
            v.sort_by(f32::total_cmp);
            v[((v.len() - 1) as f32 * p) as usize]
        };
        println!(
            "{name}: consecutive faces, cosine: same subject p5 {:.3} p50 {:.3} | other subject p50 {:.3} p95 {:.3}",
            q(&mut same, 0.05),
            q(&mut same, 0.5),
            q(&mut other, 0.5),
            q(&mut other, 0.95)
        );
        println!("| min_identity_cos | subject changes split | splits within a subject | tracks |");
        println!("|---|---|---|---|");
        let boxed = Detection {
            bbox: BBox::new(0.0, 0.0, 48.0, 48.0),
            score: 1.0,
            landmarks: None,
        };
        for th in [0.0f32, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8] {
            let mut t = Tracker::new(TrackerConfig {
                min_identity_cos: th,
                ..TrackerConfig::default()
            });
            let (mut at_change, mut within) = (0, 0);
            let mut ids = std::collections::HashSet::new();
            for (i, zi) in vectors.iter().enumerate() {
                let idx = t.update(i as u64, std::slice::from_ref(&boxed));
                let split = t.check_identity(idx[0], zi);
                ids.insert(t.tracks()[idx[0]].id);
                if i > 0 && split {
                    if subject(&files[i]) != subject(&files[i - 1]) {
                        at_change += 1;
                    } else {
                        within += 1;
                    }
                }
            }
            println!(
                "| {th:.1} | {at_change} of {changes} | {within} of {} | {} |",
                files.len() - 1 - changes,
                ids.len()
            );
        }
    }
    Ok(())
}
