//! A bundle derived from another (`sitfer adapt`, `sitfer calibrate`, `sitfer eval --calibrate-out`): the source's
//! files with some parts replaced, written by the bundle writer's atomic swap, then re-opened and
//! its models loaded as any user would. The source is only read.

use anyhow::{Context, Result, bail};
use sitfer_runtime::adapt::{Head, onnx_head};
use sitfer_runtime::bundle::{
    Bundle, BundleContents, BundleSettings, Fusion, Precision, SeedBuffer, write_bundle_with_anchors,
};
use sitfer_runtime::infer::Model;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Default)]
pub struct Changes<'a> {
    /// A refitted classifier head, written into every model file.
    pub head: Option<&'a Head>,
    pub buffer: Option<&'a SeedBuffer>,
    /// Anchor faces (labeled pooled features); else the source's, if it has them (a refitted
    /// head leaves the features, hence the anchors, as they were).
    pub anchors: Option<&'a SeedBuffer>,
    /// The whole fusion (temperatures, aggregate, threshold); `threshold` applies after it.
    pub fusion: Option<Fusion>,
    /// The admission threshold (`fusion.threshold`).
    pub threshold: Option<f32>,
    /// Added to (or replacing keys of) the source's provenance.
    pub provenance: Vec<(String, String)>,
    /// Files outside the manifest (reports, pictures).
    pub extras: Vec<(&'a str, &'a [u8])>,
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Refuses `out` equal to the source directory `src`.
pub fn check_out(src: &Path, out: &Path) -> Result<()> {
    if same_dir(src, out) {
        bail!(
            "--out {} is the source bundle: a derived bundle is written anew and its source is never modified",
            out.display()
        );
    }
    Ok(())
}

pub fn write_derived(bundle: &Bundle, out: &Path, c: Changes) -> Result<()> {
    check_out(&bundle.dir, out)?;
    let m = &bundle.manifest;
    let mut models: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for p in [Precision::Fp32, Precision::Int8] {
        if m.model(p).0.is_none() {
            continue;
        }
        let (path, bytes) = bundle.model_bytes(p)?;
        let bytes = match c.head {
            Some(h) => onnx_head::write_head(&bytes, h, &path)?,
            None => bytes,
        };
        models.insert(p.name(), bytes);
    }
    let mut provenance = m.provenance.clone();
    provenance.extend(c.provenance);
    let mut fusion = c.fusion.unwrap_or(m.fusion);
    if let Some(t) = c.threshold {
        fusion.threshold = t;
    }
    let settings = BundleSettings {
        input: m.input.clone(),
        embedding_dim: m.embedding_dim,
        fusion,
        provenance,
    };
    let contents = BundleContents {
        model_fp32: models.get(Precision::Fp32.name()).map(Vec::as_slice),
        model_int8: models.get(Precision::Int8.name()).map(Vec::as_slice),
        prototypes: bundle.prototypes.as_ref(),
        buffer: c.buffer.unwrap_or(&bundle.buffer),
    };
    let anchors = c.anchors.or(bundle.anchors.as_ref());
    write_bundle_with_anchors(out, &settings, contents, anchors, &c.extras)
        .with_context(|| format!("writing the bundle {}", out.display()))?;
    let b2 = Bundle::open(out).with_context(|| format!("re-opening {}", out.display()))?;
    for p in [Precision::Fp32, Precision::Int8] {
        if b2.manifest.model(p).0.is_some() {
            Model::load(&b2, p)?;
        }
    }
    Ok(())
}
