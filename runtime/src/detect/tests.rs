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

fn frame(w: u32, h: u32) -> Frame {
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

fn demo_photo() -> Frame {
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
fn window(photo: &Frame, x: u32, y: u32, w: u32, h: u32) -> Frame {
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

/// YuNet outputs for a `w` x `h` input, all cells scoring zero.
fn yunet_zeros(w: usize, h: usize) -> [Vec<Vec<f32>>; 4] {
    let cells = |per: usize| {
        YUNET_STRIDES
            .iter()
            .map(|s| vec![0.0; (w / s) * (h / s) * per])
            .collect()
    };
    [cells(1), cells(1), cells(4), cells(10)]
}

fn yunet_outputs(o: &[Vec<Vec<f32>>; 4]) -> YunetOutputs<'_> {
    let level = |k: usize| -> [&[f32]; 3] { std::array::from_fn(|l| o[k][l].as_slice()) };
    YunetOutputs {
        cls: level(0),
        obj: level(1),
        bbox: level(2),
        kps: level(3),
    }
}

#[test]
fn yunet_decodes_a_known_output_like_opencv() {
    let cfg = YunetConfig::default();
    let mut o = yunet_zeros(64, 64);
    // Stride 8, column 3, row 2 (cell 2 * 8 + 3 = 19): sqrt(0.81 * 1.0) = 0.9; centre
    // ((3 + 0.5) * 8, (2 + 0.5) * 8) = (28, 20), size (2 * 8, 4 * 8) = (16, 32).
    let i = 19;
    o[0][0][i] = 0.81;
    o[1][0][i] = 1.0;
    o[2][0][4 * i..4 * i + 4].copy_from_slice(&[0.5, 0.5, 2f32.ln(), 4f32.ln()]);
    for k in 0..5 {
        o[3][0][10 * i + 2 * k] = k as f32 * 0.25;
        o[3][0][10 * i + 2 * k + 1] = -0.5;
    }
    // Stride 32, column 1, row 0: score sqrt(0.4 * 0.4) = 0.4, below the threshold (0.5).
    o[0][2][1] = 0.4;
    o[1][2][1] = 0.4;
    // A duplicate of the first face one cell to the right at stride 8, weaker: suppressed.
    o[0][0][i + 1] = 0.7;
    o[1][0][i + 1] = 0.9;
    o[2][0][4 * (i + 1)..4 * (i + 1) + 4].copy_from_slice(&[-0.5, 0.5, 2f32.ln(), 4f32.ln()]);
    let found = yunet_decode(&yunet_outputs(&o), 64, 64, 1.0, 64, 64, &cfg).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let d = &found[0];
    assert!((d.score - 0.9).abs() < 1e-6);
    let close =
        |a: BBox, b: BBox| (a.x1 - b.x1).abs() + (a.y1 - b.y1).abs() + (a.x2 - b.x2).abs() + (a.y2 - b.y2).abs() < 1e-4;
    assert!(close(d.bbox, BBox::new(20.0, 4.0, 36.0, 36.0)), "{:?}", d.bbox);
    let lm = d.landmarks.unwrap();
    for (k, p) in lm.iter().enumerate() {
        assert!(
            (p[0] - (3.0 + k as f32 * 0.25) * 8.0).abs() < 1e-4 && (p[1] - 12.0).abs() < 1e-4,
            "{lm:?}"
        );
    }
    // The input was the frame at half size: everything maps back doubled, clamped to the frame.
    let half = yunet_decode(&yunet_outputs(&o), 64, 64, 0.5, 60, 128, &cfg).unwrap();
    assert!(
        close(half[0].bbox, BBox::new(40.0, 8.0, 60.0, 72.0)),
        "{:?}",
        half[0].bbox
    );
    assert!((half[0].landmarks.unwrap()[0][0] - 48.0).abs() < 1e-4);
    // A lower threshold lets the stride-32 cell through: centre (32 + 0, 0), 32 x 32.
    let low = YunetConfig {
        score_threshold: 0.3,
        ..cfg
    };
    let both = yunet_decode(&yunet_outputs(&o), 64, 64, 1.0, 64, 64, &low).unwrap();
    assert_eq!(both.len(), 2);
    assert!(
        close(both[1].bbox, BBox::new(16.0, 0.0, 48.0, 16.0)),
        "{:?}",
        both[1].bbox
    );
    // Outputs that do not fit the grid are an error naming the output.
    o[2][1].pop();
    let e = yunet_decode(&yunet_outputs(&o), 64, 64, 1.0, 64, 64, &cfg).unwrap_err();
    assert!(e.contains("bbox_16"), "{e}");
}

#[test]
fn yunet_finds_the_demo_face_with_landmarks_at_the_eyes() {
    assert_eq!("yunet".parse::<DetectorSpec>().unwrap(), DetectorSpec::yunet());
    assert_eq!(
        "yunet:320x240".parse::<DetectorSpec>().unwrap(),
        DetectorSpec::Yunet {
            width: 320,
            height: 240,
            tract: false
        }
    );
    assert_eq!(
        "yunet-tract:320x240".parse::<DetectorSpec>().unwrap(),
        DetectorSpec::Yunet {
            width: 320,
            height: 240,
            tract: true
        }
    );
    assert_eq!(
        "yunet-tract".parse::<DetectorSpec>().unwrap().build().unwrap().name(),
        "yunet-tract"
    );
    for bad in [
        "yunet:",
        "yunet:320",
        "yunet:0x240",
        "yunet:320x9999",
        "yunet:axb",
        "yunet-tract:1x1",
    ] {
        let e = bad.parse::<DetectorSpec>().unwrap_err();
        assert!(e.contains("yunet:WIDTHxHEIGHT"), "{bad}: {e}");
    }
    let mut d = DetectorSpec::yunet().build().unwrap();
    assert_eq!(d.name(), "yunet");
    let photo = demo_photo();
    // At the photo's own size (no scaling: the pixels as they are, padded to 512x512 like
    // libfacedetection does), against libfacedetection's C++ detector in the yuface wheel on the
    // same photo (scripts/convert-yunet.sh): score 0.93, box x 178, y 63, 89 x 112, left eye
    // (200, 101), right eye (247, 102), nose (220, 124), mouth (198, 142), (239, 143), all
    // truncated to integers.
    let mut native = YunetDetector::from_bytes(
        super::YUNET,
        std::path::Path::new(super::YUNET_FILE),
        YunetConfig {
            width: 512,
            height: 512,
            ..YunetConfig::default()
        },
    )
    .unwrap();
    let found = native.detect(&photo).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let face = &found[0];
    let b = face.bbox;
    let trunc = |v: f32| v.trunc();
    assert_eq!(
        [trunc(b.x1), trunc(b.y1), trunc(b.x2 - b.x1), trunc(b.y2 - b.y1)],
        [178.0, 63.0, 89.0, 112.0],
        "{b:?}"
    );
    assert_eq!(trunc(face.score * 100.0), 93.0, "{}", face.score);
    let lm = face.landmarks.expect("YuNet's landmarks");
    let cpp = [
        [200.0, 101.0],
        [247.0, 102.0],
        [220.0, 124.0],
        [198.0, 142.0],
        [239.0, 143.0],
    ];
    for (p, q) in lm.iter().zip(cpp) {
        assert_eq!([trunc(p[0]), trunc(p[1])], q, "{lm:?}");
    }
    // The default detector scales the 512x512 photo into its 640x480 input: the same face.
    let scaled = d.detect(&photo).unwrap();
    assert_eq!(scaled.len(), 1, "{scaled:?}");
    assert!(scaled[0].bbox.iou(&b) > 0.9, "{:?} vs {b:?}", scaled[0].bbox);
    // The eyes within a few pixels of MTCNN's (facenet-pytorch: left eye (205.01, 101.73)), and
    // the roll from them within 3° of MTCNN's, so that eye alignment works with YuNet.
    assert!(
        (lm[0][0] - 205.01).abs() < 6.0 && (lm[0][1] - 101.73).abs() < 3.0,
        "{lm:?}"
    );
    let mtcnn_roll = DetectorSpec::Mtcnn.build().unwrap().detect(&photo).unwrap()[0]
        .roll()
        .unwrap();
    assert!((face.roll().unwrap() - mtcnn_roll).abs() < 3f32.to_radians());
    // A 4:3 window: the same face, in the window's pixels.
    let moved = d.detect(&window(&photo, 0, 40, 512, 384)).unwrap();
    let shifted = BBox::new(b.x1, b.y1 - 40.0, b.x2, b.y2 - 40.0);
    assert!(moved[0].bbox.iou(&shifted) > 0.9, "{:?} vs {shifted:?}", moved[0].bbox);
    // Scaled down into a 320x240 input (bilinear, padded): still the face, mapped back.
    let mut small = "yunet:320x240".parse::<DetectorSpec>().unwrap().build().unwrap();
    assert_eq!(small.name(), "yunet:320x240");
    let s = small.detect(&photo).unwrap();
    assert_eq!(s.len(), 1, "{s:?}");
    assert!(s[0].bbox.iou(&b) > 0.85, "{:?} vs {b:?}", s[0].bbox);
    // Texture, and frames too small or empty, give nothing.
    assert!(d.detect(&frame(320, 240)).unwrap().is_empty());
    for (w, h) in [(0, 0), (1, 1), (7, 3)] {
        assert!(d.detect(&frame(w, h)).unwrap().is_empty(), "{w}x{h}");
    }
}

#[test]
fn yunet_refuses_malformed_models_and_sizes() {
    let path = std::path::Path::new("bad.onnx");
    let msg = |r: Result<YunetDetector, DetectError>| r.err().expect("an error").to_string();
    let garbage = msg(YunetDetector::from_bytes(b"not onnx", path, YunetConfig::default()));
    assert!(
        garbage.contains("bad.onnx") && garbage.contains("not a loadable ONNX model"),
        "{garbage}"
    );
    // A real ONNX detector with other outputs (BlazeFace at its 128x128: scores, boxes, keypoints).
    let at128 = YunetConfig {
        width: 128,
        height: 128,
        ..YunetConfig::default()
    };
    let other = msg(YunetDetector::from_bytes(super::BLAZEFACE_SHORT, path, at128));
    assert!(other.contains("not YuNet's 12"), "{other}");
    for (w, h) in [(0, 480), (640, 0), (5000, 480)] {
        let cfg = YunetConfig {
            width: w,
            height: h,
            ..YunetConfig::default()
        };
        let e = msg(YunetDetector::from_bytes(super::YUNET, path, cfg));
        assert!(e.contains("must be 1 to 4096"), "{w}x{h}: {e}");
    }
    let missing = msg(YunetDetector::load(
        std::path::Path::new("/nonexistent/yunet.onnx"),
        YunetConfig::default(),
    ));
    assert!(missing.contains("/nonexistent/yunet.onnx"), "{missing}");
}

/// The largest difference between the native and the tract engine's raw outputs on `frame`, per
/// output (cls, obj: probabilities; bbox, kps: offsets in cells, log sizes).
fn yunet_engine_gap(cfg: YunetConfig, frame: &Frame) -> Vec<f32> {
    let path = std::path::Path::new(super::YUNET_FILE);
    let mut native = YunetDetector::from_bytes(super::YUNET, path, cfg).unwrap();
    let mut tract = YunetDetector::from_bytes_tract(super::YUNET, path, cfg).unwrap();
    // the native engine on one thread (a board's setting) and on three (rows cut unevenly into
    // bands): every output is computed by the same code whatever band it falls in, so the two
    // agree to the bit, and each run twice reuses its buffers
    let on = |threads: usize, native: &mut YunetDetector| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| native.raw_outputs(frame).unwrap())
    };
    let a = on(1, &mut native);
    assert!(a == on(3, &mut native), "1 and 3 threads differ");
    assert!(a == on(1, &mut native), "a second pass differs");
    let b = tract.raw_outputs(frame).unwrap();
    assert_eq!(a.len(), 12);
    a.iter()
        .zip(&b)
        .map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            assert!(x.iter().all(|v| v.is_finite()));
            x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max)
        })
        .collect()
}

#[test]
fn yunet_native_forward_matches_tract() {
    // Both engines compute the same float32 graph, only summing in other orders, so they differ
    // by rounding: relative ~1e-6 on activations that reach a few hundred (pixels are 0-255).
    // 2e-3 on the outputs (probabilities and offsets of order 1-10) leaves room for that and is
    // far below anything decoding notices (a box moves by 2e-3 cells, 0.06 px at stride 32); a
    // wrong weight layout, tap or channel order gives errors of order 0.1-10.
    const TOL: f32 = 2e-3;
    let photo = demo_photo();
    let at = |w, h| YunetConfig {
        width: w,
        height: h,
        ..YunetConfig::default()
    };
    // the photo as it is (512x512) and scaled into 640x480 (384x384, padded)
    for cfg in [at(512, 512), at(640, 480)] {
        let gap = yunet_engine_gap(cfg, &photo);
        assert!(gap.iter().all(|&g| g < TOL), "{}x{}: {gap:?}", cfg.width, cfg.height);
    }
    // noise at an odd size (padded to 320x288 inside the network), seeded
    let mut s = 12345u32;
    let rgb = (0..301 * 277 * 3)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 24) as u8
        })
        .collect();
    let noise = Frame {
        width: 301,
        height: 277,
        rgb,
        ..photo.clone()
    };
    let gap = yunet_engine_gap(at(301, 277), &noise);
    assert!(gap.iter().all(|&g| g < TOL), "noise: {gap:?}");
    // and the two decode to the same faces on the photo
    let path = std::path::Path::new(super::YUNET_FILE);
    let n = YunetDetector::from_bytes(super::YUNET, path, at(640, 480))
        .unwrap()
        .detect(&photo)
        .unwrap();
    let t = YunetDetector::from_bytes_tract(super::YUNET, path, at(640, 480))
        .unwrap()
        .detect(&photo)
        .unwrap();
    assert_eq!(n.len(), t.len());
    for (a, b) in n.iter().zip(&t) {
        assert!(
            a.bbox.iou(&b.bbox) > 0.999 && (a.score - b.score).abs() < 1e-3,
            "{a:?} vs {b:?}"
        );
    }
}

#[test]
fn yunet_native_refuses_graphs_it_cannot_run() {
    // BlazeFace is a valid ONNX model, but with operators and layouts the native engine lacks
    let e = yunet_native::YunetNet::from_onnx(super::BLAZEFACE_SHORT, 128, 128)
        .err()
        .expect("an error");
    assert!(e.contains("not supported") || e.contains("only"), "{e}");
    assert!(yunet_native::YunetNet::from_onnx(b"not onnx", 64, 64).is_err());
}
