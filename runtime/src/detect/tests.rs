use super::*;
use crate::source::Frame;
use std::time::Duration;

fn det(x: f32, y: f32, s: f32, score: f32) -> Detection {
    Detection {
        bbox: BBox::new(x, y, x + s, y + s),
        score,
        landmarks: None,
    }
}

#[test]
fn iou_of_known_boxes() {
    let a = BBox::new(0.0, 0.0, 10.0, 10.0);
    assert_eq!(a.iou(&a), 1.0);
    assert_eq!(a.iou(&BBox::new(20.0, 20.0, 30.0, 30.0)), 0.0);
    // Half overlap: 50 / 150.
    let b = BBox::new(5.0, 0.0, 15.0, 10.0);
    assert!((a.iou(&b) - 1.0 / 3.0).abs() < 1e-6);
    let sq = BBox::new(10.0, 20.0, 30.0, 30.0).square_with_margin(0.25);
    assert_eq!(sq, BBox::new(5.0, 10.0, 35.0, 40.0));
}

#[test]
fn nms_keeps_the_best_of_overlapping_boxes() {
    let kept = nms(
        vec![
            det(0.0, 0.0, 10.0, 0.8),
            det(1.0, 1.0, 10.0, 0.9),
            det(50.0, 50.0, 10.0, 0.7),
        ],
        0.3,
        10,
    );
    let scores: Vec<f32> = kept.iter().map(|d| d.score).collect();
    assert_eq!(scores, vec![0.9, 0.7]);
    assert_eq!(
        nms(vec![det(0.0, 0.0, 1.0, 0.5), det(9.0, 9.0, 1.0, 0.6)], 0.3, 1).len(),
        1
    );
}

#[test]
fn detector_specs_parse() {
    assert_eq!("rustface".parse::<DetectorSpec>().unwrap(), DetectorSpec::Rustface);
    assert_eq!("whole-frame".parse::<DetectorSpec>().unwrap(), DetectorSpec::WholeFrame);
    assert_eq!(
        "onnx:/m/face.onnx".parse::<DetectorSpec>().unwrap(),
        DetectorSpec::Onnx("/m/face.onnx".into())
    );
    assert!("onnx:".parse::<DetectorSpec>().is_err());
    let e = "yolo".parse::<DetectorSpec>().unwrap_err();
    assert!(e.contains("rustface"), "{e}");
    let e = match DetectorSpec::Onnx("/nonexistent/x.onnx".into()).build() {
        Err(e) => e.to_string(),
        Ok(_) => panic!("loaded a missing file"),
    };
    assert!(e.contains("/nonexistent/x.onnx"), "{e}");
}

pub(super) fn frame(w: u32, h: u32) -> Frame {
    Frame {
        index: 0,
        timestamp: Duration::ZERO,
        width: w,
        height: h,
        rgb: (0..w * h * 3).map(|i| (i % 7 * 30) as u8).collect(),
    }
}

#[test]
fn whole_frame_and_rustface_handle_any_frame() {
    let f = frame(64, 48);
    let d = WholeFrame.detect(&f).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].bbox, BBox::new(0.0, 0.0, 64.0, 48.0));
    let mut r = RustfaceDetector::new(RustfaceConfig::default()).unwrap();
    // Texture, not a face: nothing found, and frames below the cascade's window do not panic.
    assert!(r.detect(&f).unwrap().is_empty());
    assert!(r.detect(&frame(10, 10)).unwrap().is_empty());
}

#[test]
fn weighted_nms_averages_a_cluster_by_score() {
    let kept = weighted_nms(
        vec![
            det(0.0, 0.0, 10.0, 0.75),
            det(2.0, 2.0, 10.0, 0.25),
            det(50.0, 50.0, 10.0, 0.6),
        ],
        0.3,
        10,
    );
    assert_eq!(kept.len(), 2);
    // Corners 0.75 * 0 + 0.25 * 2 = 0.5; the cluster keeps its best score.
    assert_eq!(kept[0].bbox, BBox::new(0.5, 0.5, 10.5, 10.5));
    assert_eq!(kept[0].score, 0.75);
    assert!(kept[1].bbox.iou(&BBox::new(50.0, 50.0, 60.0, 60.0)) > 0.999);
    assert_eq!(weighted_nms(kept, 0.3, 1).len(), 1);
    // Landmarks are blended with the same weights, when every member of the cluster has them.
    let with = |d: Detection, at: f32| Detection {
        landmarks: Some([[at, at + 1.0]; 5]),
        ..d
    };
    let kept = weighted_nms(
        vec![
            with(det(0.0, 0.0, 10.0, 0.75), 4.0),
            with(det(2.0, 2.0, 10.0, 0.25), 8.0),
        ],
        0.3,
        10,
    );
    assert_eq!(kept[0].landmarks, Some([[5.0, 6.0]; 5]));
    let mixed = weighted_nms(
        vec![with(det(0.0, 0.0, 10.0, 0.75), 4.0), det(2.0, 2.0, 10.0, 0.25)],
        0.3,
        10,
    );
    assert_eq!(mixed[0].landmarks, None);
}

pub(super) fn demo_photo() -> Frame {
    let img = image::load_from_memory(include_bytes!("../../../models/demo/astronaut.png"))
        .unwrap()
        .to_rgb8();
    Frame {
        index: 0,
        timestamp: Duration::ZERO,
        width: img.width(),
        height: img.height(),
        rgb: img.into_raw(),
    }
}

/// The `w` x `h` window of the photo at `(x, y)`.
pub(super) fn window(photo: &Frame, x: u32, y: u32, w: u32, h: u32) -> Frame {
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for row in y..y + h {
        let start = ((row * photo.width + x) * 3) as usize;
        rgb.extend_from_slice(&photo.rgb[start..start + (w * 3) as usize]);
    }
    Frame {
        width: w,
        height: h,
        rgb,
        ..photo.clone()
    }
}

#[test]
fn blazeface_finds_the_demo_face_and_maps_boxes_through_the_letterbox() {
    let photo = demo_photo();
    for spec in [DetectorSpec::BlazeFaceShort, DetectorSpec::BlazeFaceFull] {
        let mut d = spec.build().unwrap();
        let found = d.detect(&photo).unwrap();
        assert_eq!(found.len(), 1, "{spec:?}: {found:?}");
        // Eileen Collins' face: about x 170–280, y 65–180 of the 512x512 photo.
        let face = found[0].bbox;
        let (cx, cy) = ((face.x1 + face.x2) / 2.0, (face.y1 + face.y2) / 2.0);
        assert!(
            (190.0..260.0).contains(&cx) && (90.0..160.0).contains(&cy),
            "{spec:?}: {face:?}"
        );
        // Keypoints in the landmark convention: image-left eye first, eyes above the nose
        // above the mouth, the eyes within a few pixels of MTCNN's (facenet-pytorch: left eye
        // (205.01, 101.73)), so that alignment works with BlazeFace too.
        let [le, re, nose, ml, mr] = found[0].landmarks.expect("BlazeFace's keypoints");
        assert!(
            le[0] < re[0] && le[1].max(re[1]) < nose[1] && nose[1] < ml[1],
            "{spec:?}: {:?}",
            found[0].landmarks
        );
        assert_eq!(ml, mr, "the mouth centre stands for both corners");
        assert!(
            (le[0] - 205.01).abs() < 8.0 && (le[1] - 101.73).abs() < 8.0,
            "{spec:?}: {le:?}"
        );
        // The roll against MTCNN's (2.7°; the pupils measure 2.4°) where the face fills the
        // frame as BlazeFace expects (a 160x160 window: short-range 3.1°, full-range 1.0°). In
        // the whole 512x512 photo the face is below the short-range model's range and its eye
        // keypoints are coarse (10.2°; full-range 4.4°).
        let mtcnn_roll = DetectorSpec::Mtcnn.build().unwrap().detect(&photo).unwrap()[0]
            .roll()
            .unwrap();
        let close = d.detect(&window(&photo, 150, 40, 160, 160)).unwrap();
        let roll = close[0].roll().expect("a roll from the eyes");
        assert!(
            (roll - mtcnn_roll).abs() < 3f32.to_radians(),
            "{spec:?}: {} vs MTCNN {}",
            roll.to_degrees(),
            mtcnn_roll.to_degrees()
        );
        // A 4:3 window (letterboxed top and bottom) and a 3:4 one (left and right): the box
        // follows the face, in the window's pixels.
        for (x, y, w, h) in [(0, 40, 512, 384), (60, 0, 384, 512)] {
            let moved = d.detect(&window(&photo, x, y, w, h)).unwrap();
            // The best detection; the short-range model also scores a weak 0.50 on the cut-off
            // shoulder at the window's edge.
            assert!(!moved.is_empty(), "{spec:?} in {w}x{h}");
            let m = moved[0].bbox;
            let (dx, dy) = (x as f32, y as f32);
            let shifted = BBox::new(face.x1 - dx, face.y1 - dy, face.x2 - dx, face.y2 - dy);
            assert!(m.iou(&shifted) > 0.8, "{spec:?} in {w}x{h}: {m:?} vs {shifted:?}");
        }
        // Texture, not a face.
        assert!(d.detect(&frame(320, 240)).unwrap().is_empty(), "{spec:?}");
    }
    assert_eq!(
        "blazeface".parse::<DetectorSpec>().unwrap(),
        DetectorSpec::BlazeFaceShort
    );
    assert_eq!(
        "blazeface-full".parse::<DetectorSpec>().unwrap(),
        DetectorSpec::BlazeFaceFull
    );
}

#[test]
fn mtcnn_finds_the_demo_face_with_landmarks() {
    assert_eq!("mtcnn".parse::<DetectorSpec>().unwrap(), DetectorSpec::Mtcnn);
    let mut d = DetectorSpec::Mtcnn.build().unwrap();
    assert_eq!(d.name(), "mtcnn");
    let found = d.detect(&demo_photo()).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    // facenet-pytorch's detect_face on the same photo (SOURCE.md): p 0.999998, box (181.05,
    // 62.16, 267.75, 172.05).
    let face = &found[0];
    let b = face.bbox;
    let (cx, cy) = b.center();
    assert!((190.0..260.0).contains(&cx) && (90.0..160.0).contains(&cy), "{b:?}");
    assert!(b.iou(&BBox::new(181.05, 62.16, 267.75, 172.05)) > 0.99, "{b:?}");
    assert!(face.score > 0.99, "{}", face.score);
    let [le, re, nose, ml, mr] = face.landmarks.expect("ONet's landmarks");
    for p in [le, re, nose, ml, mr] {
        assert!(
            (b.x1..b.x2).contains(&p[0]) && (b.y1..b.y2).contains(&p[1]),
            "{p:?} outside {b:?}"
        );
    }
    // Image left before image right; eyes above the nose above the mouth.
    assert!(le[0] < re[0] && ml[0] < mr[0], "{:?}", face.landmarks);
    assert!(
        le[1].max(re[1]) < nose[1] && nose[1] < ml[1].min(mr[1]),
        "{:?}",
        face.landmarks
    );
    // Against facenet-pytorch's left eye (205.01, 101.73) and right mouth corner (245.27, 141.86).
    assert!((le[0] - 205.01).abs() < 0.5 && (le[1] - 101.73).abs() < 0.5, "{le:?}");
    assert!((mr[0] - 245.27).abs() < 0.5 && (mr[1] - 141.86).abs() < 0.5, "{mr:?}");
}

#[test]
fn mtcnn_finds_nothing_in_texture_and_handles_tiny_frames() {
    let mut d = MtcnnDetector::new(MtcnnConfig::default()).unwrap();
    assert!(d.detect(&frame(320, 240)).unwrap().is_empty());
    // Below PNet's 12 px window after the first scale (20 px face -> 12 px): no pyramid at all.
    for (w, h) in [(0, 0), (1, 1), (11, 11), (11, 40), (19, 19)] {
        assert!(d.detect(&frame(w, h)).unwrap().is_empty(), "{w}x{h}");
    }
    // The smallest frame with a pyramid level (20 px short side -> one 13x13 PNet input).
    assert!(d.detect(&frame(20, 25)).unwrap().is_empty());
    assert_eq!(d.timings().pyramid_levels, 1);
}

#[test]
fn roll_is_the_angle_of_the_eye_line() {
    let mut d = det(0.0, 0.0, 10.0, 0.9);
    assert_eq!(d.roll(), None);
    d.landmarks = Some([[2.0, 3.0], [7.0, 8.0], [5.0, 6.0], [3.0, 8.0], [7.0, 8.0]]);
    assert!((d.roll().unwrap() - std::f32::consts::FRAC_PI_4).abs() < 1e-6);
    d.landmarks = Some([[2.0, 3.0]; 5]);
    assert_eq!(d.roll(), None, "coincident eyes give no angle");
}

#[test]
fn a_larger_minimum_face_skips_smaller_faces() {
    // The demo face is about 90 px wide.
    let photo = demo_photo();
    for spec in [DetectorSpec::Mtcnn, DetectorSpec::Rustface] {
        let found = |min: u32| {
            spec.build_with_min_face(Some(min))
                .unwrap()
                .detect(&photo)
                .unwrap()
                .len()
        };
        assert_eq!(found(48), 1, "{spec:?}");
        assert_eq!(found(400), 0, "{spec:?}");
    }
}
