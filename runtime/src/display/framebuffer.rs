//! Showing RGB frames on a Linux framebuffer (`/dev/fb0`): scaled to fit with black borders,
//! packed to the device's pixel format, one positioned write per screen row.
//!
//! Positioned writes instead of mmap: the same code writes a regular file of the same
//! geometry, which is how it is tested without a screen, and a row at a time is far below a
//! frame period even at 1080p.

use super::error::DisplayError;
use super::fbdev::{FbGeometry, query};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub struct Framebuffer {
    file: File,
    path: PathBuf,
    geometry: FbGeometry,
    id: String,
    /// Source column for each screen column of the fitted picture, for the current frame size.
    map: Option<FitMap>,
    row: Vec<u8>,
}

/// Where a `src_w x src_h` picture lands on the screen, and which source pixel feeds each
/// screen pixel (nearest neighbour: a resize filter costs more than it shows at preview size).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FitMap {
    src: (u32, u32),
    /// Top-left of the picture on the screen, and its size.
    at: (u32, u32),
    size: (u32, u32),
    cols: Vec<u32>,
    rows: Vec<u32>,
}

impl FitMap {
    fn new(src: (u32, u32), screen: (u32, u32)) -> FitMap {
        let (sw, sh) = (src.0.max(1) as u64, src.1.max(1) as u64);
        let (dw, dh) = (screen.0 as u64, screen.1 as u64);
        // Largest size with the source's aspect that fits: compare dw/sw with dh/sh without floats.
        let (w, h) = if dw * sh <= dh * sw {
            (dw, (sh * dw / sw).max(1))
        } else {
            ((sw * dh / sh).max(1), dh)
        };
        let cols = (0..w).map(|x| (x * sw / w) as u32).collect();
        let rows = (0..h).map(|y| (y * sh / h) as u32).collect();
        FitMap {
            src,
            at: (((dw - w) / 2) as u32, ((dh - h) / 2) as u32),
            size: (w as u32, h as u32),
            cols,
            rows,
        }
    }
}

impl Framebuffer {
    /// Opens a framebuffer device and reads its geometry.
    pub fn open(path: &Path) -> Result<Framebuffer, DisplayError> {
        let name = path.display().to_string();
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|source| DisplayError::Open {
                path: name.clone(),
                hint: if source.kind() == std::io::ErrorKind::PermissionDenied {
                    " (add the user to the `video` group)"
                } else if source.kind() == std::io::ErrorKind::NotFound {
                    " (no framebuffer: use --display png, http or headless)"
                } else {
                    ""
                },
                source,
            })?;
        let (geometry, id) = query(&file).map_err(|source| DisplayError::Ioctl {
            path: name.clone(),
            source,
        })?;
        Self::with_geometry(file, path, geometry, id)
    }

    /// Writes to `file` as if it were a framebuffer with `geometry` (tests, and devices whose
    /// ioctls lie).
    pub fn with_geometry(
        file: File,
        path: &Path,
        geometry: FbGeometry,
        id: String,
    ) -> Result<Framebuffer, DisplayError> {
        let name = path.display().to_string();
        geometry.layout.check().map_err(|message| DisplayError::Unsupported {
            path: name.clone(),
            message,
        })?;
        let row_bytes = geometry.width as usize * geometry.layout.bytes_per_pixel();
        if geometry.width == 0 || geometry.height == 0 || (geometry.line_length as usize) < row_bytes {
            return Err(DisplayError::Unsupported {
                path: name,
                message: format!(
                    "{}x{} with {} bytes per line cannot hold {}-bit pixels",
                    geometry.width, geometry.height, geometry.line_length, geometry.layout.bits_per_pixel
                ),
            });
        }
        log::info!(
            "framebuffer {name} ({id}): {}x{} {} bpp, line {} bytes",
            geometry.width,
            geometry.height,
            geometry.layout.bits_per_pixel,
            geometry.line_length
        );
        Ok(Framebuffer {
            file,
            path: path.to_path_buf(),
            geometry,
            id,
            map: None,
            row: vec![0; row_bytes],
        })
    }

    pub fn geometry(&self) -> FbGeometry {
        self.geometry
    }

    pub fn describe(&self) -> String {
        let g = self.geometry;
        format!(
            "framebuffer {} ({}) {}x{} {} bpp",
            self.path.display(),
            self.id,
            g.width,
            g.height,
            g.layout.bits_per_pixel
        )
    }

    /// Shows one `width x height` RGB8 frame, scaled to fit the screen.
    pub fn show(&mut self, rgb: &[u8], width: u32, height: u32) -> Result<(), DisplayError> {
        if rgb.len() != width as usize * height as usize * 3 || width == 0 || height == 0 {
            return Err(DisplayError::BadFrame {
                width,
                height,
                len: rgb.len(),
            });
        }
        let g = self.geometry;
        if self.map.as_ref().is_none_or(|m| m.src != (width, height)) {
            self.map = Some(FitMap::new((width, height), (g.width, g.height)));
        }
        let map = self.map.as_ref().expect("set above");
        let bpp = g.layout.bytes_per_pixel();
        let mut src_row = vec![0u8; g.width as usize * 3];
        for y in 0..g.height {
            src_row.fill(0);
            let inside = y >= map.at.1 && y < map.at.1 + map.size.1;
            if inside {
                let sy = map.rows[(y - map.at.1) as usize] as usize;
                let line = &rgb[sy * width as usize * 3..(sy + 1) * width as usize * 3];
                for (i, &sx) in map.cols.iter().enumerate() {
                    let d = (map.at.0 as usize + i) * 3;
                    src_row[d..d + 3].copy_from_slice(&line[sx as usize * 3..sx as usize * 3 + 3]);
                }
            }
            g.layout.pack_row(&src_row, &mut self.row[..g.width as usize * bpp]);
            self.file
                .write_all_at(&self.row, g.offset_of(0, y))
                .map_err(|source| DisplayError::Write {
                    path: self.path.display().to_string(),
                    source,
                })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::pixel::PixelLayout;

    fn geometry(width: u32, height: u32, line_length: u32, layout: PixelLayout) -> FbGeometry {
        FbGeometry {
            width,
            height,
            line_length,
            xoffset: 0,
            yoffset: 0,
            layout,
        }
    }

    #[test]
    fn fit_keeps_aspect_and_centres() {
        let m = FitMap::new((640, 480), (1920, 1080));
        assert_eq!((m.at, m.size), ((240, 0), (1440, 1080)));
        let m = FitMap::new((4, 2), (4, 4));
        assert_eq!(
            (m.at, m.size, m.cols.clone(), m.rows.clone()),
            ((0, 1), (4, 2), vec![0, 1, 2, 3], vec![0, 1])
        );
        let m = FitMap::new((2, 2), (4, 4));
        assert_eq!((m.cols.clone(), m.rows.clone()), (vec![0, 0, 1, 1], vec![0, 0, 1, 1]));
    }

    #[test]
    fn writes_xrgb8888_rows_at_the_stride_into_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fb");
        // 4x4 screen, 20 bytes per line (4 bytes of padding the writer must not touch).
        std::fs::write(&path, vec![0xAAu8; 20 * 4]).unwrap();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        let mut fb =
            Framebuffer::with_geometry(file, &path, geometry(4, 4, 20, PixelLayout::XRGB8888), "test".into()).unwrap();
        // 4x2 frame: red row over blue row, centred vertically with one black row above and below.
        let red_blue: Vec<u8> = [[255, 0, 0]; 4].into_iter().chain([[0, 0, 255]; 4]).flatten().collect();
        fb.show(&red_blue, 4, 2).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let px = |x: usize, y: usize| u32::from_le_bytes(bytes[y * 20 + x * 4..y * 20 + x * 4 + 4].try_into().unwrap());
        assert_eq!(px(0, 0), 0, "black border");
        assert_eq!(px(3, 1), 0x00FF_0000, "red");
        assert_eq!(px(2, 2), 0x0000_00FF, "blue");
        assert_eq!(px(1, 3), 0, "black border");
        assert!(bytes[16..20].iter().all(|&b| b == 0xAA), "row padding untouched");
    }

    #[test]
    fn writes_rgb565_with_panning_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fb");
        std::fs::write(&path, vec![0u8; 8 * 4]).unwrap();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        let g = FbGeometry {
            yoffset: 2,
            ..geometry(2, 2, 8, PixelLayout::RGB565)
        };
        let mut fb = Framebuffer::with_geometry(file, &path, g, "test".into()).unwrap();
        fb.show(&[0, 255, 0, 0, 255, 0, 255, 255, 255, 0, 0, 0], 2, 2).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            bytes[..16].iter().all(|&b| b == 0),
            "rows above the visible area untouched"
        );
        assert_eq!(&bytes[16..20], &[0xE0, 0x07, 0xE0, 0x07]);
        assert_eq!(&bytes[24..28], &[0xFF, 0xFF, 0x00, 0x00]);
    }

    #[test]
    fn rejects_bad_geometry_and_frames() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fb");
        let open = || File::create(&path).unwrap();
        let err = Framebuffer::with_geometry(open(), &path, geometry(4, 4, 8, PixelLayout::XRGB8888), "t".into())
            .err()
            .unwrap();
        assert!(err.to_string().contains("bytes per line"), "{err}");
        let l24 = PixelLayout {
            bits_per_pixel: 24,
            ..PixelLayout::XRGB8888
        };
        let err = Framebuffer::with_geometry(open(), &path, geometry(4, 4, 12, l24), "t".into())
            .err()
            .unwrap();
        assert!(err.to_string().contains("24 bits"), "{err}");
        let mut fb =
            Framebuffer::with_geometry(open(), &path, geometry(4, 4, 16, PixelLayout::XRGB8888), "t".into()).unwrap();
        assert!(fb.show(&[0; 5], 2, 2).is_err());
    }

    #[test]
    fn missing_device_says_what_to_use_instead() {
        let err = Framebuffer::open(Path::new("/nonexistent/fb9")).err().unwrap();
        assert!(err.to_string().contains("--display"), "{err}");
    }
}
