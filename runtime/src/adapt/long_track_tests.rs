//! One person in front of the camera for the whole footage: a single long track must give
//! adaptation enough pseudo-labels, where per-track rate limits used to starve it.

use super::tests::{Toy, fusion, source_seed, unit};
use super::*;
use crate::fusion::fuse;
use crate::instance_buffer::TrackAdmission;

/// 108 frames of one track going through the expressions (15 frames each, then again), each
/// face admitted or not by `policy` as the recognizer would.
fn one_long_track(policy: &AdmissionPolicy) -> (Observed, SeedBuffer, Head, FusionConfig) {
    let mut toy = Toy::new();
    let head = toy.head();
    let cfg = fusion();
    let seed = source_seed(&mut toy, 8);
    let buf = InstanceBuffer::from_seed(&seed, 0);
    let mut state = TrackAdmission::default();
    let mut observed = Observed {
        tracks: 1,
        ..Observed::default()
    };
    for frame in 0..108u64 {
        let class = (frame / 15) as usize % NUM_CLASSES;
        let f = toy.sample(class, true);
        let logits = head.logits(&f);
        let z = unit(&f);
        let p = fuse(&cfg, &logits, &z, None, &buf);
        let admitted = policy.consider(&mut state, frame, &p.p_hat, &z);
        let o = Observation {
            frame,
            track: 7,
            p_hat: p.p_hat,
            logits,
            embedding: z,
            feature: Some(f),
            admitted,
        };
        observed.frames += 1;
        observed.record(&o);
        observed.sample.push(o);
    }
    (observed, seed, head, cfg)
}

#[test]
fn a_single_long_track_gives_enough_pseudo_labels_to_pass_the_guard() {
    // `sitfer adapt`'s threshold (0: ranking within each class decides) and stability.
    let live = AdmissionPolicy::with_threshold(0.0);
    let (observed, seed, head, cfg) = one_long_track(&offline_admission(live));
    let original = Original {
        fusion: &cfg,
        prototypes: None,
        buffer: &seed,
        head: Some(&head),
    };
    let acfg = AdaptConfig::default();
    let plan = plan(&original, &observed, &acfg).unwrap_or_else(|r| panic!("stopped: {:?}", r.findings));
    let pseudo: usize = plan.report.pseudo_labels.iter().sum();
    assert!(pseudo >= acfg.guard.min_pseudo_labels, "{pseudo}");
    // The buffer takes more from the one track than a passer-by's share, and no near-duplicates.
    let selected: usize = plan.report.selected.iter().sum();
    assert!(selected > acfg.select.per_track, "{selected}");
    assert!(selected <= acfg.select.track_cap(108));
    let added = &plan.buffer.embeddings[seed.embeddings.len()..];
    for (i, a) in added.chunks(seed.dim).enumerate() {
        for b in added.chunks(seed.dim).skip(i + 1) {
            let cos: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            assert!(1.0 - cos >= live.min_change, "near-duplicate entries (cos {cos})");
        }
    }

    // The live policy's frame interval on the same footage: a handful of admissions, and the
    // guard stops the adaptation, as it did on a real one-person folder.
    let (starved, ..) = one_long_track(&live);
    assert!(starved.candidates.len() <= 108 / live.min_interval_frames as usize + 1);
    let stopped = plan_err(&original, &starved, &acfg);
    assert!(
        stopped.iter().any(|f| matches!(f, Collapse::TooFewPseudoLabels { .. })),
        "{stopped:?}"
    );
}

fn plan_err(original: &Original, observed: &Observed, cfg: &AdaptConfig) -> Vec<Collapse> {
    match plan(original, observed, cfg) {
        Ok(_) => Vec::new(),
        Err(r) => r.findings,
    }
}

#[test]
fn a_longer_track_may_give_more_entries_but_a_short_one_keeps_the_floor() {
    let s = SelectConfig::default();
    assert_eq!(s.track_cap(1), s.per_track);
    assert_eq!(s.track_cap(400), 400 / s.faces_per_entry as usize);
    let fixed = SelectConfig {
        faces_per_entry: 0,
        ..s
    };
    assert_eq!(fixed.track_cap(400), s.per_track);
}
