//! A weight-averaged copy of the model that makes the pseudo-labels (mean teacher): after every
//! optimiser step each of its variables moves toward the trained model's, θ' ← d·θ' + (1 − d)·θ.
//!
//! Why: Protocol 4's ablation (docs/results/sitfer.md) found p_sem, p_text and p_ins agreeing
//! because all three read the one backbone that L_u is training, so the fusion cannot correct the
//! backbone's own mistakes and those mistakes are fed back at once. The average over the last
//! ~1/(1 − d) steps is a temporal ensemble the trained model does not share: its labels are less
//! noisy and do not chase the last batch. It scores in eval mode (running statistics, which are
//! averaged too), and its projection head and labeled embeddings feed p_text and p_ins.

use crate::model::FerModel;
use crate::model::projection::ProjectionHead;
use candle_core::{Result, Tensor, Var};
use candle_nn::VarMap;
use std::collections::HashMap;

/// Prefix of the teacher's variables among a checkpoint's extra tensors.
pub const EMA_PREFIX: &str = "ema.";

/// The averaged model, its projection head, and each of its variables paired with the trained
/// model's variable of the same name.
pub struct EmaTeacher {
    pub model: Box<dyn FerModel>,
    pub proj: Option<ProjectionHead>,
    decay: f64,
    /// (name, teacher's variable, trained model's variable), sorted by name.
    pairs: Vec<(String, Var, Var)>,
}

impl EmaTeacher {
    /// A teacher from a second build of the model (`teacher_vars`, with `model` and `proj` built
    /// on it), starting as an exact copy of the trained model's variables `student`.
    pub fn new(
        model: Box<dyn FerModel>,
        proj: Option<ProjectionHead>,
        teacher_vars: &VarMap,
        student: &VarMap,
        decay: f64,
    ) -> Result<Self> {
        let t = teacher_vars.data().lock().expect("varmap lock");
        let s = student.data().lock().expect("varmap lock");
        let mut pairs = Vec::with_capacity(s.len());
        for (name, sv) in s.iter() {
            let tv = t
                .get(name)
                .ok_or_else(|| candle_core::Error::Msg(format!("EMA teacher: no variable `{name}`")))?;
            if tv.shape() != sv.shape() {
                candle_core::bail!(
                    "EMA teacher: `{name}` is {:?}, the model's {:?}",
                    tv.shape(),
                    sv.shape()
                );
            }
            tv.set(sv.as_tensor())?;
            pairs.push((name.clone(), tv.clone(), sv.clone()));
        }
        if pairs.len() != t.len() {
            candle_core::bail!("EMA teacher: {} variables, the model has {}", t.len(), pairs.len());
        }
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(EmaTeacher {
            model,
            proj,
            decay,
            pairs,
        })
    }

    /// One averaging step, after the trained model's optimiser step.
    pub fn update(&self) -> Result<()> {
        let d = self.decay;
        for (_, t, s) in &self.pairs {
            t.set(&(t.as_tensor().affine(d, 0.0)? + s.as_tensor().affine(1.0 - d, 0.0)?)?)?;
        }
        Ok(())
    }

    /// The teacher's variables under [`EMA_PREFIX`] (for a checkpoint).
    pub fn to_tensors(&self) -> Result<HashMap<String, Tensor>> {
        self.pairs
            .iter()
            .map(|(n, t, _)| Ok((format!("{EMA_PREFIX}{n}"), t.as_tensor().copy()?)))
            .collect()
    }

    /// Restores the variables saved by [`Self::to_tensors`]; every one must be there.
    pub fn load_tensors(&self, saved: &HashMap<String, Tensor>) -> Result<()> {
        for (n, t, _) in &self.pairs {
            let v = saved
                .get(&format!("{EMA_PREFIX}{n}"))
                .ok_or_else(|| candle_core::Error::Msg(format!("checkpoint lacks the EMA teacher's `{n}`")))?;
            t.set(v)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::{Init, VarBuilder};

    struct Linear(Tensor);
    impl FerModel for Linear {
        fn forward_t(&self, x: &Tensor, _: bool) -> Result<crate::model::ModelOutput> {
            let y = x.matmul(&self.0)?;
            Ok(crate::model::ModelOutput {
                logits: y.clone(),
                embedding: y,
            })
        }
        fn embedding_dim(&self) -> usize {
            2
        }
    }

    fn build(vm: &VarMap) -> Box<dyn FerModel> {
        let vb = VarBuilder::from_varmap(vm, DType::F32, &Device::Cpu);
        Box::new(Linear(vb.get_with_hints((2, 2), "w", Init::Const(0.0)).unwrap()))
    }

    #[test]
    fn starts_as_a_copy_then_moves_a_fraction_toward_the_model_and_restores() {
        let (student, teacher) = (VarMap::new(), VarMap::new());
        let _s = build(&student);
        let w = student.data().lock().unwrap()["w"].clone();
        w.set(&Tensor::ones((2, 2), DType::F32, &Device::Cpu).unwrap()).unwrap();
        let ema = EmaTeacher::new(build(&teacher), None, &teacher, &student, 0.9).unwrap();
        let read = |vm: &VarMap| vm.data().lock().unwrap()["w"].as_tensor().to_vec2::<f32>().unwrap();
        assert_eq!(read(&teacher), vec![vec![1.0; 2]; 2]);
        w.set(&Tensor::full(11f32, (2, 2), &Device::Cpu).unwrap()).unwrap();
        ema.update().unwrap();
        // 0.9 · 1 + 0.1 · 11 = 2: the teacher lags the model.
        assert!(read(&teacher).iter().flatten().all(|v| (v - 2.0).abs() < 1e-5));
        let saved = ema.to_tensors().unwrap();
        ema.update().unwrap();
        assert!(read(&teacher).iter().flatten().all(|v| (v - 2.9).abs() < 1e-5));
        ema.load_tensors(&saved).unwrap();
        assert!(read(&teacher).iter().flatten().all(|v| (v - 2.0).abs() < 1e-5));
        assert!(ema.load_tensors(&HashMap::new()).is_err());
    }
}
