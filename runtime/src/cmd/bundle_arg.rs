//! `--bundle`: a directory, or the bundle embedded in the binary at build time.

use anyhow::{Context, Result};
use sitfer_runtime::adapt::{Head, onnx_head};
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

/// [`open`], the model loaded with its pooled feature, and the bundle's classifier head: what
/// a refitted head needs (the online refit, or a saved head applied).
pub fn open_with_head(path: Option<&Path>, precision: Option<Precision>) -> Result<(Bundle, Model, Head)> {
    // The embedded bundle is unpacked while its model file is read twice (model, head).
    let (_unpacked, dir, name) = match path {
        Some(p) => (None, p.to_path_buf(), p.display().to_string()),
        None => {
            let u = unpack_embedded()?;
            let d = u.dir.clone();
            (Some(u), d, EMBEDDED_NAME.to_string())
        }
    };
    let mut b = Bundle::open(&dir).with_context(|| format!("opening bundle {name}"))?;
    let p = precision.unwrap_or_else(|| b.manifest.preferred_precision());
    let m = Model::load_with_feature(&b, p)
        .with_context(|| format!("loading the {} model of {name} with its pooled feature", p.name()))?;
    let (file, bytes) = b.model_bytes(p)?;
    let head = onnx_head::read_head(&bytes, &file)?;
    if path.is_none() {
        b.dir = std::path::PathBuf::from(EMBEDDED_NAME);
    }
    log::info!("bundle {name}: {} model, with its pooled feature", p.name());
    Ok((b, m, head))
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
