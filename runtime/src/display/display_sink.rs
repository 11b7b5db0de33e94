//! The display as a pipeline sink: draws the overlay on a copy of each frame and sends it to
//! the chosen screen (framebuffer, PNG snapshots or the MJPEG preview).

use super::error::DisplayError;
use super::fps::FpsMeter;
use super::framebuffer::Framebuffer;
use super::overlay::{OverlayFace, draw_overlay};
use super::preview::MjpegPreview;
use super::snapshot::Snapshots;
use crate::board::{DisplayOutput, DisplayProfile};
use crate::pipeline::{FaceResult, FrameResult, Sink, SinkError};
use crate::source::Frame;
use std::time::Instant;

/// Snapshots kept on disk by a profile's PNG output.
const KEEP_SNAPSHOTS: usize = 100;

pub enum Screen {
    Framebuffer(Framebuffer),
    Snapshots(Snapshots),
    Preview(MjpegPreview),
}

impl Screen {
    /// The screen a board profile asks for; `None` for `headless` (JSON lines only).
    pub fn from_profile(p: &DisplayProfile) -> Result<Option<Screen>, DisplayError> {
        Ok(match p.output {
            DisplayOutput::Headless => None,
            DisplayOutput::Framebuffer => Some(Screen::Framebuffer(Framebuffer::open(&p.framebuffer)?)),
            DisplayOutput::Png => Some(Screen::Snapshots(Snapshots::new(
                &p.snapshot_dir,
                p.snapshot_every,
                KEEP_SNAPSHOTS,
            )?)),
            DisplayOutput::Http => Some(Screen::Preview(MjpegPreview::bind_with_limit(
                &format!("{}:{}", p.http_bind, p.http_port),
                p.http_max_viewers,
            )?)),
        })
    }

    fn name(&self) -> String {
        match self {
            Screen::Framebuffer(fb) => fb.describe(),
            Screen::Snapshots(_) => "png snapshots".to_string(),
            Screen::Preview(p) => format!("preview http://{}/", p.local_addr()),
        }
    }

    fn show(&mut self, index: u64, rgb: &[u8], width: u32, height: u32) -> Result<(), DisplayError> {
        match self {
            Screen::Framebuffer(fb) => fb.show(rgb, width, height),
            Screen::Snapshots(s) => s.offer(index, rgb, width, height).map(|_| ()),
            Screen::Preview(p) => p.publish(rgb, width, height),
        }
    }
}

pub struct DisplaySink {
    screen: Screen,
    fps: FpsMeter,
}

impl DisplaySink {
    pub fn new(screen: Screen) -> Self {
        DisplaySink {
            screen,
            fps: FpsMeter::new(30),
        }
    }
}

/// The overlay's view of one face: the track's smoothed probabilities, so bars move as calmly
/// as the label does.
pub fn overlay_face(f: &FaceResult) -> OverlayFace<'_> {
    let b = f.bbox;
    OverlayFace {
        bbox: (
            b.x1.round() as i32,
            b.y1.round() as i32,
            b.width().round() as u32,
            b.height().round() as u32,
        ),
        track: f.track,
        label: f.label,
        probs: f.p_smooth,
    }
}

impl Sink for DisplaySink {
    fn consume(&mut self, frame: &Frame, result: &FrameResult) -> Result<(), SinkError> {
        let fps = self.fps.tick(Instant::now());
        let faces: Vec<OverlayFace<'_>> = result.faces.iter().map(overlay_face).collect();
        let mut rgb = frame.rgb.clone();
        draw_overlay(&mut rgb, frame.width, frame.height, &faces, fps);
        self.screen
            .show(frame.index, &rgb, frame.width, frame.height)
            .map_err(|e| SinkError::Other {
                sink: self.screen.name(),
                message: e.to_string(),
            })
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
