//! Detection ahead against detection in line, on the embedded bundle with a scripted detector:
//! the same faces and tracks, the same number of detections, boxes where the face is, lost faces
//! searched for at once, and errors reported.

use super::{FrameResult, PipelineError, Recognizer, RecognizerConfig};
use crate::bundle::Precision;
use crate::detect::{BBox, DetectError, Detection, FaceDetector};
use crate::instance_buffer::InstanceBuffer;
use crate::source::Frame;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const W: u32 = 320;
const H: u32 = 240;

/// One 80-px face whose left edge is at `x(frame)`, present where `x` gives `Some`; slow enough
/// (2 ms) that a detection ahead is still running when the next frame arrives.
struct Scripted {
    x: fn(u64) -> Option<f32>,
    calls: Arc<AtomicUsize>,
    fail_at_call: Option<usize>,
}

impl FaceDetector for Scripted {
    fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>, DetectError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        std::thread::sleep(Duration::from_millis(2));
        if self.fail_at_call == Some(call) {
            return Err(DetectError::Run {
                detector: "scripted".into(),
                message: format!("failed on frame {}", frame.index),
            });
        }
        Ok((self.x)(frame.index)
            .map(|x| Detection {
                bbox: BBox::new(x, 60.0, x + 80.0, 140.0),
                score: 0.9,
                landmarks: None,
            })
            .into_iter()
            .collect())
    }
    fn name(&self) -> String {
        "scripted".into()
    }
}

fn frame(index: u64) -> Frame {
    Frame {
        index,
        timestamp: Duration::from_millis(index * 33),
        width: W,
        height: H,
        rgb: (0..W * H * 3).map(|i| (i % 251) as u8).collect(),
    }
}

/// The frames' results and the detector's call count (after the recognizer, and with it the
/// detector thread, is gone). `None` without an embedded default bundle.
fn run(
    ahead: bool,
    every: u32,
    frames: u64,
    x: fn(u64) -> Option<f32>,
    fail_at_call: Option<usize>,
) -> Option<(Vec<Result<FrameResult, PipelineError>>, usize)> {
    let (bundle, model) = crate::default_bundle::open(Some(Precision::Fp32)).ok()?;
    let calls = Arc::new(AtomicUsize::new(0));
    let detector = Scripted {
        x,
        calls: calls.clone(),
        fail_at_call,
    };
    let mut cfg = RecognizerConfig::for_bundle(&bundle);
    cfg.detect_every = every;
    cfg.continual = false;
    cfg.align = false;
    // The texture moves under the box; only the boxes are under test here.
    cfg.tracker.min_identity_cos = -1.0;
    let buffer = InstanceBuffer::from_seed(&bundle.buffer, 16);
    let mut rec = Recognizer::new(&bundle, model, Box::new(detector), buffer, cfg);
    if ahead {
        rec = rec.with_detection_ahead().unwrap();
    }
    let mut out = Vec::new();
    for i in 0..frames {
        let r = rec.process(&frame(i));
        let failed = r.is_err();
        out.push(r);
        if failed {
            break;
        }
    }
    drop(rec);
    Some((out, calls.load(Ordering::SeqCst)))
}

fn moving(i: u64) -> Option<f32> {
    Some(40.0 + 3.0 * i as f32)
}

#[test]
fn ahead_reports_the_faces_and_tracks_of_inline_detection_with_as_many_detections() {
    for every in [1, 5] {
        let Some((inline, inline_calls)) = run(false, every, 30, moving, None) else {
            return;
        };
        let (ahead, ahead_calls) = run(true, every, 30, moving, None).unwrap();
        assert_eq!(inline_calls, ahead_calls, "detections, every {every}");
        assert_eq!(ahead_calls, if every == 1 { 30 } else { 6 });
        for (i, (a, b)) in inline.iter().zip(&ahead).enumerate() {
            let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
            assert_eq!(a.faces.len(), 1, "frame {i}");
            assert_eq!(b.faces.len(), 1, "frame {i}");
            assert_eq!(a.faces[0].track, b.faces[0].track, "one track, frame {i}");
            // Once the track's velocity has settled, the face's box is where the face is,
            // whether its last detection was of this frame or the one before.
            if i >= 21 {
                let truth = moving(i as u64).unwrap();
                for (mode, r) in [("inline", a), ("ahead", b)] {
                    let dx = (r.faces[0].bbox.x1 - truth).abs();
                    assert!(dx < 1.0, "{mode}, every {every}, frame {i}: x1 off by {dx}");
                }
            }
        }
    }
}

fn gone_from_10_to_19(i: u64) -> Option<f32> {
    (!(10..20).contains(&i)).then_some(100.0)
}

#[test]
fn a_lost_face_is_searched_for_on_every_frame_until_found() {
    let Some((ahead, calls)) = run(true, 5, 25, gone_from_10_to_19, None) else {
        return;
    };
    let faces: Vec<usize> = ahead.iter().map(|r| r.as_ref().unwrap().faces.len()).collect();
    // Frame 10's detection (scheduled) finds nothing; applied at frame 11, so frame 10 still
    // shows the carried face and frame 11 none; from there each frame detects at once until
    // the face is back at frame 20, found on that frame.
    assert_eq!(&faces[..11], &[1; 11]);
    assert_eq!(&faces[11..20], &[0; 9]);
    assert_eq!(&faces[20..], &[1; 5]);
    // 0 (no track yet), 5, 10 (ahead), 11..=20 (at once), and none scheduled from 21 to 24.
    assert_eq!(calls, 1 + 2 + 10);
}

#[test]
fn a_detector_error_ahead_fails_the_frame_that_applies_it() {
    let Some((ahead, _)) = run(true, 1, 10, moving, Some(3)) else {
        return;
    };
    // Calls: frame 0 at once, then frames 1 and 2 ahead; frame 2's fails, applied at frame 3.
    assert_eq!(ahead.len(), 4);
    assert!(ahead[..3].iter().all(Result::is_ok));
    let err = ahead[3].as_ref().unwrap_err().to_string();
    assert!(err.contains("failed on frame 2"), "{err}");
}
