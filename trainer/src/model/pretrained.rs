//! Starting a model from pretrained weights (ImageNet EfficientNet-Lite0).

use candle_core::{Device, Result};
use candle_nn::VarMap;
use std::path::Path;

/// What was loaded.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub loaded: usize,
    /// Model variables with no tensor of that name in the file (kept at their initialisation).
    pub missing: Vec<String>,
    /// Variables whose shape differs from the file's (the classifier of another task): skipped.
    pub skipped_shape: Vec<String>,
}

/// Copies every tensor of `path` whose name and shape match a variable of `varmap`.
pub fn load_matching(varmap: &VarMap, path: &Path, device: &Device) -> Result<LoadReport> {
    let tensors = candle_core::safetensors::load(path, device)?;
    let data = varmap.data().lock().expect("varmap lock");
    let mut report = LoadReport::default();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        match tensors.get(name.as_str()) {
            Some(t) if t.shape() == var.shape() => {
                var.set(&t.to_dtype(var.dtype())?)?;
                report.loaded += 1;
            }
            Some(_) => report.skipped_shape.push(name.clone()),
            None => report.missing.push(name.clone()),
        }
    }
    Ok(report)
}
