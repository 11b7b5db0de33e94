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
