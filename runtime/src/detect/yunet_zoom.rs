//! YuNet's second look: small faces the full-frame pass scores below the threshold are looked at
//! again, magnified.
//!
//! Why: at 640x480 YuNet's smallest anchors see a 32–48 px face with few cells around it, and on
//! tight, low-resolution faces (FER2013's crops) it often scores them 0.05–0.5, below the
//! threshold, while the same face scaled to ~96 px scores far above it (docs/results/detection.md).
//! Running the whole frame magnified would cost 4–9x; instead each doubtful small candidate (a
//! handful per frame) gets a window around it, scaled so that the candidate is ~`window /
//! context` px, through a second, small YuNet (the same weights at `window` x `window`), and is
//! kept only if that look finds a face near the window's centre, surer than the usual threshold. A cascade,
//! as MTCNN's stages are, with YuNet as both stages.

use super::{BBox, Detection};

/// The second look's settings (`YunetConfig::zoom`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZoomConfig {
    /// Candidates of the full-frame pass scoring at least this (and below the detector's
    /// threshold) are doubtful: looked at again.
    pub candidate_threshold: f32,
    /// Only doubtful candidates whose box side (the larger) is at most this many frame pixels are
    /// looked at again; larger ones are dropped (YuNet's full-frame recall is already high there).
    pub max_side: f32,
    /// The score the second look needs: above the first pass's threshold, since a face that
    /// gets a second chance must be surer (faces in magnified windows score ~0.8–0.9; parts of
    /// bodies and clothes ~0.55–0.6 on the demo photo).
    pub confirm_threshold: f32,
    /// The second look's network input side (a multiple of 32).
    pub window: u32,
    /// The window's side over the candidate's: the context around it.
    pub context: f32,
    /// Second looks per frame at most (the best-scoring doubtful candidates first): the bound on
    /// the extra time a frame full of doubtful texture can cost.
    pub max_windows: usize,
}

impl Default for ZoomConfig {
    /// A doubtful small candidate (score 0.01–0.5, side ≤ 80 px) is seen again with as much
    /// context around it, at 192x192, and kept at ≥ 0.7: the face at ~96 px, the size where one pass finds ~97 % of
    /// FER2013's faces. Chosen on FER2013 validation frames, confirmed on train-crop frames
    /// (docs/results/detection.md, "YuNet's second look").
    fn default() -> Self {
        ZoomConfig {
            candidate_threshold: 0.01,
            confirm_threshold: 0.7,
            max_side: 80.0,
            window: 192,
            context: 2.0,
            max_windows: 8,
        }
    }
}

/// A square window in frame pixels: its top-left corner and side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub x0: f32,
    pub y0: f32,
    pub side: f32,
}

impl ZoomConfig {
    /// The doubtful candidates worth a second look, best first: those scoring in
    /// `[candidate_threshold, threshold)` with a box side ≤ `max_side` and not centred inside one
    /// of the `sure` faces, at most `max_windows`. `dets` come sorted by score, best first.
    pub fn doubtful<'a>(
        &self,
        dets: &'a [Detection],
        sure: &'a [Detection],
        threshold: f32,
    ) -> impl Iterator<Item = &'a Detection> {
        let (lo, max_side) = (self.candidate_threshold, self.max_side);
        dets.iter()
            .filter(move |d| {
                d.score >= lo
                    && d.score < threshold
                    && d.bbox.width().max(d.bbox.height()) <= max_side
                    && !sure.iter().any(|s| contains(&s.bbox, d.bbox.center()))
            })
            .take(self.max_windows)
    }

    /// The window around a candidate: centred on it, `context` times its larger side.
    pub fn window_around(&self, b: &BBox) -> Window {
        let side = (b.width().max(b.height()) * self.context).max(1.0);
        let (cx, cy) = b.center();
        Window {
            x0: cx - side / 2.0,
            y0: cy - side / 2.0,
            side,
        }
    }
}

fn contains(b: &BBox, (x, y): (f32, f32)) -> bool {
    (b.x1..=b.x2).contains(&x) && (b.y1..=b.y2).contains(&y)
}

/// Whether a face the second look found lies mostly (half its area or more) inside one of the
/// `sure` faces: then it is a part of that face (an eye, a mouth seen magnified), not a face.
pub fn inside_a_face(d: &Detection, sure: &[Detection]) -> bool {
    let b = &d.bbox;
    sure.iter().any(|s| {
        let w = (b.x2.min(s.bbox.x2) - b.x1.max(s.bbox.x1)).max(0.0);
        let h = (b.y2.min(s.bbox.y2) - b.y1.max(s.bbox.y1)).max(0.0);
        w * h >= 0.5 * b.area()
    })
}

/// What the second look kept: the best face (detections in the window's own pixels, best first)
/// whose centre lies in the middle half of the window, the candidate's place; `None` when the look
/// found nothing there.
pub fn confirmed(found: Vec<Detection>, w: &Window) -> Option<Detection> {
    let c = w.side / 2.0;
    found.into_iter().find(|d| {
        let (x, y) = d.bbox.center();
        (x - c).abs() <= w.side / 4.0 && (y - c).abs() <= w.side / 4.0
    })
}

/// A detection found in a window's own pixels (window pixel = frame pixel − origin) moved to the
/// frame's, clamped to it.
pub fn to_frame(d: Detection, w: &Window, frame_w: u32, frame_h: u32) -> Detection {
    let b = &d.bbox;
    Detection {
        bbox: BBox::new(b.x1 + w.x0, b.y1 + w.y0, b.x2 + w.x0, b.y2 + w.y0).clamp(frame_w, frame_h),
        score: d.score,
        landmarks: d.landmarks.map(|lm| lm.map(|[x, y]| [x + w.x0, y + w.y0])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x1: f32, y1: f32, x2: f32, y2: f32, score: f32) -> Detection {
        Detection {
            bbox: BBox::new(x1, y1, x2, y2),
            score,
            landmarks: Some([[x1, y1]; 5]),
        }
    }

    #[test]
    fn only_small_doubtful_candidates_outside_sure_faces_are_looked_at_best_first() {
        let z = ZoomConfig {
            max_windows: 2,
            ..ZoomConfig::default()
        };
        let sure = [det(100.0, 100.0, 260.0, 260.0, 0.9)];
        let cands = [
            det(0.0, 0.0, 30.0, 30.0, 0.4),       // looked at (first)
            det(150.0, 150.0, 170.0, 170.0, 0.3), // centred inside the sure face: not
            det(300.0, 0.0, 400.0, 100.0, 0.3),   // too large (100 > 80 px): not
            det(0.0, 300.0, 30.0, 330.0, 0.005),  // below the candidate threshold: not
            det(500.0, 0.0, 530.0, 30.0, 0.2),    // looked at (second)
            det(500.0, 200.0, 530.0, 230.0, 0.1), // beyond max_windows: not
        ];
        let picked: Vec<f32> = z.doubtful(&cands, &sure, 0.5).map(|d| d.bbox.x1).collect();
        assert_eq!(picked, [0.0, 500.0]);
        // A candidate at the threshold is not doubtful: the first pass keeps it.
        let at = [det(0.0, 0.0, 30.0, 30.0, 0.5)];
        assert_eq!(z.doubtful(&at, &[], 0.5).count(), 0);
    }

    #[test]
    fn a_window_is_centred_on_its_candidate_with_context() {
        let z = ZoomConfig::default();
        let w = z.window_around(&BBox::new(100.0, 50.0, 130.0, 90.0));
        // The larger side (40) times the context (2), centred at (115, 70).
        assert_eq!(
            w,
            Window {
                x0: 75.0,
                y0: 30.0,
                side: 80.0
            }
        );
    }

    #[test]
    fn the_look_keeps_the_best_face_near_the_centre_and_maps_it_to_the_frame() {
        let w = Window {
            x0: 75.0,
            y0: 30.0,
            side: 80.0,
        };
        // Window pixels: the middle half is 20..60 on both axes.
        let off_centre = det(0.0, 0.0, 20.0, 20.0, 0.95); // centre (10, 10)
        let central = det(25.0, 25.0, 55.0, 55.0, 0.7); // centre (40, 40)
        assert_eq!(confirmed(vec![off_centre.clone()], &w), None);
        let kept = confirmed(vec![off_centre, central.clone()], &w).unwrap();
        assert_eq!(kept, central);
        let f = to_frame(kept, &w, 640, 480);
        assert_eq!(f.bbox, BBox::new(100.0, 55.0, 130.0, 85.0));
        assert_eq!(f.landmarks.unwrap()[0], [100.0, 55.0]);
        assert_eq!(f.score, 0.7);
        // Clamped to the frame.
        let edge = Window {
            x0: 620.0,
            y0: -10.0,
            side: 40.0,
        };
        let f = to_frame(det(10.0, 0.0, 35.0, 30.0, 0.6), &edge, 640, 480);
        assert_eq!(f.bbox, BBox::new(630.0, 0.0, 640.0, 20.0));
    }

    #[test]
    fn a_face_mostly_inside_a_sure_face_is_a_part_of_it() {
        let sure = [det(100.0, 100.0, 200.0, 200.0, 0.9)];
        assert!(inside_a_face(&det(120.0, 120.0, 150.0, 150.0, 0.6), &sure));
        // Half inside (150..250 x 100..150 overlaps 150..200): still a part.
        assert!(inside_a_face(&det(150.0, 100.0, 250.0, 150.0, 0.6), &sure));
        // A quarter inside: a face of its own.
        assert!(!inside_a_face(&det(175.0, 100.0, 275.0, 150.0, 0.6), &sure));
        assert!(!inside_a_face(&det(300.0, 300.0, 330.0, 330.0, 0.6), &sure));
        assert!(!inside_a_face(&det(120.0, 120.0, 150.0, 150.0, 0.6), &[]));
    }
}
