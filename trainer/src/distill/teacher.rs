//! The teacher: a trained checkpoint rebuilt with everything its fused p̂ needs.

use crate::data::augment::Normalization;
use crate::data::loader::ImageStore;
use crate::evaluate::{forward_store, prob_rows};
use crate::method::SslConfig;
use crate::method::fusion::{SourceScores, fuse, text_scores};
use crate::method::memory::{Bank, InstanceMemory, ins_scores};
use crate::method::step::hard_labels;
use crate::model::projection::ProjectionHead;
use crate::model::{FerModel, build};
use crate::text::PrototypeSet;
use crate::train::checkpoint::{self, Which};
use crate::train::config::TrainConfig;
use crate::train::error::TrainError;
use crate::train::prepare::set_vars;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use sitfer_contract::labels::NUM_CLASSES;
use std::path::{Path, PathBuf};

type Probs = [f32; NUM_CLASSES];

/// Faces per forward pass.
const BATCH: usize = 256;
/// Faces per progress step.
const PROGRESS_STEP: usize = 2048;

/// Labeled faces scored together; each chunk's p_ins leaves the chunk out of the buffer. At most
/// 1/32 of the buffer is left out, and the buffer is rebuilt at most ~N/256 times (it is the
/// whole labeled set: rebuilding it for every 32 faces of FER2013 took minutes).
fn labeled_chunk(n: usize) -> usize {
    (n / 32).clamp(1, 256)
}

pub struct Teacher {
    /// The checkpoint directory.
    pub dir: PathBuf,
    pub step: u64,
    pub config: TrainConfig,
    model: Box<dyn FerModel>,
    /// Projection head and unit prototypes `[classes, d_text]` (teachers trained with text).
    text: Option<(ProjectionHead, Tensor)>,
    device: Device,
}

impl Teacher {
    /// Loads `path` (a run directory: its best checkpoint; or a checkpoint directory).
    pub fn load(path: &Path, device: &Device) -> Result<Self, TrainError> {
        let dir = checkpoint::resolve(path, Which::Best)?;
        let ck = checkpoint::load(&dir, device)?;
        let config = ck.state.config.clone();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let model = build(&config.model, vb.clone())?;
        let text = if ck.weights.contains_key("proj.weight") {
            let protos = PrototypeSet::load(&checkpoint::run_dir_of(&dir).join("prototypes.json"))?;
            let head = ProjectionHead::new(model.embedding_dim(), protos.dim, vb)?;
            Some((head, protos.tensor(device)?))
        } else {
            None
        };
        set_vars(&varmap, &ck.weights, &dir)?;
        Ok(Teacher {
            dir,
            step: ck.state.step,
            config,
            model,
            text,
            device: device.clone(),
        })
    }

    pub fn input_size(&self) -> u32 {
        self.config.model.input_size
    }

    pub fn norm(&self) -> Normalization {
        self.config.norm
    }

    /// The fusion the teacher was trained with (p_sem alone for supervised and FixMatch runs
    /// whose text and instance weights are 0).
    fn fusion(&self) -> SslConfig {
        self.config.ssl.clone().unwrap_or_else(SslConfig::fixmatch)
    }

    /// p̂ for the `labeled` faces (classes from their targets) and the `unlabeled` ones, both at
    /// the teacher's input size. The instance buffer holds the teacher's embeddings of the
    /// labeled faces; a labeled face is scored against the buffer without its own chunk (at most
    /// 1/32 of it), so that p_ins does not just find the face itself.
    pub fn soft_labels(
        &self,
        labeled: &ImageStore,
        unlabeled: Option<&ImageStore>,
    ) -> Result<(Vec<Probs>, Vec<Probs>), TrainError> {
        let cfg = self.fusion();
        let total = labeled.len() + unlabeled.map_or(0, ImageStore::len);
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("teacher p̂ {elapsed_precise} [{wide_bar}] {pos}/{len} faces")
                .expect("valid template")
                .progress_chars("=> "),
        );
        let (l_logits, l_z) = self.outputs(labeled, &bar)?;
        // The buffer: the teacher's own embeddings of the labeled faces, one slot each.
        let memory = match &l_z {
            Some(z) if cfg.uses_memory() => {
                let classes = hard_labels(labeled.targets.as_ref().expect("labeled store has targets"));
                let mut m = InstanceMemory::new(z.dim(1)?, classes, 0);
                m.update_labeled(
                    &(0..labeled.len()).collect::<Vec<_>>(),
                    &z.flatten_all()?.to_vec1::<f32>()?,
                );
                Some(m)
            }
            _ => None,
        };
        let score = |logits: &Tensor, z: Option<&Tensor>, bank: Option<&Bank>| -> Result<Tensor, TrainError> {
            let text = match (z, &self.text) {
                (Some(z), Some((_, protos))) if cfg.weights.text > 0.0 => Some(text_scores(z, protos, cfg.tau_t)?),
                _ => None,
            };
            let ins = match (z, bank) {
                // A buffer left empty by the chunk (a tiny labeled set) has nothing to say.
                (Some(z), Some(bank)) if bank.entries.dim(0)? > 0 => {
                    Some(ins_scores(z, bank, cfg.aggregate, cfg.tau_i)?)
                }
                _ => None,
            };
            Ok(fuse(
                &SourceScores {
                    sem: Some(logits),
                    text: text.as_ref(),
                    ins: ins.as_ref(),
                },
                &cfg.weights,
                cfg.fuse,
            )?)
        };
        let mut out_l = Vec::with_capacity(labeled.len());
        let chunk = labeled_chunk(labeled.len());
        for start in (0..labeled.len()).step_by(chunk) {
            let n = chunk.min(labeled.len() - start);
            let z = l_z.as_ref().map(|z| z.narrow(0, start, n)).transpose()?;
            let bank = memory
                .as_ref()
                .map(|m| m.labeled_bank_without(&self.device, start..start + n))
                .transpose()?;
            let p = score(&l_logits.narrow(0, start, n)?, z.as_ref(), bank.as_ref())?;
            out_l.extend(prob_rows(&p)?);
        }
        let mut out_u = Vec::new();
        if let Some(u) = unlabeled.filter(|u| !u.is_empty()) {
            let (u_logits, u_z) = self.outputs(u, &bar)?;
            let bank = memory.as_ref().map(|m| m.bank(&self.device, true)).transpose()?;
            for start in (0..u.len()).step_by(BATCH) {
                let n = BATCH.min(u.len() - start);
                let z = u_z.as_ref().map(|z| z.narrow(0, start, n)).transpose()?;
                out_u.extend(prob_rows(&score(
                    &u_logits.narrow(0, start, n)?,
                    z.as_ref(),
                    bank.as_ref(),
                )?)?);
            }
        }
        bar.finish_and_clear();
        Ok((out_l, out_u))
    }

    /// Logits and (with a projection head) unit text-space embeddings of every face.
    fn outputs(
        &self,
        store: &ImageStore,
        bar: &indicatif::ProgressBar,
    ) -> Result<(Tensor, Option<Tensor>), TrainError> {
        let (mut logits, mut embeddings) = (Vec::new(), Vec::new());
        for start in (0..store.len()).step_by(PROGRESS_STEP) {
            let end = (start + PROGRESS_STEP).min(store.len());
            let part = ImageStore {
                images: std::sync::Arc::new(store.images[start..end].to_vec()),
                targets: None,
            };
            let (l, e) = forward_store(self.model.as_ref(), &part, self.norm(), BATCH, &self.device)?;
            logits.push(l);
            embeddings.push(e);
            bar.inc((end - start) as u64);
        }
        let logits = Tensor::cat(&logits, 0)?;
        let embedding = Tensor::cat(&embeddings, 0)?;
        let z = match &self.text {
            Some((head, _)) => Some(head.forward(&embedding)?),
            None => None,
        };
        Ok((logits, z))
    }
}
