//! `--bundle`: a directory, or the bundle embedded in the binary at build time.

use anyhow::{Context, Result, bail};
use sitfer_runtime::bundle::{Bundle, Precision};
use sitfer_runtime::infer::Model;
use std::path::{Path, PathBuf};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/default_bundle.rs"));
}

/// Opens `path`, or the embedded default bundle, and loads its model of `precision` (the
/// bundle's preferred one if `None`).
pub fn open(path: Option<&Path>, precision: Option<Precision>) -> Result<(Bundle, Model)> {
    match path {
        Some(p) => {
            let b = Bundle::open(p).with_context(|| format!("opening bundle {}", p.display()))?;
            let m = load(&b, precision, &p.display().to_string())?;
            Ok((b, m))
        }
        None => open_embedded(precision),
    }
}

fn load(b: &Bundle, precision: Option<Precision>, name: &str) -> Result<Model> {
    let p = precision.unwrap_or_else(|| b.manifest.preferred_precision());
    let m = Model::load(b, p).with_context(|| format!("loading the {} model of bundle {name}", p.name()))?;
    log::info!("bundle {name}: {} model", p.name());
    Ok(m)
}

/// The embedded default bundle unpacked into a private temporary directory, removed on drop.
/// The reader works on directories (it checks paths, sizes and hashes there).
pub struct Unpacked {
    pub dir: PathBuf,
}

impl Drop for Unpacked {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Display name of the embedded bundle.
pub const EMBEDDED_NAME: &str = "<embedded models/default>";

pub fn unpack_embedded() -> Result<Unpacked> {
    if embedded::DEFAULT_BUNDLE.is_empty() {
        bail!(
            "this binary was built without a default bundle (models/default/ did not exist at build time): pass --bundle DIR"
        );
    }
    let dir: PathBuf = std::env::temp_dir().join(format!("sitfer-default-bundle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let unpacked = Unpacked { dir };
    for (name, bytes) in embedded::DEFAULT_BUNDLE {
        let p = unpacked.dir.join(name);
        std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(unpacked)
}

fn open_embedded(precision: Option<Precision>) -> Result<(Bundle, Model)> {
    let unpacked = unpack_embedded()?;
    let mut b = Bundle::open(&unpacked.dir).context("opening the embedded default bundle")?;
    let m = load(&b, precision, EMBEDDED_NAME)?;
    b.dir = PathBuf::from(EMBEDDED_NAME);
    Ok((b, m))
}

pub fn parse_precision(s: &str) -> Result<Precision, String> {
    Precision::parse(s).ok_or_else(|| format!("`{s}`: expected `fp32`, `int8` or `fp16`"))
}
