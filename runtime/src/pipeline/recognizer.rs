//! Frame in, faces with expressions out: detection (every N frames, tracks carried between),
//! crops batched into one model run, fusion with the prototypes and the instance buffer,
//! per-track smoothing, and continual pseudo-labelling into the buffer. A library type: `sitfer
//! run`, `sitfer eval` and the offline adaptation use it alike.

use super::detect_ahead::Detector;
use super::{FaceResult, FrameResult, StageTimes};
use crate::adapt::Head;
use crate::bundle::{Bundle, TextPrototypes};
use crate::detect::{BBox, DetectError, FaceDetector};
use crate::fusion::{Fused, FusionConfig, Probs, argmax, fuse};
use crate::infer::{InferError, Model};
use crate::instance_buffer::{AdmissionPolicy, InstanceBuffer};
use crate::labels::ALL;
use crate::online::OnlineLearner;
use crate::preprocess::{ColorMode, FacePrep};
use crate::source::{Frame, SourceError};
use crate::track::{Track, Tracker, TrackerConfig};
use std::sync::Arc;
use std::time::Instant;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error(transparent)]
    Infer(#[from] InferError),
    #[error(transparent)]
    Sink(#[from] super::SinkError),
    #[error("pipeline: {0}")]
    Thread(String),
}

#[derive(Debug, Clone, Copy)]
pub struct RecognizerConfig {
    /// Run the detector every this many frames (1: every frame); tracks are carried between.
    pub detect_every: u32,
    /// Crop margin on each side, as a fraction of the face box's longer side.
    pub margin: f32,
    /// Level the eyes of faces whose detector gave landmarks (the crop turned by the track's
    /// roll).
    pub align: bool,
    pub color: ColorMode,
    pub tracker: TrackerConfig,
    pub fusion: FusionConfig,
    /// Whether confident faces are added to the instance buffer.
    pub continual: bool,
    pub admission: AdmissionPolicy,
    /// Frames are unrelated (a folder of face crops): every frame starts without tracks, so
    /// each face is its own track.
    pub independent_frames: bool,
    /// Keep an [`Observation`] of every face for [`Recognizer::take_observations`].
    pub observe: bool,
}

/// One face's model outputs: the classifier's logits, the unit embedding and, when asked
/// for, the pooled feature.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceOutputs {
    pub logits: Probs,
    pub embedding: Vec<f32>,
    /// The pooled feature, when the model was loaded with it.
    pub feature: Option<Vec<f32>>,
}

/// One face as the offline adaptation sees it: the same fusion and admission decision as the
/// live continual mode, plus the vectors it needs to select entries and refit heads.
#[derive(Debug, Clone)]
pub struct Observation {
    pub frame: u64,
    pub track: u64,
    pub p_hat: Probs,
    pub logits: Probs,
    pub embedding: Vec<f32>,
    /// The pooled feature, when the model was loaded with it.
    pub feature: Option<Vec<f32>>,
    /// The class the face was admitted to the buffer under.
    pub admitted: Option<usize>,
}

impl RecognizerConfig {
    /// Defaults for a bundle: its fusion settings and threshold.
    pub fn for_bundle(bundle: &Bundle) -> Self {
        let fusion = bundle.manifest.fusion;
        RecognizerConfig {
            detect_every: 1,
            margin: 0.1,
            align: true,
            color: ColorMode::Gray,
            tracker: TrackerConfig::default(),
            fusion,
            continual: true,
            admission: AdmissionPolicy::with_threshold(fusion.threshold),
            independent_frames: false,
            observe: false,
        }
    }
}

impl RecognizerConfig {
    /// For inputs whose frames are unrelated faces (a folder of face crops): each frame starts
    /// without tracks, and one confident observation admits a face, since no later frame of the
    /// same track will ever confirm it.
    pub fn for_unrelated_faces(&mut self) {
        self.independent_frames = true;
        self.admission.stable_frames = 1;
        self.admission.min_interval_frames = 0;
    }
}

/// Whether frame number `frames` (counted from 0) runs the detector: every `detect_every`-th frame,
/// and at once whenever the tracks give no face to carry: none yet, or only tracks the last
/// detection lost (kept unreported for re-association), so that a lost face is searched for on
/// the very next frame rather than up to `detect_every - 1` frames later. A lost track beside
/// faces still seen waits for the schedule: re-detecting on every frame while any track is
/// missing would, with a face that moved past the tracker's reach (a new track and a lost one),
/// turn the interval off for `max_missed` rounds each time.
pub fn detect_now(frames: u64, detect_every: u32, tracks: &[Track]) -> bool {
    frames.is_multiple_of(detect_every.max(1) as u64) || !tracks.iter().any(|t| t.missed == 0)
}

pub struct Recognizer {
    model: Model,
    detector: Detector,
    prep: FacePrep,
    prototypes: Option<TextPrototypes>,
    buffer: InstanceBuffer,
    tracker: Tracker,
    cfg: RecognizerConfig,
    frames: u64,
    added: u64,
    observations: Vec<Observation>,
    /// A refitted classifier head applied to the pooled feature in place of the model's logits
    /// (`sitfer eval --buffer` with a saved head); the online learner's, when there is one, wins.
    head: Option<Arc<Head>>,
    online: Option<OnlineLearner>,
}

impl Recognizer {
    pub fn new(
        bundle: &Bundle,
        model: Model,
        detector: Box<dyn FaceDetector>,
        buffer: InstanceBuffer,
        cfg: RecognizerConfig,
    ) -> Self {
        Recognizer {
            prep: FacePrep::from_manifest(&bundle.manifest, cfg.margin, cfg.color),
            prototypes: bundle.prototypes.clone(),
            tracker: Tracker::new(cfg.tracker),
            model,
            detector: Detector::Inline(detector),
            buffer,
            cfg,
            frames: 0,
            added: 0,
            observations: Vec::new(),
            head: None,
            online: None,
        }
    }

    /// Runs the scheduled detections one frame ahead on their own thread (module
    /// [`super::detect_ahead`]): a detection of frame k overlaps frame k's crop and model, and
    /// its faces join the tracks at frame k+1. Detections that cannot wait (no face to carry)
    /// still run at once. A live run's choice (`sitfer run`); the scoring commands keep the
    /// detection in line, so their published figures stay comparable.
    pub fn with_detection_ahead(mut self) -> Result<Self, PipelineError> {
        let inline = std::mem::replace(
            &mut self.detector,
            Detector::Inline(Box::new(crate::detect::WholeFrame)),
        );
        self.detector = inline.ahead()?;
        Ok(self)
    }

    /// Computes logits with `head` from the pooled feature (the model must expose it).
    pub fn set_head(&mut self, head: Option<Head>) {
        self.head = head.map(Arc::new);
    }

    /// Refits the head online from the faces it admits (the model must expose the feature).
    pub fn set_online(&mut self, learner: OnlineLearner) {
        self.online = Some(learner);
    }

    pub fn online(&self) -> Option<&OnlineLearner> {
        self.online.as_ref()
    }

    pub fn online_mut(&mut self) -> Option<&mut OnlineLearner> {
        self.online.as_mut()
    }

    /// The head in use, if not the model's own.
    fn head(&self) -> Option<&Arc<Head>> {
        self.online
            .as_ref()
            .and_then(OnlineLearner::head)
            .or(self.head.as_ref())
    }

    /// The logits of one face: the head in use on its feature, else the model's.
    fn logits(&self, model_logits: &[f32], feature: Option<&[f32]>) -> crate::fusion::Probs {
        match (self.head(), feature) {
            (Some(h), Some(f)) => h.logits(f),
            _ => std::array::from_fn(|c| model_logits[c]),
        }
    }

    /// The observations recorded since the last call (with `observe` on).
    pub fn take_observations(&mut self) -> Vec<Observation> {
        std::mem::take(&mut self.observations)
    }

    pub fn buffer(&self) -> &InstanceBuffer {
        &self.buffer
    }

    /// Embeddings added to the buffer so far.
    pub fn added(&self) -> u64 {
        self.added
    }

    pub fn config(&self) -> &RecognizerConfig {
        &self.cfg
    }

    pub fn detector_name(&self) -> String {
        self.detector.name()
    }

    /// Each frame as an unrelated image holding one face: the detector's most confident face
    /// (or, with `whole_frame`, the whole image), cropped as [`Self::process`] crops, all of
    /// them in one model batch. No tracks, smoothing or admission. `None` where no face was
    /// found.
    pub fn embed_single_faces(
        &mut self,
        frames: &[Frame],
        whole_frame: bool,
    ) -> Result<Vec<Option<FaceOutputs>>, PipelineError> {
        let mut input = Vec::new();
        let mut owners = Vec::new();
        for (k, frame) in frames.iter().enumerate() {
            let face = if whole_frame {
                Some((BBox::new(0.0, 0.0, frame.width as f32, frame.height as f32), 0.0))
            } else {
                let dets = self.detector.detect(frame)?;
                dets.into_iter()
                    .max_by(|x, y| x.score.total_cmp(&y.score))
                    .map(|d| (d.bbox, if self.cfg.align { d.roll().unwrap_or(0.0) } else { 0.0 }))
            };
            if let Some((b, roll)) = face {
                let img = self.prep.crop_rolled(frame, &b, roll);
                self.prep.push_chw(&img, &mut input);
                owners.push(k);
            }
        }
        let mut faces = vec![None; frames.len()];
        if owners.is_empty() {
            return Ok(faces);
        }
        let out = self.model.run(&input, owners.len())?;
        for (j, &k) in owners.iter().enumerate() {
            faces[k] = Some(FaceOutputs {
                logits: self.logits(out.logits_row(j), out.feature_row(j)),
                embedding: out.embedding_row(j).to_vec(),
                feature: out.feature_row(j).map(<[f32]>::to_vec),
            });
        }
        Ok(faces)
    }

    /// [`Self::embed_single_faces`], each face fused with the current buffer: a labeled folder
    /// scored face by face (`sitfer eval`).
    pub fn fuse_single_faces(
        &mut self,
        frames: &[Frame],
        whole_frame: bool,
    ) -> Result<Vec<Option<Fused>>, PipelineError> {
        Ok(self
            .embed_single_faces(frames, whole_frame)?
            .into_iter()
            .map(|f| {
                f.map(|f| {
                    fuse(
                        &self.cfg.fusion,
                        &f.logits,
                        &f.embedding,
                        self.prototypes.as_ref(),
                        &self.buffer,
                    )
                })
            })
            .collect())
    }

    /// The tracks that give this frame's faces (indices into the tracker), and whether a
    /// detection placed them. In line: the detector runs on this frame when [`detect_now`]
    /// says. Ahead: the detection started on the previous frame is applied (matched at its own
    /// frame, then carried here), a frame with no face to carry is detected at once, and a
    /// scheduled frame starts its detection for the next frame to apply.
    fn track(&mut self, frame: &Frame) -> Result<(Vec<usize>, bool), PipelineError> {
        if !self.detector.is_ahead() {
            let now = detect_now(self.frames, self.cfg.detect_every, self.tracker.tracks());
            return Ok(if now {
                let dets = self.detector.detect(frame)?;
                (self.tracker.update(frame.index, &dets), true)
            } else {
                (self.tracker.carry(frame.index), false)
            });
        }
        let mut detected = false;
        if let Some((k, dets)) = self.detector.take()? {
            self.tracker.update(k, &dets);
            detected = true;
        }
        if !self.tracker.tracks().iter().any(|t| t.missed == 0) {
            let dets = self.detector.detect(frame)?;
            return Ok((self.tracker.update(frame.index, &dets), true));
        }
        if self.frames.is_multiple_of(self.cfg.detect_every.max(1) as u64) {
            self.detector.submit(frame)?;
        }
        Ok((self.tracker.carry(frame.index), detected))
    }

    pub fn process(&mut self, frame: &Frame) -> Result<FrameResult, PipelineError> {
        let mut ms = StageTimes::default();
        let t = Instant::now();
        if self.cfg.independent_frames {
            self.tracker.clear();
        }
        let (idx, detected) = self.track(frame)?;
        self.frames += 1;
        ms.detect = t.elapsed().as_secs_f64() * 1e3;
        let boxes: Vec<BBox> = idx
            .iter()
            .map(|&i| self.tracker.tracks()[i].bbox.clamp(frame.width, frame.height))
            .collect();
        let rolls: Vec<f32> = idx
            .iter()
            .map(|&i| {
                if self.cfg.align {
                    self.tracker.tracks()[i].roll
                } else {
                    0.0
                }
            })
            .collect();
        let t = Instant::now();
        let batch = self.prep.batch_rolled(frame, &boxes, &rolls);
        ms.crop = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let out = if boxes.is_empty() {
            None
        } else {
            Some(self.model.run(&batch, boxes.len())?)
        };
        ms.infer = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let mut faces = Vec::with_capacity(boxes.len());
        if let Some(out) = &out {
            for (k, &ti) in idx.iter().enumerate() {
                let z = out.embedding_row(k);
                // Before smoothing and admission: a different person in the track's box must
                // not inherit its p̂ history or admission state.
                self.tracker.check_identity(ti, z);
                let logits = self.logits(out.logits_row(k), out.feature_row(k));
                let f = fuse(&self.cfg.fusion, &logits, z, self.prototypes.as_ref(), &self.buffer);
                let track = &mut self.tracker.tracks_mut()[ti];
                let p_smooth = track.ema.update(&f.p_hat);
                let admitted = if self.cfg.continual {
                    self.cfg
                        .admission
                        .consider(&mut track.admission, frame.index, &f.p_hat, z)
                } else {
                    None
                };
                let (id, score) = (track.id, track.score);
                if let Some(c) = admitted {
                    self.buffer.push(c, z);
                    self.added += 1;
                }
                if let (Some(o), Some(feat)) = (&mut self.online, out.feature_row(k)) {
                    o.observe(feat, admitted);
                }
                if self.cfg.observe {
                    self.observations.push(Observation {
                        frame: frame.index,
                        track: id,
                        p_hat: f.p_hat,
                        logits,
                        embedding: z.to_vec(),
                        feature: out.feature_row(k).map(<[f32]>::to_vec),
                        admitted,
                    });
                }
                let (label, confidence) = argmax(&p_smooth);
                faces.push(FaceResult {
                    track: id,
                    bbox: boxes[k],
                    score,
                    label: ALL[label].name(),
                    confidence,
                    p_hat: f.p_hat,
                    p_smooth,
                    p_sem: f.p_sem,
                    p_text: f.p_text,
                    p_ins: f.p_ins,
                    added: admitted.is_some(),
                });
            }
        }
        // Between frames: a finished refit is swapped in, a due one started; never waits.
        if let Some(o) = &mut self.online {
            o.poll();
        }
        ms.fuse = t.elapsed().as_secs_f64() * 1e3;
        Ok(FrameResult {
            frame: frame.index,
            time: frame.timestamp.as_secs_f64(),
            width: frame.width,
            height: frame.height,
            detected,
            faces,
            ms,
        })
    }
}
