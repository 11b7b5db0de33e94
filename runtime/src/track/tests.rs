use super::*;
use crate::detect::{BBox, Detection};
use crate::fusion::{Probs, argmax};

fn det(x: f32, y: f32, s: f32) -> Detection {
    Detection {
        bbox: BBox::new(x, y, x + s, y + s),
        score: 1.0,
        landmarks: None,
    }
}

fn ids(t: &Tracker, idx: &[usize]) -> Vec<u64> {
    idx.iter().map(|&i| t.tracks()[i].id).collect()
}

#[test]
fn ids_are_stable_for_moving_faces_and_between_detections() {
    let mut t = Tracker::new(TrackerConfig::default());
    let first = t.update(0, &[det(10.0, 10.0, 50.0), det(200.0, 20.0, 60.0)]);
    assert_eq!(ids(&t, &first), vec![1, 2]);
    for f in 1..40u64 {
        let dx = 4.0 * f as f32;
        // Detection every 3rd frame, detections listed in varying order.
        let idx = if f % 3 == 0 {
            let mut d = vec![det(10.0 + dx, 10.0, 50.0), det(200.0 - dx, 20.0 + dx / 2.0, 60.0)];
            if f % 2 == 0 {
                d.reverse();
            }
            let idx = t.update(f, &d);
            let want = if f % 2 == 0 { vec![2, 1] } else { vec![1, 2] };
            assert_eq!(ids(&t, &idx), want, "frame {f}");
            idx
        } else {
            t.carry(f)
        };
        assert_eq!(idx.len(), 2);
    }
}

/// A face moving at constant speed, detected every 5th frame: the boxes carried between
/// detections converge on it. (Measuring the speed from the carried box instead of the last
/// detection fed the prediction's error back as speed, and the boxes swung ever wider.)
#[test]
fn carried_boxes_of_a_steadily_moving_face_converge_on_it() {
    let mut t = Tracker::new(TrackerConfig::default());
    let x = |f: u64| 40.0 + 3.0 * f as f32;
    let mut worst_late = 0f32;
    for f in 0..60u64 {
        let idx = if f % 5 == 0 {
            t.update(f, &[det(x(f), 50.0, 80.0)])
        } else {
            t.carry(f)
        };
        assert_eq!(idx.len(), 1, "frame {f}");
        if f >= 40 {
            worst_late = worst_late.max((t.tracks()[idx[0]].bbox.x1 - x(f)).abs());
        }
    }
    assert!(worst_late < 0.5, "carried box off by {worst_late} px after 40 frames");
}

/// A detection applied one frame late (matched at its own frame, then carried to the current
/// one, as the recognizer does when detecting ahead) puts the box where the face is.
#[test]
fn a_detection_applied_a_frame_late_is_carried_to_the_current_frame() {
    let mut t = Tracker::new(TrackerConfig::default());
    let x = |f: u64| 40.0 + 3.0 * f as f32;
    t.update(0, &[det(x(0), 50.0, 80.0)]);
    let mut err = f32::MAX;
    for f in 1..30u64 {
        t.update(f - 1, &[det(x(f - 1), 50.0, 80.0)]);
        let idx = t.carry(f);
        err = (t.tracks()[idx[0]].bbox.x1 - x(f)).abs();
    }
    assert!(err < 0.1, "box off by {err} px");
}

#[test]
fn crossing_faces_keep_their_ids() {
    // Two faces of the same size walk through each other horizontally at slightly different
    // heights; at the crossing their boxes overlap almost fully.
    let mut t = Tracker::new(TrackerConfig::default());
    let mut swaps = 0;
    for f in 0..60u64 {
        let a = det(20.0 + 8.0 * f as f32, 100.0, 60.0);
        let b = det(500.0 - 8.0 * f as f32, 110.0, 60.0);
        let idx = t.update(f, &[a, b]);
        if ids(&t, &idx) != vec![1, 2] {
            swaps += 1;
        }
    }
    assert_eq!(swaps, 0);
    assert_eq!(t.tracks().len(), 2);
}

#[test]
fn vanished_faces_expire_and_newcomers_get_new_ids() {
    let cfg = TrackerConfig {
        max_missed: 2,
        ..TrackerConfig::default()
    };
    let mut t = Tracker::new(cfg);
    t.update(0, &[det(0.0, 0.0, 40.0), det(100.0, 0.0, 40.0)]);
    // Face 2 leaves; face 1 stays.
    for f in 1..=3 {
        let idx = t.update(f, &[det(0.0, 0.0, 40.0)]);
        assert_eq!(ids(&t, &idx), vec![1]);
    }
    assert_eq!(t.tracks().len(), 1, "track 2 expired after 3 missed rounds");
    // Someone appears where face 2 was: a new id, not 2.
    let idx = t.update(4, &[det(0.0, 0.0, 40.0), det(100.0, 0.0, 40.0)]);
    assert_eq!(ids(&t, &idx), vec![1, 3]);
    // A brief miss (one round) keeps the id; the missed track is not reported while carried.
    t.update(5, &[det(0.0, 0.0, 40.0)]);
    let carried = t.carry(6);
    assert_eq!(ids(&t, &carried), vec![1]);
    let idx = t.update(7, &[det(0.0, 0.0, 40.0), det(100.0, 0.0, 40.0)]);
    assert_eq!(ids(&t, &idx), vec![1, 3]);
}

#[test]
fn smoothing_reduces_label_flicker() {
    // A face that is "happy" (class 3) with noisy per-frame predictions: every third frame the
    // raw argmax flips to "neutral".
    let mut raw_changes = 0;
    let mut smooth_changes = 0;
    let mut ema = Ema::new(0.4);
    let (mut prev_raw, mut prev_smooth) = (None, None);
    for f in 0..60 {
        let mut p: Probs = [0.02; 7];
        if f % 3 == 2 {
            p[6] = 0.5;
            p[3] = 0.4;
        } else {
            p[3] = 0.7;
            p[6] = 0.2;
        }
        let raw = argmax(&p).0;
        let smooth = argmax(&ema.update(&p)).0;
        raw_changes += (prev_raw.is_some_and(|c| c != raw)) as u32;
        smooth_changes += (prev_smooth.is_some_and(|c| c != smooth)) as u32;
        prev_raw = Some(raw);
        prev_smooth = Some(smooth);
    }
    assert!(raw_changes >= 30, "{raw_changes}");
    assert_eq!(smooth_changes, 0);
    // First value is taken as is; alpha 1 is no smoothing.
    let mut e = Ema::new(1.0);
    let p = [0.1, 0.2, 0.3, 0.1, 0.1, 0.1, 0.1];
    assert_eq!(e.update(&p), p);
}

#[test]
fn a_track_keeps_the_roll_of_its_last_detection_between_detections() {
    let mut t = Tracker::new(TrackerConfig::default());
    let mut tilted = det(10.0, 10.0, 50.0);
    // Eyes at (20, 20) and (40, 40): 45°.
    tilted.landmarks = Some([[20.0, 20.0], [40.0, 40.0], [30.0, 35.0], [22.0, 45.0], [38.0, 45.0]]);
    let idx = t.update(0, std::slice::from_ref(&tilted));
    assert!((t.tracks()[idx[0]].roll - std::f32::consts::FRAC_PI_4).abs() < 1e-6);
    let idx = t.carry(1);
    assert!((t.tracks()[idx[0]].roll - std::f32::consts::FRAC_PI_4).abs() < 1e-6);
    // A detection without landmarks resets it.
    let idx = t.update(2, &[det(12.0, 10.0, 50.0)]);
    assert_eq!(t.tracks()[idx[0]].roll, 0.0);
}

/// A unit vector near `base` (a person's look) turned a little toward axis `axis` (an
/// expression, a pose), by `amount`.
fn look(base: usize, axis: usize, amount: f32) -> Vec<f32> {
    let mut v = [0f32; 16];
    v[base] = 1.0;
    v[axis] += amount;
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

#[test]
fn two_people_in_the_same_box_are_two_tracks_and_one_person_who_changes_slowly_is_one() {
    let mut t = Tracker::new(TrackerConfig::default());
    let mut ids_seen = Vec::new();
    // Person A for 30 frames, her expression drifting (axis 8 grows to 1.2: cos 0.64 between
    // the first and last frames), then person B in exactly the same box for 30 frames.
    for f in 0..60u64 {
        let idx = t.update(f, &[det(100.0, 80.0, 120.0)]);
        let z = if f < 30 {
            look(0, 8, 1.2 * f as f32 / 29.0)
        } else {
            look(1, 9, 0.3 * (f - 30) as f32 / 29.0)
        };
        let split = t.check_identity(idx[0], &z);
        assert_eq!(split, f == 30, "frame {f}");
        ids_seen.push(t.tracks()[idx[0]].id);
    }
    assert!(ids_seen[..30].iter().all(|&i| i == ids_seen[0]));
    assert!(ids_seen[30..].iter().all(|&i| i == ids_seen[30]));
    assert_ne!(ids_seen[0], ids_seen[30]);
    assert_eq!(t.tracks().len(), 1, "the first person's track ended");
    // The new track starts fresh: its smoothing has no history from the first person.
    let tr = &t.tracks()[0];
    assert_eq!(tr.hits, 30, "one hit at the split, 29 matched since");

    // With the check off (-1), the boxes alone make one track of both.
    let mut boxes_only = Tracker::new(TrackerConfig {
        min_identity_cos: -1.0,
        ..TrackerConfig::default()
    });
    for f in 0..60u64 {
        let idx = boxes_only.update(f, &[det(100.0, 80.0, 120.0)]);
        let z = if f < 30 { look(0, 8, 0.0) } else { look(1, 9, 0.0) };
        assert!(!boxes_only.check_identity(idx[0], &z));
    }
    assert_eq!(boxes_only.tracks()[0].id, 1);
}

#[test]
fn a_split_keeps_the_other_tracks_and_their_indices() {
    let mut t = Tracker::new(TrackerConfig::default());
    let idx = t.update(0, &[det(0.0, 0.0, 50.0), det(300.0, 0.0, 50.0)]);
    t.check_identity(idx[0], &look(0, 8, 0.0));
    t.check_identity(idx[1], &look(2, 8, 0.0));
    let idx = t.update(1, &[det(0.0, 0.0, 50.0), det(300.0, 0.0, 50.0)]);
    assert!(t.check_identity(idx[1], &look(3, 8, 0.0)), "someone else on the right");
    assert!(!t.check_identity(idx[0], &look(0, 8, 0.1)));
    assert_eq!(ids(&t, &idx), vec![1, 3]);
    // The new track follows its box like any other.
    let idx = t.update(2, &[det(2.0, 0.0, 50.0), det(304.0, 0.0, 50.0)]);
    assert_eq!(ids(&t, &idx), vec![1, 3]);
}
