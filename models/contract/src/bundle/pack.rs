//! A bundle packed into one file: a plain (uncompressed) tar of the bundle directory's files,
//! `manifest.json` first, so a deployment copies one file. Opening one unpacks it into a private
//! temporary directory and runs the directory reader there, so a packed bundle gets exactly the
//! same checks (paths, sizes, hashes) as a directory.

use super::error::BundleError;
use super::manifest::MANIFEST_FILE;
use super::reader::{Bundle, MAX_MODEL_BYTES};
use crate::file_write::atomic_write;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Most files a packed bundle may hold (a bundle has at most six; adaptation reports add two).
const MAX_ENTRIES: usize = 64;
/// Largest packed bundle unpacked.
const MAX_TOTAL_BYTES: u64 = 2 * MAX_MODEL_BYTES;

/// What `pack` wrote.
#[derive(Debug)]
pub struct PackSummary {
    pub files: Vec<(String, u64)>,
    pub bytes: u64,
}

/// The files of a bundle directory, manifest first, then the rest by name (regular files only;
/// the reader would refuse a bundle whose files are links out of it anyway).
fn bundle_files(dir: &Path) -> Result<Vec<String>, BundleError> {
    let mut names = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let d = dir.join(&rel);
        for e in std::fs::read_dir(&d).map_err(BundleError::io(&d))? {
            let e = e.map_err(BundleError::io(&d))?;
            let ty = e.file_type().map_err(BundleError::io(e.path()))?;
            let name = rel.join(e.file_name());
            if ty.is_dir() {
                stack.push(name);
            } else if ty.is_file() {
                names.push(name.to_string_lossy().into_owned());
            }
        }
    }
    names.sort();
    names.sort_by_key(|n| n != MANIFEST_FILE);
    Ok(names)
}

/// Packs the bundle at `dir` into `out` (written atomically) after verifying it.
pub fn pack(dir: &Path, out: &Path) -> Result<PackSummary, BundleError> {
    Bundle::open(dir)?;
    let names = bundle_files(dir)?;
    let mut files = Vec::new();
    atomic_write(out, |w| {
        let mut tar = tar::Builder::new(w);
        tar.mode(tar::HeaderMode::Deterministic);
        for name in &names {
            let path = dir.join(name);
            let mut f = std::fs::File::open(&path)?;
            tar.append_file(name, &mut f)?;
            files.push((name.clone(), f.metadata()?.len()));
        }
        tar.finish()
    })
    .map_err(BundleError::io(out))?;
    let bytes = std::fs::metadata(out).map_err(BundleError::io(out))?.len();
    Ok(PackSummary { files, bytes })
}

fn packed_err(file: &Path, message: impl Into<String>) -> BundleError {
    BundleError::invalid(file, "packed bundle", message)
}

/// A relative path of normal components only (no root, `..`, `.` or backslash).
fn plain(p: &Path) -> bool {
    p.components().next().is_some()
        && !p.to_string_lossy().contains('\\')
        && p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Unpacks `file` into the new directory `dest`: everything goes into a temporary directory
/// beside it first and is renamed into place only when complete, so a failure leaves nothing.
pub fn unpack(file: &Path, dest: &Path) -> Result<(), BundleError> {
    if dest.exists() {
        return Err(BundleError::Io {
            file: dest.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already exists"),
        });
    }
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dest.with_file_name(format!(".{name}.unpack-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = unpack_into(file, &tmp).and_then(|()| std::fs::rename(&tmp, dest).map_err(BundleError::io(dest)));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Entries must be regular files with plain relative names, none twice, within size bounds
/// checked before anything is read.
fn unpack_into(file: &Path, dest: &Path) -> Result<(), BundleError> {
    let f = std::fs::File::open(file).map_err(BundleError::io(file))?;
    std::fs::create_dir(dest).map_err(BundleError::io(dest))?;
    let mut archive = tar::Archive::new(f);
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| packed_err(file, format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| packed_err(file, format!("unreadable entry: {e}")))?;
        let name = entry
            .path()
            .map_err(|e| packed_err(file, format!("entry name: {e}")))?
            .into_owned();
        let shown = name.display().to_string();
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(packed_err(file, format!("entry `{shown}` is not a regular file")));
        }
        if !plain(&name) {
            return Err(packed_err(
                file,
                format!("entry `{shown}` is not a plain relative path (absolute, `..` or `.`)"),
            ));
        }
        if !seen.insert(name.clone()) {
            return Err(packed_err(file, format!("entry `{shown}` appears twice")));
        }
        if seen.len() > MAX_ENTRIES {
            return Err(packed_err(file, format!("more than {MAX_ENTRIES} entries")));
        }
        let size = entry
            .header()
            .size()
            .map_err(|e| packed_err(file, format!("entry `{shown}`: {e}")))?;
        total += size;
        if size > MAX_MODEL_BYTES || total > MAX_TOTAL_BYTES {
            return Err(BundleError::TooLarge {
                file: file.to_path_buf(),
                field: format!("packed entry `{shown}`"),
                size: size.max(total),
                limit: if size > MAX_MODEL_BYTES {
                    MAX_MODEL_BYTES
                } else {
                    MAX_TOTAL_BYTES
                },
            });
        }
        let target = dest.join(&name);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(BundleError::io(parent))?;
        }
        let mut bytes = Vec::with_capacity(size as usize);
        (&mut entry)
            .take(size)
            .read_to_end(&mut bytes)
            .map_err(|e| packed_err(file, format!("entry `{shown}`: {e}")))?;
        if bytes.len() as u64 != size {
            return Err(packed_err(
                file,
                format!("entry `{shown}`: {} of {size} bytes (truncated file)", bytes.len()),
            ));
        }
        std::fs::write(&target, &bytes).map_err(BundleError::io(&target))?;
    }
    if !seen.contains(Path::new(MANIFEST_FILE)) {
        return Err(packed_err(file, format!("no `{MANIFEST_FILE}` inside")));
    }
    Ok(())
}

/// A private directory a packed bundle was unpacked into, removed with the last `Bundle` that
/// reads from it.
#[derive(Debug)]
pub struct UnpackedDir(pub PathBuf);

impl Drop for UnpackedDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh private directory under the system's temporary directory.
fn private_dir() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "sitfer-bundle-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Opens a packed bundle file: unpacked privately, then read as a directory. Errors about the
/// files inside name the packed file and the entry.
pub(crate) fn open_packed(file: &Path) -> Result<Bundle, BundleError> {
    let dir = UnpackedDir(private_dir());
    unpack_into(file, &dir.0)?;
    let mut b = Bundle::open_dir(&dir.0).map_err(|e| rename_paths(e, &dir.0, file))?;
    b.unpacked = Some(std::sync::Arc::new(dir));
    Ok(b)
}

/// Rewrites `<tmp>/name` in an error into `<file>!name`, so the user sees which packed file.
fn rename_paths(mut e: BundleError, tmp: &Path, file: &Path) -> BundleError {
    let path = e.file_mut();
    if let Ok(rest) = path.strip_prefix(tmp) {
        *path = PathBuf::from(format!("{}!{}", file.display(), rest.display()));
    }
    e
}
