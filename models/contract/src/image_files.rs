//! Which files are images, and the image files of a folder: the trainer's dataset readers, its
//! calibration set and the runtime's folder sources and `eval` read the same files.

use std::io;
use std::path::{Path, PathBuf};

/// File extensions read as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "tif", "tiff"];

/// Whether `path` has an extension the decoder reads.
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The image files in `dir` (and with `recursive` in its subfolders), sorted by path so that
/// every reader sees them in the same order on every file system. Errors name the folder.
pub fn image_files(dir: &Path, recursive: bool) -> io::Result<Vec<PathBuf>> {
    let named = |d: &Path, e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", d.display()));
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| named(&d, e))? {
            let p = entry.map_err(|e| named(&d, e))?.path();
            if p.is_dir() {
                if recursive {
                    stack.push(p);
                }
            } else if p.is_file() && is_image_file(&p) {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_images_sorted_flat_or_recursive() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        for f in ["b.PNG", "a.jpg", "notes.txt"] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        std::fs::write(sub.join("c.tif"), b"").unwrap();
        let names = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter()
                .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
                .collect()
        };
        assert_eq!(names(image_files(dir.path(), false).unwrap()), ["a.jpg", "b.PNG"]);
        assert_eq!(
            names(image_files(dir.path(), true).unwrap()),
            ["a.jpg", "b.PNG", "sub/c.tif"]
        );
        let e = image_files(&dir.path().join("missing"), false).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
