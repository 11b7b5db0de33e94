//! `--bundle`: a directory, or the bundle embedded in the binary at build time.

use anyhow::{Context, Result};
use sitfer_runtime::bundle::{Bundle, Precision};
use sitfer_runtime::default_bundle;
use sitfer_runtime::infer::Model;
use std::path::Path;

pub use sitfer_runtime::default_bundle::{EMBEDDED_NAME, Unpacked};

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

pub fn unpack_embedded() -> Result<Unpacked> {
    default_bundle::unpack().context("no --bundle given")
}

fn open_embedded(precision: Option<Precision>) -> Result<(Bundle, Model)> {
    let (b, m) = default_bundle::open(precision).context("no --bundle given")?;
    let p = precision.unwrap_or_else(|| b.manifest.preferred_precision());
    log::info!("bundle {EMBEDDED_NAME}: {} model", p.name());
    Ok((b, m))
}

pub fn parse_precision(s: &str) -> Result<Precision, String> {
    Precision::parse(s).ok_or_else(|| format!("`{s}`: expected `fp32`, `int8` or `fp16`"))
}
