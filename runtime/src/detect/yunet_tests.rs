//! YuNet: decoding, the demo face, malformed models, and the native engine against tract.

use super::tests::{demo_photo, frame, window};
use super::*;
use crate::source::Frame;

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
            tract: false,
            second_look: true
        }
    );
    assert_eq!(
        "yunet-tract:320x240".parse::<DetectorSpec>().unwrap(),
        DetectorSpec::Yunet {
            width: 320,
            height: 240,
            tract: true,
            second_look: true
        }
    );
    assert_eq!(
        "yunet-tract-onepass:320x240".parse::<DetectorSpec>().unwrap(),
        DetectorSpec::Yunet {
            width: 320,
            height: 240,
            tract: true,
            second_look: false
        }
    );
    assert_eq!(
        "yunet-onepass".parse::<DetectorSpec>().unwrap().build().unwrap().name(),
        "yunet-onepass"
    );
    for bad in ["yunet-onepass-tract", "yunet-", "yunetx", "yunet-onepass:320"] {
        assert!(bad.parse::<DetectorSpec>().is_err(), "{bad}");
    }
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

/// The demo photo's face cut out tight (the square around its box: x 178, y 63, 89 x 112, as
/// FER2013's crops are cut), scaled to `face` px and pasted at (200, 150) into a 640x480 frame of
/// the test pattern; the pasted square.
fn small_demo_face(face: u32) -> (Frame, BBox) {
    let photo = demo_photo();
    let img = image::RgbImage::from_raw(photo.width, photo.height, photo.rgb.clone()).unwrap();
    let crop = image::imageops::crop_imm(&img, 166, 63, 112, 112).to_image();
    let small = image::imageops::resize(&crop, face, face, image::imageops::FilterType::Triangle);
    let mut out = frame(640, 480);
    let (ox, oy) = (200u32, 150u32);
    for (x, y, p) in small.enumerate_pixels() {
        let at = (((oy + y) * 640 + ox + x) * 3) as usize;
        out.rgb[at..at + 3].copy_from_slice(&p.0);
    }
    let (x, y, f) = (ox as f32, oy as f32, face as f32);
    (out, BBox::new(x, y, x + f, y + f))
}

#[test]
fn the_second_look_finds_small_faces_one_pass_misses_and_keeps_what_it_finds() {
    let mut one = "yunet-onepass".parse::<DetectorSpec>().unwrap().build().unwrap();
    let mut two = DetectorSpec::yunet().build().unwrap();
    let mut gained = Vec::new();
    // Five sizes, not every one: this test also runs under qemu in CI.
    for face in [16, 20, 24, 32, 48] {
        let (f, truth) = small_demo_face(face);
        let a = one.detect(&f).unwrap();
        let b = two.detect(&f).unwrap();
        let hit = |d: &[Detection]| d.iter().any(|d| d.bbox.iou(&truth) >= 0.3);
        // What one pass finds at the threshold, two passes find too.
        for d in a.iter().filter(|d| d.score >= 0.5) {
            assert!(
                b.iter().any(|e| e.bbox.iou(&d.bbox) > 0.9),
                "{face} px: {d:?} lost in {b:?}"
            );
        }
        // What the second look adds is the face, nothing else.
        for d in b.iter().filter(|d| !a.iter().any(|e| e.bbox.iou(&d.bbox) > 0.9)) {
            assert!(
                d.bbox.iou(&truth) >= 0.3,
                "{face} px: {d:?} added, the face is {truth:?}"
            );
        }
        if hit(&b) && !hit(&a) {
            gained.push(face);
        }
    }
    eprintln!("the second look alone found the face at {gained:?} px");
    assert!(
        !gained.is_empty(),
        "no face size where the second look found what one pass missed"
    );
}

#[test]
fn the_second_looks_give_the_same_faces_on_one_thread_and_on_several() {
    // Four small tight faces (the looks' work) in one frame.
    let (mut f, _) = small_demo_face(20);
    for (i, (x, y)) in [(40u32, 40u32), (420, 60), (100, 380), (500, 360)]
        .into_iter()
        .enumerate()
    {
        let (g, _) = small_demo_face(16 + 4 * i as u32);
        for row in 0..48u32 {
            for col in 0..48u32 {
                let from = (((150 + row) * 640 + 200 + col) * 3) as usize;
                let to = (((y + row) * 640 + x + col) * 3) as usize;
                let px: [u8; 3] = g.rgb[from..from + 3].try_into().unwrap();
                f.rgb[to..to + 3].copy_from_slice(&px);
            }
        }
    }
    let detect_on = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| DetectorSpec::yunet().build().unwrap().detect(&f).unwrap())
    };
    let one = detect_on(1);
    assert!(!one.is_empty());
    assert_eq!(detect_on(3), one);
}
