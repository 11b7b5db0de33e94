//! Still images as frame sources: one image, or a folder of images in file-name order (frames
//! exported from a video, or a set of face crops).

use super::{Frame, FrameSource, SourceError};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Rate used for the timestamps of images when none is given; images carry no time of their own.
const DEFAULT_IMAGE_FPS: f64 = 30.0;

pub use sitfer_contract::image_files::is_image_file;

fn decode(path: &Path, index: u64, fps: f64) -> Result<Frame, SourceError> {
    let img = super::read_rgb(path).map_err(|message| SourceError::Decode {
        file: path.to_path_buf(),
        message,
    })?;
    Ok(Frame {
        index,
        timestamp: Duration::from_secs_f64(index as f64 / fps),
        width: img.width(),
        height: img.height(),
        rgb: img.into_raw(),
    })
}

/// The image files directly inside `dir`, sorted by name.
fn list_images(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    sitfer_contract::image_files::image_files(dir, false).map_err(SourceError::io(dir))
}

/// A folder of images, decoded one at a time as they are asked for.
#[derive(Debug)]
pub struct ImageFolder {
    dir: PathBuf,
    files: Vec<PathBuf>,
    next: usize,
    fps: Option<f64>,
}

impl ImageFolder {
    pub fn open(dir: &Path, fps: Option<f64>) -> Result<Self, SourceError> {
        let files = list_images(dir)?;
        if files.is_empty() {
            return Err(SourceError::Empty {
                file: dir.to_path_buf(),
            });
        }
        Ok(ImageFolder {
            dir: dir.to_path_buf(),
            files,
            next: 0,
            fps,
        })
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The file frame `index` came from.
    pub fn file(&self, index: u64) -> Option<&Path> {
        self.files.get(index as usize).map(PathBuf::as_path)
    }
}

impl FrameSource for ImageFolder {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let Some(path) = self.files.get(self.next) else {
            return Ok(None);
        };
        let frame = decode(path, self.next as u64, self.fps.unwrap_or(DEFAULT_IMAGE_FPS))?;
        self.next += 1;
        Ok(Some(frame))
    }
    fn nominal_fps(&self) -> Option<f64> {
        self.fps
    }
    fn describe(&self) -> String {
        format!("image folder {} ({} images)", self.dir.display(), self.files.len())
    }
    fn frames_left(&self) -> Option<u64> {
        Some((self.files.len() - self.next) as u64)
    }
}

/// One image: a stream of one frame.
#[derive(Debug)]
pub struct SingleImage {
    path: PathBuf,
    frame: Option<Frame>,
}

impl SingleImage {
    /// Decodes now, so that a bad file fails at start rather than mid-pipeline.
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        let frame = decode(path, 0, DEFAULT_IMAGE_FPS)?;
        Ok(SingleImage {
            path: path.to_path_buf(),
            frame: Some(frame),
        })
    }

    /// An in-memory frame (a demo image embedded in the binary, tests).
    pub fn from_frame(name: &str, frame: Frame) -> Self {
        SingleImage {
            path: PathBuf::from(name),
            frame: Some(frame),
        }
    }
}

impl FrameSource for SingleImage {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        Ok(self.frame.take())
    }
    fn nominal_fps(&self) -> Option<f64> {
        None
    }
    fn describe(&self) -> String {
        format!("image {}", self.path.display())
    }
    fn frames_left(&self) -> Option<u64> {
        Some(self.frame.is_some() as u64)
    }
}
