//! Annotated PNG snapshots every N frames, each written atomically (a viewer polling the
//! folder never opens a half-written file), keeping only the newest few so a long run on a
//! board does not fill its disk.

use super::error::DisplayError;
use crate::file_write::atomic_write_bytes;
use image::ImageEncoder;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

pub struct Snapshots {
    dir: PathBuf,
    every: u64,
    keep: usize,
    written: VecDeque<PathBuf>,
}

impl Snapshots {
    /// Snapshots of every `every`-th frame into `dir` (created if missing), at most `keep` kept.
    pub fn new(dir: &Path, every: u32, keep: usize) -> Result<Snapshots, DisplayError> {
        std::fs::create_dir_all(dir).map_err(|e| DisplayError::Snapshot {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(Snapshots {
            dir: dir.to_path_buf(),
            every: every.max(1) as u64,
            keep: keep.max(1),
            written: VecDeque::new(),
        })
    }

    /// Writes `frame-NNNNNNNN.png` when `index` is a multiple of the interval; returns its path.
    pub fn offer(&mut self, index: u64, rgb: &[u8], width: u32, height: u32) -> Result<Option<PathBuf>, DisplayError> {
        if !index.is_multiple_of(self.every) {
            return Ok(None);
        }
        let path = self.dir.join(format!("frame-{index:08}.png"));
        let err = |message: String| DisplayError::Snapshot {
            path: path.display().to_string(),
            message,
        };
        // The encoder panics on a short buffer; a bad frame must be an error, not a crash.
        if rgb.len() != width as usize * height as usize * 3 {
            return Err(err(DisplayError::BadFrame {
                width,
                height,
                len: rgb.len(),
            }
            .to_string()));
        }
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(rgb, width, height, image::ExtendedColorType::Rgb8)
            .map_err(|e| err(e.to_string()))?;
        atomic_write_bytes(&path, &png).map_err(|e| err(e.to_string()))?;
        self.written.push_back(path.clone());
        while self.written.len() > self.keep {
            if let Some(old) = self.written.pop_front() {
                let _ = std::fs::remove_file(old);
            }
        }
        Ok(Some(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nth_frame_keeping_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("snaps");
        let mut s = Snapshots::new(&out, 3, 2).unwrap();
        let rgb: Vec<u8> = (0..2 * 2 * 3).map(|i| i as u8 * 20).collect();
        let written: Vec<_> = (0..10).filter_map(|i| s.offer(i, &rgb, 2, 2).unwrap()).collect();
        assert_eq!(written.len(), 4, "frames 0, 3, 6, 9");
        let mut names: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["frame-00000006.png", "frame-00000009.png"]);
        let img = image::open(out.join("frame-00000009.png")).unwrap().into_rgb8();
        assert_eq!(img.into_raw(), rgb);
    }

    #[test]
    fn wrong_size_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Snapshots::new(dir.path(), 1, 5).unwrap();
        let err = s.offer(7, &[0; 5], 2, 2).unwrap_err();
        assert!(err.to_string().contains("frame-00000007.png"), "{err}");
    }
}
