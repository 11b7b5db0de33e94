//! Split, augmentation and batch-loading determinism on generated data.

use image::{Rgb, RgbImage};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sitfer_contract::labels::{ALL, Expression};
use sitfer_trainer::data::augment::{AugmentConfig, Normalization, OPS, ViewKind, apply, augment, to_chw};
use sitfer_trainer::data::loader::{BatchStream, ImageStore, StreamConfig, batches_per_epoch};
use sitfer_trainer::data::split::{LabelBudget, SplitManifest, hold_out, semi_supervised_split, split_from_manifest};
use sitfer_trainer::data::{ImageRef, LabeledSample, Target};
use std::collections::HashSet;
use std::sync::Arc;

fn samples(per_class: &[usize]) -> Vec<LabeledSample> {
    let mut v = Vec::new();
    for (c, &n) in per_class.iter().enumerate() {
        for i in 0..n {
            v.push(LabeledSample {
                id: format!("c{c}/img{i:04}.png"),
                image: ImageRef::Gray {
                    width: 2,
                    height: 2,
                    pixels: Arc::from(vec![c as u8; 4]),
                },
                target: Target::Hard(ALL[c]),
            });
        }
    }
    v
}

#[test]
fn split_is_deterministic_per_class_and_disjoint() {
    let train = samples(&[30, 12, 5, 40, 25, 20, 33]);
    let a = semi_supervised_split(&train, LabelBudget::PerClass(10), 7);
    let b = semi_supervised_split(&train, LabelBudget::PerClass(10), 7);
    let c = semi_supervised_split(&train, LabelBudget::PerClass(10), 8);
    assert_eq!(a.manifest, b.manifest, "same seed, same split");
    assert_ne!(
        a.manifest.labeled, c.manifest.labeled,
        "another seed draws another split"
    );
    // 10 per class, or the whole class when smaller (disgust has 5).
    let mut per = [0usize; 7];
    for s in &a.labeled {
        per[s.target.class().index()] += 1;
    }
    assert_eq!(per, [10, 10, 5, 10, 10, 10, 10]);
    let labeled: HashSet<&str> = a.labeled.iter().map(|s| s.id.as_str()).collect();
    let unlabeled: HashSet<&str> = a.unlabeled.iter().map(|s| s.id.as_str()).collect();
    assert!(labeled.is_disjoint(&unlabeled));
    assert_eq!(labeled.len() + unlabeled.len(), train.len());
    // Hidden labels line up with the unlabeled samples (checked through the ids' class prefix).
    for (i, s) in a.unlabeled.iter().enumerate() {
        let c: usize = s.id[1..2].parse().unwrap();
        assert_eq!(a.analysis.get(i), Some(ALL[c]));
    }
    // The draw does not depend on the reader's order.
    let mut reversed = train.clone();
    reversed.reverse();
    let r = semi_supervised_split(&reversed, LabelBudget::PerClass(10), 7);
    let set = |m: &SplitManifest| m.labeled.iter().cloned().collect::<HashSet<_>>();
    assert_eq!(set(&r.manifest), set(&a.manifest));
}

#[test]
fn the_calibration_hold_out_is_a_stratified_seeded_subset_of_the_labeled_faces() {
    let train = samples(&[100, 100, 100, 100, 100, 100, 100]);
    let labeled = semi_supervised_split(&train, LabelBudget::PerClass(40), 3).labeled;
    let (rest, held) = hold_out(labeled.clone(), 0.1, 3);
    let mut per = [0usize; 7];
    for s in &held {
        per[s.target.class().index()] += 1;
    }
    assert_eq!(per, [4; 7], "N/10 of each class");
    assert_eq!(rest.len(), 7 * 36);
    let ids = |v: &[LabeledSample]| v.iter().map(|s| s.id.clone()).collect::<HashSet<_>>();
    assert!(ids(&rest).is_disjoint(&ids(&held)));
    assert_eq!(&ids(&rest) | &ids(&held), ids(&labeled));
    // The same faces whatever the order they come in (a resumed run, another method), others
    // under another seed, none without a fraction.
    let mut reversed = labeled.clone();
    reversed.reverse();
    assert_eq!(ids(&hold_out(reversed, 0.1, 3).1), ids(&held));
    assert_ne!(ids(&hold_out(labeled.clone(), 0.1, 4).1), ids(&held));
    let (all, none) = hold_out(labeled.clone(), 0.0, 3);
    assert!(none.is_empty() && all.len() == labeled.len());
}

#[test]
fn fraction_budget_and_parsing() {
    let train = samples(&[30, 12, 5, 40, 25, 20, 33]);
    let s = semi_supervised_split(&train, LabelBudget::Fraction(0.1), 0);
    assert_eq!(s.labeled.len(), 3 + 1 + 1 + 4 + 3 + 2 + 3);
    assert_eq!("all".parse::<LabelBudget>().unwrap(), LabelBudget::All);
    assert_eq!("100".parse::<LabelBudget>().unwrap(), LabelBudget::PerClass(100));
    assert_eq!("10%".parse::<LabelBudget>().unwrap(), LabelBudget::Fraction(0.1));
    assert!("0".parse::<LabelBudget>().is_err());
    assert!("1.5".parse::<LabelBudget>().is_err());
    assert!("lots".parse::<LabelBudget>().is_err());
}

#[test]
fn manifest_round_trips_and_rejects_foreign_ids() {
    let train = samples(&[8, 8, 8, 8, 8, 8, 8]);
    let a = semi_supervised_split(&train, LabelBudget::PerClass(3), 1);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("split.json");
    a.manifest.save(&p).unwrap();
    let loaded = SplitManifest::load(&p).unwrap();
    assert_eq!(loaded, a.manifest);
    let again = split_from_manifest(&train, &loaded, &p).unwrap();
    assert_eq!(
        again.labeled.iter().map(|s| &s.id).collect::<Vec<_>>(),
        a.labeled.iter().map(|s| &s.id).collect::<Vec<_>>()
    );
    let mut bad = loaded.clone();
    bad.unlabeled.push("nowhere.png".into());
    let err = split_from_manifest(&train, &bad, &p).unwrap_err().to_string();
    assert!(
        err.contains("split.json") && err.contains("unlabeled") && err.contains("nowhere.png"),
        "{err}"
    );
    std::fs::write(&p, "{ not json").unwrap();
    let err = SplitManifest::load(&p).unwrap_err().to_string();
    assert!(err.contains("split.json") && err.contains("line 1"), "{err}");
}

fn test_image(seed: u8) -> RgbImage {
    RgbImage::from_fn(24, 24, |x, y| {
        Rgb([(x * 10 + seed as u32) as u8, (y * 10) as u8, ((x + y) * 5) as u8])
    })
}

#[test]
fn augmentation_is_deterministic_and_keeps_shape() {
    let img = test_image(3);
    let cfg = AugmentConfig::default();
    for kind in [ViewKind::Weak, ViewKind::Strong] {
        let a = augment(&img, kind, &cfg, &mut ChaCha8Rng::seed_from_u64(5));
        let b = augment(&img, kind, &cfg, &mut ChaCha8Rng::seed_from_u64(5));
        assert_eq!(a, b, "{kind:?} under one seed");
        assert_eq!(a.dimensions(), img.dimensions());
        let differs = (0..20u64).any(|s| augment(&img, kind, &cfg, &mut ChaCha8Rng::seed_from_u64(s)) != a);
        assert!(differs, "{kind:?} varies with the seed");
    }
    assert_eq!(
        augment(&img, ViewKind::None, &cfg, &mut ChaCha8Rng::seed_from_u64(0)),
        img
    );
}

#[test]
fn strong_views_contain_a_cutout_square() {
    let img = RgbImage::from_pixel(20, 20, Rgb([10, 200, 30]));
    let cfg = AugmentConfig {
        ops: 0,
        ..AugmentConfig::default()
    };
    // With no RandAugment op, the only gray pixels can come from Cutout (side 0.4 * 20 = 8).
    let out = augment(&img, ViewKind::Strong, &cfg, &mut ChaCha8Rng::seed_from_u64(1));
    let gray = out.pixels().filter(|p| p.0 == [128, 128, 128]).count();
    assert!(gray > 0 && gray <= 64, "{gray} gray pixels");
}

proptest! {
    #[test]
    fn every_op_keeps_dimensions(op in 0usize..14, m in 0.1f32..1.0, seed in 0u64..1000) {
        let img = test_image(seed as u8);
        let out = apply(&img, OPS[op], m, &mut ChaCha8Rng::seed_from_u64(seed));
        prop_assert_eq!(out.dimensions(), img.dimensions());
    }
}

#[test]
fn gray_faces_become_three_equal_normalised_channels() {
    let img = RgbImage::from_pixel(2, 2, Rgb([51, 51, 51]));
    let norm = Normalization {
        mean: [0.2, 0.1, 0.0],
        std: [0.5, 0.25, 1.0],
    };
    let mut out = vec![0f32; 12];
    to_chw(&img, &norm, &mut out);
    // 51/255 = 0.2 -> (0.2-0.2)/0.5 = 0, (0.2-0.1)/0.25 = 0.4, 0.2/1 = 0.2
    for (c, want) in [0.0f32, 0.4, 0.2].iter().enumerate() {
        for v in &out[c * 4..c * 4 + 4] {
            assert!((v - want).abs() < 1e-6, "channel {c}: {v} vs {want}");
        }
    }
}

fn store(n: usize) -> ImageStore {
    let images: Vec<RgbImage> = (0..n).map(|i| test_image(i as u8)).collect();
    let targets = (0..n)
        .map(|i| Target::Hard(Expression::from_index(i % 7).unwrap()).distribution())
        .collect();
    ImageStore {
        images: Arc::new(images),
        targets: Some(Arc::new(targets)),
    }
}

fn config(workers: usize) -> StreamConfig {
    StreamConfig {
        batch_size: 4,
        views: vec![ViewKind::Weak, ViewKind::Strong],
        shuffle: true,
        drop_last: true,
        seed: 9,
        workers,
        prefetch: 2,
        augment: AugmentConfig::default(),
        norm: Normalization::default(),
    }
}

#[test]
fn batches_do_not_depend_on_worker_count_and_resume_anywhere() {
    let s = store(18);
    let one: Vec<_> = BatchStream::new(s.clone(), config(1), 0, Some(12)).collect();
    let three: Vec<_> = BatchStream::new(s.clone(), config(3), 0, Some(12)).collect();
    assert_eq!(one.len(), 12);
    for (a, b) in one.iter().zip(&three) {
        assert_eq!(a.samples, b.samples);
        assert_eq!(a.views, b.views);
    }
    // Restarting at batch 7 gives exactly batch 7 onwards.
    let resumed: Vec<_> = BatchStream::new(s.clone(), config(2), 7, Some(12)).collect();
    for (a, b) in one[7..].iter().zip(&resumed) {
        assert_eq!(a.index, b.index);
        assert_eq!(a.samples, b.samples);
        assert_eq!(a.views, b.views);
    }
    // An epoch (4 batches of 4 with drop_last over 18) visits distinct samples, and epochs
    // are shuffled differently.
    let per = batches_per_epoch(18, 4, true) as usize;
    assert_eq!(per, 4);
    let e0: Vec<usize> = one[..per].iter().flat_map(|b| b.samples.clone()).collect();
    let e1: Vec<usize> = one[per..2 * per].iter().flat_map(|b| b.samples.clone()).collect();
    assert_eq!(e0.iter().collect::<HashSet<_>>().len(), 16);
    assert_ne!(e0, e1);
    // Targets travel with their samples.
    for b in &one {
        for (i, t) in b.samples.iter().zip(b.targets.as_ref().unwrap()) {
            assert_eq!(t[i % 7], 1.0);
        }
    }
}

#[test]
fn evaluation_stream_covers_everything_in_order() {
    let s = store(10);
    let cfg = StreamConfig::eval(4, Normalization::default());
    let batches: Vec<_> = BatchStream::new(s, cfg, 0, Some(batches_per_epoch(10, 4, false))).collect();
    let order: Vec<usize> = batches.iter().flat_map(|b| b.samples.clone()).collect();
    assert_eq!(order, (0..10).collect::<Vec<_>>());
    assert_eq!(batches[2].len(), 2);
}

#[test]
fn dropping_a_stream_stops_its_workers() {
    let s = store(50);
    let mut stream = BatchStream::new(s, config(2), 0, None);
    let first = stream.next().unwrap();
    assert_eq!(first.len(), 4);
    drop(stream); // must return: workers blocked on a full channel exit
}
