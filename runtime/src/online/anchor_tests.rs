//! The bundle's anchor faces in the online refit: the held-back half refuses a head that
//! loses accuracy on the source domain, and makes the refit at exit possible.

use super::tests::{F, Lcg, accuracy, base_head, config, free_refit, target_face};
use super::*;
use crate::bundle::SeedBuffer;

/// Labeled faces of the bundle's own domain: class c's dimension raised (the base head is right
/// on them).
fn source_anchors(rng: &mut Lcg, n: usize) -> SeedBuffer {
    let mut embeddings = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let c = i % NUM_CLASSES;
        let mut f: Vec<f32> = (0..F).map(|_| 0.3 * rng.uniform()).collect();
        f[c] += 1.0;
        embeddings.extend(f);
        labels.push(c as u8);
    }
    SeedBuffer {
        dim: F,
        embeddings,
        labels,
    }
}

#[test]
fn the_anchors_split_into_halves_of_the_same_class_mix() {
    let a = source_anchors(&mut Lcg(1), 70);
    let x = Anchors::split(&a, &base_head()).unwrap();
    assert_eq!((x.replay.labels.len(), x.check.labels.len()), (35, 35));
    for c in 0..NUM_CLASSES {
        assert_eq!(x.replay.labels.iter().filter(|&&y| y == c).count(), 5, "class {c}");
    }
    assert!(x.base_accuracy > 0.95, "{}", x.base_accuracy);
    let narrow = SeedBuffer { dim: F - 1, ..a };
    assert!(
        Anchors::split(&narrow, &base_head()).is_none(),
        "another width is not used"
    );
}

/// Pseudo-labels that are all wrong (each face given the next class) make a head that is also
/// wrong on the bundle's own faces: without replay to hold it, a margin on the held-back anchors
/// refuses it and it is never swapped in; with no margin (the default) the anchors judge
/// nothing.
#[test]
fn a_refit_that_loses_the_held_back_anchors_is_refused_when_a_margin_is_set() {
    let run = |max_drop| {
        let mut rng = Lcg(11);
        let cfg = OnlineConfig {
            anchor: AnchorConfig {
                replay_weight: 0.0,
                max_drop,
                ..AnchorConfig::default()
            },
            refit: free_refit(),
            ..config()
        };
        let mut l = OnlineLearner::new(base_head(), cfg, false).unwrap();
        l.set_anchors(&source_anchors(&mut rng, 140));
        for i in 0..70 {
            let c = i % NUM_CLASSES;
            let mut f: Vec<f32> = (0..F).map(|_| 0.3 * rng.uniform()).collect();
            f[c] += 1.0;
            l.observe(&f, Some((c + 1) % NUM_CLASSES));
            l.poll();
        }
        l.finish();
        l
    };
    let l = run(Some(0.02));
    let s = l.stats();
    assert!(s.refused_anchors >= 2 && s.swapped == 0 && s.kept_on_exit == 0, "{s:?}");
    assert!(
        l.head().is_none() && l.state().head.is_none(),
        "the bundle's head stays"
    );
    let s = run(None).stats();
    assert!(s.refused_anchors == 0 && s.started >= 2, "{s:?}");
}

/// Right pseudo-labels on the new camera, fewer admissions than a refit during the run needs:
/// with anchors the refit at exit runs, passes their check and is kept (and persisted); without
/// them nothing would judge it, so none runs; nor without a head file to keep it in.
#[test]
fn the_refit_at_exit_is_kept_only_with_anchors() {
    let run = |anchors: bool| {
        let mut rng = Lcg(4);
        let cfg = OnlineConfig {
            every_admissions: 1000,
            ..config()
        };
        let mut l = OnlineLearner::new(base_head(), cfg, false).unwrap();
        if anchors {
            l.set_anchors(&source_anchors(&mut Lcg(8), 140));
        }
        let dir = tempfile::tempdir().unwrap();
        let id = HeadIdentity {
            space: "test".into(),
            base: head_id(&base_head()),
        };
        l.persist_to(head_path(&dir.path().join("b.safetensors")), id);
        for i in 0..140 {
            let c = i % NUM_CLASSES;
            l.observe(&target_face(&mut rng, c), Some(c));
            l.poll();
        }
        l.finish();
        l.finish();
        l
    };
    let with = run(true);
    assert_eq!(
        (with.stats().kept_on_exit, with.stats().started),
        (1, 1),
        "{:?}",
        with.stats()
    );
    let held_out: Vec<(usize, Vec<f32>)> = {
        let mut rng = Lcg(6);
        (0..210).map(|i| (i % 7, target_face(&mut rng, i % 7))).collect()
    };
    let after = accuracy(with.head().expect("kept at exit"), &held_out);
    assert!(after > accuracy(&base_head(), &held_out) + 0.2, "{after}");
    assert!(with.state().head.is_some(), "the head kept at exit is persisted");
    let without = run(false);
    assert_eq!(without.stats().started, 0, "{:?}", without.stats());
    assert!(without.head().is_none());
    let mut unsaved = OnlineLearner::new(
        base_head(),
        OnlineConfig {
            every_admissions: 1000,
            ..config()
        },
        false,
    )
    .unwrap();
    unsaved.set_anchors(&source_anchors(&mut Lcg(8), 140));
    let mut rng = Lcg(4);
    for i in 0..140 {
        unsaved.observe(&target_face(&mut rng, i % NUM_CLASSES), Some(i % NUM_CLASSES));
    }
    unsaved.finish();
    assert_eq!(unsaved.stats().started, 0, "{:?}", unsaved.stats());
}
