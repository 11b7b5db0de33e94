//! `sitfer anchors`: a copy of a bundle carrying anchor faces, the pooled features (the
//! classifier head's input) of labeled faces with their classes. The online refit of the head
//! (`sitfer run --online-refit`) replays half of them so that adapting to a new camera keeps
//! what the head knew, and checks every candidate head on the other half, refusing one that
//! loses accuracy there. The faces are spread evenly over the folder, so they keep its class
//! mix: the prior the head was trained under, which the replay should not shift.

use super::calibrate::outputs;
use super::eval::list;
use super::model_args::{Faces, ModelArgs};
use super::{bundle_arg, derived_bundle};
use anyhow::{Result, bail};
use clap::Args;
use sitfer_runtime::bundle::SeedBuffer;
use sitfer_runtime::instance_buffer::InstanceBuffer;
use sitfer_runtime::labels::{ALL, NUM_CLASSES};
use sitfer_runtime::pipeline::Recognizer;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct AnchorsArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Labeled ImageFolder (`<class>/*`, or `<split>/<class>/*` with --split) of the head's own
    /// domain and never of the faces the bundle is scored on, e.g. ../shared/data/fer2013/train.
    #[arg(long)]
    pub data: PathBuf,
    /// Split folder under --data, when --data has no class folders.
    #[arg(long)]
    pub split: Option<String>,
    /// Anchor faces, spread evenly over the folder.
    #[arg(long, default_value_t = 1024)]
    pub count: usize,
    /// Faces per model run.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// The new bundle (never the source bundle).
    #[arg(long)]
    pub out: PathBuf,
}

/// `count` indices spread evenly over `0..n`, each in the middle of its stride (so that they
/// are not `sitfer calibrate`'s calibration faces, which start each stride).
pub fn spread(n: usize, count: usize) -> Vec<usize> {
    if count >= n {
        return (0..n).collect();
    }
    (0..count).map(|i| (2 * i + 1) * n / (2 * count)).collect()
}

pub fn anchors(a: AnchorsArgs) -> Result<()> {
    let Some(bundle_dir) = a.model.bundle.clone() else {
        bail!("--bundle is required: the copy is written from the source bundle's files");
    };
    derived_bundle::check_out(&bundle_dir, &a.out)?;
    let (bundle, model, _head) = bundle_arg::open_with_head(Some(&bundle_dir), a.model.precision)?;
    let listing = list(&a.data, a.split.as_deref())?;
    let items = &listing.items;
    let idx = spread(items.len(), a.count);
    if idx.is_empty() {
        bail!("{}: no labeled faces", listing.dir.display());
    }
    let mut cfg = a.model.recognizer_config(&bundle);
    cfg.continual = false;
    let seed = InstanceBuffer::from_seed(&bundle.buffer, 0);
    let mut rec = Recognizer::new(&bundle, model, a.model.detector()?, seed, cfg);
    let out = outputs(&mut rec, items, &idx, a.batch, a.model.faces == Faces::WholeFrame)?;
    let dim = out.first().and_then(|o| o.feature.as_ref()).map_or(0, Vec::len);
    let anchors = SeedBuffer {
        dim,
        embeddings: out.iter().flat_map(|o| o.feature.iter().flatten().copied()).collect(),
        labels: idx.iter().map(|&i| items[i].1 as u8).collect(),
    };
    if dim == 0 || anchors.embeddings.len() != dim * anchors.len() {
        bail!("the model did not give every face its pooled feature");
    }
    let counts = anchors.class_counts();
    let mix: Vec<String> = (0..NUM_CLASSES)
        .map(|c| format!("{} {}", ALL[c].name(), counts[c]))
        .collect();
    let what = format!(
        "{} labeled faces of {} spread evenly over the folder ({}), pooled features of width {dim}",
        anchors.len(),
        listing.dir.display(),
        mix.join(", ")
    );
    derived_bundle::write_derived(
        &bundle,
        &a.out,
        derived_bundle::Changes {
            anchors: Some(&anchors),
            provenance: vec![("anchors".to_string(), what.clone())],
            ..Default::default()
        },
    )?;
    println!("wrote {}: anchors = {what}", a.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn anchor_faces_are_spread_and_distinct() {
        let v = spread(1000, 8);
        assert_eq!(v, vec![62, 187, 312, 437, 562, 687, 812, 937]);
        assert_eq!(spread(5, 8), vec![0, 1, 2, 3, 4]);
    }
}
