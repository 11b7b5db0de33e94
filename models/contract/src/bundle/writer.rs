//! `write_bundle`: writes every file into a temporary directory beside the target, then renames
//! it into place, so a reader sees the old bundle or the new one, never a mix.

use super::error::BundleError;
use super::manifest::{
    ANCHORS_FILE, BUFFER_FILE, FORMAT_VERSION, FileEntry, Fusion, InputSpec, MANIFEST_FILE, MODEL_FP32_FILE,
    MODEL_INT8_FILE, Manifest, Models, PROTOTYPES_FILE,
};
use super::prototypes::TextPrototypes;
use super::reader::{sha256_hex, validate};
use super::seed_buffer::SeedBuffer;
use crate::file_write::atomic_write_bytes;
use crate::labels::ALL;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

/// The settings of a bundle; the file entries are computed by the writer.
#[derive(Debug, Clone)]
pub struct BundleSettings {
    pub input: InputSpec,
    pub embedding_dim: usize,
    pub fusion: Fusion,
    pub provenance: BTreeMap<String, String>,
}

/// What goes into the bundle's files.
#[derive(Debug, Clone, Copy)]
pub struct BundleContents<'a> {
    pub model_fp32: Option<&'a [u8]>,
    pub model_int8: Option<&'a [u8]>,
    pub prototypes: Option<&'a TextPrototypes>,
    pub buffer: &'a SeedBuffer,
}

fn entry(path: &str, bytes: &[u8]) -> FileEntry {
    FileEntry {
        path: path.to_string(),
        bytes: bytes.len() as u64,
        sha256: sha256_hex(bytes),
    }
}

/// Writes the bundle directory `dir` (replacing an existing one) and returns its manifest.
pub fn write_bundle(dir: &Path, settings: &BundleSettings, contents: BundleContents) -> Result<Manifest, BundleError> {
    write_bundle_with_extras(dir, settings, contents, &[])
}

/// [`write_bundle`] plus files outside the manifest (reports, pictures) written in the same
/// atomic swap. Their names must be plain file names other than the bundle's own.
pub fn write_bundle_with_extras(
    dir: &Path,
    settings: &BundleSettings,
    contents: BundleContents,
    extras: &[(&str, &[u8])],
) -> Result<Manifest, BundleError> {
    write_bundle_with_anchors(dir, settings, contents, None, extras)
}

/// [`write_bundle_with_extras`] plus the anchor faces (labeled pooled features, the manifest's
/// `anchors`), for the derived bundles that carry them.
pub fn write_bundle_with_anchors(
    dir: &Path,
    settings: &BundleSettings,
    contents: BundleContents,
    anchors: Option<&SeedBuffer>,
    extras: &[(&str, &[u8])],
) -> Result<Manifest, BundleError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let dim_mismatch = |field: &str, got: usize| {
        BundleError::invalid(
            &manifest_path,
            field,
            format!("dimension {got} differs from embedding_dim {}", settings.embedding_dim),
        )
    };
    if let Some(p) = contents.prototypes
        && p.dim != settings.embedding_dim
    {
        return Err(dim_mismatch("prototypes", p.dim));
    }
    if contents.buffer.dim != settings.embedding_dim {
        return Err(dim_mismatch("buffer", contents.buffer.dim));
    }
    let prototypes = contents.prototypes.map(|p| p.to_bytes()).transpose()?;
    let buffer = contents.buffer.to_bytes()?;
    let anchors = anchors.map(SeedBuffer::to_bytes).transpose()?;
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        classes: ALL.iter().map(|e| e.name().to_string()).collect(),
        input: settings.input.clone(),
        embedding_dim: settings.embedding_dim,
        fusion: settings.fusion,
        models: Models {
            fp32: contents.model_fp32.map(|b| entry(MODEL_FP32_FILE, b)),
            int8: contents.model_int8.map(|b| entry(MODEL_INT8_FILE, b)),
        },
        prototypes: prototypes.as_deref().map(|b| entry(PROTOTYPES_FILE, b)),
        buffer: entry(BUFFER_FILE, &buffer),
        anchors: anchors.as_deref().map(|b| entry(ANCHORS_FILE, b)),
        provenance: settings.provenance.clone(),
    };
    validate(&manifest, &manifest_path)?;
    let mut files: Vec<(&str, &[u8])> = vec![(BUFFER_FILE, &buffer)];
    if let Some(b) = contents.model_fp32 {
        files.push((MODEL_FP32_FILE, b));
    }
    if let Some(b) = contents.model_int8 {
        files.push((MODEL_INT8_FILE, b));
    }
    if let Some(b) = &prototypes {
        files.push((PROTOTYPES_FILE, b));
    }
    if let Some(b) = &anchors {
        files.push((ANCHORS_FILE, b));
    }
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    files.push((MANIFEST_FILE, &json));
    for &(name, bytes) in extras {
        let plain = Path::new(name).file_name().is_some_and(|f| f == name) && !name.starts_with('.');
        if !plain || files.iter().any(|(n, _)| *n == name) {
            return Err(BundleError::invalid(
                dir.join(name),
                "extras",
                "not a plain file name, or one of the bundle's own files",
            ));
        }
        files.push((name, bytes));
    }
    replace_dir(dir, &files)?;
    Ok(manifest)
}

fn sibling(dir: &Path, tag: &str) -> Result<PathBuf, BundleError> {
    let name = dir
        .file_name()
        .ok_or_else(|| BundleError::invalid(dir, "out", "not a directory path"))?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(parent.join(format!(".{}.{tag}-{}", name.to_string_lossy(), std::process::id())))
}

/// Removes what killed writers left beside `dir`: half-filled `.<name>.tmp-<pid>` directories
/// (a model's worth each) and, while `dir` itself is complete, set-aside `.<name>.old-<pid>`
/// copies (the reader falls back to those only when `dir` is missing). A live writer's are kept.
fn remove_leftovers(dir: &Path) {
    let (Some(name), Some(parent)) = (dir.file_name(), dir.parent()) else {
        return;
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let name = name.to_string_lossy();
    let Ok(entries) = fs::read_dir(parent) else { return };
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(rest) = file.to_str().and_then(|n| n.strip_prefix(&format!(".{name}."))) else {
            continue;
        };
        let (kind, pid) = match rest.split_once('-') {
            Some((k @ ("tmp" | "old"), pid)) => (k, pid.parse::<u32>().ok()),
            _ => continue,
        };
        let Some(pid) = pid else { continue };
        let removable = pid != std::process::id()
            && !crate::file_write::process_alive(pid)
            && (kind == "tmp" || dir.join(super::manifest::MANIFEST_FILE).is_file());
        if removable {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Fills a fresh temporary directory, then swaps it in. A directory cannot be renamed over a
/// non-empty one, so an existing bundle is first moved aside (and removed after the swap): a
/// crash in between leaves the complete old bundle beside the target, never a torn one.
fn replace_dir(dir: &Path, files: &[(&str, &[u8])]) -> Result<(), BundleError> {
    remove_leftovers(dir);
    let tmp = sibling(dir, "tmp")?;
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(BundleError::io(&tmp))?;
    }
    if let Some(parent) = tmp.parent() {
        fs::create_dir_all(parent).map_err(BundleError::io(parent))?;
    }
    fs::create_dir(&tmp).map_err(BundleError::io(&tmp))?;
    let result = (|| {
        for (name, bytes) in files {
            let p = tmp.join(name);
            atomic_write_bytes(&p, bytes).map_err(BundleError::io(&p))?;
        }
        let old = sibling(dir, "old")?;
        let had_old = dir.exists();
        if had_old {
            if old.exists() {
                fs::remove_dir_all(&old).map_err(BundleError::io(&old))?;
            }
            fs::rename(dir, &old).map_err(BundleError::io(dir))?;
        }
        fs::rename(&tmp, dir).map_err(BundleError::io(dir))?;
        if let Some(parent) = dir.parent()
            && let Ok(d) = File::open(if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            })
        {
            d.sync_all().map_err(BundleError::io(parent))?;
        }
        if had_old {
            fs::remove_dir_all(&old).map_err(BundleError::io(&old))?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}
