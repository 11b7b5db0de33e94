//! Replays a file source in real time, so that a recording behaves like a camera: a frame is
//! released no earlier than its time in the stream, and a slow consumer falls behind exactly as
//! it would behind a live camera.

use super::{Frame, FrameSource, SourceError};
use std::time::{Duration, Instant};

pub struct Paced<S: FrameSource> {
    inner: S,
    fps: f64,
    start: Option<Instant>,
    released: u64,
}

impl<S: FrameSource> Paced<S> {
    /// Paces at `fps`, else the source's own rate, else 30 fps.
    pub fn new(inner: S, fps: Option<f64>) -> Self {
        let fps = fps
            .or_else(|| inner.nominal_fps())
            .filter(|f| f.is_finite() && *f > 0.0)
            .unwrap_or(30.0);
        Paced {
            inner,
            fps,
            start: None,
            released: 0,
        }
    }
}

impl<S: FrameSource> FrameSource for Paced<S> {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let Some(frame) = self.inner.next_frame()? else {
            return Ok(None);
        };
        let start = *self.start.get_or_insert_with(Instant::now);
        // Due times count released frames, not source indices: a source that skips indices
        // still plays at the rate asked for.
        let due = start + Duration::from_secs_f64(self.released as f64 / self.fps);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        self.released += 1;
        Ok(Some(frame))
    }
    fn nominal_fps(&self) -> Option<f64> {
        Some(self.fps)
    }
    fn describe(&self) -> String {
        format!("{} paced at {:.2} fps", self.inner.describe(), self.fps)
    }
    fn frames_left(&self) -> Option<u64> {
        self.inner.frames_left()
    }
}
