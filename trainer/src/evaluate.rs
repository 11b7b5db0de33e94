//! Evaluation of a model over an image store.

use crate::data::augment::Normalization;
use crate::data::loader::{BatchStream, ImageStore, StreamConfig, batches_per_epoch};
use crate::metrics::Confusion;
use crate::model::FerModel;
use candle_core::{D, Device, Result, Tensor};
use sitfer_contract::labels::NUM_CLASSES;

/// Predictions of a model over a store: class probabilities per sample, in store order.
pub struct Predictions {
    pub probs: Vec<[f32; NUM_CLASSES]>,
}

impl Predictions {
    pub fn confusion(&self, store: &ImageStore) -> Confusion {
        let mut c = Confusion::default();
        let targets = store.targets.as_ref().expect("evaluation needs labels");
        for (p, t) in self.probs.iter().zip(targets.iter()) {
            c.add(argmax(t), argmax(p));
        }
        c
    }
}

pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for i in 1..v.len() {
        if v[i] > v[best] {
            best = i;
        }
    }
    best
}

/// Runs the model in inference mode over every image of `store`: logits `[N, classes]` and
/// embeddings `[N, d]`, in store order.
pub fn forward_store(
    model: &dyn FerModel,
    store: &ImageStore,
    norm: Normalization,
    batch_size: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let cfg = StreamConfig::eval(batch_size, norm);
    let n_batches = batches_per_epoch(store.len(), batch_size, false);
    let side = store.side() as usize;
    let mut logits = Vec::with_capacity(n_batches as usize);
    let mut embeddings = Vec::with_capacity(n_batches as usize);
    for batch in BatchStream::new(store.clone(), cfg, 0, Some(n_batches)) {
        let x = Tensor::from_vec(batch.views[0].clone(), (batch.len(), 3, side, side), device)?;
        let out = model.forward_t(&x, false)?;
        logits.push(out.logits.detach());
        embeddings.push(out.embedding.detach());
    }
    Ok((Tensor::cat(&logits, 0)?, Tensor::cat(&embeddings, 0)?))
}

/// Rows of a `[N, classes]` probability tensor.
pub fn prob_rows(p: &Tensor) -> Result<Vec<[f32; NUM_CLASSES]>> {
    Ok(p.to_vec2::<f32>()?
        .into_iter()
        .map(|row| {
            let mut a = [0f32; NUM_CLASSES];
            a.copy_from_slice(&row[..NUM_CLASSES]);
            a
        })
        .collect())
}

/// The same faces, each flipped left to right (targets kept): the second view of a mirror
/// ensemble, as the runtime's `--mirror` scores a face.
pub fn mirrored(store: &ImageStore) -> ImageStore {
    ImageStore {
        images: std::sync::Arc::new(store.images.iter().map(image::imageops::flip_horizontal).collect()),
        targets: store.targets.clone(),
    }
}

/// Row by row, the mean of sets of class probabilities over the same faces (a face's and its
/// mirror image's; several teachers'). Empty when `sets` is.
pub fn mean_rows(sets: &[&[[f32; NUM_CLASSES]]]) -> Vec<[f32; NUM_CLASSES]> {
    let Some(first) = sets.first() else { return Vec::new() };
    let n = sets.len() as f32;
    (0..first.len())
        .map(|i| std::array::from_fn(|c| sets.iter().map(|s| s[i][c]).sum::<f32>() / n))
        .collect()
}

/// Runs the model in inference mode over every image of `store`.
pub fn predict(
    model: &dyn FerModel,
    store: &ImageStore,
    norm: Normalization,
    batch_size: usize,
    device: &Device,
) -> Result<Predictions> {
    let (logits, _) = forward_store(model, store, norm, batch_size, device)?;
    let probs = prob_rows(&candle_nn::ops::softmax(&logits, D::Minus1)?)?;
    Ok(Predictions { probs })
}
