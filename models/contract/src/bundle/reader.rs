//! `Bundle::open`: reads a bundle directory and checks everything that can be checked without
//! running the model: format version, fields, class order, paths, sizes and hashes.

use super::error::BundleError;
use super::manifest::{FORMAT_VERSION, FileEntry, MANIFEST_FILE, Manifest, Precision};
use super::prototypes::TextPrototypes;
use super::seed_buffer::{MAX_BUFFER_ENTRIES, SeedBuffer};
use crate::labels::ALL;
use sha2::{Digest, Sha256};
use std::path::{Component, Path, PathBuf};

/// Largest manifest read; anything bigger is not a manifest.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// Largest model file read (the student is a few MB; ResNet-18 fp32 is ~45 MB).
pub const MAX_MODEL_BYTES: u64 = 512 << 20;
/// Largest embedding dimension accepted; bounds the prototype and buffer sizes.
pub const MAX_EMBEDDING_DIM: usize = 4096;
/// Room for a safetensors JSON header.
const TENSOR_HEADER_BYTES: u64 = 64 << 10;

/// An opened, verified bundle (the models are loaded separately, see `crate::infer`).
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Where the files are read from (for a packed bundle: the private directory it was
    /// unpacked into, which lives as long as the bundle).
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub prototypes: Option<TextPrototypes>,
    pub buffer: SeedBuffer,
    /// Labeled pooled features (`SeedBuffer::dim` is the head's input width, not
    /// `embedding_dim`), when the manifest lists `anchors`.
    pub anchors: Option<SeedBuffer>,
    pub(crate) unpacked: Option<std::sync::Arc<super::pack::UnpackedDir>>,
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

impl Bundle {
    /// Opens the bundle at `path`: a bundle directory, or a bundle packed into one file
    /// (`sitfer pack`).
    pub fn open(path: &Path) -> Result<Bundle, BundleError> {
        if path.is_file() {
            super::pack::open_packed(path)
        } else {
            Bundle::open_dir(path)
        }
    }

    /// Opens the bundle directory `dir`. When `dir` is missing because a writer was killed between
    /// moving the previous bundle aside and renaming the new one into place, the previous
    /// bundle is opened where the writer left it (see [`interrupted_replacement`]).
    pub fn open_dir(dir: &Path) -> Result<Bundle, BundleError> {
        match Bundle::open_exact(dir) {
            Err(e) if !dir.exists() => match interrupted_replacement(dir) {
                Some(old) => {
                    log::warn!(
                        "{}: missing, opening the previous bundle a killed update left at {}",
                        dir.display(),
                        old.display()
                    );
                    Bundle::open_exact(&old)
                }
                None => Err(e),
            },
            r => r,
        }
    }

    fn open_exact(dir: &Path) -> Result<Bundle, BundleError> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let bytes = read_bounded(&manifest_path, "manifest", MAX_MANIFEST_BYTES)?;
        let manifest = Manifest::from_bytes(&bytes, &manifest_path)?;
        let mut prototypes = None;
        let mut buffer = None;
        let mut anchors = None;
        for (field, entry) in manifest.files() {
            let (path, bytes) = read_entry(dir, &manifest_path, field, entry, file_limit(&manifest, field))?;
            let dim = manifest.embedding_dim;
            match field {
                "prototypes" => prototypes = Some(TextPrototypes::from_bytes(&bytes, dim, &path, field)?),
                "buffer" => buffer = Some(SeedBuffer::from_bytes(&bytes, dim, &path, field)?),
                "anchors" => anchors = Some(SeedBuffer::from_bytes_any_dim(&bytes, &path, field)?),
                _ => {}
            }
        }
        let buffer = buffer.expect("files() always lists the buffer");
        Ok(Bundle {
            dir: dir.to_path_buf(),
            manifest,
            prototypes,
            buffer,
            anchors,
            unpacked: None,
        })
    }

    /// The verified bytes of a model file (hash checked again: the file may have changed since
    /// `open`).
    pub fn model_bytes(&self, precision: Precision) -> Result<(PathBuf, Vec<u8>), BundleError> {
        let manifest_path = self.dir.join(MANIFEST_FILE);
        let (entry, field) = self.manifest.model(precision);
        let entry =
            entry.ok_or_else(|| BundleError::invalid(&manifest_path, field, "this bundle has no such model"))?;
        read_entry(&self.dir, &manifest_path, field, entry, MAX_MODEL_BYTES)
    }
}

impl Manifest {
    /// Parses and checks manifest bytes (`file` names them in errors): everything `Bundle::open`
    /// checks before it reads another file.
    pub fn from_bytes(bytes: &[u8], file: &Path) -> Result<Manifest, BundleError> {
        let manifest = parse_manifest(bytes, file)?;
        validate(&manifest, file)?;
        Ok(manifest)
    }
}

/// The previous bundle `writer::replace_dir` moved aside (`.<name>.old-<pid>` beside `dir`) and
/// had not yet removed: the newest such directory holding a manifest. Only meaningful while
/// `dir` itself is missing, i.e. the writer died between its two renames.
fn interrupted_replacement(dir: &Path) -> Option<PathBuf> {
    let name = dir.file_name()?.to_string_lossy().into_owned();
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let prefix = format!(".{name}.old-");
    std::fs::read_dir(parent)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|e| e.path())
        .filter(|p| p.join(MANIFEST_FILE).is_file())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
}

fn file_limit(m: &Manifest, field: &str) -> u64 {
    let row = (m.embedding_dim * 4) as u64;
    match field {
        "prototypes" => TENSOR_HEADER_BYTES + ALL.len() as u64 * row,
        "buffer" => TENSOR_HEADER_BYTES + MAX_BUFFER_ENTRIES as u64 * (row + 1),
        "anchors" => TENSOR_HEADER_BYTES + MAX_BUFFER_ENTRIES as u64 * (MAX_EMBEDDING_DIM as u64 * 4 + 1),
        _ => MAX_MODEL_BYTES,
    }
}

fn read_bounded(path: &Path, field: &str, limit: u64) -> Result<Vec<u8>, BundleError> {
    let size = std::fs::metadata(path).map_err(BundleError::io(path))?.len();
    if size > limit {
        return Err(BundleError::TooLarge {
            file: path.to_path_buf(),
            field: field.to_string(),
            size,
            limit,
        });
    }
    std::fs::read(path).map_err(BundleError::io(path))
}

/// Parses in two steps so that a manifest of another version gets a version error, not a
/// confusing field error.
pub(crate) fn parse_manifest(bytes: &[u8], path: &Path) -> Result<Manifest, BundleError> {
    let json_err = |e: serde_json::Error| BundleError::Json {
        file: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    };
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(json_err)?;
    let version = value
        .get("format_version")
        .ok_or_else(|| BundleError::invalid(path, "format_version", "missing"))?
        .as_u64()
        .ok_or_else(|| BundleError::invalid(path, "format_version", "not a non-negative integer"))?;
    if version != FORMAT_VERSION as u64 {
        return Err(BundleError::UnsupportedVersion {
            file: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    serde_json::from_slice(bytes).map_err(json_err)
}

/// Checks the manifest's values (also used by the writer before it writes anything).
pub(crate) fn validate(m: &Manifest, path: &Path) -> Result<(), BundleError> {
    let bad = |field: &str, msg: String| Err(BundleError::invalid(path, field, msg));
    let canonical: Vec<&str> = ALL.iter().map(|e| e.name()).collect();
    if m.classes != canonical {
        return bad(
            "classes",
            format!("{:?} is not the canonical class order {canonical:?}", m.classes),
        );
    }
    if m.input.channels != 3 {
        return bad(
            "input.channels",
            format!("{} (only 3-channel RGB input is supported)", m.input.channels),
        );
    }
    if !(8..=1024).contains(&m.input.size) {
        return bad("input.size", format!("{} is outside 8..=1024", m.input.size));
    }
    if m.input.mean.iter().any(|x| !x.is_finite()) {
        return bad("input.mean", format!("{:?} is not finite", m.input.mean));
    }
    if m.input.std.iter().any(|x| !x.is_finite() || *x <= 0.0) {
        return bad(
            "input.std",
            format!("{:?}: every std must be finite and > 0", m.input.std),
        );
    }
    if !(1..=MAX_EMBEDDING_DIM).contains(&m.embedding_dim) {
        return bad(
            "embedding_dim",
            format!("{} is outside 1..={MAX_EMBEDDING_DIM}", m.embedding_dim),
        );
    }
    let f = &m.fusion;
    for (field, v) in [
        ("fusion.tau_sem", f.tau_sem),
        ("fusion.tau_t", f.tau_t),
        ("fusion.tau_i", f.tau_i),
    ] {
        if !v.is_finite() || v <= 0.0 {
            return bad(field, format!("{v} must be finite and > 0"));
        }
    }
    let w = f.weights;
    for (field, v) in [
        ("fusion.weights.sem", w.sem),
        ("fusion.weights.text", w.text),
        ("fusion.weights.ins", w.ins),
    ] {
        if !v.is_finite() || v < 0.0 {
            return bad(field, format!("{v} must be finite and ≥ 0"));
        }
    }
    if w.sem + w.text + w.ins <= 0.0 {
        return bad("fusion.weights", "all weights are 0".into());
    }
    if m.prototypes.is_none() && w.text != 0.0 {
        return bad(
            "fusion.weights.text",
            format!("{} but the bundle has no prototypes (must be 0)", w.text),
        );
    }
    if !(0.0..=1.0).contains(&f.threshold) {
        return bad("fusion.threshold", format!("{} is outside [0, 1]", f.threshold));
    }
    if m.models.fp32.is_none() && m.models.int8.is_none() {
        return bad("models", "neither an fp32 nor an int8 model".into());
    }
    for (field, e) in m.files() {
        if !is_plain_relative(&e.path) {
            return Err(BundleError::PathEscapes {
                file: path.to_path_buf(),
                field: format!("{field}.path"),
                path: e.path.clone(),
            });
        }
        if e.sha256.len() != 64
            || !e
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return bad(
                &format!("{field}.sha256"),
                format!("`{}` is not 64 lowercase hex digits", e.sha256),
            );
        }
    }
    Ok(())
}

/// Only `name` or `dir/name`: no root, no `..`, no `.`, no drive prefix, no backslash (which
/// would be a separator on Windows).
fn is_plain_relative(p: &str) -> bool {
    !p.is_empty() && !p.contains('\\') && Path::new(p).components().all(|c| matches!(c, Component::Normal(_)))
}

fn read_entry(
    dir: &Path,
    manifest_path: &Path,
    field: &str,
    entry: &FileEntry,
    limit: u64,
) -> Result<(PathBuf, Vec<u8>), BundleError> {
    let escapes = || BundleError::PathEscapes {
        file: manifest_path.to_path_buf(),
        field: format!("{field}.path"),
        path: entry.path.clone(),
    };
    if !is_plain_relative(&entry.path) {
        return Err(escapes());
    }
    let path = dir.join(&entry.path);
    // A symlink inside the bundle could still point outside it.
    let root = std::fs::canonicalize(dir).map_err(BundleError::io(dir))?;
    let real = std::fs::canonicalize(&path).map_err(BundleError::io(&path))?;
    if !real.starts_with(&root) {
        return Err(escapes());
    }
    if entry.bytes > limit {
        return Err(BundleError::TooLarge {
            file: path,
            field: format!("{field}.bytes"),
            size: entry.bytes,
            limit,
        });
    }
    let actual = std::fs::metadata(&path).map_err(BundleError::io(&path))?.len();
    if actual != entry.bytes {
        return Err(BundleError::SizeMismatch {
            file: path,
            field: format!("{field}.bytes"),
            expected: entry.bytes,
            actual,
        });
    }
    let bytes = std::fs::read(&path).map_err(BundleError::io(&path))?;
    let hash = sha256_hex(&bytes);
    if hash != entry.sha256 {
        return Err(BundleError::HashMismatch {
            file: path,
            field: format!("{field}.sha256"),
            expected: entry.sha256.clone(),
            actual: hash,
        });
    }
    Ok((path, bytes))
}
