//! The instance memory buffer: labeled embeddings (one slot per labeled sample, refreshed with
//! its newest embedding) plus per-class bounded FIFO queues of confidently pseudo-labeled
//! embeddings. p_ins scores a face by its similarity to each class's entries.
//!
//! The entries live in host memory (they change a few rows per step); the similarity is one
//! matmul on the training device over a bank laid out class by class, so each class is a
//! contiguous column range.

use super::config::Aggregate;
use candle_core::{DType, Device, Result, Tensor};
use sitfer_contract::fusion::{EMPTY_CLASS_SCORE, class_similarity};
use sitfer_contract::labels::NUM_CLASSES;
use std::collections::HashMap;
use std::ops::Range;

/// A bounded FIFO of `dim`-vectors (a ring: the oldest is overwritten when full).
#[derive(Debug, Clone)]
struct Queue {
    data: Vec<f32>,
    /// Next write position.
    head: usize,
    len: usize,
    cap: usize,
}

impl Queue {
    fn new(cap: usize, dim: usize) -> Self {
        Queue {
            data: vec![0.0; cap * dim],
            head: 0,
            len: 0,
            cap,
        }
    }
    fn push(&mut self, v: &[f32]) {
        if self.cap == 0 {
            return;
        }
        let d = v.len();
        self.data[self.head * d..(self.head + 1) * d].copy_from_slice(v);
        self.head = (self.head + 1) % self.cap;
        self.len = (self.len + 1).min(self.cap);
    }
    /// Entries oldest first.
    fn iter(&self, dim: usize) -> impl Iterator<Item = &[f32]> {
        let start = (self.head + self.cap - self.len) % self.cap.max(1);
        (0..self.len).map(move |i| {
            let j = (start + i) % self.cap;
            &self.data[j * dim..(j + 1) * dim]
        })
    }
}

#[derive(Debug, Clone)]
pub struct InstanceMemory {
    dim: usize,
    labeled: Vec<f32>,
    labeled_class: Vec<usize>,
    labeled_filled: Vec<bool>,
    queues: Vec<Queue>,
}

/// The bank as the device sees it.
pub struct Bank {
    /// `[M, dim]`, class by class.
    pub entries: Tensor,
    /// (offset, count) of each class's columns.
    pub ranges: [(usize, usize); NUM_CLASSES],
}

impl InstanceMemory {
    /// One slot per labeled sample (`labeled_class[i]` is sample i's class) and a queue of
    /// `queue_per_class` per class.
    pub fn new(dim: usize, labeled_class: Vec<usize>, queue_per_class: usize) -> Self {
        assert!(labeled_class.iter().all(|&c| c < NUM_CLASSES));
        InstanceMemory {
            dim,
            labeled: vec![0.0; labeled_class.len() * dim],
            labeled_filled: vec![false; labeled_class.len()],
            labeled_class,
            queues: (0..NUM_CLASSES).map(|_| Queue::new(queue_per_class, dim)).collect(),
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Refreshes labeled slots `idx` with rows of `z` (`[idx.len(), dim]`, row-major).
    pub fn update_labeled(&mut self, idx: &[usize], z: &[f32]) {
        let d = self.dim;
        for (r, &i) in idx.iter().enumerate() {
            self.labeled[i * d..(i + 1) * d].copy_from_slice(&z[r * d..(r + 1) * d]);
            self.labeled_filled[i] = true;
        }
    }

    /// Adds a confidently pseudo-labeled embedding to its class's queue (the oldest leaves
    /// when the queue is full).
    pub fn push_pseudo(&mut self, class: usize, z: &[f32]) {
        assert_eq!(z.len(), self.dim);
        self.queues[class].push(z);
    }

    /// Entries per class (filled labeled slots + queued).
    pub fn counts(&self) -> [usize; NUM_CLASSES] {
        let mut c = [0; NUM_CLASSES];
        for (i, &cls) in self.labeled_class.iter().enumerate() {
            if self.labeled_filled[i] {
                c[cls] += 1;
            }
        }
        for (k, q) in self.queues.iter().enumerate() {
            c[k] += q.len;
        }
        c
    }

    pub fn len(&self) -> usize {
        self.counts().iter().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queued (pseudo-labeled) entries of `class`, oldest first.
    pub fn queued(&self, class: usize) -> Vec<Vec<f32>> {
        self.queues[class].iter(self.dim).map(|v| v.to_vec()).collect()
    }

    /// The bank on `device`; `labeled_only` leaves the queues out.
    pub fn bank(&self, device: &Device, labeled_only: bool) -> Result<Bank> {
        self.gather(device, !labeled_only, 0..0)
    }

    /// The labeled entries without slots `skip` (no queues): a buffer in which the faces of
    /// `skip` do not find themselves (a teacher scoring its own labeled faces).
    pub fn labeled_bank_without(&self, device: &Device, skip: Range<usize>) -> Result<Bank> {
        self.gather(device, false, skip)
    }

    fn gather(&self, device: &Device, queues: bool, skip: Range<usize>) -> Result<Bank> {
        let d = self.dim;
        let mut rows: Vec<f32> = Vec::with_capacity(self.len() * d);
        let mut ranges = [(0, 0); NUM_CLASSES];
        for (c, range) in ranges.iter_mut().enumerate() {
            let start = rows.len() / d;
            for (i, &cls) in self.labeled_class.iter().enumerate() {
                if cls == c && self.labeled_filled[i] && !skip.contains(&i) {
                    rows.extend_from_slice(&self.labeled[i * d..(i + 1) * d]);
                }
            }
            if queues {
                for v in self.queues[c].iter(d) {
                    rows.extend_from_slice(v);
                }
            }
            *range = (start, rows.len() / d - start);
        }
        let m = rows.len() / d;
        Ok(Bank {
            entries: Tensor::from_vec(rows, (m, d), device)?,
            ranges,
        })
    }

    /// Host copy of the state, for checkpoints.
    pub fn to_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let dev = Device::Cpu;
        let d = self.dim;
        let mut m = HashMap::new();
        m.insert(
            "memory.labeled".into(),
            Tensor::from_vec(self.labeled.clone(), (self.labeled_class.len(), d), &dev)?,
        );
        m.insert(
            "memory.labeled_filled".into(),
            Tensor::from_vec(
                self.labeled_filled.iter().map(|&f| f as u8).collect::<Vec<u8>>(),
                self.labeled_filled.len(),
                &dev,
            )?,
        );
        for (c, q) in self.queues.iter().enumerate() {
            let rows: Vec<f32> = q.iter(d).flatten().copied().collect();
            m.insert(format!("memory.queue.{c}"), Tensor::from_vec(rows, (q.len, d), &dev)?);
        }
        Ok(m)
    }

    /// Restores what [`Self::to_tensors`] saved (queues keep their order, oldest first).
    pub fn load_tensors(&mut self, t: &HashMap<String, Tensor>) -> Result<()> {
        let get = |k: &str| {
            t.get(k)
                .ok_or_else(|| candle_core::Error::Msg(format!("instance memory: tensor `{k}` missing")))
        };
        let labeled = get("memory.labeled")?.flatten_all()?.to_vec1::<f32>()?;
        if labeled.len() != self.labeled.len() {
            candle_core::bail!(
                "instance memory: {} labeled values saved, {} expected (another split?)",
                labeled.len(),
                self.labeled.len()
            );
        }
        self.labeled = labeled;
        self.labeled_filled = get("memory.labeled_filled")?
            .to_vec1::<u8>()?
            .into_iter()
            .map(|b| b != 0)
            .collect();
        for c in 0..NUM_CLASSES {
            let rows = get(&format!("memory.queue.{c}"))?.flatten_all()?.to_vec1::<f32>()?;
            let mut q = Queue::new(self.queues[c].cap, self.dim);
            for v in rows.chunks(self.dim) {
                q.push(v);
            }
            self.queues[c] = q;
        }
        Ok(())
    }
}

/// p_ins's scores `[B, classes]`: per class, the aggregated cosine similarity of unit embeddings
/// `z` `[B, d]` to the class's entries, divided by τ_i. The similarities are one matmul on the
/// device; the per-class aggregate is the contract's, the one the runtime applies.
pub fn ins_scores(z: &Tensor, bank: &Bank, aggregate: Aggregate, tau_i: f64) -> Result<Tensor> {
    let b = z.dim(0)?;
    let sim = if bank.entries.dim(0)? > 0 {
        z.matmul(&bank.entries.t()?)?.to_dtype(DType::F32)?.to_vec2::<f32>()?
    } else {
        vec![Vec::new(); b]
    };
    let tau_i = tau_i as f32;
    let mut out = Vec::with_capacity(b * NUM_CLASSES);
    for mut row in sim {
        for &(off, n) in &bank.ranges {
            let class = class_similarity(&mut row[off..off + n], aggregate);
            out.push(class.map_or(EMPTY_CLASS_SCORE, |s| s / tau_i));
        }
    }
    Tensor::from_vec(out, (b, NUM_CLASSES), z.device())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(a: f32) -> Vec<f32> {
        vec![a.cos(), a.sin()]
    }

    #[test]
    fn queues_are_bounded_fifo_per_class() {
        let mut m = InstanceMemory::new(2, vec![0, 3], 3);
        for i in 0..5 {
            m.push_pseudo(1, &[i as f32, 0.0]);
        }
        m.push_pseudo(2, &[9.0, 9.0]);
        // Capacity 3: the two oldest of class 1 are gone, order stays oldest first.
        assert_eq!(m.queued(1), vec![vec![2.0, 0.0], vec![3.0, 0.0], vec![4.0, 0.0]]);
        assert_eq!(m.queued(2), vec![vec![9.0, 9.0]]);
        assert_eq!(m.queued(0), Vec::<Vec<f32>>::new());
        // Labeled slots count only once filled.
        assert_eq!(m.counts(), [0, 3, 1, 0, 0, 0, 0]);
        m.update_labeled(&[1], &[1.0, 0.0]);
        assert_eq!(m.counts(), [0, 3, 1, 1, 0, 0, 0]);
        // A refresh replaces the slot instead of adding one.
        m.update_labeled(&[1], &[0.0, 1.0]);
        assert_eq!(m.counts(), [0, 3, 1, 1, 0, 0, 0]);
        let bank = m.bank(&Device::Cpu, true).unwrap();
        assert_eq!(bank.entries.to_vec2::<f32>().unwrap(), vec![vec![0.0, 1.0]]);
        let full = m.bank(&Device::Cpu, false).unwrap();
        assert_eq!(full.ranges[1], (0, 3));
        assert_eq!(full.ranges[2], (3, 1));
        assert_eq!(full.ranges[3], (4, 1));
    }

    #[test]
    fn zero_capacity_keeps_labeled_only() {
        let mut m = InstanceMemory::new(2, vec![0], 0);
        m.push_pseudo(0, &[1.0, 0.0]);
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn ins_scores_aggregate_per_class() {
        let mut m = InstanceMemory::new(2, vec![0, 0, 1], 0);
        m.update_labeled(&[0, 1, 2], &[unit(0.0), unit(1.0), unit(0.5)].concat());
        let bank = m.bank(&Device::Cpu, false).unwrap();
        let z = Tensor::new(&[[1f32, 0.0]], &Device::Cpu).unwrap();
        let max = ins_scores(&z, &bank, Aggregate::Max, 0.5)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert!((max[0][0] - 1.0 / 0.5).abs() < 1e-5, "{max:?}");
        assert!((max[0][1] - 0.5f32.cos() / 0.5).abs() < 1e-5, "{max:?}");
        assert!(max[0][2] < -1000.0, "an empty class scores ~0 probability: {max:?}");
        let top2 = ins_scores(&z, &bank, Aggregate::TopKMean(2), 1.0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert!((top2[0][0] - (1.0 + 1f32.cos()) / 2.0).abs() < 1e-5, "{top2:?}");
        // k larger than the class: the mean of what there is.
        assert!((top2[0][1] - 0.5f32.cos()).abs() < 1e-5, "{top2:?}");
    }

    #[test]
    fn state_round_trips() {
        let mut m = InstanceMemory::new(2, vec![0, 1], 2);
        m.update_labeled(&[1], &[0.5, 0.5]);
        for i in 0..3 {
            m.push_pseudo(4, &[i as f32, 1.0]);
        }
        let t = m.to_tensors().unwrap();
        let mut back = InstanceMemory::new(2, vec![0, 1], 2);
        back.load_tensors(&t).unwrap();
        assert_eq!(back.counts(), m.counts());
        assert_eq!(back.queued(4), m.queued(4));
        // After restoring, the next push evicts the same (oldest) entry in both.
        m.push_pseudo(4, &[7.0, 7.0]);
        back.push_pseudo(4, &[7.0, 7.0]);
        assert_eq!(back.queued(4), m.queued(4));
    }
}
