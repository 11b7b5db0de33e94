//! IoU association with constant-velocity prediction, and an identity check on the face
//! embedding: boxes alone cannot tell two people who sit in the same spot apart.

use super::Ema;
use crate::detect::{BBox, Detection};
use crate::instance_buffer::TrackAdmission;

/// See [`TrackerConfig::min_identity_cos`]; the measurement behind it is in
/// docs/results/runtime.md ("One track per person").
pub const DEFAULT_MIN_IDENTITY_COS: f32 = 0.5;

#[derive(Debug, Clone, Copy)]
pub struct TrackerConfig {
    /// IoU between a track's predicted box and a detection needed to match.
    pub iou_threshold: f32,
    /// A track unmatched for more than this many detection rounds is dropped.
    pub max_missed: u32,
    /// EMA weight of the newest probabilities.
    pub smoothing: f32,
    /// Weight of the newest displacement in the velocity estimate.
    pub velocity_gain: f32,
    /// A face whose unit embedding has a cosine below this to its track's running embedding is
    /// someone else: the track ends and the face starts a new one ([`Tracker::check_identity`]).
    /// -1 never splits.
    pub min_identity_cos: f32,
    /// Weight of the newest embedding in a track's running embedding.
    pub identity_gain: f32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            iou_threshold: 0.3,
            max_missed: 3,
            smoothing: 0.4,
            velocity_gain: 0.5,
            min_identity_cos: DEFAULT_MIN_IDENTITY_COS,
            identity_gain: 0.3,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Track {
    pub id: u64,
    pub bbox: BBox,
    pub score: f32,
    /// In-plane rotation from the last detection's landmarks (radians; 0 without landmarks),
    /// kept between detections.
    pub roll: f32,
    /// Box displacement per frame (x1, y1, x2, y2).
    velocity: [f32; 4],
    /// The box of the last matched detection. The velocity is measured between detections, not
    /// from the carried box: a carried box already holds the predicted motion, and the
    /// difference to it (over one frame) is the prediction's error, which fed back as a
    /// velocity made the boxes of a moving face swing wider at each detection.
    detected: BBox,
    /// Frame of the last matched detection.
    pub last_detected: u64,
    /// Frame the box was last moved to.
    last_frame: u64,
    pub missed: u32,
    pub hits: u32,
    pub ema: Ema,
    pub admission: TrackAdmission,
    /// Running unit embedding of the face (`None` until the model has seen it).
    appearance: Option<Vec<f32>>,
}

impl Track {
    /// The box predicted for `frame`.
    pub fn predict(&self, frame: u64) -> BBox {
        let dt = frame.saturating_sub(self.last_frame) as f32;
        let v = self.velocity;
        BBox::new(
            self.bbox.x1 + v[0] * dt,
            self.bbox.y1 + v[1] * dt,
            self.bbox.x2 + v[2] * dt,
            self.bbox.y2 + v[3] * dt,
        )
    }
}

#[derive(Debug, Clone)]
pub struct Tracker {
    pub cfg: TrackerConfig,
    tracks: Vec<Track>,
    next_id: u64,
}

impl Tracker {
    pub fn new(cfg: TrackerConfig) -> Self {
        Tracker {
            cfg,
            tracks: Vec::new(),
            next_id: 1,
        }
    }

    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// Ends every track (ids keep counting, so a later face never reuses an id): for inputs
    /// whose frames are unrelated, such as a folder of face crops.
    pub fn clear(&mut self) {
        self.tracks.clear();
    }

    pub fn tracks_mut(&mut self) -> &mut [Track] {
        &mut self.tracks
    }

    /// A frame with detections: match (best IoU first), update, start and expire tracks.
    /// Returns the indices into `tracks()` of the tracks seen in this frame, in the order of
    /// `dets` (every detection has a track afterwards).
    pub fn update(&mut self, frame: u64, dets: &[Detection]) -> Vec<usize> {
        let predicted: Vec<BBox> = self.tracks.iter().map(|t| t.predict(frame)).collect();
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (ti, p) in predicted.iter().enumerate() {
            for (di, d) in dets.iter().enumerate() {
                let iou = p.iou(&d.bbox);
                if iou >= self.cfg.iou_threshold {
                    pairs.push((iou, ti, di));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_of = vec![None; dets.len()];
        let mut used = vec![false; self.tracks.len()];
        for (_, ti, di) in pairs {
            if used[ti] || track_of[di].is_some() {
                continue;
            }
            used[ti] = true;
            track_of[di] = Some(ti);
        }
        let gain = self.cfg.velocity_gain;
        for (di, d) in dets.iter().enumerate() {
            if let Some(ti) = track_of[di] {
                let t = &mut self.tracks[ti];
                let dt = frame.saturating_sub(t.last_detected).max(1) as f32;
                let moved = [
                    (d.bbox.x1 - t.detected.x1) / dt,
                    (d.bbox.y1 - t.detected.y1) / dt,
                    (d.bbox.x2 - t.detected.x2) / dt,
                    (d.bbox.y2 - t.detected.y2) / dt,
                ];
                for (v, m) in t.velocity.iter_mut().zip(moved) {
                    *v = gain * m + (1.0 - gain) * *v;
                }
                t.bbox = d.bbox;
                t.detected = d.bbox;
                t.score = d.score;
                t.roll = d.roll().unwrap_or(0.0);
                t.last_detected = frame;
                t.last_frame = frame;
                t.missed = 0;
                t.hits += 1;
            }
        }
        for (ti, t) in self.tracks.iter_mut().enumerate() {
            if !used[ti] {
                t.missed += 1;
            }
        }
        // Expire before adding, keeping the indices of matched tracks valid through a remap.
        let mut remap = vec![None; self.tracks.len()];
        let mut kept = Vec::with_capacity(self.tracks.len());
        for (ti, t) in std::mem::take(&mut self.tracks).into_iter().enumerate() {
            if t.missed <= self.cfg.max_missed {
                remap[ti] = Some(kept.len());
                kept.push(t);
            }
        }
        self.tracks = kept;
        let mut out = Vec::with_capacity(dets.len());
        for (di, d) in dets.iter().enumerate() {
            match track_of[di].and_then(|ti| remap[ti]) {
                Some(i) => out.push(i),
                None => {
                    self.tracks.push(Track {
                        id: self.next_id,
                        bbox: d.bbox,
                        score: d.score,
                        roll: d.roll().unwrap_or(0.0),
                        velocity: [0.0; 4],
                        detected: d.bbox,
                        last_detected: frame,
                        last_frame: frame,
                        missed: 0,
                        hits: 1,
                        ema: Ema::new(self.cfg.smoothing),
                        admission: TrackAdmission::default(),
                        appearance: None,
                    });
                    self.next_id += 1;
                    out.push(self.tracks.len() - 1);
                }
            }
        }
        out
    }

    /// A frame without detection: every track is carried to its predicted box. Returns the
    /// indices of the tracks seen at the last detection (a track the detector just missed is
    /// kept for re-association, not reported as a face).
    pub fn carry(&mut self, frame: u64) -> Vec<usize> {
        for t in &mut self.tracks {
            t.bbox = t.predict(frame);
            t.last_frame = frame;
        }
        (0..self.tracks.len()).filter(|&i| self.tracks[i].missed == 0).collect()
    }

    /// Checks that the face of track `i` with unit embedding `z` is the one the track has
    /// followed; if not, track `i` ends and a new track (new id, fresh smoothing and admission,
    /// the same box) takes its place at the same index. Returns whether it split. Called once
    /// per face after the model ran, before its p̂ is smoothed or admitted.
    pub fn check_identity(&mut self, i: usize, z: &[f32]) -> bool {
        let gain = self.cfg.identity_gain;
        let t = &mut self.tracks[i];
        let Some(a) = &mut t.appearance else {
            t.appearance = Some(z.to_vec());
            return false;
        };
        let cos: f32 = a.iter().zip(z).map(|(x, y)| x * y).sum();
        if cos >= self.cfg.min_identity_cos {
            for (x, y) in a.iter_mut().zip(z) {
                *x = (1.0 - gain) * *x + gain * y;
            }
            let n = a.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            a.iter_mut().for_each(|x| *x /= n);
            return false;
        }
        let old = &self.tracks[i];
        self.tracks[i] = Track {
            id: self.next_id,
            bbox: old.bbox,
            score: old.score,
            roll: old.roll,
            velocity: [0.0; 4],
            detected: old.detected,
            last_detected: old.last_detected,
            last_frame: old.last_frame,
            missed: 0,
            hits: 1,
            ema: Ema::new(self.cfg.smoothing),
            admission: TrackAdmission::default(),
            appearance: Some(z.to_vec()),
        };
        self.next_id += 1;
        true
    }
}
