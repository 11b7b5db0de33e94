//! The refit's target class mix: on a camera whose faces come in the bundle's own skewed mix,
//! information maximisation toward a uniform mix pushes rare classes into being predicted and
//! costs accuracy; toward the camera's estimated mix it does not.

use super::tests::{F, Lcg, accuracy, base_head};
use super::*;
use crate::bundle::SeedBuffer;

/// Faces per 20 of each class: a quarter of them class 0, one in twenty classes 2, 5 and 6.
const MIX: [usize; NUM_CLASSES] = [8, 5, 1, 2, 2, 1, 1];

/// A camera with another mix: class 6 absent, class 2 common (CK+ has no neutral faces and
/// many of disgust).
const SHIFTED: [usize; NUM_CLASSES] = [4, 3, 6, 3, 2, 2, 0];

fn class_of(i: usize) -> usize {
    class_in(&MIX, i)
}

fn class_in(mix: &[usize; NUM_CLASSES], i: usize) -> usize {
    let mut k = i % 20;
    for (c, &n) in mix.iter().enumerate() {
        if k < n {
            return c;
        }
        k -= n;
    }
    unreachable!()
}

/// An ambiguous face of class `c` of the bundle's own domain.
fn face(rng: &mut Lcg, c: usize) -> Vec<f32> {
    let mut f: Vec<f32> = (0..F).map(|_| 0.8 * rng.uniform()).collect();
    f[c] += 1.0;
    f
}

/// The head trained on that mix: the tests' base head (class c reads dimension c), its bias the
/// log of each class's share.
fn skewed_head() -> Head {
    Head {
        bias: std::array::from_fn(|c| (MIX[c] as f32 / 20.0).ln()),
        ..base_head()
    }
}

/// Info-max refits every 100 admissions with no least interval: what both tests vary from.
fn info_max_config() -> OnlineConfig {
    OnlineConfig {
        every_admissions: 100,
        min_interval: Duration::ZERO,
        refit: RefitConfig {
            objective: crate::adapt::Objective::InfoMax { diversity: 1.0 },
            ..RefitConfig::default()
        },
        ..OnlineConfig::default()
    }
}

fn anchors(rng: &mut Lcg) -> SeedBuffer {
    let (mut embeddings, mut labels) = (Vec::new(), Vec::new());
    for i in 0..400 {
        let c = class_of(i);
        embeddings.extend(face(rng, c));
        labels.push(c as u8);
    }
    SeedBuffer {
        dim: F,
        embeddings,
        labels,
    }
}

/// Accuracy on held-out faces of the camera before and after, and the share of them the head
/// in use predicts as one of the three rarest classes (15 % of the faces).
fn run(target_mix: TargetMix) -> (f32, f32, f32) {
    let mut rng = Lcg(21);
    let base = info_max_config();
    let cfg = OnlineConfig {
        refit: RefitConfig {
            // Free to follow the objective, and no replay: the diversity term's own pull.
            steps: 200,
            anchor: 0.0,
            ..base.refit
        },
        watch: WatchConfig {
            faces: 20,
            max_confidence_drop: 1.0,
        },
        anchor: AnchorConfig {
            replay_weight: 0.0,
            ..AnchorConfig::default()
        },
        target_mix,
        min_mix_shift: None,
        ..base
    };
    let mut l = OnlineLearner::new(skewed_head(), cfg, false).unwrap();
    l.set_anchors(&anchors(&mut rng));
    for i in 0..600 {
        let c = class_of(i);
        l.observe(&face(&mut rng, c), Some(c));
        l.poll();
    }
    let held_out: Vec<(usize, Vec<f32>)> = (0..1000).map(|i| (class_of(i), face(&mut rng, class_of(i)))).collect();
    let before = accuracy(&skewed_head(), &held_out);
    let head = l.head().expect("a refitted head in use");
    let after = accuracy(head, &held_out);
    let rare = held_out
        .iter()
        .filter(|(_, f)| [2, 5, 6].contains(&crate::fusion::argmax(&head.logits(f)).0))
        .count() as f32
        / held_out.len() as f32;
    (before, after, rare)
}

#[test]
fn toward_the_estimated_mix_a_familiar_camera_keeps_its_rare_classes_rare() {
    let (before, uniform, rare_uniform) = run(TargetMix::Uniform);
    let (_, estimated, rare_estimated) = run(TargetMix::Estimated);
    assert!(
        rare_uniform > 0.3 && rare_estimated < 0.25,
        "share predicted rare (truly 0.15): uniform {rare_uniform}, estimated {rare_estimated}"
    );
    assert!(
        uniform < before - 0.1 && estimated > uniform + 0.05,
        "accuracy {before} → uniform {uniform}, estimated {estimated}"
    );
}

/// With a least shift set, a camera in the training mix leaves the head alone (every refit
/// skipped, none swapped in, none at exit) while one in another mix is refitted once the shift
/// has shown in two consecutive windows.
#[test]
fn a_least_mix_shift_skips_refits_on_a_camera_in_the_training_mix_only() {
    let run = |mix: &[usize; NUM_CLASSES]| {
        let mut rng = Lcg(31);
        let cfg = OnlineConfig {
            min_mix_shift: Some(0.05),
            ..info_max_config()
        };
        let mut l = OnlineLearner::new(skewed_head(), cfg, false).unwrap();
        l.set_anchors(&anchors(&mut rng));
        let dir = tempfile::tempdir().unwrap();
        let id = HeadIdentity {
            space: "test".into(),
            base: head_id(&skewed_head()),
        };
        l.persist_to(head_path(&dir.path().join("b.safetensors")), id);
        for i in 0..600 {
            let c = class_in(mix, i);
            l.observe(&face(&mut rng, c), Some(c));
            l.poll();
        }
        l.finish();
        l.stats()
    };
    let same = run(&MIX);
    assert!(
        same.skipped_same_mix >= 5 && same.swapped == 0 && same.kept_on_exit == 0,
        "{same:?}"
    );
    let shifted = run(&SHIFTED);
    // The first window's shift is not enough alone; from the second on the camera is refitted.
    assert!(shifted.skipped_same_mix == 1 && shifted.swapped >= 1, "{shifted:?}");
}

/// A camera without class 0, the bundle's commonest, whose class-1 faces lean toward it, so
/// that the bundle head calls many of them class 0 (CK+ has no neutral faces; the default head
/// calls up to 14 % of a stream neutral).
const WITHOUT_0: [usize; NUM_CLASSES] = [0, 8, 4, 3, 3, 1, 1];

fn leaning_face(rng: &mut Lcg, c: usize) -> Vec<f32> {
    let mut f = face(rng, c);
    if c == 1 {
        f[0] += 1.3;
    }
    f
}

/// Heads fitted toward the estimated mix stop predicting class 0: the plain guard (or its
/// watch) refuses some as a collapse, the guard that follows the mix refuses fewer and keeps
/// more.
#[test]
fn a_class_the_camera_lacks_may_vanish_when_the_guard_follows_the_mix() {
    let run = |follow: bool| {
        let mut rng = Lcg(41);
        let cfg = OnlineConfig {
            min_mix_shift: None,
            vanish_follows_mix: follow,
            watch: WatchConfig {
                faces: 20,
                max_confidence_drop: 1.0,
            },
            ..info_max_config()
        };
        let mut l = OnlineLearner::new(skewed_head(), cfg, false).unwrap();
        l.set_anchors(&anchors(&mut rng));
        for i in 0..600 {
            let c = class_in(&WITHOUT_0, i);
            l.observe(&leaning_face(&mut rng, c), Some(c));
            l.poll();
        }
        l.stats()
    };
    let (plain, follows) = (run(false), run(true));
    assert!(plain.refused + plain.rolled_back > 0, "{plain:?}");
    assert!(
        follows.refused + follows.rolled_back < plain.refused + plain.rolled_back && follows.kept > plain.kept,
        "plain {plain:?}, follows {follows:?}"
    );
}
