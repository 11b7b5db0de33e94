//! The face detector, either called in line or run one frame ahead on its own thread.
//!
//! Why a thread: on two cores the inference thread runs detection, crop and model one after the
//! other, so a detection frame costs the detector's whole time (YuNet ~11 ms at 640x480) on top
//! of the model's. Ahead, a scheduled detection of frame k runs on the detector thread while
//! frame k is cropped and classified on the boxes the tracker carries, and its faces join the
//! tracker at frame k+1 (matched at frame k, then carried to k+1 by the track's velocity).
//! The recognizer waits for that result at frame k+1 rather than taking whatever is ready, so a
//! run gives the same faces however the threads are scheduled.

use super::PipelineError;
use crate::detect::{DetectError, Detection, FaceDetector};
use crate::source::Frame;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

type Outcome = (Frame, Result<Vec<Detection>, DetectError>);

/// The detector on its thread. Frames travel in a buffer that comes back with the result, so
/// after the first detection no frame is allocated.
pub struct DetectThread {
    jobs: Option<SyncSender<Frame>>,
    results: Receiver<Outcome>,
    /// A detection is running (its frame, index included, comes back with the result).
    in_flight: bool,
    spare: Option<Frame>,
    thread: Option<JoinHandle<()>>,
}

impl DetectThread {
    pub fn spawn(mut detector: Box<dyn FaceDetector>) -> std::io::Result<Self> {
        let (jobs, inbox) = sync_channel::<Frame>(1);
        let (outbox, results) = sync_channel::<Outcome>(1);
        let thread = std::thread::Builder::new()
            .name("sitfer-detect".into())
            .spawn(move || {
                for frame in inbox {
                    let r = detector.detect(&frame);
                    if outbox.send((frame, r)).is_err() {
                        break;
                    }
                }
            })?;
        Ok(DetectThread {
            jobs: Some(jobs),
            results,
            in_flight: false,
            spare: None,
            thread: Some(thread),
        })
    }

    /// Starts the detection of `frame`. One at a time: a detection still running is waited for
    /// first and its result dropped (callers take it with [`Self::take`] before they submit).
    pub fn submit(&mut self, frame: &Frame) -> Result<(), PipelineError> {
        if self.in_flight {
            self.take()?;
        }
        let mut copy = self.spare.take().unwrap_or_else(|| Frame {
            index: 0,
            timestamp: Duration::ZERO,
            width: 0,
            height: 0,
            rgb: Vec::with_capacity(frame.rgb.len()),
        });
        copy.rgb.clear();
        copy.rgb.extend_from_slice(&frame.rgb);
        copy.index = frame.index;
        copy.timestamp = frame.timestamp;
        copy.width = frame.width;
        copy.height = frame.height;
        self.jobs.as_ref().and_then(|j| j.send(copy).ok()).ok_or_else(ended)?;
        self.in_flight = true;
        Ok(())
    }

    /// The result of the detection running, waited for: the frame index it belongs to and the
    /// faces. `None` if none is running.
    pub fn take(&mut self) -> Result<Option<(u64, Vec<Detection>)>, PipelineError> {
        if !std::mem::take(&mut self.in_flight) {
            return Ok(None);
        }
        let (frame, r) = self.results.recv().map_err(|_| ended())?;
        let index = frame.index;
        self.spare = Some(frame);
        Ok(Some((index, r?)))
    }

    /// Detects `frame` now (through the thread, waited for).
    pub fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>, PipelineError> {
        self.submit(frame)?;
        Ok(self.take()?.map(|(_, d)| d).unwrap_or_default())
    }
}

fn ended() -> PipelineError {
    PipelineError::Thread("the detector thread ended".into())
}

impl Drop for DetectThread {
    fn drop(&mut self) {
        // Closing the job channel ends the thread's loop once the detection running is done
        // (its result fits in the result channel, so the thread never blocks on it).
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How a recognizer reaches its detector.
pub enum Detector {
    Inline(Box<dyn FaceDetector>),
    Ahead { thread: DetectThread, name: String },
}

impl Detector {
    /// The same detector moved onto its own thread (a detector already there stays).
    pub fn ahead(self) -> Result<Self, PipelineError> {
        match self {
            Detector::Inline(d) => {
                let name = d.name();
                let thread = DetectThread::spawn(d)
                    .map_err(|e| PipelineError::Thread(format!("starting the detector thread: {e}")))?;
                Ok(Detector::Ahead { thread, name })
            }
            ahead => Ok(ahead),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Detector::Inline(d) => d.name(),
            Detector::Ahead { name, .. } => name.clone(),
        }
    }

    pub fn is_ahead(&self) -> bool {
        matches!(self, Detector::Ahead { .. })
    }

    /// Detects `frame` now, wherever the detector runs.
    pub fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>, PipelineError> {
        match self {
            Detector::Inline(d) => Ok(d.detect(frame)?),
            Detector::Ahead { thread, .. } => thread.detect(frame),
        }
    }

    /// Starts detecting `frame` on the thread (ahead only).
    pub fn submit(&mut self, frame: &Frame) -> Result<(), PipelineError> {
        match self {
            Detector::Inline(_) => Ok(()),
            Detector::Ahead { thread, .. } => thread.submit(frame),
        }
    }

    /// The detection started by [`Self::submit`], waited for (ahead only).
    pub fn take(&mut self) -> Result<Option<(u64, Vec<Detection>)>, PipelineError> {
        match self {
            Detector::Inline(_) => Ok(None),
            Detector::Ahead { thread, .. } => thread.take(),
        }
    }
}
