//! Batches prepared on worker threads ahead of the training step.
//!
//! Batch `k` of a stream is a pure function of (seed, k): its epoch is `k / batches_per_epoch`,
//! the epoch's order is a seeded shuffle, and each view of each sample gets its own seeded RNG.
//! Worker `w` builds the batches `k ≡ w (mod workers)` and the consumer reads them round-robin,
//! so the result is the same for any number of workers and a stream can restart at any `k`
//! (resume).

use super::augment::{AugmentConfig, Normalization, ViewKind, augment, to_chw};
use image::RgbImage;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use sitfer_contract::labels::NUM_CLASSES;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Decoded images with optional targets. Unlabeled stores have `targets: None`.
#[derive(Clone)]
pub struct ImageStore {
    pub images: Arc<Vec<RgbImage>>,
    pub targets: Option<Arc<Vec<[f32; NUM_CLASSES]>>>,
}

impl ImageStore {
    pub fn len(&self) -> usize {
        self.images.len()
    }
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }
    pub fn side(&self) -> u32 {
        self.images.first().map(|i| i.width()).unwrap_or(0)
    }
}

/// How a stream draws and prepares batches.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub batch_size: usize,
    /// One tensor per view (e.g. `[Weak]` for labeled data, `[Weak, Strong]` for unlabeled).
    pub views: Vec<ViewKind>,
    pub shuffle: bool,
    pub drop_last: bool,
    pub seed: u64,
    pub workers: usize,
    /// Batches each worker may prepare ahead.
    pub prefetch: usize,
    pub augment: AugmentConfig,
    pub norm: Normalization,
}

impl StreamConfig {
    /// In-order, unaugmented, every sample once: for evaluation.
    pub fn eval(batch_size: usize, norm: Normalization) -> Self {
        StreamConfig {
            batch_size,
            views: vec![ViewKind::None],
            shuffle: false,
            drop_last: false,
            seed: 0,
            workers: 1,
            prefetch: 2,
            augment: AugmentConfig::default(),
            norm,
        }
    }
}

/// One prepared batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Global batch number in the stream.
    pub index: u64,
    pub epoch: u64,
    /// Store indices of the samples.
    pub samples: Vec<usize>,
    /// Per view: `len * 3 * side * side` normalised CHW floats.
    pub views: Vec<Vec<f32>>,
    pub targets: Option<Vec<[f32; NUM_CLASSES]>>,
    pub side: u32,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.samples.len()
    }
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// A SplitMix64 step: decorrelates seeds built from small integers.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub fn batches_per_epoch(n: usize, batch_size: usize, drop_last: bool) -> u64 {
    if drop_last {
        (n / batch_size) as u64
    } else {
        n.div_ceil(batch_size) as u64
    }
}

/// Builds batch `k` (the function each worker runs).
pub fn build_batch(
    store: &ImageStore,
    cfg: &StreamConfig,
    k: u64,
    order_cache: &mut Option<(u64, Vec<usize>)>,
) -> Batch {
    let n = store.len();
    let per_epoch = batches_per_epoch(n, cfg.batch_size, cfg.drop_last).max(1);
    let epoch = k / per_epoch;
    let pos = (k % per_epoch) as usize;
    if order_cache.as_ref().map(|(e, _)| *e) != Some(epoch) {
        let mut order: Vec<usize> = (0..n).collect();
        if cfg.shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(mix(cfg.seed ^ mix(epoch)));
            order.shuffle(&mut rng);
        }
        *order_cache = Some((epoch, order));
    }
    let order = &order_cache.as_ref().unwrap().1;
    let start = pos * cfg.batch_size;
    let end = (start + cfg.batch_size).min(n);
    let samples: Vec<usize> = order[start..end].to_vec();
    let side = store.side();
    let per_image = (3 * side * side) as usize;
    let views = cfg
        .views
        .iter()
        .enumerate()
        .map(|(v, kind)| {
            let mut buf = vec![0f32; samples.len() * per_image];
            for (j, &i) in samples.iter().enumerate() {
                let s = mix(cfg.seed ^ mix(epoch ^ mix((i as u64) << 8 | v as u64)));
                let mut rng = ChaCha8Rng::seed_from_u64(s);
                let img = augment(&store.images[i], *kind, &cfg.augment, &mut rng);
                to_chw(&img, &cfg.norm, &mut buf[j * per_image..(j + 1) * per_image]);
            }
            buf
        })
        .collect();
    let targets = store.targets.as_ref().map(|t| samples.iter().map(|&i| t[i]).collect());
    Batch {
        index: k,
        epoch,
        samples,
        views,
        targets,
        side,
    }
}

/// An iterator of batches built by worker threads.
pub struct BatchStream {
    receivers: Vec<Receiver<Batch>>,
    handles: Vec<JoinHandle<()>>,
    start: u64,
    next: u64,
    end: Option<u64>,
}

impl BatchStream {
    /// Batches `start..end` (`end: None` = forever, re-shuffling every epoch).
    pub fn new(store: ImageStore, cfg: StreamConfig, start: u64, end: Option<u64>) -> Self {
        assert!(cfg.batch_size > 0, "batch size must be positive");
        let workers = cfg.workers.max(1);
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        let empty = store.is_empty() || batches_per_epoch(store.len(), cfg.batch_size, cfg.drop_last) == 0;
        for w in 0..workers as u64 {
            let (tx, rx): (SyncSender<Batch>, Receiver<Batch>) = sync_channel(cfg.prefetch.max(1));
            receivers.push(rx);
            if empty {
                continue;
            }
            let store = store.clone();
            let cfg = cfg.clone();
            let workers = workers as u64;
            handles.push(
                std::thread::Builder::new()
                    .name(format!("sitfer-loader-{w}"))
                    .spawn(move || {
                        let mut cache = None;
                        let mut k = start + w;
                        while end.is_none_or(|e| k < e) {
                            let batch = build_batch(&store, &cfg, k, &mut cache);
                            if tx.send(batch).is_err() {
                                return; // the consumer is gone
                            }
                            k += workers;
                        }
                    })
                    .expect("spawn loader thread"),
            );
        }
        BatchStream {
            receivers,
            handles,
            start,
            next: start,
            end: if empty { Some(start) } else { end },
        }
    }
}

impl Iterator for BatchStream {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        if self.end.is_some_and(|e| self.next >= e) {
            return None;
        }
        // Worker w was given batches start + w, start + w + workers, …
        let w = ((self.next - self.start) % self.receivers.len() as u64) as usize;
        let b = self.receivers[w].recv().ok()?;
        self.next += 1;
        Some(b)
    }
}

impl Drop for BatchStream {
    fn drop(&mut self) {
        // Closing the channels makes every blocked worker's send fail, so they exit.
        self.receivers.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
