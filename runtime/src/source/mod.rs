//! Frame sources: where the pipeline's frames come from (an image, a folder of images, a Y4M
//! video, and the camera of the camera issue), behind one trait so the pipeline never knows.

mod error;
mod image_files;
mod paced;
mod read_image;
mod y4m;

pub use error::SourceError;
pub use image_files::{ImageFolder, SingleImage, is_image_file};
pub use paced::Paced;
pub use read_image::{decode_rgb, read_rgb};
pub use y4m::{Chroma, MAX_Y4M_FRAME_BYTES, Y4mHeader, Y4mReader, encode_y4m_444};

use std::path::Path;
use std::time::Duration;

/// One RGB frame (`rgb.len() == width * height * 3`, row-major, no padding).
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub index: u64,
    /// Time of the frame in the stream (from its start), not wall-clock time.
    pub timestamp: Duration,
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl Frame {
    /// The pixel at (x, y); callers keep x, y inside the frame.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// The colour at pixel-index coordinates `(fx, fy)` (pixel centres at whole numbers), read
    /// bilinearly from the four neighbours; coordinates outside the frame take the edge's
    /// colour. The frame must not be empty.
    pub fn bilinear(&self, fx: f32, fy: f32) -> [f32; 3] {
        let (fw, fh) = (self.width as usize, self.height as usize);
        let fx = fx.clamp(0.0, (fw - 1) as f32);
        let fy = fy.clamp(0.0, (fh - 1) as f32);
        let (x0, y0) = (fx as usize, fy as usize);
        let (x1, y1) = ((x0 + 1).min(fw - 1), (y0 + 1).min(fh - 1));
        let (tx, ty) = (fx - x0 as f32, fy - y0 as f32);
        std::array::from_fn(|c| {
            let p = |xx: usize, yy: usize| self.rgb[(yy * fw + xx) * 3 + c] as f32;
            let top = p(x0, y0) + (p(x1, y0) - p(x0, y0)) * tx;
            let bot = p(x0, y1) + (p(x1, y1) - p(x0, y1)) * tx;
            top + (bot - top) * ty
        })
    }
}

/// A stream of frames. `Ok(None)` is the end of the stream.
pub trait FrameSource: Send {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError>;
    /// Frames per second the stream was recorded at, when it says.
    fn nominal_fps(&self) -> Option<f64>;
    /// What this source reads, for logs and errors.
    fn describe(&self) -> String;
    /// Frames still to come, when the source knows (files do; a camera or a stream does not).
    fn frames_left(&self) -> Option<u64> {
        None
    }
    /// Frames the source itself dropped so far, before handing them over (a camera keeps only
    /// the newest); counted in the run's `dropped` with the pipeline's own drops.
    fn dropped(&self) -> u64 {
        0
    }
    /// The run's stop signal, handed over before the first `next_frame`. A source whose
    /// `next_frame` can wait without end (a camera that was unplugged and is being reopened)
    /// must return `Ok(None)` soon after it fires, or stopping the run would wait for the camera.
    fn watch_stop(&mut self, _stop: crate::pipeline::CancelToken) {}
}

impl<S: FrameSource + ?Sized> FrameSource for Box<S> {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        (**self).next_frame()
    }
    fn nominal_fps(&self) -> Option<f64> {
        (**self).nominal_fps()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn frames_left(&self) -> Option<u64> {
        (**self).frames_left()
    }
    fn dropped(&self) -> u64 {
        (**self).dropped()
    }
    fn watch_stop(&mut self, stop: crate::pipeline::CancelToken) {
        (**self).watch_stop(stop)
    }
}

/// Opens a file source by what `path` is: a directory (images, sorted by name), a `.y4m` file,
/// or an image file. `fps` is the rate given to image sources (they have none of their own).
pub fn open_path(path: &Path, fps: Option<f64>) -> Result<Box<dyn FrameSource>, SourceError> {
    let meta = std::fs::metadata(path).map_err(SourceError::io(path))?;
    if meta.is_dir() {
        return Ok(Box::new(ImageFolder::open(path, fps)?));
    }
    let is_y4m = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("y4m"));
    if is_y4m {
        Ok(Box::new(Y4mReader::open(path)?))
    } else {
        Ok(Box::new(SingleImage::open(path)?))
    }
}

#[cfg(test)]
mod tests;
