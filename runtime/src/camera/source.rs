//! The camera as a pipeline [`FrameSource`], so `sitfer run` takes it like a file source.

use super::capture::Capture;
use super::device::CameraConfig;
use super::error::CameraError;
use crate::source::{Frame, FrameSource, SourceError};

pub struct CameraSource {
    capture: Capture,
    next_index: u64,
    fps: u32,
}

impl CameraSource {
    /// Opens the camera and starts capturing; a missing camera or an unusable format is an error
    /// here, while a camera lost later is retried by the capture thread.
    pub fn open(config: CameraConfig) -> Result<CameraSource, CameraError> {
        let fps = config.fps;
        Ok(CameraSource {
            capture: Capture::start(config)?,
            next_index: 0,
            fps,
        })
    }
}

impl FrameSource for CameraSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let frame = self.capture.next_rgb().map_err(|e| SourceError::Other {
            source_name: self.capture.describe(),
            message: e.to_string(),
        })?;
        Ok(frame.map(|f| {
            let index = self.next_index;
            self.next_index += 1;
            Frame {
                index,
                timestamp: f.timestamp,
                width: f.width,
                height: f.height,
                rgb: f.rgb,
            }
        }))
    }

    fn nominal_fps(&self) -> Option<f64> {
        (self.fps > 0).then_some(self.fps as f64)
    }

    fn describe(&self) -> String {
        self.capture.describe()
    }

    fn watch_stop(&mut self, stop: crate::pipeline::CancelToken) {
        self.capture.watch_stop(stop);
    }

    /// Frames the capture thread's drop-oldest slot replaced before the pipeline took them.
    fn dropped(&self) -> u64 {
        self.capture.counts().1
    }
}
