//! One semi-supervised training step, shared by supervised, FixMatch and SIT-FER: the losses on
//! a labeled and an unlabeled batch, the fused pseudo-labels, and the updates of the instance
//! memory and thresholds that follow.

use super::calibrate::Temperatures;
use super::config::{PseudoTarget, SslConfig};
use super::ema_teacher::EmaTeacher;
use super::fusion::{SourceScores, confidence, fuse, text_scores};
use super::instance_loss::instance_consistency;
use super::loss::soft_cross_entropy;
use super::loss::{LossWeights, Terms, combine, rows_cross_entropy};
use super::memory::{Bank, InstanceMemory, ins_scores};
use super::threshold::Thresholds;
use crate::evaluate::argmax;
use crate::model::FerModel;
use crate::model::projection::ProjectionHead;
use candle_core::{D, Device, Result, Tensor};
use sitfer_contract::labels::NUM_CLASSES;

/// A labeled batch: the weak view `[B, 3, H, W]`, target distributions `[B, classes]`, the hard
/// labels, and the samples' indices in the labeled store (their instance-memory slots).
pub struct LabeledInput<'a> {
    pub x: &'a Tensor,
    pub targets: &'a Tensor,
    pub labels: &'a [usize],
    pub slots: &'a [usize],
}

/// An unlabeled batch: a weak and a strong view of each face.
pub struct UnlabeledInput<'a> {
    pub weak: &'a Tensor,
    pub strong: &'a Tensor,
}

/// What a step produced, for the optimizer and the logs.
pub struct StepOutput {
    pub loss: Tensor,
    pub l_s: f32,
    pub l_t: Option<f32>,
    pub l_u: Option<f32>,
    pub l_in: Option<f32>,
    pub labeled_logits: Tensor,
    pub unlabeled: Option<PseudoLabels>,
}

/// The pseudo-labels of an unlabeled batch and what each source predicted (for analysis).
pub struct PseudoLabels {
    pub class: Vec<usize>,
    pub confidence: Vec<f32>,
    pub mask: Vec<bool>,
    pub sem: Vec<usize>,
    pub text: Option<Vec<usize>>,
    pub ins: Option<Vec<usize>>,
}

/// The method's state across steps.
pub struct SslState {
    pub cfg: SslConfig,
    /// `[classes, d_text]` unit text prototypes (when the method uses text).
    pub prototypes: Option<Tensor>,
    pub proj: Option<ProjectionHead>,
    pub memory: Option<InstanceMemory>,
    pub thresholds: Thresholds,
    /// What p̂'s sources are divided by before their softmax: 1, τ_t and τ_i as configured until
    /// a calibration fits them (`calibrate.rs`). L_t keeps the configured τ_t.
    pub temperatures: Temperatures,
    /// The mean teacher that makes the pseudo-labels (`SslConfig::ema_teacher`); `None`: the
    /// trained model makes them.
    pub teacher: Option<EmaTeacher>,
}

/// What the pseudo-labeler made of a step's faces (no gradient).
struct WeakOutput {
    /// Logits of the weak views.
    logits: Tensor,
    /// Unit text-space embeddings of the weak views (methods with text).
    z: Option<Tensor>,
    /// The teacher's unit embeddings of the labeled faces, for the buffer's labeled slots.
    z_labeled: Option<Tensor>,
}

fn argmax_rows(t: &Tensor) -> Result<Vec<usize>> {
    Ok(t.argmax(D::Minus1)?
        .to_vec1::<u32>()?
        .into_iter()
        .map(|c| c as usize)
        .collect())
}

impl SslState {
    pub fn new(
        cfg: SslConfig,
        prototypes: Option<Tensor>,
        proj: Option<ProjectionHead>,
        memory: Option<InstanceMemory>,
    ) -> Self {
        let thresholds = Thresholds::new(cfg.threshold, cfg.threshold_mode);
        let temperatures = Temperatures {
            sem: 1.0,
            text: cfg.tau_t,
            ins: cfg.tau_i,
        };
        SslState {
            temperatures,
            cfg,
            prototypes,
            proj,
            memory,
            thresholds,
            teacher: None,
        }
    }

    /// The projection that pseudo-labels are scored through, with the prototypes: the teacher's
    /// head when there is a teacher.
    pub fn labeler_head(&self) -> Option<(&ProjectionHead, &Tensor)> {
        let (proj, protos) = self.text_head()?;
        Some((
            self.teacher.as_ref().and_then(|t| t.proj.as_ref()).unwrap_or(proj),
            protos,
        ))
    }

    /// The model that pseudo-labels, calibrates and fills the buffer: the teacher, else `model`.
    pub fn labeler<'a>(&'a self, model: &'a dyn FerModel) -> &'a dyn FerModel {
        self.teacher.as_ref().map_or(model, |t| t.model.as_ref())
    }

    /// The pseudo-labeler's view of a step. Without a teacher, the trained model scores the weak
    /// views in train mode (their batch statistics still update the running ones, as in
    /// FixMatch's joint batch). A teacher scores in eval mode, and embeds the labeled faces too so
    /// that the buffer holds one model's embeddings.
    fn label_views(&self, model: &dyn FerModel, labeled: &Tensor, weak: &Tensor) -> Result<WeakOutput> {
        let project = |e: &Tensor| -> Result<Option<Tensor>> {
            self.labeler_head()
                .map(|(p, _)| p.forward(e).map(|z| z.detach()))
                .transpose()
        };
        let Some(t) = &self.teacher else {
            let out = model.forward_t(weak, true)?;
            return Ok(WeakOutput {
                logits: out.logits.detach(),
                z: project(&out.embedding)?,
                z_labeled: None,
            });
        };
        let b = labeled.dim(0)?;
        let out = t.model.forward_t(&Tensor::cat(&[labeled, weak], 0)?, false)?;
        let n = out.logits.dim(0)? - b;
        let z = project(&out.embedding)?;
        Ok(WeakOutput {
            logits: out.logits.narrow(0, b, n)?.detach(),
            z: z.as_ref().map(|z| z.narrow(0, b, n)).transpose()?,
            z_labeled: z.as_ref().map(|z| z.narrow(0, 0, b)).transpose()?,
        })
    }

    fn weights(&self) -> LossWeights {
        LossWeights {
            s: self.cfg.lambda_s,
            t: self.cfg.lambda_t,
            u: self.cfg.lambda_u,
            ins: self.cfg.instance_loss.map_or(0.0, |l| l.lambda),
        }
    }

    pub(super) fn text_head(&self) -> Option<(&ProjectionHead, &Tensor)> {
        match (&self.proj, &self.prototypes) {
            (Some(p), Some(t)) if self.cfg.text => Some((p, t)),
            _ => None,
        }
    }

    /// The buffer's embeddings as one bank (its labeled slots only with `labeled_only`), when
    /// there is a buffer (for p_ins or L_in) and it holds something. Built once per use: p_ins
    /// and L_in read it.
    fn bank(&self, device: &Device, labeled_only: bool) -> Result<Option<Bank>> {
        match &self.memory {
            Some(mem) if !mem.is_empty() => Ok(Some(mem.bank(device, labeled_only)?)),
            _ => Ok(None),
        }
    }

    /// p_ins's scores of unit embeddings `z` against `bank`.
    fn ins_source(&self, z: &Tensor, bank: Option<&Bank>) -> Result<Option<Tensor>> {
        bank.map(|b| ins_scores(z, b, self.cfg.aggregate, self.temperatures.ins))
            .transpose()
    }

    /// p_text's scores of unit embeddings `z`, when text takes part in the fusion.
    fn text_source(&self, z: &Tensor) -> Result<Option<Tensor>> {
        match self.text_head() {
            Some((_, protos)) if self.cfg.weights.text > 0.0 => {
                Ok(Some(text_scores(z, protos, self.temperatures.text)?))
            }
            _ => Ok(None),
        }
    }

    /// Fused class probabilities from logits and unit text-space embeddings (no gradient).
    pub fn fused(&self, logits: &Tensor, z: Option<&Tensor>, step: u64, labeled_only: bool) -> Result<Tensor> {
        let (text, ins) = match (z, self.text_head()) {
            (Some(z), Some(_)) => {
                let bank = if step >= self.cfg.ins_warmup_steps {
                    self.bank(z.device(), labeled_only)?
                } else {
                    None
                };
                (self.text_source(z)?, self.ins_source(z, bank.as_ref())?)
            }
            _ => (None, None),
        };
        self.fuse_scores(logits, text.as_ref(), ins.as_ref())
    }

    /// Fuses the logits with already computed text and instance scores.
    fn fuse_scores(&self, logits: &Tensor, text: Option<&Tensor>, ins: Option<&Tensor>) -> Result<Tensor> {
        let scaled;
        let logits = if self.temperatures.sem == 1.0 {
            logits
        } else {
            scaled = (logits / self.temperatures.sem)?;
            &scaled
        };
        let sem = (self.cfg.weights.sem > 0.0).then_some(logits);
        // A configuration with p_sem off still needs some source before text/ins exist.
        let sem = if sem.is_none() && text.is_none() && ins.is_none() {
            Some(logits)
        } else {
            sem
        };
        fuse(&SourceScores { sem, text, ins }, &self.cfg.weights, self.cfg.fuse)
    }

    /// Fused probabilities for evaluation: the model's outputs with the labeled part of the
    /// buffer (as the runtime would have it).
    pub fn fused_eval(&self, logits: &Tensor, embedding: &Tensor) -> Result<Tensor> {
        let z = match self.text_head() {
            Some((proj, _)) => Some(proj.forward(embedding)?),
            None => None,
        };
        self.fused(logits, z.as_ref(), u64::MAX, true)
    }

    /// Losses of one step at `step`, and the memory/threshold updates that follow from it.
    pub fn step(
        &mut self,
        model: &dyn FerModel,
        step: u64,
        l: LabeledInput,
        u: Option<UnlabeledInput>,
    ) -> Result<StepOutput> {
        let b = l.x.dim(0)?;
        // The pseudo-labeler first, without gradient. On the CPU fast path `no_grad` also keeps
        // the fused layers from saving anything for a backward pass that never comes.
        let weak = match &u {
            Some(u) => Some(crate::ops::no_grad(|| self.label_views(model, l.x, u.weak))?),
            None => None,
        };
        let x = match &u {
            Some(u) => Tensor::cat(&[l.x, u.strong], 0)?,
            None => l.x.clone(),
        };
        let out = model.forward_t(&x, true)?;
        let logits_l = out.logits.narrow(0, 0, b)?;
        let l_s = soft_cross_entropy(&logits_l, l.targets)?;
        let (l_t, z_l) = match self.text_head() {
            Some((proj, protos)) => {
                let z = proj.forward(&out.embedding.narrow(0, 0, b)?)?;
                let lt = if self.cfg.lambda_t > 0.0 {
                    Some(soft_cross_entropy(
                        &text_scores(&z, protos, self.cfg.tau_t)?,
                        l.targets,
                    )?)
                } else {
                    None
                };
                (lt, Some(z.detach()))
            }
            None => (None, None),
        };

        let mut pseudo = None;
        let mut l_u = None;
        let mut l_in = None;
        if let (
            Some(WeakOutput {
                logits: logits_w,
                z: z_w,
                ..
            }),
            Some(u),
        ) = (&weak, &u)
        {
            let labeled_only = self.cfg.queue_per_class == 0;
            // Each source is scored once: the log's per-source labels (p_ins even during its
            // warm-up) and p̂ (p_ins only after it) read the same scores.
            let bank = match (z_w, self.labeler_head()) {
                (Some(z), Some(_)) => self.bank(z.device(), labeled_only)?,
                _ => None,
            };
            let (text, ins) = match (z_w, self.labeler_head()) {
                (Some(z), Some((_, protos))) => (
                    Some(text_scores(z, protos, self.temperatures.text)?),
                    self.ins_source(z, bank.as_ref())?,
                ),
                _ => (None, None),
            };
            let text_fused = text.as_ref().filter(|_| self.cfg.weights.text > 0.0);
            let ins_fused = ins.as_ref().filter(|_| step >= self.cfg.ins_warmup_steps);
            let p_hat = self.fuse_scores(logits_w, text_fused, ins_fused)?;
            let (conf, class) = confidence(&p_hat)?;
            let mask = self.thresholds.mask(&conf, &class);
            let bu = u.strong.dim(0)?;
            let logits_s = out.logits.narrow(0, b, bu)?;
            l_u = Some(rows_cross_entropy(
                &logits_s,
                pseudo_targets(self.cfg.pseudo_target, &p_hat, &class, &conf, &mask)?,
            )?);
            if let (Some(il), Some(z_w), Some((proj, _)), Some(bank)) =
                (self.cfg.instance_loss, z_w, self.text_head(), &bank)
            {
                let z_s = proj.forward(&out.embedding.narrow(0, b, bu)?)?;
                l_in = instance_consistency(z_w, &z_s, &p_hat, bank, il.tau)?;
            }
            pseudo = Some(PseudoLabels {
                sem: argmax_rows(logits_w)?,
                text: text.as_ref().map(argmax_rows).transpose()?,
                ins: ins.as_ref().map(argmax_rows).transpose()?,
                class,
                confidence: conf,
                mask,
            });
        }

        let terms = Terms {
            l_s: l_s.clone(),
            l_t: l_t.clone(),
            l_u: l_u.clone(),
            l_in: l_in.clone(),
        };
        let loss = combine(&terms, self.weights())?;

        // Updates from this step's (detached) outputs. The labeled faces' p̂ scores them against
        // the whole labeled buffer (a 28k-row product and sort per class on FER2013): only worth
        // it when the thresholds follow it.
        if self.thresholds.is_adaptive() {
            let fused_l = self.fused(&logits_l.detach(), z_l.as_ref(), step, true)?;
            let (conf_l, pred_l) = confidence(&fused_l)?;
            self.thresholds.update(&conf_l, &pred_l, l.labels);
        }
        if let Some(mem) = &mut self.memory {
            let z_slots = weak.as_ref().and_then(|w| w.z_labeled.as_ref()).or(z_l.as_ref());
            if let Some(z) = z_slots {
                mem.update_labeled(l.slots, &z.flatten_all()?.to_vec1::<f32>()?);
            }
            if let (Some(p), Some(WeakOutput { z: Some(z), .. })) = (&pseudo, &weak) {
                let rows = z.to_vec2::<f32>()?;
                for (i, (row, &c)) in rows.iter().zip(&p.class).enumerate() {
                    let queued = match self.cfg.queue_threshold {
                        Some(t) => p.confidence[i] >= t as f32,
                        None => p.mask[i],
                    };
                    if queued {
                        mem.push_pseudo(c, row);
                    }
                }
            }
        }
        let scalar = |t: &Tensor| t.to_scalar::<f32>();
        Ok(StepOutput {
            l_s: scalar(&l_s)?,
            l_t: l_t.as_ref().map(scalar).transpose()?,
            l_u: l_u.as_ref().map(scalar).transpose()?,
            l_in: l_in.as_ref().map(scalar).transpose()?,
            loss,
            labeled_logits: logits_l,
            unlabeled: pseudo,
        })
    }
}

/// The strong views' target rows (`[B·C]`): zero where the mask rejects the face, else one-hot,
/// p̂ itself, or one-hot scaled by the confidence ([`PseudoTarget`]).
fn pseudo_targets(
    kind: PseudoTarget,
    p_hat: &Tensor,
    class: &[usize],
    conf: &[f32],
    mask: &[bool],
) -> Result<Vec<f32>> {
    let (b, c) = p_hat.dims2()?;
    let mut t = vec![0f32; b * c];
    let soft = match kind {
        PseudoTarget::Soft => p_hat.flatten_all()?.to_vec1::<f32>()?,
        _ => Vec::new(),
    };
    for i in (0..b).filter(|&i| mask[i]) {
        match kind {
            PseudoTarget::Soft => t[i * c..(i + 1) * c].copy_from_slice(&soft[i * c..(i + 1) * c]),
            PseudoTarget::Weighted => t[i * c + class[i]] = conf[i],
            PseudoTarget::Hard => t[i * c + class[i]] = 1.0,
        }
    }
    Ok(t)
}

/// Hard labels of target distributions (argmax).
pub fn hard_labels(targets: &[[f32; NUM_CLASSES]]) -> Vec<usize> {
    targets.iter().map(|t| argmax(t)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn pseudo_targets_follow_the_kind_and_drop_masked_faces() {
        let p = Tensor::new(&[[0.6f32, 0.3, 0.1], [0.2, 0.2, 0.6]], &Device::Cpu).unwrap();
        let (class, conf, mask) = ([0, 2], [0.6f32, 0.6], [true, false]);
        let t = |k| pseudo_targets(k, &p, &class, &conf, &mask).unwrap();
        assert_eq!(t(PseudoTarget::Hard), vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(t(PseudoTarget::Soft), vec![0.6, 0.3, 0.1, 0.0, 0.0, 0.0]);
        assert_eq!(t(PseudoTarget::Weighted), vec![0.6, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }
}
