//! The default bundle (`models/default/`), embedded in the crate at build time by `build.rs`, so
//! the `sitfer` binary and library users run without a bundle on disk.
//!
//! The bundle reader works on directories (it checks paths, sizes and hashes there), so the
//! embedded files are written to a private temporary directory first.

use crate::bundle::{Bundle, BundleError, Precision};
use crate::infer::Model;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use thiserror::Error;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/default_bundle.rs"));
}

/// Display name of the embedded bundle (in logs and in `Bundle::dir` once opened).
pub const EMBEDDED_NAME: &str = "<embedded models/default>";

#[derive(Debug, Error)]
pub enum DefaultBundleError {
    #[error("this build has no default bundle (models/default/ did not exist at build time): pass a bundle")]
    Missing,
    #[error("unpacking the embedded default bundle to {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the embedded default bundle: {0}")]
    Bundle(#[from] BundleError),
}

/// Whether this build carries a default bundle.
pub fn is_embedded() -> bool {
    !embedded::DEFAULT_BUNDLE.is_empty()
}

/// The embedded bundle written to a private temporary directory, removed on drop.
#[derive(Debug)]
pub struct Unpacked {
    pub dir: PathBuf,
}

impl Drop for Unpacked {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes the embedded files to a new temporary directory (one per call: two unpacks in one
/// process must not remove each other's files).
pub fn unpack() -> Result<Unpacked, DefaultBundleError> {
    static SEQUENCE: AtomicUsize = AtomicUsize::new(0);
    if !is_embedded() {
        return Err(DefaultBundleError::Missing);
    }
    let dir = std::env::temp_dir().join(format!(
        "sitfer-default-bundle-{}-{}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    ));
    let io = |path: &PathBuf| {
        let path = path.clone();
        move |source| DefaultBundleError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let unpacked = Unpacked { dir };
    for (name, bytes) in embedded::DEFAULT_BUNDLE {
        let p = unpacked.dir.join(name);
        std::fs::write(&p, bytes).map_err(io(&p))?;
    }
    Ok(unpacked)
}

/// Opens the embedded bundle and loads its model of `precision` (the bundle's preferred one,
/// fp32 on x86_64 and int8 elsewhere, when `None`). The temporary files are gone when this
/// returns: everything the recognizer needs is in memory.
pub fn open(precision: Option<Precision>) -> Result<(Bundle, Model), DefaultBundleError> {
    let unpacked = unpack()?;
    let mut bundle = Bundle::open(&unpacked.dir)?;
    let model = Model::load(
        &bundle,
        precision.unwrap_or_else(|| bundle.manifest.preferred_precision()),
    )?;
    bundle.dir = PathBuf::from(EMBEDDED_NAME);
    Ok((bundle, model))
}
